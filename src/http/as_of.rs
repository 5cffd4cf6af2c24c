//! `at=<RFC 3339>` on `GET /subscription/status/get` and `GET /subscription/user/status`: the
//! same answers as of an instant, computed from the ledger rather than from the current states.
//!
//! The subjects are the ones the identifiers name *now* (profiles by external id, carriers of
//! an email or phone, else its orphaned state); their state at `at` is the latest record of
//! each group at or before `at` ([`crate::domain::history::states_at`]). So `at` = now answers
//! what the live read answers, a deleted profile is unknown at any `at` (nothing names it any
//! more), and `at` before a subject's first record answers `Unknown` (no groups).

use std::collections::HashSet;

use super::error::ApiError;
use super::status_get::{StatusMap, StatusResponse};
use super::user_status::{groups, UserEntry, UserStatusResponse};
use super::AppState;
use crate::domain::change::Contact;
use crate::domain::history::{self, Window};
use crate::domain::ids::{GroupId, ProfileId, WorkspaceId};
use crate::domain::read::{IdentifierQuery, QueryParams, ReadState, StatusQuery, UserStatusQuery};
use crate::domain::time::Timestamp;
use crate::domain::validation::Problems;
use crate::store::{LedgerRead, LedgerSources};

/// The `at` parameter, if given; a bad one is a 400 naming it.
pub fn at_param(params: &QueryParams) -> Result<Option<Timestamp>, ApiError> {
    let mut problems = Problems::default();
    let at = history::time_param(params, "at", &mut problems);
    if problems.is_empty() {
        Ok(at)
    } else {
        Err(problems.into())
    }
}

/// The profiles and contacts the identifiers name now, and every record of theirs up to `at`.
struct Named {
    /// Per external id asked: its profile, if it exists.
    profiles: Vec<Option<crate::store::ProfileView>>,
    /// Per contact asked: what is known of it now.
    contacts: Vec<(Contact, crate::store::ContactView)>,
    records: Vec<crate::domain::change::ChangeRecord>,
}

async fn named(
    state: &AppState,
    workspace: WorkspaceId,
    identifiers: &IdentifierQuery,
    contacts: Vec<Contact>,
    group: Option<GroupId>,
    at: Timestamp,
) -> Result<Named, ApiError> {
    let ids: Vec<_> = identifiers.external_ids.iter().map(|asked| &asked.value).collect();
    let profiles = state.store.read_profiles(workspace, &ids).await?;
    let views = state.store.read_contacts(workspace, &contacts.iter().collect::<Vec<_>>()).await?;
    let mut seen = HashSet::new();
    let mut profile_ids: Vec<ProfileId> = Vec::new();
    let mut orphans = Vec::new();
    for profile in profiles.iter().flatten() {
        if seen.insert(profile.id) {
            profile_ids.push(profile.id);
        }
    }
    for (contact, view) in contacts.iter().zip(&views) {
        if view.carriers.is_empty() {
            orphans.push(contact.clone());
        }
        for carrier in &view.carriers {
            if seen.insert(carrier.id) {
                profile_ids.push(carrier.id);
            }
        }
    }
    // Profiles' records up to `at`; orphaned identifiers' all, since what came after `at`
    // tells whether an orphaned state was still held then (`history::orphan_states_at`).
    let read = LedgerRead {
        sources: LedgerSources::Subjects { profiles: profile_ids, contacts: Vec::new() },
        groups: group.map(|g| vec![g]),
        window: Window::up_to(at),
        limit: usize::MAX,
    };
    let mut records = state.store.ledger_records(workspace, read).await?;
    if !orphans.is_empty() {
        let read = LedgerRead {
            sources: LedgerSources::Subjects { profiles: Vec::new(), contacts: orphans },
            groups: group.map(|g| vec![g]),
            window: Window::default(),
            limit: usize::MAX,
        };
        records.extend(state.store.ledger_records(workspace, read).await?);
    }
    Ok(Named { profiles, contacts: contacts.into_iter().zip(views).collect(), records })
}

/// `GET /subscription/status/get` as of `at`.
pub async fn status_at(
    state: &AppState,
    workspace: WorkspaceId,
    query: &StatusQuery,
    at: Timestamp,
) -> Result<StatusResponse, ApiError> {
    let group = query.group_id;
    let asked: Vec<(&str, Contact)> = query.identifiers.contacts().collect();
    let contacts = asked.iter().map(|(_, c)| c.clone()).collect();
    let named = named(state, workspace, &query.identifiers, contacts, Some(group), at).await?;
    let mut status = StatusMap::default();
    for (asked, profile) in query.identifiers.external_ids.iter().zip(&named.profiles) {
        let found = profile.as_ref().and_then(|p| history::profile_state_at(&named.records, p.id, group, at));
        status.insert(asked.written.clone(), ReadState::of(found));
    }
    for ((written, _), (contact, view)) in asked.iter().zip(&named.contacts) {
        let carriers: Vec<ProfileId> = view.carriers.iter().map(|p| p.id).collect();
        let answer = history::contact_state_at(
            &named.records,
            &carriers,
            contact,
            group,
            at,
            &view.orphans,
            state.clock.now(),
            state.orphan_retention,
        );
        status.insert((*written).to_string(), answer);
    }
    Ok(StatusResponse { status, message: "success" })
}

/// `GET /subscription/user/status` as of `at`: the users the identifiers match now, each with
/// the groups it had a state in at `at`.
pub async fn user_status_at(
    state: &AppState,
    workspace: WorkspaceId,
    query: &UserStatusQuery,
    at: Timestamp,
) -> Result<UserStatusResponse, ApiError> {
    // Two spellings of one email are one user, as in the live read.
    let mut seen = HashSet::new();
    let contacts: Vec<Contact> =
        query.identifiers.contacts().map(|(_, contact)| contact).filter(|c| seen.insert(c.clone())).collect();
    let named = named(state, workspace, &query.identifiers, contacts, None, at).await?;
    let mut users = Vec::new();
    let mut listed = HashSet::new();
    let mut list_profile = |profile: &crate::store::ProfileView, users: &mut Vec<UserEntry>| {
        if listed.insert(profile.id) {
            let states = history::states_at(&history::of_profile(&named.records, profile.id), at);
            users.push(UserEntry {
                subscription_groups: groups(&state.catalog, workspace, &states),
                email: profile.email.clone(),
                phone: profile.phone.clone(),
                external_id: profile.external_id.clone(),
            });
        }
    };
    for profile in named.profiles.iter().flatten() {
        list_profile(profile, &mut users);
    }
    for (contact, view) in &named.contacts {
        if view.carriers.is_empty() {
            let orphans = history::orphan_states_at(
                &history::of_orphan(&named.records, contact),
                at,
                &view.orphans,
                state.clock.now(),
                state.orphan_retention,
            );
            if !orphans.is_empty() {
                let (email, phone) = match contact {
                    Contact::Email(e) => (Some(e.as_str().to_string()), None),
                    Contact::Phone(p) => (None, Some(p.as_str().to_string())),
                };
                users.push(UserEntry {
                    email,
                    phone,
                    external_id: None,
                    subscription_groups: groups(&state.catalog, workspace, &orphans),
                });
            }
        }
        for profile in &view.carriers {
            list_profile(profile, &mut users);
        }
    }
    let total_count = users.len();
    let users = users.into_iter().skip(query.offset).take(query.limit).collect();
    Ok(UserStatusResponse { users, total_count, message: "success" })
}
