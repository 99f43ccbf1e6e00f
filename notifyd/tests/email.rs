#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Email through a real SMTP server (aiosmtpd) and a Postmark stand-in,
//! against the real notifyd binary: contents and attachments read back,
//! the 3-tries-then-abandon rule, recovery after a failure, authentication,
//! hot-reloaded settings and the "send test" error text.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{Notifyd, SmtpSink, StandIn, eventually, free_port};
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::json;

fn smtp_settings(port: u16, delays: &str) -> Vec<(&'static str, String)> {
    vec![
        // The settings screen takes a bare address (no display name).
        ("email.from", "pbx@gosip.test".into()),
        ("smtp.host", "127.0.0.1".into()),
        ("smtp.port", port.to_string()),
        ("smtp.security", "plain".into()),
        ("notify.email_retry_delays", delays.into()),
        ("system.timezone", "UTC".into()),
    ]
}

async fn start(settings: &[(&'static str, String)]) -> Notifyd {
    let s: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Notifyd::start(&s).await
}

/// Pseudo-random bytes (a fake WAV body) so a truncated or re-encoded
/// attachment cannot compare equal by accident.
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn voicemail_email_arrives_with_transcript_and_the_exact_audio() {
    let smtp_port = free_port();
    let n = start(&smtp_settings(smtp_port, "0,1,1")).await;
    let sink = SmtpSink::start(smtp_port, &n.data_dir().join("mailbox"), None).await;
    let user = n.add_user("alice@gosip.test", "user", "{}").await;
    let audio = noise(48_000, 7);
    std::fs::write(n.data_dir().join("voicemails/RE42.wav"), &audio).unwrap();

    n.notify(
        "voicemail",
        user,
        json!({"from": "+15551234567", "caller_name": "Bob", "to": "+15557654321",
               "duration": 42, "received_at": "2025-01-15T14:30:00Z",
               "transcript": "Hi Alice, call me back about the invoice."}),
        &["voicemails/RE42.wav"],
    )
    .await;

    let raw = sink.wait_for(1).await.remove(0);
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(text.contains("multipart/alternative"));
    let msg = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(
        msg.subject(),
        Some("New voicemail from Bob (+15551234567) (0:42)")
    );
    let plain = msg.body_text(0).unwrap();
    assert!(
        plain.contains("Hi Alice, call me back about the invoice."),
        "{plain}"
    );
    assert!(plain.contains("Wed 15 Jan 2025, 14:30:00 UTC"), "{plain}");
    assert!(plain.contains("0:42"));
    let html = msg.body_html(0).unwrap();
    assert!(html.contains("Hi Alice, call me back about the invoice."));
    let atts: Vec<_> = msg.attachments().collect();
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].attachment_name(), Some("RE42.wav"));
    assert_eq!(atts[0].content_type().unwrap().ctype(), "audio");
    assert_eq!(
        atts[0].contents(),
        audio.as_slice(),
        "attachment bytes differ"
    );
    assert!(sink.envelopes()[0].contains("rcpt=alice@gosip.test"));

    let log = eventually(Duration::from_secs(5), "the delivery log", || async {
        let d = n.deliveries("email").await;
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, "alice@gosip.test");
    assert_eq!(log[0].1, "sent");
    assert!(log[0].2.starts_with("250"), "{}", log[0].2);
}

#[tokio::test]
async fn voicemail_without_transcript_and_mms_with_media_to_every_admin() {
    let smtp_port = free_port();
    let n = start(&smtp_settings(smtp_port, "0,1,1")).await;
    let sink = SmtpSink::start(smtp_port, &n.data_dir().join("mailbox"), None).await;
    n.add_user("root@gosip.test", "admin", "{}").await;
    n.add_user("ops@gosip.test", "admin", r#"{"email":{"sms":false}}"#)
        .await;
    n.add_user("user@gosip.test", "user", "{}").await;
    std::fs::create_dir_all(n.data_dir().join("media/MM1")).unwrap();
    let photo = noise(20_000, 99);
    std::fs::write(n.data_dir().join("media/MM1/0.jpg"), &photo).unwrap();
    let sticker = noise(3000, 5);
    std::fs::write(n.data_dir().join("media/MM1/1"), &sticker).unwrap();

    n.notify(
        "voicemail",
        0,
        json!({"from": "+15550001111", "duration": 7, "transcript": null}),
        &[],
    )
    .await;
    let msgs = sink.wait_for(2).await;
    for raw in &msgs {
        let m = MessageParser::default().parse(raw).unwrap();
        assert!(m.body_text(0).unwrap().contains("(transcript unavailable)"));
    }
    let mut rcpts = sink.envelopes();
    rcpts.sort();
    assert!(rcpts[0].contains("ops@gosip.test") && rcpts[1].contains("root@gosip.test"));

    // The second admin turned SMS email off.
    n.notify(
        "sms",
        0,
        json!({"from": "+15550002222", "to": "+15557654321", "body": "Photo of the package",
               "media": [{"path": "media/MM1/1", "content_type": "image/png"}]}),
        &["media/MM1/0.jpg", "media/MM1/1"],
    )
    .await;
    let msgs = sink.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.messages().len(),
        3,
        "the admin who turned SMS off got one"
    );
    let m = MessageParser::default().parse(&msgs[2]).unwrap();
    assert_eq!(m.subject(), Some("Picture message from +15550002222"));
    assert!(m.body_text(0).unwrap().contains("Photo of the package"));
    let atts: Vec<_> = m.attachments().collect();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[0].attachment_name(), Some("0.jpg"));
    assert_eq!(atts[0].content_type().unwrap().subtype(), Some("jpeg"));
    assert_eq!(atts[0].contents(), photo.as_slice());
    // No extension: the type twiliod declared wins.
    assert_eq!(atts[1].content_type().unwrap().subtype(), Some("png"));
    assert_eq!(atts[1].contents(), sticker.as_slice());
    assert!(sink.envelopes()[2].contains("root@gosip.test"));
}

