//! The console's cases: the list (filters, paging, CSV for Excel), starting a case, and one
//! case's page: its data as a table, its workflow drawn with where it is and where it has been,
//! deadlines counting down, the actions it accepts now as labelled forms, and its history.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use yishi_core::definition::Definition;
use yishi_core::describe::diagram::{Diagram, Marks};
use yishi_core::i18n::{Lang, Message};
use yishi_core::kind::{Actor, FieldType};
use yishi_core::msg;
use yishi_core::runtime::{ActionRequest, Event};
use yishi_engine::service::EngineError;
use yishi_engine::store::{InstanceRow, ListFilter};

use super::pages::{Page, Signed, html_page, internal, localised, signed};
use super::{same, see_other};
use crate::server::AppState;
use crate::server::auth::ApiRole;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

/// Cases on one page of the list.
const PAGE: u32 = 50;

localised!(CasesPage, CasePage);

#[derive(Template)]
#[template(path = "console/cases.html")]
struct CasesPage {
    page: Page,
    filters: Vec<(&'static str, String, String)>,
    overdue: bool,
    by_urgency: bool,
    rows: Vec<CaseRow>,
    next: Option<String>,
    csv: String,
    workflows: Vec<(String, String)>,
    can_start: bool,
    error: Option<String>,
}

struct CaseRow {
    id: i64,
    title: String,
    workflow: String,
    unit: String,
    status: String,
    steps: String,
    urgency: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "console/case.html")]
struct CasePage {
    page: Page,
    id: i64,
    title: String,
    workflow: String,
    unit: String,
    status: String,
    data: Vec<(String, String)>,
    deadlines: Vec<(String, String, String, bool)>,
    actions: Vec<ActionForm>,
    timeline: Vec<TimelineRow>,
    notice: Option<String>,
    error: Option<String>,
}

struct ActionForm {
    step: String,
    action: String,
    title: String,
    fields: Vec<FieldControl>,
}

/// One labelled control of an action form.
pub struct FieldControl {
    pub name: String,
    pub label: String,
    pub required: bool,
    /// `text`, `textarea`, `number`, `decimal`, `checkbox`, `choice`, `rating`, `lines`, `date`,
    /// `tasks` (one `title | weight` a line), `pairs` (one `key: value` a line).
    pub kind: &'static str,
    /// For a choice: (value, label).
    pub options: Vec<(String, String)>,
}

struct TimelineRow {
    at: String,
    who: String,
    what: String,
    refused: bool,
}

fn text(l: Lang, key: &'static str) -> String {
    Message::new(key).render(l)
}

/// A value for a table cell: text as it is, numbers and booleans as written, lists joined,
/// objects as `key: value` pairs.
fn cell(v: &Value, l: Lang) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => text(l, if *b { "console-yes" } else { "console-no" }),
        Value::Array(a) => a.iter().map(|x| cell(x, l)).collect::<Vec<_>>().join("、"),
        Value::Object(m) => {
            if m.contains_key("key")
                && m.contains_key("args")
                && let Ok(msg) = serde_json::from_value::<Message>(v.clone())
            {
                return msg.render(l);
            }
            m.iter().map(|(k, x)| format!("{k}: {}", cell(x, l))).collect::<Vec<_>>().join("；")
        }
        other => other.to_string(),
    }
}

/// The title of a step, an action or an outcome in the workflow's own words.
fn label(def: &Definition, id: &str, l: Lang) -> String {
    if let Some(s) = def.step(id)
        && let Some(t) = &s.title
    {
        return t.get(l).to_owned();
    }
    def.labels.get(id).map_or_else(|| id.to_owned(), |t| t.get(l).to_owned())
}

fn status_word(status: &str, l: Lang) -> String {
    text(
        l,
        match status {
            "active" => "console-status-active",
            "completed" => "console-status-completed",
            "cancelled" => "console-status-cancelled",
            _ => "console-status-failed",
        },
    )
}

