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
/// The file webd writes beside the database when it fails its integrity
/// check (and removes when a check passes again, e.g. after a restore).
/// While it exists every daemon's connections are `PRAGMA query_only`: no
/// daemon writes to a damaged database, and each says so in its health.
pub const READ_ONLY_MARKER: &str = "read-only";

/// What the daemons say while the marker is there.
pub const READ_ONLY_DETAIL: &str = "read-only: the database failed its integrity check, so nothing is written until an admin restores a backup";

/// Sets (with `reason` as its text) or clears the read-only marker.
pub fn mark_read_only(data_dir: &Path, reason: Option<&str>) -> std::io::Result<()> {
    let path = data_dir.join(READ_ONLY_MARKER);
    match reason {
        Some(r) => std::fs::write(path, r),
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Whether the read-only marker is there.
pub fn is_marked_read_only(data_dir: &Path) -> bool {
    data_dir.join(READ_ONLY_MARKER).exists()
}

/// Keeps `flag` equal to the marker's presence, checking every second
/// until the pool closes; logs each change once.
async fn follow_read_only_marker(
    data_dir: PathBuf,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pool: SqlitePool,
) {
    use std::sync::atomic::Ordering;
    while !pool.is_closed() {
        let on = is_marked_read_only(&data_dir);
        if flag.swap(on, Ordering::Relaxed) != on {
            if on {
                tracing::error!("{READ_ONLY_DETAIL}");
            } else {
                tracing::warn!("the database passed its integrity check again: writing resumes");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

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
    private_dir(data_dir).map_err(io(data_dir))?;
    for sub in DATA_SUBDIRS {
        let p = data_dir.join(sub);
        private_dir(&p).map_err(io(&p))?;
    }
    let lock_path = data_dir.join("gosip.db.lock");
    let lock = private_file(&lock_path).map_err(io(&lock_path))?;
    // SQLite gives the -wal and -shm files the mode of the database file,
    // so creating it 0600 first keeps all three private.
    let db = db_path(data_dir);
    private_file(&db).map_err(io(&db))?;
    for suffix in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            set_mode(&p, 0o600).map_err(io(&p))?;
        }
    }
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
        .foreign_keys(true)
        // 512 KiB of page cache per connection instead of SQLite's 2 MiB:
        // a home PBX's database is small and the OS caches the file, while
        // 2 MiB times every connection of five daemons is most of their
        // memory on a 1 GB box.
        .pragma("cache_size", "-512");
    // Read-only mode: each connection handed out is query_only exactly
    // while the marker is there (a per-acquire PRAGMA, microseconds).
    let read_only = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(is_marked_read_only(
        data_dir,
    )));
    let query_only = |on: bool| {
        if on {
            "PRAGMA query_only = 1"
        } else {
            "PRAGMA query_only = 0"
        }
    };
    let (reused, fresh) = (read_only.clone(), read_only.clone());
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        // An idle connection handed out again ...
        .before_acquire(move |conn, _meta| {
            let sql = query_only(reused.load(std::sync::atomic::Ordering::Relaxed));
            Box::pin(async move {
                sqlx::query(sql).execute(&mut *conn).await?;
                Ok(true)
            })
        })
        // ... and a new one.
        .after_connect(move |conn, _meta| {
            let sql = query_only(fresh.load(std::sync::atomic::Ordering::Relaxed));
            Box::pin(async move {
                sqlx::query(sql).execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect_with(opts)
        .await?;
    if !read_only.load(std::sync::atomic::Ordering::Relaxed) {
        MIGRATOR.run(&pool).await?;
    }
    drop(lock);
    tokio::spawn(follow_read_only_marker(
        data_dir.to_owned(),
        read_only,
        pool.clone(),
    ));
    Ok(pool)
}

/// Creates `dir` (and its parents) and makes it 0700: the data dir holds
/// call recordings, voicemails, messages' media and the password hashes.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Opens (creating if needed) `path` for writing without truncating it, and
/// makes it 0600.
pub fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a new file; an older install's file is
    // narrowed here.
    set_mode(path, 0o600)?;
    Ok(f)
}

/// Writes `data` to `path` (created or truncated) readable by GoSIP alone
/// (0600, whatever the umask): voicemails, MMS media and database copies
/// hold what callers said and wrote.
pub async fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .await?;
    f.write_all(data).await?;
    f.flush().await?;
    drop(f);
    // `mode` applies only to a new file.
    set_mode(path, 0o600)
}

/// [`write_private`] through a hidden temp file beside `path`, renamed into
/// place so that nobody reads half a file; the folder is created if missing
/// and made 0700, the file is 0600, whatever the umask.
pub async fn write_private_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        ));
    };
    private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{:016x}.part",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    let done = match write_private(&tmp, data).await {
        Ok(()) => tokio::fs::rename(&tmp, path).await,
        Err(e) => Err(e),
    };
    if done.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    done
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
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

/// Repeats of one event within this many seconds are folded into one row.
pub const SECURITY_EVENT_FOLD_SECS: i64 = 600;
/// New rows per source and kind within [`SECURITY_EVENT_FOLD_SECS`]; past
/// it, events from further addresses are folded into one row with the
/// address `*`, so a flood from many (or forged) addresses stays bounded.
pub const SECURITY_EVENT_ROWS_PER_WINDOW: i64 = 100;

