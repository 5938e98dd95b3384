//! Cases: list, start, read (with an entity tag), history (JSON or CSV), act, change urgency, cancel, migrate.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use yishi_core::i18n::render_in_json;
use yishi_core::kind::Actor;
use yishi_core::msg;
use yishi_core::runtime::ActionRequest;
use yishi_engine::service::{Idempotency, InstanceView, Intake};
use yishi_engine::store::ListFilter;

use super::AppState;
use super::auth::{ApiRole, Principal};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, P, Q, fingerprint, idempotency_key, if_match, none_match};
use super::lang;
use super::reply::{csv, etag, json, json_status, with_header};
use super::types::*;

type St = State<Arc<AppState>>;

/// Largest page of a listing.
pub const MAX_PAGE: u32 = 500;

pub fn actor_of(p: &Principal) -> Actor {
    Actor { id: p.name.clone(), roles: p.acts_as.clone() }
}

pub fn unit_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(u, _)| u)
}

/// A case as sent to a client: messages steps wrote into its data in the request's language.
fn shown(mut v: InstanceView) -> InstanceView {
    let mut data = Value::Object(std::mem::take(&mut v.data));
    render_in_json(&mut data, lang::current());
    if let Value::Object(m) = data {
        v.data = m;
    }
    v
}

/// The idempotency of a request: the client's key, scoped to its token, and the request's
/// fingerprint.
fn idempotency(p: &Principal, headers: &HeaderMap, path: &str, body: &[u8]) -> ApiResult<Option<Idempotency>> {
    Ok(idempotency_key(headers)?.map(|k| Idempotency {
        key: format!("token:{}:{k}", p.token_id),
        fingerprint: fingerprint("POST", path, body),
    }))
}

pub async fn list(
    State(st): St,
    Extension(p): Extension<Principal>,
    Q(q): Q<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let mut f = ListFilter { limit: 50, ..ListFilter::default() };
    let int = |k: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ApiError::bad_request(msg!("api-not-a-number", name = k, value = v)).field(k.to_owned()))
    };
    let mut version = None;
    let mut by_urgency = false;
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
            "version" => version = Some(int(k, v)?),
            "status" => {
                if yishi_core::runtime::Status::parse(v).is_none() {
                    return Err(ApiError::bad_request(msg!("api-bad-status", value = v)).field("status"));
                }
                f.status = Some(v.clone());
            }
            "step" => f.step = Some(v.clone()),
            "urgency" => f.urgency = Some(v.clone()),
            "text" => f.title_contains = Some(v.clone()).filter(|t| !t.trim().is_empty()),
            "overdue" => {
                f.overdue = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(
                            ApiError::bad_request(msg!("api-not-a-bool", name = k, value = v)).field(k.to_owned())
                        );
                    }
                }
            }
            "sort" => match v.as_str() {
                "newest" => by_urgency = false,
                "urgency" => by_urgency = true,
                _ => return Err(ApiError::bad_request(msg!("api-bad-sort", value = v)).field("sort")),
            },
            "created_from" => f.created_from = Some(int(k, v)?),
            "created_to" => f.created_to = Some(int(k, v)?),
            "updated_from" => f.updated_from = Some(int(k, v)?),
            "updated_to" => f.updated_to = Some(int(k, v)?),
            "cursor" => f.before = Some(int(k, v)?),
            "limit" => {
                let n = int(k, v)?;
                if !(1..=i64::from(MAX_PAGE)).contains(&n) {
                    return Err(ApiError::bad_request(msg!("api-bad-limit", max = MAX_PAGE)).field("limit"));
                }
                f.limit = n as u32;
            }
            other => match other.strip_prefix("data.") {
                Some(field) if !field.is_empty() => {
                    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                    f.data = Some((field.to_owned(), value));
                }
                _ => {
                    return Err(ApiError::bad_request(msg!("api-unknown-filter", name = other)).field(other.to_owned()));
                }
            },
        }
    }
    // A version number: of `workflow` when given, else of whichever workflow each case runs.
    f.version = version;
    if f.units.is_none() && p.scope != "*" {
        f.units = Some(vec![format!("{}/", p.scope)]);
    }
    if by_urgency {
        // No levels anywhere: every case is equally urgent, newest first.
        f.by_urgency = Some(st.engine.urgency_order(f.workflow.as_deref())).filter(|o| !o.is_empty());
    }
    let items = st.engine.list(&f).await?;
    let next_cursor = (items.len() as u32 == f.limit).then(|| items.last().map(|i| i.id)).flatten();
    json(&InstancePage { items, next_cursor })
}

