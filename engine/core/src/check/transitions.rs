//! Stage 5, transitions: every `next`, `on` and branch names a step; every outcome a step can
//! have leads somewhere, and `on` names only outcomes the step has; every action has someone
//! who may perform it.

use std::sync::Arc;

use super::layers::Layered;
use super::parse::{ParsedFile, RawStep};
use super::scripts::StepScripts;
use crate::diag::{Code, Diagnostics, Origin, did_you_mean};
use crate::kind::{Control, Step};
use crate::msg;

/// Checks the transitions of every step that compiled.
pub(super) fn validate(
    layered: &Layered<'_>,
    parsed: &[ParsedFile<'_>],
    built: &[Option<Arc<dyn Step>>],
    scripts: &[StepScripts],
    broken: &[&str],
    diags: &mut Diagnostics,
) {
    let step_ids: Vec<&str> =
        layered.steps.iter().map(|s| s.common.id.get_ref().as_str()).chain(broken.iter().copied()).collect();
    for ((raw, behaviour), scripts) in layered.steps.iter().zip(built).zip(scripts) {
        let p = &parsed[raw.file];
        targets(raw, behaviour.as_deref(), p, &step_ids, diags);
        if let Some(b) = behaviour {
            outcomes(raw, b.as_ref(), scripts, p, diags);
            actors(raw, b.as_ref(), p, diags);
        }
    }
}

fn targets(raw: &RawStep<'_>, behaviour: Option<&dyn Step>, p: &ParsedFile<'_>, ids: &[&str], diags: &mut Diagnostics) {
    let c = &raw.common;
    let known = |t: &str| ids.contains(&t);
    let hint = |t: &str| did_you_mean(t, ids.iter().copied());
    if let Some(n) = c.next.as_ref().filter(|n| !known(n.get_ref())) {
        let origin = Origin::new(p.path, Some(n.span()));
        diags.push(
            Code::UnknownStep,
            &origin,
            Some(p.text),
            msg!("check-next-unknown", target = n.get_ref()),
            hint(n.get_ref()),
        );
    }
    for (outcome, target) in c.on.iter().filter(|(_, t)| !known(t.get_ref())) {
        diags.push(
            Code::UnknownStep,
            &Origin::new(p.path, Some(target.span())),
            Some(p.text),
            msg!("check-on-unknown", outcome = outcome.get_ref(), target = target.get_ref()),
            hint(target.get_ref()),
        );
    }
    for (t, span) in behaviour.map(Step::targets).unwrap_or_default() {
        if !known(&t) {
            diags.push(
                Code::UnknownStep,
                &Origin::new(p.path, span.or(Some(raw.span.clone()))),
                Some(p.text),
                msg!("check-setting-target-unknown", step = c.id.get_ref(), target = &t),
                hint(&t),
            );
        }
    }
}

fn outcomes(raw: &RawStep<'_>, b: &dyn Step, scripts: &StepScripts, p: &ParsedFile<'_>, diags: &mut Diagnostics) {
    let c = &raw.common;
    let mut outcomes = b.outcomes();
    if let Some(d) = &scripts.deadline
        && !b.handles_deadline()
    {
        outcomes.push(d.outcome.clone());
    }
    if c.guard.is_some() {
        outcomes.push("skipped".into());
    }
    outcomes.sort();
    outcomes.dedup();
    for o in c.on.keys().filter(|o| !outcomes.contains(o.get_ref())) {
        let hint = did_you_mean(o.get_ref(), outcomes.iter().map(String::as_str)).or_else(|| {
            Some(if outcomes.is_empty() {
                msg!("hint-no-outcomes")
            } else {
                msg!("hint-step-outcomes", outcomes = outcomes.clone())
            })
        });
        diags.push(
            Code::UnmappedOutcome,
            &Origin::new(p.path, Some(o.span())),
            Some(p.text),
            msg!("check-outcome-never", step = c.id.get_ref(), outcome = o.get_ref()),
            hint,
        );
    }
    if c.next.is_some() {
        return;
    }
    let is_split = matches!(b.control(), Control::Split(_));
    for o in outcomes.iter().filter(|o| !c.on.keys().any(|k| k.get_ref() == *o)) {
        diags.push(
            Code::UnmappedOutcome,
            &Origin::new(p.path, Some(c.id.span())),
            Some(p.text),
            msg!("check-outcome-nowhere", outcome = o, step = c.id.get_ref()),
            Some(if is_split { msg!("hint-split-next") } else { msg!("hint-add-on-or-next") }),
        );
    }
}

fn actors(raw: &RawStep<'_>, b: &dyn Step, p: &ParsedFile<'_>, diags: &mut Diagnostics) {
    let c = &raw.common;
    let actions = b.actions();
    for a in &actions {
        let has = c.actors.keys().any(|k| k.get_ref() == &a.name) || c.roles.as_ref().is_some_and(|r| !r.is_empty());
        if !has {
            diags.push(
                Code::NobodyMayAct,
                &Origin::new(p.path, Some(c.id.span())),
                Some(p.text),
                msg!("check-nobody-may-act", action = &a.name, step = c.id.get_ref()),
                Some(msg!("hint-add-roles", action = &a.name)),
            );
        }
    }
    for k in c.actors.keys().filter(|k| !actions.iter().any(|a| &a.name == k.get_ref())) {
        diags.push(
            Code::UnknownKey,
            &Origin::new(p.path, Some(k.span())),
            Some(p.text),
            msg!("check-no-such-action", step = c.id.get_ref(), action = k.get_ref()),
            did_you_mean(k.get_ref(), actions.iter().map(|a| a.name.as_str())),
        );
    }
}
