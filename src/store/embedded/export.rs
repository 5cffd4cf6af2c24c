//! Reading a whole embedded store out, for `consentry migrate-store`: a survey (how many of
//! each kind there are, and a fingerprint of the content) and, per source keyspace, the decoded
//! entries in key order from a resume point.
//!
//! Only the keyspaces that hold facts are read: `catalog`, `profiles` (whose records carry the
//! states), `orphans` and `changes`. The others are indexes derived from these, which a target
//! store rebuilds its own way. Decoding is the codec's, the same the store reads with.
//!
//! The store is opened the usual way, so it holds the directory's lock: no server can write to
//! it while it is read, and a store held by a running server is refused with
//! [`StoreError::Locked`]. Nothing here writes to it.

use std::ops::Bound;
use std::path::Path;

use fjall::{Keyspace, Slice};
use sha2::{Digest, Sha256};

use super::codec::{self, ProfileRecord};
use super::{EmbeddedStore, ENGINE_DIR};
use crate::domain::change::{ChangeRecord, Contact};
use crate::domain::ids::{GroupId, WorkspaceId};
use crate::domain::subscription::SubscriptionState;
use crate::domain::time::Timestamp;
use crate::store::{CatalogData, EmbeddedOptions, Policy, StoreError};

/// The keyspaces an export reads, in the order they are copied (the catalog first, so that a
/// partial copy never holds states of groups it does not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceTable {
    /// Workspaces, API keys and groups.
    Catalog,
    /// Profiles with their states.
    Profiles,
    /// Orphaned states of emails and phones.
    Orphans,
    /// Change records.
    Changes,
}

impl SourceTable {
    /// Every table, in copy order.
    pub const ALL: [SourceTable; 4] =
        [SourceTable::Catalog, SourceTable::Profiles, SourceTable::Orphans, SourceTable::Changes];

    /// The keyspace's name, which also names the table in progress records and messages.
    pub fn name(self) -> &'static str {
        match self {
            SourceTable::Catalog => "catalog",
            SourceTable::Profiles => "profiles",
            SourceTable::Orphans => "orphans",
            SourceTable::Changes => "changes",
        }
    }
}

/// How many of each kind a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Workspaces.
    pub workspaces: u64,
    /// API keys, revoked ones too.
    pub api_keys: u64,
    /// Groups, archived ones too.
    pub groups: u64,
    /// Profiles.
    pub profiles: u64,
    /// Profile states (in all profiles together).
    pub states: u64,
    /// Orphaned states.
    pub orphans: u64,
    /// Change records.
    pub changes: u64,
}

impl SourceCounts {
    /// The entries of `table`, as its export yields them (catalog: all items).
    pub fn entries(&self, table: SourceTable) -> u64 {
        match table {
            SourceTable::Catalog => self.workspaces + self.api_keys + self.groups,
            SourceTable::Profiles => self.profiles,
            SourceTable::Orphans => self.orphans,
            SourceTable::Changes => self.changes,
        }
    }
}

/// What a full read of a store found.
#[derive(Debug, Clone)]
pub struct Survey {
    /// How many of each kind.
    pub counts: SourceCounts,
    /// SHA-256 (hex) over every entry of the exported keyspaces: equal for two stores exactly
    /// when they hold the same facts, and changed by any write to the store.
    pub fingerprint: String,
}

/// An orphaned state as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanRow {
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// The email or phone.
    pub contact: Contact,
    /// The group.
    pub group_id: GroupId,
    /// The state.
    pub state: SubscriptionState,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The identifier's internal id (the subject of its chains).
    pub orphan_id: crate::domain::ids::OrphanId,
}

/// A profile as exported: its workspace, its external id and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    /// Its workspace.
    pub workspace_id: WorkspaceId,
    /// Its external id.
    pub external_id: String,
    /// Its id, email, phone and states.
    pub record: ProfileRecord,
}

/// One exported entry: its key in the source (the resume point after it) and its content.
pub type Exported<T> = Result<(Slice, T), StoreError>;

impl EmbeddedStore {
    /// Opens the existing store in `path` for export. Unlike [`EmbeddedStore::open`] it never
    /// creates one: a path without a store is an error, not an empty source.
    /// An export writes nothing: the store's policy does not matter, and the default is used.
    pub fn open_existing(path: &Path, options: &EmbeddedOptions) -> Result<Self, StoreError> {
        if !path.join(ENGINE_DIR).is_dir() {
            let why = if path.exists() { "the directory holds no embedded store" } else { "no such directory" };
            return Err(StoreError::Open(why.into()));
        }
        EmbeddedStore::open(path, options, &Policy::default())
    }

