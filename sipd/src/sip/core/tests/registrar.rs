//! Identifiers, keep-alives, realms, address ownership and bans.

use super::*;

#[test]
fn sipd_identifiers_are_128_random_bits() {
    let mut c = core();
    let opt = "OPTIONS sip:gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKo1\r\nFrom: <sip:x@gosip.test>;tag=o\r\nTo: <sip:gosip.test>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let tags: Vec<String> = (0..3)
        .map(|i| {
            let r = send(
                &mut c,
                T0 + i,
                &opt.replace("z9hG4bKo1", &format!("z9hG4bKo{i}")),
            );
            tag_of(header(&r[0], "To")[0]).unwrap().to_string()
        })
        .collect();
    for t in &tags {
        assert_eq!(t.len(), 32, "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
    }
    // Successive ids share no counter: they differ in most positions.
    let same = tags[0]
        .bytes()
        .zip(tags[1].bytes())
        .filter(|(a, b)| a == b)
        .count();
    assert!(same < 12, "{tags:?}");
    // Another secret gives other ids.
    let mut other = Core::new(c.config().clone(), [2; 32]);
    other.handle_message(T0, phone(), opt.as_bytes());
    let o = drain(&mut other);
    assert_ne!(tag_of(header(&o[0], "To")[0]).unwrap(), tags[0]);
}

#[test]
fn keepalive_options_retransmit_then_time_out_and_mark_the_device_offline() {
    let mut c = core();
    keepalive_every_10s(&mut c, 2);
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
    while c.poll_event().is_some() {}
    let mut now = T0;
    let mut offline_at = None;
    let mut options = 0;
    while now < T0 + 60_000 && offline_at.is_none() {
        now += 100;
        c.handle_timeout(now);
        options += drain(&mut c)
            .iter()
            .filter(|m| m.starts_with("OPTIONS sip:alice@192.168.1.50:5062 SIP/2.0"))
            .count();
        while let Some(e) = c.poll_event() {
            if let Event::Binding(Change::Online(b)) = e {
                assert!(!b.online);
                offline_at = Some(now);
            }
        }
    }
    // Two rounds (at 10 s and 20 s), each timing out after 10 s.
    assert_eq!(offline_at, Some(T0 + 30_000));
    assert!(options > 2, "Timer E retransmissions were sent: {options}");
}

#[test]
fn an_answered_keepalive_keeps_the_device_online() {
    let mut c = core();
    keepalive_every_10s(&mut c, 1);
    let msg = golden("baresip");
    let ch = send(&mut c, T0, &msg);
    send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
    while c.poll_event().is_some() {}
    c.handle_timeout(T0 + 10_000);
    let out = drain(&mut c);
    let opt = &out[0];
    let via = header(opt, "Via")[0];
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=x\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        header(opt, "From")[0],
        header(opt, "To")[0],
        header(opt, "Call-ID")[0]
    );
    send(&mut c, T0 + 10_050, &reply);
    let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        matches!(&ev[..], [Event::Binding(Change::Online(b))] if b.online && b.last_seen == T0 + 10_050)
    );
    c.handle_timeout(T0 + 19_999);
    assert!(c.registrar().bindings_of(DeviceId(1))[0].online);
}

#[test]
fn a_device_saved_under_another_realm_cannot_authenticate() {
    let mut c = core();
    let (md5, sha) = ha1("alice", "old.realm", "pw");
    c.set_devices([Device {
        id: DeviceId(1),
        username: "alice".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: "old.realm".into(),
        extension: None,
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    }]);
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    let out = send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
    assert!(out[0].starts_with("SIP/2.0 403 "));
    assert!(matches!(
        c.poll_event(),
        Some(Event::Security {
            kind: "sip_realm_mismatch",
            ..
        })
    ));
}

#[test]
fn a_device_may_not_register_another_users_address() {
    let mut c = core();
    let msg = golden("gxp1760w").replace("To: <sip:alice@", "To: <sip:bob@");
    let ch = send(&mut c, T0, &msg);
    let out = send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
    assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
    assert_eq!(c.registrar().count(), 0);
}

#[test]
fn a_ban_is_lifted_after_its_duration_with_an_event() {
    let mut c = core();
    let msg = golden("gxp1760w");
    for i in 0..10u64 {
        let m = msg.replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKx{i}"));
        let ch = send(&mut c, T0 + i, &m);
        let bad = with_auth(&m, &ch[0], 1, true).replace("response=\"", "response=\"0");
        let out = send(&mut c, T0 + i, &bad);
        assert!(out[0].starts_with("SIP/2.0 403 "));
    }
    assert!(c.is_banned(phone().addr.ip(), T0 + 10));
    assert!(
        send(&mut c, T0 + 20, &msg).is_empty(),
        "banned traffic is ignored"
    );
    let kinds: Vec<_> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::Security { kind, .. } => Some(kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "sip_bad_password").count(),
        10
    );
    assert_eq!(kinds.last(), Some(&"sip_ban"));
    c.handle_timeout(T0 + 9 + 900_000);
    assert!(matches!(
        c.poll_event(),
        Some(Event::Security {
            kind: "sip_ban_lifted",
            ..
        })
    ));
    assert_eq!(send(&mut c, T0 + 900_100, &msg).len(), 1);
}

