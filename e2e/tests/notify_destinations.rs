//! A user's own notification destinations, end to end through the five real
//! daemons: the user sets, through the settings API, another email address
//! and their own Gotify server + app token; a test from the settings page
//! and then an SMS that arrives through the Twilio stand-in reach exactly
//! those: the email through a real SMTP server (aiosmtpd) to the other
//! address, never the login address, and the push through a Gotify
//! stand-in on 127.0.0.1 with the user's token, never the system server.
//! Switching SMS off for email then stops the email but not the push.
//!
//! Needs `cargo build --bins` first (the harness runs target/debug/*).

#[path = "support/smtp.rs"]
mod smtp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Uri;
use e2e::System;
use e2e::standin::Standin;
use serde_json::{Value, json};
use smtp::{Smtp, parse, recipients};
use sqlx::SqlitePool;

const DID: &str = "+15550004444";
const ADMIN: &str = "admin@pbx.test";
const DANA: &str = "dana@pbx.test";
const PAGER: &str = "dana.pager@elsewhere.test";
const TOKEN: &str = "Dana.App-Token_7";
const SYSTEM_TOKEN: &str = "System.Token-0";
const PASSWORD: &str = "a long test password";

/// One push a Gotify stand-in received.
#[derive(Debug, Clone)]
struct Push {
    path: String,
    token: String,
    body: Value,
}

/// A Gotify server stand-in on 127.0.0.1: takes any POST, answers 200.
struct Gotify {
    url: String,
    got: Arc<Mutex<Vec<Push>>>,
}

