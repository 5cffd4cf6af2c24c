//! Answers for requests no endpoint takes, and what every response carries: the request id,
//! and the rate-limit headers of an authenticated request.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::rate_limit::{write_headers, RateLimitSlot};
use crate::domain::ids::RequestId;

/// 404 for an unknown path, as JSON. The path is echoed quoted and cut short.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint at {}", crate::domain::validation::quote(uri.path())))
}

/// Gives the request an id (kept on its change records) and returns it in `x-request-id`,
/// turns the framework's bodiless 405 into Braze-shaped JSON while keeping its `Allow` header,
/// and writes the `x-ratelimit-*` headers when the request was counted against a rate limit,
/// whatever the handler answered (a 400 found in the body still spent the budget).
pub async fn request_id_and_json_errors(mut request: Request, next: Next) -> Response {
    let id = RequestId::generate();
    request.extensions_mut().insert(id);
    let slot = RateLimitSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().clone();
    let mut response = next.run(request).await;
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        let (mut parts, _) = response.into_parts();
        let body = json!({ "message": format!("method {method} is not allowed on this endpoint") });
        parts.headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        parts.headers.remove(axum::http::header::CONTENT_LENGTH);
        response = Response::from_parts(parts, Body::from(body.to_string()));
    }
    if let Some(decision) = slot.decision() {
        write_headers(response.headers_mut(), &decision);
    }
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert("x-request-id", value);
    }
    response.into_response()
}
