//! Instance transitions as pure functions: (definition, state, input, now) -> events.
//!
//! Every change of state is an [`Event`] applied the moment it is emitted, so the state of an
//! instance is always exactly the fold of its events ([`replay`]). Nothing here reads a clock,
//! touches storage or performs I/O; the service commits what a transition returns.

use crate::i18n::Message;
use crate::msg;
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::definition::{Definition, StepDef};
use crate::duration::Duration;
use crate::kind::{
    ActionInput, Actor, Control, DEADLINE_TIMER, Flow, GATHERING_KEY, GatheringOp, JoinWait, Notice, NumberRequest,
    PartyMark, Spawn, SplitMode, StepCx, StepError, TimerOp,
};
use crate::script::ScriptError;

/// Where a case stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Completed,
    Cancelled,
    Failed,
}

impl Status {
    /// The status in words, for people.
    pub fn word(self) -> Message {
        Message::new(match self {
            Status::Active => "status-active",
            Status::Completed => "status-completed",
            Status::Cancelled => "status-cancelled",
            Status::Failed => "status-failed",
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "active" => Status::Active,
            "completed" => Status::Completed,
            "cancelled" => Status::Cancelled,
            "failed" => Status::Failed,
            _ => return None,
        })
    }
}

/// A gathering (a sitting) a case is on the agenda of: its id and date (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GatheringRef {
    pub id: i64,
    pub at: i64,
}

/// A position in the workflow: one active step of a case (several after a split).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Token {
    pub id: u32,
    pub step: String,
    /// Open splits this token is inside, innermost last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// The step kind's own state (votes cast, attendance ...).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub state: Value,
    pub entered_at: i64,
}

/// An open split: how many branches started and how many reached the join.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scope {
    pub id: u32,
    pub split: String,
    pub join: String,
    pub expected: u32,
    pub arrived: u32,
    pub fired: bool,
    /// The scopes of the token that opened the split (restored after the join).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outer: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
}

/// The whole state of a case. Always equal to the fold of its events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct InstanceState {
    pub status: Status,
    #[serde(default)]
    pub outcome: Option<String>,
    pub tokens: Vec<Token>,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    pub data: Map<String, Value>,
    /// How urgent the case is: one of its workflow's urgency levels, when it declares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    /// What the case counts for in the statistics, from its `counted` events.
    #[serde(default, skip_serializing_if = "Figures::is_empty")]
    pub figures: Figures,
    /// The gathering (a sitting) the case is, or was last, on the agenda of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gathering: Option<GatheringRef>,
    #[serde(default)]
    pub visits: BTreeMap<String, u32>,
    pub next_token: u32,
    pub next_scope: u32,
    #[serde(default)]
    pub error: Option<Message>,
}

impl Default for InstanceState {
    fn default() -> Self {
        InstanceState {
            status: Status::Active,
            outcome: None,
            tokens: Vec::new(),
            scopes: Vec::new(),
            data: Map::new(),
            urgency: None,
            figures: Figures::default(),
            gathering: None,
            visits: BTreeMap::new(),
            next_token: 1,
            next_scope: 1,
            error: None,
        }
    }
}

impl InstanceState {
    /// Ids of the active steps, in token order.
    pub fn active_steps(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.step.as_str()).collect()
    }
    pub fn token(&self, id: u32) -> Option<&Token> {
        self.tokens.iter().find(|t| t.id == id)
    }
}

/// What a case counts for in the statistics (the three rates): the fold of its `counted`
/// events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Figures {
    /// It got a response (entered a step its workflow counts as responding).
    #[serde(default, skip_serializing_if = "is_false")]
    pub responded: bool,
    /// A deadline of it passed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overdue: bool,
    /// Residents' answers in a follow-up (回访).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answers: u32,
    /// Of those, answers saying it was resolved, and satisfied.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resolved_answers: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub satisfied_answers: u32,
    /// Their ratings added up.
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub score_sum: f64,
    /// Resolved and satisfied in the residents' view: more than half of the answers say so.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resolved: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub satisfied: bool,
    /// The parties the case called on (departments whistled), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parties: BTreeMap<String, PartyFigures>,
}

/// What one party called on in a case counts for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PartyFigures {
    #[serde(default, skip_serializing_if = "is_false")]
    pub responded: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub in_time: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub answers: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub satisfied_answers: u32,
    #[serde(default, skip_serializing_if = "is_zero_f")]
    pub score_sum: f64,
}

impl Figures {
    pub fn is_empty(&self) -> bool {
        *self == Figures::default()
    }
}

/// One thing a case counts for (see [`Figures`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "figure", rename_all = "snake_case")]
pub enum Figure {
    /// It entered a step its workflow counts as responding.
    Responded { step: String },
    /// A resident answered in a follow-up step: the rating and what it says.
    Answered { step: String, score: f64, resolved: bool, satisfied: bool },
    /// A deadline passed.
    Overdue { step: String },
    /// The step called on a party (a department whistled).
    Called { step: String, party: String },
    /// The party answered; `in_time`: before its due time.
    PartyResponded { step: String, party: String, in_time: bool },
    /// The party's response was rated, and whether the rating counts as satisfied.
    PartyRated { step: String, party: String, score: f64, satisfied: bool },
}

/// One entry of a case's history. Cause events (`action`, `timer_fired`, `refused`) change
/// nothing by themselves; effect events change the state as [`apply`] says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Started {
        workflow: String,
        /// Content hash of the definition version the case started on.
        hash: String,
        data: Map<String, Value>,
        /// The urgency level the case started with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        urgency: Option<String>,
    },
    Action {
        action: String,
        step: String,
        token: u32,
        actor: Actor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_behalf_of: Option<Actor>,
        payload: Map<String, Value>,
    },
    Refused {
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        actor: Actor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_behalf_of: Option<Actor>,
        /// Why, as a message (rendered in the reader's language).
        reason: Message,
        /// Refusals of the same person on this case just before this one that were counted but
        /// not recorded (more than the hourly limit).
        #[serde(default, skip_serializing_if = "is_zero")]
        unrecorded_before: u32,
    },
    TimerFired {
        timer: String,
        step: String,
        token: u32,
    },
    Entered {
        token: u32,
        step: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        scopes: Vec<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<Value>,
    },
    Left {
        token: u32,
        step: String,
        outcome: String,
    },
    /// The step kind's whole state (recorded when a merge patch cannot say the change).
    StepState {
        token: u32,
        state: Value,
    },
    /// A change of the step kind's state, as a JSON merge patch (RFC 7386, [`crate::patch`]).
    StepStateChanged {
        token: u32,
        patch: Value,
    },
    DataChanged {
        changes: Map<String, Value>,
    },
    ScopeOpened {
        scope: Scope,
    },
    ScopeArrived {
        scope: u32,
        token: u32,
    },
    ScopeShrunk {
        scope: u32,
    },
    ScopeClosed {
        scope: u32,
    },
    TokenCancelled {
        token: u32,
        step: String,
        reason: Message,
    },
    Notified {
        notice: Notice,
    },
    /// Something a person should know about how the case was run, for the record: a deadline
    /// counted through a year the calendar has no holidays for.
    Noted {
        step: String,
        note: Message,
    },
    Completed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
    },
    Cancelled {
        reason: String,
    },
    Failed {
        error: Message,
    },
    /// Someone changed how urgent the case is (at triage), and why.
    UrgencyChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        to: String,
        actor: Actor,
        reason: String,
    },
    /// The case was merged into another as a duplicate (合并): it closes with outcome `merged`.
    MergedInto {
        into: i64,
        actor: Actor,
        reason: String,
    },
    /// A duplicate was merged into this case, bringing these people (its proposer, co-signers).
    Merged {
        from: i64,
        actor: Actor,
        reason: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        people: Vec<String>,
    },
    /// What the case counts for in the statistics, as its workflow's `[statistics]` says.
    Counted {
        #[serde(flatten)]
        figure: Figure,
    },
    Migrated {
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        steps: BTreeMap<String, String>,
    },
    /// Put on the agenda of gathering `gathering` (dated `at`), waiting at `step`: by the
    /// engine (the next gathering that takes items), by `actor` (staff chose it), or rolled
    /// over from gathering `from`.
    Gathered {
        gathering: i64,
        /// The gathering's date (Unix ms).
        gathering_at: i64,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<Actor>,
    },
    /// Taken off the agenda of gathering `gathering` without a decision (not reached, or the
    /// gathering did not take place); the engine puts it on the next one.
    Released {
        gathering: i64,
        step: String,
    },
    /// Gathering `gathering` decided the case's item: `outcome`, with `record` (a tally, a
    /// note) and who entered it.
    Concluded {
        gathering: i64,
        step: String,
        outcome: String,
        #[serde(default, skip_serializing_if = "Map::is_empty")]
        record: Map<String, Value>,
        actor: Actor,
    },
}

