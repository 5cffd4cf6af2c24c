//! A write set over the engine that reads its own writes: the batch the single writer builds.
//!
//! Every request in a batch reads through the writes of the requests before it, so a batch
//! behaves exactly as if its requests had been committed one by one, but is committed (and
//! fsynced) once.

use std::collections::BTreeMap;

use fjall::{PersistMode, Slice};

use super::Tables;
use crate::store::StoreError;

/// The keyspaces the writer writes (the catalog is written outside the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `profiles`
    Profiles = 0,
    /// `profile_ids`
    ProfileIds,
    /// `emails`
    Emails,
    /// `phones`
    Phones,
    /// `orphans`
    Orphans,
    /// `changes`
    Changes,
    /// `changes_by_profile`
    ChangesByProfile,
    /// `changes_by_contact`
    ChangesByContact,
    /// `chain_heads`
    ChainHeads,
    /// `chain_records`
    ChainRecords,
    /// `outbox`
    Outbox,
    /// `email_unsubscribes`
    EmailUnsubscribes,
}

const TABLES: usize = 12;

/// Pending writes per table: `None` deletes the key.
pub struct Overlay<'a> {
    tables: &'a Tables,
    writes: [BTreeMap<Vec<u8>, Option<Slice>>; TABLES],
}

impl<'a> Overlay<'a> {
    /// An empty write set.
    pub fn new(tables: &'a Tables) -> Self {
        Overlay { tables, writes: Default::default() }
    }

    /// The tables the batch writes into.
    pub fn tables(&self) -> &'a Tables {
        self.tables
    }

    /// The value of `key`, as the batch so far left it.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Slice>, StoreError> {
        if let Some(pending) = self.writes[table as usize].get(key) {
            return Ok(pending.clone());
        }
        Ok(self.tables.keyspace(table).get(key)?)
    }

    /// The batch's own pending value of `key`, if an earlier request of the batch wrote it.
    pub fn pending(&self, table: Table, key: &[u8]) -> Option<Option<Slice>> {
        self.writes[table as usize].get(key).cloned()
    }

    /// The keys of `table` the batch writes.
    pub fn keys(&self, table: Table) -> impl Iterator<Item = &[u8]> {
        self.writes[table as usize].keys().map(Vec::as_slice)
    }

    /// Every key under `prefix` with its value, in key order, as the batch so far left them.
    pub fn prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Slice, Slice)>, StoreError> {
        let mut merged: BTreeMap<Slice, Slice> = BTreeMap::new();
        for item in self.tables.keyspace(table).prefix(prefix) {
            let (key, value) = item.into_inner()?;
            merged.insert(key, value);
        }
        let pending = &self.writes[table as usize];
        for (key, value) in pending.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix)) {
            let key = Slice::from(key.as_slice());
            match value {
                Some(value) => merged.insert(key, value.clone()),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.writes[table as usize].insert(key, Some(Slice::from(value)));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.writes[table as usize].insert(key, None);
    }

    /// Number of pending writes.
    pub fn len(&self) -> usize {
        self.writes.iter().map(BTreeMap::len).sum()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything as one atomic batch, persisted with `mode` before any of it becomes
    /// visible to readers.
    pub fn commit(self, mode: PersistMode) -> Result<(), fjall::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let mut batch = self.tables.db.batch().durability(Some(mode));
        for (index, writes) in self.writes.into_iter().enumerate() {
            let keyspace = self.tables.keyspace(TABLE_ORDER[index]);
            for (key, value) in writes {
                match value {
                    Some(value) => batch.insert(keyspace, key, value),
                    None => batch.remove(keyspace, key),
                }
            }
        }
        batch.commit()
    }
}

const TABLE_ORDER: [Table; TABLES] = [
    Table::Profiles,
    Table::ProfileIds,
    Table::Emails,
    Table::Phones,
    Table::Orphans,
    Table::Changes,
    Table::ChangesByProfile,
    Table::ChangesByContact,
    Table::ChainHeads,
    Table::ChainRecords,
    Table::Outbox,
    Table::EmailUnsubscribes,
];
