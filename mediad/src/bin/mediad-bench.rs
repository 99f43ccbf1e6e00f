//! Load generator for `scripts/bench/media_relay.sh`: N simultaneous calls
//! through a running mediad, 20 ms G.711 packets both ways, for a measured
//! window. Prints mediad's CPU (from /proc/<pid>/stat), packet loss and the
//! one-way latency through the relay next to a direct loopback baseline.
//! With `--srtp` both legs of every call speak SDES-SRTP
//! (AES_CM_128_HMAC_SHA1_80): the simulated phones protect what they send
//! with the key mediad decrypts with and unprotect what they receive with
//! the key mediad encrypts with, so a packet counts as received only once
//! it authenticates; the baseline pair protects and unprotects too, so the
//! added latency is mediad's alone. Talks only to 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mediad::relay::srtp::{self, MasterKey, SrtpContext, Suite};
use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{AllocateRequest, Codec, RecordRequest, ReleaseRequest, UpdateLegRequest};
use proto::sdes::LegKeys;
use tokio::net::UdpSocket;

#[derive(Parser)]
#[command(about = "mediad relay benchmark (127.0.0.1 only)")]
struct Args {
    /// mediad's gRPC address.
    #[arg(long)]
    grpc: SocketAddr,
    /// mediad's data dir, where the daemons' gRPC secret is.
    #[arg(long, env = "GOSIP_DATA_DIR")]
    data_dir: std::path::PathBuf,
    /// mediad's process id, for CPU time.
    #[arg(long)]
    pid: u32,
    /// Simultaneous calls.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// Measured seconds (after 1 s of warm-up).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Record every call.
    #[arg(long)]
    record: bool,
    /// Both legs of every call speak SRTP (AES_CM_128_HMAC_SHA1_80).
    #[arg(long)]
    srtp: bool,
}

/// The suite of `--srtp`, the one phones offer first.
const SUITE: Suite = Suite::AesCm128HmacSha1_80;

/// /proc/<pid>/stat utime and stime are in USER_HZ, 100 on Linux ABIs.
const USER_HZ: f64 = 100.0;
const PACKET: usize = 172;
const MEASURED: u8 = 1;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    /// SRTP packets that did not unprotect (tag, replay window, header),
    /// over the whole run, not only the measured window.
    auth_failed: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench(args))
}

/// Sets up the calls and the baseline, measures, releases the calls and
/// prints one line of numbers.
async fn bench(args: Args) -> anyhow::Result<()> {
    if !args.grpc.ip().is_loopback() {
        anyhow::bail!("the benchmark only talks to 127.0.0.1");
    }
    let secret = proto::grpc::Secret::load_or_create(&args.data_dir)?;
    let channel = proto::grpc::connect(format!("http://{}", args.grpc), &secret)
        .await
        .context("connect to mediad")?;
    let mut client = MediadClient::new(channel);
    let run = Run::default();
    let mut tasks = Tasks::default();
    let mut call_ids = Vec::new();
    for i in 0..args.calls {
        call_ids.push(start_call(&mut client, &args, i, &run, &mut tasks).await?);
    }
    start_baseline(&args, &run, &mut tasks).await?;
    let window = measure(&args, &run).await?;
    run.stop_send.store(true, Ordering::Relaxed);
    let (mut relay_lat, mut direct_lat) = tasks.finish().await?;
    let mediad = release(&mut client, call_ids, args.srtp).await?;

    let cpu = window.cpu_ticks as f64 / USER_HZ / window.elapsed * 100.0;
    let sent = run.relay.sent.load(Ordering::Relaxed);
    let recv = run.relay.received.load(Ordering::Relaxed);
    let loss = if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(recv) as f64 * 100.0 / sent as f64
    };
    let (p50, p99) = percentiles(&mut relay_lat);
    let (d50, d99) = percentiles(&mut direct_lat);
    // Plain RTP cannot fail authentication: a dash, not a reassuring 0.
    let auth_failed = if args.srtp {
        let bench = run.relay.auth_failed.load(Ordering::Relaxed)
            + run.direct.auth_failed.load(Ordering::Relaxed);
        format!("{bench}+{}", mediad.auth_failed)
    } else {
        "-".to_string()
    };
    println!(
        "mode={:<11} calls={:<3} mediad_cpu={:5.1}% of one core  loss={:.3}% ({} of {} packets; mediad saw {} seq gaps)  \
         srtp_auth_failures(bench+mediad)={}  \
         one-way latency via relay p50={:.3} ms p99={:.3} ms, direct loopback p50={:.3} ms p99={:.3} ms, added p50={:.3} ms p99={:.3} ms",
        mode(&args),
        args.calls,
        cpu,
        loss,
        sent.saturating_sub(recv),
        sent,
        mediad.lost,
        auth_failed,
        p50,
        p99,
        d50,
        d99,
        p50 - d50,
        p99 - d99,
    );
    Ok(())
}

