//! `/api/cdrs`: call history with filters, CSV export with the same filters,
//! recordings; `/api/calls`: active calls from sipd, recording toggle and
//! hangup. Users see their own calls only (404 for others').

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::Caller;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{
    Check, Conditions, CursorPage, CursorParams, Id, JsonPage, Ok_, Page, PageParams, ValidQuery,
    ok, peer_error,
};
use proto::types::{CdrId, DeviceId, DidId, UserId};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Cdr {
    #[schema(value_type = i64)]
    pub id: CdrId,
    pub call_sid: Option<String>,
    /// `inbound`, `outbound` or `internal`.
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    #[schema(value_type = Option<i64>)]
    pub did_id: Option<DidId>,
    #[schema(value_type = Option<i64>)]
    pub device_id: Option<DeviceId>,
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    pub started_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// Seconds.
    pub duration: i64,
    pub disposition: String,
    pub spam_score: Option<f64>,
    pub stir_verstat: Option<String>,
    pub rule_name: Option<String>,
    pub reason: Option<String>,
    /// `/api/cdrs/{id}/recording` when a local recording exists.
    #[sqlx(skip)]
    pub recording_url: Option<String>,
    #[serde(skip)]
    #[sqlx(rename = "recording_url")]
    pub recording_path: Option<String>,
    /// The call was recorded, but the recording passed
    /// `recording.retention_days` and was deleted.
    pub recording_expired: bool,
    /// Every leg of the call was SIP over TLS with SRTP.
    pub encrypted: bool,
}

const COLS: &str = "id, call_sid, direction, from_number, to_number, did_id, device_id, user_id, \
    started_at, answered_at, ended_at, duration, disposition, spam_score, stir_verstat, rule_name, \
    reason, recording_url, recording_expired_at IS NOT NULL AS recording_expired, encrypted";
const SORTS: &[(&str, &str)] = &[
    ("started_at", "started_at"),
    ("duration", "duration"),
    ("from_number", "from_number"),
    ("to_number", "to_number"),
    ("disposition", "disposition"),
    ("direction", "direction"),
];
pub const DISPOSITIONS: &[&str] = &[
    "in_progress",
    "answered",
    "missed",
    "busy",
    "failed",
    "voicemail",
    "blocked",
    "rejected",
];

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct CdrFilter {
    #[param(pattern = "^(inbound|outbound|internal)$")]
    pub direction: Option<String>,
    /// answered, missed, busy, failed, voicemail, blocked, rejected, in_progress
    pub disposition: Option<String>,
    /// Calls started at or after this ISO 8601 time.
    pub from: Option<String>,
    /// Calls started before this ISO 8601 time.
    pub to: Option<String>,
    /// Substring of the caller or called number.
    pub number: Option<String>,
    #[param(value_type = Option<i64>)]
    pub did_id: Option<String>,
    #[param(value_type = Option<i64>)]
    pub device_id: Option<String>,
}

/// The conditions of the list and the CSV export. A filter (or a sort) on a
/// column not yet in the `webd_cdrs_updated` trigger's column list must be
/// added there (a new migration), or cached totals miss updates of it.
fn build_where(caller: &Caller, f: &CdrFilter) -> ApiResult<Conditions> {
    let mut c = Check::new();
    let mut w = Conditions::default();
    let mut add = |cond: &str, v: String| w.add(cond, v);
    if let Some(uid) = caller.scope() {
        add("user_id = ?", uid.to_string());
    }
    let nonempty = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    if let Some(d) = nonempty(&f.direction) {
        c.one_of("direction", &d, &["inbound", "outbound", "internal"]);
        add("direction = ?", d);
    }
    if let Some(d) = nonempty(&f.disposition) {
        c.one_of("disposition", &d, DISPOSITIONS);
        add("disposition = ?", d);
    }
    for (field, op, v) in [("from", ">=", &f.from), ("to", "<", &f.to)] {
        if let Some(t) = nonempty(v) {
            match proto::time::parse(&t) {
                Some(t) => add(&format!("started_at {op} ?"), proto::time::fmt(t)),
                None => c.fail(
                    field,
                    "must be an ISO 8601 time such as 2025-01-15T14:30:00Z",
                ),
            }
        }
    }
    if let Some(n) = nonempty(&f.number) {
        if n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit() || b == b'+') {
            c.fail("number", "must be digits, optionally with +");
        } else {
            add("(from_number LIKE ? OR to_number LIKE ?)", format!("%{n}%"));
        }
    }
    for (field, col, v) in [
        ("did_id", "did_id", &f.did_id),
        ("device_id", "device_id", &f.device_id),
    ] {
        if let Some(s) = nonempty(v) {
            match s.parse::<i64>() {
                Ok(i) => add(&format!("{col} = ?"), i.to_string()),
                Err(_) => c.fail(field, "must be a number"),
            }
        }
    }
    c.done()?;
    Ok(w)
}

