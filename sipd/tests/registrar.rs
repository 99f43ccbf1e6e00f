#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The registrar over real sockets: digest, contacts, expiry, un-register,
//! retransmissions, restart, bans, TCP, keep-alives, floods.

mod common;

use std::time::Duration;

use common::{Phone, Resp, Sipd};

#[tokio::test]
async fn a_phone_registers_with_digest_and_the_200_lists_its_contact() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("alice", "s3cret-s3cret", "101")]).await;
    let p = Phone::udp(&s, "alice").await.with_password("s3cret-s3cret");
    let first = p
        .request(&p.register_msg("Contact: <sip:alice@127.0.0.1:5999>\r\nExpires: 300\r\n"))
        .await;
    assert_eq!(first.code(), 401);
    let ch = first.headers("www-authenticate");
    assert_eq!(ch.len(), 2, "MD5 and SHA-256 are both offered: {ch:?}");
    assert!(ch[0].contains("algorithm=MD5") && ch[0].contains("qop=\"auth\""));
    assert!(ch[1].contains("algorithm=SHA-256"));

    let r = p
        .register(&format!("Contact: <{}>\r\nExpires: 300\r\n", p.contact()))
        .await;
    assert_eq!(r.code(), 200, "{}", r.0);
    let contacts = r.headers("contact");
    assert_eq!(contacts.len(), 1);
    assert!(contacts[0].starts_with(&format!("<{}>;expires=", p.contact())));
    let via = r.header("via").unwrap();
    assert!(
        via.contains(&format!("rport={}", p.local.port())) && via.contains("received=127.0.0.1")
    );
    s.eventually("row stored", || async {
        s.registrations().await.len() == 1
    })
    .await;
    let rows = s.registrations().await;
    assert_eq!(rows[0].0, p.contact());
    assert_eq!(rows[0].1, "udp");
    s.stop().await;
}

#[tokio::test]
async fn sha256_digest_registers_too() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("bob", "pw-long-enough", "102")]).await;
    let p = Phone::udp(&s, "bob").await.with_password("pw-long-enough");
    let c = format!("Contact: <{}>\r\n", p.contact());
    let ch = p.request(&p.register_msg(&c)).await;
    let auth = p.authorization(&ch, "SHA-256", "REGISTER", 1);
    let r = p
        .request(&p.register_msg(&format!("{c}Authorization: {auth}\r\n")))
        .await;
    assert_eq!(r.code(), 200, "{}", r.0);
    s.stop().await;
}

