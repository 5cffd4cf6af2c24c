//! Limits on the request line that hyper leaves wide: a request target of up to 64 KiB parses,
//! but no endpoint needs more than a few KiB of query string, and a long one costs a parse of
//! every parameter.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Longest request target (path and query) read: 50 identifiers of the longest kind fit.
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Answers 414 as JSON for a request target longer than [`MAX_URI_BYTES`].
pub async fn uri_length(request: Request, next: Next) -> Response {
    let length = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong(length).into_response();
    }
    next.run(request).await
}
