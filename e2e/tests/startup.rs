//! The five daemons start together on an empty data dir without a migration
//! race, report healthy, and stop cleanly on SIGTERM.

use std::time::Duration;

use e2e::{DAEMONS, System};

#[tokio::test(flavor = "multi_thread")]
async fn all_daemons_start_together_on_fresh_dirs_twenty_times() {
    for round in 0..20 {
        let mut sys = System::start()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
        let h = sys
            .wait_healthy(Duration::from_secs(5))
            .await
            .expect("healthy");
        for d in DAEMONS {
            assert_eq!(h["daemons"][d]["status"], "ok", "round {round}: {d} in {h}");
        }
        assert_eq!(h["database"]["status"], "ok");
        let migrated: i64 = {
            let pool = proto::db::open(&sys.data_dir).await.expect("open");
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await
                .expect("count")
        };
        assert_eq!(migrated as usize, proto::db::MIGRATOR.iter().count());
        for d in DAEMONS {
            let st = sys.stop(d).expect("stop");
            assert!(
                st.success(),
                "round {round}: {d} exited with {st}\n{}",
                sys.log(d)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_a_stopped_daemon_as_down() {
    let mut sys = System::start().await.expect("start");
    sys.stop("mediad").expect("stop mediad");
    let v: serde_json::Value = reqwest::get(format!("{}/api/system/health", sys.base_url()))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["daemons"]["mediad"]["status"], "down");
    assert_eq!(v["daemons"]["sipd"]["status"], "ok");
}
