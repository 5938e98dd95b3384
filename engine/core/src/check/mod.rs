//! The checker: files -> authored model (with spans) -> layered effective workflows ->
//! compiled [`Definition`]s, reporting every problem found on the way.

mod graph;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::calendar::{Calendar, CalendarFile};
use crate::definition::{DeadlineDef, Definition, StepDef};
use crate::diag::{Code, Diagnostic, Diagnostics, Origin, did_you_mean};
use crate::duration::Duration;
use crate::files::{FileSet, parent_dir, resolve_reference};
use crate::kind::{CompileCx, ParamValue, Registry, Settings, devalue_to_json, resolve_duration, toml_to_json};
use crate::model::{ParamDecl, ParamType, StepCommon, UnitFile, WorkflowHeader, header_keys, step_keys, valid_id};
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

/// A step as parsed from one file.
#[derive(Clone)]
struct RawStep<'a> {
    common: StepCommon,
    span: Range<usize>,
    settings: Spanned<DeValue<'a>>,
    file: usize,
}

struct ParsedFile<'a> {
    path: &'a str,
    text: &'a str,
    unit: String,
    header: WorkflowHeader,
    steps: Vec<RawStep<'a>>,
    /// The file's structure is usable (its steps may still have errors).
    clean: bool,
    /// Ids of steps that could not be read (reported already; not reported again as missing).
    broken: Vec<String>,
}

/// Checks every workflow in `files`.
pub fn check(files: &FileSet, registry: &Registry, sandbox: &Arc<Sandbox>) -> Catalog {
    let mut diags = Diagnostics::new();
    for (path, why) in files.unreadable() {
        diags.push(Code::Unreadable, &Origin::file(path), None, format!("cannot read file: {why}"), None);
    }

    // 1. Classify files: unit files, workflow files.
    let mut units: IndexMap<String, Unit> = IndexMap::new();
    let mut workflow_paths = Vec::new();
    for (path, text) in files.iter() {
        let dir = parent_dir(path);
        if dir.split('/').any(|c| RESERVED_DIRS.contains(&c)) || !path.ends_with(".toml") {
            continue;
        }
        let name = &path[dir.len() + usize::from(!dir.is_empty())..];
        if dir.is_empty() {
            diags.push(Code::WrongType, &Origin::file(path), None, "workflow files belong in a unit folder (a district, street or community), not at the top of the workflows folder", Some("move it into a folder such as `mycommunity/`".into()));
            continue;
        }
        if name == "unit.toml" {
            let unit = match parse_typed::<UnitFile>(path, text, &mut diags) {
                Some(u) => u,
                None => UnitFile { name: dir.rsplit('/').next().unwrap_or(dir).into(), ..UnitFile::default() },
            };
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

    // 2. Parse workflow files.
    let mut parsed: Vec<ParsedFile<'_>> = Vec::new();
    let mut unreadable_workflows = Vec::new();
    for (path, text) in workflow_paths {
        match parse_workflow(path, text, &mut diags) {
            Some(p) => parsed.push(p),
            // Named by its file: without a readable header there is no id.
            None => unreadable_workflows.push(path.to_owned()),
        }
    }
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        let key = format!("{}/{}", p.unit, p.header.id);
        if let Some(&other) = by_key.get(&key) {
            diags.push(
                Code::Duplicate,
                &Origin::file(p.path),
                None,
                format!("workflow id `{}` is already used by `{}` in the same unit", p.header.id, parsed[other].path),
                None,
            );
            continue;
        }
        by_key.insert(key, i);
        if let Some(u) = units.get_mut(&p.unit) {
            u.workflows.push(p.header.id.clone());
        }
    }

    // 3. Layer and compile each workflow.
    let mut catalog = Catalog { units, ..Catalog::default() };
    for path in unreadable_workflows {
        catalog.failed.insert(path.trim_end_matches(".toml").to_owned(), vec![path]);
    }
    let mut keys: Vec<(&String, &usize)> = by_key.iter().collect();
    keys.sort();
    let mut lists = BTreeMap::new();
    for (key, &idx) in keys {
        let mut local = Diagnostics::new();
        let chain = match extends_chain(idx, &parsed, &by_key, &mut local) {
            Some(c) => c,
            None => {
                diags.extend(local);
                catalog.failed.insert(key.clone(), vec![parsed[idx].path.to_owned()]);
                continue;
            }
        };
        let chain_files: Vec<String> = chain.iter().map(|&i| parsed[i].path.to_owned()).collect();
        if chain.iter().any(|&i| !parsed[i].clean) {
            diags.extend(local);
            catalog.failed.insert(key.clone(), chain_files);
            continue;
        }
        let def = compile(key, &chain, &parsed, files, registry, sandbox, &mut lists, &mut local);
        let failed = local.has_errors();
        diags.extend(local);
        match def {
            Some(d) if !failed => {
                catalog.definitions.insert(key.clone(), Arc::new(d));
            }
            _ => {
                catalog.failed.insert(key.clone(), chain_files);
            }
        }
    }
    catalog.diagnostics = diags.into_sorted();
    catalog
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

fn push_de_error(
    diags: &mut Diagnostics,
    path: &str,
    text: &str,
    e: &toml::de::Error,
    fallback: Option<Range<usize>>,
    context: &str,
) {
    let msg = e.message().trim();
    let code = if msg.starts_with("missing field") {
        Code::MissingKey
    } else if msg.starts_with("unknown field") {
        Code::UnknownKey
    } else {
        Code::WrongType
    };
    let hint = unknown_field_hint(msg);
    diags.push(code, &Origin::new(path, e.span().or(fallback)), Some(text), format!("{context}{msg}"), hint);
}

/// A did-you-mean for serde's "unknown field `x`, expected one of `a`, `b`".
fn unknown_field_hint(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, expected)
}

/// Parses a whole small file (unit, list, scenario) into `T`.
pub fn parse_typed<T: DeserializeOwned>(path: &str, text: &str, diags: &mut Diagnostics) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let code = if e.message().contains("unknown field") {
                Code::UnknownKey
            } else if e.span().is_some() && e.message().starts_with("missing") {
                Code::MissingKey
            } else {
                Code::WrongType
            };
            diags.push(code, &Origin::new(path, e.span()), Some(text), e.message().trim().to_owned(), None);
            None
        }
    }
}

