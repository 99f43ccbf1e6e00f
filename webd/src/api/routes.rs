//! `/api/routes`: call routing rules (admins). A rule's condition and
//! action are [`proto::routing`] types, the ones twiliod evaluates: the
//! OpenAPI schema, what is stored and what decides a call are one shape.
//! Values are checked by the types' `validate()`; errors name the field
//! (`condition_data.start`, `action_data.device_ids`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use proto::routing::{Action, Condition};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::http::{Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, ok, peer_error};
use proto::types::{DidId, RouteId};

#[derive(Debug, Serialize, ToSchema)]
pub struct Route {
    #[schema(value_type = i64)]
    pub id: RouteId,
    /// `null` = every DID.
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    pub priority: i64,
    pub name: String,
    /// `condition_type` and `condition_data`.
    #[serde(flatten)]
    pub condition: Condition,
    /// `action_type` and `action_data`.
    #[serde(flatten)]
    pub action: Action,
    pub enabled: bool,
    pub created_at: String,
}

type Row = (
    RouteId,
    Option<DidId>,
    i64,
    String,
    String,
    String,
    String,
    String,
    bool,
    String,
);

/// A stored row as the contract. Rows come only through this API (or the
/// migration that rewrote older shapes), so one that does not parse is a
/// fault an admin must look at, not something to guess around.
fn from_row(r: Row) -> ApiResult<Route> {
    let parse = |ct: &str, cd: &str, at: &str, ad: &str| -> anyhow::Result<(Condition, Action)> {
        let c = Condition::from_parts(ct, &serde_json::from_str::<Value>(cd)?)?;
        let a = Action::from_parts(at, &serde_json::from_str::<Value>(ad)?)?;
        Ok((c, a))
    };
    match parse(&r.4, &r.5, &r.6, &r.7) {
        Ok((condition, action)) => Ok(Route {
            id: r.0,
            did_id: r.1,
            priority: r.2,
            name: r.3,
            condition,
            action,
            enabled: r.8,
            created_at: r.9,
        }),
        Err(why) => {
            tracing::error!(route_id = r.0.0, reason = %why, "stored route is not a valid rule");
            Err(ApiError::Internal(anyhow::anyhow!(
                "route {} is not a valid rule: {why}",
                r.0
            )))
        }
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
                .map(DidId)
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
    Ok(Json(pg.wrap(
        rows.into_iter().map(from_row).collect::<ApiResult<_>>()?,
        total,
    )))
}

async fn load(st: &AppState, id: RouteId) -> ApiResult<Route> {
    let r: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM routes WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(&st.pool)
    .await?;
    from_row(r.ok_or(ApiError::NotFound)?)
}

#[utoipa::path(get, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<RouteId>,
) -> ApiResult<Json<Route>> {
    Ok(Json(load(&st, id).await?))
}

/// A rule as created or replaced. On `PUT` every field may be left out to
/// keep its value; `condition_data` (`action_data`) without
/// `condition_type` (`action_type`) keeps the kind.
#[derive(Deserialize, ToSchema)]
pub struct RouteBody {
    /// `null` = every DID.
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    /// 0 first; left out on create = after the others.
    pub priority: Option<i64>,
    pub name: Option<String>,
    #[serde(flatten)]
    #[schema(inline)]
    pub condition: RuleCondition,
    #[serde(flatten)]
    #[schema(inline)]
    pub action: RuleAction,
    pub enabled: Option<bool>,
}

/// The condition as sent: the kind and its data, checked together into a
/// [`Condition`] so errors can name the field.
#[derive(Deserialize)]
pub struct RuleCondition {
    pub condition_type: Option<String>,
    pub condition_data: Option<Value>,
}

/// The action as sent, checked into an [`Action`].
#[derive(Deserialize)]
pub struct RuleAction {
    pub action_type: Option<String>,
    pub action_data: Option<Value>,
}

// What a client sends is exactly the contract's schema: the raw halves only
// exist to report every bad field at once.
impl utoipa::PartialSchema for RuleCondition {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Condition as utoipa::PartialSchema>::schema()
    }
}
impl ToSchema for RuleCondition {
    fn schemas(
        s: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Condition as ToSchema>::schemas(s)
    }
}
impl utoipa::PartialSchema for RuleAction {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Action as utoipa::PartialSchema>::schema()
    }
}
impl ToSchema for RuleAction {
    fn schemas(
        s: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Action as ToSchema>::schemas(s)
    }
}

