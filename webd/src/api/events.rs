//! Live events for the dashboard (Server-Sent Events on `/api/events`) and
//! the dashboard summary.
//!
//! Each connection polls cheaply once a second: one indexed query for the
//! caller's registrations, `MAX(id)`/unread counts for voicemail and
//! messages, and sipd's `ListCalls` (in memory there). It sends an event only
//! when its part changed since the last tick:
//! - `registration` `{"devices": [{"id", "registered", "contacts"}]}`
//! - `calls` `{"calls": [ActiveCall...]}` (omitted while sipd is down)
//! - `voicemail` `{"latest_id", "unread"}` and `message` `{"latest_id", "unread"}`
//!
//! The first tick sends every part, so a client needs no separate fetch.
//! A comment line every 15 s keeps proxies from closing an idle stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::cdrs::{ActiveCall, Cdr};
use crate::AppState;
use crate::accounts::Caller;
use crate::http::error::{ApiResult, ErrorBody};
use proto::types::DeviceId;

#[derive(Default, PartialEq, Clone)]
struct Snapshot {
    regs: Value,
    calls: Option<Value>,
    vm: Value,
    msg: Value,
}

async fn snapshot(st: &AppState, caller: &Caller) -> ApiResult<Snapshot> {
    let scope = caller.scope();
    let regs: Vec<(DeviceId, i64, i64)> = sqlx::query_as(
        "SELECT d.id, \
           (SELECT COUNT(*) FROM registrations r WHERE r.device_id = d.id AND r.online AND r.expires_at > ?2), \
           (SELECT COUNT(*) FROM registrations r WHERE r.device_id = d.id AND r.expires_at > ?2) \
         FROM devices d WHERE (?1 IS NULL OR d.user_id = ?1) ORDER BY d.id",
    )
    .bind(scope)
    .bind(proto::time::now())
    .fetch_all(&st.pool)
    .await?;
    let regs = json!({"devices": regs.iter().map(|(id, on, n)| json!({"id": id, "registered": *on > 0, "contacts": n})).collect::<Vec<_>>()});
    let calls = super::cdrs::active_calls(st, caller)
        .await
        .ok()
        .map(|c| json!({ "calls": c }));
    let (vm_id, vm_unread): (i64, i64) = sqlx::query_as(
        "SELECT IFNULL(MAX(id), 0), IFNULL(SUM(NOT is_read), 0) FROM voicemails WHERE (?1 IS NULL OR user_id = ?1)",
    )
    .bind(scope)
    .fetch_one(&st.pool)
    .await?;
    let (msg_id, msg_unread): (i64, i64) = sqlx::query_as(
        "SELECT IFNULL(MAX(id), 0), IFNULL(SUM(direction = 'inbound' AND NOT is_read), 0) FROM messages \
         WHERE (?1 IS NULL OR user_id = ?1)",
    )
    .bind(scope)
    .fetch_one(&st.pool)
    .await?;
    Ok(Snapshot {
        regs,
        calls,
        vm: json!({"latest_id": vm_id, "unread": vm_unread}),
        msg: json!({"latest_id": msg_id, "unread": msg_unread}),
    })
}

/// The event stream.
#[utoipa::path(get, path = "/api/events", tag = "events",
    responses((status = 200, content_type = "text/event-stream", description = "Server-Sent Events"),
              (status = 401, body = ErrorBody)))]
pub async fn events(
    State(st): State<AppState>,
    caller: Caller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures::stream::unfold(
        (st, caller, None::<Snapshot>, Vec::<Event>::new()),
        |(st, caller, mut prev, mut pending)| async move {
            loop {
                if let Some(e) = pending.pop() {
                    return Some((Ok(e), (st, caller, prev, pending)));
                }
                if prev.is_some() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let Ok(now) = snapshot(&st, &caller).await else {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    continue;
                };
                let first = prev.is_none();
                let old = prev.take().unwrap_or_default();
                let ev = |name: &str, v: &Value| Event::default().event(name).data(v.to_string());
                let mut evs = Vec::new();
                if first || now.regs != old.regs {
                    evs.push(ev("registration", &now.regs));
                }
                if let Some(c) = &now.calls
                    && (first || now.calls != old.calls)
                {
                    evs.push(ev("calls", c));
                }
                if first || now.vm != old.vm {
                    evs.push(ev("voicemail", &now.vm));
                }
                if first || now.msg != old.msg {
                    evs.push(ev("message", &now.msg));
                }
                evs.reverse();
                pending = evs;
                prev = Some(now);
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Serialize, ToSchema)]
pub struct Dashboard {
    /// The caller's own DND.
    pub dnd: bool,
    /// System-wide DND.
    pub system_dnd: bool,
    pub unread_voicemails: i64,
    pub unread_messages: i64,
    pub calls_today: i64,
    pub missed_today: i64,
    pub devices_total: i64,
    pub devices_registered: i64,
    pub recent_calls: Vec<Cdr>,
    /// Empty while sipd is down (see `sipd_available`).
    pub active_calls: Vec<ActiveCall>,
    pub sipd_available: bool,
    /// Admins: unacknowledged alerts.
    pub open_alerts: i64,
    pub read_only: bool,
}

#[utoipa::path(get, path = "/api/dashboard", tag = "events",
    responses((status = 200, body = Dashboard), (status = 401, body = ErrorBody)))]
pub async fn dashboard(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Dashboard>> {
    let scope = caller.scope();
    let dnd: bool = sqlx::query_scalar("SELECT dnd FROM users WHERE id = ?")
        .bind(caller.id)
        .fetch_one(&st.pool)
        .await?;
    let snap = snapshot(&st, &caller).await?;
    let today = proto::time::fmt(
        chrono::Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc(),
    );
    let (calls_today, missed_today): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), IFNULL(SUM(disposition IN ('missed','voicemail')), 0) FROM cdrs \
         WHERE started_at >= ?2 AND (?1 IS NULL OR user_id = ?1)",
    )
    .bind(scope)
    .bind(&today)
    .fetch_one(&st.pool)
    .await?;
    let recent: Vec<Cdr> = super::cdrs::list_items(
        &st,
        &caller,
        crate::http::PageParams {
            per_page: Some("5".into()),
            ..Default::default()
        },
        super::cdrs::CdrFilter::default(),
    )
    .await?
    .items;
    let devices = snap.regs["devices"].as_array().cloned().unwrap_or_default();
    let active = if snap.calls.is_some() {
        super::cdrs::active_calls(&st, &caller).await.ok()
    } else {
        None
    };
    let open_alerts: i64 = if caller.is_admin() {
        sqlx::query_scalar("SELECT COUNT(*) FROM alerts WHERE NOT acknowledged")
            .fetch_one(&st.pool)
            .await?
    } else {
        0
    };
    Ok(Json(Dashboard {
        dnd,
        system_dnd: st.settings.get().bool("routing.dnd"),
        unread_voicemails: snap.vm["unread"].as_i64().unwrap_or(0),
        unread_messages: snap.msg["unread"].as_i64().unwrap_or(0),
        calls_today,
        missed_today,
        devices_total: devices.len() as i64,
        devices_registered: devices.iter().filter(|d| d["registered"] == true).count() as i64,
        recent_calls: recent,
        sipd_available: active.is_some(),
        active_calls: active.unwrap_or_default(),
        open_alerts,
        read_only: st.is_read_only(),
    }))
}
