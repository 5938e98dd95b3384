//! The plugin interface: a step kind validates its settings at check time and decides, at run
//! time, what happens on entry, on an action and on a timer.
//!
//! Invariants a step kind must keep (see ARCHITECTURE.md):
//! - `compile` reports every problem through [`CompileCx`] and never panics on bad settings;
//! - run-time hooks are deterministic functions of their inputs (data, state, params, the
//!   action and `now`): no clock reads, no I/O, no randomness; side effects on the outside
//!   world are requested as [`Notice`]s, which the engine delivers after the commit;
//! - a refused action returns [`StepError::Refused`] and must leave `cx` unchanged in meaning
//!   (the engine discards all changes of a refused or failed hook anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;
use toml::de::DeValue;

use crate::calendar::Calendar;
use crate::diag::{Code, Diagnostics, Origin, Place};
use crate::duration::Duration;
use crate::files::{FileSet, resolve_reference};
use crate::i18n::Message;
use crate::model::Text;
use crate::msg;
use crate::script::{Sandbox, Script, ScriptError, ScriptOrigin};

/// A step kind, provided by a plugin. Registered by name in a [`Registry`].
pub trait StepKind: Send + Sync + 'static {
    /// The name used as `kind = "..."` in workflow files.
    fn name(&self) -> &str;
    /// One line for documentation and `yishi kinds`.
    fn summary(&self) -> Message;
    /// JSON Schema of the kind's settings (the step keys beyond the common ones).
    fn settings_schema(&self) -> schemars::Schema;
    /// Validates and compiles the settings of one step. Problems go to `cx`; `None` when the
    /// settings are unusable.
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>>;
}

/// The compiled behaviour of one step.
pub trait Step: Send + Sync + fmt::Debug {
    /// Outcomes this step can finish with (each must lead somewhere).
    fn outcomes(&self) -> Vec<String>;
    /// Actions this step accepts while active.
    fn actions(&self) -> Vec<ActionSpec> {
        Vec::new()
    }
    /// Steps this step names in its settings (branches of a split), for reference and graph checks.
    fn targets(&self) -> Vec<(String, Option<Range<usize>>)> {
        Vec::new()
    }
    /// How the runtime treats the step: an ordinary task, or a control-flow construct.
    fn control(&self) -> Control<'_> {
        Control::Task
    }
    /// Whether the step decides its own outcome when its deadline passes (a vote counts its
    /// ballots). When false, the deadline's `outcome` is one of the step's outcomes.
    fn handles_deadline(&self) -> bool {
        false
    }
    /// When cases wait at this step for a gathering (a sitting) to take them up together: which
    /// gatherings, and the outcomes a gathering may conclude them with. The engine puts a case
    /// entering the step on the agenda of the next gathering that takes items (see
    /// [`Hosts`]) and concludes it when that gathering decides its item.
    fn awaits(&self) -> Option<&Awaits> {
        None
    }
    /// When this step hosts a gathering: the case is the gathering (a sitting), other cases wait
    /// for it at [`Step::awaits`] steps, and its actions may conclude them
    /// ([`StepCx::conclude`], [`StepCx::release`]).
    fn hosts(&self) -> Option<&Hosts> {
        None
    }
    /// Whether the gathering hosted here, in this token state, still takes new items on its
    /// agenda (false once it has opened, say).
    fn takes_items(&self, state: &Value) -> bool {
        let _ = state;
        true
    }
    /// Called when a token enters the step.
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError>;
    /// Called for an action the step declared, after role and payload checks.
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let _ = (cx, action);
        Err(StepError::refused(msg!("run-no-actions")))
    }
    /// Called when a timer of the step fires. `deadline` is the step's own deadline; other
    /// names are timers the step set itself.
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer == DEADLINE_TIMER { Ok(Flow::Done(cx.deadline_outcome.to_owned())) } else { Ok(Flow::Wait) }
    }
}

/// The name of the timer for a step's `deadline`.
pub const DEADLINE_TIMER: &str = "deadline";

/// What a hook decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Stay in the step and wait for actions or timers.
    Wait,
    /// Leave the step with this outcome.
    Done(String),
}

