//! Cases: starting them, acting on them, cancelling and migrating them, reading them. Each
//! change is computed by the pure runtime and committed with its events in one unit.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use yishi_core::i18n::Message;
use yishi_core::kind::{Actor, Field};
use yishi_core::msg;
use yishi_core::runtime::{self, ActionRequest, Event, InstanceState, Status, TimerChange, Transition};

use super::{Engine, EngineError, InstanceView, Slot, SlotGuard, run_error};
use crate::store::{Commit, EventRow, InstanceRow, InstanceSummary, ListFilter, Store, StoreError, VersionRow};
use yishi_core::definition::Definition;

/// An action the instance accepts now, and from whom.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AcceptedAction {
    pub step: String,
    pub action: String,
    pub summary: Message,
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
    pub problems: Vec<Message>,
    pub applied: bool,
}

/// How often an action is recomputed on fresh state when another process changed the case
/// between reading and committing (shared databases only).
const CONFLICT_RETRIES: usize = 3;

/// Refusals of one person on one case recorded per hour; further refusals that hour are
/// counted (in the next recorded refusal, and in metrics) but not stored, so that no client
/// can fill a case's history.
pub const MAX_REFUSALS_PER_HOUR: u32 = 10;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// A client's idempotency key (scoped by the caller, e.g. to its token) and a fingerprint of
/// its request: a retry with the same key and fingerprint gets the first answer again; the
/// same key with another request is refused.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// How a case comes in, beyond its data: where it starts, how urgent it is, and a note for
/// the recorded start (where an imported case came from).
#[derive(Clone, Debug, Default)]
pub struct Intake {
    /// The step to start at (the first step when `None`).
    pub step: Option<String>,
    /// The urgency level (the workflow's default when `None`).
    pub urgency: Option<String>,
    pub note: Map<String, Value>,
}

/// Refusals recorded for one (case, person) in one hour.
#[derive(Debug, Default)]
pub(crate) struct RefusalWindow {
    hour: i64,
    recorded: u32,
    /// Refusals not recorded since the last recorded one.
    suppressed: u32,
}

impl Engine {
    /// Starts a case of workflow `unit/id` with `data`.
    pub async fn start(
        &self,
        workflow: &str,
        data: Map<String, Value>,
        actor: &Actor,
        idem: Option<&Idempotency>,
    ) -> Result<InstanceView, EngineError> {
        self.start_with(workflow, data, actor, idem, Intake::default()).await
    }

    /// The workflow a case would start on, and the index of the step it would start at.
    fn startable(
        &self,
        workflow: &str,
        step: Option<&str>,
    ) -> Result<(VersionRow, Arc<Definition>, usize), EngineError> {
        let active = self.active();
        let Some((row, def)) = active.current.get(workflow).cloned() else {
            let known: Vec<&str> = active.current.keys().map(String::as_str).collect();
            return Err(EngineError::NotFound(match yishi_core::diag::closest(workflow, known.iter().copied()) {
                Some(near) => msg!("engine-no-workflow-near", workflow = workflow, near = near),
                None => msg!("engine-no-workflow", workflow = workflow),
            }));
        };
        if def.is_abstract {
            return Err(EngineError::Refused {
                message: msg!("engine-abstract", workflow = workflow),
                field: Some("workflow".into()),
            });
        }
        let at = match step {
            None => def.start,
            Some(s) => def.steps.iter().position(|d| d.id == s).ok_or_else(|| EngineError::Refused {
                message: msg!("engine-no-step", workflow = workflow, step = s),
                field: Some("step".into()),
            })?,
        };
        Ok((row, def, at))
    }

    /// Whether a case with `data` could start (at `step`), without starting it: what an
    /// import's dry run asks of every record.
    pub async fn check_start(
        &self,
        workflow: &str,
        data: Map<String, Value>,
        intake: &Intake,
    ) -> Result<(), EngineError> {
        let (_, def, at) = self.startable(workflow, intake.step.as_deref())?;
        runtime::start_at(&def, data, self.now(), 0, at, intake.urgency.as_deref()).map(|_| ()).map_err(run_error)
    }

