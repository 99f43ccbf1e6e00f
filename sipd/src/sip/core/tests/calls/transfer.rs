//! Blind transfer (REFER, RFC 3515): bob, who answered alice's call, sends
//! her to carol; NOTIFY progress, the target answering or failing, the
//! transferor leaving early, and the REFERs sipd refuses.

use super::*;
use crate::sip::core::Leg;

pub(super) const C1: &str = "192.168.1.70:5060";

/// [`setup`] with carol (103) registered at [`C1`] too.
pub(super) fn with_carol() -> Core {
    let mut c = setup(&[B1]);
    let (md5, sha) = ha1("carol", REALM, "pw");
    let mut devices: Vec<Device> = c.devices.values().cloned().collect();
    devices.push(Device {
        id: DeviceId(3),
        username: "carol".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: Some("103".into()),
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    });
    c.set_devices(devices);
    c.restore(bound(DeviceId(3), format!("sip:carol@{C1}"), peer(C1)));
    c
}

/// bob's REFER (CSeq `cseq`) with `refer_to` header lines.
pub(super) fn refer(b_invite: &str, cseq: u32, refer_to: &str) -> String {
    from_b(b_invite, "REFER", cseq, "", "").replace("Contact:", &format!("{refer_to}Contact:"))
}

pub(super) fn carol_sdp() -> String {
    SDP.replace("192.168.1.50", "192.168.1.70")
        .replace("4000", "7000")
}

/// The sipfrag status line and Subscription-State of a NOTIFY.
pub(super) fn notified(n: &str) -> (String, String) {
    assert_eq!(header(n, "Event"), vec!["refer"], "{n}");
    assert_eq!(
        header(n, "Content-Type"),
        vec!["message/sipfrag;version=2.0"],
        "{n}"
    );
    let frag = n.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        frag.trim_end().to_string(),
        header(n, "Subscription-State")[0].to_string(),
    )
}

/// The call answered by bob, then bob's REFER to 103: sipd's 202, its
/// NOTIFY 100 to bob and its INVITE to carol.
fn transferring(c: &mut Core) -> (String, String, String) {
    let (b_invite, tag) = answered(c);
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 2, "Refer-To: <sip:103@gosip.test>\r\n").as_bytes(),
    );
    let o = out(c);
    let accepted = find(&o, B1, "SIP/2.0 202 Accepted");
    assert_eq!(header(&accepted, "CSeq"), vec!["2 REFER"]);
    let (frag, state) = notified(&find(&o, B1, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 100 Trying");
    assert!(state.starts_with("active"), "{state}");
    let to_carol = find(&o, C1, "INVITE sip:carol@192.168.1.70:5060 SIP/2.0");
    (b_invite, tag, to_carol)
}

#[test]
fn a_blind_transfer_rings_the_target_and_hands_it_the_caller_then_releases_the_transferor() {
    let mut c = with_carol();
    let (_, tag, to_carol) = transferring(&mut c);
    // carol sees alice calling 103, with mediad's B-leg port as the offer.
    assert!(
        header(&to_carol, "From")[0].contains("\"Alice\" <sip:101@gosip.test>"),
        "{to_carol}"
    );
    assert!(
        header(&to_carol, "To")[0].starts_with("<sip:103@"),
        "{to_carol}"
    );
    assert!(to_carol.contains("m=audio 20002 "), "{to_carol}");
    while c.poll_event().is_some() {}
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 200, "c1", Some(&carol_sdp())).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, C1, "ACK ");
    // bob hears it worked, then is hung up.
    let notify = o
        .iter()
        .position(|(p, m)| p == B1 && m.starts_with("NOTIFY "))
        .expect("final NOTIFY");
    let bye = o
        .iter()
        .position(|(p, m)| p == B1 && m.starts_with("BYE "))
        .expect("BYE to bob");
    assert!(notify < bye);
    let (frag, state) = notified(&o[notify].1);
    assert_eq!(frag, "SIP/2.0 200 OK");
    assert!(state.starts_with("terminated"), "{state}");
    // mediad: carol is the B-leg now, and nobody is on hold.
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::B, media: Some(m), established: Some(true), music: Some(false), .. }
            if m.rtp == "192.168.1.70:7000")), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::MediaUpdate {
                leg: Leg::A,
                hold: Some(false),
                music: Some(false),
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Cdr(Cdr::Answered {
                device_id: Some(DeviceId(3)),
                ..
            })
        )),
        "{events:?}"
    );
    // alice hangs up: the BYE goes to carol, in carol's dialog.
    c.handle_message(
        T0 + 9_000,
        peer(A),
        from_a("BYE", 3, &tag, "", "").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 200 OK");
    let bye = find(&o, C1, "BYE sip:bob@192.168.1.62:5060");
    assert!(
        header(&bye, "To")[0].starts_with("<sip:103@gosip.test>;tag=c1"),
        "{bye}"
    );
    assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
    let end = std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        Event::Cdr(Cdr::End {
            reason,
            disposition,
            ..
        }) => Some((disposition, reason)),
        _ => None,
    });
    let (disposition, reason) = end.expect("the CDR ends");
    assert_eq!(disposition, "answered");
    assert!(reason.contains("transferred by 102 to 103"), "{reason}");
}

