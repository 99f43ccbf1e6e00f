//! The two Twilio-signed SMS webhooks: an inbound message (CONTRACT.md §2.7)
//! and an outbound message's status callback (§2.8). The signature has been
//! checked by the router these routes are mounted behind.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;

use super::keywords::{self, Keyword};
use super::media::{self, MediaItem};
use super::outbound;
use crate::AppState;
use crate::notify::Notice;
use crate::queue::{Enqueue, insert_job};
use crate::webhooks::WebhookParams;

/// Empty MessagingResponse: replies go out through the queue (durable and
/// rate limited), never as TwiML.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

fn twiml() -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response()
}

/// `POST /api/webhooks/sms/incoming`.
pub async fn incoming(
    State(ctx): State<AppState>,
    Extension(params): Extension<WebhookParams>,
) -> Response {
    let p: HashMap<&str, &str> = params
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match store_inbound(&ctx, &p).await {
        Ok(_) => twiml(),
        Err(InboundError::Bad(m)) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": m }))).into_response()
        }
        Err(InboundError::Db(e)) => {
            tracing::error!(error = %e, "storing inbound message failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Why an inbound message was not stored.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The webhook lacks a field Twilio always sends.
    #[error("{0}")]
    Bad(&'static str),
    /// The database failed (Twilio will see 503).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Stores an inbound message; `Ok(None)` for a duplicate MessageSid.
pub async fn store_inbound(
    ctx: &AppState,
    p: &HashMap<&str, &str>,
) -> Result<Option<i64>, InboundError> {
    let msg = InboundFields::parse(p)?;
    if is_duplicate_or_refused(ctx, &msg).await? {
        return Ok(None);
    }
    let items = download_webhook_media(ctx, p, msg.sid).await;
    let did = DidTarget::lookup(ctx, &msg).await?;
    let now = proto::time::now();
    let media_json = serde_json::to_string(&items).unwrap_or_else(|_| "[]".into());
    let mut tx = ctx.pool.begin().await?;
    let Some(id) = insert_message(&mut tx, &msg, &did, &media_json, &now).await? else {
        tracing::info!(message_sid = msg.sid, "duplicate inbound webhook ignored");
        return Ok(None);
    };
    apply_keyword(&mut tx, &msg, &now).await?;
    queue_follow_ups(&mut tx, id, did.did_id, &items).await?;
    tx.commit().await?;
    ctx.queue.wake();
    tracing::info!(
        message_id = id,
        message_sid = msg.sid,
        did_id = ?did.did_id,
        media = items.len(),
        forward = did.forward,
        owner = ?did.owner,
        "inbound message stored"
    );
    Ok(Some(id))
}

/// The webhook fields an inbound message is stored from.
struct InboundFields<'a> {
    sid: &'a str,
    from: &'a str,
    to: &'a str,
    body: &'a str,
}

impl<'a> InboundFields<'a> {
    /// Picks the fields out of the webhook, refusing one without a
    /// MessageSid or a `To` (Twilio always sends both, so it is malformed).
    fn parse(p: &HashMap<&'a str, &'a str>) -> Result<Self, InboundError> {
        let sid = p
            .get("MessageSid")
            .or_else(|| p.get("SmsMessageSid"))
            .or_else(|| p.get("SmsSid"))
            .copied()
            .filter(|s| !s.is_empty())
            .ok_or(InboundError::Bad("MessageSid missing"))?;
        let from = p.get("From").copied().unwrap_or("");
        let to = p.get("To").copied().unwrap_or("");
        if to.is_empty() {
            return Err(InboundError::Bad("To missing"));
        }
        let body = p.get("Body").copied().unwrap_or("");
        Ok(Self {
            sid,
            from,
            to,
            body,
        })
    }
}

/// Whether the message must be dropped before any work: Twilio retried a
/// webhook already stored, or the number has SMS turned off.
async fn is_duplicate_or_refused(
    ctx: &AppState,
    msg: &InboundFields<'_>,
) -> Result<bool, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM messages WHERE message_sid = ?)")
            .bind(msg.sid)
            .fetch_one(&ctx.pool)
            .await?;
    if exists {
        tracing::info!(message_sid = msg.sid, "duplicate inbound webhook ignored");
        return Ok(true);
    }
    // A number with SMS turned off takes no texts: nothing is stored,
    // downloaded, auto-replied or forwarded (Twilio gets the empty answer).
    let refused: bool = sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM dids WHERE number = ? AND NOT sms_enabled)",
    )
    .bind(msg.to)
    .fetch_one(&ctx.pool)
    .await?;
    if refused {
        tracing::info!(
            message_sid = msg.sid,
            to = msg.to,
            "inbound message refused: SMS is off for this number"
        );
        return Ok(true);
    }
    Ok(false)
}

