//! The shell around the sans-IO core: UDP and TCP sockets (Content-Length
//! framing, CRLF keep-alive pong), a fair inbox so one flooding address
//! cannot starve the others, the timer loop, settings and device hot
//! reload, the database writer, and call events for notifyd.

pub mod call_records;
pub mod grpc;
pub mod media;
pub mod notify;
pub mod store;
pub mod stun;
pub mod tls;
pub mod transport;
pub mod ws;

use proto::types::{DeviceId, UserId};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use proto::settings::{Settings, SettingsHandle};

use crate::sip::abuse::BanPolicy;
use crate::sip::core::{Core, CoreConfig, Event};
use crate::sip::registrar::ExpiryPolicy;
use transport::{Conns, Inbox};

/// Milliseconds since the Unix epoch: the core's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub use proto::sip_auth::host_name;

/// Reads the core's settings from a snapshot.
/// `sip_addr` is where UDP and TCP listen, `sips_port` the TLS port.
pub fn core_config(s: &Settings, sip_addr: std::net::SocketAddr, sips_port: u16) -> CoreConfig {
    let realm = crate::effective_realm(s.str("sip.realm"));
    let secs = |k: &str| u32::try_from(s.u64(k)).unwrap_or(u32::MAX);
    let typed = |k: &str| Some(s.str(k).trim().to_string()).filter(|v| !v.is_empty());
    let local_nets = local_networks();
    let trunk_user = s.str("twilio.trunk_username").trim().to_string();
    let trunk_pass = s.str("twilio.trunk_password");
    let trunk = (!trunk_user.is_empty() && !trunk_pass.is_empty()).then(|| {
        let (md5, sha) = crate::ha1(&trunk_user, &realm, trunk_pass);
        crate::sip::registrar::Device {
            id: crate::sip::core::TRUNK_ID,
            username: trunk_user.clone(),
            ha1_md5: md5,
            ha1_sha256: sha,
            realm: realm.clone(),
            extension: None,
            recording: false,
            caller_id: None,
            mwi_unsolicited: false,
            busy_in_call: false,
            srtp: Default::default(),
            tls_only: false,
            mailbox: None,
        }
    });
    let trunk_ips = s
        .str("sip.trunk_source_ips")
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    CoreConfig {
        trunk,
        trunk_ips,
        realm,
        expiry: ExpiryPolicy {
            min: secs("sip.min_expires"),
            max: secs("sip.max_expires").max(secs("sip.min_expires")),
            default: secs("sip.default_expires"),
        },
        ban: BanPolicy {
            threshold: secs("sip.ban_threshold"),
            window_ms: s.u64("sip.ban_window") * 1000,
            duration_ms: s.u64("sip.ban_duration") * 1000,
        },
        nonce_ttl_ms: s.u64("sip.nonce_ttl").max(1) * 1000,
        offer_sha256: s.bool("sip.digest_sha256"),
        keepalive_interval_ms: s.u64("sip.keepalive_interval") * 1000,
        keepalive_failures: secs("sip.keepalive_failures"),
        local_host: typed("sip.local_address"),
        public_host: typed("sip.public_address"),
        sip_port: sip_addr.port(),
        sips_port,
        default_host: proto::netaddr::default_address(sip_addr.ip(), &local_nets).to_string(),
        local_nets,
        trunk_ping_ms: s.u64("sip.trunk_options_interval") * 1000,
        ring_timeout_ms: s.u64("calls.ring_timeout").max(1) * 1000,
        record_dtmf: s.str("calls.record_dtmf").trim().to_string(),
        termination: termination(s),
        default_country: s
            .str("system.default_country")
            .trim()
            .trim_start_matches('+')
            .to_string(),
        allow_premium: s.bool("calls.allow_premium"),
        allow_international: s.bool("calls.allow_international"),
        call_limits: crate::sip::limits::CallLimits {
            max_concurrent: secs("calls.max_concurrent_per_device"),
            max_per_hour: secs("calls.max_per_hour_per_device"),
        },
        system_dnd: s.bool("routing.dnd"),
        voicemail_greeting: s.str("voicemail.greeting").trim().to_string(),
        voicemail_max_secs: secs("voicemail.max_length"),
        voicemail_silence_secs: secs("voicemail.silence_timeout"),
        voicemail_min_secs: secs("voicemail.min_length"),
        voicemail_internal: s.bool("voicemail.internal_calls"),
        voicemail_code: s.str("voicemail.access_code").trim().to_string(),
        pickup_code: s.str("calls.pickup_code").trim().to_string(),
        park_code: s.str("calls.park_code").trim().to_string(),
        park_retrieve_code: s.str("calls.park_retrieve_code").trim().to_string(),
        park_timeout_ms: s.u64("calls.park_timeout").max(1) * 1000,
    }
}

