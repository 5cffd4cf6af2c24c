//! The change stream on the embedded store.
//!
//! The writer appends one `outbox` entry per change record in the record's own batch (see
//! [`super::outbox`]); positions are taken by the single writer in commit order, so each
//! destination reads the outbox from a cursor and never misses an entry. The `stream` keyspace
//! holds, per destination id, `d` the destination (written by admin commands), `s` its
//! delivery state with the cursor and `m` the message being delivered (both written by the
//! relay), so that neither writer overwrites the other's fields; `r` · id · n queues the
//! records a replay sends again, before the outbox's.

use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, PersistMode};
use uuid::Uuid;

use super::destination::{DeliveryState, Destination, Message};
use super::outbox::{EntryOf, Item};
use crate::store::embedded::codec;
use crate::store::StoreError;

/// Entries a destination's read looks at at most: the entries of other workspaces between
/// its own are skipped a bounded number at a time.
const SCAN_LIMIT: usize = 10_000;

/// The store's keyspaces the stream uses.
pub struct Parts<'a> {
    /// The engine, for atomic batches.
    pub db: &'a Database,
    /// `outbox`.
    pub outbox: &'a Keyspace,
    /// `stream`.
    pub stream: &'a Keyspace,
    /// `changes`.
    pub changes: &'a Keyspace,
    /// The writer's next outbox position.
    pub outbox_next: &'a AtomicU64,
}

fn key(tag: u8, id: Uuid) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(tag);
    out.extend_from_slice(id.as_bytes());
    out
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("stream records always encode")
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { what, detail: e.to_string() })
}

/// Records and deletions read for a destination, and the cursor after them.
pub struct Pending {
    /// The records and deletions, in outbox order.
    pub records: Vec<Item>,
    /// The position to read next once they are taken.
    pub cursor: u64,
}

