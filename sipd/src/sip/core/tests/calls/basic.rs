//! Ringing, forking, busy, decline, no answer, cancel, hang-up and outbound numbers.

use super::*;

#[test]
fn an_internal_call_to_a_device_on_do_not_disturb_is_refused_with_480() {
    let mut c = setup(&[B1]);
    c.set_dnd([DeviceId(2)]);
    c.handle_message(T0, peer(A), invite(1, "").as_bytes());
    let ch = out(&mut c).remove(0).1;
    let hdr = header(&ch, "Proxy-Authenticate")[0];
    let nonce = hdr
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let cr = Credentials {
        username: "alice".into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: "sip:102@gosip.test".into(),
        qop: "auth".into(),
        nc: "00000001".into(),
        cnonce: "x".into(),
        ..Default::default()
    };
    let (h, _) = ha1("alice", REALM, "pw");
    let auth = format!(
        "Proxy-Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:102@gosip.test\", response=\"{}\", qop=auth, nc=00000001, cnonce=\"x\"\r\n",
        cr.expected("INVITE", &h, Algorithm::Md5)
    );
    c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
    let o = out(&mut c);
    let answer = find(&o, A, "SIP/2.0 480 ");
    assert!(
        header(&answer, "Warning")[0].contains("do not disturb"),
        "{answer}"
    );
    assert!(
        !o.iter().any(|(p, _)| p == B1),
        "bob's phone does not ring: {o:?}"
    );
    // With DND off again the same call rings.
    let mut c = setup(&[B1]);
    c.set_dnd([]);
    find(&place(&mut c), B1, "INVITE ");
}

#[test]
fn the_device_that_answers_an_inbound_call_is_reported_with_the_answer() {
    let answered = |c: &mut Core| {
        std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
            Event::Cdr(Cdr::Answered { device_id, .. }) => Some(device_id),
            _ => None,
        })
    };
    let mut c = setup(&[B1]);
    let inv = from_trunk(&mut c, "in1", "<sip:+15557654321@twilio.test>", "");
    c.handle_message(
        T0 + 3,
        peer(B1),
        reply(&inv, 200, "b1", Some(SDP)).as_bytes(),
    );
    assert_eq!(answered(&mut c), Some(Some(DeviceId(2))));
    // An internal call stays the caller's.
    let mut c = setup(&[B1]);
    let inv = find(&place(&mut c), B1, "INVITE ");
    c.handle_message(
        T0 + 3,
        peer(B1),
        reply(&inv, 200, "b1", Some(SDP)).as_bytes(),
    );
    assert_eq!(answered(&mut c), Some(None));
}

#[test]
fn outbound_numbers_are_normalized_and_premium_or_international_refused_unless_allowed() {
    let mut c = setup(&[B1]);
    let mut cfg = c.config().clone();
    let code = |c: &Core, n: &str, dev: &Device| match c.outbound_number(n, dev) {
        Ok(n) => n,
        Err(r) => r.code.to_string(),
    };
    let mut alice = c.devices["alice"].clone();
    assert_eq!(code(&c, "5551234567", &alice), "503"); // no trunk
    cfg.termination = Some(Termination {
        transport: crate::sip::Transport::Udp,
        host: "t.pstn.twilio.com".into(),
        addr: "127.0.0.1:5099".parse().unwrap(),
        username: "u".into(),
        password: "p".into(),
        local: None,
    });
    c.set_config(T0, cfg.clone());
    assert_eq!(code(&c, "5551234567", &alice), "403"); // no DID
    alice.caller_id = Some("+15550001111".into());
    assert_eq!(code(&c, "5551234567", &alice), "+15551234567");
    assert_eq!(code(&c, "1-555-123-4567", &alice), "+15551234567");
    assert_eq!(code(&c, "+15551234567", &alice), "+15551234567");
    assert_eq!(code(&c, "19005551234", &alice), "403");
    assert_eq!(code(&c, "+12129761234", &alice), "403");
    assert_eq!(code(&c, "876-555-1234", &alice), "403");
    assert_eq!(code(&c, "011442079460000", &alice), "403");
    assert_eq!(code(&c, "12", &alice), "404");
    cfg.allow_premium = true;
    cfg.allow_international = true;
    c.set_config(T0, cfg);
    assert_eq!(code(&c, "19005551234", &alice), "+19005551234");
    assert_eq!(code(&c, "011442079460000", &alice), "+442079460000");
}

