//! Cases: starting them, acting on them, cancelling and migrating them, reading them. Each
//! change is computed by the pure runtime and committed with its events in one unit.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::{Map, Value};
use yishi_core::kind::{Actor, Field};
use yishi_core::runtime::{self, ActionRequest, Event, Status, TimerChange, Transition};

use super::{Engine, EngineError, InstanceView, Slot, SlotGuard, run_error};
use crate::store::{Commit, EventRow, InstanceRow, InstanceSummary, ListFilter, Store, StoreError};

/// An action the instance accepts now, and from whom.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AcceptedAction {
    pub step: String,
    pub action: String,
    pub summary: String,
    pub roles: Vec<String>,
    pub fields: Vec<Field>,
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

/// How often an action is recomputed on fresh state when another process changed the case
/// between reading and committing (shared databases only).
const CONFLICT_RETRIES: usize = 3;

impl Engine {
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
        let id = self.store.next_instance_id().await?;
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
        let view_row = InstanceRow {
            id,
            unit: def.unit.clone(),
            workflow: def.key.clone(),
            version: row.id,
            revision: 1,
            last_seq: t.events.len() as i64,
            state: t.state.clone(),
            created_at: now,
            updated_at: now,
        };
        let view = InstanceView::of(&view_row);
        let mut commit = self.commit_of(&view_row, 0, 1, t, now);
        commit.create = Some((def.unit.clone(), def.key.clone()));
        commit.idempotency = idem.map(|k| (k, serde_json::to_string(&view).unwrap_or_default()));
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        match self.write(&mut guard, commit).await {
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
        for req in std::mem::take(&mut t.numbers) {
            let n = self.store.next_number(&req.counter).await?;
            t.fill_number(&req, n);
        }
        Ok(())
    }

