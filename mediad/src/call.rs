//! The shell of one call: a task owning the four UDP sockets (RTP and RTCP
//! per leg), the pure [`Call`] core and the recording file. The gRPC service
//! talks to it through [`Cmd`]s.
//!
//! Hot path: a readable socket is drained with non-blocking receives into
//! one buffer, each datagram goes through `Call::on_rtp` and out with a
//! non-blocking send: no allocation, lock, log line or database work per
//! packet. The receive leaves the buffer's last [`srtp::MAX_OVERHEAD`]
//! bytes free, so the core can append an SRTP/SRTCP trailer in place.
//! Recorded audio is written to disk on the 100 ms tick.
//!
//! Playing (mediad answers the A-leg itself): a 20 ms interval, running only
//! while a Play is under way, sends the core's next packet out of the
//! A-leg's RTP socket; a late wake-up sends the missed packets at once, so
//! the stream keeps the pace of its timestamps. The voicemail is written on
//! the 100 ms tick like a recording. A leg's feed (hold music, or an
//! announcement to the B-leg of a relayed call) rides the same interval,
//! out of that leg's RTP socket.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::relay::voicemail::Ended;
use proto::pb::mediad::{CallStats, Leg, LegStats, MediaEvent, MediaEventKind};
use proto::settings::Settings;
use sqlx::SqlitePool;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::doorbell::Doorbell;
use crate::recording::{self, WavFile};
use crate::relay::player::{Clip, Seed};
use crate::relay::{Call, Event, LegId, PlayError, srtp};
use crate::udp::{self, RecvBatch};

/// How often timeouts are checked and recorded audio is written.
const TICK: Duration = Duration::from_millis(100);
/// One G.711 packet of audio (RFC 3551 section 4.5: 20 ms by default).
const FRAME_TIME: Duration = Duration::from_millis(20);
/// Datagrams handled per socket wake-up before the other sockets get a turn.
const BATCH: usize = 64;

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot record to {path}: {source}")]
pub struct RecordError {
    /// The WAV file, relative to the data dir.
    pub path: String,
    pub source: std::io::Error,
}

/// A request to a call's task.
pub enum Cmd {
    UpdateLeg(LegUpdate),
    Record {
        enabled: bool,
        reply: oneshot::Sender<Result<String, RecordError>>,
    },
    Stats {
        reply: oneshot::Sender<CallStats>,
    },
    Release {
        reply: oneshot::Sender<CallStats>,
    },
    /// Play rendered clips: to the A-leg as its endpoint, then record it
    /// for `record_after`; to the B-leg once, in place of what A sends.
    Play {
        leg: LegId,
        clips: Vec<Clip>,
        record_after: Option<crate::relay::voicemail::RecordLimits>,
        reply: oneshot::Sender<Result<(), PlayError>>,
    },
}

/// What sipd learnt from a leg's SDP (see mediad.proto `UpdateLegRequest`).
#[derive(Debug, Default)]
pub struct LegUpdate {
    pub leg: Option<LegId>,
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
    pub signal_ip: Option<IpAddr>,
    pub codecs: Vec<(u8, String)>,
    pub established: Option<bool>,
    pub hold: Option<bool>,
    /// Start the hold music to the leg (the clip to loop) or end it.
    pub music: Option<Option<Clip>>,
    /// Switch the leg to SRTP with these keys, or to plain RTP (`None`).
    pub crypto: Option<Option<proto::sdes::LegKeys>>,
    /// Make the leg a browser's (ICE-lite, DTLS-SRTP).
    pub webrtc: Option<Box<proto::webrtc::WebrtcLeg>>,
}

/// The sockets of one call: RTP and RTCP towards each leg. Bound by the
/// gRPC service, and registered with tokio by the call's own task, on the
/// media thread that carries it.
pub struct Sockets {
    pub a_rtp: std::net::UdpSocket,
    pub a_rtcp: std::net::UdpSocket,
    pub b_rtp: std::net::UdpSocket,
    pub b_rtcp: std::net::UdpSocket,
}

