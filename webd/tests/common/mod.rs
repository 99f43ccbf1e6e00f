//! The handler-test harness every webd test file shares: the whole app
//! (`webd::app(state).oneshot(..)`) on a temp database, with the other
//! daemons absent (their addresses point at a closed port, so gRPC calls fail
//! like a daemon that is down) unless a test names one.
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::SqlitePool;
use tower::ServiceExt;

use webd::AppState;

pub struct Webd {
    pub app: Router,
    pub st: AppState,
    pub dir: tempfile::TempDir,
}

pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
    /// `name=value` of the Set-Cookie header, if there is one.
    pub fn set_cookie(&self) -> Option<String> {
        let c = self.headers.get(header::SET_COOKIE)?.to_str().ok()?;
        c.split(';').next().map(str::to_owned)
    }
    /// `name=value` of the Set-Cookie header, which must be there.
    pub fn cookie(&self) -> String {
        self.set_cookie().expect("set-cookie")
    }
}

/// webd on a fresh temp database; `extra` are more flags (e.g.
/// `["--notifyd-grpc", addr]`), and every daemon address not among them is
/// a closed port.
pub async fn start_with(extra: &[&str]) -> Webd {
    let dir = tempfile::tempdir().unwrap();
    let pool = proto::db::open(dir.path()).await.unwrap();
    start_on(dir, pool, extra).await
}

/// webd on `dir` and its already open `pool` (for stand-ins that need the
/// pool before webd starts).
pub async fn start_on(dir: tempfile::TempDir, pool: SqlitePool, extra: &[&str]) -> Webd {
    let d = dir.path().display().to_string();
    let dead = testkit::ports::closed_tcp_addr();
    let mut args = vec![
        "webd".to_owned(),
        "--data-dir".into(),
        d.clone(),
        "--web-dir".into(),
        d,
    ];
    for f in [
        "--sipd-grpc",
        "--mediad-grpc",
        "--twiliod-grpc",
        "--notifyd-grpc",
        "--twiliod-http",
    ] {
        if !extra.contains(&f) {
            args.push(f.into());
            args.push(dead.clone());
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let st = AppState::new(webd::Config::parse_from(args), pool)
        .await
        .unwrap();
    Webd {
        app: webd::app(st.clone()),
        st,
        dir,
    }
}

impl Webd {
    /// The setup token webd wrote to its data dir, as an operator reads it
    /// (empty once setup is done and the file is gone).
    pub fn setup_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(webd::api::setup::TOKEN_FILE))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Sends `req` as if from 127.0.0.1:40000, unless it names its peer.
    pub async fn raw(&self, mut req: Request<Body>) -> Res {
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        }
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Res {
            status,
            headers,
            bytes,
        }
    }

    /// A request as the UI sends it: CSRF header, the session cookie if
    /// given, a JSON body if given.
    pub async fn send(&self, method: &str, path: &str, cookie: &str, body: Option<Value>) -> Res {
        self.send_with(method, path, cookie, body, None, &[]).await
    }

    /// [`Self::send`] from the peer `from` (default 127.0.0.1:40000) with
    /// extra headers.
    pub async fn send_with(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: Option<Value>,
        from: Option<SocketAddr>,
        extra: &[(&str, &str)],
    ) -> Res {
        let mut b = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("x-requested-with", "gosip")
            .header(header::HOST, "127.0.0.1:8080");
        if !cookie.is_empty() {
            b = b.header(header::COOKIE, cookie);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        if let Some(from) = from {
            b = b.extension(ConnectInfo(from));
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }
}
