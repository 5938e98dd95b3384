//! SQLite's commit path: one writer connection, group commit, and checkpoints kept off it.
//!
//! SQLite has one writer at a time, and a commit waits for the disk; so commits that arrive
//! while another is under way wait in a queue, and the writer task applies everything waiting
//! as one statement (`INSERT INTO commit_batch`, one transaction). A lone commit, with nothing
//! under way or waiting, runs on its caller's task, saving two hand-overs between tasks.
//! When a batch fails (one stale revision sinks the statement), each unit is retried on its own,
//! so one bad change never sinks the others.
//!
//! Each caller encodes its own commit unit's rows (SQLite's binary JSON, see
//! [`crate::store::rows::Jsonb`]) before it queues, on its own task: what reaches the writer is
//! bytes to append and bind, and SQLite's thread reads them without parsing any text.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::map_err;
use crate::store::rows::{Jsonb, PARTS, commit_rows, jsonb_array};
use crate::store::{Commit, CommitStats, StoreError, StoreResult};

/// WAL pages after which the writer checkpoints by itself, should the checkpointer fall behind.
const WRITER_CHECKPOINT_BACKSTOP: u32 = 10_000;
/// How often the checkpointer looks for new commits, and runs when there are. Every 250 ms,
/// each checkpoint had so much to copy that commits queued behind it: HTTP submit p99 29 ms under
/// `--sync normal` and up to 37 ms under `full`, against 8 to 12 ms every 50 ms; `reference`
/// (one commit at a time, `full`) is about 4% slower for it (docs/benchmarks.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// Most commit units in one transaction.
const MAX_BATCH: usize = 1024;

const COMMIT_SQL: &str = "INSERT INTO commit_batch VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Where commits are executed.
#[derive(Debug)]
enum Target {
    /// A connection of the writer's own, so that its page cache stays valid from one commit
    /// to the next (a connection whose cache another connection's write made stale re-reads
    /// every page it touches). `None` after a failure; the next commit reconnects.
    Own(Option<SqliteConnection>),
    /// The pool's one connection of an in-memory database (the database exists only there).
    Pool(SqlitePool),
}

/// A commit unit's rows, encoded by its caller: each part's elements without the array's header.
struct Encoded([Vec<u8>; PARTS]);

impl Encoded {
    fn new(unit: &[Commit]) -> Encoded {
        Encoded(commit_rows::<Jsonb>(unit))
    }
}

struct Request {
    unit: Encoded,
    done: oneshot::Sender<StoreResult<()>>,
}

/// The commit path of one SQLite database.
#[derive(Debug)]
pub(super) struct Writer {
    /// How to connect to the database file (`None` for an in-memory database).
    file: Option<SqliteConnectOptions>,
    /// Held by whoever is committing: the writer task, or a caller committing alone.
    target: Mutex<Target>,
    queue: mpsc::UnboundedSender<Request>,
    /// Requests sent to the writer task and not yet taken by it.
    queued: AtomicUsize,
    /// Commits so far; the checkpointer runs when it has moved.
    commits: AtomicU64,
    pub(super) stats: CommitStats,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("bytes", &self.unit.0.iter().map(Vec::len).sum::<usize>()).finish()
    }
}

impl Writer {
    /// Starts the writer task (and, for a file, the checkpointer). Both end when the writer is
    /// dropped.
    pub(super) fn start(file: Option<SqliteConnectOptions>, pool: SqlitePool) -> Arc<Writer> {
        let (tx, rx) = mpsc::unbounded_channel();
        let has_file = file.is_some();
        let target = if has_file { Target::Own(None) } else { Target::Pool(pool) };
        let writer = Arc::new(Writer {
            file,
            target: Mutex::new(target),
            queue: tx,
            queued: AtomicUsize::new(0),
            commits: AtomicU64::new(0),
            // An in-memory database rehearses scenarios: its commits are not the server's.
            stats: CommitStats { observed: has_file, ..CommitStats::default() },
        });
        tokio::spawn(writer_loop(Arc::downgrade(&writer), rx));
        if has_file {
            tokio::spawn(checkpointer(Arc::downgrade(&writer)));
        }
        writer
    }

