//! sipd owns SIP: UDP and TCP transport, the transaction layer, digest
//! authentication, the registrar and call control (B2BUA), and the CDRs of the
//! calls it bridges. Media never passes through sipd: mediad relays it.
//!
//! `src/sip/` is the sans-IO core (no sockets, no clock reads); `src/net/` is
//! the shell that feeds it bytes and time.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::settings::SettingsHandle;

/// sipd's flags; each has a `GOSIP_*` env twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "sipd", version, about = "GoSIP SIP server")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address SIP listens on (UDP and TCP).
    #[arg(long, env = "GOSIP_SIP_BIND", default_value = "0.0.0.0")]
    pub sip_bind: String,
    /// SIP port, UDP and TCP.
    #[arg(long, env = "GOSIP_SIP_PORT", default_value_t = proto::defaults::SIP_PORT)]
    pub sip_port: u16,
    /// SIP over TLS port (on the same address).
    #[arg(long, env = "GOSIP_SIPS_PORT", default_value_t = proto::defaults::SIPS_PORT)]
    pub sips_port: u16,
    /// Where webd opens SIP over WebSocket for the phone in the browser
    /// (loopback: only webd, holding the daemons' secret, may connect).
    #[arg(long, env = "GOSIP_SIP_WS", default_value = proto::defaults::SIPD_WS)]
    pub sip_ws: String,
    /// sipd's gRPC address.
    #[arg(long, env = "GOSIP_SIPD_GRPC", default_value = proto::defaults::SIPD_GRPC)]
    pub grpc: String,
    /// mediad's gRPC address.
    #[arg(long, env = "GOSIP_MEDIAD_GRPC", default_value = proto::defaults::MEDIAD_GRPC)]
    pub mediad_grpc: String,
    /// notifyd's gRPC address.
    #[arg(long, env = "GOSIP_NOTIFYD_GRPC", default_value = proto::defaults::NOTIFYD_GRPC)]
    pub notifyd_grpc: String,
    /// twiliod's gRPC address (it stores the voicemails of internal calls).
    #[arg(long, env = "GOSIP_TWILIOD_GRPC", default_value = proto::defaults::TWILIOD_GRPC)]
    pub twiliod_grpc: String,
    /// Seconds between re-reads of the devices table. webd asks for a
    /// re-read after every device change (gRPC ReloadDevices); this is the
    /// fallback for a request that was missed or a row changed by hand.
    #[arg(long, env = "GOSIP_DEVICE_RELOAD_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub device_reload_secs: u64,
    /// Extra root certificates (PEM) a secure trunk's certificate may
    /// chain to, beside the platform's: for a private trunk.
    #[arg(long, env = "GOSIP_TRUNK_CA_FILE")]
    pub trunk_ca_file: Option<std::path::PathBuf>,
}

/// The sockets sipd serves, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    /// SIP over TLS.
    pub tls: TcpListener,
    /// SIP over WebSocket from webd (the browser phone).
    pub ws: TcpListener,
    pub grpc: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        let sip: SocketAddr = format!("{}:{}", cfg.sip_bind, cfg.sip_port)
            .parse()
            .context("GOSIP_SIP_BIND/GOSIP_SIP_PORT")?;
        Ok(Self {
            udp: UdpSocket::bind(sip)
                .await
                .with_context(|| format!("bind udp {sip}"))?,
            tcp: TcpListener::bind(sip)
                .await
                .with_context(|| format!("bind tcp {sip}"))?,
            tls: TcpListener::bind((sip.ip(), cfg.sips_port))
                .await
                .with_context(|| format!("bind tls {}:{}", sip.ip(), cfg.sips_port))?,
            ws: proto::daemon::bind_tcp(&cfg.sip_ws).await?,
            grpc: proto::daemon::bind_tcp(&cfg.grpc).await?,
        })
    }
}

