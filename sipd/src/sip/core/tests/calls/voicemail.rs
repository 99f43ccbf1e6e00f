//! Internal calls nobody answers go to the callee's voicemail: sipd answers
//! the caller with mediad's address, mediad plays the greeting and records.

use super::*;
use crate::sip::core::Leg;
use crate::sip::core::{Prompt, Voicemail};
use crate::sip::registrar::Mailbox;

/// [`setup`] with bob's owner Bob having a mailbox.
fn setup_with_mailbox(contacts: &[&str]) -> Core {
    let mut c = setup(contacts);
    let mut devices: Vec<Device> = c.devices.values().cloned().collect();
    for d in devices.iter_mut().filter(|d| d.username == "bob") {
        d.mailbox = Some(Mailbox {
            user_id: UserId(7),
            name: "Bob".into(),
        });
    }
    c.set_devices(devices);
    c
}

/// sipd's 200 to alice, found among `o`.
fn ok_to_a(o: &[(String, String)]) -> String {
    o.iter()
        .find(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| panic!("no 200 to the caller: {o:?}"))
}

/// Alice ACKs sipd's own answer `ok`; returns the events that follow.
fn ack_answer(c: &mut Core, now: u64, ok: &str) -> Vec<Event> {
    let to = header(ok, "To")[0];
    let tag = to.split("tag=").nth(1).unwrap();
    ack_a(c, now, "ack", 2, tag, "");
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// Alice hangs up; returns the events that follow.
fn alice_hangs_up(c: &mut Core, now: u64, ok: &str) -> Vec<Event> {
    let to = header(ok, "To")[0];
    let tag = to.split("tag=").nth(1).unwrap();
    c.handle_message(now, peer(A), from_a("BYE", 3, tag, "", "").as_bytes());
    assert!(
        out(c)
            .iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK")),
        "the BYE is answered"
    );
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn plays_greeting_then_records(ev: &[Event]) {
    let play = ev.iter().find_map(|e| match e {
        Event::MediaPlay {
            prompts,
            record_secs,
            silence_secs,
            ..
        } => Some((prompts.clone(), *record_secs, *silence_secs)),
        _ => None,
    });
    let (prompts, record_secs, silence_secs) =
        play.unwrap_or_else(|| panic!("no MediaPlay: {ev:?}"));
    assert!(
        matches!(&prompts[0], Prompt::Text(t) if t.starts_with("Bob is not available.")),
        "{prompts:?}"
    );
    assert_eq!(prompts.last(), Some(&Prompt::Beep));
    assert_eq!(record_secs, Some(180));
    assert_eq!(silence_secs, 10, "voicemail.silence_timeout");
}

fn ends_as_voicemail_for_bob(ev: &[Event]) {
    ends_as(ev, "voicemail");
}

fn ends_as(ev: &[Event], want: &str) {
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::Cdr(Cdr::End {
                disposition,
                ..
            }) if *disposition == want
        )),
        "{ev:?}"
    );
    let release = ev.iter().find_map(|e| match e {
        Event::MediaRelease { voicemail, .. } => Some(voicemail.clone()),
        _ => None,
    });
    assert_eq!(
        release,
        Some(Some(Voicemail {
            user_id: UserId(7),
            from_number: "101".into(),
            from_name: "Alice".into(),
        })),
        "{ev:?}"
    );
}

#[test]
fn a_call_to_a_phone_that_is_not_registered_goes_to_its_owners_voicemail() {
    let mut c = setup_with_mailbox(&[]);
    let o = place(&mut c);
    assert!(
        o.iter().all(|(p, m)| p == A || !m.starts_with("INVITE")),
        "{o:?}"
    );
    let ok = ok_to_a(&o);
    // mediad's A port answers with the caller's first G.711 codec.
    assert!(ok.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{ok}");
    let ev = ack_answer(&mut c, T0 + 100, &ok);
    plays_greeting_then_records(&ev);
    c.play_done(T0 + 4_000, "call1", Leg::A);
    let ev = alice_hangs_up(&mut c, T0 + 9_000, &ok);
    ends_as_voicemail_for_bob(&ev);
}

#[test]
fn a_call_nobody_answers_in_the_ring_time_goes_to_voicemail_and_the_phone_stops_ringing() {
    let mut c = setup_with_mailbox(&[B1]);
    let invites = place(&mut c);
    assert!(
        invites
            .iter()
            .any(|(p, m)| p == B1 && m.starts_with("INVITE"))
    );
    c.handle_message(
        T0 + 50,
        peer(B1),
        reply(&invites[0].1, 180, "b1", None).as_bytes(),
    );
    out(&mut c);
    c.handle_timeout(T0 + 30_001);
    let o = out(&mut c);
    let ok = ok_to_a(&o);
    assert!(
        o.iter().any(|(p, m)| p == B1 && m.starts_with("CANCEL")),
        "the phone stops ringing: {o:?}"
    );
    let ev = ack_answer(&mut c, T0 + 30_100, &ok);
    plays_greeting_then_records(&ev);
    c.play_done(T0 + 34_000, "call1", Leg::A);
    let ev = alice_hangs_up(&mut c, T0 + 40_000, &ok);
    ends_as_voicemail_for_bob(&ev);
}

#[test]
fn a_busy_phone_sends_the_caller_to_voicemail() {
    let mut c = setup_with_mailbox(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 50,
        peer(B1),
        reply(&invites[0].1, 486, "b1", None).as_bytes(),
    );
    let ok = ok_to_a(&out(&mut c));
    assert!(ok.contains("c=IN IP4 "), "{ok}");
}

#[test]
fn without_a_mailbox_the_caller_hears_480_as_before() {
    let mut c = setup(&[B1]);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 50,
        peer(B1),
        reply(&invites[0].1, 486, "b1", None).as_bytes(),
    );
    let o = out(&mut c);
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 486")),
        "{o:?}"
    );
}

#[test]
fn with_voicemail_for_internal_calls_off_the_caller_hears_the_failure() {
    let mut c = setup_with_mailbox(&[B1]);
    let cfg = CoreConfig {
        voicemail_internal: false,
        ..c.config().clone()
    };
    c.set_config(T0, cfg);
    let invites = place(&mut c);
    c.handle_message(
        T0 + 50,
        peer(B1),
        reply(&invites[0].1, 486, "b1", None).as_bytes(),
    );
    let o = out(&mut c);
    assert!(
        o.iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 486")),
        "{o:?}"
    );
}

#[test]
fn a_caller_who_hangs_up_during_the_greeting_or_at_the_tone_is_a_missed_call() {
    // During the greeting: recording never began.
    let mut c = setup_with_mailbox(&[]);
    let ok = ok_to_a(&place(&mut c));
    ack_answer(&mut c, T0 + 100, &ok);
    ends_as(&alice_hangs_up(&mut c, T0 + 2_000, &ok), "missed");
    // Right after the tone: shorter than voicemail.min_length.
    let mut c = setup_with_mailbox(&[]);
    let ok = ok_to_a(&place(&mut c));
    ack_answer(&mut c, T0 + 100, &ok);
    c.play_done(T0 + 4_000, "call1", Leg::A);
    ends_as(&alice_hangs_up(&mut c, T0 + 6_000, &ok), "missed");
}
