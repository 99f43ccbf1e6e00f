//! Accounts and sessions: bcrypt passwords with a policy, server-side
//! sessions (random token, stored as SHA-256), the login lockout, API keys,
//! and the extractors handlers use to learn who is asking.
//!
//! Lockout rule (REQUIREMENTS "Failed Login Lockout"): 5 failed logins for one
//! email within any 60 s window lock that email for 15 minutes from the fifth
//! failure. The rule is computed from `login_attempts`, which holds unknown
//! emails too, so an unknown account answers exactly like a known one; for a
//! known account the lock is also written to `users.locked_until`, which an
//! admin clears (unlock, password reset) by setting it to the moment of the
//! unlock: failures before it no longer count.
//!
//! Every attempt is reserved in `login_attempts` (as a failure) inside one
//! `BEGIN IMMEDIATE` transaction before bcrypt runs, so parallel guesses see
//! each other and the limits hold exactly. One address may fail only
//! [`IP_FAILURES`] times a minute (one fewer than the account's limit), so a
//! single stranger is blocked before they can lock the account; and an
//! address that logged in to the account successfully before is not subject
//! to the account's lock, so strangers together cannot keep its owner out.

pub mod handlers;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, Utc};
use proto::types::{DeviceId, UserId};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::http::error::{ApiError, ApiResult, FieldError};

/// Name of the session cookie.
pub const COOKIE: &str = "gosip_session";
/// Sessions live this long after the last request.
pub const SESSION_TTL: Duration = Duration::from_secs(24 * 3600);
/// bcrypt cost (REQUIREMENTS: bcrypt; 10 keeps a login near 100 ms in release).
pub const BCRYPT_COST: u32 = 10;
/// Failures per email within [`LOCK_WINDOW`] that lock the account.
pub const LOCK_FAILURES: usize = 5;
pub const LOCK_WINDOW: Duration = Duration::from_secs(60);
pub const LOCK_DURATION: Duration = Duration::from_secs(15 * 60);
/// Failures from one address within [`LOCK_WINDOW`] that block the address
/// for [`LOCK_DURATION`]: fewer than [`LOCK_FAILURES`], so the address is
/// blocked before it alone can lock an account.
pub const IP_FAILURES: usize = LOCK_FAILURES - 1;
/// An address that logged in to an account within this long is the
/// owner's, and not held back by that account's lock.
pub const KNOWN_ADDRESS_DAYS: i64 = 30;
/// External API: requests per minute per key.
pub const API_KEY_RATE_PER_MIN: f64 = 120.0;
/// Test notifications a user may send themselves per minute.
pub const USER_TESTS_PER_MINUTE: usize = 5;

/// The most common passwords (top of the public breach lists), refused even
/// when long enough.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "11111111",
    "00000000",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "abc12345",
    "letmein1",
    "trustno1",
    "passw0rd",
    "admin123",
    "administrator",
    "changeme",
    "1q2w3e4r",
    "1qaz2wsx",
    "qwertyui",
    "asdfghjk",
    "zaq12wsx",
    "superman",
    "starwars",
    "whatever",
    "dragon123",
    "master123",
    "monkey123",
    "87654321",
    "12341234",
    "11223344",
    "123123123",
    "gosip123",
];

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "user" => Some(Self::User),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

/// Who is asking, from a session cookie or an API key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// The session row when logged in through the UI.
    pub session_id: Option<i64>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// `None` for admins (no filter), the caller's id otherwise: SQL uses
    /// `(?1 IS NULL OR user_id = ?1)`.
    pub fn scope(&self) -> Option<UserId> {
        if self.is_admin() { None } else { Some(self.id) }
    }

    /// Admins only; users get 403.
    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// An admin (403 for users).
pub struct Admin(pub Caller);

