//! The phone in the browser. `POST /api/phone` gives the logged-in user
//! their Browser device (made on first use: a `webrtc` device with a
//! password nobody is ever shown, and the first free extension from 700),
//! and `GET /ws/sip` carries the browser's SIP over WebSocket (RFC 7118)
//! to sipd for that device: webd checks the session and the page's origin,
//! then relays the frames to sipd's loopback listener, vouching for the
//! device with the daemons' secret (`proto::sip_ws`). The browser never
//! sees a SIP password, and sipd's listener is never reachable from the
//! network.

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt as _, StreamExt as _};
use serde::Serialize;
use tokio_tungstenite::tungstenite;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Caller;
use crate::http::error::{ApiError, ApiResult, ErrorBody};
use crate::qr;
use proto::sip_ws::{BROWSER_PATH, SIPD_PATH, SUBPROTOCOL, Upgrade};
use proto::types::{DeviceId, UserId};

/// Browser phones get the first free extension from here up.
const FIRST_EXTENSION: u32 = 700;

/// What the browser phone needs to start.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrowserPhone {
    #[schema(value_type = i64)]
    pub device_id: DeviceId,
    /// The SIP user name the phone registers as (its AOR's user part).
    pub username: String,
    /// The extension other phones dial to reach this browser.
    pub extension: Option<String>,
    /// The WebSocket path on this origin (subprotocol `sip`).
    pub ws_path: String,
    /// The SIP domain of the AOR (`sip.realm`, else `gosip`).
    pub domain: String,
    /// STUN/TURN servers for the browser's RTCPeerConnection (the setting
    /// `phone.ice_servers`); usually none.
    pub ice_servers: Vec<IceServer>,
}

/// One RTCIceServer.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct IceServer {
    pub urls: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Reads `phone.ice_servers`: entries separated by commas, each a
/// `stun:`/`turn:`/`turns:` URL optionally followed by a user name and a
/// password; anything else is left out.
pub fn ice_servers(setting: &str) -> Vec<IceServer> {
    setting
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split_whitespace();
            let urls = parts.next()?;
            let scheme = urls.split(':').next()?.to_ascii_lowercase();
            if !matches!(scheme.as_str(), "stun" | "turn" | "turns") {
                return None;
            }
            Some(IceServer {
                urls: urls.to_owned(),
                username: parts.next().map(str::to_owned),
                credential: parts.next().map(str::to_owned),
            })
        })
        .collect()
}

/// The caller's Browser device, made on first use.
#[utoipa::path(post, path = "/api/phone", tag = "phone",
    responses((status = 200, body = BrowserPhone), (status = 401, body = ErrorBody)))]
pub async fn ensure(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<BrowserPhone>> {
    let (device_id, username, extension) = browser_device(&st, &caller).await?;
    Ok(Json(BrowserPhone {
        device_id,
        username,
        extension,
        ws_path: BROWSER_PATH.into(),
        domain: qr::realm(st.settings.get().str("sip.realm")),
        ice_servers: ice_servers(st.settings.get().str("phone.ice_servers")),
    }))
}

async fn find(
    st: &AppState,
    user: UserId,
) -> ApiResult<Option<(DeviceId, String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT id, username, extension FROM devices WHERE user_id = ? AND device_type = 'webrtc' \
         ORDER BY id LIMIT 1",
    )
    .bind(user)
    .fetch_optional(&st.pool)
    .await?)
}

/// The user's `webrtc` device: the oldest one, or a new one.
async fn browser_device(
    st: &AppState,
    caller: &Caller,
) -> ApiResult<(DeviceId, String, Option<String>)> {
    if let Some(d) = find(st, caller.id).await? {
        return Ok(d);
    }
    let used: Vec<String> =
        sqlx::query_scalar("SELECT extension FROM devices WHERE extension IS NOT NULL")
            .fetch_all(&st.pool)
            .await?;
    let extension = (FIRST_EXTENSION..1_000_000)
        .map(|n| n.to_string())
        .find(|e| !used.contains(e));
    let username = format!(
        "web{}-{}",
        caller.id,
        crate::accounts::random_token(4).to_lowercase()
    )
    .replace('_', "x");
    // Nobody is ever shown this password: the browser is vouched for by
    // its session, and a SIP phone cannot register as this device.
    let password = qr::generate_password();
    let realm = qr::realm(st.settings.get().str("sip.realm"));
    let (md5, sha) = qr::ha1(&username, &realm, &password);
    let name = format!("Browser ({})", caller.name);
    let inserted = sqlx::query(
        "INSERT INTO devices (user_id, name, username, password_hash, ha1_sha256, realm, extension, \
         device_type, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'webrtc', ?)",
    )
    .bind(caller.id)
    .bind(&name)
    .bind(&username)
    .bind(md5)
    .bind(sha)
    .bind(&realm)
    .bind(&extension)
    .bind(proto::time::now())
    .execute(&st.pool)
    .await;
    if let Err(e) = inserted {
        // Two tabs at once: the other one made it.
        tracing::debug!(error = %e, "browser device insert lost a race");
    }
    super::devices::reload_sipd(st).await;
    find(st, caller.id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("the browser device could not be made")))
}

