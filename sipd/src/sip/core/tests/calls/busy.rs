//! "Busy when in a call": a device already in a call is not rung by
//! another when its switch is on; off, the phone gets the call (call
//! waiting is its business).

use super::*;

/// A second call (Call-ID call2) from alice to bob while call1 is up:
/// what sipd sends once mediad's ports are there.
fn second_call(c: &mut Core) -> Vec<(String, String)> {
    let inv = |cseq: u32, auth: &str| {
        invite_to("102", cseq, auth, SDP)
            .replace("Call-ID: call1", "Call-ID: call2")
            .replace("branch=z9hG4bKa", "branch=z9hG4bKs")
    };
    c.handle_message(T0 + 5_000, peer(A), inv(1, "").as_bytes());
    let ch = out(c).remove(0).1;
    assert!(ch.starts_with("SIP/2.0 407 "), "{ch}");
    let auth = proxy_auth(&ch, "102");
    c.handle_message(T0 + 5_001, peer(A), inv(2, &auth).as_bytes());
    find(&out(c), A, "SIP/2.0 100 Trying");
    c.media_ready(T0 + 5_002, "call2", Some((20004, 20006)));
    out(c)
}

/// bob's device with its switch set to `on`.
fn bob_busy_in_call(c: &mut Core, on: bool) {
    let devices: Vec<Device> = c
        .devices
        .values()
        .cloned()
        .map(|d| Device {
            busy_in_call: on && d.username == "bob",
            ..d
        })
        .collect();
    c.set_devices(devices);
}

#[test]
fn a_device_in_a_call_with_busy_on_is_not_rung_and_the_caller_hears_busy() {
    let mut c = setup(&[B1]);
    bob_busy_in_call(&mut c, true);
    answered(&mut c);
    let o = second_call(&mut c);
    let busy = find(&o, A, "SIP/2.0 486 Busy Here");
    assert_eq!(header(&busy, "Call-ID"), vec!["call2"]);
    assert!(o.iter().all(|(p, _)| p != B1), "bob was rung: {o:?}");
    let end = std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        Event::Cdr(Cdr::End {
            call_id,
            disposition,
            ..
        }) => Some((call_id, disposition)),
        _ => None,
    });
    assert_eq!(end, Some(("call2".to_string(), "busy")));
}

#[test]
fn with_the_switch_off_a_device_in_a_call_still_rings() {
    let mut c = setup(&[B1]);
    bob_busy_in_call(&mut c, false);
    answered(&mut c);
    let o = second_call(&mut c);
    find(&o, B1, "INVITE sip:bob@");
    assert!(
        o.iter().all(|(_, m)| !m.starts_with("SIP/2.0 486")),
        "{o:?}"
    );
}
