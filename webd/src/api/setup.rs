//! The first-run setup wizard: open only while no admin exists, then closed
//! for good (409). Creates the admin (and logs them in), stores Twilio
//! credentials after twiliod checked them (or skips Twilio), the public URL
//! and the first DID.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{LoginReply, load_user};
use super::common::{Check, ValidJson, peer_error, reload_all};
use crate::AppState;
use crate::auth;
use crate::error::{ApiError, ApiResult, ErrorBody, FieldError};

#[derive(Serialize, ToSchema)]
pub struct SetupStatus {
    /// True while no admin exists: the wizard is open.
    pub needed: bool,
    pub setup_needed: bool,
}

async fn needed(st: &AppState) -> ApiResult<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
        .fetch_one(&st.pool)
        .await?;
    Ok(n == 0)
}

#[utoipa::path(get, path = "/api/setup/status", tag = "setup", responses((status = 200, body = SetupStatus)))]
pub async fn status(State(st): State<AppState>) -> ApiResult<Json<SetupStatus>> {
    let n = needed(&st).await?;
    Ok(Json(SetupStatus {
        needed: n,
        setup_needed: n,
    }))
}

/// Same as `/api/setup/status`.
#[utoipa::path(get, path = "/api/setup", tag = "setup", responses((status = 200, body = SetupStatus)))]
pub async fn status_alias(st: State<AppState>) -> ApiResult<Json<SetupStatus>> {
    status(st).await
}

#[derive(Deserialize, ToSchema)]
pub struct TwilioCreds {
    pub account_sid: String,
    pub auth_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct TwilioCheck {
    pub ok: bool,
    pub friendly_name: String,
}

async fn check_twilio(st: &AppState, t: &TwilioCreds, prefix: &str) -> ApiResult<String> {
    let f = |n: &str| format!("{prefix}{n}");
    let mut c = Check::new();
    if proto::types::AccountSid::parse(t.account_sid.trim()).is_err() {
        c.fail(&f("account_sid"), "must be AC followed by 32 hex digits");
    }
    c.len(&f("auth_token"), t.auth_token.trim(), 1, 200);
    c.done()?;
    let mut cl = proto::pb::twiliod::twiliod_client::TwiliodClient::new(st.peers.twiliod.clone());
    let r = cl
        .check_credentials(proto::pb::twiliod::CheckCredentialsRequest {
            account_sid: t.account_sid.trim().into(),
            auth_token: t.auth_token.trim().into(),
        })
        .await
        .map_err(|s| peer_error("twiliod", s))?
        .into_inner();
    if !r.ok {
        return Err(ApiError::Validation(vec![FieldError {
            field: f("auth_token"),
            message: if r.error.is_empty() {
                "Twilio refused these credentials".into()
            } else {
                format!("Twilio refused these credentials: {}", r.error)
            },
        }]));
    }
    Ok(r.friendly_name)
}

/// Check Twilio credentials (only while setup is open, or as an admin).
#[utoipa::path(post, path = "/api/setup/twilio-check", tag = "setup", request_body = TwilioCreds,
    responses((status = 200, body = TwilioCheck), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn twilio_check(
    State(st): State<AppState>,
    caller: Option<auth::Caller>,
    ValidJson(b): ValidJson<TwilioCreds>,
) -> ApiResult<Json<TwilioCheck>> {
    if !needed(&st).await? && !caller.is_some_and(|c| c.is_admin()) {
        return Err(ApiError::Conflict("Setup is already done".into()));
    }
    let name = check_twilio(&st, &b, "").await?;
    Ok(Json(TwilioCheck {
        ok: true,
        friendly_name: name,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct AdminAccount {
    pub email: String,
    #[serde(default)]
    pub name: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct FirstDid {
    pub number: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct SetupBody {
    pub admin: AdminAccount,
    /// Omit to skip Twilio (the system then works for internal calls only).
    pub twilio: Option<TwilioCreds>,
    pub public_url: Option<String>,
    pub did: Option<FirstDid>,
}

/// Run the setup wizard; logs the new admin in.
#[utoipa::path(post, path = "/api/setup", tag = "setup", request_body = SetupBody,
    responses((status = 200, body = LoginReply), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    ValidJson(b): ValidJson<SetupBody>,
) -> ApiResult<Response> {
    if !needed(&st).await? {
        return Err(ApiError::Conflict("Setup is already done".into()));
    }
    let email = b.admin.email.trim().to_lowercase();
    let mut c = Check::new();
    c.email("admin.email", &email);
    c.len("admin.name", &b.admin.name, 0, 100);
    if let Some(m) = auth::password_problem(&b.admin.password) {
        c.fail("admin.password", m);
    }
    let public_url = b
        .public_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    if let Some(u) = &public_url
        && let Some(m) = super::admin::check_value("system.public_url", u)
    {
        c.fail("public_url", m);
    }
    if let Some(d) = &b.did {
        c.e164("did.number", d.number.trim());
        c.len("did.name", &d.name, 0, 100);
    }
    c.done()?;
    if let Some(t) = &b.twilio {
        check_twilio(&st, t, "twilio.").await?;
    }
    let hash = auth::hash_password(&b.admin.password).await?;
    // Atomic: two wizards racing create one admin.
    let r = sqlx::query(
        "INSERT INTO users (email, name, password_hash, role, created_at) \
         SELECT ?, ?, ?, 'admin', ? WHERE NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
    )
    .bind(&email)
    .bind(b.admin.name.trim())
    .bind(hash)
    .bind(proto::time::now())
    .execute(&st.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::Conflict("Setup is already done".into()));
    }
    let id = r.last_insert_rowid();
    if let Some(t) = &b.twilio {
        proto::settings::store(&st.pool, "twilio.account_sid", t.account_sid.trim()).await?;
        proto::settings::store(&st.pool, "twilio.auth_token", t.auth_token.trim()).await?;
    }
    if let Some(u) = &public_url {
        proto::settings::store(&st.pool, "system.public_url", u).await?;
    }
    if let Some(d) = &b.did {
        super::dids::create_simple(&st, d.number.trim(), d.name.trim(), id).await?;
    }
    reload_all(&st).await;
    let ip = auth::client_ip(&ext, &headers, &st);
    let _ = proto::db::security_event(&st.pool, "webd", "setup_completed", &ip, &email, "").await;
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth::create_session(&st.pool, id, &ip, ua).await?;
    let user = load_user(&st, id).await?;
    Ok((
        [(
            header::SET_COOKIE,
            auth::session_cookie(&token, auth::cookies_secure(&st)),
        )],
        Json(LoginReply { user }),
    )
        .into_response())
}
