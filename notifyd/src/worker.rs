//! The shell around the queue: a dispatcher that claims due jobs and runs a
//! few at once, the fan-out of an accepted event into one job per channel
//! and destination (so channels retry independently), one delivery attempt
//! per job, and a watcher that turns new rows of the `alerts` table into
//! admin-alert events.

use proto::types::UserId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use proto::settings::{Settings, SettingsHandle};

use crate::deliver::{self, FileAttachment, Hook, Mail, Push};
use crate::event::{Event, Kind};
use crate::prefs::{Prefs, Recipient, Target};
use crate::queue::{self, Attempt, Job, Step};
use crate::templates;

/// Deliveries attempted at the same time.
const WORKERS: usize = 4;
/// Longest sleep of the dispatcher when nothing is due.
const MAX_IDLE: Duration = Duration::from_secs(2);
/// `jobs.kind` of an accepted event that still has to be fanned out.
pub const EVENT_JOB: &str = "event";

/// What every task shares.
pub struct Ctx {
    pub pool: SqlitePool,
    pub settings: SettingsHandle,
    /// Postmark's API (an admin setting, not a user's URL).
    pub http: reqwest::Client,
    /// Gotify and webhooks: private addresses refused, no redirects.
    pub outbound: crate::guard::Outbound,
    pub data_dir: PathBuf,
    /// Wakes the dispatcher (a job was stored or a worker finished).
    pub wake: Notify,
    /// Serialises the duplicate check and insert of admin alerts.
    alert_lock: tokio::sync::Mutex<()>,
    /// The last email error, cleared by the next success (health detail).
    pub email_error: std::sync::Mutex<String>,
    /// Admin alerts delivered without being stored, and when: the repeat
    /// window must hold while the database refuses writes too.
    unstored_alerts: std::sync::Mutex<Vec<(String, std::time::Instant)>>,
}

impl Ctx {
    pub fn new(
        pool: SqlitePool,
        settings: SettingsHandle,
        data_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("GoSIP-notifyd/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("http client")?;
        let outbound = crate::guard::Outbound::new(settings.subscribe())?;
        Ok(Self {
            pool,
            settings,
            http,
            outbound,
            data_dir,
            wake: Notify::new(),
            alert_lock: tokio::sync::Mutex::new(()),
            email_error: std::sync::Mutex::new(String::new()),
            unstored_alerts: std::sync::Mutex::new(Vec::new()),
        })
    }
}

/// A delivery job's payload (`jobs.kind` is the channel).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "channel", rename_all = "snake_case")]
pub enum Delivery {
    Email {
        event_id: i64,
        event: Event,
        to: String,
    },
    /// `user_id` none (0 when stored) = the system Gotify; else that
    /// user's own server.
    Gotify {
        event_id: i64,
        event: Event,
        #[serde(with = "proto::types::user_or_zero")]
        user_id: Option<UserId>,
    },
    /// The body is fixed at fan-out so every retry sends the same bytes.
    Webhook {
        event_id: i64,
        endpoint_id: i64,
        event: Kind,
        timestamp: i64,
        body: String,
    },
}

impl Delivery {
    pub fn channel(&self) -> &'static str {
        match self {
            Delivery::Email { .. } => "email",
            Delivery::Gotify { .. } => "gotify",
            Delivery::Webhook { .. } => "webhook",
        }
    }
}

/// The retry schedule of a channel, as set now.
pub fn schedule(s: &Settings, channel: &str) -> Vec<Duration> {
    let key = match channel {
        "email" => "notify.email_retry_delays",
        "gotify" => "notify.gotify_retry_delays",
        _ => "notify.webhook_retry_delays",
    };
    s.durations(key)
}

/// Stores an accepted event (before `Notify` answers) and wakes the
/// dispatcher.
pub async fn enqueue_event(
    ctx: &Ctx,
    event: &Event,
    idempotency_key: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let _guard = match event.kind {
        Kind::AdminAlert => Some(ctx.alert_lock.lock().await),
        _ => None,
    };
    // An alert delivered from memory while the database took no writes
    // comes back as its row once writes work again: it was sent already.
    if event.kind == Kind::AdminAlert
        && let Ok(mut seen) = ctx.unstored_alerts.lock()
    {
        seen.retain(|(_, at)| at.elapsed() < ALERT_REPEAT_WINDOW);
        if seen.iter().any(|(k, _)| *k == alert_key(event)) {
            tracing::info!("admin alert already delivered from memory; not repeated");
            return Ok(0);
        }
    }
    let mut conn = ctx.pool.acquire().await?;
    if event.kind == Kind::AdminAlert
        && let Some(id) = recent_same_alert(&mut conn, event).await?
    {
        tracing::info!(
            job_id = id,
            "same admin alert queued recently; not repeated"
        );
        return Ok(id);
    }
    let key = idempotency_key.map(|k| format!("notifyd:{k}"));
    let id = queue::insert(
        &mut conn,
        EVENT_JOB,
        &payload,
        Duration::ZERO,
        1,
        key.as_deref(),
    )
    .await?;
    drop(conn);
    ctx.wake.notify_one();
    Ok(id)
}

