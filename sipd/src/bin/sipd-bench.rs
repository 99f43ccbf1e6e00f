//! Load generator for `scripts/bench/sip_register.sh`: REGISTER with MD5
//! digest (qop=auth) over TLS on persistent connections, which Debian's
//! sipp (built without OpenSSL) cannot send. The users are the script's,
//! `bench0000` ... with password `pw<i>`; they register in turn at an
//! offered rate over `--conns` connections opened and handshaken before
//! the clock starts, user i always on connection i mod conns, as a phone
//! keeps its own. Prints one line: achieved registrations per second,
//! registrations offered, failed, and the p50 and p99 milliseconds from
//! the first REGISTER to the 200 (both round trips of the challenge).
//! Talks only to 127.0.0.1.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sipd::net::transport::{Frame, Framer};
use sipd::sip::digest;
use sipd::sip::msg::Raw;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

#[derive(Parser)]
#[command(about = "sipd REGISTER over TLS benchmark (127.0.0.1 only)")]
struct Args {
    /// sipd's SIP-over-TLS address.
    #[arg(long)]
    sips: SocketAddr,
    /// The certificate sipd serves (its data dir's tls/sip.crt): the only
    /// one trusted.
    #[arg(long)]
    cert: PathBuf,
    /// Distinct users, registering in turn.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Registrations offered per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of offered load: rate x secs registrations.
    #[arg(long, default_value_t = 5)]
    secs: u32,
    /// Persistent TLS connections (sipd takes up to 32 from one address).
    #[arg(long, default_value_t = 10)]
    conns: usize,
    /// Seconds without an answer, once all are sent, before the
    /// registrations still under way count as failed.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

/// Expires of every registration, as the UDP run's users.
const EXPIRES: u32 = 300;

/// One registration to make: the `n`th of the run, for user `user`.
#[derive(Clone, Copy)]
struct Job {
    n: usize,
    user: usize,
}

/// What one connection achieved.
#[derive(Default)]
struct Outcome {
    /// Microseconds from the first REGISTER to the 200, per registration.
    latencies: Vec<u32>,
    /// Failures by what ended them: a status, "timeout", "closed".
    failed: HashMap<String, u64>,
}

impl Outcome {
    fn fail(&mut self, why: impl Into<String>, n: u64) {
        if n > 0 {
            *self.failed.entry(why.into()).or_default() += n;
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread, as sipp: the other core is sipd's.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(bench(args))
}

/// Opens the connections, offers the load, waits for the answers and
/// prints the line.
async fn bench(args: Args) -> anyhow::Result<()> {
    if !args.sips.ip().is_loopback() {
        anyhow::bail!("the benchmark only talks to 127.0.0.1");
    }
    anyhow::ensure!(args.users > 0 && args.conns > 0 && args.rate > 0);
    let connector = connector(&args)?;
    let mut queues = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.conns {
        let (tx, rx) = mpsc::unbounded_channel();
        let tls = connect(&connector, args.sips).await?;
        queues.push(tx);
        tasks.push(tokio::spawn(connection(
            tls,
            args.sips,
            rx,
            Duration::from_secs(args.timeout),
        )));
    }

    let count = args.rate as usize * args.secs as usize;
    let start = tokio::time::Instant::now();
    let mut outcome = Outcome::default();
    for n in 0..count {
        let due = start + Duration::from_secs(n as u64) / args.rate;
        tokio::time::sleep_until(due).await;
        let user = n % args.users;
        if queues[user % args.conns].send(Job { n, user }).is_err() {
            outcome.fail("closed", 1);
        }
    }
    drop(queues);
    for t in tasks {
        let o = t.await?;
        outcome.latencies.extend(o.latencies);
        for (why, n) in o.failed {
            outcome.fail(why, n);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    let ok = outcome.latencies.len();
    let failed = count - ok;
    let (p50, p99) = percentiles(&mut outcome.latencies);
    println!(
        "{:.0} {count} {failed} {p50:.2} {p99:.2}",
        ok as f64 / elapsed
    );
    if !outcome.failed.is_empty() {
        eprintln!("failures: {:?}", outcome.failed);
    }
    Ok(())
}

/// A TLS client that trusts only the certificate sipd serves.
fn connector(args: &Args) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(
        CertificateDer::from_pem_file(&args.cert)
            .with_context(|| format!("read {}", args.cert.display()))?,
    )?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    to: SocketAddr,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(to)
        .await
        .with_context(|| format!("connect to {to}"))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(to.ip().into());
    connector
        .connect(name, tcp)
        .await
        .context("TLS handshake with sipd")
}

/// A registration between its first REGISTER and the 200.
struct Pending {
    user: usize,
    started: Instant,
    /// The challenge was answered.
    authed: bool,
}

/// Runs the registrations queued for one connection, any number at once,
/// until the queue is closed and every one has its answer or `timeout`
/// passed without one.
async fn connection(
    mut tls: TlsStream<TcpStream>,
    server: SocketAddr,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    timeout: Duration,
) -> Outcome {
    let mut out = Outcome::default();
    let Ok(local) = tls.get_ref().0.local_addr() else {
        out.fail("closed", jobs.len() as u64);
        return out;
    };
    let mut sip = Sip {
        server,
        local,
        pending: HashMap::new(),
        msg: String::with_capacity(1024),
    };
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut open = true;
    while open || !sip.pending.is_empty() {
        tokio::select! {
            job = jobs.recv(), if open => match job {
                Some(job) => {
                    sip.start(job);
                    if tls.write_all(sip.msg.as_bytes()).await.is_err() {
                        break;
                    }
                }
                None => open = false,
            },
            r = tls.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&buf[..n]);
                if !sip.answer_all(&mut framer, &mut tls, &mut out).await {
                    break;
                }
            }
            _ = tokio::time::sleep(timeout), if !open => {
                out.fail("timeout", sip.pending.len() as u64);
                sip.pending.clear();
            }
        }
    }
    out.fail("closed", (sip.pending.len() + jobs.len()) as u64);
    let _ = tls.shutdown().await;
    out
}

/// The SIP side of one connection: the registrations under way and the
/// message being written.
struct Sip {
    server: SocketAddr,
    local: SocketAddr,
    /// By Call-ID.
    pending: HashMap<String, Pending>,
    msg: String,
}

impl Sip {
    /// Writes the first REGISTER of `job` into `msg`.
    fn start(&mut self, job: Job) {
        let call_id = format!("{}-{}@{}", job.n, std::process::id(), self.local.ip());
        self.register(job.user, &call_id, 1, "");
        self.pending.insert(
            call_id,
            Pending {
                user: job.user,
                started: Instant::now(),
                authed: false,
            },
        );
    }