fn fix(mut c: Cdr) -> Cdr {
    if c.recording_path.as_deref().is_some_and(|p| !p.is_empty()) {
        c.recording_url = Some(format!("/api/cdrs/{}/recording", c.id));
    }
    c
}

/// A [`Cdr`] as SQLite's `json_object` over a page row `r` (same fields,
/// order and values as the struct's serde form; `cdrs_list_json_matches_the_typed_form`
/// in webd/tests/lists.rs holds them together).
const JSON_ITEM: &str = "json_object('id', r.id, 'call_sid', r.call_sid, 'direction', r.direction, \
    'from_number', r.from_number, 'to_number', r.to_number, 'did_id', r.did_id, \
    'device_id', r.device_id, 'user_id', r.user_id, 'started_at', r.started_at, \
    'answered_at', r.answered_at, 'ended_at', r.ended_at, 'duration', r.duration, \
    'disposition', r.disposition, 'spam_score', r.spam_score, 'stir_verstat', r.stir_verstat, \
    'rule_name', r.rule_name, 'reason', r.reason, 'recording_url', \
    CASE WHEN r.recording_url <> '' THEN '/api/cdrs/' || r.id || '/recording' END, \
    'recording_expired', json(CASE WHEN r.recording_expired THEN 'true' ELSE 'false' END), \
    'encrypted', json(CASE WHEN r.encrypted THEN 'true' ELSE 'false' END))";

#[utoipa::path(get, path = "/api/cdrs", tag = "cdrs", operation_id = "cdrs_list", params(PageParams, CursorParams, CdrFilter),
    responses((status = 200, body = CursorPage<Cdr>), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(c): ValidQuery<CursorParams>,
    ValidQuery(f): ValidQuery<CdrFilter>,
) -> ApiResult<JsonPage> {
    let pg = p.resolve(SORTS, "DESC")?.with_cursor(&c)?;
    Ok(build_where(&caller, &f)?
        .page_json(&st, COLS, JSON_ITEM, "cdrs", &pg)
        .await?)
}

/// [`list`] as typed rows, for callers inside webd (the dashboard).
pub async fn list_items(
    st: &AppState,
    caller: &Caller,
    p: PageParams,
    f: CdrFilter,
) -> ApiResult<Page<Cdr>> {
    let pg = p.resolve(SORTS, "DESC")?;
    let (items, total) = build_where(caller, &f)?
        .page::<Cdr>(st, COLS, "cdrs", &pg)
        .await?;
    Ok(pg.wrap(items.into_iter().map(fix).collect(), total))
}

/// CSV of the calls matching the same filters as the list (at most 100,000 rows).
#[utoipa::path(get, path = "/api/cdrs/export", tag = "cdrs", params(CdrFilter),
    responses((status = 200, content_type = "text/csv", description = "CSV file"), (status = 422, body = ErrorBody)))]
pub async fn export(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(f): ValidQuery<CdrFilter>,
) -> ApiResult<Response> {
    let rows: Vec<Cdr> = build_where(&caller, &f)?
        .all(
            &st.pool,
            COLS,
            "cdrs",
            "ORDER BY started_at DESC, id DESC LIMIT 100000",
        )
        .await?;
    let mut out = String::from(
        "id,started_at,answered_at,ended_at,direction,from_number,to_number,duration,disposition,did_id,device_id,spam_score,rule_name,reason\r\n",
    );
    for r in rows {
        let cells = [
            r.id.to_string(),
            r.started_at,
            r.answered_at.unwrap_or_default(),
            r.ended_at.unwrap_or_default(),
            r.direction,
            r.from_number,
            r.to_number,
            r.duration.to_string(),
            r.disposition,
            r.did_id.map(|v| v.to_string()).unwrap_or_default(),
            r.device_id.map(|v| v.to_string()).unwrap_or_default(),
            r.spam_score.map(|v| v.to_string()).unwrap_or_default(),
            r.rule_name.unwrap_or_default(),
            r.reason.unwrap_or_default(),
        ];
        let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"calls.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// RFC 4180 quoting, plus a leading `'` for cells a spreadsheet would run
/// as a formula (CSV injection).
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '@', '\t', '\r'])
        || (s.starts_with(['+', '-']) && !s[1..].bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn load(st: &AppState, caller: &Caller, id: CdrId) -> ApiResult<Cdr> {
    sqlx::query_as::<_, Cdr>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM cdrs WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    )))
    .bind(id)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?
    .ok_or(ApiError::NotFound)
}

#[utoipa::path(get, path = "/api/cdrs/{id}", tag = "cdrs", operation_id = "cdrs_get", params(("id" = i64, Path)),
    responses((status = 200, body = Cdr), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id<CdrId>,
) -> ApiResult<Json<Cdr>> {
    Ok(Json(fix(load(&st, &caller, id).await?)))
}

