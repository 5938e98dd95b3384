//! Durable storage behind one narrow contract ([`Store`]): the service never writes SQL and
//! never names a backend. [`open`] picks the backend from the database address at start-up
//! (a file path or `sqlite:` for the embedded SQLite default, `postgres://` for PostgreSQL) and
//! returns an [`AnyStore`]; every backend passes the same conformance suite
//! (`engine/engine/tests/store_conformance.rs`).
//!
//! The contract, whatever the backend:
//! - a [`Store::commit`] unit (one or more instances' changes) is applied whole or not at all,
//!   and fails with [`StoreError::Conflict`] when an instance's stored revision is not the one
//!   the change was computed from, or when a timer it consumes is already gone;
//! - ids of instances and versions are assigned by the database;
//! - [`Store::claim_due`] hands a due timer to one caller at a time (a lease), judged by the
//!   database's clock as well as the caller's, so a node whose clock runs fast never fires early;
//! - no text it keeps holds the NUL character (PostgreSQL's text cannot; the API refuses it).

pub mod copy;
mod decode;
pub mod postgres;
mod rows;
pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use yishi_core::runtime::{Event, InstanceState, Status, TimerChange};

/// Errors split by what the caller does next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Someone else changed the instance first; reload and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A passing condition (database busy or unreachable, disk full, read-only file); retrying
    /// later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Corrupt or impossible data; give up and tell an operator.
    #[error("storage failure: {0}")]
    Fatal(String),
    /// Another server process holds this database file (SQLite serves one process).
    #[error("another yishi server is using {0}")]
    Held(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A stored version of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct VersionRow {
    /// The version row's id, unique across workflows (internal; the API names versions by number and `version_id`, the content hash).
    pub id: i64,
    pub workflow: String,
    /// 1, 2, 3 ... per workflow (`version` in the API).
    pub seq: i64,
    /// Content hash of the effective definition and the files it uses.
    pub hash: String,
    pub created_at: i64,
    /// Who or what made it (a file save, a console save, `start`).
    pub created_by: String,
}

/// A version with everything it was built from.
#[derive(Clone, Debug)]
pub struct StoredVersion {
    pub row: VersionRow,
    /// Path (relative to the workflows folder) -> text, of every file the version uses.
    pub sources: BTreeMap<String, String>,
    /// The effective definition after layering.
    pub effective: Value,
}

/// A version to store.
#[derive(Clone, Debug)]
pub struct NewVersion<'a> {
    pub workflow: &'a str,
    pub hash: &'a str,
    pub sources: &'a BTreeMap<String, String>,
    pub effective: &'a Value,
    pub created_by: &'a str,
}

/// A stored instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRow {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    /// The version id the case runs on.
    pub version: i64,
    pub revision: i64,
    pub last_seq: i64,
    pub state: InstanceState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One event as stored.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct EventRow {
    /// 1, 2, 3 ... per case.
    pub seq: i64,
    /// When it happened, Unix milliseconds.
    pub at: i64,
    /// The number of the workflow version the case was on when it happened.
    pub version: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// A listing entry.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InstanceSummary {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    /// The number of the workflow version the case runs on.
    pub version: i64,
    /// That version's content hash.
    pub version_id: String,
    pub status: String,
    pub outcome: Option<String>,
    pub active_steps: Vec<String>,
    /// How urgent the case is, when its workflow declares urgency levels.
    pub urgency: Option<String>,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a backup holds, counted in the copy after its own integrity check passed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub instances: i64,
    pub events: i64,
    pub versions: i64,
    pub bytes: u64,
}

/// Filters for listing instances. Every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Units (exact path, or a prefix ending in `/` for a whole street or district).
    pub units: Option<Vec<String>>,
    pub workflow: Option<String>,
    /// A version number (1, 2 ... of each workflow; see [`VersionRow::seq`]).
    pub version: Option<i64>,
    pub status: Option<String>,
    pub step: Option<String>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
    /// A top-level field of the data document and the value it must equal.
    pub data: Option<(String, Value)>,
    /// An urgency level.
    pub urgency: Option<String>,
    /// Text the case's `title` (a top-level data field) contains, case-insensitively for
    /// Latin letters.
    pub title_contains: Option<String>,
    /// Only cases that went past a deadline nobody acted before (the `overdue` of the
    /// statistics, from the case's `figures`).
    pub overdue: bool,
    /// Most urgent first: urgency levels in this order (cases at a level not listed, or at
    /// none, after them), newest first within a level. `None`: newest first.
    pub by_urgency: Option<Vec<String>>,
    /// Return instances after this one in the order asked for (cursor pagination): with an id
    /// below it, and when sorting by urgency, at its level or a less urgent one.
    pub before: Option<i64>,
    pub limit: u32,
}