    /// The commit of transition `t` of the instance `row` (as it was before `t`).
    fn commit_of(&self, row: &InstanceRow, base_revision: i64, first_seq: i64, t: Transition, now: i64) -> Commit {
        let id = row.id;
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
            create: None,
            version: row.version,
            base_revision,
            state: Some(t.state),
            events: t.events.into_iter().map(|e| (e, now)).collect(),
            first_seq,
            timers: t.timers,
            consumes: None,
            idempotency: None,
            outbox,
            now,
        }
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
        let mut attempt = 0;
        loop {
            if let Some(key) = &idem
                && let Some(resp) = self.store.idempotent_response(key).await?
            {
                return serde_json::from_str(&resp).map_err(|e| EngineError::Internal(e.to_string()));
            }
            let result = self.act_once(id, &mut guard, &req, expected_revision, idem.clone()).await;
            // Another process changed the case between our read and our commit: compute the
            // action again on fresh state, unless the client pinned the revision it saw.
            match result {
                Err(EngineError::Conflict(_)) if expected_revision.is_none() && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn act_once(
        &self,
        id: i64,
        guard: &mut SlotGuard<'_>,
        req: &ActionRequest,
        expected_revision: Option<i64>,
        idem: Option<String>,
    ) -> Result<InstanceView, EngineError> {
        let row = self.loaded(id, guard).await?.clone();
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
        match runtime::act(&def, &row.state, req, now, id) {
            Ok(t) => {
                let view = self.apply_transition(guard, row, t, now, idem, None).await?;
                self.metrics.actions_applied.fetch_add(1, Ordering::Relaxed);
                Ok(view)
            }
            Err(e) => {
                let err = run_error(e);
                self.refused(guard, &row, req, &err, now).await?;
                Err(err)
            }
        }
    }

    /// Records a refused action in the case's history (the state does not change).
    async fn refused(
        &self,
        guard: &mut SlotGuard<'_>,
        row: &InstanceRow,
        req: &ActionRequest,
        err: &EngineError,
        now: i64,
    ) -> Result<(), EngineError> {
        if self.config.log_activity {
            tracing::info!(instance = row.id, action = %req.action, actor = %req.actor.id, reason = %err, "action refused");
        }
        if matches!(err, EngineError::ScriptFailed(_)) {
            self.metrics.actions_failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.metrics.actions_refused.fetch_add(1, Ordering::Relaxed);
        }
        if !(row.state.status == Status::Active || matches!(err, EngineError::Closed(_))) {
            return Ok(());
        }
        let step = req.step.clone().or_else(|| row.state.tokens.first().map(|t| t.step.clone()));
        let ev = Event::Refused {
            action: req.action.clone(),
            step,
            actor: req.actor.clone(),
            on_behalf_of: req.on_behalf_of.clone(),
            reason: err.to_string(),
        };
        let commit = Commit {
            instance_id: row.id,
            create: None,
            version: row.version,
            base_revision: row.revision,
            state: None,
            events: vec![(ev, now)],
            first_seq: row.last_seq + 1,
            timers: Vec::new(),
            consumes: None,
            idempotency: None,
            outbox: Vec::new(),
            now,
        };
        match self.write(guard, commit).await {
            Ok(()) => {
                if let Some(r) = guard.row.as_mut() {
                    r.last_seq += 1;
                }
                Ok(())
            }
            // Someone else moved the case on: the refusal is decided again on fresh state.
            Err(StoreError::Conflict(m)) => Err(EngineError::Conflict(m)),
            Err(e) => {
                tracing::warn!(instance = row.id, error = %e, "could not record a refused action");
                Ok(())
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
        self.apply_transition(&mut guard, row, t, now, None, None).await
    }

    /// Commits transition `t` of `row` (with the timer it consumes, when a timer fired) and
    /// keeps the result as the slot's cached copy.
    pub(super) async fn apply_transition(
        &self,
        guard: &mut Slot,
        row: InstanceRow,
        mut t: Transition,
        now: i64,
        idempotency_key: Option<String>,
        consumes: Option<(u32, String)>,
    ) -> Result<InstanceView, EngineError> {
        self.fill_numbers(&mut t).await?;
        let has_outbox = !t.spawns.is_empty() || t.notices.iter().any(|n| n.webhook.is_some());
        let mut next = row.clone();
        next.state = t.state.clone();
        next.revision += 1;
        next.last_seq += t.events.len() as i64;
        next.updated_at = now;
        let view = InstanceView::of(&next);
        let mut commit = self.commit_of(&row, row.revision, row.last_seq + 1, t, now);
        commit.idempotency = idempotency_key.map(|k| (k, serde_json::to_string(&view).unwrap_or_default()));
        commit.consumes = consumes;
        self.write(guard, commit).await?;
        guard.row = Some(next);
        self.metrics.transitions.fetch_add(1, Ordering::Relaxed);
        self.timer_wake.notify_one();
        if has_outbox {
            self.outbox_wake.notify_one();
        }
        Ok(view)
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
        let to_row = self.store.version(to_version).await.map_err(|e| match e {
            StoreError::NotFound(_) => EngineError::Refused {
                message: format!("there is no version {to_version}"),
                field: Some("to_version".into()),
            },
            e => e.into(),
        })?;
        if to_row.row.workflow != row.workflow {
            return Err(EngineError::Refused {
                message: format!(
                    "version {to_version} belongs to `{}`, not to `{}`",
                    to_row.row.workflow, row.workflow
                ),
                field: Some("to_version".into()),
            });
        }
        let to = self.definition(to_version).await?;
        let from = self.definition(row.version).await?;
        let (mapping, problems) = migration_mapping(&row, &from, &to, to_row.row.seq, steps);
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
        let t = Transition { state: s, events, timers, notices: Vec::new(), numbers: Vec::new(), spawns: Vec::new() };
        let moved = InstanceRow { version: to_version, ..row };
        self.apply_transition(&mut guard, moved, t, now, None, None).await?;
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

    /// The whole history of an instance.
    pub async fn history(&self, id: i64) -> Result<Vec<EventRow>, EngineError> {
        let h = self.store.history(id).await?;
        if h.is_empty() {
            return Err(EngineError::NotFound(format!("no instance {id}")));
        }
        Ok(h)
    }

    /// The deadlines and timers an instance is waiting for.
    pub async fn timers(&self, id: i64) -> Result<Vec<crate::store::TimerRow>, EngineError> {
        Ok(self.store.timers_of(id).await?)
    }

    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<InstanceSummary>, EngineError> {
        Ok(self.store.list(filter).await?)
    }
}

/// Where each active step of `row` goes under the new version, and why it cannot (if so).
fn migration_mapping(
    row: &InstanceRow,
    from: &yishi_core::Definition,
    to: &yishi_core::Definition,
    to_seq: i64,
    steps: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut mapping = BTreeMap::new();
    for t in &row.state.tokens {
        let target = steps.get(&t.step).cloned().unwrap_or_else(|| t.step.clone());
        let Some(new_step) = to.step(&target) else {
            problems.push(format!(
                "active step `{}` has no place in version {to_seq}: map it to a step of that version",
                t.step
            ));
            continue;
        };
        let old_kind = from.step(&t.step).map(|s| s.kind.as_str()).unwrap_or_default();
        let explicit = steps.contains_key(&t.step);
        let in_progress = !t.state.is_null();
        if in_progress && !explicit {
            problems.push(format!(
                "step `{}` is part-way through (a {old_kind} with recorded progress): name it in the mapping, e.g. {{\"{0}\": \"{target}\"}}, to carry its progress over",
                t.step
            ));
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
            problems.push(format!("the mapping names `{k}`, which is not an active step of instance {}", row.id));
        }
    }
    (mapping, problems)
}
