//! `consentry backup --to DIR` and `consentry restore --from DIR --data-dir D`: backups of the
//! embedded store (see `crate::store::embedded::backup`).
//!
//! `backup` opens the store itself when no server holds it; when one does, it asks that server
//! over its admin socket, and the server copies a snapshot of its own store while it keeps
//! serving. `restore` copies a finished backup into an empty data directory, then opens it and
//! walks every chain of the ledger, so that a restore that does not verify says so.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Args;

use crate::admin::{self, socket, AdminRequest};
use crate::store::embedded::backup;
use crate::store::{DatabaseLocation, Policy, Store, StoreError, StoreOptions};

/// Flags of `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new or empty directory.
    #[arg(long)]
    pub to: PathBuf,
}

/// Flags of `restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory `consentry backup` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The data directory to restore into: a new or empty directory.
    #[arg(long)]
    pub data_dir: PathBuf,
}

/// Runs `backup`.
pub fn run_backup(database: &DatabaseLocation, args: BackupArgs) -> anyhow::Result<()> {
    if let DatabaseLocation::Postgres(_) = database {
        anyhow::bail!("{}", crate::store::POSTGRES_BACKUP);
    }
    // Absolute, because a running server resolves it from its own working directory.
    let to = std::path::absolute(&args.to)?;
    // Checked here too, so that a refusal does not depend on which process makes the copy.
    backup::refuse_non_empty(&to, "the backup directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let output = match runtime.block_on(Store::open(database, &StoreOptions::default(), &Policy::default())) {
        Ok(store) => {
            let copied = runtime.block_on(store.backup(&to, Arc::new(AtomicU64::new(0))));
            runtime.block_on(store.close());
            admin::backup_report(&to, &copied?)
        }
        Err(StoreError::Locked(dir)) => {
            eprintln!("the store is in use by a server; it writes the backup");
            let request = AdminRequest::Backup { to: to.clone() };
            socket::call_with_progress(&dir, &request, |_| {})
                .map_err(anyhow::Error::msg)?
                .map_err(anyhow::Error::msg)?
        }
        Err(other) => return Err(other.into()),
    };
    eprint!("{}", output.stderr);
    print!("{}", output.stdout);
    Ok(())
}

/// Runs `restore`: copies, then opens the copy and verifies its ledger.
pub fn run_restore(args: RestoreArgs) -> anyhow::Result<()> {
    let manifest = backup::restore(&args.from, &args.data_dir)?;
    eprintln!(
        "restored the backup taken {} ({} entries) into {}",
        manifest.taken_at,
        crate::cli::thousands(manifest.entries()),
        args.data_dir.display()
    );
    let database = DatabaseLocation::Embedded(args.data_dir.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let store = runtime.block_on(Store::open(&database, &StoreOptions::default(), &Policy::default()))?;
    let check = runtime.block_on(store.verify_ledger(None, Arc::new(AtomicU64::new(0))));
    runtime.block_on(store.close());
    let output = admin::ledger_report(&check?);
    eprint!("{}", output.stderr);
    print!("{}", output.stdout);
    if output.failed {
        anyhow::bail!("the restored ledger does not verify");
    }
    Ok(())
}