/// A timer as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerRow {
    pub instance_id: i64,
    pub token: u32,
    pub name: String,
    pub step: String,
    pub due_at: i64,
}

/// One instance's change. A [`Store::commit`] unit of several commits is atomic.
#[derive(Clone, Debug)]
pub struct Commit {
    pub instance_id: i64,
    /// Set when the instance is new: (unit, workflow).
    pub create: Option<(String, String)>,
    pub version: i64,
    /// The revision the change was computed from (0 for a new instance). The commit fails
    /// with a conflict if the stored revision differs.
    pub base_revision: i64,
    /// The status and version stored at `base_revision`, when the caller knows them (ignored
    /// for a new instance). A change that keeps both is written without touching the indexes
    /// over them: SQLite rewrites an index entry whenever its column is assigned, even to the
    /// value it holds (three index pages per change). A claim that does not match what is
    /// stored fails the commit as a conflict; it never leaves an index wrong.
    pub stored: Option<(Status, i64)>,
    /// The new state; `None` records events only (a refused action) and keeps the revision.
    pub state: Option<InstanceState>,
    /// Events with their times, numbered from `first_seq`.
    pub events: Vec<(Event, i64)>,
    pub first_seq: i64,
    pub timers: Vec<TimerChange>,
    /// The timer (token, name) this change fires: the commit fails with a conflict if it is no
    /// longer stored (another node fired it first), and removes it.
    pub consumes: Option<(u32, String)>,
    /// Idempotency key, the fingerprint of the request, and the response to keep for it.
    pub idempotency: Option<(String, String, String)>,
    /// Work to do after the commit: webhook notices and cases to spawn.
    pub outbox: Vec<Value>,
    pub now: i64,
}

impl Commit {
    /// The sequence number of the commit's last event (the instance's `last_seq` after it).
    pub fn last_seq(&self) -> i64 {
        self.first_seq + self.events.len() as i64 - 1
    }
}

/// What an idempotency key was first used for, and the answer given.
#[derive(Clone, Debug, PartialEq)]
pub struct Remembered {
    pub fingerprint: String,
    pub response: String,
    pub created_at: i64,
}

/// A staff account of the console, as stored (only a hash of the password).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AccountRow {
    pub id: i64,
    pub name: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: String,
    pub scope: String,
    pub acts_as: Vec<String>,
    /// The holder must set their own password at the next sign-in.
    pub must_change: bool,
    /// Failed sign-ins in a row.
    pub failures: i64,
    /// Sign-in refused until then (Unix ms).
    pub locked_until: Option<i64>,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    /// When the account last changed (password, role, state).
    pub changed_at: i64,
}

/// A signed-in console session, as stored (only a hash of its secret).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRow {
    pub id_hash: String,
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
    /// The session's anti-forgery token, sent back with every form.
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Which sessions to end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SessionsOf<'a> {
    One(&'a str),
    Account(i64),
    Token(i64),
    /// Every session that expired before this time.
    ExpiredBefore(i64),
}

/// An API token as stored (never the secret).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub scope: String,
    /// Workflow roles the holder acts with (e.g. `street_office`).
    pub acts_as: Vec<String>,
    /// SHA-256 of the secret (never the secret).
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A token to store: its name (recorded as the actor of what it does), the hash of its
/// secret, its API role, its scope and the workflow roles its holder acts with.
#[derive(Clone, Debug)]
pub struct NewToken<'a> {
    pub name: &'a str,
    pub key_id: &'a str,
    pub secret_hash: &'a str,
    pub role: &'a str,
    pub scope: &'a str,
    pub acts_as: &'a [String],
}

/// A notice waiting in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub instance_id: i64,
    pub notice: Value,
    pub attempts: i64,
}

/// A delivery given up on after every attempt failed.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DeadLetter {
    pub id: i64,
    /// The case that sent it.
    pub instance: i64,
    /// What was to be delivered (a webhook notice, or a follow-up case to start).
    pub notice: Value,
    pub attempts: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
}

