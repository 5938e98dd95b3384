//! `meeting` (议, 民事民议): a council hall, courtyard council, small-stool meeting, living-room
//! chat, three-party meeting or the monthly representatives' sitting: attendance, minutes and
//! per-item outcomes.

use std::sync::Arc;

use chrono::{Datelike, Months, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

use crate::common::{load, opt_number, save, strings};

pub struct MeetingKind;

const FORMS: &[&str] = &[
    "council_hall",
    "courtyard_council",
    "small_stool",
    "living_room",
    "three_party",
    "representatives_sitting",
    "opinion_meeting",
    "wechat_group",
];

/// Settings of `meeting`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MeetingSettings {
    /// council_hall, courtyard_council, small_stool, living_room, three_party,
    /// representatives_sitting, opinion_meeting or wechat_group.
    #[schemars(with = "String")]
    form: Spanned<String>,
    /// Roles that must all be present before the meeting can conclude (a three-party meeting:
    /// community office, property manager and owners' committee).
    #[schemars(with = "Option<Vec<String>>")]
    required_parties: Option<Vec<Spanned<String>>>,
    /// Fewest attendees, a number or a param.
    #[schemars(with = "Option<serde_json::Value>")]
    min_attendance: Option<Spanned<NumberOrParam>>,
    /// Agenda items, recorded with the meeting.
    agenda: Option<Vec<String>>,
    /// When it sits: `monthly:<day>` (the monthly representatives' sitting takes up every
    /// topic waiting for it on that day) or `next_morning` (urgent matters).
    #[schemars(with = "Option<String>")]
    schedule: Option<Spanned<String>>,
    /// Outcomes the meeting can reach (default agreed, not_agreed, deferred).
    outcomes: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
enum Schedule {
    Monthly(u32),
    NextMorning,
}

#[derive(Debug)]
struct MeetingStep {
    form: String,
    required: Vec<String>,
    min_attendance: u64,
    agenda: Vec<String>,
    schedule: Option<Schedule>,
    outcomes: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct MeetingState {
    attendees: Vec<String>,
    parties: Vec<String>,
    minutes: Vec<Value>,
    scheduled_for: Option<i64>,
}

impl StepKind for MeetingKind {
    fn name(&self) -> &str {
        "meeting"
    }
    fn summary(&self) -> Message {
        msg!("kind-meeting")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(MeetingSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: MeetingSettings = cx.settings(settings, "meeting")?;
        let mut ok = true;
        if !FORMS.contains(&s.form.get_ref().as_str()) {
            let hint = yishi_core::diag::did_you_mean(s.form.get_ref(), FORMS.iter().copied())
                .or_else(|| Some(msg!("hint-meeting-forms", forms = FORMS.to_vec())));
            cx.error(Some(s.form.span()), msg!("check-meeting-form", form = s.form.get_ref()), hint);
            ok = false;
        }
        for r in s.required_parties.iter().flatten() {
            ok &= cx.role(r);
        }
        if s.form.get_ref() == "three_party" && s.required_parties.as_ref().is_none_or(|r| r.len() < 3) {
            cx.error(Some(s.form.span()), msg!("check-meeting-three-party"), None);
            ok = false;
        }
        let min_attendance = opt_number(cx, &s.min_attendance).unwrap_or_else(|()| {
            ok = false;
            None
        });
        let min_attendance = min_attendance.unwrap_or(1.0).max(0.0) as u64;
        let schedule = match &s.schedule {
            None => None,
            Some(sp) => match sp.get_ref().as_str() {
                "next_morning" => Some(Schedule::NextMorning),
                x => match x
                    .strip_prefix("monthly:")
                    .and_then(|d| d.parse::<u32>().ok())
                    .filter(|d| (1..=28).contains(d))
                {
                    Some(d) => Some(Schedule::Monthly(d)),
                    None => {
                        cx.error(
                            Some(sp.span()),
                            msg!("check-meeting-schedule", schedule = x),
                            Some(msg!("hint-meeting-schedule")),
                        );
                        ok = false;
                        None
                    }
                },
            },
        };
        ok.then(|| {
            Arc::new(MeetingStep {
                form: s.form.get_ref().clone(),
                required: s.required_parties.unwrap_or_default().into_iter().map(|r| r.into_inner()).collect(),
                min_attendance,
                agenda: s.agenda.unwrap_or_default(),
                schedule,
                outcomes: s.outcomes.unwrap_or_else(|| vec!["agreed".into(), "not_agreed".into(), "deferred".into()]),
            }) as Arc<dyn Step>
        })
    }
}

impl MeetingStep {
    fn sitting(&self, cx: &StepCx<'_>) -> Option<i64> {
        let zone = cx.calendar.zone;
        let now = zone.local(cx.now)?;
        let date = match self.schedule.as_ref()? {
            Schedule::NextMorning => now.date_naive().succ_opt()?,
            Schedule::Monthly(day) => {
                let this = NaiveDate::from_ymd_opt(now.year(), now.month(), *day)?;
                if this > now.date_naive() { this } else { this.checked_add_months(Months::new(1))? }
            }
        };
        let hour = if matches!(self.schedule, Some(Schedule::NextMorning)) { 9 } else { 19 };
        zone.instant(date.and_hms_opt(hour, 0, 0)?)
    }

    fn record(&self, cx: &mut StepCx<'_>, st: &MeetingState, extra: Map<String, Value>) {
        let mut r = json!({
            "form": self.form,
            "agenda": self.agenda,
            "attendees": st.attendees,
            "parties": st.parties,
            "minutes": st.minutes,
            "scheduled_for": st.scheduled_for,
        });
        if let Value::Object(m) = &mut r {
            m.extend(extra);
        }
        cx.set(cx.step_id, r);
    }
}

impl Step for MeetingStep {
    fn outcomes(&self) -> Vec<String> {
        self.outcomes.clone()
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("attend", msg!("action-meeting-attend"))
                .field("attendees", FieldType::Strings, false, msg!("field-meeting-attendees"))
                .field("parties", FieldType::Strings, false, msg!("field-meeting-parties")),
            ActionSpec::new("minutes", msg!("action-meeting-minutes")).field(
                "text",
                FieldType::String,
                true,
                msg!("field-meeting-minutes-text"),
            ),
            ActionSpec::new("conclude", msg!("action-meeting-conclude"))
                .field("outcome", FieldType::OneOf(self.outcomes.clone()), true, msg!("field-meeting-outcome"))
                .field("resolution", FieldType::String, false, msg!("field-meeting-resolution"))
                .field("items", FieldType::Object, false, msg!("field-meeting-items")),
        ]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let mut st = MeetingState::default();
        if let Some(at) = self.sitting(cx) {
            st.scheduled_for = Some(at);
            cx.notify(Notice {
                topic: "meeting_scheduled".into(),
                to: self.required.clone(),
                message: msg!("notice-meeting-scheduled", step = cx.step_id, form = &self.form),
                webhook: None,
                robot: None,
                body: json!({ "at": at }),
            });
        }
        self.record(cx, &st, Map::new());
        save(cx, &st);
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut st: MeetingState = load(cx);
        match action.name {
            "attend" => {
                let listed = strings(action.payload.get("attendees"));
                if listed.is_empty() {
                    if !st.attendees.contains(&action.subject.id) {
                        st.attendees.push(action.subject.id.clone());
                    }
                    for r in &action.subject.roles {
                        if self.required.contains(r) && !st.parties.contains(r) {
                            st.parties.push(r.clone());
                        }
                    }
                } else {
                    for a in listed {
                        if !st.attendees.contains(&a) {
                            st.attendees.push(a);
                        }
                    }
                    for p in strings(action.payload.get("parties")) {
                        if !self.required.contains(&p) {
                            return Err(StepError::refused_field(
                                "parties",
                                msg!("meeting-not-a-party", party = &p, parties = self.required.clone()),
                            ));
                        }
                        if !st.parties.contains(&p) {
                            st.parties.push(p);
                        }
                    }
                }
                self.record(cx, &st, Map::new());
                save(cx, &st);
                Ok(Flow::Wait)
            }
            "minutes" => {
                st.minutes.push(json!({ "by": action.subject.id, "at": cx.now, "text": action.payload.get("text") }));
                self.record(cx, &st, Map::new());
                save(cx, &st);
                Ok(Flow::Wait)
            }
            "conclude" => {
                let missing: Vec<&String> = self.required.iter().filter(|r| !st.parties.contains(r)).collect();
                if !missing.is_empty() {
                    let missing: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
                    return Err(StepError::refused(msg!("meeting-parties-missing", missing = missing)));
                }
                if (st.attendees.len() as u64) < self.min_attendance {
                    return Err(StepError::refused(msg!(
                        "meeting-too-few",
                        attended = st.attendees.len(),
                        needed = self.min_attendance
                    )));
                }
                let outcome = action.payload.get("outcome").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut extra = Map::new();
                extra.insert("outcome".into(), Value::String(outcome.clone()));
                extra.insert("resolution".into(), action.payload.get("resolution").cloned().unwrap_or(Value::Null));
                extra.insert("items".into(), action.payload.get("items").cloned().unwrap_or(Value::Null));
                extra.insert("concluded_at".into(), Value::from(cx.now));
                self.record(cx, &st, extra);
                save(cx, &st);
                Ok(Flow::Done(outcome))
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
    }
}
