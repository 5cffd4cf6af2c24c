//! The JSON body of a POST: declared as JSON and not compressed (415 otherwise), at most 4 MB
//! (413, read to its end within a bound so that the client sees it), and
//! well-formed (400, with serde's line and column). Nesting is bounded by serde_json's
//! recursion limit, so no body, however hostile, makes the parser recurse or allocate without
//! bound.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use http_body_util::BodyExt;
use serde_json::Value;

use super::error::{ApiError, MAX_BODY_BYTES};

/// How long a client may take to send its body: a connection trickling bytes must not hold
/// its slot forever.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most bytes of an oversized body read (and dropped) before its 413.
const DISCARD_BYTES: usize = 16 * 1024 * 1024;
/// Longest time spent reading an oversized body before its 413.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// A parsed JSON request body.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = request.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("?"));
        if !content_type.is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(match content_type {
                Some(other) => {
                    format!("Content-Type must be application/json, got {}", crate::domain::validation::quote(other))
                }
                None => "Content-Type must be application/json".into(),
            }));
        }
        if let Some(encoding) = request.headers().get(header::CONTENT_ENCODING) {
            let encoding = encoding.to_str().unwrap_or("?").trim();
            if !encoding.eq_ignore_ascii_case("identity") {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Encoding {} is not supported: send the JSON body unencoded",
                    crate::domain::validation::quote(encoding)
                )));
            }
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = Body::new(request.into_body());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            discard(body, 0).await;
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = tokio::time::timeout(BODY_TIMEOUT, async {
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|err| ApiError::bad_request(format!("request body could not be read: {err}")))?;
                let Ok(data) = frame.into_data() else { continue };
                if bytes.len() + data.len() > MAX_BODY_BYTES {
                    discard(body, bytes.len() + data.len()).await;
                    return Err(ApiError::PayloadTooLarge);
                }
                bytes.extend_from_slice(&data);
            }
            Ok(bytes)
        })
        .await
        .map_err(|_| ApiError::RequestTimeout)??;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("request body is empty; expected a JSON object"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))
    }
}

/// Reads and drops what is left of an oversized body (`seen` bytes of it read already), up to
/// [`DISCARD_BYTES`] in all or for [`DISCARD_TIME`], so that the 413 reaches a client that
/// sends its whole body before it reads: closing the connection on unread bytes resets it,
/// and the client sees a broken pipe instead of the answer. Past the bound it is closed.
async fn discard(mut body: Body, mut seen: usize) {
    let _ = tokio::time::timeout(DISCARD_TIME, async {
        while seen < DISCARD_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |data| data.len()),
                _ => return,
            }
        }
    })
    .await;
}

/// `application/json` with optional parameters (`; charset=utf-8`), in any case.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}
