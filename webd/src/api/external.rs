//! The external API for scripts and webhook consumers:
//! `Authorization: Bearer <api key>`, rate limited per key, no cookies, no
//! CSRF. The lists hold the key owner's own calls and messages (even for an
//! admin's key); acting (sending a text, placing a call) follows the owner's
//! role: a user's key uses the user's own numbers and devices, an admin's key
//! any of them, as the admin can in the UI.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::cdrs::{Cdr, CdrFilter};
use super::messages::{Message, MessageFilter, SendBody};
use crate::AppState;
use crate::accounts::{Caller, KeyCaller, Role};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{
    Check, CursorPage, CursorParams, JsonPage, PageParams, ValidJson, ValidQuery, default_country,
    peer_error,
};
use proto::types::DeviceId;

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
    pub to: String,
    /// Device that rings first: one of the owner's (any, for an admin's
    /// key); default: the owner's first device.
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub device_id: Option<DeviceId>,
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
    let caller = k.0;
    let mut c = Check::new();
    let to = c.number("to", &b.to, &default_country(&st));
    c.done()?;
    // Without a device_id: the key owner's first device; an admin may name
    // any device.
    let owner = match (caller.is_admin(), b.device_id) {
        (true, Some(_)) => None,
        _ => Some(caller.id),
    };
    let device: Option<DeviceId> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR id = ?2) \
         ORDER BY id LIMIT 1",
    )
    .bind(owner)
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
            device_id: device_id.0,
            to_number: to,
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

/// Send an SMS from one of the owner's numbers, or any number for an
/// admin's key (twiliod's durable queue).
#[utoipa::path(post, path = "/api/external/sms", tag = "external", operation_id = "external_sms", request_body = SendBody,
    security(("bearer" = [])),
    responses((status = 202, body = SmsQueued), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sms(
    State(st): State<AppState>,
    k: KeyCaller,
    ValidJson(b): ValidJson<SendBody>,
) -> ApiResult<(StatusCode, Json<SmsQueued>)> {
    let id = super::messages::send_message(&st, &k.0, b, vec![]).await?;
    Ok((StatusCode::ACCEPTED, Json(SmsQueued { message_id: id })))
}