/// Downloads the message's media (at most 10) within the webhook's time
/// budget; what does not arrive in time is recorded as failed so the
/// `sms.media` job can fetch it later.
async fn download_webhook_media(
    ctx: &AppState,
    p: &HashMap<&str, &str>,
    sid: &str,
) -> Vec<MediaItem> {
    let num_media: usize = p
        .get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
        .min(10);
    let mut items: Vec<MediaItem> = Vec::new();
    let deadline = std::time::Instant::now() + media::WEBHOOK_MEDIA_BUDGET;
    for n in 0..num_media {
        let Some(url) = p.get(format!("MediaUrl{n}").as_str()).copied() else {
            continue;
        };
        let declared = p
            .get(format!("MediaContentType{n}").as_str())
            .copied()
            .unwrap_or("application/octet-stream");
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let item = tokio::time::timeout(left, media::download(ctx, sid, n, url, declared))
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(
                    message_sid = sid,
                    n,
                    "media not downloaded within the webhook's time"
                );
                media::failed(url, declared, "not downloaded in time".into())
            });
        items.push(item);
    }
    items
}

/// The DID a message was sent to, as far as storing it needs.
struct DidTarget {
    did_id: Option<i64>,
    owner: Option<i64>,
    forward: bool,
}

impl DidTarget {
    /// Looks up the `To` number; a number that is not a DID is still
    /// stored (and logged) but belongs to nobody.
    async fn lookup(ctx: &AppState, msg: &InboundFields<'_>) -> Result<Self, sqlx::Error> {
        let did: Option<(i64, Option<i64>, bool)> = sqlx::query_as(
            "SELECT id, owner_user_id, sms_email_forward FROM dids WHERE number = ?",
        )
        .bind(msg.to)
        .fetch_optional(&ctx.pool)
        .await?;
        Ok(match did {
            Some((id, owner, fwd)) => Self {
                did_id: Some(id),
                owner,
                forward: fwd,
            },
            None => {
                tracing::warn!(
                    message_sid = msg.sid,
                    to = msg.to,
                    "inbound message for a number that is not a DID"
                );
                Self {
                    did_id: None,
                    owner: None,
                    forward: false,
                }
            }
        })
    }
}

/// Inserts the message row; `None` when a concurrent webhook with the same
/// MessageSid got there first.
async fn insert_message(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    msg: &InboundFields<'_>,
    did: &DidTarget,
    media_json: &str,
    now: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let res = sqlx::query(
        "INSERT INTO messages (message_sid, direction, from_number, to_number, did_id, user_id, body, \
         media_urls, status, created_at, updated_at) \
         VALUES (?, 'inbound', ?, ?, ?, ?, ?, ?, 'received', ?, ?) ON CONFLICT(message_sid) DO NOTHING",
    )
    .bind(msg.sid)
    .bind(msg.from)
    .bind(msg.to)
    .bind(did.did_id)
    .bind(did.owner)
    .bind(msg.body)
    .bind(media_json)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(res.last_insert_rowid()))
}

