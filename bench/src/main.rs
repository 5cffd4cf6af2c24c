//! `cargo run --release -p bench`: the load benchmark of `POST /v2/subscription/status/set`,
//! and of `GET /subscription/status/get` while writes run, on the embedded store or (with
//! `--store postgres`) on PostgreSQL with one and with two server nodes.
//!
//! In one run it:
//! 1. seeds a fresh embedded store in-process (the `default` workspace and key, 20 groups,
//!    1,000,000 profiles with external ids, emails and phones) and closes it; on PostgreSQL,
//!    the same into a scratch database of its own (`pg.rs`), which every server run and
//!    ceiling then gets a fresh copy of;
//! 2. starts the real server (`consentry serve`, unchanged) in a child process on that store;
//!    on PostgreSQL once per `--nodes` count, with that many processes sharing the database and
//!    the load spread over them;
//! 3. drives it from a load generator in this process with requests of 50 random external ids,
//!    half of them changing states and half replaying an acknowledged change (no-ops):
//!    phase B at a fixed rate (open loop, latency from the intended send time), phase A as fast
//!    as it answers (closed loop); then phase C: reads of 50 random profiles' states (by
//!    external id, then by email) as fast as it answers, while the same writes run open loop at
//!    half of phase A's rate; then stops it with SIGTERM and measures its peak RSS and the store
//!    on disk;
//! 4. measures the ceilings on the same machine in the same run: (a) an axum server that
//!    parses the same JSON and answers 201 without a store, (b) (embedded) the same store
//!    writes straight into fjall with the same durability, batched, (c) (PostgreSQL) the
//!    store's own `set_status` called from this process without HTTP, as many at once as the
//!    server's pool holds;
//! 5. prints the figures, the ratios and a verdict per target of the issues.
//!
//! The report goes to stdout, progress to stderr. Every child process is killed if the bench
//! fails, panics or is interrupted, and exits by itself if the bench is killed.

/// The same allocator as the `consentry` binary, since the server under test runs as a child of
/// this binary.
#[global_allocator]
static GLOBAL: consentry::allocator::Allocator = consentry::allocator::Allocator;

mod children;
mod client;
mod load;
mod perf;
mod pg;
mod phases;
mod report;
mod seed;
mod service;
mod storage;
mod sys;
mod verdicts;
mod workload;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use children::ScratchDir;
use load::LoadResult;
use phases::ServerRun;
use report::{int, line, mb, rate, row, secs, section};
use storage::StorageResult;
use workload::Workload;

/// Users per request, as the workload says.
const USERS_PER_REQUEST: usize = 50;

/// Profiles seeded when `--profiles` is not given, on the embedded store.
const DEFAULT_PROFILES: u64 = 1_000_000;
/// Profiles seeded when `--profiles` is not given, on PostgreSQL.
const DEFAULT_PG_PROFILES: u64 = 1_000_000;

/// Phase B's rate when `--rate` is not given, on the embedded store (issue 2's target rate).
const DEFAULT_RATE: u32 = 1000;
/// Phase B's rate when `--rate` is not given, on PostgreSQL.
const DEFAULT_PG_RATE: u32 = 200;

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The embedded fjall store in a scratch directory.
    Embedded,
    /// PostgreSQL: a scratch database on the instance `--database-url` names.
    Postgres,
}

