//! Backup and restore.
//!
//! A backup is a tar archive holding `manifest.json` (format, version,
//! schema version, time), `config.json` (every setting, secrets included:
//! the archive is for admins only) and `gosip.db`, a consistent snapshot
//! taken with `VACUUM INTO` while the other daemons keep running.
//!
//! Restore validates everything before touching the live database: the tar
//! must parse, the manifest must say `gosip-backup` version 1 with a schema
//! no newer than ours, and the database must pass `PRAGMA integrity_check`.
//! The snapshot is then migrated to the current schema in its temp file and
//! copied into the live database table by table inside ONE transaction
//! (`ATTACH`, `DELETE`, `INSERT ... SELECT`, foreign keys deferred), so the
//! other daemons, which share the file in WAL mode, see either the old or the
//! new data, never a mix, and no file is swapped under their open handles.
//! Sessions are cleared (everyone logs in again), live registrations are
//! kept, jobs that were still queued in the backup are abandoned (a days-old
//! SMS must not go out), and every daemon is told to reload its settings. If the live file itself is damaged beyond writing,
//! the documented fallback is manual: stop GoSIP and replace `gosip.db` with
//! the archive's `gosip.db`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnectOptions;
use tokio_util::sync::CancellationToken;

use crate::AppState;

pub const FORMAT: &str = "gosip-backup";
pub const VERSION: u32 = 1;
/// Tables never restored: per-login state, and the phones' live
/// registrations (sipd's view of who is online now, not configuration).
const SKIP: &[&str] = &[
    "sessions",
    "sms_media_tokens",
    "login_attempts",
    "_sqlx_migrations",
    "registrations",
];

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub schema_version: i64,
    pub created_at: String,
    pub gosip_version: String,
}

/// Why an archive was refused (shown to the admin).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The upload is not a GoSIP backup archive.
    #[error("not a GoSIP backup archive: {0}")]
    Format(String),
    /// The archive comes from a newer GoSIP or another format version.
    #[error("{0}")]
    Version(String),
    /// The database inside the archive is damaged.
    #[error("the database in the archive is damaged: {0}")]
    Integrity(String),
    /// Something failed on our side.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn backups_dir(st: &AppState) -> PathBuf {
    st.data_dir.join("backups")
}

async fn schema_version(pool: &sqlx::SqlitePool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT IFNULL(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?,
    )
}

/// Writes a backup archive into `backups/` and returns its path.
pub async fn create(st: &AppState, label: &str) -> anyhow::Result<PathBuf> {
    let dir = backups_dir(st);
    tokio::fs::create_dir_all(&dir).await?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let tmp_db = dir.join(format!(".snapshot-{}.db", crate::accounts::random_token(8)));
    sqlx::query("VACUUM INTO ?")
        .bind(tmp_db.display().to_string())
        .execute(&st.pool)
        .await
        .context("VACUUM INTO")?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        schema_version: schema_version(&st.pool).await?,
        created_at: proto::time::now(),
        gosip_version: proto::VERSION.into(),
    };
    let config: std::collections::BTreeMap<String, String> = st
        .settings
        .get()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let name = format!("gosip-backup-{label}{stamp}.tar");
    let out = dir.join(&name);
    let tmp_out = dir.join(format!(".{name}.part"));
    let (tmp_db2, tmp_out2, out2) = (tmp_db.clone(), tmp_out.clone(), out.clone());
    let res = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // Backups hold every secret and password hash: owner only.
        let f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp_out2)?
        };
        let mut t = tar::Builder::new(f);
        append(
            &mut t,
            "manifest.json",
            &serde_json::to_vec_pretty(&manifest)?,
        )?;
        append(&mut t, "config.json", &serde_json::to_vec_pretty(&config)?)?;
        t.append_path_with_name(&tmp_db2, "gosip.db")?;
        t.into_inner()?.sync_all()?;
        std::fs::rename(&tmp_out2, &out2)?;
        Ok(())
    })
    .await?;
    let _ = tokio::fs::remove_file(&tmp_db).await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(&tmp_out).await;
    }
    res?;
    tracing::info!(file = %name, "backup written");
    Ok(out)
}

