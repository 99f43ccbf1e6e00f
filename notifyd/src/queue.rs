//! notifyd's rows of the durable `jobs` table (queue = 'notifyd', stored
//! through [`proto::jobs`]), the retry schedules, and the `deliveries` log.
//!
//! A job is `pending` until due, `running` while a worker has it, then `done`
//! or `abandoned`. Jobs found `running` at start-up were cut off by a crash
//! and go back to `pending`, so delivery is at-least-once: only a crash
//! between the remote side accepting and the row being updated can repeat
//! one.

use std::time::Duration;

use chrono::Utc;
use sqlx::{SqliteConnection, SqlitePool};

/// The `jobs.queue` value notifyd owns.
pub const QUEUE: &str = "notifyd";

/// A claimed job; `attempts` counts the one being made.
pub type Job = proto::jobs::Job;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try again after this long.
    Retry(Duration),
    /// The schedule is used up.
    GiveUp,
}

/// `delays[i]` is the wait before attempt `i + 1` (measured from the
/// previous attempt; the first from acceptance). After `done` failed
/// attempts: retry while the schedule has entries left. An empty schedule
/// means a single attempt.
pub fn next_step(done: usize, delays: &[Duration]) -> Step {
    match delays.get(done) {
        Some(d) if done > 0 => Step::Retry(*d),
        _ => Step::GiveUp,
    }
}

/// The wait before the first attempt.
pub fn first_delay(delays: &[Duration]) -> Duration {
    delays.first().copied().unwrap_or_default()
}

/// The storage form of now + `after`.
pub fn at(after: Duration) -> String {
    let d = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    proto::time::fmt(Utc::now().checked_add_signed(d).unwrap_or(Utc::now()))
}

/// Stores a job. With an idempotency key, a second insert with the same key
/// returns the first job's id instead of adding one.
pub async fn insert(
    conn: &mut SqliteConnection,
    kind: &str,
    payload: &str,
    after: Duration,
    max_attempts: usize,
    idempotency_key: Option<&str>,
) -> Result<i64, sqlx::Error> {
    let job = proto::jobs::NewJob {
        queue: QUEUE,
        kind,
        payload,
        delay: after,
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        idempotency_key,
    };
    proto::jobs::insert(conn, &job).await
}

/// Puts jobs a crash left `running` back in line; returns how many.
pub async fn recover(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    proto::jobs::recover(pool, QUEUE).await
}

/// Takes the oldest due job, marking it `running` and counting the attempt.
pub async fn claim(pool: &SqlitePool) -> Result<Option<Job>, sqlx::Error> {
    proto::jobs::claim(pool, QUEUE).await
}

/// How long until the next pending job falls due.
pub async fn next_due_in(pool: &SqlitePool) -> Result<Option<Duration>, sqlx::Error> {
    proto::jobs::next_due_in(pool, QUEUE).await
}

/// Marks a job done without logging a delivery (event fan-out).
pub async fn mark_done(conn: &mut SqliteConnection, id: i64) -> Result<(), sqlx::Error> {
    proto::jobs::settle(conn, id, &proto::jobs::Outcome::Done).await
}

/// The result of one delivery attempt, as logged.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub channel: &'a str,
    pub target: &'a str,
    /// `sent`, `failed` (will retry) or `abandoned` (last try failed).
    pub status: &'a str,
    pub response: &'a str,
}