impl Sockets {
    fn register(self) -> io::Result<[UdpSocket; 4]> {
        Ok([
            UdpSocket::from_std(self.a_rtp)?,
            UdpSocket::from_std(self.a_rtcp)?,
            UdpSocket::from_std(self.b_rtp)?,
            UdpSocket::from_std(self.b_rtcp)?,
        ])
    }
}

/// What a call task needs from the daemon.
#[derive(Clone)]
pub struct Env {
    pub data_dir: PathBuf,
    pub pool: SqlitePool,
    pub settings: watch::Receiver<Arc<Settings>>,
    pub events: broadcast::Sender<MediaEvent>,
    pub shutdown: CancellationToken,
    /// A call with no packet and no command for this long is ended by
    /// mediad itself (sipd restarted and forgot it).
    pub orphan_after: Duration,
    /// Where a call that ends by itself reports its id.
    pub ended: mpsc::UnboundedSender<String>,
    /// Admin alerts, delivered even when the disk is too full for the row.
    pub alerts: proto::alerts::Alerter,
    /// mediad's DTLS certificate, for browsers' legs.
    pub identity: Arc<crate::relay::webrtc::Identity>,
}

/// Runs one call until Release, the command channel closing, or shutdown.
pub async fn run(call_id: String, sockets: Sockets, rx: mpsc::Receiver<Cmd>, env: Env) {
    let mut last_cmd = Instant::now();
    let mut task = CallTask {
        call: Call::new(Instant::now()),
        webrtc_failed: [None, None],
        rec: Recording::default(),
        voicemail: Recording::default(),
        call_id,
        env,
    };
    let [a_rtp, a_rtcp, b_rtp, b_rtcp] = match sockets.register() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(call_id = %task.call_id, error = %e, "cannot register the call's sockets: no media");
            let _ = task.env.ended.send(task.call_id.clone());
            return;
        }
    };
    let mut sources = Sources {
        bell: Doorbell::default(),
        stop: Box::pin(task.env.shutdown.clone().cancelled_owned()),
        rx,
        frames: tokio::time::interval(FRAME_TIME),
        tick: tokio::time::interval_at(aligned_tick(Instant::now()).into(), TICK),
    };
    sources
        .tick
        .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let socks = [&a_rtp, &a_rtcp, &b_rtp, &b_rtcp];
    loop {
        let wake = std::future::poll_fn(|cx| sources.poll(cx, &mut task, socks)).await;
        match wake {
            Wake::Stop | Wake::Cmd(None) => {
                task.finish();
                break;
            }
            Wake::Cmd(Some(Cmd::Release { reply })) => {
                task.finish();
                let _ = reply.send(task.stats());
                break;
            }
            Wake::Cmd(Some(cmd)) => {
                last_cmd = Instant::now();
                if task.command(cmd) {
                    // A new Play or feed: its first packet goes now,
                    // and no backlog of ticks from before it is sent.
                    sources.frames.reset_immediately();
                }
                sources.bell.ring(FRAMES);
            }
            Wake::Frame => {
                task.send_frame(&a_rtp);
                task.send_feed(LegId::A, &a_rtp);
                task.send_feed(LegId::B, &b_rtp);
            }
            Wake::Tick => {
                task.tick();
                task.flush_webrtc(&a_rtp, &b_rtp);
                let active = task
                    .call
                    .last_packet()
                    .map_or(last_cmd, |t| t.max(last_cmd));
                if active.elapsed() >= task.env.orphan_after {
                    tracing::warn!(call_id = %task.call_id, idle_s = active.elapsed().as_secs(), "no packets and no word from sipd: ending the call's media");
                    task.finish();
                    let _ = task.env.ended.send(task.call_id.clone());
                    break;
                }
            }
        }
        task.publish_events();
    }
    task.call.close_webrtc();
    task.flush_webrtc(&a_rtp, &b_rtp);
    task.publish_events();
    tracing::debug!(call_id = %task.call_id, "call media ended");
}

