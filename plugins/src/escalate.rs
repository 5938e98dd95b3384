//! `escalate` (吹哨报到, whistle and report): the community whistles departments (police
//! station, judicial office, legal adviser, housing bureau); each must report within a
//! deadline; overdue departments are reminded, then escalated a level up; the community rates
//! each response. Done when all (or M of N) have reported and been rated.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::duration::Duration;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;
use yishi_core::script::Script;

use crate::common::{load, opt_number, save};

pub struct EscalateKind;

/// Settings of `escalate`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EscalateSettings {
    /// The departments whistled, e.g. `["judicial_office", "police_station", "legal_adviser"]`.
    departments: Option<Vec<String>>,
    /// Rhai returning the departments at run time (instead of `departments`), e.g. `data.departments`.
    #[schemars(with = "Option<String>")]
    departments_from: Option<Spanned<String>>,
    /// Time each department has to report (a duration or a param; default 3wd).
    #[schemars(with = "Option<String>")]
    report_within: Option<Spanned<String>>,
    /// After a department is overdue, time until it is escalated a level up (default 1wd).
    #[schemars(with = "Option<String>")]
    escalate_after: Option<Spanned<String>>,
    /// Who is told of an escalation (e.g. `street_office`).
    escalate_to: Option<String>,
    /// How many departments must report (a number or a param; default all).
    #[schemars(with = "Option<serde_json::Value>")]
    need: Option<Spanned<NumberOrParam>>,
    /// Must the community rate each response before the step completes (default true)?
    rate: Option<bool>,
}

#[derive(Debug)]
struct EscalateStep {
    departments: Vec<String>,
    departments_from: Option<Script>,
    report_within: Duration,
    escalate_after: Duration,
    escalate_to: String,
    need: Option<u64>,
    rate: bool,
}

#[derive(Default, Serialize, Deserialize, Clone)]
struct Dept {
    due_at: i64,
    #[serde(default)]
    reported_at: Option<i64>,
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    overdue: bool,
    #[serde(default)]
    escalated: bool,
    #[serde(default)]
    rating: Option<i64>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct Whistle {
    departments: BTreeMap<String, Dept>,
}

impl StepKind for EscalateKind {
    fn name(&self) -> &str {
        "escalate"
    }
    fn summary(&self) -> Message {
        msg!("kind-escalate")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(EscalateSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: EscalateSettings = cx.settings(settings, "escalate")?;
        let departments_from = match (&s.departments, &s.departments_from) {
            (Some(d), None) if !d.is_empty() => None,
            (None, Some(script)) => Some(cx.script(script, &[])?),
            _ => {
                cx.error(Some(span), msg!("check-escalate-departments"), None);
                return None;
            }
        };
        let report_within = match &s.report_within {
            Some(d) => cx.duration(d)?,
            None => Duration::WorkingDays(3),
        };
        let escalate_after = match &s.escalate_after {
            Some(d) => cx.duration(d)?,
            None => Duration::WorkingDays(1),
        };
        let need = opt_number(cx, &s.need).ok()?.map(|n| n.max(1.0) as u64);
        if let (Some(n), Some(d)) = (need, &s.departments)
            && n > d.len() as u64
        {
            cx.error(s.need.as_ref().map(Spanned::span), msg!("check-escalate-need", need = n, count = d.len()), None);
            return None;
        }
        Some(Arc::new(EscalateStep {
            departments: s.departments.unwrap_or_default(),
            departments_from,
            report_within,
            escalate_after,
            escalate_to: s.escalate_to.unwrap_or_else(|| "street_office".into()),
            need,
            rate: s.rate.unwrap_or(true),
        }))
    }
}

impl EscalateStep {
    fn record(cx: &mut StepCx<'_>, w: &Whistle) {
        cx.set(cx.step_id, json!({ "departments": w.departments }));
    }