fn append<W: std::io::Write>(
    t: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> anyhow::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    h.set_cksum();
    t.append_data(&mut h, name, data)?;
    Ok(())
}

/// A backup file name we wrote (no path tricks).
pub fn valid_name(name: &str) -> bool {
    name.starts_with("gosip-backup-")
        && name.ends_with(".tar")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Backups in `backups/`, newest first: (name, size, modified).
pub async fn list(st: &AppState) -> anyhow::Result<Vec<(String, u64, String)>> {
    let mut out = Vec::new();
    let mut rd = tokio::fs::read_dir(backups_dir(st)).await?;
    while let Some(e) = rd.next_entry().await? {
        let name = e.file_name().to_string_lossy().into_owned();
        if !valid_name(&name) {
            continue;
        }
        let md = e.metadata().await?;
        let modified = md
            .modified()
            .ok()
            .map(|t| proto::time::fmt(chrono::DateTime::<chrono::Utc>::from(t)))
            .unwrap_or_default();
        out.push((name, md.len(), modified));
    }
    out.sort_by(|a, b| b.2.cmp(&a.2).then(b.0.cmp(&a.0)));
    Ok(out)
}

/// Path of a stored backup by name.
pub fn path_of(st: &AppState, name: &str) -> Option<PathBuf> {
    let p = backups_dir(st).join(name);
    (valid_name(name) && p.is_file()).then_some(p)
}

/// What a backup holds, counted for the admin before a restore replaces
/// everything with it.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Contents {
    pub users: i64,
    pub phones: i64,
    pub numbers: i64,
    pub rules: i64,
    pub calls: i64,
    pub messages: i64,
    pub voicemails: i64,
}

/// Validate only, or validate and replace the live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Check,
    Apply,
}

/// Validates an archive exactly as a restore does and, in [`Mode::Apply`],
/// restores it into the live database. Either way the archive's manifest and
/// what it holds come back; a check changes nothing.
pub async fn restore(
    st: &AppState,
    archive: &[u8],
    mode: Mode,
) -> Result<(Manifest, Contents), RestoreError> {
    let dir = backups_dir(st);
    tokio::fs::create_dir_all(&dir)
        .await
        .context("backups dir")?;
    let tmp_db = dir.join(format!(".restore-{}.db", crate::accounts::random_token(8)));
    let res = restore_inner(st, archive, &tmp_db, mode).await;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = tokio::fs::remove_file(format!("{}{suffix}", tmp_db.display())).await;
    }
    res
}

async fn restore_inner(
    st: &AppState,
    archive: &[u8],
    tmp_db: &Path,
    mode: Mode,
) -> Result<(Manifest, Contents), RestoreError> {
    // 1. Parse the archive.
    let (manifest, db) = unpack(archive)?;
    let manifest: Manifest = serde_json::from_slice(
        &manifest.ok_or_else(|| RestoreError::Format("manifest.json is missing".into()))?,
    )
    .map_err(|e| RestoreError::Format(format!("manifest.json: {e}")))?;
    let db = db.ok_or_else(|| RestoreError::Format("gosip.db is missing".into()))?;
    // 2. Format and version.
    if manifest.format != FORMAT {
        return Err(RestoreError::Format(format!(
            "format is {:?}",
            manifest.format
        )));
    }
    if manifest.version != VERSION {
        return Err(RestoreError::Version(format!(
            "archive format version {} is not supported (this GoSIP reads version {VERSION})",
            manifest.version
        )));
    }
    let ours = schema_version(&st.pool).await?;
    if manifest.schema_version > ours {
        return Err(RestoreError::Version(format!(
            "the archive comes from a newer GoSIP (schema {} > {ours}); upgrade first",
            manifest.schema_version
        )));
    }
    if !db.starts_with(b"SQLite format 3\0") {
        return Err(RestoreError::Integrity(
            "gosip.db is not an SQLite database".into(),
        ));
    }
    proto::db::write_private(tmp_db, &db)
        .await
        .context("write temp db")?;
    // 3. Integrity, then bring the copy to our schema.
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", tmp_db.display()))
        .map_err(|e| RestoreError::Internal(e.into()))?;
    let conn = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&conn)
        .await
        .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    if check != ["ok"] {
        return Err(RestoreError::Integrity(
            check.join("; ").chars().take(300).collect(),
        ));
    }
    let has_users: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name IN ('users','_sqlx_migrations')")
            .fetch_one(&conn)
            .await
            .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    if has_users != 2 {
        return Err(RestoreError::Format("gosip.db has no GoSIP schema".into()));
    }
    proto::db::MIGRATOR
        .run(&conn)
        .await
        .map_err(|e| RestoreError::Version(format!("cannot migrate the archive's schema: {e}")))?;
    let contents = count(&conn)
        .await
        .map_err(|e| RestoreError::Integrity(e.to_string()))?;
    conn.close().await;
    if mode == Mode::Check {
        return Ok((manifest, contents));
    }
    // 4. Keep what is there now (the restore can be undone from the list),
    // unless the live database is too damaged to copy.
    if let Err(e) = create(st, "before-restore-").await {
        tracing::warn!(error = %format!("{e:#}"), "no backup of the data the restore replaces");
    }
    // 5. Copy into the live database in one transaction.
    copy_into_live(st, tmp_db).await?;
    crate::health::check_database(st).await;
    crate::http::reload_all(st).await;
    tracing::warn!(created_at = %manifest.created_at, "database restored from backup");
    Ok((manifest, contents))
}

