//! `/api/auth/*` (login, logout, me, password), the caller's own settings
//! (`/api/settings` with the notification preferences of
//! [`super::notify_prefs`], `/api/settings/notify-test`, `/api/dnd`) and API
//! keys (`/api/api-keys`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use proto::ssrf::{ALLOW_KEY, AllowList};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::{self, Caller};
use crate::api::notify_prefs::{self, NotifyPrefs, NotifyPrefsInput};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Check, Id, Ok_, ValidJson, ok, peer_error};
use proto::types::UserId;

/// An account as the API shows it (never the password hash).
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct User {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub email: String,
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
    pub dnd: bool,
    pub created_at: String,
    pub last_login: Option<String>,
    /// When the login lock ends, while the account is locked (too many
    /// failed logins); an admin can unlock it sooner.
    pub locked_until: Option<String>,
}

/// The columns of [`User`]; `locked_until` only while it is in the future
/// (a past value marks the last unlock).
pub const USER_COLS: &str = "id, email, name, role, dnd, created_at, last_login, \
    CASE WHEN locked_until > strftime('%Y-%m-%dT%H:%M:%fZ', 'now') THEN locked_until END AS locked_until";

pub async fn load_user(st: &AppState, id: UserId) -> ApiResult<User> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users WHERE id = ?"
    )))
    .bind(id)
    .fetch_one(&st.pool)
    .await?)
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginReply {
    pub user: User,
    /// The system's country calling code (setting `system.default_country`):
    /// numbers typed without a + are read in it, and the UI shows this
    /// country's numbers in their national form.
    pub country_code: String,
}

impl LoginReply {
    pub fn new(st: &AppState, user: User) -> Self {
        LoginReply {
            user,
            country_code: crate::http::default_country(st),
        }
    }
}

/// The logged-in user, and the system's country for showing numbers.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// As in [`LoginReply`].
    pub country_code: String,
}

/// Log in; sets the session cookie.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = LoginReply), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    ValidJson(b): ValidJson<LoginBody>,
) -> ApiResult<Response> {
    let mut c = Check::new();
    c.len("email", &b.email, 1, 254);
    c.len("password", &b.password, 1, 1024);
    c.done()?;
    let email = b.email.trim().to_lowercase();
    let ip = accounts::client_ip(&ext, &headers, &st);
    // The attempt is written before bcrypt runs: a refused one costs no
    // bcrypt time and gives no guess.
    let attempt = match accounts::reserve_attempt(&st.pool, &email, &ip).await? {
        accounts::Attempt::Granted(id) => id,
        accounts::Attempt::AddressBlocked => {
            tracing::warn!(ip = %ip, email = %email, "web login refused: address blocked");
            return Err(ApiError::RateLimited(
                "Too many failed logins from your address; try again in 15 minutes".into(),
            ));
        }
        accounts::Attempt::AccountLocked => {
            tracing::warn!(ip = %ip, email = %email, "web login refused: account locked");
            return Err(locked());
        }
    };
    let row: Option<(UserId, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = ?")
            .bind(&email)
            .fetch_optional(&st.pool)
            .await?;
    let ok_user = match &row {
        Some((id, hash)) => accounts::verify_password(&b.password, hash)
            .await
            .then_some(*id),
        None => {
            accounts::verify_unknown(&b.password).await;
            None
        }
    };
    let Some(user_id) = ok_user else {
        tracing::warn!(ip = %ip, email = %email, "failed web login");
        let _ =
            proto::db::security_event(&st.pool, "webd", "web_login_failed", &ip, &email, "").await;
        let (account, address) = accounts::after_failure(&st.pool, &email, &ip).await?;
        if account.is_some() {
            tracing::warn!(ip = %ip, email = %email, "web account locked for 15 minutes");
            if let Err(e) = proto::db::security_event(
                &st.pool,
                "webd",
                "web_login_locked",
                &ip,
                &email,
                "5 failed logins within a minute",
            )
            .await
            {
                tracing::warn!(error = %e, "cannot record the security event");
            }
        }
        if address {
            tracing::warn!(ip = %ip, "web logins from this address blocked for 15 minutes");
            if let Err(e) = proto::db::security_event(
                &st.pool,
                "webd",
                "web_login_address_blocked",
                &ip,
                "",
                "4 failed logins within a minute",
            )
            .await
            {
                tracing::warn!(error = %e, "cannot record the security event");
            }
        }
        return Err(ApiError::BadCredentials);
    };
    accounts::attempt_succeeded(&st.pool, attempt).await?;
    sqlx::query("UPDATE users SET last_login = ? WHERE id = ?")
        .bind(proto::time::now())
        .bind(user_id)
        .execute(&st.pool)
        .await?;
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = accounts::create_session(&st.pool, user_id, &ip, ua).await?;
    let user = load_user(&st, user_id).await?;
    Ok((
        [(
            header::SET_COOKIE,
            accounts::session_cookie(&token, accounts::cookies_secure(&st, &headers)),
        )],
        Json(LoginReply::new(&st, user)),
    )
        .into_response())
}

fn locked() -> ApiError {
    ApiError::RateLimited("Too many failed logins for this account; try again in 15 minutes".into())
}

/// Log out: deletes this session and clears the cookie.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 200, body = Ok_), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    caller: Caller,
) -> ApiResult<Response> {
    if let Some(sid) = caller.session_id {
        sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(sid)
            .execute(&st.pool)
            .await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            accounts::session_cookie("", accounts::cookies_secure(&st, &headers)),
        )],
        ok(),
    )
        .into_response())
}

