//! One error type for every endpoint, answered as Braze-shaped JSON: `{"message": …}` with the
//! right status, plus `errors` for validation failures. Internal failures are logged with their
//! cause and answered without it, so that storage details never reach a client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::rate_limit::{Bucket, Limit};
use crate::domain::validation::Problems;
use crate::store::StoreError;

/// Largest request body accepted, as Braze documents.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is invalid; `message` is the first problem, `errors` all of them.
    #[error("{message}")]
    BadRequest {
        /// The first problem, naming place and value.
        message: String,
        /// Every problem found.
        errors: Vec<String>,
    },
    /// No key, an unknown key or a revoked key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key lacks the permission, or the caller is outside its IP allowlist.
    #[error("{0}")]
    Forbidden(String),
    /// No such path.
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("request body is larger than the 4 MB limit")]
    PayloadTooLarge,
    /// The body did not arrive in time.
    #[error("the request body did not arrive within 30 seconds")]
    RequestTimeout,
    /// The request target is longer than [`super::limits::MAX_URI_BYTES`]; its length.
    #[error("the request target is {0} bytes long; at most {max} are read", max = super::limits::MAX_URI_BYTES)]
    UriTooLong(usize),
    /// The body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The workspace has used up the bucket's budget for the current window.
    #[error(
        "rate limit exceeded: this workspace may make {} requests per {} seconds to {} (bucket {bucket:?}); \
         retry in {retry_after} seconds",
        limit.requests(),
        limit.window_seconds(),
        bucket.endpoints(),
        bucket = bucket.as_str()
    )]
    TooManyRequests {
        /// The bucket that is spent.
        bucket: Bucket,
        /// Its limit.
        limit: Limit,
        /// Seconds until the window ends, for `retry-after`.
        retry_after: u64,
    },
    /// The caller's address sent too many wrong API keys; it may try again after the window.
    #[error("too many failed authentications from this address; retry in {retry_after} seconds")]
    TooManyFailedAuthentications {
        /// Seconds until the window ends, for `retry-after`.
        retry_after: u64,
    },
    /// The server is shutting down.
    #[error("the server is shutting down; retry on another node or in a moment")]
    Unavailable,
    /// The database cannot be reached; the detail is logged, not returned.
    #[error("the database is unavailable; retry in a moment")]
    StoreUnavailable(String),
    /// Something failed on our side; the detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A validation failure with a single problem.
    pub fn bad_request(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::BadRequest { errors: vec![message.clone()], message }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::TooManyRequests { .. } | ApiError::TooManyFailedAuthentications { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable | ApiError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON of an error, `message` first as Braze writes it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(description = "Every error answer: what is wrong, and every problem when validation failed.")]
pub(crate) struct ErrorBody {
    /// What is wrong, naming the offending place and value.
    message: String,
    /// Every problem found, when the request failed validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    errors: Option<Vec<String>>,
}

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        ApiError::BadRequest { message: problems.first().to_string(), errors: problems.into_list() }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // A failed commit stops the store and the server restarts (crash-only): the
            // requests of that batch were not acknowledged, and a retry after the restart
            // applies them (a set or track is the same change twice).
            StoreError::ShuttingDown | StoreError::Commit(_) => ApiError::Unavailable,
            err @ StoreError::Unavailable { .. } => ApiError::StoreUnavailable(crate::store::report(&err)),
            other => ApiError::Internal(crate::store::report(&other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. } | ApiError::TooManyFailedAuthentications { retry_after } => {
                Some(HeaderValue::from(*retry_after))
            }
            ApiError::Unavailable | ApiError::StoreUnavailable(_) => Some(HeaderValue::from_static("1")),
            _ => None,
        };
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::StoreUnavailable(detail) => {
                metrics::counter!(crate::telemetry::STORE_UNAVAILABLE_ANSWERS).increment(1);
                tracing::warn!(%detail, "answered 503: the database is unavailable")
            }
            _ => {}
        }
        let body = match self {
            ApiError::BadRequest { message, errors } => ErrorBody { message, errors: Some(errors) },
            other => ErrorBody { message: other.to_string(), errors: None },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(retry_after) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}