#[test]
fn a_call_forks_to_every_contact_and_the_first_200_wins() {
    let mut c = setup(&[B1, B2]);
    let invites = place(&mut c);
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[0].0, B1);
    assert_eq!(invites[1].0, B2);
    for (_, m) in &invites {
        assert!(
            m.contains("m=audio 20002 RTP/AVP 0 8 101\r\nc=IN IP4 127.0.0.1"),
            "{m}"
        );
        assert!(m.contains("From: \"Alice\" <sip:101@gosip.test>"), "{m}");
    }
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 180, "b1", None).as_bytes(),
    );
    let o = out(&mut c);
    assert!(o[0].1.starts_with("SIP/2.0 180 Ringing") && o[0].0 == A);
    let answer = SDP.replace("4000", "6000");
    c.handle_message(
        T0 + 20,
        peer(B2),
        reply(&invites[1].1, 200, "b2", Some(&answer)).as_bytes(),
    );
    let o = out(&mut c);
    let to = |a: &str, start: &str| o.iter().any(|(p, m)| p == a && m.starts_with(start));
    assert!(to(B2, "ACK sip:bob@192.168.1.62:5060 SIP/2.0"), "{o:?}");
    assert!(to(B1, "CANCEL sip:bob@192.168.1.61:5060 SIP/2.0"), "{o:?}");
    let ok = &o.iter().find(|(p, _)| p == A).unwrap().1;
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("m=audio 20000 RTP/AVP 0 8 101"),
        "{ok}"
    );
    // The 200 is re-sent until the caller ACKs it.
    c.handle_timeout(T0 + 20 + T1);
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
    );
    let ack = format!(
        "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKack\r\nFrom: <sip:alice@gosip.test>;tag=at\r\nTo: {}\r\nCall-ID: call1\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(ok, "To")[0]
    );
    c.handle_message(T0 + 700, peer(A), ack.as_bytes());
    c.handle_timeout(T0 + 20 + 10 * T1);
    let o = out(&mut c);
    assert!(o.iter().all(|(p, _)| p != A), "no 200 after the ACK: {o:?}");
    // The cancelled branch's 487 is ACKed.
    c.handle_message(
        T0 + 800,
        peer(B1),
        reply(&invites[0].1, 487, "b1", None).as_bytes(),
    );
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == B1 && m.starts_with("ACK sip:bob@192.168.1.61:5060"))
    );
    // The caller hangs up: 200 to it, BYE to the callee.
    let bye = ack
        .replace("ACK sip", "BYE sip")
        .replace("2 ACK", "3 BYE")
        .replace("z9hG4bKack", "z9hG4bKbye");
    c.handle_message(T0 + 5_000, peer(A), bye.as_bytes());
    let o = out(&mut c);
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
    );
    assert!(
        o.iter()
            .any(|(p, m)| p == B2 && m.starts_with("BYE sip:bob@192.168.1.62:5060"))
    );
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Cdr(Cdr::End {
                disposition: "answered",
                duration_s: 4,
                ..
            })
        )),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(e, Event::MediaRelease { .. })));
    assert!(c.calls().is_empty());
}

#[test]
fn a_busy_phone_gives_the_caller_486() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 486, "b1", None).as_bytes(),
    );
    let o = out(&mut c);
    assert!(o.iter().any(|(p, m)| p == B1 && m.starts_with("ACK ")));
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 486 Busy Here"))
    );
    assert_eq!(cdr_end(&mut c), Some("busy"));
}

#[test]
fn a_declined_call_gives_603_and_no_answer_gives_480_after_the_ring_timeout() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 603, "b1", None).as_bytes(),
    );
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 603 "))
    );
    assert_eq!(cdr_end(&mut c), Some("rejected"));

    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 180, "b1", None).as_bytes(),
    );
    out(&mut c);
    c.handle_timeout(T0 + 29_000);
    let o = out(&mut c);
    assert!(o.iter().all(|(p, _)| p != A), "{o:?}");
    c.handle_timeout(T0 + 30_001);
    let o = out(&mut c);
    assert!(o.iter().any(|(p, m)| p == B1 && m.starts_with("CANCEL ")));
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 480 "))
    );
    assert_eq!(cdr_end(&mut c), Some("missed"));
}

#[test]
fn the_caller_cancelling_gets_487_and_the_callee_a_cancel() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    let cancel = invite(2, "")
        .replace(
            "INVITE sip:102@gosip.test SIP/2.0",
            "CANCEL sip:102@gosip.test SIP/2.0",
        )
        .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL");
    let cancel = format!(
        "{}Content-Length: 0\r\n\r\n",
        cancel.split("Content-Type").next().unwrap()
    );
    c.handle_message(T0 + 100, peer(A), cancel.as_bytes());
    let o = out(&mut c);
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK") && m.contains("CANCEL")),
        "{o:?}"
    );
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 487 ")),
        "{o:?}"
    );
    assert!(
        o.iter()
            .any(|(p, m)| p == B1 && m.starts_with("CANCEL sip:bob@"))
    );
    assert_eq!(cdr_end(&mut c), Some("missed"));
    // The callee's 487 arrives after the call is gone and is ACKed.
    c.handle_message(
        T0 + 200,
        peer(B1),
        reply(&invites[0].1, 487, "b1", None).as_bytes(),
    );
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == B1 && m.starts_with("ACK "))
    );
}

