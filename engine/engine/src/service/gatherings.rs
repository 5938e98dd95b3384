//! Gatherings: cases that other cases wait for and that conclude them together (a community's
//! sittings). A case entering a step that awaits a gathering goes on the agenda of the next one
//! that takes items; a gathering's actions see its agenda and conclude or release the cases on
//! it in the same commit unit (the gathering's slot first, then the cases' in id order).
//!
//! The agenda is kept on the cases (`data.gathering`, listed through the data filter), never as
//! a list in the gathering's row: placing a case changes that case alone. A gathering that ends
//! sweeps its agenda once more after its commit, and a case placed on a gathering checks it
//! again after its own commit, so a case placed while the gathering closed is not left behind.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};
use yishi_core::definition::Definition;
use yishi_core::duration::Duration;
use yishi_core::kind::{Actor, GATHERING_KEY, GatheringOp};
use yishi_core::msg;
use yishi_core::runtime::{self, Event, GatheringRef, Status, Transition};

use super::{Engine, EngineError, InstanceView, Slot, run_error};
use crate::store::{InstanceRow, ListFilter, Store};

/// Most gatherings of one workflow and unit read when looking for the next one.
const MAX_OPEN: u32 = 200;
/// Most cases read as one gathering's agenda.
const MAX_AGENDA: u32 = 1_000;

/// A gathering as the engine sees it: the case hosting it, its date, whether it takes items.
#[derive(Clone, Debug)]
struct Hosted {
    id: i64,
    at: i64,
    cutoff: Duration,
    takes_items: bool,
}

/// The gathering a case hosts, when it is at a hosting step with a readable date.
fn hosted(def: &Definition, row: &InstanceRow) -> Option<Hosted> {
    if row.state.status != Status::Active {
        return None;
    }
    row.state.tokens.iter().find_map(|t| {
        let step = def.step(&t.step)?;
        let h = step.behaviour.hosts()?;
        let text = row.state.data.get(&h.date_key)?.as_str()?;
        let at = chrono::DateTime::parse_from_rfc3339(text).ok()?.timestamp_millis();
        Some(Hosted { id: row.id, at, cutoff: h.cutoff, takes_items: step.behaviour.takes_items(&t.state) })
    })
}

/// The id of the step hosting gatherings in `def`, if any.
fn host_step(def: &Definition) -> Option<&str> {
    def.steps.iter().find(|s| s.behaviour.hosts().is_some()).map(|s| s.id.as_str())
}

/// One item of a gathering's agenda.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AgendaItem {
    pub case: i64,
    pub workflow: String,
    /// `pending` (waiting to be taken up), `decided` or `rolled_over` (not reached; on the next
    /// gathering's agenda, or waiting for one to be scheduled).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The tally and note recorded with the decision.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub record: Map<String, Value>,
    /// The case's papers: the data its waiting step names.
    pub papers: Map<String, Value>,
    /// Where an item not reached went: the next gathering's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_on: Option<i64>,
}

/// A gathering (a sitting) with its agenda.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GatheringView {
    pub id: i64,
    pub unit: String,
    pub workflow: String,
    pub revision: i64,
    /// What the hosting step records: `scheduled`, `open`, `held`, `inquorate` or `cancelled`.
    pub status: String,
    /// The date and time, as scheduled (RFC 3339).
    pub date: Option<String>,
    /// Unix ms of `date`.
    pub at: Option<i64>,
    /// The case's data: place, expected attendees, title, and the hosting step's record
    /// (quorum check, decisions, minutes, items rolled over) under the step's id.
    pub data: Map<String, Value>,
    /// Filled in when one gathering is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agenda: Vec<AgendaItem>,
}

impl Engine {
    /// The gatherings of workflow `key` in `unit` still running, soonest first.
    async fn running_gatherings(&self, key: &str, unit: &str) -> Result<Vec<Hosted>, EngineError> {
        let filter = ListFilter {
            units: Some(vec![unit.to_owned()]),
            workflow: Some(key.to_owned()),
            status: Some(Status::Active.as_str().to_owned()),
            limit: MAX_OPEN,
            ..ListFilter::default()
        };
        let mut out = Vec::new();
        for s in self.store.list(&filter).await? {
            let row = self.store.load(s.id).await?;
            let def = self.definition(row.version).await?;
            out.extend(hosted(&def, &row));
        }
        out.sort_by_key(|g| (g.at, g.id));
        Ok(out)
    }

