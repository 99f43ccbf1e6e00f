//! Load generator for `scripts/bench/media_relay.sh`: N simultaneous calls
//! through a running relay, 20 ms G.711 packets both ways, for a measured
//! window. Prints the relay's CPU (from /proc/<pid>/stat), the time it took
//! to set up all the calls, packet loss and the one-way latency through the
//! relay next to a direct loopback baseline.
//!
//! The relay is mediad (`--grpc`, its own API) or, as the anchor to compare
//! it with, rtpengine (`--rtpengine`, its ng control protocol: one offer and
//! one answer per call, the way a SIP proxy drives it). Every call is set up
//! before any packet flows, as fast as the relay answers, and the set-up
//! time is printed; then both relays get the very same traffic and the very
//! same CPU accounting (utime + stime of the whole process, every thread).
//!
//! With `--srtp` (mediad only) both legs of every call speak SDES-SRTP
//! (AES_CM_128_HMAC_SHA1_80): the simulated phones protect what they send
//! with the key mediad decrypts with and unprotect what they receive with
//! the key mediad encrypts with, so a packet counts as received only once
//! it authenticates; the baseline pair protects and unprotects too, so the
//! added latency is mediad's alone. Talks only to 127.0.0.1.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mediad::relay::srtp::{self, MasterKey, SrtpContext, Suite};
use proto::pb::mediad::mediad_client::MediadClient;
use proto::pb::mediad::{
    AllocateRequest, Codec, Leg, RecordRequest, ReleaseRequest, UpdateLegRequest,
};
use proto::sdes::LegKeys;
use tokio::net::UdpSocket;

#[derive(Parser)]
#[command(about = "RTP relay benchmark, mediad or rtpengine (127.0.0.1 only)")]
struct Args {
    /// mediad's gRPC address.
    #[arg(
        long,
        required_unless_present = "rtpengine",
        conflicts_with = "rtpengine"
    )]
    grpc: Option<SocketAddr>,
    /// rtpengine's ng control address (UDP), to measure rtpengine instead
    /// of mediad; plain RTP only.
    #[arg(long, conflicts_with_all = ["srtp", "record"])]
    rtpengine: Option<SocketAddr>,
    /// mediad's data dir, where the daemons' gRPC secret is (with --grpc).
    #[arg(long, env = "GOSIP_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The relay's process id, for CPU time.
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
    /// Also append `relay calls setup_s cpu_pct loss_pct lost sent` to
    /// this file, for the script's side-by-side table.
    #[arg(long)]
    summary: Option<std::path::PathBuf>,
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

/// Sets up the calls (all of them before any traffic, timed) and the
/// baseline, measures, releases the calls and prints one line of numbers.
async fn bench(args: Args) -> anyhow::Result<()> {
    let mut relay = Relay::connect(&args).await?;
    // The phones exist before the calls: only signalling is timed.
    let mut phones = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        phones.push(Phones::bind(args.srtp).await?);
    }
    let t0 = Instant::now();
    let mut calls = Vec::with_capacity(args.calls);
    for (i, p) in phones.iter().enumerate() {
        let call_id = format!("bench-{}-{i}", std::process::id());
        let (to_a, to_b) = relay
            .set_up(&args, &call_id, p)
            .await
            .with_context(|| format!("set up call {i} of {}", args.calls))?;
        calls.push((call_id, to_a, to_b));
    }
    let setup_s = t0.elapsed().as_secs_f64();

    let run = Run::default();
    let mut tasks = Tasks::default();
    for (i, (p, (_, to_a, to_b))) in phones.into_iter().zip(&calls).enumerate() {
        start_traffic(&args, i, p, [*to_a, *to_b], &run, &mut tasks)?;
    }
    start_baseline(&args, &run, &mut tasks).await?;
    let window = measure(&args, &run).await?;
    run.stop_send.store(true, Ordering::Relaxed);
    let (mut relay_lat, mut direct_lat) = tasks.finish().await?;
    let ids = calls.into_iter().map(|(id, _, _)| id).collect();
    let stats = relay.release(ids, args.srtp).await?;
    report(
        &args,
        &relay,
        setup_s,
        &window,
        &run,
        &stats,
        (&mut relay_lat, &mut direct_lat),
    )
}

