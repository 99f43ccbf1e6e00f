#![allow(clippy::unwrap_used, clippy::expect_used)]
//! RFC 4475 torture messages, bit-exact from the RFC's archive, each sent to
//! a running sipd over UDP and given the answer the RFC expects. sipd answers
//! to the source address of a request (RFC 3581 symmetric response), never to
//! the 192.0.2.x / example.com hosts named in the Via, so nothing leaves
//! loopback.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Phone, Resp, Sipd};

/// What the RFC expects for each message (a set when several answers are
/// correct for an element that is a registrar/UAS, per the RFC's text).
const EXPECTED: &[(&str, &[u16])] = &[
    // 3.1.1 valid messages: parsed and answered normally (INVITE without
    // credentials -> 407, REGISTER -> 401, OPTIONS -> 200).
    // wsinv carries a To tag: a request in a dialog sipd does not have
    // (RFC 3261 section 12.2.2: 481).
    ("wsinv", &[481]),
    ("intmeth", &[501, 405]),
    ("esc01", &[407]),
    ("escnull", &[401]),
    ("esc02", &[501, 405]),
    ("lwsdisp", &[200]),
    ("longreq", &[407]),
    ("dblreq", &[401]),
    ("semiuri", &[200]),
    ("transports", &[200]),
    // A MESSAGE: known to sipd, not served.
    ("mpart01", &[405]),
    ("unreason", &[]),
    ("noreason", &[]),
    // 3.1.2 invalid messages.
    ("badinv01", &[400]),
    ("clerr", &[400]),
    ("scalar02", &[400]),
    ("scalarlg", &[]),
    ("quotbal", &[400]),
    ("ltgtruri", &[400]),
    ("lwsruri", &[400]),
    ("lwsstart", &[400]),
    ("trws", &[400]),
    ("escruri", &[400]),
    ("baddate", &[400]),
    ("regbadct", &[400]),
    ("badaspec", &[400]),
    ("baddn", &[400]),
    ("badvers", &[505]),
    ("mismatch01", &[400]),
    ("mismatch02", &[400]),
    ("bigcode", &[]),
    // 3.2 transaction layer.
    ("badbranch", &[200]),
    // 3.3 application layer.
    ("insuf", &[400]),
    ("unkscm", &[416]),
    ("novelsc", &[416]),
    ("unksm2", &[400]),
    ("bext01", &[420]),
    ("invut", &[415]),
    ("regaut01", &[401]),
    ("multi01", &[400]),
    ("mcl01", &[400]),
    ("bcast", &[]),
    ("zeromf", &[200, 483]),
    ("cparam01", &[401]),
    ("cparam02", &[401]),
    ("regescrt", &[401]),
    ("sdp01", &[406]),
    ("inv2543", &[407]),
    ("ncl", &[400]),
];

fn dir() -> PathBuf {
    std::env::var_os("GOSIP_RFC4475_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/rfc4475")
        })
}

#[tokio::test]
async fn every_rfc4475_torture_message_gets_the_answer_the_rfc_expects() {
    let d = dir();
    let mut files: Vec<String> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".dat")
                .map(str::to_owned)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 49, "the RFC has 49 messages");
    for f in &files {
        assert!(
            EXPECTED.iter().any(|(n, _)| n == f),
            "no expectation for {f}"
        );
    }

    let s = Sipd::start(&[]).await;
    let mut wrong = Vec::new();
    for (name, want) in EXPECTED {
        let bytes = std::fs::read(d.join(format!("{name}.dat"))).unwrap();
        // A fresh socket per message so a late answer cannot be misread.
        let p = Phone::udp(&s, "torture").await;
        p.send(&bytes).await;
        let wait = if want.is_empty() { 300 } else { 3000 };
        let got = p.recv(Duration::from_millis(wait)).await.map(Resp);
        let code = got.as_ref().map(Resp::code);
        let ok = match code {
            None => want.is_empty(),
            Some(c) => want.contains(&c),
        };
        if !ok {
            wrong.push(format!("{name}: want {want:?}, got {code:?}"));
        }
        if let Some(r) = got {
            // Nothing else follows (dblreq's second request is not answered).
            let extra = p.recv(Duration::from_millis(100)).await;
            if extra.is_some() {
                wrong.push(format!("{name}: a second message came back: {}", r.0));
            }
        }
    }
    // Still alive and well.
    let p = Phone::udp(&s, "after").await;
    assert_eq!(p.request(&p.options()).await.code(), 200);
    s.stop().await;
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}
