//! twiliod's part of the call records (the `RecordCall` gRPC call).
//!
//! sipd owns `cdrs`: it writes the calls it bridges (`store::write_cdr`),
//! and twiliod, which sees inbound Twilio calls that never reach sipd
//! (blocked, rejected, sent to voicemail or a menu) and Twilio's final
//! status of every call, tells sipd what to record here instead of writing
//! the table itself. The caller-facing facts of a call (numbers, number,
//! owner, rule, spam score, STIR) come from twiliod's `voice_calls` row for
//! the CallSid; the request carries only what changed.
//!
//! Every change is idempotent and carries its own time, since Twilio
//! retries webhooks and twiliod's queue retries this call while sipd is
//! away. A row sipd wrote for a call it bridged (`sip_call_id` set) keeps
//! sipd's own ending; twiliod only adds why the call came.

use proto::pb::sipd::record_call_request::Change;
use proto::pb::sipd::{CallDisposition, RecordCallRequest};
use proto::types::Disposition;
use sqlx::SqlitePool;

use super::store::fmt_ms;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Applies one change; returns the row's id (0 when there is none).
pub async fn apply(pool: &SqlitePool, r: &RecordCallRequest) -> Result<i64, RecordError> {
    if r.call_sid.is_empty() {
        return Err(RecordError::Invalid("call_sid is required"));
    }
    let sid = r.call_sid.as_str();
    let at = fmt_ms(u64::try_from(r.at_unix_ms).unwrap_or(0));
    match r.change.as_ref() {
        None => return Err(RecordError::Invalid("change is required")),
        Some(Change::Decided(d)) => {
            let disposition = disposition(d.disposition)?;
            let open = Open {
                from: &d.from_number,
                to: &d.to_number,
                disposition,
                ended: d.ended,
            };
            open.insert(pool, sid, &at).await?;
        }
        Some(Change::MenuExit(m)) => {
            let disposition = disposition(m.disposition)?;
            sqlx::query(
                "UPDATE cdrs SET rule_name = ?, reason = ?, \
                        disposition = CASE WHEN sip_call_id IS NULL THEN ? ELSE disposition END \
                 WHERE call_sid = ?",
            )
            .bind(&m.rule_name)
            .bind(&m.reason)
            .bind(disposition.as_str())
            .bind(sid)
            .execute(pool)
            .await?;
        }
        Some(Change::ForwardAnswered(f)) => {
            sqlx::query(
                "UPDATE cdrs SET disposition = 'answered', duration = ?, ended_at = ?, \
                        answered_at = coalesce(answered_at, started_at) \
                 WHERE call_sid = ? AND sip_call_id IS NULL",
            )
            .bind(f.duration_secs)
            .bind(&at)
            .bind(sid)
            .execute(pool)
            .await?;
        }
        Some(Change::Missed(m)) => {
            let open = Open {
                from: &m.from_number,
                to: &m.to_number,
                disposition: Disposition::Missed,
                ended: false,
            };
            open.insert(pool, sid, &at).await?;
            sqlx::query(
                "UPDATE cdrs SET disposition = 'missed' \
                 WHERE call_sid = ? AND disposition = 'in_progress' AND sip_call_id IS NULL",
            )
            .bind(sid)
            .execute(pool)
            .await?;
        }
        Some(Change::Voicemail(v)) => {
            let open = Open {
                from: &v.from_number,
                to: &v.to_number,
                disposition: Disposition::Voicemail,
                ended: false,
            };
            open.insert(pool, sid, &at).await?;
            // A ring nobody answered (sipd's row says missed) ended in a
            // message: that is what the caller did.
            sqlx::query(
                "UPDATE cdrs SET disposition = 'voicemail', ended_at = coalesce(ended_at, ?) \
                 WHERE call_sid = ? AND disposition IN ('in_progress', 'missed')",
            )
            .bind(&at)
            .bind(sid)
            .execute(pool)
            .await?;
        }
        Some(Change::Ended(e)) => ended(pool, sid, &at, disposition(e.disposition)?, e).await?,
    }
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM cdrs WHERE call_sid = ?")
        .bind(sid)
        .fetch_optional(pool)
        .await?;
    Ok(id.unwrap_or(0))
}

fn disposition(wire: i32) -> Result<Disposition, RecordError> {
    CallDisposition::try_from(wire)
        .ok()
        .and_then(|d| Disposition::try_from(d).ok())
        .ok_or(RecordError::Invalid("disposition is required"))
}

/// A row for a call twiliod handles, if none exists yet.
struct Open<'a> {
    /// Used only when `voice_calls` has no row for the call.
    from: &'a str,
    to: &'a str,
    disposition: Disposition,
    /// Over as it starts (blocked, rejected).
    ended: bool,
}

