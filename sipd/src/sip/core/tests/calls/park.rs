//! Pickup (`*8`, `*8<ext>`) and park (a transfer to `*70`, `*71<slot>`,
//! ring-back): a phone's own INVITE joins a call as its answered B side.

use super::transfer::{C1, carol_sdp, notified, refer, with_carol};
use super::*;
use crate::sip::core::Leg;

/// `user`'s INVITE from `addr` (Call-ID `call_id`, From tag `<user>t`)
/// to `dialed` with `sdp`.
fn invite_from(who: (&str, &str, &str), dialed: &str, cseq: u32, auth: &str, sdp: &str) -> String {
    let (user, addr, call_id) = who;
    format!(
        "INVITE sip:{dialed}@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{call_id}x{cseq}\r\nMax-Forwards: 70\r\n\
         From: <sip:{user}@gosip.test>;tag={user}t\r\nTo: <sip:{dialed}@gosip.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
         Contact: <sip:{user}@{addr}>\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// `who` = (user, address, Call-ID) dials `dialed`, answering the digest
/// challenge (every device's password is "pw"); what sipd sent after.
pub(super) fn dials(
    c: &mut Core,
    now: u64,
    who: (&str, &str, &str),
    dialed: &str,
    sdp: &str,
) -> Vec<(String, String)> {
    let (user, addr, _) = who;
    c.handle_message(
        now,
        peer(addr),
        invite_from(who, dialed, 1, "", sdp).as_bytes(),
    );
    let ch = out(c).remove(0).1;
    assert!(ch.starts_with("SIP/2.0 407 "), "{ch}");
    let nonce = header(&ch, "Proxy-Authenticate")[0]
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let uri = format!("sip:{dialed}@gosip.test");
    let cr = Credentials {
        username: user.into(),
        realm: REALM.into(),
        nonce: nonce.clone(),
        uri: uri.clone(),
        qop: "auth".into(),
        nc: "00000001".into(),
        cnonce: "y".into(),
        ..Default::default()
    };
    let (h, _) = ha1(user, REALM, "pw");
    let auth = format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", qop=auth, nc=00000001, cnonce=\"y\"\r\n",
        cr.expected("INVITE", &h, Algorithm::Md5)
    );
    c.handle_message(
        now + 1,
        peer(addr),
        invite_from(who, dialed, 2, &auth, sdp).as_bytes(),
    );
    out(c)
}

/// carol dials `dialed` (a new call for each `now`).
fn carol_dials(c: &mut Core, now: u64, dialed: &str, sdp: &str) -> Vec<(String, String)> {
    dials(c, now, ("carol", C1, &format!("c{now}")), dialed, sdp)
}

/// A request from carol inside her dialog with sipd (`ok` is sipd's 2xx).
fn from_carol(ok: &str, method: &str, cseq: u32) -> String {
    format!(
        "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {C1};branch=z9hG4bKc{}{cseq}\r\nMax-Forwards: 70\r\n\
         From: <sip:carol@gosip.test>;tag=carolt\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        method.to_ascii_lowercase(),
        header(ok, "To")[0],
        header(ok, "Call-ID")[0],
    )
}

fn events(c: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn cdr_reason(ev: &[Event]) -> String {
    ev.iter()
        .find_map(|e| match e {
            Event::Cdr(Cdr::End { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .expect("the call ended")
}

/// The call to bob, ringing at B1.
fn ringing(c: &mut Core) -> String {
    let invites = place(c);
    let to_bob = invites[0].1.clone();
    c.handle_message(T0 + 5, peer(B1), reply(&to_bob, 180, "b1", None).as_bytes());
    out(c);
    while c.poll_event().is_some() {}
    to_bob
}

#[test]
fn a_phone_dialling_the_pickup_code_answers_the_ringing_call_in_a_codec_both_speak() {
    let mut c = with_carol();
    let to_bob = ringing(&mut c);
    // carol speaks PCMA only; alice offered PCMU first, then PCMA.
    let pcma = carol_sdp().replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    let o = carol_dials(&mut c, T0 + 1_000, "*8", &pcma);
    let ok_c = find(&o, C1, "SIP/2.0 200 OK");
    assert!(ok_c.contains("m=audio 20002 RTP/AVP 8 101"), "{ok_c}");
    assert_eq!(header(&ok_c, "CSeq"), vec!["2 INVITE"]);
    let ok_a = find(&o, A, "SIP/2.0 200 OK");
    assert!(ok_a.contains("m=audio 20000 RTP/AVP 8 101"), "{ok_a}");
    // bob stops ringing.
    let cancel = find(&o, B1, "CANCEL ");
    assert_eq!(header(&cancel, "Call-ID"), header(&to_bob, "Call-ID"));
    let ev = events(&mut c);
    assert!(ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::B, media: Some(m), music: Some(false), .. } if m.rtp == "192.168.1.70:7000")), "{ev:?}");
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Cdr(Cdr::Answered { .. }))),
        "{ev:?}"
    );
    // No ACK from carol yet: the 2xx comes again at T1.
    c.handle_timeout(T0 + 1_600);
    let again = out(&mut c);
    assert!(
        again
            .iter()
            .any(|(p, m)| p == C1 && m.starts_with("SIP/2.0 200 OK")),
        "{again:?}"
    );
    let a_tag = tag_of(header(&ok_a, "To")[0]).unwrap().to_string();
    ack_a(&mut c, T0 + 1_700, "acka", 2, &a_tag, "");
    c.handle_message(T0 + 1_700, peer(C1), from_carol(&ok_c, "ACK", 2).as_bytes());
    c.handle_timeout(T0 + 5_000);
    assert!(
        out(&mut c).iter().all(|(p, _)| p != C1),
        "ACKed: no more 2xx to carol"
    );
    assert_eq!(c.calls()[0].state, "up");
    // carol hangs up: alice gets BYE, the CDR names the pickup.
    c.handle_message(T0 + 9_000, peer(C1), from_carol(&ok_c, "BYE", 3).as_bytes());
    let o = out(&mut c);
    find(&o, C1, "SIP/2.0 200 OK");
    find(&o, A, "BYE ");
    let reason = cdr_reason(&events(&mut c));
    assert!(reason.contains("picked up by 103"), "{reason}");
}

