//! Test harness: the real notifyd binary on a free loopback port with a temp
//! data dir, a real SMTP server (aiosmtpd), and small axum stand-ins for
//! Gotify, Postmark and webhook receivers. Settings, users (with their
//! notification preferences) and webhook endpoints are made the way an
//! admin or a user makes them: through the API of a webd started in this
//! process on the same data dir, which has notifyd reload its settings over
//! gRPC, as in production.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use proto::db::SqlitePool;
use proto::grpc::{AuthChannel, Secret, authed};
use proto::pb::common::daemon_client::DaemonClient;
use proto::pb::notifyd::notifyd_client::NotifydClient;
use proto::pb::notifyd::{NotifyRequest, SendTestReply, SendTestRequest};
use tonic::transport::Channel;

#[path = "../../../testkit/webd/in_process.rs"]
mod web;
pub use web::Web;

/// What notifyd's tests make on webd's screens.
impl Web {
    /// webd beside notifyd (`notifyd_grpc`), the first-run wizard done.
    /// Its admin (`admin@example.org`) turns their own email and push off
    /// on their settings page, so that "every admin" in the tests means the
    /// admins each test makes.
    async fn beside(dir: &Path, notifyd_grpc: &str) -> Web {
        let web = Web::start(dir, &[("--notifyd-grpc", notifyd_grpc)]).await;
        web.my_prefs(&web.admin, r#"{"email": false, "gotify": false}"#)
            .await;
        web
    }

    /// The notification preferences (`notify_prefs` JSON, e.g.
    /// `{"email": {"sms": false}}`) saved on the settings page of the user
    /// whose session is `cookie`.
    pub async fn my_prefs(&self, cookie: &str, prefs: &str) {
        let prefs: serde_json::Value = serde_json::from_str(prefs).unwrap();
        self.api
            .ok(
                cookie,
                200,
                "PUT",
                "/api/settings",
                Some(serde_json::json!({ "notify_prefs": prefs })),
            )
            .await;
    }
}

/// The notifyd binary with its own data dir, and a webd beside it.
pub struct Notifyd {
    pub port: u16,
    pub pool: SqlitePool,
    child: Option<Child>,
    pub web: Web,
    // Dropped last: webd and notifyd use it until then.
    pub dir: tempfile::TempDir,
}

impl Notifyd {
    /// Opens (and migrates) the database, starts webd on it, saves
    /// `settings` on the settings screen, then starts notifyd, which reads
    /// them at startup. The HTTP stand-ins listen on 127.0.0.1, which
    /// notifyd refuses to reach unless the admin allows it, so the admin
    /// allows it, unless `settings` names the allow-list.
    pub async fn start(settings: &[(&str, &str)]) -> Notifyd {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        let port = free_port();
        let web = Web::beside(dir.path(), &format!("127.0.0.1:{port}")).await;
        let mut all = Vec::new();
        if !settings.iter().any(|(k, _)| *k == proto::ssrf::ALLOW_KEY) {
            all.push((proto::ssrf::ALLOW_KEY, "127.0.0.1"));
        }
        all.extend_from_slice(settings);
        web.settings(&all).await;
        let mut n = Notifyd {
            dir,
            port,
            pool,
            child: None,
            web,
        };
        n.spawn().await;
        n
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the binary and waits until its gRPC port answers health.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(env!("CARGO_BIN_EXE_notifyd"))
            .env("GOSIP_DATA_DIR", self.dir.path())
            .env("GOSIP_NOTIFYD_GRPC", format!("127.0.0.1:{}", self.port))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "notifyd=info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(20), "notifyd to listen", || {
            let url = url.clone();
            async move {
                let mut c = DaemonClient::connect(url).await.ok()?;
                c.health(proto::pb::common::HealthRequest {}).await.ok()
            }
        })
        .await;
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The gRPC secret notifyd created in its data dir.
    pub fn secret(&self) -> Secret {
        Secret::load_or_create(self.dir.path()).unwrap()
    }

    /// A channel whose calls carry the secret, as the other daemons' do.
    pub async fn channel(&self) -> AuthChannel {
        let ch = Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        authed(ch, &self.secret())
    }

    pub async fn client(&self) -> NotifydClient<AuthChannel> {
        NotifydClient::new(self.channel().await)
    }

