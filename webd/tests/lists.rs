#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The call and message lists: numbered pages deep into a list (served by
//! seeking from remembered sort keys) and keyset cursors give exactly the
//! rows an independent sort says they should; cached totals and keys follow
//! rows that another connection (another daemon) writes; the JSON SQLite
//! renders for a list item is the same as the typed single-item answer.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tower::ServiceExt;

use webd::http::STRIDE;

mod common;

type T = common::Webd;

async fn start() -> T {
    common::start_with(&[]).await
}

impl T {
    async fn call(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.send(method, path, cookie, body).await;
        let mut v = r.json();
        if let Some(c) = r.set_cookie() {
            v["_cookie"] = json!(c);
        }
        (r.status, v)
    }

    async fn get(&self, path: &str, cookie: &str) -> Value {
        let (s, v) = self.call("GET", path, cookie, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        v
    }

    async fn admin(&self) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/api/setup",
                "",
                Some(json!({"setup_token": self.setup_token(), "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                            "did": {"number": "+15551230000", "name": "Main"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["_cookie"].as_str().unwrap().to_owned()
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.st.pool)
            .await
            .unwrap();
    }

    /// A connection of its own to the same file, like sipd or twiliod.
    async fn other_process(&self) -> sqlx::SqliteConnection {
        let url = format!("sqlite://{}", self.dir.path().join("gosip.db").display());
        sqlx::SqliteConnection::connect(&url).await.unwrap()
    }

    /// (id, started_at, duration, from_number, disposition) of every CDR.
    async fn cdr_keys(&self) -> Vec<(i64, String, i64, String, String)> {
        sqlx::query_as("SELECT id, started_at, duration, from_number, disposition FROM cdrs")
            .fetch_all(&self.st.pool)
            .await
            .unwrap()
    }
}

fn ids(v: &Value) -> Vec<i64> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {v}"))
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

/// 700 calls with many equal start times, durations and numbers, so the id
/// tie-breaker decides a lot of the order.
async fn seed_cdrs(t: &T) {
    t.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 700) \
         INSERT INTO cdrs (direction, from_number, to_number, started_at, duration, disposition) \
         SELECT CASE i % 3 WHEN 0 THEN 'outbound' ELSE 'inbound' END, \
                '+1555' || printf('%07d', (i * 7919) % 90), '+15551230000', \
                '2025-01-01T00:' || printf('%02d', (i * 13) % 37) || ':00.000Z', \
                (i * 7) % 50, CASE i % 4 WHEN 0 THEN 'missed' WHEN 1 THEN 'voicemail' ELSE 'answered' END \
         FROM n",
    )
    .await;
}

/// The order the API promises: the sort column, ties by id the other way.
fn expected(
    rows: &[(i64, String, i64, String, String)],
    sort: &str,
    desc: bool,
    only: Option<&str>,
) -> Vec<i64> {
    let mut r: Vec<_> = rows
        .iter()
        .filter(|x| only.is_none_or(|d| x.4 == d))
        .cloned()
        .collect();
    r.sort_by(|a, b| {
        let o = match sort {
            "started_at" => a.1.cmp(&b.1),
            "duration" => a.2.cmp(&b.2),
            "from_number" => a.3.cmp(&b.3),
            _ => unreachable!(),
        }
        .then(b.0.cmp(&a.0));
        if desc { o.reverse() } else { o }
    });
    r.into_iter().map(|x| x.0).collect()
}