    /// Handles every framed response; `false` when the connection must end.
    async fn answer_all(
        &mut self,
        framer: &mut Framer,
        tls: &mut TlsStream<TcpStream>,
        out: &mut Outcome,
    ) -> bool {
        loop {
            match framer.next_frame() {
                Frame::Message(data) => {
                    if self.on_response(&data, out)
                        && tls.write_all(self.msg.as_bytes()).await.is_err()
                    {
                        return false;
                    }
                }
                Frame::Ping => {}
                Frame::NeedMore => return true,
                Frame::Broken => return false,
            }
        }
    }

    /// Moves the registration a response belongs to along; `true` when it
    /// wrote the authenticated REGISTER into `msg` to be sent.
    fn on_response(&mut self, data: &[u8], out: &mut Outcome) -> bool {
        let Some(raw) = Raw::split(data) else {
            return false;
        };
        let (Some(status), Some(call_id)) = (raw.status(), raw.get("call-id")) else {
            return false;
        };
        let Some(p) = self.pending.get_mut(call_id) else {
            return false;
        };
        match status {
            100..=199 => false,
            401 if !p.authed => {
                p.authed = true;
                let user = p.user;
                let call_id = call_id.to_string();
                let md5: Vec<&str> = raw
                    .all("www-authenticate")
                    .filter(|c| c.to_ascii_lowercase().contains("algorithm=md5"))
                    .collect();
                let uri = format!("sip:{}", self.server);
                let Some(auth) = digest::answer(
                    &md5,
                    "REGISTER",
                    &uri,
                    &user_name(user),
                    &format!("pw{user}"),
                    &call_id,
                ) else {
                    self.pending.remove(&call_id);
                    out.fail("no MD5 challenge", 1);
                    return false;
                };
                self.register(user, &call_id, 2, &format!("Authorization: {auth}\r\n"));
                true
            }
            200..=299 if p.authed => {
                let contact = format!("<sip:{}@{}", user_name(p.user), self.local);
                let bound = raw
                    .all("contact")
                    .any(|c| c.contains(&contact) && c.contains("expires="));
                let elapsed = p.started.elapsed().as_micros() as u32;
                self.pending.remove(call_id);
                if bound {
                    out.latencies.push(elapsed);
                } else {
                    out.fail("200 without our contact", 1);
                }
                false
            }
            _ => {
                self.pending.remove(call_id);
                out.fail(status.to_string(), 1);
                false
            }
        }
    }

    /// Writes a REGISTER for `user` into `msg`; `extra` is header lines.
    fn register(&mut self, user: usize, call_id: &str, cseq: u32, extra: &str) {
        let (server, local, name) = (self.server, self.local, user_name(user));
        let host = server.ip();
        // A branch is a token (RFC 3261 section 25.1): no '@'.
        let id = call_id.split('@').next().unwrap_or_default();
        self.msg.clear();
        // Writing into a String cannot fail.
        let _ = write!(
            self.msg,
            "REGISTER sip:{server} SIP/2.0\r\n\
             Via: SIP/2.0/TLS {local};branch=z9hG4bK{id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{name}@{host}>;tag={id}\r\n\
             To: <sip:{name}@{host}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{name}@{local};transport=tls>\r\n\
             {extra}Expires: {EXPIRES}\r\n\
             User-Agent: sipd-bench\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }
}

/// The script's user names.
fn user_name(i: usize) -> String {
    format!("bench{i:04}")
}

/// p50 and p99 in milliseconds.
fn percentiles(v: &mut [u32]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_unstable();
    let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q) as usize]) / 1000.0;
    (at(0.50), at(0.99))
}
