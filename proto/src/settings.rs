//! Runtime settings: the `config` table read into one snapshot, the registry
//! of known keys (default, kind with its limits, the System screen's group,
//! label and one-line help), and a watcher that
//! pushes a fresh snapshot to running tasks when the table changes, so no
//! daemon needs a restart after an edit in the UI.
//!
//! Each daemon reads the keys it uses through the typed getters; webd uses
//! [`KEYS`] to validate, mask secrets and list settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Where a setting is shown: the System screen's sections, by task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    General,
    Phones,
    Calls,
    Voicemail,
    Texts,
    Twilio,
    Notifications,
    Security,
    Backups,
    Advanced,
}

impl Group {
    /// In the order the System screen shows them.
    pub const ALL: [Group; 10] = [
        Group::General,
        Group::Phones,
        Group::Calls,
        Group::Voicemail,
        Group::Texts,
        Group::Twilio,
        Group::Notifications,
        Group::Security,
        Group::Backups,
        Group::Advanced,
    ];

    /// A stable id (the UI keys its extra buttons on it).
    pub fn id(self) -> &'static str {
        match self {
            Group::General => "general",
            Group::Phones => "phones",
            Group::Calls => "calls",
            Group::Voicemail => "voicemail",
            Group::Texts => "texts",
            Group::Twilio => "twilio",
            Group::Notifications => "notifications",
            Group::Security => "security",
            Group::Backups => "backups",
            Group::Advanced => "advanced",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Group::General => "General",
            Group::Phones => "Phones",
            Group::Calls => "Calls",
            Group::Voicemail => "Voicemail",
            Group::Texts => "Text messages",
            Group::Twilio => "Twilio",
            Group::Notifications => "Email and push",
            Group::Security => "Security",
            Group::Backups => "Backups",
            Group::Advanced => "Advanced",
        }
    }
}

/// What a value is, and the limits the API enforces on it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Text,
    /// Write-only: never returned by the API, shown masked.
    Secret,
    Bool,
    /// A whole number from `min` to `max`, in `unit` (plain words).
    Int {
        min: u64,
        max: u64,
        unit: &'static str,
    },
    /// A decimal number from `min` to `max`.
    Decimal {
        min: f64,
        max: f64,
    },
    /// One of these `(value, label)` pairs.
    Choice(&'static [(&'static str, &'static str)]),
    /// An http(s) URL.
    Url,
    Email,
    /// Seconds separated by commas (retry schedules).
    SecondsList,
    /// JSON edited on its own screen (`page`), never as text.
    Json {
        page: &'static str,
    },
    /// What a phone dials for a feature: `*` or `#` then up to seven
    /// digits, `*` or `#`; empty turns the feature off.
    DialCode,
}

impl Kind {
    /// The name the API gives the kind.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Secret => "secret",
            Kind::Bool => "bool",
            Kind::Int { .. } => "int",
            Kind::Decimal { .. } => "decimal",
            Kind::Choice(_) => "choice",
            Kind::Url => "url",
            Kind::Email => "email",
            Kind::SecondsList => "seconds_list",
            Kind::Json { .. } => "json",
            Kind::DialCode => "dial_code",
        }
    }

    /// What is wrong with `v` for this kind, in plain words; `None` when it
    /// fits. An empty value is fine for text, URL and email (not set).
    pub fn problem(&self, v: &str) -> Option<String> {
        match *self {
            Kind::Text | Kind::Secret | Kind::Json { .. } => None,
            Kind::Bool => (!matches!(v, "true" | "false")).then(|| "must be true or false".into()),
            Kind::Int { min, max, unit } => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => None,
                _ => Some(format!("must be a whole number from {min} to {max} {unit}")),
            },
            Kind::Decimal { min, max } => match v.parse::<f64>() {
                Ok(x) if (min..=max).contains(&x) => None,
                _ => Some(format!("must be a number from {min} to {max}")),
            },
            Kind::Choice(options) => (!options.iter().any(|(o, _)| *o == v)).then(|| {
                let labels: Vec<&str> = options.iter().map(|(_, l)| *l).collect();
                format!("must be one of: {}", labels.join(", "))
            }),
            Kind::Url => (!v.is_empty()
                && url::Url::parse(v).ok().is_none_or(|u| {
                    !matches!(u.scheme(), "http" | "https") || u.host_str().is_none()
                }))
            .then(|| "must be a web address starting with https:// or http://".into()),
            Kind::Email => {
                let ok = v.is_empty()
                    || v.split_once('@').is_some_and(|(user, host)| {
                        !user.is_empty()
                            && host.contains('.')
                            && !host.starts_with('.')
                            && !host.ends_with('.')
                            && !v.contains(char::is_whitespace)
                    });
                (!ok).then(|| "must be an email address such as pbx@example.org".into())
            }
            Kind::DialCode => {
                let keys = v
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
                let ok = v.is_empty() || (v.len() <= 8 && v.starts_with(['*', '#']) && keys);
                (!ok).then(|| "must be * or # then digits, such as *8 (at most 8 keys)".into())
            }
            Kind::SecondsList => v
                .split(',')
                .any(|s| s.trim().parse::<u64>().is_err())
                .then(|| "must be seconds separated by commas, such as 0,30,60".into()),
        }
    }
}

