//! Shared by the root tests: an engine with every step kind, on an in-memory database, with a
//! hand-moved clock.
#![allow(dead_code)]

pub mod api;
/// Fresh stores of each backend, and test databases on PostgreSQL (shared with the engine's tests).
#[path = "../../engine/engine/tests/common/backends.rs"]
pub mod backends;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use yishi_core::clock::{Clock, ManualClock};
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::AnyStore;
use yishi_engine::store::sqlite::SqliteStore;

/// An engine with every step kind on `store`, not logging the cases it runs.
pub async fn engine_on(store: AnyStore, clock: Arc<dyn Clock>) -> Arc<Engine> {
    Engine::new(store, yishi::registry(), clock, Config { observed: false, ..Config::default() })
}

pub async fn quiet_engine() -> (Arc<Engine>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let engine = engine_on(AnyStore::Sqlite(SqliteStore::memory().await.unwrap()), clock.clone()).await;
    (engine, clock)
}

/// A case that waits one second for a deadline (outcome `expired`) unless `done` comes first.
pub const TIMED: &str = r#"
id = "timed"
[roles]
staff = "staff"
[[steps]]
id = "wait"
kind = "task"
roles = ["staff"]
actions.done = {}
deadline = { after = "1s", outcome = "late" }
on = { done = "finished", late = "expired" }
[[steps]]
id = "finished"
kind = "end"
outcome = "done"
[[steps]]
id = "expired"
kind = "end"
outcome = "expired"
"#;

/// A `yishi serve` process on a free port in a temp folder.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub base: String,
    pub token: String,
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target)
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub async fn poll<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Server {
    pub async fn start(dir: &Path, token: Option<String>) -> Server {
        Self::start_with(dir, token, &[]).await
    }

    pub async fn start_with(dir: &Path, token: Option<String>, extra: &[&str]) -> Server {
        let out = std::fs::File::create(dir.join("out.log")).unwrap();
        let err = std::fs::File::create(dir.join("err.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_yishi"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap();
        let dir = dir.to_owned();
        let base = poll("the server to listen", Duration::from_secs(60), async || {
            let log = std::fs::read_to_string(dir.join("out.log")).ok()?;
            let at = log.find("serving http://")? + "serving ".len();
            Some(log[at..].split_whitespace().next()?.trim_end_matches("/api/v1").to_owned())
        })
        .await;
        let token = match token {
            Some(t) => t,
            None => {
                let err = std::fs::read_to_string(dir.join("err.log")).unwrap();
                err.split_whitespace().find(|w| w.starts_with("yishi_")).expect("first-run token").to_owned()
            }
        };
        Server { child, dir, base, token }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_call(method, path, body).await.expect("the server answers")
    }

    /// Like `call`, but `None` when the server cannot be reached.
    pub async fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        http(&self.base, &self.token, method, path, body).await
    }

    pub fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
        self.dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request with a bearer token; `None` when the server cannot be reached.
pub async fn http(base: &str, token: &str, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
    http_full(base, token, method, path, body).await.map(|(status, _, body)| (status, body))
}

/// [`http`] with the answer's headers.
pub async fn http_full(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, hyper::HeaderMap, Value)> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()))).ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// A `tick` counter case after crashes (`tests/crash.rs`, `tests/cluster.rs`): every
/// acknowledged tick in its history, none twice, and its state equal to the replay of its
/// history. `when` prefixes the messages (`"cycle 3: "`).
pub async fn check_ticks(
    store: &impl yishi_engine::store::Store,
    id: i64,
    acked: Option<&std::collections::BTreeSet<i64>>,
    when: &str,
) {
    use yishi_core::runtime::{Event, replay};
    let history = store.history(id).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for e in &history {
        if let Event::Action { action, payload, .. } = &e.event
            && action == "tick"
        {
            let n = payload["n"].as_i64().unwrap();
            assert!(seen.insert(n), "{when}action {n} applied twice on case {id}");
        }
    }
    if let Some(want) = acked {
        let missing: Vec<_> = want.difference(&seen).collect();
        assert!(missing.is_empty(), "{when}acknowledged actions {missing:?} lost on case {id}");
    }
    let row = store.load(id).await.unwrap();
    assert_eq!(replay(history.iter().map(|e| (&e.event, e.at))), row.state, "{when}case {id} is half-applied");
}
