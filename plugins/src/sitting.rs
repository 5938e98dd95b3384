//! Sittings (居民代表会议, 例会): a community's monthly sitting takes up every topic waiting for
//! it. `sitting` is the sitting itself (a case of its own: date, place, expected attendees;
//! opened once with a quorum check, each agenda item decided, minutes at the close, items not
//! reached rolled over); `await_sitting` is the step where a topic waits for the next sitting.
//! The engine keeps the agenda (see `yishi_core::kind::Awaits` and `Hosts`); these kinds hold
//! the governance rules.

use std::sync::Arc;

use chrono::DateTime;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toml::Spanned;
use yishi_core::duration::Duration;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

use crate::common::{load, save, strings};

/// Data keys of a sitting case.
pub const DATE: &str = "date";
pub const EXPECTED: &str = "expected";

/// Timers of a sitting.
const REMIND: &str = "remind";
const AGENDA_CLOSES: &str = "agenda_closes";

pub struct SittingKind;
pub struct AwaitSittingKind;

/// Settings of `sitting`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SittingSettings {
    /// Share of the expected attendees who must be present for the sitting to open (rounded
    /// up): a number between 0 and 1, or a param.
    #[schemars(with = "serde_json::Value")]
    quorum: Spanned<NumberOrParam>,
    /// Registration cut-off: a topic reaching its waiting step later than this before the
    /// sitting goes to the next one (`7d`, or a duration param).
    #[schemars(with = "String")]
    cutoff: Spanned<String>,
    /// Remind the expected attendees this long before the sitting (`2d`).
    #[schemars(with = "Option<String>")]
    remind_before: Option<Spanned<String>>,
}

#[derive(Debug)]
struct SittingStep {
    quorum: f64,
    hosts: Hosts,
    remind_before: Option<Duration>,
}

/// The quorum check made when the sitting opens.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Quorum {
    expected: usize,
    present: usize,
    needed: usize,
    met: bool,
}

/// One agenda item's decision.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ItemDecision {
    case: i64,
    outcome: String,
    #[serde(flatten)]
    record: Map<String, Value>,
    by: String,
    at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SittingState {
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opened_at: Option<i64>,
    #[serde(default)]
    present: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quorum: Option<Quorum>,
    #[serde(default)]
    decisions: Vec<ItemDecision>,
}

impl StepKind for SittingKind {
    fn name(&self) -> &str {
        "sitting"
    }
    fn summary(&self) -> Message {
        msg!("kind-sitting")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(SittingSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: SittingSettings = cx.settings(settings, "sitting")?;
        let mut quorum = cx.number(&s.quorum);
        if let Some(q) = quorum
            && !(0.0..=1.0).contains(&q)
        {
            cx.error(Some(s.quorum.span()), msg!("check-sitting-quorum", value = q), None);
            quorum = None;
        }
        let cutoff = cx.duration(&s.cutoff);
        let remind_before = s.remind_before.as_ref().map(|r| cx.duration(r));
        let remind_before = match remind_before {
            Some(None) => return None,
            Some(r) => r,
            None => None,
        };
        Some(Arc::new(SittingStep {
            quorum: quorum?,
            hosts: Hosts { date_key: DATE.into(), cutoff: cutoff? },
            remind_before,
        }))
    }
}

/// The sitting's date, from its data (RFC 3339).
pub fn sitting_date(data: &Map<String, Value>) -> Option<i64> {
    let text = data.get(DATE)?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|d| d.timestamp_millis())
}

/// A sitting's date as people read it, in the workflow calendar's zone (`2026-10-10 19:00`).
fn when(cx: &StepCx<'_>, at: i64) -> String {
    cx.calendar.zone.local(at).map_or_else(|| at.to_string(), |d| d.format("%Y-%m-%d %H:%M").to_string())
}

impl SittingStep {
    /// What the sitting's page and the API show, kept in `data.<step>`.
    fn record(cx: &mut StepCx<'_>, st: &SittingState, status: &str, extra: &[(&str, Value)]) {
        let mut m = match cx.get(cx.step_id) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        m.insert("status".into(), json!(status));
        m.insert("at".into(), json!(st.at));
        if let Some(o) = st.opened_at {
            m.insert("opened_at".into(), json!(o));
            m.insert("present".into(), json!(st.present));
        }
        if let Some(q) = &st.quorum {
            m.insert("quorum".into(), json!(q));
        }
        m.insert("decisions".into(), json!(st.decisions));
        for (k, v) in extra {
            m.insert((*k).into(), v.clone());
        }
        cx.set(cx.step_id, Value::Object(m));
    }

    fn notice(cx: &StepCx<'_>, topic: &str, message: Message) -> Notice {
        let expected = strings(cx.get(EXPECTED));
        Notice { topic: topic.into(), to: expected, message, webhook: None, robot: None, body: Value::Null }
    }

