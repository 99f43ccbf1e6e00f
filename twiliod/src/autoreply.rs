//! SMS auto-replies: which `auto_replies` rule answers an inbound message, if
//! any. [`decide`] is pure; [`maybe_reply`] reads the facts, applies the
//! per-sender rate limit atomically and queues the reply as an ordinary
//! outbound message (durable, retried, rate limited like any other).
//!
//! Triggers, checked in this order (first match wins, lowest id first within
//! a type): `keyword` (trigger_data `{"keywords": ["hours", "price"]}`, whole
//! words, case-insensitive), `dnd` (the DID owner's DND or the system-wide
//! `routing.dnd`), `after_hours` (outside `routing.business_hours` in
//! `system.timezone`, or on a `routing.holidays` date; trigger_data may carry
//! its own `{"hours": {...}}` in the same format).
//!
//! Never replied to, so two auto-responders cannot ping-pong:
//! - senders that are not E.164 (short codes such as `72345`, alphanumeric
//!   sender IDs): they cannot receive replies and are usually automated;
//! - opt-out/opt-in/help keywords (Twilio answers those itself) and numbers
//!   that opted out;
//! - messages that look machine-made ("auto-reply", "out of office",
//!   "do not reply" ... in their first 160 characters);
//! - our own DIDs (two of our numbers must not answer each other);
//! - a sender that already got an auto-reply from this DID within
//!   `sms.auto_reply_window` seconds (one per sender per window; two
//!   auto-responders therefore exchange at most one message each per window).

use chrono::Utc;
use serde_json::Value;
use sqlx::SqlitePool;

use crate::sms::keywords;

/// Job kind that decides the auto-reply to one inbound message.
pub const JOB: &str = "sms.autoreply";

/// What fires a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Dnd,
    AfterHours,
    Keyword(Vec<String>),
}

/// One enabled `auto_replies` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: i64,
    pub trigger: Trigger,
    pub reply_text: String,
    /// For an `after_hours` rule with its own hours: whether they say
    /// "closed" now (otherwise the system schedule decides).
    pub own_after_hours: Option<bool>,
}

/// What is known about an inbound message when deciding.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub from: &'a str,
    pub body: &'a str,
    /// The DID owner or the whole system is in do-not-disturb.
    pub dnd: bool,
    /// Outside business hours (or a holiday) now.
    pub after_hours: bool,
    /// The sender is one of our own DIDs.
    pub sender_is_ours: bool,
    /// The sender opted out (texted STOP).
    pub opted_out: bool,
    /// An auto-reply went to this sender within the window.
    pub replied_recently: bool,
}

/// Why no auto-reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Sender is a short code or alphanumeric ID.
    NotE164,
    /// STOP/START/HELP: Twilio answers those.
    Keyword,
    /// Sender opted out.
    OptedOut,
    /// Body looks like another auto-responder.
    LooksAutomated,
    /// Sender is one of our own numbers.
    OwnNumber,
    /// Already replied within the window.
    RateLimited,
    /// No rule matches.
    NoRule,
}

/// Picks the rule that answers, or says why none does.
pub fn decide<'r>(facts: &Facts<'_>, rules: &'r [Rule]) -> Result<&'r Rule, Skip> {
    if proto::types::E164::parse(facts.from).is_err() {
        return Err(Skip::NotE164);
    }
    if keywords::classify(facts.body).is_some() {
        return Err(Skip::Keyword);
    }
    if facts.opted_out {
        return Err(Skip::OptedOut);
    }
    if facts.sender_is_ours {
        return Err(Skip::OwnNumber);
    }
    if looks_automated(facts.body) {
        return Err(Skip::LooksAutomated);
    }
    let words = normalise_words(facts.body);
    let keyword = rules.iter().find(|r| match &r.trigger {
        Trigger::Keyword(kws) => kws.iter().any(|k| {
            let k = normalise_words(k);
            k.len() > 2 && words.contains(&k)
        }),
        _ => false,
    });
    let pick = keyword
        .or_else(|| {
            rules
                .iter()
                .find(|r| r.trigger == Trigger::Dnd && facts.dnd)
        })
        .or_else(|| {
            rules.iter().find(|r| {
                r.trigger == Trigger::AfterHours && r.own_after_hours.unwrap_or(facts.after_hours)
            })
        })
        .ok_or(Skip::NoRule)?;
    if facts.replied_recently {
        return Err(Skip::RateLimited);
    }
    Ok(pick)
}

/// Whether a body reads like an automatic answer.
pub fn looks_automated(body: &str) -> bool {
    const MARKERS: &[&str] = &[
        "auto-reply",
        "autoreply",
        "auto reply",
        "auto-response",
        "autoresponse",
        "auto response",
        "automatic reply",
        "automatic response",
        "automated message",
        "automated reply",
        "automated response",
        "this is an automated",
        "out of office",
        "out-of-office",
        "do not reply",
        "do-not-reply",
        "don't reply",
        "no-reply",
        "noreply",
    ];
    let head: String = body.chars().take(160).collect::<String>().to_lowercase();
    MARKERS.iter().any(|m| head.contains(m))
}

