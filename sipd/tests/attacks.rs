#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attacks on a running sipd (with mediad) over real UDP sockets. The
//! genuine phones and the trunk sit on 127.0.0.1 unless a test says
//! otherwise; the attacker binds another loopback address (127.0.0.2 or
//! 127.0.0.3), so sipd sees it as another host, as it would a stranger on
//! the Internet who read the call's identifiers off the wire. Each test
//! shows the attack fail and the genuine users carry on.

mod common;

use std::time::Duration;

use common::dialog::*;
use common::{Phone, REALM, Resp, Sipd, digest_response};
use tokio::net::UdpSocket;

/// Settings for every test: no keep-alive OPTIONS to the phones' sockets,
/// so the next message a phone reads is the one the test is about.
const QUIET: (&str, &str) = ("sip.keepalive_interval", "0");

/// How long a test listens for datagrams it expects not to come. Never a
/// pass condition on its own: each silence is followed by a message that
/// must arrive after anything sipd would have sent first.
const LISTEN: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// (a) in-dialog requests from a stranger

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_bye_reinvite_and_refer_with_the_right_dialog_ids_leave_the_call_up() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let (alice, bob) = phones(&s).await;
    let call = establish(&alice, &bob, "atk-a").await;
    let attacker = stranger(&s, "127.0.0.2", "mallory").await;

    // As alice: a BYE and a hold re-INVITE in alice's dialog with sipd.
    let a_side = Dialog {
        call_id: call.a_call_id.clone(),
        local_tag: call.a_tag.clone(),
        remote_tag: call.a_remote_tag.clone(),
        target: call.a_target.clone(),
    };
    // A REFER would have sipd ring someone of the attacker's choosing and
    // hand them the call.
    let refer_to = "Refer-To: <sip:+15550001234@gosip.test>\r\n";
    let forged = [
        a_side.request(&attacker, "BYE", 50, "", ""),
        a_side.request(&attacker, "INVITE", 51, "", &sdp(4010, "sendonly")),
        a_side.request(&attacker, "REFER", 52, refer_to, ""),
    ];
    // As bob: the same in bob's dialog with sipd.
    let b_side = Dialog {
        call_id: call.b_call_id.clone(),
        local_tag: call.b_tag.clone(),
        remote_tag: call.b_remote_tag.clone(),
        target: call.b_target.clone(),
    };
    let forged_b = [
        b_side.request(&attacker, "BYE", 60, "", ""),
        b_side.request(&attacker, "INVITE", 61, "", &sdp(4012, "sendonly")),
        b_side.request(
            &attacker,
            "REFER",
            62,
            "Refer-To: <sip:201@gosip.test>\r\n",
            "",
        ),
    ];
    for m in forged.iter().chain(&forged_b) {
        let r = attacker.request(m).await;
        assert_eq!(r.code(), 481, "a stranger's in-dialog request: {}", r.0);
    }
    assert_eq!(
        live_calls(&s).await,
        std::slice::from_ref(&call.a_call_id),
        "the forged BYEs must not end the call"
    );

    // Both phones still talk through sipd: alice's INFO is the next thing
    // bob hears (not a BYE, not a re-INVITE) and his answer comes back.
    let info = a_side.request(
        &alice,
        "INFO",
        3,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    );
    alice.send(info.as_bytes()).await;
    let got = next_request(&bob).await;
    assert!(got.starts_with("INFO "), "bob heard: {got}");
    assert!(got.contains("Signal=5"), "{got}");
    bob.send(reply(&got, 200, "OK", None, "", "").as_bytes())
        .await;
    assert_eq!(final_response(&alice, 3).await.code(), 200);
    // And bob's re-INVITE reaches alice.
    let reinvite = b_side.request(&bob, "INVITE", 2, &contact(&bob), &sdp(4002, "sendrecv"));
    bob.send(reinvite.as_bytes()).await;
    let got = next_request(&alice).await;
    assert!(got.starts_with("INVITE "), "alice heard: {got}");
    assert!(!got.contains("a=sendonly"), "{got}");
    alice
        .send(
            reply(
                &got,
                200,
                "OK",
                None,
                &contact(&alice),
                &sdp(4000, "sendrecv"),
            )
            .as_bytes(),
        )
        .await;
    let ok = final_response(&bob, 2).await;
    assert_eq!(ok.code(), 200);
    bob.send(b_side.request(&bob, "ACK", 2, "", "").as_bytes())
        .await;

    // The genuine BYE still ends the call, and bob hears it.
    alice
        .send(a_side.request(&alice, "BYE", 4, "", "").as_bytes())
        .await;
    let bye = next_request(&bob).await;
    assert!(bye.starts_with("BYE "), "bob heard: {bye}");
    bob.send(reply(&bye, 200, "OK", None, "", "").as_bytes())
        .await;
    assert_eq!(final_response(&alice, 4).await.code(), 200);
    assert!(live_calls(&s).await.is_empty());
    s.eventually("one answered cdr", || async {
        let rows: Vec<(Option<String>,)> =
            sqlx::query_as("SELECT disposition FROM cdrs WHERE ended_at IS NOT NULL")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        matches!(rows.as_slice(), [(Some(d),)] if d == "answered")
    })
    .await;
    s.stop().await;
}

