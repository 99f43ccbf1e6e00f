#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Handler tests: the whole app (`webd::app(state).oneshot(..)`) on a temp
//! database, with the other daemons absent (their addresses point at a
//! closed port, so gRPC calls fail like a daemon that is down).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

mod common;
use common::Res;

type T = common::Webd;

async fn start() -> T {
    start_with(&[]).await
}

async fn start_with(extra: &[&str]) -> T {
    common::start_with(extra).await
}

impl T {
    async fn call(&self, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Res {
        self.send(method, path, cookie, body).await
    }

    async fn get(&self, path: &str, cookie: &str) -> Res {
        self.call("GET", path, cookie, None).await
    }

    /// Runs setup; returns the admin's cookie.
    async fn admin(&self) -> String {
        let r = self
            .call(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": self.setup_token(), "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                            "did": {"number": "+15551230000", "name": "Main"}})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json());
        r.cookie()
    }

    /// Creates a user and logs them in; returns (id, cookie).
    async fn user(&self, admin: &str, email: &str) -> (i64, String) {
        let r = self
            .call(
                "POST",
                "/api/users",
                admin,
                Some(json!({"email": email, "role": "user", "password": "user password 1"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json());
        let id = r.json()["id"].as_i64().unwrap();
        (id, self.login(email, "user password 1").await)
    }

    async fn login(&self, email: &str, pw: &str) -> String {
        let r = self
            .call(
                "POST",
                "/api/auth/login",
                "",
                Some(json!({"email": email, "password": pw})),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json());
        r.cookie()
    }

    /// Settings saved as the admin saves them on the settings screen.
    async fn configure(&self, admin: &str, values: Value) {
        let r = self
            .call(
                "PUT",
                "/api/system/config",
                admin,
                Some(json!({ "values": values })),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json());
    }

    async fn exec(&self, sql: &str) -> i64 {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.st.pool)
            .await
            .unwrap()
            .last_insert_rowid()
    }
}

fn code(r: &Res) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_owned()
}

fn fields(r: &Res) -> Vec<String> {
    r.json()["error"]["details"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn setup_wizard_creates_the_admin_once_and_then_closes_for_good() {
    let t = start().await;
    assert_eq!(t.get("/api/setup/status", "").await.json()["needed"], true);
    let token = t.setup_token();
    let bad = t
        .call(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": token, "admin": {"email": "nope", "password": "password"}, "did": {"number": "555"}})),
        )
        .await;
    assert_eq!(bad.status, 422);
    let f = fields(&bad);
    for want in ["admin.email", "admin.password", "did.number"] {
        assert!(f.contains(&want.to_owned()), "{f:?}");
    }
    let admin = t.admin().await;
    assert_eq!(t.get("/api/auth/me", &admin).await.json()["role"], "admin");
    assert_eq!(t.get("/api/setup", "").await.json()["needed"], false);
    let again = t
        .call(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": token, "admin": {"email": "evil@example.org", "password": "another good one"}})),
        )
        .await;
    assert_eq!(again.status, 409);
    let dids = t.get("/api/dids", &admin).await.json();
    assert_eq!(dids["items"][0]["number"], "+15551230000");
}

#[tokio::test]
async fn setup_with_twilio_while_twiliod_is_down_answers_503_and_creates_nothing() {
    let t = start().await;
    let r = t
        .call(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(), "admin": {"email": "a@example.org", "password": "correct horse battery"},
                        "twilio": {"account_sid": format!("AC{}", "0".repeat(32)), "auth_token": "x"}})),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.json());
    assert_eq!(code(&r), "SERVICE_UNAVAILABLE");
    assert_eq!(t.get("/api/setup", "").await.json()["needed"], true);
}

