//! `consentry migrate-store --from PATH --to postgres://…`: copies a whole embedded store into
//! PostgreSQL, resumably, and verifies the counts of every kind at the end. Progress goes to
//! stderr (a bar redrawn in place on a terminal, plain lines otherwise); the verification goes
//! to stdout.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::store::embedded::export::SourceTable;
use crate::store::postgres::copy::{Outcome, Progress, Target, DEFAULT_BATCH_SIZE};
use crate::store::{report, EmbeddedOptions, EmbeddedStore, StoreError};

/// The most source entries one batch may hold.
const MAX_BATCH_SIZE: usize = 100_000;

/// `consentry migrate-store` flags.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The embedded store's data directory. No server may be running on it.
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,
    /// The PostgreSQL database to copy into (postgres://USER@HOST:PORT/DATABASE): empty, or
    /// holding an interrupted copy of the same store, which is then resumed.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Source entries (profiles with their states, orphaned states, change records) written per
    /// transaction, from 1 to 100,000.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_SIZE, value_parser = parse_batch_size)]
    pub batch_size: usize,
}

fn parse_batch_size(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_BATCH_SIZE).contains(&n) => Ok(n),
        _ => Err(format!("{raw:?} is not a whole number from 1 to {MAX_BATCH_SIZE}")),
    }
}

/// Runs the copy, on one runtime for the whole command; an error when anything is refused,
/// fails, or does not verify.
pub fn run(args: MigrateStoreArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let url = args.to.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--to {:?}: not a PostgreSQL URL; give postgres://USER@HOST:PORT/DATABASE", args.to);
    }
    let target = match url.parse::<tokio_postgres::Config>() {
        Ok(config) => crate::store::postgres::describe(&config),
        Err(e) => bail!("--to: invalid PostgreSQL URL: {e}"),
    };
    let from = args.from.display().to_string();
    let source = EmbeddedStore::open_existing(&args.from, &EmbeddedOptions::default()).map_err(|e| match e {
        StoreError::Locked(_) => anyhow!(
            "--from {from}: the store is in use by a running Consentry server; stop the server first (the copy \
             needs the store to itself, so that nothing changes while it is read)"
        ),
        other => anyhow!("--from {from}: {}", report(&other)),
    })?;
    let database = runtime.block_on(Target::prepare(url)).map_err(|e| anyhow!("--to: {}", report(&e)))?;

    let mut reading = Bar::new("reading");
    let mut surveyed = None;
    let survey = source.survey(&mut |table, done, total| {
        if surveyed != Some(table) {
            if let Some(previous) = surveyed {
                reading.finish(previous);
            }
            surveyed = Some(table);
            reading.begin(table, 0, total);
        }
        // The engine's estimate of a table's size gives way to the real count at its end.
        if let Some(meter) = reading.meter(table) {
            meter.total = total;
        }
        reading.advance(table, done);
    })?;
    if let Some(last) = surveyed {
        reading.finish(last);
    }

    let report = runtime.block_on(database.copy(&source, &survey, args.batch_size, Box::new(Bar::new("copying"))))?;
    let verb = match report.outcome {
        Outcome::Copied { resumed: false } => "copied",
        Outcome::Copied { resumed: true } => "resumed and finished the copy of",
        Outcome::AlreadyComplete => "already complete: the copy of",
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{verb} {from} into postgres://{target}; verifying the counts:")?;
    writeln!(out, "{:<16} {:>14} {:>14}", "", "embedded", "postgresql")?;
    for count in &report.counts {
        let mark = if count.source == count.target { "" } else { "  MISMATCH" };
        writeln!(out, "{:<16} {:>14} {:>14}{mark}", count.what, count.source, count.target)?;
    }
    let mismatches = report.mismatches();
    if !mismatches.is_empty() {
        let detail: Vec<String> = mismatches
            .iter()
            .map(|c| format!("{}: {} in the embedded store, {} in PostgreSQL", c.what, c.source, c.target))
            .collect();
        bail!("the copy does not verify: {}", detail.join("; "));
    }
    writeln!(out, "verified: every count matches")?;
    Ok(())
}

/// Progress on stderr. On a terminal, one line redrawn in place at most ten times a second
/// with every table under way; elsewhere (logs, pipes) a line per table under way every second.
/// Either way each table ends with a line of its own.
struct Bar {
    verb: &'static str,
    terminal: bool,
    meters: Vec<Meter>,
    drawn: Instant,
}

/// One table's progress.
struct Meter {
    table: SourceTable,
    /// Done when it began: rows/s counts this run's rows only.
    first: u64,
    done: u64,
    total: u64,
    started: Instant,
}

impl Meter {
    fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            (self.done - self.first) as f64 / secs
        } else {
            0.0
        }
    }

    /// `VERB TABLE DONE / TOTAL PERCENT RATE`, numbers in full.
    fn line(&self, verb: &str) -> String {
        format!(
            "{verb} {:<8} {:>13} / {:<13} {:>5.1}%  {:>9} rows/s",
            self.table.name(),
            super::thousands(self.done),
            super::thousands(self.total),
            self.percent(),
            super::thousands(self.rate() as u64)
        )
    }

    /// The same, short, for a line that shows several tables.
    fn short(&self) -> String {
        format!(
            "{} {}/{} {:.1}% {}/s",
            self.table.name(),
            short(self.done),
            short(self.total),
            self.percent(),
            short(self.rate() as u64)
        )
    }
}

impl Bar {
    fn new(verb: &'static str) -> Self {
        Bar { verb, terminal: std::io::stderr().is_terminal(), meters: Vec::new(), drawn: Instant::now() }
    }

    fn meter(&mut self, table: SourceTable) -> Option<&mut Meter> {
        self.meters.iter_mut().find(|m| m.table == table)
    }

    fn draw(&mut self) {
        self.drawn = Instant::now();
        let text = if self.terminal {
            let parts: Vec<String> = self.meters.iter().map(Meter::short).collect();
            format!("\r{} {}\x1b[K", self.verb, parts.join(" · "))
        } else {
            self.meters.iter().map(|m| m.line(self.verb) + "\n").collect()
        };
        write_err(&text);
    }
}

/// Writes to stderr. Progress is best effort: a closed stderr must not stop the copy.
fn write_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

impl Progress for Bar {
    fn begin(&mut self, table: SourceTable, done: u64, total: u64) {
        self.meters.push(Meter { table, first: done, done, total, started: Instant::now() });
        // In a log, a table's first line comes a second in, or with its end.
        if self.terminal {
            self.draw();
        }
    }

    fn advance(&mut self, table: SourceTable, done: u64) {
        if let Some(meter) = self.meter(table) {
            meter.done = done;
            meter.total = meter.total.max(done);
        }
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(1) };
        if self.drawn.elapsed() >= every {
            self.draw();
        }
    }

    fn finish(&mut self, table: SourceTable) {
        let Some(at) = self.meters.iter().position(|m| m.table == table) else { return };
        let mut meter = self.meters.remove(at);
        meter.total = meter.total.max(meter.done);
        let clear = if self.terminal { "\r\x1b[K" } else { "" };
        write_err(&format!("{clear}{}\n", meter.line(self.verb)));
        if self.terminal && !self.meters.is_empty() {
            self.draw();
        }
    }
}

/// `1234567` as `1.2M`.
fn short(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}
