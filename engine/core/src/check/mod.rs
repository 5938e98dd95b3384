//! The checker: files -> authored model (with spans) -> layered effective workflows ->
//! compiled [`Definition`]s, reporting every problem found on the way. Each workflow goes
//! through named stages, each in its own module:
//!
//! 0. [`parse`]: files into headers and raw steps;
//! 1. [`layers`]: the `extends` chain folded into one workflow;
//! 2. [`params`]: param types and values;
//! 3. [`steps`]: each step's kind compiles its settings; roles and stages are declared;
//! 4. [`scripts`]: guards and deadlines;
//! 5. [`transitions`]: targets, outcomes and who may act;
//! 6. [`graph`]: reachability, a way out, joins that can fire.

mod graph;
mod layers;
mod params;
mod parse;
mod scripts;
mod steps;
mod transitions;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toml::Spanned;

pub(crate) use self::parse::de_error as de_error_message;
pub use self::parse::parse_typed;
use self::parse::{ParsedFile, RawStep, parse_workflow};
use crate::calendar::{Calendar, CalendarFile};
use crate::definition::{Definition, StepDef};
use crate::diag::{Code, Diagnostic, Diagnostics, Origin, did_you_mean};
use crate::duration::Duration;
use crate::files::{FileSet, parent_dir, resolve_reference};
use crate::kind::{ParamValue, Registry, devalue_to_json};
use crate::model::{Text, UnitFile};
use crate::msg;
use crate::script::Sandbox;

/// Folder names inside a unit that hold data, not workflows or child units.
pub const RESERVED_DIRS: &[&str] = &["lists", "scripts", "scenarios", "kinds", "calendars", "data"];

/// A unit of the hierarchy: a folder under `workflows/` (district, street, community ...).
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Unit {
    /// Folder path, e.g. `pingcheng/yongtai/liuhangli`.
    pub path: String,
    pub name: String,
    pub level: Option<String>,
    pub description: Option<String>,
    /// The nearest enclosing unit.
    pub parent: Option<String>,
    /// Workflow ids defined here.
    pub workflows: Vec<String>,
}

/// Everything a check produced: the units, the workflows that checked clean, and diagnostics.
#[derive(Debug, Default)]
pub struct Catalog {
    pub units: IndexMap<String, Unit>,
    /// Keyed by `unit/id`. Only workflows without errors are here.
    pub definitions: IndexMap<String, Arc<Definition>>,
    /// `unit/id` of workflows that have errors, with the files involved.
    pub failed: IndexMap<String, Vec<String>>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Catalog {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
    pub fn get(&self, unit: &str, id: &str) -> Option<&Arc<Definition>> {
        self.definitions.get(&format!("{unit}/{id}"))
    }
}

/// What every workflow's check shares.
struct Shared<'a> {
    files: &'a FileSet,
    registry: &'a Registry,
    sandbox: &'a Arc<Sandbox>,
    /// Parsed list files, by path.
    lists: BTreeMap<String, Arc<Value>>,
}

/// Checks every workflow in `files`.
/// Warnings (never errors) for workflows whose longest deadline in working days, counted
/// from `today_ms`, runs into a year their calendar has no holidays for: the due times would
/// ignore that year's holidays and make-up days. The run-time counterpart is the `noted` event.
pub fn calendar_warnings(catalog: &Catalog, today_ms: i64) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for def in catalog.definitions.values() {
        if def.is_abstract || def.calendar.covers.is_none() {
            continue;
        }
        let from_params = def.params.values().filter_map(|p| p.value.as_str().and_then(|t| Duration::parse(t).ok()));
        let from_steps = def.steps.iter().filter_map(|s| s.deadline.as_ref().and_then(|d| d.after));
        let longest = from_params
            .chain(from_steps)
            .filter_map(|d| match d {
                Duration::WorkingDays(n) => Some(n),
                Duration::Seconds(_) => None,
            })
            .max();
        let Some(n) = longest else { continue };
        let (_, uncovered) = def.calendar.add_checked(today_ms, Duration::WorkingDays(n));
        if let Some(year) = uncovered {
            let calendar = def.calendar.files.first().cloned().unwrap_or_default();
            let mut d = Diagnostics::new();
            d.warn(
                Code::CalendarUncovered,
                &Origin::file(&def.file),
                None,
                msg!(
                    "check-calendar-uncovered",
                    duration = Duration::WorkingDays(n).to_string(),
                    year = i64::from(year),
                    calendar = calendar
                ),
                Some(msg!("hint-calendar-uncovered", year = i64::from(year))),
            );
            out.extend(d.into_sorted());
        }
    }
    out
}