// ---------------------------------------------------------------------------
// (b) a forged answer to sipd's INVITE

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_200_to_the_callees_invite_does_not_answer_the_call() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let (alice, bob) = phones(&s).await;
    let attacker = stranger(&s, "127.0.0.2", "mallory").await;
    let invite = send_authenticated_invite(&alice, "atk-b", "202", 1).await;
    let to_bob = next_request(&bob).await;
    assert!(to_bob.starts_with("INVITE "), "{to_bob}");

    // The attacker read sipd's INVITE to bob (branch, tags, Call-ID) and
    // answers it first, with its own SDP and Contact.
    let forged = reply(
        &to_bob,
        200,
        "OK",
        Some("evil"),
        &contact(&attacker),
        &sdp(6666, "sendrecv"),
    );
    attacker.send(forged.as_bytes()).await;
    // Then bob rings: the caller must hear the ringing, not an answer.
    bob.send(reply(&to_bob, 180, "Ringing", Some("b1"), "", "").as_bytes())
        .await;
    let first = loop {
        let r = alice.recv(Duration::from_secs(5)).await.expect("an answer");
        if Resp(r.clone()).code() != 100 {
            break Resp(r);
        }
    };
    assert_eq!(first.code(), 180, "alice heard: {}", first.0);
    // sipd never ACKed the forger's 200 (it would have, before reading
    // bob's 180).
    assert_eq!(attacker.recv(LISTEN).await, None);

    // bob answers for real: alice gets the 200 with mediad's address, bob
    // the ACK of his own dialog.
    bob.send(
        reply(
            &to_bob,
            200,
            "OK",
            Some("b1"),
            &contact(&bob),
            &sdp(4002, "sendrecv"),
        )
        .as_bytes(),
    )
    .await;
    let ok = final_response(&alice, 2).await;
    assert_eq!(ok.code(), 200, "{}", ok.0);
    assert!(!ok.0.contains("6666") && !ok.0.contains("evil"), "{}", ok.0);
    let ack = loop {
        let m = next_request(&bob).await;
        if !m.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(header(&ack, "to").unwrap().contains("tag=b1"), "{ack}");
    alice.send(ack_for(&invite, &ok).as_bytes()).await;
    assert_eq!(attacker.recv(LISTEN).await, None);
    s.stop().await;
}

