//! SIP over WebSocket (RFC 7118) for the phone in the browser. The browser
//! reaches only webd; webd opens one WebSocket per browser tab to this
//! loopback listener, vouched for by the daemons' shared secret, and
//! relays the frames (see `proto::sip_ws`). Each connection speaks for the
//! one device its upgrade named: its messages reach the core with that
//! device ([`super::transport::Item::device`]), which takes them without a
//! digest challenge. When the connection closes, the core drops the
//! registrations made on it ([`super::Command::ConnClosed`]).

use std::net::SocketAddr;

use futures::{SinkExt as _, StreamExt as _};
use proto::grpc::Secret;
use proto::sip_ws::{SIPD_PATH, SUBPROTOCOL, Upgrade, UpgradeError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

use super::transport::{ConnTx, Conns, Inbox, Item, TCP_IDLE};
use crate::sip::msg::MAX_MESSAGE;
use crate::sip::{Peer, Transport};

/// An upgrade that takes longer is given up.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the WebSocket connections need beside the socket.
#[derive(Clone)]
pub struct WsShared {
    pub secret: Secret,
    pub inbox: Inbox,
    pub conns: Conns,
    pub commands: mpsc::Sender<super::Command>,
    pub shutdown: CancellationToken,
}

/// Accepts webd's WebSocket connections until shutdown.
pub async fn acceptor(listener: TcpListener, shared: WsShared) {
    loop {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match r {
            Ok((stream, from)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(why) = serve(stream, shared).await {
                        tracing::debug!(src = %from, why, "sip websocket refused");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "websocket accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Checks an upgrade request: the path, the `sip` subprotocol and the
/// secret with the device it vouches for.
fn check(req: &Request, secret: &Secret) -> Result<Upgrade, (StatusCode, &'static str)> {
    if req.uri().path() != SIPD_PATH {
        return Err((StatusCode::NOT_FOUND, "no such path"));
    }
    let offers_sip = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL));
    if !offers_sip {
        return Err((StatusCode::BAD_REQUEST, "the sip subprotocol is required"));
    }
    Upgrade::from_headers(req.headers(), secret).map_err(|e| match e {
        UpgradeError::Unauthorized => (StatusCode::UNAUTHORIZED, "not vouched for"),
        UpgradeError::BadHeader(h) => (StatusCode::BAD_REQUEST, h),
    })
}

/// One connection: the upgrade, then SIP messages both ways until either
/// side closes, it idles for [`TCP_IDLE`], or it does not read.
async fn serve(stream: TcpStream, shared: WsShared) -> Result<(), &'static str> {
    let tcp_peer = stream.peer_addr().map_err(|_| "no peer address")?;
    let mut upgrade = None;
    // The handshake's callback type is tungstenite's, large error and all.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        match check(req, &shared.secret) {
            Ok(up) => {
                upgrade = Some(up);
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    HeaderValue::from_static(SUBPROTOCOL),
                );
                Ok(resp)
            }
            Err((status, why)) => {
                let mut e = ErrorResponse::new(Some(why.to_string()));
                *e.status_mut() = status;
                Err(e)
            }
        }
    };
    let ws = tokio::time::timeout(
        HANDSHAKE,
        tokio_tungstenite::accept_hdr_async(stream, callback),
    )
    .await
    .map_err(|_| "upgrade timed out")?
    .map_err(|_| "bad upgrade")?;
    let up = upgrade.ok_or("bad upgrade")?;
    // The browser's own address, with the port of webd's connection so
    // two tabs behind one address are two peers.
    let addr = SocketAddr::new(up.client_ip, tcp_peer.port());
    let (tx, mut rx) = ConnTx::channel();
    let id = shared
        .conns
        .add(addr, tx.clone())
        .ok_or("too many connections")?;
    let peer = Peer {
        transport: Transport::Ws,
        addr,
        conn: id,
        // This host's address on the path to the browser: what its media
        // is offered on (the browser reaches webd, so it reaches this host).
        local: super::route_local(SocketAddr::new(up.client_ip, 9)),
    };
    tracing::info!(device = up.device.0, client = %up.client_ip, conn = id, "browser phone connected");
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tx.closing() => break,
            out = rx.recv() => {
                let Some(data) = out else { break };
                let text = String::from_utf8_lossy(&data).into_owned();
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            r = tokio::time::timeout(TCP_IDLE, source.next()) => {
                let data = match r {
                    Ok(Some(Ok(Message::Text(t)))) => t.as_bytes().to_vec(),
                    Ok(Some(Ok(Message::Binary(b)))) => b.to_vec(),
                    Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => continue,
                    _ => break,
                };
                // RFC 7118 section 5.1: one message per frame; a frame
                // past the size limit or of blanks is not one.
                if data.len() > MAX_MESSAGE || data.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                shared.inbox.push(Item { peer, data, device: Some(up.device) });
            }
        }
    }
    // The core hears of it first: a close handshake may never finish.
    shared.conns.remove(id);
    let _ = shared
        .commands
        .send(super::Command::ConnClosed {
            transport: crate::sip::Transport::Ws,
            conn: id,
        })
        .await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    tracing::info!(
        device = up.device.0,
        conn = id,
        "browser phone disconnected"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::HeaderName;

    fn request(
        path: &str,
        proto: Option<&str>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Request {
        let mut b = Request::builder().uri(path);
        if let Some(p) = proto {
            b = b.header("sec-websocket-protocol", p);
        }
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_a_vouched_sip_upgrade_on_the_path_is_taken() {
        let secret = Secret::random();
        let up = Upgrade {
            device: proto::types::DeviceId(3),
            client_ip: "198.51.100.7".parse().unwrap(),
        };
        let h = up.headers(&secret);
        assert_eq!(
            check(&request("/sip", Some("sip"), h.clone()), &secret),
            Ok(up)
        );
        assert_eq!(
            check(&request("/sip", Some("chat, sip"), h.clone()), &secret),
            Ok(up)
        );
        assert_eq!(
            check(&request("/other", Some("sip"), h.clone()), &secret)
                .unwrap_err()
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            check(&request("/sip", None, h.clone()), &secret)
                .unwrap_err()
                .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            check(&request("/sip", Some("sip"), h), &Secret::random())
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
}
