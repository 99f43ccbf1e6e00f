//! Per-user notification preferences (`users.notify_prefs`) and the pure
//! fan-out that turns one event and its recipients into delivery targets.
//!
//! Shape of `notify_prefs` (every part optional):
//!
//! ```json
//! {
//!   "email":  {"voicemail": true, "sms": true, "missed_call": false,
//!              "call_started": false, "call_ended": false, "admin_alert": true,
//!              "address": "other@example.org"},
//!   "gotify": {"voicemail": true, "sms": true, "missed_call": true,
//!              "admin_alert": true, "url": "https://push.example.org",
//!              "token": "A..."}
//! }
//! ```
//!
//! A channel may also be just `true` (the defaults) or `false` (nothing).
//! The older flat form (webd's first settings page) is read too: top-level kind
//! switches (`"voicemail": false`) apply to every channel, and `"sms_email"`
//! is email for SMS. Precedence: channel off > the channel's own switch >
//! `sms_email` > top-level switch > default.
//! Defaults: email for voicemail, sms and admin_alert; Gotify for voicemail,
//! sms, missed_call and admin_alert when a Gotify server is configured (the
//! system's `gotify.url`/`gotify.token` or the user's own `url`/`token`).
//! `address` sends email somewhere other than the login address.

use proto::types::UserId;
use std::collections::HashMap;

use serde_json::Value;

use crate::event::Kind;

/// A user an event goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub user_id: UserId,
    pub email: String,
    pub prefs: Prefs,
}

/// One user's parsed preferences.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prefs {
    pub email: ChannelPrefs,
    pub gotify: ChannelPrefs,
}

/// One channel's switches and overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChannelPrefs {
    /// Kinds set explicitly; others fall back to the defaults.
    pub kinds: HashMap<Kind, bool>,
    /// `false` = the channel is off for every kind.
    pub disabled: bool,
    pub address: Option<String>,
    pub url: Option<String>,
    pub token: Option<String>,
}

/// Where one delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Email {
        to: String,
    },
    /// Gotify with the system server (`user_id` none) or a user's own.
    Gotify {
        user_id: Option<UserId>,
    },
}

impl Prefs {
    /// Parses `users.notify_prefs`; anything unreadable counts as unset.
    pub fn parse(json: &str) -> Prefs {
        let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
        let mut p = Prefs {
            email: ChannelPrefs::parse(v.get("email")),
            gotify: ChannelPrefs::parse(v.get("gotify")),
        };
        if let Some(b) = v.get("sms_email").and_then(Value::as_bool) {
            p.email.kinds.entry(Kind::Sms).or_insert(b);
        }
        for k in Kind::ALL {
            if let Some(b) = v.get(k.as_str()).and_then(Value::as_bool) {
                p.email.kinds.entry(k).or_insert(b);
                p.gotify.kinds.entry(k).or_insert(b);
            }
        }
        p
    }
}

impl ChannelPrefs {
    fn parse(v: Option<&Value>) -> ChannelPrefs {
        let mut p = ChannelPrefs::default();
        match v {
            Some(Value::Bool(false)) => p.disabled = true,
            Some(Value::Object(m)) => {
                for k in Kind::ALL {
                    if let Some(b) = m.get(k.as_str()).and_then(Value::as_bool) {
                        p.kinds.insert(k, b);
                    }
                }
                let s = |key: &str| {
                    m.get(key)
                        .and_then(Value::as_str)
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                p.address = s("address");
                p.url = s("url");
                p.token = s("token");
                p.disabled = m.get("enabled").and_then(Value::as_bool) == Some(false);
            }
            _ => {}
        }
        p
    }

    fn wants(&self, kind: Kind, default: fn(Kind) -> bool) -> bool {
        !self.disabled
            && self
                .kinds
                .get(&kind)
                .copied()
                .unwrap_or_else(|| default(kind))
    }
}

/// Kinds a user gets by email unless they say otherwise.
pub fn email_default(kind: Kind) -> bool {
    matches!(kind, Kind::Voicemail | Kind::Sms | Kind::AdminAlert)
}

/// Kinds a user gets by push unless they say otherwise.
pub fn gotify_default(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Voicemail | Kind::Sms | Kind::MissedCall | Kind::AdminAlert
    )
}

/// Whether the sender lets this event go out by email at all: an `sms`
/// whose payload says `"email_forward": false` (the DID's "forward SMS to
/// email" is off) still reaches Gotify and webhooks, never email. Any other
/// value, or no such field, leaves it to the recipients' preferences.
pub fn sender_allows_email(kind: Kind, data: &serde_json::Value) -> bool {
    !(kind == Kind::Sms && data.get("email_forward") == Some(&serde_json::Value::Bool(false)))
}