    /// Starts a case as `intake` says (its first step, its urgency); the intake's note goes in
    /// the recorded start action's payload.
    pub async fn start_with(
        &self,
        workflow: &str,
        data: Map<String, Value>,
        actor: &Actor,
        idem: Option<&Idempotency>,
        intake: Intake,
    ) -> Result<InstanceView, EngineError> {
        if let Some(view) = self.replay(idem).await? {
            return Ok(view);
        }
        let (row, def, at) = self.startable(workflow, intake.step.as_deref())?;
        let now = self.now();
        let id = self.store.next_instance_id().await?;
        let mut t = runtime::start_at(&def, data, now, id, at, intake.urgency.as_deref()).map_err(run_error)?;
        let note = intake.note;
        let began = std::time::Instant::now();
        self.place(&def, id, &mut t, now).await?;
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
                    payload: note,
                },
            );
        }
        let placed = placed_on(&t);
        let mut view_row = InstanceRow {
            id,
            unit: def.unit.clone(),
            workflow: def.key.clone(),
            version: row.id,
            revision: 1,
            last_seq: t.events.len() as i64,
            state: InstanceState::default(),
            created_at: now,
            updated_at: now,
        };
        let mut commit = self.commit_of(&view_row, 0, 1, t, now);
        commit.create = Some((def.unit.clone(), def.key.clone()));
        commit.stored = None;
        // The new state moves between the commit and the cached row; it is never copied.
        view_row.state = commit.state.take().expect("a new case commits its state");
        let view = InstanceView::of(&view_row, &row);
        commit.idempotency = idem.map(|i| remembered(i, &view));
        commit.state = Some(std::mem::take(&mut view_row.state));
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        match self.write(&mut guard, &commit).await {
            Ok(()) => {
                view_row.state = commit.state.take().expect("the commit holds the state");
                guard.row = Some(view_row);
                self.count(|| super::metrics::started(&def.key));
                self.count(|| super::metrics::transition(&def.key, &def.steps[at].kind, began.elapsed()));
                self.timers_set(&commit.timers);
                if let Some(g) = placed {
                    self.recheck_placed(&mut guard, id, g).await?;
                }
                drop(guard);
                // A new gathering takes the cases that waited for one.
                if def.steps[at].behaviour.hosts().is_some() {
                    self.place_waiting(&def.unit, &def.id).await?;
                }
                Ok(view)
            }
            // A concurrent start with the same key won: answer as it did.
            Err(StoreError::Conflict(_)) if idem.is_some() => {
                self.replay(idem).await?.ok_or_else(|| EngineError::Conflict(msg!("engine-idempotent-start-busy")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Allocates the numbers a transition asked for (registration numbers). Numbers of a
    /// transition that fails to commit are skipped, never reused.
    pub(super) async fn fill_numbers(&self, t: &mut Transition) -> Result<(), EngineError> {
        for req in std::mem::take(&mut t.numbers) {
            let n = self.store.next_number(&req.counter).await?;
            t.fill_number(&req, n);
        }
        Ok(())
    }

    /// The commit of transition `t` of the instance `row` (as it was before `t`).
    pub(super) fn commit_of(
        &self,
        row: &InstanceRow,
        base_revision: i64,
        first_seq: i64,
        t: Transition,
        now: i64,
    ) -> Commit {
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
        let lang = self.config.lang;
        for n in t.notices.iter().filter(|_| self.config.observed) {
            tracing::info!(target: "yishi::notice", instance = id, topic = %n.topic, to = ?n.to, "{}", n.message.render(lang));
        }
        for e in &t.events {
            if let Event::Noted { step, note } = e {
                tracing::warn!(instance = id, step = %step, "{}", note.render(lang));
            }
        }
        Commit {
            instance_id: id,
            create: None,
            version: row.version,
            base_revision,
            stored: Some((row.state.status, row.version)),
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
        idem: Option<&Idempotency>,
    ) -> Result<InstanceView, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let mut attempt = 0;
        loop {
            if let Some(view) = self.replay(idem).await? {
                return Ok(view);
            }
            let result = self.act_once(id, &mut guard, &req, expected_revision, idem).await;
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
        idem: Option<&Idempotency>,
    ) -> Result<InstanceView, EngineError> {
        // On a database other nodes write too, the copy this node kept from its last change
        // is tried first: the commit's revision check in the database catches a stale one (a
        // conflict, then a fresh read). Anything the copy would refuse is read fresh first, so
        // that no one is refused on the strength of a stale copy.
        let mut optimistic = self.store.shared();
        loop {
            // The row is taken out of the slot, not copied (a case's state runs to kilobytes):
            // a change puts the next row back, a refusal the same row; any other way out
            // leaves the slot empty, and the next user reads the case again.
            let (row, cached) = match (optimistic, &guard.row) {
                (true, Some(_)) if !guard.unsettled => (guard.row.take().expect("matched above"), true),
                _ => {
                    self.loaded(id, guard).await?;
                    (guard.row.take().expect("just loaded"), false)
                }
            };
            if let Some(rev) = expected_revision
                && rev != row.revision
            {
                if cached {
                    optimistic = false;
                    continue;
                }
                let current = row.revision;
                guard.row = Some(row);
                return Err(stale(id, current, rev));
            }
            let def = self.definition(row.version).await?;
            let now = self.now();
            // A gathering's actions see its agenda (the cases waiting on it).
            let agenda = if Self::is_host(&def, &row) { self.agenda_of(&row.unit, row.id).await? } else { Vec::new() };
            return match runtime::act_in(&def, &row.state, req, now, id, &agenda) {
                Ok(t) if !t.gathering_ops.is_empty() => {
                    let view = self.apply_with_agenda(guard, row, t, now, &req.actor).await?;
                    self.count(|| super::metrics::action(&def.key, "applied"));
                    Ok(view)
                }
                Ok(t) => {
                    let view = self.apply_transition(guard, row, t, now, idem, None).await?;
                    self.count(|| super::metrics::action(&def.key, "applied"));
                    Ok(view)
                }
                Err(_) if cached => {
                    optimistic = false;
                    continue;
                }
                Err(e) => {
                    let err = run_error(e);
                    let step = targeted_step(&def, &row.state, req);
                    guard.row = Some(row.clone());
                    self.refused(guard, &row, req, step, &err, now).await?;
                    Err(err)
                }
            };
        }
    }

    /// Answers a retried request as before: the first answer when the key and the request are
    /// the same; a refusal when the key was used for another request. Keys expire.
    async fn replay(&self, idem: Option<&Idempotency>) -> Result<Option<InstanceView>, EngineError> {
        let Some(i) = idem else { return Ok(None) };
        let Some(rec) = self.store.idempotent_response(&i.key).await? else { return Ok(None) };
        if rec.created_at < self.now() - IDEMPOTENCY_TTL_MS {
            self.store.forget_idempotency(&i.key).await?;
            return Ok(None);
        }
        if rec.fingerprint != i.fingerprint {
            return Err(EngineError::KeyReused(msg!("engine-idempotency-reused")));
        }
        serde_json::from_str(&rec.response).map(Some).map_err(|e| EngineError::Internal(e.to_string()))
    }

    /// Whether a refusal by `who` on case `id` is recorded now (at most
    /// [`MAX_REFUSALS_PER_HOUR`] an hour), and how many went unrecorded before it.
    fn refusal_window(&self, id: i64, who: &str, now: i64) -> Option<u32> {
        let hour = now.div_euclid(3_600_000);
        let mut windows = self.refusals.lock().expect("refusals lock");
        if windows.len() > self.config.cache_instances {
            windows.retain(|_, w| w.hour == hour);
        }
        let w = windows.entry((id, who.to_owned())).or_default();
        if w.hour != hour {
            w.hour = hour;
            w.recorded = 0;
        }
        if w.recorded >= MAX_REFUSALS_PER_HOUR {
            w.suppressed += 1;
            self.count(super::metrics::refusal_unrecorded);
            return None;
        }
        w.recorded += 1;
        Some(std::mem::take(&mut w.suppressed))
    }

    /// Records a refused action in the history of an active case (the state does not change):
    /// against the step it targeted, at most [`MAX_REFUSALS_PER_HOUR`] per person an hour.
    /// Nothing is recorded on a closed case.
    async fn refused(
        &self,
        guard: &mut SlotGuard<'_>,
        row: &InstanceRow,
        req: &ActionRequest,
        step: Option<String>,
        err: &EngineError,
        now: i64,
    ) -> Result<(), EngineError> {
        if self.config.observed {
            tracing::info!(instance = row.id, action = %req.action, actor = %req.actor.id, reason = %err, "action refused");
        }
        if matches!(err, EngineError::ScriptFailed(_)) {
            self.count(|| super::metrics::action(&row.workflow, "failed"));
        } else {
            self.count(|| super::metrics::action(&row.workflow, "refused"));
        }
        if row.state.status != Status::Active {
            return Ok(());
        }
        let Some(suppressed) = self.refusal_window(row.id, &req.actor.id, now) else { return Ok(()) };
        let ev = Event::Refused {
            action: req.action.clone(),
            step,
            actor: req.actor.clone(),
            on_behalf_of: req.on_behalf_of.clone(),
            reason: err.message(),
            unrecorded_before: suppressed,
        };
        let commit = Commit {
            instance_id: row.id,
            create: None,
            version: row.version,
            base_revision: row.revision,
            stored: None,
            state: None,
            events: vec![(ev, now)],
            first_seq: row.last_seq + 1,
            timers: Vec::new(),
            consumes: None,
            idempotency: None,
            outbox: Vec::new(),
            now,
        };
        match self.write(guard, &commit).await {
            Ok(()) => {
                if let Some(r) = guard.row.as_mut() {
                    r.last_seq += 1;
                }
                Ok(())
            }
            // Someone else moved the case on: the refusal is decided again on fresh state.
            Err(e @ StoreError::Conflict(_)) => Err(e.into()),
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

    /// Changes how urgent case `id` is (at triage), recording who and why.
    pub async fn set_urgency(
        &self,
        id: i64,
        level: &str,
        reason: &str,
        actor: &Actor,
        expected_revision: Option<i64>,
    ) -> Result<InstanceView, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        let row = self.loaded(id, &mut guard).await?.clone();
        if let Some(rev) = expected_revision
            && rev != row.revision
        {
            return Err(stale(id, row.revision, rev));
        }
        let def = self.definition(row.version).await?;
        let now = self.now();
        let t = runtime::set_urgency(&def, &row.state, level, reason, actor, id).map_err(run_error)?;
        self.apply_transition(&mut guard, row, t, now, None, None).await
    }

    /// Merges case `from` into case `into` (duplicates, 合并): both change in one commit unit,
    /// their slots locked in id order. Returns the views of `into` and `from`, in that order.
    pub async fn merge(
        &self,
        into: i64,
        from: i64,
        reason: &str,
        actor: &Actor,
    ) -> Result<(InstanceView, InstanceView), EngineError> {
        if into == from {
            return Err(EngineError::Refused { message: msg!("engine-merge-self"), field: Some("from".into()) });
        }
        let (first, second) = (self.slot(into.min(from)), self.slot(into.max(from)));
        let mut g1 = first.lock().await;
        let mut g2 = second.lock().await;
        let (g_into, g_from) = if into < from { (&mut g1, &mut g2) } else { (&mut g2, &mut g1) };
        let a = self.loaded(into, g_into).await?.clone();
        let b = self.loaded(from, g_from).await?.clone();
        if a.unit != b.unit {
            return Err(EngineError::Refused {
                message: msg!("engine-merge-units", from = from, from_unit = &b.unit, into = into, into_unit = &a.unit),
                field: Some("from".into()),
            });
        }
        let (def_a, def_b) = (self.definition(a.version).await?, self.definition(b.version).await?);
        let now = self.now();
        let (ta, tb) = runtime::merge(
            &runtime::MergeSide { def: &def_a, state: &a.state, id: into },
            &runtime::MergeSide { def: &def_b, state: &b.state, id: from },
            actor,
            reason,
        )
        .map_err(run_error)?;
        let next = |row: &InstanceRow, t: &Transition| {
            let mut n = row.clone();
            n.state = t.state.clone();
            n.revision += 1;
            n.last_seq += t.events.len() as i64;
            n.updated_at = now;
            n
        };
        let (next_a, next_b) = (next(&a, &ta), next(&b, &tb));
        let unit = vec![
            self.commit_of(&a, a.revision, a.last_seq + 1, ta, now),
            self.commit_of(&b, b.revision, b.last_seq + 1, tb, now),
        ];
        g_into.unsettled = true;
        g_from.unsettled = true;
        let result = self.store.commit(&unit).await;
        g_into.unsettled = false;
        g_from.unsettled = false;
        if let Err(e) = result {
            g_into.row = None;
            g_from.row = None;
            return Err(e.into());
        }
        let (va, vb) = (self.version(a.version).await?.0, self.version(b.version).await?.0);
        let views = (InstanceView::of(&next_a, &va), InstanceView::of(&next_b, &vb));
        g_into.row = Some(next_a);
        g_from.row = Some(next_b);
        self.timers_set(unit.iter().flat_map(|c| &c.timers));
        Ok(views)
    }

    /// Commits transition `t` of `row` (with the timer it consumes, when a timer fired) and
    /// keeps the result as the slot's cached copy.
    pub(super) async fn apply_transition(
        &self,
        guard: &mut Slot,
        row: InstanceRow,
        t: Transition,
        now: i64,
        idem: Option<&Idempotency>,
        consumes: Option<(u32, String)>,
    ) -> Result<InstanceView, EngineError> {
        let stored_version = row.version;
        self.apply_transition_from(guard, row, stored_version, t, now, idem, consumes).await
    }

    /// [`Engine::apply_transition`] of a `row` whose version is not the stored one: the case
    /// moves from `stored_version` to `row.version` (a migration).
    #[allow(clippy::too_many_arguments)]
    async fn apply_transition_from(
        &self,
        guard: &mut Slot,
        row: InstanceRow,
        stored_version: i64,
        mut t: Transition,
        now: i64,
        idem: Option<&Idempotency>,
        consumes: Option<(u32, String)>,
    ) -> Result<InstanceView, EngineError> {
        let (version, def) = self.version(row.version).await?;
        self.place(&def, row.id, &mut t, now).await?;
        self.fill_numbers(&mut t).await?;
        let began = std::time::Instant::now();
        let placed = placed_on(&t);
        let kind = moved_kind(&def, &t);
        let has_outbox = !t.spawns.is_empty() || t.notices.iter().any(|n| n.webhook.is_some());
        let events = t.events.len() as i64;
        let mut commit = self.commit_of(&row, row.revision, row.last_seq + 1, t, now);
        commit.stored = Some((row.state.status, stored_version));
        // The cached copy is the row read, moved on, with the new state the commit held: the
        // state moves between them and is never copied.
        let id = row.id;
        let mut next = row;
        next.state = commit.state.take().expect("a transition commits its state");
        next.revision += 1;
        next.last_seq += events;
        next.updated_at = now;
        let view = InstanceView::of(&next, &version);
        commit.idempotency = idem.map(|i| remembered(i, &view));
        commit.consumes = consumes;
        commit.state = Some(std::mem::take(&mut next.state));
        self.write(guard, &commit).await?;
        next.state = commit.state.take().expect("the commit holds the state");
        guard.row = Some(next);
        self.count(|| super::metrics::transition(&version.workflow, kind, began.elapsed()));
        self.timers_set(&commit.timers);
        if has_outbox {
            self.outbox_wake.notify_one();
        }
        if let Some(g) = placed {
            Box::pin(self.recheck_placed(guard, id, g)).await?;
        }
        Ok(view)
    }

    /// Moves an instance to version number `to_version` of its workflow. `steps` maps active
    /// steps of the old version to steps of the new one (identity for steps not named). With
    /// `dry_run`, nothing is written and the result says what would happen.
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
            return Err(EngineError::Closed(msg!("engine-migrate-closed", id = id, status = row.state.status.word())));
        }
        let to_row = self.version_number(&row.workflow, to_version).await.map_err(|e| match e {
            EngineError::NotFound(message) => EngineError::Refused { message, field: Some("to_version".into()) },
            e => e,
        })?;
        let (to_row, to) = self.version(to_row.id).await?;
        let (from_row, from) = self.version(row.version).await?;
        // A step is part-way through when someone has acted on it (a ballot, a report).
        let acted: std::collections::BTreeSet<u32> = self
            .store
            .history(id)
            .await?
            .iter()
            .filter_map(|e| match &e.event {
                Event::Action { token, .. } => Some(*token),
                _ => None,
            })
            .collect();
        let (mapping, problems) = migration_mapping(&row, &from, &to, to_row.seq, steps, &acted);
        let plan = MigrationPlan {
            instance: id,
            from_version: from_row.seq,
            to_version: to_row.seq,
            steps: mapping.clone(),
            problems: problems.clone(),
            applied: false,
        };
        if dry_run {
            return Ok(plan);
        }
        if !problems.is_empty() {
            return Err(EngineError::Refused {
                message: msg!("engine-migrate-problems", problems = problems.clone()),
                field: Some("steps".into()),
            });
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
        let t = Transition::plain(s, events, timers);
        let stored_version = row.version;
        let moved = InstanceRow { version: to_row.id, ..row };
        self.apply_transition_from(&mut guard, moved, stored_version, t, now, None, None).await?;
        Ok(MigrationPlan { applied: true, ..plan })
    }

    /// Reads an instance.
    pub async fn get(&self, id: i64) -> Result<InstanceRow, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        Ok(self.loaded(id, &mut guard).await?.clone())
    }

    /// The community (unit) of a case, without copying the rest of it.
    pub async fn unit_of(&self, id: i64) -> Result<String, EngineError> {
        let slot = self.slot(id);
        let mut guard = slot.lock().await;
        Ok(self.loaded(id, &mut guard).await?.unit.clone())
    }

    pub async fn view(&self, id: i64) -> Result<InstanceView, EngineError> {
        let row = self.get(id).await?;
        self.view_of(&row).await
    }

    /// The view of an instance read with [`Engine::get`].
    pub async fn view_of(&self, row: &InstanceRow) -> Result<InstanceView, EngineError> {
        let (version, _) = self.version(row.version).await?;
        Ok(InstanceView::of(row, &version))
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

    /// Urgency levels most urgent first, for sorting a listing: of `workflow` when given, else
    /// of every active workflow (a level named by several sorts by its most urgent place).
    pub fn urgency_order(&self, workflow: Option<&str>) -> Vec<String> {
        let active = self.active();
        let mut ranked: Vec<(u32, String)> = Vec::new();
        for (key, (_, def)) in &active.current {
            if workflow.is_some_and(|w| w != key) {
                continue;
            }
            for (i, level) in def.urgency.iter().flat_map(|u| u.levels.keys()).enumerate() {
                match ranked.iter_mut().find(|(_, l)| l == level) {
                    Some(r) => r.0 = r.0.min(i as u32),
                    None => ranked.push((i as u32, level.clone())),
                }
            }
        }
        ranked.sort();
        ranked.into_iter().map(|(_, l)| l).collect()
    }

    /// The whole history of an instance.
    pub async fn history(&self, id: i64) -> Result<Vec<EventRow>, EngineError> {
        let h = self.store.history(id).await?;
        if h.is_empty() {
            return Err(EngineError::NotFound(msg!("engine-no-instance", id = id)));
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

/// What a retry with the same key gets back.
fn remembered(i: &Idempotency, view: &InstanceView) -> (String, String, String) {
    (i.key.clone(), i.fingerprint.clone(), serde_json::to_string(view).unwrap_or_default())
}

/// The step an action was aimed at: its branch's, the one named, or the only step that accepts
/// it; `None` when that cannot be told.
fn targeted_step(
    def: &yishi_core::Definition,
    state: &yishi_core::runtime::InstanceState,
    req: &ActionRequest,
) -> Option<String> {
    if let Some(t) = req.token {
        return state.token(t).map(|t| t.step.clone());
    }
    if let Some(s) = &req.step {
        return Some(s.clone());
    }
    let mut accepting =
        state.tokens.iter().filter(|t| def.step(&t.step).is_some_and(|s| s.action(&req.action).is_some()));
    match (accepting.next(), accepting.next()) {
        (Some(one), None) => Some(one.step.clone()),
        _ => None,
    }
}

/// Where each active step of `row` goes under the new version, and why it cannot (if so).
fn migration_mapping(
    row: &InstanceRow,
    from: &yishi_core::Definition,
    to: &yishi_core::Definition,
    to_seq: i64,
    steps: &BTreeMap<String, String>,
    acted: &std::collections::BTreeSet<u32>,
) -> (BTreeMap<String, String>, Vec<Message>) {
    let mut problems = Vec::new();
    let mut mapping = BTreeMap::new();
    for t in &row.state.tokens {
        let target = steps.get(&t.step).cloned().unwrap_or_else(|| t.step.clone());
        let Some(new_step) = to.step(&target) else {
            problems.push(msg!("migrate-no-place", step = &t.step, version = to_seq));
            continue;
        };
        let old_kind = from.step(&t.step).map(|s| s.kind.as_str()).unwrap_or_default();
        let explicit = steps.contains_key(&t.step);
        let in_progress = acted.contains(&t.id);
        if in_progress && !explicit {
            problems.push(msg!("migrate-in-progress", step = &t.step, kind = old_kind, target = &target));
        } else if in_progress && new_step.kind != old_kind {
            problems.push(msg!("migrate-kind-changed", step = &t.step, kind = old_kind, new_kind = &new_step.kind));
        }
        if target != t.step {
            mapping.insert(t.step.clone(), target);
        }
    }
    for k in steps.keys() {
        if !row.state.tokens.iter().any(|t| &t.step == k) {
            problems.push(msg!("migrate-not-active", step = k, id = row.id));
        }
    }
    (mapping, problems)
}

/// The kind of step a transition moved (the step acted on, timed out or left first), for the
/// transition metrics; `end` when nothing named a step.
fn moved_kind<'d>(def: &'d yishi_core::definition::Definition, t: &Transition) -> &'d str {
    t.events
        .iter()
        .find_map(|e| match e {
            Event::Action { step, .. } | Event::TimerFired { step, .. } | Event::Left { step, .. } => def.step(step),
            _ => None,
        })
        .map_or("end", |s| s.kind.as_str())
}

/// Case `id` is at `revision`, not at the `expected` one the client saw.
/// The gathering transition `t` put its case on, if any.
fn placed_on(t: &Transition) -> Option<i64> {
    t.events.iter().rev().find_map(|e| match e {
        Event::Gathered { gathering, .. } => Some(*gathering),
        _ => None,
    })
}

fn stale(id: i64, revision: i64, expected: i64) -> EngineError {
    EngineError::Conflict(msg!("engine-stale-revision", id = id, revision = revision, expected = expected))
}
