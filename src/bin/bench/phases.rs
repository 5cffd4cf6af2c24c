//! The measured phases: the real server under load (phase B open loop, phase A closed loop,
//! phase C reads under writes at half phase A's rate, then SIGTERM), and the two ceilings ((a)
//! HTTP without a store in a child process, (b) the store's writes straight into fjall in this
//! process). Each prints its report section as it completes and leaves its figures in the
//! [`Summary`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::children::{self, ChildProcess, ScratchDir};
use crate::load::{self, LoadResult};
use crate::report::{self, int, line, mb, ms, rate, row, secs, section};
use crate::storage::{self, StorageSetup};
use crate::workload::{ReadBy, ReadWorkload, Workload};
use crate::{perf, seed, sys, Args, Summary, USERS_PER_REQUEST};

/// Resource readings of the server and this process at one moment.
struct Readings {
    bench_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    server_threads: std::collections::BTreeMap<String, Duration>,
    server_written: Option<u64>,
}

impl Readings {
    fn take(server: u32) -> Readings {
        Readings {
            bench_cpu: sys::own_cpu_time(),
            server_cpu: sys::cpu_time(server),
            server_threads: sys::thread_cpu_times(server),
            server_written: sys::bytes_written(server),
        }
    }
}

/// Prints the CPU and I/O a phase cost the server and the generator; the bytes written are
/// divided by `requests`, named `per` (`request`, or `write request` when reads ran too).
fn print_costs(before: &Readings, after: &Readings, wall: Duration, requests: u64, per: &str) {
    let diff = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
    row("server CPU", report::cpu(diff(after.server_cpu, before.server_cpu), wall));
    for thread in report::thread_cpu(&before.server_threads, &after.server_threads, wall).iter().take(6) {
        row("", format!("  {thread}"));
    }
    row("load generator CPU (this proc)", report::cpu(diff(after.bench_cpu, before.bench_cpu), wall));
    if let (Some(a), Some(b)) = (after.server_written, before.server_written) {
        row(
            "server writes to storage",
            format!(
                "{} ({:.1} KB per {per})",
                mb(a.saturating_sub(b)),
                a.saturating_sub(b) as f64 / 1e3 / requests.max(1) as f64
            ),
        );
    }
}

/// Server CPU below which the server counts as idle: 10% of one core.
const IDLE_CPU_SHARE: f64 = 0.10;
/// Longest wait for the server to become idle before a phase starts anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// Waits until the server's engine has caught up (its CPU stays under [`IDLE_CPU_SHARE`] of a
/// core for a second), so that each phase measures its own load and not the compaction debt of
/// the seeding or of the phase before it. Returns how long that took.
async fn settle(pid: u32) -> Duration {
    let started = std::time::Instant::now();
    let window = Duration::from_secs(1);
    while started.elapsed() < SETTLE_LIMIT {
        let before = sys::cpu_time(pid);
        tokio::time::sleep(window).await;
        match (before, sys::cpu_time(pid)) {
            (Some(before), Some(after)) if (after - before).as_secs_f64() < IDLE_CPU_SHARE * window.as_secs_f64() => {
                break
            }
            (None, _) | (_, None) => break,
            _ => {}
        }
    }
    started.elapsed()
}

/// Prints the throughput rows of a closed-loop run.
fn print_closed_loop(result: &LoadResult) {
    row("requests/s", rate(result.rate()));
    row(
        "  of which",
        format!(
            "{} change/s, {} no-op/s",
            rate(result.changes as f64 / result.elapsed.as_secs_f64()),
            rate(result.noops as f64 / result.elapsed.as_secs_f64())
        ),
    );
    row("latency p50 / p99 / max", report::latencies(result));
    row("errors (non-201)", report::errors(result));
}

