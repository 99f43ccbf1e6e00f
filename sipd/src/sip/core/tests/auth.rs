//! REGISTER from real clients' captures, digest challenges and their abuse.

use super::*;

#[test]
fn every_golden_client_register_gets_challenged_then_bound() {
    let cases = [
        ("gxp1760w", "sip:alice@192.168.1.50:5062", 3600, true),
        (
            "baresip",
            "sip:alice-0x560bb706e490@192.168.1.60:56138",
            300,
            true,
        ),
        (
            "zoiper",
            "sip:alice@192.168.1.70:52044;rinstance=0e1a3f5d7c9b2e4a;transport=UDP",
            60,
            true,
        ),
        (
            "linphone",
            "sip:alice@192.168.1.80;transport=udp",
            3600,
            true,
        ),
    ];
    for (name, contact, expires, qop) in cases {
        let mut c = core();
        let msg = golden(name);
        let out = send(&mut c, T0, &msg);
        assert_eq!(out.len(), 1, "{name}");
        assert!(
            out[0].starts_with("SIP/2.0 401 Unauthorized\r\n"),
            "{name}: {}",
            out[0]
        );
        let out = send(&mut c, T0 + 10, &with_auth(&msg, &out[0], 1, qop));
        assert!(
            out[0].starts_with("SIP/2.0 200 OK\r\n"),
            "{name}: {}",
            out[0]
        );
        assert_eq!(
            header(&out[0], "Contact"),
            vec![format!("<{contact}>;expires={expires}").as_str()],
            "{name}"
        );
        let stored: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(
            matches!(&stored[..], [Event::Binding(Change::Upsert(b))] if b.contact == contact && b.source == phone()),
            "{name}: {stored:?}"
        );
    }
}

#[test]
fn a_challenge_keeps_no_state_and_the_200_is_answered_from_the_transaction_until_timer_j() {
    let mut c = core();
    let msg = golden("gxp1760w");
    let first = send(&mut c, T0, &msg);
    let again = send(&mut c, T0 + T1, &msg);
    assert!(again[0].starts_with("SIP/2.0 401 "), "{}", again[0]);
    assert_ne!(first, again, "a retransmission gets a fresh challenge");
    assert_eq!(c.stats.retransmissions_absorbed, 0);
    let auth = with_auth(&msg, &first[0], 1, true);
    let ok = send(&mut c, T0 + T1 + 10, &auth);
    assert!(ok[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", ok[0]);
    let ok_again = send(&mut c, T0 + 2 * T1, &auth);
    assert_eq!(ok, ok_again, "the stored 200, same tag");
    assert_eq!(c.stats.retransmissions_absorbed, 1);
    // After Timer J (64*T1 on UDP) the same bytes are a new request, and
    // its digest answer a replay.
    c.handle_timeout(T0 + T1 + 10 + 64 * T1);
    let later = send(&mut c, T0 + T1 + 11 + 64 * T1, &auth);
    assert!(!later[0].starts_with("SIP/2.0 200"), "{}", later[0]);
}

#[test]
fn a_407_to_an_unauthenticated_invite_is_sent_once_and_never_retransmitted() {
    let mut c = core();
    let invite = "INVITE sip:101@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKinv1\r\nFrom: <sip:alice@gosip.test>;tag=a\r\nTo: <sip:101@gosip.test>\r\nCall-ID: inv1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let first = send(&mut c, T0, invite);
    assert_eq!(first.len(), 1);
    assert!(first[0].starts_with("SIP/2.0 407 "));
    // 40 s of fake time, 10 ms steps: nothing more goes out.
    let mut sent = 0;
    for t in (T0..T0 + 40_000).step_by(10) {
        c.handle_timeout(t);
        sent += drain(&mut c).len();
    }
    assert_eq!(sent, 0, "no Timer G retransmission of a challenge");
    // A retransmitted INVITE gets the stored 407 again, one for one.
    let mut c = core();
    let a = send(&mut c, T0, invite);
    let b = send(&mut c, T0 + T1, invite);
    assert_eq!(a, b);
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    assert!(send(&mut c, T0 + 2 * T1, &ack).is_empty());
}

#[test]
fn a_forged_source_gets_at_most_its_challenge_budget() {
    let mut c = core();
    let mut challenges = 0;
    for i in 0..(crate::sip::abuse::CHALLENGE_BUDGET + 100) {
        let m =
            golden("gxp1760w").replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKf{i}"));
        challenges += send(&mut c, T0 + u64::from(i), &m).len();
    }
    assert_eq!(challenges, crate::sip::abuse::CHALLENGE_BUDGET as usize);
    assert_eq!(c.stats.challenges_withheld, 100);
    // Its next window starts afresh.
    let later = T0 + crate::sip::abuse::CHALLENGE_WINDOW_MS + 1_000;
    let m = golden("gxp1760w").replace("branch=z9hG4bK1804471765", "branch=z9hG4bKnext");
    assert_eq!(send(&mut c, later, &m).len(), 1);
}

#[test]
fn a_register_answered_without_qop_is_challenged_again_not_accepted() {
    let mut c = core();
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    let out = send(&mut c, T0 + 10, &with_auth(&msg, &ch[0], 1, false));
    assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
    assert_eq!(c.registrar().count(), 0);
    assert_eq!(c.stats.auth_failures, 0);
}

#[test]
fn a_digest_answer_for_another_uri_is_refused() {
    let mut c = core();
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    let good = with_auth(&msg, &ch[0], 1, true);
    let uri = msg.split(' ').nth(1).unwrap();
    let moved = good.replacen(uri, "sip:elsewhere.test", 1);
    let out = send(&mut c, T0 + 10, &moved);
    assert!(out[0].starts_with("SIP/2.0 400 "), "{}", out[0]);
    assert_eq!(c.registrar().count(), 0);
    let out = send(
        &mut c,
        T0 + 20,
        &good.replace("z9hG4bKauth", "z9hG4bKauth2"),
    );
    assert!(out[0].starts_with("SIP/2.0 200 "), "{}", out[0]);
}

#[test]
fn a_replayed_digest_answer_is_challenged_again() {
    let mut c = core();
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    let good = with_auth(&msg, &ch[0], 1, true);
    assert!(send(&mut c, T0 + 10, &good)[0].starts_with("SIP/2.0 200 "));
    // The same answer in a new transaction (same nc): not accepted.
    let replay = good.replace("z9hG4bKauth", "z9hG4bKreplay");
    let out = send(&mut c, T0 + 20, &replay);
    assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
}

#[test]
fn failures_with_a_nonce_sent_elsewhere_never_ban() {
    let mut c = core();
    let msg = golden("gxp1760w");
    // The nonce went to 192.168.1.50; the forged failures claim
    // another source, which never received it.
    let ch = send(&mut c, T0, &msg);
    let victim = Peer {
        addr: "198.51.100.20:5060".parse().unwrap(),
        ..phone()
    };
    for i in 0..100u64 {
        let m = msg.replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKs{i}"));
        let bad = with_auth(&m, &ch[0], 1, true).replace("response=\"", "response=\"0");
        c.handle_message(T0 + i, victim, bad.as_bytes());
        drain(&mut c);
    }
    assert!(!c.is_banned(victim.addr.ip(), T0 + 100));
    assert_eq!(c.stats.auth_failures, 0);
}
