//! SMS/MMS: inbound webhooks (stored, media downloaded, forwarded to email,
//! auto-replied), status callbacks (status only moves forward), outbound
//! sending through the durable queue (written before sending, retried with
//! exponential backoff, sent once, in order per conversation), the expiring
//! media URLs Twilio fetches outgoing MMS from, and conversation queries.
//!
//! Layout: `inbound` (the two webhooks), `outbound` (validation, rows, the
//! `sms.send` job), `media` (download and serving), `conversations` (queries
//! for the UI), `status` and `keywords` (pure). Auto-replies live in
//! `crate::autoreply`.
//!
//! Built on the shared pieces: [`crate::client::TwilioClient`] (REST, failure
//! streak -> admin alert), [`crate::queue::Queue`] (durable jobs, backoff,
//! `Retry-After`), [`crate::notify`] (queued hand-off to notifyd) and the
//! signature-checked router of [`crate::webhooks`].
//!
//! Exactly-once sending: the message row (status `queued`) and its `sms.send`
//! job are written in one transaction before anything is sent. The POST is
//! made without in-call retries (a retried POST after a timeout could create
//! a second message); the queue retries instead. Every attempt carries a
//! fresh random token in its StatusCallback URL
//! (`?gosip_mid=<id>&gosip_tok=<token>`), and `first_attempt_at` is written
//! before the first POST. When a later attempt starts and no SID was recorded
//! (the POST timed out, Twilio answered 5xx after creating it, or twiliod died
//! before writing the answer), the job first lists Twilio's messages with the
//! same `To`/`From` created since the first attempt and adopts one with the
//! same body that no row of ours has claimed; a status callback carrying our
//! token also attaches its SID to the row. Only when neither finds it is the
//! POST repeated.
//!
//! Lost status callbacks: every send also queues an `sms.poll` job due
//! `sms.status_poll_after` seconds later; if the message is not final by
//! then, it fetches the message from Twilio and moves the status forward.
//!
//! Order per conversation: the job of message N sends every unsent message of
//! the same DID/recipient up to N, oldest first, and stops at the first that
//! cannot be sent; so a later message never overtakes an earlier one that is
//! waiting out an outage.

pub mod conversations;
pub mod inbound;
pub mod keywords;
pub mod media;
pub mod outbound;
pub mod status;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use outbound::{SendError, SendRequest, send_message};

/// The Twilio-signed webhook routes (mounted behind the signature check).
pub fn webhook_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/webhooks/sms/incoming", post(inbound::incoming))
        .route("/api/webhooks/sms/status", post(inbound::status_callback))
        .with_state(state)
}

/// Unsigned routes: the media Twilio fetches for outgoing MMS. The random,
/// expiring token in the path is the credential.
pub fn public_routes(state: AppState) -> Router {
    Router::new()
        .route("/api/webhooks/media/{token}", get(media::serve))
        .with_state(state)
}

/// Registers the SMS job kinds on the shared queue.
pub fn register_jobs(state: &AppState) {
    let st = state.clone();
    state.queue.register(outbound::SEND_JOB, move |job| {
        let st = st.clone();
        async move {
            let id = job.payload["message_id"].as_i64().unwrap_or(0);
            outbound::run_send(&st, id).await
        }
    });
    let st = state.clone();
    state.queue.register(inbound::MEDIA_JOB, move |job| {
        let st = st.clone();
        async move { inbound::run_media(&st, &job).await }
    });
    let st = state.clone();
    state.queue.register(outbound::POLL_JOB, move |job| {
        let st = st.clone();
        async move {
            let id = job.payload["message_id"].as_i64().unwrap_or(0);
            outbound::run_poll(&st, id).await
        }
    });
    let st = state.clone();
    state.queue.register(crate::autoreply::JOB, move |job| {
        let st = st.clone();
        async move {
            let id = job.payload["message_id"].as_i64().unwrap_or(0);
            crate::autoreply::maybe_reply(&st, id)
                .await
                .map(|_| ())
                .map_err(crate::queue::JobError::from)
        }
    });
}

/// The public base URL (no trailing slash), empty when not set.
pub fn public_url(state: &AppState) -> String {
    state
        .settings
        .get()
        .str("system.public_url")
        .trim()
        .trim_end_matches('/')
        .to_owned()
}