    fn complete(&self, w: &Whistle) -> bool {
        let reported =
            w.departments.values().filter(|d| d.reported_at.is_some() && (!self.rate || d.rating.is_some())).count()
                as u64;
        reported >= self.need.unwrap_or(w.departments.len() as u64).min(w.departments.len() as u64)
    }
}

impl Step for EscalateStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["reported".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("report", msg!("action-escalate-report"))
                .field("department", FieldType::String, true, msg!("field-escalate-reporting"))
                .field("response", FieldType::String, true, msg!("field-escalate-response")),
            ActionSpec::new("rate", msg!("action-escalate-rate"))
                .field("department", FieldType::String, true, msg!("field-escalate-department"))
                .field("score", FieldType::Int, true, msg!("field-escalate-score"))
                .field("comment", FieldType::String, false, msg!("field-escalate-comment")),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let names: Vec<String> = match &self.departments_from {
            None => self.departments.clone(),
            Some(s) => {
                let v = cx.eval(s)?;
                let list = yishi_core::script::from_dynamic(&v);
                list.as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default()
            }
        };
        if names.is_empty() {
            return Err(StepError::Failed(msg!("escalate-none")));
        }
        let due = cx.after(self.report_within);
        let mut w = Whistle::default();
        for n in &names {
            w.departments.insert(n.clone(), Dept { due_at: due, ..Dept::default() });
            cx.set_timer(&format!("due:{n}"), due);
            cx.count_party(n, PartyMark::Called);
        }
        cx.notify(Notice {
            topic: "whistle".into(),
            to: names.clone(),
            message: msg!("notice-whistle", case = cx.instance_id),
            webhook: None,
            robot: None,
            body: json!({ "due_at": due }),
        });
        Self::record(cx, &w);
        save(cx, &w);
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut w: Whistle = load(cx);
        let dept = action.payload.get("department").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(d) = w.departments.get_mut(&dept) else {
            let known: Vec<&str> = w.departments.keys().map(String::as_str).collect();
            return Err(StepError::refused_field(
                "department",
                msg!("escalate-not-whistled", department = &dept, whistled = known),
            ));
        };
        match action.name {
            "report" => {
                if action.subject.id != dept && !action.subject.roles.contains(&dept) {
                    return Err(StepError::refused(msg!(
                        "escalate-report-as-itself",
                        who = &action.subject.id,
                        department = &dept
                    )));
                }
                if d.reported_at.is_none() {
                    cx.count_party(&dept, PartyMark::Responded { in_time: cx.now <= d.due_at });
                }
                d.reported_at = Some(cx.now);
                d.response = action.payload.get("response").and_then(Value::as_str).map(str::to_owned);
                cx.clear_timer(&format!("due:{dept}"));
                cx.clear_timer(&format!("escalate:{dept}"));
            }
            "rate" => {
                if d.reported_at.is_none() {
                    return Err(StepError::refused_field(
                        "department",
                        msg!("escalate-not-reported", department = &dept),
                    ));
                }
                let score = action.payload.get("score").and_then(Value::as_i64).unwrap_or(0);
                if !(1..=5).contains(&score) {
                    return Err(StepError::refused_field("score", msg!("escalate-score")));
                }
                if d.rating.is_none() {
                    cx.count_party(&dept, PartyMark::Rated { score: score as f64 });
                }
                d.rating = Some(score);
                d.comment = action.payload.get("comment").and_then(Value::as_str).map(str::to_owned);
            }
            other => return Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
        Self::record(cx, &w);
        let done = self.complete(&w);
        save(cx, &w);
        Ok(if done { Flow::Done("reported".into()) } else { Flow::Wait })
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        let mut w: Whistle = load(cx);
        if let Some(dept) = timer.strip_prefix("due:") {
            if let Some(d) = w.departments.get_mut(dept)
                && d.reported_at.is_none()
            {
                d.overdue = true;
                let at = cx.after_due(self.escalate_after);
                cx.set_timer(&format!("escalate:{dept}"), at);
                cx.notify(Notice {
                    topic: "overdue".into(),
                    to: vec![dept.to_owned()],
                    message: msg!("notice-report-overdue", case = cx.instance_id),
                    webhook: None,
                    robot: None,
                    body: Value::Null,
                });
            }
        } else if let Some(dept) = timer.strip_prefix("escalate:") {
            if let Some(d) = w.departments.get_mut(dept)
                && d.reported_at.is_none()
            {
                d.escalated = true;
                cx.notify(Notice {
                    topic: "escalated".into(),
                    to: vec![self.escalate_to.clone()],
                    message: msg!("notice-escalated", case = cx.instance_id, department = dept, to = &self.escalate_to),
                    webhook: None,
                    robot: None,
                    body: Value::Null,
                });
            }
        } else if timer == DEADLINE_TIMER {
            return Ok(Flow::Done(cx.deadline_outcome.to_owned()));
        }
        Self::record(cx, &w);
        save(cx, &w);
        Ok(Flow::Wait)
    }
}