#[test]
fn a_new_password_or_a_deleted_device_drops_its_registrations_and_nobody_elses() {
    let mut c = core();
    let alice = c.devices["alice"].clone();
    let (md5, sha) = ha1("bob", REALM, "pw");
    let bob = Device {
        id: DeviceId(2),
        username: "bob".into(),
        ha1_md5: md5,
        ha1_sha256: sha,
        realm: REALM.into(),
        extension: Some("102".into()),
        recording: false,
        caller_id: None,
        mwi_unsolicited: false,
        busy_in_call: false,
        srtp: Default::default(),
        tls_only: false,
        mailbox: None,
    };
    c.set_devices([alice.clone(), bob.clone()]);
    for (id, who) in [(1, "alice"), (2, "bob")] {
        c.restore(restored(
            DeviceId(id),
            format!("sip:{who}@192.168.1.5{id}:5060"),
        ));
    }
    let removed = |c: &mut Core| {
        let mut out = Vec::new();
        while let Some(e) = c.poll_event() {
            if let Event::Binding(Change::Remove { device_id, .. }) = e {
                out.push(device_id);
            }
        }
        out
    };
    // The same list again (the 30 s re-read): nothing changes.
    c.set_devices([alice.clone(), bob.clone()]);
    assert!(removed(&mut c).is_empty());
    // Alice's password regenerated: her phone must register again.
    let (md5, sha) = ha1("alice", REALM, "new password");
    c.set_devices([
        Device {
            ha1_md5: md5,
            ha1_sha256: sha,
            ..alice.clone()
        },
        bob.clone(),
    ]);
    assert_eq!(removed(&mut c), [DeviceId(1)]);
    assert!(c.registrar().bindings_of(DeviceId(1)).is_empty());
    assert_eq!(c.registrar().bindings_of(DeviceId(2)).len(), 1);
    // Bob deleted.
    c.set_devices([alice]);
    assert_eq!(removed(&mut c), [DeviceId(2)]);
}

#[test]
fn a_phone_set_up_for_tls_is_refused_in_clear_even_with_the_right_password() {
    let mut c = core();
    let alice = Device {
        tls_only: true,
        ..c.devices["alice"].clone()
    };
    c.set_devices([alice]);
    let msg = golden("gxp1760w");
    let ch = send(&mut c, T0, &msg);
    let out = send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
    assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
    assert!(header(&out[0], "Warning")[0].contains("TLS"), "{}", out[0]);
    assert!(c.registrar().bindings_of(DeviceId(1)).is_empty());
}

#[test]
fn a_keepalive_round_goes_out_in_batches_not_all_at_once() {
    let mut c = core();
    keepalive_every_10s(&mut c, 2);
    for i in 0..150 {
        c.restore(restored(
            DeviceId(i),
            format!("sip:phone{i}@192.168.1.50:{}", 6000 + i),
        ));
    }
    let options = |c: &mut Core| {
        drain(c)
            .iter()
            .filter(|m| m.starts_with("OPTIONS "))
            .count()
    };
    c.handle_timeout(T0);
    assert_eq!(options(&mut c), 0);
    c.handle_timeout(T0 + 10_000);
    assert_eq!(options(&mut c), 64, "the first batch");
    assert_eq!(c.poll_timeout(), Some(T0 + 10_010));
    c.handle_timeout(T0 + 10_010);
    assert_eq!(options(&mut c), 64);
    c.handle_timeout(T0 + 10_020);
    assert_eq!(options(&mut c), 22, "every binding once per round");
    c.handle_timeout(T0 + 10_030);
    assert_eq!(options(&mut c), 0);
}

/// Keepalives every 10 s; `failures` unanswered rounds take a phone offline.
fn keepalive_every_10s(c: &mut Core, failures: u32) {
    c.set_config(
        T0,
        CoreConfig {
            realm: REALM.into(),
            keepalive_interval_ms: 10_000,
            keepalive_failures: failures,
            ..CoreConfig::default()
        },
    );
}

/// A binding of `device_id` at `contact` as sipd reads it back at start-up,
/// registered from [`phone`] for an hour.
fn restored(device_id: DeviceId, contact: String) -> Binding {
    bound(device_id, contact, phone())
}
