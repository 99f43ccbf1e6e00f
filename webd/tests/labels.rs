#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fields do what their labels say: numbers typed the way people type them
//! are stored in E.164 (so the blocklist and caller lists match callers),
//! "Nobody" as an owner and an empty extension clear the value, and an
//! absent field keeps it.

use axum::http::StatusCode;
use serde_json::{Value, json};

mod common;
use common::Res;

type T = common::Webd;

impl T {
    async fn call(&self, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Res {
        self.send(method, path, cookie, body).await
    }

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
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        r.cookie()
    }

    async fn user(&self, admin: &str, email: &str) -> (i64, String) {
        let r = self
            .call(
                "POST",
                "/api/users",
                admin,
                Some(json!({"email": email, "role": "user", "password": "user password 1"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        let id = r.json()["id"].as_i64().unwrap();
        let r = self
            .call(
                "POST",
                "/api/auth/login",
                "",
                Some(json!({"email": email, "password": "user password 1"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json());
        (id, r.cookie())
    }

    /// `method path` with `body`; asserts `want` and returns the JSON.
    async fn ok(&self, want: u16, method: &str, path: &str, cookie: &str, body: Value) -> Value {
        let r = self.call(method, path, cookie, Some(body)).await;
        assert_eq!(r.status.as_u16(), want, "{method} {path}: {}", r.json());
        r.json()
    }
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
async fn blocklist_and_caller_list_numbers_are_stored_in_e164_whatever_was_typed() {
    let t = common::start_with(&[]).await;
    let admin = t.admin().await;
    let b = |pattern: &str, kind: &str| json!({"pattern": pattern, "pattern_type": kind});
    // A prefix without "+" is national to the default country ("1").
    let v = t
        .ok(201, "POST", "/api/blocklist", &admin, b("1900", "prefix"))
        .await;
    assert_eq!(v["pattern"], "+1900");
    let v = t
        .ok(201, "POST", "/api/blocklist", &admin, b("876", "prefix"))
        .await;
    assert_eq!(v["pattern"], "+1876");
    let v = t
        .ok(
            201,
            "POST",
            "/api/blocklist",
            &admin,
            b("555-867-5309", "exact"),
        )
        .await;
    assert_eq!(v["pattern"], "+15558675309");
    // The same prefix typed another way is the same entry.
    let r = t
        .call(
            "POST",
            "/api/blocklist",
            &admin,
            Some(b("+1 900", "prefix")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json());
    for (p, k) in [("19a0", "prefix"), ("+0900", "prefix"), ("5309", "exact")] {
        let r = t
            .call("POST", "/api/blocklist", &admin, Some(b(p, k)))
            .await;
        assert_eq!(fields(&r), ["pattern"], "{p}: {}", r.json());
    }
    let v = t
        .ok(
            201,
            "POST",
            "/api/caller-lists",
            &admin,
            json!({"list": "vip", "number": "(555) 867-5310", "name": "Jenny"}),
        )
        .await;
    assert_eq!(v["number"], "+15558675310");
    let v = t
        .ok(
            201,
            "POST",
            "/api/dids",
            &admin,
            json!({"number": "1 555 123 0001"}),
        )
        .await;
    assert_eq!(v["number"], "+15551230001");

    // Another country: its trunk 0 goes, its code comes first.
    let r = t
        .call(
            "PUT",
            "/api/system/config",
            &admin,
            Some(json!({"values": {"system.default_country": "44"}})),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.json());
    let v = t
        .ok(201, "POST", "/api/blocklist", &admin, b("0909", "prefix"))
        .await;
    assert_eq!(v["pattern"], "+44909");
}

#[tokio::test]
async fn nobody_as_owner_and_an_empty_extension_clear_and_absent_fields_keep() {
    let t = common::start_with(&[]).await;
    let admin = t.admin().await;
    let (uid, user) = t.user(&admin, "u@example.org").await;

    // Created for nobody (the UI's "Nobody" sends null) stays ownerless;
    // without the field the device is the admin's.
    let d = t
        .ok(
            201,
            "POST",
            "/api/devices",
            &admin,
            json!({"name": "Lobby", "extension": "201", "user_id": null}),
        )
        .await;
    assert_eq!(d["user_id"], Value::Null, "{d}");
    let mine = t
        .ok(201, "POST", "/api/devices", &admin, json!({"name": "Desk"}))
        .await;
    assert!(mine["user_id"].as_i64().is_some(), "{mine}");
    let id = d["id"].as_i64().unwrap();
    let path = format!("/api/devices/{id}");

    let v = t
        .ok(200, "PUT", &path, &admin, json!({"user_id": uid}))
        .await;
    assert_eq!(v["user_id"], uid);
    assert_eq!(v["extension"], "201", "absent keeps: {v}");
    // The user may send their device's form back unchanged, but not take
    // it away or renumber it.
    let v = t
        .ok(
            200,
            "PUT",
            &path,
            &user,
            json!({"name": "My lobby", "extension": "201", "user_id": uid}),
        )
        .await;
    assert_eq!(v["name"], "My lobby");
    for body in [json!({"user_id": null}), json!({"extension": "202"})] {
        let r = t.call("PUT", &path, &user, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}: {}", r.json());
    }
    // null clears the owner and the extension; "" clears the extension too.
    let v = t
        .ok(
            200,
            "PUT",
            &path,
            &admin,
            json!({"user_id": null, "extension": null}),
        )
        .await;
    assert_eq!(
        (&v["user_id"], &v["extension"]),
        (&Value::Null, &Value::Null)
    );
    t.ok(200, "PUT", &path, &admin, json!({"extension": "203"}))
        .await;
    let v = t
        .ok(200, "PUT", &path, &admin, json!({"extension": ""}))
        .await;
    assert_eq!(v["extension"], Value::Null);

    // Numbers: "Nobody" clears the owner; absent keeps it.
    let did = t
        .ok(
            201,
            "POST",
            "/api/dids",
            &admin,
            json!({"number": "+15551230002", "owner_user_id": uid,
                   "twilio_sid": "PN0123456789abcdef0123456789abcdef"}),
        )
        .await;
    let path = format!("/api/dids/{}", did["id"]);
    let v = t
        .ok(200, "PUT", &path, &admin, json!({"name": "Sales"}))
        .await;
    assert_eq!(v["owner_user_id"], uid);
    let v = t
        .ok(
            200,
            "PUT",
            &path,
            &admin,
            json!({"owner_user_id": null, "twilio_sid": null}),
        )
        .await;
    assert_eq!(
        (&v["owner_user_id"], &v["twilio_sid"], &v["name"]),
        (&Value::Null, &Value::Null, &json!("Sales"))
    );
    let r = t
        .call("PUT", &path, &admin, Some(json!({"owner_user_id": 9999})))
        .await;
    assert_eq!(fields(&r), ["owner_user_id"]);
}

#[tokio::test]
async fn a_call_whose_recording_expired_says_so_and_links_to_nothing() {
    let t = common::start_with(&[]).await;
    let admin = t.admin().await;
    // Two recorded calls as sipd and mediad leave them: the retention sweep
    // cleared the first one's recording and noted when.
    sqlx::query(
        "INSERT INTO cdrs (direction, from_number, to_number, started_at, duration, disposition, \
           recording_url, recording_expired_at) VALUES \
         ('internal', '201', '202', '2025-01-15T14:00:00.000Z', 5, 'answered', NULL, '2025-02-15T00:00:00.000Z'), \
         ('internal', '201', '203', '2025-01-15T13:00:00.000Z', 5, 'answered', 'recordings/b.wav', NULL)",
    )
    .execute(&t.st.pool)
    .await
    .unwrap();
    let r = t.call("GET", "/api/cdrs", &admin, None).await;
    let list = r.json();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items[0]["recording_url"], Value::Null);
    assert_eq!(items[0]["recording_expired"], true);
    assert_eq!(items[1]["recording_expired"], false);
    assert_eq!(
        items[1]["recording_url"],
        format!("/api/cdrs/{}/recording", items[1]["id"])
    );
    for item in items {
        let one = t
            .call("GET", &format!("/api/cdrs/{}", item["id"]), &admin, None)
            .await;
        assert_eq!(item, &one.json(), "the list and the single call agree");
    }
}
