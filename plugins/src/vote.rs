//! `vote` (决): residents decide. An electorate, eligibility per voter, one vote each (a change
//! replaces the earlier vote while the vote is open, unless forbidden), for / against /
//! abstain, origins tallied apart, quorum, threshold, and elections of K people.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use toml::Spanned;
use yishi_core::i18n::Message;
use yishi_core::kind::*;
use yishi_core::msg;
use yishi_core::script::Script;

use crate::common::{CompiledElectorate, ElectorateDecl, load, opt_number, save};

pub struct VoteKind;

/// Settings of `vote`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VoteSettings {
    /// Who may vote.
    #[schemars(with = "ElectorateDecl")]
    electorate: Spanned<ElectorateDecl>,
    /// `person` (default) or `household`: one vote per household, given as `household` in the ballot.
    #[schemars(with = "Option<String>")]
    per: Option<Spanned<String>>,
    /// Share of the electorate that must vote (0 to 1), a number or a param.
    #[schemars(with = "Option<serde_json::Value>")]
    quorum: Option<Spanned<NumberOrParam>>,
    /// Smallest number of ballots, a number or a param.
    #[schemars(with = "Option<serde_json::Value>")]
    min_votes: Option<Spanned<NumberOrParam>>,
    /// `simple_majority` (more than half of the ballots are for; default), `two_thirds` (at
    /// least two thirds of the ballots), or `majority_of_electorate` (more than half of the electorate).
    #[schemars(with = "Option<String>")]
    threshold: Option<Spanned<String>>,
    /// May a voter change their vote while the vote is open (default true)?
    allow_change: Option<bool>,
    /// Where ballots come from, tallied apart (default `online`, `paper`, `meeting`).
    origins: Option<Vec<String>>,
    /// For an election: how many people are elected, a number or a param.
    #[schemars(with = "Option<serde_json::Value>")]
    seats: Option<Spanned<NumberOrParam>>,
    /// For an election: Rhai returning the list of candidate ids, e.g. `data.candidates`.
    #[schemars(with = "Option<String>")]
    candidates: Option<Spanned<String>>,
    /// Close as soon as every member of a countable electorate has voted.
    close_when_all_voted: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Threshold {
    SimpleMajority,
    TwoThirds,
    MajorityOfElectorate,
}

#[derive(Debug)]
struct VoteStep {
    electorate: CompiledElectorate,
    per_household: bool,
    quorum: Option<f64>,
    min_votes: Option<u64>,
    threshold: Threshold,
    allow_change: bool,
    origins: Vec<String>,
    election: Option<(u64, Script)>,
    close_when_all_voted: bool,
}

#[derive(Default, Serialize, Deserialize)]
struct Ballots {
    /// Keyed by voter (or household).
    ballots: BTreeMap<String, Ballot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<String>,
}

/// The ballots of a vote's state (`{"ballots": {...}}`), made where missing.
fn ballots_mut(state: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !state.get("ballots").is_some_and(Value::is_object) {
        if !state.is_object() {
            *state = json!({});
        }
        state["ballots"] = json!({});
    }
    state["ballots"].as_object_mut().expect("made an object above")
}

#[derive(Clone, Serialize, Deserialize)]
struct Ballot {
    voter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    choice: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    candidates: Vec<String>,
    origin: String,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entered_by: Option<String>,
}

