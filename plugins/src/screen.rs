//! `screen`: checks a proposal against the handbook's encouraged categories and negative list
//! (list files), records the verdict and the reason; staff can override with a reason; the
//! proposer can appeal a rejection once.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

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
    /// Why, as a message: the automatic verdict's, or a person's words.
    reason: Option<Message>,
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
    fn summary(&self) -> Message {
        msg!("kind-screen")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(ScreenSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: ScreenSettings = cx.settings(settings, "screen")?;
        if s.encouraged.is_none() && s.negative.is_none() {
            cx.error(Some(span), msg!("check-screen-lists"), None);
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
                        cx.error(Some(p.span()), msg!("check-screen-list-empty", list = p.get_ref(), key = key), None);
                        ok = false;
                    }
                }
            }
        }
        ok.then(|| Arc::new(step) as Arc<dyn Step>)
    }
}

impl ScreenStep {
    fn verdict(&self, proposal: &Value) -> (String, Message, Option<String>) {
        let text = ["title", "description", "category"]
            .iter()
            .filter_map(|k| proposal.get(k).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if let Some(n) = self.negative.iter().find(|n| n.keywords.iter().any(|k| text.contains(k.as_str()))) {
            let why = msg!("screen-negative", item = &n.text, id = &n.id);
            return ("rejected".into(), why, Some(n.id.clone()));
        }
        let category = proposal.get("category").and_then(Value::as_str).unwrap_or_default();
        if let Some(c) =
            self.encouraged.iter().find(|c| c.id == category || c.keywords.iter().any(|k| text.contains(k.as_str())))
        {
            let why = msg!("screen-encouraged", category = &c.text, id = &c.id);
            return ("accepted".into(), why, Some(c.id.clone()));
        }
        if self.encouraged.is_empty() {
            return ("accepted".into(), msg!("screen-not-negative"), None);
        }
        ("needs_review".into(), msg!("screen-needs-review"), None)
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
            ActionSpec::new("decide", msg!("action-screen-decide"))
                .field("verdict", verdicts, true, msg!("field-screen-verdict"))
                .field("reason", FieldType::String, true, msg!("field-screen-reason")),
            ActionSpec::new("appeal", msg!("action-screen-appeal")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-screen-appeal-reason"),
            ),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let proposal = cx.get("proposal").cloned().unwrap_or(Value::Null);
        let (verdict, reason, matched) = self.verdict(&proposal);
        let st = ScreenState { verdict: verdict.clone(), reason: Some(reason), appealed: false };
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
                let reason = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default();
                if reason.trim().is_empty() {
                    return Err(StepError::refused_field("reason", msg!("screen-needs-reason")));
                }
                st.reason = Some(Message::verbatim(reason));
                self.record(cx, &st, &action.subject.id, None);
                save(cx, &st);
                Ok(Flow::Done(st.verdict))
            }
            "appeal" => {
                if cx.get("proposer").and_then(Value::as_str) != Some(action.subject.id.as_str()) {
                    return Err(StepError::refused(msg!("screen-appeal-proposer-only")));
                }
                if st.verdict != "rejected" {
                    return Err(StepError::refused(msg!("screen-appeal-rejection-only")));
                }
                if st.appealed {
                    return Err(StepError::refused(msg!("screen-appeal-once")));
                }
                st.appealed = true;
                st.verdict = "needs_review".into();
                let why = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default();
                st.reason = Some(msg!("screen-appealed", reason = why));
                self.record(cx, &st, &action.subject.id, None);
                save(cx, &st);
                Ok(Flow::Wait)
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
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
