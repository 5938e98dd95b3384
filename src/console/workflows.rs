//! The console's workflows: those of the units in scope; one workflow's effective definition
//! drawn and as a table of steps, its params with the layer (district, street, community) that
//! set each, its versions (who and when), and a side-by-side diff of any two versions, every
//! file's text included.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use yishi_core::definition::Definition;
use yishi_core::describe::diagram::{Diagram, Marks};
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;

use super::pages::{Page, html_page, internal, localised, signed};
use crate::server::AppState;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

localised!(WorkflowsPage, WorkflowPage, DiffPage);

#[derive(Template)]
#[template(path = "console/workflows.html")]
struct WorkflowsPage {
    page: Page,
    rows: Vec<(String, String, String, i64, bool)>,
}

#[derive(Template)]
#[template(path = "console/workflow.html")]
struct WorkflowPage {
    page: Page,
    key: String,
    title: String,
    unit: String,
    version: i64,
    steps: Vec<[String; 6]>,
    params: Vec<[String; 4]>,
    versions: Vec<(i64, String, String, String, i64, bool)>,
    numbers: Vec<i64>,
}

#[derive(Template)]
#[template(path = "console/diff.html")]
struct DiffPage {
    page: Page,
    key: String,
    from: i64,
    to: i64,
    changes: Vec<String>,
    files: Vec<FileDiff>,
    same_files: Vec<String>,
}

/// One file's side-by-side diff.
struct FileDiff {
    path: String,
    rows: Vec<DiffRow>,
}

/// One row: the old line (number, text) and the new one; `kind` is `same`, `del`, `add` or `change`.
struct DiffRow {
    old_no: String,
    old: String,
    new_no: String,
    new: String,
    kind: &'static str,
}

fn text(l: Lang, key: &'static str) -> String {
    Message::new(key).render(l)
}

/// The unit a layer of the extends chain belongs to, named for people.
fn unit_name(st: &AppState, unit: &str) -> String {
    st.engine.active().catalog.units.get(unit).map_or_else(|| unit.to_owned(), |u| u.name.clone())
}