#[tokio::test]
async fn smtp_down_for_the_whole_window_is_tried_three_times_then_abandoned() {
    let smtp_port = free_port(); // nothing listens here
    let n = start(&smtp_settings(smtp_port, "0,1,1")).await;
    n.add_user("alice@gosip.test", "admin", "{}").await;
    n.notify(
        "admin_alert",
        0,
        json!({"alert": "disk_full", "message": "data volume 100%"}),
        &[],
    )
    .await;

    let jobs = eventually(
        Duration::from_secs(30),
        "the email job to be abandoned",
        || async {
            let j = n.jobs("email").await;
            (j.first().is_some_and(|(s, _)| s == "abandoned")).then_some(j)
        },
    )
    .await;
    assert_eq!(jobs, vec![("abandoned".to_string(), 3)]);
    let log = n.deliveries("email").await;
    let statuses: Vec<_> = log.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(statuses, ["failed", "failed", "abandoned"]);
    for (_, _, response) in &log {
        assert!(response.contains("Connection refused"), "{response}");
    }
    let alert: (String, String) =
        sqlx::query_as("SELECT kind, message FROM alerts WHERE source = 'notifyd'")
            .fetch_one(&n.pool)
            .await
            .unwrap();
    assert_eq!(alert.0, "email_failed");
    assert!(alert.1.contains("alice@gosip.test") && alert.1.contains("3 attempts"));
    // Health says why (webd shows it on the system page).
    let health = proto::pb::common::daemon_client::DaemonClient::connect(n.url())
        .await
        .unwrap()
        .health(proto::pb::common::HealthRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, "degraded");
    assert!(
        health.detail.starts_with("email failing:"),
        "{}",
        health.detail
    );
    // Nothing more is tried after the schedule is used up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(n.deliveries("email").await.len(), 3);
}

