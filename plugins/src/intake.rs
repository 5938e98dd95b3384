//! `intake` (提, 民事民提): a proposal or complaint arrives through a channel, as an individual,
//! joint (co-signed) or organisational proposal, and gets a registration number per community
//! and year.

use std::sync::Arc;

use chrono::Datelike;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use toml::Spanned;
use yishi_core::duration::Duration;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;

use crate::common::{load, opt_number, save};

pub struct IntakeKind;

const CHANNELS: &[&str] = &["suggestion_box", "phone", "online", "wechat", "mailbox", "visit"];
const FORMS: &[&str] = &["individual", "joint", "organisational"];

/// Settings of `intake`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct IntakeSettings {
    /// Channels accepted (default: suggestion_box, phone, online, wechat, mailbox, visit).
    channels: Option<Vec<String>>,
    /// Forms accepted (default: individual, joint, organisational).
    forms: Option<Vec<String>>,
    /// Distinct co-signers a joint proposal needs (a number or a param; default 5).
    #[schemars(with = "Option<serde_json::Value>")]
    co_signers: Option<Spanned<NumberOrParam>>,
    /// Time the co-signers have after submission (a duration or a duration param; default 7d).
    #[schemars(with = "Option<String>")]
    co_sign_within: Option<Spanned<String>>,
    /// Role co-signers must hold (default: any role that may act on the step).
    co_signer_role: Option<String>,
    /// Roles that may submit an organisational proposal on behalf of their organisation.
    organisation_roles: Option<Vec<String>>,
    /// Registration number format; `{unit}`, `{year}` and `{n:4}` are filled in (default `{year}-{n:4}`).
    number_format: Option<String>,
}

#[derive(Debug)]
struct IntakeStep {
    channels: Vec<String>,
    forms: Vec<String>,
    co_signers: u64,
    co_sign_within: Duration,
    co_signer_role: Option<String>,
    organisation_roles: Vec<String>,
    number_format: String,
}

#[derive(Default, Serialize, Deserialize)]
struct IntakeState {
    submitted: bool,
    #[serde(default)]
    proposer: String,
    #[serde(default)]
    co_signers: Vec<String>,
}

/// Every name in `given` is one of `known`; `unknown` is the message for one that is not
/// (`check-intake-unknown-channel`), `listed` the hint listing the known ones.
fn check_names(
    cx: &mut CompileCx<'_>,
    span: std::ops::Range<usize>,
    (unknown, listed): (&'static str, &'static str),
    given: &[String],
    known: &[&str],
) -> bool {
    let mut ok = true;
    for g in given {
        if !known.contains(&g.as_str()) {
            let hint = yishi_core::diag::did_you_mean(g, known.iter().copied())
                .or_else(|| Some(Message::new(listed).arg("names", known.to_vec())));
            cx.error(Some(span.clone()), Message::new(unknown).arg("name", g), hint);
            ok = false;
        }
    }
    ok
}

impl StepKind for IntakeKind {
    fn name(&self) -> &str {
        "intake"
    }
    fn summary(&self) -> Message {
        msg!("kind-intake")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(IntakeSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let span = settings.span();
        let s: IntakeSettings = cx.settings(settings, "intake")?;
        let channels = s.channels.unwrap_or_else(|| CHANNELS.iter().map(|c| (*c).to_owned()).collect());
        let forms = s.forms.unwrap_or_else(|| FORMS.iter().map(|c| (*c).to_owned()).collect());
        let ok = check_names(cx, span.clone(), ("check-intake-channel", "hint-intake-channels"), &channels, CHANNELS)
            & check_names(cx, span.clone(), ("check-intake-form", "hint-intake-forms"), &forms, FORMS);
        let co_signers = opt_number(cx, &s.co_signers).ok()?.unwrap_or(5.0).max(0.0) as u64;
        let co_sign_within = match &s.co_sign_within {
            Some(d) => cx.duration(d)?,
            None => Duration::Seconds(7 * 86_400),
        };
        let mut roles_ok = true;
        for r in s.co_signer_role.iter().chain(s.organisation_roles.iter().flatten()) {
            roles_ok &= cx.role(&Spanned::new(span.clone(), r.clone()));
        }
        if forms.iter().any(|f| f == "organisational") && s.organisation_roles.as_ref().is_none_or(Vec::is_empty) {
            cx.error(Some(span), msg!("check-intake-organisation-roles"), Some(msg!("hint-intake-organisation-roles")));
            return None;
        }
        (ok && roles_ok).then(|| {
            Arc::new(IntakeStep {
                channels,
                forms,
                co_signers,
                co_sign_within,
                co_signer_role: s.co_signer_role,
                organisation_roles: s.organisation_roles.unwrap_or_default(),
                number_format: s.number_format.unwrap_or_else(|| "{year}-{n:4}".into()),
            }) as Arc<dyn Step>
        })
    }
}

impl IntakeStep {
    /// Whether joint proposals wait for co-signers.
    fn joint(&self) -> bool {
        self.co_signers > 0 && self.forms.iter().any(|f| f == "joint")
    }