/// Prints the run's line (and appends its summary when asked).
fn report(
    args: &Args,
    relay: &Relay,
    setup_s: f64,
    window: &Window,
    run: &Run,
    stats: &RelayStats,
    (relay_lat, direct_lat): (&mut [u32], &mut [u32]),
) -> anyhow::Result<()> {
    let cpu = window.cpu_ticks as f64 / USER_HZ / window.elapsed * 100.0;
    let sent = run.relay.sent.load(Ordering::Relaxed);
    let recv = run.relay.received.load(Ordering::Relaxed);
    let lost = sent.saturating_sub(recv);
    // Nothing sent is no evidence of relaying: show it as all lost.
    let loss = if sent == 0 {
        100.0
    } else {
        lost as f64 * 100.0 / sent as f64
    };
    let (p50, p99) = percentiles(relay_lat);
    let (d50, d99) = percentiles(direct_lat);
    // Plain RTP cannot fail authentication: a dash, not a reassuring 0.
    let auth_failed = if args.srtp {
        let bench = run.relay.auth_failed.load(Ordering::Relaxed)
            + run.direct.auth_failed.load(Ordering::Relaxed);
        format!("{bench}+{}", stats.auth_failed)
    } else {
        "-".to_string()
    };
    let name = relay.name();
    println!(
        "mode={:<11} calls={:<3} setup={:.3} s  {name}_cpu={:5.1}% of one core  loss={:.3}% ({} of {} packets; {})  \
         srtp_auth_failures(bench+{name})={}  \
         one-way latency via relay p50={:.3} ms p99={:.3} ms, direct loopback p50={:.3} ms p99={:.3} ms, added p50={:.3} ms p99={:.3} ms",
        mode(args),
        args.calls,
        setup_s,
        cpu,
        loss,
        lost,
        sent,
        stats.note,
        auth_failed,
        p50,
        p99,
        d50,
        d99,
        p50 - d50,
        p99 - d99,
    );
    if let Some(path) = &args.summary {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        writeln!(
            f,
            "{name} {} {setup_s:.3} {cpu:.1} {loss:.3} {lost} {sent}",
            args.calls
        )?;
    }
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

/// The relay under test and the bench's control connection to it.
enum Relay {
    Mediad(Client),
    Rtpengine(Ng),
}

/// What the relay counted on the released calls.
struct RelayStats {
    /// For the line: mediad's sequence gaps, rtpengine's packet counts.
    note: String,
    /// SRTP packets the relay dropped for failing authentication or replay.
    auth_failed: u64,
}

impl Relay {
    /// Connects to the relay `args` name (only on 127.0.0.1).
    async fn connect(args: &Args) -> anyhow::Result<Relay> {
        if let Some(ng) = args.rtpengine {
            anyhow::ensure!(
                ng.ip().is_loopback(),
                "the benchmark only talks to 127.0.0.1"
            );
            return Ok(Relay::Rtpengine(Ng::connect(ng).await?));
        }
        let grpc = args.grpc.context("--grpc or --rtpengine")?;
        anyhow::ensure!(
            grpc.ip().is_loopback(),
            "the benchmark only talks to 127.0.0.1"
        );
        let data_dir = args
            .data_dir
            .as_ref()
            .context("--grpc needs --data-dir (or GOSIP_DATA_DIR)")?;
        let secret = proto::grpc::Secret::load_or_create(data_dir)?;
        let channel = proto::grpc::connect(format!("http://{grpc}"), &secret)
            .await
            .context("connect to mediad")?;
        Ok(Relay::Mediad(MediadClient::new(channel)))
    }

    fn name(&self) -> &'static str {
        match self {
            Relay::Mediad(_) => "mediad",
            Relay::Rtpengine(_) => "rtpengine",
        }
    }

    /// Sets up one call between `phones`; returns where phone A and phone
    /// B send their packets.
    async fn set_up(
        &mut self,
        args: &Args,
        call_id: &str,
        phones: &Phones,
    ) -> anyhow::Result<(SocketAddr, SocketAddr)> {
        match self {
            Relay::Mediad(client) => set_up_mediad(client, args, call_id, phones).await,
            Relay::Rtpengine(ng) => set_up_rtpengine(ng, call_id, phones).await,
        }
    }

    /// Releases the calls and sums what the relay counted on them.
    async fn release(&mut self, call_ids: Vec<String>, srtp: bool) -> anyhow::Result<RelayStats> {
        match self {
            Relay::Mediad(client) => release(client, call_ids, srtp).await,
            Relay::Rtpengine(ng) => delete_rtpengine(ng, call_ids).await,
        }
    }
}

