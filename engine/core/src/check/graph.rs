//! Graph checks on a compiled workflow: reachability, a way out from every step, joins that can fire.

use std::collections::VecDeque;

use super::{ParsedFile, RawStep};
use crate::definition::StepDef;
use crate::diag::{Code, Diagnostics, Origin};
use crate::kind::{Control, JoinWait, SplitMode};

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

pub(super) fn check(
    steps: &[StepDef],
    start: usize,
    raw: &[RawStep<'_>],
    parsed: &[ParsedFile<'_>],
    diags: &mut Diagnostics,
) {
    let at = |i: usize| {
        let r = &raw[i];
        (Origin::new(parsed[r.file].path, Some(r.common.id.span())), parsed[r.file].text)
    };
    let fwd = |i: usize| successors(steps, i);
    let reachable = reach(steps, &[start], &fwd, None);
    for (i, s) in steps.iter().enumerate() {
        if !reachable[i] {
            let (o, t) = at(i);
            diags.push(
                Code::Unreachable,
                &o,
                Some(t),
                format!("step `{}` can never be reached from the start (`{}`)", s.id, steps[start].id),
                Some("lead to it with `next` or `on` from another step, or remove it".into()),
            );
        }
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
        let (o, t) = at(start);
        diags.push(
            Code::NoWayOut,
            &o,
            Some(t),
            "the workflow has no `end` step, so no case can ever finish",
            Some("add a step with `kind = \"end\"`".into()),
        );
    } else {
        for (i, s) in steps.iter().enumerate() {
            if reachable[i] && !can_end[i] {
                let (o, t) = at(i);
                diags.push(
                    Code::NoWayOut,
                    &o,
                    Some(t),
                    format!("no end can be reached from step `{}`: a case that gets here can never finish", s.id),
                    None,
                );
            }
        }
    }
    // Joins.
    for (i, s) in steps.iter().enumerate() {
        if let Control::Join(_) = s.behaviour.control() {
            let named = steps.iter().any(|x| matches!(x.behaviour.control(), Control::Split(sp) if sp.join == s.id));
            if !named {
                let (o, t) = at(i);
                diags.push(Code::DeadJoin, &o, Some(t), format!("join `{}` is not named by any split (`parallel`, `inclusive` or `foreach`), so it can never fire", s.id), Some("name it in the split: `join = \"...\"`".into()));
            }
        }
        let Control::Split(sp) = s.behaviour.control() else {
            continue;
        };
        let Some(j) = steps.iter().position(|x| x.id == sp.join) else {
            continue;
        };
        let (o, t) = at(i);
        let Control::Join(js) = steps[j].behaviour.control() else {
            diags.push(
                Code::DeadJoin,
                &o,
                Some(t),
                format!(
                    "split `{}` names `{}` as its join, but that step is of kind `{}`, not `join`",
                    s.id, sp.join, steps[j].kind
                ),
                None,
            );
            continue;
        };
        let branches: Vec<&str> = match &sp.mode {
            SplitMode::All(b) => b.iter().map(String::as_str).collect(),
            SplitMode::Some(b) => b.iter().map(|(x, _)| x.as_str()).collect(),
            SplitMode::Each { body, .. } => vec![body.as_str()],
        };
        let mut reaching = 0u32;
        for b in &branches {
            let Some(bi) = steps.iter().position(|x| x.id == *b) else {
                continue;
            };
            let r = reach(steps, &[bi], &fwd, Some(j));
            if r[j] {
                reaching += 1;
            } else if js.wait == JoinWait::All {
                diags.push(
                    Code::DeadJoin,
                    &o,
                    Some(t),
                    format!(
                        "branch `{b}` of split `{}` never reaches its join `{}`, so the join can never fire",
                        s.id, sp.join
                    ),
                    None,
                );
            }
        }
        if let (SplitMode::All(_), JoinWait::Count(n)) = (&sp.mode, js.wait)
            && n > reaching
        {
            let (jo, jt) = at(j);
            diags.push(
                Code::DeadJoin,
                &jo,
                Some(jt),
                format!(
                    "join `{}` waits for {n} branches, but split `{}` has only {reaching} that reach it",
                    sp.join, s.id
                ),
                None,
            );
        }
    }
}
