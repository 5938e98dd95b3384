//! The HTTP admin API (axum): routes, shared state, limits and graceful shutdown.

pub mod api;
pub mod auth;
pub mod error;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use yishi_engine::service::Engine;
use yishi_engine::store::Store;

use crate::reload::Reloader;

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

/// The whole router.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let api = Router::new()
        .route("/communities", get(api::communities::<S>))
        .route("/workflows", get(api::workflows::<S>))
        .route("/workflows/{*path}", get(api::workflow::<S>))
        .route("/reload", get(api::reload_status::<S>).post(api::reload::<S>))
        .route("/validate", post(api::validate::<S>))
        .route("/instances", get(api::list_instances::<S>).post(api::start_instance::<S>))
        .route("/instances/{id}", get(api::get_instance::<S>))
        .route("/instances/{id}/history", get(api::history::<S>))
        .route("/instances/{id}/actions", post(api::act::<S>))
        .route("/instances/{id}/cancel", post(api::cancel::<S>))
        .route("/instances/{id}/migrate", post(api::migrate::<S>))
        .route("/whoami", get(api::whoami::<S>))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::authenticate::<S>));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz::<S>))
        .route("/metrics", get(api::metrics::<S>))
        .fallback(api::no_route)
        .layer(middleware::from_fn_with_state(state.clone(), count::<S>))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, Duration::from_secs(15)))
        .with_state(state)
}
