//! The end of an inbound call, for notifyd. sipd reports the calls it
//! bridges and someone answered (`call_started`, `call_ended`); a call that
//! rang and was not answered goes on to voicemail, so only here, once
//! Twilio says the whole call is over, is its outcome known: one voicemail
//! notice when a message was left (sent by `voicemail.rs`), else one
//! `missed_call` to the CDR's user (the rung device's owner, else the DID's
//! owner, else the admins). Either way one `call_ended` carries the final
//! disposition (also for calls that were blocked, rejected or forwarded).
//!
//! The decision waits [`SETTLE`] after the final status callback: Twilio
//! sends the `<Record>` action (which turns the CDR into a voicemail) and
//! the status callback at about the same time when the caller hangs up
//! after the message, and they may arrive in either order.

use std::time::Duration;

use serde_json::json;

use crate::AppState;
use crate::notify::{self, Notice};
use crate::queue::{Enqueue, Job, JobError};

/// Job kind of the delayed decision.
pub const KIND: &str = "call.end";
/// How long after the final status callback the outcome is read.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Schedules the decision for a call Twilio reported over (idempotent on
/// the CallSid: Twilio repeats callbacks).
pub async fn schedule(st: &AppState, call_sid: &str) {
    if call_sid.is_empty() {
        return;
    }
    let opts = Enqueue::key(format!("{KIND}:{call_sid}")).delay(SETTLE);
    if let Err(e) = st
        .queue
        .enqueue(KIND, &json!({"call_sid": call_sid}), opts)
        .await
    {
        tracing::error!(call_sid, error = %e, "cannot schedule the call's end notices");
    }
}

/// Registers the job handler.
pub fn register(st: &AppState) {
    let s = st.clone();
    st.queue.register(KIND, move |job: Job| {
        let s = s.clone();
        async move {
            let sid = job.payload["call_sid"].as_str().unwrap_or_default();
            settle(&s, sid).await
        }
    });
}

type Row = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn settle(st: &AppState, call_sid: &str) -> Result<(), JobError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT c.direction, c.disposition, c.from_number, c.to_number, c.user_id, c.device_id, \
                c.started_at, c.ended_at, c.duration, c.reason, c.rule_name, c.sip_call_id, \
                c.answered_at, d.name \
         FROM cdrs c LEFT JOIN dids d ON d.id = c.did_id OR (c.did_id IS NULL AND d.number = c.to_number) \
         WHERE c.call_sid = ? LIMIT 1",
    )
    .bind(call_sid)
    .fetch_optional(&st.pool)
    .await?;
    let Some((
        direction,
        disposition,
        from,
        to,
        user_id,
        device_id,
        started_at,
        ended_at,
        duration,
        reason,
        rule,
        sip_call_id,
        answered_at,
        did_name,
    )) = row
    else {
        return Ok(());
    };
    // sipd reports what it answered itself.
    if direction != "inbound" || (sip_call_id.is_some() && answered_at.is_some()) {
        return Ok(());
    }
    let payload = json!({
        "call_sid": call_sid,
        "call_id": sip_call_id,
        "direction": direction,
        "from": from,
        "to": to,
        "did_name": did_name,
        "device_id": device_id,
        "started_at": started_at,
        "answered_at": answered_at,
        "ended_at": ended_at,
        "duration": duration.max(0),
        "disposition": disposition,
        "reason": reason,
        "rule": rule,
    });
    let user_id = user_id.unwrap_or(0);
    let mut notices = vec![("call_ended", payload.clone())];
    if matches!(disposition.as_str(), "missed" | "busy") {
        notices.push(("missed_call", payload));
    }
    for (kind, payload) in notices {
        let notice = Notice {
            kind: kind.into(),
            user_id,
            payload,
            attachments: vec![],
        };
        notify::enqueue(&st.queue, notice, Some(format!("notify:{kind}:{call_sid}"))).await?;
    }
    tracing::info!(call_sid, disposition, user_id, "call end notices queued");
    Ok(())
}
