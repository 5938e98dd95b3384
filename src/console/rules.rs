//! The console's rule editor (admins): open a rules file of the workflows folder, edit it,
//! "检查" runs the checker and shows every diagnostic at its line, "预览变更" shows what would
//! change (in words, the cases on each affected workflow's steps, the scenarios' results), and
//! "保存并启用" writes the file atomically and activates it through the same path as a file
//! save (checker and scenario gate), refused with the reasons when either fails. Each save is
//! recorded on the versions it makes (who, which file).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use yishi_core::files::FileSet;
use yishi_core::i18n::{Lang, Message};
use yishi_core::msg;
use yishi_engine::store::ListFilter;

use super::pages::{Page, Signed, html_page, internal, localised, signed};
use super::same;
use crate::server::AppState;
use crate::server::auth::ApiRole;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

localised!(FilesPage, EditPage);

/// A workflow whose version would change: its key, the change in words, and its cases under
/// way per step.
type Change = (String, Vec<String>, Vec<(String, usize)>);

#[derive(Template)]
#[template(path = "console/rules.html")]
struct FilesPage {
    page: Page,
    files: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/rule.html")]
struct EditPage {
    page: Page,
    file: String,
    text: String,
    rows: usize,
    /// The text's lines, numbered, with the diagnostics at each.
    lines: Vec<(usize, String, Vec<String>)>,
    /// Diagnostics of other files, or of no line.
    elsewhere: Vec<String>,
    checked: bool,
    errors: usize,
    changes: Vec<Change>,
    scenarios: Vec<(String, bool)>,
    notice: Option<String>,
}

fn text(l: Lang, key: &'static str) -> String {
    Message::new(key).render(l)
}

/// A file admins of this scope may edit: inside a unit they see (the folder's own files, such
/// as shared calendars, for admins of everything only).
fn editable(s: &Signed, file: &str) -> bool {
    // The unit a file belongs to: its folder, above any of the reserved folders (lists, scripts ...).
    let dir = yishi_core::files::parent_dir(file);
    let unit =
        dir.split('/').take_while(|c| !yishi_core::check::RESERVED_DIRS.contains(c)).collect::<Vec<_>>().join("/");
    !file.contains("..")
        && (file.ends_with(".toml") || file.ends_with(".rhai"))
        && if unit.is_empty() { s.principal.scope == "*" } else { s.principal.sees(&unit) }
}

fn admin(s: &Signed) -> Option<Response> {
    s.principal
        .require(ApiRole::Admin)
        .is_err()
        .then(|| super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-not-allowed")))
}

async fn folder(st: &AppState) -> Result<FileSet, Response> {
    let dir = st.reloader.dir().to_path_buf();
    match tokio::task::spawn_blocking(move || FileSet::load_dir(&dir)).await {
        Ok(Ok(f)) => Ok(f),
        _ => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

pub async fn files(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = admin(&s) {
        return r;
    }
    let set = match folder(&st).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let files = set.paths().filter(|p| editable(&s, p)).map(str::to_owned).collect();
    html_page(&FilesPage { page: s.page(s.lang, "console-rules"), files }, &headers, s.chose)
}

/// The editor for `file`, with `text` (as stored, or as edited).
fn editor(s: &Signed, file: &str, text_now: &str) -> EditPage {
    EditPage {
        page: s.page(s.lang, "console-rules"),
        file: file.to_owned(),
        text: text_now.to_owned(),
        rows: text_now.lines().count().clamp(10, 60) + 2,
        lines: text_now.lines().enumerate().map(|(i, l)| (i + 1, l.to_owned(), Vec::new())).collect(),
        elsewhere: Vec::new(),
        checked: false,
        errors: 0,
        changes: Vec::new(),
        scenarios: Vec::new(),
        notice: None,
    }
}

pub async fn edit(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = admin(&s) {
        return r;
    }
    let file = q.get("file").cloned().unwrap_or_default();
    let set = match folder(&st).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(current) = set.get(&file).filter(|_| editable(&s, &file)) else {
        return super::refused(StatusCode::NOT_FOUND, s.lang, &msg!("console-no-rules-file", file = &file));
    };
    let mut page = editor(&s, &file, current);
    if q.contains_key("saved") {
        page.notice = Some(text(s.lang, "console-rules-saved"));
    }
    html_page(&page, &headers, s.chose)
}

/// What checking (and previewing) the folder with `file` replaced by `body` finds.
async fn check(st: &AppState, s: &Signed, file: &str, body: &str, preview: bool) -> Result<EditPage, Response> {
    let l = s.lang;
    let mut set = folder(st).await?;
    set.insert(file.to_owned(), body.to_owned());
    let catalog = yishi_core::check(&set, st.engine.registry(), st.engine.sandbox());
    let mut page = editor(s, file, body);
    page.checked = true;
    for d in catalog.diagnostics.iter().filter(|d| d.is_error() || d.file() == file) {
        if d.is_error() {
            page.errors += 1;
        }
        let line = d.render_line(l);
        let at = (d.file() == file).then(|| line.split(':').nth(1).and_then(|n| n.parse::<usize>().ok())).flatten();
        match at.and_then(|n| page.lines.get_mut(n.saturating_sub(1))) {
            Some(row) => row.2.push(line),
            None if s.principal.sees(yishi_core::files::parent_dir(d.file())) || s.principal.scope == "*" => {
                page.elsewhere.push(line);
            }
            None => {}
        }
    }
    if preview {
        let active = st.engine.active();
        let changed: Vec<String> = catalog
            .definitions
            .iter()
            .filter(|(k, d)| active.current.get(*k).is_none_or(|(_, cur)| cur.hash != d.hash))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &changed {
            let new = &catalog.definitions[key];
            let words: Vec<String> = match active.current.get(key) {
                Some((_, cur)) => yishi_core::describe::diff(&cur.effective, &new.effective)
                    .into_iter()
                    .map(|c| c.text.render(l))
                    .collect(),
                None => vec![text(l, "console-rules-new-workflow")],
            };
            let mut at_steps: BTreeMap<String, usize> = BTreeMap::new();
            let filter = ListFilter {
                workflow: Some(key.clone()),
                status: Some("active".into()),
                limit: 5_000,
                ..ListFilter::default()
            };
            if let Ok(open) = st.engine.list(&filter).await {
                for c in open {
                    for step in c.active_steps {
                        *at_steps.entry(step).or_default() += 1;
                    }
                }
            }
            page.changes.push((key.clone(), words, at_steps.into_iter().collect()));
        }
        for r in yishi_engine::scenario::run_for(&catalog, &set, st.engine.registry(), &changed).await {
            if !r.passed {
                page.errors += 1;
                for f in &r.failures {
                    page.elsewhere.push(f.render_line(l));
                }
            }
            page.scenarios.push((format!("{} ({})", r.title, r.file), r.passed));
        }
    }
    Ok(page)
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("console-save~");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub async fn act(State(st): St, headers: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = admin(&s) {
        return r;
    }
    if !same(&s.holder.session.csrf, f.get("csrf").map_or("", String::as_str)) {
        return super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-csrf"));
    }
    let file = f.get("file").cloned().unwrap_or_default();
    let body = f.get("text").cloned().unwrap_or_default().replace("\r\n", "\n");
    let known = match folder(&st).await {
        Ok(set) => set.get(&file).is_some(),
        Err(r) => return r,
    };
    if !known || !editable(&s, &file) {
        return super::refused(StatusCode::NOT_FOUND, s.lang, &msg!("console-no-rules-file", file = &file));
    }
    let what = f.get("do").map_or("check", String::as_str);
    let mut page = match check(&st, &s, &file, &body, what != "check").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if what == "save" {
        if page.errors > 0 {
            page.notice = Some(msg!("console-rules-refused", errors = page.errors).render(s.lang));
            let mut r = html_page(&page, &headers, None);
            *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return r;
        }
        let path = st.reloader.dir().join(&file);
        if let Err(e) = write_atomically(&path, &body) {
            tracing::error!(error = %e, file = %file, "console save");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let trigger = format!("console: {} saved {file}", s.principal.name);
        match st.reloader.reload(&trigger).await {
            Ok(status) if status.ok => return super::see_other(&format!("/rules/edit?file={file}&saved=1")),
            Ok(status) => {
                page.notice = Some(msg!("console-rules-kept", errors = status.diagnostics.len()).render(s.lang));
            }
            Err(e) => return internal(&e),
        }
    }
    html_page(&page, &headers, None)
}
