//! What every handler shares: the list envelope and pagination, validated
//! JSON and query extractors that answer the spec's error JSON, field
//! checks, and gRPC error mapping.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ApiResult, FieldError};

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    /// Items matching the filters, over all pages.
    pub total: i64,
}

/// `?page=1&per_page=20&sort=created_at&order=desc`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub page: Option<String>,
    /// Items per page, 1-100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub per_page: Option<String>,
    /// Field to sort by; each list names the fields it allows.
    pub sort: Option<String>,
    /// `asc` or `desc`.
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    pub order: Option<String>,
}

/// A list's WHERE clause made of only the filters that apply, with their
/// values. A `(?1 IS NULL OR col = ?1)` form would keep SQLite's planner from
/// using the indexes (and from its fast COUNT(*)). Values are bound as text;
/// the columns' affinity converts them (`did_id = '3'` matches 3).
#[derive(Debug, Default)]
pub struct Conditions {
    parts: Vec<String>,
    binds: Vec<String>,
}

impl Conditions {
    /// Adds `cond`; each `?` in it stands for `value`.
    pub fn add(&mut self, cond: &str, value: impl ToString) {
        self.binds.push(value.to_string());
        self.parts
            .push(cond.replace('?', &format!("?{}", self.binds.len())));
    }

    fn sql(&self) -> String {
        if self.parts.is_empty() {
            "1".into()
        } else {
            self.parts.join(" AND ")
        }
    }

    /// One page of `SELECT {cols} FROM {table}` under these conditions, and
    /// how many rows match in all.
    pub async fn page<T>(
        &self,
        pool: &sqlx::SqlitePool,
        cols: &str,
        table: &str,
        pg: &Paging,
    ) -> Result<(Vec<T>, i64), sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let count_sql = format!("SELECT COUNT(*) FROM {table} WHERE {}", self.sql());
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql.as_str()));
        for b in &self.binds {
            count = count.bind(b);
        }
        let total = count.fetch_one(pool).await?;
        let n = self.binds.len();
        let tail = format!(
            "ORDER BY {} LIMIT ?{} OFFSET ?{}",
            pg.order_by,
            n + 1,
            n + 2
        );
        let sql = self.select(cols, table, &tail);
        let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        let items = q.bind(pg.limit()).bind(pg.offset()).fetch_all(pool).await?;
        Ok((items, total))
    }

    /// Every row of `SELECT {cols} FROM {table} WHERE ... {tail}`.
    pub async fn all<T>(
        &self,
        pool: &sqlx::SqlitePool,
        cols: &str,
        table: &str,
        tail: &str,
    ) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let sql = self.select(cols, table, tail);
        let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        q.fetch_all(pool).await
    }

    fn select(&self, cols: &str, table: &str, tail: &str) -> String {
        format!("SELECT {cols} FROM {table} WHERE {} {tail}", self.sql())
    }
}

/// Pagination resolved against a list's sort whitelist.
#[derive(Debug, Clone)]
pub struct Paging {
    pub page: i64,
    pub per_page: i64,
    /// `ORDER BY` body, built only from whitelisted names.
    pub order_by: String,
}

impl Paging {
    pub fn limit(&self) -> i64 {
        self.per_page
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
    pub fn wrap<T: ToSchema>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page,
            per_page: self.per_page,
            total,
        }
    }
}

impl PageParams {
    /// Validates page, per_page, sort (against `sorts`: API name -> SQL
    /// column) and order; the first of `sorts` with `desc` is the default.
    pub fn resolve(&self, sorts: &[(&str, &str)], default_order: &str) -> ApiResult<Paging> {
        let mut errs = Vec::new();
        let page = int_param(
            &mut errs,
            "page",
            self.page.as_deref(),
            1,
            1,
            i64::MAX / 1000,
        );
        let per_page = int_param(&mut errs, "per_page", self.per_page.as_deref(), 20, 1, 100);
        let sort = match self.sort.as_deref() {
            None | Some("") => sorts.first().map(|s| s.1).unwrap_or("id"),
            Some(s) => match sorts.iter().find(|(name, _)| *name == s) {
                Some((_, col)) => col,
                None => {
                    let names: Vec<_> = sorts.iter().map(|s| s.0).collect();
                    errs.push(fe("sort", format!("must be one of: {}", names.join(", "))));
                    "id"
                }
            },
        };
        let order = match self.order.as_deref() {
            None | Some("") => default_order,
            Some("asc") => "ASC",
            Some("desc") => "DESC",
            Some(_) => {
                errs.push(fe("order", "must be asc or desc"));
                "DESC"
            }
        };
        if !errs.is_empty() {
            return Err(ApiError::Validation(errs));
        }
        // The tie-breaker runs opposite to the main order: every SQLite index
        // ends with the rowid ascending, so `started_at DESC, id ASC` walks
        // idx_cdrs_started forwards (and ASC, DESC backwards) with no sort step.
        let tie = if order == "ASC" { "DESC" } else { "ASC" };
        Ok(Paging {
            page,
            per_page,
            order_by: format!("{sort} {order}, id {tie}"),
        })
    }
}

