//! The one Twilio REST client (2010-04-01 API, CONTRACT.md §4).
//!
//! * Base URL from `twilio.api_base` (tests point it at the stand-in), HTTP
//!   Basic auth with `twilio.account_sid` / `twilio.auth_token`, read from the
//!   hot-reloaded settings on every request.
//! * Connect and request timeouts.
//! * Retries with exponential backoff and full jitter on 5xx, 429 and
//!   transport errors, honouring `Retry-After`; permanent 4xx are returned at
//!   once as [`TwilioError::Api`] with Twilio's `code`/`message`/`more_info`.
//! * Counts consecutive failures (after retries) and reports through
//!   [`TwilioClient::on_failure_streak`] when `twilio.alert_after_failures` is
//!   reached, so the admin is alerted once per streak.
//!
//! Work that must not be lost goes through [`crate::queue`], which calls this
//! client and reschedules on [`TwilioError::is_retryable`] errors.
//!
//! ```ignore
//! let msg = state.twilio.send_message(&SendMessage {
//!     to: "+15551234567".into(), from: "+15557654321".into(),
//!     body: "hi".into(), media_urls: vec![], status_callback: None,
//! }).await?;            // -> MessageResource { sid, status, .. }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proto::settings::{Settings, SettingsHandle};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Twilio REST API version prefix.
pub const API_VERSION: &str = "2010-04-01";
/// Twilio's REST API and its Elastic SIP Trunking API.
const TWILIO_API: &str = "https://api.twilio.com";
const TWILIO_TRUNKING: &str = "https://trunking.twilio.com";

/// Where and as whom to call Twilio.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// e.g. `https://api.twilio.com` (no trailing slash, no version).
    pub api_base: String,
    pub account_sid: String,
    pub auth_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("api_base", &self.api_base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .finish()
    }
}

impl Credentials {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            api_base: s.str("twilio.api_base").trim_end_matches('/').to_owned(),
            account_sid: s.str("twilio.account_sid").trim().to_owned(),
            auth_token: s.str("twilio.auth_token").trim().to_owned(),
        }
    }

    /// Account SID, auth token and API base are all set.
    pub fn is_set(&self) -> bool {
        !self.api_base.is_empty() && !self.account_sid.is_empty() && !self.auth_token.is_empty()
    }

    /// `{trunking base}/v1{path}`: Elastic SIP Trunking lives on its own
    /// host at Twilio; any other API base (the stand-in, a proxy) serves it
    /// under the same base.
    pub fn trunking_url(&self, path: &str) -> String {
        let base = if self.api_base == TWILIO_API {
            TWILIO_TRUNKING
        } else {
            self.api_base.as_str()
        };
        format!("{base}/v1{path}")
    }

    /// `{api_base}/2010-04-01/Accounts/{AC}{path}`.
    pub fn account_url(&self, path: &str) -> String {
        format!(
            "{}/{API_VERSION}/Accounts/{}{path}",
            self.api_base, self.account_sid
        )
    }
}

/// Why a Twilio call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error status and its error JSON.
    #[error("twilio HTTP {status}, error {code}: {message}")]
    Api {
        status: u16,
        /// Twilio error code (20003, 20429, 21211 ...); 0 when the body had none.
        code: i64,
        message: String,
        more_info: String,
        /// From the `Retry-After` header, if any.
        retry_after: Option<Duration>,
    },
    /// No answer: connect failure, reset, or timeout.
    #[error("twilio unreachable: {0}")]
    Transport(String),
    /// Account SID, auth token or API base is not set.
    #[error("twilio credentials are not configured")]
    NotConfigured,
    /// Twilio answered 2xx with a body we could not read.
    #[error("unexpected twilio answer: {0}")]
    Decode(String),
}

impl TwilioError {
    /// 5xx, 429 and no-answer are worth retrying; other 4xx are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            Self::Transport(_) => true,
            Self::NotConfigured | Self::Decode(_) => false,
        }
    }

    /// Twilio's error code, if this is an API error.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// HTTP status, if Twilio answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Timeouts and in-call retry schedule. The durable queue does the long
/// retries; these keep one call from failing on a single blip.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry (full jitter in [d/2, d]).
    pub base_delay: Duration,
    /// Upper bound of one backoff, including a `Retry-After` wait.
    pub max_delay: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): exponential with jitter,
    /// or the server's `Retry-After` when it gave one; both capped.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        backoff(self.base_delay, self.max_delay, retry, retry_after)
    }
}

