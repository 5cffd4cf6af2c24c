//! `GET /subscription/user/status`: the profiles matching up to 50 external ids, emails or
//! phones, each with every group it has a state in. Reads only.

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{Authorized, GroupsGet, Required};
use super::error::ApiError;
use super::openapi::{AuthErrors, QueryErrors, StoreErrors};
use super::schema::{SubscriptionStatus, SuccessMessage, UserStatusQuery};
use super::AppState;
use crate::catalog::Catalog;
use crate::domain::change::Contact;
use crate::domain::ids::WorkspaceId;
use crate::domain::read::{self, ListedUser, QueryParams, ReadState};
use crate::domain::subscription::{Channel, StateView};

/// One listed user: a profile, or an email/phone no profile carries that holds orphaned state.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserEntry {
    /// Email, normalized.
    #[schema(required = true, format = Email)]
    pub email: Option<String>,
    /// Phone, E.164.
    #[schema(required = true, examples("+12223334444"))]
    pub phone: Option<String>,
    /// External id (`null` for an orphaned identifier).
    #[schema(required = true)]
    pub external_id: Option<String>,
    /// Groups it has a state in, by name.
    pub subscription_groups: Vec<GroupEntry>,
}

/// One group state of a listed user.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupEntry {
    /// Group id.
    pub id: String,
    /// Group name.
    pub name: String,
    /// `email`, `sms` or `whatsapp`.
    #[schema(value_type = Channel)]
    pub channel: &'static str,
    /// `Subscribed` or `Unsubscribed`.
    #[schema(value_type = SubscriptionStatus)]
    pub status: &'static str,
}

/// The answer: one page of the matched users and how many matched in all.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStatusResponse {
    /// The page.
    pub users: Vec<UserEntry>,
    /// Users matched before `limit` and `offset`.
    #[schema(minimum = 0)]
    pub total_count: usize,
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
}

/// Lists the matched users: external ids first, then emails, then phones, in the order asked;
/// a profile matched twice is listed once.
#[utoipa::path(
    get,
    path = "/subscription/user/status",
    tag = "subscriptions",
    operation_id = "getUserSubscriptionStatus",
    summary = "List users with their subscription group states",
    description = "Lists the users matched by the identifiers asked, external ids first, then emails, then phones, \
        each profile once; several profiles sharing an email or phone are listed separately, in creation order. An \
        email or phone carried by no profile but holding orphaned state is listed as one user with `external_id: \
        null`. Each user lists only the groups it has a state in (archived groups included), by name. Reads only.\n\n\
        At least one of `external_id`, `email` and `phone` is needed; several are allowed and their matches united. \
        Each may be repeated (`email=a&email=b`) or bracketed (`email[]=a`); unknown parameters are ignored.",
    params(UserStatusQuery),
    responses(
        (status = 200, description = "One page of the matched users.", body = UserStatusResponse),
        QueryErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(GroupsGet::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<GroupsGet>,
    uri: Uri,
) -> Result<Json<UserStatusResponse>, ApiError> {
    let workspace = caller.key.workspace_id;
    let params = QueryParams::parse(uri.query())?;
    let query = read::parse_user_status_query(&params)?;
    if let Some(at) = super::as_of::at_param(&params)? {
        return Ok(Json(super::as_of::user_status_at(&state, workspace, &query, at).await?));
    }

    let ids: Vec<_> = query.identifiers.external_ids.iter().map(|asked| &asked.value).collect();
    let profiles = state.store.read_profiles(workspace, &ids).await?;
    let contacts = query.identifiers.distinct_contacts();
    let views = state.store.read_contacts(workspace, &contacts.iter().collect::<Vec<_>>()).await?;
    let now = state.clock.now();
    let contacts = contacts
        .into_iter()
        .zip(views)
        .map(|(contact, mut view)| {
            view.orphans = read::live_orphans(view.orphans, now, state.orphan_retention);
            (contact, view)
        })
        .collect();

    let (page, total_count) = query.page(read::list_users(profiles, contacts));
    let users = page.into_iter().map(|user| entry(&state.catalog, workspace, user)).collect();
    Ok(Json(UserStatusResponse { users, total_count, message: "success" }))
}

/// How a listed user is answered.
fn entry(catalog: &Catalog, workspace: WorkspaceId, user: ListedUser) -> UserEntry {
    match user {
        ListedUser::Profile(profile) => UserEntry {
            subscription_groups: groups(catalog, workspace, &profile.states),
            email: profile.email,
            phone: profile.phone,
            external_id: profile.external_id,
        },
        ListedUser::Orphan { contact, states } => {
            let (email, phone) = match contact {
                Contact::Email(e) => (Some(e.as_str().to_string()), None),
                Contact::Phone(p) => (None, Some(p.as_str().to_string())),
            };
            UserEntry { email, phone, external_id: None, subscription_groups: groups(catalog, workspace, &states) }
        }
    }
}

/// The groups of `states`, named and sorted by name. A state of a group that no longer exists
/// in the catalog (it cannot be deleted today) is left out rather than shown nameless.
pub(super) fn groups(catalog: &Catalog, workspace: WorkspaceId, states: &[StateView]) -> Vec<GroupEntry> {
    let mut out: Vec<GroupEntry> = states
        .iter()
        .filter_map(|s| {
            let group = catalog.group(workspace, s.group_id)?;
            Some(GroupEntry {
                id: group.id.to_string(),
                name: group.name,
                channel: group.channel.as_str(),
                status: ReadState::of(Some(s.state)).as_str(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    out
}