#[test]
fn directed_pickup_takes_only_that_extensions_call_and_nothing_ringing_is_404() {
    let mut c = with_carol();
    // Nothing rings yet.
    let o = carol_dials(&mut c, T0, "*8", &carol_sdp());
    let nf = find(&o, C1, "SIP/2.0 404 ");
    assert!(nf.contains("no call to pick up"), "{nf}");
    ringing(&mut c);
    // 103 is carol herself: nothing rings there.
    let o = carol_dials(&mut c, T0 + 1_000, "*8103", &carol_sdp());
    find(&o, C1, "SIP/2.0 404 ");
    assert!(o.iter().all(|(p, _)| p != A && p != B1), "{o:?}");
    let o = carol_dials(&mut c, T0 + 2_000, "*8102", &carol_sdp());
    find(&o, C1, "SIP/2.0 200 OK");
    find(&o, A, "SIP/2.0 200 OK");
}

#[test]
fn a_pickup_without_a_shared_codec_is_488_and_the_call_keeps_ringing() {
    let mut c = with_carol();
    ringing(&mut c);
    let g722 = carol_sdp().replace("RTP/AVP 0 8 101", "RTP/AVP 9 101");
    let o = carol_dials(&mut c, T0 + 1_000, "*8", &g722);
    find(&o, C1, "SIP/2.0 488 ");
    assert!(o.iter().all(|(p, _)| p != A && p != B1), "{o:?}");
    assert_eq!(c.calls()[0].state, "ringing");
}

