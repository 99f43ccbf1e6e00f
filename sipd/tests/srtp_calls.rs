#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Encrypted calls with real softphones: Debian baresip over SIP over TLS
//! with SRTP (`mediaenc=srtp-mand`), set up through webd's API, each with a
//! tone as its microphone (see `baresip_audio.rs` for the tone check). A
//! capture of the loopback interface (Debian `tcpdump`, as root) shows
//! what crossed the wire. The tests here run one at a time: each capture
//! sees all of loopback, so another call in clear would show in it.

#[path = "../../e2e/src/audio.rs"]
mod audio;
#[path = "../../e2e/src/baresip.rs"]
mod baresip;
#[path = "../../e2e/src/capture.rs"]
mod capture;
mod common;
mod phones;

use std::path::Path;
use std::time::Duration;

use baresip::Baresip;
use common::Sipd;
use phones::*;

/// One capture at a time (see the module doc).
static WIRE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A baresip over TLS with SRTP (`mediaenc=srtp-mand`) trusting sipd's own
/// certificate, answering by itself when `auto`.
fn srtp_phone(s: &Sipd, root: &Path, (user, pw): (&str, &str), hz: f64, auto: bool) -> Baresip {
    let cert = s.dir.join("tls").join("sip.crt");
    let answer = if auto { ";answermode=auto" } else { "" };
    Baresip::spawn_with(
        root,
        user,
        (
            &format!(
                "<sip:{user}@{};transport=tls>;auth_pass={pw};regint=300;audio_codecs=PCMU,PCMA;mediaenc=srtp-mand{answer}",
                s.sips
            ),
            &format!("sip_cafile {}\nmodule srtp.so\n", cert.display()),
        ),
        &tone_file(root, hz),
        60,
    )
}

/// The clear G.711 packets of `packets` whose audio is `hz`.
fn clear_tone(packets: &[capture::Packet], hz: f64) -> Vec<&capture::Packet> {
    packets
        .iter()
        .filter(|p| capture::clear_g711(p).is_some_and(|x| audio::share(&x, RATE, hz) > 0.5))
        .collect()
}

/// RTP-shaped UDP packets (version 2, a G.711 payload type, 20 ms or more).
fn rtp_shaped(packets: &[capture::Packet]) -> usize {
    packets
        .iter()
        .filter(|p| {
            p.udp && p.payload.len() >= 12 + 160 && p.payload[0] >> 6 == 2 && {
                let pt = p.payload[1] & 0x7f;
                pt == 0 || pt == 8
            }
        })
        .count()
}

/// The calls list as the admin sees it, once the call has ended there.
async fn ended_calls(s: &Sipd) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    for _ in 0..100 {
        let list = s
            .web
            .api
            .ok(&s.web.admin, 200, "GET", "/api/cdrs", None)
            .await;
        items = list["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() && items.iter().all(|c| !c["ended_at"].is_null()) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the call did not end in the calls list: {items:?}");
}

/// Two phones set to TLS and "SRTP required" through the API call each
/// other: each hears the other, and a capture of the loopback interface
/// shows neither SIP text on the TLS port nor a single RTP packet whose
/// audio is in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_srtp_phones_over_tls_hear_each_other_and_the_wire_shows_no_clear_sip_or_audio() {
    let _wire = WIRE.lock().await;
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    s.add_device("alice", "pw-alice-2026", "101").await;
    s.add_device("bob", "pw-bob-2026-x", "102").await;
    for user in ["alice", "bob"] {
        s.web
            .edit_device(
                user,
                serde_json::json!({"transport": "tls", "srtp": "required"}),
            )
            .await;
    }
    let cap = capture::Capture::start(root, &format!("tcp port {} or udp", s.sips.port())).await;
    let mut alice = srtp_phone(&s, root, ("alice", "pw-alice-2026"), CALLER_HZ, false);
    let mut bob = srtp_phone(&s, root, ("bob", "pw-bob-2026-x"), CALLEE_HZ, true);
    s.eventually("both phones registered over TLS", || async {
        let r = s.registrations().await;
        r.len() == 2 && r.iter().all(|r| r.1 == "tls")
    })
    .await;
    alice.connect().await;
    bob.connect().await;
    alice
        .command("dial", &format!("sip:102@{}", s.sips))
        .await
        .unwrap();
    for p in [&mut alice, &mut bob] {
        p.event("CALL_RTPESTAB", Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    }
    tokio::time::sleep(TALK).await;
    let (alice_heard, bob_heard) = hang_up(&mut alice, &mut bob).await;
    let wire = cap.stop().await;
    let (alice_log, bob_log) = (alice.log(), bob.log());
    alice.quit().await;
    bob.quit().await;
    assert_heard(
        &alice_heard,
        CALLEE_HZ,
        CALLER_HZ,
        "alice (SRTP) should have heard bob",
    );
    assert_heard(
        &bob_heard,
        CALLER_HZ,
        CALLEE_HZ,
        "bob (SRTP) should have heard alice",
    );
    // Printed when a call's audio starts under SRTP (loading the module
    // at start-up prints only "mediaenc: srtp-mand").
    for log in [&alice_log, &bob_log] {
        assert!(
            log.contains("starting mediaenc 'srtp-mand'"),
            "the call's audio ran under SRTP:\n{log}"
        );
    }
    let sips: Vec<_> = wire
        .iter()
        .filter(|p| !p.udp && (p.src.port() == s.sips.port() || p.dst.port() == s.sips.port()))
        .filter(|p| !p.payload.is_empty())
        .collect();
    assert!(
        sips.len() >= 8,
        "the capture saw the TLS signalling: {}",
        sips.len()
    );
    for p in &sips {
        let text = String::from_utf8_lossy(&p.payload);
        for word in ["SIP/2.0", "INVITE", "REGISTER", "a=crypto", "Authorization"] {
            assert!(
                !text.contains(word),
                "{word} in clear on the TLS port: {text}"
            );
        }
    }
    assert!(
        rtp_shaped(&wire) >= 200,
        "media crossed the wire: {} RTP-shaped packets",
        rtp_shaped(&wire)
    );
    for hz in [CALLER_HZ, CALLEE_HZ] {
        let clear = clear_tone(&wire, hz);
        assert!(
            clear.is_empty(),
            "{} packets carry the {hz} Hz tone in clear, e.g. {:?}",
            clear.len(),
            clear.first().map(|p| (p.src, p.dst))
        );
    }
    let calls = ended_calls(&s).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["encrypted"], true,
        "the calls list shows the lock: {calls:?}"
    );
    s.stop().await;
}

