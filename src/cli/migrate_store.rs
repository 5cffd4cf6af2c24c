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
use crate::store::{EmbeddedStore, StoreError, StoreOptions};

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

/// Runs the copy; an error when anything is refused, fails, or does not verify.
pub fn run(args: MigrateStoreArgs) -> anyhow::Result<()> {
    let url = args.to.trim();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("--to {:?}: not a PostgreSQL URL; give postgres://USER@HOST:PORT/DATABASE", args.to);
    }
    let target = match url.parse::<tokio_postgres::Config>() {
        Ok(config) => crate::store::postgres::describe(&config),
        Err(e) => bail!("--to: invalid PostgreSQL URL: {e}"),
    };
    let from = args.from.display().to_string();
    let source = EmbeddedStore::open_existing(&args.from, &StoreOptions::default()).map_err(|e| match e {
        StoreError::Locked(_) => anyhow!(
            "--from {from}: the store is in use by a running Consentry server; stop the server first (the copy \
             needs the store to itself, so that nothing changes while it is read)"
        ),
        other => anyhow!("--from {from}: {other}"),
    })?;
    let database = Target::prepare(url).map_err(|e| anyhow!("--to: {e}"))?;

    let mut bar = Bar::new();
    let mut surveyed = None;
    let survey = source.survey(&mut |table, done, total| {
        if surveyed != Some(table) {
            if surveyed.is_some() {
                bar.finish();
            }
            surveyed = Some(table);
            bar.start(format!("reading {}", table.name()), 0, total);
        }
        bar.update(done, total);
    })?;
    bar.finish();

    let report = database.copy(&source, &survey, args.batch_size, Box::new(Bar::new()))?;
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

/// A progress bar on stderr: redrawn in place at most ten times a second on a terminal, a
/// plain line a second otherwise (logs, pipes).
struct Bar {
    terminal: bool,
    label: String,
    /// Done when the current table began: rows/s counts this run's rows only.
    first: u64,
    done: u64,
    total: u64,
    started: Instant,
    drawn: Option<Instant>,
}

impl Bar {
    fn new() -> Self {
        Bar {
            terminal: std::io::stderr().is_terminal(),
            label: String::new(),
            first: 0,
            done: 0,
            total: 0,
            started: Instant::now(),
            drawn: None,
        }
    }

    fn start(&mut self, label: String, done: u64, total: u64) {
        *self = Bar { label, first: done, done, total, started: Instant::now(), drawn: None, ..*self };
        // In a log, the table's first line comes a second in, or with its end.
        if self.terminal {
            self.draw(false);
        } else {
            self.drawn = Some(Instant::now());
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        (self.done, self.total) = (done, total.max(done));
        let every = if self.terminal { Duration::from_millis(100) } else { Duration::from_secs(1) };
        if self.drawn.is_none_or(|at| at.elapsed() >= every) {
            self.draw(false);
        }
    }

    fn finish(&mut self) {
        self.total = self.total.max(self.done);
        self.draw(true);
    }

    fn draw(&mut self, last: bool) {
        self.drawn = Some(Instant::now());
        let percent = if self.total == 0 { 100.0 } else { self.done as f64 * 100.0 / self.total as f64 };
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { (self.done - self.first) as f64 / secs } else { 0.0 };
        let line = format!(
            "{:<18} {:>12} / {:<12} {:>5.1}%  {:>9.0} rows/s",
            self.label,
            grouped(self.done),
            grouped(self.total),
            percent,
            rate
        );
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the copy.
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

impl Progress for Bar {
    fn begin(&mut self, table: SourceTable, done: u64, total: u64) {
        self.start(format!("copying {}", table.name()), done, total);
    }

    fn advance(&mut self, done: u64) {
        self.update(done, self.total);
    }

    fn finish(&mut self) {
        Bar::finish(self);
    }
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
