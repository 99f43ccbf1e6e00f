//! The SIP server core: intake, transactions, digest, abuse control and the
//! registrar glued into one state machine. The shell calls
//! [`Core::handle_message`] for every framed message and
//! [`Core::handle_timeout`] when [`Core::poll_timeout`] is due, then drains
//! [`Core::poll_transmit`] and [`Core::poll_event`].

mod b2bua;
mod mwi;
mod outbound;

pub use super::addrs::{AddrBook, AddrSource};
pub use b2bua::{CallInfo, Cdr, SPAM_MARK, TRUNK_ID, VERIFIED_MARK};

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::abuse::{Abuse, BanPolicy};
use super::digest::{Algorithm, Attempt, Credentials, Nonces, Verdict};
use super::msg::{self, ACCEPT, ALLOW, Inbound, Intake, Raw, SUPPORTED, tag_of, uri_of, user_of};
use super::registrar::{Binding, Change, Device, ExpiryPolicy, Outcome, Register, Registrar};
use super::transaction::{ClientOutcome, ServerMatch, Transactions, server_key};
use super::{Peer, Transmit};

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
    /// `sip.local_address`: the address typed by the admin for phones on
    /// this host's own networks; `None` = the address each phone's packets
    /// arrived on.
    pub local_host: Option<String>,
    /// `sip.public_address`: the address typed by the admin for the trunk
    /// and for phones beyond a router; `None` = learned (trunk Via, STUN).
    pub public_host: Option<String>,
    /// sipd's SIP port, put in Via and Contact.
    pub sip_port: u16,
    /// The address used when nothing better is known for a peer: the bound
    /// address, or the one the routing table picks. Never a host name.
    pub default_host: String,
    /// This host's networks (address, prefix length): a peer inside one is
    /// on a link of ours and reaches our local address directly.
    pub local_nets: Vec<(IpAddr, u8)>,
    /// How long a call rings before the caller hears "no answer".
    pub ring_timeout_ms: u64,
    /// The DTMF sequence that toggles recording (`calls.record_dtmf`).
    pub record_dtmf: String,
    /// Where outbound calls go (Twilio's termination URI), when set.
    pub termination: Option<Termination>,
    /// `system.default_country` digits, e.g. "1".
    pub default_country: String,
    pub allow_premium: bool,
    pub allow_international: bool,
    /// Per-device limits on trunk calls (`calls.max_*_per_device`).
    pub call_limits: super::limits::CallLimits,
    /// The SIP trunk's credentials (HA1 only, id [`TRUNK_ID`]), when set.
    pub trunk: Option<Device>,
    /// Addresses the trunk may call from; empty = any.
    pub trunk_ips: Vec<IpAddr>,
    /// How often the trunk gets an OPTIONS (whose answer's Via tells our
    /// public address); 0 = never.
    pub trunk_ping_ms: u64,
    /// System-wide Do Not Disturb (`routing.dnd`): no phone rings for an
    /// internal call (trunk calls meet it in twiliod's rules).
    pub system_dnd: bool,
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
            local_host: None,
            public_host: None,
            sip_port: 5060,
            default_host: "127.0.0.1".into(),
            local_nets: Vec::new(),
            ring_timeout_ms: 30_000,
            record_dtmf: "*1".into(),
            termination: None,
            default_country: "1".into(),
            allow_premium: false,
            allow_international: false,
            call_limits: super::limits::CallLimits::default(),
            trunk: None,
            trunk_ips: Vec::new(),
            trunk_ping_ms: 60_000,
            system_dnd: false,
        }
    }
}

/// The SIP trunk's termination side (outbound calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The host (and port) put in the Request-URI: `sip:+E164@host`.
    pub host: String,
    /// Where the INVITEs are sent (the host resolved).
    pub addr: std::net::SocketAddr,
    pub username: String,
    pub password: String,
    /// This host's address towards `addr` (a routing look-up).
    pub local: Option<IpAddr>,
}

/// The `received` parameter of a Via value (RFC 3261 section 18.2.1).
fn via_received(via: &str) -> Option<IpAddr> {
    let top = via.split(',').next().unwrap_or_default();
    top.split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("received"))
        .and_then(|(_, v)| v.trim().trim_matches(['[', ']']).parse().ok())
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
    /// Something an admin must hear about now: an `alerts` row and an
    /// `admin_alert` notification.
    Alert { kind: &'static str, message: String },
    /// Ask mediad for a port pair; answer with [`Core::media_ready`].
    MediaAllocate { call_id: String },
    /// The call is over: release mediad's ports (and store its stats).
    MediaRelease { call_id: String },
    /// Start (`enabled`) or pause the call's recording.
    MediaRecord { call_id: String, enabled: bool },
    /// Tell mediad about a leg ("a" caller, "b" callee): its SDP address
    /// and codecs, the call being answered, hold.
    MediaUpdate {
        call_id: String,
        leg: &'static str,
        media: Option<super::sdp::LegMedia>,
        established: Option<bool>,
        hold: Option<bool>,
    },
    /// A change to a call's CDR row.
    Cdr(Cdr),
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
    /// New requests refused (INVITE: 503) or dropped because the
    /// transaction table was full.
    pub dropped_overload: u64,
    /// Challenges not sent: the source used up its challenge budget.
    pub challenges_withheld: u64,
    /// Responses that matched a request sipd sent, but came from another
    /// address than the one it went to.
    pub dropped_wrong_source: u64,
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
    /// An SDP body.
    body: Option<String>,
    /// No answer at all, and no transaction kept (see [`Reply::silent`]).
    silent: bool,
    /// The To tag to answer with (a dialog sipd keeps, e.g. a
    /// subscription); a fresh one otherwise.
    to_tag: Option<String>,
}

impl Reply {
    fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reason: reason.into(),
            extra: Vec::new(),
            body: None,
            silent: false,
            to_tag: None,
        }
    }

    fn with_tag(mut self, tag: String) -> Self {
        self.to_tag = Some(tag);
        self
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    /// No answer now: the request went on (a relay) and its answer comes
    /// later on the same server transaction.
    fn deferred() -> Self {
        Self::new(0, "")
    }

    /// No answer, ever: the request is dropped and its transaction
    /// forgotten, so it holds no state.
    fn silent() -> Self {
        Self {
            silent: true,
            ..Self::new(0, "")
        }
    }
}

/// Methods sipd knows but does not serve (RFC 3261 section 8.2.1: 405).
const KNOWN_UNSERVED: &[&str] = &["NOTIFY", "MESSAGE", "PRACK", "REFER", "PUBLISH"];

/// Option tags sipd accepts in `Require`.
const SUPPORTED_TAGS: &[&str] = &["path", "outbound"];

pub struct Core {
    cfg: CoreConfig,
    devices: HashMap<String, Device>,
    extensions: HashMap<String, String>,
    /// Device ids whose owner has Do Not Disturb on.
    dnd: HashSet<i64>,
    txns: Transactions,
    nonces: Nonces,
    abuse: Abuse,
    registrar: Registrar,
    keepalives: HashMap<String, Keepalive>,
    /// Message-waiting subscriptions and the counts they report.
    mwi: mwi::Mwi,
    calls: b2bua::Calls,
    next_keepalive: Option<u64>,
    next_sweep: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Branches, tags and Call-IDs: a CSPRNG keyed from the secret, so
    /// nobody can guess the identifiers of a leg from earlier ones.
    ids: StdRng,
    /// The addresses used towards each peer.
    pub(crate) addrs: AddrBook,
    /// The branch of the last OPTIONS sent to the trunk.
    trunk_ping: Option<String>,
    /// When the next OPTIONS goes to the trunk.
    next_trunk_ping: u64,
    pub stats: Stats,
}

/// How often expired bindings, old nonces and bans are swept.
const SWEEP_EVERY: u64 = 1_000;

impl Core {
    pub fn new(cfg: CoreConfig, secret: [u8; 32]) -> Self {
        let addrs = AddrBook::new(&cfg, None);
        Self {
            nonces: Nonces::new(secret, cfg.nonce_ttl_ms),
            ids: StdRng::from_seed(id_seed(&secret)),
            abuse: Abuse::with_exempt(cfg.ban, trunk_sources(&cfg)),
            registrar: Registrar::new(cfg.expiry),
            cfg,
            devices: HashMap::new(),
            extensions: HashMap::new(),
            dnd: HashSet::new(),
            txns: Transactions::new(),
            keepalives: HashMap::new(),
            mwi: mwi::Mwi::default(),
            calls: b2bua::Calls::default(),
            next_keepalive: None,
            next_sweep: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            addrs,
            trunk_ping: None,
            next_trunk_ping: 0,
            stats: Stats::default(),
        }
    }

