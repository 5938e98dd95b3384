//! Step kinds written in Rhai: a district adds `kinds/<name>.rhai` beside its workflows and
//! uses `kind = "<name>"`, without recompiling.
//!
//! The script defines `on_enter(ctx)` and optionally `on_action(ctx, action)`,
//! `on_timer(ctx, timer)`, `outcomes(settings)` and `actions(settings)`. `ctx` is a map with
//! `data`, `params`, `settings`, `state`, `now`, `visits`, `item` and `step`. A hook returns a
//! map: `outcome` (finish the step), `set` (data keys to change), `state` (the step's new
//! state), `timers` (name -> due time in ms), `notify` (a list of `#{topic, to, message}`),
//! or `refuse` (refuse the action with this message). Returning `()` means "wait".

use std::collections::BTreeSet;
use std::sync::Arc;

use rhai::{Dynamic, Map as RMap};
use serde_json::{Map, Value};

use crate::diag::Place;
use crate::files::{FileSet, parent_dir};
use crate::i18n::Message;
use crate::kind::*;
use crate::msg;
use crate::script::{Script, ScriptError, from_dynamic, to_dynamic};

/// Finds `kinds/<name>.rhai` in `unit` or the nearest enclosing unit that has it.
pub fn find(files: &FileSet, unit: &str, name: &str, used: &mut BTreeSet<String>) -> Option<Arc<dyn StepKind>> {
    if !crate::model::valid_id(name) {
        return None;
    }
    let mut dir = unit;
    loop {
        let path = if dir.is_empty() { format!("kinds/{name}.rhai") } else { format!("{dir}/kinds/{name}.rhai") };
        if files.get(&path).is_some() {
            used.insert(path.clone());
            return Some(Arc::new(ScriptedKind { name: name.to_owned(), path }));
        }
        if dir.is_empty() {
            return None;
        }
        dir = parent_dir(dir);
    }
}

struct ScriptedKind {
    name: String,
    path: String,
}

#[derive(Debug)]
struct ScriptedStep {
    script: Script,
    settings: Value,
    outcomes: Vec<String>,
    actions: Vec<ActionSpec>,
}

impl StepKind for ScriptedKind {
    fn name(&self) -> &str {
        &self.name
    }
    fn summary(&self) -> Message {
        msg!("kind-rhai")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::json_schema!({ "type": "object" })
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let settings_json = devalue_to_json(settings.table.get_ref());
        let text = cx.files.get(&self.path)?.to_owned();
        let origin = crate::script::ScriptOrigin { file: self.path.clone(), line: 1, column: 1 };
        let script = match cx.sandbox.compile(&text, origin, &[]) {
            Ok(s) => s,
            Err(e) => {
                let (file, line, col) = e.position.clone().unwrap_or((self.path.clone(), 0, 0));
                let place = match cx.files.get(&file) {
                    Some(text) if line > 0 => Place::in_text(&file, text, line, col),
                    _ => Place::at(&file, line, col),
                };
                cx.diags.push_at(crate::diag::Code::ScriptSyntax, place, e.message.clone(), None);
                return None;
            }
        };
        if !script.has_fn("on_enter", 1) {
            cx.diags.push_at(
                crate::diag::Code::ScriptMisuse,
                Place::at(&self.path, 1, 1),
                msg!("check-rhai-kind-on-enter", kind = &self.name),
                None,
            );
            return None;
        }
        let sd = to_dynamic(&settings_json);
        let mut call_list = |func: &str, what: Message| -> Result<Option<Vec<Value>>, ()> {
            if !script.has_fn(func, 1) {
                return Ok(None);
            }
            let problem = match cx.sandbox.call(&script, func, vec![sd.clone()]).map(|v| from_dynamic(&v)) {
                Ok(Value::Array(a)) => return Ok(Some(a)),
                Ok(other) => {
                    msg!("check-rhai-kind-list", func = func, kind = &self.name, what = what, got = other.to_string())
                }
                Err(e) => msg!("check-rhai-kind-failed", func = func, kind = &self.name, error = e.message),
            };
            cx.error(Some(settings.span()), problem, None);
            Err(())
        };
        let outcomes: Vec<String> = match call_list("outcomes", msg!("type-strings")).ok()? {
            None => vec!["done".to_owned()],
            Some(list) if list.iter().all(Value::is_string) => {
                list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
            }
            Some(_) => {
                cx.error(Some(settings.span()), msg!("check-rhai-kind-outcomes", kind = &self.name), None);
                return None;
            }
        };
        let mut actions = Vec::new();
        if let Some(list) = call_list("actions", msg!("type-maps")).ok()? {
            for a in list {
                let Some(name) = a.get("name").and_then(Value::as_str) else {
                    cx.error(Some(settings.span()), msg!("check-rhai-kind-action-name", kind = &self.name), None);
                    return None;
                };
                let summary = Message::verbatim(a.get("summary").and_then(Value::as_str).unwrap_or(""));
                let mut spec = ActionSpec::new(name, summary);
                if let Some(Value::Object(fields)) = a.get("fields") {
                    for (f, ty) in fields {
                        match ty.as_str().and_then(FieldType::parse) {
                            Some((t, req)) => spec = spec.field(f, t, req, Message::verbatim("")),
                            None => {
                                let message =
                                    msg!("check-rhai-kind-field-type", field = f, action = name, kind = &self.name);
                                cx.error(Some(settings.span()), message, Some(msg!("hint-field-types")));
                                return None;
                            }
                        }
                    }
                }
                actions.push(spec);
            }
        }
        Some(Arc::new(ScriptedStep { script, settings: settings_json, outcomes, actions }))
    }
}

