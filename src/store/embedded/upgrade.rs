//! Upgrades a store written by an earlier release, in place, when it is opened.
//!
//! The store's format is kept in `meta` ([`codec::FORMAT_KEY`]); a store without it is format 1
//! (before the ledger). Format 1 → 2 gives every orphaned identifier an internal id (kept in
//! its orphaned states and in its change records), reads every old record as `source: api`,
//! and seals every chain in record order (the `changes` key order: by workspace, then by
//! time-ordered id), writing the chains' index and heads. Records erased before the upgrade
//! lost their identifier, so their chain cannot be known: they form one chain per workspace
//! and group under the nil id, which verifies like any other.
//!
//! The pass commits in chunks and can be interrupted: records already in the new encoding keep
//! their seal (their chain continues from them) and identifiers that already have an id keep
//! it, so a second run finishes the work. The format is written last.

use std::collections::HashMap;

use fjall::PersistMode;
use uuid::Uuid;

use super::{codec, Tables};
use crate::domain::change::Subject;
use crate::domain::ids::{OrphanId, WorkspaceId};
use crate::domain::ledger::{self, ChainHead, ChainKey};
use crate::store::StoreError;

/// Writes per committed chunk.
const CHUNK: usize = 10_000;

/// Brings the store to [`codec::FORMAT`]; returns the format it found.
pub fn run(tables: &Tables) -> Result<u32, StoreError> {
    let found = match tables.meta.get(codec::FORMAT_KEY)? {
        Some(bytes) => u32::from_be_bytes(
            bytes
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "store format", detail: "not 4 bytes".into() })?,
        ),
        None => 1,
    };
    if found > codec::FORMAT {
        return Err(StoreError::Open(format!(
            "this store has format {found}, written by a newer release; this release reads up to format {}",
            codec::FORMAT
        )));
    }
    if found < 2 {
        let empty = tables.profiles.is_empty()? && tables.orphans.is_empty()? && tables.changes.is_empty()?;
        if !empty {
            tracing::info!("upgrading the store to the ledger's format (sealing every change record into its chain)");
            to_ledger(tables)?;
        }
    }
    if found < codec::FORMAT {
        let mut batch = tables.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(&tables.meta, codec::FORMAT_KEY, codec::FORMAT.to_be_bytes());
        batch.commit()?;
    }
    Ok(found)
}

/// Format 1 → 2 (see the module documentation).
fn to_ledger(tables: &Tables) -> Result<(), StoreError> {
    // One internal id per (workspace, orphaned identifier), kept if a previous run gave one.
    let mut ids: HashMap<(WorkspaceId, Vec<u8>), OrphanId> = HashMap::new();
    let mut batch = tables.db.batch().durability(Some(PersistMode::SyncAll));
    let mut pending = 0;
    for item in tables.orphans.iter() {
        let (key, value) = item.into_inner()?;
        let (ws, contact, _) = codec::decode_orphan_key(&key)?;
        let (state, at, id) = codec::decode_orphan_with_id(&value)?;
        let prefix = codec::orphan_prefix(ws, &contact);
        let assigned =
            *ids.entry((ws, prefix)).or_insert_with(|| if id.0.is_nil() { OrphanId::generate() } else { id });
        if assigned != id {
            batch.insert(&tables.orphans, key.to_vec(), codec::encode_orphan(state, at, assigned));
            pending += 1;
            if pending >= CHUNK {
                std::mem::replace(&mut batch, tables.db.batch().durability(Some(PersistMode::SyncAll))).commit()?;
                pending = 0;
            }
        }
    }

    // Chains are sealed in record order; the heads stay in memory until the end (one entry
    // per chain, a few dozen bytes each).
    let mut heads: HashMap<ChainKey, ChainHead> = HashMap::new();
    for item in tables.changes.iter() {
        let (key, value) = item.into_inner()?;
        let mut record = codec::decode_change(&key, &value)?;
        if record.seq != 0 {
            // Sealed by an interrupted run (or written after it): the chain continues from it.
            let head = heads.entry(record.chain()).or_default();
            if record.seq > head.seq {
                head.seq = record.seq;
                head.hash = record.hash;
            }
            continue;
        }
        let ws = record.workspace_id;
        if let Subject::Orphan(id, contact) = &mut record.subject {
            let prefix = codec::orphan_prefix(ws, contact);
            *id = *ids.entry((ws, prefix)).or_insert_with(OrphanId::generate);
        }
        if let Subject::Erased(id) = &mut record.subject {
            *id = OrphanId(Uuid::nil());
        }
        let chain = record.chain();
        ledger::seal(&mut record, heads.entry(chain).or_default());
        batch.insert(&tables.changes, key.to_vec(), codec::encode_change(&record));
        batch.insert(&tables.chain_records, codec::chain_record_key(&chain, record.seq), record.id.as_bytes().to_vec());
        pending += 2;
        if pending >= CHUNK {
            std::mem::replace(&mut batch, tables.db.batch().durability(Some(PersistMode::SyncAll))).commit()?;
            pending = 0;
        }
    }
    for (chain, head) in &heads {
        batch.insert(&tables.chain_heads, codec::chain_key(chain), codec::encode_head(head));
    }
    batch.commit()?;
    Ok(())
}
