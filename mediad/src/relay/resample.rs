//! Sample-rate conversion of whole clips (prompts, speech, music files) to
//! the 8 kHz of G.711, by band-limited interpolation: each output sample is
//! the input convolved with a windowed sinc centred on the output instant.
//!
//! Going down from 22.05 or 44.1 kHz, everything above the new Nyquist
//! frequency (4 kHz) must be removed first, or it folds back into the
//! speech band as audible aliasing; picking every n-th sample would do just
//! that. The sinc is therefore scaled to the lower of the two Nyquist
//! frequencies, times [`ROLLOFF`] so the window's transition band ends
//! before 4 kHz rather than straddling it. Telephone audio only needs
//! 300-3400 Hz (ITU-T G.712), which stays in the passband.

use std::f64::consts::PI;

/// The cutoff as a fraction of the lower Nyquist frequency: 3.6 kHz when
/// the output is 8 kHz.
const ROLLOFF: f64 = 0.9;
/// Zero crossings of the sinc on each side of its centre. More is a
/// steeper transition band: with 32 and a Blackman window it is about
/// 0.6 kHz wide at 8 kHz output, stopband below -70 dB.
const ZEROS: usize = 32;
/// Table entries per zero crossing; the kernel is read with linear
/// interpolation between them.
const RESOLUTION: usize = 512;

/// Converts `input` sampled at `from` Hz to `to` Hz. The output holds
/// `ceil(len * to / from)` samples; its gain is 1 (a DC input stays put).
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || from == 0 || to == 0 || input.is_empty() {
        return input.to_vec();
    }
    let kernel = Kernel::new();
    // Kernel argument per input sample: 1 when upsampling (the input's own
    // band limit), to/from when downsampling (the output's).
    let scale = (f64::from(to) / f64::from(from)).min(1.0) * ROLLOFF;
    let reach = (ZEROS as f64 / scale).ceil() as i64;
    let (from, to) = (u64::from(from), u64::from(to));
    let out_len = (input.len() as u64 * to).div_ceil(from);
    let mut out = Vec::with_capacity(out_len as usize);
    for n in 0..out_len {
        // The output instant in input samples, kept exact as centre + frac.
        let pos = n * from;
        let centre = (pos / to) as i64;
        let frac = (pos % to) as f64 / to as f64;
        let (mut acc, mut norm) = (0.0f64, 0.0f64);
        for k in centre - reach + 1..=centre + reach {
            let w = kernel.at((k - centre) as f64 - frac, scale);
            norm += w;
            if let Some(&x) = usize::try_from(k).ok().and_then(|k| input.get(k)) {
                acc += f64::from(x) * w;
            }
        }
        // Normalising by the weights' sum keeps the gain exactly 1 whatever
        // the fractional phase; samples beyond the ends count as silence.
        let y = if norm > 0.0 { acc / norm } else { 0.0 };
        out.push(y.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16);
    }
    out
}

/// One side of the windowed sinc, tabulated over `0..=ZEROS` crossings.
struct Kernel {
    table: Vec<f64>,
}

impl Kernel {
    fn new() -> Self {
        let n = ZEROS * RESOLUTION;
        let table = (0..=n)
            .map(|i| {
                let x = i as f64 / RESOLUTION as f64;
                sinc(x) * blackman(x / ZEROS as f64)
            })
            .collect();
        Self { table }
    }

    /// The kernel at `d` input samples from the centre, for `scale`.
    fn at(&self, d: f64, scale: f64) -> f64 {
        let x = (d * scale).abs() * RESOLUTION as f64;
        let i = x.floor() as usize;
        match (self.table.get(i), self.table.get(i + 1)) {
            (Some(a), Some(b)) => a + (b - a) * (x - i as f64),
            (Some(a), None) => *a,
            _ => 0.0,
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// The Blackman window over `-1..=1` (0 at the ends, 1 in the middle).
fn blackman(x: f64) -> f64 {
    0.42 + 0.5 * (PI * x).cos() + 0.08 * (2.0 * PI * x).cos()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Power of `freq` in `samples` at `rate` (Goertzel).
    pub(crate) fn goertzel(samples: &[i16], freq: f64, rate: f64) -> f64 {
        let k = 2.0 * (2.0 * PI * freq / rate).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s = f64::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    }

    pub(crate) fn tone(freq: f64, rate: u32, secs: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn a_440_hz_tone_at_22050_stays_at_440_hz_and_its_level_at_8000() {
        let input = tone(440.0, 22050, 1.0, 10_000.0);
        let out = resample(&input, 22050, 8000);
        assert_eq!(out.len(), 8000);
        // Away from the edges, where the kernel runs past the clip.
        let mid = &out[400..7600];
        let at = |f| goertzel(mid, f, 8000.0);
        let p440 = at(440.0);
        // 440 * 22050 / 8000: where the tone would land if the rates were
        // mixed up; 160 Hz: the inverse mistake.
        for wrong in [400.0, 480.0, 1212.75, 159.6] {
            assert!(p440 > 1000.0 * at(wrong), "440 Hz vs {wrong} Hz");
        }
        let level = rms(mid) / (10_000.0 / 2f64.sqrt());
        assert!((0.98..1.02).contains(&level), "gain {level}");
    }

    #[test]
    fn content_above_4_khz_is_filtered_out_not_folded_into_the_speech_band() {
        // 6 kHz at 22.05 kHz would alias to 2 kHz at 8 kHz without the
        // low-pass.
        let out = resample(&tone(6000.0, 22050, 1.0, 10_000.0), 22050, 8000);
        let reference = resample(&tone(2000.0, 22050, 1.0, 10_000.0), 22050, 8000);
        let alias = goertzel(&out[400..7600], 2000.0, 8000.0);
        let pass = goertzel(&reference[400..7600], 2000.0, 8000.0);
        // Power ratio below -60 dB.
        assert!(alias * 1e6 < pass, "alias {alias:e} vs {pass:e}");
    }

    #[test]
    fn upsampling_and_other_rates_keep_frequency_and_length() {
        for (rate, len) in [
            (44_100u32, 8000usize),
            (48_000, 8000),
            (11_025, 8000),
            (4000, 8000),
        ] {
            let out = resample(&tone(440.0, rate, 1.0, 8000.0), rate, 8000);
            assert_eq!(out.len(), len, "{rate} Hz");
            let mid = &out[400..7600];
            let p440 = goertzel(mid, 440.0, 8000.0);
            assert!(p440 > 1000.0 * goertzel(mid, 500.0, 8000.0), "{rate} Hz");
        }
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), vec![1, 2, 3]);
        assert_eq!(resample(&[], 22050, 8000), Vec::<i16>::new());
        assert_eq!(resample(&[7; 441], 22050, 8000).len(), 160);
    }

    #[test]
    fn a_constant_stays_constant_even_at_full_scale() {
        let out = resample(&[12_345; 2205], 22050, 8000);
        assert!(
            out[50..750].iter().all(|&x| x == 12_345),
            "{:?}",
            &out[50..60]
        );
        let out = resample(&[i16::MAX; 2205], 22050, 8000);
        assert!(out[50..750].iter().all(|&x| x > 32_000));
    }
}
