//! SQLite's commit path: one writer connection, its thread and group commit, lone commits made
//! inline, and checkpoints kept off it.
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
//! Everything else happens on the callers' own tasks before they queue. A caller that finds
//! nothing pending does not queue: it takes the writer's connection and commits on its own
//! thread (tokio's `block_in_place`), so that a lone commit wakes no other thread (see
//! [`inline`]).
//!
//! Each caller encodes its own commit unit on its own task: the new instances and the events
//! (most of the rows: a new case of the reference workflow writes one instance and ten events)
//! as plain values, bound to multi-row `INSERT`s of a few fixed sizes, and the other parts
//! (changed instances, timers ...) as SQLite's binary JSON (see [`crate::store::rows::Jsonb`]),
//! one statement per part that has rows. The writer neither parses text nor picks fields out
//! of JSON for the bulk of the rows: extracting each event's six fields with `->>` was a
//! quarter of the writer's time under `bench concurrent`. The statements run directly, not as
//! the triggers of a view (one statement per batch saved hand-overs to sqlx's worker, which the
//! writer thread no longer makes; an `INSERT` into a view fills a temporary table and runs every
//! trigger's `WHEN`, about 40 µs of a lone commit).
//!
//! An in-memory database (scenario rehearsals, tests) exists only in its pool's one connection,
//! so its commits go through sqlx on that connection, the same statements as one command; its
//! callers combine, whoever takes the turn committing everything waiting as one transaction.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, OpenFlags};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, oneshot};

use super::{BUSY_TIMEOUT, FileOptions, map_err};
use crate::store::rows::{Jsonb, PARTS, commit_rows, created_rows, event_rows, jsonb_array};
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

/// The next number of a counter, in a transaction of its own.
const NUMBER_SQL: &str = "INSERT INTO counters (name, value) VALUES (?, 1) \
                          ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value";

// Where each part sits in what `commit_rows` returns (store/rows.rs).
const CHANGED: usize = 1;
const REFUSED: usize = 2;
const CLEAR_ALL: usize = 4;
const CLEAR_TOKEN: usize = 5;
const CLEAR_ONE: usize = 6;
const TIMERS: usize = 7;
const IDEMPOTENCY: usize = 8;
const OUTBOX: usize = 9;
const CONSUMED: usize = 10;
const MOVED: usize = 11;

/// The check that the timers a commit fires are still there: a trigger
/// (`migrations/sqlite/0011_commit_statements.sql`) for its `RAISE`. [instance_id, token, name]
const CONSUMED_SQL: &str = "INSERT INTO commit_consumed VALUES (?)";

