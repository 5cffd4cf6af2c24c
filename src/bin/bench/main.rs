//! `cargo run --release --bin bench`: the load benchmark of `POST /v2/subscription/status/set`,
//! and of `GET /subscription/status/get` while writes run.
//!
//! In one run it:
//! 1. seeds a fresh embedded store in-process (the `default` workspace and key, 20 groups,
//!    1,000,000 profiles with external ids, emails and phones) and closes it;
//! 2. starts the real server (`consentry serve`, unchanged) in a child process on that store;
//! 3. drives it from a load generator in this process with requests of 50 random external ids,
//!    half of them changing states and half replaying an acknowledged change (no-ops):
//!    phase B at a fixed rate (open loop, latency from the intended send time), phase A as fast
//!    as it answers (closed loop); then phase C: reads of 50 random profiles' states (by
//!    external id, then by email) as fast as it answers, while the same writes run open loop at
//!    half of phase A's rate; then stops it with SIGTERM and measures its peak RSS and the store
//!    on disk;
//! 4. measures two ceilings on the same machine in the same run: (a) an axum server that
//!    parses the same JSON and answers 201 without a store, (b) the same store writes straight
//!    into fjall with the same durability, batched;
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
mod phases;
mod report;
mod seed;
mod storage;
mod sys;
mod verdicts;
mod workload;

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use children::ScratchDir;
use load::LoadResult;
use phases::ReadPhase;
use report::{int, line, mb, rate, row, secs, section};
use storage::StorageResult;
use workload::Workload;

/// Users per request, as the workload says.
const USERS_PER_REQUEST: usize = 50;

/// Load benchmark of Consentry's POST /v2/subscription/status/set, and of GET
/// /subscription/status/get under writes, on the embedded store.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Profiles to seed.
    #[arg(long, default_value_t = 1_000_000)]
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
    /// Phase B request rate, per second.
    #[arg(long, default_value_t = 1000)]
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
    /// Duration of each ceiling run, in seconds.
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
    /// Skip both ceilings (and the ratios and the target that need them).
    #[arg(long)]
    skip_ceilings: bool,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Extra flag for `consentry serve` (repeatable), e.g. `--serve-arg=--durability=buffered`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
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
    let args = Args::parse();
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
    phase_a: Option<LoadResult>,
    phase_b: Option<LoadResult>,
    /// Phase C's sub-phases, in order (empty when skipped).
    phase_c: Vec<ReadPhase>,
    /// The server's peak RSS for the whole run.
    peak_rss: Option<u64>,
    /// The server's peak RSS through phase A, before phase C's reads.
    peak_rss_phase_a: Option<u64>,
    /// Mean requests per commit of the server's writer in phase A, when `perf` could count.
    server_batch: Option<f64>,
    exit_ok: bool,
    ceiling_http: Option<LoadResult>,
    ceiling_storage: Vec<StorageResult>,
}

/// Runs the whole benchmark; returns whether the server behaved (no errors, clean exit).
async fn run(args: Args) -> anyhow::Result<bool> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let scratch = ScratchDir::create(&parent, "consentry-bench", args.keep)?;
    let data_dir = scratch.path().join("data");
    let machine = sys::machine(&parent);

    line(
        "Consentry load benchmark: POST /v2/subscription/status/set, and GET /subscription/status/get under writes, \
         embedded store",
    );
    section("Machine");
    row("date (UTC)", &machine.date);
    row("CPUs", machine.cpus);
    row("CPU model", &machine.cpu_model);
    row("memory", format!("{:.1} GiB", machine.memory as f64 / (1u64 << 30) as f64));
    row("kernel", &machine.kernel);
    row("file system", &machine.filesystem);
    row("crate commit", &machine.commit);

    // 1. Seed.
    eprintln!("seeding {} profiles into {}", args.profiles, data_dir.display());
    let seeded = seed::seed(&data_dir, args.profiles, args.groups).await.context("seeding failed")?;
    let seeded_size = sys::dir_size(&data_dir);
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
    row("store on disk after seeding", mb(seeded_size));
    row("rate limits", seed::RATE_LIMITS);
    row(
        "load generator",
        format!("this process, tokio with {} worker thread(s), own HTTP/1.1 client, keep-alive", args.client_threads),
    );
    let mut serve_line = format!("consentry --database DIR serve --listen ADDR {}", args.serve_args.join(" "));
    for var in ["CONSENTRY_DURABILITY", "CONSENTRY_MAX_BATCH", "CONSENTRY_CACHE_MB"] {
        if let Ok(value) = std::env::var(var) {
            serve_line.push_str(&format!(" [{var}={value}]"));
        }
    }
    row("server", serve_line.trim_end());

    let mut summary = Summary::default();
    let workload = Workload::new(&seeded.key, seeded.groups.clone(), args.profiles, USERS_PER_REQUEST);
    let server_ok = phases::run_server(&args, scratch.path(), &data_dir, &seeded, &workload, &mut summary).await?;

    if !args.skip_ceilings {
        phases::run_ceilings(&args, scratch.path(), &seeded, &mut summary).await?;
    }
    verdicts::print_verdicts(&args, &summary);
    Ok(server_ok)
}
