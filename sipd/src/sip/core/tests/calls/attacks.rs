//! Attacks on live calls from an address that is not the leg's.

use super::*;

const EVIL: &str = "203.0.113.66:5062";

#[test]
fn a_forged_200_from_another_address_does_not_answer_the_call() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    let forged = reply(&invites[0].1, 200, "evil", Some(SDP));
    c.handle_message(T0 + 10, peer(EVIL), forged.as_bytes());
    let o = out(&mut c);
    assert!(
        o.is_empty(),
        "the forger got nothing, the caller no 200: {o:?}"
    );
    assert_eq!(c.stats.dropped_wrong_source, 1);
    assert_eq!(c.calls()[0].state, "ringing");
    let real = reply(&invites[0].1, 200, "b1", Some(SDP));
    c.handle_message(T0 + 20, peer(B1), real.as_bytes());
    find(&out(&mut c), A, "SIP/2.0 200 OK");
}

#[test]
fn forged_in_dialog_requests_neither_end_nor_redirect_the_call() {
    let mut c = setup(&[B1]);
    let (b_invite, tag) = answered(&mut c);
    let attempts = [
        // The caller's dialog, right tags, wrong address.
        (EVIL, from_a("BYE", 3, &tag, "", "")),
        (EVIL, from_a("INVITE", 4, &tag, "application/sdp", SDP)),
        // The caller's address (spoofed), guessed To tag.
        (A, from_a("BYE", 5, "0123456789abcdef", "", "")),
        // The callee's dialog from elsewhere.
        (EVIL, from_b(&b_invite, "BYE", 2, "", "")),
    ];
    for (src, m) in attempts {
        c.handle_message(T0 + 100, peer(src), m.as_bytes());
        let o = out(&mut c);
        assert!(
            o.iter()
                .all(|(p, m)| p == src && m.starts_with("SIP/2.0 481 ")),
            "{o:?}"
        );
    }
    assert_eq!(c.calls().len(), 1, "the call is still up");
    assert!(cdr_end(&mut c).is_none());
    // The real caller still hangs up.
    c.handle_message(T0 + 200, peer(A), from_a("BYE", 6, &tag, "", "").as_bytes());
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 200 OK");
    find(&o, B1, "BYE ");
    assert_eq!(cdr_end(&mut c), Some("answered"));
}

#[test]
fn a_forged_cancel_from_another_address_does_not_end_a_ringing_call() {
    let mut c = setup(&[B1]);
    place(&mut c);
    let cancel = format!(
        "CANCEL sip:102@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa2;rport\r\nMax-Forwards: 70\r\n\
         From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:102@gosip.test>\r\nCall-ID: call1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    c.handle_message(T0 + 10, peer(EVIL), cancel.as_bytes());
    let o = out(&mut c);
    find(&o, EVIL, "SIP/2.0 481 ");
    assert!(o.iter().all(|(p, _)| p == EVIL), "{o:?}");
    assert_eq!(c.calls().len(), 1);
    c.handle_message(T0 + 20, peer(A), cancel.as_bytes());
    let o = out(&mut c);
    find(&o, B1, "CANCEL ");
    find(&o, A, "SIP/2.0 487 ");
}

#[test]
fn forged_failures_from_a_trunk_address_never_ban_the_trunk() {
    let mut c = setup(&[B1]);
    let mut cfg = c.config().clone();
    cfg.trunk_ips = vec![peer(A).addr.ip()];
    let (md5, sha) = ha1("twilio", REALM, "trunkpw");
    cfg.trunk = Some(Device {
        id: TRUNK_ID,
        username: "twilio".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: None,
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    });
    c.set_config(T0, cfg);
    let (guess, _) = ha1("twilio", REALM, "guess");
    let failures = |c: &mut Core, src: &str| {
        for i in 0..100u64 {
            let inv = |auth: &str| {
                format!(
                    "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKf{i}{}\r\nMax-Forwards: 70\r\n\
                     From: <sip:+15557654321@twilio.test>;tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: f{i}\r\nCSeq: 1 INVITE\r\n\
                     {auth}Content-Length: 0\r\n\r\n",
                    auth.len()
                )
            };
            c.handle_message(T0 + i, peer(src), inv("").as_bytes());
            let o = out(c);
            let Some((_, ch)) = o.first() else { break };
            let bad = inv(&trunk_auth(ch, &guess));
            c.handle_message(T0 + i, peer(src), bad.as_bytes());
            out(c);
        }
    };
    failures(&mut c, A);
    assert!(!c.is_banned(peer(A).addr.ip(), T0 + 200));
    // The trunk still gets in.
    from_trunk(&mut c, "t9", "<sip:+15557654321@twilio.test>", "");
    // The same failures from any other address do ban it.
    failures(&mut c, B2);
    assert!(c.is_banned(peer(B2).addr.ip(), T0 + 200));
}
