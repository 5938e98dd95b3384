//! Commands on an existing database: versions, diffs and sources of workflows, API tokens.
//! They never create a database: a wrong `--db` or working folder says where it looked.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use serde_json::Value;

use yishi_core::clock::SystemClock;
use yishi_core::i18n::Lang;
use yishi_core::msg;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::service::accounts::AccountSpec;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::{StoreError, StoreOptions};

use super::{AccountCommand, CmdResult, Failure, OutboxCommand, TokenCommand};
use crate::output::{out, table};

/// An engine on an existing database.
pub async fn open_engine(db: &str) -> Result<Arc<Engine>, Failure> {
    let options = StoreOptions { create: false, ..StoreOptions::new(db) };
    let store = yishi_engine::store::open(&options).await.map_err(|e| match e {
        StoreError::NotFound(_) => Failure::new(msg!(
            "cli-no-database",
            path = std::path::absolute(db).map_or_else(|_| db.to_owned(), |p| p.display().to_string())
        )),
        e => Failure::new(msg!("cli-database-error", db = yishi_engine::store::redact(db), detail = e.to_string())),
    })?;
    Ok(Engine::new(store, crate::registry(), Arc::new(SystemClock), Config::default()))
}

/// A time for a person: local (Asia/Shanghai unless `YISHI_TZ` says otherwise), to the minute.
fn local(ms: i64) -> String {
    let zone = std::env::var("YISHI_TZ").ok().and_then(|z| yishi_core::calendar::Zone::parse(&z)).unwrap_or_default();
    zone.local(ms).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

pub async fn versions(workflow: Option<String>, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    let rows = engine.versions(workflow.as_deref()).await?;
    if rows.is_empty() {
        return Err(Failure::new(msg!("cli-no-versions")));
    }
    let header: Vec<String> = [
        "cli-col-workflow",
        "cli-col-version",
        "cli-col-version-id",
        "cli-col-created",
        "cli-col-created-by",
        "cli-col-active",
    ]
    .iter()
    .map(|k| yishi_core::i18n::Message::new(k).render(lang))
    .collect();
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|v| {
            vec![
                v.row.workflow,
                v.row.seq.to_string(),
                v.row.hash[..12.min(v.row.hash.len())].to_owned(),
                local(v.row.created_at),
                v.row.created_by,
                v.active_instances.to_string(),
            ]
        })
        .collect();
    // Which version is current is the running server's to say (`GET /api/v1/workflows/{key}/versions`).
    table(&header, &rows, &[false, true, false, false, false, true]);
    engine.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn diff(workflow: String, from: i64, to: i64, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    let d = engine.diff(&workflow, from, to).await?;
    if d.changes.is_empty() && d.files.is_empty() {
        out!("{}", msg!("cli-no-differences").render(lang));
    }
    for c in &d.changes {
        out!("{}  {}", crate::output::pad(c.area, 12), c.text.render(lang));
    }
    for f in &d.files {
        let status = yishi_core::i18n::Message::new(match f.status {
            "added" => "cli-file-added",
            "removed" => "cli-file-removed",
            _ => "cli-file-changed",
        });
        out!("");
        out!("{} ({})", f.path, status.render(lang));
        out!("{}", f.diff.trim_end());
    }
    engine.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn source(workflow: String, version: i64, file: Option<String>, db: String) -> CmdResult {
    let engine = open_engine(&db).await?;
    let v = engine.version_source(&workflow, version).await?;
    match file {
        Some(f) => {
            let text = v.sources.get(&f).ok_or_else(|| {
                Failure::new(msg!(
                    "cli-no-such-file",
                    file = &f,
                    version = version,
                    workflow = &workflow,
                    files = v.sources.keys().cloned().collect::<Vec<_>>()
                ))
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
    engine.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn account(cmd: AccountCommand, lang: Lang) -> CmdResult {
    let db = match &cmd {
        AccountCommand::Create { db, .. }
        | AccountCommand::List { db }
        | AccountCommand::Disable { db, .. }
        | AccountCommand::Enable { db, .. }
        | AccountCommand::Reset { db, .. } => db.clone(),
    };
    let engine = open_engine(&db).await?;
    match cmd {
        AccountCommand::Create { name, role, scope, acts_as, .. } => {
            let password = yishi_engine::service::accounts::first_password();
            let spec = AccountSpec { name: &name, role: &role, scope: &scope, acts_as: &acts_as, password: &password };
            let row = engine.create_account(&spec).await?;
            eprintln!("{}", msg!("cli-account-created", id = row.id, name = &row.name).render(lang));
            out!("{password}");
        }
        AccountCommand::List { .. } => {
            let header: Vec<String> =
                ["cli-col-id", "cli-col-name", "cli-col-role", "cli-col-scope", "cli-col-state", "cli-col-acts-as"]
                    .iter()
                    .map(|k| yishi_core::i18n::Message::new(k).render(lang))
                    .collect();
            let now = engine.now();
            let rows: Vec<Vec<String>> = engine
                .accounts()
                .await?
                .into_iter()
                .map(|a| {
                    let state = match (a.disabled_at, a.locked_until.filter(|u| *u > now), a.must_change) {
                        (Some(_), _, _) => msg!("cli-account-disabled-state"),
                        (None, Some(_), _) => msg!("cli-account-locked-state"),
                        (None, None, true) => msg!("cli-account-new-state"),
                        _ => msg!("cli-token-active-state"),
                    };
                    vec![a.id.to_string(), a.name, a.role, a.scope, state.render(lang), a.acts_as.join(", ")]
                })
                .collect();
            table(&header, &rows, &[true, false, false, false, false, false]);
        }
        AccountCommand::Disable { id, .. } => {
            engine.set_account_disabled(id, true).await?;
            eprintln!("{}", msg!("cli-account-disabled", id = id).render(lang));
        }
        AccountCommand::Enable { id, .. } => {
            engine.set_account_disabled(id, false).await?;
            eprintln!("{}", msg!("cli-account-enabled", id = id).render(lang));
        }
        AccountCommand::Reset { id, .. } => {
            let password = yishi_engine::service::accounts::first_password();
            engine.reset_password(id, &password).await?;
            eprintln!("{}", msg!("cli-account-reset", id = id).render(lang));
            out!("{password}");
        }
    }
    engine.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn token(cmd: TokenCommand, lang: Lang) -> CmdResult {
    let db = match &cmd {
        TokenCommand::Create { db, .. } | TokenCommand::List { db } | TokenCommand::Revoke { db, .. } => db.clone(),
    };
    let engine = open_engine(&db).await?;
    match cmd {
        TokenCommand::Create { name, role, scope, acts_as, .. } => {
            let spec = TokenSpec { name: &name, role: &role, scope: &scope, acts_as: &acts_as };
            let (row, token) = engine.create_token(&spec).await?;
            eprintln!(
                "{}",
                msg!("cli-token-created", id = row.id, name = &name, role = &role, scope = &scope).render(lang)
            );
            out!("{token}");
        }
        TokenCommand::List { .. } => {
            let header: Vec<String> =
                ["cli-col-id", "cli-col-name", "cli-col-role", "cli-col-scope", "cli-col-state", "cli-col-acts-as"]
                    .iter()
                    .map(|k| yishi_core::i18n::Message::new(k).render(lang))
                    .collect();
            let rows: Vec<Vec<String>> = engine
                .tokens()
                .await?
                .into_iter()
                .map(|t| {
                    let state = if t.revoked_at.is_some() {
                        msg!("cli-token-revoked-state")
                    } else {
                        msg!("cli-token-active-state")
                    };
                    vec![t.id.to_string(), t.name, t.role, t.scope, state.render(lang), t.acts_as.join(", ")]
                })
                .collect();
            table(&header, &rows, &[true, false, false, false, false, false]);
        }
        TokenCommand::Revoke { id, .. } => {
            if !engine.revoke_token(id).await? {
                return Err(Failure::new(msg!("cli-no-active-token", id = id)));
            }
            eprintln!("{}", msg!("cli-token-revoked", id = id).render(lang));
        }
    }
    engine.close().await;
    Ok(ExitCode::SUCCESS)
}

/// A spinner on a terminal (nothing otherwise) while a long step runs.
fn spinner(text: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(text);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

pub async fn backup(to: PathBuf, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    let bar = spinner(msg!("cli-backup-running", db = &db, to = to.display().to_string()).render(lang));
    let report = engine.backup(&to).await;
    bar.finish_and_clear();
    let report = report?;
    engine.close().await;
    out!(
        "{}",
        msg!(
            "cli-backup-done",
            to = to.display().to_string(),
            instances = report.instances,
            events = report.events,
            versions = report.versions,
            megabytes = format!("{:.1}", report.bytes as f64 / 1_048_576.0)
        )
        .render(lang)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(from: PathBuf, db: String, lang: Lang) -> CmdResult {
    let target = PathBuf::from(&db);
    // Refuse while a server holds the database: its next commit would undo the restore.
    if target.exists() {
        let held = open_engine(&db).await?;
        held.hold_database()?;
        held.close().await;
    }
    let bar = spinner(msg!("cli-restore-checking", from = from.display().to_string()).render(lang));
    let backup = open_engine(&from.display().to_string()).await;
    let checked = match backup {
        Ok(e) => {
            let r = e.backup_check().await;
            e.close().await;
            r.map_err(Failure::from)
        }
        Err(f) => Err(f),
    };
    bar.finish_and_clear();
    checked?;
    // Copy beside the target, then rename over it: the database is the old one or the new one.
    let partial = target.with_extension("restoring");
    std::fs::copy(&from, &partial)
        .map_err(|e| Failure::new(msg!("cli-restore-failed", db = &db, detail = e.to_string())))?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    std::fs::rename(&partial, &target)
        .map_err(|e| Failure::new(msg!("cli-restore-failed", db = &db, detail = e.to_string())))?;
    out!("{}", msg!("cli-restore-done", db = &db, from = from.display().to_string()).render(lang));
    Ok(ExitCode::SUCCESS)
}

pub async fn outbox(cmd: OutboxCommand, lang: Lang) -> CmdResult {
    match cmd {
        OutboxCommand::Dead { db } => {
            let engine = open_engine(&db).await?;
            let dead = engine.dead_letters().await?;
            engine.close().await;
            if dead.is_empty() {
                out!("{}", msg!("cli-outbox-none").render(lang));
                return Ok(ExitCode::SUCCESS);
            }
            let header: Vec<String> =
                ["cli-col-id", "cli-col-case", "cli-col-delivery", "cli-col-attempts", "cli-col-last-error"]
                    .iter()
                    .map(|k| yishi_core::i18n::Message::new(k).render(lang))
                    .collect();
            let rows: Vec<Vec<String>> = dead
                .into_iter()
                .map(|d| {
                    let what = match d.notice["kind"].as_str() {
                        Some("webhook") => d.notice["notice"]["webhook"].as_str().unwrap_or_default().to_owned(),
                        Some("spawn") => d.notice["workflow"].as_str().unwrap_or_default().to_owned(),
                        _ => String::new(),
                    };
                    vec![
                        d.id.to_string(),
                        d.instance.to_string(),
                        what,
                        d.attempts.to_string(),
                        d.last_error.unwrap_or_default(),
                    ]
                })
                .collect();
            table(&header, &rows, &[true, true, false, true, false]);
        }
        OutboxCommand::Retry { id, db, .. } => {
            let engine = open_engine(&db).await?;
            let n = engine.retry_dead(id).await?;
            engine.close().await;
            out!("{}", msg!("cli-outbox-retried", count = n).render(lang));
        }
        OutboxCommand::Discard { id, db, .. } => {
            let engine = open_engine(&db).await?;
            let n = engine.discard_dead(id).await?;
            engine.close().await;
            out!("{}", msg!("cli-outbox-discarded", count = n).render(lang));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `yishi stats` asks for.
pub struct StatsArgs {
    pub unit: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub csv: bool,
    pub tz: String,
}

pub async fn stats(a: StatsArgs, db: String, lang: Lang) -> CmdResult {
    use yishi_engine::service::stats::Month;
    let zone = yishi_core::calendar::Zone::parse(&a.tz)
        .ok_or_else(|| Failure::new(msg!("calendar-bad-zone", zone = &a.tz)))?;
    let now = Month::of(chrono::Utc::now().timestamp_millis(), zone).unwrap_or(Month { year: 2026, month: 1 });
    let to = crate::server::stats::month_arg("--to", a.to.as_deref(), now).map_err(Failure::new)?;
    let from = crate::server::stats::month_arg("--from", a.from.as_deref(), to).map_err(Failure::new)?;
    let engine = open_engine(&db).await?;
    let report = engine.stats(a.unit.as_deref().unwrap_or_default().trim_end_matches('/'), from, to, zone).await;
    engine.close().await;
    let report = report?;
    let (header, rows) = crate::server::stats::table(&report, lang);
    if a.csv {
        out!("{}", crate::server::reply::csv_text(&header, &rows, true).trim_end());
    } else {
        table(&header, &rows, &[false, false, true, true, true, true, true, true, true, true, true, true]);
        if !report.parties.is_empty() {
            let (header, rows) = crate::server::stats::parties_table(&report, lang);
            out!("");
            table(&header, &rows, &[false, false, true, true, true, true, true, true, true]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The sittings of `unit` (and below), latest first.
pub async fn sittings(unit: Option<String>, status: Option<String>, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    // The workflows the database runs, as the last server activated them.
    engine.follow().await?;
    let found = engine.gatherings(unit.map(|u| vec![format!("{u}/")]), status.as_deref()).await;
    engine.close().await;
    let found = found?;
    if found.is_empty() {
        out!("{}", msg!("cli-sittings-none").render(lang));
        return Ok(ExitCode::SUCCESS);
    }
    let header: Vec<String> =
        ["cli-col-id", "cli-col-unit", "cli-col-date", "cli-col-place", "cli-col-expected", "cli-col-state"]
            .iter()
            .map(|k| yishi_core::i18n::Message::new(k).render(lang))
            .collect();
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.unit.clone(),
                g.at.map(local).unwrap_or_default(),
                g.data.get("place").and_then(Value::as_str).unwrap_or_default().to_owned(),
                g.data.get("expected").and_then(Value::as_array).map_or(0, Vec::len).to_string(),
                sitting_status(&g.status, lang),
            ]
        })
        .collect();
    table(&header, &rows, &[true, false, false, false, true, false]);
    Ok(ExitCode::SUCCESS)
}

fn sitting_status(status: &str, lang: Lang) -> String {
    let key = match status {
        "scheduled" => "sitting-status-scheduled",
        "open" => "sitting-status-open",
        "held" => "sitting-status-held",
        "inquorate" => "sitting-status-inquorate",
        "cancelled" => "sitting-status-cancelled",
        "active" => "sitting-status-active",
        _ => "sitting-status-completed",
    };
    yishi_core::i18n::Message::new(key).render(lang)
}

/// One sitting with its agenda.
pub async fn sitting(id: i64, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    engine.follow().await?;
    let found = engine.gathering(id).await;
    engine.close().await;
    let g = found?;
    let record = g.data.get("sitting").cloned().unwrap_or(Value::Null);
    let text = |k: &str| g.data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    out!(
        "{}",
        msg!(
            "cli-sitting-head",
            id = g.id,
            unit = &g.unit,
            date = g.at.map(local).unwrap_or_default(),
            place = text("place"),
            status = sitting_status(&g.status, lang)
        )
        .render(lang)
    );
    if let Some(q) = record.get("quorum") {
        let n = |k: &str| q.get(k).and_then(Value::as_i64).unwrap_or_default();
        out!(
            "{}",
            msg!("cli-sitting-quorum", present = n("present"), expected = n("expected"), needed = n("needed"))
                .render(lang)
        );
    }
    if g.agenda.is_empty() {
        out!("{}", msg!("cli-sitting-no-agenda").render(lang));
    } else {
        let header: Vec<String> =
            ["cli-col-case", "cli-col-title", "cli-col-state", "cli-col-decision", "cli-col-tally"]
                .iter()
                .map(|k| yishi_core::i18n::Message::new(k).render(lang))
                .collect();
        let rows: Vec<Vec<String>> = g
            .agenda
            .iter()
            .map(|i| {
                let n = |k: &str| i.record.get(k).and_then(Value::as_i64);
                let tally = match (n("for"), n("against"), n("abstain")) {
                    (None, None, None) => String::new(),
                    (f, a, b) => format!("{}/{}/{}", f.unwrap_or(0), a.unwrap_or(0), b.unwrap_or(0)),
                };
                let state = match (i.status.as_str(), i.now_on) {
                    ("rolled_over", Some(next)) => msg!("cli-sitting-rolled-to", next = next).render(lang),
                    (s, _) => yishi_core::i18n::Message::new(match s {
                        "pending" => "sitting-item-pending",
                        "decided" => "sitting-item-decided",
                        _ => "sitting-item-rolled-over",
                    })
                    .render(lang),
                };
                vec![
                    i.case.to_string(),
                    i.papers.get("title").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    state,
                    i.outcome.clone().unwrap_or_default(),
                    tally,
                ]
            })
            .collect();
        table(&header, &rows, &[true, false, false, false, true]);
    }
    if let Some(m) = record.get("minutes").and_then(Value::as_str) {
        out!("{}", msg!("cli-sitting-minutes", minutes = m).render(lang));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn similar(id: i64, limit: usize, db: String, lang: Lang) -> CmdResult {
    let engine = open_engine(&db).await?;
    let found = engine.similar(id, limit).await;
    engine.close().await;
    let found = found?;
    if found.is_empty() {
        out!("{}", msg!("cli-similar-none", id = id).render(lang));
        return Ok(ExitCode::SUCCESS);
    }
    let header: Vec<String> = ["cli-col-id", "cli-col-score", "cli-col-title", "cli-col-location", "cli-col-category"]
        .iter()
        .map(|k| yishi_core::i18n::Message::new(k).render(lang))
        .collect();
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                format!("{:.3}", s.score),
                s.title.clone().unwrap_or_default(),
                s.location.clone().unwrap_or_default(),
                s.category.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&header, &rows, &[true, true, false, false, false]);
    Ok(ExitCode::SUCCESS)
}