#[tokio::test]
async fn session_cookie_is_httponly_strict_and_secure_only_behind_https() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": "admin@example.org", "password": "correct horse battery"})),
        )
        .await;
    let c = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
    t.configure(
        &admin,
        json!({"system.public_url": "https://pbx.example.org"}),
    )
    .await;
    let r = t
        .call(
            "POST",
            "/api/auth/login",
            "",
            Some(json!({"email": "admin@example.org", "password": "correct horse battery"})),
        )
        .await;
    assert!(
        r.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    // The token is stored only as its SHA-256.
    let token = r.cookie().split_once('=').unwrap().1.to_owned();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE token_hash = ?")
        .bind(webd::accounts::sha256_hex(token.as_bytes()))
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn logout_kills_the_session() {
    let t = start().await;
    let admin = t.admin().await;
    assert_eq!(
        t.call("POST", "/api/auth/logout", &admin, None)
            .await
            .status,
        200
    );
    assert_eq!(t.get("/api/auth/me", &admin).await.status, 401);
}

#[tokio::test]
async fn password_change_kills_the_other_sessions_but_keeps_this_one() {
    let t = start().await;
    let a1 = t.admin().await;
    let a2 = t.login("admin@example.org", "correct horse battery").await;
    let weak = t
        .call(
            "POST",
            "/api/auth/password",
            &a1,
            Some(
                json!({"current_password": "correct horse battery", "new_password": "password123"}),
            ),
        )
        .await;
    assert_eq!(weak.status, 422);
    assert_eq!(fields(&weak), ["new_password"]);
    let long = t
        .call(
            "POST",
            "/api/auth/password",
            &a1,
            Some(json!({"current_password": "correct horse battery", "new_password": "x".repeat(73)})),
        )
        .await;
    assert_eq!(long.status, 422);
    let wrong = t
        .call(
            "POST",
            "/api/auth/password",
            &a1,
            Some(
                json!({"current_password": "nope nope nope", "new_password": "a much better one"}),
            ),
        )
        .await;
    assert_eq!(fields(&wrong), ["current_password"]);
    let ok = t
        .call(
            "POST",
            "/api/auth/password",
            &a1,
            Some(json!({"current_password": "correct horse battery", "new_password": "a much better one"})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.json());
    assert_eq!(t.get("/api/auth/me", &a1).await.status, 200);
    assert_eq!(t.get("/api/auth/me", &a2).await.status, 401);
    t.login("admin@example.org", "a much better one").await;
}

#[tokio::test]
async fn five_failed_logins_lock_the_account_and_unknown_accounts_answer_the_same() {
    let t = start().await;
    t.admin().await;
    // Five addresses, one failure each: one address alone is blocked
    // sooner (tests/security.rs), so this is the account's own rule.
    let from = |i: u8| Some(SocketAddr::from(([198, 51, 100, i], 40000)));
    let mut per_email = Vec::new();
    for email in ["admin@example.org", "ghost@example.org"] {
        let mut answers = Vec::new();
        for i in 1..=5 {
            let r = t
                .send_with(
                    "POST",
                    "/api/auth/login",
                    "",
                    Some(json!({"email": email, "password": "wrong password"})),
                    from(i),
                    &[],
                )
                .await;
            answers.push((r.status, r.json()));
        }
        assert!(answers.iter().all(|a| a.0 == 401), "{answers:?}");
        assert!(answers.windows(2).all(|w| w[0] == w[1]));
        // Locked now, even with the right password.
        let r = t
            .send_with(
                "POST",
                "/api/auth/login",
                "",
                Some(json!({"email": email, "password": "correct horse battery"})),
                from(50),
                &[],
            )
            .await;
        assert_eq!(r.status, 429, "{email}");
        answers.push((r.status, r.json()));
        per_email.push(answers);
    }
    assert_eq!(
        per_email[0], per_email[1],
        "unknown accounts answer like known ones"
    );
    let failed: i64 = sqlx::query_scalar(
        "SELECT SUM(count) FROM security_events WHERE kind = 'web_login_failed'",
    )
    .fetch_one(&t.st.pool)
    .await
    .unwrap();
    assert_eq!(failed, 10);
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_header_or_a_matching_origin() {
    let t = start().await;
    let admin = t.admin().await;
    let body = json!({"pattern": "+15550001111"}).to_string();
    let mk = |origin: Option<&str>| {
        let mut b = Request::builder()
            .method("POST")
            .uri("/api/blocklist")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::COOKIE, &admin)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(Body::from(body.clone())).unwrap()
    };
    let r = t.raw(mk(None)).await;
    assert_eq!(
        (r.status, code(&r).as_str()),
        (StatusCode::FORBIDDEN, "CSRF_REJECTED")
    );
    let r = t.raw(mk(Some("http://evil.example"))).await;
    assert_eq!(r.status, 403);
    let r = t.raw(mk(Some("http://127.0.0.1:8080"))).await;
    assert_eq!(r.status, 201, "{}", r.json());
}

#[tokio::test]
async fn security_headers_are_on_api_and_spa_answers() {
    let t = start().await;
    for p in ["/api/system/health", "/"] {
        let r = t.get(p, "").await;
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert!(
            r.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert!(r.headers.contains_key("referrer-policy"));
    }
}

#[tokio::test]
async fn pagination_is_validated_and_reports_the_total() {
    let t = start().await;
    let admin = t.admin().await;
    for i in 0..25 {
        t.exec(&format!(
            "INSERT INTO cdrs (direction, from_number, to_number, started_at, duration, disposition) \
             VALUES ('inbound', '+1555000{i:04}', '+15551230000', '2025-01-15T14:{i:02}:00.000Z', {i}, 'answered')"
        ))
        .await;
    }
    let r = t.get("/api/cdrs", &admin).await.json();
    assert_eq!(
        (
            r["total"].as_i64(),
            r["per_page"].as_i64(),
            r["page"].as_i64()
        ),
        (Some(25), Some(20), Some(1))
    );
    assert_eq!(r["items"].as_array().unwrap().len(), 20);
    assert_eq!(r["items"][0]["started_at"], "2025-01-15T14:24:00.000Z");
    let r = t
        .get("/api/cdrs?page=2&sort=duration&order=asc", &admin)
        .await
        .json();
    assert_eq!(r["items"].as_array().unwrap().len(), 5);
    assert_eq!(r["items"][0]["duration"], 20);
    for (q, field) in [
        ("per_page=101", "per_page"),
        ("per_page=0", "per_page"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("sort=password_hash", "sort"),
        ("order=sideways", "order"),
        ("from=yesterday", "from"),
        ("disposition=lost", "disposition"),
    ] {
        let r = t.get(&format!("/api/cdrs?{q}"), &admin).await;
        assert_eq!(r.status, 422, "{q}");
        assert_eq!(fields(&r), [field], "{q}");
    }
    let r = t
        .get(
            "/api/cdrs?from=2025-01-15T14:10:00Z&to=2025-01-15T14:20:00Z",
            &admin,
        )
        .await
        .json();
    assert_eq!(r["total"], 10);
    let csv = t
        .get(
            "/api/cdrs/export?from=2025-01-15T14:10:00Z&to=2025-01-15T14:20:00Z",
            &admin,
        )
        .await;
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(String::from_utf8(csv.bytes).unwrap().lines().count(), 11);
}

#[tokio::test]
async fn list_filters_select_exactly_the_matching_calls_and_messages() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/dids",
            &admin,
            Some(json!({"number": "+15559990000", "name": "Second"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let second = r.json()["id"].as_i64().unwrap();
    for (i, (dir, disp, from)) in [
        ("inbound", "answered", "+15550001111"),
        ("inbound", "missed", "+15550002222"),
        ("outbound", "answered", "+15550001111"),
        ("internal", "busy", "+15550003333"),
    ]
    .iter()
    .enumerate()
    {
        t.exec(&format!(
            "INSERT INTO cdrs (direction, from_number, to_number, did_id, started_at, duration, disposition) \
             VALUES ('{dir}', '{from}', '+15551230000', {did}, '2025-01-1{i}T10:00:00.000Z', {i}, '{disp}')",
            did = if i == 0 { second.to_string() } else { "NULL".into() }
        ))
        .await;
    }
    let total = |r: Value| r["total"].as_i64().unwrap();
    for (q, n) in [
        ("", 4),
        ("direction=inbound", 2),
        ("disposition=answered", 2),
        ("direction=inbound&disposition=answered", 1),
        ("number=0001111", 2),
        ("did_id={did}", 1),
        ("from=2025-01-11T00:00:00Z", 3),
        ("from=2025-01-11T00:00:00Z&to=2025-01-13T00:00:00Z", 2),
    ] {
        let q = q.replace("{did}", &second.to_string());
        let r = t.get(&format!("/api/cdrs?{q}"), &admin).await.json();
        assert_eq!(total(r.clone()), n, "cdrs?{q}: {r}");
        assert_eq!(r["items"].as_array().unwrap().len() as i64, n, "cdrs?{q}");
    }
    for (i, (dir, from, to, read)) in [
        ("inbound", "+15550001111", "+15551230000", 0),
        ("outbound", "+15551230000", "+15550001111", 1),
        ("inbound", "+15550002222", "+15551230000", 1),
    ]
    .iter()
    .enumerate()
    {
        t.exec(&format!(
            "INSERT INTO messages (direction, from_number, to_number, did_id, body, status, is_read, created_at) \
             VALUES ('{dir}', '{from}', '{to}', {did}, 'm{i}', 'delivered', {read}, '2025-01-1{i}T10:00:00.000Z')",
            did = if i == 2 { "NULL".into() } else { second.to_string() }
        ))
        .await;
    }
    for (q, n) in [
        ("", 3),
        ("peer=%2B15550001111", 2),
        ("direction=inbound", 2),
        ("did_id={did}", 2),
        ("is_read=false", 1),
        ("is_read=true&direction=inbound", 1),
    ] {
        let q = q.replace("{did}", &second.to_string());
        let r = t.get(&format!("/api/messages?{q}"), &admin).await.json();
        assert_eq!(total(r.clone()), n, "messages?{q}: {r}");
    }
}

#[tokio::test]
async fn a_devices_unsolicited_message_waiting_switch_is_off_by_default_and_kept_by_edits() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    assert_eq!(r.json()["mwi_unsolicited"], false);
    let id = r.json()["id"].as_i64().unwrap();
    let path = format!("/api/devices/{id}");
    let r = t
        .call("PUT", &path, &admin, Some(json!({"mwi_unsolicited": true})))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    // An edit that does not name it keeps it.
    let r = t
        .call("PUT", &path, &admin, Some(json!({"name": "Front desk"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let d = t.get(&path, &admin).await.json();
    assert_eq!(
        (d["name"].as_str(), d["mwi_unsolicited"].as_bool()),
        (Some("Front desk"), Some(true)),
        "{d}"
    );
}

#[tokio::test]
async fn a_devices_transport_and_srtp_default_to_udp_and_optional() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let id = r.json()["id"].as_i64().unwrap();
    let d = t.get(&format!("/api/devices/{id}"), &admin).await.json();
    assert_eq!(
        (&d["transport"], &d["srtp"]),
        (&json!("udp"), &json!("optional")),
        "{d}"
    );
    let (transport, srtp): (String, String) =
        sqlx::query_as("SELECT transport, srtp FROM devices WHERE id = ?")
            .bind(id)
            .fetch_one(&t.st.pool)
            .await
            .unwrap();
    assert_eq!((transport.as_str(), srtp.as_str()), ("udp", "optional"));
}

#[tokio::test]
async fn a_device_set_to_tls_with_srtp_required_keeps_both_and_its_qr_names_the_tls_port() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Secure", "username": "secure1", "transport": "tls", "srtp": "required"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let d = r.json();
    let pw = d["password"].as_str().unwrap().to_owned();
    // sipd is down here: the phone is given the default SIP-over-TLS port.
    assert_eq!(d["port"], 5061, "{d}");
    let uri = d["sip_uri"].as_str().unwrap();
    assert!(uri.starts_with(&format!("sip:secure1:{pw}@")), "{uri}");
    assert!(uri.ends_with(":5061;transport=tls"), "{uri}");
    let id = d["id"].as_i64().unwrap();
    let path = format!("/api/devices/{id}");
    let got = t.get(&path, &admin).await.json();
    assert_eq!(
        (&got["transport"], &got["srtp"]),
        (&json!("tls"), &json!("required")),
        "{got}"
    );
    let listed = t.get("/api/devices", &admin).await.json();
    let row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(
        (&row["transport"], &row["srtp"]),
        (&json!("tls"), &json!("required"))
    );
    // An edit that does not name them keeps them.
    let r = t
        .call("PUT", &path, &admin, Some(json!({"name": "Secure desk"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        (&r.json()["transport"], &r.json()["srtp"]),
        (&json!("tls"), &json!("required"))
    );
    // The QR image carries the same URI (only its bytes can be checked here).
    let png = t.get(&format!("{path}/qr"), &admin).await;
    assert_eq!(png.status, StatusCode::OK);
    // A new password: the answer's URI names TLS again.
    let r = t
        .call(
            "PUT",
            &path,
            &admin,
            Some(json!({"regenerate_password": true})),
        )
        .await;
    assert!(
        r.json()["sip_uri"]
            .as_str()
            .unwrap()
            .ends_with(":5061;transport=tls"),
        "{}",
        r.json()
    );
    // Back to UDP with SRTP off: the URI and port follow.
    let r = t
        .call(
            "PUT",
            &path,
            &admin,
            Some(json!({"transport": "udp", "srtp": "off", "regenerate_password": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        (&r.json()["transport"], &r.json()["srtp"]),
        (&json!("udp"), &json!("off"))
    );
    assert_eq!(r.json()["port"], 5060);
    assert!(
        r.json()["sip_uri"]
            .as_str()
            .unwrap()
            .ends_with(":5060;transport=udp")
    );
}

#[tokio::test]
async fn unknown_transports_and_srtp_modes_and_srtp_required_without_tls_are_refused() {
    let t = start().await;
    let admin = t.admin().await;
    let post = |body: Value| {
        let (t, admin) = (&t, admin.clone());
        async move { t.call("POST", "/api/devices", &admin, Some(body)).await }
    };
    let r = post(json!({"name": "X", "transport": "carrier-pigeon"})).await;
    assert_eq!(
        (r.status.as_u16(), code(&r)),
        (422, "VALIDATION_ERROR".into()),
        "{}",
        r.json()
    );
    assert_eq!(fields(&r), ["transport"], "{}", r.json());
    assert_eq!(
        r.json()["error"]["details"][0]["message"],
        "unknown variant `carrier-pigeon`, expected one of `udp`, `tcp`, `tls`"
    );
    let r = post(json!({"name": "X", "srtp": "sometimes"})).await;
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(fields(&r), ["srtp"], "{}", r.json());
    for transport in [json!("udp"), json!("tcp"), Value::Null] {
        let mut body = json!({"name": "X", "srtp": "required"});
        if !transport.is_null() {
            body["transport"] = transport.clone();
        }
        let r = post(body).await;
        assert_eq!(r.status, 422, "{transport}: {}", r.json());
        assert_eq!(fields(&r), ["srtp"], "{}", r.json());
        let msg = r.json()["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains("only sent over TLS"), "{msg}");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing refused was stored");

    // An update is checked against the device as it would be after it.
    let r = post(json!({"name": "Desk", "transport": "tls", "srtp": "required"})).await;
    assert_eq!(r.status, 201, "{}", r.json());
    let path = format!("/api/devices/{}", r.json()["id"]);
    let r = t
        .call("PUT", &path, &admin, Some(json!({"transport": "udp"})))
        .await;
    assert_eq!(r.status, 422, "{}", r.json());
    assert_eq!(fields(&r), ["srtp"]);
    let r = t
        .call("PUT", &path, &admin, Some(json!({"transport": "sctp"})))
        .await;
    assert_eq!(fields(&r), ["transport"], "{}", r.json());
    let d = t.get(&path, &admin).await.json();
    assert_eq!(
        (&d["transport"], &d["srtp"]),
        (&json!("tls"), &json!("required")),
        "unchanged"
    );
    // Both at once is fine.
    let r = t
        .call(
            "PUT",
            &path,
            &admin,
            Some(json!({"transport": "tcp", "srtp": "optional"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
}

#[tokio::test]
async fn a_user_cannot_change_their_devices_transport_or_srtp() {
    let t = start().await;
    let admin = t.admin().await;
    let (uid, user) = t.user(&admin, "u@example.org").await;
    let r = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Mine", "user_id": uid, "transport": "tls", "srtp": "required"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let path = format!("/api/devices/{}", r.json()["id"]);
    for body in [
        json!({"srtp": "off"}),
        json!({"transport": "tcp", "srtp": "optional"}),
    ] {
        let r = t.call("PUT", &path, &user, Some(body.clone())).await;
        assert_eq!(r.status, 403, "{body}: {}", r.json());
    }
    // Sent back unchanged with their own change, it is accepted.
    let r = t
        .call(
            "PUT",
            &path,
            &user,
            Some(json!({"name": "My phone", "transport": "tls", "srtp": "required"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
}

#[tokio::test]
async fn devices_get_ha1_credentials_shown_once_and_a_qr_code() {
    let t = start().await;
    let admin = t.admin().await;
    t.configure(&admin, json!({"sip.realm": "pbx.test"})).await;
    let r = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "Desk", "username": "desk1", "extension": "101"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let d = r.json();
    let pw = d["password"].as_str().unwrap().to_owned();
    assert!(pw.len() >= 16);
    // The browser reached webd on loopback: a phone on the LAN needs this
    // host's network address instead (never the host name).
    let host = proto::netaddr::default_address(
        std::net::Ipv4Addr::UNSPECIFIED.into(),
        &proto::netaddr::local_networks(),
    );
    assert_eq!(
        d["sip_uri"],
        format!("sip:desk1:{pw}@{host}:5060;transport=udp")
    );
    let (md5, sha): (String, String) =
        sqlx::query_as("SELECT password_hash, ha1_sha256 FROM devices WHERE username = 'desk1'")
            .fetch_one(&t.st.pool)
            .await
            .unwrap();
    assert_eq!((md5, sha), webd::qr::ha1("desk1", "pbx.test", &pw));
    let id = d["id"].as_i64().unwrap();
    let got = t.get(&format!("/api/devices/{id}"), &admin).await;
    assert!(!String::from_utf8_lossy(&got.bytes).contains(&pw));
    assert!(got.json().get("password").is_none());
    let png = t.get(&format!("/api/devices/{id}/qr"), &admin).await;
    assert_eq!(
        (
            png.status,
            png.headers[header::CONTENT_TYPE].to_str().unwrap()
        ),
        (StatusCode::OK, "image/png")
    );
    assert_eq!(&png.bytes[1..4], b"PNG");
    let svg = t
        .get(&format!("/api/devices/{id}/qr?format=svg"), &admin)
        .await;
    assert!(String::from_utf8_lossy(&svg.bytes).contains("<svg"));
    // Without the in-memory secret the QR is gone until a new password.
    t.st.limits.device_secrets.lock().unwrap().clear();
    assert_eq!(
        t.get(&format!("/api/devices/{id}/qr"), &admin).await.status,
        410
    );
    let r = t
        .call(
            "PUT",
            &format!("/api/devices/{id}"),
            &admin,
            Some(json!({"regenerate_password": true})),
        )
        .await;
    assert_ne!(r.json()["password"].as_str().unwrap(), pw);
    assert_eq!(
        t.get(&format!("/api/devices/{id}/qr"), &admin).await.status,
        200
    );
    // Duplicates and bad input name the field.
    let dup = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "X", "username": "desk1"})),
        )
        .await;
    assert_eq!(fields(&dup), ["username"]);
    let dup = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "X", "extension": "101"})),
        )
        .await;
    assert_eq!(fields(&dup), ["extension"]);
    let bad = t
        .call(
            "POST",
            "/api/devices",
            &admin,
            Some(json!({"name": "", "device_type": "fax", "password": "short"})),
        )
        .await;
    let mut f = fields(&bad);
    f.sort();
    assert_eq!(f, ["device_type", "name", "password"]);
}

#[tokio::test]
async fn input_is_validated_with_field_errors() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/dids",
            &admin,
            Some(json!({"number": "5551234"})),
        )
        .await;
    assert_eq!(fields(&r), ["number"]);
    let r = t
        .call(
            "POST",
            "/api/blocklist",
            &admin,
            Some(json!({"pattern": "(+1", "pattern_type": "regex"})),
        )
        .await;
    assert_eq!(fields(&r), ["pattern"]);
    let r = t
        .call(
            "POST",
            "/api/blocklist",
            &admin,
            Some(json!({"pattern": "^\\+1900", "pattern_type": "regex"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = t
        .call(
            "POST",
            "/api/routes",
            &admin,
            Some(json!({"name": "r", "condition_type": "time", "condition_data": {"when": "custom", "days": [], "start": "25:00"},
                        "action_type": "forward", "action_data": {"number": "12"}})),
        )
        .await;
    let mut f = fields(&r);
    f.sort();
    assert_eq!(
        f,
        [
            "action_data.number",
            "condition_data.days",
            "condition_data.end",
            "condition_data.start"
        ]
    );
    let r = t
        .call("POST", "/api/users", &admin, Some(json!({"email": 3})))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(code(&r), "VALIDATION_ERROR");
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"no.such": "1", "sip.min_expires": "soon"}})),
        )
        .await;
    let mut f = fields(&r);
    f.sort();
    assert_eq!(f, ["no.such", "sip.min_expires"]);
}

#[tokio::test]
async fn public_health_is_up_or_down_only_and_admins_also_get_details_and_addresses() {
    let t = start().await;
    let admin = t.admin().await;
    // The other daemons are down here: their error text is a detail.
    let r = t.call("GET", "/api/system/health", "", None).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["daemons"]["sipd"]["status"], "down", "{v}");
    for part in ["sipd", "mediad", "twiliod", "notifyd", "webd"] {
        let p = &v["daemons"][part];
        assert!(
            p.get("detail").is_none() && p.get("version").is_none(),
            "{v}"
        );
    }
    assert!(v.get("addresses").is_none(), "{v}");
    let r = t.call("GET", "/api/system/health", &admin, None).await;
    let v = r.json();
    assert!(
        v["daemons"]["sipd"]["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    assert_eq!(v["daemons"]["webd"]["version"], proto::VERSION);
    assert!(v["addresses"].is_array(), "{v}");
}

#[tokio::test]
async fn address_settings_that_would_give_phones_an_unreachable_address_are_refused() {
    let t = start().await;
    let admin = t.admin().await;
    let put = |k: &'static str, v: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            t.call(
                "PUT",
                "/api/system/config",
                &admin,
                Some(json!({ "values": { k: v } })),
            )
            .await
        }
    };
    for (k, ok) in [
        ("sip.local_address", "127.0.0.1"),
        ("sip.local_address", ""),
        ("sip.public_address", "203.0.113.7"),
        ("sip.public_address", "pbx.example.net"),
        ("sip.stun_server", "stun.example.net:3478"),
        ("sip.stun_server", ""),
    ] {
        let r = put(k, ok).await;
        assert_eq!(r.status, 200, "{k}={ok}: {}", r.json());
        assert_eq!(t.st.settings.get().str(k), ok);
    }
    for (k, bad) in [
        // Not an address of this host: phones would be sent there.
        ("sip.local_address", "203.0.113.77"),
        ("sip.local_address", "pbx.lan"),
        ("sip.local_address", "0.0.0.0"),
        ("sip.public_address", "not a host!"),
        ("sip.public_address", "-bad-.example"),
        ("sip.stun_server", "stun.example.net:99999"),
    ] {
        let r = put(k, bad).await;
        assert_eq!(r.status, 422, "{k}={bad}: {}", r.json());
        assert_eq!(fields(&r), [k], "{}", r.json());
    }
    // A refused value changes nothing.
    assert_eq!(t.st.settings.get().str("sip.local_address"), "");
}

#[tokio::test]
async fn a_trunk_termination_uri_sipd_cannot_use_is_refused_with_the_reason() {
    let t = start().await;
    let admin = t.admin().await;
    for ok in [
        "gosip.pstn.twilio.com",
        "sip:gosip.pstn.us1.twilio.com:5060",
        "sip:gosip.pstn.twilio.com;transport=udp",
        "127.0.0.1:5080",
        "sips:gosip.pstn.twilio.com",
        "sip:gosip.pstn.twilio.com;transport=tls",
        "",
    ] {
        let r = t
            .call(
                "PUT",
                "/api/system/config",
                &admin,
                Some(json!({"values": {"twilio.termination_uri": ok}})),
            )
            .await;
        assert_eq!(r.status, 200, "{ok}: {}", r.json());
        assert_eq!(t.st.settings.get().str("twilio.termination_uri"), ok);
    }
    for (bad, why) in [
        ("sip:gosip.pstn.twilio.com;transport=tcp", "UDP or TLS"),
        (
            "sips:gosip.pstn.twilio.com;transport=udp",
            "use sip: for UDP",
        ),
        ("gosip.pstn.twilio.com:99999", "host, host:port"),
        ("https://gosip.pstn.twilio.com/", "host, host:port"),
        ("two words", "host, host:port"),
    ] {
        let r = t
            .call(
                "PUT",
                "/api/system/config",
                &admin,
                Some(json!({"values": {"twilio.termination_uri": bad}})),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}");
        assert_eq!(fields(&r), ["twilio.termination_uri"], "{bad}");
        assert!(r.json().to_string().contains(why), "{bad}: {}", r.json());
        assert_eq!(
            t.st.settings.get().str("twilio.termination_uri"),
            "",
            "{bad} changed nothing"
        );
    }
}

#[tokio::test]
async fn every_setting_comes_with_its_group_label_help_and_limits_and_the_limits_hold() {
    let t = start().await;
    let admin = t.admin().await;
    let v = t.get("/api/system/config", &admin).await.json();
    let groups: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    let settings = v["settings"].as_array().unwrap();
    assert_eq!(settings.len(), proto::settings::KEYS.len());
    for s in settings {
        let key = s["key"].as_str().unwrap();
        assert!(groups.contains(&s["group"].as_str().unwrap()), "{s}");
        for f in ["label", "help", "kind"] {
            assert!(s[f].as_str().is_some_and(|x| !x.is_empty()), "{key}: {f}");
        }
        // Labels are words, never the key itself.
        assert_ne!(s["label"], key);
    }
    let ring = settings
        .iter()
        .find(|s| s["key"] == "calls.ring_timeout")
        .unwrap();
    assert_eq!(
        (&ring["kind"], &ring["min"], &ring["max"], &ring["unit"]),
        (&json!("int"), &json!(5.0), &json!(300.0), &json!("seconds"))
    );
    let security = settings
        .iter()
        .find(|s| s["key"] == "smtp.security")
        .unwrap();
    assert_eq!(security["options"][1]["value"], "tls");

    let put = |values: Value| {
        let t = &t;
        let admin = admin.clone();
        async move {
            t.call(
                "PUT",
                "/api/system/config",
                &admin,
                Some(json!({ "values": values })),
            )
            .await
        }
    };
    // A 5,000 s ring timeout is refused with the limit in words; nothing
    // else in the same request is written.
    let r = put(json!({"calls.ring_timeout": "5000", "voicemail.min_length": "5"})).await;
    assert_eq!(r.status, 422);
    assert_eq!(fields(&r), ["calls.ring_timeout"]);
    assert!(
        r.json()
            .to_string()
            .contains("must be a whole number from 5 to 300 seconds"),
        "{}",
        r.json()
    );
    assert_eq!(t.st.settings.get().str("voicemail.min_length"), "3");
    for (k, bad) in [
        ("backup.keep", "0"),
        ("smtp.port", "70000"),
        ("routing.spam_threshold", "1.2"),
        ("email.from", "pbx at example"),
        ("calls.record_dtmf", "*1x"),
        ("smtp.security", "ssl"),
    ] {
        let r = put(json!({ k: bad })).await;
        assert_eq!(
            (r.status.as_u16(), fields(&r)),
            (422, vec![k.to_owned()]),
            "{k}={bad}"
        );
    }
    // The shortest registration may not exceed the longest.
    let r = put(json!({"sip.min_expires": "3600", "sip.max_expires": "600"})).await;
    assert_eq!(fields(&r), ["sip.min_expires"], "{}", r.json());
    let r =
        put(json!({"voicemail.min_length": "5", "backup.keep": "30", "calls.ring_timeout": "45"}))
            .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(t.st.settings.get().str("calls.ring_timeout"), "45");
}

#[tokio::test]
async fn secrets_are_masked_and_unchanged_when_the_mask_is_sent_back() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"smtp.password": "hunter22", "smtp.host": "mail.test"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let v = t.get("/api/system/config", &admin).await;
    assert!(!String::from_utf8_lossy(&v.bytes).contains("hunter22"));
    assert_eq!(v.json()["values"]["smtp.password"], "********");
    t.call(
        "PUT",
        "/api/system/config",
        &admin,
        Some(json!({"values": {"smtp.password": "********", "smtp.host": "mail2.test"}})),
    )
    .await;
    assert_eq!(t.st.settings.get().str("smtp.password"), "hunter22");
    assert_eq!(t.st.settings.get().str("smtp.host"), "mail2.test");
}

#[tokio::test]
async fn a_daemon_that_is_down_gives_503_with_the_error_json() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t
        .call(
            "POST",
            "/api/routes/test",
            &admin,
            Some(json!({"did": "+15551230000", "from_number": "+15559990000"})),
        )
        .await;
    assert_eq!(
        (r.status, code(&r).as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
    );
    assert_eq!(t.get("/api/calls", &admin).await.status, 503);
    let d = t.get("/api/dashboard", &admin).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.json()["sipd_available"], false);
}

/// Seeds one object of every kind owned by `owner`; returns their ids.
async fn seed_owned(t: &T, admin: &str, owner: i64) -> Value {
    let dev = t
        .call(
            "POST",
            "/api/devices",
            admin,
            Some(json!({"name": "Theirs", "user_id": owner})),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let cdr = t
        .exec(&format!(
            "INSERT INTO cdrs (direction, from_number, to_number, started_at, disposition, user_id, device_id, recording_url) \
             VALUES ('inbound', '+15550000001', '+15551230000', '2025-01-15T14:30:00.000Z', 'answered', {owner}, {dev}, 'recordings/r.wav')"
        ))
        .await;
    let vm = t
        .exec(&format!(
            "INSERT INTO voicemails (user_id, from_number, audio_url, duration) VALUES ({owner}, '+15550000001', 'voicemails/v.wav', 5)"
        ))
        .await;
    let msg = t
        .exec(&format!(
            "INSERT INTO messages (direction, from_number, to_number, body, status, user_id, media_urls) \
             VALUES ('inbound', '+15550000001', '+15551230000', 'secret body', 'received', {owner}, '[{{\"path\":\"media/m.png\",\"content_type\":\"image/png\"}}]')"
        ))
        .await;
    std::fs::write(t.st.data_dir.join("recordings/r.wav"), b"RIFFxxxxWAVE").unwrap();
    std::fs::write(t.st.data_dir.join("voicemails/v.wav"), b"RIFFxxxxWAVE").unwrap();
    std::fs::write(t.st.data_dir.join("media/m.png"), b"\x89PNG").unwrap();
    json!({"device": dev, "cdr": cdr, "voicemail": vm, "message": msg})
}

/// Endpoints a user may call for their own data (they must answer 200 and
/// show nothing of others'); everything else without an id is admin-only.
const USER_OK: &[(&str, &str)] = &[
    ("get", "/api/auth/me"),
    ("post", "/api/auth/logout"),
    ("post", "/api/auth/password"),
    ("get", "/api/settings"),
    ("put", "/api/settings"),
    ("post", "/api/settings/notify-test"),
    ("get", "/api/dnd"),
    ("put", "/api/dnd"),
    ("get", "/api/api-keys"),
    ("post", "/api/api-keys"),
    ("get", "/api/devices"),
    ("post", "/api/phone"),
    ("get", "/api/dids"),
    ("get", "/api/cdrs"),
    ("get", "/api/cdrs/export"),
    ("get", "/api/calls"),
    ("get", "/api/voicemails"),
    ("get", "/api/messages"),
    ("post", "/api/messages"),
    ("get", "/api/messages/conversations"),
    ("put", "/api/messages/conversations/read"),
    ("get", "/api/dashboard"),
    ("get", "/api/events"),
    ("get", "/api/system/health"),
    ("get", "/api/openapi.json"),
    ("get", "/api/setup"),
    ("get", "/api/setup/status"),
    ("post", "/api/setup"),
    ("post", "/api/setup/twilio-check"),
    ("post", "/api/setup/network"),
    ("post", "/api/auth/login"),
];

#[tokio::test]
async fn every_endpoint_refuses_the_wrong_user() {
    let t = start().await;
    let admin = t.admin().await;
    let (u1, _c1) = t.user(&admin, "one@example.org").await;
    let (_u2, c2) = t.user(&admin, "two@example.org").await;
    let ids = seed_owned(&t, &admin, u1).await;
    let doc = webd::api::openapi();
    let doc = serde_json::to_value(&doc).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Webhooks are twiliod's (signature, no session); the event stream
        // never ends; logout would end the wrong user's own session.
        if path.starts_with("/api/webhooks/") || path == "/api/events" || path == "/api/auth/logout"
        {
            continue;
        }
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let concrete = path
                .replace("{id}", &pick_id(path, &ids).to_string())
                .replace("{n}", "0")
                .replace("{call_id}", "c1")
                .replace("{name}", "gosip-backup-x.tar");
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let r = t.call(&method.to_uppercase(), &concrete, &c2, body).await;
            let s = r.status.as_u16();
            if path.starts_with("/api/external/") {
                assert_eq!(s, 401, "{method} {path}: cookie is no API key");
            } else if path.contains('{') {
                assert!(
                    matches!(s, 403 | 404 | 503),
                    "{method} {concrete} as the wrong user: {s} {}",
                    r.json()
                );
                if s == 503 {
                    // Only the active-calls endpoints ask sipd before they can know.
                    assert!(path.starts_with("/api/calls/"), "{method} {path}");
                }
            } else if USER_OK.contains(&(method, path.as_str())) {
                assert!(s != 403 && s < 500 || s == 503, "{method} {path}: {s}");
                assert!(
                    !String::from_utf8_lossy(&r.bytes).contains("secret body"),
                    "{method} {path} leaks"
                );
            } else {
                assert_eq!(s, 403, "{method} {path} must be admin-only: {}", r.json());
            }
            checked += 1;
        }
    }
    assert!(checked > 80, "{checked}");
    // And the lists show the user nothing of user one's (the browser phone
    // made above is the user's own).
    let me = t.get("/api/auth/me", &c2).await.json()["id"].clone();
    let devices = t.get("/api/devices", &c2).await.json();
    for d in devices["items"].as_array().unwrap() {
        assert_eq!(d["user_id"], me, "{d}");
    }
    for list in ["/api/cdrs", "/api/voicemails", "/api/messages"] {
        assert_eq!(t.get(list, &c2).await.json()["total"], 0, "{list}");
    }
}

fn pick_id(path: &str, ids: &Value) -> i64 {
    let key = ["device", "cdr", "voicemail", "message"]
        .into_iter()
        .find(|k| {
            path.starts_with(&format!("/api/{k}s")) || path.starts_with("/api/cdrs") && *k == "cdr"
        });
    key.and_then(|k| ids[k].as_i64()).unwrap_or(1)
}

#[tokio::test]
async fn owners_see_their_own_objects_and_audio_streams_with_range() {
    let t = start().await;
    let admin = t.admin().await;
    let (u1, c1) = t.user(&admin, "one@example.org").await;
    let ids = seed_owned(&t, &admin, u1).await;
    let vm = ids["voicemail"].as_i64().unwrap();
    assert_eq!(t.get("/api/voicemails", &c1).await.json()["total"], 1);
    let mut req = Request::builder()
        .uri(format!("/api/voicemails/{vm}/audio"))
        .header(header::COOKIE, &c1)
        .header(header::RANGE, "bytes=4-7")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let r = t.raw(req).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.bytes, b"xxxx");
    assert_eq!(r.headers[header::CONTENT_TYPE], "audio/wav");
    assert_eq!(r.headers[header::CONTENT_RANGE], "bytes 4-7/12");
    let cdr = ids["cdr"].as_i64().unwrap();
    assert_eq!(
        t.get(&format!("/api/cdrs/{cdr}/recording"), &c1)
            .await
            .status,
        200
    );
    let msg = ids["message"].as_i64().unwrap();
    let m = t.get(&format!("/api/messages/{msg}/media/0"), &c1).await;
    assert_eq!(m.headers[header::CONTENT_TYPE], "image/png");
    // A row pointing outside the data dir never reads the file.
    t.exec(&format!(
        "UPDATE voicemails SET audio_url = '../../etc/passwd' WHERE id = {vm}"
    ))
    .await;
    assert_eq!(
        t.get(&format!("/api/voicemails/{vm}/audio"), &c1)
            .await
            .status,
        404
    );
    // Marking read is twiliod's (it owns voicemails): unreachable here, so
    // the owner gets a clear 503 and the row stays as it was (the real
    // mark-read runs in the system tests, e2e mwi).
    let r = t
        .call("PUT", &format!("/api/voicemails/{vm}/read"), &c1, None)
        .await;
    assert_eq!(r.status, 503, "{}", r.json());
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("twiliod")
    );
    let r = t.get(&format!("/api/voicemails/{vm}"), &c1).await;
    assert_eq!(r.json()["is_read"], false, "{}", r.json());
}

#[tokio::test]
async fn api_keys_are_shown_once_scoped_to_the_owner_and_revocable() {
    let t = start().await;
    let admin = t.admin().await;
    let (u1, c1) = t.user(&admin, "one@example.org").await;
    seed_owned(&t, &admin, u1).await;
    t.exec(
        "INSERT INTO cdrs (direction, from_number, to_number, started_at, disposition) \
         VALUES ('inbound', '+15550000009', '+15551230000', '2025-01-15T14:31:00.000Z', 'missed')",
    )
    .await;
    let r = t
        .call(
            "POST",
            "/api/api-keys",
            &c1,
            Some(json!({"name": "script"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let key = r.json()["key"].as_str().unwrap().to_owned();
    let listed = t.get("/api/api-keys", &c1).await;
    assert!(!String::from_utf8_lossy(&listed.bytes).contains(&key));
    let bearer = |path: &str| {
        let mut req = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        req
    };
    let r = t.raw(bearer("/api/external/calls")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"], 1, "only the owner's call");
    let r = t.raw(bearer("/api/external/messages")).await;
    assert_eq!(r.json()["total"], 1);
    // A session cookie is no API key, and an API key is no session.
    assert_eq!(t.get("/api/external/calls", &c1).await.status, 401);
    assert_eq!(t.raw(bearer("/api/auth/me")).await.status, 401);
    let id = listed.json()[0]["id"].as_i64().unwrap();
    assert_eq!(
        t.call("DELETE", &format!("/api/api-keys/{id}"), &c1, None)
            .await
            .status,
        200
    );
    assert_eq!(t.raw(bearer("/api/external/calls")).await.status, 401);
}

#[tokio::test]
async fn read_only_mode_refuses_writes_with_503_and_keeps_reads() {
    let t = start().await;
    let admin = t.admin().await;
    t.st.read_only
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = t
        .call(
            "POST",
            "/api/blocklist",
            &admin,
            Some(json!({"pattern": "+15550001111"})),
        )
        .await;
    assert_eq!(r.status, 503);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only")
    );
    assert_eq!(t.get("/api/blocklist", &admin).await.status, 200);
    // A good quick_check lifts it, and removes any marker.
    proto::db::mark_read_only(&t.st.data_dir, Some("test")).unwrap();
    assert!(webd::health::check_database(&t.st).await);
    assert!(!t.st.is_read_only());
    assert!(!proto::db::is_marked_read_only(&t.st.data_dir));
}

#[tokio::test]
async fn a_corrupt_database_switches_to_read_only_and_alerts() {
    let t = start().await;
    t.admin().await;
    for i in 0..400 {
        t.exec(&format!(
            "INSERT INTO security_events (source, kind, detail) VALUES ('t', 'k', '{}')",
            "x".repeat(200 + i % 7)
        ))
        .await;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&t.st.pool)
        .await
        .unwrap();
    let root: i64 =
        sqlx::query_scalar("SELECT rootpage FROM sqlite_master WHERE name = 'security_events'")
            .fetch_one(&t.st.pool)
            .await
            .unwrap();
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    // Scribble over the table's root page (a b-tree interior page).
    let path = proto::db::db_path(&t.st.data_dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let off = ((root - 1) * page) as usize;
    for b in &mut bytes[off + 8..off + 200] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    // A new pool (no migrations) sees the damage.
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .unwrap();
    t.st.pool.close().await;
    let st = webd::AppState::new(t.st.cfg.clone(), pool).await.unwrap();
    assert!(!webd::health::check_database(&st).await);
    assert!(st.is_read_only());
    // The marker that puts every other daemon's connections in query_only.
    assert!(proto::db::is_marked_read_only(&st.data_dir));
    let t2 = T {
        app: webd::app(st.clone()),
        st,
        dir: tempfile::tempdir().unwrap(),
    };
    let admin = t2.login("admin@example.org", "correct horse battery").await;
    let r = t2
        .call(
            "POST",
            "/api/dids",
            &admin,
            Some(json!({"number": "+15550009999"})),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(t2.get("/api/dids", &admin).await.status, 200);
}

#[tokio::test]
async fn backup_restores_and_a_bad_archive_changes_nothing() {
    let t = start().await;
    let admin = t.admin().await;
    t.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550001111"})),
    )
    .await;
    let b = t.call("POST", "/api/system/backup", &admin, None).await;
    assert_eq!(b.status, 200);
    let archive = b.bytes.clone();
    assert_eq!(
        webd::backup::read_manifest(&archive).unwrap().format,
        "gosip-backup"
    );
    assert_eq!(
        t.get("/api/system/backups", &admin)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Change things after the backup.
    t.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550002222"})),
    )
    .await;
    let upload = |body: Vec<u8>, cookie: &str| {
        Request::builder()
            .method("POST")
            .uri("/api/system/restore")
            .header("x-requested-with", "gosip")
            .header(header::COOKIE, cookie)
            .header(header::CONTENT_TYPE, "application/x-tar")
            .body(Body::from(body))
            .unwrap()
    };
    // Garbage, a damaged database, a future version: refused, nothing changes.
    let r = t.raw(upload(b"not a tar".to_vec(), &admin)).await;
    assert_eq!(r.status, 422, "{}", r.json());
    let mut damaged = archive.clone();
    let pos = find(&damaged, b"SQLite format 3").unwrap();
    for b in &mut damaged[pos + 4096..pos + 4096 + 100] {
        *b = 0x5A;
    }
    let r = t.raw(upload(damaged, &admin)).await;
    assert_eq!(r.status, 422, "{}", r.json());
    let future = retar(&archive, |m| m.replace("\"version\": 1", "\"version\": 9"));
    let r = t.raw(upload(future, &admin)).await;
    assert_eq!(r.status, 422);
    assert!(
        r.json()["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("version")
    );
    assert_eq!(t.get("/api/blocklist", &admin).await.json()["total"], 2);
    // The real one restores; sessions end.
    let r = t.raw(upload(archive, &admin)).await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(t.get("/api/auth/me", &admin).await.status, 401);
    let admin = t.login("admin@example.org", "correct horse battery").await;
    let bl = t.get("/api/blocklist", &admin).await.json();
    assert_eq!(bl["total"], 1);
    assert_eq!(bl["items"][0]["pattern"], "+15550001111");
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running')")
            .fetch_one(&t.st.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "queued work from the backup is never resent");
}

#[tokio::test]
async fn a_restore_is_previewed_first_and_an_automatic_backup_restores_by_name() {
    let t = start().await;
    let admin = t.admin().await;
    t.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550001111"})),
    )
    .await;
    // An automatic backup, as the schedule writes it.
    let path = webd::backup::create(&t.st, "auto-").await.unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let list = t.get("/api/system/backups", &admin).await.json();
    assert_eq!(list[0]["name"], name.as_str(), "{list}");
    t.call(
        "POST",
        "/api/blocklist",
        &admin,
        Some(json!({"pattern": "+15550002222"})),
    )
    .await;
    // The preview says when the backup was taken and what it holds, and
    // changes nothing: the session still works, both entries are there.
    let check = t
        .get(&format!("/api/system/backups/{name}/check"), &admin)
        .await;
    assert_eq!(check.status, 200, "{}", check.json());
    let c = check.json();
    let taken = webd::backup::read_manifest(&std::fs::read(&path).unwrap())
        .unwrap()
        .created_at;
    assert_eq!(c["backup_created_at"], taken.as_str());
    assert_eq!(c["contents"]["users"], 1);
    assert!(c["message"].as_str().unwrap().contains(&taken), "{c}");
    let upload = t
        .raw(
            Request::builder()
                .method("POST")
                .uri("/api/system/restore/check")
                .header("x-requested-with", "gosip")
                .header(header::COOKIE, &admin)
                .header(header::CONTENT_TYPE, "application/x-tar")
                .body(Body::from(std::fs::read(&path).unwrap()))
                .unwrap(),
        )
        .await;
    assert_eq!(upload.status, 200, "{}", upload.json());
    assert_eq!(upload.json()["backup_created_at"], taken.as_str());
    let bad = t
        .raw(
            Request::builder()
                .method("POST")
                .uri("/api/system/restore/check")
                .header("x-requested-with", "gosip")
                .header(header::COOKIE, &admin)
                .header(header::CONTENT_TYPE, "application/x-tar")
                .body(Body::from(&b"not a tar"[..]))
                .unwrap(),
        )
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json()["error"]["details"][0]["field"], "file");
    assert_eq!(t.get("/api/blocklist", &admin).await.json()["total"], 2);
    // Names outside the backups folder are not found.
    for bogus in ["..%2Fgosip.db", "gosip-backup-nope.tar"] {
        let r = t
            .get(&format!("/api/system/backups/{bogus}/check"), &admin)
            .await;
        assert_eq!(r.status, 404, "{bogus}");
    }
    // Restoring it by name puts the old data back and ends the session.
    let r = t
        .call(
            "POST",
            &format!("/api/system/backups/{name}/restore"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert!(r.json()["message"].as_str().unwrap().contains(&taken));
    assert_eq!(t.get("/api/auth/me", &admin).await.status, 401);
    let admin = t.login("admin@example.org", "correct horse battery").await;
    assert_eq!(t.get("/api/blocklist", &admin).await.json()["total"], 1);
    // What the restore replaced was kept, and restoring that undoes it.
    let list = t.get("/api/system/backups", &admin).await.json();
    let before = list
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| {
            b["name"]
                .as_str()
                .filter(|n| n.starts_with("gosip-backup-before-restore-"))
        })
        .unwrap_or_else(|| panic!("no before-restore backup in {list}"))
        .to_owned();
    let r = t
        .call(
            "POST",
            &format!("/api/system/backups/{before}/restore"),
            &admin,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    let admin = t.login("admin@example.org", "correct horse battery").await;
    assert_eq!(t.get("/api/blocklist", &admin).await.json()["total"], 2);
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn retar(archive: &[u8], f: impl Fn(String) -> String) -> Vec<u8> {
    use std::io::Read;
    let mut out = tar::Builder::new(Vec::new());
    let mut a = tar::Archive::new(archive);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        if name == "manifest.json" {
            buf = f(String::from_utf8(buf).unwrap()).into_bytes();
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(buf.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, name, &buf[..]).unwrap();
    }
    out.into_inner().unwrap()
}

#[tokio::test]
async fn webhooks_are_forwarded_byte_for_byte_without_a_session() {
    // A stand-in for twiliod's webhook server that echoes what it got.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let echo = axum::Router::new().fallback(|req: Request<Body>| async move {
        let (p, b) = req.into_parts();
        let body = b.collect().await.unwrap().to_bytes();
        let h = |n: &str| p.headers.get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        axum::Json(json!({
            "method": p.method.as_str(), "uri": p.uri.to_string(), "body": String::from_utf8_lossy(&body),
            "sig": h("x-twilio-signature"), "xff": h("x-forwarded-for"), "proto": h("x-forwarded-proto"),
            "host": h("x-forwarded-host"), "cookie": h("cookie"),
        }))
    });
    tokio::spawn(async move { axum::serve(l, echo).await.unwrap() });
    let t = start_with(&["--twiliod-http", &addr]).await;
    let req = Request::builder()
        .method("POST")
        .uri("/api/webhooks/voice/incoming?x=1&y=%2B1")
        .header(header::HOST, "pbx.example.org")
        .header("x-twilio-signature", "abc=")
        .header("x-forwarded-for", "6.6.6.6")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("CallSid=CA1&From=%2B15550001111"))
        .unwrap();
    let r = t.raw(req).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/api/webhooks/voice/incoming?x=1&y=%2B1");
    assert_eq!(v["body"], "CallSid=CA1&From=%2B15550001111");
    assert_eq!(v["sig"], "abc=");
    // The peer is not the trusted proxy: its X-Forwarded-For is ignored.
    assert_eq!(v["xff"], "127.0.0.1");
    assert_eq!(v["proto"], "http");
    assert_eq!(v["host"], "pbx.example.org");
    // From the trusted proxy, its client address is passed on.
    let admin = t.admin().await;
    t.configure(&admin, json!({"system.trusted_proxy": "127.0.0.1"}))
        .await;
    let req = Request::builder()
        .method("POST")
        .uri("/api/webhooks/sms/incoming")
        .header("x-forwarded-for", "1.2.3.4, 5.6.7.8")
        .header("x-forwarded-proto", "https")
        .body(Body::empty())
        .unwrap();
    let v = t.raw(req).await.json();
    assert_eq!(
        (v["xff"].as_str(), v["proto"].as_str()),
        (Some("5.6.7.8"), Some("https"))
    );
}

#[tokio::test]
async fn openapi_lists_every_spec_and_ui_endpoint_and_every_documented_route_exists() {
    let t = start().await;
    let admin = t.admin().await;
    let r = t.get("/api/openapi.json", "").await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let has = |m: &str, p: &str| doc["paths"][p][m.to_lowercase()].is_object();
    let mut n = 0;
    for line in SPEC_ENDPOINTS.lines() {
        let mut w = line.split_whitespace();
        if let (Some(m @ ("GET" | "POST" | "PUT" | "DELETE")), Some(p)) = (w.next(), w.next())
            && p.starts_with("/api/")
        {
            let p = p.replace(":id", "{id}");
            assert!(
                has(m, &p),
                "spec endpoint {m} {p} missing from openapi.json"
            );
            n += 1;
        }
    }
    assert_eq!(n, 51);
    let ui = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../web-ui/src/client.js"
    ))
    .unwrap_or_default();
    for line in ui.lines() {
        if let Some((_, rest)) = line.split_once(": ['")
            && let Some((m, rest)) = rest.split_once("', '")
            && let Some((p, _)) = rest.split_once('\'')
        {
            assert!(has(m, &format!("/api{p}")), "UI endpoint {m} {p} missing");
        }
    }
    // Every documented operation is routed (never the fallback or 405).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in ["get", "post", "put", "delete"] {
            if item.get(m).is_none() || path == "/api/events" {
                continue;
            }
            let p = path
                .replace("{id}", "999")
                .replace("{n}", "0")
                .replace("{call_id}", "x")
                .replace("{name}", "x");
            let r = t.call(&m.to_uppercase(), &p, &admin, Some(json!({}))).await;
            assert_ne!(r.status, 405, "{m} {path}");
            assert_ne!(
                r.json()["error"]["message"],
                "No such API endpoint",
                "{m} {path}"
            );
        }
    }
}

/// REQUIREMENTS.md "API Endpoints", verbatim.
const SPEC_ENDPOINTS: &str = "
POST   /api/auth/login
POST   /api/auth/logout
GET    /api/auth/me
POST   /api/auth/password
GET    /api/devices
POST   /api/devices
GET    /api/devices/:id
PUT    /api/devices/:id
DELETE /api/devices/:id
GET    /api/devices/:id/qr
GET    /api/dids
POST   /api/dids
GET    /api/dids/:id
PUT    /api/dids/:id
DELETE /api/dids/:id
GET    /api/routes
POST   /api/routes
GET    /api/routes/:id
PUT    /api/routes/:id
DELETE /api/routes/:id
PUT    /api/routes/reorder
GET    /api/blocklist
POST   /api/blocklist
DELETE /api/blocklist/:id
GET    /api/cdrs
GET    /api/cdrs/:id
GET    /api/cdrs/:id/recording
GET    /api/voicemails
GET    /api/voicemails/:id
PUT    /api/voicemails/:id/read
DELETE /api/voicemails/:id
GET    /api/voicemails/:id/audio
GET    /api/messages
POST   /api/messages
GET    /api/messages/:id
PUT    /api/messages/:id/read
POST   /api/webhooks/voice/incoming
POST   /api/webhooks/voice/status
POST   /api/webhooks/sms/incoming
POST   /api/webhooks/sms/status
POST   /api/webhooks/recording
POST   /api/webhooks/transcription
GET    /api/external/calls
GET    /api/external/messages
POST   /api/external/call
POST   /api/external/sms
GET    /api/system/config
PUT    /api/system/config
POST   /api/system/backup
POST   /api/system/restore
GET    /api/system/health
";

#[tokio::test]
async fn scheduled_backups_run_when_due_and_keep_the_newest() {
    let t = start().await;
    let admin = t.admin().await;
    t.configure(&admin, json!({"backup.keep": "2"})).await;
    webd::backup::tick(&t.st).await.unwrap();
    webd::backup::tick(&t.st).await.unwrap();
    let autos = |t: &T| {
        std::fs::read_dir(t.st.data_dir.join("backups"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gosip-backup-auto-"))
            .collect::<Vec<_>>()
    };
    assert_eq!(autos(&t).len(), 1, "not due again within the interval");
    // Interval 0 = off; a due interval makes another, and only 2 are kept.
    for _ in 0..3 {
        t.configure(&admin, json!({"backup.interval_hours": "0"}))
            .await;
        webd::backup::tick(&t.st).await.unwrap();
        // Pretend the newest is old: age every file by a day.
        for n in autos(&t) {
            let p = t.st.data_dir.join("backups").join(n);
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            let old =
                f.metadata().unwrap().modified().unwrap() - std::time::Duration::from_secs(86_400);
            f.set_modified(old).unwrap();
        }
        t.configure(&admin, json!({"backup.interval_hours": "1"}))
            .await;
        webd::backup::tick(&t.st).await.unwrap();
    }
    assert_eq!(autos(&t).len(), 2);
}

#[tokio::test]
async fn the_external_api_is_rate_limited_per_key() {
    let t = start().await;
    let admin = t.admin().await;
    let key = t
        .call("POST", "/api/api-keys", &admin, Some(json!({"name": "k"})))
        .await
        .json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for _ in 0..(webd::accounts::API_KEY_RATE_PER_MIN as usize + 5) {
        let mut req = Request::builder()
            .uri("/api/external/messages")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        statuses.push(t.raw(req).await.status.as_u16());
    }
    assert!(statuses[..100].iter().all(|s| *s == 200));
    assert_eq!(*statuses.last().unwrap(), 429);
}
