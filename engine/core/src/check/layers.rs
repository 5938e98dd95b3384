//! Stage 1, layering: a workflow's `extends` chain, folded from the root ancestor down to the
//! workflow itself: params change value (never type), roles, stages and labels add up, steps are
//! replaced by id, inserted before an inherited step, or removed.

use std::collections::HashMap;
use std::ops::Range;

use indexmap::IndexMap;
use toml::Spanned;

use super::parse::{ParsedFile, RawStep};
use crate::diag::{Code, Diagnostics, Origin, did_you_mean};
use crate::model::{ParamDecl, ParamType, Text};
use crate::msg;

/// A param after layering, with where its type and value were written.
pub(super) struct LayeredParam {
    pub decl: ParamDecl,
    pub ty_file: usize,
    pub value_file: usize,
    pub span: Range<usize>,
}

/// A workflow with its chain folded in: what the later stages check and compile.
pub(super) struct Layered<'a> {
    pub title: Option<Text>,
    pub description: Option<Text>,
    /// The first step, and the file that named it.
    pub start: Option<(Spanned<String>, usize)>,
    pub calendar: Option<(Spanned<String>, usize)>,
    pub params: IndexMap<String, LayeredParam>,
    pub roles: IndexMap<String, Text>,
    pub stages: IndexMap<String, Text>,
    pub labels: IndexMap<String, Text>,
    /// Data keys holding personal data, from every layer.
    pub personal: std::collections::BTreeSet<String>,
    /// The nearest layer's urgency levels, and its file.
    pub urgency: Option<(Spanned<crate::model::UrgencyDecl>, usize)>,
    /// The nearest layer's merge settings, and its file.
    pub merge: Option<(Spanned<crate::model::MergeDecl>, usize)>,
    /// The nearest layer's statistics settings, and its file.
    pub statistics: Option<(Spanned<crate::model::StatisticsDecl>, usize)>,
    pub steps: Vec<RawStep<'a>>,
}

/// The files of a workflow's `extends` chain, the workflow's own first.
pub(super) fn extends_chain(
    idx: usize,
    parsed: &[ParsedFile<'_>],
    by_key: &HashMap<String, usize>,
    diags: &mut Diagnostics,
) -> Option<Vec<usize>> {
    let mut chain = vec![idx];
    let mut cur = idx;
    while let Some(ext) = &parsed[cur].header.extends {
        let p = &parsed[cur];
        let origin = Origin::new(p.path, Some(ext.span()));
        let Some(&parent) = by_key.get(ext.get_ref().as_str()) else {
            let hint = did_you_mean(ext.get_ref(), by_key.keys().map(String::as_str))
                .or_else(|| (!ext.get_ref().contains('/')).then(|| msg!("hint-extends-form")));
            diags.push(
                Code::MissingParent,
                &origin,
                Some(p.text),
                msg!("check-extends-missing", name = ext.get_ref()),
                hint,
            );
            return None;
        };
        if chain.contains(&parent) {
            let names: Vec<String> = chain
                .iter()
                .chain(std::iter::once(&parent))
                .map(|&i| format!("{}/{}", parsed[i].unit, parsed[i].header.id))
                .collect();
            diags.push(
                Code::CircularExtends,
                &origin,
                Some(p.text),
                msg!("check-extends-circle", chain = names.join(" -> ")),
                None,
            );
            return None;
        }
        chain.push(parent);
        cur = parent;
    }
    Some(chain)
}

/// Folds the chain (root ancestor first) into one workflow.
pub(super) fn layer<'a>(chain: &[usize], parsed: &[ParsedFile<'a>], diags: &mut Diagnostics) -> Layered<'a> {
    let mut l = Layered {
        title: None,
        description: None,
        start: None,
        calendar: None,
        params: IndexMap::new(),
        roles: IndexMap::new(),
        stages: IndexMap::new(),
        labels: IndexMap::new(),
        personal: Default::default(),
        urgency: None,
        merge: None,
        statistics: None,
        steps: Vec::new(),
    };
    for &fi in chain.iter().rev() {
        let h = &parsed[fi].header;
        l.title = h.title.clone().or(l.title.take());
        l.description = h.description.clone().or(l.description.take());
        if let Some(s) = &h.start {
            l.start = Some((s.clone(), fi));
        }
        if let Some(c) = &h.calendar {
            l.calendar = Some((c.clone(), fi));
        }
        layer_params(&mut l, fi, parsed, diags);
        l.roles.extend(h.roles.iter().map(|(k, v)| (k.clone(), v.clone())));
        l.stages.extend(h.stages.iter().map(|(k, v)| (k.clone(), v.clone())));
        l.labels.extend(h.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        l.personal.extend(h.personal.iter().cloned());
        if let Some(u) = &h.urgency {
            l.urgency = Some((u.clone(), fi));
        }
        if let Some(m) = &h.merge {
            l.merge = Some((m.clone(), fi));
        }
        if let Some(s) = &h.statistics {
            l.statistics = Some((s.clone(), fi));
        }
        layer_steps(&mut l, fi, parsed, diags);
    }
    l
}

