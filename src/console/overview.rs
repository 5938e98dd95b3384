//! The overview per unit on the console's home page: open cases by stage of the closed loop
//! (提 议 决 办 评, from each step's declared `stage`), overdue cases, deadlines falling due this
//! week, cases concluded this month, the month's average satisfaction, and the last reload.

use std::collections::HashMap;

use yishi_core::i18n::{Lang, Message};
use yishi_engine::service::EngineError;
use yishi_engine::service::stats::Month;
use yishi_engine::store::ListFilter;

use crate::server::AppState;
use crate::server::auth::Principal;

/// The stages of the closed loop, in order.
pub const STAGES: [&str; 5] = ["raise", "deliberate", "decide", "carry_out", "evaluate"];

/// Most open cases of one unit read for the overview.
const MAX_OPEN: u32 = 5_000;
/// Most open cases whose deadlines are read for "due this week".
const MAX_DEADLINES: usize = 500;

/// One unit's row.
pub struct UnitOverview {
    pub path: String,
    pub name: String,
    /// Open cases per stage (in [`STAGES`] order), then those at a step of no stage.
    pub by_stage: [usize; 6],
    pub overdue: usize,
    pub due_this_week: usize,
    pub concluded_this_month: usize,
    pub satisfaction: String,
}

/// The last reload, for people.
pub struct ReloadLine {
    pub at: String,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// The overview of the units in `p`'s scope that have workflows.
pub async fn units(st: &AppState, p: &Principal, l: Lang) -> Result<Vec<UnitOverview>, EngineError> {
    let active = st.engine.active();
    let now = st.engine.now();
    let month = Month::of(now, st.zone);
    let month_start = month.and_then(|m| m.start(st.zone)).unwrap_or(now);
    let mut out = Vec::new();
    for (path, unit) in &active.catalog.units {
        if path.is_empty() || !p.sees(path) || !active.current.values().any(|(_, d)| &d.unit == path && !d.is_abstract)
        {
            continue;
        }
        let here = Some(vec![path.clone()]);
        let open = st
            .engine
            .list(&ListFilter {
                units: here.clone(),
                status: Some("active".into()),
                limit: MAX_OPEN,
                ..ListFilter::default()
            })
            .await?;
        let mut by_stage = [0usize; 6];
        let mut stage_of: HashMap<(String, String), Option<usize>> = HashMap::new();
        for c in &open {
            for step in &c.active_steps {
                let key = (c.workflow.clone(), step.clone());
                if !stage_of.contains_key(&key) {
                    let stage = active
                        .current
                        .get(&c.workflow)
                        .and_then(|(_, d)| d.step(step))
                        .and_then(|s| s.stage.as_deref())
                        .and_then(|s| STAGES.iter().position(|x| *x == s));
                    stage_of.insert(key.clone(), stage);
                }
                by_stage[stage_of[&key].unwrap_or(5)] += 1;
            }
        }
        let overdue = st
            .engine
            .list(&ListFilter {
                units: here.clone(),
                status: Some("active".into()),
                overdue: true,
                limit: MAX_OPEN,
                ..ListFilter::default()
            })
            .await?
            .len();
        let mut due_this_week = 0;
        for c in open.iter().take(MAX_DEADLINES) {
            due_this_week += st
                .engine
                .timers(c.id)
                .await?
                .iter()
                .filter(|t| t.name == "deadline" && t.due_at >= now && t.due_at < now + 7 * 86_400_000)
                .count();
        }
        let concluded_this_month = st
            .engine
            .list(&ListFilter {
                units: here.clone(),
                status: Some("completed".into()),
                updated_from: Some(month_start),
                limit: MAX_OPEN,
                ..ListFilter::default()
            })
            .await?
            .len();
        let satisfaction = match month {
            Some(m) => st
                .engine
                .stats(path, m, m, st.zone)
                .await?
                .totals
                .first()
                .and_then(|t| t.average_satisfaction)
                .map_or_else(|| "-".to_owned(), |a| format!("{a:.1}")),
            None => "-".to_owned(),
        };
        out.push(UnitOverview {
            path: path.clone(),
            name: unit.name.clone(),
            by_stage,
            overdue,
            due_this_week,
            concluded_this_month,
            satisfaction,
        });
    }
    let _ = l;
    Ok(out)
}

/// Deadlines falling due in the next 7 days in `p`'s scope, soonest first: when, the case, its
/// title, the step, and how long is left (of the first 500 open cases of each unit).
pub async fn due_soon(st: &AppState, p: &Principal, l: Lang) -> Result<Vec<[String; 5]>, EngineError> {
    let active = st.engine.active();
    let now = st.engine.now();
    let mut out: Vec<(i64, [String; 5])> = Vec::new();
    for path in active.catalog.units.keys().filter(|u| !u.is_empty() && p.sees(u)) {
        let filter = ListFilter {
            units: Some(vec![path.clone()]),
            status: Some("active".into()),
            limit: MAX_DEADLINES as u32,
            ..ListFilter::default()
        };
        for c in st.engine.list(&filter).await? {
            for t in st.engine.timers(c.id).await? {
                if t.name != "deadline" || t.due_at < now || t.due_at >= now + 7 * 86_400_000 {
                    continue;
                }
                let row = st.engine.get(c.id).await?;
                let title = row.state.data.get("title").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                let step = active
                    .current
                    .get(&c.workflow)
                    .and_then(|(_, d)| d.step(&t.step))
                    .and_then(|s| s.title.as_ref())
                    .map_or_else(|| t.step.clone(), |x| x.get(l).to_owned());
                let hours = (t.due_at - now) / 3_600_000;
                let left = if hours >= 24 {
                    Message::new("console-due-in-days").arg("n", hours / 24).render(l)
                } else {
                    Message::new("console-due-in-hours").arg("n", hours.max(1)).render(l)
                };
                out.push((
                    t.due_at,
                    [st.local_time(t.due_at).chars().take(16).collect(), c.id.to_string(), title, step, left],
                ));
            }
        }
    }
    out.sort_by_key(|x| x.0);
    Ok(out.into_iter().map(|x| x.1).collect())
}

/// The stages' titles, from the workflows (the shipped ones declare 提 议 决 办 评).
pub fn stage_titles(st: &AppState, l: Lang) -> Vec<String> {
    let active = st.engine.active();
    STAGES
        .iter()
        .map(|s| {
            active
                .current
                .values()
                .find_map(|(_, d)| d.stages.get(*s).map(|t| t.get(l).to_owned()))
                .unwrap_or_else(|| (*s).to_owned())
        })
        .chain(std::iter::once(Message::new("console-stage-other").render(l)))
        .collect()
}

/// The last reload, with the errors of files in `p`'s scope.
pub fn reload(st: &AppState, p: &Principal, l: Lang) -> Option<ReloadLine> {
    let last = st.engine.last_reload()?;
    let errors = last
        .diagnostics
        .iter()
        .filter(|d| p.sees(yishi_core::files::parent_dir(d.file())))
        .take(5)
        .map(|d| d.render_line(l))
        .collect();
    Some(ReloadLine { at: st.local_time(last.at).chars().take(16).collect(), ok: last.ok, errors })
}
