//! PostgreSQL's commit path: group commit over a few connections.
//!
//! Every transaction waits for the WAL to reach the disk. Units that arrive while others are
//! under way wait in a queue; a dispatcher hands everything waiting (up to [`MAX_BATCH`] units)
//! to one `yishi_commit` call, with at most [`IN_FLIGHT`] calls under way at once, so that many
//! changes share one flush. A lone unit with nothing under way goes at once. When a batch
//! fails on a conflict (one stale revision, or a timer another node fired, sinks the
//! statement), each of its units is tried again on its own, so one bad change never sinks the
//! others.
//!
//! Each caller encodes its own unit's rows (JSON text) before it queues, on its own task: a
//! batch joins the units' arrays, so the dispatcher and the batch's task only append text.

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::map_err;
use crate::store::rows::{Json, PARTS, commit_rows};
use crate::store::{Commit, CommitStats, StoreError, StoreResult};

/// Most commit units in one transaction.
const MAX_BATCH: usize = 512;
/// Batches under way at once (each on a connection of its own).
const IN_FLIGHT: usize = 4;

const COMMIT_SQL: &str = "SELECT yishi_commit($1::jsonb, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, \
     $8::jsonb, $9::jsonb, $10::jsonb, $11::jsonb)";

/// The parts `yishi_commit` takes (every part of [`commit_rows`] but `moved`, which
/// PostgreSQL does not use).
const ARGS: usize = PARTS - 1;

/// A commit unit as its caller encoded it: each part a JSON array of rows (or `None`), and what
/// is needed to tell whether the unit went stale.
struct Encoded {
    parts: [Option<String>; ARGS],
    /// Per commit: the instance, whether it is new, whether it changes the state, the revision
    /// and the last event it was computed from.
    checks: Vec<Check>,
}

struct Check {
    instance_id: i64,
    create: bool,
    changes_state: bool,
    base_revision: i64,
    first_seq: i64,
}

impl Encoded {
    fn new(unit: &[Commit]) -> Encoded {
        let [parts @ .., moved] = commit_rows::<Json>(unit);
        debug_assert!(moved.is_none(), "PostgreSQL reads every change from the changed part");
        let checks = unit
            .iter()
            .map(|c| Check {
                instance_id: c.instance_id,
                create: c.create.is_some(),
                changes_state: c.state.is_some(),
                base_revision: c.base_revision,
                first_seq: c.first_seq,
            })
            .collect();
        Encoded { parts, checks }
    }
}

enum Request {
    Commit {
        unit: Box<Encoded>,
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
    pub(super) async fn commit(&self, unit: &[Commit]) -> StoreResult<()> {
        if unit.is_empty() {
            return Ok(());
        }
        let unit = Box::new(Encoded::new(unit));
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
async fn apply(pool: &PgPool, stats: &CommitStats, batch: Vec<(Box<Encoded>, oneshot::Sender<StoreResult<()>>)>) {
    let (units, dones): (Vec<Box<Encoded>>, Vec<_>) = batch.into_iter().unzip();
    let all: Vec<&Encoded> = units.iter().map(|u| &**u).collect();
    let started = Instant::now();
    match execute(pool, &all).await {
        Ok(n) => {
            stats.record(n, started.elapsed());
            for done in dones {
                let _ = done.send(Ok(()));
            }
        }
        Err(StoreError::Conflict(_)) if all.len() > 1 => {
            // Find the stale units by reading the revisions they were computed from (one
            // statement), fail them, and commit the rest together again; one by one only if
            // that still conflicts (a race, or a timer another node fired).
            let stale = match stale_units(pool, &all).await {
                Ok(stale) => stale,
                Err(e) => {
                    for done in dones {
                        let _ = done.send(Err(e.clone()));
                    }
                    return;
                }
            };
            let mut rest = Vec::new();
            for ((unit, done), stale) in all.into_iter().zip(dones).zip(stale) {
                if stale {
                    let _ =
                        done.send(Err(StoreError::Conflict("the case changed since this change was computed".into())));
                } else {
                    rest.push((unit, done));
                }
            }
            let retry: Vec<&Encoded> = rest.iter().map(|(unit, _)| *unit).collect();
            let started = Instant::now();
            if rest.len() > 1
                && let Ok(n) = execute(pool, &retry).await
            {
                stats.record(n, started.elapsed());
                for (_, done) in rest {
                    let _ = done.send(Ok(()));
                }
                return;
            }
            for (unit, done) in rest {
                let started = Instant::now();
                let result = execute(pool, &[unit]).await;
                if let Ok(n) = result {
                    stats.record(n, started.elapsed());
                }
                let _ = done.send(result.map(|_| ()));
            }
        }
        Err(e) => {
            for done in dones {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

/// For each unit, whether a case it changes is no longer at the revision (or the last event)
/// the change was computed from.
async fn stale_units(pool: &PgPool, units: &[&Encoded]) -> StoreResult<Vec<bool>> {
    let ids: Vec<i64> =
        units.iter().flat_map(|u| u.checks.iter()).filter(|c| !c.create).map(|c| c.instance_id).collect();
    let stored: std::collections::HashMap<i64, (i64, i64)> =
        sqlx::query_as::<_, (i64, i64, i64)>("SELECT id, revision, last_seq FROM instances WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await
            .map_err(map_err)?
            .into_iter()
            .map(|(id, revision, last_seq)| (id, (revision, last_seq)))
            .collect();
    Ok(units
        .iter()
        .map(|u| {
            u.checks.iter().filter(|c| !c.create).any(|c| match stored.get(&c.instance_id) {
                Some(&(revision, last_seq)) => {
                    (c.changes_state && revision != c.base_revision) || last_seq != c.first_seq - 1
                }
                None => true,
            })
        })
        .collect())
}

/// Applies `units` as one call of `yishi_commit`, each part the units' arrays joined; returns
/// how many commits it held.
async fn execute(pool: &PgPool, units: &[&Encoded]) -> StoreResult<usize> {
    let mut q = sqlx::query(COMMIT_SQL);
    for part in 0..ARGS {
        q = q.bind(join_arrays(units.iter().map(|u| u.parts[part].as_deref())));
    }
    q.execute(pool).await.map_err(map_err)?;
    Ok(units.iter().map(|u| u.checks.len()).sum())
}

/// JSON arrays joined into one (`[a,b]` and `[c]` make `[a,b,c]`), or `None` when there are none.
fn join_arrays<'a>(arrays: impl Iterator<Item = Option<&'a str>> + Clone) -> Option<String> {
    let size: usize = arrays.clone().flatten().map(str::len).sum();
    let mut out: Option<String> = None;
    for a in arrays.flatten() {
        let inner = &a[1..a.len() - 1];
        match &mut out {
            None => {
                let mut s = String::with_capacity(size);
                s.push('[');
                s.push_str(inner);
                out = Some(s);
            }
            Some(s) => {
                s.push(',');
                s.push_str(inner);
            }
        }
    }
    if let Some(s) = &mut out {
        s.push(']');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn arrays_join_into_one() {
        let join = |parts: &[Option<&str>]| super::join_arrays(parts.iter().copied());
        assert_eq!(join(&[None, None]), None);
        assert_eq!(
            join(&[Some("[[1,\"a\"]]"), None, Some("[[2,null],[3,{}]]")]).as_deref(),
            Some("[[1,\"a\"],[2,null],[3,{}]]")
        );
        let joined = join(&[Some("[1]"), Some("[[\"]\"]]")]).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&joined).unwrap(), serde_json::json!([1, ["]"]]));
    }
}