impl StepKind for VoteKind {
    fn name(&self) -> &str {
        "vote"
    }
    fn summary(&self) -> Message {
        msg!("kind-vote")
    }
    fn settings_schema(&self) -> schemars::Schema {
        schemars::schema_for!(VoteSettings)
    }
    fn compile(&self, settings: Settings<'_>, cx: &mut CompileCx<'_>) -> Option<Arc<dyn Step>> {
        let s: VoteSettings = cx.settings(settings, "vote")?;
        // Check everything before giving up, so that one run reports every problem.
        let mut ok = true;
        let electorate = s.electorate.get_ref().compile(cx, s.electorate.span());
        let countable = electorate
            .as_ref()
            .is_some_and(|e| e.size.is_some() || matches!(e.who, crate::common::Electorate::Data(_)));
        let per_household = match s.per.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("person") => false,
            Some("household") => true,
            Some(other) => {
                cx.error(s.per.as_ref().map(Spanned::span), msg!("check-vote-per", value = other), None);
                ok = false;
                false
            }
        };
        let quorum = opt_number(cx, &s.quorum).unwrap_or_else(|()| {
            ok = false;
            None
        });
        if let Some(q) = quorum {
            if !(0.0..=1.0).contains(&q) {
                cx.error(
                    s.quorum.as_ref().map(Spanned::span),
                    msg!("check-vote-quorum", value = q),
                    Some(msg!("hint-vote-min-votes")),
                );
                ok = false;
            } else if electorate.is_some() && !countable {
                cx.error(Some(s.electorate.span()), msg!("check-vote-quorum-size"), None);
                ok = false;
            }
        }
        let min_votes = opt_number(cx, &s.min_votes)
            .unwrap_or_else(|()| {
                ok = false;
                None
            })
            .map(|v| v.max(0.0) as u64);
        let threshold = match s.threshold.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("simple_majority") => Threshold::SimpleMajority,
            Some("two_thirds") => Threshold::TwoThirds,
            Some("majority_of_electorate") => Threshold::MajorityOfElectorate,
            Some(other) => {
                let hint =
                    yishi_core::diag::did_you_mean(other, ["simple_majority", "two_thirds", "majority_of_electorate"]);
                cx.error(
                    s.threshold.as_ref().map(Spanned::span),
                    msg!("check-vote-threshold", value = other),
                    hint.or(Some(msg!("hint-vote-thresholds"))),
                );
                ok = false;
                Threshold::SimpleMajority
            }
        };
        if threshold == Threshold::MajorityOfElectorate && electorate.is_some() && !countable {
            cx.error(Some(s.electorate.span()), msg!("check-vote-majority-size"), None);
            ok = false;
        }
        let election = match (&s.seats, &s.candidates) {
            (None, None) => None,
            (Some(seats), Some(c)) => {
                let n = cx.number(seats);
                if n.is_some_and(|n| n < 1.0) {
                    cx.error(Some(seats.span()), msg!("check-vote-seats"), None);
                }
                let script = cx.script(c, &[]);
                match (n, script) {
                    (Some(n), Some(script)) if n >= 1.0 => Some((n as u64, script)),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            _ => {
                cx.error(Some(s.electorate.span()), msg!("check-vote-election"), None);
                ok = false;
                None
            }
        };
        let electorate = electorate?;
        if !ok {
            return None;
        }
        Some(Arc::new(VoteStep {
            electorate,
            per_household,
            quorum,
            min_votes,
            threshold,
            allow_change: s.allow_change.unwrap_or(true),
            origins: s.origins.unwrap_or_else(|| vec!["online".into(), "paper".into(), "meeting".into()]),
            election,
            close_when_all_voted: s.close_when_all_voted.unwrap_or(false),
        }))
    }
}

impl VoteStep {
    fn tally(&self, cx: &mut StepCx<'_>, st: &Ballots) -> String {
        let size = self.electorate.size(cx);
        let cast = st.ballots.len() as u64;
        let mut by_origin: BTreeMap<String, u64> = BTreeMap::new();
        for b in st.ballots.values() {
            *by_origin.entry(b.origin.clone()).or_default() += 1;
        }
        let needed_share = match (self.quorum, size) {
            (Some(q), Some(n)) => (q * n as f64).ceil() as u64,
            _ => 0,
        };
        let quorum_met = cast >= needed_share.max(self.min_votes.unwrap_or(0)) && cast > 0;
        let (outcome, result) = if let Some((seats, _)) = &self.election {
            let mut counts: BTreeMap<String, u64> = st.candidates.iter().map(|c| (c.clone(), 0)).collect();
            for b in st.ballots.values() {
                for c in &b.candidates {
                    *counts.entry(c.clone()).or_default() += 1;
                }
            }
            let mut ranked: Vec<(String, u64)> = counts.clone().into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let k = (*seats as usize).min(ranked.len());
            let tied = k > 0 && k < ranked.len() && ranked[k - 1].1 == ranked[k].1;
            let elected: Vec<String> = ranked.iter().take(k).filter(|(_, n)| *n > 0).map(|(c, _)| c.clone()).collect();
            let outcome = if !quorum_met {
                "no_quorum"
            } else if tied {
                "tied"
            } else {
                "elected"
            };
            (outcome, json!({ "counts": counts, "elected": if outcome == "elected" { elected } else { Vec::new() } }))
        } else {
            let count = |c: &str| st.ballots.values().filter(|b| b.choice.as_deref() == Some(c)).count() as u64;
            let (yes, no, abstain) = (count("for"), count("against"), count("abstain"));
            let passed = match self.threshold {
                Threshold::SimpleMajority => yes * 2 > cast,
                Threshold::TwoThirds => yes * 3 >= cast * 2 && cast > 0,
                Threshold::MajorityOfElectorate => size.is_some_and(|n| yes * 2 > n),
            };
            let outcome = if !quorum_met {
                "no_quorum"
            } else if passed {
                "passed"
            } else {
                "rejected"
            };
            (outcome, json!({ "for": yes, "against": no, "abstain": abstain }))
        };
        let mut record = json!({
            "outcome": outcome,
            "cast": cast,
            "electorate": size,
            "quorum_needed": needed_share.max(self.min_votes.unwrap_or(0)),
            "quorum_met": quorum_met,
            "by_origin": by_origin,
            "closed_at": cx.now,
        });
        if let (Value::Object(r), Value::Object(extra)) = (&mut record, result) {
            r.extend(extra);
        }
        cx.set(cx.step_id, record);
        outcome.to_owned()
    }
}

