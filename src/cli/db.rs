//! `yishi db`: whole databases. `db copy` moves a deployment between SQLite and PostgreSQL
//! (or between two databases of one kind) with a progress bar, then says what it checked.

use std::process::ExitCode;

use yishi_core::i18n::Lang;
use yishi_core::msg;
use yishi_engine::copy::{CopyError, copy_database};
use yishi_engine::store::{StoreError, StoreOptions, redact};

use super::{CmdResult, Failure};
use crate::output::{out, progress, table};

pub async fn copy(from: String, to: String, lang: Lang) -> CmdResult {
    let bar = progress(0, String::new());
    let mut table_now = "";
    let result = copy_database(&StoreOptions::new(&from), &StoreOptions::new(&to), &mut |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        if p.table != table_now {
            table_now = p.table;
            bar.set_message(msg!("cli-db-copy-table", table = p.table).render(lang));
        }
    })
    .await;
    bar.finish_and_clear();
    let (from_shown, to_shown) = (redact(&from), redact(&to));
    let report = result.map_err(|e| {
        let database = |db: &str, e: &StoreError| match e {
            StoreError::NotFound(_) => msg!("cli-no-database", path = db),
            e => msg!("cli-database-error", db = db, detail = e.to_string()),
        };
        Failure::new(match &e {
            CopyError::Source(s) => database(&from_shown, s),
            CopyError::Target(s) => database(&to_shown, s),
            CopyError::Same => msg!("cli-db-copy-same"),
            CopyError::NotEmpty { table, rows } => {
                msg!("cli-db-copy-not-empty", db = &to_shown, table = *table, rows = *rows)
            }
            CopyError::Counts { table, in_source, in_copy } => {
                msg!("cli-db-copy-counts", table = *table, source = *in_source, copy = *in_copy)
            }
            CopyError::Checksum { in_source, in_copy } => {
                msg!("cli-db-copy-checksum", source = in_source.as_str(), copy = in_copy.as_str())
            }
        })
    })?;
    let rows: Vec<Vec<String>> = report.tables.iter().map(|(t, n)| vec![(*t).to_owned(), n.to_string()]).collect();
    table(
        &[msg!("cli-db-copy-column-table").render(lang), msg!("cli-db-copy-column-rows").render(lang)],
        &rows,
        &[false, true],
    );
    out!(
        "{}",
        msg!(
            "cli-db-copy-done",
            from = &from_shown,
            to = &to_shown,
            seconds = format!("{:.1}", report.took.as_secs_f64()),
            checksum = &report.checksum[..16]
        )
        .render(lang)
    );
    Ok(ExitCode::SUCCESS)
}
