//! Zero-touch provisioning of desk phones by MAC address.
//!
//! The admin gives a phone's MAC and family; webd gives the device a fresh
//! SIP password and serves the phone's configuration file at the path that
//! family fetches from its configuration server (`/provision/cfg<mac>.xml`
//! for Grandstream, `/provision/<mac>.cfg` for Yealink). The file is served
//! only to a request for that MAC from a phone of that family (its
//! User-Agent, which carries the MAC on both families, must match), and only
//! until the device first registers: then the clear password is erased and
//! the path answers 404 like any unknown one. Nothing lists the files.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::http::{Check, Id, ValidJson};
use proto::types::DeviceId;

/// Where phones fetch their files (the "config server path").
pub const PREFIX: &str = "/provision";

#[derive(Deserialize, ToSchema)]
pub struct ProvisioningBody {
    /// The phone's MAC, in any usual form (`C0:74:AD:12:34:56`,
    /// `c074ad123456`, `C0-74-AD-12-34-56`).
    pub mac: String,
    /// `grandstream` (GXP, GRP, DP, HT) or `yealink` (T4x, T5x).
    pub family: String,
}

#[derive(Serialize, ToSchema)]
pub struct Provisioning {
    pub mac: String,
    pub family: String,
    /// The configuration server path to give the phone (or DHCP option 66).
    pub server_url: String,
    /// The file the phone will ask for there.
    pub file: String,
    /// When the phone fetched it, if it did.
    pub fetched_at: Option<String>,
    /// The phone registered: the file is no longer served.
    pub done: bool,
}

/// 12 lowercase hex digits from a MAC as people write it.
pub fn normalize_mac(v: &str) -> Option<String> {
    let hex: String = v
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && hex != "000000000000")
        .then_some(hex)
}

fn file_name(family: &str, mac: &str) -> String {
    match family {
        "yealink" => format!("{mac}.cfg"),
        _ => format!("cfg{mac}.xml"),
    }
}

fn server_url(st: &AppState, headers: &HeaderMap) -> String {
    let host = super::devices::sip_host(st, headers);
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    format!("http://{host}:{}{PREFIX}", st.cfg.http_port)
}

type Row = (String, String, String, Option<String>, Option<String>);

async fn row(st: &AppState, device_id: DeviceId) -> ApiResult<Option<Row>> {
    Ok(sqlx::query_as(
        "SELECT mac, family, sip_password, fetched_at, done_at FROM provisioning WHERE device_id = ?",
    )
    .bind(device_id)
    .fetch_optional(&st.pool)
    .await?)
}

/// Marks the provisioning of `device_id` done (erasing the clear password)
/// once the device has registered; whether it is done.
async fn settle(st: &AppState, device_id: DeviceId) -> ApiResult<bool> {
    let registered: bool = sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM registrations r JOIN provisioning p ON p.device_id = r.device_id \
         WHERE r.device_id = ? AND r.last_seen >= p.created_at)",
    )
    .bind(device_id)
    .fetch_one(&st.pool)
    .await?;
    if registered {
        sqlx::query(
            "UPDATE provisioning SET sip_password = '', done_at = COALESCE(done_at, ?) WHERE device_id = ?",
        )
        .bind(proto::time::now())
        .bind(device_id)
        .execute(&st.pool)
        .await?;
    }
    Ok(registered)
}

fn view(st: &AppState, headers: &HeaderMap, r: Row, done: bool) -> Provisioning {
    let (mac, family, _pw, fetched_at, done_at) = r;
    Provisioning {
        file: file_name(&family, &mac),
        server_url: server_url(st, headers),
        mac,
        family,
        fetched_at,
        done: done || done_at.is_some(),
    }
}

