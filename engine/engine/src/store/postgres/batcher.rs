//! PostgreSQL's commit path: group commit over a few connections.
//!
//! Every transaction waits for the WAL to reach the disk. Units that arrive while others are
//! under way wait in a queue; a dispatcher hands everything waiting (up to [`MAX_BATCH`] units)
//! to one `yishi_commit` call, with at most [`IN_FLIGHT`] calls under way at once, so that many
//! changes share one flush. A lone unit with nothing under way goes at once. When a batch
//! fails on a conflict (one stale revision, or a timer another node fired, sinks the
//! statement), each of its units is tried again on its own, so one bad change never sinks the
//! others.

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::map_err;
use crate::store::rows::{Json, commit_rows};
use crate::store::{Commit, CommitStats, StoreError, StoreResult};

/// Most commit units in one transaction.
const MAX_BATCH: usize = 512;
/// Batches under way at once (each on a connection of its own).
const IN_FLIGHT: usize = 4;

const COMMIT_SQL: &str = "SELECT yishi_commit($1::jsonb, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, \
     $8::jsonb, $9::jsonb, $10::jsonb, $11::jsonb)";

enum Request {
    Commit {
        unit: Vec<Commit>,
        done: oneshot::Sender<StoreResult<()>>,
    },
    /// Answered once every batch handed out before it has finished.
    Barrier(oneshot::Sender<()>),
}

/// The commit queue of one PostgreSQL store.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Request>,
}

impl Batcher {
    /// Starts the dispatcher; it ends when the batcher is dropped.
    pub(super) fn start(pool: PgPool, stats: Arc<CommitStats>) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(rx, pool, stats));
        Batcher { queue: tx }
    }

    /// Commits a unit (in a batch with whatever else is waiting); returns once it is applied
    /// or has failed.
    pub(super) async fn commit(&self, unit: Vec<Commit>) -> StoreResult<()> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Request::Commit { unit, done })
            .map_err(|_| StoreError::Unavailable("the database is closed".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the commit path stopped".into()))?
    }

    /// Returns once every commit sent before it has been applied or has failed.
    pub(super) async fn barrier(&self) -> StoreResult<()> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Request::Barrier(done))
            .map_err(|_| StoreError::Unavailable("the database is closed".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the commit path stopped".into()))
    }
}

async fn dispatch(mut rx: mpsc::UnboundedReceiver<Request>, pool: PgPool, stats: Arc<CommitStats>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<Request> = None;
    loop {
        let first = match held.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let mut batch = Vec::new();
        match first {
            Request::Barrier(done) => {
                // Every batch handed out so far holds a slot until it is done.
                let all = slots.clone().acquire_many_owned(IN_FLIGHT as u32).await;
                drop(all);
                let _ = done.send(());
                continue;
            }
            Request::Commit { unit, done } => batch.push((unit, done)),
        }
        // A slot first: while every slot is busy, more units gather for the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Request::Commit { unit, done }) => batch.push((unit, done)),
                Ok(barrier @ Request::Barrier(_)) => {
                    held = Some(barrier);
                    break;
                }
                Err(_) => break,
            }
        }
        let (pool, stats) = (pool.clone(), stats.clone());
        tokio::spawn(async move {
            apply(&pool, &stats, batch).await;
            drop(slot);
        });
    }
}

/// Applies a batch as one statement; after a conflict, each unit on its own.
async fn apply(pool: &PgPool, stats: &CommitStats, batch: Vec<(Vec<Commit>, oneshot::Sender<StoreResult<()>>)>) {
    let mut all = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for (unit, done) in batch {
        let start = all.len();
        all.extend(unit);
        spans.push((start..all.len(), done));
    }
    let started = Instant::now();
    match execute(pool, &all).await {
        Ok(()) => {
            stats.record(all.len(), started.elapsed());
            for (_, done) in spans {
                let _ = done.send(Ok(()));
            }
        }
        Err(StoreError::Conflict(_)) if spans.len() > 1 => {
            // Find the stale units by reading the revisions they were computed from (one
            // statement), fail them, and commit the rest together again; one by one only if
            // that still conflicts (a race, or a timer another node fired).
            let stale = match stale_units(pool, &all, &spans).await {
                Ok(stale) => stale,
                Err(e) => {
                    for (_, done) in spans {
                        let _ = done.send(Err(e.clone()));
                    }
                    return;
                }
            };
            let mut rest = Vec::new();
            for ((span, done), stale) in spans.into_iter().zip(stale) {
                if stale {
                    let _ =
                        done.send(Err(StoreError::Conflict("the case changed since this change was computed".into())));
                } else {
                    rest.push((span, done));
                }
            }
            let retry: Vec<Commit> = rest.iter().flat_map(|(span, _)| all[span.clone()].iter().cloned()).collect();
            let started = Instant::now();
            if !retry.is_empty() && rest.len() > 1 && execute(pool, &retry).await.is_ok() {
                stats.record(retry.len(), started.elapsed());
                for (_, done) in rest {
                    let _ = done.send(Ok(()));
                }
                return;
            }
            for (span, done) in rest {
                let started = Instant::now();
                let unit = &all[span];
                let result = execute(pool, unit).await;
                if result.is_ok() {
                    stats.record(unit.len(), started.elapsed());
                }
                let _ = done.send(result);
            }
        }
        Err(e) => {
            for (_, done) in spans {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

/// For each unit, whether a case it changes is no longer at the revision (or the last event)
/// the change was computed from.
async fn stale_units(
    pool: &PgPool,
    all: &[Commit],
    spans: &[(std::ops::Range<usize>, oneshot::Sender<StoreResult<()>>)],
) -> StoreResult<Vec<bool>> {
    let ids: Vec<i64> = all.iter().filter(|c| c.create.is_none()).map(|c| c.instance_id).collect();
    let stored: std::collections::HashMap<i64, (i64, i64)> =
        sqlx::query_as::<_, (i64, i64, i64)>("SELECT id, revision, last_seq FROM instances WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(|(id, revision, last_seq)| (id, (revision, last_seq)))
            .collect();
    Ok(spans
        .iter()
        .map(|(span, _)| {
            all[span.clone()].iter().filter(|c| c.create.is_none()).any(|c| match stored.get(&c.instance_id) {
                Some(&(revision, last_seq)) => {
                    (c.state.is_some() && revision != c.base_revision) || last_seq != c.first_seq - 1
                }
                None => true,
            })
        })
        .collect())
}

async fn execute(pool: &PgPool, unit: &[Commit]) -> StoreResult<()> {
    if unit.is_empty() {
        return Ok(());
    }
    let mut q = sqlx::query(COMMIT_SQL);
    for part in commit_rows::<Json>(unit) {
        q = q.bind(part);
    }
    q.execute(pool).await.map_err(map_err)?;
    Ok(())
}