    fn register(&self, cx: &mut StepCx<'_>) -> Flow {
        let year = cx.calendar.zone.local(cx.now).map_or(1970, |d| d.year());
        let format = self
            .number_format
            .replace("{unit}", cx.unit.rsplit('/').next().unwrap_or(cx.unit))
            .replace("{year}", &year.to_string());
        cx.numbers.push(NumberRequest {
            key: "registration".into(),
            counter: format!("registration:{}:{year}", cx.unit),
            format,
        });
        cx.clear_timer("co_sign");
        Flow::Done("registered".into())
    }
}

impl Step for IntakeStep {
    fn outcomes(&self) -> Vec<String> {
        if self.joint() { vec!["registered".into(), "too_few_co_signers".into()] } else { vec!["registered".into()] }
    }
    fn actions(&self) -> Vec<ActionSpec> {
        vec![
            ActionSpec::new("submit", msg!("action-intake-submit"))
                .field("title", FieldType::String, true, msg!("field-intake-title"))
                .field("description", FieldType::String, false, msg!("field-intake-description"))
                .field("channel", FieldType::OneOf(self.channels.clone()), true, msg!("field-intake-channel"))
                .field("form", FieldType::OneOf(self.forms.clone()), false, msg!("field-intake-form"))
                .field("category", FieldType::String, false, msg!("field-intake-category"))
                .field("organisation", FieldType::String, false, msg!("field-intake-organisation"))
                .field("cost", FieldType::Number, false, msg!("field-intake-cost"))
                .field("households", FieldType::Int, false, msg!("field-intake-households"))
                .field("location", FieldType::String, false, msg!("field-intake-location"))
                .field("details", FieldType::Object, false, msg!("field-intake-details")),
        ]
        .into_iter()
        .chain(self.joint().then(|| ActionSpec::new("co_sign", msg!("action-intake-co-sign"))))
        .collect()
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        save(cx, &IntakeState::default());
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        let mut st: IntakeState = load(cx);
        match action.name {
            "submit" => {
                if st.submitted {
                    return Err(StepError::refused(msg!("intake-already-submitted")));
                }
                let form = action.payload.get("form").and_then(Value::as_str).unwrap_or("individual").to_owned();
                if form == "organisational" {
                    if action.payload.get("organisation").and_then(Value::as_str).is_none_or(str::is_empty) {
                        return Err(StepError::refused_field("organisation", msg!("intake-name-organisation")));
                    }
                    if !action.subject.roles.iter().any(|r| self.organisation_roles.contains(r)) {
                        return Err(StepError::refused(msg!(
                            "intake-organisation-roles",
                            roles = self.organisation_roles.clone()
                        )));
                    }
                }
                let mut proposal: Map<String, Value> = action.payload.clone();
                proposal.insert("form".into(), Value::String(form.clone()));
                proposal.insert("proposer".into(), Value::String(action.subject.id.clone()));
                proposal.insert("submitted_at".into(), Value::from(cx.now));
                if action.actor.id != action.subject.id {
                    proposal.insert("entered_by".into(), Value::String(action.actor.id.clone()));
                }
                cx.set("proposal", Value::Object(proposal));
                cx.set("proposer", Value::String(action.subject.id.clone()));
                st.submitted = true;
                st.proposer = action.subject.id.clone();
                if form == "joint" && self.co_signers > 0 {
                    let due = cx.after(self.co_sign_within);
                    cx.set_timer("co_sign", due);
                    cx.set(cx.step_id, json!({ "co_signers": [], "needed": self.co_signers, "co_sign_until": due }));
                    save(cx, &st);
                    return Ok(Flow::Wait);
                }
                save(cx, &st);
                Ok(self.register(cx))
            }
            "co_sign" => {
                if !st.submitted {
                    return Err(StepError::refused(msg!("intake-nothing-to-co-sign")));
                }
                if action.subject.id == st.proposer {
                    return Err(StepError::refused(msg!("intake-own-proposal")));
                }
                if let Some(role) = &self.co_signer_role
                    && !action.subject.roles.contains(role)
                {
                    return Err(StepError::refused(msg!("intake-co-signer-role", role = role)));
                }
                if st.co_signers.contains(&action.subject.id) {
                    return Err(StepError::refused(msg!("intake-already-co-signed", who = &action.subject.id)));
                }
                st.co_signers.push(action.subject.id.clone());
                cx.set(cx.step_id, json!({ "co_signers": st.co_signers, "needed": self.co_signers }));
                let enough = st.co_signers.len() as u64 >= self.co_signers;
                save(cx, &st);
                Ok(if enough { self.register(cx) } else { Flow::Wait })
            }
            other => Err(StepError::refused(msg!("run-unknown-action", action = other))),
        }
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        match timer {
            "co_sign" => Ok(Flow::Done("too_few_co_signers".into())),
            DEADLINE_TIMER => Ok(Flow::Done(cx.deadline_outcome.to_owned())),
            _ => Ok(Flow::Wait),
        }
    }
}
