//! webd owns the web side: the REST API under `/api/`, accounts, sessions and
//! roles, the setup wizard, backup and restore, and the built SPA. It forwards
//! `/api/webhooks/*` to twiliod so one public port serves everything. Call,
//! media, Twilio and notification work happens in the other daemons, reached
//! over gRPC.

pub mod accounts;
pub mod api;
pub mod backup;
pub mod files;
pub mod health;
pub mod http;
pub mod qr;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use proto::daemon::CommonArgs;
use proto::grpc::AuthChannel;
use proto::settings::SettingsHandle;

/// webd's flags; each has a `GOSIP_*` env twin.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "webd", version, about = "GoSIP web UI and REST API")]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address the HTTP server binds.
    #[arg(long, env = "GOSIP_HTTP_BIND", default_value = "0.0.0.0")]
    pub http_bind: String,
    /// HTTP port of the UI and API.
    #[arg(long, env = "GOSIP_HTTP_PORT", default_value_t = proto::defaults::HTTP_PORT)]
    pub http_port: u16,
    /// Folder of the built SPA (web-ui/dist).
    #[arg(long, env = "GOSIP_WEB_DIR", default_value = "web-ui/dist")]
    pub web_dir: PathBuf,
    #[arg(long, env = "GOSIP_SIPD_GRPC", default_value = proto::defaults::SIPD_GRPC)]
    pub sipd_grpc: String,
    /// sipd's SIP over WebSocket listener, which the browser phone's
    /// `/ws/sip` is relayed to.
    #[arg(long, env = "GOSIP_SIP_WS", default_value = proto::defaults::SIPD_WS)]
    pub sipd_ws: String,
    #[arg(long, env = "GOSIP_MEDIAD_GRPC", default_value = proto::defaults::MEDIAD_GRPC)]
    pub mediad_grpc: String,
    #[arg(long, env = "GOSIP_TWILIOD_GRPC", default_value = proto::defaults::TWILIOD_GRPC)]
    pub twiliod_grpc: String,
    #[arg(long, env = "GOSIP_NOTIFYD_GRPC", default_value = proto::defaults::NOTIFYD_GRPC)]
    pub notifyd_grpc: String,
    /// twiliod's webhook HTTP address, where `/api/webhooks/*` is forwarded.
    #[arg(long, env = "GOSIP_TWILIOD_HTTP", default_value = proto::defaults::TWILIOD_HTTP)]
    pub twiliod_http: String,
    /// sipd's SIP port, written into softphone provisioning QR codes.
    #[arg(long, env = "GOSIP_SIP_PORT", default_value_t = proto::defaults::SIP_PORT)]
    pub sip_port: u16,
    /// A session used this long after its expiry was last pushed out is
    /// pushed out again (and its cookie sent again); less often saves
    /// database writes, more often keeps expiry exact.
    #[arg(long, env = "GOSIP_SESSION_REFRESH_SECS", default_value_t = 300)]
    pub session_refresh_secs: u64,
}

/// The sockets webd serves, bound by the caller (tests bind port 0).
pub struct Listeners {
    pub http: TcpListener,
}

impl Listeners {
    pub async fn bind(cfg: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            http: proto::daemon::bind_tcp(&format!("{}:{}", cfg.http_bind, cfg.http_port)).await?,
        })
    }
}

/// gRPC channels to the other daemons; they connect lazily and reconnect,
/// and every call carries the daemons' shared secret from the data dir.
#[derive(Clone)]
pub struct Peers {
    pub sipd: AuthChannel,
    pub mediad: AuthChannel,
    pub twiliod: AuthChannel,
    pub notifyd: AuthChannel,
    /// The daemons' shared secret (the browser phone's WebSocket to sipd
    /// carries it too).
    pub secret: proto::grpc::Secret,
}

impl Peers {
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let secret = proto::grpc::Secret::load_or_create(&cfg.common.data_dir)?;
        Ok(Self {
            sipd: proto::grpc::channel(&cfg.sipd_grpc, &secret)?,
            mediad: proto::grpc::channel(&cfg.mediad_grpc, &secret)?,
            twiliod: proto::grpc::channel(&cfg.twiliod_grpc, &secret)?,
            notifyd: proto::grpc::channel(&cfg.notifyd_grpc, &secret)?,
            secret,
        })
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub pool: SqlitePool,
    pub settings: SettingsHandle,
    pub peers: Peers,
    pub data_dir: PathBuf,
    pub cfg: Config,
    /// Set when `quick_check` fails: writes answer 503, reads keep working.
    pub read_only: std::sync::atomic::AtomicBool,
    /// In-memory throttles (failed logins per address, API key rate, QR secrets).
    pub limits: accounts::Limits,
    /// Plain HTTP client for forwarding webhooks to twiliod.
    pub http: reqwest::Client,
    /// Totals and seek keys of the CDR and message lists.
    pub lists: http::ListCache,
    /// The one-time token the setup wizard requires while no admin exists.
    pub setup_token: std::sync::Mutex<Option<String>>,
    /// The health endpoint's last `quick_check` (when, passed).
    pub quick_check: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl AppState {
    /// Builds the state around an open pool (tests use this too).
    pub async fn new(cfg: Config, pool: SqlitePool) -> anyhow::Result<Self> {
        let settings = SettingsHandle::new(pool.clone()).await?;
        let peers = Peers::new(&cfg)?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .context("http client")?;
        let st = Self {
            inner: Arc::new(Inner {
                pool,
                settings,
                peers,
                data_dir: cfg.common.data_dir.clone(),
                cfg,
                read_only: std::sync::atomic::AtomicBool::new(false),
                limits: accounts::Limits::default(),
                quick_check: std::sync::Mutex::new(None),
                http,
                lists: Default::default(),
                setup_token: Default::default(),
            }),
        };
        api::setup::prepare_token(&st)
            .await
            .context("setup token")?;
        Ok(st)
    }

    /// True while the database failed its integrity check.
    pub fn is_read_only(&self) -> bool {
        self.read_only.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

/// The whole HTTP app: API plus the SPA.
pub fn app(state: AppState) -> Router {
    let index = state.cfg.web_dir.join("index.html");
    let spa = tower_http::services::ServeDir::new(&state.cfg.web_dir)
        .fallback(tower_http::services::ServeFile::new(index));
    api::router(state.clone())
        .fallback_service(spa)
        .layer(axum::middleware::from_fn_with_state(state, api::guard))
}

/// Runs webd until `shutdown` is cancelled.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = proto::db::open(&cfg.common.data_dir)
        .await
        .context("open database")?;
    let state = AppState::new(cfg, pool).await?;
    tokio::spawn(
        state
            .settings
            .clone()
            .poll(Duration::from_secs(5), shutdown.clone()),
    );
    health::check_database(&state).await;
    tokio::spawn(health::watch_database(state.clone(), shutdown.clone()));
    tokio::spawn(backup::schedule(state.clone(), shutdown.clone()));
    tokio::spawn(accounts::sweep(state.clone(), shutdown.clone()));
    tracing::info!(http = %listeners.http.local_addr()?, "webd listening");
    axum::serve(
        listeners.http,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .context("http server")?;
    tracing::info!("webd stopped");
    Ok(())
}

proto::daemon_runtime!("webd", |cfg| health::probe(cfg.http_port).await);
