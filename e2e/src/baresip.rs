//! A headless baresip softphone for system tests: its own config folder,
//! a WAV file as microphone (`aufile`), what it hears dumped to WAV
//! (`sndfile`), and its JSON command socket (`ctrl_tcp`, netstrings) on a
//! loopback port so the test can dial, hang up and watch call events (the
//! commands themselves come from the `menu` module).
//! Needs the Debian package `baresip` (1.0: `aufile` is a source only, so
//! the player stays a dummy and `sndfile` records what was heard).
//! A phone can run in another network namespace ([`Host`]): then it binds
//! SIP and RTP to that namespace's address and its command socket listens
//! on that namespace's loopback, which the caller reaches through
//! [`Baresip::connect_with`].
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const MODULES: &str = "/usr/lib/baresip/modules";

pub struct Baresip {
    pub name: String,
    /// Config folder; `dump/` in it holds the sndfile WAVs.
    pub dir: PathBuf,
    pub sip_port: u16,
    pub ctrl_port: u16,
    child: tokio::process::Child,
    ctrl: Option<TcpStream>,
    buf: Vec<u8>,
    tokens: u32,
    /// Events read while waiting for something else.
    events: VecDeque<serde_json::Value>,
}

/// Where a phone runs.
#[derive(Debug, Clone)]
pub struct Host {
    /// Network namespace (`ip netns exec`); `None` for this process's.
    pub netns: Option<String>,
    /// Address SIP and RTP bind to (and that the phone puts in its SDP).
    pub ip: IpAddr,
    pub sip_port: u16,
    /// Command socket port on the namespace's 127.0.0.1.
    pub ctrl_port: u16,
}

impl Host {
    /// On 127.0.0.1 of this namespace, with free ports.
    pub fn loopback() -> Host {
        Host {
            netns: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sip_port: testkit::ports::sip_pair(),
            ctrl_port: testkit::ports::tcp(),
        }
    }

    /// In namespace `netns` on `ip`; the namespace is the phone's own, so
    /// fixed ports are free.
    pub fn netns(netns: &str, ip: IpAddr) -> Host {
        Host {
            netns: Some(netns.to_owned()),
            ip,
            sip_port: 5062,
            ctrl_port: 4444,
        }
    }
}

impl Baresip {
    /// Starts baresip named `name` in `root/name` with `account` (one line
    /// of baresip's `accounts` file) and `source` as its microphone. It
    /// quits by itself after `max_secs` whatever happens to the test.
    pub fn spawn(root: &Path, name: &str, account: &str, source: &Path, max_secs: u32) -> Baresip {
        Self::spawn_on(Host::loopback(), root, name, account, source, max_secs)
    }

    /// [`Baresip::spawn`] with `config` lines added to its config file
    /// (e.g. `sip_cafile` for SIP over TLS).
    pub fn spawn_with(
        root: &Path,
        name: &str,
        (account, config): (&str, &str),
        source: &Path,
        max_secs: u32,
    ) -> Baresip {
        Self::spawn_in(
            Host::loopback(),
            root,
            name,
            (account, config),
            source,
            max_secs,
        )
    }

    /// [`Baresip::spawn`] on `host`.
    pub fn spawn_on(
        host: Host,
        root: &Path,
        name: &str,
        account: &str,
        source: &Path,
        max_secs: u32,
    ) -> Baresip {
        Self::spawn_in(host, root, name, (account, ""), source, max_secs)
    }

