//! `/api/blocklist`, `/api/caller-lists` (VIP and known callers) and
//! `/api/auto-replies` (admins). Regex patterns are compiled before storing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, default_country, ok};
use proto::types::DidId;

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Block {
    pub id: i64,
    pub pattern: String,
    /// `exact`, `prefix` or `regex`.
    pub pattern_type: String,
    pub reason: String,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/blocklist", tag = "blocklist", params(PageParams),
    responses((status = 200, body = Page<Block>), (status = 403, body = ErrorBody)))]
pub async fn block_list(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Block>>> {
    let pg = p.resolve(
        &[("created_at", "created_at"), ("pattern", "pattern")],
        "DESC",
    )?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM blocklist")
        .fetch_one(&st.pool)
        .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, pattern, pattern_type, reason, created_at FROM blocklist ORDER BY {} LIMIT ? OFFSET ?",
        pg.order_by
    )))
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[derive(Deserialize, ToSchema)]
pub struct NewBlock {
    pub pattern: String,
    /// `exact` (E.164), `prefix` (+ and digits) or `regex`; default exact.
    pub pattern_type: Option<String>,
    #[serde(default)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/blocklist", tag = "blocklist", request_body = NewBlock,
    responses((status = 201, body = Block), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn block_add(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<NewBlock>,
) -> ApiResult<(StatusCode, Json<Block>)> {
    let mut pattern = b.pattern.trim().to_owned();
    let kind = b.pattern_type.unwrap_or_else(|| "exact".into());
    let country = default_country(&st);
    let mut c = Check::new();
    c.one_of("pattern_type", &kind, &["exact", "prefix", "regex"]);
    c.len("reason", &b.reason, 0, 200);
    c.len("pattern", &pattern, 1, 200);
    // Callers arrive in E.164, so numbers and prefixes are stored that way.
    match kind.as_str() {
        "exact" if !pattern.is_empty() => pattern = c.number("pattern", &pattern, &country),
        "prefix" if !pattern.is_empty() => pattern = c.prefix("pattern", &pattern, &country),
        "regex" => {
            if let Err(e) = regex::RegexBuilder::new(&pattern)
                .size_limit(1 << 20)
                .build()
            {
                let first = e.to_string().lines().last().unwrap_or("").trim().to_owned();
                c.fail(
                    "pattern",
                    format!("is not a valid regular expression: {first}"),
                );
            }
        }
        _ => {}
    }
    c.done()?;
    let dup: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM blocklist WHERE pattern = ? AND pattern_type = ?")
            .bind(&pattern)
            .bind(&kind)
            .fetch_one(&st.pool)
            .await?;
    if dup > 0 {
        return Err(ApiError::Conflict("This pattern is already blocked".into()));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO blocklist (pattern, pattern_type, reason, created_at) VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(&pattern)
    .bind(&kind)
    .bind(b.reason.trim())
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await?;
    let row = sqlx::query_as(
        "SELECT id, pattern, pattern_type, reason, created_at FROM blocklist WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&st.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

#[utoipa::path(delete, path = "/api/blocklist/{id}", tag = "blocklist", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn block_delete(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
) -> ApiResult<Json<Ok_>> {
    delete_row(&st, "blocklist", id).await
}

async fn delete_row(st: &AppState, table: &str, id: i64) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE id = ?"
    )))
    .bind(id)
    .execute(&st.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct CallerEntry {
    pub id: i64,
    /// `vip` or `known`.
    pub list: String,
    pub number: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    /// `vip` or `known`.
    #[param(pattern = "^(vip|known)$")]
    pub list: Option<String>,
}

#[utoipa::path(get, path = "/api/caller-lists", tag = "routes", params(PageParams, ListFilter),
    responses((status = 200, body = Page<CallerEntry>), (status = 403, body = ErrorBody)))]