/// The logged-in account.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    Ok(Json(Me {
        user: load_user(&st, caller.id).await?,
        country_code: crate::http::default_country(&st),
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordBody {
    pub current_password: String,
    pub new_password: String,
}

/// Change the own password; every other session of the account ends.
#[utoipa::path(post, path = "/api/auth/password", tag = "auth", request_body = PasswordBody,
    responses((status = 200, body = Ok_), (status = 422, body = ErrorBody)))]
pub async fn password(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<PasswordBody>,
) -> ApiResult<Json<Ok_>> {
    accounts::check_password("new_password", &b.new_password)?;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(caller.id)
        .fetch_one(&st.pool)
        .await?;
    if b.current_password.len() > 1024
        || !accounts::verify_password(&b.current_password, &hash).await
    {
        return Err(ApiError::field(
            "current_password",
            "is not your current password",
        ));
    }
    let new_hash = accounts::hash_password(&b.new_password).await?;
    let mut tx = st.pool.begin().await?;
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(&new_hash)
        .bind(caller.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?")
        .bind(caller.id)
        .bind(caller.session_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ok())
}

/// The caller's own settings.
#[derive(Serialize, ToSchema)]
pub struct MySettings {
    pub name: String,
    pub email: String,
    pub dnd: bool,
    /// What each channel sends and where, as notifyd applies it (the Gotify
    /// token masked).
    pub notify_prefs: NotifyPrefs,
    /// Whether the admin set a system Gotify server, used for pushes when
    /// the user has no server of their own.
    pub system_gotify: bool,
}

#[utoipa::path(get, path = "/api/settings", tag = "settings",
    responses((status = 200, body = MySettings), (status = 401, body = ErrorBody)))]