/// The first tick of a call starting at `now`: the next multiple of
/// [`TICK`] since the process started. Every call ticks at the same
/// instants, so a media thread wakes ten times a second for all its calls'
/// ticks instead of for each call's own (2,000 wake-ups a second at 200
/// calls, most of them when the thread had nothing else to do).
fn aligned_tick(now: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let tick = TICK.as_nanos();
    let next = (since / tick + 1) * tick;
    epoch + Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
}

/// What a call's task waits on besides its sockets, and the doorbell
/// that says which of them (sockets included) woke it.
struct Sources {
    bell: Doorbell<SOURCE_COUNT>,
    stop: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    rx: mpsc::Receiver<Cmd>,
    /// Paces what is played (20 ms), polled only while something is.
    frames: tokio::time::Interval,
    tick: tokio::time::Interval,
}

impl Sources {
    /// Relays what the sockets that rang hold, then returns the first
    /// other source that rang and is ready, or sleeps.
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        task: &mut CallTask,
        socks: [&UdpSocket; 4],
    ) -> Poll<Wake> {
        self.bell.arm(cx);
        // Packets first: each socket that rang is drained, then asked
        // once more so that its next packet rings it. Relaying needs
        // no wake-up of its own: the same poll goes on to the other
        // sources that rang, and sleeps when none has anything.
        let mut relayed = false;
        for (i, sock) in socks.iter().enumerate() {
            if !self.bell.take(i) {
                continue;
            }
            while let Poll::Ready(Ok(())) = sock.poll_recv_ready(&mut self.bell.context(i)) {
                relayed = true;
                let (from, rtcp) = SOURCES[i];
                let drained = udp::with_batch(|b| task.relay(from, rtcp, sock, socks[i ^ 2], b));
                if !drained {
                    // A full batch: the other sources get their turn
                    // and the task comes back for the rest.
                    self.bell.ring(i);
                    cx.waker().wake_by_ref();
                    break;
                }
            }
        }
        if relayed {
            task.flush_webrtc(socks[0], socks[2]);
            task.publish_events();
        }
        if self.bell.take(STOP)
            && self
                .stop
                .as_mut()
                .poll(&mut self.bell.context(STOP))
                .is_ready()
        {
            return Poll::Ready(Wake::Stop);
        }
        if self.bell.take(CMD)
            && let Poll::Ready(cmd) = self.rx.poll_recv(&mut self.bell.context(CMD))
        {
            // More may be queued.
            self.bell.ring(CMD);
            return Poll::Ready(Wake::Cmd(cmd));
        }
        // Frames are polled only while something is played; a command
        // that starts playing rings them.
        if task.sends_frames() && ticked(&self.bell, FRAMES, &mut self.frames) {
            return Poll::Ready(Wake::Frame);
        }
        if ticked(&self.bell, TICK_SRC, &mut self.tick) {
            return Poll::Ready(Wake::Tick);
        }
        Poll::Pending
    }
}

/// Whether `interval`, source `i` of `bell`, rang and is due. A due one is
/// rung again, so its next deadline is armed on the next poll.
fn ticked(bell: &Doorbell<SOURCE_COUNT>, i: usize, interval: &mut tokio::time::Interval) -> bool {
    let due = bell.take(i) && interval.poll_tick(&mut bell.context(i)).is_ready();
    if due {
        bell.ring(i);
    }
    due
}

/// What woke a call's task.
#[allow(clippy::large_enum_variant)] // lives only from the poll to its match
enum Wake {
    Stop,
    Cmd(Option<Cmd>),
    Frame,
    Tick,
}

/// A call task's sources, by their bit in its [`Doorbell`]: the four
/// sockets (0 to 3, as [`SOURCES`]), then these.
const STOP: usize = 4;
const CMD: usize = 5;
const FRAMES: usize = 6;
const TICK_SRC: usize = 7;
const SOURCE_COUNT: usize = 8;

