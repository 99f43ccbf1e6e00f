//! Recording: both legs' G.711 decoded into one stereo 8 kHz 16-bit WAV
//! (left = A-leg, right = B-leg) on a common timeline.
//!
//! Timing: the recording clock is the wall clock since recording started, in
//! samples. Each leg's first packet maps its RTP timestamp onto that clock;
//! later packets are placed by their timestamp (RFC 3550: the timestamp
//! advances with the sampling clock even when packets are lost or not sent),
//! so a lost packet leaves exactly its samples of silence and a late one
//! still lands in place. Packets are held [`HOLD_SAMPLES`] before they are
//! written so reordered packets find their slot. A timestamp that is more
//! than [`RESYNC_SAMPLES`] away from the wall clock (new SSRC, a sender's
//! timestamp jump) re-anchors the leg to the wall clock.

use std::time::Instant;

use super::g711::{ALAW_TO_LINEAR, ULAW_TO_LINEAR};

/// Sampling rate of the recording (G.711).
pub const RATE: u32 = 8000;
/// Samples written out this long after the wall clock (200 ms).
pub const HOLD_SAMPLES: u64 = 1600;
/// A leg whose timeline drifts this far from the wall clock (1 s) re-anchors.
pub const RESYNC_SAMPLES: i64 = 8000;
/// Ring capacity per channel (4 s): HOLD plus any drain interval.
const RING: usize = 32_000;
/// Length of the canonical WAV header written by [`header`].
pub const HEADER_LEN: usize = 44;

/// How a payload decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// Anything else (G.722, G.729 ...): recorded as silence.
    Other,
}

impl Codec {
    /// The codec of an rtpmap encoding name.
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("PCMU") {
            Codec::Pcmu
        } else if name.eq_ignore_ascii_case("PCMA") {
            Codec::Pcma
        } else {
            Codec::Other
        }
    }
}