/// The label of a run: `rtp`, `rtp+record`, `srtp`, `srtp+record`.
fn mode(args: &Args) -> String {
    let media = if args.srtp { "srtp" } else { "rtp" };
    if args.record {
        format!("{media}+record")
    } else {
        media.to_string()
    }
}

/// mediad's gRPC client with the daemons' shared secret.
type Client = MediadClient<proto::grpc::AuthChannel>;

/// What every sender and receiver task of the run shares.
struct Run {
    /// Zero of the timestamps carried in the packets.
    epoch: Instant,
    /// Set during the measured window; packets sent then are counted.
    measuring: Arc<AtomicBool>,
    stop_send: Arc<AtomicBool>,
    /// Packets through mediad.
    relay: Arc<Counters>,
    /// Packets of the direct loopback baseline.
    direct: Arc<Counters>,
}

impl Default for Run {
    fn default() -> Self {
        Run {
            epoch: Instant::now(),
            measuring: Arc::new(AtomicBool::new(false)),
            stop_send: Arc::new(AtomicBool::new(false)),
            relay: Arc::new(Counters::default()),
            direct: Arc::new(Counters::default()),
        }
    }
}

/// The spawned tasks; the relayed calls' receivers come first, the
/// baseline's two last.
#[derive(Default)]
struct Tasks {
    receivers: Vec<tokio::task::JoinHandle<Vec<u32>>>,
    senders: Vec<tokio::task::JoinHandle<()>>,
}

impl Tasks {
    /// Waits for the (stopped) senders, then for the receivers to go quiet;
    /// returns the relayed and the direct latencies.
    async fn finish(self) -> anyhow::Result<(Vec<u32>, Vec<u32>)> {
        for s in self.senders {
            s.await?;
        }
        // Stragglers: the receivers stop after 500 ms of quiet.
        let mut relay_lat = Vec::new();
        let mut direct_lat = Vec::new();
        let n_relay = self.receivers.len() - 2;
        for (i, r) in self.receivers.into_iter().enumerate() {
            let lat = r.await?;
            if i < n_relay {
                relay_lat.extend(lat);
            } else {
                direct_lat.extend(lat);
            }
        }
        Ok((relay_lat, direct_lat))
    }
}

/// Sets up call `i` in mediad with a local socket per leg (recording it
/// when asked, SRTP on both legs when asked) and starts its traffic;
/// returns its call id.
async fn start_call(
    client: &mut Client,
    args: &Args,
    i: usize,
    run: &Run,
    tasks: &mut Tasks,
) -> anyhow::Result<String> {
    let call_id = format!("bench-{}-{i}", std::process::id());
    let ports = client
        .allocate(AllocateRequest {
            call_id: call_id.clone(),
        })
        .await
        .context("allocate")?
        .into_inner();
    let a = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let keys = [new_keys(args.srtp)?, new_keys(args.srtp)?];
    for ((leg, sock), keys) in [("a", &a), ("b", &b)].into_iter().zip(&keys) {
        client
            .update_leg(UpdateLegRequest {
                call_id: call_id.clone(),
                leg: leg.into(),
                remote_rtp: sock.local_addr()?.to_string(),
                // mediad relays only negotiated payload types from an
                // IP the SDP or the signalling named.
                codecs: vec![Codec {
                    pt: 0,
                    name: "PCMU".into(),
                }],
                signal_ip: sock.local_addr()?.ip().to_string(),
                established: Some(true),
                crypto: keys.as_ref().map(|k| proto::sdes::to_pb(Some(k))),
                ..Default::default()
            })
            .await?;
    }
    if args.record {
        let r = client
            .record(RecordRequest {
                call_id: call_id.clone(),
                enabled: true,
            })
            .await?
            .into_inner();
        anyhow::ensure!(r.ok, "record: {}", r.error);
    }
    let to_a = SocketAddr::from(([127, 0, 0, 1], ports.port_a as u16));
    let to_b = SocketAddr::from(([127, 0, 0, 1], ports.port_b as u16));
    let [keys_a, keys_b] = keys;
    let (a_tx, a_rx) = ends(keys_a.as_ref(), End::Phone)?;
    let (b_tx, b_rx) = ends(keys_b.as_ref(), End::Phone)?;
    let relay = &run.relay;
    tasks.receivers.push(tokio::spawn(receive(
        a.clone(),
        a_rx,
        run.epoch,
        relay.clone(),
    )));
    tasks.receivers.push(tokio::spawn(receive(
        b.clone(),
        b_rx,
        run.epoch,
        relay.clone(),
    )));
    // Calls spread their packets over the 20 ms tick rather than bursting.
    let offset = Duration::from_micros((i as u64 * 20_000 / args.calls as u64) % 20_000);
    tasks.senders.push(tokio::spawn(send(
        [
            Stream {
                sock: a,
                to: to_a,
                ssrc: 0x1000 + i as u32,
                srtp: a_tx,
            },
            Stream {
                sock: b,
                to: to_b,
                ssrc: 0x2000_0000 + i as u32,
                srtp: b_tx,
            },
        ],
        offset,
        run.epoch,
        run.measuring.clone(),
        run.stop_send.clone(),
        relay.clone(),
    )));
    Ok(call_id)
}