/// The trunk's termination side from `twilio.termination_uri` (read as
/// webd checked it, [`proto::trunk::TrunkUri`]) and the trunk credentials.
/// The host is resolved here (IPv4 first); `None` when unset, unusable or
/// unresolvable.
fn termination(s: &Settings) -> Option<crate::sip::core::Termination> {
    let value = s.str("twilio.termination_uri");
    let uri = match proto::trunk::TrunkUri::parse(value) {
        Ok(u) => u?,
        Err(why) => {
            tracing::warn!(uri = %value, "the termination uri {why}; no calls go to the trunk");
            return None;
        }
    };
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = match uri.socket_host().to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            tracing::warn!(host = %uri.host, error = %e, "cannot resolve the termination uri");
            return None;
        }
    };
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()?;
    Some(crate::sip::core::Termination {
        host: uri.authority(),
        local: route_local(addr),
        addr,
        username: s.str("twilio.trunk_username").trim().to_string(),
        password: s.str("twilio.trunk_password").to_string(),
        transport: match uri.transport {
            proto::trunk::TrunkTransport::Udp => crate::sip::Transport::Udp,
            proto::trunk::TrunkTransport::Tls => crate::sip::Transport::Tls,
        },
    })
}

pub use proto::netaddr::{local_networks, route_local};

/// Requested UDP socket buffer sizes.
const UDP_BUFFER: usize = 4 << 20;

/// Answers a device reload with the number of devices in use, once the
/// core has them.
type ReloadAck = oneshot::Sender<Result<usize, ReloadError>>;

/// Why a device reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The SIP core's loop is gone (sipd is stopping).
    #[error("sip core stopped")]
    Stopped,
    /// The `devices` table could not be read.
    #[error("cannot read devices: {0}")]
    Database(String),
}

/// Asks sipd to re-read the `devices` table now: webd calls the gRPC
/// `ReloadDevices` after every device change, so a phone can register the
/// moment its device exists.
#[derive(Clone)]
pub struct DeviceReload {
    tx: mpsc::Sender<ReloadAck>,
}

impl DeviceReload {
    /// A handle, and the receiving side [`serve`] takes; `every` is the
    /// fallback period of the re-read in case a request was missed.
    pub fn channel(every: Duration) -> (Self, DeviceRequests) {
        let (tx, rx) = mpsc::channel(64);
        (Self { tx }, DeviceRequests { rx, every })
    }

