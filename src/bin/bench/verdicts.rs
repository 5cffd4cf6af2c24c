//! The end of the report: the server's throughput against each ceiling, a verdict per target of
//! issue 2, and the read figures of phase C (which have no target: only a failed request fails
//! them).

use std::time::Duration;

use crate::load::LoadResult;
use crate::report::{self, int, line, mb, ms, percent, rate, section};
use crate::storage::{self, StorageResult};
use crate::USERS_PER_REQUEST;
use crate::{Args, Summary};

/// Prints the ratios and a verdict per target of the issue.
pub fn print_verdicts(args: &Args, summary: &Summary) {
    let server_rate = summary.phase_a.as_ref().map_or(0.0, LoadResult::rate);
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
    if let Some(a) = &summary.phase_a {
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
    if let Some(b) = &summary.phase_b {
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
    if let Some(peak) = summary.peak_rss {
        // The peak covers phase C's reads too; through phase A is the figure of the runs
        // recorded before phase C existed.
        let phase_c = match summary.peak_rss_phase_a {
            Some(a) if !summary.phase_c.is_empty() => format!(" (through phase A, before the reads: {})", mb(a)),
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
    report::verdict(Some(summary.exit_ok), "server exits 0 on SIGTERM", if summary.exit_ok { "yes" } else { "no" });

    if summary.phase_c.is_empty() {
        return;
    }
    section("Reads under writes (status/get; no target: FAIL only on a failed read or write)");
    for phase in &summary.phase_c {
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
