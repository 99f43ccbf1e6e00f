//! `/api/routes`: call routing rules (admins). `condition_data` and
//! `action_data` are validated per type before they are stored:
//! - time: `{"when": "business_hours"|"after_hours"|"weekends"|"holidays"|"custom",
//!   "days": ["mon",..], "start": "HH:MM", "end": "HH:MM"}` (days/start/end for custom)
//! - callerid: `{"match": "vip"|"known"|"numbers"|"prefix"|"anonymous",
//!   "list": "vip"|"known", "numbers": ["+1555..."], "prefix": "+1900"}`
//! - default: `{}`
//! - ring: `{"device_ids": [1, 2], "timeout": 30}`; forward: `{"number": "+1555..."}`;
//!   announcement: `{"text": "..."}`; voicemail, reject: `{}`

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::common::{Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, ok, peer_error};
use crate::AppState;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, ErrorBody};

#[derive(Debug, Serialize, ToSchema)]
pub struct Route {
    pub id: i64,
    /// `null` = every DID.
    pub did_id: Option<i64>,
    pub priority: i64,
    pub name: String,
    pub condition_type: String,
    #[schema(value_type = Object)]
    pub condition_data: Value,
    pub action_type: String,
    #[schema(value_type = Object)]
    pub action_data: Value,
    pub enabled: bool,
    pub created_at: String,
}

type Row = (
    i64,
    Option<i64>,
    i64,
    String,
    String,
    String,
    String,
    String,
    bool,
    String,
);

fn from_row(r: Row) -> Route {
    Route {
        id: r.0,
        did_id: r.1,
        priority: r.2,
        name: r.3,
        condition_type: r.4,
        condition_data: serde_json::from_str(&r.5).unwrap_or_else(|_| json!({})),
        action_type: r.6,
        action_data: serde_json::from_str(&r.7).unwrap_or_else(|_| json!({})),
        enabled: r.8,
        created_at: r.9,
    }
}

const COLS: &str = "id, did_id, priority, name, condition_type, condition_data, action_type, \
                    action_data, enabled, created_at";
const SORTS: &[(&str, &str)] = &[
    ("priority", "priority"),
    ("name", "name"),
    ("created_at", "created_at"),
];

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteFilter {
    /// Only rules of this DID (plus none).
    #[param(value_type = Option<i64>)]
    pub did_id: Option<String>,
}

#[utoipa::path(get, path = "/api/routes", tag = "routes", params(PageParams, RouteFilter),
    responses((status = 200, body = Page<Route>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(f): ValidQuery<RouteFilter>,
) -> ApiResult<Json<Page<Route>>> {
    let pg = p.resolve(SORTS, "ASC")?;
    let did = match f.did_id.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| ApiError::field("did_id", "must be a number"))?,
        ),
    };
    let filter = "(?1 IS NULL OR did_id = ?1)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM routes WHERE {filter}"
    )))
    .bind(did)
    .fetch_one(&st.pool)
    .await?;
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM routes WHERE {filter} ORDER BY {} LIMIT ?2 OFFSET ?3",
        pg.order_by
    )))
    .bind(did)
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(
        pg.wrap(rows.into_iter().map(from_row).collect(), total),
    ))
}