    /// Re-reads the devices; returns how many the core now knows.
    pub async fn reload(&self) -> Result<usize, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(tx).await.map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The receiving side of [`DeviceReload`].
pub struct DeviceRequests {
    rx: mpsc::Receiver<ReloadAck>,
    every: Duration,
}

/// A device list for the core, and the requests it answers.
struct DeviceList {
    devices: Vec<crate::sip::registrar::Device>,
    /// Devices whose owner has Do Not Disturb on.
    dnd: Vec<DeviceId>,
    acks: Vec<ReloadAck>,
}

/// What the gRPC service and mediad's events ask of the core task.
pub enum Command {
    /// mediad's answer to an allocation.
    MediaReady {
        call_id: String,
        /// Port a, port b and mediad's DTLS fingerprint (for browsers).
        ports: Option<(u16, u16, Option<proto::webrtc::Fingerprint>)>,
    },
    /// End a call (gRPC Hangup, mediad rtp_timeout).
    Hangup {
        call_id: String,
        why: String,
        reply: Option<tokio::sync::oneshot::Sender<bool>>,
    },
    /// Start or pause a call's recording (gRPC SetRecording).
    SetRecording {
        call_id: String,
        enabled: bool,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Click-to-call: ring the device, then dial the number.
    Originate {
        call_id: String,
        device_id: DeviceId,
        to_number: String,
        reply: tokio::sync::oneshot::Sender<Result<String, (u16, String)>>,
    },
    /// No connection could be opened to `addr` (see [`transport::Dialer`]).
    Unreachable { addr: std::net::SocketAddr },
    /// A DTMF digit mediad saw on a leg.
    Dtmf {
        call_id: String,
        leg: crate::sip::core::Leg,
        digit: String,
    },
    /// A public address learned by STUN.
    PublicLearned { ip: std::net::IpAddr },
    /// The calls in progress.
    ListCalls {
        reply: tokio::sync::oneshot::Sender<Vec<crate::sip::core::CallInfo>>,
    },
    /// (new, old) voicemails of each device's owner, for message-waiting.
    VoicemailCounts(std::collections::HashMap<DeviceId, (u32, u32)>),
    /// The mailbox a call listens to, as read from the database.
    Mailbox {
        call_id: String,
        messages: Vec<crate::sip::core::StoredMessage>,
    },
    /// A phone's TCP, TLS or WebSocket connection closed: the registrations
    /// made over it go (see [`Core::connection_closed`]).
    ConnClosed {
        transport: crate::sip::Transport,
        conn: u64,
    },
    /// mediad finished playing to a call.
    PlayDone {
        call_id: String,
        leg: crate::sip::core::Leg,
    },
}

/// The stream listeners: TCP, and TLS with its acceptor; and the
/// connector for a secure trunk.
pub struct Streams {
    pub tcp: TcpListener,
    pub tls: (TcpListener, tls::Served),
    /// SIP over WebSocket from webd, and the secret webd proves itself with.
    pub ws: (TcpListener, proto::grpc::Secret),
    pub trunk: tokio_rustls::TlsConnector,
}

/// Runs the SIP side of sipd until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    udp: UdpSocket,
    streams: Streams,
    pool: SqlitePool,
    settings: SettingsHandle,
    media: media::Media,
    mut commands: mpsc::Receiver<Command>,
    cmd_tx: mpsc::Sender<Command>,
    devices: DeviceRequests,
    notifier: notify::Notifier,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sip_addr = udp.local_addr()?;
    let sips_port = streams.tls.0.local_addr()?.port();
    // Bursts from many phones (or the benchmark) must not overflow the
    // kernel queue while the core works; the kernel caps this at rmem_max.
    let sock = socket2::SockRef::from(&udp);
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    transport::enable_pktinfo(&udp);
    let udp = Arc::new(udp);
    let inbox = Inbox::new();
    let conns = Conns::default();
    let core = load_core(&pool, &settings, (sip_addr, sips_port)).await?;

    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let writer = tokio::spawn(db_writer(pool.clone(), ev_rx));
    let (mut dev_rx, dialer) = spawn_helpers(
        Helpers {
            udp: &udp,
            streams,
            inbox: &inbox,
            conns: &conns,
            pool: &pool,
            settings: &settings,
            cmd_tx: &cmd_tx,
            devices,
        },
        &shutdown,
    );