pub async fn settings_get(
    State(st): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<MySettings>> {
    my_settings(&st, caller.id).await.map(Json)
}

/// The row's name, email, DND and stored `notify_prefs`.
async fn settings_row(st: &AppState, id: UserId) -> ApiResult<(String, String, bool, String)> {
    Ok(sqlx::query_as(
        "SELECT name, email, dnd, CAST(notify_prefs AS TEXT) FROM users WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&st.pool)
    .await?)
}

async fn my_settings(st: &AppState, id: UserId) -> ApiResult<MySettings> {
    let (name, email, dnd, prefs) = settings_row(st, id).await?;
    let s = st.settings.get();
    Ok(MySettings {
        name,
        email,
        dnd,
        notify_prefs: NotifyPrefs::from_stored(&prefs).masked(),
        system_gotify: !s.str("gotify.url").is_empty() && !s.str("gotify.token").is_empty(),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct MySettingsBody {
    pub name: Option<String>,
    pub dnd: Option<bool>,
    /// Changes to the notification preferences; parts left out stay as
    /// they are. Errors name the part, e.g. `notify_prefs.email.address`.
    #[schema(value_type = Option<NotifyPrefsInput>)]
    pub notify_prefs: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Change the own name, DND and notification preferences (only the parts
/// sent; the Gotify token sent back as `********` stays as it is).
#[utoipa::path(put, path = "/api/settings", tag = "settings", request_body = MySettingsBody,
    responses((status = 200, body = MySettings), (status = 422, body = ErrorBody)))]
pub async fn settings_put(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<MySettingsBody>,
) -> ApiResult<Json<MySettings>> {
    let mut c = Check::new();
    if let Some(n) = &b.name {
        c.len("name", n, 0, 100);
    }
    let (name, _, dnd, stored) = settings_row(&st, caller.id).await?;
    let prefs = b.notify_prefs.as_ref().map(|p| {
        let mut prefs = NotifyPrefs::from_stored(&stored);
        prefs.apply(p, &mut c);
        prefs.to_stored()
    });
    if let Some(url) = b
        .notify_prefs
        .as_ref()
        .and_then(notify_prefs::gotify_url_in)
    {
        let allow = AllowList::parse(st.settings.get().str(ALLOW_KEY));
        notify_prefs::check_reachable("notify_prefs.gotify.url", url, &allow, &mut c).await;
    }
    c.done()?;
    sqlx::query("UPDATE users SET name = ?, dnd = ?, notify_prefs = ? WHERE id = ?")
        .bind(b.name.map(|n| n.trim().to_owned()).unwrap_or(name))
        .bind(b.dnd.unwrap_or(dnd))
        .bind(prefs.unwrap_or(stored))
        .bind(caller.id)
        .execute(&st.pool)
        .await?;
    my_settings(&st, caller.id).await.map(Json)
}

#[derive(Deserialize, ToSchema)]
pub struct MyNotifyTest {
    /// `email` (to the address notifications go to) or `gotify` (to the
    /// server pushes go to: the own one, else the system's).
    #[schema(pattern = "^(email|gotify)$")]
    pub channel: String,
}

#[derive(Serialize, ToSchema)]
pub struct MyNotifyTestResult {
    pub ok: bool,
    /// The real error text when it failed.
    pub error: String,
    /// Where it went: the email address, the own Gotify server's URL, or
    /// `system Gotify server`.
    pub target: String,
}

/// Send a test notification to the caller's own saved destination.
#[utoipa::path(post, path = "/api/settings/notify-test", tag = "settings", request_body = MyNotifyTest,
    responses((status = 200, body = MyNotifyTestResult), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn settings_notify_test(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<MyNotifyTest>,
) -> ApiResult<Json<MyNotifyTestResult>> {
    let mut c = Check::new();
    c.one_of("channel", &b.channel, &["email", "gotify"]);
    c.done()?;
    let (_, login, _, stored) = settings_row(&st, caller.id).await?;
    let prefs = NotifyPrefs::from_stored(&stored);
    let target = match b.channel.as_str() {
        "email" if prefs.email.address.is_empty() => login,
        "email" => prefs.email.address.clone(),
        _ if prefs.own_gotify() => prefs.gotify.url.clone(),
        _ => {
            let s = st.settings.get();
            if s.str("gotify.url").is_empty() || s.str("gotify.token").is_empty() {
                return Ok(Json(MyNotifyTestResult {
                    ok: false,
                    error: "No push server: enter your Gotify server URL and app token, \
                            or ask the admin to set up the system one"
                        .into(),
                    target: String::new(),
                }));
            }
            "system Gotify server".into()
        }
    };
    if !st.limits.user_test_allow(caller.id) {
        return Err(ApiError::RateLimited(format!(
            "At most {} test notifications a minute; try again shortly",
            accounts::USER_TESTS_PER_MINUTE
        )));
    }
    let mut cl = proto::pb::notifyd::notifyd_client::NotifydClient::new(st.peers.notifyd.clone());
    let r = cl
        .send_test(proto::pb::notifyd::SendTestRequest {
            target: if b.channel == "email" {
                target.clone()
            } else {
                String::new()
            },
            channel: b.channel,
            user_id: caller.id.0,
        })
        .await
        .map_err(|s| peer_error("notifyd", s))?
        .into_inner();
    Ok(Json(MyNotifyTestResult {
        ok: r.ok,
        error: r.error,
        target,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Dnd {
    /// The caller's own DND (`users.dnd`).
    pub enabled: bool,
    /// System-wide DND (`routing.dnd`).
    pub system: bool,
}

#[derive(Deserialize, ToSchema)]
pub struct DndBody {
    /// New state of the caller's own DND.
    pub enabled: Option<bool>,
    /// New state of the system-wide DND (admins only).
    pub system: Option<bool>,
}

#[utoipa::path(get, path = "/api/dnd", tag = "settings", responses((status = 200, body = Dnd)))]
pub async fn dnd_get(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Dnd>> {
    dnd_state(&st, caller.id).await.map(Json)
}

async fn dnd_state(st: &AppState, id: UserId) -> ApiResult<Dnd> {
    let enabled: bool = sqlx::query_scalar("SELECT dnd FROM users WHERE id = ?")
        .bind(id)
        .fetch_one(&st.pool)
        .await?;
    Ok(Dnd {
        enabled,
        system: st.settings.get().bool("routing.dnd"),
    })
}

/// Toggle DND: own (`enabled`) and, for admins, system-wide (`system`).
#[utoipa::path(put, path = "/api/dnd", tag = "settings", request_body = DndBody,
    responses((status = 200, body = Dnd), (status = 403, body = ErrorBody)))]
pub async fn dnd_put(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<DndBody>,
) -> ApiResult<Json<Dnd>> {
    if b.system.is_some() {
        caller.require_admin()?;
    }
    if let Some(e) = b.enabled {
        sqlx::query("UPDATE users SET dnd = ? WHERE id = ?")
            .bind(e)
            .bind(caller.id)
            .execute(&st.pool)
            .await?;
        // sipd reads DND with the devices: an internal call must see it now.
        crate::api::devices::reload_sipd(&st).await;
    }
    if let Some(s) = b.system {
        proto::settings::store(&st.pool, "routing.dnd", if s { "true" } else { "false" }).await?;
        crate::http::reload_all(&st).await;
    }
    dnd_state(&st, caller.id).await.map(Json)
}

/// An API key as listed (the key itself is shown only when created).
#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// First characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// After this time the key is refused; none = until revoked.
    pub expires_at: Option<String>,
}

const KEY_COLS: &str = "id, name, prefix, created_at, last_used_at, revoked_at, expires_at";

#[derive(Deserialize, ToSchema)]
pub struct ApiKeyBody {
    pub name: String,
    /// Optional expiry (RFC 3339, in the future, at most 5 years ahead).
    #[serde(default)]
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewApiKey {
    /// The key: shown once, stored only as SHA-256.
    pub key: String,
    pub api_key: ApiKey,
}

#[utoipa::path(get, path = "/api/api-keys", tag = "auth", responses((status = 200, body = Vec<ApiKey>)))]
pub async fn keys_list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE user_id = ? AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > ?) ORDER BY id DESC"
        )))
        .bind(caller.id)
        .bind(proto::time::now())
        .fetch_all(&st.pool)
        .await?,
    ))
}

/// Create an API key for the external API (`Authorization: Bearer`).
#[utoipa::path(post, path = "/api/api-keys", tag = "auth", request_body = ApiKeyBody,
    responses((status = 201, body = NewApiKey), (status = 422, body = ErrorBody)))]
