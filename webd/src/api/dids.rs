//! `/api/dids`: phone numbers. Admins manage them; users see the numbers
//! they own (to send messages from) and get 404 for the others.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::devices::exists;
use crate::AppState;
use crate::accounts::{Admin, Caller};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{
    Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, default_country, nullable, ok,
    peer_error,
};
use proto::types::{DidId, UserId};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Did {
    #[schema(value_type = i64)]
    pub id: DidId,
    /// E.164.
    pub number: String,
    pub twilio_sid: Option<String>,
    pub name: String,
    pub sms_enabled: bool,
    pub voice_enabled: bool,
    #[schema(value_type = Option<i64>)]
    pub owner_user_id: Option<UserId>,
    pub sms_email_forward: bool,
    pub greeting_text: String,
    pub created_at: String,
}

const COLS: &str = "id, number, twilio_sid, name, sms_enabled, voice_enabled, owner_user_id, \
                    sms_email_forward, greeting_text, created_at";
const SORTS: &[(&str, &str)] = &[
    ("number", "number"),
    ("name", "name"),
    ("created_at", "created_at"),
];

#[utoipa::path(get, path = "/api/dids", tag = "dids", params(PageParams),
    responses((status = 200, body = Page<Did>)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Did>>> {
    let pg = p.resolve(SORTS, "ASC")?;
    let filter = "(?1 IS NULL OR owner_user_id = ?1)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM dids WHERE {filter}"
    )))
    .bind(caller.scope())
    .fetch_one(&st.pool)
    .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM dids WHERE {filter} ORDER BY {} LIMIT ?2 OFFSET ?3",
        pg.order_by
    )))
    .bind(caller.scope())
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

pub async fn load(st: &AppState, caller: &Caller, id: DidId) -> ApiResult<Did> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM dids WHERE id = ?1 AND (?2 IS NULL OR owner_user_id = ?2)"
    )))
    .bind(id)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/dids/{id}", tag = "dids", params(("id" = i64, Path)),
    responses((status = 200, body = Did), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id<DidId>,
) -> ApiResult<Json<Did>> {
    Ok(Json(load(&st, &caller, id).await?))
}

/// A new number, or the changes to one: an absent field keeps its value;
/// `null` clears `twilio_sid` and `owner_user_id` (no owner: "Nobody").
#[derive(Deserialize, ToSchema)]
pub struct DidBody {
    /// E.164, or a national number in `system.default_country`.
    pub number: Option<String>,
    pub name: Option<String>,
    /// Twilio phone number SID (PN + 32 hex), to configure its webhooks;
    /// `null` or `""` unlinks it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub twilio_sid: Option<Option<String>>,
    /// Texts to the number are refused (not stored, not forwarded) when
    /// false, and none can be sent from it.
    pub sms_enabled: Option<bool>,
    /// Calls to the number ring nobody when false: Twilio is told to reject
    /// them.
    pub voice_enabled: Option<bool>,
    /// The user who gets its calls, voicemail and messages; `null` = nobody.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub owner_user_id: Option<Option<UserId>>,
    pub sms_email_forward: Option<bool>,
    pub greeting_text: Option<String>,
}

struct DidValues {
    number: String,
    name: String,
    twilio_sid: Option<String>,
    sms: bool,
    voice: bool,
    owner: Option<UserId>,
    fwd: bool,
    greeting: String,
}

async fn validate(st: &AppState, b: DidBody, cur: Option<&Did>) -> ApiResult<DidValues> {
    let mut v = DidValues {
        number: b
            .number
            .map(|n| n.trim().to_owned())
            .or(cur.map(|c| c.number.clone()))
            .unwrap_or_default(),
        name: b
            .name
            .map(|n| n.trim().to_owned())
            .or(cur.map(|c| c.name.clone()))
            .unwrap_or_default(),
        twilio_sid: match b.twilio_sid {
            Some(Some(s)) if s.trim().is_empty() => None,
            Some(Some(s)) => Some(s.trim().to_owned()),
            Some(None) => None,
            None => cur.and_then(|c| c.twilio_sid.clone()),
        },
        sms: b.sms_enabled.or(cur.map(|c| c.sms_enabled)).unwrap_or(true),
        voice: b
            .voice_enabled
            .or(cur.map(|c| c.voice_enabled))
            .unwrap_or(true),
        owner: match b.owner_user_id {
            Some(o) => o,
            None => cur.and_then(|c| c.owner_user_id),
        },
        fwd: b
            .sms_email_forward
            .or(cur.map(|c| c.sms_email_forward))
            .unwrap_or(false),
        greeting: b
            .greeting_text
            .or(cur.map(|c| c.greeting_text.clone()))
            .unwrap_or_default(),
    };
    let mut c = Check::new();
    v.number = c.number("number", &v.number, &default_country(st));
    c.len("name", &v.name, 0, 100);
    c.len("greeting_text", &v.greeting, 0, 1000);
    if let Some(s) = &v.twilio_sid
        && proto::types::PhoneNumberSid::parse(s).is_err()
    {
        c.fail("twilio_sid", "must be PN followed by 32 hex digits");
    }
    c.done()?;
    if let Some(Some(o)) = b.owner_user_id {
        exists(st, o, "owner_user_id").await?;
    }
    Ok(v)
}

fn unique_number(e: sqlx::Error) -> ApiError {
    match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::field("number", "is already configured"),
        o => o,
    }
}