impl Event {
    /// The event's type name as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Action { .. } => "action",
            Event::Refused { .. } => "refused",
            Event::TimerFired { .. } => "timer_fired",
            Event::Entered { .. } => "entered",
            Event::Left { .. } => "left",
            Event::StepState { .. } => "step_state",
            Event::StepStateChanged { .. } => "step_state_changed",
            Event::DataChanged { .. } => "data_changed",
            Event::ScopeOpened { .. } => "scope_opened",
            Event::ScopeArrived { .. } => "scope_arrived",
            Event::ScopeShrunk { .. } => "scope_shrunk",
            Event::ScopeClosed { .. } => "scope_closed",
            Event::TokenCancelled { .. } => "token_cancelled",
            Event::Notified { .. } => "notified",
            Event::Noted { .. } => "noted",
            Event::Completed { .. } => "completed",
            Event::Cancelled { .. } => "cancelled",
            Event::Failed { .. } => "failed",
            Event::UrgencyChanged { .. } => "urgency_changed",
            Event::MergedInto { .. } => "merged_into",
            Event::Merged { .. } => "merged",
            Event::Counted { .. } => "counted",
            Event::Migrated { .. } => "migrated",
            Event::Gathered { .. } => "gathered",
            Event::Released { .. } => "released",
            Event::Concluded { .. } => "concluded",
        }
    }
}

/// Applies one event to a state. The only place where state changes.
pub fn apply(s: &mut InstanceState, e: &Event) {
    match e {
        Event::Started { data, urgency, .. } => {
            *s = InstanceState { data: data.clone(), urgency: urgency.clone(), ..InstanceState::default() };
        }
        Event::UrgencyChanged { to, .. } => s.urgency = Some(to.clone()),
        Event::Gathered { gathering, gathering_at, .. } => {
            s.gathering = Some(GatheringRef { id: *gathering, at: *gathering_at });
            s.data.insert(GATHERING_KEY.to_owned(), Value::from(*gathering));
        }
        Event::Released { .. } => {
            s.gathering = None;
            s.data.remove(GATHERING_KEY);
        }
        // Decided: off the agenda; the gathering's date stays for deadlines counted from it.
        Event::Concluded { .. } => {
            s.data.remove(GATHERING_KEY);
        }
        Event::Counted { figure } => count(&mut s.figures, figure),
        Event::Action { .. }
        | Event::Refused { .. }
        | Event::TimerFired { .. }
        | Event::Notified { .. }
        | Event::Merged { .. }
        | Event::Noted { .. } => {}
        Event::MergedInto { .. } => {
            s.status = Status::Completed;
            s.outcome = Some(MERGED.to_owned());
            s.tokens.clear();
            s.scopes.clear();
        }
        Event::Entered { token, step, scopes, item } => {
            s.tokens.push(Token {
                id: *token,
                step: step.clone(),
                scopes: scopes.clone(),
                item: item.clone(),
                state: Value::Null,
                entered_at: 0,
            });
            s.next_token = s.next_token.max(token + 1);
            *s.visits.entry(step.clone()).or_default() += 1;
        }
        Event::Left { token, .. } | Event::TokenCancelled { token, .. } => s.tokens.retain(|t| t.id != *token),
        Event::StepState { token, state } => {
            if let Some(t) = s.tokens.iter_mut().find(|t| t.id == *token) {
                t.state = state.clone();
            }
        }
        Event::StepStateChanged { token, patch } => {
            if let Some(t) = s.tokens.iter_mut().find(|t| t.id == *token) {
                crate::patch::merge(&mut t.state, patch);
            }
        }
        Event::DataChanged { changes } => {
            for (k, v) in changes {
                if v.is_null() {
                    s.data.remove(k);
                } else {
                    s.data.insert(k.clone(), v.clone());
                }
            }
        }
        Event::ScopeOpened { scope } => {
            s.next_scope = s.next_scope.max(scope.id + 1);
            s.scopes.push(scope.clone());
        }
        Event::ScopeArrived { scope, .. } => {
            if let Some(sc) = s.scopes.iter_mut().find(|x| x.id == *scope) {
                sc.arrived += 1;
            }
        }
        Event::ScopeShrunk { scope } => {
            if let Some(sc) = s.scopes.iter_mut().find(|x| x.id == *scope) {
                sc.expected = sc.expected.saturating_sub(1);
            }
        }
        Event::ScopeClosed { scope } => {
            if let Some(sc) = s.scopes.iter_mut().find(|x| x.id == *scope) {
                sc.fired = true;
            }
            // A closed scope with no token inside it is forgotten.
            let live: Vec<u32> = s.tokens.iter().flat_map(|t| t.scopes.iter().copied()).collect();
            s.scopes.retain(|x| !x.fired || live.contains(&x.id));
        }
        Event::Completed { outcome } => {
            s.status = Status::Completed;
            s.outcome = outcome.clone();
            s.tokens.clear();
            s.scopes.clear();
        }
        Event::Cancelled { reason } => {
            s.status = Status::Cancelled;
            s.outcome = Some(reason.clone());
            s.tokens.clear();
            s.scopes.clear();
        }
        Event::Failed { error } => {
            s.status = Status::Failed;
            s.error = Some(error.clone());
        }
        Event::Migrated { steps, .. } => {
            for t in &mut s.tokens {
                if let Some(to) = steps.get(&t.step) {
                    t.step = to.clone();
                }
            }
        }
    }
}

/// Adds what a `counted` event counts to the case's figures.
fn count(f: &mut Figures, figure: &Figure) {
    match figure {
        Figure::Responded { .. } => f.responded = true,
        Figure::Overdue { .. } => f.overdue = true,
        Figure::Called { party, .. } => {
            f.parties.entry(party.clone()).or_default();
        }
        Figure::PartyResponded { party, in_time, .. } => {
            let p = f.parties.entry(party.clone()).or_default();
            p.responded = true;
            p.in_time = *in_time;
        }
        Figure::PartyRated { party, score, satisfied, .. } => {
            let p = f.parties.entry(party.clone()).or_default();
            p.answers += 1;
            p.score_sum += score;
            p.satisfied_answers += u32::from(*satisfied);
        }
        Figure::Answered { score, resolved, satisfied, .. } => {
            f.answers += 1;
            f.score_sum += score;
            f.resolved_answers += u32::from(*resolved);
            f.satisfied_answers += u32::from(*satisfied);
            f.resolved = f.resolved_answers * 2 > f.answers;
            f.satisfied = f.satisfied_answers * 2 > f.answers;
        }
    }
}