/// Control-flow constructs the runtime handles itself.
#[derive(Debug)]
pub enum Control<'a> {
    Task,
    /// Ends the branch; `terminate` ends the whole case (cancelling other branches).
    End {
        terminate: bool,
        outcome: Option<&'a str>,
    },
    /// Opens branches that the named join synchronises.
    Split(&'a Split),
    /// Waits for branches of the split that names it.
    Join(&'a JoinSpec),
}

#[derive(Debug, Clone)]
pub struct Split {
    pub mode: SplitMode,
    pub join: String,
    pub join_span: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub enum SplitMode {
    /// Parallel split: every branch (WCP-2).
    All(Vec<String>),
    /// Multi-choice: the branches whose condition holds (WCP-6).
    Some(Vec<(String, Script)>),
    /// One branch per item of a list computed at run time (WCP-14); the item is bound as `item`.
    Each { items: Script, body: String },
}

#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub wait: JoinWait,
    /// Cancel the branches still running when the join fires (WCP-34 cancelling partial join).
    pub cancel_rest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JoinWait {
    /// Every branch that was started (synchronisation and synchronising merge, WCP-3/7).
    All,
    /// The first N branches (partial join, WCP-30).
    Count(u32),
    /// A share of the branches started, rounded up (quorum of branches).
    Share(f64),
}

/// An action a step accepts.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ActionSpec {
    pub name: String,
    /// What it does, for people (a catalog message, or the workflow author's words).
    pub summary: Message,
    pub fields: Vec<Field>,
}

impl ActionSpec {
    pub fn new(name: &str, summary: Message) -> Self {
        ActionSpec { name: name.into(), summary, fields: Vec::new() }
    }
    pub fn field(mut self, name: &str, ty: FieldType, required: bool, summary: Message) -> Self {
        self.fields.push(Field { name: name.into(), ty, required, summary });
        self
    }
}

/// A payload field of an action.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Field {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub required: bool,
    pub summary: Message,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "values")]
pub enum FieldType {
    String,
    Int,
    Number,
    Bool,
    /// One of these strings.
    OneOf(Vec<String>),
    /// A list of strings.
    Strings,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// A JSON object.
    Object,
    /// Any JSON value.
    Any,
}

impl FieldType {
    /// Reads a field type as written in a task's `fields` table.
    pub fn parse(s: &str) -> Option<(FieldType, bool)> {
        let (t, required) = match s.strip_suffix('?') {
            Some(t) => (t, false),
            None => (s, true),
        };
        let ty = match t {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "number" => FieldType::Number,
            "bool" => FieldType::Bool,
            "strings" => FieldType::Strings,
            "date" => FieldType::Date,
            "object" => FieldType::Object,
            "any" => FieldType::Any,
            _ => return None,
        };
        Some((ty, required))
    }

    fn accepts(&self, v: &Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Int => v.is_i64() || v.is_u64(),
            FieldType::Number => v.is_number(),
            FieldType::Bool => v.is_boolean(),
            FieldType::OneOf(vals) => v.as_str().is_some_and(|s| vals.iter().any(|x| x == s)),
            FieldType::Strings => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            FieldType::Date => v.as_str().is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
            FieldType::Object => v.is_object(),
            FieldType::Any => true,
        }
    }
    /// The type in words (`a whole number`).
    pub fn describe(&self) -> Message {
        match self {
            FieldType::String => msg!("type-string"),
            FieldType::Int => msg!("type-int"),
            FieldType::Number => msg!("type-number"),
            FieldType::Bool => msg!("type-bool"),
            FieldType::OneOf(v) => msg!("type-one-of", values = v.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>()),
            FieldType::Strings => msg!("type-strings"),
            FieldType::Date => msg!("type-date"),
            FieldType::Object => msg!("type-object"),
            FieldType::Any => msg!("type-any"),
        }
    }
}

/// Largest accepted string in a payload field.
pub const MAX_FIELD_CHARS: usize = 20_000;