/// Starts the server, runs phases B, A and C, stops it. Returns whether it answered every
/// request and exited cleanly.
pub async fn run_server(
    args: &Args,
    scratch: &Path,
    data_dir: &Path,
    seeded: &seed::Seeded,
    workload: &std::sync::Arc<Workload>,
    summary: &mut Summary,
) -> anyhow::Result<bool> {
    let addr = children::free_loopback_addr()?;
    let mut argv = vec![children::SERVE.to_string(), data_dir.display().to_string(), addr.to_string()];
    argv.extend(args.serve_args.iter().cloned());
    let log = scratch.join("server.log");
    eprintln!("starting the server on {addr} (log: {})", log.display());
    let mut server = ChildProcess::spawn_self("server", &argv, &log)?;
    let started = tokio::task::block_in_place(|| server.wait_until_listening(addr, Duration::from_secs(600)))?;
    let pid = server.pid();
    section("Server");
    row("listening after", secs(started));
    row("RSS when listening", mb(sys::memory(pid).map(|m| m.rss).unwrap_or(0)));
    eprintln!("waiting for the server to finish compacting the seeded store");
    row("idle (compaction caught up) after", secs(settle(pid).await));

    // Phase B first: a latency measured right after phase A's overload would measure the
    // compaction debt phase A left behind, not the latency at this rate.
    let duration = Duration::from_secs(args.latency_duration);
    eprintln!("phase B: open loop, {} requests/s, {} s", args.rate, args.latency_duration);
    let before = Readings::take(pid);
    let phase_b =
        load::open_loop(addr, workload.clone(), f64::from(args.rate), duration, args.latency_connections).await?;
    let after = Readings::take(pid);
    section(&format!(
        "Phase B: latency at a fixed rate (open loop, {} requests/s, {} s, pool of {} connections)",
        int(u64::from(args.rate)),
        args.latency_duration,
        args.latency_connections
    ));
    row("scheduled / answered 201", format!("{} / {}", int(phase_b.scheduled), int(phase_b.ok())));
    row("achieved rate", format!("{} requests/s", rate(phase_b.rate())));
    open_loop_rows("", &phase_b, args.latency_connections);
    print_costs(&before, &after, duration, phase_b.ok(), "request");

    eprintln!("waiting for the server to become idle after phase B");
    row("idle again after", secs(settle(pid).await));

    // Phase A.
    let duration = Duration::from_secs(args.duration);
    eprintln!("phase A: closed loop, {} connections, {} s", args.connections, args.duration);
    let profiler = match &args.perf_record {
        Some(path) => Some(perf::record(pid, path, duration)?),
        None => None,
    };
    let fsync_counter = tokio::task::block_in_place(|| {
        perf::FsyncCounter::start(pid, &scratch.join("fsyncs.csv"), duration + Duration::from_secs(10))
    });
    let before = Readings::take(pid);
    let phase_a = load::closed_loop(addr, workload.clone(), args.connections, duration).await?;
    let after = Readings::take(pid);
    let fsyncs = tokio::task::block_in_place(|| fsync_counter.and_then(perf::FsyncCounter::finish));
    if let Some(mut profiler) = profiler {
        let _ = tokio::task::block_in_place(|| profiler.wait());
    }
    section(&format!("Phase A: max throughput (closed loop, {} connections, {} s)", args.connections, args.duration));
    print_closed_loop(&phase_a);
    row("state changes/s", rate(phase_a.changes as f64 * USERS_PER_REQUEST as f64 / phase_a.elapsed.as_secs_f64()));
    if let Some((low, high)) = phase_a.window_rates(10) {
        row("10 s windows, lowest / highest", format!("{} / {} requests/s", rate(low), rate(high)));
    }
    if let Some((low, high)) = phase_a.window_rates(1) {
        row("1 s windows, lowest / highest", format!("{} / {} requests/s", rate(low), rate(high)));
    }
    print_costs(&before, &after, duration, phase_a.ok(), "request");
    match fsyncs {
        Some(fsyncs) => {
            let batch = phase_a.ok() as f64 / fsyncs.writer as f64;
            row(
                "writer commits (fsyncs)",
                format!(
                    "{} = {} per s; about {batch:.1} requests per commit (all threads: {} fsyncs)",
                    int(fsyncs.writer),
                    rate(fsyncs.writer as f64 / duration.as_secs_f64()),
                    int(fsyncs.all)
                ),
            );
            summary.server_batch = Some(batch);
        }
        None => row("writer commits (fsyncs)", "unknown (perf stat with syscall tracepoints unavailable)"),
    }
    let after_a = sys::memory(pid).ok();
    row("server RSS after phase A", mb(after_a.as_ref().map_or(0, |m| m.rss)));
    row("peak RSS so far (VmHWM)", mb(after_a.as_ref().map_or(0, |m| m.peak_rss)));
    summary.peak_rss_phase_a = after_a.map(|m| m.peak_rss);
    if let Some(path) = &args.perf_record {
        row("perf profile", format!("{} (perf report -i {} --no-children)", path.display(), path.display()));
    }

    // Phase C: the issue asks for reads "while writes run at half their maximum rate"; phase A
    // just measured that maximum.
    if args.read_duration > 0 {
        let write_target = phase_a.rate() / 2.0;
        if write_target >= 1.0 {
            for (i, by) in [ReadBy::ExternalId, ReadBy::Email].into_iter().enumerate() {
                if read_groups(seeded, by).is_empty() {
                    section(&format!("Phase C{}: reads by {}", i + 1, by.param()));
                    row("skipped", "no group of a channel these identifiers address");
                    continue;
                }
                let phase = run_reads(args, addr, pid, seeded, workload, write_target, by, i + 1).await?;
                summary.phase_c.push(phase);
            }
            row("server RSS after phase C", mb(sys::memory(pid).map(|m| m.rss).unwrap_or(0)));
        } else {
            section("Phase C: reads under writes");
            row("skipped", "phase A measured no write throughput to take half of");
        }
    }

    // Stop.
    let memory = sys::memory(pid).context("cannot read the server's memory")?;
    eprintln!("stopping the server (SIGTERM)");
    let stopped = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(120)));
    section("Server shutdown");
    row("peak RSS (VmHWM)", mb(memory.peak_rss));
    row("RSS before SIGTERM (VmRSS)", mb(memory.rss));
    let exit_ok = match &stopped {
        Ok((status, took)) => {
            row("SIGTERM to exit", format!("{} ({status})", secs(*took)));
            status.success()
        }
        Err(err) => {
            row("SIGTERM to exit", format!("FAILED: {err:#}"));
            false
        }
    };
    if !exit_ok {
        line(&format!("  server output ends with:\n{}", server.log_tail()));
    }
    row("store on disk after the run", mb(sys::dir_size(data_dir)));
    drop(server);

    let clean = exit_ok
        && phase_a.error_count() == 0
        && phase_b.error_count() == 0
        && summary.phase_c.iter().all(ReadPhase::clean);
    summary.peak_rss = Some(memory.peak_rss);
    summary.exit_ok = exit_ok;
    summary.phase_a = Some(phase_a);
    summary.phase_b = Some(phase_b);
    Ok(clean)
}

