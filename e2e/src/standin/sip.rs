//! The stand-in's SIP side for `<Dial><Sip>` (CONTRACT.md §5.2): Twilio
//! sends an INVITE to the SIP URI (sipd) with `X-Twilio-CallSid`,
//! `X-Twilio-AccountSid`, `X-Twilio-ApiVersion` and the URI's `X-` headers,
//! answers a 401/407 digest challenge with the `<Sip username password>`,
//! sends PCMU RTP when answered, then hangs up with BYE; CANCEL when the
//! `<Dial timeout>` runs out. UDP only, one call per [`dial`]. It binds to
//! the address its route to the target leaves from and puts that in Via,
//! Contact and SDP; its RTP (a tone, [`super::media`]) goes to the address
//! in the answer's SDP, whatever address RTP comes from.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use tokio::net::UdpSocket;

/// One `<Dial><Sip>` attempt.
#[derive(Debug, Clone)]
pub struct SipDial {
    /// The `<Sip>` body: `sip:user@host:port;params?X-A=1&X-B=2`.
    pub uri: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Caller (E.164) as Twilio puts it in From.
    pub from: String,
    pub call_sid: String,
    pub account_sid: String,
    /// `<Dial timeout>`.
    pub timeout: Duration,
    /// How long to talk once answered.
    pub talk: Duration,
}

/// How the attempt ended.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SipResult {
    /// Final SIP status (408 when the timeout ran out).
    pub code: u16,
    pub call_id: String,
    pub rtp_sent: u32,
    pub rtp_received: u32,
    /// PCMU payloads received (what the caller heard).
    #[serde(skip)]
    pub heard: Vec<u8>,
    /// Where its RTP went: the answer's SDP address (`None`: unusable).
    #[serde(default)]
    pub rtp_to: Option<SocketAddr>,
}

/// Places the call.
pub async fn dial(d: &SipDial) -> anyhow::Result<SipResult> {
    let leg = Leg::open(d).await?;
    let mut result = SipResult {
        call_id: leg.call_id.clone(),
        ..SipResult::default()
    };
    let mut cseq = 1u32;
    // Set once, after the one digest challenge the leg answers.
    let mut auth: Option<String> = None;
    loop {
        match leg.invite(cseq, auth.as_deref(), &mut result).await? {
            Invited::Challenged(credentials) => {
                auth = Some(credentials);
                cseq += 1;
            }
            Invited::Done => return Ok(result),
        }
    }
}

/// How one INVITE transaction ended.
enum Invited {
    /// 401/407: send the INVITE again with these credentials.
    Challenged(String),
    /// The call is over; the result holds how.
    Done,
}

/// The outgoing call's dialog: its sockets, the far end and the identifiers
/// every request of the call repeats.
struct Leg<'a> {
    d: &'a SipDial,
    sock: UdpSocket,
    rtp: UdpSocket,
    peer: SocketAddr,
    local: SocketAddr,
    call_id: String,
    from_tag: String,
    /// Request-URI (and To) without the URI's parameters and headers.
    ruri: String,
    /// The SDP offer.
    sdp: String,
    /// `X-Twilio-*` and the URI's `X-` headers, sent on the INVITE.
    extra: Vec<String>,
    /// When `<Dial timeout>` runs out.
    deadline: Instant,
}

