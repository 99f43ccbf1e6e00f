#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Read-only mode as every daemon lives it: the daemon's pool and its
//! `Daemon.Health` answer, while webd's marker says the database failed its
//! integrity check and after it is gone again.

use std::time::Duration;

use proto::daemon::DaemonService;
use proto::pb::common::HealthRequest;
use proto::pb::common::daemon_server::Daemon;
use proto::settings::SettingsHandle;

async fn health(d: &DaemonService) -> (String, String) {
    let r = d
        .health(tonic::Request::new(HealthRequest {}))
        .await
        .unwrap()
        .into_inner();
    (r.status, r.detail)
}

async fn write(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    proto::db::alert(pool, "test", "probe", "a write").await
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_marker_is_there_no_write_lands_and_health_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let pool = proto::db::open(dir.path()).await.unwrap();
    let settings = SettingsHandle::new(pool.clone()).await.unwrap();
    let daemon = DaemonService::new("sipd", pool.clone(), settings);
    write(&pool).await.unwrap();
    assert_eq!(health(&daemon).await.0, "ok");

    // webd's integrity check failed: it leaves the marker.
    proto::db::mark_read_only(dir.path(), Some("integrity check failed")).unwrap();
    testkit::eventually(
        Duration::from_secs(5),
        "the daemon stops writing",
        || async { write(&pool).await.is_err() },
    )
    .await;
    let e = write(&pool).await.unwrap_err().to_string();
    assert!(e.contains("readonly"), "{e}");
    // Every connection of the pool, not just one.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.acquire().await.unwrap());
    }
    for c in &mut conns {
        let q: i64 = sqlx::query_scalar("PRAGMA query_only")
            .fetch_one(&mut **c)
            .await
            .unwrap();
        assert_eq!(q, 1);
    }
    drop(conns);
    let (status, detail) = health(&daemon).await;
    assert_eq!(
        (status.as_str(), detail.as_str()),
        ("degraded", proto::db::READ_ONLY_DETAIL)
    );
    // Reads go on, and a refused write left nothing.
    let count = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM alerts")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = count().await;
    assert!(before >= 1);
    assert!(write(&pool).await.is_err());
    assert_eq!(count().await, before);

    // A daemon started during read-only mode starts read-only.
    let other = proto::db::open_with(dir.path(), 2).await;
    if let Ok(p) = &other {
        assert!(write(p).await.is_err());
        p.close().await;
    }

    // A restore passed the check: the marker goes, writing resumes.
    proto::db::mark_read_only(dir.path(), None).unwrap();
    testkit::eventually(
        Duration::from_secs(5),
        "the daemon writes again",
        || async { write(&pool).await.is_ok() },
    )
    .await;
    assert_eq!(health(&daemon).await.0, "ok");
}
