//! Requests inside an answered call: hold, re-INVITE failures and glare, INFO, UPDATE,
//! Record-Route, timeouts.

use super::*;

#[test]
fn a_hold_reinvite_goes_to_the_callee_and_its_answer_back_with_the_directions_unchanged() {
    let mut c = setup(&[B1]);
    let (b_invite, tag) = answered(&mut c);
    let hold = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 100 Trying");
    let to_b = find(&o, B1, "INVITE ");
    // bob's dialog: his Contact, his tag, sipd's next CSeq.
    assert!(
        to_b.starts_with("INVITE sip:bob@192.168.1.62:5060 SIP/2.0"),
        "{to_b}"
    );
    assert_eq!(header(&to_b, "Call-ID"), header(&b_invite, "Call-ID"));
    assert_eq!(header(&to_b, "CSeq"), vec!["2 INVITE"]);
    assert_eq!(tag_of(header(&to_b, "To")[0]), Some("b1"));
    assert_eq!(
        tag_of(header(&to_b, "From")[0]),
        tag_of(header(&b_invite, "From")[0])
    );
    assert!(
        to_b.contains("c=IN IP4 127.0.0.1")
            && to_b.contains("m=audio 20002 RTP/AVP 0 8 101")
            && to_b.contains("a=sendonly"),
        "{to_b}"
    );
    assert!(
        media_updates(&mut c).is_empty(),
        "nothing changes before bob agrees"
    );
    let ok = respond(
        &to_b,
        200,
        "OK",
        "sip:bob@192.168.1.61:5060",
        "application/sdp",
        &bob_sdp("a=recvonly\r\n"),
    );
    c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
    let o = out(&mut c);
    // The 2xx's Contact is bob's new target (RFC 3261 section 12.2.1.2).
    let ack = find(&o, B1, "ACK sip:bob@192.168.1.61:5060 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
    let to_a = find(&o, A, "SIP/2.0 200 OK");
    assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
    assert!(
        to_a.contains("m=audio 20000 RTP/AVP 0 8 101")
            && to_a.contains("c=IN IP4 127.0.0.1")
            && to_a.contains("a=recvonly"),
        "{to_a}"
    );
    // Both legs are on hold for the RTP timeout; bob, whom alice holds,
    // hears the hold music.
    let m = hold_updates(&mut c);
    assert!(
        m.contains(&("a", Some(true), Some(false), "192.168.1.50:4000".into())),
        "{m:?}"
    );
    assert!(
        m.contains(&("b", Some(true), Some(true), "192.168.1.61:6000".into())),
        "{m:?}"
    );
    // The 200 is re-sent until alice ACKs it; bob's re-sent 200
    // gets the same ACK again.
    c.handle_timeout(T0 + 2_050 + T1);
    assert!(out(&mut c).iter().any(|(p, m)| p == A && *m == to_a));
    c.handle_message(T0 + 2_700, peer(B1), ok.as_bytes());
    assert!(out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack));
    ack_a(&mut c, T0 + 2_800, "ack3", 3, &tag, "");
    c.handle_timeout(T0 + 10_000);
    assert!(
        out(&mut c).iter().all(|(p, _)| p != A),
        "no 200 after the ACK"
    );
    // Off hold: sendrecv both ways, mediad hears hold is over.
    c.handle_message(
        T0 + 12_000,
        peer(A),
        from_a("INVITE", 4, &tag, "application/sdp", SDP).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE sip:bob@192.168.1.61:5060");
    assert!(!to_b.contains("a=sendonly"), "{to_b}");
    assert_eq!(header(&to_b, "CSeq"), vec!["3 INVITE"]);
    let ok = bob_ok(&to_b);
    c.handle_message(T0 + 12_050, peer(B1), ok.as_bytes());
    let to_a = find(&out(&mut c), A, "SIP/2.0 200 OK");
    assert!(!to_a.contains("recvonly") && header(&to_a, "CSeq") == vec!["4 INVITE"]);
    let m = hold_updates(&mut c);
    assert!(
        m.len() == 2
            && m.iter()
                .all(|(_, hold, music, _)| *hold == Some(false) && *music == Some(false)),
        "{m:?}"
    );
}

/// Each MediaUpdate as (leg, hold, hold music, its RTP address).
fn hold_updates(c: &mut Core) -> Vec<(&'static str, Option<bool>, Option<bool>, String)> {
    std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::MediaUpdate {
                leg,
                hold,
                music,
                media,
                ..
            } => Some((
                ab(leg),
                hold,
                music,
                media.map(|m| m.rtp).unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancelled_reinvite_is_cancelled_on_the_other_leg_and_its_487_comes_back() {
    let mut c = setup(&[B1]);
    let (_, tag) = answered(&mut c);
    let hold = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    // alice CANCELs before bob said anything: 200 at once, but the
    // CANCEL waits for bob's provisional answer (RFC 3261 section 9.1).
    let cancel = from_a("CANCEL", 3, &tag, "", "").replace("z9hG4bKcancel3", "z9hG4bKinvite3");
    c.handle_message(T0 + 2_100, peer(A), cancel.as_bytes());
    let o = out(&mut c);
    let ok = find(&o, A, "SIP/2.0 200 OK");
    assert_eq!(header(&ok, "CSeq"), vec!["3 CANCEL"]);
    assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
    let trying = respond(&to_b, 100, "Trying", "sip:bob@192.168.1.61:5060", "", "");
    c.handle_message(T0 + 2_200, peer(B1), trying.as_bytes());
    let o = out(&mut c);
    let cancel_b = find(&o, B1, "CANCEL ");
    // The same Request-URI, Via (branch), dialog and CSeq number.
    assert_eq!(
        cancel_b
            .split("\r\n")
            .next()
            .unwrap()
            .replace("CANCEL", "INVITE"),
        to_b.split("\r\n").next().unwrap()
    );
    for h in ["Via", "From", "To", "Call-ID"] {
        assert_eq!(header(&cancel_b, h), header(&to_b, h), "{h}");
    }
    assert_eq!(header(&cancel_b, "CSeq"), vec!["2 CANCEL"]);
    // A second provisional answer sends no second CANCEL.
    c.handle_message(T0 + 2_250, peer(B1), trying.as_bytes());
    assert!(out(&mut c).iter().all(|(_, m)| !m.starts_with("CANCEL")));
    // bob's 200 to the CANCEL stays here; his 487 goes to alice.
    let cancel_ok = respond(&cancel_b, 200, "OK", "sip:bob@192.168.1.61:5060", "", "");
    c.handle_message(T0 + 2_300, peer(B1), cancel_ok.as_bytes());
    assert!(out(&mut c).is_empty());
    let terminated = respond(
        &to_b,
        487,
        "Request Terminated",
        "sip:bob@192.168.1.61:5060",
        "",
        "",
    );
    c.handle_message(T0 + 2_350, peer(B1), terminated.as_bytes());
    let o = out(&mut c);
    let ack = find(&o, B1, "ACK ");
    assert_eq!(header(&ack, "Via"), header(&to_b, "Via"));
    let to_a = find(&o, A, "SIP/2.0 487 Request Terminated");
    assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
    assert!(media_updates(&mut c).is_empty(), "the old media stays");
    assert_eq!(c.calls()[0].state, "up");
    // A CANCEL for a re-INVITE already answered gets 200 and goes nowhere.
    let late = cancel.replace("z9hG4bKinvite3", "z9hG4bKinvite3x");
    c.handle_message(T0 + 2_400, peer(A), late.as_bytes());
    let o = out(&mut c);
    assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
}

#[test]
fn record_route_goes_back_to_the_caller_and_routes_each_legs_requests() {
    let mut c = setup(&[B1]);
    // alice sits behind a strict router, bob behind two loose ones.
    let invites = place_to(
        &mut c,
        "102",
        SDP,
        "internal",
        "Record-Route: <sip:pa.example>\r\n",
    );
    let b_invite = find(&invites, B1, "INVITE ");
    assert!(
        header(&b_invite, "Record-Route").is_empty(),
        "each leg has its own route set"
    );
    let ok = reply(&b_invite, 200, "b1", Some(&bob_sdp(""))).replacen(
        "Contact:",
        "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nContact:",
        1,
    );
    c.handle_message(T0 + 10, peer(B1), ok.as_bytes());
    let o = out(&mut c);
    let ack = find(&o, B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
    assert_eq!(
        header(&ack, "Route"),
        vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    let to_a = find(&o, A, "SIP/2.0 200");
    assert_eq!(header(&to_a, "Record-Route"), vec!["<sip:pa.example>"]);
    let tag = tag_of(header(&to_a, "To")[0]).unwrap().to_string();
    ack_a(&mut c, T0 + 20, "ack2", 2, &tag, "");
    // A re-INVITE from alice reaches bob along his route set.
    c.handle_message(
        T0 + 1_000,
        peer(A),
        from_a("INVITE", 3, &tag, "application/sdp", SDP).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    assert_eq!(
        header(&to_b, "Route"),
        vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    let ok = respond(
        &to_b,
        200,
        "OK",
        "sip:bob@192.168.1.62:5060",
        "application/sdp",
        &bob_sdp(""),
    );
    c.handle_message(T0 + 1_050, peer(B1), ok.as_bytes());
    assert!(header(&find(&out(&mut c), B1, "ACK "), "Route").len() == 2);
    ack_a(&mut c, T0 + 1_100, "ack3", 3, &tag, "");
    // bob hangs up: the BYE to alice goes by her strict router, which
    // takes the Request-URI, her Contact going last in the Route.
    c.handle_message(
        T0 + 5_000,
        peer(B1),
        from_b(&b_invite, "BYE", 1, "", "").as_bytes(),
    );
    let bye = find(&out(&mut c), A, "BYE ");
    assert!(bye.starts_with("BYE sip:pa.example SIP/2.0"), "{bye}");
    assert_eq!(
        header(&bye, "Route"),
        vec![format!("<sip:alice@{A}>").as_str()]
    );
}

#[test]
fn a_reinvite_the_callee_refuses_is_relayed_and_the_call_keeps_its_media() {
    let mut c = setup(&[B1]);
    let (_, tag) = answered(&mut c);
    let hold = SDP.replace("a=rtpmap:101", "a=inactive\r\na=rtpmap:101");
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    assert!(to_b.contains("a=inactive"));
    let no = respond(
        &to_b,
        488,
        "Not Acceptable Here",
        "sip:bob@192.168.1.61:5060",
        "",
        "",
    );
    c.handle_message(T0 + 2_050, peer(B1), no.as_bytes());
    let o = out(&mut c);
    // ACKed in its own transaction: same branch and Request-URI.
    let ack = find(&o, B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
    assert_eq!(header(&ack, "Via"), header(&to_b, "Via"));
    assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
    let to_a = find(&o, A, "SIP/2.0 488 Not Acceptable Here");
    assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
    assert!(media_updates(&mut c).is_empty(), "the old media stays");
    assert_eq!(c.calls()[0].state, "up");
    // The failed exchange is over: the next re-INVITE goes through.
    c.handle_message(
        T0 + 3_000,
        peer(A),
        from_a("INVITE", 4, &tag, "application/sdp", &hold).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    assert_eq!(header(&to_b, "CSeq"), vec!["3 INVITE"]);
}

#[test]
fn crossing_reinvites_are_glare_and_the_callees_own_reinvite_reaches_the_caller() {
    let mut c = setup(&[B1]);
    let (b_invite, tag) = answered(&mut c);
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, &tag, "application/sdp", SDP).as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    // bob re-INVITEs at the same time: 491 (RFC 3261 section 14.2).
    let bob_hold = bob_sdp("a=sendonly\r\n");
    let bob_inv = from_b(&b_invite, "INVITE", 1, "application/sdp", &bob_hold);
    c.handle_message(T0 + 2_001, peer(B1), bob_inv.as_bytes());
    find(&out(&mut c), B1, "SIP/2.0 491 Request Pending");
    // alice's second one while her first is pending: 500 + Retry-After.
    c.handle_message(
        T0 + 2_002,
        peer(A),
        from_a("INVITE", 4, &tag, "application/sdp", SDP).as_bytes(),
    );
    let again = find(&out(&mut c), A, "SIP/2.0 500 ");
    assert_eq!(header(&again, "Retry-After"), vec!["2"]);
    // bob saw the glare too: his 491 goes to alice.
    let glare = respond(
        &to_b,
        491,
        "Request Pending",
        "sip:bob@192.168.1.61:5060",
        "",
        "",
    );
    c.handle_message(T0 + 2_003, peer(B1), glare.as_bytes());
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 491 Request Pending");
    find(&o, B1, "ACK ");
    // bob retries: alice gets it in her dialog, on mediad's port a.
    let bob_inv = bob_inv
        .replace("z9hG4bKbinvite1", "z9hG4bKbinvite2")
        .replace("CSeq: 1 ", "CSeq: 2 ");
    c.handle_message(T0 + 4_000, peer(B1), bob_inv.as_bytes());
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 100 Trying");
    let to_a = find(&o, A, "INVITE sip:alice@192.168.1.50:5062 SIP/2.0");
    assert_eq!(
        header(&to_a, "From"),
        vec![format!("<sip:102@gosip.test>;tag={tag}")]
    );
    assert_eq!(
        header(&to_a, "To"),
        vec!["\"Alice\" <sip:alice@gosip.test>;tag=at"]
    );
    assert_eq!(header(&to_a, "Call-ID"), vec!["call1"]);
    assert_eq!(header(&to_a, "CSeq"), vec!["1 INVITE"]);
    assert!(
        to_a.contains("m=audio 20000 ") && to_a.contains("a=sendonly"),
        "{to_a}"
    );
    let ok = respond(
        &to_a,
        200,
        "OK",
        "sip:alice@192.168.1.50:5062",
        "application/sdp",
        &SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101"),
    );
    c.handle_message(T0 + 4_050, peer(A), ok.as_bytes());
    let o = out(&mut c);
    let ack = find(&o, A, "ACK sip:alice@192.168.1.50:5062 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), vec!["1 ACK"]);
    let to_bob = find(&o, B1, "SIP/2.0 200 OK");
    assert_eq!(header(&to_bob, "CSeq"), vec!["2 INVITE"]);
    assert!(to_bob.contains("m=audio 20002 ") && to_bob.contains("a=recvonly"));
    let m = media_updates(&mut c);
    assert!(
        m.contains(&("b", Some(true), "192.168.1.61:6000".into())),
        "{m:?}"
    );
}

#[test]
fn info_and_update_go_to_the_other_leg_and_their_answers_come_back() {
    let mut c = setup(&[B1]);
    let (b_invite, tag) = answered(&mut c);
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INFO", 3, &tag, "application/dtmf-relay", dtmf).as_bytes(),
    );
    let o = out(&mut c);
    assert!(o.iter().all(|(p, _)| p != A), "no blind 200: {o:?}");
    let info = find(&o, B1, "INFO sip:bob@192.168.1.62:5060 SIP/2.0");
    assert_eq!(
        header(&info, "Content-Type"),
        vec!["application/dtmf-relay"]
    );
    assert_eq!(header(&info, "CSeq"), vec!["2 INFO"]);
    assert!(info.ends_with(&format!("\r\n\r\n{dtmf}")), "{info}");
    c.handle_message(
        T0 + 2_010,
        peer(B1),
        respond(&info, 200, "OK", "sip:bob@192.168.1.62:5060", "", "").as_bytes(),
    );
    let to_a = find(&out(&mut c), A, "SIP/2.0 200 OK");
    assert_eq!(header(&to_a, "CSeq"), vec!["3 INFO"]);
    // A refusal comes back as it is.
    c.handle_message(
        T0 + 2_100,
        peer(A),
        from_a("INFO", 4, &tag, "application/x-unknown", "?").as_bytes(),
    );
    let info = find(&out(&mut c), B1, "INFO ");
    c.handle_message(
        T0 + 2_110,
        peer(B1),
        respond(
            &info,
            469,
            "Bad Info Package",
            "sip:bob@192.168.1.62:5060",
            "",
            "",
        )
        .as_bytes(),
    );
    find(&out(&mut c), A, "SIP/2.0 469 Bad Info Package");
    // bob's UPDATE with an offer reaches alice on port a.
    let upd = from_b(
        &b_invite,
        "UPDATE",
        1,
        "application/sdp",
        &bob_sdp("a=sendonly\r\n"),
    );
    c.handle_message(T0 + 3_000, peer(B1), upd.as_bytes());
    let o = out(&mut c);
    assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
    let to_a = find(&o, A, "UPDATE sip:alice@192.168.1.50:5062 SIP/2.0");
    assert!(
        to_a.contains("m=audio 20000 ") && to_a.contains("a=sendonly"),
        "{to_a}"
    );
    c.handle_message(
        T0 + 3_010,
        peer(A),
        respond(
            &to_a,
            200,
            "OK",
            "sip:alice@192.168.1.50:5062",
            "application/sdp",
            &SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101"),
        )
        .as_bytes(),
    );
    let to_bob = find(&out(&mut c), B1, "SIP/2.0 200 OK");
    assert_eq!(header(&to_bob, "CSeq"), vec!["1 UPDATE"]);
    assert!(to_bob.contains("m=audio 20002 ") && to_bob.contains("a=recvonly"));
    let m = media_updates(&mut c);
    assert!(
        m.contains(&("a", Some(true), "192.168.1.50:4000".into())),
        "{m:?}"
    );
    // Outside a dialog there is nothing to relay to.
    let stray = from_a("INFO", 9, &tag, "", "").replace(&format!(";tag={tag}"), "");
    c.handle_message(T0 + 4_000, peer(A), stray.as_bytes());
    find(&out(&mut c), A, "SIP/2.0 481 ");
}

#[test]
fn an_in_call_request_the_other_side_never_answers_gets_408_and_ends_the_call() {
    let mut c = setup(&[B1]);
    let (_, tag) = answered(&mut c);
    let start = T0 + 2_000;
    c.handle_message(
        start,
        peer(A),
        from_a("INFO", 3, &tag, "application/dtmf-relay", "Signal=1\r\n").as_bytes(),
    );
    let info = find(&out(&mut c), B1, "INFO ");
    let mut sent = vec![start];
    let mut now = start;
    let mut failed = None;
    while now < start + 40_000 && failed.is_none() {
        now += 50;
        c.handle_timeout(now);
        for (p, m) in out(&mut c) {
            if p == B1 && m == info {
                sent.push(now);
            }
            if p == A && m.starts_with("SIP/2.0 408 Request Timeout") {
                failed = Some(now);
            }
        }
    }
    // Timer E doubles up to T2, Timer F ends it at 64*T1.
    let gaps: Vec<u64> = sent.windows(2).map(|w| (w[1] - w[0]) / 50 * 50).collect();
    assert_eq!(&gaps[..5], &[500, 1000, 2000, 4000, 4000], "{gaps:?}");
    assert!(failed.is_some_and(|t| (start + 64 * T1..start + 64 * T1 + 100).contains(&t)));
    assert!(c.calls().is_empty());
}

#[test]
fn a_relayed_reinvites_2xx_nobody_acks_is_resent_on_time_and_then_ends_the_call() {
    let mut c = setup(&[B1]);
    let (_, tag) = answered(&mut c);
    reinvite_from_a_answered(&mut c, &tag);
    out(&mut c);
    // Past the relay's linger time (64*T1) the core must not ask for the
    // clock in the past while the 2xx still waits for its ACK.
    let sent = run_on_poll(&mut c, T0 + 2_050, T0 + 2_050 + 40_000);
    let resent: Vec<u64> = sent
        .iter()
        .filter(|(_, p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
        .map(|(t, ..)| *t - (T0 + 2_050))
        .collect();
    // T1 doubling to T2 (RFC 3261 section 13.3.1.4).
    assert_eq!(
        resent,
        vec![
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    let bye = sent
        .iter()
        .find(|(_, p, m)| p == A && m.starts_with("BYE "))
        .map(|(t, ..)| *t - (T0 + 2_050));
    assert_eq!(bye, Some(35_500), "{sent:?}");
}