impl ActionSpec {
    /// Checks a payload against the declared fields: unknown fields, missing required fields
    /// and wrong types are refused, naming the field.
    pub fn validate(&self, payload: &Map<String, Value>) -> Result<(), StepError> {
        for (k, v) in payload {
            let Some(f) = self.fields.iter().find(|f| &f.name == k) else {
                let known: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
                let message = match crate::diag::closest(k, known.iter().copied()) {
                    Some(c) => msg!("run-unknown-field-near", field = k, action = &self.name, near = c),
                    None if known.is_empty() => msg!("run-unknown-field-none", field = k, action = &self.name),
                    None => msg!("run-unknown-field", field = k, action = &self.name, fields = known),
                };
                return Err(StepError::Refused { message, field: Some(k.clone()) });
            };
            let optional_null = v.is_null() && !f.required;
            if !(f.ty.accepts(v) || optional_null) {
                return Err(StepError::Refused {
                    message: msg!("run-field-type", field = k, expected = f.ty.describe()),
                    field: Some(k.clone()),
                });
            }
            if let Some(s) = v.as_str()
                && s.chars().count() > MAX_FIELD_CHARS
            {
                return Err(StepError::Refused {
                    message: msg!("run-field-too-long", field = k, max = MAX_FIELD_CHARS),
                    field: Some(k.clone()),
                });
            }
        }
        for f in &self.fields {
            if f.required && payload.get(&f.name).is_none_or(Value::is_null) {
                return Err(StepError::Refused {
                    message: msg!("run-field-required", field = &f.name, action = &self.name),
                    field: Some(f.name.clone()),
                });
            }
        }
        Ok(())
    }
}

/// Who acts. `roles` are the roles of the workflow this person holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Actor {
    #[schemars(length(min = 1))]
    pub id: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// An action as a step sees it.
#[derive(Debug)]
pub struct ActionInput<'a> {
    pub name: &'a str,
    pub payload: &'a Map<String, Value>,
    /// Who entered the action (a token holder, e.g. a grid worker).
    pub actor: &'a Actor,
    /// On whose behalf (a resident whose paper vote the grid worker enters); `actor` otherwise.
    pub subject: &'a Actor,
}

/// Why a hook did not go through.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The action is refused; nothing changes. `field` names the payload field at fault.
    #[error("{message}")]
    Refused { message: Message, field: Option<String> },
    /// A script of the step failed.
    #[error("{0}")]
    Script(ScriptError),
    /// The step's own logic failed in a way the workflow author must fix.
    #[error("{0}")]
    Failed(Message),
}

impl StepError {
    pub fn refused(message: Message) -> Self {
        StepError::Refused { message, field: None }
    }
    pub fn refused_field(field: &str, message: Message) -> Self {
        StepError::Refused { message, field: Some(field.into()) }
    }
}

impl From<ScriptError> for StepError {
    fn from(e: ScriptError) -> Self {
        StepError::Script(e)
    }
}

/// A message for people or systems outside the case (delivered after the commit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notice {
    /// What happened, e.g. `reminder`, `escalated`, `vote_opened`.
    pub topic: String,
    /// Roles or ids it is for.
    pub to: Vec<String>,
    pub message: Message,
    /// Webhook URL, when the notify step has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// The group robot the webhook is, when it is not Yishi's own JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot: Option<crate::webhook::Robot>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub body: Value,
}

/// A request for the next number of a counter (registration numbers), filled in by the
/// engine before the commit and recorded as a data change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumberRequest {
    /// Top-level data key to set.
    pub key: String,
    /// Counter name, e.g. `registration:pingcheng/yongtai/liuhangli:2026`.
    pub counter: String,
    /// Text with `{n}` (or `{n:4}` for zero-padding to 4 digits) replaced by the number.
    pub format: String,
}

impl NumberRequest {
    pub fn render(&self, n: i64) -> String {
        let mut out = self.format.clone();
        if let Some(start) = out.find("{n:")
            && let Some(end) = out[start..].find('}')
        {
            let width: usize = out[start + 3..start + end].parse().unwrap_or(0);
            out.replace_range(start..start + end + 1, &format!("{n:0width$}"));
        }
        out.replace("{n}", &n.to_string())
    }
}

