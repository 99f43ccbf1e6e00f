//! Attended transfer (REFER with Replaces, RFC 3891): bob answered alice
//! (call1), called carol (call2), and joins them, sending the REFER in
//! either call; and the Replaces sipd refuses.

use super::park::dials;
use super::transfer::{C1, carol_sdp, notified, with_carol};
use super::*;
use crate::sip::core::Leg;

/// A request from bob inside call2, which he placed (`a_tag` is sipd's).
fn from_bob2(method: &str, cseq: u32, a_tag: &str, extra: &str) -> String {
    from_bob_in(("call2", "103"), method, cseq, a_tag, extra)
}

/// A request from bob inside a call he placed (Call-ID, dialled user).
fn from_bob_in(call: (&str, &str), method: &str, cseq: u32, a_tag: &str, extra: &str) -> String {
    let (call_id, dialed) = call;
    format!(
        "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bK{call_id}{}{cseq}\r\nMax-Forwards: 70\r\n\
         From: <sip:bob@gosip.test>;tag=bobt\r\nTo: <sip:{dialed}@gosip.test>;tag={a_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:bob@{B1}>\r\n{extra}Content-Length: 0\r\n\r\n",
        method.to_ascii_lowercase(),
    )
}

/// The two calls: alice-bob (call1, bob answered) and bob-carol (call2,
/// bob placed it, carol answered, bob ACKed). Returns bob's call1 INVITE,
/// carol's call2 INVITE and sipd's tag in bob's call2 dialog.
fn two_calls(c: &mut Core) -> (String, String, String) {
    let (b_invite, _) = answered(c);
    let o = dials(c, T0 + 2_000, ("bob", B1, "call2"), "103", &bob_sdp(""));
    find(&o, B1, "SIP/2.0 100 Trying");
    c.media_ready(T0 + 2_010, "call2", Some((20010, 20012)));
    let to_carol = find(&out(c), C1, "INVITE sip:carol@");
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 200, "c1", Some(&carol_sdp())).as_bytes(),
    );
    let ok = find(&out(c), B1, "SIP/2.0 200 OK");
    let a_tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    c.handle_message(
        T0 + 3_010,
        peer(B1),
        from_bob2("ACK", 2, &a_tag, "").as_bytes(),
    );
    while c.poll_event().is_some() {}
    out(c);
    (b_invite, to_carol, a_tag)
}

/// `;`, `=` and `@` escaped as phones put a Replaces in a URI.
fn escaped(call_id: &str, to_tag: &str, from_tag: &str) -> String {
    format!("{call_id};to-tag={to_tag};from-tag={from_tag}")
        .replace('@', "%40")
        .replace(';', "%3B")
        .replace('=', "%3D")
}

/// After the REFER: bob told and hung up in both calls, carol moved onto
/// call1's mediad port (re-INVITE, answered), call2 over; then carol hangs
/// up and alice gets the BYE, the CDR naming the transfer.
fn joined(c: &mut Core, o: &[(String, String)], refer_in: &str, to_carol: &str) {
    let accepted = find(o, B1, "SIP/2.0 202 Accepted");
    assert_eq!(header(&accepted, "Call-ID"), vec![refer_in]);
    let notify = find(o, B1, "NOTIFY ");
    assert_eq!(header(&notify, "Call-ID"), vec![refer_in]);
    assert_eq!(notified(&notify).0, "SIP/2.0 200 OK");
    let byes: Vec<&String> = o
        .iter()
        .filter(|(p, m)| p == B1 && m.starts_with("BYE "))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(byes.len(), 2, "bob hung up in both calls: {o:?}");
    assert!(
        o.iter().all(|(p, m)| !(p == C1 && m.starts_with("BYE "))),
        "{o:?}"
    );
    assert!(o.iter().all(|(p, _)| p != A), "alice was not held: {o:?}");
    let reinvite = find(o, C1, "INVITE ");
    assert_eq!(header(&reinvite, "Call-ID"), header(to_carol, "Call-ID"));
    assert!(reinvite.contains("m=audio 20002 "), "{reinvite}");
    assert!(!reinvite.contains("a=sendonly"), "{reinvite}");
    assert!(header(&reinvite, "CSeq") == vec!["2 INVITE"], "{reinvite}");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::Cdr(Cdr::End { call_id, reason, .. }) if call_id == "call2" && reason.contains("attended"))), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::MediaRelease { call_id, .. } if call_id == "call2")),
        "{ev:?}"
    );
    assert_eq!(c.calls().len(), 1);
    // carol takes the new port.
    let moved = carol_sdp().replace("7000", "7100");
    c.handle_message(
        T0 + 5_000,
        peer(C1),
        reply(&reinvite, 200, "c1", Some(&moved)).as_bytes(),
    );
    find(&out(c), C1, "ACK ");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { call_id, leg: Leg::B, media: Some(m), .. } if call_id == "call1" && m.rtp == "192.168.1.70:7100")), "{ev:?}");
    // carol hangs up in her dialog: alice hears it.
    let bye = callee_bye(to_carol, C1, "c1");
    c.handle_message(T0 + 9_000, peer(C1), bye.as_bytes());
    let o = out(c);
    find(&o, C1, "SIP/2.0 200 OK");
    find(&o, A, "BYE ");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::Cdr(Cdr::End { call_id, reason, .. }) if call_id == "call1" && reason.contains("transferred by 102 to 103 (attended)"))), "{ev:?}");
}