/// Runs sipd until `shutdown` is cancelled.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Three connections: the registration writer, the device reader and
    // one for the rest. Each is a thread of its own with its own page
    // cache and malloc arena, which a registration flood would otherwise
    // spread over eight.
    let pool = proto::db::open_with(&cfg.common.data_dir, 3)
        .await
        .context("open database")?;
    let settings = SettingsHandle::new(pool.clone()).await?;
    tokio::spawn(
        settings
            .clone()
            .poll(std::time::Duration::from_secs(5), shutdown.clone()),
    );
    tracing::info!(
        udp = %listeners.udp.local_addr()?,
        tcp = %listeners.tcp.local_addr()?,
        tls = %listeners.tls.local_addr()?,
        ws = %listeners.ws.local_addr()?,
        grpc = %listeners.grpc.local_addr()?,
        "sipd listening"
    );
    let secret = proto::grpc::Secret::load_or_create(&cfg.common.data_dir)?;
    let media = net::media::Media::new(&cfg.mediad_grpc, &cfg.twiliod_grpc, pool.clone(), &secret)?;
    tokio::spawn(net::recording_links(
        pool.clone(),
        cfg.common.data_dir.clone(),
        shutdown.clone(),
    ));
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(media.clone().events(cmd_tx.clone(), shutdown.clone()));
    let (device_reload, device_requests) =
        net::DeviceReload::channel(std::time::Duration::from_secs(cfg.device_reload_secs));
    let tls_port = listeners.tls.local_addr()?.port();
    let tls = net::tls::Served::load(&cfg.common.data_dir, &settings.get(), tls_port)?;
    tokio::spawn(tls.clone().watch(
        cfg.common.data_dir.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    let sipd_service = net::grpc::SipdService::new(
        cmd_tx.clone(),
        device_reload.clone(),
        tls.clone(),
        pool.clone(),
    );
    let sip = tokio::spawn(net::serve(
        listeners.udp,
        net::Streams {
            tcp: listeners.tcp,
            tls: (listeners.tls, tls),
            ws: (listeners.ws, secret.clone()),
            trunk: net::tls::connector(cfg.trunk_ca_file.as_deref())?,
        },
        pool.clone(),
        settings.clone(),
        media,
        cmd_rx,
        cmd_tx,
        device_requests,
        net::notify::Notifier::start(&cfg.notifyd_grpc, pool.clone(), &secret)?,
        shutdown.clone(),
    ));
    let daemon = DaemonService::new("sipd", pool.clone(), settings.clone());
    let grpc = tonic::transport::Server::builder()
        .layer(proto::grpc::RequireSecret::new(secret))
        .add_service(net::grpc::SipdDaemon::new(daemon, device_reload))
        .add_service(sipd_service)
        .serve_with_incoming_shutdown(
            proto::daemon::incoming(listeners.grpc),
            shutdown.clone().cancelled_owned(),
        );
    let result = tokio::select! {
        r = grpc => r.context("grpc server"),
        r = sip => match r {
            Ok(r) => r.context("sip server"),
            Err(e) => Err(anyhow::anyhow!("sip task: {e}")),
        },
    };
    shutdown.cancel();
    result?;
    tracing::info!("sipd stopped");
    Ok(())
}

pub mod net;
pub mod sip;

/// HA1 for a device's SIP password in both forms RFC 2617 and RFC 8760 use:
/// `(MD5 hex, SHA-256 hex)` of `username:realm:password`. webd stores these
/// in `devices.password_hash` / `devices.ha1_sha256`.
pub fn ha1(username: &str, realm: &str, password: &str) -> (String, String) {
    sip::digest::ha1(username, realm, password)
}

/// The digest realm sipd uses for a `sip.realm` setting value: the value
/// itself, or the host name when it is empty. webd hashes device passwords
/// for this realm.
pub fn effective_realm(setting: &str) -> String {
    proto::sip_auth::realm(setting)
}

proto::daemon_runtime!("sipd", |cfg| proto::daemon::probe(&cfg.grpc).await);
