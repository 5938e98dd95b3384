//! Units, workflows, their versions (with sources and diffs), diagrams, reload and validation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use yishi_core::describe::diagram::{Diagram, Marks};
use yishi_core::msg;

use super::AppState;
use super::auth::{ApiRole, Principal};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, P, Q};
use super::instances::unit_of;
use super::lang;
use super::reply::json;
use super::types::*;

type St = State<Arc<AppState>>;

pub async fn units(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let active = st.engine.active();
    let items: Vec<_> = active.catalog.units.values().filter(|u| p.sees(&u.path)).cloned().collect();
    json(&Items { items })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    unit: Option<String>,
}

pub async fn list(State(st): St, Extension(p): Extension<Principal>, Q(q): Q<WorkflowQuery>) -> ApiResult<Response> {
    let active = st.engine.active();
    let counts = st.engine.active_counts().await?;
    let lang = lang::current();
    let mut items = Vec::new();
    for (key, (row, def)) in &active.current {
        if !p.sees(&def.unit) || q.unit.as_ref().is_some_and(|u| u != &def.unit) {
            continue;
        }
        let problems = active.catalog.failed.contains_key(key);
        items.push(WorkflowItem {
            key: key.clone(),
            unit: def.unit.clone(),
            id: def.id.clone(),
            title: def.title.get(lang).to_owned(),
            is_abstract: def.is_abstract,
            version: row.seq,
            version_id: row.hash.clone(),
            active_instances: counts.get(&row.id).copied().unwrap_or(0),
            status: if problems { "kept_last_good" } else { "ok" }.into(),
        });
    }
    json(&Items { items })
}

/// What a workflow path asks for.
enum Sub<'a> {
    Detail,
    Versions,
    Version(&'a str),
    Diff,
    Diagram,
    Calendar,
}

fn split(path: &str) -> (&str, Sub<'_>) {
    if let Some((rest, n)) = path.rsplit_once('/')
        && let Some(key) = rest.strip_suffix("/versions")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    {
        return (key, Sub::Version(n));
    }
    match path.rsplit_once('/') {
        Some((k, "versions")) => (k, Sub::Versions),
        Some((k, "diff")) => (k, Sub::Diff),
        Some((k, "diagram")) => (k, Sub::Diagram),
        Some((k, "calendar")) => (k, Sub::Calendar),
        _ => (path, Sub::Detail),
    }
}

fn number(q: &HashMap<String, String>, field: &str) -> ApiResult<Option<i64>> {
    q.get(field)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_request(msg!("api-not-a-version", value = v)).field(field.to_owned()))
        })
        .transpose()
}

pub async fn workflow(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(path): P<String>,
    Q(q): Q<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (key, sub) = split(&path);
    p.require_unit(unit_of(key))?;
    match sub {
        Sub::Detail => detail(&st, key),
        Sub::Versions => versions(&st, key).await,
        Sub::Version(n) => {
            let n: i64 = n.parse().map_err(|_| ApiError::bad_request(msg!("api-not-a-version", value = n)))?;
            source(&st, key, n).await
        }
        Sub::Diff => {
            let (Some(from), Some(to)) = (number(&q, "from")?, number(&q, "to")?) else {
                return Err(ApiError::bad_request(msg!("api-diff-needs-versions")).field("from"));
            };
            let d = st.engine.diff(key, from, to).await?;
            json(&Diff { workflow: key.to_owned(), from, to, changes: d.changes, files: d.files })
        }
        Sub::Diagram => diagram(&st, key, &q).await,
        Sub::Calendar => calendar(&st, key, &q),
    }
}

/// A month of the working-day calendar the active version counts deadlines by.
fn calendar(st: &AppState, key: &str, q: &HashMap<String, String>) -> ApiResult<Response> {
    let active = st.engine.active();
    let Some((row, def)) = active.current.get(key) else {
        return Err(ApiError::not_found(msg!("api-no-active-version", workflow = key)));
    };
    let bad = |v: &str| ApiError::bad_request(msg!("cli-bad-month", month = v)).field("month");
    let month = q.get("month").ok_or_else(|| bad(""))?;
    let (y, m) = month.split_once('-').ok_or_else(|| bad(month))?;
    let (Ok(y), Ok(m)) = (y.parse::<i32>(), m.parse::<u32>()) else { return Err(bad(month)) };
    let cal = &def.calendar;
    let days = cal.month(y, m).filter(|_| (1900..=2200).contains(&y)).ok_or_else(|| bad(month))?;
    json(&CalendarMonth {
        workflow: key.to_owned(),
        version: row.seq,
        files: cal.files.clone(),
        zone: cal.zone.name(),
        covered: cal.covers(y),
        notice: cal.notices.get(&y).cloned(),
        days,
    })
}