    /// Applies changed settings.
    pub fn set_config(&mut self, now: u64, cfg: CoreConfig) {
        self.nonces.set_ttl_ms(cfg.nonce_ttl_ms);
        self.abuse.policy = cfg.ban;
        self.abuse.set_exempt(trunk_sources(&cfg));
        self.registrar.policy = cfg.expiry;
        if cfg.keepalive_interval_ms != self.cfg.keepalive_interval_ms {
            self.next_keepalive = None;
        }
        if cfg.termination != self.cfg.termination || cfg.trunk_ping_ms != self.cfg.trunk_ping_ms {
            // A new trunk: ask it at once what our address looks like.
            self.next_trunk_ping = now;
        }
        self.addrs.configure(&cfg);
        self.cfg = cfg;
        self.schedule_keepalive(now);
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Records a public address learned outside the core (STUN). Returns
    /// true when it changed.
    pub fn learn_public(&mut self, ip: IpAddr, source: AddrSource) -> bool {
        self.addrs.learn_public(ip, source)
    }

    /// The addresses sipd uses towards each kind of peer.
    pub fn addresses(&self) -> &AddrBook {
        &self.addrs
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

    /// The devices whose owner has Do Not Disturb on: internal calls to
    /// them are refused.
    pub fn set_dnd(&mut self, devices: impl IntoIterator<Item = i64>) {
        self.dnd = devices.into_iter().collect();
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
                self.trunk_pong(&peer, &r);
                if !self.txns.on_response(&r.via.branch, r.status, &peer)
                    && !self.b2b_response(now, &peer, &r)
                {
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
        self.b2b_timeout(now);
        self.drain_outcomes(now);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.registrar.sweep(now);
            self.nonces.sweep(now);
            for ip in self.abuse.sweep(now) {
                self.security("sip_ban_lifted", ip, "", "ban expired".into());
            }
        }
        if self.trunk_ping_due(now) {
            self.ping_trunk(now);
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
            self.calls.next_timeout(),
            self.next_keepalive,
            (self.cfg.termination.is_some() && self.cfg.trunk_ping_ms > 0)
                .then_some(self.next_trunk_ping),
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

    fn trunk_ping_due(&self, now: u64) -> bool {
        self.cfg.termination.is_some() && self.cfg.trunk_ping_ms > 0 && now >= self.next_trunk_ping
    }

    /// An OPTIONS to the trunk: its answer's Via `received` is our public
    /// address as the trunk sees it (RFC 3581 section 4).
    fn ping_trunk(&mut self, now: u64) {
        self.next_trunk_ping = now + self.cfg.trunk_ping_ms;
        let Some(t) = self.cfg.termination.clone() else {
            return;
        };
        let peer = Peer::udp(t.addr).with_local(t.local);
        let branch = format!("z9hG4bK{}", self.next_id());
        let data = self.options_request(&format!("sip:{}", t.host), &branch, &peer);
        self.txns
            .send_request(now, &branch, Transmit { peer, data }, 32 * super::T1);
        self.trunk_ping = Some(branch);
    }

    /// The trunk's answer to our OPTIONS, from the trunk's own address.
    fn trunk_pong(&mut self, peer: &Peer, r: &msg::Response) {
        if self.trunk_ping.as_deref() != Some(r.via.branch.as_str())
            || self.cfg.termination.as_ref().map(|t| t.addr) != Some(peer.addr)
        {
            return;
        }
        if let Some(ip) = r.raw.get("via").and_then(via_received) {
            self.addrs.learn_public(ip, AddrSource::TrunkVia);
        }
    }

    fn schedule_keepalive(&mut self, now: u64) {
        if self.cfg.keepalive_interval_ms == 0 {
            self.next_keepalive = None;
        } else if self.next_keepalive.is_none() {
            self.next_keepalive = Some(now + self.cfg.keepalive_interval_ms);
        }
    }

    /// 128 random bits as 32 hex digits, for a branch (after `z9hG4bK`),
    /// a tag or a Call-ID: RFC 3261 sections 8.1.1.4 and 19.3 ask for
    /// cryptographically random tags and Call-IDs, and a guessable one lets
    /// anyone answer, end or redirect a leg.
    fn next_id(&mut self) -> String {
        let mut b = [0u8; 16];
        self.ids.fill_bytes(&mut b);
        hex::encode(b)
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
        // The source address is part of the key as well: a request with the
        // same branch from elsewhere (a forged CANCEL) must neither match
        // the genuine transaction nor pre-empt it.
        let sent_by = format!(
            "{}:{} {}",
            r.via.host,
            r.via.port.unwrap_or(5060),
            peer.addr.ip()
        );
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
            ServerMatch::New if method == "ACK" => {
                self.b2b_ack(now, peer, raw);
            }
            ServerMatch::New => {
                let invite = method == "INVITE";
                if !self.txns.begin_server(now, &key, invite) {
                    self.overloaded(peer, raw, invite);
                    return;
                }
                let reply = self.decide(now, peer, &method, &r, &key);
                if reply.silent {
                    self.txns.forget_server(&key);
                    return;
                }
                if reply.code == 0 {
                    return;
                }
                let tag = match reply.to_tag {
                    Some(ref t) => t.clone(),
                    None => self.next_id(),
                };
                let data = msg::response(
                    raw,
                    peer.addr,
                    reply.code,
                    &reply.reason,
                    &tag,
                    &reply.extra,
                    reply
                        .body
                        .as_deref()
                        .map(|b| ("application/sdp", b.as_bytes())),
                );
                self.txns
                    .respond(now, &key, Transmit { peer, data }, reply.code);
                self.mwi_flush(now);
            }
        }
    }

    /// Every transaction slot waits for an answer: a new INVITE hears 503
    /// with Retry-After (stateless, RFC 3261 section 21.5.4), anything else
    /// is dropped, since its sender retransmits.
    fn overloaded(&mut self, peer: Peer, raw: &Raw, invite: bool) {
        self.stats.dropped_overload += 1;
        tracing::debug!(src = %peer.addr, invite, "transaction table full");
        if invite {
            let tag = self.next_id();
            let extra = [("Retry-After", "5".to_string())];
            let data = msg::response(
                raw,
                peer.addr,
                503,
                "Service Unavailable",
                &tag,
                &extra,
                None,
            );
            self.out.push_back(Transmit { peer, data });
        }
    }

    /// The TU: which final answer a new request gets.
    fn decide(&mut self, now: u64, peer: Peer, method: &str, r: &msg::Request, key: &str) -> Reply {
        let raw = &r.raw;
        let served = matches!(
            method,
            "REGISTER" | "OPTIONS" | "INVITE" | "CANCEL" | "BYE" | "UPDATE" | "INFO" | "SUBSCRIBE"
        );
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
            "SUBSCRIBE" => self.subscribe(now, peer, r),
            "OPTIONS" => Reply::new(200, "OK")
                .with("Allow", ALLOW)
                .with("Accept", ACCEPT)
                .with("Accept-Encoding", "identity")
                .with("Accept-Language", "en")
                .with("Supported", SUPPORTED),
            "INVITE" | "UPDATE" | "INFO" if in_dialog(raw) => {
                self.b2b_in_dialog(now, peer, method, r, key)
            }
            "INVITE" => match self.authenticate(now, peer, r, true) {
                Err(reply) => reply,
                Ok(device) => self.start_call(now, peer, r, key, &device),
            },
            "BYE" => self.b2b_in_dialog(now, peer, method, r, key),
            "CANCEL" => self.b2b_cancel(now, peer, r, key),
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
        let ip = peer.addr.ip();
        let Some(creds) = creds else {
            return Err(self.challenge(now, peer, raw, proxy, false));
        };
        let trunk = self
            .cfg
            .trunk
            .as_ref()
            .filter(|t| proxy && t.username == creds.username)
            .filter(|_| self.cfg.trunk_ips.is_empty() || self.cfg.trunk_ips.contains(&ip))
            .cloned();
        let device = trunk.or_else(|| self.devices.get(&creds.username).cloned());
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
        let attempt = Attempt {
            method,
            request_uri: raw.start.split(' ').nth(1).unwrap_or_default(),
            client: ip,
        };
        let verdict = self.nonces.verify(now, &realm, &attempt, &creds, &ha1);
        if verdict != Verdict::Foreign {
            // The nonce went to this address: the source is genuine.
            self.abuse.challenge_answered(ip);
        }
        match (verdict, device) {
            (Verdict::Ok, Some(d)) if kind == "sip_bad_password" => Ok(d),
            (Verdict::Stale | Verdict::Replay, _) => {
                Err(self.challenge(now, peer, raw, proxy, true))
            }
            (Verdict::Foreign | Verdict::NoQop, _) => {
                Err(self.challenge(now, peer, raw, proxy, false))
            }
            (Verdict::UriMismatch, _) => {
                self.security(
                    "sip_digest_uri_mismatch",
                    ip,
                    &creds.username,
                    format!("{method} from {}", peer.addr),
                );
                Err(Reply::new(400, "Digest URI Mismatch"))
            }
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

    /// A 401/407 with a fresh nonce for `peer`'s address, sent once (see
    /// `Transactions::respond`), or nothing when the source used up its
    /// challenge budget.
    fn challenge(&mut self, now: u64, peer: Peer, req: &Raw, proxy: bool, stale: bool) -> Reply {
        let ip = peer.addr.ip();
        if !self.abuse.take_challenge(ip, now) {
            self.stats.challenges_withheld += 1;
            tracing::debug!(src = %peer.addr, "challenge budget used up");
            return Reply::silent();
        }
        let [md5, sha] = self.nonces.challenges(now, &self.cfg.realm, stale, ip);
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
            .map(|b| (b.device_id, b.contact.clone(), b.target()))
            .collect();
        let timeout = self.cfg.keepalive_interval_ms.max(1_000);
        for (device_id, contact, peer) in targets {
            let branch = format!("z9hG4bK{}", self.next_id());
            let data = self.options_request(&contact, &branch, &peer);
            self.txns
                .send_request(now, &branch, Transmit { peer, data }, timeout);
            self.keepalives
                .insert(branch, Keepalive { device_id, contact });
        }
    }

    fn options_request(&mut self, contact: &str, branch: &str, peer: &Peer) -> Vec<u8> {
        let t = peer.transport;
        let tag = self.next_id();
        let call_id = self.next_id();
        let local = &self.addrs.via_host(peer);
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
            let (key, answered, status) = match o {
                ClientOutcome::Response { key, status } => (key, true, Some(status)),
                ClientOutcome::Timeout { key } => (key, false, None),
            };
            if self.mwi_outcome(&key, status) {
                continue;
            }
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

/// The addresses the trunk signals from, which are never banned: the
/// configured trunk sources and the termination address.
fn trunk_sources(cfg: &CoreConfig) -> Vec<IpAddr> {
    let mut ips = cfg.trunk_ips.clone();
    ips.extend(cfg.termination.as_ref().map(|t| t.addr.ip()));
    ips
}

/// The identifier generator's seed: an HMAC of a label with the secret, so
/// it is independent of the nonce key.
fn id_seed(secret: &[u8; 32]) -> [u8; 32] {
    let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return *secret;
    };
    m.update(b"gosip sip identifiers");
    m.finalize().into_bytes().into()
}

/// A request inside a dialog carries the To tag the dialog got.
fn in_dialog(raw: &Raw) -> bool {
    raw.get("to").and_then(tag_of).is_some()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::T1;
    use crate::sip::digest::ha1;

    const REALM: &str = "gosip.test";
    const T0: u64 = 1_800_000_000_000;

    fn core() -> Core {
        let cfg = CoreConfig {
            realm: REALM.into(),
            ..CoreConfig::default()
        };
        let mut c = Core::new(cfg, [1; 32]);
        let (md5, sha) = ha1("alice", REALM, "pw");
        c.set_devices([Device {
            id: 1,
            username: "alice".into(),
            ha1_md5: md5,
            ha1_sha256: sha,
            realm: REALM.into(),
            extension: Some("101".into()),
            recording: false,
            caller_id: None,
            mwi_unsolicited: false,
        }]);
        c
    }

    fn phone() -> Peer {
        Peer::udp("192.168.1.50:5062".parse().unwrap())
    }

    fn send(c: &mut Core, now: u64, msg: &str) -> Vec<String> {
        c.handle_message(now, phone(), msg.as_bytes());
        drain(c)
    }

    fn drain(c: &mut Core) -> Vec<String> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|t| String::from_utf8(t.data).unwrap())
            .collect()
    }

    /// The trunk's (user "twilio") Proxy-Authorization answering the 407
    /// challenge `ch` for an INVITE to +15550001111, as a header line.
    fn trunk_auth(ch: &str, ha1_md5: &str) -> String {
        let nonce = header(ch, "Proxy-Authenticate")[0]
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let cr = Credentials {
            username: "twilio".into(),
            realm: REALM.into(),
            nonce: nonce.into(),
            uri: "sip:+15550001111@gosip.test".into(),
            qop: "auth".into(),
            nc: "00000001".into(),
            cnonce: "tw".into(),
            ..Default::default()
        };
        format!(
            "Proxy-Authorization: Digest username=\"twilio\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:+15550001111@gosip.test\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"tw\"\r\n",
            cr.expected("INVITE", ha1_md5, Algorithm::Md5)
        )
    }

    fn header<'a>(m: &'a str, name: &str) -> Vec<&'a str> {
        m.split("\r\n")
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    }

    /// Adds a digest answer to `msg` (a request) for the challenge in `resp`.
    fn with_auth(msg: &str, resp: &str, nc: u32, qop: bool) -> String {
        let ch = header(resp, "WWW-Authenticate")[0];
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let method = msg.split(' ').next().unwrap();
        let uri = msg.split(' ').nth(1).unwrap();
        let mut c = Credentials {
            username: "alice".into(),
            realm: REALM.into(),
            nonce: nonce.into(),
            uri: uri.into(),
            ..Default::default()
        };
        if qop {
            c.qop = "auth".into();
            c.nc = format!("{nc:08x}");
            c.cnonce = "abcdef".into();
        }
        let (h, _) = ha1("alice", REALM, "pw");
        let r = c.expected(method, &h, Algorithm::Md5);
        let auth = if qop {
            format!(
                "Authorization: Digest username=\"alice\",realm=\"{REALM}\",nonce=\"{nonce}\",uri=\"{uri}\",response=\"{r}\",algorithm=MD5,qop=auth,nc={},cnonce=\"abcdef\"\r\n",
                c.nc
            )
        } else {
            format!(
                "Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\"\r\n"
            )
        };
        let cut = msg.find("Content-Length").unwrap();
        let mut out = msg.to_string();
        out.insert_str(cut, &auth);
        // A new transaction: new branch, next CSeq.
        out.replacen(";branch=z9hG4bK", ";branch=z9hG4bKauth", 1)
            .replace("CSeq: 1 REGISTER", "CSeq: 2 REGISTER")
            .replace("CSeq: 2001 REGISTER", "CSeq: 2002 REGISTER")
            .replace("CSeq: 15268 REGISTER", "CSeq: 15269 REGISTER")
            .replace("CSeq: 20 REGISTER", "CSeq: 21 REGISTER")
    }

    fn golden(name: &str) -> String {
        let p = format!(
            "{}/testdata/{name}/register.sip",
            env!("CARGO_MANIFEST_DIR")
        );
        String::from_utf8(std::fs::read(p).unwrap()).unwrap()
    }

    fn subscribe(branch: &str, to_tag: &str, expires: u32, event: &str, mailbox: &str) -> String {
        format!(
            "SUBSCRIBE sip:{mailbox}@{REALM} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@{REALM}>;tag=ph1\r\n\
             To: <sip:{mailbox}@{REALM}>{to_tag}\r\n\
             Call-ID: mwi-1@phone\r\n\
             CSeq: 1 SUBSCRIBE\r\n\
             Contact: <sip:alice@192.168.1.50:5062>\r\n\
             Event: {event}\r\n\
             Expires: {expires}\r\n\
             Accept: application/simple-message-summary\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn a_phone_subscribes_to_its_mailbox_and_hears_each_change_until_it_unsubscribes() {
        let mut c = core();
        // Another event package: 489 and the one served.
        let out = send(&mut c, T0, &subscribe("p1", "", 3600, "presence", "alice"));
        assert!(
            out[0].starts_with("SIP/2.0 489 Bad Event\r\n"),
            "{}",
            out[0]
        );
        assert_eq!(header(&out[0], "Allow-Events"), ["message-summary"]);
        // Authenticated like a REGISTER.
        let sub = subscribe("s1", "", 3600, "message-summary", "alice");
        let out = send(&mut c, T0 + 1, &sub);
        assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
        let out = send(&mut c, T0 + 2, &with_auth(&sub, &out[0], 1, true));
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
        assert_eq!(header(&out[0], "Expires"), ["3600"]);
        let tag = header(&out[0], "To")[0]
            .split("tag=")
            .nth(1)
            .unwrap()
            .to_owned();
        // The first NOTIFY follows at once: nothing waiting.
        let n = &out[1];
        assert!(
            n.starts_with("NOTIFY sip:alice@192.168.1.50:5062 SIP/2.0\r\n"),
            "{n}"
        );
        assert_eq!(header(n, "Event"), ["message-summary"]);
        assert_eq!(header(n, "Call-ID"), ["mwi-1@phone"]);
        assert_eq!(header(n, "To"), ["<sip:alice@gosip.test>;tag=ph1"]);
        assert!(header(n, "From")[0].ends_with(&format!("tag={tag}")));
        assert!(header(n, "Subscription-State")[0].starts_with("active;expires="));
        assert!(n.ends_with("Messages-Waiting: no\r\nMessage-Account: sip:alice@gosip.test\r\nVoice-Message: 0/0 (0/0)\r\n"), "{n}");
        assert_eq!(c.mwi_subscriptions(), 1);
        // Two new voicemails and an old one: the light goes on.
        c.set_voicemail_counts(T0 + 3, [(1, (2, 1))].into());
        let out = drain(&mut c);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(header(&out[0], "CSeq"), ["2 NOTIFY"]);
        assert!(out[0].contains("Messages-Waiting: yes\r\n"), "{}", out[0]);
        assert!(
            out[0].contains("Voice-Message: 2/1 (0/0)\r\n"),
            "{}",
            out[0]
        );
        // The same counts again: nothing new is sent.
        c.set_voicemail_counts(T0 + 4, [(1, (2, 1))].into());
        assert!(drain(&mut c).is_empty());
        // Somebody else's mailbox with alice's credentials: 403.
        let other = subscribe("o1", "", 3600, "message-summary", "bob");
        let out = send(&mut c, T0 + 5, &other);
        let out = send(&mut c, T0 + 6, &with_auth(&other, &out[0], 2, true));
        assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
        // A refresh from another address is not this dialog: 481.
        let unsub = subscribe("u1", &format!(";tag={tag}"), 0, "message-summary", "alice");
        c.handle_message(
            T0 + 7,
            Peer::udp("192.168.1.99:5062".parse().unwrap()),
            unsub.as_bytes(),
        );
        let out = drain(&mut c);
        assert!(out[0].starts_with("SIP/2.0 481 "), "{}", out[0]);
        // Unsubscribing in the dialog: 200, a final NOTIFY, and it is gone.
        let out = send(
            &mut c,
            T0 + 8,
            &subscribe("u2", &format!(";tag={tag}"), 0, "message-summary", "alice"),
        );
        assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
        let last = out
            .iter()
            .find(|m| m.starts_with("NOTIFY "))
            .expect("a final NOTIFY");
        assert!(
            header(last, "Subscription-State")[0].starts_with("terminated"),
            "{last}"
        );
        assert_eq!(c.mwi_subscriptions(), 0);
    }

    #[test]
    fn a_phone_that_never_subscribes_hears_of_changes_only_in_unsolicited_mode() {
        for unsolicited in [false, true] {
            let mut c = core();
            let (md5, sha) = ha1("alice", REALM, "pw");
            c.set_devices([Device {
                id: 1,
                username: "alice".into(),
                ha1_md5: md5,
                ha1_sha256: sha,
                realm: REALM.into(),
                extension: Some("101".into()),
                recording: false,
                caller_id: None,
                mwi_unsolicited: unsolicited,
            }]);
            let msg = golden("gxp1760w");
            let out = send(&mut c, T0, &msg);
            let out = send(&mut c, T0 + 1, &with_auth(&msg, &out[0], 1, true));
            assert!(out[0].starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0]);
            c.set_voicemail_counts(T0 + 2, [(1, (1, 0))].into());
            let out = drain(&mut c);
            if !unsolicited {
                assert!(out.is_empty(), "{out:#?}");
                continue;
            }
            assert_eq!(out.len(), 1, "{out:#?}");
            let n = &out[0];
            assert!(
                n.starts_with("NOTIFY sip:alice@192.168.1.50:5062 SIP/2.0\r\n"),
                "{n}"
            );
            assert_eq!(header(n, "Event"), ["message-summary"]);
            assert!(
                n.contains("Messages-Waiting: yes\r\n")
                    && n.contains("Voice-Message: 1/0 (0/0)\r\n"),
                "{n}"
            );
            // Unchanged counts send nothing more.
            c.set_voicemail_counts(T0 + 3, [(1, (1, 0))].into());
            assert!(drain(&mut c).is_empty());
        }
    }

    #[test]
    fn a_subscription_nobody_refreshes_ends_with_a_terminated_notify() {
        let mut c = core();
        let sub = subscribe("s1", "", 60, "message-summary", "101");
        let out = send(&mut c, T0, &sub);
        let out = send(&mut c, T0 + 1, &with_auth(&sub, &out[0], 1, true));
        assert!(
            out[0].starts_with("SIP/2.0 200 OK\r\n"),
            "the extension is the mailbox too: {}",
            out[0]
        );
        assert_eq!(header(&out[0], "Expires"), ["60"]);
        let out = send(
            &mut c,
            T0 + 2,
            &subscribe("s2", "", 10, "message-summary", "alice"),
        );
        assert!(out[0].starts_with("SIP/2.0 423 "), "{}", out[0]);
        assert_eq!(header(&out[0], "Min-Expires"), ["60"]);
        c.set_voicemail_counts(T0 + 61_000, HashMap::new());
        let out = drain(&mut c);
        let last = out
            .iter()
            .find(|m| m.starts_with("NOTIFY "))
            .expect("a final NOTIFY");
        assert_eq!(
            header(last, "Subscription-State"),
            ["terminated;reason=timeout"]
        );
        assert_eq!(c.mwi_subscriptions(), 0);
    }

    #[test]
    fn every_golden_client_register_gets_challenged_then_bound() {
        let cases = [
            ("gxp1760w", "sip:alice@192.168.1.50:5062", 3600, true),
            (
                "baresip",
                "sip:alice-0x560bb706e490@192.168.1.60:56138",
                300,
                true,
            ),
            (
                "zoiper",
                "sip:alice@192.168.1.70:52044;rinstance=0e1a3f5d7c9b2e4a;transport=UDP",
                60,
                true,
            ),
            (
                "linphone",
                "sip:alice@192.168.1.80;transport=udp",
                3600,
                true,
            ),
        ];
        for (name, contact, expires, qop) in cases {
            let mut c = core();
            let msg = golden(name);
            let out = send(&mut c, T0, &msg);
            assert_eq!(out.len(), 1, "{name}");
            assert!(
                out[0].starts_with("SIP/2.0 401 Unauthorized\r\n"),
                "{name}: {}",
                out[0]
            );
            let out = send(&mut c, T0 + 10, &with_auth(&msg, &out[0], 1, qop));
            assert!(
                out[0].starts_with("SIP/2.0 200 OK\r\n"),
                "{name}: {}",
                out[0]
            );
            assert_eq!(
                header(&out[0], "Contact"),
                vec![format!("<{contact}>;expires={expires}").as_str()],
                "{name}"
            );
            let stored: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(
                matches!(&stored[..], [Event::Binding(Change::Upsert(b))] if b.contact == contact && b.source == phone()),
                "{name}: {stored:?}"
            );
        }
    }

    #[test]
    fn a_retransmission_is_answered_from_the_transaction_until_timer_j() {
        let mut c = core();
        let msg = golden("gxp1760w");
        let first = send(&mut c, T0, &msg);
        let again = send(&mut c, T0 + T1, &msg);
        assert_eq!(first, again, "same 401, same nonce and tag");
        assert_eq!(c.stats.retransmissions_absorbed, 1);
        // After Timer J (64*T1 on UDP) the same bytes are a new request.
        c.handle_timeout(T0 + 64 * T1);
        let later = send(&mut c, T0 + 64 * T1 + 1, &msg);
        assert_ne!(first, later);
    }

    #[test]
    fn a_407_to_an_unauthenticated_invite_is_sent_once_and_never_retransmitted() {
        let mut c = core();
        let invite = "INVITE sip:101@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKinv1\r\nFrom: <sip:alice@gosip.test>;tag=a\r\nTo: <sip:101@gosip.test>\r\nCall-ID: inv1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let first = send(&mut c, T0, invite);
        assert_eq!(first.len(), 1);
        assert!(first[0].starts_with("SIP/2.0 407 "));
        // 40 s of fake time, 10 ms steps: nothing more goes out.
        let mut sent = 0;
        for t in (T0..T0 + 40_000).step_by(10) {
            c.handle_timeout(t);
            sent += drain(&mut c).len();
        }
        assert_eq!(sent, 0, "no Timer G retransmission of a challenge");
        // A retransmitted INVITE gets the stored 407 again, one for one.
        let mut c = core();
        let a = send(&mut c, T0, invite);
        let b = send(&mut c, T0 + T1, invite);
        assert_eq!(a, b);
        let ack = invite
            .replace("INVITE sip", "ACK sip")
            .replace("1 INVITE", "1 ACK");
        assert!(send(&mut c, T0 + 2 * T1, &ack).is_empty());
    }

    #[test]
    fn a_forged_source_gets_at_most_its_challenge_budget() {
        let mut c = core();
        let mut challenges = 0;
        for i in 0..(crate::sip::abuse::CHALLENGE_BUDGET + 100) {
            let m = golden("gxp1760w")
                .replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKf{i}"));
            challenges += send(&mut c, T0 + u64::from(i), &m).len();
        }
        assert_eq!(challenges, crate::sip::abuse::CHALLENGE_BUDGET as usize);
        assert_eq!(c.stats.challenges_withheld, 100);
        // Its next window starts afresh.
        let later = T0 + crate::sip::abuse::CHALLENGE_WINDOW_MS + 1_000;
        let m = golden("gxp1760w").replace("branch=z9hG4bK1804471765", "branch=z9hG4bKnext");
        assert_eq!(send(&mut c, later, &m).len(), 1);
    }

    #[test]
    fn a_register_answered_without_qop_is_challenged_again_not_accepted() {
        let mut c = core();
        let msg = golden("gxp1760w");
        let ch = send(&mut c, T0, &msg);
        let out = send(&mut c, T0 + 10, &with_auth(&msg, &ch[0], 1, false));
        assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
        assert_eq!(c.registrar().count(), 0);
        assert_eq!(c.stats.auth_failures, 0);
    }

    #[test]
    fn a_digest_answer_for_another_uri_is_refused() {
        let mut c = core();
        let msg = golden("gxp1760w");
        let ch = send(&mut c, T0, &msg);
        let good = with_auth(&msg, &ch[0], 1, true);
        let uri = msg.split(' ').nth(1).unwrap();
        let moved = good.replacen(uri, "sip:elsewhere.test", 1);
        let out = send(&mut c, T0 + 10, &moved);
        assert!(out[0].starts_with("SIP/2.0 400 "), "{}", out[0]);
        assert_eq!(c.registrar().count(), 0);
        let out = send(
            &mut c,
            T0 + 20,
            &good.replace("z9hG4bKauth", "z9hG4bKauth2"),
        );
        assert!(out[0].starts_with("SIP/2.0 200 "), "{}", out[0]);
    }

    #[test]
    fn a_replayed_digest_answer_is_challenged_again() {
        let mut c = core();
        let msg = golden("gxp1760w");
        let ch = send(&mut c, T0, &msg);
        let good = with_auth(&msg, &ch[0], 1, true);
        assert!(send(&mut c, T0 + 10, &good)[0].starts_with("SIP/2.0 200 "));
        // The same answer in a new transaction (same nc): not accepted.
        let replay = good.replace("z9hG4bKauth", "z9hG4bKreplay");
        let out = send(&mut c, T0 + 20, &replay);
        assert!(out[0].starts_with("SIP/2.0 401 "), "{}", out[0]);
    }

    #[test]
    fn failures_with_a_nonce_sent_elsewhere_never_ban() {
        let mut c = core();
        let msg = golden("gxp1760w");
        // The nonce went to 192.168.1.50; the forged failures claim
        // another source, which never received it.
        let ch = send(&mut c, T0, &msg);
        let victim = Peer {
            addr: "198.51.100.20:5060".parse().unwrap(),
            ..phone()
        };
        for i in 0..100u64 {
            let m = msg.replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKs{i}"));
            let bad = with_auth(&m, &ch[0], 1, true).replace("response=\"", "response=\"0");
            c.handle_message(T0 + i, victim, bad.as_bytes());
            drain(&mut c);
        }
        assert!(!c.is_banned(victim.addr.ip(), T0 + 100));
        assert_eq!(c.stats.auth_failures, 0);
    }

    #[test]
    fn sipd_identifiers_are_128_random_bits() {
        let mut c = core();
        let opt = "OPTIONS sip:gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKo1\r\nFrom: <sip:x@gosip.test>;tag=o\r\nTo: <sip:gosip.test>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let tags: Vec<String> = (0..3)
            .map(|i| {
                let r = send(
                    &mut c,
                    T0 + i,
                    &opt.replace("z9hG4bKo1", &format!("z9hG4bKo{i}")),
                );
                tag_of(header(&r[0], "To")[0]).unwrap().to_string()
            })
            .collect();
        for t in &tags {
            assert_eq!(t.len(), 32, "{t}");
            assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        }
        // Successive ids share no counter: they differ in most positions.
        let same = tags[0]
            .bytes()
            .zip(tags[1].bytes())
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 12, "{tags:?}");
        // Another secret gives other ids.
        let mut other = Core::new(c.config().clone(), [2; 32]);
        other.handle_message(T0, phone(), opt.as_bytes());
        let o = drain(&mut other);
        assert_ne!(tag_of(header(&o[0], "To")[0]).unwrap(), tags[0]);
    }

    #[test]
    fn keepalive_options_retransmit_then_time_out_and_mark_the_device_offline() {
        let mut c = core();
        c.set_config(
            T0,
            CoreConfig {
                realm: REALM.into(),
                keepalive_interval_ms: 10_000,
                keepalive_failures: 2,
                ..CoreConfig::default()
            },
        );
        let msg = golden("gxp1760w");
        let ch = send(&mut c, T0, &msg);
        send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
        while c.poll_event().is_some() {}
        let mut now = T0;
        let mut offline_at = None;
        let mut options = 0;
        while now < T0 + 60_000 && offline_at.is_none() {
            now += 100;
            c.handle_timeout(now);
            options += drain(&mut c)
                .iter()
                .filter(|m| m.starts_with("OPTIONS sip:alice@192.168.1.50:5062 SIP/2.0"))
                .count();
            while let Some(e) = c.poll_event() {
                if let Event::Binding(Change::Online(b)) = e {
                    assert!(!b.online);
                    offline_at = Some(now);
                }
            }
        }
        // Two rounds (at 10 s and 20 s), each timing out after 10 s.
        assert_eq!(offline_at, Some(T0 + 30_000));
        assert!(options > 2, "Timer E retransmissions were sent: {options}");
    }

    #[test]
    fn an_answered_keepalive_keeps_the_device_online() {
        let mut c = core();
        c.set_config(
            T0,
            CoreConfig {
                realm: REALM.into(),
                keepalive_interval_ms: 10_000,
                keepalive_failures: 1,
                ..CoreConfig::default()
            },
        );
        let msg = golden("baresip");
        let ch = send(&mut c, T0, &msg);
        send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
        while c.poll_event().is_some() {}
        c.handle_timeout(T0 + 10_000);
        let out = drain(&mut c);
        let opt = &out[0];
        let via = header(opt, "Via")[0];
        let reply = format!(
            "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {}\r\nTo: {};tag=x\r\nCall-ID: {}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            header(opt, "From")[0],
            header(opt, "To")[0],
            header(opt, "Call-ID")[0]
        );
        send(&mut c, T0 + 10_050, &reply);
        let ev: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(
            matches!(&ev[..], [Event::Binding(Change::Online(b))] if b.online && b.last_seen == T0 + 10_050)
        );
        c.handle_timeout(T0 + 19_999);
        assert!(c.registrar().bindings_of(1)[0].online);
    }

    #[test]
    fn a_device_saved_under_another_realm_cannot_authenticate() {
        let mut c = core();
        let (md5, sha) = ha1("alice", "old.realm", "pw");
        c.set_devices([Device {
            id: 1,
            username: "alice".into(),
            ha1_md5: md5,
            ha1_sha256: sha,
            realm: "old.realm".into(),
            extension: None,
            recording: false,
            caller_id: None,
            mwi_unsolicited: false,
        }]);
        let msg = golden("gxp1760w");
        let ch = send(&mut c, T0, &msg);
        let out = send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
        assert!(out[0].starts_with("SIP/2.0 403 "));
        assert!(matches!(
            c.poll_event(),
            Some(Event::Security {
                kind: "sip_realm_mismatch",
                ..
            })
        ));
    }

    #[test]
    fn a_device_may_not_register_another_users_address() {
        let mut c = core();
        let msg = golden("gxp1760w").replace("To: <sip:alice@", "To: <sip:bob@");
        let ch = send(&mut c, T0, &msg);
        let out = send(&mut c, T0, &with_auth(&msg, &ch[0], 1, true));
        assert!(out[0].starts_with("SIP/2.0 403 "), "{}", out[0]);
        assert_eq!(c.registrar().count(), 0);
    }

    #[test]
    fn a_ban_is_lifted_after_its_duration_with_an_event() {
        let mut c = core();
        let msg = golden("gxp1760w");
        for i in 0..10u64 {
            let m = msg.replace("branch=z9hG4bK1804471765", &format!("branch=z9hG4bKx{i}"));
            let ch = send(&mut c, T0 + i, &m);
            let bad = with_auth(&m, &ch[0], 1, true).replace("response=\"", "response=\"0");
            let out = send(&mut c, T0 + i, &bad);
            assert!(out[0].starts_with("SIP/2.0 403 "));
        }
        assert!(c.is_banned(phone().addr.ip(), T0 + 10));
        assert!(
            send(&mut c, T0 + 20, &msg).is_empty(),
            "banned traffic is ignored"
        );
        let kinds: Vec<_> = std::iter::from_fn(|| c.poll_event())
            .filter_map(|e| match e {
                Event::Security { kind, .. } => Some(kind),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "sip_bad_password").count(),
            10
        );
        assert_eq!(kinds.last(), Some(&"sip_ban"));
        c.handle_timeout(T0 + 9 + 900_000);
        assert!(matches!(
            c.poll_event(),
            Some(Event::Security {
                kind: "sip_ban_lifted",
                ..
            })
        ));
        assert_eq!(send(&mut c, T0 + 900_100, &msg).len(), 1);
    }

    mod calls {
        use super::*;

        fn peer(a: &str) -> Peer {
            Peer::udp(a.parse().unwrap())
        }

        const A: &str = "192.168.1.50:5062";
        const B1: &str = "192.168.1.61:5060";
        const B2: &str = "192.168.1.62:5060";
        const SDP: &str = "v=0\r\no=a 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

        /// A core with alice (101) calling and bob (102) registered at `contacts`.
        fn setup(contacts: &[&str]) -> Core {
            let mut c = core();
            let (md5, sha) = ha1("bob", REALM, "pw");
            let mut devices = vec![c.devices["alice"].clone()];
            devices.push(Device {
                id: 2,
                username: "bob".into(),
                ha1_md5: md5,
                ha1_sha256: sha,
                realm: REALM.into(),
                extension: Some("102".into()),
                recording: false,
                caller_id: None,
                mwi_unsolicited: false,
            });
            c.set_devices(devices);
            for a in contacts {
                c.restore(Binding {
                    device_id: 2,
                    contact: format!("sip:bob@{a}"),
                    source: peer(a),
                    user_agent: String::new(),
                    call_id: String::new(),
                    cseq: 1,
                    expires_at: T0 + 3_600_000,
                    online: true,
                    last_seen: T0,
                    missed: 0,
                });
            }
            c
        }

        fn invite(cseq: u32, auth: &str) -> String {
            invite_to("102", cseq, auth, SDP)
        }

        /// Alice's INVITE to `dialed` with `sdp` (empty: a late offer).
        fn invite_to(dialed: &str, cseq: u32, auth: &str, sdp: &str) -> String {
            let body = if sdp.is_empty() {
                "Content-Length: 0\r\n\r\n".to_string()
            } else {
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            };
            format!(
                "INVITE sip:{dialed}@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa{cseq};rport\r\nMax-Forwards: 70\r\n\
                 From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:{dialed}@gosip.test>\r\nCall-ID: call1\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:alice@{A}>\r\n{auth}{body}"
            )
        }

        fn out(c: &mut Core) -> Vec<(String, String)> {
            std::iter::from_fn(|| c.poll_transmit())
                .map(|t| (t.peer.addr.to_string(), String::from_utf8(t.data).unwrap()))
                .collect()
        }

        /// Places the call: 407, authenticated INVITE, 100, media ports.
        /// Returns the INVITEs sent to the B contacts.
        fn place(c: &mut Core) -> Vec<(String, String)> {
            place_to(c, "102", SDP, "internal", "")
        }

        /// [`place`] for any number, offer and CDR direction.
        fn place_to(
            c: &mut Core,
            dialed: &str,
            sdp: &str,
            direction: &str,
            extra: &str,
        ) -> Vec<(String, String)> {
            let invite =
                |cseq: u32, auth: &str| invite_to(dialed, cseq, &format!("{extra}{auth}"), sdp);
            c.handle_message(T0, peer(A), invite(1, "").as_bytes());
            let ch = out(c).remove(0).1;
            assert!(ch.starts_with("SIP/2.0 407 "));
            // The phone ACKs the 407 (same branch), ending Timer G.
            let to = header(&ch, "To")[0];
            let ack = format!(
                "ACK sip:{dialed}@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa1;rport\r\nMax-Forwards: 70\r\n\
                 From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: {to}\r\nCall-ID: call1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
            );
            c.handle_message(T0, peer(A), ack.as_bytes());
            assert!(out(c).is_empty());
            let hdr = header(&ch, "Proxy-Authenticate")[0];
            let nonce = hdr
                .split("nonce=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let cr = Credentials {
                username: "alice".into(),
                realm: REALM.into(),
                nonce: nonce.into(),
                uri: format!("sip:{dialed}@gosip.test"),
                qop: "auth".into(),
                nc: "00000001".into(),
                cnonce: "x".into(),
                ..Default::default()
            };
            let (h, _) = ha1("alice", REALM, "pw");
            let auth = format!(
                "Proxy-Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:{dialed}@gosip.test\", response=\"{}\", qop=auth, nc=00000001, cnonce=\"x\"\r\n",
                cr.expected("INVITE", &h, Algorithm::Md5)
            );
            c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
            let o = out(c);
            assert!(o[0].1.starts_with("SIP/2.0 100 Trying"), "{}", o[0].1);
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(
                ev.iter()
                    .any(|e| matches!(e, Event::MediaAllocate { call_id } if call_id == "call1"))
            );
            assert!(
                ev.iter().any(
                    |e| matches!(e, Event::Cdr(Cdr::Start { direction: d, .. }) if *d == direction)
                ),
                "{ev:?}"
            );
            c.media_ready(T0 + 2, "call1", Some((20000, 20002)));
            out(c)
        }

        #[test]
        fn an_internal_call_to_a_device_on_do_not_disturb_is_refused_with_480() {
            let mut c = setup(&[B1]);
            c.set_dnd([2]);
            c.handle_message(T0, peer(A), invite(1, "").as_bytes());
            let ch = out(&mut c).remove(0).1;
            let hdr = header(&ch, "Proxy-Authenticate")[0];
            let nonce = hdr
                .split("nonce=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let cr = Credentials {
                username: "alice".into(),
                realm: REALM.into(),
                nonce: nonce.into(),
                uri: "sip:102@gosip.test".into(),
                qop: "auth".into(),
                nc: "00000001".into(),
                cnonce: "x".into(),
                ..Default::default()
            };
            let (h, _) = ha1("alice", REALM, "pw");
            let auth = format!(
                "Proxy-Authorization: Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:102@gosip.test\", response=\"{}\", qop=auth, nc=00000001, cnonce=\"x\"\r\n",
                cr.expected("INVITE", &h, Algorithm::Md5)
            );
            c.handle_message(T0 + 1, peer(A), invite(2, &auth).as_bytes());
            let o = out(&mut c);
            let answer = find(&o, A, "SIP/2.0 480 ");
            assert!(
                header(&answer, "Warning")[0].contains("do not disturb"),
                "{answer}"
            );
            assert!(
                !o.iter().any(|(p, _)| p == B1),
                "bob's phone does not ring: {o:?}"
            );
            // With DND off again the same call rings.
            let mut c = setup(&[B1]);
            c.set_dnd([]);
            find(&place(&mut c), B1, "INVITE ");
        }

        #[test]
        fn the_device_that_answers_an_inbound_call_is_reported_with_the_answer() {
            let answered = |c: &mut Core| {
                std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
                    Event::Cdr(Cdr::Answered { device_id, .. }) => Some(device_id),
                    _ => None,
                })
            };
            let mut c = setup(&[B1]);
            let inv = from_trunk(&mut c, "in1", "<sip:+15557654321@twilio.test>", "");
            c.handle_message(
                T0 + 3,
                peer(B1),
                reply(&inv, 200, "b1", Some(SDP)).as_bytes(),
            );
            assert_eq!(answered(&mut c), Some(Some(2)));
            // An internal call stays the caller's.
            let mut c = setup(&[B1]);
            let inv = find(&place(&mut c), B1, "INVITE ");
            c.handle_message(
                T0 + 3,
                peer(B1),
                reply(&inv, 200, "b1", Some(SDP)).as_bytes(),
            );
            assert_eq!(answered(&mut c), Some(None));
        }