#[test]
fn a_refer_to_the_first_call_naming_the_consult_call_joins_caller_and_target() {
    let mut c = with_carol();
    let (b_invite, to_carol, a_tag) = two_calls(&mut c);
    let rt = format!(
        "Refer-To: <sip:103@gosip.test?Replaces={}>\r\n",
        escaped("call2", &a_tag, "bobt")
    );
    let refer = from_b(&b_invite, "REFER", 3, "", "").replace("Contact:", &format!("{rt}Contact:"));
    c.handle_message(T0 + 4_000, peer(B1), refer.as_bytes());
    let o = out(&mut c);
    let refer_in = header(&b_invite, "Call-ID")[0].to_string();
    joined(&mut c, &o, &refer_in, &to_carol);
}

#[test]
fn a_refer_to_the_consult_call_naming_the_first_call_joins_them_too() {
    let mut c = with_carol();
    let (b_invite, to_carol, a_tag) = two_calls(&mut c);
    // bob's dialog in call1: its Call-ID, sipd's tag (From of the INVITE
    // bob got) and bob's ("b1").
    let sipd_tag = tag_of(header(&b_invite, "From")[0]).unwrap().to_string();
    let rt = format!(
        "Refer-To: <sip:101@gosip.test?Replaces={}>\r\n",
        escaped(header(&b_invite, "Call-ID")[0], &sipd_tag, "b1")
    );
    c.handle_message(
        T0 + 4_000,
        peer(B1),
        from_bob2("REFER", 3, &a_tag, &rt).as_bytes(),
    );
    let o = out(&mut c);
    joined(&mut c, &o, "call2", &to_carol);
}

#[test]
fn a_replaces_naming_no_dialog_or_one_that_cannot_be_joined_changes_nothing() {
    let mut c = with_carol();
    let (b_invite, _, a_tag) = two_calls(&mut c);
    let refer = |cseq: u32, rep: &str| {
        let rt = format!("Refer-To: <sip:103@gosip.test?Replaces={rep}>\r\n");
        from_b(&b_invite, "REFER", cseq, "", "").replace("Contact:", &format!("{rt}Contact:"))
    };
    let cases = [
        // A wrong tag: no such dialog.
        (escaped("call2", &a_tag, "nottheirs"), "SIP/2.0 481 "),
        // call1's own caller dialog: the same call.
        (escaped("call1", "x", "at"), "SIP/2.0 481 "),
        // No tags at all.
        ("call2".to_string(), "SIP/2.0 400 "),
    ];
    for (i, (rep, want)) in cases.iter().enumerate() {
        c.handle_message(
            T0 + 4_000 + i as u64,
            peer(B1),
            refer(3 + i as u32, rep).as_bytes(),
        );
        let o = out(&mut c);
        find(&o, B1, want);
        assert!(o.iter().all(|(p, _)| p == B1), "{o:?}");
        assert!(o.iter().all(|(_, m)| !m.starts_with("BYE ")), "{o:?}");
    }
    assert_eq!(c.calls().len(), 2);
}

