#![allow(clippy::unwrap_used, clippy::expect_used)]
//! sipd bound to the wildcard address, as `make run` starts it, with no
//! address setting: each phone must be handed the address it reached sipd
//! at (Via, Contact, SDP), never the host name and never another phone's.
//! Loopback has a whole /8, so two phones reaching sipd at 127.0.0.2 and
//! 127.0.0.3 stand in for two networks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Phone, REALM, Resp, Sipd, digest_response};
use tokio::net::UdpSocket;

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
}

fn invite(p: &Phone, to: &str, branch: &str, cseq: u32, auth: Option<&str>) -> String {
    let body = sdp("127.0.0.1", 40_000);
    let auth = auth.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
    format!(
        "INVITE sip:{to}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@{REALM}>;tag=calltag\r\nTo: <sip:{to}@{REALM}>\r\n\
         Call-ID: addr-call@test\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{user}@{me}>\r\n{auth}\
         Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{body}",
        srv = p.server,
        me = p.local,
        user = p.user,
        len = body.len(),
    )
}

/// A phone whose packets go to sipd's port at `ip`.
async fn phone_at(s: &Sipd, user: &str, ip: &str) -> Phone {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut p = Phone::from_socket(s, user, sock).with_password("pw-long-enough");
    p.server = SocketAddr::new(ip.parse().unwrap(), s.sip.port());
    p
}

/// The next request or response whose first line starts with `start`.
async fn wait_for(p: &Phone, start: &str) -> String {
    for _ in 0..40 {
        if let Some(m) = p.recv(Duration::from_millis(250)).await
            && m.starts_with(start)
        {
            return m;
        }
    }
    panic!("{} never got {start}", p.user);
}

fn line<'a>(m: &'a str, prefix: &str) -> &'a str {
    m.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&prefix.to_ascii_lowercase())
        })
        .unwrap_or_else(|| panic!("no {prefix} in\n{m}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_phone_is_given_the_address_it_reached_sipd_at() {
    let s = Sipd::start_with_mediad_on(&[], "0.0.0.0").await;
    s.add_devices(&[
        ("alice", "pw-long-enough", "201"),
        ("bob", "pw-long-enough", "202"),
    ])
    .await;
    let port = s.sip.port();
    let alice = phone_at(&s, "alice", "127.0.0.2").await;
    let bob = phone_at(&s, "bob", "127.0.0.3").await;
    let contact = format!("Contact: <{}>\r\n", bob.contact());
    assert_eq!(bob.register(&contact).await.code(), 200);

    // Alice calls bob; sipd challenges, alice answers the challenge.
    let r = alice
        .request(&invite(&alice, "202", "z9hG4bKa1", 1, None))
        .await;
    assert_eq!(r.code(), 407, "{}", r.0);
    let ack = format!(
        "ACK sip:202@127.0.0.2:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKa1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{REALM}>;tag=calltag\r\nTo: {to}\r\n\
         Call-ID: addr-call@test\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        me = alice.local,
        to = Resp(r.0.clone()).header("to").unwrap(),
    );
    alice.send(ack.as_bytes()).await;
    let ch = r.header("proxy-authenticate").unwrap();
    let nonce = ch
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let uri = format!("sip:202@127.0.0.2:{port}");
    let auth = digest_response("alice", "pw-long-enough", nonce, "INVITE", &uri, "MD5", 1);
    alice
        .send(invite(&alice, "202", "z9hG4bKa2", 2, Some(&auth)).as_bytes())
        .await;

    // Bob registered at 127.0.0.3: that is all his leg may name.
    let inv = tokio::select! {
        m = wait_for(&bob, "INVITE ") => m,
        m = async {
            loop {
                match alice.recv(Duration::from_secs(5)).await {
                    Some(m) if !m.starts_with("SIP/2.0 100") => break m,
                    Some(_) => {}
                    None => break "nothing".to_string(),
                }
            }
        } => panic!("alice got instead:\n{m}"),
    };
    assert!(
        line(&inv, "Via:").contains(&format!("127.0.0.3:{port}")),
        "{inv}"
    );
    assert!(
        line(&inv, "Contact:").contains(&format!("@127.0.0.3:{port}")),
        "{inv}"
    );
    assert_eq!(line(&inv, "c="), "c=IN IP4 127.0.0.3", "{inv}");
    assert!(line(&inv, "o=").ends_with("IN IP4 127.0.0.3"), "{inv}");

    // Bob answers; alice, who called 127.0.0.2, is answered from there.
    let hdr = |name: &str| line(&inv, name).to_string();
    let body = sdp("127.0.0.1", 40_002);
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=bobtag\r\n{}\r\n{}\r\nContact: <sip:bob@{}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        hdr("Via:"),
        hdr("From:"),
        hdr("To:"),
        hdr("Call-ID:"),
        hdr("CSeq:"),
        bob.local,
        body.len(),
    );
    bob.send(ok.as_bytes()).await;
    let answer = wait_for(&alice, "SIP/2.0 200").await;
    assert!(
        line(&answer, "Contact:").contains(&format!("@127.0.0.2:{port}")),
        "{answer}"
    );
    assert_eq!(line(&answer, "c="), "c=IN IP4 127.0.0.2", "{answer}");
    // The host name never appears in anything either phone got.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if !host.is_empty() {
        for m in [&inv, &answer] {
            assert!(
                !m.contains(&format!("@{host}")) && !m.contains(&format!("IP4 {host}")),
                "{m}"
            );
        }
    }

    // The status knows where the phones' address came from.
    s.eventually("sip_addresses lists the phone's address", || async {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT scope, source FROM sip_addresses")
            .fetch_all(&s.pool)
            .await
            .unwrap_or_default();
        rows.contains(&("phones:127.0.0.3".into(), "phone_packet".into()))
    })
    .await;
    s.stop().await;
}

/// A STUN server that answers every Binding request with `mapped` (as an
/// XOR-MAPPED-ADDRESS) until `stop` is set; returns its address.
async fn stun_server(
    mapped: std::net::SocketAddrV4,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if stop.load(std::sync::atomic::Ordering::SeqCst) || n < 20 || buf[..2] != [0, 1] {
                continue;
            }
            let cookie = [0x21, 0x12, 0xA4, 0x42];
            let mut m = vec![0x01, 0x01, 0, 12];
            m.extend_from_slice(&cookie);
            m.extend_from_slice(&buf[8..20]);
            m.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 1]);
            m.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
            for (o, c) in mapped.ip().octets().iter().zip(cookie) {
                m.push(o ^ c);
            }
            let _ = sock.send_to(&m, from).await;
        }
    });
    addr
}

async fn public_row(s: &Sipd) -> Option<(String, String)> {
    sqlx::query_as("SELECT address, source FROM sip_addresses WHERE scope = 'public'")
        .fetch_optional(&s.pool)
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stun_server_tells_the_public_address_and_its_silence_keeps_the_last_one() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stun = stun_server("203.0.113.9:40123".parse().unwrap(), stop.clone()).await;
    let s = Sipd::start_with_mediad_on(&[("sip.stun_server", &stun.to_string())], "0.0.0.0").await;
    s.eventually("the STUN answer becomes the public address", || async {
        public_row(&s).await == Some(("203.0.113.9".into(), "stun".into()))
    })
    .await;
    // The server goes silent; a settings change makes sipd ask again, and
    // the address it had stays.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    proto::settings::store(
        &s.pool,
        "sip.stun_server",
        &format!("127.0.0.1:{}", stun.port()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        public_row(&s).await,
        Some(("203.0.113.9".into(), "stun".into()))
    );
    s.stop().await;
}