/// Rebuilds a state from its events (with the entry times the store recorded).
pub fn replay<'a>(events: impl IntoIterator<Item = (&'a Event, i64)>) -> InstanceState {
    let mut s = InstanceState::default();
    for (e, at) in events {
        apply(&mut s, e);
        if let Event::Entered { token, .. } = e
            && let Some(t) = s.tokens.iter_mut().find(|t| t.id == *token)
        {
            t.entered_at = at;
        }
    }
    s
}

/// A timer change to store with a transition.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerChange {
    Set {
        token: u32,
        step: String,
        name: String,
        due_at: i64,
    },
    Clear {
        token: u32,
        name: String,
    },
    /// Every timer of a token (it left its step).
    ClearToken {
        token: u32,
    },
    /// Every timer of the instance (it closed).
    ClearAll,
}

/// What a transition produced: the new state, the events that lead to it, timer changes and
/// notices to deliver after the commit.
#[derive(Clone, Debug)]
pub struct Transition {
    pub state: InstanceState,
    pub events: Vec<Event>,
    pub timers: Vec<TimerChange>,
    pub notices: Vec<Notice>,
    /// Numbers to allocate before the commit (see [`NumberRequest`]).
    pub numbers: Vec<NumberRequest>,
    /// Cases to start after the commit.
    pub spawns: Vec<Spawn>,
    /// Changes to the cases on the agenda of the gathering this case hosts, committed with it.
    pub gathering_ops: Vec<GatheringOp>,
}

impl Transition {
    /// A transition that only records `events` (already applied to `state`) and timer changes.
    pub fn plain(state: InstanceState, events: Vec<Event>, timers: Vec<TimerChange>) -> Self {
        Transition {
            state,
            events,
            timers,
            notices: Vec::new(),
            numbers: Vec::new(),
            spawns: Vec::new(),
            gathering_ops: Vec::new(),
        }
    }

    /// Records an allocated number as a data change (called by the service before commit).
    pub fn fill_number(&mut self, req: &NumberRequest, n: i64) {
        let mut changes = Map::new();
        changes.insert(req.key.clone(), Value::String(req.render(n)));
        let e = Event::DataChanged { changes };
        apply(&mut self.state, &e);
        self.events.push(e);
    }
}

/// Why a transition did not happen. Nothing of it is kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// The case is closed; its status.
    #[error("{}", self.message())]
    Closed(Status),
    /// The step asked for is not active.
    #[error("{0}")]
    NoSuchStep(Message),
    /// The branch (token) asked for is not active.
    #[error("{0}")]
    NoSuchToken(Message),
    #[error("{message}")]
    Forbidden { message: Message },
    #[error("{message}")]
    Refused { message: Message, field: Option<String> },
    #[error("{}", self.message())]
    Script { step: String, error: ScriptError },
    #[error("{}", self.message())]
    Step { step: String, message: Message },
    #[error("{}", self.message())]
    Runaway(usize),
}

impl RunError {
    /// What went wrong, for people.
    pub fn message(&self) -> Message {
        match self {
            RunError::Closed(status) => msg!("run-closed", status = status.word()),
            RunError::NoSuchStep(m)
            | RunError::NoSuchToken(m)
            | RunError::Forbidden { message: m }
            | RunError::Refused { message: m, .. } => m.clone(),
            RunError::Script { step, error } => msg!("run-script-failed", step = step, error = error.located()),
            RunError::Step { step, message } => msg!("run-step-failed", step = step, error = message.clone()),
            RunError::Runaway(n) => msg!("run-runaway", count = *n),
        }
    }
}

/// The most steps one transition may pass through before it is treated as a runaway loop.
pub const MAX_STEPS_PER_TRANSITION: usize = 10_000;

struct Run<'a> {
    def: &'a Definition,
    state: InstanceState,
    events: Vec<Event>,
    timers: Vec<TimerChange>,
    notices: Vec<Notice>,
    numbers: Vec<NumberRequest>,
    spawns: Vec<Spawn>,
    gathering_ops: Vec<GatheringOp>,
    agenda: &'a [i64],
    now: i64,
    instance_id: i64,
    queue: std::collections::VecDeque<(String, Vec<u32>, Option<Value>)>,
    steps_run: usize,
}

impl<'a> Run<'a> {
    fn new(def: &'a Definition, state: InstanceState, now: i64, instance_id: i64) -> Self {
        Run {
            def,
            state,
            events: Vec::new(),
            timers: Vec::new(),
            notices: Vec::new(),
            numbers: Vec::new(),
            spawns: Vec::new(),
            gathering_ops: Vec::new(),
            agenda: &[],
            now,
            instance_id,
            queue: Default::default(),
            steps_run: 0,
        }
    }

    fn emit(&mut self, e: Event) {
        apply(&mut self.state, &e);
        if let Event::Entered { token, .. } = &e
            && let Some(t) = self.state.tokens.iter_mut().find(|t| t.id == *token)
        {
            t.entered_at = self.now;
        }
        let counted = self.counted(&e);
        self.events.push(e);
        if let Some(figure) = counted {
            let c = Event::Counted { figure };
            apply(&mut self.state, &c);
            self.events.push(c);
        }
    }

    /// What event `e` counts for in the statistics, as the workflow's `[statistics]` says.
    fn counted(&self, e: &Event) -> Option<Figure> {
        let st = &self.def.statistics;
        match e {
            Event::Entered { step, .. } if !self.state.figures.responded => {
                let responds = if st.responded.is_empty() {
                    *step != self.def.steps[self.def.start].id
                } else {
                    st.responded.contains(step)
                };
                responds.then(|| Figure::Responded { step: step.clone() })
            }
            Event::Action { step, payload, .. } if st.follow_up.contains(step) => {
                let score = payload.get(&st.rating).and_then(Value::as_f64)?;
                Some(Figure::Answered {
                    step: step.clone(),
                    score,
                    resolved: score >= st.resolved_at_least,
                    satisfied: score >= st.satisfied_at_least,
                })
            }
            // A deadline a kind handles itself closes a period (a vote, an evaluation); any other
            // passing means nobody acted in time.
            Event::TimerFired { timer, step, .. } if timer == DEADLINE_TIMER && !self.state.figures.overdue => self
                .def
                .step(step)
                .is_some_and(|s| !s.behaviour.handles_deadline())
                .then(|| Figure::Overdue { step: step.clone() }),
            _ => None,
        }
    }

    fn finish(self) -> Transition {
        Transition {
            state: self.state,
            events: self.events,
            timers: self.timers,
            notices: self.notices,
            numbers: self.numbers,
            spawns: self.spawns,
            gathering_ops: self.gathering_ops,
        }
    }