// ---------------------------------------------------------------------------
// (c) bans: never the trunk's address, always a guesser's

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_the_trunks_address_never_ban_it_but_ban_any_other_address() {
    let s = Sipd::start_with_mediad(&[
        QUIET,
        ("twilio.trunk_username", "trunkuser"),
        ("twilio.trunk_password", "trunkpw"),
        ("sip.trunk_source_ips", "127.0.0.2"),
    ])
    .await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    let bob_id: proto::types::DeviceId =
        sqlx::query_scalar("SELECT id FROM devices WHERE username = 'bob'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    let (_alice, bob) = phones(&s).await;

    // 100 wrong passwords for bob from the trunk's address: every one is
    // answered with 403, none bans.
    let trunk = stranger(&s, "127.0.0.2", "bob")
        .await
        .with_password("guess");
    assert_eq!(guess_passwords(&trunk, 100).await, 100);
    // A guesser elsewhere is banned at the threshold (10): its 11th try
    // goes unanswered, as does anything after.
    let guesser = stranger(&s, "127.0.0.3", "bob")
        .await
        .with_password("guess");
    assert_eq!(guess_passwords(&guesser, 100).await, 10);
    let after = guesser.request_once(&guesser.options(), LISTEN).await;
    assert!(after.is_none(), "{after:?}");
    assert_eq!(bans(&s, "127.0.0.3").await, ["127.0.0.3"]);

    // The trunk's next call is challenged and, answered, rings bob.
    let uri = format!("sip:+15550001111@{}", s.sip);
    let sdp_t = sdp(5000, "sendrecv");
    let trunk_invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKtr{cseq};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:+15557654321@twilio.test>;tag=tw1\r\nTo: <sip:+15550001111@{REALM}>\r\nCall-ID: atk-c-trunk\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:twilio@{l}>\r\nX-GoSIP-Devices: {dev}\r\n{auth}\
             Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp_t}",
            l = trunk.local,
            dev = bob_id,
            len = sdp_t.len(),
        )
    };
    let ch = trunk.request(&trunk_invite(1, "")).await;
    assert_eq!(ch.code(), 407, "{}", ch.0);
    trunk
        .send(
            format!(
                "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKtr1;rport\r\nFrom: <sip:+15557654321@twilio.test>;tag=tw1\r\n\
                 To: {}\r\nCall-ID: atk-c-trunk\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                trunk.local,
                ch.header("to").unwrap()
            )
            .as_bytes(),
        )
        .await;
    let auth = digest_response(
        "trunkuser",
        "trunkpw",
        &nonce_of(&ch),
        "INVITE",
        &uri,
        "MD5",
        1,
    );
    trunk
        .send(trunk_invite(2, &format!("Proxy-Authorization: {auth}\r\n")).as_bytes())
        .await;
    let to_bob = next_request(&bob).await;
    assert!(to_bob.starts_with("INVITE "), "{to_bob}");
    assert!(to_bob.contains("+15557654321"), "{to_bob}");
    bob.send(reply(&to_bob, 486, "Busy Here", Some("b1"), "", "").as_bytes())
        .await;
    // Served like any trunk call: bob's refusal (or voicemail) comes back.
    let answer = final_response(&trunk, 2).await;
    assert!(!matches!(answer.code(), 401 | 403 | 407), "{}", answer.0);
    s.stop().await;
}

