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
use yishi_engine::store::Store;

use yishi_engine::reload::Reloader;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
pub struct AppState<S: Store> {
    pub engine: Arc<Engine<S>>,
    pub reloader: Arc<Reloader<S>>,
    pub requests: AtomicU64,
    pub client_errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub started_at: std::time::Instant,
}

impl<S: Store> AppState<S> {
    pub fn new(engine: Arc<Engine<S>>, reloader: Arc<Reloader<S>>) -> Arc<Self> {
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

async fn count<S: Store>(State(state): State<Arc<AppState<S>>>, req: Request, next: Next) -> Response {
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
pub type Route<S> = (Method, &'static str, MethodRouter<Arc<AppState<S>>>);

/// The routes the router serves. `openapi::operations` documents each.
pub fn api_routes<S: Store>() -> Vec<Route<S>> {
    vec![
        (Method::GET, "/api/v1/communities", get(api::communities::<S>)),
        (Method::GET, "/api/v1/workflows", get(api::workflows::<S>)),
        (Method::GET, "/api/v1/workflows/{*path}", get(api::workflow::<S>)),
        (Method::GET, "/api/v1/reload", get(api::reload_status::<S>)),
        (Method::POST, "/api/v1/reload", post(api::reload::<S>)),
        (Method::POST, "/api/v1/validate", post(api::validate::<S>)),
        (Method::GET, "/api/v1/instances", get(api::list_instances::<S>)),
        (Method::POST, "/api/v1/instances", post(api::start_instance::<S>)),
        (Method::GET, "/api/v1/instances/{id}", get(api::get_instance::<S>)),
        (Method::GET, "/api/v1/instances/{id}/history", get(api::history::<S>)),
        (Method::POST, "/api/v1/instances/{id}/actions", post(api::act::<S>)),
        (Method::POST, "/api/v1/instances/{id}/cancel", post(api::cancel::<S>)),
        (Method::POST, "/api/v1/instances/{id}/migrate", post(api::migrate::<S>)),
        (Method::GET, "/api/v1/whoami", get(api::whoami::<S>)),
    ]
}

/// The routes that need no token.
pub fn public_routes<S: Store>() -> Vec<Route<S>> {
    vec![
        (Method::GET, "/healthz", get(api::healthz)),
        (Method::GET, "/readyz", get(api::readyz::<S>)),
        (Method::GET, "/metrics", get(api::metrics::<S>)),
        (Method::GET, "/api/v1/openapi.json", get(api::openapi)),
    ]
}

/// The whole router.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let mut authed: Router<Arc<AppState<S>>> = Router::new();
    for (_, path, handler) in api_routes::<S>() {
        authed = authed.route(path, handler);
    }
    let authed = authed.route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate::<S>));
    let mut app: Router<Arc<AppState<S>>> = Router::new();
    for (_, path, handler) in public_routes::<S>() {
        app = app.route(path, handler);
    }
    app.merge(authed)
        .fallback(api::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), count::<S>))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        .with_state(state)
}
