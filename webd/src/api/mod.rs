//! Routes under `/api/`. Handlers are thin: they check who is asking, then
//! call plain functions.

pub mod system;

use axum::Router;
use axum::routing::get;

use crate::AppState;

/// The API router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/system/health", get(system::health))
        .with_state(state)
}
