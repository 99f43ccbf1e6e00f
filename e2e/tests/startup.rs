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

/// `<daemon> --health` with the daemon's own settings (what a container
/// health check runs): exit 0 while that daemon serves, 1 once it is gone,
/// whatever the other daemons do.
#[tokio::test(flavor = "multi_thread")]
async fn each_daemon_checks_its_own_health_with_dash_dash_health() {
    let mut sys = System::start().await.expect("start");
    let probe = |sys: &System, d: &str| {
        std::process::Command::new(e2e::bin_dir().join(d))
            .arg("--health")
            .envs(sys.ports.env(&sys.data_dir))
            .output()
            .expect("run --health")
    };
    for d in ["sipd", "mediad", "twiliod", "notifyd", "webd"] {
        let out = probe(&sys, d);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{d}: {text}");
        assert!(text.contains(&format!("{d} ok")), "{d}: {text}");
    }
    sys.stop("mediad").expect("stop mediad");
    let out = probe(&sys, "mediad");
    assert!(
        !out.status.success(),
        "a stopped mediad must fail its check"
    );
    // The others still pass: each checks only itself.
    assert!(probe(&sys, "sipd").status.success());
}
