//! The HTTP admin API (axum): routes, shared state, limits, and the layers every request goes
//! through (language and request id, counting, problem details for every error).

pub mod accounts;
pub mod auth;
pub mod error;
pub mod extract;
pub mod instances;
pub mod lang;
pub mod metrics;
pub mod notice;
pub mod openapi;
pub mod reply;
pub mod sittings;
pub mod stats;
pub mod system;
pub mod types;
pub mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use yishi_core::calendar::Zone;
use yishi_core::i18n::Lang;
use yishi_core::msg;
use yishi_engine::reload::Reloader;
use yishi_engine::service::Engine;

use self::error::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub reloader: Arc<Reloader>,
    /// The language when a request names none the catalog speaks.
    pub lang: Lang,
    /// The deployment's time zone, for times shown to people (CSV, pages).
    pub zone: Zone,
    /// Sign-in attempts per address (the console).
    pub limiter: crate::console::SignInLimiter,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, reloader: Arc<Reloader>, lang: Lang, zone: Zone) -> Arc<Self> {
        Arc::new(AppState { engine, reloader, lang, zone, limiter: Default::default() })
    }

    /// `ms` as a local time with its offset, e.g. `2026-10-01 09:30:00+08:00`.
    pub fn local_time(&self, ms: i64) -> String {
        self.zone.local(ms).map(|d| d.format("%Y-%m-%d %H:%M:%S%:z").to_string()).unwrap_or_default()
    }
}

async fn count(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    metrics::request(method.as_str(), route.as_deref(), status.as_u16(), started.elapsed());
    tracing::debug!(%method, route = route.as_deref().unwrap_or_default(), status = status.as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Errors that layers answer with an empty body (a method the route does not have, a request
/// timeout) become problem details too, keeping their headers (`Allow`).
async fn problems(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let bare = !resp.headers().contains_key(header::CONTENT_TYPE);
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return resp;
    }
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = resp.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            ("method_not_allowed", msg!("api-method-not-allowed", allowed = allow))
        }
        StatusCode::REQUEST_TIMEOUT => ("timeout", msg!("api-timeout")),
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", msg!("api-body-too-large", max = MAX_BODY_BYTES)),
        s if s.is_server_error() => ("internal", msg!("engine-internal")),
        _ => ("bad_request", msg!("api-bad-request")),
    };
    let mut problem = ApiError::new(status, code, detail);
    for (name, value) in resp.headers() {
        if name == header::ALLOW || name == header::RETRY_AFTER {
            problem.headers.push((name.clone(), value.clone()));
        }
    }
    problem.into_response()
}

/// A route: its method, its path, and the handler.
pub type Route = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// The routes that need a token. `openapi::operations` documents each.
pub fn api_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/api/v1/communities", get(workflows::units)),
        (Method::GET, "/api/v1/workflows", get(workflows::list)),
        (Method::GET, "/api/v1/workflows/{*path}", get(workflows::workflow)),
        (Method::GET, "/api/v1/reload", get(workflows::reload_status)),
        (Method::POST, "/api/v1/reload", post(workflows::reload)),
        (Method::POST, "/api/v1/validate", post(workflows::validate)),
        (Method::GET, "/api/v1/instances", get(instances::list)),
        (Method::POST, "/api/v1/instances", post(instances::start)),
        (Method::GET, "/api/v1/instances/{id}", get(instances::get)),
        (Method::GET, "/api/v1/instances/{id}/history", get(instances::history)),
        (Method::GET, "/api/v1/instances/{id}/similar", get(instances::similar)),
        (Method::GET, "/api/v1/instances/{id}/notice", get(notice::notice)),
        (Method::POST, "/api/v1/instances/{id}/actions", post(instances::act)),
        (Method::POST, "/api/v1/instances/{id}/cancel", post(instances::cancel)),
        (Method::POST, "/api/v1/instances/{id}/urgency", post(instances::set_urgency)),
        (Method::POST, "/api/v1/instances/{id}/merge", post(instances::merge)),
        (Method::POST, "/api/v1/instances/{id}/migrate", post(instances::migrate)),
        (Method::GET, "/api/v1/sittings", get(sittings::list)),
        (Method::POST, "/api/v1/sittings", post(sittings::schedule)),
        (Method::GET, "/api/v1/sittings/{id}", get(sittings::get)),
        (Method::POST, "/api/v1/sittings/{id}/agenda", post(sittings::agenda)),
        (Method::POST, "/api/v1/sittings/{id}/open", post(sittings::open)),
        (Method::POST, "/api/v1/sittings/{id}/items/{case}", post(sittings::decide)),
        (Method::POST, "/api/v1/sittings/{id}/close", post(sittings::close)),
        (Method::POST, "/api/v1/sittings/{id}/cancel", post(sittings::cancel)),
        (Method::GET, "/api/v1/stats", get(stats::stats)),
        (Method::GET, "/api/v1/whoami", get(system::whoami)),
        (Method::GET, "/api/v1/accounts", get(accounts::list)),
        (Method::POST, "/api/v1/accounts", post(accounts::create)),
        (Method::POST, "/api/v1/accounts/{id}/disable", post(accounts::disable)),
        (Method::POST, "/api/v1/accounts/{id}/enable", post(accounts::enable)),
        (Method::POST, "/api/v1/accounts/{id}/password", post(accounts::reset_password)),
        (Method::GET, "/api/v1/tokens", get(accounts::tokens)),
        (Method::POST, "/api/v1/tokens", post(accounts::create_token)),
        (Method::POST, "/api/v1/tokens/{id}/revoke", post(accounts::revoke_token)),
        (Method::GET, "/api/v1/outbox/dead", get(system::dead_letters)),
        (Method::GET, "/api/v1/nodes", get(system::nodes)),
        (Method::POST, "/api/v1/outbox/dead/retry", post(system::retry_dead)),
        (Method::POST, "/api/v1/outbox/dead/discard", post(system::discard_dead)),
    ]
}

/// The routes that need no token.
pub fn public_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/healthz", get(system::healthz)),
        (Method::GET, "/readyz", get(system::readyz)),
        (Method::GET, "/metrics", get(system::metrics)),
        (Method::GET, "/api/v1/openapi.json", get(system::openapi)),
    ]
}

/// Merges routes that share a path into one method router each, so that a path answers 405
/// (with `Allow`) for a method it lacks.
fn add(router: Router<Arc<AppState>>, routes: Vec<Route>) -> Router<Arc<AppState>> {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for (_, path, handler) in routes {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, m)) => *m = std::mem::replace(m, MethodRouter::new()).merge(handler),
            None => by_path.push((path, handler)),
        }
    }
    by_path.into_iter().fold(router, |r, (path, m)| r.route(path, m))
}

/// The whole router.
pub fn router(state: Arc<AppState>) -> Router {
    metrics::install();
    let authed =
        add(Router::new(), api_routes()).route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    add(Router::new(), public_routes())
        .merge(authed)
        .merge(crate::console::routes())
        .fallback(system::no_route)
        .layer(middleware::from_fn(count))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        .layer(middleware::from_fn(problems))
        .layer(middleware::from_fn_with_state(state.lang, lang::middleware))
        .with_state(state)
}
