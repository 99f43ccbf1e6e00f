//! The stand-in's Elastic SIP Trunking resources, as far as GoSIP's
//! "set up Twilio for me" uses them: SIP credential lists and their
//! credentials (`/2010-04-01/Accounts/{AC}/SIP/CredentialLists...`) and
//! trunks with their credential lists and origination URLs (`/v1/Trunks...`,
//! served on the same base URL). Credentials of a list bound to a trunk are
//! accepted by the stand-in's termination side ([`super::trunk`]).

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::rest::{IntoOk, error, not_found, path_for};
use super::{Standin, new_sid, rfc2822_now};

#[derive(Debug, Default)]
pub struct TrunkingWorld {
    pub trunks: Vec<TrunkRes>,
    pub credential_lists: Vec<CredList>,
}

#[derive(Debug, Clone)]
pub struct TrunkRes {
    pub sid: String,
    pub friendly_name: String,
    pub domain_name: String,
    pub credential_lists: Vec<String>,
    pub origination_urls: Vec<Origination>,
    pub date_created: String,
}

#[derive(Debug, Clone)]
pub struct Origination {
    pub sid: String,
    pub friendly_name: String,
    pub sip_url: String,
    pub priority: u32,
    pub weight: u32,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct CredList {
    pub sid: String,
    pub friendly_name: String,
    pub credentials: Vec<Cred>,
}

#[derive(Debug, Clone)]
pub struct Cred {
    pub sid: String,
    pub username: String,
    pub password: String,
}

impl TrunkingWorld {
    /// (username, password) of every credential in a list bound to a trunk.
    pub fn trunk_credentials(&self) -> Vec<(String, String)> {
        self.trunks
            .iter()
            .flat_map(|t| t.credential_lists.iter())
            .filter_map(|cl| self.credential_lists.iter().find(|l| &l.sid == cl))
            .flat_map(|l| l.credentials.iter())
            .map(|c| (c.username.clone(), c.password.clone()))
            .collect()
    }
}

fn get<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn missing(param: &str) -> Response {
    error(400, 21201, &format!("Required parameter {param} missing"))
}

fn list_json(s: &Standin, l: &CredList) -> Value {
    json!({
        "account_sid": s.account_sid, "sid": l.sid, "friendly_name": l.friendly_name,
        "date_created": rfc2822_now(), "date_updated": rfc2822_now(),
        "uri": path_for(s, &format!("SIP/CredentialLists/{}.json", l.sid)),
        "subresource_uris": {"credentials": path_for(s, &format!("SIP/CredentialLists/{}/Credentials.json", l.sid))},
    })
}

fn cred_json(s: &Standin, list: &str, c: &Cred) -> Value {
    json!({
        "account_sid": s.account_sid, "sid": c.sid, "credential_list_sid": list,
        "username": c.username, "date_created": rfc2822_now(), "date_updated": rfc2822_now(),
        "uri": path_for(s, &format!("SIP/CredentialLists/{list}/Credentials/{}.json", c.sid)),
    })
}

/// Twilio's rule for SIP credential passwords: at least 12 characters with
/// an upper-case letter, a lower-case letter and a digit.
fn strong(p: &str) -> bool {
    p.len() >= 12
        && p.bytes().any(|b| b.is_ascii_uppercase())
        && p.bytes().any(|b| b.is_ascii_lowercase())
        && p.bytes().any(|b| b.is_ascii_digit())
}

/// `/2010-04-01/Accounts/{AC}/SIP/...` (segments after `SIP`).
pub fn handle_sip(s: &Standin, m: &Method, segs: &[&str], form: &[(String, String)]) -> Response {
    let mut w = s.world();
    let tw = &mut w.trunking;
    match (m.clone(), segs) {
        (Method::GET, ["CredentialLists.json"]) => {
            let lists: Vec<Value> = tw
                .credential_lists
                .iter()
                .map(|l| list_json(s, l))
                .collect();
            json!({"credential_lists": lists, "page": 0, "page_size": 50, "start": 0,
                   "end": lists.len().saturating_sub(1), "next_page_uri": null,
                   "uri": path_for(s, "SIP/CredentialLists.json")})
            .into_ok()
        }
        (Method::POST, ["CredentialLists.json"]) => {
            let Some(name) = get(form, "FriendlyName") else {
                return missing("FriendlyName");
            };
            let l = CredList {
                sid: new_sid("CL"),
                friendly_name: name.to_owned(),
                credentials: vec![],
            };
            let body = list_json(s, &l);
            tw.credential_lists.push(l);
            (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
        }
        (m, ["CredentialLists", cl, "Credentials.json"]) => {
            let Some(l) = tw.credential_lists.iter_mut().find(|l| l.sid == *cl) else {
                return not_found(path_for(s, &format!("SIP/CredentialLists/{cl}.json")));
            };
            if m == Method::GET {
                let creds: Vec<Value> = l.credentials.iter().map(|c| cred_json(s, cl, c)).collect();
                return json!({"credentials": creds, "page": 0, "page_size": 50, "start": 0,
                              "end": creds.len().saturating_sub(1), "next_page_uri": null})
                .into_ok();
            }
            let (Some(user), Some(pass)) = (get(form, "Username"), get(form, "Password")) else {
                return missing("Username and Password");
            };
            if !strong(pass) {
                return error(
                    400,
                    21201,
                    "Password must be at least 12 characters long and contain an uppercase letter, a lowercase letter and a number",
                );
            }
            if l.credentials.iter().any(|c| c.username == user) {
                return error(409, 21201, "A credential with this Username already exists");
            }
            let c = Cred {
                sid: new_sid("CR"),
                username: user.to_owned(),
                password: pass.to_owned(),
            };
            let body = cred_json(s, cl, &c);
            l.credentials.push(c);
            (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
        }
        (Method::DELETE, ["CredentialLists", cl, "Credentials", file]) => {
            let sid = file.trim_end_matches(".json");
            let Some(l) = tw.credential_lists.iter_mut().find(|l| l.sid == *cl) else {
                return not_found(path_for(s, &format!("SIP/CredentialLists/{cl}.json")));
            };
            let before = l.credentials.len();
            l.credentials.retain(|c| c.sid != sid);
            if l.credentials.len() == before {
                return not_found(path_for(
                    s,
                    &format!("SIP/CredentialLists/{cl}/Credentials/{sid}.json"),
                ));
            }
            axum::http::StatusCode::NO_CONTENT.into_response()
        }
        _ => not_found(format!(
            "/2010-04-01/Accounts/{}/SIP/{}",
            s.account_sid,
            segs.join("/")
        )),
    }
}

fn trunk_json(t: &TrunkRes) -> Value {
    json!({
        "sid": t.sid, "friendly_name": t.friendly_name, "domain_name": t.domain_name,
        "date_created": t.date_created, "secure": false, "cnam_lookup_enabled": false,
        "url": format!("https://trunking.twilio.com/v1/Trunks/{}", t.sid),
    })
}

fn origination_json(t: &str, o: &Origination) -> Value {
    json!({
        "sid": o.sid, "trunk_sid": t, "friendly_name": o.friendly_name, "sip_url": o.sip_url,
        "priority": o.priority, "weight": o.weight, "enabled": o.enabled,
    })
}

/// The `meta` block of a v1 list page (one page holds everything).
fn meta(key: &str, n: usize) -> Value {
    json!({"page": 0, "page_size": 50, "first_page_url": null, "next_page_url": null, "key": key, "count": n})
}

/// `/v1/Trunks...` (the path after `/v1/Trunks`).
pub fn handle_v1(s: &Standin, m: &Method, rest: &str, form: &[(String, String)]) -> Response {
    let segs: Vec<&str> = rest.split('/').filter(|x| !x.is_empty()).collect();
    let mut w = s.world();
    let tw = &mut w.trunking;
    match (m.clone(), segs.as_slice()) {
        (Method::GET, []) => {
            let trunks: Vec<Value> = tw.trunks.iter().map(trunk_json).collect();
            let n = trunks.len();
            json!({"trunks": trunks, "meta": meta("trunks", n)}).into_ok()
        }
        (Method::POST, []) => create_trunk(tw, form),
        (m, [tk, sub]) => trunk_subresource(tw, m, tk, sub, form),
        _ => error(404, 20404, "The requested resource was not found"),
    }
}

/// `POST /v1/Trunks`: the domain name, when given, must be a free
/// `*.pstn.twilio.com` name.
fn create_trunk(tw: &mut TrunkingWorld, form: &[(String, String)]) -> Response {
    let domain = get(form, "DomainName").unwrap_or_default().to_owned();
    if !domain.is_empty() && !domain.ends_with(".pstn.twilio.com") {
        return error(400, 21245, "DomainName must end with .pstn.twilio.com");
    }
    if !domain.is_empty() && tw.trunks.iter().any(|t| t.domain_name == domain) {
        return error(409, 21248, "DomainName is already in use");
    }
    let t = TrunkRes {
        sid: new_sid("TK"),
        friendly_name: get(form, "FriendlyName").unwrap_or_default().to_owned(),
        domain_name: domain,
        credential_lists: vec![],
        origination_urls: vec![],
        date_created: rfc2822_now(),
    };
    let body = trunk_json(&t);
    tw.trunks.push(t);
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}

/// `/v1/Trunks/{TK}/CredentialLists` and `.../OriginationUrls`.
fn trunk_subresource(
    tw: &mut TrunkingWorld,
    m: Method,
    tk: &str,
    sub: &str,
    form: &[(String, String)],
) -> Response {
    let lists: Vec<String> = tw.credential_lists.iter().map(|l| l.sid.clone()).collect();
    let Some(t) = tw.trunks.iter_mut().find(|t| t.sid == tk) else {
        return error(
            404,
            20404,
            &format!("The requested resource /Trunks/{tk} was not found"),
        );
    };
    match (m, sub) {
        (Method::GET, "CredentialLists") => {
            let v: Vec<Value> = t
                .credential_lists
                .iter()
                .map(|cl| json!({"sid": cl, "trunk_sid": t.sid}))
                .collect();
            let n = v.len();
            json!({"credential_lists": v, "meta": meta("credential_lists", n)}).into_ok()
        }
        (Method::POST, "CredentialLists") => bind_credential_list(t, &lists, form),
        (Method::GET, "OriginationUrls") => {
            let v: Vec<Value> = t
                .origination_urls
                .iter()
                .map(|o| origination_json(&t.sid, o))
                .collect();
            let n = v.len();
            json!({"origination_urls": v, "meta": meta("origination_urls", n)}).into_ok()
        }
        (Method::POST, "OriginationUrls") => add_origination(t, form),
        _ => error(404, 20404, "The requested resource was not found"),
    }
}

/// Binds an existing credential list (`lists`: every list's SID) to the
/// trunk, once.
fn bind_credential_list(t: &mut TrunkRes, lists: &[String], form: &[(String, String)]) -> Response {
    let Some(cl) = get(form, "CredentialListSid") else {
        return missing("CredentialListSid");
    };
    if !lists.iter().any(|l| l == cl) {
        return error(
            404,
            20404,
            &format!("The requested resource {cl} was not found"),
        );
    }
    if t.credential_lists.iter().any(|l| l == cl) {
        return error(
            409,
            21217,
            "Credential list is already associated with this trunk",
        );
    }
    t.credential_lists.push(cl.to_owned());
    (
        axum::http::StatusCode::CREATED,
        axum::Json(json!({"sid": cl, "trunk_sid": t.sid})),
    )
        .into_response()
}

/// Adds an origination URL (a `sip:` URI; priority and weight default to
/// 10, enabled unless `Enabled=false`).
fn add_origination(t: &mut TrunkRes, form: &[(String, String)]) -> Response {
    let Some(url) = get(form, "SipUrl") else {
        return missing("SipUrl");
    };
    if !url.starts_with("sip:") {
        return error(400, 21201, "SipUrl must be a sip: URI");
    }
    let num = |k: &str| get(form, k).and_then(|v| v.parse().ok()).unwrap_or(10);
    let o = Origination {
        sid: new_sid("OU"),
        friendly_name: get(form, "FriendlyName").unwrap_or_default().to_owned(),
        sip_url: url.to_owned(),
        priority: num("Priority"),
        weight: num("Weight"),
        enabled: get(form, "Enabled") != Some("false"),
    };
    let body = origination_json(&t.sid, &o);
    t.origination_urls.push(o);
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}
