//! Reading a request's profiles before it reaches the writer.
//!
//! The writer is the one thread every write goes through, so each microsecond it spends is a
//! microsecond of every request. Point reads are most of its work, and they need no ordering:
//! the request's own task reads its profiles (on another core) and hands them over with the
//! writer's epoch (the number of committed batches) at which it read them. The writer uses a
//! prefetched value only if no batch since that epoch, and no earlier request of the current
//! batch, wrote the key; otherwise it reads again. Either way it acts on the latest value, so
//! prefetching changes the cost of a write, never its result.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::codec::{self, ProfileRecord};
use super::Tables;
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::WorkspaceId;
use crate::store::StoreError;

/// Batches a prefetch may lag behind the writer and still be used. Older prefetches are read
/// again; the writer remembers the keys of this many batches.
const WINDOW: u64 = 64;

/// Profile records read ahead of the writer.
#[derive(Default)]
pub struct Prefetch {
    /// Committed batches when the reads started.
    epoch: u64,
    /// `profiles` key to its record (`None`: no such profile) at or after `epoch`.
    records: HashMap<Vec<u8>, Option<ProfileRecord>>,
}

impl Prefetch {
    /// Reads the profiles of `external_ids` as they are now.
    pub fn read<'a>(
        tables: &Tables,
        committed: &AtomicU64,
        ws: WorkspaceId,
        external_ids: impl Iterator<Item = &'a ExternalId>,
    ) -> Result<Prefetch, StoreError> {
        // Loaded before reading: whatever is read is at least as new as this epoch.
        let epoch = committed.load(Ordering::Acquire);
        let mut records = HashMap::new();
        for external_id in external_ids {
            let key = codec::profile_key(ws, external_id.as_str());
            let record = match tables.profiles.get(&key)? {
                Some(bytes) => Some(ProfileRecord::decode(&bytes)?),
                None => None,
            };
            records.insert(key, record);
        }
        Ok(Prefetch { epoch, records })
    }

    /// Takes the prefetched record of `key` if `recent` proves it is still current.
    pub fn take(&mut self, key: &[u8], recent: &RecentWrites) -> Option<Option<ProfileRecord>> {
        if !recent.unchanged_since(self.epoch, key) {
            return None;
        }
        self.records.remove(key)
    }
}

/// The `profiles` keys the writer wrote in its last [`WINDOW`] batches, by hash: a hash
/// collision only costs a needless read.
#[derive(Default)]
pub struct RecentWrites {
    committed: u64,
    last_write: HashMap<u64, u64>,
    log: VecDeque<(u64, Vec<u64>)>,
}

impl RecentWrites {
    /// Whether no committed batch after `epoch` wrote `key`.
    fn unchanged_since(&self, epoch: u64, key: &[u8]) -> bool {
        if self.committed.saturating_sub(epoch) >= WINDOW {
            return false;
        }
        match self.last_write.get(&hash(key)) {
            Some(&batch) => batch <= epoch,
            None => true,
        }
    }

    /// Notes that batch number `committed` wrote `keys`, then publishes the new epoch.
    pub fn record<'a>(&mut self, committed: u64, keys: impl Iterator<Item = &'a [u8]>, epoch: &AtomicU64) {
        let hashes: Vec<u64> = keys.map(hash).collect();
        for &h in &hashes {
            self.last_write.insert(h, committed);
        }
        self.log.push_back((committed, hashes));
        while let Some((batch, _)) = self.log.front() {
            if batch + WINDOW > committed {
                break;
            }
            let (batch, hashes) = self.log.pop_front().expect("front exists");
            for h in hashes {
                if self.last_write.get(&h) == Some(&batch) {
                    self.last_write.remove(&h);
                }
            }
        }
        self.committed = committed;
        // Published after the batch is visible, so a reader that loads this epoch reads
        // everything up to it.
        epoch.store(committed, Ordering::Release);
    }
}

fn hash(key: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}
