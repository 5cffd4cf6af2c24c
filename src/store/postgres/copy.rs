//! Copying a whole embedded store into PostgreSQL (`consentry migrate-store`).
//!
//! A reader thread walks each source table of the embedded store in key order and turns its
//! entries into batches of column arrays; this side writes each batch with one
//! `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO NOTHING` per target table, in a transaction
//! that also moves the table's checkpoint (`store_copy_progress`) to the batch's last key. A
//! copy that stops anywhere therefore resumes exactly after its last committed batch, and a
//! batch is never written twice. The catalog goes first; the other tables then go side by side,
//! each on a connection of its own.
//!
//! The database records which store it holds a copy of (`store_copy`) by the source's content
//! fingerprint: a copy resumes only from a store with exactly the content it began with (the
//! same store, untouched since), and a database that holds anything else (another store's copy,
//! or data a server wrote) is refused before anything is written. At the end, the counts of
//! every kind are compared with the source's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_postgres::{Client, IsolationLevel, Transaction};
use uuid::Uuid;

use super::catalog::{API_KEY, GROUP, WORKSPACE};
use super::ledger;
use super::retry::{self, BoxFuture, TxError};
use super::{contact_kind, state_code};
use crate::domain::change::ChangeRecord;
use crate::domain::time::{Clock, Timestamp};
use crate::store::embedded::export::{Exported, OrphanRow, ProfileRow, SourceCounts, SourceTable, Survey};
use crate::store::{EmbeddedStore, PostgresOptions, StoreError};

/// Source entries per batch when none is asked for: big enough that the per-transaction cost
/// vanishes, small enough that a profile batch (with its states) stays a few MiB.
pub const DEFAULT_BATCH_SIZE: usize = 2_000;
/// Batches read ahead of the one being written, so that reading and writing overlap.
const READ_AHEAD: usize = 3;

/// Where the copy reports how far it is.
pub trait Progress: Send {
    /// The copy of `table` begins or resumes, `done` of its `total` entries being copied already.
    /// Several tables may be under way at once.
    fn begin(&mut self, table: SourceTable, done: u64, total: u64);
    /// `done` entries of `table` are copied.
    fn advance(&mut self, table: SourceTable, done: u64);
    /// `table` is copied.
    fn finish(&mut self, table: SourceTable);
}

/// How a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This run copied (all, or what an earlier run had left).
    Copied {
        /// Whether it went on from an earlier, interrupted run.
        resumed: bool,
    },
    /// An earlier run had completed the copy; this one only verified it.
    AlreadyComplete,
}

/// One kind's count in the source and in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Count {
    /// What is counted, for people.
    pub what: &'static str,
    /// In the embedded store.
    pub source: u64,
    /// In PostgreSQL.
    pub target: u64,
}

/// What a run did and what the verification found.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it went.
    pub outcome: Outcome,
    /// Every kind's counts; the copy is complete when they all agree.
    pub counts: Vec<Count>,
}

impl Report {
    /// The kinds whose counts differ.
    pub fn mismatches(&self) -> Vec<&Count> {
        self.counts.iter().filter(|c| c.source != c.target).collect()
    }
}

/// A PostgreSQL database to copy into, reachable and with its schema up to date.
pub struct Target {
    config: tokio_postgres::Config,
    connector: super::tls::Connector,
}

impl Target {
    /// Connects to the database at `url` and applies the migrations it lacks, so that an
    /// unreachable database is reported (with where it was looked for) before any work.
    pub async fn prepare(url: &str) -> Result<Target, StoreError> {
        let options = PostgresOptions::default();
        super::migrate(url, &options).await?;
        let (config, connector) = super::connection_settings(url, &options)?;
        Ok(Target { config, connector })
    }

