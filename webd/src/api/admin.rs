//! Admin-only system endpoints: settings (`/api/system/config`), backup and
//! restore, stored backups, the security log, alerts, notification tests.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::Admin;
use crate::backup::{self, RestoreError};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{
    Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, ok, peer_error, reload_all,
};

/// What a secret that is set looks like on read; sending it back unchanged
/// keeps the stored value.
pub const MASK: &str = "********";

/// One setting with what the System screen needs to show and check it: its
/// group, label, help, kind and limits (all from `proto::settings::KEYS`).
#[derive(Serialize, ToSchema)]
pub struct Setting {
    pub key: String,
    /// The value; secrets read as `********` when set, `""` when not.
    pub value: String,
    pub default: String,
    pub secret: bool,
    /// The field's name on screen.
    pub label: String,
    /// One line in plain words.
    pub help: String,
    /// The id of its group in `groups`.
    pub group: String,
    /// text | secret | bool | int | decimal | choice | url | email |
    /// seconds_list | json
    pub kind: String,
    /// Limits of an int or decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Unit of an int, in words (seconds, days ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The values a choice allows, with their labels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SettingOption>,
    /// For json: the screen (path) where it is edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SettingOption {
    pub value: String,
    pub label: String,
}

#[derive(Serialize, ToSchema)]
pub struct SettingGroup {
    pub id: String,
    pub title: String,
}

#[derive(Serialize, ToSchema)]
pub struct Config {
    /// The System screen's sections, in order.
    pub groups: Vec<SettingGroup>,
    pub settings: Vec<Setting>,
    /// key -> value (secrets masked), for simple forms.
    pub values: BTreeMap<String, String>,
}

fn setting_view(k: &proto::settings::Key, v: &str) -> Setting {
    use proto::settings::Kind;
    let (mut min, mut max, mut unit, mut options, mut page) = (None, None, None, Vec::new(), None);
    match k.kind {
        Kind::Int {
            min: a,
            max: b,
            unit: u,
        } => {
            (min, max) = (Some(a as f64), Some(b as f64));
            unit = (!u.is_empty()).then(|| u.to_owned());
        }
        Kind::Decimal { min: a, max: b } => (min, max) = (Some(a), Some(b)),
        Kind::Choice(o) => {
            options = o
                .iter()
                .map(|(value, label)| SettingOption {
                    value: (*value).into(),
                    label: (*label).into(),
                })
                .collect()
        }
        Kind::Json { page: p } => page = Some(p.to_owned()),
        _ => {}
    }
    Setting {
        key: k.name.into(),
        value: if k.secret && !v.is_empty() {
            MASK.into()
        } else {
            v.into()
        },
        default: k.default.into(),
        secret: k.secret,
        label: k.label.into(),
        help: k.help.into(),
        group: k.group.id().into(),
        kind: k.kind.name().into(),
        min,
        max,
        unit,
        options,
        page,
    }
}

fn config_view(st: &AppState) -> Config {
    let s = st.settings.get();
    let groups = proto::settings::Group::ALL
        .iter()
        .map(|g| SettingGroup {
            id: g.id().into(),
            title: g.title().into(),
        })
        .collect();
    let settings: Vec<Setting> = proto::settings::KEYS
        .iter()
        .map(|k| setting_view(k, s.str(k.name)))
        .collect();
    let values = settings
        .iter()
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    Config {
        groups,
        settings,
        values,
    }
}

#[utoipa::path(get, path = "/api/system/config", tag = "system",
    responses((status = 200, body = Config), (status = 403, body = ErrorBody)))]
pub async fn config_get(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<Config>> {
    Ok(Json(config_view(&st)))
}

/// Body: `{"values": {"key": "value", ...}}` (or the map itself).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ConfigBody {
    Wrapped {
        values: BTreeMap<String, serde_json::Value>,
    },
    Flat(BTreeMap<String, serde_json::Value>),
}