// ---------------------------------------------------------------------------
// (d) no challenge amplification

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_invite_gets_exactly_one_407_and_its_retransmission_one_more() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
    ])
    .await;
    // Whoever sends the INVITE never ACKs: a forged source would not.
    let a = stranger(&s, "127.0.0.2", "alice").await;
    let invite = invite_msg(&a, "atk-d", "202", 1, "");
    a.send(invite.as_bytes()).await;
    let heard = collect(&a, Duration::from_secs(6)).await;
    let challenges = heard.iter().filter(|r| r.code() == 407).count();
    assert_eq!(challenges, 1, "{heard:?}");
    assert!(
        heard.iter().all(|r| r.code() == 407 || r.code() == 100),
        "{heard:?}"
    );
    // A phone whose 407 was lost retransmits its INVITE and hears it again.
    a.send(invite.as_bytes()).await;
    let again = collect(&a, Duration::from_secs(1)).await;
    assert_eq!(
        again.iter().filter(|r| r.code() == 407).count(),
        1,
        "{again:?}"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------
// (e) replayed and misdirected credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_authorization_and_one_made_for_another_uri_are_refused() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
        ("carol", "pw-carol-2026", "203"),
    ])
    .await;
    let (alice, bob) = phones(&s).await;

    // alice registers; the attacker captured her REGISTER (nc=1) and
    // replays it with its own Contact, from alice's NAT address (another
    // port) and from elsewhere.
    let ch = alice.request(&alice.register_msg(&contact(&alice))).await;
    assert_eq!(ch.code(), 401);
    let auth = alice.authorization(&ch, "MD5", "REGISTER", 1);
    let captured = alice.register_msg(&format!("{}Authorization: {auth}\r\n", contact(&alice)));
    assert_eq!(alice.request(&captured).await.code(), 200);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        let m = stranger(&s, ip, "alice").await;
        let replay = captured
            .replace(&alice.local.to_string(), &m.local.to_string())
            .replace(";branch=z9hG4bK", ";branch=z9hG4bKreplay");
        let r = m.request(&replay).await;
        assert_eq!(r.code(), 401, "replay from {ip}: {}", r.0);
    }
    let contacts: Vec<String> = s.registrations().await.into_iter().map(|r| r.0).collect();
    assert!(
        contacts
            .iter()
            .all(|c| c.contains(&alice.local.to_string()) || c.contains(&bob.local.to_string())),
        "{contacts:?}"
    );

    // alice's INVITE to 202 (nc=1) sets up a call; the same Authorization
    // on a new INVITE (another Call-ID, 203) is challenged again.
    let first = send_authenticated_invite(&alice, "atk-e-1", "202", 1).await;
    let to_bob = next_request(&bob).await;
    assert!(to_bob.starts_with("INVITE "), "{to_bob}");
    let captured_auth = header(&first, "proxy-authorization").unwrap();
    let m = stranger(&s, "127.0.0.1", "alice").await;
    let replay = invite_msg(
        &m,
        "atk-e-2",
        "202",
        2,
        &format!("Proxy-Authorization: {captured_auth}\r\n"),
    );
    assert_eq!(m.request(&replay).await.code(), 407);
    let far = stranger(&s, "127.0.0.2", "alice").await;
    let replay = invite_msg(
        &far,
        "atk-e-2",
        "202",
        2,
        &format!("Proxy-Authorization: {captured_auth}\r\n"),
    );
    assert_eq!(far.request(&replay).await.code(), 407);

    // An answer made for sip:203 (nc=2, held back from sipd) put on an
    // INVITE to 202 is refused; the phone's own next INVITE (nc=3) is
    // not, even with the URI written another way (an explicit transport).
    let ch = alice
        .request(&invite_msg(&alice, "atk-e-3", "202", 1, ""))
        .await;
    assert_eq!(ch.code(), 407);
    alice
        .send(ack_for(&invite_msg(&alice, "atk-e-3", "202", 1, ""), &ch).as_bytes())
        .await;
    let nonce = nonce_of(&ch);
    let for_203 = digest_response(
        "alice",
        "pw-alice-2026",
        &nonce,
        "INVITE",
        &format!("sip:203@{}", s.sip),
        "MD5",
        2,
    );
    let misdirected = invite_msg(
        &alice,
        "atk-e-3",
        "202",
        2,
        &format!("Proxy-Authorization: {for_203}\r\n"),
    );
    let r = alice.request(&misdirected).await;
    assert_eq!(r.code(), 400, "{}", r.0);
    alice.send(ack_for(&misdirected, &r).as_bytes()).await;
    let ok_uri = format!("sip:202@{};transport=udp", s.sip);
    let good = digest_response(
        "alice",
        "pw-alice-2026",
        &nonce,
        "INVITE",
        &ok_uri,
        "MD5",
        3,
    );
    alice
        .send(
            invite_msg(
                &alice,
                "atk-e-3",
                "202",
                3,
                &format!("Proxy-Authorization: {good}\r\n"),
            )
            .as_bytes(),
        )
        .await;
    // bob hears the second genuine call (after retransmissions of the first).
    let second = loop {
        let m = next_request(&bob).await;
        if header(&m, "call-id") != header(&to_bob, "call-id") {
            break m;
        }
    };
    assert!(second.starts_with("INVITE "), "{second}");
    s.eventually("a security event for the misdirected answer", || async {
        s.security_events()
            .await
            .iter()
            .any(|(k, ip, u)| k == "sip_digest_uri_mismatch" && ip == "127.0.0.1" && u == "alice")
    })
    .await;
    s.stop().await;
}

