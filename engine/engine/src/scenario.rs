//! Scenarios: small files beside a workflow (`<unit>/scenarios/*.toml`) that play a case (who
//! does what, when) and state the outcome the community expects. `yishi test` runs them, and
//! a reload whose scenarios fail is not activated.
//!
//! Each scenario runs on its own in-memory database with a hand-moved clock, so it is fast,
//! isolated and deterministic, and it ends by checking that the case's state equals the replay
//! of its history.

use std::sync::Arc;

use chrono::DateTime;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use toml::Spanned;

use crate::service::{Config, Engine, EngineError, InstanceView};
use yishi_core::i18n::Message;
use yishi_core::msg;

use yishi_core::check::{Catalog, RESERVED_DIRS};
use yishi_core::clock::{Clock, ManualClock};
use yishi_core::diag::{Code, Diagnostic, Diagnostics, Origin};
use yishi_core::duration::Duration;
use yishi_core::files::{FileSet, parent_dir};
use yishi_core::kind::{Actor, Registry};
use yishi_core::runtime::{ActionRequest, replay};

/// A scenario file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The workflow: `id` in this unit, or `unit/id`.
    pub workflow: String,
    pub title: Option<String>,
    /// When the case starts (RFC 3339; default 2026-09-25T10:00:00+08:00, a Friday).
    pub start_at: Option<String>,
    /// The case's data at the start.
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub data: Map<String, Value>,
    /// The case's urgency level at intake (the workflow's default when absent).
    pub urgency: Option<String>,
    /// More cases, started right after the first: case 2, 3 ... (steps name them with `case`).
    #[serde(default)]
    pub cases: Vec<OtherCase>,
    #[serde(default)]
    #[schemars(with = "Vec<ScenarioStep>")]
    pub steps: Vec<Spanned<ScenarioStep>>,
    /// What must hold at the end.
    pub expect: Option<Expect>,
}

/// A further case of a scenario.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtherCase {
    /// Its workflow (default: the scenario's): `id` in this unit, or `unit/id`.
    pub workflow: Option<String>,
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub data: Map<String, Value>,
    pub urgency: Option<String>,
}

/// One step of a scenario: an action (possibly repeated for many people), or time passing.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioStep {
    /// The action to take.
    pub act: Option<String>,
    /// Who acts.
    #[serde(rename = "as")]
    pub actor: Option<ActorDecl>,
    /// On whose behalf (a paper ballot entered by a grid worker).
    pub on_behalf_of: Option<ActorDecl>,
    pub step: Option<String>,
    pub token: Option<u32>,
    #[serde(default)]
    #[schemars(with = "Map<String, Value>")]
    pub payload: Map<String, Value>,
    /// Repeat the action for ids `prefix + n`, n from `from` to `to` (each acting as itself).
    pub repeat: Option<Repeat>,
    /// Let time pass (`3d`, `5wd`), firing whatever falls due.
    pub advance: Option<String>,
    /// Let time pass up to this moment (RFC 3339), firing whatever falls due.
    pub advance_to: Option<String>,
    /// How many timers the time passing of this step must fire.
    pub expect_fired: Option<usize>,
    /// Act on the branch whose item is this (one branch per item of a list).
    #[schemars(with = "Option<Value>")]
    pub item: Option<Value>,
    /// Cancel the case (or, with `step`, one active step of it), giving this reason.
    pub cancel: Option<String>,
    /// The case this step acts on and checks: 1 (the default) is the scenario's first case,
    /// 2 and on its `cases`.
    pub case: Option<usize>,
    /// Merge that case (a number as in `case`) into this step's case, as `as`, giving `reason`.
    pub merge: Option<usize>,
    /// Change the case's urgency to this level (as `as`, giving `reason`).
    pub urgency: Option<String>,
    /// Why the urgency changes.
    pub reason: Option<String>,
    /// The action must be refused: `refused`, `forbidden`, `closed`, `conflict`,
    /// `script_failed`, or a piece of the message.
    pub expect_error: Option<String>,
    /// The payload field the refusal must name.
    pub expect_field: Option<String>,
    /// What must hold after this step.
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorDecl {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub prefix: String,
    pub from: u32,
    pub to: u32,
}

