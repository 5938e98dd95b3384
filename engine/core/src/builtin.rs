//! The engine's own step kinds: generic control flow with no word of governance in it.
//!
//! `script`, `choice`, `task`, `end`, `parallel`, `inclusive`, `foreach`, `join`.

use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::i18n::Message;
use crate::kind::*;
use crate::model::Text;
use crate::msg;
use crate::script::Script;

pub(crate) fn kinds() -> Vec<Arc<dyn StepKind>> {
    vec![
        Arc::new(ScriptKind),
        Arc::new(ChoiceKind),
        Arc::new(TaskKind),
        Arc::new(EndKind),
        Arc::new(ParallelKind),
        Arc::new(InclusiveKind),
        Arc::new(ForEachKind),
        Arc::new(JoinKind),
    ]
}

macro_rules! kind_meta {
    ($name:literal, $summary:literal, $settings:ty) => {
        fn name(&self) -> &str {
            $name
        }
        fn summary(&self) -> Message {
            Message::new($summary)
        }
        fn settings_schema(&self) -> schemars::Schema {
            schemars::schema_for!($settings)
        }
    };
}

// ---------------------------------------------------------------- script

struct ScriptKind;

/// Settings of `script`: run a Rhai script that may change `data`; outcome `done`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScriptSettings {
    /// Inline Rhai statements, e.g. `data.amount = data.n % 200;`.
    #[schemars(with = "Option<String>")]
    run: Option<Spanned<String>>,
    /// A script file relative to the workflow file (instead of `run`).
    #[schemars(with = "Option<String>")]
    file: Option<Spanned<String>>,
}

#[derive(Debug)]
struct ScriptStep {
    script: Script,
}

impl StepKind for ScriptKind {
    kind_meta!("script", "kind-script", ScriptSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ScriptSettings = cx.settings(settings, "script")?;
        let script = match (&s.run, &s.file) {
            (Some(run), None) => cx.script(run, &[])?,
            (None, Some(file)) => cx.script_file(file, SCRIPT_VARS)?,
            _ => {
                cx.error(Some(span), msg!("check-script-run-or-file"), None);
                return None;
            }
        };
        Some(Arc::new(ScriptStep { script }))
    }
}

impl Step for ScriptStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["done".into()]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let (_, scope) = cx.sandbox.eval(&self.script, cx.script_vars())?;
        if let Some(data) = scope.get("data") {
            let after = crate::script::from_dynamic(data);
            let Value::Object(after) = after else {
                return Err(StepError::Failed(msg!("run-script-data-not-map")));
            };
            for (k, v) in &after {
                if cx.data.get(k) != Some(v) {
                    cx.set(k, v.clone());
                }
            }
            for k in cx.data.keys() {
                if !after.contains_key(k) {
                    cx.changes.insert(k.clone(), Value::Null);
                }
            }
        }
        Ok(Flow::Done("done".into()))
    }
}

// ---------------------------------------------------------------- choice

struct ChoiceKind;

/// Settings of `choice` (exclusive choice, WCP-4): a rule returns the name of an outcome listed in `on`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ChoiceSettings {
    /// Inline Rhai returning an outcome name, e.g. `if data.cost > params.big { "assembly" } else { "representatives" }`.
    #[schemars(with = "Option<String>")]
    rule: Option<Spanned<String>>,
    /// A script file returning an outcome name (instead of `rule`).
    #[schemars(with = "Option<String>")]
    file: Option<Spanned<String>>,
}

#[derive(Debug)]
struct ChoiceStep {
    rule: Script,
    outcomes: Vec<String>,
}

impl StepKind for ChoiceKind {
    kind_meta!("choice", "kind-choice", ChoiceSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ChoiceSettings = cx.settings(settings, "choice")?;
        let rule = match (&s.rule, &s.file) {
            (Some(r), None) => cx.script(r, &[])?,
            (None, Some(f)) => cx.script_file(f, SCRIPT_VARS)?,
            _ => {
                cx.error(Some(span), msg!("check-choice-rule-or-file"), None);
                return None;
            }
        };
        if cx.outcomes_in_on.is_empty() {
            cx.error(Some(span), msg!("check-choice-needs-on"), Some(msg!("hint-choice-on-example")));
            return None;
        }
        Some(Arc::new(ChoiceStep { rule, outcomes: cx.outcomes_in_on.clone() }))
    }
}

impl Step for ChoiceStep {
    fn outcomes(&self) -> Vec<String> {
        self.outcomes.clone()
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let v = cx.eval(&self.rule)?;
        let outcome = v
            .clone()
            .into_string()
            .map_err(|_| crate::script::ScriptError::wrong_result(&self.rule, msg!("type-outcome-name"), &v))?;
        if !self.outcomes.contains(&outcome) {
            return Err(StepError::Failed(msg!(
                "run-choice-unknown-outcome",
                outcome = outcome,
                outcomes = self.outcomes.clone()
            )));
        }
        Ok(Flow::Done(outcome))
    }
}

// ---------------------------------------------------------------- task

struct TaskKind;

