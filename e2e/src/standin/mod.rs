//! A faithful local stand-in for Twilio (`../shared/twilio/CONTRACT.md`),
//! for tests and `make demo`. Twilio itself is never reachable from here.
//!
//! * REST subset of API 2010-04-01 with state ([`rest`]): Accounts,
//!   IncomingPhoneNumbers (list with paging, update), Calls (create, list,
//!   fetch), Recordings (fetch, `.wav`/`.mp3` media, delete), Transcriptions.
//!   Basic auth (401 + 20003 JSON), Twilio error JSON (`code`, `message`,
//!   `more_info`, `status`). Messages belong to the SMS part (`messages.rs`).
//! * Fault injection, settable from Rust ([`Standin::faults`]) or at run time
//!   over HTTP (`POST /_control/faults` with a JSON [`Faults`] patch): 429 /
//!   20429 with `Retry-After` for the next N requests, 5xx, hangs (client
//!   timeouts), bad webhook signatures, signing with or without the port.
//! * Signed webhooks ([`Standin::post_webhook`]) and scripted calls
//!   ([`scenario`]) that follow the TwiML twiliod answers (`<Dial>` action,
//!   `<Record>` action + recording/transcription callbacks in either order,
//!   duplicates), then send the final status callback.
//!
//! Webhooks are signed over the *public* URL configured on the number (what
//! Twilio would sign) and delivered to the address given by
//! [`Standin::route_public_to`] (what Caddy/webd would do).

pub mod media;
pub mod messages;
pub mod rest;
pub mod scenario;
pub mod sip;
pub mod tls;
pub mod trunk;
pub mod trunking;
pub mod wav;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use tokio_util::sync::CancellationToken;

pub use scenario::{CallOutcome, CallScript, DialOutcome, Event, RecordScript};

/// Test credentials of the stand-in's one account.
pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "standin-auth-token-0123456789abcd";

/// A Twilio number on the account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Number {
    pub sid: String,
    pub phone_number: String,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub sms_url: Option<String>,
    pub sms_method: String,
    pub status_callback: Option<String>,
    pub voice_caller_id_lookup: bool,
    /// The emergency address (`AD...`) registered for the number: without
    /// one Twilio's `emergency_status` is `Inactive` and emergency calls
    /// from the number carry no address for the responders.
    pub emergency_address_sid: Option<String>,
    pub date_created: String,
    pub date_updated: String,
}

/// A call (created over REST or by a scenario).
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub status: String,
    pub direction: String,
    pub duration: Option<u32>,
    pub phone_number_sid: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
}

/// A recording made by `<Record>`.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub sid: String,
    pub call_sid: String,
    pub duration: u32,
    pub status: String,
    pub date_created: String,
    pub deleted: bool,
}

/// A transcription of a recording.
#[derive(Debug, Clone, Serialize)]
pub struct Transcription {
    pub sid: String,
    pub recording_sid: String,
    pub status: String,
    pub text: Option<String>,
    pub duration: u32,
    pub date_created: String,
}

/// Faults to inject; every counter is "for the next N requests".
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Answer 429 / 20429 "Too Many Requests".
    pub rate_limit: u32,
    /// `Retry-After` seconds sent with 429.
    pub retry_after: Option<u64>,
    /// Answer `server_status` (default 503) with code 20500.
    pub server_error: u32,
    pub server_status: Option<u16>,
    /// Hold the request for `hang_ms` (default 30 s) before a 503: the
    /// client's timeout fires first.
    pub hang: u32,
    pub hang_ms: Option<u64>,
    /// Sign webhooks with a wrong key.
    pub bad_signature: bool,
    /// Sign over the URL with the scheme's default port added.
    pub sign_with_port: bool,
}

/// One REST request the stand-in received (for assertions).
#[derive(Debug, Clone, Serialize)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub form: Vec<(String, String)>,
    pub status: u16,
}

/// The stand-in's mutable world.
#[derive(Debug, Default)]
pub struct World {
    pub numbers: Vec<Number>,
    pub calls: Vec<Call>,
    pub recordings: Vec<Recording>,
    pub transcriptions: Vec<Transcription>,
    pub faults: Faults,
    pub log: Vec<Logged>,
    /// (public prefix, actual prefix) for webhook delivery.
    pub route: Option<(String, String)>,
    pub friendly_name: String,
    /// Messages, MMS media and opt-outs (`messages.rs`).
    pub sms: messages::SmsWorld,
    /// Trunks and SIP credential lists (`trunking.rs`).
    pub trunking: trunking::TrunkingWorld,
}

/// Shared handle to a running stand-in.
#[derive(Clone)]
pub struct Standin {
    pub account_sid: String,
    pub auth_token: String,
    /// `http://127.0.0.1:<port>`: put this in `twilio.api_base`.
    pub base_url: String,
    world: Arc<Mutex<World>>,
    http: reqwest::Client,
    stop: CancellationToken,
    /// The termination trunk the binary runs beside (`--trunk`), for
    /// `GET /_control/trunk`.
    trunk: Arc<Mutex<Option<trunk::Trunk>>>,
}