// ---------------------------------------------------------------------------
// (f) nonces bound to the address they went to

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_on_a_nonce_issued_to_another_address_ban_nobody() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[("alice", "pw-alice-2026", "201")]).await;
    let alice = Phone::udp(&s, "alice").await.with_password("pw-alice-2026");
    let ch = alice.request(&alice.register_msg(&contact(&alice))).await;
    assert_eq!(ch.code(), 401);
    let alices_nonce = nonce_of(&ch);

    // alice's nonce, guessed on from 127.0.0.2: a fresh challenge each
    // time, never a failure.
    let m = stranger(&s, "127.0.0.2", "alice").await;
    let uri = format!("sip:{}", s.sip);
    for nc in 1..=30 {
        let auth = digest_response("alice", "guess", &alices_nonce, "REGISTER", &uri, "MD5", nc);
        let r = m
            .request(&m.register_msg(&format!("{}Authorization: {auth}\r\n", contact(&m))))
            .await;
        assert_eq!(r.code(), 401, "{}", r.0);
    }
    // The attacker's own nonce, guessed on with alice's address as source
    // (here a socket on 127.0.0.1): the same.
    let own = nonce_of(&m.request(&m.register_msg(&contact(&m))).await);
    let spoof = stranger(&s, "127.0.0.1", "alice").await;
    for nc in 1..=30 {
        let auth = digest_response("alice", "guess", &own, "REGISTER", &uri, "MD5", nc);
        let r = spoof
            .request(&spoof.register_msg(&format!("{}Authorization: {auth}\r\n", contact(&spoof))))
            .await;
        assert_eq!(r.code(), 401, "{}", r.0);
    }
    // Nothing counted (see the events below): alice registers on the
    // nonce she was given.
    let auth = digest_response(
        "alice",
        "pw-alice-2026",
        &alices_nonce,
        "REGISTER",
        &uri,
        "MD5",
        1,
    );
    let r = alice
        .request(&alice.register_msg(&format!("{}Authorization: {auth}\r\n", contact(&alice))))
        .await;
    assert_eq!(r.code(), 200, "{}", r.0);

    // The same guesses on the attacker's own nonce from its own address
    // count, and ban that address alone.
    let m = m.with_password("guess");
    assert_eq!(guess_passwords(&m, 20).await, 10);
    assert_eq!(bans(&s, "127.0.0.2").await, ["127.0.0.2"]);
    // Events are stored in order: the ban is there, so would be any
    // failure counted earlier against alice's address.
    let events = s.security_events().await;
    assert!(
        events
            .iter()
            .all(|(kind, ip, _)| !kind.starts_with("sip_") || ip != "127.0.0.1"),
        "{events:?}"
    );
    assert_eq!(alice.register(&contact(&alice)).await.code(), 200);
    s.stop().await;
}