/// "due in 3 days", "overdue by 2 days".
fn countdown(due: i64, now: i64, l: Lang) -> (String, bool) {
    let left = due - now;
    let (n, unit_days) = if left.abs() >= 86_400_000 {
        (left.abs() / 86_400_000, true)
    } else {
        ((left.abs() / 3_600_000).max(1), false)
    };
    let m = match (left >= 0, unit_days) {
        (true, true) => msg!("console-due-in-days", n = n),
        (true, false) => msg!("console-due-in-hours", n = n),
        (false, true) => msg!("console-overdue-days", n = n),
        (false, false) => msg!("console-overdue-hours", n = n),
    };
    (m.render(l), left < 0)
}

fn filter_of(q: &HashMap<String, String>, scope: &str) -> ListFilter {
    let mut f = ListFilter { limit: PAGE, ..ListFilter::default() };
    let nonempty = |k: &str| q.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    f.units =
        nonempty("unit").map(|u| vec![format!("{u}/")]).or_else(|| (scope != "*").then(|| vec![format!("{scope}/")]));
    f.workflow = nonempty("workflow");
    f.status = nonempty("status");
    f.step = nonempty("step");
    f.before = nonempty("cursor").and_then(|c| c.parse().ok());
    f.title_contains = nonempty("text");
    f.overdue = q.get("overdue").is_some_and(|v| v == "1" || v == "on" || v == "true");
    f
}