#[tokio::test]
async fn smtp_back_after_the_first_failure_delivers_exactly_once() {
    let smtp_port = free_port();
    let n = start(&smtp_settings(smtp_port, "0,3,3")).await;
    let user = n.add_user("alice@gosip.test", "user", "{}").await;
    n.notify(
        "sms",
        user,
        json!({"from": "+15551234567", "body": "are you there?"}),
        &[],
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "the first failed attempt",
        || async {
            let d = n.deliveries("email").await;
            (d.len() == 1 && d[0].1 == "failed").then_some(())
        },
    )
    .await;

    let sink = SmtpSink::start(smtp_port, &n.data_dir().join("mailbox"), None).await;
    sink.wait_for(1).await;
    eventually(Duration::from_secs(10), "the job to be done", || async {
        let j = n.jobs("email").await;
        (j.len() == 1 && j[0].0 == "done").then_some(())
    })
    .await;
    // Past the rest of the schedule: still one message.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sink.messages().len(), 1);
    let statuses: Vec<_> = n
        .deliveries("email")
        .await
        .into_iter()
        .map(|d| d.1)
        .collect();
    // Normally ["failed", "sent"]; a slow start of the SMTP server may cost
    // one more failed try, never a second message.
    assert_eq!(statuses.first().map(String::as_str), Some("failed"));
    assert_eq!(statuses.last().map(String::as_str), Some("sent"));
    assert_eq!(statuses.iter().filter(|s| *s == "sent").count(), 1);
}

#[tokio::test]
async fn send_test_reports_the_real_error_and_settings_apply_without_restart() {
    let down = free_port();
    let n = start(&smtp_settings(down, "0")).await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok);
    assert!(r.error.contains("Connection refused"), "{}", r.error);

    // STARTTLS demanded from a server that does not offer it.
    let up = free_port();
    let sink = SmtpSink::start(up, &n.data_dir().join("mailbox"), Some("mailer:s3cret")).await;
    n.set("smtp.port", &up.to_string()).await;
    n.set("smtp.security", "starttls").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok);
    assert!(r.error.to_lowercase().contains("tls"), "{}", r.error);

    // Plain, but the server requires authentication.
    n.set("smtp.security", "plain").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok, "sent without credentials");
    assert!(
        r.error.contains("530") || r.error.to_lowercase().contains("auth"),
        "{}",
        r.error
    );

    n.set("smtp.username", "mailer").await;
    n.set("smtp.password", "wrong").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok);
    assert!(r.error.contains("535"), "{}", r.error);

    n.set("smtp.password", "s3cret").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(r.ok, "{}", r.error);
    let raw = sink.wait_for(1).await.remove(0);
    let m = MessageParser::default().parse(&raw).unwrap();
    assert_eq!(m.subject(), Some("GoSIP test notification"));
    assert!(sink.envelopes()[0].contains("login=mailer"));
    let log = n.deliveries("email").await;
    assert_eq!(log.last().unwrap().1, "test_sent");
    assert_eq!(log.iter().filter(|d| d.1 == "test_failed").count(), 4);
}

