//! mediad as an RTP sender: what it plays to a leg it answers itself
//! (voicemail greetings, menus), the hold music a held leg hears and an
//! announcement a relayed leg hears once.
//!
//! A [`Clip`] is 8 kHz mono 16-bit PCM, made from a WAV ([`decode_wav`],
//! resampled) or generated ([`beep`]). The [`Player`] cuts its queue of
//! clips into 20 ms frames and wraps each in RTP: the shell asks for one
//! packet every 20 ms and sends it; the player never reads a clock.
//!
//! The stream follows RFC 3550 section 5.1: one SSRC for the call, a
//! sequence number +1 per packet and a timestamp +160 per packet (the 8 kHz
//! sampling clock of G.711, RFC 3551 section 4.5.14), both starting at
//! random values the shell draws; the marker bit on the first packet after
//! a pause (RFC 3551 section 4.1: the start of a talkspurt). 20 ms is
//! RFC 3551's default packetisation for G.711 (section 4.5).

use std::collections::VecDeque;
use std::f64::consts::PI;
use std::sync::Arc;

use super::g711;
use super::rtp;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// The rate every clip is at.
pub const RATE: u32 = 8000;
/// The record tone: 1 kHz for 0.5 s.
pub const BEEP_HZ: f64 = 1000.0;
pub const BEEP_SAMPLES: usize = 4000;
/// The beep's level: about -10 dBFS, loud and clear without clipping
/// after G.711.
const BEEP_AMPLITUDE: f64 = 10_000.0;
/// Fade in and out (5 ms) so the tone starts and stops without a click.
const BEEP_RAMP: usize = 40;

/// The notes of GoSIP's own hold music (Hz), a quarter of a second each:
/// a C major pentatonic phrase (C5 E5 G5 A5 G5 E5 D5 C5), then a rest.
pub const HOLD_MELODY_HZ: [f64; 8] = [
    523.25, 659.25, 783.99, 880.0, 783.99, 659.25, 587.33, 523.25,
];
/// Samples per note of the hold melody (250 ms).
pub const HOLD_NOTE_SAMPLES: usize = 2000;
/// The melody's level: about -16 dBFS, softer than the record tone.
const HOLD_AMPLITUDE: f64 = 5_000.0;
/// Fade of each note (10 ms), so notes join without clicks.
const HOLD_RAMP: usize = 80;

/// 8 kHz mono 16-bit PCM, shared (a clip may be played to many calls).
pub type Clip = Arc<[i16]>;

/// The two codecs mediad speaks (the type sipd names them with too).
pub use proto::webrtc::G711;

/// Where an RTP stream starts (RFC 3550 section 5.1: random initial values
/// make known-plaintext attacks on encryption harder and tell a restarted
/// sender apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
}

/// Why a WAV cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("not a WAV file: {0}")]
    Wav(#[from] hound::Error),
    #[error("{bits}-bit {format:?} samples; want 16-bit PCM")]
    Format {
        bits: u16,
        format: hound::SampleFormat,
    },
    #[error("no channels")]
    NoChannels,
}

/// The record tone.
pub fn beep() -> Clip {
    (0..BEEP_SAMPLES)
        .map(|i| {
            let edge = i.min(BEEP_SAMPLES - 1 - i);
            let ramp = if edge < BEEP_RAMP {
                0.5 - 0.5 * (PI * edge as f64 / BEEP_RAMP as f64).cos()
            } else {
                1.0
            };
            let phase = 2.0 * PI * BEEP_HZ * i as f64 / f64::from(RATE);
            (BEEP_AMPLITUDE * ramp * phase.sin()).round() as i16
        })
        .collect()
}

/// The hold music GoSIP ships (used until an admin uploads their own): the
/// notes of [`HOLD_MELODY_HZ`] as soft sine tones, then a rest of one note,
/// about 2.25 s; played in a loop.
pub fn hold_melody() -> Clip {
    let note = |hz: f64| {
        (0..HOLD_NOTE_SAMPLES).map(move |i| {
            let edge = i.min(HOLD_NOTE_SAMPLES - 1 - i);
            let ramp = if edge < HOLD_RAMP {
                0.5 - 0.5 * (PI * edge as f64 / HOLD_RAMP as f64).cos()
            } else {
                1.0
            };
            let phase = 2.0 * PI * hz * i as f64 / f64::from(RATE);
            (HOLD_AMPLITUDE * ramp * phase.sin()).round() as i16
        })
    };
    HOLD_MELODY_HZ
        .iter()
        .flat_map(|&hz| note(hz))
        .chain(std::iter::repeat_n(0, HOLD_NOTE_SAMPLES))
        .collect()
}

