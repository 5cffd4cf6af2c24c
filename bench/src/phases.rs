//! The measured phases: the real server under load (phase B open loop, phase A closed loop,
//! phase C reads under writes at half phase A's rate, then SIGTERM), and the ceilings ((a) HTTP
//! without a store in a child process, (b) the store's writes straight into fjall in this
//! process, (c) the PostgreSQL store's writes straight into PostgreSQL from this process).
//! Each prints its report section as it completes and leaves its figures in a [`ServerRun`] or
//! the [`Summary`]. On PostgreSQL the server may run as several nodes (processes) sharing one
//! database, the load spread over them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::children::{self, ChildProcess, ScratchDir};
use crate::load::{self, LoadResult};
use crate::pg::{self, ScratchDatabase};
use crate::report::{self, int, line, mb, ms, rate, row, secs, section};
use crate::storage::{self, StorageSetup};
use crate::workload::{ReadBy, ReadWorkload, Workload};
use crate::{perf, seed, sys, Args, Summary, USERS_PER_REQUEST};

/// The server processes under test, and the PostgreSQL database they share, if any.
pub struct Nodes<'a> {
    /// Their addresses, in node order.
    pub addrs: Vec<SocketAddr>,
    /// Their process ids, in node order.
    pub pids: Vec<u32>,
    /// The database, on PostgreSQL.
    pub pg: Option<&'a ScratchDatabase>,
}

/// What one server run (one or several nodes) measured.
#[derive(Default)]
pub struct ServerRun {
    /// Server processes.
    pub nodes: usize,
    /// Phase A, closed loop.
    pub phase_a: Option<LoadResult>,
    /// Phase B, open loop.
    pub phase_b: Option<LoadResult>,
    /// Phase C's sub-phases, in order (empty when skipped).
    pub phase_c: Vec<ReadPhase>,
    /// Each node's peak RSS for the whole run.
    pub peak_rss: Vec<u64>,
    /// The largest node peak RSS through phase A, before phase C's reads.
    pub peak_rss_phase_a: Option<u64>,
    /// Mean requests per commit of the server's writer in phase A, when `perf` could count
    /// (embedded store only).
    pub server_batch: Option<f64>,
    /// Every node exited 0 on SIGTERM.
    pub exit_ok: bool,
}

impl ServerRun {
    /// The largest peak RSS of a node.
    pub fn peak_rss(&self) -> Option<u64> {
        self.peak_rss.iter().copied().max()
    }
}

/// Resource readings of the servers, this process and PostgreSQL at one moment.
struct Readings {
    bench_cpu: Option<Duration>,
    server_cpu: Option<Duration>,
    server_threads: std::collections::BTreeMap<String, Duration>,
    server_written: Option<u64>,
    pg: Option<PgReadings>,
}

/// The instance's CPU, its WAL position, and the database's transactions (committed, rolled
/// back), at one moment.
type PgReadings = (pg::PgCpu, Option<u64>, Option<(u64, u64)>);

impl Readings {
    fn take(servers: &[u32], database: Option<&ScratchDatabase>) -> Readings {
        let mut server_threads = std::collections::BTreeMap::new();
        for &pid in servers {
            for (name, cpu) in sys::thread_cpu_times(pid) {
                *server_threads.entry(name).or_default() += cpu;
            }
        }
        Readings {
            bench_cpu: sys::own_cpu_time(),
            server_cpu: servers.iter().map(|&pid| sys::cpu_time(pid)).sum(),
            server_threads,
            server_written: servers.iter().map(|&pid| sys::bytes_written(pid)).sum(),
            pg: database.map(|db| (pg::instance_cpu(&db.name), db.wal_position(), db.transactions())),
        }
    }
}