/// Which file of the chain (the workflow's own, then what it extends, nearest first) sets each
/// param's value: the nearest that writes `[params.<name>] value` (or declares it first).
fn param_layers(def: &Definition) -> HashMap<String, String> {
    let mut files = vec![def.file.clone()];
    files.extend(def.extends.iter().map(|k| format!("{k}.toml")));
    let mut out = HashMap::new();
    for f in &files {
        let Some(t) = def.sources.get(f).and_then(|s| s.parse::<toml::Table>().ok()) else { continue };
        let Some(params) = t.get("params").and_then(toml::Value::as_table) else { continue };
        for (name, decl) in params {
            if decl.get("value").is_some() && !out.contains_key(name) {
                out.insert(name.clone(), yishi_core::files::parent_dir(f).to_owned());
            }
        }
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn list(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.lang;
    let counts = st.engine.active_counts().await.unwrap_or_default();
    let active = st.engine.active();
    let rows = active
        .current
        .iter()
        .filter(|(_, (_, d))| s.principal.sees(&d.unit))
        .map(|(k, (row, d))| {
            (
                k.clone(),
                d.title.get(l).to_owned(),
                unit_name(&st, &d.unit),
                counts.get(&row.id).copied().unwrap_or(0),
                d.is_abstract,
            )
        })
        .collect();
    html_page(&WorkflowsPage { page: s.page(l, "console-workflows"), rows }, &headers, s.chose)
}

/// `/workflows/<unit>/<id>`, `.../diagram.svg` and `.../diff`.
pub async fn workflow(State(st): St, headers: HeaderMap, Path(path): Path<String>, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.lang;
    let (key, sub) = match path.rsplit_once('/') {
        Some((k, "diagram.svg")) => (k.to_owned(), "diagram"),
        Some((k, "diff")) => (k.to_owned(), "diff"),
        _ => (path.clone(), ""),
    };
    let active = st.engine.active();
    let Some((row, def)) = active.current.get(&key).cloned() else {
        return super::refused(StatusCode::NOT_FOUND, l, &msg!("api-no-active-version", workflow = &key));
    };
    if !s.principal.sees(&def.unit) {
        return super::refused(StatusCode::NOT_FOUND, l, &msg!("api-no-active-version", workflow = &key));
    }
    match sub {
        "diagram" => {
            let svg = Diagram::of(&def.effective, l).svg(&Marks::default());
            (
                [
                    (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
                ],
                svg,
            )
                .into_response()
        }
        "diff" => diff(&st, &s, &headers, &key, &q).await,
        _ => {
            let versions = match st.engine.versions(Some(&key)).await {
                Ok(v) => v,
                Err(e) => return internal(&e),
            };
            let layers = param_layers(&def);
            let steps = def
                .steps
                .iter()
                .map(|sd| {
                    let goes: Vec<String> = sd
                        .on
                        .iter()
                        .map(|(o, to)| format!("{} → {to}", def.labels.get(o).map_or(o.as_str(), |t| t.get(l))))
                        .chain(sd.next.iter().map(|n| format!("→ {n}")))
                        .collect();
                    let deadline = sd.deadline.as_ref().map_or(String::new(), |d| {
                        d.after.map_or_else(|| text(l, "console-computed"), |a| a.to_string())
                    });
                    [
                        sd.id.clone(),
                        sd.title.as_ref().map_or(String::new(), |t| t.get(l).to_owned()),
                        sd.kind.clone(),
                        sd.roles.join("、"),
                        deadline,
                        goes.join("；"),
                    ]
                })
                .collect();
            let params = def
                .params
                .iter()
                .map(|(name, p)| {
                    let by = layers.get(name).map_or_else(|| def.unit.clone(), |u| u.clone());
                    [name.clone(), show(&p.value), p.ty.as_str().to_owned(), format!("{}（{by}）", unit_name(&st, &by))]
                })
                .collect();
            let numbers: BTreeSet<i64> = versions.iter().map(|v| v.row.seq).collect();
            let page = WorkflowPage {
                page: s.page(l, "console-workflow"),
                key: key.clone(),
                title: def.title.get(l).to_owned(),
                unit: unit_name(&st, &def.unit),
                version: row.seq,
                steps,
                params,
                versions: versions
                    .into_iter()
                    .rev()
                    .map(|v| {
                        (
                            v.row.seq,
                            v.row.hash.chars().take(12).collect(),
                            st.local_time(v.row.created_at).chars().take(16).collect(),
                            v.row.created_by,
                            v.active_instances,
                            v.current,
                        )
                    })
                    .collect(),
                numbers: numbers.into_iter().rev().collect(),
            };
            html_page(&page, &headers, s.chose)
        }
    }
}

async fn diff(
    st: &AppState,
    s: &super::pages::Signed,
    headers: &HeaderMap,
    key: &str,
    q: &HashMap<String, String>,
) -> Response {
    let l = s.lang;
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(from), Some(to)) = (num("from"), num("to")) else {
        return super::refused(StatusCode::BAD_REQUEST, l, &msg!("console-diff-pick"));
    };
    let (a, b) = match (st.engine.version_source(key, from).await, st.engine.version_source(key, to).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(yishi_engine::service::EngineError::NotFound(m)), _)
        | (_, Err(yishi_engine::service::EngineError::NotFound(m))) => {
            return super::refused(StatusCode::NOT_FOUND, l, &m);
        }
        (Err(e), _) | (_, Err(e)) => return internal(&e),
    };
    let changes =
        yishi_core::describe::diff(&a.effective, &b.effective).into_iter().map(|c| c.text.render(l)).collect();
    let paths: BTreeSet<&String> = a.sources.keys().chain(b.sources.keys()).collect();
    let mut files = Vec::new();
    let mut same_files = Vec::new();
    for p in paths {
        let (old, new) = (a.sources.get(p).map_or("", String::as_str), b.sources.get(p).map_or("", String::as_str));
        if old == new {
            same_files.push(p.clone());
            continue;
        }
        files.push(FileDiff { path: p.clone(), rows: side_by_side(old, new) });
    }
    let page = DiffPage { page: s.page(l, "console-diff"), key: key.to_owned(), from, to, changes, files, same_files };
    html_page(&page, headers, s.chose)
}

/// Two texts as rows of old and new lines, changed lines side by side.
fn side_by_side(old: &str, new: &str) -> Vec<DiffRow> {
    let d = TextDiff::from_lines(old, new);
    let mut rows = Vec::new();
    for op in d.ops() {
        let mut dels = Vec::new();
        let mut adds = Vec::new();
        for c in d.iter_changes(op) {
            let line = c.value().trim_end_matches(['\n', '\r']).to_owned();
            match c.tag() {
                ChangeTag::Equal => rows.push(DiffRow {
                    old_no: c.old_index().map_or(String::new(), |i| (i + 1).to_string()),
                    old: line.clone(),
                    new_no: c.new_index().map_or(String::new(), |i| (i + 1).to_string()),
                    new: line,
                    kind: "same",
                }),
                ChangeTag::Delete => dels.push((c.old_index().unwrap_or(0) + 1, line)),
                ChangeTag::Insert => adds.push((c.new_index().unwrap_or(0) + 1, line)),
            }
        }
        for i in 0..dels.len().max(adds.len()) {
            let (o, n) = (dels.get(i), adds.get(i));
            rows.push(DiffRow {
                old_no: o.map_or(String::new(), |x| x.0.to_string()),
                old: o.map_or(String::new(), |x| x.1.clone()),
                new_no: n.map_or(String::new(), |x| x.0.to_string()),
                new: n.map_or(String::new(), |x| x.1.clone()),
                kind: match (o, n) {
                    (Some(_), Some(_)) => "change",
                    (Some(_), None) => "del",
                    _ => "add",
                },
            });
        }
    }
    rows
}
