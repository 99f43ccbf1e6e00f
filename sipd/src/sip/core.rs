//! The SIP server core: intake, transactions, digest, abuse control and the
//! registrar glued into one state machine. The shell calls
//! [`Core::handle_message`] for every framed message and
//! [`Core::handle_timeout`] when [`Core::poll_timeout`] is due, then drains
//! [`Core::poll_transmit`] and [`Core::poll_event`].
//!
//! The shape is quinn-proto's: inputs are method calls (`handle_*`, and the
//! shell's commands such as [`Core::unreachable`] or `hangup`, some of which
//! answer at once), outputs are drained through `poll_*`. Two output queues
//! rather than one `Output` enum, because the shell sends packets on the
//! socket task and events to the database and other daemons, and would
//! only split a merged queue again.
//!
//! Time is `now: u64`, milliseconds since the Unix epoch, passed into every
//! input, never read inside: the core is deterministic under test (the
//! tests step the clock by hand), and the same clock stamps what outlives
//! the process (binding expiry in `registrations`, the time inside a
//! digest nonce, call records), which an `Instant` cannot. The shell reads
//! it once per input (`net::now_ms`).

mod b2bua;
mod endpoint;
mod mwi;
mod outbound;

pub use super::addrs::{AddrBook, AddrSource};
pub use b2bua::{CallInfo, Cdr, SPAM_MARK, StoredMessage, TRUNK_ID, VERIFIED_MARK};
/// mediad's name for a call's two legs (A the caller, B the callee).
pub use proto::pb::mediad::Leg;

use proto::types::{DeviceId, UserId};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::abuse::{Abuse, BanPolicy};
use super::digest::{Algorithm, Attempt, Credentials, Nonces, Verdict};
use super::method::Method;
use super::msg::{self, ACCEPT, ALLOW, Inbound, Intake, Raw, SUPPORTED, tag_of, uri_of, user_of};
use super::registrar::{Binding, Change, Device, ExpiryPolicy, Outcome, Register, Registrar};
use super::transaction::{ClientOutcome, ServerMatch, Transactions, TsxKey};
use super::{Peer, Transmit};
use endpoint::{Keepalive, trunk_sources};

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
    /// The SIP-over-TLS port, in Via and Contact towards TLS peers.
    pub sips_port: u16,
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
    /// `voicemail.greeting`: read to a caller sent to voicemail, after
    /// "<name> is not available."
    pub voicemail_greeting: String,
    /// `voicemail.max_length`: the longest message, seconds.
    pub voicemail_max_secs: u32,
    /// `voicemail.silence_timeout`: a message ends after this much silence.
    pub voicemail_silence_secs: u32,
    /// `voicemail.min_length`: a shorter message is not kept, and the call
    /// counts as missed.
    pub voicemail_min_secs: u32,
    /// `voicemail.internal_calls`: unanswered internal calls go to the
    /// callee's voicemail.
    pub voicemail_internal: bool,
    /// `voicemail.access_code`: what a phone dials to hear its owner's
    /// voicemail ("" = none).
    pub voicemail_code: String,
    /// `calls.pickup_code`: what a phone dials to answer a call ringing
    /// another phone (followed by an extension: that phone's call); empty
    /// turns pickup off.
    pub pickup_code: String,
    /// `calls.park_code`: the target of a transfer that parks the call.
    pub park_code: String,
    /// `calls.park_retrieve_code`: dialled with the slot, takes a parked
    /// call back.
    pub park_retrieve_code: String,
    /// `calls.park_timeout`: a parked call nobody took back rings the phone
    /// that parked it after this long.
    pub park_timeout_ms: u64,
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
            sips_port: 5061,
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
            voicemail_greeting: "Please leave a message after the tone.".into(),
            voicemail_max_secs: 180,
            voicemail_silence_secs: 10,
            voicemail_min_secs: 3,
            voicemail_internal: true,
            voicemail_code: "*97".into(),
            pickup_code: "*8".into(),
            park_code: "*70".into(),
            park_retrieve_code: "*71".into(),
            park_timeout_ms: 60_000,
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
    /// UDP, or TLS for a secure trunk (`sips:` or `;transport=tls`), whose
    /// calls are also SRTP.
    pub transport: crate::sip::Transport,
}