/// A new case to start after the commit, linked to this one (e.g. a new proposal from a poor
/// evaluation). Delivered through the outbox, so it survives a crash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spawn {
    /// `unit/id` of the workflow to start.
    pub workflow: String,
    pub data: Map<String, Value>,
}

/// What a step reports about a party it called on, for the statistics per party.
#[derive(Clone, Debug, PartialEq)]
pub enum PartyMark {
    /// Called on (whistled).
    Called,
    /// Answered the call; `in_time`: before its due time.
    Responded { in_time: bool },
    /// Its response was rated.
    Rated { score: f64 },
}

/// What a step that waits for a gathering declares (see [`Step::awaits`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Awaits {
    /// The workflow id, in the case's own unit, whose cases are the gatherings.
    pub host: String,
    /// The outcomes a gathering may conclude a waiting case with.
    pub outcomes: Vec<String>,
    /// Data keys shown on the agenda as the item's papers.
    pub papers: Vec<String>,
}

/// What a step that hosts a gathering declares (see [`Step::hosts`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Hosts {
    /// The data key holding the gathering's date and time (RFC 3339).
    pub date_key: String,
    /// Cases reaching a waiting step later than this before the date go to the next gathering.
    pub cutoff: Duration,
}

/// The data key of a case waiting for a gathering that holds the gathering's id.
pub const GATHERING_KEY: &str = "gathering";

/// A change a gathering's step asks for in the cases on its agenda, made in the same commit
/// unit as the gathering's own change.
#[derive(Clone, Debug, PartialEq)]
pub enum GatheringOp {
    /// Conclude case `case` with `outcome`; `record` (the tally, a note) is kept on the case.
    Conclude { case: i64, outcome: String, record: Map<String, Value> },
    /// Take these cases off the agenda: they go on the next gathering (rolled over).
    Release { cases: Vec<i64> },
}

/// A timer change requested by a step.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerOp {
    Set { name: String, due_at: i64 },
    Clear { name: String },
}

/// What a run-time hook may read and change.
pub struct StepCx<'a> {
    pub step_id: &'a str,
    /// Now, Unix milliseconds (from the engine's clock; never read the system clock).
    pub now: i64,
    /// The instance's data document. Change it through [`StepCx::set`]. In a for-each
    /// branch it is the document with the branch's own part laid over it (see
    /// [`crate::runtime`]).
    pub data: std::borrow::Cow<'a, Map<String, Value>>,
    /// Top-level data keys changed by this hook.
    pub changes: Map<String, Value>,
    /// The step's own state for this token (votes cast, attendance, ...).
    pub state: Value,
    pub params: &'a Map<String, Value>,
    pub sandbox: &'a Sandbox,
    pub calendar: &'a Calendar,
    /// The current item of a for-each branch.
    pub item: Option<&'a Value>,
    /// How many times this step has been entered in this case, including now.
    pub visits: u32,
    /// Visits of every step so far (scripts see it as `visits`).
    pub all_visits: &'a BTreeMap<String, u32>,
    pub deadline_outcome: &'a str,
    pub timers: Vec<TimerOp>,
    pub notices: Vec<Notice>,
    pub numbers: Vec<NumberRequest>,
    pub spawns: Vec<Spawn>,
    /// What the step reports about the parties it called on (departments whistled), for the
    /// statistics: the runtime records each as a `counted` event.
    pub party_marks: Vec<(String, PartyMark)>,
    /// Years a working-day count ([`StepCx::after`]) ran into without the calendar knowing
    /// their holidays; the runtime notes them on the case's history.
    pub uncovered_years: std::cell::RefCell<Vec<i32>>,
    /// The instance id (for notices and links).
    pub instance_id: i64,
    /// The unit (community) the case belongs to.
    pub unit: &'a str,
    /// The case's urgency level, when its workflow declares levels (scripts see `urgency`).
    pub urgency: Option<&'a str>,
    /// The cases on the agenda of the gathering this step hosts (ids, oldest first); empty
    /// elsewhere.
    pub agenda: &'a [i64],
    /// Changes to the cases on the agenda (see [`GatheringOp`]).
    pub gathering_ops: Vec<GatheringOp>,
    /// In `on_timer`: when the timer was due. A timer can fire late (after a restart);
    /// follow-up times should count from this, not from `now`.
    pub due_at: Option<i64>,
}

