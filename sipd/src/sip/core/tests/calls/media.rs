//! mediad's view of a call: SDP per leg, latching addresses, early media, late offers.

use super::*;
use crate::sip::core::Leg;

#[test]
fn each_legs_sdp_goes_to_mediad_and_star_one_toggles_the_recording() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::A, media: Some(m), established: None, .. }
            if m.rtp == "192.168.1.50:4000" && m.codecs.len() == 3)));
    // DTMF before the answer does nothing.
    c.dtmf("call1", Leg::A, "*");
    c.dtmf("call1", Leg::A, "1");
    let answer = SDP
        .replace("4000", "6000")
        .replace("192.168.1.50", "192.168.1.61");
    c.handle_message(
        T0 + 20,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&answer)).as_bytes(),
    );
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::B, media: Some(m), hold: Some(false), .. }
            if m.rtp == "192.168.1.61:6000")));
    assert!(!ev.iter().any(|e| matches!(e, Event::MediaRecord { .. })));
    let ok = find(&out(&mut c), A, "SIP/2.0 200");
    let a_tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    ack_a(&mut c, T0 + 30, "ackx", 2, &a_tag, "");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::MediaUpdate {
            leg: Leg::A,
            established: Some(true),
            ..
        }
    )));
    let record = |c: &mut Core| {
        std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                Event::MediaRecord { enabled, .. } => Some(enabled),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Digits of one leg only: "*" on a, "1" on b is no match.
    c.dtmf("call1", Leg::A, "*");
    c.dtmf("call1", Leg::B, "1");
    assert!(record(&mut c).is_empty());
    for d in ["5", "*", "1"] {
        c.dtmf("call1", Leg::B, d);
    }
    assert_eq!(record(&mut c), vec![true]);
    assert!(c.calls()[0].recording);
    c.dtmf("call1", Leg::A, "1");
    assert_eq!(record(&mut c), vec![false]);
    assert!(c.set_recording("call1", true));
    assert!(!c.set_recording("nope", true));
    assert_eq!(record(&mut c), vec![true]);
}

#[test]
fn each_legs_media_names_the_ip_its_signalling_came_from_so_mediad_latches_only_there() {
    let (alice, bob) = (Some(peer(A).addr.ip()), Some(peer(B1).addr.ip()));
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    assert_eq!(signal_ips(&mut c), vec![("a", alice)]);
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    assert_eq!(signal_ips(&mut c), vec![("b", bob)]);
    let ok = find(&out(&mut c), A, "SIP/2.0 200");
    let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    ack_a(&mut c, T0 + 20, "ack2", 2, &tag, "");
    // A re-INVITE's offer/answer names both legs again.
    reinvite_from_a_answered(&mut c, &tag);
    let mut m = signal_ips(&mut c);
    m.sort();
    assert_eq!(m, vec![("a", alice), ("b", bob)]);
}

