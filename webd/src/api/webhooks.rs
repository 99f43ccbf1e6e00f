//! `/api/webhooks/*`: forwarded byte for byte to twiliod's webhook server
//! (method, path and query, body, headers including `X-Twilio-Signature`),
//! so one public port serves the UI, the API and Twilio. No session: Twilio
//! authenticates with its signature, which twiliod checks against
//! `system.public_url`. `X-Forwarded-For` carries the client address (taken
//! from the proxy only when the peer is `system.trusted_proxy`);
//! `X-Forwarded-Proto`/`-Host` are passed on from a trusted proxy, else set
//! from what webd saw.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::accounts;
use crate::http::error::{ApiError, ApiResult, ErrorBody};

/// Largest webhook body accepted (Twilio sends small forms).
pub const MAX_BODY: usize = 1024 * 1024;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

macro_rules! webhook_doc {
    ($name:ident, $path:literal) => {
        #[doc = concat!("Twilio webhook `", $path, "`, forwarded to twiliod (signature checked there).")]
        #[utoipa::path(post, path = $path, tag = "webhooks",
            request_body(content = std::collections::HashMap<String, String>, content_type = "application/x-www-form-urlencoded"),
            responses((status = 200, content_type = "text/xml", description = "TwiML or empty"),
                      (status = 403, description = "bad signature"), (status = 503, body = ErrorBody)))]
        pub async fn $name(
            st: State<AppState>,
            ext: axum::http::Extensions,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> ApiResult<Response> {
            forward(st, ext, method, uri, headers, body).await
        }
    };
}

webhook_doc!(voice_incoming, "/api/webhooks/voice/incoming");
webhook_doc!(voice_status, "/api/webhooks/voice/status");
webhook_doc!(sms_incoming, "/api/webhooks/sms/incoming");
webhook_doc!(sms_status, "/api/webhooks/sms/status");
webhook_doc!(recording, "/api/webhooks/recording");
webhook_doc!(transcription, "/api/webhooks/transcription");

/// Forwards any request under `/api/webhooks/`.
pub async fn forward(
    State(st): State<AppState>,
    ext: axum::http::Extensions,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://{}{}", st.cfg.twiliod_http, pq);
    let client_ip = accounts::client_ip(&ext, &headers, &st);
    let peer_trusted = !client_ip.is_empty()
        && ext
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .is_some_and(|c| c.0.ip().to_string() != client_ip);
    let mut out = reqwest::header::HeaderMap::new();
    for (k, v) in &headers {
        let n = k.as_str();
        if HOP_BY_HOP.contains(&n) || n.starts_with("x-forwarded-") || n == "forwarded" {
            continue;
        }
        out.append(k.clone(), v.clone());
    }
    let fwd = |n: &'static str| headers.get(n).cloned();
    let host = headers.get(axum::http::header::HOST).cloned();
    if !client_ip.is_empty()
        && let Ok(v) = HeaderValue::from_str(&client_ip)
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    let (proto, fhost) = if peer_trusted {
        (fwd("x-forwarded-proto"), fwd("x-forwarded-host").or(host))
    } else {
        (Some(HeaderValue::from_static("http")), host)
    };
    if let Some(p) = proto {
        out.insert(HeaderName::from_static("x-forwarded-proto"), p);
    }
    if let Some(h) = fhost {
        out.insert(HeaderName::from_static("x-forwarded-host"), h);
    }
    let res = st
        .http
        .request(method, &url)
        .headers(out)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "twiliod webhook server unreachable");
            ApiError::Unavailable("twiliod is not reachable right now".into())
        })?;
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut rh = HeaderMap::new();
    for (k, v) in res.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            rh.append(k.clone(), v.clone());
        }
    }
    let bytes = res
        .bytes()
        .await
        .map_err(|_| ApiError::Unavailable("twiliod closed the connection".into()))?;
    let mut r = (status, Body::from(bytes)).into_response();
    r.headers_mut().extend(rh);
    Ok(r)
}
