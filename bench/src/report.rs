//! The plain-text report: number formatting, the sections as each phase completes, and the
//! ratios and target verdicts at the end. Everything here goes to stdout; progress goes to
//! stderr elsewhere.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::load::LoadResult;
use crate::storage::StorageResult;

/// Prints a section title.
pub fn section(title: &str) {
    line(&format!("\n{title}\n{}", "-".repeat(title.chars().count())));
}

/// Prints one `label  value` row.
pub fn row(label: &str, value: impl std::fmt::Display) {
    line(&format!("  {label:<30} {value}"));
}

/// Prints a line and flushes, so the report survives a later failure.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// An integer with thousands separators: `1,234,567`.
pub fn int(n: u64) -> String {
    consentry::cli::thousands(n)
}

/// A rate rounded to a whole number, with separators.
pub fn rate(r: f64) -> String {
    int(r.round().max(0.0) as u64)
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Seconds with one decimal.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Bytes as decimal megabytes (10^6), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// A ratio as a percentage.
pub fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "n/a".into()
    }
}

/// Latency p50 / p99 / max of a load run.
pub fn latencies(result: &LoadResult) -> String {
    format!("{} / {} / {}", ms(result.quantile(0.5)), ms(result.quantile(0.99)), ms(result.max()))
}

/// The failures of a run, `0` or `12 (HTTP 500: 10, io: …: 2)`.
pub fn errors(result: &LoadResult) -> String {
    if result.errors.is_empty() {
        return "0".into();
    }
    let kinds: Vec<String> = result.errors.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
    format!("{} ({})", int(result.error_count()), kinds.join(", "))
}

/// CPU time over a wall-clock span, as `12.3 s (61% of one core)`.
pub fn cpu(used: Option<Duration>, wall: Duration) -> String {
    match used {
        Some(used) => {
            format!("{} ({:.0}% of one core)", secs(used), 100.0 * used.as_secs_f64() / wall.as_secs_f64().max(1e-9))
        }
        None => "unknown".into(),
    }
}

/// The CPU time each thread name gained between two readings, largest first.
pub fn thread_cpu(
    before: &BTreeMap<String, Duration>,
    after: &BTreeMap<String, Duration>,
    wall: Duration,
) -> Vec<String> {
    let mut gained: Vec<(&String, Duration)> = after
        .iter()
        .map(|(name, &t)| (name, t.saturating_sub(before.get(name).copied().unwrap_or_default())))
        .filter(|(_, t)| *t >= Duration::from_millis(50))
        .collect();
    gained.sort_by_key(|g| std::cmp::Reverse(g.1));
    gained
        .into_iter()
        .map(|(name, t)| {
            format!(
                "{name:<18} {:>7} ({:.0}% of one core)",
                secs(t),
                100.0 * t.as_secs_f64() / wall.as_secs_f64().max(1e-9)
            )
        })
        .collect()
}

/// The rows of one storage ceiling result.
pub fn storage_rows(result: &StorageResult) {
    let setup = &result.setup;
    let mix = if setup.mixed { "half change, half no-op replay (as the server's load)" } else { "all change requests" };
    let options = match setup.options {
        crate::storage::Options::Store => "the store's memtable sizes",
        crate::storage::Options::EngineDefaults => "fjall's default keyspace options (as perf/ceilings.md)",
    };
    line(&format!("  B = {} requests per commit, {mix}, {options}", setup.batch));
    row("  prefill", format!("{} profiles in {}", int(setup.profiles), secs(result.prefill_time)));
    row("  requests/s", rate(result.rate()));
    if setup.mixed {
        row("  of which change requests", percent(result.change_requests as f64, result.requests as f64));
    }
    row("  state writes/s", rate(result.write_rate()));
    row("  batch time p50 / p99", format!("{} / {}", ms(result.batch_p50), ms(result.batch_p99)));
    if let Some(bytes) = result.bytes_written {
        row(
            "  written to storage",
            format!("{:.1} KB per request", bytes as f64 / 1e3 / result.requests.max(1) as f64),
        );
    }
    row("  database on disk after", mb(result.disk));
    if result.replay_mismatches > 0 {
        row("  replay mismatches", int(result.replay_mismatches));
    }
}

/// One target's verdict line.
pub fn verdict(pass: Option<bool>, target: &str, detail: &str) {
    let mark = match pass {
        Some(true) => "PASS",
        Some(false) => "FAIL",
        None => "n/a ",
    };
    line(&format!("  {mark}  {target}: {detail}"));
}