async fn count(conn: &sqlx::SqlitePool) -> sqlx::Result<Contents> {
    let n = |table: &'static str| async move {
        // `table` is one of the fixed names below.
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(conn)
            .await
    };
    Ok(Contents {
        users: n("users").await?,
        phones: n("devices").await?,
        numbers: n("dids").await?,
        rules: n("routes").await?,
        calls: n("cdrs").await?,
        messages: n("messages").await?,
        voicemails: n("voicemails").await?,
    })
}

/// (manifest.json, gosip.db) as found in an archive.
type Unpacked = (Option<Vec<u8>>, Option<Vec<u8>>);

fn unpack(archive: &[u8]) -> Result<Unpacked, RestoreError> {
    let mut manifest = None;
    let mut db = None;
    let mut t = tar::Archive::new(archive);
    let entries = t
        .entries()
        .map_err(|e| RestoreError::Format(e.to_string()))?;
    for e in entries {
        let mut e = e.map_err(|e| RestoreError::Format(e.to_string()))?;
        let name = e
            .path()
            .map_err(|e| RestoreError::Format(e.to_string()))?
            .display()
            .to_string();
        if name != "manifest.json" && name != "gosip.db" {
            continue;
        }
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)
            .map_err(|e| RestoreError::Format(e.to_string()))?;
        if name == "manifest.json" {
            manifest = Some(buf);
        } else {
            db = Some(buf);
        }
    }
    Ok((manifest, db))
}

async fn copy_into_live(st: &AppState, tmp_db: &Path) -> anyhow::Result<()> {
    let mut conn = st.pool.acquire().await?;
    // A restore is the way out of read-only mode: this one connection may
    // write while the marker still makes the others query_only.
    sqlx::query("PRAGMA query_only = 0")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ATTACH DATABASE ? AS restore_src")
        .bind(tmp_db.display().to_string())
        .execute(&mut *conn)
        .await?;
    let res = async {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut tx = conn.begin().await?;
        sqlx::query("PRAGMA defer_foreign_keys = ON").execute(&mut *tx).await?;
        for t in tables.iter().filter(|t| !SKIP.contains(&t.as_str())) {
            let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{t}', 'main')"
            )))
            .fetch_all(&mut *tx)
            .await?;
            let src: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{t}', 'restore_src')"
            )))
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM main.\"{t}\"")))
                .execute(&mut *tx)
                .await?;
            let common: Vec<String> = cols
                .iter()
                .filter(|c| src.contains(c))
                .map(|c| format!("\"{c}\""))
                .collect();
            if common.is_empty() {
                continue;
            }
            let list = common.join(", ");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO main.\"{t}\" ({list}) SELECT {list} FROM restore_src.\"{t}\""
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM main.sessions").execute(&mut *tx).await?;
        untrusted_paths(&mut tx).await?;
        // No registration outlives its device: deleting the devices above
        // deleted theirs (ON DELETE CASCADE), and sipd, which owns the
        // table, drops the bindings of devices gone or changed when it
        // re-reads them after the restore.
        // Work that was queued when the backup was taken (an SMS, an email)
        // is stale now: never send it again.
        sqlx::query(
            "UPDATE main.jobs SET status = 'abandoned', last_error = 'not resent after a restore' \
             WHERE status IN ('pending', 'running')",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    // A failed DETACH leaves the copy attached to this pooled connection
    // until it closes; the restore's own result is what the caller needs.
    if let Err(e) = sqlx::query("DETACH DATABASE restore_src")
        .execute(&mut *conn)
        .await
    {
        tracing::warn!(error = %e, "cannot detach the restored copy");
    }
    res
}

