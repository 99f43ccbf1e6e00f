//! The external API for scripts and webhook consumers:
//! `Authorization: Bearer <api key>`, always scoped to the key owner's own
//! data (even an admin's key), rate limited per key, no cookies, no CSRF.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cdrs::{Cdr, CdrFilter};
use super::common::{
    Check, CursorPage, CursorParams, JsonPage, PageParams, ValidJson, ValidQuery, peer_error,
};
use super::messages::{Message, MessageFilter, SendBody};
use crate::AppState;
use crate::auth::{Caller, KeyCaller, Role};
use crate::error::{ApiError, ApiResult, ErrorBody};

fn owner_scope(k: KeyCaller) -> Caller {
    let mut c = k.0;
    c.role = Role::User;
    c
}

#[utoipa::path(get, path = "/api/external/calls", tag = "external", operation_id = "external_calls", params(PageParams, CursorParams, CdrFilter),
    security(("bearer" = [])),
    responses((status = 200, body = CursorPage<Cdr>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn calls(
    st: State<AppState>,
    k: KeyCaller,
    p: ValidQuery<PageParams>,
    c: ValidQuery<CursorParams>,
    f: ValidQuery<CdrFilter>,
) -> ApiResult<JsonPage> {
    super::cdrs::list(st, owner_scope(k), p, c, f).await
}

#[utoipa::path(get, path = "/api/external/messages", tag = "external", operation_id = "external_messages", params(PageParams, CursorParams, MessageFilter),
    security(("bearer" = [])),
    responses((status = 200, body = CursorPage<Message>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn messages(
    st: State<AppState>,
    k: KeyCaller,
    p: ValidQuery<PageParams>,
    c: ValidQuery<CursorParams>,
    f: ValidQuery<MessageFilter>,
) -> ApiResult<JsonPage> {
    super::messages::list(st, owner_scope(k), p, c, f).await
}

#[derive(Deserialize, ToSchema)]
pub struct ClickToCall {
    /// Number to call: E.164, or a national number in the system's default
    /// country.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub to: String,
    /// Own device that rings first; default: the owner's first device.
    #[schema(minimum = 1)]
    pub device_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CallStarted {
    pub call_id: String,
}

/// Click-to-call: rings the owner's device, then dials `to` (sipd Originate).
#[utoipa::path(post, path = "/api/external/call", tag = "external", operation_id = "external_call", request_body = ClickToCall,
    security(("bearer" = [])),
    responses((status = 202, body = CallStarted), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn call(
    State(st): State<AppState>,
    k: KeyCaller,
    ValidJson(b): ValidJson<ClickToCall>,
) -> ApiResult<(StatusCode, Json<CallStarted>)> {
    let caller = owner_scope(k);
    let country = st.settings.get().str("system.default_country").to_owned();
    let to = proto::types::E164::normalize(&b.to, &country);
    let mut c = Check::new();
    if to.is_err() {
        c.fail("to", "must be a phone number, e.g. +15551234567");
    }
    c.done()?;
    let device: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE user_id = ?1 AND (?2 IS NULL OR id = ?2) ORDER BY id LIMIT 1",
    )
    .bind(caller.id)
    .bind(b.device_id)
    .fetch_optional(&st.pool)
    .await?;
    let Some(device_id) = device else {
        return Err(ApiError::field("device_id", "is not one of your devices"));
    };
    let mut cl = proto::pb::sipd::sipd_client::SipdClient::new(st.peers.sipd.clone());
    let r = cl
        .originate(proto::pb::sipd::OriginateRequest {
            call_id: String::new(),
            device_id,
            to_number: to.map(|t| t.to_string()).unwrap_or_default(),
        })
        .await
        .map_err(|s| match s.code() {
            // Premium or international numbers the admin has not allowed.
            tonic::Code::PermissionDenied => ApiError::field("to", s.message()),
            _ => peer_error("sipd", s),
        })?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(CallStarted { call_id: r.call_id }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct SmsQueued {
    pub message_id: i64,
}

/// Send an SMS from one of the owner's numbers (twiliod's durable queue).
#[utoipa::path(post, path = "/api/external/sms", tag = "external", operation_id = "external_sms", request_body = SendBody,
    security(("bearer" = [])),
    responses((status = 202, body = SmsQueued), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sms(
    State(st): State<AppState>,
    k: KeyCaller,
    ValidJson(b): ValidJson<SendBody>,
) -> ApiResult<(StatusCode, Json<SmsQueued>)> {
    let caller = owner_scope(k);
    let id = super::messages::send_message(&st, &caller, b, vec![]).await?;
    Ok((StatusCode::ACCEPTED, Json(SmsQueued { message_id: id })))
}
