//! The shell of one call: a task owning the four UDP sockets (RTP and RTCP
//! per leg), the pure [`Call`] core and the recording file. The gRPC service
//! talks to it through [`Cmd`]s.
//!
//! Hot path: a readable socket is drained with non-blocking receives into
//! one buffer, each datagram goes through `Call::on_rtp` and out with a
//! non-blocking send: no allocation, lock, log line or database work per
//! packet. Recorded audio is written to disk on the 100 ms tick.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::pb::mediad::{CallStats, LegStats, MediaEvent};
use proto::settings::Settings;
use sqlx::SqlitePool;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::recording::{self, WavFile};
use crate::relay::{Call, Event, LegId};

/// How often timeouts are checked and recorded audio is written.
const TICK: Duration = Duration::from_millis(100);
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
}

/// The sockets of one call: RTP and RTCP towards each leg.
pub struct Sockets {
    pub a_rtp: UdpSocket,
    pub a_rtcp: UdpSocket,
    pub b_rtp: UdpSocket,
    pub b_rtcp: UdpSocket,
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
}

/// Runs one call until Release, the command channel closing, or shutdown.
pub async fn run(call_id: String, sockets: Sockets, mut rx: mpsc::Receiver<Cmd>, env: Env) {
    let mut last_cmd = Instant::now();
    let mut task = CallTask {
        call: Call::new(Instant::now()),
        rec: Recording::default(),
        call_id,
        env,
    };
    let Sockets {
        a_rtp,
        a_rtcp,
        b_rtp,
        b_rtcp,
    } = sockets;
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = task.env.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                task.stop_recording();
                break;
            }
            cmd = rx.recv() => match cmd {
                None => {
                    task.stop_recording();
                    break;
                }
                Some(Cmd::Release { reply }) => {
                    task.stop_recording();
                    let _ = reply.send(task.stats());
                    break;
                }
                Some(cmd) => {
                    last_cmd = Instant::now();
                    task.command(cmd);
                }
            },
            Ok(()) = a_rtp.readable() => task.relay(LegId::A, false, &a_rtp, &b_rtp, &mut buf),
            Ok(()) = b_rtp.readable() => task.relay(LegId::B, false, &b_rtp, &a_rtp, &mut buf),
            Ok(()) = a_rtcp.readable() => task.relay(LegId::A, true, &a_rtcp, &b_rtcp, &mut buf),
            Ok(()) = b_rtcp.readable() => task.relay(LegId::B, true, &b_rtcp, &a_rtcp, &mut buf),
            _ = tick.tick() => {
                task.tick();
                let active = task.call.last_packet().map_or(last_cmd, |t| t.max(last_cmd));
                if active.elapsed() >= task.env.orphan_after {
                    tracing::warn!(call_id = %task.call_id, idle_s = active.elapsed().as_secs(), "no packets and no word from sipd: ending the call's media");
                    task.stop_recording();
                    let _ = task.env.ended.send(task.call_id.clone());
                    break;
                }
            }
        }
        task.publish_events();
    }
    task.publish_events();
    tracing::debug!(call_id = %task.call_id, "call media ended");
}

struct CallTask {
    call: Call,
    rec: Recording,
    call_id: String,
    env: Env,
}

/// The recording file of a call, kept across pauses.
#[derive(Default)]
struct Recording {
    /// Relative to the data dir; chosen on the first Record.
    path: Option<String>,
    file: Option<WavFile>,
    pcm: Vec<u8>,
    /// PCM bytes this call wrote successfully.
    written: u64,
}

impl CallTask {
    fn relay(&mut self, from: LegId, rtcp: bool, rx: &UdpSocket, tx: &UdpSocket, buf: &mut [u8]) {
        for _ in 0..BATCH {
            let (n, src) = match rx.try_recv_from(buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let now = Instant::now();
            let packet = &buf[..n];
            let dst = if rtcp {
                self.call.on_rtcp(now, from, src, packet)
            } else {
                self.call.on_rtp(now, from, src, packet)
            };
            if let Some(dst) = dst {
                match tx.try_send_to(packet, dst) {
                    Ok(_) => self.call.on_sent(from.other(), n, rtcp),
                    Err(_) => self.call.on_send_failed(from.other()),
                }
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::UpdateLeg(u) => self.update_leg(u),
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
            Cmd::Release { .. } => {}
        }
    }

    fn update_leg(&mut self, u: LegUpdate) {
        let now = Instant::now();
        if let Some(leg) = u.leg {
            if let Some(ip) = u.signal_ip {
                self.call.set_signal_ip(leg, ip);
            }
            if let Some(rtp) = u.rtp {
                self.call.set_remote(leg, rtp, u.rtcp);
            }
            self.call
                .set_codecs(leg, u.codecs.iter().map(|(pt, name)| (*pt, name.as_str())));
            if let Some(hold) = u.hold {
                self.call.set_hold(leg, hold);
            }
        }
        if u.established == Some(true) {
            self.call.set_established(now);
        }
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
                    self.recording_failed(&e);
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
                self.recording_failed(&e);
            }
        }
    }

    /// A full disk (or any write error) ends the recording, never the call:
    /// sipd hears `recording_failed`, the admin gets an alert.
    fn recording_failed(&self, e: &io::Error) {
        let kind = if recording::is_disk_full(e) {
            "disk_full"
        } else {
            "recording_failed"
        };
        let path = self.rec.path.clone().unwrap_or_default();
        tracing::error!(call_id = %self.call_id, path = %path, error = %e, "recording failed; the call goes on unrecorded");
        let _ = self.env.events.send(MediaEvent {
            call_id: self.call_id.clone(),
            kind: "recording_failed".into(),
            detail: e.to_string(),
            leg: String::new(),
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
                Event::Dtmf { leg, digit } => ("dtmf", leg, digit.to_string()),
                Event::RtpTimeout { leg, silent } => {
                    tracing::info!(call_id = %self.call_id, leg = leg.as_str(), silent_s = silent.as_secs(), "rtp timeout");
                    ("rtp_timeout", leg, silent.as_secs().to_string())
                }
            };
            let _ = self.env.events.send(MediaEvent {
                call_id: self.call_id.clone(),
                kind: kind.into(),
                detail,
                leg: leg.as_str().into(),
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
            }
        };
        let recorded = self.rec.written > 0;
        CallStats {
            a: Some(leg(LegId::A)),
            b: Some(leg(LegId::B)),
            recording_path: if recorded {
                self.rec.path.clone().unwrap_or_default()
            } else {
                String::new()
            },
        }
    }
}
