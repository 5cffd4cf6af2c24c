//! Ceiling (b): the server's per-request store work, straight into fjall, on one writer thread.
//!
//! A fresh fjall database gets the store's keyspaces and the same profile records (encoded by
//! the store's own codec, so the bytes match). Then one thread does, for each change request,
//! what the server's writer does: for each of 50 random users, point-read the profile record,
//! decode it, set the state, encode it, write it back, and write one change record and one
//! `changes_by_profile` entry; `B` requests go into one batch, committed with
//! `PersistMode::SyncAll` (the server's default durability). Optionally half of the requests
//! replay a committed change, which costs the 50 reads and decodes and writes nothing, as a
//! no-op does in the server. The keyspaces get the store's memtable sizes, or fjall's defaults
//! (as `perf/ceilings.md` measured) for comparison.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use consentry::bench_support::{
    change_by_profile_key, change_key, contact_key, encode_change, keyspace_options, profile_id_key, profile_key,
    ProfileRecord, KEYSPACES,
};
use consentry::domain::change::{Endpoint, Subject};
use consentry::domain::ids::{ApiKeyId, GroupId, ProfileId, RequestId, WorkspaceId};
use consentry::domain::plan::Origin;
use consentry::domain::subscription::SubscriptionState;
use consentry::domain::time::Clock;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::seed::{email, external_id, phone};
use crate::workload::{seed, Rng};

/// Profiles per prefill batch.
const PREFILL_CHUNK: u64 = 10_000;
/// Acknowledged change requests kept for replay.
const RECENT: usize = 4096;

/// How a storage ceiling run is set up.
#[derive(Debug, Clone, Copy)]
pub struct StorageSetup {
    /// Profiles prefilled.
    pub profiles: u64,
    /// Groups the requests pick from.
    pub groups: usize,
    /// Users per request.
    pub users_per_request: usize,
    /// Requests per committed batch.
    pub batch: usize,
    /// Whether half of the requests are no-op replays (as in the server's load).
    pub mixed: bool,
    /// Keyspace options.
    pub options: Options,
    /// How long to write.
    pub duration: Duration,
}

/// What a storage ceiling run measured.
#[derive(Debug, Clone)]
pub struct StorageResult {
    /// The setup.
    pub setup: StorageSetup,
    /// Time to prefill the profiles (no fsync until one final persist).
    pub prefill_time: Duration,
    /// Writing time.
    pub elapsed: Duration,
    /// Requests done (change and no-op).
    pub requests: u64,
    /// Change requests among them.
    pub change_requests: u64,
    /// Profile states written (one change record each).
    pub state_writes: u64,
    /// No-op replays that found a state other than the one they replay (should be ~0).
    pub replay_mismatches: u64,
    /// Batch commit time (build and commit), p50 and p99.
    pub batch_p50: Duration,
    /// See `batch_p50`.
    pub batch_p99: Duration,
    /// Bytes written to storage by this process during the writing phase.
    pub bytes_written: Option<u64>,
    /// Size of the database directory after the run.
    pub disk: u64,
}

