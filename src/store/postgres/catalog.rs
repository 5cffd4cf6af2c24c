//! The catalog (workspaces, keys, groups) in PostgreSQL: the same serde JSON the embedded store
//! keeps, one row per item, read whole at start-up.

use tokio_postgres::IsolationLevel;

use super::retry::{self, BoxFuture, TxError};
use super::PostgresStore;
use crate::domain::ids::WorkspaceId;
use crate::domain::tenant::{Admission, ApiKey, Group, Workspace, WorkspaceChange};
use crate::store::{CatalogData, StoreError};

/// `catalog.kind` of a workspace, an API key and a group.
pub(super) const WORKSPACE: i16 = 1;
pub(super) const API_KEY: i16 = 2;
pub(super) const GROUP: i16 = 3;

impl PostgresStore {
    /// See [`crate::store::Store::load_catalog`].
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        let client = self.client().await?;
        read_catalog(&**client).await
    }

    /// See [`crate::store::Store::put_workspace`].
    pub async fn put_workspace(&self, workspace: &Workspace) -> Result<(), StoreError> {
        self.put(WORKSPACE, workspace.id.0, serde_json::to_string(workspace)).await
    }

    /// See [`crate::store::Store::put_api_key`].
    pub async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.put(API_KEY, key.id.0, serde_json::to_string(key)).await
    }

    /// See [`crate::store::Store::put_group`].
    pub async fn put_group(&self, group: &Group) -> Result<(), StoreError> {
        self.put(GROUP, group.id.0, serde_json::to_string(group)).await
    }

    /// See [`crate::store::Store::insert_workspace`].
    pub async fn insert_workspace(&self, workspace: &Workspace, admission: &Admission) -> Result<(), StoreError> {
        self.insert(WORKSPACE, workspace.id.0, serde_json::to_string(workspace), admission).await
    }

    /// See [`crate::store::Store::insert_group`].
    pub async fn insert_group(&self, group: &Group, admission: &Admission) -> Result<(), StoreError> {
        self.insert(GROUP, group.id.0, serde_json::to_string(group), admission).await
    }

    /// Inserts an item if `admission` holds against the workspaces and groups stored, in one
    /// SERIALIZABLE transaction: of two processes inserting colliding items at once, one
    /// fails to serialize, runs again, and then sees the other's item.
    async fn insert(
        &self,
        kind: i16,
        id: uuid::Uuid,
        body: serde_json::Result<String>,
        admission: &Admission,
    ) -> Result<(), StoreError> {
        let body = body.map_err(not_encoded)?;
        self.transaction(IsolationLevel::Serializable, &((kind, id, body), admission.clone()), admit).await
    }

    /// See [`crate::store::Store::change_workspace`].
    pub async fn change_workspace(&self, id: WorkspaceId, change: &WorkspaceChange) -> Result<Workspace, StoreError> {
        self.transaction(IsolationLevel::Serializable, &(id, change.clone()), change_limit).await
    }

    async fn put(&self, kind: i16, id: uuid::Uuid, body: serde_json::Result<String>) -> Result<(), StoreError> {
        let body = body.map_err(not_encoded)?;
        self.transaction(IsolationLevel::Serializable, &(kind, id, body), upsert).await
    }
}

/// A catalog item that did not encode: a bug, not the database's fault.
fn not_encoded(err: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("a catalog item did not encode: {err}"))
}

/// The whole catalog, in one statement.
async fn read_catalog(client: &impl tokio_postgres::GenericClient) -> Result<CatalogData, StoreError> {
    let rows = client.query(READ_CATALOG, &[]).await.map_err(retry::db_error)?;
    catalog_of(rows)
}

const READ_CATALOG: &str = "SELECT kind, body FROM catalog ORDER BY kind, id";

/// The catalog in `rows` of `kind, body`.
fn catalog_of(rows: Vec<tokio_postgres::Row>) -> Result<CatalogData, StoreError> {
    let mut data = CatalogData::default();
    for row in rows {
        let body: &str = row.get(1);
        let corrupt = |e: serde_json::Error| StoreError::Corrupt { what: "catalog", detail: e.to_string() };
        match row.get::<_, i16>(0) {
            WORKSPACE => data.workspaces.push(serde_json::from_str(body).map_err(corrupt)?),
            API_KEY => data.api_keys.push(serde_json::from_str(body).map_err(corrupt)?),
            GROUP => data.groups.push(serde_json::from_str(body).map_err(corrupt)?),
            other => return Err(StoreError::Corrupt { what: "catalog", detail: format!("unknown kind {other}") }),
        }
    }
    Ok(data)
}

/// One attempt of [`PostgresStore::insert`]: read what is stored, check, insert.
fn admit<'c>(
    tx: &'c tokio_postgres::Transaction<'_>,
    (item, admission): &'c ((i16, uuid::Uuid, String), Admission),
) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        // Read through the transaction, so that a concurrent insert is a serialization failure
        // to retry rather than a collision missed.
        let stored = catalog_of(tx.query(READ_CATALOG, &[]).await?)?;
        admission
            .check(stored.workspaces.iter(), stored.groups.iter())
            .map_err(|reason| TxError::Store(StoreError::Refused(reason)))?;
        upsert(tx, item).await
    })
}

/// One attempt of [`PostgresStore::change_workspace`]: read the stored workspace, change
/// it, write it back.
fn change_limit<'c>(
    tx: &'c tokio_postgres::Transaction<'_>,
    (id, change): &'c (WorkspaceId, WorkspaceChange),
) -> BoxFuture<'c, Result<Workspace, TxError>> {
    Box::pin(async move {
        let row = tx
            .query_opt("SELECT body FROM catalog WHERE kind = $1 AND id = $2", &[&WORKSPACE, &id.0])
            .await?
            .ok_or_else(|| StoreError::Refused(format!("workspace {id} no longer exists")))?;
        let mut workspace: Workspace = serde_json::from_str(row.get(0))
            .map_err(|e| StoreError::Corrupt { what: "catalog", detail: e.to_string() })?;
        change.apply(&mut workspace).map_err(StoreError::Refused)?;
        let body = serde_json::to_string(&workspace).map_err(not_encoded)?;
        upsert(tx, &(WORKSPACE, id.0, body)).await?;
        Ok(workspace)
    })
}

fn upsert<'c>(
    tx: &'c tokio_postgres::Transaction<'_>,
    item: &'c (i16, uuid::Uuid, String),
) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        tx.execute(
            "INSERT INTO catalog (kind, id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
            &[&item.0, &item.1, &item.2],
        )
        .await?;
        Ok(())
    })
}
