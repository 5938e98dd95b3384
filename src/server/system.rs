//! The process's own routes: liveness, readiness, metrics, the OpenAPI document, and who a token
//! belongs to; and the answers to a route or method that does not exist.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use yishi_core::msg;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, ApiResult};
use super::reply::json;

type St = State<Arc<AppState>>;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and at least one workflow is active.
pub async fn readyz(State(st): St) -> Response {
    let active = st.engine.active();
    match st.engine.ping().await {
        Ok(()) if !active.current.is_empty() => (StatusCode::OK, "ready\n").into_response(),
        // Not ready: a problem like every other refusal, in the request's language.
        Ok(()) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", msg!("api-no-workflow-active"))
            .header(header::RETRY_AFTER, "5")
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg!("api-database-unavailable"))
                .header(header::RETRY_AFTER, "5")
                .into_response()
        }
    }
}

pub async fn no_route() -> ApiError {
    ApiError::not_found(msg!("api-no-route"))
}

pub async fn whoami(Extension(p): Extension<Principal>) -> ApiResult<Response> {
    json(&p)
}

pub async fn openapi() -> Response {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(super::openapi::document);
    axum::Json(DOC.clone()).into_response()
}

pub async fn metrics(State(st): St) -> Response {
    let body = super::metrics::render(&st.engine).await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Dead letters touch every unit's deliveries: an admin with scope `*` only.
fn require_all(p: &Principal) -> ApiResult<()> {
    use super::auth::ApiRole;
    p.require(ApiRole::Admin)?;
    if p.scope != "*" {
        return Err(ApiError::forbidden(msg!("api-outbox-needs-all")));
    }
    Ok(())
}

pub async fn dead_letters(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Items { items: st.engine.dead_letters().await? })
}

/// The nodes serving the database, with their heartbeats and which one leads.
pub async fn nodes(State(st): St, Extension(p): Extension<Principal>) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Items { items: st.engine.nodes().await? })
}

pub async fn retry_dead(
    State(st): St,
    Extension(p): Extension<Principal>,
    b: super::extract::Body<super::types::DeadLetterChoice>,
) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Affected { count: st.engine.retry_dead(b.value.target()?).await? })
}

pub async fn discard_dead(
    State(st): St,
    Extension(p): Extension<Principal>,
    b: super::extract::Body<super::types::DeadLetterChoice>,
) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Affected { count: st.engine.discard_dead(b.value.target()?).await? })
}
