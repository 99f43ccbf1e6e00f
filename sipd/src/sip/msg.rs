//! SIP message intake: size and header-count limits, a raw header scan that
//! survives malformed input (so a broken request can still be answered with
//! `400`), the RFC 3261 section 8.2 checks a UAS makes before looking at the
//! method, with the Request-URI parsed by rsipstack's rsip fork.
//!
//! Responses are printed from the request's own Via/From/To/Call-ID/CSeq
//! lines (RFC 3261 section 8.2.6.2), so they survive any header form rsip
//! would re-print differently.

use std::fmt::Write as _;

use rsipstack::sip as rsip;

use super::method::Method;

/// Largest message accepted on any transport (UDP datagrams cannot be larger).
pub const MAX_MESSAGE: usize = 65_535;
/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 128;
/// Largest header section accepted on a stream before the blank line.
pub const MAX_HEADER_SECTION: usize = 16_384;

/// What the server says about its capabilities (OPTIONS, 405, 420).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, SUBSCRIBE, REFER";
pub const ACCEPT: &str = "application/sdp";
pub const SUPPORTED: &str = "path, outbound";

/// A message split into start line, unfolded headers and body. Never fails
/// on content: only on framing.
///
/// The header section is kept as one string and the start line and headers
/// as spans of it: one allocation per message instead of two per header.
#[derive(Debug, Clone, Default)]
pub struct Raw {
    /// The header section as text (invalid UTF-8 replaced, folded lines
    /// joined), the start line first.
    head: String,
    start: Span,
    /// (name as sent, value, [`known`] number of the name) in order,
    /// trimmed.
    headers: Vec<(Span, Span, u8)>,
    pub body: Vec<u8>,
}

/// Where a piece of [`Raw::head`] is: byte offsets, start and end.
type Span = (u32, u32);

/// Why input was not turned into a message we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Not answerable: dropped (counted, logged at debug).
    Drop(&'static str),
    /// A request that can be answered with this error status and reason.
    Reject(u16, String),
}

/// Joins folded header lines (RFC 3261 section 7.3.1: a line starting with
/// whitespace continues the one before) with a single space. A continuation
/// right after the start line belongs to no header and is dropped.
fn unfold(head: &str) -> String {
    let mut out = String::with_capacity(head.len());
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 && line.starts_with([' ', '\t']) {
            if i > 1 {
                out.truncate(out.trim_end().len());
                out.push(' ');
                out.push_str(line.trim());
            }
            continue;
        }
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(line);
    }
    out
}

/// The headers sipd looks up on most messages. [`Raw`] numbers each header
/// line by this list once, so a lookup compares a byte per line instead of
/// a name.
const KNOWN: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-length",
    "content-type",
    "max-forwards",
    "expires",
    "authorization",
    "proxy-authorization",
    "record-route",
    "route",
    "user-agent",
    "date",
    "require",
    "supported",
];

/// A header name's place in [`KNOWN`] plus one (compact forms included),
/// 0 for any other.
fn known(name: &str) -> u8 {
    let name = canonical(name);
    KNOWN
        .iter()
        .position(|k| k.eq_ignore_ascii_case(name))
        .map_or(0, |i| i as u8 + 1)
}

/// The compact header forms of RFC 3261 section 7.3.3 (and RFC 3515/3841).
fn canonical(name: &str) -> &str {
    if name.len() == 1 {
        match name.as_bytes()[0].to_ascii_lowercase() {
            b'i' => return "call-id",
            b'm' => return "contact",
            b'e' => return "content-encoding",
            b'l' => return "content-length",
            b'c' => return "content-type",
            b'f' => return "from",
            b's' => return "subject",
            b'k' => return "supported",
            b't' => return "to",
            b'v' => return "via",
            b'o' => return "event",
            b'r' => return "refer-to",
            b'u' => return "allow-events",
            _ => {}
        }
    }
    name
}

