#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The recording retention sweep (mediad in-process on a temp data dir):
//! a recording past `recording.retention_days` is deleted, a newer one is
//! left alone. (sipd, which owns the CDRs, then clears their links: its
//! `forget_missing_recordings`.)

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn an_expired_recording_is_deleted_and_a_newer_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let pool = proto::db::open(dir.path()).await.unwrap();
    proto::settings::store(&pool, "recording.retention_days", "30")
        .await
        .unwrap();
    // Two recordings as mediad wrote them; one 31 days ago.
    let old = "recordings/2020/01/01/old-call.wav";
    let new = "recordings/2026/01/01/new-call.wav";
    for (rel, age_days) in [(old, 31), (new, 1)] {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"RIFF").unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_days * 86_400))
            .unwrap();
    }

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base: u16 = rand::random_range(10_000..16_000) * 2;
    let cfg = mediad::Config {
        common: proto::daemon::CommonArgs {
            data_dir: dir.path().to_owned(),
            log_format: "text".into(),
            health: false,
        },
        grpc: grpc.local_addr().unwrap().to_string(),
        rtp_ports: format!("{base}-{}", base + 3),
        rtp_bind: "127.0.0.1".into(),
        orphan_secs: 3600,
        media_threads: 1,
        // Nobody listens: no alert is expected here.
        notifyd_grpc: "127.0.0.1:9".into(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(mediad::run(cfg, mediad::Listeners { grpc }, stop.clone()));

    // The sweep runs at start; wait (bounded by polls, not by a clock) for it.
    for _ in 0..200 {
        if !dir.path().join(old).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !dir.path().join(old).exists(),
        "the expired recording is gone"
    );
    assert!(dir.path().join(new).exists(), "the newer one stays");
    stop.cancel();
    task.await.unwrap().unwrap();
}
