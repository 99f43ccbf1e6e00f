//! A user's notification preferences (`users.notify_prefs`): what each
//! channel sends and where, in the form notifyd reads (notifyd/src/prefs.rs
//! and notifyd/README.md are the contract).
//!
//! webd always stores the fully explicit nested form: both channels with
//! `enabled` and every event kind set, plus the destinations that are set:
//!
//! ```json
//! {"email":  {"enabled": true, "voicemail": true, "sms": true, "missed_call": false,
//!             "call_started": false, "call_ended": false, "admin_alert": true,
//!             "address": "other@example.org"},
//!  "gotify": {"enabled": true, "voicemail": true, "sms": true, "missed_call": true,
//!             "call_started": false, "call_ended": false, "admin_alert": true,
//!             "url": "https://push.example.org", "token": "A..."}}
//! ```
//!
//! so notifyd's defaults and precedence rules never decide anything for data
//! written through the API. Older rows (the flat form, or nothing) are read
//! with those same rules ([`NotifyPrefs::from_stored`]) so the settings page
//! shows what notifyd really does, and an update may still use the flat form
//! (`{"email": false, "voicemail": true, "sms_email": false}`).
//!
//! The Gotify app token is a secret: it reads as [`MASK`] when set, and an
//! update that sends the mask back keeps the stored token.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use proto::ssrf::{AllowList, Refused};

use super::admin::MASK;
use crate::http::Check;

/// Event kinds a channel can switch, as notifyd names them.
pub const KINDS: [&str; 6] = [
    "voicemail",
    "sms",
    "missed_call",
    "call_started",
    "call_ended",
    "admin_alert",
];

pub const ADDRESS_MAX: usize = 254;
pub const URL_MAX: usize = 500;
pub const TOKEN_MAX: usize = 200;

/// notifyd's defaults: email for voicemail, SMS and alerts.
fn email_default(kind: &str) -> bool {
    matches!(kind, "voicemail" | "sms" | "admin_alert")
}

/// notifyd's defaults: push for voicemail, SMS, missed calls and alerts.
fn gotify_default(kind: &str) -> bool {
    matches!(kind, "voicemail" | "sms" | "missed_call" | "admin_alert")
}

/// Per event kind: send it on this channel or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Kinds {
    /// A new voicemail (with the audio and transcript by email).
    pub voicemail: bool,
    /// An SMS/MMS to one of your numbers (email also needs the number's
    /// "forward SMS to email").
    pub sms: bool,
    pub missed_call: bool,
    pub call_started: bool,
    pub call_ended: bool,
    /// System alerts (admins only).
    pub admin_alert: bool,
}

impl Kinds {
    fn get_mut(&mut self, kind: &str) -> Option<&mut bool> {
        Some(match kind {
            "voicemail" => &mut self.voicemail,
            "sms" => &mut self.sms,
            "missed_call" => &mut self.missed_call,
            "call_started" => &mut self.call_started,
            "call_ended" => &mut self.call_ended,
            "admin_alert" => &mut self.admin_alert,
            _ => return None,
        })
    }

    fn set(&mut self, kind: &str, on: bool) {
        if let Some(k) = self.get_mut(kind) {
            *k = on;
        }
    }
}

/// Email: on/off, the address and what is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct EmailPrefs {
    pub enabled: bool,
    /// Where email goes; `""` = the login address.
    pub address: String,
    #[serde(flatten)]
    pub kinds: Kinds,
}

/// Gotify push: on/off, the user's own server and what is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct GotifyPrefs {
    pub enabled: bool,
    /// The user's own Gotify server; `""` = the system's (if the admin set one).
    pub url: String,
    /// The app token for `url`: `********` when set, `""` when not.
    pub token: String,
    #[serde(flatten)]
    pub kinds: Kinds,
}

/// The effective preferences: exactly what notifyd does with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct NotifyPrefs {
    pub email: EmailPrefs,
    pub gotify: GotifyPrefs,
}

/// A channel's part of the stored JSON, read the way notifyd reads it.
struct StoredChannel<'a> {
    enabled: bool,
    obj: Option<&'a Map<String, Value>>,
}

