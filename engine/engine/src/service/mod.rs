//! The engine as a running service, behind one facade ([`Engine`]): the CLI, the API, the
//! console and the reloader call these functions and nothing below them.
//!
//! - [`cases`]: starting cases and acting on them (one instance at a time, under its slot);
//! - [`catalog`]: the active versions and the one activation path (check, scenario gate,
//!   store, swap), versions, sources and diffs;
//! - [`timers`]: deadlines firing; [`outbox`]: webhooks and linked cases after the commit;
//! - [`access`]: API tokens; [`metrics`]: counters for `/metrics`.
//!
//! Invariants:
//! - an instance is changed only while its slot lock is held, so two actions on one instance
//!   in this process never interleave; the store's revision check catches everything else
//!   (another process on a shared database);
//! - a caller is answered only after the commit that holds its change is durable;
//! - a failed commit leaves nothing behind: the cached copy of the instance is dropped and
//!   reloaded from the store next time; on a shared database nothing is cached at all.

pub mod access;
pub mod accounts;
mod cases;
pub mod catalog;
pub mod cluster;
pub mod duplicates;
pub mod gatherings;
pub mod metrics;
pub mod outbox;
pub mod retention;
pub mod stats;
mod timers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;
use yishi_core::clock::Clock;
use yishi_core::definition::Definition;
use yishi_core::i18n::Message;
use yishi_core::kind::Registry;
use yishi_core::msg;
use yishi_core::runtime::{RunError, Status};
use yishi_core::script::Sandbox;

pub use self::cases::{AcceptedAction, IDEMPOTENCY_TTL_MS, Idempotency, Intake, MAX_REFUSALS_PER_HOUR, MigrationPlan};
pub use self::catalog::{Active, ReloadStatus};
pub use self::outbox::{MAX_DELIVERY_ATTEMPTS, WebhookSender};
use crate::store::{AnyStore, Commit, InstanceRow, Store, StoreError, VersionRow};

/// Errors of engine operations, by what the client should do. What a person reads is a
/// [`Message`]; what only an operator should read (storage and internal failures) is text for
/// the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(Message),
    /// Stale revision or a concurrent change: reload and retry.
    #[error("{0}")]
    Conflict(Message),
    /// The instance is closed.
    #[error("{0}")]
    Closed(Message),
    /// The actor lacks the role.
    #[error("{0}")]
    Forbidden(Message),
    /// The action or its payload is not acceptable; `field` names the culprit.
    #[error("{message}")]
    Refused { message: Message, field: Option<String> },
    /// A script of the workflow failed; recorded against the instance.
    #[error("{0}")]
    ScriptFailed(Message),
    #[error("{0}")]
    BadRequest(Message),
    /// An idempotency key sent again with a different request.
    #[error("{0}")]
    KeyReused(Message),
    /// Storage is unavailable (disk full, read-only, busy, unreachable); retry later. The
    /// detail is for the log.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A defect or corrupt data; the detail is for the log.
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// What to tell a person (storage and internal failures in general words).
    pub fn message(&self) -> Message {
        match self {
            EngineError::NotFound(m)
            | EngineError::Conflict(m)
            | EngineError::Closed(m)
            | EngineError::Forbidden(m)
            | EngineError::Refused { message: m, .. }
            | EngineError::ScriptFailed(m)
            | EngineError::BadRequest(m)
            | EngineError::KeyReused(m) => m.clone(),
            EngineError::Unavailable(_) => msg!("engine-unavailable"),
            EngineError::Internal(_) => msg!("engine-internal"),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => EngineError::NotFound(msg!("engine-not-found", what = m)),
            StoreError::Conflict(m) => {
                tracing::debug!(detail = %m, "conflict");
                EngineError::Conflict(msg!("engine-conflict"))
            }
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Fatal(m) => EngineError::Internal(m),
            StoreError::Held(path) => EngineError::Conflict(msg!("store-held", path = path)),
        }
    }
}

pub(crate) fn run_error(e: RunError) -> EngineError {
    match e {
        e @ RunError::Closed(_) => EngineError::Closed(e.message()),
        RunError::NoSuchStep(m) => EngineError::Refused { message: m, field: Some("step".into()) },
        RunError::NoSuchToken(m) => EngineError::Refused { message: m, field: Some("token".into()) },
        RunError::Forbidden { message } => EngineError::Forbidden(message),
        RunError::Refused { message, field } => EngineError::Refused { message, field },
        e @ (RunError::Script { .. } | RunError::Step { .. } | RunError::Runaway(_)) => {
            EngineError::ScriptFailed(e.message())
        }
    }
}