/// The statements that write the parts SQLite reads as binary JSON (each part its one
/// parameter, the rows laid out as the comments say), in the order they run, after the fired
/// timers' check and the new instances; a part without rows runs nothing.
const PART_STATEMENTS: [(usize, &str); 9] = [
    // [key, instance_id, response, now, fingerprint]
    (
        IDEMPOTENCY,
        "INSERT INTO idempotency (key, instance_id, response, created_at, fingerprint) \
         SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(?)",
    ),
    // [instance_id, notice, now]
    (
        OUTBOX,
        "INSERT INTO outbox (instance_id, notice, next_at) \
         SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(?)",
    ),
    // Timers: deletes first, they may name the timers set. [instance_id]
    (CLEAR_ALL, "DELETE FROM timers WHERE instance_id IN (SELECT value FROM jsonb_each(?))"),
    // [instance_id, token]
    (
        CLEAR_TOKEN,
        "DELETE FROM timers WHERE (instance_id, token) IN (SELECT value->>'$[0]', value->>'$[1]' FROM jsonb_each(?))",
    ),
    // [instance_id, token, name]
    (
        CLEAR_ONE,
        "DELETE FROM timers WHERE (instance_id, token, name) IN \
         (SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]' FROM jsonb_each(?))",
    ),
    // [instance_id, token, name, step, due_at]
    (
        TIMERS,
        "INSERT OR REPLACE INTO timers (instance_id, token, name, step, due_at) \
         SELECT value->>'$[0]', value->>'$[1]', value->>'$[2]', value->>'$[3]', value->>'$[4]' FROM jsonb_each(?)",
    ),
    // Changed instances: [id, base_revision, status, outcome, active_steps, data, state,
    // last_seq, now, version]. A stale base revision sets `revision` to NULL: the NOT NULL
    // constraint then fails the statement, and with it the transaction.
    (
        CHANGED,
        "UPDATE instances \
         SET status = v.status, outcome = v.outcome, active_steps = v.active_steps, data = v.data, state = v.state, \
             revision = CASE WHEN instances.revision = v.base THEN instances.revision + 1 END, \
             last_seq = v.last_seq, updated_at = v.now, version = v.version \
         FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS base, value->>'$[2]' AS status, value->>'$[3]' AS outcome, \
                      value->>'$[4]' AS active_steps, value->>'$[5]' AS data, value->>'$[6]' AS state, \
                      value->>'$[7]' AS last_seq, value->>'$[8]' AS now, value->>'$[9]' AS version \
               FROM jsonb_each(?)) AS v \
         WHERE instances.id = v.id",
    ),
    // Refused actions record events only: [id, last_seq]
    (
        REFUSED,
        "UPDATE instances SET last_seq = v.last_seq \
         FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS last_seq FROM jsonb_each(?)) AS v \
         WHERE instances.id = v.id",
    ),
    // Changes that keep the status and version (`Commit::stored`), in the layout of `changed`,
    // written without assigning the columns the indexes cover (SQLite rewrites an index entry
    // whenever one of its columns is assigned, even to the value it holds); a row whose status
    // or version is not the stored one fails as a stale one does.
    (
        MOVED,
        "UPDATE instances \
         SET outcome = v.outcome, active_steps = v.active_steps, data = v.data, state = v.state, \
             revision = CASE WHEN instances.revision = v.base AND instances.status = v.status \
                                  AND instances.version = v.version \
                             THEN instances.revision + 1 END, \
             last_seq = v.last_seq, updated_at = v.now \
         FROM (SELECT value->>'$[0]' AS id, value->>'$[1]' AS base, value->>'$[2]' AS status, value->>'$[3]' AS outcome, \
                      value->>'$[4]' AS active_steps, value->>'$[5]' AS data, value->>'$[6]' AS state, \
                      value->>'$[7]' AS last_seq, value->>'$[8]' AS now, value->>'$[9]' AS version \
               FROM jsonb_each(?)) AS v \
         WHERE instances.id = v.id",
    ),
];

/// The sizes of the statements of bound values, powers of two: `1 << 0` to
/// `1 << (VALUE_SIZES - 1)` rows.
const VALUE_SIZES: usize = 11;
/// Most rows one statement of bound values inserts (11,264 values for new instances; SQLite
/// allows 32,766).
const ROWS_PER_STATEMENT: usize = 1 << (VALUE_SIZES - 1);

/// The `INSERT` of `into` from `columns` values a row, selected as `select`, in each of the
/// [`VALUE_SIZES`] sizes: rows past those bound are NULL and skipped. So a connection prepares
/// at most [`VALUE_SIZES`] texts of each.
fn values_texts(into: &str, columns: usize, select: &str) -> Vec<String> {
    let row = format!("({})", vec!["?"; columns].join(", "));
    (0..VALUE_SIZES)
        .map(|size| {
            let rows = vec![row.as_str(); 1 << size].join(", ");
            format!("INSERT INTO {into} SELECT {select} FROM (VALUES {rows}) WHERE column1 IS NOT NULL")
        })
        .collect()
}

/// New instances: [id, unit, workflow, version, status, outcome, active_steps, data, state,
/// last_seq, now].
static CREATED_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    values_texts(
        "instances (id, unit, workflow, version, status, outcome, active_steps, data, state, revision, last_seq, \
         created_at, updated_at)",
        11,
        "column1, column2, column3, column4, column5, column6, column7, column8, column9, 1, column10, column11, column11",
    )
});