pub fn check(files: &FileSet, registry: &Registry, sandbox: &Arc<Sandbox>) -> Catalog {
    check_with(files, registry, sandbox, true)
}

/// Checks the files of one stored version, to run it again: what it asks of other workflows
/// (a sitting workflow in its unit) was checked when it was activated, with the whole folder.
pub fn check_alone(files: &FileSet, registry: &Registry, sandbox: &Arc<Sandbox>) -> Catalog {
    check_with(files, registry, sandbox, false)
}

fn check_with(files: &FileSet, registry: &Registry, sandbox: &Arc<Sandbox>, whole: bool) -> Catalog {
    let mut diags = Diagnostics::new();
    for (path, why) in files.unreadable() {
        diags.push(Code::Unreadable, &Origin::file(path), None, msg!("check-unreadable", why = why.clone()), None);
    }
    let (units, workflow_paths) = classify(files, &mut diags);

    let mut parsed: Vec<ParsedFile<'_>> = Vec::new();
    let mut unreadable_workflows = Vec::new();
    for (path, text) in workflow_paths {
        match parse_workflow(path, text, &mut diags) {
            Some(p) => parsed.push(p),
            // Named by its file: without a readable header there is no id.
            None => unreadable_workflows.push(path.to_owned()),
        }
    }
    let mut catalog = Catalog { units, ..Catalog::default() };
    let (by_key, duplicated) = index_workflows(&parsed, &mut catalog.units, &mut diags);
    for path in unreadable_workflows {
        catalog.failed.insert(path.trim_end_matches(".toml").to_owned(), vec![path]);
    }
    let mut keys: Vec<(&String, &usize)> = by_key.iter().collect();
    keys.sort();
    let mut shared = Shared { files, registry, sandbox, lists: BTreeMap::new() };
    for (key, &idx) in keys {
        let mut local = Diagnostics::new();
        let mut tainted = false;
        let def = layers::extends_chain(idx, &parsed, &by_key, &mut local).and_then(|chain| {
            tainted = chain.iter().any(|&i| parsed[i].header_errors);
            let clean = chain.iter().all(|&i| parsed[i].clean);
            clean.then(|| compile(key, &chain, &parsed, &mut shared, &mut local)).flatten()
        });
        // Two files with one id: neither runs (which one the admin meant is not ours to guess).
        let failed = local.has_errors() || tainted || duplicated.contains_key(key);
        diags.extend(local);
        match def {
            Some(d) if !failed => {
                catalog.definitions.insert(key.clone(), Arc::new(d));
            }
            _ => {
                let mut chain_files = vec![parsed[idx].path.to_owned()];
                let mut cur = idx;
                while let Some(p) = parsed[cur].header.extends.as_ref().and_then(|e| by_key.get(e.get_ref())) {
                    if chain_files.iter().any(|f| f == parsed[*p].path) {
                        break;
                    }
                    chain_files.push(parsed[*p].path.to_owned());
                    cur = *p;
                }
                catalog.failed.insert(key.clone(), chain_files);
            }
        }
    }
    if whole {
        gatherings(&mut catalog, files, &mut diags);
    }
    catalog.diagnostics = diags.into_sorted();
    catalog
}