    fn open(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>, mut st: SittingState) -> Result<Flow, StepError> {
        if st.opened_at.is_some() {
            return Err(StepError::refused(msg!("sitting-already-open")));
        }
        // A sitting opens on its day: not more than half a day early.
        if cx.now < st.at - 12 * 3_600_000 {
            return Err(StepError::refused(msg!("sitting-too-early", at = when(cx, st.at))));
        }
        let expected = strings(cx.get(EXPECTED));
        let mut present = strings(action.payload.get("present"));
        present.dedup();
        let counted = present.iter().filter(|p| expected.contains(p)).count();
        let needed = (self.quorum * expected.len() as f64 - 1e-9).ceil().max(0.0) as usize;
        let quorum = Quorum { expected: expected.len(), present: counted, needed, met: counted >= needed };
        st.opened_at = Some(cx.now);
        st.present = present;
        st.quorum = Some(quorum.clone());
        if quorum.met {
            Self::record(cx, &st, "open", &[]);
            save(cx, &st);
            return Ok(Flow::Wait);
        }
        // No quorum: the sitting does not take place and every item goes to the next one.
        let rolled: Vec<i64> = cx.agenda.to_vec();
        cx.release(rolled.clone());
        Self::record(cx, &st, "inquorate", &[("rolled_over", json!(rolled))]);
        save(cx, &st);
        Ok(Flow::Done("inquorate".into()))
    }

    fn decide(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>, mut st: SittingState) -> Result<Flow, StepError> {
        if st.opened_at.is_none() {
            return Err(StepError::refused(msg!("sitting-not-open")));
        }
        let p = action.payload;
        let case = p.get("case").and_then(Value::as_i64).unwrap_or_default();
        if st.decisions.iter().any(|d| d.case == case) {
            return Err(StepError::refused_field("case", msg!("sitting-already-decided", case = case)));
        }
        if !cx.agenda.contains(&case) {
            let agenda = cx.agenda.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            return Err(StepError::refused_field("case", msg!("sitting-not-on-agenda", case = case, agenda = agenda)));
        }
        let outcome = p.get("outcome").and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut record = Map::new();
        let mut hands = 0;
        for k in ["for", "against", "abstain"] {
            if let Some(n) = p.get(k).and_then(Value::as_i64) {
                if n < 0 {
                    return Err(StepError::refused_field(k, msg!("sitting-negative-count", field = k)));
                }
                hands += n;
                record.insert(k.into(), json!(n));
            }
        }
        if hands > st.present.len() as i64 {
            return Err(StepError::refused_field(
                "for",
                msg!("sitting-too-many-hands", counted = hands, present = st.present.len()),
            ));
        }
        if let Some(note) = p.get("note").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) {
            record.insert("note".into(), json!(note));
        }
        record.insert("sitting".into(), json!(cx.instance_id));
        record.insert("held_on".into(), json!(st.at));
        cx.conclude(case, &outcome, record.clone());
        record.remove("sitting");
        record.remove("held_on");
        st.decisions.push(ItemDecision { case, outcome, record, by: action.actor.id.clone(), at: cx.now });
        Self::record(cx, &st, "open", &[]);
        save(cx, &st);
        Ok(Flow::Wait)
    }

    fn close(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>, st: SittingState) -> Result<Flow, StepError> {
        if st.opened_at.is_none() {
            return Err(StepError::refused(msg!("sitting-not-open")));
        }
        let minutes = action.payload.get("minutes").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
        if minutes.is_empty() {
            return Err(StepError::refused_field("minutes", msg!("sitting-needs-minutes")));
        }
        let rolled: Vec<i64> =
            cx.agenda.iter().copied().filter(|c| !st.decisions.iter().any(|d| d.case == *c)).collect();
        cx.release(rolled.clone());
        let extra = [
            ("minutes", json!(minutes)),
            ("minutes_by", json!(action.actor.id)),
            ("closed_at", json!(cx.now)),
            ("rolled_over", json!(rolled)),
        ];
        Self::record(cx, &st, "held", &extra);
        save(cx, &st);
        Ok(Flow::Done("held".into()))
    }
}

