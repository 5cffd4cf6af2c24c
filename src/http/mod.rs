//! The HTTP API: axum handlers, one file per endpoint, assembled into one router here.

pub mod auth;
pub mod body;
pub mod error;
pub mod fallback;
pub mod rate_limit;
pub mod set_status;
pub mod status_get;
pub mod user_status;
pub mod users_delete;
pub mod users_track;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
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
    /// How long orphaned identifier state counts after its last change.
    pub orphan_retention: Duration,
    /// The per-workspace rate-limit counters.
    pub limiter: Arc<RateLimiter>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/subscription/status/set", post(set_status::handle_v2))
        .route("/subscription/status/set", post(set_status::handle_v1))
        .route("/subscription/status/get", get(status_get::handle))
        .route("/subscription/user/status", get(user_status::handle))
        .route("/users/track", post(users_track::handle))
        .route("/users/delete", post(users_delete::handle))
        .fallback(fallback::not_found)
        .layer(axum::middleware::from_fn(fallback::request_id_and_json_errors))
        .with_state(state)
}
