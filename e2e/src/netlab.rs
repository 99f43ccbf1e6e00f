//! A network lab inside this machine: Linux network namespaces joined by
//! veth pairs and bridges, routers doing NAT with nftables, so system tests
//! can put GoSIP, phones and the Twilio stand-in on different networks the
//! way they are in life (a home LAN behind a NAT router, a VPS, the
//! internet) instead of all on 127.0.0.1, where an unreachable address in
//! SDP or Contact goes unnoticed.
//!
//! * Namespaces are named `gs<pid>-<lab>-<name>`; a [`Lab`] deletes its own
//!   on drop (also while a test panics) after ending the processes still in
//!   them, and at start removes those of earlier runs whose process is gone
//!   (a run killed with SIGKILL never reaches its drop).
//! * No namespace gets a link to the host's interfaces; addresses come from
//!   the documentation and benchmarking ranges (RFC 5737, RFC 2544), so no
//!   packet can leave the machine or be mistaken for a real network.
//! * Processes run in a namespace through `ip netns exec`
//!   ([`Ns::command`]). This process reaches into one with a thread that
//!   joined it: [`Ns::enter`] for a quick blocking step (a socket made there
//!   stays there), [`Ns::runtime`] for a tokio runtime whose every socket,
//!   including those reqwest opens, lives in that namespace.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), `ip` (iproute2) and `nft`
//! (nftables). Without them [`Lab::new`] fails with what is missing; it
//! never skips.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, bail};

/// Where `ip netns add` keeps the namespace handles.
const NETNS_DIR: &str = "/var/run/netns";

/// One set of namespaces that belong together; all deleted on drop.
pub struct Lab {
    prefix: String,
    made: Mutex<Vec<String>>,
}

impl Lab {
    /// A new lab named `tag` (short, `[a-z0-9]`). Fails, saying why, when
    /// this process cannot make namespaces or lacks `ip`/`nft`.
    pub fn new(tag: &str) -> anyhow::Result<Lab> {
        for (tool, pkg) in [("ip", "iproute2"), ("nft", "nftables")] {
            if Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
            {
                bail!(
                    "the NAT lab needs `{tool}` (Debian package {pkg}): run scripts/install-deps.sh"
                );
            }
        }
        remove_stale();
        let lab = Lab {
            prefix: format!("gs{}-{tag}-", std::process::id()),
            made: Mutex::new(Vec::new()),
        };
        // Proves the rights up front, with the reason when there are none.
        let probe = lab.ns("probe").context(
            "the NAT lab cannot make network namespaces: it needs root (CAP_SYS_ADMIN, \
             CAP_NET_ADMIN); in a container run it privileged",
        )?;
        lab.remove(&probe.name);
        Ok(lab)
    }

