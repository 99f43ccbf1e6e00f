//! The durable SMS work queue: rows of `jobs` with `queue = 'twiliod.sms'`.
//! A job is written in the same transaction as the message it serves, so a
//! message is never acknowledged without the work that finishes it. One
//! worker runs jobs one at a time in id order; a crash leaves `running` jobs
//! that the next start puts back to `pending` (the send job is safe to repeat,
//! see the module docs of `sms`).
//!
//! Kinds: `sms.send` (send an outbound message), `sms.autoreply` (decide and
//! queue an auto-reply), `sms.notify` (hand an inbound message to notifyd for
//! email), `sms.alert` (tell the admins Twilio keeps failing).
//!
//! Retries: exponential backoff `sms.retry_base_ms * 2^(attempt-1)` capped at
//! `sms.retry_max_ms`, +-20 % jitter, never sooner than Twilio's
//! `Retry-After`. After `sms.give_up_after` seconds a message is marked
//! failed. `twilio.alert_after_failures` consecutive failed Twilio requests
//! raise one admin alert (reset by the next success).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Sqlite, Transaction};
use tokio_util::sync::CancellationToken;

use super::outbound::{self, JobResult};
use super::{QUEUE, SmsContext};

/// Writes a job inside `tx`; a second job with the same key is ignored.
pub async fn enqueue_in(
    tx: &mut Transaction<'_, Sqlite>,
    kind: &str,
    payload: &Value,
    key: &str,
) -> Result<(), sqlx::Error> {
    let now = proto::time::now();
    sqlx::query(
        "INSERT INTO jobs (queue, kind, payload, status, idempotency_key, next_attempt_at, created_at, updated_at) \
         VALUES (?, ?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT(idempotency_key) DO NOTHING",
    )
    .bind(QUEUE)
    .bind(kind)
    .bind(payload.to_string())
    .bind(key)
    .bind(&now)
    .bind(&now)
    .bind(&now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct Job {
    id: i64,
    kind: String,
    payload: String,
    attempts: i64,
    created_at: String,
}

/// Runs the queue until `stop`.
pub async fn run(ctx: SmsContext, stop: CancellationToken) {
    if let Err(e) = sqlx::query(
        "UPDATE jobs SET status = 'pending', updated_at = ? WHERE queue = ? AND status = 'running'",
    )
    .bind(proto::time::now())
    .bind(QUEUE)
    .execute(&ctx.pool)
    .await
    {
        tracing::error!(error = %e, "cannot recover running SMS jobs");
    }
    loop {
        if stop.is_cancelled() {
            return;
        }
        match next_due(&ctx).await {
            Ok(Some(job)) => {
                run_one(&ctx, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "SMS queue poll failed"),
        }
        let nap = until_next(&ctx).await.unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(nap) => {}
        }
    }
}

async fn next_due(ctx: &SmsContext) -> Result<Option<Job>, sqlx::Error> {
    loop {
        let job: Option<Job> = sqlx::query_as(
            "SELECT id, kind, payload, attempts, created_at FROM jobs \
             WHERE queue = ? AND status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT 1",
        )
        .bind(QUEUE)
        .bind(proto::time::now())
        .fetch_optional(&ctx.pool)
        .await?;
        let Some(job) = job else { return Ok(None) };
        let claimed = sqlx::query(
            "UPDATE jobs SET status = 'running', updated_at = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(proto::time::now())
        .bind(job.id)
        .execute(&ctx.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(Some(job));
        }
    }
}

async fn until_next(ctx: &SmsContext) -> Option<Duration> {
    let next: Option<String> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM jobs WHERE queue = ? AND status = 'pending'",
    )
    .bind(QUEUE)
    .fetch_one(&ctx.pool)
    .await
    .ok()
    .flatten();
    let at = proto::time::parse(&next?)?;
    let d = (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Some(d.min(Duration::from_secs(1)))
}

async fn run_one(ctx: &SmsContext, job: Job) {
    let payload: Value = serde_json::from_str(&job.payload).unwrap_or(Value::Null);
    let message_id = payload["message_id"].as_i64().unwrap_or(0);
    let result = match job.kind.as_str() {
        "sms.send" => match outbound::run_send(ctx, message_id).await {
            Ok(r) => r,
            Err(e) => JobResult::Retry {
                after: None,
                reason: format!("database: {e}"),
            },
        },
        "sms.autoreply" => match crate::autoreply::maybe_reply(ctx, message_id).await {
            Ok(_) => JobResult::Done,
            Err(e) => JobResult::Retry {
                after: None,
                reason: format!("{e:#}"),
            },
        },
        "sms.notify" => match notify_inbound(ctx, message_id).await {
            Ok(()) => JobResult::Done,
            Err(e) => JobResult::Retry {
                after: None,
                reason: format!("{e:#}"),
            },
        },
        "sms.alert" => {
            let text = payload["message"].as_str().unwrap_or("Twilio is failing");
            match notify(ctx, "admin_alert", 0, json!({ "source": "twiliod", "message": text }), vec![]).await {
                Ok(()) => JobResult::Done,
                Err(e) => JobResult::Retry {
                    after: None,
                    reason: format!("{e:#}"),
                },
            }
        }
        other => {
            tracing::error!(job_id = job.id, kind = other, "unknown SMS job kind");
            finish(ctx, job.id, "abandoned", Some("unknown kind")).await;
            return;
        }
    };
    let is_send = job.kind == "sms.send";
    match result {
        JobResult::Done => {
            if is_send {
                ctx.failures.store(0, Ordering::SeqCst);
            }
            finish(ctx, job.id, "done", None).await;
        }
        JobResult::Wait(d) => {
            reschedule(ctx, job.id, d, false, None).await;
        }
        JobResult::Retry { after, reason } => {
            let settings = ctx.settings.get();
            let attempts = job.attempts + 1;
            tracing::warn!(job_id = job.id, kind = %job.kind, message_id, attempts, reason = %reason, "SMS job failed, will retry");
            if is_send {
                let n = ctx.failures.fetch_add(1, Ordering::SeqCst) + 1;
                let limit = settings.u64("twilio.alert_after_failures").max(1);
                if u64::from(n) == limit {
                    raise_alert(ctx, n, &reason).await;
                }
            }
            let age = proto::time::parse(&job.created_at)
                .map(|t| (chrono::Utc::now() - t).num_seconds().max(0) as u64)
                .unwrap_or(0);
            let give_up = settings.u64("sms.give_up_after");
            if give_up > 0 && age >= give_up {
                if is_send && let Err(e) = outbound::give_up(ctx, message_id, &reason).await {
                    tracing::error!(error = %e, "cannot mark message failed");
                }
                tracing::error!(job_id = job.id, kind = %job.kind, message_id, reason = %reason, "SMS job abandoned");
                finish(ctx, job.id, "abandoned", Some(&reason)).await;
                return;
            }
            let delay = backoff(
                attempts as u32,
                settings.u64("sms.retry_base_ms"),
                settings.u64("sms.retry_max_ms"),
                after,
            );
            reschedule(ctx, job.id, delay, true, Some(&reason)).await;
        }
    }
}

/// Delay before attempt `attempts + 1`: `base * 2^(attempts-1)` capped at
/// `max`, +-20 % jitter, and never below `retry_after`.
pub fn backoff(attempts: u32, base_ms: u64, max_ms: u64, retry_after: Option<Duration>) -> Duration {
    let base = base_ms.max(1);
    let exp = base.saturating_mul(1u64 << attempts.saturating_sub(1).min(30));
    let capped = exp.min(max_ms.max(base));
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    let d = Duration::from_millis((capped as f64 * jitter) as u64);
    match retry_after {
        Some(r) if r > d => r,
        _ => d,
    }
}

async fn reschedule(ctx: &SmsContext, id: i64, d: Duration, count: bool, error: Option<&str>) {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(d.as_millis() as i64);
    let res = sqlx::query(
        "UPDATE jobs SET status = 'pending', next_attempt_at = ?, attempts = attempts + ?, \
         last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?",
    )
    .bind(proto::time::fmt(at))
    .bind(i64::from(count))
    .bind(error)
    .bind(proto::time::now())
    .bind(id)
    .execute(&ctx.pool)
    .await;
    if let Err(e) = res {
        tracing::error!(job_id = id, error = %e, "cannot reschedule SMS job");
    }
}

async fn finish(ctx: &SmsContext, id: i64, status: &str, error: Option<&str>) {
    let res = sqlx::query(
        "UPDATE jobs SET status = ?, last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?",
    )
    .bind(status)
    .bind(error)
    .bind(proto::time::now())
    .bind(id)
    .execute(&ctx.pool)
    .await;
    if let Err(e) = res {
        tracing::error!(job_id = id, error = %e, "cannot finish SMS job");
    }
}

async fn raise_alert(ctx: &SmsContext, n: u32, reason: &str) {
    let text = format!("Twilio failed {n} times in a row sending SMS; messages are queued and retried. Last error: {reason}");
    tracing::error!(failures = n, reason, "Twilio keeps failing: alerting the admin");
    if let Err(e) = proto::db::alert(&ctx.pool, "twiliod", "twilio_failing", &text).await {
        tracing::error!(error = %e, "cannot record alert");
    }
    let key = format!("sms.alert:{}", proto::time::now());
    let res = async {
        let mut tx = ctx.pool.begin().await?;
        enqueue_in(&mut tx, "sms.alert", &json!({ "message": text }), &key).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "cannot queue alert notification");
    }
}

/// Hands inbound message `id` to notifyd (kind `sms`, the DID owner, media
/// attached).
async fn notify_inbound(ctx: &SmsContext, id: i64) -> anyhow::Result<()> {
    let row: Option<(String, String, String, String, String, Option<i64>, Option<String>)> =
        sqlx::query_as(
            "SELECT m.from_number, m.to_number, m.body, m.media_urls, m.created_at, d.owner_user_id, d.name \
             FROM messages m LEFT JOIN dids d ON d.id = m.did_id WHERE m.id = ?",
        )
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?;
    let Some((from, to, body, media_json, at, owner, did_name)) = row else {
        return Ok(());
    };
    let items: Vec<super::media::MediaItem> = serde_json::from_str(&media_json).unwrap_or_default();
    let attachments: Vec<String> = items
        .iter()
        .filter(|i| !i.path.is_empty())
        .map(|i| i.path.clone())
        .collect();
    let payload = json!({
        "message_id": id,
        "from": from,
        "to": to,
        "did_name": did_name.unwrap_or_default(),
        "body": body,
        "received_at": at,
        "media": items,
    });
    notify(ctx, "sms", owner.unwrap_or(0), payload, attachments).await
}

async fn notify(
    ctx: &SmsContext,
    kind: &str,
    user_id: i64,
    payload: Value,
    attachments: Vec<String>,
) -> anyhow::Result<()> {
    use proto::pb::notifyd::NotifyRequest;
    use proto::pb::notifyd::notifyd_client::NotifydClient;
    let addr = format!("http://{}", ctx.notifyd_grpc);
    let call = async {
        let mut client = NotifydClient::connect(addr).await?;
        client
            .notify(NotifyRequest {
                kind: kind.to_owned(),
                user_id,
                payload_json: payload.to_string(),
                attachments,
            })
            .await?;
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| anyhow::anyhow!("notifyd did not answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        for (n, mid) in [(1u32, 100u64), (2, 200), (3, 400), (4, 800), (9, 1000)] {
            let d = backoff(n, 100, 1000, None).as_millis() as u64;
            assert!(d >= mid * 8 / 10 && d <= mid * 12 / 10, "attempt {n}: {d} ms");
        }
        let d = backoff(1, 100, 1000, Some(Duration::from_secs(3)));
        assert_eq!(d, Duration::from_secs(3));
    }
}
