//! The process's own routes: liveness, readiness, metrics, the OpenAPI document, and who a token
//! belongs to; and the answers to a route or method that does not exist.

use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "no workflow is active yet\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ([(header::RETRY_AFTER, "5")], (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")).into_response()
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

pub async fn retry_dead(
    State(st): St,
    Extension(p): Extension<Principal>,
    b: super::extract::Body<super::types::DeadLetterChoice>,
) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Affected { count: st.engine.retry_dead(b.value.id).await? })
}

pub async fn discard_dead(
    State(st): St,
    Extension(p): Extension<Principal>,
    b: super::extract::Body<super::types::DeadLetterChoice>,
) -> ApiResult<Response> {
    require_all(&p)?;
    json(&super::types::Affected { count: st.engine.discard_dead(b.value.id).await? })
}
