//! The length of a PCM WAV from its header, for the voicemails mediad
//! records (8 kHz mono 16-bit, but any PCM layout is measured right). Pure:
//! the first bytes of the file and its size in, a length out.
//!
//! Only the RIFF chunks are walked (`fmt ` for the byte rate, `data` for the
//! size); the samples are never read, so a message of minutes costs no more
//! than one of seconds.

use std::time::Duration;

/// How much of a file [`length`] needs: the chunks before `data` (`fmt `,
/// perhaps a `LIST` of tags) fit in far less.
pub const HEAD_LEN: usize = 4096;

/// Why a file is not a WAV whose length can be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("no `fmt ` chunk before the samples")]
    NoFormat,
    #[error("not PCM (format {0})")]
    NotPcm(u16),
    #[error("no `data` chunk in the first {HEAD_LEN} bytes")]
    NoData,
}

/// PCM and WAVE_FORMAT_EXTENSIBLE (which wraps PCM for more channels).
const PCM: u16 = 1;
const EXTENSIBLE: u16 = 0xFFFE;

/// The playing time of the WAV whose first bytes are `head` and whose whole
/// size is `file_len`.
pub fn length(head: &[u8], file_len: u64) -> Result<Duration, WavError> {
    if head.len() < 12 || &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut at = 12usize;
    let mut byte_rate = None;
    while let Some(chunk) = head.get(at..at.saturating_add(8)) {
        let size = u32_at(chunk, 4);
        let body = at + 8;
        match &chunk[..4] {
            b"fmt " if size >= 16 => byte_rate = Some(format_byte_rate(head.get(body..body + 16))?),
            b"data" => {
                let rate = byte_rate.ok_or(WavError::NoFormat)?;
                let on_disk = file_len.saturating_sub(body as u64);
                return Ok(play_time(data_len(size, on_disk), rate));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body
            .saturating_add(size as usize)
            .saturating_add(size as usize & 1);
    }
    Err(WavError::NoData)
}

/// Bytes per second from the first 16 bytes of a `fmt ` chunk's body.
fn format_byte_rate(body: Option<&[u8]>) -> Result<u64, WavError> {
    let body = body.ok_or(WavError::NoFormat)?;
    let format = u16::from_le_bytes([body[0], body[1]]);
    if format != PCM && format != EXTENSIBLE {
        return Err(WavError::NotPcm(format));
    }
    let channels = u64::from(u16::from_le_bytes([body[2], body[3]]));
    let rate = u64::from(u32_at(body, 4));
    let bits = u64::from(u16::from_le_bytes([body[14], body[15]]));
    // Computed rather than read from the byte-rate field, which some
    // writers leave wrong; a zero anywhere is no audio at all.
    let per_sec = channels * rate * bits.div_ceil(8);
    if per_sec == 0 {
        return Err(WavError::NoFormat);
    }
    Ok(per_sec)
}

/// The sample bytes: the declared size, unless the writer never filled it
/// in (0 or 0xFFFFFFFF, as a recorder that stopped abruptly leaves it) or
/// it claims more than the file holds; then what is on disk, which is what
/// the caller said.
fn data_len(declared: u32, on_disk: u64) -> u64 {
    match declared {
        0 | u32::MAX => on_disk,
        n => u64::from(n).min(on_disk),
    }
}

fn play_time(bytes: u64, per_sec: u64) -> Duration {
    let whole = bytes / per_sec;
    let nanos = (bytes % per_sec) * 1_000_000_000 / per_sec;
    Duration::new(whole, nanos as u32)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCM WAV of `secs` seconds of silence at `rate` Hz, `channels`
    /// channels, 16-bit, with `extra` chunks between `fmt ` and `data`.
    fn wav(rate: u32, channels: u16, secs: f64, extra: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let block = channels * 2;
        let data_len = (f64::from(rate) * secs) as u32 * u32::from(block);
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&0u32.to_le_bytes()); // not read
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&PCM.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        for (id, body) in extra {
            out.extend_from_slice(*id);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            if body.len() % 2 == 1 {
                out.push(0);
            }
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.resize(out.len() + data_len as usize, 0);
        out
    }

    fn len_of(file: &[u8]) -> Result<Duration, WavError> {
        length(&file[..file.len().min(HEAD_LEN)], file.len() as u64)
    }

    #[test]
    fn the_length_comes_from_the_data_size_and_the_format() {
        assert_eq!(len_of(&wav(8000, 1, 4.0, &[])), Ok(Duration::from_secs(4)));
        assert_eq!(
            len_of(&wav(8000, 1, 2.5, &[])),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(len_of(&wav(16000, 2, 3.0, &[])), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn chunks_before_the_samples_are_skipped_odd_ones_with_their_pad_byte() {
        let w = wav(8000, 1, 5.0, &[(b"LIST", b"INFOabc"), (b"fact", b"1234")]);
        assert_eq!(len_of(&w), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn a_size_never_filled_in_or_too_large_counts_what_is_on_disk() {
        let mut w = wav(8000, 1, 3.0, &[]);
        for declared in [0u32, u32::MAX, 1_000_000] {
            w[40..44].copy_from_slice(&declared.to_le_bytes());
            assert_eq!(len_of(&w), Ok(Duration::from_secs(3)), "{declared}");
        }
        // A file cut short: only what is there plays.
        w[40..44].copy_from_slice(&48_000u32.to_le_bytes());
        assert_eq!(len_of(&w), Ok(Duration::from_secs(3)));
        assert_eq!(length(&w[..44], 44 + 16_000), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(len_of(b""), Err(WavError::NotWave));
        assert_eq!(len_of(b"ID3\x04\0\0\0\0\0\0\0\0"), Err(WavError::NotWave));
        let w = wav(8000, 1, 1.0, &[]);
        assert_eq!(len_of(&w[..36]), Err(WavError::NoData));
        let mut alaw = w.clone();
        alaw[20..22].copy_from_slice(&6u16.to_le_bytes());
        assert_eq!(len_of(&alaw), Err(WavError::NotPcm(6)));
        let mut silent = w.clone();
        silent[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(len_of(&silent), Err(WavError::NoFormat));
        // `data` before `fmt `.
        let mut swapped = w[..12].to_vec();
        swapped.extend_from_slice(b"data\x02\0\0\0\0\0");
        assert_eq!(len_of(&swapped), Err(WavError::NoFormat));
    }
}