/// Figures an operator watches, read from the database at each scrape of `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Cases in progress: (workflow, active step, count), a case counted once per active step.
    pub active: Vec<(String, String, i64)>,
    pub timers_pending: i64,
    /// Timers due at or before `now` and not yet fired.
    pub timers_overdue: i64,
    pub outbox_pending: i64,
    pub outbox_dead: i64,
}

/// Cases per unit, workflow and month: started in the month, and ended in it by how they ended;
/// and what the cases started in the month count for in the statistics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct MonthFigures {
    pub unit: String,
    pub workflow: String,
    /// `YYYY-MM` in the deployment's zone.
    pub month: String,
    pub started: i64,
    pub completed: i64,
    pub cancelled: i64,
    pub failed: i64,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub counts: Counts,
}

/// What cases count for in the statistics (the three rates), added up. Merged duplicates
/// (outcome `merged`) are not counted: they are the matter of the case they joined.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct Counts {
    /// Cases raised (merged duplicates left out).
    pub raised: i64,
    /// Cases that got a response.
    pub responded: i64,
    /// Cases residents answered in a follow-up (回访).
    pub rated: i64,
    /// Of those, resolved and satisfied in the residents' view.
    pub resolved: i64,
    pub satisfied: i64,
    /// Cases with a deadline passed.
    pub overdue: i64,
    /// Follow-up answers, and their ratings added up.
    pub answers: i64,
    pub score_sum: f64,
}

impl Counts {
    /// Adds the figures of one case.
    pub fn add_case(&mut self, f: &yishi_core::runtime::Figures) {
        self.raised += 1;
        self.responded += i64::from(f.responded);
        self.rated += i64::from(f.answers > 0);
        self.resolved += i64::from(f.resolved);
        self.satisfied += i64::from(f.satisfied);
        self.overdue += i64::from(f.overdue);
        self.answers += i64::from(f.answers);
        self.score_sum += f.score_sum;
    }
    pub fn add(&mut self, o: &Counts) {
        self.raised += o.raised;
        self.responded += o.responded;
        self.rated += o.rated;
        self.resolved += o.resolved;
        self.satisfied += o.satisfied;
        self.overdue += o.overdue;
        self.answers += o.answers;
        self.score_sum += o.score_sum;
    }
}

/// What the parties called on (departments whistled) by the cases raised in a period count for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema, sqlx::FromRow)]
pub struct PartyCounts {
    pub party: String,
    /// Cases that called on it.
    pub called: i64,
    /// Of those, cases it answered, and answered before its due time.
    pub responded: i64,
    pub in_time: i64,
    /// Cases whose call rated its response, and those where the rating counts as satisfied.
    pub rated: i64,
    pub satisfied: i64,
    pub answers: i64,
    pub score_sum: f64,
}

/// What the cases of one unit and workflow raised in a period count for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct RaisedCounts {
    pub unit: String,
    pub workflow: String,
    #[sqlx(flatten)]
    pub counts: Counts,
}

/// When, how and where a case started and ended: what monthly figures are made of.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct CaseDates {
    pub unit: String,
    pub workflow: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// What it counts for in the statistics.
    #[sqlx(json(nullable))]
    pub figures: Option<yishi_core::runtime::Figures>,
    /// Merged into another case (not counted in the statistics).
    pub merged: bool,
}

/// One batch of a purge: closed cases removed with everything recorded about them, their
/// figures kept, the purge recorded; all in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Purge {
    pub ids: Vec<i64>,
    /// What the removed cases counted for (added to the kept figures).
    pub figures: Vec<MonthFigures>,
    pub closed_before: i64,
    /// Where the cases were archived before.
    pub archive: String,
    pub actor: String,
    pub at: i64,
    /// The purge record this batch adds to; `None` records a new purge.
    pub record: Option<i64>,
}

/// A purge as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PurgeRecord {
    pub id: i64,
    pub at: i64,
    pub closed_before: i64,
    pub cases: i64,
    pub archive: String,
    pub actor: String,
}

/// The active version of every workflow, as the database has it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActiveSet {
    /// How many times the set changed; 0 before the first activation.
    pub epoch: i64,
    /// Workflow -> the id of its active version.
    pub versions: BTreeMap<String, i64>,
    pub changed_at: i64,
    /// What activated it (`start`, `file save`, ...).
    pub changed_by: String,
    /// The status of that activation (a JSON document), shown by every node.
    pub status: String,
}

