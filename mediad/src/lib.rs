//! mediad owns media: RTP/RTCP relay between the two legs of a call with
//! symmetric latching (NAT) and plain RTP or SRTP per leg, recording to
//! WAV, RTP-timeout detection and per-leg stats. It never speaks SIP: sipd
//! allocates and releases port pairs over gRPC.
//!
//! `src/relay/` is the pure core (port pool, RTP parsing and stats, SRTP,
//! latching, RFC 4733 DTMF, G.711, the recording timeline, and for calls
//! mediad answers itself the player, resampler and voicemail timeline); it
//! never touches a socket or reads the clock. The shell: `service` (gRPC,
//! contract in `proto/proto/mediad.proto`), `call` (one task per call
//! relaying its four UDP sockets, or sending what it plays), `runners`
//! (the media threads the call tasks run on, `GOSIP_MEDIA_THREADS`, one by
//! default), `udp` (a socket's queue in one `recvmmsg`), `doorbell` (a
//! call's task polls only the sources that woke it), `recording`
//! (WAV files, retention sweep), `prompts` (speech by espeak-ng and its
//! cache, WAV prompts from the data dir).
//!
//! Recordings: `$GOSIP_DATA_DIR/recordings/YYYY/MM/DD/<call id>.wav`, stereo
//! 8 kHz 16-bit, left = A-leg, right = B-leg. A write error stops the
//! recording (event `recording_failed` + an `alerts` row), never the relay.
//! Voicemails: `$GOSIP_DATA_DIR/voicemails/incoming/<call id>.wav`, mono.

pub mod call;
pub mod doorbell;
pub mod prompts;
pub mod recording;
pub mod relay;
pub mod runners;
pub mod service;
pub mod udp;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::pb::mediad::mediad_server::MediadServer;
use proto::settings::SettingsHandle;

/// How often old recordings are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How long calls get at shutdown to close their recordings.
const CALL_DRAIN: Duration = Duration::from_secs(5);

/// mediad's flags; each has a `GOSIP_*` env twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "mediad", version, about = "GoSIP RTP relay and recorder")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// mediad's gRPC address.
    #[arg(long, env = "GOSIP_MEDIAD_GRPC", default_value = proto::defaults::MEDIAD_GRPC)]
    pub grpc: String,
    /// UDP port range for RTP (even ports; RTCP is port + 1).
    #[arg(long, env = "GOSIP_RTP_PORTS", default_value = proto::defaults::RTP_PORTS)]
    pub rtp_ports: String,
    /// Address the RTP sockets bind to.
    #[arg(long, env = "GOSIP_RTP_BIND", default_value = "0.0.0.0")]
    pub rtp_bind: String,
    /// A call with no RTP/RTCP and no request from sipd for this many
    /// seconds is released by mediad (sipd restarted and forgot it).
    #[arg(long, env = "GOSIP_MEDIA_ORPHAN_SECS", default_value_t = 3600)]
    pub orphan_secs: u64,
    /// Threads relaying calls' media (see `runners`). One carries a home
    /// office many times over (500 relayed calls are about a third of a
    /// core) and wakes least; more spread a large site over cores.
    #[arg(long, env = "GOSIP_MEDIA_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_threads: u16,
    /// notifyd's gRPC address: alerts the database cannot take (a full
    /// disk) go there directly.
    #[arg(long, env = "GOSIP_NOTIFYD_GRPC", default_value = proto::defaults::NOTIFYD_GRPC)]
    pub notifyd_grpc: String,
}

/// The sockets mediad serves, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub grpc: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            grpc: proto::daemon::bind_tcp(&cfg.grpc).await?,
        })
    }
}

/// Runs mediad until `shutdown` is cancelled.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = proto::db::open(&cfg.common.data_dir)
        .await
        .context("open database")?;
    let settings = SettingsHandle::new(pool.clone()).await?;
    let secret = proto::grpc::Secret::load_or_create(&cfg.common.data_dir)?;
    tokio::spawn(
        settings
            .clone()
            .poll(Duration::from_secs(5), shutdown.clone()),
    );
    let ports = relay::pool::PortPool::parse(&cfg.rtp_ports)?;
    let bind_ip: IpAddr = cfg
        .rtp_bind
        .parse()
        .with_context(|| format!("GOSIP_RTP_BIND {:?} is not an IP address", cfg.rtp_bind))?;
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let (ended, ended_rx) = tokio::sync::mpsc::unbounded_channel();
    let alerts = proto::alerts::Alerter::new(pool.clone(), "mediad", &cfg.notifyd_grpc, &secret)?;
    tokio::spawn(alerts.clone().run(shutdown.clone()));
    let env = call::Env {
        alerts,
        orphan_after: Duration::from_secs(cfg.orphan_secs.max(1)),
        ended,
        data_dir: cfg.common.data_dir.clone(),
        pool: pool.clone(),
        settings: settings.subscribe(),
        events,
        shutdown: shutdown.clone(),
        identity: std::sync::Arc::new(
            relay::webrtc::Identity::generate().context("DTLS certificate for browsers")?,
        ),
    };
    tracing::info!(fingerprint = %env.identity.fingerprint, "DTLS certificate for browsers");
    let runners = runners::Runners::start(cfg.media_threads.into(), &shutdown, CALL_DRAIN)
        .context("start the media threads")?;
    let media = service::MediaService::new(bind_ip, ports, env, runners);
    tokio::spawn(media.clone().reap(ended_rx));
    tokio::spawn(sweep_recordings(
        cfg.common.data_dir.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    tracing::info!(grpc = %listeners.grpc.local_addr()?, rtp_ports = %cfg.rtp_ports, rtp_bind = %bind_ip, "mediad listening");
    let probe_media = media.clone();
    let calls = media.clone();
    let daemon = DaemonService::new("mediad", pool.clone(), settings.clone()).with_probe(Arc::new(
        move || {
            if probe_media.free_ports() < 2 {
                format!("RTP ports exhausted ({} calls)", probe_media.active_calls())
            } else {
                String::new()
            }
        },
    ));
    tonic::transport::Server::builder()
        .layer(proto::grpc::RequireSecret::new(secret))
        .add_service(daemon.into_server())
        .add_service(MediadServer::new(media))
        .serve_with_incoming_shutdown(
            proto::daemon::incoming(listeners.grpc),
            shutdown.cancelled_owned(),
        )
        .await
        .context("grpc server")?;
    calls.join_calls(CALL_DRAIN).await;
    tracing::info!("mediad stopped");
    Ok(())
}

/// Deletes recordings older than `recording.retention_days`, at start and
/// then hourly (sipd, which owns the CDRs, then clears their links).
async fn sweep_recordings(
    data_dir: std::path::PathBuf,
    settings: SettingsHandle,
    stop: CancellationToken,
) {
    let dir = data_dir.join("recordings");
    loop {
        let days = settings.get().u64("recording.retention_days");
        if days > 0 {
            let d = dir.clone();
            let now = std::time::SystemTime::now();
            match tokio::task::spawn_blocking(move || recording::sweep(&d, now, days)).await {
                Ok(Ok(gone)) if gone.is_empty() => {}
                Ok(Ok(gone)) => {
                    tracing::info!(
                        deleted = gone.len(),
                        retention_days = days,
                        "old recordings deleted"
                    );
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "recording sweep failed"),
                Err(e) => tracing::warn!(error = %e, "recording sweep panicked"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

proto::daemon_runtime!("mediad", |cfg| proto::daemon::probe(&cfg.grpc).await);
