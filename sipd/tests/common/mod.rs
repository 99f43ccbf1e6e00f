//! A real sipd on 127.0.0.1 ports chosen by the kernel, with a temp data
//! dir, plus a tiny SIP phone that speaks digest, for the system tests.
//! Devices, numbers, users and settings are made the way an admin makes
//! them: through the API of a webd started beside sipd on the same data
//! dir (which pushes each change to sipd over gRPC, as in production).
#![allow(dead_code)]

pub mod dialog;
pub mod sipp;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use proto::types::{DeviceId, DidId};
use sqlx::SqlitePool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

pub const REALM: &str = "gosip.test";

pub struct Sipd {
    pub dir: PathBuf,
    pub sip: SocketAddr,
    /// SIP over TLS.
    pub sips: SocketAddr,
    pub grpc: SocketAddr,
    /// SIP over WebSocket, as webd reaches it.
    pub ws: SocketAddr,
    pub pool: SqlitePool,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
    mediad: Option<(
        tokio::task::JoinHandle<anyhow::Result<()>>,
        CancellationToken,
    )>,
    pub web: Web,
}

#[path = "../../../testkit/webd/in_process.rs"]
mod web;
pub use web::Web;

/// What sipd's tests make on webd's screens.
impl Web {
    /// The id of the device `username` on the devices screen.
    pub async fn device_id(&self, username: &str) -> DeviceId {
        let list = self
            .api
            .ok(&self.admin, 200, "GET", "/api/devices?per_page=100", None)
            .await;
        list["items"]
            .as_array()
            .and_then(|a| a.iter().find(|d| d["username"] == username))
            .and_then(|d| d["id"].as_i64())
            .map(DeviceId)
            .unwrap_or_else(|| panic!("no device {username}: {list}"))
    }

    /// Changes the device `username` on the devices screen (`{"recording_enabled":
    /// true}`).
    pub async fn edit_device(&self, username: &str, changes: serde_json::Value) {
        let id = self.device_id(username).await;
        self.api
            .ok(
                &self.admin,
                200,
                "PUT",
                &format!("/api/devices/{id}"),
                Some(changes),
            )
            .await;
    }

    /// A number (E.164) added on the numbers screen; its id.
    pub async fn add_did(&self, number: &str) -> DidId {
        DidId(
            self.api
                .ok(
                    &self.admin,
                    201,
                    "POST",
                    "/api/dids",
                    Some(serde_json::json!({ "number": number, "name": number })),
                )
                .await["id"]
                .as_i64()
                .unwrap(),
        )
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (t % 65_000) as u16
}

impl Sipd {
    /// Starts sipd on a fresh data dir with `settings` stored first.
    pub async fn start(settings: &[(&str, &str)]) -> Sipd {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let mut s = Self::start_in(&dir, settings).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts mediad and sipd (wired to it) on a fresh data dir.
    pub async fn start_with_mediad(settings: &[(&str, &str)]) -> Sipd {
        Self::start_with_mediad_on(settings, "127.0.0.1").await
    }

    /// Starts mediad and sipd with SIP and RTP bound to `bind` (e.g.
    /// `0.0.0.0`, as `make run` does); `sip` is then its loopback address.
    pub async fn start_with_mediad_on(settings: &[(&str, &str)], bind: &str) -> Sipd {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = grpc.local_addr().unwrap().to_string();
        // A range unlikely to clash with another test running at once.
        let base = 20_000 + (std::process::id() % 200) * 200 + u32::from(rand_u16() % 100) * 2;
        let cfg = mediad::Config::parse_from([
            "mediad",
            "--data-dir",
            dir.to_str().unwrap(),
            "--grpc",
            &addr,
            "--rtp-bind",
            bind,
            "--rtp-ports",
            &format!("{base}-{}", base + 99),
        ]);
        let shutdown = CancellationToken::new();
        let m = tokio::spawn(mediad::run(
            cfg,
            mediad::Listeners { grpc },
            shutdown.clone(),
        ));
        let mut s = Self::start_opts(&dir, settings, Some(&addr), bind).await;
        s._tmp = Some(tmp);
        s.mediad = Some((m, shutdown));
        s
    }

    /// Starts sipd on an existing data dir (a restart).
    pub async fn start_in(dir: &Path, settings: &[(&str, &str)]) -> Sipd {
        Self::start_opts(dir, settings, None, "127.0.0.1").await
    }

    async fn start_opts(
        dir: &Path,
        settings: &[(&str, &str)],
        mediad: Option<&str>,
        bind: &str,
    ) -> Sipd {
        let pool = proto::db::open(dir).await.unwrap();
        let (udp, tcp) = testkit::ports::sip_bound(bind).await;
        let sip = SocketAddr::from(([127, 0, 0, 1], udp.local_addr().unwrap().port()));
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let cfg = sipd::Config::parse_from([
            "sipd",
            "--data-dir",
            dir.to_str().unwrap(),
            "--sip-bind",
            bind,
            "--mediad-grpc",
            mediad.unwrap_or("127.0.0.1:9"),
            // No notifyd here: call notices wait in sipd's queue.
            "--notifyd-grpc",
            "127.0.0.1:9",
        ]);
        let shutdown = CancellationToken::new();
        let tls = TcpListener::bind((sip.ip(), 0)).await.unwrap();
        let sips = tls.local_addr().unwrap();
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ws_addr = ws.local_addr().unwrap();
        let listeners = sipd::Listeners {
            udp,
            tcp,
            tls,
            ws,
            grpc,
        };
        let task = tokio::spawn(sipd::run(cfg, listeners, shutdown.clone()));
        // The registrar is ready once it answers an OPTIONS.
        // The admin sets the realm and the test's settings; webd has sipd
        // reload them before it answers.
        let sipd_grpc = grpc_addr.to_string();
        let sipd_ws = ws_addr.to_string();
        let mut peers = vec![
            ("--sipd-grpc", sipd_grpc.as_str()),
            ("--sipd-ws", sipd_ws.as_str()),
        ];
        peers.extend(mediad.map(|m| ("--mediad-grpc", m)));
        let web = Web::start(dir, &peers).await;
        let mut all = vec![("sip.realm", REALM)];
        all.extend_from_slice(settings);
        web.settings(&all).await;
        let s = Sipd {
            dir: dir.to_owned(),
            sip,
            sips,
            pool,
            shutdown,
            task: Some(task),
            _tmp: None,
            mediad: None,
            grpc: grpc_addr,
            ws: ws_addr,
            web,
        };
        let p = Phone::udp(&s, "probe").await;
        for _ in 0..100 {
            if p.request_once(&p.options(), Duration::from_millis(100))
                .await
                .is_some()
            {
                return s;
            }
        }
        panic!("sipd did not come up");
    }

    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.web.stop().await;
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        if let Some((m, stop)) = self.mediad.take() {
            stop.cancel();
            let _ = m.await;
        }
        self._tmp.take()
    }