/// A node serving the database, as it last reported itself.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct NodeRow {
    /// Chosen by the node at start (host, process and a random part).
    pub id: String,
    /// The yishi version it runs.
    pub build: String,
    /// Where it listens.
    pub address: String,
    pub started_at: i64,
    /// Its last heartbeat (by the database's clock where the database has one).
    pub heartbeat_at: i64,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub silent_ms: i64,
    /// Heard from within five rounds and not stopped (judged by the engine).
    pub alive: bool,
    /// Whether it leads: reads the workflows folder and activates what changes there.
    pub leader: bool,
    /// What it is doing (`serving`, `stopped`).
    pub doing: String,
}

/// When a delivery is given up on: never due again until an operator retries it.
pub const GIVEN_UP: i64 = i64::MAX;

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every commit reaches the disk before it is acknowledged: nothing acknowledged is lost,
    /// even on power loss (SQLite `synchronous = FULL`; PostgreSQL `synchronous_commit = on`).
    #[default]
    Full,
    /// Survives a crash or kill of the process, not a power loss: the last commits may be
    /// lost then (SQLite `synchronous = NORMAL`; PostgreSQL `synchronous_commit = off`).
    Normal,
}

/// How to open a database.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// A file path, `sqlite:PATH`, `sqlite::memory:`, or `postgres://user@host/db`.
    pub url: String,
    pub sync: Durability,
    /// Create the database when it does not exist (the server); commands that read an
    /// existing database say so instead.
    pub create: bool,
    /// Connections to a server database.
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// Longest a statement may run before the database cancels it.
    pub statement_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            sync: Durability::Full,
            create: true,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of the commit path, kept by the backend.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Commit units applied.
    pub units: std::sync::atomic::AtomicU64,
    /// Transactions that carried them (a backend may group units).
    pub transactions: std::sync::atomic::AtomicU64,
    /// Time spent in transactions, microseconds.
    pub micros: std::sync::atomic::AtomicU64,
    /// Whether commits show in the process's metrics (not for in-memory rehearsals).
    pub observed: bool,
}

impl CommitStats {
    pub(crate) fn record(&self, units: usize, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        self.units.fetch_add(units as u64, Relaxed);
        self.transactions.fetch_add(1, Relaxed);
        self.micros.fetch_add(took.as_micros() as u64, Relaxed);
        if self.observed {
            crate::service::metrics::commit(units, took);
        }
    }
}