/// Settings of `task`: a person does one of several actions, each leading to an outcome.
/// With a deadline this is a deferred choice (WCP-16): whichever comes first.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskSettings {
    /// Actions by name.
    #[serde(default)]
    actions: IndexMap<String, TaskAction>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskAction {
    /// The outcome when this action is taken (default: the action's name).
    outcome: Option<String>,
    /// What the action does, for people.
    #[serde(default)]
    summary: Option<Text>,
    /// Payload fields: name -> type (`string`, `int`, `number`, `bool`, `strings`, `object`, `any`);
    /// a type ending in `?` makes the field optional.
    #[serde(default)]
    fields: IndexMap<String, String>,
}

#[derive(Debug)]
struct TaskStep {
    actions: Vec<(ActionSpec, String)>,
}

impl StepKind for TaskKind {
    kind_meta!("task", "kind-task", TaskSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: TaskSettings = cx.settings(settings, "task")?;
        if s.actions.is_empty() && !cx.has_deadline {
            cx.error(Some(span), msg!("check-task-needs-actions"), None);
            return None;
        }
        let mut actions = Vec::new();
        let mut ok = true;
        for (name, a) in s.actions {
            let summary = a.summary.as_ref().map_or_else(|| Message::verbatim(""), Message::text);
            let mut spec = ActionSpec::new(&name, summary);
            for (field, ty) in &a.fields {
                match FieldType::parse(ty) {
                    Some((t, req)) => spec = spec.field(field, t, req, Message::verbatim("")),
                    None => {
                        cx.error(
                            Some(span.clone()),
                            msg!("check-task-field-type", field = field, action = &name, ty = ty),
                            Some(msg!("hint-field-types")),
                        );
                        ok = false;
                    }
                }
            }
            let outcome = a.outcome.unwrap_or_else(|| name.clone());
            actions.push((spec, outcome));
        }
        ok.then(|| Arc::new(TaskStep { actions }) as Arc<dyn Step>)
    }
}

impl Step for TaskStep {
    fn outcomes(&self) -> Vec<String> {
        let mut o: Vec<String> = self.actions.iter().map(|(_, o)| o.clone()).collect();
        o.dedup();
        o
    }
    fn actions(&self) -> Vec<ActionSpec> {
        self.actions.iter().map(|(a, _)| a.clone()).collect()
    }
    fn on_enter(&self, _cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let Some((_, outcome)) = self.actions.iter().find(|(a, _)| a.name == action.name) else {
            return Err(StepError::refused(msg!("run-unknown-action", action = action.name)));
        };
        let mut record = Map::new();
        record.insert("action".into(), Value::String(action.name.into()));
        record.insert("by".into(), Value::String(action.subject.id.clone()));
        record.insert("at".into(), Value::from(cx.now));
        for (k, v) in action.payload {
            record.insert(k.clone(), v.clone());
        }
        cx.set(cx.step_id, Value::Object(record));
        Ok(Flow::Done(outcome.clone()))
    }
}

// ---------------------------------------------------------------- end

struct EndKind;

/// Settings of `end`: ends a branch, or with `terminate` the whole case (WCP-43).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EndSettings {
    /// End the whole case at once, cancelling any other branch still running.
    #[serde(default)]
    terminate: bool,
    /// The case's outcome, e.g. `agreed`, `rejected` (shown in lists and history).
    outcome: Option<String>,
}

#[derive(Debug)]
struct EndStep {
    terminate: bool,
    outcome: Option<String>,
}

impl StepKind for EndKind {
    kind_meta!("end", "kind-end", EndSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: EndSettings = cx.settings(settings, "end")?;
        Some(Arc::new(EndStep { terminate: s.terminate, outcome: s.outcome }))
    }
}

impl Step for EndStep {
    fn outcomes(&self) -> Vec<String> {
        Vec::new()
    }
    fn control(&self) -> Control<'_> {
        Control::End { terminate: self.terminate, outcome: self.outcome.as_deref() }
    }
    fn on_enter(&self, _cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Wait)
    }
}

// ---------------------------------------------------------------- splits

#[derive(Debug)]
struct SplitStep {
    split: Split,
    targets: Vec<(String, Option<Range<usize>>)>,
}

impl Step for SplitStep {
    fn outcomes(&self) -> Vec<String> {
        Vec::new() // the branches go on; the join after them routes with its own `next`
    }
    fn targets(&self) -> Vec<(String, Option<Range<usize>>)> {
        self.targets.clone()
    }
    fn control(&self) -> Control<'_> {
        Control::Split(&self.split)
    }
    fn on_enter(&self, _cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Wait)
    }
}

struct ParallelKind;

/// Settings of `parallel` (parallel split, WCP-2): every branch starts; `join` synchronises them.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ParallelSettings {
    /// The first step of each branch.
    #[schemars(with = "Vec<String>")]
    branches: Vec<Spanned<String>>,
    /// The join step that waits for the branches.
    #[schemars(with = "String")]
    join: Spanned<String>,
}

