//! The process's log: text for people or JSON for collectors, colours only on a terminal, and
//! no personal data at any level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Directives added to every filter, whatever `RUST_LOG` says: tokio-postgres logs the
/// parameters of every statement at debug level (emails, phones, external ids), and hyper
/// would log request heads (API keys) at trace level.
const NEVER_LOUDER: [&str; 2] = ["tokio_postgres=info", "hyper=debug"];

/// Installs the process's logger (once; later calls do nothing), filtered by `RUST_LOG`
/// (default `info`).
pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn"));
    for directive in NEVER_LOUDER {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}