fn query_string(q: &HashMap<String, String>, skip: &str) -> String {
    let mut keys: Vec<&String> = q.keys().filter(|k| k.as_str() != skip && k.as_str() != "lang").collect();
    keys.sort();
    keys.iter()
        .filter(|k| !q[k.as_str()].is_empty())
        .map(|k| format!("{}={}", k, urlencode(&q[k.as_str()])))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn list_rows(st: &AppState, f: &ListFilter, l: Lang) -> Result<Vec<(CaseRow, Vec<String>)>, EngineError> {
    let items = st.engine.list(f).await?;
    let mut out = Vec::with_capacity(items.len());
    let active = st.engine.active();
    for s in items {
        let row = st.engine.get(s.id).await?;
        let title = row.state.data.get("title").map(|v| cell(v, l)).unwrap_or_default();
        let wf_title =
            active.current.get(&s.workflow).map_or_else(|| s.workflow.clone(), |(_, d)| d.title.get(l).to_owned());
        let def = st.engine.definition(row.version).await?;
        let steps = s.active_steps.iter().map(|x| label(&def, x, l)).collect::<Vec<_>>().join("、");
        let urgency = s
            .urgency
            .clone()
            .map(|u| def.urgency.as_ref().and_then(|d| d.levels.get(&u)).map_or(u.clone(), |t| t.get(l).to_owned()))
            .unwrap_or_default();
        let csv = vec![
            s.id.to_string(),
            s.unit.clone(),
            s.workflow.clone(),
            status_word(&s.status, l),
            s.outcome.clone().unwrap_or_default(),
            steps.clone(),
            urgency.clone(),
            title.clone(),
            st.local_time(s.created_at),
            st.local_time(s.updated_at),
        ];
        out.push((
            CaseRow {
                id: s.id,
                title,
                workflow: wf_title,
                unit: s.unit.clone(),
                status: status_word(&s.status, l),
                steps,
                urgency,
                updated: st.local_time(s.updated_at).chars().take(16).collect(),
            },
            csv,
        ));
    }
    Ok(out)
}

pub async fn list(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.lang;
    let mut f = filter_of(&q, &s.principal.scope);
    let by_urgency = q.get("sort").is_some_and(|v| v == "urgency");
    if by_urgency {
        f.by_urgency = Some(st.engine.urgency_order(f.workflow.as_deref())).filter(|o| !o.is_empty());
    }
    if let Some(u) = q.get("unit").filter(|u| !u.is_empty())
        && !s.principal.sees(u)
    {
        return see_other("/cases");
    }
    let rows = match list_rows(&st, &f, l).await {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let next = (rows.len() as u32 == PAGE)
        .then(|| rows.last().map(|r| format!("/cases?{}&cursor={}", query_string(&q, "cursor"), r.0.id)))
        .flatten();
    let active = st.engine.active();
    let workflows: Vec<(String, String)> = active
        .current
        .iter()
        .filter(|(_, (_, d))| !d.is_abstract && s.principal.sees(&d.unit))
        .map(|(k, (_, d))| (k.clone(), format!("{}（{}）", d.title.get(l), d.unit)))
        .collect();
    let filters = vec![
        ("unit", text(l, "console-filter-unit"), q.get("unit").cloned().unwrap_or_default()),
        ("workflow", text(l, "console-filter-workflow"), q.get("workflow").cloned().unwrap_or_default()),
        ("status", text(l, "console-filter-status"), q.get("status").cloned().unwrap_or_default()),
        ("step", text(l, "console-filter-step"), q.get("step").cloned().unwrap_or_default()),
        ("text", text(l, "console-filter-text"), q.get("text").cloned().unwrap_or_default()),
    ];
    let page = CasesPage {
        page: s.page(l, "console-cases"),
        filters,
        overdue: f.overdue,
        by_urgency,
        rows: rows.into_iter().map(|r| r.0).collect(),
        next,
        csv: format!("/cases.csv?{}", query_string(&q, "cursor")),
        workflows,
        can_start: s.principal.role >= ApiRole::Operator,
        error: None,
    };
    html_page(&page, &headers, s.chose)
}

/// The list as CSV (UTF-8 with a byte-order mark, so that Excel reads the Chinese), up to
/// 5,000 cases.
pub async fn csv(State(st): St, headers: HeaderMap, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.lang;
    let mut f = filter_of(&q, &s.principal.scope);
    f.limit = 5_000;
    let rows = match list_rows(&st, &f, l).await {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let header: Vec<String> = [
        "console-col-id",
        "console-col-unit",
        "console-col-workflow",
        "console-col-status",
        "console-col-outcome",
        "console-col-steps",
        "console-col-urgency",
        "console-col-title",
        "console-col-created",
        "console-col-updated",
    ]
    .iter()
    .map(|k| text(l, k))
    .collect();
    let rows: Vec<Vec<String>> = rows.into_iter().map(|r| r.1).collect();
    crate::server::reply::csv("cases.csv", &header, &rows, true)
}

#[derive(serde::Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    title: String,
}

/// Starts a case from the list page's form (workflow and title); the case page then offers
/// its first step's actions.
pub async fn start(State(st): St, headers: HeaderMap, Form(f): Form<StartForm>) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !same(&s.holder.session.csrf, &f.csrf) {
        return super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-csrf"));
    }
    if s.principal.require(ApiRole::Operator).is_err()
        || !s.principal.sees(crate::server::instances::unit_of(&f.workflow))
    {
        return super::refused(StatusCode::FORBIDDEN, s.lang, &msg!("console-not-allowed"));
    }
    let mut data = Map::new();
    if !f.title.trim().is_empty() {
        data.insert("title".into(), Value::String(f.title.trim().to_owned()));
    }
    let actor = Actor { id: s.principal.name.clone(), roles: s.principal.acts_as.clone() };
    match st.engine.start(&f.workflow, data, &actor, None).await {
        Ok(v) => see_other(&format!("/cases/{}?started=1", v.id)),
        Err(EngineError::NotFound(m) | EngineError::Refused { message: m, .. }) => {
            super::refused(StatusCode::UNPROCESSABLE_ENTITY, s.lang, &m)
        }
        Err(e) => internal(&e),
    }
}

/// The controls of an action's fields.
pub fn controls(def: &Definition, fields: &[yishi_core::kind::Field], l: Lang) -> Vec<FieldControl> {
    fields
        .iter()
        .map(|f| {
            let caption = f.summary.render(l);
            let (kind, options) = match &f.ty {
                FieldType::String
                    if ["minutes", "note", "text", "response", "reason", "comment", "changes", "resolution"]
                        .contains(&f.name.as_str()) =>
                {
                    ("textarea", Vec::new())
                }
                FieldType::String => ("text", Vec::new()),
                FieldType::Int if ["score", "rating"].contains(&f.name.as_str()) => {
                    ("rating", (1..=5).map(|n| (n.to_string(), n.to_string())).collect())
                }
                FieldType::Int => ("number", Vec::new()),
                FieldType::Number => ("decimal", Vec::new()),
                FieldType::Bool => ("checkbox", Vec::new()),
                FieldType::OneOf(values) => (
                    "choice",
                    values
                        .iter()
                        .map(|v| {
                            let word = match v.as_str() {
                                "for" => text(l, "console-vote-for"),
                                "against" => text(l, "console-vote-against"),
                                "abstain" => text(l, "console-vote-abstain"),
                                other => label(def, other, l),
                            };
                            (v.clone(), word)
                        })
                        .collect(),
                ),
                FieldType::Strings => ("lines", Vec::new()),
                FieldType::Date => ("date", Vec::new()),
                // A list of tasks: one per line, `title | weight`.
                FieldType::Any | FieldType::Object if f.name == "tasks" => ("tasks", Vec::new()),
                // Any other structure: one `key: value` per line.
                FieldType::Object | FieldType::Any => ("pairs", Vec::new()),
            };
            FieldControl { name: f.name.clone(), label: caption, required: f.required, kind, options }
        })
        .collect()
}

/// Tasks written one per line as `title | weight` (weight 1 when left out), numbered `t1`, `t2` ...
fn tasks(raw: &str) -> Result<Value, ()> {
    let mut out = Vec::new();
    for (i, line) in raw.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        let (title, weight) = match line.split_once(['|', '｜']) {
            Some((t, w)) => (t.trim(), w.trim().parse::<f64>().map_err(|_| ())?),
            None => (line, 1.0),
        };
        out.push(serde_json::json!({ "id": format!("t{}", i + 1), "title": title, "weight": weight }));
    }
    Ok(Value::Array(out))
}