impl Gotify {
    async fn start() -> Gotify {
        async fn take(
            State(got): State<Arc<Mutex<Vec<Push>>>>,
            uri: Uri,
            Query(q): Query<HashMap<String, String>>,
            body: Bytes,
        ) -> axum::Json<Value> {
            let mut g = got.lock().unwrap();
            g.push(Push {
                path: uri.path().to_owned(),
                token: q.get("token").cloned().unwrap_or_default(),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
            axum::Json(json!({"id": g.len()}))
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().fallback(take).with_state(got.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Gotify { url, got }
    }

    fn pushes(&self) -> Vec<Push> {
        self.got.lock().unwrap().clone()
    }
}

/// The REST API with a session cookie per call.
struct Api {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    text: String,
    cookie: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl Api {
    async fn call(&self, method: &str, path: &str, cookie: &str, body: Value) -> Answer {
        let r = self
            .http
            .request(method.parse().unwrap(), format!("{}/api{path}", self.base))
            .header("X-Requested-With", "gosip")
            .header("Cookie", cookie);
        let r = if method == "GET" { r } else { r.json(&body) };
        let res = r.send().await.expect("webd answers");
        let status = res.status().as_u16();
        let cookie = res
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|c| c.split(';').next())
            .unwrap_or("")
            .to_owned();
        Answer {
            status,
            text: res.text().await.unwrap_or_default(),
            cookie,
        }
    }

    async fn ok(&self, method: &str, path: &str, cookie: &str, body: Value) -> Value {
        let a = self.call(method, path, cookie, body).await;
        assert!(
            (200..300).contains(&a.status),
            "{method} {path}: {} {}",
            a.status,
            a.text
        );
        a.json()
    }

    async fn login(&self, email: &str) -> String {
        let a = self
            .call(
                "POST",
                "/auth/login",
                "",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.cookie
    }
}

async fn wait_for<T>(what: &str, logs: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "no {what}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn email_jobs(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE queue = 'notifyd' AND kind = 'email'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_own_email_address_and_gotify_server_get_their_notifications() {
    let mail = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(testkit::ports::tcp(), mail.path()).await;
    let own = Gotify::start().await;
    let system = Gotify::start().await;
    let twilio = Standin::start().await.expect("stand-in");
    let sys = System::start().await.expect("system");
    let pool = proto::db::open(&sys.data_dir).await.expect("db");
    let logs = || {
        format!(
            "--- webd\n{}\n--- twiliod\n{}\n--- notifyd\n{}",
            sys.log("webd"),
            sys.log("twiliod"),
            sys.log("notifyd")
        )
    };
    let api = Api {
        http: reqwest::Client::new(),
        base: sys.base_url(),
    };

    let setup_token = std::fs::read_to_string(sys.data_dir.join("setup-token"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    // The admin sets up the system (mail server, the system's own Gotify,
    // Twilio = the stand-in), a user and her number through the API.
    let admin = api
        .call(
            "POST",
            "/setup",
            "",
            json!({"setup_token": setup_token, "admin": {"email": ADMIN, "password": PASSWORD}}),
        )
        .await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let admin = admin.cookie;
    let port = smtp.port.to_string();
    api.ok(
        "PUT",
        "/system/config",
        &admin,
        json!({"values": {
            "twilio.api_base": twilio.base_url, "twilio.account_sid": twilio.account_sid,
            "twilio.auth_token": twilio.auth_token, "system.public_url": sys.base_url(),
            "email.transport": "smtp", "email.from": "pbx@pbx.test", "smtp.host": "127.0.0.1",
            "smtp.port": port, "smtp.security": "plain",
            "gotify.url": system.url, "gotify.token": SYSTEM_TOKEN,
            // Both Gotify stand-ins listen on loopback.
            "notify.allowed_private_hosts": "127.0.0.1",
        }}),
    )
    .await;
    let dana = api
        .ok(
            "POST",
            "/users",
            &admin,
            json!({"email": DANA, "name": "Dana", "role": "user", "password": PASSWORD}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    api.ok(
        "POST",
        "/dids",
        &admin,
        json!({"number": DID, "name": "Dana's line", "owner_user_id": dana,
               "sms_enabled": true, "sms_email_forward": true}),
    )
    .await;
    twilio.add_number(DID, None);

    // Dana sends her notifications elsewhere: another mailbox and her own
    // Gotify server (under a path, as behind a reverse proxy).
    let cookie = api.login(DANA).await;
    let own_url = format!("{}/gotify", own.url);
    let set = api
        .call(
            "PUT",
            "/settings",
            &cookie,
            json!({"notify_prefs": {
                "email": {"enabled": true, "address": PAGER, "voicemail": true, "sms": true},
                "gotify": {"enabled": true, "url": own_url, "token": TOKEN, "sms": true},
            }}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert!(!set.text.contains(TOKEN), "the token is never read back");
    let prefs = api.ok("GET", "/settings", &cookie, Value::Null).await["notify_prefs"].clone();
    assert_eq!(prefs["email"]["address"], PAGER);
    assert_eq!(prefs["gotify"]["url"], own_url.as_str());
    assert_eq!(prefs["gotify"]["token"], "********");

    // "Send test" from her settings reaches her own destinations.
    let t = api
        .ok(
            "POST",
            "/settings/notify-test",
            &cookie,
            json!({"channel": "gotify"}),
        )
        .await;
    assert_eq!(
        t,
        json!({"ok": true, "error": "", "target": own_url}),
        "{}",
        logs()
    );
    let p = own.pushes();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "/gotify/message");
    assert_eq!(p[0].token, TOKEN);
    assert_eq!(p[0].body["title"], "GoSIP test notification");
    let t = api
        .ok(
            "POST",
            "/settings/notify-test",
            &cookie,
            json!({"channel": "email"}),
        )
        .await;
    assert_eq!(t["ok"], true, "{t}\n{}", logs());
    assert_eq!(t["target"], PAGER);
    let test_mail = wait_for("test email", logs, || {
        smtp.about("GoSIP test notification").into_iter().next()
    })
    .await;
    assert_eq!(recipients(&parse(&test_mail)), [PAGER]);

    // An SMS to her number: the email goes to the other address with the
    // text, the push to her server with her token.
    let handset = "+15557651111";
    let sms_url = format!("{}/api/webhooks/sms/incoming", sys.base_url());
    let (_, st, answer) = twilio
        .send_sms(
            Some(&sms_url),
            handset,
            DID,
            "The parcel is with the neighbours at number 12",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{answer}");
    let raw = wait_for("SMS email", logs, || smtp.about(handset).into_iter().next()).await;
    let m = parse(&raw);
    assert_eq!(recipients(&m), [PAGER]);
    assert!(
        m.body_text(0)
            .unwrap()
            .contains("The parcel is with the neighbours at number 12")
    );
    let push = wait_for("SMS push", logs, || own.pushes().get(1).cloned()).await;
    assert_eq!(push.path, "/gotify/message");
    assert_eq!(push.token, TOKEN);
    assert_eq!(
        push.body["title"],
        format!("Text message from {handset}").as_str()
    );
    assert_eq!(
        push.body["message"],
        "The parcel is with the neighbours at number 12"
    );
    // Nothing went to the login address or the system's Gotify server, and
    // the delivery log names the destinations, never the token.
    for raw in smtp.messages() {
        assert_eq!(recipients(&parse(&raw)), [PAGER]);
    }
    assert!(system.pushes().is_empty(), "{:?}", system.pushes());
    let log: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT channel, target, status FROM deliveries WHERE job_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        log.contains(&("email".into(), PAGER.into(), "sent".into())),
        "{log:?}"
    );
    assert!(
        log.contains(&("gotify".into(), own_url.clone(), "sent".into())),
        "{log:?}"
    );
    assert!(!format!("{log:?}").contains(TOKEN));

    // SMS off for email only: the next SMS is pushed but not mailed. The
    // fan-out writes every delivery job of an event in one transaction, so
    // once the push is in, no email job for it can appear later.
    api.ok(
        "PUT",
        "/settings",
        &cookie,
        json!({"notify_prefs": {"email": {"sms": false}}}),
    )
    .await;
    let jobs = email_jobs(&pool).await;
    let handset2 = "+15557652222";
    let (_, st, answer) = twilio
        .send_sms(Some(&sms_url), handset2, DID, "Second text", vec![])
        .await
        .unwrap();
    assert_eq!(st, 200, "{answer}");
    let push = wait_for("second SMS push", logs, || own.pushes().get(2).cloned()).await;
    assert_eq!(push.body["message"], "Second text");
    assert_eq!(push.token, TOKEN);
    assert_eq!(
        email_jobs(&pool).await,
        jobs,
        "an email job for the second SMS"
    );
    assert!(smtp.about(handset2).is_empty());
    assert!(system.pushes().is_empty());
}
