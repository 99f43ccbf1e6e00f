//! Recording what a caller says after the greeting: the A-leg's audio as
//! mono 8 kHz 16-bit PCM, placed on a timeline by RTP timestamp exactly like
//! the call recording ([`Recorder`], its left channel), with a length limit.
//!
//! The timeline starts at the caller's first packet, not at the start of
//! recording, so a message has no dead air before the caller's audio and a
//! caller who sends nothing leaves no file. The limit counts from the start
//! of recording: that is what the caller was promised.

use std::time::{Duration, Instant};

use super::wav::{Codec, Recorder};

/// A voicemail being recorded.
pub struct Voicemail {
    started: Instant,
    max: Duration,
    rec: Option<Recorder>,
    /// The limit was reached: nothing more is taken.
    full: bool,
    stereo: Vec<u8>,
}

impl Voicemail {
    pub fn new(now: Instant, max: Duration) -> Self {
        Self {
            started: now,
            max,
            rec: None,
            full: false,
            stereo: Vec::new(),
        }
    }

    /// One audio packet of the caller.
    pub fn push(&mut self, now: Instant, ssrc: u32, ts: u32, codec: Codec, payload: &[u8]) {
        if self.full || now.saturating_duration_since(self.started) >= self.max {
            return;
        }
        self.rec
            .get_or_insert_with(|| Recorder::new(now))
            .push(0, now, ssrc, ts, codec, payload);
    }

    /// True once, when the limit is reached at `now`.
    pub fn reach_limit(&mut self, now: Instant) -> bool {
        if self.full || now.saturating_duration_since(self.started) < self.max {
            return false;
        }
        self.full = true;
        true
    }

    /// The length limit.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Whether recording stopped at the limit.
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Appends the audio that is ready (all of it once full) to `out`, as
    /// little-endian mono samples.
    pub fn drain(&mut self, now: Instant, out: &mut Vec<u8>) {
        if self.full {
            self.finish(out);
            return;
        }
        if let Some(rec) = &mut self.rec {
            self.stereo.clear();
            rec.drain(now, &mut self.stereo);
            left(&self.stereo, out);
        }
    }

    /// Appends everything recorded and not yet drained.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(rec) = &mut self.rec {
            self.stereo.clear();
            rec.finish(&mut self.stereo);
            left(&self.stereo, out);
        }
    }
}

/// The left channel of interleaved 16-bit stereo.
fn left(stereo: &[u8], out: &mut Vec<u8>) {
    for frame in stereo.chunks_exact(4) {
        out.extend_from_slice(&frame[..2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::g711::ulaw_encode;

    fn samples(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn the_message_starts_with_the_callers_first_packet_and_stops_at_the_limit() {
        let t = Instant::now();
        let mut vm = Voicemail::new(t, Duration::from_secs(1));
        let mut out = Vec::new();
        vm.drain(t + Duration::from_millis(300), &mut out);
        assert!(out.is_empty(), "nothing before the caller speaks");
        let loud = [ulaw_encode(5000); 160];
        // Caller starts 300 ms in; 50 packets of 20 ms, the last 15 past
        // the 1 s limit.
        for i in 0..50u32 {
            let now = t + Duration::from_millis(300 + 20 * u64::from(i));
            vm.push(now, 7, 1000 + 160 * i, Codec::Pcmu, &loud);
            assert_eq!(vm.reach_limit(now), i == 35, "packet {i}");
            vm.drain(now, &mut out);
        }
        assert!(vm.is_full());
        vm.finish(&mut out);
        let s = samples(&out);
        assert_eq!(s.len(), 35 * 160, "700 ms of the caller, no lead-in");
        assert!(s.iter().all(|&x| (4800..5200).contains(&x)));
    }

    #[test]
    fn a_silent_caller_leaves_nothing_and_a_lost_packet_leaves_a_gap() {
        let t = Instant::now();
        let mut vm = Voicemail::new(t, Duration::from_secs(120));
        let mut out = Vec::new();
        vm.finish(&mut out);
        assert!(out.is_empty());
        let loud = [ulaw_encode(-3000); 160];
        for i in [0u32, 1, 3] {
            vm.push(
                t + Duration::from_millis(20 * u64::from(i)),
                1,
                160 * i,
                Codec::Pcmu,
                &loud,
            );
        }
        vm.finish(&mut out);
        let s = samples(&out);
        assert_eq!(s.len(), 640);
        assert!(s[320..480].iter().all(|&x| x == 0));
        assert!(s[480..].iter().all(|&x| x < -2800));
    }
}
