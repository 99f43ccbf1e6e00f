//! twiliod owns everything Twilio: the REST client with its durable queue,
//! the signed webhooks (voice, SMS, recording, transcription), the routing
//! rules engine and TwiML, voicemail, SMS/MMS and auto-replies.
//!
//! `rules.rs`, `twiml.rs`, `signature.rs` and `wav.rs` are pure; the rest is I/O.
//!
//! Shared building blocks (used by voice and SMS alike):
//! * [`client::TwilioClient`]: the one REST client (retries, backoff, typed errors),
//! * [`queue::Queue`]: the durable job queue (`jobs` table, queue = 'twiliod'),
//! * [`webhooks::router`]: the signature-checked webhook router,
//! * [`notify`]: queued hand-offs to notifyd,
//! * [`AppState`]: what every handler and job gets.

pub mod autoreply;
pub mod call_end;
pub mod call_record;
pub mod client;
pub mod grpc;
pub mod menu;
pub mod notify;
pub mod queue;
pub mod rules;
pub mod ruleset;
pub mod signature;
pub mod siphost;
pub mod sms;
pub mod trunk;
pub mod twiml;
pub mod voice;
pub mod voicemail;
pub mod warnings;
pub mod wav;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::{CommonArgs, DaemonService};
use proto::settings::SettingsHandle;

use crate::client::TwilioClient;
use crate::queue::Queue;

/// What every webhook handler, gRPC method and job handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub settings: SettingsHandle,
    pub twilio: TwilioClient,
    pub queue: Queue,
    /// The data dir (rows hold paths relative to it).
    pub data_dir: PathBuf,
    /// sipd's SIP port (for `<Dial><Sip>` URIs).
    pub sip_port: u16,
    /// The routing rules snapshot, hot-reloaded.
    pub rules: ruleset::RulesCache,
    /// The address sipd published for `<Sip>` URIs.
    pub sip_host: siphost::SipHost,
    /// sipd, which writes the call records (`cdrs`).
    pub call_records: call_record::CallRecords,
}

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
    /// sipd's gRPC address (it writes the call records).
    #[arg(long, env = "GOSIP_SIPD_GRPC", default_value = proto::defaults::SIPD_GRPC)]
    pub sipd_grpc: String,
    /// sipd's SIP port, for the `<Sip>` URI (host comes from sip.public_address).
    #[arg(long, env = "GOSIP_SIP_PORT", default_value_t = proto::defaults::SIP_PORT)]
    pub sip_port: u16,
    /// First retry delay of the durable queue in ms (doubles up to 5 min).
    #[arg(long, env = "GOSIP_TWILIOD_RETRY_BASE_MS", default_value_t = 2000)]
    pub retry_base_ms: u64,
    /// Seconds between listings of our numbers at Twilio for the status
    /// warnings (emergency addresses); a settings change lists at once too.
    #[arg(long, env = "GOSIP_TWILIOD_WARNINGS_EVERY_SECS", default_value_t = 600)]
    pub warnings_every_secs: u64,
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
    let secret = proto::grpc::Secret::load_or_create(&cfg.common.data_dir)?;
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
    let state = AppState::build(&cfg, pool.clone(), settings.clone()).await?;
    register_jobs(&state, &cfg, &secret);
    tokio::spawn(state.queue.clone().run(shutdown.clone()));
    tokio::spawn(state.rules.clone().run(shutdown.clone()));
    tokio::spawn(state.sip_host.clone().run(pool.clone(), shutdown.clone()));

    // SMS: `sms::webhook_routes` are signed Twilio webhooks,
    // `sms::public_routes` the unsigned ones (media links).
    let http = webhooks::router(
        state.clone(),
        sms::webhook_routes(state.clone()),
        sms::public_routes(state.clone()),
    );
    let stop = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(
            listeners.http,
            http.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    });
    let warnings = warnings::Warnings::new(settings.clone(), state.twilio.clone());
    tokio::spawn(warnings.clone().run(
        pool.clone(),
        Duration::from_secs(cfg.warnings_every_secs),
        shutdown.clone(),
    ));
    let daemon = DaemonService::new("twiliod", pool.clone(), settings.clone())
        .with_warnings(Arc::new(move || warnings.current()));
    tonic::transport::Server::builder()
        .layer(proto::grpc::RequireSecret::new(secret))
        .add_service(daemon.into_server())
        .add_service(grpc::Service::new(state.clone()).into_server())
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

impl AppState {
    /// Builds the shared state (REST client with its failure alert, queue,
    /// rules cache) without starting anything.
    pub async fn build(
        cfg: &Config,
        pool: SqlitePool,
        settings: SettingsHandle,
    ) -> anyhow::Result<AppState> {
        build_state(cfg, pool, settings).await
    }
}

async fn build_state(
    cfg: &Config,
    pool: SqlitePool,
    settings: SettingsHandle,
) -> anyhow::Result<AppState> {
    let rules = ruleset::RulesCache::new(pool.clone(), settings.clone())
        .await
        .context("load rules")?;
    let queue = Queue::new(pool.clone()).with_backoff(
        Duration::from_millis(cfg.retry_base_ms.max(1)),
        Duration::from_secs(300),
    );
    let alert_pool = pool.clone();
    let alert_queue = queue.clone();
    let twilio = TwilioClient::new(settings.clone()).on_failure_streak(Arc::new(move |n, err| {
        let pool = alert_pool.clone();
        let queue = alert_queue.clone();
        let message = format!("Twilio API failed {n} times in a row; last error: {err}");
        tokio::spawn(async move { admin_alert(&pool, &queue, "twilio_failing", &message).await });
    }));
    Ok(AppState {
        pool,
        settings,
        twilio,
        queue,
        data_dir: cfg.common.data_dir.clone(),
        sip_port: cfg.sip_port,
        rules,
        sip_host: siphost::SipHost::default(),
        call_records: call_record::CallRecords::new(proto::grpc::channel(
            &cfg.sipd_grpc,
            &proto::grpc::Secret::load_or_create(&cfg.common.data_dir)?,
        )?),
    })
}

/// Registers every job kind twiliod runs. The SMS module registers its own
/// kinds here too (`crate::sms::register_jobs(state)`).
fn register_jobs(state: &AppState, cfg: &Config, secret: &proto::grpc::Secret) {
    notify::register(&state.queue, cfg.notifyd_grpc.clone(), secret.clone());
    voicemail::register(state);
    call_end::register(state);
    call_record::register(state);
    sms::register_jobs(state);
}

/// Records an admin alert (`alerts` row, shown in the UI) and queues an
/// `admin_alert` notification so notifyd mails the admins.
pub async fn admin_alert(pool: &SqlitePool, queue: &Queue, kind: &str, message: &str) {
    tracing::error!(kind, message, "admin alert");
    if let Err(e) = proto::db::alert(pool, "twiliod", kind, message).await {
        tracing::error!(error = %e, "cannot record alert");
    }
    let notice = notify::Notice {
        kind: "admin_alert".into(),
        user_id: 0,
        payload: serde_json::json!({"source": "twiliod", "kind": kind, "message": message}),
        attachments: vec![],
    };
    if let Err(e) = notify::enqueue(queue, notice, None).await {
        tracing::error!(error = %e, "cannot queue admin alert");
    }
}

proto::daemon_runtime!("twiliod", |cfg| proto::daemon::probe(&cfg.grpc).await);
