//! The embedded store: fjall (an LSM engine) in a data directory, one process at a time.
//!
//! Writes go through the [`writer`] (one thread, group commit); reads go straight to the engine
//! and see only committed, durable batches, because a batch becomes visible only after it is
//! persisted. The directory is locked by the process that opened it, so a second process gets
//! [`StoreError::Locked`] and can talk to the first one instead (see `crate::admin`).

pub mod backup;
pub(crate) mod codec;
pub mod export;
mod gauges;
pub mod history;
pub mod overlay;
pub mod prefetch;
pub mod upgrade;
pub mod writer;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use tokio::sync::{mpsc, oneshot};

use self::codec::ProfileRecord;
use self::overlay::Table;
use self::writer::{Job, Op};
use super::{
    Applied, CatalogData, ContactView, EmbeddedOptions, Policy, ProfileImport, ProfileView, StateView, StoreError,
};
use crate::domain::change::{ChangeRecord, Contact};
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{ChangeId, WorkspaceId};
use crate::domain::ledger::{BadRecord, Break, ChainVerifier, LedgerCheck};
use crate::domain::plan::Origin;
use crate::domain::set_status::SetStatusCommand;
use crate::domain::tenant::{ApiKey, Group, Workspace};
use crate::domain::track::TrackCommand;

/// The name of the lock file in the data directory.
pub const LOCK_FILE: &str = "consentry.lock";
/// The engine's own directory inside the data directory.
const ENGINE_DIR: &str = "engine";

/// Every keyspace of the store with its memtable size in MiB.
///
/// Memtables are most of the memory a store uses beyond the block cache, and a memtable costs
/// two to three times its nominal size in skiplist nodes: the engine's default of 64 MiB for
/// each of eight keyspaces would blow any reasonable budget. The two keyspaces every change
/// writes get 8 MiB, the rest 4 MiB. The benchmark's storage ceiling runs with exactly these
/// settings (through `crate::bench_support`).
pub(crate) const KEYSPACES: [(&str, u64); 15] = [
    ("catalog", 4),
    ("profiles", 6),
    ("profile_ids", 4),
    ("emails", 4),
    ("phones", 4),
    ("orphans", 4),
    ("changes", 6),
    ("changes_by_profile", 4),
    ("changes_by_contact", 2),
    ("chain_heads", 4),
    ("chain_records", 4),
    ("meta", 1),
    ("outbox", 2),
    ("stream", 1),
    ("email_unsubscribes", 1),
];

/// The options a keyspace is created with, for a memtable of `memtable_mib` MiB.
///
/// Data blocks carry a hash index: every request point-reads 50 random profiles, and the
/// index finds a key in a block without a binary search over its restart points.
pub(crate) fn keyspace_options(memtable_mib: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable_mib << 20)
        .data_block_hash_ratio_policy(fjall::config::HashRatioPolicy::all(0.75))
}

/// The engine and its keyspaces.
pub struct Tables {
    db: Database,
    catalog: Keyspace,
    profiles: Keyspace,
    profile_ids: Keyspace,
    emails: Keyspace,
    phones: Keyspace,
    orphans: Keyspace,
    changes: Keyspace,
    changes_by_profile: Keyspace,
    changes_by_contact: Keyspace,
    chain_heads: Keyspace,
    chain_records: Keyspace,
    meta: Keyspace,
    outbox: Keyspace,
    stream: Keyspace,
    email_unsubscribes: Keyspace,
    /// The next position in `outbox`; only the writer takes positions (see `crate::stream`).
    outbox_next: AtomicU64,
    /// Woken by the writer after each commit, for the change stream's relay.
    stream_wake: Arc<tokio::sync::Notify>,
}

