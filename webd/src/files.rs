//! Streams audio and media files from the data dir with `Range` support.
//! A stored path is relative to the data dir; it is canonicalized and must
//! still lie inside the canonical data dir, so `..`, absolute paths and
//! symlinks pointing out can never be read.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;

use crate::http::error::{ApiError, ApiResult};

/// Resolves `rel` inside `data_dir`, or `None` when it escapes or is missing.
pub fn resolve(data_dir: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains("://") {
        return None;
    }
    let root = data_dir.canonicalize().ok()?;
    let p = root.join(rel.trim_start_matches('/')).canonicalize().ok()?;
    (p.starts_with(&root) && p.is_file()).then_some(p)
}

/// Content type by extension (audio first).
pub fn content_type(p: &Path) -> &'static str {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "oga") => "audio/ogg",
        Some("m4a") => "audio/mp4",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

/// Serves `rel` with `Range`/`If-Range` handled by tower-http's `ServeFile`.
pub async fn serve(data_dir: &Path, rel: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let path = resolve(data_dir, rel).ok_or(ApiError::NotFound)?;
    let ct = content_type(&path);
    let mut req = Request::builder().uri("/");
    for h in [header::RANGE, header::IF_RANGE, header::IF_MODIFIED_SINCE] {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    let req = req
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.into()))?;
    let res = tower_http::services::ServeFile::new(&path)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut res = res.map(Body::new).into_response();
    if res.status().is_success() {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_data_dir_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        std::fs::create_dir_all(data.join("voicemails")).unwrap();
        std::fs::write(data.join("voicemails/a.wav"), b"RIFF").unwrap();
        std::fs::write(d.path().join("secret.txt"), b"x").unwrap();
        assert!(resolve(&data, "voicemails/a.wav").is_some());
        assert!(resolve(&data, "../secret.txt").is_none());
        assert!(resolve(&data, "voicemails/../../secret.txt").is_none());
        assert!(resolve(&data, &d.path().join("secret.txt").display().to_string()).is_none());
        assert!(resolve(&data, "https://api.twilio.com/x.wav").is_none());
        std::os::unix::fs::symlink(d.path().join("secret.txt"), data.join("voicemails/l.wav"))
            .unwrap();
        assert!(resolve(&data, "voicemails/l.wav").is_none());
    }
}