/// Every step that waits for gatherings (sittings) names a workflow of its own unit whose
/// cases host them (`Y0116`); a workflow that waits on one that failed to check fails too.
fn gatherings(catalog: &mut Catalog, files: &FileSet, diags: &mut Diagnostics) {
    let mut broken = Vec::new();
    for (key, def) in &catalog.definitions {
        if def.is_abstract {
            continue;
        }
        for step in &def.steps {
            let Some(a) = step.behaviour.awaits() else { continue };
            let host = format!("{}/{}", def.unit, a.host);
            if catalog.failed.contains_key(&host) {
                broken.push(key.clone());
                continue;
            }
            let hosts = catalog
                .definitions
                .get(&host)
                .is_some_and(|h| !h.is_abstract && h.steps.iter().any(|s| s.behaviour.hosts().is_some()));
            if hosts {
                continue;
            }
            let text = files.get(&step.file);
            let span = text.and_then(|t| setting_span(t, &step.id, &a.host));
            let candidates: Vec<&str> = catalog
                .definitions
                .values()
                .filter(|h| h.unit == def.unit && h.steps.iter().any(|s| s.behaviour.hosts().is_some()))
                .map(|h| h.id.as_str())
                .collect();
            let hint = crate::diag::did_you_mean(&a.host, candidates.iter().copied())
                .or_else(|| Some(msg!("hint-gathering-workflow", unit = &def.unit)));
            let message = msg!("check-no-gathering-workflow", step = &step.id, workflow = &host);
            diags.push(Code::NoGatheringWorkflow, &Origin::new(step.file.clone(), span), text, message, hint);
            broken.push(key.clone());
        }
    }
    for key in broken {
        if let Some(def) = catalog.definitions.shift_remove(&key) {
            catalog.failed.insert(key, vec![def.file.clone()]);
        }
    }
}

/// Where `value` is written as a setting of step `step` in `text` (a best guess for a span).
fn setting_span(text: &str, step: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let at = text.find(&format!("id = \"{step}\""))?;
    let rel = text[at..].find(&format!("\"{value}\""))?;
    Some(at + rel + 1..at + rel + 1 + value.len())
}

/// Sorts files into units (folders with `unit.toml` or workflows) and workflow files.
fn classify<'f>(files: &'f FileSet, diags: &mut Diagnostics) -> (IndexMap<String, Unit>, Vec<(&'f str, &'f str)>) {
    let mut units: IndexMap<String, Unit> = IndexMap::new();
    let mut workflow_paths = Vec::new();
    for (path, text) in files.iter() {
        let dir = parent_dir(path);
        if dir.split('/').any(|c| RESERVED_DIRS.contains(&c)) || !path.ends_with(".toml") {
            continue;
        }
        let name = &path[dir.len() + usize::from(!dir.is_empty())..];
        if dir.is_empty() {
            diags.push(
                Code::WrongType,
                &Origin::file(path),
                None,
                msg!("check-file-outside-unit"),
                Some(msg!("hint-move-into-unit")),
            );
            continue;
        }
        if name == "unit.toml" {
            let unit = parse_typed::<UnitFile>(path, text, diags).unwrap_or_else(|| UnitFile {
                name: dir.rsplit('/').next().unwrap_or(dir).into(),
                ..UnitFile::default()
            });
            let e = units.entry(dir.to_owned()).or_insert_with(|| empty_unit(dir));
            e.name = unit.name;
            e.level = unit.level;
            e.description = unit.description;
        } else {
            units.entry(dir.to_owned()).or_insert_with(|| empty_unit(dir));
            workflow_paths.push((path, text));
        }
    }
    units.sort_keys();
    let unit_paths: Vec<String> = units.keys().cloned().collect();
    for u in units.values_mut() {
        let mut p = parent_dir(&u.path);
        while !p.is_empty() {
            if unit_paths.iter().any(|x| x == p) {
                u.parent = Some(p.to_owned());
                break;
            }
            p = parent_dir(p);
        }
    }
    (units, workflow_paths)
}

