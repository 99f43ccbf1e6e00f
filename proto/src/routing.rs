//! The routing rule contract: what webd stores in `routes` and twiliod
//! evaluates. A route's condition and action are each a tagged union whose
//! tag and data are the table columns (`condition_type` + `condition_data`,
//! `action_type` + `action_data`) and the same named fields of the REST API,
//! so the web UI, webd and twiliod read and write one shape.
//!
//! Deserialising checks the structure (known kinds, field names, JSON
//! types; unknown fields are refused, so a misspelt `devices` can never be
//! ignored silently); [`Condition::validate`] and [`Action::validate`] check
//! the values and name each bad field the way the API reports it
//! (`condition_data.start`, `action_data.device_ids`).
//!
//! Evaluating a condition against a call is twiliod's business, not this
//! module's.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use crate::types::{DeviceId, E164};

/// One invalid field, named as the REST API names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// e.g. `action_data.device_ids`.
    pub field: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// When a route applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    tag = "condition_type",
    content = "condition_data",
    rename_all = "snake_case"
)]
pub enum Condition {
    /// By the local time (`system.timezone`).
    Time(TimeCondition),
    /// By the caller's number.
    #[serde(rename = "callerid")]
    CallerId(CallerIdCondition),
    /// Always.
    Default(Always),
}

/// `condition_data` of an always-matching route: `{}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Always {}

/// `condition_data` of a `time` route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TimeCondition {
    pub when: TimeWhen,
    /// `custom` only: the days the range starts on (a range crossing
    /// midnight belongs to the day it started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
    /// `custom` only: `HH:MM`, local time, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `custom` only: `HH:MM`, local time, exclusive; at or before `start`
    /// the range crosses midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Business hours of this route instead of `routing.business_hours`
    /// (same shape: `{"mon": ["09:00","17:00"]}` or a list of ranges per day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<BTreeMap<Day, DayHours>>,
    /// Holidays of this route instead of `routing.holidays` (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>, format = Date))]
    pub holidays: Option<Vec<NaiveDate>>,
}

/// Which times a `time` route means. A holiday is never business hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TimeWhen {
    BusinessHours,
    AfterHours,
    Weekends,
    Holidays,
    /// `days`, `start` and `end` of the condition.
    Custom,
}

/// A day of the week as rules and settings spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl From<Day> for Weekday {
    fn from(d: Day) -> Self {
        match d {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

/// One day's opening hours: one `["09:00","17:00"]` range or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DayHours {
    One(Vec<String>),
    Many(Vec<Vec<String>>),
}

impl DayHours {
    /// The `[start, end)` ranges; None when one is not two `HH:MM` times.
    pub fn ranges(&self) -> Option<Vec<(NaiveTime, NaiveTime)>> {
        let pair = |r: &[String]| match r {
            [a, b] => Some((parse_hhmm(a)?, parse_hhmm(b)?)),
            _ => None,
        };
        match self {
            Self::One(r) => Some(vec![pair(r)?]),
            Self::Many(rs) => rs.iter().map(|r| pair(r)).collect(),
        }
    }
}

/// `condition_data` of a `callerid` route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallerIdCondition {
    #[serde(rename = "match")]
    pub matches: CallerMatch,
    /// `numbers` only: 1 to 500 E.164 numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers: Vec<String>,
    /// `prefix` only: `+` and 1 to 15 digits, or 1 to 15 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Inverts the match ("caller is NOT a known caller").
    #[serde(default, skip_serializing_if = "is_false")]
    pub negate: bool,
}

/// How a `callerid` route matches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CallerMatch {
    /// On the VIP caller list.
    Vip,
    /// On the known caller list.
    Known,
    /// On neither list.
    Unknown,
    /// One of the condition's `numbers`.
    Numbers,
    /// Starts with the condition's `prefix`.
    Prefix,
    /// No caller ID (withheld, "anonymous", "restricted" ...).
    Anonymous,
}

/// What a route does with the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    tag = "action_type",
    content = "action_data",
    rename_all = "snake_case"
)]
pub enum Action {
    /// Ring phones through sipd; unanswered calls go to voicemail.
    Ring(RingAction),
    /// Forward to an external number.
    Forward(ForwardAction),
    /// Straight to voicemail.
    Voicemail(VoicemailAction),
    /// Say (or play) a message, then hang up.
    Announcement(AnnouncementAction),
    /// Refuse the call unanswered.
    Reject(RejectAction),
    /// An auto-attendant: a greeting, then a key 0-9 picks what happens.
    Menu(MenuAction),
}