/// Validates one value for a key; `None` when fine. The kind's limits
/// (`proto::settings::Kind`) first, then what only this key needs.
pub fn check_value(key: &str, v: &str) -> Option<String> {
    if v.chars().count() > 4000 {
        return Some("must be at most 4000 characters".into());
    }
    let k = proto::settings::key(key)?;
    if let Some(problem) = k.kind.problem(v) {
        return Some(problem);
    }
    let msg: Option<&str> = match key {
        "twilio.termination_uri" => termination_uri_problem(v),
        "sip.local_address" => local_address_problem(v),
        "sip.public_address" => (!v.is_empty() && !is_ip_or_host_name(v))
            .then_some("must be an IP address or a host name"),
        "sip.stun_server" => (!v.is_empty() && !is_host_port(v))
            .then_some("must be a host name or IP, optionally with :port"),
        "system.timezone" => v
            .parse::<chrono_tz::Tz>()
            .is_err()
            .then_some("must be a time zone such as America/New_York or Europe/London"),
        "system.default_country" => (v.is_empty()
            || v.len() > 3
            || !v.bytes().all(|b| b.is_ascii_digit())
            || v.starts_with('0'))
        .then_some("must be a country calling code (1 to 3 digits, such as 1 or 44)"),
        proto::ssrf::ALLOW_KEY => (!proto::ssrf::AllowList::invalid_entries(v).is_empty())
            .then_some("must be host names or IP addresses separated by commas, such as gotify.lan, 192.168.1.20"),
        "system.trusted_proxy" | "sip.trunk_source_ips" => v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .any(|s| s.parse::<std::net::IpAddr>().is_err())
            .then_some("must be IP addresses separated by commas"),
        "twilio.account_sid" => (!v.is_empty() && proto::types::AccountSid::parse(v).is_err())
            .then_some("must be AC followed by 32 hex digits"),
        "calls.record_dtmf" => (v.is_empty()
            || v.len() > 8
            || !v.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
        .then_some("must be 1 to 8 phone keys (0-9, * and #), such as *1"),
        "voicemail.access_code" => (v.len() > 8
            || !v.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'#'))
        .then_some("must be up to 8 phone keys (0-9, * and #), such as *97, or empty"),
        "routing.business_hours" => (!serde_json::from_str::<serde_json::Value>(v)
            .is_ok_and(|j| j.is_object()))
        .then_some("must be a JSON object such as {\"mon\":[\"09:00\",\"17:00\"]}"),
        "routing.holidays" => (!serde_json::from_str::<Vec<String>>(v).is_ok_and(|d| {
            d.iter()
                .all(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
        }))
        .then_some("must be a JSON array of dates YYYY-MM-DD"),
        _ => None,
    };
    msg.map(str::to_owned)
}

/// `sip.local_address` must be one of this host's own addresses: anything
/// else would put an address phones cannot reach into every SDP.
fn local_address_problem(v: &str) -> Option<&'static str> {
    if v.is_empty() {
        return None;
    }
    let Ok(ip) = v.parse::<std::net::IpAddr>() else {
        return Some("must be an IP address of this host");
    };
    if ip.is_unspecified() {
        return Some("must be an IP address of this host");
    }
    // In a container behind published ports (Compose sets GOSIP_CONTAINER)
    // the address phones reach is the docker host's, which no interface
    // here carries: it cannot be checked from inside.
    if std::env::var_os("GOSIP_CONTAINER").is_some_and(|v| !v.is_empty() && v != "0") {
        return None;
    }
    // Binding succeeds only for an address one of this host's interfaces
    // carries.
    let ours = std::net::UdpSocket::bind(std::net::SocketAddr::new(ip, 0)).is_ok();
    (!ours)
        .then_some("is not an address of this host (the system status lists the addresses in use)")
}

/// An IP literal or a DNS host name (letters, digits, hyphens, dots).
fn is_ip_or_host_name(v: &str) -> bool {
    if v.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && v.bytes().any(|b| b.is_ascii_alphabetic())
}

/// `host` or `host:port` with a valid host and a port 1-65535.
fn is_host_port(v: &str) -> bool {
    match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            is_ip_or_host_name(h) && p.parse::<u16>().is_ok_and(|p| p > 0)
        }
        _ => is_ip_or_host_name(v),
    }
}

/// Why sipd could not reach the trunk at this address (see
/// [`proto::trunk::TrunkUri`], which sipd reads it with).
fn termination_uri_problem(v: &str) -> Option<&'static str> {
    proto::trunk::TrunkUri::parse(v).err()
}