    /// Copies `source` (surveyed as `survey`) in batches of `batch_size` source entries,
    /// resuming a copy an earlier run began; then verifies the counts.
    pub async fn copy(
        &self,
        source: &EmbeddedStore,
        survey: &Survey,
        batch_size: usize,
        progress: Box<dyn Progress>,
    ) -> Result<Report, StoreError> {
        let path = source.path().canonicalize().unwrap_or_else(|_| source.path().to_path_buf());
        let job = Arc::new(Job {
            source: source.clone(),
            counts: survey.counts,
            fingerprint: survey.fingerprint.clone(),
            path: path.display().to_string(),
            batch_size: batch_size.max(1),
            progress: Mutex::new(progress),
            failed: AtomicBool::new(false),
        });
        let claimed = {
            let (mut client, driver) = self.connection().await?;
            let claimed = retry::transaction(&mut client, IsolationLevel::Serializable, &*job, claim).await;
            drop(client);
            let _ = driver.await;
            claimed?
        };
        if !claimed.complete {
            // The catalog first, so that no copy ever holds states of groups it lacks; then
            // the other tables side by side, each on a connection of its own, since one
            // PostgreSQL backend inserts on one core.
            let (catalog, others): (Vec<_>, Vec<_>) =
                claimed.checkpoints.into_iter().filter(|c| !c.done).partition(|c| c.table == SourceTable::Catalog);
            for wave in [catalog, others] {
                let mut copies = tokio::task::JoinSet::new();
                for checkpoint in wave {
                    let (job, connection) = (Arc::clone(&job), self.connection());
                    let (mut client, driver) = connection.await?;
                    copies.spawn(async move {
                        let copied = job.copy_table(&mut client, checkpoint).await;
                        drop(client);
                        let _ = driver.await;
                        copied
                    });
                }
                let mut outcome = Ok(());
                while let Some(copied) = copies.join_next().await {
                    let copied =
                        copied.unwrap_or_else(|e| Err(StoreError::Internal(format!("a table's copy stopped: {e}"))));
                    if outcome.is_ok() {
                        outcome = copied;
                    }
                }
                outcome?;
            }
        }
        let outcome =
            if claimed.complete { Outcome::AlreadyComplete } else { Outcome::Copied { resumed: claimed.resumed } };
        let (mut client, driver) = self.connection().await?;
        let report = job.verify(&mut client, outcome).await;
        drop(client);
        let _ = driver.await;
        report
    }

    /// A connection of its own (made where all of this store's connections are made), without
    /// the request path's statement timeout: batches are large by design.
    async fn connection(&self) -> Result<(Client, tokio::task::JoinHandle<()>), StoreError> {
        let (client, driver) = super::connect(&self.config, &self.connector).await?;
        client.batch_execute("SET statement_timeout = 0").await.map_err(retry::db_error)?;
        Ok((client, driver))
    }
}

/// Everything one run works with, shared by the tables copied side by side.
struct Job {
    source: EmbeddedStore,
    counts: SourceCounts,
    fingerprint: String,
    path: String,
    batch_size: usize,
    progress: Mutex<Box<dyn Progress>>,
    /// Set when a table's copy fails, so that the others stop after their current batch.
    failed: AtomicBool,
}

/// A source table's checkpoint.
struct Checkpoint {
    table: SourceTable,
    last_key: Option<Vec<u8>>,
    copied: u64,
    done: bool,
}

/// What the database says about this copy.
struct Claimed {
    resumed: bool,
    complete: bool,
    checkpoints: Vec<Checkpoint>,
}

