//! The HTTP API in process, for tests that speak HTTP: requests in, status, headers and
//! bodies out, over any workflows folder.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use yishi::server::{AppState, router};
use yishi_core::clock::ManualClock;
use yishi_engine::reload::Reloader;
use yishi_engine::service::Engine;
use yishi_engine::service::access::TokenSpec;
use yishi_engine::store::AnyStore;
use yishi_engine::store::sqlite::SqliteStore;

pub struct Api {
    pub app: Router,
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
    pub reloader: Arc<Reloader>,
}

/// A response with its body as text.
pub struct TextAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A response: status, headers and the body (JSON, or the text as a JSON string).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    /// The API over the shipped workflows.
    pub async fn new() -> Self {
        Api::on(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")).await
    }

    /// The API over the workflows in `dir`, on an in-memory database, with a clock the test
    /// moves (starting at the real time).
    pub async fn on(dir: &Path) -> Self {
        let (api, ok) = Api::loading(dir).await;
        assert!(ok, "the workflows in {} load cleanly", dir.display());
        api
    }

    /// The API over `dir`, and whether its workflows loaded without errors.
    pub async fn loading(dir: &Path) -> (Self, bool) {
        Api::loading_on(dir, AnyStore::Sqlite(SqliteStore::memory().await.unwrap())).await
    }

    /// The API over the shipped workflows on `store` (a PostgreSQL database, say).
    pub async fn on_store(store: AnyStore) -> Self {
        let (api, ok) = Api::loading_on(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows"), store).await;
        assert!(ok, "the shipped workflows load cleanly");
        api
    }

    async fn loading_on(dir: &Path, store: AnyStore) -> (Self, bool) {
        let now = chrono::Utc::now().timestamp_millis();
        let clock = Arc::new(ManualClock::new(now));
        let engine = super::engine_on(store, clock.clone()).await;
        let reloader = Arc::new(Reloader::new(dir.to_path_buf(), engine.clone()));
        let ok = reloader.reload("test").await.unwrap().ok;
        let api = Api {
            app: router(AppState::new(
                engine.clone(),
                reloader.clone(),
                yishi_core::i18n::Lang::En,
                yishi_core::calendar::Zone::default(),
            )),
            engine,
            clock,
            reloader,
        };
        (api, ok)
    }

    pub async fn token(&self, role: &str, scope: &str, acts_as: &[&str]) -> String {
        let acts: Vec<String> = acts_as.iter().map(|s| (*s).to_owned()).collect();
        let name = format!("{role}@{scope}");
        let spec = TokenSpec { name: &name, role, scope, acts_as: &acts };
        self.engine.create_token(&spec).await.unwrap().1
    }

    pub async fn call(&self, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        self.raw(method, uri, token, body.map(|b| ("application/json", b.to_string())), &[]).await
    }

    pub async fn raw(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let a = self.send(method, uri, token, body, headers).await;
        (a.status, a.body)
    }

    /// Sends a request to any route (the console's pages too) and returns the body as text.
    pub async fn send_any(
        &self,
        method: &str,
        uri: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> TextAnswer {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some((ct, b)) => req.header("content-type", ct).body(Body::from(b)).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        TextAnswer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// Sends a request; every error must come as `application/problem+json`.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some((ct, b)) => req.header("content-type", ct).body(Body::from(b)).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        if status.is_client_error() || status.is_server_error() {
            assert!(
                ct.starts_with("application/problem+json"),
                "{status} {uri} answered {ct}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, headers, body }
    }
}