impl Tables {
    /// The keyspace named `name` in [`KEYSPACES`].
    fn by_name(&self, name: &str) -> &Keyspace {
        match name {
            "catalog" => &self.catalog,
            "profiles" => &self.profiles,
            "profile_ids" => &self.profile_ids,
            "emails" => &self.emails,
            "phones" => &self.phones,
            "orphans" => &self.orphans,
            "changes" => &self.changes,
            "changes_by_profile" => &self.changes_by_profile,
            "changes_by_contact" => &self.changes_by_contact,
            "chain_heads" => &self.chain_heads,
            "chain_records" => &self.chain_records,
            "meta" => &self.meta,
            "outbox" => &self.outbox,
            "stream" => &self.stream,
            "email_unsubscribes" => &self.email_unsubscribes,
            other => unreachable!("{other} is not in KEYSPACES"),
        }
    }

    fn keyspace(&self, table: Table) -> &Keyspace {
        match table {
            Table::Profiles => &self.profiles,
            Table::ProfileIds => &self.profile_ids,
            Table::Emails => &self.emails,
            Table::Phones => &self.phones,
            Table::Orphans => &self.orphans,
            Table::Changes => &self.changes,
            Table::ChangesByProfile => &self.changes_by_profile,
            Table::ChangesByContact => &self.changes_by_contact,
            Table::ChainHeads => &self.chain_heads,
            Table::ChainRecords => &self.chain_records,
            Table::Outbox => &self.outbox,
            Table::EmailUnsubscribes => &self.email_unsubscribes,
        }
    }
}