/// The body (merged over `cur` on update) as a checked route; every bad
/// field is reported at once.
async fn validate(st: &AppState, b: RouteBody, cur: Option<&Route>) -> ApiResult<Route> {
    let mut errs: Vec<FieldError> = Vec::new();
    let mut push = |e: proto::routing::FieldError| {
        errs.push(FieldError {
            field: e.field,
            message: e.message,
        })
    };
    let cur_c = cur.map(|c| c.condition.to_parts());
    let cur_a = cur.map(|c| c.action.to_parts());
    let (ct, cd) = merge(
        b.condition.condition_type,
        b.condition.condition_data,
        cur_c,
        Some("default"),
    );
    let (at, ad) = merge(b.action.action_type, b.action.action_data, cur_a, None);
    let country = crate::http::default_country(st);
    let condition = match Condition::from_parts(&ct, &cd) {
        Ok(mut c) => {
            c.normalize_numbers(&country);
            c.validate().err().into_iter().flatten().for_each(&mut push);
            Some(c)
        }
        Err(e) => {
            push(e);
            None
        }
    };
    let action = if at.is_empty() {
        push(proto::routing::FieldError {
            field: "action_type".into(),
            message: "is required".into(),
        });
        None
    } else {
        match Action::from_parts(&at, &ad) {
            Ok(mut a) => {
                a.normalize_numbers(&country);
                a.validate().err().into_iter().flatten().for_each(&mut push);
                Some(a)
            }
            Err(e) => {
                push(e);
                None
            }
        }
    };
    let name = b
        .name
        .map(|n| n.trim().to_owned())
        .or(cur.map(|c| c.name.clone()))
        .unwrap_or_default();
    let priority = b.priority.or(cur.map(|c| c.priority)).unwrap_or(-1);
    let mut c = Check(errs);
    c.len("name", &name, 1, 100);
    if !(-1..=100_000).contains(&priority) {
        c.fail("priority", "must be 0 to 100000");
    }
    c.done()?;
    let (Some(condition), Some(action)) = (condition, action) else {
        return Err(ApiError::field("body", "invalid rule"));
    };
    let did_id = b.did_id.or(cur.and_then(|c| c.did_id));
    if let Some(d) = did_id {
        super::devices::exists(st, d, "did_id").await?;
    }
    // Every device rung, menus included, must exist; the error names
    // where (`action_data.options.2.action_data.device_ids`).
    for (field, d) in action.device_refs() {
        super::devices::exists(st, d, &field)
            .await
            .map_err(|_| ApiError::field(&field, format!("device {d} does not exist")))?;
    }
    Ok(Route {
        id: cur.map_or(RouteId(0), |c| c.id),
        did_id,
        priority,
        name,
        condition,
        action,
        enabled: b.enabled.or(cur.map(|c| c.enabled)).unwrap_or(true),
        created_at: String::new(),
    })
}

/// One half of a rule from the body, else from the stored rule: a new kind
/// starts from empty data, data alone keeps the kind.
fn merge(
    kind: Option<String>,
    data: Option<Value>,
    cur: Option<(String, Value)>,
    default_kind: Option<&str>,
) -> (String, Value) {
    let (cur_kind, cur_data) = match cur {
        Some((k, d)) => (Some(k), Some(d)),
        None => (None, None),
    };
    let same_kind = kind.is_none() || kind == cur_kind;
    let kind = kind
        .or(cur_kind)
        .or(default_kind.map(str::to_owned))
        .unwrap_or_default();
    let data = data
        .or(if same_kind { cur_data } else { None })
        .unwrap_or_else(|| json!({}));
    (kind, data)
}

