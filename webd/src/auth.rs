//! Accounts and sessions: bcrypt passwords with a policy, server-side
//! sessions (random token, stored as SHA-256), the login lockout, API keys,
//! and the extractors handlers use to learn who is asking.
//!
//! Lockout rule (REQUIREMENTS "Failed Login Lockout"): 5 failed logins for one
//! email within any 60 s window lock that email for 15 minutes from the fifth
//! failure. The rule is computed from `login_attempts`, which holds unknown
//! emails too, so an unknown account answers exactly like a known one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::error::{ApiError, ApiResult, FieldError};

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
    pub id: i64,
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
    pub fn scope(&self) -> Option<i64> {
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
        let caller = session_caller(st, &token).await?;
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
        let row: Option<(i64, i64, String, String, String)> = sqlx::query_as(
            "SELECT k.id, u.id, u.email, u.name, u.role FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = ? AND k.revoked_at IS NULL",
        )
        .bind(sha256_hex(key.as_bytes()))
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
            let _ = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                .bind(proto::time::now())
                .bind(key_id)
                .execute(&st.pool)
                .await;
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

async fn session_caller(st: &AppState, token: &str) -> ApiResult<Caller> {
    let now = Utc::now();
    let row: Option<(i64, String, i64, String, String, String)> = sqlx::query_as(
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
    // Sliding expiry, written at most every 5 minutes per session.
    let refresh_before = now + chrono::Duration::from_std(SESSION_TTL).unwrap_or_default()
        - chrono::Duration::minutes(5);
    if proto::time::parse(&expires).is_some_and(|e| e < refresh_before) && !st.is_read_only() {
        let _ = sqlx::query("UPDATE sessions SET expires_at = ? WHERE id = ?")
            .bind(session_expiry(now))
            .bind(sid)
            .execute(&st.pool)
            .await;
    }
    Ok(Caller {
        id,
        email,
        name,
        role: Role::parse(&role).unwrap_or(Role::User),
        session_id: Some(sid),
    })
}

/// Expiry of a session refreshed at `now`.
pub fn session_expiry(now: DateTime<Utc>) -> String {
    proto::time::fmt(now + chrono::Duration::from_std(SESSION_TTL).unwrap_or_default())
}

/// Creates a session; returns the raw token for the cookie.
pub async fn create_session(
    pool: &SqlitePool,
    user_id: i64,
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

/// Whether cookies must be `Secure`: the public URL is https.
pub fn cookies_secure(st: &AppState) -> bool {
    st.settings
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

/// When the lock on `email` ends, if it is locked now.
pub async fn locked_until(pool: &SqlitePool, email: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let now = Utc::now();
    let since = now
        - chrono::Duration::from_std(LOCK_DURATION + LOCK_WINDOW).unwrap_or_default()
        - chrono::Duration::seconds(1);
    let times: Vec<String> = sqlx::query_scalar(
        "SELECT created_at FROM login_attempts WHERE email = ? AND success = 0 AND created_at > ? \
         ORDER BY created_at",
    )
    .bind(email)
    .bind(proto::time::fmt(since))
    .fetch_all(pool)
    .await?;
    let times: Vec<DateTime<Utc>> = times.iter().filter_map(|t| proto::time::parse(t)).collect();
    Ok(lock_end(&times, now))
}

/// Pure lockout rule over the failure times (ascending).
pub fn lock_end(failures: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let window = chrono::Duration::from_std(LOCK_WINDOW).unwrap_or_default();
    let lock = chrono::Duration::from_std(LOCK_DURATION).unwrap_or_default();
    let mut end = None;
    for i in (LOCK_FAILURES - 1)..failures.len() {
        if failures[i] - failures[i + 1 - LOCK_FAILURES] <= window {
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

/// In-memory throttles. Lost on restart, which only resets the slow-down;
/// the account lockout lives in the database.
#[derive(Default)]
pub struct Limits {
    failed_by_ip: Mutex<HashMap<String, Vec<Instant>>>,
    api_buckets: Mutex<HashMap<i64, (Instant, f64)>>,
    /// device id -> (clear SIP password, generated at), kept
    /// [`crate::qr::SECRET_TTL`] for the QR code, then forgotten.
    pub device_secrets: Mutex<HashMap<i64, (String, Instant)>>,
    /// user id -> when they sent themselves a test notification.
    user_tests: Mutex<HashMap<i64, Vec<Instant>>>,
}

impl Limits {
    /// Failed logins from `ip` in the last 15 minutes.
    pub fn ip_failures(&self, ip: &str) -> usize {
        let mut m = self.failed_by_ip.lock().unwrap_or_else(|e| e.into_inner());
        let v = m.entry(ip.to_owned()).or_default();
        v.retain(|t| t.elapsed() < LOCK_DURATION);
        v.len()
    }

    pub fn ip_failed(&self, ip: &str) {
        let mut m = self.failed_by_ip.lock().unwrap_or_else(|e| e.into_inner());
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
    pub fn user_test_allow(&self, user_id: i64) -> bool {
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
        let mut m = self.failed_by_ip.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, v| {
            v.retain(|t| t.elapsed() < LOCK_DURATION);
            !v.is_empty()
        });
        drop(m);
        let mut s = self
            .device_secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        s.retain(|_, (_, t)| t.elapsed() < crate::qr::SECRET_TTL);
    }
}

/// Deletes expired sessions and old login attempts every 10 minutes.
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
        let _ = sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(&now)
            .execute(&st.pool)
            .await;
        let _ = sqlx::query("DELETE FROM login_attempts WHERE created_at < ?")
            .bind(&old)
            .execute(&st.pool)
            .await;
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