fn int_param(
    errs: &mut Vec<FieldError>,
    field: &str,
    v: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> i64 {
    match v {
        None | Some("") => default,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                errs.push(fe(
                    field,
                    format!("must be a whole number from {min} to {max}"),
                ));
                default
            }
        },
    }
}

pub fn fe(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// JSON body whose rejections become the spec's error JSON.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::JsonDataError(d) => {
            let text = d.body_text();
            // "Failed to deserialize the JSON body into the target type: field: message"
            let detail = text
                .split_once("target type: ")
                .map_or(text.as_str(), |x| x.1);
            let (field, msg) = match detail.split_once(": ") {
                Some((f, m)) if !f.contains(' ') => (f.to_owned(), m.to_owned()),
                _ => ("body".to_owned(), detail.to_owned()),
            };
            let field = if field == "." { "body".into() } else { field };
            ApiError::Validation(vec![fe(&field, msg)])
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::Validation(vec![fe("body", "send Content-Type: application/json")])
        }
        other => ApiError::Validation(vec![fe("body", other.body_text())]),
    }
}

/// Query string whose rejections become the spec's error JSON.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    let text = e.body_text();
    let detail = text
        .split_once("query string: ")
        .map_or(text.as_str(), |x| x.1);
    ApiError::Validation(vec![fe("query", detail)])
}

/// Collects field errors, then fails once with all of them.
#[derive(Default)]
pub struct Check(pub Vec<FieldError>);

impl Check {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn fail(&mut self, field: &str, msg: impl Into<String>) {
        self.0.push(fe(field, msg));
    }
    /// Length in characters within min..=max.
    pub fn len(&mut self, field: &str, v: &str, min: usize, max: usize) {
        let n = v.chars().count();
        if n < min || n > max {
            if min > 0 && n == 0 {
                self.fail(field, "is required");
            } else {
                self.fail(field, format!("must be {min} to {max} characters"));
            }
        }
    }
    pub fn e164(&mut self, field: &str, v: &str) {
        if proto::types::E164::parse(v).is_err() {
            self.fail(field, "must be an E.164 number such as +15551234567");
        }
    }
    pub fn one_of(&mut self, field: &str, v: &str, allowed: &[&str]) {
        if !allowed.contains(&v) {
            self.fail(field, format!("must be one of: {}", allowed.join(", ")));
        }
    }
    pub fn email(&mut self, field: &str, v: &str) {
        let ok = v.len() <= 254
            && v.split_once('@').is_some_and(|(a, b)| {
                !a.is_empty() && b.contains('.') && !b.starts_with('.') && !b.ends_with('.')
            })
            && !v.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            self.fail(field, "must be an email address like you@example.org");
        }
    }
    pub fn done(self) -> ApiResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Maps a gRPC failure of a peer daemon to 503 (down) or 502-like 503.
pub fn peer_error(daemon: &str, s: tonic::Status) -> ApiError {
    match s.code() {
        tonic::Code::InvalidArgument => ApiError::Validation(vec![fe("body", s.message())]),
        tonic::Code::NotFound => ApiError::NotFound,
        tonic::Code::FailedPrecondition => ApiError::Conflict(s.message().to_owned()),
        _ => {
            tracing::warn!(daemon, code = ?s.code(), message = s.message(), "peer call failed");
            ApiError::Unavailable(format!(
                "{daemon} is not reachable right now; try again shortly"
            ))
        }
    }
}

/// Asks every daemon's `Daemon` service to reload settings (down ones are
/// skipped: they poll every 5 s anyway).
pub async fn reload_all(st: &crate::AppState) {
    use proto::pb::common::ReloadRequest;
    use proto::pb::common::daemon_client::DaemonClient;
    let _ = st.settings.reload().await;
    let p = &st.peers;
    let chans = [
        p.sipd.clone(),
        p.mediad.clone(),
        p.twiliod.clone(),
        p.notifyd.clone(),
    ];
    let calls = chans.into_iter().map(|ch| async move {
        let mut c = DaemonClient::new(ch);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            c.reload(ReloadRequest {}),
        )
        .await;
    });
    futures::future::join_all(calls).await;
}

/// `{"ok": true}` style answers.
#[derive(Serialize, ToSchema)]
pub struct Ok_ {
    pub ok: bool,
}

pub fn ok() -> axum::Json<Ok_> {
    axum::Json(Ok_ { ok: true })
}

/// Tri-state JSON fields for partial updates.
pub fn opt_bool(v: Option<bool>, cur: bool) -> bool {
    v.unwrap_or(cur)
}

/// The `{id}` path parameter; anything but a positive integer is a 404.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) =
            axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(
                parts, state,
            )
            .await
            .map_err(|_| ApiError::NotFound)?;
        v.get("id")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(Id)
            .ok_or(ApiError::NotFound)
    }
}