fn parse_workflow<'a>(path: &'a str, text: &'a str, diags: &mut Diagnostics) -> Option<ParsedFile<'a>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            diags.push(
                Code::TomlSyntax,
                &Origin::new(path, e.span()),
                Some(text),
                format!("TOML syntax: {}", e.message().trim()),
                None,
            );
        }
        return None;
    }
    let doc_span = doc.span();
    let mut table = doc.into_inner();
    let mut clean = true;
    let unknown: Vec<_> =
        table.keys().filter(|k| !header_keys().iter().any(|h| h == k.get_ref().as_ref())).cloned().collect();
    for k in unknown {
        let hint = did_you_mean(k.get_ref(), header_keys().iter().map(String::as_str));
        diags.push(
            Code::UnknownKey,
            &Origin::new(path, Some(k.span())),
            Some(text),
            format!("unknown key `{}` at the top of a workflow file", k.get_ref()),
            hint,
        );
        table.remove(&k);
    }
    let steps_key = table.keys().find(|k| k.get_ref().as_ref() == "steps").cloned();
    let steps_value = steps_key.and_then(|k| table.remove(&k));
    let header = match WorkflowHeader::deserialize_from(Spanned::new(doc_span.clone(), DeValue::Table(table))) {
        Ok(h) => Some(h),
        Err(e) => {
            push_de_error(diags, path, text, &e, Some(0..0), "");
            None
        }
    };
    let mut steps = Vec::new();
    let mut broken = Vec::new();
    match steps_value {
        None => {}
        Some(v) => {
            let span = v.span();
            match v.into_inner() {
                DeValue::Array(items) => {
                    for item in items {
                        let id = item.get_ref().get("id").and_then(|v| v.get_ref().as_str()).map(str::to_owned);
                        match parse_step(path, text, item, diags) {
                            Some(s) => steps.push(s),
                            None => broken.push(id.unwrap_or_default()),
                        }
                    }
                }
                _ => {
                    diags.push(
                        Code::WrongType,
                        &Origin::new(path, Some(span)),
                        Some(text),
                        "`steps` must be an array of tables, written `[[steps]]`",
                        None,
                    );
                    clean = false;
                }
            }
        }
    }
    let header = header?;
    let unit = parent_dir(path).to_owned();
    if !valid_id(&header.id) {
        diags.push(
            Code::WrongType,
            &Origin::new(path, Some(0..0)),
            Some(text),
            format!("workflow id `{}` may contain only letters, digits, `_` and `-`", header.id),
            None,
        );
        clean = false;
    }
    Some(ParsedFile { path, text, unit, header, steps, clean, broken })
}

