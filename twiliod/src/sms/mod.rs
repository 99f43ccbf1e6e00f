//! SMS/MMS: inbound webhooks (stored, media downloaded, forwarded to email,
//! auto-replied), status callbacks (status only moves forward), outbound
//! sending through a durable queue (written before sending, retried with
//! exponential backoff, sent once, in order per conversation), the expiring
//! media URLs Twilio fetches outgoing MMS from, and conversation queries.
//!
//! Layout: `inbound` (webhook), `outbound` (validation, rows, the send job),
//! `worker` (the `jobs` queue `twiliod.sms`), `api` (the two Messages REST
//! calls), `media` (download and serving), `conversations` (queries for the
//! UI), `status` and `keywords` (pure).
//!
//! Exactly-once sending: the message row is written (status `queued`) before
//! anything is sent, and the job that sends it is written in the same
//! transaction. Every attempt carries a fresh random token in its
//! StatusCallback URL (`?gosip_mid=<id>&gosip_tok=<token>`), and
//! `first_attempt_at` is set before the first POST. When a later attempt
//! starts and no SID was recorded (the POST timed out, Twilio answered 5xx
//! after creating it, or twiliod died before writing the answer), the job
//! first lists Twilio's messages `To`/`From`/`DateSent>=` the first attempt
//! and adopts one with the same body created since then that no row of ours
//! has claimed; a status callback carrying our token also attaches its SID to
//! the row. Only when neither finds it is the POST repeated.

pub mod api;
pub mod conversations;
pub mod inbound;
pub mod keywords;
pub mod media;
pub mod outbound;
pub mod status;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use axum::Router;
use axum::routing::{get, post};
use proto::settings::SettingsHandle;
use sqlx::SqlitePool;

pub use outbound::{SendError, SendRequest, send_message};

/// The `jobs.queue` SMS work lives in.
pub const QUEUE: &str = "twiliod.sms";

/// Everything the SMS code needs, cheap to clone.
#[derive(Clone)]
pub struct SmsContext {
    pub pool: SqlitePool,
    pub settings: SettingsHandle,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    /// notifyd's gRPC address (`host:port`).
    pub notifyd_grpc: String,
    /// Wakes the queue worker when a job is written.
    pub wake: Arc<tokio::sync::Notify>,
    /// Consecutive failed Twilio requests (reset by a success).
    pub failures: Arc<AtomicU32>,
}

impl SmsContext {
    pub fn new(
        pool: SqlitePool,
        settings: SettingsHandle,
        data_dir: PathBuf,
        notifyd_grpc: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            pool,
            settings,
            data_dir,
            http,
            notifyd_grpc,
            wake: Arc::new(tokio::sync::Notify::new()),
            failures: Arc::new(AtomicU32::new(0)),
        }
    }

    /// The public base URL (no trailing slash), empty when not set.
    pub fn public_url(&self) -> String {
        self.settings
            .get()
            .str("system.public_url")
            .trim_end_matches('/')
            .to_owned()
    }
}

/// The Twilio-signed webhook routes (mount them behind the signature check).
pub fn webhook_routes(ctx: SmsContext) -> Router {
    Router::new()
        .route("/api/webhooks/sms/incoming", post(inbound::incoming))
        .route("/api/webhooks/sms/status", post(inbound::status_callback))
        .with_state(ctx)
}

/// Unsigned routes: the media Twilio fetches for outgoing MMS. The random,
/// expiring token in the path is the credential.
pub fn public_routes(ctx: SmsContext) -> Router {
    Router::new()
        .route("/api/webhooks/media/{token}", get(media::serve))
        .with_state(ctx)
}