impl Termination {
    /// Where requests to the trunk go.
    pub fn peer(&self) -> Peer {
        Peer {
            transport: self.transport,
            ..Peer::udp(self.addr)
        }
        .with_local(self.local)
    }

    /// The name a secure trunk's certificate must carry: the host without
    /// the port or an IPv6 address's brackets.
    pub fn tls_name(&self) -> &str {
        let h = &self.host;
        match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => h.split(':').next().unwrap_or_default(),
        }
    }

    /// The Request-URI for `user` (an E.164 number) at the trunk.
    pub fn uri(&self, user: &str) -> String {
        match self.transport {
            crate::sip::Transport::Tls => format!("sip:{user}@{};transport=tls", self.host),
            _ => format!("sip:{user}@{}", self.host),
        }
    }
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
    /// A voicemail call names the mailbox its recording goes to.
    MediaRelease {
        call_id: String,
        voicemail: Option<Voicemail>,
    },
    /// sipd answered the caller itself: mediad plays `prompts` to the
    /// A-leg, then records it for up to `record_secs` (none: no recording),
    /// ending sooner after `silence_secs` of the caller's silence (0: never).
    MediaPlay {
        call_id: String,
        /// "a" (the caller, sipd answered it) or "b" (an announcement to
        /// the other leg of a relayed call, played once).
        leg: Leg,
        prompts: Vec<Prompt>,
        record_secs: Option<u32>,
        silence_secs: u32,
    },
    /// Start (`enabled`) or pause the call's recording.
    MediaRecord { call_id: String, enabled: bool },
    /// Tell mediad about a leg ("a" caller, "b" callee): its SDP address
    /// and codecs, the call being answered, hold.
    MediaUpdate {
        call_id: String,
        leg: Leg,
        media: Option<super::sdp::LegMedia>,
        established: Option<bool>,
        hold: Option<bool>,
        /// The leg hears hold music (the other side has the call on hold)
        /// or, `false`, the other side again.
        music: Option<bool>,
    },
    /// A leg's SRTP keys changed (`None`: plain RTP from now on).
    MediaCrypto {
        call_id: String,
        leg: Leg,
        keys: Option<proto::sdes::LegKeys>,
    },
    /// A leg is a browser's: ICE-lite and DTLS-SRTP with these parameters.
    MediaWebrtc {
        call_id: String,
        leg: Leg,
        webrtc: proto::webrtc::WebrtcLeg,
    },
    /// A change to a call's CDR row.
    Cdr(Cdr),
    /// A call listens to `user_id`'s mailbox: read it and answer with
    /// [`Core::mailbox_loaded`].
    MailboxList { call_id: String, user_id: UserId },
    /// A voicemail was heard on the phone (twiliod marks it read).
    VoicemailRead { id: i64 },
    /// A voicemail was deleted on the phone (twiliod deletes it).
    VoicemailDelete { id: i64 },
}

/// Something mediad plays to a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Read out by the speech engine.
    Text(String),
    /// A WAV file, relative to the data dir (a voicemail's audio).
    File(String),
    /// The record tone.
    Beep,
}

/// A message left on an internal call, for its mailbox's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voicemail {
    pub user_id: UserId,
    /// The caller as the UI shows it (extension or number) and their name.
    pub from_number: String,
    pub from_name: String,
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

pub struct Core {
    cfg: CoreConfig,
    devices: HashMap<String, Device>,
    extensions: HashMap<String, String>,
    /// Device ids whose owner has Do Not Disturb on.
    dnd: HashSet<DeviceId>,
    txns: Transactions,
    nonces: Nonces,
    abuse: Abuse,
    registrar: Registrar,
    keepalives: HashMap<String, Keepalive>,
    /// The round's keepalives still to send, a batch at a time, and when
    /// the next batch goes (see `endpoint/keepalive.rs`).
    keepalive_queue: VecDeque<(DeviceId, String, Peer)>,
    next_keepalive_batch: Option<u64>,
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
    /// Browser phones' connections and the device each speaks for.
    ws_devices: HashMap<u64, DeviceId>,
    /// mediad's DTLS certificate fingerprint (from its allocations).
    dtls_fingerprint: Option<proto::webrtc::Fingerprint>,
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
            keepalive_queue: VecDeque::new(),
            next_keepalive_batch: None,
            mwi: mwi::Mwi::default(),
            calls: b2bua::Calls::default(),
            next_keepalive: None,
            next_sweep: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            addrs,
            trunk_ping: None,
            ws_devices: HashMap::new(),
            dtls_fingerprint: None,
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

