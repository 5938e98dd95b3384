//! SQLite's commit path: one writer connection, group commit, and checkpoints kept off it.
//!
//! SQLite has one writer at a time, and a commit waits for the disk; so commits that arrive
//! while another is under way wait in a queue, and the writer task applies everything waiting
//! as one transaction. A lone commit, with nothing under way or waiting, runs on its caller's
//! task, saving two hand-overs between tasks. When a batch fails (one stale revision sinks the
//! transaction), each unit is retried on its own, so one bad change never sinks the others.
//!
//! Each caller encodes its own commit unit before it queues, on its own task: the rows of one
//! per instance (new, changed, timers ...) as SQLite's binary JSON (see
//! [`crate::store::rows::Jsonb`]), read by the `commit_batch` trigger, and its events (most of
//! the rows: a new case of the reference workflow writes one instance and ten events) as plain
//! values, bound to multi-row `INSERT`s of a few fixed sizes. SQLite's thread neither parses
//! text nor picks fields out of JSON for them: extracting each event's six fields with `->>`
//! was a quarter of the writer thread's time under `bench concurrent`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::map_err;
use crate::store::rows::{Jsonb, PARTS, commit_rows, event_rows, jsonb_array};
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

/// The statement for the rows of one per instance, a single statement (and so its own
/// transaction) when a transaction has no events.
const COMMIT_SQL: &str = "INSERT INTO commit_batch VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
/// The sizes of the events statements (six values a row: instance_id, seq, at, version, type,
/// body), powers of two: `1 << 0` to `1 << EVENT_SIZES - 1` rows.
const EVENT_SIZES: usize = 11;
/// Most events one statement inserts (6,144 bound values; SQLite allows 32,766).
const EVENTS_PER_STATEMENT: usize = 1 << (EVENT_SIZES - 1);

/// The SQL one command of a transaction with events runs: whether it begins the transaction
/// (and writes the rows of one per instance), whether it ends it, and room for `rows` events
/// (1 to [`EVENTS_PER_STATEMENT`]), rounded up to a power of two: rows past those bound are NULL
/// and skipped. So a transaction is one command whenever it has at most
/// [`EVENTS_PER_STATEMENT`] events, and the writer's connection prepares at most
/// `4 * EVENT_SIZES` texts, each once.
fn command_sql(first: bool, last: bool, rows: usize) -> &'static str {
    static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut texts = Vec::with_capacity(4 * EVENT_SIZES);
        for first in [false, true] {
            for last in [false, true] {
                for size in (0..EVENT_SIZES).map(|s| 1 << s) {
                    let mut sql = String::new();
                    if first {
                        sql.push_str("BEGIN IMMEDIATE; ");
                        sql.push_str(COMMIT_SQL);
                        sql.push_str("; ");
                    }
                    sql.push_str(
                        "INSERT INTO events (instance_id, seq, at, version, type, body) \
                         SELECT column1, column2, column3, column4, column5, column6 FROM (VALUES ",
                    );
                    for row in 0..size {
                        sql.push_str(if row == 0 { "(?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?)" });
                    }
                    sql.push_str(") WHERE column1 IS NOT NULL; ");
                    if last {
                        sql.push_str("COMMIT");
                    }
                    texts.push(sql);
                }
            }
        }
        texts
    });
    debug_assert!((1..=EVENTS_PER_STATEMENT).contains(&rows), "{rows} events in one statement");
    let size = rows.next_power_of_two().trailing_zeros() as usize;
    TEXTS[(usize::from(first) * 2 + usize::from(last)) * EVENT_SIZES + size].as_str()
}

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

/// A commit unit's rows, encoded by its caller: each part's elements without the array's
/// header (`events` empty), and the events as the values to bind.
struct Encoded {
    parts: [Vec<u8>; PARTS],
    events: Vec<EventRow>,
}

/// One row of `events`.
struct EventRow {
    instance_id: i64,
    seq: i64,
    at: i64,
    version: i64,
    kind: &'static str,
    body: String,
}

impl Encoded {
    fn new(unit: &[Commit]) -> Encoded {
        let events = event_rows(unit)
            .map(|(instance_id, seq, at, version, kind, body)| EventRow {
                instance_id,
                seq,
                at,
                version,
                kind,
                body: serde_json::to_string(body.0).expect("events serialise"),
            })
            .collect();
        Encoded { parts: commit_rows::<Jsonb>(unit), events }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.parts.iter().all(Vec::is_empty)
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
        let bytes = self.unit.parts.iter().map(Vec::len).sum::<usize>();
        f.debug_struct("Request").field("bytes", &bytes).field("events", &self.unit.events.len()).finish()
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

    /// Applies `units` as one transaction on the target: each part of the rows of one per
    /// instance is the units' rows appended under one array header; the events follow, bound
    /// to statements of [`command_sql`], in as few commands as they fit.
    async fn apply(&self, target: &mut Target, units: &[&Encoded]) -> StoreResult<()> {
        if units.iter().all(|u| u.is_empty()) {
            return Ok(()); // barriers only: nothing to write
        }
        let started = Instant::now();
        let result = match target {
            Target::Pool(pool) => match pool.acquire().await {
                Ok(mut conn) => transaction(&mut conn, units).await,
                Err(e) => Err(e),
            },
            Target::Own(conn) => {
                let result = transaction(self.connected(conn).await?, units).await;
                forget_if_broken(conn, &result);
                result
            }
        };
        self.stats.record(units.len(), started.elapsed());
        match result {
            Ok(()) => {
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

/// Writes `units` in one transaction on `conn`: a single statement when they have no events;
/// else commands of [`command_sql`], the first beginning the transaction, the last committing
/// it. After a failure the transaction is rolled back, so the connection is left as it was.
async fn transaction(conn: &mut SqliteConnection, units: &[&Encoded]) -> Result<(), sqlx::Error> {
    let mut parts =
        Some(std::array::from_fn::<_, PARTS, _>(|part| jsonb_array(units.iter().map(|u| u.parts[part].as_slice()))));
    let total: usize = units.iter().map(|u| u.events.len()).sum();
    let mut events = units.iter().flat_map(|u| &u.events);
    let mut left = total;
    loop {
        let rows = left.min(EVENTS_PER_STATEMENT);
        left -= rows;
        let last = left == 0;
        let sql = if total == 0 { COMMIT_SQL } else { command_sql(parts.is_some(), last, rows) };
        let mut query = sqlx::query(sql);
        if let Some(parts) = parts.take() {
            for part in parts {
                query = query.bind(part);
            }
        }
        for e in events.by_ref().take(rows) {
            query = query.bind(e.instance_id).bind(e.seq).bind(e.at).bind(e.version).bind(e.kind).bind(e.body.as_str());
        }
        if let Err(e) = query.execute(&mut *conn).await {
            if total > 0 {
                // Nothing to roll back when the transaction did not begin; then this fails too.
                let _ = conn.execute("ROLLBACK").await;
            }
            return Err(e);
        }
        if last {
            return Ok(());
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
