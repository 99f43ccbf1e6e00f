//! The stand-in's Messages resource and MMS media (CONTRACT.md §2.7, §2.8, §4).
//!
//! * `POST Messages.json`: Twilio's validation and error codes (21604 no To,
//!   21211 invalid To, 21603/21606 From not ours, 21602 no body or media,
//!   21617 body over 1,600 characters, 21610 recipient opted out with STOP),
//!   201 with the message JSON (strings where Twilio has strings, RFC 2822
//!   dates). Then, like Twilio, it fetches every `MediaUrl` (failure ->
//!   `failed` with 11200) and reports `sent` and `delivered` to the
//!   `StatusCallback`, signed; per-recipient delivery errors (30003, 30007 ...)
//!   end in `undelivered` with `ErrorCode`.
//! * `GET Messages.json` (`To`, `From`, `PageSize`; newest first) and
//!   `GET Messages/{SM}.json`.
//! * `GET Messages/{MM}/Media/{ME}`: the media of inbound MMS, behind Basic
//!   auth ("Enforce HTTP Auth on Media URLs" on, as the dispatcher checks
//!   credentials for every account path).
//! * [`Standin::send_sms`]: an inbound message from a handset to one of our
//!   numbers: stored, STOP/START/HELP applied to the opt-out list (then, as
//!   Twilio does, still delivered to the webhook), and posted signed to the
//!   number's SMS URL.
//! * Faults of its own ([`SmsFaults`]): answer 500 *after* creating a message
//!   (the "did it or didn't it" case), duplicate or reversed status callbacks.

use std::collections::{HashMap, HashSet};

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::rest::error;
use super::{Standin, new_sid, rfc2822_now};

/// One message, either direction.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub sid: String,
    pub direction: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status: String,
    pub num_media: usize,
    pub num_segments: usize,
    pub media_urls: Vec<String>,
    pub status_callback: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub date_created: String,
    pub date_updated: String,
    pub date_sent: Option<String>,
    /// Outbound: what fetching each MediaUrl gave (content type, bytes).
    pub fetched_media: Vec<(String, usize)>,
}