/// carol's phone speaks plain RTP over UDP and calls alice, whose phone
/// must use SRTP: mediad translates, both hear each other, and the only
/// audio in clear on the wire is on carol's own leg.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_phone_calls_an_srtp_phone_and_only_the_plain_leg_is_in_clear() {
    let _wire = WIRE.lock().await;
    let s = Sipd::start_with_mediad(&[]).await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    s.add_device("alice", "pw-alice-2026", "101").await;
    s.add_device("carol", "pw-carol-2026", "103").await;
    s.web
        .edit_device(
            "alice",
            serde_json::json!({"transport": "tls", "srtp": "required"}),
        )
        .await;
    let cap = capture::Capture::start(root, "udp").await;
    let mut alice = srtp_phone(&s, root, ("alice", "pw-alice-2026"), CALLEE_HZ, true);
    let mut carol = Baresip::spawn(
        root,
        "carol",
        &account("carol", "pw-carol-2026", &s, ""),
        &tone_file(root, CALLER_HZ),
        60,
    );
    s.eventually("both phones registered", || async {
        s.registrations().await.len() == 2
    })
    .await;
    alice.connect().await;
    carol.connect().await;
    carol
        .command("dial", &format!("sip:101@{}", s.sip))
        .await
        .unwrap();
    for p in [&mut carol, &mut alice] {
        p.event("CALL_RTPESTAB", Duration::from_secs(15))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    }
    tokio::time::sleep(TALK).await;
    let (carol_heard, alice_heard) = hang_up(&mut carol, &mut alice).await;
    let wire = cap.stop().await;
    alice.quit().await;
    carol.quit().await;
    assert_heard(
        &carol_heard,
        CALLEE_HZ,
        CALLER_HZ,
        "carol (RTP) should have heard alice (SRTP)",
    );
    assert_heard(
        &alice_heard,
        CALLER_HZ,
        CALLEE_HZ,
        "alice (SRTP) should have heard carol (RTP)",
    );
    // carol's tone leaves her phone in clear: that flow names her address.
    let from_carol = clear_tone(&wire, CALLER_HZ);
    assert!(
        from_carol.len() >= 50,
        "carol's leg is plain RTP: {}",
        from_carol.len()
    );
    let carol_rtp = from_carol[0].src;
    // alice's tone reaches carol in clear, decrypted by mediad.
    let to_carol = clear_tone(&wire, CALLEE_HZ);
    assert!(
        to_carol.len() >= 50,
        "mediad sends carol alice's audio in clear: {}",
        to_carol.len()
    );
    for p in from_carol.iter().chain(&to_carol) {
        assert!(
            p.src == carol_rtp || p.dst == carol_rtp,
            "audio in clear away from carol's leg: {} -> {} (carol at {carol_rtp})",
            p.src,
            p.dst
        );
    }
    let calls = ended_calls(&s).await;
    assert_eq!(
        calls[0]["encrypted"], false,
        "carol's leg was plain: {calls:?}"
    );
    s.stop().await;
}