/// Workflows by `unit/id`; a second workflow with the same key is reported and left out.
fn index_workflows(
    parsed: &[ParsedFile<'_>],
    units: &mut IndexMap<String, Unit>,
    diags: &mut Diagnostics,
) -> (HashMap<String, usize>, BTreeMap<String, Vec<String>>) {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut duplicated: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, p) in parsed.iter().enumerate() {
        let key = format!("{}/{}", p.unit, p.header.id);
        if let Some(&other) = by_key.get(&key) {
            diags.push(
                Code::Duplicate,
                &Origin::file(p.path),
                None,
                msg!("check-duplicate-workflow", id = &p.header.id, other = parsed[other].path),
                None,
            );
            duplicated.entry(key).or_insert_with(|| vec![parsed[other].path.to_owned()]).push(p.path.to_owned());
            continue;
        }
        by_key.insert(key, i);
        if let Some(u) = units.get_mut(&p.unit) {
            u.workflows.push(p.header.id.clone());
        }
    }
    (by_key, duplicated)
}

fn empty_unit(dir: &str) -> Unit {
    Unit {
        path: dir.to_owned(),
        name: dir.rsplit('/').next().unwrap_or(dir).to_owned(),
        level: None,
        description: None,
        parent: None,
        workflows: Vec::new(),
    }
}

