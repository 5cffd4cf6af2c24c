//! Reads: profiles with their states, the carriers and orphaned states of emails and phones,
//! and the change records. Each profile read is one statement (one snapshot) joining the
//! profiles with their states; results come in the embedded store's orders (profiles by
//! internal id, states by group id, change records by id), UUIDs comparing bytewise in both.

use std::collections::HashMap;

use tokio_postgres::{GenericClient, IsolationLevel, Row};
use uuid::Uuid;

use super::retry::{self, BoxFuture, TxError};
use super::{contact_kind, state_from, PostgresStore, EMAIL, PHONE};
use crate::domain::change::{ChangeRecord, Contact};
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{GroupId, ProfileId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::store::{ContactView, ProfileView, StateView, StoreError};

const PROFILE_COLUMNS: &str = "p.profile_id, p.external_id, p.email, p.phone, s.group_id, s.state, s.updated_at";
const STATES_JOIN: &str = "LEFT JOIN states s ON s.workspace_id = p.workspace_id AND s.profile_id = p.profile_id";

/// Rows of [`PROFILE_COLUMNS`] (ordered by profile id, then group id) as profile views.
fn profile_views(rows: &[Row]) -> Result<Vec<ProfileView>, StoreError> {
    let mut out: Vec<ProfileView> = Vec::new();
    for row in rows {
        let id = ProfileId(row.get(0));
        if out.last().is_none_or(|last| last.id != id) {
            out.push(ProfileView {
                id,
                external_id: Some(row.get(1)),
                email: row.get(2),
                phone: row.get(3),
                states: Vec::new(),
            });
        }
        if let Some(group) = row.get::<_, Option<Uuid>>(4) {
            let view = StateView {
                group_id: GroupId(group),
                state: state_from(row.get(5))?,
                updated_at: Timestamp(row.get(6)),
            };
            out.last_mut().expect("pushed above").states.push(view);
        }
    }
    Ok(out)
}

/// The profiles of `external_ids` that exist, with their states, by profile id.
pub async fn profiles_by_external_ids(
    client: &impl GenericClient,
    ws: WorkspaceId,
    external_ids: &[&str],
) -> Result<Vec<ProfileView>, TxError> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM profiles p {STATES_JOIN} \
         WHERE p.workspace_id = $1 AND p.external_id = ANY($2) ORDER BY p.profile_id, s.group_id"
    );
    let rows = client.query(&sql, &[&ws.0, &external_ids]).await?;
    Ok(profile_views(&rows)?)
}

/// The profiles carrying any of `identifiers` (emails when `kind` is email, else phones).
pub async fn carriers(
    client: &impl GenericClient,
    ws: WorkspaceId,
    kind: i16,
    identifiers: &[&str],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let column = if kind == EMAIL { "email" } else { "phone" };
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM profiles p {STATES_JOIN} \
         WHERE p.workspace_id = $1 AND p.{column} = ANY($2) ORDER BY p.profile_id, s.group_id"
    );
    client.query(&sql, &[&ws.0, &identifiers]).await
}

/// The orphaned states of `identifiers` of `kind`: (identifier, state), by identifier then group.
pub async fn orphans(
    client: &impl GenericClient,
    ws: WorkspaceId,
    kind: i16,
    identifiers: &[&str],
) -> Result<Vec<(String, StateView)>, TxError> {
    let rows = client
        .query(
            "SELECT identifier, group_id, state, updated_at FROM orphans \
             WHERE workspace_id = $1 AND kind = $2 AND identifier = ANY($3) ORDER BY identifier, group_id",
            &[&ws.0, &kind, &identifiers],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let view = StateView {
            group_id: GroupId(row.get(1)),
            state: state_from(row.get(2))?,
            updated_at: Timestamp(row.get(3)),
        };
        out.push((row.get(0), view));
    }
    Ok(out)
}

/// What is known of each contact: carriers, else orphaned states.
async fn contact_views(
    client: &impl GenericClient,
    ws: WorkspaceId,
    contacts: &[Contact],
) -> Result<Vec<ContactView>, TxError> {
    let mut carried: HashMap<(i16, String), Vec<ProfileView>> = HashMap::new();
    let mut orphaned: HashMap<(i16, String), Vec<StateView>> = HashMap::new();
    for kind in [EMAIL, PHONE] {
        let asked: Vec<&str> = contacts.iter().filter(|c| contact_kind(c) == kind).map(Contact::as_str).collect();
        if asked.is_empty() {
            continue;
        }
        let rows = carriers(client, ws, kind, &asked).await?;
        for view in profile_views(&rows)? {
            let text = if kind == EMAIL { view.email.clone() } else { view.phone.clone() };
            carried.entry((kind, text.unwrap_or_default())).or_default().push(view);
        }
        let lonely: Vec<&str> = asked.into_iter().filter(|a| !carried.contains_key(&(kind, a.to_string()))).collect();
        if !lonely.is_empty() {
            for (identifier, view) in orphans(client, ws, kind, &lonely).await? {
                orphaned.entry((kind, identifier)).or_default().push(view);
            }
        }
    }
    Ok(contacts
        .iter()
        .map(|contact| {
            let key = (contact_kind(contact), contact.as_str().to_string());
            ContactView {
                carriers: carried.get(&key).cloned().unwrap_or_default(),
                orphans: orphaned.get(&key).cloned().unwrap_or_default(),
            }
        })
        .collect())
}