/// One known setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    /// Never returned by the API; shown masked.
    pub secret: bool,
    /// What the field is called on screen.
    pub label: &'static str,
    /// One line in plain words saying what it does (not its label again).
    pub help: &'static str,
    pub group: Group,
    pub kind: Kind,
}

const fn k(
    name: &'static str,
    default: &'static str,
    group: Group,
    kind: Kind,
    label: &'static str,
    help: &'static str,
) -> Key {
    Key {
        name,
        default,
        secret: matches!(kind, Kind::Secret),
        label,
        help,
        group,
        kind,
    }
}

const fn secs(min: u64, max: u64) -> Kind {
    Kind::Int {
        min,
        max,
        unit: "seconds",
    }
}

const fn count(min: u64, max: u64) -> Kind {
    Kind::Int { min, max, unit: "" }
}

use Group::*;
use Kind::{Bool, DialCode, Email, SecondsList, Secret, Text, Url};

/// Every runtime setting. An empty default means "not set".
pub const KEYS: &[Key] = &[
    // General
    k(
        "system.public_url",
        "",
        General,
        Url,
        "Public web address",
        "The https address the internet reaches this PBX at; Twilio sends calls and texts there \
         and signs them for it",
    ),
    k(
        "system.timezone",
        "UTC",
        General,
        Text,
        "Time zone",
        "Business hours, holidays and the times shown in lists follow it, e.g. America/New_York",
    ),
    k(
        "system.default_country",
        "1",
        General,
        Text,
        "Country calling code",
        "Numbers typed without a + are taken as numbers of this country (1 for the US and Canada, \
         44 for the UK)",
    ),
    // Phones
    k(
        "sip.local_address",
        "",
        Phones,
        Text,
        "Address phones on your network use",
        "Empty = the address each phone's own packets arrived on, which is right for almost \
         every setup; set it only if phones must use one fixed address",
    ),
    k(
        "sip.public_address",
        "",
        Phones,
        Text,
        "Public address",
        "Your router's public IP or a DNS name, used towards Twilio and phones outside your \
         network. Empty = learned from Twilio's answers or the STUN server",
    ),
    k(
        "sip.stun_server",
        "",
        Phones,
        Text,
        "STUN server",
        "A host (or host:port) that tells this PBX its public address when it sits behind a \
         router; empty = not used",
    ),
    k(
        "sip.min_expires",
        "60",
        Phones,
        secs(10, 3600),
        "Shortest registration",
        "A phone asking to stay registered for less is told to ask for at least this long",
    ),
    k(
        "sip.max_expires",
        "3600",
        Phones,
        secs(60, 86400),
        "Longest registration",
        "A phone asking for longer is registered for this long and must renew",
    ),
    k(
        "sip.default_expires",
        "600",
        Phones,
        secs(60, 86400),
        "Registration when the phone does not say",
        "How long a phone stays registered when its request names no time",
    ),
    k(
        "sip.keepalive_interval",
        "30",
        Phones,
        secs(0, 3600),
        "Check phones every",
        "GoSIP pings each registered phone this often to see it is still there (0 = never)",
    ),
    k(
        "sip.keepalive_failures",
        "3",
        Phones,
        count(1, 20),
        "Missed checks before offline",
        "A phone that misses this many pings in a row is shown offline",
    ),
    // Calls
    k(
        "calls.ring_timeout",
        "30",
        Calls,
        secs(5, 300),
        "Ring for",
        "How long phones ring before the caller goes to voicemail or hears no answer",
    ),
    k(
        "calls.pickup_code",
        "*8",
        Calls,
        DialCode,
        "Pickup code",
        "Dial this to answer a call ringing another phone; add an extension (*8102) to answer that phone's call; empty turns it off",
    ),
    k(
        "calls.park_code",
        "*70",
        Calls,
        DialCode,
        "Park code",
        "Transfer a call to this to park it: the caller hears hold music and you hear the slot to take it back from",
    ),
    k(
        "calls.park_retrieve_code",
        "*71",
        Calls,
        DialCode,
        "Take back a parked call",
        "Dial this and the slot (*711) on any phone to take a parked call",
    ),
    k(
        "calls.park_timeout",
        "60",
        Calls,
        secs(10, 600),
        "Parked calls ring back after",
        "A parked call nobody takes rings the phone that parked it again",
    ),
    k(
        "calls.rtp_timeout",
        "60",
        Calls,
        secs(10, 3600),
        "End a silent call after",
        "A call whose audio has stopped in both directions this long is hung up (a phone that \
         lost power or network)",
    ),
    k(
        "calls.allow_international",
        "false",
        Calls,
        Bool,
        "Allow international calls",
        "Outside calls to numbers outside your country; off stops toll fraud from a stolen \
         phone password",
    ),
    k(
        "calls.allow_premium",
        "false",
        Calls,
        Bool,
        "Allow premium-rate numbers",
        "Calls to 900 and other high-cost numbers",
    ),
    k(
        "calls.max_concurrent_per_device",
        "3",
        Calls,
        count(0, 100),
        "Outside calls at once per phone",
        "0 = no limit. Emergency calls always go through",
    ),
    k(
        "calls.max_per_hour_per_device",
        "30",
        Calls,
        count(0, 10000),
        "Outside calls per hour per phone",
        "0 = no limit. Emergency calls always go through",
    ),
    k(
        "calls.record_dtmf",
        "*1",
        Calls,
        Text,
        "Record-during-a-call code",
        "Keys pressed during a call that start or stop recording it",
    ),
    k(
        "recording.retention_days",
        "90",
        Calls,
        Kind::Int {
            min: 0,
            max: 3650,
            unit: "days",
        },
        "Keep call recordings for",
        "Older recordings are deleted (0 = keep them forever)",
    ),
    k(
        "routing.dnd",
        "false",
        Calls,
        Bool,
        "Do not disturb for everyone",
        "No phone rings: outside callers go to voicemail, and calls between your phones are refused as unavailable",
    ),
    k(
        "routing.reject_anonymous",
        "false",
        Calls,
        Bool,
        "Block callers without caller ID",
        "Callers who hide their number are blocked like a blocked number",
    ),
    k(
        "routing.spam_threshold",
        "0.7",
        Calls,
        Kind::Decimal { min: 0.0, max: 1.0 },
        "Block spam scores above",
        "Calls Twilio's spam add-ons score above this (0 to 1) are blocked; lower blocks more",
    ),
    k(
        "routing.block_action",
        "reject",
        Calls,
        Kind::Choice(&[
            ("reject", "Reject the call"),
            ("disconnected_tone", "Play the number-disconnected tone"),
            ("silent_voicemail", "Send to voicemail without ringing"),
        ]),
        "Blocked callers get",
        "What a blocked or spam caller hears",
    ),
    k(
        "routing.business_hours",
        "{\"mon\":[\"09:00\",\"17:00\"],\"tue\":[\"09:00\",\"17:00\"],\"wed\":[\"09:00\",\"17:00\"],\"thu\":[\"09:00\",\"17:00\"],\"fri\":[\"09:00\",\"17:00\"]}",
        Calls,
        Kind::Json {
            page: "/admin/routing",
        },
        "Business hours",
        "The hours that time-of-day rules and after-hours replies use",
    ),
    k(
        "routing.holidays",
        "[]",
        Calls,
        Kind::Json {
            page: "/admin/routing",
        },
        "Holidays",
        "Days treated as outside business hours",
    ),
    // Voicemail
    k(
        "voicemail.greeting",
        "Please leave a message after the tone.",
        Voicemail,
        Text,
        "Greeting",
        "Read out to callers before the tone when a number has no greeting of its own",
    ),
    k(
        "voicemail.max_length",
        "180",
        Voicemail,
        secs(10, 3600),
        "Longest message",
        "A caller is cut off after this long",
    ),
    k(
        "voicemail.min_length",
        "3",
        Voicemail,
        secs(0, 60),
        "Shortest message kept",
        "Shorter messages (a caller hanging up at the tone) are thrown away",
    ),
    k(
        "voicemail.internal_calls",
        "true",
        Voicemail,
        Bool,
        "Voicemail for calls between phones",
        "A call from one of your phones to another that nobody answers goes to the callee's voicemail; off, the caller hears it was not answered",
    ),
    k(
        "voicemail.access_code",
        "*97",
        Voicemail,
        DialCode,
        "Voicemail access code",
        "Dial this from a phone (or set its Messages key to it) to hear your voicemail; empty turns it off",
    ),
    k(
        "voicemail.silence_timeout",
        "10",
        Voicemail,
        secs(1, 60),
        "End after silence of",
        "A message ends when the caller says nothing for this long",
    ),
    k(
        "twilio.delete_after_download",
        "true",
        Voicemail,
        Bool,
        "Delete Twilio's copy",
        "Once a voicemail is safely here, the recording is deleted at Twilio",
    ),
    // Texts
    k(
        "sms.auto_reply_window",
        "3600",
        Texts,
        secs(0, 2_592_000),
        "One auto-reply per sender every",
        "A person texting again within this time gets no second auto-reply",
    ),
    k(
        "sms.status_poll_after",
        "900",
        Texts,
        secs(1, 86400),
        "Ask Twilio about a text after",
        "If Twilio has not said whether a sent text arrived by then, GoSIP asks",
    ),
    k(
        "sms.request_timeout_ms",
        "20000",
        Texts,
        Kind::Int {
            min: 1000,
            max: 120_000,
            unit: "milliseconds",
        },
        "Give up one send attempt after",
        "A send that takes longer is tried again later, without sending the text twice",
    ),
    k(
        "sms.media_url_ttl",
        "3600",
        Texts,
        secs(60, 86400),
        "Picture links last",
        "How long Twilio may fetch the pictures of a sent MMS",
    ),
    // Twilio
    k(
        "twilio.account_sid",
        "",
        Twilio,
        Text,
        "Account SID",
        "Starts with AC; on the Twilio console's front page",
    ),
    k(
        "twilio.auth_token",
        "",
        Twilio,
        Secret,
        "Auth token",
        "Next to the Account SID in the Twilio console; kept here and never shown again",
    ),
    k(
        "twilio.termination_uri",
        "",
        Twilio,
        Text,
        "SIP trunk termination address",
        "Where outside calls go, e.g. example.pstn.twilio.com (your Elastic SIP Trunk's \
         Termination page); write sips:example.pstn.twilio.com for secure trunking (TLS and \
         SRTP, after enabling it on the trunk)",
    ),
    k(
        "twilio.trunk_username",
        "",
        Twilio,
        Text,
        "Trunk user name",
        "The credential list user name Twilio and GoSIP use on the trunk",
    ),
    k(
        "twilio.trunk_password",
        "",
        Twilio,
        Secret,
        "Trunk password",
        "The password of that credential list user",
    ),
    k(
        "twilio.alert_after_failures",
        "3",
        Twilio,
        count(1, 100),
        "Alert after failed requests",
        "Tell the admin once this many requests to Twilio in a row have failed",
    ),
    k(
        "routing.spam_addons",
        "nomorobo_spamscore=nomorobo,marchex_cleancall=marchex,ekata_phone_valid=ekata,icehook_scout=icehook",
        Twilio,
        Text,
        "Spam add-ons",
        "The Twilio add-ons whose scores are read, as name=vendor separated by commas",
    ),
    // Email and push
    k(
        "email.transport",
        "smtp",
        Notifications,
        Kind::Choice(&[("smtp", "An SMTP server"), ("postmark", "Postmark")]),
        "Send email with",
        "Where notification email is handed over",
    ),
    k(
        "email.from",
        "",
        Notifications,
        Email,
        "From address",
        "The sender of voicemail, text and alert email",
    ),
    k(
        "smtp.host",
        "",
        Notifications,
        Text,
        "SMTP server",
        "Your mail provider's outgoing server, e.g. smtp.example.org",
    ),
    k(
        "smtp.port",
        "587",
        Notifications,
        count(1, 65535),
        "SMTP port",
        "Usually 587 with STARTTLS or 465 with TLS",
    ),
    k(
        "smtp.security",
        "starttls",
        Notifications,
        Kind::Choice(&[
            ("starttls", "STARTTLS (port 587)"),
            ("tls", "TLS (port 465)"),
            ("plain", "None (local relay only)"),
        ]),
        "SMTP encryption",
        "How the connection to the mail server is protected",
    ),
    k(
        "smtp.tls_verify",
        "true",
        Notifications,
        Bool,
        "Check the mail server's certificate",
        "Turn off only for a server of your own with a self-signed certificate",
    ),
    k(
        "smtp.username",
        "",
        Notifications,
        Text,
        "SMTP user name",
        "Often your email address; empty if the server needs no login",
    ),
    k(
        "smtp.password",
        "",
        Notifications,
        Secret,
        "SMTP password",
        "An app password if your provider offers them",
    ),
    k(
        "postmark.token",
        "",
        Notifications,
        Secret,
        "Postmark server token",
        "From your Postmark server's API Tokens page",
    ),
    k(
        "gotify.url",
        "",
        Notifications,
        Url,
        "Gotify server",
        "The web address of your Gotify server, for push notifications",
    ),
    k(
        "gotify.token",
        "",
        Notifications,
        Secret,
        "Gotify application token",
        "Made in Gotify under Apps",
    ),
    // Security
    k(
        "sip.ban_threshold",
        "10",
        Security,
        count(1, 1000),
        "Wrong passwords before a ban",
        "An address that fails this many phone logins in the window below is ignored for a while",
    ),
    k(
        "sip.ban_window",
        "60",
        Security,
        secs(1, 86400),
        "Counting wrong passwords over",
        "The time over which failed phone logins are counted",
    ),
    k(
        "sip.ban_duration",
        "900",
        Security,
        secs(0, 604_800),
        "Ban for",
        "How long a banned address is ignored (0 = no bans)",
    ),
    k(
        "sip.trunk_source_ips",
        "",
        Security,
        Text,
        "Trunk calls only from",
        "IP addresses, separated by commas, allowed to send calls as Twilio; empty = any address \
         that knows the trunk password",
    ),
    k(
        "system.trusted_proxy",
        "",
        Security,
        Text,
        "Reverse proxy address",
        "The IP of your TLS proxy; only its X-Forwarded-For is believed when limiting logins",
    ),
    k(
        crate::ssrf::ALLOW_KEY,
        "",
        Security,
        Text,
        "Private servers notifications may reach",
        "Gotify servers and webhook receivers on your own network, as host names or addresses \
         separated by commas (e.g. gotify.lan, 192.168.1.20); other private addresses are refused",
    ),
    // Backups
    k(
        "backup.interval_hours",
        "24",
        Backups,
        Kind::Int {
            min: 0,
            max: 720,
            unit: "hours",
        },
        "Back up automatically every",
        "A copy of the database and settings is kept on this machine (0 = never)",
    ),
    k(
        "backup.keep",
        "7",
        Backups,
        count(1, 365),
        "Automatic backups to keep",
        "Older automatic backups are deleted",
    ),
    // Advanced
    k(
        "sip.tls_certificate",
        "",
        Advanced,
        Text,
        "TLS certificate file",
        "A PEM certificate (chain) phones see on the SIP-over-TLS port, e.g. the one your reverse proxy obtains; empty = GoSIP's own self-signed one",
    ),
    k(
        "sip.tls_key",
        "",
        Advanced,
        Text,
        "TLS key file",
        "The PEM private key of that certificate",
    ),
    k(
        "phone.ice_servers",
        "",
        Advanced,
        Text,
        "Browser phone STUN/TURN servers",
        "Only for browsers that cannot reach GoSIP's media ports directly (UDP blocked where they \
         are): entries separated by commas, each a URL, or a TURN URL, user name and password \
         separated by spaces, e.g. turn:turn.example.org:3478 alice s3cret; empty = none",
    ),
    k(
        "sip.realm",
        "",
        Advanced,
        Text,
        "Phone login realm",
        "The name phones see when asked for their password; empty = this machine's name. \
         Changing it makes every phone's stored password fail until it is set again",
    ),
    k(
        "sip.nonce_ttl",
        "300",
        Advanced,
        secs(30, 3600),
        "Login challenge lifetime",
        "How long a phone may answer one password challenge",
    ),
    k(
        "sip.digest_sha256",
        "true",
        Advanced,
        Bool,
        "Offer SHA-256 logins",
        "Phones that know SHA-256 use it; older phones keep MD5",
    ),
    k(
        "sip.trunk_options_interval",
        "60",
        Advanced,
        secs(0, 3600),
        "Ping Twilio every",
        "The answer also tells GoSIP its public address (0 = never)",
    ),
    k(
        "twilio.api_base",
        "https://api.twilio.com",
        Advanced,
        Url,
        "Twilio API address",
        "Change only to use a Twilio-compatible test server",
    ),
    k(
        "postmark.api_base",
        "https://api.postmarkapp.com",
        Advanced,
        Url,
        "Postmark API address",
        "Change only to use a Postmark-compatible test server",
    ),
    k(
        "notify.email_retry_delays",
        "0,1200,2400",
        Advanced,
        SecondsList,
        "Email retries",
        "Seconds to wait before each try of a notification email",
    ),
    k(
        "notify.gotify_retry_delays",
        "0,30,60",
        Advanced,
        SecondsList,
        "Push retries",
        "Seconds to wait before each try of a push notification",
    ),
    k(
        "notify.webhook_retry_delays",
        "0,10,60,300,1800",
        Advanced,
        SecondsList,
        "Webhook retries",
        "Seconds to wait before each try of a webhook",
    ),
];