/// What one sub-phase of phase C measured.
pub struct ReadPhase {
    /// How the reads named their profiles.
    pub by: ReadBy,
    /// The closed-loop reads.
    pub reads: LoadResult,
    /// The open-loop writes that ran at the same time.
    pub writes: LoadResult,
    /// The writes' intended rate: half of phase A's requests/s.
    pub write_target: f64,
    /// What was wrong with the sample answers checked before the phase (none: all good).
    pub probe_problems: Vec<String>,
}

impl ReadPhase {
    /// No failed read or write, and sample answers as expected.
    pub fn clean(&self) -> bool {
        self.reads.error_count() == 0 && self.writes.error_count() == 0 && self.probe_problems.is_empty()
    }
}

/// Read requests whose answers [`probe`] checks before a read phase.
const PROBE_REQUESTS: usize = 20;

/// What the sample answers said.
struct Probe {
    /// Answers by state (`Subscribed`, `Unsubscribed`, `Unknown`).
    states: std::collections::BTreeMap<String, u64>,
    /// What was wrong, if anything.
    problems: Vec<String>,
}

/// Sends [`PROBE_REQUESTS`] reads one after the other and checks their answers (200, `success`,
/// one known state per identifier asked), so that the phase measures real answers and not fast
/// errors or empty objects; counts the states, which shows how many reads found a state.
async fn probe(addr: SocketAddr, reads: &ReadWorkload) -> anyhow::Result<Probe> {
    let mut conn = crate::client::Connection::connect(addr).await.context("cannot connect for the read probe")?;
    let mut rng = crate::workload::Rng::new(crate::workload::seed(7));
    let mut result = Probe { states: Default::default(), problems: Vec::new() };
    for _ in 0..PROBE_REQUESTS {
        let request = reads.request(&mut rng);
        let (response, body) = conn.send_for_body(&request).await.context("read probe")?;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let answers = value.get("status").and_then(|s| s.as_object());
        let problem = if response.status != 200 {
            Some(format!("HTTP {}: {}", response.status, String::from_utf8_lossy(&body)))
        } else if value.get("message").and_then(|m| m.as_str()) != Some("success") {
            Some(format!("no \"message\":\"success\": {}", String::from_utf8_lossy(&body)))
        } else if answers.map(|a| a.len()) != Some(USERS_PER_REQUEST) {
            Some(format!("{} answers for {USERS_PER_REQUEST} identifiers", answers.map_or(0, |a| a.len())))
        } else {
            None
        };
        if let Some(problem) = problem {
            result.problems.push(problem);
            continue;
        }
        for state in answers.into_iter().flat_map(|a| a.values()) {
            let state = state.as_str().unwrap_or("(not a string)");
            if !matches!(state, "Subscribed" | "Unsubscribed" | "Unknown") {
                result.problems.push(format!("unexpected state {state:?}"));
            }
            *result.states.entry(state.to_string()).or_default() += 1;
        }
    }
    Ok(result)
}

