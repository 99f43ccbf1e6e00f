#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Admin alerts: rows any daemon writes to `alerts` are mailed to every
//! admin once (also across a restart), and an alert still goes out when the
//! database refuses writes.

mod common;

use std::time::Duration;

use common::{Notifyd, SmtpSink, free_port};
use mail_parser::MessageParser;
use proto::pb::notifyd::NotifyRequest;

async fn start_with_smtp() -> (Notifyd, SmtpSink) {
    let port = free_port();
    let port_s = port.to_string();
    let n = Notifyd::start(&[
        ("email.from", "pbx@gosip.test"),
        ("smtp.host", "127.0.0.1"),
        ("smtp.port", &port_s),
        ("smtp.security", "plain"),
        ("notify.email_retry_delays", "0,1,1"),
    ])
    .await;
    let sink = SmtpSink::start(port, &n.data_dir().join("mailbox"), None).await;
    (n, sink)
}

#[tokio::test]
async fn alert_rows_from_other_daemons_reach_every_admin_once() {
    let (mut n, sink) = start_with_smtp().await;
    n.add_user("root@gosip.test", "admin", "{}").await;
    n.add_user("ops@gosip.test", "admin", "{}").await;
    n.add_user("user@gosip.test", "user", "{}").await;
    proto::db::alert(
        &n.pool,
        "twiliod",
        "twilio_failing",
        "Twilio answered 503 three times",
    )
    .await
    .unwrap();
    // notifyd's own "email abandoned" rows are for the UI, not for mailing.
    proto::db::alert(&n.pool, "notifyd", "email_failed", "x")
        .await
        .unwrap();

    // twiliod also hands the same alert to Notify (code as `kind`).
    n.notify(
        "admin_alert",
        0,
        serde_json::json!({"source": "twiliod", "kind": "twilio_failing",
                           "message": "Twilio answered 503 three times"}),
        &[],
    )
    .await;

    let msgs = sink.wait_for(2).await;
    for raw in &msgs {
        let m = MessageParser::default().parse(raw).unwrap();
        assert_eq!(m.subject(), Some("[GoSIP alert] Twilio is failing"));
        let text = m.body_text(0).unwrap();
        assert!(text.contains("Twilio answered 503 three times"), "{text}");
        assert!(text.contains("twiliod"));
    }
    let mut rcpts = sink.envelopes();
    rcpts.sort();
    assert!(rcpts[0].contains("ops@") && rcpts[1].contains("root@"));

    // Kill only once both deliveries are recorded: a kill between the SMTP
    // server's 250 and that record would rightly repeat one (at-least-once).
    common::eventually(Duration::from_secs(10), "both jobs done", || async {
        let j = n.jobs("email").await;
        (j.len() == 2 && j.iter().all(|(s, _)| s == "done")).then_some(())
    })
    .await;
    n.kill();
    n.spawn().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        sink.messages().len(),
        2,
        "an alert was mailed again after a restart"
    );
}

#[tokio::test]
async fn an_admin_alert_goes_out_even_when_the_database_refuses_writes() {
    let (n, sink) = start_with_smtp().await;
    n.add_user("root@gosip.test", "admin", "{}").await;
    // What a read-only database looks like to notifyd: every insert fails.
    sqlx::query(
        "CREATE TRIGGER readonly_jobs BEFORE INSERT ON jobs \
         BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END",
    )
    .execute(&n.pool)
    .await
    .unwrap();

    let mut c = n.client().await;
    let reply = c
        .notify(NotifyRequest {
            kind: "admin_alert".into(),
            user_id: 0,
            payload_json:
                r#"{"alert":"db_read_only","message":"quick_check failed","source":"webd"}"#.into(),
            attachments: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.job_id, 0, "nothing could be stored");
    let raw = sink.wait_for(1).await.remove(0);
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("[GoSIP alert] Database is read-only"));
    assert!(m.body_text(0).unwrap().contains("quick_check failed"));

    // Raised again while still read-only: not mailed again.
    let again = c
        .notify(NotifyRequest {
            kind: "admin_alert".into(),
            user_id: 0,
            payload_json:
                r#"{"alert":"db_read_only","message":"quick_check failed","source":"webd"}"#.into(),
            attachments: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.job_id, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 1);

    // Other events are refused so the caller keeps them and retries.
    let err = c
        .notify(NotifyRequest {
            kind: "sms".into(),
            user_id: 0,
            payload_json: "{}".into(),
            attachments: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("readonly"), "{}", err.message());

    // Writes work again and the raiser writes its late row (what
    // proto::alerts does): listed for the admin, not mailed a second time.
    sqlx::query("DROP TRIGGER readonly_jobs")
        .execute(&n.pool)
        .await
        .unwrap();
    proto::db::alert(&n.pool, "webd", "db_read_only", "quick_check failed")
        .await
        .unwrap();
    // A different alert raised after it is mailed: the watcher has looked.
    proto::db::alert(&n.pool, "mediad", "disk_full", "recordings volume full")
        .await
        .unwrap();
    let msgs = sink.wait_for(2).await;
    let subjects: Vec<String> = msgs
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw)
                .unwrap()
                .subject()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        subjects,
        [
            "[GoSIP alert] Database is read-only",
            "[GoSIP alert] Recording storage is full"
        ]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.messages().len(),
        2,
        "the late row was not mailed again"
    );
}