/// Lower-case words separated by single spaces, padded with spaces so a
/// `contains(" word ")` test matches whole words only.
fn normalise_words(s: &str) -> String {
    let mut out = String::from(" ");
    for w in s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        out.push_str(&w.to_lowercase());
        out.push(' ');
    }
    out
}

/// Parses one `auto_replies` row; `None` for an unknown trigger.
pub fn parse_rule(
    id: i64,
    trigger_type: &str,
    trigger_data: &str,
    reply_text: String,
) -> Option<Rule> {
    let data: Value = serde_json::from_str(trigger_data).unwrap_or(Value::Null);
    let trigger = match trigger_type {
        "dnd" => Trigger::Dnd,
        "after_hours" => Trigger::AfterHours,
        "keyword" => {
            let mut kws: Vec<String> = data
                .get("keywords")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(k) = data.get("keyword").and_then(Value::as_str) {
                kws.push(k.to_owned());
            }
            Trigger::Keyword(kws)
        }
        _ => return None,
    };
    Some(Rule {
        id,
        trigger,
        reply_text,
        own_after_hours: None,
    })
}

/// What the database says about a text from `from` to our `to`: (the
/// number's owner, or the whole system when `system_dnd`, is in
/// do-not-disturb; the sender is one of our numbers; the sender opted out).
async fn sender_facts(
    pool: &sqlx::SqlitePool,
    did_id: i64,
    from: &str,
    to: &str,
    system_dnd: bool,
) -> Result<(bool, bool, bool), sqlx::Error> {
    let owner_dnd: bool = sqlx::query_scalar(
        "SELECT COALESCE(u.dnd, 0) FROM dids d LEFT JOIN users u ON u.id = d.owner_user_id \
         WHERE d.id = ?",
    )
    .bind(did_id)
    .fetch_optional(pool)
    .await?
    .unwrap_or(false);
    let sender_is_ours: bool =
        sqlx::query_scalar("SELECT EXISTS(SELECT 1 FROM dids WHERE number = ?)")
            .bind(from)
            .fetch_one(pool)
            .await?;
    let opted_out: bool = sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM sms_opt_outs WHERE did_number = ? AND number = ?)",
    )
    .bind(to)
    .bind(from)
    .fetch_one(pool)
    .await?;
    Ok((owner_dnd || system_dnd, sender_is_ours, opted_out))
}

/// Decides and, when a rule answers, queues the reply. Returns the id of the
/// queued outbound message.
pub async fn maybe_reply(
    ctx: &crate::AppState,
    inbound_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let pool = &ctx.pool;
    let row: Option<(Option<i64>, String, String, String)> = sqlx::query_as(
        "SELECT did_id, from_number, to_number, body FROM messages \
         WHERE id = ? AND direction = 'inbound'",
    )
    .bind(inbound_id)
    .fetch_optional(pool)
    .await?;
    let Some((Some(did_id), from, to, body)) = row else {
        return Ok(None);
    };
    let rules = load_rules(pool, did_id).await?;
    if rules.is_empty() {
        return Ok(None);
    }
    let settings = ctx.settings.get();
    let now = Utc::now();
    // The same calendar as voice routing (rules.rs): one meaning of "after hours".
    let calendar = crate::rules::Calendar::from_settings(&settings);
    let (dnd, sender_is_ours, opted_out) =
        sender_facts(pool, did_id, &from, &to, settings.bool("routing.dnd")).await?;
    let facts = Facts {
        from: &from,
        body: &body,
        dnd,
        after_hours: calendar.is_after_hours(now),
        sender_is_ours,
        opted_out,
        replied_recently: false,
    };
    // after_hours rules may carry their own hours.
    let rules: Vec<Rule> = rules
        .into_iter()
        .map(|(mut rule, data)| {
            if rule.trigger == Trigger::AfterHours
                && let Some(h) = data.get("hours")
            {
                let own = crate::rules::Calendar {
                    business_hours: crate::rules::Schedule::parse(h),
                    ..calendar.clone()
                };
                rule.own_after_hours = Some(own.is_after_hours(now));
            }
            rule
        })
        .collect();
    let rule = match decide(&facts, &rules) {
        Ok(r) => r.clone(),
        Err(skip) => {
            tracing::debug!(message_id = inbound_id, ?skip, "no auto-reply");
            return Ok(None);
        }
    };
    let window = settings.u64("sms.auto_reply_window");
    let since = proto::time::fmt(now - chrono::Duration::seconds(window as i64));
    // The check and the claim are one statement so two messages arriving
    // together cannot both be answered.
    let claimed = sqlx::query(
        "INSERT INTO sms_auto_reply_log (did_id, number, auto_reply_id, created_at) \
         SELECT ?1, ?2, ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM sms_auto_reply_log \
         WHERE did_id = ?1 AND number = ?2 AND created_at > ?5)",
    )
    .bind(did_id)
    .bind(&from)
    .bind(rule.id)
    .bind(proto::time::fmt(now))
    .bind(&since)
    .execute(pool)
    .await?;
    if claimed.rows_affected() == 0 {
        tracing::debug!(message_id = inbound_id, skip = ?Skip::RateLimited, "no auto-reply");
        return Ok(None);
    }
    let log_id = claimed.last_insert_rowid();
    let id = crate::sms::outbound::create_auto_reply(ctx, did_id, &to, &from, &rule).await?;
    sqlx::query("UPDATE sms_auto_reply_log SET message_id = ? WHERE id = ?")
        .bind(id)
        .bind(log_id)
        .execute(pool)
        .await?;
    tracing::info!(
        message_id = inbound_id,
        reply_id = id,
        rule = rule.id,
        "auto-reply queued"
    );
    Ok(Some(id))
}