#[tokio::test]
async fn postmark_transport_posts_the_message_and_attachment() {
    let postmark = StandIn::start("/email", 200).await;
    let n = Notifyd::start(&[
        ("email.transport", "postmark"),
        ("email.from", "pbx@gosip.test"),
        ("postmark.token", "pm-token-1"),
        ("postmark.api_base", &postmark.url()),
        ("notify.email_retry_delays", "0,1"),
    ])
    .await;
    let user = n.add_user("alice@gosip.test", "user", "{}").await;
    let audio = noise(5000, 3);
    std::fs::write(n.data_dir().join("voicemails/RE7.wav"), &audio).unwrap();
    postmark.set_status(422);
    n.notify(
        "voicemail",
        user,
        json!({"from": "+15551234567", "duration": 12, "transcript": "see you at noon"}),
        &["voicemails/RE7.wav"],
    )
    .await;
    let got = postmark.wait_for(1).await;
    postmark.set_status(200);
    let got = {
        drop(got);
        postmark.wait_for(2).await
    };
    let req = &got[1];
    assert_eq!(req.headers["x-postmark-server-token"], "pm-token-1");
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["To"], "alice@gosip.test");
    assert_eq!(v["From"], "pbx@gosip.test");
    assert!(v["TextBody"].as_str().unwrap().contains("see you at noon"));
    assert!(v["HtmlBody"].as_str().unwrap().contains("see you at noon"));
    assert_eq!(v["Attachments"][0]["Name"], "RE7.wav");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["Attachments"][0]["Content"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, audio);
    let log = eventually(Duration::from_secs(5), "two logged attempts", || async {
        let d = n.deliveries("email").await;
        (d.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(log[0].1, "failed");
    assert!(log[0].2.contains("422"), "{}", log[0].2);
    assert_eq!(log[1].1, "sent");
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_and_certificates_are_checked() {
    use std::path::Path;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed(certs.path());
    let tls_env = |mode: &'static str| {
        vec![
            ("SINK_TLS", Path::new(mode).to_owned()),
            ("SINK_CERT", cert.clone()),
            ("SINK_KEY", key.clone()),
        ]
    };
    let (p1, p2) = (free_port(), free_port());
    let n = start(&smtp_settings(p1, "0")).await;
    let env1 = tls_env("starttls");
    let env1: Vec<(&str, &Path)> = env1.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let starttls =
        SmtpSink::start_with(p1, &n.data_dir().join("box1"), Some("mailer:pw"), &env1).await;
    n.set("smtp.username", "mailer").await;
    n.set("smtp.password", "pw").await;

    // A server that insists on STARTTLS refuses a plain session.
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok);
    assert!(
        r.error.contains("530") || r.error.contains("STARTTLS"),
        "{}",
        r.error
    );

    // The self-signed certificate is refused while verification is on.
    n.set("smtp.security", "starttls").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(!r.ok);
    assert!(
        r.error.to_lowercase().contains("certificate"),
        "{}",
        r.error
    );

    n.set("smtp.tls_verify", "false").await;
    let r = n.send_test("email", "alice@gosip.test").await;
    assert!(r.ok, "{}", r.error);
    starttls.wait_for(1).await;
    assert!(starttls.envelopes()[0].contains("login=mailer"));

    let env2 = tls_env("tls");
    let env2: Vec<(&str, &Path)> = env2.iter().map(|(k, v)| (*k, v.as_path())).collect();
    let implicit =
        SmtpSink::start_with(p2, &n.data_dir().join("box2"), Some("mailer:pw"), &env2).await;
    n.set("smtp.port", &p2.to_string()).await;
    n.set("smtp.security", "tls").await;
    let user = n.add_user("bob@gosip.test", "user", "{}").await;
    n.notify(
        "sms",
        user,
        json!({"from": "+15551234567", "body": "over TLS"}),
        &[],
    )
    .await;
    let raw = implicit.wait_for(1).await.remove(0);
    let m = MessageParser::default().parse(&raw).unwrap();
    assert!(m.body_text(0).unwrap().contains("over TLS"));
    assert!(implicit.envelopes()[0].contains("rcpt=bob@gosip.test"));
}

#[tokio::test]
async fn an_sms_from_a_did_without_email_forwarding_reaches_webhooks_but_not_the_inbox() {
    let smtp_port = free_port();
    let n = start(&smtp_settings(smtp_port, "0,1,1")).await;
    let sink = SmtpSink::start(smtp_port, &n.data_dir().join("mailbox"), None).await;
    let hook = StandIn::start("/hook", 200).await;
    n.add_endpoint(
        &format!("{}/hook", hook.url()),
        "secret-s-01234567",
        r#"["sms"]"#,
        true,
    )
    .await;
    let user = n.add_user("owner@gosip.test", "user", "{}").await;

    n.notify(
        "sms",
        user,
        json!({"from": "+15550000001", "body": "not forwarded", "email_forward": false}),
        &[],
    )
    .await;
    n.notify(
        "sms",
        user,
        json!({"from": "+15550000002", "body": "forwarded", "email_forward": true}),
        &[],
    )
    .await;
    let hooks = hook.wait_for(2).await;
    let bodies: Vec<serde_json::Value> = hooks
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(bodies.iter().any(|b| b["data"]["body"] == "not forwarded"));
    let msgs = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 1, "only the forwarded SMS is mailed");
    let m = MessageParser::default().parse(&msgs[0]).unwrap();
    assert_eq!(m.subject(), Some("Text message from +15550000002"));
    assert_eq!(n.deliveries("email").await.len(), 1);
}
