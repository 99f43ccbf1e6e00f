//! notifyd owns outgoing notifications: email (SMTP or Postmark), Gotify push
//! and outgoing event webhooks, each job stored before it is acknowledged and
//! retried on the schedule the settings give.
//!
//! It must not decide who gets what beyond the users' own preferences
//! (`notify_prefs`): which events exist is the calling daemon's business.
//! See README.md in this folder for the event fields and webhook signature.

pub mod deliver;
pub mod event;
pub mod guard;
pub mod prefs;
pub mod queue;
pub mod service;
pub mod templates;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::settings::SettingsHandle;

/// notifyd's flags; each has a `GOSIP_*` env twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "notifyd", version, about = "GoSIP notifications")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// notifyd's gRPC address.
    #[arg(long, env = "GOSIP_NOTIFYD_GRPC", default_value = proto::defaults::NOTIFYD_GRPC)]
    pub grpc: String,
}

/// The sockets notifyd serves, bound by the caller (tests bind port 0).
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

/// Runs notifyd until `shutdown` is cancelled.
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
            .poll(std::time::Duration::from_secs(5), shutdown.clone()),
    );
    let ctx = Arc::new(worker::Ctx::new(
        pool.clone(),
        settings.clone(),
        cfg.common.data_dir.clone(),
    )?);
    let dispatcher = tokio::spawn(worker::dispatch(ctx.clone(), shutdown.clone()));
    tokio::spawn(worker::watch_alerts(
        ctx.clone(),
        std::time::Duration::from_secs(2),
        shutdown.clone(),
    ));
    tokio::spawn(worker::janitor(ctx.clone(), shutdown.clone()));
    tracing::info!(grpc = %listeners.grpc.local_addr()?, "notifyd listening");
    let probe_ctx = ctx.clone();
    let daemon = DaemonService::new("notifyd", pool.clone(), settings.clone()).with_probe(
        Arc::new(move || {
            let last = probe_ctx
                .email_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default();
            if last.is_empty() {
                String::new()
            } else {
                format!("email failing: {last}")
            }
        }),
    );
    tonic::transport::Server::builder()
        .layer(proto::grpc::RequireSecret::new(secret))
        .add_service(daemon.into_server())
        .add_service(service::NotifyService::new(ctx.clone()).into_server())
        .serve_with_incoming_shutdown(
            proto::daemon::incoming(listeners.grpc),
            shutdown.cancelled_owned(),
        )
        .await
        .context("grpc server")?;
    let _ = dispatcher.await;
    tracing::info!("notifyd stopped");
    Ok(())
}

proto::daemon_runtime!("notifyd", |cfg| proto::daemon::probe(&cfg.grpc).await);
