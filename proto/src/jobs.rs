//! The durable job queue every daemon's background work goes through: rows
//! of the `jobs` table, one `queue` name per daemon ("twiliod", "notifyd").
//!
//! The life of a job, the same for every queue:
//!
//! 1. [`insert`] writes it `pending` with the time it falls due, before the
//!    work is acknowledged to anyone (inside the caller's transaction when
//!    the work and the job must appear together). An idempotency key makes
//!    the same logical work one job: a second insert returns the first id.
//! 2. [`claim`] takes the oldest due job atomically (`UPDATE ... RETURNING`),
//!    marks it `running` and counts the attempt, so [`Job::attempts`] always
//!    includes the attempt being made.
//! 3. [`settle`] records the outcome: `done`, `pending` again at a later time
//!    (a retry), `failed` (the work can never succeed) or `abandoned` (the
//!    attempts ran out).
//! 4. [`recover`], at start, puts the jobs a crash left `running` back in
//!    line. Delivery is therefore at-least-once and handlers are idempotent.
//!
//! How long to wait between attempts is the queue owner's policy (twiliod
//! backs off exponentially, notifyd follows each channel's schedule); the
//! storage, the states and the counting are here, once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{SqliteExecutor, SqlitePool};

/// A job to store.
#[derive(Debug, Clone, Copy)]
pub struct NewJob<'a> {
    /// The queue (daemon) that runs it.
    pub queue: &'a str,
    /// What handler runs it.
    pub kind: &'a str,
    /// The handler's input, JSON.
    pub payload: &'a str,
    /// Run no earlier than this from now.
    pub delay: Duration,
    /// Attempts before it is abandoned; 0 = until it works.
    pub max_attempts: u32,
    /// Same key, same job.
    pub idempotency_key: Option<&'a str>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    /// The handler's input, JSON.
    pub payload: String,
    /// Attempts made, counting the one this claim starts.
    pub attempts: i64,
    /// 0 = until it works.
    pub max_attempts: i64,
    pub idempotency_key: Option<String>,
}

impl Job {
    /// Whether this attempt is the last one the job may make.
    pub fn is_last_attempt(&self) -> bool {
        self.max_attempts > 0 && self.attempts >= self.max_attempts
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The work is done.
    Done,
    /// Try again at this time; the error is kept for the admin.
    Retry { at: DateTime<Utc>, error: String },
    /// The work can never succeed (a refused number, a bad payload).
    Failed { error: String },
    /// The attempts ran out.
    Abandoned { error: String },
}

/// The storage form of now + `after`.
pub fn due_in(after: Duration) -> DateTime<Utc> {
    let d = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    now.checked_add_signed(d).unwrap_or(now)
}

/// Stores a job with `exec` (a pool or an open transaction) and returns its
/// id; with an idempotency key already used, the existing job's id.
pub async fn insert<'e, E>(exec: E, job: &NewJob<'_>) -> Result<i64, sqlx::Error>
where
    E: SqliteExecutor<'e>,
{
    let now = crate::time::now();
    // DO UPDATE (a no-op) instead of DO NOTHING so RETURNING yields the
    // existing row's id on a repeated key.
    sqlx::query_scalar(
        "INSERT INTO jobs (queue, kind, payload, status, attempts, max_attempts, next_attempt_at, \
                           idempotency_key, created_at, updated_at) \
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?) \
         ON CONFLICT(idempotency_key) DO UPDATE SET idempotency_key = excluded.idempotency_key \
         RETURNING id",
    )
    .bind(job.queue)
    .bind(job.kind)
    .bind(job.payload)
    .bind(i64::from(job.max_attempts))
    .bind(crate::time::fmt(due_in(job.delay)))
    .bind(job.idempotency_key)
    .bind(&now)
    .bind(&now)
    .fetch_one(exec)
    .await
}

/// Puts the jobs of `queue` a crash left `running` back in line; returns
/// how many.
pub async fn recover(pool: &SqlitePool, queue: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'pending', updated_at = ? WHERE queue = ? AND status = 'running'",
    )
    .bind(crate::time::now())
    .bind(queue)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Takes the oldest due job of `queue`, marking it `running` and counting
/// the attempt.
pub async fn claim(pool: &SqlitePool, queue: &str) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at = ?1 \
         WHERE id = (SELECT id FROM jobs WHERE queue = ?2 AND status = 'pending' \
                     AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT 1) \
         AND status = 'pending' \
         RETURNING id, kind, payload, attempts, max_attempts, idempotency_key",
    )
    .bind(crate::time::now())
    .bind(queue)
    .fetch_optional(pool)
    .await
}

/// Records how the attempt on job `id` ended, with `exec` (a pool or the
/// transaction that also logs the attempt).
pub async fn settle<'e, E>(exec: E, id: i64, outcome: &Outcome) -> Result<(), sqlx::Error>
where
    E: SqliteExecutor<'e>,
{
    let now = Utc::now();
    let (status, next, error) = match outcome {
        Outcome::Done => ("done", now, None),
        Outcome::Retry { at, error } => ("pending", *at, Some(error)),
        Outcome::Failed { error } => ("failed", now, Some(error)),
        Outcome::Abandoned { error } => ("abandoned", now, Some(error)),
    };
    sqlx::query(
        "UPDATE jobs SET status = ?, next_attempt_at = ?, last_error = COALESCE(?, last_error), \
         updated_at = ? WHERE id = ?",
    )
    .bind(status)
    .bind(crate::time::fmt(next))
    .bind(error)
    .bind(crate::time::fmt(now))
    .bind(id)
    .execute(exec)
    .await?;
    Ok(())
}

