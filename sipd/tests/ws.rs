#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The phone in the browser, as JsSIP drives it, through the front door:
//! a user logs in to webd, makes their browser phone (`POST /api/phone`)
//! and opens `ws://<webd>/ws/sip`; webd relays to sipd. The messages are
//! the ones JsSIP 3.13 sends (Via `WSS <random>.invalid`, a Contact nobody
//! can reach but over this connection).

mod common;

use std::time::Duration;

use common::dialog::{self, header};
use common::{Phone, Sipd};
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A logged-in user's browser phone: its WebSocket through webd and what
/// `POST /api/phone` said of it.
struct Browser {
    ws: Ws,
    user: String,
    extension: String,
    domain: String,
    cseq: u32,
}

impl Browser {
    async fn open(s: &Sipd, email: &str) -> Browser {
        let api = &s.web.api;
        api.new_user(&s.web.admin, email, "user").await;
        let cookie = api.login(email).await;
        let phone = api.ok(&cookie, 200, "POST", "/api/phone", None).await;
        let host = api.base.trim_start_matches("http://").to_string();
        let mut req = format!("ws://{host}/ws/sip").into_client_request().unwrap();
        let h = req.headers_mut();
        h.insert("sec-websocket-protocol", "sip".parse().unwrap());
        h.insert("origin", format!("http://{host}").parse().unwrap());
        h.insert("cookie", cookie.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("webd takes the browser's websocket");
        Browser {
            ws,
            user: phone["username"].as_str().unwrap().to_string(),
            extension: phone["extension"].as_str().unwrap().to_string(),
            domain: phone["domain"].as_str().unwrap().to_string(),
            cseq: 1,
        }
    }

    async fn send(&mut self, msg: &str) {
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
    }

    /// The next SIP message, skipping provisional answers when asked.
    async fn recv(&mut self, skip_1xx: bool) -> String {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), self.ws.next())
                .await
                .expect("sipd answers over the websocket")
                .expect("the websocket stays open")
                .unwrap();
            let Message::Text(t) = m else { continue };
            let t = t.to_string();
            // An answer wanted: provisional answers and sipd's ACKs pass.
            if skip_1xx && (t.starts_with("SIP/2.0 1") || t.starts_with("ACK ")) {
                continue;
            }
            return t;
        }
    }

    fn register_as(&mut self, user: &str) -> String {
        self.cseq += 1;
        format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/WSS k3j2.invalid;branch=z9hG4bKr{c}\r\nMax-Forwards: 69\r\n\
             To: <sip:{user}@{d}>\r\nFrom: <sip:{user}@{d}>;tag=reg{c}\r\nCall-ID: jssip-reg-{user}\r\nCSeq: {c} REGISTER\r\n\
             Contact: <sip:q8w7e6@k3j2.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:0f0e>\";expires=600\r\n\
             Expires: 600\r\nAllow: INVITE,ACK,CANCEL,BYE,UPDATE,MESSAGE,OPTIONS,REFER,INFO,NOTIFY\r\n\
             Supported: path,gruu,outbound\r\nUser-Agent: JsSIP 3.13.0\r\nContent-Length: 0\r\n\r\n",
            d = self.domain,
            c = self.cseq,
        )
    }
}

/// The SDP Chromium's RTCPeerConnection makes (trimmed): Opus first, G.711
/// too, ICE credentials, a certificate fingerprint, `0.0.0.0` in `c=`.
fn chromium_sdp(setup: &str) -> String {
    "v=0\r\no=- 461173 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS s\r\n\
     m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
     a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0\r\n\
     a=ice-ufrag:Xy1z\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
     a=fingerprint:sha-256 01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF\r\n"
        .to_string()
        + &format!("a=setup:{setup}\r\n")
        + "a=mid:0\r\na=sendrecv\r\na=msid:s t\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n\
           a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:1001 cname:abc\r\n"
}

fn assert_webrtc(sdp: &str, setup: &str) {
    for want in [
        "a=ice-lite",
        "UDP/TLS/RTP/SAVPF",
        "a=rtcp-mux",
        "a=ice-ufrag:",
        "a=fingerprint:sha-256 ",
        &format!("a=setup:{setup}"),
        "typ host",
    ] {
        assert!(
            sdp.contains(want),
            "{want} missing from the browser's SDP:\n{sdp}"
        );
    }
}

