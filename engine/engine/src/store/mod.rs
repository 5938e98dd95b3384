//! Durable storage behind a narrow trait, so that a second backend (PostgreSQL) can be added
//! without touching the runtime. SQLite is the embedded default ([`sqlite::SqliteStore`]).

pub mod sqlite;

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;
use serde_json::Value;

use yishi_core::runtime::{Event, InstanceState, TimerChange};

/// Errors split by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Someone else changed the instance first; reload and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A passing condition (database busy, disk full, read-only file); retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Corrupt or impossible data; give up and tell an operator.
    #[error("storage failure: {0}")]
    Fatal(String),
}

/// A stored version of a workflow.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct VersionRow {
    /// The version's id, unique across workflows.
    pub id: i64,
    pub workflow: String,
    /// 1, 2, 3 ... per workflow.
    pub seq: i64,
    pub hash: String,
    pub created_at: i64,
}

/// A stored instance.
#[derive(Clone, Debug)]
pub struct InstanceRow {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    pub version: i64,
    pub revision: i64,
    pub last_seq: i64,
    pub state: InstanceState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One event as stored.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct EventRow {
    pub seq: i64,
    pub at: i64,
    pub version: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// A listing entry.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct InstanceSummary {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    pub version: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub active_steps: Vec<String>,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters for listing instances. Every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    /// Units (exact path, or a prefix ending in `/` for a whole street or district).
    pub units: Option<Vec<String>>,
    pub workflow: Option<String>,
    pub version: Option<i64>,
    pub status: Option<String>,
    pub step: Option<String>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub updated_from: Option<i64>,
    pub updated_to: Option<i64>,
    /// A top-level field of the data document and the value it must equal.
    pub data: Option<(String, Value)>,
    /// Return instances with an id below this (cursor pagination, newest first).
    pub before: Option<i64>,
    pub limit: u32,
}

/// A timer that is due.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerRow {
    pub instance_id: i64,
    pub token: u32,
    pub name: String,
    pub step: String,
    pub due_at: i64,
}

/// One instance's change, committed atomically with its events (and with the other changes
/// of the same batch).
#[derive(Clone, Debug)]
pub struct Commit {
    pub instance_id: i64,
    /// Set when the instance is new: (unit, workflow).
    pub create: Option<(String, String)>,
    pub version: i64,
    /// The revision the change was computed from (0 for a new instance). The commit fails
    /// with a conflict if the stored revision differs.
    pub base_revision: i64,
    /// The new state; `None` records events only (a refused action) and keeps the revision.
    pub state: Option<InstanceState>,
    /// Events with their times, numbered from `first_seq`.
    pub events: Vec<(Event, i64)>,
    pub first_seq: i64,
    pub timers: Vec<TimerChange>,
    /// Idempotency key and the response to keep for it.
    pub idempotency: Option<(String, String)>,
    /// Work to do after the commit: webhook notices and cases to spawn.
    pub outbox: Vec<Value>,
    /// Counter values to store (registration numbers).
    pub counters: Vec<(String, i64)>,
    pub now: i64,
}

impl Commit {
    /// A commit that changes nothing. Committed after other commits, it returns once they
    /// have been applied (a barrier).
    pub fn nothing(now: i64) -> Self {
        Commit {
            instance_id: 0,
            create: None,
            version: 0,
            base_revision: 0,
            state: None,
            events: Vec::new(),
            first_seq: 0,
            timers: Vec::new(),
            idempotency: None,
            outbox: Vec::new(),
            counters: Vec::new(),
            now,
        }
    }

    /// The sequence number of the commit's last event (the instance's `last_seq` after it).
    pub fn last_seq(&self) -> i64 {
        self.first_seq + self.events.len() as i64 - 1
    }
}

/// An API token as stored (never the secret).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
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
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    pub instance_id: i64,
    pub notice: Value,
    pub attempts: i64,
}

/// The storage interface the service needs. Implementations must make each [`Store::commit`]
/// batch atomic: all of it, or none of it.
pub trait Store: Send + Sync + 'static {
    /// Stores a version if its hash is new for the workflow; returns the (existing or new) row.
    fn put_version(
        &self,
        workflow: &str,
        hash: &str,
        sources: &BTreeMap<String, String>,
        effective: &Value,
        now: i64,
    ) -> impl Future<Output = Result<VersionRow, StoreError>> + Send;
    fn versions(&self, workflow: Option<&str>) -> impl Future<Output = Result<Vec<VersionRow>, StoreError>> + Send;
    /// A version with its sources and effective definition.
    fn version(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<(VersionRow, BTreeMap<String, String>, Value), StoreError>> + Send;
    /// Active instances per version id.
    fn active_counts(&self) -> impl Future<Output = Result<BTreeMap<i64, i64>, StoreError>> + Send;
    fn max_instance_id(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn load(&self, id: i64) -> impl Future<Output = Result<InstanceRow, StoreError>> + Send;
    fn history(&self, id: i64) -> impl Future<Output = Result<Vec<EventRow>, StoreError>> + Send;
    fn list(&self, filter: &ListFilter) -> impl Future<Output = Result<Vec<InstanceSummary>, StoreError>> + Send;
    /// Applies a batch in one transaction. On error nothing of the batch is kept.
    fn commit(&self, batch: &[Commit]) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn idempotent_response(&self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Timers due at or before `now`, earliest first.
    fn due_timers(&self, now: i64, limit: u32) -> impl Future<Output = Result<Vec<TimerRow>, StoreError>> + Send;
    fn next_due(&self) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;
    /// Removes a timer that turned out to be void.
    fn drop_timer(&self, t: &TimerRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn timers_of(&self, instance_id: i64) -> impl Future<Output = Result<Vec<TimerRow>, StoreError>> + Send;
    fn add_token(&self, token: &NewToken<'_>, now: i64) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn token_by_key(&self, key_id: &str) -> impl Future<Output = Result<Option<TokenRow>, StoreError>> + Send;
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRow>, StoreError>> + Send;
    fn revoke_token(&self, id: i64, now: i64) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn pending_outbox(&self, now: i64, limit: u32) -> impl Future<Output = Result<Vec<OutboxRow>, StoreError>> + Send;
    fn outbox_result(
        &self,
        id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The last number handed out by a counter (0 if never used).
    fn counter(&self, name: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Runs the database's own consistency check.
    fn integrity_check(&self) -> impl Future<Output = Result<String, StoreError>> + Send;
}