impl Raw {
    /// Splits `bytes` at the blank line. A datagram that ends right after
    /// its last header line lacks only the blank line: the datagram boundary
    /// ends the message. `None` otherwise.
    pub fn split(bytes: &[u8]) -> Option<Raw> {
        let sep = match find(bytes, b"\r\n\r\n") {
            Some(s) => s,
            None if bytes.ends_with(b"\r\n") => {
                let mut framed = bytes.to_vec();
                framed.extend_from_slice(b"\r\n");
                return Raw::split(&framed);
            }
            None => return None,
        };
        let head = &bytes[..sep];
        let head = match std::str::from_utf8(head) {
            Ok(h) => h.to_owned(),
            Err(_) => String::from_utf8_lossy(head).into_owned(),
        };
        let folded = head
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'));
        let head = if folded { unfold(&head) } else { head };
        let at = |part: &str| {
            let from = part.as_ptr() as usize - head.as_ptr() as usize;
            // The head is at most one message, far below 4 GiB.
            (from as u32, (from + part.len()) as u32)
        };
        let mut lines = head.split("\r\n");
        let start = at(lines.next()?);
        let headers = lines
            .map(|line| match line.split_once(':') {
                Some((n, v)) => {
                    let n = n.trim();
                    (at(n), at(v.trim()), known(n))
                }
                None => (at(line.trim()), (0, 0), 0),
            })
            .collect();
        Some(Raw {
            start,
            headers,
            body: bytes[sep + 4..].to_vec(),
            head,
        })
    }

    fn text(&self, (from, to): Span) -> &str {
        &self.head[from as usize..to as usize]
    }

    /// The start line: the Request-Line or Status-Line.
    pub fn start(&self) -> &str {
        self.text(self.start)
    }

    /// Every header line as (name as sent, value), folding removed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|&(n, v, _)| (self.text(n), self.text(v)))
    }

    /// Every value of header `name` (long or compact name, any case).
    pub fn all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let k = known(name);
        let name = canonical(name);
        self.headers
            .iter()
            .filter(move |&&(n, _, kind)| {
                if k == 0 {
                    canonical(self.text(n)).eq_ignore_ascii_case(name)
                } else {
                    kind == k
                }
            })
            .map(|&(_, v, _)| self.text(v))
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }

    /// The request method, when the start line is a request line.
    pub fn method(&self) -> Option<&str> {
        if self.is_response() {
            return None;
        }
        self.start().split(' ').next().filter(|m| !m.is_empty())
    }

    pub fn is_response(&self) -> bool {
        self.start().starts_with("SIP/")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.start().split(' ').nth(1)?.parse().ok()
    }

    /// True when a response can be routed back: a request with a Via.
    /// Missing From/To/Call-ID are left out of the 400 (RFC 4475 3.3.1).
    pub fn answerable(&self) -> bool {
        !self.is_response()
            && self.method().is_some()
            && self.get("via").is_some_and(|v| TopVia::parse(v).is_some())
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.get("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?))
    }
}

/// A request that passed the section 8.2 checks.
#[derive(Debug, Clone)]
pub struct Request {
    pub raw: Raw,
    /// The Request-Line's method; `None` for an extension method sipd does
    /// not know, which only ever gets 501.
    pub method: Option<Method>,
    pub via: TopVia,
}

/// A response (to one of our client transactions).
#[derive(Debug, Clone)]
pub struct Response {
    pub raw: Raw,
    pub status: u16,
    pub via: TopVia,
}

/// An inbound message after intake.
#[derive(Debug, Clone)]
pub enum Inbound {
    Request(Box<Request>),
    Response(Box<Response>),
}

