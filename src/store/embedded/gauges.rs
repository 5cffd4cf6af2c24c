//! The embedded store's gauges, set when Prometheus scrapes (see [`crate::telemetry`]): the
//! writer's queue and what fjall reports of its memtables, flushes and compactions. fjall
//! marks these counts experimental (hidden from its documentation); they are read here only,
//! so that a change in them touches this file alone.

use metrics::{counter, gauge};

use super::EmbeddedStore;
use crate::telemetry as t;

impl EmbeddedStore {
    /// Sets the gauges from the engine's and the writer's current state.
    pub(crate) fn record_gauges(&self) {
        let queued = match self.inner.queue.read().as_deref() {
            Ok(Some(sender)) => sender.max_capacity() - sender.capacity(),
            _ => 0,
        };
        gauge!(t::STORE_WRITE_QUEUE_DEPTH).set(queued as f64);
        let tables = &self.inner.tables;
        let keyspaces = [
            &tables.catalog,
            &tables.profiles,
            &tables.profile_ids,
            &tables.emails,
            &tables.phones,
            &tables.orphans,
            &tables.changes,
            &tables.changes_by_profile,
            &tables.changes_by_contact,
        ];
        let sealed: usize = keyspaces.iter().map(|k| k.sealed_memtable_count()).sum();
        let files: usize = keyspaces.iter().map(|k| k.table_count()).sum();
        let db = &tables.db;
        gauge!(t::FJALL_WRITE_BUFFER_BYTES).set(db.write_buffer_size() as f64);
        gauge!(t::FJALL_SEALED_MEMTABLES).set(sealed as f64);
        gauge!(t::FJALL_FLUSHES_QUEUED).set(db.outstanding_flushes() as f64);
        gauge!(t::FJALL_COMPACTIONS_RUNNING).set(db.active_compactions() as f64);
        counter!(t::FJALL_COMPACTIONS).absolute(db.compactions_completed() as u64);
        gauge!(t::FJALL_TABLES).set(files as f64);
        gauge!(t::FJALL_JOURNALS).set(db.journal_count() as f64);
    }
}