/// The leg and kind of each of a call's sockets, in [`Sockets::register`]'s
/// order; socket `i` relays to socket `i ^ 2` (the other leg's same kind).
const SOURCES: [(LegId, bool); 4] = [
    (LegId::A, false),
    (LegId::A, true),
    (LegId::B, false),
    (LegId::B, true),
];

/// RFC 3550 section 5.1: SSRC, sequence number and timestamp of a stream
/// start at random values.
fn random_seed() -> Seed {
    Seed {
        ssrc: rand::random(),
        seq: rand::random(),
        timestamp: rand::random(),
    }
}

struct CallTask {
    call: Call,
    /// A browser's leg failed its handshake (said once in the log).
    webrtc_failed: [Option<&'static str>; 2],
    rec: Recording,
    /// The voicemail file (mono), when the call plays and records.
    voicemail: Recording,
    call_id: String,
    env: Env,
}

/// The recording file of a call, kept across pauses.
#[derive(Default)]
struct Recording {
    /// Relative to the data dir; chosen on the first Record (on the first
    /// audio for a voicemail).
    path: Option<String>,
    file: Option<WavFile>,
    pcm: Vec<u8>,
    /// PCM bytes this call wrote successfully.
    written: u64,
}

impl CallTask {
    /// Relays what `rx` has, up to [`BATCH`] packets; true once it is
    /// drained.
    fn relay(
        &mut self,
        from: LegId,
        rtcp: bool,
        rx: &UdpSocket,
        tx: &UdpSocket,
        batch: &mut RecvBatch,
    ) -> bool {
        let room = udp::BUF - srtp::MAX_OVERHEAD;
        for _ in 0..BATCH / udp::SLOTS {
            let Ok((n, drained)) = batch.recv(rx, room) else {
                continue;
            };
            let now = Instant::now();
            for i in 0..n {
                let (buf, len, src) = batch.packet(i);
                let Some(src) = src else { continue };
                let out = if rtcp {
                    self.call.on_rtcp(now, from, src, buf, len)
                } else {
                    self.call.on_rtp(now, from, src, buf, len)
                };
                if let Some((dst, len)) = out {
                    match tx.try_send_to(&buf[..len], dst) {
                        Ok(_) => self.call.on_sent(from.other(), len, rtcp),
                        Err(_) => self.call.on_send_failed(from.other()),
                    }
                }
            }
            if drained {
                return true;
            }
        }
        false
    }

    /// Sends what browsers' legs are owed (ICE answers, DTLS flights) out
    /// of their RTP ports.
    fn flush_webrtc(&mut self, a_rtp: &UdpSocket, b_rtp: &UdpSocket) {
        while let Some((leg, to, data)) = self.call.poll_transmit() {
            let sock = if leg == LegId::A { a_rtp } else { b_rtp };
            if sock.try_send_to(&data, to).is_err() {
                self.call.on_send_failed(leg);
            }
        }
        for leg in [LegId::A, LegId::B] {
            if let Some(why) = self.call.leg(leg).webrtc_failed()
                && self.webrtc_failed[leg as usize].replace(why).is_none()
            {
                tracing::warn!(call_id = %self.call_id, leg = leg.as_str(), why, "browser leg has no media");
            }
        }
    }

    /// Handles a command; true when the frame interval must restart: a
    /// Play to A, or a feed while none ran (one joining a running feed
    /// keeps its pace).
    fn command(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::UpdateLeg(u) => return self.update_leg(u),
            Cmd::Record { enabled, reply } => {
                let r = if enabled {
                    self.start_recording()
                } else {
                    self.stop_recording();
                    Ok(self.rec.path.clone().unwrap_or_default())
                };
                let _ = reply.send(r);
            }
            Cmd::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Cmd::Play {
                leg,
                clips,
                record_after,
                reply,
            } => {
                let was_sending = self.sends_frames();
                let r = self.play(leg, clips, record_after);
                let restart = r.is_ok() && (leg == LegId::A || !was_sending);
                let _ = reply.send(r);
                return restart;
            }
            Cmd::Release { .. } => {}
        }
        false
    }

