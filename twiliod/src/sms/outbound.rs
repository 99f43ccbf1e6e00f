//! Outbound SMS/MMS: validation (errors name the field at fault), the
//! `messages` row written before anything is sent, the `sms.send` job that
//! sends it, and what each Twilio answer does to the row.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::media::{self, MediaItem};
use crate::AppState;
use crate::client::{RetryPolicy, TwilioClient, TwilioError};
use crate::queue::{Enqueue, JobError};

/// Job kind that sends an outbound message.
pub const SEND_JOB: &str = "sms.send";
/// Job kind that asks Twilio for the status of a sent message whose final
/// status callback never came (twiliod was down, the callback was lost).
pub const POLL_JOB: &str = "sms.poll";

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

impl From<proto::pb::twiliod::SendMessageRequest> for SendRequest {
    fn from(r: proto::pb::twiliod::SendMessageRequest) -> Self {
        Self {
            user_id: r.user_id,
            from_number: r.from_number,
            to_number: r.to_number,
            body: r.body,
            media_paths: r.media_paths,
        }
    }
}

/// gRPC mapping for `SendMessage`: a bad field is `INVALID_ARGUMENT` whose
/// message starts with the field name (`"to_number: must be an E.164
/// number ..."`), a DID the user does not own is `PERMISSION_DENIED`.
impl From<SendError> for tonic::Status {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Invalid { .. } => tonic::Status::invalid_argument(e.to_string()),
            SendError::Forbidden => tonic::Status::permission_denied(e.to_string()),
            SendError::Db(_) => tonic::Status::unavailable("database unavailable"),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> SendError {
    SendError::Invalid {
        field,
        message: message.into(),
    }
}

/// Validates, writes the message (status `queued`) and its send job in one
/// transaction, wakes the worker, and returns the message id.
pub async fn send_message(ctx: &AppState, req: SendRequest) -> Result<i64, SendError> {
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
            return Err(invalid(
                "media_paths",
                format!("{p}: not a file under media/"),
            ));
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
            url: None,
        });
    }
    if total > MAX_MMS_BYTES {
        return Err(invalid("media_paths", "media larger than 5 MB in total"));
    }
    if !items.is_empty() && super::public_url(ctx).is_empty() {
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
    let id = insert_and_enqueue(
        ctx,
        did_id,
        owner,
        from.as_str(),
        to.as_str(),
        &req.body,
        &items,
        None,
    )
    .await?;
    tracing::info!(message_id = id, did_id, to = %to, media = items.len(), "message queued");
    Ok(id)
}

