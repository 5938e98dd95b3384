//! `yishi db copy`: every row of one database into another, empty one, across backends
//! (SQLite to PostgreSQL to move a deployment that outgrew one machine, or back), then proved:
//! the row counts of every table and a checksum of every case's history, read back from the
//! target, must equal the source's.

use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::service::access::hex;
use crate::store::copy::TABLES;
use crate::store::{AnyStore, Store, StoreError, StoreOptions};

/// Rows moved per statement.
const BATCH: u32 = 2_000;

/// Why a copy did not happen or did not check out.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the source database: {0}")]
    Source(StoreError),
    #[error("the target database: {0}")]
    Target(StoreError),
    #[error("the source and the target are the same database")]
    Same,
    #[error("the target is not empty: {table} holds {rows} rows")]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("{table}: {in_source} rows in the source, {in_copy} in the copy")]
    Counts { table: &'static str, in_source: i64, in_copy: i64 },
    #[error("the histories differ: checksum {in_source} in the source, {in_copy} in the copy")]
    Checksum { in_source: String, in_copy: String },
}

/// What was copied.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Rows per table, in the order they were written.
    pub tables: Vec<(&'static str, i64)>,
    /// SHA-256 of every event of every case, in order (the same in both databases).
    pub checksum: String,
    pub took: Duration,
}

/// How far a copy is: the table being written, and rows written of all tables so far out of all.
#[derive(Debug, Clone, Copy)]
pub struct CopyProgress {
    pub table: &'static str,
    pub done: u64,
    pub total: u64,
}

/// Copies the database `from` names into the empty one `to` names. A SQLite source is taken
/// for the copy's time (a server serving it is refused: stop it first); a PostgreSQL source
/// must have no node serving it (see docs/deploy.md).
pub async fn copy_database(
    from: &StoreOptions,
    to: &StoreOptions,
    progress: &mut dyn FnMut(CopyProgress),
) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let source =
        crate::store::open(&StoreOptions { create: false, ..from.clone() }).await.map_err(CopyError::Source)?;
    let target = crate::store::open(&StoreOptions { create: true, ..to.clone() }).await.map_err(CopyError::Target)?;
    if source.describe() == target.describe() {
        return Err(CopyError::Same);
    }
    source.hold().map_err(CopyError::Source)?;
    target.hold().map_err(CopyError::Target)?;
    let mut counts = Vec::new();
    for table in TABLES {
        let rows = target.row_count(table).await.map_err(CopyError::Target)?;
        if rows > 0 {
            return Err(CopyError::NotEmpty { table: table.name, rows });
        }
        counts.push(source.row_count(table).await.map_err(CopyError::Source)?);
    }
    let total: u64 = counts.iter().map(|&n| n as u64).sum();
    let mut done = 0u64;
    let mut history = Sha256::new();
    for table in TABLES {
        progress(CopyProgress { table: table.name, done, total });
        let mut after: Option<Vec<Value>> = None;
        loop {
            let rows = source.export_rows(table, after.as_deref(), BATCH).await.map_err(CopyError::Source)?;
            let Some(last) = rows.last() else { break };
            after = Some(last[..table.key].to_vec());
            if table.name == "events" {
                hash_rows(&mut history, &rows);
            }
            target.import_rows(table, &rows).await.map_err(CopyError::Target)?;
            done += rows.len() as u64;
            progress(CopyProgress { table: table.name, done, total });
        }
    }
    target.finish_import().await.map_err(CopyError::Target)?;
    // Proof, read back from the target.
    let mut tables = Vec::new();
    for (table, &expected) in TABLES.iter().zip(&counts) {
        let got = target.row_count(table).await.map_err(CopyError::Target)?;
        if got != expected {
            return Err(CopyError::Counts { table: table.name, in_source: expected, in_copy: got });
        }
        tables.push((table.name, got));
    }
    let checksum = hex(&history.finalize());
    let copied = events_checksum(&target).await.map_err(CopyError::Target)?;
    if copied != checksum {
        return Err(CopyError::Checksum { in_source: checksum, in_copy: copied });
    }
    source.close().await;
    target.close().await;
    Ok(CopyReport { tables, checksum, took: started.elapsed() })
}

/// SHA-256 of every event of a database, in case and sequence order.
pub async fn events_checksum(store: &AnyStore) -> Result<String, StoreError> {
    let events = TABLES.iter().find(|t| t.name == "events").expect("events are copied");
    let mut h = Sha256::new();
    let mut after: Option<Vec<Value>> = None;
    loop {
        let rows = store.export_rows(events, after.as_deref(), BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = Some(last[..events.key].to_vec());
        hash_rows(&mut h, &rows);
    }
    Ok(hex(&h.finalize()))
}

fn hash_rows(h: &mut Sha256, rows: &[Vec<Value>]) {
    for row in rows {
        h.update(serde_json::to_vec(row).expect("rows of JSON values serialise"));
        h.update(b"\n");
    }
}