impl StepCx<'_> {
    /// Sets top-level data key `key`.
    pub fn set(&mut self, key: &str, value: Value) {
        self.changes.insert(key.to_owned(), value);
    }
    /// Reads a top-level data key, seeing this hook's own changes.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.changes.get(key).or_else(|| self.data.get(key))
    }
    pub fn set_timer(&mut self, name: &str, due_at: i64) {
        self.timers.push(TimerOp::Set { name: name.into(), due_at });
    }
    pub fn clear_timer(&mut self, name: &str) {
        self.timers.push(TimerOp::Clear { name: name.into() });
    }
    pub fn notify(&mut self, notice: Notice) {
        self.notices.push(notice);
    }
    /// Concludes case `case` on this gathering's agenda with `outcome`, keeping `record` on it.
    pub fn conclude(&mut self, case: i64, outcome: &str, record: Map<String, Value>) {
        self.gathering_ops.push(GatheringOp::Conclude { case, outcome: outcome.to_owned(), record });
    }
    /// Takes `cases` off this gathering's agenda: each goes on the next gathering.
    pub fn release(&mut self, cases: Vec<i64>) {
        if !cases.is_empty() {
            self.gathering_ops.push(GatheringOp::Release { cases });
        }
    }
    /// Counts `party` (a department the step called on) for the statistics.
    pub fn count_party(&mut self, party: &str, mark: PartyMark) {
        self.party_marks.push((party.to_owned(), mark));
    }
    /// The instant `d` after now, by this workflow's calendar.
    pub fn after(&self, d: Duration) -> i64 {
        self.counted(self.now, d)
    }
    /// The instant `d` after the firing timer was due (`now` outside `on_timer`).
    pub fn after_due(&self, d: Duration) -> i64 {
        self.counted(self.due_at.unwrap_or(self.now), d)
    }
    fn counted(&self, from: i64, d: Duration) -> i64 {
        let (at, uncovered) = self.calendar.add_checked(from, d);
        if let Some(year) = uncovered {
            self.uncovered_years.borrow_mut().push(year);
        }
        at
    }
    /// The data document with this hook's changes applied, as a Rhai map.
    pub fn data_dynamic(&self) -> rhai::Dynamic {
        let mut m = self.data.clone().into_owned();
        for (k, v) in &self.changes {
            m.insert(k.clone(), v.clone());
        }
        crate::script::to_dynamic(&Value::Object(m))
    }
    /// The standard variables a script sees: `data`, `params`, `now`, `visits`, `item`,
    /// `urgency`.
    pub fn script_vars(&self) -> Vec<(&'static str, rhai::Dynamic)> {
        vec![
            ("data", self.data_dynamic()),
            ("params", crate::script::to_dynamic(&Value::Object(self.params.clone()))),
            ("now", rhai::Dynamic::from_int(self.now)),
            (
                "visits",
                rhai::Dynamic::from_map(
                    self.all_visits
                        .iter()
                        .map(|(k, v)| (k.as_str().into(), rhai::Dynamic::from_int(i64::from(*v))))
                        .collect(),
                ),
            ),
            ("item", self.item.map_or(rhai::Dynamic::UNIT, crate::script::to_dynamic)),
            ("urgency", self.urgency.map_or(rhai::Dynamic::UNIT, |u| rhai::Dynamic::from(u.to_owned()))),
        ]
    }
    /// Evaluates `script` with the standard variables.
    pub fn eval(&self, script: &Script) -> Result<rhai::Dynamic, ScriptError> {
        self.sandbox.eval(script, self.script_vars()).map(|(v, _)| v)
    }
    /// Evaluates a condition; anything but a boolean is an error naming the script.
    pub fn eval_bool(&self, script: &Script) -> Result<bool, ScriptError> {
        let v = self.eval(script)?;
        v.as_bool().map_err(|_| ScriptError::wrong_result(script, msg!("type-bool"), &v))
    }
}