/// Set a phone up by its MAC: gives the device a new SIP password (the
/// phone receives it in its file) and serves the file until it registers.
#[utoipa::path(put, path = "/api/devices/{id}/provisioning", tag = "devices", operation_id = "devices_put_provisioning",
    params(("id" = i64, Path)), request_body = ProvisioningBody,
    responses((status = 200, body = Provisioning), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(st): State<AppState>,
    _a: Admin,
    headers: HeaderMap,
    Id(id): Id<DeviceId>,
    ValidJson(b): ValidJson<ProvisioningBody>,
) -> ApiResult<Json<Provisioning>> {
    let mut c = Check::new();
    let mac = normalize_mac(&b.mac);
    if mac.is_none() {
        c.fail(
            "mac",
            "must be the phone's MAC address: 12 hex digits, such as C0:74:AD:12:34:56 (on a label under the phone)",
        );
    }
    c.one_of("family", &b.family, &["grandstream", "yealink"]);
    c.done()?;
    let mac = mac.unwrap_or_default();
    let device: Option<(String,)> = sqlx::query_as("SELECT username FROM devices WHERE id = ?")
        .bind(id)
        .fetch_optional(&st.pool)
        .await?;
    let Some((username,)) = device else {
        return Err(ApiError::NotFound);
    };
    let password = crate::qr::generate_password();
    let realm = crate::qr::realm(st.settings.get().str("sip.realm"));
    let (md5, sha) = crate::qr::ha1(&username, &realm, &password);
    let mut tx = st.pool.begin().await?;
    let taken: Option<DeviceId> =
        sqlx::query_scalar("SELECT device_id FROM provisioning WHERE mac = ? AND device_id != ?")
            .bind(&mac)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if taken.is_some() {
        return Err(ApiError::field(
            "mac",
            "is already set up for another phone",
        ));
    }
    sqlx::query("UPDATE devices SET password_hash = ?, ha1_sha256 = ?, realm = ? WHERE id = ?")
        .bind(md5)
        .bind(sha)
        .bind(&realm)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    // A phone registered with the old password must not make this done:
    // sipd drops the device's registrations when it reloads the changed
    // credentials (below), and `settle` counts only a registration seen
    // since this provisioning began.
    sqlx::query(
        "INSERT INTO provisioning (device_id, mac, family, sip_password, created_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT(device_id) DO UPDATE SET mac = excluded.mac, family = excluded.family, \
         sip_password = excluded.sip_password, created_at = excluded.created_at, fetched_at = NULL, done_at = NULL",
    )
    .bind(id)
    .bind(&mac)
    .bind(&b.family)
    .bind(&password)
    .bind(proto::time::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    super::devices::reload_sipd(&st).await;
    let r = row(&st, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(view(&st, &headers, r, false)))
}

/// The phone's provisioning, if it was set up by MAC.
#[utoipa::path(get, path = "/api/devices/{id}/provisioning", tag = "devices", operation_id = "devices_get_provisioning",
    params(("id" = i64, Path)),
    responses((status = 200, body = Provisioning), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(st): State<AppState>,
    _a: Admin,
    headers: HeaderMap,
    Id(id): Id<DeviceId>,
) -> ApiResult<Json<Provisioning>> {
    let Some(r) = row(&st, id).await? else {
        return Err(ApiError::NotFound);
    };
    let done = settle(&st, id).await?;
    Ok(Json(view(&st, &headers, r, done)))
}

/// Stop serving the phone's file (the device keeps its password).
#[utoipa::path(delete, path = "/api/devices/{id}/provisioning", tag = "devices", operation_id = "devices_delete_provisioning",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    _a: Admin,
    Id(id): Id<DeviceId>,
) -> ApiResult<StatusCode> {
    let r = sqlx::query("DELETE FROM provisioning WHERE device_id = ?")
        .bind(id)
        .execute(&st.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The MAC a phone's User-Agent names, if any (Grandstream: "... DevId
/// c074ad123456"; Yealink: "Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56").
fn ua_mac(ua: &str) -> Option<String> {
    ua.split([' ', ';', '(', ')']).find_map(normalize_mac)
}

/// `GET /provision/{file}`: a phone fetching its configuration.
pub async fn serve(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let ip = crate::accounts::client_ip(&ext, &headers, &st);
    // Someone guessing MACs is cut off, even from a right guess.
    let allowed = st.limits.provision_allowed(&ip);
    let served = if allowed {
        serve_inner(&st, &headers, &file).await
    } else {
        Ok(None)
    };
    match served {
        Ok(Some((ctype, body))) => (
            [
                (header::CONTENT_TYPE, ctype),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Ok(None) => {
            let ua = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            st.limits.provision_missed(&ip);
            tracing::info!(file = %file, ip = %ip, ua, allowed, "provisioning request refused");
            if let Err(e) = proto::db::security_event(
                &st.pool,
                "webd",
                "provision_refused",
                &ip,
                "",
                &format!("{file} {ua}"),
            )
            .await
            {
                tracing::warn!(error = %e, "cannot record the security event");
            }
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// A pending provisioning with the device it configures.
#[derive(sqlx::FromRow)]
struct Fetch {
    device_id: DeviceId,
    family: String,
    sip_password: String,
    username: String,
    extension: Option<String>,
    name: String,
    owner: String,
    transport: super::devices::Transport,
}

async fn serve_inner(
    st: &AppState,
    headers: &HeaderMap,
    file: &str,
) -> ApiResult<Option<(&'static str, String)>> {
    let (family, mac) = if let Some(m) = file
        .strip_prefix("cfg")
        .and_then(|f| f.strip_suffix(".xml"))
    {
        ("grandstream", m)
    } else if let Some(m) = file.strip_suffix(".cfg") {
        ("yealink", m)
    } else {
        return Ok(None);
    };
    let Some(mac) = normalize_mac(mac).filter(|m| m == mac) else {
        return Ok(None);
    };
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Only a phone of that family asks for that file, and both families
    // put their MAC in the User-Agent.
    if !ua.to_ascii_lowercase().contains(family) || ua_mac(ua).as_deref() != Some(mac.as_str()) {
        return Ok(None);
    }
    let found: Option<Fetch> = sqlx::query_as(
        "SELECT p.device_id, p.family, p.sip_password, d.username, d.extension, d.name, COALESCE(u.name, '') AS owner, \
         d.transport \
         FROM provisioning p JOIN devices d ON d.id = p.device_id LEFT JOIN users u ON u.id = d.user_id \
         WHERE p.mac = ?",
    )
    .bind(&mac)
    .fetch_optional(&st.pool)
    .await?;
    let Some(Fetch {
        device_id,
        family: fam,
        sip_password: password,
        username,
        extension,
        name,
        owner,
        transport,
    }) = found
    else {
        return Ok(None);
    };
    if fam != family || password.is_empty() || settle(st, device_id).await? {
        return Ok(None);
    }
    sqlx::query("UPDATE provisioning SET fetched_at = ? WHERE device_id = ?")
        .bind(proto::time::now())
        .bind(device_id)
        .execute(&st.pool)
        .await?;
    let (port, _) = super::devices::sip_port(st, transport).await;
    let settings = st.settings.get();
    let phone = PhoneConfig {
        mac: &mac,
        server: &super::devices::sip_host(st, headers),
        port,
        username: &username,
        password: &password,
        label: extension.as_deref().unwrap_or(&name),
        display: if owner.is_empty() { &name } else { &owner },
        voicemail: settings.str("voicemail.access_code").trim(),
    };
    Ok(Some(match family {
        "yealink" => ("text/plain; charset=utf-8", phone.yealink()),
        _ => ("application/xml; charset=utf-8", phone.grandstream()),
    }))
}

/// What goes into a phone's file.
///
/// The port is the SIP-over-TLS one for a device set to TLS. The files do
/// not set the transport or the SRTP mode: no reference for those keys of
/// either family is at hand, so the setup panel tells the admin to set them
/// on the phone.
pub struct PhoneConfig<'a> {
    pub mac: &'a str,
    pub server: &'a str,
    pub port: u16,
    pub username: &'a str,
    pub password: &'a str,
    /// The line key's label (the extension, else the device name).
    pub label: &'a str,
    /// The caller name the phone sends.
    pub display: &'a str,
    /// What the phone's Messages key dials (the voicemail access code; empty:
    /// left as the phone has it).
    pub voicemail: &'a str,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A Yealink value: one line, no comment character.
fn cfg_value(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '#'))
        .collect()
}

impl PhoneConfig<'_> {
    /// Grandstream XML provisioning (`gs_provision`): account 1 active, the
    /// server, SIP user and authentication, and G.711 first.
    pub fn grandstream(&self) -> String {
        let p = |n: u32, v: &str| format!("    <P{n}>{}</P{n}>\n", xml_escape(v));
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gs_provision version=\"1\">\n",
        );
        out.push_str(&format!(
            "  <mac>{}</mac>\n  <config version=\"1\">\n",
            self.mac
        ));
        out.push_str(&p(271, "1")); // account 1 active
        out.push_str(&p(270, self.label)); // account name
        out.push_str(&p(47, &format!("{}:{}", self.server, self.port))); // SIP server
        out.push_str(&p(35, self.username)); // SIP user ID
        out.push_str(&p(36, self.username)); // authenticate ID
        out.push_str(&p(34, self.password)); // authenticate password
        out.push_str(&p(3, self.display)); // display name
        out.push_str(&p(57, "0")); // codec 1: PCMU
        out.push_str(&p(58, "8")); // codec 2: PCMA
        if !self.voicemail.is_empty() {
            out.push_str(&p(33, self.voicemail)); // voice mail user ID: the MESSAGE key
        }
        out.push_str("  </config>\n</gs_provision>\n");
        out
    }

    /// Yealink `.cfg`: account 1 with the server, user, password and G.711.
    pub fn yealink(&self) -> String {
        let lines = [
            "#!version:1.0.0.1".to_owned(),
            "account.1.enable = 1".into(),
            format!("account.1.label = {}", cfg_value(self.label)),
            format!("account.1.display_name = {}", cfg_value(self.display)),
            format!("account.1.auth_name = {}", cfg_value(self.username)),
            format!("account.1.user_name = {}", cfg_value(self.username)),
            format!("account.1.password = {}", cfg_value(self.password)),
            format!(
                "account.1.sip_server.1.address = {}",
                cfg_value(self.server)
            ),
            format!("account.1.sip_server.1.port = {}", self.port),
            "account.1.codec.pcmu.enable = 1".into(),
            "account.1.codec.pcmu.priority = 1".into(),
            "account.1.codec.pcma.enable = 1".into(),
            "account.1.codec.pcma.priority = 2".into(),
        ];
        let mut text = lines.join("\n") + "\n";
        if !self.voicemail.is_empty() {
            // The Message key of account 1 dials the voicemail access code.
            text.push_str(&format!(
                "voice_mail.number.1 = {}\n",
                cfg_value(self.voicemail)
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(voicemail: &str) -> PhoneConfig<'_> {
        PhoneConfig {
            mac: "c074ad123456",
            server: "192.0.2.10",
            port: 5060,
            username: "kitchen1",
            password: "pw<&>",
            label: "201",
            display: "Kitchen",
            voicemail,
        }
    }

    #[test]
    fn a_grandstream_file_names_the_account_and_the_messages_key() {
        let xml = phone("*97").grandstream();
        assert!(xml.contains("<P47>192.0.2.10:5060</P47>"), "{xml}");
        assert!(xml.contains("<P34>pw&lt;&amp;&gt;</P34>"), "{xml}");
        assert!(xml.contains("<P33>*97</P33>"), "{xml}");
        assert!(!phone("").grandstream().contains("<P33>"));
        assert!(!phone("").yealink().contains("voice_mail"));
    }

    #[test]
    fn macs_are_read_as_people_write_them() {
        for v in [
            "C0:74:AD:12:34:56",
            "c074ad123456",
            "C0-74-AD-12-34-56",
            "c074.ad12.3456",
        ] {
            assert_eq!(normalize_mac(v).as_deref(), Some("c074ad123456"), "{v}");
        }
        for v in ["c074ad12345", "c074ad12345g", "00:00:00:00:00:00", ""] {
            assert_eq!(normalize_mac(v), None, "{v}");
        }
    }

    #[test]
    fn the_user_agents_of_both_families_name_their_mac() {
        assert_eq!(
            ua_mac("Grandstream Model HW GXP2170 SW 1.0.11.3 DevId c074ad123456").as_deref(),
            Some("c074ad123456")
        );
        assert_eq!(
            ua_mac("Yealink SIP-T46S 66.86.0.15 80:5e:c0:12:34:56").as_deref(),
            Some("805ec0123456")
        );
        assert_eq!(ua_mac("curl/8.0"), None);
    }
}
