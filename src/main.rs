//! The `consentry` binary: parses the command line and runs a subcommand.

use std::process::ExitCode;

use clap::Parser;

/// See [`consentry::allocator`].
#[global_allocator]
static GLOBAL: consentry::allocator::Allocator = consentry::allocator::Allocator;

fn main() -> ExitCode {
    let cli = consentry::cli::Cli::parse();
    // Returned rather than passed to `process::exit`, so that everything `run` left behind is
    // dropped (buffers flushed, files closed) before the process ends.
    let code = consentry::cli::run(cli);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
