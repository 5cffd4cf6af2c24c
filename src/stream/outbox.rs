//! The outbox: one small entry per change record, written in the record's own commit.
//!
//! Embedded store: keyspace `outbox`, key = position (u64, big-endian, taken by the single
//! writer in commit order, so key order is ledger order), value = workspace id · change id.
//! PostgreSQL: table `stream_outbox`, one row per destination and record, inserted in the
//! change's transaction (migration 6; see [`super::postgres`]).

use fjall::Keyspace;

use crate::domain::ids::{ChangeId, WorkspaceId};
use crate::store::StoreError;

/// One embedded outbox entry: where it sits and which record it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its position: the order of delivery.
    pub position: i64,
    /// The record's workspace.
    pub workspace_id: WorkspaceId,
    /// The record.
    pub change_id: ChangeId,
}

/// The value of an embedded outbox entry.
pub fn entry(ws: WorkspaceId, change: ChangeId) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(ws.as_bytes());
    out[16..].copy_from_slice(change.as_bytes());
    out
}

/// An embedded outbox entry from its key and value.
pub fn decode(key: &[u8], value: &[u8]) -> Result<OutboxEntry, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt { what: "outbox", detail: detail.into() };
    let position: [u8; 8] = key.try_into().map_err(|_| corrupt("the key is not 8 bytes"))?;
    if value.len() != 32 {
        return Err(corrupt("the value is not 32 bytes"));
    }
    let ws: [u8; 16] = value[..16].try_into().expect("16 bytes");
    let id: [u8; 16] = value[16..].try_into().expect("16 bytes");
    Ok(OutboxEntry {
        position: i64::try_from(u64::from_be_bytes(position)).map_err(|_| corrupt("position out of range"))?,
        workspace_id: WorkspaceId::from_bytes(ws),
        change_id: ChangeId::from_bytes(id),
    })
}

/// The position the writer takes next: one past the last entry, so positions only grow even
/// across restarts.
pub fn next_position(outbox: &Keyspace) -> Result<u64, StoreError> {
    match outbox.last_key_value() {
        Some(item) => {
            let key = item.key()?;
            let position: [u8; 8] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "outbox", detail: "the key is not 8 bytes".into() })?;
            Ok(u64::from_be_bytes(position) + 1)
        }
        None => Ok(0),
    }
}

/// Inserts the outbox rows of `changes`, one per destination of their workspace, in the
/// transaction that inserts them (PostgreSQL). A workspace without destinations writes none.
pub(crate) async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    ws: WorkspaceId,
    changes: &[crate::domain::change::ChangeRecord],
) -> Result<(), tokio_postgres::Error> {
    let ats: Vec<i64> = changes.iter().map(|c| c.at.0).collect();
    let ids: Vec<uuid::Uuid> = changes.iter().map(|c| c.id.0).collect();
    tx.execute(
        "INSERT INTO stream_outbox (destination_id, at, change_id) \
         SELECT d.id, u.at, u.id FROM stream_destinations d CROSS JOIN UNNEST($1::int8[], $2::uuid[]) AS u(at, id) \
         WHERE d.workspace_id = $3 AND NOT d.disabled",
        &[&ats, &ids, &ws.0],
    )
    .await?;
    Ok(())
}