        /// A response from a B contact to the INVITE (or CANCEL) it got.
        fn reply(req: &str, code: u16, tag: &str, sdp: Option<&str>) -> String {
            let mut r = format!("SIP/2.0 {code} X\r\n");
            for l in req.split("\r\n") {
                let low = l.to_ascii_lowercase();
                if low.starts_with("via:")
                    || low.starts_with("from:")
                    || low.starts_with("call-id:")
                    || low.starts_with("cseq:")
                {
                    r.push_str(l);
                    r.push_str("\r\n");
                } else if low.starts_with("to:") {
                    r.push_str(&format!("{l};tag={tag}\r\n"));
                }
            }
            r.push_str("Contact: <sip:bob@192.168.1.62:5060>\r\n");
            match sdp {
                Some(b) => r.push_str(&format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                )),
                None => r.push_str("Content-Length: 0\r\n\r\n"),
            }
            r
        }

        /// Alice's ACK (CSeq `cseq`) of a 2xx, with `sdp` when not empty.
        fn ack_a(c: &mut Core, now: u64, branch: &str, cseq: u32, to_tag: &str, sdp: &str) {
            let body = if sdp.is_empty() {
                "Content-Length: 0\r\n\r\n".to_string()
            } else {
                format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            };
            let ack = format!(
                "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{branch}\r\nFrom: \"Alice\" <sip:alice@gosip.test>;tag=at\r\n\
                 To: <sip:102@gosip.test>;tag={to_tag}\r\nCall-ID: call1\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70\r\n{body}"
            );
            c.handle_message(now, peer(A), ack.as_bytes());
        }

        fn cdr_end(c: &mut Core) -> Option<&'static str> {
            std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
                Event::Cdr(Cdr::End { disposition, .. }) => Some(disposition),
                _ => None,
            })
        }

        #[test]
        fn outbound_numbers_are_normalized_and_premium_or_international_refused_unless_allowed() {
            let mut c = setup(&[B1]);
            let mut cfg = c.config().clone();
            let code = |c: &Core, n: &str, dev: &Device| match c.outbound_number(n, dev) {
                Ok(n) => n,
                Err(r) => r.code.to_string(),
            };
            let mut alice = c.devices["alice"].clone();
            assert_eq!(code(&c, "5551234567", &alice), "503"); // no trunk
            cfg.termination = Some(Termination {
                host: "t.pstn.twilio.com".into(),
                addr: "127.0.0.1:5099".parse().unwrap(),
                username: "u".into(),
                password: "p".into(),
                local: None,
            });
            c.set_config(T0, cfg.clone());
            assert_eq!(code(&c, "5551234567", &alice), "403"); // no DID
            alice.caller_id = Some("+15550001111".into());
            assert_eq!(code(&c, "5551234567", &alice), "+15551234567");
            assert_eq!(code(&c, "1-555-123-4567", &alice), "+15551234567");
            assert_eq!(code(&c, "+15551234567", &alice), "+15551234567");
            assert_eq!(code(&c, "19005551234", &alice), "403");
            assert_eq!(code(&c, "+12129761234", &alice), "403");
            assert_eq!(code(&c, "876-555-1234", &alice), "403");
            assert_eq!(code(&c, "011442079460000", &alice), "403");
            assert_eq!(code(&c, "12", &alice), "404");
            cfg.allow_premium = true;
            cfg.allow_international = true;
            c.set_config(T0, cfg);
            assert_eq!(code(&c, "19005551234", &alice), "+19005551234");
            assert_eq!(code(&c, "011442079460000", &alice), "+442079460000");
        }

        #[test]
        fn each_legs_sdp_goes_to_mediad_and_star_one_toggles_the_recording() {
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(ev.iter().any(|e| matches!(e,
                Event::MediaUpdate { leg: "a", media: Some(m), established: None, .. }
                    if m.rtp == "192.168.1.50:4000" && m.codecs.len() == 3)));
            // DTMF before the answer does nothing.
            c.dtmf("call1", "a", "*");
            c.dtmf("call1", "a", "1");
            let answer = SDP
                .replace("4000", "6000")
                .replace("192.168.1.50", "192.168.1.61");
            c.handle_message(
                T0 + 20,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(&answer)).as_bytes(),
            );
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(ev.iter().any(|e| matches!(e,
                Event::MediaUpdate { leg: "b", media: Some(m), hold: Some(false), .. }
                    if m.rtp == "192.168.1.61:6000")));
            assert!(!ev.iter().any(|e| matches!(e, Event::MediaRecord { .. })));
            let ok = find(&out(&mut c), A, "SIP/2.0 200");
            let a_tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
            ack_a(&mut c, T0 + 30, "ackx", 2, &a_tag, "");
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(ev.iter().any(|e| matches!(
                e,
                Event::MediaUpdate {
                    leg: "a",
                    established: Some(true),
                    ..
                }
            )));
            let record = |c: &mut Core| {
                std::iter::from_fn(|| c.poll_event())
                    .filter_map(|e| match e {
                        Event::MediaRecord { enabled, .. } => Some(enabled),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            };
            // Digits of one leg only: "*" on a, "1" on b is no match.
            c.dtmf("call1", "a", "*");
            c.dtmf("call1", "b", "1");
            assert!(record(&mut c).is_empty());
            for d in ["5", "*", "1"] {
                c.dtmf("call1", "b", d);
            }
            assert_eq!(record(&mut c), vec![true]);
            assert!(c.calls()[0].recording);
            c.dtmf("call1", "a", "1");
            assert_eq!(record(&mut c), vec![false]);
            assert!(c.set_recording("call1", true));
            assert!(!c.set_recording("nope", true));
            assert_eq!(record(&mut c), vec![true]);
        }

        #[test]
        fn a_call_forks_to_every_contact_and_the_first_200_wins() {
            let mut c = setup(&[B1, B2]);
            let invites = place(&mut c);
            assert_eq!(invites.len(), 2);
            assert_eq!(invites[0].0, B1);
            assert_eq!(invites[1].0, B2);
            for (_, m) in &invites {
                assert!(
                    m.contains("m=audio 20002 RTP/AVP 0 8 101\r\nc=IN IP4 127.0.0.1"),
                    "{m}"
                );
                assert!(m.contains("From: \"Alice\" <sip:101@gosip.test>"), "{m}");
            }
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 180, "b1", None).as_bytes(),
            );
            let o = out(&mut c);
            assert!(o[0].1.starts_with("SIP/2.0 180 Ringing") && o[0].0 == A);
            let answer = SDP.replace("4000", "6000");
            c.handle_message(
                T0 + 20,
                peer(B2),
                reply(&invites[1].1, 200, "b2", Some(&answer)).as_bytes(),
            );
            let o = out(&mut c);
            let to = |a: &str, start: &str| o.iter().any(|(p, m)| p == a && m.starts_with(start));
            assert!(to(B2, "ACK sip:bob@192.168.1.62:5060 SIP/2.0"), "{o:?}");
            assert!(to(B1, "CANCEL sip:bob@192.168.1.61:5060 SIP/2.0"), "{o:?}");
            let ok = &o.iter().find(|(p, _)| p == A).unwrap().1;
            assert!(
                ok.starts_with("SIP/2.0 200 OK") && ok.contains("m=audio 20000 RTP/AVP 0 8 101"),
                "{ok}"
            );
            // The 200 is re-sent until the caller ACKs it.
            c.handle_timeout(T0 + 20 + T1);
            assert!(
                out(&mut c)
                    .iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
            );
            let ack = format!(
                "ACK sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKack\r\nFrom: <sip:alice@gosip.test>;tag=at\r\nTo: {}\r\nCall-ID: call1\r\nCSeq: 2 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                header(ok, "To")[0]
            );
            c.handle_message(T0 + 700, peer(A), ack.as_bytes());
            c.handle_timeout(T0 + 20 + 10 * T1);
            let o = out(&mut c);
            assert!(o.iter().all(|(p, _)| p != A), "no 200 after the ACK: {o:?}");
            // The cancelled branch's 487 is ACKed.
            c.handle_message(
                T0 + 800,
                peer(B1),
                reply(&invites[0].1, 487, "b1", None).as_bytes(),
            );
            assert!(
                out(&mut c)
                    .iter()
                    .any(|(p, m)| p == B1 && m.starts_with("ACK sip:bob@192.168.1.61:5060"))
            );
            // The caller hangs up: 200 to it, BYE to the callee.
            let bye = ack
                .replace("ACK sip", "BYE sip")
                .replace("2 ACK", "3 BYE")
                .replace("z9hG4bKack", "z9hG4bKbye");
            c.handle_message(T0 + 5_000, peer(A), bye.as_bytes());
            let o = out(&mut c);
            assert!(
                o.iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 200 OK"))
            );
            assert!(
                o.iter()
                    .any(|(p, m)| p == B2 && m.starts_with("BYE sip:bob@192.168.1.62:5060"))
            );
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(
                ev.iter().any(|e| matches!(
                    e,
                    Event::Cdr(Cdr::End {
                        disposition: "answered",
                        duration_s: 4,
                        ..
                    })
                )),
                "{ev:?}"
            );
            assert!(ev.iter().any(|e| matches!(e, Event::MediaRelease { .. })));
            assert!(c.calls().is_empty());
        }

        #[test]
        fn a_trunk_invite_authenticated_with_the_trunk_credentials_rings_the_named_devices() {
            let mut c = setup(&[B1, B2]);
            let (md5, sha) = ha1("twilio", REALM, "trunkpw");
            c.set_config(
                T0,
                CoreConfig {
                    realm: REALM.into(),
                    trunk: Some(Device {
                        id: TRUNK_ID,
                        username: "twilio".into(),
                        ha1_md5: md5.clone(),
                        ha1_sha256: sha,
                        realm: REALM.into(),
                        extension: None,
                        recording: false,
                        caller_id: None,
                        mwi_unsolicited: false,
                    }),
                    ..CoreConfig::default()
                },
            );
            let inv = |cseq: u32, auth: &str| {
                format!(
                    "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKt{cseq}\r\nMax-Forwards: 70\r\n\
                     From: <sip:+15557654321@twilio.test>;tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: trunk1\r\nCSeq: {cseq} INVITE\r\n\
                     Contact: <sip:twilio@{A}>\r\nX-GoSIP-CallSid: CA123\r\nX-GoSIP-Devices: 2\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                    SDP.len()
                )
            };
            c.handle_message(T0, peer(A), inv(1, "").as_bytes());
            let ch = out(&mut c).remove(0).1;
            assert!(ch.starts_with("SIP/2.0 407 "));
            let auth = trunk_auth(&ch, &md5);
            c.handle_message(T0 + 1, peer(A), inv(2, &auth).as_bytes());
            assert!(out(&mut c)[0].1.starts_with("SIP/2.0 100 Trying"));
            let ev: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
            assert!(ev.iter().any(|e| matches!(e, Event::Cdr(Cdr::Start { direction: "inbound", device_id: 2, call_sid: Some(sid), from, .. }) if sid == "CA123" && from == "+15557654321")), "{ev:?}");
            c.media_ready(T0 + 2, "trunk1", Some((20000, 20002)));
            let o = out(&mut c);
            assert_eq!(o.len(), 2, "both of bob's contacts ring");
            // A wrong trunk password is refused like any other.
            let bad = auth.replace("response=\"", "response=\"0");
            c.handle_message(
                T0 + 3,
                peer(A),
                inv(3, &bad).replace("trunk1", "trunk2").as_bytes(),
            );
            assert!(out(&mut c)[0].1.starts_with("SIP/2.0 403 "));
        }

        fn body_part(ct: &str, body: &str) -> String {
            if body.is_empty() {
                "Content-Length: 0\r\n\r\n".into()
            } else {
                format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        }

        /// Bob's SDP: his address, port 6000, `extra` lines at the end.
        fn bob_sdp(extra: &str) -> String {
            format!(
                "{}{extra}",
                SDP.replace("192.168.1.50", "192.168.1.61")
                    .replace("4000", "6000")
            )
        }

        /// Places the call, bob's first contact answers, alice ACKs.
        /// Returns the INVITE bob got and sipd's tag in alice's dialog.
        fn answered(c: &mut Core) -> (String, String) {
            let invites = place(c);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
            );
            let ok = out(c)
                .into_iter()
                .find(|(p, m)| p == A && m.starts_with("SIP/2.0 200"))
                .unwrap()
                .1;
            let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
            ack_a(c, T0 + 20, "ack2", 2, &tag, "");
            assert!(out(c).is_empty());
            while c.poll_event().is_some() {}
            (invites[0].1.clone(), tag)
        }

        /// A request from alice inside the call.
        fn from_a(method: &str, cseq: u32, tag: &str, ct: &str, body: &str) -> String {
            format!(
                "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{}{cseq}\r\nMax-Forwards: 70\r\n\
                 From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:102@gosip.test>;tag={tag}\r\nCall-ID: call1\r\n\
                 CSeq: {cseq} {method}\r\nContact: <sip:alice@{A}>\r\n{}",
                method.to_ascii_lowercase(),
                body_part(ct, body)
            )
        }

        /// A request from bob inside his dialog (`invite` is what he got).
        fn from_b(invite: &str, method: &str, cseq: u32, ct: &str, body: &str) -> String {
            format!(
                "{method} sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bKb{}{cseq}\r\nMax-Forwards: 70\r\n\
                 From: {};tag=b1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:bob@{B1}>\r\n{}",
                method.to_ascii_lowercase(),
                header(invite, "To")[0],
                header(invite, "From")[0],
                header(invite, "Call-ID")[0],
                body_part(ct, body)
            )
        }

        /// A UA's answer to a request inside a dialog (To already tagged).
        fn respond(
            req: &str,
            code: u16,
            reason: &str,
            contact: &str,
            ct: &str,
            body: &str,
        ) -> String {
            let mut r = format!("SIP/2.0 {code} {reason}\r\n");
            for l in req.split("\r\n").take_while(|l| !l.is_empty()) {
                let low = l.to_ascii_lowercase();
                if ["via:", "from:", "to:", "call-id:", "cseq:"]
                    .iter()
                    .any(|h| low.starts_with(h))
                {
                    r.push_str(l);
                    r.push_str("\r\n");
                }
            }
            r.push_str(&format!("Contact: <{contact}>\r\n"));
            r + &body_part(ct, body)
        }

        fn find(o: &[(String, String)], to: &str, start: &str) -> String {
            o.iter()
                .find(|(p, m)| p == to && m.starts_with(start))
                .map(|x| x.1.clone())
                .unwrap_or_else(|| panic!("no {start:?} to {to}: {o:?}"))
        }

        fn media_updates(c: &mut Core) -> Vec<(&'static str, Option<bool>, String)> {
            std::iter::from_fn(|| c.poll_event())
                .filter_map(|e| match e {
                    Event::MediaUpdate {
                        leg, hold, media, ..
                    } => Some((leg, hold, media.map(|m| m.rtp).unwrap_or_default())),
                    _ => None,
                })
                .collect()
        }

        /// Each MediaUpdate with media as (leg, the IP its SIP came from).
        fn signal_ips(c: &mut Core) -> Vec<(&'static str, Option<std::net::IpAddr>)> {
            std::iter::from_fn(|| c.poll_event())
                .filter_map(|e| match e {
                    Event::MediaUpdate {
                        leg,
                        media: Some(m),
                        ..
                    } => Some((leg, m.signal_ip)),
                    _ => None,
                })
                .collect()
        }

        #[test]
        fn each_legs_media_names_the_ip_its_signalling_came_from_so_mediad_latches_only_there() {
            let (alice, bob) = (Some(peer(A).addr.ip()), Some(peer(B1).addr.ip()));
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            assert_eq!(signal_ips(&mut c), vec![("a", alice)]);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
            );
            assert_eq!(signal_ips(&mut c), vec![("b", bob)]);
            let ok = find(&out(&mut c), A, "SIP/2.0 200");
            let tag = tag_of(header(&ok, "To")[0]).unwrap().to_string();
            ack_a(&mut c, T0 + 20, "ack2", 2, &tag, "");
            // A re-INVITE's offer/answer names both legs again.
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", SDP).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            let ok = respond(
                &to_b,
                200,
                "OK",
                "sip:bob@192.168.1.61:5060",
                "application/sdp",
                &bob_sdp(""),
            );
            c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
            let mut m = signal_ips(&mut c);
            m.sort();
            assert_eq!(m, vec![("a", alice), ("b", bob)]);
        }

        #[test]
        fn a_hold_reinvite_goes_to_the_callee_and_its_answer_back_with_the_directions_unchanged() {
            let mut c = setup(&[B1]);
            let (b_invite, tag) = answered(&mut c);
            let hold = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
            );
            let o = out(&mut c);
            find(&o, A, "SIP/2.0 100 Trying");
            let to_b = find(&o, B1, "INVITE ");
            // bob's dialog: his Contact, his tag, sipd's next CSeq.
            assert!(
                to_b.starts_with("INVITE sip:bob@192.168.1.62:5060 SIP/2.0"),
                "{to_b}"
            );
            assert_eq!(header(&to_b, "Call-ID"), header(&b_invite, "Call-ID"));
            assert_eq!(header(&to_b, "CSeq"), vec!["2 INVITE"]);
            assert_eq!(tag_of(header(&to_b, "To")[0]), Some("b1"));
            assert_eq!(
                tag_of(header(&to_b, "From")[0]),
                tag_of(header(&b_invite, "From")[0])
            );
            assert!(
                to_b.contains("c=IN IP4 127.0.0.1")
                    && to_b.contains("m=audio 20002 RTP/AVP 0 8 101")
                    && to_b.contains("a=sendonly"),
                "{to_b}"
            );
            assert!(
                media_updates(&mut c).is_empty(),
                "nothing changes before bob agrees"
            );
            let ok = respond(
                &to_b,
                200,
                "OK",
                "sip:bob@192.168.1.61:5060",
                "application/sdp",
                &bob_sdp("a=recvonly\r\n"),
            );
            c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
            let o = out(&mut c);
            // The 2xx's Contact is bob's new target (RFC 3261 section 12.2.1.2).
            let ack = find(&o, B1, "ACK sip:bob@192.168.1.61:5060 SIP/2.0");
            assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
            let to_a = find(&o, A, "SIP/2.0 200 OK");
            assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
            assert!(
                to_a.contains("m=audio 20000 RTP/AVP 0 8 101")
                    && to_a.contains("c=IN IP4 127.0.0.1")
                    && to_a.contains("a=recvonly"),
                "{to_a}"
            );
            let m = media_updates(&mut c);
            assert!(
                m.contains(&("a", Some(true), "192.168.1.50:4000".into())),
                "{m:?}"
            );
            assert!(
                m.contains(&("b", Some(true), "192.168.1.61:6000".into())),
                "{m:?}"
            );
            // The 200 is re-sent until alice ACKs it; bob's re-sent 200
            // gets the same ACK again.
            c.handle_timeout(T0 + 2_050 + T1);
            assert!(out(&mut c).iter().any(|(p, m)| p == A && *m == to_a));
            c.handle_message(T0 + 2_700, peer(B1), ok.as_bytes());
            assert!(out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack));
            ack_a(&mut c, T0 + 2_800, "ack3", 3, &tag, "");
            c.handle_timeout(T0 + 10_000);
            assert!(
                out(&mut c).iter().all(|(p, _)| p != A),
                "no 200 after the ACK"
            );
            // Off hold: sendrecv both ways, mediad hears hold is over.
            c.handle_message(
                T0 + 12_000,
                peer(A),
                from_a("INVITE", 4, &tag, "application/sdp", SDP).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE sip:bob@192.168.1.61:5060");
            assert!(!to_b.contains("a=sendonly"), "{to_b}");
            assert_eq!(header(&to_b, "CSeq"), vec!["3 INVITE"]);
            let ok = respond(
                &to_b,
                200,
                "OK",
                "sip:bob@192.168.1.61:5060",
                "application/sdp",
                &bob_sdp(""),
            );
            c.handle_message(T0 + 12_050, peer(B1), ok.as_bytes());
            let to_a = find(&out(&mut c), A, "SIP/2.0 200 OK");
            assert!(!to_a.contains("recvonly") && header(&to_a, "CSeq") == vec!["4 INVITE"]);
            let m = media_updates(&mut c);
            assert!(
                m.len() == 2 && m.iter().all(|(_, hold, _)| *hold == Some(false)),
                "{m:?}"
            );
        }

        #[test]
        fn a_cancelled_reinvite_is_cancelled_on_the_other_leg_and_its_487_comes_back() {
            let mut c = setup(&[B1]);
            let (_, tag) = answered(&mut c);
            let hold = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            // alice CANCELs before bob said anything: 200 at once, but the
            // CANCEL waits for bob's provisional answer (RFC 3261 section 9.1).
            let cancel =
                from_a("CANCEL", 3, &tag, "", "").replace("z9hG4bKcancel3", "z9hG4bKinvite3");
            c.handle_message(T0 + 2_100, peer(A), cancel.as_bytes());
            let o = out(&mut c);
            let ok = find(&o, A, "SIP/2.0 200 OK");
            assert_eq!(header(&ok, "CSeq"), vec!["3 CANCEL"]);
            assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
            let trying = respond(&to_b, 100, "Trying", "sip:bob@192.168.1.61:5060", "", "");
            c.handle_message(T0 + 2_200, peer(B1), trying.as_bytes());
            let o = out(&mut c);
            let cancel_b = find(&o, B1, "CANCEL ");
            // The same Request-URI, Via (branch), dialog and CSeq number.
            assert_eq!(
                cancel_b
                    .split("\r\n")
                    .next()
                    .unwrap()
                    .replace("CANCEL", "INVITE"),
                to_b.split("\r\n").next().unwrap()
            );
            for h in ["Via", "From", "To", "Call-ID"] {
                assert_eq!(header(&cancel_b, h), header(&to_b, h), "{h}");
            }
            assert_eq!(header(&cancel_b, "CSeq"), vec!["2 CANCEL"]);
            // A second provisional answer sends no second CANCEL.
            c.handle_message(T0 + 2_250, peer(B1), trying.as_bytes());
            assert!(out(&mut c).iter().all(|(_, m)| !m.starts_with("CANCEL")));
            // bob's 200 to the CANCEL stays here; his 487 goes to alice.
            let cancel_ok = respond(&cancel_b, 200, "OK", "sip:bob@192.168.1.61:5060", "", "");
            c.handle_message(T0 + 2_300, peer(B1), cancel_ok.as_bytes());
            assert!(out(&mut c).is_empty());
            let terminated = respond(
                &to_b,
                487,
                "Request Terminated",
                "sip:bob@192.168.1.61:5060",
                "",
                "",
            );
            c.handle_message(T0 + 2_350, peer(B1), terminated.as_bytes());
            let o = out(&mut c);
            let ack = find(&o, B1, "ACK ");
            assert_eq!(header(&ack, "Via"), header(&to_b, "Via"));
            let to_a = find(&o, A, "SIP/2.0 487 Request Terminated");
            assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
            assert!(media_updates(&mut c).is_empty(), "the old media stays");
            assert_eq!(c.calls()[0].state, "up");
            // A CANCEL for a re-INVITE already answered gets 200 and goes nowhere.
            let late = cancel.replace("z9hG4bKinvite3", "z9hG4bKinvite3x");
            c.handle_message(T0 + 2_400, peer(A), late.as_bytes());
            let o = out(&mut c);
            assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
        }

        #[test]
        fn record_route_goes_back_to_the_caller_and_routes_each_legs_requests() {
            let mut c = setup(&[B1]);
            // alice sits behind a strict router, bob behind two loose ones.
            let invites = place_to(
                &mut c,
                "102",
                SDP,
                "internal",
                "Record-Route: <sip:pa.example>\r\n",
            );
            let b_invite = find(&invites, B1, "INVITE ");
            assert!(
                header(&b_invite, "Record-Route").is_empty(),
                "each leg has its own route set"
            );
            let ok = reply(&b_invite, 200, "b1", Some(&bob_sdp(""))).replacen(
                "Contact:",
                "Record-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nContact:",
                1,
            );
            c.handle_message(T0 + 10, peer(B1), ok.as_bytes());
            let o = out(&mut c);
            let ack = find(&o, B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
            assert_eq!(
                header(&ack, "Route"),
                vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
            );
            let to_a = find(&o, A, "SIP/2.0 200");
            assert_eq!(header(&to_a, "Record-Route"), vec!["<sip:pa.example>"]);
            let tag = tag_of(header(&to_a, "To")[0]).unwrap().to_string();
            ack_a(&mut c, T0 + 20, "ack2", 2, &tag, "");
            // A re-INVITE from alice reaches bob along his route set.
            c.handle_message(
                T0 + 1_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", SDP).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            assert_eq!(
                header(&to_b, "Route"),
                vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
            );
            let ok = respond(
                &to_b,
                200,
                "OK",
                "sip:bob@192.168.1.62:5060",
                "application/sdp",
                &bob_sdp(""),
            );
            c.handle_message(T0 + 1_050, peer(B1), ok.as_bytes());
            assert!(header(&find(&out(&mut c), B1, "ACK "), "Route").len() == 2);
            ack_a(&mut c, T0 + 1_100, "ack3", 3, &tag, "");
            // bob hangs up: the BYE to alice goes by her strict router, which
            // takes the Request-URI, her Contact going last in the Route.
            c.handle_message(
                T0 + 5_000,
                peer(B1),
                from_b(&b_invite, "BYE", 1, "", "").as_bytes(),
            );
            let bye = find(&out(&mut c), A, "BYE ");
            assert!(bye.starts_with("BYE sip:pa.example SIP/2.0"), "{bye}");
            assert_eq!(
                header(&bye, "Route"),
                vec![format!("<sip:alice@{A}>").as_str()]
            );
        }

        #[test]
        fn a_reinvite_the_callee_refuses_is_relayed_and_the_call_keeps_its_media() {
            let mut c = setup(&[B1]);
            let (_, tag) = answered(&mut c);
            let hold = SDP.replace("a=rtpmap:101", "a=inactive\r\na=rtpmap:101");
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", &hold).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            assert!(to_b.contains("a=inactive"));
            let no = respond(
                &to_b,
                488,
                "Not Acceptable Here",
                "sip:bob@192.168.1.61:5060",
                "",
                "",
            );
            c.handle_message(T0 + 2_050, peer(B1), no.as_bytes());
            let o = out(&mut c);
            // ACKed in its own transaction: same branch and Request-URI.
            let ack = find(&o, B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
            assert_eq!(header(&ack, "Via"), header(&to_b, "Via"));
            assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
            let to_a = find(&o, A, "SIP/2.0 488 Not Acceptable Here");
            assert_eq!(header(&to_a, "CSeq"), vec!["3 INVITE"]);
            assert!(media_updates(&mut c).is_empty(), "the old media stays");
            assert_eq!(c.calls()[0].state, "up");
            // The failed exchange is over: the next re-INVITE goes through.
            c.handle_message(
                T0 + 3_000,
                peer(A),
                from_a("INVITE", 4, &tag, "application/sdp", &hold).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            assert_eq!(header(&to_b, "CSeq"), vec!["3 INVITE"]);
        }

        #[test]
        fn crossing_reinvites_are_glare_and_the_callees_own_reinvite_reaches_the_caller() {
            let mut c = setup(&[B1]);
            let (b_invite, tag) = answered(&mut c);
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "application/sdp", SDP).as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            // bob re-INVITEs at the same time: 491 (RFC 3261 section 14.2).
            let bob_hold = bob_sdp("a=sendonly\r\n");
            let bob_inv = from_b(&b_invite, "INVITE", 1, "application/sdp", &bob_hold);
            c.handle_message(T0 + 2_001, peer(B1), bob_inv.as_bytes());
            find(&out(&mut c), B1, "SIP/2.0 491 Request Pending");
            // alice's second one while her first is pending: 500 + Retry-After.
            c.handle_message(
                T0 + 2_002,
                peer(A),
                from_a("INVITE", 4, &tag, "application/sdp", SDP).as_bytes(),
            );
            let again = find(&out(&mut c), A, "SIP/2.0 500 ");
            assert_eq!(header(&again, "Retry-After"), vec!["2"]);
            // bob saw the glare too: his 491 goes to alice.
            let glare = respond(
                &to_b,
                491,
                "Request Pending",
                "sip:bob@192.168.1.61:5060",
                "",
                "",
            );
            c.handle_message(T0 + 2_003, peer(B1), glare.as_bytes());
            let o = out(&mut c);
            find(&o, A, "SIP/2.0 491 Request Pending");
            find(&o, B1, "ACK ");
            // bob retries: alice gets it in her dialog, on mediad's port a.
            let bob_inv = bob_inv
                .replace("z9hG4bKbinvite1", "z9hG4bKbinvite2")
                .replace("CSeq: 1 ", "CSeq: 2 ");
            c.handle_message(T0 + 4_000, peer(B1), bob_inv.as_bytes());
            let o = out(&mut c);
            find(&o, B1, "SIP/2.0 100 Trying");
            let to_a = find(&o, A, "INVITE sip:alice@192.168.1.50:5062 SIP/2.0");
            assert_eq!(
                header(&to_a, "From"),
                vec![format!("<sip:102@gosip.test>;tag={tag}")]
            );
            assert_eq!(
                header(&to_a, "To"),
                vec!["\"Alice\" <sip:alice@gosip.test>;tag=at"]
            );
            assert_eq!(header(&to_a, "Call-ID"), vec!["call1"]);
            assert_eq!(header(&to_a, "CSeq"), vec!["1 INVITE"]);
            assert!(
                to_a.contains("m=audio 20000 ") && to_a.contains("a=sendonly"),
                "{to_a}"
            );
            let ok = respond(
                &to_a,
                200,
                "OK",
                "sip:alice@192.168.1.50:5062",
                "application/sdp",
                &SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101"),
            );
            c.handle_message(T0 + 4_050, peer(A), ok.as_bytes());
            let o = out(&mut c);
            let ack = find(&o, A, "ACK sip:alice@192.168.1.50:5062 SIP/2.0");
            assert_eq!(header(&ack, "CSeq"), vec!["1 ACK"]);
            let to_bob = find(&o, B1, "SIP/2.0 200 OK");
            assert_eq!(header(&to_bob, "CSeq"), vec!["2 INVITE"]);
            assert!(to_bob.contains("m=audio 20002 ") && to_bob.contains("a=recvonly"));
            let m = media_updates(&mut c);
            assert!(
                m.contains(&("b", Some(true), "192.168.1.61:6000".into())),
                "{m:?}"
            );
        }

        #[test]
        fn info_and_update_go_to_the_other_leg_and_their_answers_come_back() {
            let mut c = setup(&[B1]);
            let (b_invite, tag) = answered(&mut c);
            let dtmf = "Signal=5\r\nDuration=160\r\n";
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INFO", 3, &tag, "application/dtmf-relay", dtmf).as_bytes(),
            );
            let o = out(&mut c);
            assert!(o.iter().all(|(p, _)| p != A), "no blind 200: {o:?}");
            let info = find(&o, B1, "INFO sip:bob@192.168.1.62:5060 SIP/2.0");
            assert_eq!(
                header(&info, "Content-Type"),
                vec!["application/dtmf-relay"]
            );
            assert_eq!(header(&info, "CSeq"), vec!["2 INFO"]);
            assert!(info.ends_with(&format!("\r\n\r\n{dtmf}")), "{info}");
            c.handle_message(
                T0 + 2_010,
                peer(B1),
                respond(&info, 200, "OK", "sip:bob@192.168.1.62:5060", "", "").as_bytes(),
            );
            let to_a = find(&out(&mut c), A, "SIP/2.0 200 OK");
            assert_eq!(header(&to_a, "CSeq"), vec!["3 INFO"]);
            // A refusal comes back as it is.
            c.handle_message(
                T0 + 2_100,
                peer(A),
                from_a("INFO", 4, &tag, "application/x-unknown", "?").as_bytes(),
            );
            let info = find(&out(&mut c), B1, "INFO ");
            c.handle_message(
                T0 + 2_110,
                peer(B1),
                respond(
                    &info,
                    469,
                    "Bad Info Package",
                    "sip:bob@192.168.1.62:5060",
                    "",
                    "",
                )
                .as_bytes(),
            );
            find(&out(&mut c), A, "SIP/2.0 469 Bad Info Package");
            // bob's UPDATE with an offer reaches alice on port a.
            let upd = from_b(
                &b_invite,
                "UPDATE",
                1,
                "application/sdp",
                &bob_sdp("a=sendonly\r\n"),
            );
            c.handle_message(T0 + 3_000, peer(B1), upd.as_bytes());
            let o = out(&mut c);
            assert!(o.iter().all(|(p, _)| p != B1), "{o:?}");
            let to_a = find(&o, A, "UPDATE sip:alice@192.168.1.50:5062 SIP/2.0");
            assert!(
                to_a.contains("m=audio 20000 ") && to_a.contains("a=sendonly"),
                "{to_a}"
            );
            c.handle_message(
                T0 + 3_010,
                peer(A),
                respond(
                    &to_a,
                    200,
                    "OK",
                    "sip:alice@192.168.1.50:5062",
                    "application/sdp",
                    &SDP.replace("a=rtpmap:101", "a=recvonly\r\na=rtpmap:101"),
                )
                .as_bytes(),
            );
            let to_bob = find(&out(&mut c), B1, "SIP/2.0 200 OK");
            assert_eq!(header(&to_bob, "CSeq"), vec!["1 UPDATE"]);
            assert!(to_bob.contains("m=audio 20002 ") && to_bob.contains("a=recvonly"));
            let m = media_updates(&mut c);
            assert!(
                m.contains(&("a", Some(true), "192.168.1.50:4000".into())),
                "{m:?}"
            );
            // Outside a dialog there is nothing to relay to.
            let stray = from_a("INFO", 9, &tag, "", "").replace(&format!(";tag={tag}"), "");
            c.handle_message(T0 + 4_000, peer(A), stray.as_bytes());
            find(&out(&mut c), A, "SIP/2.0 481 ");
        }

        #[test]
        fn an_in_call_request_the_other_side_never_answers_gets_408_and_ends_the_call() {
            let mut c = setup(&[B1]);
            let (_, tag) = answered(&mut c);
            let start = T0 + 2_000;
            c.handle_message(
                start,
                peer(A),
                from_a("INFO", 3, &tag, "application/dtmf-relay", "Signal=1\r\n").as_bytes(),
            );
            let info = find(&out(&mut c), B1, "INFO ");
            let mut sent = vec![start];
            let mut now = start;
            let mut failed = None;
            while now < start + 40_000 && failed.is_none() {
                now += 50;
                c.handle_timeout(now);
                for (p, m) in out(&mut c) {
                    if p == B1 && m == info {
                        sent.push(now);
                    }
                    if p == A && m.starts_with("SIP/2.0 408 Request Timeout") {
                        failed = Some(now);
                    }
                }
            }
            // Timer E doubles up to T2, Timer F ends it at 64*T1.
            let gaps: Vec<u64> = sent.windows(2).map(|w| (w[1] - w[0]) / 50 * 50).collect();
            assert_eq!(&gaps[..5], &[500, 1000, 2000, 4000, 4000], "{gaps:?}");
            assert!(failed.is_some_and(|t| (start + 64 * T1..start + 64 * T1 + 100).contains(&t)));
            assert!(c.calls().is_empty());
        }

        #[test]
        fn early_media_from_a_callee_reaches_the_caller_through_mediad_before_the_200() {
            let mut c = setup(&[B1, B2]);
            let invites = place(&mut c);
            while c.poll_event().is_some() {}
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 183, "b1", Some(&bob_sdp(""))).as_bytes(),
            );
            let p = find(&out(&mut c), A, "SIP/2.0 183 Session Progress");
            assert!(
                p.contains("m=audio 20000 RTP/AVP 0 8 101") && p.contains("c=IN IP4 127.0.0.1"),
                "{p}"
            );
            assert!(tag_of(header(&p, "To")[0]).is_some() && !header(&p, "Contact").is_empty());
            // mediad learns where the early media comes from.
            assert_eq!(
                media_updates(&mut c),
                vec![("b", None, "192.168.1.61:6000".to_string())]
            );
            // The other contact's 180 changes nothing for the caller.
            c.handle_message(
                T0 + 20,
                peer(B2),
                reply(&invites[1].1, 180, "b2", None).as_bytes(),
            );
            assert!(out(&mut c).iter().all(|(p, _)| p != A));
            c.handle_message(
                T0 + 3_000,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
            );
            let ok = find(&out(&mut c), A, "SIP/2.0 200 OK");
            assert!(ok.contains("m=audio 20000 RTP/AVP 0 8 101"), "{ok}");
        }

        #[test]
        fn a_late_offer_call_takes_the_offer_from_the_200_and_the_answer_from_the_ack() {
            let mut c = setup(&[B1]);
            let invites = place_to(&mut c, "102", "", "internal", "");
            let inv = &invites[0].1;
            assert!(
                inv.ends_with("Content-Length: 0\r\n\r\n")
                    && header(inv, "Content-Type").is_empty(),
                "{inv}"
            );
            let ok = reply(inv, 200, "b1", Some(&bob_sdp("")));
            c.handle_message(T0 + 10, peer(B1), ok.as_bytes());
            let o = out(&mut c);
            assert!(
                o.iter().all(|(p, _)| p != B1),
                "no ACK before alice answers: {o:?}"
            );
            let to_a = find(&o, A, "SIP/2.0 200 OK");
            assert!(
                to_a.contains("m=audio 20000 RTP/AVP 0 8 101")
                    && to_a.contains("c=IN IP4 127.0.0.1"),
                "{to_a}"
            );
            let tag = tag_of(header(&to_a, "To")[0]).unwrap().to_string();
            // bob's re-sent 200 still waits.
            c.handle_message(T0 + 500, peer(B1), ok.as_bytes());
            assert!(out(&mut c).iter().all(|(p, _)| p != B1));
            while c.poll_event().is_some() {}
            ack_a(&mut c, T0 + 600, "ack2", 2, &tag, SDP);
            let ack = find(&out(&mut c), B1, "ACK sip:bob@192.168.1.62:5060 SIP/2.0");
            assert_eq!(header(&ack, "CSeq"), vec!["1 ACK"]);
            assert!(
                ack.contains("m=audio 20002 RTP/AVP 0 8 101") && ack.contains("c=IN IP4 127.0.0.1"),
                "{ack}"
            );
            let m = media_updates(&mut c);
            assert!(
                m.contains(&("a", Some(false), "192.168.1.50:4000".into())),
                "{m:?}"
            );
            assert!(
                m.contains(&("b", Some(false), "192.168.1.61:6000".into())),
                "{m:?}"
            );
            c.handle_message(T0 + 1_000, peer(B1), ok.as_bytes());
            assert!(
                out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack),
                "the same ACK again"
            );
            assert_eq!(c.calls()[0].state, "up");
        }

        #[test]
        fn a_late_offer_ack_without_an_answer_ends_the_call() {
            let mut c = setup(&[B1]);
            let invites = place_to(&mut c, "102", "", "internal", "");
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(&bob_sdp(""))).as_bytes(),
            );
            let tag = tag_of(header(&find(&out(&mut c), A, "SIP/2.0 200"), "To")[0])
                .unwrap()
                .to_string();
            ack_a(&mut c, T0 + 600, "ack2", 2, &tag, "");
            let o = out(&mut c);
            find(&o, B1, "ACK ");
            find(&o, B1, "BYE ");
            find(&o, A, "BYE ");
            assert!(c.calls().is_empty());
        }

        #[test]
        fn an_offerless_reinvite_gets_the_other_sides_offer_and_its_answer_from_the_ack() {
            let mut c = setup(&[B1]);
            let (_, tag) = answered(&mut c);
            c.handle_message(
                T0 + 2_000,
                peer(A),
                from_a("INVITE", 3, &tag, "", "").as_bytes(),
            );
            let to_b = find(&out(&mut c), B1, "INVITE ");
            assert!(to_b.ends_with("Content-Length: 0\r\n\r\n"), "{to_b}");
            let ok = respond(
                &to_b,
                200,
                "OK",
                "sip:bob@192.168.1.61:5060",
                "application/sdp",
                &bob_sdp(""),
            );
            c.handle_message(T0 + 2_050, peer(B1), ok.as_bytes());
            let o = out(&mut c);
            assert!(
                o.iter().all(|(p, _)| p != B1),
                "bob's ACK waits for alice's answer"
            );
            let to_a = find(&o, A, "SIP/2.0 200 OK");
            assert!(to_a.contains("m=audio 20000 RTP/AVP 0 8 101"), "{to_a}");
            let answer = SDP.replace("a=rtpmap:101", "a=sendonly\r\na=rtpmap:101");
            ack_a(&mut c, T0 + 2_100, "ack3", 3, &tag, &answer);
            let ack = find(&out(&mut c), B1, "ACK sip:bob@192.168.1.61:5060 SIP/2.0");
            assert_eq!(header(&ack, "CSeq"), vec!["2 ACK"]);
            assert!(
                ack.contains("m=audio 20002 ") && ack.contains("a=sendonly"),
                "{ack}"
            );
            let m = media_updates(&mut c);
            assert!(
                m.contains(&("a", Some(true), "192.168.1.50:4000".into())),
                "{m:?}"
            );
            c.handle_message(T0 + 2_600, peer(B1), ok.as_bytes());
            assert!(out(&mut c).iter().any(|(p, m)| p == B1 && *m == ack));
        }

        /// Alice's device with a DID, and a termination trunk at [`TRUNK`].
        const TRUNK: &str = "127.0.0.1:5099";
        fn outbound_core() -> Core {
            let mut c = setup(&[B1]);
            let mut alice = c.devices["alice"].clone();
            alice.caller_id = Some("+15550001111".into());
            let bob = c.devices["bob"].clone();
            c.set_devices([alice, bob]);
            let mut cfg = c.config().clone();
            cfg.termination = Some(Termination {
                host: "t.pstn.twilio.com".into(),
                addr: TRUNK.parse().unwrap(),
                username: "u".into(),
                password: "p".into(),
                local: None,
            });
            c.set_config(T0, cfg);
            c
        }

        #[test]
        fn trunk_failures_other_than_busy_decline_or_no_answer_end_as_failed() {
            let cases = [
                (486, "Busy Here", "486 Busy Here", "busy"),
                (600, "Busy Everywhere", "486 Busy Here", "busy"),
                (603, "Decline", "603 Decline", "rejected"),
                (480, "Temporarily Unavailable", "480 ", "missed"),
                (408, "Request Timeout", "480 ", "missed"),
                (487, "Request Terminated", "480 ", "missed"),
                (404, "Not Found", "404 Not Found", "failed"),
                (403, "Forbidden", "403 Forbidden", "failed"),
                (
                    484,
                    "Address Incomplete",
                    "484 Address Incomplete",
                    "failed",
                ),
                (
                    488,
                    "Not Acceptable Here",
                    "488 Not Acceptable Here",
                    "failed",
                ),
                (500, "Server Internal Error", "502 Bad Gateway", "failed"),
                (503, "Service Unavailable", "502 Bad Gateway", "failed"),
                (
                    604,
                    "Does Not Exist Anywhere",
                    "604 Does Not Exist Anywhere",
                    "failed",
                ),
            ];
            for (status, reason, relayed, disposition) in cases {
                let mut c = outbound_core();
                let inv = place_to(&mut c, "5551234567", SDP, "outbound", "");
                assert_eq!(inv.len(), 1);
                assert_eq!(inv[0].0, TRUNK);
                let r = reply(&inv[0].1, status, "tw", None).replacen(
                    " X\r\n",
                    &format!(" {reason}\r\n"),
                    1,
                );
                c.handle_message(T0 + 10, peer(TRUNK), r.as_bytes());
                let o = out(&mut c);
                find(&o, TRUNK, "ACK ");
                let to_a = find(&o, A, "SIP/2.0 ");
                assert!(
                    to_a.starts_with(&format!("SIP/2.0 {relayed}")),
                    "{status}: {to_a}"
                );
                assert_eq!(cdr_end(&mut c), Some(disposition), "{status}");
            }
            // The trunk refuses the credentials: 502, not a challenge the
            // phone would answer with its own.
            let mut c = outbound_core();
            let inv = place_to(&mut c, "5551234567", SDP, "outbound", "");
            let challenge = |req: &str| {
                reply(req, 407, "tw", None).replacen(
                    "Contact:",
                    "Proxy-Authenticate: Digest realm=\"sip.twilio.com\", nonce=\"n1\"\r\nContact:",
                    1,
                )
            };
            c.handle_message(T0 + 10, peer(TRUNK), challenge(&inv[0].1).as_bytes());
            let retry = find(&out(&mut c), TRUNK, "INVITE ");
            assert!(!header(&retry, "Proxy-Authorization").is_empty());
            c.handle_message(T0 + 20, peer(TRUNK), challenge(&retry).as_bytes());
            let to_a = find(&out(&mut c), A, "SIP/2.0 ");
            assert!(to_a.starts_with("SIP/2.0 502 Bad Gateway"), "{to_a}");
            assert_eq!(cdr_end(&mut c), Some("failed"));
            // A trunk that never answers: Timer B, 503.
            let mut c = outbound_core();
            place_to(&mut c, "5551234567", SDP, "outbound", "");
            let mut now = T0;
            let mut to_a = None;
            while now < T0 + 40_000 && to_a.is_none() {
                now += 500;
                c.handle_timeout(now);
                to_a = out(&mut c).into_iter().find(|(p, _)| p == A).map(|x| x.1);
            }
            let to_a = to_a.expect("an answer to the caller");
            assert!(
                to_a.starts_with("SIP/2.0 503 Service Unavailable"),
                "{to_a}"
            );
            assert!(header(&to_a, "Warning")[0].contains("did not respond"));
            assert_eq!(cdr_end(&mut c), Some("failed"));
        }

        /// An INVITE from the trunk (Twilio) that rings bob, authenticated
        /// with the trunk credentials; returns what bob's contact gets.
        fn from_trunk(c: &mut Core, call_id: &str, from: &str, extra: &str) -> String {
            let (md5, sha) = ha1("twilio", REALM, "trunkpw");
            let mut cfg = c.config().clone();
            cfg.trunk = Some(Device {
                id: TRUNK_ID,
                username: "twilio".into(),
                ha1_md5: md5.clone(),
                ha1_sha256: sha,
                realm: REALM.into(),
                extension: None,
                recording: false,
                caller_id: None,
                mwi_unsolicited: false,
            });
            c.set_config(T0, cfg);
            let inv = |cseq: u32, auth: &str| {
                format!(
                    "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{call_id}{cseq}\r\nMax-Forwards: 70\r\n\
                     From: {from};tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
                     Contact: <sip:twilio@{A}>\r\nX-GoSIP-Devices: 2\r\n{extra}{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                    SDP.len()
                )
            };
            c.handle_message(T0, peer(A), inv(1, "").as_bytes());
            let ch = out(c).remove(0).1;
            let auth = trunk_auth(&ch, &md5);
            c.handle_message(T0 + 1, peer(A), inv(2, &auth).as_bytes());
            find(&out(c), A, "SIP/2.0 100 Trying");
            c.media_ready(T0 + 2, call_id, Some((20000, 20002)));
            find(&out(c), B1, "INVITE ")
        }

        #[test]
        fn an_inbound_call_shows_the_callers_trust_mark_in_the_display_name() {
            let mut c = setup(&[B1]);
            let from = |c: &mut Core, id: &str, from: &str, extra: &str| {
                let inv = from_trunk(c, id, from, extra);
                header(&inv, "From")[0]
                    .split(";tag=")
                    .next()
                    .unwrap()
                    .to_string()
            };
            assert_eq!(
                from(
                    &mut c,
                    "t1",
                    r#""Jane \"JJ\" Doe" <sip:+15557654321@twilio.test>"#,
                    "X-GoSIP-Trust: verified\r\n"
                ),
                "\"\u{2713} Jane \\\"JJ\\\" Doe\" <sip:+15557654321@gosip.test>"
            );
            // Without a name the number stays in view.
            assert_eq!(
                from(
                    &mut c,
                    "t2",
                    "<sip:+15557654321@twilio.test>",
                    "X-GoSIP-Trust: spam\r\n"
                ),
                "\"SPAM? +15557654321\" <sip:+15557654321@gosip.test>"
            );
            assert_eq!(
                from(
                    &mut c,
                    "t3",
                    "<sip:+15557654321@twilio.test>",
                    "X-Twilio-VerStat: TN-Validation-Passed-A\r\n"
                ),
                "\"\u{2713} +15557654321\" <sip:+15557654321@gosip.test>"
            );
            for (id, extra) in [
                ("t4", "X-GoSIP-Trust: unverified\r\n"),
                ("t5", "X-Twilio-VerStat: TN-Validation-Passed-B\r\n"),
                ("t6", ""),
            ] {
                assert_eq!(
                    from(&mut c, id, "<sip:+15557654321@twilio.test>", extra),
                    "<sip:+15557654321@gosip.test>"
                );
            }
            // A device cannot give itself a mark: only trunk calls carry one.
            let mut c = setup(&[B1]);
            let inv = place_to(
                &mut c,
                "102",
                SDP,
                "internal",
                "X-GoSIP-Trust: verified\r\n",
            );
            assert!(
                header(&inv[0].1, "From")[0].starts_with("\"Alice\" <sip:101@gosip.test>"),
                "{}",
                inv[0].1
            );
        }

        #[test]
        fn a_busy_phone_gives_the_caller_486() {
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 486, "b1", None).as_bytes(),
            );
            let o = out(&mut c);
            assert!(o.iter().any(|(p, m)| p == B1 && m.starts_with("ACK ")));
            assert!(
                o.iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 486 Busy Here"))
            );
            assert_eq!(cdr_end(&mut c), Some("busy"));
        }

        #[test]
        fn a_declined_call_gives_603_and_no_answer_gives_480_after_the_ring_timeout() {
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 603, "b1", None).as_bytes(),
            );
            assert!(
                out(&mut c)
                    .iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 603 "))
            );
            assert_eq!(cdr_end(&mut c), Some("rejected"));

            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 180, "b1", None).as_bytes(),
            );
            out(&mut c);
            c.handle_timeout(T0 + 29_000);
            let o = out(&mut c);
            assert!(o.iter().all(|(p, _)| p != A), "{o:?}");
            c.handle_timeout(T0 + 30_001);
            let o = out(&mut c);
            assert!(o.iter().any(|(p, m)| p == B1 && m.starts_with("CANCEL ")));
            assert!(
                o.iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 480 "))
            );
            assert_eq!(cdr_end(&mut c), Some("missed"));
        }

        #[test]
        fn the_caller_cancelling_gets_487_and_the_callee_a_cancel() {
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            let cancel = invite(2, "")
                .replace(
                    "INVITE sip:102@gosip.test SIP/2.0",
                    "CANCEL sip:102@gosip.test SIP/2.0",
                )
                .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL");
            let cancel = format!(
                "{}Content-Length: 0\r\n\r\n",
                cancel.split("Content-Type").next().unwrap()
            );
            c.handle_message(T0 + 100, peer(A), cancel.as_bytes());
            let o = out(&mut c);
            assert!(
                o.iter().any(|(p, m)| p == A
                    && m.starts_with("SIP/2.0 200 OK")
                    && m.contains("CANCEL")),
                "{o:?}"
            );
            assert!(
                o.iter()
                    .any(|(p, m)| p == A && m.starts_with("SIP/2.0 487 ")),
                "{o:?}"
            );
            assert!(
                o.iter()
                    .any(|(p, m)| p == B1 && m.starts_with("CANCEL sip:bob@"))
            );
            assert_eq!(cdr_end(&mut c), Some("missed"));
            // The callee's 487 arrives after the call is gone and is ACKed.
            c.handle_message(
                T0 + 200,
                peer(B1),
                reply(&invites[0].1, 487, "b1", None).as_bytes(),
            );
            assert!(
                out(&mut c)
                    .iter()
                    .any(|(p, m)| p == B1 && m.starts_with("ACK "))
            );
        }

        #[test]
        fn an_unanswering_contact_gets_timer_a_retransmissions_then_timer_b_ends_it() {
            let mut c = setup(&[B1]);
            c.set_config(
                T0,
                CoreConfig {
                    realm: REALM.into(),
                    ring_timeout_ms: 60_000,
                    keepalive_interval_ms: 0,
                    ..CoreConfig::default()
                },
            );
            let invites = place(&mut c);
            let mut sent = vec![T0 + 2];
            let mut now = T0 + 2;
            let mut failed = None;
            while now < T0 + 40_000 && failed.is_none() {
                now += 50;
                c.handle_timeout(now);
                for (p, m) in out(&mut c) {
                    if p == B1 && m == invites[0].1 {
                        sent.push(now);
                    }
                    if p == A && m.starts_with("SIP/2.0 480 ") {
                        failed = Some(now);
                    }
                }
            }
            let gaps: Vec<u64> = sent.windows(2).map(|w| (w[1] - w[0]) / 50 * 50).collect();
            assert_eq!(&gaps[..4], &[500, 1000, 2000, 4000], "{gaps:?}");
            assert!(
                failed.is_some_and(|t| (T0 + 2 + 64 * T1..T0 + 2 + 64 * T1 + 100).contains(&t))
            );
        }

        /// Attacks on live calls from an address that is not the leg's.
        mod attacks {
            use super::*;

            const EVIL: &str = "203.0.113.66:5062";

            #[test]
            fn a_forged_200_from_another_address_does_not_answer_the_call() {
                let mut c = setup(&[B1]);
                let invites = place(&mut c);
                let forged = reply(&invites[0].1, 200, "evil", Some(SDP));
                c.handle_message(T0 + 10, peer(EVIL), forged.as_bytes());
                let o = out(&mut c);
                assert!(
                    o.is_empty(),
                    "the forger got nothing, the caller no 200: {o:?}"
                );
                assert_eq!(c.stats.dropped_wrong_source, 1);
                assert_eq!(c.calls()[0].state, "ringing");
                let real = reply(&invites[0].1, 200, "b1", Some(SDP));
                c.handle_message(T0 + 20, peer(B1), real.as_bytes());
                find(&out(&mut c), A, "SIP/2.0 200 OK");
            }

            #[test]
            fn forged_in_dialog_requests_neither_end_nor_redirect_the_call() {
                let mut c = setup(&[B1]);
                let (b_invite, tag) = answered(&mut c);
                let attempts = [
                    // The caller's dialog, right tags, wrong address.
                    (EVIL, from_a("BYE", 3, &tag, "", "")),
                    (EVIL, from_a("INVITE", 4, &tag, "application/sdp", SDP)),
                    // The caller's address (spoofed), guessed To tag.
                    (A, from_a("BYE", 5, "0123456789abcdef", "", "")),
                    // The callee's dialog from elsewhere.
                    (EVIL, from_b(&b_invite, "BYE", 2, "", "")),
                ];
                for (src, m) in attempts {
                    c.handle_message(T0 + 100, peer(src), m.as_bytes());
                    let o = out(&mut c);
                    assert!(
                        o.iter()
                            .all(|(p, m)| p == src && m.starts_with("SIP/2.0 481 ")),
                        "{o:?}"
                    );
                }
                assert_eq!(c.calls().len(), 1, "the call is still up");
                assert!(cdr_end(&mut c).is_none());
                // The real caller still hangs up.
                c.handle_message(T0 + 200, peer(A), from_a("BYE", 6, &tag, "", "").as_bytes());
                let o = out(&mut c);
                find(&o, A, "SIP/2.0 200 OK");
                find(&o, B1, "BYE ");
                assert_eq!(cdr_end(&mut c), Some("answered"));
            }

            #[test]
            fn a_forged_cancel_from_another_address_does_not_end_a_ringing_call() {
                let mut c = setup(&[B1]);
                place(&mut c);
                let cancel = format!(
                    "CANCEL sip:102@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKa2;rport\r\nMax-Forwards: 70\r\n\
                     From: \"Alice\" <sip:alice@gosip.test>;tag=at\r\nTo: <sip:102@gosip.test>\r\nCall-ID: call1\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
                );
                c.handle_message(T0 + 10, peer(EVIL), cancel.as_bytes());
                let o = out(&mut c);
                find(&o, EVIL, "SIP/2.0 481 ");
                assert!(o.iter().all(|(p, _)| p == EVIL), "{o:?}");
                assert_eq!(c.calls().len(), 1);
                c.handle_message(T0 + 20, peer(A), cancel.as_bytes());
                let o = out(&mut c);
                find(&o, B1, "CANCEL ");
                find(&o, A, "SIP/2.0 487 ");
            }

            #[test]
            fn forged_failures_from_a_trunk_address_never_ban_the_trunk() {
                let mut c = setup(&[B1]);
                let mut cfg = c.config().clone();
                cfg.trunk_ips = vec![peer(A).addr.ip()];
                let (md5, sha) = ha1("twilio", REALM, "trunkpw");
                cfg.trunk = Some(Device {
                    id: TRUNK_ID,
                    username: "twilio".into(),
                    ha1_md5: md5,
                    ha1_sha256: sha,
                    realm: REALM.into(),
                    extension: None,
                    recording: false,
                    caller_id: None,
                    mwi_unsolicited: false,
                });
                c.set_config(T0, cfg);
                let (guess, _) = ha1("twilio", REALM, "guess");
                let failures = |c: &mut Core, src: &str| {
                    for i in 0..100u64 {
                        let inv = |auth: &str| {
                            format!(
                                "INVITE sip:+15550001111@gosip.test SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKf{i}{}\r\nMax-Forwards: 70\r\n\
                                 From: <sip:+15557654321@twilio.test>;tag=tw\r\nTo: <sip:+15550001111@gosip.test>\r\nCall-ID: f{i}\r\nCSeq: 1 INVITE\r\n\
                                 {auth}Content-Length: 0\r\n\r\n",
                                auth.len()
                            )
                        };
                        c.handle_message(T0 + i, peer(src), inv("").as_bytes());
                        let o = out(c);
                        let Some((_, ch)) = o.first() else { break };
                        let bad = inv(&trunk_auth(ch, &guess));
                        c.handle_message(T0 + i, peer(src), bad.as_bytes());
                        out(c);
                    }
                };
                failures(&mut c, A);
                assert!(!c.is_banned(peer(A).addr.ip(), T0 + 200));
                // The trunk still gets in.
                from_trunk(&mut c, "t9", "<sip:+15557654321@twilio.test>", "");
                // The same failures from any other address do ban it.
                failures(&mut c, B2);
                assert!(c.is_banned(peer(B2).addr.ip(), T0 + 200));
            }
        }

        #[test]
        fn a_callee_hanging_up_sends_bye_to_the_caller() {
            let mut c = setup(&[B1]);
            let invites = place(&mut c);
            c.handle_message(
                T0 + 10,
                peer(B1),
                reply(&invites[0].1, 200, "b1", Some(SDP)).as_bytes(),
            );
            out(&mut c);
            let b_call = header(&invites[0].1, "Call-ID")[0].to_string();
            let bye = format!(
                "BYE sip:gosip@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {B1};branch=z9hG4bKbb\r\nFrom: <sip:102@gosip.test>;tag=b1\r\n{}\r\nCall-ID: {b_call}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                header(&invites[0].1, "From")[0]
                    .split_once(';')
                    .map(|(a, b)| format!("To: {a};{b}"))
                    .unwrap()
            );
            c.handle_message(T0 + 3_000, peer(B1), bye.as_bytes());
            let o = out(&mut c);
            assert!(
                o.iter()
                    .any(|(p, m)| p == B1 && m.starts_with("SIP/2.0 200 OK"))
            );
            let to_a = o
                .iter()
                .find(|(p, m)| p == A && m.starts_with("BYE "))
                .map(|x| x.1.clone())
                .unwrap();
            assert!(to_a.starts_with("BYE sip:alice@192.168.1.50:5062 SIP/2.0"));
            assert!(
                to_a.contains("Call-ID: call1")
                    && to_a.contains("To: \"Alice\" <sip:alice@gosip.test>;tag=at")
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_the_core(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let mut c = core();
            c.handle_message(T0, phone(), &bytes);
            drain(&mut c);
        }

        #[test]
        fn mutated_golden_messages_never_panic(pos in 0usize..600, byte in proptest::num::u8::ANY) {
            let mut m = golden("linphone").into_bytes();
            let i = pos % m.len();
            m[i] = byte;
            let mut c = core();
            c.handle_message(T0, phone(), &m);
            drain(&mut c);
        }
    }
}