impl Parts<'_> {
    /// Stores a new destination; it takes the records committed from now on.
    pub fn create(&self, destination: &Destination) -> Result<(), StoreError> {
        let state = DeliveryState { cursor: self.outbox_next.load(Ordering::Acquire), ..DeliveryState::default() };
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(self.stream, key(b'd', destination.id), json(destination));
        batch.insert(self.stream, key(b's', destination.id), json(&state));
        batch.commit()?;
        Ok(())
    }

    /// Replaces a destination's settings (a rotated secret).
    pub fn update(&self, destination: &Destination) -> Result<(), StoreError> {
        self.stream.insert(key(b'd', destination.id), json(destination))?;
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Removes a destination and its delivery; whether it existed.
    pub fn delete(&self, id: Uuid) -> Result<bool, StoreError> {
        let existed = self.stream.get(key(b'd', id))?.is_some();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for tag in [b'd', b's', b'm'] {
            batch.remove(self.stream, key(tag, id));
        }
        for item in self.stream.prefix(key(b'r', id)) {
            batch.remove(self.stream, item.key()?);
        }
        batch.commit()?;
        Ok(existed)
    }

    /// Every destination with its delivery state.
    pub fn list(&self) -> Result<Vec<(Destination, DeliveryState)>, StoreError> {
        let mut out = Vec::new();
        for item in self.stream.prefix([b'd']) {
            let (k, v) = item.into_inner()?;
            let destination: Destination = parse(&v, "stream destination")?;
            let id =
                Uuid::from_slice(&k[1..]).map_err(|e| StoreError::Corrupt { what: "stream", detail: e.to_string() })?;
            let state = match self.stream.get(key(b's', id))? {
                Some(bytes) => parse(&bytes, "stream state")?,
                None => DeliveryState::default(),
            };
            out.push((destination, state));
        }
        Ok(out)
    }

    /// Whether the destination has replayed records queued.
    pub fn has_replay(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.stream.prefix(key(b'r', id)).next().is_some())
    }

    /// The message a destination is delivering, if any.
    pub fn message(&self, id: Uuid) -> Result<Option<Message>, StoreError> {
        self.stream.get(key(b'm', id))?.map(|bytes| parse(&bytes, "stream message")).transpose()
    }

    /// Up to `limit` records of the destination's workspace from its cursor on.
    pub fn pending(
        &self,
        destination: &Destination,
        state: &DeliveryState,
        limit: usize,
    ) -> Result<Pending, StoreError> {
        let mut records = Vec::new();
        let mut cursor = state.cursor;
        for item in self.outbox.range(state.cursor.to_be_bytes()..).take(SCAN_LIMIT) {
            let (k, v) = item.into_inner()?;
            let entry = super::outbox::decode(&k, &v)?;
            if entry.workspace_id == destination.workspace_id {
                if records.len() == limit {
                    break;
                }
                match entry.of {
                    EntryOf::Change(change_id) => {
                        let change_key = codec::change_key(entry.workspace_id, change_id);
                        // A record retention has removed since is not sent.
                        if let Some(bytes) = self.changes.get(&change_key)? {
                            records.push(Item::Change(codec::decode_change(&change_key, &bytes)?));
                        }
                    }
                    EntryOf::Deletion(deletion) => records.push(Item::Deletion(deletion)),
                }
            }
            cursor = entry.position as u64 + 1;
        }
        Ok(Pending { records, cursor })
    }

    /// Takes the records up to `cursor` into `message` (none when it is `None`), in one commit.
    pub fn begin(&self, id: Uuid, state: &DeliveryState, message: Option<&Message>) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(self.stream, key(b's', id), json(state));
        if let Some(message) = message {
            batch.insert(self.stream, key(b'm', id), json(message));
        }
        batch.commit()?;
        Ok(())
    }

    /// Records the outcome of an attempt: the new state, and the message to try again, or
    /// none when it is done with.
    pub fn settle(&self, id: Uuid, state: &DeliveryState, retry: Option<&Message>) -> Result<(), StoreError> {
        if self.stream.get(key(b'd', id))?.is_none() {
            return Ok(()); // deleted meanwhile
        }
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(self.stream, key(b's', id), json(state));
        match retry {
            Some(message) => batch.insert(self.stream, key(b'm', id), json(message)),
            None => batch.remove(self.stream, key(b'm', id)),
        }
        batch.commit()?;
        Ok(())
    }

    /// Queues the workspace's records of `[since, until)` for the destination again, oldest
    /// first, after what it already has queued; how many.
    pub fn replay(
        &self,
        destination: &Destination,
        since: crate::domain::time::Timestamp,
        until: crate::domain::time::Timestamp,
    ) -> Result<usize, StoreError> {
        let ws = destination.workspace_id;
        let mut found = Vec::new();
        for item in self.changes.prefix(ws.as_bytes()) {
            let (k, v) = item.into_inner()?;
            let record = codec::decode_change(&k, &v)?;
            if record.at >= since && record.at < until {
                found.push((record.at, record.id));
            }
        }
        found.sort();
        let prefix = key(b'r', destination.id);
        let first = match self.stream.prefix(&prefix).next_back() {
            Some(item) => {
                let k = item.key()?;
                u64::from_be_bytes(k[17..25].try_into().map_err(|_| StoreError::Corrupt {
                    what: "stream replay",
                    detail: "the key is not 25 bytes".into(),
                })?) + 1
            }
            None => 0,
        };
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (n, (_, id)) in (first..).zip(&found) {
            let mut k = prefix.clone();
            k.extend_from_slice(&n.to_be_bytes());
            batch.insert(self.stream, k, id.as_bytes().to_vec());
        }
        batch.commit()?;
        Ok(found.len())
    }

    /// Up to `limit` of the destination's replayed records, with their queue keys.
    pub fn replayed(&self, destination: &Destination, limit: usize) -> Result<(Vec<Vec<u8>>, Vec<Item>), StoreError> {
        let (mut keys, mut records) = (Vec::new(), Vec::new());
        for item in self.stream.prefix(key(b'r', destination.id)).take(limit) {
            let (k, v) = item.into_inner()?;
            let id = crate::domain::ids::ChangeId::from_bytes(v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt { what: "stream replay", detail: "the change id is not 16 bytes".into() }
            })?);
            let change_key = codec::change_key(destination.workspace_id, id);
            if let Some(bytes) = self.changes.get(&change_key)? {
                records.push(Item::Change(codec::decode_change(&change_key, &bytes)?));
            }
            keys.push(k.to_vec());
        }
        Ok((keys, records))
    }

    /// Takes replayed records (by their queue keys) into `message`, in one commit.
    pub fn begin_replay(&self, id: Uuid, keys: &[Vec<u8>], message: Option<&Message>) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for k in keys {
            batch.remove(self.stream, k.clone());
        }
        if let Some(message) = message {
            batch.insert(self.stream, key(b'm', id), json(message));
        }
        batch.commit()?;
        Ok(())
    }

    /// Removes the outbox entries every destination has read, a bounded number at a time.
    /// The last entry always stays: the writer takes its next position from it on start-up.
    pub fn collect(&self, cursors: impl Iterator<Item = u64>) -> Result<(), StoreError> {
        let Some(last) = self.outbox.last_key_value() else { return Ok(()) };
        let last = super::outbox::decode(&last.key()?, &[0; 32])?.position as u64;
        let floor = cursors.min().unwrap_or(u64::MAX).min(last);
        let mut batch = self.db.batch();
        let mut removed = 0;
        for item in self.outbox.range(..floor.to_be_bytes()).take(SCAN_LIMIT) {
            batch.remove(self.outbox, item.key()?);
            removed += 1;
        }
        if removed > 0 {
            batch.commit()?;
        }
        Ok(())
    }
}
