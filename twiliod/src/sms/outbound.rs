//! Outbound SMS/MMS: validation (errors name the field at fault), the
//! `messages` row written before anything is sent, the `sms.send` job that
//! sends it, and what each Twilio answer does to the row.

use std::time::Duration;

use serde_json::json;

use super::api::{self, Creds, Outcome};
use super::media::{self, MediaItem};
use super::{QUEUE, SmsContext};

/// Twilio's limit on a message body (characters).
pub const MAX_BODY_CHARS: usize = 1600;
/// Twilio's limit on media items per message.
pub const MAX_MEDIA: usize = 10;
/// Twilio's limit on the total size of an MMS.
pub const MAX_MMS_BYTES: u64 = 5 * 1024 * 1024;

/// A message to send, as webd hands it over (gRPC `SendMessage`).
#[derive(Debug, Clone, Default)]
pub struct SendRequest {
    /// The user asking (0 = the system / an admin tool); non-admins may only
    /// send from DIDs they own.
    pub user_id: i64,
    pub from_number: String,
    pub to_number: String,
    pub body: String,
    /// Paths relative to the data dir, inside `media/`.
    pub media_paths: Vec<String>,
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A field is wrong; `field` names it (`to_number`, `from_number`, `body`, `media_paths`).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The user may not send from this DID.
    #[error("from_number: not one of your numbers")]
    Forbidden,
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> SendError {
    SendError::Invalid {
        field,
        message: message.into(),
    }
}

/// Validates, writes the message (status `queued`) and its send job in one
/// transaction, wakes the worker, and returns the message id.
pub async fn send_message(ctx: &SmsContext, req: SendRequest) -> Result<i64, SendError> {
    let from = proto::types::E164::parse(req.from_number.trim())
        .map_err(|e| invalid("from_number", e.to_string()))?;
    let to = proto::types::E164::parse(req.to_number.trim())
        .map_err(|e| invalid("to_number", e.to_string()))?;
    let chars = req.body.chars().count();
    if chars == 0 && req.media_paths.is_empty() {
        return Err(invalid("body", "must not be empty (or attach media)"));
    }
    if chars > MAX_BODY_CHARS {
        return Err(invalid(
            "body",
            format!("must be at most {MAX_BODY_CHARS} characters (has {chars})"),
        ));
    }
    if req.media_paths.len() > MAX_MEDIA {
        return Err(invalid(
            "media_paths",
            format!("at most {MAX_MEDIA} files per message"),
        ));
    }
    let mut items = Vec::new();
    let mut total = 0u64;
    for p in &req.media_paths {
        if !media::is_media_path(p) {
            return Err(invalid("media_paths", format!("{p}: not a file under media/")));
        }
        let meta = tokio::fs::metadata(ctx.data_dir.join(p))
            .await
            .map_err(|_| invalid("media_paths", format!("{p}: no such file")))?;
        if !meta.is_file() {
            return Err(invalid("media_paths", format!("{p}: not a file")));
        }
        total += meta.len();
        items.push(MediaItem {
            path: p.clone(),
            content_type: media::content_type_for(p).to_owned(),
            error: None,
        });
    }
    if total > MAX_MMS_BYTES {
        return Err(invalid("media_paths", "media larger than 5 MB in total"));
    }
    if !items.is_empty() && ctx.public_url().is_empty() {
        return Err(invalid(
            "media_paths",
            "system.public_url must be set so Twilio can fetch the media",
        ));
    }
    let did: Option<(i64, Option<i64>, bool)> =
        sqlx::query_as("SELECT id, owner_user_id, sms_enabled FROM dids WHERE number = ?")
            .bind(from.as_str())
            .fetch_optional(&ctx.pool)
            .await?;
    let Some((did_id, owner, sms_enabled)) = did else {
        return Err(invalid("from_number", "is not one of our numbers"));
    };
    if !sms_enabled {
        return Err(invalid("from_number", "has SMS turned off"));
    }
    if req.user_id > 0 {
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = ?")
            .bind(req.user_id)
            .fetch_optional(&ctx.pool)
            .await?;
        let allowed = match role.as_deref() {
            Some("admin") => true,
            Some(_) => owner == Some(req.user_id),
            None => false,
        };
        if !allowed {
            return Err(SendError::Forbidden);
        }
    }
    let id = insert_and_enqueue(ctx, did_id, owner, from.as_str(), to.as_str(), &req.body, &items, None)
        .await?;
    tracing::info!(message_id = id, did_id, to = %to, media = items.len(), "message queued");
    Ok(id)
}

/// Queues an auto-reply from `did_number` to `to` (already decided).
pub async fn create_auto_reply(
    ctx: &SmsContext,
    did_id: i64,
    did_number: &str,
    to: &str,
    rule: &crate::autoreply::Rule,
) -> Result<i64, sqlx::Error> {
    let owner: Option<i64> = sqlx::query_scalar("SELECT owner_user_id FROM dids WHERE id = ?")
        .bind(did_id)
        .fetch_optional(&ctx.pool)
        .await?
        .flatten();
    insert_and_enqueue(
        ctx,
        did_id,
        owner,
        did_number,
        to,
        &rule.reply_text,
        &[],
        Some(rule.id),
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn insert_and_enqueue(
    ctx: &SmsContext,
    did_id: i64,
    owner: Option<i64>,
    from: &str,
    to: &str,
    body: &str,
    items: &[MediaItem],
    auto_reply_id: Option<i64>,
) -> Result<i64, sqlx::Error> {
    let now = proto::time::now();
    let media_json = serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
    let mut tx = ctx.pool.begin().await?;
    // Outbound messages are read: the user wrote them.
    let id = sqlx::query(
        "INSERT INTO messages (direction, from_number, to_number, did_id, user_id, body, media_urls, \
         status, created_at, updated_at, is_read, auto_reply_id) \
         VALUES ('outbound', ?, ?, ?, ?, ?, ?, 'queued', ?, ?, TRUE, ?)",
    )
    .bind(from)
    .bind(to)
    .bind(did_id)
    .bind(owner)
    .bind(body)
    .bind(&media_json)
    .bind(&now)
    .bind(&now)
    .bind(auto_reply_id)
    .execute(&mut *tx)
    .await?
    .last_insert_rowid();
    super::worker::enqueue_in(&mut tx, "sms.send", &json!({ "message_id": id }), &format!("sms.send:{id}"))
        .await?;
    tx.commit().await?;
    ctx.wake.notify_one();
    Ok(id)
}

/// What the send job tells the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    /// Done (sent, adopted, or failed for good).
    Done,
    /// Try again later (a failed attempt: counts towards backoff and alerts).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// Not this message's turn yet (an earlier one in the conversation is
    /// unsent): look again shortly, without counting an attempt.
    Wait(Duration),
}

#[derive(sqlx::FromRow)]
struct OutRow {
    from_number: String,
    to_number: String,
    body: String,
    media_urls: String,
    status: String,
    message_sid: Option<String>,
    first_attempt_at: Option<String>,
}

/// Sends message `id` (the `sms.send` job).
pub async fn run_send(ctx: &SmsContext, id: i64) -> Result<JobResult, sqlx::Error> {
    let row: Option<OutRow> = sqlx::query_as(
        "SELECT from_number, to_number, body, media_urls, status, message_sid, first_attempt_at \
         FROM messages WHERE id = ? AND direction = 'outbound'",
    )
    .bind(id)
    .fetch_optional(&ctx.pool)
    .await?;
    let Some(row) = row else {
        return Ok(JobResult::Done);
    };
    if row.message_sid.is_some() || row.status != "queued" {
        return Ok(JobResult::Done);
    }
    // In order per conversation: an earlier unsent message goes first.
    let earlier: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE direction = 'outbound' AND from_number = ? AND to_number = ? \
         AND id < ? AND status = 'queued' AND message_sid IS NULL ORDER BY id LIMIT 1",
    )
    .bind(&row.from_number)
    .bind(&row.to_number)
    .bind(id)
    .fetch_optional(&ctx.pool)
    .await?;
    if let Some(e) = earlier {
        tracing::debug!(message_id = id, waits_for = e, "earlier message unsent");
        return Ok(JobResult::Wait(Duration::from_millis(200)));
    }
    let settings = ctx.settings.get();
    let creds = Creds::from_settings(&settings);
    if creds.account_sid.is_empty() || creds.auth_token.is_empty() {
        return Ok(JobResult::Retry {
            after: Some(Duration::from_secs(60)),
            reason: "Twilio credentials are not set".into(),
        });
    }
    let timeout = Duration::from_millis(settings.u64("sms.request_timeout_ms").max(100));

    // An earlier attempt may have created the message without us hearing.
    if let Some(first) = row.first_attempt_at.as_deref().and_then(proto::time::parse) {
        match api::list(&ctx.http, &creds, &row.to_number, &row.from_number, first, timeout).await {
            Outcome::Ok(list) => {
                for m in list.iter().filter(|m| m.body.as_deref() == Some(row.body.as_str())) {
                    let claimed: bool = sqlx::query_scalar(
                        "SELECT EXISTS(SELECT 1 FROM messages WHERE message_sid = ?)",
                    )
                    .bind(&m.sid)
                    .fetch_one(&ctx.pool)
                    .await?;
                    if !claimed {
                        tracing::info!(message_id = id, sid = %m.sid, "adopting message created by an earlier attempt");
                        record_sid(ctx, id, &m.sid, &m.status).await?;
                        return Ok(JobResult::Done);
                    }
                }
            }
            Outcome::Permanent { message, .. } | Outcome::Retry { reason: message, .. } => {
                return Ok(JobResult::Retry {
                    after: None,
                    reason: message,
                });
            }
        }
    }

    let token = hex::encode(rand::random::<[u8; 16]>());
    let public = ctx.public_url();
    let mut form: Vec<(&str, String)> = vec![
        ("To", row.to_number.clone()),
        ("From", row.from_number.clone()),
    ];
    if !row.body.is_empty() {
        form.push(("Body", row.body.clone()));
    }
    let items: Vec<MediaItem> = serde_json::from_str(&row.media_urls).unwrap_or_default();
    for item in items.iter().filter(|i| !i.path.is_empty()) {
        let url = media::issue_url(ctx, id, item).await?;
        form.push(("MediaUrl", url));
    }
    if !public.is_empty() {
        form.push((
            "StatusCallback",
            format!("{public}/api/webhooks/sms/status?gosip_mid={id}&gosip_tok={token}"),
        ));
    }
    sqlx::query(
        "UPDATE messages SET send_token = ?, first_attempt_at = COALESCE(first_attempt_at, ?), \
         updated_at = ? WHERE id = ?",
    )
    .bind(&token)
    .bind(proto::time::now())
    .bind(proto::time::now())
    .bind(id)
    .execute(&ctx.pool)
    .await?;
    match api::create(&ctx.http, &creds, &form, timeout).await {
        Outcome::Ok(m) => {
            record_sid(ctx, id, &m.sid, &m.status).await?;
            tracing::info!(message_id = id, sid = %m.sid, status = %m.status, "message accepted by Twilio");
            Ok(JobResult::Done)
        }
        Outcome::Permanent { code, message } => {
            sqlx::query(
                "UPDATE messages SET status = 'failed', error_code = ?, error_message = ?, updated_at = ? \
                 WHERE id = ? AND message_sid IS NULL",
            )
            .bind(code)
            .bind(&message)
            .bind(proto::time::now())
            .bind(id)
            .execute(&ctx.pool)
            .await?;
            tracing::warn!(message_id = id, code = ?code, reason = %message, "message refused by Twilio");
            Ok(JobResult::Done)
        }
        Outcome::Retry { after, reason } => Ok(JobResult::Retry { after, reason }),
    }
}

/// Attaches Twilio's SID to row `id` (unless a callback already did) and
/// moves the status forward.
pub async fn record_sid(
    ctx: &SmsContext,
    id: i64,
    sid: &str,
    status: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET message_sid = ?, updated_at = ? WHERE id = ? AND message_sid IS NULL",
    )
    .bind(sid)
    .bind(proto::time::now())
    .bind(id)
    .execute(&ctx.pool)
    .await?;
    advance_status(&ctx.pool, id, status, None, None).await?;
    Ok(())
}