impl Step for VoteStep {
    fn outcomes(&self) -> Vec<String> {
        if self.election.is_some() {
            vec!["elected".into(), "tied".into(), "no_quorum".into()]
        } else {
            vec!["passed".into(), "rejected".into(), "no_quorum".into()]
        }
    }
    fn actions(&self) -> Vec<ActionSpec> {
        let mut vote = ActionSpec::new("vote", msg!("action-vote-vote"));
        vote = if self.election.is_some() {
            vote.field("candidates", FieldType::Strings, true, msg!("field-vote-candidates"))
        } else {
            vote.field(
                "choice",
                FieldType::OneOf(vec!["for".into(), "against".into(), "abstain".into()]),
                true,
                msg!("field-vote-choice"),
            )
        };
        vote = vote.field("origin", FieldType::OneOf(self.origins.clone()), false, msg!("field-vote-origin"));
        if self.per_household {
            vote = vote.field("household", FieldType::String, true, msg!("field-vote-household"));
        }
        vec![vote, ActionSpec::new("close", msg!("action-vote-close"))]
    }
    fn on_enter(&self, cx: &mut StepCx<'_>) -> Result<Flow, StepError> {
        let mut st = Ballots::default();
        if let Some((_, script)) = &self.election {
            let v = cx.eval(script)?;
            let list = yishi_core::script::from_dynamic(&v);
            st.candidates = list
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            if st.candidates.is_empty() {
                return Err(StepError::Failed(msg!("vote-no-candidates")));
            }
        }
        save(cx, &st);
        cx.notify(Notice {
            topic: "vote_opened".into(),
            to: self.electorate.recipients(),
            message: msg!("notice-vote-opened", step = cx.step_id),
            webhook: None,
            robot: None,
            body: Value::Null,
        });
        Ok(Flow::Wait)
    }
    fn on_action(&self, cx: &mut StepCx<'_>, action: &ActionInput<'_>) -> Result<Flow, StepError> {
        if action.name == "close" {
            let st: Ballots = load(cx);
            return Ok(Flow::Done(self.tally(cx, &st)));
        }
        if !self.electorate.admits(cx, action.subject) {
            return Err(StepError::refused(msg!(
                "vote-not-in-electorate",
                who = &action.subject.id,
                electorate = self.electorate.describe()
            )));
        }
        let key = if self.per_household {
            action.payload.get("household").and_then(Value::as_str).unwrap_or_default().to_owned()
        } else {
            action.subject.id.clone()
        };
        let cast = cx.state.get("ballots").and_then(Value::as_object);
        if !self.allow_change && cast.is_some_and(|b| b.contains_key(&key)) {
            return Err(StepError::refused(if self.per_household {
                msg!("vote-household-already", household = &key)
            } else {
                msg!("vote-already", who = &key)
            }));
        }
        let candidates: Vec<String> = action
            .payload
            .get("candidates")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if let Some((seats, _)) = &self.election {
            if candidates.len() as u64 > *seats {
                return Err(StepError::refused_field("candidates", msg!("vote-too-many-candidates", seats = *seats)));
            }
            let standing = cx.state.get("candidates").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            if let Some(c) = candidates.iter().find(|c| !standing.iter().any(|s| s.as_str() == Some(c.as_str()))) {
                return Err(StepError::refused_field("candidates", msg!("vote-not-a-candidate", candidate = c)));
            }
            let mut uniq = candidates.clone();
            uniq.sort();
            uniq.dedup();
            if uniq.len() != candidates.len() {
                return Err(StepError::refused_field("candidates", msg!("vote-candidate-twice")));
            }
        }
        let origin =
            action.payload.get("origin").and_then(Value::as_str).map_or_else(|| self.origins[0].clone(), str::to_owned);
        let ballot = Ballot {
            voter: action.subject.id.clone(),
            choice: action.payload.get("choice").and_then(Value::as_str).map(str::to_owned),
            candidates,
            origin,
            at: cx.now,
            entered_by: (action.actor.id != action.subject.id).then(|| action.actor.id.clone()),
        };
        // The ballot goes into the state as it is: the ballots cast before are neither read
        // nor written again (with fifty voters, that was most of the work of a vote).
        let cast = ballots_mut(&mut cx.state);
        cast.insert(key, serde_json::to_value(&ballot).expect("a ballot serialises"));
        let count = cast.len() as u64;
        if self.close_when_all_voted && self.electorate.size(cx).is_some_and(|n| count >= n) {
            let st: Ballots = load(cx);
            return Ok(Flow::Done(self.tally(cx, &st)));
        }
        Ok(Flow::Wait)
    }
    fn handles_deadline(&self) -> bool {
        true
    }
    fn on_timer(&self, cx: &mut StepCx<'_>, timer: &str) -> Result<Flow, StepError> {
        if timer == DEADLINE_TIMER {
            let st: Ballots = load(cx);
            return Ok(Flow::Done(self.tally(cx, &st)));
        }
        Ok(Flow::Wait)
    }
}