/// Prints the CPU and I/O a phase cost the server(s), the generator and PostgreSQL; the bytes
/// written are divided by `requests`, named `per` (`request`, or `write request` when reads ran
/// too).
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
    if let (Some((cpu_a, wal_a, tx_a)), Some((cpu_b, wal_b, tx_b))) = (&after.pg, &before.pg) {
        if let (Some((commits_a, rollbacks_a)), Some((commits_b, rollbacks_b))) = (tx_a, tx_b) {
            row(
                "PostgreSQL transactions",
                format!(
                    "{} committed, {} rolled back (failed to serialize, run again) ≈ {:.2} per {per}",
                    int(commits_a.saturating_sub(*commits_b)),
                    int(rollbacks_a.saturating_sub(*rollbacks_b)),
                    rollbacks_a.saturating_sub(*rollbacks_b) as f64 / requests.max(1) as f64
                ),
            );
        }
        pg_cost_rows("", &cpu_a.since(cpu_b), wal_a.zip(*wal_b).map(|(a, b)| a.saturating_sub(b)), wall, requests, per);
    }
}

/// The rows of what PostgreSQL spent during a phase.
pub fn pg_cost_rows(indent: &str, cpu: &pg::PgCpu, wal: Option<u64>, wall: Duration, requests: u64, per: &str) {
    row(&format!("{indent}PostgreSQL CPU, this database"), report::cpu(Some(cpu.ours), wall));
    row(&format!("{indent}  instance processes"), report::cpu(Some(cpu.background), wall));
    row(&format!("{indent}  other databases (other users)"), report::cpu(Some(cpu.others), wall));
    if let Some(wal) = wal {
        row(
            &format!("{indent}WAL written (whole instance)"),
            format!("{} ({:.1} KB per {per})", mb(wal), wal as f64 / 1e3 / requests.max(1) as f64),
        );
    }
    row(
        &format!("{indent}PostgreSQL writes to storage"),
        format!("{} ({:.1} KB per {per})", mb(cpu.written), cpu.written as f64 / 1e3 / requests.max(1) as f64),
    );
}

/// Server CPU below which the server counts as idle: 10% of one core.
const IDLE_CPU_SHARE: f64 = 0.10;
/// Longest wait for the server to become idle before a phase starts anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(300);

/// The CPU used so far by the servers and, on PostgreSQL, by the database's backends and
/// autovacuum workers.
fn busy_cpu(nodes: &Nodes<'_>) -> Option<Duration> {
    let servers: Option<Duration> = nodes.pids.iter().map(|&pid| sys::cpu_time(pid)).sum();
    Some(servers? + nodes.pg.map_or(Duration::ZERO, |db| pg::instance_cpu(&db.name).ours))
}

