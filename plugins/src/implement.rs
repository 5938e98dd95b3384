//! `implement` (办, 民事民办): a responsible party carries the decision out; tasks with weights,
//! progress reports that roll up into a percentage, and elected resident supervisors who sign
//! off each task.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

use crate::common::{CompiledElectorate, ElectorateDecl, load, save};

pub struct ImplementKind;

/// Settings of `implement`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ImplementSettings {
    /// The tasks, each with an id, a title and a weight (default 1). Without tasks, staff plan
    /// them with the `plan` action.
    #[serde(default)]
    tasks: Vec<TaskDecl>,
    /// Who signs off finished tasks (e.g. the elected supervisors: `{ data = "supervisors.elected" }`).
    #[schemars(with = "Option<ElectorateDecl>")]
    supervisors: Option<Spanned<ElectorateDecl>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskDecl {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default = "one")]
    weight: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug)]
struct ImplementStep {
    tasks: Vec<TaskDecl>,
    supervisors: Option<CompiledElectorate>,
}

#[derive(Default, Serialize, Deserialize)]
struct Work {
    responsible: Option<String>,
    tasks: Vec<TaskDecl>,
    progress: BTreeMap<String, u64>,
    signed_off: BTreeMap<String, String>,
    reports: Vec<Value>,
}

impl StepKind for ImplementKind {
    fn name(&self) -> &str {
        "implement"
    }
    fn summary(&self) -> Message {
        msg!("kind-implement")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(ImplementSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ImplementSettings = cx.settings(settings, "implement")?;
        let mut ids: Vec<&str> = s.tasks.iter().map(|t| t.id.as_str()).collect();
        ids.sort();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            cx.error(Some(span.clone()), msg!("check-implement-ids"), None);
            return None;
        }
        if s.tasks.iter().any(|t| t.weight <= 0.0) {
            cx.error(Some(span), msg!("check-implement-weights"), None);
            return None;
        }
        let supervisors = match &s.supervisors {
            Some(d) => Some(d.get_ref().compile(cx, d.span())?),
            None => None,
        };
        Some(Arc::new(ImplementStep { tasks: s.tasks, supervisors }))
    }
}

impl ImplementStep {
    fn percent(w: &Work) -> f64 {
        let total: f64 = w.tasks.iter().map(|t| t.weight).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let done: f64 = w.tasks.iter().map(|t| t.weight * *w.progress.get(&t.id).unwrap_or(&0) as f64 / 100.0).sum();
        (done / total * 1000.0).round() / 10.0
    }

    fn finished(&self, w: &Work) -> bool {
        !w.tasks.is_empty()
            && w.tasks.iter().all(|t| {
                w.progress.get(&t.id) == Some(&100) && (self.supervisors.is_none() || w.signed_off.contains_key(&t.id))
            })
    }

    fn record(cx: &mut StepCx<'_>, w: &Work) {
        cx.set(cx.step_id, json!({ "responsible": w.responsible, "tasks": w.tasks, "progress": w.progress, "percent": Self::percent(w), "signed_off": w.signed_off, "reports": w.reports }));
    }
}

impl Step for ImplementStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["done".into(), "abandoned".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        let mut actions = vec![
            ActionSpec::new("assign", msg!("action-implement-assign")).field(
                "responsible",
                FieldType::String,
                true,
                msg!("field-implement-responsible"),
            ),
            ActionSpec::new("report", msg!("action-implement-report"))
                .field("task", FieldType::String, true, msg!("field-implement-task"))
                .field("progress", FieldType::Int, true, msg!("field-implement-progress"))
                .field("note", FieldType::String, false, msg!("field-implement-note")),
            ActionSpec::new("abandon", msg!("action-implement-abandon")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-implement-abandon-reason"),
            ),
        ];
        if self.tasks.is_empty() {
            actions.push(ActionSpec::new("plan", msg!("action-implement-plan")).field(
                "tasks",
                FieldType::Any,
                true,
                msg!("field-implement-tasks"),
            ));
        }
        if self.supervisors.is_some() {
            actions.push(
                ActionSpec::new("sign_off", msg!("action-implement-sign-off"))
                    .field("task", FieldType::String, true, msg!("field-implement-task"))
                    .field("note", FieldType::String, false, msg!("field-implement-quality")),
            );
        }
        actions
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let w = Work { tasks: self.tasks.clone(), ..Work::default() };
        Self::record(cx, &w);
        save(cx, &w);
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut w: Work = load(cx);
        let task = action.payload.get("task").and_then(Value::as_str).unwrap_or_default().to_owned();
        let known = |w: &Work| w.tasks.iter().any(|t| t.id == task);
        match action.name {
            "assign" => w.responsible = action.payload.get("responsible").and_then(Value::as_str).map(str::to_owned),
            "plan" => {
                if w.progress.values().any(|p| *p > 0) {
                    return Err(StepError::refused(msg!("implement-replan")));
                }
                let tasks: Vec<TaskDecl> =
                    serde_json::from_value(action.payload.get("tasks").cloned().unwrap_or(Value::Null)).map_err(
                        |e| StepError::refused_field("tasks", msg!("implement-tasks-shape", detail = e.to_string())),
                    )?;
                if tasks.is_empty() || tasks.iter().any(|t| t.weight <= 0.0) {
                    return Err(StepError::refused_field("tasks", msg!("implement-tasks-weights")));
                }
                w.tasks = tasks;
            }
            "report" => {
                if !known(&w) {
                    return Err(StepError::refused_field("task", msg!("implement-no-task", task = &task)));
                }
                let p = action.payload.get("progress").and_then(Value::as_i64).unwrap_or(-1);
                if !(0..=100).contains(&p) {
                    return Err(StepError::refused_field("progress", msg!("implement-progress")));
                }
                w.progress.insert(task.clone(), p as u64);
                w.reports.push(json!({ "task": task, "progress": p, "by": action.subject.id, "at": cx.now, "note": action.payload.get("note") }));
            }
            "sign_off" => {
                let Some(sup) = &self.supervisors else {
                    return Err(StepError::refused(msg!("implement-no-supervisors")));
                };
                if !sup.admits(cx, action.subject) {
                    return Err(StepError::refused(msg!(
                        "implement-not-supervisor",
                        who = &action.subject.id,
                        supervisors = sup.describe()
                    )));
                }
                if !known(&w) {
                    return Err(StepError::refused_field("task", msg!("implement-no-task", task = &task)));
                }
                if w.progress.get(&task) != Some(&100) {
                    return Err(StepError::refused_field("task", msg!("implement-not-finished", task = &task)));
                }
                w.signed_off.insert(task, action.subject.id.clone());
            }
            "abandon" => {
                w.reports
                    .push(json!({ "abandoned": action.payload.get("reason"), "by": action.subject.id, "at": cx.now }));
                Self::record(cx, &w);
                save(cx, &w);
                return Ok(Flow::Done("abandoned".into()));
            }
            other => return Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
        Self::record(cx, &w);
        let done = self.finished(&w);
        save(cx, &w);
        Ok(if done { Flow::Done("done".into()) } else { Flow::Wait })
    }
}
