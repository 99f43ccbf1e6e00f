//! twiliod's durable work queue: handlers by job kind and exponential
//! backoff on top of [`proto::jobs`] (`queue = 'twiliod'`).
//!
//! Contract, for every kind of work that must not be lost (send an SMS,
//! download a voicemail, delete a recording at Twilio, ask notifyd to mail):
//!
//! 1. The job row is written *before* the work is acknowledged to anyone
//!    ([`Queue::enqueue`], or [`insert_job`] inside your own transaction
//!    followed by [`Queue::wake`]).
//! 2. A worker claims due jobs atomically with `UPDATE ... RETURNING`, runs
//!    the handler registered for the job's `kind` ([`Queue::register`]).
//! 3. `Ok(())` marks the job `done`. [`JobError::Retry`] reschedules it with
//!    exponential backoff and jitter (or the `Retry-After` Twilio gave) in
//!    `next_attempt_at`; [`JobError::Permanent`] marks it `failed`. A job with
//!    `max_attempts > 0` that used them all becomes `abandoned`.
//! 4. Jobs left `running` by a crash are reset to `pending` at start, so a
//!    restart loses nothing; handlers must therefore be idempotent (check the
//!    effect already happened, e.g. by SID), and [`Enqueue::key`] makes the
//!    same logical work enqueue once (`jobs.idempotency_key` is UNIQUE).
//!
//! One worker runs jobs one at a time in `next_attempt_at, id` order.
//!
//! ```ignore
//! state.queue.register("sms.send", move |job| { let st = st.clone(); async move {
//!     let id = job.payload["message_id"].as_i64().unwrap_or(0);
//!     st.twilio.send_message(&m).await.map_err(JobError::from)?;   // 5xx/429 -> Retry
//!     Ok(())
//! }});
//! state.queue.enqueue("sms.send", &json!({"message_id": 7}),
//!                     Enqueue::key(format!("sms.send:{}", 7))).await?;
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::client::TwilioError;

/// The value of `jobs.queue` for twiliod's jobs.
pub const QUEUE: &str = "twiliod";

/// One claimed job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Attempts including this one (1 on the first run).
    pub attempts: i64,
    pub max_attempts: i64,
    pub idempotency_key: Option<String>,
}

/// How a handler failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// Try again later (`after` overrides the backoff, e.g. `Retry-After`).
    #[error("retry: {error}")]
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Never going to work (bad number, unknown job): stop.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl JobError {
    pub fn retry(e: impl std::fmt::Display) -> Self {
        Self::Retry {
            error: e.to_string(),
            after: None,
        }
    }
}

impl From<TwilioError> for JobError {
    /// 5xx/429/no answer -> Retry (honouring Retry-After); other 4xx -> Permanent.
    fn from(e: TwilioError) -> Self {
        if e.is_retryable() {
            Self::Retry {
                after: e.retry_after(),
                error: e.to_string(),
            }
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        Self::retry(format!("database: {e}"))
    }
}

/// Options of one enqueue.
#[derive(Debug, Clone, Default)]
pub struct Enqueue {
    /// Same key -> same job (the second enqueue returns the first job's id).
    pub idempotency_key: Option<String>,
    /// 0 = retry until it works.
    pub max_attempts: u32,
    /// Run no earlier than this from now.
    pub delay: Duration,
}

impl Enqueue {
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            idempotency_key: Some(key.into()),
            ..Self::default()
        }
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
type Handler = Arc<dyn Fn(Job) -> BoxFut + Send + Sync>;

/// The queue: cheap to clone, one worker started by [`Queue::run`].
#[derive(Clone)]
pub struct Queue {
    pool: SqlitePool,
    wake: Arc<Notify>,
    handlers: Arc<RwLock<HashMap<String, Handler>>>,
    base: Duration,
    max: Duration,
}

/// What [`Queue::run_one`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    Done(i64),
    Retry(i64),
    Failed(i64),
    Abandoned(i64),
}