impl<'a> Leg<'a> {
    /// Resolves the URI and binds the signalling and RTP sockets on the
    /// address the route to the target leaves from (what Via, Contact and
    /// SDP name); the ring timeout starts now.
    async fn open(d: &'a SipDial) -> anyhow::Result<Self> {
        let target = parse_uri(&d.uri)?;
        let peer: SocketAddr = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {}", target.host))?;
        let me = super::media::local_ip_towards(peer)
            .map_err(|e| anyhow::anyhow!("no route to the <Sip> URI {}: {e}", d.uri))?;
        let sock = UdpSocket::bind((me, 0)).await?;
        let rtp = UdpSocket::bind((me, 0)).await?;
        let local = sock.local_addr()?;
        let call_id = format!("{:016x}@standin.twilio", rand::random::<u64>());
        let from_tag = format!("{:08x}", rand::random::<u32>());
        let ruri = format!("sip:{}@{}:{}", target.user, target.host, target.port);
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {me}\r\ns=Twilio\r\nc=IN IP4 {me}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
            rtp.local_addr()?.port()
        );
        let mut extra = vec![
            format!("X-Twilio-CallSid: {}", d.call_sid),
            format!("X-Twilio-AccountSid: {}", d.account_sid),
            "X-Twilio-ApiVersion: 2010-04-01".to_owned(),
        ];
        extra.extend(target.headers.iter().map(|(k, v)| format!("{k}: {v}")));
        Ok(Leg {
            d,
            sock,
            rtp,
            peer,
            local,
            call_id,
            from_tag,
            ruri,
            sdp,
            extra,
            deadline: Instant::now() + d.timeout,
        })
    }

    /// A bodiless request of this dialog to the Request-URI, without a To
    /// tag; callers override what differs.
    fn req<'b>(&'b self, method: &'b str, branch: &'b str, cseq: u32) -> Req<'b> {
        Req {
            method,
            ruri: &self.ruri,
            local: self.local,
            branch,
            from: &self.d.from,
            from_tag: &self.from_tag,
            to: &self.ruri,
            to_tag: None,
            call_id: &self.call_id,
            cseq,
            extra: &[],
            body: "",
        }
    }

    /// Sends a message to the far end.
    async fn send(&self, msg: &str) -> anyhow::Result<()> {
        self.sock.send_to(msg.as_bytes(), self.peer).await?;
        Ok(())
    }

    /// One INVITE transaction: sends it (retransmitting until a provisional
    /// answer) and waits for its final answer or the ring timeout.
    async fn invite(
        &self,
        cseq: u32,
        auth: Option<&str>,
        result: &mut SipResult,
    ) -> anyhow::Result<Invited> {
        let branch = new_branch();
        let mut headers = self.extra.clone();
        headers.extend(auth.map(str::to_owned));
        let invite = request(&Req {
            extra: &headers,
            body: &self.sdp,
            ..self.req("INVITE", &branch, cseq)
        });
        self.send(&invite).await?;
        let mut resend = Duration::from_millis(500);
        let mut next_resend = Instant::now() + resend;
        let mut provisional = false;
        let mut buf = vec![0u8; 65535];
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                self.cancel(&branch, cseq).await?;
                result.code = 408;
                return Ok(Invited::Done);
            }
            let wait = if provisional {
                self.deadline - now
            } else {
                next_resend
                    .saturating_duration_since(now)
                    .min(self.deadline - now)
            };
            let got = tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await;
            let Ok(Ok((n, _))) = got else {
                // Unreliable transport: the INVITE goes again, backing off,
                // until something provisional says it arrived.
                if !provisional && Instant::now() >= next_resend {
                    self.send(&invite).await?;
                    resend = (resend * 2).min(Duration::from_secs(4));
                    next_resend = Instant::now() + resend;
                }
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let Some(code) = status(&msg) else { continue };
            if header(&msg, "call-id", "i").as_deref() != Some(self.call_id.as_str()) {
                continue;
            }
            match code {
                100..=199 => provisional = true,
                401 | 407 if auth.is_none() && self.d.username.is_some() => {
                    self.ack_non_2xx(&msg, &branch, cseq).await?;
                    return Ok(Invited::Challenged(self.credentials(&msg, code)?));
                }
                200..=299 => {
                    self.answered(&msg, cseq, result).await?;
                    result.code = code;
                    return Ok(Invited::Done);
                }
                _ => {
                    self.ack_non_2xx(&msg, &branch, cseq).await?;
                    result.code = code;
                    return Ok(Invited::Done);
                }
            }
        }
    }

    /// Ring timeout: CANCEL, then ACK the 487 if it comes within 2 s.
    async fn cancel(&self, branch: &str, cseq: u32) -> anyhow::Result<()> {
        let cancel = request(&self.req("CANCEL", branch, cseq));
        self.send(&cancel).await?;
        let mut buf = vec![0u8; 65535];
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(200), self.sock.recv_from(&mut buf))
                    .await
            else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if status(&msg) == Some(487) {
                self.ack_non_2xx(&msg, branch, cseq).await?;
                break;
            }
        }
        Ok(())
    }

    /// The `Authorization` / `Proxy-Authorization` header answering the
    /// MD5 challenge in a 401 / 407 with the `<Sip>` credentials.
    fn credentials(&self, msg: &str, code: u16) -> anyhow::Result<String> {
        let (hname, rname) = if code == 401 {
            ("www-authenticate", "Authorization")
        } else {
            ("proxy-authenticate", "Proxy-Authorization")
        };
        let challenge = all_headers(msg, hname)
            .into_iter()
            .find(|c| {
                let p = params(c);
                p.get("algorithm")
                    .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
            })
            .ok_or_else(|| anyhow::anyhow!("no MD5 challenge in {code}"))?;
        Ok(format!(
            "{rname}: {}",
            digest(
                &challenge,
                self.d.username.as_deref().unwrap_or(""),
                self.d.password.as_deref().unwrap_or(""),
                "INVITE",
                &self.ruri
            )
        ))
    }

    /// Answered: ACK to the Contact, talk for the scripted time with RTP
    /// to the answer's SDP address, then BYE (waiting up to 2 s for its 200).
    async fn answered(&self, msg: &str, cseq: u32, result: &mut SipResult) -> anyhow::Result<()> {
        let to_tag = params(&header(msg, "to", "t").unwrap_or_default())
            .get("tag")
            .cloned();
        let contact = header(msg, "contact", "m")
            .and_then(|c| {
                let s = c.find('<')? + 1;
                let e = c[s..].find('>')? + s;
                Some(c[s..e].to_owned())
            })
            .unwrap_or_else(|| self.ruri.clone());
        let ack_branch = new_branch();
        let ack = request(&Req {
            ruri: &contact,
            to_tag: to_tag.as_deref(),
            ..self.req("ACK", &ack_branch, cseq)
        });
        self.send(&ack).await?;
        let media = sdp_addr(body(msg));
        result.rtp_to = media;
        let t = super::media::talk(&self.rtp, media, self.d.talk, None, None).await?;
        result.rtp_sent = t.sent;
        result.rtp_received = t.received;
        result.heard = t.heard;
        let bye_branch = new_branch();
        let bye = request(&Req {
            ruri: &contact,
            to_tag: to_tag.as_deref(),
            ..self.req("BYE", &bye_branch, cseq + 1)
        });
        self.send(&bye).await?;
        let mut buf = vec![0u8; 65535];
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sock.recv_from(&mut buf)).await;
        Ok(())
    }

    /// ACKs a non-2xx final answer to the INVITE sent with `branch`.
    async fn ack_non_2xx(&self, resp: &str, branch: &str, cseq: u32) -> anyhow::Result<()> {
        // RFC 3261 17.1.1.3: same branch as the INVITE, To with the response's tag.
        let to_tag = params(&header(resp, "to", "t").unwrap_or_default())
            .get("tag")
            .cloned();
        let ack = request(&Req {
            to_tag: to_tag.as_deref(),
            ..self.req("ACK", branch, cseq)
        });
        self.send(&ack).await
    }
}