impl Job {
    fn progress(&self) -> std::sync::MutexGuard<'_, Box<dyn Progress>> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies what is left of one table: batches from a reader thread, each committed with
    /// its checkpoint.
    async fn copy_table(&self, client: &mut Client, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let table = checkpoint.table;
        self.progress().begin(table, checkpoint.copied, self.counts.entries(table).max(checkpoint.copied));
        let (sender, mut batches) = mpsc::channel(READ_AHEAD);
        let reader = {
            let source = self.source.clone();
            let size = self.batch_size;
            let after = checkpoint.last_key;
            tokio::task::spawn_blocking(move || read_table(&source, table, after, size, &sender))
        };
        let mut copied = checkpoint.copied;
        let written = async {
            while let Some(batch) = batches.recv().await {
                if self.failed.load(Ordering::Acquire) {
                    return Ok(false);
                }
                let batch = batch?;
                retry::transaction(client, IsolationLevel::ReadCommitted, &batch, write_batch).await?;
                copied += batch.entries;
                self.progress().advance(table, copied);
            }
            // A table that ended with no batch to carry its end (empty, or ended right at
            // the last checkpoint) is marked done on its own.
            retry::transaction(client, IsolationLevel::ReadCommitted, &table, mark_done).await?;
            Ok::<bool, StoreError>(true)
        }
        .await;
        // Closing the channel stops a reader that is still going (after a failed write).
        drop(batches);
        reader.await.map_err(|e| StoreError::Internal(format!("the reader stopped: {e}")))?;
        match written {
            Ok(true) => self.progress().finish(table),
            Ok(false) => {}
            Err(_) => self.failed.store(true, Ordering::Release),
        }
        written.map(|_| ())
    }

    /// Compares every kind's count in the source and in the database; a copy whose counts all
    /// agree is recorded as complete.
    async fn verify(&self, client: &mut Client, outcome: Outcome) -> Result<Report, StoreError> {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM catalog WHERE kind = $1), (SELECT count(*) FROM catalog WHERE kind = $2), \
                 (SELECT count(*) FROM catalog WHERE kind = $3), (SELECT count(*) FROM profiles), \
                 (SELECT count(*) FROM states), (SELECT count(*) FROM orphans), (SELECT count(*) FROM changes)",
                &[&WORKSPACE, &API_KEY, &GROUP],
            )
            .await
            .map_err(retry::db_error)?;
        let target = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        let s = &self.counts;
        let counts = [
            ("workspaces", s.workspaces),
            ("API keys", s.api_keys),
            ("groups", s.groups),
            ("profiles", s.profiles),
            ("states", s.states),
            ("orphaned states", s.orphans),
            ("change records", s.changes),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (what, source))| Count { what, source, target: target(i) })
        .collect();
        let report = Report { outcome, counts };
        if report.mismatches().is_empty() {
            retry::transaction(client, IsolationLevel::ReadCommitted, &(), mark_complete).await?;
        }
        Ok(report)
    }
}

fn mark_done<'c>(tx: &'c Transaction<'_>, table: &'c SourceTable) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        tx.execute("UPDATE store_copy_progress SET done = TRUE WHERE source_table = $1", &[&table.name()]).await?;
        Ok(())
    })
}

fn mark_complete<'c>(tx: &'c Transaction<'_>, _: &'c ()) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        // The chains' heads follow from the copied records: each chain ends at its last record
        // and its kept records follow the record before its first one (ledger retention).
        ledger::rebuild_heads(tx).await?;
        tx.execute(
            "UPDATE store_copy SET completed_at = $1 WHERE id = 1 AND completed_at IS NULL",
            &[&Clock::system().now().0],
        )
        .await?;
        Ok(())
    })
}