impl<'a> StoredChannel<'a> {
    fn of(v: Option<&'a Value>) -> Self {
        match v {
            Some(Value::Bool(false)) => Self {
                enabled: false,
                obj: None,
            },
            Some(Value::Object(m)) => Self {
                enabled: m.get("enabled").and_then(Value::as_bool) != Some(false),
                obj: Some(m),
            },
            _ => Self {
                enabled: true,
                obj: None,
            },
        }
    }

    fn switch(&self, kind: &str) -> Option<bool> {
        self.obj?.get(kind).and_then(Value::as_bool)
    }

    fn text(&self, key: &str) -> String {
        self.obj
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    }
}

impl NotifyPrefs {
    /// Reads `users.notify_prefs` in any form notifyd understands, with
    /// notifyd's precedence: the channel's own switch > `sms_email` (email,
    /// SMS) > a top-level kind switch > the default. Unreadable = unset.
    pub fn from_stored(json: &str) -> Self {
        let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        let top = |k: &str| v.get(k).and_then(Value::as_bool);
        let email = StoredChannel::of(v.get("email"));
        let gotify = StoredChannel::of(v.get("gotify"));
        let mut p = NotifyPrefs {
            email: EmailPrefs {
                enabled: email.enabled,
                address: email.text("address"),
                kinds: Kinds::default(),
            },
            gotify: GotifyPrefs {
                enabled: gotify.enabled,
                url: gotify.text("url"),
                token: gotify.text("token"),
                kinds: Kinds::default(),
            },
        };
        for k in KINDS {
            let sms_email = if k == "sms" { top("sms_email") } else { None };
            p.email.kinds.set(
                k,
                email
                    .switch(k)
                    .or(sms_email)
                    .or(top(k))
                    .unwrap_or_else(|| email_default(k)),
            );
            p.gotify.kinds.set(
                k,
                gotify
                    .switch(k)
                    .or(top(k))
                    .unwrap_or_else(|| gotify_default(k)),
            );
        }
        p
    }

    /// The fully explicit form stored in `users.notify_prefs` (destinations
    /// only when set).
    pub fn to_stored(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        for (ch, keys) in [("email", &["address"][..]), ("gotify", &["url", "token"])] {
            if let Some(m) = v.get_mut(ch).and_then(Value::as_object_mut) {
                for k in keys {
                    if m.get(*k).and_then(Value::as_str) == Some("") {
                        m.remove(*k);
                    }
                }
            }
        }
        v.to_string()
    }

    /// As the API shows it: the token masked.
    pub fn masked(mut self) -> Self {
        if !self.gotify.token.is_empty() {
            self.gotify.token = MASK.into();
        }
        self
    }

    /// Whether pushes go to the user's own Gotify server.
    pub fn own_gotify(&self) -> bool {
        !self.gotify.url.is_empty() && !self.gotify.token.is_empty()
    }

    /// Applies an update (nested or flat form; absent parts stay as they
    /// are), recording every field at fault in `c` as `notify_prefs.<path>`.
    /// Top-level kind switches and `sms_email` go first so that a channel's
    /// own switch in the same update wins, as in notifyd.
    pub fn apply(&mut self, input: &Map<String, Value>, c: &mut Check) {
        let known_top: Vec<&str> = ["email", "gotify"]
            .into_iter()
            .chain(KINDS)
            .chain(["sms_email", "webhook"])
            .collect();
        for (k, v) in input {
            if !known_top.contains(&k.as_str()) {
                c.fail(
                    &format!("notify_prefs.{k}"),
                    format!("unknown; known: {}", known_top.join(", ")),
                );
            } else if k != "email" && k != "gotify" && !v.is_boolean() {
                c.fail(&format!("notify_prefs.{k}"), "must be true or false");
            }
        }
        for k in KINDS {
            if let Some(b) = input.get(k).and_then(Value::as_bool) {
                self.email.kinds.set(k, b);
                self.gotify.kinds.set(k, b);
            }
        }
        if let Some(b) = input.get("sms_email").and_then(Value::as_bool) {
            self.email.kinds.sms = b;
        }
        // `webhook` (an old flat switch) is accepted and has no effect:
        // webhook endpoints are system-wide.
        if let Some(v) = input.get("email") {
            if let Some(m) = channel_update("email", v, c) {
                self.apply_email(m, c);
            } else if let Some(b) = v.as_bool() {
                self.email.enabled = b;
            }
        }
        if let Some(v) = input.get("gotify") {
            if let Some(m) = channel_update("gotify", v, c) {
                self.apply_gotify(m, c);
            } else if let Some(b) = v.as_bool() {
                self.gotify.enabled = b;
            }
        }
    }

