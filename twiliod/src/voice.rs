//! Voice webhooks: incoming call, dial result, recording, transcription,
//! call status.

use axum::Router;

use crate::AppState;

/// The voice routes (signature check applied by [`crate::webhooks::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
}