    fn step(&self, id: &str) -> Result<&'a StepDef, RunError> {
        self.def.step(id).ok_or_else(|| RunError::NoSuchStep(msg!("run-step-not-in-version", step = id)))
    }

    /// Runs queued entries until every token waits or the case ends.
    fn drain(&mut self) -> Result<(), RunError> {
        while let Some((step, scopes, item)) = self.queue.pop_front() {
            if self.state.status != Status::Active {
                self.queue.clear();
                break;
            }
            self.steps_run += 1;
            if self.steps_run > MAX_STEPS_PER_TRANSITION {
                return Err(RunError::Runaway(MAX_STEPS_PER_TRANSITION));
            }
            self.enter(&step, scopes, item)?;
        }
        Ok(())
    }

    fn enter(&mut self, step_id: &str, scopes: Vec<u32>, item: Option<Value>) -> Result<(), RunError> {
        let step = self.step(step_id)?;
        let token = self.state.next_token;
        self.emit(Event::Entered { token, step: step_id.to_owned(), scopes: scopes.clone(), item: item.clone() });
        match step.behaviour.control() {
            Control::End { terminate, outcome } => {
                self.emit(Event::Left { token, step: step_id.to_owned(), outcome: "end".into() });
                if terminate {
                    for t in self.state.tokens.clone() {
                        self.emit(Event::TokenCancelled {
                            token: t.id,
                            step: t.step.clone(),
                            reason: msg!("reason-terminated", step = step_id),
                        });
                    }
                }
                if self.state.tokens.is_empty() {
                    self.emit(Event::Completed { outcome: outcome.map(str::to_owned) });
                    self.timers.push(TimerChange::ClearAll);
                }
                Ok(())
            }
            Control::Join(spec) => {
                let spec = spec.clone();
                let Some(&scope_id) = scopes.last() else {
                    return Err(RunError::Step { step: step_id.into(), message: msg!("run-join-without-split") });
                };
                self.emit(Event::ScopeArrived { scope: scope_id, token });
                self.emit(Event::Left { token, step: step_id.to_owned(), outcome: "arrived".into() });
                self.try_fire_join(scope_id, spec.wait, spec.cancel_rest)
            }
            Control::Split(split) => {
                let split = split.clone();
                let mut cx = self.cx(step, token, item.as_ref());
                let branches: Vec<(String, Option<Value>)> = match &split.mode {
                    SplitMode::All(b) => b.iter().map(|x| (x.clone(), item.clone())).collect(),
                    SplitMode::Some(b) => {
                        let mut out = Vec::new();
                        for (to, cond) in b {
                            if cx.eval_bool(cond).map_err(|e| script_err(step_id, e))? {
                                out.push((to.clone(), item.clone()));
                            }
                        }
                        out
                    }
                    SplitMode::Each { items, body } => {
                        let v = cx.eval(items).map_err(|e| script_err(step_id, e))?;
                        let list = crate::script::from_dynamic(&v);
                        let Value::Array(list) = list else {
                            return Err(script_err(step_id, ScriptError::wrong_result(items, msg!("type-array"), &v)));
                        };
                        list.into_iter().map(|x| (body.clone(), Some(x))).collect()
                    }
                };
                cx.changes.clear();
                let scope_id = self.state.next_scope;
                self.emit(Event::Left { token, step: step_id.to_owned(), outcome: "split".into() });
                self.emit(Event::ScopeOpened {
                    scope: Scope {
                        id: scope_id,
                        split: step_id.to_owned(),
                        join: split.join.clone(),
                        expected: branches.len() as u32,
                        arrived: 0,
                        fired: false,
                        outer: scopes.clone(),
                        item: item.clone(),
                    },
                });
                if branches.is_empty() {
                    let join = self.step(&split.join)?;
                    let (wait, cancel) = match join.behaviour.control() {
                        Control::Join(j) => (j.wait, j.cancel_rest),
                        _ => (JoinWait::All, false),
                    };
                    return self.try_fire_join(scope_id, wait, cancel);
                }
                for (to, it) in branches {
                    let mut sc = scopes.clone();
                    sc.push(scope_id);
                    self.queue.push_back((to, sc, it));
                }
                Ok(())
            }
            Control::Task => {
                if let Some(guard) = &step.guard {
                    let cx = self.cx(step, token, item.as_ref());
                    if !cx.eval_bool(guard).map_err(|e| script_err(step_id, e))? {
                        return self.leave(token, "skipped");
                    }
                }
                let mut cx = self.cx(step, token, item.as_ref());
                let flow = step.behaviour.on_enter(&mut cx).map_err(|e| step_err(step_id, e))?;
                let effects = Effects::take(cx);
                self.absorb(token, step, effects);
                match flow {
                    Flow::Done(outcome) => self.leave(token, &outcome),
                    Flow::Wait => self.arm_deadline(token, step, item.as_ref()),
                }
            }
        }
    }

    fn try_fire_join(&mut self, scope_id: u32, wait: JoinWait, cancel_rest: bool) -> Result<(), RunError> {
        let Some(scope) = self.state.scopes.iter().find(|s| s.id == scope_id).cloned() else {
            return Ok(());
        };
        if scope.fired {
            return Ok(()); // late branch of a partial join: absorbed
        }
        let needed = match wait {
            JoinWait::All => scope.expected,
            JoinWait::Count(n) => n.min(scope.expected),
            JoinWait::Share(f) => ((f * f64::from(scope.expected)).ceil() as u32).min(scope.expected),
        };
        if scope.arrived < needed {
            return Ok(());
        }
        self.emit(Event::ScopeClosed { scope: scope_id });
        if cancel_rest {
            for t in self.state.tokens.clone() {
                if t.scopes.contains(&scope_id) {
                    self.emit(Event::TokenCancelled {
                        token: t.id,
                        step: t.step.clone(),
                        reason: msg!("reason-join-fired", join = &scope.join),
                    });
                    self.timers.push(TimerChange::ClearToken { token: t.id });
                }
            }
        }
        let join = self.step(&scope.join)?;
        let Some(next) = join.target("joined") else {
            return Err(RunError::Step { step: scope.join.clone(), message: msg!("run-join-no-next") });
        };
        self.queue.push_back((next.to_owned(), scope.outer.clone(), scope.item.clone()));
        Ok(())
    }

    /// The for-each branch `token` runs in: the innermost for-each split around it and the
    /// key of its item. Data written in a branch goes to `data.<split>.<key>`.
    fn branch_of(&self, token: u32) -> Option<(String, String)> {
        let tok = self.state.token(token)?;
        let item = tok.item.as_ref()?;
        tok.scopes.iter().rev().find_map(|id| {
            let scope = self.state.scopes.iter().find(|s| s.id == *id)?;
            let split = self.def.step(&scope.split)?;
            match split.behaviour.control() {
                Control::Split(crate::kind::Split { mode: SplitMode::Each { .. }, .. }) => {
                    Some((scope.split.clone(), item_key(item)))
                }
                _ => None,
            }
        })
    }

    fn cx(&self, step: &'a StepDef, token: u32, item: Option<&'a Value>) -> StepCx<'_> {
        let tok = self.state.token(token);
        let data = match self.branch_of(token) {
            None => Cow::Borrowed(&self.state.data),
            Some((split, key)) => {
                let mut data = self.state.data.clone();
                if let Some(Value::Object(own)) = self.state.data.get(&split).and_then(|b| b.get(&key)) {
                    data.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Cow::Owned(data)
            }
        };
        StepCx {
            step_id: &step.id,
            now: self.now,
            data,
            changes: Map::new(),
            state: tok.map(|t| t.state.clone()).unwrap_or(Value::Null),
            params: &self.def.params_json,
            sandbox: &self.def.sandbox,
            calendar: &self.def.calendar,
            item,
            visits: self.state.visits.get(&step.id).copied().unwrap_or(0),
            all_visits: &self.state.visits,
            deadline_outcome: step.deadline.as_ref().map_or("expired", |d| d.outcome.as_str()),
            timers: Vec::new(),
            notices: Vec::new(),
            numbers: Vec::new(),
            spawns: Vec::new(),
            party_marks: Vec::new(),
            uncovered_years: Default::default(),
            instance_id: self.instance_id,
            unit: &self.def.unit,
            urgency: self.state.urgency.as_deref(),
            agenda: self.agenda,
            gathering_ops: Vec::new(),
            due_at: None,
        }
    }

    fn absorb(&mut self, token: u32, step: &StepDef, fx: Effects) {
        if !fx.changes.is_empty() {
            let changes = match self.branch_of(token) {
                None => fx.changes,
                // A branch writes only its own part, so branches never overwrite each other.
                Some((split, key)) => {
                    let mut all = match self.state.data.get(&split) {
                        Some(Value::Object(m)) => m.clone(),
                        _ => Map::new(),
                    };
                    let mut own = match all.get(&key) {
                        Some(Value::Object(m)) => m.clone(),
                        _ => Map::new(),
                    };
                    for (k, v) in fx.changes {
                        if v.is_null() {
                            own.remove(&k);
                        } else {
                            own.insert(k, v);
                        }
                    }
                    all.insert(key, Value::Object(own));
                    Map::from_iter([(split, Value::Object(all))])
                }
            };
            self.emit(Event::DataChanged { changes });
        }
        let old = self.state.token(token).map_or(&Value::Null, |t| &t.state);
        if fx.state != *old {
            // Only what changed, where a merge patch says it exactly: a vote's fiftieth ballot,
            // not all fifty.
            let e = match crate::patch::diff(old, &fx.state) {
                Some(patch) => Event::StepStateChanged { token, patch },
                None => Event::StepState { token, state: fx.state },
            };
            self.emit(e);
        }
        for t in fx.timers {
            self.timers.push(match t {
                TimerOp::Set { name, due_at } => {
                    TimerChange::Set { token, step: step.id.clone(), name, due_at: due_at.max(self.now) }
                }
                TimerOp::Clear { name } => TimerChange::Clear { token, name },
            });
        }
        for n in fx.notices {
            self.emit(Event::Notified { notice: n.clone() });
            self.notices.push(n);
        }
        for year in fx.uncovered_years {
            self.note_uncovered(&step.id, year);
        }
        self.numbers.extend(fx.numbers);
        self.spawns.extend(fx.spawns);
        self.gathering_ops.extend(fx.gathering_ops);
        for (party, mark) in fx.party_marks {
            let step = step.id.clone();
            let figure = match mark {
                PartyMark::Called => Figure::Called { step, party },
                PartyMark::Responded { in_time } => Figure::PartyResponded { step, party, in_time },
                PartyMark::Rated { score } => {
                    let satisfied = score >= self.def.statistics.satisfied_at_least;
                    Figure::PartyRated { step, party, score, satisfied }
                }
            };
            let c = Event::Counted { figure };
            apply(&mut self.state, &c);
            self.events.push(c);
        }
    }

    /// Records that a working-day count at `step` ran into `year`, whose holidays the
    /// calendar does not know (the due time may be off by the holidays of that year).
    fn note_uncovered(&mut self, step: &str, year: i32) {
        let calendar = self.def.calendar.files.first().cloned().unwrap_or_default();
        let note = msg!("note-calendar-uncovered", step = step, year = i64::from(year), calendar = calendar);
        self.emit(Event::Noted { step: step.to_owned(), note });
    }

    fn leave(&mut self, token: u32, outcome: &str) -> Result<(), RunError> {
        let Some(tok) = self.state.token(token).cloned() else {
            return Ok(());
        };
        let step = self.step(&tok.step)?;
        self.emit(Event::Left { token, step: tok.step.clone(), outcome: outcome.to_owned() });
        self.timers.push(TimerChange::ClearToken { token });
        let Some(next) = step.target(outcome) else {
            return Err(RunError::Step { step: tok.step, message: msg!("run-outcome-nowhere", outcome = outcome) });
        };
        self.queue.push_back((next.to_owned(), tok.scopes, tok.item));
        Ok(())
    }

    fn arm_deadline(&mut self, token: u32, step: &StepDef, item: Option<&Value>) -> Result<(), RunError> {
        let Some(d) = &step.deadline else {
            return Ok(());
        };
        let by_level = self.state.urgency.as_ref().and_then(|l| d.by_urgency.get(l));
        let duration = match (by_level, &d.after, &d.compute) {
            (Some(l), _, _) => *l,
            (None, Some(a), _) => *a,
            (None, None, Some(script)) => {
                let cx = self.cx(step, token, item);
                let v = cx.eval(script).map_err(|e| script_err(&step.id, e))?;
                let text = v
                    .clone()
                    .into_string()
                    .map_err(|_| script_err(&step.id, ScriptError::wrong_result(script, msg!("type-duration"), &v)))?;
                Duration::parse(&text).map_err(|e| RunError::Step {
                    step: step.id.clone(),
                    message: msg!("run-deadline-script", error = e.message()),
                })?
            }
            (None, None, None) => return Ok(()),
        };
        let from = if d.from_gathering {
            // At a step that waits for a gathering, only the one it is on counts.
            let waiting_unplaced = step.behaviour.awaits().is_some() && !self.state.data.contains_key(GATHERING_KEY);
            match self.state.gathering {
                Some(g) if !waiting_unplaced => g.at,
                _ => return Ok(()), // armed when the case is put on a gathering's agenda
            }
        } else {
            self.now
        };
        let (due, uncovered) = self.def.calendar.add_checked(from, duration);
        if let Some(year) = uncovered {
            self.note_uncovered(&step.id, year);
        }
        self.timers.push(TimerChange::Set { token, step: step.id.clone(), name: DEADLINE_TIMER.into(), due_at: due });
        for (i, r) in d.remind_before.iter().enumerate() {
            let at = due - r.nominal_ms();
            if at > self.now {
                self.timers.push(TimerChange::Set {
                    token,
                    step: step.id.clone(),
                    name: format!("remind:{i}"),
                    due_at: at,
                });
            }
        }
        Ok(())
    }
}

