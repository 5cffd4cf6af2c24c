//! `consentry ledger export`: stream a workspace's change records (or one subject's) to stdout
//! as JSON lines or CSV, a page at a time, so that memory stays constant however long the
//! ledger. Reads the store directly (PostgreSQL, or an embedded store no server holds), or asks
//! the server that holds the embedded store, page by page, over its admin socket.

use std::io::{IsTerminal, Write};

use anyhow::Context as _;

use crate::admin::export::{self, ExportFormat, ExportPage, ExportRequest};
use crate::admin::{socket, AdminRequest};
use crate::catalog::Catalog;
use crate::domain::history::{parse_rfc3339, CSV_HEADER};
use crate::domain::time::Clock;
use crate::store::Policy;
use crate::store::{DatabaseLocation, Store, StoreError, StoreOptions};

/// `ledger export` flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The workspace, by name.
    #[arg(long)]
    pub workspace: String,
    /// Only this subject's records (as `GET /consent/history` names them).
    #[arg(long, conflicts_with_all = ["email", "phone"])]
    pub external_id: Option<String>,
    /// Only this email's records (its carriers' and its orphaned ones).
    #[arg(long, conflicts_with = "phone")]
    pub email: Option<String>,
    /// Only this phone's records.
    #[arg(long)]
    pub phone: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[arg(long, value_parser = time_arg)]
    pub since: Option<i64>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_parser = time_arg)]
    pub until: Option<i64>,
    /// `jsonl` or `csv`.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
}

fn time_arg(raw: &str) -> Result<i64, String> {
    parse_rfc3339(raw).map(|t| t.0).map_err(|why| format!("{raw:?} is not an RFC 3339 time ({why})"))
}

/// Runs `ledger export`.
pub fn run(database: &DatabaseLocation, args: ExportArgs) -> anyhow::Result<()> {
    let mut request = ExportRequest {
        workspace: args.workspace,
        external_id: args.external_id,
        email: args.email,
        phone: args.phone,
        since: args.since,
        until: args.until,
        after: None,
        format: args.format,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if request.format == ExportFormat::Csv {
        write!(out, "{CSV_HEADER}\r\n")?;
    }
    let mut progress = Progress::new();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    match runtime.block_on(Store::open(database, &StoreOptions::default(), &Policy::default())) {
        Ok(store) => {
            let result = runtime.block_on(async {
                let catalog = Catalog::load(store.clone(), Clock::system()).await?;
                loop {
                    let page = export::page(&store, &catalog, &request).await.map_err(anyhow::Error::msg)?;
                    if !write_page(&mut out, &mut progress, &mut request, page)? {
                        return Ok::<_, anyhow::Error>(());
                    }
                }
            });
            runtime.block_on(store.close());
            result?;
        }
        Err(StoreError::Locked(dir)) => loop {
            let reply = socket::call(&dir, &AdminRequest::LedgerExportPage(request.clone()))
                .map_err(anyhow::Error::msg)?
                .map_err(anyhow::Error::msg)?;
            let page: ExportPage = serde_json::from_str(&reply.stdout).context("an unreadable page from the server")?;
            if !write_page(&mut out, &mut progress, &mut request, page)? {
                break;
            }
        },
        Err(other) => return Err(other.into()),
    }
    out.flush()?;
    progress.finish();
    Ok(())
}

/// Writes a page; returns whether another follows.
fn write_page(
    out: &mut impl Write,
    progress: &mut Progress,
    request: &mut ExportRequest,
    page: ExportPage,
) -> anyhow::Result<bool> {
    out.write_all(page.text.as_bytes())?;
    progress.advance(page.records);
    request.after = page.next;
    Ok(request.after.is_some())
}

/// A count of records written, redrawn on stderr when it is a terminal (the total is not known
/// without a second pass over the ledger).
struct Progress {
    terminal: bool,
    written: u64,
}

impl Progress {
    fn new() -> Self {
        Progress { terminal: std::io::stderr().is_terminal(), written: 0 }
    }

    fn advance(&mut self, records: usize) {
        self.written += records as u64;
        if self.terminal {
            eprint!("\rexported {} records", super::thousands(self.written));
        }
    }

    fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
        eprintln!("exported {} records", super::thousands(self.written));
    }
}