fn layer_params(l: &mut Layered<'_>, fi: usize, parsed: &[ParsedFile<'_>], diags: &mut Diagnostics) {
    let p = &parsed[fi];
    for (name, decl) in &p.header.params {
        let d = decl.get_ref();
        match l.params.get_mut(name.get_ref()) {
            Some(lp) => {
                if let Some(ty) = d.ty
                    && Some(ty) != lp.decl.ty
                {
                    diags.push(
                        Code::BadParam,
                        &Origin::new(p.path, Some(decl.span())),
                        Some(p.text),
                        msg!(
                            "check-param-type-changed",
                            name = name.get_ref(),
                            was = lp.decl.ty.map_or("untyped", ParamType::as_str),
                            file = parsed[lp.ty_file].path
                        ),
                        None,
                    );
                }
                if let Some(v) = &d.value {
                    lp.decl.value = Some(v.clone());
                    lp.value_file = fi;
                    lp.span = v.span();
                }
                if d.description.is_some() {
                    lp.decl.description = d.description.clone();
                }
                lp.decl.min = d.min.or(lp.decl.min);
                lp.decl.max = d.max.or(lp.decl.max);
            }
            None => {
                let span = d.value.as_ref().map_or(name.span(), Spanned::span);
                l.params.insert(
                    name.get_ref().clone(),
                    LayeredParam { decl: d.clone(), ty_file: fi, value_file: fi, span },
                );
            }
        }
    }
}

fn layer_steps<'a>(l: &mut Layered<'a>, fi: usize, parsed: &[ParsedFile<'a>], diags: &mut Diagnostics) {
    let p = &parsed[fi];
    let ids = |steps: &[RawStep<'_>]| steps.iter().map(|x| x.common.id.get_ref().clone()).collect::<Vec<_>>();
    for r in &p.header.remove {
        match l.steps.iter().position(|x| x.common.id.get_ref() == r.get_ref()) {
            Some(pos) => {
                l.steps.remove(pos);
            }
            None => {
                let known = ids(&l.steps);
                diags.push(
                    Code::BadOverride,
                    &Origin::new(p.path, Some(r.span())),
                    Some(p.text),
                    msg!("check-remove-unknown", id = r.get_ref()),
                    did_you_mean(r.get_ref(), known.iter().map(String::as_str)),
                );
            }
        }
    }
    for s in &p.steps {
        let mut s = s.clone();
        s.file = fi;
        let id = s.common.id.get_ref().clone();
        if let Some(pos) = l.steps.iter().position(|x| x.common.id.get_ref() == &id) {
            if fi == l.steps[pos].file {
                diags.push(
                    Code::Duplicate,
                    &Origin::new(p.path, Some(s.common.id.span())),
                    Some(p.text),
                    msg!("check-duplicate-step", id = &id),
                    None,
                );
                let first = Origin::new(p.path, Some(l.steps[pos].common.id.span()));
                diags.label(&first, Some(p.text), msg!("label-first-defined"));
                continue;
            }
            l.steps[pos] = s; // replace an inherited step
        } else if let Some(before) = s.common.insert_before.clone() {
            let Some(pos) = l.steps.iter().position(|x| x.common.id.get_ref() == before.get_ref()) else {
                let known = ids(&l.steps);
                diags.push(
                    Code::BadOverride,
                    &Origin::new(p.path, Some(before.span())),
                    Some(p.text),
                    msg!("check-insert-before-unknown", id = before.get_ref()),
                    did_you_mean(before.get_ref(), known.iter().map(String::as_str)),
                );
                continue;
            };
            redirect(l, fi, &before, &id);
            if s.common.next.is_none() {
                s.common.next = Some(before.clone());
            }
            l.steps.insert(pos, s);
        } else {
            l.steps.push(s);
        }
    }
}

/// Transitions (and the start) that led to `before` lead to the inserted step `id`.
fn redirect(l: &mut Layered<'_>, fi: usize, before: &Spanned<String>, id: &str) {
    for other in l.steps.iter_mut() {
        if other.common.next.as_ref().is_some_and(|n| n.get_ref() == before.get_ref()) {
            other.common.next = Some(Spanned::new(before.span(), id.to_owned()));
        }
        for v in other.common.on.values_mut() {
            if v.get_ref() == before.get_ref() {
                *v = Spanned::new(before.span(), id.to_owned());
            }
        }
    }
    if l.start.as_ref().is_some_and(|(s, _)| s.get_ref() == before.get_ref()) {
        l.start = Some((Spanned::new(before.span(), id.to_owned()), fi));
    }
}