/// Finds or begins this copy in the database, or refuses a database that holds anything else.
fn claim<'c>(tx: &'c Transaction<'_>, job: &'c Job) -> BoxFuture<'c, Result<Claimed, TxError>> {
    Box::pin(async move {
        let refuse = |message: String| TxError::Store(StoreError::Open(message));
        let found = tx
            .query_opt(
                "SELECT source_path, source_fingerprint, started_at, completed_at FROM store_copy WHERE id = 1",
                &[],
            )
            .await?;
        let Some(found) = found else {
            let row = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM catalog), EXISTS (SELECT 1 FROM profiles), \
                     EXISTS (SELECT 1 FROM states), EXISTS (SELECT 1 FROM orphans), EXISTS (SELECT 1 FROM changes)",
                    &[],
                )
                .await?;
            let used: Vec<&str> = ["catalog", "profiles", "states", "orphans", "changes"]
                .into_iter()
                .enumerate()
                .filter(|&(i, _)| row.get::<_, bool>(i))
                .map(|(_, name)| name)
                .collect();
            if !used.is_empty() {
                return Err(refuse(format!(
                    "the database already holds data that is not from a copy of this store (in tables {}); \
                     copy into a new, empty database",
                    used.join(", ")
                )));
            }
            tx.execute(
                "INSERT INTO store_copy (id, source_path, source_fingerprint, started_at) VALUES (1, $1, $2, $3)",
                &[&job.path, &job.fingerprint, &Clock::system().now().0],
            )
            .await?;
            let names: Vec<&str> = SourceTable::ALL.iter().map(|t| t.name()).collect();
            tx.execute(
                "INSERT INTO store_copy_progress (source_table, last_key, copied, done) \
                 SELECT name, NULL, 0, FALSE FROM UNNEST($1::text[]) AS t(name)",
                &[&names],
            )
            .await?;
            let checkpoints = SourceTable::ALL
                .into_iter()
                .map(|table| Checkpoint { table, last_key: None, copied: 0, done: false })
                .collect();
            return Ok(Claimed { resumed: false, complete: false, checkpoints });
        };
        let (path, fingerprint): (String, String) = (found.get(0), found.get(1));
        if fingerprint != job.fingerprint {
            let began = Timestamp(found.get(2)).to_rfc3339();
            return Err(refuse(if path == job.path {
                format!(
                    "the store in {path} has changed since this database's copy of it began at {began} (was a \
                     server started on it?), so that copy cannot go on; copy into a new, empty database"
                )
            } else {
                format!(
                    "the database holds a copy of another store ({path}, begun at {began}); copy into a new, \
                     empty database"
                )
            }));
        }
        let complete = found.get::<_, Option<i64>>(3).is_some();
        let rows = tx.query("SELECT source_table, last_key, copied, done FROM store_copy_progress", &[]).await?;
        let mut checkpoints = Vec::new();
        for table in SourceTable::ALL {
            let row = rows.iter().find(|r| r.get::<_, &str>(0) == table.name()).ok_or_else(|| {
                TxError::Store(StoreError::Corrupt {
                    what: "store copy progress",
                    detail: format!("no checkpoint for {}", table.name()),
                })
            })?;
            checkpoints.push(Checkpoint {
                table,
                last_key: row.get(1),
                copied: row.get::<_, i64>(2).max(0) as u64,
                done: row.get(3),
            });
        }
        Ok(Claimed { resumed: true, complete, checkpoints })
    })
}

/// One batch: the rows of some source entries, and where the table's checkpoint moves.
struct Batch {
    table: SourceTable,
    rows: Rows,
    /// Source entries in it.
    entries: u64,
    /// The checkpoint it follows (`None`: the table's start).
    after: Option<Vec<u8>>,
    /// The checkpoint after it: its last entry's key (`None` for the catalog, copied whole).
    last_key: Option<Vec<u8>>,
    /// Whether it ends the table.
    done: bool,
}

/// A batch's rows, as the column arrays its statements take.
enum Rows {
    Catalog(CatalogRows),
    Profiles(ProfileRows),
    Orphans(OrphanRows),
    Changes(ChangeRows),
}

#[derive(Default)]
struct CatalogRows {
    kinds: Vec<i16>,
    ids: Vec<Uuid>,
    bodies: Vec<String>,
}

impl CatalogRows {
    fn push(&mut self, kind: i16, id: Uuid, body: serde_json::Result<String>) -> Result<(), StoreError> {
        self.kinds.push(kind);
        self.ids.push(id);
        self.bodies.push(body.map_err(|e| StoreError::Internal(format!("a catalog item did not encode: {e}")))?);
        Ok(())
    }
}

#[derive(Default)]
struct ProfileRows {
    workspaces: Vec<Uuid>,
    ids: Vec<Uuid>,
    external_ids: Vec<String>,
    emails: Vec<Option<String>>,
    phones: Vec<Option<String>>,
    state_workspaces: Vec<Uuid>,
    state_profiles: Vec<Uuid>,
    state_groups: Vec<Uuid>,
    states: Vec<i16>,
    state_times: Vec<i64>,
}

