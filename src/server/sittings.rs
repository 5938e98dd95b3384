//! Sittings (例会): schedule one, list them, read one with its agenda, put a case on it, open
//! it (quorum), decide each item, close it with the minutes, call it off. A sitting is a case
//! of its unit's sitting workflow; its actions go through the same engine call as any action.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use yishi_core::msg;
use yishi_core::runtime::ActionRequest;
use yishi_engine::service::Intake;
use yishi_engine::service::gatherings::GatheringView;

use super::AppState;
use super::auth::{ApiRole, Principal};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, P, Q, if_match};
use super::instances::actor_of;
use super::reply::{etag, json, json_status, with_header};
use super::types::*;

type St = State<Arc<AppState>>;

/// A sitting in the caller's scope, or 404.
async fn visible(st: &AppState, p: &Principal, id: i64) -> ApiResult<GatheringView> {
    let v = st.engine.gathering(id).await?;
    if !p.sees(&v.unit) {
        return Err(ApiError::from(yishi_engine::service::EngineError::NotFound(msg!("engine-no-gathering", id = id))));
    }
    Ok(v)
}

/// A date as people write it: RFC 3339, or a local `YYYY-MM-DD HH:MM` in the deployment's zone.
fn parse_date(st: &AppState, text: &str) -> Option<i64> {
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(d.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .and_then(|n| st.zone.instant(n))
}

/// The field a refusal names, as the client wrote it.
fn field(e: yishi_engine::service::EngineError) -> ApiError {
    let e = ApiError::from(e);
    match e.field.clone() {
        Some(f) if !f.starts_with('/') => ApiError { field: Some(format!("/{f}")), ..e },
        _ => e,
    }
}

pub async fn list(
    State(st): St,
    Extension(p): Extension<Principal>,
    Q(q): Q<BTreeMap<String, String>>,
) -> ApiResult<Response> {
    let mut units = None;
    let mut status = None;
    for (k, v) in &q {
        match k.as_str() {
            "unit" => {
                p.require_unit(v)?;
                units = Some(vec![v.clone()]);
            }
            "within" => {
                p.require_unit(v)?;
                units = Some(vec![format!("{v}/")]);
            }
            "status" => status = Some(v.clone()),
            other => {
                return Err(ApiError::bad_request(msg!("api-unknown-filter", name = other)).field(other.to_owned()));
            }
        }
    }
    if units.is_none() && p.scope != "*" {
        units = Some(vec![format!("{}/", p.scope)]);
    }
    let items = st.engine.gatherings(units, status.as_deref()).await?;
    json(&SittingList { items })
}

pub async fn schedule(State(st): St, Extension(p): Extension<Principal>, b: Body<ScheduleBody>) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    let body = b.value;
    p.require_unit(&body.unit).map_err(|e| e.field("/unit"))?;
    let Some(at) = parse_date(&st, body.date.trim()) else {
        return Err(ApiError::invalid(msg!("api-sitting-date", value = &body.date)).field("/date"));
    };
    if at <= st.engine.now() {
        return Err(ApiError::invalid(msg!("api-sitting-past", value = &body.date)).field("/date"));
    }
    if body.place.trim().is_empty() {
        return Err(ApiError::invalid(msg!("api-sitting-place")).field("/place"));
    }
    let expected: Vec<String> = body.expected.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if expected.is_empty() {
        return Err(ApiError::invalid(msg!("sitting-needs-expected")).field("/expected"));
    }
    let date = st.zone.local(at).map(|d| d.to_rfc3339()).unwrap_or_default();
    let mut data = Map::new();
    data.insert("date".into(), json!(date));
    data.insert("place".into(), json!(body.place.trim()));
    data.insert("expected".into(), json!(expected));
    if let Some(t) = body.title.filter(|t| !t.trim().is_empty()) {
        data.insert("title".into(), json!(t));
    }
    let workflow = format!("{}/{}", body.unit, body.workflow.as_deref().unwrap_or("sitting"));
    let view =
        st.engine.start_with(&workflow, data, &actor_of(&p), None, Intake::default()).await.map_err(
            |e| match field(e) {
                e if e.field.is_none() && e.status == StatusCode::NOT_FOUND => e.field("/workflow"),
                e => e,
            },
        )?;
    let sitting = st.engine.gathering(view.id).await?;
    let location = format!("/api/v1/sittings/{}", view.id);
    let resp = json_status(StatusCode::CREATED, &sitting)?;
    Ok(with_header(with_header(resp, header::LOCATION, &location), header::ETAG, &etag(sitting.revision)))
}