/// Events: [instance_id, seq, at, version, type, body].
static EVENTS_SQL: LazyLock<Vec<String>> = LazyLock::new(|| {
    values_texts(
        "events (instance_id, seq, at, version, type, body)",
        6,
        "column1, column2, column3, column4, column5, column6",
    )
});

/// The text of `texts` for `rows` rows (1 to [`ROWS_PER_STATEMENT`]), rounded up to a power of two.
fn sized(texts: &'static [String], rows: usize) -> &'static str {
    debug_assert!((1..=ROWS_PER_STATEMENT).contains(&rows), "{rows} rows in one statement");
    texts[rows.next_power_of_two().trailing_zeros() as usize].as_str()
}

/// A commit unit's rows, encoded by its caller: each part's elements without the array's
/// header (`created` and `events` empty), and the new instances and events as the values to
/// bind.
struct Encoded {
    parts: [Vec<u8>; PARTS],
    created: Vec<NewInstance>,
    events: Vec<EventRow>,
}

/// One row of `instances`, new.
struct NewInstance {
    id: i64,
    unit: String,
    workflow: String,
    version: i64,
    status: &'static str,
    outcome: Option<String>,
    active_steps: String,
    data: String,
    state: String,
    last_seq: i64,
    now: i64,
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
        f.debug_struct("Encoded")
            .field("bytes", &bytes)
            .field("created", &self.created.len())
            .field("events", &self.events.len())
            .finish()
    }
}

fn json(value: impl serde::Serialize) -> String {
    serde_json::to_string(&value).expect("rows serialise")
}

impl Encoded {
    fn new(unit: &[Commit]) -> Encoded {
        let created = created_rows(unit)
            .map(|(id, unit, workflow, version, status, outcome, active_steps, data, state, last_seq, now)| {
                NewInstance {
                    id,
                    unit: unit.to_owned(),
                    workflow: workflow.to_owned(),
                    version,
                    status,
                    outcome: outcome.clone(),
                    active_steps: json(active_steps),
                    data: json(data.0),
                    state: json(state.0),
                    last_seq,
                    now,
                }
            })
            .collect();
        let events = event_rows(unit)
            .map(|(instance_id, seq, at, version, kind, body)| EventRow {
                instance_id,
                seq,
                at,
                version,
                kind,
                body: json(body.0),
            })
            .collect();
        Encoded { parts: commit_rows::<Jsonb>(unit), created, events }
    }

    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.events.is_empty() && self.parts.iter().all(Vec::is_empty)
    }
}

/// The rows of the units of one transaction, joined: each part the units' elements under one
/// array header, the new instances and events in order.
struct Joined<'a> {
    parts: [Option<Vec<u8>>; PARTS],
    created: Vec<&'a NewInstance>,
    events: Vec<&'a EventRow>,
}

/// One statement of a transaction, with what it binds.
enum Statement<'a> {
    /// A part SQLite reads as binary JSON.
    Part(&'static str, &'a [u8]),
    Created(&'a [&'a NewInstance]),
    Events(&'a [&'a EventRow]),
}

impl<'a> Joined<'a> {
    fn new(units: &[&'a Encoded]) -> Joined<'a> {
        Joined {
            parts: std::array::from_fn(|part| jsonb_array(units.iter().map(|u| u.parts[part].as_slice()))),
            created: units.iter().flat_map(|u| &u.created).collect(),
            events: units.iter().flat_map(|u| &u.events).collect(),
        }
    }

    /// The statements that write the rows, in order: the fired timers' check, the new
    /// instances, the other parts ([`PART_STATEMENTS`]), the events. Only those with rows.
    fn statements(&self) -> Vec<Statement<'_>> {
        let part = |i: usize| self.parts[i].as_deref();
        let mut statements: Vec<Statement<'_>> =
            part(CONSUMED).map(|p| Statement::Part(CONSUMED_SQL, p)).into_iter().collect();
        statements.extend(self.created.chunks(ROWS_PER_STATEMENT).map(Statement::Created));
        statements.extend(PART_STATEMENTS.iter().filter_map(|&(i, sql)| part(i).map(|p| Statement::Part(sql, p))));
        statements.extend(self.events.chunks(ROWS_PER_STATEMENT).map(Statement::Events));
        statements
    }
}

impl Statement<'_> {
    fn sql(&self) -> &'static str {
        match self {
            Statement::Part(sql, _) => sql,
            Statement::Created(rows) => sized(&CREATED_SQL, rows.len()),
            Statement::Events(rows) => sized(&EVENTS_SQL, rows.len()),
        }
    }
}

