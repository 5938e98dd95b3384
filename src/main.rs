//! The `yishi` command: check rules files, run scenarios, serve the admin API, manage tokens.

use std::process::ExitCode;

/// mimalloc: the engine allocates many small, short-lived values (events, JSON, SQL
/// arguments) on several threads; glibc's allocator was about a third of a busy profile.
/// With the crate's `override` feature (Cargo.toml) it is also `malloc` for the C code linked
/// in, SQLite above all: on SQLite's writer thread, glibc's arena locks and the freeing of
/// blocks other threads made were a fifth of its time under `bench concurrent`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let lang = yishi::cli::language(&args);
    let cli = yishi::cli::parse(args, lang);
    yishi::cli::run(cli, lang)
}
