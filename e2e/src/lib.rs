//! System-test harness: starts the real daemon binaries (built by
//! `cargo build --workspace`) on free loopback ports with a temp data dir,
//! waits for health, and stops them with SIGTERM on drop.
//!
//! Binaries are looked up beside the test executable (`target/<profile>/`),
//! or in `GOSIP_BIN_DIR`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub mod audio;
pub mod baresip;
pub mod capture;
pub mod netlab;
pub mod standin;

/// The five daemons, in start order.
pub const DAEMONS: &[&str] = &["sipd", "mediad", "twiliod", "notifyd", "webd"];

/// Folder holding the daemon binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GOSIP_BIN_DIR") {
        return PathBuf::from(d);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Sends the common `Daemon.Reload` to each daemon's gRPC port on
/// 127.0.0.1 and waits for every answer (sipd re-reads devices and settings
/// before it answers). The daemons' shared secret comes from `data_dir`.
pub async fn reload_daemons(data_dir: &Path, grpc_ports: &[u16]) {
    use proto::pb::common::ReloadRequest;
    use proto::pb::common::daemon_client::DaemonClient;
    for port in grpc_ports {
        DaemonClient::new(grpc_channel(data_dir, *port).await)
            .reload(ReloadRequest {})
            .await
            .expect("reload");
    }
}

/// A channel to the daemon whose gRPC port on 127.0.0.1 is `port`, its
/// calls carrying the secret the daemons keep in `data_dir`, as webd's do.
pub async fn grpc_channel(data_dir: &Path, port: u16) -> proto::grpc::AuthChannel {
    let secret = proto::grpc::Secret::load_or_create(data_dir).expect("grpc secret");
    proto::grpc::connect(format!("http://127.0.0.1:{port}"), &secret)
        .await
        .expect("daemon grpc")
}

pub use testkit::api::PASSWORD;

/// webd's API ([`testkit::api::Api`]) with what only the system tests
/// need: the address of a started [`System`] and the Twilio stand-in.
pub struct Api(testkit::api::Api);