    /// Commits one unit; returns once it is durable (or failed, with nothing kept). An empty
    /// unit is a barrier: it returns once every commit queued before it has been made.
    pub(super) async fn commit(&self, unit: &[Commit]) -> StoreResult<()> {
        let unit = Encoded::new(unit);
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(mut target) = self.target.try_lock()
        {
            return self.apply(&mut target, &[&unit]).await;
        }
        let (done, answer) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(Request { unit, done }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable("the store is closing".into()));
        }
        answer.await.map_err(|_| StoreError::Unavailable("the store is closing".into()))?
    }

    /// Applies `units` as one statement on the target: each part is the units' rows appended
    /// under one array header.
    async fn apply(&self, target: &mut Target, units: &[&Encoded]) -> StoreResult<()> {
        if units.iter().all(|u| u.0.iter().all(Vec::is_empty)) {
            return Ok(()); // barriers only: nothing to write
        }
        let started = Instant::now();
        let mut query = sqlx::query(COMMIT_SQL);
        for part in 0..PARTS {
            query = query.bind(jsonb_array(units.iter().map(|u| u.0[part].as_slice())));
        }
        let result = match target {
            Target::Pool(pool) => query.execute(&*pool).await,
            Target::Own(conn) => {
                let result = query.execute(self.connected(conn).await?).await;
                forget_if_broken(conn, &result);
                result
            }
        };
        self.stats.record(units.len(), started.elapsed());
        match result {
            Ok(_) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => Err(match map_err(e) {
                StoreError::Conflict(m) if m.contains("instances.revision") => {
                    StoreError::Conflict("an instance changed since it was read".into())
                }
                other => other,
            }),
        }
    }

    /// The next number of `counter`, counted on the writer's connection, one transaction of its
    /// own between batches. On a connection of the pool it would wait for the writer's lock
    /// (SQLite's busy handler sleeps a millisecond and more at a time) and leave the writer's
    /// page cache stale, so that the writer's next commit read again every page it touched.
    pub(super) async fn next_number(&self, counter: &str) -> StoreResult<i64> {
        const SQL: &str = "INSERT INTO counters (name, value) VALUES (?, 1) \
                           ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value";
        let mut target = self.target.lock().await;
        let query = sqlx::query_scalar(SQL).bind(counter);
        let result = match &mut *target {
            Target::Pool(pool) => query.fetch_one(&*pool).await,
            Target::Own(conn) => {
                let result = query.fetch_one(self.connected(conn).await?).await;
                forget_if_broken(conn, &result);
                result
            }
        };
        if result.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(map_err)
    }

    /// The writer's own connection, opened if it is not.
    async fn connected<'c>(&self, conn: &'c mut Option<SqliteConnection>) -> StoreResult<&'c mut SqliteConnection> {
        if conn.is_none() {
            let options = self.file.as_ref().expect("a file database has its options");
            *conn = Some(connect(options).await.map_err(map_err)?);
        }
        Ok(conn.as_mut().expect("connected above"))
    }

    /// Closes the writer's own connection.
    pub(super) async fn close(&self) {
        if let Target::Own(conn) = &mut *self.target.lock().await
            && let Some(c) = conn.take()
        {
            let _ = c.close().await;
        }
    }
}

/// Drops the writer's connection after an error that may have left it unusable; the next
/// commit connects again.
fn forget_if_broken<T>(conn: &mut Option<SqliteConnection>, result: &Result<T, sqlx::Error>) {
    if let Err(sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::Protocol(_)) = result {
        *conn = None;
    }
}

async fn connect(options: &SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    let mut conn = SqliteConnection::connect_with(options).await?;
    conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_BACKSTOP}"))).await?;
    Ok(conn)
}

/// Takes whatever is waiting, up to [`MAX_BATCH`] units, and commits it as one statement.
async fn writer_loop(writer: Weak<Writer>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut requests: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        let Some(w) = writer.upgrade() else { return };
        let mut target = w.target.lock().await;
        requests.push(first);
        while requests.len() < MAX_BATCH
            && let Ok(r) = rx.try_recv()
        {
            requests.push(r);
        }
        w.queued.fetch_sub(requests.len(), Ordering::AcqRel);
        let units: Vec<&Encoded> = requests.iter().map(|r| &r.unit).collect();
        let result = w.apply(&mut target, &units).await;
        drop(units);
        match result {
            Ok(()) => {
                for r in requests.drain(..) {
                    let _ = r.done.send(Ok(()));
                }
            }
            Err(e) if requests.len() == 1 => {
                if let Some(r) = requests.pop() {
                    let _ = r.done.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, units = requests.len(), "batch commit failed; retrying unit by unit");
                for r in requests.drain(..) {
                    let result = w.apply(&mut target, &[&r.unit]).await;
                    let _ = r.done.send(result);
                }
            }
        }
    }
}

