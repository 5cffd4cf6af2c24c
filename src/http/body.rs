//! The JSON body of a POST: declared as JSON (415 otherwise), at most 4 MB (413), and
//! well-formed (400, with serde's line and column). Nesting is bounded by serde_json's
//! recursion limit, so no body, however hostile, makes the parser recurse or allocate without
//! bound.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use super::error::{ApiError, MAX_BODY_BYTES};

/// How long a client may take to send its body: a connection trickling bytes must not hold
/// its slot forever.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A parsed JSON request body.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(match content_type {
                Some(other) => {
                    format!("Content-Type must be application/json, got {}", crate::domain::set_status::quote(other))
                }
                None => "Content-Type must be application/json".into(),
            }));
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let read = axum::body::to_bytes(Body::new(request.into_body()), MAX_BODY_BYTES);
        let read = tokio::time::timeout(BODY_TIMEOUT, read).await.map_err(|_| ApiError::RequestTimeout)?;
        let bytes = read.map_err(|err| {
            // `to_bytes` reports a length-limit overrun as a `LengthLimitError` in its source
            // chain.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return ApiError::PayloadTooLarge;
                }
                source = e.source();
            }
            ApiError::bad_request(format!("request body could not be read: {err}"))
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("request body is empty; expected a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))
    }
}

/// `application/json` with optional parameters (`; charset=utf-8`), in any case.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}
