//! `/api/devices`: SIP devices with generated credentials, registration
//! status from `registrations`, and the provisioning QR code.
//! Admins manage every device; users see and edit their own (name,
//! recording, new password) and get 404 for the others.
//! Every change is pushed to sipd (gRPC `ReloadDevices`) before the answer,
//! so a phone can register the moment its device exists.
//! A device's `transport` and `srtp` say how its phone is set up (the QR and
//! the credentials carry them) and what sipd demands of its calls; only
//! admins change them.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::accounts::{Admin, Caller};
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Check, Id, Ok_, Page, PageParams, ValidJson, ValidQuery, nullable, ok};
use crate::qr;
use proto::types::{DeviceId, DidId, RouteId, UserId};

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Device {
    #[schema(value_type = i64)]
    pub id: DeviceId,
    #[schema(value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    pub name: String,
    /// SIP user name (digest username and AOR user part).
    pub username: String,
    pub extension: Option<String>,
    /// `grandstream`, `softphone` or `webrtc`.
    pub device_type: String,
    pub recording_enabled: bool,
    /// Message-waiting NOTIFYs without a subscription (for phones that
    /// never subscribe to their mailbox).
    #[serde(default)]
    pub mwi_unsolicited: bool,
    /// "Busy when in a call": while in a call, other calls do not ring it
    /// (the caller hears busy, or voicemail answers) instead of call
    /// waiting on the phone.
    #[serde(default)]
    pub busy_in_call: bool,
    /// How the phone is set up to reach GoSIP.
    pub transport: Transport,
    /// Whether its calls must, may or never use SRTP.
    pub srtp: Srtp,
    #[schema(value_type = Option<i64>)]
    pub caller_id_did_id: Option<DidId>,
    pub realm: String,
    pub created_at: String,
    /// At least one unexpired, online registration.
    #[sqlx(skip)]
    pub registered: bool,
    #[sqlx(skip)]
    pub registrations: Vec<Registration>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Registration {
    #[serde(skip)]
    #[schema(value_type = i64)]
    pub device_id: DeviceId,
    pub contact: String,
    pub user_agent: String,
    pub ip_address: String,
    pub transport: String,
    pub expires_at: String,
    pub last_seen: Option<String>,
    pub online: bool,
}

const COLS: &str = "id, user_id, name, username, extension, device_type, recording_enabled, mwi_unsolicited, busy_in_call, \
                    transport, srtp, caller_id_did_id, realm, created_at";
const SORTS: &[(&str, &str)] = &[
    ("created_at", "created_at"),
    ("name", "name"),
    ("username", "username"),
    ("extension", "extension"),
];
pub const DEVICE_TYPES: &[&str] = &["grandstream", "softphone", "webrtc"];

/// How a phone is set up to reach GoSIP (`devices.transport`): UDP or TCP
/// on the SIP port, TLS on the SIP-over-TLS port. sipd refuses a phone set
/// to TLS that signals in clear.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The URI `transport` parameter (RFC 3261 section 19.1.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
        }
    }
}

/// A device's SRTP policy (`devices.srtp`), as sipd applies it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::Type, ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
pub enum Srtp {
    /// Every call is SRTP; needs transport TLS.
    Required,
    /// SRTP when the phone offers or accepts it over TLS, else plain RTP.
    #[default]
    Optional,
    /// Plain RTP only.
    Off,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Only this owner's devices (admins).
    #[param(value_type = Option<i64>)]
    pub user_id: Option<String>,
    /// Substring of name, username or extension.
    pub q: Option<String>,
}

#[utoipa::path(get, path = "/api/devices", tag = "devices", params(PageParams, DeviceFilter),
    responses((status = 200, body = Page<Device>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    ValidQuery(p): ValidQuery<PageParams>,
    ValidQuery(f): ValidQuery<DeviceFilter>,
) -> ApiResult<Json<Page<Device>>> {
    let pg = p.resolve(SORTS, "DESC")?;
    let owner = match (caller.scope(), f.user_id.as_deref()) {
        (Some(me), _) => Some(me),
        (None, None | Some("")) => None,
        (None, Some(s)) => Some(
            s.parse::<i64>()
                .map(UserId)
                .map_err(|_| ApiError::field("user_id", "must be a number"))?,
        ),
    };
    let q = f.q.unwrap_or_default();
    if q.chars().count() > 100 {
        return Err(ApiError::field("q", "must be at most 100 characters"));
    }
    let like = format!("%{}%", q.replace(['%', '_'], ""));
    let filter = "(?1 IS NULL OR user_id = ?1) AND (name LIKE ?2 OR username LIKE ?2 OR IFNULL(extension,'') LIKE ?2)";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM devices WHERE {filter}"
    )))
    .bind(owner)
    .bind(&like)
    .fetch_one(&st.pool)
    .await?;
    let mut items: Vec<Device> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM devices WHERE {filter} ORDER BY {} LIMIT ?3 OFFSET ?4",
        pg.order_by
    )))
    .bind(owner)
    .bind(&like)
    .bind(pg.limit())
    .bind(pg.offset())
    .fetch_all(&st.pool)
    .await?;
    attach_registrations(&st, &mut items).await?;
    Ok(Json(pg.wrap(items, total)))
}

