//! Recording what a caller says after the greeting: the A-leg's audio as
//! mono 8 kHz 16-bit PCM, placed on a timeline by RTP timestamp exactly like
//! the call recording ([`Recorder`], its left channel), with a length limit.
//!
//! The timeline starts at the caller's first packet, not at the start of
//! recording, so a message has no dead air before the caller's audio and a
//! caller who sends nothing leaves no file. The limit counts from the start
//! of recording: that is what the caller was promised.

use std::time::{Duration, Instant};

use super::g711::{ALAW_TO_LINEAR, ULAW_TO_LINEAR};
use super::wav::{Codec, Recorder};

/// A packet louder than this (RMS of its samples, 16-bit scale: about
/// -40 dBFS) is the caller speaking; quieter is line noise or comfort noise.
const VOICE_RMS: f64 = 330.0;

/// When a voicemail's recording ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLimits {
    /// The longest message.
    pub max: Duration,
    /// Ends after the caller has said nothing for this long.
    pub silence: Option<Duration>,
}

/// Why a voicemail's recording ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The longest message was reached.
    Limit(Duration),
    /// The caller said nothing for this long.
    Silence(Duration),
}

/// A voicemail being recorded.
pub struct Voicemail {
    started: Instant,
    max: Duration,
    silence: Option<Duration>,
    /// The last packet that was speech (the start until there is one).
    last_voice: Instant,
    rec: Option<Recorder>,
    /// The limit was reached: nothing more is taken.
    full: bool,
    stereo: Vec<u8>,
}

impl Voicemail {
    pub fn new(now: Instant, limits: RecordLimits) -> Self {
        Self {
            started: now,
            max: limits.max,
            silence: limits.silence,
            last_voice: now,
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
        if rms(codec, payload) >= VOICE_RMS {
            self.last_voice = now;
        }
        self.rec
            .get_or_insert_with(|| Recorder::new(now))
            .push(0, now, ssrc, ts, codec, payload);
    }

    /// Why the recording ends at `now`, once: the longest message, or the
    /// caller's silence.
    pub fn reach_end(&mut self, now: Instant) -> Option<Ended> {
        if self.full {
            return None;
        }
        let quiet = now.saturating_duration_since(self.last_voice);
        let ended = if now.saturating_duration_since(self.started) >= self.max {
            Ended::Limit(self.max)
        } else if let Some(s) = self.silence.filter(|s| quiet >= *s) {
            Ended::Silence(s)
        } else {
            return None;
        };
        self.full = true;
        Some(ended)
    }

    /// Whether recording stopped by itself (limit or silence).
    #[cfg(test)]
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

/// The loudness of one G.711 packet (RMS of its samples); other codecs
/// count as speech, since they cannot be measured here.
fn rms(codec: Codec, payload: &[u8]) -> f64 {
    let table = match codec {
        Codec::Pcmu => &ULAW_TO_LINEAR,
        Codec::Pcma => &ALAW_TO_LINEAR,
        _ => return f64::MAX,
    };
    if payload.is_empty() {
        return 0.0;
    }
    let sum: f64 = payload
        .iter()
        .map(|b| f64::from(table[usize::from(*b)]).powi(2))
        .sum();
    (sum / payload.len() as f64).sqrt()
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

    fn limits(max: u64, silence: Option<u64>) -> RecordLimits {
        RecordLimits {
            max: Duration::from_secs(max),
            silence: silence.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_recording_ends_after_the_callers_silence_not_during_speech() {
        let t = Instant::now();
        let mut vm = Voicemail::new(t, limits(120, Some(2)));
        let loud = [ulaw_encode(4000); 160];
        let quiet = [ulaw_encode(40); 160];
        let at = |ms: u64| t + Duration::from_millis(ms);
        // Speech for 3 s: never silent for 2 s.
        for i in 0..150u64 {
            vm.push(at(20 * i), 1, 160 * i as u32, Codec::Pcmu, &loud);
            assert_eq!(vm.reach_end(at(20 * i)), None);
        }
        // Then line noise only: the end comes 2 s after the last word.
        for i in 150..300u64 {
            vm.push(at(20 * i), 1, 160 * i as u32, Codec::Pcmu, &quiet);
            let end = vm.reach_end(at(20 * i));
            let silent_ms = 20 * i - 20 * 149;
            assert_eq!(end.is_some(), silent_ms == 2000, "at {silent_ms} ms");
            if end.is_some() {
                assert_eq!(end, Some(Ended::Silence(Duration::from_secs(2))));
                break;
            }
        }
        assert!(vm.is_full());
    }

    #[test]
    fn a_caller_who_sends_nothing_is_silent_too() {
        let t = Instant::now();
        let mut vm = Voicemail::new(t, limits(120, Some(2)));
        assert_eq!(vm.reach_end(t + Duration::from_millis(1_999)), None);
        assert_eq!(
            vm.reach_end(t + Duration::from_secs(2)),
            Some(Ended::Silence(Duration::from_secs(2)))
        );
    }

    fn samples(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn the_message_starts_with_the_callers_first_packet_and_stops_at_the_limit() {
        let t = Instant::now();
        let mut vm = Voicemail::new(t, limits(1, None));
        let mut out = Vec::new();
        vm.drain(t + Duration::from_millis(300), &mut out);
        assert!(out.is_empty(), "nothing before the caller speaks");
        let loud = [ulaw_encode(5000); 160];
        // Caller starts 300 ms in; 50 packets of 20 ms, the last 15 past
        // the 1 s limit.
        for i in 0..50u32 {
            let now = t + Duration::from_millis(300 + 20 * u64::from(i));
            vm.push(now, 7, 1000 + 160 * i, Codec::Pcmu, &loud);
            assert_eq!(vm.reach_end(now).is_some(), i == 35, "packet {i}");
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
        let mut vm = Voicemail::new(t, limits(120, None));
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
