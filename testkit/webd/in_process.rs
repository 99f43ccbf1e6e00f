//! webd started in the test's own process on a daemon's data dir, with the
//! admin logged in: how the daemons' system tests set things up the way an
//! admin does (webd's API), never by writing webd's tables. sipd's and
//! notifyd's test harnesses include this file (`#[path]`); it is not part of
//! the testkit library, which cannot depend on webd (webd's own tests use
//! testkit). Each harness adds its own helpers in an `impl Web` block.

use std::path::Path;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// A webd in this process.
pub struct Web {
    pub api: testkit::api::Api,
    /// The admin's session cookie.
    pub admin: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// webd's flags naming the other daemons' gRPC addresses (and twiliod's
/// webhook port).
const PEERS: [&str; 6] = [
    "--sipd-grpc",
    "--sipd-ws",
    "--mediad-grpc",
    "--twiliod-grpc",
    "--notifyd-grpc",
    "--twiliod-http",
];

impl Web {
    /// Starts webd on `dir`, talking to the daemons `peers` names (e.g.
    /// `[("--sipd-grpc", "127.0.0.1:5")]`; the others are a closed port, a
    /// daemon that is down), and runs the first-run wizard on a fresh dir
    /// or logs the admin in on one that has it already.
    pub async fn start(dir: &Path, peers: &[(&str, &str)]) -> Web {
        let dead = testkit::ports::closed_tcp_addr();
        let d = dir.to_str().unwrap();
        let mut args = vec!["webd", "--data-dir", d, "--web-dir", d];
        for flag in PEERS {
            let addr = peers
                .iter()
                .find(|(f, _)| *f == flag)
                .map_or(dead.as_str(), |(_, a)| a);
            args.extend([flag, addr]);
        }
        let cfg = webd::Config::parse_from(args);
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = testkit::api::Api::at(format!("http://{}", http.local_addr().unwrap()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(webd::run(cfg, webd::Listeners { http }, shutdown.clone()));
        // Answers once webd serves, its setup token written.
        let status = api.ok("", 200, "GET", "/api/setup/status", None).await;
        let admin = if status["needed"] == true {
            api.setup_admin_in(dir).await
        } else {
            api.login("admin@example.org").await
        };
        Web {
            api,
            admin,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops webd and waits for it.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// `{"key": "value", ...}` saved on the settings screen; webd has the
    /// daemons reload them before it answers.
    pub async fn settings(&self, values: &[(&str, &str)]) {
        let map: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        self.api.settings(&self.admin, map.into()).await;
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
