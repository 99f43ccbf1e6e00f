//! Reading PCM WAV files and telling which tone a channel carries, for tests
//! that check recorded or heard audio by frequency rather than by size.
//!
//! The detector is a Goertzel filter over 50 ms windows: in each window it
//! measures which share of the window's energy sits at one frequency (1.0
//! for a pure sine at exactly that frequency, about 0 for another tone or
//! noise). 50 ms holds a whole number of cycles of every multiple of 20 Hz,
//! so 440 Hz and 1000 Hz tones score close to 1.0 with no window function.
#![allow(dead_code)]

use std::path::Path;

/// A decoded PCM WAV: its header fields and one sample vector per channel
/// (scaled to -1.0..1.0).
#[derive(Debug, Clone)]
pub struct Wav {
    /// `fmt ` audio format: 1 is integer PCM.
    pub format: u16,
    pub channels: u16,
    pub rate: u32,
    pub bits: u16,
    pub byte_rate: u32,
    pub block_align: u16,
    /// Bytes in the `data` chunk as the header says.
    pub data_len: u32,
    pub samples: Vec<Vec<f32>>,
}

impl Wav {
    /// Parses `bytes` as a RIFF/WAVE file of 16-bit integer PCM, walking
    /// the chunks (writers may put `LIST` or `fact` chunks before `data`).
    pub fn parse(bytes: &[u8]) -> Result<Wav, String> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err("not a RIFF/WAVE file".into());
        }
        let riff_len = u32_at(bytes, 4) as usize;
        if riff_len + 8 != bytes.len() {
            return Err(format!(
                "RIFF size {riff_len} + 8 does not match the file size {}",
                bytes.len()
            ));
        }
        let mut fmt: Option<&[u8]> = None;
        let mut data: Option<&[u8]> = None;
        let mut at = 12;
        while at + 8 <= bytes.len() {
            let id = &bytes[at..at + 4];
            let len = u32_at(bytes, at + 4) as usize;
            let body = bytes
                .get(at + 8..at + 8 + len)
                .ok_or_else(|| format!("chunk {:?} runs past the end", ascii(id)))?;
            match id {
                b"fmt " => fmt = Some(body),
                b"data" => data = Some(body),
                _ => {}
            }
            // Chunks are padded to an even length.
            at += 8 + len + (len & 1);
        }
        let fmt = fmt.ok_or("no fmt chunk")?;
        let data = data.ok_or("no data chunk")?;
        if fmt.len() < 16 {
            return Err(format!("fmt chunk of {} bytes", fmt.len()));
        }
        let w = Wav {
            format: u16_at(fmt, 0),
            channels: u16_at(fmt, 2),
            rate: u32_at(fmt, 4),
            byte_rate: u32_at(fmt, 8),
            block_align: u16_at(fmt, 12),
            bits: u16_at(fmt, 14),
            data_len: data.len() as u32,
            samples: Vec::new(),
        };
        if w.format != 1 || w.bits != 16 {
            return Err(format!(
                "format {} with {} bits, want PCM (1) 16-bit",
                w.format, w.bits
            ));
        }
        if w.channels == 0
            || w.block_align != w.channels * 2
            || w.byte_rate != w.rate * u32::from(w.block_align)
        {
            return Err(format!("inconsistent fmt chunk: {w:?}"));
        }
        if data.len() % usize::from(w.block_align) != 0 {
            return Err(format!(
                "data length {} is not whole frames of {} bytes",
                data.len(),
                w.block_align
            ));
        }
        let ch = usize::from(w.channels);
        let mut samples = vec![Vec::with_capacity(data.len() / 2 / ch); ch];
        for (i, s) in data.chunks_exact(2).enumerate() {
            samples[i % ch].push(f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0);
        }
        Ok(Wav { samples, ..w })
    }

    pub fn read(path: &Path) -> Result<Wav, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn seconds(&self) -> f64 {
        self.samples.first().map_or(0.0, |c| c.len() as f64) / f64::from(self.rate)
    }

    /// A 16-bit PCM WAV of `channels` (equal lengths), for the detector's
    /// own tests.
    pub fn encode(rate: u32, channels: &[Vec<f32>]) -> Vec<u8> {
        let n = channels.first().map_or(0, Vec::len);
        let ch = channels.len() as u16;
        let data_len = (n * channels.len() * 2) as u32;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&ch.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(ch) * 2).to_le_bytes());
        out.extend_from_slice(&(ch * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..n {
            for c in channels {
                let v = (c[i].clamp(-1.0, 1.0) * 32767.0) as i16;
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }
}

/// `seconds` of a sine at `freq` Hz with peak `amplitude`.
pub fn sine(rate: u32, freq: f64, seconds: f64, amplitude: f32) -> Vec<f32> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .map(|i| {
            amplitude
                * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32
        })
        .collect()
}

/// The share (0.0..=1.0, about) of the energy of `x` at `freq` Hz.
pub fn share(x: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &v in x {
        let v = f64::from(v);
        energy += v * v;
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy == 0.0 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power / x.len() as f64 / energy
}

/// Windows quieter than this RMS (about -40 dBFS) count as silence.
pub const SILENCE_RMS: f64 = 0.01;
/// A window "is" a tone when this share of its energy is at that frequency...
pub const TONE_SHARE: f64 = 0.8;
/// ...and at most this share is at the other party's tone.
pub const CROSSTALK_SHARE: f64 = 0.05;

/// What one channel holds, window by window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneReport {
    pub windows: usize,
    /// Windows above [`SILENCE_RMS`].
    pub voiced: usize,
    /// Voiced windows that are mainly `want` with little `other`.
    pub tone: usize,
    /// Voiced windows that are mainly `other` (audio from the wrong party).
    pub other: usize,
    pub window_seconds: f64,
}

impl ToneReport {
    pub fn tone_seconds(&self) -> f64 {
        self.tone as f64 * self.window_seconds
    }

    /// Ok when the channel carries at least `min_seconds` of `want`, never
    /// `other`, and nothing much else while it is not silent.
    pub fn check(&self, min_seconds: f64) -> Result<(), String> {
        if self.tone_seconds() < min_seconds {
            return Err(format!(
                "only {:.2} s of the expected tone (want >= {min_seconds} s): {self:?}",
                self.tone_seconds()
            ));
        }
        if self.other > 0 {
            return Err(format!("the other party's tone is in it: {self:?}"));
        }
        // Window edges at the start, the end and around a lost packet may
        // smear; anything beyond a tenth is not the expected tone.
        if self.tone * 10 < self.voiced * 9 {
            return Err(format!("voiced but not the expected tone: {self:?}"));
        }
        Ok(())
    }
}

/// Scans `x` in 50 ms windows for the tone `want` (and `other`, the tone
/// that must not be there).
pub fn tones(x: &[f32], rate: u32, want: f64, other: f64) -> ToneReport {
    let n = (rate / 20) as usize;
    let mut r = ToneReport {
        windows: 0,
        voiced: 0,
        tone: 0,
        other: 0,
        window_seconds: n as f64 / f64::from(rate),
    };
    for w in x.chunks_exact(n) {
        r.windows += 1;
        let rms = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / n as f64).sqrt();
        if rms < SILENCE_RMS {
            continue;
        }
        r.voiced += 1;
        let (a, b) = (share(w, rate, want), share(w, rate, other));
        if a >= TONE_SHARE && b <= CROSSTALK_SHARE {
            r.tone += 1;
        } else if b >= TONE_SHARE {
            r.other += 1;
        }
    }
    r
}