/// Waits until the server's engine has caught up (its CPU, and on PostgreSQL the database's,
/// stays under [`IDLE_CPU_SHARE`] of a core for a second), so that each phase measures its own
/// load and not the compaction debt (or autovacuum) of the seeding or of the phase before it.
/// Returns how long that took.
async fn settle(nodes: &Nodes<'_>) -> Duration {
    let started = std::time::Instant::now();
    let window = Duration::from_secs(1);
    while started.elapsed() < SETTLE_LIMIT {
        let before = busy_cpu(nodes);
        tokio::time::sleep(window).await;
        match (before, busy_cpu(nodes)) {
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
    print_throughput(result, "", "errors (non-201)");
}

/// The requests/s, mix, latency and error rows of a run, each label after `indent`.
fn print_throughput(result: &LoadResult, indent: &str, errors: &str) {
    row(&format!("{indent}requests/s"), rate(result.rate()));
    row(
        &format!("{indent}  of which"),
        format!(
            "{} change/s, {} no-op/s",
            rate(result.changes as f64 / result.elapsed.as_secs_f64()),
            rate(result.noops as f64 / result.elapsed.as_secs_f64())
        ),
    );
    row(&format!("{indent}latency p50 / p99 / max"), report::latencies(result));
    row(&format!("{indent}{errors}"), report::errors(result));
}

/// Starts `nodes` servers on `database` (a directory, or a PostgreSQL database shared by all),
/// runs phases B, A and C, stops them. Returns what it measured and whether every node answered
/// every request and exited cleanly.
#[allow(clippy::too_many_arguments)]
pub async fn run_server(
    args: &Args,
    scratch: &Path,
    database: &str,
    pg: Option<&ScratchDatabase>,
    node_count: usize,
    seeded: &seed::Seeded,
    workload: &std::sync::Arc<Workload>,
) -> anyhow::Result<(ServerRun, bool)> {
    let (mut servers, nodes) = start_nodes(args, scratch, database, pg, node_count).await?;
    let mut run = ServerRun { nodes: node_count, ..ServerRun::default() };
    let phase_b = phase_b(args, &nodes, workload).await?;
    eprintln!("waiting for the server to become idle after phase B");
    row("idle again after", secs(settle(&nodes).await));
    let phase_a = phase_a(args, scratch, &nodes, workload, &mut run).await?;
    // Phase C: the issue asks for reads "while writes run at half their maximum rate"; phase A
    // just measured that maximum.
    if args.read_duration > 0 {
        run.phase_c = phase_c(args, &nodes, seeded, workload, phase_a.rate() / 2.0).await?;
    }
    let (memories, exit_ok) = stop_nodes(&mut servers, &nodes).await?;
    match pg {
        None => row("store on disk after the run", mb(sys::dir_size(Path::new(database)))),
        Some(db) => pg_size_rows(db, "after the run"),
    }
    drop(servers);

    let clean =
        exit_ok && phase_a.error_count() == 0 && phase_b.error_count() == 0 && run.phase_c.iter().all(ReadPhase::clean);
    run.peak_rss = memories.iter().map(|m| m.peak_rss).collect();
    run.exit_ok = exit_ok;
    run.phase_a = Some(phase_a);
    run.phase_b = Some(phase_b);
    Ok((run, clean))
}

/// Starts `node_count` server processes on `database`, waits until each listens and then until
/// they (and the store) are idle, printing how long each took.
async fn start_nodes<'a>(
    args: &Args,
    scratch: &Path,
    database: &str,
    pg: Option<&'a ScratchDatabase>,
    node_count: usize,
) -> anyhow::Result<(Vec<ChildProcess>, Nodes<'a>)> {
    let mut servers = Vec::with_capacity(node_count);
    let mut addrs = Vec::with_capacity(node_count);
    for node in 0..node_count {
        let addr = children::free_loopback_addr()?;
        let mut argv = vec![children::SERVE.to_string(), database.to_string(), addr.to_string()];
        argv.extend(args.serve_args.iter().cloned());
        let log = scratch.join(if node_count == 1 { "server.log".to_string() } else { format!("server-{node}.log") });
        eprintln!("starting server {} of {node_count} on {addr} (log: {})", node + 1, log.display());
        servers.push(ChildProcess::spawn_self("server", &argv, &log)?);
        addrs.push(addr);
    }
    let mut started = Vec::with_capacity(node_count);
    for (server, &addr) in servers.iter_mut().zip(&addrs) {
        started.push(tokio::task::block_in_place(|| server.wait_until_listening(addr, Duration::from_secs(600)))?);
    }
    let pids: Vec<u32> = servers.iter().map(ChildProcess::pid).collect();
    if node_count == 1 {
        section("Server");
        row("listening after", secs(started[0]));
        row("RSS when listening", mb(sys::memory(pids[0]).map(|m| m.rss).unwrap_or(0)));
    } else {
        section(&format!("Servers: {node_count} nodes on one database, each client connection to one of them in turn"));
        for (node, (took, &pid)) in started.iter().zip(&pids).enumerate() {
            row(
                &format!("node {} listening after", node + 1),
                format!("{} (RSS {})", secs(*took), mb(sys::memory(pid).map(|m| m.rss).unwrap_or(0))),
            );
        }
    }
    let nodes = Nodes { addrs, pids, pg };
    eprintln!("waiting for the server(s) and the store to become idle");
    let what = if pg.is_some() { "idle (server and database) after" } else { "idle (compaction caught up) after" };
    row(what, secs(settle(&nodes).await));
    Ok((servers, nodes))
}

/// Phase B, latency at a fixed rate (open loop). It runs first: a latency measured right after
/// phase A's overload would measure the compaction debt phase A left behind, not the latency
/// at this rate.
async fn phase_b(args: &Args, nodes: &Nodes<'_>, workload: &std::sync::Arc<Workload>) -> anyhow::Result<LoadResult> {
    let duration = Duration::from_secs(args.latency_duration);
    eprintln!("phase B: open loop, {} requests/s, {} s", args.rate, args.latency_duration);
    let before = Readings::take(&nodes.pids, nodes.pg);
    let phase_b =
        load::open_loop(&nodes.addrs, workload.clone(), f64::from(args.rate), duration, args.latency_connections)
            .await?;
    let after = Readings::take(&nodes.pids, nodes.pg);
    section(&format!(
        "Phase B: latency at a fixed rate (open loop, {} requests/s, {} s, pool of {} connections)",
        int(u64::from(args.rate)),
        args.latency_duration,
        args.latency_connections
    ));
    row("scheduled / answered 201", format!("{} / {}", int(phase_b.scheduled), int(phase_b.ok())));
    row("achieved rate", format!("{} requests/s", rate(phase_b.rate())));
    open_loop_rows("", &phase_b, args.latency_connections);
    // Over the phase's whole span: an overloaded server answers its backlog after the schedule ends.
    print_costs(&before, &after, phase_b.elapsed, phase_b.ok(), "request");
    Ok(phase_b)
}

/// Phase A, maximum throughput (closed loop), optionally under `perf record`; on the embedded
/// store it also counts the writer's commits, and records the batch size and the peak RSS so
/// far in `run`.
async fn phase_a(
    args: &Args,
    scratch: &Path,
    nodes: &Nodes<'_>,
    workload: &std::sync::Arc<Workload>,
    run: &mut ServerRun,
) -> anyhow::Result<LoadResult> {
    let (pid, pg) = (nodes.pids[0], nodes.pg);
    let duration = Duration::from_secs(args.duration);
    eprintln!("phase A: closed loop, {} connections, {} s", args.connections, args.duration);
    let profiler = match &args.perf_record {
        Some(path) => Some(perf::record(pid, path, duration)?),
        None => None,
    };
    // The writer thread whose fsyncs count batches exists only in the embedded store.
    let fsync_counter = match pg {
        None => tokio::task::block_in_place(|| {
            perf::FsyncCounter::start(pid, &scratch.join("fsyncs.csv"), duration + Duration::from_secs(10))
        }),
        Some(_) => None,
    };
    let before = Readings::take(&nodes.pids, pg);
    let phase_a = load::closed_loop(&nodes.addrs, workload.clone(), args.connections, duration).await?;
    let after = Readings::take(&nodes.pids, pg);
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
    match (fsyncs, pg) {
        (_, Some(_)) => {}
        (Some(fsyncs), None) => {
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
            run.server_batch = Some(batch);
        }
        (None, None) => row("writer commits (fsyncs)", "unknown (perf stat with syscall tracepoints unavailable)"),
    }
    let after_a: Vec<sys::Memory> = nodes.pids.iter().filter_map(|&pid| sys::memory(pid).ok()).collect();
    row("server RSS after phase A", rss_list(after_a.iter().map(|m| m.rss)));
    row("peak RSS so far (VmHWM)", rss_list(after_a.iter().map(|m| m.peak_rss)));
    run.peak_rss_phase_a = after_a.iter().map(|m| m.peak_rss).max();
    if let Some(path) = &args.perf_record {
        row("perf profile", format!("{} (perf report -i {} --no-children)", path.display(), path.display()));
    }
    Ok(phase_a)
}

/// Phase C, reads by external id then by email while writes run at `write_target` requests/s;
/// returns its sub-phases (none when phase A measured no throughput to take half of).
async fn phase_c(
    args: &Args,
    nodes: &Nodes<'_>,
    seeded: &seed::Seeded,
    workload: &std::sync::Arc<Workload>,
    write_target: f64,
) -> anyhow::Result<Vec<ReadPhase>> {
    if write_target < 1.0 {
        section("Phase C: reads under writes");
        row("skipped", "phase A measured no write throughput to take half of");
        return Ok(Vec::new());
    }
    let mut phases = Vec::new();
    for (i, by) in [ReadBy::ExternalId, ReadBy::Email].into_iter().enumerate() {
        if read_groups(seeded, by).is_empty() {
            section(&format!("Phase C{}: reads by {}", i + 1, by.param()));
            row("skipped", "no group of a channel these identifiers address");
            continue;
        }
        phases.push(run_reads(args, nodes, seeded, workload, write_target, by, i + 1).await?);
    }
    row(
        "server RSS after phase C",
        rss_list(nodes.pids.iter().map(|&pid| sys::memory(pid).map(|m| m.rss).unwrap_or(0))),
    );
    Ok(phases)
}

/// Stops the servers with SIGTERM and prints their memory and how each exited; returns each
/// node's memory just before and whether every node exited 0.
async fn stop_nodes(servers: &mut [ChildProcess], nodes: &Nodes<'_>) -> anyhow::Result<(Vec<sys::Memory>, bool)> {
    let mut memories = Vec::with_capacity(servers.len());
    for &pid in &nodes.pids {
        memories.push(sys::memory(pid).context("cannot read the server's memory")?);
    }
    eprintln!("stopping the server(s) (SIGTERM)");
    let stopped: Vec<_> = servers
        .iter_mut()
        .map(|server| tokio::task::block_in_place(|| server.terminate(Duration::from_secs(120))))
        .collect();
    section("Server shutdown");
    row("peak RSS (VmHWM)", rss_list(memories.iter().map(|m| m.peak_rss)));
    row("RSS before SIGTERM (VmRSS)", rss_list(memories.iter().map(|m| m.rss)));
    let mut exit_ok = true;
    for (node, (stopped, server)) in stopped.iter().zip(servers.iter()).enumerate() {
        let label = if servers.len() == 1 {
            "SIGTERM to exit".to_string()
        } else {
            format!("node {} SIGTERM to exit", node + 1)
        };
        let ok = match stopped {
            Ok((status, took)) => {
                row(&label, format!("{} ({status})", secs(*took)));
                status.success()
            }
            Err(err) => {
                row(&label, format!("FAILED: {err:#}"));
                false
            }
        };
        if !ok {
            line(&format!("  server output ends with:\n{}", server.log_tail()));
        }
        exit_ok &= ok;
    }
    Ok((memories, exit_ok))
}

/// One RSS per node: `131.8 MB`, or `120.1 MB / 118.7 MB`.
fn rss_list(values: impl Iterator<Item = u64>) -> String {
    values.map(mb).collect::<Vec<_>>().join(" / ")
}

/// The database's size and its main tables' rows and sizes.
pub fn pg_size_rows(db: &ScratchDatabase, when: &str) {
    match db.size() {
        Ok(size) => row(&format!("database size {when}"), mb(size)),
        Err(err) => row(&format!("database size {when}"), format!("unknown ({err:#})")),
    }
    if let Ok(tables) = db.table_rows() {
        let tables: Vec<String> = tables
            .iter()
            .map(|(name, rows, bytes)| format!("{name} {} rows {}", int((*rows).max(0) as u64), mb(*bytes as u64)))
            .collect();
        row("  tables (with indexes)", tables.join(", "));
    }
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
    nodes: &Nodes<'_>,
    seeded: &seed::Seeded,
    writes: &std::sync::Arc<Workload>,
    write_target: f64,
    by: ReadBy,
    number: usize,
) -> anyhow::Result<ReadPhase> {
    // Phase A (or the previous sub-phase) leaves compaction debt that would otherwise be paid
    // during this phase's reads.
    eprintln!("waiting for the server to become idle before phase C{number}");
    let idle = settle(nodes).await;
    let reads = ReadWorkload::new(&seeded.key, read_groups(seeded, by), args.profiles, USERS_PER_REQUEST, by);
    // Every node must answer right, so that none is measured answering errors.
    let mut sample = probe(nodes.addrs[0], &reads).await?;
    for &addr in &nodes.addrs[1..] {
        let more = probe(addr, &reads).await?;
        sample.problems.extend(more.problems);
        for (state, count) in more.states {
            *sample.states.entry(state).or_default() += count;
        }
    }

    let duration = Duration::from_secs(args.read_duration);
    eprintln!(
        "phase C{number}: status/get by {}, closed loop, {} connections, {} s; writes open loop at {} requests/s",
        by.param(),
        args.read_connections,
        args.read_duration,
        rate(write_target)
    );
    let before = Readings::take(&nodes.pids, nodes.pg);
    // Both loops start together and run for the same duration on this process's runtime.
    let (write_result, read_result) = tokio::join!(
        load::open_loop(&nodes.addrs, writes.clone(), write_target, duration, args.latency_connections),
        load::closed_loop(&nodes.addrs, reads, args.read_connections, duration),
    );
    let after = Readings::take(&nodes.pids, nodes.pg);
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
        &format!("answers of {} sample reads", PROBE_REQUESTS * nodes.addrs.len()),
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

/// Runs ceiling (a) and, on the embedded store, the ceiling (b) variants.
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
    let before = Readings::take(&[http.pid()], None);
    let result = load::closed_loop(&[addr], workload, args.connections, duration).await?;
    let after = Readings::take(&[http.pid()], None);
    let _ = tokio::task::block_in_place(|| http.terminate(Duration::from_secs(10)));
    drop(http);
    section(&format!(
        "Ceiling (a): axum 0.8 parsing the body into serde_json::Value, 201, no store (closed loop, {} connections, {} s)",
        args.connections, args.ceiling_duration
    ));
    print_closed_loop(&result);
    print_costs(&before, &after, duration, result.ok(), "request");
    summary.ceiling_http = Some(result);
    if args.store == crate::StoreKind::Postgres {
        return Ok(());
    }

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
    let server_batch = summary.runs.first().and_then(|run| run.server_batch);
    let server_b = server_batch.map_or(b, |mean| (mean.round() as usize).max(1));
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

/// Ceiling (c): the PostgreSQL store's own write path (`PostgresStore::set_status`: the same
/// statements in the same SERIALIZABLE transaction, with the same retries) called straight from
/// this process, without HTTP, JSON or validation; each run on a fresh copy of the seeded
/// database. Runs: the server's mix at the server's pool size for as long as phase A (what the
/// verdict compares with: both then go through the same growth of the `states` table from the
/// same fresh copy, which decides how often transactions fail to serialize), then, for
/// `--ceiling-duration` each, change requests only at that size and the mix at twice that size
/// (two nodes' pools).
pub async fn run_pg_ceilings(
    args: &Args,
    instance: &pg::Instance,
    template: &ScratchDatabase,
    seeded: &seed::Seeded,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let short = Duration::from_secs(args.ceiling_duration);
    let pool = args.pg_pool_size as usize;
    section(&format!(
        "Ceiling (c): PostgresStore::set_status straight from this process, no HTTP ({} s as phase A, then {} s each)",
        args.duration, args.ceiling_duration
    ));
    line(&format!(
        "  (a fresh copy of the seeded database per run; N tasks on a runtime of {} workers, as the server's, each \
         calling the store's own write path with a pool of N connections: the same SQL and transaction as one request)",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    ));
    let writers = args.pg_max_concurrent_writes as usize;
    let setups = [
        (pool, writers, true, Duration::from_secs(args.duration)),
        (pool, writers, false, short),
        (2 * pool, 2 * writers, true, short),
    ];
    for (i, (concurrency, writers, mixed, duration)) in setups.into_iter().enumerate() {
        let setup = pg::CeilingSetup { concurrency, writers, mixed, duration };
        let name = pg::scratch_name(&format!("ceiling{i}"));
        eprintln!("ceiling (c): copying the seeded database into {name}");
        let db = tokio::task::block_in_place(|| instance.create(&name, Some(&template.name)))?;
        eprintln!(
            "ceiling (c): {concurrency} concurrent requests, {writers} writing at once, {}, {} s",
            if mixed { "mixed" } else { "changes" },
            duration.as_secs()
        );
        let result = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| pg::run_ceiling(&db, seeded, args.profiles, USERS_PER_REQUEST, setup))
                    .join()
                    .map_err(|_| anyhow::anyhow!("the ceiling (c) thread panicked"))?
            })
        })?;
        drop(db);
        let mix = if mixed { "half change, half no-op replay (as the server's load)" } else { "all change requests" };
        line(&format!(
            "  {concurrency} concurrent requests (pool of {concurrency}), {writers} writing at once, {mix}, {} s",
            duration.as_secs()
        ));
        let load = &result.load;
        print_throughput(load, "  ", "errors");
        if let Some((low, high)) = load.window_rates(10) {
            row("  10 s windows, low / high", format!("{} / {} requests/s", rate(low), rate(high)));
        }
        if let Some((low, high)) = load.window_rates(1) {
            row("  1 s windows, low / high", format!("{} / {} requests/s", rate(low), rate(high)));
        }
        row("  this process's CPU", report::cpu(result.bench_cpu, duration));
        if let Some((commits, rollbacks)) = result.transactions {
            row(
                "  PostgreSQL transactions",
                format!(
                    "{} committed, {} rolled back (failed to serialize, run again) ≈ {:.2} per request",
                    int(commits),
                    int(rollbacks),
                    rollbacks as f64 / load.ok().max(1) as f64
                ),
            );
        }
        pg_cost_rows("  ", &result.pg_cpu, result.wal, duration, load.ok(), "request");
        summary.ceiling_pg.push(result);
    }
    Ok(())
}