/// A caller authenticated with `Authorization: Bearer <api key>`.
pub struct KeyCaller(pub Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let token = session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        let (caller, extended) = session_caller(st, &token).await?;
        if extended && let Some(r) = parts.extensions.get::<CookieRefresh>() {
            r.set(token);
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Caller as FromRequestParts<AppState>>::from_request_parts(parts, st)
                .await
                .ok(),
        )
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let c = Caller::from_request_parts(parts, st).await?;
        c.require_admin()?;
        Ok(Admin(c))
    }
}

impl FromRequestParts<AppState> for KeyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        let row: Option<(i64, UserId, String, String, String)> = sqlx::query_as(
            "SELECT k.id, u.id, u.email, u.name, u.role FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = ? AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > ?)",
        )
        .bind(sha256_hex(key.as_bytes()))
        .bind(proto::time::now())
        .fetch_optional(&st.pool)
        .await?;
        let Some((key_id, id, email, name, role)) = row else {
            return Err(ApiError::Unauthorized);
        };
        if !st.limits.api_key_allow(key_id) {
            return Err(ApiError::RateLimited(format!(
                "At most {API_KEY_RATE_PER_MIN} requests per minute per API key"
            )));
        }
        if !st.is_read_only() {
            // The request goes on whether or not "last used" could be noted.
            if let Err(e) = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(proto::time::now())
                .bind(key_id)
                .execute(&st.pool)
                .await
            {
                tracing::warn!(key_id, error = %e, "cannot note the API key's last use");
            }
        }
        Ok(KeyCaller(Caller {
            id,
            email,
            name,
            role: Role::parse(&role).unwrap_or(Role::User),
            session_id: None,
        }))
    }
}

/// The session token from the cookie header.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A slot the guard puts on every request: when the session extractor
/// extends the session it leaves the token here, and the guard sends the
/// cookie again with a fresh `Max-Age`, so the browser keeps the cookie as
/// long as the server keeps the session.
#[derive(Clone, Default)]
pub struct CookieRefresh(Arc<Mutex<Option<String>>>);

impl CookieRefresh {
    fn set(&self, token: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(token);
    }

    /// The token of a session extended during this request.
    pub fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The caller of a session token, and whether its expiry was pushed out.
async fn session_caller(st: &AppState, token: &str) -> ApiResult<(Caller, bool)> {
    let now = Utc::now();
    let row: Option<(i64, String, UserId, String, String, String)> = sqlx::query_as(
        "SELECT s.id, s.expires_at, u.id, u.email, u.name, u.role FROM sessions s \
         JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.expires_at > ?",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(proto::time::fmt(now))
    .fetch_optional(&st.pool)
    .await?;
    let Some((sid, expires, id, email, name, role)) = row else {
        return Err(ApiError::Unauthorized);
    };
    // Sliding expiry, written at most every `session_refresh_secs` (5
    // minutes) per session.
    let every = i64::try_from(st.cfg.session_refresh_secs).unwrap_or(i64::MAX);
    let refresh_before = now + chrono::Duration::from_std(SESSION_TTL).unwrap_or_default()
        - chrono::Duration::seconds(every);
    let mut extended = false;
    if proto::time::parse(&expires).is_some_and(|e| e < refresh_before) && !st.is_read_only() {
        extended = sqlx::query("UPDATE sessions SET expires_at = ? WHERE id = ?")
            .bind(session_expiry(now))
            .bind(sid)
            .execute(&st.pool)
            .await
            .is_ok_and(|r| r.rows_affected() > 0);
    }
    let caller = Caller {
        id,
        email,
        name,
        role: Role::parse(&role).unwrap_or(Role::User),
        session_id: Some(sid),
    };
    Ok((caller, extended))
}

/// Expiry of a session refreshed at `now`.
pub fn session_expiry(now: DateTime<Utc>) -> String {
    proto::time::fmt(now + chrono::Duration::from_std(SESSION_TTL).unwrap_or_default())
}

/// Creates a session; returns the raw token for the cookie.
pub async fn create_session(
    pool: &SqlitePool,
    user_id: UserId,
    ip: &str,
    user_agent: &str,
) -> ApiResult<String> {
    let token = random_token(32);
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, ip_address, user_agent) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(user_id)
    .bind(proto::time::now())
    .bind(session_expiry(Utc::now()))
    .bind(ip)
    .bind(user_agent.chars().take(200).collect::<String>())
    .execute(pool)
    .await?;
    Ok(token)
}

/// The `Set-Cookie` value for a session token (empty token = delete).
pub fn session_cookie(token: &str, secure: bool) -> String {
    let max_age = if token.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Whether cookies must be `Secure`: the request came over https (the TLS
/// proxy in front says so in `X-Forwarded-Proto`), or the public URL is
/// https. A forged header can only make the sender's own cookie stricter.
pub fn cookies_secure(st: &AppState, headers: &HeaderMap) -> bool {
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    forwarded_https
        || st
            .settings
            .get()
            .str("system.public_url")
            .trim()
            .to_ascii_lowercase()
            .starts_with("https://")
}

/// `n` random bytes as URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Checks a new password against the policy; `None` when acceptable.
pub fn password_problem(pw: &str) -> Option<&'static str> {
    if pw.chars().count() < 8 {
        return Some("must be at least 8 characters");
    }
    if pw.len() > 72 {
        return Some("must be at most 72 bytes (bcrypt's limit)");
    }
    let lower = pw.to_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Some("is one of the most common passwords; choose another");
    }
    None
}

/// [`password_problem`] as a field error.
pub fn check_password(field: &str, pw: &str) -> ApiResult<()> {
    match password_problem(pw) {
        None => Ok(()),
        Some(m) => Err(ApiError::Validation(vec![FieldError {
            field: field.into(),
            message: m.into(),
        }])),
    }
}

/// bcrypt on a blocking thread.
pub async fn hash_password(pw: &str) -> ApiResult<String> {
    let pw = pw.to_owned();
    tokio::task::spawn_blocking(move || bcrypt::hash(pw, BCRYPT_COST))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(e.into()))
}