/// `key: value` lines as an object of strings.
fn pairs(raw: &str) -> Result<Value, ()> {
    let mut m = Map::new();
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once([':', '：']).ok_or(())?;
        m.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
    }
    Ok(Value::Object(m))
}

/// A form's value for field `name` of type `ty`, or `None` when left empty.
fn field_value(name: &str, ty: &FieldType, raw: Option<&String>) -> Result<Option<Value>, ()> {
    let Some(raw) = raw.map(|r| r.trim()).filter(|r| !r.is_empty()) else {
        return Ok(matches!(ty, FieldType::Bool).then_some(Value::Bool(false)));
    };
    Ok(Some(match ty {
        FieldType::Object | FieldType::Any if name == "tasks" => tasks(raw)?,
        FieldType::Object | FieldType::Any => pairs(raw)?,
        FieldType::Int => Value::from(raw.parse::<i64>().map_err(|_| ())?),
        FieldType::Number => {
            serde_json::Number::from_f64(raw.parse::<f64>().map_err(|_| ())?).map(Value::Number).ok_or(())?
        }
        FieldType::Bool => Value::Bool(matches!(raw, "true" | "on" | "1")),
        FieldType::Strings => Value::Array(
            raw.lines().map(str::trim).filter(|x| !x.is_empty()).map(|x| Value::String(x.to_owned())).collect(),
        ),
        _ => Value::String(raw.to_owned()),
    }))
}

