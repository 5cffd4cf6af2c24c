//! The HTTP API: axum handlers, one file per endpoint, assembled into one router here.

pub mod auth;
pub mod body;
pub mod error;
pub mod fallback;
pub mod rate_limit;
pub mod set_status_v2;

use std::sync::Arc;

use axum::routing::post;
use axum::Router;

use crate::catalog::Catalog;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Keys and groups, in memory.
    pub catalog: Arc<Catalog>,
    /// The store.
    pub store: Store,
    /// The per-workspace rate-limit counters.
    pub limiter: Arc<RateLimiter>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/subscription/status/set", post(set_status_v2::handle))
        .fallback(fallback::not_found)
        .layer(axum::middleware::from_fn(fallback::request_id_and_json_errors))
        .with_state(state)
}
