//! One delivery attempt per call, on each channel: email (SMTP with lettre
//! or Postmark's HTTP API), Gotify push, signed webhooks. Every function
//! reads the settings it is given (the snapshot current at delivery time)
//! and returns the remote side's answer or the real error text; Gotify and
//! webhooks, whose URLs users and admins type, go through
//! [`crate::guard::Outbound`] and report only the status they got.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use lettre::message::{Attachment, Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use proto::settings::Settings;
use sha2::Sha256;

use crate::guard::Outbound;

/// Why one delivery attempt failed; the text (`Display`) is what the
/// delivery log and the status page show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// A setting the channel needs is empty.
    #[error("{0} is not set")]
    NotSet(&'static str),
    /// An address, URL or message that cannot be used as it is.
    #[error("{0}")]
    Invalid(String),
    /// The remote side answered, with a refusal.
    #[error("{0}")]
    Refused(String),
    /// No usable answer: connection, TLS, timeout, or a destination the
    /// outbound guard refuses.
    #[error("{0}")]
    Unreachable(String),
    /// GoSIP's own side failed before sending (the database).
    #[error("{0}")]
    Internal(String),
}

/// SMTP connection and command timeout.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-GoSIP-Signature";
/// Header carrying the event's Unix time (also `timestamp` in the body).
pub const TIMESTAMP_HEADER: &str = "X-GoSIP-Timestamp";
/// Header naming the event kind.
pub const EVENT_HEADER: &str = "X-GoSIP-Event";
/// Header carrying the delivery (job) id; the same on every retry.
pub const DELIVERY_HEADER: &str = "X-GoSIP-Delivery";

/// A ready-to-send email.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<FileAttachment>,
    /// Left part of the `Message-ID` (`<token@from-domain>`): the same on
    /// every retry of one delivery, so a mail client can drop the duplicate
    /// an at-least-once retry may produce. `None`: a random id.
    pub message_id: Option<String>,
}

/// A file to attach.
#[derive(Debug, Clone)]
pub struct FileAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A push message.
#[derive(Debug, Clone)]
pub struct Push {
    pub title: String,
    pub message: String,
    pub priority: u8,
}

/// Sends `mail` with the transport `email.transport` names.
pub async fn email(
    s: &Settings,
    http: &reqwest::Client,
    mail: &Mail,
) -> Result<String, DeliveryError> {
    let from = s.str("email.from").trim();
    if from.is_empty() {
        return Err(DeliveryError::NotSet("email.from"));
    }
    match s.str("email.transport") {
        "postmark" => postmark(s, http, from, mail).await,
        _ => smtp(s, from, mail).await,
    }
}

