//! `yishi archive`: closed cases written to JSON lines and, when asked, purged (a progress bar
//! on a terminal, a summary at the end).

use std::path::PathBuf;
use std::process::ExitCode;

use yishi_core::calendar::Zone;
use yishi_core::i18n::Lang;
use yishi_core::msg;
use yishi_engine::service::retention::ArchiveOptions;

use super::admin::open_engine;
use super::{CmdResult, Failure};
use crate::output::{out, table};

/// The command line of `yishi archive`.
pub struct Archive {
    pub closed_before: String,
    pub to: Option<PathBuf>,
    pub purge: bool,
    pub dry_run: bool,
    pub with_personal_data: bool,
    pub batch: u32,
    pub tz: String,
}

pub async fn archive(a: Archive, db: String, lang: Lang) -> CmdResult {
    let zone = Zone::parse(&a.tz).ok_or_else(|| Failure::new(msg!("calendar-bad-zone", zone = &a.tz)))?;
    let cutoff = chrono::NaiveDate::parse_from_str(&a.closed_before, "%Y-%m-%d")
        .ok()
        .and_then(|d| zone.instant(d.and_hms_opt(0, 0, 0)?))
        .ok_or_else(|| Failure::new(msg!("cli-archive-bad-date", value = &a.closed_before)))?;
    let engine = open_engine(&db).await?;
    let counts = engine.count_closed_before(cutoff).await?;
    let total: u64 = counts.values().sum();
    if a.dry_run {
        let rows: Vec<Vec<String>> = counts.iter().map(|(w, n)| vec![w.clone(), n.to_string()]).collect();
        if !rows.is_empty() {
            table(&[msg!("cli-col-workflow").render(lang), msg!("cli-col-cases").render(lang)], &rows, &[false, true]);
        }
        out!("{}", msg!("cli-archive-would", cases = total, before = &a.closed_before).render(lang));
        engine.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    let to = a.to.expect("clap requires --to without --dry-run");
    let shown = to.display().to_string();
    let cannot =
        |e: std::io::Error| Failure::new(msg!("cli-archive-cannot-write", file = &shown, detail = e.to_string()));
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    // Personal data may be in it: readable by its owner only from the start, like the database.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(&to).map_err(cannot)?;
    // The file's name must survive a power loss too before anything is purged.
    #[cfg(unix)]
    if a.purge {
        let folder = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        std::fs::File::open(folder).and_then(|d| d.sync_all()).map_err(cannot)?;
    }
    let mut out_file = std::io::BufWriter::new(file);
    let bar = crate::output::progress(total, msg!("cli-archive-running", file = &shown).render(lang));
    let opts = ArchiveOptions {
        closed_before: cutoff,
        purge: a.purge,
        personal: a.with_personal_data,
        batch: a.batch,
        zone,
        archive: std::path::absolute(&to).unwrap_or(to.clone()).display().to_string(),
        // The person behind `sudo -u yishi`, else the account running it.
        actor: std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "yishi".into()),
    };
    let report = engine.archive(&opts, &mut out_file, |n| bar.inc(n)).await;
    bar.finish_and_clear();
    engine.close().await;
    let report = report?;
    let done = if a.purge {
        msg!(
            "cli-archive-done-purged",
            cases = report.cases,
            events = report.events,
            purged = report.purged,
            file = &shown
        )
    } else {
        msg!("cli-archive-done", cases = report.cases, events = report.events, file = &shown)
    };
    out!("{}", done.render(lang));
    if !a.with_personal_data {
        out!("{}", msg!("cli-archive-masked").render(lang));
    }
    Ok(ExitCode::SUCCESS)
}