/// Change settings; secrets sent back as `********` stay unchanged. Every
/// daemon is asked to reload right after.
#[utoipa::path(put, path = "/api/system/config", tag = "system", request_body = ConfigBody,
    responses((status = 200, body = Config), (status = 422, body = ErrorBody)))]
pub async fn config_put(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<ConfigBody>,
) -> ApiResult<Json<Config>> {
    let values = match b {
        ConfigBody::Wrapped { values } => values,
        ConfigBody::Flat(v) => v,
    };
    let mut c = Check::new();
    let mut writes = Vec::new();
    for (k, v) in values {
        let v = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                c.fail(&k, "must be a string, number or boolean");
                continue;
            }
        };
        let Some(key) = proto::settings::key(&k) else {
            c.fail(&k, "is not a known setting");
            continue;
        };
        if key.secret && v == MASK {
            continue;
        }
        let v = v.trim().to_owned();
        if let Some(m) = check_value(&k, &v) {
            c.fail(&k, m);
            continue;
        }
        writes.push((k, v));
    }
    // Registrations: the shortest may not exceed the longest.
    let now = st.settings.get();
    let effective = |key: &str| {
        writes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| now.str(key))
            .parse::<u64>()
            .unwrap_or(0)
    };
    let (min_e, max_e) = (effective("sip.min_expires"), effective("sip.max_expires"));
    if min_e > max_e {
        c.fail(
            "sip.min_expires",
            format!("must not be longer than the longest registration ({max_e} seconds)"),
        );
    }
    // Gotify is reached by notifyd: refuse a private server unless the
    // admin allows it, in this same request or before.
    let allow = writes
        .iter()
        .find(|(k, _)| k == proto::ssrf::ALLOW_KEY)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| st.settings.get().str(proto::ssrf::ALLOW_KEY).to_owned());
    let allow = proto::ssrf::AllowList::parse(&allow);
    for (k, v) in &writes {
        if k == "gotify.url" && !v.is_empty() {
            super::notify_prefs::check_reachable(k, v, &allow, &mut c).await;
        }
    }
    c.done()?;
    let mut tx = st.pool.begin().await?;
    for (k, v) in &writes {
        sqlx::query(
            "INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(k)
        .bind(v)
        .bind(proto::time::now())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    reload_all(&st).await;
    Ok(Json(config_view(&st)))
}

/// Take a backup now; the answer is the archive (also kept in `backups/`).
#[utoipa::path(post, path = "/api/system/backup", tag = "system",
    responses((status = 200, content_type = "application/x-tar", description = "backup archive"),
              (status = 403, body = ErrorBody)))]
pub async fn backup_now(State(st): State<AppState>, _a: Admin) -> ApiResult<Response> {
    let path = backup::create(&st, "").await?;
    download(&path).await
}

async fn download(path: &std::path::Path) -> ApiResult<Response> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        data,
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct BackupFile {
    pub name: String,
    pub size: u64,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/system/backups", tag = "system",
    responses((status = 200, body = Vec<BackupFile>)))]