/// The 44-byte header of a PCM WAV with `data_len` bytes of samples.
pub fn header(channels: u16, rate: u32, data_len: u32) -> [u8; HEADER_LEN] {
    let block_align = channels * 2;
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// The two-channel timeline of one recording.
pub struct Recorder {
    start: Instant,
    /// Interleaved stereo ring of RING frames.
    ring: Box<[[i16; 2]]>,
    /// Frames before this position are written out.
    flushed: u64,
    /// One past the last frame any packet filled.
    end: u64,
    legs: [Anchor; 2],
    /// Packets that arrived too late for their slot or too far ahead.
    pub late_packets: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Anchor {
    /// (RTP timestamp, timeline position) of the last placed packet.
    last: Option<(u32, u32, i64)>,
}

impl Recorder {
    /// A recording whose timeline starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            start: now,
            ring: vec![[0i16; 2]; RING].into_boxed_slice(),
            flushed: 0,
            end: 0,
            legs: [Anchor::default(); 2],
            late_packets: 0,
        }
    }

    /// Places one audio packet of leg `leg` (0 = A, 1 = B).
    pub fn push(
        &mut self,
        leg: usize,
        now: Instant,
        ssrc: u32,
        ts: u32,
        codec: Codec,
        payload: &[u8],
    ) {
        let wall = self.wall(now);
        let anchor = &mut self.legs[leg];
        let pos = match anchor.last {
            Some((s, t, p)) if s == ssrc => {
                let pos = p + i64::from(ts.wrapping_sub(t) as i32);
                if (pos - wall).abs() > RESYNC_SAMPLES {
                    wall
                } else {
                    pos
                }
            }
            _ => wall,
        };
        anchor.last = Some((ssrc, ts, pos));
        let n = payload.len() as i64;
        let (lo, hi) = (self.flushed as i64, self.flushed as i64 + RING as i64);
        if pos < lo || pos + n > hi {
            self.late_packets += 1;
            if pos + n <= lo || pos >= hi {
                return;
            }
        }
        let table = match codec {
            Codec::Pcmu => Some(&ULAW_TO_LINEAR),
            Codec::Pcma => Some(&ALAW_TO_LINEAR),
            Codec::Other => None,
        };
        let from = pos.max(lo);
        let to = (pos + n).min(hi);
        for p in from..to {
            let slot = &mut self.ring[(p as usize) % RING][leg];
            let byte = payload[(p - pos) as usize];
            *slot = table.map_or(0, |t| t[usize::from(byte)]);
        }
        self.end = self.end.max(to as u64);
    }

    /// Appends to `out` every frame older than the hold time, as little
    /// endian interleaved samples; returns the frames written.
    pub fn drain(&mut self, now: Instant, out: &mut Vec<u8>) -> u64 {
        let target = (self.wall(now) - HOLD_SAMPLES as i64).max(0) as u64;
        self.drain_to(target, out)
    }

    /// Appends everything up to the last placed packet (recording stops).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> u64 {
        let end = self.end;
        self.drain_to(end, out)
    }

    fn drain_to(&mut self, target: u64, out: &mut Vec<u8>) -> u64 {
        let from = self.flushed;
        while self.flushed < target {
            let frame = &mut self.ring[(self.flushed as usize) % RING];
            out.extend_from_slice(&frame[0].to_le_bytes());
            out.extend_from_slice(&frame[1].to_le_bytes());
            *frame = [0, 0];
            self.flushed += 1;
        }
        self.end = self.end.max(self.flushed);
        self.flushed - from
    }

    fn wall(&self, now: Instant) -> i64 {
        (now.saturating_duration_since(self.start).as_micros() as u64 * u64::from(RATE) / 1_000_000)
            as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::g711::ulaw_encode;
    use std::time::Duration;

    fn frames(bytes: &[u8]) -> Vec<[i16; 2]> {
        bytes
            .chunks_exact(4)
            .map(|c| {
                [
                    i16::from_le_bytes([c[0], c[1]]),
                    i16::from_le_bytes([c[2], c[3]]),
                ]
            })
            .collect()
    }

    #[test]
    fn header_matches_the_canonical_pcm_wav_layout() {
        let h = header(2, 8000, 32000);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 32036);
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u16::from_le_bytes([h[22], h[23]]), 2);
        assert_eq!(u32::from_le_bytes(h[24..28].try_into().unwrap()), 8000);
        assert_eq!(
            u32::from_le_bytes(h[28..32].try_into().unwrap()),
            32000,
            "byte rate"
        );
        assert_eq!(u16::from_le_bytes([h[32], h[33]]), 4, "block align");
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 32000);

        // hound, an independent reader, accepts it.
        let mut file = h.to_vec();
        file.extend(std::iter::repeat_n(0u8, 32000));
        let r = hound::WavReader::new(std::io::Cursor::new(file)).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.duration(), 8000);
    }

    #[test]
    fn a_lost_packet_leaves_exactly_its_samples_of_silence() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        let loud = [ulaw_encode(10000); 160];
        // Leg A: packets 0..10, packet 4 and 5 lost; arrival jitter of up to
        // 7 ms does not move samples.
        for i in 0..10u32 {
            if i == 4 || i == 5 {
                continue;
            }
            let at = t0 + Duration::from_millis(20 * u64::from(i) + u64::from(i % 3) * 3);
            r.push(0, at, 42, 5000 + 160 * i, Codec::Pcmu, &loud);
        }
        let mut out = Vec::new();
        assert_eq!(r.drain(t0 + Duration::from_millis(300), &mut out), 800);
        r.finish(&mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 1600, "10 packets of 160 samples");
        let left: Vec<i16> = f.iter().map(|x| x[0]).collect();
        assert!(left[..640].iter().all(|&s| s > 9000));
        assert!(
            left[640..960].iter().all(|&s| s == 0),
            "2 lost packets = 320 samples of silence"
        );
        assert!(left[960..].iter().all(|&s| s > 9000));
        assert!(f.iter().all(|x| x[1] == 0), "B sent nothing");
    }

    #[test]
    fn reordered_packets_land_in_their_slots_and_legs_align_by_arrival() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        let a = [ulaw_encode(1000); 160];
        let b = [ulaw_encode(-2000); 160];
        // A: packets 0,2,1 all by 45 ms. B starts 100 ms after A with an
        // unrelated timestamp base.
        r.push(0, t0, 1, 0, Codec::Pcmu, &a);
        r.push(0, t0 + Duration::from_millis(40), 1, 320, Codec::Pcmu, &a);
        r.push(0, t0 + Duration::from_millis(45), 1, 160, Codec::Pcmu, &a);
        r.push(
            1,
            t0 + Duration::from_millis(100),
            9,
            777_777,
            Codec::Pcmu,
            &b,
        );
        r.push(
            1,
            t0 + Duration::from_millis(120),
            9,
            777_777 + 160,
            Codec::Pcmu,
            &b,
        );
        let mut out = Vec::new();
        r.finish(&mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 800 + 320);
        assert!(f[..480].iter().all(|x| x[0] > 900));
        assert!(f[480..].iter().all(|x| x[0] == 0));
        assert!(f[..800].iter().all(|x| x[1] == 0));
        assert!(f[800..].iter().all(|x| x[1] < -1900));
    }

    #[test]
    fn drain_holds_back_recent_audio_and_a_timestamp_jump_resyncs_to_the_wall_clock() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        let a = [ulaw_encode(3000); 160];
        r.push(0, t0, 1, 0, Codec::Pcmu, &a);
        let mut out = Vec::new();
        assert_eq!(
            r.drain(t0 + Duration::from_millis(100), &mut out),
            0,
            "inside the hold time"
        );
        assert_eq!(r.drain(t0 + Duration::from_millis(300), &mut out), 800);
        // Same SSRC, timestamp 10 s ahead, arriving at 500 ms: placed at 500 ms.
        r.push(
            0,
            t0 + Duration::from_millis(500),
            1,
            80_000,
            Codec::Pcmu,
            &a,
        );
        r.finish(&mut out);
        let f = frames(&out);
        assert_eq!(f.len(), 4000 + 160);
        assert!(f[4000..].iter().all(|x| x[0] > 2900));
        assert!(f[160..4000].iter().all(|x| x[0] == 0));
    }

    #[test]
    fn a_packet_older_than_the_written_part_is_counted_late_and_dropped() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        let a = [ulaw_encode(3000); 160];
        r.push(0, t0, 1, 0, Codec::Pcmu, &a);
        let mut out = Vec::new();
        r.drain(t0 + Duration::from_millis(1000), &mut out);
        r.push(0, t0 + Duration::from_millis(1001), 1, 160, Codec::Pcmu, &a);
        assert_eq!(r.late_packets, 1);
        assert!(frames(&out)[160..].iter().all(|x| x[0] == 0));
    }

    #[test]
    fn unknown_codecs_record_silence() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        r.push(1, t0, 1, 0, Codec::Other, &[0x55; 160]);
        let mut out = Vec::new();
        r.finish(&mut out);
        assert_eq!(frames(&out), vec![[0, 0]; 160]);
        assert_eq!(Codec::from_name("pcma"), Codec::Pcma);
        assert_eq!(Codec::from_name("G722"), Codec::Other);
    }
}
