//! One log line per request: method, route template, status, latency, request id, and the
//! workspace and key that authenticated it. Never the raw path (a link token is a path), the
//! query string (identifiers), a header or a body.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::domain::ids::{ApiKeyId, WorkspaceId};

/// Who authenticated the request, filled in by the authentication extractor for the log line.
#[derive(Debug, Clone, Default)]
pub struct Caller(Arc<OnceLock<(WorkspaceId, ApiKeyId)>>);

impl Caller {
    /// Records the workspace and key of an authenticated request.
    pub fn set(&self, workspace: WorkspaceId, key: ApiKeyId) {
        let _ = self.0.set((workspace, key));
    }
}

/// Routes probed every few seconds by supervisors and load balancers: logged at debug level
/// only, so that they do not drown the requests.
const PROBES: [&str; 2] = ["/livez", "/readyz"];

/// Logs the request once it is answered (see the module documentation).
pub async fn log(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The template the router matched (`/v2/subscription/status/set`), not the path sent.
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let caller = Caller::default();
    request.extensions_mut().insert(caller.clone());
    let in_flight = crate::telemetry::GaugeGuard::new(crate::telemetry::HTTP_REQUESTS_IN_FLIGHT);
    let response = next.run(request).await;
    drop(in_flight);
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let request_id = response.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    let (workspace, key) = match caller.0.get() {
        Some((workspace, key)) => (Some(workspace.to_string()), Some(key.to_string())),
        None => (None, None),
    };
    let route = route.as_deref().unwrap_or("(no route)");
    let status = response.status().as_u16();
    metrics::histogram!(crate::telemetry::HTTP_REQUEST_DURATION,
        "method" => crate::telemetry::method_label(&method), "route" => route.to_owned(), "status" => status.to_string())
    .record(started.elapsed());
    if PROBES.contains(&route) {
        tracing::debug!(target: "consentry::access", %method, route, status, latency_ms, request_id, "request");
    } else {
        tracing::info!(
            target: "consentry::access",
            %method, route, status, latency_ms, request_id, workspace, key,
            "request"
        );
    }
    response
}
