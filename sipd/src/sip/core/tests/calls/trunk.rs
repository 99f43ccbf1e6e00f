//! Calls with the Twilio trunk: its INVITEs, failures relayed, the caller's trust mark.

use super::*;

#[test]
fn a_trunk_invite_authenticated_with_the_trunk_credentials_rings_the_named_devices() {
    let mut c = setup(&[B1, B2]);
    let (md5, sha) = ha1("twilio", REALM, "trunkpw");
    c.set_config(
        T0,
        CoreConfig {
            realm: REALM.into(),
            trunk: Some(Device {
                id: TRUNK_ID,
                username: "twilio".into(),
                ha1_md5: md5.clone(),
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
            }),
            ..CoreConfig::default()
        },
    );
    let inv = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKt{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:+15557654321@twilio.test>;tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: trunk1\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:twilio@{A}>\r\nX-GoSIP-CallSid: CA123\r\nX-GoSIP-Devices: 2\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        )
    };
    c.handle_message(T0, peer(A), inv(1, "").as_bytes());
    let ch = out(&mut c).remove(0).1;
    assert!(ch.starts_with("SIP/2.0 407 "));
    let auth = trunk_auth(&ch, &md5);
    c.handle_message(T0 + 1, peer(A), inv(2, &auth).as_bytes());
    assert!(out(&mut c)[0].1.starts_with("SIP/2.0 100 Trying"));
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e, Event::Cdr(Cdr::Start { direction: "inbound", device_id: DeviceId(2), call_sid: Some(sid), from, .. }) if sid == "CA123" && from == "+15557654321")), "{ev:?}");
    c.media_ready(T0 + 2, "trunk1", Some((20000, 20002)));
    let o = out(&mut c);
    assert_eq!(o.len(), 2, "both of bob's contacts ring");
    // A wrong trunk password is refused like any other.
    let bad = auth.replace("response=\"", "response=\"0");
    c.handle_message(
        T0 + 3,
        peer(A),
        inv(3, &bad).replace("trunk1", "trunk2").as_bytes(),
    );
    assert!(out(&mut c)[0].1.starts_with("SIP/2.0 403 "));
}

