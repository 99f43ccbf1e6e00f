//! The two Messages REST calls the send job makes (CONTRACT.md §4): create a
//! message, and list messages to find one an earlier attempt may have
//! created. Answers are sorted into "created", "permanent error" (the message
//! fails with Twilio's code) and "try again" (429, 5xx, 401/403, timeouts,
//! connection errors), with `Retry-After` when Twilio gives one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Account credentials and API base, read from settings at each call.
#[derive(Debug, Clone)]
pub struct Creds {
    pub account_sid: String,
    pub auth_token: String,
    pub api_base: String,
}

impl Creds {
    pub fn from_settings(s: &proto::settings::Settings) -> Self {
        Self {
            account_sid: s.str("twilio.account_sid").to_owned(),
            auth_token: s.str("twilio.auth_token").to_owned(),
            api_base: s.str("twilio.api_base").trim_end_matches('/').to_owned(),
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.api_base, self.account_sid
        )
    }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Ok(T),
    /// Twilio refused the message for good (21211 invalid To, 21610 opted out ...).
    Permanent { code: Option<i64>, message: String },
    /// Worth retrying; `after` is Twilio's Retry-After.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
}

/// A message as Twilio returns it (only the fields we use; the rest ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ApiMessage {
    pub sid: String,
    pub status: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: Option<i64>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    messages: Vec<ApiMessage>,
    next_page_uri: Option<String>,
}

/// `POST Messages.json`.
pub async fn create(
    http: &reqwest::Client,
    creds: &Creds,
    form: &[(&str, String)],
    timeout: Duration,
) -> Outcome<ApiMessage> {
    let req = http
        .post(creds.messages_url())
        .basic_auth(&creds.account_sid, Some(&creds.auth_token))
        .form(form)
        .timeout(timeout);
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                reason: transport_reason(&e),
            };
        }
    };
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let text = match resp.text().await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Retry {
                after: None,
                reason: transport_reason(&e),
            };
        }
    };
    if status.is_success() {
        return match serde_json::from_str::<ApiMessage>(&text) {
            Ok(m) => Outcome::Ok(m),
            Err(e) => Outcome::Retry {
                after: None,
                reason: format!("unreadable answer from Twilio ({status}): {e}"),
            },
        };
    }
    classify_error(status.as_u16(), retry_after, &text)
}

/// Lists messages `To`/`From` created at or after `since`, newest first as
/// Twilio orders them. No `DateSent` filter: a message Twilio has queued but
/// not sent yet has no `date_sent`, and it is exactly the one we look for.
pub async fn list(
    http: &reqwest::Client,
    creds: &Creds,
    to: &str,
    from: &str,
    since: DateTime<Utc>,
    timeout: Duration,
) -> Outcome<Vec<ApiMessage>> {
    let mut out = Vec::new();
    let mut url = match reqwest::Url::parse_with_params(
        &creds.messages_url(),
        &[
            ("To", to),
            ("From", from),
            ("PageSize", "50"),
        ],
    ) {
        Ok(u) => u.to_string(),
        Err(e) => {
            return Outcome::Permanent {
                code: None,
                message: format!("bad Twilio API base: {e}"),
            };
        }
    };
    for _ in 0..5 {
        let resp = match http
            .get(&url)
            .basic_auth(&creds.account_sid, Some(&creds.auth_token))
            .timeout(timeout)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: transport_reason(&e),
                };
            }
        };
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return match classify_error(status.as_u16(), retry_after, &text) {
                // A lookup failing for good must not fail the message: retry.
                Outcome::Permanent { message, .. } => Outcome::Retry {
                    after: None,
                    reason: format!("message lookup failed: {message}"),
                },
                other => other,
            };
        }
        let page: Page = match serde_json::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("unreadable message list: {e}"),
                };
            }
        };
        let before = out.len();
        out.extend(page.messages.into_iter().filter(|m| {
            m.date_created
                .as_deref()
                .and_then(parse_date)
                .is_none_or(|t| t >= since - chrono::Duration::seconds(2))
        }));
        // Newest first: a page with anything older than `since` is the last one we need.
        if out.len() - before < 50 {
            break;
        }
        match page.next_page_uri {
            Some(next) if !next.is_empty() => url = format!("{}{}", creds.api_base, next),
            _ => break,
        }
    }
    Outcome::Ok(out)
}

/// Sorts a non-2xx answer.
pub fn classify_error<T>(status: u16, retry_after: Option<Duration>, body: &str) -> Outcome<T> {
    let err: Option<ApiError> = serde_json::from_str(body).ok();
    let code = err.as_ref().and_then(|e| e.code);
    let message = err
        .and_then(|e| e.message)
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        429 | 500..=599 | 401 | 403 | 408 => Outcome::Retry {
            after: retry_after,
            reason: match code {
                Some(c) => format!("HTTP {status} ({c}): {message}"),
                None => format!("HTTP {status}: {message}"),
            },
        },
        _ => Outcome::Permanent { code, message },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare at Twilio; ignored).
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "Twilio did not answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect to Twilio".to_owned()
    } else {
        format!("request to Twilio failed: {e}")
    }
}

/// Parses Twilio's RFC 2822 dates (`Thu, 30 Jul 2015 23:19:04 +0000`).
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_and_server_errors_are_retried_with_retry_after() {
        let o: Outcome<()> = classify_error(
            429,
            Some(Duration::from_secs(2)),
            r#"{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}"#,
        );
        assert!(matches!(o, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)));
        let o: Outcome<()> = classify_error(503, None, "<html>down</html>");
        assert!(matches!(o, Outcome::Retry { after: None, .. }));
    }

    #[test]
    fn twilio_refusals_are_permanent_with_their_code() {
        let o: Outcome<()> = classify_error(
            400,
            None,
            r#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"x","status":400}"#,
        );
        assert_eq!(
            o,
            Outcome::Permanent {
                code: Some(21610),
                message: "Attempt to send to unsubscribed recipient".into()
            }
        );
    }

    #[test]
    fn twilio_dates_parse() {
        let t = parse_date("Thu, 30 Jul 2015 23:19:04 +0000").unwrap();
        assert_eq!(proto::time::fmt(t), "2015-07-30T23:19:04.000Z");
    }
}