/// A fresh RFC 3261 branch (magic cookie plus 48 random bits).
fn new_branch() -> String {
    format!("z9hG4bK{:012x}", rand::random::<u64>() >> 16)
}

struct Req<'a> {
    method: &'a str,
    ruri: &'a str,
    local: SocketAddr,
    branch: &'a str,
    from: &'a str,
    from_tag: &'a str,
    to: &'a str,
    to_tag: Option<&'a str>,
    call_id: &'a str,
    cseq: u32,
    extra: &'a [String],
    body: &'a str,
}

fn request(r: &Req<'_>) -> String {
    let to_tag = r.to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let user = r.from.trim_start_matches('+');
    let mut m = format!(
        "{} {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:+{}@standin.pstn.twilio.test>;tag={}\r\nTo: <{}>{}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n\
         Contact: <sip:twilio@{}>\r\nUser-Agent: Twilio Gateway (GoSIP stand-in)\r\n",
        r.method,
        r.ruri,
        r.local,
        r.branch,
        user,
        r.from_tag,
        r.to,
        to_tag,
        r.call_id,
        r.cseq,
        r.method,
        r.local
    );
    for h in r.extra {
        m.push_str(h);
        m.push_str("\r\n");
    }
    if !r.body.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    m.push_str(&format!(
        "Content-Length: {}\r\n\r\n{}",
        r.body.len(),
        r.body
    ));
    m
}

