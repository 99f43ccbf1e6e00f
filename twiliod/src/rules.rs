//! The routing and blocking rules engine: [`decide`] is a pure function of
//! the call, the rules and the clock. No I/O; `ruleset.rs` loads a
//! [`RuleSet`] from the database.
//!
//! Order (first match wins), and the rule name each stage reports:
//!
//! 1. **blocklist** (`blocklist:<id>`): `exact` (E.164 after normalising),
//!    `prefix` (the number starts with the pattern), `regex` (Rust regex
//!    syntax, searched in the E.164 number; anchor with `^...$` yourself).
//! 2. **anonymous** (`anonymous`), when `routing.reject_anonymous` is on: an
//!    empty From, words like `anonymous`, `Restricted`, `Unavailable`,
//!    `private`, `unknown`, `withheld`, `blocked` (any case, also as a SIP
//!    user), and their keypad spellings (`+266696687` = ANONYMOUS,
//!    `+7378742833` = RESTRICTED ...), with or without a leading 1.
//! 3. **spam** (`spam`): score strictly above `routing.spam_threshold`
//!    (0.7 passes, 0.71 is blocked). The score comes from Twilio's `AddOns`
//!    via [`spam_score`]; no score (no or failed add-on) never blocks.
//!    Stages 1-3 answer with the blocking action `routing.block_action`:
//!    reject at once, the "number disconnected" SIT tone, or silent voicemail.
//! 4. **dnd** (`dnd:user` / `dnd:system`): the DID owner's `users.dnd` or the
//!    system-wide `routing.dnd` sends the call to voicemail. Callers on the
//!    VIP list pass DND.
//! 5. **routes** (`route:<id>:<name>`): the DID's enabled `routes` (and
//!    routes without a DID, which apply to every DID) by ascending
//!    `priority`, then id; the first whose condition holds decides.
//! 6. **default** (`default`): ring the DID owner's devices.
//!
//! Route conditions and actions are [`proto::routing`] types: the shape the
//! web UI and API write is the shape read here, and a route that does not
//! parse or validate never matches (twiliod logs it). Conditions: `time`
//! (`business_hours`, `after_hours`, `weekends`, `holidays`, or `custom`
//! days with a `start`..`end` range that may cross midnight; optional
//! per-route `hours` and `holidays`), evaluated in `system.timezone` with
//! chrono-tz so DST changes move nothing (09:00 is 09:00 local), a holiday is
//! never business hours and business hours are `[start, end)`; `callerid`
//! (`vip`, `known`, `unknown` = on neither list, `numbers`, `prefix`,
//! `anonymous` as in stage 2; `negate` inverts); `default` (always).
//! Actions: `ring` (devices and/or the number owner's devices, optional ring
//! timeout), `forward`, `voicemail`, `announcement` then hang up, `reject`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use proto::routing;
use proto::types::{DeviceId, DidId, Disposition, E164, RouteId, UserId};
use serde::{Deserialize, Serialize};

/// What twiliod knows about an incoming call when it decides.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// `From` as Twilio sent it (may be empty or "anonymous").
    pub from: String,
    /// `To`: the DID that was called.
    pub to: String,
    /// Normalised spam score in 0..=1 ([`spam_score`]); None = unknown.
    pub spam_score: Option<f64>,
    /// `StirVerstat`, kept for the CDR.
    pub stir_verstat: Option<String>,
}

/// How a blocked call is answered (`routing.block_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockAction {
    /// `<Reject reason="rejected">`: never answered, not billed.
    Reject,
    /// The "number disconnected" SIT tone and message, then hang up.
    DisconnectedTone,
    /// Straight to voicemail without ringing; the voicemail is kept but the
    /// owner is not notified.
    SilentVoicemail,
}

impl BlockAction {
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "disconnected_tone" | "sit" | "tone" => Self::DisconnectedTone,
            "silent_voicemail" | "voicemail" => Self::SilentVoicemail,
            _ => Self::Reject,
        }
    }
}

/// What to do with the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// Ring these devices through sipd, plus (`owner`) every device of the
    /// called number's owner; `timeout` seconds instead of `calls.ring_timeout`.
    Ring {
        devices: Vec<DeviceId>,
        owner: bool,
        timeout: Option<u32>,
    },
    /// Forward to an external number.
    Forward { number: String },
    /// Voicemail with an optional greeting override.
    Voicemail { greeting: Option<String> },
    /// Say (or play) then hang up.
    Announcement { text: String, audio: Option<String> },
    /// Reject: busy signal (`busy`) or plain rejection.
    Reject { busy: bool },
    /// A blocked call, answered per `routing.block_action`.
    Block { how: BlockAction },
    /// An auto-attendant menu (the contract type as stored; keys pressed
    /// are walked by [`crate::menu`]).
    Menu(Box<routing::MenuAction>),
}

impl Action {
    /// Short name for logs, the CDR and the "test a call" panel.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ring { .. } => "ring",
            Self::Forward { .. } => "forward",
            Self::Voicemail { .. } => "voicemail",
            Self::Announcement { .. } => "announcement",
            Self::Reject { .. } => "reject",
            Self::Menu(_) => "menu",
            Self::Block {
                how: BlockAction::Reject,
            } => "block_reject",
            Self::Block {
                how: BlockAction::DisconnectedTone,
            } => "block_disconnected_tone",
            Self::Block {
                how: BlockAction::SilentVoicemail,
            } => "block_silent_voicemail",
        }
    }
}

/// A route's action as stored. The fields are named, not skipped with
/// `..`, so a field added to the contract does not compile until it is
/// honoured here.
impl From<routing::Action> for Action {
    fn from(a: routing::Action) -> Self {
        match a {
            routing::Action::Ring(routing::RingAction {
                device_ids,
                owner,
                timeout,
            }) => Self::Ring {
                devices: device_ids,
                owner,
                timeout,
            },
            routing::Action::Forward(routing::ForwardAction { number }) => Self::Forward { number },
            routing::Action::Voicemail(routing::VoicemailAction { greeting }) => {
                Self::Voicemail { greeting }
            }
            routing::Action::Announcement(routing::AnnouncementAction { text, audio }) => {
                Self::Announcement { text, audio }
            }
            routing::Action::Reject(routing::RejectAction { reason }) => Self::Reject {
                busy: reason == routing::RejectReason::Busy,
            },
            routing::Action::Menu(m) => Self::Menu(Box::new(m)),
        }
    }
}

/// Which stage of the documented order decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Blocklist,
    Anonymous,
    Spam,
    Dnd,
    Route,
    Default,
}