/// Checks and parses one framed message. `Err(Reject)` is answered with the
/// status; `Err(Drop)` is ignored. The message's [`Raw`] moves into what is
/// returned: on success into the request or response, on failure beside
/// the reason (for the answer's headers).
pub fn intake(bytes: &[u8]) -> Result<Inbound, (Intake, Option<Raw>)> {
    if bytes.len() > MAX_MESSAGE {
        return Err((Intake::Drop("too large"), None));
    }
    let Some(raw) = Raw::split(bytes) else {
        return Err((Intake::Drop("no header end"), None));
    };
    match check(raw) {
        Ok(inb) => Ok(inb),
        Err((Intake::Reject(code, reason), raw)) if raw.answerable() => {
            Err((Intake::Reject(code, reason), Some(raw)))
        }
        Err((Intake::Reject(..), raw)) => Err((Intake::Drop("unanswerable"), Some(raw))),
        Err((d, raw)) => Err((d, Some(raw))),
    }
}

fn reject(code: u16, reason: &str) -> Intake {
    Intake::Reject(code, reason.to_string())
}

/// The RFC 3261 syntax checks sipd relies on (RFC 4475 torture cases):
/// a response with its status, or a request with its method; the raw
/// message comes back with the reason when a check fails.
fn check(mut raw: Raw) -> Result<Inbound, (Intake, Raw)> {
    checked(&mut raw).map_err(|e| (e, raw))
}

/// [`check`]'s checks; frames `raw`'s body by its Content-Length and
/// takes it into what it returns when it passes.
fn checked(raw_mut: &mut Raw) -> Result<Inbound, Intake> {
    check_headers(raw_mut)?;
    frame_body(raw_mut)?;
    let raw = &*raw_mut;
    let Some((cseq_n, cseq_m)) = raw.cseq() else {
        return Err(reject(400, "Bad CSeq"));
    };
    if cseq_n > (1u32 << 31) - 1 {
        return Err(reject(400, "CSeq Out Of Range"));
    }
    let via = TopVia::parse(raw.get("via").unwrap_or_default()).ok_or(reject(400, "Bad Via"))?;
    if raw.is_response() {
        let mut parts = raw.start().splitn(3, ' ');
        let (_, code) = (parts.next(), parts.next());
        let status = code
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..700).contains(c))
            .ok_or(Intake::Drop("bad status line"))?;
        return Ok(Inbound::Response(Box::new(Response {
            raw: std::mem::take(raw_mut),
            status,
            via,
        })));
    }
    let (method, uri) = check_request_line(raw, cseq_m)?;
    check_request_headers(raw, uri)?;
    let method = Method::parse(method);
    Ok(Inbound::Request(Box::new(Request {
        raw: std::mem::take(raw_mut),
        method,
        via,
    })))
}

/// The checks every message passes, request or response: header count and
/// names, the headers RFC 3261 section 8.1.1 requires, and no duplicates of
/// those that must appear once.
fn check_headers(raw: &Raw) -> Result<(), Intake> {
    if raw.headers.len() > MAX_HEADERS {
        return Err(reject(400, "Too Many Headers"));
    }
    for (n, _) in raw.headers() {
        if n.is_empty() || !n.bytes().all(is_token_char) {
            return Err(reject(400, "Malformed Header Line"));
        }
    }
    for h in ["via", "from", "to", "call-id", "cseq"] {
        if raw.get(h).is_none() {
            return Err(reject(400, "Missing Required Header"));
        }
    }
    for h in [
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-length",
    ] {
        if raw.all(h).count() > 1 {
            return Err(reject(400, "Duplicate Header"));
        }
    }
    Ok(())
}

/// Cuts the body to what Content-Length frames (RFC 3261 section 18.3): a
/// shorter body is an error, extra octets are discarded.
fn frame_body(raw: &mut Raw) -> Result<(), Intake> {
    if let Some(cl) = raw.get("content-length") {
        let Ok(n) = cl.trim().parse::<usize>() else {
            return Err(reject(400, "Bad Content-Length"));
        };
        if n > raw.body.len() {
            return Err(reject(400, "Content-Length Exceeds Body"));
        }
        raw.body.truncate(n);
    }
    Ok(())
}

