//! Stage 4, the scripts every step may have: its `guard`, and its `deadline` (a duration, a
//! duration param, or a script computing one), compiled once here.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use toml::Spanned;

use super::layers::Layered;
use super::parse::ParsedFile;
use crate::definition::DeadlineDef;
use crate::diag::{Code, Diagnostics, Origin};
use crate::files::FileSet;
use crate::kind::{CompileCx, ParamValue, resolve_duration};
use crate::msg;
use crate::script::{Sandbox, Script};

/// A step's guard and deadline, compiled.
#[derive(Default)]
pub(super) struct StepScripts {
    pub guard: Option<Script>,
    pub deadline: Option<DeadlineDef>,
}

/// The guard and deadline of every step, in the order of `layered.steps`.
pub(super) fn compile(
    layered: &Layered<'_>,
    parsed: &[ParsedFile<'_>],
    sandbox: &Sandbox,
    params: &IndexMap<String, ParamValue>,
    diags: &mut Diagnostics,
) -> Vec<StepScripts> {
    let mut out = Vec::with_capacity(layered.steps.len());
    for raw in &layered.steps {
        let p = &parsed[raw.file];
        let c = &raw.common;
        let guard = c.guard.as_ref().and_then(|g| script(sandbox, p, g, diags));
        let deadline = c.deadline.as_ref().and_then(|d| deadline(d, p, sandbox, params, diags));
        out.push(StepScripts { guard, deadline });
    }
    out
}

fn deadline(
    d: &Spanned<crate::model::DeadlineDecl>,
    p: &ParsedFile<'_>,
    sandbox: &Sandbox,
    params: &IndexMap<String, ParamValue>,
    diags: &mut Diagnostics,
) -> Option<DeadlineDef> {
    let dd = d.get_ref();
    let at = |span| Origin::new(p.path, Some(span));
    let duration = |text: &Spanned<String>, diags: &mut Diagnostics| {
        resolve_duration(text.get_ref(), params)
            .map_err(|(code, message, hint)| diags.push(code, &at(text.span()), Some(p.text), message, hint))
            .ok()
    };
    let after = dd.after.as_ref().and_then(|a| duration(a, diags));
    let by_urgency =
        dd.by_urgency.iter().filter_map(|(k, v)| Some((k.get_ref().clone(), duration(v, diags)?))).collect();
    let compute = dd.compute.as_ref().and_then(|s| script(sandbox, p, s, diags));
    let neither = dd.after.is_none() && dd.compute.is_none() && dd.by_urgency.is_empty();
    if (dd.after.is_some() && dd.compute.is_some()) || neither {
        diags.push(
            Code::BadDuration,
            &at(d.span()),
            Some(p.text),
            msg!("check-deadline-one-of"),
            Some(msg!("hint-deadline-example")),
        );
        return None;
    }
    let remind_before = dd.remind_before.iter().filter_map(|r| duration(r, diags)).collect();
    Some(DeadlineDef {
        after,
        by_urgency,
        compute,
        outcome: dd.outcome.clone().unwrap_or_else(|| "expired".into()),
        remind_before,
        from_gathering: dd.from == crate::model::DeadlineFrom::Gathering,
    })
}

/// Compiles a script written in the step's file (its errors are mapped into the file).
fn script(sandbox: &Sandbox, p: &ParsedFile<'_>, src: &Spanned<String>, diags: &mut Diagnostics) -> Option<Script> {
    let (files, params, roles) = (FileSet::new(), IndexMap::new(), IndexMap::new());
    let (mut lists, mut used) = (BTreeMap::new(), BTreeSet::new());
    let mut cx = CompileCx {
        step_id: "",
        file: p.path,
        text: p.text,
        files: &files,
        sandbox,
        params: &params,
        roles: &roles,
        diags,
        used_files: &mut used,
        lists: &mut lists,
        outcomes_in_on: Vec::new(),
        has_deadline: false,
    };
    cx.script(src, &[])
}
