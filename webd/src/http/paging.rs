//! The list envelope and its pagination: pages, cursors, sorts, filters and the
//! cached totals and marks that keep deep pages fast.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, TypeInfo, ValueRef};
use utoipa::{IntoParams, ToSchema};

use super::validate::fe;
use crate::http::error::{ApiError, ApiResult, FieldError};

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    pub page: i64,
    pub per_page: i64,
    /// Items matching the filters, over all pages.
    pub total: i64,
}

/// One page of a list that also offers keyset paging (calls, messages).
#[derive(Debug, Serialize, ToSchema)]
pub struct CursorPage<T: ToSchema> {
    pub items: Vec<T>,
    /// The `page` asked for (1 by default); with `cursor` it is not used.
    pub page: i64,
    pub per_page: i64,
    /// Items matching the filters, over all pages.
    pub total: i64,
    /// Pass as `cursor` (same filters, sort and order) for the rows after
    /// this page; pages that follow stay put while new rows arrive. `null`
    /// after the last row (a full page asked by cursor may be followed by an
    /// empty one).
    pub next_cursor: Option<String>,
}

/// Keyset paging for long lists (infinite scroll): each answer's
/// `next_cursor` asks for the rows after it, with no OFFSET to step over.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CursorParams {
    /// `next_cursor` of the previous answer; `page` is then not used. Empty:
    /// from the first row.
    pub cursor: Option<String>,
}

/// A [`CursorPage`] whose items SQLite already rendered as a JSON array.
#[derive(Debug)]
pub struct JsonPage(pub String);

impl axum::response::IntoResponse for JsonPage {
    fn into_response(self) -> axum::response::Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
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

/// Rows between two remembered sort keys of a list (see [`ListCache`]): a
/// deep page seeks to the key at or before its offset and steps over fewer
/// than this many index entries.
pub const STRIDE: i64 = 256;

/// Filter combinations whose totals / sort keys are kept; past that the
/// cache starts over (filters are few, users' scopes are many).
const MAX_TOTALS: usize = 1024;

const MAX_MARKED: usize = 64;

/// Per-list caches of webd's two big lists (cdrs, messages): the total count
/// of each filter and the sort key of every [`STRIDE`]th row of each filter
/// and order. Both are tagged with the list's version from
/// `webd_list_versions` (a random value that triggers replace on every
/// insert or delete and every update of a column the lists filter or sort
/// on, whichever process writes) and used only while that version is
/// current, so another daemon's new CDR shows at once. A filler holds the
/// key's `flights` lock, so a burst of requests after a write counts once.
#[derive(Default)]
pub struct ListCache {
    totals: Mutex<HashMap<String, (i64, i64)>>,
    marks: Mutex<HashMap<String, (i64, Marks)>>,
    /// One lock per cache key, held by the request that fills it.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The remembered rows of one filter and order, by offset.
type Marks = BTreeMap<i64, Mark>;

/// A value of a sort column as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    Int(i64),
    Real(f64),
    Text(String),
}

/// The row at some offset of an ordered list: its sort value and id.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub value: SortValue,
    pub id: i64,
}

impl ListCache {
    /// Waits until no other request is filling `key`.
    async fn flight(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut m = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() >= MAX_TOTALS {
                m.retain(|_, l| Arc::strong_count(l) > 1);
            }
            m.entry(key.to_owned()).or_default().clone()
        };
        lock.lock_owned().await
    }

    fn total(&self, key: &str, version: i64) -> Option<i64> {
        let m = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        m.get(key).filter(|(v, _)| *v == version).map(|(_, t)| *t)
    }

    fn put_total(&self, key: String, version: i64, total: i64) {
        let mut m = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_TOTALS && !m.contains_key(&key) {
            m.clear();
        }
        m.insert(key, (version, total));
    }

    /// The remembered row at the greatest offset <= `offset`.
    fn mark_before(&self, key: &str, version: i64, offset: i64) -> Option<(i64, Mark)> {
        let m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        let (v, marks) = m.get(key)?;
        if *v != version {
            return None;
        }
        marks
            .range(..=offset)
            .next_back()
            .map(|(n, mk)| (*n, mk.clone()))
    }

    fn put_marks(&self, key: &str, version: i64, found: &[(i64, Mark)]) {
        let mut m = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_MARKED && !m.contains_key(key) {
            m.clear();
        }
        let e = m
            .entry(key.to_owned())
            .or_insert_with(|| (version, BTreeMap::new()));
        if e.0 != version {
            *e = (version, BTreeMap::new());
        }
        e.1.extend(found.iter().cloned());
    }
}