#[test]
fn a_busy_target_leaves_the_call_with_the_transferor_who_hears_why() {
    let mut c = with_carol();
    let (b_invite, tag, to_carol) = transferring(&mut c);
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 486, "c1", None).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, C1, "ACK ");
    let (frag, state) = notified(&find(&o, B1, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 486 Busy Here");
    assert!(state.starts_with("terminated"), "{state}");
    assert!(
        o.iter().all(|(p, m)| !(p == B1 && m.starts_with("BYE "))),
        "{o:?}"
    );
    // Still alice and bob: her BYE reaches him, and bob may transfer again.
    c.handle_message(
        T0 + 4_000,
        peer(B1),
        refer(&b_invite, 3, "Refer-To: <sip:103@gosip.test>\r\n").as_bytes(),
    );
    find(&out(&mut c), B1, "SIP/2.0 202");
    c.handle_message(
        T0 + 5_000,
        peer(A),
        from_a("BYE", 3, &tag, "", "").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "BYE ");
    find(&o, C1, "CANCEL ");
}

#[test]
fn nobody_answering_the_target_in_the_ring_time_is_a_failed_transfer() {
    let mut c = with_carol();
    let (_, _, _) = transferring(&mut c);
    let mut now = T0 + 1_000;
    let mut notify = None;
    while now < T0 + 120_000 && notify.is_none() {
        now += 1_000;
        c.handle_timeout(now);
        let o = out(&mut c);
        let last = o.iter().find(|(p, m)| {
            p == B1 && m.starts_with("NOTIFY ") && m.contains("Subscription-State: terminated")
        });
        if let Some((_, m)) = last {
            notify = Some(m.clone());
            assert!(
                o.iter().any(|(p, m)| p == C1 && m.starts_with("CANCEL ")),
                "{o:?}"
            );
        }
    }
    let (frag, _) = notified(&notify.expect("a final NOTIFY"));
    assert!(frag == "SIP/2.0 408 Request Timeout", "{frag}");
}

#[test]
fn a_transferor_that_hangs_up_early_leaves_the_caller_to_the_target() {
    // The target answers: alice and carol talk.
    let mut c = with_carol();
    let (b_invite, _, to_carol) = transferring(&mut c);
    c.handle_message(
        T0 + 1_500,
        peer(B1),
        from_b(&b_invite, "BYE", 3, "", "").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 200 OK");
    assert!(o.iter().all(|(p, _)| p != A), "alice stays: {o:?}");
    assert_eq!(cdr_end(&mut c), None);
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 200, "c1", Some(&carol_sdp())).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, C1, "ACK ");
    assert!(o.iter().all(|(p, _)| p != B1), "bob is gone: {o:?}");

    // The target declines: the call ends.
    let mut c = with_carol();
    let (b_invite, _, to_carol) = transferring(&mut c);
    c.handle_message(
        T0 + 1_500,
        peer(B1),
        from_b(&b_invite, "BYE", 3, "", "").as_bytes(),
    );
    out(&mut c);
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 603, "c1", None).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, A, "BYE ");
    assert_eq!(cdr_end(&mut c), Some("answered"));
}