pub async fn start(
    State(st): St,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    b: Body<StartBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    p.require_unit(unit_of(&b.value.workflow))?;
    let idem = idempotency(&p, &headers, "/api/v1/instances", &b.bytes)?;
    let body = b.value;
    let intake = Intake { urgency: body.urgency, ..Intake::default() };
    let view =
        st.engine.start_with(&body.workflow, body.data, &actor_of(&p), idem.as_ref(), intake).await.map_err(|e| {
            let e = ApiError::from(e);
            match e.field.clone() {
                Some(f) if f == "urgency" => ApiError { field: Some("/urgency".into()), ..e },
                _ => e,
            }
        })?;
    let location = format!("/api/v1/instances/{}", view.id);
    let revision = view.revision;
    let resp = json_status(StatusCode::CREATED, &shown(view))?;
    Ok(with_header(with_header(resp, header::LOCATION, &location), header::ETAG, &etag(revision)))
}

/// Refuses a case outside the caller's communities (or that does not exist); reads its unit
/// only, not a copy of its state.
async fn visible(st: &AppState, p: &Principal, id: i64) -> ApiResult<()> {
    p.require_unit(&st.engine.unit_of(id).await?)
}

pub async fn get(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let row = st.engine.get(id).await?;
    p.require_unit(&row.unit)?;
    let tag = etag(row.revision);
    if none_match(&headers, &tag) {
        return Ok(with_header(StatusCode::NOT_MODIFIED.into_response(), header::ETAG, &tag));
    }
    let accepts = st.engine.accepted_actions(&row).await?;
    let history = st.engine.history(id).await?;
    let timers = st.engine.timers(id).await?;
    let view = shown(st.engine.view_of(&row).await?);
    let detail = InstanceDetail {
        instance: view,
        tokens: row.state.tokens,
        accepts,
        timers: timers
            .into_iter()
            .map(|t| TimerItem { step: t.step, token: t.token, timer: t.name, due_at: t.due_at })
            .collect(),
        history,
    };
    Ok(with_header(json(&detail)?, header::ETAG, &tag))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilarQuery {
    limit: Option<usize>,
}

/// Likely duplicates of a case among its unit's open cases.
pub async fn similar(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    Q(q): Q<SimilarQuery>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(5);
    if !(1..=50).contains(&limit) {
        return Err(ApiError::bad_request(msg!("api-bad-limit", max = 50)).field("limit"));
    }
    visible(&st, &p, id).await?;
    json(&super::types::Similar { instance: id, items: st.engine.similar(id, limit).await? })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    format: Option<String>,
    /// CSV only: start with a byte-order mark (default true, so that Excel reads UTF-8).
    bom: Option<bool>,
    /// CSV only: keep residents' personal data (the keys the workflow marks `personal`)
    /// instead of masking it; admins only.
    personal: Option<bool>,
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
        None | Some("json") => json(&History { instance: id, events }),
        Some("csv") => {
            // An export leaves the system: personal data is masked unless an admin asks.
            let personal = if q.personal.unwrap_or(false) {
                p.require(ApiRole::Admin)?;
                Default::default()
            } else {
                let row = st.engine.get(id).await?;
                st.engine.definition(row.version).await?.personal.iter().cloned().collect()
            };
            Ok(history_csv(&st, id, &events, q.bom.unwrap_or(true), &personal))
        }
        Some(other) => {
            Err(ApiError::bad_request(msg!("api-unknown-format", value = other, known = "json, csv")).field("format"))
        }
    }
}

fn history_csv(
    st: &AppState,
    id: i64,
    events: &[yishi_engine::store::EventRow],
    bom: bool,
    personal: &std::collections::BTreeSet<String>,
) -> Response {
    let lang = lang::current();
    let header: Vec<String> =
        ["csv-seq", "csv-time", "csv-version", "csv-event", "csv-step", "csv-actor", "csv-detail"]
            .iter()
            .map(|k| yishi_core::i18n::Message::new(k).render(lang))
            .collect();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let mut v = yishi_core::i18n::rendering(lang, || serde_json::to_value(&e.event)).unwrap_or(Value::Null);
            yishi_engine::service::retention::mask_personal(&mut v, personal);
            let step = v.get("step").and_then(Value::as_str).unwrap_or("").to_owned();
            let actor = v.get("actor").and_then(|a| a.get("id")).and_then(Value::as_str).unwrap_or("").to_owned();
            vec![
                e.seq.to_string(),
                st.local_time(e.at),
                e.version.to_string(),
                e.event.kind().to_owned(),
                step,
                actor,
                v.to_string(),
            ]
        })
        .collect();
    csv(&format!("case-{id}-history.csv"), &header, &rows, bom)
}