/// One workflow through every stage; `None` when it has errors (reported).
fn compile(
    key: &str,
    chain: &[usize],
    parsed: &[ParsedFile<'_>],
    shared: &mut Shared<'_>,
    diags: &mut Diagnostics,
) -> Option<Definition> {
    let own = &parsed[chain[0]];
    let layered = layers::layer(chain, parsed, diags);
    if own.steps.is_empty() && chain.len() == 1 {
        diags.push(
            Code::MissingKey,
            &Origin::file(own.path),
            None,
            msg!("check-no-steps"),
            Some(msg!("hint-add-steps")),
        );
        return None;
    }
    check_texts(&layered, parsed, diags);
    let param_values = params::typecheck(&layered.params, parsed, diags);
    let mut used_files: BTreeSet<String> = chain.iter().map(|&i| parsed[i].path.to_owned()).collect();
    let cal = calendar(layered.calendar.as_ref(), parsed, shared.files, &mut used_files, diags);
    let inputs = steps::StepInputs {
        files: shared.files,
        registry: shared.registry,
        sandbox: shared.sandbox,
        params: &param_values,
    };
    let built = steps::build(&layered, parsed, &inputs, &mut used_files, &mut shared.lists, diags);
    let scripts = scripts::compile(&layered, parsed, shared.sandbox, &param_values, diags);
    let broken: Vec<&str> = chain.iter().flat_map(|&i| parsed[i].broken.iter().map(String::as_str)).collect();
    transitions::validate(&layered, parsed, &built, &scripts, &broken, diags);
    if built.iter().any(Option::is_none) || !broken.is_empty() || diags.has_errors() {
        return None;
    }
    let compiled: Vec<StepDef> = layered
        .steps
        .iter()
        .zip(built)
        .zip(scripts)
        .map(|((raw, behaviour), s)| step_def(raw, parsed, behaviour.expect("checked above"), s))
        .collect();
    let index: HashMap<String, usize> = compiled.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    let start = match &layered.start {
        None => 0,
        Some((s, fi)) => match index.get(s.get_ref()) {
            Some(&i) => i,
            None => {
                let p = &parsed[*fi];
                diags.push(
                    Code::UnknownStep,
                    &Origin::new(p.path, Some(s.span())),
                    Some(p.text),
                    msg!("check-start-unknown", target = s.get_ref()),
                    did_you_mean(s.get_ref(), index.keys().map(String::as_str)),
                );
                return None;
            }
        },
    };
    let urgency = urgency(&layered, parsed, &compiled, &index, start, diags);
    let merge = merge(&layered, parsed, &compiled, &index, start, diags);
    let statistics = statistics(&layered, parsed, &index, &param_values, diags);
    graph::check(&compiled, start, &layered.steps, parsed, diags);
    if diags.has_errors() {
        return None;
    }
    let urgency = urgency.map(|u| u.expect("checked above"));
    let extras = Extras { urgency, merge, statistics };
    Some(assemble(key, chain, parsed, layered, param_values, compiled, index, start, cal, used_files, shared, extras))
}

/// The workflow's urgency levels, checked: level ids, the default, the steps where a level may
/// change and the roles that may change it. `None` when the workflow declares none; `Some(None)`
/// when the declaration has errors (reported).
fn urgency(
    layered: &layers::Layered<'_>,
    parsed: &[ParsedFile<'_>],
    steps: &[StepDef],
    index: &HashMap<String, usize>,
    start: usize,
    diags: &mut Diagnostics,
) -> Option<Option<crate::definition::UrgencyDef>> {
    let (decl, fi) = layered.urgency.as_ref()?;
    let p = &parsed[*fi];
    let u = decl.get_ref();
    let errors_before = diags.error_count();
    if u.levels.is_empty() {
        let message = msg!("check-urgency-no-levels");
        diags.push(Code::MissingKey, &Origin::new(p.path, Some(decl.span())), Some(p.text), message, None);
        return Some(None);
    }
    for level in u.levels.keys() {
        if !crate::model::valid_id(level) {
            let message = msg!("check-urgency-level-id", level = level);
            diags.push(Code::WrongType, &Origin::new(p.path, Some(decl.span())), Some(p.text), message, None);
        }
    }
    let levels = || u.levels.keys().map(String::as_str);
    let default = match &u.default {
        Some(d) if !u.levels.contains_key(d.get_ref()) => {
            let message = msg!(
                "check-urgency-unknown-level",
                level = d.get_ref(),
                levels = levels().collect::<Vec<_>>().join(", ")
            );
            let hint = did_you_mean(d.get_ref(), levels());
            diags.push(Code::UnknownLevel, &Origin::new(p.path, Some(d.span())), Some(p.text), message, hint);
            String::new()
        }
        Some(d) => d.get_ref().clone(),
        None => u.levels.keys().last().cloned().unwrap_or_default(),
    };
    let change_at = named_steps(&u.change_at, "change_at", p, steps, index, start, diags);
    let change_roles =
        named_roles(&u.change_roles, "change_roles", p, layered, &steps_named(&change_at, steps, index), diags);
    // Deadlines per level name levels the workflow has.
    for raw in &layered.steps {
        let rp = &parsed[raw.file];
        for level in raw.common.deadline.iter().flat_map(|d| d.get_ref().by_urgency.keys()) {
            if !u.levels.contains_key(level.get_ref()) {
                let message = msg!(
                    "check-urgency-unknown-level",
                    level = level.get_ref(),
                    levels = levels().collect::<Vec<_>>().join(", ")
                );
                let hint = did_you_mean(level.get_ref(), levels());
                diags.push(Code::UnknownLevel, &Origin::new(rp.path, Some(level.span())), Some(rp.text), message, hint);
            }
        }
    }
    if diags.error_count() > errors_before {
        return Some(None);
    }
    Some(Some(crate::definition::UrgencyDef { levels: u.levels.clone(), default, change_at, change_roles }))
}

/// Steps named in a header table (`change_at`, `[merge] at`), checked; the first step when none.
fn named_steps(
    names: &[Spanned<String>],
    key: &str,
    p: &ParsedFile<'_>,
    steps: &[StepDef],
    index: &HashMap<String, usize>,
    start: usize,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let mut out = known_steps(names, key, p, index, diags);
    if names.is_empty() {
        out.push(steps[start].id.clone());
    }
    out
}

/// The steps of `names` that exist; each other one reported.
fn known_steps(
    names: &[Spanned<String>],
    key: &str,
    p: &ParsedFile<'_>,
    index: &HashMap<String, usize>,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let mut out = Vec::new();
    for s in names {
        if index.contains_key(s.get_ref()) {
            out.push(s.get_ref().clone());
        } else {
            diags.push(
                Code::UnknownStep,
                &Origin::new(p.path, Some(s.span())),
                Some(p.text),
                msg!("check-header-unknown-step", key = key, step = s.get_ref()),
                did_you_mean(s.get_ref(), index.keys().map(String::as_str)),
            );
        }
    }
    out
}

/// Roles named in a header table (`change_roles`, `[merge] roles`), checked; whoever may act
/// at `at` when none.
fn named_roles(
    names: &[Spanned<String>],
    key: &str,
    p: &ParsedFile<'_>,
    layered: &layers::Layered<'_>,
    at: &[&StepDef],
    diags: &mut Diagnostics,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in names {
        if r.get_ref() == "*" || layered.roles.contains_key(r.get_ref()) {
            out.push(r.get_ref().clone());
        } else {
            diags.push(
                Code::UnknownRole,
                &Origin::new(p.path, Some(r.span())),
                Some(p.text),
                msg!("check-header-unknown-role", key = key, role = r.get_ref()),
                did_you_mean(r.get_ref(), layered.roles.keys().map(String::as_str)),
            );
        }
    }
    if names.is_empty() {
        for r in at.iter().flat_map(|s| s.roles.iter()) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
    }
    out
}

/// The compiled steps named `ids`.
fn steps_named<'s>(ids: &[String], steps: &'s [StepDef], index: &HashMap<String, usize>) -> Vec<&'s StepDef> {
    ids.iter().filter_map(|id| index.get(id).map(|&i| &steps[i])).collect()
}