/// Looks a key up in the registry.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// A snapshot of the `config` table over the registry defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    /// Defaults only (what a fresh install runs with).
    pub fn defaults() -> Self {
        let values = KEYS
            .iter()
            .map(|k| (k.name.to_owned(), k.default.to_owned()))
            .collect();
        Self { values }
    }

    /// Reads the `config` table over the defaults.
    pub async fn load(pool: &SqlitePool) -> Result<Self, sqlx::Error> {
        let mut s = Self::defaults();
        let rows: Vec<(String, Option<String>)> = sqlx::query_as("SELECT key, value FROM config")
            .fetch_all(pool)
            .await?;
        for (k, v) in rows {
            s.values.insert(k, v.unwrap_or_default());
        }
        Ok(s)
    }

    /// Overrides one value (tests, and webd before it writes).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_owned(), value.into());
    }

    pub fn str(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.parsed(key).unwrap_or(0)
    }

    pub fn f64(&self, key: &str) -> f64 {
        self.parsed(key).unwrap_or(0.0)
    }

    pub fn bool(&self, key: &str) -> bool {
        matches!(self.str(key), "true" | "1" | "yes" | "on")
    }

    /// A comma-separated list of seconds, e.g. retry schedules.
    pub fn durations(&self, key: &str) -> Vec<Duration> {
        self.str(key)
            .split(',')
            .filter_map(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .collect()
    }

    /// All values, registry keys and any extra keys the table holds.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn parsed<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.str(key).trim().parse().ok()
    }
}

