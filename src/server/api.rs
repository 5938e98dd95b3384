//! Handlers of `/api/v1`, `/healthz`, `/readyz` and `/metrics`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use yishi_core::kind::Actor;
use yishi_core::runtime::ActionRequest;
use yishi_engine::store::ListFilter;

use super::AppState;
use super::auth::{ApiRole, Principal};
use super::error::{ApiError, ApiResult};
use super::types::*;

type St = State<Arc<AppState>>;

/// JSON body extractor whose rejections are problem details.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(match e {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with `Content-Type: application/json`",
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::bad_request(format!("the body is not valid JSON: {}", e.body_text()))
                }
                JsonRejection::JsonDataError(e) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.body_text())
                }
                JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {} bytes", super::MAX_BODY_BYTES),
                ),
                other => ApiError::bad_request(other.body_text()),
            }),
        }
    }
}

/// Path extractor whose rejections are problem details.
pub struct P<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e: PathRejection| ApiError::bad_request(format!("bad path: {}", e.body_text())))
    }
}

/// Query extractor whose rejections are problem details.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e: QueryRejection| ApiError::bad_request(format!("bad query: {}", e.body_text())))
    }
}

fn ok<T: Serialize>(v: T) -> ApiResult<Response> {
    Ok(axum::Json(v).into_response())
}

fn actor_of(p: &Principal) -> Actor {
    Actor { id: p.name.clone(), roles: p.acts_as.clone() }
}

fn unit_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(u, _)| u)
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(st): St) -> Response {
    let active = st.engine.active();
    match st.engine.ping().await {
        Ok(()) if !active.current.is_empty() => (StatusCode::OK, "ready\n").into_response(),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "no workflow is active yet\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; the API lives under /api/v1")
}

pub async fn whoami(Extension(p): Extension<Principal>) -> ApiResult<Response> {
    ok(p)
}

pub async fn communities(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let active = st.engine.active();
    let items: Vec<_> = active.catalog.units.values().filter(|u| p.sees(&u.path)).cloned().collect();
    ok(Items { items })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowQuery {
    unit: Option<String>,
}

pub async fn workflows(
    State(st): St,
    Extension(p): Extension<Principal>,
    Q(q): Q<WorkflowQuery>,
) -> ApiResult<Response> {
    let active = st.engine.active();
    let counts = st.engine.active_counts().await?;
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
            title: def.title.clone(),
            is_abstract: def.is_abstract,
            version: row.seq,
            version_id: row.id,
            hash: def.hash.clone(),
            active_instances: counts.get(&row.id).copied().unwrap_or(0),
            status: if problems { "kept_last_good" } else { "ok" }.into(),
        });
    }
    ok(Items { items })
}

pub async fn workflow(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(path): P<String>,
    Q(q): Q<HashMap<String, String>>,
) -> ApiResult<Response> {
    let (key, sub) = match path.rsplit_once('/') {
        Some((k, s @ ("versions" | "diff" | "diagram"))) => (k.to_owned(), s),
        _ => (path.clone(), ""),
    };
    p.require_unit(unit_of(&key))?;
    let active = st.engine.active();
    let current = active.current.get(&key);
    let number = |field: &str| -> ApiResult<Option<i64>> {
        q.get(field)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("`{v}` is not a version number")).field(field.to_owned())
                })
            })
            .transpose()
    };
    match sub {
        "versions" => {
            let items = st.engine.versions(Some(&key)).await?;
            let items = items
                .into_iter()
                .map(|v| VersionItem {
                    version: v.row.seq,
                    version_id: v.row.id,
                    hash: v.row.hash,
                    created_at: v.row.created_at,
                    active_instances: v.active_instances,
                    current: v.current,
                })
                .collect();
            ok(Versions { workflow: key, items })
        }
        "diff" => {
            let (Some(from), Some(to)) = (number("from")?, number("to")?) else {
                return Err(ApiError::bad_request("give the two versions: `?from=1&to=2`"));
            };
            let d = st.engine.diff(&key, from, to).await?;
            ok(Diff { workflow: key.clone(), from, to, changes: d.changes, files: d.files })
        }
        "diagram" => {
            let effective = match number("version")? {
                Some(v) => st.engine.version_source(&key, v).await?.effective,
                None => current
                    .map(|(_, d)| d.effective.clone())
                    .ok_or_else(|| ApiError::not_found(format!("`{key}` has no active version")))?,
            };
            match q.get("format").map(String::as_str) {
                None | Some("mermaid") => Ok((
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    yishi_core::describe::mermaid(&effective),
                )
                    .into_response()),
                Some("svg") => {
                    let svg = render_svg(&yishi_core::describe::dot(&effective)).map_err(ApiError::internal)?;
                    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
                }
                Some(other) => Err(ApiError::bad_request(format!(
                    "unknown diagram format `{other}`; `mermaid` and `svg` are available"
                ))
                .field("format")),
            }
        }
        _ => {
            let Some((row, def)) = current else {
                return Err(ApiError::not_found(format!(
                    "`{key}` has no active version (its files were removed, or it never checked clean); its stored versions are at {key}/versions"
                )));
            };
            ok(WorkflowDetail {
                key: key.clone(),
                version: row.seq,
                version_id: row.id,
                hash: def.hash.clone(),
                is_abstract: def.is_abstract,
                definition: def.effective.clone(),
            })
        }
    }
}

