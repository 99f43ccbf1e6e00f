//! The stand-in as the Elastic SIP Trunk's termination side (CONTRACT.md
//! §5.1): sipd sends outbound calls here. Like Twilio it challenges with a
//! 407 digest (the trunk's credential list), wants an E.164 Request-URI
//! (else 404) and a From that is a number of the account (else 403), then
//! rings and answers with PCMU SDP, then sends a tone to the address in the
//! offer's SDP (never to where RTP comes from: Twilio trusts SDP, see
//! [`super::media`]) and keeps what it hears, until BYE. [`TrunkMode`]
//! scripts busy / forbidden / not-found answers on demand.
//!
//! [`Trunk::start_tls`] is the same trunk with Twilio's "secure trunking":
//! SIP over TLS with a certificate from [`super::tls::Identity`], and SRTP
//! (SDES) media; an offer without a key is refused with 488, as Twilio
//! refuses plain RTP on a secure trunk.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use serde::Serialize;
use tokio::net::UdpSocket;

use super::Standin;
use super::sip::{header, params};

/// How the trunk answers the next INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TrunkMode {
    #[default]
    Answer,
    Busy,
    Forbidden,
    NotFound,
}

/// One call the trunk saw.
#[derive(Debug, Clone, Serialize)]
pub struct TrunkCall {
    pub call_id: String,
    pub to: String,
    pub from: String,
    /// Final answer sent (200, 403, 404, 486, 487).
    pub code: u16,
    pub rtp_packets: u32,
    pub ended: bool,
    /// PCMU payloads received (what the far party heard).
    #[serde(skip)]
    pub heard: Vec<u8>,
    /// Where its RTP went: the offer's SDP address (`None`: unusable).
    pub rtp_to: Option<SocketAddr>,
    /// The call came over TLS and its media was SRTP: `rtp_packets` and
    /// `heard` count only packets that authenticated.
    pub srtp: bool,
}

#[derive(Default)]
struct State {
    mode: TrunkMode,
    calls: Vec<TrunkCall>,
    nonces: HashSet<String>,
    /// Ends each answered call's RTP, by Call-ID.
    media: std::collections::HashMap<String, tokio_util::sync::CancellationToken>,
}

/// A running termination trunk, on UDP or (secure trunking) TLS.
#[derive(Clone)]
pub struct Trunk {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Trunk {
    /// Listens on a free loopback port; digest credentials `user`/`pass`,
    /// realm `sip.twilio.com`; From must be one of `standin`'s numbers.
    pub async fn start(standin: Standin, user: &str, pass: &str) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, standin, user, pass).await
    }

    /// [`Trunk::start`] on `bind` (a specific address: it is the one put
    /// in Contact and SDP).
    pub async fn start_on(
        bind: SocketAddr,
        standin: Standin,
        user: &str,
        pass: &str,
    ) -> anyhow::Result<Self> {
        let sock = Arc::new(UdpSocket::bind(bind).await?);
        let addr = sock.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let me = Self {
            addr,
            state: state.clone(),
        };
        let t = Termination {
            standin,
            state,
            local: addr,
            secure: false,
            user: user.to_owned(),
            pass: pass.to_owned(),
        };
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                // Answers go back with the source on the top Via, as
                // Twilio's edge does (RFC 3261 18.2.1, RFC 3581).
                let m = stamp_via(&m, from);
                for out in t.handle(&m).await {
                    let _ = sock.send_to(out.as_bytes(), from).await;
                }
            }
        });
        Ok(me)
    }

    /// The trunk with secure trunking, listening for SIP over TLS on a free
    /// loopback port with `identity`'s certificate.
    pub async fn start_tls(
        standin: Standin,
        user: &str,
        pass: &str,
        identity: &super::tls::Identity,
    ) -> anyhow::Result<Self> {
        let acceptor = identity.acceptor()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let me = Self {
            addr,
            state: state.clone(),
        };
        let t = Arc::new(Termination {
            standin,
            state,
            local: addr,
            secure: true,
            user: user.to_owned(),
            pass: pass.to_owned(),
        });
        tokio::spawn(async move {
            while let Ok((tcp, from)) = listener.accept().await {
                let (t, acceptor) = (t.clone(), acceptor.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    t.serve_stream(stream, from).await;
                });
            }
        });
        Ok(me)
    }

    pub fn set_mode(&self, m: TrunkMode) {
        self.lock().mode = m;
    }

    /// Calls seen so far.
    pub fn calls(&self) -> Vec<TrunkCall> {
        self.lock().calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }
}