/// A case as shown to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct InstanceView {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    /// The number of the workflow's version the case runs on (1, 2 ...).
    pub version: i64,
    /// That version's content hash.
    pub version_id: String,
    /// How many changes the case has had; send it back as `If-Match` to act on exactly this state.
    pub revision: i64,
    pub status: Status,
    pub outcome: Option<String>,
    pub active_steps: Vec<String>,
    /// How urgent the case is (one of its workflow's `urgency` levels), when the workflow
    /// declares levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    pub data: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Message>,
}

impl InstanceView {
    /// The view of a stored instance running on version `v`.
    pub fn of(row: &InstanceRow, v: &VersionRow) -> Self {
        InstanceView {
            id: row.id,
            unit: row.unit.clone(),
            workflow: row.workflow.clone(),
            version: v.seq,
            version_id: v.hash.clone(),
            revision: row.revision,
            status: row.state.status,
            outcome: row.state.outcome.clone(),
            active_steps: row.state.active_steps().into_iter().map(str::to_owned).collect(),
            urgency: row.state.urgency.clone(),
            data: row.state.data.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            error: row.state.error.clone(),
        }
    }
}

/// One instance's place in this process: its cached copy, and the lock that serialises it.
#[derive(Default)]
pub(crate) struct Slot {
    row: Option<InstanceRow>,
    /// Set while a commit of this instance is under way. Still set afterwards only if its
    /// caller went away before the commit returned (an HTTP client disconnecting): the commit
    /// may still land, so the next user waits for it before reading the instance.
    unsettled: bool,
}

type SlotGuard<'a> = tokio::sync::MutexGuard<'a, Slot>;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Instances kept in memory between actions (on a database this process alone writes).
    pub cache_instances: usize,
    /// Timers fired concurrently.
    pub timer_concurrency: usize,
    /// Log notices and refused actions, and count what happens in the metrics (off for
    /// scenario runs, which simulate cases, and for benchmarks).
    pub observed: bool,
    /// The language of text the engine sends or writes without a person asking: webhook
    /// notices and log lines.
    pub lang: yishi_core::i18n::Lang,
    /// How often a node takes its round (lead, follow, heartbeat); a node silent for five
    /// rounds counts as gone.
    pub node_interval: std::time::Duration,
    /// How long a node trusts a token it read, on a database several nodes share: a token
    /// revoked through another node is refused here within this bound.
    pub token_ttl: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_instances: 10_000,
            timer_concurrency: 256,
            observed: true,
            lang: yishi_core::i18n::Lang::default(),
            node_interval: std::time::Duration::from_secs(1),
            token_ttl: std::time::Duration::from_secs(1),
        }
    }
}