#[tokio::test]
async fn several_contacts_are_all_listed_and_unregister_removes_them() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("carol", "pw-long-enough", "103")]).await;
    let p = Phone::udp(&s, "carol")
        .await
        .with_password("pw-long-enough");
    let r = p
        .register("Contact: <sip:carol@127.0.0.1:6001>;expires=120, <sip:carol@127.0.0.1:6002>\r\nExpires: 600\r\n")
        .await;
    assert_eq!(r.code(), 200);
    let mut c = r.headers("contact");
    c.sort();
    assert_eq!(
        c,
        vec![
            "<sip:carol@127.0.0.1:6001>;expires=120".to_string(),
            "<sip:carol@127.0.0.1:6002>;expires=600".to_string()
        ]
    );
    // A second phone of the same device adds a third contact.
    let r = p.register("Contact: <sip:carol@127.0.0.1:6003>\r\n").await;
    assert_eq!(r.headers("contact").len(), 3);
    // One contact removed with expires=0.
    let r = p
        .register("Contact: <sip:carol@127.0.0.1:6001>;expires=0\r\n")
        .await;
    assert_eq!(r.headers("contact").len(), 2, "{}", r.0);
    // '*' needs Expires: 0.
    let r = p.register("Contact: *\r\nExpires: 60\r\n").await;
    assert_eq!(r.code(), 400);
    let r = p.register("Contact: *\r\nExpires: 0\r\n").await;
    assert_eq!(r.code(), 200);
    assert!(r.headers("contact").is_empty());
    s.eventually("rows deleted", || async {
        s.registrations().await.is_empty()
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn too_short_expiry_gets_423_with_min_expires_and_long_ones_are_capped() {
    let s = Sipd::start(&[("sip.min_expires", "120"), ("sip.max_expires", "1800")]).await;
    s.add_devices(&[("dave", "pw-long-enough", "104")]).await;
    let p = Phone::udp(&s, "dave").await.with_password("pw-long-enough");
    let r = p
        .register("Contact: <sip:dave@127.0.0.1:6001>\r\nExpires: 30\r\n")
        .await;
    assert_eq!(r.code(), 423);
    assert_eq!(r.header("min-expires").as_deref(), Some("120"));
    let r = p
        .register("Contact: <sip:dave@127.0.0.1:6001>\r\nExpires: 86400\r\n")
        .await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        r.headers("contact"),
        vec!["<sip:dave@127.0.0.1:6001>;expires=1800".to_string()]
    );
    s.stop().await;
}

#[tokio::test]
async fn a_retransmitted_register_gets_the_same_answer_without_being_processed_again() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("erin", "pw-long-enough", "105")]).await;
    let p = Phone::udp(&s, "erin").await.with_password("pw-long-enough");
    let c = format!("Contact: <{}>\r\n", p.contact());
    let ch = p.request(&p.register_msg(&c)).await;
    let auth = p.authorization(&ch, "MD5", "REGISTER", 1);
    let msg = p.register_msg(&format!("{c}Authorization: {auth}\r\n"));
    let a = p.request(&msg).await;
    let b = p.request(&msg).await;
    assert_eq!(a.code(), 200);
    // Same bytes: the transaction layer re-sent its response (same To tag);
    // the replayed nc would otherwise have been refused.
    assert_eq!(a.0, b.0);
    s.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_identical_answers_and_security_events() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("frank", "right-password", "106")]).await;
    let known = Phone::udp(&s, "frank").await.with_password("wrong");
    let unknown = Phone::udp(&s, "nobody").await.with_password("wrong");
    let c1 = known
        .request(&known.register_msg("Contact: <sip:x@127.0.0.1:1>\r\n"))
        .await;
    let c2 = unknown
        .request(&unknown.register_msg("Contact: <sip:x@127.0.0.1:1>\r\n"))
        .await;
    assert_eq!(c1.code(), 401);
    let strip = |r: &Resp, p: &Phone| {
        r.shape()
            .replace(&p.user, "U")
            .replace(&p.local.port().to_string(), "P")
    };
    assert_eq!(strip(&c1, &known), strip(&c2, &unknown));
    let f1 = known.register("Contact: <sip:x@127.0.0.1:1>\r\n").await;
    let f2 = unknown.register("Contact: <sip:x@127.0.0.1:1>\r\n").await;
    assert_eq!(f1.code(), 403);
    assert_eq!(strip(&f1, &known), strip(&f2, &unknown));
    s.eventually("two security rows", || async {
        s.security_events().await.len() == 2
    })
    .await;
    let ev = s.security_events().await;
    assert_eq!(
        ev[0],
        (
            "sip_bad_password".into(),
            "127.0.0.1".into(),
            "frank".into()
        )
    );
    assert_eq!(
        ev[1],
        (
            "sip_unknown_user".into(),
            "127.0.0.1".into(),
            "nobody".into()
        )
    );
    s.stop().await;
}