pub async fn backups(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<Vec<BackupFile>>> {
    Ok(Json(
        backup::list(&st)
            .await?
            .into_iter()
            .map(|(name, size, created_at)| BackupFile {
                name,
                size,
                created_at,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/system/backups/{name}", tag = "system", params(("name" = String, Path)),
    responses((status = 200, content_type = "application/x-tar", description = "backup archive"),
              (status = 404, body = ErrorBody)))]
pub async fn backup_download(
    State(st): State<AppState>,
    _a: Admin,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let p = backup::path_of(&st, &name).ok_or(ApiError::NotFound)?;
    download(&p).await
}

#[derive(Serialize, ToSchema)]
pub struct Restored {
    pub ok: bool,
    /// When the restored backup was taken.
    pub backup_created_at: String,
    pub message: String,
}

/// What a restore would do, without doing it.
#[derive(Serialize, ToSchema)]
pub struct RestorePreview {
    /// When the backup was taken.
    pub backup_created_at: String,
    /// The GoSIP version that wrote it.
    pub gosip_version: String,
    /// What the backup holds; a restore replaces everything with it.
    pub contents: backup::Contents,
    pub message: String,
}

fn preview(m: backup::Manifest, contents: backup::Contents) -> RestorePreview {
    RestorePreview {
        message: format!(
            "Restoring replaces every setting, user, phone, number, rule, call, message and \
             voicemail now in GoSIP with this backup from {}, and logs everyone out. \
             A backup of what is there now is kept first (listed under automatic backups).",
            m.created_at
        ),
        backup_created_at: m.created_at,
        gosip_version: m.gosip_version,
        contents,
    }
}

fn restored(m: backup::Manifest) -> Restored {
    Restored {
        ok: true,
        message: format!(
            "Restored the backup from {}. Everyone has to log in again.",
            m.created_at
        ),
        backup_created_at: m.created_at,
    }
}

fn restore_error(e: RestoreError) -> ApiError {
    match e {
        RestoreError::Internal(e) => ApiError::Internal(e),
        e => ApiError::field("file", e.to_string()),
    }
}

/// Check an uploaded backup archive (same bodies as the restore) and say
/// what restoring it would replace. Changes nothing.
#[utoipa::path(post, path = "/api/system/restore/check", tag = "system",
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 200, body = RestorePreview), (status = 422, body = ErrorBody)))]
pub async fn restore_check(
    State(st): State<AppState>,
    _a: Admin,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RestorePreview>> {
    let archive = uploaded_archive(&headers, body).await?;
    let (m, c) = backup::restore(&st, &archive, backup::Mode::Check)
        .await
        .map_err(restore_error)?;
    Ok(Json(preview(m, c)))
}

/// What restoring one of the automatic backups would replace. Changes nothing.
#[utoipa::path(get, path = "/api/system/backups/{name}/check", tag = "system", params(("name" = String, Path)),
    responses((status = 200, body = RestorePreview), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn backup_check(
    State(st): State<AppState>,
    _a: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<RestorePreview>> {
    let archive = stored_archive(&st, &name).await?;
    let (m, c) = backup::restore(&st, &archive, backup::Mode::Check)
        .await
        .map_err(restore_error)?;
    Ok(Json(preview(m, c)))
}

/// Restore one of the automatic backups kept on this machine. All sessions end.
#[utoipa::path(post, path = "/api/system/backups/{name}/restore", tag = "system", params(("name" = String, Path)),
    responses((status = 200, body = Restored), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn backup_restore(
    State(st): State<AppState>,
    _a: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Restored>> {
    let archive = stored_archive(&st, &name).await?;
    let (m, _) = backup::restore(&st, &archive, backup::Mode::Apply)
        .await
        .map_err(restore_error)?;
    Ok(Json(restored(m)))
}

async fn stored_archive(st: &AppState, name: &str) -> ApiResult<Vec<u8>> {
    let p = backup::path_of(st, name).ok_or(ApiError::NotFound)?;
    tokio::fs::read(&p)
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}

async fn uploaded_archive(headers: &axum::http::HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let archive = if ct.starts_with("multipart/form-data") {
        multipart_file(ct, body).await?
    } else {
        body
    };
    if archive.is_empty() {
        return Err(ApiError::field("file", "upload a backup archive (.tar)"));
    }
    Ok(archive)
}

/// Restore from an uploaded backup archive (the raw tar as the body, or a
/// multipart form with a `file` field). Everything is validated first; a
/// bad archive changes nothing. All sessions end.
#[utoipa::path(post, path = "/api/system/restore", tag = "system",
    request_body(content = Vec<u8>, content_type = "application/x-tar"),
    responses((status = 200, body = Restored), (status = 422, body = ErrorBody)))]
pub async fn restore(
    State(st): State<AppState>,
    _a: Admin,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Restored>> {
    let archive = uploaded_archive(&headers, body).await?;
    let (m, _) = backup::restore(&st, &archive, backup::Mode::Apply)
        .await
        .map_err(restore_error)?;
    Ok(Json(restored(m)))
}

async fn multipart_file(ct: &str, body: Bytes) -> ApiResult<Bytes> {
    let req = axum::http::Request::builder()
        .header(header::CONTENT_TYPE, ct)
        .body(axum::body::Body::from(body))
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut mp =
        <axum::extract::Multipart as axum::extract::FromRequest<()>>::from_request(req, &())
            .await
            .map_err(|e| ApiError::field("file", e.body_text()))?;
    while let Some(f) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::field("file", e.body_text()))?
    {
        if f.name() == Some("file") {
            return f
                .bytes()
                .await
                .map_err(|e| ApiError::field("file", e.body_text()));
        }
    }
    Err(ApiError::field("file", "is missing"))
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct SecurityEvent {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub ip_address: String,
    pub username: String,
    pub detail: String,
    pub created_at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// e.g. web_login_failed, sip_auth_failed, ban
    pub kind: Option<String>,
    /// sipd, webd, twiliod ...
    pub source: Option<String>,
}

#[utoipa::path(get, path = "/api/security-events", tag = "system", params(PageParams, EventFilter),
    responses((status = 200, body = Page<SecurityEvent>), (status = 403, body = ErrorBody)))]
pub async fn security_events(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(f): ValidQuery<EventFilter>,
) -> ApiResult<Json<Page<SecurityEvent>>> {
    let pg = p.resolve(
        &[
            ("created_at", "created_at"),
            ("kind", "kind"),
            ("ip_address", "ip_address"),
        ],
        "DESC",
    )?;
    let kind = f.kind.filter(|s| !s.is_empty());
    let source = f.source.filter(|s| !s.is_empty());
    let filter = "(?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR source = ?2)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM security_events WHERE {filter}"
    )))
    .bind(&kind)
    .bind(&source)
    .fetch_one(&st.pool)
    .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, source, kind, ip_address, username, detail, created_at FROM security_events \
         WHERE {filter} ORDER BY {} LIMIT ?3 OFFSET ?4",
        pg.order_by
    )))
    .bind(&kind)
    .bind(&source)
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct Alert {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub message: String,
    pub acknowledged: bool,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/alerts", tag = "system", params(PageParams),
    responses((status = 200, body = Page<Alert>), (status = 403, body = ErrorBody)))]
