//! `consentry ledger verify` (and the dispatch to `ledger export`): walks every chain of the ledger and exits non-zero naming the
//! first record whose hash or link does not hold.
//!
//! On PostgreSQL it reads the database directly, in one snapshot, while servers keep writing.
//! On the embedded store it opens the store when no server holds it, and otherwise asks the
//! server that does, over its admin socket (the server walks its own store).

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use crate::admin::{self, socket, AdminRequest};
use crate::catalog::Catalog;
use crate::domain::time::Clock;
use crate::store::Policy;
use crate::store::{DatabaseLocation, Store, StoreError, StoreOptions};

/// `consentry ledger …`
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Walk every chain of change records and check each record's hash and link; exits
    /// non-zero naming the first record that does not hold.
    Verify {
        /// Only this workspace (by name).
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Stream change records to stdout (JSON lines or CSV), oldest first.
    Export(super::ledger_export::ExportArgs),
}

/// Runs a `ledger` command; an error when a chain does not hold.
pub fn run(database: &DatabaseLocation, command: LedgerCommand) -> anyhow::Result<()> {
    let workspace = match command {
        LedgerCommand::Verify { workspace } => workspace,
        LedgerCommand::Export(args) => return super::ledger_export::run(database, args),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let output = match runtime.block_on(Store::open(database, &StoreOptions::default(), &Policy::default())) {
        Ok(store) => {
            let result = runtime.block_on(verify(&store, workspace.as_deref()));
            runtime.block_on(store.close());
            result?
        }
        Err(StoreError::Locked(dir)) => {
            eprintln!("the store is in use by a server; it walks the chains");
            let request = AdminRequest::LedgerVerify { workspace };
            let mut meter = Meter::new();
            let answer = socket::call_with_progress(&dir, &request, |done| meter.show(done));
            meter.end();
            answer.map_err(anyhow::Error::msg)?.map_err(anyhow::Error::msg)?
        }
        Err(other) => return Err(other.into()),
    };
    eprint!("{}", output.stderr);
    print!("{}", output.stdout);
    if output.failed {
        anyhow::bail!("the ledger does not verify");
    }
    Ok(())
}

async fn verify(store: &Store, workspace: Option<&str>) -> anyhow::Result<admin::AdminOutput> {
    let catalog = Catalog::load(store.clone(), Clock::system()).await?;
    let ws = admin::workspace_filter(&catalog, workspace)?;
    let progress = Arc::new(AtomicU64::new(0));
    let shown = Arc::clone(&progress);
    let meter = Arc::new(std::sync::Mutex::new(Meter::new()));
    let ticking = Arc::clone(&meter);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            ticking.lock().expect("meter lock").show(shown.load(Ordering::Relaxed));
        }
    });
    let check = store.verify_ledger(ws, progress).await;
    ticker.abort();
    let _ = ticker.await;
    meter.lock().expect("meter lock").end();
    let check = check?;
    Ok(admin::ledger_report(&check))
}

/// A progress line on stderr, rewritten in place, only when stderr is a terminal (a script
/// reading stderr gets the final report alone).
struct Meter {
    terminal: bool,
    started: std::time::Instant,
    shown: bool,
}

impl Meter {
    fn new() -> Self {
        use std::io::IsTerminal as _;
        Meter { terminal: std::io::stderr().is_terminal(), started: std::time::Instant::now(), shown: false }
    }

    fn show(&mut self, done: u64) {
        if !self.terminal {
            return;
        }
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r{} records checked ({} records/s)   ",
            crate::cli::thousands(done),
            crate::cli::thousands(rate as u64)
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    /// Ends the progress line, if one was drawn, so that the report starts on its own line.
    fn end(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