/// Load benchmark of Consentry's POST /v2/subscription/status/set, and of GET
/// /subscription/status/get under writes, on the embedded store or on PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Store under test.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// PostgreSQL instance (`--store postgres`): the bench creates its scratch databases
    /// (`consentry_bench_<pid>_…`) there and drops them at the end; it touches nothing else.
    /// [default: postgres://postgres@127.0.0.1:5432/test]
    #[arg(long)]
    database_url: Option<String>,
    /// Server processes sharing the database, one run per value (`--store postgres`; the
    /// embedded store takes one). [default: 1,2 on PostgreSQL]
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..=8))]
    nodes: Vec<u16>,
    /// Connection pool of each server node, and concurrency of ceiling (c) (`--store postgres`).
    #[arg(long, default_value_t = service::default_pg_pool_size(),
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pg_pool_size: u32,
    /// Write transactions each node runs at once (`--pg-max-concurrent-writes` of each server,
    /// and of ceiling (c), twice as many for its two-node-sized run) (`--store postgres`).
    #[arg(long, default_value_t = service::default_pg_writers(),
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pg_max_concurrent_writes: u32,
    /// Profiles to seed. [default: 1,000,000]
    #[arg(long = "profiles", value_name = "PROFILES", value_parser = clap::value_parser!(u64).range(1..))]
    profiles_flag: Option<u64>,
    /// `--profiles`, or its default for the store.
    #[arg(skip)]
    profiles: u64,
    /// Subscription groups to create (at most the per-workspace limit).
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// Phase A (closed loop) duration, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Phase B (open loop) duration, in seconds.
    #[arg(long, default_value_t = 30)]
    latency_duration: u64,
    /// Phase B request rate, per second. [default: 1,000; 200 on PostgreSQL, under what one
    /// node sustains there, so that phase B measures latency and not a growing queue]
    #[arg(long = "rate", value_name = "RATE", value_parser = clap::value_parser!(u32).range(1..))]
    rate_flag: Option<u32>,
    /// `--rate`, or its default for the store.
    #[arg(skip)]
    rate: u32,
    /// Phase A and ceiling (a) concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Duration of each phase C sub-phase (reads by external id, then by email) in seconds;
    /// 0 skips phase C.
    #[arg(long, default_value_t = 30)]
    read_duration: u64,
    /// Phase C concurrent read connections (closed loop): enough to keep the server's two
    /// cores busy with reads.
    #[arg(long, default_value_t = 32)]
    read_connections: usize,
    /// Phase B and phase C writes connection pool: enough that a due request never waits for a
    /// free connection (if it does, its wait still counts in its latency).
    #[arg(long, default_value_t = 256)]
    latency_connections: usize,
    /// Duration of each ceiling run, in seconds (but ceiling (c)'s first run, which the verdict
    /// uses, lasts as long as phase A).
    #[arg(long, default_value_t = 10)]
    ceiling_duration: u64,
    /// Requests per commit of ceiling (b) (it also runs with 1).
    #[arg(long, default_value_t = 10)]
    ceiling_batch: usize,
    /// Parent directory of the scratch data directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directories (the seeded store, the server log) after the run.
    #[arg(long)]
    keep: bool,
    /// Skip the ceilings (and the ratios and the targets that need them).
    #[arg(long)]
    skip_ceilings: bool,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Extra flag for `consentry serve` (repeatable), e.g. `--serve-arg=--durability=buffered`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// After the other phases, the ledger phase: the history of one subject with 1,000
    /// records (p50/p99 of `GET /consent/history`, limit 100 and 1000), the rates of `ledger
    /// verify` and `ledger export` on the benchmark's store, and the share of hashing in the
    /// writer's time at phase A's rate (see BENCHMARKS.md).
    #[arg(long)]
    ledger: bool,
    /// Seconds of each history latency run of the ledger phase.
    #[arg(long, default_value_t = 5)]
    ledger_duration: u64,
    /// Record a CPU profile of the server during phase A with `perf record` into this file.
    #[arg(long)]
    perf_record: Option<PathBuf>,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some(children::SERVE) => std::process::exit(children::serve_child(&argv[2..])),
        Some(children::CEILING_HTTP) => std::process::exit(children::ceiling_http_child(&argv[2..])),
        _ => {}
    }
    let mut args = Args::parse();
    if let Err(message) = resolve(&mut args) {
        eprintln!("error: {message}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    let code = runtime.block_on(async {
        tokio::spawn(stop_on_signal());
        match run(args).await {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(err) => {
                eprintln!("bench failed: {err:#}");
                2
            }
        }
    });
    drop(runtime);
    std::process::exit(code);
}

/// Checks the flags that depend on `--store` and fills in their defaults.
fn resolve(args: &mut Args) -> Result<(), String> {
    match args.store {
        StoreKind::Embedded => {
            if let Some(url) = &args.database_url {
                return Err(format!("--database-url {url:?} needs --store postgres"));
            }
            if args.nodes.iter().any(|&n| n != 1) {
                return Err(format!(
                    "--nodes {:?}: the embedded store runs as one node (several need --store postgres)",
                    args.nodes
                ));
            }
            args.nodes = vec![1];
            args.profiles = args.profiles_flag.unwrap_or(DEFAULT_PROFILES);
            args.rate = args.rate_flag.unwrap_or(DEFAULT_RATE);
        }
        StoreKind::Postgres => {
            if args.nodes.is_empty() {
                args.nodes = vec![1, 2];
            }
            args.profiles = args.profiles_flag.unwrap_or(DEFAULT_PG_PROFILES);
            args.rate = args.rate_flag.unwrap_or(DEFAULT_PG_RATE);
        }
    }
    Ok(())
}

/// On ctrl-c or SIGTERM, kills the children, removes the scratch directories and exits.
async fn stop_on_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    eprintln!("interrupted: stopping the child processes");
    children::kill_all_and_clean();
    std::process::exit(130);
}

