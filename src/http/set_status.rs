//! The two set endpoints, one code path: `POST /v2/subscription/status/set` (up to 25 entries
//! of plural lists) and `POST /subscription/status/set` (V1: one entry of singular fields).
//! They differ only in how the body is read; validation of an entry, the plan and the store
//! are shared.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::auth::{Authorized, Required, StatusSet};
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{AuthErrors, BodyErrors, StoreErrors};
use super::schema::{SuccessResponse, V1SetRequest, V2SetRequest};
use super::AppState;
use crate::domain::change::Endpoint;
use crate::domain::ids::RequestId;
use crate::domain::plan::Origin;
use crate::domain::set_status::{self, SetStatusCommand};
use crate::domain::validation::{GroupDirectory, Problems};

/// `POST /v2/subscription/status/set`.
#[utoipa::path(
    post,
    path = "/v2/subscription/status/set",
    tag = "subscriptions",
    operation_id = "setSubscriptionStatusV2",
    summary = "Set subscription states of up to 25 groups",
    description = "Sets the state of profiles in subscription groups, by external id, email or phone, one entry per \
        group. Entries are applied in order, all together or not at all. An email or phone updates every profile \
        that carries it; when none does, the state is kept as orphaned state and a profile that later takes that \
        email or phone inherits it. Setting a state to what it already is changes nothing.",
    request_body(content = V2SetRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Every change is stored.", body = SuccessResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(StatusSet::PERMISSION.as_str()))),
)]
pub async fn handle_v2(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    caller: Authorized<StatusSet>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    apply(state, request_id, caller, body, Endpoint::V2StatusSet, set_status::parse_v2).await
}

/// `POST /subscription/status/set` (V1).
#[utoipa::path(
    post,
    path = "/subscription/status/set",
    tag = "subscriptions",
    operation_id = "setSubscriptionStatusV1",
    summary = "Set the subscription state of one group (V1)",
    description = "The V1 form of the set endpoint: one group per request, with singular field names. Same rules, \
        semantics and rate-limit bucket as V2.",
    request_body(content = V1SetRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Every change is stored.", body = SuccessResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(StatusSet::PERMISSION.as_str()))),
)]
pub async fn handle_v1(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    caller: Authorized<StatusSet>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    apply(state, request_id, caller, body, Endpoint::V1StatusSet, set_status::parse_v1).await
}

/// Validates the body against the caller's groups with `parse`, then applies it through the
/// store.
async fn apply(
    state: AppState,
    request_id: RequestId,
    caller: Authorized<StatusSet>,
    body: Value,
    endpoint: Endpoint,
    parse: fn(&Value, &dyn GroupDirectory) -> Result<SetStatusCommand, Problems>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let workspace_id = caller.key.workspace_id;
    let command = state.catalog.with_groups(workspace_id, |groups| parse(&body, groups)).map_err(ApiError::from)?;
    drop(body);
    let origin = Origin::api(workspace_id, caller.key.id, endpoint, request_id);
    state.store.set_status(origin, command).await?;
    Ok((StatusCode::CREATED, Json(json!({ "message": "success" }))))
}