/// Moves row `id` to `status` if that is forward; records an error code and
/// message when given and none is recorded yet. Returns whether the status
/// changed.
pub async fn advance_status(
    pool: &sqlx::SqlitePool,
    id: i64,
    status: &str,
    error_code: Option<i64>,
    error_message: Option<&str>,
) -> Result<bool, sqlx::Error> {
    // Read-check-write in a loop on the old value, so two callbacks racing
    // cannot move the status backwards.
    for _ in 0..5 {
        let cur: Option<String> = sqlx::query_scalar("SELECT status FROM messages WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await?;
        let Some(cur) = cur else { return Ok(false) };
        if error_code.is_some() {
            sqlx::query(
                "UPDATE messages SET error_code = ?, error_message = COALESCE(?, error_message) \
                 WHERE id = ? AND error_code IS NULL",
            )
            .bind(error_code)
            .bind(error_message)
            .bind(id)
            .execute(pool)
            .await?;
        }
        if !super::status::advances(&cur, status) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE messages SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
        )
        .bind(status)
        .bind(proto::time::now())
        .bind(id)
        .bind(&cur)
        .execute(pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Marks a message failed after the queue gave up on it.
pub async fn give_up(ctx: &SmsContext, id: i64, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET status = 'failed', error_message = ?, updated_at = ? \
         WHERE id = ? AND message_sid IS NULL AND status = 'queued'",
    )
    .bind(format!("not sent: {reason}"))
    .bind(proto::time::now())
    .bind(id)
    .execute(&ctx.pool)
    .await?;
    Ok(())
}

/// The queue this module's jobs use (for callers that enqueue directly).
pub const fn queue() -> &'static str {
    QUEUE
}