/// bcrypt verify on a blocking thread; false on any error.
pub async fn verify_password(pw: &str, hash: &str) -> bool {
    let (pw, hash) = (pw.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// A bcrypt hash of a random secret, verified against for unknown accounts
/// so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| bcrypt::hash(random_token(16), BCRYPT_COST).unwrap_or_default())
}

/// Spends the same bcrypt time as a real check, then fails.
pub async fn verify_unknown(pw: &str) {
    let pw = pw.to_owned();
    let _ = tokio::task::spawn_blocking(move || bcrypt::verify(pw, dummy_hash())).await;
}

/// The outcome of [`reserve_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt is recorded as a failure (row id) until
    /// [`attempt_succeeded`] says otherwise; bcrypt may run.
    Granted(i64),
    /// The address failed too often: no guess.
    AddressBlocked,
    /// The account is locked for this address: no guess.
    AccountLocked,
}

/// Decides whether `ip` may try a password for `email` and, if so, records
/// the attempt before any password is checked. One `BEGIN IMMEDIATE`
/// transaction: parallel attempts queue for the write lock, and each sees
/// the ones before it.
pub async fn reserve_attempt(pool: &SqlitePool, email: &str, ip: &str) -> ApiResult<Attempt> {
    let now = Utc::now();
    let since = proto::time::fmt(
        now - chrono::Duration::from_std(LOCK_DURATION + LOCK_WINDOW).unwrap_or_default()
            - chrono::Duration::seconds(1),
    );
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ip_times: Vec<String> = sqlx::query_scalar(
        "SELECT created_at FROM login_attempts WHERE ip_address = ? AND success = 0 \
         AND created_at > ? ORDER BY created_at",
    )
    .bind(ip)
    .bind(&since)
    .fetch_all(&mut *tx)
    .await?;
    if lock_end_after(&parse_times(&ip_times), IP_FAILURES, now).is_some() {
        return Ok(Attempt::AddressBlocked);
    }
    if account_lock(&mut tx, email, now).await?.is_some()
        && !known_address(&mut tx, email, ip, now).await?
    {
        return Ok(Attempt::AccountLocked);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO login_attempts (email, ip_address, success, created_at) \
         VALUES (?, ?, 0, ?) RETURNING id",
    )
    .bind(email)
    .bind(ip)
    .bind(proto::time::fmt(now))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Attempt::Granted(id))
}

