#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attacks on notifyd's outgoing HTTP and on its gRPC port, against the real
//! binary: Gotify and webhook URLs pointing at this machine, redirects to
//! private targets, remote error bodies echoed back to the user, and gRPC
//! calls without the shared secret.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::post;
use common::{Notifyd, StandIn, eventually};
use proto::pb::notifyd::NotifyRequest;
use proto::pb::notifyd::notifyd_client::NotifydClient;
use proto::ssrf::ALLOW_KEY;
use serde_json::json;

const NO_EMAIL: &str = r#""email": false"#;

#[tokio::test]
async fn a_users_gotify_on_loopback_is_never_reached_unless_the_admin_allows_it() {
    let target = StandIn::start("/message", 200).await;
    let port = target.addr.port();
    // Users can save a Gotify server on this machine only while the admin
    // allows it (webd checks too); then the admin takes that back.
    let n = Notifyd::start(&[
        (ALLOW_KEY, "localhost, 127.0.0.1"),
        ("notify.gotify_retry_delays", "0,1"),
    ])
    .await;
    let mut victims = Vec::new();
    for (i, url) in [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
    ]
    .into_iter()
    .enumerate()
    {
        let prefs = format!(r#"{{{NO_EMAIL}, "gotify": {{"url": "{url}", "token": "T"}}}}"#);
        let user = n
            .add_user(&format!("victim{i}@gosip.test"), "user", &prefs)
            .await;
        victims.push((url, user));
    }
    n.set(ALLOW_KEY, "").await;
    for (url, user) in victims {
        let r = n.send_test_for("gotify", "", user).await;
        assert!(!r.ok, "{url}");
        assert!(
            r.error.contains("private or local address"),
            "{url}: {}",
            r.error
        );

        // The queued path too: tried, refused, abandoned.
        n.notify("missed_call", user, json!({"from": "+15551234567"}), &[])
            .await;
    }
    eventually(
        Duration::from_secs(20),
        "the pushes to be abandoned",
        || async {
            let jobs = n.jobs("gotify").await;
            (jobs.len() == 3 && jobs.iter().all(|j| j.0 == "abandoned")).then_some(())
        },
    )
    .await;
    assert!(
        target.received().is_empty(),
        "the loopback server was reached"
    );

    // The admin names the host: now it is reached, by name only.
    n.set(ALLOW_KEY, "localhost").await;
    let prefs = format!(r#"{{"gotify": {{"url": "http://localhost:{port}", "token": "T"}}}}"#);
    let user = n.add_user("allowed@gosip.test", "user", &prefs).await;
    let r = n.send_test_for("gotify", "", user).await;
    assert!(r.ok, "{}", r.error);
    assert_eq!(target.received().len(), 1);
}

#[tokio::test]
async fn webhooks_to_private_addresses_are_refused_before_connecting() {
    let target = StandIn::start("/hook", 200).await;
    // The endpoint was added while the admin allowed its address (webd
    // checks too); then the admin took that back.
    let n = Notifyd::start(&[(ALLOW_KEY, "gotify.lan, 127.0.0.1")]).await;
    let id = n
        .add_endpoint(
            &format!("{}/hook", target.url()),
            "whsec-0123456789",
            "[]",
            true,
        )
        .await;
    n.set(ALLOW_KEY, "gotify.lan").await;
    let r = n.send_test("webhook", &id.to_string()).await;
    assert!(!r.ok);
    assert!(r.error.contains("private or local address"), "{}", r.error);
    let r = n
        .send_test(
            "webhook",
            &format!("http://localhost:{}/hook", target.addr.port()),
        )
        .await;
    assert!(!r.ok);
    assert!(r.error.contains("private or local address"), "{}", r.error);
    assert!(target.received().is_empty());

    n.set(ALLOW_KEY, "gotify.lan, 127.0.0.1").await;
    let r = n.send_test("webhook", &id.to_string()).await;
    assert!(r.ok, "{}", r.error);
    assert_eq!(target.received().len(), 1);
}

/// Serves POST `/message` and `/hook` answering `status` with `location`
/// and a body that must never reach the user.
async fn answering(status: u16, location: String) -> std::net::SocketAddr {
    const BODY: &str = "internal-secret-body: db password is hunter2";
    let reply = move || {
        let location = location.clone();
        async move {
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::LOCATION, location)],
                BODY,
            )
        }
    };
    let app = Router::new()
        .route("/message", post(reply.clone()))
        .route("/hook", post(reply));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn redirects_are_not_followed_and_remote_bodies_are_not_echoed() {
    // Both listen on loopback, which this test's admin allows by address,
    // so only not following the redirect keeps the inner server untouched.
    let inner = StandIn::start("/message", 200).await;
    let redirect_to = format!("http://localhost:{}/message", inner.addr.port());
    let redirector = answering(302, redirect_to).await;
    let failing = answering(500, String::new()).await;
    let n = Notifyd::start(&[(ALLOW_KEY, "127.0.0.1")]).await;

    n.set("gotify.url", &format!("http://{redirector}")).await;
    n.set("gotify.token", "T").await;
    let r = n.send_test("gotify", "").await;
    assert!(!r.ok);
    assert!(r.error.contains("302"), "{}", r.error);
    assert!(inner.received().is_empty(), "the redirect was followed");

    let r = n
        .send_test("webhook", &format!("http://{redirector}/hook"))
        .await;
    assert!(!r.ok);
    assert!(r.error.contains("302"), "{}", r.error);
    assert!(inner.received().is_empty(), "the redirect was followed");

    n.set("gotify.url", &format!("http://{failing}")).await;
    let r = n.send_test("gotify", "").await;
    assert!(!r.ok);
    assert!(r.error.contains("500"), "{}", r.error);
    assert!(!r.error.contains("hunter2"), "{}", r.error);
    assert!(r.error.len() < 120, "{}", r.error);
    let r = n
        .send_test("webhook", &format!("http://{failing}/hook"))
        .await;
    assert!(!r.ok);
    assert!(!r.error.contains("hunter2"), "{}", r.error);
    let log = n.deliveries("gotify").await;
    assert!(!log.iter().any(|d| d.2.contains("hunter2")), "{log:?}");
}

#[tokio::test]
async fn grpc_calls_without_the_shared_secret_are_refused() {
    let n = Notifyd::start(&[]).await;
    let notify = || NotifyRequest {
        kind: "admin_alert".into(),
        user_id: 0,
        payload_json: json!({"alert": "x", "message": "forged"}).to_string(),
        attachments: vec![],
    };
    let mut bare = NotifydClient::connect(n.url()).await.unwrap();
    let err = bare.notify(notify()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let ch = tonic::transport::Channel::from_shared(n.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut wrong = NotifydClient::new(proto::grpc::authed(ch, &proto::grpc::Secret::random()));
    let err = wrong.notify(notify()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&n.pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "a refused call stored an event");

    // The genuine client, with the secret from the data dir, gets through.
    let job = n.client().await.notify(notify()).await.unwrap();
    assert!(job.into_inner().job_id > 0);
    let secret = std::fs::metadata(n.data_dir().join(proto::grpc::SECRET_FILE)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(secret.permissions().mode() & 0o777, 0o600);
}