impl Standin {
    /// Starts on a free loopback port with the test account.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", ACCOUNT_SID, AUTH_TOKEN).await
    }

    /// Starts on `addr` with the given account.
    pub async fn start_on(addr: &str, account_sid: &str, auth_token: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let me = Self {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            base_url: format!("http://{local}"),
            world: Arc::new(Mutex::new(World {
                friendly_name: "GoSIP stand-in account".into(),
                ..World::default()
            })),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            stop: CancellationToken::new(),
            trunk: Arc::new(Mutex::new(None)),
        };
        let app = rest::router(me.clone());
        let stop = me.stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        Ok(me)
    }

    /// Shows `t` on `GET /_control/trunk` (its address and the calls it saw).
    pub fn set_trunk(&self, t: trunk::Trunk) {
        if let Ok(mut g) = self.trunk.lock() {
            *g = Some(t);
        }
    }

    /// The trunk [`Standin::set_trunk`] gave.
    pub fn trunk(&self) -> Option<trunk::Trunk> {
        self.trunk.lock().ok().and_then(|g| g.clone())
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Locks the world (tests may read or change anything).
    pub fn world(&self) -> MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds a number to the account; returns its `PN...` SID.
    /// A number whose voice webhook and status callback point at webd under
    /// `public` (the URL the webhooks are signed for), as "Set webhooks" in
    /// the UI configures it on Twilio.
    pub fn add_number_for(&self, e164: &str, public: &str) -> String {
        let sid = self.add_number(e164, Some(&format!("{public}/api/webhooks/voice/incoming")));
        if let Some(n) = self.world().numbers.iter_mut().find(|n| n.sid == sid) {
            n.status_callback = Some(format!("{public}/api/webhooks/voice/status"));
        }
        sid
    }

    pub fn add_number(&self, e164: &str, voice_url: Option<&str>) -> String {
        let now = rfc2822_now();
        let sid = new_sid("PN");
        self.world().numbers.push(Number {
            sid: sid.clone(),
            phone_number: e164.to_owned(),
            friendly_name: format_friendly(e164),
            voice_url: voice_url.map(str::to_owned),
            voice_method: "POST".into(),
            sms_url: None,
            sms_method: "POST".into(),
            status_callback: None,
            voice_caller_id_lookup: false,
            emergency_address_sid: None,
            date_created: now.clone(),
            date_updated: now,
        });
        sid
    }

    /// The number record for `e164`.
    pub fn number(&self, e164: &str) -> Option<Number> {
        self.world()
            .numbers
            .iter()
            .find(|n| n.phone_number == e164)
            .cloned()
    }

    /// Replaces the injected faults.
    pub fn faults(&self, f: Faults) {
        self.world().faults = f;
    }

    /// Webhooks for URLs starting with `public` are sent to `actual` instead
    /// (signed over the public URL), like a reverse proxy in front of webd.
    pub fn route_public_to(&self, public: &str, actual: &str) {
        self.world().route = Some((
            public.trim_end_matches('/').to_owned(),
            actual.trim_end_matches('/').to_owned(),
        ));
    }

    /// REST requests received so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.world().log.clone()
    }

    /// How many times the number list was answered with 200.
    pub fn listings(&self) -> usize {
        self.world()
            .log
            .iter()
            .filter(|r| r.path.ends_with("IncomingPhoneNumbers.json") && r.status == 200)
            .count()
    }

    /// Waits (up to 10 s) until the number list has been answered more than
    /// `seen` times: twiliod lists our numbers at start and after a settings
    /// change (status warnings), and a test that counts requests or sets
    /// faults waits that listing out first.
    pub async fn wait_listed_after(&self, seen: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.listings() <= seen {
            assert!(
                std::time::Instant::now() < deadline,
                "twiliod never listed the numbers at Twilio"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The signature Twilio would send for `url` and `params`.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        let (bad, with_port) = {
            let w = self.world();
            (w.faults.bad_signature, w.faults.sign_with_port)
        };
        let url = if with_port {
            add_default_port(url)
        } else {
            url.to_owned()
        };
        let key = if bad {
            format!("{}-wrong", self.auth_token)
        } else {
            self.auth_token.clone()
        };
        signature(&key, &url, params)
    }

    /// POSTs a signed form webhook to the public `url` (delivered through
    /// the route); returns the status and body.
    pub async fn post_webhook(
        &self,
        url: &str,
        params: &[(String, String)],
    ) -> anyhow::Result<(u16, String)> {
        let sig = self.sign(url, params);
        let target = self.deliver_url(url);
        let resp = self
            .http
            .post(&target)
            .header("X-Twilio-Signature", sig)
            .header("I-Twilio-Idempotency-Token", uuid_like())
            .form(params)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    fn deliver_url(&self, url: &str) -> String {
        match &self.world().route {
            Some((public, actual)) if url.starts_with(public.as_str()) => {
                format!("{actual}{}", &url[public.len()..])
            }
            _ => url.to_owned(),
        }
    }

    /// `{base}/2010-04-01/Accounts/{AC}`.
    pub fn account_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}", self.base_url, self.account_sid)
    }
}

/// Twilio's signature (CONTRACT.md §1.1), written independently of twiliod's.
pub fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut p: Vec<&(String, String)> = params.iter().collect();
    p.sort();
    let mut s = url.to_owned();
    for (k, v) in p {
        s.push_str(k);
        s.push_str(v);
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("hmac key");
    mac.update(s.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `https://h/x` -> `https://h:443/x`.
pub fn add_default_port(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, tail) = rest.split_at(end);
    if host.contains(':') {
        return url.to_owned();
    }
    let port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    format!("{scheme}://{host}:{port}{tail}")
}

/// A random Twilio SID: prefix + 32 lowercase hex digits.
pub fn new_sid(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}{n:032x}")
}

fn uuid_like() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// Now as Twilio formats dates (RFC 2822, `+0000`).
pub fn rfc2822_now() -> String {
    chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S +0000")
        .to_string()
}

fn format_friendly(e164: &str) -> String {
    let d = e164.trim_start_matches('+');
    if d.len() == 11 && d.starts_with('1') {
        format!("({}) {}-{}", &d[1..4], &d[4..7], &d[7..])
    } else {
        e164.to_owned()
    }
}
