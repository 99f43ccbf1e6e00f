#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attacks on logins, the setup wizard, sessions and API keys, performed
//! against the whole app, each beside the genuine user it must not hurt.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::header;
use serde_json::{Value, json};

mod common;
use common::Res;

type T = common::Webd;

const ADMIN: &str = "admin@example.org";
const ADMIN_PW: &str = "correct horse battery";

/// A peer address in a documentation range (never contacted: the app sees
/// it only as the connection's peer).
fn peer(last: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, last], 40000))
}

fn code(r: &Res) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_owned()
}

impl T {
    async fn setup_admin(&self) -> String {
        let r = self
            .send(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": self.setup_token(),
                            "admin": {"email": ADMIN, "password": ADMIN_PW}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.cookie()
    }

    async fn login_from(&self, from: SocketAddr, email: &str, password: &str) -> Res {
        self.send_with(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": email, "password": password})),
            Some(from),
            &[],
        )
        .await
    }

    async fn new_user(&self, admin: &str, email: &str, password: &str) -> i64 {
        let r = self
            .send(
                "POST",
                "/api/users",
                admin,
                Some(json!({"email": email, "role": "user", "password": password})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["id"].as_i64().unwrap()
    }

    async fn user_json(&self, admin: &str, id: i64) -> Value {
        self.send("GET", &format!("/api/users/{id}"), admin, None)
            .await
            .json()
    }

    async fn attempts(&self, email: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE email = ?")
            .bind(email)
            .fetch_one(&self.st.pool)
            .await
            .unwrap()
    }
}

/// The external API's call list with `Authorization: <bearer>`.
async fn external(t: &T, bearer: &str) -> u16 {
    t.send_with(
        "GET",
        "/api/external/calls",
        "",
        None,
        None,
        &[("authorization", bearer)],
    )
    .await
    .status
    .as_u16()
}

/// Sends `n` wrong-password logins at once, from `from(i)`; returns the
/// statuses.
async fn parallel_wrong(t: &Arc<T>, n: u8, from: fn(u8) -> SocketAddr) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                t.login_from(from(i), ADMIN, "wrong password")
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in tasks {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_guesses_from_one_address_get_only_the_address_limit() {
    let t = Arc::new(common::start_with(&[]).await);
    t.setup_admin().await;
    let statuses = parallel_wrong(&t, 20, |_| peer(7)).await;
    let guesses = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(guesses, webd::accounts::IP_FAILURES, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429));
    // Every guess was recorded before its bcrypt ran; refusals wrote nothing.
    assert_eq!(t.attempts(ADMIN).await, webd::accounts::IP_FAILURES as i64);
    // The admin, from their own address, is not locked out by it.
    let ok = t.login_from(peer(1), ADMIN, ADMIN_PW).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_guesses_from_twenty_addresses_get_only_the_account_limit() {
    let t = Arc::new(common::start_with(&[]).await);
    t.setup_admin().await;
    let statuses = parallel_wrong(&t, 20, |i| peer(10 + i)).await;
    let guesses = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(guesses, webd::accounts::LOCK_FAILURES, "{statuses:?}");
    assert_eq!(
        t.attempts(ADMIN).await,
        webd::accounts::LOCK_FAILURES as i64
    );
    // Locked for a new address, even with the right password.
    let r = t.login_from(peer(99), ADMIN, ADMIN_PW).await;
    assert_eq!(r.status, 429);
    assert_eq!(code(&r), "RATE_LIMITED");
}

#[tokio::test]
async fn a_stranger_hammering_the_admin_is_blocked_and_the_admin_still_logs_in() {
    let t = common::start_with(&[]).await;
    t.setup_admin().await;
    let stranger = peer(66);
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(t.login_from(stranger, ADMIN, "guess").await.status.as_u16());
    }
    let blocked_from = webd::accounts::IP_FAILURES;
    assert!(
        statuses[..blocked_from].iter().all(|s| *s == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[blocked_from..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    // Even the right password gets no hearing from the blocked address.
    let r = t.login_from(stranger, ADMIN, ADMIN_PW).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("address")
    );
    // The admin elsewhere is unaffected: the account is not locked.
    let ok = t.login_from(peer(1), ADMIN, ADMIN_PW).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let blocked: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM security_events WHERE kind = 'web_login_address_blocked' \
         AND ip_address = '198.51.100.66'",
    )
    .fetch_one(&t.st.pool)
    .await
    .unwrap();
    assert_eq!(blocked, 1);
}

#[tokio::test]
async fn strangers_on_many_addresses_lock_the_account_but_not_for_its_owners_address() {
    let t = common::start_with(&[]).await;
    let admin = t.setup_admin().await;
    // The admin's usual address: a successful login before the attack.
    let home = peer(1);
    assert_eq!(t.login_from(home, ADMIN, ADMIN_PW).await.status, 200);
    for i in 0..webd::accounts::LOCK_FAILURES as u8 {
        assert_eq!(t.login_from(peer(20 + i), ADMIN, "guess").await.status, 401);
    }
    // Locked: a new address (another stranger) gets no guess ...
    assert_eq!(t.login_from(peer(40), ADMIN, ADMIN_PW).await.status, 429);
    // ... while the owner at home still logs in.
    let ok = t.login_from(home, ADMIN, ADMIN_PW).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    // The lock is visible to admins.
    let me = t.send("GET", "/api/auth/me", &admin, None).await.json();
    assert!(me["locked_until"].is_string(), "{me}");
}

#[tokio::test]
async fn an_admin_unlocks_a_locked_user_who_then_logs_in() {
    let t = common::start_with(&[]).await;
    let admin = t.setup_admin().await;
    let id = t
        .new_user(&admin, "bob@example.org", "bob password 1")
        .await;
    for i in 0..webd::accounts::LOCK_FAILURES as u8 {
        t.login_from(peer(20 + i), "bob@example.org", "guess").await;
    }
    assert_eq!(
        t.login_from(peer(2), "bob@example.org", "bob password 1")
            .await
            .status,
        429
    );
    let u = t.user_json(&admin, id).await;
    assert!(u["locked_until"].is_string(), "{u}");
    // A user cannot unlock anyone; an admin can.
    let bob_other = t
        .new_user(&admin, "eve@example.org", "eve password 1")
        .await;
    let eve = t
        .login_from(peer(3), "eve@example.org", "eve password 1")
        .await
        .cookie();
    let r = t
        .send("POST", &format!("/api/users/{id}/unlock"), &eve, None)
        .await;
    assert_eq!(r.status, 403);
    let r = t
        .send("POST", &format!("/api/users/{id}/unlock"), &admin, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["locked_until"].is_null());
    let r = t
        .login_from(peer(2), "bob@example.org", "bob password 1")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        t.send("POST", "/api/users/999999/unlock", &admin, None)
            .await
            .status,
        404
    );
    assert!(t.user_json(&admin, bob_other).await["locked_until"].is_null());
}

#[tokio::test]
async fn a_password_reset_unlocks_and_revokes_the_users_api_keys() {
    let t = common::start_with(&[]).await;
    let admin = t.setup_admin().await;
    let id = t
        .new_user(&admin, "bob@example.org", "bob password 1")
        .await;
    let bob = t
        .login_from(peer(2), "bob@example.org", "bob password 1")
        .await
        .cookie();
    let key = t
        .send(
            "POST",
            "/api/api-keys",
            &bob,
            Some(json!({"name": "script"})),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text());
    let key = key.json()["key"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {key}");
    assert_eq!(external(&t, &bearer).await, 200);
    for i in 0..webd::accounts::LOCK_FAILURES as u8 {
        t.login_from(peer(20 + i), "bob@example.org", "guess").await;
    }
    let r = t
        .send(
            "POST",
            &format!("/api/users/{id}/password"),
            &admin,
            Some(json!({"password": "bob new password"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(external(&t, &bearer).await, 401, "the old key is revoked");
    let r = t
        .login_from(peer(5), "bob@example.org", "bob new password")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_api_key_with_an_expiry_is_refused_after_it() {
    let t = common::start_with(&[]).await;
    let admin = t.setup_admin().await;
    let past = t
        .send(
            "POST",
            "/api/api-keys",
            &admin,
            Some(json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(past.status, 422, "{}", past.text());
    let r = t
        .send(
            "POST",
            "/api/api-keys",
            &admin,
            Some(json!({"name": "forever", "expires_at": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let in_a_month = proto::time::fmt(chrono::Utc::now() + chrono::Duration::days(30));
    let r = t
        .send(
            "POST",
            "/api/api-keys",
            &admin,
            Some(json!({"name": "ci", "expires_at": in_a_month})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["api_key"]["expires_at"], in_a_month);
    let bearer = format!("Bearer {}", r.json()["key"].as_str().unwrap());
    assert_eq!(external(&t, &bearer).await, 200);
    // A key made to expire in two seconds works until then, and not after.
    let soon = proto::time::fmt(chrono::Utc::now() + chrono::Duration::seconds(2));
    let r = t
        .send(
            "POST",
            "/api/api-keys",
            &admin,
            Some(json!({"name": "short", "expires_at": soon})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let short = format!("Bearer {}", r.json()["key"].as_str().unwrap());
    assert_eq!(external(&t, &short).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(external(&t, &short).await, 401);
    assert_eq!(external(&t, &bearer).await, 200);
    let list = t.send("GET", "/api/api-keys", &admin, None).await.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["ci"], "an expired key is no longer listed: {list}");
}

#[tokio::test]
async fn setup_without_the_setup_token_is_refused_and_creates_no_admin() {
    use std::os::unix::fs::PermissionsExt;
    let t = common::start_with(&[]).await;
    let file = t.dir.path().join(webd::api::setup::TOKEN_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = t.setup_token();
    assert!(token.len() >= 32);
    let admin = json!({"email": "mallory@example.org", "password": ADMIN_PW});
    for body in [
        json!({"admin": admin}),
        json!({"admin": admin, "setup_token": "guess"}),
        json!({"admin": admin, "setup_token": format!("{}x", token)}),
    ] {
        let r = t.send("POST", "/api/setup", "", Some(body)).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(code(&r), "SETUP_TOKEN_INVALID");
        assert!(r.json()["error"]["message"].is_string());
    }
    // The Twilio check of the wizard needs it too.
    let r = t
        .send(
            "POST",
            "/api/setup/twilio-check",
            "",
            Some(json!({"account_sid": format!("AC{}", "0".repeat(32)), "auth_token": "x"})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        t.send("GET", "/api/setup", "", None).await.json()["needed"],
        true
    );
    // With the token, the owner sets up; the token is spent.
    t.setup_admin().await;
    assert!(!file.exists());
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"admin": admin, "setup_token": token})),
        )
        .await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn a_restart_before_setup_keeps_the_printed_token_and_after_setup_makes_none() {
    let t = common::start_with(&[]).await;
    let token = t.setup_token();
    let again = webd::AppState::new(t.st.cfg.clone(), t.st.pool.clone())
        .await
        .unwrap();
    assert_eq!(
        again.setup_token.lock().unwrap().as_deref(),
        Some(token.as_str())
    );
    t.setup_admin().await;
    let after = webd::AppState::new(t.st.cfg.clone(), t.st.pool.clone())
        .await
        .unwrap();
    assert!(after.setup_token.lock().unwrap().is_none());
    assert!(!t.dir.path().join(webd::api::setup::TOKEN_FILE).exists());
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_an_https_proxy() {
    let t = common::start_with(&[]).await;
    t.setup_admin().await;
    let r = t
        .send_with(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": ADMIN, "password": ADMIN_PW})),
            None,
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(r.status, 200);
    let c = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(c.ends_with("; Secure"), "{c}");
    let plain = t.login_from(peer(1), ADMIN, ADMIN_PW).await.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!plain.contains("Secure"), "{plain}");
}

#[tokio::test]
async fn an_extended_session_sends_its_cookie_again_with_a_fresh_max_age() {
    // Sessions pushed out once they have been in use for 3 s (the default
    // is five minutes), so the test waits seconds, not hours.
    let t = common::start_with(&["--session-refresh-secs", "3"]).await;
    let cookie = t.setup_admin().await;
    let expiry = || async {
        sqlx::query_scalar::<_, String>("SELECT expires_at FROM sessions")
            .fetch_one(&t.st.pool)
            .await
            .unwrap()
    };
    // A fresh session is not rewritten on every request.
    let r = t.send("GET", "/api/auth/me", &cookie, None).await;
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    let soon = expiry().await;
    // Later the server extends the session ...
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let r = t
        .send_with(
            "GET",
            "/api/auth/me",
            &cookie,
            None,
            None,
            &[("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(r.status, 200);
    // ... and the browser's cookie with it.
    let c = r.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(c.starts_with(&format!("{cookie};")), "{c}");
    assert!(
        c.contains("Max-Age=86400") && c.ends_with("; Secure"),
        "{c}"
    );
    let exp = expiry().await;
    assert!(exp > soon);
}

#[tokio::test]
async fn a_restored_backup_cannot_point_greetings_outside_the_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let t = common::start_with(&[]).await;
    let admin = t.setup_admin().await;
    // Four numbers, added on the Numbers screen.
    for (number, name) in [
        ("+15551230001", "abs"),
        ("+15551230002", "dots"),
        ("+15551230003", "elsewhere"),
        ("+15551230004", "fine"),
    ] {
        let body = json!({"number": number, "name": name});
        let r = t.send("POST", "/api/dids", &admin, Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    // A real backup, taken on the System screen; owner-only on disk.
    let r = t.send("POST", "/api/system/backup", &admin, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let file = std::fs::read_dir(t.dir.path().join("backups"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".tar"))
        .unwrap();
    let mode = file.metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "backups are for the owner only");
    // The attacker edits the archive's database (the archive is a file
    // from outside; its database says what it likes: no screen sets these
    // paths) and uploads it. This edit is the attack, not set-up.
    let archive = tampered(
        &r.bytes,
        &[
            "UPDATE dids SET greeting_path = CASE number \
               WHEN '+15551230001' THEN '/etc/passwd' \
               WHEN '+15551230002' THEN 'greetings/../../../etc/passwd' \
               WHEN '+15551230003' THEN 'gosip.db' \
               ELSE 'greetings/4.wav' END",
            "INSERT INTO sms_media_tokens (token_hash, path, content_type, expires_at) \
             VALUES ('abc', '/etc/shadow', 'image/png', '2999-01-01T00:00:00.000Z')",
        ],
    )
    .await;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/system/restore")
        .header("x-requested-with", "gosip")
        .header(header::COOKIE, &admin)
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(axum::body::Body::from(archive))
        .unwrap();
    let r = t.raw(req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT number, greeting_path FROM dids ORDER BY number")
            .fetch_all(&t.st.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("+15551230001", ""),
            ("+15551230002", ""),
            ("+15551230003", ""),
            ("+15551230004", "greetings/4.wav"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // The archive's media links are never restored (twiliod also serves a
    // link only while its message still holds that file).
    let tokens: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sms_media_tokens")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 0, "no media link comes back with a backup");
}

/// `archive` (a backup tar) with `statements` run on its `gosip.db`, as
/// someone editing the file offline would.
async fn tampered(archive: &[u8], statements: &[&'static str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for e in tar::Archive::new(archive).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        entries.push((name, data));
    }
    let db = dir.path().join("gosip.db");
    let (_, data) = entries.iter().find(|(n, _)| n == "gosip.db").unwrap();
    std::fs::write(&db, data).unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for q in statements {
        sqlx::query(*q).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let edited = std::fs::read(&db).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    for (name, data) in &entries {
        let data = if name == "gosip.db" { &edited } else { data };
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        out.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    out.into_inner().unwrap()
}
