//! `public_notice` (公示): a decision is published for a period (`5wd`) before it is carried
//! out. Residents raise objections (异议) during the period, each recorded on the case; staff
//! may uphold one, which sends the decision back; when the period ends the decision stands.
//! The printable notice (A4) is served from the case's data (`GET .../notice`).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::duration::Duration;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::model::Text;
use yishi_core::msg;

use crate::common::{load, save};

pub struct PublicNoticeKind;

/// The timer that ends the period.
const PERIOD_END: &str = "period_end";

/// Settings of `public_notice`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoticeSettings {
    /// How long the notice is up: a duration (`5wd`, `7d`) or a duration param.
    #[schemars(with = "String")]
    period: Spanned<String>,
    /// What is published, for the notice's heading (e.g. `加装电梯方案`).
    subject: Option<Text>,
    /// The steps whose recorded result (a vote's tally, a meeting's resolution) the notice
    /// shows: the first of them the case went through.
    #[serde(default)]
    decision: Vec<String>,
}

#[derive(Debug)]
struct NoticeStep {
    period: Duration,
    subject: Option<Text>,
    decision: Vec<String>,
}

/// One objection, as recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Objection {
    by: String,
    reason: String,
    at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct NoticeState {
    from: i64,
    until: i64,
    objections: Vec<Objection>,
}

impl StepKind for PublicNoticeKind {
    fn name(&self) -> &str {
        "public_notice"
    }
    fn summary(&self) -> Message {
        msg!("kind-public-notice")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(NoticeSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: NoticeSettings = cx.settings(settings, "public_notice")?;
        let period = cx.duration(&s.period)?;
        Some(Arc::new(NoticeStep { period, subject: s.subject, decision: s.decision }))
    }
}

impl NoticeStep {
    fn record(&self, cx: &mut StepCx<'_>, st: &NoticeState, outcome: Option<&str>) {
        let (step, decision) =
            self.decision.iter().find_map(|d| cx.get(d).map(|v| (Some(d), v.clone()))).unwrap_or((None, Value::Null));
        cx.set(
            cx.step_id,
            json!({
                "from": st.from,
                "until": st.until,
                "subject": self.subject,
                "decision_step": step,
                "decision": decision,
                "objections": st.objections.iter().map(|o| json!({ "by": o.by, "reason": o.reason, "at": o.at })).collect::<Vec<_>>(),
                "outcome": outcome,
            }),
        );
    }
}

impl Step for NoticeStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["confirmed".into(), "sent_back".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("object", msg!("action-notice-object")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-notice-objection"),
            ),
            ActionSpec::new("uphold", msg!("action-notice-uphold")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-notice-uphold-reason"),
            ),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let until = cx.after(self.period);
        let st = NoticeState { from: cx.now, until, objections: Vec::new() };
        cx.set_timer(PERIOD_END, until);
        cx.notify(Notice {
            topic: "public_notice".into(),
            to: Vec::new(),
            message: msg!("notice-public-notice", case = cx.instance_id, step = cx.step_id),
            webhook: None,
            robot: None,
            body: json!({ "from": st.from, "until": until }),
        });
        self.record(cx, &st, None);
        save(cx, &st);
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut st: NoticeState = load(cx);
        let reason = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
        if reason.is_empty() {
            return Err(StepError::refused_field("reason", msg!("notice-needs-reason")));
        }
        match action.name {
            "object" => {
                st.objections.push(Objection { by: action.subject.id.clone(), reason, at: cx.now });
                self.record(cx, &st, None);
                save(cx, &st);
                Ok(Flow::Wait)
            }
            "uphold" => {
                cx.clear_timer(PERIOD_END);
                self.record(cx, &st, Some("sent_back"));
                let mut data = cx.get(cx.step_id).cloned().unwrap_or(Value::Null);
                data["upheld"] = json!({ "by": action.subject.id, "reason": reason, "at": cx.now });
                cx.set(cx.step_id, data);
                save(cx, &st);
                Ok(Flow::Done("sent_back".into()))
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer != PERIOD_END {
            return Ok(Flow::Wait);
        }
        let st: NoticeState = load(cx);
        self.record(cx, &st, Some("confirmed"));
        Ok(Flow::Done("confirmed".into()))
    }
}