/// What every sender and receiver task of the run shares.
struct Run {
    /// Zero of the timestamps carried in the packets.
    epoch: Instant,
    /// Set during the measured window; packets sent then are counted.
    measuring: Arc<AtomicBool>,
    stop_send: Arc<AtomicBool>,
    /// Packets through the relay.
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

/// The two simulated phones of a call, with their SRTP keys when asked.
struct Phones {
    a: Arc<UdpSocket>,
    b: Arc<UdpSocket>,
    keys: [Option<LegKeys>; 2],
}

impl Phones {
    async fn bind(srtp: bool) -> anyhow::Result<Phones> {
        Ok(Phones {
            a: Arc::new(UdpSocket::bind("127.0.0.1:0").await?),
            b: Arc::new(UdpSocket::bind("127.0.0.1:0").await?),
            keys: [new_keys(srtp)?, new_keys(srtp)?],
        })
    }
}

/// Sets up a call in mediad, a port per leg told the phone's address
/// (recording it when asked, SRTP on both legs when asked); returns where
/// phone A and phone B send.
async fn set_up_mediad(
    client: &mut Client,
    args: &Args,
    call_id: &str,
    phones: &Phones,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let ports = client
        .allocate(AllocateRequest {
            call_id: call_id.to_owned(),
        })
        .await
        .context("allocate")?
        .into_inner();
    for ((leg, sock), keys) in [(Leg::A, &phones.a), (Leg::B, &phones.b)]
        .into_iter()
        .zip(&phones.keys)
    {
        client
            .update_leg(UpdateLegRequest {
                call_id: call_id.to_owned(),
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
                call_id: call_id.to_owned(),
                enabled: true,
            })
            .await?
            .into_inner();
        anyhow::ensure!(r.ok, "record: {}", r.error);
    }
    Ok((
        SocketAddr::from(([127, 0, 0, 1], ports.port_a as u16)),
        SocketAddr::from(([127, 0, 0, 1], ports.port_b as u16)),
    ))
}

/// Starts call `i`'s traffic: receivers on both phones and one sender for
/// both directions, phone A sending to `to[0]` and phone B to `to[1]`.
fn start_traffic(
    args: &Args,
    i: usize,
    phones: Phones,
    [to_a, to_b]: [SocketAddr; 2],
    run: &Run,
    tasks: &mut Tasks,
) -> anyhow::Result<()> {
    let Phones { a, b, keys } = phones;
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
    Ok(())
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

/// Releases the calls and sums what mediad counted on them; with `srtp`,
/// checks that mediad spoke SRTP on every leg.
async fn release(
    client: &mut Client,
    call_ids: Vec<String>,
    srtp: bool,
) -> anyhow::Result<RelayStats> {
    let (mut lost, mut auth_failed) = (0, 0);
    for id in call_ids {
        let r = client
            .release(ReleaseRequest { call_id: id })
            .await?
            .into_inner();
        for leg in r.stats.into_iter().flat_map(|s| [s.a, s.b]).flatten() {
            anyhow::ensure!(leg.srtp == srtp, "mediad's leg srtp={}", leg.srtp);
            lost += leg.lost;
            auth_failed += leg.dropped_auth;
        }
    }
    Ok(RelayStats {
        note: format!("mediad saw {lost} seq gaps"),
        auth_failed,
    })
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

/// The SDP a bench phone offers or answers: PCMU on its own port of
/// 127.0.0.1.
fn phone_sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- {port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Sets up a call in rtpengine the way a SIP proxy would: the `offer`
/// carries phone A's SDP, the `answer` phone B's; returns where phone A
/// sends (the port in the answer's rewritten SDP, which A would get) and
/// where phone B sends (the port in the offer's rewritten SDP).
///
/// rtpengine learns both phones from the SDP, not from latching: the
/// `trust-address` flag makes it use the SDP's `c=` address (rather than
/// the signalling source) as each side's endpoint, so it forwards to B from
/// A's first packet and to A from B's first packet. That is the same thing
/// mediad is told (each leg's remote address). Symmetric RTP is rtpengine's
/// default (no `asymmetric` flag); its endpoint learning stays at the
/// default, which only changes the endpoint if packets come from elsewhere
/// (the phones send from their SDP ports, so it never does).
async fn set_up_rtpengine(
    ng: &mut Ng,
    call_id: &str,
    phones: &Phones,
) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let command = |command: &str, phone: &UdpSocket, to_tag: Option<&str>| {
        let mut d = BTreeMap::from([
            (b"command".to_vec(), Bencode::str(command)),
            (b"call-id".to_vec(), Bencode::str(call_id)),
            (b"from-tag".to_vec(), Bencode::str("a")),
            (
                b"sdp".to_vec(),
                Bencode::str(&phone_sdp(phone.local_addr()?.port())),
            ),
            (
                b"replace".to_vec(),
                Bencode::List(vec![
                    Bencode::str("origin"),
                    Bencode::str("session-connection"),
                ]),
            ),
            (
                b"flags".to_vec(),
                Bencode::List(vec![Bencode::str("trust-address")]),
            ),
        ]);
        if let Some(t) = to_tag {
            d.insert(b"to-tag".to_vec(), Bencode::str(t));
        }
        anyhow::Ok(Bencode::Dict(d))
    };
    let offer = command("offer", &phones.a, None)?;
    let answer = command("answer", &phones.b, Some("b"))?;
    let to_b = media_addr(&ng.call(&offer, "ok").await.context("offer")?)?;
    let to_a = media_addr(&ng.call(&answer, "ok").await.context("answer")?)?;
    Ok((to_a, to_b))
}

/// The audio address in the SDP of an ng reply; it must be 127.0.0.1.
fn media_addr(reply: &Bencode) -> anyhow::Result<SocketAddr> {
    let sdp = reply.get("sdp").and_then(Bencode::text).context("no sdp")?;
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = Some(c.trim().parse::<std::net::Ipv4Addr>()?);
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = m.split_whitespace().next().map(str::parse::<u16>);
        }
    }
    let ip = ip.context("no c= line")?;
    let port = port.context("no m=audio line")??;
    anyhow::ensure!(ip.is_loopback(), "rtpengine offered {ip}, not 127.0.0.1");
    Ok(SocketAddr::from((ip, port)))
}

/// Deletes the calls from rtpengine and sums the packets it counted as
/// received on their media (warm-up included) and its errors.
async fn delete_rtpengine(ng: &mut Ng, call_ids: Vec<String>) -> anyhow::Result<RelayStats> {
    let (mut packets, mut errors) = (0, 0);
    for id in call_ids {
        let delete = Bencode::dict([
            ("command", Bencode::str("delete")),
            ("call-id", Bencode::str(&id)),
            ("from-tag", Bencode::str("a")),
        ]);
        let r = ng.call(&delete, "ok").await.context("delete")?;
        let tags = r.get("tags").into_iter().flat_map(Bencode::values);
        let medias = tags.flat_map(|t| t.get("medias").into_iter().flat_map(Bencode::values));
        let streams = medias.flat_map(|m| m.get("streams").into_iter().flat_map(Bencode::values));
        for stats in streams.filter_map(|s| s.get("stats")) {
            packets += stats.get("packets").and_then(Bencode::int).unwrap_or(0);
            errors += stats.get("errors").and_then(Bencode::int).unwrap_or(0);
        }
    }
    Ok(RelayStats {
        note: format!("rtpengine counted {packets} packets in, {errors} errors"),
        auth_failed: 0,
    })
}

/// rtpengine's ng control protocol over UDP: `<cookie> <bencoded dict>`
/// each way, a lost datagram retried with the same cookie (rtpengine
/// answers a repeated cookie from its cache instead of running the command
/// twice).
struct Ng {
    sock: UdpSocket,
    next: u64,
    buf: Vec<u8>,
}

impl Ng {
    /// Connects and checks that rtpengine answers a `ping`.
    async fn connect(addr: SocketAddr) -> anyhow::Result<Ng> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        sock.connect(addr).await?;
        let mut ng = Ng {
            sock,
            next: 0,
            buf: vec![0; 65_536],
        };
        let ping = Bencode::dict([("command", Bencode::str("ping"))]);
        ng.call(&ping, "pong")
            .await
            .with_context(|| format!("ping rtpengine at {addr}"))?;
        Ok(ng)
    }