/// The outcome, naming the rule so the CDR and logs can say why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub stage: Stage,
    /// e.g. `blocklist:12`, `anonymous`, `spam`, `dnd:user`, `route:5:After hours`, `default`.
    pub rule: String,
    /// Human-readable why, e.g. "spam score 0.75 > 0.70".
    pub reason: String,
    /// The route that matched, when a route decided.
    pub route_id: Option<RouteId>,
}

impl Decision {
    /// True for stages 1-3.
    pub fn is_blocked(&self) -> bool {
        matches!(
            self.stage,
            Stage::Blocklist | Stage::Anonymous | Stage::Spam
        )
    }

    /// The CDR disposition when the call ends where the decision sends it
    /// (ringing and forwarding are finished by later callbacks).
    pub fn disposition(&self) -> Disposition {
        match &self.action {
            Action::Block { .. } => Disposition::Blocked,
            Action::Reject { .. } => Disposition::Rejected,
            Action::Voicemail { .. } => Disposition::Voicemail,
            Action::Announcement { .. } => Disposition::Answered,
            Action::Ring { .. } | Action::Forward { .. } | Action::Menu(_) => {
                Disposition::InProgress
            }
        }
    }
}

/// One blocklist row.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockEntry {
    pub id: i64,
    pub pattern: String,
    /// `exact`, `prefix` or `regex`.
    pub pattern_type: String,
    pub reason: String,
}

/// The blocklist, indexed: exact numbers and prefixes in hash maps (a
/// lookup per prefix length of the caller), regexes in one `RegexSet`.
#[derive(Debug, Clone, Default)]
pub struct Blocklist {
    entries: Vec<BlockEntry>,
    exact: HashMap<String, usize>,
    prefix: HashMap<String, usize>,
    max_prefix: usize,
    regex: Option<regex::RegexSet>,
    regex_idx: Vec<usize>,
}

impl Blocklist {
    /// Builds the index; returns the ids of regex entries that did not
    /// compile (they are skipped).
    pub fn new(entries: Vec<BlockEntry>, default_country: &str) -> (Self, Vec<i64>) {
        let mut bl = Blocklist::default();
        let mut patterns = Vec::new();
        let mut bad = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let p = e.pattern.trim();
            match e.pattern_type.as_str() {
                "exact" => {
                    let key = E164::normalize(p, default_country)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|_| p.to_owned());
                    bl.exact.entry(key).or_insert(i);
                }
                "prefix" => {
                    let key: String = p
                        .chars()
                        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
                        .collect();
                    bl.max_prefix = bl.max_prefix.max(key.len());
                    bl.prefix.entry(key).or_insert(i);
                }
                "regex" => match regex::Regex::new(p) {
                    Ok(_) => {
                        patterns.push(p.to_owned());
                        bl.regex_idx.push(i);
                    }
                    Err(_) => bad.push(e.id),
                },
                _ => bad.push(e.id),
            }
        }
        bl.regex = regex::RegexSet::new(&patterns).ok();
        bl.entries = entries;
        (bl, bad)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry (by kind: exact, prefix, regex) matching `number`.
    pub fn find(&self, number: &str) -> Option<&BlockEntry> {
        if number.is_empty() {
            return None;
        }
        if let Some(&i) = self.exact.get(number) {
            return Some(&self.entries[i]);
        }
        let mut end = number.len().min(self.max_prefix);
        while end > 0 {
            if number.is_char_boundary(end)
                && let Some(&i) = self.prefix.get(&number[..end])
            {
                return Some(&self.entries[i]);
            }
            end -= 1;
        }
        let set = self.regex.as_ref()?;
        let first = set.matches(number).iter().next()?;
        Some(&self.entries[self.regex_idx[first]])
    }
}

/// Weekly schedule: per weekday, `[start, end)` local ranges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedule {
    days: HashMap<Weekday, Vec<(NaiveTime, NaiveTime)>>,
}

impl Schedule {
    /// Parses `{"mon": ["09:00","17:00"], "tue": [["09:00","12:00"],["13:00","17:00"]], ...}`.
    /// Unknown days and malformed ranges are ignored.
    pub fn parse(v: &serde_json::Value) -> Self {
        let mut days = HashMap::new();
        let Some(obj) = v.as_object() else {
            return Self { days };
        };
        for (k, ranges) in obj {
            let Some(day) = weekday(k) else { continue };
            let mut out = Vec::new();
            let as_pair = |r: &serde_json::Value| -> Option<(NaiveTime, NaiveTime)> {
                let a = r.get(0)?.as_str()?;
                let b = r.get(1)?.as_str()?;
                Some((hhmm(a)?, hhmm(b)?))
            };
            if let Some(p) = as_pair(ranges) {
                out.push(p);
            } else if let Some(list) = ranges.as_array() {
                out.extend(list.iter().filter_map(as_pair));
            }
            days.insert(day, out);
        }
        Self { days }
    }

    /// A route's own hours (validated, so every range parses).
    pub fn from_days(days: &std::collections::BTreeMap<routing::Day, routing::DayHours>) -> Self {
        Self {
            days: days
                .iter()
                .map(|(d, h)| (Weekday::from(*d), h.ranges().unwrap_or_default()))
                .collect(),
        }
    }

    /// True when `local` falls in one of the day's ranges.
    pub fn contains(&self, local: &DateTime<Tz>) -> bool {
        let t = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second())
            .unwrap_or_default();
        self.days
            .get(&local.weekday())
            .is_some_and(|rs| rs.iter().any(|(a, b)| in_range(t, *a, *b)))
    }
}

/// Time rules shared with SMS auto-replies ("after hours" means the same).
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    pub tz: Tz,
    pub business_hours: Schedule,
    pub holidays: HashSet<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            tz: Tz::UTC,
            business_hours: Schedule::default(),
            holidays: HashSet::new(),
        }
    }
}

impl Calendar {
    /// From `system.timezone`, `routing.business_hours`, `routing.holidays`.
    pub fn from_settings(s: &proto::settings::Settings) -> Self {
        Self {
            tz: s.str("system.timezone").parse().unwrap_or(Tz::UTC),
            business_hours: Schedule::parse(
                &serde_json::from_str(s.str("routing.business_hours")).unwrap_or_default(),
            ),
            holidays: parse_holidays(
                &serde_json::from_str(s.str("routing.holidays")).unwrap_or_default(),
            ),
        }
    }

    pub fn local(&self, now: DateTime<Utc>) -> DateTime<Tz> {
        now.with_timezone(&self.tz)
    }

    pub fn is_holiday(&self, now: DateTime<Utc>) -> bool {
        self.holidays.contains(&self.local(now).date_naive())
    }

    /// Inside business hours and not a holiday.
    pub fn is_business_hours(&self, now: DateTime<Utc>) -> bool {
        !self.is_holiday(now) && self.business_hours.contains(&self.local(now))
    }

