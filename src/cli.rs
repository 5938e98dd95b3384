//! Command-line interface: `check`, `schema`, `kinds`, `serve`, `test`, `token`, `bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::SyncMode;
use crate::output::out;
use yishi_core::clock::SystemClock;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::{StoreError, StoreOptions};

use yishi_core::script::Sandbox;
use yishi_core::{FileSet, check};

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
    /// Serve the HTTP admin API on the embedded SQLite database, watching the workflows folder.
    Serve(crate::config::ServeArgs),
    /// List the stored versions of workflows and how many active cases each has.
    Versions {
        /// `unit/id` of one workflow (default: all).
        workflow: Option<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// What changed between two versions of a workflow: the definition in words, and every
    /// file (scripts, lists, calendars) as a text diff.
    Diff {
        /// `unit/id` of the workflow.
        workflow: String,
        /// The version numbers to compare (1, 2 ...).
        from: i64,
        to: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Print the files a stored version was built from.
    Source {
        /// `unit/id` of the workflow.
        workflow: String,
        /// The version number (1, 2 ...).
        version: i64,
        /// Print only this file (a path relative to the workflows folder).
        #[arg(long)]
        file: Option<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Measure (release builds): prints `name value unit` lines.
    Bench {
        #[arg(value_enum)]
        case: crate::bench::Case,
        /// How many instances (or evaluations, or saves).
        #[arg(long, default_value_t = 20_000)]
        n: usize,
        /// Concurrent clients (`concurrent`).
        #[arg(long, default_value_t = 256)]
        clients: usize,
        #[arg(long, default_value = "workflows")]
        workflows: PathBuf,
        /// Durability of commits (see `serve --sync`).
        #[arg(long, value_enum, default_value_t = SyncMode::Full)]
        sync: SyncMode,
    },
    /// Print the JSON Schema of workflow files (for editors).
    Schema,
    /// List the step kinds this build provides.
    Kinds,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        /// Who holds it; recorded as the actor of everything done with it.
        #[arg(long)]
        name: String,
        /// admin (everything), operator (start cases and act), viewer (read).
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// `*` for all units, or a unit path (the unit and every unit below it).
        #[arg(long, default_value = "*")]
        scope: String,
        /// Workflow roles the holder acts with, comma separated (e.g. `street_office`).
        #[arg(long, value_delimiter = ',')]
        acts_as: Vec<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        id: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
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
        Command::Serve(args) => runtime()
            .and_then(|rt| rt.block_on(crate::serve::serve(args)).map_err(|e| format!("yishi serve: {e}")))
            .map_or_else(
                |e| {
                    eprintln!("{e}");
                    ExitCode::from(2)
                },
                |()| ExitCode::SUCCESS,
            ),
        Command::Versions { workflow, db } => report(runtime().and_then(|rt| rt.block_on(versions_cmd(workflow, db)))),
        Command::Diff { workflow, from, to, db } => {
            report(runtime().and_then(|rt| rt.block_on(diff_cmd(workflow, from, to, db))))
        }
        Command::Source { workflow, version, file, db } => {
            report(runtime().and_then(|rt| rt.block_on(source_cmd(workflow, version, file, db))))
        }
        Command::Token(cmd) => match runtime().and_then(|rt| rt.block_on(token_cmd(cmd))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("yishi token: {e}");
                ExitCode::from(2)
            }
        },
        Command::Bench { case, n, clients, workflows, sync } => {
            // The bench runs on a worker thread, as a request's handler does in the server
            // (`block_on` parks the main thread between awaits, which costs tens of microseconds a wake).
            let bench = |rt: tokio::runtime::Runtime| {
                rt.block_on(async move {
                    tokio::spawn(crate::bench::run(case, n, clients, workflows, sync.durability()))
                        .await
                        .map_err(|e| e.to_string())?
                })
            };
            match runtime().and_then(bench) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("yishi bench: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Schema => {
            out!(
                "{}",
                serde_json::to_string_pretty(&yishi_core::schema::workflow_schema(&crate::registry()))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Kinds => {
            for k in crate::registry().iter() {
                out!("{:<12} {}", k.name(), k.summary());
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
            out!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        }
        Format::Human => {
            for d in &catalog.diagnostics {
                out!("{d}");
            }
            let errors = catalog.diagnostics.iter().filter(|d| d.is_error()).count();
            let warnings = catalog.diagnostics.len() - errors;
            out!(
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
    let rt = match runtime() {
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
        Format::Json => out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "scenarios": results, "check": catalog.diagnostics }))
                .unwrap_or_default()
        ),
        Format::Human => {
            for d in catalog.diagnostics.iter().filter(|d| d.is_error()) {
                out!("{d}");
            }
            for r in &results {
                out!("{} {} ({})", if r.passed { "ok  " } else { "FAIL" }, r.title, r.file);
                for f in &r.failures {
                    out!("     {f}");
                }
            }
            out!("{passed} passed, {failed} failed");
        }
    }
    if failed > 0 || catalog.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

/// An engine on an existing database (commands never create one: a wrong `--db` or working
/// folder would otherwise leave an empty database behind and report nothing).
async fn open_engine(db: &str) -> Result<Arc<Engine>, String> {
    let options = StoreOptions { create: false, ..StoreOptions::new(db) };
    let store = yishi_engine::store::open(&options).await.map_err(|e| match e {
        StoreError::NotFound(_) => format!(
            "no database at {} (run `yishi serve` first, pass --db, or set YISHI_DB)",
            std::path::absolute(db).map_or_else(|_| db.to_owned(), |p| p.display().to_string())
        ),
        e => format!("{db}: {e}"),
    })?;
    Ok(Engine::new(store, crate::registry(), Arc::new(SystemClock), Config::default()))
}

async fn token_cmd(cmd: TokenCommand) -> Result<(), String> {
    let db = match &cmd {
        TokenCommand::Create { db, .. } | TokenCommand::List { db } | TokenCommand::Revoke { db, .. } => db.clone(),
    };
    let engine = open_engine(&db).await?;
    match cmd {
        TokenCommand::Create { name, role, scope, acts_as, .. } => {
            let spec = TokenSpec { name: &name, role: &role, scope: &scope, acts_as: &acts_as };
            let (row, token) = engine.create_token(&spec).await.map_err(|e| e.to_string())?;
            eprintln!("token {} for `{name}` ({role}, scope {scope}); keep it secret, it is not shown again:", row.id);
            out!("{token}");
        }
        TokenCommand::List { .. } => {
            for t in engine.tokens().await.map_err(|e| e.to_string())? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                out!(
                    "{:>4}  {:<20} {:<8} {:<30} {:<8} acts as [{}]",
                    t.id,
                    t.name,
                    t.role,
                    t.scope,
                    state,
                    t.acts_as.join(", ")
                );
            }
        }
        TokenCommand::Revoke { id, .. } => {
            if !engine.revoke_token(id).await.map_err(|e| e.to_string())? {
                return Err(format!("no active token {id}"));
            }
            eprintln!("token {id} revoked");
        }
    }
    engine.close().await;
    Ok(())
}

fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("yishi: {e}");
            ExitCode::from(2)
        }
    }
}