#[tokio::test]
async fn an_expired_nonce_is_rechallenged_with_stale_true() {
    // The shortest lifetime the settings screen takes.
    let s = Sipd::start(&[("sip.nonce_ttl", "30")]).await;
    s.add_devices(&[("gina", "pw-long-enough", "107")]).await;
    let p = Phone::udp(&s, "gina").await.with_password("pw-long-enough");
    let c = "Contact: <sip:gina@127.0.0.1:7000>\r\n";
    let ch = p.request(&p.register_msg(c)).await;
    let auth = p.authorization(&ch, "MD5", "REGISTER", 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    let r = p
        .request(&p.register_msg(&format!("{c}Authorization: {auth}\r\n")))
        .await;
    assert_eq!(r.code(), 401, "expired nonce was accepted: {}", r.0);
    assert!(
        r.headers("www-authenticate")
            .iter()
            .all(|h| h.ends_with("stale=true"))
    );
    assert!(
        s.security_events().await.is_empty(),
        "a stale nonce is not a failure"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_replayed_nonce_count_is_refused() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("hank", "pw-long-enough", "108")]).await;
    let p = Phone::udp(&s, "hank").await.with_password("pw-long-enough");
    let c = "Contact: <sip:hank@127.0.0.1:7000>\r\n";
    let ch = p.request(&p.register_msg(c)).await;
    let auth = p.authorization(&ch, "MD5", "REGISTER", 1);
    let ok = p
        .request(&p.register_msg(&format!("{c}Authorization: {auth}\r\n")))
        .await;
    assert_eq!(ok.code(), 200);
    // Same credentials in a new transaction (new branch, new CSeq).
    let again = p
        .request(&p.register_msg(&format!("{c}Authorization: {auth}\r\n")))
        .await;
    assert_eq!(again.code(), 401);
    // The next nc on the same nonce is fine.
    let auth2 = p.authorization(&ch, "MD5", "REGISTER", 2);
    let next = p
        .request(&p.register_msg(&format!("{c}Authorization: {auth2}\r\n")))
        .await;
    assert_eq!(next.code(), 200);
    s.stop().await;
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("ivy", "pw-long-enough", "109")]).await;
    let p = Phone::udp(&s, "ivy").await.with_password("pw-long-enough");
    assert_eq!(
        p.register("Contact: <sip:ivy@127.0.0.1:7001>\r\nExpires: 600\r\n")
            .await
            .code(),
        200
    );
    s.eventually("stored", || async { s.registrations().await.len() == 1 })
        .await;
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    let s = Sipd::start_in(&dir, &[]).await;
    let p = Phone::udp(&s, "ivy").await.with_password("pw-long-enough");
    // A query REGISTER (no Contact) lists the restored binding.
    let r = p.register("").await;
    assert_eq!(r.code(), 200);
    let c = r.headers("contact");
    assert_eq!(c.len(), 1);
    assert!(c[0].starts_with("<sip:ivy@127.0.0.1:7001>;expires="));
    s.stop().await;
    drop(tmp);
}