#[test]
fn refers_sipd_cannot_follow_get_the_rfc_answer_and_the_call_stays() {
    let mut c = with_carol();
    let (b_invite, tag) = answered(&mut c);
    let mut cseq = 1;
    let answer = |c: &mut Core, peer_addr: &str, msg: String| {
        c.handle_message(T0 + 1_000, peer(peer_addr), msg.as_bytes());
        let o = out(c);
        o.iter()
            .find(|(p, m)| p == peer_addr && m.starts_with("SIP/2.0 "))
            .map(|(_, m)| m.split(' ').nth(1).unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let mut from_bob = |refer_to: &str| {
        cseq += 1;
        refer(&b_invite, cseq, refer_to)
    };
    assert_eq!(answer(&mut c, B1, from_bob("")), "400", "no Refer-To");
    assert_eq!(
        answer(
            &mut c,
            B1,
            from_bob("Refer-To: <sip:103@gosip.test>\r\nRefer-To: <sip:101@gosip.test>\r\n")
        ),
        "400",
        "two Refer-To"
    );
    assert_eq!(
        answer(&mut c, B1, from_bob("Refer-To: <sip:999@gosip.test>\r\n")),
        "404"
    );
    assert_eq!(
        answer(
            &mut c,
            B1,
            from_bob("Refer-To: <sip:103@gosip.test?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db>\r\n")
        ),
        "481",
        "Replaces naming no dialog"
    );
    // Nor may a REFER outside any dialog or in a dialog that does not
    // exist.
    let from_alice = |cseq: u32| {
        from_a("REFER", cseq, &tag, "", "")
            .replace("Contact:", "Refer-To: <sip:103@gosip.test>\r\nContact:")
    };
    let unknown = from_alice(4).replace("Call-ID: call1", "Call-ID: nosuchcall");
    assert_eq!(answer(&mut c, A, unknown), "481");
    let outside = from_alice(5).replace(&format!(";tag={tag}"), "");
    assert_eq!(answer(&mut c, A, outside), "481");
    // Nothing rang carol; a transfer under way refuses a second one.
    assert_eq!(
        answer(&mut c, B1, from_bob("Refer-To: <sip:103@gosip.test>\r\n")),
        "202"
    );
    assert_eq!(
        answer(&mut c, B1, from_bob("Refer-To: <sip:103@gosip.test>\r\n")),
        "491"
    );
}

#[test]
fn a_caller_held_before_the_transfer_is_taken_off_hold_once_the_target_answers() {
    let mut c = with_carol();
    let (b_invite, tag) = answered(&mut c);
    // bob's phone holds alice first (as desk phones do before REFER).
    let bob_hold = bob_sdp("a=sendonly\r\n");
    c.handle_message(
        T0 + 500,
        peer(B1),
        from_b(&b_invite, "INVITE", 2, "application/sdp", &bob_hold).as_bytes(),
    );
    let to_a = find(&out(&mut c), A, "INVITE sip:alice@");
    assert!(to_a.contains("a=sendonly"), "{to_a}");
    let held = SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101");
    let ok = respond(
        &to_a,
        200,
        "OK",
        "sip:alice@192.168.1.50:5062",
        "application/sdp",
        &held,
    );
    c.handle_message(T0 + 550, peer(A), ok.as_bytes());
    let to_bob = find(&out(&mut c), B1, "SIP/2.0 200 OK");
    let ack = format!(
        "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bKback\r\nMax-Forwards: 70\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&to_bob, "From")[0],
        header(&to_bob, "To")[0],
        header(&to_bob, "Call-ID")[0]
    );
    c.handle_message(T0 + 560, peer(B1), ack.as_bytes());
    out(&mut c);
    // Then the transfer; carol answers.
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 3, "Refer-To: <sip:103@gosip.test>\r\n").as_bytes(),
    );
    let to_carol = find(&out(&mut c), C1, "INVITE sip:carol@");
    while c.poll_event().is_some() {}
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 200, "c1", Some(&carol_sdp())).as_bytes(),
    );
    // alice gets sipd's own re-INVITE: the same session, next version,
    // sendrecv, on mediad's port a, in her dialog.
    let o = out(&mut c);
    let resume = find(&o, A, "INVITE sip:alice@192.168.1.50:5062 SIP/2.0");
    assert_eq!(header(&resume, "CSeq"), vec!["2 INVITE"]);
    assert_eq!(header(&resume, "Call-ID"), vec!["call1"]);
    assert!(
        resume.contains("a=sendrecv") && !resume.contains("a=sendonly"),
        "{resume}"
    );
    assert!(resume.contains("m=audio 20000 "), "{resume}");
    let version = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("o="))
            .and_then(|l| l.split(' ').nth(2))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap()
    };
    assert_eq!(version(&resume), version(&to_a) + 1);
    let ok = respond(
        &resume,
        200,
        "OK",
        "sip:alice@192.168.1.50:5062",
        "application/sdp",
        SDP,
    );
    c.handle_message(T0 + 3_100, peer(A), ok.as_bytes());
    let o = out(&mut c);
    let ack = find(&o, A, "ACK sip:alice@192.168.1.50:5062 SIP/2.0");
    assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::A, media: Some(m), hold: Some(false), .. } if m.rtp == "192.168.1.50:4000")),
        "{events:?}");
    // Her 200 again (lost ACK): the same ACK again.
    c.handle_message(T0 + 3_600, peer(A), ok.as_bytes());
    assert_eq!(find(&out(&mut c), A, "ACK "), ack);
    // A caller never held gets no re-INVITE (the other transfer tests).
    let _ = tag;
}