trait FromDe: Sized {
    fn deserialize_from(v: Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error>;
}

impl<T: DeserializeOwned> FromDe for T {
    fn deserialize_from(v: Spanned<DeValue<'_>>) -> Result<Self, toml::de::Error> {
        T::deserialize(ValueDeserializer::from(v))
    }
}

fn parse_step<'a>(
    path: &'a str,
    text: &'a str,
    item: Spanned<DeValue<'a>>,
    diags: &mut Diagnostics,
) -> Option<RawStep<'a>> {
    let span = item.span();
    let DeValue::Table(table) = item.into_inner() else {
        diags.push(Code::WrongType, &Origin::new(path, Some(span)), Some(text), "each step must be a table", None);
        return None;
    };
    let mut common = DeTable::new();
    let mut settings = DeTable::new();
    for (k, v) in table {
        if step_keys().iter().any(|s| s == k.get_ref().as_ref()) {
            common.insert(k, v);
        } else {
            settings.insert(k, v);
        }
    }
    let common = match StepCommon::deserialize_from(Spanned::new(span.clone(), DeValue::Table(common))) {
        Ok(c) => c,
        Err(e) => {
            push_de_error(diags, path, text, &e, Some(span.clone()), "in a step: ");
            return None;
        }
    };
    if !valid_id(common.id.get_ref()) {
        diags.push(
            Code::WrongType,
            &Origin::new(path, Some(common.id.span())),
            Some(text),
            format!("step id `{}` may contain only letters, digits, `_` and `-`", common.id.get_ref()),
            None,
        );
        return None;
    }
    Some(RawStep {
        common,
        span: span.clone(),
        settings: Spanned::new(span, DeValue::Table(settings)),
        file: usize::MAX,
    })
}