/// The variables every workflow script may use: `data` (the case's data), `params`, `now`
/// (Unix ms), `visits` (a map: step id -> times entered), `item` (in a for-each branch) and
/// `urgency` (the case's urgency level, or `()` when the workflow declares none).
pub const SCRIPT_VARS: &[&str] = &["data", "params", "now", "visits", "item", "urgency"];

/// The settings of one step: the step table's keys beyond the common ones, with spans.
pub struct Settings<'a> {
    pub table: Spanned<DeValue<'a>>,
}

impl<'a> Settings<'a> {
    pub fn span(&self) -> Range<usize> {
        self.table.span()
    }
    pub fn is_empty(&self) -> bool {
        self.table.get_ref().as_table().is_none_or(|t| t.is_empty())
    }
}

/// A resolved param: its type and value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamValue {
    #[serde(rename = "type")]
    pub ty: crate::model::ParamType,
    pub value: Value,
}

/// What a step kind may use while compiling its settings.
pub struct CompileCx<'a> {
    pub step_id: &'a str,
    /// The file the step is written in, and its text.
    pub file: &'a str,
    pub text: &'a str,
    pub files: &'a FileSet,
    pub sandbox: &'a Sandbox,
    pub params: &'a IndexMap<String, ParamValue>,
    pub roles: &'a IndexMap<String, Text>,
    pub diags: &'a mut Diagnostics,
    /// Files read while compiling (they become part of the version).
    pub used_files: &'a mut BTreeSet<String>,
    /// Parsed list files, cached by path.
    pub lists: &'a mut BTreeMap<String, Arc<Value>>,
    /// The outcomes named in the step's `on` table.
    pub outcomes_in_on: Vec<String>,
    /// Whether the step has a `deadline`.
    pub has_deadline: bool,
}

