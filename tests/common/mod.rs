//! Shared by the root tests: an engine with every step kind, on an in-memory database, with a
//! hand-moved clock.
#![allow(dead_code)]

use std::sync::Arc;

use yishi_engine::clock::ManualClock;
use yishi_engine::service::{Config, Engine};
use yishi_engine::store::sqlite::SqliteStore;

pub async fn quiet_engine() -> (Arc<Engine<SqliteStore>>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let store = SqliteStore::memory().await.unwrap();
    let engine =
        Engine::new(store, yishi::registry(), clock.clone(), Config { log_activity: false, ..Config::default() })
            .await
            .unwrap();
    (engine, clock)
}