    pub fn is_after_hours(&self, now: DateTime<Utc>) -> bool {
        !self.is_business_hours(now)
    }

    pub fn is_weekend(&self, now: DateTime<Utc>) -> bool {
        matches!(self.local(now).weekday(), Weekday::Sat | Weekday::Sun)
    }
}

/// When a `time` route applies.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeCondition {
    BusinessHours,
    AfterHours,
    Weekends,
    Holidays,
    Custom {
        days: Vec<Weekday>,
        start: NaiveTime,
        end: NaiveTime,
    },
}

/// A route's condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Time {
        when: TimeCondition,
        hours: Option<Schedule>,
        holidays: Option<HashSet<NaiveDate>>,
    },
    CallerId {
        matcher: CallerMatch,
        negate: bool,
    },
    Always,
    /// Unparseable condition data: never matches (and says so in logs).
    Invalid(String),
}

/// Caller-ID matching of a `callerid` route.
#[derive(Debug, Clone, PartialEq)]
pub enum CallerMatch {
    Vip,
    Known,
    /// On neither list.
    Unknown,
    Numbers(HashSet<String>),
    Prefix(String),
    /// No caller ID, as [`is_anonymous`] sees it.
    Anonymous,
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub id: RouteId,
    pub did_id: Option<DidId>,
    pub priority: i64,
    pub name: String,
    pub condition: Condition,
    pub action: Action,
}

impl Route {
    /// Builds a route from its table columns. A row that is not the
    /// [`proto::routing`] shape, or fails its validation, becomes a route
    /// whose condition is [`Condition::Invalid`]: it never matches.
    #[allow(clippy::too_many_arguments)]
    pub fn from_row(
        id: RouteId,
        did_id: Option<DidId>,
        priority: i64,
        name: &str,
        condition_type: &str,
        condition_data: &str,
        action_type: &str,
        action_data: &str,
        default_country: &str,
    ) -> Self {
        let (condition, action) =
            match parse_rule(condition_type, condition_data, action_type, action_data) {
                Ok((c, a)) => (compile(c, default_country), Action::from(a)),
                Err(why) => (
                    Condition::Invalid(
                        why.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    Action::Reject { busy: true },
                ),
            };
        Self {
            id,
            did_id,
            priority,
            name: name.to_owned(),
            condition,
            action,
        }
    }
}

/// The stored columns as the typed contract, validated; every field at
/// fault otherwise.
fn parse_rule(
    ct: &str,
    cd: &str,
    at: &str,
    ad: &str,
) -> Result<(routing::Condition, routing::Action), Vec<routing::FieldError>> {
    let json = |field: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            vec![routing::FieldError {
                field: field.to_owned(),
                message: e.to_string(),
            }]
        })
    };
    let c =
        routing::Condition::from_parts(ct, &json("condition_data", cd)?).map_err(|e| vec![e])?;
    let a = routing::Action::from_parts(at, &json("action_data", ad)?).map_err(|e| vec![e])?;
    let errs: Vec<routing::FieldError> = [c.validate(), a.validate()]
        .into_iter()
        .filter_map(Result::err)
        .flatten()
        .collect();
    if errs.is_empty() {
        Ok((c, a))
    } else {
        Err(errs)
    }
}

/// The typed condition in the form [`decide`] evaluates quickly: caller
/// numbers normalised into a set, times parsed. Every field is named so a
/// new one does not compile until it is evaluated.
fn compile(c: routing::Condition, default_country: &str) -> Condition {
    match c {
        routing::Condition::Default(routing::Always {}) => Condition::Always,
        routing::Condition::Time(routing::TimeCondition {
            when,
            days,
            start,
            end,
            hours,
            holidays,
        }) => {
            let when = match when {
                routing::TimeWhen::BusinessHours => TimeCondition::BusinessHours,
                routing::TimeWhen::AfterHours => TimeCondition::AfterHours,
                routing::TimeWhen::Weekends => TimeCondition::Weekends,
                routing::TimeWhen::Holidays => TimeCondition::Holidays,
                routing::TimeWhen::Custom => {
                    let t = |v: Option<String>| v.as_deref().and_then(routing::parse_hhmm);
                    let (Some(start), Some(end)) = (t(start), t(end)) else {
                        return Condition::Invalid("custom time needs start and end".into());
                    };
                    TimeCondition::Custom {
                        days: days.into_iter().map(Weekday::from).collect(),
                        start,
                        end,
                    }
                }
            };
            Condition::Time {
                when,
                hours: hours.as_ref().map(Schedule::from_days),
                holidays: holidays.map(|h| h.into_iter().collect()),
            }
        }
        routing::Condition::CallerId(routing::CallerIdCondition {
            matches,
            numbers,
            prefix,
            negate,
        }) => {
            let matcher = match matches {
                routing::CallerMatch::Vip => CallerMatch::Vip,
                routing::CallerMatch::Known => CallerMatch::Known,
                routing::CallerMatch::Unknown => CallerMatch::Unknown,
                routing::CallerMatch::Anonymous => CallerMatch::Anonymous,
                routing::CallerMatch::Numbers => CallerMatch::Numbers(
                    numbers
                        .iter()
                        .map(|n| normalize_caller(n, default_country))
                        .collect(),
                ),
                routing::CallerMatch::Prefix => {
                    CallerMatch::Prefix(prefix.unwrap_or_default().trim().to_owned())
                }
            };
            Condition::CallerId { matcher, negate }
        }
    }
}

/// A DID as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DidRules {
    pub did_id: DidId,
    pub owner_user_id: Option<UserId>,
    /// The owner's `users.dnd`.
    pub owner_dnd: bool,
    /// This DID's enabled routes plus the global ones, in evaluation order.
    pub routes: Vec<Route>,
}

impl RuleSet {
    /// The menu of route `id`, when that route's action is a menu.
    pub fn menu(&self, id: RouteId) -> Option<&routing::MenuAction> {
        self.dids
            .values()
            .flat_map(|d| d.routes.iter())
            .chain(self.global_routes.iter())
            .find(|r| r.id == id)
            .and_then(|r| match &r.action {
                Action::Menu(m) => Some(&**m),
                _ => None,
            })
    }
}

/// Everything [`decide`] needs besides the call and the clock.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub blocklist: Blocklist,
    pub reject_anonymous: bool,
    /// Block when the score is strictly above this.
    pub spam_threshold: f64,
    pub block_action: Option<BlockAction>,
    pub system_dnd: bool,
    pub vip: HashSet<String>,
    pub known: HashSet<String>,
    pub calendar: Calendar,
    /// By DID number (E.164).
    pub dids: HashMap<String, DidRules>,
    /// Routes without a DID (used for numbers not in `dids` too).
    pub global_routes: Vec<Route>,
    pub default_country: String,
}