/// A media item of an inbound MMS.
#[derive(Debug, Clone)]
pub struct Media {
    pub sid: String,
    pub message_sid: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Faults specific to messaging.
#[derive(Debug, Clone, Default)]
pub struct SmsFaults {
    /// Create the message, then answer 500 (next N creates).
    pub fail_after_create: u32,
    /// Create the message, then hold the answer this long (next create
    /// only): time for a test to kill the sender mid-request.
    pub slow_create_ms: Option<u64>,
    /// Send every status callback twice.
    pub duplicate_callbacks: bool,
    /// Send `delivered` before `sent`.
    pub reversed_callbacks: bool,
    /// Recipient -> delivery error code (30003, 30005, 30007 ...): accepted,
    /// then `undelivered` with that ErrorCode.
    pub delivery_errors: HashMap<String, i64>,
    /// Recipient -> error code answered at once (400), e.g. 21211.
    pub refuse: HashMap<String, i64>,
}

/// The messaging part of the stand-in's world.
#[derive(Debug, Default)]
pub struct SmsWorld {
    pub messages: Vec<Message>,
    pub media: Vec<Media>,
    /// (our number, handset) pairs that texted STOP.
    pub opt_outs: HashSet<(String, String)>,
    pub faults: SmsFaults,
    /// Status callbacks sent: (MessageSid, MessageStatus, HTTP status).
    pub callbacks: Vec<(String, String, u16)>,
}

/// Handles `/Messages...` below the account (after auth and generic faults).
pub async fn handle(
    s: &Standin,
    method: &Method,
    segs: &[&str],
    form: &[(String, String)],
) -> Response {
    match (method.clone(), segs) {
        (Method::POST, ["Messages.json"]) => {
            let slow = s.world().sms.faults.slow_create_ms.take();
            let resp = create(s, form);
            if let Some(ms) = slow {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            resp
        }
        (Method::GET, ["Messages.json"]) => list(s, form),
        (Method::GET, ["Messages", file]) => {
            let sid = file.trim_end_matches(".json");
            let m = s
                .world()
                .sms
                .messages
                .iter()
                .find(|m| m.sid == sid)
                .cloned();
            match m {
                Some(m) => ok(message_json(s, &m)),
                None => not_found(s, &format!("Messages/{sid}.json")),
            }
        }
        (Method::GET, ["Messages", msg, "Media", me]) => {
            let me = me.trim_end_matches(".json");
            let media = s
                .world()
                .sms
                .media
                .iter()
                .find(|m| m.sid == me && m.message_sid == *msg)
                .cloned();
            match media {
                Some(m) => ([(header::CONTENT_TYPE, m.content_type)], m.bytes).into_response(),
                None => not_found(s, &format!("Messages/{msg}/Media/{me}")),
            }
        }
        _ => error(405, 20004, "Method not allowed"),
    }
}

fn ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn not_found(s: &Standin, tail: &str) -> Response {
    error(
        404,
        20404,
        &format!(
            "The requested resource /2010-04-01/Accounts/{}/{tail} was not found",
            s.account_sid
        ),
    )
}

fn is_e164(n: &str) -> bool {
    n.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// GSM-7 basic set (and its extension table) fit 160/153 characters per
/// segment; anything else is UCS-2 at 70/67.
pub fn segments(body: &str) -> usize {
    const GSM: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€";
    let gsm = body.chars().all(|c| GSM.contains(c));
    let n = if gsm {
        body.chars()
            .map(|c| if "^{}\\[~]|€".contains(c) { 2 } else { 1 })
            .sum::<usize>()
    } else {
        body.encode_utf16().count()
    };
    let (single, multi) = if gsm { (160, 153) } else { (70, 67) };
    if n <= single { 1 } else { n.div_ceil(multi) }
}

fn create(s: &Standin, form: &[(String, String)]) -> Response {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let to = get("To").unwrap_or("").trim().to_owned();
    let from = get("From").unwrap_or("").trim().to_owned();
    let body = get("Body").unwrap_or("").to_owned();
    let media: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "MediaUrl")
        .map(|(_, v)| v.clone())
        .collect();
    if to.is_empty() {
        return error(400, 21604, "A 'To' phone number is required.");
    }
    if from.is_empty() && get("MessagingServiceSid").is_none() {
        return error(400, 21603, "A 'From' phone number is required.");
    }
    if !is_e164(&to) {
        return error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let owned = s.world().numbers.iter().any(|n| n.phone_number == from);
    if !owned {
        return error(
            400,
            21606,
            &format!(
                "The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."
            ),
        );
    }
    if body.is_empty() && media.is_empty() {
        return error(400, 21602, "Message body is required.");
    }
    if body.chars().count() > 1600 {
        return error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    if media.len() > 10 {
        return error(400, 21623, "Number of media files exceeds allowed limit.");
    }
    let (refused, opted_out) = {
        let w = s.world();
        (
            w.sms.faults.refuse.get(&to).copied(),
            w.sms.opt_outs.contains(&(from.clone(), to.clone())),
        )
    };
    if opted_out {
        return error(400, 21610, "Attempt to send to unsubscribed recipient");
    }
    if let Some(code) = refused {
        return error(400, code, "Message refused");
    }
    let now = rfc2822_now();
    let msg = Message {
        sid: new_sid(if media.is_empty() { "SM" } else { "MM" }),
        direction: "outbound-api".into(),
        from,
        to,
        num_segments: segments(&body),
        body,
        status: "queued".into(),
        num_media: media.len(),
        media_urls: media,
        status_callback: get("StatusCallback").map(str::to_owned),
        error_code: None,
        error_message: None,
        date_created: now.clone(),
        date_updated: now,
        date_sent: None,
        fetched_media: vec![],
    };
    let v = message_json(s, &msg);
    let fail_after = {
        let mut w = s.world();
        w.sms.messages.push(msg.clone());
        let f = &mut w.sms.faults;
        if f.fail_after_create > 0 {
            f.fail_after_create -= 1;
            true
        } else {
            false
        }
    };
    let s2 = s.clone();
    tokio::spawn(async move { deliver(&s2, msg.sid.clone()).await });
    if fail_after {
        return error(500, 20500, "Internal Server Error");
    }
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

/// What happens after Twilio accepted a message: media fetched, then the
/// status callbacks.
async fn deliver(s: &Standin, sid: String) {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let Some(msg) = s
        .world()
        .sms
        .messages
        .iter()
        .find(|m| m.sid == sid)
        .cloned()
    else {
        return;
    };
    let mut fetched = Vec::new();
    let mut media_error = None;
    for url in &msg.media_urls {
        match reqwest::get(url).await {
            Ok(r) if r.status().is_success() => {
                let ct = r
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let n = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                fetched.push((ct, n));
            }
            Ok(r) => {
                media_error = Some(format!("media {url}: HTTP {}", r.status()));
                fetched.push((String::new(), 0));
            }
            Err(e) => {
                media_error = Some(format!("media {url}: {e}"));
                fetched.push((String::new(), 0));
            }
        }
    }
    let delivery_error = s.world().sms.faults.delivery_errors.get(&msg.to).copied();
    let finals: Vec<(&str, Option<i64>)> = if media_error.is_some() {
        vec![("failed", Some(11200))]
    } else if let Some(code) = delivery_error {
        vec![("sent", None), ("undelivered", Some(code))]
    } else {
        vec![("sent", None), ("delivered", None)]
    };
    {
        let mut w = s.world();
        if let Some(m) = w.sms.messages.iter_mut().find(|m| m.sid == sid) {
            m.fetched_media = fetched;
            let (last, code) = finals[finals.len() - 1];
            m.status = last.to_owned();
            m.error_code = code;
            m.error_message = media_error.clone();
            m.date_sent = Some(rfc2822_now());
            m.date_updated = rfc2822_now();
        }
    }
    let Some(cb) = msg.status_callback.clone() else {
        return;
    };
    let (dup, rev) = {
        let w = s.world();
        (
            w.sms.faults.duplicate_callbacks,
            w.sms.faults.reversed_callbacks,
        )
    };
    let mut order = finals.clone();
    if rev {
        order.reverse();
    }
    for (status, code) in order {
        for _ in 0..if dup { 2 } else { 1 } {
            let mut p: Vec<(String, String)> = vec![
                ("MessageSid".into(), msg.sid.clone()),
                ("SmsSid".into(), msg.sid.clone()),
                ("AccountSid".into(), s.account_sid.clone()),
                ("From".into(), msg.from.clone()),
                ("To".into(), msg.to.clone()),
                ("MessageStatus".into(), status.into()),
                ("SmsStatus".into(), status.into()),
                ("ApiVersion".into(), "2010-04-01".into()),
            ];
            if let Some(c) = code {
                p.push(("ErrorCode".into(), c.to_string()));
            }
            let http = s.post_webhook(&cb, &p).await.map(|r| r.0).unwrap_or(0);
            s.world()
                .sms
                .callbacks
                .push((msg.sid.clone(), status.to_owned(), http));
        }
    }
}

fn list(s: &Standin, form: &[(String, String)]) -> Response {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page_size: usize = get("PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let to = get("To").map(str::to_owned);
    let from = get("From").map(str::to_owned);
    let items: Vec<Value> = {
        let w = s.world();
        w.sms
            .messages
            .iter()
            .rev()
            .filter(|m| to.as_deref().is_none_or(|t| m.to == t))
            .filter(|m| from.as_deref().is_none_or(|f| m.from == f))
            .take(page_size)
            .cloned()
            .collect::<Vec<_>>()
    }
    .iter()
    .map(|m| message_json(s, m))
    .collect();
    let base = format!("/2010-04-01/Accounts/{}/Messages.json", s.account_sid);
    ok(json!({
        "messages": items,
        "page": 0, "page_size": page_size, "start": 0,
        "end": items.len().saturating_sub(1),
        "uri": format!("{base}?PageSize={page_size}&Page=0"),
        "first_page_uri": format!("{base}?PageSize={page_size}&Page=0"),
        "next_page_uri": null, "previous_page_uri": null,
    }))
}

/// A message as Twilio's JSON (field names and types of the 2010 spec).
pub fn message_json(s: &Standin, m: &Message) -> Value {
    let path = format!("/2010-04-01/Accounts/{}/Messages/{}", s.account_sid, m.sid);
    json!({
        "account_sid": s.account_sid, "api_version": "2010-04-01", "body": m.body,
        "date_created": m.date_created, "date_sent": m.date_sent, "date_updated": m.date_updated,
        "direction": m.direction, "error_code": m.error_code, "error_message": m.error_message,
        "from": m.from, "messaging_service_sid": null, "num_media": m.num_media.to_string(),
        "num_segments": m.num_segments.to_string(), "price": null, "price_unit": "USD",
        "sid": m.sid, "status": m.status, "to": m.to,
        "subresource_uris": {"media": format!("{path}/Media.json"), "feedback": format!("{path}/Feedback.json")},
        "uri": format!("{path}.json"),
    })
}

/// Body of `POST /_control/sms` (demo scripts): a handset texts one of our
/// numbers; media are given inline as `{"content_type", "base64"}`.
#[derive(Debug, serde::Deserialize)]
pub struct ControlSms {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub body: String,
    /// Where to post; default: the number's SmsUrl.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub media: Vec<ControlMedia>,
}

/// One inline media item of [`ControlSms`].
#[derive(Debug, serde::Deserialize)]
pub struct ControlMedia {
    pub content_type: String,
    pub base64: String,
}

/// `POST /_control/sms`.
pub async fn control_sms(
    axum::extract::State(s): axum::extract::State<Standin>,
    axum::Json(c): axum::Json<ControlSms>,
) -> Response {
    use base64::Engine;
    let mut media = Vec::new();
    for m in c.media {
        match base64::engine::general_purpose::STANDARD.decode(m.base64.trim()) {
            Ok(b) => media.push((m.content_type, b)),
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    }
    match s
        .send_sms(c.url.as_deref(), &c.from, &c.to, &c.body, media)
        .await
    {
        Ok((sid, status, answer)) => {
            axum::Json(json!({"sid": sid, "status": status, "answer": answer})).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}

impl Standin {
    /// A handset `from` texts our number `to` with `body` and media
    /// `(content type, bytes)`; the signed webhook goes to `sms_url` (or the
    /// number's SmsUrl). Returns the MessageSid and twiliod's answer.
    pub async fn send_sms(
        &self,
        sms_url: Option<&str>,
        from: &str,
        to: &str,
        body: &str,
        media: Vec<(String, Vec<u8>)>,
    ) -> anyhow::Result<(String, u16, String)> {
        let sid = new_sid(if media.is_empty() { "SM" } else { "MM" });
        let now = rfc2822_now();
        let url = match sms_url {
            Some(u) => u.to_owned(),
            None => self
                .number(to)
                .and_then(|n| n.sms_url)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| anyhow::anyhow!("{to} has no SmsUrl"))?,
        };
        let mut p: Vec<(String, String)> = vec![
            ("ToCountry".into(), "US".into()),
            ("ToState".into(), String::new()),
            ("SmsMessageSid".into(), sid.clone()),
            ("NumMedia".into(), media.len().to_string()),
            ("ToCity".into(), String::new()),
            ("FromZip".into(), String::new()),
            ("SmsSid".into(), sid.clone()),
            ("FromState".into(), String::new()),
            ("SmsStatus".into(), "received".into()),
            ("FromCity".into(), String::new()),
            ("Body".into(), body.to_owned()),
            ("FromCountry".into(), "US".into()),
            ("To".into(), to.to_owned()),
            ("ToZip".into(), String::new()),
            ("NumSegments".into(), segments(body).to_string()),
            ("MessageSid".into(), sid.clone()),
            ("AccountSid".into(), self.account_sid.clone()),
            ("From".into(), from.to_owned()),
            ("ApiVersion".into(), "2010-04-01".into()),
        ];
        {
            let mut w = self.world();
            for (i, (ct, bytes)) in media.iter().enumerate() {
                let me = new_sid("ME");
                p.push((format!("MediaContentType{i}"), ct.clone()));
                p.push((
                    format!("MediaUrl{i}"),
                    format!("{}/Messages/{sid}/Media/{me}", self.account_url()),
                ));
                w.sms.media.push(Media {
                    sid: me,
                    message_sid: sid.clone(),
                    content_type: ct.clone(),
                    bytes: bytes.clone(),
                });
            }
            // Twilio's opt-out handling happens before the webhook.
            let word = body
                .trim()
                .trim_matches(|c: char| c.is_ascii_punctuation())
                .to_ascii_uppercase();
            let pair = (to.to_owned(), from.to_owned());
            match word.as_str() {
                "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT"
                | "REVOKE" => {
                    w.sms.opt_outs.insert(pair);
                }
                "START" | "YES" | "UNSTOP" => {
                    w.sms.opt_outs.remove(&pair);
                }
                _ => {}
            }
            w.sms.messages.push(Message {
                sid: sid.clone(),
                direction: "inbound".into(),
                from: from.to_owned(),
                to: to.to_owned(),
                body: body.to_owned(),
                status: "received".into(),
                num_media: media.len(),
                num_segments: segments(body),
                media_urls: vec![],
                status_callback: None,
                error_code: None,
                error_message: None,
                date_created: now.clone(),
                date_updated: now,
                date_sent: None,
                fetched_media: vec![],
            });
        }
        let (status, answer) = self.post_webhook(&url, &p).await?;
        Ok((sid, status, answer))
    }

    /// Outbound messages created over REST, oldest first.
    pub fn sent_messages(&self) -> Vec<Message> {
        self.world()
            .sms
            .messages
            .iter()
            .filter(|m| m.direction == "outbound-api")
            .cloned()
            .collect()
    }

    /// Changes the messaging faults.
    pub fn sms_faults(&self, f: impl FnOnce(&mut SmsFaults)) {
        f(&mut self.world().sms.faults);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_gsm7_and_ucs2_limits() {
        assert_eq!(segments("hello"), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(1600)), 11);
        assert_eq!(segments(&"é".repeat(160)), 1);
        assert_eq!(segments(&"ü€".repeat(53)), 1);
        assert_eq!(segments("héllo 👋"), 1);
        assert_eq!(segments(&"ж".repeat(71)), 2);
    }
}