impl ScriptedStep {
    fn ctx(&self, cx: &StepCx<'_>) -> Dynamic {
        let mut m = RMap::new();
        m.insert("data".into(), cx.data_dynamic());
        m.insert("params".into(), to_dynamic(&Value::Object(cx.params.clone())));
        m.insert("settings".into(), to_dynamic(&self.settings));
        m.insert("state".into(), to_dynamic(&cx.state));
        m.insert("now".into(), Dynamic::from_int(cx.now));
        m.insert("visits".into(), Dynamic::from_int(i64::from(cx.visits)));
        m.insert(
            "all_visits".into(),
            Dynamic::from_map(
                cx.all_visits.iter().map(|(k, v)| (k.as_str().into(), Dynamic::from_int(i64::from(*v)))).collect(),
            ),
        );
        m.insert("item".into(), cx.item.map_or(Dynamic::UNIT, to_dynamic));
        m.insert("step".into(), Dynamic::from(cx.step_id.to_owned()));
        m.insert("urgency".into(), cx.urgency.map_or(Dynamic::UNIT, |u| Dynamic::from(u.to_owned())));
        Dynamic::from_map(m)
    }

    fn apply(&self, cx: &mut StepCx<'_>, result: Dynamic) -> Result<Flow, StepError> {
        let v = from_dynamic(&result);
        let Value::Object(m) = v else {
            return if v.is_null() {
                Ok(Flow::Wait)
            } else {
                Err(StepError::Script(ScriptError::wrong_result(&self.script, msg!("type-map-or-unit"), &result)))
            };
        };
        if let Some(msg) = m.get("refuse") {
            return Err(StepError::refused(Message::verbatim(
                msg.as_str().map_or_else(|| msg.to_string(), str::to_owned),
            )));
        }
        if let Some(Value::Object(set)) = m.get("set") {
            for (k, v) in set {
                cx.set(k, v.clone());
            }
        }
        if let Some(state) = m.get("state") {
            cx.state = state.clone();
        }
        if let Some(Value::Object(timers)) = m.get("timers") {
            for (name, due) in timers {
                match due.as_i64() {
                    Some(d) => cx.set_timer(name, d),
                    None => cx.clear_timer(name),
                }
            }
        }
        if let Some(Value::Array(notes)) = m.get("notify") {
            for n in notes {
                cx.notify(Notice {
                    topic: n.get("topic").and_then(Value::as_str).unwrap_or("notice").to_owned(),
                    to: n
                        .get("to")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default(),
                    message: Message::verbatim(n.get("message").and_then(Value::as_str).unwrap_or("")),
                    webhook: None,
                    robot: None,
                    body: Value::Null,
                });
            }
        }
        match m.get("outcome") {
            Some(Value::String(o)) if self.outcomes.contains(o) => Ok(Flow::Done(o.clone())),
            Some(Value::String(o)) => {
                Err(StepError::Failed(msg!("run-rhai-kind-outcome", outcome = o, outcomes = self.outcomes.clone())))
            }
            Some(_) => Err(StepError::Failed(msg!("run-rhai-kind-outcome-type"))),
            None => Ok(Flow::Wait),
        }
    }
}

impl Step for ScriptedStep {
    fn outcomes(&self) -> Vec<String> {
        self.outcomes.clone()
    }
    fn actions(&self) -> Vec<ActionSpec> {
        self.actions.clone()
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let r = cx.sandbox.call(&self.script, "on_enter", vec![self.ctx(cx)])?;
        self.apply(cx, r)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        if !self.script.has_fn("on_action", 2) {
            return Err(StepError::refused(msg!("run-no-actions")));
        }
        let mut a = Map::new();
        a.insert("name".into(), Value::String(action.name.into()));
        a.insert("payload".into(), Value::Object(action.payload.clone()));
        a.insert("by".into(), Value::String(action.subject.id.clone()));
        a.insert("roles".into(), Value::from(action.subject.roles.clone()));
        let r = cx.sandbox.call(&self.script, "on_action", vec![self.ctx(cx), to_dynamic(&Value::Object(a))])?;
        self.apply(cx, r)
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if !self.script.has_fn("on_timer", 2) {
            return if timer == DEADLINE_TIMER {
                Ok(Flow::Done(cx.deadline_outcome.to_owned()))
            } else {
                Ok(Flow::Wait)
            };
        }
        let r = cx.sandbox.call(&self.script, "on_timer", vec![self.ctx(cx), Dynamic::from(timer.to_owned())])?;
        self.apply(cx, r)
    }
}