/// `GET /ws/sip`: the browser's SIP over WebSocket, relayed to sipd.
pub async fn ws(
    State(st): State<AppState>,
    caller: Caller,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if caller.session_id.is_none() {
        return ApiError::Forbidden.into_response();
    }
    // A WebSocket is not bound by the same-origin policy: without this
    // check any site the user visits could phone through their session.
    if !super::origin_ok(&st, &headers) {
        return ApiError::Csrf.into_response();
    }
    let offered = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL));
    if !offered {
        return ApiError::BadRequest(format!(
            "the WebSocket subprotocol must be \"{SUBPROTOCOL}\""
        ))
        .into_response();
    }
    let device = match browser_device(&st, &caller).await {
        Ok((id, ..)) => id,
        Err(e) => return e.into_response(),
    };
    let mut ext = axum::http::Extensions::new();
    ext.insert(ConnectInfo(peer));
    let client_ip = crate::accounts::client_ip(&ext, &headers, &st)
        .parse()
        .unwrap_or(peer.ip());
    let up = Upgrade { device, client_ip };
    // Connect to sipd first: a browser whose phone cannot reach sipd is
    // told so now (503), not by a WebSocket that opens and closes.
    let sipd = match connect_sipd(&st, &up).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "sipd's WebSocket listener refused the browser phone");
            return ApiError::Unavailable("the SIP service is not reachable".into())
                .into_response();
        }
    };
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(64 * 1024)
        .on_upgrade(move |browser| relay(browser, sipd))
}

type SipdSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_sipd(st: &AppState, up: &Upgrade) -> anyhow::Result<SipdSocket> {
    let url = format!("ws://{}{SIPD_PATH}", st.cfg.sipd_ws);
    let mut req = Request::builder()
        .uri(&url)
        .header(header::HOST, st.cfg.sipd_ws.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(
            header::SEC_WEBSOCKET_KEY,
            tungstenite::handshake::client::generate_key(),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL)
        .body(())?;
    for (k, v) in up.headers(&st.peers.secret) {
        req.headers_mut().insert(k, v);
    }
    let (socket, _) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio_tungstenite::connect_async(req),
    )
    .await??;
    Ok(socket)
}

/// Frames both ways until either side closes; then the other is closed
/// too, so sipd drops the registration and ends the calls of a browser
/// that went away.
async fn relay(browser: WebSocket, sipd: SipdSocket) {
    let (mut b_tx, mut b_rx) = browser.split();
    let (mut s_tx, mut s_rx) = sipd.split();
    let up = async {
        while let Some(Ok(m)) = b_rx.next().await {
            let m = match m {
                Message::Text(t) => tungstenite::Message::text(t.as_str()),
                Message::Binary(b) => tungstenite::Message::binary(b),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if s_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = s_tx.close().await;
    };
    let down = async {
        while let Some(Ok(m)) = s_rx.next().await {
            let m = match m {
                tungstenite::Message::Text(t) => Message::text(t.as_str()),
                tungstenite::Message::Binary(b) => Message::binary(b),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            if b_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = b_tx.close().await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_are_urls_with_optional_credentials_and_nothing_else() {
        assert_eq!(ice_servers(""), []);
        let got = ice_servers(
            "stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp alice s3cret, \
             http://not-ice, ",
        );
        assert_eq!(
            got,
            [
                IceServer {
                    urls: "stun:stun.example.org:3478".into(),
                    username: None,
                    credential: None
                },
                IceServer {
                    urls: "turn:turn.example.org:3478?transport=udp".into(),
                    username: Some("alice".into()),
                    credential: Some("s3cret".into())
                },
            ]
        );
    }
}
