//! The first-run setup wizard: open only while no admin exists, then closed
//! for good (409). Creates the admin (and logs them in), stores Twilio
//! credentials after twiliod checked them (or skips Twilio), the public URL
//! and the first DID.
//!
//! Whoever reaches a fresh install first must not become its admin: while
//! no admin exists webd holds a random setup token, prints it once in its
//! log and writes it to `<data dir>/setup-token` (0600), and the wizard
//! works only with it. The file goes away when setup is done.

use std::io::Write;
use std::path::Path;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts;
use crate::accounts::handlers::{LoginReply, load_user};
use crate::http::error::{ApiError, ApiResult, ErrorBody, FieldError};
use crate::http::{Check, ValidJson, peer_error, reload_all};
use proto::types::UserId;

#[derive(Serialize, ToSchema)]
pub struct SetupStatus {
    /// True while no admin exists: the wizard is open.
    pub needed: bool,
    pub setup_needed: bool,
}

/// Name of the setup token's file in the data dir.
pub const TOKEN_FILE: &str = "setup-token";

/// While setup is open: loads the setup token from its file (a restart keeps
/// the one already printed) or makes a new one, and says where to use it.
pub async fn prepare_token(st: &AppState) -> anyhow::Result<()> {
    if !needed(st).await? {
        return Ok(());
    }
    let path = st.data_dir.join(TOKEN_FILE);
    let kept = std::fs::read_to_string(&path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| {
            t.len() >= 32
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        });
    let (token, fresh) = match kept {
        Some(t) => (t, false),
        None => (accounts::random_token(32), true),
    };
    // The token is valid before anyone can read it from the file: whoever
    // reads the file and posts the wizard at once must not be refused.
    *st.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
    if fresh {
        write_private(&path, &token)?;
    }
    let port = st.cfg.http_port;
    let host = match st.cfg.http_bind.as_str() {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1".to_owned(),
        h => h.to_owned(),
    };
    // The one place the token is logged: whoever can read webd's log or its
    // data dir runs the machine anyway.
    tracing::warn!(
        file = %path.display(),
        "GoSIP is not set up yet: open http://{host}:{port}/setup?token={token} \
         (or open /setup and enter this setup token: {token})"
    );
    Ok(())
}

