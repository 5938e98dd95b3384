//! The `yishi` command line: argument parsing (with help in the reader's language), and the
//! commands. Each command speaks through the message catalog: `--lang`, then `YISHI_LANG`,
//! then `LC_ALL`, `LC_MESSAGES` and `LANG` choose the language (Chinese when none says).

mod admin;
mod db;
mod import;
pub mod report;
mod retention;
mod rules;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;

use crate::config::SyncMode;

#[derive(Parser, Debug)]
#[command(name = "yishi", version, about = "Yishi (议事): run community-governance procedures written as text")]
pub struct Cli {
    /// The language of messages: zh-CN or en.
    #[arg(long, global = true, env = "YISHI_LANG")]
    pub lang: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a workflows folder and report every problem (exit 0 clean, 1 problems, 2 could not run).
    Check {
        /// The workflows folder.
        #[arg(env = "YISHI_WORKFLOWS", default_value = "workflows")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Check as of this day (YYYY-MM-DD; default today): deadlines in working days that
        /// run past the years a calendar covers are warned about.
        #[arg(long)]
        today: Option<chrono::NaiveDate>,
        /// The time zone of "today" (as `serve --tz`).
        #[arg(long, env = "YISHI_TZ", default_value = "Asia/Shanghai")]
        tz: String,
    },
    /// Run the scenarios of a workflows folder (`<unit>/scenarios/*.toml`).
    Test {
        #[arg(env = "YISHI_WORKFLOWS", default_value = "workflows")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Serve the HTTP admin API, watching the workflows folder.
    Serve(crate::config::ServeArgs),
    /// List the stored versions of workflows and how many active cases each has.
    Versions {
        /// `unit/id` of one workflow (default: all).
        workflow: Option<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// What changed between two versions of a workflow: the definition in words, and every file as a text diff.
    Diff {
        /// `unit/id` of the workflow.
        workflow: String,
        /// The version number to compare from (1, 2 ...).
        from: i64,
        /// The version number to compare to.
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
    /// Copy a database while it serves, check the copy and say what it holds.
    Backup {
        /// The copy to write (a new file).
        #[arg(long)]
        to: PathBuf,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Write closed cases with their whole history to a file (JSON lines) and, with --purge,
    /// remove them from the database in small batches; their monthly figures are kept.
    Archive {
        /// Cases closed before this day (YYYY-MM-DD, midnight in --tz).
        #[arg(long)]
        closed_before: String,
        /// The archive to write (a new file of JSON lines).
        #[arg(long, required_unless_present = "dry_run")]
        to: Option<PathBuf>,
        /// Remove the archived cases from the database once they are written.
        #[arg(long)]
        purge: bool,
        /// Only count what would be archived.
        #[arg(long, conflicts_with_all = ["to", "purge"])]
        dry_run: bool,
        /// Keep residents' personal data (the keys a workflow marks `personal`) instead of masking it.
        #[arg(long)]
        with_personal_data: bool,
        /// Cases per batch (one short transaction each when purging).
        #[arg(long, default_value_t = 200)]
        batch: u32,
        #[arg(long, env = "YISHI_TZ", default_value = "Asia/Shanghai")]
        tz: String,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Bring existing cases (JSON lines or CSV) into a workflow at a chosen step; a dry run
    /// checks every record first.
    Import {
        /// `unit/id` of the workflow.
        #[arg(long)]
        workflow: String,
        /// The file: JSON lines (one object of case data a line) or CSV (a header row of data
        /// keys), by its extension.
        #[arg(long)]
        from: PathBuf,
        /// The step the cases start at (default: the workflow's first step).
        #[arg(long)]
        step: Option<String>,
        /// Check every record and report, importing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who the imported cases are recorded as started by.
        #[arg(long, default_value = "import")]
        actor: String,
        /// The workflows folder.
        #[arg(long, env = "YISHI_WORKFLOWS", default_value = "workflows")]
        workflows: PathBuf,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// The sittings (例会) of the units, latest first: date, place, expected attendees, status.
    Sittings {
        /// This unit and the units below it (default: every unit).
        #[arg(long)]
        unit: Option<String>,
        /// Only sittings with this status: scheduled, open, held, inquorate, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// One sitting with its agenda: each topic's status, decision and tally, the quorum check
    /// and the minutes.
    Sitting {
        /// The sitting.
        id: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Open cases of the same unit that may report the same matter as case ID, most alike
    /// first (a suggestion; nothing is merged).
    Similar {
        /// The case.
        id: i64,
        /// At most this many.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
        limit: u16,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// The three rates (response, resolution, satisfaction), overdue cases and average
    /// satisfaction per unit and month.
    Stats {
        /// This unit and the units below it (default: every unit).
        #[arg(long)]
        unit: Option<String>,
        /// First month, YYYY-MM (default: --to).
        #[arg(long)]
        from: Option<String>,
        /// Last month, YYYY-MM (default: this month).
        #[arg(long)]
        to: Option<String>,
        /// Print CSV (UTF-8 with a byte-order mark, for Excel) instead of a table.
        #[arg(long)]
        csv: bool,
        #[arg(long, env = "YISHI_TZ", default_value = "Asia/Shanghai")]
        tz: String,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Put a backup in place of a database no server is using.
    Restore {
        /// The backup to restore.
        #[arg(long)]
        from: PathBuf,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Deliveries given up on (dead letters): list, retry, discard.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Whole databases: copy one into another.
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Staff accounts of the console: create (with a first password to change at sign-in), list,
    /// disable, enable, reset a password.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Working-day calendars.
    #[command(subcommand)]
    Calendar(CalendarCommand),
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
        /// The workflows folder with `bench/`.
        #[arg(long, env = "YISHI_WORKFLOWS", default_value = "workflows")]
        workflows: PathBuf,
        /// Durability of commits (see `serve --sync`).
        #[arg(long, value_enum, default_value_t = SyncMode::Full)]
        sync: SyncMode,
        /// An empty database of the benchmark's own (a SQLite file or `postgres://...`); by
        /// default a new SQLite file in a temporary folder.
        #[arg(long)]
        db: Option<String>,
    },
    /// Print the JSON Schema of workflow files (for editors).
    Schema,
    /// Print the OpenAPI document of the HTTP API (for generating clients).
    Openapi,
    /// List the step kinds this build provides.
    Kinds,
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Copy every case, history, deadline, delivery, version and token into an empty database,
    /// then check the copy (row counts and a checksum of the histories).
    Copy {
        /// The database to copy: a SQLite file or `postgres://user@host/db` (stop the servers
        /// using it first).
        #[arg(long)]
        from: String,
        /// The empty database to copy into: a new SQLite file or `postgres://user@host/db`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// List deliveries given up on, with their last errors.
    Dead {
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Put one dead letter, or all, back in line (a running server delivers it).
    Retry {
        /// The dead letter's id (see `yishi outbox dead`).
        #[arg(required_unless_present = "all")]
        id: Option<i64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Drop one dead letter, or all.
    Discard {
        /// The dead letter's id (see `yishi outbox dead`).
        #[arg(required_unless_present = "all")]
        id: Option<i64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum CalendarCommand {
    /// Show a month with its holidays and make-up working days marked.
    Show {
        /// The month, e.g. `2026-10`.
        month: String,
        /// The calendar file, relative to the workflows folder.
        #[arg(long, default_value = "calendars/china.toml")]
        file: String,
        #[arg(long, env = "YISHI_WORKFLOWS", default_value = "workflows")]
        workflows: PathBuf,
    },
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
        /// The token's id (see `yishi token list`).
        id: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account; prints a first password, which its holder changes at the first sign-in.
    Create {
        /// The sign-in name (one word).
        #[arg(long)]
        name: String,
        /// admin (everything), operator (start cases and act), viewer (read).
        #[arg(long, value_parser = ["admin", "operator", "viewer"])]
        role: String,
        /// `*` for all units, or a unit path (the unit and every unit below it).
        #[arg(long, default_value = "*")]
        scope: String,
        /// Workflow roles the holder acts with, comma separated (e.g. `staff`).
        #[arg(long, value_delimiter = ',')]
        acts_as: Vec<String>,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// List accounts (never their passwords).
    List {
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Disable an account; its sessions end at once.
    Disable {
        /// The account's id (see `yishi account list`).
        id: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The account's id.
        id: i64,
        #[arg(long, env = "YISHI_DB", default_value = "yishi.db")]
        db: String,
    },
    /// Set a new first password (printed; the holder must change it); the sessions end.
    Reset {
        /// The account's id.
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

/// A command that could not do its job: what to tell the person, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: Message,
    pub status: u8,
}

impl Failure {
    /// Could not run (exit 2).
    pub fn new(message: Message) -> Self {
        Failure { message, status: 2 }
    }
}

impl From<yishi_engine::service::EngineError> for Failure {
    fn from(e: yishi_engine::service::EngineError) -> Self {
        if let yishi_engine::service::EngineError::Unavailable(detail)
        | yishi_engine::service::EngineError::Internal(detail) = &e
        {
            return Failure::new(msg!("cli-engine-failure", detail = detail));
        }
        Failure::new(e.message())
    }
}

pub type CmdResult = Result<ExitCode, Failure>;

/// The language the command line speaks: `--lang`, `YISHI_LANG`, the locale, else Chinese.
pub fn language(args: &[OsString]) -> Lang {
    let mut it = args.iter().filter_map(|a| a.to_str());
    let mut flag = None;
    while let Some(a) = it.next() {
        if a == "--lang" {
            flag = it.next().map(str::to_owned);
        } else if let Some(v) = a.strip_prefix("--lang=") {
            flag = Some(v.to_owned());
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    flag.or_else(|| env("YISHI_LANG"))
        .or_else(|| env("LC_ALL"))
        .or_else(|| env("LC_MESSAGES"))
        .or_else(|| env("LANG"))
        .and_then(|v| Lang::parse(&v))
        .unwrap_or_default()
}

/// The help of every command and argument, from the catalog (`cli-about-<command>`,
/// `cli-arg-<command>-<arg>`); English doc comments stay where the catalog has no entry.
pub fn localized(lang: Lang) -> clap::Command {
    fn text(key: &str, lang: Lang) -> String {
        Message { key: key.to_owned().into(), args: Default::default() }.render(lang)
    }
    fn walk(mut cmd: clap::Command, path: &str, lang: Lang) -> clap::Command {
        let key = if path.is_empty() { "cli-about".to_owned() } else { format!("cli-about-{path}") };
        if yishi_core::i18n::has_key(&key) {
            cmd = cmd.about(text(&key, lang));
        }
        let ids: Vec<String> = cmd.get_arguments().map(|a| a.get_id().to_string()).collect();
        for id in ids {
            let key = if path.is_empty() { format!("cli-arg-{id}") } else { format!("cli-arg-{path}-{id}") }
                .replace('_', "-");
            let key =
                if yishi_core::i18n::has_key(&key) { key } else { format!("cli-arg-common-{id}").replace('_', "-") };
            if yishi_core::i18n::has_key(&key) {
                let help = text(&key, lang);
                cmd = cmd.mut_arg(id.as_str(), |a| a.help(help));
            }
        }
        let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
        for name in &subs {
            let sub_path = if path.is_empty() { name.clone() } else { format!("{path}-{name}") };
            cmd = cmd.mut_subcommand(name.as_str(), |s| walk(s, &sub_path, lang));
        }
        // clap's own words (headings, the help and version flags) in the reader's language.
        cmd = cmd.disable_help_flag(true).disable_help_subcommand(true).arg(
            clap::Arg::new("help")
                .short('h')
                .long("help")
                .action(clap::ArgAction::Help)
                .help(text("cli-help-help", lang)),
        );
        if path.is_empty() {
            cmd = cmd.disable_version_flag(true).arg(
                clap::Arg::new("version")
                    .short('V')
                    .long("version")
                    .action(clap::ArgAction::Version)
                    .help(text("cli-help-version", lang)),
            );
        }
        let has_positionals = cmd.get_positionals().next().is_some();
        let usage = text("cli-help-usage", lang);
        let gap = if usage.ends_with(':') { " " } else { "" }; // none after a full-width colon
        let mut template = format!("{{about-with-newline}}\n{usage}{gap}{{usage}}\n");
        if !subs.is_empty() {
            template.push_str(&format!("\n{}\n{{subcommands}}\n", text("cli-help-commands", lang)));
        }
        if has_positionals {
            template.push_str(&format!("\n{}\n{{positionals}}\n", text("cli-help-arguments", lang)));
        }
        template.push_str(&format!("\n{}\n{{options}}\n", text("cli-help-options", lang)));
        cmd.help_template(template)
    }
    walk(Cli::command(), "", lang)
}

/// Parses the command line (help and errors in `lang`).
pub fn parse(args: Vec<OsString>, lang: Lang) -> Cli {
    let matches = localized(lang).get_matches_from(args);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `serve` fills from its configuration file only what no flag or variable gave.
    if let Command::Serve(a) = &mut cli.command
        && let Some(m) = matches.subcommand_matches("serve")
    {
        use clap::parser::ValueSource;
        a.explicit = m
            .ids()
            .filter(|id| {
                matches!(m.value_source(id.as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            })
            .map(|id| id.as_str().to_owned())
            .collect();
    }
    cli
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(msg!("cli-engine-failure", detail = e.to_string())))
}

/// Runs an async command on a runtime.
fn block<F: std::future::Future<Output = CmdResult>>(f: F) -> CmdResult {
    runtime()?.block_on(f)
}

pub fn run(cli: Cli, lang: Lang) -> ExitCode {
    let result = match cli.command {
        Command::Check { dir, format, today, tz } => rules::check(&dir, format, lang, today, &tz),
        Command::Test { dir, format } => rules::test(&dir, format, lang),
        Command::Serve(args) => {
            block(
                async move { crate::serve::serve(args, lang).await.map(|()| ExitCode::SUCCESS).map_err(Failure::new) },
            )
        }
        Command::Versions { workflow, db } => block(admin::versions(workflow, db, lang)),
        Command::Diff { workflow, from, to, db } => block(admin::diff(workflow, from, to, db, lang)),
        Command::Source { workflow, version, file, db } => block(admin::source(workflow, version, file, db)),
        Command::Token(cmd) => block(admin::token(cmd, lang)),
        Command::Account(cmd) => block(admin::account(cmd, lang)),
        Command::Backup { to, db } => block(admin::backup(to, db, lang)),
        Command::Outbox(cmd) => block(admin::outbox(cmd, lang)),
        Command::Db(DbCommand::Copy { from, to }) => block(db::copy(from, to, lang)),
        Command::Sittings { unit, status, db } => block(admin::sittings(unit, status, db, lang)),
        Command::Sitting { id, db } => block(admin::sitting(id, db, lang)),
        Command::Similar { id, limit, db } => block(admin::similar(id, usize::from(limit), db, lang)),
        Command::Restore { from, db } => block(admin::restore(from, db, lang)),
        Command::Stats { unit, from, to, csv, tz, db } => {
            block(admin::stats(admin::StatsArgs { unit, from, to, csv, tz }, db, lang))
        }
        Command::Import { workflow, from, step, dry_run, actor, workflows, db } => {
            block(import::import(import::Import { workflow, from, step, dry_run, actor, workflows }, db, lang))
        }
        Command::Archive { closed_before, to, purge, dry_run, with_personal_data, batch, tz, db } => {
            let opts = retention::Archive { closed_before, to, purge, dry_run, with_personal_data, batch, tz };
            block(retention::archive(opts, db, lang))
        }
        Command::Calendar(CalendarCommand::Show { month, file, workflows }) => {
            rules::calendar(&workflows, &file, &month, lang)
        }
        Command::Bench { workflows, .. } if !workflows.join("bench").is_dir() => Err(Failure::new(msg!(
            "cli-bench-no-workflows",
            folder = std::path::absolute(&workflows).unwrap_or(workflows).display().to_string()
        ))),
        Command::Bench { case, n, clients, workflows, sync, db } => block(async move {
            // The bench runs on a worker thread, as a request's handler does in the server
            // (`block_on` parks the main thread between awaits, which costs tens of microseconds a wake).
            tokio::spawn(crate::bench::run(case, n, clients, workflows, sync.durability(), db))
                .await
                .map_err(|e| Failure::new(msg!("cli-engine-failure", detail = e.to_string())))?
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| Failure::new(msg!("cli-bench-failed", detail = e)))
        }),
        Command::Schema => {
            let schema = yishi_core::schema::workflow_schema(&crate::registry());
            crate::output::print_line(format_args!("{}", serde_json::to_string_pretty(&schema).unwrap_or_default()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => {
            let doc = crate::server::openapi::document();
            crate::output::print_line(format_args!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Kinds => {
            let rows: Vec<Vec<String>> =
                crate::registry().iter().map(|k| vec![k.name().to_owned(), k.summary().render(lang)]).collect();
            crate::output::table(
                &[msg!("cli-kinds-kind").render(lang), msg!("cli-kinds-summary").render(lang)],
                &rows,
                &[],
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{}", msg!("cli-error", message = f.message).render(lang));
            ExitCode::from(f.status)
        }
    }
}
