#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `/api/routes` against the routing contract (`proto::routing`): what the
//! API accepts, stores and returns is that one shape, every bad field is
//! named, and the OpenAPI schema the web UI is checked against is generated
//! from the same types.

use serde_json::{Value, json};

mod common;
use common::Res;

type T = common::Webd;

async fn admin(t: &T) -> String {
    let r = t
        .send(
            "POST",
            "/api/setup",
            "",
            Some(json!({"setup_token": t.setup_token(),
                "admin": {"email": "admin@example.org", "password": "correct horse battery"},
                "did": {"number": "+15551230000", "name": "Main"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    r.cookie()
}

async fn device(t: &T, cookie: &str, name: &str) -> i64 {
    let r = t
        .send("POST", "/api/devices", cookie, Some(json!({"name": name})))
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    r.json()["id"].as_i64().unwrap()
}

fn fields(r: &Res) -> Vec<String> {
    let mut f: Vec<String> = r.json()["error"]["details"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    f.sort();
    f
}

async fn stored(t: &T, id: i64) -> (String, Value, String, Value) {
    let (ct, cd, at, ad): (String, String, String, String) = sqlx::query_as(
        "SELECT condition_type, condition_data, action_type, action_data FROM routes WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&t.st.pool)
    .await
    .unwrap();
    (
        ct,
        serde_json::from_str(&cd).unwrap(),
        at,
        serde_json::from_str(&ad).unwrap(),
    )
}

#[tokio::test]
async fn every_kind_of_rule_is_stored_and_returned_in_the_contract_shape() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let dev = device(&t, &a, "Desk").await;
    let kinds = [
        (
            "time",
            json!({"when": "business_hours"}),
            "ring",
            json!({"device_ids": [dev], "timeout": 20}),
        ),
        (
            "time",
            json!({"when": "after_hours", "holidays": ["2026-12-25"]}),
            "voicemail",
            json!({"greeting": "We are closed"}),
        ),
        ("time", json!({"when": "weekends"}), "voicemail", json!({})),
        (
            "time",
            json!({"when": "holidays"}),
            "announcement",
            json!({"text": "Happy holidays"}),
        ),
        (
            "time",
            json!({"when": "custom", "days": ["sat", "sun"], "start": "18:00", "end": "08:00"}),
            "reject",
            json!({"reason": "rejected"}),
        ),
        (
            "callerid",
            json!({"match": "vip"}),
            "ring",
            json!({"device_ids": [], "owner": true}),
        ),
        (
            "callerid",
            json!({"match": "known", "negate": true}),
            "forward",
            json!({"number": "+15559990000"}),
        ),
        (
            "callerid",
            json!({"match": "unknown"}),
            "reject",
            json!({"reason": "busy"}),
        ),
        (
            "callerid",
            json!({"match": "numbers", "numbers": ["+15551000001"]}),
            "ring",
            json!({"device_ids": [dev], "owner": true}),
        ),
        (
            "callerid",
            json!({"match": "prefix", "prefix": "+1900"}),
            "reject",
            json!({"reason": "busy"}),
        ),
        (
            "callerid",
            json!({"match": "anonymous"}),
            "announcement",
            json!({"text": "Please call with your number shown", "audio": "https://example.com/a.mp3"}),
        ),
        ("default", json!({}), "voicemail", json!({})),
    ];
    for (ct, cd, at, ad) in kinds {
        let body = json!({"name": format!("{ct} {at}"), "condition_type": ct, "condition_data": cd,
                          "action_type": at, "action_data": ad});
        let r = t.send("POST", "/api/routes", &a, Some(body)).await;
        assert_eq!(r.status, 201, "{ct} {cd} {at} {ad}: {}", r.json());
        let j = r.json();
        assert_eq!(
            (
                &j["condition_type"],
                &j["condition_data"],
                &j["action_type"],
                &j["action_data"]
            ),
            (&json!(ct), &cd, &json!(at), &ad)
        );
        let id = j["id"].as_i64().unwrap();
        assert_eq!(stored(&t, id).await, (ct.to_owned(), cd, at.to_owned(), ad));
    }
    let list = t.send("GET", "/api/routes?per_page=100", &a, None).await;
    assert_eq!(list.json()["total"], 12);
}

#[tokio::test]
async fn invalid_rules_are_refused_naming_every_bad_field() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let post = |body: Value| {
        let t = &t;
        let a = a.clone();
        async move { t.send("POST", "/api/routes", &a, Some(body)).await }
    };
    // The shape twiliod used to read: refused, not stored as "ring nobody".
    let r = post(
        json!({"name": "r", "condition_type": "default", "condition_data": {},
                        "action_type": "ring", "action_data": {"devices": [2]}}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(fields(&r), ["action_data.devices"]);
    let r = post(json!({"name": "r", "condition_type": "callerid", "condition_data": {"match": "vip", "list": "vip"},
                        "action_type": "voicemail", "action_data": {}}))
    .await;
    assert_eq!(fields(&r), ["condition_data.list"]);
    // Values: every bad field at once.
    let r = post(json!({"name": "", "condition_type": "time",
                        "condition_data": {"when": "custom", "days": [], "start": "25:00"},
                        "action_type": "ring", "action_data": {"device_ids": [], "timeout": 500}}))
    .await;
    assert_eq!(
        fields(&r),
        [
            "action_data.device_ids",
            "action_data.timeout",
            "condition_data.days",
            "condition_data.end",
            "condition_data.start",
            "name"
        ]
    );
    let r = post(json!({"name": "r", "condition_type": "callerid", "condition_data": {"match": "numbers", "numbers": ["555"]},
                        "action_type": "forward", "action_data": {"number": "12"}}))
    .await;
    assert_eq!(fields(&r), ["action_data.number", "condition_data.numbers"]);
    let r = post(
        json!({"name": "r", "condition_type": "sometimes", "condition_data": {},
                        "action_type": "dance", "action_data": {}}),
    )
    .await;
    assert_eq!(fields(&r), ["action_type", "condition_type"]);
    let r = post(
        json!({"name": "r", "condition_type": "default", "condition_data": {},
                        "action_type": "ring", "action_data": {"device_ids": [999]}}),
    )
    .await;
    assert_eq!(fields(&r), ["action_data.device_ids"]);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM routes")
        .fetch_one(&t.st.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing invalid was stored");
}

#[tokio::test]
async fn an_update_keeps_what_it_does_not_name() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let dev = device(&t, &a, "Desk").await;
    let r = t
        .send(
            "POST",
            "/api/routes",
            &a,
            Some(json!({"name": "Desk", "condition_type": "callerid", "condition_data": {"match": "vip"},
                        "action_type": "ring", "action_data": {"device_ids": [dev]}})),
        )
        .await;
    let id = r.json()["id"].as_i64().unwrap();
    let path = format!("/api/routes/{id}");
    let r = t
        .send("PUT", &path, &a, Some(json!({"enabled": false})))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(
        stored(&t, id).await,
        (
            "callerid".into(),
            json!({"match": "vip"}),
            "ring".into(),
            json!({"device_ids": [dev]})
        )
    );
    // New data for the same kind.
    let r = t
        .send(
            "PUT",
            &path,
            &a,
            Some(json!({"action_data": {"device_ids": [dev], "timeout": 45}})),
        )
        .await;
    assert_eq!(
        r.json()["action_data"],
        json!({"device_ids": [dev], "timeout": 45})
    );
    // A new kind does not inherit the old kind's data.
    let r = t
        .send("PUT", &path, &a, Some(json!({"action_type": "forward"})))
        .await;
    assert_eq!(fields(&r), ["action_data.number"]);
    let r = t
        .send("PUT", &path, &a, Some(json!({"condition_type": "default"})))
        .await;
    assert_eq!(r.status, 200, "{}", r.json());
    assert_eq!(r.json()["condition_data"], json!({}));
}

/// The web UI's tests check its rule payloads against this snapshot of the
/// OpenAPI request schema, so the snapshot must be the generated schema.
#[test]
fn the_web_ui_schema_snapshot_is_the_openapi_route_body() {
    let doc = serde_json::to_value(webd::api::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let mut out = serde_json::Map::new();
    collect(
        &json!({"$ref": "#/components/schemas/RouteBody"}),
        schemas,
        &mut out,
    );
    let want =
        serde_json::to_string_pretty(&json!({"root": "RouteBody", "schemas": out})).unwrap() + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../web-ui/src/views/admin/route-schema.json"
    );
    if std::env::var_os("UPDATE_ROUTE_SCHEMA").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "web-ui/src/views/admin/route-schema.json differs from the OpenAPI RouteBody; \
         regenerate: UPDATE_ROUTE_SCHEMA=1 cargo test -p webd --test routes"
    );
    // The contract the UI writes, named in the document.
    let ring = &out["RingAction"]["properties"];
    assert!(ring.get("device_ids").is_some() && ring.get("devices").is_none());
    let matches: Vec<&str> = out["CallerMatch"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(matches.contains(&"anonymous"), "{matches:?}");
}

/// Every schema reachable from `v`.
fn collect(v: &Value, all: &Value, out: &mut serde_json::Map<String, Value>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                && !out.contains_key(name)
            {
                let s = all[name].clone();
                assert!(!s.is_null(), "dangling $ref {name}");
                out.insert(name.to_owned(), s.clone());
                collect(&s, all, out);
            }
            for x in m.values() {
                collect(x, all, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, all, out)),
        _ => {}
    }
}

#[tokio::test]
async fn numbers_in_rules_are_taken_as_people_type_them_and_stored_in_e164() {
    let t = common::start_with(&[]).await;
    let a = admin(&t).await;
    let r = t
        .send(
            "POST",
            "/api/routes",
            &a,
            Some(json!({"name": "Family to my mobile",
                "condition_type": "callerid",
                "condition_data": {"match": "numbers", "numbers": ["(555) 867-5309", "+44 20 7946 0018"]},
                "action_type": "forward", "action_data": {"number": "555.123.4567"}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());
    let (_, cond, _, action) = stored(&t, r.json()["id"].as_i64().unwrap()).await;
    assert_eq!(cond["numbers"], json!(["+15558675309", "+442079460018"]));
    assert_eq!(action["number"], "+15551234567");
    // Not a number in this country: named, not guessed.
    let r = t
        .send(
            "POST",
            "/api/routes",
            &a,
            Some(json!({"name": "x", "action_type": "forward", "action_data": {"number": "555-1234"}})),
        )
        .await;
    assert_eq!(fields(&r), ["action_data.number"]);
}
