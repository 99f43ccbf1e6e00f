#![allow(clippy::unwrap_used, clippy::expect_used)]
//! notifyd killed with SIGKILL while jobs are queued (some events not yet
//! fanned out, some deliveries pending, one cut off mid-attempt), then
//! restarted: everything acknowledged is delivered, nothing twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Notifyd, SmtpSink, eventually, free_port};
use mail_parser::MessageParser;
use serde_json::json;

#[tokio::test]
async fn sigkill_with_jobs_queued_loses_nothing_and_repeats_nothing() {
    let smtp_port = free_port();
    // The first email attempt waits 5 s, so every delivery is still queued
    // when the process dies.
    let n_settings = [
        ("email.from", "pbx@gosip.test".to_string()),
        ("smtp.host", "127.0.0.1".to_string()),
        ("smtp.port", smtp_port.to_string()),
        ("smtp.security", "plain".to_string()),
        ("notify.email_retry_delays", "5,1,1".to_string()),
    ];
    let s: Vec<(&str, &str)> = n_settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut n = Notifyd::start(&s).await;
    let sink = SmtpSink::start(smtp_port, &n.data_dir().join("mailbox"), None).await;
    let user = n.add_user("alice@gosip.test", "user", "{}").await;

    for i in 0..3 {
        n.notify(
            "sms",
            user,
            json!({"from": "+15551234567", "body": format!("message {i}")}),
            &[],
        )
        .await;
    }
    eventually(
        Duration::from_secs(5),
        "three pending email jobs",
        || async { (n.jobs("email").await.len() == 3).then_some(()) },
    )
    .await;
    for i in 3..6 {
        n.notify(
            "sms",
            user,
            json!({"from": "+15551234567", "body": format!("message {i}")}),
            &[],
        )
        .await;
    }
    n.kill();
    assert!(
        sink.messages().is_empty(),
        "sent before the kill: the test proves nothing"
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE queue = 'notifyd' AND kind = 'event'")
            .fetch_one(&n.pool)
            .await
            .unwrap();
    assert_eq!(stored, 6, "every acknowledged event is in the jobs table");
    // As if the process had died in the middle of an attempt.
    sqlx::query(
        "UPDATE jobs SET status = 'running' WHERE id = \
         (SELECT MIN(id) FROM jobs WHERE queue = 'notifyd' AND kind = 'email')",
    )
    .execute(&n.pool)
    .await
    .unwrap();

    n.spawn().await;
    sink.wait_for(6).await;
    eventually(Duration::from_secs(10), "all email jobs done", || async {
        let j = n.jobs("email").await;
        (j.len() == 6 && j.iter().all(|(s, _)| s == "done")).then_some(())
    })
    .await;
    // Past the whole retry schedule: still exactly one of each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut seen = BTreeMap::new();
    for raw in sink.messages() {
        let m = MessageParser::default().parse(&raw).unwrap();
        let text = m.body_text(0).unwrap().to_string();
        let body = text
            .lines()
            .find(|l| l.starts_with("message "))
            .unwrap()
            .to_owned();
        *seen.entry(body).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, i32> = (0..6).map(|i| (format!("message {i}"), 1)).collect();
    assert_eq!(seen, expected);
}