/// Copies committed pages from the WAL into the database file, on a connection of its own, so
/// that commits do not wait for it: left to itself, the committing connection checkpoints every
/// 1,000 pages (4 MB), writing and syncing them while every caller in its batch waits.
async fn checkpointer(writer: Weak<Writer>) {
    let mut conn: Option<SqliteConnection> = None;
    let mut seen = 0;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(w) = writer.upgrade() else { return };
        let commits = w.commits.load(Ordering::Relaxed);
        if commits == seen {
            continue;
        }
        let Some(options) = w.file.clone() else { return };
        drop(w);
        if conn.is_none() {
            conn = SqliteConnection::connect_with(&options).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            Ok(_) => seen = commits,
            Err(e) => {
                tracing::debug!(error = %e, "checkpoint failed; retrying later");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use serde_json::Value;

    use crate::store::rows::{Doc, Jsonb, RowEncoding, json_rows, jsonb_array};

    type Row = (i64, String, Option<&'static str>, Doc<Value>);

    /// An empty unit is the store's barrier: while a commit holds the writer, it waits, and so
    /// does everything queued behind it (a caller that left before its commit returned is
    /// waited for this way before its case is read again).
    #[tokio::test]
    async fn an_empty_unit_waits_for_the_commit_under_way() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        let writer = super::Writer::start(None, pool);
        let held = writer.target.lock().await; // a commit under way
        let queued = tokio::spawn({
            let w = writer.clone();
            async move { w.commit(&[]).await }
        });
        let barrier = tokio::spawn({
            let w = writer.clone();
            async move { w.commit(&[]).await }
        });
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!queued.is_finished() && !barrier.is_finished(), "nothing passes a commit under way");
        drop(held);
        queued.await.unwrap().unwrap();
        barrier.await.unwrap().unwrap();
    }

    fn rows(from: usize, to: usize) -> impl Iterator<Item = Row> + Clone {
        (from..to).map(|i| {
            (i as i64, format!("第{i}行 \"引号\" \\ \t"), None, Doc(serde_json::json!({"意见": "同意\n", "n": i})))
        })
    }

    /// What SQLite reads from the encoded rows is what JSON text says, at every header size
    /// (payloads of up to 11 bytes, one, two and four size bytes), and rows encoded apart and
    /// joined read as one array.
    #[tokio::test]
    async fn sqlite_reads_jsonb_rows_as_written() {
        let mut db = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        assert_eq!(jsonb_array([[].as_slice()].into_iter()), None);
        let tiny = Jsonb::part(1, [(1,)].into_iter());
        let blob = jsonb_array([tiny.as_slice()].into_iter());
        let text: String = sqlx::query_scalar("SELECT json(?)").bind(blob).fetch_one(&mut db).await.unwrap();
        assert_eq!(text, "[[1]]");
        for n in [1, 3, 40, 5_000] {
            let (first, second) = (Jsonb::part(n, rows(0, n / 2)), Jsonb::part(n, rows(n / 2, n)));
            let blob = jsonb_array([first.as_slice(), second.as_slice()].into_iter()).unwrap();
            let expected = json_rows(n, rows(0, n)).unwrap();
            let text: String = sqlx::query_scalar("SELECT json(?)").bind(&blob).fetch_one(&mut db).await.unwrap();
            assert_eq!(text, expected, "{n} rows");
            // A document comes back with `->>` as its own JSON text, untouched.
            let last: (i64, String, Option<String>, String) = sqlx::query_as(
                "SELECT value->>0, value->>1, value->>2, value->>3 FROM jsonb_each(?) ORDER BY key DESC LIMIT 1",
            )
            .bind(&blob)
            .fetch_one(&mut db)
            .await
            .unwrap();
            let want = rows(n - 1, n).next().unwrap();
            assert_eq!(last, (want.0, want.1, None, serde_json::to_string(&want.3.0).unwrap()));
        }
    }
}