async fn load(st: &AppState, id: i64) -> ApiResult<Route> {
    let r: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM routes WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(&st.pool)
    .await?;
    r.map(from_row).ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, _a: Admin, Id(id): Id) -> ApiResult<Json<Route>> {
    Ok(Json(load(&st, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct RouteBody {
    pub did_id: Option<i64>,
    pub priority: Option<i64>,
    pub name: Option<String>,
    pub condition_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub condition_data: Option<Value>,
    pub action_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub action_data: Option<Value>,
    pub enabled: Option<bool>,
}

const DAYS: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5
        && b[2] == b':'
        && s[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && s[3..].parse::<u8>().is_ok_and(|m| m < 60)
}

/// Validates condition and action data; returns normalized objects.
pub fn check_rule(c: &mut Check, ctype: &str, cdata: &Value, atype: &str, adata: &Value) {
    c.one_of("condition_type", ctype, &["time", "callerid", "default"]);
    c.one_of(
        "action_type",
        atype,
        &["ring", "forward", "voicemail", "announcement", "reject"],
    );
    let empty = Map::new();
    let Some(cd) = cdata.as_object() else {
        c.fail("condition_data", "must be an object");
        return;
    };
    let ad = adata.as_object().unwrap_or_else(|| {
        c.fail("action_data", "must be an object");
        &empty
    });
    let s = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
    match ctype {
        "time" => {
            let when = s(cd, "when").unwrap_or_default();
            c.one_of(
                "condition_data.when",
                &when,
                &[
                    "business_hours",
                    "after_hours",
                    "weekends",
                    "holidays",
                    "custom",
                ],
            );
            if when == "custom" {
                match cd.get("days").and_then(Value::as_array) {
                    Some(d)
                        if !d.is_empty()
                            && d.iter()
                                .all(|x| x.as_str().is_some_and(|x| DAYS.contains(&x))) => {}
                    _ => c.fail("condition_data.days", "pick at least one of mon..sun"),
                }
                for k in ["start", "end"] {
                    if !s(cd, k).is_some_and(|v| hhmm(&v)) {
                        c.fail(&format!("condition_data.{k}"), "must be a time HH:MM");
                    }
                }
            }
        }
        "callerid" => {
            let m = s(cd, "match").unwrap_or_default();
            c.one_of(
                "condition_data.match",
                &m,
                &["vip", "known", "numbers", "prefix", "anonymous"],
            );
            if m == "numbers" {
                match cd.get("numbers").and_then(Value::as_array) {
                    Some(ns) if !ns.is_empty() && ns.len() <= 500 => {
                        for n in ns {
                            if n.as_str()
                                .is_none_or(|n| proto::types::E164::parse(n).is_err())
                            {
                                c.fail(
                                    "condition_data.numbers",
                                    "every number must be E.164, e.g. +15551234567",
                                );
                                break;
                            }
                        }
                    }
                    _ => c.fail("condition_data.numbers", "list 1 to 500 E.164 numbers"),
                }
            }
            if m == "prefix" {
                let p = s(cd, "prefix").unwrap_or_default();
                let digits = p.strip_prefix('+').unwrap_or(&p);
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    c.fail("condition_data.prefix", "must be + and 1 to 15 digits");
                }
            }
        }
        _ => {}
    }
    match atype {
        "ring" => {
            match ad.get("device_ids").and_then(Value::as_array) {
                Some(ids)
                    if !ids.is_empty() && ids.iter().all(|i| i.as_i64().is_some_and(|i| i > 0)) => {
                }
                _ => c.fail("action_data.device_ids", "pick at least one device"),
            }
            if let Some(t) = ad.get("timeout")
                && !t.as_i64().is_some_and(|t| (5..=120).contains(&t))
            {
                c.fail("action_data.timeout", "must be 5 to 120 seconds");
            }
        }
        "forward" if s(ad, "number").is_none_or(|n| proto::types::E164::parse(&n).is_err()) => {
            c.fail(
                "action_data.number",
                "must be an E.164 number such as +15551234567",
            );
        }
        "announcement" => {
            let t = s(ad, "text").unwrap_or_default();
            c.len("action_data.text", t.trim(), 1, 1000);
        }
        _ => {}
    }
}

async fn validate(st: &AppState, b: RouteBody, cur: Option<&Route>) -> ApiResult<Route> {
    let r = Route {
        id: cur.map_or(0, |c| c.id),
        did_id: if b.did_id.is_some() {
            b.did_id
        } else {
            cur.and_then(|c| c.did_id)
        },
        priority: b.priority.or(cur.map(|c| c.priority)).unwrap_or(-1),
        name: b
            .name
            .map(|n| n.trim().to_owned())
            .or(cur.map(|c| c.name.clone()))
            .unwrap_or_default(),
        condition_type: b
            .condition_type
            .or(cur.map(|c| c.condition_type.clone()))
            .unwrap_or_else(|| "default".into()),
        condition_data: b
            .condition_data
            .or(cur.map(|c| c.condition_data.clone()))
            .unwrap_or_else(|| json!({})),
        action_type: b
            .action_type
            .or(cur.map(|c| c.action_type.clone()))
            .unwrap_or_default(),
        action_data: b
            .action_data
            .or(cur.map(|c| c.action_data.clone()))
            .unwrap_or_else(|| json!({})),
        enabled: b.enabled.or(cur.map(|c| c.enabled)).unwrap_or(true),
        created_at: String::new(),
    };
    let mut c = Check::new();
    c.len("name", &r.name, 1, 100);
    if r.priority < -1 || r.priority > 100_000 {
        c.fail("priority", "must be 0 to 100000");
    }
    check_rule(
        &mut c,
        &r.condition_type,
        &r.condition_data,
        &r.action_type,
        &r.action_data,
    );
    c.done()?;
    if let Some(d) = r.did_id {
        super::devices::exists(st, "dids", d, "did_id").await?;
    }
    if let Some(ids) = r.action_data.get("device_ids").and_then(Value::as_array) {
        for i in ids.iter().filter_map(Value::as_i64) {
            super::devices::exists(st, "devices", i, "action_data.device_ids").await?;
        }
    }
    Ok(r)
}

#[utoipa::path(post, path = "/api/routes", tag = "routes", request_body = RouteBody,
    responses((status = 201, body = Route), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<RouteBody>,
) -> ApiResult<(StatusCode, Json<Route>)> {
    let mut r = validate(&st, b, None).await?;
    if r.priority < 0 {
        r.priority = sqlx::query_scalar("SELECT IFNULL(MAX(priority), -1) + 1 FROM routes")
            .fetch_one(&st.pool)
            .await?;
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO routes (did_id, priority, name, condition_type, condition_data, action_type, \
         action_data, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(r.did_id)
    .bind(r.priority)
    .bind(&r.name)
    .bind(&r.condition_type)
    .bind(r.condition_data.to_string())
    .bind(&r.action_type)
    .bind(r.action_data.to_string())
    .bind(r.enabled)
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(load(&st, id).await?)))
}

#[utoipa::path(put, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)), request_body = RouteBody,
    responses((status = 200, body = Route), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
    ValidJson(b): ValidJson<RouteBody>,
) -> ApiResult<Json<Route>> {
    let cur = load(&st, id).await?;
    let r = validate(&st, b, Some(&cur)).await?;
    sqlx::query(
        "UPDATE routes SET did_id = ?, priority = ?, name = ?, condition_type = ?, condition_data = ?, \
         action_type = ?, action_data = ?, enabled = ? WHERE id = ?",
    )
    .bind(r.did_id)
    .bind(r.priority.max(0))
    .bind(&r.name)
    .bind(&r.condition_type)
    .bind(r.condition_data.to_string())
    .bind(&r.action_type)
    .bind(r.action_data.to_string())
    .bind(r.enabled)
    .bind(id)
    .execute(&st.pool)
    .await?;
    Ok(Json(load(&st, id).await?))
}

#[utoipa::path(delete, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn delete(State(st): State<AppState>, _a: Admin, Id(id): Id) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query("DELETE FROM routes WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

#[derive(Deserialize, ToSchema)]
pub struct Reorder {
    /// Route ids in the new order; priority becomes the position (0 first).
    pub ids: Vec<i64>,
}

/// Set the evaluation order of rules.
#[utoipa::path(put, path = "/api/routes/reorder", tag = "routes", request_body = Reorder,
    responses((status = 200, body = Vec<Route>), (status = 422, body = ErrorBody)))]
pub async fn reorder(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<Reorder>,
) -> ApiResult<Json<Vec<Route>>> {
    let mut seen = std::collections::HashSet::new();
    if b.ids.is_empty() || b.ids.len() > 1000 || !b.ids.iter().all(|i| seen.insert(*i)) {
        return Err(ApiError::field("ids", "must list distinct route ids"));
    }
    let mut tx = st.pool.begin().await?;
    for (pos, id) in b.ids.iter().enumerate() {
        let r = sqlx::query("UPDATE routes SET priority = ? WHERE id = ?")
            .bind(pos as i64)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(ApiError::field("ids", format!("route {id} does not exist")));
        }
    }
    tx.commit().await?;
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM routes ORDER BY priority, id"
    )))
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(rows.into_iter().map(from_row).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct TestCall {
    /// The DID called (E.164).
    pub did: String,
    /// The caller (E.164, or empty for anonymous).
    #[serde(default)]
    pub from_number: String,
    /// RFC 3339 time to evaluate at; empty = now.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub spam_score: f64,
}

#[derive(Serialize, ToSchema)]
pub struct TestCallResult {
    pub action: String,
    pub rule: String,
    pub reason: String,
    pub twiml: String,
}

/// "What would happen if ... called now?" through twiliod's rules engine.
#[utoipa::path(post, path = "/api/routes/test", tag = "routes", request_body = TestCall,
    responses((status = 200, body = TestCallResult), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn test_call(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<TestCall>,
) -> ApiResult<Json<TestCallResult>> {
    let mut c = Check::new();
    c.e164("did", &b.did);
    if !b.from_number.is_empty() {
        c.e164("from_number", &b.from_number);
    }
    if !b.at.is_empty() && proto::time::parse(&b.at).is_none() {
        c.fail(
            "at",
            "must be an RFC 3339 time such as 2025-01-15T14:30:00Z",
        );
    }
    if !(0.0..=1.0).contains(&b.spam_score) {
        c.fail("spam_score", "must be 0 to 1");
    }
    c.done()?;
    let mut cl = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = cl
        .test_call(proto::pb::twiliod::TestCallRequest {
            did: b.did,
            from_number: b.from_number,
            at: b.at,
            spam_score: b.spam_score,
        })
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    Ok(Json(TestCallResult {
        action: r.action,
        rule: r.rule,
        reason: r.reason,
        twiml: r.twiml,
    }))
}
