//! The host twiliod names in `<Sip>` URIs when `sip.public_address` is
//! empty: the public address sipd learned (from the trunk's Via or STUN),
//! read from sipd's `sip_addresses` table, else sipd's default address.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;

/// The latest address sipd published; cheap to clone and read.
#[derive(Clone, Default)]
pub struct SipHost {
    inner: Arc<RwLock<Option<String>>>,
}

impl SipHost {
    /// The address, when sipd has published one.
    pub fn get(&self) -> Option<String> {
        self.inner.read().ok().and_then(|g| g.clone())
    }

    /// Reads the table once.
    pub async fn refresh(&self, pool: &SqlitePool) {
        let row: Result<Option<(String,)>, _> = sqlx::query_as(
            "SELECT address FROM sip_addresses WHERE scope IN ('public', 'default') \
             ORDER BY scope = 'public' DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await;
        match row {
            Ok(v) => {
                if let Ok(mut g) = self.inner.write() {
                    *g = v.map(|(a,)| a);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read sip_addresses"),
        }
    }

    /// Re-reads every two seconds until `shutdown`.
    pub async fn run(self, pool: SqlitePool, shutdown: CancellationToken) {
        loop {
            self.refresh(&pool).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }
}
