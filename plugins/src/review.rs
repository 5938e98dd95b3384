//! `review`: the street office reviews a decision "within a reasonable range" (合理把关):
//! approve, or send back with a reason. With a `deadline` (e.g. `5wd`) whose outcome is
//! `approved` or `escalated`, silence has the effect the workflow says.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::model::Text;
use yishi_core::msg;

pub struct ReviewKind;

/// Settings of `review`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReviewSettings {
    /// What is reviewed, shown to the reviewer (e.g. `居民的决定`).
    subject: Option<Text>,
}

#[derive(Debug)]
struct ReviewStep {
    subject: Message,
}

impl StepKind for ReviewKind {
    fn name(&self) -> &str {
        "review"
    }
    fn summary(&self) -> Message {
        msg!("kind-review")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(ReviewSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: ReviewSettings = cx.settings(settings, "review")?;
        let subject = s.subject.as_ref().map_or_else(|| msg!("review-the-decision"), Message::text);
        Some(Arc::new(ReviewStep { subject }))
    }
}

impl Step for ReviewStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["approved".into(), "sent_back".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("approve", msg!("action-review-approve")).field(
                "comment",
                FieldType::String,
                false,
                msg!("field-review-comment"),
            ),
            ActionSpec::new("send_back", msg!("action-review-send-back")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-review-reason"),
            ),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        cx.notify(Notice {
            topic: "review_requested".into(),
            to: Vec::new(),
            message: msg!("notice-review-requested", subject = self.subject.clone()),
            webhook: None,
            robot: None,
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
                    return Err(StepError::refused_field("reason", msg!("review-needs-reason")));
                }
                ("sent_back", Some(Value::String(reason.into())))
            }
            other => return Err(StepError::refused(msg!("run-unknown-action", action = other))),
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
