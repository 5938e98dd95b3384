//! Command-line interface: `check`, `schema`, `kinds`, `serve`, `test`, `token`, `bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use yishi_engine::script::Sandbox;
use yishi_engine::{FileSet, check};

#[derive(Parser, Debug)]
#[command(name = "yishi", version, about = "Yishi (议事): run community-governance procedures written as text")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a workflows folder and report every problem (exit 0 clean, 1 problems, 2 could not run).
    Check {
        /// The workflows folder.
        #[arg(default_value = "workflows")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Run the scenarios of a workflows folder (`<unit>/scenarios/*.toml`).
    Test {
        #[arg(default_value = "workflows")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the JSON Schema of workflow files (for editors).
    Schema,
    /// List the step kinds this build provides.
    Kinds,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { dir, format } => check_cmd(&dir, format),
        Command::Test { dir, format } => test_cmd(&dir, format),
        Command::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&yishi_engine::schema::workflow_schema(&crate::registry()))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Kinds => {
            for k in crate::registry().iter() {
                println!("{:<12} {}", k.name(), k.summary());
            }
            ExitCode::SUCCESS
        }
    }
}

fn check_cmd(dir: &Path, format: Format) -> ExitCode {
    let files = match FileSet::load_dir(dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("yishi check: cannot read {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let catalog = check(&files, &crate::registry(), &Arc::new(Sandbox::default()));
    match format {
        Format::Json => {
            let out = serde_json::json!({
                "workflows": catalog.definitions.values().map(|d| d.summary()).collect::<Vec<_>>(),
                "failed": catalog.failed.keys().collect::<Vec<_>>(),
                "diagnostics": catalog.diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Human => {
            for d in &catalog.diagnostics {
                println!("{d}");
            }
            let errors = catalog.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = catalog.diagnostics.len() - errors;
            println!(
                "{} workflow(s) ok, {} with errors; {errors} error(s), {warnings} warning(s)",
                catalog.definitions.len(),
                catalog.failed.len()
            );
        }
    }
    if catalog.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn test_cmd(dir: &Path, format: Format) -> ExitCode {
    let files = match FileSet::load_dir(dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("yishi test: cannot read {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    let registry = crate::registry();
    let catalog = check(&files, &registry, &Arc::new(Sandbox::default()));
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("yishi test: {e}");
            return ExitCode::from(2);
        }
    };
    let results = rt.block_on(yishi_engine::scenario::run_all(&catalog, &files, &registry));
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "scenarios": results, "check": catalog.diagnostics }))
                .unwrap_or_default()
        ),
        Format::Human => {
            for d in catalog.diagnostics.iter().filter(|d| d.is_error()) {
                println!("{d}");
            }
            for r in &results {
                println!("{} {} ({})", if r.passed { "ok  " } else { "FAIL" }, r.title, r.file);
                for f in &r.failures {
                    println!("     {f}");
                }
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    if failed > 0 || catalog.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