/// The delivery targets of one event: one per channel per distinct
/// destination, so two admins sharing the system Gotify get one push.
pub fn targets(kind: Kind, recipients: &[Recipient], system_gotify: bool) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for r in recipients {
        if r.prefs.email.wants(kind, email_default) {
            let to = r.prefs.email.address.as_deref().unwrap_or(&r.email);
            if to.contains('@') {
                push(Target::Email {
                    to: to.to_ascii_lowercase(),
                });
            }
        }
        let g = &r.prefs.gotify;
        let own = g.url.is_some() && g.token.is_some();
        if g.wants(kind, gotify_default) && (own || system_gotify) {
            push(Target::Gotify {
                user_id: own.then_some(r.user_id),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, email: &str, prefs: &str) -> Recipient {
        Recipient {
            user_id: UserId(id),
            email: email.into(),
            prefs: Prefs::parse(prefs),
        }
    }

    #[test]
    fn an_sms_from_a_did_without_email_forwarding_is_not_emailed() {
        use serde_json::json;
        assert!(!sender_allows_email(
            Kind::Sms,
            &json!({"email_forward": false})
        ));
        assert!(sender_allows_email(
            Kind::Sms,
            &json!({"email_forward": true})
        ));
        assert!(sender_allows_email(Kind::Sms, &json!({"body": "hi"})));
        assert!(sender_allows_email(
            Kind::Voicemail,
            &json!({"email_forward": false})
        ));
    }

    #[test]
    fn empty_prefs_email_voicemail_sms_and_alerts_only() {
        let u = [user(1, "a@x.org", "{}")];
        for k in [Kind::Voicemail, Kind::Sms, Kind::AdminAlert] {
            assert_eq!(
                targets(k, &u, false),
                vec![Target::Email {
                    to: "a@x.org".into()
                }]
            );
        }
        for k in [Kind::MissedCall, Kind::CallStarted, Kind::CallEnded] {
            assert!(targets(k, &u, false).is_empty(), "{k}");
        }
    }

    #[test]
    fn system_gotify_is_used_by_default_and_deduplicated() {
        let u = [user(1, "a@x.org", "{}"), user(2, "b@x.org", "")];
        assert_eq!(
            targets(Kind::MissedCall, &u, true),
            vec![Target::Gotify { user_id: None }]
        );
        assert_eq!(targets(Kind::Voicemail, &u, true).len(), 3);
    }

    #[test]
    fn explicit_switches_override_defaults() {
        let u = [user(
            1,
            "a@x.org",
            r#"{"email":{"voicemail":false,"missed_call":true},"gotify":false}"#,
        )];
        assert!(targets(Kind::Voicemail, &u, true).is_empty());
        assert_eq!(
            targets(Kind::MissedCall, &u, true),
            vec![Target::Email {
                to: "a@x.org".into()
            }]
        );
    }

    #[test]
    fn a_users_own_gotify_and_address_are_used() {
        let u = [user(
            7,
            "a@x.org",
            r#"{"email":{"address":"Pager@X.org"},"gotify":{"url":"http://g","token":"t"}}"#,
        )];
        assert_eq!(
            targets(Kind::Sms, &u, false),
            vec![
                Target::Email {
                    to: "pager@x.org".into()
                },
                Target::Gotify {
                    user_id: Some(UserId(7))
                }
            ]
        );
    }

    #[test]
    fn email_false_turns_the_channel_off_and_garbage_counts_as_unset() {
        assert!(
            targets(
                Kind::Sms,
                &[user(1, "a@x.org", r#"{"email":false}"#)],
                false
            )
            .is_empty()
        );
        assert_eq!(
            targets(Kind::Sms, &[user(1, "a@x.org", "not json")], false).len(),
            1
        );
    }

    #[test]
    fn the_flat_form_webd_writes_is_understood() {
        let u = [user(
            1,
            "a@x.org",
            r#"{"email":true,"gotify":true,"voicemail":false,"missed_call":true,"sms_email":false}"#,
        )];
        assert!(targets(Kind::Voicemail, &u, true).is_empty());
        assert_eq!(
            targets(Kind::Sms, &u, true),
            vec![Target::Gotify { user_id: None }]
        );
        assert_eq!(targets(Kind::MissedCall, &u, true).len(), 2);
        let off = [user(1, "a@x.org", r#"{"email":false,"missed_call":true}"#)];
        assert!(targets(Kind::MissedCall, &off, false).is_empty());
        let own = [user(
            1,
            "a@x.org",
            r#"{"email":{"sms":true},"sms_email":false}"#,
        )];
        assert_eq!(targets(Kind::Sms, &own, false).len(), 1);
    }

    #[test]
    fn the_explicit_form_webd_stores_is_applied_as_written() {
        // What webd/src/api/notify_prefs.rs writes: both channels, every switch.
        let stored = r#"{
          "email": {"enabled": true, "address": "Pager@Example.org", "voicemail": true, "sms": false,
                    "missed_call": true, "call_started": false, "call_ended": false, "admin_alert": true},
          "gotify": {"enabled": false, "url": "http://g", "token": "t", "voicemail": true, "sms": true,
                     "missed_call": true, "call_started": true, "call_ended": true, "admin_alert": true}}"#;
        let u = [user(3, "a@x.org", stored)];
        let pager = Target::Email {
            to: "pager@example.org".into(),
        };
        assert_eq!(targets(Kind::MissedCall, &u, true), vec![pager.clone()]);
        assert!(targets(Kind::Sms, &u, true).is_empty());
        assert!(targets(Kind::CallEnded, &u, true).is_empty());
        let on = [user(
            3,
            "a@x.org",
            &stored.replace("\"enabled\": false", "\"enabled\": true"),
        )];
        assert_eq!(
            targets(Kind::CallEnded, &on, true),
            vec![Target::Gotify {
                user_id: Some(UserId(3))
            }]
        );
        assert_eq!(
            targets(Kind::Voicemail, &on, false),
            vec![
                pager,
                Target::Gotify {
                    user_id: Some(UserId(3))
                }
            ]
        );
    }

    #[test]
    fn same_address_twice_is_mailed_once() {
        let u = [user(1, "a@x.org", "{}"), user(2, "A@x.org", "{}")];
        assert_eq!(targets(Kind::AdminAlert, &u, false).len(), 1);
    }
}
