//! The `yishi` command: check rules files, run scenarios, serve the admin API, manage tokens.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: the engine allocates many small, short-lived values (events, JSON, SQL
/// arguments) on several threads; glibc's allocator was about a third of a busy profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = yishi::cli::Cli::parse();
    yishi::cli::run(cli)
}