/// The groups a read by `by` may ask about: all of them by external id; by email only the
/// email groups, since the API refuses emails for an SMS or WhatsApp group (400).
fn read_groups(seeded: &seed::Seeded, by: ReadBy) -> Vec<String> {
    use consentry::domain::subscription::Channel;
    seeded
        .groups
        .iter()
        .zip(&seeded.channels)
        .filter(|(_, &channel)| by == ReadBy::ExternalId || channel == Channel::Email)
        .map(|(group, _)| group.clone())
        .collect()
}

/// One sub-phase of phase C: waits until the server is idle, checks sample answers, then for
/// `--read-duration` runs a closed loop of reads by `by` and, at the same time, the write mix
/// open loop at `write_target` requests/s; prints the section.
#[allow(clippy::too_many_arguments)]
async fn run_reads(
    args: &Args,
    addr: SocketAddr,
    pid: u32,
    seeded: &seed::Seeded,
    writes: &std::sync::Arc<Workload>,
    write_target: f64,
    by: ReadBy,
    number: usize,
) -> anyhow::Result<ReadPhase> {
    // Phase A (or the previous sub-phase) leaves compaction debt that would otherwise be paid
    // during this phase's reads.
    eprintln!("waiting for the server to become idle before phase C{number}");
    let idle = settle(pid).await;
    let reads = ReadWorkload::new(&seeded.key, read_groups(seeded, by), args.profiles, USERS_PER_REQUEST, by);
    let sample = probe(addr, &reads).await?;

    let duration = Duration::from_secs(args.read_duration);
    eprintln!(
        "phase C{number}: status/get by {}, closed loop, {} connections, {} s; writes open loop at {} requests/s",
        by.param(),
        args.read_connections,
        args.read_duration,
        rate(write_target)
    );
    let before = Readings::take(pid);
    // Both loops start together and run for the same duration on this process's runtime.
    let (write_result, read_result) = tokio::join!(
        load::open_loop(addr, writes.clone(), write_target, duration, args.latency_connections),
        load::closed_loop(addr, reads, args.read_connections, duration),
    );
    let after = Readings::take(pid);
    let (write_result, read_result) = (write_result?, read_result?);

    section(&format!(
        "Phase C{number}: GET /subscription/status/get with {USERS_PER_REQUEST} {}s while writes run at half phase A's rate ({} s)",
        by.param(),
        args.read_duration
    ));
    row("idle before the phase after", secs(idle));
    let total: u64 = sample.states.values().sum();
    let states: Vec<String> = ["Subscribed", "Unsubscribed", "Unknown"]
        .into_iter()
        .map(|state| format!("{} {state}", int(sample.states.get(state).copied().unwrap_or(0))))
        .collect();
    row(
        &format!("answers of {PROBE_REQUESTS} sample reads"),
        format!("{} of {} identifiers", states.join(", "), int(total)),
    );
    if !sample.problems.is_empty() {
        row("sample problems", format!("{} (first: {})", sample.problems.len(), sample.problems[0]));
    }
    line(&format!(
        "  reads: closed loop, {} connections, {} group(s) of the {}",
        args.read_connections,
        read_groups(seeded, by).len(),
        seeded.groups.len()
    ));
    row("  requests/s", rate(read_result.rate()));
    row("  identifiers/s", rate(read_result.rate() * USERS_PER_REQUEST as f64));
    row("  latency p50 / p99 / max", report::latencies(&read_result));
    row("  errors (non-200)", report::errors(&read_result));
    if let Some((low, high)) = read_result.window_rates(10) {
        row("  10 s windows, low / high", format!("{} / {} requests/s", rate(low), rate(high)));
    }
    if let Some((low, high)) = read_result.window_rates(1) {
        row("  1 s windows, low / high", format!("{} / {} requests/s", rate(low), rate(high)));
    }
    line(&format!(
        "  writes: open loop at {} requests/s (half of phase A's {}), pool of {} connections",
        rate(write_target),
        rate(2.0 * write_target),
        args.latency_connections
    ));
    row("  scheduled / answered 201", format!("{} / {}", int(write_result.scheduled), int(write_result.ok())));
    row(
        "  achieved rate",
        format!(
            "{} requests/s ({} of the target)",
            rate(write_result.rate()),
            report::percent(write_result.rate(), write_target)
        ),
    );
    open_loop_rows("  ", &write_result, args.latency_connections);
    print_costs(&before, &after, duration, write_result.ok(), "write request");
    Ok(ReadPhase { by, reads: read_result, writes: write_result, write_target, probe_problems: sample.problems })
}

