//! `/api/users`: admins manage accounts, roles and password resets.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::handlers::{USER_COLS, User, load_user};
use crate::accounts::{self, Admin};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, ok};
use proto::types::UserId;

const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("email", "email"),
    ("name", "name"),
    ("role", "role"),
    ("last_login", "last_login"),
];

#[utoipa::path(get, path = "/api/users", tag = "users", params(PageParams),
    responses((status = 200, body = Page<User>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    let pg = p.resolve(SORTS, "ASC")?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&st.pool)
        .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLS} FROM users ORDER BY {} LIMIT ? OFFSET ?",
        pg.order_by
    )))
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    pub email: String,
    #[serde(default)]
    pub name: String,
    /// `admin` or `user`.
    pub role: String,
    pub password: String,
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let email = b.email.trim().to_lowercase();
    let mut c = Check::new();
    c.email("email", &email);
    c.len("name", &b.name, 0, 100);
    c.one_of("role", &b.role, &["admin", "user"]);
    if let Some(m) = accounts::password_problem(&b.password) {
        c.fail("password", m);
    }
    c.done()?;
    let hash = accounts::hash_password(&b.password).await?;
    let id: UserId = sqlx::query_scalar(
        "INSERT INTO users (email, name, password_hash, role, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&email)
    .bind(b.name.trim())
    .bind(hash)
    .bind(&b.role)
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::field("email", "is already used by another account"),
        o => o,
    })?;
    Ok((StatusCode::CREATED, Json(load_user(&st, id).await?)))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<UserId>,
) -> ApiResult<Json<User>> {
    Ok(Json(load_user(&st, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct UserUpdate {
    pub email: Option<String>,
    pub name: Option<String>,
    pub role: Option<String>,
    pub dnd: Option<bool>,
}

#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)), request_body = UserUpdate,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<UserId>,
    ValidJson(b): ValidJson<UserUpdate>,
) -> ApiResult<Json<User>> {
    let cur = load_user(&st, id).await?;
    let email = b
        .email
        .map(|e| e.trim().to_lowercase())
        .unwrap_or(cur.email);
    let name = b.name.map(|n| n.trim().to_owned()).unwrap_or(cur.name);
    let role = b.role.unwrap_or(cur.role.clone());
    let mut c = Check::new();
    c.email("email", &email);
    c.len("name", &name, 0, 100);
    c.one_of("role", &role, &["admin", "user"]);
    c.done()?;
    if cur.role == "admin" && role != "admin" && admin_count(&st).await? <= 1 {
        return Err(ApiError::Conflict(
            "The last admin cannot lose the admin role".into(),
        ));
    }
    sqlx::query("UPDATE users SET email = ?, name = ?, role = ?, dnd = ? WHERE id = ?")
        .bind(&email)
        .bind(&name)
        .bind(&role)
        .bind(b.dnd.unwrap_or(cur.dnd))
        .bind(id)
        .execute(&st.pool)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::field("email", "is already used by another account"),
            o => o,
        })?;
    Ok(Json(load_user(&st, id).await?))
}

async fn admin_count(st: &AppState) -> ApiResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin'")
            .fetch_one(&st.pool)
            .await?,
    )
}

#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    Admin(me): Admin,
    Id(id): Id<UserId>,
) -> ApiResult<Json<Ok_>> {
    let cur = load_user(&st, id).await?;
    if id == me.id {
        return Err(ApiError::Conflict(
            "You cannot delete your own account".into(),
        ));
    }
    if cur.role == "admin" && admin_count(&st).await? <= 1 {
        return Err(ApiError::Conflict(
            "The last admin cannot be deleted".into(),
        ));
    }
    sqlx::query("DELETE FROM users WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    Ok(ok())
}

#[derive(Deserialize, ToSchema)]
pub struct PasswordReset {
    pub password: String,
}

/// Reset a user's password: ends all their sessions, revokes their API keys
/// (a reset usually means the account was in the wrong hands) and unlocks
/// the account.
#[utoipa::path(post, path = "/api/users/{id}/password", tag = "users", params(("id" = i64, Path)), request_body = PasswordReset,
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reset_password(
    State(st): State<AppState>,
    Admin(me): Admin,
    Id(id): Id<UserId>,
    ValidJson(b): ValidJson<PasswordReset>,
) -> ApiResult<Json<Ok_>> {
    load_user(&st, id).await?;
    accounts::check_password("password", &b.password)?;
    let hash = accounts::hash_password(&b.password).await?;
    let mut tx = st.pool.begin().await?;
    sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
        .bind(hash)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    accounts::unlock_user(&mut *tx, id).await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let revoked =
        sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(proto::time::now())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    tx.commit().await?;
    tracing::info!(
        user_id = id.0,
        by = me.id.0,
        api_keys_revoked = revoked,
        "password reset by an admin"
    );
    Ok(ok())
}

/// Unlock an account locked by failed logins, before the lock runs out.
#[utoipa::path(post, path = "/api/users/{id}/unlock", tag = "users", params(("id" = i64, Path)),
    responses((status = 200, body = User), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unlock(
    State(st): State<AppState>,
    Admin(me): Admin,
    Id(id): Id<UserId>,
) -> ApiResult<Json<User>> {
    if accounts::unlock_user(&st.pool, id).await? == 0 {
        return Err(ApiError::NotFound);
    }
    let user = load_user(&st, id).await?;
    tracing::info!(user_id = id.0, by = me.id.0, "account unlocked by an admin");
    if let Err(e) =
        proto::db::security_event(&st.pool, "webd", "web_login_unlocked", "", &user.email, "").await
    {
        tracing::warn!(error = %e, "cannot record the security event");
    }
    Ok(Json(user))
}