    /// Replaces the device list (the shell reloads it from `devices`). A
    /// device whose credentials changed (a new password, another realm) or
    /// that is gone loses its registrations: the phone must register again
    /// with what the admin gave it.
    pub fn set_devices(&mut self, devices: impl IntoIterator<Item = Device>) {
        let before: HashMap<DeviceId, (String, String)> = self
            .devices
            .values()
            .map(|d| (d.id, (d.ha1_md5.clone(), d.realm.clone())))
            .collect();
        self.devices.clear();
        self.extensions.clear();
        for d in devices {
            if let Some(e) = &d.extension {
                self.extensions.insert(e.clone(), d.username.clone());
            }
            self.devices.insert(d.username.clone(), d);
        }
        for (id, creds) in before {
            let same = self
                .devices
                .values()
                .any(|d| d.id == id && (&d.ha1_md5, &d.realm) == (&creds.0, &creds.1));
            if !same {
                self.registrar.forget(id);
            }
        }
    }

    /// The devices whose owner has Do Not Disturb on: internal calls to
    /// them are refused.
    pub fn set_dnd(&mut self, devices: impl IntoIterator<Item = DeviceId>) {
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
            Ok(Inbound::Request(r)) => {
                let _tsx = tsx_span(&r.raw, &r.via.branch).entered();
                self.hop_in(&peer, &r.raw);
                self.handle_request(now, peer, *r);
            }
            Ok(Inbound::Response(r)) => {
                let _tsx = tsx_span(&r.raw, &r.via.branch).entered();
                self.trunk_pong(&peer, &r);
                self.hop_in(&peer, &r.raw);
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
            self.queue_keepalives();
        }
        if self.next_keepalive_batch.is_some_and(|at| now >= at) {
            self.send_keepalive_batch(now);
        }
        self.collect_changes();
    }

    /// The shell could not open a connection to `addr` (a secure trunk that
    /// is down, or whose certificate was refused). INVITEs waiting on it
    /// fail now, as Timer B would have failed them 32 s later (RFC 3261
    /// section 8.1.3.1 asks for the transport error to be reported at once;
    /// the caller hears 503).
    pub fn unreachable(&mut self, now: u64, addr: std::net::SocketAddr) {
        self.b2b_unreachable(now, addr);
        self.handle_timeout(now);
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.txns.poll_timeout(),
            self.calls.next_timeout(),
            self.next_keepalive,
            self.next_keepalive_batch,
            (self.cfg.termination.is_some() && self.cfg.trunk_ping_ms > 0)
                .then_some(self.next_trunk_ping),
            Some(self.next_sweep),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next message to send; SDP gets its dialog's SRTP profile and
    /// key on the way out (see `b2bua::hops`).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = match self.txns.poll_transmit() {
            Some(t) => t,
            None => self.out.pop_front()?,
        };
        Some(self.hop_out(t))
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

/// The identifier generator's seed: an HMAC of a label with the secret, so
/// it is independent of the nonce key.
fn id_seed(secret: &[u8; 32]) -> [u8; 32] {
    let Ok(mut m) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return *secret;
    };
    m.update(b"gosip sip identifiers");
    m.finalize().into_bytes().into()
}

/// Raw is re-exported for the shell's framing helpers.
pub type RawMessage = Raw;

/// The span every log line about one message carries: the transaction
/// (RFC 3261 section 17: the top Via branch and the CSeq method) and the
/// call it belongs to, so the lines of one call can be found by Call-ID.
fn tsx_span(raw: &msg::Raw, branch: &str) -> tracing::Span {
    let method = raw.cseq().map_or("", |(_, m)| m);
    let call_id = raw.get("call-id").unwrap_or_default();
    tracing::info_span!("tsx", call_id, branch, method)
}

#[cfg(test)]
mod tests;