impl CompileCx<'_> {
    fn origin(&self, span: Option<Range<usize>>) -> Origin {
        Origin::new(self.file, span)
    }

    /// Reports a problem with the step's settings at `span`.
    pub fn error(&mut self, span: Option<Range<usize>>, message: Message, hint: Option<Message>) {
        let origin = self.origin(span);
        self.diags.push(Code::BadSettings, &origin, Some(self.text), message, hint);
    }

    pub fn error_code(&mut self, code: Code, span: Option<Range<usize>>, message: Message, hint: Option<Message>) {
        let origin = self.origin(span);
        self.diags.push(code, &origin, Some(self.text), message, hint);
    }

    /// Deserializes typed settings; reports unknown keys (with hints) and type errors.
    pub fn settings<T: DeserializeOwned + schemars::JsonSchema>(
        &mut self,
        settings: Settings<'_>,
        kind: &str,
    ) -> Option<T> {
        let schema = schemars::schema_for!(T);
        let known: Vec<String> = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut table = settings.table;
        if let DeValue::Table(t) = table.get_mut() {
            let unknown: Vec<_> =
                t.keys().filter(|k| !known.iter().any(|n| n == k.get_ref().as_ref())).cloned().collect();
            for k in unknown {
                let hint = crate::diag::did_you_mean(
                    k.get_ref(),
                    known.iter().map(String::as_str).chain(crate::model::step_keys().iter().map(String::as_str)),
                )
                .or_else(|| {
                    Some(if known.is_empty() {
                        msg!("hint-kind-no-settings", kind = kind)
                    } else {
                        msg!("hint-kind-settings", kind = kind, keys = known.clone())
                    })
                });
                self.error_code(
                    Code::UnknownKey,
                    Some(k.span()),
                    msg!("check-unknown-setting", key = k.get_ref().as_ref(), kind = kind),
                    hint,
                );
                t.remove(&k);
            }
        }
        match T::deserialize(toml::de::ValueDeserializer::from(table.clone())) {
            // Unknown keys were reported above; the rest is still checked.
            Ok(v) => Some(v),
            Err(e) => {
                let span = e.span().or(Some(table.span()));
                let (code, message, hint) = crate::check::de_error_message(&e);
                let message = msg!("check-in-settings", step = self.step_id, error = message);
                self.error_code(code, span, message, hint);
                None
            }
        }
    }

    /// Where the script text at `span` starts, for mapping script positions into the file.
    pub fn script_origin(&self, span: &Range<usize>) -> ScriptOrigin {
        let raw = &self.text[span.start.min(self.text.len())..span.end.min(self.text.len())];
        let mut skip = 0;
        for q in ["\"\"\"", "'''", "\"", "'"] {
            if raw.starts_with(q) {
                skip = q.len();
                if q.len() == 3 && raw[skip..].starts_with('\n') {
                    skip += 1;
                } else if q.len() == 3 && raw[skip..].starts_with("\r\n") {
                    skip += 2;
                }
                break;
            }
        }
        let (line, column) = crate::diag::line_col(self.text, span.start + skip);
        ScriptOrigin { file: self.file.to_owned(), line, column }
    }

    /// Compiles an inline script written at `text.span()` in this step's file. `extra` names
    /// variables the script may use beyond [`SCRIPT_VARS`].
    pub fn script(&mut self, text: &Spanned<String>, extra: &[&str]) -> Option<Script> {
        let origin = self.script_origin(&text.span());
        let names: Vec<&str> = SCRIPT_VARS.iter().chain(extra).copied().collect();
        match self.sandbox.compile(text.get_ref(), origin, &names) {
            Ok(s) => Some(s),
            Err(e) => {
                self.script_error(&e, &names);
                None
            }
        }
    }

    /// Compiles a script file referenced (relative to this step's file) at `path.span()`.
    pub fn script_file(&mut self, path: &Spanned<String>, names: &[&str]) -> Option<Script> {
        let key = self.reference(path)?;
        let text = self.files.get(&key)?.to_owned();
        let origin = ScriptOrigin { file: key.clone(), line: 1, column: 1 };
        match self.sandbox.compile(&text, origin, names) {
            Ok(s) => Some(s),
            Err(e) => {
                self.script_error(&e, names);
                None
            }
        }
    }

    /// Reports a script that does not compile, at the place in the file where it fails.
    pub fn script_error(&mut self, e: &ScriptError, names: &[&str]) {
        let (file, line, col) = e.position.clone().unwrap_or((self.file.to_owned(), 0, 0));
        let hint = script_hint(e, names);
        let place = if file == self.file && line > 0 {
            Place::in_text(self.file, self.text, line, col)
        } else {
            Place::at(&file, line, col)
        };
        self.diags.push_at(Code::ScriptSyntax, place, e.message.clone(), hint);
    }

    /// Resolves a file reference and checks that the file exists and stays inside the folder.
    pub fn reference(&mut self, path: &Spanned<String>) -> Option<String> {
        let dir = crate::files::parent_dir(self.file);
        match resolve_reference(dir, path.get_ref()) {
            Err(e) => {
                self.error_code(Code::EscapingPath, Some(path.span()), e.message(), Some(msg!("hint-keep-inside")));
                None
            }
            Ok(key) => {
                if let Some(why) = self.files.why_unreadable(&key) {
                    let message = msg!("check-file-unreadable", file = path.get_ref(), why = why.clone());
                    self.error_code(Code::MissingFile, Some(path.span()), message, None);
                    None
                } else if self.files.get(&key).is_none() {
                    let prefix = format!("{dir}/");
                    let hint = crate::diag::closest(&key, self.files.paths())
                        .map(|c| msg!("hint-did-you-mean", word = c.strip_prefix(&prefix).unwrap_or(c)));
                    let message = msg!("check-file-missing", file = path.get_ref(), looked = &key);
                    self.error_code(Code::MissingFile, Some(path.span()), message, hint);
                    None
                } else {
                    self.used_files.insert(key.clone());
                    Some(key)
                }
            }
        }
    }

    /// Loads a list data file (TOML) referenced at `path.span()`, as JSON.
    pub fn list(&mut self, path: &Spanned<String>) -> Option<Arc<Value>> {
        let key = self.reference(path)?;
        if let Some(v) = self.lists.get(&key) {
            return Some(v.clone());
        }
        let text = self.files.get(&key)?;
        match toml::from_str::<toml::Table>(text) {
            Ok(t) => {
                let v = Arc::new(toml_to_json(&toml::Value::Table(t)));
                self.lists.insert(key, v.clone());
                Some(v)
            }
            Err(e) => {
                let origin = Origin::new(key.clone(), e.span());
                let text = self.files.get(&key).map(str::to_owned);
                self.diags.push(
                    Code::TomlSyntax,
                    &origin,
                    text.as_deref(),
                    msg!("check-list-not-toml", detail = e.message().trim()),
                    None,
                );
                None
            }
        }
    }

    /// Resolves a number written either literally or as the name of a param.
    pub fn number(&mut self, v: &Spanned<NumberOrParam>) -> Option<f64> {
        match v.get_ref() {
            NumberOrParam::Number(n) => Some(*n),
            NumberOrParam::Param(name) => match self.params.get(name) {
                Some(p) if p.value.is_number() => p.value.as_f64(),
                Some(p) => {
                    let message = msg!("check-param-not-number", name = name, ty = p.ty.as_str());
                    self.error_code(Code::BadParam, Some(v.span()), message, None);
                    None
                }
                None => {
                    let hint = crate::diag::did_you_mean(name, self.params.keys().map(String::as_str));
                    let message = msg!("check-not-number-or-param", name = name);
                    self.error_code(Code::BadParam, Some(v.span()), message, hint);
                    None
                }
            },
        }
    }

    /// Resolves a duration written literally or as the name of a duration param.
    pub fn duration(&mut self, v: &Spanned<String>) -> Option<Duration> {
        resolve_duration(v.get_ref(), self.params)
            .map_err(|(code, msg, hint)| self.error_code(code, Some(v.span()), msg, hint))
            .ok()
    }

    /// Checks that `role` is declared by the workflow.
    pub fn role(&mut self, role: &Spanned<String>) -> bool {
        if role.get_ref() == "*" || self.roles.contains_key(role.get_ref()) {
            return true;
        }
        let hint = crate::diag::did_you_mean(role.get_ref(), self.roles.keys().map(String::as_str));
        self.error_code(Code::UnknownRole, Some(role.span()), msg!("check-unknown-role", role = role.get_ref()), hint);
        false
    }
}