    pub async fn notify(
        &self,
        kind: &str,
        user_id: i64,
        payload: serde_json::Value,
        attachments: &[&str],
    ) -> i64 {
        self.client()
            .await
            .notify(NotifyRequest {
                kind: kind.into(),
                user_id,
                payload_json: payload.to_string(),
                attachments: attachments.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .job_id
    }

    pub async fn send_test(&self, channel: &str, target: &str) -> SendTestReply {
        self.send_test_for(channel, target, 0).await
    }

    /// SendTest on behalf of a user (their own Gotify server).
    pub async fn send_test_for(&self, channel: &str, target: &str, user_id: i64) -> SendTestReply {
        self.client()
            .await
            .send_test(SendTestRequest {
                channel: channel.into(),
                target: target.into(),
                user_id,
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// A setting saved on the settings screen; webd has notifyd reload
    /// before it answers, so notifyd uses the new value once this returns.
    pub async fn set(&self, key: &str, value: &str) {
        self.web.settings(&[(key, value)]).await;
    }

    /// A user the admin makes on the users screen (role `admin` or `user`);
    /// unless `prefs` is `{}` (nothing changed), the user then logs in and
    /// saves `prefs` (the `notify_prefs` JSON, e.g. `{"email": false}` or
    /// `{"gotify": {"url": ..., "token": ...}}`) on their settings page.
    /// Their id.
    pub async fn add_user(&self, email: &str, role: &str, prefs: &str) -> i64 {
        let id = self.web.api.new_user(&self.web.admin, email, role).await;
        let unchanged = serde_json::from_str::<serde_json::Value>(prefs)
            .unwrap()
            .as_object()
            .is_some_and(|m| m.is_empty());
        if !unchanged {
            let cookie = self.web.api.login(email).await;
            self.web.my_prefs(&cookie, prefs).await;
        }
        id
    }

    /// A webhook endpoint the admin adds (`events` a JSON list, `[]` = all;
    /// `secret` at least 16 characters, as the form requires); with
    /// `enabled` false the admin then pauses it. Its id.
    pub async fn add_endpoint(&self, url: &str, secret: &str, events: &str, enabled: bool) -> i64 {
        let events: serde_json::Value = serde_json::from_str(events).unwrap();
        let (api, admin) = (&self.web.api, &self.web.admin);
        let id = api
            .ok(
                admin,
                201,
                "POST",
                "/api/webhook-endpoints",
                Some(serde_json::json!({"url": url, "secret": secret, "events": events})),
            )
            .await["id"]
            .as_i64()
            .unwrap();
        if !enabled {
            // The admin pauses it.
            api.ok(
                admin,
                200,
                "PUT",
                &format!("/api/webhook-endpoints/{id}"),
                Some(serde_json::json!({ "enabled": false })),
            )
            .await;
        }
        id
    }

    /// Delivery log rows (channel, target, status, response), oldest first.
    pub async fn deliveries(&self, channel: &str) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT target, status, response FROM deliveries WHERE channel = ? ORDER BY id",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    /// (status, attempts) of every delivery job of `channel`.
    pub async fn jobs(&self, channel: &str) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT status, attempts FROM jobs WHERE queue = 'notifyd' AND kind = ? ORDER BY id",
        )
        .bind(channel)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

impl Drop for Notifyd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real SMTP server (Python aiosmtpd) saving messages to a folder.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpSink {
    /// Starts on `port`, saving to `dir`; with `auth`, "user:password" is required.
    pub async fn start(port: u16, dir: &Path, auth: Option<&str>) -> SmtpSink {
        Self::start_with(port, dir, auth, &[]).await
    }

    /// Like [`SmtpSink::start`] with extra environment (SINK_TLS, SINK_CERT, SINK_KEY).
    pub async fn start_with(
        port: u16,
        dir: &Path,
        auth: Option<&str>,
        env: &[(&str, &Path)],
    ) -> SmtpSink {
        std::fs::create_dir_all(dir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg("-W")
            .arg("ignore")
            .arg(script)
            .arg(port.to_string())
            .arg(dir);
        if let Some(a) = auth {
            cmd.arg(a);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        // "ready" comes after the server has bound its port; an early exit
        // (port taken) closes stdout instead. Waiting for a connection alone
        // could be fooled by another process on the same port.
        let stdout = child.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line).ok();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .expect("the SMTP server to start")
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP server did not start on port {port}"
        );
        SmtpSink {
            port,
            dir: dir.to_owned(),
            child,
        }
    }

    /// Raw messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        messages_in(&self.dir)
    }

    /// The `.env` sidecars (recipients, login), in arrival order.
    pub fn envelopes(&self) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "env"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Vec<u8>> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} message(s)"),
            || async {
                let m = self.messages();
                (m.len() >= n).then_some(m)
            },
        )
        .await
    }
}

/// A self-signed certificate for 127.0.0.1 (cert.pem, key.pem in `dir`),
/// made with the openssl command-line tool.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command-line tool makes the test certificate");
    assert!(st.success());
    (cert, key)
}

pub fn messages_in(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut names: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request an HTTP stand-in received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub query: std::collections::HashMap<String, String>,
    pub body: Bytes,
}

/// An HTTP stand-in (Gotify, Postmark, a webhook receiver) that records
/// every POST and answers with the status currently set.
#[derive(Clone)]
pub struct StandIn {
    pub addr: std::net::SocketAddr,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<Mutex<u16>>,
}

impl StandIn {
    /// Serves POST `path` on a free loopback port.
    pub async fn start(path: &str, status: u16) -> StandIn {
        let got = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(status));
        let state = (got.clone(), status.clone());
        let app = Router::new().route(path, post(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        StandIn { addr, got, status }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_status(&self, s: u16) {
        *self.status.lock().unwrap() = s;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(
            Duration::from_secs(30),
            &format!("{n} request(s)"),
            || async {
                let r = self.received();
                (r.len() >= n).then_some(r)
            },
        )
        .await
    }
}

type Shared = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<u16>>);

async fn record(
    State((got, status)): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    got.lock().unwrap().push(Received {
        headers,
        query,
        body,
    });
    let s = *status.lock().unwrap();
    let code = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        if code.is_success() {
            "{\"ok\":true}"
        } else {
            "stand-in says no"
        },
    )
}

pub use testkit::eventually_some as eventually;
pub use testkit::ports::tcp as free_port;