/// Expectations about the case.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// active, completed, cancelled or failed.
    pub status: Option<String>,
    pub outcome: Option<String>,
    /// The active steps, in order.
    pub active: Option<Vec<String>>,
    /// The case's urgency level.
    pub urgency: Option<String>,
    /// Values in the data document by dotted path: `"reps_vote.outcome" = "passed"`.
    #[serde(default)]
    #[schemars(with = "IndexMap<String, Value>")]
    pub data: IndexMap<String, Value>,
    /// Cases started from this one (follow-ups), counted.
    pub spawned: Option<usize>,
    /// The case's revision (how many changes it has had).
    pub revision: Option<i64>,
    /// Events of the history counted by type (`refused = 3`), or by type and step
    /// (`"token_cancelled:review_b" = 1`).
    #[serde(default)]
    #[schemars(with = "IndexMap<String, usize>")]
    pub events: IndexMap<String, usize>,
    /// The items of the active branches, in order (one branch per item of a list).
    #[schemars(with = "Option<Vec<Value>>")]
    pub items: Option<Vec<Value>>,
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub file: String,
    pub title: String,
    pub workflow: String,
    pub passed: bool,
    pub failures: Vec<Diagnostic>,
}

/// Finds the scenario files of a workflows folder.
pub fn scenario_paths(files: &FileSet) -> Vec<String> {
    files
        .paths()
        .filter(|p| {
            let dir = parent_dir(p);
            dir.rsplit('/').next() == Some("scenarios")
                && p.ends_with(".toml")
                && !parent_dir(dir).split('/').any(|c| RESERVED_DIRS.contains(&c))
        })
        .map(str::to_owned)
        .collect()
}

/// Runs every scenario in `files` against `catalog`. Scenarios of workflows that failed to
/// check are reported as failed.
pub async fn run_all(catalog: &Catalog, files: &FileSet, registry: &Registry) -> Vec<ScenarioResult> {
    let mut out = Vec::new();
    for path in scenario_paths(files) {
        let text = files.get(&path).unwrap_or_default();
        out.push(run_one(catalog, &path, text, registry).await);
    }
    out
}

/// The scenarios of the given workflows only (`unit/id` keys).
pub async fn run_for(
    catalog: &Catalog,
    files: &FileSet,
    registry: &Registry,
    workflows: &[String],
) -> Vec<ScenarioResult> {
    let mut out = Vec::new();
    for path in scenario_paths(files) {
        let text = files.get(&path).unwrap_or_default();
        let unit = parent_dir(parent_dir(&path));
        let Ok(sf) = toml::from_str::<ScenarioFile>(text) else {
            out.push(run_one(catalog, &path, text, registry).await);
            continue;
        };
        let key = if sf.workflow.contains('/') { sf.workflow.clone() } else { format!("{unit}/{}", sf.workflow) };
        if workflows.contains(&key) {
            out.push(run_one(catalog, &path, text, registry).await);
        }
    }
    out
}

async fn run_one(catalog: &Catalog, path: &str, text: &str, registry: &Registry) -> ScenarioResult {
    let mut diags = Diagnostics::new();
    let unit = parent_dir(parent_dir(path)).to_owned();
    let sf = match yishi_core::check::parse_typed::<ScenarioFile>(path, text, &mut diags) {
        Some(s) => s,
        None => return result(path, String::new(), String::new(), diags),
    };
    let key = if sf.workflow.contains('/') { sf.workflow.clone() } else { format!("{unit}/{}", sf.workflow) };
    let title = sf.title.clone().unwrap_or_else(|| path.rsplit('/').next().unwrap_or(path).to_owned());
    let Some(def) = catalog.definitions.get(&key).cloned() else {
        let why =
            if catalog.failed.contains_key(&key) { "scenario-workflow-errors" } else { "scenario-workflow-missing" };
        diags.push(Code::BadScenario, &Origin::file(path), None, Message::new(why).arg("workflow", &key), None);
        return result(path, title, key, diags);
    };
    if let Err(message) = play(&sf, &key, def, catalog, registry, path, text, &mut diags).await {
        diags.push(Code::BadScenario, &Origin::file(path), None, message, None);
    }
    result(path, title, key, diags)
}

fn result(path: &str, title: String, workflow: String, diags: Diagnostics) -> ScenarioResult {
    let failures = diags.into_sorted();
    ScenarioResult { file: path.to_owned(), title, workflow, passed: failures.is_empty(), failures }
}