/// Decides what to do with a call. Pure: same inputs, same answer.
pub fn decide(call: &CallFacts, rules: &RuleSet, now: DateTime<Utc>) -> Decision {
    let from = normalize_caller(&call.from, &rules.default_country);
    let block = rules.block_action.unwrap_or(BlockAction::Reject);
    let blocked = |stage, rule: String, reason: String| Decision {
        action: Action::Block { how: block },
        stage,
        rule,
        reason,
        route_id: None,
    };

    // 1. Blocklist.
    if let Some(e) = rules.blocklist.find(&from) {
        let why = if e.reason.is_empty() {
            format!("{} matches {} pattern {}", from, e.pattern_type, e.pattern)
        } else {
            format!(
                "{} matches {} pattern {} ({})",
                from, e.pattern_type, e.pattern, e.reason
            )
        };
        return blocked(Stage::Blocklist, format!("blocklist:{}", e.id), why);
    }
    // 2. Anonymous.
    if rules.reject_anonymous && is_anonymous(&call.from) {
        return blocked(
            Stage::Anonymous,
            "anonymous".into(),
            format!("no caller ID ({:?})", call.from),
        );
    }
    // 3. Spam.
    if let Some(score) = call.spam_score
        && score > rules.spam_threshold
    {
        return blocked(
            Stage::Spam,
            "spam".into(),
            format!("spam score {score:.2} > {:.2}", rules.spam_threshold),
        );
    }
    let did = rules.dids.get(&call.to);
    let is_vip = rules.vip.contains(&from);
    // 4. DND.
    let dnd = if did.is_some_and(|d| d.owner_dnd) {
        Some(("dnd:user", "the number's owner is on do-not-disturb"))
    } else if rules.system_dnd {
        Some(("dnd:system", "system-wide do-not-disturb"))
    } else {
        None
    };
    if let Some((rule, why)) = dnd
        && !is_vip
    {
        return Decision {
            action: Action::Voicemail { greeting: None },
            stage: Stage::Dnd,
            rule: rule.into(),
            reason: why.into(),
            route_id: None,
        };
    }
    // 5. Routes.
    let routes = did
        .map(|d| d.routes.as_slice())
        .unwrap_or(&rules.global_routes);
    for r in routes {
        if let Some(why) = matches(&r.condition, &call.from, &from, rules, now) {
            return Decision {
                action: r.action.clone(),
                stage: Stage::Route,
                rule: format!("route:{}:{}", r.id, r.name),
                reason: why,
                route_id: Some(r.id),
            };
        }
    }
    // 6. Default.
    let reason = if dnd.is_some() {
        "VIP caller passes do-not-disturb; ring the owner's devices"
    } else {
        "no rule matched; ring the owner's devices"
    };
    Decision {
        action: Action::Ring {
            devices: vec![],
            owner: true,
            timeout: None,
        },
        stage: Stage::Default,
        rule: "default".into(),
        reason: reason.into(),
        route_id: None,
    }
}

/// Some(reason) when the condition holds; `raw_from` is the caller as
/// Twilio sent it, `from` as normalised for the lists.
fn matches(
    c: &Condition,
    raw_from: &str,
    from: &str,
    rules: &RuleSet,
    now: DateTime<Utc>,
) -> Option<String> {
    match c {
        Condition::Always => Some("default route".into()),
        Condition::Invalid(_) => None,
        Condition::CallerId { matcher, negate } => {
            let hit = match matcher {
                CallerMatch::Vip => rules.vip.contains(from),
                CallerMatch::Known => rules.known.contains(from),
                CallerMatch::Unknown => !rules.vip.contains(from) && !rules.known.contains(from),
                CallerMatch::Numbers(set) => set.contains(from),
                CallerMatch::Prefix(p) => !from.is_empty() && from.starts_with(p.as_str()),
                CallerMatch::Anonymous => is_anonymous(raw_from),
            };
            (hit != *negate).then(|| {
                let what = match matcher {
                    CallerMatch::Vip => "on the VIP list".to_owned(),
                    CallerMatch::Known => "a known caller".to_owned(),
                    CallerMatch::Unknown => "not on the VIP or known lists".to_owned(),
                    CallerMatch::Numbers(_) => "in the route's numbers".to_owned(),
                    CallerMatch::Prefix(p) => format!("starts with {p}"),
                    CallerMatch::Anonymous => "anonymous (no caller ID)".to_owned(),
                };
                if *negate {
                    format!("caller {from} is not {what}")
                } else {
                    format!("caller {from} is {what}")
                }
            })
        }
        Condition::Time {
            when,
            hours,
            holidays,
        } => {
            // Borrow the route's overrides or the settings: no clones per call.
            let hours = hours.as_ref().unwrap_or(&rules.calendar.business_hours);
            let holidays = holidays.as_ref().unwrap_or(&rules.calendar.holidays);
            let tz = rules.calendar.tz;
            let local = now.with_timezone(&tz);
            let holiday = holidays.contains(&local.date_naive());
            let business = !holiday && hours.contains(&local);
            let (hit, what) = match when {
                TimeCondition::BusinessHours => (business, "business hours"),
                TimeCondition::AfterHours => (!business, "after hours"),
                TimeCondition::Weekends => (
                    matches!(local.weekday(), Weekday::Sat | Weekday::Sun),
                    "weekend",
                ),
                TimeCondition::Holidays => (holiday, "holiday"),
                TimeCondition::Custom { days, start, end } => {
                    let t = NaiveTime::from_hms_opt(local.hour(), local.minute(), local.second())
                        .unwrap_or_default();
                    // A range crossing midnight belongs to the day it started.
                    let day = if end <= start && t < *end {
                        local.weekday().pred()
                    } else {
                        local.weekday()
                    };
                    (
                        (days.is_empty() || days.contains(&day)) && in_range(t, *start, *end),
                        "custom schedule",
                    )
                }
            };
            hit.then(|| format!("{what} ({} {tz})", local.format("%a %H:%M")))
        }
    }
}

/// True for every form "no caller ID" arrives in (see the module docs).
pub fn is_anonymous(from: &str) -> bool {
    let f = from.trim();
    // SIP URIs and client names: look at the user part.
    let user = f
        .strip_prefix("sip:")
        .or_else(|| f.strip_prefix("sips:"))
        .or_else(|| f.strip_prefix("client:"))
        .map(|u| u.split('@').next().unwrap_or(u))
        .unwrap_or(f);
    let lower = user.to_ascii_lowercase();
    let word: String = lower.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    const WORDS: &[&str] = &[
        "anonymous",
        "restricted",
        "unavailable",
        "unknown",
        "private",
        "privatenumber",
        "withheld",
        "blocked",
        "notavailable",
        "outofarea",
        "nocallerid",
        "callerid",
    ];
    if WORDS.contains(&word.as_str()) {
        return true;
    }
    let digits: String = user.chars().filter(|c| c.is_ascii_digit()).collect();
    if !word.is_empty() && digits.is_empty() {
        // A named SIP/client caller (`sip:alice@...`) has an identity.
        return false;
    }
    if digits.is_empty() || digits.bytes().all(|b| b == b'0') {
        return true;
    }
    let bare = digits.strip_prefix('1').unwrap_or(&digits);
    WORDS
        .iter()
        .map(|w| keypad(w))
        .any(|k| k == digits || k == bare)
}

