//! SQLite's commit path: one writer connection on a thread of its own, group commit, and
//! checkpoints kept off it.
//!
//! SQLite has one writer at a time, and a commit waits for the disk; so commits that arrive
//! while another is under way wait in a queue, and the writer applies everything waiting as one
//! transaction. When a batch fails (one stale revision sinks the transaction), each unit is
//! retried on its own, so one bad change never sinks the others.
//!
//! The writer of a database file is a thread of its own holding its own connection
//! ([`rusqlite`], over the same SQLite that sqlx links): it takes what waits in its queue, runs
//! prepared statements with their values bound, and answers each caller once. Through sqlx's
//! connection, a commit was a hand-over to sqlx's worker thread and one answer back per
//! statement (four a commit), each waking the caller's task: one commit at a time, the process
//! switched context 16 times per commit and spent more time in the kernel than in SQLite.
//! Everything else happens on the callers' own tasks before they queue.
//!
//! Each caller encodes its own commit unit: the rows of one per instance (new, changed, timers
//! ...) as SQLite's binary JSON (see [`crate::store::rows::Jsonb`]), read by the `commit_batch`
//! trigger, and its events (most of the rows: a new case of the reference workflow writes one
//! instance and ten events) as plain values, bound to multi-row `INSERT`s of a few fixed sizes.
//! The writer neither parses text nor picks fields out of JSON for them: extracting each
//! event's six fields with `->>` was a quarter of the writer's time under `bench concurrent`.
//!
//! An in-memory database (scenario rehearsals, tests) exists only in its pool's one connection,
//! so its commits go through sqlx on that connection, one at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, OpenFlags};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, oneshot};

use super::{BUSY_TIMEOUT, FileOptions, map_err};
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
/// The next number of a counter, in a transaction of its own.
const NUMBER_SQL: &str = "INSERT INTO counters (name, value) VALUES (?, 1) \
                          ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value";
/// The sizes of the events statements (six values a row: instance_id, seq, at, version, type,
/// body), powers of two: `1 << 0` to `1 << EVENT_SIZES - 1` rows.
const EVENT_SIZES: usize = 11;
/// Most events one statement inserts (6,144 bound values; SQLite allows 32,766).
const EVENTS_PER_STATEMENT: usize = 1 << (EVENT_SIZES - 1);

/// The statement that inserts `rows` events (1 to [`EVENTS_PER_STATEMENT`]), rounded up to a
/// power of two: rows past those bound are NULL and skipped. So a connection prepares at most
/// [`EVENT_SIZES`] of them, each once.
fn events_sql(rows: usize) -> &'static str {
    static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        (0..EVENT_SIZES)
            .map(|s| {
                let mut sql = String::from(
                    "INSERT INTO events (instance_id, seq, at, version, type, body) \
                     SELECT column1, column2, column3, column4, column5, column6 FROM (VALUES ",
                );
                for row in 0..1 << s {
                    sql.push_str(if row == 0 { "(?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?)" });
                }
                sql.push_str(") WHERE column1 IS NOT NULL");
                sql
            })
            .collect()
    });
    debug_assert!((1..=EVENTS_PER_STATEMENT).contains(&rows), "{rows} events in one statement");
    TEXTS[rows.next_power_of_two().trailing_zeros() as usize].as_str()
}

/// The SQL one command of an in-memory transaction with events runs through sqlx: whether it
/// begins the transaction (and writes the rows of one per instance), whether it ends it, and the
/// events statement for `rows` events. Each statement of a command is a hand-over to sqlx's
/// worker thread and back, so a transaction is one command whenever it has at most
/// [`EVENTS_PER_STATEMENT`] events.
fn command_sql(first: bool, last: bool, rows: usize) -> &'static str {
    static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
        let mut texts = Vec::with_capacity(4 * EVENT_SIZES);
        for first in [false, true] {
            for last in [false, true] {
                for size in (0..EVENT_SIZES).map(|s| 1 << s) {
                    let begin = if first { format!("BEGIN IMMEDIATE; {COMMIT_SQL}; ") } else { String::new() };
                    let end = if last { "; COMMIT" } else { "" };
                    texts.push(format!("{begin}{}{end}", events_sql(size)));
                }
            }
        }
        texts
    });
    let size = rows.next_power_of_two().trailing_zeros() as usize;
    TEXTS[(usize::from(first) * 2 + usize::from(last)) * EVENT_SIZES + size].as_str()
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

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = self.parts.iter().map(Vec::len).sum::<usize>();
        f.debug_struct("Encoded").field("bytes", &bytes).field("events", &self.events.len()).finish()
    }
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

