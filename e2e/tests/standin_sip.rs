//! The stand-in's `<Dial><Sip>` leg against a scripted SIP UAS: digest
//! challenge answered with the `<Sip>` credentials, Twilio's X-headers and
//! the URI's X-headers on the INVITE, RTP both ways once answered, BYE; a
//! busy UAS gives 486.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use e2e::standin::sip::{SipDial, dial, header};
use md5::{Digest, Md5};
use tokio::net::UdpSocket;

fn md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn param(h: &str, k: &str) -> String {
    let i = h.find(&format!("{k}=")).expect(k) + k.len() + 1;
    let v = &h[i..];
    if let Some(q) = v.strip_prefix('"') {
        q[..q.find('"').unwrap()].to_owned()
    } else {
        v[..v.find([',', ' ']).unwrap_or(v.len())].to_owned()
    }
}

fn reply(req: &str, code: &str, extra: &str, body: &str) -> String {
    let keep: String = req
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let k = l.split(':').next().unwrap_or("").to_ascii_lowercase();
            matches!(k.as_str(), "via" | "from" | "call-id" | "cseq")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    let to = header(req, "to", "t").unwrap();
    format!(
        "SIP/2.0 {code}\r\n{keep}To: {to};tag=uas1\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A UAS that challenges, then answers (or is busy).
async fn uas(busy: bool) -> (u16, Arc<AtomicU32>, tokio::task::JoinHandle<Vec<String>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let rtp_port = rtp.local_addr().unwrap().port();
    let got = Arc::new(AtomicU32::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = rtp.recv_from(&mut buf).await {
            g.fetch_add(1, Ordering::SeqCst);
            let _ = rtp.send_to(&buf[..n], from).await; // echo
        }
    });
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65535];
        loop {
            let Ok(Ok((n, from))) =
                tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf)).await
            else {
                return seen;
            };
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            let method = m.split(' ').next().unwrap_or("").to_owned();
            seen.push(m.clone());
            let out = match method.as_str() {
                "INVITE" => match header(&m, "authorization", "") {
                    None => reply(
                        &m,
                        "401 Unauthorized",
                        "WWW-Authenticate: Digest realm=\"gosip\", nonce=\"n-sha\", algorithm=SHA-256, qop=\"auth\"\r\n\
                         WWW-Authenticate: Digest realm=\"gosip\", nonce=\"n-1\", algorithm=MD5, qop=\"auth\"\r\n",
                        "",
                    ),
                    Some(a) => {
                        let ha1 = md5("twilio-trunk:gosip:trunk-secret");
                        let ha2 = md5(&format!("INVITE:{}", param(&a, "uri")));
                        let want = md5(&format!(
                            "{ha1}:{}:{}:{}:auth:{ha2}",
                            param(&a, "nonce"),
                            param(&a, "nc"),
                            param(&a, "cnonce")
                        ));
                        if param(&a, "response") != want {
                            reply(&m, "403 Forbidden", "", "")
                        } else if busy {
                            reply(&m, "486 Busy Here", "", "")
                        } else {
                            let _ = sock
                                .send_to(reply(&m, "180 Ringing", "", "").as_bytes(), from)
                                .await;
                            let sdp = format!(
                                "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                            );
                            reply(
                                &m,
                                "200 OK",
                                &format!(
                                    "Contact: <sip:sipd@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
                                ),
                                &sdp,
                            )
                        }
                    }
                },
                "BYE" => reply(&m, "200 OK", "", ""),
                _ => continue,
            };
            let _ = sock.send_to(out.as_bytes(), from).await;
            if method == "BYE" || out.starts_with("SIP/2.0 486") {
                // Wait for the ACK of a 486, then stop.
                let _ = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
                    .await
                    .map(|r| {
                        r.map(|(n, _)| seen.push(String::from_utf8_lossy(&buf[..n]).to_string()))
                    });
                return seen;
            }
        }
    });
    (port, got, task)
}

fn call(port: u16, talk: u64) -> SipDial {
    SipDial {
        uri: format!(
            "sip:+15550001111@127.0.0.1:{port};transport=udp?X-GoSIP-CallSid=CA1&X-GoSIP-Devices=3,4"
        ),
        username: Some("twilio-trunk".into()),
        password: Some("trunk-secret".into()),
        from: "+15557654321".into(),
        call_sid: "CA0123456789abcdef0123456789abcdef".into(),
        account_sid: e2e::standin::ACCOUNT_SID.into(),
        timeout: Duration::from_secs(5),
        talk: Duration::from_millis(talk),
    }
}