    /// Sends `cmd` and returns the reply, which must say `result: expect`.
    async fn call(&mut self, cmd: &Bencode, expect: &str) -> anyhow::Result<Bencode> {
        self.next += 1;
        let cookie = format!("{}_{}", std::process::id(), self.next);
        let mut msg = format!("{cookie} ").into_bytes();
        cmd.encode(&mut msg);
        for _ in 0..3 {
            self.sock.send(&msg).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(n) = tokio::time::timeout_at(deadline, self.sock.recv(&mut self.buf)).await
            {
                let datagram = &self.buf[..n?];
                let Some(sp) = datagram.iter().position(|&c| c == b' ') else {
                    continue;
                };
                if datagram[..sp] != *cookie.as_bytes() {
                    continue; // the late answer to an earlier try
                }
                let reply = Bencode::decode(&datagram[sp + 1..])?;
                let result = reply.get("result").and_then(Bencode::text).unwrap_or("");
                anyhow::ensure!(
                    result == expect,
                    "rtpengine said {result:?}: {}",
                    reply
                        .get("error-reason")
                        .and_then(Bencode::text)
                        .unwrap_or("")
                );
                return Ok(reply);
            }
        }
        anyhow::bail!("rtpengine did not answer in 3 s")
    }
}

/// A bencoded value (BEP 3): what the ng protocol speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

