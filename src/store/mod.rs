//! The storage seam: one [`Store`] with an implementation per engine.
//!
//! A store offers batched primitives (fetch the facts a command needs, write a plan atomically)
//! and keeps the catalog; the rules themselves live in [`crate::domain::plan`], once. Two
//! engines: the embedded one ([`embedded`], on the fjall LSM engine, the default) and
//! [`postgres`], which several server processes can share.

pub mod embedded;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::change::{ChangeRecord, Contact};
use crate::domain::history::Window;
use crate::domain::identifiers::ExternalId;
use crate::domain::ids::{GroupId, ProfileId, WorkspaceId};
use crate::domain::plan::Origin;
use crate::domain::retention::Retention;
use crate::domain::set_status::SetStatusCommand;
use crate::domain::tenant::{Admission, ApiKey, Group, Workspace, WorkspaceChange};
use crate::domain::time::Clock;
use crate::domain::track::TrackCommand;

pub use crate::domain::read::{ContactView, ProfileView};
pub use crate::domain::subscription::StateView;
pub use embedded::EmbeddedStore;
pub use postgres::PostgresStore;

/// Where the data lives, as given by `--database` or `CONSENTRY_DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// The embedded store in this directory.
    Embedded(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl std::fmt::Display for DatabaseLocation {
    /// The location for logs and messages: a directory as it is, a URL as `host:port/database`
    /// only, so that a password in it is never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseLocation::Embedded(path) => write!(f, "{}", path.display()),
            DatabaseLocation::Postgres(url) => match postgres::connection_config(url, &PostgresOptions::default()) {
                Ok(config) => write!(f, "postgres://{}", postgres::describe(&config)),
                Err(_) => f.write_str("postgres://(invalid URL)"),
            },
        }
    }
}

impl DatabaseLocation {
    /// Reads `postgres://…`/`postgresql://…` as PostgreSQL and anything else as a directory.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("the database location is empty".into());
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(DatabaseLocation::Postgres(raw.to_string()))
        } else if raw.contains("://") {
            Err(format!(
                "unsupported database URL scheme in {:?}: use a directory path (embedded store)",
                raw.split("://").next().unwrap_or_default()
            ))
        } else {
            Ok(DatabaseLocation::Embedded(PathBuf::from(raw)))
        }
    }
}

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// Every batch is fsynced before any request in it is answered: an acknowledged write
    /// survives a process crash and a power loss.
    #[default]
    Sync,
    /// Every batch is handed to the operating system before it is answered: an acknowledged
    /// write survives a process crash (kill -9) but not a power loss or kernel crash.
    Buffered,
}

/// Tuning of the stores, one part per engine, with defaults fit for a two-core machine. How
/// long orphaned state lives is not here: that is domain policy
/// ([`crate::domain::retention::Retention`]), given to [`Store::open`] beside the clock.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// The embedded store's tuning.
    pub embedded: EmbeddedOptions,
    /// The PostgreSQL store's tuning.
    pub postgres: PostgresOptions,
}

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Commit durability.
    pub durability: Durability,
    /// Most requests committed together in one batch.
    pub max_batch: usize,
    /// Requests waiting for the writer before new ones wait to be queued.
    pub queue_depth: usize,
    /// Block cache of the engine, in bytes.
    pub cache_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { durability: Durability::Sync, max_batch: 64, queue_depth: 1024, cache_bytes: 24 << 20 }
    }
}

/// Tuning of the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections the store opens.
    pub pool_size: usize,
    /// Longest a statement may run before the server cancels it.
    pub statement_timeout: std::time::Duration,
    /// Most write transactions one process runs at once; the others wait their turn without
    /// holding a connection.
    pub max_concurrent_writes: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: std::time::Duration::from_secs(5),
            max_concurrent_writes: 2,
        }
    }
}

/// What the domain decides and a store applies: the time it stamps changes with and how long
/// orphaned state lives.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Where the store reads the time.
    pub clock: Clock,
    /// How long orphaned identifier state counts after its last change.
    pub retention: Retention,
}