    let mut shell = Shell {
        core,
        pool: pool.clone(),
        settings: settings.clone(),
        udp_wildcard: sip_addr.ip().is_unspecified(),
        udp,
        conns,
        dialer,
        ev_tx,
        notifier,
        media,
        cmd_tx,
    };
    // Addresses are written when they change; twiliod names the public one
    // in the TwiML of the first call, which may come right after sipd
    // learned it, so the check is frequent (a write only on change).
    let mut addr_tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_addrs = Vec::new();
    let mut settings_rx = settings.subscribe();
    let mut timer = CoreTimer::default();
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        timer.arm(shell.core.poll_timeout());
        tokio::select! {
            _ = &mut cancelled => break,
            _ = inbox.ready() => {
                // A bounded batch, round-robin over source addresses.
                for _ in 0..256 {
                    let Some(item) = inbox.pop() else { break };
                    match item.device {
                        Some(d) => shell.core.handle_ws_message(now_ms(), item.peer, d, &item.data),
                        None => shell.core.handle_message(now_ms(), item.peer, &item.data),
                    }
                    shell.flush().await;
                }
            }
            () = timer.fired() => shell.core.handle_timeout(now_ms()),
            _ = addr_tick.tick() => {
                let rows = address_rows(&shell.core);
                if rows != last_addrs {
                    match store::write_addresses(&pool, &rows).await {
                        Ok(()) => last_addrs = rows,
                        Err(e) => tracing::warn!(error = %e, "cannot store sip addresses"),
                    }
                }
            }
            changed = settings_rx.changed() => {
                if changed.is_ok() {
                    let cfg = core_config(&settings_rx.borrow_and_update(), sip_addr, sips_port);
                    if &cfg != shell.core.config() {
                        tracing::info!(realm = %cfg.realm, "sip settings changed");
                        shell.core.set_config(now_ms(), cfg);
                    }
                }
            }
            Some(list) = dev_rx.recv() => {
                let n = list.devices.len();
                shell.core.set_devices(list.devices);
                shell.core.set_dnd(list.dnd);
                for ack in list.acks {
                    let _ = ack.send(Ok(n));
                }
            }
            Some(cmd) = commands.recv() => shell.command(cmd),
        }
        shell.flush().await;
    }
    drop(shell.ev_tx);
    let _ = writer.await;
    shell.notifier.finish().await;
    Ok(())
}

/// One timer for the core's next deadline (or a second from now when it
/// has none), moved only when the deadline changes or it fired: a fresh
/// timer on every pass through the core loop cost a timer-wheel insert and
/// removal per message under load.
struct CoreTimer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The core deadline `sleep` is set for.
    deadline: Option<u64>,
}

impl Default for CoreTimer {
    fn default() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            deadline: None,
        }
    }
}

impl CoreTimer {
    /// Sets the timer for `next` (ms since the epoch) unless it already is.
    fn arm(&mut self, next: Option<u64>) {
        if next != self.deadline || self.sleep.is_elapsed() {
            let wait = next.map_or(Duration::from_secs(1), |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
            self.sleep
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
            self.deadline = next;
        }
    }

    /// Resolves when the deadline passes.
    fn fired(&mut self) -> &mut std::pin::Pin<Box<tokio::time::Sleep>> {
        &mut self.sleep
    }
}

/// What the tasks beside the core loop need.
struct Helpers<'a> {
    udp: &'a Arc<UdpSocket>,
    streams: Streams,
    inbox: &'a Inbox,
    conns: &'a Conns,
    pool: &'a SqlitePool,
    settings: &'a SettingsHandle,
    cmd_tx: &'a mpsc::Sender<Command>,
    devices: DeviceRequests,
}

