//! Stage 6, the graph of the compiled workflow: every step can be reached from the start, an end
//! can be reached from every step, and every join can fire.

use std::collections::VecDeque;

use super::parse::{ParsedFile, RawStep};
use crate::definition::StepDef;
use crate::diag::{Code, Diagnostics, Origin};
use crate::kind::{Control, JoinWait, Split, SplitMode};
use crate::msg;

fn successors(steps: &[StepDef], i: usize) -> Vec<usize> {
    let s = &steps[i];
    let mut out: Vec<&str> = s.on.values().map(String::as_str).collect();
    out.extend(s.next.as_deref());
    let targets = s.behaviour.targets();
    out.extend(targets.iter().map(|(t, _)| t.as_str()));
    if let Control::Split(sp) = s.behaviour.control() {
        out.push(&sp.join);
    }
    out.iter().filter_map(|id| steps.iter().position(|x| x.id == *id)).collect()
}

fn reach(steps: &[StepDef], from: &[usize], edges: &dyn Fn(usize) -> Vec<usize>, stop: Option<usize>) -> Vec<bool> {
    let mut seen = vec![false; steps.len()];
    let mut q: VecDeque<usize> = from.iter().copied().collect();
    for &f in from {
        seen[f] = true;
    }
    while let Some(i) = q.pop_front() {
        if Some(i) == stop {
            continue;
        }
        for j in edges(i) {
            if !seen[j] {
                seen[j] = true;
                q.push_back(j);
            }
        }
    }
    seen
}

/// Where step `i` is written, for diagnostics.
struct At<'x, 'a> {
    raw: &'x [RawStep<'a>],
    parsed: &'x [ParsedFile<'a>],
}

impl At<'_, '_> {
    fn of(&self, i: usize) -> (Origin, &str) {
        let r = &self.raw[i];
        (Origin::new(self.parsed[r.file].path, Some(r.common.id.span())), self.parsed[r.file].text)
    }
}

pub(super) fn check(
    steps: &[StepDef],
    start: usize,
    raw: &[RawStep<'_>],
    parsed: &[ParsedFile<'_>],
    diags: &mut Diagnostics,
) {
    let at = At { raw, parsed };
    let fwd = |i: usize| successors(steps, i);
    let reachable = reach(steps, &[start], &fwd, None);
    for (i, s) in steps.iter().enumerate().filter(|(i, _)| !reachable[*i]) {
        let (o, t) = at.of(i);
        diags.push(
            Code::Unreachable,
            &o,
            Some(t),
            msg!("check-unreachable", step = &s.id, start = &steps[start].id),
            Some(msg!("hint-unreachable")),
        );
    }
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for i in 0..steps.len() {
        for j in successors(steps, i) {
            preds[j].push(i);
        }
    }
    let ends: Vec<usize> =
        (0..steps.len()).filter(|&i| matches!(steps[i].behaviour.control(), Control::End { .. })).collect();
    let back = |i: usize| preds[i].clone();
    let can_end = reach(steps, &ends, &back, None);
    if ends.is_empty() {
        let (o, t) = at.of(start);
        diags.push(Code::NoWayOut, &o, Some(t), msg!("check-no-end"), Some(msg!("hint-add-end")));
    } else {
        for (i, s) in steps.iter().enumerate().filter(|(i, _)| reachable[*i] && !can_end[*i]) {
            let (o, t) = at.of(i);
            diags.push(Code::NoWayOut, &o, Some(t), msg!("check-no-way-out", step = &s.id), None);
        }
    }
    for (i, s) in steps.iter().enumerate() {
        match s.behaviour.control() {
            Control::Join(_) => {
                let named =
                    steps.iter().any(|x| matches!(x.behaviour.control(), Control::Split(sp) if sp.join == s.id));
                if !named {
                    let (o, t) = at.of(i);
                    diags.push(
                        Code::DeadJoin,
                        &o,
                        Some(t),
                        msg!("check-join-unnamed", join = &s.id),
                        Some(msg!("hint-name-join")),
                    );
                }
            }
            Control::Split(sp) => split(steps, i, sp, &at, diags),
            _ => {}
        }
    }
}

/// A split's join is a join, and enough of its branches reach it for it to fire.
fn split(steps: &[StepDef], i: usize, sp: &Split, at: &At<'_, '_>, diags: &mut Diagnostics) {
    let s = &steps[i];
    let Some(j) = steps.iter().position(|x| x.id == sp.join) else {
        return;
    };
    let (o, t) = at.of(i);
    let Control::Join(js) = steps[j].behaviour.control() else {
        let message = msg!("check-join-wrong-kind", split = &s.id, join = &sp.join, kind = &steps[j].kind);
        diags.push(Code::DeadJoin, &o, Some(t), message, None);
        return;
    };
    let branches: Vec<&str> = match &sp.mode {
        SplitMode::All(b) => b.iter().map(String::as_str).collect(),
        SplitMode::Some(b) => b.iter().map(|(x, _)| x.as_str()).collect(),
        SplitMode::Each { body, .. } => vec![body.as_str()],
    };
    let fwd = |i: usize| successors(steps, i);
    let mut reaching = 0u32;
    for b in &branches {
        let Some(bi) = steps.iter().position(|x| x.id == *b) else {
            continue;
        };
        if reach(steps, &[bi], &fwd, Some(j))[j] {
            reaching += 1;
        } else if js.wait == JoinWait::All {
            let message = msg!("check-branch-never-joins", branch = *b, split = &s.id, join = &sp.join);
            diags.push(Code::DeadJoin, &o, Some(t), message, None);
        }
    }
    if let (SplitMode::All(_), JoinWait::Count(n)) = (&sp.mode, js.wait)
        && n > reaching
    {
        let (jo, jt) = at.of(j);
        let message = msg!("check-join-waits-too-many", join = &sp.join, count = n, split = &s.id, reaching = reaching);
        diags.push(Code::DeadJoin, &jo, Some(jt), message, None);
    }
}
