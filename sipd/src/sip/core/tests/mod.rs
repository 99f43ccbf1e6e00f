//! The core's tests, by topic; the helpers here drive a [`Core`] with raw SIP
//! text at a fixed clock.

use super::*;

use crate::sip::T1;

use crate::sip::digest::ha1;

mod auth;
mod calls;
mod mwi;
mod registrar;

const REALM: &str = "gosip.test";

const T0: u64 = 1_800_000_000_000;

fn core() -> Core {
    let cfg = CoreConfig {
        realm: REALM.into(),
        ..CoreConfig::default()
    };
    let mut c = Core::new(cfg, [1; 32]);
    let (md5, sha) = ha1("alice", REALM, "pw");
    c.set_devices([Device {
        id: DeviceId(1),
        username: "alice".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: Some("101".into()),
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    }]);
    c
}

fn phone() -> Peer {
    Peer::udp("192.168.1.50:5062".parse().unwrap())
}

/// A binding of `device_id` at `contact`, registered from `source` at T0
/// for an hour, as one restored after a restart.
fn bound(device_id: DeviceId, contact: String, source: Peer) -> Binding {
    Binding {
        device_id,
        contact,
        source,
        user_agent: String::new(),
        call_id: String::new(),
        cseq: 1,
        expires_at: T0 + 3_600_000,
        online: true,
        last_seen: T0,
        missed: 0,
    }
}

fn send(c: &mut Core, now: u64, msg: &str) -> Vec<String> {
    c.handle_message(now, phone(), msg.as_bytes());
    drain(c)
}

fn drain(c: &mut Core) -> Vec<String> {
    std::iter::from_fn(|| c.poll_transmit())
        .map(|t| String::from_utf8(t.data).unwrap())
        .collect()
}

/// The trunk's (user "twilio") Proxy-Authorization answering the 407
/// challenge `ch` for an INVITE to +15550001111, as a header line.
fn trunk_auth(ch: &str, ha1_md5: &str) -> String {
    let nonce = header(ch, "Proxy-Authenticate")[0]
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let cr = Credentials {
        username: "twilio".into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: "sip:+15550001111@gosip.test".into(),
        qop: "auth".into(),
        nc: "00000001".into(),
        cnonce: "tw".into(),
        ..Default::default()
    };
    format!(
        "Proxy-Authorization: Digest username=\"twilio\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:+15550001111@gosip.test\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"tw\"\r\n",
        cr.expected("INVITE", ha1_md5, Algorithm::Md5)
    )
}

fn header<'a>(m: &'a str, name: &str) -> Vec<&'a str> {
    m.split("\r\n")
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Adds a digest answer to `msg` (a request) for the challenge in `resp`.
fn with_auth(msg: &str, resp: &str, nc: u32, qop: bool) -> String {
    let ch = header(resp, "WWW-Authenticate")[0];
    let nonce = ch
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let method = msg.split(' ').next().unwrap();
    let uri = msg.split(' ').nth(1).unwrap();
    let mut c = Credentials {
        username: "alice".into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: uri.into(),
        ..Default::default()
    };
    if qop {
        c.qop = "auth".into();
        c.nc = format!("{nc:08x}");
        c.cnonce = "abcdef".into();
    }
    let (h, _) = ha1("alice", REALM, "pw");
    let r = c.expected(method, &h, Algorithm::Md5);
    let auth = if qop {
        format!(
            "Authorization: Digest username=\"alice\",realm=\"{REALM}\",nonce=\"{nonce}\",uri=\"{uri}\",response=\"{r}\",algorithm=MD5,qop=auth,nc={},cnonce=\"abcdef\"\r\n",
            c.nc
        )
    } else {
        format!(
            "Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\"\r\n"
        )
    };
    let cut = msg.find("Content-Length").unwrap();
    let mut out = msg.to_string();
    out.insert_str(cut, &auth);
    // A new transaction: new branch, next CSeq.
    out.replacen(";branch=z9hG4bK", ";branch=z9hG4bKauth", 1)
        .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
        .replace("CSeq: 2001 REGISTER", "CSeq: 2002 REGISTER")
        .replace("CSeq: 15268 REGISTER", "CSeq: 15269 REGISTER")
        .replace("CSeq: 20 REGISTER", "CSeq: 21 REGISTER")
}

fn golden(name: &str) -> String {
    let p = format!(
        "{}/testdata/{name}/register.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    String::from_utf8(std::fs::read(p).unwrap()).unwrap()
}

proptest::proptest! {
    #[test]
    fn no_input_panics_the_core(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let mut c = core();
        c.handle_message(T0, phone(), &bytes);
        drain(&mut c);
    }

    #[test]
    fn mutated_golden_messages_never_panic(pos in 0usize..600, byte in proptest::num::u8::ANY) {
        let mut m = golden("linphone").into_bytes();
        let i = pos % m.len();
        m[i] = byte;
        let mut c = core();
        c.handle_message(T0, phone(), &m);
        drain(&mut c);
    }
}