async fn attach_registrations(st: &AppState, devices: &mut [Device]) -> ApiResult<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = devices.iter().map(|d| d.id.to_string()).collect();
    let regs: Vec<Registration> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT device_id, contact, user_agent, ip_address, transport, expires_at, last_seen, online \
         FROM registrations WHERE expires_at > ? AND device_id IN ({}) ORDER BY id",
        ids.join(",")
    )))
    .bind(proto::time::now())
    .fetch_all(&st.pool)
    .await?;
    for r in regs {
        if let Some(d) = devices.iter_mut().find(|d| d.id == r.device_id) {
            d.registered |= r.online;
            d.registrations.push(r);
        }
    }
    Ok(())
}

/// Loads a device the caller may see (404 otherwise).
pub async fn load(st: &AppState, caller: &Caller, id: DeviceId) -> ApiResult<Device> {
    let d: Option<Device> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM devices WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)"
    )))
    .bind(id)
    .bind(caller.scope())
    .fetch_optional(&st.pool)
    .await?;
    let mut d = [d.ok_or(ApiError::NotFound)?];
    attach_registrations(st, &mut d).await?;
    let [d] = d;
    Ok(d)
}

#[utoipa::path(get, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id<DeviceId>,
) -> ApiResult<Json<Device>> {
    Ok(Json(load(&st, &caller, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct NewDevice {
    pub name: String,
    /// SIP user name; generated when empty.
    pub username: Option<String>,
    /// Own password (at least 12 characters); generated when empty.
    pub password: Option<String>,
    pub extension: Option<String>,
    pub device_type: Option<String>,
    pub recording_enabled: Option<bool>,
    /// Message-waiting NOTIFYs without a subscription; default off.
    pub mwi_unsolicited: Option<bool>,
    /// Busy when in a call (no call waiting); default off.
    pub busy_in_call: Option<bool>,
    /// Default `udp`.
    pub transport: Option<Transport>,
    /// Default `optional`; `required` needs transport `tls`.
    pub srtp: Option<Srtp>,
    /// Owner: absent = the caller, `null` = nobody.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub user_id: Option<Option<UserId>>,
    #[schema(value_type = Option<i64>)]
    pub caller_id_did_id: Option<DidId>,
}

/// A device plus, right after its credentials were (re)generated, the clear
/// password: shown once, never returned again.
#[derive(Serialize, ToSchema)]
pub struct DeviceWithSecret {
    #[serde(flatten)]
    pub device: Device,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `sip:user:password@host:port;transport=udp|tcp|tls`, the QR payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_uri: Option<String>,
    /// SIP server host and port to enter in a phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The SIP port for UDP and TCP, the SIP-over-TLS port for TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// For transport TLS: SHA-256 of sipd's certificate (`AB:CD:...`), for
    /// a phone that asks to trust or pin it; absent when sipd did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sha256: Option<String>,
}

fn check_username(c: &mut Check, u: &str) {
    c.len("username", u, 3, 32);
    if !u
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        c.fail("username", "may contain only letters, digits, . _ -");
    }
}

fn check_extension(c: &mut Check, e: &str) {
    if !(2..=6).contains(&e.len()) || !e.bytes().all(|b| b.is_ascii_digit()) {
        c.fail("extension", "must be 2 to 6 digits");
    }
}

/// SDES puts the SRTP keys in the SDP (RFC 4568 section 8), which only
/// TLS keeps secret: sipd never sends them over a hop in clear.
fn check_encryption(c: &mut Check, transport: Transport, srtp: Srtp) {
    if srtp == Srtp::Required && transport != Transport::Tls {
        c.fail(
            "srtp",
            "can be required only with transport tls: SRTP keys are only sent over TLS, so the phone must use TLS",
        );
    }
}

fn check_custom_password(c: &mut Check, p: &str) {
    c.len("password", p, 12, 64);
    if p.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        c.fail("password", "may not contain spaces or control characters");
    }
}

/// Create a device with SIP credentials (admins).
#[utoipa::path(post, path = "/api/devices", tag = "devices", request_body = NewDevice,
    responses((status = 201, body = DeviceWithSecret), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    Admin(caller): Admin,
    headers: HeaderMap,
    ValidJson(b): ValidJson<NewDevice>,
) -> ApiResult<(StatusCode, Json<DeviceWithSecret>)> {
    let username = b
        .username
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            format!(
                "dev{}",
                &crate::accounts::random_token(6)
                    .to_lowercase()
                    .replace(['-', '_'], "x")
            )
        });
    let device_type = b.device_type.unwrap_or_else(|| "softphone".into());
    let transport = b.transport.unwrap_or_default();
    let srtp = b.srtp.unwrap_or_default();
    let extension = b
        .extension
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty());
    let mut c = Check::new();
    c.len("name", b.name.trim(), 1, 100);
    check_username(&mut c, &username);
    c.one_of("device_type", &device_type, DEVICE_TYPES);
    check_encryption(&mut c, transport, srtp);
    if let Some(e) = &extension {
        check_extension(&mut c, e);
    }
    if let Some(p) = &b.password {
        check_custom_password(&mut c, p);
    }
    c.done()?;
    let owner = b.user_id.unwrap_or(Some(caller.id));
    if let Some(o) = owner {
        exists(&st, o, "user_id").await?;
    }
    if let Some(did) = b.caller_id_did_id {
        exists(&st, did, "caller_id_did_id").await?;
    }
    let password = b.password.unwrap_or_else(qr::generate_password);
    let realm = qr::realm(st.settings.get().str("sip.realm"));
    let (md5, sha) = qr::ha1(&username, &realm, &password);
    let id: DeviceId = sqlx::query_scalar(
        "INSERT INTO devices (user_id, name, username, password_hash, ha1_sha256, realm, extension, \
         device_type, recording_enabled, mwi_unsolicited, busy_in_call, transport, srtp, caller_id_did_id, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(owner)
    .bind(b.name.trim())
    .bind(&username)
    .bind(md5)
    .bind(sha)
    .bind(&realm)
    .bind(&extension)
    .bind(&device_type)
    .bind(b.recording_enabled.unwrap_or(false))
    .bind(b.mwi_unsolicited.unwrap_or(false))
    .bind(b.busy_in_call.unwrap_or(false))
    .bind(transport)
    .bind(srtp)
    .bind(b.caller_id_did_id)
    .bind(proto::time::now())
    .fetch_one(&st.pool)
    .await
    .map_err(unique_to_field)?;
    reload_sipd(&st).await;
    let device = load(&st, &caller, id).await?;
    Ok((
        StatusCode::CREATED,
        Json(with_secret(&st, &headers, device, password).await),
    ))
}

