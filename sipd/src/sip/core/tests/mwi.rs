//! Message-waiting subscriptions (RFC 3842, RFC 6665) and unsolicited NOTIFYs.

use super::*;

fn subscribe(branch: &str, to_tag: &str, expires: u32, event: &str, mailbox: &str) -> String {
    format!(
        "SUBSCRIBE sip:{mailbox}@{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{REALM}>;tag=ph1\r\n\
         To: <sip:{mailbox}@{REALM}>{to_tag}\r\n\
         Call-ID: mwi-1@phone\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:alice@192.168.1.50:5062>\r\n\
         Event: {event}\r\n\
         Expires: {expires}\r\n\
         Accept: application/simple-message-summary\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_phone_subscribes_to_its_mailbox_and_hears_each_change_until_it_unsubscribes() {
    let mut c = core();
    // Another event package: 489 and the one served.
    let out = send(&mut c, T0, &subscribe("p1", "", 3600, "presence", "alice"));
    assert!(
        out[0].starts_with("SIP/2.0 489 Bad Event\r\n"),
        "{}",
        out[0]
    );
    assert_eq!(header(&out[0], "Allow-Events"), ["message-summary"]);
    // Authenticated like a REGISTER.
    let sub = subscribe("s1", "", 3600, "message-summary", "alice");
    let out = send(&mut c, T0 + 1, &sub);
    assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
    let out = send(&mut c, T0 + 2, &with_auth(&sub, &out[0], 1, true));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
    assert_eq!(header(&out[0], "Expires"), ["3600"]);
    let tag = header(&out[0], "To")[0]
        .split("tag=")
        .nth(1)
        .unwrap()
        .to_owned();
    // The first NOTIFY follows at once: nothing waiting.
    let n = &out[1];
    assert!(
        n.starts_with("NOTIFY sip:alice@192.168.1.50:5062 SIP/2.0\r\n"),
        "{n}"
    );
    assert_eq!(header(n, "Event"), ["message-summary"]);
    assert_eq!(header(n, "Call-ID"), ["mwi-1@phone"]);
    assert_eq!(header(n, "To"), ["<sip:alice@gosip.test>;tag=ph1"]);
    assert!(header(n, "From")[0].ends_with(&format!("tag={tag}")));
    assert!(header(n, "Subscription-State")[0].starts_with("active;expires="));
    assert!(n.ends_with("Messages-Waiting: no\r\nMessage-Account: sip:alice@gosip.test\r\nVoice-Message: 0/0 (0/0)\r\n"), "{n}");
    assert_eq!(c.mwi_subscriptions(), 1);
    // Two new voicemails and an old one: the light goes on.
    c.set_voicemail_counts(T0 + 3, [(DeviceId(1), (2, 1))].into());
    let out = drain(&mut c);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(header(&out[0], "CSeq"), ["2 NOTIFY"]);
    assert!(out[0].contains("Messages-Waiting: yes\r\n"), "{}", out[0]);
    assert!(
        out[0].contains("Voice-Message: 2/1 (0/0)\r\n"),
        "{}",
        out[0]
    );
    // The same counts again: nothing new is sent.
    c.set_voicemail_counts(T0 + 4, [(DeviceId(1), (2, 1))].into());
    assert!(drain(&mut c).is_empty());
    // Somebody else's mailbox with alice's credentials: 403.
    let other = subscribe("o1", "", 3600, "message-summary", "bob");
    let out = send(&mut c, T0 + 5, &other);
    let out = send(&mut c, T0 + 6, &with_auth(&other, &out[0], 2, true));
    assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
    // A refresh from another address is not this dialog: 481.
    let unsub = subscribe("u1", &format!(";tag={tag}"), 0, "message-summary", "alice");
    c.handle_message(
        T0 + 7,
        Peer::udp("192.168.1.99:5062".parse().unwrap()),
        unsub.as_bytes(),
    );
    let out = drain(&mut c);
    assert!(out[0].starts_with("SIP/2.0 481 "), "{}", out[0]);
    // Unsubscribing in the dialog: 200, a final NOTIFY, and it is gone.
    let out = send(
        &mut c,
        T0 + 8,
        &subscribe("u2", &format!(";tag={tag}"), 0, "message-summary", "alice"),
    );
    assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
    let last = out
        .iter()
        .find(|m| m.starts_with("NOTIFY "))
        .expect("a final NOTIFY");
    assert!(
        header(last, "Subscription-State")[0].starts_with("terminated"),
        "{last}"
    );
    assert_eq!(c.mwi_subscriptions(), 0);
}

#[test]
fn a_phone_that_never_subscribes_hears_of_changes_only_in_unsolicited_mode() {
    for unsolicited in [false, true] {
        let mut c = core();
        let (md5, sha) = ha1("alice", REALM, "pw");
        c.set_devices([Device {
            id: DeviceId(1),
            username: "alice".into(),
            ha1_md5: md5,
            ha1_sha256: sha,
            realm: REALM.into(),
            extension: Some("101".into()),
            recording: false,
            caller_id: None,
            mwi_unsolicited: unsolicited,
            busy_in_call: false,
            srtp: Default::default(),
            tls_only: false,
            mailbox: None,
        }]);
        let msg = golden("gxp1760w");
        let out = send(&mut c, T0, &msg);
        let out = send(&mut c, T0 + 1, &with_auth(&msg, &out[0], 1, true));
        assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
        c.set_voicemail_counts(T0 + 2, [(DeviceId(1), (1, 0))].into());
        let out = drain(&mut c);
        if !unsolicited {
            assert!(out.is_empty(), "{out:#?}");
            continue;
        }
        assert_eq!(out.len(), 1, "{out:#?}");
        let n = &out[0];
        assert!(
            n.starts_with("NOTIFY sip:alice@192.168.1.50:5062 SIP/2.0\r\n"),
            "{n}"
        );
        assert_eq!(header(n, "Event"), ["message-summary"]);
        assert!(
            n.contains("Messages-Waiting: yes\r\n") && n.contains("Voice-Message: 1/0 (0/0)\r\n"),
            "{n}"
        );
        // Unchanged counts send nothing more.
        c.set_voicemail_counts(T0 + 3, [(DeviceId(1), (1, 0))].into());
        assert!(drain(&mut c).is_empty());
    }
}

#[test]
fn a_subscription_nobody_refreshes_ends_with_a_terminated_notify() {
    let mut c = core();
    let sub = subscribe("s1", "", 60, "message-summary", "101");
    let out = send(&mut c, T0, &sub);
    let out = send(&mut c, T0 + 1, &with_auth(&sub, &out[0], 1, true));
    assert!(
        out[0].starts_with("SIP/2.0 200 OK\r\n"),
        "the extension is the mailbox too: {}",
        out[0]
    );
    assert_eq!(header(&out[0], "Expires"), ["60"]);
    let out = send(
        &mut c,
        T0 + 2,
        &subscribe("s2", "", 10, "message-summary", "alice"),
    );
    assert!(out[0].starts_with("SIP/2.0 423 "), "{}", out[0]);
    assert_eq!(header(&out[0], "Min-Expires"), ["60"]);
    c.set_voicemail_counts(T0 + 61_000, HashMap::new());
    let out = drain(&mut c);
    let last = out
        .iter()
        .find(|m| m.starts_with("NOTIFY "))
        .expect("a final NOTIFY");
    assert_eq!(
        header(last, "Subscription-State"),
        ["terminated;reason=timeout"]
    );
    assert_eq!(c.mwi_subscriptions(), 0);
}