/// The running engine.
pub struct Engine {
    store: AnyStore,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    sandbox: Arc<Sandbox>,
    active: RwLock<Arc<Active>>,
    /// Stored versions and their compiled definitions, by version id.
    versions: Mutex<HashMap<i64, (VersionRow, Arc<Definition>)>>,
    /// Refusals recorded per (instance, actor) in the current hour (see [`cases`]).
    refusals: Mutex<HashMap<(i64, String), cases::RefusalWindow>>,
    slots: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Slot>>>>,
    /// One activation at a time.
    activation: tokio::sync::Mutex<()>,
    last_reload: Mutex<Option<ReloadStatus>>,
    /// The last activations this process made, newest last (see [`Engine::reload_history`]).
    reload_history: Mutex<std::collections::VecDeque<ReloadStatus>>,
    /// Token rows by key id, with when they were read.
    token_cache: Mutex<HashMap<String, (crate::store::TokenRow, std::time::Instant)>>,
    /// The epoch of the database's active set this engine runs (see [`Engine::follow`]).
    followed: std::sync::atomic::AtomicI64,
    timer_wake: Notify,
    /// When the timer loop means to look for due timers next (engine clock, ms); `i64::MAX`
    /// while it is reading them. A commit wakes it only for a timer due before that.
    timer_wake_at: std::sync::atomic::AtomicI64,
    outbox_wake: Notify,
    config: Config,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("store", &self.store.describe()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates the engine on a store. Activate workflows with [`Engine::activate_files`].
    pub fn new(store: AnyStore, registry: Registry, clock: Arc<dyn Clock>, config: Config) -> Arc<Self> {
        Arc::new(Engine {
            store,
            clock,
            registry: Arc::new(registry),
            sandbox: Arc::new(Sandbox::default()),
            active: RwLock::new(Arc::new(Active::default())),
            versions: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            activation: tokio::sync::Mutex::new(()),
            last_reload: Mutex::new(None),
            reload_history: Mutex::new(std::collections::VecDeque::new()),
            followed: std::sync::atomic::AtomicI64::new(0),
            token_cache: Mutex::new(HashMap::new()),
            timer_wake: Notify::new(),
            timer_wake_at: std::sync::atomic::AtomicI64::new(i64::MAX),
            outbox_wake: Notify::new(),
            config,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
    pub fn active(&self) -> Arc<Active> {
        self.active.read().expect("active lock").clone()
    }
    /// The database, for logs (never a password).
    pub fn database(&self) -> String {
        self.store.describe()
    }
    /// Commit units applied, the transactions that carried them, and microseconds spent.
    pub fn commit_totals(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.store.commit_stats();
        (s.units.load(Relaxed), s.transactions.load(Relaxed), s.micros.load(Relaxed))
    }

    /// Whether the database answers.
    /// Whether the database passes its own consistency check (a backup before it is restored).
    pub async fn backup_check(&self) -> Result<(), EngineError> {
        match self.store.integrity_check().await?.as_str() {
            "ok" => Ok(()),
            problem => Err(EngineError::Refused { message: msg!("backup-damaged", detail = problem), field: None }),
        }
    }

    /// A consistent, checked copy of the database in the new file `to`, taken while serving.
    pub async fn backup(&self, to: &std::path::Path) -> Result<crate::store::BackupReport, EngineError> {
        self.store.backup(to).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => {
                EngineError::Conflict(msg!("backup-target-exists", path = to.display().to_string()))
            }
            e => e.into(),
        })
    }

    /// The durability commits actually get, as the database reports it.
    pub async fn durability(&self) -> Result<crate::store::Durability, EngineError> {
        Ok(self.store.durability().await?)
    }

    pub async fn ping(&self) -> Result<(), EngineError> {
        Ok(self.store.ping().await?)
    }

    /// Takes the database for this serving process (see [`AnyStore::hold`]).
    pub fn hold_database(&self) -> Result<(), EngineError> {
        Ok(self.store.hold()?)
    }

    /// Generates the data of `yishi bench scale` (see [`crate::store::ScaleFixture`]).
    pub async fn fill_scale_fixture(&self, f: &crate::store::ScaleFixture) -> Result<(), EngineError> {
        Ok(self.store.fill_scale_fixture(f).await?)
    }

    /// Finishes pending commits and closes the database.
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// The slot of instance `id`.
    fn slot(&self, id: i64) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().expect("slots lock");
        if slots.len() > self.config.cache_instances {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(id).or_default().clone()
    }

    /// The instance as stored, from the slot's cache where that can be trusted.
    async fn loaded<'a>(&self, id: i64, guard: &'a mut Slot) -> Result<&'a mut InstanceRow, EngineError> {
        if guard.unsettled {
            // Everything already sent is applied (or failed) once the barrier returns.
            self.store.barrier().await?;
            guard.unsettled = false;
            guard.row = None;
        }
        if guard.row.is_none() || self.store.shared() {
            guard.row = Some(self.store.load(id).await.map_err(|e| match e {
                StoreError::NotFound(_) => EngineError::NotFound(msg!("engine-no-instance", id = id)),
                e => e.into(),
            })?);
        }
        Ok(guard.row.as_mut().expect("just loaded"))
    }

    /// Commits one change of the instance whose slot is `slot`, marking it unsettled meanwhile;
    /// on failure the cached copy is dropped.
    async fn write(&self, slot: &mut Slot, commit: &Commit) -> Result<(), StoreError> {
        slot.unsettled = true;
        let result = self.store.commit(std::slice::from_ref(commit)).await;
        slot.unsettled = false;
        if let Err(e) = &result {
            slot.row = None;
            if !matches!(e, StoreError::Conflict(_)) {
                tracing::warn!(error = %e, "commit failed");
            }
        }
        result
    }
}