#[allow(clippy::too_many_arguments)]
async fn play(
    sf: &ScenarioFile,
    key: &str,
    def: Arc<yishi_core::Definition>,
    catalog: &Catalog,
    registry: &Registry,
    path: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> Result<(), Message> {
    let start = match &sf.start_at {
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| msg!("scenario-bad-time", key = "start_at", detail = e.to_string()))?
            .timestamp_millis(),
        None => DateTime::parse_from_rfc3339("2026-09-25T10:00:00+08:00").map_err(internal)?.timestamp_millis(),
    };
    let clock = Arc::new(ManualClock::new(start));
    let store = crate::store::memory().await.map_err(internal)?;
    let engine = Engine::new(store, registry.clone(), clock.clone(), Config { observed: false, ..Config::default() });
    // Only this workflow and the ones it may start (follow-ups of the same unit) are needed.
    let mut sub = Catalog { units: catalog.units.clone(), ..Catalog::default() };
    for (k, d) in &catalog.definitions {
        if k == key || d.unit == def.unit {
            sub.definitions.insert(k.clone(), d.clone());
        }
    }
    engine.install(sub, "scenario").await.map_err(internal)?;
    let admin = Actor { id: "scenario".into(), roles: Vec::new() };
    let intake = crate::service::Intake { urgency: sf.urgency.clone(), ..Default::default() };
    let case = engine
        .start_with(key, sf.data.clone(), &admin, None, intake)
        .await
        .map_err(|e| msg!("scenario-start-failed", error = e.message()))?;
    let mut ids = vec![case.id];
    for other in &sf.cases {
        let key = match &other.workflow {
            None => key.to_owned(),
            Some(w) if w.contains('/') => w.clone(),
            Some(w) => format!("{}/{w}", def.unit),
        };
        let intake = crate::service::Intake { urgency: other.urgency.clone(), ..Default::default() };
        let c = engine
            .start_with(&key, other.data.clone(), &admin, None, intake)
            .await
            .map_err(|e| msg!("scenario-start-failed", error = e.message()))?;
        ids.push(c.id);
    }
    let case_id = |n: Option<usize>, i: usize| {
        let n = n.unwrap_or(1);
        ids.get(n.wrapping_sub(1)).copied().ok_or_else(|| {
            msg!("scenario-step", step = i + 1, what = msg!("scenario-no-case", case = n, cases = ids.len()))
        })
    };
    for (i, step) in sf.steps.iter().enumerate() {
        let s = step.get_ref();
        let id = case_id(s.case, i)?;
        let origin = Origin::new(path, Some(step.span()));
        let fail = |diags: &mut Diagnostics, what: Message| {
            diags.push(
                Code::ScenarioFailed,
                &origin,
                Some(text),
                msg!("scenario-step", step = i + 1, what = what),
                None,
            )
        };
        advance(s, i, &def, &clock, &engine, diags, &fail).await?;
        if let Some(reason) = &s.cancel {
            let admin = Actor { id: "scenario".into(), roles: Vec::new() };
            if let Err(e) = engine.cancel(id, s.step.as_deref(), reason, &admin).await {
                fail(diags, msg!("scenario-cancel-failed", error = e.message()));
            }
        }
        if let Some(other) = s.merge {
            let from = case_id(Some(other), i)?;
            let res = engine.merge(id, from, s.reason.as_deref().unwrap_or_default(), &step_actor(s)).await;
            judge(res.map(|_| ()), "merge", s, diags, &fail);
        }
        if let Some(level) = &s.urgency {
            let res =
                engine.set_urgency(id, level, s.reason.as_deref().unwrap_or_default(), &step_actor(s), None).await;
            judge(res.map(|_| ()), "urgency", s, diags, &fail);
        }
        if let Some(action) = &s.act {
            act(s, i, action, id, &engine, diags, &fail).await?;
        }
        if let Some(exp) = &s.expect {
            let v = engine.view(id).await.map_err(internal)?;
            for msg in check_expect(exp, &v, &engine).await {
                fail(diags, msg);
            }
        }
    }
    let v = engine.view(ids[0]).await.map_err(internal)?;
    if let Some(exp) = &sf.expect {
        for what in check_expect(exp, &v, &engine).await {
            diags.push(Code::ScenarioFailed, &Origin::file(path), None, msg!("scenario-at-end", what = what), None);
        }
    }
    for id in ids {
        let row = engine.get(id).await.map_err(internal)?;
        let history = engine.history(id).await.map_err(internal)?;
        if replay(history.iter().map(|e| (&e.event, e.at))) != row.state {
            diags.push(Code::ScenarioFailed, &Origin::file(path), None, msg!("scenario-replay"), None);
        }
    }
    Ok(())
}

type Fail<'a> = dyn Fn(&mut Diagnostics, Message) + Sync + 'a;

