//! The command line: `serve` and the admin commands. Each subcommand lives in its own file;
//! this one holds the shared flags and the dispatch.

pub mod admin;
pub mod backup;
pub mod ledger;
pub mod ledger_export;
pub mod migrate;
pub mod migrate_store;
pub mod serve;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_DATABASE;
use crate::store::DatabaseLocation;

/// Consentry: a self-hosted subscription and consent service that speaks Braze's REST API.
#[derive(Debug, Parser)]
#[command(name = "consentry", version, about)]
pub struct Cli {
    /// Where the data lives: a directory (the embedded store) or a postgres:// URL.
    #[arg(long, global = true, help_heading = "Global options", env = "CONSENTRY_DATABASE_URL", default_value = DEFAULT_DATABASE)]
    pub database: String,

    /// Most active subscription groups a workspace may have.
    #[arg(long, global = true, help_heading = "Global options", env = "CONSENTRY_MAX_GROUPS_PER_WORKSPACE",
          default_value_t = crate::domain::tenant::DEFAULT_MAX_GROUPS_PER_WORKSPACE)]
    pub max_groups_per_workspace: usize,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP server.
    Serve(serve::ServeArgs),
    /// Create and list workspaces, and set their rate limits.
    #[command(subcommand)]
    Workspaces(admin::WorkspacesCommand),
    /// Create, list and revoke REST API keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Create, list, update and archive subscription groups.
    #[command(subcommand)]
    Groups(admin::GroupsCommand),
    /// Sign unsubscribe and preference links.
    #[command(subcommand)]
    Links(admin::LinksCommand),
    /// Webhook destinations of the change stream: create, list, delete, rotate-secret, replay.
    #[command(subcommand)]
    Webhooks(crate::stream::admin::WebhooksCommand),
    /// The tamper-evident ledger of change records: `verify` checks every chain, `export`
    /// streams records as JSON lines or CSV.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Apply the PostgreSQL store's pending migrations and exit (the server also applies
    /// them at start-up); the embedded store needs none.
    Migrate,
    /// Write a consistent copy of the embedded store into a new directory, while a server
    /// serves it (through its admin socket) or not.
    Backup(backup::BackupArgs),
    /// Copy a backup into a new data directory and verify its ledger.
    Restore(backup::RestoreArgs),
    /// Copy a whole embedded store (stopped) into an empty PostgreSQL database, resuming an
    /// interrupted copy, and verify the counts of every kind at the end.
    MigrateStore(migrate_store::MigrateStoreArgs),
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let database = match DatabaseLocation::parse(&cli.database) {
        Ok(location) => location,
        Err(message) => {
            eprintln!("error: --database: {message}");
            return 2;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(database, cli.max_groups_per_workspace, args),
        Command::Workspaces(command) => admin::run(&database, cli.max_groups_per_workspace, command.into()),
        Command::Keys(command) => admin::run(&database, cli.max_groups_per_workspace, command.into()),
        Command::Groups(command) => admin::run(&database, cli.max_groups_per_workspace, command.into()),
        Command::Links(command) => admin::run(&database, cli.max_groups_per_workspace, command.into()),
        Command::Webhooks(command) => admin::run(&database, cli.max_groups_per_workspace, command.into()),
        Command::Ledger(command) => ledger::run(&database, command),
        Command::Migrate => migrate::run(&database),
        Command::Backup(args) => backup::run_backup(&database, args),
        Command::Restore(args) => backup::run_restore(args),
        Command::MigrateStore(args) => migrate_store::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.is::<crate::server::StorageFault>() {
                crate::server::STORAGE_FAULT_EXIT_CODE
            } else {
                1
            }
        }
    }
}

/// `1234567` as `1,234,567`: counts that people read (progress, reports).
pub fn thousands(n: u64) -> String {
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
