//! `review`: the street office reviews a decision "within a reasonable range" (合理把关):
//! approve, or send back with a reason. With a `deadline` (e.g. `5wd`) whose outcome is
//! `approved` or `escalated`, silence has the effect the workflow says.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use yishi_core::kind::*;

pub struct ReviewKind;

/// Settings of `review`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReviewSettings {
    /// What is reviewed, shown to the reviewer (e.g. `the residents' decision`).
    subject: Option<String>,
}

#[derive(Debug)]
struct ReviewStep {
    subject: String,
}

impl StepKind for ReviewKind {
    fn name(&self) -> &str {
        "review"
    }
    fn summary(&self) -> &str {
        "an oversight review: approve, or send back with a reason; the deadline decides on silence"
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(ReviewSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: ReviewSettings = cx.settings(settings, "review")?;
        Some(Arc::new(ReviewStep { subject: s.subject.unwrap_or_else(|| "the decision".into()) }))
    }
}

impl Step for ReviewStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["approved".into(), "sent_back".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("approve", "approve").field(
                "comment",
                FieldType::String,
                false,
                "advice for the residents",
            ),
            ActionSpec::new("send_back", "send back with a reason").field(
                "reason",
                FieldType::String,
                true,
                "why, and what to change",
            ),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        cx.notify(Notice {
            topic: "review_requested".into(),
            to: Vec::new(),
            message: format!("please review {}", self.subject),
            webhook: None,
            body: Value::Null,
        });
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let (outcome, note) = match action.name {
            "approve" => ("approved", action.payload.get("comment").cloned()),
            "send_back" => {
                let reason = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default();
                if reason.trim().is_empty() {
                    return Err(StepError::refused_field("reason", "sending back needs a reason"));
                }
                ("sent_back", Some(Value::String(reason.into())))
            }
            other => return Err(StepError::refused(format!("unknown action `{other}`"))),
        };
        cx.set(cx.step_id, json!({ "outcome": outcome, "by": action.subject.id, "at": cx.now, "note": note }));
        Ok(Flow::Done(outcome.into()))
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer == DEADLINE_TIMER {
            cx.set(cx.step_id, json!({ "outcome": cx.deadline_outcome, "by": "deadline", "at": cx.now }));
            return Ok(Flow::Done(cx.deadline_outcome.to_owned()));
        }
        Ok(Flow::Wait)
    }
}