/// The Request-Line (Method SP Request-URI SP SIP-Version, single spaces,
/// RFC 3261 section 25.1) and its agreement with the CSeq method: the
/// method and the Request-URI.
fn check_request_line<'a>(raw: &'a Raw, cseq_method: &str) -> Result<(&'a str, &'a str), Intake> {
    let parts: Vec<&str> = raw.start().split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(reject(400, "Malformed Request-Line"));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if !method.bytes().all(is_token_char) {
        return Err(reject(400, "Malformed Method"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        if version.len() > 4
            && version
                .get(..4)
                .is_some_and(|v| v.eq_ignore_ascii_case("SIP/"))
        {
            return Err(reject(505, "Version Not Supported"));
        }
        return Err(reject(400, "Malformed Request-Line"));
    }
    if method != cseq_method {
        return Err(reject(400, "CSeq Method Mismatch"));
    }
    let scheme = uri.split(':').next().unwrap_or_default();
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        if uri.contains(':')
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(reject(416, "Unsupported URI Scheme"));
        }
        return Err(reject(400, "Malformed Request-URI"));
    }
    // rsip's URI grammar: a host (a bracketed one an IPv6 address) and a
    // port that fits in 16 bits. Only the Request-URI is parsed: a parse of
    // the whole message into typed headers nobody read was a sixth of
    // sipd's CPU under a REGISTER flood (docs/performance.md), and sipd's
    // own checks above and below cover the RFC 4475 torture cases.
    if uri.contains(['<', '>']) || rsip::Uri::try_from(uri).is_err() {
        return Err(reject(400, "Malformed Request-URI"));
    }
    Ok((method, uri))
}

/// The request headers whose values sipd reads: numbers, name-addrs and
/// their parameters, Via items, Date and Contact.
fn check_request_headers(raw: &Raw, uri: &str) -> Result<(), Intake> {
    if let Some(mf) = raw.get("max-forwards")
        && mf.trim().parse::<u8>().is_err()
    {
        return Err(reject(400, "Bad Max-Forwards"));
    }
    if let Some(e) = raw.get("expires")
        && e.trim().parse::<u32>().is_err()
    {
        return Err(reject(400, "Bad Expires"));
    }
    for h in ["from", "to"] {
        if !name_addr_ok(raw.get(h).unwrap_or_default()) {
            return Err(reject(400, "Malformed From/To"));
        }
    }
    for h in ["from", "to"] {
        if !params_ok(header_params(raw.get(h).unwrap_or_default())) {
            return Err(reject(400, "Empty Parameter"));
        }
    }
    for v in raw.all("via") {
        for item in split_top_level(v, b',') {
            let mut parts = split_top_level(item, b';').into_iter();
            if parts.next().is_none_or(|p| p.trim().is_empty())
                || parts.any(|p| p.trim().is_empty())
            {
                return Err(reject(400, "Malformed Via"));
            }
        }
    }
    // URI headers make no sense in a Request-URI (RFC 3261 section 19.1.5).
    if uri.rsplit('@').next().is_some_and(|h| h.contains('?')) {
        return Err(reject(400, "Headers In Request-URI"));
    }
    if let Some(d) = raw.get("date")
        && !d.trim_end().ends_with("GMT")
    {
        return Err(reject(400, "Bad Date"));
    }
    for v in raw.all("contact") {
        for c in split_top_level(v, b',') {
            if c.trim() != "*" && !name_addr_ok(c) {
                return Err(reject(400, "Malformed Contact"));
            }
        }
    }
    Ok(())
}

/// The `;param` part of a name-addr / addr-spec header value.
fn header_params(v: &str) -> &str {
    split_name_addr(v).1
}

