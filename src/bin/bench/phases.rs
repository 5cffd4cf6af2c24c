//! The measured phases: the real server under load (phase A closed loop, phase B open loop,
//! then SIGTERM), and the two ceilings ((a) HTTP without a store in a child process, (b) the
//! store's writes straight into fjall in this process). Each prints its report section as it
//! completes and leaves its figures in the [`Summary`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::children::{self, ChildProcess, ScratchDir};
use crate::load::{self, LoadResult};
use crate::report::{self, int, line, mb, ms, rate, row, secs, section};
use crate::storage::{self, StorageSetup};
use crate::workload::Workload;
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

/// Prints the CPU and I/O a phase cost the server and the generator.
fn print_costs(before: &Readings, after: &Readings, wall: Duration, requests: u64) {
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
                "{} ({:.1} KB per request)",
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

/// Starts the server, runs phases A and B, stops it. Returns whether it answered every request
/// and exited cleanly.
pub async fn run_server(
    args: &Args,
    scratch: &Path,
    data_dir: &Path,
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
    row("latency p50 / p99 / max", format!("{} (from the intended send time)", report::latencies(&phase_b)));
    row("errors (non-201)", report::errors(&phase_b));
    row("most requests in flight", format!("{} (pool of {})", phase_b.max_in_flight, args.latency_connections));
    row(
        "longest pick-up delay",
        format!(
            "{} from due to sent; of which the scheduler's timer woke up to {} late",
            ms(phase_b.max_send_delay),
            ms(phase_b.max_schedule_lag)
        ),
    );
    print_costs(&before, &after, duration, phase_b.ok());

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
    print_costs(&before, &after, duration, phase_a.ok());
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
    row("server RSS after phase A", mb(sys::memory(pid).map(|m| m.rss).unwrap_or(0)));
    if let Some(path) = &args.perf_record {
        row("perf profile", format!("{} (perf report -i {} --no-children)", path.display(), path.display()));
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

    let clean = exit_ok && phase_a.error_count() == 0 && phase_b.error_count() == 0;
    summary.peak_rss = Some(memory.peak_rss);
    summary.exit_ok = exit_ok;
    summary.phase_a = Some(phase_a);
    summary.phase_b = Some(phase_b);
    Ok(clean)
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
    print_costs(&before, &after, duration, result.ok());
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