/// Everything the verdicts need.
#[derive(Default)]
struct Summary {
    /// One per server run: the embedded store's one, or one per `--nodes` value.
    runs: Vec<ServerRun>,
    ceiling_http: Option<LoadResult>,
    ceiling_storage: Vec<StorageResult>,
    ceiling_pg: Vec<pg::CeilingResult>,
}

/// Runs the whole benchmark; returns whether the server behaved (no errors, clean exit).
async fn run(args: Args) -> anyhow::Result<bool> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let scratch = ScratchDir::create(&parent, "consentry-bench", args.keep)?;
    let data_dir = scratch.path().join("data");
    let instance = match args.store {
        StoreKind::Embedded => None,
        StoreKind::Postgres => {
            let url = args.database_url.clone().unwrap_or_else(|| pg::DEFAULT_URL.to_string());
            Some(tokio::task::block_in_place(|| pg::Instance::connect(&url))?)
        }
    };
    print_header(&args, &sys::machine(&parent), instance.as_ref());

    // 1. Seed.
    let seed_db = match &instance {
        Some(instance) => Some(tokio::task::block_in_place(|| instance.create(&pg::scratch_name("seed"), None))?),
        None => None,
    };
    let seeded = seed_and_describe(&args, &data_dir, seed_db.as_ref()).await?;
    let args = with_server_flags(args, instance.is_some());

    // 2. and 3. The server(s) under load.
    let mut summary = Summary::default();
    let workload = Workload::new(&seeded.key, seeded.groups.clone(), args.profiles, USERS_PER_REQUEST);
    let mut server_ok = true;
    match (&instance, &seed_db) {
        (Some(instance), Some(template)) => {
            for &nodes in &args.nodes {
                let (run, ok) =
                    run_on_copy(&args, scratch.path(), instance, template, nodes, &seeded, &workload).await?;
                summary.runs.push(run);
                server_ok &= ok;
            }
        }
        _ => {
            let dir = data_dir.display().to_string();
            let (run, ok) = phases::run_server(&args, scratch.path(), &dir, None, 1, &seeded, &workload).await?;
            summary.runs.push(run);
            server_ok &= ok;
        }
    }

    // 4. The ceilings, and 5. the verdicts.
    if !args.skip_ceilings {
        phases::run_ceilings(&args, scratch.path(), &seeded, &mut summary).await?;
        if let (Some(instance), Some(template)) = (&instance, &seed_db) {
            phases::run_pg_ceilings(&args, instance, template, &seeded, &mut summary).await?;
        }
    }
    if args.ledger {
        let database = match &seed_db {
            Some(db) => db.url.clone(),
            None => data_dir.display().to_string(),
        };
        let phase_a_rate = summary.runs.first().and_then(|r| r.phase_a.as_ref()).map(|a| a.rate());
        phases::run_ledger(&args, scratch.path(), &database, seed_db.as_ref(), &seeded, phase_a_rate).await?;
    }
    match args.store {
        StoreKind::Embedded => verdicts::print_verdicts(&args, &summary),
        StoreKind::Postgres => verdicts::print_pg_verdicts(&args, &summary),
    }
    drop(seed_db);
    Ok(server_ok)
}

