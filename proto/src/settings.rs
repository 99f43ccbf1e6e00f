//! Runtime settings: the `config` table read into one snapshot, the registry
//! of known keys (default, secret or not, a one-line help), and a watcher that
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

/// One known setting.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    /// Never returned by the API; shown masked.
    pub secret: bool,
    pub help: &'static str,
}

const fn k(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        secret: false,
        help,
    }
}

const fn secret(name: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default: "",
        secret: true,
        help,
    }
}

/// Every runtime setting. An empty default means "not set".
pub const KEYS: &[Key] = &[
    // General
    k(
        "system.public_url",
        "",
        "Public https URL Twilio reaches (webhooks are signed for it)",
    ),
    k(
        "system.timezone",
        "UTC",
        "IANA time zone for schedules, e.g. America/New_York",
    ),
    k(
        "system.default_country",
        "1",
        "Country code for national numbers (digits)",
    ),
    k(
        "system.trusted_proxy",
        "",
        "IP of the reverse proxy whose X-Forwarded-For is trusted",
    ),
    // SIP
    k("sip.realm", "", "Digest realm; empty = the host name"),
    k(
        "sip.public_address",
        "",
        "Public IP/host used towards Twilio in SDP and Via/Contact",
    ),
    k(
        "sip.local_address",
        "",
        "LAN IP used towards phones; empty = the address the phone reached",
    ),
    k(
        "sip.min_expires",
        "60",
        "Shortest registration accepted (seconds)",
    ),
    k(
        "sip.max_expires",
        "3600",
        "Longest registration granted (seconds)",
    ),
    k(
        "sip.default_expires",
        "600",
        "Expiry when the phone asks for none (seconds)",
    ),
    k(
        "sip.keepalive_interval",
        "30",
        "OPTIONS keep-alive to registered contacts (seconds, 0 = off)",
    ),
    k(
        "sip.keepalive_failures",
        "3",
        "Missed keep-alives before a device is shown offline",
    ),
    k(
        "sip.ban_threshold",
        "10",
        "Failed SIP authentications from one address before a ban",
    ),
    k(
        "sip.ban_window",
        "60",
        "Window for counting failed authentications (seconds)",
    ),
    k(
        "sip.ban_duration",
        "900",
        "How long a banned address is ignored (seconds)",
    ),
    k("sip.nonce_ttl", "300", "Digest nonce lifetime (seconds)"),
    k(
        "sip.digest_sha256",
        "true",
        "Offer SHA-256 digest (RFC 8760) beside MD5",
    ),
    k(
        "sip.trunk_source_ips",
        "",
        "Comma-separated addresses allowed to send trunk INVITEs; empty = any",
    ),
    // Calls
    k(
        "calls.ring_timeout",
        "30",
        "Seconds to ring before voicemail / no answer",
    ),
    k(
        "calls.rtp_timeout",
        "60",
        "Seconds without RTP before an established call is ended",
    ),
    k(
        "calls.allow_international",
        "false",
        "Allow outbound calls outside the default country",
    ),
    k(
        "calls.allow_premium",
        "false",
        "Allow premium-rate prefixes (900, 976 ...)",
    ),
    k(
        "calls.record_dtmf",
        "*1",
        "DTMF code that toggles recording during a call",
    ),
    k(
        "recording.retention_days",
        "90",
        "Delete recordings older than this (days, 0 = keep)",
    ),
    // Twilio
    k("twilio.account_sid", "", "Twilio Account SID (AC...)"),
    secret("twilio.auth_token", "Twilio Auth Token"),
    k(
        "twilio.api_base",
        "https://api.twilio.com",
        "Twilio REST base URL",
    ),
    k(
        "twilio.termination_uri",
        "",
        "Elastic SIP Trunk termination URI, e.g. example.pstn.twilio.com",
    ),
    k(
        "twilio.trunk_username",
        "",
        "Credentials Twilio and sipd use on the trunk",
    ),
    secret("twilio.trunk_password", "Trunk credential password"),
    k(
        "twilio.delete_after_download",
        "true",
        "Delete Twilio's copy of voicemail after download",
    ),
    k(
        "twilio.alert_after_failures",
        "3",
        "Consecutive Twilio failures before the admin is alerted",
    ),
    // Routing and blocking
    k("routing.dnd", "false", "System-wide do-not-disturb"),
    k(
        "routing.spam_threshold",
        "0.7",
        "Calls with spam score above this are blocked",
    ),
    k(
        "routing.spam_addons",
        "nomorobo_spamscore=nomorobo,marchex_cleancall=marchex,ekata_phone_valid=ekata,icehook_scout=icehook",
        "Twilio add-on unique names and their vendors (name=vendor,...)",
    ),
    k(
        "routing.reject_anonymous",
        "false",
        "Block callers without caller ID",
    ),
    k(
        "routing.block_action",
        "reject",
        "reject | disconnected_tone | silent_voicemail",
    ),
    k(
        "routing.business_hours",
        "{\"mon\":[\"09:00\",\"17:00\"],\"tue\":[\"09:00\",\"17:00\"],\"wed\":[\"09:00\",\"17:00\"],\"thu\":[\"09:00\",\"17:00\"],\"fri\":[\"09:00\",\"17:00\"]}",
        "Weekly business hours (JSON)",
    ),
    k(
        "routing.holidays",
        "[]",
        "Holiday dates (JSON array of YYYY-MM-DD)",
    ),
    // Voicemail
    k("voicemail.max_length", "180", "Longest voicemail (seconds)"),
    k(
        "voicemail.min_length",
        "3",
        "Shorter voicemails are discarded (seconds)",
    ),
    k(
        "voicemail.silence_timeout",
        "10",
        "Silence that ends a voicemail (seconds)",
    ),
    k(
        "voicemail.greeting",
        "Please leave a message after the tone.",
        "Default text-to-speech greeting",
    ),
    // SMS
    k(
        "sms.auto_reply_window",
        "3600",
        "One auto-reply per sender per this many seconds",
    ),
    k(
        "sms.status_poll_after",
        "900",
        "Ask Twilio for a sent message's status if no final callback came within (seconds)",
    ),
    k(
        "sms.request_timeout_ms",
        "20000",
        "Timeout of one Twilio Messages request (ms); a timed-out send is retried without duplicating",
    ),
    k(
        "sms.media_url_ttl",
        "3600",
        "Lifetime of the URLs Twilio fetches outgoing MMS media from (seconds)",
    ),
    // Email and push
    k("email.transport", "smtp", "smtp | postmark"),
    k("email.from", "", "From address of notification email"),
    k("smtp.host", "", "SMTP server"),
    k("smtp.port", "587", "SMTP port"),
    k("smtp.security", "starttls", "starttls | tls | plain"),
    k(
        "smtp.tls_verify",
        "true",
        "Check the SMTP server's certificate (false accepts a self-signed one)",
    ),
    k("smtp.username", "", "SMTP user"),
    secret("smtp.password", "SMTP password"),
    secret("postmark.token", "Postmark server token"),
    k(
        "postmark.api_base",
        "https://api.postmarkapp.com",
        "Postmark API base URL",
    ),
    k("gotify.url", "", "Gotify server URL"),
    secret("gotify.token", "Gotify application token"),
    k(
        "notify.email_retry_delays",
        "0,1200,2400",
        "Seconds before each email attempt (3 tries over an hour)",
    ),
    k(
        "notify.gotify_retry_delays",
        "0,30,60",
        "Seconds before each Gotify attempt",
    ),
    k(
        "notify.webhook_retry_delays",
        "0,10,60,300,1800",
        "Seconds before each webhook attempt",
    ),
    // Backups
    k(
        "backup.interval_hours",
        "24",
        "Automatic backup interval (hours, 0 = off)",
    ),
    k("backup.keep", "7", "Automatic backups to keep"),
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
