//! `POST /users/delete`: deletes up to 50 profiles by external id with their states. Their
//! change records stay (the history of consent outlives the profile) but hold nothing that
//! leads back to the person.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Authorized, Required, UsersDelete};
use super::body::JsonBody;
use super::error::ApiError;
use super::openapi::{AuthErrors, BodyErrors, StoreErrors};
use super::schema::{DeleteRequest, SuccessMessage};
use super::AppState;
use crate::domain::delete::parse_delete;

/// Braze's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResponse {
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
    /// Profiles deleted (external ids that matched no profile are not counted).
    #[schema(minimum = 0)]
    pub deleted: usize,
}

/// Deletes the profiles that exist and answers how many that was.
#[utoipa::path(
    post,
    path = "/users/delete",
    tag = "users",
    operation_id = "deleteUsers",
    summary = "Delete up to 50 profiles by external id",
    description = "Deletes the profiles with their states and their email and phone. A profile that was the only \
        carrier of an email or phone leaves no orphaned state behind. The change records of deleted profiles are \
        kept, with nothing left that leads back to the person.",
    request_body(content = DeleteRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The profiles are deleted.", body = DeleteResponse),
        BodyErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(UsersDelete::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<UsersDelete>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<DeleteResponse>), ApiError> {
    let external_ids = parse_delete(&body)?;
    let applied = state.store.delete_profiles(caller.key.workspace_id, external_ids).await?;
    Ok((StatusCode::CREATED, Json(DeleteResponse { message: "success", deleted: applied.profiles_deleted })))
}