/// Starts the tasks beside the core loop: the UDP reader and TCP acceptor
/// filling the inbox, the STUN client, the voicemail counter and the device
/// reloader, whose device lists come back on the returned channel (devices
/// are read off the core task so a slow query never stalls SIP); and the
/// dialer for a secure trunk.
fn spawn_helpers(
    h: Helpers<'_>,
    shutdown: &CancellationToken,
) -> (mpsc::Receiver<DeviceList>, transport::Dialer) {
    let (stun_tx, stun_rx) = mpsc::channel(16);
    tokio::spawn(transport::udp_reader(
        h.udp.clone(),
        h.inbox.clone(),
        stun_tx,
        shutdown.clone(),
    ));
    tokio::spawn(stun_client(
        h.udp.clone(),
        h.settings.clone(),
        stun_rx,
        h.cmd_tx.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(transport::tcp_acceptor(
        h.streams.tcp,
        h.inbox.clone(),
        (h.conns.clone(), h.cmd_tx.clone()),
        shutdown.clone(),
    ));
    let dialer = transport::Dialer {
        tls: h.streams.trunk,
        conns: h.conns.clone(),
        inbox: h.inbox.clone(),
        failed: h.cmd_tx.clone(),
        shutdown: shutdown.clone(),
    };
    let (ws, secret) = h.streams.ws;
    tokio::spawn(ws::acceptor(
        ws,
        ws::WsShared {
            secret,
            inbox: h.inbox.clone(),
            conns: h.conns.clone(),
            commands: h.cmd_tx.clone(),
            shutdown: shutdown.clone(),
        },
    ));
    let (tls, acceptor) = h.streams.tls;
    tokio::spawn(transport::tls_acceptor(
        tls,
        acceptor,
        h.inbox.clone(),
        (h.conns.clone(), h.cmd_tx.clone()),
        shutdown.clone(),
    ));
    tokio::spawn(voicemail_counter(
        h.pool.clone(),
        h.cmd_tx.clone(),
        shutdown.clone(),
    ));
    let (dev_tx, dev_rx) = mpsc::channel(1);
    tokio::spawn(device_reloader(
        h.pool.clone(),
        h.devices,
        dev_tx,
        shutdown.clone(),
    ));
    (dev_rx, dialer)
}

/// The core as the database leaves it: settings, devices, do-not-disturb
/// and the registrations that have not expired (a restart keeps phones
/// reachable without waiting for them to register again).
async fn load_core(
    pool: &SqlitePool,
    settings: &SettingsHandle,
    (sip_addr, sips_port): (std::net::SocketAddr, u16),
) -> anyhow::Result<Core> {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let mut core = Core::new(core_config(&settings.get(), sip_addr, sips_port), secret);
    core.set_devices(store::load_devices(pool).await?);
    core.set_dnd(store::load_dnd(pool).await?);
    let bindings = store::load_bindings(pool, now_ms()).await?;
    tracing::info!(
        realm = %core.config().realm,
        restored = bindings.len(),
        "registrar ready"
    );
    for b in bindings {
        core.restore(b);
    }
    Ok(core)
}

/// The sans-IO core with the I/O it drives: the sockets its datagrams go
/// out on, the database writer, notifyd and mediad.
struct Shell {
    core: Core,
    pool: SqlitePool,
    settings: SettingsHandle,
    udp: Arc<UdpSocket>,
    /// Whether `udp` is bound to the wildcard address (read once, not a
    /// getsockname call per answer).
    udp_wildcard: bool,
    conns: Conns,
    dialer: transport::Dialer,
    ev_tx: mpsc::UnboundedSender<Event>,
    notifier: notify::Notifier,
    media: media::Media,
    cmd_tx: mpsc::Sender<Command>,
}

impl Shell {
    /// Sends what the core queued and hands its events on: media work to
    /// mediad, rows to the database writer, CDRs and alerts also to notifyd.
    async fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            let Some(t) = transport::send((&self.udp, self.udp_wildcard), &self.conns, t).await
            else {
                continue;
            };
            match self.core.config().termination.as_ref() {
                Some(trunk)
                    if trunk.transport == crate::sip::Transport::Tls
                        && trunk.addr == t.peer.addr =>
                {
                    self.dialer.dial(t.peer.addr, trunk.tls_name(), t.data);
                }
                _ => tracing::debug!(dst = %t.peer.addr, "no tcp connection to send on"),
            }
        }
        while let Some(e) = self.core.poll_event() {
            let media = &self.media;
            match e {
                Event::MediaAllocate { call_id } => media.allocate(call_id, self.cmd_tx.clone()),
                Event::MediaRelease { call_id, voicemail } => media.release(call_id, voicemail),
                Event::MediaPlay {
                    call_id,
                    leg,
                    prompts,
                    record_secs,
                    silence_secs,
                } => media.play(
                    call_id,
                    leg,
                    prompts,
                    (record_secs, silence_secs),
                    self.cmd_tx.clone(),
                ),
                Event::MailboxList { call_id, user_id } => self.read_mailbox(call_id, user_id),
                Event::VoicemailRead { id } => media.voicemail_heard(id),
                Event::VoicemailDelete { id } => media.voicemail_delete(id),
                Event::MediaUpdate {
                    call_id,
                    leg,
                    media: m,
                    established,
                    hold,
                    music,
                } => media.update_leg(call_id, leg, m, established, (hold, music)),
                Event::MediaRecord { call_id, enabled } => media.record(call_id, enabled),
                Event::MediaWebrtc {
                    call_id,
                    leg,
                    webrtc,
                } => {
                    media.set_webrtc(call_id, leg, &webrtc);
                }
                Event::MediaCrypto { call_id, leg, keys } => {
                    media.set_crypto(call_id, leg, keys.as_ref());
                }
                Event::Cdr(c) => {
                    self.notifier.cdr(&c);
                    let _ = self.ev_tx.send(Event::Cdr(c));
                }
                Event::Alert { kind, message } => {
                    self.notifier.alert(kind, &message);
                    let _ = self.ev_tx.send(Event::Alert { kind, message });
                }
                e => {
                    let _ = self.ev_tx.send(e);
                }
            }
        }
    }

    /// Reads the mailbox a call listens to, off the core task; the core
    /// hears of it as [`Command::Mailbox`].
    fn read_mailbox(&self, call_id: String, user_id: UserId) {
        let (pool, tx) = (self.pool.clone(), self.cmd_tx.clone());
        let tz = self.settings.get().str("system.timezone").to_string();
        tokio::spawn(async move {
            let messages = match store::mailbox(&pool, user_id, &tz).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(call_id = %call_id, error = %e, "cannot read the mailbox");
                    Vec::new()
                }
            };
            let _ = tx.send(Command::Mailbox { call_id, messages }).await;
        });
    }

    /// Applies a command from gRPC, mediad or a helper task to the core.
    fn command(&mut self, cmd: Command) {
        let _call = match &cmd {
            Command::MediaReady { call_id, .. }
            | Command::Hangup { call_id, .. }
            | Command::SetRecording { call_id, .. }
            | Command::Originate { call_id, .. }
            | Command::Dtmf { call_id, .. }
            | Command::Mailbox { call_id, .. }
            | Command::PlayDone { call_id, .. } => tracing::info_span!("call", call_id).entered(),
            _ => tracing::Span::none().entered(),
        };
        let core = &mut self.core;
        match cmd {
            Command::MediaReady { call_id, ports } => {
                if let Some(fp) = ports.and_then(|p| p.2) {
                    core.set_dtls_fingerprint(fp);
                }
                core.media_ready(now_ms(), &call_id, ports.map(|(a, b, _)| (a, b)))
            }
            Command::Unreachable { addr } => core.unreachable(now_ms(), addr),
            Command::Hangup {
                call_id,
                why,
                reply,
            } => {
                let found = core.hangup(now_ms(), &call_id, &why);
                if let Some(r) = reply {
                    let _ = r.send(found);
                }
            }
            Command::SetRecording {
                call_id,
                enabled,
                reply,
            } => {
                let _ = reply.send(core.set_recording(&call_id, enabled));
            }
            Command::Originate {
                call_id,
                device_id,
                to_number,
                reply,
            } => {
                let _ = reply.send(core.originate(now_ms(), &call_id, device_id, &to_number));
            }
            Command::Dtmf {
                call_id,
                leg,
                digit,
            } => core.dtmf(&call_id, leg, &digit),
            Command::PublicLearned { ip } => {
                core.learn_public(ip, crate::sip::core::AddrSource::Stun);
            }
            Command::VoicemailCounts(counts) => core.set_voicemail_counts(now_ms(), counts),
            Command::ListCalls { reply } => {
                let _ = reply.send(core.calls());
            }
            Command::Mailbox { call_id, messages } => core.mailbox_loaded(&call_id, messages),
            Command::PlayDone { call_id, leg } => core.play_done(now_ms(), &call_id, leg),
            Command::ConnClosed { transport, conn } => {
                core.connection_closed(now_ms(), transport, conn);
            }
        }
    }
}

