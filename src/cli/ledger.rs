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
            eprintln!("the store is in use by a server; it walks the chains (no progress is shown)");
            let request = AdminRequest::LedgerVerify { workspace };
            socket::call(&dir, &request).map_err(anyhow::Error::msg)?.map_err(anyhow::Error::msg)?
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
    // A progress line on stderr, rewritten in place, only when stderr is a terminal and the
    // walk takes long enough to need one.
    let ticker = tokio::spawn(async move {
        use std::io::IsTerminal as _;
        if !std::io::stderr().is_terminal() {
            return;
        }
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done = shown.load(Ordering::Relaxed);
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            eprint!(
                "\r{} records checked ({} records/s)   ",
                crate::cli::thousands(done),
                crate::cli::thousands(rate as u64)
            );
            let _ = std::io::stderr().flush();
        }
    });
    let check = store.verify_ledger(ws, progress).await;
    ticker.abort();
    let check = check?;
    Ok(admin::ledger_report(&check))
}