/// Tells sipd the devices changed and waits (briefly) until it uses them.
/// A sipd that is down or slow only delays the change: it re-reads the
/// table on start and every 30 s, so the API answer does not fail.
pub async fn reload_sipd(st: &AppState) {
    use proto::pb::sipd::ReloadDevicesRequest;
    use proto::pb::sipd::sipd_client::SipdClient;
    let mut c = SipdClient::new(st.peers.sipd.clone());
    match tokio::time::timeout(
        std::time::Duration::from_secs(2),
        c.reload_devices(ReloadDevicesRequest {}),
    )
    .await
    {
        Ok(Ok(r)) => tracing::debug!(devices = r.into_inner().devices, "sipd reloaded devices"),
        Ok(Err(e)) => tracing::warn!(
            code = ?e.code(), message = e.message(),
            "sipd did not reload devices; it picks the change up within 30 s"
        ),
        Err(_) => tracing::warn!("sipd did not answer the device reload within 2 s"),
    }
}

fn unique_to_field(e: sqlx::Error) -> ApiError {
    let msg = e
        .as_database_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    match ApiError::from(e) {
        ApiError::Conflict(_) if msg.contains("extension") => {
            ApiError::field("extension", "is already used by another device")
        }
        ApiError::Conflict(_) => ApiError::field("username", "is already used by another device"),
        o => o,
    }
}

/// An id type whose rows live in one table, for [`exists`].
pub trait Table: Copy {
    const TABLE: &'static str;
    fn raw(self) -> i64;
}

macro_rules! table {
    ($($t:ty => $name:literal),*) => {$(
        impl Table for $t {
            const TABLE: &'static str = $name;
            fn raw(self) -> i64 {
                self.0
            }
        }
    )*};
}

table!(UserId => "users", DeviceId => "devices", DidId => "dids", RouteId => "routes");

