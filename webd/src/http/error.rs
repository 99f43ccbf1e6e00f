//! The one error type of the API. It renders the spec's error JSON:
//! `{"error":{"code","message","details":[{"field","message"}]}}`, with codes
//! in SCREAMING_SNAKE_CASE and no internals in 5xx answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Woken on every unexpected database error so the checker can run
/// `quick_check` and switch to read-only mode if the file is damaged.
pub static DB_ERROR_SIGNAL: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One field at fault.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every way an API call can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// One or more fields are invalid (422).
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Not logged in, or the session expired (401).
    #[error("authentication required")]
    Unauthorized,
    /// Wrong email or password (401); the same for unknown accounts.
    #[error("bad credentials")]
    BadCredentials,
    /// Logged in but not allowed (403).
    #[error("forbidden")]
    Forbidden,
    /// The setup wizard was called without the setup token webd printed (403).
    #[error("setup token")]
    SetupToken,
    /// A state-changing request without `X-Requested-With` or a matching Origin (403).
    #[error("csrf")]
    Csrf,
    /// The request is malformed beyond field validation (400).
    #[error("{0}")]
    BadRequest(String),
    /// The request is valid but cannot be done in the current state (409 with a reason).
    #[error("{0}")]
    Gone(String),
    /// No such endpoint under `/api/` (404).
    #[error("no route")]
    NoRoute,
    /// No such object, or not yours (404).
    #[error("not found")]
    NotFound,
    /// The object conflicts with an existing one (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts (429).
    #[error("{0}")]
    RateLimited(String),
    /// The system is read-only or a daemon is down (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected (500); the cause is logged, not returned.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation error on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Some fields are invalid".into(),
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Log in first".into(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "You are not allowed to do this".into(),
            ),
            Self::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "Wrong email or password".into(),
            ),
            Self::SetupToken => (
                StatusCode::FORBIDDEN,
                "SETUP_TOKEN_INVALID",
                "The setup token is missing or wrong: webd printed it in its log at start \
                 and wrote it to the file setup-token in its data dir"
                    .into(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "CSRF_REJECTED",
                "Send X-Requested-With or a matching Origin with this request".into(),
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, "BAD_REQUEST", m.clone()),
            Self::Gone(m) => (StatusCode::GONE, "GONE", m.clone()),
            Self::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found".into()),
            Self::NoRoute => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "No such API endpoint".into(),
            ),
            Self::Conflict(m) => (StatusCode::CONFLICT, "CONFLICT", m.clone()),
            Self::RateLimited(m) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", m.clone()),
            Self::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                m.clone(),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "Something went wrong; see the server log".into(),
            ),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = e {
            return Self::NotFound;
        }
        if let Some(db) = e.as_database_error() {
            if db.is_unique_violation() {
                return Self::Conflict("An item with these values already exists".into());
            }
            // SQLITE_READONLY / SQLITE_CORRUPT: the system is in read-only mode.
            if db.is_foreign_key_violation() {
                return Self::field("id", "refers to an object that does not exist");
            }
            if let Some(code) = db.code()
                && matches!(code.as_ref(), "8" | "11" | "26")
            {
                DB_ERROR_SIGNAL.notify_one();
                return Self::Unavailable("The database is read-only; restore a backup".into());
            }
        }
        if !matches!(e, sqlx::Error::PoolTimedOut) {
            DB_ERROR_SIGNAL.notify_one();
        }
        Self::Internal(e.into())
    }
}

/// The error JSON, as documented in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInner,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorInner {
    /// SCREAMING_SNAKE_CASE, e.g. VALIDATION_ERROR.
    pub code: String,
    pub message: String,
    pub details: Vec<FieldError>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    details: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if let Self::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let details: &[FieldError] = match &self {
            Self::Validation(d) => d,
            _ => &[],
        };
        (
            status,
            Json(Body {
                error: Inner {
                    code,
                    message,
                    details,
                },
            }),
        )
            .into_response()
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