/// A failure of the storage layer. These are never the client's fault: they answer 500, or 503
/// while shutting down or while the database is unreachable.
///
/// Variants that wrap an engine's or a driver's error keep it as their
/// [`source`](std::error::Error::source) and do not repeat it in their own message: print the
/// whole chain with [`report`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The embedded engine failed (I/O error, full disk…).
    #[error("storage engine error")]
    Engine(#[from] fjall::Error),
    /// A batch of writes could not be committed; every request in it gets this error, sharing
    /// the engine's one.
    #[error("the batch could not be committed")]
    Commit(#[source] Arc<fjall::Error>),
    /// PostgreSQL refused a statement for a reason that is no one's fault but the service's.
    #[error("PostgreSQL refused a statement")]
    Postgres(#[source] tokio_postgres::Error),
    /// The service itself failed (a task or thread stopped, a value did not encode).
    #[error("{0}")]
    Internal(String),
    /// Stored bytes did not decode: a bug or a damaged store.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The store is shutting down and takes no more writes.
    #[error("the store is shutting down")]
    ShuttingDown,
    /// The database cannot be reached, dropped the connection or did not answer in time. The
    /// server keeps running and reconnects when the database is back; a client may retry.
    #[error("the database is unavailable: {reason}")]
    Unavailable {
        /// What was unavailable, for people.
        reason: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// A connection to PostgreSQL could not be made.
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        /// `host:port/database`, never a password.
        target: String,
        /// Why.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Another process holds the embedded store in this directory.
    #[error("the store in {} is in use by another Consentry process", .0.display())]
    Locked(PathBuf),
    /// A new catalog item collides with one another process stored (a name, a limit).
    #[error("{0}")]
    Refused(String),
    /// The store could not be opened.
    #[error("{0}")]
    Open(String),
}

/// An error with every cause in its source chain, `: `-separated: for logs and for messages
/// that must say why, not only what.
pub fn report(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The catalog as stored: read whole at start-up, it is small (workspaces, keys, groups).
#[derive(Debug, Clone, Default)]
pub struct CatalogData {
    /// All workspaces.
    pub workspaces: Vec<Workspace>,
    /// All API keys, revoked ones too.
    pub api_keys: Vec<ApiKey>,
    /// All groups, archived ones too.
    pub groups: Vec<Group>,
}

/// A profile to load in bulk (seeding a store for tests, benchmarks and imports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileImport {
    /// External id; a profile that already has it is updated.
    pub external_id: ExternalId,
    /// Email.
    pub email: Option<crate::domain::identifiers::Email>,
    /// Phone.
    pub phone: Option<crate::domain::identifiers::Phone>,
}

/// Whose records a read of the ledger covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerSources {
    /// These profiles' records and these emails' and phones' orphaned records.
    Subjects {
        /// Profiles.
        profiles: Vec<ProfileId>,
        /// Orphaned emails and phones.
        contacts: Vec<Contact>,
    },
    /// Every record of the workspace (the export).
    Workspace,
}

/// A read of the ledger: the records of `sources` in `window` and `groups`, the first `limit`
/// of them in the ledger's order (time, then record id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRead {
    /// Whose records.
    pub sources: LedgerSources,
    /// Only these groups' records; `None`: every group.
    pub groups: Option<Vec<GroupId>>,
    /// Time bounds and the position to start after.
    pub window: Window,
    /// Most records returned.
    pub limit: usize,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Profiles created.
    pub profiles_created: usize,
    /// States changed (change records written).
    pub changes: usize,
    /// Profiles deleted.
    pub profiles_deleted: usize,
    /// Orphaned states deleted.
    pub orphans_deleted: usize,
    /// Change records deleted by ledger retention.
    pub records_expired: usize,
}

/// The store: one enum, one variant per engine, so that callers never know which runs.
#[derive(Clone)]
pub enum Store {
    /// The embedded fjall store.
    Embedded(EmbeddedStore),
    /// The PostgreSQL store.
    Postgres(PostgresStore),
}

impl Store {
    /// Opens (creating if needed) the store at `location`, applying `policy`.
    pub async fn open(
        location: &DatabaseLocation,
        options: &StoreOptions,
        policy: &Policy,
    ) -> Result<Store, StoreError> {
        match location {
            DatabaseLocation::Embedded(path) => {
                // Opening replays the engine's journal: disk work, off the async threads.
                let (path, options, policy) = (path.clone(), options.embedded.clone(), policy.clone());
                let opened = tokio::task::spawn_blocking(move || EmbeddedStore::open(&path, &options, &policy)).await;
                Ok(Store::Embedded(
                    opened.map_err(|e| StoreError::Internal(format!("opening the store stopped: {e}")))??,
                ))
            }
            DatabaseLocation::Postgres(url) => {
                Ok(Store::Postgres(PostgresStore::open(url, &options.postgres, policy).await?))
            }
        }
    }

    /// Reads the whole catalog (at start-up, and periodically on a database other processes
    /// change too).
    pub async fn load_catalog(&self) -> Result<CatalogData, StoreError> {
        match self {
            Store::Embedded(s) => s.load_catalog(),
            Store::Postgres(s) => s.load_catalog().await,
        }
    }

    /// Creates or replaces a workspace, durably.
    pub async fn put_workspace(&self, workspace: &Workspace) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put_catalog_item(embedded::CatalogItem::Workspace(workspace)).await,
            Store::Postgres(s) => s.put_workspace(workspace).await,
        }
    }

    /// Applies `change` to the workspace as stored and returns the result; `changed` is the
    /// catalog's copy with the change applied. The embedded store has one process, so that
    /// copy is the stored workspace changed; PostgreSQL reads and writes the stored one in one
    /// transaction, keeping what other processes changed meanwhile.
    pub async fn change_workspace(
        &self,
        changed: &Workspace,
        change: &WorkspaceChange,
    ) -> Result<Workspace, StoreError> {
        match self {
            Store::Embedded(s) => {
                s.put_catalog_item(embedded::CatalogItem::Workspace(changed)).await?;
                Ok(changed.clone())
            }
            Store::Postgres(s) => s.change_workspace(changed.id, change).await,
        }
    }

    /// Creates or replaces an API key, durably.
    pub async fn put_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put_catalog_item(embedded::CatalogItem::ApiKey(key)).await,
            Store::Postgres(s) => s.put_api_key(key).await,
        }
    }

    /// Creates a workspace, durably, unless it breaks `admission` against what is stored;
    /// [`StoreError::Refused`] then says why. The embedded store has one process, whose
    /// catalog has checked it already; PostgreSQL checks again in the inserting transaction.
    pub async fn insert_workspace(&self, workspace: &Workspace, admission: &Admission) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put_catalog_item(embedded::CatalogItem::Workspace(workspace)).await,
            Store::Postgres(s) => s.insert_workspace(workspace, admission).await,
        }
    }

    /// Creates a group, durably, unless it breaks `admission` (as [`Store::insert_workspace`]).
    pub async fn insert_group(&self, group: &Group, admission: &Admission) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put_catalog_item(embedded::CatalogItem::Group(group)).await,
            Store::Postgres(s) => s.insert_group(group, admission).await,
        }
    }

    /// Creates or replaces a group, durably.
    pub async fn put_group(&self, group: &Group) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put_catalog_item(embedded::CatalogItem::Group(group)).await,
            Store::Postgres(s) => s.put_group(group).await,
        }
    }

    /// Applies a validated set command atomically and durably.
    pub async fn set_status(&self, origin: Origin, command: SetStatusCommand) -> Result<Applied, StoreError> {
        match self {
            Store::Embedded(s) => s.set_status(origin, command).await,
            Store::Postgres(s) => s.set_status(origin, command).await,
        }
    }

    /// Applies a validated `/users/track` command atomically and durably.
    pub async fn track(&self, origin: Origin, command: TrackCommand) -> Result<Applied, StoreError> {
        match self {
            Store::Embedded(s) => s.track(origin, command).await,
            Store::Postgres(s) => s.track(origin, command).await,
        }
    }

    /// Deletes the profiles of these external ids with their states, atomically and durably;
    /// `Applied::profiles_deleted` counts those that existed.
    pub async fn delete_profiles(
        &self,
        workspace: WorkspaceId,
        external_ids: Vec<ExternalId>,
    ) -> Result<Applied, StoreError> {
        match self {
            Store::Embedded(s) => s.delete_profiles(workspace, external_ids).await,
            Store::Postgres(s) => s.delete_profiles(workspace, external_ids).await,
        }
    }

    /// Deletes the orphaned states that have expired now (by the store's clock and retention),
    /// in every workspace; returns how many it deleted. Safe to run concurrently with writes
    /// and with itself: each state is checked again at the moment it is deleted.
    pub async fn expire_orphans(&self) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(s) => s.expire_orphans().await,
            Store::Postgres(s) => s.expire_orphans().await,
        }
    }

    /// Ledger retention: deletes the change records of `workspace` older than `cutoff`, but for
    /// the latest of each chain, and records in each chain's head the anchor its kept records
    /// follow (see [`crate::domain::ledger::expire_through`]); returns how many it deleted.
    /// Safe to run concurrently with writes: each chain is checked again as it is cut.
    pub async fn expire_ledger(
        &self,
        workspace: WorkspaceId,
        cutoff: crate::domain::time::Timestamp,
    ) -> Result<usize, StoreError> {
        match self {
            Store::Embedded(s) => s.expire_ledger(workspace, cutoff).await,
            Store::Postgres(s) => s.expire_ledger(workspace, cutoff).await,
        }
    }

    /// Creates or updates profiles in bulk, atomically.
    pub async fn import_profiles(
        &self,
        workspace: WorkspaceId,
        profiles: Vec<ProfileImport>,
    ) -> Result<Applied, StoreError> {
        match self {
            Store::Embedded(s) => s.import_profiles(workspace, profiles).await,
            Store::Postgres(s) => s.import_profiles(workspace, profiles).await,
        }
    }

    /// The profiles of these external ids, in the same order (`None`: no such profile).
    pub async fn read_profiles(
        &self,
        workspace: WorkspaceId,
        external_ids: &[&ExternalId],
    ) -> Result<Vec<Option<ProfileView>>, StoreError> {
        match self {
            Store::Embedded(s) => {
                external_ids.iter().map(|id| s.profile_by_external_id(workspace, id.as_str())).collect()
            }
            Store::Postgres(s) => s.read_profiles(workspace, external_ids).await,
        }
    }

    /// What is known of these emails and phones, in the same order.
    pub async fn read_contacts(
        &self,
        workspace: WorkspaceId,
        contacts: &[&Contact],
    ) -> Result<Vec<ContactView>, StoreError> {
        match self {
            Store::Embedded(s) => contacts.iter().map(|contact| s.contact_view(workspace, contact)).collect(),
            Store::Postgres(s) => s.read_contacts(workspace, contacts).await,
        }
    }

    /// A page of `GET /email/unsubscribes`, read through the unsubscribe index.
    pub async fn unsubscribes(
        &self,
        workspace: WorkspaceId,
        query: &crate::domain::email::UnsubscribesQuery,
    ) -> Result<Vec<crate::domain::email::Unsubscribe>, StoreError> {
        match self {
            Store::Embedded(s) => s.unsubscribes(workspace, query),
            Store::Postgres(s) => s.unsubscribes(workspace, query).await,
        }
    }

    /// A page of the ledger: see [`LedgerRead`]. A subject's records are read through its
    /// indexes, never by scanning the workspace.
    pub async fn ledger_records(
        &self,
        workspace: WorkspaceId,
        read: LedgerRead,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        match self {
            Store::Embedded(s) => s.ledger_records(workspace, read).await,
            Store::Postgres(s) => s.ledger_records(workspace, &read).await,
        }
    }

    /// A ledger subject as it is identified now: its profiles and the emails and phones whose
    /// orphaned records belong to it (see [`crate::domain::history`]).
    pub async fn ledger_subject(
        &self,
        workspace: WorkspaceId,
        subject: &crate::domain::history::HistorySubject,
    ) -> Result<(Vec<ProfileView>, Vec<Contact>), StoreError> {
        use crate::domain::history::HistorySubject;
        use crate::domain::identifiers::{Email, Phone};
        match subject {
            HistorySubject::ExternalId(id) => {
                let Some(profile) = self.read_profiles(workspace, &[id]).await?.pop().flatten() else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let corrupt = |e: crate::domain::identifiers::IdentifierError| StoreError::Corrupt {
                    what: "profile",
                    detail: format!("stored identifier: {e}"),
                };
                let mut contacts = Vec::new();
                if let Some(email) = &profile.email {
                    contacts.push(Contact::Email(Email::parse(email).map_err(corrupt)?));
                }
                if let Some(phone) = &profile.phone {
                    contacts.push(Contact::Phone(Phone::parse(phone).map_err(corrupt)?));
                }
                Ok((vec![profile], contacts))
            }
            HistorySubject::Contact(contact) => {
                let view = self.read_contacts(workspace, &[contact]).await?.pop().unwrap_or_default();
                Ok((view.carriers, vec![contact.clone()]))
            }
        }
    }

    /// The stored heads of these chains (all of `workspace`): where each ends (seq, hash) and
    /// the anchor its kept records follow. A chain with no record has no head.
    pub async fn chain_heads(
        &self,
        workspace: WorkspaceId,
        chains: &[crate::domain::ledger::ChainKey],
    ) -> Result<std::collections::HashMap<crate::domain::ledger::ChainKey, crate::domain::ledger::ChainHead>, StoreError>
    {
        match self {
            Store::Embedded(s) => s.chain_heads(chains),
            Store::Postgres(s) => s.chain_heads(workspace, chains).await,
        }
    }

    /// What wakes the change stream's relay when something becomes deliverable.
    pub fn stream_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        match self {
            Store::Embedded(s) => s.stream_wake(),
            Store::Postgres(s) => s.stream_wake(),
        }
    }

    /// Wakes [`Store::stream_wake`] on the commits of other processes until dropped:
    /// PostgreSQL's notifications (any node's); nothing to do on the embedded store, whose
    /// only writer wakes it itself.
    pub async fn listen_stream(&self) {
        match self {
            Store::Embedded(_) => std::future::pending().await,
            Store::Postgres(s) => s.listen_stream().await,
        }
    }

    /// The current external ids of these profiles; a deleted profile is absent.
    pub async fn external_ids_of(
        &self,
        workspace: WorkspaceId,
        profiles: &[ProfileId],
    ) -> Result<std::collections::HashMap<ProfileId, String>, StoreError> {
        match self {
            Store::Embedded(s) => s.external_ids_of(workspace, profiles),
            Store::Postgres(s) => s.external_ids_of(workspace, profiles).await,
        }
    }

    /// Walks every chain of the ledger (of one workspace, or of all) and reports the first
    /// record whose hash or link does not hold; `progress` counts the records checked.
    pub async fn verify_ledger(
        &self,
        workspace: Option<WorkspaceId>,
        progress: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<crate::domain::ledger::LedgerCheck, StoreError> {
        match self {
            Store::Embedded(s) => {
                let store = s.clone();
                tokio::task::spawn_blocking(move || store.verify_ledger(workspace, &progress))
                    .await
                    .map_err(|e| StoreError::Internal(format!("the ledger walk stopped: {e}")))?
            }
            Store::Postgres(s) => s.verify_ledger(workspace, &progress).await,
        }
    }

    /// Reads for tests and tools that look at what a store holds beyond what the API shows
    /// (change records, orphaned states as stored). Not part of the service: no request path
    /// calls it.
    #[doc(hidden)]
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect { store: self }
    }

    /// Whether the store accepts writes now (`GET /readyz`): the embedded writer runs; the
    /// PostgreSQL database answers and is a primary, not a standby.
    pub async fn readiness(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.readiness(),
            Store::Postgres(s) => s.readiness().await,
        }
    }

    /// Sets the store's gauges for a Prometheus scrape (see [`crate::telemetry`]).
    pub fn record_gauges(&self) {
        match self {
            Store::Embedded(s) => s.record_gauges(),
            Store::Postgres(s) => s.record_gauges(),
        }
    }

    /// Writes a consistent copy of an embedded store into `to` (new or empty) while it keeps
    /// serving, counting entries copied in `progress` (see `embedded::backup`). A PostgreSQL
    /// database is backed up with PostgreSQL's own tools, which this refuses naming.
    pub async fn backup(
        &self,
        to: &Path,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<embedded::backup::Manifest, StoreError> {
        match self {
            Store::Embedded(s) => s.backup(to, progress).await,
            Store::Postgres(_) => Err(StoreError::Refused(POSTGRES_BACKUP.into())),
        }
    }

    /// Completes when the store has had a storage fault after which it takes no more writes:
    /// a failed commit of the embedded store (see `embedded::writer`). Never for PostgreSQL,
    /// whose outages are waited out and retried instead, not crashed on.
    pub async fn storage_fault(&self) {
        match self {
            Store::Embedded(s) => s.storage_fault().await,
            Store::Postgres(_) => std::future::pending().await,
        }
    }

    /// Stops taking writes, commits what is queued and waits for the writer to finish.
    pub async fn close(&self) {
        match self {
            Store::Embedded(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// Why `consentry backup` does not copy a PostgreSQL database.
pub const POSTGRES_BACKUP: &str = "a PostgreSQL store is backed up with PostgreSQL's own tools: pg_basebackup with \
     WAL archiving (a physical copy, restorable to any point in time) or pg_dump (a consistent logical snapshot); \
     see \"Backups\" in the README";

/// What [`Store::inspect`] reads: the store as stored, for tests and tools.
#[doc(hidden)]
pub struct Inspect<'a> {
    store: &'a Store,
}

impl Inspect<'_> {
    /// The profile with this external id.
    pub async fn profile_by_external_id(
        &self,
        workspace: WorkspaceId,
        external_id: &str,
    ) -> Result<Option<ProfileView>, StoreError> {
        match self.store {
            Store::Embedded(s) => s.profile_by_external_id(workspace, external_id),
            Store::Postgres(s) => s.profile_by_external_id(workspace, external_id).await,
        }
    }

    /// The profiles that carry this email or phone.
    pub async fn profiles_by_contact(
        &self,
        workspace: WorkspaceId,
        contact: &Contact,
    ) -> Result<Vec<ProfileView>, StoreError> {
        match self.store {
            Store::Embedded(s) => s.profiles_by_contact(workspace, contact),
            Store::Postgres(s) => s.profiles_by_contact(workspace, contact).await,
        }
    }

    /// The orphaned states of an email or phone, expired ones included.
    pub async fn orphan_states(&self, workspace: WorkspaceId, contact: &Contact) -> Result<Vec<StateView>, StoreError> {
        match self.store {
            Store::Embedded(s) => s.orphan_states(workspace, contact),
            Store::Postgres(s) => s.orphan_states(workspace, contact).await,
        }
    }

    /// The workspace's change records, oldest first.
    pub async fn change_records(&self, workspace: WorkspaceId) -> Result<Vec<ChangeRecord>, StoreError> {
        match self.store {
            Store::Embedded(s) => s.change_records(workspace),
            Store::Postgres(s) => s.change_records(workspace).await,
        }
    }
}
