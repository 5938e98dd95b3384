//! The HTTP admin API (axum): routes, shared state, limits and graceful shutdown.

pub mod api;
pub mod auth;
pub mod error;
pub mod openapi;
pub mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use yishi_engine::service::Engine;

use yishi_engine::reload::Reloader;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub reloader: Arc<Reloader>,
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub started_at: std::time::Instant,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, reloader: Arc<Reloader>) -> Arc<Self> {
        Arc::new(AppState {
            engine,
            reloader,
            requests: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            started_at: std::time::Instant::now(),
        })
    }
}

async fn count(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    state.requests.fetch_add(1, Ordering::Relaxed);
    let status = resp.status();
    if status.is_client_error() {
        state.client_errors.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        state.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(%method, path, status = status.as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    resp
}

/// A route: its method, its path, and the handler.
pub type Route = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// The routes the router serves. `openapi::operations` documents each.
pub fn api_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/api/v1/communities", get(api::communities)),
        (Method::GET, "/api/v1/workflows", get(api::workflows)),
        (Method::GET, "/api/v1/workflows/{*path}", get(api::workflow)),
        (Method::GET, "/api/v1/reload", get(api::reload_status)),
        (Method::POST, "/api/v1/reload", post(api::reload)),
        (Method::POST, "/api/v1/validate", post(api::validate)),
        (Method::GET, "/api/v1/instances", get(api::list_instances)),
        (Method::POST, "/api/v1/instances", post(api::start_instance)),
        (Method::GET, "/api/v1/instances/{id}", get(api::get_instance)),
        (Method::GET, "/api/v1/instances/{id}/history", get(api::history)),
        (Method::POST, "/api/v1/instances/{id}/actions", post(api::act)),
        (Method::POST, "/api/v1/instances/{id}/cancel", post(api::cancel)),
        (Method::POST, "/api/v1/instances/{id}/migrate", post(api::migrate)),
        (Method::GET, "/api/v1/whoami", get(api::whoami)),
    ]
}

/// The routes that need no token.
pub fn public_routes() -> Vec<Route> {
    vec![
        (Method::GET, "/healthz", get(api::healthz)),
        (Method::GET, "/readyz", get(api::readyz)),
        (Method::GET, "/metrics", get(api::metrics)),
        (Method::GET, "/api/v1/openapi.json", get(api::openapi)),
    ]
}

/// The whole router.
pub fn router(state: Arc<AppState>) -> Router {
    let mut authed: Router<Arc<AppState>> = Router::new();
    for (_, path, handler) in api_routes() {
        authed = authed.route(path, handler);
    }
    let authed = authed.route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate));
    let mut app: Router<Arc<AppState>> = Router::new();
    for (_, path, handler) in public_routes() {
        app = app.route(path, handler);
    }
    app.merge(authed)
        .fallback(api::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        .with_state(state)
}