impl std::ops::Deref for Api {
    type Target = testkit::api::Api;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Api {
    pub fn new(sys: &System) -> Self {
        Self::at(sys.base_url())
    }

    /// The API of a webd at `base` (`http://127.0.0.1:port`), e.g. one a
    /// test runs in-process.
    pub fn at(base: String) -> Self {
        Self(testkit::api::Api::at(base))
    }

    /// Connects GoSIP to the Twilio stand-in `s` through the settings API,
    /// as the admin types the credentials; `extra` adds more settings.
    pub async fn connect_twilio(
        &self,
        cookie: &str,
        s: &standin::Standin,
        extra: serde_json::Value,
    ) {
        let mut values = serde_json::json!({
            "twilio.account_sid": s.account_sid,
            "twilio.auth_token": s.auth_token,
            "twilio.api_base": s.base_url,
        });
        if let (Some(v), Some(e)) = (values.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
        }
        self.settings(cookie, values).await;
    }

    /// A device `name` (extension `ext`) made on the devices screen, and a
    /// baresip phone for it on loopback (UDP, PCMU) whose microphone plays
    /// `hz`, registered (the device shows so in the API) before it returns.
    pub async fn udp_phone(
        &self,
        admin: &str,
        sys: &System,
        root: &Path,
        (name, ext): (&str, &str),
        hz: f64,
    ) -> baresip::Baresip {
        let dev = self
            .ok(
                admin,
                201,
                "POST",
                "/api/devices",
                Some(serde_json::json!({"name": name, "username": name, "extension": ext})),
            )
            .await;
        let tone = root.join(format!("{name}-tone.wav"));
        std::fs::write(
            &tone,
            audio::Wav::encode(8000, &[audio::sine(8000, hz, 60.0, 0.5)]),
        )
        .expect("tone file");
        let account = format!(
            "<sip:{name}@{};transport=udp>;auth_pass={};regint=300;audio_codecs=PCMU",
            sys.sip_addr(),
            dev["password"].as_str().expect("the new device's password")
        );
        let mut phone = baresip::Baresip::spawn(root, name, &account, &tone, 120);
        phone.connect().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, d, _) = self
                .call(admin, "GET", &format!("/api/devices/{}", dev["id"]), None)
                .await;
            if d["registered"] == true {
                return phone;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never registered\n{}",
                phone.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The first-run wizard of the system `sys` (see
    /// [`testkit::api::Api::setup_in`]); the admin's session cookie.
    pub async fn setup(&self, sys: &System, did: &str) -> String {
        self.setup_in(&sys.data_dir, did).await
    }
}

/// A sipp scenario from sipd's test suite (`sipd/tests/sipp/<name>`), shared
/// so the system tests drive phones exactly as sipd's own tests do.
pub fn sipp_scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sipd/tests/sipp")
        .join(name)
}

/// Ports and addresses of one running system.
#[derive(Debug, Clone)]
pub struct Ports {
    pub http: u16,
    pub sip: u16,
    /// SIP over TLS.
    pub sips: u16,
    pub sipd_grpc: u16,
    /// sipd's SIP over WebSocket listener (webd relays `/ws/sip` to it).
    pub sip_ws: u16,
    pub mediad_grpc: u16,
    pub twiliod_grpc: u16,
    pub twiliod_http: u16,
    pub notifyd_grpc: u16,
    pub rtp: (u16, u16),
}

impl Ports {
    pub fn pick() -> Self {
        Self {
            http: testkit::ports::tcp(),
            sip: testkit::ports::sip(),
            sips: testkit::ports::tcp(),
            sipd_grpc: testkit::ports::tcp(),
            sip_ws: testkit::ports::tcp(),
            mediad_grpc: testkit::ports::tcp(),
            twiliod_grpc: testkit::ports::tcp(),
            twiliod_http: testkit::ports::tcp(),
            notifyd_grpc: testkit::ports::tcp(),
            rtp: testkit::ports::rtp_range(100),
        }
    }

    /// The `GOSIP_*` environment every daemon gets.
    pub fn env(&self, data_dir: &Path) -> Vec<(String, String)> {
        let l = |p: u16| format!("127.0.0.1:{p}");
        vec![
            ("GOSIP_DATA_DIR".into(), data_dir.display().to_string()),
            ("GOSIP_HTTP_BIND".into(), "127.0.0.1".into()),
            ("GOSIP_HTTP_PORT".into(), self.http.to_string()),
            ("GOSIP_SIP_BIND".into(), "127.0.0.1".into()),
            ("GOSIP_SIP_PORT".into(), self.sip.to_string()),
            ("GOSIP_SIPS_PORT".into(), self.sips.to_string()),
            ("GOSIP_SIPD_GRPC".into(), l(self.sipd_grpc)),
            ("GOSIP_SIP_WS".into(), l(self.sip_ws)),
            ("GOSIP_MEDIAD_GRPC".into(), l(self.mediad_grpc)),
            ("GOSIP_TWILIOD_GRPC".into(), l(self.twiliod_grpc)),
            ("GOSIP_TWILIOD_HTTP".into(), l(self.twiliod_http)),
            ("GOSIP_NOTIFYD_GRPC".into(), l(self.notifyd_grpc)),
            ("GOSIP_RTP_BIND".into(), "127.0.0.1".into()),
            (
                "GOSIP_RTP_PORTS".into(),
                format!("{}-{}", self.rtp.0, self.rtp.1),
            ),
        ]
    }
}

/// A running GoSIP: five processes, one temp data dir.
pub struct System {
    pub ports: Ports,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    children: HashMap<&'static str, Child>,
    extra_env: Vec<(String, String)>,
    /// Network namespace the daemons run in ([`System::start_in`]).
    netns: Option<netlab::Ns>,
}

impl System {
    /// Starts all five daemons at once on a fresh temp data dir and waits
    /// until `/api/system/health` says every part is ok.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`System::start`] with extra env vars (e.g. `RUST_LOG`).
    pub async fn start_with(extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut sys = Self {
            ports: Ports::pick(),
            data_dir,
            _tmp: Some(tmp),
            children: HashMap::new(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns: None,
        };
        for d in DAEMONS {
            sys.spawn(d)?;
        }
        sys.wait_healthy(Duration::from_secs(30)).await?;
        Ok(sys)
    }

    /// All five daemons inside network namespace `ns`, started the way
    /// `make run` starts them (scripts/run.sh): only `GOSIP_DATA_DIR` is
    /// set, so SIP listens on 0.0.0.0:5060 (TLS :5061), HTTP on 0.0.0.0:8080, RTP on
    /// 10000-10999 and gRPC on the namespace's own 127.0.0.1, plus
    /// `extra_env` (e.g. `RUST_LOG`).
    pub async fn start_in(ns: &netlab::Ns, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let sip = proto::defaults::SIP_PORT;
        let http = proto::defaults::HTTP_PORT;
        let grpc = |a: &str| {
            a.rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        let mut sys = Self {
            ports: Ports {
                http,
                sip,
                sips: proto::defaults::SIPS_PORT,
                sipd_grpc: grpc(proto::defaults::SIPD_GRPC),
                sip_ws: grpc(proto::defaults::SIPD_WS),
                mediad_grpc: grpc(proto::defaults::MEDIAD_GRPC),
                twiliod_grpc: grpc(proto::defaults::TWILIOD_GRPC),
                twiliod_http: grpc(proto::defaults::TWILIOD_HTTP),
                notifyd_grpc: grpc(proto::defaults::NOTIFYD_GRPC),
                rtp: (10000, 10999),
            },
            data_dir,
            _tmp: Some(tmp),
            children: HashMap::new(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns: Some(ns.clone()),
        };
        std::fs::create_dir_all(&sys.data_dir)?;
        for d in DAEMONS {
            sys.spawn(d)?;
        }
        sys.wait_healthy(Duration::from_secs(30)).await?;
        Ok(sys)
    }

    /// Starts (or restarts) one daemon.
    pub fn spawn(&mut self, daemon: &'static str) -> anyhow::Result<()> {
        let bin = bin_dir().join(daemon);
        if !bin.exists() {
            bail!(
                "{} not found: run `cargo build --workspace` first",
                bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(daemon))
            .or_else(|_| {
                std::fs::create_dir_all(&self.data_dir)?;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path(daemon))
            })?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = ns.command(&bin);
                c.env("GOSIP_DATA_DIR", &self.data_dir);
                c
            }
            None => {
                let mut c = Command::new(&bin);
                c.envs(self.ports.env(&self.data_dir));
                c
            }
        };
        let child = cmd
            .envs(self.extra_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        self.children.insert(daemon, child);
        Ok(())
    }

    /// Where a daemon's stderr goes (beside the data dir).
    pub fn log_path(&self, daemon: &str) -> PathBuf {
        self.data_dir.with_file_name(format!("{daemon}.log"))
    }

    /// A daemon's log so far (for failure messages).
    pub fn log(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.log_path(daemon)).unwrap_or_default()
    }

    /// Sends SIGTERM to one daemon and waits for it to exit; returns its exit status.
    pub fn stop(&mut self, daemon: &str) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.children.remove(daemon).context("not running")?;
        terminate(&mut child)
    }

    /// Kills one daemon with SIGKILL (a crash).
    pub fn kill(&mut self, daemon: &str) -> anyhow::Result<()> {
        let mut child = self.children.remove(daemon).context("not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.http)
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.sip))
    }

    /// Polls health until `daemon` reports ok (whatever the others say,
    /// e.g. notifyd degraded while no email server is set up).
    pub async fn wait_daemon_ok(&self, daemon: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let url = format!("{}/api/system/health", self.base_url());
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(v) = r.json::<serde_json::Value>().await
            {
                if v["daemons"][daemon]["status"] == "ok" {
                    return Ok(());
                }
                last = v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("{daemon} not ok within {within:?}: {last}")
    }

    /// Polls health until every part is ok or `within` passes.
    pub async fn wait_healthy(&self, within: Duration) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + within;
        let client = reqwest::Client::new();
        let url = format!("{}/api/system/health", self.base_url());
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(ns) = &self.netns {
                // This process is not in that namespace: ask from inside.
                let out = ns.exec("curl", &["-sS", "--max-time", "3", &url]);
                match out.map(|b| serde_json::from_str::<serde_json::Value>(&b)) {
                    Ok(Ok(v)) if v["status"] == "ok" => return Ok(v),
                    Ok(Ok(v)) => last = v.to_string(),
                    Ok(Err(e)) => last = e.to_string(),
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            match client
                .get(&url)
                .timeout(Duration::from_secs(3))
                .send()
                .await
            {
                Ok(r) => {
                    let v: serde_json::Value = r.json().await.unwrap_or_default();
                    if v["status"] == "ok" {
                        return Ok(v);
                    }
                    last = v.to_string();
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let logs: String = DAEMONS
            .iter()
            .map(|d| format!("--- {d}\n{}\n", self.log(d)))
            .collect();
        bail!("not healthy within {within:?}: {last}\n{logs}")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for (_, mut c) in self.children.drain() {
            let _ = terminate(&mut c);
        }
    }
}

fn terminate(child: &mut Child) -> anyhow::Result<std::process::ExitStatus> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    Ok(child.wait()?)
}
