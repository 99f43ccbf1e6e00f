//! MMS media both ways.
//!
//! In: every `MediaUrlN` of an inbound message is downloaded into `media/`
//! (`<MessageSid>-<n>.<ext>`, written to a temp file then renamed, so a
//! duplicate webhook rewrites the same file). Twilio may enforce HTTP Basic
//! auth on media URLs (CONTRACT.md §2.7, [S19]): the first GET goes without
//! credentials, and on 401 it is repeated with the account SID and token, but
//! only towards the host of `twilio.api_base` so a forged URL cannot collect
//! them. Redirects (to the short-lived storage URL) are followed.
//!
//! Out: Twilio fetches the files of an outgoing MMS from
//! `<system.public_url>/api/webhooks/media/<token>`: 32 random bytes, only
//! their SHA-256 stored, valid for `sms.media_url_ttl` seconds.

use std::path::{Component, Path};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::client::Credentials;

/// One HTTP client for media downloads (redirects followed; reqwest drops
/// the Authorization header when a redirect leaves the host).
fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

/// Largest media file accepted either way (Twilio's MMS limit is 5 MB).
pub const MAX_MEDIA_BYTES: usize = 20 * 1024 * 1024;

/// One entry of `messages.media_urls`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaItem {
    /// Relative to the data dir (`media/...`); empty when the download failed.
    pub path: String,
    pub content_type: String,
    /// Why the download failed (inbound only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Twilio's URL of a media item that could not be downloaded, so it can
    /// still be fetched by hand (inbound only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Time all media downloads of one webhook may take together: Twilio gives
/// up on a webhook after 15 s.
pub const WEBHOOK_MEDIA_BUDGET: Duration = Duration::from_secs(12);

/// The entry for an item that could not be downloaded.
pub fn failed(url: &str, declared_type: &str, error: String) -> MediaItem {
    MediaItem {
        path: String::new(),
        content_type: declared_type.to_owned(),
        error: Some(error),
        url: Some(url.to_owned()),
    }
}

/// Stores downloaded media at `rel` in the data dir: what callers sent is
/// readable by GoSIP alone (0600 in a 0700 folder), whatever the umask.
pub(crate) async fn store(data_dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    proto::db::write_private_atomic(&data_dir.join(rel), bytes).await
}

/// Downloads item `n` of message `sid` from `url`; tries three times.
pub async fn download(
    ctx: &AppState,
    sid: &str,
    n: usize,
    url: &str,
    declared_type: &str,
) -> MediaItem {
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
        match fetch(ctx, url).await {
            Ok((bytes, ctype)) => {
                let ctype = if ctype.is_empty() {
                    declared_type.to_owned()
                } else {
                    ctype
                };
                let name = format!("{}-{n}.{}", safe_name(sid), extension_for(&ctype));
                let rel = format!("media/{name}");
                match store(&ctx.data_dir, &rel, &bytes).await {
                    Ok(()) => {
                        return MediaItem {
                            path: rel,
                            content_type: ctype,
                            error: None,
                            url: None,
                        };
                    }
                    Err(e) => last = format!("cannot store media: {e}"),
                }
            }
            Err(e) => last = e,
        }
    }
    tracing::warn!(message_sid = sid, n, error = %last, "media download failed");
    failed(url, declared_type, last)
}

async fn fetch(ctx: &AppState, url: &str) -> Result<(Vec<u8>, String), String> {
    let timeout = Duration::from_secs(10);
    let resp = http()
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("media GET failed: {e}"))?;
    let resp = if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        let creds = Credentials::from_settings(&ctx.settings.get());
        if !same_host(url, &creds.api_base) {
            return Err("media host asks for credentials but is not the Twilio API host".into());
        }
        http()
            .get(url)
            .basic_auth(&creds.account_sid, Some(&creds.auth_token))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("media GET failed: {e}"))?
    } else {
        resp
    };
    if !resp.status().is_success() {
        return Err(format!("media GET answered {}", resp.status()));
    }
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .unwrap_or_default();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("media body failed: {e}"))?;
    if bytes.len() > MAX_MEDIA_BYTES {
        return Err(format!("media too large: {} bytes", bytes.len()));
    }
    Ok((bytes.to_vec(), ctype))
}