    fn play(
        &mut self,
        leg: LegId,
        clips: Vec<Clip>,
        record_after: Option<crate::relay::voicemail::RecordLimits>,
    ) -> Result<(), PlayError> {
        let seed = random_seed();
        if leg == LegId::B {
            return self
                .call
                .start_clips(Instant::now(), LegId::B, clips, false, seed);
        }
        // A voicemail under way ends; what it still holds goes to its file.
        self.voicemail.pcm.clear();
        let r = self
            .call
            .play(clips, record_after, seed, &mut self.voicemail.pcm);
        self.write_voicemail();
        r
    }

    /// Whether the 20 ms interval has packets to send.
    fn sends_frames(&self) -> bool {
        self.call.is_playing() || self.call.has_feed()
    }

    /// Sends leg `to` its next 20 ms of its feed, if it has one.
    fn send_feed(&mut self, to: LegId, sock: &UdpSocket) {
        let Some((dst, packet)) = self.call.next_feed_frame(Instant::now(), to) else {
            return;
        };
        let len = packet.len();
        match sock.try_send_to(packet, dst) {
            Ok(_) => self.call.on_sent(to, len, false),
            Err(_) => self.call.on_send_failed(to),
        }
    }

    /// Sends the A-leg its next 20 ms of the Play.
    fn send_frame(&mut self, sock: &UdpSocket) {
        let Some((dst, packet)) = self.call.next_frame(Instant::now()) else {
            return;
        };
        let len = packet.len();
        match sock.try_send_to(packet, dst) {
            Ok(_) => self.call.on_sent(LegId::A, len, false),
            Err(_) => self.call.on_send_failed(LegId::A),
        }
    }

    /// Applies what sipd learnt of a leg; true when hold music started
    /// while nothing else was fed.
    fn update_leg(&mut self, u: LegUpdate) -> bool {
        let now = Instant::now();
        let fed_before = self.call.has_feed();
        if let Some(leg) = u.leg {
            if let Some(ip) = u.signal_ip {
                self.call.set_signal_ip(leg, ip);
            }
            if let Some(w) = u.webrtc {
                tracing::debug!(call_id = %self.call_id, leg = leg.as_str(), role = ?w.role, opus = ?w.opus, "browser leg");
                if let Err(e) = self.call.set_webrtc(now, leg, *w, &self.env.identity) {
                    tracing::error!(call_id = %self.call_id, leg = leg.as_str(), error = %e, "cannot transcode the browser's Opus; it is not heard");
                }
            }
            if let Some(keys) = u.crypto {
                let srtp = keys.is_some();
                match self.call.set_crypto(leg, keys) {
                    Ok(()) => {
                        tracing::debug!(call_id = %self.call_id, leg = leg.as_str(), srtp, "leg crypto set");
                    }
                    Err(e) => {
                        tracing::error!(call_id = %self.call_id, leg = leg.as_str(), error = %e, "cannot start SRTP; the leg keeps its former crypto");
                    }
                }
            }
            if let Some(rtp) = u.rtp {
                self.call.set_remote(leg, rtp, u.rtcp);
            }
            self.call
                .set_codecs(leg, u.codecs.iter().map(|(pt, name)| (*pt, name.as_str())));
            if let Some(hold) = u.hold {
                self.call.set_hold(leg, hold);
            }
            match u.music {
                Some(Some(clip)) => {
                    if let Err(e) = self.call.start_music(now, leg, clip, random_seed()) {
                        tracing::warn!(call_id = %self.call_id, ?leg, error = %e, "no hold music");
                    }
                }
                Some(None) => self.call.stop_feed(leg),
                None => {}
            }
        }
        if u.established == Some(true) {
            self.call.set_established(now);
        }
        !fed_before && self.call.has_feed()
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let timeout = Duration::from_secs(self.env.settings.borrow().u64("calls.rtp_timeout"));
        self.call.on_tick(now, timeout);
        if let Some(r) = self.call.recorder_mut() {
            self.rec.pcm.clear();
            r.drain(now, &mut self.rec.pcm);
            self.write_pcm();
        }
        self.voicemail.pcm.clear();
        self.call.drain_voicemail(now, &mut self.voicemail.pcm);
        self.write_voicemail();
    }

