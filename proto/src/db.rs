//! The one SQLite file every daemon shares: pool setup (WAL, busy_timeout,
//! foreign keys) and migrations that are safe when all five daemons start at
//! the same moment on an empty data dir.
//!
//! sqlx's migrator races when two processes migrate a fresh database at once
//! (`UNIQUE constraint failed: _sqlx_migrations.version`), so [`open`] holds an
//! exclusive lock on `gosip.db.lock` beside the database while it creates the
//! file and migrates; the daemons that wait then find the schema current.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use sqlx::SqlitePool;

/// Every migration, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Sub-folders of the data dir, created on open. Rows hold paths relative to
/// the data dir.
pub const DATA_SUBDIRS: &[&str] = &["recordings", "voicemails", "media", "backups", "greetings"];

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "gosip.db";

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The data dir or lock file could not be created or locked.
    #[error("data dir {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// SQLite refused to open or configure the file.
    #[error("sqlite: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Path of the database inside `data_dir`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// Creates the data dir layout, opens the pool and brings the schema up to
/// date under the migration lock.
pub async fn open(data_dir: &Path) -> Result<SqlitePool, DbError> {
    open_with(data_dir, 8).await
}

/// [`open`] with a chosen pool size.
pub async fn open_with(data_dir: &Path, max_connections: u32) -> Result<SqlitePool, DbError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DbError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    for sub in DATA_SUBDIRS {
        let p = data_dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    let lock_path = data_dir.join("gosip.db.lock");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| DbError::Io {
            path: lock_path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(io(&lock_path))?;

    let url = format!("sqlite://{}", db_path(data_dir).display());
    let opts = SqliteConnectOptions::from_str(&url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(opts)
        .await?;
    MIGRATOR.run(&pool).await?;
    drop(lock);
    Ok(pool)
}

/// `PRAGMA quick_check`: true when SQLite finds the file sound.
pub async fn quick_check(pool: &SqlitePool) -> bool {
    match sqlx::query_scalar::<_, String>("PRAGMA quick_check")
        .fetch_one(pool)
        .await
    {
        Ok(s) => s == "ok",
        Err(_) => false,
    }
}

/// Records a security event (bad SIP password, ban, failed login ...) that
/// admins see in the security log. Logging is the caller's job.
pub async fn security_event(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    ip: &str,
    username: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO security_events (source, kind, ip_address, username, detail, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(source)
    .bind(kind)
    .bind(ip)
    .bind(username)
    .bind(detail)
    .bind(crate::time::now())
    .execute(pool)
    .await?;
    Ok(())
}

/// Records an alert for the admin (shown in the UI; notifyd mails it).
pub async fn alert(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO alerts (source, kind, message, created_at) VALUES (?, ?, ?, ?)")
        .bind(source)
        .bind(kind)
        .bind(message)
        .bind(crate::time::now())
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_creates_layout_wal_and_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path()).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(busy >= 5000);
        for sub in DATA_SUBDIRS {
            assert!(dir.path().join(sub).is_dir());
        }
        assert!(quick_check(&pool).await);
    }

    #[tokio::test]
    async fn concurrent_opens_of_a_fresh_dir_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let opens = (0..5).map(|_| {
            let p = dir.path().to_owned();
            tokio::spawn(async move { open(&p).await.map(|_| ()) })
        });
        for r in futures_join(opens).await {
            r.unwrap();
        }
    }

    async fn futures_join<T>(hs: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        out
    }
}