fn params_ok(params: &str) -> bool {
    let params = params.trim();
    if params.is_empty() {
        return true;
    }
    let Some(rest) = params.strip_prefix(';') else {
        return false;
    };
    split_top_level(rest, b';')
        .iter()
        .all(|p| !p.trim().is_empty())
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Loose check of a name-addr / addr-spec: balanced quotes and angle
/// brackets, a URI with a scheme, no whitespace inside an addr-spec.
fn name_addr_ok(v: &str) -> bool {
    let v = v.trim();
    if v.is_empty() {
        return false;
    }
    let mut in_quote = false;
    let mut escaped = false;
    let mut open = 0usize;
    let mut saw_angle = false;
    // The URI inside the angle brackets, as byte offsets.
    let (mut uri_from, mut uri_to) = (0, 0);
    for (i, c) in v.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' => {
                if saw_angle {
                    return false;
                }
                open += 1;
                saw_angle = true;
                uri_from = i + 1;
            }
            '>' => {
                if open == 0 {
                    return false;
                }
                open -= 1;
                uri_to = i;
            }
            _ => {}
        }
    }
    if in_quote || open != 0 {
        return false;
    }
    if saw_angle {
        // Display names with spaces must be quoted (RFC 3261 section 25.1).
        let before = v.split('<').next().unwrap_or_default().trim();
        if !before.starts_with('"')
            && !before
                .bytes()
                .all(|b| is_token_char(b) || b == b' ' || b == b'\t')
        {
            return false;
        }
        let uri = &v[uri_from..uri_to];
        uri.contains(':') && !uri.contains([' ', '\t'])
    } else {
        // A bare addr-spec cannot carry URI headers (RFC 3261 section 20).
        let spec = v.split(';').next().unwrap_or_default();
        spec.contains(':') && !spec.trim().contains([' ', '\t', '?', ','])
    }
}

/// The parts of the top Via a server needs (RFC 3261 section 18.2.1, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    pub branch: String,
    pub rport: bool,
}

impl TopVia {
    pub fn parse(v: &str) -> Option<TopVia> {
        let first = split_top_level(v, b',').into_iter().next()?;
        let mut params = split_top_level(first, b';').into_iter();
        let sent = params.next()?.trim();
        let mut slash = sent.splitn(3, '/');
        let (name, ver, rest) = (
            slash.next()?.trim(),
            slash.next()?.trim(),
            slash.next()?.trim_start(),
        );
        let (transport, sent_by) = rest.split_once(|c: char| c.is_whitespace())?;
        if !name.eq_ignore_ascii_case("SIP") || ver.is_empty() || transport.is_empty() {
            return None;
        }
        let sent_by = sent_by.trim();
        let (host, port) = split_host_port(sent_by)?;
        let mut branch = String::new();
        let mut rport = false;
        for p in params {
            let (k, val) = p.split_once('=').unwrap_or((p, ""));
            let k = k.trim();
            if k.eq_ignore_ascii_case("branch") {
                branch = val.trim().to_string();
            } else if k.eq_ignore_ascii_case("rport") {
                rport = true;
            }
        }
        Some(TopVia {
            transport: transport.to_ascii_uppercase(),
            host,
            port,
            branch,
            rport,
        })
    }
}

fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.trim().parse().ok()?),
            None if tail.trim().is_empty() => None,
            None => return None,
        };
        return Some((format!("[{h}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h.trim().to_string(), Some(p.trim().parse().ok()?))),
        None => Some((s.to_string(), None)),
    }
}

/// Splits at `sep` (ASCII) outside double quotes and angle brackets.
///
/// Walks bytes, not chars: every byte that matters here is ASCII, and no
/// byte of a multi-byte UTF-8 character is, so the cuts are the same and
/// always on character boundaries.
pub fn split_top_level(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quote, mut esc, mut angle, mut start) = (false, false, 0i32, 0usize);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if quote {
            if esc {
                esc = false;
            } else if b == b'\\' {
                esc = true;
            } else if b == b'"' {
                quote = false;
            }
            continue;
        }
        match b {
            b'"' => quote = true,
            b'<' => angle += 1,
            b'>' => angle -= 1,
            b if b == sep && angle <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Builds a response to `req` (RFC 3261 section 8.2.6): Via lines copied with
/// `received`/`rport` set on the top one (RFC 3581), From, Call-ID, CSeq
/// copied, a To tag added when missing, then `extra` header lines.
pub fn response(
    req: &Raw,
    src: std::net::SocketAddr,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    let mut first = true;
    for v in req.all("via") {
        if first {
            first = false;
            let _ = write!(out, "Via: {}\r\n", stamp_via(v, src));
        } else {
            let _ = write!(out, "Via: {v}\r\n");
        }
    }
    if let Some(f) = req.get("from") {
        let _ = write!(out, "From: {f}\r\n");
    }
    if let Some(t) = req.get("to") {
        if code > 100 && tag_of(t).is_none() && !to_tag.is_empty() {
            let _ = write!(out, "To: {t};tag={to_tag}\r\n");
        } else {
            let _ = write!(out, "To: {t}\r\n");
        }
    }
    if let Some(c) = req.get("call-id") {
        let _ = write!(out, "Call-ID: {c}\r\n");
    }
    if let Some(c) = req.get("cseq") {
        let _ = write!(out, "CSeq: {c}\r\n");
    }
    // A response that makes a dialog carries the request's Record-Route
    // back, so the caller learns its route set (RFC 3261 section 12.1.1).
    if (101..300).contains(&code)
        && req
            .cseq()
            .is_some_and(|(_, m)| Method::parse(m) == Some(Method::Invite))
    {
        for rr in req.all("record-route") {
            let _ = write!(out, "Record-Route: {rr}\r\n");
        }
    }
    for (n, v) in extra {
        let _ = write!(out, "{n}: {v}\r\n");
    }
    out.push_str("Server: GoSIP\r\n");
    match body {
        Some((ct, b)) => {
            let _ = write!(
                out,
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(b);
            bytes
        }
        None => {
            out.push_str("Content-Length: 0\r\n\r\n");
            out.into_bytes()
        }
    }
}

/// Sets `received` (always, so the phone learns its public address) and fills
/// `rport` when the client asked for it (RFC 3581 section 4).
fn stamp_via(via: &str, src: std::net::SocketAddr) -> String {
    let parts = split_top_level(via, b',');
    let top = parts.first().copied().unwrap_or_default();
    let mut params: Vec<String> = split_top_level(top, b';')
        .into_iter()
        .map(|p| p.trim().to_string())
        .collect();
    params.retain(|p| !p.to_ascii_lowercase().starts_with("received"));
    let mut has_rport = false;
    for p in params.iter_mut().skip(1) {
        let key = p
            .split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if key == "rport" {
            *p = format!("rport={}", src.port());
            has_rport = true;
        }
    }
    params.push(format!("received={}", src.ip()));
    let _ = has_rport;
    let mut s = params.join(";");
    for rest in parts.iter().skip(1) {
        s.push(',');
        s.push_str(rest);
    }
    s
}

/// Splits a name-addr / addr-spec header value into its URI and the
/// `;params` after it (quoted display names and bracketed URIs respected).
pub fn split_name_addr(v: &str) -> (&str, &str) {
    let v = v.trim();
    let mut start = 0;
    if v.starts_with('"') {
        let mut esc = false;
        for (i, c) in v.char_indices().skip(1) {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                start = i + 1;
                break;
            }
        }
    }
    let rest = &v[start..];
    if let Some(lt) = rest.find('<') {
        let after = &rest[lt + 1..];
        return match after.find('>') {
            Some(gt) => (&after[..gt], &after[gt + 1..]),
            None => (after, ""),
        };
    }
    match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i..]),
        None => (rest.trim(), ""),
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(v: &str) -> Option<&str> {
    let (_, params) = split_name_addr(v);
    split_top_level(params, b';')
        .into_iter()
        .skip(1)
        .find_map(|p| {
            let (k, val) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("tag").then(|| val.trim())
        })
}

/// The URI in a From/To/Contact value.
pub fn uri_of(v: &str) -> &str {
    split_name_addr(v).0
}

/// The display name of a From/To value: a quoted-string unescaped
/// (RFC 3261 section 25.1 quoted-pair), or the tokens before `<`. `None`
/// when there is none.
pub fn display_name(v: &str) -> Option<String> {
    let v = v.trim();
    if let Some(rest) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut esc = false;
        for c in rest.chars() {
            if esc {
                out.push(c);
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                return Some(out).filter(|s| !s.trim().is_empty());
            } else {
                out.push(c);
            }
        }
        return None;
    }
    let (name, _) = v.split_once('<')?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// `s` as a quoted-string for a display name (RFC 3261 section 25.1): `"`
/// and `\` escaped, control characters dropped. UTF-8 stays as it is
/// (UTF8-NONASCII is qdtext).
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The user part of a sip: URI (`sip:user@host` -> `user`).
pub fn user_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':')?.1;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where `data` names an SDP body, if anywhere (a quick test before
/// parsing a message sipd built).
pub fn find_sdp(data: &[u8]) -> Option<usize> {
    find(data, b"application/sdp")
}

/// A message sipd built (`data`) with its body replaced by `body` and its
/// Content-Length set to match; `None` when `data` is not a whole message.
pub fn with_body(data: &[u8], body: &str) -> Option<Vec<u8>> {
    let sep = find(data, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&data[..sep]).ok()?;
    let mut out = Vec::with_capacity(sep + body.len() + 8);
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let name = line.split(':').next().unwrap_or_default().trim();
        if i > 0 && canonical(name).eq_ignore_ascii_case("content-length") {
            out.extend_from_slice(format!("Content-Length: {}", body.len()).as_bytes());
        } else {
            out.extend_from_slice(line.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    const OPTIONS: &str = "OPTIONS sip:pbx SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\nFrom: <sip:a@pbx>;tag=1\nTo: <sip:pbx>\nCall-ID: x\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n";

    #[test]
    fn a_plain_options_passes_intake() {
        let inb = intake(&req(OPTIONS)).unwrap();
        let Inbound::Request(r) = inb else { panic!() };
        assert_eq!(r.via.branch, "z9hG4bK1");
        assert!(r.via.rport);
        assert_eq!(r.via.port, Some(5070));
    }

    #[test]
    fn a_request_without_via_is_dropped_and_without_call_id_gets_400() {
        let m = OPTIONS.replace("Call-ID: x\n", "");
        assert!(matches!(intake(&req(&m)), Err((Intake::Reject(400, _), _))));
        let m = OPTIONS.replace(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport\n",
            "",
        );
        assert!(matches!(intake(&req(&m)), Err((Intake::Drop(_), _))));
    }

    #[test]
    fn allow_names_only_known_methods() {
        let allowed: Vec<Option<Method>> = ALLOW.split(", ").map(Method::parse).collect();
        assert!(allowed.iter().all(Option::is_some), "{ALLOW}");
    }

    #[test]
    fn an_extension_method_has_no_method_value() {
        let m = OPTIONS.replace("OPTIONS", "FOO");
        let Ok(Inbound::Request(r)) = intake(&req(&m)) else {
            panic!("FOO should pass intake");
        };
        assert_eq!(r.method, None);
        let Ok(Inbound::Request(r)) = intake(&req(OPTIONS)) else {
            panic!("OPTIONS should pass intake");
        };
        assert_eq!(r.method, Some(Method::Options));
    }

    #[test]
    fn a_request_uri_without_a_host_or_with_a_port_past_16_bits_is_a_400() {
        for uri in ["sip:a@:5060", "sip:", "sip:a@pbx:70000", "sip:a@[]:5060"] {
            let m = OPTIONS.replace("OPTIONS sip:pbx", &format!("OPTIONS {uri}"));
            assert!(
                matches!(intake(&req(&m)), Err((Intake::Reject(400, r), _)) if r == "Malformed Request-URI"),
                "{uri}"
            );
        }
        let m = OPTIONS.replace("OPTIONS sip:pbx", "OPTIONS sip:a@pbx:5060;transport=udp");
        assert!(intake(&req(&m)).is_ok());
    }

    #[test]
    fn headers_are_found_by_long_or_compact_name_in_any_case_and_folding_is_joined() {
        let m = "OPTIONS sip:pbx SIP/2.0\n continues nothing\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\nVIA: SIP/2.0/TCP 127.0.0.1:5071\nf: <sip:a@pbx>;tag=1\nSubject: lunch  \n\tat noon\n   today\nX-Odd: \u{e9}t\u{e9}\nNoColon\n\n";
        let raw = Raw::split(&req(m)).unwrap();
        assert_eq!(raw.start(), "OPTIONS sip:pbx SIP/2.0");
        assert_eq!(raw.all("via").count(), 2);
        assert_eq!(raw.all("Via").nth(1), Some("SIP/2.0/TCP 127.0.0.1:5071"));
        assert_eq!(raw.get("FROM"), Some("<sip:a@pbx>;tag=1"));
        assert_eq!(raw.get("subject"), Some("lunch at noon today"));
        assert_eq!(raw.get("s"), Some("lunch at noon today"));
        assert_eq!(raw.get("x-odd"), Some("\u{e9}t\u{e9}"));
        assert_eq!(raw.get("nocolon"), Some(""));
        assert_eq!(raw.get("to"), None);
        assert_eq!(raw.headers().count(), 6);
        // Invalid UTF-8 is replaced, not a reason to drop the message.
        let mut bad = req(OPTIONS);
        let at = bad.windows(4).position(|w| w == b"pbx>").unwrap();
        bad[at] = 0xff;
        let raw = Raw::split(&bad).unwrap();
        assert_eq!(raw.get("from"), Some("<sip:a@\u{fffd}bx>;tag=1"));
    }

    #[test]
    fn a_cseq_method_mismatch_is_a_400() {
        let m = OPTIONS.replace("1 OPTIONS", "1 INVITE");
        assert!(matches!(intake(&req(&m)), Err((Intake::Reject(400, _), _))));
    }

    #[test]
    fn the_response_echoes_via_with_received_and_rport() {
        let raw = Raw::split(&req(OPTIONS)).unwrap();
        let src = "10.0.0.9:40000".parse().unwrap();
        let out = String::from_utf8(response(&raw, src, 200, "OK", "abc", &[], None)).unwrap();
        assert!(out.contains(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport=40000;received=10.0.0.9\r\n"
        ));
        assert!(out.contains("To: <sip:pbx>;tag=abc\r\n"));
        assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn tags_users_and_uris_are_found() {
        assert_eq!(tag_of("\"A;b\" <sip:a@b;x=1>;tag=77"), Some("77"));
        assert_eq!(tag_of("sip:a@b"), None);
        assert_eq!(
            uri_of("\"A\" <sip:a@b;transport=tcp>;expires=3"),
            "sip:a@b;transport=tcp"
        );
        assert_eq!(user_of("sip:alice@pbx:5060"), Some("alice"));
    }

    #[test]
    fn display_names_are_unquoted_and_quoted_per_rfc_3261() {
        assert_eq!(
            display_name(r#""Al \"The\" Pal\\" <sip:a@b>;tag=1"#).as_deref(),
            Some(r#"Al "The" Pal\"#)
        );
        assert_eq!(
            display_name("Bob Smith <sip:b@c>").as_deref(),
            Some("Bob Smith")
        );
        assert_eq!(display_name("<sip:b@c>;tag=2"), None);
        assert_eq!(display_name("sip:b@c"), None);
        assert_eq!(display_name(r#""" <sip:b@c>"#), None);
        assert_eq!(quoted("✓ Al \"x\"\r\n"), "\"✓ Al \\\"x\\\"\"");
        assert_eq!(quoted(r"a\b"), r#""a\\b""#);
        // What `quoted` prints, `display_name` reads back.
        for s in ["SPAM? +15557654321", "✓ Zoë \"Z\" \\o/"] {
            let v = format!("{} <sip:x@y>", quoted(s));
            assert_eq!(display_name(&v).as_deref(), Some(s));
            assert!(name_addr_ok(&v), "{v}");
        }
    }
}
