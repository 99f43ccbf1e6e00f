//! Read-only mode: `PRAGMA quick_check` at start and after database errors.
//! A failed check switches webd to read-only (writes answer 503 with a clear
//! message, reads keep working), writes an alert row and the read-only
//! marker that makes every daemon's connections query_only; a later good
//! check (after a restore) switches back and removes the marker.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::http::error::DB_ERROR_SIGNAL;

/// The message write requests get while read-only.
pub const READ_ONLY_MESSAGE: &str = "The database failed its integrity check, so GoSIP is in read-only mode: \
     nothing can be changed until an administrator restores a backup (System > Backup)";

/// Runs `quick_check` once and sets or clears read-only mode.
pub async fn check_database(st: &AppState) -> bool {
    let ok = proto::db::quick_check(&st.pool).await;
    let was = st.read_only.swap(!ok, Ordering::Relaxed);
    if !ok && !was {
        tracing::error!("database quick_check failed: read-only mode");
        if let Err(e) =
            proto::db::alert(&st.pool, "webd", "database_read_only", READ_ONLY_MESSAGE).await
        {
            tracing::warn!(error = %e, "cannot record the alert");
        }
    } else if ok && was {
        tracing::warn!("database quick_check passes again: leaving read-only mode");
    }
    // The marker puts every daemon's connections in query_only mode (and
    // lifts it), so none writes to a damaged database.
    if let Err(e) = proto::db::mark_read_only(&st.data_dir, (!ok).then_some(READ_ONLY_MESSAGE)) {
        tracing::error!(error = %e, "cannot set the read-only marker for the other daemons");
    }
    ok
}

/// Re-checks after database errors (at most every 5 s) and every 10 minutes.
pub async fn watch_database(st: AppState, stop: CancellationToken) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = DB_ERROR_SIGNAL.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        let wait = Duration::from_secs(5).saturating_sub(last.elapsed());
        tokio::time::sleep(wait).await;
        last = Instant::now();
        check_database(&st).await;
    }
}

/// `--health`: webd answers its own health endpoint on this machine.
pub async fn probe(port: u16) -> std::process::ExitCode {
    let url = format!("http://127.0.0.1:{port}/api/system/health");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    match client.map(|c| c.get(&url)) {
        Ok(req) => match req.send().await {
            Ok(r) if r.status().is_success() => {
                println!("webd ok");
                std::process::ExitCode::SUCCESS
            }
            Ok(r) => {
                println!("webd answered {}", r.status());
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                println!("no answer from {url}: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        Err(e) => {
            println!("cannot build an HTTP client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