pub async fn callers_list(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(f): ValidQuery<ListFilter>,
) -> ApiResult<Json<Page<CallerEntry>>> {
    let pg = p.resolve(
        &[
            ("created_at", "created_at"),
            ("number", "number"),
            ("name", "name"),
        ],
        "DESC",
    )?;
    let list = f.list.filter(|l| !l.is_empty());
    if let Some(l) = &list {
        let mut c = Check::new();
        c.one_of("list", l, &["vip", "known"]);
        c.done()?;
    }
    let total: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM caller_lists WHERE (?1 IS NULL OR list = ?1)")
            .bind(&list)
            .fetch_one(&st.pool)
            .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, list, number, name, created_at FROM caller_lists WHERE (?1 IS NULL OR list = ?1) \
         ORDER BY {} LIMIT ?2 OFFSET ?3",
        pg.order_by
    )))
    .bind(&list)
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[derive(Deserialize, ToSchema)]
pub struct NewCallerEntry {
    pub list: String,
    pub number: String,
    #[serde(default)]
    pub name: String,
}

#[utoipa::path(post, path = "/api/caller-lists", tag = "routes", request_body = NewCallerEntry,
    responses((status = 201, body = CallerEntry), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn callers_add(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<NewCallerEntry>,
) -> ApiResult<(StatusCode, Json<CallerEntry>)> {
    let mut c = Check::new();
    c.one_of("list", &b.list, &["vip", "known"]);
    let number = c.number("number", &b.number, &default_country(&st));
    c.len("name", &b.name, 0, 100);
    c.done()?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO caller_lists (list, number, name, created_at) VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(&b.list)
    .bind(&number)
    .bind(b.name.trim())
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::field("number", "is already on this list"),
        o => o,
    })?;
    let row =
        sqlx::query_as("SELECT id, list, number, name, created_at FROM caller_lists WHERE id = ?")
            .bind(id)
            .fetch_one(&st.pool)
            .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

#[utoipa::path(delete, path = "/api/caller-lists/{id}", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn callers_delete(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
) -> ApiResult<Json<Ok_>> {
    delete_row(&st, "caller_lists", id).await
}

/// An SMS auto-reply rule. trigger_data: keyword `{"keywords": ["hours"]}`;
/// dnd `{}`; after_hours `{}` or `{"hours": {...}}` (business-hours format).
#[derive(Debug, Serialize, ToSchema)]
pub struct AutoReply {
    pub id: i64,
    /// `null` = every DID.
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    pub trigger_type: String,
    #[schema(value_type = Object)]
    pub trigger_data: Value,
    pub reply_text: String,
    pub enabled: bool,
}

type ArRow = (i64, Option<DidId>, String, String, String, bool);

fn ar(r: ArRow) -> AutoReply {
    AutoReply {
        id: r.0,
        did_id: r.1,
        trigger_type: r.2,
        trigger_data: serde_json::from_str(&r.3).unwrap_or_else(|_| json!({})),
        reply_text: r.4,
        enabled: r.5,
    }
}

const AR_COLS: &str = "id, did_id, trigger_type, trigger_data, reply_text, enabled";

#[utoipa::path(get, path = "/api/auto-replies", tag = "messages", params(PageParams),
    responses((status = 200, body = Page<AutoReply>), (status = 403, body = ErrorBody)))]
pub async fn ar_list(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<AutoReply>>> {
    let pg = p.resolve(&[("id", "id"), ("trigger_type", "trigger_type")], "ASC")?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM auto_replies")
        .fetch_one(&st.pool)
        .await?;
    let rows: Vec<ArRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AR_COLS} FROM auto_replies ORDER BY {} LIMIT ? OFFSET ?",
        pg.order_by
    )))
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(rows.into_iter().map(ar).collect(), total)))
}

async fn ar_load(st: &AppState, id: i64) -> ApiResult<AutoReply> {
    let r: Option<ArRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AR_COLS} FROM auto_replies WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(&st.pool)
    .await?;
    r.map(ar).ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/auto-replies/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = AutoReply), (status = 404, body = ErrorBody)))]
