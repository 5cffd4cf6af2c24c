//! The end of the report: the server's throughput against each ceiling, a verdict per target of
//! issue 2 (embedded store) or issue 4 (PostgreSQL), and the read figures of phase C (which
//! have no target: only a failed request fails them).

use std::time::Duration;

use crate::load::LoadResult;
use crate::phases::ServerRun;
use crate::report::{self, int, line, mb, ms, percent, rate, section};
use crate::storage::{self, StorageResult};
use crate::USERS_PER_REQUEST;
use crate::{Args, Summary};

/// Prints the ratios and a verdict per target of the issue.
pub fn print_verdicts(args: &Args, summary: &Summary) {
    let empty = ServerRun::default();
    let run = summary.runs.first().unwrap_or(&empty);
    let server_rate = run.phase_a.as_ref().map_or(0.0, LoadResult::rate);
    let http = summary.ceiling_http.as_ref().map(LoadResult::rate);
    let b = args.ceiling_batch.max(1);
    let storage_b = summary
        .ceiling_storage
        .iter()
        .find(|r| r.setup.batch == b && !r.setup.mixed && r.setup.options == storage::Options::Store)
        .map(StorageResult::rate);

    section("Ratios (server phase A requests/s ÷ ceiling requests/s)");
    let ratio = |ceiling: Option<f64>| {
        ceiling.map_or_else(|| "n/a (ceilings skipped)".to_string(), |c| percent(server_rate, c))
    };
    line(&format!("  server ÷ ceiling (a) {:<36} {}", "HTTP and JSON, no store", ratio(http)));
    for result in &summary.ceiling_storage {
        line(&format!("  server ÷ ceiling (b) {:<36} {}", result.label(), ratio(Some(result.rate()))));
    }

    section("Targets (issue 2)");
    if let Some(a) = &run.phase_a {
        let window = a.window_rates(10).map_or(String::new(), |(low, _)| format!(", lowest 10 s window {}", rate(low)));
        let short =
            if args.duration < 60 { format!(" [run was {} s, not 60 s]", args.duration) } else { String::new() };
        report::verdict(
            Some(a.rate() >= 2000.0 && a.error_count() == 0),
            "at least 2,000 requests/s sustained for 60 s",
            &format!(
                "{} requests/s over {} s{window}, {} errors{short}",
                rate(a.rate()),
                args.duration,
                int(a.error_count())
            ),
        );
    }
    if let Some(b) = &run.phase_b {
        let on_rate = b.rate() >= 0.99 * f64::from(args.rate);
        let note = if args.rate != 1000 { format!(" [rate was {}, not 1,000]", args.rate) } else { String::new() };
        report::verdict(
            Some(b.quantile(0.99) < Duration::from_millis(50) && on_rate && b.error_count() == 0),
            "p99 under 50 ms at 1,000 requests/s",
            &format!("p99 {} at {} requests/s achieved{note}", ms(b.quantile(0.99)), rate(b.rate())),
        );
    }
    report::verdict(
        storage_b.map(|c| server_rate >= 0.5 * c),
        &format!("at least 50% of ceiling (b) (B={b})"),
        &storage_b.map_or_else(
            || "ceilings skipped".to_string(),
            |c| format!("{} of {} requests/s = {}", rate(server_rate), rate(c), percent(server_rate, c)),
        ),
    );
    if let Some(peak) = run.peak_rss() {
        // The peak covers phase C's reads too; through phase A is the figure of the runs
        // recorded before phase C existed.
        let phase_c = match run.peak_rss_phase_a {
            Some(a) if !run.phase_c.is_empty() => format!(" (through phase A, before the reads: {})", mb(a)),
            _ => String::new(),
        };
        let note = if args.profiles != 1_000_000 {
            format!(" [with {} profiles, not 1,000,000]", int(args.profiles))
        } else {
            String::new()
        };
        report::verdict(
            Some(peak < 200_000_000),
            "server RSS under 200 MB with 1,000,000 profiles",
            &format!("peak {}{phase_c}{note}", mb(peak)),
        );
    }
    report::verdict(Some(run.exit_ok), "server exits 0 on SIGTERM", if run.exit_ok { "yes" } else { "no" });
    print_reads(run, "");
}

/// The verdicts of phase C's reads of one run, each target prefixed with `label`.
fn print_reads(run: &ServerRun, label: &str) {
    if run.phase_c.is_empty() {
        return;
    }
    section(&format!("Reads under writes{label} (status/get; no target: FAIL only on a failed read or write)"));
    for phase in &run.phase_c {
        let (reads, writes) = (&phase.reads, &phase.writes);
        let short = if writes.rate() < 0.99 * phase.write_target {
            format!(" [writes reached only {} of their target]", percent(writes.rate(), phase.write_target))
        } else {
            String::new()
        };
        let probe = if phase.probe_problems.is_empty() {
            String::new()
        } else {
            format!(", {} wrong sample answers", phase.probe_problems.len())
        };
        report::verdict(
            Some(phase.clean()),
            &format!("{USERS_PER_REQUEST} {}s per read, writes at half phase A's rate", phase.by.param()),
            &format!(
                "{} reads/s ({} identifiers/s), p99 {}, {} read errors; writes {} of {} requests/s, p99 {}, {} \
                 write errors{probe}{short}",
                rate(reads.rate()),
                rate(reads.rate() * USERS_PER_REQUEST as f64),
                ms(reads.quantile(0.99)),
                int(reads.error_count()),
                rate(writes.rate()),
                rate(phase.write_target),
                ms(writes.quantile(0.99)),
                int(writes.error_count()),
            ),
        );
    }
}