/// Writes one setting (webd is the `config` table's owner).
pub async fn store(pool: &SqlitePool, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO config (key, value, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(value)
    .bind(crate::time::now())
    .execute(pool)
    .await?;
    Ok(())
}

/// Shared, hot-reloaded settings of one daemon.
#[derive(Clone)]
pub struct SettingsHandle {
    tx: Arc<watch::Sender<Arc<Settings>>>,
    pool: SqlitePool,
}

impl SettingsHandle {
    /// Loads the first snapshot.
    pub async fn new(pool: SqlitePool) -> Result<Self, sqlx::Error> {
        let first = Settings::load(&pool).await?;
        let (tx, _) = watch::channel(Arc::new(first));
        Ok(Self {
            tx: Arc::new(tx),
            pool,
        })
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Settings> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes when settings change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.tx.subscribe()
    }

    /// Re-reads the table now; subscribers wake only if something changed.
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let fresh = Settings::load(&self.pool).await?;
        self.tx.send_if_modified(|cur| {
            if **cur == fresh {
                false
            } else {
                *cur = Arc::new(fresh);
                true
            }
        });
        Ok(())
    }

    /// Polls the table every `every` until `stop`, as a safety net beside
    /// the explicit `Reload` RPC webd sends after an edit.
    pub async fn poll(self, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "settings reload failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_fits_its_kind_and_every_key_is_described() {
        for k in KEYS {
            assert_eq!(k.kind.problem(k.default), None, "{}", k.name);
            assert!(!k.label.is_empty() && !k.help.is_empty(), "{}", k.name);
            assert_ne!(k.label, k.help, "{}: the help repeats the label", k.name);
            // The UI shows labels and help, never key names.
            assert!(!k.help.contains(k.name), "{}", k.name);
        }
        for g in Group::ALL {
            assert!(KEYS.iter().any(|k| k.group == g), "{g:?} is empty");
        }
    }

    #[test]
    fn limits_are_enforced_in_plain_words() {
        let ring = key("calls.ring_timeout").unwrap().kind;
        assert_eq!(ring.problem("30"), None);
        assert_eq!(
            ring.problem("5000").as_deref(),
            Some("must be a whole number from 5 to 300 seconds")
        );
        assert!(ring.problem("-1").is_some() && ring.problem("ten").is_some());
        let code = key("calls.pickup_code").unwrap().kind;
        for ok in ["", "*8", "#70", "*71*"] {
            assert_eq!(code.problem(ok), None, "{ok}");
        }
        for bad in ["8", "*8a", "*123456789", "* 8"] {
            assert_eq!(
                code.problem(bad).as_deref(),
                Some("must be * or # then digits, such as *8 (at most 8 keys)"),
                "{bad}"
            );
        }
        let spam = key("routing.spam_threshold").unwrap().kind;
        assert_eq!(spam.problem("0.71"), None);
        assert!(spam.problem("1.5").is_some());
        let sec = key("smtp.security").unwrap().kind;
        assert_eq!(sec.problem("tls"), None);
        assert!(sec.problem("ssl").unwrap().contains("STARTTLS (port 587)"));
        assert!(Kind::Email.problem("pbx@example.org").is_none());
        assert!(Kind::Email.problem("not an email").is_some());
        assert!(Kind::Url.problem("ftp://x").is_some());
        assert!(Kind::SecondsList.problem("0, 30,60").is_none());
        assert!(Kind::Bool.problem("yes").is_some());
    }

    #[test]
    fn registry_names_are_unique_and_secrets_have_no_default() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(
            KEYS.iter()
                .filter(|k| k.secret)
                .all(|k| k.default.is_empty())
        );
    }

    #[tokio::test]
    async fn stored_values_override_defaults_and_reload_wakes_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let h = SettingsHandle::new(pool.clone()).await.unwrap();
        assert_eq!(h.get().f64("routing.spam_threshold"), 0.7);
        let mut rx = h.subscribe();
        store(&pool, "routing.spam_threshold", "0.5").await.unwrap();
        h.reload().await.unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().f64("routing.spam_threshold"), 0.5);
        h.reload().await.unwrap();
        assert!(!rx.has_changed().unwrap());
    }
}