/// The call recording (audio, `Range` supported).
#[utoipa::path(get, path = "/api/cdrs/{id}/recording", tag = "cdrs", operation_id = "cdrs_recording", params(("id" = i64, Path)),
    responses((status = 200, content_type = "audio/wav", description = "audio"),
              (status = 206, description = "partial content"), (status = 404, body = ErrorBody)))]
pub async fn recording(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id<CdrId>,
) -> ApiResult<Response> {
    let c = load(&st, &caller, id).await?;
    let path = c.recording_path.ok_or(ApiError::NotFound)?;
    crate::files::serve(&st.data_dir, &path, &headers).await
}

#[derive(Serialize, ToSchema)]
pub struct ActiveCall {
    pub call_id: String,
    pub direction: String,
    pub from_number: String,
    pub to_number: String,
    #[schema(value_type = Option<i64>)]
    pub device_id: Option<DeviceId>,
    /// "ringing", "up" or "parked".
    pub state: String,
    pub started_at: String,
    pub recording: bool,
    /// A parked call's slot: any phone dials the retrieve code and it.
    pub park_slot: Option<u32>,
}

/// Active calls from sipd, filtered to the caller's devices for users.
pub async fn active_calls(st: &AppState, caller: &Caller) -> ApiResult<Vec<ActiveCall>> {
    let mut c = proto::pb::sipd::sipd_client::SipdClient::new(st.peers.sipd.clone());
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        c.list_calls(proto::pb::sipd::ListCallsRequest {}),
    )
    .await
    .map_err(|_| {
        ApiError::Unavailable("sipd is not reachable right now; try again shortly".into())
    })?
    .map_err(|s| peer_error("sipd", s))?
    .into_inner();
    let mine: Vec<DeviceId> = match caller.scope() {
        None => vec![],
        Some(u) => {
            sqlx::query_scalar("SELECT id FROM devices WHERE user_id = ?")
                .bind(u)
                .fetch_all(&st.pool)
                .await?
        }
    };
    Ok(r.calls
        .into_iter()
        .filter(|c| caller.is_admin() || mine.contains(&DeviceId(c.device_id)))
        .map(|c| ActiveCall {
            call_id: c.call_id,
            direction: c.direction,
            from_number: c.from_number,
            to_number: c.to_number,
            device_id: (c.device_id > 0).then_some(DeviceId(c.device_id)),
            state: c.state,
            started_at: chrono::DateTime::from_timestamp(c.started_at_unix, 0)
                .map(proto::time::fmt)
                .unwrap_or_default(),
            recording: c.recording,
            park_slot: (c.park_slot > 0).then_some(c.park_slot),
        })
        .collect())
}

#[utoipa::path(get, path = "/api/calls", tag = "calls", operation_id = "calls_list",
    responses((status = 200, body = Vec<ActiveCall>), (status = 503, body = ErrorBody)))]
pub async fn calls(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ActiveCall>>> {
    Ok(Json(active_calls(&st, &caller).await?))
}

async fn check_call(st: &AppState, caller: &Caller, call_id: &str) -> ApiResult<()> {
    if call_id.is_empty() || call_id.len() > 200 {
        return Err(ApiError::NotFound);
    }
    if !active_calls(st, caller)
        .await?
        .iter()
        .any(|c| c.call_id == call_id)
    {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
pub struct RecordingToggle {
    pub enabled: bool,
}

/// Start or stop recording an active call.
#[utoipa::path(put, path = "/api/calls/{call_id}/recording", tag = "calls",
    params(("call_id" = String, Path)), request_body = RecordingToggle,
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn set_recording(
    State(st): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Ok_>> {
    // The call is checked before the body, so nobody learns anything about
    // calls that are not theirs from validation answers.
    check_call(&st, &caller, &call_id).await?;
    let b: RecordingToggle =
        serde_json::from_slice(&body).map_err(|e| ApiError::field("enabled", e.to_string()))?;
    let mut c = proto::pb::sipd::sipd_client::SipdClient::new(st.peers.sipd.clone());
    let r = c
        .set_recording(proto::pb::sipd::SetRecordingRequest {
            call_id,
            enabled: b.enabled,
        })
        .await
        .map_err(|s| peer_error("sipd", s))?
        .into_inner();
    if !r.found {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

/// Hang up an active call.
#[utoipa::path(delete, path = "/api/calls/{call_id}", tag = "calls", params(("call_id" = String, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn hangup(
    State(st): State<AppState>,
    caller: Caller,
    Path(call_id): Path<String>,
) -> ApiResult<Json<Ok_>> {
    check_call(&st, &caller, &call_id).await?;
    let mut c = proto::pb::sipd::sipd_client::SipdClient::new(st.peers.sipd.clone());
    let r = c
        .hangup(proto::pb::sipd::HangupRequest { call_id })
        .await
        .map_err(|s| peer_error("sipd", s))?
        .into_inner();
    if !r.found {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_cell("+15551234567"), "+15551234567");
    }
}