/// Where a page starts: on `conn`, `skip` rows into the rows at or after
/// `from` (strictly after it for a cursor; the whole list when `None`).
struct Plan {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    from: Option<Mark>,
    skip: i64,
}

/// The list's current version (`None`: the table has no marker).
async fn list_version(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM webd_list_versions WHERE name = ?")
        .bind(table)
        .fetch_optional(conn)
        .await
}

/// Binds a [`SortValue`] with its own SQLite type.
macro_rules! bind_value {
    ($q:expr, $v:expr) => {
        match $v {
            SortValue::Int(i) => $q.bind(*i),
            SortValue::Real(f) => $q.bind(*f),
            SortValue::Text(s) => $q.bind(s.clone()),
        }
    };
}

fn sort_value(row: &SqliteRow, idx: usize) -> Result<Option<SortValue>, sqlx::Error> {
    let raw = row.try_get_raw(idx)?;
    if raw.is_null() {
        return Ok(None);
    }
    let ty = raw.type_info().name().to_owned();
    Ok(Some(match ty.as_str() {
        "INTEGER" | "BOOLEAN" => SortValue::Int(row.try_get(idx)?),
        "REAL" => SortValue::Real(row.try_get(idx)?),
        _ => SortValue::Text(row.try_get(idx)?),
    }))
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

    fn cache_key(&self, table: &str) -> String {
        let mut k = format!("{table}\u{1f}{}", self.sql());
        for b in &self.binds {
            k.push('\u{1f}');
            k.push_str(b);
        }
        k
    }

    /// One page of `SELECT {cols} FROM {table}` under these conditions, and
    /// how many rows match in all.
    ///
    /// For a table with a row in `webd_list_versions` the total comes from
    /// the [`ListCache`] while the version holds, and a page past the first
    /// [`STRIDE`] rows starts from the nearest remembered sort key instead of
    /// stepping over the whole OFFSET. That seek (and a cursor) needs the
    /// sort column NOT NULL (every list sort column is).
    pub async fn page<T>(
        &self,
        st: &crate::AppState,
        cols: &str,
        table: &str,
        pg: &Paging,
    ) -> Result<(Vec<T>, i64), sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let (total, plan) = self.plan(st, table, pg).await?;
        let Some(mut plan) = plan else {
            return Ok((Vec::new(), total));
        };
        let sql = self.page_sql(cols, table, pg, &plan);
        let mut q = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        if let Some(m) = &plan.from {
            q = bind_value!(q, &m.value);
            q = q.bind(m.id);
        }
        let items = q.bind(plan.skip).fetch_all(&mut *plan.conn).await?;
        Ok((items, total))
    }

    /// [`Self::page`] with the items rendered by SQLite as one JSON array,
    /// in the [`CursorPage`] envelope. `item` is a `json_object(...)` over the
    /// columns `cols` of the page's rows, which it names as `r.<column>`;
    /// `cols` must hold the sort columns and `item` must carry `id` and each
    /// sort column under its own name. One value crosses from SQLite to Rust
    /// instead of every column of every row (sqlx copies and allocates each
    /// one and hands rows one by one between threads; then serde again).
    pub async fn page_json(
        &self,
        st: &crate::AppState,
        cols: &str,
        item: &str,
        table: &str,
        pg: &Paging,
    ) -> Result<JsonPage, sqlx::Error> {
        let (total, plan) = self.plan(st, table, pg).await?;
        let Some(mut plan) = plan else {
            return Ok(pg.wrap_json("[]", total, None));
        };
        // The last item's sort value and id (for next_cursor) are read back
        // out of the array: SQLite parses it once for the three calls.
        let (sort, order) = (&pg.sort, &pg.order_by);
        let sql = format!(
            "SELECT a, json_array_length(a), json_extract(a, '$[#-1].{sort}'), \
               json_extract(a, '$[#-1].id') \
             FROM (SELECT json_group_array({item} ORDER BY {order}) AS a FROM ({}) AS r)",
            self.page_sql(cols, table, pg, &plan),
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        if let Some(m) = &plan.from {
            q = bind_value!(q, &m.value);
            q = q.bind(m.id);
        }
        let row = q.bind(plan.skip).fetch_one(&mut *plan.conn).await?;
        let items: String = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        let last = match (sort_value(&row, 2)?, row.try_get::<Option<i64>, _>(3)?) {
            (Some(value), Some(id)) => Some(Mark { value, id }),
            _ => None,
        };
        // More rows follow: by the total for a numbered page; for a cursor,
        // whenever the page is full (the next one may then be empty).
        let more = match &pg.after {
            Some(_) => n == pg.per_page,
            None => pg.offset() + n < total,
        };
        let next = last.filter(|_| more).map(|m| pg.cursor(&m));
        Ok(pg.wrap_json(&items, total, next))
    }

    /// The total, and where the page starts (`None` when it lies past the
    /// last row).
    async fn plan(
        &self,
        st: &crate::AppState,
        table: &str,
        pg: &Paging,
    ) -> Result<(i64, Option<Plan>), sqlx::Error> {
        let mut conn = st.pool.acquire().await?;
        let mut version = list_version(&mut conn, table).await?;
        let key = self.cache_key(table);
        let total = match version.and_then(|v| st.lists.total(&key, v)) {
            Some(t) => t,
            None if version.is_none() => self.count(&mut conn, table).await?,
            None => {
                // One request counts for everyone who missed at the same
                // version; the rest wait (without holding a connection)
                // and find the answer cached.
                drop(conn);
                let _one = st.lists.flight(&key).await;
                conn = st.pool.acquire().await?;
                version = list_version(&mut conn, table).await?;
                match version.and_then(|v| st.lists.total(&key, v)) {
                    Some(t) => t,
                    None => {
                        let t = self.count(&mut conn, table).await?;
                        if let Some(v) = version {
                            st.lists.put_total(key.clone(), v, t);
                        }
                        t
                    }
                }
            }
        };
        if let Some(after) = &pg.after {
            let from = Some(after.clone());
            return Ok((
                total,
                Some(Plan {
                    conn,
                    from,
                    skip: 0,
                }),
            ));
        }
        let offset = pg.offset();
        if offset >= total {
            return Ok((total, None));
        }
        let mark = match version {
            Some(v) if offset >= STRIDE => {
                let mkey = format!("{key}\u{1f}{}", pg.order_by);
                let target = offset / STRIDE * STRIDE;
                match st.lists.mark_before(&mkey, v, target) {
                    Some((at, m)) if at == target => Some((at, m)),
                    _ => {
                        // Finding keys is a walk through the index: once.
                        drop(conn);
                        let _one = st.lists.flight(&mkey).await;
                        conn = st.pool.acquire().await?;
                        match list_version(&mut conn, table).await? {
                            Some(v) => {
                                // Every key to the end at once: with random
                                // deep pages, one walk instead of many.
                                let upto = target.max((total - 1) / STRIDE * STRIDE);
                                self.mark(&mut conn, &st.lists, &mkey, v, table, pg, target, upto)
                                    .await?
                            }
                            None => None,
                        }
                    }
                }
            }
            _ => None,
        };
        let skip = offset - mark.as_ref().map_or(0, |(at, _)| *at);
        let from = mark.map(|(_, m)| m);
        Ok((total, Some(Plan { conn, from, skip })))
    }

    async fn count(
        &self,
        conn: &mut sqlx::SqliteConnection,
        table: &str,
    ) -> Result<i64, sqlx::Error> {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {}", self.sql());
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        q.fetch_one(conn).await
    }

    /// `SELECT {cols}` of one page; binds: the conditions' values, then the
    /// starting row's sort value and id when there is one, then OFFSET.
    /// LIMIT is written into the SQL: SQLite (3.4x+) plans with the value
    /// of a bound LIMIT, so binding it, even to the same value, expires the
    /// prepared statement and every request would parse and plan it again.
    fn page_sql(&self, cols: &str, table: &str, pg: &Paging, plan: &Plan) -> String {
        let n = self.binds.len();
        let (v, i) = (format!("?{}", n + 1), format!("?{}", n + 2));
        let (seek, p) = match (&plan.from, &pg.after) {
            (None, _) => (String::new(), n + 1),
            (Some(_), None) => (format!(" AND {}", pg.at_or_after(&v, &i)), n + 3),
            (Some(_), Some(_)) => (format!(" AND {}", pg.after(&v, &i)), n + 3),
        };
        format!(
            "SELECT {cols} FROM {table} WHERE {}{seek} ORDER BY {} LIMIT {} OFFSET ?{p}",
            self.sql(),
            pg.order_by,
            pg.limit(),
        )
    }

    /// The remembered row at `target` (a multiple of [`STRIDE`]), found by
    /// hopping STRIDE rows at a time through the order's index from the
    /// nearest row already known, remembering every row on the way to `upto`.
    #[allow(clippy::too_many_arguments)]
    async fn mark(
        &self,
        conn: &mut sqlx::SqliteConnection,
        cache: &ListCache,
        key: &str,
        version: i64,
        table: &str,
        pg: &Paging,
        target: i64,
        upto: i64,
    ) -> Result<Option<(i64, Mark)>, sqlx::Error> {
        let known = cache.mark_before(key, version, target);
        if known.as_ref().is_some_and(|(at, _)| *at == target) {
            return Ok(known);
        }
        let n = self.binds.len();
        let (conds, sort, order) = (self.sql(), &pg.sort, &pg.order_by);
        let start = match &known {
            Some(_) => format!("SELECT ?{} AS n, ?{} AS k, ?{} AS i", n + 2, n + 3, n + 4),
            None => format!(
                "SELECT * FROM (SELECT 0 AS n, {sort} AS k, id AS i FROM {table} WHERE {conds} \
                 ORDER BY {order} LIMIT 1)"
            ),
        };
        let sql = format!(
            "WITH RECURSIVE cp(n, k, i) AS ({start} UNION ALL \
               SELECT cp.n + {STRIDE}, t.{sort}, t.id FROM cp JOIN {table} AS t ON t.id = \
                 (SELECT id FROM {table} WHERE {conds} AND {} ORDER BY {order} LIMIT 1 OFFSET {STRIDE}) \
               WHERE cp.n + {STRIDE} <= ?{}) \
             SELECT n, k, i FROM cp",
            pg.at_or_after("cp.k", "cp.i"),
            n + 1
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for b in &self.binds {
            q = q.bind(b);
        }
        q = q.bind(upto);
        if let Some((at, m)) = &known {
            q = q.bind(*at);
            q = bind_value!(q, &m.value);
            q = q.bind(m.id);
        }
        let mut found = Vec::new();
        for row in q.fetch_all(&mut *conn).await? {
            let at: i64 = row.try_get(0)?;
            let id: i64 = row.try_get(2)?;
            // A NULL sort value cannot be sought past; stop remembering.
            let Some(value) = sort_value(&row, 1)? else {
                break;
            };
            found.push((at, Mark { value, id }));
        }
        cache.put_marks(key, version, &found);
        let at_target = found.into_iter().rev().find(|(at, _)| *at <= target);
        Ok(at_target.or(known))
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
    /// The whitelisted sort column (the order's first key; `id` is the second).
    pub sort: String,
    /// The sort column runs descending (and `id` ascending).
    pub desc: bool,
    /// From a `cursor`: the rows after this one, instead of `page`.
    pub after: Option<Mark>,
}

impl Paging {
    pub fn limit(&self) -> i64 {
        self.per_page
    }
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
    /// Rows at or after the row (`value`, `id`) in this order: SQL over two
    /// placeholders or expressions. Written as a range on the sort column plus
    /// a tie test so SQLite seeks in the order's index.
    pub fn at_or_after(&self, value: &str, id: &str) -> String {
        let s = &self.sort;
        if self.desc {
            format!("{s} <= {value} AND ({s} < {value} OR id >= {id})")
        } else {
            format!("{s} >= {value} AND ({s} > {value} OR id <= {id})")
        }
    }
    /// Rows strictly after (`value`, `id`) in this order.
    pub fn after(&self, value: &str, id: &str) -> String {
        let s = &self.sort;
        if self.desc {
            format!("{s} <= {value} AND ({s} < {value} OR id > {id})")
        } else {
            format!("{s} >= {value} AND ({s} > {value} OR id < {id})")
        }
    }

    /// The cursor naming row `m` in this sort and order.
    pub fn cursor(&self, m: &Mark) -> String {
        use base64::Engine;
        let value = match &m.value {
            SortValue::Int(i) => serde_json::json!(i),
            SortValue::Real(f) => serde_json::json!(f),
            SortValue::Text(t) => serde_json::json!(t),
        };
        let dir = if self.desc { "desc" } else { "asc" };
        let v = serde_json::json!([self.sort, dir, value, m.id]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// Takes a `cursor` made by [`Self::cursor`] for the same sort and order.
    pub fn with_cursor(mut self, c: &CursorParams) -> ApiResult<Self> {
        use base64::Engine;
        let Some(text) = c.cursor.as_deref().filter(|t| !t.is_empty()) else {
            if c.cursor.is_some() {
                // `cursor=`: the first page, by cursor rules.
                self.page = 1;
            }
            return Ok(self);
        };
        let bad = || ApiError::Validation(vec![fe("cursor", "is not a cursor from this list")]);
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let v: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let dir = if self.desc { "desc" } else { "asc" };
        if v[0].as_str() != Some(self.sort.as_str()) || v[1].as_str() != Some(dir) {
            return Err(ApiError::Validation(vec![fe(
                "cursor",
                "belongs to another sort or order; start again without it",
            )]));
        }
        let value = match &v[2] {
            serde_json::Value::String(t) => SortValue::Text(t.clone()),
            n if n.is_i64() => SortValue::Int(n.as_i64().unwrap_or_default()),
            n if n.is_f64() => SortValue::Real(n.as_f64().unwrap_or_default()),
            _ => return Err(bad()),
        };
        let id = v[3].as_i64().ok_or_else(bad)?;
        self.after = Some(Mark { value, id });
        Ok(self)
    }

    /// The [`CursorPage`] envelope around `items`, a JSON array.
    pub fn wrap_json(&self, items: &str, total: i64, next: Option<String>) -> JsonPage {
        let next = next.map_or_else(|| "null".to_owned(), |c| format!("\"{c}\""));
        JsonPage(format!(
            "{{\"items\":{items},\"page\":{},\"per_page\":{},\"total\":{total},\"next_cursor\":{next}}}",
            self.page, self.per_page
        ))
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
            sort: sort.to_owned(),
            desc: order == "DESC",
            after: None,
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
