//! When the disk is full or the database read-only: clients get a clear "unavailable" error,
//! nothing is half-written or corrupted, reads keep working, and writes work again once space
//! returns. SQLite's `max_page_count` produces the same SQLITE_FULL a full disk does. And what
//! a change stores: a ballot is recorded as itself, not with every ballot before it.

mod common;

use std::sync::Arc;

use serde_json::{Map, json};
use yishi_core::FileSet;
use yishi_core::clock::SystemClock;
use yishi_core::kind::Actor;
use yishi_core::runtime::{ActionRequest, replay};
use yishi_engine::service::{Engine, EngineError};
use yishi_engine::store::Store;
use yishi_engine::store::sqlite::SqliteStore;
use yishi_engine::store::{AnyStore, StoreOptions};

const COUNTER: &str = "id = \"counter\"\n[[steps]]\nid = \"count\"\nkind = \"task\"\nroles = [\"*\"]\nactions.tick = { fields = { note = \"string?\" } }\nactions.finish = {}\non = { tick = \"count\", finish = \"end\" }\n[[steps]]\nid = \"end\"\nkind = \"end\"\n";

async fn engine_on(store: SqliteStore) -> Arc<Engine> {
    let engine = common::engine_on(AnyStore::Sqlite(store), Arc::new(SystemClock)).await;
    let mut files = FileSet::new();
    files.insert("u/counter.toml", COUNTER);
    assert!(engine.activate_files(&files, "test").await.unwrap().ok);
    engine
}

fn tick(note: &str) -> ActionRequest {
    let payload: Map<String, serde_json::Value> = [("note".to_owned(), json!(note))].into_iter().collect();
    ActionRequest {
        action: "tick".into(),
        step: None,
        token: None,
        payload,
        actor: Actor { id: "a".into(), roles: vec![] },
        on_behalf_of: None,
    }
}

#[tokio::test]
async fn a_full_disk_is_reported_as_unavailable_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("y.db");
    let pages = 160; // small: fills after some hundreds of actions
    let store = SqliteStore::open_file(&db, &StoreOptions::new(""), |o| o.pragma("max_page_count", pages.to_string()))
        .await
        .unwrap();
    let engine = engine_on(store).await;
    let actor = Actor { id: "a".into(), roles: vec![] };
    let case = engine.start("u/counter", Map::new(), &actor, None).await.unwrap();
    let big = "x".repeat(2_000);
    let mut acknowledged = 0;
    let err = loop {
        match engine.act(case.id, tick(&big), None, None).await {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 10_000, "the disk never filled");
    };
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    assert!(acknowledged > 10);
    // Reads keep working, and the case is exactly what was acknowledged.
    let row = engine.get(case.id).await.unwrap();
    assert_eq!(row.revision, 1 + acknowledged);
    // Space returns: the same file opened without the limit takes writes again.
    drop(engine);
    let store = SqliteStore::open_file(&db, &StoreOptions::new(""), |o| o).await.unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    let history = store.history(case.id).await.unwrap();
    let ticks = history
        .iter()
        .filter(|e| e.event.kind() == "action" && serde_json::to_value(&e.event).unwrap()["action"] == "tick")
        .count() as i64;
    assert_eq!(ticks, acknowledged, "every acknowledged action, and nothing else");
    let row = store.load(case.id).await.unwrap();
    assert_eq!(replay(history.iter().map(|e| (&e.event, e.at))), row.state);
    let engine = engine_on(store).await;
    engine.act(case.id, tick("after"), None, None).await.unwrap();
}

#[tokio::test]
async fn a_read_only_database_answers_reads_and_refuses_writes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("y.db");
    let case = {
        let engine = engine_on(SqliteStore::open_file(&db, &StoreOptions::new(""), |o| o).await.unwrap()).await;
        let c = engine.start("u/counter", Map::new(), &Actor { id: "a".into(), roles: vec![] }, None).await.unwrap();
        engine.close().await;
        c
    };
    let store = SqliteStore::open_file(&db, &StoreOptions::new(""), |o| o.read_only(true)).await.unwrap();
    // Versions are already stored, so loading the same workflows writes nothing.
    let engine = engine_on(store).await;
    assert_eq!(engine.view(case.id).await.unwrap().revision, 1);
    let err = engine.act(case.id, tick("x"), None, None).await.unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    assert_eq!(engine.view(case.id).await.unwrap().revision, 1, "nothing changed");
}

/// A vote records each ballot, not every ballot so far: its history grows with the ballots
/// cast, not with their square, and replaying it gives the stored state.
#[tokio::test]
async fn a_ballot_is_recorded_as_the_change_it_makes() {
    const VOTE: &str = "id = \"vote\"\n[roles]\nrep = \"representative\"\nstaff = \"staff\"\n[[steps]]\nid = \"vote\"\nkind = \"vote\"\nelectorate = { role = \"rep\", size = 9 }\nactors = { vote = [\"rep\"], close = [\"staff\"] }\non = { passed = \"end\", rejected = \"end\", no_quorum = \"end\" }\n[[steps]]\nid = \"end\"\nkind = \"end\"\n";
    let (engine, _clock) = common::quiet_engine().await;
    let mut files = FileSet::new();
    files.insert("u/vote.toml", VOTE);
    assert!(engine.activate_files(&files, "test").await.unwrap().ok);
    let case = engine.start("u/vote", Map::new(), &Actor { id: "staff1".into(), roles: vec![] }, None).await.unwrap();
    for i in 0..6 {
        let req = ActionRequest {
            action: "vote".into(),
            step: None,
            token: None,
            payload: [("choice".to_owned(), json!("for"))].into_iter().collect(),
            actor: Actor { id: format!("rep{i}"), roles: vec!["rep".into()] },
            on_behalf_of: None,
        };
        engine.act(case.id, req, None, None).await.unwrap();
        let history = engine.history(case.id).await.unwrap();
        let last = serde_json::to_value(&history.last().unwrap().event).unwrap();
        assert_eq!(last["type"], "step_state_changed", "{last}");
        let ballots = last["patch"]["ballots"].as_object().unwrap();
        assert_eq!(ballots.keys().collect::<Vec<_>>(), [&format!("rep{i}")], "only the new ballot: {last}");
        let row = engine.get(case.id).await.unwrap();
        assert_eq!(replay(history.iter().map(|e| (&e.event, e.at))), row.state);
        assert_eq!(row.state.tokens[0].state["ballots"].as_object().unwrap().len(), i + 1);
    }
}