/// The subject whose history the ledger phase reads.
const LEDGER_SUBJECT: &str = "ledger-subject";
/// Records the ledger phase gives that subject.
const LEDGER_RECORDS: usize = 1000;

/// The ledger phase (`--ledger`), on the benchmark's store after the other phases: one server
/// gives one subject 1,000 records (a request each, flipping its state in the first group),
/// then `GET /consent/history` of that subject runs back to back on one connection for
/// `--ledger-duration` seconds with `limit=100` (the first page) and again with `limit=1000`
/// (the whole history): service latency, no queueing. With the server stopped, `ledger
/// verify` and `ledger export` (JSON lines, thrown away) read the whole store, as the commands
/// do when no server holds it: records/s. Last, the cost of hashing: the time the writer's
/// sealing takes per record, measured alone, times the records phase A's requests carry at
/// its measured rate, as a share of the one writer's time.
pub async fn run_ledger(
    args: &Args,
    scratch: &Path,
    database: &str,
    pg: Option<&ScratchDatabase>,
    seeded: &seed::Seeded,
    phase_a_rate: Option<f64>,
) -> anyhow::Result<()> {
    let (mut servers, nodes) = start_nodes(args, scratch, database, pg, 1).await?;
    section("Ledger: one subject's history");
    let mut connection = crate::client::Connection::connect(nodes.addrs[0]).await?;
    let started = std::time::Instant::now();
    for i in 0..LEDGER_RECORDS {
        let state = if i % 2 == 0 { "subscribed" } else { "unsubscribed" };
        let body = format!(
            r#"{{"subscription_groups":[{{"subscription_group_id":"{}","subscription_state":"{state}","external_ids":["{LEDGER_SUBJECT}"]}}]}}"#,
            seeded.groups[0]
        );
        let request = format!(
            "POST /v2/subscription/status/set HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            seeded.key,
            body.len()
        );
        let response = connection.send(request.as_bytes()).await?;
        anyhow::ensure!(response.status == 201, "a write of the ledger phase answered {}", response.status);
    }
    row(&format!("{} records written in", int(LEDGER_RECORDS as u64)), secs(started.elapsed()));
    for limit in [100, 1000] {
        let request = format!(
            "GET /consent/history?external_id={LEDGER_SUBJECT}&limit={limit} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {}\r\n\r\n",
            seeded.key
        );
        let (response, body) = connection.send_for_body(request.as_bytes()).await?;
        anyhow::ensure!(response.status == 200, "GET /consent/history answered {}", response.status);
        let records = String::from_utf8_lossy(&body).matches("\"previous_hash\"").count();
        anyhow::ensure!(records == limit, "a page of {limit} held {records} records");
        let mut latencies = Vec::new();
        let until = std::time::Instant::now() + Duration::from_secs(args.ledger_duration);
        while std::time::Instant::now() < until || latencies.len() < 100 {
            let sent = std::time::Instant::now();
            let response = connection.send(request.as_bytes()).await?;
            latencies.push(sent.elapsed());
            anyhow::ensure!(response.status == 200, "GET /consent/history answered {}", response.status);
        }
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        row(
            &format!("limit={limit}: p50 / p99 / max"),
            format!(
                "{} / {} / {} ({} requests, {} records each)",
                ms(at(0.5)),
                ms(at(0.99)),
                ms(at(1.0)),
                int(latencies.len() as u64),
                int(limit as u64)
            ),
        );
    }
    drop(connection);
    stop_nodes(&mut servers, &nodes).await?;
    drop(servers);

    section("Ledger: verify and export (no server on the store)");
    let location = match pg {
        Some(db) => consentry::store::DatabaseLocation::Postgres(db.url.clone()),
        None => consentry::store::DatabaseLocation::Embedded(database.into()),
    };
    let started = std::time::Instant::now();
    let (verified, held) = consentry::bench_support::ledger_verify(&location).await.map_err(anyhow::Error::msg)?;
    let took = started.elapsed();
    anyhow::ensure!(held, "ledger verify found a broken chain");
    row(
        "ledger verify",
        format!(
            "{} records in {}: {} records/s",
            int(verified),
            secs(took),
            rate(verified as f64 / took.as_secs_f64())
        ),
    );
    let started = std::time::Instant::now();
    let exported = consentry::bench_support::ledger_export(&location, "default", &mut std::io::sink())
        .await
        .map_err(anyhow::Error::msg)?;
    let took = started.elapsed();
    row(
        "ledger export (jsonl)",
        format!(
            "{} records in {}: {} records/s",
            int(exported),
            secs(took),
            rate(exported as f64 / took.as_secs_f64())
        ),
    );

    section("Ledger: the cost of hashing");
    let seal = consentry::bench_support::seal_time(200_000);
    row(
        "sealing one record",
        format!("{:.2} µs (encoding, SHA-256, chain head; 200,000 records)", seal.as_secs_f64() * 1e6),
    );
    if let Some(requests) = phase_a_rate {
        // Every phase A request can change up to USERS_PER_REQUEST states: a record each.
        let share = requests * USERS_PER_REQUEST as f64 * seal.as_secs_f64();
        row(
            "share of the writer at phase A",
            format!(
                "{:.2}% ({} requests/s x {USERS_PER_REQUEST} records at most x {:.2} µs, of one writer's second)",
                share * 100.0,
                rate(requests),
                seal.as_secs_f64() * 1e6
            ),
        );
    }
    Ok(())
}