async fn case_page(
    st: &AppState,
    s: &Signed,
    row: &InstanceRow,
    notice: Option<Message>,
    error: Option<Message>,
) -> Result<CasePage, EngineError> {
    let l = s.lang;
    let def = st.engine.definition(row.version).await?;
    let now = st.engine.now();
    let history = st.engine.history(row.id).await?;
    let mut timeline = Vec::new();
    for e in &history {
        if let Some((who, what, refused)) = describe(&def, &e.event, l) {
            timeline.push(TimelineRow { at: st.local_time(e.at).chars().take(16).collect(), who, what, refused });
        }
    }
    timeline.reverse();
    let deadlines = st
        .engine
        .timers(row.id)
        .await?
        .into_iter()
        .map(|t| {
            let (left, overdue) = countdown(t.due_at, now, l);
            let what = if t.name == "deadline" { text(l, "console-deadline") } else { text(l, "console-reminder") };
            (
                label(&def, &t.step, l),
                format!("{what} · {}", st.local_time(t.due_at).chars().take(16).collect::<String>()),
                left,
                overdue,
            )
        })
        .collect();
    let can_act = s.principal.role >= ApiRole::Operator;
    let actions = if can_act {
        st.engine
            .accepted_actions(row)
            .await?
            .into_iter()
            .map(|a| ActionForm {
                title: format!(
                    "{} · {}",
                    label(&def, &a.step, l),
                    def.labels.get(&a.action).map_or_else(|| a.summary.render(l), |t| t.get(l).to_owned())
                ),
                fields: controls(&def, &a.fields, l),
                step: a.step,
                action: a.action,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(CasePage {
        page: s.page(l, "console-case"),
        id: row.id,
        title: row.state.data.get("title").map(|v| cell(v, l)).unwrap_or_else(|| format!("#{}", row.id)),
        workflow: def.title.get(l).to_owned(),
        unit: row.unit.clone(),
        status: status_word(row.state.status.as_str(), l),
        data: row.state.data.iter().map(|(k, v)| (label(&def, k, l), cell(v, l))).collect(),
        deadlines,
        actions,
        timeline,
        notice: notice.map(|m| m.render(l)),
        error: error.map(|m| m.render(l)),
    })
}

/// One history entry for people: who, what, and whether it was refused; `None` for the
/// engine's own bookkeeping.
fn describe(def: &Definition, e: &Event, l: Lang) -> Option<(String, String, bool)> {
    let step = |s: &str| label(def, s, l);
    let (who, what, refused) = match e {
        Event::Started { .. } => (String::new(), text(l, "console-ev-started"), false),
        Event::Action { action, step: s, actor, on_behalf_of, payload, .. } => {
            let who = match on_behalf_of {
                Some(o) if o.id != actor.id => msg!("console-on-behalf", actor = &actor.id, resident = &o.id).render(l),
                _ => actor.id.clone(),
            };
            let detail = payload
                .iter()
                .map(|(k, v)| format!("{}: {}", label(def, k, l), cell(v, l)))
                .collect::<Vec<_>>()
                .join("；");
            let mut what =
                if s.is_empty() { label(def, action, l) } else { format!("{} · {}", step(s), label(def, action, l)) };
            if !detail.is_empty() {
                what = format!("{what}（{detail}）");
            }
            (who, what, false)
        }
        Event::Refused { action, actor, reason, .. } => (
            actor.id.clone(),
            msg!("console-ev-refused", action = label(def, action, l), reason = reason.render(l)).render(l),
            true,
        ),
        Event::Entered { step: s, .. } => (String::new(), msg!("console-ev-entered", step = step(s)).render(l), false),
        Event::Left { step: s, outcome, .. } if outcome != "split" && outcome != "arrived" && outcome != "end" => {
            (String::new(), msg!("console-ev-left", step = step(s), outcome = label(def, outcome, l)).render(l), false)
        }
        Event::TimerFired { step: s, timer, .. } if timer == "deadline" => {
            (String::new(), msg!("console-ev-deadline", step = step(s)).render(l), false)
        }
        Event::Notified { notice } => {
            (String::new(), msg!("console-ev-notified", text = notice.message.render(l)).render(l), false)
        }
        Event::Noted { note, .. } => (String::new(), note.render(l), false),
        Event::Completed { outcome } => (
            String::new(),
            msg!("console-ev-completed", outcome = outcome.as_deref().map(|o| label(def, o, l)).unwrap_or_default())
                .render(l),
            false,
        ),
        Event::Cancelled { reason } => (String::new(), msg!("console-ev-cancelled", reason = reason).render(l), false),
        Event::Failed { error } => (String::new(), msg!("console-ev-failed", error = error.render(l)).render(l), true),
        Event::UrgencyChanged { from, to, actor, reason } => (
            actor.id.clone(),
            msg!("console-ev-urgency", from = from.clone().unwrap_or_default(), to = to, reason = reason).render(l),
            false,
        ),
        Event::Merged { from, actor, .. } => {
            (actor.id.clone(), msg!("console-ev-merged", case = *from).render(l), false)
        }
        Event::MergedInto { into, actor, .. } => {
            (actor.id.clone(), msg!("console-ev-merged-into", case = *into).render(l), false)
        }
        Event::Gathered { gathering, .. } => {
            (String::new(), msg!("console-ev-gathered", sitting = *gathering).render(l), false)
        }
        Event::Released { gathering, .. } => {
            (String::new(), msg!("console-ev-released", sitting = *gathering).render(l), false)
        }
        Event::Concluded { gathering, outcome, actor, .. } => (
            actor.id.clone(),
            msg!("console-ev-concluded", sitting = *gathering, outcome = label(def, outcome, l)).render(l),
            false,
        ),
        _ => return None,
    };
    Some((who, what, refused))
}

pub async fn case(State(st): St, headers: HeaderMap, Path(id): Path<i64>, Query(q): Params) -> Response {
    let s = match signed(&st, &headers, &q).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(row) = visible(&st, &s, id).await else {
        return super::refused(StatusCode::NOT_FOUND, s.lang, &msg!("engine-no-instance", id = id));
    };
    let notice = if q.contains_key("started") {
        Some(msg!("console-started"))
    } else {
        q.contains_key("done").then(|| msg!("console-action-done"))
    };
    match case_page(&st, &s, &row, notice, None).await {
        Ok(p) => html_page(&p, &headers, s.chose),
        Err(e) => internal(&e),
    }
}

/// The case's workflow drawn (SVG), where it is now and where it has been set apart; an image
/// of its own with a policy that allows its styles and nothing else.
pub async fn diagram(State(st): St, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(row) = visible(&st, &s, id).await else {
        return super::refused(StatusCode::NOT_FOUND, s.lang, &msg!("engine-no-instance", id = id));
    };
    let (def, history) = match (st.engine.definition(row.version).await, st.engine.history(id).await) {
        (Ok(d), Ok(h)) => (d, h),
        (Err(e), _) | (_, Err(e)) => return internal(&e),
    };
    let visited = history
        .iter()
        .filter_map(|e| match &e.event {
            Event::Entered { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    let marks = Marks { current: row.state.active_steps().into_iter().map(str::to_owned).collect(), visited };
    let svg = Diagram::of(&def.effective, s.lang).svg(&marks);
    (
        [
            (axum::http::header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (axum::http::header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        ],
        svg,
    )
        .into_response()
}

/// The case, when the person's scope covers its unit.
async fn visible(st: &AppState, s: &Signed, id: i64) -> Option<InstanceRow> {
    let row = st.engine.get(id).await.ok()?;
    s.principal.sees(&row.unit).then_some(row)
}

/// An action from a case page's form, through the same engine call as the API's.
pub async fn act(
    State(st): St,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let s = match signed(&st, &headers, &HashMap::new()).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let l = s.lang;
    if !same(&s.holder.session.csrf, form.get("csrf").map_or("", String::as_str)) {
        return super::refused(StatusCode::FORBIDDEN, l, &msg!("console-csrf"));
    }
    let Some(row) = visible(&st, &s, id).await else {
        return super::refused(StatusCode::NOT_FOUND, l, &msg!("engine-no-instance", id = id));
    };
    if s.principal.require(ApiRole::Operator).is_err() {
        return super::refused(StatusCode::FORBIDDEN, l, &msg!("console-not-allowed"));
    }
    let (action, step) = (form.get("action").cloned().unwrap_or_default(), form.get("step").cloned());
    let accepts = match st.engine.accepted_actions(&row).await {
        Ok(a) => a,
        Err(e) => return internal(&e),
    };
    let mut payload = Map::new();
    let mut bad = None;
    if let Some(spec) = accepts.iter().find(|a| a.action == action && step.as_deref().is_none_or(|x| x == a.step)) {
        for f in &spec.fields {
            match field_value(&f.name, &f.ty, form.get(&format!("f.{}", f.name))) {
                Ok(Some(v)) => {
                    payload.insert(f.name.clone(), v);
                }
                Ok(None) => {}
                Err(()) => bad = Some(msg!("console-field-unreadable", field = f.summary.clone())),
            }
        }
    }
    let on_behalf_of = form
        .get("on_behalf_of")
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| Actor { id: r.to_owned(), roles: vec!["resident".into()] });
    let result = match bad {
        Some(m) => Err(m),
        None => {
            let req = ActionRequest {
                action,
                step,
                token: None,
                payload,
                actor: Actor { id: s.principal.name.clone(), roles: s.principal.acts_as.clone() },
                on_behalf_of,
            };
            st.engine.act(id, req, None, None).await.map(|_| ()).map_err(|e| e.message())
        }
    };
    match result {
        Ok(()) => see_other(&format!("/cases/{id}?done=1")),
        Err(m) => {
            let row = visible(&st, &s, id).await.unwrap_or(row);
            match case_page(&st, &s, &row, None, Some(m)).await {
                Ok(p) => {
                    let mut resp = html_page(&p, &headers, None);
                    *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
                    resp
                }
                Err(e) => internal(&e),
            }
        }
    }
}