fn assert_plain(sdp: &str) {
    assert!(sdp.contains("RTP/AVP"), "{sdp}");
    for no in [
        "a=ice-",
        "a=fingerprint",
        "a=setup",
        "a=candidate",
        "SAVPF",
        "a=mid",
    ] {
        assert!(!sdp.contains(no), "{no} reached a desk phone:\n{sdp}");
    }
}

/// A desk phone on UDP, registered.
async fn registered_desk(s: &Sipd, user: &str, password: &str, ext: &str) -> Phone {
    s.add_device(user, password, ext).await;
    let desk = Phone::udp(s, user).await.with_password(password);
    assert_eq!(
        desk.register(&format!("Contact: <{}>\r\n", desk.contact()))
            .await
            .code(),
        200
    );
    desk
}

/// The browser phone of the user `email`, registered on its WebSocket.
async fn registered_browser(s: &Sipd, email: &str) -> Browser {
    let mut b = Browser::open(s, email).await;
    let user = b.user.clone();
    let msg = b.register_as(&user);
    b.send(&msg).await;
    assert!(b.recv(true).await.starts_with("SIP/2.0 200"));
    b
}

/// The browser calls `ext` with `offer`, the desk phone there answers at
/// once: the INVITE the desk phone got and the 200 the browser got, each
/// checked for its own kind of SDP.
async fn browser_calls(b: &mut Browser, desk: &Phone, ext: &str, offer: &str) -> (String, String) {
    let inv = format!(
        "INVITE sip:{ext}@{d} SIP/2.0\r\nVia: SIP/2.0/WSS k3j2.invalid;branch=z9hG4bKbr{ext}\r\nMax-Forwards: 69\r\n\
         To: <sip:{ext}@{d}>\r\nFrom: <sip:{u}@{d}>;tag=bt{ext}\r\nCall-ID: browser-to-{ext}\r\nCSeq: 7 INVITE\r\n\
         Contact: <sip:q8w7e6@k3j2.invalid;transport=ws;ob>\r\nContent-Type: application/sdp\r\n\
         User-Agent: JsSIP 3.13.0\r\nContent-Length: {len}\r\n\r\n{offer}",
        d = b.domain,
        u = b.user,
        len = offer.len(),
    );
    b.send(&inv).await;
    let ring = dialog::next_request(desk).await;
    assert!(ring.starts_with("INVITE "), "{ring}");
    assert_plain(body(&ring));
    let reply = dialog::reply(
        &ring,
        200,
        "OK",
        Some("dk1"),
        &dialog::contact(desk),
        &dialog::sdp(4002, "sendrecv"),
    );
    desk.send(reply.as_bytes()).await;
    let ok = b.recv(true).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_webrtc(body(&ok), "passive");
    (ring, ok)
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn a_browser_registers_as_itself_without_a_password_and_its_binding_ends_with_the_socket() {
    let s = Sipd::start(&[]).await;
    s.add_device("desk1", "deskpass1234", "201").await;
    let mut b = Browser::open(&s, "ann@example.com").await;

    let user = b.user.clone();
    let msg = b.register_as(&user);
    b.send(&msg).await;
    let ok = b.recv(true).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(ok.contains("k3j2.invalid;transport=ws"), "{ok}");
    s.eventually("the browser's binding is stored", || async {
        s.registrations()
            .await
            .iter()
            .any(|(c, t, on)| c.contains("k3j2.invalid") && t == "ws" && *on)
    })
    .await;

    // The connection speaks for Ann's browser only: registering as the
    // desk phone on it is refused, with no challenge to answer.
    let msg = b.register_as("desk1");
    b.send(&msg).await;
    let no = b.recv(true).await;
    assert!(no.starts_with("SIP/2.0 403"), "{no}");
    assert!(
        !s.registrations()
            .await
            .iter()
            .any(|(c, _, _)| c.contains("q8w7e6") && c.contains("desk1")),
    );

    b.ws.close(None).await.unwrap();
    s.eventually("the binding goes with the socket", || async {
        !s.registrations()
            .await
            .iter()
            .any(|(c, _, _)| c.contains("k3j2.invalid"))
    })
    .await;
}

#[tokio::test]
async fn a_desk_phone_and_a_browser_call_each_other_and_each_gets_its_own_sdp() {
    let s = Sipd::start_with_mediad(&[]).await;
    let desk = registered_desk(&s, "desk1", "deskpass1234", "201").await;
    let mut b = registered_browser(&s, "bob@example.com").await;

    // The desk phone calls the browser's extension.
    let ext = b.extension.clone();
    let call_id = "desk-to-browser";
    dialog::send_authenticated_invite(&desk, call_id, &ext, 1).await;
    let invite = b.recv(false).await;
    assert!(invite.starts_with("INVITE "), "{invite}");
    assert!(
        header(&invite, "via").unwrap().starts_with("SIP/2.0/WS "),
        "{invite}"
    );
    assert_webrtc(body(&invite), "actpass");
    assert!(
        body(&invite).contains(" UDP/TLS/RTP/SAVPF 0 111\r\n"),
        "Opus is offered after the desk phone's G.711:\n{}",
        body(&invite)
    );
    let answer = chromium_sdp("active");
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to};tag=br1\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:q8w7e6@k3j2.invalid;transport=ws>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{answer}",
        via = header(&invite, "via").unwrap(),
        from = header(&invite, "from").unwrap(),
        to = header(&invite, "to").unwrap(),
        cid = header(&invite, "call-id").unwrap(),
        len = answer.len(),
    );
    b.send(&ok).await;
    let answered = dialog::final_response(&desk, 2).await;
    assert_eq!(answered.code(), 200, "{}", answered.0);
    assert_plain(body(&answered.0));

    // The browser hangs up; the desk phone hears of it.
    let contact = header(&invite, "contact").unwrap();
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let bye = format!(
        "BYE {target} SIP/2.0\r\nVia: SIP/2.0/WSS k3j2.invalid;branch=z9hG4bKbrbye1\r\nMax-Forwards: 69\r\n\
         From: {to};tag=br1\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        to = header(&invite, "to").unwrap(),
        from = header(&invite, "from").unwrap(),
        cid = header(&invite, "call-id").unwrap(),
    );
    b.send(&bye).await;
    let bye_ok = b.recv(true).await;
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    let desk_bye = dialog::next_request(&desk).await;
    assert!(desk_bye.starts_with("BYE "), "{desk_bye}");
    let ok = dialog::reply(&desk_bye, 200, "OK", None, "", "");
    desk.send(ok.as_bytes()).await;

    // The browser calls another desk phone: no digest, an answer in its shape.
    let desk = registered_desk(&s, "desk2", "deskpass5678", "202").await;
    let (ring, _) = browser_calls(&mut b, &desk, "202", &chromium_sdp("actpass")).await;

    // The browser's tab goes away mid-call: the desk phone is hung up on
    // at once, not left in silence until the RTP timeout.
    b.ws.close(None).await.unwrap();
    let mut bye = dialog::next_request(&desk).await;
    while bye.starts_with("ACK ") {
        bye = dialog::next_request(&desk).await;
    }
    assert!(bye.starts_with("BYE "), "{bye}");
    assert_eq!(header(&bye, "call-id"), header(&ring, "call-id"));
}

#[tokio::test]
async fn a_browser_speaking_only_opus_reaches_a_desk_phone_in_g711_and_hears_back_opus() {
    let s = Sipd::start_with_mediad(&[]).await;
    let desk = registered_desk(&s, "desk3", "deskpass9012", "203").await;
    let mut b = registered_browser(&s, "cy@example.com").await;

    // What Chromium offers when the user picked Opus: no G.711 at all.
    let offer = chromium_sdp("actpass")
        .replace("111 0 8 126", "111 110")
        .replace(
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\n",
            "a=rtpmap:110 telephone-event/48000\r\n",
        );
    let (ring, ok) = browser_calls(&mut b, &desk, "203", &offer).await;
    assert!(
        body(&ring).contains("RTP/AVP 0 8 101\r\n") && !body(&ring).contains("opus"),
        "the desk phone is offered G.711 for the browser's Opus:\n{}",
        body(&ring)
    );
    let sdp = body(&ok);
    let m = sdp.lines().find(|l| l.starts_with("m=audio")).unwrap();
    assert!(m.ends_with(" 111") || m.ends_with(" 111 110"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:111 opus/48000/2"), "{sdp}");
    assert!(!sdp.contains("PCMU") && !sdp.contains("PCMA"), "{sdp}");
}
