//! `POST /users/track`, the subset that serves subscriptions: up to 75 attribute objects, each
//! creating or updating a profile by external id, its email and phone, and its group states.
//! Objects with problems are skipped and reported; the valid ones are applied atomically.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Authorized, Required, UsersTrack};
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{AuthErrors, BodyErrors, StoreErrors};
use super::schema::{SuccessMessage, TrackRequest};
use super::AppState;
use crate::domain::change::Endpoint;
use crate::domain::ids::RequestId;
use crate::domain::plan::Origin;
use crate::domain::track::{self, TrackError};

/// Braze's answer: how many objects were applied, and why the others were not.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackResponse {
    /// `success`, even when some objects were skipped.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
    /// Objects applied.
    #[schema(minimum = 0)]
    pub attributes_processed: usize,
    /// Objects skipped; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<TrackError>,
}

/// Validates every object, applies the valid ones in one commit, answers 201.
#[utoipa::path(
    post,
    path = "/users/track",
    tag = "users",
    operation_id = "trackUsers",
    summary = "Create or update up to 75 profiles with their subscription states",
    description = "The part of Braze's `/users/track` that serves subscriptions. Each attribute object creates or \
        updates a profile by external id, sets or removes its email and phone, and sets its group states. As in \
        Braze, a problem with one object is not fatal: that object is skipped and reported in `errors`, and the \
        valid objects are applied, all together or not at all. The answer is 201 even when every object was \
        skipped.",
    request_body(content = TrackRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The valid objects are stored; the others are reported.", body = TrackResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(UsersTrack::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    caller: Authorized<UsersTrack>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<TrackResponse>), ApiError> {
    let workspace_id = caller.key.workspace_id;
    let mut command = state.catalog.with_groups(workspace_id, |groups| track::parse_track(&body, groups))?;
    drop(body);
    let errors = std::mem::take(&mut command.errors);
    let attributes_processed = command.objects.len();
    if attributes_processed > 0 {
        let origin = Origin::api(workspace_id, caller.key.id, Endpoint::UsersTrack, request_id);
        state.store.track(origin, command).await?;
    }
    Ok((StatusCode::CREATED, Json(TrackResponse { message: "success", attributes_processed, errors })))
}