#[tokio::test]
async fn a_dial_sip_leg_answers_the_digest_challenge_sends_rtp_and_hangs_up() {
    let (port, rtp_in, task) = uas(false).await;
    let r = dial(&call(port, 600)).await.unwrap();
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.rtp_sent >= 20, "{r:?}");
    assert!(r.rtp_received >= 10, "echoed RTP comes back: {r:?}");
    assert!(rtp_in.load(Ordering::SeqCst) >= 20);
    let seen = task.await.unwrap();
    let methods: Vec<&str> = seen.iter().map(|m| m.split(' ').next().unwrap()).collect();
    assert_eq!(methods, ["INVITE", "ACK", "INVITE", "ACK", "BYE"]);
    let invite = &seen[2];
    assert!(invite.starts_with("INVITE sip:+15550001111@127.0.0.1:"));
    assert_eq!(
        header(invite, "x-twilio-callsid", "").as_deref(),
        Some("CA0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        header(invite, "x-gosip-devices", "").as_deref(),
        Some("3,4")
    );
    assert!(header(invite, "x-twilio-accountsid", "").is_some());
    assert!(
        header(invite, "from", "f")
            .unwrap()
            .contains("sip:+15557654321@")
    );
    // The ACK of the 401 reuses the first INVITE's branch (RFC 3261 17.1.1.3).
    let branch = |m: &str| {
        header(m, "via", "v")
            .unwrap()
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(branch(&seen[0]), branch(&seen[1]));
    assert_ne!(branch(&seen[0]), branch(&seen[2]));
}

#[tokio::test]
async fn a_busy_sip_leg_reports_486() {
    let (port, _, task) = uas(true).await;
    let r = dial(&call(port, 100)).await.unwrap();
    assert_eq!(r.code, 486);
    let seen = task.await.unwrap();
    assert_eq!(seen.last().unwrap().split(' ').next(), Some("ACK"));
}

#[tokio::test]
async fn an_unanswered_sip_leg_is_cancelled_at_the_dial_timeout() {
    // Nobody listens on this socket's peer: no answer at all.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut d = call(port, 0);
    d.timeout = Duration::from_millis(1200);
    let r = dial(&d).await.unwrap();
    assert_eq!(r.code, 408);
    let mut buf = [0u8; 4096];
    let mut methods = Vec::new();
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(100), silent.recv(&mut buf)).await
    {
        methods.push(
            String::from_utf8_lossy(&buf[..n])
                .split(' ')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(methods.first().map(String::as_str), Some("INVITE"));
    assert_eq!(methods.last().map(String::as_str), Some("CANCEL"));
    assert!(
        methods.iter().filter(|m| *m == "INVITE").count() >= 2,
        "retransmitted: {methods:?}"
    );
}

#[tokio::test]
async fn the_termination_trunk_challenges_checks_numbers_and_answers() {
    use e2e::standin::Standin;
    use e2e::standin::trunk::{Trunk, TrunkMode};
    let s = Standin::start().await.unwrap();
    s.add_number("+15550001111", None);
    let trunk = Trunk::start(s.clone(), "gosip-trunk", "trunk-pass")
        .await
        .unwrap();
    let out = |to: &str, from: &str, pass: &str| SipDial {
        uri: format!("sip:{to}@{}", trunk.addr),
        username: Some("gosip-trunk".into()),
        password: Some(pass.into()),
        from: from.into(),
        call_sid: String::new(),
        account_sid: String::new(),
        timeout: Duration::from_secs(5),
        talk: Duration::from_millis(400),
    };
    let r = dial(&out("+15557654321", "+15550001111", "trunk-pass"))
        .await
        .unwrap();
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.rtp_received >= 5,
        "the trunk sends its tone to the SDP address: {r:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = &trunk.calls()[0];
    assert_eq!(
        (c.to.as_str(), c.from.as_str(), c.code, c.ended),
        ("+15557654321", "+15550001111", 200, true)
    );
    assert!(c.rtp_packets >= 5);
    // Wrong password, caller ID not on the account, national R-URI, busy mode.
    assert_eq!(
        dial(&out("+15557654321", "+15550001111", "nope"))
            .await
            .unwrap()
            .code,
        403
    );
    assert_eq!(
        dial(&out("+15557654321", "+15559999999", "trunk-pass"))
            .await
            .unwrap()
            .code,
        403
    );
    assert_eq!(
        dial(&out("5557654321", "+15550001111", "trunk-pass"))
            .await
            .unwrap()
            .code,
        404
    );
    trunk.set_mode(TrunkMode::Busy);
    assert_eq!(
        dial(&out("+15557654321", "+15550001111", "trunk-pass"))
            .await
            .unwrap()
            .code,
        486
    );
}