/// Records a STOP or START keyword for this sender and number, in the same
/// transaction as the message so the opt-out state never lags behind it.
async fn apply_keyword(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    msg: &InboundFields<'_>,
    now: &str,
) -> Result<(), sqlx::Error> {
    match keywords::classify(msg.body) {
        Some(Keyword::OptOut) => {
            sqlx::query(
                "INSERT INTO sms_opt_outs (did_number, number, created_at) VALUES (?, ?, ?) \
                 ON CONFLICT(did_number, number) DO NOTHING",
            )
            .bind(msg.to)
            .bind(msg.from)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Some(Keyword::OptIn) => {
            sqlx::query("DELETE FROM sms_opt_outs WHERE did_number = ? AND number = ?")
                .bind(msg.to)
                .bind(msg.from)
                .execute(&mut **tx)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Queues what happens after storing: the auto-reply for a DID's message,
/// then either the media retry (which sends the email when done) or the
/// email right away.
async fn queue_follow_ups(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
    did_id: Option<i64>,
    items: &[MediaItem],
) -> Result<(), sqlx::Error> {
    if did_id.is_some() {
        insert_job(
            &mut **tx,
            crate::autoreply::JOB,
            &json!({ "message_id": id }),
            &Enqueue::key(format!("{}:{id}", crate::autoreply::JOB)),
        )
        .await?;
    }
    let missing = items.iter().any(|i| i.path.is_empty() && i.url.is_some());
    if missing {
        // Fetch the rest later; the email waits for it (or for giving up).
        insert_job(
            &mut **tx,
            MEDIA_JOB,
            &json!({ "message_id": id }),
            &Enqueue::key(format!("{MEDIA_JOB}:{id}")).max_attempts(6),
        )
        .await?;
    } else if did_id.is_some() {
        queue_email(tx, id).await?;
    }
    Ok(())
}

/// Job kind that retries the media downloads an inbound webhook could not
/// finish, then queues the email.
pub const MEDIA_JOB: &str = "sms.media";

/// Queues the notice of inbound message `id` for notifyd: Gotify and outgoing
/// webhooks always, email only when its DID forwards SMS (`email_forward`). Handed over through the queue: if notifyd is down, the job waits and
/// retries; nothing is lost. Keyed on the MessageSid: queued once.
async fn queue_email(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
) -> Result<(), sqlx::Error> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i64>,
        Option<String>,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT m.message_sid, m.from_number, m.to_number, m.body, m.media_urls, m.created_at, \
         d.owner_user_id, d.name, COALESCE(d.sms_email_forward, FALSE) \
         FROM messages m LEFT JOIN dids d ON d.id = m.did_id WHERE m.id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((sid, from, to, body, media_json, at, owner, did_name, forward)) = row else {
        return Ok(());
    };
    if did_name.is_none() {
        // Not one of our numbers: nobody to notify.
        return Ok(());
    }
    let items: Vec<MediaItem> = serde_json::from_str(&media_json).unwrap_or_default();
    let notice = Notice {
        kind: "sms".into(),
        user_id: owner.unwrap_or(0),
        payload: json!({
            "message_id": id,
            "message_sid": sid,
            "from": from,
            "to": to,
            "did_name": did_name.unwrap_or_default(),
            "body": body,
            "received_at": at,
            "media": items,
            "email_forward": forward,
        }),
        attachments: items
            .iter()
            .filter(|i| !i.path.is_empty())
            .map(|i| i.path.clone())
            .collect(),
    };
    insert_job(
        &mut **tx,
        crate::notify::KIND,
        &serde_json::to_value(&notice).unwrap_or_default(),
        &Enqueue::key(format!("notify:sms:{sid}")),
    )
    .await?;
    Ok(())
}

/// The `sms.media` job: downloads the items still missing; on success, or
/// on its last attempt, queues the email with what it has.
pub async fn run_media(
    ctx: &AppState,
    job: &crate::queue::Job,
) -> Result<(), crate::queue::JobError> {
    let id = job.payload["message_id"].as_i64().unwrap_or(0);
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT message_sid, media_urls FROM messages WHERE id = ?")
            .bind(id)
            .fetch_optional(&ctx.pool)
            .await?;
    let Some((sid, media_json)) = row else {
        return Ok(());
    };
    let mut items: Vec<MediaItem> = serde_json::from_str(&media_json).unwrap_or_default();
    for (n, item) in items.iter_mut().enumerate() {
        if !item.path.is_empty() {
            continue;
        }
        let Some(url) = item.url.clone() else {
            continue;
        };
        *item = media::download(ctx, &sid, n, &url, &item.content_type).await;
    }
    let missing = items.iter().filter(|i| i.path.is_empty()).count();
    let last = job.max_attempts > 0 && job.attempts >= job.max_attempts;
    let mut tx = ctx.pool.begin().await?;
    sqlx::query("UPDATE messages SET media_urls = ?, updated_at = ? WHERE id = ?")
        .bind(serde_json::to_string(&items).unwrap_or_else(|_| "[]".into()))
        .bind(proto::time::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if missing == 0 || last {
        queue_email(&mut tx, id).await?;
    }
    tx.commit().await?;
    ctx.queue.wake();
    if missing > 0 && !last {
        return Err(crate::queue::JobError::retry(format!(
            "{missing} media item(s) of {sid} not downloaded yet"
        )));
    }
    tracing::info!(message_id = id, missing, "inbound media retry finished");
    Ok(())
}

/// Query parameters we put on the StatusCallback URL.
#[derive(Debug, serde::Deserialize)]
pub struct CallbackQuery {
    pub gosip_mid: Option<i64>,
    pub gosip_tok: Option<String>,
}

/// `POST /api/webhooks/sms/status`.
pub async fn status_callback(
    State(ctx): State<AppState>,
    Query(q): Query<CallbackQuery>,
    Extension(params): Extension<WebhookParams>,
) -> Response {
    let p: HashMap<&str, &str> = params
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match apply_status(&ctx, &p, &q).await {
        Ok(_) => twiml(),
        Err(e) => {
            tracing::error!(error = %e, "status callback failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Applies one status callback; returns whether a row's status moved.
pub async fn apply_status(
    ctx: &AppState,
    p: &HashMap<&str, &str>,
    q: &CallbackQuery,
) -> Result<bool, sqlx::Error> {
    let Some(sid) = p.get("MessageSid").or_else(|| p.get("SmsSid")).copied() else {
        return Ok(false);
    };
    let status = p
        .get("MessageStatus")
        .or_else(|| p.get("SmsStatus"))
        .copied()
        .unwrap_or("");
    let mut id: Option<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE message_sid = ?")
        .bind(sid)
        .fetch_optional(&ctx.pool)
        .await?;
    if id.is_none()
        && let (Some(mid), Some(tok)) = (q.gosip_mid, q.gosip_tok.as_deref())
    {
        // The POST's answer never reached us (or has not yet): the token we
        // put in this attempt's callback URL proves which row it is.
        let res = sqlx::query(
            "UPDATE messages SET message_sid = ?, updated_at = ? \
             WHERE id = ? AND send_token = ? AND message_sid IS NULL AND direction = 'outbound'",
        )
        .bind(sid)
        .bind(proto::time::now())
        .bind(mid)
        .bind(tok)
        .execute(&ctx.pool)
        .await?;
        if res.rows_affected() == 1 {
            tracing::info!(message_id = mid, sid, "SID attached from status callback");
            id = Some(mid);
        }
    }
    let Some(id) = id else {
        tracing::warn!(sid, status, "status callback for an unknown message");
        return Ok(false);
    };
    let code: Option<i64> = p
        .get("ErrorCode")
        .and_then(|c| c.trim().parse().ok())
        .filter(|c| *c != 0);
    let message = code.map(error_text);
    let moved = outbound::advance_status(&ctx.pool, id, status, code, message.as_deref()).await?;
    tracing::info!(message_id = id, sid, status, error_code = ?code, moved, "message status callback");
    Ok(moved)
}

/// A person-readable reason for Twilio's delivery error codes.
pub fn error_text(code: i64) -> String {
    let t = match code {
        21211 => "Invalid 'To' phone number",
        21610 => "Recipient has opted out (replied STOP)",
        21614 => "'To' number is not a mobile number",
        30001 => "Queue overflow",
        30002 => "Account suspended",
        30003 => "Unreachable destination handset",
        30004 => "Message blocked",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered by the carrier",
        30008 => "Unknown error",
        30010 => "Message price exceeds max price",
        _ => "Delivery failed",
    };
    format!("{t} (Twilio error {code})")
}