struct Effects {
    changes: Map<String, Value>,
    state: Value,
    timers: Vec<TimerOp>,
    notices: Vec<Notice>,
    numbers: Vec<NumberRequest>,
    spawns: Vec<Spawn>,
    uncovered_years: Vec<i32>,
    party_marks: Vec<(String, PartyMark)>,
    gathering_ops: Vec<GatheringOp>,
}

impl Effects {
    fn take(cx: StepCx<'_>) -> Self {
        Effects {
            changes: cx.changes,
            state: cx.state,
            timers: cx.timers,
            notices: cx.notices,
            numbers: cx.numbers,
            spawns: cx.spawns,
            uncovered_years: cx.uncovered_years.into_inner(),
            party_marks: cx.party_marks,
            gathering_ops: cx.gathering_ops,
        }
    }
}

fn script_err(step: &str, error: ScriptError) -> RunError {
    RunError::Script { step: step.to_owned(), error }
}

fn step_err(step: &str, e: StepError) -> RunError {
    match e {
        StepError::Refused { message, field } => RunError::Refused { message, field },
        StepError::Script(error) => script_err(step, error),
        StepError::Failed(message) => RunError::Step { step: step.to_owned(), message },
    }
}

/// Starts a case: records `started` and runs until every branch waits.
pub fn start(def: &Definition, data: Map<String, Value>, now: i64, instance_id: i64) -> Result<Transition, RunError> {
    start_at(def, data, now, instance_id, def.start, None)
}

/// Starts a case at step `step` (an index into `def.steps`) instead of the first: for cases
/// brought in from another system part way through. The step is entered as if the case had
/// arrived there. `urgency` is the level the intake named (the workflow's default when `None`).
pub fn start_at(
    def: &Definition,
    data: Map<String, Value>,
    now: i64,
    instance_id: i64,
    step: usize,
    urgency: Option<&str>,
) -> Result<Transition, RunError> {
    let urgency = match (&def.urgency, urgency) {
        (None, None) => None,
        (Some(u), None) => Some(u.default.clone()),
        (u, Some(level)) => Some(known_level(def, u.as_ref(), level)?),
    };
    let mut run = Run::new(def, InstanceState::default(), now, instance_id);
    run.emit(Event::Started { workflow: def.key.clone(), hash: def.hash.clone(), data, urgency });
    run.queue.push_back((def.steps[step].id.clone(), Vec::new(), None));
    run.drain()?;
    Ok(run.finish())
}

