//! Hold music: what a caller hears while the other side has them on hold.
//! GoSIP plays its own melody until an admin uploads a recording; mediad
//! reads the upload ([`proto::files::HOLD_MUSIC`]) each time a call is put
//! on hold, resampling it to 8 kHz, so a new upload plays at the next hold
//! without a restart.

use axum::Json;
use axum::extract::{Request, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody};

/// The largest upload: about 5 minutes of 8 kHz mono, or 30 s of CD-quality
/// stereo (webd's request limit is 8 MB).
pub const MAX_HOLD_MUSIC: usize = 5 * 1024 * 1024;
/// Shorter than this sounds like a stutter when looped.
const MIN_SECONDS: f64 = 1.0;

/// Which hold music plays.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct HoldMusic {
    /// true: the admin's upload; false: GoSIP's own melody.
    pub custom: bool,
    /// The upload's length, rate and channels (0 for the melody).
    pub seconds: f64,
    pub sample_rate: u32,
    pub channels: u16,
}

impl HoldMusic {
    fn builtin() -> Self {
        Self {
            custom: false,
            seconds: 0.0,
            sample_rate: 0,
            channels: 0,
        }
    }
}

/// The admin's upload.
impl From<WavInfo> for HoldMusic {
    fn from(w: WavInfo) -> Self {
        Self {
            custom: true,
            seconds: w.seconds,
            sample_rate: w.sample_rate,
            channels: w.channels,
        }
    }
}

/// What a WAV upload holds, once it passed [`check_wav`].
#[derive(Debug, PartialEq)]
pub struct WavInfo {
    pub sample_rate: u32,
    pub channels: u16,
    pub seconds: f64,
}

const NOT_PCM: &str = "must be a WAV file of 16-bit PCM audio (MP3 and other formats: export or convert it to WAV, 16-bit PCM, and try again)";

/// Why an upload is not a WAV mediad can play, as the field error says it
/// ("must be a WAV file of 16-bit PCM audio ...").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadWav(pub String);

/// Checks that `data` is a WAV mediad can play: RIFF/WAVE with a `fmt `
/// chunk of 16-bit PCM (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM
/// subformat), mono or stereo at 8 to 48 kHz, and a `data` chunk of at least
/// a second that the file really holds.
pub fn check_wav(data: &[u8]) -> Result<WavInfo, BadWav> {
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err(BadWav(NOT_PCM.into()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let mut fmt = None;
    let mut pos = 12;
    while pos + 8 <= data.len() {
        let (id, len) = (&data[pos..pos + 4], u32_at(pos + 4) as usize);
        let body = pos + 8;
        if id == b"fmt " {
            if len < 16 || body + len > data.len() {
                return Err(BadWav("has a broken format header".into()));
            }
            let tag = u16_at(body);
            let pcm = tag == 1 || (tag == 0xFFFE && len >= 26 && u16_at(body + 24) == 1);
            if !pcm || u16_at(body + 14) != 16 {
                return Err(BadWav(NOT_PCM.into()));
            }
            fmt = Some((u16_at(body + 2), u32_at(body + 4)));
        } else if id == b"data" {
            let Some((channels, rate)) = fmt else {
                return Err(BadWav("has its audio before its format header".into()));
            };
            if !(1..=2).contains(&channels) {
                return Err(BadWav(format!(
                    "has {channels} channels: use mono or stereo"
                )));
            }
            if !(8000..=48_000).contains(&rate) {
                return Err(BadWav(format!(
                    "is sampled at {rate} Hz: use 8000 to 48000 Hz"
                )));
            }
            if body + len > data.len() {
                return Err(BadWav(
                    "is cut short: its audio is shorter than its header says".into(),
                ));
            }
            let seconds = len as f64 / (f64::from(rate) * f64::from(channels) * 2.0);
            if seconds < MIN_SECONDS {
                return Err(BadWav("must be at least 1 second long".into()));
            }
            return Ok(WavInfo {
                sample_rate: rate,
                channels,
                seconds,
            });
        }
        // Chunks are padded to an even length (RIFF).
        pos = body.saturating_add(len).saturating_add(len & 1);
    }
    Err(BadWav("has no audio in it".into()))
}

fn path(st: &AppState) -> std::path::PathBuf {
    st.data_dir.join(proto::files::HOLD_MUSIC)
}

/// Which hold music plays.
#[utoipa::path(get, path = "/api/system/hold-music", tag = "system",
    responses((status = 200, body = HoldMusic), (status = 403, body = ErrorBody)))]