/// Prints, for PostgreSQL, each run's figures against ceiling (c) and the verdicts of issue 4:
/// one node at least 60% of ceiling (c), two nodes at least as fast as one.
pub fn print_pg_verdicts(args: &Args, summary: &Summary) {
    let pool = args.pg_pool_size as usize;
    // The verdict's ceiling: the server's mix at the server's pool size.
    let ceiling =
        summary.ceiling_pg.iter().find(|c| c.setup.mixed && c.setup.concurrency == pool).map(|c| c.load.rate());
    let http = summary.ceiling_http.as_ref().map(LoadResult::rate);
    let rate_of = |nodes: usize| {
        summary.runs.iter().find(|r| r.nodes == nodes).and_then(|r| r.phase_a.as_ref()).map(LoadResult::rate)
    };

    section("Ratios (server phase A requests/s ÷ ceiling requests/s)");
    for run in &summary.runs {
        let server = run.phase_a.as_ref().map_or(0.0, LoadResult::rate);
        let label = format!("{} node{}", run.nodes, if run.nodes == 1 { "" } else { "s" });
        let ratio = |c: Option<f64>| c.map_or_else(|| "n/a (ceilings skipped)".to_string(), |c| percent(server, c));
        line(&format!("  {label:<8} ÷ ceiling (a) {:<44} {}", "HTTP and JSON, no store", ratio(http)));
        for c in &summary.ceiling_pg {
            let what = format!(
                "(c) {} requests, {} writers, {}",
                c.setup.concurrency,
                c.setup.writers,
                if c.setup.mixed { "the server's mix" } else { "changes only" }
            );
            line(&format!("  {label:<8} ÷ ceiling {what:<48} {}", ratio(Some(c.load.rate()))));
        }
    }

    section("Targets (issue 4)");
    let one = rate_of(1);
    let short =
        if args.duration < 60 { format!(" [phase A ran {} s, not 60 s]", args.duration) } else { String::new() };
    let profiles = if args.profiles != 1_000_000 {
        format!(" [with {} profiles, not 1,000,000]", int(args.profiles))
    } else {
        String::new()
    };
    match one {
        Some(one) => report::verdict(
            ceiling.map(|c| one >= 0.6 * c),
            &format!(
                "one node on PostgreSQL at least 60% of ceiling (c) ({pool} transactions, the server's mix, as long as phase A)"
            ),
            &ceiling.map_or_else(
                || "ceiling (c) skipped".to_string(),
                |c| format!("{} of {} requests/s = {}{short}{profiles}", rate(one), rate(c), percent(one, c)),
            ),
        ),
        None => {
            report::verdict(None, "one node on PostgreSQL at least 60% of ceiling (c)", "no one-node run (--nodes)")
        }
    }
    match (one, rate_of(2)) {
        (Some(one), Some(two)) => report::verdict(
            Some(two >= one),
            "two nodes at least as fast as one",
            &format!("{} vs {} requests/s = {}{short}", rate(two), rate(one), percent(two, one)),
        ),
        _ => report::verdict(None, "two nodes at least as fast as one", "needs --nodes 1,2"),
    }
    for run in &summary.runs {
        let label = format!("{} node{}", run.nodes, if run.nodes == 1 { "" } else { "s" });
        let errors: u64 = run.phase_a.iter().chain(&run.phase_b).map(LoadResult::error_count).sum();
        report::verdict(
            Some(errors == 0),
            &format!("{label}: no failed write in phases A and B"),
            &format!("{} errors", int(errors)),
        );
        report::verdict(
            Some(run.exit_ok),
            &format!("{label}: every node exits 0 on SIGTERM"),
            if run.exit_ok { "yes" } else { "no" },
        );
    }

    section("Figures without a target on PostgreSQL (the embedded store's targets, for comparison)");
    for run in &summary.runs {
        let label = format!("{} node{}", run.nodes, if run.nodes == 1 { "" } else { "s" });
        if let Some(b) = &run.phase_b {
            line(&format!(
                "  {label}: p99 {} at {} requests/s achieved of {} scheduled per second (embedded target: < 50 ms at 1,000)",
                ms(b.quantile(0.99)),
                rate(b.rate()),
                int(u64::from(args.rate))
            ));
        }
        let peaks: Vec<String> = run.peak_rss.iter().map(|&p| mb(p)).collect();
        line(&format!("  {label}: peak RSS per node {} (embedded target: < 200 MB)", peaks.join(" / ")));
    }
    for run in &summary.runs {
        let label = format!(" ({} node{})", run.nodes, if run.nodes == 1 { "" } else { "s" });
        print_reads(run, &label);
    }
}