    fn apply_email(&mut self, m: &Map<String, Value>, c: &mut Check) {
        for (k, v) in m {
            let field = format!("notify_prefs.email.{k}");
            match k.as_str() {
                "address" => {
                    if let Some(s) = text(&field, v, c) {
                        if s.is_empty() {
                            self.email.address.clear();
                        } else if s.chars().count() > ADDRESS_MAX {
                            c.fail(&field, format!("must be at most {ADDRESS_MAX} characters"));
                        } else {
                            let before = c.0.len();
                            c.email(&field, s);
                            if c.0.len() == before {
                                self.email.address = s.to_owned();
                            }
                        }
                    }
                }
                _ => {
                    if !switch(
                        &mut self.email.enabled,
                        &mut self.email.kinds,
                        k,
                        v,
                        &field,
                        c,
                    ) {
                        unknown(&field, &["enabled", "address"], c);
                    }
                }
            }
        }
    }

    fn apply_gotify(&mut self, m: &Map<String, Value>, c: &mut Check) {
        let errors_before = c.0.len();
        for (k, v) in m {
            let field = format!("notify_prefs.gotify.{k}");
            match k.as_str() {
                "url" => {
                    if let Some(s) = text(&field, v, c)
                        && check_url(&field, s, c)
                    {
                        self.gotify.url = s.to_owned();
                    }
                }
                "token" => {
                    if let Some(s) = text(&field, v, c)
                        && s != MASK
                        && check_token(&field, s, c)
                    {
                        self.gotify.token = s.to_owned();
                    }
                }
                _ => {
                    if !switch(
                        &mut self.gotify.enabled,
                        &mut self.gotify.kinds,
                        k,
                        v,
                        &field,
                        c,
                    ) {
                        unknown(&field, &["enabled", "url", "token"], c);
                    }
                }
            }
        }
        // notifyd uses a user's own server only with both parts.
        let g = &self.gotify;
        if c.0.len() > errors_before {
            // A part was refused; its own message says why.
        } else if !g.url.is_empty() && g.token.is_empty() {
            c.fail(
                "notify_prefs.gotify.token",
                "is required with a server URL (Gotify: Apps > app token)",
            );
        } else if g.url.is_empty() && !g.token.is_empty() {
            c.fail("notify_prefs.gotify.url", "is required with an app token");
        }
    }
}

/// The Gotify server URL an update sets, if it sets a non-empty one.
pub fn gotify_url_in(input: &Map<String, Value>) -> Option<&str> {
    input
        .get("gotify")?
        .get("url")?
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Refuses `url` under `field` when its host is, or now resolves to, a
/// loopback, private, link-local or unique-local address that the admin
/// has not allowed in `notify.allowed_private_hosts` (`allow`). A name that
/// does not resolve now is let through: notifyd vets the addresses again
/// at every connection, which is also what stops a name whose answer
/// changes after it was saved.
pub async fn check_reachable(field: &str, url: &str, allow: &AllowList, c: &mut Check) {
    let Ok(u) = url::Url::parse(url) else {
        return;
    };
    let Some(host) = u.host_str() else {
        return;
    };
    let port = u.port_or_known_default().unwrap_or(0);
    let lookup = proto::ssrf::resolve_and_vet(host, port, allow);
    if let Ok(Err(Refused::Private { .. })) =
        tokio::time::timeout(std::time::Duration::from_secs(3), lookup).await
    {
        c.fail(
            field,
            "is a private or local address; an admin can allow its host under \
             notify.allowed_private_hosts",
        );
    }
}

/// `true`/`false` turns a channel on or off; an object updates its parts.
fn channel_update<'a>(name: &str, v: &'a Value, c: &mut Check) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Bool(_) => None,
        _ => {
            c.fail(
                &format!("notify_prefs.{name}"),
                "must be true, false or an object",
            );
            None
        }
    }
}