    /// Reads every entry of the exported keyspaces once: counts and fingerprint. `progress` is
    /// called now and then with the table being read, the entries read in it and the engine's
    /// estimate of its size.
    pub fn survey(&self, progress: &mut dyn FnMut(SourceTable, u64, u64)) -> Result<Survey, StoreError> {
        const EVERY: u64 = 16_384;
        let mut hash = Sha256::new();
        let mut counts = SourceCounts::default();
        let CatalogData { workspaces, api_keys, groups } = self.load_catalog()?;
        (counts.workspaces, counts.api_keys, counts.groups) =
            (workspaces.len() as u64, api_keys.len() as u64, groups.len() as u64);
        for table in SourceTable::ALL {
            let keyspace = self.source_keyspace(table);
            let estimate = keyspace.approximate_len() as u64;
            hash.update(table.name().as_bytes());
            let mut read = 0;
            for item in keyspace.iter() {
                let (key, value) = item.into_inner()?;
                // Lengths first, so that no two different sequences of entries hash alike.
                hash.update((key.len() as u64).to_be_bytes());
                hash.update(&key);
                hash.update((value.len() as u64).to_be_bytes());
                hash.update(&value);
                match table {
                    SourceTable::Catalog => {}
                    SourceTable::Profiles => {
                        counts.profiles += 1;
                        counts.states += ProfileRecord::decode(&value)?.states.len() as u64;
                    }
                    SourceTable::Orphans => counts.orphans += 1,
                    SourceTable::Changes => counts.changes += 1,
                }
                read += 1;
                if read % EVERY == 0 {
                    progress(table, read, estimate.max(read));
                }
            }
            progress(table, read, read);
        }
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Survey { counts, fingerprint })
    }

    /// The profiles after `after` (from the first when `None`), in key order.
    pub fn export_profiles(&self, after: Option<&[u8]>) -> impl Iterator<Item = Exported<ProfileRow>> + use<'_> {
        entries_after(&self.tables().profiles, after).map(|item| {
            let (key, value) = item?;
            let (workspace_id, external_id) = codec::decode_profile_key(&key)?;
            let row = ProfileRow {
                workspace_id,
                external_id: external_id.to_string(),
                record: ProfileRecord::decode(&value)?,
            };
            Ok((key, row))
        })
    }

    /// The orphaned states after `after`, in key order.
    pub fn export_orphans(&self, after: Option<&[u8]>) -> impl Iterator<Item = Exported<OrphanRow>> + use<'_> {
        entries_after(&self.tables().orphans, after).map(|item| {
            let (key, value) = item?;
            let (workspace_id, contact, group_id) = codec::decode_orphan_key(&key)?;
            let (state, updated_at, orphan_id) = codec::decode_orphan_with_id(&value)?;
            Ok((key, OrphanRow { workspace_id, contact, group_id, state, updated_at, orphan_id }))
        })
    }

    /// The change records after `after`, in key order (by workspace, then by id: oldest first).
    pub fn export_changes(&self, after: Option<&[u8]>) -> impl Iterator<Item = Exported<ChangeRecord>> + use<'_> {
        entries_after(&self.tables().changes, after).map(|item| {
            let (key, value) = item?;
            let change = codec::decode_change(&key, &value)?;
            Ok((key, change))
        })
    }

    fn source_keyspace(&self, table: SourceTable) -> &Keyspace {
        let tables = self.tables();
        match table {
            SourceTable::Catalog => &tables.catalog,
            SourceTable::Profiles => &tables.profiles,
            SourceTable::Orphans => &tables.orphans,
            SourceTable::Changes => &tables.changes,
        }
    }
}

/// The raw entries of `keyspace` after the key `after` (all of them when `None`).
fn entries_after<'a>(
    keyspace: &'a Keyspace,
    after: Option<&[u8]>,
) -> impl Iterator<Item = Result<(Slice, Slice), StoreError>> + 'a {
    let iter = match after {
        None => keyspace.iter(),
        Some(after) => keyspace.range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded)),
    };
    iter.map(|item| item.into_inner().map_err(StoreError::from))
}
