//! What every daemon starts with: common flags, tracing, a shutdown token
//! tied to SIGTERM/SIGINT, and the `Daemon` gRPC service (health + reload).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sqlx::SqlitePool;
pub use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::pb::common::daemon_server::{Daemon, DaemonServer};
use crate::pb::common::{HealthReply, HealthRequest, ReloadReply, ReloadRequest};
use crate::settings::SettingsHandle;

/// twiliod's health warning while Twilio's credentials are not set.
pub const TWILIO_NOT_CONNECTED: &str = "Twilio is not connected: calls to and from outside \
     numbers and SMS will not work; add the Twilio Account SID and Auth Token in Settings.";
/// twiliod's health warning while Twilio refuses the credentials.
pub const TWILIO_REFUSED: &str = "Twilio refuses the Account SID and Auth Token in Settings \
     (authentication error): calls to and from outside numbers and SMS will not work until \
     they are corrected in Settings.";

/// Flags every daemon has (each with its `GOSIP_*` env twin).
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Data dir holding gosip.db, recordings/, voicemails/, media/, backups/.
    #[arg(long, env = "GOSIP_DATA_DIR", default_value = crate::defaults::DATA_DIR)]
    pub data_dir: PathBuf,
    /// Log format: "text" or "json" (filter with RUST_LOG).
    #[arg(long, env = "GOSIP_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Do not start: ask the daemon already running with these settings for
    /// its health over gRPC, print it, and exit 0 when it is ok (for
    /// container health checks).
    #[arg(long)]
    pub health: bool,
}

/// What a daemon binary is made of; [`main`] runs any of them the same way
/// (flags and env, the `--health` probe, tracing, signals, bind, run, exit
/// code), so the five `main.rs` files are one line each.
pub trait Runtime {
    /// The name in logs ("sipd").
    const NAME: &'static str;
    /// Flags and env, parsed once at start.
    type Config: clap::Parser;
    /// Sockets bound before anything runs, so a port in use fails the start.
    type Listeners;

    /// The flags every daemon has.
    fn common(cfg: &Self::Config) -> &CommonArgs;

    /// `--health`: asks the running daemon for its health and returns the
    /// exit code (most use [`probe`] on their gRPC address).
    fn health(cfg: &Self::Config) -> impl std::future::Future<Output = std::process::ExitCode>;

    /// Binds every socket the daemon serves.
    fn bind(
        cfg: &Self::Config,
    ) -> impl std::future::Future<Output = anyhow::Result<Self::Listeners>>;