/// Marks a reserved attempt as the successful login it was.
pub async fn attempt_succeeded(pool: &SqlitePool, attempt: i64) -> ApiResult<()> {
    sqlx::query("UPDATE login_attempts SET success = 1 WHERE id = ?")
        .bind(attempt)
        .execute(pool)
        .await?;
    Ok(())
}

/// After a wrong password: whether the account and the address are locked
/// now. A known account's lock is written to `users.locked_until`.
pub async fn after_failure(
    pool: &SqlitePool,
    email: &str,
    ip: &str,
) -> ApiResult<(Option<DateTime<Utc>>, bool)> {
    let now = Utc::now();
    let mut conn = pool.acquire().await?;
    let account = account_lock(&mut conn, email, now).await?;
    if let Some(until) = account {
        sqlx::query(
            "UPDATE users SET locked_until = ?1 WHERE email = ?2 \
             AND (locked_until IS NULL OR locked_until < ?1)",
        )
        .bind(proto::time::fmt(until))
        .bind(email)
        .execute(&mut *conn)
        .await?;
    }
    let since = proto::time::fmt(now - chrono::Duration::from_std(LOCK_WINDOW).unwrap_or_default());
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_attempts WHERE ip_address = ? AND success = 0 AND created_at > ?",
    )
    .bind(ip)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    Ok((account, recent as usize >= IP_FAILURES))
}

/// Ends the lock of user `id`: failures before now no longer count.
pub async fn unlock_user<'e, E: sqlx::SqliteExecutor<'e>>(ex: E, id: UserId) -> ApiResult<u64> {
    Ok(
        sqlx::query("UPDATE users SET locked_until = ? WHERE id = ?")
            .bind(proto::time::now())
            .bind(id)
            .execute(ex)
            .await?
            .rows_affected(),
    )
}

/// When the lock on `email` ends, if it is locked now: the stored lock of a
/// known account, or the rule over the failures since its last unlock.
async fn account_lock(
    conn: &mut sqlx::SqliteConnection,
    email: &str,
    now: DateTime<Utc>,
) -> ApiResult<Option<DateTime<Utc>>> {
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT locked_until FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
    let stored = stored.flatten().and_then(|t| proto::time::parse(&t));
    if let Some(until) = stored.filter(|u| *u > now) {
        return Ok(Some(until));
    }
    let mut since = now
        - chrono::Duration::from_std(LOCK_DURATION + LOCK_WINDOW).unwrap_or_default()
        - chrono::Duration::seconds(1);
    if let Some(cleared) = stored {
        since = since.max(cleared);
    }
    let times: Vec<String> = sqlx::query_scalar(
        "SELECT created_at FROM login_attempts WHERE email = ? AND success = 0 AND created_at > ? \
         ORDER BY created_at",
    )
    .bind(email)
    .bind(proto::time::fmt(since))
    .fetch_all(&mut *conn)
    .await?;
    Ok(lock_end(&parse_times(&times), now))
}

/// Whether `ip` logged in to `email` successfully not long ago.
async fn known_address(
    conn: &mut sqlx::SqliteConnection,
    email: &str,
    ip: &str,
    now: DateTime<Utc>,
) -> ApiResult<bool> {
    let since = proto::time::fmt(now - chrono::Duration::days(KNOWN_ADDRESS_DAYS));
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM login_attempts WHERE email = ? AND ip_address = ? AND success = 1 \
         AND created_at > ?",
    )
    .bind(email)
    .bind(ip)
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n > 0)
}

fn parse_times(times: &[String]) -> Vec<DateTime<Utc>> {
    times.iter().filter_map(|t| proto::time::parse(t)).collect()
}