/// [`with_carol`] plus the trunk, and bob's DID as his caller ID.
fn with_trunk(bob_did: Option<&str>) -> Core {
    let mut c = with_carol();
    let devices: Vec<Device> = c
        .devices
        .values()
        .cloned()
        .map(|d| Device {
            caller_id: (d.username == "bob")
                .then(|| bob_did.map(str::to_string))
                .flatten(),
            ..d
        })
        .collect();
    c.set_devices(devices);
    let mut cfg = c.config().clone();
    cfg.default_country = "1".into();
    cfg.termination = Some(Termination {
        transport: crate::sip::Transport::Udp,
        host: "t.pstn.twilio.com".into(),
        addr: TRUNK.parse().unwrap(),
        username: "u".into(),
        password: "p".into(),
        local: None,
    });
    c.set_config(T0, cfg);
    c
}

#[test]
fn a_transfer_to_a_number_dials_it_through_the_trunk_with_the_transferors_did() {
    let mut c = with_trunk(Some("+15550002222"));
    let (b_invite, _) = answered(&mut c);
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 2, "Refer-To: <sip:555-123-4567@gosip.test>\r\n").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 202");
    let to_trunk = find(
        &o,
        TRUNK,
        "INVITE sip:+15551234567@t.pstn.twilio.com SIP/2.0",
    );
    assert!(
        header(&to_trunk, "From")[0].contains("<sip:+15550002222@"),
        "{to_trunk}"
    );
    assert!(
        header(&to_trunk, "To")[0].starts_with("<sip:+15551234567@t.pstn.twilio.com>"),
        "{to_trunk}"
    );
    assert_eq!(
        header(&to_trunk, "P-Asserted-Identity"),
        vec!["<sip:+15550002222@gosip.test>"]
    );
    // The trunk's digest challenge is answered as for outbound calls.
    let challenge = reply(&to_trunk, 407, "tw", None).replacen(
        "Contact:",
        "Proxy-Authenticate: Digest realm=\"sip.twilio.com\", nonce=\"n1\"\r\nContact:",
        1,
    );
    c.handle_message(T0 + 1_100, peer(TRUNK), challenge.as_bytes());
    let retry = find(&out(&mut c), TRUNK, "INVITE ");
    assert!(!header(&retry, "Proxy-Authorization").is_empty(), "{retry}");
    assert_eq!(header(&retry, "CSeq"), vec!["2 INVITE"]);
    while c.poll_event().is_some() {}
    let trunk_sdp = SDP
        .replace("192.168.1.50", "127.0.0.1")
        .replace("4000", "9000");
    c.handle_message(
        T0 + 3_000,
        peer(TRUNK),
        reply(&retry, 200, "tw2", Some(&trunk_sdp)).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, TRUNK, "ACK ");
    let (frag, _) = notified(&find(&o, B1, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 200 OK");
    find(&o, B1, "BYE ");
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::B, media: Some(m), .. } if m.rtp == "127.0.0.1:9000")),
        "{events:?}"
    );
    // No device answered: the CDR keeps its device.
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Cdr(Cdr::Answered {
                device_id: None,
                ..
            })
        )),
        "{events:?}"
    );
}

