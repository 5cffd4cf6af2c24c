//! `POST /v2/subscription/status/set`: up to 25 entries, each setting one group's state for up
//! to 50 external ids and 50 emails or phones, validated whole and applied atomically.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::{Authorized, StatusSet};
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::domain::change::{ChangeSource, Endpoint};
use crate::domain::ids::RequestId;
use crate::domain::plan::Origin;
use crate::domain::set_status;

/// Validates the body against the caller's groups, then applies it through the store.
pub async fn handle(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    caller: Authorized<StatusSet>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let workspace_id = caller.key.workspace_id;
    let command =
        state.catalog.with_groups(workspace_id, |groups| set_status::parse_v2(&body, groups)).map_err(|problems| {
            ApiError::BadRequest { message: problems.first().to_string(), errors: problems.into_list() }
        })?;
    drop(body);
    let origin = Origin {
        workspace_id,
        source: ChangeSource { api_key_id: caller.key.id, endpoint: Endpoint::V2StatusSet, request_id },
    };
    state.store.set_status(origin, command).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": "success" }))))
}