/// Prints the report's title and the machine (and PostgreSQL instance) it runs on.
fn print_header(args: &Args, machine: &sys::Machine, instance: Option<&pg::Instance>) {
    line(&format!(
        "Consentry load benchmark: POST /v2/subscription/status/set, and GET /subscription/status/get under writes, \
         {}",
        match args.store {
            StoreKind::Embedded => "embedded store".to_string(),
            StoreKind::Postgres => format!(
                "PostgreSQL store, {}",
                args.nodes
                    .iter()
                    .map(|n| format!("{n} node{}", if *n == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(" then ")
            ),
        }
    ));
    section("Machine");
    row("date (UTC)", &machine.date);
    row("CPUs", machine.cpus);
    row("CPU model", &machine.cpu_model);
    row("memory", format!("{:.1} GiB", machine.memory as f64 / (1u64 << 30) as f64));
    row("kernel", &machine.kernel);
    row("file system", &machine.filesystem);
    row("crate commit", &machine.commit);
    if let Some(instance) = instance {
        section("PostgreSQL");
        row(
            "instance",
            format!("{} (scratch databases consentry_bench_{}_*)", instance.describe(), std::process::id()),
        );
        row("version", &instance.version);
        let settings: Vec<String> = instance.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        row("settings", settings.join(", "));
        row(
            "shares the machine",
            "the instance runs on the same cores as the server(s) and the load generator, and serves other databases \
             (other users' tests) meanwhile: its CPU below is split by database",
        );
    }
}

/// Seeds the store (into `data_dir`, or into the scratch database `seed_db`) and prints the
/// setup: the seeded data, the workload, and the store's size after seeding.
async fn seed_and_describe(
    args: &Args,
    data_dir: &std::path::Path,
    seed_db: Option<&pg::ScratchDatabase>,
) -> anyhow::Result<seed::Seeded> {
    let location = match seed_db {
        Some(db) => consentry::store::DatabaseLocation::Postgres(db.url.clone()),
        None => consentry::store::DatabaseLocation::Embedded(data_dir.to_path_buf()),
    };
    eprintln!("seeding {} profiles into {location}", args.profiles);
    let seeded = seed::seed(&location, args.profiles, args.groups).await.context("seeding failed")?;
    section("Setup");
    let count = |c| seeded.channels.iter().filter(|&&x| x == c).count();
    use consentry::domain::subscription::Channel;
    row("profiles", format!("{} (external id, email and phone each)", int(args.profiles)));
    row(
        "groups",
        format!(
            "{} ({} email, {} sms, {} whatsapp)",
            seeded.groups.len(),
            count(Channel::Email),
            count(Channel::Sms),
            count(Channel::Whatsapp)
        ),
    );
    row("request", format!("1 entry of {USERS_PER_REQUEST} distinct random external ids"));
    row("mix", "half change (random users, group, state), half exact replay of an acknowledged change (no-op)");
    row(
        "read request (phase C)",
        format!(
            "GET /subscription/status/get, a random group, {USERS_PER_REQUEST} distinct random seeded profiles \
             by external id (C1), then by email (C2, email groups only)"
        ),
    );
    row(
        "seeding",
        format!(
            "{} profiles in {} ({} profiles/s, Store::import_profiles, chunks of 10,000)",
            int(args.profiles),
            secs(seeded.import_time),
            rate(args.profiles as f64 / seeded.import_time.as_secs_f64())
        ),
    );
    match seed_db {
        None => row("store on disk after seeding", mb(sys::dir_size(data_dir))),
        Some(db) => {
            let took = tokio::task::block_in_place(|| db.vacuum_analyze())?;
            row("VACUUM (ANALYZE) after seeding", secs(took));
            tokio::task::block_in_place(|| phases::pg_size_rows(db, "after seeding"));
        }
    }
    row("rate limits", seed::RATE_LIMITS);
    row(
        "load generator",
        format!("this process, tokio with {} worker thread(s), own HTTP/1.1 client, keep-alive", args.client_threads),
    );
    Ok(seeded)
}

/// `args` with the flags every server node gets (on PostgreSQL, the pool and the writers),
/// after printing the server's command line.
fn with_server_flags(args: Args, postgres: bool) -> Args {
    let mut serve_args = args.serve_args.clone();
    if postgres {
        serve_args.push(format!("--pg-pool-size={}", args.pg_pool_size));
        serve_args.push(format!("--pg-max-concurrent-writes={}", args.pg_max_concurrent_writes));
    }
    let database_word = if postgres { "URL" } else { "DIR" };
    let mut serve_line = format!("consentry --database {database_word} serve --listen ADDR {}", serve_args.join(" "));
    for var in ["CONSENTRY_DURABILITY", "CONSENTRY_MAX_BATCH", "CONSENTRY_CACHE_MB", "CONSENTRY_PG_POOL_SIZE"] {
        if let Ok(value) = std::env::var(var) {
            serve_line.push_str(&format!(" [{var}={value}]"));
        }
    }
    row("server", serve_line.trim_end());
    Args { serve_args, ..args }
}

/// One PostgreSQL run of `nodes` servers, on a fresh copy of the seeded database `template`.
async fn run_on_copy(
    args: &Args,
    scratch: &std::path::Path,
    instance: &pg::Instance,
    template: &pg::ScratchDatabase,
    nodes: u16,
    seeded: &seed::Seeded,
    workload: &std::sync::Arc<Workload>,
) -> anyhow::Result<(ServerRun, bool)> {
    let name = pg::scratch_name(&format!("{nodes}node"));
    eprintln!("copying the seeded database into {name}");
    let started = std::time::Instant::now();
    let db = tokio::task::block_in_place(|| instance.create(&name, Some(&template.name)))?;
    line(&format!(
        "\n=== {nodes} node{} on PostgreSQL (a fresh copy of the seeded database, made in {}) ===",
        if nodes == 1 { "" } else { "s" },
        secs(started.elapsed())
    ));
    phases::run_server(args, scratch, &db.url, Some(&db), usize::from(nodes), seeded, workload).await
}