/// 422 naming `field` when `id` is not a row of its table.
pub async fn exists<T: Table>(st: &AppState, id: T, field: &str) -> ApiResult<()> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {} WHERE id = ?",
        T::TABLE
    )))
    .bind(id.raw())
    .fetch_one(&st.pool)
    .await?;
    if n == 0 {
        return Err(ApiError::field(field, "does not exist"));
    }
    Ok(())
}

async fn with_secret(
    st: &AppState,
    headers: &HeaderMap,
    device: Device,
    password: String,
) -> DeviceWithSecret {
    st.limits
        .device_secrets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(device.id, (password.clone(), Instant::now()));
    let host = sip_host(st, headers);
    let (port, tls_sha256) = sip_port(st, device.transport).await;
    DeviceWithSecret {
        sip_uri: Some(qr::sip_uri(
            &device.username,
            &password,
            &host,
            port,
            device.transport,
        )),
        server: Some(host),
        port: Some(port),
        tls_sha256,
        password: Some(password),
        device,
    }
}

/// The port a phone set to `transport` uses, and for TLS the certificate
/// fingerprint sipd reports (asked of sipd, whose TLS port is its own).
pub async fn sip_port(st: &AppState, transport: Transport) -> (u16, Option<String>) {
    match transport {
        Transport::Udp | Transport::Tcp => (st.cfg.sip_port, None),
        Transport::Tls => super::sip_tls::for_phone(st).await,
    }
}

