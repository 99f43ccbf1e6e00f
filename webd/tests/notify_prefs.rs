#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Handler tests for a user's notification preferences (`/api/settings`
//! `notify_prefs`) and their own "send test" (`/api/settings/notify-test`):
//! the whole app (`webd::app(state).oneshot(..)`) on a temp database. notifyd
//! is either absent (a closed port) or a small gRPC stand-in that records
//! what webd asks of it.

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use proto::pb::notifyd::notifyd_server::{Notifyd, NotifydServer};
use proto::pb::notifyd::{NotifyReply, NotifyRequest, SendTestReply, SendTestRequest};
use serde_json::{Value, json};

mod common;

type T = common::Webd;

struct Res {
    status: StatusCode,
    text: String,
    /// `name=value` of a Set-Cookie, if any.
    cookie: String,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    /// The `(field, message)` pairs of a validation error.
    fn details(&self) -> Vec<(String, String)> {
        self.json()["error"]["details"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["field"].as_str().unwrap_or("").to_owned(),
                            d["message"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// webd with every peer daemon down, except notifyd at `notifyd` if given.
async fn start(notifyd: Option<String>) -> T {
    match notifyd {
        Some(addr) => common::start_with(&["--notifyd-grpc", &addr]).await,
        None => common::start_with(&[]).await,
    }
}

impl T {
    async fn call(&self, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Res {
        let r = self.send(method, path, cookie, body).await;
        Res {
            status: r.status,
            text: r.text(),
            cookie: r.set_cookie().unwrap_or_default(),
        }
    }

    async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .call(
                "POST",
                "/api/auth/login",
                "",
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.cookie
    }

    /// Creates user `email` (running setup first if needed) and logs them
    /// in; returns (user id, their cookie).
    async fn user(&self, email: &str) -> (i64, String) {
        let setup = self
            .call(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": self.setup_token(), "admin": {"email": "admin@example.org", "password": "correct horse battery"}})),
            )
            .await;
        let admin = if setup.status == 200 {
            setup.cookie
        } else {
            self.login("admin@example.org", "correct horse battery")
                .await
        };
        let r = self
            .call(
                "POST",
                "/api/users",
                &admin,
                Some(json!({"email": email, "role": "user", "password": "user password 1"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.json()["id"].as_i64().unwrap();
        (id, self.login(email, "user password 1").await)
    }

    async fn put_prefs(&self, cookie: &str, prefs: Value) -> Res {
        self.call(
            "PUT",
            "/api/settings",
            cookie,
            Some(json!({"notify_prefs": prefs})),
        )
        .await
    }

    async fn stored(&self, id: i64) -> Value {
        let s: String =
            sqlx::query_scalar("SELECT CAST(notify_prefs AS TEXT) FROM users WHERE id = ?")
                .bind(id)
                .fetch_one(&self.st.pool)
                .await
                .unwrap();
        serde_json::from_str(&s).unwrap()
    }
}

const FULL: &str = r#"{
  "email":  {"enabled": true, "address": "other@example.org", "voicemail": true, "sms": true,
             "missed_call": false, "call_started": false, "call_ended": false, "admin_alert": false},
  "gotify": {"enabled": true, "url": "https://push.example.org", "token": "AqT.4bY-7z_", "voicemail": true,
             "sms": false, "missed_call": true, "call_started": true, "call_ended": false, "admin_alert": false}
}"#;

#[tokio::test]
async fn a_user_without_preferences_reads_notifyds_defaults() {
    let t = start(None).await;
    let (_, c) = t.user("dana@example.org").await;
    let r = t.call("GET", "/api/settings", &c, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(
        v["notify_prefs"],
        json!({
            "email": {"enabled": true, "address": "", "voicemail": true, "sms": true, "missed_call": false,
                      "call_started": false, "call_ended": false, "admin_alert": true},
            "gotify": {"enabled": true, "url": "", "token": "", "voicemail": true, "sms": true,
                       "missed_call": true, "call_started": false, "call_ended": false, "admin_alert": true}
        })
    );
    assert_eq!(v["system_gotify"], false);
    assert_eq!(v["email"], "dana@example.org");
}

#[tokio::test]
async fn the_full_nested_form_is_stored_for_notifyd_and_the_token_never_read_back() {
    let t = start(None).await;
    let (id, c) = t.user("dana@example.org").await;
    let full: Value = serde_json::from_str(FULL).unwrap();
    let r = t.put_prefs(&c, full.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("AqT.4bY-7z_"), "token in the answer");
    let mut shown = full.clone();
    shown["gotify"]["token"] = json!("********");
    assert_eq!(r.json()["notify_prefs"], shown);
    let g = t.call("GET", "/api/settings", &c, None).await;
    assert!(!g.text.contains("AqT.4bY-7z_"), "token in GET");
    assert_eq!(g.json()["notify_prefs"], shown);
    // Stored exactly in the keys notifyd reads.
    assert_eq!(t.stored(id).await, full);

    // The mask sent back keeps the token; other changes apply.
    let r = t
        .put_prefs(
            &c,
            json!({"gotify": {"token": "********", "url": "http://203.0.113.9:9/gotify", "sms": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = t.stored(id).await;
    assert_eq!(s["gotify"]["token"], "AqT.4bY-7z_");
    assert_eq!(s["gotify"]["url"], "http://203.0.113.9:9/gotify");
    assert_eq!(s["gotify"]["sms"], true);
    // Sending the whole GET answer back (as a form does) changes nothing.
    let before = t.stored(id).await;
    let back = t.call("GET", "/api/settings", &c, None).await.json()["notify_prefs"].clone();
    assert_eq!(t.put_prefs(&c, back).await.status, 200);
    assert_eq!(t.stored(id).await, before);
    // A new token replaces it; clearing server and token goes back to the
    // system server and the address back to the login address.
    t.put_prefs(&c, json!({"gotify": {"token": "New.Token-2"}}))
        .await;
    assert_eq!(t.stored(id).await["gotify"]["token"], "New.Token-2");
    let r = t
        .put_prefs(
            &c,
            json!({"gotify": {"url": "", "token": null}, "email": {"address": ""}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = t.stored(id).await;
    assert!(s["gotify"].get("token").is_none() && s["gotify"].get("url").is_none());
    assert!(s["email"].get("address").is_none());
    assert_eq!(r.json()["notify_prefs"]["gotify"]["token"], "");
}

#[tokio::test]
async fn parts_left_out_stay_and_a_channel_switched_off_keeps_its_destination() {
    let t = start(None).await;
    let (id, c) = t.user("dana@example.org").await;
    t.put_prefs(
        &c,
        json!({"email": {"address": "pager@example.org", "missed_call": true}}),
    )
    .await;
    let r = t.put_prefs(&c, json!({"email": {"sms": false}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = &r.json()["notify_prefs"]["email"];
    assert_eq!(e["address"], "pager@example.org");
    assert_eq!(e["missed_call"], true);
    assert_eq!(e["sms"], false);
    let r = t.put_prefs(&c, json!({"email": false})).await;
    let e = &r.json()["notify_prefs"]["email"];
    assert_eq!(e["enabled"], false);
    assert_eq!(e["address"], "pager@example.org");
    assert_eq!(t.stored(id).await["email"]["enabled"], false);
    // Name and DND alone leave the preferences as they are.
    let before = t.stored(id).await;
    let r = t
        .call("PUT", "/api/settings", &c, Some(json!({"name": "Dana"})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(t.stored(id).await, before);
}

#[tokio::test]
async fn the_old_flat_form_still_works() {
    let t = start(None).await;
    let (id, c) = t.user("dana@example.org").await;
    let r = t
        .put_prefs(
            &c,
            json!({"email": true, "gotify": false, "voicemail": true, "missed_call": true,
                   "sms_email": false, "webhook": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let p = &r.json()["notify_prefs"];
    assert_eq!(p["gotify"]["enabled"], false);
    assert_eq!(p["email"]["enabled"], true);
    assert_eq!(p["email"]["sms"], false);
    assert_eq!(p["gotify"]["sms"], true);
    assert_eq!(p["email"]["missed_call"], true);
    assert_eq!(p["gotify"]["missed_call"], true);
    // A row still in the flat form (written before the nested form) reads
    // the way notifyd applies it.
    sqlx::query("UPDATE users SET notify_prefs = ? WHERE id = ?")
        .bind(r#"{"email":false,"voicemail":false,"sms_email":true,"gotify":{"sms":false}}"#)
        .bind(id)
        .execute(&t.st.pool)
        .await
        .unwrap();
    let p = t.call("GET", "/api/settings", &c, None).await.json()["notify_prefs"].clone();
    assert_eq!(p["email"]["enabled"], false);
    assert_eq!(p["email"]["voicemail"], false);
    assert_eq!(p["gotify"]["voicemail"], false);
    assert_eq!(p["email"]["sms"], true);
    assert_eq!(p["gotify"]["sms"], false);
    assert_eq!(p["gotify"]["missed_call"], true);
}

#[tokio::test]
async fn every_field_is_validated_and_named_and_a_refused_update_changes_nothing() {
    let t = start(None).await;
    let (id, c) = t.user("dana@example.org").await;
    t.put_prefs(
        &c,
        json!({"gotify": {"url": "https://push.example.org", "token": "Tok"}}),
    )
    .await;
    let before = t.stored(id).await;
    let long_url = format!("https://push.example.org/{}", "a".repeat(480));
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"email": {"address": "not-an-address"}}),
            "notify_prefs.email.address",
            "must be an email address",
        ),
        (
            json!({"email": {"address": "a b@example.org"}}),
            "notify_prefs.email.address",
            "must be an email address",
        ),
        (
            json!({"email": {"address": format!("{}@example.org", "a".repeat(250))}}),
            "notify_prefs.email.address",
            "at most 254 characters",
        ),
        (
            json!({"email": {"address": ["a@b.org"]}}),
            "notify_prefs.email.address",
            "must be a string",
        ),
        (
            json!({"gotify": {"url": "javascript:alert(1)"}}),
            "notify_prefs.gotify.url",
            "must be an http(s) URL",
        ),
        (
            json!({"gotify": {"url": "push.example.org"}}),
            "notify_prefs.gotify.url",
            "must be an http(s) URL",
        ),
        (
            json!({"gotify": {"url": "https://push.example.org/?token=x"}}),
            "notify_prefs.gotify.url",
            "without ?query",
        ),
        (
            json!({"gotify": {"url": "https://me:pw@push.example.org"}}),
            "notify_prefs.gotify.url",
            "user name or password",
        ),
        (
            json!({"gotify": {"url": long_url}}),
            "notify_prefs.gotify.url",
            "at most 500 characters",
        ),
        (
            json!({"gotify": {"token": "has space"}}),
            "notify_prefs.gotify.token",
            "no spaces",
        ),
        (
            json!({"gotify": {"token": "x".repeat(201)}}),
            "notify_prefs.gotify.token",
            "at most 200 characters",
        ),
        (
            json!({"gotify": {"token": 42}}),
            "notify_prefs.gotify.token",
            "must be a string",
        ),
        (
            json!({"gotify": {"token": ""}}),
            "notify_prefs.gotify.token",
            "is required with a server URL",
        ),
        (
            json!({"gotify": {"url": null}}),
            "notify_prefs.gotify.url",
            "is required with an app token",
        ),
        (
            json!({"email": {"voicemail": "true"}}),
            "notify_prefs.email.voicemail",
            "must be true or false",
        ),
        (
            json!({"email": {"enabled": 1}}),
            "notify_prefs.email.enabled",
            "must be true or false",
        ),
        (
            json!({"gotify": {"call_ended": null}}),
            "notify_prefs.gotify.call_ended",
            "must be true or false",
        ),
        (
            json!({"sms": "no"}),
            "notify_prefs.sms",
            "must be true or false",
        ),
        (
            json!({"email": {"fax": true}}),
            "notify_prefs.email.fax",
            "unknown; known: enabled, address, voicemail",
        ),
        (
            json!({"email": {"token": "x"}}),
            "notify_prefs.email.token",
            "unknown",
        ),
        (
            json!({"gotify": {"address": "a@b.org"}}),
            "notify_prefs.gotify.address",
            "unknown; known: enabled, url, token",
        ),
        (
            json!({"pager": true}),
            "notify_prefs.pager",
            "unknown; known: email, gotify",
        ),
        (
            json!({"email": "yes"}),
            "notify_prefs.email",
            "true, false or an object",
        ),
        (
            json!({"gotify": []}),
            "notify_prefs.gotify",
            "true, false or an object",
        ),
    ];
    for (input, field, msg) in &cases {
        let r = t.put_prefs(&c, input.clone()).await;
        assert_eq!(r.status, 422, "{input}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "VALIDATION_ERROR");
        let d = r.details();
        assert_eq!(d.len(), 1, "{input}: {d:?}");
        assert_eq!(d[0].0, *field, "{input}");
        assert!(d[0].1.contains(msg), "{input}: {:?}", d[0].1);
        assert_eq!(t.stored(id).await, before, "{input} changed the row");
    }
    // Several faults at once are all named; a good part beside them is not
    // applied either.
    let r = t
        .put_prefs(
            &c,
            json!({"email": {"address": "x", "sms": false}, "gotify": {"url": "ftp://x"}, "name": 1}),
        )
        .await;
    let mut fields: Vec<String> = r.details().into_iter().map(|d| d.0).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "notify_prefs.email.address",
            "notify_prefs.gotify.url",
            "notify_prefs.name"
        ]
    );
    assert_eq!(t.stored(id).await, before);
    // A token without a server, and notify_prefs that is not an object.
    let (_, c2) = t.user("erin@example.org").await;
    let r = t.put_prefs(&c2, json!({"gotify": {"token": "T"}})).await;
    assert_eq!(
        r.details(),
        [(
            "notify_prefs.gotify.url".to_owned(),
            "is required with an app token".to_owned()
        )]
    );
    let r = t.put_prefs(&c2, json!(["email"])).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.details()[0].0, "notify_prefs", "{}", r.text);
}

/// A notifyd stand-in that records SendTest requests and answers ok.
#[derive(Clone, Default)]
struct FakeNotifyd {
    tests: Arc<Mutex<Vec<SendTestRequest>>>,
}

#[tonic::async_trait]
impl Notifyd for FakeNotifyd {
    async fn notify(
        &self,
        _r: tonic::Request<NotifyRequest>,
    ) -> Result<tonic::Response<NotifyReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn send_test(
        &self,
        r: tonic::Request<SendTestRequest>,
    ) -> Result<tonic::Response<SendTestReply>, tonic::Status> {
        let r = r.into_inner();
        let fail = r.channel == "gotify";
        self.tests.lock().unwrap().push(r);
        Ok(tonic::Response::new(SendTestReply {
            ok: !fail,
            error: if fail {
                "gotify 401 Unauthorized".into()
            } else {
                String::new()
            },
            response: String::new(),
        }))
    }
}

async fn fake_notifyd() -> (FakeNotifyd, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let fake = FakeNotifyd::default();
    let svc = NotifydServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(proto::daemon::incoming(l))
            .await
    });
    (fake, addr)
}

#[tokio::test]
async fn send_test_goes_to_the_users_own_destinations_and_is_rate_limited() {
    let (fake, addr) = fake_notifyd().await;
    let t = start(Some(addr)).await;
    let (id, c) = t.user("dana@example.org").await;
    let test = |ch: &str| json!({"channel": ch});
    let r = t
        .call(
            "POST",
            "/api/settings/notify-test",
            &c,
            Some(test("webhook")),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.details()[0].0, "channel");

    // Email to the login address, then to the address they set.
    let r = t
        .call("POST", "/api/settings/notify-test", &c, Some(test("email")))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"ok": true, "error": "", "target": "dana@example.org"})
    );
    t.put_prefs(&c, json!({"email": {"address": "pager@example.org"}}))
        .await;
    let r = t
        .call("POST", "/api/settings/notify-test", &c, Some(test("email")))
        .await;
    assert_eq!(r.json()["target"], "pager@example.org");

    // Push: no server anywhere is said plainly without asking notifyd.
    let r = t
        .call(
            "POST",
            "/api/settings/notify-test",
            &c,
            Some(test("gotify")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["ok"], false);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("No push server")
    );
    // With their own server, notifyd is asked for this user (it looks up
    // the token itself) and its error comes back as is.
    t.put_prefs(
        &c,
        json!({"gotify": {"url": "http://203.0.113.9:9", "token": "Tok.1"}}),
    )
    .await;
    let r = t
        .call(
            "POST",
            "/api/settings/notify-test",
            &c,
            Some(test("gotify")),
        )
        .await;
    assert_eq!(
        r.json(),
        json!({"ok": false, "error": "gotify 401 Unauthorized", "target": "http://203.0.113.9:9"})
    );
    {
        let seen = fake.tests.lock().unwrap();
        let got: Vec<(&str, &str, i64)> = seen
            .iter()
            .map(|r| (r.channel.as_str(), r.target.as_str(), r.user_id))
            .collect();
        assert_eq!(
            got,
            [
                ("email", "dana@example.org", id),
                ("email", "pager@example.org", id),
                ("gotify", "", id)
            ]
        );
    }
    // Three reached notifyd this minute (the one without a server did
    // not count): two more may, the sixth is refused before notifyd.
    for _ in 0..2 {
        let r = t
            .call("POST", "/api/settings/notify-test", &c, Some(test("email")))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let r = t
        .call("POST", "/api/settings/notify-test", &c, Some(test("email")))
        .await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "RATE_LIMITED");
    assert_eq!(fake.tests.lock().unwrap().len(), 5);
}

#[tokio::test]
async fn send_test_with_notifyd_down_is_a_503_and_needs_a_login() {
    let t = start(None).await;
    let (_, c) = t.user("dana@example.org").await;
    let r = t
        .call(
            "POST",
            "/api/settings/notify-test",
            &c,
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    let r = t
        .call(
            "POST",
            "/api/settings/notify-test",
            "",
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(r.status, 401);
}

/// A loopback HTTP server that counts every connection it accepts.
async fn recording_server() -> (u16, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            *h.lock().unwrap() += 1;
        }
    });
    (port, hits)
}

/// Server-side request forgery through the URLs users and admins type:
/// a Gotify server or webhook on this machine is refused when saved, with
/// the field named, until the admin allows the host; nothing connects to it.
#[tokio::test]
async fn gotify_and_webhook_urls_on_this_machine_are_refused_unless_the_admin_allows_the_host() {
    let t = start(None).await;
    let (port, hits) = recording_server().await;
    let (id, c) = t.user("mallory@example.org").await;
    let admin = t.login("admin@example.org", "correct horse battery").await;
    let before = t.stored(id).await;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
        format!("http://169.254.169.254:{port}/latest"),
        format!("http://10.0.0.1:{port}"),
    ] {
        let r = t
            .put_prefs(&c, json!({"gotify": {"url": url, "token": "Tok.1"}}))
            .await;
        assert_eq!(r.status, 422, "{url}: {}", r.text);
        let d = r.details();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, "notify_prefs.gotify.url");
        assert!(
            d[0].1.contains("notify.allowed_private_hosts"),
            "{}",
            d[0].1
        );
    }
    assert_eq!(t.stored(id).await, before, "a refused URL was stored");

    // The admin's own settings: the system Gotify server and webhooks.
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"gotify.url": format!("http://127.0.0.1:{port}")}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.details()[0].0, "gotify.url");
    let hook = json!({"url": format!("http://localhost:{port}/hook"), "events": []});
    let r = t
        .call("POST", "/api/webhook-endpoints", &admin, Some(hook.clone()))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.details()[0].0, "url");
    // The allow-list takes host names and addresses, not URLs.
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"notify.allowed_private_hosts": "http://gotify.lan/"}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.details()[0].0, "notify.allowed_private_hosts");
    assert_eq!(*hits.lock().unwrap(), 0, "webd connected to the target");

    // A self-hosted Gotify on the LAN is real: once the admin names the
    // host, the same saves go through.
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"notify.allowed_private_hosts": "localhost, 127.0.0.1"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = format!("http://127.0.0.1:{port}");
    let r = t
        .put_prefs(&c, json!({"gotify": {"url": url, "token": "Tok.1"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.stored(id).await["gotify"]["url"], url.as_str());
    let r = t
        .call("POST", "/api/webhook-endpoints", &admin, Some(hook))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Other private hosts stay refused.
    let r = t
        .put_prefs(
            &c,
            json!({"gotify": {"url": format!("http://10.0.0.1:{port}")}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
}