fn keypad(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            'a'..='c' => '2',
            'd'..='f' => '3',
            'g'..='i' => '4',
            'j'..='l' => '5',
            'm'..='o' => '6',
            'p'..='s' => '7',
            't'..='v' => '8',
            _ => '9',
        })
        .collect()
}

/// The caller as compared with lists: E.164 when it parses, else as given.
pub fn normalize_caller(from: &str, default_country: &str) -> String {
    let country = if default_country.is_empty() {
        "1"
    } else {
        default_country
    };
    E164::normalize(from.trim(), country)
        .map(|n| n.to_string())
        .unwrap_or_else(|_| from.trim().to_owned())
}

/// Which vendor an add-on result comes from (CONTRACT.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Nomorobo,
    Marchex,
    Ekata,
    Icehook,
}

impl Vendor {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nomorobo" => Some(Self::Nomorobo),
            "marchex" => Some(Self::Marchex),
            "ekata" | "whitepages" => Some(Self::Ekata),
            "icehook" => Some(Self::Icehook),
            _ => None,
        }
    }
}

/// Add-on unique names -> vendor, from `routing.spam_addons`
/// (`name=vendor,name=vendor`). Names not listed are recognised by the
/// shape of their result.
pub fn parse_addon_names(s: &str) -> HashMap<String, Vendor> {
    s.split(',')
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            Some((n.trim().to_owned(), Vendor::parse(v)?))
        })
        .collect()
}

/// The spam score in 0..=1 from Twilio's `AddOns` JSON string: the maximum
/// over successful add-ons of nomorobo `score` (0/1), marchex
/// `recommendation` (PASS 0, FLAG 0.75, BLOCK 1), ekata
/// `(reputation_level-1)/4`, icehook `risk_level/100`. Failed or unknown
/// add-ons give no score; None when nothing usable (never blocks).
pub fn spam_score(addons_json: &str, names: &HashMap<String, Vendor>) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(addons_json).ok()?;
    let results = v.get("results")?.as_object()?;
    let mut best: Option<f64> = None;
    for (name, r) in results {
        if r.get("status").and_then(|s| s.as_str()) != Some("successful") {
            continue;
        }
        let Some(result) = r.get("result") else {
            continue;
        };
        let vendor = names.get(name).copied().or_else(|| {
            Vendor::parse(name.split('_').next().unwrap_or(name)).or_else(|| detect(result))
        });
        let score = match vendor {
            Some(Vendor::Nomorobo) => result.get("score").and_then(number),
            Some(Vendor::Marchex) => result
                .pointer("/result/recommendation")
                .and_then(|r| r.as_str())
                .and_then(|r| match r.to_ascii_uppercase().as_str() {
                    "PASS" => Some(0.0),
                    "FLAG" => Some(0.75),
                    "BLOCK" => Some(1.0),
                    _ => None,
                }),
            Some(Vendor::Ekata) => result
                .get("reputation_level")
                .and_then(number)
                .map(|l| (l - 1.0) / 4.0),
            Some(Vendor::Icehook) => result.get("risk_level").and_then(number).map(|l| l / 100.0),
            None => None,
        };
        if let Some(s) = score.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0)) {
            best = Some(best.map_or(s, |b: f64| b.max(s)));
        }
    }
    best
}

fn detect(result: &serde_json::Value) -> Option<Vendor> {
    if result.get("score").is_some() {
        Some(Vendor::Nomorobo)
    } else if result.pointer("/result/recommendation").is_some() {
        Some(Vendor::Marchex)
    } else if result.get("reputation_level").is_some() {
        Some(Vendor::Ekata)
    } else if result.get("risk_level").is_some() {
        Some(Vendor::Icehook)
    } else {
        None
    }
}

fn number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn parse_holidays(v: &serde_json::Value) -> HashSet<NaiveDate> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str())
                .filter_map(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
                .collect()
        })
        .unwrap_or_default()
}