pub async fn alerts(
    State(st): State<AppState>,
    _a: Admin,
    ValidQuery(p): ValidQuery<PageParams>,
) -> ApiResult<Json<Page<Alert>>> {
    let pg = p.resolve(
        &[
            ("created_at", "created_at"),
            ("acknowledged", "acknowledged"),
        ],
        "DESC",
    )?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts")
        .fetch_one(&st.pool)
        .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, source, kind, message, acknowledged, created_at FROM alerts ORDER BY {} LIMIT ? OFFSET ?",
        pg.order_by
    )))
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(pg.wrap(items, total)))
}

#[utoipa::path(put, path = "/api/alerts/{id}/ack", tag = "system", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn alert_ack(State(st): State<AppState>, _a: Admin, Id(id): Id) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query("UPDATE alerts SET acknowledged = 1 WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

#[derive(Deserialize, ToSchema)]
pub struct NotifyTest {
    /// `email`, `gotify` or `webhook`.
    pub channel: String,
    /// Email address or webhook URL; empty = the configured one.
    #[serde(default)]
    pub target: String,
}

#[derive(Serialize, ToSchema)]
pub struct NotifyTestResult {
    pub ok: bool,
    pub error: String,
}

/// Send a test notification through notifyd.
#[utoipa::path(post, path = "/api/system/notify-test", tag = "system", request_body = NotifyTest,
    responses((status = 200, body = NotifyTestResult), (status = 503, body = ErrorBody)))]
pub async fn notify_test(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<NotifyTest>,
) -> ApiResult<Json<NotifyTestResult>> {
    let mut c = Check::new();
    c.one_of("channel", &b.channel, &["email", "gotify", "webhook"]);
    c.len("target", &b.target, 0, 500);
    c.done()?;
    let mut cl = proto::pb::notifyd::notifyd_client::NotifydClient::new(st.peers.notifyd.clone());
    let r = cl
        .send_test(proto::pb::notifyd::SendTestRequest {
            channel: b.channel,
            target: b.target,
            user_id: 0,
        })
        .await
        .map_err(|s| peer_error("notifyd", s))?
        .into_inner();
    Ok(Json(NotifyTestResult {
        ok: r.ok,
        error: r.error,
    }))
}

