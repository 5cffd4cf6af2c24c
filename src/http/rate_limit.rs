//! Rate limiting at the edge: the extractor that authenticates a caller also counts the request
//! against its workspace's bucket ([`admit`]), before the body is read, so a rejected request
//! costs no parsing and changes nothing; the middleware then writes the `x-ratelimit-*` headers
//! on whatever response comes back, including errors a handler produces later.
//!
//! The two meet through a [`RateLimitSlot`] in the request's extensions: the middleware puts an
//! empty one in, the extractor fills it, the middleware reads it after the handler. A request
//! that never authenticated leaves it empty and gets no headers: it drew on no budget.

use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, HeaderValue};

use super::error::ApiError;
use super::AppState;
use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Decision};

/// Where the extractor leaves the decision for the middleware. Cloning shares the slot.
#[derive(Debug, Clone, Default)]
pub struct RateLimitSlot(Arc<OnceLock<Decision>>);

impl RateLimitSlot {
    /// The decision taken for this request, if it was counted.
    pub fn decision(&self) -> Option<Decision> {
        self.0.get().copied()
    }
}

/// Counts one request of `workspace` against `bucket`, records the decision for the response
/// headers, and refuses the request when it is over the limit.
pub async fn admit(
    state: &AppState,
    slot: Option<&RateLimitSlot>,
    workspace: WorkspaceId,
    bucket: Bucket,
) -> Result<Decision, ApiError> {
    let limit = state.catalog.rate_limit(workspace, bucket);
    let now = state.clock.now();
    let decision = state.limiter.acquire(workspace, bucket, limit, now).await;
    if let Some(slot) = slot {
        // Set once per request; a second limited extractor in one handler would find it full
        // and the first decision, the one that admitted the request, stays on the response.
        let _ = slot.0.set(decision);
    }
    if !decision.allowed {
        return Err(ApiError::TooManyRequests { bucket, limit, retry_after: decision.retry_after(now) });
    }
    Ok(decision)
}

/// Writes `x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset` (UTC epoch
/// seconds of the window's end).
pub fn write_headers(headers: &mut HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_at));
}