/// The storage contract the service needs.
pub trait Store: Send + Sync + 'static {
    /// Whether other processes may write the same database (so that nothing read earlier may be
    /// trusted without a revision check).
    fn shared(&self) -> bool;
    /// The database, for logs and messages (never a password).
    fn describe(&self) -> String;
    fn commit_stats(&self) -> &CommitStats;

    /// Stores a version if its hash is new for the workflow; returns the (existing or new) row.
    fn put_version(&self, v: &NewVersion<'_>, now: i64) -> impl Future<Output = StoreResult<VersionRow>> + Send;
    /// Stored versions of one workflow or of all, by workflow and number.
    fn versions(&self, workflow: Option<&str>) -> impl Future<Output = StoreResult<Vec<VersionRow>>> + Send;
    fn version(&self, id: i64) -> impl Future<Output = StoreResult<StoredVersion>> + Send;
    /// Active instances per version id.
    fn active_counts(&self) -> impl Future<Output = StoreResult<BTreeMap<i64, i64>>> + Send;

    /// A new instance id, unique across every process on the database.
    fn next_instance_id(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    fn load(&self, id: i64) -> impl Future<Output = StoreResult<InstanceRow>> + Send;
    fn history(&self, id: i64) -> impl Future<Output = StoreResult<Vec<EventRow>>> + Send;
    fn list(&self, filter: &ListFilter) -> impl Future<Output = StoreResult<Vec<InstanceSummary>>> + Send;
    /// Applies a unit of changes atomically (see the module's contract). The unit is encoded
    /// for the database on the caller's task before anything waits, and stays the caller's:
    /// after the commit, the caller keeps the state it committed without having copied it.
    fn commit(&self, unit: &[Commit]) -> impl Future<Output = StoreResult<()>> + Send;
    /// Returns once every commit sent before it has been applied or has failed.
    fn barrier(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// The response kept for an idempotency key.
    fn idempotent_response(&self, key: &str) -> impl Future<Output = StoreResult<Option<Remembered>>> + Send;
    /// Forgets an idempotency key (it expired).
    fn forget_idempotency(&self, key: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// The next number of a counter (registration numbers): unique across processes; a number
    /// whose change fails to commit is skipped, never reused.
    fn next_number(&self, counter: &str) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Timers due by `now` (and by the database's clock), earliest first, leased to the caller
    /// for `lease` so that no other process takes them meanwhile.
    fn claim_due(
        &self,
        now: i64,
        limit: u32,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<Vec<TimerRow>>> + Send;
    fn next_due(&self) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// Removes a timer that turned out to be void.
    fn drop_timer(&self, t: &TimerRow) -> impl Future<Output = StoreResult<()>> + Send;
    fn timers_of(&self, instance_id: i64) -> impl Future<Output = StoreResult<Vec<TimerRow>>> + Send;

    fn add_token(&self, token: &NewToken<'_>, now: i64) -> impl Future<Output = StoreResult<i64>> + Send;
    fn token_by_key(&self, key_id: &str) -> impl Future<Output = StoreResult<Option<TokenRow>>> + Send;
    fn tokens(&self) -> impl Future<Output = StoreResult<Vec<TokenRow>>> + Send;
    fn revoke_token(&self, id: i64, now: i64) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Adds an account (`id` ignored) and returns its id; a name already taken is
    /// `StoreError::Conflict`.
    fn add_account(&self, a: &AccountRow) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Writes an account's changeable columns (password, role, scope, roles, lock, state).
    fn update_account(&self, a: &AccountRow) -> impl Future<Output = StoreResult<()>> + Send;
    fn account(&self, id: i64) -> impl Future<Output = StoreResult<Option<AccountRow>>> + Send;
    fn account_by_name(&self, name: &str) -> impl Future<Output = StoreResult<Option<AccountRow>>> + Send;
    fn accounts(&self) -> impl Future<Output = StoreResult<Vec<AccountRow>>> + Send;
    fn add_session(&self, s: &SessionRow) -> impl Future<Output = StoreResult<()>> + Send;
    fn session(&self, id_hash: &str) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;
    /// Ends sessions; returns how many.
    fn end_sessions(&self, which: SessionsOf<'_>) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Undelivered notices due by `now`, leased to the caller for `lease`.
    fn claim_outbox(
        &self,
        now: i64,
        limit: u32,
        lease: Duration,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;
    fn outbox_result(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deliveries given up on (every attempt failed), oldest first.
    fn dead_letters(&self) -> impl Future<Output = StoreResult<Vec<DeadLetter>>> + Send;
    /// Puts dead letters (one, or all when `id` is `None`) back in line, due at `now`, with
    /// their attempts counted afresh. Returns how many.
    fn retry_dead(&self, id: Option<i64>, now: i64) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Drops dead letters (one, or all). Returns how many.
    fn discard_dead(&self, id: Option<i64>) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Closed cases last changed before `cutoff` with nothing left to deliver, by id, after
    /// `after_id`: what an archive takes.
    fn closed_before(
        &self,
        cutoff: i64,
        after_id: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<InstanceRow>>> + Send;
    /// How many cases [`Store::closed_before`] would hand out, per workflow.
    fn count_closed_before(&self, cutoff: i64) -> impl Future<Output = StoreResult<BTreeMap<String, u64>>> + Send;
    /// Removes a batch of closed cases (history, timers, idempotency keys), keeps their figures
    /// and records the purge, all or nothing; a case that is active or gone makes the batch a
    /// conflict. Returns the purge record's id.
    fn purge(&self, p: &Purge) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Figures kept for purged cases.
    fn kept_figures(&self) -> impl Future<Output = StoreResult<Vec<MonthFigures>>> + Send;
    /// What the cases created in `[from, to)` in `units` (as [`ListFilter::units`]; empty: every
    /// unit) count for, per unit and workflow; merged duplicates left out.
    fn raised_counts(
        &self,
        units: &[String],
        from: i64,
        to: i64,
    ) -> impl Future<Output = StoreResult<Vec<RaisedCounts>>> + Send;
    /// What the parties called on by those cases count for, per party.
    fn party_counts(
        &self,
        units: &[String],
        from: i64,
        to: i64,
    ) -> impl Future<Output = StoreResult<Vec<PartyCounts>>> + Send;
    /// Every case's unit, workflow, status and dates (for figures of cases still stored).
    fn case_dates(&self) -> impl Future<Output = StoreResult<Vec<CaseDates>>> + Send;
    /// Purges done, oldest first.
    fn purges(&self) -> impl Future<Output = StoreResult<Vec<PurgeRecord>>> + Send;

    /// Makes `versions` (workflow -> version id) the active set, with the status of the
    /// activation that chose it; returns the new epoch.
    fn set_active(
        &self,
        versions: &BTreeMap<String, i64>,
        changed_by: &str,
        status: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The active set's epoch (cheap: nodes poll it).
    fn active_epoch(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    fn active_set(&self) -> impl Future<Output = StoreResult<ActiveSet>> + Send;
    /// Takes the lead, or keeps it: true while this store's process is the one node that reads
    /// the workflows folder (a PostgreSQL session advisory lock, released when its connection
    /// ends; a SQLite store, one process to a file, always leads).
    fn try_lead(&self) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a node's heartbeat (inserting it the first time).
    fn heartbeat(&self, node: &NodeRow, now: i64) -> impl Future<Output = StoreResult<()>> + Send;
    /// Nodes heard from in the last day, most recent first.
    fn nodes(&self, now: i64) -> impl Future<Output = StoreResult<Vec<NodeRow>>> + Send;

    /// What `/metrics` shows of the database: active cases, timers and outbox.
    fn gauges(&self, now: i64) -> impl Future<Output = StoreResult<Gauges>> + Send;

    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// The durability commits actually get, as the database reports it (not as configured).
    fn durability(&self) -> impl Future<Output = StoreResult<Durability>> + Send;
    /// Writes a consistent copy of the whole database to `to` (a new file) while it serves,
    /// and reports what the copy holds after checking it.
    fn backup(&self, to: &std::path::Path) -> impl Future<Output = StoreResult<BackupReport>> + Send;
    /// Runs the database's own consistency check; `ok` when all is well.
    fn integrity_check(&self) -> impl Future<Output = StoreResult<String>> + Send;
    /// Finishes pending work and closes connections.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Runs `$e` on whichever backend `$self` is.
macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

/// The backend chosen at start-up.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl AnyStore {
    /// Takes the database for a serving process. SQLite allows one process to serve a file (a
    /// second one is refused, naming the file); a server database allows any number.
    pub fn hold(&self) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(s) => s.hold(),
            AnyStore::Postgres(_) => Ok(()),
        }
    }
}

/// What `yishi bench scale` generates: `instances` cases of `bench/counter` with ten events
/// each, the first `deadlines` of them `bench/timed` cases whose deadline is overdue; in 100
/// communities of the street `bench`, created a minute apart going back from `now` (a million
/// span about 23 months); the completed ones count for the statistics (each answered once).
#[derive(Clone, Copy, Debug)]
pub struct ScaleFixture {
    pub instances: i64,
    pub deadlines: i64,
    pub counter_version: i64,
    pub timed_version: i64,
    pub now: i64,
}

impl AnyStore {
    /// Generates the data of `yishi bench scale` in an empty database.
    pub async fn fill_scale_fixture(&self, f: &ScaleFixture) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(s) => s.fill_scale_fixture(f).await,
            AnyStore::Postgres(s) => s.fill_scale_fixture(f).await,
        }
    }
}

/// Rows in and out, for a database copy (`crate::copy`), in the layout of [`copy::TABLES`].
impl AnyStore {
    /// Rows of `table` after the key `after` (the key columns of the last row handed out), in
    /// key order.
    pub async fn export_rows(
        &self,
        table: &copy::TableSpec,
        after: Option<&[Value]>,
        limit: u32,
    ) -> StoreResult<Vec<Vec<Value>>> {
        each!(self, s => s.export_rows(table, after, limit).await)
    }

    /// Writes rows into `table` as they are (ids included), in one statement.
    pub async fn import_rows(&self, table: &copy::TableSpec, rows: &[Vec<Value>]) -> StoreResult<()> {
        each!(self, s => s.import_rows(table, rows).await)
    }

    pub async fn row_count(&self, table: &copy::TableSpec) -> StoreResult<i64> {
        each!(self, s => s.row_count(table).await)
    }

    /// After a copy: ids handed out next come after the copied ones.
    pub async fn finish_import(&self) -> StoreResult<()> {
        match self {
            // SQLite's next ids are read from the rows when a store opens.
            AnyStore::Sqlite(_) => Ok(()),
            AnyStore::Postgres(s) => s.finish_import().await,
        }
    }
}

/// Opens the database `options.url` names, applying migrations.
pub async fn open(options: &StoreOptions) -> StoreResult<AnyStore> {
    let url = options.url.as_str();
    if is_postgres(url) {
        return Ok(AnyStore::Postgres(postgres::PgStore::open(options).await?));
    }
    Ok(AnyStore::Sqlite(sqlite::SqliteStore::open(options).await?))
}

/// Whether a database address names a PostgreSQL server.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A private in-memory database (scenarios, tests, benchmarks of the engine alone).
pub async fn memory() -> StoreResult<AnyStore> {
    Ok(AnyStore::Sqlite(sqlite::SqliteStore::memory().await?))
}

/// A database address without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store for AnyStore {
    fn shared(&self) -> bool {
        each!(self, s => s.shared())
    }
    fn describe(&self) -> String {
        each!(self, s => s.describe())
    }
    fn commit_stats(&self) -> &CommitStats {
        each!(self, s => s.commit_stats())
    }
    async fn put_version(&self, v: &NewVersion<'_>, now: i64) -> StoreResult<VersionRow> {
        each!(self, s => s.put_version(v, now).await)
    }
    async fn versions(&self, workflow: Option<&str>) -> StoreResult<Vec<VersionRow>> {
        each!(self, s => s.versions(workflow).await)
    }
    async fn version(&self, id: i64) -> StoreResult<StoredVersion> {
        each!(self, s => s.version(id).await)
    }
    async fn active_counts(&self) -> StoreResult<BTreeMap<i64, i64>> {
        each!(self, s => s.active_counts().await)
    }
    async fn next_instance_id(&self) -> StoreResult<i64> {
        each!(self, s => s.next_instance_id().await)
    }
    async fn load(&self, id: i64) -> StoreResult<InstanceRow> {
        each!(self, s => s.load(id).await)
    }
    async fn history(&self, id: i64) -> StoreResult<Vec<EventRow>> {
        each!(self, s => s.history(id).await)
    }
    async fn list(&self, filter: &ListFilter) -> StoreResult<Vec<InstanceSummary>> {
        each!(self, s => s.list(filter).await)
    }
    async fn commit(&self, unit: &[Commit]) -> StoreResult<()> {
        each!(self, s => s.commit(unit).await)
    }
    async fn barrier(&self) -> StoreResult<()> {
        each!(self, s => s.barrier().await)
    }
    async fn idempotent_response(&self, key: &str) -> StoreResult<Option<Remembered>> {
        each!(self, s => s.idempotent_response(key).await)
    }
    async fn forget_idempotency(&self, key: &str) -> StoreResult<()> {
        each!(self, s => s.forget_idempotency(key).await)
    }
    async fn next_number(&self, counter: &str) -> StoreResult<i64> {
        each!(self, s => s.next_number(counter).await)
    }
    async fn claim_due(&self, now: i64, limit: u32, lease: Duration) -> StoreResult<Vec<TimerRow>> {
        each!(self, s => s.claim_due(now, limit, lease).await)
    }
    async fn next_due(&self) -> StoreResult<Option<i64>> {
        each!(self, s => s.next_due().await)
    }
    async fn drop_timer(&self, t: &TimerRow) -> StoreResult<()> {
        each!(self, s => s.drop_timer(t).await)
    }
    async fn timers_of(&self, instance_id: i64) -> StoreResult<Vec<TimerRow>> {
        each!(self, s => s.timers_of(instance_id).await)
    }
    async fn add_token(&self, token: &NewToken<'_>, now: i64) -> StoreResult<i64> {
        each!(self, s => s.add_token(token, now).await)
    }
    async fn token_by_key(&self, key_id: &str) -> StoreResult<Option<TokenRow>> {
        each!(self, s => s.token_by_key(key_id).await)
    }
    async fn tokens(&self) -> StoreResult<Vec<TokenRow>> {
        each!(self, s => s.tokens().await)
    }
    async fn revoke_token(&self, id: i64, now: i64) -> StoreResult<bool> {
        each!(self, s => s.revoke_token(id, now).await)
    }
    async fn add_account(&self, a: &AccountRow) -> StoreResult<i64> {
        each!(self, s => s.add_account(a).await)
    }
    async fn update_account(&self, a: &AccountRow) -> StoreResult<()> {
        each!(self, s => s.update_account(a).await)
    }
    async fn account(&self, id: i64) -> StoreResult<Option<AccountRow>> {
        each!(self, s => s.account(id).await)
    }
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRow>> {
        each!(self, s => s.account_by_name(name).await)
    }
    async fn accounts(&self) -> StoreResult<Vec<AccountRow>> {
        each!(self, s => s.accounts().await)
    }
    async fn add_session(&self, sn: &SessionRow) -> StoreResult<()> {
        each!(self, s => s.add_session(sn).await)
    }
    async fn session(&self, id_hash: &str) -> StoreResult<Option<SessionRow>> {
        each!(self, s => s.session(id_hash).await)
    }
    async fn end_sessions(&self, which: SessionsOf<'_>) -> StoreResult<u64> {
        each!(self, s => s.end_sessions(which).await)
    }
    async fn claim_outbox(&self, now: i64, limit: u32, lease: Duration) -> StoreResult<Vec<OutboxRow>> {
        each!(self, s => s.claim_outbox(now, limit, lease).await)
    }
    async fn outbox_result(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        each!(self, s => s.outbox_result(id, delivered, error, retry_at, now).await)
    }
    async fn ping(&self) -> StoreResult<()> {
        each!(self, s => s.ping().await)
    }
    async fn integrity_check(&self) -> StoreResult<String> {
        each!(self, s => s.integrity_check().await)
    }
    async fn durability(&self) -> StoreResult<Durability> {
        each!(self, s => s.durability().await)
    }
    async fn backup(&self, to: &std::path::Path) -> StoreResult<BackupReport> {
        each!(self, s => s.backup(to).await)
    }
    async fn dead_letters(&self) -> StoreResult<Vec<DeadLetter>> {
        each!(self, s => s.dead_letters().await)
    }
    async fn gauges(&self, now: i64) -> StoreResult<Gauges> {
        each!(self, s => s.gauges(now).await)
    }
    async fn closed_before(&self, cutoff: i64, after_id: i64, limit: u32) -> StoreResult<Vec<InstanceRow>> {
        each!(self, s => s.closed_before(cutoff, after_id, limit).await)
    }
    async fn purge(&self, p: &Purge) -> StoreResult<i64> {
        each!(self, s => s.purge(p).await)
    }
    async fn count_closed_before(&self, cutoff: i64) -> StoreResult<BTreeMap<String, u64>> {
        each!(self, s => s.count_closed_before(cutoff).await)
    }
    async fn kept_figures(&self) -> StoreResult<Vec<MonthFigures>> {
        each!(self, s => s.kept_figures().await)
    }
    async fn raised_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<Vec<RaisedCounts>> {
        each!(self, s => s.raised_counts(units, from, to).await)
    }
    async fn party_counts(&self, units: &[String], from: i64, to: i64) -> StoreResult<Vec<PartyCounts>> {
        each!(self, s => s.party_counts(units, from, to).await)
    }
    async fn case_dates(&self) -> StoreResult<Vec<CaseDates>> {
        each!(self, s => s.case_dates().await)
    }
    async fn purges(&self) -> StoreResult<Vec<PurgeRecord>> {
        each!(self, s => s.purges().await)
    }
    async fn retry_dead(&self, id: Option<i64>, now: i64) -> StoreResult<u64> {
        each!(self, s => s.retry_dead(id, now).await)
    }
    async fn discard_dead(&self, id: Option<i64>) -> StoreResult<u64> {
        each!(self, s => s.discard_dead(id).await)
    }
    async fn set_active(
        &self,
        versions: &BTreeMap<String, i64>,
        changed_by: &str,
        status: &str,
        now: i64,
    ) -> StoreResult<i64> {
        each!(self, s => s.set_active(versions, changed_by, status, now).await)
    }
    async fn active_epoch(&self) -> StoreResult<i64> {
        each!(self, s => s.active_epoch().await)
    }
    async fn active_set(&self) -> StoreResult<ActiveSet> {
        each!(self, s => s.active_set().await)
    }
    async fn try_lead(&self) -> StoreResult<bool> {
        each!(self, s => s.try_lead().await)
    }
    async fn heartbeat(&self, node: &NodeRow, now: i64) -> StoreResult<()> {
        each!(self, s => s.heartbeat(node, now).await)
    }
    async fn nodes(&self, now: i64) -> StoreResult<Vec<NodeRow>> {
        each!(self, s => s.nodes(now).await)
    }
    async fn close(&self) {
        each!(self, s => s.close().await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_leave_the_address() {
        assert_eq!(super::redact("postgres://yishi:s3cret@db/yishi"), "postgres://yishi:***@db/yishi");
        assert_eq!(super::redact("postgres://yishi@db/yishi"), "postgres://yishi@db/yishi");
        assert_eq!(super::redact("yishi.db"), "yishi.db");
    }
}