/// `enabled` or a kind switch (`field` names it in errors); false when `k`
/// is neither.
fn switch(
    enabled: &mut bool,
    kinds: &mut Kinds,
    k: &str,
    v: &Value,
    field: &str,
    c: &mut Check,
) -> bool {
    let slot = if k == "enabled" {
        enabled
    } else if let Some(s) = kinds.get_mut(k) {
        s
    } else {
        return false;
    };
    match v.as_bool() {
        Some(b) => *slot = b,
        None => c.fail(field, "must be true or false"),
    }
    true
}

fn unknown(field: &str, own: &[&str], c: &mut Check) {
    let known: Vec<&str> = own.iter().copied().chain(KINDS).collect();
    c.fail(field, format!("unknown; known: {}", known.join(", ")));
}

/// A string (trimmed) or `null` (= `""`, unset).
fn text<'a>(field: &str, v: &'a Value, c: &mut Check) -> Option<&'a str> {
    match v {
        Value::String(s) => Some(s.trim()),
        Value::Null => Some(""),
        _ => {
            c.fail(field, "must be a string");
            None
        }
    }
}

/// `""` (unset) or an http(s) URL notifyd can append `/message` to.
fn check_url(field: &str, s: &str, c: &mut Check) -> bool {
    if s.is_empty() {
        return true;
    }
    if s.chars().count() > URL_MAX {
        c.fail(field, format!("must be at most {URL_MAX} characters"));
        return false;
    }
    let parsed = url::Url::parse(s).ok().filter(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some_and(|h| !h.is_empty())
            && !s.chars().any(|ch| ch.is_whitespace() || ch.is_control())
    });
    let Some(u) = parsed else {
        c.fail(
            field,
            "must be an http(s) URL such as https://push.example.org",
        );
        return false;
    };
    if u.query().is_some() || u.fragment().is_some() {
        c.fail(field, "must be an http(s) URL without ?query or #fragment");
        return false;
    }
    if !u.username().is_empty() || u.password().is_some() {
        c.fail(
            field,
            "must not contain a user name or password (they would be shown in clear)",
        );
        return false;
    }
    true
}

/// `""` (unset) or a token that fits in a query string as is.
fn check_token(field: &str, s: &str, c: &mut Check) -> bool {
    if s.chars().count() > TOKEN_MAX {
        c.fail(field, format!("must be at most {TOKEN_MAX} characters"));
        false
    } else if !s.chars().all(|ch| ch.is_ascii_graphic()) {
        c.fail(
            field,
            "must be the app token as Gotify shows it (letters, digits and symbols, no spaces)",
        );
        false
    } else {
        true
    }
}

/// `notify_prefs` in a settings update (documentation of what
/// [`NotifyPrefs::apply`] accepts). Every part is optional; parts left out
/// stay as they are. The flat switches (`voicemail`, `sms`, ... for every
/// channel, `sms_email` for email) are the older form and still work.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyPrefsInput {
    pub email: Option<EmailInput>,
    pub gotify: Option<GotifyInput>,
    pub voicemail: Option<bool>,
    pub sms: Option<bool>,
    pub missed_call: Option<bool>,
    pub call_started: Option<bool>,
    pub call_ended: Option<bool>,
    pub admin_alert: Option<bool>,
    /// Email for SMS (older form of `email.sms`).
    pub sms_email: Option<bool>,
    /// Accepted for compatibility; no effect (webhooks are system-wide).
    pub webhook: Option<bool>,
}

/// `true`/`false` switches email on or off; an object updates its parts.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmailInput {
    Switch(bool),
    Settings(EmailSettingsInput),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSettingsInput {
    pub enabled: Option<bool>,
    /// Another address for notifications; `""` or `null` = the login address.
    #[schema(max_length = 254)]
    pub address: Option<String>,
    pub voicemail: Option<bool>,
    pub sms: Option<bool>,
    pub missed_call: Option<bool>,
    pub call_started: Option<bool>,
    pub call_ended: Option<bool>,
    pub admin_alert: Option<bool>,
}

