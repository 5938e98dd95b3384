//! The engine as a running service: the active catalog, per-instance serialisation, group
//! commit, timers, and the operations the API and CLI call.
//!
//! Invariants:
//! - an instance is changed only while its slot lock is held, so two actions on one instance
//!   never interleave; the store's revision check catches anything that slips past (a second
//!   process);
//! - a caller is answered only after the commit that holds its change is durable;
//! - a failed commit leaves nothing behind: the cached copy of the instance is dropped and
//!   reloaded from the store next time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::store::{
    Commit, EventRow, InstanceRow, InstanceSummary, ListFilter, Store, StoreError, TimerRow, VersionRow,
};
use yishi_core::check::{Catalog, check};
use yishi_core::clock::Clock;
use yishi_core::definition::Definition;
use yishi_core::diag::Diagnostic;
use yishi_core::files::FileSet;
use yishi_core::kind::{Actor, Registry};
use yishi_core::runtime::{self, ActionRequest, Event, RunError, Status, TimerChange, Transition};
use yishi_core::script::Sandbox;

/// Errors of engine operations, by what the client should do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    /// Stale revision or a concurrent change: reload and retry.
    #[error("{0}")]
    Conflict(String),
    /// The instance is closed.
    #[error("{0}")]
    Closed(String),
    /// The actor lacks the role.
    #[error("{0}")]
    Forbidden(String),
    /// The action or its payload is not acceptable; `field` names the culprit.
    #[error("{message}")]
    Refused { message: String, field: Option<String> },
    /// A script of the workflow failed; recorded against the instance.
    #[error("{0}")]
    ScriptFailed(String),
    #[error("{0}")]
    BadRequest(String),
    /// Storage is unavailable (disk full, read-only, busy); retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => EngineError::NotFound(m),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Fatal(m) => EngineError::Internal(m),
        }
    }
}

fn run_error(e: RunError) -> EngineError {
    match e {
        RunError::Closed(s) => EngineError::Closed(format!("the case is {s}; it accepts no more actions")),
        RunError::NoSuchStep(m) => EngineError::Refused { message: m, field: Some("step".into()) },
        RunError::Forbidden { message } => EngineError::Forbidden(message),
        RunError::Refused { message, field } => EngineError::Refused { message, field },
        e @ (RunError::Script { .. } | RunError::Step { .. } | RunError::Runaway(_)) => {
            EngineError::ScriptFailed(e.to_string())
        }
    }
}

/// The currently active workflows.
#[derive(Debug, Default)]
pub struct Active {
    pub catalog: Catalog,
    /// `unit/id` -> the stored version and its compiled definition.
    pub current: BTreeMap<String, (VersionRow, Arc<Definition>)>,
    /// Diagnostics of the last reload (empty when it was clean).
    pub diagnostics: Vec<Diagnostic>,
    /// Unix ms of the last reload, and whether it changed anything.
    pub reloaded_at: i64,
    pub generation: u64,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ReloadReport {
    pub ok: bool,
    /// Workflows whose active version changed: (`unit/id`, new version seq).
    pub activated: Vec<(String, i64)>,
    /// Workflows that failed to check and kept their last good version (if any).
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub actions_applied: AtomicU64,
    pub actions_refused: AtomicU64,
    pub actions_failed: AtomicU64,
    pub instances_started: AtomicU64,
    pub transitions: AtomicU64,
    pub timers_fired: AtomicU64,
    pub commits: AtomicU64,
    pub commit_batches: AtomicU64,
    pub commit_micros: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    fn record_batch(&self, commits: usize, took: StdDuration) {
        self.commit_batches.fetch_add(1, Ordering::Relaxed);
        self.commits.fetch_add(commits as u64, Ordering::Relaxed);
        self.commit_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// A case as shown to clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct InstanceView {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    pub version: i64,
    pub revision: i64,
    pub status: Status,
    pub outcome: Option<String>,
    pub active_steps: Vec<String>,
    pub data: Map<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InstanceView {
    /// The view of a stored instance.
    pub fn of(row: &InstanceRow) -> Self {
        InstanceView {
            id: row.id,
            unit: row.unit.clone(),
            workflow: row.workflow.clone(),
            version: row.version,
            revision: row.revision,
            status: row.state.status,
            outcome: row.state.outcome.clone(),
            active_steps: row.state.active_steps().into_iter().map(str::to_owned).collect(),
            data: row.state.data.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            error: row.state.error.clone(),
        }
    }
}

/// An action the instance accepts now, and from whom.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AcceptedAction {
    pub step: String,
    pub action: String,
    pub summary: String,
    pub roles: Vec<String>,
    pub fields: Vec<yishi_core::kind::Field>,
}

struct WriteReq {
    commit: Commit,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
struct Slot {
    row: Option<InstanceRow>,
    /// Set while a commit of this instance is under way. Still set afterwards only if its
    /// caller went away before the commit returned (an HTTP client disconnecting): the commit
    /// may still land, so the next user waits for it before reading the instance.
    unsettled: bool,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most commits in one transaction.
    pub max_batch: usize,
    /// Instances kept in memory between actions.
    pub cache_instances: usize,
    /// Timers fired concurrently.
    pub timer_concurrency: usize,
    /// Log notices and refused actions (off for scenario runs, which simulate cases).
    pub log_activity: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_batch: 1024, cache_instances: 10_000, timer_concurrency: 256, log_activity: true }
    }
}

/// The running engine.
pub struct Engine<S: Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    registry: Arc<Registry>,
    sandbox: Arc<Sandbox>,
    active: RwLock<Arc<Active>>,
    versions: Mutex<HashMap<i64, Arc<Definition>>>,
    slots: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Slot>>>>,
    next_id: AtomicI64,
    writer: mpsc::UnboundedSender<WriteReq>,
    /// Requests sent to the writer task and not yet taken by it.
    queued: Arc<AtomicUsize>,
    /// Held by whoever is committing: the writer task, or a caller committing alone.
    commit_gate: Arc<tokio::sync::Mutex<()>>,
    timer_wake: Notify,
    outbox_wake: Notify,
    counters: tokio::sync::Mutex<HashMap<String, i64>>,
    config: Config,
    pub metrics: Metrics,
}