async fn load_rules(pool: &SqlitePool, did_id: i64) -> Result<Vec<(Rule, Value)>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, trigger_type, trigger_data, reply_text FROM auto_replies \
         WHERE enabled AND (did_id = ? OR did_id IS NULL) ORDER BY id",
    )
    .bind(did_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, t, data, text)| {
            let v: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            parse_rule(id, &t, &data, text).map(|r| (r, v))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                id: 1,
                trigger: Trigger::AfterHours,
                reply_text: "closed".into(),
                own_after_hours: None,
            },
            Rule {
                id: 2,
                trigger: Trigger::Dnd,
                reply_text: "busy".into(),
                own_after_hours: None,
            },
            Rule {
                id: 3,
                trigger: Trigger::Keyword(vec!["hours".into(), "opening times".into()]),
                reply_text: "9-5".into(),
                own_after_hours: None,
            },
        ]
    }

    fn facts<'a>(from: &'a str, body: &'a str) -> Facts<'a> {
        Facts {
            from,
            body,
            ..Facts::default()
        }
    }

    #[test]
    fn keyword_beats_dnd_and_after_hours() {
        let f = Facts {
            dnd: true,
            after_hours: true,
            ..facts("+15551230000", "What are your HOURS?")
        };
        assert_eq!(decide(&f, &rules()).map(|r| r.id), Ok(3));
        let f = facts("+15551230000", "what are your opening times");
        assert_eq!(decide(&f, &rules()).map(|r| r.id), Ok(3));
    }

    #[test]
    fn keywords_match_whole_words_only() {
        let f = facts("+15551230000", "the hourss are odd");
        assert_eq!(decide(&f, &rules()), Err(Skip::NoRule));
    }

    #[test]
    fn dnd_then_after_hours() {
        let f = Facts {
            dnd: true,
            after_hours: true,
            ..facts("+15551230000", "hi")
        };
        assert_eq!(decide(&f, &rules()).map(|r| r.id), Ok(2));
        let f = Facts {
            after_hours: true,
            ..facts("+15551230000", "hi")
        };
        assert_eq!(decide(&f, &rules()).map(|r| r.id), Ok(1));
        assert_eq!(
            decide(&facts("+15551230000", "hi"), &rules()),
            Err(Skip::NoRule)
        );
    }

    #[test]
    fn short_codes_and_alphanumeric_senders_get_no_reply() {
        let f = Facts {
            dnd: true,
            ..facts("72345", "hours")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::NotE164));
        let f = Facts {
            dnd: true,
            ..facts("ACMEBANK", "hours")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::NotE164));
    }

    #[test]
    fn other_auto_responders_and_our_own_numbers_get_no_reply() {
        let f = Facts {
            dnd: true,
            ..facts("+15551230000", "Auto-reply: I am driving")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::LooksAutomated));
        let f = Facts {
            dnd: true,
            sender_is_ours: true,
            ..facts("+15551230000", "hello")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::OwnNumber));
    }

    #[test]
    fn opt_out_words_and_opted_out_senders_get_no_reply() {
        let f = Facts {
            dnd: true,
            ..facts("+15551230000", "STOP")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::Keyword));
        let f = Facts {
            dnd: true,
            opted_out: true,
            ..facts("+15551230000", "hello")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::OptedOut));
    }

    #[test]
    fn one_reply_per_window() {
        let f = Facts {
            dnd: true,
            replied_recently: true,
            ..facts("+15551230000", "hello")
        };
        assert_eq!(decide(&f, &rules()), Err(Skip::RateLimited));
    }

    #[test]
    fn rows_parse_into_rules() {
        let r = parse_rule(7, "keyword", r#"{"keywords":["price"]}"#, "x".into()).unwrap();
        assert_eq!(r.trigger, Trigger::Keyword(vec!["price".into()]));
        assert!(parse_rule(1, "weird", "{}", "x".into()).is_none());
    }
}