    /// Serves until `shutdown` is cancelled.
    fn run(
        cfg: Self::Config,
        listeners: Self::Listeners,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = anyhow::Result<()>>;
}

/// Declares `pub struct Daemon` and its [`Runtime`] in a daemon crate whose
/// root has `Config` (with `common`), `Listeners::bind` and `run`; the
/// closure-like argument answers `--health` (most daemons:
/// `|cfg| proto::daemon::probe(&cfg.grpc).await`).
#[macro_export]
macro_rules! daemon_runtime {
    ($name:literal, |$cfg:ident| $health:expr) => {
        #[doc = concat!($name, " as a [`proto::daemon::Runtime`], for its `main`.")]
        pub struct Daemon;

        impl $crate::daemon::Runtime for Daemon {
            const NAME: &'static str = $name;
            type Config = Config;
            type Listeners = Listeners;

            fn common(cfg: &Config) -> &$crate::daemon::CommonArgs {
                &cfg.common
            }

            async fn health($cfg: &Config) -> ::std::process::ExitCode {
                $health
            }

            async fn bind(cfg: &Config) -> ::anyhow::Result<Listeners> {
                Listeners::bind(cfg).await
            }

            async fn run(
                cfg: Config,
                listeners: Listeners,
                shutdown: $crate::daemon::CancellationToken,
            ) -> ::anyhow::Result<()> {
                run(cfg, listeners, shutdown).await
            }
        }
    };
}

/// The body of every daemon's `main`: parses the flags, answers
/// `--health`, or starts tracing, binds, runs until SIGTERM/SIGINT and turns
/// the outcome into the exit code (an error is logged with its causes).
pub async fn main<R: Runtime>() -> std::process::ExitCode {
    use clap::Parser;
    let cfg = R::Config::parse();
    if R::common(&cfg).health {
        return R::health(&cfg).await;
    }
    init_tracing(&R::common(&cfg).log_format);
    memory::limit_arenas();
    let shutdown = shutdown_on_signals();
    tokio::spawn(memory::give_back(shutdown.clone()));
    let result = async {
        let listeners = R::bind(&cfg).await?;
        R::run(cfg, listeners, shutdown).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "{} stopped with an error",
                R::NAME
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--health`: asks the daemon serving gRPC at `grpc` (a wildcard host
/// means this machine) for its health; success when it answers "ok" within
/// three seconds.
pub async fn probe(grpc: &str) -> std::process::ExitCode {
    use crate::pb::common::daemon_client::DaemonClient;
    use std::process::ExitCode;
    let target = match grpc.rsplit_once(':') {
        Some((h, p)) if h.is_empty() || h == "0.0.0.0" || h == "[::]" => format!("127.0.0.1:{p}"),
        _ => grpc.to_string(),
    };
    let ask = async {
        let mut c = DaemonClient::connect(format!("http://{target}"))
            .await
            .map_err(|e| e.to_string())?;
        c.health(HealthRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), ask).await {
        Ok(Ok(h)) if h.status == "ok" => {
            println!("{} ok", h.daemon);
            ExitCode::SUCCESS
        }
        Ok(Ok(h)) => {
            println!("{} {}: {}", h.daemon, h.status, h.detail);
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            println!("no answer from {target}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            println!("no answer from {target} within 3 s");
            ExitCode::FAILURE
        }
    }
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default info), text or
/// JSON lines on stderr.
pub fn init_tracing(log_format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A token cancelled on the first SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        t.cancel();
    });
    token
}

/// Extra health detail a daemon can report ("" = fine).
pub type HealthProbe = Arc<dyn Fn() -> String + Send + Sync>;

/// What stops calls or texts although the daemon is up (empty = nothing).
pub type HealthWarnings = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// The `Daemon` service: health (database reachable, plus the daemon's own
/// probe) and reload of settings.
#[derive(Clone)]
pub struct DaemonService {
    name: &'static str,
    started: Instant,
    pool: SqlitePool,
    settings: SettingsHandle,
    probe: Option<HealthProbe>,
    warnings: Option<HealthWarnings>,
}

impl DaemonService {
    pub fn new(name: &'static str, pool: SqlitePool, settings: SettingsHandle) -> Self {
        Self {
            name,
            started: Instant::now(),
            pool,
            settings,
            probe: None,
            warnings: None,
        }
    }

    /// Adds a daemon-specific health probe.
    pub fn with_probe(mut self, probe: HealthProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Adds the warnings the health answer lists for admins.
    pub fn with_warnings(mut self, warnings: HealthWarnings) -> Self {
        self.warnings = Some(warnings);
        self
    }

    pub fn into_server(self) -> DaemonServer<Self> {
        DaemonServer::new(self)
    }
}

#[tonic::async_trait]
impl Daemon for DaemonService {
    async fn health(&self, _req: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let mut detail = String::new();
        // Reachable, and whether connections are query_only (read-only mode:
        // the pool sets it on every connection it hands out).
        match sqlx::query_scalar::<_, i64>("PRAGMA query_only")
            .fetch_one(&self.pool)
            .await
        {
            Err(e) => detail = format!("database: {e}"),
            Ok(1) => detail = crate::db::READ_ONLY_DETAIL.to_owned(),
            Ok(_) => {}
        }
        if let (true, Some(p)) = (detail.is_empty(), &self.probe) {
            detail = p();
        }
        Ok(Response::new(HealthReply {
            daemon: self.name.to_owned(),
            status: if detail.is_empty() { "ok" } else { "degraded" }.to_owned(),
            version: crate::VERSION.to_owned(),
            detail,
            uptime_secs: self.started.elapsed().as_secs(),
            warnings: self.warnings.as_ref().map(|w| w()).unwrap_or_default(),
        }))
    }

    async fn reload(&self, _req: Request<ReloadRequest>) -> Result<Response<ReloadReply>, Status> {
        self.settings
            .reload()
            .await
            .map_err(|e| Status::unavailable(format!("reload failed: {e}")))?;
        tracing::info!(daemon = self.name, "settings reloaded");
        Ok(Response::new(ReloadReply {}))
    }
}

/// Runs `work` on a thread of its own named `name`, with a single-threaded
/// tokio runtime (its own epoll and timers): for a daemon's hot loop, which
/// then never wakes another thread to get its work done. Returns that
/// runtime's handle: tasks spawned on it run on that thread until `work`
/// ends.
pub fn own_thread<F, Fut>(name: &str, work: F) -> std::io::Result<tokio::runtime::Handle>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || rt.block_on(work()))?;
    Ok(handle)
}

/// Binds a TCP listener, with the address in the error.
pub async fn bind_tcp(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))
}

/// Adapts a bound listener for `tonic::transport::Server::serve_with_incoming_shutdown`.
pub fn incoming(listener: tokio::net::TcpListener) -> tokio_stream::wrappers::TcpListenerStream {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// Memory a daemon freed goes back to the system.
///
/// glibc's malloc keeps what a burst freed (a registration flood in sipd, a
/// backup in webd) in its heaps for reuse, one heap ("arena") per thread
/// that ever contended for one, so RSS stays near the burst's peak. Two
/// arenas are plenty on a small box (glibc's default is eight per core),
/// and a trim every [`TRIM_EVERY`] returns the free pages of all of them.
/// Measured on sipd after a REGISTER flood of 4,000 to 12,000/s from 1,000
/// phones: 37 MiB RSS at rest before, 31 MiB with both (docs/performance.md).
#[allow(unsafe_code)]
pub mod memory {
    /// How often freed memory is handed back. A trim walks the heaps:
    /// well under a millisecond for a daemon's few megabytes.
    pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    /// At most two malloc arenas. Called at the start of `main`, before
    /// the daemon's threads allocate much; arenas are made lazily, on
    /// contention.
    pub fn limit_arenas() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt sets a tunable of glibc's allocator; it takes no
        // pointers and is safe to call from any thread at any time.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }

    /// Every [`TRIM_EVERY`] until `stop`, returns freed heap pages to the
    /// system and lets go of the code pages ([`release_code`]): what the
    /// daemon resides in is what it freshly used, not what a burst or
    /// start-up once touched.
    pub async fn give_back(stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(TRIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    trim();
                    release_code();
                }
            }
        }
    }

    /// The executable's read-only mappings that hold nothing but the
    /// file's own pages: its code (`r-xp`) and constants (`r--p` with no
    /// private copy: not the relocated RELRO part, whose pages the dynamic
    /// linker wrote), from /proc/self/smaps: start and length.
    fn file_only_mappings() -> Vec<(usize, usize)> {
        let exe = std::fs::read_link("/proc/self/exe").ok();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut out = Vec::new();
        let mut current: Option<(usize, usize)> = None;
        for l in smaps.lines() {
            if let Some(anon) = l.strip_prefix("Anonymous:") {
                let kb: u64 = anon
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(1);
                if let Some(m) = current.take().filter(|_| kb == 0) {
                    out.push(m);
                }
                continue;
            }
            let mut f = l.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let path = f.nth(3);
            current = (matches!(perms, "r-xp" | "r--p")
                && path.is_some()
                && exe.as_deref() == path.map(std::path::Path::new)
                && b > a)
                .then_some((a, b - a));
        }
        out
    }

    /// Unmaps the executable's code and constant pages: those the daemon
    /// keeps using come back on their next use (from the page cache, a
    /// minor fault each), those only start-up or a burst used stay out of
    /// its resident set (issue #18: most of an idle daemon's RSS was pages
    /// of its binary it had touched once, or that the kernel had mapped
    /// around them). The page cache keeps the file until the system needs
    /// the memory, as for any unmapped page of it.
    pub fn release_code() {
        // The executable's mappings never change once it runs: read once.
        static MAPPINGS: std::sync::OnceLock<Vec<(usize, usize)>> = std::sync::OnceLock::new();
        for &(start, len) in MAPPINGS.get_or_init(file_only_mappings) {
            // SAFETY: the range is a read-only mapping of this process's
            // own executable holding no private page (see
            // `file_only_mappings`; read-only, so none can appear):
            // MADV_DONTNEED on a private file mapping then only unmaps, and
            // any later access maps the same file pages again. Nothing is
            // lost; the code running this is mapped back at once.
            unsafe {
                libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
            }
        }
    }

    /// Hands the free pages of every arena back now.
    pub fn trim() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim takes no pointers and only releases memory
        // glibc holds free; it locks each arena as malloc does.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
