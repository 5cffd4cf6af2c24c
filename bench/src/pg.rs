//! The PostgreSQL side of the benchmark: scratch databases on the instance `--database-url`
//! names, what the instance costs while the server runs, and ceiling (c).
//!
//! The bench never touches data it did not create: it seeds a database of its own
//! (`consentry_bench_<pid>_seed`), then gives every measured run a fresh copy of it
//! (`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`: a file copy, no WAL), so that the one-node
//! run, the two-node run and the ceiling all start from the same seeded state; every one of
//! these databases is dropped when its guard drops, when the bench is interrupted, or (if the
//! bench is killed) left behind under that recognizable name.
//!
//! The instance is shared: other databases (other users' tests) and its background processes
//! (WAL writer, checkpointer) run on the same cores. Its CPU is therefore read from `/proc` per
//! process and split by the database named in each process's title.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use consentry::domain::change::Endpoint;
use consentry::domain::identifiers::ExternalId;
use consentry::domain::ids::{GroupId, RequestId};
use consentry::domain::plan::Origin;
use consentry::domain::set_status::{SetEntry, SetStatusCommand};
use consentry::domain::subscription::SubscriptionState;
use consentry::store::Store;
use tokio_postgres::{Client, Config, NoTls};

use crate::load::LoadResult;
use crate::seed::{external_id, Seeded};
use crate::workload::{seed, Rng};

