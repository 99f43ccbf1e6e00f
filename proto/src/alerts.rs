//! Admin alerts that do not depend on the database taking writes.
//!
//! An alert is normally an `alerts` row, which notifyd turns into email and
//! push. When the row cannot be written (the disk is full, or read-only mode
//! after corruption), [`Alerter::raise`] hands the alert to notifyd over
//! gRPC at once, from memory, and keeps the row to write it later: the admin
//! hears about a full disk while it is full, and the alert list shows it once
//! space is back. notifyd does not mail the late row a second time (it
//! remembers what it sent from memory, for its repeat window).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

use crate::grpc::{AuthChannel, Secret};
use crate::pb::notifyd::NotifyRequest;
use crate::pb::notifyd::notifyd_client::NotifydClient;

/// How often rows that could not be written are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Pending {
    source: String,
    kind: String,
    message: String,
    created_at: String,
}

/// Raises admin alerts for one daemon.
#[derive(Clone)]
pub struct Alerter {
    pool: SqlitePool,
    source: &'static str,
    notifyd: NotifydClient<AuthChannel>,
    pending: Arc<Mutex<Vec<Pending>>>,
}

impl Alerter {
    /// `notifyd` is its gRPC address (`host:port`); nothing connects until
    /// an alert needs it.
    pub fn new(
        pool: SqlitePool,
        source: &'static str,
        notifyd: &str,
        secret: &Secret,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool,
            source,
            notifyd: NotifydClient::new(crate::grpc::channel(notifyd, secret)?),
            pending: Arc::default(),
        })
    }

    /// Writes the alert row; if the database refuses it, sends the alert to
    /// notifyd now and keeps the row for [`Alerter::run`] to write later.
    pub async fn raise(&self, kind: &str, message: &str) {
        let created_at = crate::time::now();
        match crate::db::alert_at(&self.pool, self.source, kind, message, &created_at).await {
            Ok(()) => return,
            Err(e) => tracing::error!(
                error = %e, kind, "cannot store the alert; sending it to notifyd from memory"
            ),
        }
        if let Ok(mut p) = self.pending.lock() {
            p.push(Pending {
                source: self.source.to_owned(),
                kind: kind.to_owned(),
                message: message.to_owned(),
                created_at,
            });
        }
        let payload = serde_json::json!({
            "alert": kind, "message": message, "source": self.source,
        });
        let req = NotifyRequest {
            kind: "admin_alert".into(),
            user_id: 0,
            payload_json: payload.to_string(),
            attachments: vec![],
        };
        if let Err(e) = self.notifyd.clone().notify(req).await {
            tracing::error!(error = %e, kind, "notifyd did not take the alert either");
        }
    }

    /// Alerts whose row is still unwritten.
    pub fn unwritten(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Writes the kept rows every [`RETRY_EVERY`] until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY_EVERY) => {}
            }
            let rows: Vec<Pending> = self.pending.lock().map(|p| p.clone()).unwrap_or_default();
            for row in rows {
                let r = &row;
                if crate::db::alert_at(&self.pool, &r.source, &r.kind, &r.message, &r.created_at)
                    .await
                    .is_err()
                {
                    break;
                }
                tracing::info!(kind = %r.kind, "alert row written now that the database takes writes");
                if let Ok(mut p) = self.pending.lock() {
                    p.retain(|x| x.created_at != r.created_at || x.kind != r.kind);
                }
            }
        }
    }
}