pub async fn reload_status(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    let active = st.engine.active();
    // Only what lies in the token's scope: diagnostics of files in its units.
    let in_scope = |d: &yishi_core::Diagnostic| p.sees(yishi_core::files::parent_dir(&d.file));
    let diagnostics: Vec<_> = active.diagnostics.iter().filter(|d| in_scope(d)).cloned().collect();
    let last = st.engine.last_reload().map(|mut s| {
        s.diagnostics.retain(|d| in_scope(d));
        s.activated.retain(|(k, _)| p.sees(unit_of(k)));
        s.kept.retain(|k| p.sees(unit_of(k)));
        s.removed.retain(|k| p.sees(unit_of(k)));
        s
    });
    ok(ReloadState { generation: active.generation, reloaded_at: active.reloaded_at, last, diagnostics })
}

pub async fn reload(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    if p.scope != "*" {
        return Err(ApiError::forbidden("a reload affects every unit: it needs an admin token with scope `*`"));
    }
    let status = st.reloader.reload(&format!("api ({})", p.name)).await?;
    ok(status)
}

pub async fn validate(
    State(st): St,
    Extension(p): Extension<Principal>,
    Body(b): Body<ValidateBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    if !valid_workflow_path(&b.path) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "`path` is a workflow file inside a unit folder, e.g. `pingcheng/proposal.toml`",
        )
        .field("path"));
    }
    let key = yishi_core::files::resolve_reference("", &b.path)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", e.to_string()).field("path"))?;
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
        .filter(|d| d.file == key || catalog.failed.values().any(|fs| fs.contains(&key) && fs.contains(&d.file)))
        .cloned()
        .collect();
    let ok_ = !diagnostics.iter().any(|d| d.is_error());
    ok(Validation { ok: ok_, diagnostics })
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

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("`Idempotency-Key` must be visible ASCII"))?;
            if s.is_empty() || s.len() > 200 {
                return Err(ApiError::bad_request("`Idempotency-Key` must be 1 to 200 characters"));
            }
            Ok(Some(s.to_owned()))
        }
    }
}

pub async fn start_instance(
    State(st): St,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Body(b): Body<StartBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    p.require_unit(unit_of(&b.workflow))?;
    let key = idempotency_key(&headers)?;
    let view = st.engine.start(&b.workflow, b.data, &actor_of(&p), key.as_deref()).await?;
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/v1/instances/{}", view.id))], axum::Json(view))
        .into_response())
}

/// Largest page of a listing.
pub const MAX_PAGE: u32 = 500;