async fn smtp(s: &Settings, from: &str, mail: &Mail) -> Result<String, DeliveryError> {
    let host = s.str("smtp.host").trim();
    if host.is_empty() {
        return Err(DeliveryError::NotSet("smtp.host"));
    }
    let message = build_message(from, mail)?;
    let security = s.str("smtp.security");
    let mut builder =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).timeout(Some(SMTP_TIMEOUT));
    let default_port = match security {
        "plain" | "none" => 25,
        "tls" => 465,
        _ => 587,
    };
    if default_port != 25 {
        let params = TlsParameters::builder(host.to_owned())
            .dangerous_accept_invalid_certs(s.str("smtp.tls_verify") == "false")
            .build_rustls()
            .map_err(|e| {
                DeliveryError::Invalid(format!("smtp {host}: tls setup: {}", chain(&e)))
            })?;
        // Implicit TLS (RFC 8314) or a STARTTLS that must succeed: never
        // fall back to sending credentials in clear.
        builder = builder.tls(if security == "tls" {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    let port = match s.u64("smtp.port") {
        p @ 1..=65535 => p as u16,
        _ => default_port,
    };
    builder = builder.port(port);
    let user = s.str("smtp.username").trim();
    if !user.is_empty() {
        builder = builder.credentials(Credentials::new(
            user.to_owned(),
            s.str("smtp.password").to_owned(),
        ));
    }
    let transport = builder.build();
    // lettre's timeout covers the connection, not a server that goes
    // quiet mid-dialogue; bound the whole exchange.
    match tokio::time::timeout(SMTP_TIMEOUT * 2, transport.send(message)).await {
        Ok(Ok(r)) => Ok(format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
        Ok(Err(e)) => {
            let text = format!("smtp {host}:{port} ({security}): {}", chain(&e));
            // A permanent or transient SMTP reply is the server refusing;
            // anything else never got that far.
            Err(if e.is_permanent() || e.is_transient() {
                DeliveryError::Refused(text)
            } else {
                DeliveryError::Unreachable(text)
            })
        }
        Err(_) => Err(DeliveryError::Unreachable(format!(
            "smtp {host}:{port} ({security}): no answer within {}s",
            (SMTP_TIMEOUT * 2).as_secs()
        ))),
    }
}

/// A multipart/alternative text + HTML message, inside multipart/mixed when
/// it carries files.
pub fn build_message(from: &str, mail: &Mail) -> Result<Message, DeliveryError> {
    let from: Mailbox = from
        .parse()
        .map_err(|e| DeliveryError::Invalid(format!("email.from {from:?}: {e}")))?;
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| DeliveryError::Invalid(format!("recipient {:?}: {e}", mail.to)))?;
    let alt = MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone());
    let body = if mail.attachments.is_empty() {
        alt
    } else {
        let mut mixed = MultiPart::mixed().multipart(alt);
        for a in &mail.attachments {
            let ct = ContentType::parse(&a.content_type).unwrap_or(
                ContentType::parse("application/octet-stream")
                    .map_err(|e| DeliveryError::Internal(e.to_string()))?,
            );
            mixed = mixed.singlepart(Attachment::new(a.name.clone()).body(a.bytes.clone(), ct));
        }
        mixed
    };
    let message_id = mail
        .message_id
        .as_ref()
        .map(|token| format!("<{token}@{}>", from.email.domain()));
    Message::builder()
        .message_id(message_id)
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(body)
        .map_err(|e| DeliveryError::Invalid(format!("build message: {e}")))
}

async fn postmark(
    s: &Settings,
    http: &reqwest::Client,
    from: &str,
    mail: &Mail,
) -> Result<String, DeliveryError> {
    use base64::Engine;
    let token = s.str("postmark.token");
    if token.is_empty() {
        return Err(DeliveryError::NotSet("postmark.token"));
    }
    let base = s.str("postmark.api_base").trim_end_matches('/');
    let attachments: Vec<_> = mail
        .attachments
        .iter()
        .map(|a| {
            serde_json::json!({
                "Name": a.name,
                "Content": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
                "ContentType": a.content_type,
            })
        })
        .collect();
    let body = serde_json::json!({
        "From": from,
        "To": mail.to,
        "Subject": mail.subject,
        "TextBody": mail.text,
        "HtmlBody": mail.html,
        "MessageStream": "outbound",
        "Attachments": attachments,
    });
    let resp = http
        .post(format!("{base}/email"))
        .header("X-Postmark-Server-Token", token)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            DeliveryError::Unreachable(format!("postmark {base}: {}", chain(&e.without_url())))
        })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(format!("{status} {}", clip(&text, 500)))
    } else {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("Message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(text);
        Err(DeliveryError::Refused(format!(
            "postmark {status}: {}",
            clip(&message, 500)
        )))
    }
}

/// POSTs a message to Gotify (`{url}/message?token=...`) through the
/// guarded client.
pub async fn gotify(
    out: &Outbound,
    url: &str,
    token: &str,
    push: &Push,
) -> Result<String, DeliveryError> {
    if url.is_empty() || token.is_empty() {
        return Err(DeliveryError::NotSet("gotify.url or gotify.token"));
    }
    let base = url.trim_end_matches('/');
    let endpoint = url::Url::parse_with_params(&format!("{base}/message"), [("token", token)])
        .map_err(|e| DeliveryError::Invalid(format!("gotify.url {}: {e}", clip(base, 100))))?;
    let resp = out
        .post(endpoint)
        .map_err(|r| DeliveryError::Unreachable(format!("gotify: {r}")))?
        .json(&serde_json::json!({
            "title": push.title,
            "message": push.message,
            "priority": push.priority,
        }))
        .send()
        .await
        // without_url: the token is in the query string.
        .map_err(|e| {
            DeliveryError::Unreachable(format!("gotify {}: {}", clip(base, 100), send_error(e)))
        })?;
    answer("gotify", resp.status())
}

