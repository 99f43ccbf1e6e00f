//! twiliod owns everything Twilio: the REST client with its durable queue,
//! the signed webhooks (voice, SMS, recording, transcription), the routing
//! rules engine and TwiML, voicemail, SMS/MMS and auto-replies.
//!
//! `rules.rs`, `twiml.rs` and `signature.rs` are pure; the rest is I/O.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::settings::SettingsHandle;

/// twiliod's flags; each has a `GOSIP_*` env twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "twiliod", version, about = "GoSIP Twilio bridge")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Webhook HTTP address (webd forwards /api/webhooks/* here).
    #[arg(long, env = "GOSIP_TWILIOD_HTTP", default_value = proto::defaults::TWILIOD_HTTP)]
    pub http: String,
    /// twiliod's gRPC address.
    #[arg(long, env = "GOSIP_TWILIOD_GRPC", default_value = proto::defaults::TWILIOD_GRPC)]
    pub grpc: String,
    /// notifyd's gRPC address.
    #[arg(long, env = "GOSIP_NOTIFYD_GRPC", default_value = proto::defaults::NOTIFYD_GRPC)]
    pub notifyd_grpc: String,
    /// sipd's SIP port, for the `<Sip>` URI (host comes from sip.public_address).
    #[arg(long, env = "GOSIP_SIP_PORT", default_value_t = proto::defaults::SIP_PORT)]
    pub sip_port: u16,
}

/// The sockets twiliod serves, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: proto::daemon::bind_tcp(&cfg.http).await?,
            grpc: proto::daemon::bind_tcp(&cfg.grpc).await?,
        })
    }
}

/// Runs twiliod until `shutdown` is cancelled.
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
    tracing::info!(
        http = %listeners.http.local_addr()?,
        grpc = %listeners.grpc.local_addr()?,
        "twiliod listening"
    );
    let http = axum::Router::new();
    let stop = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(listeners.http, http)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    let daemon = DaemonService::new("twiliod", pool.clone(), settings.clone());
    tonic::transport::Server::builder()
        .add_service(daemon.into_server())
        .serve_with_incoming_shutdown(
            proto::daemon::incoming(listeners.grpc),
            shutdown.cancelled_owned(),
        )
        .await
        .context("grpc server")?;
    http_task
        .await
        .context("http task")?
        .context("http server")?;
    tracing::info!("twiliod stopped");
    Ok(())
}