pub async fn get(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<HoldMusic>> {
    let Ok(data) = tokio::fs::read(path(&st)).await else {
        return Ok(Json(HoldMusic::builtin()));
    };
    Ok(Json(
        check_wav(&data).map_or_else(|_| HoldMusic::builtin(), HoldMusic::from),
    ))
}

/// Replace the hold music (multipart, field `file`): a WAV of 16-bit PCM,
/// mono or stereo, 8 to 48 kHz, 1 s or longer, at most 5 MB. The next call
/// put on hold hears it.
#[utoipa::path(put, path = "/api/system/hold-music", tag = "system",
    request_body(content_type = "multipart/form-data", description = "field `file`: a 16-bit PCM WAV recording"),
    responses((status = 200, body = HoldMusic), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(st): State<AppState>,
    _a: Admin,
    req: Request,
) -> ApiResult<Json<HoldMusic>> {
    let data = super::prompts::read_file(&st, req, "choose a WAV recording").await?;
    if data.len() > MAX_HOLD_MUSIC {
        return Err(ApiError::field(
            "file",
            "must be at most 5 MB (about 5 minutes of 8 kHz mono, or 30 s of CD-quality stereo)",
        ));
    }
    let w = check_wav(&data).map_err(|m| ApiError::field("file", m.0))?;
    proto::db::write_private_atomic(&path(&st), &data)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(
        bytes = data.len(),
        seconds = w.seconds,
        "hold music uploaded"
    );
    Ok(Json(HoldMusic::from(w)))
}

/// Go back to GoSIP's own melody.
#[utoipa::path(delete, path = "/api/system/hold-music", tag = "system",
    responses((status = 200, body = HoldMusic), (status = 403, body = ErrorBody)))]
pub async fn delete(State(st): State<AppState>, _a: Admin) -> ApiResult<Json<HoldMusic>> {
    match tokio::fs::remove_file(path(&st)).await {
        Ok(()) => tracing::info!("hold music back to the built-in melody"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ApiError::Internal(e.into())),
    }
    Ok(Json(HoldMusic::builtin()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV header and `secs` of silence.
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, secs: f64) -> Vec<u8> {
        let len = (f64::from(rate) * f64::from(channels) * 2.0 * secs) as u32;
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        // An odd-sized chunk first: the parser must skip its pad byte.
        v.extend_from_slice(b"LIST\x03\0\0\0abc\0");
        v.extend_from_slice(b"fmt \x10\0\0\0");
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        v.extend_from_slice(&(channels * 2).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&len.to_le_bytes());
        v.resize(v.len() + len as usize, 0);
        v
    }

    proptest::proptest! {
        /// An upload is the attacker's bytes: any of them, and any chunk
        /// sizes in a real header, get an answer, never a panic.
        #[test]
        fn any_bytes_get_an_answer(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            len in proptest::prelude::any::<u32>(),
            cut in 0usize..80,
        ) {
            let _ = check_wav(&data);
            let mut v = wav(1, 1, 8000, 16, 1.0);
            // The size field of the LIST, fmt and data chunks.
            let at = [16, 28, 52][cut % 3];
            v[at..at + 4].copy_from_slice(&len.to_le_bytes());
            let _ = check_wav(&v);
            let _ = check_wav(&v[..cut.min(v.len())]);
        }
    }

    #[test]
    fn a_16_bit_pcm_wav_of_a_second_or_more_passes_and_anything_else_is_named() {
        let ok = check_wav(&wav(1, 2, 44_100, 16, 2.0)).unwrap();
        assert_eq!((ok.sample_rate, ok.channels), (44_100, 2));
        assert!((ok.seconds - 2.0).abs() < 1e-6);
        assert!(check_wav(&wav(1, 1, 8000, 16, 1.0)).is_ok());
        let err = |v: &[u8]| check_wav(v).unwrap_err().0;
        assert!(err(&wav(1, 1, 8000, 8, 2.0)).contains("16-bit PCM"));
        assert!(
            err(&wav(3, 1, 8000, 16, 2.0)).contains("16-bit PCM"),
            "float"
        );
        assert!(err(&wav(1, 6, 8000, 16, 2.0)).contains("6 channels"));
        assert!(err(&wav(1, 1, 96_000, 16, 2.0)).contains("96000 Hz"));
        assert!(err(&wav(1, 1, 8000, 16, 0.5)).contains("at least 1 second"));
        let full = wav(1, 1, 8000, 16, 2.0);
        assert!(err(&full[..full.len() - 100]).contains("cut short"));
        assert!(err(b"ID3\x04\0\0\0\0\0\0 an mp3").contains("16-bit PCM"));
        assert!(err(&full[..60]).contains("cut short"));
        assert!(err(&full[..44]).contains("broken format"));
        assert!(err(&full[..30]).contains("no audio"));
    }
}