/// `true`/`false` switches push on or off; an object updates its parts.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum GotifyInput {
    Switch(bool),
    Settings(GotifySettingsInput),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GotifySettingsInput {
    pub enabled: Option<bool>,
    /// Your own Gotify server (http/https, no query); `""` or `null` = the
    /// system's. Needs `token` too.
    #[schema(max_length = 500)]
    pub url: Option<String>,
    /// The app token; `********` keeps the stored one, `""` or `null` clears it.
    #[schema(max_length = 200)]
    pub token: Option<String>,
    pub voicemail: Option<bool>,
    pub sms: Option<bool>,
    pub missed_call: Option<bool>,
    pub call_started: Option<bool>,
    pub call_ended: Option<bool>,
    pub admin_alert: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(stored: &str, input: Value) -> (NotifyPrefs, Vec<(String, String)>) {
        let mut p = NotifyPrefs::from_stored(stored);
        let mut c = Check::new();
        p.apply(input.as_object().unwrap(), &mut c);
        let errs = c.0.into_iter().map(|e| (e.field, e.message)).collect();
        (p, errs)
    }

    #[test]
    fn nothing_stored_reads_as_notifyds_defaults() {
        let p = NotifyPrefs::from_stored("{}");
        assert_eq!(p, NotifyPrefs::from_stored("not json"));
        assert!(p.email.enabled && p.gotify.enabled);
        assert!(p.email.kinds.voicemail && p.email.kinds.sms && p.email.kinds.admin_alert);
        assert!(!p.email.kinds.missed_call && !p.email.kinds.call_started);
        assert!(p.gotify.kinds.missed_call && !p.gotify.kinds.call_ended);
        assert_eq!(p.email.address, "");
    }

    #[test]
    fn the_flat_form_is_read_with_notifyds_precedence() {
        let p = NotifyPrefs::from_stored(
            r#"{"email":true,"gotify":false,"voicemail":false,"missed_call":true,"sms_email":false}"#,
        );
        assert!(p.email.enabled && !p.gotify.enabled);
        assert!(!p.email.kinds.voicemail && !p.gotify.kinds.voicemail);
        assert!(p.email.kinds.missed_call && p.gotify.kinds.missed_call);
        assert!(!p.email.kinds.sms && p.gotify.kinds.sms);
        // The channel's own switch beats sms_email and top-level switches.
        let p = NotifyPrefs::from_stored(
            r#"{"email":{"sms":true,"voicemail":true},"sms_email":false,"voicemail":false}"#,
        );
        assert!(p.email.kinds.sms && p.email.kinds.voicemail && !p.gotify.kinds.voicemail);
    }

    #[test]
    fn the_stored_form_is_explicit_and_reads_back_the_same() {
        let (p, errs) = apply(
            "{}",
            json!({"email": {"address": " Pager@Example.org "}, "gotify": {"url": "http://127.0.0.1:9/g", "token": "Tok.1"}}),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let stored: Value = serde_json::from_str(&p.to_stored()).unwrap();
        assert_eq!(
            stored,
            json!({
                "email": {"enabled": true, "address": "Pager@Example.org", "voicemail": true, "sms": true,
                          "missed_call": false, "call_started": false, "call_ended": false, "admin_alert": true},
                "gotify": {"enabled": true, "url": "http://127.0.0.1:9/g", "token": "Tok.1", "voicemail": true,
                           "sms": true, "missed_call": true, "call_started": false, "call_ended": false,
                           "admin_alert": true}
            })
        );
        assert_eq!(NotifyPrefs::from_stored(&p.to_stored()), p);
        // Unset destinations are left out rather than stored empty.
        let stored = NotifyPrefs::from_stored("{}").to_stored();
        assert!(
            !stored.contains("address") && !stored.contains("token"),
            "{stored}"
        );
    }

    #[test]
    fn the_token_is_masked_and_the_mask_keeps_it() {
        let stored = r#"{"gotify":{"url":"https://g.example.org","token":"secret-1"}}"#;
        let p = NotifyPrefs::from_stored(stored);
        assert_eq!(p.clone().masked().gotify.token, MASK);
        assert_eq!(NotifyPrefs::default().masked().gotify.token, "");
        let (p2, errs) = apply(stored, json!({"gotify": {"token": MASK, "sms": false}}));
        assert!(errs.is_empty());
        assert_eq!(p2.gotify.token, "secret-1");
        assert!(!p2.gotify.kinds.sms);
        let (p3, errs) = apply(stored, json!({"gotify": {"token": "new-2"}}));
        assert!(errs.is_empty());
        assert_eq!(p3.gotify.token, "new-2");
        // Clearing both is fine; clearing one of them is not.
        let (p4, errs) = apply(stored, json!({"gotify": {"token": null, "url": ""}}));
        assert!(errs.is_empty() && !p4.own_gotify(), "{errs:?}");
        let (_, errs) = apply(stored, json!({"gotify": {"token": ""}}));
        assert_eq!(errs[0].0, "notify_prefs.gotify.token");
        let (_, errs) = apply("{}", json!({"gotify": {"token": "t"}}));
        assert_eq!(errs[0].0, "notify_prefs.gotify.url");
    }

    #[test]
    fn a_channels_own_switch_in_the_same_update_beats_the_flat_ones() {
        let (p, errs) = apply(
            "{}",
            json!({"voicemail": false, "sms_email": true, "email": {"voicemail": true, "sms": false}}),
        );
        assert!(errs.is_empty());
        assert!(p.email.kinds.voicemail && !p.gotify.kinds.voicemail);
        assert!(!p.email.kinds.sms);
        let (p, _) = apply("{}", json!({"email": false, "gotify": true}));
        assert!(!p.email.enabled && p.gotify.enabled);
        // Switching a channel off keeps its address and switches.
        let (p, _) = apply(
            r#"{"email":{"address":"a@b.org","missed_call":true}}"#,
            json!({"email": false}),
        );
        assert_eq!(p.email.address, "a@b.org");
        assert!(p.email.kinds.missed_call && !p.email.enabled);
    }

    #[test]
    fn every_field_is_validated_by_name() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"email": {"address": "nope"}}),
                "notify_prefs.email.address",
                "must be an email address",
            ),
            (
                json!({"email": {"address": format!("{}@x.org", "a".repeat(260))}}),
                "notify_prefs.email.address",
                "at most 254",
            ),
            (
                json!({"email": {"address": 5}}),
                "notify_prefs.email.address",
                "must be a string",
            ),
            (
                json!({"gotify": {"url": "ftp://x.org", "token": "t"}}),
                "notify_prefs.gotify.url",
                "must be an http(s) URL",
            ),
            (
                json!({"gotify": {"url": "push.example.org", "token": "t"}}),
                "notify_prefs.gotify.url",
                "must be an http(s) URL",
            ),
            (
                json!({"gotify": {"url": "https://x.org/?a=1", "token": "t"}}),
                "notify_prefs.gotify.url",
                "without ?query",
            ),
            (
                json!({"gotify": {"url": "https://u:p@x.org", "token": "t"}}),
                "notify_prefs.gotify.url",
                "user name",
            ),
            (
                json!({"gotify": {"url": format!("https://x.org/{}", "a".repeat(500)), "token": "t"}}),
                "notify_prefs.gotify.url",
                "at most 500",
            ),
            (
                json!({"gotify": {"url": "https://x.org", "token": "a b"}}),
                "notify_prefs.gotify.token",
                "no spaces",
            ),
            (
                json!({"gotify": {"url": "https://x.org", "token": "t".repeat(201)}}),
                "notify_prefs.gotify.token",
                "at most 200",
            ),
            (
                json!({"email": {"sms": "true"}}),
                "notify_prefs.email.sms",
                "true or false",
            ),
            (
                json!({"gotify": {"enabled": 1}}),
                "notify_prefs.gotify.enabled",
                "true or false",
            ),
            (
                json!({"email": {"url": "https://x.org"}}),
                "notify_prefs.email.url",
                "unknown",
            ),
            (
                json!({"gotify": {"address": "a@b.org"}}),
                "notify_prefs.gotify.address",
                "unknown",
            ),
            (json!({"fax": true}), "notify_prefs.fax", "unknown"),
            (
                json!({"voicemail": "yes"}),
                "notify_prefs.voicemail",
                "true or false",
            ),
            (
                json!({"email": "on"}),
                "notify_prefs.email",
                "true, false or an object",
            ),
            (
                json!({"gotify": null}),
                "notify_prefs.gotify",
                "true, false or an object",
            ),
        ];
        for (input, field, msg) in cases {
            let (_, errs) = apply("{}", input.clone());
            assert_eq!(errs.len(), 1, "{input}: {errs:?}");
            assert_eq!(errs[0].0, field, "{input}");
            assert!(errs[0].1.contains(msg), "{input}: {}", errs[0].1);
        }
    }
}
