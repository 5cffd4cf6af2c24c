//! `POST /users/track`, the subset that serves subscriptions: up to 75 attribute objects, each
//! creating or updating a profile by external id, its email and phone, and its group states.
//! Objects with problems are skipped and reported; the valid ones are applied atomically.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;

use super::auth::{Authorized, UsersTrack};
use super::body::JsonBody;
use super::error::ApiError;
use super::AppState;
use crate::domain::change::{ChangeSource, Endpoint};
use crate::domain::ids::RequestId;
use crate::domain::plan::Origin;
use crate::domain::track::{self, TrackError};

/// Braze's answer: how many objects were applied, and why the others were not.
#[derive(Debug, Serialize)]
pub struct TrackResponse {
    /// `success`, even when some objects were skipped.
    pub message: &'static str,
    /// Objects applied.
    pub attributes_processed: usize,
    /// Objects skipped; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<TrackError>,
}

/// Validates every object, applies the valid ones in one commit, answers 201.
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
        let source = ChangeSource { api_key_id: caller.key.id, endpoint: Endpoint::UsersTrack, request_id };
        state.store.track(Origin { workspace_id, source }, command).await?;
    }
    Ok((StatusCode::CREATED, Json(TrackResponse { message: "success", attributes_processed, errors })))
}