#[test]
fn a_replaces_naming_another_phones_call_is_forbidden() {
    let mut c = with_carol();
    let (b_invite, _) = answered(&mut c);
    // carol's own call to bob (call2): bob answers it too.
    let o = dials(
        &mut c,
        T0 + 2_000,
        ("carol", C1, "call2"),
        "102",
        &carol_sdp(),
    );
    find(&o, C1, "SIP/2.0 100 Trying");
    c.media_ready(T0 + 2_010, "call2", Some((20010, 20012)));
    let to_bob = find(&out(&mut c), B1, "INVITE sip:bob@");
    c.handle_message(
        T0 + 3_000,
        peer(B1),
        reply(&to_bob, 200, "b2", Some(&bob_sdp(""))).as_bytes(),
    );
    let ok = find(&out(&mut c), C1, "SIP/2.0 200 OK");
    let carol_tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    // bob names carol's dialog with sipd (Call-ID and both tags known to
    // him): it is not his, so nothing moves.
    let rt = format!(
        "Refer-To: <sip:103@gosip.test?Replaces={}>\r\n",
        escaped("call2", &carol_tag, "carolt")
    );
    let refer = from_b(&b_invite, "REFER", 3, "", "").replace("Contact:", &format!("{rt}Contact:"));
    c.handle_message(T0 + 4_000, peer(B1), refer.as_bytes());
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 403 ");
    assert!(
        o.iter()
            .all(|(_, m)| !m.starts_with("BYE ") && !m.starts_with("INVITE ")),
        "{o:?}"
    );
    assert_eq!(c.calls().len(), 2);
}

/// bob places a call to `dialed` (answered by the phone at `callee` with
/// `sdp`) and ACKs it; sipd's tag in bob's dialog and the INVITE the
/// callee got.
fn bob_calls(
    c: &mut Core,
    now: u64,
    call: (&str, &str),
    callee: &str,
    sdp: &str,
    ports: (u16, u16),
) -> (String, String) {
    let (call_id, dialed) = call;
    let o = dials(c, now, ("bob", B1, call_id), dialed, &bob_sdp(""));
    find(&o, B1, "SIP/2.0 100 Trying");
    c.media_ready(now + 10, call_id, Some(ports));
    let to_callee = find(&out(c), callee, "INVITE ");
    c.handle_message(
        now + 20,
        peer(callee),
        reply(&to_callee, 200, "cc", Some(sdp)).as_bytes(),
    );
    let ok = find(&out(c), B1, "SIP/2.0 200 OK");
    let a_tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
    c.handle_message(
        now + 30,
        peer(B1),
        from_bob_in(call, "ACK", 2, &a_tag, "").as_bytes(),
    );
    out(c);
    (a_tag, to_callee)
}

#[test]
fn a_phone_that_placed_both_calls_joins_the_two_people_it_called() {
    let mut c = with_carol();
    // alice's phone is registered too: bob calls her, then carol.
    c.restore(bound(DeviceId(1), format!("sip:alice@{A}"), peer(A)));
    let (tag1, to_alice) = bob_calls(&mut c, T0, ("callb1", "101"), A, SDP, (20020, 20022));
    let (tag2, to_carol) = bob_calls(
        &mut c,
        T0 + 2_000,
        ("callb2", "103"),
        C1,
        &carol_sdp(),
        (20030, 20032),
    );
    while c.poll_event().is_some() {}
    let rt = format!(
        "Refer-To: <sip:103@gosip.test?Replaces={}>\r\n",
        escaped("callb2", &tag2, "bobt")
    );
    c.handle_message(
        T0 + 4_000,
        peer(B1),
        from_bob_in(("callb1", "101"), "REFER", 3, &tag1, &rt).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 202 Accepted");
    assert_eq!(notified(&find(&o, B1, "NOTIFY ")).0, "SIP/2.0 200 OK");
    assert_eq!(
        o.iter()
            .filter(|(p, m)| p == B1 && m.starts_with("BYE "))
            .count(),
        2,
        "{o:?}"
    );
    // carol moves onto callb1's A-leg port; alice is not disturbed.
    let reinvite = find(&o, C1, "INVITE ");
    assert_eq!(header(&reinvite, "Call-ID"), header(&to_carol, "Call-ID"));
    assert!(reinvite.contains("m=audio 20020 "), "{reinvite}");
    assert!(o.iter().all(|(p, _)| p != A), "{o:?}");
    c.handle_message(
        T0 + 5_000,
        peer(C1),
        reply(&reinvite, 200, "cc", Some(&carol_sdp())).as_bytes(),
    );
    find(&out(&mut c), C1, "ACK ");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { call_id, leg: Leg::A, media: Some(m), .. } if call_id == "callb1" && m.rtp == "192.168.1.70:7000")), "{ev:?}");
    // alice hangs up in her dialog: carol hears it, and the CDR names it.
    let bye = callee_bye(&to_alice, A, "cc");
    c.handle_message(T0 + 9_000, peer(A), bye.as_bytes());
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 200 OK");
    find(&o, C1, "BYE ");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::Cdr(Cdr::End { call_id, reason, .. }) if call_id == "callb1" && reason.contains("transferred by 102 to 103 (attended)"))), "{ev:?}");
}