/// Moves the clock for a step's `advance` or `advance_to`, then fires what fell due.
async fn advance(
    s: &ScenarioStep,
    i: usize,
    def: &yishi_core::Definition,
    clock: &ManualClock,
    engine: &Arc<Engine>,
    diags: &mut Diagnostics,
    fail: &Fail<'_>,
) -> Result<(), Message> {
    let until = match (&s.advance, &s.advance_to) {
        (Some(d), _) => {
            let d = Duration::parse(d).map_err(|e| msg!("scenario-step", step = i + 1, what = e.message()))?;
            Some(def.calendar.add(clock.now(), d))
        }
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|e| {
                    let what = msg!("scenario-bad-time", key = "advance_to", detail = e.to_string());
                    msg!("scenario-step", step = i + 1, what = what)
                })?
                .timestamp_millis(),
        ),
        (None, None) => None,
    };
    if let Some(until) = until {
        clock.set(until.max(clock.now()));
        engine.deliver_outbox(&NoWebhooks).await.map_err(internal)?;
        match Box::pin(engine.fire_due()).await {
            Ok(n) => {
                if let Some(want) = s.expect_fired
                    && want != n
                {
                    fail(diags, msg!("scenario-fired", fired = n, expected = want));
                }
            }
            Err(e) => fail(diags, msg!("scenario-timers-failed", error = e.message())),
        }
        engine.deliver_outbox(&NoWebhooks).await.map_err(internal)?;
    }
    Ok(())
}

/// Performs a step's action (once, or once per voter of a `repeat`) and checks the outcome
/// against `expect_error` and `expect_field`.
async fn act(
    s: &ScenarioStep,
    i: usize,
    action: &str,
    id: i64,
    engine: &Engine,
    diags: &mut Diagnostics,
    fail: &Fail<'_>,
) -> Result<(), Message> {
    let ids: Vec<Option<String>> = match &s.repeat {
        Some(r) => (r.from..=r.to).map(|n| Some(format!("{}{n}", r.prefix))).collect(),
        None => vec![s.actor.as_ref().and_then(|a| a.id.clone())],
    };
    for who in ids {
        let decl = s.actor.clone().unwrap_or(ActorDecl { id: None, roles: Vec::new() });
        let actor = Actor { id: who.or(decl.id).unwrap_or_else(|| "someone".into()), roles: decl.roles };
        let token = match &s.item {
            Some(item) => engine
                .get(id)
                .await
                .map_err(internal)?
                .state
                .tokens
                .iter()
                .find(|t| t.item.as_ref() == Some(item))
                .map(|t| t.id)
                .ok_or_else(|| {
                    let what = msg!("scenario-no-branch", item = item.to_string());
                    msg!("scenario-step", step = i + 1, what = what)
                })
                .map(Some)?,
            None => s.token,
        };
        let req = ActionRequest {
            action: action.to_owned(),
            step: s.step.clone(),
            token,
            payload: s.payload.clone(),
            actor,
            on_behalf_of: s
                .on_behalf_of
                .as_ref()
                .map(|a| Actor { id: a.id.clone().unwrap_or_else(|| "someone".into()), roles: a.roles.clone() }),
        };
        let res = engine.act(id, req, None, None).await;
        match (&res, &s.expect_error) {
            (Ok(_), None) => {}
            (Err(e), None) => fail(diags, msg!("scenario-refused", action = action, error = e.message())),
            (Ok(_), Some(want)) => fail(diags, msg!("scenario-applied", action = action, want = want)),
            (Err(e), Some(want)) => {
                if !error_matches(e, want) {
                    fail(diags, msg!("scenario-refused-otherwise", action = action, want = want, error = e.message()));
                }
                let field = match e {
                    EngineError::Refused { field, .. } => field.as_deref(),
                    _ => None,
                };
                if let Some(f) = &s.expect_field
                    && field != Some(f.as_str())
                {
                    fail(diags, msg!("scenario-field", field = field.unwrap_or("-"), expected = f));
                }
            }
        }
    }
    engine.deliver_outbox(&NoWebhooks).await.map_err(internal)?;
    Ok(())
}

/// Who a step acts as.
fn step_actor(s: &ScenarioStep) -> Actor {
    let decl = s.actor.clone().unwrap_or(ActorDecl { id: None, roles: Vec::new() });
    Actor { id: decl.id.unwrap_or_else(|| "someone".into()), roles: decl.roles }
}

/// Checks the result of a change other than an action against the step's `expect_error`.
fn judge(res: Result<(), EngineError>, what: &str, s: &ScenarioStep, diags: &mut Diagnostics, fail: &Fail<'_>) {
    match (&res, &s.expect_error) {
        (Ok(()), None) => {}
        (Err(e), None) => fail(diags, msg!("scenario-refused", action = what, error = e.message())),
        (Ok(()), Some(want)) => fail(diags, msg!("scenario-applied", action = what, want = want)),
        (Err(e), Some(want)) => {
            if !error_matches(e, want) {
                fail(diags, msg!("scenario-refused-otherwise", action = what, want = want, error = e.message()));
            }
        }
    }
}