/// The files of a workflow's `extends` chain, the workflow's own first.
fn extends_chain(
    idx: usize,
    parsed: &[ParsedFile<'_>],
    by_key: &HashMap<String, usize>,
    diags: &mut Diagnostics,
) -> Option<Vec<usize>> {
    let mut chain = vec![idx];
    let mut cur = idx;
    while let Some(ext) = &parsed[cur].header.extends {
        let p = &parsed[cur];
        let Some(&parent) = by_key.get(ext.get_ref().as_str()) else {
            let hint = did_you_mean(ext.get_ref(), by_key.keys().map(String::as_str));
            let hint = hint.or_else(|| {
                (!ext.get_ref().contains('/')).then(|| "write `unit/workflow`, e.g. `pingcheng/proposal`".to_owned())
            });
            diags.push(
                Code::MissingParent,
                &Origin::new(p.path, Some(ext.span())),
                Some(p.text),
                format!("`extends` names `{}`, but there is no such workflow", ext.get_ref()),
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
                &Origin::new(p.path, Some(ext.span())),
                Some(p.text),
                format!("`extends` goes round in a circle: {}", names.join(" -> ")),
                None,
            );
            return None;
        }
        chain.push(parent);
        cur = parent;
    }
    Some(chain)
}

/// A param after layering, with where its type and value were written.
struct LayeredParam {
    decl: ParamDecl,
    ty_file: usize,
    value_file: usize,
    span: Range<usize>,
}

#[allow(clippy::too_many_arguments)]
fn compile(
    key: &str,
    chain: &[usize],
    parsed: &[ParsedFile<'_>],
    files: &FileSet,
    registry: &Registry,
    sandbox: &Arc<Sandbox>,
    lists: &mut BTreeMap<String, Arc<Value>>,
    diags: &mut Diagnostics,
) -> Option<Definition> {
    let own = &parsed[chain[0]];
    let origin_of = |file: usize, span: Range<usize>| (Origin::new(parsed[file].path, Some(span)), parsed[file].text);

    // Layer, from the root ancestor down to the workflow itself.
    let mut title = None;
    let mut description = None;
    let mut start: Option<(Spanned<String>, usize)> = None;
    let mut calendar: Option<(Spanned<String>, usize)> = None;
    let mut params: IndexMap<String, LayeredParam> = IndexMap::new();
    let mut roles: IndexMap<String, String> = IndexMap::new();
    let mut steps: Vec<RawStep<'_>> = Vec::new();
    for &fi in chain.iter().rev() {
        let p = &parsed[fi];
        let h = &p.header;
        title = h.title.clone().or(title);
        description = h.description.clone().or(description);
        if let Some(s) = &h.start {
            start = Some((s.clone(), fi));
        }
        if let Some(c) = &h.calendar {
            calendar = Some((c.clone(), fi));
        }
        for (name, decl) in &h.params {
            let d = decl.get_ref();
            match params.get_mut(name.get_ref()) {
                Some(lp) => {
                    if let Some(ty) = d.ty
                        && Some(ty) != lp.decl.ty
                    {
                        let (o, t) = origin_of(fi, decl.span());
                        diags.push(Code::BadParam, &o, Some(t), format!("param `{}` is declared as {} in `{}`; an extending workflow may change its value, not its type", name.get_ref(), lp.decl.ty.map_or("untyped", ParamType::as_str), parsed[lp.ty_file].path), None);
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
                    params.insert(
                        name.get_ref().clone(),
                        LayeredParam { decl: d.clone(), ty_file: fi, value_file: fi, span },
                    );
                }
            }
        }
        for (k, v) in &h.roles {
            roles.insert(k.clone(), v.clone());
        }
        for r in &h.remove {
            match steps.iter().position(|x| x.common.id.get_ref() == r.get_ref()) {
                Some(pos) => {
                    steps.remove(pos);
                }
                _ => {
                    let (o, t) = origin_of(fi, r.span());
                    let hint = did_you_mean(r.get_ref(), steps.iter().map(|x| x.common.id.get_ref().as_str()));
                    diags.push(
                        Code::BadOverride,
                        &o,
                        Some(t),
                        format!("`remove` names `{}`, but no inherited step has that id", r.get_ref()),
                        hint,
                    );
                }
            }
        }
        for s in &p.steps {
            let mut s = s.clone();
            s.file = fi;
            let id = s.common.id.get_ref().clone();
            if let Some(pos) = steps.iter().position(|x| x.common.id.get_ref() == &id) {
                if fi == steps[pos].file {
                    let (o, t) = origin_of(fi, s.common.id.span());
                    diags.push(
                        Code::Duplicate,
                        &o,
                        Some(t),
                        format!("step id `{id}` is used twice in this file"),
                        None,
                    );
                    continue;
                }
                steps[pos] = s; // replace an inherited step
            } else if let Some(before) = s.common.insert_before.clone() {
                let Some(pos) = steps.iter().position(|x| x.common.id.get_ref() == before.get_ref()) else {
                    let (o, t) = origin_of(fi, before.span());
                    let hint = did_you_mean(before.get_ref(), steps.iter().map(|x| x.common.id.get_ref().as_str()));
                    diags.push(
                        Code::BadOverride,
                        &o,
                        Some(t),
                        format!("`insert_before` names `{}`, but no inherited step has that id", before.get_ref()),
                        hint,
                    );
                    continue;
                };
                for other in steps.iter_mut() {
                    if other.common.next.as_ref().is_some_and(|n| n.get_ref() == before.get_ref()) {
                        other.common.next = Some(Spanned::new(before.span(), id.clone()));
                    }
                    for v in other.common.on.values_mut() {
                        if v.get_ref() == before.get_ref() {
                            *v = Spanned::new(before.span(), id.clone());
                        }
                    }
                }
                if start.as_ref().is_some_and(|(s, _)| s.get_ref() == before.get_ref()) {
                    start = Some((Spanned::new(before.span(), id.clone()), fi));
                }
                if s.common.next.is_none() {
                    s.common.next = Some(before.clone());
                }
                steps.insert(pos, s);
            } else {
                steps.push(s);
            }
        }
    }
    if own.steps.is_empty() && chain.len() == 1 {
        diags.push(
            Code::MissingKey,
            &Origin::file(own.path),
            None,
            "workflow has no steps",
            Some("add at least one `[[steps]]` table".into()),
        );
        return None;
    }

    // Params.
    let mut param_values: IndexMap<String, ParamValue> = IndexMap::new();
    for (name, lp) in &params {
        let (o, t) = origin_of(lp.value_file, lp.span.clone());
        let Some(ty) = lp.decl.ty else {
            diags.push(
                Code::BadParam,
                &o,
                Some(t),
                format!("param `{name}` has no type"),
                Some("add `type = \"int\"` (or number, share, bool, string, duration, list)".into()),
            );
            continue;
        };
        let Some(value) = &lp.decl.value else {
            diags.push(
                Code::BadParam,
                &o,
                Some(t),
                format!("param `{name}` has no value"),
                Some("add `value = ...`".into()),
            );
            continue;
        };
        match check_param(ty, value.get_ref(), &lp.decl) {
            Ok(v) => {
                param_values.insert(name.clone(), ParamValue { ty, value: v });
            }
            Err(msg) => diags.push(Code::BadParam, &o, Some(t), format!("param `{name}`: {msg}"), None),
        }
    }
    let params_json: Map<String, Value> = param_values.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();

    // Calendar.
    let mut used_files: BTreeSet<String> = chain.iter().map(|&i| parsed[i].path.to_owned()).collect();
    let cal = match &calendar {
        None => Calendar::default(),
        Some((c, fi)) => {
            let (o, t) = origin_of(*fi, c.span());
            match resolve_reference(parent_dir(parsed[*fi].path), c.get_ref()) {
                Err(e) => {
                    diags.push(Code::EscapingPath, &o, Some(t), e.to_string(), None);
                    Calendar::default()
                }
                Ok(k) => match files.get(&k) {
                    None => {
                        diags.push(
                            Code::MissingFile,
                            &o,
                            Some(t),
                            format!("calendar file `{}` does not exist", c.get_ref()),
                            None,
                        );
                        Calendar::default()
                    }
                    Some(text) => {
                        used_files.insert(k.clone());
                        match parse_typed::<CalendarFile>(&k, text, diags).map(CalendarFile::build) {
                            Some(Ok(cal)) => cal,
                            Some(Err(msg)) => {
                                diags.push(Code::WrongType, &Origin::file(&k), None, msg, None);
                                Calendar::default()
                            }
                            None => Calendar::default(),
                        }
                    }
                },
            }
        }
    };

    // Steps.
    let broken: Vec<&str> = chain.iter().flat_map(|&i| parsed[i].broken.iter().map(String::as_str)).collect();
    let step_ids: Vec<&str> =
        steps.iter().map(|s| s.common.id.get_ref().as_str()).chain(broken.iter().copied()).collect();
    let mut compiled: Vec<StepDef> = Vec::new();
    let mut effective_steps = Vec::new();
    for raw in &steps {
        let p = &parsed[raw.file];
        let c = &raw.common;
        let at = |span: Range<usize>| Origin::new(p.path, Some(span));
        effective_steps.push(effective_step(raw));
        // References to other steps.
        let check_target = |target: &Spanned<String>, what: &str, diags: &mut Diagnostics| {
            if !step_ids.contains(&target.get_ref().as_str()) {
                let hint = did_you_mean(target.get_ref(), step_ids.iter().copied());
                diags.push(
                    Code::UnknownStep,
                    &at(target.span()),
                    Some(p.text),
                    format!("{what} `{}`, but there is no step with that id", target.get_ref()),
                    hint,
                );
            }
        };
        if let Some(n) = &c.next {
            check_target(n, "`next` names", diags);
        }
        for (outcome, target) in &c.on {
            check_target(target, &format!("outcome `{}` leads to", outcome.get_ref()), diags);
        }
        // Roles.
        let role_ok = |r: &Spanned<String>, diags: &mut Diagnostics| {
            if r.get_ref() != "*" && !roles.contains_key(r.get_ref()) {
                let hint = did_you_mean(r.get_ref(), roles.keys().map(String::as_str));
                diags.push(
                    Code::UnknownRole,
                    &at(r.span()),
                    Some(p.text),
                    format!("role `{}` is not declared in [roles]", r.get_ref()),
                    hint.or_else(|| {
                        Some(format!("declared roles: {}", roles.keys().cloned().collect::<Vec<_>>().join(", ")))
                    }),
                );
            }
        };
        for r in c.roles.iter().flatten() {
            role_ok(r, diags);
        }
        for rs in c.actors.values() {
            for r in rs {
                role_ok(r, diags);
            }
        }
        // Guard.
        let guard = c.guard.as_ref().and_then(|g| compile_script(sandbox, p.path, p.text, g, diags));
        // Deadline.
        let deadline = c.deadline.as_ref().and_then(|d| {
            let dd = d.get_ref();
            let after = dd.after.as_ref().and_then(|a| {
                resolve_duration(a.get_ref(), &param_values)
                    .map_err(|(code, msg, hint)| diags.push(code, &at(a.span()), Some(p.text), msg, hint))
                    .ok()
            });
            let compute = dd.compute.as_ref().and_then(|s| compile_script(sandbox, p.path, p.text, s, diags));
            if dd.after.is_some() == dd.compute.is_some() {
                diags.push(
                    Code::BadDuration,
                    &at(d.span()),
                    Some(p.text),
                    "a deadline needs exactly one of `after` or `compute`",
                    Some("deadline = { after = \"7d\" }".into()),
                );
                return None;
            }
            let mut remind = Vec::new();
            for r in &dd.remind_before {
                match resolve_duration(r.get_ref(), &param_values) {
                    Ok(v) => remind.push(v),
                    Err((code, msg, hint)) => diags.push(code, &at(r.span()), Some(p.text), msg, hint),
                }
            }
            Some(DeadlineDef {
                after,
                compute,
                outcome: dd.outcome.clone().unwrap_or_else(|| "expired".into()),
                remind_before: remind,
            })
        });
        // The kind.
        let Some(kind) = registry
            .get(c.kind.get_ref())
            .cloned()
            .or_else(|| crate::rhai_kind::find(files, &p.unit, c.kind.get_ref(), &mut used_files))
        else {
            let hint = did_you_mean(c.kind.get_ref(), registry.names())
                .or_else(|| Some(format!("known kinds: {}", registry.names().collect::<Vec<_>>().join(", "))));
            diags.push(
                Code::UnknownKind,
                &at(c.kind.span()),
                Some(p.text),
                format!("no plugin provides step kind `{}`", c.kind.get_ref()),
                hint,
            );
            continue;
        };
        let mut cx = CompileCx {
            step_id: c.id.get_ref(),
            file: p.path,
            text: p.text,
            files,
            sandbox,
            params: &param_values,
            roles: &roles,
            diags,
            used_files: &mut used_files,
            lists,
            outcomes_in_on: c.on.keys().map(|k| k.get_ref().clone()).collect(),
            has_deadline: c.deadline.is_some(),
        };
        let Some(behaviour) = kind.compile(Settings { table: raw.settings.clone() }, &mut cx) else {
            continue;
        };
        // Targets named in settings.
        for (t, span) in behaviour.targets() {
            if !step_ids.contains(&t.as_str()) {
                let hint = did_you_mean(&t, step_ids.iter().copied());
                diags.push(
                    Code::UnknownStep,
                    &Origin::new(p.path, span.or(Some(raw.span.clone()))),
                    Some(p.text),
                    format!("step `{}` names `{t}`, but there is no step with that id", c.id.get_ref()),
                    hint,
                );
            }
        }
        // Outcomes must lead somewhere; `on` must name real outcomes.
        let mut outcomes = behaviour.outcomes();
        if let Some(d) = &deadline
            && !behaviour.handles_deadline()
        {
            outcomes.push(d.outcome.clone());
        }
        if guard.is_some() {
            outcomes.push("skipped".into());
        }
        outcomes.sort();
        outcomes.dedup();
        let is_split = matches!(behaviour.control(), crate::kind::Control::Split(_));
        for (o, _) in &c.on {
            if !outcomes.contains(o.get_ref()) {
                let hint = did_you_mean(o.get_ref(), outcomes.iter().map(String::as_str)).or_else(|| {
                    Some(format!(
                        "outcomes of this step: {}",
                        if outcomes.is_empty() { "none".to_owned() } else { outcomes.join(", ") }
                    ))
                });
                diags.push(
                    Code::UnmappedOutcome,
                    &at(o.span()),
                    Some(p.text),
                    format!("step `{}` never has outcome `{}`", c.id.get_ref(), o.get_ref()),
                    hint,
                );
            }
        }
        if c.next.is_none() {
            for o in &outcomes {
                if !c.on.keys().any(|k| k.get_ref() == o) {
                    let hint = if is_split {
                        "add `next = \"...\"` to the join, the step after it"
                    } else {
                        "add it to `on`, or add `next`"
                    };
                    diags.push(
                        Code::UnmappedOutcome,
                        &at(c.id.span()),
                        Some(p.text),
                        format!("outcome `{o}` of step `{}` leads nowhere", c.id.get_ref()),
                        Some(hint.into()),
                    );
                }
            }
        }
        // Actions need someone who may perform them.
        let actions = behaviour.actions();
        for a in &actions {
            let has =
                c.actors.keys().any(|k| k.get_ref() == &a.name) || c.roles.as_ref().is_some_and(|r| !r.is_empty());
            if !has {
                diags.push(
                    Code::NobodyMayAct,
                    &at(c.id.span()),
                    Some(p.text),
                    format!("nobody may perform action `{}` of step `{}`", a.name, c.id.get_ref()),
                    Some(format!("add `roles = [...]`, or `actors = {{ {} = [...] }}`", a.name)),
                );
            }
        }
        for k in c.actors.keys() {
            if !actions.iter().any(|a| &a.name == k.get_ref()) {
                let hint = did_you_mean(k.get_ref(), actions.iter().map(|a| a.name.as_str()));
                diags.push(
                    Code::UnknownKey,
                    &at(k.span()),
                    Some(p.text),
                    format!("step `{}` has no action `{}`", c.id.get_ref(), k.get_ref()),
                    hint,
                );
            }
        }
        compiled.push(StepDef {
            id: c.id.get_ref().clone(),
            kind: c.kind.get_ref().clone(),
            title: c.title.clone(),
            behaviour,
            next: c.next.as_ref().map(|n| n.get_ref().clone()),
            on: c.on.iter().map(|(k, v)| (k.get_ref().clone(), v.get_ref().clone())).collect(),
            guard,
            deadline,
            roles: c.roles.iter().flatten().map(|r| r.get_ref().clone()).collect(),
            actors: c
                .actors
                .iter()
                .map(|(k, v)| (k.get_ref().clone(), v.iter().map(|r| r.get_ref().clone()).collect()))
                .collect(),
            actions,
            file: p.path.to_owned(),
        });
    }
    if compiled.len() != steps.len() || !broken.is_empty() || diags.has_errors() {
        return None;
    }
    let index: HashMap<String, usize> = compiled.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    let start_idx = match &start {
        None => 0,
        Some((s, fi)) => match index.get(s.get_ref()) {
            Some(&i) => i,
            None => {
                let (o, t) = origin_of(*fi, s.span());
                let hint = did_you_mean(s.get_ref(), index.keys().map(String::as_str));
                diags.push(
                    Code::UnknownStep,
                    &o,
                    Some(t),
                    format!("`start` names `{}`, but there is no step with that id", s.get_ref()),
                    hint,
                );
                return None;
            }
        },
    };
    graph::check(&compiled, start_idx, &steps, parsed, diags);
    if diags.has_errors() {
        return None;
    }

    let (unit, id) = key.rsplit_once('/').unwrap_or(("", key));
    let effective = serde_json::json!({
        "id": id,
        "unit": unit,
        "title": title.clone().unwrap_or_else(|| id.to_owned()),
        "description": description,
        "extends": chain[1..].iter().map(|&i| format!("{}/{}", parsed[i].unit, parsed[i].header.id)).collect::<Vec<_>>(),
        "abstract": own.header.is_abstract,
        "start": compiled[start_idx].id,
        "calendar": calendar.as_ref().map(|(c, _)| c.get_ref().clone()),
        "params": param_values,
        "roles": roles,
        "steps": effective_steps,
    });
    let sources: BTreeMap<String, String> =
        used_files.iter().filter_map(|f| files.get(f).map(|t| (f.clone(), t.to_owned()))).collect();
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

    Some(Definition {
        key: key.to_owned(),
        unit: unit.to_owned(),
        id: id.to_owned(),
        title: title.unwrap_or_else(|| id.to_owned()),
        description,
        is_abstract: own.header.is_abstract,
        hash,
        params: param_values,
        params_json,
        roles,
        steps: compiled,
        index,
        start: start_idx,
        calendar: Arc::new(cal),
        sandbox: sandbox.clone(),
        effective,
        sources,
        extends: chain[1..].iter().map(|&i| format!("{}/{}", parsed[i].unit, parsed[i].header.id)).collect(),
    })
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

fn compile_script(
    sandbox: &Sandbox,
    path: &str,
    text: &str,
    src: &Spanned<String>,
    diags: &mut Diagnostics,
) -> Option<crate::script::Script> {
    let (files, params, roles) = (FileSet::new(), IndexMap::new(), IndexMap::new());
    let (mut lists, mut used) = (BTreeMap::new(), BTreeSet::new());
    let mut cx = CompileCx {
        step_id: "",
        file: path,
        text,
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

fn check_param(ty: ParamType, v: &toml::Value, decl: &ParamDecl) -> Result<Value, String> {
    let num = |x: f64| -> Result<(), String> {
        if decl.min.is_some_and(|m| x < m) {
            return Err(format!("{x} is below the minimum {}", decl.min.unwrap_or_default()));
        }
        if decl.max.is_some_and(|m| x > m) {
            return Err(format!("{x} is above the maximum {}", decl.max.unwrap_or_default()));
        }
        Ok(())
    };
    match (ty, v) {
        (ParamType::Int, toml::Value::Integer(i)) => num(*i as f64).map(|_| Value::from(*i)),
        (ParamType::Number, toml::Value::Integer(i)) => num(*i as f64).map(|_| Value::from(*i as f64)),
        (ParamType::Number, toml::Value::Float(f)) => num(*f).map(|_| Value::from(*f)),
        (ParamType::Share, toml::Value::Float(f)) if (0.0..=1.0).contains(f) => num(*f).map(|_| Value::from(*f)),
        (ParamType::Share, toml::Value::Integer(i)) if (0..=1).contains(i) => Ok(Value::from(*i as f64)),
        (ParamType::Share, _) => Err(format!("a share is a number between 0 and 1, not `{v}`")),
        (ParamType::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(*b)),
        (ParamType::String, toml::Value::String(s)) => Ok(Value::String(s.clone())),
        (ParamType::Duration, toml::Value::String(s)) => {
            Duration::parse(s).map(|_| Value::String(s.clone())).map_err(|e| e.to_string())
        }
        (ParamType::List, toml::Value::Array(a)) if a.iter().all(|x| x.is_str()) => Ok(toml_to_json(v)),
        _ => Err(format!("value `{v}` is not of type {}", ty.as_str())),
    }
}