/// Queues an auto-reply from `did_number` to `to` (already decided).
pub async fn create_auto_reply(
    ctx: &AppState,
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
    ctx: &AppState,
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
    crate::queue::insert_job(
        &mut *tx,
        SEND_JOB,
        &json!({ "message_id": id }),
        &Enqueue::key(format!("{SEND_JOB}:{id}")),
    )
    .await?;
    tx.commit().await?;
    ctx.queue.wake();
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct OutRow {
    id: i64,
    from_number: String,
    to_number: String,
    body: String,
    media_urls: String,
    first_attempt_at: Option<String>,
}

/// The `sms.send` job of message `id`: sends every unsent message of the
/// same conversation up to `id`, oldest first (so order is kept even when
/// an earlier message is waiting out an outage).
pub async fn run_send(ctx: &AppState, id: i64) -> Result<(), JobError> {
    let conv: Option<(String, String)> = sqlx::query_as(
        "SELECT from_number, to_number FROM messages WHERE id = ? AND direction = 'outbound'",
    )
    .bind(id)
    .fetch_optional(&ctx.pool)
    .await?;
    let Some((from, to)) = conv else {
        return Ok(());
    };
    let pending: Vec<OutRow> = sqlx::query_as(
        "SELECT id, from_number, to_number, body, media_urls, first_attempt_at FROM messages \
         WHERE direction = 'outbound' AND from_number = ? AND to_number = ? AND id <= ? \
         AND status = 'queued' AND message_sid IS NULL ORDER BY id",
    )
    .bind(&from)
    .bind(&to)
    .bind(id)
    .fetch_all(&ctx.pool)
    .await?;
    for row in pending {
        send_one(ctx, &row).await?;
    }
    Ok(())
}

/// A Twilio client for `POST Messages.json` without in-call retries: a POST
/// repeated after a timeout could create a second message, so repeats go
/// through the queue and the lookup in [`send_one`]. It shares the failure
/// streak (and admin alert) of the main client.
fn sender(ctx: &AppState) -> TwilioClient {
    let timeout_ms = ctx.settings.get().u64("sms.request_timeout_ms");
    let default = RetryPolicy::default();
    ctx.twilio.clone().with_policy(RetryPolicy {
        max_retries: 0,
        request_timeout: if timeout_ms == 0 {
            default.request_timeout
        } else {
            Duration::from_millis(timeout_ms.max(100))
        },
        ..default
    })
}

async fn send_one(ctx: &AppState, row: &OutRow) -> Result<(), JobError> {
    let id = row.id;
    let client = sender(ctx);
    // An earlier attempt may have created the message without us hearing.
    if let Some(first) = row.first_attempt_at.as_deref().and_then(proto::time::parse) {
        match find_created(ctx, &client, row, first).await {
            Ok(Some(m)) => {
                tracing::info!(message_id = id, sid = %m.sid, "adopting the message an earlier attempt created");
                record_sid(ctx, id, &m.sid, &m.status).await?;
                return Ok(());
            }
            Ok(None) => {
                tracing::info!(message_id = id, first_attempt = %first, "earlier attempt created nothing at Twilio; sending again");
            }
            Err(e) => return Err(as_job_error(e)),
        }
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    let public = super::public_url(ctx);
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
    let now = proto::time::now();
    // Only while no SID is known: a status callback may have attached one
    // since this job read the row.
    let armed = sqlx::query(
        "UPDATE messages SET send_token = ?, first_attempt_at = COALESCE(first_attempt_at, ?), \
         updated_at = ? WHERE id = ? AND message_sid IS NULL AND status = 'queued'",
    )
    .bind(&token)
    .bind(&now)
    .bind(&now)
    .bind(id)
    .execute(&ctx.pool)
    .await?;
    if armed.rows_affected() == 0 {
        return Ok(());
    }
    // Lost callbacks must not leave the message "sent" forever.
    let poll_after = Duration::from_secs(ctx.settings.get().u64("sms.status_poll_after").max(1));
    crate::queue::insert_job(
        &ctx.pool,
        POLL_JOB,
        &json!({ "message_id": id }),
        &Enqueue::key(format!("{POLL_JOB}:{id}"))
            .delay(poll_after)
            .max_attempts(48),
    )
    .await?;
    let form_ref: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match client
        .json::<Created>(Method::POST, "/Messages.json", &form_ref)
        .await
    {
        Ok(m) => {
            record_sid(ctx, id, &m.sid, &m.status).await?;
            tracing::info!(message_id = id, sid = %m.sid, status = %m.status, "message accepted by Twilio");
            Ok(())
        }
        Err(e) if is_retryable(&e) => {
            tracing::warn!(message_id = id, error = %e, "message not sent yet, will retry");
            Err(as_job_error(e))
        }
        Err(e) => {
            let (code, message) = match &e {
                TwilioError::Api { code, message, .. } => {
                    ((*code != 0).then_some(*code), message.clone())
                }
                other => (None, other.to_string()),
            };
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
            Ok(())
        }
    }
}

/// The `sms.poll` job: fetches the message from Twilio and moves its status
/// forward; asks again later while it is not final.
pub async fn run_poll(ctx: &AppState, id: i64) -> Result<(), JobError> {
    let row: Option<(Option<String>, String)> =
        sqlx::query_as("SELECT message_sid, status FROM messages WHERE id = ?")
            .bind(id)
            .fetch_optional(&ctx.pool)
            .await?;
    let again = || JobError::Retry {
        error: "not final yet".into(),
        after: Some(Duration::from_secs(
            ctx.settings.get().u64("sms.status_poll_after").max(1),
        )),
    };
    let Some((sid, status)) = row else {
        return Ok(());
    };
    if super::status::is_final(&status) {
        return Ok(());
    }
    // Not accepted by Twilio yet: the send job is still at it; look later.
    let Some(sid) = sid else {
        return Err(again());
    };
    let m = ctx.twilio.fetch_message(&sid).await.map_err(as_job_error)?;
    let message = m.error_code.filter(|c| *c != 0).map(|c| {
        m.error_message
            .clone()
            .unwrap_or_else(|| super::inbound::error_text(c))
    });
    advance_status(
        &ctx.pool,
        id,
        &m.status,
        m.error_code.filter(|c| *c != 0),
        message.as_deref(),
    )
    .await?;
    tracing::info!(message_id = id, sid, status = %m.status, "message status polled");
    if super::status::is_final(&m.status) {
        Ok(())
    } else {
        Err(again())
    }
}

/// Retry 5xx, 429, no answer, and also bad or missing credentials (401/403,
/// not configured): the admin can fix those, and the message must not be
/// lost meanwhile. Every other refusal fails the message.
fn is_retryable(e: &TwilioError) -> bool {
    e.is_retryable()
        || matches!(e, TwilioError::NotConfigured)
        || matches!(
            e,
            TwilioError::Api {
                status: 401 | 403,
                ..
            }
        )
}

fn as_job_error(e: TwilioError) -> JobError {
    JobError::Retry {
        after: e.retry_after(),
        error: e.to_string(),
    }
}

#[derive(Debug, Deserialize)]
struct Created {
    sid: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct Listed {
    sid: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    date_created: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    messages: Vec<Listed>,
}

/// Looks for a message with this row's To/From/body that Twilio created
/// since `first` (newest first, one page of 50) and no row of ours claims.
/// No `DateSent` filter: a message Twilio queued but has not sent yet has no
/// `date_sent`, and it is exactly the one we look for.
async fn find_created(
    ctx: &AppState,
    client: &TwilioClient,
    row: &OutRow,
    first: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Listed>, TwilioError> {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("To", &row.to_number)
        .append_pair("From", &row.from_number)
        .append_pair("PageSize", "50")
        .finish();
    let page: Page = client
        .json(Method::GET, &format!("/Messages.json?{query}"), &[])
        .await?;
    let since = first - chrono::Duration::seconds(2);
    for m in page.messages {
        let recent = m
            .date_created
            .as_deref()
            .and_then(parse_twilio_date)
            .is_none_or(|t| t >= since);
        if !recent || m.body.as_deref() != Some(row.body.as_str()) {
            continue;
        }
        // Claimed by another row: not ours. Claimed by this row (a status
        // callback attached it meanwhile): ours, already sent.
        let other: bool = sqlx::query_scalar(
            "SELECT EXISTS(SELECT 1 FROM messages WHERE message_sid = ? AND id != ?)",
        )
        .bind(&m.sid)
        .bind(row.id)
        .fetch_one(&ctx.pool)
        .await
        .map_err(|e| TwilioError::Transport(format!("database: {e}")))?;
        if !other {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// Parses Twilio's RFC 2822 dates (`Thu, 30 Jul 2015 23:19:04 +0000`).
pub fn parse_twilio_date(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Attaches Twilio's SID to row `id` (unless a callback already did) and
/// moves the status forward.
pub async fn record_sid(
    ctx: &AppState,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_dates_parse() {
        let t = parse_twilio_date("Thu, 30 Jul 2015 23:19:04 +0000").unwrap();
        assert_eq!(proto::time::fmt(t), "2015-07-30T23:19:04.000Z");
    }

    #[test]
    fn outages_and_credential_problems_are_retried_refusals_are_not() {
        let api = |status, code| TwilioError::Api {
            status,
            code,
            message: String::new(),
            more_info: String::new(),
            retry_after: None,
        };
        assert!(is_retryable(&api(503, 0)));
        assert!(is_retryable(&api(429, 20429)));
        assert!(is_retryable(&api(401, 20003)));
        assert!(is_retryable(&TwilioError::Transport("timeout".into())));
        assert!(!is_retryable(&api(400, 21211)));
        assert!(!is_retryable(&api(400, 21610)));
    }
}