fn weekday(s: &str) -> Option<Weekday> {
    match s.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

fn hhmm(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    if s == "24:00" {
        return NaiveTime::from_hms_opt(23, 59, 59);
    }
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

/// `[start, end)`; a range with end <= start crosses midnight.
fn in_range(t: NaiveTime, start: NaiveTime, end: NaiveTime) -> bool {
    if start < end {
        t >= start && t < end
    } else {
        t >= start || t < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DID: &str = "+15550001111";

    fn bl(entries: &[(i64, &str, &str)]) -> Blocklist {
        Blocklist::new(
            entries
                .iter()
                .map(|(id, p, t)| BlockEntry {
                    id: *id,
                    pattern: p.to_string(),
                    pattern_type: t.to_string(),
                    reason: String::new(),
                })
                .collect(),
            "1",
        )
        .0
    }

    fn route(id: i64, prio: i64, ct: &str, cd: &str, at: &str, ad: &str) -> Route {
        Route::from_row(
            RouteId(id),
            Some(DidId(1)),
            prio,
            &format!("r{id}"),
            ct,
            cd,
            at,
            ad,
            "1",
        )
    }

    fn rules() -> RuleSet {
        let mut dids = HashMap::new();
        dids.insert(
            DID.to_owned(),
            DidRules {
                did_id: DidId(1),
                owner_user_id: Some(UserId(7)),
                owner_dnd: false,
                routes: vec![],
            },
        );
        RuleSet {
            spam_threshold: 0.7,
            calendar: Calendar {
                tz: "America/New_York".parse().unwrap(),
                business_hours: Schedule::parse(&serde_json::json!({
                    "mon": ["09:00", "17:00"], "tue": ["09:00", "17:00"], "wed": ["09:00", "17:00"],
                    "thu": ["09:00", "17:00"], "fri": ["09:00", "17:00"],
                })),
                holidays: HashSet::new(),
            },
            dids,
            default_country: "1".into(),
            ..RuleSet::default()
        }
    }

    fn call(from: &str) -> CallFacts {
        CallFacts {
            from: from.into(),
            to: DID.into(),
            ..CallFacts::default()
        }
    }

    fn with_routes(mut r: RuleSet, routes: Vec<Route>) -> RuleSet {
        r.dids.get_mut(DID).unwrap().routes = routes;
        r
    }

    /// Wednesday 2026-11-25 10:00 in New York (EST, UTC-5).
    fn wed_10am() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap()
    }

    #[test]
    fn with_no_rules_the_owner_devices_ring() {
        let d = decide(&call("+15557654321"), &rules(), wed_10am());
        assert_eq!(
            d.action,
            Action::Ring {
                devices: vec![],
                owner: true,
                timeout: None
            }
        );
        assert_eq!(d.rule, "default");
        assert_eq!(d.stage, Stage::Default);
    }

    #[test]
    fn exact_prefix_and_regex_blocklist_entries_block() {
        let mut r = rules();
        r.blocklist = bl(&[
            (1, "(555) 765-4321", "exact"),
            (2, "+1900", "prefix"),
            (3, r"^\+44\d+$", "regex"),
        ]);
        let now = wed_10am();
        let d = decide(&call("+15557654321"), &r, now);
        assert_eq!(
            (d.stage, d.rule.as_str()),
            (Stage::Blocklist, "blocklist:1")
        );
        assert_eq!(
            d.action,
            Action::Block {
                how: BlockAction::Reject
            }
        );
        assert_eq!(decide(&call("+19005551234"), &r, now).rule, "blocklist:2");
        assert_eq!(decide(&call("+442079460958"), &r, now).rule, "blocklist:3");
        assert_eq!(decide(&call("+15557654322"), &r, now).rule, "default");
        assert_eq!(decide(&call("5557654321"), &r, now).rule, "blocklist:1");
    }

    #[test]
    fn an_invalid_regex_is_skipped_and_reported() {
        let (b, bad) = Blocklist::new(
            vec![BlockEntry {
                id: 9,
                pattern: "(".into(),
                pattern_type: "regex".into(),
                reason: String::new(),
            }],
            "1",
        );
        assert_eq!(bad, vec![9]);
        assert!(b.find("+15551234567").is_none());
    }

    #[test]
    fn each_blocking_action_is_used_for_blocked_calls() {
        let mut r = rules();
        r.blocklist = bl(&[(1, "+15557654321", "exact")]);
        for (setting, how) in [
            ("reject", BlockAction::Reject),
            ("disconnected_tone", BlockAction::DisconnectedTone),
            ("silent_voicemail", BlockAction::SilentVoicemail),
        ] {
            r.block_action = Some(BlockAction::parse(setting));
            let d = decide(&call("+15557654321"), &r, wed_10am());
            assert_eq!(d.action, Action::Block { how });
            assert_eq!(d.disposition(), Disposition::Blocked);
        }
    }

    #[test]
    fn every_anonymous_form_is_recognised() {
        for f in [
            "",
            " ",
            "anonymous",
            "Anonymous",
            "ANONYMOUS",
            "Restricted",
            "restricted",
            "Unavailable",
            "unknown",
            "Private",
            "private number",
            "withheld",
            "+266696687",
            "266696687",
            "+7378742833",
            "+17378742833",
            "+86282452253",
            "sip:anonymous@anonymous.invalid",
            "client:Anonymous",
            "+0000000000",
            "0",
        ] {
            assert!(is_anonymous(f), "{f:?} should be anonymous");
        }
        for f in [
            "+15557654321",
            "5557654321",
            "sip:alice@example.com",
            "+442079460958",
        ] {
            assert!(!is_anonymous(f), "{f:?} is a real caller");
        }
    }

    #[test]
    fn anonymous_calls_are_blocked_only_when_the_setting_is_on() {
        let mut r = rules();
        assert_eq!(decide(&call("anonymous"), &r, wed_10am()).rule, "default");
        r.reject_anonymous = true;
        let d = decide(&call("+266696687"), &r, wed_10am());
        assert_eq!((d.stage, d.rule.as_str()), (Stage::Anonymous, "anonymous"));
    }

    #[test]
    fn spam_threshold_is_strict_0_7_passes_0_71_blocks_none_never_blocks() {
        let r = rules();
        let mut c = call("+15557654321");
        c.spam_score = Some(0.7);
        assert_eq!(decide(&c, &r, wed_10am()).stage, Stage::Default);
        c.spam_score = Some(0.71);
        let d = decide(&c, &r, wed_10am());
        assert_eq!(d.stage, Stage::Spam);
        assert!(d.reason.contains("0.71"), "{}", d.reason);
        c.spam_score = None;
        assert_eq!(decide(&c, &r, wed_10am()).stage, Stage::Default);
    }

    fn addon(name: &str, status: &str, result: serde_json::Value) -> String {
        serde_json::json!({
            "status": "successful", "message": null, "code": null,
            "results": { name: {"request_sid": "XR1", "status": status, "message": null, "code": null, "result": result}}
        })
        .to_string()
    }

    #[test]
    fn add_on_results_are_normalised_per_vendor() {
        let n = HashMap::new();
        let s = |j: String| spam_score(&j, &n);
        assert_eq!(
            s(addon(
                "nomorobo_spamscore",
                "successful",
                serde_json::json!({"status":"success","message":"success","score":1})
            )),
            Some(1.0)
        );
        assert_eq!(
            s(addon(
                "nomorobo_spamscore",
                "successful",
                serde_json::json!({"score":0})
            )),
            Some(0.0)
        );
        assert_eq!(
            s(addon(
                "marchex_cleancall",
                "successful",
                serde_json::json!({"result":{"recommendation":"BLOCK","reason":"Testing"}})
            )),
            Some(1.0)
        );
        assert_eq!(
            s(addon(
                "marchex_cleancall",
                "successful",
                serde_json::json!({"result":{"recommendation":"FLAG"}})
            )),
            Some(0.75)
        );
        assert_eq!(
            s(addon(
                "ekata_phone_valid",
                "successful",
                serde_json::json!({"reputation_level": 5})
            )),
            Some(1.0)
        );
        assert_eq!(
            s(addon(
                "icehook_scout",
                "successful",
                serde_json::json!({"risk_level": 70})
            )),
            Some(0.7)
        );
        assert_eq!(
            s(addon(
                "icehook_scout",
                "successful",
                serde_json::json!({"risk_level": 71})
            )),
            Some(0.71)
        );
    }

    #[test]
    fn a_failed_or_unknown_add_on_gives_no_score() {
        let n = HashMap::new();
        let failed = serde_json::json!({
            "status": "successful",
            "results": {"nomorobo_spamscore": {"status": "failed", "code": 61001, "message": "Request timed out", "result": {}}}
        });
        assert_eq!(spam_score(&failed.to_string(), &n), None);
        let php = serde_json::json!({"status": "failed", "results": {"x": {"status": "failed", "result": []}}});
        assert_eq!(spam_score(&php.to_string(), &n), None);
        assert_eq!(spam_score("not json", &n), None);
        assert_eq!(spam_score("", &n), None);
    }

    #[test]
    fn a_renamed_add_on_is_found_by_configuration_or_by_its_shape() {
        let named = parse_addon_names("my_robo=nomorobo");
        let j = addon("my_robo", "successful", serde_json::json!({"score": 1}));
        assert_eq!(spam_score(&j, &named), Some(1.0));
        let j = addon(
            "mystery",
            "successful",
            serde_json::json!({"risk_level": 90}),
        );
        assert_eq!(spam_score(&j, &HashMap::new()), Some(0.9));
    }

    #[test]
    fn the_highest_successful_add_on_score_counts() {
        let j = serde_json::json!({"status":"successful","results":{
            "nomorobo_spamscore":{"status":"successful","result":{"score":0}},
            "icehook_scout":{"status":"successful","result":{"risk_level":80}},
            "marchex_cleancall":{"status":"failed","result":{}}
        }});
        assert_eq!(spam_score(&j.to_string(), &HashMap::new()), Some(0.8));
    }

    #[test]
    fn dnd_sends_to_voicemail_but_vip_callers_pass() {
        let mut r = rules();
        r.dids.get_mut(DID).unwrap().owner_dnd = true;
        let d = decide(&call("+15557654321"), &r, wed_10am());
        assert_eq!((d.stage, d.rule.as_str()), (Stage::Dnd, "dnd:user"));
        assert_eq!(d.action, Action::Voicemail { greeting: None });
        r.vip.insert("+15557654321".into());
        let d = decide(&call("+15557654321"), &r, wed_10am());
        assert_eq!(d.stage, Stage::Default);
        r.dids.get_mut(DID).unwrap().owner_dnd = false;
        r.system_dnd = true;
        r.vip.clear();
        assert_eq!(
            decide(&call("+15557654321"), &r, wed_10am()).rule,
            "dnd:system"
        );
    }

    #[test]
    fn dnd_comes_after_blocking() {
        let mut r = rules();
        r.system_dnd = true;
        r.blocklist = bl(&[(4, "+1555765", "prefix")]);
        assert_eq!(
            decide(&call("+15557654321"), &r, wed_10am()).stage,
            Stage::Blocklist
        );
    }

    #[test]
    fn routes_are_tried_by_priority_and_the_first_match_wins() {
        let r = with_routes(
            rules(),
            vec![
                route(
                    10,
                    1,
                    "callerid",
                    r#"{"match":"vip"}"#,
                    "forward",
                    r#"{"number":"+15559990000"}"#,
                ),
                route(
                    11,
                    2,
                    "time",
                    r#"{"when":"business_hours"}"#,
                    "ring",
                    r#"{"device_ids":[3,4],"timeout":20}"#,
                ),
                route(12, 3, "default", "{}", "voicemail", "{}"),
            ],
        );
        let d = decide(&call("+15557654321"), &r, wed_10am());
        assert_eq!(d.rule, "route:11:r11");
        assert_eq!(d.route_id, Some(RouteId(11)));
        assert_eq!(
            d.action,
            Action::Ring {
                devices: vec![DeviceId(3), DeviceId(4)],
                owner: false,
                timeout: Some(20)
            }
        );
        let evening = wed_10am() + chrono::Duration::hours(9);
        assert_eq!(
            decide(&call("+15557654321"), &r, evening).rule,
            "route:12:r12"
        );
    }

    #[test]
    fn every_action_type_is_parsed_from_its_json() {
        let a = |t: &str, d: &str| route(1, 0, "default", "{}", t, d).action;
        assert_eq!(
            a("ring", r#"{"owner":true}"#),
            Action::Ring {
                devices: vec![],
                owner: true,
                timeout: None
            }
        );
        assert_eq!(
            a("ring", r#"{"device_ids":[2]}"#),
            Action::Ring {
                devices: vec![DeviceId(2)],
                owner: false,
                timeout: None
            }
        );
        assert_eq!(
            a("forward", r#"{"number":"+15559990000"}"#),
            Action::Forward {
                number: "+15559990000".into()
            }
        );
        assert_eq!(
            a("voicemail", r#"{"greeting":"Hi"}"#),
            Action::Voicemail {
                greeting: Some("Hi".into())
            }
        );
        assert_eq!(
            a("announcement", r#"{"text":"Closed"}"#),
            Action::Announcement {
                text: "Closed".into(),
                audio: None
            }
        );
        assert_eq!(a("reject", "{}"), Action::Reject { busy: true });
        assert_eq!(
            a("reject", r#"{"reason":"rejected"}"#),
            Action::Reject { busy: false }
        );
    }

    #[test]
    fn a_route_not_in_the_contract_shape_never_matches() {
        // "Ring device 2" in the shape twiliod once read: refused, not
        // turned into "ring the owner's phones".
        let r = with_routes(
            rules(),
            vec![
                route(1, 0, "default", "{}", "ring", r#"{"devices":[2]}"#),
                route(2, 1, "default", "{}", "ring", r#"{"device_ids":[]}"#),
                route(
                    3,
                    2,
                    "time",
                    r#"{"when":"custom","days":["mon"]}"#,
                    "voicemail",
                    "{}",
                ),
                route(4, 3, "default", "{}", "forward", r#"{"number":"12"}"#),
            ],
        );
        for route in &r.dids[DID].routes {
            assert!(
                matches!(route.condition, Condition::Invalid(_)),
                "{route:?}"
            );
        }
        assert_eq!(
            decide(&call("+15557654321"), &r, wed_10am()).stage,
            Stage::Default
        );
    }

    #[test]
    fn vip_known_unknown_number_and_prefix_caller_conditions() {
        let mut r = rules();
        r.vip.insert("+15550000001".into());
        r.known.insert("+15550000002".into());
        let pick = |cd: &str, from: &str| {
            let r = with_routes(
                r.clone(),
                vec![route(1, 0, "callerid", cd, "voicemail", "{}")],
            );
            decide(&call(from), &r, wed_10am()).stage == Stage::Route
        };
        assert!(pick(r#"{"match":"vip"}"#, "+15550000001"));
        assert!(!pick(r#"{"match":"vip"}"#, "+15550000002"));
        assert!(pick(r#"{"match":"known"}"#, "+15550000002"));
        assert!(pick(r#"{"match":"unknown"}"#, "+15550000003"));
        assert!(!pick(r#"{"match":"unknown"}"#, "+15550000001"));
        assert!(pick(
            r#"{"match":"numbers","numbers":["+15550000003"]}"#,
            "5550000003"
        ));
        assert!(pick(
            r#"{"match":"prefix","prefix":"+1555000"}"#,
            "+15550000009"
        ));
        assert!(pick(r#"{"match":"known","negate":true}"#, "+15550000009"));
        assert!(pick(r#"{"match":"anonymous"}"#, "anonymous"));
        assert!(pick(r#"{"match":"anonymous"}"#, ""));
        assert!(!pick(r#"{"match":"anonymous"}"#, "+15550000009"));
        assert!(pick(
            r#"{"match":"anonymous","negate":true}"#,
            "+15550000009"
        ));
        assert!(!pick(r#"{"match":"nope"}"#, "+15550000009"));
        // The shapes twiliod used to read are no longer half-understood.
        assert!(!pick(r#"{"list":"unknown"}"#, "+15550000003"));
    }

    #[test]
    fn weekends_holidays_and_after_hours_follow_the_local_calendar() {
        let mut r = rules();
        r.calendar
            .holidays
            .insert(NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
        let routes = vec![
            route(
                1,
                0,
                "time",
                r#"{"when":"holidays"}"#,
                "announcement",
                r#"{"text":"Happy holidays"}"#,
            ),
            route(2, 1, "time", r#"{"when":"weekends"}"#, "voicemail", "{}"),
            route(
                3,
                2,
                "time",
                r#"{"when":"after_hours"}"#,
                "forward",
                r#"{"number":"+15559990000"}"#,
            ),
        ];
        let r = with_routes(r, routes);
        // Thanksgiving 2026-11-26 10:00 EST: a holiday (not business hours).
        let thanksgiving = Utc.with_ymd_and_hms(2026, 11, 26, 15, 0, 0).unwrap();
        assert_eq!(
            decide(&call("+15557654321"), &r, thanksgiving).route_id,
            Some(RouteId(1))
        );
        // Saturday 2026-11-28 noon.
        let sat = Utc.with_ymd_and_hms(2026, 11, 28, 17, 0, 0).unwrap();
        assert_eq!(
            decide(&call("+15557654321"), &r, sat).route_id,
            Some(RouteId(2))
        );
        // Wednesday 20:00 local (01:00 UTC Thursday!).
        let wed_night = Utc.with_ymd_and_hms(2026, 11, 26, 1, 0, 0).unwrap();
        assert_eq!(
            decide(&call("+15557654321"), &r, wed_night).route_id,
            Some(RouteId(3))
        );
        // Wednesday 10:00: business hours, nothing matches.
        assert_eq!(
            decide(&call("+15557654321"), &r, wed_10am()).stage,
            Stage::Default
        );
    }

    #[test]
    fn business_hours_stay_at_local_nine_across_the_dst_change() {
        let r = with_routes(
            rules(),
            vec![route(
                1,
                0,
                "time",
                r#"{"when":"business_hours"}"#,
                "ring",
                r#"{"owner":true}"#,
            )],
        );
        let biz = |utc: DateTime<Utc>| decide(&call("+15557654321"), &r, utc).stage == Stage::Route;
        // Fri 2026-03-06 (EST, UTC-5): 09:00 local = 14:00 UTC.
        assert!(!biz(Utc.with_ymd_and_hms(2026, 3, 6, 13, 30, 0).unwrap()));
        assert!(biz(Utc.with_ymd_and_hms(2026, 3, 6, 14, 0, 0).unwrap()));
        // Mon 2026-03-09 (EDT since Sunday 03-08, UTC-4): 09:00 local = 13:00 UTC.
        assert!(biz(Utc.with_ymd_and_hms(2026, 3, 9, 13, 0, 0).unwrap()));
        assert!(!biz(Utc.with_ymd_and_hms(2026, 3, 9, 12, 59, 0).unwrap()));
        // 17:00 EDT = 21:00 UTC is closed, 16:59 EDT open.
        assert!(biz(Utc.with_ymd_and_hms(2026, 3, 9, 20, 59, 0).unwrap()));
        assert!(!biz(Utc.with_ymd_and_hms(2026, 3, 9, 21, 0, 0).unwrap()));
        // And back in autumn: Mon 2026-11-02 (EST again): 09:00 = 14:00 UTC.
        assert!(!biz(Utc.with_ymd_and_hms(2026, 11, 2, 13, 0, 0).unwrap()));
        assert!(biz(Utc.with_ymd_and_hms(2026, 11, 2, 14, 0, 0).unwrap()));
    }

    #[test]
    fn a_custom_night_range_crosses_midnight_on_the_starting_day() {
        let r = with_routes(
            rules(),
            vec![route(
                1,
                0,
                "time",
                r#"{"when":"custom","days":["fri"],"start":"22:00","end":"06:00"}"#,
                "voicemail",
                "{}",
            )],
        );
        let hit = |utc: DateTime<Utc>| decide(&call("+15557654321"), &r, utc).stage == Stage::Route;
        // Fri 2026-11-27 23:00 EST = Sat 04:00 UTC.
        assert!(hit(Utc.with_ymd_and_hms(2026, 11, 28, 4, 0, 0).unwrap()));
        // Sat 03:00 EST (still Friday night's range).
        assert!(hit(Utc.with_ymd_and_hms(2026, 11, 28, 8, 0, 0).unwrap()));
        // Sat 23:00 EST: not Friday.
        assert!(!hit(Utc.with_ymd_and_hms(2026, 11, 29, 4, 0, 0).unwrap()));
    }

    #[test]
    fn global_routes_apply_to_numbers_without_their_own() {
        let mut r = rules();
        r.global_routes = vec![route(5, 0, "default", "{}", "voicemail", "{}")];
        let mut c = call("+15557654321");
        c.to = "+15550009999".into();
        assert_eq!(decide(&c, &r, wed_10am()).route_id, Some(RouteId(5)));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn a_blocklisted_caller_is_never_rung(
                digits in "[2-9][0-9]{9}",
                dnd in any::<bool>(),
                score in proptest::option::of(0.0f64..1.0),
                vip in any::<bool>(),
                secs in 0i64..(7 * 86400),
            ) {
                let from = format!("+1{digits}");
                let mut r = with_routes(rules(), vec![
                    route(1, 0, "callerid", r#"{"match":"vip"}"#, "ring", r#"{"owner":true}"#),
                    route(2, 1, "default", "{}", "ring", r#"{"owner":true}"#),
                ]);
                r.blocklist = bl(&[(1, &from, "exact")]);
                r.system_dnd = dnd;
                if vip { r.vip.insert(from.clone()); }
                let mut c = call(&from);
                c.spam_score = score;
                let d = decide(&c, &r, wed_10am() + chrono::Duration::seconds(secs));
                prop_assert!(d.is_blocked());
                let rang = matches!(d.action, Action::Ring { .. });
                prop_assert!(!rang);
            }
        }
    }
}
