//! Commands on a workflows folder: `check`, `test` (scenarios) and `calendar` (a month of a
//! working-day calendar, to compare with the State Council's notice).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use yishi_core::diag::Diagnostic;
use yishi_core::i18n::{Lang, rendering};
use yishi_core::script::Sandbox;
use yishi_core::{FileSet, check as check_files, msg};

use super::report::{Style, render};
use super::{CmdResult, Failure, Format};
use crate::output::{color_stdout, out};

fn load(dir: &Path) -> Result<FileSet, Failure> {
    FileSet::load_dir(dir).map_err(|e| {
        Failure::new(msg!("cli-cannot-read-folder", folder = dir.display().to_string(), why = e.to_string()))
    })
}

fn print_diagnostics<'a>(diags: impl Iterator<Item = &'a Diagnostic>, files: &FileSet, lang: Lang) {
    let style = Style { color: color_stdout(), lang };
    for d in diags {
        out!("{}\n", render(d, files, &style));
    }
}

pub fn check(dir: &Path, format: Format, lang: Lang, today: Option<chrono::NaiveDate>, tz: &str) -> CmdResult {
    let zone =
        yishi_core::calendar::Zone::parse(tz).ok_or_else(|| Failure::new(msg!("calendar-bad-zone", zone = tz)))?;
    let files = load(dir)?;
    let mut catalog = check_files(&files, &crate::registry(), &Arc::new(Sandbox::default()));
    let now = chrono::Utc::now().timestamp_millis();
    let today_ms = match today {
        // Noon of that day where the deployment is.
        Some(d) => zone.instant(d.and_hms_opt(12, 0, 0).unwrap_or_default()).unwrap_or(now),
        None => now,
    };
    catalog.diagnostics.extend(yishi_core::check::calendar_warnings(&catalog, today_ms));
    let errors = catalog.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = catalog.diagnostics.len() - errors;
    match format {
        Format::Json => {
            let workflows: Vec<serde_json::Value> = catalog
                .definitions
                .values()
                .map(|d| {
                    serde_json::json!({ "key": d.key, "title": d.title.get(lang), "version_id": d.hash, "abstract": d.is_abstract, "steps": d.steps.len() })
                })
                .collect();
            let text = rendering(lang, || {
                let body = serde_json::json!({
                    "workflows": workflows,
                    "failed": catalog.failed.keys().collect::<Vec<_>>(),
                    "diagnostics": catalog.diagnostics,
                });
                serde_json::to_string_pretty(&body)
            })
            .unwrap_or_default();
            out!("{text}");
        }
        Format::Human => {
            print_diagnostics(catalog.diagnostics.iter(), &files, lang);
            let summary = msg!(
                "diag-summary",
                ok = catalog.definitions.len(),
                failed = catalog.failed.len(),
                errors = errors,
                warnings = warnings
            );
            out!("{}", summary.render(lang));
        }
    }
    Ok(if catalog.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn test(dir: &Path, format: Format, lang: Lang) -> CmdResult {
    let files = load(dir)?;
    let registry = crate::registry();
    let catalog = check_files(&files, &registry, &Arc::new(Sandbox::default()));
    let results = super::runtime()?.block_on(yishi_engine::scenario::run_all(&catalog, &files, &registry));
    let passed = results.iter().filter(|r| r.passed).count();
    let failed = results.len() - passed;
    match format {
        Format::Json => {
            let text = rendering(lang, || {
                serde_json::to_string_pretty(&serde_json::json!({ "scenarios": results, "check": catalog.diagnostics }))
            });
            out!("{}", text.unwrap_or_default());
        }
        Format::Human => {
            print_diagnostics(catalog.diagnostics.iter().filter(|d| d.is_error()), &files, lang);
            for r in &results {
                let mark = if r.passed { msg!("cli-test-ok") } else { msg!("cli-test-fail") };
                out!("{} {} ({})", mark.render(lang), r.title, r.file);
                print_diagnostics(r.failures.iter(), &files, lang);
            }
            out!("{}", msg!("cli-test-summary", passed = passed, failed = failed).render(lang));
        }
    }
    Ok(if failed > 0 || catalog.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `yishi calendar show 2026-10`: the month as a grid, holidays and make-up days marked, the
/// notice the year's dates come from.
pub fn calendar(dir: &Path, file: &str, month: &str, lang: Lang) -> CmdResult {
    let bad_month = || Failure::new(msg!("cli-bad-month", month = month));
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").map_err(|_| bad_month())?;
    let files = load(dir)?;
    if files.get(file).is_none() {
        return Err(Failure::new(msg!("check-calendar-missing", file = file)));
    }
    let cal = yishi_core::check::read_calendar(&files, file).map_err(|diags| {
        print_diagnostics(diags.iter(), &files, lang);
        Failure::new(msg!("cli-calendar-invalid", file = file))
    })?;
    out!(
        "{}",
        msg!("cli-calendar-title", year = first.year(), month = first.month(), file = file, zone = cal.zone.name())
            .render(lang)
    );
    match cal.notices.get(&first.year()) {
        Some(n) => out!("{}", msg!("cli-calendar-notice", notice = n).render(lang)),
        None if !cal.covers(first.year()) => {
            out!("{}", msg!("cli-calendar-not-covered", year = first.year()).render(lang))
        }
        None => {}
    }
    let days: Vec<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| {
            yishi_core::i18n::Message::new(match *d {
                "mon" => "weekday-mon",
                "tue" => "weekday-tue",
                "wed" => "weekday-wed",
                "thu" => "weekday-thu",
                "fri" => "weekday-fri",
                "sat" => "weekday-sat",
                _ => "weekday-sun",
            })
            .render(lang)
        })
        .collect();
    out!("{}", days.iter().map(|d| crate::output::pad(d, 5)).collect::<Vec<_>>().join(""));
    let mut line = "     ".repeat(first.weekday().num_days_from_monday() as usize);
    let mut notes = Vec::new();
    for day in cal.month(first.year(), first.month()).unwrap_or_default() {
        let mark = match day.kind {
            "make_up" => {
                notes.push(msg!("cli-calendar-make-up", date = &day.date).render(lang));
                '+'
            }
            "holiday" => {
                notes.push(
                    msg!("cli-calendar-holiday", date = &day.date, name = day.name.unwrap_or_default()).render(lang),
                );
                '*'
            }
            "weekend" => '.',
            _ => ' ',
        };
        let date = NaiveDate::parse_from_str(&day.date, "%Y-%m-%d").unwrap_or(first);
        line.push_str(&format!("{:>3}{mark} ", date.day()));
        if date.weekday().num_days_from_monday() == 6 {
            out!("{}", line.trim_end());
            line.clear();
        }
    }
    if !line.trim().is_empty() {
        out!("{}", line.trim_end());
    }
    out!("{}", msg!("cli-calendar-legend").render(lang));
    for n in notes {
        out!("  {n}");
    }
    Ok(ExitCode::SUCCESS)
}