impl StepKind for ParallelKind {
    kind_meta!("parallel", "kind-parallel", ParallelSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ParallelSettings = cx.settings(settings, "parallel")?;
        if s.branches.is_empty() {
            cx.error(Some(span), msg!("check-parallel-no-branch"), None);
            return None;
        }
        let targets: Vec<_> = s.branches.iter().map(|b| (b.get_ref().clone(), Some(b.span()))).collect();
        let split = Split {
            mode: SplitMode::All(s.branches.iter().map(|b| b.get_ref().clone()).collect()),
            join: s.join.get_ref().clone(),
            join_span: Some(s.join.span()),
        };
        Some(Arc::new(SplitStep { split, targets }))
    }
}

struct InclusiveKind;

/// Settings of `inclusive` (multi-choice, WCP-6): the branches whose condition holds start;
/// the join waits for exactly those (synchronising merge, WCP-7).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InclusiveSettings {
    branches: Vec<InclusiveBranch>,
    #[schemars(with = "String")]
    join: Spanned<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InclusiveBranch {
    /// The first step of the branch.
    #[schemars(with = "String")]
    to: Spanned<String>,
    /// Rhai condition; the branch starts when it is true.
    #[schemars(with = "String")]
    when: Spanned<String>,
}

impl StepKind for InclusiveKind {
    kind_meta!("inclusive", "kind-inclusive", InclusiveSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: InclusiveSettings = cx.settings(settings, "inclusive")?;
        if s.branches.is_empty() {
            cx.error(Some(span), msg!("check-inclusive-no-branch"), None);
            return None;
        }
        let mut branches = Vec::new();
        let mut ok = true;
        for b in &s.branches {
            match cx.script(&b.when, &[]) {
                Some(sc) => branches.push((b.to.get_ref().clone(), sc)),
                None => ok = false,
            }
        }
        let targets = s.branches.iter().map(|b| (b.to.get_ref().clone(), Some(b.to.span()))).collect();
        let split =
            Split { mode: SplitMode::Some(branches), join: s.join.get_ref().clone(), join_span: Some(s.join.span()) };
        ok.then(|| Arc::new(SplitStep { split, targets }) as Arc<dyn Step>)
    }
}

struct ForEachKind;

/// Settings of `foreach` (multiple instances with run-time knowledge, WCP-14): one branch per
/// item of a list computed when the step is entered; each branch sees its item as `item`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ForEachSettings {
    /// Rhai returning an array, e.g. `data.departments`.
    #[schemars(with = "String")]
    items: Spanned<String>,
    /// The first step of each branch.
    #[schemars(with = "String")]
    body: Spanned<String>,
    #[schemars(with = "String")]
    join: Spanned<String>,
}

impl StepKind for ForEachKind {
    kind_meta!("foreach", "kind-foreach", ForEachSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: ForEachSettings = cx.settings(settings, "foreach")?;
        let items = cx.script(&s.items, &[])?;
        let targets = vec![(s.body.get_ref().clone(), Some(s.body.span()))];
        let split = Split {
            mode: SplitMode::Each { items, body: s.body.get_ref().clone() },
            join: s.join.get_ref().clone(),
            join_span: Some(s.join.span()),
        };
        Some(Arc::new(SplitStep { split, targets }))
    }
}

struct JoinKind;

/// Settings of `join`: waits for the branches of the split that names it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct JoinSettings {
    /// `"all"` (default), a number of branches (`2`: partial join, WCP-30) or a share (`0.5`).
    #[schemars(with = "Option<serde_json::Value>")]
    wait: Option<Spanned<WaitDecl>>,
    /// Cancel branches still running when the join fires (default: true for a partial join).
    cancel_rest: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WaitDecl {
    Count(i64),
    Share(f64),
    Word(String),
}

#[derive(Debug)]
struct JoinStep {
    spec: JoinSpec,
}

impl StepKind for JoinKind {
    kind_meta!("join", "kind-join", JoinSettings);

    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: JoinSettings = cx.settings(settings, "join")?;
        let wait = match &s.wait {
            None => JoinWait::All,
            Some(w) => match w.get_ref() {
                WaitDecl::Word(word) if word == "all" => JoinWait::All,
                WaitDecl::Count(n) if *n >= 1 => JoinWait::Count(*n as u32),
                WaitDecl::Share(f) if *f > 0.0 && *f <= 1.0 => JoinWait::Share(*f),
                _ => {
                    cx.error(Some(w.span()), msg!("check-join-wait"), None);
                    return None;
                }
            },
        };
        let cancel_rest = s.cancel_rest.unwrap_or(wait != JoinWait::All);
        Some(Arc::new(JoinStep { spec: JoinSpec { wait, cancel_rest } }))
    }
}

impl Step for JoinStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["joined".into()]
    }
    fn control(&self) -> Control<'_> {
        Control::Join(&self.spec)
    }
    fn on_enter(&self, _cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Wait)
    }
}

impl Registry {
    /// A registry with the engine's own control-flow kinds.
    pub fn with_builtins() -> Self {
        let mut r = Registry::default();
        for k in kinds() {
            r.register(k);
        }
        r
    }
}