#[test]
fn a_phone_that_answered_both_calls_joins_the_two_callers() {
    let mut c = with_carol();
    let (b_invite, a_tag1) = answered(&mut c);
    // carol calls bob too (call waiting), and bob answers her.
    let o = dials(
        &mut c,
        T0 + 2_000,
        ("carol", C1, "call2"),
        "102",
        &carol_sdp(),
    );
    find(&o, C1, "SIP/2.0 100 Trying");
    c.media_ready(T0 + 2_010, "call2", Some((20010, 20012)));
    let to_bob2 = find(&out(&mut c), B1, "INVITE sip:bob@");
    c.handle_message(
        T0 + 3_000,
        peer(B1),
        reply(&to_bob2, 200, "b2", Some(&bob_sdp(""))).as_bytes(),
    );
    let ok = find(&out(&mut c), C1, "SIP/2.0 200 OK");
    let ack = format!(
        "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {C1};branch=z9hG4bKcack\r\nMax-Forwards: 70\r\n\
         From: <sip:carol@gosip.test>;tag=carolt\r\nTo: {}\r\nCall-ID: call2\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "To")[0]
    );
    c.handle_message(T0 + 3_010, peer(C1), ack.as_bytes());
    out(&mut c);
    while c.poll_event().is_some() {}
    // bob joins them: a REFER to alice naming his dialog in carol's call.
    let sipd_tag = tag_of(header(&to_bob2, "From")[0]).unwrap().to_string();
    let rt = format!(
        "Refer-To: <sip:103@gosip.test?Replaces={}>\r\n",
        escaped(header(&to_bob2, "Call-ID")[0], &sipd_tag, "b2")
    );
    let refer = from_b(&b_invite, "REFER", 3, "", "").replace("Contact:", &format!("{rt}Contact:"));
    c.handle_message(T0 + 4_000, peer(B1), refer.as_bytes());
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 202 Accepted");
    assert_eq!(
        o.iter()
            .filter(|(p, m)| p == B1 && m.starts_with("BYE "))
            .count(),
        2,
        "{o:?}"
    );
    // sipd re-INVITEs carol in her own dialog, onto call1's B-leg port.
    let reinvite = find(&o, C1, "INVITE ");
    assert_eq!(header(&reinvite, "Call-ID"), vec!["call2"]);
    assert!(
        header(&reinvite, "To")[0].ends_with(";tag=carolt"),
        "{reinvite}"
    );
    assert!(reinvite.contains("m=audio 20002 "), "{reinvite}");
    assert!(o.iter().all(|(p, _)| p != A), "{o:?}");
    c.handle_message(
        T0 + 5_000,
        peer(C1),
        reply(&reinvite, 200, "x", Some(&carol_sdp())).as_bytes(),
    );
    find(&out(&mut c), C1, "ACK ");
    // alice hangs up: carol gets the BYE in her dialog.
    c.handle_message(
        T0 + 9_000,
        peer(A),
        from_a("BYE", 3, &a_tag1, "", "").as_bytes(),
    );
    let o = out(&mut c);
    let bye = find(&o, C1, "BYE ");
    assert_eq!(header(&bye, "Call-ID"), vec!["call2"]);
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(e,
        Event::Cdr(Cdr::End { call_id, reason, .. }) if call_id == "call1" && reason.contains("transferred by 102 to 103 (attended)"))), "{ev:?}");
}