/// The rows every open-loop write load reports (phase B, and the writes under phase C's
/// reads), each label prefixed by `indent`.
fn open_loop_rows(indent: &str, result: &LoadResult, pool: usize) {
    row(
        &format!("{indent}latency p50 / p99 / max"),
        format!("{} (from the intended send time)", report::latencies(result)),
    );
    row(&format!("{indent}errors (non-201)"), report::errors(result));
    row(&format!("{indent}most requests in flight"), format!("{} (pool of {pool})", result.max_in_flight));
    row(
        &format!("{indent}longest pick-up delay"),
        format!(
            "{} from due to sent; of which the scheduler's timer woke up to {} late",
            ms(result.max_send_delay),
            ms(result.max_schedule_lag)
        ),
    );
}

/// Runs ceiling (a) and the ceiling (b) variants.
pub async fn run_ceilings(
    args: &Args,
    scratch: &Path,
    seeded: &seed::Seeded,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.ceiling_duration);

    // (a) HTTP and JSON, no store.
    let addr: SocketAddr = children::free_loopback_addr()?;
    eprintln!("ceiling (a): HTTP server without a store on {addr}, {} s", args.ceiling_duration);
    let log = scratch.join("ceiling-http.log");
    let mut http =
        ChildProcess::spawn_self("ceiling (a) server", &[children::CEILING_HTTP.to_string(), addr.to_string()], &log)?;
    tokio::task::block_in_place(|| http.wait_until_listening(addr, Duration::from_secs(30)))?;
    let workload = Workload::new(&seeded.key, seeded.groups.clone(), args.profiles, USERS_PER_REQUEST);
    let before = Readings::take(http.pid());
    let result = load::closed_loop(addr, workload, args.connections, duration).await?;
    let after = Readings::take(http.pid());
    let _ = tokio::task::block_in_place(|| http.terminate(Duration::from_secs(10)));
    drop(http);
    section(&format!(
        "Ceiling (a): axum 0.8 parsing the body into serde_json::Value, 201, no store (closed loop, {} connections, {} s)",
        args.connections, args.ceiling_duration
    ));
    print_closed_loop(&result);
    print_costs(&before, &after, duration, result.ok(), "request");
    summary.ceiling_http = Some(result);

    // (b) The store writes straight into fjall.
    section(&format!(
        "Ceiling (b): the writer's store work straight into fjall, one thread, PersistMode::SyncAll per commit, {} s each",
        args.ceiling_duration
    ));
    line(&format!(
        "  (a fresh database per run with the store's keyspaces and block cache, {} profiles prefilled with the store's codec)",
        int(args.profiles)
    ));
    let b = args.ceiling_batch.max(1);
    // As the server batched in phase A, with its mix, when perf could tell; else B with the mix.
    let server_b = summary.server_batch.map_or(b, |mean| (mean.round() as usize).max(1));
    let setups = [
        (b, false, storage::Options::Store),
        (1, false, storage::Options::Store),
        (server_b, true, storage::Options::Store),
        (b, false, storage::Options::EngineDefaults),
    ];
    for (batch, mixed, options) in setups {
        let setup = StorageSetup {
            profiles: args.profiles,
            groups: args.groups,
            users_per_request: USERS_PER_REQUEST,
            batch,
            mixed,
            options,
            duration,
        };
        eprintln!(
            "ceiling (b): B = {batch}, {}, {options:?}: prefilling {} profiles",
            if mixed { "mixed" } else { "changes" },
            args.profiles
        );
        let dir = ScratchDir::create(scratch, "ceiling-storage", false)?;
        let path = dir.path().to_path_buf();
        let result = tokio::task::spawn_blocking(move || storage::run(&path, setup)).await??;
        drop(dir);
        report::storage_rows(&result);
        summary.ceiling_storage.push(result);
    }
    Ok(())
}
