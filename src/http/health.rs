//! Probes for supervisors and load balancers: `GET /livez` (the process serves) and
//! `GET /readyz` (the store accepts writes). No key, no rate limit, and not part of the Braze
//! API document: they are for the people who run the service, not for Braze clients.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::AppState;
use crate::store::StoreError;

/// How long `/readyz` waits for the store: a probe that hangs is itself an outage, and load
/// balancers time probes out after a few seconds.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 `{"status":"ok"}` whenever the process answers at all.
pub async fn livez() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 `{"status":"ok"}` when the store accepts writes; 503 with a reason otherwise. The
/// store's own error is logged, not answered: the probe needs no key.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let reason = match tokio::time::timeout(READY_TIMEOUT, state.store.readiness()).await {
        Ok(Ok(())) => return (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Ok(Err(StoreError::ShuttingDown)) => "the store is shutting down".to_string(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "not ready: the store does not accept writes");
            match err {
                StoreError::Unavailable { .. } => "the database is unreachable or is not a primary".to_string(),
                _ => "the store does not accept writes".to_string(),
            }
        }
        Err(_) => format!("the store did not answer within {} seconds", READY_TIMEOUT.as_secs()),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "message": reason })))
}