/// Pure lockout rule over the failure times (ascending).
pub fn lock_end(failures: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    lock_end_after(failures, LOCK_FAILURES, now)
}

/// `n` failures within [`LOCK_WINDOW`] lock for [`LOCK_DURATION`] from the
/// `n`th; the end of the lock in force at `now`, if any.
pub fn lock_end_after(
    failures: &[DateTime<Utc>],
    n: usize,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let window = chrono::Duration::from_std(LOCK_WINDOW).unwrap_or_default();
    let lock = chrono::Duration::from_std(LOCK_DURATION).unwrap_or_default();
    let n = n.max(1);
    let mut end = None;
    for i in (n - 1)..failures.len() {
        if failures[i] - failures[i + 1 - n] <= window {
            end = Some(failures[i] + lock);
        }
    }
    end.filter(|e| *e > now)
}

/// The client address: the peer, or the last `X-Forwarded-For` hop when the
/// peer is `system.trusted_proxy`.
pub fn client_ip(parts_ext: &axum::http::Extensions, headers: &HeaderMap, st: &AppState) -> String {
    let peer = parts_ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let Some(peer) = peer else {
        return String::new();
    };
    let settings = st.settings.get();
    let trusted = settings
        .str("system.trusted_proxy")
        .split(',')
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .any(|ip| ip == peer);
    if trusted
        && let Some(fwd) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return fwd.to_string();
    }
    peer.to_string()
}

/// In-memory throttles, lost on restart; the login limits live in the
/// database.
#[derive(Default)]
pub struct Limits {
    api_buckets: Mutex<HashMap<i64, (Instant, f64)>>,
    /// device id -> (clear SIP password, generated at), kept
    /// [`crate::qr::SECRET_TTL`] for the QR code, then forgotten.
    pub device_secrets: Mutex<HashMap<DeviceId, (String, Instant)>>,
    /// user id -> when they sent themselves a test notification.
    user_tests: Mutex<HashMap<UserId, Vec<Instant>>>,
    /// client address -> its refused provisioning requests (MAC guessing).
    provision_misses: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Refused provisioning requests one address may make per
/// [`PROVISION_WINDOW`] before all of its requests are refused.
pub const PROVISION_MISSES: usize = 20;
pub const PROVISION_WINDOW: Duration = Duration::from_secs(600);

impl Limits {
    /// Whether `ip` may still ask for a provisioning file (it has not
    /// been refused [`PROVISION_MISSES`] times within the window).
    pub fn provision_allowed(&self, ip: &str) -> bool {
        let mut m = self
            .provision_misses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let v = m.entry(ip.to_owned()).or_default();
        v.retain(|t| t.elapsed() < PROVISION_WINDOW);
        v.len() < PROVISION_MISSES
    }

    /// Counts a refused provisioning request from `ip`.
    pub fn provision_missed(&self, ip: &str) {
        let mut m = self
            .provision_misses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.entry(ip.to_owned()).or_default().push(Instant::now());
    }

