#![allow(clippy::unwrap_used, clippy::expect_used)]
// tungstenite's handshake callback fails with a whole HTTP response.
#![allow(clippy::result_large_err)]
//! The phone in the browser, through webd's front door: `POST /api/phone`
//! makes the user's Browser device once, and `/ws/sip` relays the
//! browser's SIP over WebSocket to sipd only for a logged-in session on a
//! GoSIP page, vouching for the device with the daemons' secret. sipd is
//! a WebSocket stand-in on 127.0.0.1 that accepts only what the real one
//! accepts (`proto::sip_ws::Upgrade::from_headers`) and answers each SIP
//! message with a 200.

#[path = "../../testkit/webd/in_process.rs"]
#[allow(dead_code)] // the other harnesses use the rest
mod in_process;

use std::sync::{Arc, Mutex};

use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _, http};

use proto::sip_ws::{SUBPROTOCOL, Upgrade};

/// Every upgrade the stand-in accepted, and every message it got.
#[derive(Default)]
struct Seen {
    upgrades: Vec<Upgrade>,
    messages: Vec<String>,
    closed: usize,
}

/// A sipd WebSocket listener stand-in; returns its address.
async fn fake_sipd(secret: proto::grpc::Secret, seen: Arc<Mutex<Seen>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (secret, seen) = (secret.clone(), seen.clone());
            tokio::spawn(async move {
                let check =
                    |req: &tungstenite::handshake::server::Request,
                     mut res: tungstenite::handshake::server::Response| {
                        match Upgrade::from_headers(req.headers(), &secret) {
                            Ok(up) => {
                                seen.lock().unwrap().upgrades.push(up);
                                res.headers_mut().insert(
                                    "sec-websocket-protocol",
                                    http::HeaderValue::from_static(SUBPROTOCOL),
                                );
                                Ok(res)
                            }
                            Err(_) => {
                                Err(http::Response::builder().status(401).body(None).unwrap())
                            }
                        }
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, check).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if let tungstenite::Message::Text(t) = m {
                        seen.lock().unwrap().messages.push(t.to_string());
                        let reply = "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
                        ws.send(tungstenite::Message::text(reply)).await.unwrap();
                    }
                }
                seen.lock().unwrap().closed += 1;
            });
        }
    });
    addr
}

/// The browser's upgrade request to webd.
fn browser(base: &str, cookie: Option<&str>, origin: &str) -> http::Request<()> {
    let url = format!("{}/ws/sip", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("sip"),
    );
    h.insert("origin", origin.parse().unwrap());
    if let Some(c) = cookie {
        h.insert("cookie", c.parse().unwrap());
    }
    req
}

fn refused(r: Result<impl Sized, tungstenite::Error>) -> u16 {
    match r {
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("not an HTTP refusal: {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

#[tokio::test]
async fn the_browser_phone_reaches_sipd_only_from_a_session_on_gosips_own_page() {
    let dir = tempfile::tempdir().unwrap();
    let secret = proto::grpc::Secret::load_or_create(dir.path()).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sipd = fake_sipd(secret, seen.clone()).await;
    let mut web = in_process::Web::start(dir.path(), &[("--sipd-ws", &sipd)]).await;
    let base = web.api.base.clone();
    let origin = base.clone();

    // The Browser device is made once, with the first free extension from 700.
    let phone = web
        .api
        .ok(&web.admin, 200, "POST", "/api/phone", None)
        .await;
    assert_eq!(phone["extension"], "700", "{phone}");
    assert_eq!(phone["ws_path"], "/ws/sip");
    let again = web
        .api
        .ok(&web.admin, 200, "POST", "/api/phone", None)
        .await;
    assert_eq!(again["device_id"], phone["device_id"]);
    let device = web
        .api
        .ok(
            &web.admin,
            200,
            "GET",
            &format!("/api/devices/{}", phone["device_id"]),
            None,
        )
        .await;
    assert_eq!(device["device_type"], "webrtc");

    // No session, or a session from another site's page: no WebSocket,
    // and sipd never hears of it.
    let r = tokio_tungstenite::connect_async(browser(&base, None, &origin)).await;
    assert_eq!(refused(r), 401);
    let r =
        tokio_tungstenite::connect_async(browser(&base, Some(&web.admin), "https://evil.example"))
            .await;
    assert_eq!(refused(r), 403);
    assert!(seen.lock().unwrap().upgrades.is_empty());

    // From GoSIP's page: the frames go through to sipd for that device.
    let (mut ws, res) = tokio_tungstenite::connect_async(browser(&base, Some(&web.admin), &origin))
        .await
        .unwrap();
    assert_eq!(res.headers()["sec-websocket-protocol"], "sip");
    let options = "OPTIONS sip:gosip SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    ws.send(tungstenite::Message::text(options)).await.unwrap();
    let reply = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        reply.to_text().unwrap().starts_with("SIP/2.0 200"),
        "{reply}"
    );
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.messages, [options]);
        assert_eq!(s.upgrades.len(), 1);
        assert_eq!(s.upgrades[0].device.0, phone["device_id"].as_i64().unwrap());
        assert_eq!(s.upgrades[0].client_ip.to_string(), "127.0.0.1");
    }
    // The browser goes away: sipd's side is closed too.
    ws.close(None).await.unwrap();
    testkit::eventually(
        std::time::Duration::from_secs(5),
        "sipd's side closed",
        || {
            let closed = seen.lock().unwrap().closed;
            async move { closed == 1 }
        },
    )
    .await;
    web.stop().await;
}

#[tokio::test]
async fn with_sipd_down_the_browser_is_told_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let closed = testkit::ports::closed_tcp_addr();
    let mut web = in_process::Web::start(dir.path(), &[("--sipd-ws", &closed)]).await;
    let base = web.api.base.clone();
    let r = tokio_tungstenite::connect_async(browser(&base, Some(&web.admin), &base)).await;
    assert_eq!(refused(r), 503);
    web.stop().await;
}