#[tokio::test]
async fn expired_registrations_are_swept_from_the_table() {
    // The shortest registration the settings screen takes.
    let s = Sipd::start(&[("sip.min_expires", "10")]).await;
    s.add_devices(&[("jack", "pw-long-enough", "110")]).await;
    let p = Phone::udp(&s, "jack").await.with_password("pw-long-enough");
    assert_eq!(
        p.register("Contact: <sip:jack@127.0.0.1:7001>\r\nExpires: 10\r\n")
            .await
            .code(),
        200
    );
    s.eventually("stored", || async { s.registrations().await.len() == 1 })
        .await;
    testkit::eventually(Duration::from_secs(30), "swept", || async {
        s.registrations().await.is_empty()
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn repeated_failures_ban_the_address_and_the_ban_is_logged() {
    let s = Sipd::start(&[("sip.ban_threshold", "3")]).await;
    s.add_devices(&[("kate", "pw-long-enough", "111")]).await;
    let p = Phone::udp(&s, "kate").await.with_password("bad");
    for _ in 0..3 {
        assert_eq!(
            p.register("Contact: <sip:k@127.0.0.1:1>\r\n").await.code(),
            403
        );
    }
    // Ignored now, even a plain OPTIONS.
    assert!(
        p.request_once(&p.options(), Duration::from_millis(500))
            .await
            .is_none()
    );
    s.eventually("ban row", || async {
        s.security_events().await.iter().any(|e| e.0 == "sip_ban")
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn tcp_registration_works_a_crlf_ping_gets_a_pong_and_closing_unregisters() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[
        ("liam", "pw-long-enough", "112"),
        ("mia", "pw-long-enough", "113"),
    ])
    .await;
    let p = Phone::tcp(&s, "liam").await.with_password("pw-long-enough");
    p.send(b"\r\n\r\n").await;
    assert_eq!(p.recv_raw_tcp(Duration::from_secs(2)).await, b"\r\n");
    let r = p.register(&format!("Contact: <{}>\r\n", p.contact())).await;
    assert_eq!(r.code(), 200, "{}", r.0);
    s.eventually("tcp row", || async {
        s.registrations()
            .await
            .first()
            .is_some_and(|r| r.1 == "tcp")
    })
    .await;
    // Two requests in one segment are both answered (Content-Length framing).
    let both = format!("{}{}", p.options(), p.options());
    p.send(both.as_bytes()).await;
    assert_eq!(
        Resp(p.recv(Duration::from_secs(2)).await.unwrap()).code(),
        200
    );
    assert_eq!(
        Resp(p.recv(Duration::from_secs(2)).await.unwrap()).code(),
        200
    );
    // The connection closes: nothing can reach that contact any more, so
    // its registration goes at once; a phone on UDP keeps its own.
    let u = Phone::udp(&s, "mia").await.with_password("pw-long-enough");
    let r = u.register(&format!("Contact: <{}>\r\n", u.contact())).await;
    assert_eq!(r.code(), 200, "{}", r.0);
    s.eventually("both rows", || async { s.registrations().await.len() == 2 })
        .await;
    drop(p);
    s.eventually("only the udp row", || async {
        let rows = s.registrations().await;
        rows.len() == 1 && rows[0].1 == "udp"
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn options_to_sipd_lists_allow_accept_and_supported() {
    let s = Sipd::start(&[]).await;
    let p = Phone::udp(&s, "x").await;
    let r = p.request(&p.options()).await;
    assert_eq!(r.code(), 200);
    assert!(r.header("allow").unwrap().contains("REGISTER"));
    assert_eq!(r.header("accept").as_deref(), Some("application/sdp"));
    assert!(r.header("supported").is_some());
    s.stop().await;
}

#[tokio::test]
async fn a_silent_device_is_marked_offline_and_an_answering_one_stays_online() {
    let s = Sipd::start(&[
        ("sip.keepalive_interval", "1"),
        ("sip.keepalive_failures", "2"),
    ])
    .await;
    s.add_devices(&[
        ("mia", "pw-long-enough", "113"),
        ("noah", "pw-long-enough", "114"),
    ])
    .await;
    let silent = Phone::udp(&s, "mia").await.with_password("pw-long-enough");
    let live = Phone::udp(&s, "noah").await.with_password("pw-long-enough");
    assert_eq!(
        silent
            .register(&format!("Contact: <{}>\r\n", silent.contact()))
            .await
            .code(),
        200
    );
    assert_eq!(
        live.register(&format!("Contact: <{}>\r\n", live.contact()))
            .await
            .code(),
        200
    );
    // The live phone answers every keep-alive OPTIONS; the silent one reads
    // and drops them.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let a = answered.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = live.recv(Duration::from_secs(30)).await {
            if m.starts_with("OPTIONS ") {
                let reply = answer_ok(&m);
                live.send(reply.as_bytes()).await;
                a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    s.eventually("silent device offline", || async {
        s.registrations()
            .await
            .iter()
            .any(|r| r.0.contains("mia") && !r.2)
    })
    .await;
    assert!(answered.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let rows = s.registrations().await;
    assert!(rows.iter().any(|r| r.0.contains("noah") && r.2), "{rows:?}");
    responder.abort();
    drop(silent);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_one_address_does_not_stop_a_phone_registering() {
    let s = Sipd::start(&[]).await;
    s.add_devices(&[("olga", "pw-long-enough", "115")]).await;
    let flood_stop = tokio_util::sync::CancellationToken::new();
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let f = Phone::udp(&s, "flood").await;
        let stop = flood_stop.clone();
        flooders.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while !stop.is_cancelled() {
                for _ in 0..50 {
                    f.send(f.options().as_bytes()).await;
                    f.send(
                        f.register_msg("Contact: <sip:f@127.0.0.1:1>\r\n")
                            .as_bytes(),
                    )
                    .await;
                    sent += 2;
                }
                tokio::task::yield_now().await;
            }
            sent
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The flood uses other ports of the same address as the phone below, so
    // use a distinct loopback address for the phone: 127.0.0.2.
    let sock = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let p = Phone::from_socket(&s, "olga", sock).with_password("pw-long-enough");
    let r = p.register(&format!("Contact: <{}>\r\n", p.contact())).await;
    assert_eq!(r.code(), 200);
    flood_stop.cancel();
    let mut total = 0;
    for f in flooders {
        total += f.await.unwrap();
    }
    assert!(total > 1000, "the flood was real: {total} messages");
    s.stop().await;
}

fn answer_ok(req: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in req.split("\r\n").skip(1) {
        let l = line.to_ascii_lowercase();
        if ["via:", "from:", "to:", "call-id:", "cseq:"]
            .iter()
            .any(|h| l.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