/// An `audio` value naming a recording uploaded with `POST /api/prompts`:
/// `prompt:<32 hex digits>.wav` (or `.mp3`).
pub const PROMPT_PREFIX: &str = "prompt:";

/// The file name of an uploaded prompt an `audio` value names, when it is
/// one (`prompt:<32 hex>.wav|mp3`, nothing else).
pub fn prompt_name(audio: &str) -> Option<&str> {
    let name = audio.strip_prefix(PROMPT_PREFIX)?;
    let (stem, ext) = name.split_once('.')?;
    (stem.len() == 32
        && stem
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && matches!(ext, "wav" | "mp3"))
    .then_some(name)
}

/// How deep menus may nest (a menu in a menu in a menu).
pub const MAX_MENU_DEPTH: usize = 3;

/// `action_data` of `menu`: "For sales press 1, for support press 2". The
/// caller hears the greeting and presses one key; `options` says what each
/// key does (any action but `reject`, which only fits a call not yet
/// answered, including another menu up to [`MAX_MENU_DEPTH`] levels).
/// Without a key, or after a key without an option (answered "not a valid
/// choice"), the menu is played again, twice at most; then `no_input` runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MenuAction {
    /// Spoken to the caller (1 to 1000 characters).
    pub greeting: String,
    /// A recording played instead of `greeting`: an uploaded prompt
    /// (`prompt:<name>` from `POST /api/prompts`) or an `https://` (or
    /// `http://`) audio file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Key ("0" to "9") to action, each `{"action_type", "action_data"}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: std::collections::BTreeMap<String, Action>,
    /// Seconds to wait for a key (2 to 30); absent = 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 30))]
    pub timeout: Option<u32>,
    /// What happens when the caller presses nothing (or only wrong keys);
    /// absent = voicemail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub no_input: Option<Box<Action>>,
}

impl MenuAction {
    /// Seconds to wait for a key.
    pub fn wait_secs(&self) -> u32 {
        self.timeout.unwrap_or(5)
    }

    /// The menu `path` (keys pressed, e.g. "21") leads to from this one;
    /// None when a key has no option or leads elsewhere than a menu.
    pub fn submenu(&self, path: &str) -> Option<&MenuAction> {
        let mut m = self;
        for key in path.chars() {
            match m.options.get(key.encode_utf8(&mut [0; 4]) as &str) {
                Some(Action::Menu(sub)) => m = sub,
                _ => return None,
            }
        }
        Some(m)
    }

    /// What runs when nobody presses a key.
    pub fn no_input_action(&self) -> Action {
        self.no_input
            .as_deref()
            .cloned()
            .unwrap_or(Action::Voicemail(VoicemailAction::default()))
    }
}

/// `action_data` of `ring`: these devices, the called number owner's
/// devices, or both; at least one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RingAction {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>))]
    pub device_ids: Vec<DeviceId>,
    /// Also ring every device of the called number's owner.
    #[serde(default, skip_serializing_if = "is_false")]
    pub owner: bool,
    /// Seconds to ring (5 to 120) before voicemail; absent =
    /// `calls.ring_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 5, maximum = 120))]
    pub timeout: Option<u32>,
}

/// `action_data` of `forward`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForwardAction {
    /// E.164, e.g. `+15551234567`.
    pub number: String,
}

/// `action_data` of `voicemail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VoicemailAction {
    /// Spoken instead of the number's greeting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
}

/// `action_data` of `announcement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnnouncementAction {
    /// Spoken (1 to 1000 characters).
    pub text: String,
    /// A recording played instead of `text`: an uploaded prompt
    /// (`prompt:<name>`) or an `https://` (or `http://`) audio file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
}

/// `action_data` of `reject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RejectAction {
    #[serde(default)]
    pub reason: RejectReason,
}

/// How a call is refused (TwiML `<Reject reason>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The caller hears a busy signal.
    #[default]
    Busy,
    /// The caller hears that the call was not accepted.
    Rejected,
}