    /// Token bucket per API key.
    pub fn api_key_allow(&self, key_id: i64) -> bool {
        let mut m = self.api_buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (last, tokens) = m.entry(key_id).or_insert((now, API_KEY_RATE_PER_MIN));
        let refill = now.duration_since(*last).as_secs_f64() * API_KEY_RATE_PER_MIN / 60.0;
        *tokens = (*tokens + refill).min(API_KEY_RATE_PER_MIN);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// At most [`USER_TESTS_PER_MINUTE`] test notifications per user and
    /// minute, so the "send test" button cannot be used to flood a mailbox.
    pub fn user_test_allow(&self, user_id: UserId) -> bool {
        let mut m = self.user_tests.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(user_id).or_default();
        v.retain(|t| t.elapsed() < Duration::from_secs(60));
        if v.len() >= USER_TESTS_PER_MINUTE {
            return false;
        }
        v.push(Instant::now());
        true
    }

    fn sweep(&self) {
        let mut s = self
            .device_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.retain(|_, (_, t)| t.elapsed() < crate::qr::SECRET_TTL);
    }
}

/// Security events are kept this long (the security log's retention).
pub const SECURITY_EVENT_DAYS: i64 = 90;
/// And at most this many rows, the oldest going first.
pub const SECURITY_EVENT_MAX_ROWS: i64 = 100_000;

/// Deletes security events past [`SECURITY_EVENT_DAYS`] and beyond the
/// newest [`SECURITY_EVENT_MAX_ROWS`]. webd owns the security log's UI, so
/// it prunes the table for every daemon that writes to it.
pub async fn prune_security_events(pool: &SqlitePool, now: DateTime<Utc>) -> ApiResult<u64> {
    let old = proto::time::fmt(now - chrono::Duration::days(SECURITY_EVENT_DAYS));
    let a = sqlx::query("DELETE FROM security_events WHERE COALESCE(last_at, created_at) < ?")
        .bind(old)
        .execute(pool)
        .await?
        .rows_affected();
    let b = sqlx::query(
        "DELETE FROM security_events WHERE id <= \
         (SELECT id FROM security_events ORDER BY id DESC LIMIT 1 OFFSET ?)",
    )
    .bind(SECURITY_EVENT_MAX_ROWS)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(a + b)
}

/// Deletes expired sessions, old login attempts and old security events
/// every 10 minutes.
pub async fn sweep(st: AppState, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        st.limits.sweep();
        if st.is_read_only() {
            continue;
        }
        let now = proto::time::now();
        let old = proto::time::fmt(Utc::now() - chrono::Duration::days(30));
        if let Err(e) = sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(&now)
            .execute(&st.pool)
            .await
        {
            tracing::warn!(error = %e, "cannot prune expired sessions");
        }
        if let Err(e) = sqlx::query("DELETE FROM login_attempts WHERE created_at < ?")
            .bind(&old)
            .execute(&st.pool)
            .await
        {
            tracing::warn!(error = %e, "cannot prune old login attempts");
        }
        if let Err(e) = prune_security_events(&st.pool, Utc::now()).await {
            tracing::warn!(error = %e, "cannot prune security events");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_within_a_minute_lock_for_fifteen_minutes() {
        let t0 = Utc::now() - chrono::Duration::seconds(30);
        let f: Vec<_> = (0..5).map(|i| t0 + chrono::Duration::seconds(i)).collect();
        let end = lock_end(&f, Utc::now()).unwrap();
        assert_eq!(end, f[4] + chrono::Duration::minutes(15));
        assert!(lock_end(&f[..4], Utc::now()).is_none());
    }

    #[test]
    fn five_failures_spread_over_more_than_a_minute_do_not_lock() {
        let t0 = Utc::now() - chrono::Duration::minutes(5);
        let f: Vec<_> = (0..5)
            .map(|i| t0 + chrono::Duration::seconds(20 * i))
            .collect();
        assert!(lock_end(&f, Utc::now()).is_none());
    }

    #[test]
    fn a_lock_expires_after_fifteen_minutes() {
        let t0 = Utc::now() - chrono::Duration::minutes(16);
        let f: Vec<_> = (0..5).map(|i| t0 + chrono::Duration::seconds(i)).collect();
        assert!(lock_end(&f, Utc::now()).is_none());
    }

    #[test]
    fn password_policy_refuses_short_long_and_common_passwords() {
        assert!(password_problem("short").is_some());
        assert!(password_problem(&"a".repeat(73)).is_some());
        assert!(password_problem("Password123").is_some());
        assert!(password_problem("correct horse battery").is_none());
    }

    #[test]
    fn dummy_hash_is_a_valid_bcrypt_hash_nobody_matches() {
        assert!(!bcrypt::verify("anything", dummy_hash()).unwrap());
    }

    #[test]
    fn session_cookie_is_httponly_strict_and_secure_only_when_asked() {
        let c = session_cookie("abc", false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && !c.contains("Secure"));
        assert!(session_cookie("abc", true).ends_with("; Secure"));
    }
}