/// An action someone asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action: String,
    /// The step to act on, when several are active.
    #[serde(default)]
    pub step: Option<String>,
    /// The token to act on, when one step is active several times (one branch per item).
    #[serde(default)]
    pub token: Option<u32>,
    #[serde(default)]
    pub payload: Map<String, Value>,
    pub actor: Actor,
    #[serde(default)]
    pub on_behalf_of: Option<Actor>,
}

/// Applies an action. Refusals (wrong step, role, payload) are errors and change nothing.
pub fn act(
    def: &Definition,
    state: &InstanceState,
    req: &ActionRequest,
    now: i64,
    instance_id: i64,
) -> Result<Transition, RunError> {
    act_in(def, state, req, now, instance_id, &[])
}

/// [`act`] on a case that hosts a gathering, whose agenda (the ids of the cases on it) the
/// service read for the step to see.
pub fn act_in(
    def: &Definition,
    state: &InstanceState,
    req: &ActionRequest,
    now: i64,
    instance_id: i64,
    agenda: &[i64],
) -> Result<Transition, RunError> {
    if state.status != Status::Active {
        return Err(RunError::Closed(state.status));
    }
    if let Some(tid) = req.token
        && state.token(tid).is_none()
    {
        return Err(RunError::NoSuchToken(msg!("run-token-inactive", token = tid, active = active_places(state))));
    }
    let subject = req.on_behalf_of.as_ref().unwrap_or(&req.actor);
    let candidates: Vec<&Token> = state
        .tokens
        .iter()
        .filter(|t| req.step.as_ref().is_none_or(|s| &t.step == s) && req.token.is_none_or(|id| t.id == id))
        .collect();
    let accepting: Vec<&Token> = candidates
        .iter()
        .copied()
        .filter(|t| def.step(&t.step).is_some_and(|s| s.action(&req.action).is_some()))
        .collect();
    // Where an action is accepted in several places, the places this person may act in decide.
    let permitted: Vec<&Token> = accepting
        .iter()
        .copied()
        .filter(|t| {
            def.step(&t.step)
                .is_some_and(|s| s.allowed_roles(&req.action).iter().any(|r| r == "*" || subject.roles.contains(r)))
        })
        .collect();
    let token: &Token = match (accepting.as_slice(), permitted.as_slice(), &req.step) {
        ([one], _, _) | (_, [one], _) => one,
        ([], _, Some(s)) if candidates.is_empty() => {
            let active = state.active_steps().join(", ");
            return Err(RunError::NoSuchStep(msg!("run-step-inactive", step = s, active = active)));
        }
        ([], _, _) => {
            let mut accepted: Vec<Message> = Vec::new();
            for t in &candidates {
                if let Some(s) = def.step(&t.step) {
                    accepted.extend(s.actions.iter().map(|a| msg!("run-action-at", action = &a.name, step = &t.step)));
                }
            }
            let message = if accepted.is_empty() {
                msg!("run-not-accepted-none", action = &req.action)
            } else {
                msg!("run-not-accepted", action = &req.action, accepted = accepted)
            };
            return Err(RunError::Refused { message, field: Some("action".into()) });
        }
        (_, [], _) => accepting[0], // nobody may: the role check below says why
        (_, many, _) => {
            let places: Vec<Message> =
                many.iter().map(|t| msg!("run-token-at", token = t.id, step = &t.step)).collect();
            return Err(RunError::Refused {
                message: msg!("run-several-places", action = &req.action, places = places),
                field: Some("token".into()),
            });
        }
    };
    let step = def
        .step(&token.step)
        .ok_or_else(|| RunError::NoSuchStep(msg!("run-step-not-in-version", step = &token.step)))?;
    let spec = step.action(&req.action).expect("filtered above");
    let allowed = step.allowed_roles(&req.action);
    if !allowed.iter().any(|r| r == "*" || subject.roles.contains(r)) {
        return Err(RunError::Forbidden {
            message: msg!(
                "run-forbidden",
                action = &req.action,
                step = &step.id,
                roles = allowed.to_vec(),
                actor = &subject.id,
                holds = if subject.roles.is_empty() {
                    msg!("run-no-role")
                } else {
                    Message::verbatim(subject.roles.join(", "))
                }
            ),
        });
    }
    spec.validate(&req.payload).map_err(|e| step_err(&step.id, e))?;

    let mut run = Run::new(def, state.clone(), now, instance_id);
    run.agenda = agenda;
    run.emit(Event::Action {
        action: req.action.clone(),
        step: step.id.clone(),
        token: token.id,
        actor: req.actor.clone(),
        on_behalf_of: req.on_behalf_of.clone(),
        payload: req.payload.clone(),
    });
    let mut cx = run.cx(step, token.id, token.item.as_ref());
    let input = ActionInput { name: &req.action, payload: &req.payload, actor: &req.actor, subject };
    let flow = step.behaviour.on_action(&mut cx, &input).map_err(|e| step_err(&step.id, e))?;
    let fx = Effects::take(cx);
    run.absorb(token.id, step, fx);
    if let Flow::Done(outcome) = flow {
        run.leave(token.id, &outcome)?;
    }
    run.drain()?;
    Ok(run.finish())
}

/// `level`, when the workflow declares it.
fn known_level(def: &Definition, u: Option<&crate::definition::UrgencyDef>, level: &str) -> Result<String, RunError> {
    match u {
        Some(u) if u.levels.contains_key(level) => Ok(level.to_owned()),
        Some(u) => Err(RunError::Refused {
            message: msg!(
                "run-urgency-unknown",
                level = level,
                levels = u.levels.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            field: Some("urgency".into()),
        }),
        None => Err(RunError::Refused {
            message: msg!("run-urgency-undeclared", workflow = &def.key),
            field: Some("urgency".into()),
        }),
    }
}

/// Refuses `actor` unless they hold one of `roles` (`*`: anyone), with message `key` (arguments
/// `roles`, `actor`, `holds`).
fn may(actor: &Actor, roles: &[String], key: &'static str) -> Result<(), RunError> {
    if roles.iter().any(|r| r == "*" || actor.roles.contains(r)) {
        return Ok(());
    }
    let holds = if actor.roles.is_empty() { msg!("run-no-role") } else { Message::verbatim(actor.roles.join(", ")) };
    Err(RunError::Forbidden {
        message: Message::new(key).arg("roles", roles.join(", ")).arg("actor", actor.id.as_str()).arg("holds", holds),
    })
}

/// Changes how urgent a case is: allowed while a branch waits at one of the steps the workflow
/// names for it (triage), to someone holding one of the roles it names. Recorded with who and
/// why; the deadlines of the waiting steps are counted again for the new level (from when each
/// step was entered).
pub fn set_urgency(
    def: &Definition,
    state: &InstanceState,
    level: &str,
    reason: &str,
    actor: &Actor,
    instance_id: i64,
) -> Result<Transition, RunError> {
    if state.status != Status::Active {
        return Err(RunError::Closed(state.status));
    }
    let level = known_level(def, def.urgency.as_ref(), level)?;
    let u = def.urgency.as_ref().expect("known_level checked it");
    if !state.tokens.iter().any(|t| u.change_at.contains(&t.step)) {
        return Err(RunError::Refused {
            message: msg!(
                "run-urgency-not-here",
                steps = u.change_at.join(", "),
                active = state.active_steps().join(", ")
            ),
            field: None,
        });
    }
    may(actor, &u.change_roles, "run-urgency-forbidden")?;
    if reason.trim().is_empty() {
        return Err(RunError::Refused { message: msg!("run-urgency-reason"), field: Some("reason".into()) });
    }
    if state.urgency.as_deref() == Some(level.as_str()) {
        return Err(RunError::Refused {
            message: msg!("run-urgency-same", level = &level),
            field: Some("level".into()),
        });
    }
    let mut s = state.clone();
    let e = Event::UrgencyChanged {
        from: state.urgency.clone(),
        to: level,
        actor: actor.clone(),
        reason: reason.to_owned(),
    };
    apply(&mut s, &e);
    // Deadlines that depend on the level are counted again, from when their step was entered.
    let mut timers = Vec::new();
    for t in &s.tokens {
        let Some(step) = def.step(&t.step) else { continue };
        let Some(d) = &step.deadline else { continue };
        if d.by_urgency.is_empty() && d.compute.is_none() || !matches!(step.behaviour.control(), Control::Task) {
            continue;
        }
        timers.push(TimerChange::Clear { token: t.id, name: DEADLINE_TIMER.into() });
        timers.extend(
            (0..d.remind_before.len()).map(|i| TimerChange::Clear { token: t.id, name: format!("remind:{i}") }),
        );
        let mut run = Run::new(def, s.clone(), t.entered_at, instance_id);
        run.arm_deadline(t.id, step, t.item.as_ref())?;
        timers.extend(run.timers);
    }
    Ok(Transition::plain(s, vec![e], timers))
}

/// The outcome of a case merged into another.
pub const MERGED: &str = "merged";

/// One side of a merge: a case's definition, state and id.
pub struct MergeSide<'a> {
    pub def: &'a Definition,
    pub state: &'a InstanceState,
    pub id: i64,
}

