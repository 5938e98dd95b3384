//! The `yishi` command: check rules files, run scenarios, serve the admin API, manage tokens.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = yishi::cli::Cli::parse();
    yishi::cli::run(cli)
}
