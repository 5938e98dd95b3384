//! `yishi import`: existing cases (a hotline's work-order export, a spreadsheet) brought into a
//! workflow at a chosen step, from JSON lines or CSV, with a dry run, a progress bar and a
//! summary of what was refused and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Map, Value};
use yishi_core::i18n::{Lang, Message};
use yishi_core::kind::Actor;
use yishi_core::msg;

use super::admin::open_engine;
use super::{CmdResult, Failure};
use crate::output::out;
use yishi_engine::service::Intake;

/// The command line of `yishi import`.
pub struct Import {
    pub workflow: String,
    pub from: PathBuf,
    pub step: Option<String>,
    pub dry_run: bool,
    pub actor: String,
    /// The rules folder, for the workflow's definition (the same files a server runs).
    pub workflows: PathBuf,
}

/// Refusals listed in the summary; the rest are counted.
const SHOWN: usize = 20;

/// One record of the file: its line (1-based; for CSV the header is line 1) and its data, or
/// why it could not be read.
type Record = (usize, Result<Map<String, Value>, Message>);

fn read_records(path: &Path) -> Result<Vec<Record>, Message> {
    let file = path.display().to_string();
    let unreadable = |e: String| msg!("cli-import-unreadable", file = &file, detail = e);
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        let mut reader =
            csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(|e| unreadable(e.to_string()))?;
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| unreadable(e.to_string()))?
            .iter()
            // A spreadsheet's UTF-8 byte order mark is not part of the first key.
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
            .collect();
        let mut out = Vec::new();
        for (i, row) in reader.records().enumerate() {
            // The line the record starts on (a quoted cell may span lines).
            let line = row.as_ref().ok().and_then(|r| r.position()).map_or(i + 2, |p| p.line() as usize);
            out.push((
                line,
                row.map_err(|e| msg!("cli-import-bad-csv", detail = e.to_string())).map(|r| {
                    headers
                        .iter()
                        .zip(r.iter())
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.clone(), Value::String(v.to_owned())))
                        .collect()
                }),
            ));
        }
        Ok(out)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                let data = match serde_json::from_str::<Value>(l) {
                    Ok(Value::Object(m)) => Ok(m),
                    Ok(_) => Err(msg!("cli-import-not-object")),
                    Err(e) => Err(msg!("cli-import-bad-json", detail = e.to_string())),
                };
                (i + 1, data)
            })
            .collect())
    }
}

pub async fn import(a: Import, db: String, lang: Lang) -> CmdResult {
    let records = read_records(&a.from).map_err(Failure::new)?;
    let engine = open_engine(&db).await?;
    // Case ids are handed out by the process holding the database: not beside a server.
    engine.hold_database()?;
    // The definitions come from the rules folder, activated as a server would (the same files
    // give the same versions).
    let files = yishi_core::FileSet::load_dir(&a.workflows)
        .map_err(|e| Failure::new(msg!("serve-no-workflows", folder = format!("{} ({e})", a.workflows.display()))))?;
    engine.activate_files(&files, "import").await?;
    let source = a.from.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let actor = Actor { id: a.actor.clone(), roles: Vec::new() };
    let bar = crate::output::progress(records.len() as u64, msg!("cli-import-running", file = &source).render(lang));
    let (mut imported, mut refused) = (Vec::new(), Vec::new());
    for (line, data) in records {
        let result = match data {
            Err(m) => Err(m),
            Ok(data) => {
                let note: Map<String, Value> =
                    [("imported_from".to_owned(), Value::from(source.clone())), ("line".to_owned(), Value::from(line))]
                        .into_iter()
                        .collect();
                let intake = Intake { step: a.step.clone(), urgency: None, note };
                let done = if a.dry_run {
                    engine.check_start(&a.workflow, data, &intake).await.map(|()| 0)
                } else {
                    engine.start_with(&a.workflow, data, &actor, None, intake).await.map(|v| v.id)
                };
                done.map_err(|e| e.message())
            }
        };
        match result {
            Ok(id) => imported.push(id),
            Err(m) => refused.push((line, m)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    engine.close().await;
    let summary = if a.dry_run {
        msg!("cli-import-would", ok = imported.len(), refused = refused.len(), workflow = &a.workflow)
    } else {
        let ids = match (imported.first(), imported.last()) {
            (Some(first), Some(last)) => format!("{first}-{last}"),
            _ => "-".into(),
        };
        msg!("cli-import-done", ok = imported.len(), refused = refused.len(), workflow = &a.workflow, ids = ids)
    };
    out!("{}", summary.render(lang));
    for (line, m) in refused.iter().take(SHOWN) {
        out!("{}", msg!("cli-import-refused-line", line = *line, reason = m.render(lang)).render(lang));
    }
    if refused.len() > SHOWN {
        out!("{}", msg!("cli-import-more-refused", count = refused.len() - SHOWN).render(lang));
    }
    Ok(if refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
