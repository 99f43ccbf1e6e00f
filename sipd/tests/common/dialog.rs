//! SIP by hand for the system tests: INVITEs with digest, replies, ACKs
//! and in-dialog requests, as a phone would send them, and reading what
//! sipd sends back.

use std::time::Duration;

use super::{Phone, REALM, Resp, digest_response};

pub fn contact(p: &Phone) -> String {
    format!("Contact: <sip:{}@{}>\r\n", p.user, p.local)
}

pub fn sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n"
    )
}

/// An INVITE from `p` to extension `to` on Call-ID `call_id` (From tag
/// `a1`), branch and CSeq from `cseq`.
pub fn invite_msg(p: &Phone, call_id: &str, to: &str, cseq: u32, extra: &str) -> String {
    let body = sdp(4000, "sendrecv");
    format!(
        "INVITE sip:{to}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{call_id}-{cseq};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{u}@{REALM}>;tag=a1\r\nTo: <sip:{to}@{REALM}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
         Contact: <sip:{u}@{l}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        srv = p.server,
        l = p.local,
        u = p.user,
    )
}

/// The ACK for a non-2xx final answer to `invite` (same branch).
pub fn ack_for(invite: &str, r: &Resp) -> String {
    let line = invite
        .split("\r\n")
        .next()
        .unwrap()
        .replace("INVITE ", "ACK ");
    let cseq = header(invite, "cseq").unwrap().replace("INVITE", "ACK");
    let via = header(invite, "via").unwrap();
    let branch = if r.code() >= 300 {
        via
    } else {
        via.replace(";branch=z9hG4bK", ";branch=z9hG4bKack")
    };
    format!(
        "{line}\r\nVia: {branch}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
        header(invite, "from").unwrap(),
        r.header("to").unwrap(),
        header(invite, "call-id").unwrap(),
    )
}

/// alice's INVITE answered with a 407 and sent again with her digest
/// (`nc`); returns the authenticated INVITE as sent.
pub async fn send_authenticated_invite(alice: &Phone, call_id: &str, to: &str, nc: u32) -> String {
    let first = invite_msg(alice, call_id, to, 1, "");
    let ch = alice.request(&first).await;
    assert_eq!(ch.code(), 407, "{}", ch.0);
    alice.send(ack_for(&first, &ch).as_bytes()).await;
    let auth = digest_response(
        &alice.user,
        &alice.password,
        &nonce_of(&ch),
        "INVITE",
        &format!("sip:{to}@{}", alice.server),
        "MD5",
        nc,
    );
    let second = invite_msg(
        alice,
        call_id,
        to,
        2,
        &format!("Proxy-Authorization: {auth}\r\n"),
    );
    alice.send(second.as_bytes()).await;
    second
}

/// The identifiers of an established alice -> sipd -> bob call, as each
/// phone saw them.
pub struct Call {
    pub a_call_id: String,
    pub a_tag: String,
    pub a_remote_tag: String,
    pub a_target: String,
    pub b_call_id: String,
    pub b_tag: String,
    pub b_remote_tag: String,
    pub b_target: String,
}