fn same_host(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => {
            a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

fn safe_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

/// File extension for a media type (`bin` when unknown).
pub fn extension_for(content_type: &str) -> &'static str {
    match content_type.to_ascii_lowercase().as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/tiff" => "tiff",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "video/quicktime" => "mov",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/amr" => "amr",
        "audio/ogg" => "ogg",
        "audio/mp4" => "m4a",
        "audio/wav" | "audio/x-wav" => "wav",
        "text/vcard" | "text/x-vcard" => "vcf",
        "text/calendar" => "ics",
        "text/plain" => "txt",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

/// Media type for a stored file, from its extension.
pub fn content_type_for(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "tif" | "tiff" => "image/tiff",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "amr" => "audio/amr",
        "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "vcf" => "text/vcard",
        "ics" => "text/calendar",
        "txt" => "text/plain",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Whether `rel` is a plain path inside `media/` (no `..`, not absolute).
pub fn is_media_path(rel: &str) -> bool {
    let p = Path::new(rel);
    let mut comps = p.components();
    matches!(comps.next(), Some(Component::Normal(c)) if c == "media")
        && comps.clone().next().is_some()
        && comps.all(|c| matches!(c, Component::Normal(_)))
}

/// Creates a URL Twilio can fetch `item` from until the TTL passes.
pub async fn issue_url(
    ctx: &AppState,
    message_id: i64,
    item: &MediaItem,
) -> Result<String, sqlx::Error> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let ttl = ctx.settings.get().u64("sms.media_url_ttl").max(60);
    let expires = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
    sqlx::query(
        "INSERT INTO sms_media_tokens (token_hash, message_id, path, content_type, expires_at, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(hash(&token))
    .bind(message_id)
    .bind(&item.path)
    .bind(&item.content_type)
    .bind(proto::time::fmt(expires))
    .bind(proto::time::now())
    .execute(&ctx.pool)
    .await?;
    // Drop long-expired tokens now and then.
    sqlx::query("DELETE FROM sms_media_tokens WHERE expires_at < ?")
        .bind(proto::time::fmt(
            chrono::Utc::now() - chrono::Duration::days(1),
        ))
        .execute(&ctx.pool)
        .await?;
    Ok(format!(
        "{}/api/webhooks/media/{token}",
        super::public_url(ctx)
    ))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `GET /api/webhooks/media/{token}`: the file, or 404 for an unknown or
/// expired token (the same answer, so tokens cannot be probed).
pub async fn serve(State(ctx): State<AppState>, UrlPath(token): UrlPath<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    // The token's message must still hold that file: after a restore the
    // row may name a message that is gone or is another one now.
    let row: Option<(String, String)> = match sqlx::query_as(
        "SELECT t.path, t.content_type FROM sms_media_tokens t JOIN messages m ON m.id = t.message_id \
         WHERE t.token_hash = ? AND t.expires_at > ? \
         AND EXISTS (SELECT 1 FROM json_each(m.media_urls) j WHERE json_extract(j.value, '$.path') = t.path)",
    )
    .bind(hash(&token.to_ascii_lowercase()))
    .bind(proto::time::now())
    .fetch_optional(&ctx.pool)
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "media token lookup failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some((path, ctype)) = row else {
        return not_found();
    };
    if !is_media_path(&path) {
        return not_found();
    }
    match tokio::fs::read(ctx.data_dir.join(&path)).await {
        Ok(bytes) => {
            let mut resp = bytes.into_response();
            if let Ok(v) = HeaderValue::from_str(&ctype) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_media_are_accepted() {
        assert!(is_media_path("media/a.jpg"));
        assert!(is_media_path("media/up/a.jpg"));
        assert!(!is_media_path("media"));
        assert!(!is_media_path("media/../gosip.db"));
        assert!(!is_media_path("/etc/passwd"));
        assert!(!is_media_path("recordings/a.wav"));
        assert!(!is_media_path("./media/a.jpg"));
    }

    #[test]
    fn types_and_extensions_round_trip() {
        for t in [
            "image/jpeg",
            "image/png",
            "image/gif",
            "video/mp4",
            "application/pdf",
        ] {
            assert_eq!(content_type_for(&format!("x.{}", extension_for(t))), t);
        }
        assert_eq!(extension_for("application/x-weird"), "bin");
    }

    #[test]
    fn credentials_go_only_to_the_api_host() {
        assert!(same_host(
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
            "https://api.twilio.com"
        ));
        assert!(!same_host(
            "https://evil.example/x",
            "https://api.twilio.com"
        ));
        assert!(!same_host("http://127.0.0.1:9/x", "http://127.0.0.1:8/"));
    }
}
