//! The stand-in's REST side: one dispatcher over `/2010-04-01/Accounts/...`
//! (manual path matching, since Twilio paths end in `.json`/`.wav`), Basic
//! auth, fault injection and Twilio's error JSON; plus `/_control/*`.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use super::{Faults, Logged, Standin, new_sid, rfc2822_now, wav};

pub fn router(s: Standin) -> Router {
    Router::new()
        .route("/_control/faults", post(set_faults).get(get_faults))
        .route("/_control/requests", get(list_requests))
        .route("/_control/numbers", post(add_number))
        .route("/_control/call", post(run_call))
        .route("/_control/sms", post(super::messages::control_sms))
        .route("/_control/trunk", get(trunk_calls))
        .fallback(dispatch)
        .with_state(s)
}

/// Twilio's error body.
pub fn error(status: u16, code: i64, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let st = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (st, axum::Json(body)).into_response()
}

async fn dispatch(
    State(s): State<Standin>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let mut form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if let Some(q) = uri.query() {
        form.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    let resp = handle(&s, &method, &path, &headers, &form).await;
    s.world().log.push(Logged {
        method: method.to_string(),
        path,
        form,
        status: resp.status().as_u16(),
    });
    resp
}

async fn handle(
    s: &Standin,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Response {
    if let Some(r) = inject_fault(s).await {
        return r;
    }
    if let Some(rest) = path.strip_prefix("/v1/Trunks") {
        if !authorized(s, headers) {
            return error(401, 20003, "Authenticate");
        }
        return super::trunking::handle_v1(s, method, rest, form);
    }
    let Some(rest) = path.strip_prefix("/2010-04-01/Accounts/") else {
        return error(404, 20404, "The requested resource was not found");
    };
    if !authorized(s, headers) {
        return error(401, 20003, "Authenticate");
    }
    let (acct, sub) = match rest.split_once('/') {
        Some((a, b)) => (a, b),
        None => (rest, ""),
    };
    let acct = acct.trim_end_matches(".json");
    if acct != s.account_sid {
        return error(
            404,
            20404,
            &format!("The requested resource /2010-04-01/Accounts/{acct} was not found"),
        );
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let segs: Vec<&str> = sub.split('/').filter(|x| !x.is_empty()).collect();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, []) => account_json(s).into_ok(),
        (Method::GET, ["IncomingPhoneNumbers.json"]) => list_numbers(s, form),
        (Method::POST, ["IncomingPhoneNumbers", file]) => {
            update_number(s, file.trim_end_matches(".json"), form)
        }
        (Method::GET, ["IncomingPhoneNumbers", file]) => {
            let sid = file.trim_end_matches(".json");
            match s.world().numbers.iter().find(|n| n.sid == sid) {
                Some(n) => number_json(s, n).into_ok(),
                None => not_found(path_for(s, &format!("IncomingPhoneNumbers/{sid}.json"))),
            }
        }
        (Method::POST, ["Calls.json"]) => create_call(s, get),
        (Method::GET, ["Calls.json"]) => {
            let calls: Vec<Value> = s.world().calls.iter().map(|c| call_json(s, c)).collect();
            json!({"calls": calls, "page": 0, "page_size": 50, "start": 0, "end": calls.len().saturating_sub(1),
                   "uri": path_for(s, "Calls.json"), "first_page_uri": path_for(s, "Calls.json?PageSize=50&Page=0"),
                   "next_page_uri": null, "previous_page_uri": null})
            .into_ok()
        }
        (Method::GET, ["Calls", file]) => {
            let sid = file.trim_end_matches(".json");
            match s.world().calls.iter().find(|c| c.sid == sid) {
                Some(c) => call_json(s, c).into_ok(),
                None => not_found(path_for(s, &format!("Calls/{sid}.json"))),
            }
        }
        (m, ["Recordings", file]) => recording(s, m, file),
        (Method::GET, ["Transcriptions", file]) => {
            let sid = file.trim_end_matches(".json").trim_end_matches(".txt");
            let w = s.world();
            match w.transcriptions.iter().find(|t| t.sid == sid) {
                Some(t) if file.ends_with(".txt") => {
                    t.text.clone().unwrap_or_default().into_response()
                }
                Some(t) => json!({
                    "account_sid": s.account_sid, "api_version": "2010-04-01",
                    "date_created": t.date_created, "date_updated": t.date_created,
                    "duration": t.duration.to_string(), "price": null, "price_unit": "USD",
                    "recording_sid": t.recording_sid, "sid": t.sid, "status": t.status,
                    "transcription_text": t.text, "type": "fast",
                    "uri": path_for(s, &format!("Transcriptions/{}.json", t.sid)),
                })
                .into_ok(),
                None => not_found(path_for(s, &format!("Transcriptions/{sid}.json"))),
            }
        }
        (m, ["SIP", rest @ ..]) => super::trunking::handle_sip(s, &m, rest, form),
        // The Messages resource belongs to the SMS part of the stand-in.
        (m, [first, ..]) if first.starts_with("Messages") => {
            super::messages::handle(s, &m, &segs, form).await
        }
        _ => error(
            404,
            20404,
            &format!("The requested resource {path} was not found"),
        ),
    }
}

pub(crate) trait IntoOk {
    fn into_ok(self) -> Response;
}

impl IntoOk for Value {
    fn into_ok(self) -> Response {
        (StatusCode::OK, axum::Json(self)).into_response()
    }
}

pub(crate) fn not_found(resource: String) -> Response {
    error(
        404,
        20404,
        &format!("The requested resource {resource} was not found"),
    )
}

pub(crate) fn path_for(s: &Standin, tail: &str) -> String {
    format!("/2010-04-01/Accounts/{}/{tail}", s.account_sid)
}

async fn inject_fault(s: &Standin) -> Option<Response> {
    enum F {
        Hang(u64),
        Rate(Option<u64>),
        Server(u16),
    }
    let f = {
        let mut w = s.world();
        let f = &mut w.faults;
        if f.hang > 0 {
            f.hang -= 1;
            Some(F::Hang(f.hang_ms.unwrap_or(30_000)))
        } else if f.rate_limit > 0 {
            f.rate_limit -= 1;
            Some(F::Rate(f.retry_after))
        } else if f.server_error > 0 {
            f.server_error -= 1;
            Some(F::Server(f.server_status.unwrap_or(503)))
        } else {
            None
        }
    };
    match f? {
        F::Hang(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Some(error(503, 20500, "Service Unavailable"))
        }
        F::Rate(ra) => {
            let mut r = error(429, 20429, "Too Many Requests");
            if let Some(secs) = ra
                && let Ok(v) = secs.to_string().parse()
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(r)
        }
        F::Server(st) => Some(error(st, 20500, "Internal Server Error")),
    }
}

fn authorized(s: &Standin, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{}:{}", s.account_sid, s.auth_token).as_bytes()
}

fn account_json(s: &Standin) -> Value {
    let now = rfc2822_now();
    json!({
        "auth_token": s.auth_token, "date_created": now, "date_updated": now,
        "friendly_name": s.world().friendly_name, "owner_account_sid": s.account_sid,
        "sid": s.account_sid, "status": "active", "type": "Full",
        "subresource_uris": {"calls": path_for(s, "Calls.json"), "recordings": path_for(s, "Recordings.json")},
        "uri": format!("/2010-04-01/Accounts/{}.json", s.account_sid),
    })
}

/// A number as Twilio's JSON (field names and types of the 2010 spec).
pub fn number_json(s: &Standin, n: &super::Number) -> Value {
    json!({
        "account_sid": s.account_sid, "address_sid": null, "address_requirements": "none",
        "api_version": "2010-04-01", "beta": false,
        "capabilities": {"voice": true, "sms": true, "mms": true, "fax": false},
        "date_created": n.date_created, "date_updated": n.date_updated,
        "friendly_name": n.friendly_name, "identity_sid": null, "phone_number": n.phone_number,
        "origin": "twilio", "sid": n.sid, "sms_application_sid": "", "sms_fallback_method": "POST",
        "sms_fallback_url": "", "sms_method": n.sms_method, "sms_url": n.sms_url.clone().unwrap_or_default(),
        "status_callback": n.status_callback.clone().unwrap_or_default(), "status_callback_method": "POST",
        "trunk_sid": null, "uri": path_for(s, &format!("IncomingPhoneNumbers/{}.json", n.sid)),
        "voice_receive_mode": "voice", "voice_application_sid": null,
        "voice_caller_id_lookup": n.voice_caller_id_lookup, "voice_fallback_method": "POST",
        "voice_fallback_url": null, "voice_method": n.voice_method,
        "voice_url": n.voice_url,
        "emergency_status": if n.emergency_address_sid.is_some() { "Active" } else { "Inactive" },
        "emergency_address_sid": n.emergency_address_sid,
        "emergency_address_status":
            if n.emergency_address_sid.is_some() { "registered" } else { "unregistered" },
        "bundle_sid": null, "status": "in-use", "type": "local",
    })
}

/// A call as Twilio's JSON.
pub fn call_json(s: &Standin, c: &super::Call) -> Value {
    json!({
        "sid": c.sid, "date_created": c.date_created, "date_updated": c.date_updated,
        "parent_call_sid": null, "account_sid": s.account_sid, "to": c.to, "to_formatted": c.to,
        "from": c.from, "from_formatted": c.from, "phone_number_sid": c.phone_number_sid,
        "status": c.status, "start_time": c.start_time, "end_time": c.end_time,
        "duration": c.duration.map(|d| d.to_string()), "price": null, "price_unit": "USD",
        "direction": c.direction, "answered_by": null, "api_version": "2010-04-01",
        "forwarded_from": null, "group_sid": null, "caller_name": null, "queue_time": "0",
        "trunk_sid": null, "uri": path_for(s, &format!("Calls/{}.json", c.sid)),
        "subresource_uris": {"recordings": path_for(s, &format!("Calls/{}/Recordings.json", c.sid))},
    })
}

/// A recording as Twilio's JSON.
pub fn recording_json(s: &Standin, r: &super::Recording) -> Value {
    json!({
        "account_sid": s.account_sid, "api_version": "2010-04-01", "call_sid": r.call_sid,
        "conference_sid": null, "date_created": r.date_created, "date_updated": r.date_created,
        "start_time": r.date_created, "duration": r.duration.to_string(), "sid": r.sid,
        "price": "-0.0025", "price_unit": "USD", "status": r.status, "channels": 1,
        "source": "RecordVerb", "error_code": null,
        "uri": path_for(s, &format!("Recordings/{}.json", r.sid)), "encryption_details": null,
        "subresource_uris": {"transcriptions": path_for(s, &format!("Recordings/{}/Transcriptions.json", r.sid))},
        "media_url": format!("{}/2010-04-01/Accounts/{}/Recordings/{}", s.base_url, s.account_sid, r.sid),
    })
}

fn list_numbers(s: &Standin, form: &[(String, String)]) -> Response {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let page_size: usize = get("PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = get("Page").and_then(|v| v.parse().ok()).unwrap_or(0);
    let filter = get("PhoneNumber").map(str::to_owned);
    let all: Vec<super::Number> = s
        .world()
        .numbers
        .iter()
        .filter(|n| filter.as_deref().is_none_or(|f| n.phone_number == f))
        .cloned()
        .collect();
    let start = page * page_size;
    let items: Vec<Value> = all
        .iter()
        .skip(start)
        .take(page_size)
        .map(|n| number_json(s, n))
        .collect();
    let base = path_for(s, "IncomingPhoneNumbers.json");
    let next = (start + page_size < all.len())
        .then(|| format!("{base}?PageSize={page_size}&Page={}", page + 1));
    let prev = (page > 0).then(|| format!("{base}?PageSize={page_size}&Page={}", page - 1));
    json!({
        "incoming_phone_numbers": items,
        "page": page, "page_size": page_size, "start": start,
        "end": (start + items.len()).saturating_sub(1),
        "uri": format!("{base}?PageSize={page_size}&Page={page}"),
        "first_page_uri": format!("{base}?PageSize={page_size}&Page=0"),
        "next_page_uri": next, "previous_page_uri": prev,
    })
    .into_ok()
}

fn update_number(s: &Standin, sid: &str, form: &[(String, String)]) -> Response {
    if let Some((_, v)) = form
        .iter()
        .find(|(k, v)| k == "EmergencyAddressSid" && !v.is_empty() && !is_address_sid(v))
    {
        return error(
            404,
            20404,
            &format!("The requested resource /Addresses/{v} was not found"),
        );
    }
    let mut w = s.world();
    let Some(n) = w.numbers.iter_mut().find(|n| n.sid == sid) else {
        drop(w);
        return not_found(path_for(s, &format!("IncomingPhoneNumbers/{sid}.json")));
    };
    for (k, v) in form {
        match k.as_str() {
            "VoiceUrl" => n.voice_url = Some(v.clone()),
            "VoiceMethod" => n.voice_method = v.clone(),
            "SmsUrl" => n.sms_url = Some(v.clone()),
            "SmsMethod" => n.sms_method = v.clone(),
            "StatusCallback" => n.status_callback = Some(v.clone()),
            "FriendlyName" => n.friendly_name = v.clone(),
            "VoiceCallerIdLookup" => n.voice_caller_id_lookup = v == "true",
            // An empty value removes the address (Twilio's update semantics).
            "EmergencyAddressSid" => {
                n.emergency_address_sid = Some(v.clone()).filter(|v| !v.is_empty())
            }
            _ => {}
        }
    }
    n.date_updated = rfc2822_now();
    let n = n.clone();
    drop(w);
    number_json(s, &n).into_ok()
}

/// An Address SID as the 2010 spec's pattern has it: `^AD[0-9a-fA-F]{32}$`.
fn is_address_sid(v: &str) -> bool {
    v.len() == 34 && v.starts_with("AD") && v[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

fn create_call<'a>(s: &Standin, get: impl Fn(&str) -> Option<&'a str>) -> Response {
    let Some(to) = get("To").filter(|v| !v.is_empty()) else {
        return error(400, 21201, "No 'To' number is specified");
    };
    let Some(from) = get("From").filter(|v| !v.is_empty()) else {
        return error(400, 21213, "No 'From' number is specified");
    };
    if get("Url").is_none() && get("Twiml").is_none() && get("ApplicationSid").is_none() {
        return error(400, 21205, "Url parameter is required.");
    }
    if !to.starts_with('+') || to.len() < 9 || !to[1..].bytes().all(|b| b.is_ascii_digit()) {
        return error(400, 13224, "Invalid dial number");
    }
    let owned = s.world().numbers.iter().any(|n| n.phone_number == from);
    if !owned {
        return error(
            400,
            21210,
            "The source phone number provided is not yet verified for your account.",
        );
    }
    let now = rfc2822_now();
    let call = super::Call {
        sid: new_sid("CA"),
        from: from.to_owned(),
        to: to.to_owned(),
        status: "queued".into(),
        direction: "outbound-api".into(),
        duration: None,
        phone_number_sid: None,
        date_created: now.clone(),
        date_updated: now,
        start_time: None,
        end_time: None,
    };
    let v = call_json(s, &call);
    s.world().calls.push(call);
    (StatusCode::CREATED, axum::Json(v)).into_response()
}

fn recording(s: &Standin, m: Method, file: &str) -> Response {
    let (sid, ext) = match file.split_once('.') {
        Some((a, b)) => (a, b),
        None => (file, "wav"),
    };
    let rec = s
        .world()
        .recordings
        .iter()
        .find(|r| r.sid == sid && !r.deleted)
        .cloned();
    let Some(rec) = rec else {
        return not_found(path_for(s, &format!("Recordings/{sid}.json")));
    };
    match (m, ext) {
        (Method::GET, "json") => recording_json(s, &rec).into_ok(),
        (Method::DELETE, "json") => {
            if let Some(r) = s.world().recordings.iter_mut().find(|r| r.sid == sid) {
                r.deleted = true;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::GET, "wav") => (
            [(header::CONTENT_TYPE, "audio/x-wav")],
            wav::tone(rec.duration),
        )
            .into_response(),
        (Method::GET, "mp3") => (
            [(header::CONTENT_TYPE, "audio/mpeg")],
            wav::mp3_silence(rec.duration),
        )
            .into_response(),
        _ => error(405, 20004, "Method not allowed"),
    }
}

async fn set_faults(State(s): State<Standin>, axum::Json(patch): axum::Json<Value>) -> Response {
    let mut cur = serde_json::to_value(s.world().faults.clone()).unwrap_or_default();
    if let (Some(c), Some(p)) = (cur.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    match serde_json::from_value::<Faults>(cur) {
        Ok(f) => {
            s.world().faults = f.clone();
            axum::Json(f).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn get_faults(State(s): State<Standin>) -> Response {
    axum::Json(s.world().faults.clone()).into_response()
}

/// The termination trunk's address and its calls, each with what its far
/// party heard (PCMU payloads, base64): for tests outside Rust.
async fn trunk_calls(State(s): State<Standin>) -> Response {
    let Some(t) = s.trunk() else {
        return error(404, 20404, "no termination trunk runs (--trunk)");
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let calls: Vec<Value> = t
        .calls()
        .into_iter()
        .map(|c| {
            let heard = b64.encode(&c.heard);
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            v["heard_pcmu"] = Value::String(heard);
            v
        })
        .collect();
    axum::Json(json!({"addr": t.addr.to_string(), "calls": calls})).into_response()
}

async fn list_requests(State(s): State<Standin>) -> Response {
    axum::Json(s.requests()).into_response()
}

#[derive(serde::Deserialize)]
struct NewNumber {
    phone_number: String,
    voice_url: Option<String>,
}

async fn add_number(State(s): State<Standin>, axum::Json(n): axum::Json<NewNumber>) -> Response {
    let sid = s.add_number(&n.phone_number, n.voice_url.as_deref());
    axum::Json(json!({"sid": sid})).into_response()
}

async fn run_call(
    State(s): State<Standin>,
    Query(_q): Query<std::collections::HashMap<String, String>>,
    axum::Json(script): axum::Json<super::CallScript>,
) -> Response {
    match super::scenario::run(&s, &script).await {
        Ok(out) => axum::Json(out).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
    }
}