/// Every job of `queue` not settled yet (pending, or running when a crash
/// cut it off), oldest first: for an owner that works through its queue in
/// order from memory and reloads it at start.
pub async fn unsettled(pool: &SqlitePool, queue: &str) -> Result<Vec<Job>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, payload, attempts, max_attempts, idempotency_key FROM jobs \
         WHERE queue = ? AND status IN ('pending', 'running') ORDER BY id",
    )
    .bind(queue)
    .fetch_all(pool)
    .await
}

/// How long until the next pending job of `queue` falls due (zero when one
/// is due now); `None` when none is pending.
pub async fn next_due_in(pool: &SqlitePool, queue: &str) -> Result<Option<Duration>, sqlx::Error> {
    let next: Option<String> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM jobs WHERE queue = ? AND status = 'pending'",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?;
    Ok(next
        .and_then(|t| crate::time::parse(&t))
        .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO)))
}

/// Deletes the finished (`done`, `failed`, `abandoned`) jobs of `queue`
/// last touched more than `older_than` ago; pending and running jobs are
/// never touched. Returns the rows removed.
pub async fn prune(
    pool: &SqlitePool,
    queue: &str,
    older_than: Duration,
) -> Result<u64, sqlx::Error> {
    let d = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now().checked_sub_signed(d).unwrap_or_default();
    let r = sqlx::query(
        "DELETE FROM jobs WHERE queue = ? AND status IN ('done', 'failed', 'abandoned') \
         AND updated_at < ?",
    )
    .bind(queue)
    .bind(crate::time::fmt(cutoff))
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job<'a>(queue: &'a str, key: Option<&'a str>) -> NewJob<'a> {
        NewJob {
            queue,
            kind: "k",
            payload: "{}",
            delay: Duration::ZERO,
            max_attempts: 2,
            idempotency_key: key,
        }
    }

    async fn pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        (dir, pool)
    }

    #[tokio::test]
    async fn a_claim_counts_the_attempt_and_the_last_one_is_known() {
        let (_d, pool) = pool().await;
        let id = insert(&pool, &job("a", None)).await.unwrap();
        let first = claim(&pool, "a").await.unwrap().unwrap();
        assert_eq!((first.id, first.attempts), (id, 1));
        assert!(!first.is_last_attempt());
        let retry = Outcome::Retry {
            at: Utc::now(),
            error: "503".into(),
        };
        settle(&pool, id, &retry).await.unwrap();
        let second = claim(&pool, "a").await.unwrap().unwrap();
        assert_eq!(second.attempts, 2);
        assert!(second.is_last_attempt());
    }

    #[tokio::test]
    async fn queues_do_not_see_each_others_jobs() {
        let (_d, pool) = pool().await;
        insert(&pool, &job("a", None)).await.unwrap();
        assert_eq!(claim(&pool, "b").await.unwrap(), None);
        assert_eq!(next_due_in(&pool, "b").await.unwrap(), None);
        assert!(claim(&pool, "a").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn the_same_key_is_one_job() {
        let (_d, pool) = pool().await;
        let a = insert(&pool, &job("a", Some("k1"))).await.unwrap();
        let b = insert(&pool, &job("a", Some("k1"))).await.unwrap();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn a_job_a_crash_left_running_is_claimed_again_after_recover() {
        let (_d, pool) = pool().await;
        let id = insert(&pool, &job("a", None)).await.unwrap();
        assert_eq!(claim(&pool, "a").await.unwrap().unwrap().id, id);
        assert_eq!(claim(&pool, "a").await.unwrap(), None);
        assert_eq!(recover(&pool, "a").await.unwrap(), 1);
        assert_eq!(claim(&pool, "a").await.unwrap().unwrap().attempts, 2);
    }

    #[tokio::test]
    async fn a_job_due_later_is_not_claimed_but_its_time_is_known() {
        let (_d, pool) = pool().await;
        let later = NewJob {
            delay: Duration::from_secs(60),
            ..job("a", None)
        };
        insert(&pool, &later).await.unwrap();
        assert_eq!(claim(&pool, "a").await.unwrap(), None);
        let wait = next_due_in(&pool, "a").await.unwrap().unwrap();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
    }

    #[tokio::test]
    async fn pruning_removes_only_finished_jobs_of_the_queue() {
        let (_d, pool) = pool().await;
        let done = insert(&pool, &job("a", None)).await.unwrap();
        let pending = insert(&pool, &job("a", None)).await.unwrap();
        let other = insert(&pool, &job("b", None)).await.unwrap();
        settle(&pool, done, &Outcome::Done).await.unwrap();
        settle(&pool, other, &Outcome::Done).await.unwrap();
        sqlx::query("UPDATE jobs SET updated_at = '2000-01-01T00:00:00.000Z'")
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(prune(&pool, "a", Duration::from_secs(60)).await.unwrap(), 1);
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left, vec![pending, other]);
    }
}
