#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Call notices sipd had not handed to notifyd when its outbox table was
//! retired become pending jobs of sipd's queue, in order, with the same
//! recipient and payload, and the old table is gone.

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The last migration before the one under test.
const BEFORE: i64 = 540;

#[tokio::test]
async fn unsent_notices_move_to_sipds_job_queue_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("gosip.db"))
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    proto::db::MIGRATOR.run_to(BEFORE, &pool).await.unwrap();
    for (kind, user, call) in [
        ("call_ended", 3, "c1"),
        ("missed_call", 3, "c1"),
        ("admin_alert", 0, ""),
    ] {
        sqlx::query("INSERT INTO sipd_notice_outbox (kind, user_id, payload) VALUES (?, ?, ?)")
            .bind(kind)
            .bind(user)
            .bind(format!(r#"{{"call_id":"{call}"}}"#))
            .execute(&pool)
            .await
            .unwrap();
    }
    proto::db::MIGRATOR.run(&pool).await.unwrap();

    let jobs = proto::jobs::unsettled(&pool, "sipd").await.unwrap();
    let got: Vec<(String, serde_json::Value)> = jobs
        .into_iter()
        .map(|j| (j.kind, serde_json::from_str(&j.payload).unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "call_ended".into(),
                serde_json::json!({"user_id": 3, "payload": {"call_id": "c1"}})
            ),
            (
                "missed_call".into(),
                serde_json::json!({"user_id": 3, "payload": {"call_id": "c1"}})
            ),
            (
                "admin_alert".into(),
                serde_json::json!({"user_id": 0, "payload": {"call_id": ""}})
            ),
        ]
    );
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sipd_notice_outbox'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0, "the outbox table is gone");
}
