//! Recorded prompts: an admin uploads a WAV or MP3 for a menu's greeting (or
//! an announcement); the route then names it `prompt:<name>` and Twilio
//! fetches it from twiliod's `/api/webhooks/voice/prompt/<name>` while the
//! call plays. The files live in `prompts/` of the data folder, 0600, under
//! a random name the uploader cannot choose.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::accounts::Admin;
use crate::http::error::{ApiError, ApiResult, ErrorBody};

/// The largest prompt accepted (a few minutes of 8 kHz audio, or an MP3).
pub const MAX_PROMPT: usize = 5 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct Prompt {
    /// The stored file's name, e.g. `3f9c...e1.wav`.
    pub name: String,
    /// What a route's `audio` field takes to play it: `prompt:<name>`.
    pub audio: String,
}

/// What the bytes really are: a RIFF/WAVE file or an MP3 (an ID3 tag or an
/// MPEG audio frame header); whatever the upload claimed.
pub fn sniff_audio(data: &[u8]) -> Option<&'static str> {
    if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE" {
        Some("wav")
    } else if data.starts_with(b"ID3")
        || (data.len() >= 2 && data[0] == 0xFF && data[1] & 0xE0 == 0xE0)
    {
        Some("mp3")
    } else {
        None
    }
}

/// Upload a recorded prompt (multipart, field `file`): WAV or MP3, at most
/// 5 MB.
#[utoipa::path(post, path = "/api/prompts", tag = "routes",
    request_body(content_type = "multipart/form-data", description = "field `file`: a WAV or MP3 recording"),
    responses((status = 201, body = Prompt), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(st): State<AppState>,
    _a: Admin,
    req: Request,
) -> ApiResult<(StatusCode, Json<Prompt>)> {
    let data = read_file(&st, req, "choose a WAV or MP3 recording").await?;
    if data.len() > MAX_PROMPT {
        return Err(ApiError::field("file", "must be at most 5 MB"));
    }
    let Some(ext) = sniff_audio(&data) else {
        return Err(ApiError::field(
            "file",
            "is not a WAV or MP3 recording (save it as .wav or .mp3 and try again)",
        ));
    };
    let name = format!("{}.{ext}", hex_name());
    let rel = format!("prompts/{name}");
    proto::db::write_private_atomic(&st.data_dir.join(&rel), &data)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    tracing::info!(prompt = %name, bytes = data.len(), "prompt uploaded");
    Ok((
        StatusCode::CREATED,
        Json(Prompt {
            audio: format!("{}{name}", proto::routing::PROMPT_PREFIX),
            name,
        }),
    ))
}

/// The field `file` of a multipart upload (a JSON field error naming
/// `file` for anything else, `missing` when it is absent or empty).
pub async fn read_file(st: &AppState, req: Request, missing: &str) -> ApiResult<axum::body::Bytes> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Err(ApiError::field(
            "file",
            "send the recording as multipart/form-data in the field \"file\"",
        ));
    }
    // A malformed body is the sender's fault: the API's JSON error, not
    // axum's plain-text 400.
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|e| ApiError::field("file", e.body_text()))?;
    let mut data = None;
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| ApiError::field("file", e.body_text()))?
    {
        if field.name() == Some("file") {
            let bytes = field
                .bytes()
                .await
                .map_err(|e| ApiError::field("file", e.body_text()))?;
            data = Some(bytes);
        }
    }
    data.filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::field("file", missing))
}

/// 32 random hex digits.
fn hex_name() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wav_and_mp3_bytes_are_recordings() {
        assert_eq!(sniff_audio(b"RIFF\x24\0\0\0WAVEfmt "), Some("wav"));
        assert_eq!(sniff_audio(b"ID3\x04\0\0\0\0\0\0"), Some("mp3"));
        assert_eq!(sniff_audio(&[0xFF, 0xFB, 0x90, 0x00]), Some("mp3"));
        assert_eq!(sniff_audio(b"#!/bin/sh\nrm -rf /"), None);
        assert_eq!(sniff_audio(b"RIFF\0\0\0\0AVI "), None);
        assert_eq!(sniff_audio(b""), None);
    }
}