pub async fn get(State(st): St, Extension(p): Extension<Principal>, P(id): P<i64>) -> ApiResult<Response> {
    let v = visible(&st, &p, id).await?;
    let tag = etag(v.revision);
    Ok(with_header(json(&v)?, header::ETAG, &tag))
}

pub async fn agenda(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    b: Body<AgendaBody>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    let v = visible(&st, &p, id).await?;
    let case = st.engine.get(b.value.case).await.map_err(|e| ApiError::from(e).field("/case"))?;
    if case.unit != v.unit || !p.sees(&case.unit) {
        return Err(ApiError::invalid(msg!("engine-agenda-not-waiting", case = case.id, gathering = id)).field("/case"));
    }
    st.engine.put_on_agenda(id, b.value.case, &actor_of(&p)).await.map_err(field)?;
    answer(&st, id).await
}

/// One of the sitting's own actions, through the engine like any action.
async fn sitting_action(
    st: &AppState,
    p: &Principal,
    id: i64,
    headers: &HeaderMap,
    action: &str,
    payload: Map<String, Value>,
) -> ApiResult<Response> {
    p.require(ApiRole::Operator)?;
    visible(st, p, id).await?;
    let req = ActionRequest {
        action: action.to_owned(),
        step: None,
        token: None,
        payload,
        actor: actor_of(p),
        on_behalf_of: None,
    };
    st.engine.act(id, req, if_match(headers)?, None).await.map_err(field)?;
    answer(st, id).await
}

async fn answer(st: &AppState, id: i64) -> ApiResult<Response> {
    let v = st.engine.gathering(id).await?;
    let tag = etag(v.revision);
    Ok(with_header(json(&v)?, header::ETAG, &tag))
}

pub async fn open(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    b: Body<OpenBody>,
) -> ApiResult<Response> {
    let payload = Map::from_iter([("present".to_owned(), json!(b.value.present))]);
    sitting_action(&st, &p, id, &headers, "open", payload).await
}

pub async fn decide(
    State(st): St,
    Extension(p): Extension<Principal>,
    P((id, case)): P<(i64, i64)>,
    headers: HeaderMap,
    b: Body<DecideBody>,
) -> ApiResult<Response> {
    let d = b.value;
    let mut payload = Map::new();
    payload.insert("case".into(), json!(case));
    payload.insert("outcome".into(), json!(d.outcome));
    for (k, v) in [("for", d.for_), ("against", d.against), ("abstain", d.abstain)] {
        if let Some(n) = v {
            payload.insert(k.into(), json!(n));
        }
    }
    if let Some(n) = d.note {
        payload.insert("note".into(), json!(n));
    }
    sitting_action(&st, &p, id, &headers, "decide", payload).await
}

pub async fn close(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    b: Body<CloseBody>,
) -> ApiResult<Response> {
    let payload = Map::from_iter([("minutes".to_owned(), json!(b.value.minutes))]);
    sitting_action(&st, &p, id, &headers, "close", payload).await
}

pub async fn cancel(
    State(st): St,
    Extension(p): Extension<Principal>,
    P(id): P<i64>,
    headers: HeaderMap,
    b: Body<CallOffBody>,
) -> ApiResult<Response> {
    let payload = Map::from_iter([("reason".to_owned(), json!(b.value.reason))]);
    sitting_action(&st, &p, id, &headers, "cancel", payload).await
}