pub async fn list_instances(
    State(st): St,
    Extension(p): Extension<Principal>,
    Q(q): Q<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let mut f = ListFilter { limit: 50, ..ListFilter::default() };
    let int = |k: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("`{k}` must be a whole number, not `{v}`")).field(k.to_owned()))
    };
    for (k, v) in &q {
        match k.as_str() {
            "unit" => {
                p.require_unit(v)?;
                f.units = Some(vec![v.clone()]);
            }
            "within" => {
                p.require_unit(v)?;
                f.units = Some(vec![format!("{v}/")]);
            }
            "workflow" => f.workflow = Some(v.clone()),
            "version" => f.version = Some(int(k, v)?),
            "status" => {
                if yishi_core::runtime::Status::parse(v).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "unknown status `{v}` (active, completed, cancelled, failed)"
                    ))
                    .field("status"));
                }
                f.status = Some(v.clone());
            }
            "step" => f.step = Some(v.clone()),
            "created_from" => f.created_from = Some(int(k, v)?),
            "created_to" => f.created_to = Some(int(k, v)?),
            "updated_from" => f.updated_from = Some(int(k, v)?),
            "updated_to" => f.updated_to = Some(int(k, v)?),
            "cursor" => f.before = Some(int(k, v)?),
            "limit" => {
                let n = int(k, v)?;
                if !(1..=i64::from(MAX_PAGE)).contains(&n) {
                    return Err(ApiError::bad_request(format!("`limit` is 1 to {MAX_PAGE}")).field("limit"));
                }
                f.limit = n as u32;
            }
            other => match other.strip_prefix("data.") {
                Some(field) if !field.is_empty() => {
                    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                    f.data = Some((field.to_owned(), value));
                }
                _ => return Err(ApiError::bad_request(format!("unknown filter `{other}`")).field(other.to_owned())),
            },
        }
    }
    if f.units.is_none() && p.scope != "*" {
        f.units = Some(vec![format!("{}/", p.scope)]);
    }
    let items = st.engine.list(&f).await?;
    let next_cursor = (items.len() as u32 == f.limit).then(|| items.last().map(|i| i.id)).flatten();
    ok(InstancePage { items, next_cursor })
}

async fn visible(st: &AppState, p: &Principal, id: i64) -> ApiResult<yishi_engine::store::InstanceRow> {
    let row = st.engine.get(id).await?;
    p.require_unit(&row.unit)?;
    Ok(row)
}

pub async fn get_instance(State(st): St, Extension(p): Extension<Principal>, P(id): P<i64>) -> ApiResult<Response> {
    let row = visible(&st, &p, id).await?;
    let accepts = st.engine.accepted_actions(&row).await?;
    let history = st.engine.history(id).await?;
    let timers = st.engine.timers(id).await?;
    let view = yishi_engine::service::InstanceView::of(&row);
    ok(InstanceDetail {
        instance: view,
        tokens: row.state.tokens,
        accepts,
        timers: timers
            .into_iter()
            .map(|t| TimerItem { step: t.step, token: t.token, timer: t.name, due_at: t.due_at })
            .collect(),
        history,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    format: Option<String>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

pub async fn history(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    Q(q): Q<HistoryQuery>,
) -> ApiResult<Response> {
    visible(&st, &p, id).await?;
    let events = st.engine.history(id).await?;
    match q.format.as_deref() {
        None | Some("json") => ok(History { instance: id, events }),
        Some("csv") => {
            let mut out = String::from("seq,at,version,type,step,actor,detail\n");
            for e in &events {
                let v = serde_json::to_value(&e.event).unwrap_or(Value::Null);
                let step = v.get("step").and_then(Value::as_str).unwrap_or("");
                let actor = v.get("actor").and_then(|a| a.get("id")).and_then(Value::as_str).unwrap_or("");
                let at = chrono::DateTime::from_timestamp_millis(e.at).map(|d| d.to_rfc3339()).unwrap_or_default();
                out.push_str(&format!(
                    "{},{},{},{},{},{},{}\n",
                    e.seq,
                    at,
                    e.version,
                    e.event.kind(),
                    csv_field(step),
                    csv_field(actor),
                    csv_field(&v.to_string())
                ));
            }
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"history.csv\""),
                ],
                out,
            )
                .into_response())
        }
        Some(other) => Err(ApiError::bad_request(format!("unknown format `{other}` (json or csv)")).field("format")),
    }
}