fn detail(st: &AppState, key: &str) -> ApiResult<Response> {
    let active = st.engine.active();
    let Some((row, def)) = active.current.get(key) else {
        return Err(ApiError::not_found(msg!("api-no-active-version", workflow = key)));
    };
    json(&WorkflowDetail {
        key: key.to_owned(),
        title: def.title.get(lang::current()).to_owned(),
        version: row.seq,
        version_id: row.hash.clone(),
        is_abstract: def.is_abstract,
        definition: def.effective.clone(),
    })
}

async fn versions(st: &AppState, key: &str) -> ApiResult<Response> {
    let items = st
        .engine
        .versions(Some(key))
        .await?
        .into_iter()
        .map(|v| VersionItem {
            version: v.row.seq,
            version_id: v.row.hash,
            created_at: v.row.created_at,
            created_by: v.row.created_by,
            active_instances: v.active_instances,
            current: v.current,
        })
        .collect();
    json(&Versions { workflow: key.to_owned(), items })
}

async fn source(st: &AppState, key: &str, n: i64) -> ApiResult<Response> {
    let v = st.engine.version_source(key, n).await?;
    json(&VersionSource {
        workflow: key.to_owned(),
        version: v.row.seq,
        version_id: v.row.hash,
        created_at: v.row.created_at,
        created_by: v.row.created_by,
        files: v.sources,
        definition: v.effective,
    })
}

async fn diagram(st: &AppState, key: &str, q: &HashMap<String, String>) -> ApiResult<Response> {
    let effective = match number(q, "version")? {
        Some(v) => st.engine.version_source(key, v).await?.effective,
        None => st
            .engine
            .active()
            .current
            .get(key)
            .map(|(_, d)| d.effective.clone())
            .ok_or_else(|| ApiError::not_found(msg!("api-no-active-version", workflow = key)))?,
    };
    let d = Diagram::of(&effective, lang::current());
    match q.get("format").map(String::as_str) {
        None | Some("mermaid") => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], d.mermaid(&Marks::default())).into_response())
        }
        Some("svg") => Ok(([(header::CONTENT_TYPE, "image/svg+xml")], d.svg(&Marks::default())).into_response()),
        Some(other) => {
            Err(ApiError::bad_request(msg!("api-unknown-format", value = other, known = "mermaid, svg"))
                .field("format"))
        }
    }
}

pub async fn reload_status(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let active = st.engine.active();
    // Only what lies in the token's scope: diagnostics of files in its units.
    let in_scope = |d: &yishi_core::Diagnostic| p.sees(yishi_core::files::parent_dir(d.file()));
    let diagnostics: Vec<_> = active.diagnostics.iter().filter(|d| in_scope(d)).cloned().collect();
    let last = st.engine.last_reload().map(|mut s| {
        s.diagnostics.retain(|d| in_scope(d));
        s.activated.retain(|(k, _)| p.sees(unit_of(k)));
        s.kept.retain(|k| p.sees(unit_of(k)));
        s.removed.retain(|k| p.sees(unit_of(k)));
        s
    });
    json(&ReloadState { generation: active.generation, reloaded_at: active.reloaded_at, last, diagnostics })
}

pub async fn reload(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    if p.scope != "*" {
        return Err(ApiError::forbidden(msg!("api-reload-needs-all")));
    }
    let status = st.reloader.reload(&format!("api ({})", p.name)).await?;
    json(&status)
}

pub async fn validate(State(st): St, Extension(p): Extension<Principal>, b: Body<ValidateBody>) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    let b = b.value;
    if !valid_workflow_path(&b.path) {
        return Err(ApiError::invalid(msg!("api-validate-path")).field("/path"));
    }
    let key =
        yishi_core::files::resolve_reference("", &b.path).map_err(|e| ApiError::invalid(e.message()).field("/path"))?;
    p.require_unit(yishi_core::files::parent_dir(&key))?;
    let dir = st.reloader.dir().to_owned();
    let mut files = tokio::task::spawn_blocking(move || yishi_core::FileSet::load_dir(&dir))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    files.insert(key.clone(), b.text);
    let catalog = yishi_core::check(&files, st.engine.registry(), st.engine.sandbox());
    let diagnostics: Vec<_> = catalog
        .diagnostics
        .iter()
        .filter(|d| {
            d.file() == key || catalog.failed.values().any(|fs| fs.contains(&key) && fs.iter().any(|f| f == d.file()))
        })
        .cloned()
        .collect();
    let ok = !diagnostics.iter().any(|d| d.is_error());
    json(&Validation { ok, diagnostics })
}

/// A workflow file's path as `validate` takes it (the same rule as its schema's pattern):
/// folders and a `.toml` file, no segment starting with `.`, no control characters, `\` or `:`.
fn valid_workflow_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let ok_char = |c: char| !(c.is_control() || c == '\\' || c == ':');
    segments.len() >= 2
        && segments.iter().all(|s| !s.is_empty() && !s.starts_with('.') && s.chars().all(ok_char))
        && segments.last().is_some_and(|f| f.len() > 5 && f.ends_with(".toml"))
}