impl ProfileRows {
    fn push(&mut self, row: ProfileRow) {
        let ProfileRow { workspace_id, external_id, record } = row;
        for state in &record.states {
            self.state_workspaces.push(workspace_id.0);
            self.state_profiles.push(record.id.0);
            self.state_groups.push(state.group_id.0);
            self.states.push(state_code(state.state));
            self.state_times.push(state.updated_at.0);
        }
        self.workspaces.push(workspace_id.0);
        self.ids.push(record.id.0);
        self.external_ids.push(external_id);
        self.emails.push(record.email);
        self.phones.push(record.phone);
    }
}

#[derive(Default)]
struct OrphanRows {
    workspaces: Vec<Uuid>,
    kinds: Vec<i16>,
    identifiers: Vec<String>,
    groups: Vec<Uuid>,
    states: Vec<i16>,
    times: Vec<i64>,
    orphan_ids: Vec<Uuid>,
}

impl OrphanRows {
    fn push(&mut self, row: OrphanRow) {
        self.workspaces.push(row.workspace_id.0);
        self.kinds.push(contact_kind(&row.contact));
        self.identifiers.push(row.contact.as_str().to_string());
        self.groups.push(row.group_id.0);
        self.states.push(state_code(row.state));
        self.times.push(row.updated_at.0);
        self.orphan_ids.push(row.orphan_id.0);
    }
}

/// Change records as they are, sealed: the copy keeps their hashes.
#[derive(Default)]
struct ChangeRows {
    records: Vec<ChangeRecord>,
}

impl ChangeRows {
    fn push(&mut self, change: ChangeRecord) {
        self.records.push(change);
    }
}

/// Reads `table` after `after` into batches of `size` entries and sends them; a read error is
/// sent too, and ends the reading. Returns early when the writer has stopped listening.
fn read_table(
    source: &EmbeddedStore,
    table: SourceTable,
    after: Option<Vec<u8>>,
    size: usize,
    sender: &mpsc::Sender<Result<Batch, StoreError>>,
) {
    let result = match table {
        SourceTable::Catalog => read_catalog(source, sender),
        SourceTable::Profiles => {
            let entries = source.export_profiles(after.as_deref());
            send_batches(entries, table, after, size, ProfileRows::push, Rows::Profiles, sender)
        }
        SourceTable::Orphans => {
            let entries = source.export_orphans(after.as_deref());
            send_batches(entries, table, after, size, OrphanRows::push, Rows::Orphans, sender)
        }
        SourceTable::Changes => {
            let entries = source.export_changes(after.as_deref());
            send_batches(entries, table, after, size, ChangeRows::push, Rows::Changes, sender)
        }
    };
    if let Err(err) = result {
        let _ = sender.blocking_send(Err(err));
    }
}

/// The whole catalog as one batch: it is small, and read whole by [`EmbeddedStore::load_catalog`].
/// Bodies are the serde JSON that the PostgreSQL store's own catalog writes keep.
fn read_catalog(source: &EmbeddedStore, sender: &mpsc::Sender<Result<Batch, StoreError>>) -> Result<(), StoreError> {
    let data = source.load_catalog()?;
    let mut rows = CatalogRows::default();
    for workspace in &data.workspaces {
        rows.push(WORKSPACE, workspace.id.0, serde_json::to_string(workspace))?;
    }
    for key in &data.api_keys {
        rows.push(API_KEY, key.id.0, serde_json::to_string(key))?;
    }
    for group in &data.groups {
        rows.push(GROUP, group.id.0, serde_json::to_string(group))?;
    }
    let entries = rows.ids.len() as u64;
    let batch = Batch {
        table: SourceTable::Catalog,
        rows: Rows::Catalog(rows),
        entries,
        after: None,
        last_key: None,
        done: true,
    };
    let _ = sender.blocking_send(Ok(batch));
    Ok(())
}