/// The units' rows of one per instance, each part the units' elements under one array header.
fn joined_parts(units: &[&Encoded]) -> [Option<Vec<u8>>; PARTS] {
    std::array::from_fn(|part| jsonb_array(units.iter().map(|u| u.parts[part].as_slice())))
}

/// A commit unit waiting for its transaction, and where its caller waits for the outcome.
type Waiting = (Box<Encoded>, oneshot::Sender<StoreResult<()>>);

/// What the writer thread is asked to do, in the order asked.
#[derive(Debug)]
enum Request {
    Commit { unit: Box<Encoded>, done: oneshot::Sender<StoreResult<()>> },
    Number { counter: String, done: oneshot::Sender<StoreResult<i64>> },
    Close { done: oneshot::Sender<()> },
}

/// Where commits are executed.
#[derive(Debug)]
enum Lane {
    /// The writer thread of a database file, fed by this queue. Its connection is its own, so
    /// that its page cache stays valid from one commit to the next (a connection whose cache
    /// another connection's write made stale re-reads every page it touches).
    Thread(mpsc::Sender<Request>),
    /// The pool's one connection of an in-memory database (the database exists only there).
    /// Each caller adds its unit to `waiting`, then takes its turn; whoever has the turn
    /// commits everything waiting as one transaction, so commits that wait together share one.
    Pool { pool: SqlitePool, waiting: std::sync::Mutex<Vec<Waiting>>, turn: Arc<Mutex<()>> },
}

/// What the writer counts, shared with its thread.
#[derive(Debug)]
struct Counts {
    /// Commits so far; the checkpointer runs when it has moved.
    commits: AtomicU64,
    stats: CommitStats,
}

impl Counts {
    /// Records a transaction of `units` that began at `started`, and says a stale revision in
    /// the user's terms.
    fn record(&self, units: usize, started: Instant, result: StoreResult<()>) -> StoreResult<()> {
        self.stats.record(units, started.elapsed());
        match result {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(StoreError::Conflict(m)) if m.contains("instances.revision") => {
                Err(StoreError::Conflict("an instance changed since it was read".into()))
            }
            Err(e) => Err(e),
        }
    }
}

/// The commit path of one SQLite database.
#[derive(Debug)]
pub(super) struct Writer {
    lane: Lane,
    counts: Arc<Counts>,
}

fn closing() -> StoreError {
    StoreError::Unavailable("the store is closing".into())
}

