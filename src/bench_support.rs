//! The service's internals that the benchmark's ceiling (b) reuses, in one place: the embedded
//! store's keyspace settings and its record encoding, so that the ceiling writes the same bytes
//! into keyspaces configured as the store's and measures what the store's writer could do at
//! best. Not part of the library's interface: hidden from its documentation and free to change
//! with the store; the benchmark (bench/) is its only user.

pub use crate::store::embedded::codec::{
    change_by_profile_key, change_key, contact_key, encode_change, profile_id_key, profile_key, ProfileRecord,
};

/// Every keyspace of the embedded store with its memtable size in MiB.
pub const KEYSPACES: [(&str, u64); 15] = crate::store::embedded::KEYSPACES;

/// The options the embedded store creates a keyspace with, for a memtable of `memtable_mib` MiB.
pub fn keyspace_options(memtable_mib: u64) -> fjall::KeyspaceCreateOptions {
    crate::store::embedded::keyspace_options(memtable_mib)
}