/// A commit unit waiting for its transaction, and where its caller waits for the outcome.
type Waiting = (Box<Encoded>, oneshot::Sender<StoreResult<()>>);

/// What the writer thread is asked to do, in the order asked.
#[derive(Debug)]
enum Request {
    Commit { unit: Box<Encoded>, done: oneshot::Sender<StoreResult<()>> },
    Number { counter: String, done: oneshot::Sender<StoreResult<i64>> },
    Write { statements: Vec<Write>, done: oneshot::Sender<StoreResult<()>> },
    Close { done: oneshot::Sender<()> },
}

/// A value bound to a statement of [`Write`].
#[derive(Clone, Debug)]
pub(super) enum Value {
    Int(i64),
    Text(String),
    Null,
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Value {
        v.map_or(Value::Null, Value::from)
    }
}

/// A statement the writer makes besides commits (a node's heartbeat, a delivery's outcome),
/// with its values in order.
#[derive(Debug)]
pub(super) struct Write {
    pub(super) sql: &'static str,
    pub(super) values: Vec<Value>,
}

impl Write {
    fn execute(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        let mut prepared = conn.prepare_cached(self.sql)?;
        for (i, value) in self.values.iter().enumerate() {
            match value {
                Value::Int(v) => prepared.raw_bind_parameter(i + 1, v)?,
                Value::Text(v) => prepared.raw_bind_parameter(i + 1, v.as_str())?,
                Value::Null => prepared.raw_bind_parameter(i + 1, rusqlite::types::Null)?,
            }
        }
        prepared.raw_execute().map(drop)
    }
}

/// Where commits are executed.
#[derive(Debug)]
enum Lane {
    /// The writer thread of a database file, fed by this queue. Its connection is its own, so
    /// that its page cache stays valid from one commit to the next (a connection whose cache
    /// another connection's write made stale re-reads every page it touches).
    Thread { queue: mpsc::Sender<Request>, shared: Arc<Shared> },
    /// The pool's one connection of an in-memory database (the database exists only there).
    /// Each caller adds its unit to `waiting`, then takes its turn; whoever has the turn
    /// commits everything waiting as one transaction, so commits that wait together share one.
    Pool { pool: SqlitePool, waiting: std::sync::Mutex<Vec<Waiting>>, turn: Arc<Mutex<()>> },
}