/// The workflow's merge settings, checked (as [`urgency`]).
fn merge(
    layered: &layers::Layered<'_>,
    parsed: &[ParsedFile<'_>],
    steps: &[StepDef],
    index: &HashMap<String, usize>,
    start: usize,
    diags: &mut Diagnostics,
) -> Option<crate::definition::MergeDef> {
    let (decl, fi) = layered.merge.as_ref()?;
    let p = &parsed[*fi];
    let m = decl.get_ref();
    let at = named_steps(&m.at, "at", p, steps, index, start, diags);
    let roles = named_roles(&m.roles, "roles", p, layered, &steps_named(&at, steps, index), diags);
    Some(crate::definition::MergeDef { at, roles, people: m.people.clone() })
}

/// The workflow's statistics settings, checked: steps exist, thresholds are numbers or number
/// params. The defaults when it declares none.
fn statistics(
    layered: &layers::Layered<'_>,
    parsed: &[ParsedFile<'_>],
    index: &HashMap<String, usize>,
    params: &IndexMap<String, ParamValue>,
    diags: &mut Diagnostics,
) -> crate::definition::StatisticsDef {
    let mut out = crate::definition::StatisticsDef::default();
    let Some((decl, fi)) = layered.statistics.as_ref() else { return out };
    let p = &parsed[*fi];
    let d = decl.get_ref();
    out.responded = known_steps(&d.responded, "responded", p, index, diags);
    out.follow_up = known_steps(&d.follow_up, "follow_up", p, index, diags);
    if let Some(r) = &d.rating {
        out.rating = r.clone();
    }
    let mut number = |v: &Option<Spanned<crate::kind::NumberOrParam>>, default: f64| match v.as_ref() {
        None => default,
        Some(v) => match v.get_ref() {
            crate::kind::NumberOrParam::Number(n) => *n,
            crate::kind::NumberOrParam::Param(name) => match params.get(name).and_then(|pv| pv.value.as_f64()) {
                Some(n) => n,
                None => {
                    let hint = did_you_mean(name, params.keys().map(String::as_str));
                    let message = msg!("check-not-number-or-param", name = name);
                    diags.push(Code::BadParam, &Origin::new(p.path, Some(v.span())), Some(p.text), message, hint);
                    default
                }
            },
        },
    };
    out.resolved_at_least = number(&d.resolved_at_least, 3.0);
    out.satisfied_at_least = number(&d.satisfied_at_least, 4.0);
    out
}

/// Texts in several languages name only languages the catalog speaks.
fn check_texts(layered: &layers::Layered<'_>, parsed: &[ParsedFile<'_>], diags: &mut Diagnostics) {
    let mut texts: Vec<(&Text, usize)> = Vec::new();
    for raw in &layered.steps {
        texts.extend(raw.common.title.iter().chain(raw.common.description.iter()).map(|t| (t, raw.file)));
    }
    for (t, file) in texts {
        for lang in t.unknown_languages() {
            let p = &parsed[file];
            diags.warn(Code::UnknownKey, &Origin::file(p.path), None, msg!("check-text-language", lang = lang), None);
        }
    }
}

fn step_def(
    raw: &RawStep<'_>,
    parsed: &[ParsedFile<'_>],
    behaviour: Arc<dyn crate::kind::Step>,
    s: scripts::StepScripts,
) -> StepDef {
    let c = &raw.common;
    StepDef {
        id: c.id.get_ref().clone(),
        kind: c.kind.get_ref().clone(),
        title: c.title.clone(),
        stage: c.stage.as_ref().map(|s| s.get_ref().clone()),
        actions: behaviour.actions(),
        behaviour,
        next: c.next.as_ref().map(|n| n.get_ref().clone()),
        on: c.on.iter().map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone())).collect(),
        guard: s.guard,
        deadline: s.deadline,
        roles: c.roles.iter().flatten().map(|r| r.get_ref().clone()).collect(),
        actors: c
            .actors
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.iter().map(|r| r.get_ref().clone()).collect()))
            .collect(),
        file: parsed[raw.file].path.to_owned(),
    }
}

