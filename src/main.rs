//! The `consentry` binary: parses the command line and runs a subcommand.

use clap::Parser;

fn main() {
    let cli = consentry::cli::Cli::parse();
    std::process::exit(consentry::cli::run(cli));
}