/// The writer's connection, shared by its thread and the callers that commit inline.
#[derive(Debug)]
struct Shared {
    /// Requests queued for the thread, or being made inline, and not yet done. A caller that
    /// finds none commits on its own thread (see [`inline`]).
    pending: AtomicUsize,
    state: std::sync::Mutex<WriterThread>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, WriterThread> {
        // A panic inside SQLite's calls leaves nothing half-done that a later commit could see:
        // an open transaction drops the connection (`on_connection`).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Marks an inline request done, however it ends.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
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
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            state: std::sync::Mutex::new(WriterThread {
                file,
                counts: counts.clone(),
                conn: None,
                batch: Vec::with_capacity(MAX_BATCH),
                closed: false,
            }),
        });
        std::thread::Builder::new()
            .name("sqlite-writer".into()) // short enough for Linux to show whole (15 bytes)
            .spawn({
                let shared = shared.clone();
                move || run(&shared, &requests)
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the writer thread: {e}")))?;
        let writer = Arc::new(Writer { lane: Lane::Thread { queue, shared }, counts });
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
            Lane::Thread { queue, shared } => {
                if let Some(result) = inline(shared, |thread| thread.apply(&[&unit])) {
                    return result;
                }
                let (done, answer) = oneshot::channel();
                enqueue(shared, queue, Request::Commit { unit: Box::new(unit), done })?;
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
            Lane::Thread { queue, shared } => {
                if let Some(result) = inline(shared, |thread| thread.next_number(counter)) {
                    return result;
                }
                let (done, answer) = oneshot::channel();
                enqueue(shared, queue, Request::Number { counter: counter.to_owned(), done })?;
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

    /// Makes `statements` as one transaction on the writer's connection, in their turn with
    /// the commits. Writes through another connection would wait for SQLite's lock in its
    /// sleeping busy handler, and each would empty the writer's page cache (SQLite drops a
    /// connection's cache when another has written), so that its next commits read again every
    /// page they touch.
    pub(super) async fn write(&self, statements: Vec<Write>) -> StoreResult<()> {
        let result = match &self.lane {
            Lane::Thread { queue, shared } => {
                if let Some(result) = inline(shared, |thread| thread.write(&statements)) {
                    return result;
                }
                let (done, answer) = oneshot::channel();
                enqueue(shared, queue, Request::Write { statements, done })?;
                return answer.await.map_err(|_| closing())?;
            }
            Lane::Pool { pool, turn, .. } => {
                let _turn = turn.lock().await;
                pool_write(pool, &statements).await.map_err(map_err)
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
        if let Lane::Thread { queue, .. } = &self.lane {
            let (done, answer) = oneshot::channel();
            if queue.send(Request::Close { done }).is_ok() {
                let _ = answer.await;
            }
        }
    }
}

/// Makes a request on the caller's own thread when the writer has nothing to do, and says what
/// came of it; `None` when it has (the caller queues the request), or when the caller is not on
/// a worker of tokio's multi-threaded runtime.
///
/// One commit at a time, the hand-over to the writer thread and the answer back were two
/// wake-ups of a thread that had gone idle during the previous commit's sync: on these virtual
/// machines, where an idle core is halted, most of what a lone commit cost beyond SQLite's own
/// work. Inline, the caller's thread writes and syncs, and goes on with its task when the sync
/// returns; tokio hands its other tasks to another thread meanwhile (`block_in_place`). Under
/// load the thread keeps the queue: a request finds others pending and joins them.
fn inline<T>(shared: &Shared, work: impl FnOnce(&mut WriterThread) -> StoreResult<T>) -> Option<StoreResult<T>> {
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if !on_worker {
        return None;
    }
    // The connection first, then the count: whatever is pending once both are held was asked
    // after this request and waits for it.
    let mut thread = match shared.state.try_lock() {
        Ok(thread) => thread,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    if shared.pending.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return None;
    }
    let _done = Done(&shared.pending);
    Some(tokio::task::block_in_place(|| if thread.closed { Err(closing()) } else { work(&mut thread) }))
}

/// Queues a request for the writer thread, counted pending until the thread has made it.
fn enqueue(shared: &Shared, queue: &mpsc::Sender<Request>, request: Request) -> StoreResult<()> {
    shared.pending.fetch_add(1, Ordering::AcqRel);
    queue.send(request).map_err(|_| {
        shared.pending.fetch_sub(1, Ordering::Release);
        closing()
    })
}

/// The writer thread: takes whatever waits, up to [`MAX_BATCH`] commit units, and commits it as
/// one transaction; numbers and closing come in their turn. It holds the connection while it
/// works, so a request made inline waits for it, and it waits for one made inline.
fn run(shared: &Shared, requests: &mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut thread = shared.lock();
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(request) = next {
            match request {
                Request::Commit { unit, done } => thread.batch.push((unit, done)),
                Request::Number { counter, done } => {
                    thread.flush();
                    let _ = done.send(thread.next_number(&counter));
                }
                Request::Write { statements, done } => {
                    thread.flush();
                    let _ = done.send(thread.write(&statements));
                }
                Request::Close { done } => {
                    thread.flush();
                    thread.closed = true;
                    if let Some(conn) = thread.conn.take()
                        && let Err((_, e)) = conn.close()
                    {
                        tracing::debug!(error = %e, "closing the writer's connection");
                    }
                    let _ = done.send(());
                    return;
                }
            }
            taken += 1;
            next = if thread.batch.len() < MAX_BATCH { requests.try_recv().ok() } else { None };
        }
        thread.flush();
        drop(thread);
        shared.pending.fetch_sub(taken, Ordering::Release);
    }
}

/// The writer's state between requests.
#[derive(Debug)]
struct WriterThread {
    file: FileOptions,
    counts: Arc<Counts>,
    /// `None` after a failure that may have left it unusable; the next commit opens it again.
    conn: Option<rusqlite::Connection>,
    /// Commit units taken from the queue and not yet committed.
    batch: Vec<Waiting>,
    /// Closed: every later request is refused.
    closed: bool,
}

impl WriterThread {
    /// Commits the batch as one transaction and answers its callers. When that fails, each unit
    /// is committed on its own.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        // Taken while `apply` borrows the thread, and put back emptied: its room is reused.
        let mut batch = std::mem::take(&mut self.batch);
        let units: Vec<&Encoded> = batch.iter().map(|(u, _)| &**u).collect();
        let result = self.apply(&units);
        drop(units);
        match result {
            Ok(()) => batch.drain(..).for_each(|(_, done)| drop(done.send(Ok(())))),
            Err(e) if batch.len() == 1 => batch.drain(..).for_each(|(_, done)| drop(done.send(Err(e.clone())))),
            Err(e) => {
                tracing::debug!(error = %e, units = batch.len(), "batch commit failed; retrying unit by unit");
                for (unit, done) in batch.drain(..) {
                    let _ = done.send(self.apply(&[&unit]));
                }
            }
        }
        self.batch = batch;
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

    fn write(&mut self, statements: &[Write]) -> StoreResult<()> {
        let result = self.on_connection(|conn| match statements {
            [only] => only.execute(conn),
            _ => atomically(conn, |conn| statements.iter().try_for_each(|w| w.execute(conn))),
        });
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
            self.conn = Some(open(&self.file).map_err(store_error)?);
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
    // The parts' statements, the sizes of the values statements, CONSUMED_SQL, NUMBER_SQL,
    // BEGIN, COMMIT and ROLLBACK, and room for the store's other writes.
    conn.set_prepared_statement_cache_capacity(2 * VALUE_SIZES + PART_STATEMENTS.len() + 5 + 8);
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

/// Writes `units` in one transaction on the writer's connection: `BEGIN IMMEDIATE`, the
/// statements of [`Joined::statements`], `COMMIT` (a lone statement is a transaction of its
/// own). After a failure the transaction is rolled back.
fn transaction(conn: &mut rusqlite::Connection, units: &[&Encoded]) -> rusqlite::Result<()> {
    let joined = Joined::new(units);
    let statements = joined.statements();
    if let [only] = statements.as_slice() {
        return execute(conn, only);
    }
    atomically(conn, |conn| statements.iter().try_for_each(|s| execute(conn, s)))
}

/// Runs `work` between `BEGIN IMMEDIATE` and `COMMIT`; after a failure the transaction is
/// rolled back.
fn atomically(
    conn: &rusqlite::Connection,
    work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let result = work(conn).and_then(|()| conn.prepare_cached("COMMIT")?.execute([]).map(drop));
    if result.is_err() && !conn.is_autocommit() {
        // Should this fail too, the transaction stays open and the caller drops the connection.
        let _ = conn.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
    }
    result
}

/// Runs one statement with its values bound, prepared once per connection.
fn execute(conn: &rusqlite::Connection, statement: &Statement<'_>) -> rusqlite::Result<()> {
    let mut prepared = conn.prepare_cached(statement.sql())?;
    match statement {
        Statement::Part(_, rows) => prepared.raw_bind_parameter(1, *rows)?,
        Statement::Created(rows) => {
            for (row, i) in rows.iter().enumerate() {
                let at = row * 11;
                prepared.raw_bind_parameter(at + 1, i.id)?;
                prepared.raw_bind_parameter(at + 2, i.unit.as_str())?;
                prepared.raw_bind_parameter(at + 3, i.workflow.as_str())?;
                prepared.raw_bind_parameter(at + 4, i.version)?;
                prepared.raw_bind_parameter(at + 5, i.status)?;
                prepared.raw_bind_parameter(at + 6, i.outcome.as_deref())?;
                prepared.raw_bind_parameter(at + 7, i.active_steps.as_str())?;
                prepared.raw_bind_parameter(at + 8, i.data.as_str())?;
                prepared.raw_bind_parameter(at + 9, i.state.as_str())?;
                prepared.raw_bind_parameter(at + 10, i.last_seq)?;
                prepared.raw_bind_parameter(at + 11, i.now)?;
            }
        }
        Statement::Events(rows) => {
            for (row, e) in rows.iter().enumerate() {
                let at = row * 6;
                prepared.raw_bind_parameter(at + 1, e.instance_id)?;
                prepared.raw_bind_parameter(at + 2, e.seq)?;
                prepared.raw_bind_parameter(at + 3, e.at)?;
                prepared.raw_bind_parameter(at + 4, e.version)?;
                prepared.raw_bind_parameter(at + 5, e.kind)?;
                prepared.raw_bind_parameter(at + 6, e.body.as_str())?;
            }
        }
    }
    prepared.raw_execute().map(drop)
}

/// Writes `units` in one transaction on an in-memory database's connection, the same
/// statements as [`transaction`] sent as one command (each statement of a command through
/// sqlx is a hand-over to its worker thread and back; sqlx binds the values across the
/// statements in order). After a failure the transaction is rolled back, so the connection is
/// left as it was.
async fn pool_transaction(conn: &mut SqliteConnection, units: &[&Encoded]) -> Result<(), sqlx::Error> {
    let joined = Joined::new(units);
    let statements = joined.statements();
    let lone = statements.len() == 1;
    let mut sql = statements.iter().map(Statement::sql).collect::<Vec<_>>().join("; ");
    if !lone {
        sql = format!("BEGIN IMMEDIATE; {sql}; COMMIT");
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for statement in &statements {
        match statement {
            Statement::Part(_, rows) => query = query.bind(*rows),
            Statement::Created(rows) => {
                for i in *rows {
                    query = query
                        .bind(i.id)
                        .bind(i.unit.as_str())
                        .bind(i.workflow.as_str())
                        .bind(i.version)
                        .bind(i.status)
                        .bind(i.outcome.as_deref())
                        .bind(i.active_steps.as_str())
                        .bind(i.data.as_str())
                        .bind(i.state.as_str())
                        .bind(i.last_seq)
                        .bind(i.now);
                }
                query = pad(query, rows.len(), 11);
            }
            Statement::Events(rows) => {
                for e in *rows {
                    query = query
                        .bind(e.instance_id)
                        .bind(e.seq)
                        .bind(e.at)
                        .bind(e.version)
                        .bind(e.kind)
                        .bind(e.body.as_str());
                }
            }
        }
    }
    if let Err(e) = query.execute(&mut *conn).await {
        if !lone {
            // Nothing to roll back when the transaction did not begin; then this fails too.
            let _ = conn.execute("ROLLBACK").await;
        }
        return Err(e);
    }
    Ok(())
}

/// Binds NULL to the rows of a statement of bound values past its `rows`: sqlx binds a
/// command's values across its statements in order, so the next statement's values must not
/// fill them.
fn pad<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    rows: usize,
    columns: usize,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for _ in 0..(rows.next_power_of_two() - rows) * columns {
        query = query.bind(None::<i64>);
    }
    query
}

/// Makes `statements` as one transaction on an in-memory database's connection.
async fn pool_write(pool: &SqlitePool, statements: &[Write]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for w in statements {
        let mut q = sqlx::query(w.sql);
        for value in &w.values {
            q = match value {
                Value::Int(v) => q.bind(*v),
                Value::Text(v) => q.bind(v.clone()),
                Value::Null => q.bind(None::<i64>),
            };
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
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

    /// The writer answers in the order asked: a barrier asked while a write waits for SQLite's
    /// lock (held here by another connection) returns only after that write, made inline on
    /// the caller's thread or on the writer's own, and a closed writer refuses both ways.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_answers_in_the_order_asked() {
        use sqlx::Executor;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let store =
            super::super::SqliteStore::open_file(&path, &crate::store::StoreOptions::new(""), |o| o).await.unwrap();
        let writer = store.inner.writer.clone();
        let mut other = SqliteConnection::connect(&format!("sqlite:{}", path.display())).await.unwrap();
        let super::Lane::Thread { shared, queue } = &writer.lane else { unreachable!("a file's writer") };
        let pending = || shared.pending.load(std::sync::atomic::Ordering::Acquire);
        let wait_for = |what: &str, until: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !until() {
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::yield_now();
            }
        };
        other.execute("BEGIN IMMEDIATE").await.unwrap(); // SQLite's write lock, held
        // Asked first, with nothing else pending: made inline, on the task's thread.
        let number = tokio::spawn({
            let w = writer.clone();
            async move { w.next_number("n").await }
        });
        wait_for("the number was never asked", &|| pending() == 1);
        // Asked next: queued for the writer thread, which waits for the connection.
        let queued = {
            let (done, answer) = tokio::sync::oneshot::channel();
            super::enqueue(shared, queue, super::Request::Number { counter: "n".into(), done }).unwrap();
            answer
        };
        let mut barrier = tokio::spawn({
            let w = writer.clone();
            async move { w.commit(&[]).await }
        });
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut barrier).await;
        assert!(early.is_err(), "the barrier passed a write still waiting for the lock");
        assert_eq!(pending(), 3, "two writes and the barrier are pending");
        other.execute("COMMIT").await.unwrap();
        assert_eq!(number.await.unwrap().unwrap(), 1);
        barrier.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 2, "the writer thread took its turn");
        wait_for("requests still pending", &|| pending() == 0);
        assert_eq!(writer.next_number("n").await.unwrap(), 3, "made inline again");
        writer.close().await;
        let err = writer.commit(&[]).await.unwrap_err();
        assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "inline: {err:?}");
        shared.pending.fetch_add(1, std::sync::atomic::Ordering::AcqRel); // as if busy: queued
        let err = writer.commit(&[]).await.unwrap_err();
        assert!(matches!(err, crate::store::StoreError::Unavailable(_)), "queued: {err:?}");
    }

    /// A serving store writes only through the writer's connection: a heartbeat, a delivery's
    /// outcome and a dropped timer leave the writer's page cache as it was (SQLite empties a
    /// connection's cache when another connection has written: `PRAGMA data_version` moves).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stores_own_writes_keep_the_writers_page_cache() {
        use crate::store::{NodeRow, Store, TimerRow};
        let dir = tempfile::tempdir().unwrap();
        let store =
            super::super::SqliteStore::open_file(&dir.path().join("w.db"), &crate::store::StoreOptions::new(""), |o| o)
                .await
                .unwrap();
        let super::Lane::Thread { shared, .. } = &store.inner.writer.lane else { unreachable!("a file's writer") };
        let data_version = || {
            let mut thread = shared.lock();
            let conn = thread.on_connection(|c| c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)));
            conn.unwrap()
        };
        let before = data_version();
        let node = NodeRow {
            id: "n1".into(),
            build: "test".into(),
            address: "127.0.0.1:1".into(),
            started_at: 1,
            heartbeat_at: 0,
            silent_ms: 0,
            alive: true,
            leader: true,
            doing: "serving".into(),
        };
        store.heartbeat(&node, 1_000).await.unwrap();
        store.outbox_result(1, true, None, 0, 1_000).await.unwrap();
        let timer = TimerRow { instance_id: 1, token: 1, name: "t".into(), step: "s".into(), due_at: 5 };
        store.drop_timer(&timer).await.unwrap();
        assert_eq!(store.nodes(1_000).await.unwrap().len(), 1, "the heartbeat was written");
        assert_eq!(data_version(), before, "another connection wrote: the writer's cache was emptied");
        // The test's own check: a write through a pool connection does move it.
        sqlx::query("DELETE FROM nodes").execute(&store.inner.pool).await.unwrap();
        assert_ne!(data_version(), before);
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