async fn versions_cmd(workflow: Option<String>, db: String) -> Result<(), String> {
    let engine = open_engine(&db).await?;
    let rows = engine.versions(workflow.as_deref()).await.map_err(|e| e.to_string())?;
    if rows.is_empty() {
        return Err("no stored versions".into());
    }
    out!("{:<45} {:>7} {:>5} {:<12} {:<20} {:>6}", "workflow", "version", "id", "hash", "created", "active");
    for v in rows {
        let r = &v.row;
        let created = chrono::DateTime::from_timestamp_millis(r.created_at)
            .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        out!(
            "{:<45} {:>7} {:>5} {:<12} {:<20} {:>6}",
            r.workflow,
            r.seq,
            r.id,
            &r.hash[..12.min(r.hash.len())],
            created,
            v.active_instances
        );
    }
    Ok(())
}

async fn diff_cmd(workflow: String, from: i64, to: i64, db: String) -> Result<(), String> {
    let engine = open_engine(&db).await?;
    let d = engine.diff(&workflow, from, to).await.map_err(|e| e.to_string())?;
    if d.changes.is_empty() && d.files.is_empty() {
        out!("no differences");
    }
    for c in &d.changes {
        out!("{:<12} {}", c.area, c.text);
    }
    for f in &d.files {
        out!("");
        out!("{} ({})", f.path, f.status);
        out!("{}", f.diff.trim_end());
    }
    Ok(())
}

async fn source_cmd(workflow: String, version: i64, file: Option<String>, db: String) -> Result<(), String> {
    let engine = open_engine(&db).await?;
    let v = engine.version_source(&workflow, version).await.map_err(|e| e.to_string())?;
    match file {
        Some(f) => {
            let text = v.sources.get(&f).ok_or_else(|| {
                format!(
                    "version {version} of `{workflow}` has no file `{f}`; it has: {}",
                    v.sources.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })?;
            out!("{}", text.trim_end());
        }
        None => {
            for (path, text) in &v.sources {
                out!("==> {path} <==");
                out!("{}", text.trim_end());
                out!("");
            }
        }
    }
    Ok(())
}