impl<S: Store> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl<S: Store> Engine<S> {
    /// Creates the engine and starts its writer task. Call [`Engine::reload`] to load workflows.
    pub async fn new(
        store: S,
        registry: Registry,
        clock: Arc<dyn Clock>,
        config: Config,
    ) -> Result<Arc<Self>, EngineError> {
        let store = Arc::new(store);
        let max = store.max_instance_id().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let commit_gate = Arc::new(tokio::sync::Mutex::new(()));
        let engine = Arc::new(Engine {
            store: store.clone(),
            clock,
            registry: Arc::new(registry),
            sandbox: Arc::new(Sandbox::default()),
            active: RwLock::new(Arc::new(Active::default())),
            versions: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicI64::new(max + 1),
            writer: tx,
            queued: queued.clone(),
            commit_gate: commit_gate.clone(),
            timer_wake: Notify::new(),
            outbox_wake: Notify::new(),
            counters: tokio::sync::Mutex::new(HashMap::new()),
            config,
            metrics: Metrics::default(),
        });
        let weak = Arc::downgrade(&engine);
        tokio::spawn(writer_loop(store, rx, queued, commit_gate, weak));
        Ok(engine)
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
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

    /// Checks `files` and activates every workflow that checks clean. A workflow whose files
    /// have errors keeps its last good version; the diagnostics are reported.
    pub async fn reload(&self, files: &FileSet) -> Result<ReloadReport, EngineError> {
        let catalog = check(files, &self.registry, &self.sandbox);
        self.activate(catalog).await
    }

    /// Activates a checked catalog (see [`Engine::reload`]).
    pub async fn activate(&self, catalog: Catalog) -> Result<ReloadReport, EngineError> {
        let now = self.now();
        let old = self.active();
        let mut current = BTreeMap::new();
        let mut activated = Vec::new();
        for (key, def) in &catalog.definitions {
            let row = self.store.put_version(key, &def.hash, &def.sources, &def.effective, now).await?;
            if old.current.get(key).is_none_or(|(r, _)| r.id != row.id) {
                activated.push((key.clone(), row.seq));
            }
            self.versions.lock().expect("versions lock").insert(row.id, def.clone());
            current.insert(key.clone(), (row, def.clone()));
        }
        let mut kept = Vec::new();
        for key in catalog.failed.keys() {
            if let Some(prev) = old.current.get(key) {
                current.insert(key.clone(), prev.clone());
            }
            kept.push(key.clone());
        }
        let removed: Vec<String> = old.current.keys().filter(|k| !current.contains_key(*k)).cloned().collect();
        let ok = !catalog.has_errors();
        let diagnostics = catalog.diagnostics.clone();
        if ok {
            self.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
        let next = Active {
            catalog,
            current,
            diagnostics: diagnostics.clone(),
            reloaded_at: now,
            generation: old.generation + 1,
        };
        *self.active.write().expect("active lock") = Arc::new(next);
        Ok(ReloadReport { ok, activated, kept, removed, diagnostics })
    }

    /// The compiled definition of a stored version, rebuilt from its stored files if needed.
    pub async fn definition(&self, version: i64) -> Result<Arc<Definition>, EngineError> {
        if let Some(d) = self.versions.lock().expect("versions lock").get(&version) {
            return Ok(d.clone());
        }
        let (row, sources, _) = self.store.version(version).await?;
        let files = FileSet::from_map(sources);
        let catalog = check(&files, &self.registry, &self.sandbox);
        let def = catalog.definitions.get(&row.workflow).cloned().ok_or_else(|| {
            let why = catalog.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            EngineError::Internal(format!(
                "stored version {} of `{}` no longer compiles with this build: {why}",
                row.seq, row.workflow
            ))
        })?;
        self.versions.lock().expect("versions lock").insert(version, def.clone());
        Ok(def)
    }

    fn slot(&self, id: i64) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().expect("slots lock");
        if slots.len() > self.config.cache_instances {
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(id).or_default().clone()
    }

    /// Commits one change and returns once it is durable. When no other commit is under way
    /// or waiting, the caller commits it itself, saving two hand-overs between tasks; otherwise
    /// the writer task puts it into the next batch with everything else that is waiting.
    async fn write(&self, commit: Commit) -> Result<(), StoreError> {
        if self.queued.load(Ordering::Acquire) == 0
            && let Ok(_gate) = self.commit_gate.try_lock()
        {
            let started = Instant::now();
            let result = self.store.commit(std::slice::from_ref(&commit)).await;
            self.metrics.record_batch(1, started.elapsed());
            if let Err(e) = &result {
                tracing::warn!(error = %e, "commit failed");
            }
            return result;
        }
        let (tx, rx) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.writer.send(WriteReq { commit, done: tx }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StoreError::Unavailable("the engine is shutting down".into()));
        }
        rx.await.map_err(|_| StoreError::Unavailable("the engine is shutting down".into()))?
    }

    /// [`Engine::write`] for the instance whose slot is `slot`, marking it unsettled meanwhile.
    async fn write_slot(&self, slot: &mut Slot, commit: Commit) -> Result<(), StoreError> {
        slot.unsettled = true;
        let result = self.write(commit).await;
        slot.unsettled = false;
        result
    }

    /// Starts a case of workflow `unit/id` with `data`.
    pub async fn start(
        &self,
        workflow: &str,
        data: Map<String, Value>,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> Result<InstanceView, EngineError> {
        let idem = idempotency_key.map(|k| format!("start:{workflow}:{k}"));
        if let Some(key) = &idem
            && let Some(resp) = self.store.idempotent_response(key).await?
        {
            return serde_json::from_str(&resp).map_err(|e| EngineError::Internal(e.to_string()));
        }
        let active = self.active();
        let Some((row, def)) = active.current.get(workflow).cloned() else {
            let known: Vec<&str> = active.current.keys().map(String::as_str).collect();
            let hint = yishi_core::diag::did_you_mean(workflow, known.iter().copied()).unwrap_or_default();
            return Err(EngineError::NotFound(format!("no active workflow `{workflow}` {hint}").trim().to_owned()));
        };
        if def.is_abstract {
            return Err(EngineError::Refused {
                message: format!(
                    "workflow `{workflow}` is a template (abstract); start one of the workflows that extend it"
                ),
                field: Some("workflow".into()),
            });
        }
        let now = self.now();
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut t = runtime::start(&def, data, now, id).map_err(run_error)?;
        self.fill_numbers(&mut t).await?;
        if let Some(Event::Started { .. }) = t.events.first() {
            // Record who started the case.
            t.events.insert(
                1,
                Event::Action {
                    action: "start".into(),
                    step: def.steps[def.start].id.clone(),
                    token: 0,
                    actor: actor.clone(),
                    on_behalf_of: None,
                    payload: Map::new(),
                },
            );
        }
        let state = t.state.clone();
        let events = t.events.len() as i64;
        let view_row = InstanceRow {
            id,
            unit: def.unit.clone(),
            workflow: def.key.clone(),
            version: row.id,
            revision: 1,
            last_seq: events,
            state,
            created_at: now,
            updated_at: now,
        };
        let view = InstanceView::of(&view_row);
        let commit = self.commit_of(
            id,
            Some((def.unit.clone(), def.key.clone())),
            row.id,
            0,
            1,
            t,
            now,
            idem.map(|k| (k, serde_json::to_string(&view).unwrap_or_default())),
        );
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        match self.write_slot(&mut guard, commit).await {
            Ok(()) => {
                guard.row = Some(view_row);
                self.metrics.instances_started.fetch_add(1, Ordering::Relaxed);
                self.metrics.transitions.fetch_add(1, Ordering::Relaxed);
                self.timer_wake.notify_one();
                Ok(view)
            }
            Err(StoreError::Conflict(_)) if idempotency_key.is_some() => {
                let key = format!("start:{workflow}:{}", idempotency_key.unwrap_or_default());
                let resp = self.store.idempotent_response(&key).await?.ok_or_else(|| {
                    EngineError::Conflict("a concurrent start with the same idempotency key is in progress".into())
                })?;
                serde_json::from_str(&resp).map_err(|e| EngineError::Internal(e.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Allocates the numbers a transition asked for (registration numbers). Numbers of a
    /// transition that fails to commit are skipped, never reused.
    async fn fill_numbers(&self, t: &mut Transition) -> Result<(), EngineError> {
        if t.numbers.is_empty() {
            return Ok(());
        }
        let mut counters = self.counters.lock().await;
        for req in std::mem::take(&mut t.numbers) {
            let current = match counters.get(&req.counter) {
                Some(v) => *v,
                None => self.store.counter(&req.counter).await?,
            };
            let n = current + 1;
            counters.insert(req.counter.clone(), n);
            t.fill_number(&req, n);
            t.counters.push((req.counter.clone(), n));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_of(
        &self,
        id: i64,
        create: Option<(String, String)>,
        version: i64,
        base_revision: i64,
        first_seq: i64,
        t: Transition,
        now: i64,
        idempotency: Option<(String, String)>,
    ) -> Commit {
        let mut outbox: Vec<Value> = t
            .notices
            .iter()
            .filter(|n| n.webhook.is_some())
            .map(|n| serde_json::json!({ "kind": "webhook", "notice": n }))
            .collect();
        outbox.extend(
            t.spawns.iter().map(
                |sp| serde_json::json!({ "kind": "spawn", "workflow": sp.workflow, "data": sp.data, "parent": id }),
            ),
        );
        for n in t.notices.iter().filter(|_| self.config.log_activity) {
            tracing::info!(target: "yishi::notice", instance = id, topic = %n.topic, to = ?n.to, "{}", n.message);
        }
        Commit {
            instance_id: id,
            create,
            version,
            base_revision,
            state: Some(t.state),
            events: t.events.into_iter().map(|e| (e, now)).collect(),
            first_seq,
            timers: t.timers,
            idempotency,
            outbox,
            counters: t.counters,
            now,
        }
    }

    async fn loaded<'a>(
        &self,
        id: i64,
        guard: &'a mut tokio::sync::MutexGuard<'_, Slot>,
    ) -> Result<&'a mut InstanceRow, EngineError> {
        if guard.unsettled {
            // An empty commit goes after everything already sent, by either path.
            self.write(Commit::nothing(self.now())).await?;
            guard.unsettled = false;
            guard.row = None;
        }
        if guard.row.is_none() {
            guard.row = Some(self.store.load(id).await.map_err(|e| match e {
                StoreError::NotFound(_) => EngineError::NotFound(format!("no instance {id}")),
                e => e.into(),
            })?);
        }
        Ok(guard.row.as_mut().expect("just loaded"))
    }

    /// Applies an action. `expected_revision`, when given, must match the instance's revision.
    pub async fn act(
        &self,
        id: i64,
        req: ActionRequest,
        expected_revision: Option<i64>,
        idempotency_key: Option<&str>,
    ) -> Result<InstanceView, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let idem = idempotency_key.map(|k| format!("act:{id}:{k}"));
        if let Some(key) = &idem
            && let Some(resp) = self.store.idempotent_response(key).await?
        {
            return serde_json::from_str(&resp).map_err(|e| EngineError::Internal(e.to_string()));
        }
        let row = self.loaded(id, &mut guard).await?.clone();
        if let Some(rev) = expected_revision
            && rev != row.revision
        {
            return Err(EngineError::Conflict(format!(
                "instance {id} is at revision {}, not {rev}; reload it and try again",
                row.revision
            )));
        }
        let def = self.definition(row.version).await?;
        let now = self.now();
        match runtime::act(&def, &row.state, &req, now, id) {
            Ok(t) => {
                let view = self.apply_transition(id, &mut guard, row, t, now, idem).await?;
                self.metrics.actions_applied.fetch_add(1, Ordering::Relaxed);
                Ok(view)
            }
            Err(e) => {
                let err = run_error(e);
                let step = req.step.clone().or_else(|| row.state.tokens.first().map(|t| t.step.clone()));
                if self.config.log_activity {
                    tracing::info!(instance = id, action = %req.action, actor = %req.actor.id, reason = %err, "action refused");
                }
                if matches!(err, EngineError::ScriptFailed(_)) {
                    self.metrics.actions_failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.metrics.actions_refused.fetch_add(1, Ordering::Relaxed);
                }
                // Record the refusal in the history (the state does not change).
                if row.state.status == Status::Active || matches!(err, EngineError::Closed(_)) {
                    let ev = Event::Refused {
                        action: req.action.clone(),
                        step,
                        actor: req.actor.clone(),
                        on_behalf_of: req.on_behalf_of.clone(),
                        reason: err.to_string(),
                    };
                    let commit = Commit {
                        instance_id: id,
                        create: None,
                        version: row.version,
                        base_revision: row.revision,
                        state: None,
                        events: vec![(ev, now)],
                        first_seq: row.last_seq + 1,
                        timers: Vec::new(),
                        idempotency: None,
                        outbox: Vec::new(),
                        counters: Vec::new(),
                        now,
                    };
                    match self.write_slot(&mut guard, commit).await {
                        Ok(()) => {
                            if let Some(r) = guard.row.as_mut() {
                                r.last_seq += 1;
                            }
                        }
                        Err(e) => {
                            guard.row = None;
                            tracing::warn!(instance = id, error = %e, "could not record a refused action");
                        }
                    }
                }
                Err(err)
            }
        }
    }

    /// Cancels a whole case, or with `step` one active step of it.
    pub async fn cancel(
        &self,
        id: i64,
        step: Option<&str>,
        reason: &str,
        actor: &Actor,
    ) -> Result<InstanceView, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let row = self.loaded(id, &mut guard).await?.clone();
        let def = self.definition(row.version).await?;
        let now = self.now();
        let mut t = match step {
            None => runtime::cancel(&row.state, reason),
            Some(s) => runtime::cancel_step(&def, &row.state, s, reason, now, id),
        }
        .map_err(run_error)?;
        t.events.insert(
            0,
            Event::Action {
                action: if step.is_some() { "cancel_step".into() } else { "cancel".into() },
                step: step.unwrap_or_default().to_owned(),
                token: 0,
                actor: actor.clone(),
                on_behalf_of: None,
                payload: Map::from_iter([("reason".to_owned(), Value::String(reason.into()))]),
            },
        );
        self.apply_transition(id, &mut guard, row, t, now, None).await
    }

    async fn apply_transition(
        &self,
        id: i64,
        guard: &mut tokio::sync::MutexGuard<'_, Slot>,
        row: InstanceRow,
        mut t: Transition,
        now: i64,
        idempotency_key: Option<String>,
    ) -> Result<InstanceView, EngineError> {
        self.fill_numbers(&mut t).await?;
        let has_outbox = !t.spawns.is_empty() || t.notices.iter().any(|n| n.webhook.is_some());
        let mut next = row.clone();
        next.state = t.state.clone();
        next.revision += 1;
        next.last_seq += t.events.len() as i64;
        next.updated_at = now;
        let view = InstanceView::of(&next);
        let idempotency = idempotency_key.map(|k| (k, serde_json::to_string(&view).unwrap_or_default()));
        let commit = self.commit_of(id, None, row.version, row.revision, row.last_seq + 1, t, now, idempotency);
        match self.write_slot(guard, commit).await {
            Ok(()) => {
                guard.row = Some(next);
                self.metrics.transitions.fetch_add(1, Ordering::Relaxed);
                self.timer_wake.notify_one();
                if has_outbox {
                    self.outbox_wake.notify_one();
                }
                Ok(view)
            }
            Err(e) => {
                guard.row = None;
                Err(e.into())
            }
        }
    }

    /// Moves an instance to another version of its workflow. `steps` maps active steps of the
    /// old version to steps of the new one (identity for steps not named). With `dry_run`,
    /// nothing is written and the result says what would happen.
    pub async fn migrate(
        &self,
        id: i64,
        to_version: i64,
        steps: &BTreeMap<String, String>,
        actor: &Actor,
        dry_run: bool,
    ) -> Result<MigrationPlan, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let row = self.loaded(id, &mut guard).await?.clone();
        if row.state.status != Status::Active {
            return Err(EngineError::Closed(format!(
                "instance {id} is {}; only active cases can move",
                row.state.status.as_str()
            )));
        }
        let (to_row, _, _) = self.store.version(to_version).await.map_err(|e| match e {
            StoreError::NotFound(_) => EngineError::Refused {
                message: format!("there is no version {to_version}"),
                field: Some("to_version".into()),
            },
            e => e.into(),
        })?;
        if to_row.workflow != row.workflow {
            return Err(EngineError::Refused {
                message: format!("version {to_version} belongs to `{}`, not to `{}`", to_row.workflow, row.workflow),
                field: Some("to_version".into()),
            });
        }
        let to = self.definition(to_version).await?;
        let from = self.definition(row.version).await?;
        let mut problems = Vec::new();
        let mut mapping = BTreeMap::new();
        for t in &row.state.tokens {
            let target = steps.get(&t.step).cloned().unwrap_or_else(|| t.step.clone());
            let Some(new_step) = to.step(&target) else {
                problems.push(format!(
                    "active step `{}` has no place in version {}: map it to a step of that version",
                    t.step, to_row.seq
                ));
                continue;
            };
            let old_kind = from.step(&t.step).map(|s| s.kind.as_str()).unwrap_or_default();
            let explicit = steps.contains_key(&t.step);
            let in_progress = !t.state.is_null();
            if in_progress && !explicit {
                problems.push(format!("step `{}` is part-way through (a {old_kind} with recorded progress): name it in the mapping, e.g. {{\"{0}\": \"{target}\"}}, to carry its progress over", t.step));
            } else if in_progress && new_step.kind != old_kind {
                problems.push(format!(
                    "step `{}` holds progress of a {old_kind}, which a {} step cannot continue",
                    t.step, new_step.kind
                ));
            }
            if target != t.step {
                mapping.insert(t.step.clone(), target);
            }
        }
        for k in steps.keys() {
            if !row.state.tokens.iter().any(|t| &t.step == k) {
                problems.push(format!("the mapping names `{k}`, which is not an active step of instance {id}"));
            }
        }
        let plan = MigrationPlan {
            instance: id,
            from_version: row.version,
            to_version,
            steps: mapping.clone(),
            problems: problems.clone(),
            applied: false,
        };
        if dry_run {
            return Ok(plan);
        }
        if !problems.is_empty() {
            return Err(EngineError::Refused { message: problems.join("; "), field: Some("steps".into()) });
        }
        let now = self.now();
        let mut s = row.state.clone();
        let mut events = vec![Event::Action {
            action: "migrate".into(),
            step: String::new(),
            token: 0,
            actor: actor.clone(),
            on_behalf_of: None,
            payload: Map::new(),
        }];
        let ev = Event::Migrated { from: from.hash.clone(), to: to.hash.clone(), steps: mapping };
        runtime::apply(&mut s, &ev);
        events.push(ev);
        // Deadlines are re-armed under the new rules, counted from when each step was entered.
        let mut timers = vec![TimerChange::ClearAll];
        timers.extend(runtime::rearm(&to, &s, id).map_err(run_error)?);
        let t = Transition {
            state: s,
            events,
            timers,
            notices: Vec::new(),
            numbers: Vec::new(),
            spawns: Vec::new(),
            counters: Vec::new(),
        };
        let mut next = row.clone();
        next.version = to_version;
        let commit = Commit {
            version: to_version,
            ..self.commit_of(id, None, to_version, row.revision, row.last_seq + 1, t.clone(), now, None)
        };
        self.write_slot(&mut guard, commit).await.inspect_err(|_| guard.row = None)?;
        next.state = t.state;
        next.revision += 1;
        next.last_seq += t.events.len() as i64;
        next.updated_at = now;
        guard.row = Some(next);
        Ok(MigrationPlan { applied: true, ..plan })
    }

    /// Reads an instance.
    pub async fn get(&self, id: i64) -> Result<InstanceRow, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        Ok(self.loaded(id, &mut guard).await?.clone())
    }

    pub async fn view(&self, id: i64) -> Result<InstanceView, EngineError> {
        Ok(InstanceView::of(&self.get(id).await?))
    }

    /// The actions the instance accepts now, with the roles that may perform them.
    pub async fn accepted_actions(&self, row: &InstanceRow) -> Result<Vec<AcceptedAction>, EngineError> {
        if row.state.status != Status::Active {
            return Ok(Vec::new());
        }
        let def = self.definition(row.version).await?;
        let mut out = Vec::new();
        for t in &row.state.tokens {
            if let Some(s) = def.step(&t.step) {
                for a in &s.actions {
                    out.push(AcceptedAction {
                        step: s.id.clone(),
                        action: a.name.clone(),
                        summary: a.summary.clone(),
                        roles: s.allowed_roles(&a.name).to_vec(),
                        fields: a.fields.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    pub async fn history(&self, id: i64) -> Result<Vec<EventRow>, EngineError> {
        let h = self.store.history(id).await?;
        if h.is_empty() {
            return Err(EngineError::NotFound(format!("no instance {id}")));
        }
        Ok(h)
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<InstanceSummary>, EngineError> {
        Ok(self.store.list(filter).await?)
    }

    /// Fires every timer due now. Returns how many fired (void timers are dropped, not counted).
    pub async fn fire_due(self: &Arc<Self>) -> Result<usize, EngineError> {
        let mut fired = 0;
        let mut rounds = 0;
        loop {
            let now = self.now();
            let due = self.store.due_timers(now, 2_000).await?;
            if due.is_empty() {
                return Ok(fired);
            }
            let mut by_instance: BTreeMap<i64, Vec<TimerRow>> = BTreeMap::new();
            for t in due {
                by_instance.entry(t.instance_id).or_default().push(t);
            }
            let sem = Arc::new(tokio::sync::Semaphore::new(self.config.timer_concurrency));
            let mut set = tokio::task::JoinSet::new();
            for (_, timers) in by_instance {
                let me = self.clone();
                let permit = sem.clone().acquire_owned().await.map_err(|e| EngineError::Internal(e.to_string()))?;
                set.spawn(async move {
                    let _permit = permit;
                    let mut count = 0;
                    for t in timers {
                        match me.fire_one(&t).await {
                            Ok(true) => count += 1,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(instance = t.instance_id, timer = %t.name, error = %e, "timer could not fire; will retry");
                                return Err(e);
                            }
                        }
                    }
                    Ok(count)
                });
            }
            let mut failed = None;
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(c)) => fired += c,
                    Ok(Err(e)) => failed = Some(e),
                    Err(e) => failed = Some(EngineError::Internal(e.to_string())),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            // Firing can set timers that are already due (a follow-up of a late timer): go
            // round again, but never forever.
            rounds += 1;
            if rounds > 1_000 {
                tracing::warn!("timers keep falling due as they fire; stopping this round");
                return Ok(fired);
            }
        }
    }

    async fn fire_one(&self, t: &TimerRow) -> Result<bool, EngineError> {
        let slot = self.slot(t.instance_id);
        let mut guard = slot.lock().await;
        let row = match self.loaded(t.instance_id, &mut guard).await {
            Ok(r) => r.clone(),
            Err(EngineError::NotFound(_)) => {
                self.store.drop_timer(t).await?;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let now = self.now();
        if t.due_at > now {
            return Ok(false); // never early
        }
        let def = self.definition(row.version).await?;
        let transition = match runtime::fire(
            &def,
            &row.state,
            runtime::Fired { token: t.token, step: &t.step, timer: &t.name, due_at: t.due_at },
            now,
            t.instance_id,
        ) {
            Ok(None) => {
                self.store.drop_timer(t).await?;
                return Ok(false);
            }
            Ok(Some(mut tr)) => {
                tr.timers.insert(0, TimerChange::Clear { token: t.token, name: t.name.clone() });
                tr
            }
            Err(e) => {
                let msg = format!("timer `{}` of step `{}` failed: {e}", t.name, t.step);
                tracing::warn!(instance = t.instance_id, "{msg}");
                runtime::fail(&row.state, &msg)
            }
        };
        self.apply_transition(t.instance_id, &mut guard, row, transition, now, None).await?;
        self.metrics.timers_fired.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Fires timers as they fall due, until `shutdown` resolves. Timers that fell due while
    /// the server was down fire at once (late rather than never).
    pub async fn run_timers(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.fire_due().await {
                tracing::warn!(error = %e, "firing timers failed; retrying in a second");
                tokio::select! {
                    _ = tokio::time::sleep(StdDuration::from_secs(1)) => continue,
                    _ = &mut shutdown => return,
                }
            }
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => (due - self.now()).clamp(0, 60_000),
                Ok(None) => 60_000,
                Err(_) => 1_000,
            };
            tokio::select! {
                _ = tokio::time::sleep(StdDuration::from_millis(wait as u64 + 1)) => {}
                _ = self.timer_wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }
}

/// What a migration does (or would do).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MigrationPlan {
    pub instance: i64,
    pub from_version: i64,
    pub to_version: i64,
    /// Active steps that move to a step of another name.
    pub steps: BTreeMap<String, String>,
    /// Why it cannot be done; empty when it can.
    pub problems: Vec<String>,
    pub applied: bool,
}

async fn writer_loop<S: Store>(
    store: Arc<S>,
    mut rx: mpsc::UnboundedReceiver<WriteReq>,
    queued: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Mutex<()>>,
    engine: std::sync::Weak<Engine<S>>,
) {
    let max = engine.upgrade().map_or(1024, |e| e.config.max_batch);
    let mut commits: Vec<Commit> = Vec::with_capacity(max);
    let mut waiting: Vec<oneshot::Sender<Result<(), StoreError>>> = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        let _gate = gate.lock().await;
        commits.push(first.commit);
        waiting.push(first.done);
        while commits.len() < max {
            match rx.try_recv() {
                Ok(r) => {
                    commits.push(r.commit);
                    waiting.push(r.done);
                }
                Err(_) => break,
            }
        }
        queued.fetch_sub(commits.len(), Ordering::AcqRel);
        let started = Instant::now();
        let result = store.commit(&commits).await;
        if let Some(e) = engine.upgrade() {
            e.metrics.record_batch(commits.len(), started.elapsed());
        }
        match result {
            Ok(()) => {
                for done in waiting.drain(..) {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if commits.len() == 1 => {
                tracing::warn!(error = %e, "commit failed");
                if let Some(done) = waiting.pop() {
                    let _ = done.send(Err(e));
                }
            }
            Err(e) => {
                // One bad change must not sink the others: retry each on its own.
                tracing::debug!(error = %e, n = commits.len(), "batch commit failed; retrying one by one");
                for (commit, done) in commits.iter().zip(waiting.drain(..)) {
                    let _ = done.send(store.commit(std::slice::from_ref(commit)).await);
                }
            }
        }
        commits.clear();
    }
}

/// Sends a webhook notice. The binary provides an HTTP implementation; tests provide fakes.
pub trait WebhookSender: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        url: &'a str,
        body: &'a Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Attempts before a notice is given up (kept, with its last error, for an operator).
pub const MAX_DELIVERY_ATTEMPTS: i64 = 10;

impl<S: Store> Engine<S> {
    /// Delivers what the outbox holds: starts spawned cases and posts webhook notices,
    /// retrying failures with exponential backoff. Returns how many items were handled.
    pub async fn deliver_outbox(&self, sender: &dyn WebhookSender) -> Result<usize, EngineError> {
        let now = self.now();
        let items = self.store.pending_outbox(now, 200).await?;
        let n = items.len();
        for item in items {
            let result = match item.notice.get("kind").and_then(Value::as_str) {
                Some("spawn") => {
                    let workflow = item.notice.get("workflow").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let mut data = item.notice.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
                    data.insert("parent_case".into(), Value::from(item.instance_id));
                    let system = Actor { id: "yishi".into(), roles: Vec::new() };
                    match self.start(&workflow, data, &system, Some(&format!("spawn:{}", item.id))).await {
                        Ok(v) => {
                            if self.config.log_activity {
                                tracing::info!(parent = item.instance_id, child = v.id, workflow = %workflow, "started a linked case");
                            }
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Some("webhook") => {
                    let notice = item.notice.get("notice").cloned().unwrap_or(Value::Null);
                    let url = notice.get("webhook").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let body = serde_json::json!({ "instance": item.instance_id, "notice": notice });
                    sender.send(&url, &body).await
                }
                _ => Err("unknown outbox item".into()),
            };
            match result {
                Ok(()) => self.store.outbox_result(item.id, true, None, 0, now).await?,
                Err(e) => {
                    let attempts = item.attempts + 1;
                    let retry_at = if attempts >= MAX_DELIVERY_ATTEMPTS {
                        i64::MAX
                    } else {
                        now + 1000 * (1_i64 << attempts.min(12))
                    };
                    tracing::warn!(outbox = item.id, instance = item.instance_id, attempts, error = %e, "delivery failed");
                    self.store.outbox_result(item.id, false, Some(&e), retry_at, now).await?;
                }
            }
        }
        Ok(n)
    }

    /// Runs [`Engine::deliver_outbox`] whenever something is committed to the outbox, and every
    /// few seconds for retries, until `shutdown` resolves.
    pub async fn run_outbox(
        self: Arc<Self>,
        sender: Arc<dyn WebhookSender>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.deliver_outbox(sender.as_ref()).await {
                tracing::warn!(error = %e, "outbox delivery failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(StdDuration::from_secs(2)) => {}
                _ = self.outbox_wake.notified() => {}
                _ = &mut shutdown => return,
            }
        }
    }
}