/// Records a security event (bad SIP password, ban, failed login ...) that
/// admins see in the security log. Logging is the caller's job.
///
/// Unauthenticated requests cause these, so a repeat (same source, kind,
/// address and user within [`SECURITY_EVENT_FOLD_SECS`]) only counts up
/// the existing row, and past [`SECURITY_EVENT_ROWS_PER_WINDOW`] new rows
/// per kind everything lands in one overflow row.
pub async fn security_event(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    ip: &str,
    username: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now();
    let since = crate::time::fmt(now - chrono::Duration::seconds(SECURITY_EVENT_FOLD_SECS));
    let now = crate::time::fmt(now);
    if fold_security_event(pool, source, kind, ip, username, &since, &now).await? {
        return Ok(());
    }
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM security_events WHERE source = ? AND kind = ? AND created_at > ?",
    )
    .bind(source)
    .bind(kind)
    .bind(&since)
    .fetch_one(pool)
    .await?;
    let (ip, username, detail) = if recent >= SECURITY_EVENT_ROWS_PER_WINDOW {
        if fold_security_event(pool, source, kind, "*", "*", &since, &now).await? {
            return Ok(());
        }
        (
            "*",
            "*",
            "events from further addresses, folded into one row",
        )
    } else {
        (ip, username, detail)
    };
    sqlx::query(
        "INSERT INTO security_events (source, kind, ip_address, username, detail, created_at, last_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(source)
    .bind(kind)
    .bind(ip)
    .bind(username)
    .bind(detail)
    .bind(&now)
    .bind(&now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Counts one more repeat into the row of this event since `since`; false
/// when there is none.
async fn fold_security_event(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    ip: &str,
    username: &str,
    since: &str,
    now: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE security_events SET count = count + 1, last_at = ?1 WHERE id = (\
           SELECT id FROM security_events WHERE source = ?2 AND kind = ?3 AND ip_address = ?4 \
           AND username = ?5 AND created_at > ?6 ORDER BY id DESC LIMIT 1)",
    )
    .bind(now)
    .bind(source)
    .bind(kind)
    .bind(ip)
    .bind(username)
    .bind(since)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Records an alert for the admin (shown in the UI; notifyd mails it).
pub async fn alert(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    alert_at(pool, source, kind, message, &crate::time::now()).await
}

/// [`alert`] raised at `created_at` (a row written late keeps its time).
pub async fn alert_at(
    pool: &SqlitePool,
    source: &str,
    kind: &str,
    message: &str,
    created_at: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO alerts (source, kind, message, created_at) VALUES (?, ?, ?, ?)")
        .bind(source)
        .bind(kind)
        .bind(message)
        .bind(created_at)
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

    #[tokio::test]
    async fn database_and_data_dirs_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let pool = open(&data).await.unwrap();
        sqlx::query("INSERT INTO config (key, value) VALUES ('x', 'y')")
            .execute(&pool)
            .await
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for sub in DATA_SUBDIRS {
            assert_eq!(mode(&data.join(sub)), 0o700, "{sub}");
        }
        for f in ["gosip.db", "gosip.db-wal", "gosip.db-shm", "gosip.db.lock"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }

    #[tokio::test]
    async fn an_older_world_readable_database_is_narrowed_on_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()).await.unwrap());
        let db = db_path(dir.path());
        set_mode(&db, 0o644).unwrap();
        set_mode(dir.path(), 0o755).unwrap();
        drop(open(dir.path()).await.unwrap());
        assert_eq!(
            std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[tokio::test]
    async fn a_thousand_repeats_of_an_event_make_one_row_with_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path()).await.unwrap();
        for _ in 0..1000 {
            security_event(
                &pool,
                "twiliod",
                "webhook_signature",
                "198.51.100.7",
                "",
                "bad",
            )
            .await
            .unwrap();
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT ip_address, count FROM security_events")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(rows, vec![("198.51.100.7".to_owned(), 1000)]);
    }

    #[tokio::test]
    async fn events_from_a_thousand_addresses_stay_bounded_and_all_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path()).await.unwrap();
        for i in 0..1000u32 {
            let ip = format!("198.18.{}.{}", i / 256, i % 256);
            security_event(&pool, "twiliod", "webhook_signature", &ip, "", "bad")
                .await
                .unwrap();
        }
        // Another kind is not crowded out by the flood.
        security_event(&pool, "sipd", "sip_ban", "203.0.113.9", "", "")
            .await
            .unwrap();
        let (rows, total): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), SUM(count) FROM security_events WHERE kind = 'webhook_signature'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(rows, SECURITY_EVENT_ROWS_PER_WINDOW + 1);
        assert_eq!(total, 1000);
        let star: i64 = sqlx::query_scalar(
            "SELECT count FROM security_events WHERE ip_address = '*' AND kind = 'webhook_signature'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(star, 1000 - SECURITY_EVENT_ROWS_PER_WINDOW);
        let bans: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM security_events WHERE kind = 'sip_ban'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(bans, 1);
    }

    async fn futures_join<T>(hs: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn write_private_atomic_makes_its_folder_private_and_leaves_no_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("media");
        let p = dir.join("SM1-0.jpg");
        write_private_atomic(&p, b"first").await.unwrap();
        write_private_atomic(&p, b"second").await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["SM1-0.jpg"]);
        // A folder that cannot be made is an error, not a panic.
        std::fs::write(d.path().join("file"), b"").unwrap();
        assert!(
            write_private_atomic(&d.path().join("file/x"), b"")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn write_private_leaves_a_file_only_gosip_can_read_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("voicemail.wav");
        // An older file with open permissions is narrowed too.
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"RIFF").await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"RIFF");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