/// alice calls bob (202), bob answers, alice ACKs.
pub async fn establish(alice: &Phone, bob: &Phone, call_id: &str) -> Call {
    let invite = send_authenticated_invite(alice, call_id, "202", 1).await;
    let to_bob = next_request(bob).await;
    assert!(to_bob.starts_with("INVITE "), "{to_bob}");
    bob.send(
        reply(
            &to_bob,
            200,
            "OK",
            Some("b1"),
            &contact(bob),
            &sdp(4002, "sendrecv"),
        )
        .as_bytes(),
    )
    .await;
    let ok = final_response(alice, 2).await;
    assert_eq!(ok.code(), 200, "{}", ok.0);
    alice.send(ack_for(&invite, &ok).as_bytes()).await;
    // sipd's INVITE may have been resent before bob's 200 got there.
    let ack = loop {
        let m = next_request(bob).await;
        if !m.starts_with("INVITE ") {
            break m;
        }
    };
    assert!(ack.starts_with("ACK "), "{ack}");
    let uri = |v: String| {
        v.split('<')
            .nth(1)
            .and_then(|r| r.split('>').next())
            .map(str::to_string)
            .unwrap_or(v)
    };
    Call {
        a_call_id: call_id.into(),
        a_tag: "a1".into(),
        a_remote_tag: tag(&ok.header("to").unwrap()),
        a_target: uri(ok.header("contact").unwrap()),
        b_call_id: header(&to_bob, "call-id").unwrap(),
        b_tag: "b1".into(),
        b_remote_tag: tag(&header(&to_bob, "from").unwrap()),
        b_target: uri(header(&to_bob, "contact").unwrap()),
    }
}

/// One side of a dialog with sipd.
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub target: String,
}

impl Dialog {
    /// A request in this dialog, sent from `p`'s socket.
    pub fn request(&self, p: &Phone, method: &str, cseq: u32, extra: &str, body: &str) -> String {
        let ct = if body.starts_with("v=0") {
            "Content-Type: application/sdp\r\n"
        } else {
            ""
        };
        format!(
            "{method} {t} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{cid}-{method}-{cseq}-{port};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{REALM}>;tag={lt}\r\nTo: <sip:x@{REALM}>;tag={rt}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             {extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len(),
            t = self.target,
            l = p.local,
            port = p.local.port(),
            cid = self.call_id,
            u = p.user,
            lt = self.local_tag,
            rt = self.remote_tag,
        )
    }
}

/// A response to `req` (its Via, From, To, Call-ID and CSeq), the To
/// tagged with `to_tag` unless it has one.
pub fn reply(
    req: &str,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let head = req.split("\r\n\r\n").next().unwrap();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in head.split("\r\n").skip(1) {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq"
        ) {
            out.push_str(line);
            out.push_str("\r\n");
        } else if name == "to" || name == "t" {
            out.push_str(line);
            if let Some(t) = to_tag.filter(|_| !line.contains("tag=")) {
                out.push_str(&format!(";tag={t}"));
            }
            out.push_str("\r\n");
        }
    }
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    out.push_str(&format!(
        "{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    out
}

pub fn header(msg: &str, name: &str) -> Option<String> {
    Resp(msg.to_string()).header(name)
}

pub fn tag(v: &str) -> String {
    v.split("tag=")
        .nth(1)
        .unwrap_or_default()
        .split([';', '>'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

pub fn nonce_of(ch: &Resp) -> String {
    let h = ch
        .header("proxy-authenticate")
        .or_else(|| ch.header("www-authenticate"))
        .expect("a challenge");
    h.split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

/// The next request `p` reads, responses skipped.
pub async fn next_request(p: &Phone) -> String {
    loop {
        let m = p.recv(Duration::from_secs(8)).await.expect("a request");
        if !m.starts_with("SIP/2.0") {
            return m;
        }
    }
}

/// The final response to the request with CSeq number `cseq` that `p`
/// sent (1xx and others skipped; retransmitted 2xx are fine).
pub async fn final_response(p: &Phone, cseq: u32) -> Resp {
    loop {
        let m = Resp(p.recv(Duration::from_secs(8)).await.expect("a response"));
        let n: Option<u32> = m
            .header("cseq")
            .and_then(|c| c.split(' ').next().and_then(|n| n.parse().ok()));
        if m.0.starts_with("SIP/2.0") && m.code() >= 200 && n == Some(cseq) {
            return m;
        }
    }
}

/// Everything `p` hears within `d`.
pub async fn collect(p: &Phone, d: Duration) -> Vec<Resp> {
    let deadline = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return out;
        }
        match p.recv(left).await {
            Some(m) => out.push(Resp(m)),
            None => return out,
        }
    }
}
