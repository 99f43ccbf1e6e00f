//! The SIP server core: intake, transactions, digest, abuse control and the
//! registrar glued into one state machine. The shell calls
//! [`Core::handle_message`] for every framed message and
//! [`Core::handle_timeout`] when [`Core::poll_timeout`] is due, then drains
//! [`Core::poll_transmit`] and [`Core::poll_event`].

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::abuse::{Abuse, BanPolicy};
use super::digest::{Algorithm, Credentials, Nonces, Verdict};
use super::msg::{self, ACCEPT, ALLOW, Inbound, Intake, Raw, SUPPORTED, tag_of, uri_of, user_of};
use super::registrar::{Binding, Change, Device, ExpiryPolicy, Outcome, Register, Registrar};
use super::transaction::{ClientOutcome, ServerMatch, Transactions, server_key};
use super::{Peer, Transmit, Transport};

/// The runtime settings the core uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    pub realm: String,
    pub expiry: ExpiryPolicy,
    pub ban: BanPolicy,
    pub nonce_ttl_ms: u64,
    /// Offer SHA-256 (RFC 8760) beside MD5.
    pub offer_sha256: bool,
    /// 0 = no keep-alive OPTIONS.
    pub keepalive_interval_ms: u64,
    pub keepalive_failures: u32,
    /// The `host:port` put in the Via of requests we send.
    pub local_addr: String,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            realm: "gosip".into(),
            expiry: ExpiryPolicy::default(),
            ban: BanPolicy::default(),
            nonce_ttl_ms: 300_000,
            offer_sha256: true,
            keepalive_interval_ms: 30_000,
            keepalive_failures: 3,
            local_addr: "127.0.0.1:5060".into(),
        }
    }
}

/// Something the shell must store or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A registration row to write or delete.
    Binding(Change),
    /// A security event: one log line and one `security_events` row.
    Security {
        kind: &'static str,
        ip: IpAddr,
        username: String,
        detail: String,
    },
}

/// Counters for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub dropped_banned: u64,
    pub dropped_malformed: u64,
    pub rejected_malformed: u64,
    pub retransmissions_absorbed: u64,
    pub registrations_ok: u64,
    pub auth_failures: u64,
}

struct Keepalive {
    device_id: i64,
    contact: String,
}

/// A final answer chosen by the TU.
struct Reply {
    code: u16,
    reason: Cow<'static, str>,
    extra: Vec<(&'static str, String)>,
}

impl Reply {
    fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reason: reason.into(),
            extra: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }
}

/// Methods sipd knows but does not serve (RFC 3261 section 8.2.1: 405).
const KNOWN_UNSERVED: &[&str] = &[
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
];

/// Option tags sipd accepts in `Require`.
const SUPPORTED_TAGS: &[&str] = &["path", "outbound"];

pub struct Core {
    cfg: CoreConfig,
    devices: HashMap<String, Device>,
    extensions: HashMap<String, String>,
    txns: Transactions,
    nonces: Nonces,
    abuse: Abuse,
    registrar: Registrar,
    keepalives: HashMap<String, Keepalive>,
    next_keepalive: Option<u64>,
    next_sweep: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counter: u64,
    pub stats: Stats,
}

/// How often expired bindings, old nonces and bans are swept.
const SWEEP_EVERY: u64 = 1_000;

impl Core {
    pub fn new(cfg: CoreConfig, secret: [u8; 32]) -> Self {
        Self {
            nonces: Nonces::new(secret, cfg.nonce_ttl_ms),
            abuse: Abuse::new(cfg.ban),
            registrar: Registrar::new(cfg.expiry),
            cfg,
            devices: HashMap::new(),
            extensions: HashMap::new(),
            txns: Transactions::new(),
            keepalives: HashMap::new(),
            next_keepalive: None,
            next_sweep: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            counter: 0,
            stats: Stats::default(),
        }
    }