/// A catalog entry to store.
pub enum CatalogItem<'a> {
    /// A workspace.
    Workspace(&'a Workspace),
    /// An API key.
    ApiKey(&'a ApiKey),
    /// A group.
    Group(&'a Group),
}

struct Inner {
    tables: Arc<Tables>,
    queue: RwLock<Option<mpsc::Sender<Job>>>,
    /// Batches the writer has committed; see [`prefetch`].
    epoch: Arc<AtomicU64>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Raised when a commit fails; see [`writer`].
    fault: Arc<writer::Fault>,
    policy: Policy,
    path: PathBuf,
    /// Held (locked) for as long as the store is open.
    _lock: File,
}

/// The embedded store. Cloning is cheap: clones share the engine and the writer.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// Opens the store in `path`, creating the directory and the store if needed, and starts
    /// its writer, which stamps changes by `policy`'s clock.
    pub fn open(path: &Path, options: &EmbeddedOptions, policy: &Policy) -> Result<Self, StoreError> {
        // Owner-only: the directory holds personal data and the admin socket, whose access is
        // governed by who may enter the directory.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| StoreError::Open(format!("cannot create the data directory {}: {e}", path.display())))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(|e| StoreError::Open(format!("cannot open {}: {e}", path.join(LOCK_FILE).display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Open(format!("cannot lock {}: {e}", path.display())))
            }
        }

        let db = Database::builder(path.join(ENGINE_DIR)).cache_size(options.cache_bytes).worker_threads(1).open()?;
        let open = |name: &str| {
            let mib = KEYSPACES.iter().find(|(n, _)| *n == name).map_or(4, |(_, mib)| *mib);
            db.keyspace(name, || keyspace_options(mib))
        };
        let tables = Arc::new(Tables {
            catalog: open("catalog")?,
            profiles: open("profiles")?,
            profile_ids: open("profile_ids")?,
            emails: open("emails")?,
            phones: open("phones")?,
            orphans: open("orphans")?,
            changes: open("changes")?,
            changes_by_profile: open("changes_by_profile")?,
            changes_by_contact: open("changes_by_contact")?,
            chain_heads: open("chain_heads")?,
            chain_records: open("chain_records")?,
            meta: open("meta")?,
            outbox: open("outbox")?,
            stream: open("stream")?,
            // A store of an earlier release opens it empty, which is right: the global email
            // state did not exist then.
            email_unsubscribes: open("email_unsubscribes")?,
            outbox_next: AtomicU64::new(0),
            stream_wake: Arc::default(),
            db,
        });
        tables
            .outbox_next
            .store(crate::stream::outbox::next_position(&tables.outbox)?, std::sync::atomic::Ordering::Relaxed);

        upgrade::run(&tables)?;

        let (sender, receiver) = mpsc::channel(options.queue_depth.max(1));
        let writer_tables = Arc::clone(&tables);
        let epoch = Arc::new(AtomicU64::new(0));
        let writer_epoch = Arc::clone(&epoch);
        let config = writer::WriterConfig {
            durability: options.durability,
            max_batch: options.max_batch.max(1),
            policy: policy.clone(),
        };
        let fault = Arc::new(writer::Fault::default());
        let writer_fault = Arc::clone(&fault);
        let writer = std::thread::Builder::new()
            .name("consentry-writer".into())
            .spawn(move || writer::run(&writer_tables, receiver, &writer_epoch, &config, &writer_fault))
            .map_err(|e| StoreError::Open(format!("cannot start the writer thread: {e}")))?;
        let (watched, watch_fault) = (Arc::downgrade(&tables), Arc::clone(&fault));
        std::thread::Builder::new()
            .name("consentry-fault-watch".into())
            .spawn(move || writer::watch(watched, &watch_fault))
            .map_err(|e| StoreError::Open(format!("cannot start the fault watch thread: {e}")))?;

        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                tables,
                queue: RwLock::new(Some(sender)),
                epoch,
                writer: Mutex::new(Some(writer)),
                fault,
                policy: policy.clone(),
                path: path.to_path_buf(),
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    async fn submit(&self, op: Op) -> Result<Applied, StoreError> {
        let sender = self.inner.queue.read().expect("queue lock").clone().ok_or(StoreError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        sender.send(Job { op, reply }).await.map_err(|_| StoreError::ShuttingDown)?;
        answer.await.map_err(|_| StoreError::Internal("the writer stopped before answering".into()))?
    }

    /// See [`super::Store::set_status`].
    pub async fn set_status(&self, origin: Origin, command: SetStatusCommand) -> Result<Applied, StoreError> {
        // Read on the caller's thread, in parallel with the writer; see [`prefetch`].
        let ids = command.entries.iter().flat_map(|entry| entry.external_ids.iter());
        let prefetch = prefetch::Prefetch::read(self.tables(), &self.inner.epoch, origin.workspace_id, ids)?;
        self.submit(Op::SetStatus(origin, command, prefetch)).await
    }

    /// See [`super::Store::import_profiles`].
    pub async fn import_profiles(&self, ws: WorkspaceId, profiles: Vec<ProfileImport>) -> Result<Applied, StoreError> {
        self.submit(Op::Import(ws, profiles)).await
    }

    /// See [`super::Store::track`].
    pub async fn track(&self, origin: Origin, command: TrackCommand) -> Result<Applied, StoreError> {
        self.submit(Op::Track(origin, command)).await
    }

    /// See [`super::Store::delete_profiles`].
    pub async fn delete_profiles(&self, ws: WorkspaceId, external_ids: Vec<ExternalId>) -> Result<Applied, StoreError> {
        self.submit(Op::Delete(ws, external_ids)).await
    }

    /// See [`super::Store::expire_orphans`]. The scan hands the writer the expired keys in
    /// chunks ([`Self::scan_in_chunks`]); the writer checks each again against its own time.
    pub async fn expire_orphans(&self) -> Result<usize, StoreError> {
        let (retention, now) = (self.inner.policy.retention, self.inner.policy.clock.now());
        let scan = move |tables: &Tables, chunks: &mut Chunks<Vec<u8>>| {
            for item in tables.orphans.iter() {
                let found = item.into_inner().map_err(StoreError::from).and_then(|(key, value)| {
                    Ok((!retention.is_live(codec::decode_orphan(&value)?.1, now)).then(|| key.to_vec()))
                });
                if !chunks.take(found) {
                    return;
                }
            }
        };
        self.scan_in_chunks(1024, "the orphan sweep", scan, |chunk| async move {
            Ok(self.submit(Op::ExpireOrphans(chunk)).await?.orphans_deleted)
        })
        .await
    }

    /// See [`super::Store::expire_ledger`]. The scan reads each chain of the workspace from its
    /// anchor only as far as its records have expired, and hands the writer the cuts in chunks
    /// ([`Self::scan_in_chunks`]).
    pub async fn expire_ledger(
        &self,
        ws: WorkspaceId,
        cutoff: crate::domain::time::Timestamp,
    ) -> Result<usize, StoreError> {
        type Cut = (crate::domain::ledger::ChainKey, u64);
        let scan = move |tables: &Tables, chunks: &mut Chunks<Cut>| {
            let find = |key: &[u8], value: &[u8]| -> Result<Option<Cut>, StoreError> {
                let chain = codec::decode_chain_key(key)?;
                let head = codec::decode_head(value)?;
                let mut records = Vec::new();
                let from = codec::chain_record_key(&chain, head.anchor.seq + 1);
                let mut range = tables.chain_records.range(from..);
                // Records in a chain are in time order (one writer, a clock that never goes
                // back): reading stops at the first one kept.
                for entry in range.by_ref() {
                    let (record_key, id) = entry.into_inner()?;
                    if !record_key.starts_with(key) {
                        break;
                    }
                    let id = ChangeId::from_bytes(id.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                        what: "chain index",
                        detail: "change id is not 16 bytes".into(),
                    })?);
                    let change_key = codec::change_key(chain.workspace_id, id);
                    let Some(bytes) = tables.changes.get(&change_key)? else { break };
                    let record = codec::decode_change(&change_key, &bytes)?;
                    if record.at >= cutoff || record.seq >= head.seq {
                        break;
                    }
                    records.push((record.seq, record.at));
                }
                Ok(crate::domain::ledger::expire_through(&head, records, cutoff).map(|through| (chain, through)))
            };
            for item in tables.chain_heads.prefix(ws.as_bytes()) {
                let found = item.into_inner().map_err(StoreError::from).and_then(|(key, value)| find(&key, &value));
                if !chunks.take(found) {
                    return;
                }
            }
        };
        self.scan_in_chunks(256, "the ledger retention scan", scan, |chunk| async move {
            Ok(self.submit(Op::ExpireLedger(chunk)).await?.records_expired)
        })
        .await
    }

    /// Runs `scan` over the tables on a blocking thread and hands what it finds to `apply` (a
    /// writer op) in chunks of `size` while it goes on, so that writes never wait behind a
    /// whole scan and memory stays a couple of chunks. Returns the sum of `apply`'s counts;
    /// the first error, of the scan or of `apply`, ends it.
    async fn scan_in_chunks<T, F>(
        &self,
        size: usize,
        what: &'static str,
        scan: impl FnOnce(&Tables, &mut Chunks<T>) + Send + 'static,
        mut apply: impl FnMut(Vec<T>) -> F,
    ) -> Result<usize, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<usize, StoreError>>,
    {
        let tables = Arc::clone(&self.inner.tables);
        let (sender, mut received) = mpsc::channel::<Result<Vec<T>, StoreError>>(2);
        let task = tokio::task::spawn_blocking(move || {
            let mut chunks = Chunks { chunk: Vec::with_capacity(size), size, sender };
            scan(&tables, &mut chunks);
            if !chunks.chunk.is_empty() {
                let _ = chunks.sender.blocking_send(Ok(chunks.chunk));
            }
        });
        let mut total = 0;
        while let Some(chunk) = received.recv().await {
            total += apply(chunk?).await?;
        }
        task.await.map_err(|e| StoreError::Internal(format!("{what} stopped: {e}")))?;
        Ok(total)
    }

    /// See [`super::Store::readiness`]: the writer's queue is open and the writer still takes
    /// from it (a writer that died has dropped its end).
    pub fn readiness(&self) -> Result<(), StoreError> {
        match self.inner.queue.read().expect("queue lock").as_ref() {
            Some(sender) if !sender.is_closed() => Ok(()),
            _ => Err(StoreError::ShuttingDown),
        }
    }

    /// Completes when the store has had a storage fault and takes no more writes (see
    /// [`writer`]).
    pub async fn storage_fault(&self) {
        self.inner.fault.wait().await;
    }

    /// Writes a consistent copy of the store into `to` (new or empty) while it keeps serving,
    /// counting entries copied in `progress`; see [`backup`].
    pub async fn backup(&self, to: &Path, progress: Arc<AtomicU64>) -> Result<backup::Manifest, StoreError> {
        let (tables, to) = (Arc::clone(&self.inner.tables), to.to_path_buf());
        tokio::task::spawn_blocking(move || backup::write(&tables, &to, &progress))
            .await
            .map_err(|e| StoreError::Internal(format!("the backup stopped: {e}")))?
    }

    /// See [`super::Store::close`].
    pub async fn close(&self) {
        drop(self.inner.queue.write().expect("queue lock").take());
        let writer = self.inner.writer.lock().expect("writer lock").take();
        if let Some(writer) = writer {
            let joined = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the writer thread panicked");
            }
        }
        // After a fault the journal is left as it is, for the next start to replay.
        if self.inner.fault.raised() {
            return;
        }
        if let Err(err) = self.tables().db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %err, "final persist failed");
        }
    }

    /// See [`super::Store::load_catalog`].
    pub fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        let mut data = CatalogData::default();
        for item in self.tables().catalog.iter() {
            let (key, value) = item.into_inner()?;
            let corrupt = |e: serde_json::Error| StoreError::Corrupt { what: "catalog", detail: e.to_string() };
            match key.first() {
                Some(b'w') => data.workspaces.push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(b'k') => data.api_keys.push(serde_json::from_slice(&value).map_err(corrupt)?),
                Some(b'g') => data.groups.push(serde_json::from_slice(&value).map_err(corrupt)?),
                _ => return Err(StoreError::Corrupt { what: "catalog", detail: "unknown key kind".into() }),
            }
        }
        Ok(data)
    }

    /// Stores a catalog entry durably. Catalog writes are rare and small, so they bypass the
    /// writer and are synced on their own, on a blocking thread.
    pub async fn put_catalog_item(&self, item: CatalogItem<'_>) -> Result<(), StoreError> {
        let (kind, id, value) = match item {
            CatalogItem::Workspace(w) => (b'w', *w.id.as_bytes(), serde_json::to_vec(w)),
            CatalogItem::ApiKey(k) => (b'k', *k.id.as_bytes(), serde_json::to_vec(k)),
            CatalogItem::Group(g) => (b'g', *g.id.as_bytes(), serde_json::to_vec(g)),
        };
        let value = value.map_err(|e| StoreError::Internal(format!("a catalog item did not encode: {e}")))?;
        let mut key = Vec::with_capacity(17);
        key.push(kind);
        key.extend_from_slice(&id);
        let tables = Arc::clone(&self.inner.tables);
        let committed = tokio::task::spawn_blocking(move || {
            let mut batch = tables.db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(&tables.catalog, key, value);
            batch.commit()
        })
        .await
        .map_err(|e| StoreError::Internal(format!("the catalog write stopped: {e}")))?;
        if let Err(err) = committed {
            // The engine is poisoned as it is after a failed commit of the writer's.
            tracing::error!(error = %crate::store::report(&err), "storage fault: a catalog write failed; the server exits");
            self.inner.fault.raise();
            return Err(err.into());
        }
        Ok(())
    }

    fn view(external_id: &str, record: ProfileRecord) -> ProfileView {
        ProfileView {
            id: record.id,
            external_id: Some(external_id.to_string()),
            email: record.email,
            phone: record.phone,
            states: record.states,
        }
    }

    /// See [`super::Inspect::profile_by_external_id`].
    pub fn profile_by_external_id(
        &self,
        ws: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ProfileView>, StoreError> {
        match self.tables().profiles.get(codec::profile_key(ws, external_id))? {
            Some(bytes) => Ok(Some(Self::view(external_id, ProfileRecord::decode(&bytes)?))),
            None => Ok(None),
        }
    }

    /// See [`super::Inspect::profiles_by_contact`].
    pub fn profiles_by_contact(&self, ws: WorkspaceId, contact: &Contact) -> Result<Vec<ProfileView>, StoreError> {
        let index = match contact {
            Contact::Email(_) => &self.tables().emails,
            Contact::Phone(_) => &self.tables().phones,
        };
        let mut out = Vec::new();
        for item in index.prefix(codec::contact_prefix(ws, contact.as_str())) {
            let external_id = item.value()?;
            let external_id = String::from_utf8(external_id.to_vec()).map_err(|_| StoreError::Corrupt {
                what: "contact index",
                detail: "external id is not UTF-8".into(),
            })?;
            if let Some(view) = self.profile_by_external_id(ws, &external_id)? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// A page of `GET /email/unsubscribes`, read from the unsubscribe index: a point read for
    /// one email, else a range of the time-ordered entries (never a scan of the workspace).
    pub fn unsubscribes(
        &self,
        ws: WorkspaceId,
        query: &crate::domain::email::UnsubscribesQuery,
    ) -> Result<Vec<crate::domain::email::Unsubscribe>, StoreError> {
        use crate::domain::email::Unsubscribe;
        let table = &self.tables().email_unsubscribes;
        let since = query.since.unwrap_or(crate::domain::time::Timestamp(0));
        if let Some(email) = &query.email {
            let Some(bytes) = table.get(codec::unsubscribe_email_key(ws, email.as_str()))? else {
                return Ok(Vec::new());
            };
            let at = codec::decode_unsubscribed_at(&bytes)?;
            let found =
                (since <= at && at < query.until).then(|| Unsubscribe { email: email.as_str().to_string(), at });
            return Ok(found.into_iter().skip(query.offset).take(query.limit).collect());
        }
        let prefix = codec::unsubscribe_time_prefix(ws);
        let start = codec::unsubscribe_time_key(ws, since, "");
        let end = codec::unsubscribe_time_key(ws, query.until, "");
        let range = table.range(start..end);
        let items: Box<dyn Iterator<Item = _>> = if query.ascending { Box::new(range) } else { Box::new(range.rev()) };
        let mut out = Vec::with_capacity(query.limit.min(64));
        for item in items.skip(query.offset).take(query.limit) {
            let key = item.key()?;
            let rest = &key[prefix.len()..];
            let corrupt = || StoreError::Corrupt { what: "unsubscribe index", detail: "short key".into() };
            let at = crate::domain::time::Timestamp(i64::from_be_bytes(
                rest.get(..8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?,
            ));
            let email = std::str::from_utf8(&rest[8..]).map_err(|_| corrupt())?;
            out.push(Unsubscribe { email: email.to_string(), at });
        }
        Ok(out)
    }

    /// One contact's carriers, or its orphaned states when it has none.
    pub fn contact_view(&self, ws: WorkspaceId, contact: &Contact) -> Result<ContactView, StoreError> {
        let carriers = self.profiles_by_contact(ws, contact)?;
        let orphans = if carriers.is_empty() { self.orphan_states(ws, contact)? } else { Vec::new() };
        Ok(ContactView { carriers, orphans })
    }

    /// See [`super::Inspect::orphan_states`].
    pub fn orphan_states(&self, ws: WorkspaceId, contact: &Contact) -> Result<Vec<StateView>, StoreError> {
        let mut out = Vec::new();
        for item in self.tables().orphans.prefix(codec::orphan_prefix(ws, contact)) {
            let (key, value) = item.into_inner()?;
            let (state, updated_at) = codec::decode_orphan(&value)?;
            out.push(StateView { group_id: codec::orphan_key_group(&key)?, state, updated_at });
        }
        Ok(out)
    }

    /// The change stream's keyspaces (see `crate::stream::embedded`).
    /// What the writer wakes after each commit (see `crate::stream::relay`).
    pub(crate) fn stream_wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.tables().stream_wake)
    }

    pub(crate) fn stream_parts(&self) -> crate::stream::embedded::Parts<'_> {
        let tables = self.tables();
        crate::stream::embedded::Parts {
            db: &tables.db,
            outbox: &tables.outbox,
            stream: &tables.stream,
            changes: &tables.changes,
            outbox_next: &tables.outbox_next,
        }
    }

    /// See [`super::Inspect::change_records`].
    pub fn change_records(&self, ws: WorkspaceId) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.tables().changes.prefix(ws.as_bytes()) {
            let (key, value) = item.into_inner()?;
            out.push(codec::decode_change(&key, &value)?);
        }
        Ok(out)
    }

    /// Walks every chain (of workspace `ws`, or of all) and checks every record against its
    /// hash, its predecessor and its chain's head, calling `progress` with the records checked
    /// so far. Memory stays one record: chains are walked through `chain_records`. It reads
    /// one snapshot, so writes going on meanwhile neither show nor break a chain.
    pub fn verify_ledger(&self, ws: Option<WorkspaceId>, progress: &AtomicU64) -> Result<LedgerCheck, StoreError> {
        use fjall::Readable;
        let tables = self.tables();
        let snapshot = tables.db.snapshot();
        let mut check = LedgerCheck::default();
        let heads = match ws {
            Some(ws) => snapshot.prefix(&tables.chain_heads, ws.as_bytes()),
            None => snapshot.iter(&tables.chain_heads),
        };
        for item in heads {
            let (key, value) = item.into_inner()?;
            let chain = codec::decode_chain_key(&key)?;
            let head = codec::decode_head(&value)?;
            check.chains += 1;
            let mut verifier = ChainVerifier::new(head.anchor);
            let mut outcome = Ok(());
            for entry in snapshot.prefix(&tables.chain_records, &key) {
                let (_, id) = entry.into_inner()?;
                let id = ChangeId::from_bytes(id.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    what: "chain index",
                    detail: "change id is not 16 bytes".into(),
                })?);
                let change_key = codec::change_key(chain.workspace_id, id);
                let Some(bytes) = snapshot.get(&tables.changes, &change_key)? else {
                    outcome = Err(BadRecord { id, why: Break::Sequence });
                    break;
                };
                // A record too damaged to read is as altered as one that reads wrong.
                let Ok(record) = codec::decode_change(&change_key, &bytes) else {
                    outcome = Err(BadRecord { id, why: Break::Hash });
                    break;
                };
                check.records += 1;
                if check.records % 1_000 == 0 {
                    progress.store(check.records, std::sync::atomic::Ordering::Relaxed);
                }
                outcome = verifier.check(&record);
                if outcome.is_err() {
                    break;
                }
            }
            if let Err(bad) = outcome.and_then(|()| verifier.finish(&head)) {
                check.first_bad = Some((chain, bad));
                break;
            }
        }
        progress.store(check.records, std::sync::atomic::Ordering::Relaxed);
        Ok(check)
    }
}

/// What a blocking scan of [`EmbeddedStore::scan_in_chunks`] has found and not handed over yet.
struct Chunks<T> {
    chunk: Vec<T>,
    size: usize,
    sender: mpsc::Sender<Result<Vec<T>, StoreError>>,
}

impl<T> Chunks<T> {
    /// Takes one scanned entry's outcome (something found, nothing, or an error), sending a
    /// full chunk on. `false` when the scan must stop: an error (sent on), or nobody listens.
    fn take(&mut self, found: Result<Option<T>, StoreError>) -> bool {
        match found {
            Ok(Some(item)) => self.chunk.push(item),
            Ok(None) => {}
            Err(err) => {
                let _ = self.sender.blocking_send(Err(err));
                return false;
            }
        }
        self.chunk.len() < self.size || self.sender.blocking_send(Ok(std::mem::take(&mut self.chunk))).is_ok()
    }
}