pub async fn keys_create(
    State(st): State<AppState>,
    caller: Caller,
    ValidJson(b): ValidJson<ApiKeyBody>,
) -> ApiResult<(StatusCode, Json<NewApiKey>)> {
    let mut c = Check::new();
    c.len("name", b.name.trim(), 1, 100);
    let now = chrono::Utc::now();
    let expires_at = match b
        .expires_at
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(t) => match proto::time::parse(t) {
            Some(t) if t > now && t < now + chrono::Duration::days(5 * 366) => {
                Some(proto::time::fmt(t))
            }
            Some(_) => {
                c.fail(
                    "expires_at",
                    "must be in the future and at most 5 years ahead",
                );
                None
            }
            None => {
                c.fail(
                    "expires_at",
                    "must be an RFC 3339 time such as 2030-01-15T00:00:00Z",
                );
                None
            }
        },
    };
    c.done()?;
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL",
    )
    .bind(caller.id)
    .fetch_one(&st.pool)
    .await?;
    if count >= 20 {
        return Err(ApiError::Conflict(
            "At most 20 active API keys per account".into(),
        ));
    }
    let key = format!("gsk_{}", accounts::random_token(24));
    let prefix: String = key.chars().take(12).collect();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_keys (user_id, name, prefix, key_hash, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(caller.id)
    .bind(b.name.trim())
    .bind(&prefix)
    .bind(accounts::sha256_hex(key.as_bytes()))
    .bind(proto::time::now())
    .bind(expires_at)
    .fetch_one(&st.pool)
    .await?;
    let api_key = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLS} FROM api_keys WHERE id = ?"
    )))
    .bind(id)
    .fetch_one(&st.pool)
    .await?;
    Ok((StatusCode::CREATED, Json(NewApiKey { key, api_key })))
}

/// Revoke an own API key.
#[utoipa::path(delete, path = "/api/api-keys/{id}", tag = "auth", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn keys_delete(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
    )
    .bind(proto::time::now())
    .bind(id)
    .bind(caller.id)
    .execute(&st.pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}
