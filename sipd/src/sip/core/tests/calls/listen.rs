//! A phone dials the voicemail access code and hears its owner's mailbox,
//! driven by keys (RFC 4733 through mediad, or SIP INFO).

use super::*;
use crate::sip::core::Leg;
use crate::sip::core::{Prompt, StoredMessage};
use crate::sip::registrar::Mailbox;

/// [`setup`] with alice's device owned by user 5.
fn setup_alice_mailbox() -> Core {
    let mut c = setup(&[]);
    let mut devices: Vec<Device> = c.devices.values().cloned().collect();
    for d in devices.iter_mut().filter(|d| d.username == "alice") {
        d.mailbox = Some(Mailbox {
            user_id: UserId(5),
            name: "Alice".into(),
        });
    }
    c.set_devices(devices);
    c
}

fn message(id: i64, from: &str, is_read: bool) -> StoredMessage {
    StoredMessage {
        id,
        from: from.into(),
        received: "Thursday, December 3 at 4:15 PM".into(),
        audio: format!("voicemails/local-{id}.wav"),
        is_read,
    }
}

/// Dials *97 and ACKs sipd's answer; returns (the 200, the events after
/// the ACK).
fn dial_mailbox(c: &mut Core) -> (String, Vec<Event>) {
    let o = place_to(c, "*97", SDP, "internal", "");
    let ok = o
        .iter()
        .find(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| panic!("sipd answers the access code: {o:?}"));
    assert!(o.iter().all(|(_, m)| !m.starts_with("INVITE")), "{o:?}");
    let tag = header(&ok, "To")[0]
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_string();
    ack_a(c, T0 + 100, "ack", 2, &tag, "");
    (ok, std::iter::from_fn(|| c.poll_event()).collect())
}

/// The prompts of the last MediaPlay among `ev` (panics without one).
fn played(ev: &[Event]) -> Vec<Prompt> {
    ev.iter()
        .rev()
        .find_map(|e| match e {
            Event::MediaPlay { prompts, .. } => Some(prompts.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing played: {ev:?}"))
}

fn text(p: &[Prompt]) -> String {
    p.iter()
        .map(|p| match p {
            Prompt::Text(t) => t.clone(),
            Prompt::File(f) => format!("[{f}]"),
            Prompt::Beep => "[beep]".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn events(c: &mut Core) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn the_mailbox_plays_newest_first_and_keys_move_delete_and_end() {
    let mut c = setup_alice_mailbox();
    let (ok, ev) = dial_mailbox(&mut c);
    assert!(ok.contains("m=audio 20000 RTP/AVP 0 101"), "{ok}");
    assert!(
        ev.iter().any(|e| matches!(
            e,
            Event::MailboxList {
                user_id: UserId(5),
                ..
            }
        )),
        "{ev:?}"
    );
    c.mailbox_loaded(
        "call1",
        vec![message(9, "+15551234567", false), message(4, "202", true)],
    );
    let ev = events(&mut c);
    let said = text(&played(&ev));
    assert!(
        said.starts_with("You have 1 new message and 1 saved message. Message 1, new. From 1 5 5 5 1 2 3 4 5 6 7. Received Thursday, December 3 at 4:15 PM. [voicemails/local-9.wav] To hear it again, press 1."),
        "{said}"
    );
    assert!(
        ev.contains(&Event::VoicemailRead { id: 9 }),
        "hearing it marks it read"
    );

    c.dtmf("call1", Leg::A, "2");
    let ev = events(&mut c);
    assert!(
        text(&played(&ev)).starts_with("Message 2. From 2 0 2."),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::VoicemailRead { .. })));

    c.dtmf("call1", Leg::A, "7");
    let ev = events(&mut c);
    assert!(ev.contains(&Event::VoicemailDelete { id: 4 }), "{ev:?}");
    assert!(text(&played(&ev)).starts_with("Message deleted. No more messages."));

    c.dtmf("call1", Leg::A, "1");
    assert!(text(&played(&events(&mut c))).starts_with("Message 1. From 1 5 5 5"));

    c.dtmf("call1", Leg::A, "#");
    assert_eq!(text(&played(&events(&mut c))), "Goodbye.");
    c.play_done(T0 + 9_000, "call1", Leg::A);
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == A && m.starts_with("BYE sip:alice@")),
        "sipd hangs up after goodbye"
    );
}

#[test]
fn keys_pressed_before_the_mailbox_is_read_are_kept_and_info_keys_count() {
    let mut c = setup_alice_mailbox();
    let (ok, _) = dial_mailbox(&mut c);
    c.dtmf("call1", Leg::A, "9");
    assert!(
        !events(&mut c)
            .iter()
            .any(|e| matches!(e, Event::MediaPlay { .. })),
        "nothing to act on yet"
    );
    c.mailbox_loaded(
        "call1",
        vec![message(9, "201", false), message(4, "202", false)],
    );
    let ev = events(&mut c);
    assert!(
        text(&played(&ev)).starts_with("Message saved. Message 2, new. From 2 0 2."),
        "{ev:?}"
    );
    // The same key as SIP INFO (application/dtmf-relay).
    let tag = header(&ok, "To")[0]
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_string();
    let info = from_a(
        "INFO",
        3,
        &tag,
        "application/dtmf-relay",
        "Signal=0\r\nDuration=160\r\n",
    );
    c.handle_message(T0 + 5_000, peer(A), info.as_bytes());
    assert!(
        out(&mut c)
            .iter()
            .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK")),
        "the INFO is answered, not relayed"
    );
    assert!(text(&played(&events(&mut c))).starts_with("To hear it again, press 1."));
}

#[test]
fn an_empty_mailbox_says_so_and_hangs_up() {
    let mut c = setup_alice_mailbox();
    dial_mailbox(&mut c);
    c.mailbox_loaded("call1", Vec::new());
    assert_eq!(
        text(&played(&events(&mut c))),
        "You have no new messages and no saved messages. Goodbye."
    );
    c.play_done(T0 + 3_000, "call1", Leg::A);
    assert!(out(&mut c).iter().any(|(_, m)| m.starts_with("BYE ")));
}

#[test]
fn a_device_nobody_owns_has_no_mailbox_to_dial() {
    let mut c = setup(&[]);
    let auth = challenged(&mut c, "*97", &invite_to("*97", 1, "", SDP));
    c.handle_message(T0 + 1, peer(A), invite_to("*97", 2, &auth, SDP).as_bytes());
    let o = out(&mut c);
    assert!(
        o[0].1.starts_with("SIP/2.0 404 ") && o[0].1.contains("no mailbox"),
        "{o:?}"
    );
    assert!(o.iter().all(|(_, m)| !m.starts_with("INVITE")), "{o:?}");
}