/// The workflow's calendar file, read, with the files it extends (a default calendar when it
/// names none or has problems).
fn calendar(
    named: Option<&(Spanned<String>, usize)>,
    parsed: &[ParsedFile<'_>],
    files: &FileSet,
    used_files: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
) -> Calendar {
    let Some((c, fi)) = named else { return Calendar::default() };
    let p = &parsed[*fi];
    let origin = Origin::new(p.path, Some(c.span()));
    match resolve_reference(parent_dir(p.path), c.get_ref()) {
        Ok(key) if files.get(&key).is_some() => calendar_file(&key, files, used_files, diags, 0),
        Ok(_) => {
            let message = msg!("check-calendar-missing", file = c.get_ref());
            diags.push(Code::MissingFile, &origin, Some(p.text), message, None);
            Calendar::default()
        }
        Err(e) => {
            diags.push(Code::EscapingPath, &origin, Some(p.text), e.message(), None);
            Calendar::default()
        }
    }
}

/// Calendar file `key` of `files`, laid over the calendars it extends; its problems when it has
/// any.
pub fn read_calendar(files: &FileSet, key: &str) -> Result<Calendar, Vec<Diagnostic>> {
    let mut diags = Diagnostics::new();
    let cal = calendar_file(key, files, &mut BTreeSet::new(), &mut diags, 0);
    if diags.has_errors() { Err(diags.into_sorted()) } else { Ok(cal) }
}

/// Calendar file `key` laid over the calendar it extends.
fn calendar_file(
    key: &str,
    files: &FileSet,
    used_files: &mut BTreeSet<String>,
    diags: &mut Diagnostics,
    depth: usize,
) -> Calendar {
    let text = files.get(key).unwrap_or_default();
    used_files.insert(key.to_owned());
    let Some(file) = parse_typed::<CalendarFile>(key, text, diags) else { return Calendar::default() };
    let base = match &file.extends {
        None => Calendar::default(),
        Some(_) if depth > 8 => {
            diags.push(Code::CircularExtends, &Origin::file(key), None, msg!("check-calendar-circle"), None);
            Calendar::default()
        }
        Some(ext) => match resolve_reference(parent_dir(key), ext) {
            Ok(k) if files.get(&k).is_some() => calendar_file(&k, files, used_files, diags, depth + 1),
            Ok(_) => {
                let message = msg!("check-calendar-missing", file = ext);
                diags.push(Code::MissingFile, &Origin::file(key), None, message, None);
                Calendar::default()
            }
            Err(e) => {
                diags.push(Code::EscapingPath, &Origin::file(key), None, e.message(), None);
                Calendar::default()
            }
        },
    };
    match file.build_on(base, key) {
        Ok(cal) => cal,
        Err(message) => {
            diags.push(Code::WrongType, &Origin::file(key), None, message, None);
            Calendar::default()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    key: &str,
    chain: &[usize],
    parsed: &[ParsedFile<'_>],
    layered: layers::Layered<'_>,
    params: IndexMap<String, ParamValue>,
    steps: Vec<StepDef>,
    index: HashMap<String, usize>,
    start: usize,
    calendar: Calendar,
    used_files: BTreeSet<String>,
    shared: &Shared<'_>,
    extras: Extras,
) -> Definition {
    let Extras { urgency, merge, statistics } = extras;
    let own = &parsed[chain[0]];
    let (unit, id) = key.rsplit_once('/').unwrap_or(("", key));
    let extends: Vec<String> =
        chain[1..].iter().map(|&i| format!("{}/{}", parsed[i].unit, parsed[i].header.id)).collect();
    let title = layered.title.clone().unwrap_or_else(|| Text::Plain(id.to_owned()));
    let mut effective = serde_json::json!({
        "id": id,
        "unit": unit,
        "title": title,
        "description": layered.description,
        "extends": extends,
        "abstract": own.header.is_abstract,
        "start": steps[start].id,
        "calendar": layered.calendar.as_ref().map(|(c, _)| c.get_ref().clone()),
        "params": params,
        "roles": layered.roles,
        "stages": layered.stages,
        "labels": layered.labels,
        "steps": layered.steps.iter().map(effective_step).collect::<Vec<_>>(),
    });
    // Only when named, so that versions made before `personal` existed keep their hashes.
    if !layered.personal.is_empty() {
        effective["personal"] = serde_json::json!(layered.personal);
    }
    if let Some(u) = &urgency {
        effective["urgency"] = serde_json::json!(u);
    }
    if let Some(m) = &merge {
        effective["merge"] = serde_json::json!(m);
    }
    if layered.statistics.is_some() {
        effective["statistics"] = serde_json::json!(statistics);
    }
    let sources: BTreeMap<String, String> =
        used_files.iter().filter_map(|f| shared.files.get(f).map(|t| (f.clone(), t.to_owned()))).collect();
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(&effective).unwrap_or_default());
    for (path, text) in &sources {
        if !chain.iter().any(|&i| parsed[i].path == path) {
            hasher.update(path.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
    }
    let hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let params_json: Map<String, Value> = params.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
    Definition {
        key: key.to_owned(),
        file: own.path.to_owned(),
        unit: unit.to_owned(),
        id: id.to_owned(),
        title,
        description: layered.description,
        is_abstract: own.header.is_abstract,
        hash,
        params,
        params_json,
        roles: layered.roles,
        stages: layered.stages,
        labels: layered.labels,
        steps,
        index,
        start,
        calendar: Arc::new(calendar),
        sandbox: shared.sandbox.clone(),
        effective,
        sources,
        extends,
        personal: layered.personal.iter().cloned().collect(),
        urgency,
        merge,
        statistics,
    }
}

/// What a workflow's header tables beyond steps and params compile to.
struct Extras {
    urgency: Option<crate::definition::UrgencyDef>,
    merge: Option<crate::definition::MergeDef>,
    statistics: crate::definition::StatisticsDef,
}

fn effective_step(raw: &RawStep<'_>) -> Value {
    let mut v = serde_json::to_value(&raw.common).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !(x.is_null() || x.as_object().is_some_and(Map::is_empty)));
        m.remove("insert_before");
        if let Value::Object(s) = devalue_to_json(raw.settings.get_ref()) {
            for (k, x) in s {
                m.insert(k, x);
            }
        }
    }
    v
}