/// Exponential backoff with jitter: `base * 2^n` capped at `max`, randomised
/// in `[d/2, d]`; a `Retry-After` wins (capped at `max`).
pub fn backoff(base: Duration, max: Duration, n: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(max);
    }
    let exp = base.saturating_mul(2u32.saturating_pow(n.min(20))).min(max);
    let half = exp / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms).min(half)
}

/// Called once when the consecutive-failure count reaches the threshold:
/// `(count, last error)`.
pub type FailureHook = Arc<dyn Fn(u32, &TwilioError) + Send + Sync>;

#[derive(Clone)]
enum CredSource {
    Settings(SettingsHandle),
    Fixed(Credentials, u32),
}

/// The Twilio REST client. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    creds: CredSource,
    policy: RetryPolicy,
    streak: Arc<AtomicU32>,
    hook: Option<FailureHook>,
    /// The credentials Twilio last refused (HTTP 401 / error 20003); cleared
    /// by any success. Kept per credentials so new ones are not blamed.
    refused: Arc<std::sync::Mutex<Option<Credentials>>>,
}

impl TwilioClient {
    /// A client that reads credentials and `twilio.api_base` from `settings`
    /// on every request (hot reload).
    pub fn new(settings: SettingsHandle) -> Self {
        Self::build(CredSource::Settings(settings), RetryPolicy::default())
    }