/// The trunk's side of the signalling: what it needs to answer any request.
struct Termination {
    standin: Standin,
    state: Arc<Mutex<State>>,
    /// Where its signalling listens (its RTP binds the same address).
    local: SocketAddr,
    /// Secure trunking: TLS signalling, SRTP media.
    secure: bool,
    /// The trunk's own digest credentials.
    user: String,
    pass: String,
}

/// Locks the trunk's state, carrying on after a panicked holder (the state
/// is plain bookkeeping that stays consistent).
fn lock_state(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Termination {
    /// Answers the requests of one TLS connection (framed by
    /// Content-Length, RFC 3261 section 18.3) on it, until it closes.
    async fn serve_stream<S>(&self, stream: S, from: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16384];
        loop {
            while let Some(m) = next_message(&mut buf) {
                let m = stamp_via(&m, from);
                for out in self.handle(&m).await {
                    if wr.write_all(out.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The trunk's state, locked.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// The responses to one request, in the order to send them.
    async fn handle(&self, m: &str) -> Vec<String> {
        let mut line = m.lines().next().unwrap_or("").split(' ');
        let (method, ruri) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
        let call_id = header(m, "call-id", "i").unwrap_or_default();
        match method {
            "INVITE" => self.invite(m, ruri, call_id).await,
            "BYE" => {
                let mut g = self.lock();
                if let Some(stop) = g.media.remove(&call_id) {
                    stop.cancel();
                }
                if let Some(c) = g.calls.iter_mut().find(|c| c.call_id == call_id) {
                    c.ended = true;
                }
                drop(g);
                vec![resp(m, "200 OK", "", "")]
            }
            "CANCEL" => {
                if let Some(stop) = self.lock().media.remove(&call_id) {
                    stop.cancel();
                }
                if let Some(c) = self.lock().calls.iter_mut().find(|c| c.call_id == call_id) {
                    c.code = 487;
                    c.ended = true;
                }
                vec![resp(m, "200 OK", "", "")]
            }
            "OPTIONS" => vec![resp(m, "200 OK", "", "")],
            _ => vec![],
        }
    }

    /// An INVITE: digest challenge, then the answer the Request-URI, From
    /// and [`TrunkMode`] call for.
    async fn invite(&self, m: &str, ruri: &str, call_id: String) -> Vec<String> {
        let to_user = ruri
            .strip_prefix("sip:")
            .and_then(|r| r.split('@').next())
            .unwrap_or("")
            .to_owned();
        let from_user = header(m, "from", "f")
            .and_then(|f| {
                let i = f.find("sip:")? + 4;
                Some(f[i..].split(['@', '>', ';']).next()?.to_owned())
            })
            .unwrap_or_default();
        let Some(auth) = header(m, "proxy-authorization", "") else {
            return vec![self.challenge(m)];
        };
        if !self.authorized(&auth) {
            return vec![resp(m, "403 Forbidden", "", "")];
        }
        let code = self.verdict(&to_user, &from_user);
        let call = TrunkCall {
            call_id,
            to: to_user,
            from: from_user,
            code,
            rtp_packets: 0,
            ended: false,
            heard: Vec::new(),
            rtp_to: None,
            srtp: self.secure,
        };
        if code != 200 {
            self.lock().calls.push(call);
            let reason = match code {
                404 => "404 Not Found",
                486 => "486 Busy Here",
                _ => "403 Forbidden",
            };
            return vec![resp(m, reason, "", "")];
        }
        self.answer(m, call).await
    }

    /// A 407 with a fresh nonce, remembered so the retry can be checked.
    fn challenge(&self, m: &str) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.lock().nonces.insert(nonce.clone());
        resp(
            m,
            "407 Proxy Authentication Required",
            &format!(
                "Proxy-Authenticate: Digest realm=\"sip.twilio.com\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"\r\n"
            ),
            "",
        )
    }

    /// Whether the Proxy-Authorization answers one of our nonces with a
    /// known credential and the right digest.
    fn authorized(&self, auth: &str) -> bool {
        let p = params(auth);
        let get = |k: &str| p.get(k).cloned().unwrap_or_default();
        let known_nonce = self.lock().nonces.contains(&get("nonce"));
        let md5 = |x: String| hex::encode(Md5::digest(x.as_bytes()));
        // The trunk's own credentials, and those of every credential
        // list bound to a trunk through the REST API.
        let mut accepted = vec![(self.user.clone(), self.pass.clone())];
        accepted.extend(self.standin.world().trunking.trunk_credentials());
        let Some((user, pass)) = accepted.into_iter().find(|(u, _)| *u == get("username")) else {
            return false;
        };
        let ha1 = md5(format!("{user}:sip.twilio.com:{pass}"));
        let ha2 = md5(format!("INVITE:{}", get("uri")));
        let want = if p.contains_key("qop") {
            md5(format!(
                "{ha1}:{}:{}:{}:auth:{ha2}",
                get("nonce"),
                get("nc"),
                get("cnonce")
            ))
        } else {
            md5(format!("{ha1}:{}:{ha2}", get("nonce")))
        };
        known_nonce && get("username") == user && get("response") == want
    }

    /// The final answer for an authenticated INVITE: 404 unless the
    /// Request-URI is E.164, 403 unless From is ours, else the mode's.
    fn verdict(&self, to_user: &str, from_user: &str) -> u16 {
        let mode = self.lock().mode;
        let e164 = to_user.starts_with('+')
            && to_user.len() > 8
            && to_user[1..].bytes().all(|b| b.is_ascii_digit());
        let own = self
            .standin
            .world()
            .numbers
            .iter()
            .any(|n| n.phone_number == from_user);
        match mode {
            _ if !e164 => 404,
            _ if !own => 403,
            TrunkMode::Busy => 486,
            TrunkMode::Forbidden => 403,
            TrunkMode::NotFound => 404,
            TrunkMode::Answer => 200,
        }
    }

    /// Answers: an RTP socket on the signalling address that sends the
    /// tone to the offer's SDP address until BYE; 100, 180 and 200 with SDP.
    /// A secure trunk answers the offer's first usable `a=crypto` with a
    /// key of its own (RFC 4568) and speaks SRTP; without one, 488.
    async fn answer(&self, m: &str, mut call: TrunkCall) -> Vec<String> {
        let me = self.local.ip();
        let keys = if self.secure {
            match srtp_answer(super::sip::body(m)) {
                Some(k) => Some(k),
                None => {
                    call.code = 488;
                    self.lock().calls.push(call);
                    return vec![resp(m, "488 Not Acceptable Here", "", "")];
                }
            }
        } else {
            None
        };
        let Ok(rtp) = UdpSocket::bind((me, 0)).await else {
            return vec![resp(m, "503 Service Unavailable", "", "")];
        };
        let rtp_port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        let offer = super::sip::sdp_addr(super::sip::body(m));
        let (profile, crypto_line, srtp) = match keys {
            Some((line, contexts)) => ("RTP/SAVP", line, Some(contexts)),
            None => ("RTP/AVP", String::new(), None),
        };
        call.rtp_to = offer;
        let stop = tokio_util::sync::CancellationToken::new();
        self.lock().media.insert(call.call_id.clone(), stop.clone());
        let st = self.state.clone();
        let cid = call.call_id.clone();
        tokio::spawn(async move {
            // A call nobody hangs up ends with the test anyway.
            let max = std::time::Duration::from_secs(120);
            let Ok(t) = super::media::talk(&rtp, offer, max, Some(&stop), srtp).await else {
                return;
            };
            let mut g = lock_state(&st);
            if let Some(c) = g.calls.iter_mut().find(|c| c.call_id == cid) {
                c.rtp_packets = t.received;
                c.heard = t.heard;
            }
        });
        self.lock().calls.push(call);
        let (local, transport) = (self.local, if self.secure { ";transport=tls" } else { "" });
        let sdp = format!(
            "v=0\r\no=Twilio 1 1 IN IP4 {me}\r\ns=Twilio\r\nc=IN IP4 {me}\r\nt=0 0\r\nm=audio {rtp_port} {profile} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n{crypto_line}a=sendrecv\r\n"
        );
        vec![
            resp(m, "100 Trying", "", ""),
            resp(m, "180 Ringing", "", ""),
            resp(
                m,
                "200 OK",
                &format!(
                    "Contact: <sip:twilio@{local}{transport}>\r\nContent-Type: application/sdp\r\n"
                ),
                &sdp,
            ),
        ]
    }
}

/// The first whole message in `buf` (headers and the body its
/// Content-Length names), taken out; CRLF keep-alives are dropped.
fn next_message(buf: &mut Vec<u8>) -> Option<String> {
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len: usize = header(&head, "content-length", "l")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let m = String::from_utf8_lossy(&buf[..end + len]).to_string();
    buf.drain(..end + len);
    Some(m)
}

/// The answer to an SRTP offer: the `a=crypto` line (with CRLF) for the
/// offer's first line in a suite the trunk knows, answered in that suite
/// and tag with a fresh key, and the contexts to send and receive with.
fn srtp_answer(offer: &str) -> Option<(String, super::media::Srtp)> {
    use mediad::relay::srtp::SrtpContext;
    let theirs = offer
        .lines()
        .filter_map(|l| l.trim().strip_prefix("a=crypto:"))
        .find_map(proto::sdes::parse_crypto)?;
    let ours = proto::sdes::Crypto::generate(theirs.tag, theirs.suite).ok()?;
    let srtp = super::media::Srtp {
        send: SrtpContext::from_crypto(&ours).ok()?,
        recv: SrtpContext::from_crypto(&theirs).ok()?,
    };
    Some((format!("a=crypto:{}\r\n", ours.to_attr()), srtp))
}

/// `received=` (the source address) and the filled-in `rport=` (the
/// source port, when the sender asked with a bare `rport`) on the request's
/// top Via, so a peer behind NAT learns how it is seen.
fn stamp_via(req: &str, from: SocketAddr) -> String {
    let mut done = false;
    let mut out = String::with_capacity(req.len() + 40);
    let (head, body) = req.split_once("\r\n\r\n").unwrap_or((req, ""));
    for (i, l) in head.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !done && (name == "via" || name == "v") {
            done = true;
            // Only the first value of a comma-joined Via is ours to stamp.
            let (first, rest) = match l.find(',') {
                Some(c) => (&l[..c], &l[c..]),
                None => (l, ""),
            };
            let mut v: Vec<String> = first
                .split(';')
                .filter(|p| !p.trim().starts_with("received="))
                .map(|p| {
                    if p.trim() == "rport" {
                        format!("rport={}", from.port())
                    } else {
                        p.to_owned()
                    }
                })
                .collect();
            v.push(format!("received={}", from.ip()));
            out.push_str(&v.join(";"));
            out.push_str(rest);
        } else {
            out.push_str(l);
        }
    }
    out.push_str("\r\n\r\n");
    out.push_str(body);
    out
}

/// A response echoing the request's Via/From/To/Call-ID/CSeq (To gets a tag).
fn resp(req: &str, status: &str, extra: &str, body: &str) -> String {
    let head = req.split("\r\n\r\n").next().unwrap_or(req);
    let mut out = format!("SIP/2.0 {status}\r\n");
    for l in head.lines().skip(1) {
        let k = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match k.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(l);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(l);
                if !l.contains("tag=") && !status.starts_with("100") {
                    out.push_str(";tag=twilio1");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_via_gets_received_and_rport_filled_and_nothing_else_changes() {
        let req = "OPTIONS sip:t SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK1;rport\r\n\
                   Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0;rport\r\nCSeq: 1 OPTIONS\r\n\r\nbody";
        let out = stamp_via(req, "203.0.113.2:40000".parse().unwrap());
        assert_eq!(
            out,
            "OPTIONS sip:t SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK1;rport=40000;received=203.0.113.2\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0;rport\r\nCSeq: 1 OPTIONS\r\n\r\nbody"
        );
        let no_rport = "BYE sip:t SIP/2.0\r\nv: SIP/2.0/UDP h:5060;branch=z9hG4bK2\r\n\r\n";
        assert!(
            stamp_via(no_rport, "192.0.2.1:5060".parse().unwrap())
                .contains("v: SIP/2.0/UDP h:5060;branch=z9hG4bK2;received=192.0.2.1\r\n")
        );
    }
}