/// bob answered alice and transferred her to the park code: sipd's 202,
/// NOTIFY 100, and the slot said to bob. Returns bob's INVITE and sipd's
/// tag in alice's dialog.
fn parked(c: &mut Core) -> (String, String) {
    let (b_invite, a_tag) = answered(c);
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 2, "Refer-To: <sip:*70@gosip.test>\r\n").as_bytes(),
    );
    let o = out(c);
    find(&o, B1, "SIP/2.0 202 Accepted");
    let (frag, _) = notified(&find(&o, B1, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 100 Trying");
    assert!(o.iter().all(|(p, _)| p != A), "alice stays: {o:?}");
    let ev = events(c);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MediaUpdate {
                leg: Leg::A,
                music: Some(true),
                ..
            }
        )),
        "{ev:?}"
    );
    let said = ev
        .iter()
        .find_map(|e| match e {
            Event::MediaPlay {
                leg: Leg::B,
                prompts,
                record_secs: None,
                ..
            } => Some(format!("{prompts:?}")),
            _ => None,
        })
        .expect("the slot said to bob");
    assert!(
        said.contains("slot 1") && said.contains("star 7 1 1"),
        "{said}"
    );
    assert_eq!(c.calls()[0].state, "parked");
    assert_eq!(c.calls()[0].park_slot, Some(1));
    (b_invite, a_tag)
}

#[test]
fn a_call_transferred_to_the_park_code_waits_in_its_slot_until_a_phone_takes_it() {
    let mut c = with_carol();
    let (_, a_tag) = parked(&mut c);
    // bob heard it: the REFER worked and his leg ends.
    c.play_done(T0 + 4_000, "call1", Leg::B);
    let o = out(&mut c);
    let (frag, state) = notified(&find(&o, B1, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    find(&o, B1, "BYE ");
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MediaUpdate {
                leg: Leg::B,
                hold: Some(true),
                ..
            }
        )),
        "{ev:?}"
    );
    // A wrong slot is 404; carol takes slot 1 in the codec alice speaks.
    let o = carol_dials(&mut c, T0 + 10_000, "*712", &carol_sdp());
    find(&o, C1, "SIP/2.0 404 ");
    let o = carol_dials(&mut c, T0 + 11_000, "*711", &carol_sdp());
    let ok_c = find(&o, C1, "SIP/2.0 200 OK");
    assert!(ok_c.contains("m=audio 20002 RTP/AVP 0 101"), "{ok_c}");
    assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MediaUpdate {
                leg: Leg::A,
                music: Some(false),
                ..
            }
        )),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::B, media: Some(m), .. } if m.rtp == "192.168.1.70:7000")),
        "{ev:?}"
    );
    assert_eq!(c.calls()[0].state, "up");
    // alice hangs up: carol gets the BYE.
    c.handle_message(
        T0 + 20_000,
        peer(A),
        from_a("BYE", 3, &a_tag, "", "").as_bytes(),
    );
    let o = out(&mut c);
    assert!(
        o.iter().any(|(p, m)| p == C1 && m.starts_with("BYE ")),
        "{o:?}"
    );
}