    /// Puts the case `id` (whose transition is `t`) on the agenda of the next gathering that
    /// takes items, when it waits for one and is on none. A case taken off gathering `from` in
    /// `t` (rolled over) goes to the next gathering after it, whatever its cut-off; any other
    /// to the first whose cut-off has not passed. Returns the gathering chosen.
    pub(super) async fn place(
        &self,
        def: &Definition,
        id: i64,
        t: &mut Transition,
        now: i64,
    ) -> Result<Option<i64>, EngineError> {
        let Some((_, step)) = runtime::awaiting(def, &t.state) else { return Ok(None) };
        if t.state.data.contains_key(GATHERING_KEY) {
            return Ok(None);
        }
        let awaits = step.behaviour.awaits().expect("awaiting() found it");
        let from = t.events.iter().rev().find_map(|e| match e {
            Event::Released { gathering, .. } => Some(*gathering),
            _ => None,
        });
        let key = format!("{}/{}", def.unit, awaits.host);
        let next = self.running_gatherings(&key, &def.unit).await?.into_iter().find(|g| {
            g.takes_items
                && Some(g.id) != from
                && if from.is_some() { g.at > now } else { now < g.at - g.cutoff.nominal_ms() }
        });
        let Some(g) = next else { return Ok(None) };
        let placed = runtime::gather(def, &t.state, GatheringRef { id: g.id, at: g.at }, from, None, now, id)
            .map_err(run_error)?;
        t.state = placed.state;
        t.events.extend(placed.events);
        t.timers.extend(placed.timers);
        Ok(Some(g.id))
    }

    /// After case `id` was placed on gathering `g` and committed: if `g` ended meanwhile (it
    /// closed between our read and our commit), the case goes on the next one.
    pub(super) async fn recheck_placed(&self, guard: &mut Slot, id: i64, g: i64) -> Result<(), EngineError> {
        let host = self.store.load(g).await?;
        if host.state.status == Status::Active {
            return Ok(()); // still running: its own close sweeps its agenda
        }
        self.reroute(guard, id, g).await
    }

    /// Takes case `id` off gathering `g`'s agenda and places it on the next gathering.
    async fn reroute(&self, guard: &mut Slot, id: i64, g: i64) -> Result<(), EngineError> {
        let row = self.loaded(id, guard).await?.clone();
        if row.state.data.get(GATHERING_KEY).and_then(Value::as_i64) != Some(g) {
            return Ok(());
        }
        let def = self.definition(row.version).await?;
        let now = self.now();
        let t = runtime::release(&def, &row.state, g, now, id);
        tracing::info!(instance = id, gathering = g, "case left on an ended gathering's agenda goes to the next one");
        self.apply_transition(guard, row, t, now, None, None).await.map(|_| ())
    }