#[test]
fn trunk_failures_other_than_busy_decline_or_no_answer_end_as_failed() {
    let cases = [
        (486, "Busy Here", "486 Busy Here", "busy"),
        (600, "Busy Everywhere", "486 Busy Here", "busy"),
        (603, "Decline", "603 Decline", "rejected"),
        (480, "Temporarily Unavailable", "480 ", "missed"),
        (408, "Request Timeout", "480 ", "missed"),
        (487, "Request Terminated", "480 ", "missed"),
        (404, "Not Found", "404 Not Found", "failed"),
        (403, "Forbidden", "403 Forbidden", "failed"),
        (
            484,
            "Address Incomplete",
            "484 Address Incomplete",
            "failed",
        ),
        (
            488,
            "Not Acceptable Here",
            "488 Not Acceptable Here",
            "failed",
        ),
        (500, "Server Internal Error", "502 Bad Gateway", "failed"),
        (503, "Service Unavailable", "502 Bad Gateway", "failed"),
        (
            604,
            "Does Not Exist Anywhere",
            "604 Does Not Exist Anywhere",
            "failed",
        ),
    ];
    for (status, reason, relayed, disposition) in cases {
        let mut c = outbound_core();
        let inv = place_to(&mut c, "5551234567", SDP, "outbound", "");
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].0, TRUNK);
        let r =
            reply(&inv[0].1, status, "tw", None).replacen(" X\r\n", &format!(" {reason}\r\n"), 1);
        c.handle_message(T0 + 10, peer(TRUNK), r.as_bytes());
        let o = out(&mut c);
        find(&o, TRUNK, "ACK ");
        let to_a = find(&o, A, "SIP/2.0 ");
        assert!(
            to_a.starts_with(&format!("SIP/2.0 {relayed}")),
            "{status}: {to_a}"
        );
        assert_eq!(cdr_end(&mut c), Some(disposition), "{status}");
    }
    // The trunk refuses the credentials: 502, not a challenge the
    // phone would answer with its own.
    let mut c = outbound_core();
    let inv = place_to(&mut c, "5551234567", SDP, "outbound", "");
    let challenge = |req: &str| {
        reply(req, 407, "tw", None).replacen(
            "Contact:",
            "Proxy-Authenticate: Digest realm=\"sip.twilio.com\", nonce=\"n1\"\r\nContact:",
            1,
        )
    };
    c.handle_message(T0 + 10, peer(TRUNK), challenge(&inv[0].1).as_bytes());
    let retry = find(&out(&mut c), TRUNK, "INVITE ");
    assert!(!header(&retry, "Proxy-Authorization").is_empty());
    c.handle_message(T0 + 20, peer(TRUNK), challenge(&retry).as_bytes());
    let to_a = find(&out(&mut c), A, "SIP/2.0 ");
    assert!(to_a.starts_with("SIP/2.0 502 Bad Gateway"), "{to_a}");
    assert_eq!(cdr_end(&mut c), Some("failed"));
    // A trunk that never answers: Timer B, 503.
    let mut c = outbound_core();
    place_to(&mut c, "5551234567", SDP, "outbound", "");
    let mut now = T0;
    let mut to_a = None;
    while now < T0 + 40_000 && to_a.is_none() {
        now += 500;
        c.handle_timeout(now);
        to_a = out(&mut c).into_iter().find(|(p, _)| p == A).map(|x| x.1);
    }
    let to_a = to_a.expect("an answer to the caller");
    assert!(
        to_a.starts_with("SIP/2.0 503 Service Unavailable"),
        "{to_a}"
    );
    assert!(header(&to_a, "Warning")[0].contains("did not respond"));
    assert_eq!(cdr_end(&mut c), Some("failed"));
    // A trunk the shell cannot connect to (TLS refused): 503 at once, not
    // after Timer B; a connection failure elsewhere changes nothing.
    let mut c = outbound_core();
    place_to(&mut c, "5551234567", SDP, "outbound", "");
    c.unreachable(T0 + 100, "127.0.0.1:5098".parse().unwrap());
    assert!(out(&mut c).iter().all(|(p, _)| p != A));
    c.unreachable(T0 + 200, TRUNK.parse().unwrap());
    let to_a = find(&out(&mut c), A, "SIP/2.0 ");
    assert!(
        to_a.starts_with("SIP/2.0 503 Service Unavailable"),
        "{to_a}"
    );
    assert_eq!(cdr_end(&mut c), Some("failed"));
}

#[test]
fn an_inbound_call_shows_the_callers_trust_mark_in_the_display_name() {
    let mut c = setup(&[B1]);
    let from = |c: &mut Core, id: &str, from: &str, extra: &str| {
        let inv = from_trunk(c, id, from, extra);
        header(&inv, "From")[0]
            .split(";tag=")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        from(
            &mut c,
            "t1",
            r#""Jane \"JJ\" Doe" <sip:+15557654321@twilio.test>"#,
            "X-GoSIP-Trust: verified\r\n"
        ),
        "\"\u{2713} Jane \\\"JJ\\\" Doe\" <sip:+15557654321@gosip.test>"
    );
    // Without a name the number stays in view.
    assert_eq!(
        from(
            &mut c,
            "t2",
            "<sip:+15557654321@twilio.test>",
            "X-GoSIP-Trust: spam\r\n"
        ),
        "\"SPAM? +15557654321\" <sip:+15557654321@gosip.test>"
    );
    assert_eq!(
        from(
            &mut c,
            "t3",
            "<sip:+15557654321@twilio.test>",
            "X-Twilio-VerStat: TN-Validation-Passed-A\r\n"
        ),
        "\"\u{2713} +15557654321\" <sip:+15557654321@gosip.test>"
    );
    for (id, extra) in [
        ("t4", "X-GoSIP-Trust: unverified\r\n"),
        ("t5", "X-Twilio-VerStat: TN-Validation-Passed-B\r\n"),
        ("t6", ""),
    ] {
        assert_eq!(
            from(&mut c, id, "<sip:+15557654321@twilio.test>", extra),
            "<sip:+15557654321@gosip.test>"
        );
    }
    // A device cannot give itself a mark: only trunk calls carry one.
    let mut c = setup(&[B1]);
    let inv = place_to(
        &mut c,
        "102",
        SDP,
        "internal",
        "X-GoSIP-Trust: verified\r\n",
    );
    assert!(
        header(&inv[0].1, "From")[0].starts_with("\"Alice\" <sip:101@gosip.test>"),
        "{}",
        inv[0].1
    );
}