impl StorageResult {
    /// A short name of the setup: `B=10, changes, store memtables`.
    pub fn label(&self) -> String {
        format!(
            "B={}, {}, {}",
            self.setup.batch,
            if self.setup.mixed { "mixed" } else { "changes" },
            match self.setup.options {
                Options::Store => "store memtables",
                Options::EngineDefaults => "engine defaults",
            }
        )
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// State writes per second.
    pub fn write_rate(&self) -> f64 {
        self.state_writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Tables {
    db: Database,
    profiles: Keyspace,
    changes: Keyspace,
    changes_by_profile: Keyspace,
}

/// Which keyspace options the ceiling database gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    /// The store's own keyspace options ([`KEYSPACES`]).
    Store,
    /// fjall's defaults (what `perf/ceilings.md` measured).
    EngineDefaults,
}

/// Opens a database with the store's keyspaces and block cache size.
fn open(dir: &Path, options: Options) -> anyhow::Result<(Tables, Vec<Keyspace>)> {
    let db = Database::builder(dir.join("engine")).cache_size(crate::service::embedded_cache_bytes()).open()?;
    let open = |name: &str| {
        let mib = KEYSPACES.iter().find(|(n, _)| *n == name).map_or(4, |(_, mib)| *mib);
        db.keyspace(name, || match options {
            Options::Store => keyspace_options(mib),
            Options::EngineDefaults => KeyspaceCreateOptions::default(),
        })
    };
    let (catalog, profile_ids, emails, phones, orphans) =
        (open("catalog")?, open("profile_ids")?, open("emails")?, open("phones")?, open("orphans")?);
    let tables = Tables {
        profiles: open("profiles")?,
        changes: open("changes")?,
        changes_by_profile: open("changes_by_profile")?,
        db: db.clone(),
    };
    Ok((tables, vec![catalog, profile_ids, emails, phones, orphans]))
}

/// Prefills `profiles` records as the store's import writes them, in plain batches without
/// fsync, then persists once.
fn prefill(tables: &Tables, others: &[Keyspace], ws: WorkspaceId, profiles: u64) -> anyhow::Result<()> {
    let [_, profile_ids, emails, phones, _] = others else {
        return Err(anyhow!("unexpected keyspaces"));
    };
    let mut next = 0;
    while next < profiles {
        let end = (next + PREFILL_CHUNK).min(profiles);
        let mut batch = tables.db.batch();
        for n in next..end {
            let id = ProfileId::generate();
            let (ext, email, phone) = (external_id(n), email(n), phone(n));
            batch.insert(profile_ids, profile_id_key(ws, id), ext.as_bytes().to_vec());
            batch.insert(emails, contact_key(ws, &email, id), ext.as_bytes().to_vec());
            batch.insert(phones, contact_key(ws, &phone, id), ext.as_bytes().to_vec());
            let record = ProfileRecord { id, email: Some(email), phone: Some(phone), states: Vec::new() };
            batch.insert(&tables.profiles, profile_key(ws, &ext), record.encode());
        }
        batch.commit()?;
        next = end;
    }
    tables.db.persist(PersistMode::SyncAll)?;
    Ok(())
}

/// A committed change request, for replay.
struct Done {
    users: Vec<u64>,
    group: GroupId,
    state: SubscriptionState,
}

/// Runs one storage ceiling in a new database under `dir` (which must be empty).
pub fn run(dir: &Path, setup: StorageSetup) -> anyhow::Result<StorageResult> {
    let (tables, others) = open(dir, setup.options).context("cannot open the ceiling database")?;
    let ws = WorkspaceId::generate();
    let start = Instant::now();
    prefill(&tables, &others, ws, setup.profiles).context("prefill failed")?;
    let prefill_time = start.elapsed();

    let mut writer = Writer::new(&tables, ws, &setup);
    let mut batch_times = Vec::new();
    let pid = std::process::id();
    let written_before = crate::sys::bytes_written(pid);
    let start = Instant::now();
    let deadline = start + setup.duration;
    while Instant::now() < deadline {
        let began = Instant::now();
        writer.commit_batch(setup.batch, setup.mixed)?;
        batch_times.push(began.elapsed());
    }
    let elapsed = start.elapsed();
    let bytes_written =
        crate::sys::bytes_written(pid).zip(written_before).map(|(after, before)| after.saturating_sub(before));
    batch_times.sort_unstable();
    let quantile = |q: f64| {
        let rank = ((q * batch_times.len() as f64).ceil() as usize).clamp(1, batch_times.len().max(1));
        batch_times.get(rank - 1).copied().unwrap_or_default()
    };
    let counts = writer.counts;
    drop(others);
    drop(tables);
    Ok(StorageResult {
        setup,
        prefill_time,
        elapsed,
        requests: counts.requests,
        change_requests: counts.change_requests,
        state_writes: counts.state_writes,
        replay_mismatches: counts.mismatches,
        batch_p50: quantile(0.5),
        batch_p99: quantile(0.99),
        bytes_written,
        disk: crate::sys::dir_size(dir),
    })
}

/// What the ceiling's writer did.
#[derive(Default, Clone, Copy)]
struct Counts {
    requests: u64,
    change_requests: u64,
    state_writes: u64,
    /// Replayed users whose stored state was not the replayed one.
    mismatches: u64,
}

/// The ceiling's one writer: per request, what the server's writer does, on the same records.
struct Writer<'a> {
    tables: &'a Tables,
    ws: WorkspaceId,
    groups: Vec<GroupId>,
    api_key_id: ApiKeyId,
    /// Distinct users per request.
    users: usize,
    profiles: u64,
    rng: Rng,
    /// A ring of committed change requests, and the next slot to overwrite once full.
    recent: Vec<Done>,
    recent_next: usize,
    counts: Counts,
}

impl<'a> Writer<'a> {
    fn new(tables: &'a Tables, ws: WorkspaceId, setup: &StorageSetup) -> Writer<'a> {
        Writer {
            tables,
            ws,
            groups: (0..setup.groups.max(1)).map(|_| GroupId::generate()).collect(),
            api_key_id: ApiKeyId::generate(),
            users: setup.users_per_request.min(setup.profiles as usize),
            profiles: setup.profiles,
            rng: Rng::new(seed(77)),
            recent: Vec::with_capacity(RECENT),
            recent_next: 0,
            counts: Counts::default(),
        }
    }

    /// Writes `size` requests into one batch committed with `SyncAll`; when `mixed`, half of
    /// them replay a committed request instead.
    fn commit_batch(&mut self, size: usize, mixed: bool) -> anyhow::Result<()> {
        let mut batch = self.tables.db.batch().durability(Some(PersistMode::SyncAll));
        let mut pending = Vec::with_capacity(size);
        for _ in 0..size {
            self.counts.requests += 1;
            if mixed && !self.recent.is_empty() && self.rng.below(2) == 0 {
                self.replay()?;
            } else {
                pending.push(self.change(&mut batch)?);
            }
        }
        batch.commit()?;
        for done in pending {
            self.remember(done);
        }
        Ok(())
    }

    /// A replayed request: the reads and decodes, and no write, as a no-op costs the server.
    fn replay(&mut self) -> anyhow::Result<()> {
        let done = &self.recent[self.rng.below(self.recent.len() as u64) as usize];
        for &n in &done.users {
            let record = read(self.tables, &profile_key(self.ws, &external_id(n)), n)?;
            if record.state(done.group) != Some(done.state) {
                self.counts.mismatches += 1;
            }
        }
        Ok(())
    }

    /// A new change request into `batch`: each picked user's record read, changed and written
    /// back with its change record and index entry, unless it already has the state.
    fn change(&mut self, batch: &mut fjall::OwnedWriteBatch) -> anyhow::Result<Done> {
        self.counts.change_requests += 1;
        let (ws, tables) = (self.ws, self.tables);
        let group = self.groups[self.rng.below(self.groups.len() as u64) as usize];
        let state =
            if self.rng.below(2) == 0 { SubscriptionState::Subscribed } else { SubscriptionState::Unsubscribed };
        let at = Clock::system().now();
        let ctx = Origin::api(ws, self.api_key_id, Endpoint::V2StatusSet, RequestId::generate()).at(at);
        let picked = self.rng.distinct(self.users, self.profiles);
        for &n in &picked {
            let key = profile_key(ws, &external_id(n));
            let mut record = read(tables, &key, n)?;
            let old = record.state(group);
            if old == Some(state) {
                continue;
            }
            record.set_state(group, state, at);
            batch.insert(&tables.profiles, key, record.encode());
            let change = ctx.record(group, Subject::Profile(record.id), old, state, false);
            batch.insert(&tables.changes, change_key(ws, change.id), encode_change(&change));
            batch.insert(&tables.changes_by_profile, change_by_profile_key(ws, record.id, change.id), Vec::new());
            self.counts.state_writes += 1;
        }
        Ok(Done { users: picked, group, state })
    }

    /// Keeps `done` for replay, overwriting the oldest once [`RECENT`] are kept.
    fn remember(&mut self, done: Done) {
        if self.recent.len() < RECENT {
            self.recent.push(done);
        } else {
            self.recent[self.recent_next] = done;
            self.recent_next = (self.recent_next + 1) % RECENT;
        }
    }
}

/// Point-reads and decodes the profile record of user `n`, stored under `key`.
fn read(tables: &Tables, key: &[u8], n: u64) -> anyhow::Result<ProfileRecord> {
    let bytes = tables.profiles.get(key)?.ok_or_else(|| anyhow!("profile user-{n} is missing from the prefill"))?;
    Ok(ProfileRecord::decode(&bytes)?)
}