/// `Digest ...` credentials for `challenge` (RFC 2617, MD5, qop=auth when offered).
pub fn digest(challenge: &str, user: &str, pass: &str, method: &str, uri: &str) -> String {
    let p = params(challenge);
    let realm = p.get("realm").cloned().unwrap_or_default();
    let nonce = p.get("nonce").cloned().unwrap_or_default();
    let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
    let ha1 = md5(format!("{user}:{realm}:{pass}"));
    let ha2 = md5(format!("{method}:{uri}"));
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
    );
    if p.get("qop")
        .is_some_and(|q| q.split(',').any(|x| x.trim() == "auth"))
    {
        let cnonce = format!("{:08x}", rand::random::<u32>());
        let nc = "00000001";
        let resp = md5(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        out.push_str(&format!(
            ", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{resp}\""
        ));
    } else {
        let resp = md5(format!("{ha1}:{nonce}:{ha2}"));
        out.push_str(&format!(", response=\"{resp}\""));
    }
    if let Some(o) = p.get("opaque") {
        out.push_str(&format!(", opaque=\"{o}\""));
    }
    out
}

struct Target {
    user: String,
    host: String,
    port: u16,
    headers: Vec<(String, String)>,
}

fn parse_uri(uri: &str) -> anyhow::Result<Target> {
    let rest = uri
        .strip_prefix("sip:")
        .ok_or_else(|| anyhow::anyhow!("not a sip: URI: {uri}"))?;
    let (main, hdrs) = rest.split_once('?').unwrap_or((rest, ""));
    let main = main.split(';').next().unwrap_or(main);
    let (user, hostport) = main.split_once('@').unwrap_or(("", main));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().unwrap_or(5060)),
        None => (hostport, 5060),
    };
    let headers = url::form_urlencoded::parse(hdrs.as_bytes())
        .into_owned()
        .filter(|(k, _)| k.starts_with("X-") || k.starts_with("x-"))
        .collect();
    Ok(Target {
        user: user.to_owned(),
        host: host.to_owned(),
        port,
        headers,
    })
}

fn status(msg: &str) -> Option<u16> {
    let line = msg.lines().next()?;
    let rest = line.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// The first value of a header (long or compact name).
pub fn header(msg: &str, name: &str, compact: &str) -> Option<String> {
    all_headers_any(msg, name, compact).into_iter().next()
}

fn all_headers(msg: &str, name: &str) -> Vec<String> {
    all_headers_any(msg, name, "")
}

fn all_headers_any(msg: &str, name: &str, compact: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (k.eq_ignore_ascii_case(name)
                || (!compact.is_empty() && k.eq_ignore_ascii_case(compact)))
            .then(|| v.trim().to_owned())
        })
        .collect()
}

pub(crate) fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// `key=value` / `key="value"` parameters of a header (after `;` or `,`).
pub(crate) fn params(h: &str) -> std::collections::HashMap<String, String> {
    let h = h.strip_prefix("Digest ").unwrap_or(h);
    let mut out = std::collections::HashMap::new();
    let mut rest = h;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim_matches(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .rsplit([';', ',', ' ', '<', '>'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find([',', ';']).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key, val.trim().to_owned());
        rest = next;
    }
    out
}

pub(crate) fn sdp_addr(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim()
        .to_owned();
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    format!("{ip}:{port}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_uri_gives_host_port_and_x_headers() {
        let t = parse_uri("sip:+15550001111@127.0.0.1:5099;transport=udp?X-GoSIP-CallSid=CA1&X-GoSIP-Devices=3,4&X-GoSIP-Rule=route:1:Office%20hours").unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("+15550001111", "127.0.0.1", 5099)
        );
        assert_eq!(t.headers[1], ("X-GoSIP-Devices".into(), "3,4".into()));
        assert_eq!(t.headers[2].1, "route:1:Office hours");
    }

    #[test]
    fn the_rfc_2617_example_digest_is_reproduced_without_qop() {
        // RFC 2617 section 3.5's request without qop; the expected value was
        // computed independently (Python hashlib).
        let c = r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#;
        let d = digest(c, "Mufasa", "Circle Of Life", "GET", "/dir/index.html");
        assert!(
            d.contains(r#"response="670fd8c2df070c60b045671b8b24ff02""#),
            "{d}"
        );
    }
}