    /// Makes namespace `<prefix><name>` with its loopback up.
    pub fn ns(&self, name: &str) -> anyhow::Result<Ns> {
        let full = format!("{}{name}", self.prefix);
        run("ip", &["netns", "add", &full])?;
        self.lock().push(full.clone());
        let ns = Ns { name: full };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A veth pair from `a` (interface `a_if`, address `a_cidr`) to `b`.
    /// Both ends are made directly inside their namespaces, so the names
    /// only need to be unique there and nothing touches the host's links.
    pub fn link(
        &self,
        a: &Ns,
        a_if: &str,
        a_cidr: &str,
        b: &Ns,
        b_if: &str,
        b_cidr: &str,
    ) -> anyhow::Result<()> {
        run(
            "ip",
            &[
                "link", "add", "name", a_if, "netns", &a.name, "type", "veth", "peer", "name",
                b_if, "netns", &b.name,
            ],
        )?;
        for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
            if !cidr.is_empty() {
                ns.ip(&["addr", "add", cidr, "dev", ifname])?;
            }
            ns.ip(&["link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// A host `h` (interface `eth0` with `cidr`) plugged into bridge
    /// `bridge` of namespace `switch` through port `port`.
    pub fn plug(
        &self,
        switch: &Ns,
        bridge: &str,
        port: &str,
        h: &Ns,
        cidr: &str,
    ) -> anyhow::Result<()> {
        self.link(switch, port, "", h, "eth0", cidr)?;
        switch.ip(&["link", "set", port, "master", bridge])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        match self.made.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn remove(&self, name: &str) {
        delete_ns(name);
        self.lock().retain(|n| n != name);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let names: Vec<String> = self.lock().drain(..).collect();
        for n in names.iter().rev() {
            delete_ns(n);
        }
    }
}

/// One network namespace.
#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all).map(drop)
    }

    /// Runs `prog args` inside the namespace and returns its stdout.
    pub fn exec(&self, prog: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["netns", "exec", &self.name, prog];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `prog` inside the namespace (`ip netns exec`
    /// execs it, so the child's pid is `prog`'s).
    pub fn command(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(prog);
        c
    }

    /// The default route through `via`.
    pub fn default_route(&self, via: Ipv4Addr) -> anyhow::Result<()> {
        self.ip(&["route", "add", "default", "via", &via.to_string()])
    }

    /// Makes this namespace a router: IPv4 forwarding on, here only (the
    /// sysctl is per namespace).
    pub fn forward(&self) -> anyhow::Result<()> {
        self.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])
            .map(drop)
    }

    /// A bridge (a LAN switch) named `name`, optionally with an address.
    pub fn bridge(&self, name: &str, cidr: &str) -> anyhow::Result<()> {
        self.ip(&["link", "add", name, "type", "bridge"])?;
        if !cidr.is_empty() {
            self.ip(&["addr", "add", cidr, "dev", name])?;
        }
        self.ip(&["link", "set", name, "up"])
    }

    /// Loads an nftables ruleset into the namespace.
    pub fn nft(&self, ruleset: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("nft")?;
        child
            .stdin
            .take()
            .context("nft stdin")?
            .write_all(ruleset.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "nft in {}: {}\n{ruleset}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A home router's NAT: everything leaving through `wan` is
    /// masqueraded (source address and, if taken, port rewritten), and
    /// each of `forwards` sends what arrives on `wan` to a LAN host.
    pub fn nat(&self, wan: &str, forwards: &[Forward]) -> anyhow::Result<()> {
        let mut rules = String::new();
        for f in forwards {
            rules.push_str(&format!(
                "    iifname \"{wan}\" {} dport {} dnat to {}\n",
                f.proto, f.ports, f.to
            ));
        }
        self.nft(&format!(
            "table ip nat {{\n\
             \x20 chain prerouting {{\n\
             \x20   type nat hook prerouting priority dstnat; policy accept;\n\
             {rules}\
             \x20 }}\n\
             \x20 chain postrouting {{\n\
             \x20   type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   oifname \"{wan}\" masquerade\n\
             \x20 }}\n\
             }}\n"
        ))
    }

    /// Runs `f` on a thread that joined this namespace: sockets `f` makes
    /// belong to it (and stay there when handed back).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let file = ns_file(&self.name)?;
        std::thread::scope(|s| {
            s.spawn(move || {
                join(&file)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {} panicked", self.name))?
        })
    }

    /// A tokio runtime on a thread that joined this namespace; futures
    /// given to [`NsRuntime::spawn`] make all their sockets there.
    pub fn runtime(&self) -> anyhow::Result<NsRuntime> {
        let file = ns_file(&self.name)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = self.name.clone();
        let thread = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                let rt = join(&file).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("tokio runtime")
                });
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx
            .recv()
            .context("namespace thread ended")?
            .with_context(|| format!("runtime in {name}"))?;
        Ok(NsRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A port forward on a router: `proto` (`udp`/`tcp`) `ports` (`5060`,
/// `10000-10999`, `{ 5060, 8080 }`) to the LAN address `to`.
#[derive(Debug, Clone)]
pub struct Forward {
    pub proto: &'static str,
    pub ports: String,
    pub to: Ipv4Addr,
}

impl Forward {
    pub fn new(proto: &'static str, ports: &str, to: Ipv4Addr) -> Self {
        Self {
            proto,
            ports: ports.to_owned(),
            to,
        }
    }
}

/// A current-thread tokio runtime living in a namespace; stopped (its tasks
/// dropped) on drop.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Runs `f` there; await the handle from any runtime.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn ns_file(name: &str) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(format!("{NETNS_DIR}/{name}"))
        .with_context(|| format!("open namespace {name}"))
}

/// Moves the calling thread (only it: the network namespace is per
/// thread) into the namespace of `file`.
fn join(file: &std::fs::File) -> anyhow::Result<()> {
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .context("setns into the lab namespace")
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(prog: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{prog} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Ends the processes still inside namespace `name` (ones this lab
/// started: daemons, phones), then deletes it. A namespace lives on while
/// a process is in it, so deleting first would leak both.
fn delete_ns(name: &str) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pids = || -> Vec<i32> {
        run("ip", &["netns", "pids", name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let first = pids();
    if !first.is_empty() {
        for p in &first {
            let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
        }
        for _ in 0..100 {
            if pids().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for p in pids() {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    let _ = run("ip", &["netns", "del", name]);
}

/// The pid in a lab namespace's name (`gs<pid>-...`).
fn owner_pid(name: &str) -> Option<i32> {
    let (pid, rest) = name.strip_prefix("gs")?.split_once('-')?;
    if rest.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Deletes lab namespaces whose process no longer runs: a killed run's
/// leftovers. Another live run's namespaces are left alone.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = owner_pid(name) else {
            continue;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            delete_ns(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lab_namespaces_are_taken_for_a_runs_leftovers() {
        assert_eq!(owner_pid("gs4242-home-server"), Some(4242));
        for other in [
            "gs-home", "gsx-a", "gs42", "gs42-", "home", "gs+1-a", "docker-1",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }
}
