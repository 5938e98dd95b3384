//! Stage 3, steps: each step's kind compiles its settings (a plugin or a Rhai kind), and the
//! step's roles and stage are ones the workflow declares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value;
use toml::Spanned;

use super::layers::Layered;
use super::parse::ParsedFile;
use crate::diag::{Code, Diagnostics, Origin, did_you_mean};
use crate::files::FileSet;
use crate::kind::{CompileCx, ParamValue, Registry, Settings, Step};
use crate::model::Text;
use crate::msg;
use crate::script::Sandbox;

/// What the steps stage needs from the rest of the check.
pub(super) struct StepInputs<'a> {
    pub files: &'a FileSet,
    pub registry: &'a Registry,
    pub sandbox: &'a Arc<Sandbox>,
    pub params: &'a IndexMap<String, ParamValue>,
}

/// Compiles every step's kind. `None` for a step whose kind is unknown or whose settings are
/// unusable (reported); the vector lines up with `layered.steps`.
pub(super) fn build(
    layered: &Layered<'_>,
    parsed: &[ParsedFile<'_>],
    inputs: &StepInputs<'_>,
    used_files: &mut BTreeSet<String>,
    lists: &mut BTreeMap<String, Arc<Value>>,
    diags: &mut Diagnostics,
) -> Vec<Option<Arc<dyn Step>>> {
    let mut out = Vec::with_capacity(layered.steps.len());
    for raw in &layered.steps {
        let p = &parsed[raw.file];
        let c = &raw.common;
        check_roles(c.roles.iter().flatten().chain(c.actors.values().flatten()), &layered.roles, p, diags);
        if let Some(stage) = &c.stage {
            check_stage(stage, &layered.stages, p, diags);
        }
        let kind = inputs
            .registry
            .get(c.kind.get_ref())
            .cloned()
            .or_else(|| crate::rhai_kind::find(inputs.files, &p.unit, c.kind.get_ref(), used_files));
        let Some(kind) = kind else {
            let hint = did_you_mean(c.kind.get_ref(), inputs.registry.names())
                .or_else(|| Some(msg!("hint-known-kinds", kinds = inputs.registry.names().collect::<Vec<_>>())));
            diags.push(
                Code::UnknownKind,
                &Origin::new(p.path, Some(c.kind.span())),
                Some(p.text),
                msg!("check-unknown-kind", kind = c.kind.get_ref()),
                hint,
            );
            out.push(None);
            continue;
        };
        let mut cx = CompileCx {
            step_id: c.id.get_ref(),
            file: p.path,
            text: p.text,
            files: inputs.files,
            sandbox: inputs.sandbox,
            params: inputs.params,
            roles: &layered.roles,
            diags,
            used_files,
            lists,
            outcomes_in_on: c.on.keys().map(|k| k.get_ref().clone()).collect(),
            has_deadline: c.deadline.is_some(),
        };
        out.push(kind.compile(Settings { table: raw.settings.clone() }, &mut cx));
    }
    out
}

fn check_roles<'r>(
    roles: impl Iterator<Item = &'r Spanned<String>>,
    declared: &IndexMap<String, Text>,
    p: &ParsedFile<'_>,
    diags: &mut Diagnostics,
) {
    for r in roles {
        if r.get_ref() == "*" || declared.contains_key(r.get_ref()) {
            continue;
        }
        let hint = did_you_mean(r.get_ref(), declared.keys().map(String::as_str))
            .or_else(|| Some(msg!("hint-declared-roles", roles = declared.keys().cloned().collect::<Vec<_>>())));
        diags.push(
            Code::UnknownRole,
            &Origin::new(p.path, Some(r.span())),
            Some(p.text),
            msg!("check-unknown-role", role = r.get_ref()),
            hint,
        );
    }
}

fn check_stage(
    stage: &Spanned<String>,
    declared: &IndexMap<String, Text>,
    p: &ParsedFile<'_>,
    diags: &mut Diagnostics,
) {
    if declared.contains_key(stage.get_ref()) {
        return;
    }
    let hint = did_you_mean(stage.get_ref(), declared.keys().map(String::as_str)).or_else(|| {
        Some(if declared.is_empty() {
            msg!("hint-declare-stages")
        } else {
            msg!("hint-declared-stages", stages = declared.keys().cloned().collect::<Vec<_>>())
        })
    });
    diags.push(
        Code::UnknownKey,
        &Origin::new(p.path, Some(stage.span())),
        Some(p.text),
        msg!("check-unknown-stage", stage = stage.get_ref()),
        hint,
    );
}