/// Groups `entries` into batches of `size` and sends them, each naming the checkpoint it
/// follows and the one it reaches.
fn send_batches<T, R: Default>(
    entries: impl Iterator<Item = Exported<T>>,
    table: SourceTable,
    mut after: Option<Vec<u8>>,
    size: usize,
    push: impl Fn(&mut R, T),
    wrap: impl Fn(R) -> Rows,
    sender: &mpsc::Sender<Result<Batch, StoreError>>,
) -> Result<(), StoreError> {
    let mut rows = R::default();
    let mut count = 0;
    let mut entries = entries.peekable();
    while let Some(entry) = entries.next() {
        let (key, value) = entry?;
        push(&mut rows, value);
        count += 1;
        let done = entries.peek().is_none();
        if count == size || done {
            let last_key = Some(key.to_vec());
            let batch = Batch {
                table,
                rows: wrap(std::mem::take(&mut rows)),
                entries: count as u64,
                after: std::mem::replace(&mut after, last_key.clone()),
                last_key,
                done,
            };
            if sender.blocking_send(Ok(batch)).is_err() {
                return Ok(()); // the writer stopped; it reports why
            }
            count = 0;
        }
    }
    Ok(())
}

/// Writes one batch and moves its table's checkpoint, which must still be where the batch
/// begins: a second copier working on the same database fails here instead of interleaving.
fn write_batch<'c>(tx: &'c Transaction<'_>, batch: &'c Batch) -> BoxFuture<'c, Result<(), TxError>> {
    Box::pin(async move {
        match &batch.rows {
            Rows::Catalog(r) => {
                tx.execute(
                    "INSERT INTO catalog (kind, id, body) SELECT * FROM UNNEST($1::int2[], $2::uuid[], $3::text[]) \
                     ON CONFLICT DO NOTHING",
                    &[&r.kinds, &r.ids, &r.bodies],
                )
                .await?;
            }
            Rows::Profiles(r) => {
                tx.execute(
                    "INSERT INTO profiles (workspace_id, profile_id, external_id, email, phone) \
                     SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[]) \
                     ON CONFLICT DO NOTHING",
                    &[&r.workspaces, &r.ids, &r.external_ids, &r.emails, &r.phones],
                )
                .await?;
                if !r.states.is_empty() {
                    tx.execute(
                        "INSERT INTO states (workspace_id, profile_id, group_id, state, updated_at) \
                         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int2[], $5::int8[]) \
                         ON CONFLICT DO NOTHING",
                        &[&r.state_workspaces, &r.state_profiles, &r.state_groups, &r.states, &r.state_times],
                    )
                    .await?;
                }
            }
            Rows::Orphans(r) => {
                tx.execute(
                    "INSERT INTO orphans (workspace_id, kind, identifier, group_id, state, updated_at, orphan_id) \
                     SELECT * FROM UNNEST($1::uuid[], $2::int2[], $3::text[], $4::uuid[], $5::int2[], $6::int8[], \
                     $7::uuid[]) ON CONFLICT DO NOTHING",
                    &[&r.workspaces, &r.kinds, &r.identifiers, &r.groups, &r.states, &r.times, &r.orphan_ids],
                )
                .await?;
            }
            Rows::Changes(r) => {
                // A batch holds one workspace's records or several: written per workspace.
                let mut start = 0;
                while start < r.records.len() {
                    let ws = r.records[start].workspace_id;
                    let end = r.records[start..]
                        .iter()
                        .position(|c| c.workspace_id != ws)
                        .map_or(r.records.len(), |n| start + n);
                    ledger::write_rows(tx, ws, &r.records[start..end], true).await?;
                    start = end;
                }
            }
        }
        let moved = tx
            .execute(
                "UPDATE store_copy_progress SET last_key = $2, copied = copied + $3, done = $4 \
                 WHERE source_table = $1 AND NOT done AND last_key IS NOT DISTINCT FROM $5",
                &[&batch.table.name(), &batch.last_key, &(batch.entries as i64), &batch.done, &batch.after],
            )
            .await?;
        if moved != 1 {
            return Err(TxError::Store(StoreError::Internal(format!(
                "the checkpoint of {} moved under this copy: is another migrate-store copying into this database?",
                batch.table.name()
            ))));
        }
        Ok(())
    })
}