    /// The call ends: what the recordings still hold goes to disk.
    fn finish(&mut self) {
        self.stop_recording();
        self.voicemail.pcm.clear();
        self.call.finish_voicemail(&mut self.voicemail.pcm);
        self.write_voicemail();
    }

    /// Appends the drained voicemail audio, creating the file with the
    /// first of it. A write error ends the voicemail like a recording's.
    fn write_voicemail(&mut self) {
        let vm = &mut self.voicemail;
        if vm.pcm.is_empty() || (vm.file.is_none() && vm.path.is_some()) {
            // Nothing to write, or the file failed earlier.
            return;
        }
        if vm.file.is_none() {
            let rel = recording::voicemail_rel_path(&self.call_id);
            let opened = WavFile::create(&self.env.data_dir.join(&rel), 1);
            vm.path = Some(rel);
            match opened {
                Ok(f) => vm.file = Some(f),
                Err(e) => {
                    let path = vm.path.clone();
                    return self.recording_failed(path.as_deref(), &e);
                }
            }
        }
        let Some(file) = &mut vm.file else { return };
        match file.append(&vm.pcm) {
            Ok(()) => vm.written += vm.pcm.len() as u64,
            Err(e) => {
                vm.file = None;
                self.recording_failed(self.voicemail.path.as_deref(), &e);
            }
        }
    }

    fn start_recording(&mut self) -> Result<String, RecordError> {
        if self.call.is_recording() {
            return Ok(self.rec.path.clone().unwrap_or_default());
        }
        let rel = self
            .rec
            .path
            .get_or_insert_with(|| {
                recording::rel_path(&self.call_id, chrono::Utc::now().date_naive())
            })
            .clone();
        if self.rec.file.is_none() {
            match WavFile::open(&self.env.data_dir.join(&rel)) {
                Ok(f) => self.rec.file = Some(f),
                Err(e) => {
                    self.recording_failed(Some(&rel), &e);
                    return Err(RecordError {
                        path: rel,
                        source: e,
                    });
                }
            }
        }
        self.call.start_recording(Instant::now());
        tracing::info!(call_id = %self.call_id, path = %rel, "recording started");
        Ok(rel)
    }

    /// Writes out what the recorder still holds and pauses; the file stays
    /// open for a later resume.
    fn stop_recording(&mut self) {
        if let Some(mut r) = self.call.stop_recording() {
            self.rec.pcm.clear();
            r.finish(&mut self.rec.pcm);
            self.write_pcm();
            tracing::info!(call_id = %self.call_id, late_packets = r.late_packets, "recording stopped");
        }
    }

    fn write_pcm(&mut self) {
        let Some(file) = &mut self.rec.file else {
            return;
        };
        match file.append(&self.rec.pcm) {
            Ok(()) => self.rec.written += self.rec.pcm.len() as u64,
            Err(e) => {
                self.rec.file = None;
                self.call.stop_recording();
                self.recording_failed(self.rec.path.as_deref(), &e);
            }
        }
    }

