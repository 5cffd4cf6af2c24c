//! The outbox: one small entry per change record, written in the record's own commit.
//!
//! Embedded store: keyspace `outbox`, key = position (u64, big-endian, taken by the single
//! writer in commit order, so key order is ledger order), value = workspace id · change id
//! (32 bytes), or for a profile's deletion workspace id · event id · profile id · time (56
//! bytes; the length tells them apart, so entries written before deletions had events read
//! as they were).
//! PostgreSQL: table `stream_outbox`, one row per destination and record or deletion,
//! inserted in the change's transaction (migrations 6 and 7; see [`super::postgres`]).

use fjall::Keyspace;

use crate::domain::change::ChangeRecord;
use crate::domain::events::Deletion;
use crate::domain::ids::{ChangeId, ProfileId, WorkspaceId};
use crate::domain::time::Timestamp;
use crate::store::StoreError;

/// What an outbox entry makes deliverable, by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOf {
    /// A change record.
    Change(ChangeId),
    /// A profile's deletion.
    Deletion(Deletion),
}

/// What a destination is sent, read from the outbox: a change record or a deletion.
// Items live briefly, a message's worth (100 at most) at a time: boxing the record would cost
// an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A change record (state changes).
    Change(ChangeRecord),
    /// A profile's deletion.
    Deletion(Deletion),
}

impl Item {
    /// The id its event carries: the record's id, or the deletion's.
    pub fn id(&self) -> ChangeId {
        match self {
            Item::Change(record) => record.id,
            Item::Deletion(deletion) => ChangeId(deletion.id),
        }
    }
}

/// One embedded outbox entry: where it sits and what it makes deliverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its position: the order of delivery.
    pub position: i64,
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The record or deletion.
    pub of: EntryOf,
}

/// The value of an embedded outbox entry of a change record.
pub fn entry(ws: WorkspaceId, change: ChangeId) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(ws.as_bytes());
    out[16..].copy_from_slice(change.as_bytes());
    out
}

/// The value of an embedded outbox entry of a deletion.
pub fn deletion_entry(ws: WorkspaceId, deletion: &Deletion) -> [u8; 56] {
    let mut out = [0u8; 56];
    out[..16].copy_from_slice(ws.as_bytes());
    out[16..32].copy_from_slice(deletion.id.as_bytes());
    out[32..48].copy_from_slice(deletion.profile.0.as_bytes());
    out[48..].copy_from_slice(&deletion.at.0.to_be_bytes());
    out
}

/// An embedded outbox entry from its key and value.
pub fn decode(key: &[u8], value: &[u8]) -> Result<OutboxEntry, StoreError> {
    let corrupt = |detail: &str| StoreError::Corrupt { what: "outbox", detail: detail.into() };
    let position: [u8; 8] = key.try_into().map_err(|_| corrupt("the key is not 8 bytes"))?;
    let uuid = |range: std::ops::Range<usize>| uuid::Uuid::from_bytes(value[range].try_into().expect("16 bytes"));
    let of = match value.len() {
        32 => EntryOf::Change(ChangeId(uuid(16..32))),
        56 => EntryOf::Deletion(Deletion {
            id: uuid(16..32),
            profile: ProfileId(uuid(32..48)),
            at: Timestamp(i64::from_be_bytes(value[48..].try_into().expect("8 bytes"))),
        }),
        _ => return Err(corrupt("the value is neither 32 nor 56 bytes")),
    };
    Ok(OutboxEntry {
        position: i64::try_from(u64::from_be_bytes(position)).map_err(|_| corrupt("position out of range"))?,
        workspace_id: WorkspaceId(uuid(0..16)),
        of,
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
    let rows = tx
        .execute(
            "INSERT INTO stream_outbox (destination_id, at, change_id) \
             SELECT d.id, u.at, u.id FROM stream_destinations d CROSS JOIN UNNEST($1::int8[], $2::uuid[]) AS u(at, id) \
             WHERE d.workspace_id = $3 AND NOT d.disabled",
            &[&ats, &ids, &ws.0],
        )
        .await?;
    notify(tx, rows).await
}

/// Inserts the outbox rows of `deletions`, one per destination of the workspace, in the
/// transaction that deletes the profiles (PostgreSQL).
pub(crate) async fn insert_deletion_rows(
    tx: &tokio_postgres::Transaction<'_>,
    ws: WorkspaceId,
    deletions: &[Deletion],
) -> Result<(), tokio_postgres::Error> {
    if deletions.is_empty() {
        return Ok(());
    }
    let ats: Vec<i64> = deletions.iter().map(|d| d.at.0).collect();
    let ids: Vec<uuid::Uuid> = deletions.iter().map(|d| d.id).collect();
    let profiles: Vec<uuid::Uuid> = deletions.iter().map(|d| d.profile.0).collect();
    let rows = tx
        .execute(
            "INSERT INTO stream_outbox (destination_id, at, change_id, deleted_profile) \
             SELECT d.id, u.at, u.id, u.profile FROM stream_destinations d \
             CROSS JOIN UNNEST($1::int8[], $2::uuid[], $3::uuid[]) AS u(at, id, profile) \
             WHERE d.workspace_id = $4 AND NOT d.disabled",
            &[&ats, &ids, &profiles, &ws.0],
        )
        .await?;
    notify(tx, rows).await
}

/// Wakes every node's relay when the transaction commits, if it made `rows` deliverable:
/// PostgreSQL delivers a `NOTIFY` on commit only, once per transaction and channel.
async fn notify(tx: &tokio_postgres::Transaction<'_>, rows: u64) -> Result<(), tokio_postgres::Error> {
    if rows > 0 {
        tx.execute("SELECT pg_notify($1, '')", &[&super::postgres::CHANNEL]).await?;
    }
    Ok(())
}
