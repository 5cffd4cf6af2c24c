//! Backups of the embedded store: `consentry backup --to DIR` and `consentry restore`.
//!
//! fjall (3.1) has no checkpoint of its own, so a backup reads one snapshot of the engine (every
//! keyspace, the catalog and the store's metadata among them, at one sequence number) and writes
//! it into a fresh engine in `DIR/engine`, with bulk ingestion: sorted tables written directly,
//! no journal. The copy is therefore consistent (every change acknowledged before the snapshot,
//! with its chain records, heads and outbox entries; nothing half of a batch) while the server
//! keeps writing. A backup is a data directory: a server can start on it as it is, and
//! `restore` copies its files into an empty data directory, leaving the backup untouched.
//!
//! The manifest ([`MANIFEST`]) is written last, after every file is synced: a directory without
//! it is a backup that did not finish, and `restore` refuses it.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, PersistMode, Readable};
use serde::{Deserialize, Serialize};

use super::{keyspace_options, Tables, ENGINE_DIR, KEYSPACES};
use crate::store::StoreError;

/// The manifest of a finished backup, in its directory.
pub const MANIFEST: &str = "consentry-backup.json";

/// What a backup holds, as its manifest says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout of the backup; 1 is a data directory with an `engine` directory.
    pub format: u32,
    /// When the snapshot was taken (RFC 3339).
    pub taken_at: String,
    /// The engine's sequence number of the snapshot: every batch committed before it is in.
    pub seqno: u64,
    /// Entries copied, per keyspace.
    pub keyspaces: Vec<(String, u64)>,
}

impl Manifest {
    /// Entries copied in all.
    pub fn entries(&self) -> u64 {
        self.keyspaces.iter().map(|(_, n)| n).sum()
    }
}

/// Refuses a `dir` that holds anything, so that a backup or a restore never overwrites or
/// mixes into existing data; a missing `dir` is fine.
pub fn refuse_non_empty(dir: &Path, what: &str) -> Result<(), StoreError> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => {
            Err(StoreError::Refused(format!("{what} {} is not empty: give a new or empty directory", dir.display())))
        }
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::Open(format!("cannot read {what} {}: {e}", dir.display()))),
    }
}

/// Creates `dir` (owner-only) if it does not exist, after [`refuse_non_empty`].
fn empty_target(dir: &Path, what: &str) -> Result<(), StoreError> {
    refuse_non_empty(dir, what)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Open(format!("cannot create {what} {}: {e}", dir.display())))
}

/// Copies one snapshot of `tables` into `to` (new or empty), counting entries in `progress`.
pub(super) fn write(tables: &Tables, to: &Path, progress: &AtomicU64) -> Result<Manifest, StoreError> {
    empty_target(to, "the backup directory")?;
    let snapshot = tables.db.snapshot();
    let taken_at = crate::domain::time::Clock::system().now().to_rfc3339();
    let copy = Database::builder(to.join(ENGINE_DIR)).cache_size(8 << 20).worker_threads(1).open()?;
    let mut counts = Vec::with_capacity(KEYSPACES.len());
    for (name, mib) in KEYSPACES {
        let source = tables.by_name(name);
        let target = copy.keyspace(name, || keyspace_options(mib))?;
        let mut ingestion = target.start_ingestion()?;
        let mut copied = 0u64;
        // Keys come out of the snapshot sorted, as ingestion needs them.
        for item in snapshot.iter(source) {
            let (key, value) = item.into_inner()?;
            ingestion.write(key, value)?;
            copied += 1;
            if copied.is_multiple_of(1_000) {
                progress.fetch_add(1_000, Ordering::Relaxed);
            }
        }
        ingestion.finish()?;
        progress.fetch_add(copied % 1_000, Ordering::Relaxed);
        counts.push((name.to_string(), copied));
    }
    copy.persist(PersistMode::SyncAll)?;
    drop(copy);
    sync_tree(to)?;
    let manifest = Manifest { format: 1, taken_at, seqno: snapshot.seqno(), keyspaces: counts };
    write_manifest(to, &manifest)?;
    Ok(manifest)
}

/// Reads the manifest of the backup in `dir`; an error naming what is wrong when there is none.
pub fn read_manifest(dir: &Path) -> Result<Manifest, StoreError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| {
        StoreError::Refused(format!(
            "{} is not a finished Consentry backup: {} cannot be read ({e})",
            dir.display(),
            path.display()
        ))
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| StoreError::Refused(format!("{} is not a Consentry backup manifest: {e}", path.display())))
}

/// Copies the backup in `from` into the data directory `to` (new or empty), file by file,
/// every file synced. The backup is only read.
pub fn restore(from: &Path, to: &Path) -> Result<Manifest, StoreError> {
    let manifest = read_manifest(from)?;
    if manifest.format != 1 {
        return Err(StoreError::Refused(format!(
            "the backup in {} has format {}, which this version does not know",
            from.display(),
            manifest.format
        )));
    }
    empty_target(to, "the data directory")?;
    copy_tree(&from.join(ENGINE_DIR), &to.join(ENGINE_DIR))?;
    sync_tree(to)?;
    Ok(manifest)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), StoreError> {
    let io =
        |e: std::io::Error| StoreError::Open(format!("cannot write the backup manifest in {}: {e}", dir.display()));
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Internal(e.to_string()))?;
    let mut file = File::create(dir.join(MANIFEST)).map_err(io)?;
    file.write_all(&text).map_err(io)?;
    file.sync_all().map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Open(format!("cannot copy {} to {}: {e}", from.display(), to.display()));
    std::fs::DirBuilder::new().mode(0o700).create(to).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io)?.is_dir() {
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target).map_err(io)?;
        }
    }
    Ok(())
}

/// Syncs every file and directory under `dir`, and `dir` itself: whatever the engine left
/// unsynced, the copy is on disk before the manifest says it is finished.
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Open(format!("cannot sync {}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            File::open(entry.path()).and_then(|f| f.sync_all()).map_err(io)?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}