/// A signed webhook request's parts.
#[derive(Debug, Clone)]
pub struct Hook<'a> {
    pub url: &'a str,
    pub secret: &'a str,
    pub body: &'a str,
    pub event: &'a str,
    pub timestamp: i64,
    pub delivery_id: i64,
}

/// POSTs a webhook body, signed, through the guarded client.
pub async fn webhook(out: &Outbound, hook: &Hook<'_>) -> Result<String, DeliveryError> {
    let url = url::Url::parse(hook.url)
        .map_err(|e| DeliveryError::Invalid(format!("webhook url: {e}")))?;
    let resp = out
        .post(url)
        .map_err(|r| DeliveryError::Unreachable(format!("webhook: {r}")))?
        .header("Content-Type", "application/json")
        .header(
            SIGNATURE_HEADER,
            signature(hook.secret, hook.body.as_bytes()),
        )
        .header(TIMESTAMP_HEADER, hook.timestamp.to_string())
        .header(EVENT_HEADER, hook.event)
        .header(DELIVERY_HEADER, hook.delivery_id.to_string())
        .body(hook.body.to_owned())
        .send()
        .await
        .map_err(|e| DeliveryError::Unreachable(format!("webhook: {}", send_error(e))))?;
    answer("webhook", resp.status())
}

/// The outcome of a push or webhook from its status alone. The body is
/// never read back: whatever the remote (or something the URL was pointed
/// at) answers must not reach the user or the log.
fn answer(what: &str, status: reqwest::StatusCode) -> Result<String, DeliveryError> {
    if status.is_success() {
        Ok(status.to_string())
    } else if status.is_redirection() {
        Err(DeliveryError::Refused(format!(
            "{what} answered {status}; redirects are not followed"
        )))
    } else {
        Err(DeliveryError::Refused(format!("{what} answered {status}")))
    }
}

/// A short text for a failed request: the resolver's refusal as is, else
/// the error chain without the URL, clipped.
fn send_error(e: reqwest::Error) -> String {
    if let Some(r) = crate::guard::refusal(&e) {
        return r.to_string();
    }
    clip(&chain(&e.without_url()), 200)
}

/// `sha256=` + hex HMAC-SHA256 of the exact body bytes under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An error with its causes, e.g. "Connection error: Connection refused (os error 111)".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231 4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_message_with_files_is_mixed_with_an_alternative_inside() {
        let m = build_message(
            "GoSIP <pbx@example.org>",
            &Mail {
                to: "a@example.org".into(),
                subject: "Hi".into(),
                text: "plain".into(),
                html: "<p>html</p>".into(),
                attachments: vec![FileAttachment {
                    name: "vm.wav".into(),
                    content_type: "audio/wav".into(),
                    bytes: vec![1, 2, 3],
                }],
                message_id: Some("gosip.7.1736951400".into()),
            },
        )
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("multipart/mixed"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
        assert!(raw.contains("filename=\"vm.wav\""));
        assert!(
            raw.contains("Message-ID: <gosip.7.1736951400@example.org>\r\n"),
            "{raw}"
        );
    }

    #[test]
    fn a_message_without_a_delivery_gets_a_random_message_id() {
        let mail = Mail {
            to: "a@example.org".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            attachments: vec![],
            message_id: None,
        };
        let id = |m: Message| {
            let raw = String::from_utf8(m.formatted()).unwrap();
            raw.lines()
                .find(|l| l.starts_with("Message-ID: <"))
                .map(str::to_owned)
        };
        let a = id(build_message("pbx@example.org", &mail).unwrap()).unwrap();
        let b = id(build_message("pbx@example.org", &mail).unwrap()).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_bad_from_address_is_reported() {
        let e = build_message(
            "not an address",
            &Mail {
                to: "a@example.org".into(),
                subject: "s".into(),
                text: "t".into(),
                html: "h".into(),
                attachments: vec![],
                message_id: None,
            },
        )
        .unwrap_err();
        assert!(matches!(e, DeliveryError::Invalid(_)), "{e:?}");
        assert!(e.to_string().starts_with("email.from"), "{e}");
    }
}