#[test]
fn a_trunk_caller_put_on_hold_by_the_phone_hears_the_hold_music() {
    let mut c = setup(&[B1]);
    let to_bob = from_trunk(&mut c, "trunk9", "<sip:+15557654321@twilio.test>", "");
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&to_bob, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let ok = find(&out(&mut c), A, "SIP/2.0 200");
    let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    let ack = format!(
        "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKtack\r\nFrom: <sip:+15557654321@twilio.test>;tag=tw\r\n\
         To: <sip:+15550001111@gosip.test>;tag={tag}\r\nCall-ID: trunk9\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    c.handle_message(T0 + 20, peer(A), ack.as_bytes());
    out(&mut c);
    while c.poll_event().is_some() {}
    // bob's Hold key: his re-INVITE goes to the trunk, whose answer says
    // it is held; mediad plays the music to the trunk's leg ("a").
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        from_b(
            &to_bob,
            "INVITE",
            2,
            "application/sdp",
            &bob_sdp("a=sendonly\r\n"),
        )
        .as_bytes(),
    );
    let to_trunk = find(&out(&mut c), A, "INVITE ");
    assert!(to_trunk.contains("a=sendonly"), "{to_trunk}");
    let held = SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101");
    let ok = respond(
        &to_trunk,
        200,
        "OK",
        "sip:twilio@192.168.1.50:5062",
        "application/sdp",
        &held,
    );
    c.handle_message(T0 + 1_050, peer(A), ok.as_bytes());
    find(&out(&mut c), B1, "SIP/2.0 200 OK");
    let music: Vec<(&str, Option<bool>)> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::MediaUpdate { leg, music, .. } => Some((ab(leg), music)),
            _ => None,
        })
        .collect();
    assert!(music.contains(&("a", Some(true))), "{music:?}");
    assert!(music.contains(&("b", Some(false))), "{music:?}");
}

#[test]
fn a_phone_that_called_out_transfers_the_outside_party_to_another_phone() {
    let mut c = outbound_core();
    let inv = place_to(&mut c, "5551234567", SDP, "outbound", "");
    let to_trunk = inv[0].1.clone();
    let trunk_sdp = SDP
        .replace("192.168.1.50", "127.0.0.1")
        .replace("4000", "9000");
    c.handle_message(
        T0 + 10,
        peer(TRUNK),
        reply(&to_trunk, 200, "tw", Some(&trunk_sdp)).as_bytes(),
    );
    let ok = find(&out(&mut c), A, "SIP/2.0 200 OK");
    let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    ack_a(&mut c, T0 + 20, "acko", 2, &tag, "");
    out(&mut c);
    while c.poll_event().is_some() {}
    // alice presses Transfer, to bob (102).
    let refer = from_a("REFER", 3, &tag, "", "")
        .replace("Contact:", "Refer-To: <sip:102@gosip.test>\r\nContact:");
    c.handle_message(T0 + 1_000, peer(A), refer.as_bytes());
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 202 Accepted");
    // bob sees the outside number calling, offered the trunk's media on
    // mediad's A-leg port; the trunk hears nothing of it.
    let to_bob = find(&o, B1, "INVITE sip:bob@");
    assert!(
        header(&to_bob, "From")[0].starts_with("<sip:+15551234567@"),
        "{to_bob}"
    );
    assert!(to_bob.contains("m=audio 20000 "), "{to_bob}");
    assert!(o.iter().all(|(p, _)| p != TRUNK), "{o:?}");
    c.handle_message(
        T0 + 2_000,
        peer(B1),
        reply(&to_bob, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, A, "BYE ");
    assert!(o.iter().all(|(p, _)| p != TRUNK), "{o:?}");
    // The trunk's BYE now reaches bob.
    let bye = callee_bye(&to_trunk, TRUNK, "tw");
    c.handle_message(T0 + 9_000, peer(TRUNK), bye.as_bytes());
    let o = out(&mut c);
    find(&o, TRUNK, "SIP/2.0 200 OK");
    find(&o, B1, "BYE ");
}
