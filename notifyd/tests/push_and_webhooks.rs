#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Gotify push and outgoing webhooks against small HTTP stand-ins, with the
//! real notifyd binary: 3 tries then silent, hot-reloaded server settings,
//! HMAC signatures checked by the receiver, event filters, retries.

mod common;

use std::time::Duration;

use common::{Notifyd, StandIn, eventually, free_port};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

const NO_EMAIL: &str = r#"{"email": false}"#;

#[tokio::test]
async fn gotify_failing_is_tried_three_times_then_dropped_silently() {
    let gotify = StandIn::start("/message", 500).await;
    let n = Notifyd::start(&[
        ("gotify.url", &gotify.url()),
        ("gotify.token", "AppToken.1"),
        ("notify.gotify_retry_delays", "0,1,1"),
    ])
    .await;
    let user = n.add_user("alice@gosip.test", "user", NO_EMAIL).await;
    n.notify(
        "missed_call",
        user,
        json!({"from": "+15551234567", "to": "+15557654321"}),
        &[],
    )
    .await;

    let got = gotify.wait_for(3).await;
    for r in &got {
        assert_eq!(r.query["token"], "AppToken.1");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["title"], "Missed call from +15551234567");
        assert!(v["message"].as_str().unwrap().contains("+15551234567"));
        assert_eq!(v["priority"], 5);
    }
    eventually(
        Duration::from_secs(10),
        "the push to be abandoned",
        || async { (n.jobs("gotify").await == vec![("abandoned".to_string(), 3)]).then_some(()) },
    )
    .await;
    let statuses: Vec<_> = n
        .deliveries("gotify")
        .await
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(statuses, ["failed", "failed", "abandoned"]);
    let log = n.deliveries("gotify").await;
    assert!(log[0].2.contains("500"), "{}", log[0].2);
    assert!(
        !log.iter().any(|d| d.0.contains("AppToken")),
        "token leaked into the log"
    );
    // Silent: no admin alert, and nothing more is sent.
    let alerts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts")
        .fetch_one(&n.pool)
        .await
        .unwrap();
    assert_eq!(alerts, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gotify.received().len(), 3);
}

#[tokio::test]
async fn a_new_gotify_url_applies_to_the_next_retry_without_restart() {
    let broken = StandIn::start("/message", 500).await;
    let good = StandIn::start("/message", 200).await;
    let n = Notifyd::start(&[
        ("gotify.url", &broken.url()),
        ("gotify.token", "T1"),
        ("notify.gotify_retry_delays", "0,3,3"),
    ])
    .await;
    let user = n.add_user("alice@gosip.test", "user", NO_EMAIL).await;
    n.notify(
        "sms",
        user,
        json!({"from": "+15551234567", "body": "lunch?"}),
        &[],
    )
    .await;
    broken.wait_for(1).await;
    n.set("gotify.url", &good.url()).await;
    n.set("gotify.token", "T2").await;
    let got = good.wait_for(1).await;
    assert_eq!(got[0].query["token"], "T2");
    let v: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(v["message"], "lunch?");
    eventually(Duration::from_secs(5), "the push to be done", || async {
        (n.jobs("gotify").await == vec![("done".to_string(), 2)]).then_some(())
    })
    .await;
    assert_eq!(broken.received().len(), 1);
    assert_eq!(good.received().len(), 1);
}

fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[tokio::test]
async fn webhooks_are_signed_filtered_and_retried_with_the_same_body() {
    let all = StandIn::start("/hook", 503).await;
    let sms_only = StandIn::start("/hook", 200).await;
    let disabled = StandIn::start("/hook", 200).await;
    let n = Notifyd::start(&[("notify.webhook_retry_delays", "0,1,2")]).await;
    n.add_endpoint(
        &format!("{}/hook", all.url()),
        "secret-all-0123456",
        "[]",
        true,
    )
    .await;
    n.add_endpoint(
        &format!("{}/hook", sms_only.url()),
        "secret-sms-0123456",
        r#"["sms"]"#,
        true,
    )
    .await;
    n.add_endpoint(
        &format!("{}/hook", disabled.url()),
        "secret-x-01234567",
        "[]",
        false,
    )
    .await;

    let event_id = n
        .notify(
            "voicemail",
            0,
            json!({"from": "+15551234567", "duration": 9, "transcript": "hello"}),
            &["voicemails/RE1.wav"],
        )
        .await;
    let first = all.wait_for(1).await.remove(0);
    all.set_status(200);
    let got = all.wait_for(2).await;
    let (a, b) = (&got[0], &got[1]);
    assert_eq!(a.body, b.body, "a retry must send the same bytes");
    assert_eq!(a.headers["x-gosip-delivery"], b.headers["x-gosip-delivery"]);
    for r in [a, b] {
        let sig = r.headers["x-gosip-signature"].to_str().unwrap();
        assert!(
            verify("secret-all-0123456", &r.body, sig),
            "bad signature {sig}"
        );
        assert!(!verify("another-secret", &r.body, sig));
        assert_eq!(r.headers["x-gosip-event"], "voicemail");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(v["id"], event_id);
    assert_eq!(v["event"], "voicemail");
    assert_eq!(v["data"]["transcript"], "hello");
    assert_eq!(v["attachments"][0], "voicemails/RE1.wav");
    assert_eq!(
        first.headers["x-gosip-timestamp"].to_str().unwrap(),
        v["timestamp"].to_string()
    );

    n.notify("sms", 0, json!({"from": "+15551234567", "body": "hi"}), &[])
        .await;
    let s = sms_only.wait_for(1).await;
    assert!(verify(
        "secret-sms-0123456",
        &s[0].body,
        s[0].headers["x-gosip-signature"].to_str().unwrap()
    ));
    all.wait_for(3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sms_only.received().len(),
        1,
        "the sms-only endpoint got the voicemail"
    );
    assert_eq!(all.received().len(), 3);
    assert!(disabled.received().is_empty());
    let statuses: Vec<_> = n
        .deliveries("webhook")
        .await
        .into_iter()
        .map(|d| d.1)
        .collect();
    assert_eq!(statuses.iter().filter(|s| *s == "sent").count(), 3);
    assert_eq!(statuses.iter().filter(|s| *s == "failed").count(), 1);
}

#[tokio::test]
async fn a_webhook_endpoint_that_never_answers_is_abandoned_after_its_schedule() {
    let dead = free_port();
    let n = Notifyd::start(&[("notify.webhook_retry_delays", "0,1,1,1")]).await;
    n.add_endpoint(
        &format!("http://127.0.0.1:{dead}/hook"),
        "secret-s-01234567",
        "[]",
        true,
    )
    .await;
    n.notify(
        "call_started",
        0,
        json!({"from": "+1555", "to": "+1666"}),
        &[],
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "the webhook to be abandoned",
        || async { (n.jobs("webhook").await == vec![("abandoned".to_string(), 4)]).then_some(()) },
    )
    .await;
    let log = n.deliveries("webhook").await;
    assert_eq!(log.len(), 4);
    assert!(log[0].2.to_lowercase().contains("connect"), "{}", log[0].2);
}

#[tokio::test]
async fn send_test_reaches_gotify_and_webhooks_or_says_why_not() {
    let gotify = StandIn::start("/message", 200).await;
    let hook = StandIn::start("/hook", 200).await;
    let n = Notifyd::start(&[]).await;
    let r = n.send_test("gotify", "").await;
    assert!(!r.ok);
    assert!(r.error.contains("gotify.url"), "{}", r.error);

    n.set("gotify.url", &format!("http://127.0.0.1:{}", free_port()))
        .await;
    n.set("gotify.token", "T").await;
    let r = n.send_test("gotify", "").await;
    assert!(!r.ok);
    assert!(r.error.to_lowercase().contains("connect"), "{}", r.error);
    assert!(!r.error.contains("token=T"), "{}", r.error);

    n.set("gotify.url", &gotify.url()).await;
    let r = n.send_test("gotify", "").await;
    assert!(r.ok, "{}", r.error);
    assert_eq!(gotify.received().len(), 1);

    let id = n
        .add_endpoint(
            &format!("{}/hook", hook.url()),
            "whsec-0123456789",
            "[]",
            true,
        )
        .await;
    let r = n.send_test("webhook", &id.to_string()).await;
    assert!(r.ok, "{}", r.error);
    let got = hook.received();
    assert!(verify(
        "whsec-0123456789",
        &got[0].body,
        got[0].headers["x-gosip-signature"].to_str().unwrap()
    ));
    assert_eq!(got[0].headers["x-gosip-event"], "test");
    hook.set_status(410);
    let r = n.send_test("webhook", &id.to_string()).await;
    assert!(!r.ok);
    assert!(r.error.contains("410"), "{}", r.error);
}

#[tokio::test]
async fn a_users_send_test_pushes_to_their_own_gotify_server_with_their_token() {
    let system = StandIn::start("/message", 200).await;
    let own = StandIn::start("/message", 200).await;
    let n = Notifyd::start(&[("gotify.url", &system.url()), ("gotify.token", "SysTok")]).await;
    let prefs = json!({"gotify": {"url": own.url(), "token": "UserTok.1"}}).to_string();
    let with_own = n.add_user("a@gosip.test", "user", &prefs).await;
    let without = n.add_user("b@gosip.test", "user", "{}").await;

    let r = n.send_test_for("gotify", "", with_own).await;
    assert!(r.ok, "{}", r.error);
    let got = own.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].query["token"], "UserTok.1");
    assert!(system.received().is_empty(), "the system server got it");

    // No server of their own: the system's, as their pushes would.
    let r = n.send_test_for("gotify", "", without).await;
    assert!(r.ok, "{}", r.error);
    assert_eq!(system.received()[0].query["token"], "SysTok");
    assert_eq!(own.received().len(), 1);

    // The own server failing is reported with its answer; the log names
    // the server, never the token.
    own.set_status(401);
    let r = n.send_test_for("gotify", "", with_own).await;
    assert!(!r.ok);
    assert!(r.error.contains("401"), "{}", r.error);
    let log = n.deliveries("gotify").await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].0, own.url());
    assert!(!log.iter().any(|d| d.0.contains("Tok")), "{log:?}");
}