/// The addresses sipd uses now, as rows for `sip_addresses`: the public
/// one, the typed local one, the default, and each local address phones
/// reached.
fn address_rows(core: &Core) -> Vec<(String, String, &'static str)> {
    use crate::sip::core::AddrSource;
    let a = core.addresses();
    let mut rows = Vec::new();
    if let Some((h, src)) = a.public_host() {
        rows.push(("public".to_string(), h, src.as_str()));
    }
    if let Some(h) = a.local_host() {
        rows.push((
            "local".to_string(),
            h.to_string(),
            AddrSource::Setting.as_str(),
        ));
    }
    rows.push((
        "default".to_string(),
        a.default_host().to_string(),
        AddrSource::Default.as_str(),
    ));
    let mut seen: Vec<std::net::IpAddr> = core
        .registrar()
        .all()
        .filter_map(|b| b.source.local)
        .collect();
    seen.sort();
    seen.dedup();
    for ip in seen {
        rows.push((
            format!("phones:{ip}"),
            ip.to_string(),
            AddrSource::Packet.as_str(),
        ));
    }
    rows
}

/// How often the STUN server is asked while it answers.
const STUN_EVERY: Duration = Duration::from_secs(300);
/// How long one Binding request waits for its answer.
const STUN_WAIT: Duration = Duration::from_secs(3);