#[test]
fn an_unanswering_contact_gets_timer_a_retransmissions_then_timer_b_ends_it() {
    let mut c = ringing_for_a_minute();
    let invites = place(&mut c);
    let mut sent = vec![T0 + 2];
    let mut now = T0 + 2;
    let mut failed = None;
    while now < T0 + 40_000 && failed.is_none() {
        now += 50;
        c.handle_timeout(now);
        for (p, m) in out(&mut c) {
            if p == B1 && m == invites[0].1 {
                sent.push(now);
            }
            if p == A && m.starts_with("SIP/2.0 480 ") {
                failed = Some(now);
            }
        }
    }
    let gaps: Vec<u64> = sent.windows(2).map(|w| (w[1] - w[0]) / 50 * 50).collect();
    assert_eq!(&gaps[..4], &[500, 1000, 2000, 4000], "{gaps:?}");
    assert!(failed.is_some_and(|t| (T0 + 2 + 64 * T1..T0 + 2 + 64 * T1 + 100).contains(&t)));
}

#[test]
fn a_ringing_call_is_woken_exactly_when_its_timers_fall_due_as_they_move() {
    let mut c = ringing_for_a_minute();
    let invites = place(&mut c);
    let resent = |sent: &[(u64, String, String)]| -> Vec<u64> {
        sent.iter()
            .filter(|(_, p, m)| p == B1 && *m == invites[0].1)
            .map(|(t, ..)| *t)
            .collect()
    };
    // Timer A, on time (RFC 3261 section 17.1.1.2).
    let sent = run_on_poll(&mut c, T0 + 2, T0 + 4_000);
    assert_eq!(resent(&sent), vec![T0 + 502, T0 + 1_502, T0 + 3_502]);
    // A 180 stops Timers A and B: no more INVITEs, and the call is next
    // woken by its ring timeout, not by Timer B 32 s after the INVITE.
    c.handle_message(
        T0 + 4_000,
        peer(B1),
        reply(&invites[0].1, 180, "b1", None).as_bytes(),
    );
    out(&mut c);
    let sent = run_on_poll(&mut c, T0 + 4_000, T0 + 70_000);
    assert!(resent(&sent).is_empty(), "{sent:?}");
    let rejected: Vec<u64> = sent
        .iter()
        .filter(|(_, p, m)| p == A && m.starts_with("SIP/2.0 480 "))
        .map(|(t, ..)| *t)
        .collect();
    assert_eq!(rejected.len(), 1, "{sent:?}");
    assert!(
        (T0 + 60_000..=T0 + 60_002).contains(&rejected[0]),
        "{rejected:?}"
    );
}

#[test]
fn a_callee_hanging_up_sends_bye_to_the_caller() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(SDP)).as_bytes(),
    );
    out(&mut c);
    let b_call = header(&invites[0].1, "Call-ID")[0].to_string();
    let bye = format!(
        "BYE sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bKbb\r\nFrom: <sip:102@gosip.test>;tag=b1\r\n{}\r\nCall-ID: {b_call}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        header(&invites[0].1, "From")[0]
            .split_once(';')
            .map(|(a, b)| format!("To: {a};{b}"))
            .unwrap()
    );
    c.handle_message(T0 + 3_000, peer(B1), bye.as_bytes());
    let o = out(&mut c);
    assert!(
        o.iter()
            .any(|(p, m)| p == B1 && m.starts_with("SIP/2.0 200 OK"))
    );
    let to_a = o
        .iter()
        .find(|(p, m)| p == A && m.starts_with("BYE "))
        .map(|x| x.1.clone())
        .unwrap();
    assert!(to_a.starts_with("BYE sip:alice@192.168.1.50:5062 SIP/2.0"));
    assert!(
        to_a.contains("Call-ID: call1")
            && to_a.contains("To: \"Alice\" <sip:alice@gosip.test>;tag=at")
    );
}

/// bob's phone (B1) registered and calls ringing for 60 s: longer than
/// Timer B, so the INVITE transaction's timers decide.
fn ringing_for_a_minute() -> Core {
    let mut c = setup(&[B1]);
    c.set_config(
        T0,
        CoreConfig {
            realm: REALM.into(),
            ring_timeout_ms: 60_000,
            keepalive_interval_ms: 0,
            ..CoreConfig::default()
        },
    );
    c
}
