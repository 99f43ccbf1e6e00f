//! mediad owns media: RTP/RTCP relay between the two legs of a call with
//! symmetric latching (NAT), recording to WAV, RTP-timeout detection and
//! per-leg stats. It never speaks SIP: sipd allocates and releases port
//! pairs over gRPC.
//!
//! `src/relay/` is the pure core (latching, port pool, WAV framing); the rest
//! is the shell around sockets and time.

pub mod relay;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::settings::SettingsHandle;

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
    tokio::spawn(
        settings
            .clone()
            .poll(std::time::Duration::from_secs(5), shutdown.clone()),
    );
    tracing::info!(grpc = %listeners.grpc.local_addr()?, rtp_ports = %cfg.rtp_ports, "mediad listening");
    let daemon = DaemonService::new("mediad", pool.clone(), settings.clone());
    tonic::transport::Server::builder()
        .add_service(daemon.into_server())
        .serve_with_incoming_shutdown(
            proto::daemon::incoming(listeners.grpc),
            shutdown.cancelled_owned(),
        )
        .await
        .context("grpc server")?;
    tracing::info!("mediad stopped");
    Ok(())
}