async fn store(st: &AppState, r: &Route, id: Option<RouteId>) -> ApiResult<RouteId> {
    let (ct, cd) = r.condition.to_parts();
    let (at, ad) = r.action.to_parts();
    let id = match id {
        None => {
            sqlx::query_scalar(
                "INSERT INTO routes (did_id, priority, name, condition_type, condition_data, action_type, \
                 action_data, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(r.did_id)
            .bind(r.priority)
            .bind(&r.name)
            .bind(&ct)
            .bind(cd.to_string())
            .bind(&at)
            .bind(ad.to_string())
            .bind(r.enabled)
            .bind(proto::time::now())
            .fetch_one(&st.pool)
            .await?
        }
        Some(id) => {
            sqlx::query(
                "UPDATE routes SET did_id = ?, priority = ?, name = ?, condition_type = ?, condition_data = ?, \
                 action_type = ?, action_data = ?, enabled = ? WHERE id = ?",
            )
            .bind(r.did_id)
            .bind(r.priority.max(0))
            .bind(&r.name)
            .bind(&ct)
            .bind(cd.to_string())
            .bind(&at)
            .bind(ad.to_string())
            .bind(r.enabled)
            .bind(id)
            .execute(&st.pool)
            .await?;
            id
        }
    };
    Ok(id)
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
    let id = store(&st, &r, None).await?;
    Ok((StatusCode::CREATED, Json(load(&st, id).await?)))
}

#[utoipa::path(put, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)), request_body = RouteBody,
    responses((status = 200, body = Route), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<RouteId>,
    ValidJson(b): ValidJson<RouteBody>,
) -> ApiResult<Json<Route>> {
    let cur = load(&st, id).await?;
    let r = validate(&st, b, Some(&cur)).await?;
    store(&st, &r, Some(id)).await?;
    Ok(Json(load(&st, id).await?))
}

#[utoipa::path(delete, path = "/api/routes/{id}", tag = "routes", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<RouteId>,
) -> ApiResult<Json<Ok_>> {
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
    #[schema(value_type = Vec<i64>)]
    pub ids: Vec<RouteId>,
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
    Ok(Json(
        rows.into_iter().map(from_row).collect::<ApiResult<_>>()?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct TestCall {
    /// The DID called (E.164, or national in the default country).
    pub did: String,
    /// The caller as typed (national numbers in the default country), or
    /// empty / a withheld form such as "anonymous".
    #[serde(default)]
    pub from_number: String,
    /// RFC 3339 time to evaluate at; empty = now.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub spam_score: f64,
    /// Keys the caller presses in menus, one per menu, e.g. "21".
    #[serde(default)]
    #[schema(pattern = "^[0-9*#]{0,3}$")]
    pub digits: String,
}

#[derive(Serialize, ToSchema)]
pub struct TestCallResult {
    /// What the call ends up doing (`menu` while it waits for a key).
    pub action: String,
    /// The rule that decided, with the menu keys: `route:5:Main > 2 > 1`.
    pub rule: String,
    pub reason: String,
    /// The TwiML of where the call ends up.
    pub twiml: String,
    /// With `digits`: the menus the caller heard first, one per key.
    pub menu_twiml: Vec<String>,
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
    let country = crate::http::default_country(&st);
    let did = c.number("did", &b.did, &country);
    // A caller as typed ("(555) 867-5309"); anonymous forms go as they are.
    let from_number =
        if b.from_number.is_empty() || !b.from_number.chars().any(|ch| ch.is_ascii_digit()) {
            b.from_number
        } else {
            c.number("from_number", &b.from_number, &country)
        };
    if !b.at.is_empty() && proto::time::parse(&b.at).is_none() {
        c.fail(
            "at",
            "must be an RFC 3339 time such as 2025-01-15T14:30:00Z",
        );
    }
    if !(0.0..=1.0).contains(&b.spam_score) {
        c.fail("spam_score", "must be 0 to 1");
    }
    if b.digits.len() > proto::routing::MAX_MENU_DEPTH
        || !b
            .digits
            .bytes()
            .all(|k| k.is_ascii_digit() || k == b'*' || k == b'#')
    {
        c.fail(
            "digits",
            format!(
                "keys 0-9, * or #, one per menu, {} at most",
                proto::routing::MAX_MENU_DEPTH
            ),
        );
    }
    c.done()?;
    let mut cl = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = cl
        .test_call(proto::pb::twiliod::TestCallRequest {
            did,
            from_number,
            at: b.at,
            spam_score: b.spam_score,
            digits: b.digits,
        })
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    let trunk_password = st.settings.get().str("twilio.trunk_password").to_owned();
    Ok(Json(TestCallResult {
        action: r.action,
        rule: r.rule,
        reason: r.reason,
        twiml: mask_twiml(&r.twiml, &trunk_password),
        menu_twiml: r
            .menu_twiml
            .iter()
            .map(|t| mask_twiml(t, &trunk_password))
            .collect(),
    }))
}

/// The TwiML as the admin may see it: every `password` attribute (the
/// trunk credential of `<Sip>`) and any other appearance of the trunk
/// password replaced by `********`. The real TwiML goes only to Twilio.
pub fn mask_twiml(twiml: &str, trunk_password: &str) -> String {
    static ATTR: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let attr =
        ATTR.get_or_init(|| regex::Regex::new(r#"(\bpassword\s*=\s*)("[^"]*"|'[^']*')"#).ok());
    let mut out = match attr {
        Some(re) => re.replace_all(twiml, r#"${1}"********""#).into_owned(),
        // The pattern is a constant and compiles; without it nothing of
        // the TwiML is shown rather than a secret.
        None => return String::new(),
    };
    if !trunk_password.is_empty() {
        for form in [trunk_password.to_owned(), xml_escape(trunk_password)] {
            out = out.replace(&form, "********");
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod mask_tests {
    use super::mask_twiml;

    #[test]
    fn the_trunk_password_never_leaves_in_test_twiml() {
        let twiml = r#"<Response><Dial><Sip username="twilio" password="p&amp;ss w0rd">sip:+1@203.0.113.5</Sip></Dial><Say>p&amp;ss w0rd</Say></Response>"#;
        let m = mask_twiml(twiml, "p&ss w0rd");
        assert!(!m.contains("p&amp;ss") && !m.contains("w0rd"), "{m}");
        assert!(
            m.contains(r#"username="twilio" password="********""#),
            "{m}"
        );
    }
}