/// A WAV file's bytes as a clip: 16-bit PCM of any rate and channel count,
/// the channels averaged, resampled to 8 kHz.
pub fn decode_wav(bytes: &[u8]) -> Result<Clip, ClipError> {
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes))?;
    let spec = r.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(ClipError::Format {
            bits: spec.bits_per_sample,
            format: spec.sample_format,
        });
    }
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(ClipError::NoChannels);
    }
    let samples = r.samples::<i16>().collect::<Result<Vec<i16>, _>>()?;
    let mono: Vec<i16> = samples
        .chunks_exact(channels)
        .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / channels as i32) as i16)
        .collect();
    Ok(super::resample::resample(&mono, spec.sample_rate, RATE).into())
}

/// A clip as a mono 8 kHz 16-bit WAV file (the speech cache's format).
pub fn encode_wav(clip: &[i16]) -> Vec<u8> {
    let len = u32::try_from(clip.len() * 2).unwrap_or(u32::MAX - 36);
    let mut out = Vec::with_capacity(super::wav::HEADER_LEN + clip.len() * 2);
    out.extend_from_slice(&super::wav::header(1, RATE, len));
    for s in clip {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Cuts clips into RTP packets (see the module docs).
#[derive(Debug)]
pub struct Player {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// Set when a pause ends: the next packet starts a talkspurt.
    marker: bool,
    codec: G711,
    pt: u8,
    clips: VecDeque<Clip>,
    /// Samples of the front clip already sent.
    offset: usize,
    /// A sent clip goes to the back of the queue (hold music).
    looping: bool,
    packet: Vec<u8>,
}

impl Player {
    pub fn new(seed: Seed) -> Self {
        Self {
            ssrc: seed.ssrc,
            seq: seed.seq,
            timestamp: seed.timestamp,
            marker: true,
            codec: G711::Pcmu,
            pt: 0,
            clips: VecDeque::new(),
            offset: 0,
            looping: false,
            packet: Vec::with_capacity(12 + FRAME),
        }
    }

    /// Plays `clips` one after another as payload type `pt` in `codec`,
    /// replacing whatever was playing. The stream (SSRC, numbering) goes on;
    /// the first packet is marked.
    pub fn play(&mut self, codec: G711, pt: u8, clips: impl IntoIterator<Item = Clip>) {
        self.codec = codec;
        self.pt = pt;
        self.clips = clips.into_iter().filter(|c| !c.is_empty()).collect();
        self.offset = 0;
        self.marker = true;
        self.looping = false;
    }

    /// [`Player::play`] over and over until stopped or replaced.
    pub fn play_looped(&mut self, codec: G711, pt: u8, clips: impl IntoIterator<Item = Clip>) {
        self.play(codec, pt, clips);
        self.looping = true;
    }

    /// Stops playing; the next [`Player::play`] starts a talkspurt.
    pub fn stop(&mut self) {
        self.clips.clear();
        self.offset = 0;
        self.marker = true;
    }

    /// Whether samples are left to send.
    pub fn has_audio(&self) -> bool {
        !self.clips.is_empty()
    }

    /// Whether the clips play over and over ([`Player::play_looped`]).
    pub fn is_looping(&self) -> bool {
        self.looping
    }

    /// The next 20 ms packet, or `None` when everything was sent. The clips
    /// run on without gaps; the last frame is padded with silence.
    pub fn next_packet(&mut self) -> Option<&[u8]> {
        if self.clips.is_empty() {
            return None;
        }
        self.packet.clear();
        self.packet.resize(12, 0);
        rtp::write_header(
            &mut self.packet,
            self.pt,
            self.marker,
            self.seq,
            self.timestamp,
            self.ssrc,
        );
        while self.packet.len() < 12 + FRAME {
            let Some(clip) = self.clips.front() else {
                self.packet.push(g711::encode(self.codec, 0));
                continue;
            };
            let take = (clip.len() - self.offset).min(12 + FRAME - self.packet.len());
            let codec = self.codec;
            let part = &clip[self.offset..self.offset + take];
            self.packet
                .extend(part.iter().map(|&s| g711::encode(codec, s)));
            self.offset += take;
            if self.offset == clip.len() {
                if let Some(done) = self.clips.pop_front()
                    && self.looping
                {
                    self.clips.push_back(done);
                }
                self.offset = 0;
            }
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        self.marker = false;
        Some(&self.packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::resample::tests::{goertzel, tone};
    use crate::relay::rtp::{Datagram, parse};

    const SEED: Seed = Seed {
        ssrc: 0x1234_5678,
        seq: 65_534,
        timestamp: u32::MAX - 159,
    };

    fn drain(p: &mut Player) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| p.next_packet().map(<[u8]>::to_vec)).collect()
    }

    fn decode(codec: G711, payload: &[u8]) -> Vec<i16> {
        let table = g711::table(codec);
        payload.iter().map(|&b| table[usize::from(b)]).collect()
    }

    #[test]
    fn a_duration_becomes_whole_frames_and_the_last_is_padded_with_silence() {
        let mut p = Player::new(SEED);
        // The beep: 0.5 s = 25 frames exactly.
        p.play(G711::Pcmu, 0, [beep()]);
        assert_eq!(drain(&mut p).len(), 25);
        // 1 s + 1 sample = 51 frames; the last holds 1 sample, then silence.
        let clip: Clip = vec![1000i16; 8001].into();
        p.play(G711::Pcma, 8, [clip]);
        let packets = drain(&mut p);
        assert_eq!(packets.len(), 51);
        let last = decode(G711::Pcma, &packets[50][12..]);
        assert!((900..1100).contains(&last[0]));
        assert!(last[1..].iter().all(|&s| s.abs() <= 8), "{:?}", &last[..4]);
        assert!(!p.has_audio());
        assert!(p.next_packet().is_none());
    }

    #[test]
    fn clips_run_on_without_gaps_across_frame_boundaries() {
        let mut p = Player::new(SEED);
        let a: Clip = vec![4000i16; 100].into();
        let b: Clip = vec![-4000i16; 100].into();
        p.play(G711::Pcmu, 0, [a, Clip::from(Vec::new()), b]);
        let packets = drain(&mut p);
        assert_eq!(packets.len(), 2, "200 samples: 2 frames");
        let s: Vec<i16> = packets
            .iter()
            .flat_map(|x| decode(G711::Pcmu, &x[12..]))
            .collect();
        assert!(s[..100].iter().all(|&x| x > 3800));
        assert!(s[100..200].iter().all(|&x| x < -3800));
        assert!(s[200..].iter().all(|&x| x == 0));
    }

    #[test]
    fn headers_number_packets_and_samples_and_mark_only_a_talkspurts_start() {
        let mut p = Player::new(SEED);
        p.play(G711::Pcma, 8, [Clip::from(vec![0i16; 800])]);
        let packets = drain(&mut p);
        let headers: Vec<_> = packets
            .iter()
            .map(|x| match parse(x) {
                Datagram::Rtp(h) => h,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(headers.len(), 5);
        for (i, h) in headers.iter().enumerate() {
            assert_eq!(h.payload_type, 8);
            assert_eq!(h.ssrc, SEED.ssrc);
            assert_eq!(h.marker, i == 0, "packet {i}");
            assert_eq!(h.seq, SEED.seq.wrapping_add(i as u16), "wraps past 65535");
            assert_eq!(
                h.timestamp,
                SEED.timestamp.wrapping_add(160 * i as u32),
                "+160 per 20 ms, wrapping"
            );
            assert_eq!(h.payload_end - h.payload_start, FRAME);
        }
        // A new Play continues the stream and marks its first packet.
        p.play(G711::Pcmu, 0, [beep()]);
        let next = drain(&mut p);
        let Datagram::Rtp(h) = parse(&next[0]) else {
            panic!("not RTP")
        };
        assert!(h.marker);
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.seq, SEED.seq.wrapping_add(5));
        assert_eq!(h.timestamp, SEED.timestamp.wrapping_add(800));
        // Replacing mid-way drops the rest.
        p.play(G711::Pcmu, 0, [beep()]);
        p.next_packet();
        p.play(G711::Pcmu, 0, [Clip::from(vec![0i16; 160])]);
        assert_eq!(drain(&mut p).len(), 1);
    }

    #[test]
    fn hold_music_loops_without_end_and_its_notes_are_the_melody() {
        let mut p = Player::new(SEED);
        p.play_looped(G711::Pcma, 8, [hold_melody()]);
        // Three times round the 2.25 s melody and still playing.
        let per_loop = (HOLD_MELODY_HZ.len() + 1) * HOLD_NOTE_SAMPLES;
        let pcm: Vec<i16> = (0..(3 * per_loop).div_ceil(FRAME))
            .flat_map(|_| decode(G711::Pcma, &p.next_packet().unwrap()[12..]))
            .collect();
        assert!(p.has_audio() && p.is_looping());
        for round in 0..3 {
            // The loop runs on without a gap in the middle of a frame.
            let start = round * per_loop;
            for (n, &hz) in HOLD_MELODY_HZ.iter().enumerate() {
                let note = &pcm[start + n * HOLD_NOTE_SAMPLES..][..HOLD_NOTE_SAMPLES];
                let others = HOLD_MELODY_HZ.iter().filter(|&&f| f != hz);
                for &other in others {
                    assert!(
                        goertzel(note, hz, 8000.0) > 20.0 * goertzel(note, other, 8000.0),
                        "round {round} note {n}: {hz} Hz against {other} Hz"
                    );
                }
            }
            let rest = &pcm[start + 8 * HOLD_NOTE_SAMPLES..][..HOLD_NOTE_SAMPLES];
            assert!(rest.iter().all(|s| s.abs() < 16), "a rest after the phrase");
        }
        // A plain play after it ends as before.
        p.play(G711::Pcma, 8, [beep()]);
        assert!(!p.is_looping());
        assert_eq!(drain(&mut p).len(), 25);
    }

    #[test]
    fn the_beep_survives_g711_as_a_1_khz_tone_in_both_laws() {
        for (codec, pt) in [(G711::Pcmu, 0u8), (G711::Pcma, 8)] {
            let mut p = Player::new(SEED);
            p.play(codec, pt, [beep()]);
            let pcm: Vec<i16> = drain(&mut p)
                .iter()
                .flat_map(|x| decode(codec, &x[12..]))
                .collect();
            assert_eq!(pcm.len(), BEEP_SAMPLES);
            let p1k = goertzel(&pcm, 1000.0, 8000.0);
            for other in [440.0, 900.0, 1100.0, 2000.0] {
                assert!(
                    p1k > 100.0 * goertzel(&pcm, other, 8000.0),
                    "{codec:?} {other}"
                );
            }
            // Round trip: close to the generated samples.
            let err = pcm
                .iter()
                .zip(beep().iter())
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max()
                .unwrap_or(0);
            assert!(err < 400, "{codec:?} max error {err}");
            assert!(pcm[..5].iter().all(|s| s.abs() < 1000), "ramps in");
        }
    }

    #[test]
    fn wav_files_of_any_rate_and_channels_become_8_khz_mono() {
        let wav = |rate: u32, channels: u16, samples: &[i16]| {
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut buf = std::io::Cursor::new(Vec::new());
            let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
            for &s in samples {
                w.write_sample(s).unwrap();
            }
            w.finalize().unwrap();
            buf.into_inner()
        };
        let t = tone(440.0, 22050, 1.0, 8000.0);
        let clip = decode_wav(&wav(22050, 1, &t)).unwrap();
        assert_eq!(clip.len(), 8000);
        assert!(
            goertzel(&clip[400..7600], 440.0, 8000.0)
                > 1000.0 * goertzel(&clip[400..7600], 1212.75, 8000.0)
        );
        // Stereo: left 440 Hz, right silent -> mono at half the level.
        let st: Vec<i16> = t.iter().flat_map(|&s| [s, 0]).collect();
        let clip = decode_wav(&wav(22050, 2, &st)).unwrap();
        let peak = clip[400..7600].iter().map(|s| s.abs()).max().unwrap();
        assert!((3800..4200).contains(&peak), "{peak}");
        // 8 kHz passes through untouched.
        assert_eq!(
            &decode_wav(&wav(8000, 1, &[1, -2, 3])).unwrap()[..],
            &[1, -2, 3]
        );
        // The cache's own format reads back.
        assert_eq!(
            &decode_wav(&encode_wav(&[5, 6, 7])).unwrap()[..],
            &[5, 6, 7]
        );
        assert!(matches!(
            decode_wav(b"RIFF....WAVE"),
            Err(ClipError::Wav(_))
        ));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        w.write_sample(1i8).unwrap();
        w.finalize().unwrap();
        let e = decode_wav(&buf.into_inner()).unwrap_err();
        assert!(matches!(e, ClipError::Format { bits: 8, .. }), "{e}");
    }
}