#[tokio::test]
async fn deep_pages_and_cursor_walks_give_exactly_the_rows_of_the_order() {
    let t = start().await;
    let admin = t.admin().await;
    seed_cdrs(&t).await;
    let rows = t.cdr_keys().await;
    for (q, sort, desc, only) in [
        ("", "started_at", true, None),
        ("sort=started_at&order=asc", "started_at", false, None),
        (
            "sort=duration&order=asc&disposition=missed",
            "duration",
            false,
            Some("missed"),
        ),
        ("sort=from_number&order=desc", "from_number", true, None),
    ] {
        let want = expected(&rows, sort, desc, only);
        let n = want.len() as i64;
        // Deep pages first (nothing remembered yet), then pages around every
        // remembered key, with two page sizes that straddle STRIDE.
        let mut pages: Vec<(i64, i64)> = vec![(7, n / 7), (100, n / 100 + 1), (7, 1)];
        for k in 1..=(n / STRIDE) {
            for per in [7, 100] {
                let first = (k * STRIDE) / per + 1;
                pages.extend([(per, first - 1), (per, first), (per, first + 1)]);
            }
        }
        for (per, page) in pages.into_iter().filter(|p| p.1 >= 1) {
            let r = t
                .get(&format!("/api/cdrs?{q}&per_page={per}&page={page}"), &admin)
                .await;
            let from = ((page - 1) * per).min(n) as usize;
            let to = (page * per).min(n) as usize;
            assert_eq!(ids(&r), want[from..to], "{q} per_page={per} page={page}");
            assert_eq!(r["total"], n, "{q}");
            assert_eq!(
                r["next_cursor"].is_string(),
                (to as i64) < n,
                "{q} page={page}: {r}"
            );
        }
        // The whole list by cursor, 45 at a time.
        let mut got = Vec::new();
        let mut cursor = String::new();
        for _ in 0..100 {
            let r = t
                .get(
                    &format!("/api/cdrs?{q}&per_page=45&cursor={cursor}"),
                    &admin,
                )
                .await;
            got.extend(ids(&r));
            match r["next_cursor"].as_str() {
                Some(c) => cursor = c.to_owned(),
                None => break,
            }
        }
        assert_eq!(got, want, "cursor walk of {q}");
    }
}

#[tokio::test]
async fn a_cursor_walk_neither_repeats_nor_skips_while_new_calls_arrive() {
    let t = start().await;
    let admin = t.admin().await;
    seed_cdrs(&t).await;
    let want = expected(&t.cdr_keys().await, "started_at", true, None);
    let mut other = t.other_process().await;
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = t
            .get(&format!("/api/cdrs?per_page=60&cursor={cursor}"), &admin)
            .await;
        got.extend(ids(&r));
        // A new call lands on top of the list between every two pages.
        sqlx::query(
            "INSERT INTO cdrs (direction, from_number, to_number, started_at, disposition) \
             VALUES ('inbound', '+15550000001', '+15551230000', '2026-01-01T00:00:00.000Z', 'answered')",
        )
        .execute(&mut other)
        .await
        .unwrap();
        match r["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn totals_and_deep_pages_follow_rows_another_process_writes() {
    let t = start().await;
    let admin = t.admin().await;
    seed_cdrs(&t).await;
    let deep = "/api/cdrs?per_page=20&page=30"; // offset 580: seeks from a remembered key
    let before = t.get("/api/cdrs", &admin).await;
    assert_eq!(before["total"], 700);
    assert_eq!(
        ids(&t.get(deep, &admin).await),
        expected(&t.cdr_keys().await, "started_at", true, None)[580..600]
    );
    let missed = t.get("/api/cdrs?disposition=missed", &admin).await["total"]
        .as_i64()
        .unwrap();
    let mut other = t.other_process().await;

    // A new call in the middle of the order: the total grows and the deep
    // page moves by one row.
    let id = sqlx::query(
        "INSERT INTO cdrs (direction, from_number, to_number, started_at, duration, disposition) \
         VALUES ('inbound', '+15550000001', '+15551230000', '2025-01-01T00:20:00.000Z', 3, 'answered')",
    )
    .execute(&mut other)
    .await
    .unwrap()
    .last_insert_rowid();
    assert_eq!(t.get("/api/cdrs", &admin).await["total"], 701);
    assert_eq!(
        ids(&t.get(deep, &admin).await),
        expected(&t.cdr_keys().await, "started_at", true, None)[580..600]
    );

    // An update changes which filter the call matches.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE cdrs SET disposition = 'missed' WHERE id = {id}"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    assert_eq!(
        t.get("/api/cdrs?disposition=missed", &admin).await["total"],
        missed + 1
    );

    // A delete, and a foreign-key SET NULL done by SQLite itself.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM cdrs WHERE id = {id}"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    assert_eq!(t.get("/api/cdrs", &admin).await["total"], 700);
    assert_eq!(
        t.get("/api/cdrs?disposition=missed", &admin).await["total"],
        missed
    );
    let did: i64 = sqlx::query_scalar("SELECT id FROM dids LIMIT 1")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    t.exec(&format!("UPDATE cdrs SET did_id = {did} WHERE id <= 5"))
        .await;
    assert_eq!(
        t.get(&format!("/api/cdrs?did_id={did}"), &admin).await["total"],
        5
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM dids WHERE id = {did}"
    )))
    .execute(&mut other)
    .await
    .unwrap();
    assert_eq!(
        t.get(&format!("/api/cdrs?did_id={did}"), &admin).await["total"],
        0
    );

    // Messages the same way.
    assert_eq!(t.get("/api/messages", &admin).await["total"], 0);
    sqlx::query(
        "INSERT INTO messages (direction, from_number, to_number, body, status) \
         VALUES ('inbound', '+15550000001', '+15551230000', 'hi', 'received')",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let m = t.get("/api/messages?is_read=false", &admin).await;
    assert_eq!((m["total"].as_i64(), ids(&m).len()), (Some(1), 1));
    sqlx::query("UPDATE messages SET is_read = 1")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(
        t.get("/api/messages?is_read=false", &admin).await["total"],
        0
    );
}