/// Merges case `from` into case `into` (duplicates, 合并): `from` closes with outcome `merged`
/// and `data.merged_into`; `into` records a `merged` event and gains, in `data.merged` and
/// `data.merged_people`, the people `from` brings (the data paths its workflow's `[merge]
/// people` names). Allowed while `from` waits at a step its workflow's `[merge] at` names, to
/// someone holding one of its `[merge] roles`. Both sides are committed together.
pub fn merge(
    into: &MergeSide<'_>,
    from: &MergeSide<'_>,
    actor: &Actor,
    reason: &str,
) -> Result<(Transition, Transition), RunError> {
    if from.state.status != Status::Active {
        return Err(RunError::Closed(from.state.status));
    }
    if into.state.status != Status::Active {
        return Err(RunError::Refused {
            message: msg!("run-merge-into-closed", case = into.id, status = into.state.status.word()),
            field: None,
        });
    }
    let Some(m) = &from.def.merge else {
        return Err(RunError::Refused { message: msg!("run-merge-undeclared", workflow = &from.def.key), field: None });
    };
    if !from.state.tokens.iter().any(|t| m.at.contains(&t.step)) {
        return Err(RunError::Refused {
            message: msg!(
                "run-merge-past",
                case = from.id,
                steps = m.at.join(", "),
                active = from.state.active_steps().join(", ")
            ),
            field: None,
        });
    }
    may(actor, &m.roles, "run-merge-forbidden")?;
    if reason.trim().is_empty() {
        return Err(RunError::Refused { message: msg!("run-merge-reason"), field: Some("reason".into()) });
    }
    let mut people: Vec<String> = Vec::new();
    for path in &m.people {
        let mut parts = path.split('.');
        let mut v = parts.next().and_then(|first| from.state.data.get(first));
        for part in parts {
            v = v.and_then(|x| x.get(part));
        }
        let names: Vec<String> = match v {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        for n in names {
            if !people.contains(&n) {
                people.push(n);
            }
        }
    }
    // The case it joins.
    let mut merged = match into.state.data.get("merged") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    merged.push(serde_json::json!({ "case": from.id, "people": people }));
    let mut all: Vec<Value> = match into.state.data.get("merged_people") {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    for p in &people {
        if !all.iter().any(|x| x.as_str() == Some(p)) {
            all.push(Value::String(p.clone()));
        }
    }
    let mut changes = Map::new();
    changes.insert("merged".into(), Value::Array(merged));
    changes.insert("merged_people".into(), Value::Array(all));
    let into_events = vec![
        Event::Merged { from: from.id, actor: actor.clone(), reason: reason.to_owned(), people },
        Event::DataChanged { changes },
    ];
    // The duplicate.
    let from_events = vec![
        Event::DataChanged { changes: Map::from_iter([("merged_into".to_owned(), Value::from(into.id))]) },
        Event::MergedInto { into: into.id, actor: actor.clone(), reason: reason.to_owned() },
    ];
    let side = |state: &InstanceState, events: Vec<Event>, timers: Vec<TimerChange>| {
        let mut s = state.clone();
        for e in &events {
            apply(&mut s, e);
        }
        Transition::plain(s, events, timers)
    };
    Ok((side(into.state, into_events, Vec::new()), side(from.state, from_events, vec![TimerChange::ClearAll])))
}

/// The token of a case waiting at a step that awaits a gathering, and that step.
pub fn awaiting<'d>(def: &'d Definition, state: &InstanceState) -> Option<(u32, &'d StepDef)> {
    if state.status != Status::Active {
        return None;
    }
    state.tokens.iter().find_map(|t| {
        let step = def.step(&t.step)?;
        step.behaviour.awaits().map(|_| (t.id, step))
    })
}

/// Puts a case waiting at a step that awaits gatherings on the agenda of `gathering`: by the
/// engine (`actor` `None`), by staff who chose it, or rolled over from gathering `from`. A
/// deadline of the step counted from the gathering's date is armed (again).
pub fn gather(
    def: &Definition,
    state: &InstanceState,
    gathering: GatheringRef,
    from: Option<i64>,
    actor: Option<&Actor>,
    now: i64,
    instance_id: i64,
) -> Result<Transition, RunError> {
    let Some((token, step)) = awaiting(def, state) else {
        return Err(RunError::Refused {
            message: msg!("run-gather-not-waiting", case = instance_id, active = active_places(state)),
            field: Some("case".into()),
        });
    };
    let mut run = Run::new(def, state.clone(), now, instance_id);
    run.emit(Event::Gathered {
        gathering: gathering.id,
        gathering_at: gathering.at,
        step: step.id.clone(),
        from,
        actor: actor.cloned(),
    });
    if step.deadline.as_ref().is_some_and(|d| d.from_gathering) {
        let item = run.state.token(token).and_then(|t| t.item.clone());
        run.timers.push(TimerChange::ClearToken { token });
        run.arm_deadline(token, step, item.as_ref())?;
    }
    Ok(run.finish())
}

/// Takes a waiting case off the agenda of `gathering` (its item was not reached); the engine
/// then puts it on the next gathering.
pub fn release(def: &Definition, state: &InstanceState, gathering: i64, now: i64, instance_id: i64) -> Transition {
    let mut run = Run::new(def, state.clone(), now, instance_id);
    if let Some((token, step)) = awaiting(def, state) {
        run.emit(Event::Released { gathering, step: step.id.clone() });
        if step.deadline.as_ref().is_some_and(|d| d.from_gathering) {
            run.timers.push(TimerChange::ClearToken { token });
        }
    }
    run.finish()
}

/// A gathering's decision on one case of its agenda.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    pub gathering: i64,
    pub outcome: &'a str,
    pub record: &'a Map<String, Value>,
    pub actor: &'a Actor,
}

