//! The HTTP API: axum handlers, one file per endpoint, assembled into one router here, and the
//! OpenAPI document generated from the same registrations.

pub mod access_log;
pub mod as_of;
pub mod auth;
pub mod auth_failures;
pub mod body;
pub mod consent_history;
pub mod consent_proof;
pub mod email;
pub mod error;
pub mod health;
pub mod limits;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod schema;
pub mod set_status;
pub mod status_get;
pub mod user_status;
pub mod users_delete;
pub mod users_track;

use std::sync::Arc;

use axum::http::Method;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::Catalog;
use crate::domain::retention::Retention;
use crate::domain::time::Clock;
use crate::limiter::RateLimiter;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Keys and groups, in memory.
    pub catalog: Arc<Catalog>,
    /// The store.
    pub store: Store,
    /// How long orphaned identifier state counts after its last change.
    pub orphan_retention: Retention,
    /// Where handlers read the time (reads of orphaned state, rate-limit windows).
    pub clock: Clock,
    /// The per-workspace rate-limit counters.
    pub limiter: Arc<RateLimiter>,
    /// Wrong API keys per client address, to stop guessing.
    pub failed_auth: Arc<auth_failures::FailedAuthentications>,
    /// The person's pages: public URL and per-address limit.
    pub pages: Arc<crate::pages::PagesState>,
}

/// Every endpoint, each registered once with both its route and its OpenAPI operation:
/// `routes!` reads the path and method from the handler's `#[utoipa::path]` and gives axum the
/// very same ones, so no endpoint can be served without being documented, nor documented at
/// another path or method than the one it is served at. This is the only place routes are
/// added: a plain `.route(...)` anywhere else would serve an endpoint the document lacks.
///
/// `/openapi.json` is registered like the others and so lists itself: the rule "every route is
/// in the document" then has no exception to explain or to keep up to date.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(set_status::handle_v2))
        .routes(routes!(set_status::handle_v1))
        .routes(routes!(status_get::handle))
        .routes(routes!(user_status::handle))
        .routes(routes!(users_track::handle))
        .routes(routes!(users_delete::handle))
        .routes(routes!(crate::pages::links_api::handle))
        .routes(routes!(email::set_status))
        .routes(routes!(email::unsubscribes))
        .routes(routes!(consent_history::handle))
        .routes(routes!(consent_proof::handle))
        .routes(routes!(openapi::serve))
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    // Generated now, once per process, rather than by the first request to read it.
    openapi::document();
    Router::from(api())
        // The person's pages: public, HTML, outside the API document.
        .merge(crate::pages::router(state.clone()))
        // The probes, deliberately outside the Braze API document (see `health`).
        .route("/livez", axum::routing::get(health::livez))
        .route("/readyz", axum::routing::get(health::readyz))
        .fallback(middleware::not_found)
        .layer(axum::middleware::from_fn(limits::uri_length))
        .layer(axum::middleware::from_fn(middleware::request_id_and_json_errors))
        // Outermost, to log the final status and request id.
        .layer(axum::middleware::from_fn(access_log::log))
        .with_state(state)
}

/// The OpenAPI document of [`router`]'s endpoints, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api().into_openapi();
    openapi::finish(&mut doc);
    doc
}

/// Every `(method, path)` the router serves, as registered in [`api`] (before the document is
/// finished), in path order. A GET route also answers HEAD, as axum does for every GET.
pub fn routes() -> Vec<(Method, String)> {
    let registered = api().into_openapi();
    let mut routes: Vec<(Method, String)> = registered
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| openapi::operations(item).map(move |(method, _)| (method, path.clone())))
        .collect();
    routes.sort_by(|a, b| (&a.1, a.0.as_str()).cmp(&(&b.1, b.0.as_str())));
    routes
}
