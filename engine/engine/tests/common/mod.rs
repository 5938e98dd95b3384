//! Test helpers: an engine on an in-memory database with a hand-moved clock.
#![allow(dead_code)]

pub mod backends;

use std::path::Path;
use std::sync::Arc;

use chrono::TimeZone;
use serde_json::{Map, Value, json};
use yishi_core::FileSet;
use yishi_core::clock::ManualClock;
use yishi_core::kind::{Actor, Registry};
use yishi_core::runtime::{ActionRequest, Event, replay};
use yishi_engine::service::{Config, Engine, EngineError, InstanceView};
use yishi_engine::store::AnyStore;
use yishi_engine::store::sqlite::SqliteStore;

/// Friday 2026-09-25 10:00 in China Standard Time.
pub fn t0() -> i64 {
    chrono::FixedOffset::east_opt(8 * 3600).unwrap().with_ymd_and_hms(2026, 9, 25, 10, 0, 0).unwrap().timestamp_millis()
}

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

pub struct Harness {
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
}

pub async fn harness_with(dir: &Path, registry: Registry) -> Harness {
    harness_on(AnyStore::Sqlite(SqliteStore::memory().await.expect("memory db")), dir, registry).await
}

/// [`harness_with`] on a given store (a database file, to use the writer connection).
pub async fn harness_on(store: AnyStore, dir: &Path, registry: Registry) -> Harness {
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::new(store, registry, clock.clone(), Config::default());
    let files = FileSet::load_dir(dir).expect("workflows folder");
    let report = engine.activate_files(&files, "test").await.expect("reload");
    assert!(report.ok, "workflows must check clean: {:#?}", report.diagnostics);
    Harness { engine, clock }
}

pub fn patterns_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/patterns")
}

pub async fn patterns() -> Harness {
    harness_with(&patterns_dir(), Registry::with_builtins()).await
}

pub fn actor(id: &str, roles: &[&str]) -> Actor {
    Actor { id: id.into(), roles: roles.iter().map(|r| (*r).to_owned()).collect() }
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// An action by `who`, on whichever active step accepts it.
pub fn request(action: &str, who: &Actor, payload: Value) -> ActionRequest {
    ActionRequest {
        action: action.into(),
        step: None,
        token: None,
        payload: obj(payload),
        actor: who.clone(),
        on_behalf_of: None,
    }
}

impl Harness {
    pub async fn start(&self, workflow: &str, data: Value) -> InstanceView {
        self.engine.start(workflow, obj(data), &actor("admin", &["staff"]), None).await.expect("start")
    }

    pub async fn act(&self, id: i64, action: &str, who: &Actor, payload: Value) -> Result<InstanceView, EngineError> {
        self.engine.act(id, request(action, who, payload), None, None).await
    }

    pub async fn act_at(
        &self,
        id: i64,
        step: &str,
        action: &str,
        who: &Actor,
        payload: Value,
    ) -> Result<InstanceView, EngineError> {
        let req = ActionRequest { step: Some(step.into()), ..request(action, who, payload) };
        self.engine.act(id, req, None, None).await
    }

    pub async fn act_token(&self, id: i64, token: u32, action: &str, who: &Actor) -> Result<InstanceView, EngineError> {
        let req = ActionRequest { token: Some(token), ..request(action, who, json!({})) };
        self.engine.act(id, req, None, None).await
    }

    /// The stored state equals the replay of the stored history.
    pub async fn assert_replays(&self, id: i64) {
        let row = self.engine.get(id).await.expect("load");
        let history = self.engine.history(id).await.expect("history");
        let replayed = replay(history.iter().map(|e| (&e.event, e.at)));
        assert_eq!(replayed, row.state, "replaying instance {id} must give its stored state");
        let cached = self.engine.get(id).await.expect("get");
        assert_eq!(cached.state, row.state, "cached and stored state of {id} must agree");
    }

    pub async fn events(&self, id: i64) -> Vec<Event> {
        self.engine.history(id).await.expect("history").into_iter().map(|e| e.event).collect()
    }

    pub async fn event_types(&self, id: i64) -> Vec<&'static str> {
        self.events(id).await.iter().map(Event::kind).collect()
    }

    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }
}

pub fn steps(v: &InstanceView) -> Vec<&str> {
    v.active_steps.iter().map(String::as_str).collect()
}

pub fn json_of<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(json!(null))
}