    fn spawn_in(
        host: Host,
        root: &Path,
        name: &str,
        (account, config): (&str, &str),
        source: &Path,
        max_secs: u32,
    ) -> Baresip {
        let dir = root.join(name);
        let dump = dir.join("dump");
        std::fs::create_dir_all(&dump).unwrap();
        let Host {
            netns,
            ip,
            sip_port,
            ctrl_port,
        } = host;
        std::fs::write(
            dir.join("config"),
            format!(
                "poll_method epoll\n\
                 sip_listen {ip}:{sip_port}\n\
                 net_interface {ip}\n\
                 module_path {MODULES}\n\
                 module g711.so\n\
                 module aufile.so\n\
                 module sndfile.so\n\
                 module_tmp uuid.so\n\
                 module_tmp account.so\n\
                 module_app menu.so\n\
                 module_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
                 snd_path {dump}\n\
                 audio_player aufile,/dev/null\n\
                 audio_source aufile,{src}\n{config}",
                dump = dump.display(),
                src = source.display(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("accounts"), format!("{account}\n")).unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, "baresip"]);
                c
            }
            None => tokio::process::Command::new("baresip"),
        };
        let child = cmd
            .arg("-f")
            .arg(&dir)
            .args(["-t", &max_secs.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("baresip (install the Debian package baresip)");
        Baresip {
            name: name.into(),
            dir,
            sip_port,
            ctrl_port,
            child,
            ctrl: None,
            buf: Vec::new(),
            tokens: 0,
            events: VecDeque::new(),
        }
    }

    /// baresip's own output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Connects to the command socket, retrying while baresip starts.
    pub async fn connect(&mut self) {
        self.connect_with(std::net::TcpStream::connect).await
    }

    /// [`Baresip::connect`] through `dial`, which opens a TCP connection
    /// to the command socket's address (e.g. from inside the phone's
    /// network namespace).
    pub async fn connect_with(
        &mut self,
        dial: impl Fn(SocketAddr) -> std::io::Result<std::net::TcpStream>,
    ) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ctrl_port));
        let mut last = String::new();
        for _ in 0..100 {
            match dial(addr).and_then(|s| {
                s.set_nonblocking(true)?;
                TcpStream::from_std(s)
            }) {
                Ok(s) => {
                    self.ctrl = Some(s);
                    return;
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{}: ctrl_tcp never listened ({last})\n{}",
            self.name,
            self.log()
        );
    }

    /// Runs one command and returns its `data` when baresip says ok.
    pub async fn command(&mut self, command: &str, params: &str) -> Result<String, String> {
        self.tokens += 1;
        let token = format!("{command}-{}", self.tokens);
        let msg =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let framed = format!("{}:{msg},", msg.len());
        self.ctrl
            .as_mut()
            .expect("connect() first")
            .write_all(framed.as_bytes())
            .await
            .map_err(|e| format!("{}: send {command}: {e}", self.name))?;
        loop {
            let m = self
                .next_message(Duration::from_secs(10))
                .await
                .ok_or_else(|| format!("{}: no answer to {command}", self.name))?;
            if m["response"] == true && m["token"] == token.as_str() {
                let data = m["data"].as_str().unwrap_or_default().to_string();
                return if m["ok"] == true {
                    Ok(data)
                } else {
                    Err(format!("{}: {command} failed: {data}", self.name))
                };
            }
            if m["event"] == true {
                self.events.push_back(m);
            }
        }
    }

    /// Waits up to `wait` for an event of `kind` (e.g. `CALL_ESTABLISHED`),
    /// keeping the events it passes over in order.
    pub async fn event(&mut self, kind: &str, wait: Duration) -> Result<serde_json::Value, String> {
        if let Some(i) = self.events.iter().position(|e| e["type"] == kind) {
            return Ok(self.events.remove(i).unwrap());
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(m) = self.next_message(left).await else {
                return Err(format!(
                    "{}: no {kind} event; saw {seen:?}\n{}",
                    self.name,
                    self.log()
                ));
            };
            if m["event"] != true {
                continue;
            }
            if m["type"] == kind {
                return Ok(m);
            }
            seen.push(m["type"].as_str().unwrap_or_default().to_string());
            self.events.push_back(m);
        }
    }

    /// Asks baresip to quit and waits for the process to end.
    pub async fn quit(mut self) {
        let _ = self.command("quit", "").await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// The WAV sndfile wrote of what this phone heard (`*-dec.wav`), or
    /// sent (`*-enc.wav`) with `heard = false`.
    pub fn dump(&self, heard: bool) -> Option<PathBuf> {
        let suffix = if heard { "-dec.wav" } else { "-enc.wav" };
        let mut found: Vec<PathBuf> = std::fs::read_dir(self.dir.join("dump"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        found.sort();
        found.pop()
    }

    async fn next_message(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = netstring(&mut self.buf) {
                return serde_json::from_slice(&m).ok();
            }
            let mut b = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.ctrl.as_mut()?.read(&mut b))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
}

/// Takes one `len:payload,` netstring off the front of `buf`.
fn netstring(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let colon = buf.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
    if buf.len() < colon + 1 + len + 1 {
        return None;
    }
    let m = buf[colon + 1..colon + 1 + len].to_vec();
    buf.drain(..colon + 1 + len + 1);
    Some(m)
}