pub async fn ar_get(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
) -> ApiResult<Json<AutoReply>> {
    Ok(Json(ar_load(&st, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct AutoReplyBody {
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    pub trigger_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub trigger_data: Option<Value>,
    pub reply_text: Option<String>,
    pub enabled: Option<bool>,
}

async fn ar_validate(
    st: &AppState,
    b: AutoReplyBody,
    cur: Option<AutoReply>,
) -> ApiResult<AutoReply> {
    let r = AutoReply {
        id: cur.as_ref().map_or(0, |c| c.id),
        did_id: if b.did_id.is_some() {
            b.did_id
        } else {
            cur.as_ref().and_then(|c| c.did_id)
        },
        trigger_type: b
            .trigger_type
            .or(cur.as_ref().map(|c| c.trigger_type.clone()))
            .unwrap_or_default(),
        trigger_data: b
            .trigger_data
            .or(cur.as_ref().map(|c| c.trigger_data.clone()))
            .unwrap_or_else(|| json!({})),
        reply_text: b
            .reply_text
            .or(cur.as_ref().map(|c| c.reply_text.clone()))
            .unwrap_or_default(),
        enabled: b
            .enabled
            .or(cur.as_ref().map(|c| c.enabled))
            .unwrap_or(true),
    };
    let mut c = Check::new();
    c.one_of(
        "trigger_type",
        &r.trigger_type,
        &["dnd", "after_hours", "keyword"],
    );
    c.len("reply_text", r.reply_text.trim(), 1, 1600);
    if !r.trigger_data.is_object() {
        c.fail("trigger_data", "must be an object");
    }
    if r.trigger_type == "keyword" {
        match r.trigger_data.get("keywords").and_then(Value::as_array) {
            Some(k)
                if !k.is_empty()
                    && k.len() <= 50
                    && k.iter().all(|w| {
                        w.as_str()
                            .is_some_and(|w| !w.trim().is_empty() && w.len() <= 50)
                    }) => {}
            _ => c.fail("trigger_data.keywords", "list 1 to 50 keywords"),
        }
    }
    c.done()?;
    if let Some(d) = r.did_id {
        super::devices::exists(st, d, "did_id").await?;
    }
    Ok(r)
}

#[utoipa::path(post, path = "/api/auto-replies", tag = "messages", request_body = AutoReplyBody,
    responses((status = 201, body = AutoReply), (status = 422, body = ErrorBody)))]
pub async fn ar_create(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<AutoReplyBody>,
) -> ApiResult<(StatusCode, Json<AutoReply>)> {
    let r = ar_validate(&st, b, None).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO auto_replies (did_id, trigger_type, trigger_data, reply_text, enabled) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(r.did_id)
    .bind(&r.trigger_type)
    .bind(r.trigger_data.to_string())
    .bind(r.reply_text.trim())
    .bind(r.enabled)
    .fetch_one(&st.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(ar_load(&st, id).await?)))
}

#[utoipa::path(put, path = "/api/auto-replies/{id}", tag = "messages", params(("id" = i64, Path)), request_body = AutoReplyBody,
    responses((status = 200, body = AutoReply), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn ar_update(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
    ValidJson(b): ValidJson<AutoReplyBody>,
) -> ApiResult<Json<AutoReply>> {
    let cur = ar_load(&st, id).await?;
    let r = ar_validate(&st, b, Some(cur)).await?;
    sqlx::query(
        "UPDATE auto_replies SET did_id = ?, trigger_type = ?, trigger_data = ?, reply_text = ?, enabled = ? WHERE id = ?",
    )
    .bind(r.did_id)
    .bind(&r.trigger_type)
    .bind(r.trigger_data.to_string())
    .bind(r.reply_text.trim())
    .bind(r.enabled)
    .bind(id)
    .execute(&st.pool)
    .await?;
    Ok(Json(ar_load(&st, id).await?))
}

#[utoipa::path(delete, path = "/api/auto-replies/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn ar_delete(State(st): State<AppState>, _a: Admin, Id(id): Id) -> ApiResult<Json<Ok_>> {
    delete_row(&st, "auto_replies", id).await
}