#[utoipa::path(post, path = "/api/dids", tag = "dids", request_body = DidBody,
    responses((status = 201, body = Did), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    Admin(a): Admin,
    ValidJson(b): ValidJson<DidBody>,
) -> ApiResult<(StatusCode, Json<Did>)> {
    let v = validate(&st, b, None).await?;
    let id = insert(&st, &v).await?;
    // sipd keeps each device's caller ID (its own number or the first one).
    super::devices::reload_sipd(&st).await;
    Ok((StatusCode::CREATED, Json(load(&st, &a, id).await?)))
}

async fn insert(st: &AppState, v: &DidValues) -> ApiResult<DidId> {
    sqlx::query_scalar(
        "INSERT INTO dids (number, name, twilio_sid, sms_enabled, voice_enabled, owner_user_id, \
         sms_email_forward, greeting_text, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&v.number)
    .bind(&v.name)
    .bind(&v.twilio_sid)
    .bind(v.sms)
    .bind(v.voice)
    .bind(v.owner)
    .bind(v.fwd)
    .bind(&v.greeting)
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await
    .map_err(unique_number)
}

/// Creates a DID from the setup wizard.
pub async fn create_simple(
    st: &AppState,
    number: &str,
    name: &str,
    owner: UserId,
) -> ApiResult<DidId> {
    let v = validate(
        st,
        DidBody {
            number: Some(number.into()),
            name: Some(name.into()),
            twilio_sid: None,
            sms_enabled: None,
            voice_enabled: None,
            owner_user_id: Some(Some(owner)),
            sms_email_forward: None,
            greeting_text: None,
        },
        None,
    )
    .await
    .map_err(|e| match e {
        ApiError::Validation(v) => ApiError::Validation(
            v.into_iter()
                .map(|mut f| {
                    f.field = format!("did.{}", f.field);
                    f
                })
                .collect(),
        ),
        o => o,
    })?;
    insert(st, &v).await
}

#[utoipa::path(put, path = "/api/dids/{id}", tag = "dids", params(("id" = i64, Path)), request_body = DidBody,
    responses((status = 200, body = Did), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(st): State<AppState>,
    Admin(a): Admin,
    Id(id): Id<DidId>,
    ValidJson(b): ValidJson<DidBody>,
) -> ApiResult<Json<Did>> {
    let cur = load(&st, &a, id).await?;
    let v = validate(&st, b, Some(&cur)).await?;
    sqlx::query(
        "UPDATE dids SET number = ?, name = ?, twilio_sid = ?, sms_enabled = ?, voice_enabled = ?, \
         owner_user_id = ?, sms_email_forward = ?, greeting_text = ? WHERE id = ?",
    )
    .bind(&v.number)
    .bind(&v.name)
    .bind(&v.twilio_sid)
    .bind(v.sms)
    .bind(v.voice)
    .bind(v.owner)
    .bind(v.fwd)
    .bind(&v.greeting)
    .bind(id)
    .execute(&st.pool)
    .await
    .map_err(unique_number)?;
    super::devices::reload_sipd(&st).await;
    Ok(Json(load(&st, &a, id).await?))
}

#[utoipa::path(delete, path = "/api/dids/{id}", tag = "dids", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    Admin(a): Admin,
    Id(id): Id<DidId>,
) -> ApiResult<Json<Ok_>> {
    load(&st, &a, id).await?;
    sqlx::query("DELETE FROM dids WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    super::devices::reload_sipd(&st).await;
    Ok(ok())
}

#[derive(Serialize, ToSchema)]
pub struct TwilioNumber {
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: String,
    pub voice_url: String,
    pub sms_url: String,
}

/// The account's Twilio numbers (through twiliod), to link as DIDs.
#[utoipa::path(get, path = "/api/twilio/numbers", tag = "dids",
    responses((status = 200, body = Vec<TwilioNumber>), (status = 503, body = ErrorBody)))]
pub async fn twilio_numbers(
    State(st): State<AppState>,
    _a: Admin,
) -> ApiResult<Json<Vec<TwilioNumber>>> {
    if st.settings.get().str("twilio.account_sid").is_empty() {
        return Err(ApiError::Conflict(
            "Set the Twilio Account SID and Auth Token first (System > Settings)".into(),
        ));
    }
    let mut c = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = c
        .list_numbers(proto::pb::twiliod::ListNumbersRequest {})
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    if !r.error.is_empty() {
        return Err(ApiError::Unavailable(format!("Twilio: {}", r.error)));
    }
    Ok(Json(
        r.numbers
            .into_iter()
            .map(|n| TwilioNumber {
                sid: n.sid,
                phone_number: n.phone_number,
                friendly_name: n.friendly_name,
                voice_url: n.voice_url,
                sms_url: n.sms_url,
            })
            .collect(),
    ))
}

/// Points the DID's Twilio number webhooks at this system (through twiliod).
#[utoipa::path(post, path = "/api/dids/{id}/configure", tag = "dids", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn configure(
    State(st): State<AppState>,
    Admin(a): Admin,
    Id(id): Id<DidId>,
) -> ApiResult<Json<Ok_>> {
    let did = load(&st, &a, id).await?;
    let Some(sid) = did.twilio_sid else {
        return Err(ApiError::field(
            "twilio_sid",
            "link the Twilio number first",
        ));
    };
    let mut c = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = c
        .configure_number(proto::pb::twiliod::ConfigureNumberRequest { sid })
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    if !r.ok {
        return Err(ApiError::Conflict(format!("Twilio refused: {}", r.error)));
    }
    Ok(ok())
}