/// How long the same admin alert (source, code, message) is not repeated.
/// A daemon may both write an `alerts` row and call `Notify` for one
/// problem, and a failing dependency raises the same alert over and over.
pub const ALERT_REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// The event job of the same admin alert accepted within the window.
async fn recent_same_alert(
    conn: &mut sqlx::SqliteConnection,
    event: &Event,
) -> Result<Option<i64>, sqlx::Error> {
    let field = |k: &str| {
        event
            .data
            .get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let since = proto::time::fmt(
        chrono::Utc::now() - chrono::Duration::from_std(ALERT_REPEAT_WINDOW).unwrap_or_default(),
    );
    sqlx::query_scalar(
        "SELECT id FROM jobs WHERE queue = ? AND kind = ? AND created_at >= ? \
         AND json_extract(payload, '$.kind') = 'admin_alert' \
         AND IFNULL(json_extract(payload, '$.data.alert'), '') = ? \
         AND IFNULL(json_extract(payload, '$.data.message'), '') = ? \
         AND IFNULL(json_extract(payload, '$.data.source'), '') = ? \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(queue::QUEUE)
    .bind(EVENT_JOB)
    .bind(since)
    .bind(field("alert"))
    .bind(field("message"))
    .bind(field("source"))
    .fetch_optional(&mut *conn)
    .await
}

/// Claims due jobs and runs them until `shutdown`. Jobs a crash left
/// `running` are put back in line first.
pub async fn dispatch(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    match queue::recover(&ctx.pool).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "retrying jobs cut off by a restart"),
        Err(e) => tracing::warn!(error = %e, "could not recover running jobs"),
    }
    let permits = Arc::new(Semaphore::new(WORKERS));
    let mut tasks = JoinSet::new();
    loop {
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            match queue::claim(&ctx.pool).await {
                Ok(Some(job)) => {
                    let c = ctx.clone();
                    tasks.spawn(async move {
                        run_job(&c, job).await;
                        drop(permit);
                        c.wake.notify_one();
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    break;
                }
            }
        }
        while tasks.try_join_next().is_some() {}
        let wait = if permits.available_permits() == 0 {
            MAX_IDLE
        } else {
            match queue::next_due_in(&ctx.pool).await {
                Ok(Some(wait)) => wait.min(MAX_IDLE),
                _ => MAX_IDLE,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Attempts in flight get a moment to record their outcome; any still
    // running are retried after the next start.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// Runs one job, turning a panic into a failed attempt so the job is not
/// stuck `running` until the next restart.
async fn run_job(ctx: &Arc<Ctx>, job: Job) {
    let c = ctx.clone();
    let j = job.clone();
    let outcome = tokio::spawn(async move { process(&c, &j).await }).await;
    let err = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{e:#}"),
        Err(e) => format!("worker panicked: {e}"),
    };
    tracing::error!(job_id = job.id, kind = %job.kind, error = %err, "job failed internally");
    let sched = schedule(&ctx.settings.get(), &job.kind);
    let retry = match queue::next_step(usize::try_from(job.attempts).unwrap_or(0), &sched) {
        Step::Retry(d) => Some(d),
        Step::GiveUp => None,
    };
    let a = Attempt {
        channel: &job.kind,
        target: "",
        status: if retry.is_some() {
            "failed"
        } else {
            "abandoned"
        },
        response: &err,
    };
    if let Err(e) = queue::finish(&ctx.pool, &job, &a, retry, sched.len()).await {
        tracing::error!(job_id = job.id, error = %e, "could not record a failed job");
    }
}

async fn process(ctx: &Ctx, job: &Job) -> anyhow::Result<()> {
    if job.kind == EVENT_JOB {
        let event: Event = serde_json::from_str(&job.payload).context("event payload")?;
        return fan_out(ctx, job.id, &event).await;
    }
    let delivery: Delivery = match serde_json::from_str(&job.payload) {
        Ok(d) => d,
        Err(e) => {
            let msg = format!("unreadable job payload: {e}");
            let a = Attempt {
                channel: &job.kind,
                target: "",
                status: "abandoned",
                response: &msg,
            };
            return Ok(queue::give_up(&ctx.pool, job, &a).await?);
        }
    };
    attempt(ctx, job, &delivery).await
}

/// Turns one event into delivery jobs, stored in the same transaction that
/// marks the event done, so a crash repeats the fan-out at most as a whole.
async fn fan_out(ctx: &Ctx, event_id: i64, event: &Event) -> anyhow::Result<()> {
    let s = ctx.settings.get();
    let jobs = plan(ctx, &s, event_id, event).await?;
    let mut tx = ctx.pool.begin().await?;
    for d in &jobs {
        let sched = schedule(&s, d.channel());
        queue::insert(
            &mut tx,
            d.channel(),
            &serde_json::to_string(d)?,
            queue::first_delay(&sched),
            sched.len(),
            None,
        )
        .await?;
    }
    queue::mark_done(&mut tx, event_id).await?;
    tx.commit().await?;
    tracing::info!(
        event_id,
        kind = %event.kind,
        user_id = ?event.user_id,
        deliveries = jobs.len(),
        "event fanned out"
    );
    Ok(())
}

/// The deliveries of one event: per recipient and channel as their
/// preferences say, plus one per matching webhook endpoint. Reads only.
async fn plan(
    ctx: &Ctx,
    s: &Settings,
    event_id: i64,
    event: &Event,
) -> anyhow::Result<Vec<Delivery>> {
    let recipients = recipients(&ctx.pool, event.user_id).await?;
    let system_gotify = !s.str("gotify.url").is_empty() && !s.str("gotify.token").is_empty();
    let email_ok = crate::prefs::sender_allows_email(event.kind, &event.data);
    let mut jobs: Vec<Delivery> = crate::prefs::targets(event.kind, &recipients, system_gotify)
        .into_iter()
        .filter(|t| email_ok || !matches!(t, Target::Email { .. }))
        .map(|t| match t {
            Target::Email { to } => Delivery::Email {
                event_id,
                event: event.clone(),
                to,
            },
            Target::Gotify { user_id } => Delivery::Gotify {
                event_id,
                event: event.clone(),
                user_id,
            },
        })
        .collect();
    let created = proto::time::parse(&event.created_at).unwrap_or_else(chrono::Utc::now);
    let body = serde_json::to_string(&serde_json::json!({
        "id": event_id,
        "event": event.kind,
        "created_at": event.created_at,
        "timestamp": created.timestamp(),
        "user_id": event.user_id,
        "data": event.data,
        "attachments": event.attachments,
    }))?;
    for endpoint_id in webhook_endpoints(&ctx.pool, event.kind).await? {
        jobs.push(Delivery::Webhook {
            event_id,
            endpoint_id,
            event: event.kind,
            timestamp: created.timestamp(),
            body: body.clone(),
        });
    }
    Ok(jobs)
}

/// Source, alert kind and message: what makes two admin alerts the same.
fn alert_key(event: &Event) -> String {
    ["source", "alert", "message"]
        .map(|k| {
            event
                .data
                .get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
        })
        .join("\u{1f}")
}

/// Delivers an event that could not be stored (the database refuses
/// writes, e.g. the read-only mode after corruption) straight from memory,
/// on the same schedules. Only admin alerts take this path: an alert that
/// the database is read-only must not depend on writing to it. Nothing
/// survives a restart here, which is why `Notify` says so in its reply.
pub async fn deliver_unstored(ctx: Arc<Ctx>, event: Event) {
    let key = alert_key(&event);
    if let Ok(mut seen) = ctx.unstored_alerts.lock() {
        seen.retain(|(_, at)| at.elapsed() < ALERT_REPEAT_WINDOW);
        if seen.iter().any(|(k, _)| *k == key) {
            tracing::info!("same unstored admin alert sent recently; not repeated");
            return;
        }
        seen.push((key, std::time::Instant::now()));
    }
    let s = ctx.settings.get();
    // A database in trouble may fail reads too now and then: a few tries.
    let mut tries = 0;
    let deliveries = loop {
        tries += 1;
        match plan(&ctx, &s, 0, &event).await {
            Ok(d) => break d,
            Err(e) if tries < 5 => {
                tracing::warn!(error = %format!("{e:#}"), "planning an unstored event failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(kind = %event.kind, error = %format!("{e:#}"), "cannot plan an unstored event");
                return;
            }
        }
    };
    tracing::info!(
        deliveries = deliveries.len(),
        "delivering an unstored admin alert"
    );
    for d in deliveries {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let channel = d.channel();
            let mut done = 0;
            let mut wait = queue::first_delay(&schedule(&ctx.settings.get(), channel));
            loop {
                tokio::time::sleep(wait).await;
                let s = ctx.settings.get();
                done += 1;
                let (target, result) = match send(&ctx, &s, &d, 0).await {
                    Ok(Sent::Tried(t, r)) => (t, r),
                    Ok(Sent::Gone(..)) => return,
                    Err(e) => (
                        String::new(),
                        Err(deliver::DeliveryError::Internal(format!("{e:#}"))),
                    ),
                };
                let next = match &result {
                    Ok(_) => None,
                    Err(_) => match queue::next_step(done, &schedule(&s, channel)) {
                        Step::Retry(after) => Some(after),
                        Step::GiveUp => None,
                    },
                };
                let status = match (&result, next) {
                    (Ok(_), _) => "sent",
                    (Err(_), Some(_)) => "failed",
                    (Err(_), None) => "abandoned",
                };
                let text = match &result {
                    Ok(r) => r.clone(),
                    Err(e) => e.to_string(),
                };
                let text = text.as_str();
                tracing::warn!(channel, target = %target, status, attempt = done, response = %text, "unstored delivery");
                // Best effort: the log row is lost if the database still refuses writes.
                if let Ok(mut conn) = ctx.pool.acquire().await {
                    let a = Attempt {
                        channel,
                        target: &target,
                        status,
                        response: text,
                    };
                    let _ = queue::log_delivery(&mut conn, None, &a).await;
                }
                match next {
                    Some(after) => wait = after,
                    None => return,
                }
            }
        });
    }
}

/// The user an event is for, or every admin for none (or a user who no
/// longer exists).
async fn recipients(
    pool: &SqlitePool,
    user_id: Option<UserId>,
) -> Result<Vec<Recipient>, sqlx::Error> {
    let row = |(id, email, prefs): (UserId, String, String)| Recipient {
        user_id: id,
        email,
        prefs: Prefs::parse(&prefs),
    };
    if let Some(user_id) = user_id {
        let one: Option<(UserId, String, String)> =
            sqlx::query_as("SELECT id, email, CAST(notify_prefs AS TEXT) FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
        if let Some(u) = one {
            return Ok(vec![row(u)]);
        }
    }
    let admins: Vec<(UserId, String, String)> = sqlx::query_as(
        "SELECT id, email, CAST(notify_prefs AS TEXT) FROM users WHERE role = 'admin' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(admins.into_iter().map(row).collect())
}

/// Enabled endpoints whose `events` filter (empty = all) names `kind`.
async fn webhook_endpoints(pool: &SqlitePool, kind: Kind) -> Result<Vec<i64>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, CAST(events AS TEXT) FROM webhook_endpoints WHERE enabled ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, events)| {
            let list: Vec<String> = serde_json::from_str(events).unwrap_or_default();
            list.is_empty() || list.iter().any(|e| e == kind.as_str() || e == "*")
        })
        .map(|(id, _)| id)
        .collect())
}

/// One attempt of one delivery, logged, and the job moved on per the
/// channel's schedule as set right now.
async fn attempt(ctx: &Ctx, job: &Job, d: &Delivery) -> anyhow::Result<()> {
    let s = ctx.settings.get();
    let channel = d.channel();
    let (target, result) = match send(ctx, &s, d, job.id).await? {
        Sent::Tried(target, result) => (target, result),
        Sent::Gone(target, why) => {
            let a = Attempt {
                channel,
                target: &target,
                status: "abandoned",
                response: why,
            };
            return Ok(queue::give_up(&ctx.pool, job, &a).await?);
        }
    };
    if channel == "email"
        && let Ok(mut last) = ctx.email_error.lock()
    {
        *last = result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
    }
    let sched = schedule(&s, channel);
    let done = usize::try_from(job.attempts).unwrap_or(0);
    match result {
        Ok(resp) => {
            let a = Attempt {
                channel,
                target: &target,
                status: "sent",
                response: &resp,
            };
            queue::finish(&ctx.pool, job, &a, None, sched.len()).await?;
            tracing::info!(job_id = job.id, channel, target = %target, attempt = done, "delivered");
        }
        Err(err) => {
            let err = err.to_string();
            let retry = match queue::next_step(done, &sched) {
                Step::Retry(after) => Some(after),
                Step::GiveUp => None,
            };
            let a = Attempt {
                channel,
                target: &target,
                status: if retry.is_some() {
                    "failed"
                } else {
                    "abandoned"
                },
                response: &err,
            };
            queue::finish(&ctx.pool, job, &a, retry, sched.len()).await?;
            match (retry, channel) {
                (Some(after), _) => tracing::warn!(
                    job_id = job.id, channel, target = %target, attempt = done,
                    retry_in_secs = after.as_secs(), error = %err, "delivery failed, will retry"
                ),
                // Gotify fails silently (requirements, failure modes).
                (None, "gotify") => tracing::info!(
                    job_id = job.id, channel, attempt = done, error = %err, "push abandoned"
                ),
                (None, _) => {
                    tracing::warn!(
                        job_id = job.id, channel, target = %target, attempt = done,
                        error = %err, "delivery abandoned"
                    );
                    if channel == "email" {
                        let msg =
                            format!("Email to {target} abandoned after {done} attempts: {err}");
                        proto::db::alert(&ctx.pool, "notifyd", ALERT_EMAIL_FAILED, &msg).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The outcome of [`send`].
enum Sent {
    /// Target and the remote answer or error text.
    Tried(String, Result<String, deliver::DeliveryError>),
    /// Nothing to send to any more (webhook endpoint deleted or disabled).
    Gone(String, &'static str),
}

/// One delivery attempt with the settings `s`; writes nothing to the
/// database (the caller logs), so it also serves when the database is
/// read-only.
async fn send(ctx: &Ctx, s: &Settings, d: &Delivery, delivery_id: i64) -> anyhow::Result<Sent> {
    Ok(match d {
        Delivery::Email { event, to, .. } => {
            let mail = compose(&ctx.data_dir, s, event, to, delivery_id).await;
            Sent::Tried(to.clone(), deliver::email(s, &ctx.http, &mail).await)
        }
        Delivery::Gotify { event, user_id, .. } => {
            let (url, token) = gotify_server(&ctx.pool, s, *user_id).await;
            let r = templates::render(event, timezone(s));
            let push = Push {
                title: r.subject,
                message: r.short,
                priority: r.priority,
            };
            let result = deliver::gotify(&ctx.outbound, &url, &token, &push).await;
            Sent::Tried(url, result)
        }
        Delivery::Webhook {
            endpoint_id,
            event,
            timestamp,
            body,
            ..
        } => {
            let ep: Option<(String, String, bool)> =
                sqlx::query_as("SELECT url, secret, enabled FROM webhook_endpoints WHERE id = ?")
                    .bind(endpoint_id)
                    .fetch_optional(&ctx.pool)
                    .await?;
            match ep {
                Some((url, secret, true)) => {
                    let hook = Hook {
                        url: &url,
                        secret: &secret,
                        body,
                        event: event.as_str(),
                        timestamp: *timestamp,
                        delivery_id,
                    };
                    let result = deliver::webhook(&ctx.outbound, &hook).await;
                    Sent::Tried(url, result)
                }
                _ => Sent::Gone(
                    format!("endpoint {endpoint_id}"),
                    "endpoint deleted or disabled",
                ),
            }
        }
    })
}

/// id, source, kind, message, created_at of an `alerts` row.
type AlertRow = (i64, String, String, String, String);

/// `alerts.kind` recorded when an email is abandoned; never mailed itself.
pub const ALERT_EMAIL_FAILED: &str = "email_failed";

/// Renders an event's email for delivery job `delivery_id` and reads its
/// attachments from the data dir.
async fn compose(
    data_dir: &std::path::Path,
    s: &Settings,
    event: &Event,
    to: &str,
    delivery_id: i64,
) -> Mail {
    let mut r = templates::render(event, timezone(s));
    let mut attachments = Vec::new();
    for path in &event.attachments {
        if crate::event::check_attachment(path).is_err() {
            continue;
        }
        match tokio::fs::read(data_dir.join(path)).await {
            Ok(bytes) => attachments.push(FileAttachment {
                name: templates::file_name(path).to_owned(),
                content_type: declared_type(&event.data, path)
                    .unwrap_or_else(|| templates::content_type(path).to_owned()),
                bytes,
            }),
            Err(e) => {
                tracing::warn!(path, error = %e, "attachment missing; sending without it");
                let note = format!(
                    "\n(The file {} could not be attached.)\n",
                    templates::file_name(path)
                );
                r.text.push_str(&note);
            }
        }
    }
    Mail {
        to: to.to_owned(),
        subject: r.subject,
        text: r.text,
        html: r.html,
        attachments,
        message_id: Some(message_token(delivery_id, event)),
    }
}

/// The `Message-ID` token of one email delivery: its job id plus the
/// event's acceptance time (digits only), stable across retries and distinct
/// between installations whose job ids restart at 1.
fn message_token(delivery_id: i64, event: &Event) -> String {
    let when: String = event
        .created_at
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("gosip.{delivery_id}.{when}")
}

/// The MIME type the sender declared for `path` in the event's `media`
/// list (`[{"path": "media/..", "content_type": "image/png"}]`, as twiliod
/// stores MMS media), when it looks like one.
fn declared_type(data: &serde_json::Value, path: &str) -> Option<String> {
    data.get("media")?
        .as_array()?
        .iter()
        .find(|m| m.get("path").and_then(serde_json::Value::as_str) == Some(path))?
        .get("content_type")?
        .as_str()
        .filter(|t| t.contains('/') && !t.contains(['\r', '\n']))
        .map(str::to_owned)
}

/// The Gotify server for a delivery: the user's own, else the system's.
pub(crate) async fn gotify_server(
    pool: &SqlitePool,
    s: &Settings,
    user_id: Option<UserId>,
) -> (String, String) {
    if let Some(user_id) = user_id
        && let Ok(Some(prefs)) = sqlx::query_scalar::<_, String>(
            "SELECT CAST(notify_prefs AS TEXT) FROM users WHERE id = ?",
        )
        .bind(user_id)
        .fetch_optional(pool)
        .await
    {
        let p = Prefs::parse(&prefs).gotify;
        if let (Some(url), Some(token)) = (p.url, p.token) {
            return (url, token);
        }
    }
    (
        s.str("gotify.url").to_owned(),
        s.str("gotify.token").to_owned(),
    )
}

/// The system time zone, UTC when unset or unknown.
pub fn timezone(s: &Settings) -> chrono_tz::Tz {
    s.str("system.timezone")
        .parse()
        .unwrap_or(chrono_tz::Tz::UTC)
}

/// Removes finished jobs after 30 days and delivery-log rows after 90, once
/// an hour, so the shared database does not grow for ever.
pub async fn janitor(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    const DAY: Duration = Duration::from_secs(86_400);
    loop {
        match queue::prune(&ctx.pool, 30 * DAY, 90 * DAY).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "old jobs and delivery log pruned"),
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// Watches the `alerts` table (any daemon writes it with `proto::db::alert`)
/// and turns each new row into an admin-alert event, once per row thanks to
/// the idempotency key and the repeat window. Rows older than
/// [`ALERT_REPEAT_WINDOW`] are left alone (they were handled before a restart).
pub async fn watch_alerts(ctx: Arc<Ctx>, every: Duration, shutdown: CancellationToken) {
    let mut last_id: i64 = 0;
    loop {
        let since = queue::at(Duration::ZERO);
        let since = proto::time::parse(&since)
            .map(|t| {
                proto::time::fmt(
                    t - chrono::Duration::from_std(ALERT_REPEAT_WINDOW).unwrap_or_default(),
                )
            })
            .unwrap_or(since);
        let rows: Result<Vec<AlertRow>, _> = sqlx::query_as(
            "SELECT id, source, kind, message, created_at FROM alerts \
             WHERE id > ? AND created_at >= ? AND kind != ? AND NOT acknowledged ORDER BY id",
        )
        .bind(last_id)
        .bind(&since)
        .bind(ALERT_EMAIL_FAILED)
        .fetch_all(&ctx.pool)
        .await;
        match rows {
            Ok(rows) => {
                for (id, source, kind, message, created_at) in rows {
                    let event = Event {
                        kind: Kind::AdminAlert,
                        user_id: None,
                        data: serde_json::json!({
                            "alert": kind, "message": message, "source": source, "at": created_at,
                        }),
                        attachments: vec![],
                        created_at: proto::time::now(),
                    };
                    match enqueue_event(&ctx, &event, Some(&format!("alert:{id}"))).await {
                        Ok(_) => last_id = id,
                        Err(e) => {
                            tracing::warn!(alert_id = id, error = %e, "could not queue alert");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading alerts failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