impl Condition {
    /// The condition stored as `condition_type` and `condition_data` (or
    /// sent under those API fields). Errors name the field as the API does.
    pub fn from_parts(kind: &str, data: &serde_json::Value) -> Result<Self, FieldError> {
        let d = "condition_data";
        // The kinds as serde names them; the round-trip tests hold the two
        // spellings together.
        match kind {
            "time" => Ok(Self::Time(data_of(d, data)?)),
            "callerid" => Ok(Self::CallerId(data_of(d, data)?)),
            "default" => Ok(Self::Default(data_of(d, data)?)),
            _ => Err(FieldError::new(
                "condition_type",
                "must be one of: time, callerid, default",
            )),
        }
    }

    /// `(condition_type, condition_data)`.
    pub fn to_parts(&self) -> (String, serde_json::Value) {
        to_parts(self, "condition_type", "condition_data")
    }

    /// Writes the numbers and prefix as a person typed them
    /// ("(555) 867-5309", "1900") in E.164 form, national ones in
    /// `default_country`; what is not a number is left for `validate`.
    pub fn normalize_numbers(&mut self, default_country: &str) {
        if let Self::CallerId(c) = self {
            for n in &mut c.numbers {
                if let Ok(e) = E164::normalize(n, default_country) {
                    *n = e.to_string();
                }
            }
            if let Some(p) = &mut c.prefix
                && let Ok(e) = E164::normalize_prefix(p, default_country)
            {
                *p = e;
            }
        }
    }