    /// A client with fixed credentials (the wizard's "check credentials").
    pub fn with_credentials(creds: Credentials) -> Self {
        Self::build(CredSource::Fixed(creds, 3), RetryPolicy::default())
    }

    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.http = http_client(&policy);
        self.policy = policy;
        self
    }

    /// Installs the hook called when `twilio.alert_after_failures`
    /// consecutive calls have failed (retryable failures only).
    pub fn on_failure_streak(mut self, hook: FailureHook) -> Self {
        self.hook = Some(hook);
        self
    }

    fn build(creds: CredSource, policy: RetryPolicy) -> Self {
        Self {
            http: http_client(&policy),
            creds,
            policy,
            streak: Arc::new(AtomicU32::new(0)),
            hook: None,
            refused: Arc::default(),
        }
    }

    /// The credentials the next request will use.
    pub fn credentials(&self) -> Credentials {
        match &self.creds {
            CredSource::Settings(h) => Credentials::from_settings(&h.get()),
            CredSource::Fixed(c, _) => c.clone(),
        }
    }

    fn alert_threshold(&self) -> u32 {
        match &self.creds {
            CredSource::Settings(h) => h.get().u64("twilio.alert_after_failures").max(1) as u32,
            CredSource::Fixed(_, n) => *n,
        }
    }

    /// Twilio refused the credentials the next request would use, on the
    /// last call that reached it with them.
    pub fn credentials_refused(&self) -> bool {
        let now = self.credentials();
        self.refused
            .lock()
            .map(|r| r.as_ref() == Some(&now))
            .unwrap_or(false)
    }

    /// Consecutive failed calls so far (0 after any success).
    pub fn failure_streak(&self) -> u32 {
        self.streak.load(Ordering::SeqCst)
    }

    /// Sends one request to `{api_base}/2010-04-01/Accounts/{AC}{path}` (or to
    /// `path` itself when it is absolute `http(s)://`), with retries; returns
    /// the 2xx body. `form` is sent as `application/x-www-form-urlencoded`
    /// (repeat a key for repeated params such as `MediaUrl`).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<bytes::Bytes, TwilioError> {
        let creds = self.credentials();
        let result = self.request_with(&creds, method, path, form).await;
        self.account(&result);
        // An absolute URL may be another host, whose 401 says nothing of ours.
        if !path.starts_with("http://") && !path.starts_with("https://") {
            self.note_auth(&creds, &result);
        }
        result.map(|(_, body)| body)
    }

    /// [`request`](Self::request) returning the body's content type too
    /// (media downloads).
    pub async fn download(&self, path_or_url: &str) -> Result<(String, bytes::Bytes), TwilioError> {
        let creds = self.credentials();
        let result = self
            .request_with(&creds, Method::GET, path_or_url, &[])
            .await;
        self.account(&result);
        result
    }

    /// [`request`](Self::request) decoded as JSON.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<T, TwilioError> {
        let body = self.request(method, path, form).await?;
        serde_json::from_slice(&body).map_err(|e| TwilioError::Decode(e.to_string()))
    }

    fn note_auth<T>(&self, creds: &Credentials, result: &Result<T, TwilioError>) {
        let refused = match result {
            Ok(_) => false,
            Err(e) if e.status() == Some(401) || e.code() == Some(20003) => true,
            Err(_) => return,
        };
        if let Ok(mut r) = self.refused.lock() {
            if refused {
                *r = Some(creds.clone());
            } else if r.as_ref() == Some(creds) {
                *r = None;
            }
        }
    }

    fn account<T>(&self, result: &Result<T, TwilioError>) {
        match result {
            Ok(_) => self.streak.store(0, Ordering::SeqCst),
            Err(e) if e.is_retryable() => {
                let n = self.streak.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::warn!(failures = n, error = %e, "twilio request failed");
                if n == self.alert_threshold()
                    && let Some(h) = &self.hook
                {
                    h(n, e);
                }
            }
            Err(_) => {}
        }
    }

    async fn request_with(
        &self,
        creds: &Credentials,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(String, bytes::Bytes), TwilioError> {
        if !creds.is_set() {
            return Err(TwilioError::NotConfigured);
        }
        let absolute = path.starts_with("http://") || path.starts_with("https://");
        let url = if absolute {
            path.to_owned()
        } else if path.starts_with("/2010-04-01/") {
            format!("{}{path}", creds.api_base)
        } else {
            creds.account_url(path)
        };
        // Never send the account's credentials to a host that is not Twilio's.
        let send_auth = !absolute
            || url.starts_with(&format!("{}/", creds.api_base))
            || url.starts_with(&format!("{TWILIO_TRUNKING}/"));
        let mut retry = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url);
            if send_auth {
                req = req.basic_auth(&creds.account_sid, Some(&creds.auth_token));
            }
            if !form.is_empty() {
                req = req.form(form);
            }
            let err = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let ctype = resp
                            .headers()
                            .get(reqwest::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        match resp.bytes().await {
                            Ok(b) => return Ok((ctype, b)),
                            Err(e) => TwilioError::Transport(e.to_string()),
                        }
                    } else {
                        api_error(status, resp).await
                    }
                }
                Err(e) => TwilioError::Transport(transport_text(&e)),
            };
            if !err.is_retryable() || retry >= self.policy.max_retries {
                return Err(err);
            }
            let wait = self.policy.delay(retry, err.retry_after());
            tracing::debug!(%url, retry, ?wait, error = %err, "twilio request retry");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    // ---- typed helpers for the endpoints GoSIP uses -------------------------

    /// `GET /Accounts/{AC}.json`: proves the credentials work.
    pub async fn fetch_account(&self) -> Result<AccountResource, TwilioError> {
        let creds = self.credentials();
        let path = format!("/{API_VERSION}/Accounts/{}.json", creds.account_sid);
        self.json(Method::GET, &path, &[]).await
    }

    /// Every IncomingPhoneNumber of the account (follows `next_page_uri`).
    pub async fn list_numbers(&self) -> Result<Vec<IncomingNumber>, TwilioError> {
        let mut out = Vec::new();
        let mut next = Some("/IncomingPhoneNumbers.json?PageSize=100".to_owned());
        while let Some(path) = next.take() {
            let page: NumberPage = self.json(Method::GET, &path, &[]).await?;
            out.extend(page.incoming_phone_numbers);
            next = page.next_page_uri.filter(|u| !u.is_empty());
        }
        Ok(out)
    }

    /// `POST /IncomingPhoneNumbers/{PN}.json` with `form` (VoiceUrl, SmsUrl ...).
    pub async fn update_number(
        &self,
        sid: &str,
        form: &[(&str, &str)],
    ) -> Result<IncomingNumber, TwilioError> {
        let path = format!("/IncomingPhoneNumbers/{sid}.json");
        self.json(Method::POST, &path, form).await
    }

    /// `POST /Messages.json`. The SMS module builds on this.
    pub async fn send_message(&self, m: &SendMessage) -> Result<MessageResource, TwilioError> {
        let mut form: Vec<(&str, &str)> = vec![("To", &m.to), ("From", &m.from)];
        if !m.body.is_empty() {
            form.push(("Body", &m.body));
        }
        for u in &m.media_urls {
            form.push(("MediaUrl", u));
        }
        if let Some(cb) = &m.status_callback {
            form.push(("StatusCallback", cb));
        }
        self.json(Method::POST, "/Messages.json", &form).await
    }

    /// `GET /Messages/{SM}.json`.
    pub async fn fetch_message(&self, sid: &str) -> Result<MessageResource, TwilioError> {
        self.json(Method::GET, &format!("/Messages/{sid}.json"), &[])
            .await
    }

    /// `GET /Recordings/{RE}.json`.
    pub async fn fetch_recording(&self, sid: &str) -> Result<RecordingResource, TwilioError> {
        self.json(Method::GET, &format!("/Recordings/{sid}.json"), &[])
            .await
    }

    /// The recording's audio as WAV (`GET /Recordings/{RE}.wav`).
    pub async fn download_recording(&self, sid: &str) -> Result<bytes::Bytes, TwilioError> {
        self.download(&format!("/Recordings/{sid}.wav"))
            .await
            .map(|(_, b)| b)
    }

    /// `DELETE /Recordings/{RE}.json`; a 404 counts as already deleted.
    pub async fn delete_recording(&self, sid: &str) -> Result<(), TwilioError> {
        match self
            .request(Method::DELETE, &format!("/Recordings/{sid}.json"), &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(TwilioError::Api { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What to send with [`TwilioClient::send_message`].
#[derive(Debug, Clone, Default)]
pub struct SendMessage {
    pub to: String,
    pub from: String,
    pub body: String,
    /// Public URLs Twilio fetches (MMS), at most 10.
    pub media_urls: Vec<String>,
    pub status_callback: Option<String>,
}

/// The fields of Twilio's account JSON we read (unknown fields ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct AccountResource {
    pub sid: String,
    #[serde(default)]
    pub friendly_name: String,
    #[serde(default)]
    pub status: String,
}

/// An IncomingPhoneNumber.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingNumber {
    pub sid: String,
    pub phone_number: String,
    #[serde(default)]
    pub friendly_name: Option<String>,
    #[serde(default)]
    pub voice_url: Option<String>,
    #[serde(default)]
    pub sms_url: Option<String>,
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub emergency_address_sid: Option<String>,
    #[serde(default)]
    pub emergency_status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NumberPage {
    #[serde(default)]
    incoming_phone_numbers: Vec<IncomingNumber>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

/// A Message (`num_media` etc. are strings in Twilio's JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct MessageResource {
    pub sid: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub num_media: Option<String>,
    #[serde(default)]
    pub num_segments: Option<String>,
}

/// A Recording (`duration` is a string of seconds).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordingResource {
    pub sid: String,
    #[serde(default)]
    pub call_sid: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

async fn api_error(status: StatusCode, resp: reqwest::Response) -> TwilioError {
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let body: ErrorBody = resp
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    TwilioError::Api {
        status: status.as_u16(),
        code: body.code.unwrap_or(0),
        message: body
            .message
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        more_info: body.more_info.unwrap_or_default(),
        retry_after,
    }
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn transport_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    }
}

fn http_client(p: &RetryPolicy) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(p.connect_timeout)
        .timeout(p.request_timeout)
        .user_agent(concat!("gosip-twiliod/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for n in 0..10 {
            let d = backoff(base, max, n, None);
            let full = base.saturating_mul(1 << n).min(max);
            assert!(d >= full / 2 && d <= full, "retry {n}: {d:?} vs {full:?}");
        }
        assert_eq!(
            backoff(base, max, 0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(backoff(base, max, 0, Some(Duration::from_secs(60))), max);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2015 00:00:00 +0000"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn only_server_errors_rate_limits_and_silence_are_retryable() {
        let api = |status| TwilioError::Api {
            status,
            code: 0,
            message: String::new(),
            more_info: String::new(),
            retry_after: None,
        };
        assert!(api(429).is_retryable());
        assert!(api(503).is_retryable());
        assert!(!api(400).is_retryable());
        assert!(!api(401).is_retryable());
        assert!(!api(404).is_retryable());
        assert!(TwilioError::Transport("x".into()).is_retryable());
        assert!(!TwilioError::NotConfigured.is_retryable());
    }

    #[test]
    fn credentials_debug_never_shows_the_token() {
        let c = Credentials {
            api_base: "http://x".into(),
            account_sid: "AC1".into(),
            auth_token: "sekrit".into(),
        };
        assert!(!format!("{c:?}").contains("sekrit"));
        assert_eq!(
            c.account_url("/Calls.json"),
            "http://x/2010-04-01/Accounts/AC1/Calls.json"
        );
    }
}
