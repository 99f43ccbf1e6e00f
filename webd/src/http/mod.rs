//! What every handler shares: the spec's error JSON (`error`), the list
//! envelope and pagination (`paging`), validated JSON and query extractors
//! that answer with that error JSON (`extract`), field checks (`validate`),
//! and gRPC error mapping (here).

use serde::Serialize;
use utoipa::ToSchema;

use error::ApiError;

pub mod error;
mod extract;
mod paging;
mod validate;

pub use extract::*;
pub use paging::*;
pub use validate::*;

/// Maps a gRPC failure of a peer daemon to 503 (down) or 502-like 503.
pub fn peer_error(daemon: &str, s: tonic::Status) -> ApiError {
    match s.code() {
        tonic::Code::InvalidArgument => ApiError::Validation(vec![fe("body", s.message())]),
        tonic::Code::NotFound => ApiError::NotFound,
        tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists => {
            ApiError::Conflict(s.message().to_owned())
        }
        tonic::Code::PermissionDenied => ApiError::Forbidden,
        _ => {
            tracing::warn!(daemon, code = ?s.code(), message = s.message(), "peer call failed");
            ApiError::Unavailable(format!(
                "{daemon} is not reachable right now; try again shortly"
            ))
        }
    }
}

/// Asks every daemon's `Daemon` service to reload settings (down ones are
/// skipped: they poll every 5 s anyway).
pub async fn reload_all(st: &crate::AppState) {
    use proto::pb::common::ReloadRequest;
    use proto::pb::common::daemon_client::DaemonClient;
    let _ = st.settings.reload().await;
    let p = &st.peers;
    let chans = [
        p.sipd.clone(),
        p.mediad.clone(),
        p.twiliod.clone(),
        p.notifyd.clone(),
    ];
    let calls = chans.into_iter().map(|ch| async move {
        let mut c = DaemonClient::new(ch);
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            c.reload(ReloadRequest {}),
        )
        .await;
    });
    futures::future::join_all(calls).await;
}

/// `{"ok": true}` style answers.
#[derive(Serialize, ToSchema)]
pub struct Ok_ {
    pub ok: bool,
}

pub fn ok() -> axum::Json<Ok_> {
    axum::Json(Ok_ { ok: true })
}
