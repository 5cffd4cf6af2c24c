//! `GET /subscription/status/get`: one group's state for up to 50 external ids, or emails, or
//! phones, as `Subscribed`, `Unsubscribed` or `Unknown`. Reads only.

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::auth::{Authorized, Required, StatusGet};
use super::error::ApiError;
use super::openapi::{AuthErrors, QueryErrors, StoreErrors};
use super::schema::{StatusGetQuery, SuccessMessage};
use super::AppState;
use crate::domain::read::{self, QueryParams, ReadState};

/// The answer, `status` first as Braze writes it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(
    description = "The state of each identifier asked, in the group asked.",
    examples(json!({"status": {"user-123": "Subscribed", "user-456": "Unknown"}, "message": "success"}))
)]
pub struct StatusResponse {
    /// Identifier as asked to `Subscribed`, `Unsubscribed` or `Unknown`, in the order asked.
    #[schema(value_type = HashMap<String, ReadState>)]
    pub status: StatusMap,
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
}

/// A JSON object whose keys keep the order the caller asked them in.
#[derive(Debug, Default)]
pub struct StatusMap(pub Vec<(String, ReadState)>);

impl StatusMap {
    pub(super) fn insert(&mut self, key: String, state: ReadState) {
        self.0.push((key, state));
    }
}

impl Serialize for StatusMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, state) in &self.0 {
            map.serialize_entry(key, state.as_str())?;
        }
        map.end()
    }
}

/// Answers `{"status": {identifier: state}, "message": "success"}`, one key per identifier
/// asked, as the caller wrote it.
#[utoipa::path(
    get,
    path = "/subscription/status/get",
    tag = "subscriptions",
    operation_id = "getSubscriptionStatus",
    summary = "Read one group's state for up to 50 users",
    description = "Answers one key per identifier asked, as the caller wrote it (a phone's `+` restored): \
        `Subscribed`, `Unsubscribed` or `Unknown`. An email or phone carried by several profiles answers the most \
        restrictive of their states; one carried by none answers its orphaned state, if any; an unknown external id \
        answers `Unknown`. Reads only: nothing is created or written.\n\n\
        When `external_id` is given, only external ids are looked up and `email` and `phone` are ignored; otherwise \
        `email` or `phone`, not both. Each identifier parameter may be repeated (`email=a&email=b`) or bracketed \
        (`email[]=a`); unknown parameters are ignored.",
    params(StatusGetQuery),
    responses(
        (status = 200, description = "The states.", body = StatusResponse),
        QueryErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(StatusGet::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<StatusGet>,
    uri: Uri,
) -> Result<Json<StatusResponse>, ApiError> {
    let workspace = caller.key.workspace_id;
    let params = QueryParams::parse(uri.query())?;
    let query = state.catalog.with_groups(workspace, |groups| read::parse_status_query(&params, groups))?;
    if let Some(at) = super::as_of::at_param(&params)? {
        return Ok(Json(super::as_of::status_at(&state, workspace, &query, at).await?));
    }
    let group = query.group_id;
    let mut status = StatusMap::default();

    let ids: Vec<_> = query.identifiers.external_ids.iter().map(|asked| &asked.value).collect();
    let profiles = state.store.read_profiles(workspace, &ids).await?;
    for (asked, profile) in query.identifiers.external_ids.iter().zip(profiles) {
        status.insert(asked.written.clone(), read::profile_answer(profile.as_ref(), group));
    }

    let asked: Vec<_> = query.identifiers.contacts().collect();
    let contacts: Vec<_> = asked.iter().map(|(_, contact)| contact).collect();
    let views = state.store.read_contacts(workspace, &contacts).await?;
    let now = state.clock.now();
    for ((written, _), mut view) in asked.iter().zip(views) {
        view.orphans = read::live_orphans(view.orphans, now, state.orphan_retention);
        status.insert((*written).to_string(), read::contact_answer(&view, group));
    }
    Ok(Json(StatusResponse { status, message: "success" }))
}