pub async fn act(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    b: Body<ActBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    visible(&st, &p, id).await?;
    let idem = idempotency(&p, &headers, &format!("/api/v1/instances/{id}/actions"), &b.bytes)?;
    let if_match = if_match(&headers)?;
    let body = b.value;
    if let (Some(a), Some(b2)) = (if_match, body.expected_revision)
        && a != b2
    {
        return Err(ApiError::bad_request(msg!("api-if-match-disagrees")).field("/expected_revision"));
    }
    if let Some(o) = &body.on_behalf_of
        && o.id.trim().is_empty()
    {
        return Err(ApiError::invalid(msg!("api-empty-on-behalf-of")).field("/on_behalf_of/id"));
    }
    let req = ActionRequest {
        action: body.action,
        step: body.step,
        token: body.token,
        payload: body.payload,
        actor: actor_of(&p),
        on_behalf_of: body.on_behalf_of,
    };
    let view = st.engine.act(id, req, if_match.or(body.expected_revision), idem.as_ref()).await.map_err(|e| {
        // The field a refusal names is the one the client sent: `/payload/<name>`, `/step`, `/token`.
        let e = ApiError::from(e);
        match e.field.clone() {
            Some(f) if ["action", "step", "token"].contains(&f.as_str()) => {
                ApiError { field: Some(format!("/{f}")), ..e }
            }
            Some(f) if !f.starts_with('/') && f != "Idempotency-Key" => {
                ApiError { field: Some(format!("/payload/{f}")), ..e }
            }
            _ => e,
        }
    })?;
    let tag = etag(view.revision);
    Ok(with_header(json(&shown(view))?, header::ETAG, &tag))
}

pub async fn cancel(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    b: Body<CancelBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    visible(&st, &p, id).await?;
    if b.value.reason.trim().is_empty() {
        return Err(ApiError::invalid(msg!("api-give-reason")).field("/reason"));
    }
    let view = st.engine.cancel(id, b.value.step.as_deref(), &b.value.reason, &actor_of(&p)).await?;
    let tag = etag(view.revision);
    Ok(with_header(json(&shown(view))?, header::ETAG, &tag))
}

pub async fn set_urgency(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    b: Body<UrgencyBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    visible(&st, &p, id).await?;
    if b.value.reason.trim().is_empty() {
        return Err(ApiError::invalid(msg!("api-give-reason")).field("/reason"));
    }
    let if_match = if_match(&headers)?;
    let view =
        st.engine.set_urgency(id, &b.value.level, &b.value.reason, &actor_of(&p), if_match).await.map_err(|e| {
            let e = ApiError::from(e);
            match e.field.clone() {
                Some(f) if f == "urgency" || f == "level" => ApiError { field: Some("/level".into()), ..e },
                Some(f) if !f.starts_with('/') => ApiError { field: Some(format!("/{f}")), ..e },
                _ => e,
            }
        })?;
    let tag = etag(view.revision);
    Ok(with_header(json(&shown(view))?, header::ETAG, &tag))
}

pub async fn merge(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    b: Body<MergeBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    visible(&st, &p, id).await?;
    visible(&st, &p, b.value.from).await.map_err(|e| e.field("/from"))?;
    if b.value.reason.trim().is_empty() {
        return Err(ApiError::invalid(msg!("api-give-reason")).field("/reason"));
    }
    let (into, from) = st.engine.merge(id, b.value.from, &b.value.reason, &actor_of(&p)).await.map_err(|e| {
        let e = ApiError::from(e);
        match e.field.clone() {
            Some(f) if !f.starts_with('/') => ApiError { field: Some(format!("/{f}")), ..e },
            _ => e,
        }
    })?;
    let tag = etag(into.revision);
    Ok(with_header(json(&MergeResult { into: shown(into), from: shown(from) })?, header::ETAG, &tag))
}

pub async fn migrate(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    b: Body<MigrateBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Admin)?;
    visible(&st, &p, id).await?;
    let plan =
        st.engine.migrate(id, b.value.to_version, &b.value.steps, &actor_of(&p), b.value.dry_run).await.map_err(
            |e| {
                let e = ApiError::from(e);
                match e.field.clone() {
                    Some(f) if !f.starts_with('/') => ApiError { field: Some(format!("/{f}")), ..e },
                    _ => e,
                }
            },
        )?;
    json(&plan)
}