#[test]
fn a_parker_hanging_up_during_the_announcement_leaves_the_call_parked() {
    let mut c = with_carol();
    let (b_invite, _) = parked(&mut c);
    c.handle_message(
        T0 + 2_000,
        peer(B1),
        from_b(&b_invite, "BYE", 3, "", "").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 200 OK");
    assert!(o.iter().all(|(p, _)| p != A), "alice stays: {o:?}");
    assert_eq!(c.calls()[0].state, "parked");
    // mediad's late play_done changes nothing.
    c.play_done(T0 + 3_000, "call1", Leg::B);
    assert!(out(&mut c).is_empty());
    let o = carol_dials(&mut c, T0 + 4_000, "*71", &carol_sdp());
    find(&o, C1, "SIP/2.0 200 OK");
}

#[test]
fn a_parked_call_nobody_takes_rings_the_parker_back_and_ends_after_the_last_try() {
    let mut c = with_carol();
    parked(&mut c);
    c.play_done(T0 + 4_000, "call1", Leg::B);
    out(&mut c);
    // Park time (60 s) over: bob's phone rings with alice's call.
    c.handle_timeout(T0 + 62_000);
    let o = out(&mut c);
    let again = find(&o, B1, "INVITE sip:bob@");
    assert!(header(&again, "From")[0].contains("101"), "{again}");
    // Not answered within the ring time (30 s): back in the slot.
    c.handle_timeout(T0 + 93_000);
    let o = out(&mut c);
    find(&o, B1, "CANCEL ");
    assert_eq!(c.calls()[0].state, "parked");
    assert!(o.iter().all(|(p, _)| p != A), "{o:?}");
    // Second ring-back, answered: alice and bob talk again.
    c.handle_timeout(T0 + 154_000);
    let second = find(&out(&mut c), B1, "INVITE sip:bob@");
    c.handle_message(
        T0 + 155_000,
        peer(B1),
        reply(&second, 200, "b2", Some(&bob_sdp(""))).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "ACK ");
    assert_eq!(c.calls()[0].state, "up");
    let ev = events(&mut c);
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MediaUpdate {
                leg: Leg::A,
                music: Some(false),
                ..
            }
        )),
        "{ev:?}"
    );
    c.hangup(T0 + 160_000, "call1", "test over");
    let reason = cdr_reason(&events(&mut c));
    assert!(
        reason.contains("parked by 102 on slot 1") && reason.contains("rang back 102"),
        "{reason}"
    );
}

#[test]
fn three_unanswered_ring_backs_end_the_parked_call() {
    let mut c = with_carol();
    parked(&mut c);
    c.play_done(T0 + 4_000, "call1", Leg::B);
    out(&mut c);
    let mut now = T0 + 4_000;
    for _ in 0..3 {
        now += 61_000;
        c.handle_timeout(now);
        find(&out(&mut c), B1, "INVITE sip:bob@");
        now += 31_000;
        c.handle_timeout(now);
    }
    let o = out(&mut c);
    find(&o, A, "BYE ");
    let reason = cdr_reason(&events(&mut c));
    assert!(
        reason.contains("nobody took the parked call back"),
        "{reason}"
    );
    assert!(c.calls().is_empty());
}

#[test]
fn a_code_dialled_as_it_is_wins_over_a_pickup_prefix() {
    let mut c = with_carol();
    let mut cfg = c.config().clone();
    cfg.pickup_code = "*9".into();
    c.set_config(T0, cfg);
    // *97 is the voicemail access code (carol has no mailbox), not a
    // pickup of extension 7.
    let o = carol_dials(&mut c, T0, "*97", &carol_sdp());
    assert!(find(&o, C1, "SIP/2.0 404 ").contains("no mailbox"), "{o:?}");
    let o = carol_dials(&mut c, T0 + 1_000, "*9", &carol_sdp());
    assert!(
        find(&o, C1, "SIP/2.0 404 ").contains("no call to pick up"),
        "{o:?}"
    );
}

/// The announcement to the parker outlasts the park time (mediad is slow
/// to say play_done): the core does not ask to be woken at a time already
/// past, which would have the shell wake it in a loop, and the parker's
/// phone rings as soon as the announcement ends.
#[test]
fn a_ring_back_waiting_for_the_announcement_does_not_wake_the_core_in_a_loop() {
    let mut c = with_carol();
    parked(&mut c);
    let late = T0 + 62_000;
    c.handle_timeout(late);
    out(&mut c);
    assert!(
        c.poll_timeout().is_none_or(|t| t > late),
        "woken at {:?}, now {late}",
        c.poll_timeout()
    );
    c.play_done(late + 1_000, "call1", Leg::B);
    c.handle_timeout(late + 1_000);
    let o = out(&mut c);
    find(&o, B1, "INVITE sip:bob@");
}