impl Writer {
    /// Starts the writer (for a file, its thread and the checkpointer). Both end when the writer
    /// is dropped or closed.
    pub(super) fn start(file: Option<FileOptions>, pool: SqlitePool) -> StoreResult<Arc<Writer>> {
        // An in-memory database rehearses scenarios: its commits are not the server's.
        let counts = Arc::new(Counts {
            commits: AtomicU64::new(0),
            stats: CommitStats { observed: file.is_some(), ..CommitStats::default() },
        });
        let Some(file) = file else {
            let lane = Lane::Pool { pool, waiting: std::sync::Mutex::default(), turn: Arc::default() };
            return Ok(Arc::new(Writer { lane, counts }));
        };
        let (queue, requests) = mpsc::channel();
        let checkpoints = file.sqlx();
        std::thread::Builder::new()
            .name("sqlite-writer".into()) // short enough for Linux to show whole (15 bytes)
            .spawn({
                let counts = counts.clone();
                move || run(&file, &requests, &counts)
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        let writer = Arc::new(Writer { lane: Lane::Thread(queue), counts });
        tokio::spawn(checkpointer(Arc::downgrade(&writer), checkpoints));
        Ok(writer)
    }

    pub(super) fn stats(&self) -> &CommitStats {
        &self.counts.stats
    }

    /// Commits one unit; returns once it is durable (or failed, with nothing kept). An empty
    /// unit is a barrier: it returns once every commit asked for before it has been made.
    pub(super) async fn commit(self: &Arc<Self>, unit: &[Commit]) -> StoreResult<()> {
        let unit = Encoded::new(unit);
        match &self.lane {
            Lane::Thread(queue) => {
                let (done, answer) = oneshot::channel();
                queue.send(Request::Commit { unit: Box::new(unit), done }).map_err(|_| closing())?;
                answer.await.map_err(|_| closing())?
            }
            Lane::Pool { pool, waiting, turn } => {
                let (done, answer) = oneshot::channel();
                waiting.lock().expect("never poisoned").push((Box::new(unit), done));
                let turn = turn.clone().lock_owned().await;
                let batch = std::mem::take(&mut *waiting.lock().expect("never poisoned"));
                if !batch.is_empty() {
                    // On a task of its own, holding the turn: should this caller leave, the
                    // others in the batch still get their answers, and nobody passes them.
                    let (writer, pool) = (self.clone(), pool.clone());
                    tokio::spawn(async move {
                        writer.pool_flush(&pool, batch).await;
                        drop(turn);
                    });
                }
                answer.await.map_err(|_| closing())?
            }
        }
    }

    /// Commits `batch` on an in-memory database as one transaction and answers its callers;
    /// when that fails, each unit on its own.
    async fn pool_flush(&self, pool: &SqlitePool, batch: Vec<Waiting>) {
        let result = self.pool_apply(pool, &batch.iter().map(|(u, _)| &**u).collect::<Vec<_>>()).await;
        match result {
            Ok(()) => batch.into_iter().for_each(|(_, done)| drop(done.send(Ok(())))),
            Err(e) if batch.len() == 1 => batch.into_iter().for_each(|(_, done)| drop(done.send(Err(e.clone())))),
            Err(_) => {
                for (unit, done) in batch {
                    let _ = done.send(self.pool_apply(pool, &[&unit]).await);
                }
            }
        }
    }

    async fn pool_apply(&self, pool: &SqlitePool, units: &[&Encoded]) -> StoreResult<()> {
        if units.iter().all(|u| u.is_empty()) {
            return Ok(()); // barriers only: nothing to write
        }
        let started = Instant::now();
        let result = match pool.acquire().await {
            Ok(mut conn) => pool_transaction(&mut conn, units).await,
            Err(e) => Err(e),
        };
        self.counts.record(units.len(), started, result.map_err(map_err))
    }

    /// The next number of `counter`, counted on the writer's connection, one transaction of its
    /// own between batches. On a connection of the pool it would wait for the writer's lock
    /// (SQLite's busy handler sleeps a millisecond and more at a time) and leave the writer's
    /// page cache stale, so that the writer's next commit read again every page it touched.
    pub(super) async fn next_number(&self, counter: &str) -> StoreResult<i64> {
        let result = match &self.lane {
            Lane::Thread(queue) => {
                let (done, answer) = oneshot::channel();
                queue.send(Request::Number { counter: counter.to_owned(), done }).map_err(|_| closing())?;
                return answer.await.map_err(|_| closing())?;
            }
            Lane::Pool { pool, turn, .. } => {
                let _turn = turn.lock().await;
                sqlx::query_scalar(NUMBER_SQL).bind(counter).fetch_one(pool).await.map_err(map_err)
            }
        };
        if result.is_ok() {
            self.counts.commits.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Ends the writer thread once everything asked before has been done, closing its
    /// connection; later commits are refused.
    pub(super) async fn close(&self) {
        if let Lane::Thread(queue) = &self.lane {
            let (done, answer) = oneshot::channel();
            if queue.send(Request::Close { done }).is_ok() {
                let _ = answer.await;
            }
        }
    }
}

/// The writer thread: takes whatever waits, up to [`MAX_BATCH`] commit units, and commits it as
/// one transaction; numbers and closing come in their turn.
fn run(file: &FileOptions, requests: &mpsc::Receiver<Request>, counts: &Counts) {
    let mut thread = WriterThread { file, counts, conn: None, batch: Vec::with_capacity(MAX_BATCH) };
    while let Ok(first) = requests.recv() {
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Commit { unit, done } => thread.batch.push((unit, done)),
                Request::Number { counter, done } => {
                    thread.flush();
                    let _ = done.send(thread.next_number(&counter));
                }
                Request::Close { done } => {
                    thread.flush();
                    if let Some(conn) = thread.conn.take()
                        && let Err((_, e)) = conn.close()
                    {
                        tracing::debug!(error = %e, "closing the writer's connection");
                    }
                    let _ = done.send(());
                    return;
                }
            }
            next = if thread.batch.len() < MAX_BATCH { requests.try_recv().ok() } else { None };
        }
        thread.flush();
    }
}

/// The writer thread's state between requests.
struct WriterThread<'a> {
    file: &'a FileOptions,
    counts: &'a Counts,
    /// `None` after a failure that may have left it unusable; the next commit opens it again.
    conn: Option<rusqlite::Connection>,
    /// Commit units taken from the queue and not yet committed.
    batch: Vec<Waiting>,
}

impl WriterThread<'_> {
    /// Commits the batch as one transaction and answers its callers. When that fails, each unit
    /// is committed on its own.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let units: Vec<&Encoded> = batch.iter().map(|(u, _)| &**u).collect();
        let result = self.apply(&units);
        drop(units);
        match result {
            Ok(()) => batch.into_iter().for_each(|(_, done)| drop(done.send(Ok(())))),
            Err(e) if batch.len() == 1 => batch.into_iter().for_each(|(_, done)| drop(done.send(Err(e.clone())))),
            Err(e) => {
                tracing::debug!(error = %e, units = batch.len(), "batch commit failed; retrying unit by unit");
                for (unit, done) in batch {
                    let _ = done.send(self.apply(&[&unit]));
                }
            }
        }
        self.batch = Vec::with_capacity(MAX_BATCH);
    }

    /// Applies `units` as one transaction.
    fn apply(&mut self, units: &[&Encoded]) -> StoreResult<()> {
        if units.iter().all(|u| u.is_empty()) {
            return Ok(()); // barriers only: nothing to write
        }
        let started = Instant::now();
        let result = self.on_connection(|conn| transaction(conn, units));
        self.counts.record(units.len(), started, result)
    }

    fn next_number(&mut self, counter: &str) -> StoreResult<i64> {
        let result = self.on_connection(|conn| conn.prepare_cached(NUMBER_SQL)?.query_row([counter], |r| r.get(0)));
        if result.is_ok() {
            self.counts.commits.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs `work` on the writer's connection, opened if it is not. After a failure other than
    /// a broken constraint (a stale revision), or with a transaction left open, the connection
    /// is dropped: the next request opens it again.
    fn on_connection<T>(
        &mut self,
        work: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        if self.conn.is_none() {
            self.conn = Some(open(self.file).map_err(store_error)?);
        }
        let conn = self.conn.as_mut().expect("opened above");
        let result = work(conn);
        if let Err(e) = &result
            && (e.sqlite_error_code() != Some(ErrorCode::ConstraintViolation) || !conn.is_autocommit())
        {
            self.conn = None;
        }
        result.map_err(store_error)
    }
}

/// Opens the writer's connection with the settings of the pool's.
fn open(file: &FileOptions) -> rusqlite::Result<rusqlite::Connection> {
    let access = if file.read_only { OpenFlags::SQLITE_OPEN_READ_ONLY } else { OpenFlags::SQLITE_OPEN_READ_WRITE };
    let conn = rusqlite::Connection::open_with_flags(&file.path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // COMMIT_SQL, NUMBER_SQL, BEGIN, COMMIT, ROLLBACK and the events statements.
    conn.set_prepared_statement_cache_capacity(EVENT_SIZES + 5);
    let mut pragmas = String::new();
    for (key, value) in file.pragmas().chain([("wal_autocheckpoint", &*WRITER_CHECKPOINT_BACKSTOP.to_string())]) {
        pragmas.push_str(&format!("PRAGMA {key} = {value}; "));
    }
    conn.execute_batch(&pragmas)?;
    Ok(conn)
}

/// SQLite's error as the store's: what the caller does next.
fn store_error(e: rusqlite::Error) -> StoreError {
    let message = match &e {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    };
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen,
        ) => StoreError::Unavailable(message),
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict(message),
        _ => StoreError::Fatal(message),
    }
}