impl Step for SittingStep {
    fn outcomes(&self) -> Vec<String> {
        vec!["held".into(), "inquorate".into(), "cancelled".into()]
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("open", msg!("action-sitting-open")).field(
                "present",
                FieldType::Strings,
                true,
                msg!("field-sitting-present"),
            ),
            ActionSpec::new("decide", msg!("action-sitting-decide"))
                .field("case", FieldType::Int, true, msg!("field-sitting-case"))
                .field("outcome", FieldType::String, true, msg!("field-sitting-outcome"))
                .field("for", FieldType::Int, false, msg!("field-sitting-for"))
                .field("against", FieldType::Int, false, msg!("field-sitting-against"))
                .field("abstain", FieldType::Int, false, msg!("field-sitting-abstain"))
                .field("note", FieldType::String, false, msg!("field-sitting-note")),
            ActionSpec::new("close", msg!("action-sitting-close")).field(
                "minutes",
                FieldType::String,
                true,
                msg!("field-sitting-minutes"),
            ),
            ActionSpec::new("cancel", msg!("action-sitting-cancel")).field(
                "reason",
                FieldType::String,
                true,
                msg!("field-sitting-cancel-reason"),
            ),
        ]
    }
    fn hosts(&self) -> Option<&Hosts> {
        Some(&self.hosts)
    }
    fn takes_items(&self, state: &Value) -> bool {
        state.get("opened_at").is_none_or(Value::is_null)
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let Some(at) = sitting_date(&cx.data) else {
            return Err(StepError::refused_field(DATE, msg!("sitting-needs-date")));
        };
        if strings(cx.get(EXPECTED)).is_empty() {
            return Err(StepError::refused_field(EXPECTED, msg!("sitting-needs-expected")));
        }
        let st = SittingState { at, ..SittingState::default() };
        let closes = at - self.hosts.cutoff.nominal_ms();
        if closes > cx.now {
            cx.set_timer(AGENDA_CLOSES, closes);
        }
        if let Some(r) = self.remind_before {
            let remind = at - r.nominal_ms();
            if remind > cx.now {
                cx.set_timer(REMIND, remind);
            }
        }
        let n = Self::notice(
            cx,
            "sitting_scheduled",
            msg!("notice-sitting-scheduled", sitting = cx.instance_id, at = when(cx, at)),
        );
        cx.notify(n);
        Self::record(cx, &st, "scheduled", &[("agenda_closes", json!(closes))]);
        save(cx, &st);
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let st: SittingState = load(cx);
        match action.name {
            "open" => self.open(cx, action, st),
            "decide" => self.decide(cx, action, st),
            "close" => self.close(cx, action, st),
            "cancel" => {
                if st.opened_at.is_some() {
                    return Err(StepError::refused(msg!("sitting-cancel-open")));
                }
                let reason = action.payload.get("reason").and_then(Value::as_str).unwrap_or_default().trim();
                if reason.is_empty() {
                    return Err(StepError::refused_field("reason", msg!("sitting-needs-reason")));
                }
                let rolled: Vec<i64> = cx.agenda.to_vec();
                cx.release(rolled.clone());
                let extra = [("cancelled", json!(reason)), ("rolled_over", json!(rolled))];
                Self::record(cx, &st, "cancelled", &extra);
                let n = Self::notice(
                    cx,
                    "sitting_cancelled",
                    msg!("notice-sitting-cancelled", sitting = cx.instance_id, at = when(cx, st.at)),
                );
                cx.notify(n);
                Ok(Flow::Done("cancelled".into()))
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        let st: SittingState = load(cx);
        let message = match timer {
            REMIND => msg!("notice-sitting-reminder", sitting = cx.instance_id, at = when(cx, st.at)),
            AGENDA_CLOSES => msg!("notice-sitting-agenda-closed", sitting = cx.instance_id, at = when(cx, st.at)),
            _ => return Ok(Flow::Wait),
        };
        let n = Self::notice(cx, timer, message);
        cx.notify(n);
        Ok(Flow::Wait)
    }
}

/// Settings of `await_sitting`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AwaitSettings {
    /// The workflow (an id in the case's own unit) whose cases are the sittings; default
    /// `sitting`.
    sitting: Option<String>,
    /// The outcomes a sitting may decide a topic with (each needs a target in `on`).
    #[schemars(with = "Vec<String>")]
    outcomes: Spanned<Vec<String>>,
    /// Data keys shown on the agenda as the topic's papers (default `title`).
    #[serde(default)]
    papers: Vec<String>,
}

#[derive(Debug)]
struct AwaitStep {
    awaits: Awaits,
}

impl StepKind for AwaitSittingKind {
    fn name(&self) -> &str {
        "await_sitting"
    }
    fn summary(&self) -> Message {
        msg!("kind-await-sitting")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(AwaitSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: AwaitSettings = cx.settings(settings, "await_sitting")?;
        if s.outcomes.get_ref().is_empty() {
            cx.error(Some(s.outcomes.span()), msg!("check-await-no-outcomes"), Some(msg!("hint-await-outcomes")));
            return None;
        }
        let papers = if s.papers.is_empty() { vec!["title".to_owned()] } else { s.papers };
        Some(Arc::new(AwaitStep {
            awaits: Awaits {
                host: s.sitting.unwrap_or_else(|| "sitting".into()),
                outcomes: s.outcomes.into_inner(),
                papers,
            },
        }))
    }
}

impl Step for AwaitStep {
    fn outcomes(&self) -> Vec<String> {
        self.awaits.outcomes.clone()
    }
    fn awaits(&self) -> Option<&Awaits> {
        Some(&self.awaits)
    }
    fn on_enter(&self, _cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        Ok(Flow::Wait)
    }
}