/// Logs an attempt in `deliveries` and moves the job on, in one transaction.
/// `max_attempts` is the channel's schedule as it stands now (an admin may
/// have changed it since the job was queued).
pub async fn finish(
    pool: &SqlitePool,
    job: &Job,
    attempt: &Attempt<'_>,
    retry_after: Option<Duration>,
    max_attempts: usize,
) -> Result<(), sqlx::Error> {
    use proto::jobs::Outcome;
    let mut tx = pool.begin().await?;
    log_delivery(&mut tx, Some(job.id), attempt).await?;
    let error = attempt.response.to_owned();
    let outcome = match (attempt.status, retry_after) {
        ("sent", _) => Outcome::Done,
        (_, Some(after)) => Outcome::Retry {
            at: proto::jobs::due_in(after),
            error,
        },
        _ => Outcome::Abandoned { error },
    };
    proto::jobs::settle(&mut *tx, job.id, &outcome).await?;
    sqlx::query("UPDATE jobs SET max_attempts = ? WHERE id = ?")
        .bind(i64::try_from(max_attempts).unwrap_or(i64::MAX))
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Abandons a job that cannot be attempted at all (bad payload, endpoint
/// gone), logging why.
pub async fn give_up(
    pool: &SqlitePool,
    job: &Job,
    attempt: &Attempt<'_>,
) -> Result<(), sqlx::Error> {
    finish(
        pool,
        job,
        attempt,
        None,
        usize::try_from(job.attempts).unwrap_or(0),
    )
    .await
}

/// One row of the delivery log.
pub async fn log_delivery(
    conn: &mut SqliteConnection,
    job_id: Option<i64>,
    a: &Attempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO deliveries (job_id, channel, target, status, response, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(job_id)
    .bind(a.channel)
    .bind(a.target)
    .bind(a.status)
    .bind(a.response)
    .bind(proto::time::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes notifyd's finished jobs and old delivery-log rows; returns the
/// rows removed. Pending and running jobs are never touched.
pub async fn prune(
    pool: &SqlitePool,
    jobs_older_than: Duration,
    log_older_than: Duration,
) -> Result<u64, sqlx::Error> {
    let cutoff = |d: Duration| {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        proto::time::fmt(Utc::now().checked_sub_signed(d).unwrap_or_default())
    };
    let jobs = proto::jobs::prune(pool, QUEUE, jobs_older_than).await?;
    let log = sqlx::query("DELETE FROM deliveries WHERE created_at < ?")
        .bind(cutoff(log_older_than))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(jobs + log)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn email_schedule_gives_three_tries_over_an_hour() {
        let d = secs(&[0, 1200, 2400]);
        assert_eq!(first_delay(&d), Duration::ZERO);
        assert_eq!(next_step(1, &d), Step::Retry(Duration::from_secs(1200)));
        assert_eq!(next_step(2, &d), Step::Retry(Duration::from_secs(2400)));
        assert_eq!(next_step(3, &d), Step::GiveUp);
    }

    #[test]
    fn an_empty_schedule_means_one_attempt() {
        assert_eq!(first_delay(&[]), Duration::ZERO);
        assert_eq!(next_step(1, &[]), Step::GiveUp);
    }

    #[tokio::test]
    async fn a_claimed_job_left_running_by_a_crash_is_claimed_again() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        let id = insert(&mut c, "email", "{}", Duration::ZERO, 3, None)
            .await
            .unwrap();
        drop(c);
        assert_eq!(claim(&pool).await.unwrap().unwrap().id, id);
        assert!(claim(&pool).await.unwrap().is_none());
        assert_eq!(recover(&pool).await.unwrap(), 1);
        assert_eq!(claim(&pool).await.unwrap().unwrap().id, id);
    }

    #[tokio::test]
    async fn the_same_idempotency_key_stores_one_job() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        let a = insert(&mut c, "event", "{}", Duration::ZERO, 1, Some("k1"))
            .await
            .unwrap();
        let b = insert(&mut c, "event", "{}", Duration::ZERO, 1, Some("k1"))
            .await
            .unwrap();
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn pruning_removes_finished_jobs_and_old_log_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        let done = insert(&mut c, "email", "{}", Duration::ZERO, 3, None)
            .await
            .unwrap();
        let pending = insert(&mut c, "email", "{}", Duration::ZERO, 3, None)
            .await
            .unwrap();
        let a = Attempt {
            channel: "email",
            target: "a@x",
            status: "sent",
            response: "250",
        };
        log_delivery(&mut c, Some(done), &a).await.unwrap();
        sqlx::query(
            "UPDATE jobs SET status = 'done', updated_at = '2000-01-01T00:00:00.000Z' WHERE id = ?",
        )
        .bind(done)
        .execute(&mut *c)
        .await
        .unwrap();
        sqlx::query("UPDATE jobs SET updated_at = '2000-01-01T00:00:00.000Z' WHERE id = ?")
            .bind(pending)
            .execute(&mut *c)
            .await
            .unwrap();
        drop(c);
        let day = Duration::from_secs(86_400);
        // The log row is fresh: only the old finished job goes.
        assert_eq!(prune(&pool, day, day).await.unwrap(), 1);
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left, vec![pending]);
        let log: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE job_id IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(log, 1, "the log row outlives its job");
    }

    #[tokio::test]
    async fn future_jobs_are_not_claimed_early() {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let mut c = pool.acquire().await.unwrap();
        insert(&mut c, "email", "{}", Duration::from_secs(60), 3, None)
            .await
            .unwrap();
        drop(c);
        assert!(claim(&pool).await.unwrap().is_none());
        assert!(next_due_in(&pool).await.unwrap().is_some());
    }
}