impl Queue {
    /// A queue with backoff 2 s doubling to 5 min.
    pub fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            wake: Arc::new(Notify::new()),
            handlers: Arc::new(RwLock::new(HashMap::new())),
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }

    /// Overrides the retry backoff (tests use milliseconds).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base = base;
        self.max = max;
        self
    }

    /// Registers the handler of `kind` (replaces an earlier one).
    pub fn register<F, Fut>(&self, kind: &str, f: F)
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let h: Handler = Arc::new(move |job| Box::pin(f(job)));
        if let Ok(mut map) = self.handlers.write() {
            map.insert(kind.to_owned(), h);
        }
    }

    /// Writes a job and wakes the worker. Returns the job id (the existing
    /// one when the idempotency key was used before).
    pub async fn enqueue(
        &self,
        kind: &str,
        payload: &serde_json::Value,
        opts: Enqueue,
    ) -> Result<i64, sqlx::Error> {
        let id = insert_job(&self.pool, kind, payload, &opts).await?;
        self.wake();
        Ok(id)
    }

    /// Wakes the worker (after [`insert_job`] in your own transaction).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the worker until `stop`: resets jobs a crash left running, then
    /// claims and runs due jobs, sleeping until the next one is due.
    pub async fn run(self, stop: CancellationToken) {
        if let Err(e) = proto::jobs::recover(&self.pool, QUEUE).await {
            tracing::error!(error = %e, "queue: cannot recover running jobs");
        }
        loop {
            if stop.is_cancelled() {
                return;
            }
            match self.run_one().await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "queue: claim failed"),
            }
            let wait = self.next_due_in().await.unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
            }
        }
    }

    /// Claims and runs one due job, if any.
    pub async fn run_one(&self) -> Result<Option<Ran>, sqlx::Error> {
        let Some(job) = self.claim().await? else {
            return Ok(None);
        };
        let handler = self
            .handlers
            .read()
            .ok()
            .and_then(|m| m.get(&job.kind).cloned());
        let result = match handler {
            Some(h) => h(job.clone()).await,
            None => Err(JobError::retry(format!(
                "no handler for job kind {}",
                job.kind
            ))),
        };
        let ran = self.finish(&job, result).await?;
        Ok(Some(ran))
    }

    async fn claim(&self) -> Result<Option<Job>, sqlx::Error> {
        let job = proto::jobs::claim(&self.pool, QUEUE).await?;
        Ok(job.map(|j| Job {
            id: j.id,
            kind: j.kind,
            payload: serde_json::from_str(&j.payload).unwrap_or(serde_json::Value::Null),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            idempotency_key: j.idempotency_key,
        }))
    }

    async fn finish(&self, job: &Job, result: Result<(), JobError>) -> Result<Ran, sqlx::Error> {
        use proto::jobs::Outcome;
        let (outcome, ran) = match result {
            Ok(()) => (Outcome::Done, Ran::Done(job.id)),
            Err(JobError::Permanent(error)) => {
                tracing::warn!(job = job.id, kind = %job.kind, error = %error, "job failed permanently");
                (Outcome::Failed { error }, Ran::Failed(job.id))
            }
            Err(JobError::Retry { error, after }) => {
                if job.max_attempts > 0 && job.attempts >= job.max_attempts {
                    tracing::error!(job = job.id, kind = %job.kind, attempts = job.attempts, error = %error, "job abandoned");
                    if let Err(e) = proto::db::alert(
                        &self.pool,
                        "twiliod",
                        "job_abandoned",
                        &format!(
                            "{} gave up after {} attempts: {error}",
                            job.kind, job.attempts
                        ),
                    )
                    .await
                    {
                        tracing::warn!(error = %e, "cannot record the alert");
                    }
                    (Outcome::Abandoned { error }, Ran::Abandoned(job.id))
                } else {
                    let n = u32::try_from(job.attempts.max(1) - 1).unwrap_or(u32::MAX);
                    let wait = crate::client::backoff(self.base, self.max, n, after);
                    tracing::info!(job = job.id, kind = %job.kind, attempts = job.attempts, ?wait, error = %error, "job will be retried");
                    let at = proto::jobs::due_in(wait);
                    (Outcome::Retry { at, error }, Ran::Retry(job.id))
                }
            }
        };
        proto::jobs::settle(&self.pool, job.id, &outcome).await?;
        Ok(ran)
    }

    async fn next_due_in(&self) -> Option<Duration> {
        proto::jobs::next_due_in(&self.pool, QUEUE).await.ok()?
    }
}

