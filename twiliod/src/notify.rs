//! Hand-offs to notifyd (email, push, webhooks) that never fail the caller:
//! each is a durable `notify` job, so a webhook answers Twilio at once even
//! when notifyd is down, and the job is retried until notifyd takes it.
//!
//! ```ignore
//! crate::notify::enqueue(&state.queue, Notice {
//!     kind: "sms".into(), user_id: 3, payload: json!({"from": "+1555..."}),
//!     attachments: vec!["media/abc.png".into()],
//! }, Some(format!("notify:sms:{sid}"))).await?;
//! ```

use proto::grpc::Secret;
use proto::pb::notifyd::NotifyRequest;
use proto::pb::notifyd::notifyd_client::NotifydClient;
use serde::{Deserialize, Serialize};

use crate::queue::{Enqueue, Job, JobError, Queue};

/// Job kind of notifyd hand-offs.
pub const KIND: &str = "notify";

/// One notification for notifyd (`NotifyRequest`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// "voicemail", "sms", "missed_call", "admin_alert" ...
    pub kind: String,
    /// 0 = the admins.
    pub user_id: i64,
    pub payload: serde_json::Value,
    /// Files relative to the data dir.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// Queues `notice` for notifyd; `key` makes a repeated call a no-op.
pub async fn enqueue(
    queue: &Queue,
    notice: Notice,
    key: Option<String>,
) -> Result<i64, sqlx::Error> {
    let payload = serde_json::to_value(&notice).unwrap_or_default();
    let opts = Enqueue {
        idempotency_key: key,
        ..Enqueue::default()
    };
    queue.enqueue(KIND, &payload, opts).await
}

/// Registers the `notify` job handler that calls notifyd at `notifyd_addr`
/// (`host:port`), each call carrying the daemons' shared `secret`.
pub fn register(queue: &Queue, notifyd_addr: String, secret: Secret) {
    queue.register(KIND, move |job: Job| {
        let addr = notifyd_addr.clone();
        let secret = secret.clone();
        async move { deliver(&addr, &secret, job).await }
    });
}

async fn deliver(addr: &str, secret: &Secret, job: Job) -> Result<(), JobError> {
    let n: Notice = serde_json::from_value(job.payload)
        .map_err(|e| JobError::Permanent(format!("bad notice: {e}")))?;
    let channel =
        proto::grpc::channel(addr, secret).map_err(|e| JobError::Permanent(e.to_string()))?;
    let mut client = NotifydClient::new(channel);
    client
        .notify(NotifyRequest {
            kind: n.kind.clone(),
            user_id: n.user_id,
            payload_json: n.payload.to_string(),
            attachments: n.attachments.clone(),
        })
        .await
        .map_err(|e| match e.code() {
            tonic::Code::InvalidArgument => JobError::Permanent(e.message().to_owned()),
            _ => JobError::retry(format!("notifyd: {}", e.message())),
        })?;
    tracing::info!(kind = %n.kind, user_id = n.user_id, "notification handed to notifyd");
    Ok(())
}