    /// Checks the values; every bad field is reported.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut fail =
            |f: &str, m: &str| errs.push(FieldError::new(format!("condition_data.{f}"), m));
        match self {
            Self::Default(_) => {}
            Self::Time(t) => {
                let custom = t.when == TimeWhen::Custom;
                if custom {
                    if t.days.is_empty() {
                        fail("days", "pick at least one of mon..sun");
                    }
                    for (k, v) in [("start", &t.start), ("end", &t.end)] {
                        if v.as_deref().is_none_or(|v| parse_hhmm(v).is_none()) {
                            fail(k, "must be a time HH:MM");
                        }
                    }
                } else {
                    for (k, set) in [
                        ("days", !t.days.is_empty()),
                        ("start", t.start.is_some()),
                        ("end", t.end.is_some()),
                    ] {
                        if set {
                            fail(k, "only with when = custom");
                        }
                    }
                }
                if let Some(h) = &t.hours {
                    if !matches!(t.when, TimeWhen::BusinessHours | TimeWhen::AfterHours) {
                        fail("hours", "only with when = business_hours or after_hours");
                    }
                    if h.values().any(|d| d.ranges().is_none()) {
                        fail("hours", "each day needs [\"HH:MM\", \"HH:MM\"] ranges");
                    }
                }
                if t.holidays.as_ref().is_some_and(|h| h.len() > 366) {
                    fail("holidays", "at most 366 dates");
                }
            }
            Self::CallerId(c) => {
                match c.matches {
                    CallerMatch::Numbers => {
                        if c.numbers.is_empty() || c.numbers.len() > 500 {
                            fail("numbers", "list 1 to 500 E.164 numbers");
                        } else if c.numbers.iter().any(|n| E164::parse(n).is_err()) {
                            fail("numbers", "every number must be E.164, e.g. +15551234567");
                        }
                    }
                    _ if !c.numbers.is_empty() => fail("numbers", "only with match = numbers"),
                    _ => {}
                }
                match (c.matches, &c.prefix) {
                    (CallerMatch::Prefix, Some(p)) if valid_prefix(p) => {}
                    (CallerMatch::Prefix, _) => fail("prefix", "must be + and 1 to 15 digits"),
                    (_, Some(_)) => fail("prefix", "only with match = prefix"),
                    (_, None) => {}
                }
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

impl Action {
    /// The action stored as `action_type` and `action_data`.
    pub fn from_parts(kind: &str, data: &serde_json::Value) -> Result<Self, FieldError> {
        let d = "action_data";
        match kind {
            "ring" => Ok(Self::Ring(data_of(d, data)?)),
            "forward" => Ok(Self::Forward(data_of(d, data)?)),
            "voicemail" => Ok(Self::Voicemail(data_of(d, data)?)),
            "announcement" => Ok(Self::Announcement(data_of(d, data)?)),
            "reject" => Ok(Self::Reject(data_of(d, data)?)),
            "menu" => Ok(Self::Menu(data_of(d, data)?)),
            _ => Err(FieldError::new(
                "action_type",
                "must be one of: ring, forward, voicemail, announcement, reject, menu",
            )),
        }
    }

    /// `(action_type, action_data)`.
    pub fn to_parts(&self) -> (String, serde_json::Value) {
        to_parts(self, "action_type", "action_data")
    }

    /// A forward number as a person typed it, in E.164 form (see
    /// [`Condition::normalize_numbers`]).
    pub fn normalize_numbers(&mut self, default_country: &str) {
        match self {
            Self::Forward(f) => {
                if let Ok(e) = E164::normalize(&f.number, default_country) {
                    f.number = e.to_string();
                }
            }
            Self::Menu(m) => {
                for a in m.options.values_mut() {
                    a.normalize_numbers(default_country);
                }
                if let Some(a) = &mut m.no_input {
                    a.normalize_numbers(default_country);
                }
            }
            _ => {}
        }
    }

    /// Every device this action rings, with the field that names it
    /// (`action_data.options.2.action_data.device_ids`), menus included.
    pub fn device_refs(&self) -> Vec<(String, DeviceId)> {
        let mut out = Vec::new();
        self.collect_devices("action_data", &mut out);
        out
    }

    fn collect_devices(&self, at: &str, out: &mut Vec<(String, DeviceId)>) {
        match self {
            Self::Ring(r) => out.extend(
                r.device_ids
                    .iter()
                    .map(|d| (format!("{at}.device_ids"), *d)),
            ),
            Self::Menu(m) => {
                for (k, a) in &m.options {
                    a.collect_devices(&format!("{at}.options.{k}.action_data"), out);
                }
                if let Some(a) = &m.no_input {
                    a.collect_devices(&format!("{at}.no_input.action_data"), out);
                }
            }
            _ => {}
        }
    }

    /// Checks the values; every bad field is reported. Whether the devices
    /// exist is the caller's check (it needs the database; see
    /// [`Action::device_refs`]).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        self.check("action_data", 0, &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// [`Action::validate`] of an action whose data sits at `at`, inside
    /// `depth` menus.
    fn check(&self, at: &str, depth: usize, errs: &mut Vec<FieldError>) {
        let mut fail = |f: &str, m: &str| errs.push(FieldError::new(format!("{at}.{f}"), m));
        match self {
            Self::Ring(r) => {
                if r.device_ids.is_empty() && !r.owner {
                    fail(
                        "device_ids",
                        "pick at least one device (or the number owner's devices)",
                    );
                } else if r.device_ids.len() > 100 || r.device_ids.iter().any(|d| d.0 <= 0) {
                    fail("device_ids", "must be up to 100 device ids");
                }
                if r.timeout.is_some_and(|t| !(5..=120).contains(&t)) {
                    fail("timeout", "must be 5 to 120 seconds");
                }
            }
            Self::Forward(f) => {
                if E164::parse(&f.number).is_err() {
                    fail("number", "must be an E.164 number such as +15551234567");
                }
            }
            Self::Voicemail(v) => {
                if v.greeting
                    .as_ref()
                    .is_some_and(|g| g.trim().is_empty() || g.chars().count() > 1000)
                {
                    fail("greeting", "must be 1 to 1000 characters");
                }
            }
            Self::Announcement(a) => {
                let n = a.text.trim().chars().count();
                if n == 0 {
                    fail("text", "is required");
                } else if n > 1000 {
                    fail("text", "must be 1 to 1000 characters");
                }
                if a.audio.as_ref().is_some_and(|u| !is_audio_url(u)) {
                    fail("audio", "must be an uploaded prompt or an http(s) URL");
                }
            }
            Self::Reject(_) => {}
            Self::Menu(m) => m.check(at, depth, errs),
        }
    }
}

impl MenuAction {
    fn check(&self, at: &str, depth: usize, errs: &mut Vec<FieldError>) {
        let mut fail = |f: &str, m: &str| errs.push(FieldError::new(format!("{at}.{f}"), m));
        if depth + 1 > MAX_MENU_DEPTH {
            fail(
                "options",
                &format!("menus nest {MAX_MENU_DEPTH} levels deep at most"),
            );
            return;
        }
        let n = self.greeting.trim().chars().count();
        if n == 0 {
            fail(
                "greeting",
                "is required: what the caller hears, e.g. \"For sales press 1\"",
            );
        } else if n > 1000 {
            fail("greeting", "must be 1 to 1000 characters");
        }
        if self.audio.as_ref().is_some_and(|u| !is_audio_url(u)) {
            fail("audio", "must be an uploaded prompt or an http(s) URL");
        }
        if self.timeout.is_some_and(|t| !(2..=30).contains(&t)) {
            fail("timeout", "must be 2 to 30 seconds");
        }
        if self.options.is_empty() {
            fail("options", "give at least one key an action");
        }
        for (key, a) in &self.options {
            if !(key.len() == 1 && key.bytes().all(|b| b.is_ascii_digit())) {
                errs.push(FieldError::new(
                    format!("{at}.options.{key}"),
                    "keys are the digits 0 to 9",
                ));
                continue;
            }
            let at = format!("{at}.options.{key}");
            if matches!(a, Action::Reject(_)) {
                errs.push(FieldError::new(
                    format!("{at}.action_type"),
                    "a menu has answered the call already: use an announcement, then the call ends",
                ));
            }
            a.check(&format!("{at}.action_data"), depth + 1, errs);
        }
        if let Some(a) = &self.no_input {
            let at = format!("{at}.no_input");
            if matches!(**a, Action::Reject(_)) {
                errs.push(FieldError::new(
                    format!("{at}.action_type"),
                    "a menu has answered the call already: use an announcement, then the call ends",
                ));
            }
            a.check(&format!("{at}.action_data"), depth + 1, errs);
        }
    }
}

fn is_audio_url(u: &str) -> bool {
    if u.starts_with(PROMPT_PREFIX) {
        return prompt_name(u).is_some();
    }
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2000
        && !u.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `HH:MM` (00:00 to 23:59, and 24:00 for the end of a day).
pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !s[..2]
            .bytes()
            .chain(s[3..].bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    if s == "24:00" {
        return NaiveTime::from_hms_opt(23, 59, 59);
    }
    let h = s[..2].parse().ok()?;
    let m = s[3..].parse().ok()?;
    NaiveTime::from_hms_opt(h, m, 0)
}

fn valid_prefix(p: &str) -> bool {
    let digits = p.strip_prefix('+').unwrap_or(p);
    (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Deserialises one kind's data; errors carry the path under `field`.
fn data_of<T: serde::de::DeserializeOwned>(
    field: &str,
    data: &serde_json::Value,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(data).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde reports a missing field at the object that lacks it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(m)) => format!("{field}.{m}"),
            (".", None) => field.to_owned(),
            (p, Some(m)) => format!("{field}.{p}.{m}"),
            (p, None) => format!("{field}.{p}"),
        };
        let message = if missing.is_some() {
            "is required".to_owned()
        } else {
            message
        };
        FieldError::new(field, message)
    })
}

fn to_parts<T: Serialize>(v: &T, tag: &str, content: &str) -> (String, serde_json::Value) {
    let mut j = serde_json::to_value(v).unwrap_or_default();
    let kind = j
        .get(tag)
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let data = j
        .get_mut(content)
        .map(serde_json::Value::take)
        .unwrap_or_else(|| serde_json::json!({}));
    (kind, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(kind: &str, data: serde_json::Value) -> Condition {
        Condition::from_parts(kind, &data).unwrap()
    }

    fn act(kind: &str, data: serde_json::Value) -> Action {
        Action::from_parts(kind, &data).unwrap()
    }

    /// Every variant: parts -> type -> parts gives the same JSON, and the
    /// type is the one the JSON means.
    #[test]
    fn every_condition_variant_round_trips_through_its_columns() {
        let cases = [
            ("default", json!({}), Condition::Default(Always {})),
            (
                "time",
                json!({"when": "business_hours"}),
                Condition::Time(TimeCondition {
                    when: TimeWhen::BusinessHours,
                    days: vec![],
                    start: None,
                    end: None,
                    hours: None,
                    holidays: None,
                }),
            ),
            (
                "time",
                json!({"when": "custom", "days": ["sat", "sun"], "start": "18:00", "end": "08:00"}),
                Condition::Time(TimeCondition {
                    when: TimeWhen::Custom,
                    days: vec![Day::Sat, Day::Sun],
                    start: Some("18:00".into()),
                    end: Some("08:00".into()),
                    hours: None,
                    holidays: None,
                }),
            ),
            (
                "time",
                json!({"when": "after_hours", "hours": {"mon": ["09:00", "17:00"], "tue": [["09:00", "12:00"], ["13:00", "17:00"]]}, "holidays": ["2026-12-25"]}),
                Condition::Time(TimeCondition {
                    when: TimeWhen::AfterHours,
                    days: vec![],
                    start: None,
                    end: None,
                    hours: Some(BTreeMap::from([
                        (
                            Day::Mon,
                            DayHours::One(vec!["09:00".into(), "17:00".into()]),
                        ),
                        (
                            Day::Tue,
                            DayHours::Many(vec![
                                vec!["09:00".into(), "12:00".into()],
                                vec!["13:00".into(), "17:00".into()],
                            ]),
                        ),
                    ])),
                    holidays: Some(vec![NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()]),
                }),
            ),
            (
                "time",
                json!({"when": "weekends"}),
                cond("time", json!({"when": "weekends"})),
            ),
            (
                "time",
                json!({"when": "holidays"}),
                cond("time", json!({"when": "holidays"})),
            ),
        ];
        let mut callers = vec![];
        for (m, extra) in [
            ("vip", json!({})),
            ("known", json!({"negate": true})),
            ("unknown", json!({})),
            ("numbers", json!({"numbers": ["+15551000001"]})),
            ("prefix", json!({"prefix": "+1900"})),
            ("anonymous", json!({})),
        ] {
            let mut d = extra.clone();
            d["match"] = m.into();
            callers.push(("callerid", d, None));
        }
        for (kind, data, want) in cases
            .into_iter()
            .map(|(k, d, w)| (k, d, Some(w)))
            .chain(callers)
        {
            let c = cond(kind, data.clone());
            if let Some(w) = want {
                assert_eq!(c, w, "{kind} {data}");
            }
            assert_eq!(c.validate(), Ok(()), "{kind} {data}");
            assert_eq!(c.to_parts(), (kind.to_owned(), data.clone()));
        }
        assert_eq!(
            cond("callerid", json!({"match": "anonymous"})),
            Condition::CallerId(CallerIdCondition {
                matches: CallerMatch::Anonymous,
                numbers: vec![],
                prefix: None,
                negate: false,
            })
        );
    }

    #[test]
    fn every_action_variant_round_trips_through_its_columns() {
        let cases = [
            (
                "ring",
                json!({"device_ids": [2]}),
                Action::Ring(RingAction {
                    device_ids: vec![DeviceId(2)],
                    owner: false,
                    timeout: None,
                }),
            ),
            (
                "ring",
                json!({"device_ids": [], "owner": true, "timeout": 20}),
                Action::Ring(RingAction {
                    device_ids: vec![],
                    owner: true,
                    timeout: Some(20),
                }),
            ),
            (
                "forward",
                json!({"number": "+15559990000"}),
                Action::Forward(ForwardAction {
                    number: "+15559990000".into(),
                }),
            ),
            (
                "voicemail",
                json!({}),
                Action::Voicemail(VoicemailAction { greeting: None }),
            ),
            (
                "voicemail",
                json!({"greeting": "Leave it here"}),
                Action::Voicemail(VoicemailAction {
                    greeting: Some("Leave it here".into()),
                }),
            ),
            (
                "announcement",
                json!({"text": "We moved", "audio": "https://example.com/a.mp3"}),
                Action::Announcement(AnnouncementAction {
                    text: "We moved".into(),
                    audio: Some("https://example.com/a.mp3".into()),
                }),
            ),
            (
                "reject",
                json!({"reason": "busy"}),
                Action::Reject(RejectAction {
                    reason: RejectReason::Busy,
                }),
            ),
            (
                "reject",
                json!({"reason": "rejected"}),
                Action::Reject(RejectAction {
                    reason: RejectReason::Rejected,
                }),
            ),
        ];
        for (kind, data, want) in cases {
            let a = act(kind, data.clone());
            assert_eq!(a, want, "{kind} {data}");
            assert_eq!(a.validate(), Ok(()), "{kind} {data}");
            assert_eq!(a.to_parts(), (kind.to_owned(), data));
        }
        // Defaults fill in, and are written explicitly.
        assert_eq!(
            act("reject", json!({})).to_parts().1,
            json!({"reason": "busy"})
        );
    }

    #[test]
    fn the_shapes_that_used_to_disagree_are_refused_with_the_field_named() {
        // twiliod's old ring shape: `devices` is not a field of ring.
        let e = Action::from_parts("ring", &json!({"devices": [2]})).unwrap_err();
        assert_eq!(e.field, "action_data.devices");
        assert!(e.message.contains("unknown field"), "{e}");
        // twiliod's old caller shapes: `match` is required.
        let e = Condition::from_parts("callerid", &json!({"list": "vip"})).unwrap_err();
        assert_eq!(e.field, "condition_data.list");
        let e = Condition::from_parts("callerid", &json!({"match": "friends"})).unwrap_err();
        assert_eq!(e.field, "condition_data.match");
        let e = Action::from_parts("forward", &json!({})).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("action_data.number", "is required")
        );
        let e = Condition::from_parts("sometimes", &json!({})).unwrap_err();
        assert_eq!(e.field, "condition_type");
        let e = Action::from_parts("ring", &json!({"device_ids": ["two"]})).unwrap_err();
        assert_eq!(e.field, "action_data.device_ids[0]");
        let e =
            Condition::from_parts("time", &json!({"when": "custom", "days": ["xyz"]})).unwrap_err();
        assert_eq!(e.field, "condition_data.days[0]");
    }

    #[test]
    fn validate_names_every_bad_field() {
        let fields = |r: Result<(), Vec<FieldError>>| -> Vec<String> {
            r.unwrap_err().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(act("ring", json!({"device_ids": [], "timeout": 500})).validate()),
            ["action_data.device_ids", "action_data.timeout"]
        );
        assert_eq!(
            fields(act("ring", json!({"device_ids": [0]})).validate()),
            ["action_data.device_ids"]
        );
        assert_eq!(
            fields(act("forward", json!({"number": "12"})).validate()),
            ["action_data.number"]
        );
        assert_eq!(
            fields(
                act(
                    "announcement",
                    json!({"text": " ", "audio": "file:///etc/passwd"})
                )
                .validate()
            ),
            ["action_data.text", "action_data.audio"]
        );
        assert_eq!(
            fields(
                cond(
                    "time",
                    json!({"when": "custom", "days": [], "start": "25:00"})
                )
                .validate()
            ),
            [
                "condition_data.days",
                "condition_data.start",
                "condition_data.end"
            ]
        );
        assert_eq!(
            fields(cond("time", json!({"when": "weekends", "start": "09:00"})).validate()),
            ["condition_data.start"]
        );
        assert_eq!(
            fields(cond("callerid", json!({"match": "numbers", "numbers": ["555"]})).validate()),
            ["condition_data.numbers"]
        );
        assert_eq!(
            fields(cond("callerid", json!({"match": "prefix", "prefix": "+1a"})).validate()),
            ["condition_data.prefix"]
        );
        assert_eq!(
            fields(cond("callerid", json!({"match": "vip", "prefix": "+1"})).validate()),
            ["condition_data.prefix"]
        );
    }

    #[test]
    fn hhmm_accepts_only_two_digit_hours_and_minutes() {
        assert_eq!(parse_hhmm("09:30"), NaiveTime::from_hms_opt(9, 30, 0));
        assert_eq!(parse_hhmm("24:00"), NaiveTime::from_hms_opt(23, 59, 59));
        for bad in ["9:30", "24:01", "12:60", "ab:cd", "12-30", "+1:00", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_typed_nationally_are_stored_in_e164() {
        let mut c = cond(
            "callerid",
            json!({"match": "numbers", "numbers": ["(555) 867-5309", "+44 20 7946 0018", "555"]}),
        );
        c.normalize_numbers("1");
        let (_, d) = c.to_parts();
        assert_eq!(
            d["numbers"],
            json!(["+15558675309", "+442079460018", "555"])
        );
        // What is not a number stays for validate to name.
        let bad: Vec<String> = c
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(bad, ["condition_data.numbers"]);
        let mut p = cond("callerid", json!({"match": "prefix", "prefix": "1900"}));
        p.normalize_numbers("1");
        assert_eq!(p.to_parts().1["prefix"], "+1900");
        let mut a = Action::from_parts("forward", &json!({"number": "020 7946 0018"})).unwrap();
        a.normalize_numbers("44");
        assert_eq!(a.to_parts().1["number"], "+442079460018");
    }
}
