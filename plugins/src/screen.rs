//! `screen`: checks a proposal against the handbook's encouraged categories and negative list
//! (list files), records the verdict and the reason; staff can override with a reason; the
//! proposer can appeal a rejection once.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::kind::*;

use crate::common::{load, save};

pub struct ScreenKind;

/// Settings of `screen`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ScreenSettings {
    /// List file of encouraged categories: `[[categories]] id, name, keywords`.
    #[schemars(with = "Option<String>")]
    encouraged: Option<Spanned<String>>,
    /// List file of the negative list: `[[items]] id, text, keywords`.
    #[schemars(with = "Option<String>")]
    negative: Option<Spanned<String>>,
    /// Finish at once when the automatic verdict is `accepted` (default true).
    auto_accept: Option<bool>,
}

#[derive(Debug, Clone)]
struct Entry {
    id: String,
    text: String,
    keywords: Vec<String>,
}

#[derive(Debug)]
struct ScreenStep {
    encouraged: Vec<Entry>,
    negative: Vec<Entry>,
    auto_accept: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct ScreenState {
    verdict: String,
    reason: String,
    appealed: bool,
}

fn entries(list: &Value, key: &str) -> Vec<Entry> {
    list.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    id: e.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    text: e
                        .get("name")
                        .or_else(|| e.get("text"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    keywords: e
                        .get("keywords")
                        .and_then(Value::as_array)
                        .map(|k| k.iter().filter_map(|x| x.as_str().map(str::to_lowercase)).collect())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl StepKind for ScreenKind {
    fn name(&self) -> &str {
        "screen"
    }
    fn summary(&self) -> &str {
        "checks a proposal against encouraged categories and the negative list; override and one appeal"
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(ScreenSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ScreenSettings = cx.settings(settings, "screen")?;
        if s.encouraged.is_none() && s.negative.is_none() {
            cx.error(Some(span), "a screen needs `encouraged`, `negative` or both (list files)", None);
            return None;
        }
        let mut step =
            ScreenStep { encouraged: Vec::new(), negative: Vec::new(), auto_accept: s.auto_accept.unwrap_or(true) };
        let mut ok = true;
        for (path, key, out) in
            [(&s.encouraged, "categories", &mut step.encouraged), (&s.negative, "items", &mut step.negative)]
        {
            let Some(p) = path else { continue };
            match cx.list(p) {
                None => ok = false,
                Some(list) => {
                    *out = entries(&list, key);
                    if out.is_empty() {
                        cx.error(Some(p.span()), format!("`{}` has no `[[{key}]]`", p.get_ref()), None);
                        ok = false;
                    }
                }
            }
        }
        ok.then(|| Arc::new(step) as Arc<dyn Step>)
    }
}

impl ScreenStep {
    fn verdict(&self, proposal: &Value) -> (String, String, Option<String>) {
        let text = ["title", "description", "category"]
            .iter()
            .filter_map(|k| proposal.get(k).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if let Some(n) = self.negative.iter().find(|n| n.keywords.iter().any(|k| text.contains(k.as_str()))) {
            return ("rejected".into(), format!("on the negative list: {} ({})", n.text, n.id), Some(n.id.clone()));
        }
        let category = proposal.get("category").and_then(Value::as_str).unwrap_or_default();
        if let Some(c) =
            self.encouraged.iter().find(|c| c.id == category || c.keywords.iter().any(|k| text.contains(k.as_str())))
        {
            return ("accepted".into(), format!("encouraged category: {} ({})", c.text, c.id), Some(c.id.clone()));
        }
        if self.encouraged.is_empty() {
            return ("accepted".into(), "not on the negative list".into(), None);
        }
        ("needs_review".into(), "not in an encouraged category: staff decide".into(), None)
    }

    fn record(&self, cx: &mut StepCx<'_>, st: &ScreenState, by: &str, matched: Option<String>) {
        cx.set(cx.step_id, json!({ "verdict": st.verdict, "reason": st.reason, "by": by, "matched": matched, "appealed": st.appealed, "at": cx.now }));
    }
}

impl Step for ScreenStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["accepted".into(), "rejected".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        let verdicts = FieldType::OneOf(vec!["accepted".into(), "rejected".into()]);
        vec![
            ActionSpec::new("decide", "confirm or override the verdict, with a reason")
                .field("verdict", verdicts, true, "accepted or rejected")
                .field("reason", FieldType::String, true, "why"),
            ActionSpec::new("appeal", "the proposer appeals a rejection (once)").field(
                "reason",
                FieldType::String,
                true,
                "why the proposal should go ahead",
            ),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let proposal = cx.get("proposal").cloned().unwrap_or(Value::Null);
        let (verdict, reason, matched) = self.verdict(&proposal);
        let st = ScreenState { verdict: verdict.clone(), reason, appealed: false };
        self.record(cx, &st, "automatic", matched);
        save(cx, &st);
        if verdict == "accepted" && self.auto_accept {
            return Ok(Flow::Done(verdict));
        }
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut st: ScreenState = load(cx);
        match action.name {
            "decide" => {
                st.verdict = action.payload.get("verdict").and_then(Value::as_str).unwrap_or_default().to_owned();
                st.reason = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default().to_owned();
                if st.reason.trim().is_empty() {
                    return Err(StepError::refused_field("reason", "a decision needs a reason"));
                }
                self.record(cx, &st, &action.subject.id, None);
                save(cx, &st);
                Ok(Flow::Done(st.verdict))
            }
            "appeal" => {
                if cx.get("proposer").and_then(Value::as_str) != Some(action.subject.id.as_str()) {
                    return Err(StepError::refused("only the proposer may appeal"));
                }
                if st.verdict != "rejected" {
                    return Err(StepError::refused("only a rejection can be appealed"));
                }
                if st.appealed {
                    return Err(StepError::refused("the proposer has already appealed once"));
                }
                st.appealed = true;
                st.verdict = "needs_review".into();
                st.reason =
                    format!("appealed: {}", action.payload.get("reason").and_then(Value::as_str).unwrap_or_default());
                self.record(cx, &st, &action.subject.id, None);
                save(cx, &st);
                Ok(Flow::Wait)
            }
            other => Err(StepError::refused(format!("unknown action `{other}`"))),
        }
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer != DEADLINE_TIMER {
            return Ok(Flow::Wait);
        }
        // Nobody decided in time: an automatic verdict stands; an open review takes the deadline's outcome.
        let st: ScreenState = load(cx);
        Ok(Flow::Done(if st.verdict == "accepted" || st.verdict == "rejected" {
            st.verdict
        } else {
            cx.deadline_outcome.to_owned()
        }))
    }
}