impl Open<'_> {
    async fn insert(&self, pool: &SqlitePool, sid: &str, at: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO cdrs (call_sid, direction, from_number, to_number, did_id, user_id, started_at, \
                               ended_at, duration, disposition, spam_score, stir_verstat, rule_name, reason) \
             SELECT ?1, 'inbound', coalesce(v.from_number, ?2), coalesce(v.to_number, ?3), v.did_id, v.user_id, \
                    coalesce(v.created_at, ?4), ?5, 0, ?6, v.spam_score, v.stir_verstat, v.rule_name, v.reason \
             FROM (SELECT 1) LEFT JOIN voice_calls v ON v.call_sid = ?1 \
             ON CONFLICT(call_sid) DO NOTHING",
        )
        .bind(sid)
        .bind(self.from)
        .bind(self.to)
        .bind(at)
        .bind(self.ended.then_some(at))
        .bind(self.disposition.as_str())
        .execute(pool)
        .await?;
        Ok(())
    }
}

/// Twilio's final status. A blocked, rejected or voicemail disposition is
/// final and kept; only rows twiliod opened take Twilio's ending.
async fn ended(
    pool: &SqlitePool,
    sid: &str,
    at: &str,
    disposition: Disposition,
    e: &proto::pb::sipd::CallEnded,
) -> Result<(), sqlx::Error> {
    let answered = disposition == Disposition::Answered;
    sqlx::query(
        "UPDATE cdrs SET ended_at = coalesce(ended_at, ?), duration = max(duration, ?), \
                disposition = CASE WHEN disposition = 'in_progress' THEN ? ELSE disposition END, \
                answered_at = CASE WHEN ? THEN coalesce(answered_at, started_at) ELSE answered_at END \
         WHERE call_sid = ? AND sip_call_id IS NULL",
    )
    .bind(at)
    .bind(e.duration_secs)
    .bind(disposition.as_str())
    .bind(answered)
    .bind(sid)
    .execute(pool)
    .await?;
    // A row sipd wrote learns why the call came (rule, spam, STIR).
    sqlx::query(
        "UPDATE cdrs SET rule_name = coalesce(cdrs.rule_name, v.rule_name), reason = coalesce(cdrs.reason, v.reason), \
                spam_score = coalesce(cdrs.spam_score, v.spam_score), stir_verstat = coalesce(cdrs.stir_verstat, v.stir_verstat) \
         FROM voice_calls v WHERE v.call_sid = cdrs.call_sid AND cdrs.call_sid = ?",
    )
    .bind(sid)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::pb::sipd::{CallDecided, CallEnded, CallMissed, CallVoicemail};

    async fn pool() -> (tempfile::TempDir, SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let pool = proto::db::open(dir.path()).await.unwrap();
        (dir, pool)
    }

    fn req(change: Change) -> RecordCallRequest {
        RecordCallRequest {
            call_sid: "CA0123456789abcdef0123456789abcdef".into(),
            at_unix_ms: 1_700_000_000_000,
            change: Some(change),
        }
    }

    async fn row(pool: &SqlitePool) -> (String, Option<String>, i64) {
        sqlx::query_as("SELECT disposition, ended_at, duration FROM cdrs")
            .fetch_one(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_blocked_call_is_one_ended_row_however_often_it_is_told() {
        let (_d, pool) = pool().await;
        let decided = req(Change::Decided(CallDecided {
            disposition: CallDisposition::Blocked.into(),
            ended: true,
            from_number: "+15550001111".into(),
            to_number: "+15550002222".into(),
        }));
        let id = apply(&pool, &decided).await.unwrap();
        assert!(id > 0);
        assert_eq!(apply(&pool, &decided).await.unwrap(), id);
        let (disp, ended, _) = row(&pool).await;
        assert_eq!(disp, "blocked");
        assert!(ended.is_some());
        // Twilio's "completed" does not turn a block into a missed call.
        let end = req(Change::Ended(CallEnded {
            disposition: CallDisposition::Missed.into(),
            duration_secs: 0,
        }));
        apply(&pool, &end).await.unwrap();
        assert_eq!(row(&pool).await.0, "blocked");
    }

    #[tokio::test]
    async fn a_missed_ring_that_left_a_message_is_a_voicemail() {
        let (_d, pool) = pool().await;
        let numbers = ("+15550001111".to_string(), "+15550002222".to_string());
        let missed = req(Change::Missed(CallMissed {
            from_number: numbers.0.clone(),
            to_number: numbers.1.clone(),
        }));
        let id = apply(&pool, &missed).await.unwrap();
        assert_eq!(row(&pool).await.0, "missed");
        let vm = req(Change::Voicemail(CallVoicemail {
            from_number: numbers.0,
            to_number: numbers.1,
        }));
        assert_eq!(apply(&pool, &vm).await.unwrap(), id);
        assert_eq!(apply(&pool, &vm).await.unwrap(), id);
        let (disp, ended, _) = row(&pool).await;
        assert_eq!(disp, "voicemail");
        assert!(ended.is_some());
    }

    #[tokio::test]
    async fn a_change_without_what_it_needs_is_refused() {
        let (_d, pool) = pool().await;
        let mut r = req(Change::Ended(CallEnded {
            disposition: CallDisposition::Unspecified.into(),
            duration_secs: 3,
        }));
        assert!(matches!(
            apply(&pool, &r).await,
            Err(RecordError::Invalid(_))
        ));
        r.change = None;
        assert!(matches!(
            apply(&pool, &r).await,
            Err(RecordError::Invalid(_))
        ));
        r.call_sid.clear();
        assert!(matches!(
            apply(&pool, &r).await,
            Err(RecordError::Invalid(_))
        ));
    }
}