/// Asks `sip.stun_server` (when set) for the public address of the SIP
/// socket, now and every [`STUN_EVERY`]. A server that does not answer
/// leaves the last learned address in place and is logged once until it
/// answers again.
async fn stun_client(
    udp: Arc<UdpSocket>,
    settings: SettingsHandle,
    mut answers: mpsc::Receiver<(std::net::SocketAddr, Vec<u8>)>,
    cmd_tx: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    let mut changes = settings.subscribe();
    let mut failing = false;
    loop {
        let server = settings.get().str("sip.stun_server").trim().to_string();
        if !server.is_empty() {
            match stun_once(&udp, &server, &mut answers).await {
                Ok(ip) => {
                    failing = false;
                    let _ = cmd_tx.send(Command::PublicLearned { ip }).await;
                }
                Err(why) if !failing => {
                    failing = true;
                    tracing::warn!(server = %server, why = %why, "STUN server gave no address; keeping the last one");
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(STUN_EVERY) => {}
            r = changes.changed() => if r.is_err() { return },
        }
    }
}

/// Why a STUN Binding request gave no address.
#[derive(Debug, thiserror::Error)]
enum StunError {
    #[error("cannot resolve: {0}")]
    Resolve(std::io::Error),
    #[error("no IPv4 address")]
    NoIpv4,
    #[error("cannot send: {0}")]
    Send(std::io::Error),
    #[error("no answer")]
    NoAnswer,
    #[error("stopped")]
    Stopped,
}

/// One Binding request to `server` (`host` or `host:port`, port 3478).
async fn stun_once(
    udp: &UdpSocket,
    server: &str,
    answers: &mut mpsc::Receiver<(std::net::SocketAddr, Vec<u8>)>,
) -> Result<std::net::IpAddr, StunError> {
    let with_port = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_string()
    } else {
        format!("{server}:3478")
    };
    let dst = tokio::net::lookup_host(&with_port)
        .await
        .map_err(StunError::Resolve)?
        .find(|a| a.is_ipv4())
        .ok_or(StunError::NoIpv4)?;
    let mut tid = [0u8; 12];
    rand::fill(&mut tid);
    while answers.try_recv().is_ok() {}
    udp.send_to(&stun::binding_request(tid), dst)
        .await
        .map_err(StunError::Send)?;
    let deadline = tokio::time::Instant::now() + STUN_WAIT;
    loop {
        let got = tokio::time::timeout_at(deadline, answers.recv())
            .await
            .map_err(|_| StunError::NoAnswer)?
            .ok_or(StunError::Stopped)?;
        if got.0 == dst
            && let Some(a) = stun::mapped_address(&got.1, &tid)
        {
            return Ok(a.ip());
        }
    }
}

/// Reads the voicemail counts of every device's owner every 2 s (a
/// voicemail arriving, played or deleted anywhere) and hands a changed set
/// to the core, which tells the subscribed phones (message-waiting light).
/// The read also expires subscriptions, so it is sent at least every 30 s.
/// How often CDR links to recordings are checked against the files.
const RECORDING_LINKS_EVERY: Duration = Duration::from_secs(600);

/// Keeps CDRs from linking to recordings mediad's retention sweep deleted:
/// at start, then every [`RECORDING_LINKS_EVERY`]. sipd owns the CDRs;
/// mediad only deletes its files.
pub async fn recording_links(
    pool: SqlitePool,
    data_dir: std::path::PathBuf,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(RECORDING_LINKS_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store::forget_missing_recordings(&pool, &data_dir).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(cleared = n, "calls no longer link to deleted recordings"),
            Err(e) => tracing::warn!(error = %e, "cannot check recording links"),
        }
    }
}