#[tokio::test]
async fn pages_past_the_end_and_bad_cursors() {
    let t = start().await;
    let admin = t.admin().await;
    seed_cdrs(&t).await;
    let r = t.get("/api/cdrs?page=1000", &admin).await;
    assert_eq!((r["total"].as_i64(), ids(&r).len()), (Some(700), 0));
    assert_eq!(r["next_cursor"], Value::Null);
    let c = t.get("/api/cdrs?sort=duration", &admin).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    for (q, why) in [
        ("cursor=nonsense", "is not a cursor"),
        (&*format!("cursor={c}&sort=started_at"), "another sort"),
        (
            &*format!("cursor={c}&sort=duration&order=asc"),
            "another sort",
        ),
    ] {
        let (s, v) = t.call("GET", &format!("/api/cdrs?{q}"), &admin, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert_eq!(v["error"]["details"][0]["field"], "cursor", "{q}");
        assert!(
            v["error"]["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{q}: {v}"
        );
    }
    // The same cursor with its own sort continues after the first page.
    let r = t
        .get(&format!("/api/cdrs?sort=duration&cursor={c}"), &admin)
        .await;
    let first = t.get("/api/cdrs?sort=duration&per_page=40", &admin).await;
    assert_eq!(ids(&r), ids(&first)[20..40]);
}

#[tokio::test]
async fn cdrs_list_json_matches_the_typed_form() {
    let t = start().await;
    let admin = t.admin().await;
    t.exec(
        "INSERT INTO cdrs (call_sid, direction, from_number, to_number, did_id, device_id, user_id, started_at, \
           answered_at, ended_at, duration, disposition, recording_url, spam_score, stir_verstat, rule_name, reason) \
         VALUES ('CA0123', 'inbound', '+15550001111', '+15551230000', NULL, NULL, 1, '2025-01-15T14:30:00.000Z', \
           '2025-01-15T14:30:05.000Z', '2025-01-15T14:31:05.000Z', 60, 'answered', 'recordings/a \"b\".wav', 0.25, \
           'TN-Validation-Passed-A', 'Work \"hours\"', 'line\nbreak \\ and ünïcode'), \
           (NULL, 'outbound', '+15551230000', '+15550002222', NULL, NULL, NULL, '2025-01-15T14:00:00.000Z', \
           NULL, NULL, 0, 'failed', '', 3.0, NULL, NULL, NULL), \
           (NULL, 'internal', '101', '102', NULL, NULL, NULL, '2025-01-15T13:00:00.000Z', \
           NULL, NULL, 0, 'missed', NULL, NULL, NULL, NULL, NULL)",
    )
    .await;
    let list = t.get("/api/cdrs", &admin).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for item in items {
        let one = t.get(&format!("/api/cdrs/{}", item["id"]), &admin).await;
        assert_eq!(item, &one);
    }
    assert_eq!(
        items[0]["recording_url"],
        format!("/api/cdrs/{}/recording", items[0]["id"])
    );
    assert_eq!(items[1]["recording_url"], Value::Null);
}

#[tokio::test]
async fn messages_list_json_matches_the_typed_form() {
    let t = start().await;
    let admin = t.admin().await;
    for (i, media) in [
        "[]",
        r#"[{"path": "media/a.png", "content_type": "image/png"}, {"path": "media/b.gif"}]"#,
        r#"["media/old.jpg", 5, {"content_type": 7}]"#,
        r#"{"path": "media/x.png"}"#,
        "not json",
        "",
    ]
    .iter()
    .enumerate()
    {
        t.exec(&format!(
            "INSERT INTO messages (message_sid, direction, from_number, to_number, did_id, user_id, body, \
               media_urls, status, error_code, error_message, created_at, updated_at, is_read) \
             VALUES ({sid}, 'inbound', '+15550001111', '+15551230000', NULL, {user}, 'body {i} \"quoted\"\n', \
               '{media}', 'received', {code}, {msg}, '2025-01-1{i}T10:00:00.000Z', '2025-01-1{i}T10:00:01.000Z', {read})",
            sid = if i == 0 { "'SM1'".to_owned() } else { "NULL".to_owned() },
            user = if i == 1 { "1" } else { "NULL" },
            code = if i == 2 { "30007" } else { "NULL" },
            msg = if i == 2 { "'filtered'" } else { "NULL" },
            media = media.replace('\'', "''"),
            read = i % 2,
        ))
        .await;
    }
    let list = t.get("/api/messages", &admin).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    for item in items {
        let one = t
            .get(&format!("/api/messages/{}", item["id"]), &admin)
            .await;
        assert_eq!(item, &one);
    }
    let with_media = items
        .iter()
        .find(|m| m["body"].as_str().unwrap().starts_with("body 1"))
        .unwrap();
    assert_eq!(with_media["media"].as_array().unwrap().len(), 2);
    assert_eq!(with_media["media"][0]["content_type"], "image/png");
}

#[tokio::test]
async fn the_external_api_pages_its_owners_calls_by_cursor_with_a_bearer_key() {
    let t = start().await;
    let admin = t.admin().await;
    seed_cdrs(&t).await;
    let admin_id = t.get("/api/auth/me", &admin).await["id"].as_i64().unwrap();
    t.exec(&format!(
        "UPDATE cdrs SET user_id = {admin_id} WHERE id % 5 = 0"
    ))
    .await;
    let (s, k) = t
        .call(
            "POST",
            "/api/api-keys",
            &admin,
            Some(json!({"name": "script"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    let bearer = |path: String| {
        let app = t.app.clone();
        let key = key.clone();
        async move {
            let mut req = Request::get(path)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo(std::net::SocketAddr::from((
                    [127, 0, 0, 1],
                    40001,
                ))));
            let res = app.oneshot(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let b = res.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&b).unwrap()
        }
    };
    // Even an admin's key sees only the owner's own calls.
    let mine: Vec<i64> = expected(&t.cdr_keys().await, "started_at", true, None)
        .into_iter()
        .filter(|id| id % 5 == 0)
        .collect();
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = bearer(format!("/api/external/calls?per_page=50&cursor={cursor}")).await;
        assert_eq!(r["total"], mine.len());
        got.extend(ids(&r));
        match r["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(got, mine);
}

#[tokio::test]
async fn list_operations_have_their_own_operation_ids() {
    // Schemathesis links operations by operationId: GET /api/cdrs/{id}/recording
    // once shared "recording" with a webhook and broke its stateful phase.
    let t = start().await;
    let doc = t.get("/api/openapi.json", "").await;
    let mut seen = std::collections::HashMap::<String, Vec<String>>::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                seen.entry(id.to_owned())
                    .or_default()
                    .push(format!("{method} {path}"));
            }
        }
    }
    for (path, method) in [
        ("/api/cdrs", "get"),
        ("/api/cdrs/{id}", "get"),
        ("/api/cdrs/{id}/recording", "get"),
        ("/api/calls", "get"),
        ("/api/messages", "get"),
        ("/api/messages/{id}", "get"),
        ("/api/messages/{id}/read", "put"),
        ("/api/external/calls", "get"),
        ("/api/external/messages", "get"),
        ("/api/external/call", "post"),
        ("/api/external/sms", "post"),
    ] {
        let id = doc["paths"][path][method]["operationId"].as_str().unwrap();
        assert_eq!(seen[id].len(), 1, "{id}: {:?}", seen[id]);
    }
    // And no operationId anywhere in the document is used twice.
    let twice: Vec<_> = seen.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(twice.is_empty(), "operationIds used twice: {twice:?}");
    let params: Vec<&str> = doc["paths"]["/api/cdrs"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        params.contains(&"cursor") && params.contains(&"page"),
        "{params:?}"
    );
}