fn read_contacts_attempt<'c>(
    tx: &'c tokio_postgres::Transaction<'_>,
    (ws, contacts): &'c (WorkspaceId, Vec<Contact>),
) -> BoxFuture<'c, Result<Vec<ContactView>, TxError>> {
    Box::pin(contact_views(tx, *ws, contacts))
}

/// All of a workspace's change records, by id.
async fn changes(client: &impl GenericClient, ws: WorkspaceId) -> Result<Vec<ChangeRecord>, TxError> {
    let sql =
        format!("SELECT {} FROM changes WHERE workspace_id = $1 ORDER BY change_id", super::ledger::CHANGE_COLUMNS);
    let rows = client.query(&sql, &[&ws.0]).await?;
    rows.iter().map(|row| super::ledger::change_from_row(row).map_err(TxError::Store)).collect()
}

impl PostgresStore {
    /// See [`crate::store::Store::read_profiles`].
    pub async fn read_profiles(
        &self,
        ws: WorkspaceId,
        external_ids: &[&ExternalId],
    ) -> Result<Vec<Option<ProfileView>>, StoreError> {
        let client = self.client().await?;
        let asked: Vec<&str> = external_ids.iter().map(|id| id.as_str()).collect();
        let found = profiles_by_external_ids(&**client, ws, &asked).await.map_err(TxError::into_store_error)?;
        Ok(asked.iter().map(|id| found.iter().find(|p| p.external_id.as_deref() == Some(*id)).cloned()).collect())
    }

    /// See [`crate::store::Store::read_contacts`].
    pub async fn read_contacts(&self, ws: WorkspaceId, contacts: &[&Contact]) -> Result<Vec<ContactView>, StoreError> {
        let data = (ws, contacts.iter().map(|c| (*c).clone()).collect::<Vec<_>>());
        self.transaction(IsolationLevel::RepeatableRead, &data, read_contacts_attempt).await
    }

    /// A page of `GET /email/unsubscribes`: a range of `email_unsubscribes_by_time`, or the
    /// row of one email.
    pub async fn unsubscribes(
        &self,
        ws: WorkspaceId,
        query: &crate::domain::email::UnsubscribesQuery,
    ) -> Result<Vec<crate::domain::email::Unsubscribe>, StoreError> {
        let client = self.client().await?;
        let since = query.since.map_or(0, |t| t.0);
        let email = query.email.as_ref().map(|e| e.as_str());
        let order = if query.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT email, at FROM email_unsubscribes WHERE workspace_id = $1 AND at >= $2 AND at < $3 \
             AND ($4::text IS NULL OR email = $4) ORDER BY at {order}, email {order} LIMIT $5 OFFSET $6"
        );
        let (limit, offset) = (query.limit as i64, query.offset as i64);
        let rows = client
            .query(&sql, &[&ws.0, &since, &query.until.0, &email, &limit, &offset])
            .await
            .map_err(retry::db_error)?;
        Ok(rows
            .iter()
            .map(|row| crate::domain::email::Unsubscribe { email: row.get(0), at: Timestamp(row.get(1)) })
            .collect())
    }

    /// See [`crate::store::Inspect::profile_by_external_id`].
    pub async fn profile_by_external_id(
        &self,
        ws: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ProfileView>, StoreError> {
        let (client, driver) = self.inspection_client().await?;
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles p {STATES_JOIN} \
             WHERE p.workspace_id = $1 AND p.external_id = $2 ORDER BY p.profile_id, s.group_id"
        );
        let rows = client.query(&sql, &[&ws.0, &external_id]).await.map_err(retry::db_error);
        finish(client, driver).await;
        Ok(profile_views(&rows?)?.into_iter().next())
    }

    /// See [`crate::store::Inspect::profiles_by_contact`].
    pub async fn profiles_by_contact(
        &self,
        ws: WorkspaceId,
        contact: &Contact,
    ) -> Result<Vec<ProfileView>, StoreError> {
        let (client, driver) = self.inspection_client().await?;
        let rows = carriers(&client, ws, contact_kind(contact), &[contact.as_str()]).await.map_err(retry::db_error);
        finish(client, driver).await;
        profile_views(&rows?)
    }

    /// See [`crate::store::Inspect::orphan_states`].
    pub async fn orphan_states(&self, ws: WorkspaceId, contact: &Contact) -> Result<Vec<StateView>, StoreError> {
        let (client, driver) = self.inspection_client().await?;
        let found = orphans(&client, ws, contact_kind(contact), &[contact.as_str()]).await;
        finish(client, driver).await;
        Ok(found.map_err(TxError::into_store_error)?.into_iter().map(|(_, view)| view).collect())
    }

    /// See [`crate::store::Inspect::change_records`].
    pub async fn change_records(&self, ws: WorkspaceId) -> Result<Vec<ChangeRecord>, StoreError> {
        let (client, driver) = self.inspection_client().await?;
        let found = changes(&client, ws).await;
        finish(client, driver).await;
        found.map_err(TxError::into_store_error)
    }
}

/// Closes a connection of its own and waits for its driver to end.
async fn finish(client: tokio_postgres::Client, driver: tokio::task::JoinHandle<()>) {
    drop(client);
    let _ = driver.await;
}

/// A profile view as the track planner takes it.
pub fn profile_snapshot(view: ProfileView) -> crate::domain::track::ProfileSnapshot {
    crate::domain::track::ProfileSnapshot { id: view.id, email: view.email, phone: view.phone, states: view.states }
}