/// G.711 mu-law (ITU-T G.711 section 3) of one 16-bit sample: sign, a
/// 3-bit segment (exponent) and a 4-bit step, inverted on the wire.
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut x = i32::from(sample);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(CLIP) + BIAS;
    let mut exp = 7;
    while exp > 0 && x & (0x80 << exp) == 0 {
        exp -= 1;
    }
    let mantissa = (x >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) | mantissa) as u8
}

/// The 16-bit sample a mu-law byte stands for.
pub fn ulaw_decode(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !byte;
    let exp = i32::from((u >> 4) & 7);
    let mantissa = i32::from(u & 0x0f);
    let x = (((mantissa << 3) + BIAS) << exp) - BIAS;
    (if u & 0x80 != 0 { -x } else { x }) as i16
}

/// A PCMU tone as an endless source of 20 ms RTP payloads.
pub struct PcmuTone {
    freq: f64,
    amplitude: f64,
    n: u64,
}

impl PcmuTone {
    pub fn new(freq: f64, amplitude: f64) -> Self {
        Self {
            freq,
            amplitude,
            n: 0,
        }
    }

    /// The next 160 samples (20 ms at 8 kHz), mu-law encoded.
    pub fn next_frame(&mut self) -> Vec<u8> {
        (0..160)
            .map(|_| {
                let t = self.n as f64 / 8000.0;
                self.n += 1;
                let v = self.amplitude * (2.0 * std::f64::consts::PI * self.freq * t).sin();
                ulaw_encode((v * 32767.0) as i16)
            })
            .collect()
    }
}

/// Decodes mu-law payloads to samples scaled like [`Wav::samples`].
pub fn ulaw_to_f32(payload: &[u8]) -> Vec<f32> {
    payload
        .iter()
        .map(|b| f32::from(ulaw_decode(*b)) / 32768.0)
        .collect()
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_law_matches_g711_reference_points_and_round_trips_within_a_step() {
        // G.711 table 2a: 0 is 0xFF, the largest magnitudes 0x80 / 0x00.
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        for s in (-32000i16..32000).step_by(97) {
            let back = i32::from(ulaw_decode(ulaw_encode(s)));
            let step = (i32::from(s).abs() / 16).max(8);
            assert!((back - i32::from(s)).abs() <= step, "{s} -> {back}");
        }
    }

    #[test]
    fn a_pcmu_tone_decodes_to_that_tone() {
        let mut t = PcmuTone::new(1500.0, 0.5);
        let x: Vec<f32> = (0..100)
            .flat_map(|_| ulaw_to_f32(&t.next_frame()))
            .collect();
        let r = tones(&x, 8000, 1500.0, 440.0);
        r.check(1.9).unwrap();
        assert!(tones(&x, 8000, 440.0, 1500.0).check(0.1).is_err());
    }
}