/// An archive is a file from outside: the paths in it are not trusted.
/// Stored paths are relative to the data dir, so an absolute path or one
/// with `..` (a greeting at `/etc/passwd` that twiliod would then hand to
/// anyone calling) is dropped, greetings must lie under `greetings/`, and
/// the archive's media download tokens (which name files) are discarded.
async fn untrusted_paths(tx: &mut sqlx::SqliteConnection) -> anyhow::Result<()> {
    const BAD: &str = "(substr({c}, 1, 1) IN ('/', '\\') OR {c} LIKE '%..%' \
         OR instr({c}, char(0)) > 0)";
    let bad = |c: &str| BAD.replace("{c}", c);
    let greeting = format!(
        "UPDATE main.dids SET greeting_path = '' WHERE greeting_path <> '' \
         AND ({} OR greeting_path NOT LIKE 'greetings/%')",
        bad("greeting_path")
    );
    let dropped = sqlx::query(sqlx::AssertSqlSafe(greeting))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    for (table, col) in [("cdrs", "recording_url"), ("voicemails", "audio_url")] {
        let q = format!(
            "UPDATE main.{table} SET {col} = NULL WHERE {col} IS NOT NULL AND {col} <> '' \
             AND {}",
            bad(col)
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .execute(&mut *tx)
            .await?;
    }
    if dropped > 0 {
        tracing::warn!(
            greetings = dropped,
            "restored backup named greeting files outside the data dir; they were dropped"
        );
    }
    Ok(())
}

/// Automatic backups every `backup.interval_hours`, keeping `backup.keep`.
pub async fn schedule(st: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        if let Err(e) = tick(&st).await {
            tracing::warn!(error = format!("{e:#}"), "automatic backup failed");
        }
    }
}

/// One scheduler step: takes an automatic backup when the newest is older
/// than `backup.interval_hours`, then keeps the newest `backup.keep`.
pub async fn tick(st: &AppState) -> anyhow::Result<()> {
    let s = st.settings.get();
    let hours = s.u64("backup.interval_hours");
    let keep = s.u64("backup.keep").max(1) as usize;
    if hours == 0 || st.is_read_only() {
        return Ok(());
    }
    let autos: Vec<_> = list(st)
        .await?
        .into_iter()
        .filter(|b| b.0.starts_with("gosip-backup-auto-"))
        .collect();
    let due = match autos.first().and_then(|b| proto::time::parse(&b.2)) {
        None => true,
        Some(t) => chrono::Utc::now() - t >= chrono::Duration::hours(hours as i64),
    };
    if !due {
        return Ok(());
    }
    create(st, "auto-").await?;
    let autos: Vec<_> = list(st)
        .await?
        .into_iter()
        .filter(|b| b.0.starts_with("gosip-backup-auto-"))
        .collect();
    for old in autos.iter().skip(keep) {
        let _ = tokio::fs::remove_file(backups_dir(st).join(&old.0)).await;
    }
    Ok(())
}

/// Used by tests: read an archive's manifest.
pub fn read_manifest(archive: &[u8]) -> anyhow::Result<Manifest> {
    let mut t = tar::Archive::new(archive);
    for e in t.entries()? {
        let mut e = e?;
        if e.path()?.as_os_str() == "manifest.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b)?;
            return Ok(serde_json::from_slice(&b)?);
        }
    }
    bail!("no manifest")
}