/// Writes the token 0600 under a temporary name, then renames it into
/// place: a reader sees no file or the whole token, never a part.
fn write_private(path: &Path, token: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    proto::db::set_mode(&tmp, 0o600)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The setup token was sent and is right (compared in constant time).
fn check_token(st: &AppState, given: Option<&str>) -> ApiResult<()> {
    let want = st
        .setup_token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match (want, given.map(str::trim)) {
        (Some(want), Some(given)) if constant_time_eq(want.as_bytes(), given.as_bytes()) => Ok(()),
        _ => Err(ApiError::SetupToken),
    }
}

/// Equal without an early exit: compares the SHA-256 of both, so neither
/// the position of the first difference nor the length shows in the time.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Setup is done: the token is spent.
fn spend_token(st: &AppState) {
    st.setup_token
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let _ = std::fs::remove_file(st.data_dir.join(TOKEN_FILE));
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

#[derive(Deserialize, ToSchema)]
pub struct TwilioCheckBody {
    pub account_sid: String,
    pub auth_token: String,
    /// The setup token (required unless an admin asks).
    #[serde(default)]
    pub setup_token: Option<String>,
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

/// Check Twilio credentials (while setup is open with the setup token, or
/// as an admin).
#[utoipa::path(post, path = "/api/setup/twilio-check", tag = "setup", request_body = TwilioCheckBody,
    responses((status = 200, body = TwilioCheck), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn twilio_check(
    State(st): State<AppState>,
    caller: Option<accounts::Caller>,
    ValidJson(b): ValidJson<TwilioCheckBody>,
) -> ApiResult<Json<TwilioCheck>> {
    if !caller.is_some_and(|c| c.is_admin()) {
        if !needed(&st).await? {
            return Err(ApiError::Conflict("Setup is already done".into()));
        }
        check_token(&st, b.setup_token.as_deref())?;
    }
    let creds = TwilioCreds {
        account_sid: b.account_sid,
        auth_token: b.auth_token,
    };
    let name = check_twilio(&st, &creds, "").await?;
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
    /// The one-time token webd printed in its log and wrote to
    /// `<data dir>/setup-token`.
    #[serde(default)]
    pub setup_token: Option<String>,
    pub admin: AdminAccount,
    /// Omit to skip Twilio (the system then works for internal calls only).
    pub twilio: Option<TwilioCreds>,
    pub public_url: Option<String>,
    /// IANA time zone for schedules and lists (the wizard offers the
    /// browser's); omitted = UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Country calling code national numbers belong to, e.g. "1" or "44";
    /// omitted = 1. The first number may be typed nationally in it.
    #[serde(default)]
    pub country_code: Option<String>,
    pub did: Option<FirstDid>,
    /// The address phones on the LAN use (setting `sip.local_address`);
    /// omitted = the address each phone reached, as detected.
    #[serde(default)]
    pub local_address: Option<String>,
    /// The public address or host name Twilio reaches sipd at (setting
    /// `sip.public_address`); omitted = learned (STUN, Twilio's calls).
    #[serde(default)]
    pub public_address: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct NetworkBody {
    /// The setup token (required unless an admin asks).
    #[serde(default)]
    pub setup_token: Option<String>,
}

/// What sipd detected, for the wizard to offer.
#[derive(Serialize, ToSchema)]
pub struct NetworkGuess {
    /// The address sipd gives phones on this machine's networks, as sipd
    /// found it (empty while sipd has not said).
    pub lan_address: String,
    /// The public address sipd learned (STUN, Twilio's Via), if any.
    pub public_address: String,
    /// Where the public address came from: `stun`, `trunk_via`, `setting`.
    pub public_source: String,
}

/// The addresses sipd detected (while setup is open with the setup token,
/// or as an admin): the wizard offers them for the phones' LAN address and
/// the public address Twilio uses.
#[utoipa::path(post, path = "/api/setup/network", tag = "setup", request_body = NetworkBody,
    responses((status = 200, body = NetworkGuess), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn network(
    State(st): State<AppState>,
    caller: Option<accounts::Caller>,
    ValidJson(b): ValidJson<NetworkBody>,
) -> ApiResult<Json<NetworkGuess>> {
    if !caller.is_some_and(|c| c.is_admin()) {
        if !needed(&st).await? {
            return Err(ApiError::Conflict("Setup is already done".into()));
        }
        check_token(&st, b.setup_token.as_deref())?;
    }
    // sipd's own view (its table; read only here).
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT scope, address, source FROM sip_addresses")
            .fetch_all(&st.pool)
            .await?;
    let find = |scope: &str| rows.iter().find(|r| r.0 == scope);
    let lan = find("local")
        .or_else(|| rows.iter().find(|r| r.0.starts_with("phones:")))
        .or_else(|| find("default"))
        .map(|r| r.1.clone())
        .unwrap_or_default();
    let (public, source) = find("public")
        .map(|r| (r.1.clone(), r.2.clone()))
        .unwrap_or_default();
    Ok(Json(NetworkGuess {
        lan_address: lan,
        public_address: public,
        public_source: source,
    }))
}

/// A trimmed optional field, `None` when empty.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Run the setup wizard (with the setup token); logs the new admin in.
#[utoipa::path(post, path = "/api/setup", tag = "setup", request_body = SetupBody,
    responses((status = 200, body = LoginReply), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    ValidJson(b): ValidJson<SetupBody>,
) -> ApiResult<Response> {
    if !needed(&st).await? {
        return Err(ApiError::Conflict("Setup is already done".into()));
    }
    if let Err(e) = check_token(&st, b.setup_token.as_deref()) {
        let ip = accounts::client_ip(&ext, &headers, &st);
        tracing::warn!(ip = %ip, "setup refused: missing or wrong setup token");
        let _ =
            proto::db::security_event(&st.pool, "webd", "setup_token_invalid", &ip, "", "").await;
        return Err(e);
    }
    let email = b.admin.email.trim().to_lowercase();
    let settings = wizard_settings(&b);
    let did_number = check_body(&b, &email, &settings)?;
    if let Some(t) = &b.twilio {
        check_twilio(&st, t, "twilio.").await?;
    }
    let hash = accounts::hash_password(&b.admin.password).await?;
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
    let id = UserId(r.last_insert_rowid());
    spend_token(&st);
    if let Some(t) = &b.twilio {
        proto::settings::store(&st.pool, "twilio.account_sid", t.account_sid.trim()).await?;
        proto::settings::store(&st.pool, "twilio.auth_token", t.auth_token.trim()).await?;
    }
    for (_, key, value) in settings {
        if let Some(v) = value {
            proto::settings::store(&st.pool, key, v).await?;
        }
    }
    if let (Some(d), Some(number)) = (&b.did, &did_number) {
        super::dids::create_simple(&st, number, d.name.trim(), id).await?;
    }
    reload_all(&st).await;
    log_in_admin(&st, &ext, &headers, id, &email).await
}

/// The settings the wizard asks for: (body field, setting key, the value
/// given, trimmed).
fn wizard_settings(b: &SetupBody) -> [(&'static str, &'static str, Option<&str>); 5] {
    [
        ("public_url", "system.public_url", given(&b.public_url)),
        ("timezone", "system.timezone", given(&b.timezone)),
        (
            "country_code",
            "system.default_country",
            given(&b.country_code),
        ),
        (
            "local_address",
            "sip.local_address",
            given(&b.local_address),
        ),
        (
            "public_address",
            "sip.public_address",
            given(&b.public_address),
        ),
    ]
}

/// Checks the admin, the settings and the first number, naming each field
/// at fault; the number in E.164 when one is given.
fn check_body(
    b: &SetupBody,
    email: &str,
    settings: &[(&'static str, &'static str, Option<&str>)],
) -> ApiResult<Option<String>> {
    let mut c = Check::new();
    c.email("admin.email", email);
    c.len("admin.name", &b.admin.name, 0, 100);
    if let Some(m) = accounts::password_problem(&b.admin.password) {
        c.fail("admin.password", m);
    }
    for (field, key, value) in settings {
        if let Some(v) = value
            && let Some(m) = super::admin::check_value(key, v)
        {
            c.fail(field, m);
        }
    }
    let country = given(&b.country_code);
    let did_number = match &b.did {
        Some(d) => {
            c.len("did.name", &d.name, 0, 100);
            let cc = country.unwrap_or(
                proto::settings::key("system.default_country").map_or("1", |k| k.default),
            );
            Some(c.number("did.number", d.number.trim(), cc))
        }
        None => None,
    };
    c.done()?;
    Ok(did_number)
}

/// Logs the new admin in: the security log, a session and its cookie.
async fn log_in_admin(
    st: &AppState,
    ext: &axum::http::Extensions,
    headers: &HeaderMap,
    id: UserId,
    email: &str,
) -> ApiResult<Response> {
    let ip = accounts::client_ip(ext, headers, st);
    if let Err(e) =
        proto::db::security_event(&st.pool, "webd", "setup_completed", &ip, email, "").await
    {
        tracing::warn!(error = %e, "cannot record the security event");
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = accounts::create_session(&st.pool, id, &ip, ua).await?;
    let user = load_user(st, id).await?;
    Ok((
        [(
            header::SET_COOKIE,
            accounts::session_cookie(&token, accounts::cookies_secure(st, headers)),
        )],
        Json(LoginReply::new(st, user)),
    )
        .into_response())
}