/// The database the bench connects to when not told otherwise: the test suite's.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Scratch databases to drop if the bench is interrupted: (maintenance connection, name).
static LIVE: Mutex<Vec<(Config, String)>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<(Config, String)>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` with a new connection made from `config`, on a thread of its own with its own
/// runtime (so that it can be called from sync code, async code and the interrupt handler
/// alike), and waits for it.
fn with_client<T, F, Fut>(config: &Config, work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, tokio_postgres::Error>>,
{
    let config = config.clone();
    let thread = std::thread::Builder::new().name("bench-pg-admin".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let (client, connection) = config.connect(NoTls).await.map_err(describe_error)?;
            let driver = tokio::spawn(connection);
            let result = work(client).await.map_err(describe_error);
            let _ = driver.await;
            result
        })
    })?;
    thread.join().map_err(|_| anyhow!("a PostgreSQL admin thread panicked"))?
}

/// A driver error with the server's message, or the cause of a failed connection.
fn describe_error(err: tokio_postgres::Error) -> anyhow::Error {
    use std::error::Error as _;
    match (err.as_db_error(), err.source()) {
        (Some(db), _) => anyhow!("PostgreSQL error {}: {}", db.code().code(), db.message()),
        (None, Some(source)) => anyhow!("{err}: {source}"),
        (None, None) => anyhow!("{err}"),
    }
}

/// `url` with its database (the path) replaced by `database`; the user, password, host, port
/// and parameters stay. A URL naming its database in a `dbname=` parameter is refused, since
/// the path would not win over it.
pub fn url_with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| anyhow!("--database-url {url:?} is not a URL"))?;
    if !matches!(scheme, "postgres" | "postgresql") {
        bail!("--database-url must start with postgres:// or postgresql://, not {scheme:?}://");
    }
    let (before_query, query) = match rest.find('?') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if query.contains("dbname=") {
        bail!("--database-url {url:?}: name the database in the path, not in a dbname= parameter");
    }
    let host_start = before_query.rfind('@').map_or(0, |at| at + 1);
    let authority_end = before_query[host_start..].find('/').map_or(before_query.len(), |at| host_start + at);
    let rewritten = format!("{scheme}://{}/{database}{query}", &before_query[..authority_end]);
    let config: Config =
        rewritten.parse().with_context(|| format!("--database-url {url:?} is not a PostgreSQL URL"))?;
    if config.get_dbname() != Some(database) {
        bail!("--database-url {url:?}: cannot point it at database {database}");
    }
    Ok(rewritten)
}

/// The instance `--database-url` names: where scratch databases are made.
pub struct Instance {
    url: String,
    /// The maintenance connection's settings (the URL's own database).
    admin: Config,
    /// `SELECT version()`, for the report.
    pub version: String,
    /// Settings the report shows.
    pub settings: Vec<(String, String)>,
}

impl Instance {
    /// Connects to `url` to check it and read the instance's version and settings.
    pub fn connect(url: &str) -> anyhow::Result<Instance> {
        // Checks the scheme and the path first, which say more than the driver's parse error.
        url_with_database(url, "probe")?;
        let admin: Config = url.parse().with_context(|| format!("--database-url {url:?} is not a PostgreSQL URL"))?;
        let (version, settings) = with_client(&admin, |client| async move {
            let version: String = client.query_one("SELECT version()", &[]).await?.get(0);
            let rows = client
                .query(
                    "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1) ORDER BY name",
                    &[&vec![
                        "shared_buffers",
                        "synchronous_commit",
                        "fsync",
                        "wal_level",
                        "max_wal_size",
                        "checkpoint_timeout",
                        "max_connections",
                        "full_page_writes",
                        "commit_delay",
                        "autovacuum",
                        "max_pred_locks_per_transaction",
                        "max_pred_locks_per_relation",
                        "max_pred_locks_per_page",
                    ]],
                )
                .await?;
            let settings: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            Ok((version, settings))
        })
        .with_context(|| format!("cannot reach PostgreSQL at {} (--database-url)", describe(&admin)))?;
        Ok(Instance { url: url.to_string(), admin, version, settings })
    }

    /// `host:port/database` of the maintenance connection, for the report (never a password).
    pub fn describe(&self) -> String {
        describe(&self.admin)
    }

    /// Creates an empty database `name`, or a copy of `template`.
    pub fn create(&self, name: &str, template: Option<&str>) -> anyhow::Result<ScratchDatabase> {
        let url = url_with_database(&self.url, name)?;
        let sql = match template {
            Some(template) => format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"),
            None => format!("CREATE DATABASE {name}"),
        };
        with_client(&self.admin, move |client| async move { client.batch_execute(&sql).await })
            .with_context(|| format!("cannot create database {name}"))?;
        live().push((self.admin.clone(), name.to_string()));
        let config: Config = url.parse()?;
        Ok(ScratchDatabase { admin: self.admin.clone(), name: name.to_string(), url, config })
    }
}

/// `host:port/database` of a config.
fn describe(config: &Config) -> String {
    consentry::store::postgres::describe(config)
}

/// The name of this run's scratch database `suffix`.
pub fn scratch_name(suffix: &str) -> String {
    format!("consentry_bench_{}_{suffix}", std::process::id())
}

/// A database this bench created, dropped (with its connections) when dropped.
pub struct ScratchDatabase {
    admin: Config,
    /// Its name.
    pub name: String,
    /// Its URL, as `consentry serve --database` takes it.
    pub url: String,
    config: Config,
}

impl ScratchDatabase {
    /// `VACUUM (ANALYZE)` of the whole database: what a seeded production database has had
    /// (autovacuum would do it within a minute, in the middle of a measured phase).
    pub fn vacuum_analyze(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        with_client(&self.config, |client| async move { client.batch_execute("VACUUM (ANALYZE)").await })?;
        Ok(started.elapsed())
    }

    /// Its size, `pg_database_size`.
    pub fn size(&self) -> anyhow::Result<u64> {
        let name = self.name.clone();
        with_client(&self.admin, move |client| async move {
            let row = client.query_one("SELECT pg_database_size($1::text)", &[&name]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
    }

    /// Rows (counted) and sizes (with indexes) of its main tables, for the report.
    pub fn table_rows(&self) -> anyhow::Result<Vec<(String, i64, i64)>> {
        with_client(&self.config, |client| async move {
            let mut out = Vec::new();
            for table in ["profiles", "states", "changes"] {
                let sql = format!("SELECT count(*), pg_total_relation_size('{table}') FROM {table}");
                let row = client.query_one(&sql, &[]).await?;
                out.push((table.to_string(), row.get(0), row.get(1)));
            }
            Ok(out)
        })
    }

    /// Transactions committed and rolled back in this database so far (`pg_stat_database`;
    /// the store rolls back an attempt that failed to serialize and runs it again, so the
    /// difference of two readings counts the retries). Backends report every second or so.
    pub fn transactions(&self) -> Option<(u64, u64)> {
        let name = self.name.clone();
        with_client(&self.admin, move |client| async move {
            let row = client
                .query_one("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1", &[&name])
                .await?;
            Ok((row.get::<_, i64>(0).max(0) as u64, row.get::<_, i64>(1).max(0) as u64))
        })
        .ok()
    }

    /// The instance's WAL insert position, in bytes: the difference of two readings is the WAL
    /// written in between, by every database of the instance.
    pub fn wal_position(&self) -> Option<u64> {
        with_client(&self.admin, |client| async move {
            let row = client.query_one("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8", &[]).await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
        .ok()
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(err) = drop_database(&self.admin, &self.name) {
            eprintln!("could not drop database {}: {err:#}", self.name);
        }
        live().retain(|(_, name)| name != &self.name);
    }
}

fn drop_database(admin: &Config, name: &str) -> anyhow::Result<()> {
    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    with_client(admin, move |client| async move { client.batch_execute(&sql).await })
}

/// Drops every scratch database still live: for ctrl-c and SIGTERM.
pub fn drop_all() {
    let databases: Vec<(Config, String)> = live().drain(..).collect();
    for (admin, name) in databases {
        let _ = drop_database(&admin, &name);
    }
}

/// CPU time of the instance's processes, split by whom they work for, and the bytes they
/// caused to be written.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgCpu {
    /// Backends and autovacuum workers of the measured database.
    pub ours: Duration,
    /// The instance's own processes (postmaster, WAL writer, checkpointer, background writer…).
    pub background: Duration,
    /// Backends of other databases (other users of the instance).
    pub others: Duration,
    /// `write_bytes` of every process of the instance.
    pub written: u64,
}

impl PgCpu {
    /// The difference `self - before` (processes that exited in between lose their share).
    pub fn since(&self, before: &PgCpu) -> PgCpu {
        PgCpu {
            ours: self.ours.saturating_sub(before.ours),
            background: self.background.saturating_sub(before.background),
            others: self.others.saturating_sub(before.others),
            written: self.written.saturating_sub(before.written),
        }
    }
}

/// Reads every `postgres` process of this machine; a process counts as `database`'s when its
/// title (`postgres: user database host(port) state`, `postgres: autovacuum worker database`)
/// names it.
pub fn instance_cpu(database: &str) -> PgCpu {
    let mut total = PgCpu::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let proc_dir = Path::new("/proc").join(pid.to_string());
        match std::fs::read_to_string(proc_dir.join("comm")) {
            Ok(comm) if comm.trim() == "postgres" => {}
            _ => continue,
        }
        let Some(cpu) = crate::sys::cpu_time(pid) else {
            continue;
        };
        let title = std::fs::read(proc_dir.join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        let mut words = title.split_whitespace();
        let is_title = words.next() == Some("postgres:");
        let words: Vec<&str> = words.collect();
        if is_title && words.contains(&database) {
            total.ours += cpu;
        } else if is_title && (title.contains('(') || title.contains("autovacuum worker")) {
            total.others += cpu;
        } else {
            total.background += cpu;
        }
        total.written += crate::sys::bytes_written(pid).unwrap_or(0);
    }
    total
}

/// How a ceiling (c) run is set up.
#[derive(Debug, Clone, Copy)]
pub struct CeilingSetup {
    /// Concurrent requests: tasks, each with a connection of a pool of this size.
    pub concurrency: usize,
    /// Write transactions the store runs at once (`--pg-max-concurrent-writes`), as many as
    /// the nodes whose pools `concurrency` stands for would run together.
    pub writers: usize,
    /// Half of the commands replay an acknowledged change (no-ops), as the server's load.
    pub mixed: bool,
    /// How long.
    pub duration: Duration,
}

/// What a ceiling (c) run measured.
pub struct CeilingResult {
    /// Its setup.
    pub setup: CeilingSetup,
    /// Commands applied (as `changes` and `noops`), failures and latencies.
    pub load: LoadResult,
    /// CPU of this process during the run (the store's Rust side: planning, encoding, driver).
    pub bench_cpu: Option<Duration>,
    /// The instance's CPU during the run.
    pub pg_cpu: PgCpu,
    /// WAL written during the run (the whole instance).
    pub wal: Option<u64>,
    /// Transactions committed and rolled back in the database during the run.
    pub transactions: Option<(u64, u64)>,
}

/// An acknowledged change command, kept for replay.
struct Done {
    group: GroupId,
    state: SubscriptionState,
    users: Vec<u64>,
}

/// Replayable acknowledged changes, as many as the HTTP workload keeps.
const RECENT: usize = 4096;

/// What every task of a ceiling (c) run shares: the seeded catalog, the workload's shape, and
/// the acknowledged changes it replays.
struct CeilingLoad {
    workspace: consentry::domain::ids::WorkspaceId,
    key_id: consentry::domain::ids::ApiKeyId,
    groups: Vec<GroupId>,
    /// Distinct users per command.
    users: usize,
    profiles: u64,
    setup: CeilingSetup,
    /// A ring of acknowledged changes: (changes, next slot to overwrite once full).
    recent: Mutex<(Vec<Arc<Done>>, usize)>,
}

/// Ceiling (c): the server's store work for the same load, straight into PostgreSQL, without
/// HTTP. `setup.concurrency` tasks on a runtime like the server's (one worker per core) call
/// the store's own `set_status` (`PostgresStore`, its pool sized to the concurrency) in a loop:
/// the same statements, the same SERIALIZABLE transaction and retries as one request of the
/// server, with commands of 50 distinct random seeded external ids, half of them replays.
pub fn run_ceiling(
    database: &ScratchDatabase,
    seeded: &Seeded,
    profiles: u64,
    users: usize,
    setup: CeilingSetup,
) -> anyhow::Result<CeilingResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("bench-ceiling-c")
        .enable_all()
        .build()?;
    let concurrency = setup.concurrency.max(1);
    let store = runtime.block_on(crate::service::open_postgres(&database.url, concurrency, setup.writers.max(1)))?;
    let load = Arc::new(CeilingLoad {
        workspace: seeded.workspace,
        key_id: seeded.key_id,
        groups: seeded.group_ids.clone(),
        users: users.min(profiles as usize),
        profiles,
        setup,
        recent: Mutex::new((Vec::with_capacity(RECENT), 0)),
    });

    let result = runtime.block_on(async move {
        // Every pool connection opened before the clock starts, as the server's are after its
        // first second of load.
        let warm: Vec<_> = (0..concurrency)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.load_catalog().await })
            })
            .collect();
        for task in warm {
            task.await?.map_err(|e| anyhow!("cannot read the catalog: {e}"))?;
        }
        let wal_before = database.wal_position();
        let tx_before = database.transactions();
        let (bench_before, pg_before) = (crate::sys::own_cpu_time(), instance_cpu(&database.name));
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|i| tokio::spawn(ceiling_task(store.clone(), Arc::clone(&load), i as u64, start)))
            .collect();
        let mut parts = Vec::with_capacity(tasks.len());
        for task in tasks {
            parts.push(task.await??);
        }
        let load = LoadResult::merged(setup.duration, parts);
        let (bench_after, pg_after) = (crate::sys::own_cpu_time(), instance_cpu(&database.name));
        let wal_after = database.wal_position();
        // The backends report their counts about once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let tx_after = database.transactions();
        store.close().await;
        Ok::<CeilingResult, anyhow::Error>(CeilingResult {
            setup,
            load,
            bench_cpu: bench_after.zip(bench_before).map(|(a, b)| a.saturating_sub(b)),
            pg_cpu: pg_after.since(&pg_before),
            wal: wal_after.zip(wal_before).map(|(a, b)| a.saturating_sub(b)),
            transactions: tx_after.zip(tx_before).map(|(a, b)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))),
        })
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// One of ceiling (c)'s concurrent requests, as a server's handler would send them, until the
/// run's duration from `start` is over: a new change, or (half of the time when mixed) the
/// replay of an acknowledged one.
async fn ceiling_task(store: Store, load: Arc<CeilingLoad>, task: u64, start: Instant) -> anyhow::Result<LoadResult> {
    let setup = load.setup;
    let deadline = start + setup.duration;
    let mut rng = Rng::new(seed(5000 + task));
    let mut out = LoadResult::default();
    let mut per_second = vec![0u64; setup.duration.as_secs() as usize + 2];
    while Instant::now() < deadline {
        let (done, is_replay) = load.next_command(&mut rng);
        let (origin, command) = load.command(&done)?;
        let sent = Instant::now();
        let outcome = store.set_status(origin, command).await;
        let finished = Instant::now();
        if finished > deadline {
            break;
        }
        match outcome {
            Ok(_) => {
                let micros = finished.duration_since(sent).as_micros().min(u128::from(u32::MAX)) as u32;
                out.latencies.push(micros);
                if let Some(slot) = per_second.get_mut(finished.duration_since(start).as_secs() as usize) {
                    *slot += 1;
                }
                if is_replay {
                    out.noops += 1;
                } else {
                    out.changes += 1;
                    load.acknowledged(done);
                }
            }
            Err(err) => *out.errors.entry(err.to_string()).or_default() += 1,
        }
    }
    out.per_second = per_second;
    Ok(out)
}

impl CeilingLoad {
    /// The next command's content, and whether it replays an acknowledged change.
    fn next_command(&self, rng: &mut Rng) -> (Arc<Done>, bool) {
        if self.setup.mixed && rng.below(2) == 0 {
            let recent = self.recent.lock().expect("recent lock");
            if !recent.0.is_empty() {
                return (Arc::clone(&recent.0[rng.below(recent.0.len() as u64) as usize]), true);
            }
        }
        let done = Done {
            group: self.groups[rng.below(self.groups.len() as u64) as usize],
            state: if rng.below(2) == 0 { SubscriptionState::Subscribed } else { SubscriptionState::Unsubscribed },
            users: rng.distinct(self.users, self.profiles),
        };
        (Arc::new(done), false)
    }

    /// The store command for `done`, from a request of its own.
    fn command(&self, done: &Done) -> anyhow::Result<(Origin, SetStatusCommand)> {
        let external_ids = done
            .users
            .iter()
            .map(|&n| ExternalId::parse(&external_id(n)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow!("bad seeded external id: {e}"))?;
        let command = SetStatusCommand {
            entries: vec![SetEntry {
                group_id: done.group,
                state: done.state,
                external_ids,
                contacts: Vec::new(),
                use_double_opt_in_logic: false,
            }],
        };
        let origin = Origin::api(self.workspace, self.key_id, Endpoint::V2StatusSet, RequestId::generate());
        Ok((origin, command))
    }

    /// Keeps `done` for replay, overwriting the oldest once [`RECENT`] are kept.
    fn acknowledged(&self, done: Arc<Done>) {
        let mut recent = self.recent.lock().expect("recent lock");
        if recent.0.len() < RECENT {
            recent.0.push(done);
        } else {
            let at = recent.1;
            recent.0[at] = done;
            recent.1 = (at + 1) % RECENT;
        }
    }
}