fn script_hint(e: &ScriptError, names: &[&str]) -> Option<Message> {
    let detail = e.message.to_string();
    (detail.contains("Variable not found") || detail.contains("Undefined variable"))
        .then(|| msg!("hint-script-vars", vars = names.to_vec()))
}

/// Resolves a duration literal or duration param name.
pub fn resolve_duration(
    text: &str,
    params: &IndexMap<String, ParamValue>,
) -> Result<Duration, (Code, Message, Option<Message>)> {
    if let Some(p) = params.get(text) {
        if p.ty != crate::model::ParamType::Duration {
            return Err((Code::BadParam, msg!("check-param-not-duration", name = text, ty = p.ty.as_str()), None));
        }
        return Duration::parse(p.value.as_str().unwrap_or_default())
            .map_err(|e| (Code::BadDuration, e.message(), None));
    }
    Duration::parse(text).map_err(|e| {
        let hint = crate::diag::did_you_mean(text, params.keys().map(String::as_str));
        (Code::BadDuration, e.message(), hint)
    })
}

/// A number written literally, or the name of a param that holds it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum NumberOrParam {
    Number(f64),
    Param(String),
}

/// TOML to JSON (dates become strings).
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// A spanned TOML tree to JSON.
pub fn devalue_to_json(v: &DeValue<'_>) -> Value {
    match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => i
            .as_str()
            .replace('_', "")
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(i.as_str().to_owned())),
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(a) => Value::Array(a.iter().map(|x| devalue_to_json(x.get_ref())).collect()),
        DeValue::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.get_ref().to_string(), devalue_to_json(v.get_ref()))).collect())
        }
    }
}

/// The plain list of step kinds the engine knows. No link-time magic: whoever builds the
/// engine registers each kind by hand.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: IndexMap<String, Arc<dyn StepKind>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Registry {
    /// Adds a kind; a later kind of the same name replaces an earlier one.
    pub fn register(&mut self, kind: Arc<dyn StepKind>) {
        self.kinds.insert(kind.name().to_owned(), kind);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn StepKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn StepKind>> {
        self.kinds.values()
    }
}