/// A failure of the scenario's own machinery (not of the workflow), for the report.
fn internal(e: impl std::fmt::Display) -> Message {
    msg!("scenario-error", detail = e.to_string())
}

fn error_matches(e: &EngineError, want: &str) -> bool {
    let kind = match e {
        EngineError::Refused { .. } => "refused",
        EngineError::Forbidden(_) => "forbidden",
        EngineError::Closed(_) => "closed",
        EngineError::Conflict(_) => "conflict",
        EngineError::ScriptFailed(_) => "script_failed",
        EngineError::NotFound(_) => "not_found",
        _ => "other",
    };
    kind == want
        || e.message().render(yishi_core::i18n::Lang::En).contains(want)
        || e.message().render(yishi_core::i18n::Lang::ZhCn).contains(want)
}

async fn check_expect(exp: &Expect, v: &InstanceView, engine: &Engine) -> Vec<Message> {
    let mut out = Vec::new();
    if let Some(s) = &exp.status
        && s != v.status.as_str()
    {
        out.push(msg!("scenario-status", got = v.status.as_str(), expected = s));
    }
    if let Some(o) = &exp.outcome
        && v.outcome.as_deref() != Some(o.as_str())
    {
        out.push(msg!("scenario-outcome", got = v.outcome.as_deref().unwrap_or("-"), expected = o));
    }
    if let Some(a) = &exp.active
        && a != &v.active_steps
    {
        out.push(msg!("scenario-active", got = format!("{:?}", v.active_steps), expected = format!("{a:?}")));
    }
    if let Some(u) = &exp.urgency
        && v.urgency.as_ref() != Some(u)
    {
        out.push(msg!("scenario-urgency", got = v.urgency.as_deref().unwrap_or("-"), expected = u));
    }
    for (path, want) in &exp.data {
        let got = lookup(&v.data, path);
        if got != Some(want) {
            out.push(msg!(
                "scenario-data",
                path = path,
                got = got.map_or_else(|| "-".to_owned(), ToString::to_string),
                expected = want.to_string()
            ));
        }
    }
    if let Some(r) = exp.revision
        && r != v.revision
    {
        out.push(msg!("scenario-revision", got = v.revision, expected = r));
    }
    if let Some(items) = &exp.items {
        let got: Vec<Value> = match engine.get(v.id).await {
            Ok(row) => row.state.tokens.iter().map(|t| t.item.clone().unwrap_or(Value::Null)).collect(),
            Err(e) => return vec![e.message()],
        };
        if &got != items {
            out.push(msg!("scenario-items", got = format!("{got:?}"), expected = format!("{items:?}")));
        }
    }
    if !exp.events.is_empty() {
        let history = engine.history(v.id).await.unwrap_or_default();
        for (what, want) in &exp.events {
            let (kind, step) = what.split_once(':').map_or((what.as_str(), None), |(k, s)| (k, Some(s)));
            let got = history
                .iter()
                .filter(|e| e.event.kind() == kind)
                .filter(|e| {
                    step.is_none_or(|s| {
                        serde_json::to_value(&e.event).ok().and_then(|v| v.get("step").cloned()) == Some(Value::from(s))
                    })
                })
                .count();
            if got != *want {
                out.push(msg!("scenario-events", got = got, what = what, expected = *want));
            }
        }
    }
    if let Some(n) = exp.spawned {
        let all =
            engine.list(&crate::store::ListFilter { limit: 1000, ..Default::default() }).await.unwrap_or_default();
        let mut count = 0;
        for s in all.iter().filter(|s| s.id != v.id) {
            if let Ok(c) = engine.view(s.id).await
                && c.data.get("parent_case").and_then(Value::as_i64) == Some(v.id)
            {
                count += 1;
            }
        }
        if count != n {
            out.push(msg!("scenario-spawned", got = count, expected = n));
        }
    }
    out
}

fn lookup<'a>(data: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = data.get(parts.next()?)?;
    for p in parts {
        v = match v {
            Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => v.get(p)?,
        };
    }
    Some(v)
}

/// Scenarios never send webhooks: delivery counts as done.
struct NoWebhooks;

impl crate::service::WebhookSender for NoWebhooks {
    fn send<'a>(
        &'a self,
        _url: &'a str,
        _body: &'a Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async { Ok(()) })
    }
}