/// Baseline: one pair of sockets talking directly, same pacing; with
/// `--srtp` they speak SRTP to each other as a phone and mediad would.
async fn start_baseline(args: &Args, run: &Run, tasks: &mut Tasks) -> anyhow::Result<()> {
    let da = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let db = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let keys = new_keys(args.srtp)?;
    let (da_tx, da_rx) = ends(keys.as_ref(), End::Phone)?;
    let (db_tx, db_rx) = ends(keys.as_ref(), End::Mediad)?;
    let direct = &run.direct;
    tasks.receivers.push(tokio::spawn(receive(
        da.clone(),
        da_rx,
        run.epoch,
        direct.clone(),
    )));
    tasks.receivers.push(tokio::spawn(receive(
        db.clone(),
        db_rx,
        run.epoch,
        direct.clone(),
    )));
    let (da_addr, db_addr) = (da.local_addr()?, db.local_addr()?);
    tasks.senders.push(tokio::spawn(send(
        [
            Stream {
                sock: da,
                to: db_addr,
                ssrc: 7,
                srtp: da_tx,
            },
            Stream {
                sock: db,
                to: da_addr,
                ssrc: 8,
                srtp: db_tx,
            },
        ],
        Duration::from_millis(3),
        run.epoch,
        run.measuring.clone(),
        run.stop_send.clone(),
        direct.clone(),
    )));
    Ok(())
}

/// Fresh SRTP keys for a leg when `srtp`, else `None` (plain RTP).
fn new_keys(srtp: bool) -> anyhow::Result<Option<LegKeys>> {
    if !srtp {
        return Ok(None);
    }
    Ok(Some(LegKeys {
        suite: SUITE,
        send: MasterKey::generate()?,
        recv: MasterKey::generate()?,
    }))
}

/// Which end of a leg's SRTP a socket plays.
#[derive(Clone, Copy)]
enum End {
    /// Protects with the key mediad unprotects with (`recv`), unprotects
    /// with the key mediad protects with (`send`).
    Phone,
    /// mediad's own use of the keys (the baseline's far end).
    Mediad,
}

/// The `(protect, unprotect)` contexts of `end` of a leg's keys; `None`
/// for plain RTP.
fn ends(
    keys: Option<&LegKeys>,
    end: End,
) -> anyhow::Result<(Option<SrtpContext>, Option<SrtpContext>)> {
    let Some(k) = keys else {
        return Ok((None, None));
    };
    let (tx, rx) = match end {
        End::Phone => (&k.recv, &k.send),
        End::Mediad => (&k.send, &k.recv),
    };
    Ok((
        Some(SrtpContext::new(k.suite, tx)?),
        Some(SrtpContext::new(k.suite, rx)?),
    ))
}

/// mediad's CPU use over the measured window.
struct Window {
    /// utime + stime spent in the window, in USER_HZ ticks.
    cpu_ticks: u64,
    /// The window's length in seconds.
    elapsed: f64,
}

