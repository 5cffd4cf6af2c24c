//! `GET /consent/history`: the change records of one subject, oldest first, a page at a time.
//! Reads only. Whose records a subject has, and how paging stays stable while writes go on,
//! is written once in [`crate::domain::history`].

use std::collections::HashMap;

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::{Authorized, HistoryGet, Required};
use super::error::ApiError;
use super::openapi::{AuthErrors, QueryErrors, StoreErrors};
use super::schema::SuccessMessage;
use super::AppState;
use crate::catalog::Catalog;
use crate::domain::change::{ChangeRecord, Contact, Subject};
use crate::domain::history::{self, HistoryQuery, HistorySubject, LedgerRecord, Window};
use crate::domain::ids::{ProfileId, WorkspaceId};
use crate::domain::read::QueryParams;
use crate::domain::subscription::Channel;
use crate::store::{LedgerRead, LedgerSources, ProfileView};

/// The query of `GET /consent/history`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query, style = Form)]
pub struct HistoryParams {
    /// The subject by external id: its profile's records and its current email's and phone's
    /// orphaned records. Exactly one of `external_id`, `email`, `phone`, with one value.
    pub external_id: Option<String>,
    /// The subject by email: the records of every profile carrying it and its orphaned records.
    pub email: Option<String>,
    /// The subject by phone (E.164; encode the `+` as `%2B`): as `email`.
    pub phone: Option<String>,
    /// Only these groups' records: group ids of the workspace, or `global` for the global email
    /// state. Repeatable.
    #[param(explode, nullable = false)]
    pub subscription_group_id: Option<Vec<String>>,
    /// Only records at or after this time (RFC 3339, any offset).
    #[param(nullable = false, format = DateTime)]
    pub since: Option<String>,
    /// Only records before this time (RFC 3339, any offset).
    #[param(nullable = false, format = DateTime)]
    pub until: Option<String>,
    /// Records per page.
    #[param(nullable = false, minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, with the same subject and filters.
    #[param(nullable = false)]
    pub cursor: Option<String>,
}

/// One page of a subject's records.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    /// `success`.
    #[schema(value_type = SuccessMessage)]
    pub message: &'static str,
    /// The page, oldest first.
    pub records: Vec<LedgerRecord>,
    /// Where the next page starts; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Answers a page of the subject's records.
#[utoipa::path(
    get,
    path = "/consent/history",
    tag = "consent",
    operation_id = "getConsentHistory",
    summary = "Read one subject's consent history",
    description = "The change records of one subject, oldest first (by time, then record id), `limit` at a time. \
        Name the subject by exactly one of `external_id` (its profile's records, and the orphaned records of the \
        email and phone it carries now: the states it inherited), `email` or `phone` (the records of every profile \
        carrying it now, and its own orphaned records). An unknown subject has no records: `records: []`. A deleted \
        profile is unknown.\n\n\
        Paging: pass `next_cursor` back as `cursor` with the same subject and filters; every record that matched when \
        the first page was read appears exactly once across the pages, whatever is written meanwhile. A cursor that \
        was not handed out, or belongs to another query, answers 400.",
    params(HistoryParams),
    responses(
        (status = 200, description = "One page of records.", body = HistoryResponse),
        QueryErrors, AuthErrors, StoreErrors,
    ),
    security(("bearerAuth" = [])),
    extensions(("x-permission" = json!(HistoryGet::PERMISSION.as_str()))),
)]
pub async fn handle(
    State(state): State<AppState>,
    caller: Authorized<HistoryGet>,
    uri: Uri,
) -> Result<Json<HistoryResponse>, ApiError> {
    let workspace = caller.key.workspace_id;
    let params = QueryParams::parse(uri.query())?;
    let query = state.catalog.with_groups(workspace, |groups| history::parse_history_query(&params, groups))?;
    let subject = Subjects::resolve(&state, workspace, &query.subject).await?;
    let fetched = state.store.ledger_records(workspace, subject.read(&query, query.limit + 1)).await?;
    let (records, last) = history::page(fetched, query.limit);
    let records = subject.views(&state.catalog, workspace, &records);
    let next_cursor = last.map(|last| query.cursor_after(last));
    Ok(Json(HistoryResponse { message: "success", records, next_cursor }))
}

/// A subject resolved to what the store indexes: its profiles (as they are now) and the
/// emails and phones whose orphaned records belong to it.
pub struct Subjects {
    /// The profiles: the external id's, or every carrier of the email or phone.
    pub profiles: Vec<ProfileView>,
    /// The orphaned identifiers.
    pub contacts: Vec<Contact>,
}

impl Subjects {
    /// Looks the subject up as it is identified now (see [`crate::domain::history`]).
    pub async fn resolve(state: &AppState, workspace: WorkspaceId, subject: &HistorySubject) -> Result<Self, ApiError> {
        let (profiles, contacts) = state.store.ledger_subject(workspace, subject).await?;
        Ok(Subjects { profiles, contacts })
    }

    /// Whether the subject is unknown: no profile and no identifier to look under.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty() && self.contacts.is_empty()
    }

    /// The store read of this subject's records for `query`, `limit` of them.
    pub fn read(&self, query: &HistoryQuery, limit: usize) -> LedgerRead {
        LedgerRead {
            sources: self.sources(),
            groups: query.groups.as_ref().map(|f| f.storage_ids()),
            window: query.window,
            limit,
        }
    }

    /// Every record of the subject in `window`.
    pub fn read_all(&self, window: Window) -> LedgerRead {
        LedgerRead { sources: self.sources(), groups: None, window, limit: usize::MAX }
    }

    fn sources(&self) -> LedgerSources {
        LedgerSources::Subjects {
            profiles: self.profiles.iter().map(|p| p.id).collect(),
            contacts: self.contacts.clone(),
        }
    }

    /// The records as shown, with their profiles' external ids and their groups' channels.
    pub fn views(&self, catalog: &Catalog, workspace: WorkspaceId, records: &[ChangeRecord]) -> Vec<LedgerRecord> {
        let external_ids: HashMap<ProfileId, &str> =
            self.profiles.iter().filter_map(|p| Some((p.id, p.external_id.as_deref()?))).collect();
        records
            .iter()
            .map(|record| {
                let external_id = match record.subject {
                    Subject::Profile(id) => external_ids.get(&id).copied(),
                    _ => None,
                };
                history::record_view(record, channel_of(catalog, workspace, record), external_id)
            })
            .collect()
    }
}

/// The channel of a record's group. Groups are never deleted, so the catalog has it; were it
/// missing, the record's own identifier still tells the channel's kind.
pub fn channel_of(catalog: &Catalog, workspace: WorkspaceId, record: &ChangeRecord) -> Channel {
    match record.group.group_id().and_then(|id| catalog.group(workspace, id)) {
        Some(group) => group.channel,
        None => match &record.subject {
            Subject::Orphan(_, Contact::Phone(_)) => Channel::Sms,
            _ => Channel::Email,
        },
    }
}