/// Inserts a pending job with `exec` (a pool or your open transaction).
/// With an idempotency key already used, returns the existing job's id.
pub async fn insert_job<'e, E>(
    exec: E,
    kind: &str,
    payload: &serde_json::Value,
    opts: &Enqueue,
) -> Result<i64, sqlx::Error>
where
    E: sqlx::SqliteExecutor<'e>,
{
    let payload = payload.to_string();
    let job = proto::jobs::NewJob {
        queue: QUEUE,
        kind,
        payload: &payload,
        delay: opts.delay,
        max_attempts: opts.max_attempts,
        idempotency_key: opts.idempotency_key.as_deref(),
    };
    proto::jobs::insert(exec, &job).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let q = Queue::new(pool).with_backoff(Duration::from_millis(1), Duration::from_millis(2));
        (dir, q)
    }

    async fn status(q: &Queue, id: i64) -> (String, i64) {
        sqlx::query_as("SELECT status, attempts FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_one(&q.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_retried_job_runs_again_after_its_backoff_and_then_is_done() {
        let (_d, q) = queue().await;
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        q.register("flaky", move |_job| {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(JobError::retry("503"))
                } else {
                    Ok(())
                }
            }
        });
        let id = q
            .enqueue("flaky", &serde_json::json!({"a": 1}), Enqueue::default())
            .await
            .unwrap();
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Retry(id)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Retry(id)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Done(id)));
        assert_eq!(status(&q, id).await, ("done".into(), 3));
        assert_eq!(q.run_one().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_job_is_not_claimed_before_it_is_due() {
        let (_d, q) = queue().await;
        q.register("x", |_| async { Ok(()) });
        q.enqueue(
            "x",
            &serde_json::json!({}),
            Enqueue::default().delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert_eq!(q.run_one().await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_same_idempotency_key_enqueues_once() {
        let (_d, q) = queue().await;
        let a = q
            .enqueue("x", &serde_json::json!({}), Enqueue::key("k1"))
            .await
            .unwrap();
        let b = q
            .enqueue("x", &serde_json::json!({}), Enqueue::key("k1"))
            .await
            .unwrap();
        assert_eq!(a, b);
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&q.pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn permanent_errors_fail_and_exhausted_jobs_are_abandoned_with_an_alert() {
        let (_d, q) = queue().await;
        q.register("bad", |_| async {
            Err(JobError::Permanent("21211".into()))
        });
        q.register("down", |_| async { Err(JobError::retry("503")) });
        let bad = q
            .enqueue("bad", &serde_json::json!({}), Enqueue::default())
            .await
            .unwrap();
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Failed(bad)));
        let down = q
            .enqueue(
                "down",
                &serde_json::json!({}),
                Enqueue::default().max_attempts(2),
            )
            .await
            .unwrap();
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Retry(down)));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(q.run_one().await.unwrap(), Some(Ran::Abandoned(down)));
        let alerts: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
            .fetch_one(&q.pool)
            .await
            .unwrap();
        assert_eq!(alerts, 1);
    }

    #[tokio::test]
    async fn jobs_left_running_by_a_crash_run_again_after_restart() {
        let (_d, q) = queue().await;
        let id = q
            .enqueue("x", &serde_json::json!({}), Enqueue::default())
            .await
            .unwrap();
        // Simulate a crash mid-job: claimed but never finished.
        assert!(q.claim().await.unwrap().is_some());
        assert_eq!(status(&q, id).await.0, "running");
        let ran = Arc::new(AtomicU32::new(0));
        let r = ran.clone();
        let q2 = Queue::new(q.pool.clone());
        q2.register("x", move |_| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(q2.clone().run(stop.clone()));
        for _ in 0..200 {
            if status(&q, id).await.0 == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(status(&q, id).await, ("done".into(), 2));
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