/// After 1 s of warm-up, opens the measured window for `args.secs` and
/// reads mediad's CPU time at both ends.
async fn measure(args: &Args, run: &Run) -> anyhow::Result<Window> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu0 = cpu_ticks(args.pid)?;
    let t0 = Instant::now();
    run.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    run.measuring.store(false, Ordering::Relaxed);
    let cpu1 = cpu_ticks(args.pid)?;
    let elapsed = t0.elapsed().as_secs_f64();
    Ok(Window {
        cpu_ticks: cpu1 - cpu0,
        elapsed,
    })
}

/// What mediad counted on the released calls.
struct MediadStats {
    /// Sequence-number gaps on both legs.
    lost: u64,
    /// SRTP packets it dropped for failing authentication or replay.
    auth_failed: u64,
}

/// Releases the calls and sums what mediad counted on them; with `srtp`,
/// checks that mediad spoke SRTP on every leg.
async fn release(
    client: &mut Client,
    call_ids: Vec<String>,
    srtp: bool,
) -> anyhow::Result<MediadStats> {
    let mut stats = MediadStats {
        lost: 0,
        auth_failed: 0,
    };
    for id in call_ids {
        let r = client
            .release(ReleaseRequest { call_id: id })
            .await?
            .into_inner();
        for leg in r.stats.into_iter().flat_map(|s| [s.a, s.b]).flatten() {
            anyhow::ensure!(leg.srtp == srtp, "mediad's leg srtp={}", leg.srtp);
            stats.lost += leg.lost;
            stats.auth_failed += leg.dropped_auth;
        }
    }
    Ok(stats)
}

/// One simulated phone's outgoing RTP.
struct Stream {
    sock: Arc<UdpSocket>,
    to: SocketAddr,
    ssrc: u32,
    /// With SRTP, what protects the stream.
    srtp: Option<SrtpContext>,
}

/// Sends one 20 ms packet per stream each tick until told to stop; the
/// payload carries the send time and whether it is in the measured window.
async fn send(
    mut streams: [Stream; 2],
    offset: Duration,
    epoch: Instant,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    // Room for the SRTP tag behind the packet.
    let mut buf = [0xffu8; PACKET + srtp::MAX_OVERHEAD];
    let mut seq: u16 = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let measured = measuring.load(Ordering::Relaxed);
        for s in &mut streams {
            mediad::relay::rtp::write_header(&mut buf, 0, false, seq, u32::from(seq) * 160, s.ssrc);
            let sent_ns = epoch.elapsed().as_nanos() as u64;
            buf[12..20].copy_from_slice(&sent_ns.to_be_bytes());
            buf[20] = if measured { MEASURED } else { 0 };
            let len = match &mut s.srtp {
                None => Ok(PACKET),
                Some(ctx) => {
                    // Protecting encrypted the previous payload in place.
                    buf[21..PACKET].fill(0xff);
                    ctx.protect_in_place(&mut buf, PACKET)
                }
            };
            // A packet that could not be protected is counted as sent,
            // so it shows as lost.
            let ok = match len {
                Ok(len) => s.sock.send_to(&buf[..len], s.to).await.is_ok(),
                Err(_) => true,
            };
            if ok && measured {
                counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        seq = seq.wrapping_add(1);
    }
}

/// Receives until 500 ms of quiet after the senders stopped, unprotecting
/// with `srtp` when given; returns the one-way latencies (microseconds) of
/// measured packets.
async fn receive(
    sock: Arc<UdpSocket>,
    mut srtp: Option<SrtpContext>,
    epoch: Instant,
    counters: Arc<Counters>,
) -> Vec<u32> {
    let mut lat = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let mut started = false;
    loop {
        let wait = if started {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(30)
        };
        let Ok(Ok((n, _))) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await else {
            return lat;
        };
        started = true;
        let n = match &mut srtp {
            None => n,
            Some(ctx) => match ctx.unprotect_in_place(&mut buf[..n]) {
                Ok(len) => len,
                Err(_) => {
                    counters.auth_failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        if n != PACKET || buf[20] != MEASURED {
            continue;
        }
        let now_ns = epoch.elapsed().as_nanos() as u64;
        let sent_ns = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
        lat.push((now_ns.saturating_sub(sent_ns) / 1000) as u32);
        counters.received.fetch_add(1, Ordering::Relaxed);
    }
}

fn percentiles(v: &mut [u32]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_unstable();
    let at = |q: f64| f64::from(v[((v.len() - 1) as f64 * q) as usize]) / 1000.0;
    (at(0.50), at(0.99))
}

/// utime + stime of a process, in USER_HZ ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}