/// Writes `units` in one transaction on the writer's connection: a single statement when they
/// have no events; else `BEGIN IMMEDIATE`, the rows of one per instance, the events in
/// statements of [`events_sql`], `COMMIT`. After a failure the transaction is rolled back.
fn transaction(conn: &mut rusqlite::Connection, units: &[&Encoded]) -> rusqlite::Result<()> {
    let parts = joined_parts(units);
    let total: usize = units.iter().map(|u| u.events.len()).sum();
    if total == 0 {
        return insert_parts(conn, &parts);
    }
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = (|| {
        insert_parts(conn, &parts)?;
        let mut events = units.iter().flat_map(|u| &u.events);
        let mut left = total;
        while left > 0 {
            let rows = left.min(EVENTS_PER_STATEMENT);
            left -= rows;
            let mut statement = conn.prepare_cached(events_sql(rows))?;
            for (row, e) in events.by_ref().take(rows).enumerate() {
                let at = row * 6;
                statement.raw_bind_parameter(at + 1, e.instance_id)?;
                statement.raw_bind_parameter(at + 2, e.seq)?;
                statement.raw_bind_parameter(at + 3, e.at)?;
                statement.raw_bind_parameter(at + 4, e.version)?;
                statement.raw_bind_parameter(at + 5, e.kind)?;
                statement.raw_bind_parameter(at + 6, e.body.as_str())?;
            }
            statement.raw_execute()?;
        }
        conn.prepare_cached("COMMIT")?.execute([])
    })();
    if let Err(e) = result {
        if !conn.is_autocommit() {
            // Should this fail too, the transaction stays open and the caller drops the connection.
            let _ = conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
        }
        return Err(e);
    }
    Ok(())
}

