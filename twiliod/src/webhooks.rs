//! The Twilio webhook HTTP router and its signature check.
//!
//! Every Twilio callback under `/api/webhooks/*` sits behind [`verify_signature`]:
//! the `X-Twilio-Signature` is checked over the PUBLIC URL
//! (`system.public_url` + the request path and query, never the internal
//! Host webd forwarded to), with and without the default port, for form and
//! JSON (`bodySHA256`) bodies. A failure answers 403, writes a
//! `security_events` row (kind `webhook_signature`) and logs one warn line.
//!
//! Handlers of verified requests read the form with the [`WebhookParams`]
//! extension (every field, in order, repeated keys kept):
//!
//! ```ignore
//! async fn incoming(State(st): State<AppState>, Extension(p): Extension<WebhookParams>) -> Response {
//!     let sid = p.get("MessageSid").unwrap_or_default();
//!     crate::voice::xml(crate::twiml::empty())
//! }
//! ```
//!
//! The routes are assembled in [`router`]: voice ([`crate::voice::routes`]),
//! SMS (`crate::sms::webhook_routes`), and the unsigned GETs Twilio fetches
//! for `<Play>`/MMS media (SIT tone, greetings, expiring media tokens).

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::signature;

/// Largest webhook body accepted (Twilio's are a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// The form fields of a verified webhook, as Twilio sent them.
#[derive(Debug, Clone, Default)]
pub struct WebhookParams(pub Vec<(String, String)>);

impl WebhookParams {
    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "" when absent.
    pub fn str(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// All webhook routes. `lib.rs` serves this on twiliod's HTTP port; webd
/// forwards `/api/webhooks/*` to it unchanged.
///
/// * voice routes (this crate's [`crate::voice`]) and `signed_extra` (the SMS
///   module's `/api/webhooks/sms/incoming` and `/api/webhooks/sms/status`,
///   already given their state) sit behind [`verify_signature`];
/// * `unsigned` (e.g. the expiring MMS media URLs Twilio fetches, whose
///   token is the credential) is served without the check.
pub fn router(state: AppState, signed_extra: Router, unsigned: Router) -> Router {
    Router::new()
        .merge(crate::voice::routes())
        .with_state(state.clone())
        .merge(signed_extra)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            verify_signature,
        ))
        .merge(crate::voice::public_routes().with_state(state))
        .merge(unsigned)
}

/// The URL Twilio signed for this request: the configured public base URL
/// plus the path and query the request carried.
pub fn public_url(public_base: &str, path_and_query: &str) -> String {
    format!("{}{}", public_base.trim_end_matches('/'), path_and_query)
}

/// Middleware: rejects unsigned or badly signed requests with 403, and hands
/// the parsed form to the handler as [`WebhookParams`].
pub async fn verify_signature(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response(),
    };
    let settings = st.settings.get();
    let base = settings.str("system.public_url").trim();
    let token = settings.str("twilio.auth_token").trim();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let url = public_url(base, &pq);
    let sig = parts
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let is_json = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let params: Vec<(String, String)> = if is_json {
        Vec::new()
    } else {
        url::form_urlencoded::parse(&bytes).into_owned().collect()
    };
    let problem = if base.is_empty() {
        Some("system.public_url is not set")
    } else if token.is_empty() {
        Some("twilio.auth_token is not set")
    } else if sig.is_empty() {
        Some("missing X-Twilio-Signature")
    } else if is_json {
        (!signature::validate_json(&url, &bytes, sig, token)).then_some("bad signature (json)")
    } else {
        (!signature::validate(&url, &params, sig, token)).then_some("bad signature")
    };
    if let Some(problem) = problem {
        let ip = client_ip(&parts);
        tracing::warn!(%ip, path = %parts.uri.path(), signed_url = %url, problem, "webhook rejected: signature check failed");
        if let Err(e) = proto::db::security_event(
            &st.pool,
            "twiliod",
            "webhook_signature",
            &ip,
            "",
            &format!("{problem}: {}", parts.uri.path()),
        )
        .await
        {
            tracing::warn!(error = %e, "cannot record security event");
        }
        return (StatusCode::FORBIDDEN, "invalid Twilio signature").into_response();
    }
    parts.extensions.insert(WebhookParams(params));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The caller's address: the first `X-Forwarded-For` hop (webd sets it), else
/// the TCP peer.
fn client_ip(parts: &axum::http::request::Parts) -> String {
    if let Some(xff) = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        && let Some(first) = xff.split(',').next()
    {
        return first.trim().to_owned();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_url_is_the_public_base_plus_path_and_query() {
        assert_eq!(
            public_url(
                "https://pbx.example.com/",
                "/api/webhooks/voice/incoming?x=1"
            ),
            "https://pbx.example.com/api/webhooks/voice/incoming?x=1"
        );
    }

    #[test]
    fn params_keep_repeated_keys() {
        let p = WebhookParams(vec![
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
            ("B".into(), String::new()),
        ]);
        assert_eq!(p.get("A"), Some("1"));
        assert_eq!(p.all("A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(p.get("B"), Some(""));
        assert_eq!(p.str("C"), "");
    }
}
