//! `evaluate` (评, 民事民评): a satisfaction round (before, during or after implementation): a
//! score scale, a minimum number of responses, a threshold; a poor result can open a new,
//! linked proposal (closing the loop) while the workflow decides whether to reopen the case.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

use crate::common::{CompiledElectorate, ElectorateDecl, load, opt_number, save};

pub struct EvaluateKind;

/// Settings of `evaluate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EvaluateSettings {
    /// `before`, `during` or `after` implementation (recorded with the result).
    round: Option<String>,
    /// Highest score (default 5; scores run from 1).
    #[schemars(with = "Option<serde_json::Value>")]
    scale: Option<Spanned<NumberOrParam>>,
    /// Fewest responses for a valid result (a number or a param; default 1).
    #[schemars(with = "Option<serde_json::Value>")]
    min_responses: Option<Spanned<NumberOrParam>>,
    /// Average score needed to count as satisfied (a number or a param; default 60% of the scale).
    #[schemars(with = "Option<serde_json::Value>")]
    threshold: Option<Spanned<NumberOrParam>>,
    /// Who may respond (default: anyone the step's roles allow).
    #[schemars(with = "Option<ElectorateDecl>")]
    respondents: Option<Spanned<ElectorateDecl>>,
    /// A workflow (`id` in this unit, or `unit/id`) to start as a new, linked proposal when
    /// residents are not satisfied.
    follow_up: Option<String>,
}

#[derive(Debug)]
struct EvaluateStep {
    round: String,
    scale: i64,
    min_responses: u64,
    threshold: f64,
    respondents: Option<CompiledElectorate>,
    follow_up: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Responses {
    scores: BTreeMap<String, (i64, Option<String>)>,
}

impl StepKind for EvaluateKind {
    fn name(&self) -> &str {
        "evaluate"
    }
    fn summary(&self) -> Message {
        msg!("kind-evaluate")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(EvaluateSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: EvaluateSettings = cx.settings(settings, "evaluate")?;
        let scale = opt_number(cx, &s.scale).ok()?.unwrap_or(5.0) as i64;
        if scale < 2 {
            cx.error(s.scale.as_ref().map(Spanned::span).or(Some(span.clone())), msg!("check-evaluate-scale"), None);
            return None;
        }
        let min_responses = opt_number(cx, &s.min_responses).ok()?.unwrap_or(1.0).max(1.0) as u64;
        let threshold = opt_number(cx, &s.threshold).ok()?.unwrap_or(scale as f64 * 0.6);
        if threshold > scale as f64 {
            cx.error(
                s.threshold.as_ref().map(Spanned::span),
                msg!("check-evaluate-threshold", threshold = threshold, scale = scale),
                None,
            );
            return None;
        }
        let respondents = match &s.respondents {
            Some(d) => Some(d.get_ref().compile(cx, d.span())?),
            None => None,
        };
        if let Some(f) = &s.follow_up
            && !yishi_core::model::valid_id(f.rsplit('/').next().unwrap_or(f))
        {
            cx.error(Some(span), msg!("check-evaluate-follow-up", value = f), None);
            return None;
        }
        Some(Arc::new(EvaluateStep {
            round: s.round.unwrap_or_else(|| "after".into()),
            scale,
            min_responses,
            threshold,
            respondents,
            follow_up: s.follow_up,
        }))
    }
}

impl EvaluateStep {
    fn tally(&self, cx: &mut StepCx<'_>, r: &Responses) -> String {
        let n = r.scores.len() as u64;
        let avg = if n == 0 { 0.0 } else { r.scores.values().map(|(s, _)| *s as f64).sum::<f64>() / n as f64 };
        let outcome = if n < self.min_responses {
            "too_few_responses"
        } else if avg >= self.threshold {
            "satisfied"
        } else {
            "unsatisfied"
        };
        let comments: Vec<&String> = r.scores.values().filter_map(|(_, c)| c.as_ref()).collect();
        cx.set(cx.step_id, json!({ "round": self.round, "responses": n, "average": (avg * 100.0).round() / 100.0, "threshold": self.threshold, "scale": self.scale, "outcome": outcome, "comments": comments }));
        if outcome == "unsatisfied"
            && let Some(f) = &self.follow_up
        {
            let workflow = if f.contains('/') { f.clone() } else { format!("{}/{f}", cx.unit) };
            let title = cx.get("proposal").and_then(|p| p.get("title")).and_then(Value::as_str).unwrap_or_default();
            let mut data = Map::new();
            data.insert("follow_up_of".into(), Value::from(cx.instance_id));
            let reason =
                msg!("evaluate-follow-up-reason", average = format!("{avg:.1}"), scale = self.scale, title = title);
            data.insert("reason".into(), serde_json::to_value(reason).unwrap_or(Value::Null));
            data.insert("comments".into(), json!(comments));
            cx.spawns.push(Spawn { workflow, data });
        }
        outcome.to_owned()
    }
}

impl Step for EvaluateStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["satisfied".into(), "unsatisfied".into(), "too_few_responses".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("rate", msg!("action-evaluate-rate"))
                .field("score", FieldType::Int, true, msg!("field-evaluate-score"))
                .field("comment", FieldType::String, false, msg!("field-evaluate-comment")),
            ActionSpec::new("close", msg!("action-evaluate-close")),
        ]
    }
    fn handles_deadline(&self) -> bool {
        true
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        save(cx, &Responses::default());
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut r: Responses = load(cx);
        match action.name {
            "close" => Ok(Flow::Done(self.tally(cx, &r))),
            "rate" => {
                if let Some(e) = &self.respondents
                    && !e.admits(cx, action.subject)
                {
                    return Err(StepError::refused(msg!(
                        "evaluate-not-respondent",
                        who = &action.subject.id,
                        respondents = e.describe()
                    )));
                }
                let score = action.payload.get("score").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=self.scale).contains(&score) {
                    return Err(StepError::refused_field("score", msg!("evaluate-score", scale = self.scale)));
                }
                let comment = action.payload.get("comment").and_then(Value::as_str).map(str::to_owned);
                r.scores.insert(action.subject.id.clone(), (score, comment));
                save(cx, &r);
                Ok(Flow::Wait)
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer == DEADLINE_TIMER {
            let r: Responses = load(cx);
            return Ok(Flow::Done(self.tally(cx, &r)));
        }
        Ok(Flow::Wait)
    }
}