    /// The ids of the cases of `unit` waiting on gathering `id`'s agenda, oldest first.
    pub(super) async fn agenda_of(&self, unit: &str, id: i64) -> Result<Vec<i64>, EngineError> {
        let filter = ListFilter {
            units: Some(vec![unit.to_owned()]),
            status: Some(Status::Active.as_str().to_owned()),
            data: Some((GATHERING_KEY.to_owned(), Value::from(id))),
            limit: MAX_AGENDA,
            ..ListFilter::default()
        };
        let mut ids: Vec<i64> = self.store.list(&filter).await?.into_iter().map(|s| s.id).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Whether `row` hosts a gathering now (its actions then see the agenda).
    pub(super) fn is_host(def: &Definition, row: &InstanceRow) -> bool {
        row.state.tokens.iter().any(|t| def.step(&t.step).is_some_and(|s| s.behaviour.hosts().is_some()))
    }

    /// Commits a gathering's transition `t` together with what it asks of the cases on its
    /// agenda: the gathering's slot is held by the caller; the cases' slots are taken in id
    /// order. Any case refusing (an outcome its step does not know) refuses the whole action.
    pub(super) async fn apply_with_agenda(
        &self,
        guard: &mut Slot,
        row: InstanceRow,
        mut t: Transition,
        now: i64,
        actor: &Actor,
    ) -> Result<InstanceView, EngineError> {
        let ops = std::mem::take(&mut t.gathering_ops);
        let ids: BTreeSet<i64> = ops
            .iter()
            .flat_map(|op| match op {
                GatheringOp::Conclude { case, .. } => vec![*case],
                GatheringOp::Release { cases } => cases.clone(),
            })
            .filter(|c| *c != row.id)
            .collect();
        let slots: Vec<_> = ids.iter().map(|id| self.slot(*id)).collect();
        let mut guards = Vec::with_capacity(slots.len());
        for s in &slots {
            guards.push(s.lock().await);
        }
        let mut items: Vec<(InstanceRow, Transition)> = Vec::with_capacity(ids.len());
        for (id, g) in ids.iter().zip(guards.iter_mut()) {
            let item = self.loaded(*id, g).await?.clone();
            let def = self.definition(item.version).await?;
            let mut it = None;
            for op in &ops {
                match op {
                    GatheringOp::Conclude { case, outcome, record } if case == id => {
                        let d = runtime::Decision { gathering: row.id, outcome, record, actor };
                        it = Some(runtime::conclude(&def, &item.state, &d, now, *id).map_err(|e| {
                            let e = run_error(e);
                            match e {
                                EngineError::Refused { message, field } => EngineError::Refused {
                                    message: msg!("engine-gathering-item", case = *id, why = message),
                                    field,
                                },
                                e => e,
                            }
                        })?);
                    }
                    GatheringOp::Release { cases } if cases.contains(id) => {
                        let mut r = runtime::release(&def, &item.state, row.id, now, *id);
                        self.place(&def, *id, &mut r, now).await?;
                        it = Some(r);
                    }
                    _ => {}
                }
            }
            if let Some(mut tt) = it {
                self.fill_numbers(&mut tt).await?;
                items.push((item, tt));
            }
        }
        self.fill_numbers(&mut t).await?;
        let ended = t.state.status != Status::Active;
        let mut unit = Vec::with_capacity(items.len() + 1);
        let host_next = next_row(&row, &t, now);
        unit.push(self.commit_of(&row, row.revision, row.last_seq + 1, t, now));
        let mut nexts = Vec::with_capacity(items.len());
        for (item, tt) in items {
            nexts.push(next_row(&item, &tt, now));
            unit.push(self.commit_of(&item, item.revision, item.last_seq + 1, tt, now));
        }
        guard.unsettled = true;
        for g in &mut guards {
            g.unsettled = true;
        }
        let result = self.store.commit(&unit).await;
        guard.unsettled = false;
        for g in &mut guards {
            g.unsettled = false;
        }
        if let Err(e) = result {
            guard.row = None;
            for g in &mut guards {
                g.row = None;
            }
            return Err(e.into());
        }
        for next in nexts {
            if let Some(g) = guards.iter_mut().zip(ids.iter()).find(|(_, id)| **id == next.id).map(|(g, _)| g) {
                g.row = Some(next);
            }
        }
        drop(guards);
        let version = self.version(row.version).await?.0;
        let view = InstanceView::of(&host_next, &version);
        guard.row = Some(host_next);
        self.timers_set(unit.iter().flat_map(|c| &c.timers));
        self.outbox_wake.notify_one();
        if ended {
            self.sweep_ended(row.id, &row.unit).await?;
        }
        Ok(view)
    }

    /// After gathering `id` ended: cases still on its agenda (placed while it closed) go on
    /// the next one.
    async fn sweep_ended(&self, id: i64, unit: &str) -> Result<(), EngineError> {
        for case in self.agenda_of(unit, id).await? {
            let slot = self.slot(case);
            let mut g = slot.lock().await;
            self.reroute(&mut g, case, id).await?;
        }
        Ok(())
    }

    /// After a gathering was scheduled: the cases of its unit waiting for one of its kind and
    /// on no agenda are placed (on it, or an earlier one whose cut-off has not passed).
    pub async fn place_waiting(&self, unit: &str, host: &str) -> Result<usize, EngineError> {
        // Nothing to do unless some gathering still takes new items before its cut-off (a
        // sitting scheduled inside its cut-off takes items by staff's choice only): then no
        // waiting case is locked or read.
        let now = self.now();
        let open = self.running_gatherings(&format!("{unit}/{host}"), unit).await?;
        if !open.iter().any(|g| g.takes_items && now < g.at - g.cutoff.nominal_ms()) {
            return Ok(0);
        }
        let active = self.active();
        let waiting: Vec<(String, String)> = active
            .current
            .iter()
            .filter(|(_, (_, d))| d.unit == unit)
            .flat_map(|(key, (_, d))| {
                d.steps
                    .iter()
                    .filter(|s| s.behaviour.awaits().is_some_and(|a| a.host == host))
                    .map(|s| (key.clone(), s.id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut placed = 0;
        for (workflow, step) in waiting {
            let filter = ListFilter {
                units: Some(vec![unit.to_owned()]),
                workflow: Some(workflow),
                status: Some(Status::Active.as_str().to_owned()),
                step: Some(step),
                // Only cases on no agenda: the others need no lock taken and no load (scheduling
                // a sitting used to wait for every placed case that was being acted on).
                data: Some((GATHERING_KEY.to_owned(), Value::Null)),
                limit: MAX_AGENDA,
                ..ListFilter::default()
            };
            for s in self.store.list(&filter).await? {
                let slot = self.slot(s.id);
                let mut g = slot.lock().await;
                let row = self.loaded(s.id, &mut g).await?.clone();
                if row.state.data.contains_key(GATHERING_KEY) {
                    continue;
                }
                let def = self.definition(row.version).await?;
                let now = self.now();
                let mut t = Transition::plain(row.state.clone(), Vec::new(), Vec::new());
                if self.place(&def, s.id, &mut t, now).await?.is_some() {
                    self.apply_transition(&mut g, row, t, now, None, None).await?;
                    placed += 1;
                }
            }
        }
        Ok(placed)
    }

    /// Every unit's waiting cases placed where a gathering takes them (at start and after a
    /// reload, for cases that waited while none was scheduled or that a crash left unplaced).
    pub async fn place_all_waiting(&self) -> Result<usize, EngineError> {
        let hosts: BTreeSet<(String, String)> = self
            .active()
            .current
            .values()
            .filter(|(_, d)| host_step(d).is_some())
            .map(|(_, d)| (d.unit.clone(), d.id.clone()))
            .collect();
        let mut n = 0;
        for (unit, host) in hosts {
            n += self.place_waiting(&unit, &host).await?;
        }
        Ok(n)
    }

    /// Puts case `case` on gathering `gathering`'s agenda, as staff chose (also after the
    /// cut-off, and onto a gathering already open). The case must wait for gatherings of
    /// that kind in the same unit.
    pub async fn put_on_agenda(&self, gathering: i64, case: i64, actor: &Actor) -> Result<InstanceView, EngineError> {
        let host = self
            .store
            .load(gathering)
            .await
            .map_err(|_| EngineError::NotFound(msg!("engine-no-gathering", id = gathering)))?;
        let host_def = self.definition(host.version).await?;
        let Some(h) = hosted(&host_def, &host) else {
            return Err(EngineError::Refused { message: msg!("engine-gathering-ended", id = gathering), field: None });
        };
        let slot = self.slot(case);
        let mut guard = slot.lock().await;
        let row = self.loaded(case, &mut guard).await?.clone();
        let def = self.definition(row.version).await?;
        let waits_here = runtime::awaiting(&def, &row.state)
            .and_then(|(_, s)| s.behaviour.awaits())
            .is_some_and(|a| row.unit == host.unit && format!("{}/{}", def.unit, a.host) == host.workflow);
        if !waits_here {
            return Err(EngineError::Refused {
                message: msg!("engine-agenda-not-waiting", case = case, gathering = gathering),
                field: Some("case".into()),
            });
        }
        let on = row.state.data.get(GATHERING_KEY).and_then(Value::as_i64);
        if on == Some(gathering) {
            return Err(EngineError::Refused {
                message: msg!("engine-agenda-already", case = case, gathering = gathering),
                field: Some("case".into()),
            });
        }
        let now = self.now();
        let mut t = Transition::plain(row.state.clone(), Vec::new(), Vec::new());
        if let Some(old) = on {
            t = runtime::release(&def, &row.state, old, now, case);
        }
        let placed = runtime::gather(&def, &t.state, GatheringRef { id: h.id, at: h.at }, on, Some(actor), now, case)
            .map_err(run_error)?;
        t.state = placed.state;
        t.events.extend(placed.events);
        t.timers.extend(placed.timers);
        let view = self.apply_transition(&mut guard, row, t, now, None, None).await?;
        self.recheck_placed(&mut guard, case, gathering).await?;
        Ok(view)
    }

    /// The gatherings (sittings) of `units` (all when `None`), newest date first; `status`
    /// filters on what the hosting step records (`scheduled`, `open`, `held` ...).
    pub async fn gatherings(
        &self,
        units: Option<Vec<String>>,
        status: Option<&str>,
    ) -> Result<Vec<GatheringView>, EngineError> {
        let keys: Vec<String> =
            self.active().current.iter().filter(|(_, (_, d))| host_step(d).is_some()).map(|(k, _)| k.clone()).collect();
        let mut out = Vec::new();
        for key in keys {
            let filter =
                ListFilter { units: units.clone(), workflow: Some(key), limit: MAX_AGENDA, ..ListFilter::default() };
            for s in self.store.list(&filter).await? {
                let row = self.store.load(s.id).await?;
                let view = self.gathering_view(&row).await?;
                if status.is_none_or(|st| view.status == st) {
                    out.push(view);
                }
            }
        }
        out.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    async fn gathering_view(&self, row: &InstanceRow) -> Result<GatheringView, EngineError> {
        let def = self.definition(row.version).await?;
        let Some(step) = host_step(&def) else {
            return Err(EngineError::NotFound(msg!("engine-no-gathering", id = row.id)));
        };
        let record = row.state.data.get(step);
        let status = record
            .and_then(|r| r.get("status"))
            .and_then(Value::as_str)
            .map_or_else(|| row.state.status.as_str().to_owned(), str::to_owned);
        let date = row.state.data.get("date").and_then(Value::as_str).map(str::to_owned);
        let at =
            date.as_deref().and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok()).map(|d| d.timestamp_millis());
        Ok(GatheringView {
            id: row.id,
            unit: row.unit.clone(),
            workflow: row.workflow.clone(),
            revision: row.revision,
            status,
            date,
            at,
            data: row.state.data.clone(),
            agenda: Vec::new(),
        })
    }

    /// Gathering `id` with its agenda: items waiting, decided and rolled over.
    pub async fn gathering(&self, id: i64) -> Result<GatheringView, EngineError> {
        let row = self.store.load(id).await.map_err(|_| EngineError::NotFound(msg!("engine-no-gathering", id = id)))?;
        let mut view = self.gathering_view(&row).await?;
        let def = self.definition(row.version).await?;
        let record = host_step(&def).and_then(|s| row.state.data.get(s)).cloned().unwrap_or(Value::Null);
        let item = |case: i64, status: &str, outcome: Option<String>, record: Map<String, Value>| AgendaItem {
            case,
            workflow: String::new(),
            status: status.to_owned(),
            outcome,
            record,
            papers: Map::new(),
            now_on: None,
        };
        let mut items: Vec<AgendaItem> = Vec::new();
        for d in record.get("decisions").and_then(Value::as_array).into_iter().flatten() {
            let Some(case) = d.get("case").and_then(Value::as_i64) else { continue };
            let mut rec = d.as_object().cloned().unwrap_or_default();
            let outcome = rec.remove("outcome").and_then(|v| v.as_str().map(str::to_owned));
            rec.remove("case");
            items.push(item(case, "decided", outcome, rec));
        }
        for c in record.get("rolled_over").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_i64) {
            items.push(item(c, "rolled_over", None, Map::new()));
        }
        for c in self.agenda_of(&row.unit, row.id).await? {
            if !items.iter().any(|i| i.case == c) {
                items.push(item(c, "pending", None, Map::new()));
            }
        }
        items.sort_by_key(|i| i.case);
        for mut it in items {
            let Ok(r) = self.store.load(it.case).await else { continue };
            let d = self.definition(r.version).await?;
            let papers_keys: Vec<String> =
                d.steps.iter().find_map(|s| s.behaviour.awaits().map(|a| a.papers.clone())).unwrap_or_default();
            it.papers =
                papers_keys.iter().filter_map(|k| r.state.data.get(k).map(|v| (k.clone(), v.clone()))).collect();
            if it.status == "rolled_over" {
                it.now_on = r.state.data.get(GATHERING_KEY).and_then(Value::as_i64);
            }
            it.workflow = r.workflow.clone();
            view.agenda.push(it);
        }
        Ok(view)
    }
}

/// `row` after transition `t`.
fn next_row(row: &InstanceRow, t: &Transition, now: i64) -> InstanceRow {
    let mut n = row.clone();
    n.state = t.state.clone();
    n.revision += 1;
    n.last_seq += t.events.len() as i64;
    n.updated_at = now;
    n
}