    /// A device made on the devices screen with its own password; its id
    /// (webd has sipd use it before it answers).
    pub async fn add_device(&self, username: &str, password: &str, extension: &str) -> DeviceId {
        DeviceId(
            self.web
                .api
                .ok(
                    &self.web.admin,
                    201,
                    "POST",
                    "/api/devices",
                    Some(serde_json::json!({"name": username, "username": username,
                    "password": password, "extension": extension})),
                )
                .await["id"]
                .as_i64()
                .unwrap(),
        )
    }

    pub async fn add_devices(&self, list: &[(&str, &str, &str)]) {
        for (u, p, e) in list {
            self.add_device(u, p, e).await;
        }
    }

    /// A gRPC client carrying the secret sipd keeps in its data dir, as
    /// webd's does.
    pub async fn grpc_client(
        &self,
    ) -> proto::pb::sipd::sipd_client::SipdClient<proto::grpc::AuthChannel> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let secret = proto::grpc::Secret::load_or_create(&self.dir).unwrap();
        proto::pb::sipd::sipd_client::SipdClient::new(proto::grpc::authed(ch, &secret))
    }

    /// Asks sipd to re-read `devices`; returns once it uses them.
    pub async fn reload_devices(&self) -> u32 {
        use proto::pb::sipd::ReloadDevicesRequest;
        self.grpc_client()
            .await
            .reload_devices(ReloadDevicesRequest {})
            .await
            .unwrap()
            .into_inner()
            .devices
    }