pub async fn act(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    Body(b): Body<ActBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    visible(&st, &p, id).await?;
    let key = idempotency_key(&headers)?;
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim_matches('"'))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| ApiError::bad_request("`If-Match` must be a revision number"))?,
        ),
    };
    if let (Some(a), Some(b2)) = (if_match, b.expected_revision)
        && a != b2
    {
        return Err(ApiError::bad_request("`If-Match` and `expected_revision` disagree"));
    }
    if let Some(o) = &b.on_behalf_of
        && o.id.trim().is_empty()
    {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "`on_behalf_of.id` is empty")
            .field("on_behalf_of"));
    }
    let req = ActionRequest {
        action: b.action,
        step: b.step,
        token: b.token,
        payload: b.payload,
        actor: actor_of(&p),
        on_behalf_of: b.on_behalf_of,
    };
    let view = st.engine.act(id, req, if_match.or(b.expected_revision), key.as_deref()).await?;
    let etag = format!("\"{}\"", view.revision);
    Ok(([(header::ETAG, etag)], axum::Json(view)).into_response())
}

pub async fn cancel(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    Body(b): Body<CancelBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    visible(&st, &p, id).await?;
    if b.reason.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "give a reason").field("reason"));
    }
    ok(st.engine.cancel(id, b.step.as_deref(), &b.reason, &actor_of(&p)).await?)
}

pub async fn migrate(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    Body(b): Body<MigrateBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    visible(&st, &p, id).await?;
    ok(st.engine.migrate(id, b.to_version, &b.steps, &actor_of(&p), b.dry_run).await?)
}

pub async fn metrics(State(st): St) -> Response {
    let m = &st.engine.metrics;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (units, transactions, micros) = st.engine.commit_totals();
    let body = format!(
        "# HELP yishi_http_requests_total HTTP requests served.\n# TYPE yishi_http_requests_total counter\nyishi_http_requests_total {}\n\
         # HELP yishi_http_errors_total HTTP responses with 4xx and 5xx status.\n# TYPE yishi_http_errors_total counter\nyishi_http_errors_total{{class=\"4xx\"}} {}\nyishi_http_errors_total{{class=\"5xx\"}} {}\n\
         # HELP yishi_actions_total Actions by outcome.\n# TYPE yishi_actions_total counter\nyishi_actions_total{{outcome=\"applied\"}} {}\nyishi_actions_total{{outcome=\"refused\"}} {}\nyishi_actions_total{{outcome=\"failed\"}} {}\n\
         # HELP yishi_instances_started_total Cases started.\n# TYPE yishi_instances_started_total counter\nyishi_instances_started_total {}\n\
         # HELP yishi_transitions_total Committed transitions.\n# TYPE yishi_transitions_total counter\nyishi_transitions_total {}\n\
         # HELP yishi_timers_fired_total Deadlines and timers fired.\n# TYPE yishi_timers_fired_total counter\nyishi_timers_fired_total {}\n\
         # HELP yishi_reloads_total Reloads by result.\n# TYPE yishi_reloads_total counter\nyishi_reloads_total{{result=\"ok\"}} {}\nyishi_reloads_total{{result=\"failed\"}} {}\n\
         # HELP yishi_db_commits_total Changes committed, and the transactions that carried them.\n# TYPE yishi_db_commits_total counter\nyishi_db_commits_total {}\nyishi_db_commit_batches_total {}\n\
         # HELP yishi_db_commit_seconds_avg Mean time of one commit transaction.\n# TYPE yishi_db_commit_seconds_avg gauge\nyishi_db_commit_seconds_avg {:.6}\n\
         # HELP yishi_uptime_seconds Seconds since start.\n# TYPE yishi_uptime_seconds gauge\nyishi_uptime_seconds {}\n",
        g(&st.requests),
        g(&st.client_errors),
        g(&st.server_errors),
        g(&m.actions_applied),
        g(&m.actions_refused),
        g(&m.actions_failed),
        g(&m.instances_started),
        g(&m.transitions),
        g(&m.timers_fired),
        g(&m.reloads_ok),
        g(&m.reloads_failed),
        units,
        transactions,
        micros as f64 / transactions.max(1) as f64 / 1e6,
        st.started_at.elapsed().as_secs(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(super::openapi::document);
    axum::Json(DOC.clone()).into_response()
}

/// Lays out a DOT graph and draws it as SVG (pure Rust, layout-rs).
pub fn render_svg(dot: &str) -> Result<String, String> {
    let mut parser = layout::gv::DotParser::new(dot);
    let graph = parser.process()?;
    let mut builder = layout::gv::GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut visual = builder.get();
    let mut svg = layout::backends::svg::SVGWriter::new();
    visual.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}