async fn voicemail_counter(
    pool: SqlitePool,
    cmd_tx: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        n = n.wrapping_add(1);
        match store::voicemail_counts(&pool).await {
            Ok(c) if last.as_ref() != Some(&c) || n.is_multiple_of(15) => {
                last = Some(c.clone());
                if cmd_tx.send(Command::VoicemailCounts(c)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "cannot read voicemail counts"),
        }
    }
}

/// Re-reads the devices off the core task when asked, and every
/// `requests.every` in case a request was missed (a webd that could not
/// reach sipd, a row changed by hand). Periodic reads hand over only a
/// changed list; a request always goes through the core so its answer
/// comes after the list is in use.
async fn device_reloader(
    pool: SqlitePool,
    mut requests: DeviceRequests,
    tx: mpsc::Sender<DeviceList>,
    shutdown: CancellationToken,
) {
    let mut last = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(requests.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut acks = Vec::new();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            Some(ack) = requests.rx.recv() => acks.push(ack),
        }
        // Requests that queued meanwhile share this read.
        while let Ok(ack) = requests.rx.try_recv() {
            acks.push(ack);
        }
        let loaded = match store::load_devices(&pool).await {
            Ok(d) => store::load_dnd(&pool).await.map(|dnd| (d, dnd)),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(d) if d != last || !acks.is_empty() => {
                last = d.clone();
                let (devices, dnd) = d;
                if tx.send(DeviceList { devices, dnd, acks }).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reload devices");
                for ack in acks {
                    let _ = ack.send(Err(ReloadError::Database(e.to_string())));
                }
            }
        }
    }
}

/// Least time between two writes of the database writer. A quiet system
/// writes each event at once; under a burst what comes in meanwhile waits
/// in a [`store::Batch`], where a binding refreshed many times is one row.
const WRITE_GAP: Duration = Duration::from_millis(500);

/// Writes events in batches so a burst of registrations is a few
/// transactions, not one per REGISTER.
async fn db_writer(pool: SqlitePool, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut batch = store::Batch::default();
    let mut buf = Vec::new();
    let mut next = tokio::time::Instant::now();
    while rx.recv_many(&mut buf, 1024).await > 0 {
        buf.drain(..).for_each(|e| batch.push(e));
        // Whatever comes before the gap since the last write has passed
        // goes into this write; the channel closing ends the wait early.
        let closed = tokio::time::timeout_at(next, async {
            while rx.recv_many(&mut buf, 1024).await > 0 {
                buf.drain(..).for_each(|e| batch.push(e));
            }
        })
        .await
        .is_ok();
        let events = batch.len();
        if let Err(e) = batch.write(&pool).await {
            tracing::error!(error = %e, events, "cannot store registrations");
        }
        if closed {
            break;
        }
        buf.shrink_to(64);
        next = tokio::time::Instant::now() + WRITE_GAP;
    }
}