/// An attended transfer (REFER with Replaces) joins only dialogs of the
/// phone that sends it: a registered phone that learned the Call-ID and
/// tags of someone else's call (they travel in clear) cannot pull either
/// party into its own call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_naming_someone_elses_dialog_in_replaces_takes_nobody() {
    let s = Sipd::start_with_mediad(&[QUIET]).await;
    s.add_devices(&[
        ("alice", "pw-alice-2026", "201"),
        ("bob", "pw-bob-2026-x", "202"),
        ("carol", "pw-carol-2026", "203"),
    ])
    .await;
    let (alice, bob) = phones(&s).await;
    let carol = Phone::udp(&s, "carol").await.with_password("pw-carol-2026");
    let victims = establish(&alice, &bob, "atk-victims").await;
    // carol's own call (to bob, who answers it too).
    let own = establish(&carol, &bob, "atk-carol").await;
    let carols = Dialog {
        call_id: own.a_call_id.clone(),
        local_tag: own.a_tag.clone(),
        remote_tag: own.a_remote_tag.clone(),
        target: own.a_target.clone(),
    };
    let escaped = |call_id: &str, to_tag: &str, from_tag: &str| {
        format!("{call_id};to-tag={to_tag};from-tag={from_tag}")
            .replace('@', "%40")
            .replace(';', "%3B")
            .replace('=', "%3D")
    };
    // bob's dialog with sipd in the victims' call, then alice's.
    let named = [
        escaped(&victims.b_call_id, &victims.b_remote_tag, &victims.b_tag),
        escaped(&victims.a_call_id, &victims.a_remote_tag, &victims.a_tag),
    ];
    for (i, rep) in named.iter().enumerate() {
        let refer_to = format!("Refer-To: <sip:201@gosip.test?Replaces={rep}>\r\n");
        let r = carol
            .request(&carols.request(&carol, "REFER", 10 + i as u32, &refer_to, ""))
            .await;
        assert_eq!(r.code(), 403, "{}", r.0);
    }
    // Nothing moved: both calls up, nobody re-INVITEd or hung up.
    for p in [&alice, &bob] {
        let heard = collect(p, Duration::from_secs(1)).await;
        assert!(
            heard
                .iter()
                .all(|m| !m.0.starts_with("INVITE ") && !m.0.starts_with("BYE ")),
            "{heard:?}"
        );
    }
    let mut live = live_calls(&s).await;
    live.sort();
    assert_eq!(live, ["atk-carol", "atk-victims"]);
    s.stop().await;
}

// ---------------------------------------------------------------------------
// helpers

/// alice and bob on 127.0.0.1, bob registered (his socket is his phone).
async fn phones(s: &Sipd) -> (Phone, Phone) {
    let alice = Phone::udp(s, "alice").await.with_password("pw-alice-2026");
    let bob = Phone::udp(s, "bob").await.with_password("pw-bob-2026-x");
    assert_eq!(bob.register(&contact(&bob)).await.code(), 200);
    (alice, bob)
}

/// A UDP "phone" bound to `ip` (another loopback address for a stranger).
async fn stranger(s: &Sipd, ip: &str, user: &str) -> Phone {
    let sock = UdpSocket::bind((ip, 0)).await.unwrap();
    Phone::from_socket(s, user, sock)
}

/// Up to `n` REGISTERs with `p`'s (wrong) password, each on a fresh
/// challenge from sipd; the number answered with 403 before sipd went
/// silent (a ban) or `n`.
async fn guess_passwords(p: &Phone, n: u32) -> u32 {
    let mut refused = 0;
    for _ in 0..n {
        let Some(ch) = p
            .request_once(&p.register_msg(&contact(p)), LISTEN * 3)
            .await
        else {
            return refused;
        };
        assert_eq!(ch.code(), 401, "{}", ch.0);
        let auth = p.authorization(&ch, "MD5", "REGISTER", 1);
        let Some(r) = p
            .request_once(
                &p.register_msg(&format!("{}Authorization: {auth}\r\n", contact(p))),
                LISTEN * 3,
            )
            .await
        else {
            return refused;
        };
        assert_eq!(r.code(), 403, "{}", r.0);
        refused += 1;
    }
    refused
}

/// The addresses banned, once `expected` is among them (security events
/// are stored in the order sipd raised them).
async fn bans(s: &Sipd, expected: &str) -> Vec<String> {
    let banned = || async {
        s.security_events()
            .await
            .into_iter()
            .filter(|(k, _, _)| k == "sip_ban")
            .map(|(_, ip, _)| ip)
            .collect::<Vec<_>>()
    };
    s.eventually("the ban is stored", || async {
        banned().await.iter().any(|ip| ip == expected)
    })
    .await;
    banned().await
}

/// The Call-IDs of the calls sipd has up, asked over gRPC (answered after
/// everything sipd read before).
async fn live_calls(s: &Sipd) -> Vec<String> {
    use proto::pb::sipd::ListCallsRequest;
    s.grpc_client()
        .await
        .list_calls(ListCallsRequest {})
        .await
        .unwrap()
        .into_inner()
        .calls
        .into_iter()
        .map(|c| c.call_id)
        .collect()
}