#[test]
fn early_media_from_a_callee_reaches_the_caller_through_mediad_before_the_200() {
    let mut c = setup(&[B1, B2]);
    let invites = place(&mut c);
    while c.poll_event().is_some() {}
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 183, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let p = find(&out(&mut c), A, "SIP/2.0 183 Session Progress");
    assert!(
        p.contains("m=audio 20000 RTP/AVP 0 8 101") && p.contains("c=IN IP4 127.0.0.1"),
        "{p}"
    );
    assert!(tag_of(header(&p, "To")[0]).is_some() && !header(&p, "Contact").is_empty());
    // mediad learns where the early media comes from.
    assert_eq!(
        media_updates(&mut c),
        vec![("b", None, "192.168.1.61:6000".to_string())]
    );
    // The other contact's 180 changes nothing for the caller.
    c.handle_message(
        T0 + 20,
        peer(B2),
        reply(&invites[1].1, 180, "b2", None).as_bytes(),
    );
    assert!(out(&mut c).iter().all(|(p, _)| p != A));
    c.handle_message(
        T0 + 3_000,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let ok = find(&out(&mut c), A, "SIP/2.0 200 OK");
    assert!(ok.contains("m=audio 20000 RTP/AVP 0 8 101"), "{ok}");
}

#[test]
fn a_late_offer_call_takes_the_offer_from_the_200_and_the_answer_from_the_ack() {
    let mut c = setup(&[B1]);
    let invites = place_to(&mut c, "102", "", "internal", "");
    let inv = &invites[0].1;
    assert!(
        inv.ends_with("Content-Length: 0\r\n\r\n") && header(inv, "Content-Type").is_empty(),
        "{inv}"
    );
    let ok = reply(inv, 200, "b1", Some(&bob_sdp("")));
    c.handle_message(T0 + 10, peer(B1), ok.as_bytes());
    let o = out(&mut c);
    assert!(
        o.iter().all(|(p, _)| p != B1),
        "no ACK before alice answers: {o:?}"
    );
    let to_a = find(&o, A, "SIP/2.0 200 OK");
    assert!(
        to_a.contains("m=audio 20000 RTP/AVP 0 8 101") && to_a.contains("c=IN IP4 127.0.0.1"),
        "{to_a}"
    );
    let tag = tag_of(header(&to_a, "To")[0]).unwrap().to_string();
    // bob's re-sent 200 still waits.
    c.handle_message(T0 + 500, peer(B1), ok.as_bytes());
    assert!(out(&mut c).iter().all(|(p, _)| p != B1));
    while c.poll_event().is_some() {}
    ack_a(&mut c, T0 + 600, "ack2", 2, &tag, SDP);
    let ack = find(&out(&mut c), B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), vec!["1 ACK"]);
    assert!(
        ack.contains("m=audio 20002 RTP/AVP 0 8 101") && ack.contains("c=IN IP4 127.0.0.1"),
        "{ack}"
    );
    let m = media_updates(&mut c);
    assert!(
        m.contains(&("a", Some(false), "192.168.1.50:4000".into())),
        "{m:?}"
    );
    assert!(
        m.contains(&("b", Some(false), "192.168.1.61:6000".into())),
        "{m:?}"
    );
    c.handle_message(T0 + 1_000, peer(B1), ok.as_bytes());
    assert!(
        out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack),
        "the same ACK again"
    );
    assert_eq!(c.calls()[0].state, "up");
}

#[test]
fn a_late_offer_ack_without_an_answer_ends_the_call() {
    let mut c = setup(&[B1]);
    let invites = place_to(&mut c, "102", "", "internal", "");
    c.handle_message(
        T0 + 10,
        peer(B1),
        reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
    );
    let tag = tag_of(header(&find(&out(&mut c), A, "SIP/2.0 200"), "To")[0])
        .unwrap()
        .to_string();
    ack_a(&mut c, T0 + 600, "ack2", 2, &tag, "");
    let o = out(&mut c);
    find(&o, B1, "ACK ");
    find(&o, B1, "BYE ");
    find(&o, A, "BYE ");
    assert!(c.calls().is_empty());
}

#[test]
fn an_offerless_reinvite_gets_the_other_sides_offer_and_its_answer_from_the_ack() {
    let mut c = setup(&[B1]);
    let (_, tag) = answered(&mut c);
    c.handle_message(
        T0 + 2_000,
        peer(A),
        from_a("INVITE", 3, &tag, "", "").as_bytes(),
    );
    let to_b = find(&out(&mut c), B1, "INVITE ");
    assert!(to_b.ends_with("Content-Length: 0\r\n\r\n"), "{to_b}");
    let ok = bob_ok(&to_b);
    c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
    let o = out(&mut c);
    assert!(
        o.iter().all(|(p, _)| p != B1),
        "bob's ACK waits for alice's answer"
    );
    let to_a = find(&o, A, "SIP/2.0 200 OK");
    assert!(to_a.contains("m=audio 20000 RTP/AVP 0 8 101"), "{to_a}");
    let answer = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
    ack_a(&mut c, T0 + 2_100, "ack3", 3, &tag, &answer);
    let ack = find(&out(&mut c), B1, "ACK sip:bob@192.168.1.61:5060 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
    assert!(
        ack.contains("m=audio 20002 ") && ack.contains("a=sendonly"),
        "{ack}"
    );
    let m = media_updates(&mut c);
    assert!(
        m.contains(&("a", Some(true), "192.168.1.50:4000".into())),
        "{m:?}"
    );
    c.handle_message(T0 + 2_600, peer(B1), ok.as_bytes());
    assert!(out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack));
}