    /// Applies changed settings.
    pub fn set_config(&mut self, now: u64, cfg: CoreConfig) {
        self.nonces.set_ttl_ms(cfg.nonce_ttl_ms);
        self.abuse.policy = cfg.ban;
        self.registrar.policy = cfg.expiry;
        if cfg.keepalive_interval_ms != self.cfg.keepalive_interval_ms {
            self.next_keepalive = None;
        }
        self.cfg = cfg;
        self.schedule_keepalive(now);
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Replaces the device list (the shell reloads it from `devices`).
    pub fn set_devices(&mut self, devices: impl IntoIterator<Item = Device>) {
        self.devices.clear();
        self.extensions.clear();
        for d in devices {
            if let Some(e) = &d.extension {
                self.extensions.insert(e.clone(), d.username.clone());
            }
            self.devices.insert(d.username.clone(), d);
        }
    }

    pub fn has_device(&self, username: &str) -> bool {
        self.devices.contains_key(username)
    }

    /// Restores a binding stored before a restart.
    pub fn restore(&mut self, b: Binding) {
        self.registrar.restore(b);
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// True when traffic from `ip` is being ignored.
    pub fn is_banned(&self, ip: IpAddr, now: u64) -> bool {
        self.abuse.is_banned(ip, now)
    }

    /// One framed message from `peer`.
    pub fn handle_message(&mut self, now: u64, peer: Peer, bytes: &[u8]) {
        self.stats.received += 1;
        if self.abuse.is_banned(peer.addr.ip(), now) {
            self.stats.dropped_banned += 1;
            return;
        }
        match msg::intake(bytes) {
            Ok((Inbound::Request(r), _)) => self.handle_request(now, peer, *r),
            Ok((Inbound::Response(r), _)) => {
                if !self.txns.on_response(&r.via.branch, r.status) {
                    self.stats.dropped_malformed += 1;
                }
                self.drain_outcomes(now);
            }
            Err((Intake::Reject(code, reason), Some(raw))) => {
                self.stats.rejected_malformed += 1;
                tracing::debug!(src = %peer.addr, code, reason = %reason, "rejected malformed request");
                let tag = self.next_id();
                let data = msg::response(&raw, peer.addr, code, &reason, &tag, &[], None);
                self.out.push_back(Transmit { peer, data });
            }
            Err((Intake::Reject(..), None)) => {
                self.stats.dropped_malformed += 1;
            }
            Err((Intake::Drop(why), _)) => {
                self.stats.dropped_malformed += 1;
                tracing::debug!(src = %peer.addr, why, "dropped message");
            }
        }
    }

    /// Fires due timers: transaction retransmissions and timeouts, the
    /// sweep of expired bindings and bans, keep-alive rounds.
    pub fn handle_timeout(&mut self, now: u64) {
        self.txns.handle_timeout(now);
        self.drain_outcomes(now);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.registrar.sweep(now);
            self.nonces.sweep(now);
            for ip in self.abuse.sweep(now) {
                self.security("sip_ban_lifted", ip, "", "ban expired".into());
            }
        }
        self.schedule_keepalive(now);
        if let Some(at) = self.next_keepalive
            && now >= at
        {
            self.next_keepalive = Some(now + self.cfg.keepalive_interval_ms);
            self.send_keepalives(now);
        }
        self.collect_changes();
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.txns.poll_timeout(),
            self.next_keepalive,
            Some(self.next_sweep),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.txns.poll_transmit() {
            return Some(t);
        }
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.collect_changes();
        self.events.pop_front()
    }

    fn collect_changes(&mut self) {
        for c in self.registrar.drain_changes() {
            self.events.push_back(Event::Binding(c));
        }
    }

    fn schedule_keepalive(&mut self, now: u64) {
        if self.cfg.keepalive_interval_ms == 0 {
            self.next_keepalive = None;
        } else if self.next_keepalive.is_none() {
            self.next_keepalive = Some(now + self.cfg.keepalive_interval_ms);
        }
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{:x}{:06x}", self.counter, self.nonces_hint())
    }

    fn nonces_hint(&self) -> u64 {
        (self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) & 0xFF_FFFF
    }

    fn security(&mut self, kind: &'static str, ip: IpAddr, username: &str, detail: String) {
        self.events.push_back(Event::Security {
            kind,
            ip,
            username: username.to_string(),
            detail,
        });
    }

    fn handle_request(&mut self, now: u64, peer: Peer, r: msg::Request) {
        let raw = &r.raw;
        let method = raw.method().unwrap_or_default().to_string();
        let (cseq, _) = raw.cseq().unwrap_or((0, ""));
        let from_tag = raw.get("from").and_then(tag_of).unwrap_or_default();
        let sent_by = format!("{}:{}", r.via.host, r.via.port.unwrap_or(5060));
        let key = server_key(
            &r.via.branch,
            &sent_by,
            &method,
            raw.get("call-id").unwrap_or_default(),
            cseq,
            from_tag,
        );
        match self.txns.on_request(now, &key, &method) {
            ServerMatch::Retransmit(resp) => {
                self.stats.retransmissions_absorbed += 1;
                if let Some(mut t) = resp {
                    t.peer = peer;
                    self.out.push_back(t);
                }
            }
            ServerMatch::AckAbsorbed => {}
            ServerMatch::New if method == "ACK" => {}
            ServerMatch::New => {
                let invite = method == "INVITE";
                self.txns.begin_server(now, &key, invite);
                let reply = self.decide(now, peer, &method, &r);
                let tag = self.next_id();
                let data = msg::response(
                    raw,
                    peer.addr,
                    reply.code,
                    &reply.reason,
                    &tag,
                    &reply.extra,
                    None,
                );
                self.txns
                    .respond(now, &key, Transmit { peer, data }, reply.code);
            }
        }
    }

    /// The TU: which final answer a new request gets.
    fn decide(&mut self, now: u64, peer: Peer, method: &str, r: &msg::Request) -> Reply {
        let raw = &r.raw;
        let served = matches!(method, "REGISTER" | "OPTIONS" | "INVITE" | "CANCEL" | "BYE");
        if !served {
            if KNOWN_UNSERVED.contains(&method) {
                return Reply::new(405, "Method Not Allowed").with("Allow", ALLOW);
            }
            return Reply::new(501, "Not Implemented").with("Allow", ALLOW);
        }
        if method != "CANCEL" {
            let unsupported: Vec<&str> = raw
                .all("require")
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .filter(|t| !SUPPORTED_TAGS.iter().any(|s| s.eq_ignore_ascii_case(t)))
                .collect();
            if !unsupported.is_empty() {
                return Reply::new(420, "Bad Extension")
                    .with("Unsupported", unsupported.join(", "));
            }
        }
        if method == "INVITE" {
            if let Some(ct) = raw.get("content-type") {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if !r.raw.body.is_empty() && ct != "application/sdp" && ct != "multipart/mixed" {
                    return Reply::new(415, "Unsupported Media Type").with("Accept", ACCEPT);
                }
            }
            if let Some(acc) = raw.get("accept") {
                let ok = acc.split(',').any(|a| {
                    let a = a
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase();
                    a == "application/sdp" || a == "application/*" || a == "*/*"
                });
                if !ok {
                    return Reply::new(406, "Not Acceptable").with("Accept", ACCEPT);
                }
            }
        }
        match method {
            "REGISTER" => self.register(now, peer, r),
            "OPTIONS" => Reply::new(200, "OK")
                .with("Allow", ALLOW)
                .with("Accept", ACCEPT)
                .with("Accept-Encoding", "identity")
                .with("Accept-Language", "en")
                .with("Supported", SUPPORTED),
            "INVITE" => match self.authenticate(now, peer, r, true) {
                Err(reply) => reply,
                // Call control arrives with the B2BUA (issue 4).
                Ok(_) => Reply::new(480, "Temporarily Unavailable"),
            },
            _ => Reply::new(481, "Call/Transaction Does Not Exist"),
        }
    }

    /// Digest check of a REGISTER (`Authorization`, 401) or INVITE
    /// (`Proxy-Authorization`, 407). Unknown users and wrong passwords get
    /// the same answer so nobody can probe for extensions.
    fn authenticate(
        &mut self,
        now: u64,
        peer: Peer,
        r: &msg::Request,
        proxy: bool,
    ) -> Result<Device, Reply> {
        let raw = &r.raw;
        let method = raw.method().unwrap_or_default();
        let realm = self.cfg.realm.clone();
        let header = if proxy {
            "proxy-authorization"
        } else {
            "authorization"
        };
        let creds = raw
            .all(header)
            .filter_map(Credentials::parse)
            .find(|c| c.realm == realm);
        let Some(creds) = creds else {
            return Err(self.challenge(now, raw, proxy, false));
        };
        let ip = peer.addr.ip();
        let device = self.devices.get(&creds.username).cloned();
        let (ha1, kind) = match &device {
            Some(d) if d.realm != realm => {
                tracing::warn!(
                    username = %d.username,
                    device_realm = %d.realm,
                    realm = %realm,
                    "device credentials were made for another realm; re-save its password"
                );
                (String::new(), "sip_realm_mismatch")
            }
            Some(d) => match creds.algorithm() {
                Some(Algorithm::Sha256) => (d.ha1_sha256.clone(), "sip_bad_password"),
                _ => (d.ha1_md5.clone(), "sip_bad_password"),
            },
            // Same work for an unknown user as for a known one.
            None => ("0".repeat(32), "sip_unknown_user"),
        };
        let verdict = self.nonces.verify(now, &realm, method, &creds, &ha1);
        match (verdict, device) {
            (Verdict::Ok, Some(d)) if kind == "sip_bad_password" => Ok(d),
            (Verdict::Stale | Verdict::Replay, _) => Err(self.challenge(now, raw, proxy, true)),
            _ => {
                self.stats.auth_failures += 1;
                self.security(
                    kind,
                    ip,
                    &creds.username,
                    format!("{method} from {}", peer.addr),
                );
                if self.abuse.record_failure(ip, now) {
                    let p = self.abuse.policy;
                    self.security(
                        "sip_ban",
                        ip,
                        &creds.username,
                        format!(
                            "{} failed authentications within {} s; ignored for {} s",
                            p.threshold,
                            p.window_ms / 1000,
                            p.duration_ms / 1000
                        ),
                    );
                }
                Err(Reply::new(403, "Forbidden"))
            }
        }
    }

    fn challenge(&mut self, now: u64, req: &Raw, proxy: bool, stale: bool) -> Reply {
        let [md5, sha] = self.nonces.challenges(now, &self.cfg.realm, stale);
        let (code, reason, name) = if proxy {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            (401, "Unauthorized", "WWW-Authenticate")
        };
        let reply = Reply::new(code, reason).with(name, md5);
        let ua = req.get("user-agent").unwrap_or_default();
        if self.cfg.offer_sha256 && !chokes_on_sha256(ua) {
            reply.with(name, sha)
        } else {
            reply
        }
    }

    fn register(&mut self, now: u64, peer: Peer, r: &msg::Request) -> Reply {
        let raw = &r.raw;
        let to_uri = uri_of(raw.get("to").unwrap_or_default());
        let scheme = to_uri.split(':').next().unwrap_or_default();
        if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
            return Reply::new(400, "Bad To URI Scheme");
        }
        let device = match self.authenticate(now, peer, r, false) {
            Ok(d) => d,
            Err(reply) => return reply,
        };
        // The authenticated user may only bind its own address of record.
        let aor_user = user_of(to_uri).unwrap_or_default();
        if aor_user != device.username && Some(aor_user) != device.extension.as_deref() {
            return Reply::new(403, "Forbidden");
        }
        let expires_header = match raw.get("expires") {
            Some(e) => match e.trim().parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => return Reply::new(400, "Bad Expires"),
            },
            None => None,
        };
        let contacts: Vec<&str> = raw.all("contact").collect();
        if contacts.is_empty() {
            // A query: list the bindings (RFC 3261 section 10.2.3).
            return self.ok_with_contacts(self.registrar.current(now, device.id));
        }
        let reg = Register {
            device_id: device.id,
            contacts,
            expires_header,
            call_id: raw.get("call-id").unwrap_or_default(),
            cseq: raw.cseq().map_or(0, |c| c.0),
            user_agent: raw.get("user-agent").unwrap_or_default(),
            source: peer,
        };
        match self.registrar.register(now, &reg) {
            Outcome::Ok(list) => {
                self.stats.registrations_ok += 1;
                tracing::debug!(aor = %device.username, src = %peer.addr, contacts = list.len(), "registered");
                self.ok_with_contacts(list)
            }
            Outcome::TooBrief(min) => {
                Reply::new(423, "Interval Too Brief").with("Min-Expires", min.to_string())
            }
            Outcome::Bad(why) => Reply::new(400, why),
            Outcome::OutOfOrder => Reply::new(500, "Out Of Order CSeq"),
            Outcome::TooMany => Reply::new(403, "Too Many Contacts"),
        }
    }

    fn ok_with_contacts(&self, list: Vec<(String, u64)>) -> Reply {
        let mut reply = Reply::new(200, "OK");
        for (uri, secs) in list {
            reply = reply.with("Contact", format!("<{uri}>;expires={secs}"));
        }
        reply.with("Supported", SUPPORTED)
    }

    fn send_keepalives(&mut self, now: u64) {
        let targets: Vec<(i64, String, Peer)> = self
            .registrar
            .all()
            .map(|b| (b.device_id, b.contact.clone(), b.source))
            .collect();
        let timeout = self.cfg.keepalive_interval_ms.max(1_000);
        for (device_id, contact, peer) in targets {
            let branch = format!("z9hG4bK{}", self.next_id());
            let data = self.options_request(&contact, &branch, peer.transport);
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, timeout);
            self.keepalives
                .insert(branch, Keepalive { device_id, contact });
        }
    }

    fn options_request(&mut self, contact: &str, branch: &str, t: Transport) -> Vec<u8> {
        let tag = self.next_id();
        let call_id = self.next_id();
        let local = &self.cfg.local_addr;
        let realm = &self.cfg.realm;
        format!(
            "OPTIONS {contact} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:keepalive@{realm}>;tag={tag}\r\n\
             To: <{contact}>\r\n\
             Call-ID: {call_id}@gosip\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: GoSIP\r\n\
             Content-Length: 0\r\n\r\n",
            t.as_str().to_ascii_uppercase()
        )
        .into_bytes()
    }

    fn drain_outcomes(&mut self, now: u64) {
        while let Some(o) = self.txns.poll_outcome() {
            let (key, answered) = match o {
                ClientOutcome::Response { key, .. } => (key, true),
                ClientOutcome::Timeout { key } => (key, false),
            };
            if let Some(k) = self.keepalives.remove(&key) {
                self.registrar.keepalive_result(
                    now,
                    k.device_id,
                    &k.contact,
                    answered,
                    self.cfg.keepalive_failures,
                );
            }
        }
        self.collect_changes();
    }
}

/// Clients that fail the whole authentication when one of several
/// challenges names an algorithm they lack, instead of picking the one they
/// know (RFC 8760 section 2.4). libre before 2.x (baresip 1.0) answers
/// `ENOSYS` to a SHA-256 challenge.
fn chokes_on_sha256(user_agent: &str) -> bool {
    const OLD: &[&str] = &["baresip v0.", "baresip v1."];
    OLD.iter().any(|p| user_agent.starts_with(p))
}

/// Raw is re-exported for the shell's framing helpers.
pub type RawMessage = Raw;
