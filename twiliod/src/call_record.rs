//! twiliod's part of the call records, told to sipd, which owns `cdrs`
//! (sipd's `RecordCall`; the contract is its request type in `proto`).
//!
//! A change goes to sipd at once. When sipd does not answer it goes to the
//! durable queue and is retried until sipd takes it, so an inbound call
//! blocked while sipd restarts is still in the call history. Changes of one
//! call reach sipd in the order twiliod made them: while one waits in the
//! queue, the later ones queue behind it. A voicemail stored while its
//! record waited is linked to the record when the record is written.

use prost::Message;
use proto::grpc::AuthChannel;
use proto::pb::sipd::record_call_request::Change;
use proto::pb::sipd::sipd_client::SipdClient;
use proto::pb::sipd::{
    CallDecided, CallEnded, CallForwardAnswered, CallMenuExit, CallMissed, CallVoicemail,
    RecordCallRequest,
};
use proto::types::Disposition;
use sqlx::SqlitePool;

use crate::AppState;
use crate::queue::{Enqueue, Job, JobError};

/// The queue's job kind.
pub const KIND: &str = "call_record";

/// The way to sipd.
#[derive(Clone)]
pub struct CallRecords {
    sipd: AuthChannel,
}

impl CallRecords {
    pub fn new(sipd: AuthChannel) -> Self {
        Self { sipd }
    }

    async fn send(&self, r: &RecordCallRequest) -> Result<i64, JobError> {
        let mut c = SipdClient::new(self.sipd.clone());
        match c.record_call(r.clone()).await {
            Ok(reply) => Ok(reply.into_inner().cdr_id),
            Err(e) if e.code() == tonic::Code::InvalidArgument => {
                Err(JobError::Permanent(e.message().to_owned()))
            }
            Err(e) => Err(JobError::retry(format!("sipd: {}", e.message()))),
        }
    }
}

/// A call twiliod handles itself (not ringing phones): its record, over at
/// once when blocked or rejected.
pub fn decided(d: Disposition, ended: bool, from: &str, to: &str) -> Change {
    Change::Decided(CallDecided {
        disposition: proto::pb::sipd::CallDisposition::from(d).into(),
        ended,
        from_number: from.to_owned(),
        to_number: to.to_owned(),
    })
}

/// The caller left a menu by a key.
pub fn menu_exit(rule: &str, reason: &str, d: Disposition) -> Change {
    Change::MenuExit(CallMenuExit {
        rule_name: rule.to_owned(),
        reason: reason.to_owned(),
        disposition: proto::pb::sipd::CallDisposition::from(d).into(),
    })
}

pub fn forward_answered(duration_secs: i64) -> Change {
    Change::ForwardAnswered(CallForwardAnswered { duration_secs })
}

pub fn missed(from: &str, to: &str) -> Change {
    Change::Missed(CallMissed {
        from_number: from.to_owned(),
        to_number: to.to_owned(),
    })
}

pub fn voicemail(from: &str, to: &str) -> Change {
    Change::Voicemail(CallVoicemail {
        from_number: from.to_owned(),
        to_number: to.to_owned(),
    })
}

pub fn ended(d: Disposition, duration_secs: i64) -> Change {
    Change::Ended(CallEnded {
        disposition: proto::pb::sipd::CallDisposition::from(d).into(),
        duration_secs,
    })
}

/// Tells sipd `change` of call `call_sid`. Returns the record's id when
/// sipd wrote it now; `None` when it waits in the queue (or there is no
/// call).
pub async fn record(st: &AppState, call_sid: &str, change: Change) -> Option<i64> {
    if call_sid.is_empty() {
        return None;
    }
    let r = RecordCallRequest {
        call_sid: call_sid.to_owned(),
        at_unix_ms: chrono::Utc::now().timestamp_millis(),
        change: Some(change),
    };
    match waiting(&st.pool, call_sid, None).await {
        Ok(false) => match st.call_records.send(&r).await {
            Ok(id) => return Some(id),
            Err(JobError::Permanent(e)) => {
                tracing::error!(call_sid, error = %e, "sipd refused the call record");
                return None;
            }
            Err(e) => tracing::warn!(call_sid, error = %e, "call record queued for later"),
        },
        Ok(true) => {}
        Err(e) => tracing::warn!(call_sid, error = %e, "cannot read the queue"),
    }
    let payload = serde_json::json!({
        "call_sid": call_sid,
        "request": hex::encode(r.encode_to_vec()),
    });
    if let Err(e) = st.queue.enqueue(KIND, &payload, Enqueue::default()).await {
        tracing::error!(call_sid, error = %e, "cannot queue the call record");
    }
    None
}

/// True while a change of `call_sid` (queued before job `before`, when
/// given) waits in the queue.
async fn waiting(
    pool: &SqlitePool,
    call_sid: &str,
    before: Option<i64>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS(SELECT 1 FROM jobs WHERE queue = 'twiliod' AND kind = ? \
                AND status IN ('pending', 'running') AND id < ? \
                AND json_extract(payload, '$.call_sid') = ?)",
    )
    .bind(KIND)
    .bind(before.unwrap_or(i64::MAX))
    .bind(call_sid)
    .fetch_one(pool)
    .await
}

/// Registers the job handler that retries a change until sipd takes it.
pub fn register(st: &AppState) {
    let st = st.clone();
    st.queue.clone().register(KIND, move |job: Job| {
        let st = st.clone();
        async move { deliver(&st, job).await }
    });
}

async fn deliver(st: &AppState, job: Job) -> Result<(), JobError> {
    let bytes = job.payload["request"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| JobError::Permanent("bad call record job".into()))?;
    let r = RecordCallRequest::decode(bytes.as_slice())
        .map_err(|e| JobError::Permanent(format!("bad call record job: {e}")))?;
    if waiting(&st.pool, &r.call_sid, Some(job.id))
        .await
        .map_err(|e| JobError::retry(e.to_string()))?
    {
        return Err(JobError::retry("an earlier change of the call waits"));
    }
    st.call_records.send(&r).await?;
    if matches!(r.change, Some(Change::Voicemail(_))) {
        link_voicemail(&st.pool, &r.call_sid)
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
    }
    tracing::info!(call_sid = %r.call_sid, "queued call record written");
    Ok(())
}

/// Links the voicemails of a call stored while its record waited (the
/// queued record and the voicemail may land in either order).
pub async fn link_voicemail(pool: &SqlitePool, call_sid: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE voicemails SET cdr_id = (SELECT id FROM cdrs WHERE call_sid = ?1) \
         WHERE call_sid = ?1 AND cdr_id IS NULL",
    )
    .bind(call_sid)
    .execute(pool)
    .await?;
    Ok(())
}