/// Concludes a case on the agenda of `gathering` with `outcome`: recorded with the gathering
/// named (and kept in `data.<step>`), then the case goes on along `outcome`.
pub fn conclude(
    def: &Definition,
    state: &InstanceState,
    d: &Decision<'_>,
    now: i64,
    instance_id: i64,
) -> Result<Transition, RunError> {
    let Decision { gathering, outcome, record, actor } = *d;
    let waiting = awaiting(def, state).filter(|_| state.gathering.is_some_and(|g| g.id == gathering));
    let Some((token, step)) = waiting else {
        return Err(RunError::Refused {
            message: msg!("run-conclude-not-on-agenda", case = instance_id, gathering = gathering),
            field: Some("case".into()),
        });
    };
    let awaits = step.behaviour.awaits().expect("awaiting() found it");
    if !awaits.outcomes.iter().any(|o| o == outcome) {
        return Err(RunError::Refused {
            message: msg!("run-conclude-outcome", outcome = outcome, outcomes = awaits.outcomes.join(", ")),
            field: Some("outcome".into()),
        });
    }
    let mut run = Run::new(def, state.clone(), now, instance_id);
    run.emit(Event::Concluded {
        gathering,
        step: step.id.clone(),
        outcome: outcome.to_owned(),
        record: record.clone(),
        actor: actor.clone(),
    });
    let mut kept = record.clone();
    kept.insert(GATHERING_KEY.into(), Value::from(gathering));
    kept.insert("outcome".into(), Value::from(outcome));
    run.emit(Event::DataChanged { changes: Map::from_iter([(step.id.clone(), Value::Object(kept))]) });
    run.leave(token, outcome)?;
    run.drain()?;
    Ok(run.finish())
}

/// The key a for-each item's results are kept under: a string as it is, a number as its
/// text, an object by its `id` (or `name`), anything else as its JSON text.
pub fn item_key(item: &Value) -> String {
    match item {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("id").or_else(|| m.get("name")) {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Number(_)) => v.to_string(),
            _ => item.to_string(),
        },
        other => other.to_string(),
    }
}

/// Fires a timer. `None` when the timer is void (its step was left) or the case is closed.
/// A timer that fell due.
#[derive(Debug, Clone, Copy)]
pub struct Fired<'a> {
    pub token: u32,
    pub step: &'a str,
    pub timer: &'a str,
    /// When it was due (it may fire later, never earlier).
    pub due_at: i64,
}

pub fn fire(
    def: &Definition,
    state: &InstanceState,
    fired: Fired<'_>,
    now: i64,
    instance_id: i64,
) -> Result<Option<Transition>, RunError> {
    let Fired { token, step: step_id, timer, due_at } = fired;
    let due_at = Some(due_at);
    if state.status != Status::Active {
        return Ok(None);
    }
    let Some(tok) = state.token(token).filter(|t| t.step == step_id).cloned() else {
        return Ok(None);
    };
    let step =
        def.step(step_id).ok_or_else(|| RunError::NoSuchStep(msg!("run-step-not-in-version", step = step_id)))?;
    let mut run = Run::new(def, state.clone(), now, instance_id);
    run.emit(Event::TimerFired { timer: timer.to_owned(), step: step_id.to_owned(), token });
    if timer.starts_with("remind:") {
        let notice = Notice {
            topic: "reminder".into(),
            to: step.roles.clone(),
            message: msg!("notice-reminder", step = &step.id, case = instance_id),
            webhook: None,
            robot: None,
            body: Value::Null,
        };
        run.emit(Event::Notified { notice: notice.clone() });
        run.notices.push(notice);
        return Ok(Some(run.finish()));
    }
    let mut cx = run.cx(step, token, tok.item.as_ref());
    cx.due_at = due_at;
    let flow = step.behaviour.on_timer(&mut cx, timer).map_err(|e| step_err(step_id, e))?;
    let fx = Effects::take(cx);
    run.absorb(token, step, fx);
    if let Flow::Done(outcome) = flow {
        run.leave(token, &outcome)?;
    }
    run.drain()?;
    Ok(Some(run.finish()))
}

/// The deadline timers of every waiting step under `def`, counted from when each step was
/// entered (used after a migration to re-arm deadlines under the new rules).
pub fn rearm(def: &Definition, state: &InstanceState, instance_id: i64) -> Result<Vec<TimerChange>, RunError> {
    let mut out = Vec::new();
    for t in &state.tokens {
        let Some(step) = def.step(&t.step) else { continue };
        if !matches!(step.behaviour.control(), Control::Task) {
            continue;
        }
        let mut run = Run::new(def, state.clone(), t.entered_at, instance_id);
        run.arm_deadline(t.id, step, t.item.as_ref())?;
        out.extend(run.timers);
    }
    Ok(out)
}

/// Marks a case failed (a timer's script failed): recorded, and nothing else moves.
pub fn fail(state: &InstanceState, error: Message) -> Transition {
    let mut s = state.clone();
    let e = Event::Failed { error };
    apply(&mut s, &e);
    Transition::plain(s, vec![e], vec![TimerChange::ClearAll])
}

/// Cancels a whole case (WCP-20).
pub fn cancel(state: &InstanceState, reason: &str) -> Result<Transition, RunError> {
    if state.status != Status::Active {
        return Err(RunError::Closed(state.status));
    }
    let mut s = state.clone();
    let mut events = Vec::new();
    for t in &state.tokens {
        events.push(Event::TokenCancelled { token: t.id, step: t.step.clone(), reason: Message::verbatim(reason) });
    }
    events.push(Event::Cancelled { reason: reason.to_owned() });
    for e in &events {
        apply(&mut s, e);
    }
    Ok(Transition::plain(s, events, vec![TimerChange::ClearAll]))
}

/// Cancels one active step (WCP-19). A cancelled branch no longer counts towards its join,
/// which may then fire. With no step left, the case is cancelled.
pub fn cancel_step(
    def: &Definition,
    state: &InstanceState,
    step_id: &str,
    reason: &str,
    now: i64,
    instance_id: i64,
) -> Result<Transition, RunError> {
    if state.status != Status::Active {
        return Err(RunError::Closed(state.status));
    }
    let tokens: Vec<Token> = state.tokens.iter().filter(|t| t.step == step_id).cloned().collect();
    if tokens.is_empty() {
        return Err(RunError::NoSuchStep(msg!(
            "run-step-inactive",
            step = step_id,
            active = state.active_steps().join(", ")
        )));
    }
    let mut run = Run::new(def, state.clone(), now, instance_id);
    for t in tokens {
        run.emit(Event::TokenCancelled { token: t.id, step: t.step.clone(), reason: Message::verbatim(reason) });
        run.timers.push(TimerChange::ClearToken { token: t.id });
        if let Some(&scope) = t.scopes.last() {
            run.emit(Event::ScopeShrunk { scope });
            if let Some(sc) = run.state.scopes.iter().find(|s| s.id == scope).cloned()
                && let Some(Control::Join(j)) = def.step(&sc.join).map(|s| s.behaviour.control())
            {
                let (wait, cancel) = (j.wait, j.cancel_rest);
                run.try_fire_join(scope, wait, cancel)?;
            }
        }
    }
    run.drain()?;
    if run.state.tokens.is_empty() && run.state.status == Status::Active {
        run.emit(Event::Cancelled { reason: reason.to_owned() });
        run.timers.push(TimerChange::ClearAll);
    }
    Ok(run.finish())
}

/// The active branches of a case, for messages: "3 at `vote`, 4 at `review`".
fn active_places(state: &InstanceState) -> Vec<Message> {
    state.tokens.iter().map(|t| msg!("run-token-at", token = t.id, step = &t.step)).collect()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_f(n: &f64) -> bool {
    *n == 0.0
}

fn is_false(b: &bool) -> bool {
    !*b
}