    pub async fn registrations(&self) -> Vec<(String, String, bool)> {
        sqlx::query_as("SELECT contact, transport, online FROM registrations ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn security_events(&self) -> Vec<(String, String, String)> {
        sqlx::query_as(
            "SELECT kind, ip_address, username FROM security_events WHERE source = 'sipd' ORDER BY id",
        )
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Polls `f` until it is true or 10 s pass.
    pub async fn eventually<F, Fut>(&self, what: &str, f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        testkit::eventually(Duration::from_secs(10), what, f).await;
    }
}

/// A SIP response as text with a few accessors.
#[derive(Debug, Clone)]
pub struct Resp(pub String);

impl Resp {
    pub fn code(&self) -> u16 {
        self.0
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.0
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    /// The response with tags and nonces blanked, to compare two answers.
    pub fn shape(&self) -> String {
        let mut out = Vec::new();
        for line in self.0.split("\r\n") {
            let l = match line.find("tag=") {
                Some(i) => format!("{}tag=*", &line[..i]),
                None => line.to_string(),
            };
            let l = match l.find("nonce=\"") {
                Some(i) => {
                    let rest = &l[i + 7..];
                    let end = rest.find('"').unwrap_or(0);
                    format!("{}nonce=*{}", &l[..i], &rest[end + 1..])
                }
                None => l,
            };
            out.push(l);
        }
        out.join("\r\n")
    }
}

enum Sock {
    Udp(UdpSocket),
    Tcp(tokio::sync::Mutex<(TcpStream, Vec<u8>)>),
}

/// A minimal SIP phone: REGISTER with digest, OPTIONS, raw sends.
pub struct Phone {
    pub user: String,
    pub password: String,
    pub server: SocketAddr,
    pub local: SocketAddr,
    sock: Sock,
    pub call_id: String,
    pub cseq: std::sync::atomic::AtomicU32,
    branch: std::sync::atomic::AtomicU32,
}

impl Phone {
    pub async fn udp(s: &Sipd, user: &str) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        Self::new(s.sip, user, local, Sock::Udp(sock))
    }

    pub fn from_socket(s: &Sipd, user: &str, sock: UdpSocket) -> Phone {
        let local = sock.local_addr().unwrap();
        Self::new(s.sip, user, local, Sock::Udp(sock))
    }

    pub async fn tcp(s: &Sipd, user: &str) -> Phone {
        let sock = TcpStream::connect(s.sip).await.unwrap();
        let local = sock.local_addr().unwrap();
        Self::new(
            s.sip,
            user,
            local,
            Sock::Tcp(tokio::sync::Mutex::new((sock, Vec::new()))),
        )
    }

    fn new(server: SocketAddr, user: &str, local: SocketAddr, sock: Sock) -> Phone {
        Phone {
            user: user.into(),
            password: String::new(),
            server,
            local,
            sock,
            call_id: format!("{user}-{}@test", local.port()),
            cseq: 1.into(),
            branch: 1.into(),
        }
    }

    pub fn with_password(mut self, p: &str) -> Self {
        self.password = p.into();
        self
    }

    fn transport(&self) -> &'static str {
        match self.sock {
            Sock::Udp(_) => "UDP",
            Sock::Tcp(_) => "TCP",
        }
    }

    fn next_branch(&self) -> String {
        let n = self
            .branch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("z9hG4bK{}x{n}", self.local.port())
    }

    fn next_cseq(&self) -> u32 {
        self.cseq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn contact(&self) -> String {
        format!(
            "sip:{}@{};transport={}",
            self.user,
            self.local,
            self.transport().to_ascii_lowercase()
        )
    }

    /// A REGISTER with `extra` header lines (each ending in CRLF).
    pub fn register_msg(&self, extra: &str) -> String {
        format!(
            "REGISTER sip:{srv} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{REALM}>;tag=f{port}\r\nTo: <sip:{u}@{REALM}>\r\nCall-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\n\
             User-Agent: gosip-test\r\n{extra}Content-Length: 0\r\n\r\n",
            srv = self.server,
            t = self.transport(),
            local = self.local,
            b = self.next_branch(),
            u = self.user,
            port = self.local.port(),
            cid = self.call_id,
            cseq = self.next_cseq(),
        )
    }

    pub fn options(&self) -> String {
        format!(
            "OPTIONS sip:{srv} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch={b};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{REALM}>;tag=o1\r\nTo: <sip:{srv}>\r\nCall-ID: opt-{b}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            srv = self.server,
            t = self.transport(),
            local = self.local,
            b = self.next_branch(),
            u = self.user,
        )
    }

    pub async fn send(&self, msg: &[u8]) {
        match &self.sock {
            Sock::Udp(s) => {
                s.send_to(msg, self.server).await.unwrap();
            }
            Sock::Tcp(s) => {
                s.lock().await.0.write_all(msg).await.unwrap();
            }
        }
    }

    /// Reads one message (raw text) or times out.
    pub async fn recv(&self, wait: Duration) -> Option<String> {
        match &self.sock {
            Sock::Udp(s) => {
                let mut buf = vec![0u8; 65536];
                let (n, _) = tokio::time::timeout(wait, s.recv_from(&mut buf))
                    .await
                    .ok()?
                    .ok()?;
                Some(String::from_utf8_lossy(&buf[..n]).into_owned())
            }
            Sock::Tcp(s) => {
                let mut guard = s.lock().await;
                let (s, buf) = &mut *guard;
                let mut b = [0u8; 4096];
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    if let Some(m) = frame(buf) {
                        return Some(m);
                    }
                    let n = tokio::time::timeout_at(deadline, s.read(&mut b))
                        .await
                        .ok()?
                        .ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&b[..n]);
                }
            }
        }
    }