#[derive(Serialize, sqlx::FromRow, ToSchema)]
pub struct WebhookEndpoint {
    pub id: i64,
    pub url: String,
    /// JSON array of event kinds; empty = all.
    #[schema(value_type = Vec<String>)]
    #[sqlx(skip)]
    pub events: Vec<String>,
    #[serde(skip)]
    #[sqlx(rename = "events")]
    pub events_json: String,
    pub enabled: bool,
    pub created_at: String,
}

pub const EVENT_KINDS: &[&str] = &[
    "voicemail",
    "sms",
    "missed_call",
    "call_started",
    "call_ended",
    "admin_alert",
];

#[utoipa::path(get, path = "/api/webhook-endpoints", tag = "system",
    responses((status = 200, body = Vec<WebhookEndpoint>)))]
pub async fn webhooks_list(
    State(st): State<AppState>,
    _a: Admin,
) -> ApiResult<Json<Vec<WebhookEndpoint>>> {
    let mut rows: Vec<WebhookEndpoint> = sqlx::query_as(
        "SELECT id, url, events, enabled, created_at FROM webhook_endpoints ORDER BY id",
    )
    .fetch_all(&st.pool)
    .await?;
    for r in &mut rows {
        r.events = serde_json::from_str(&r.events_json).unwrap_or_default();
    }
    Ok(Json(rows))
}

#[derive(Deserialize, ToSchema)]
pub struct NewWebhook {
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    /// HMAC secret; generated when empty (shown once).
    #[serde(default)]
    pub secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    /// The signing secret: shown once.
    pub secret: String,
}

#[utoipa::path(post, path = "/api/webhook-endpoints", tag = "system", request_body = NewWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 422, body = ErrorBody)))]
pub async fn webhooks_create(
    State(st): State<AppState>,
    _a: Admin,
    ValidJson(b): ValidJson<NewWebhook>,
) -> ApiResult<(axum::http::StatusCode, Json<CreatedWebhook>)> {
    let mut c = Check::new();
    let url = b.url.trim().to_owned();
    c.len("url", &url, 1, 500);
    if url::Url::parse(&url).map_or(true, |u| {
        !matches!(u.scheme(), "http" | "https") || u.host_str().is_none()
    }) {
        c.fail("url", "must be an http(s) URL");
    } else {
        let allow = proto::ssrf::AllowList::parse(st.settings.get().str(proto::ssrf::ALLOW_KEY));
        super::notify_prefs::check_reachable("url", &url, &allow, &mut c).await;
    }
    for e in &b.events {
        if !EVENT_KINDS.contains(&e.as_str()) {
            c.fail(
                "events",
                format!("unknown event {e:?}; known: {}", EVENT_KINDS.join(", ")),
            );
            break;
        }
    }
    if !b.secret.is_empty() {
        c.len("secret", &b.secret, 16, 200);
    }
    c.done()?;
    let secret = if b.secret.is_empty() {
        crate::accounts::random_token(24)
    } else {
        b.secret
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_endpoints (url, secret, events, enabled, created_at) VALUES (?, ?, ?, 1, ?) RETURNING id",
    )
    .bind(&url)
    .bind(&secret)
    .bind(serde_json::to_string(&b.events).unwrap_or_else(|_| "[]".into()))
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(CreatedWebhook {
            id,
            url,
            events: b.events,
            secret,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct WebhookChange {
    /// false pauses the endpoint (nothing is sent to it, queued deliveries
    /// included); true sends to it again.
    pub enabled: bool,
}

/// Pause or resume a webhook endpoint.
#[utoipa::path(put, path = "/api/webhook-endpoints/{id}", tag = "system", params(("id" = i64, Path)),
    request_body = WebhookChange,
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn webhooks_update(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
    ValidJson(b): ValidJson<WebhookChange>,
) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query("UPDATE webhook_endpoints SET enabled = ? WHERE id = ?")
        .bind(b.enabled)
        .bind(id)
        .execute(&st.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}

#[utoipa::path(delete, path = "/api/webhook-endpoints/{id}", tag = "system", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 404, body = ErrorBody)))]
pub async fn webhooks_delete(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id,
) -> ApiResult<Json<Ok_>> {
    let r = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(ok())
}