    /// A full disk (or any write error) ends the recording, never the call:
    /// sipd hears `recording_failed`, the admin gets an alert.
    fn recording_failed(&self, path: Option<&str>, e: &io::Error) {
        let kind = if recording::is_disk_full(e) {
            "disk_full"
        } else {
            "recording_failed"
        };
        let path = path.unwrap_or_default();
        tracing::error!(call_id = %self.call_id, path = %path, error = %e, "recording failed; the call goes on unrecorded");
        let _ = self.env.events.send(MediaEvent {
            call_id: self.call_id.clone(),
            kind: MediaEventKind::RecordingFailed.into(),
            detail: e.to_string(),
            leg: Leg::Unspecified.into(),
        });
        let alerts = self.env.alerts.clone();
        let message = format!(
            "Recording of call {} stopped: {e} ({path}). The call continued unrecorded; free disk space.",
            self.call_id
        );
        tokio::spawn(async move { alerts.raise(kind, &message).await });
    }

    fn publish_events(&mut self) {
        while let Some(ev) = self.call.poll_event() {
            let (kind, leg, detail) = match ev {
                Event::Dtmf { leg, digit } => (MediaEventKind::Dtmf, leg, digit.to_string()),
                Event::RtpTimeout { leg, silent } => {
                    tracing::info!(call_id = %self.call_id, leg = leg.as_str(), silent_s = silent.as_secs(), "rtp timeout");
                    (
                        MediaEventKind::RtpTimeout,
                        leg,
                        silent.as_secs().to_string(),
                    )
                }
                Event::PlayDone { leg } => (MediaEventKind::PlayDone, leg, String::new()),
                Event::RecordEnded(Ended::Limit(max)) => {
                    tracing::info!(call_id = %self.call_id, max_s = max.as_secs(), "voicemail reached its length limit");
                    (
                        MediaEventKind::RecordLimit,
                        LegId::A,
                        max.as_secs().to_string(),
                    )
                }
                Event::RecordEnded(Ended::Silence(quiet)) => {
                    tracing::info!(call_id = %self.call_id, silent_s = quiet.as_secs(), "voicemail ended after the caller's silence");
                    (MediaEventKind::RecordLimit, LegId::A, "silence".to_string())
                }
            };
            let _ = self.env.events.send(MediaEvent {
                call_id: self.call_id.clone(),
                kind: kind.into(),
                detail,
                leg: wire_leg(leg).into(),
            });
        }
    }

    fn stats(&self) -> CallStats {
        let leg = |id| {
            let l = self.call.leg(id);
            LegStats {
                packets_in: l.recv.packets,
                bytes_in: l.recv.bytes,
                packets_out: l.packets_out,
                bytes_out: l.bytes_out,
                lost: l.recv.lost(),
                jitter_ms: l.jitter_ms(),
                latched_addr: l.latched().map(|a| a.to_string()).unwrap_or_default(),
                rtcp_in: l.rtcp_in,
                rtcp_out: l.rtcp_out,
                dropped: l.dropped,
                dropped_foreign: l.dropped_foreign,
                dropped_payload_type: l.dropped_payload_type,
                dropped_auth: l.dropped_auth,
                srtp: l.srtp(),
            }
        };
        // A voicemail is what a played-to call recorded; a call recording
        // otherwise.
        let recording_path = [&self.voicemail, &self.rec]
            .into_iter()
            .find(|r| r.written > 0)
            .and_then(|r| r.path.clone())
            .unwrap_or_default();
        CallStats {
            a: Some(leg(LegId::A)),
            b: Some(leg(LegId::B)),
            recording_path,
        }
    }
}

/// The leg as the gRPC contract names it.
pub fn wire_leg(leg: LegId) -> Leg {
    match leg {
        LegId::A => Leg::A,
        LegId::B => Leg::B,
    }
}

/// A leg named on the wire: `Ok(None)` for unspecified, an error for a
/// number the contract does not have.
pub fn leg_of(wire: i32) -> Result<Option<LegId>, tonic::Status> {
    match Leg::try_from(wire) {
        Ok(Leg::A) => Ok(Some(LegId::A)),
        Ok(Leg::B) => Ok(Some(LegId::B)),
        Ok(Leg::Unspecified) => Ok(None),
        Err(_) => Err(tonic::Status::invalid_argument("leg must be A or B")),
    }
}