    /// Reads raw bytes from TCP (for the CRLF pong).
    pub async fn recv_raw_tcp(&self, wait: Duration) -> Vec<u8> {
        let Sock::Tcp(s) = &self.sock else {
            return vec![];
        };
        let mut guard = s.lock().await;
        let s = &mut guard.0;
        let mut b = [0u8; 64];
        match tokio::time::timeout(wait, s.read(&mut b)).await {
            Ok(Ok(n)) => b[..n].to_vec(),
            _ => vec![],
        }
    }

    pub async fn request_once(&self, msg: &str, wait: Duration) -> Option<Resp> {
        self.send(msg.as_bytes()).await;
        self.recv(wait).await.map(Resp)
    }

    /// Sends and waits for the final response (skips 1xx), retransmitting
    /// on UDP every 500 ms like a phone (RFC 3261 Timer E, simplified).
    pub async fn request(&self, msg: &str) -> Resp {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        // Answers to an earlier retransmission are skipped by their CSeq and branch.
        let field = |m: &str, name: &str| {
            m.split("\r\n")
                .find(|l| l.to_ascii_lowercase().starts_with(name))
                .map(|l| l.split(';').take(2).collect::<Vec<_>>().join(";"))
        };
        let key = (field(msg, "cseq:"), field(msg, "via:"));
        self.send(msg.as_bytes()).await;
        loop {
            let wait = match self.sock {
                Sock::Udp(_) => Duration::from_millis(500),
                Sock::Tcp(_) => Duration::from_secs(8),
            };
            match self.recv(wait).await.map(Resp) {
                Some(r)
                    if r.code() >= 200
                        && (
                            field(&r.0, "cseq:"),
                            field(&r.0, "via:")
                                .map(|v| v.split(";rport").next().unwrap_or_default().to_string()),
                        ) == (
                            key.0.clone(),
                            key.1
                                .clone()
                                .map(|v| v.split(";rport").next().unwrap_or_default().to_string()),
                        ) =>
                {
                    return r;
                }
                Some(_) => {}
                None => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no response to {msg}"
                    );
                    self.send(msg.as_bytes()).await;
                }
            }
        }
    }

    /// REGISTER, answer the 401 with MD5 digest (qop=auth), return the final answer.
    pub async fn register(&self, extra: &str) -> Resp {
        let r = self.request(&self.register_msg(extra)).await;
        if r.code() != 401 {
            return r;
        }
        let auth = self.authorization(&r, "MD5", "REGISTER", 1);
        self.request(&self.register_msg(&format!("{extra}Authorization: {auth}\r\n")))
            .await
    }

    /// The Authorization value answering the challenge of `algorithm` in `r`.
    pub fn authorization(&self, r: &Resp, algorithm: &str, method: &str, nc: u32) -> String {
        let ch = r
            .headers("www-authenticate")
            .into_iter()
            .chain(r.headers("proxy-authenticate"))
            .find(|h| h.contains(&format!("algorithm={algorithm}")))
            .expect("challenge for algorithm");
        let nonce = ch
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        digest_response(
            &self.user,
            &self.password,
            nonce,
            method,
            &format!("sip:{}", self.server),
            algorithm,
            nc,
        )
    }
}

pub fn digest_response(
    user: &str,
    password: &str,
    nonce: &str,
    method: &str,
    uri: &str,
    algorithm: &str,
    nc: u32,
) -> String {
    use sipd::sip::digest::{Algorithm, Credentials};
    let alg = if algorithm == "SHA-256" {
        Algorithm::Sha256
    } else {
        Algorithm::Md5
    };
    let (md5, sha) = sipd::ha1(user, REALM, password);
    let ha1 = if alg == Algorithm::Sha256 { sha } else { md5 };
    let c = Credentials {
        username: user.into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: uri.into(),
        algorithm: algorithm.into(),
        qop: "auth".into(),
        nc: format!("{nc:08x}"),
        cnonce: "c0ffee".into(),
        ..Default::default()
    };
    let resp = c.expected(method, &ha1, alg);
    format!(
        "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={algorithm}, qop=auth, nc={nc:08x}, cnonce=\"c0ffee\""
    )
}

fn frame(buf: &mut Vec<u8>) -> Option<String> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len: usize = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    if buf.len() < end + 4 + len {
        return None;
    }
    let m: Vec<u8> = buf.drain(..end + 4 + len).collect();
    Some(String::from_utf8_lossy(&m).into_owned())
}