/// The SIP server address phones should use: `sip.local_address`, else
/// `sip.public_address`, else the host the browser reached us at (this
/// host's network address when that was loopback).
pub fn sip_host(st: &AppState, headers: &HeaderMap) -> String {
    let s = st.settings.get();
    for k in ["sip.local_address", "sip.public_address"] {
        let v = s.str(k).trim();
        if !v.is_empty() {
            return v.to_owned();
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    // Strip a port, keeping IPv6 brackets.
    let host = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    // A browser on this very machine says "localhost": a phone on the LAN
    // needs this host's network address instead.
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        return proto::netaddr::default_address(any, &proto::netaddr::local_networks()).to_string();
    }
    host.to_owned()
}

/// The changes to a device: an absent field keeps its value; `null` (or
/// `""` for the extension) clears `extension`, `user_id` (owner: nobody) and
/// `caller_id_did_id` (as in JSON Merge Patch, RFC 7396).
#[derive(Deserialize, ToSchema)]
pub struct DeviceUpdate {
    pub name: Option<String>,
    /// Admins only.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, nullable)]
    pub extension: Option<Option<String>>,
    pub device_type: Option<String>,
    pub recording_enabled: Option<bool>,
    /// Message-waiting NOTIFYs without a subscription; default off.
    pub mwi_unsolicited: Option<bool>,
    /// Busy when in a call (no call waiting).
    pub busy_in_call: Option<bool>,
    /// Admins only.
    pub transport: Option<Transport>,
    /// Admins only; `required` needs transport `tls` (as it is after this
    /// change).
    pub srtp: Option<Srtp>,
    /// Admins only.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub user_id: Option<Option<UserId>>,
    /// Admins only.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>, nullable)]
    pub caller_id_did_id: Option<Option<DidId>>,
    /// Generate a new SIP password (shown once in the answer).
    pub regenerate_password: Option<bool>,
    /// Set this SIP password instead (at least 12 characters).
    pub password: Option<String>,
}

#[utoipa::path(put, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path)), request_body = DeviceUpdate,
    responses((status = 200, body = DeviceWithSecret), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id<DeviceId>,
    ValidJson(b): ValidJson<DeviceUpdate>,
) -> ApiResult<Json<DeviceWithSecret>> {
    let cur = load(&st, &caller, id).await?;
    let extension = match b.extension {
        Some(Some(e)) if e.trim().is_empty() => None,
        Some(Some(e)) => Some(e.trim().to_owned()),
        Some(None) => None,
        None => cur.extension.clone(),
    };
    let owner = b.user_id.unwrap_or(cur.user_id);
    let did = b.caller_id_did_id.unwrap_or(cur.caller_id_did_id);
    let transport = b.transport.unwrap_or(cur.transport);
    let srtp = b.srtp.unwrap_or(cur.srtp);
    // A user's form may send the admin-only fields back unchanged.
    if !caller.is_admin()
        && (owner != cur.user_id
            || did != cur.caller_id_did_id
            || extension != cur.extension
            || transport != cur.transport
            || srtp != cur.srtp)
    {
        return Err(ApiError::Forbidden);
    }
    let name = b
        .name
        .map(|n| n.trim().to_owned())
        .unwrap_or(cur.name.clone());
    let device_type = b.device_type.unwrap_or(cur.device_type.clone());
    let mut c = Check::new();
    c.len("name", &name, 1, 100);
    c.one_of("device_type", &device_type, DEVICE_TYPES);
    check_encryption(&mut c, transport, srtp);
    if let Some(e) = &extension {
        check_extension(&mut c, e);
    }
    if let Some(p) = &b.password {
        check_custom_password(&mut c, p);
    }
    c.done()?;
    if let Some(Some(u)) = b.user_id {
        exists(&st, u, "user_id").await?;
    }
    if let Some(Some(d)) = b.caller_id_did_id {
        exists(&st, d, "caller_id_did_id").await?;
    }
    let new_password = match (b.password, b.regenerate_password) {
        (Some(p), _) => Some(p),
        (None, Some(true)) => Some(qr::generate_password()),
        _ => None,
    };
    let mut tx = st.pool.begin().await?;
    sqlx::query(
        "UPDATE devices SET name = ?, extension = ?, device_type = ?, recording_enabled = ?, \
         mwi_unsolicited = ?, busy_in_call = ?, transport = ?, srtp = ?, user_id = ?, caller_id_did_id = ? \
         WHERE id = ?",
    )
    .bind(&name)
    .bind(&extension)
    .bind(&device_type)
    .bind(b.recording_enabled.unwrap_or(cur.recording_enabled))
    .bind(b.mwi_unsolicited.unwrap_or(cur.mwi_unsolicited))
    .bind(b.busy_in_call.unwrap_or(cur.busy_in_call))
    .bind(transport)
    .bind(srtp)
    .bind(owner)
    .bind(did)
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(unique_to_field)?;
    if let Some(p) = &new_password {
        let realm = qr::realm(st.settings.get().str("sip.realm"));
        let (md5, sha) = qr::ha1(&cur.username, &realm, p);
        sqlx::query("UPDATE devices SET password_hash = ?, ha1_sha256 = ?, realm = ? WHERE id = ?")
            .bind(md5)
            .bind(sha)
            .bind(realm)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    reload_sipd(&st).await;
    let device = load(&st, &caller, id).await?;
    Ok(Json(match new_password {
        Some(p) => with_secret(&st, &headers, device, p).await,
        None => DeviceWithSecret {
            device,
            password: None,
            sip_uri: None,
            server: None,
            port: None,
            tls_sha256: None,
        },
    }))
}

#[utoipa::path(delete, path = "/api/devices/{id}", tag = "devices", params(("id" = i64, Path)),
    responses((status = 200, body = Ok_), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Id(id): Id<DeviceId>,
) -> ApiResult<Json<Ok_>> {
    load(&st, &caller, id).await?;
    caller.require_admin()?;
    sqlx::query("DELETE FROM devices WHERE id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    reload_sipd(&st).await;
    st.limits
        .device_secrets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    Ok(ok())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrParams {
    /// `png` (default) or `svg`.
    #[param(pattern = "^(png|svg)$")]
    pub format: Option<String>,
}

/// The provisioning QR code (PNG or SVG). The clear password exists only for
/// 10 minutes after it was generated; later this answers 410: generate a new
/// password to get a new code.
#[utoipa::path(get, path = "/api/devices/{id}/qr", tag = "devices", params(("id" = i64, Path), QrParams),
    responses((status = 200, content_type = "image/png", description = "QR code"),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn qr_code(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Id(id): Id<DeviceId>,
    ValidQuery(q): ValidQuery<QrParams>,
) -> ApiResult<Response> {
    let device = load(&st, &caller, id).await?;
    let format = q.format.unwrap_or_else(|| "png".into());
    if format != "png" && format != "svg" {
        return Err(ApiError::field("format", "must be png or svg"));
    }
    let secret = st
        .limits
        .device_secrets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .filter(|(_, t)| t.elapsed() < qr::SECRET_TTL)
        .map(|(p, _)| p.clone());
    let Some(password) = secret else {
        return Err(ApiError::Gone(
            "The SIP password is only kept for 10 minutes after it is generated; \
             generate a new password to get a QR code"
                .into(),
        ));
    };
    let (port, _) = sip_port(&st, device.transport).await;
    let payload = qr::sip_uri(
        &device.username,
        &password,
        &sip_host(&st, &headers),
        port,
        device.transport,
    );
    let cache = (header::CACHE_CONTROL, "no-store");
    Ok(if format == "svg" {
        (
            [(header::CONTENT_TYPE, "image/svg+xml"), cache],
            qr::svg(&payload)?,
        )
            .into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "image/png"), cache],
            qr::png(&payload)?,
        )
            .into_response()
    })
}
