#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Routes stored in either of the two shapes used before `proto::routing`
//! (the web UI's and the one twiliod read) load as the typed rule they meant
//! after the migration, and rows already in the typed shape are untouched.

use proto::routing::{
    Action, AnnouncementAction, CallerIdCondition, CallerMatch, Condition, RejectAction,
    RejectReason, RingAction, VoicemailAction,
};
use proto::types::DeviceId;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

/// The last migration before the one under test.
const BEFORE: i64 = 309;

async fn pool_before_the_migration() -> (tempfile::TempDir, sqlx::SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("gosip.db"))
        .create_if_missing(true)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .unwrap();
    proto::db::MIGRATOR.run_to(BEFORE, &pool).await.unwrap();
    (dir, pool)
}

async fn insert(pool: &sqlx::SqlitePool, ct: &str, cd: &str, at: &str, ad: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO routes (name, condition_type, condition_data, action_type, action_data) \
         VALUES ('r', ?, ?, ?, ?) RETURNING id",
    )
    .bind(ct)
    .bind(cd)
    .bind(at)
    .bind(ad)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn load(pool: &sqlx::SqlitePool, id: i64) -> (Condition, Action) {
    let (ct, cd, at, ad): (String, String, String, String) = sqlx::query_as(
        "SELECT condition_type, condition_data, action_type, action_data FROM routes WHERE id = ?",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    let c = Condition::from_parts(&ct, &serde_json::from_str(&cd).unwrap())
        .unwrap_or_else(|e| panic!("route {id} condition {cd}: {e}"));
    let a = Action::from_parts(&at, &serde_json::from_str(&ad).unwrap())
        .unwrap_or_else(|e| panic!("route {id} action {ad}: {e}"));
    assert_eq!(c.validate(), Ok(()), "route {id} {cd}");
    assert_eq!(a.validate(), Ok(()), "route {id} {ad}");
    (c, a)
}

fn caller(m: CallerMatch, numbers: &[&str], prefix: Option<&str>, negate: bool) -> Condition {
    Condition::CallerId(CallerIdCondition {
        matches: m,
        numbers: numbers.iter().map(|n| n.to_string()).collect(),
        prefix: prefix.map(str::to_owned),
        negate,
    })
}

fn ring(ids: &[i64], owner: bool, timeout: Option<u32>) -> Action {
    Action::Ring(RingAction {
        device_ids: ids.iter().copied().map(DeviceId).collect(),
        owner,
        timeout,
    })
}

#[tokio::test]
async fn both_old_shapes_load_as_the_typed_rule_they_meant() {
    let (_dir, pool) = pool_before_the_migration().await;
    let vm = Action::Voicemail(VoicemailAction::default());
    // (condition_type, condition_data, action_type, action_data, expected)
    let rows: Vec<(&str, &str, &str, &str, Condition, Action)> = vec![
        // The web UI / API shape.
        (
            "callerid",
            r#"{"match":"vip","list":"vip"}"#,
            "ring",
            r#"{"device_ids":[2],"timeout":30}"#,
            caller(CallerMatch::Vip, &[], None, false),
            ring(&[2], false, Some(30)),
        ),
        (
            "callerid",
            r#"{"match":"anonymous"}"#,
            "reject",
            "{}",
            caller(CallerMatch::Anonymous, &[], None, false),
            Action::Reject(RejectAction {
                reason: RejectReason::Busy,
            }),
        ),
        (
            "callerid",
            r#"{"match":"numbers","numbers":["+15551000001"]}"#,
            "voicemail",
            "{}",
            caller(CallerMatch::Numbers, &["+15551000001"], None, false),
            vm.clone(),
        ),
        // twiliod's shape.
        (
            "callerid",
            r#"{"list":"known","negate":true}"#,
            "ring",
            r#"{"devices":[5,6]}"#,
            caller(CallerMatch::Known, &[], None, true),
            ring(&[5, 6], false, None),
        ),
        (
            "callerid",
            r#"{"numbers":["+15551000002"]}"#,
            "ring",
            "{}",
            caller(CallerMatch::Numbers, &["+15551000002"], None, false),
            ring(&[], true, None),
        ),
        (
            "callerid",
            r#"{"prefix":"+1900"}"#,
            "ring",
            r#"{"devices":[]}"#,
            caller(CallerMatch::Prefix, &[], Some("+1900"), false),
            ring(&[], true, None),
        ),
        (
            "callerid",
            r#"{"list":"unknown"}"#,
            "reject",
            r#"{"reason":"nope"}"#,
            caller(CallerMatch::Unknown, &[], None, false),
            Action::Reject(RejectAction {
                reason: RejectReason::Busy,
            }),
        ),
        (
            "time",
            r#"{"when":"weekend"}"#,
            "voicemail",
            r#"{"greeting":""}"#,
            Condition::from_parts("time", &json!({"when": "weekends"})).unwrap(),
            vm.clone(),
        ),
        (
            "time",
            r#"{"when":"holiday","holidays":["2026-12-25"]}"#,
            "announcement",
            r#"{"text":"Closed","audio":""}"#,
            Condition::from_parts(
                "time",
                &json!({"when": "holidays", "holidays": ["2026-12-25"]}),
            )
            .unwrap(),
            Action::Announcement(AnnouncementAction {
                text: "Closed".into(),
                audio: None,
            }),
        ),
        (
            "time",
            r#"{"when":"custom","days":["sat"],"start":"18:00","end":"08:00"}"#,
            "reject",
            r#"{"reason":"rejected"}"#,
            Condition::from_parts(
                "time",
                &json!({"when": "custom", "days": ["sat"], "start": "18:00", "end": "08:00"}),
            )
            .unwrap(),
            Action::Reject(RejectAction {
                reason: RejectReason::Rejected,
            }),
        ),
        (
            "default",
            "{}",
            "forward",
            r#"{"number":"+15559990000"}"#,
            Condition::from_parts("default", &json!({})).unwrap(),
            Action::from_parts("forward", &json!({"number": "+15559990000"})).unwrap(),
        ),
    ];
    let mut ids = vec![];
    for (ct, cd, at, ad, ..) in &rows {
        ids.push(insert(&pool, ct, cd, at, ad).await);
    }
    // Not JSON at all: left for twiliod to report, and the migration still runs.
    let broken = insert(&pool, "time", "not json", "ring", "[").await;

    proto::db::MIGRATOR.run(&pool).await.unwrap();

    for (id, (_, cd, _, ad, want_c, want_a)) in ids.iter().zip(&rows) {
        let (c, a) = load(&pool, *id).await;
        assert_eq!(&c, want_c, "route {id} was {cd}");
        assert_eq!(&a, want_a, "route {id} was {ad}");
    }
    let (cd, ad): (String, String) =
        sqlx::query_as("SELECT condition_data, action_data FROM routes WHERE id = ?")
            .bind(broken)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((cd.as_str(), ad.as_str()), ("not json", "["));
}

#[tokio::test]
async fn rows_already_in_the_typed_shape_are_left_as_they_are() {
    let (_dir, pool) = pool_before_the_migration().await;
    let typed = [
        (
            "callerid",
            json!({"match": "prefix", "prefix": "+1555", "negate": true}),
            "ring",
            json!({"device_ids": [], "owner": true, "timeout": 20}),
        ),
        (
            "time",
            json!({"when": "business_hours", "hours": {"mon": ["09:00", "17:00"]}}),
            "ring",
            json!({"device_ids": [3, 4]}),
        ),
        ("default", json!({}), "voicemail", json!({"greeting": "Hi"})),
    ];
    let mut ids = vec![];
    for (ct, cd, at, ad) in &typed {
        ids.push(insert(&pool, ct, &cd.to_string(), at, &ad.to_string()).await);
    }
    proto::db::MIGRATOR.run(&pool).await.unwrap();
    for (id, (ct, cd, at, ad)) in ids.iter().zip(&typed) {
        let (c, a) = load(&pool, *id).await;
        assert_eq!(c.to_parts(), (ct.to_string(), cd.clone()));
        assert_eq!(a.to_parts(), (at.to_string(), ad.clone()));
    }
}
