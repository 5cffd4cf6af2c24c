//! The `consentry` binary: parses the command line and runs a subcommand.

use clap::Parser;

/// See [`consentry::allocator`].
#[global_allocator]
static GLOBAL: consentry::allocator::Allocator = consentry::allocator::Allocator;

fn main() {
    let cli = consentry::cli::Cli::parse();
    std::process::exit(consentry::cli::run(cli));
}