impl Bencode {
    fn str(s: &str) -> Bencode {
        Bencode::Bytes(s.as_bytes().to_vec())
    }

    fn dict<const N: usize>(pairs: [(&str, Bencode); N]) -> Bencode {
        Bencode::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(m) => m.get(key.as_bytes()),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    fn int(&self) -> Option<u64> {
        match self {
            Bencode::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    /// A list's items or a dict's values.
    fn values(&self) -> Box<dyn Iterator<Item = &Bencode> + '_> {
        match self {
            Bencode::List(l) => Box::new(l.iter()),
            Bencode::Dict(m) => Box::new(m.values()),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// Appends the encoding; dict keys go out sorted (the BTreeMap's order).
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(m) => {
                out.push(b'd');
                for (k, v) in m {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes exactly one value filling `input`.
    fn decode(input: &[u8]) -> anyhow::Result<Bencode> {
        let mut pos = 0;
        let v = Bencode::parse(input, &mut pos, 0)?;
        anyhow::ensure!(pos == input.len(), "bencode: trailing bytes at {pos}");
        Ok(v)
    }

    fn parse(input: &[u8], pos: &mut usize, depth: usize) -> anyhow::Result<Bencode> {
        anyhow::ensure!(depth < 64, "bencode: nested too deep");
        // Up to (not including) `end`, moving past it.
        let until = |pos: &mut usize, end: u8| -> anyhow::Result<&str> {
            let len = input[*pos..]
                .iter()
                .position(|&c| c == end)
                .context("bencode: truncated")?;
            let s = std::str::from_utf8(&input[*pos..*pos + len])?;
            *pos += len + 1;
            Ok(s)
        };
        match input.get(*pos).context("bencode: truncated")? {
            b'i' => {
                *pos += 1;
                Ok(Bencode::Int(until(pos, b'e')?.parse()?))
            }
            b'l' | b'd' => {
                let dict = input[*pos] == b'd';
                *pos += 1;
                let mut items = Vec::new();
                while input.get(*pos).context("bencode: truncated")? != &b'e' {
                    items.push(Bencode::parse(input, pos, depth + 1)?);
                }
                *pos += 1;
                if !dict {
                    return Ok(Bencode::List(items));
                }
                let mut m = BTreeMap::new();
                let mut it = items.into_iter();
                while let Some(k) = it.next() {
                    let Bencode::Bytes(k) = k else {
                        anyhow::bail!("bencode: dict key not a string");
                    };
                    m.insert(k, it.next().context("bencode: dict key without a value")?);
                }
                Ok(Bencode::Dict(m))
            }
            _ => {
                let len: usize = until(pos, b':')?.parse()?;
                let bytes = input.get(*pos..*pos + len).context("bencode: truncated")?;
                *pos += len;
                Ok(Bencode::Bytes(bytes.to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trips_an_ng_reply() {
        let wire = b"d6:result2:ok3:sdp5:v=0\r\n4:tagsd1:ad6:mediasld7:streamsld5:statsd7:packetsi42eeeeeeeee";
        let v = Bencode::decode(wire).unwrap();
        assert_eq!(v.get("result").and_then(Bencode::text), Some("ok"));
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, wire);
        let streams: Vec<_> = v
            .get("tags")
            .into_iter()
            .flat_map(Bencode::values)
            .flat_map(|t| t.get("medias").into_iter().flat_map(Bencode::values))
            .flat_map(|m| m.get("streams").into_iter().flat_map(Bencode::values))
            .collect();
        assert_eq!(streams.len(), 1);
    }

    #[test]
    fn bencode_rejects_broken_input() {
        for bad in [&b"d3:sdp"[..], b"i12", b"5:ab", b"di1ei2ee", b"le5"] {
            assert!(Bencode::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_addr_reads_the_rewritten_sdp() {
        let reply = Bencode::dict([("sdp", Bencode::str(&phone_sdp(24002)))]);
        assert_eq!(
            media_addr(&reply).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 24002))
        );
    }
}