#[test]
fn a_transfer_to_a_number_needs_a_did_and_never_goes_to_an_emergency_number() {
    let mut c = with_trunk(None);
    let (b_invite, _) = answered(&mut c);
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 2, "Refer-To: <sip:5551234567@gosip.test>\r\n").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 403");
    assert!(o.iter().all(|(p, _)| p != TRUNK), "{o:?}");
    let mut c = with_trunk(Some("+15550002222"));
    let (b_invite, _) = answered(&mut c);
    c.handle_message(
        T0 + 1_000,
        peer(B1),
        refer(&b_invite, 2, "Refer-To: <sip:911@gosip.test>\r\n").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "SIP/2.0 603");
    assert!(o.iter().all(|(p, _)| p != TRUNK), "{o:?}");
}

#[test]
fn the_caller_transfers_the_callee_to_a_third_phone_which_takes_the_callers_leg() {
    let mut c = with_carol();
    let (_, tag) = answered(&mut c);
    let refer = from_a("REFER", 3, &tag, "", "")
        .replace("Contact:", "Refer-To: <sip:103@gosip.test>\r\nContact:");
    c.handle_message(T0 + 1_000, peer(A), refer.as_bytes());
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 202 Accepted");
    let (frag, _) = notified(&find(&o, A, "NOTIFY "));
    assert_eq!(frag, "SIP/2.0 100 Trying");
    // carol sees bob (102) calling, with bob's media on mediad's A-leg port.
    let to_carol = find(&o, C1, "INVITE sip:carol@");
    assert!(
        header(&to_carol, "From")[0].starts_with("<sip:102@"),
        "{to_carol}"
    );
    assert!(to_carol.contains("m=audio 20000 "), "{to_carol}");
    while c.poll_event().is_some() {}
    c.handle_message(
        T0 + 3_000,
        peer(C1),
        reply(&to_carol, 200, "c1", Some(&carol_sdp())).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, C1, "ACK ");
    let notify = find(&o, A, "NOTIFY ");
    assert_eq!(notified(&notify).0, "SIP/2.0 200 OK");
    find(&o, A, "BYE ");
    assert!(o.iter().all(|(p, _)| p != B1), "bob stays: {o:?}");
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(e,
        Event::MediaUpdate { leg: Leg::A, media: Some(m), .. } if m.rtp == "192.168.1.70:7000")),
        "{events:?}"
    );
    // alice's dialog is over; carol is side A now: her BYE reaches bob.
    let stale = from_a("BYE", 4, &tag, "", "");
    c.handle_message(T0 + 4_000, peer(A), stale.as_bytes());
    find(&out(&mut c), A, "SIP/2.0 481 ");
    let bye = callee_bye(&to_carol, C1, "c1");
    c.handle_message(T0 + 9_000, peer(C1), bye.as_bytes());
    let o = out(&mut c);
    find(&o, C1, "SIP/2.0 200 OK");
    find(&o, B1, "BYE ");
    let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        ev.iter().any(|e| matches!(e,
        Event::Cdr(Cdr::End { reason, .. }) if reason.contains("transferred by 101 to 103"))),
        "{ev:?}"
    );
}

#[test]
fn a_caller_leaving_while_its_target_rings_leaves_the_callee_waiting_then_a_failure_ends_it() {
    let mut c = with_carol();
    let (_, tag) = answered(&mut c);
    let refer = from_a("REFER", 3, &tag, "", "")
        .replace("Contact:", "Refer-To: <sip:103@gosip.test>\r\nContact:");
    c.handle_message(T0 + 1_000, peer(A), refer.as_bytes());
    let to_carol = find(&out(&mut c), C1, "INVITE sip:carol@");
    c.handle_message(
        T0 + 1_500,
        peer(A),
        from_a("BYE", 4, &tag, "", "").as_bytes(),
    );
    let o = out(&mut c);
    find(&o, A, "SIP/2.0 200 OK");
    assert!(o.iter().all(|(p, _)| p != B1), "bob stays: {o:?}");
    // carol is busy: bob is hung up, and nothing more goes to alice.
    c.handle_message(
        T0 + 2_000,
        peer(C1),
        reply(&to_carol, 486, "c1", None).as_bytes(),
    );
    let o = out(&mut c);
    find(&o, B1, "BYE ");
    assert!(
        o.iter().all(|(p, m)| p != A || m.starts_with("SIP/2.0")),
        "{o:?}"
    );
    assert!(c.calls().is_empty());
}