/// The `commit_batch` statement with the rows of one per instance.
fn insert_parts(conn: &rusqlite::Connection, parts: &[Option<Vec<u8>>; PARTS]) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(COMMIT_SQL)?;
    for (i, part) in parts.iter().enumerate() {
        statement.raw_bind_parameter(i + 1, part.as_deref())?;
    }
    statement.raw_execute().map(drop)
}

/// Writes `units` in one transaction on an in-memory database's connection: a single statement
/// when they have no events; else commands of [`command_sql`], the first beginning the
/// transaction, the last committing it. After a failure the transaction is rolled back, so the
/// connection is left as it was.
async fn pool_transaction(conn: &mut SqliteConnection, units: &[&Encoded]) -> Result<(), sqlx::Error> {
    let mut parts = Some(joined_parts(units));
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

/// Copies committed pages from the WAL into the database file, on a connection of its own, so
/// that commits do not wait for it: left to itself, the committing connection checkpoints every
/// 1,000 pages (4 MB), writing and syncing them while every caller in its batch waits.
async fn checkpointer(writer: Weak<Writer>, options: sqlx::sqlite::SqliteConnectOptions) {
    let mut conn: Option<SqliteConnection> = None;
    let mut seen = 0;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(w) = writer.upgrade() else { return };
        let commits = w.counts.commits.load(Ordering::Relaxed);
        drop(w);
        if commits == seen {
            continue;
        }
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
        let writer = super::Writer::start(None, pool).unwrap();
        let super::Lane::Pool { turn, .. } = &writer.lane else { unreachable!("an in-memory writer") };
        let held = turn.lock().await; // a commit under way
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

    /// The writer thread answers in the order asked: a barrier asked while a write waits for
    /// SQLite's lock (held here by another connection) returns only after that write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_thread_answers_in_the_order_asked() {
        use sqlx::Executor;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let store =
            super::super::SqliteStore::open_file(&path, &crate::store::StoreOptions::new(""), |o| o).await.unwrap();
        let writer = store.inner.writer.clone();
        let mut other = SqliteConnection::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap(); // SQLite's write lock, held
        // Asked first: one poll sends the request.
        let mut number = std::pin::pin!(writer.next_number("n"));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(number.as_mut().poll(&mut cx).is_pending(), "a write waits for the lock");
        let mut barrier = tokio::spawn({
            let w = writer.clone();
            async move { w.commit(&[]).await }
        });
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut barrier).await;
        assert!(early.is_err(), "the barrier passed a write still waiting for the lock");
        other.execute("COMMIT").await.unwrap();
        assert_eq!(number.await.unwrap(), 1);
        barrier.await.unwrap().unwrap();
        assert_eq!(writer.next_number("n").await.unwrap(), 2);
        writer.close().await;
        let err = writer.commit(&[]).await.unwrap_err();
        assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "{err:?}");
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
