//! Crash safety: a server driven by concurrent actions on many instances is killed with SIGKILL
//! at random moments and restarted, 20 times. After every kill: each acknowledged action is in
//! the history exactly once, nothing is half-applied (state equals the replay of the history),
//! SQLite's integrity check passes; after every restart, deadlines that fell due while the
//! server was down fire exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::{Server, TIMED, poll};
use serde_json::json;
use yishi_engine::store::sqlite::SqliteStore;
use yishi_engine::store::{Store, StoreOptions};

const CYCLES: usize = 20;
const INSTANCES: usize = 12;
const CLIENTS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_across_twenty_kills() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/counter.toml"), include_str!("../workflows/bench/counter.toml"))
        .unwrap();
    std::fs::write(tmp.path().join("workflows/t/timed.toml"), TIMED).unwrap();
    let mut server = Server::start(tmp.path(), None).await;
    let token = server.token.clone();
    let mut counters = Vec::new();
    for _ in 0..INSTANCES {
        let (st, c) = server.call("POST", "/api/v1/instances", Some(json!({"workflow": "t/counter"}))).await;
        assert_eq!(st, 201, "{c}");
        counters.push(c["id"].as_i64().unwrap());
    }
    let next_n = Arc::new(AtomicI64::new(1));
    let mut acked: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut timed: Vec<i64> = Vec::new();
    let mut checked_timed = 0;
    for cycle in 0..CYCLES {
        for _ in 0..2 {
            let (st, c) = server.call("POST", "/api/v1/instances", Some(json!({"workflow": "t/timed"}))).await;
            assert_eq!(st, 201);
            timed.push(c["id"].as_i64().unwrap());
        }
        // Concurrent clients until the kill.
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (base, token, counters, next_n) =
                (server.base.clone(), token.clone(), counters.clone(), next_n.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for k in 0.. {
                    let id = counters[(c * 7 + k * 3 + rand::random::<u8>() as usize) % counters.len()];
                    let n = next_n.fetch_add(1, Ordering::SeqCst);
                    let path = format!("/api/v1/instances/{id}/actions");
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        common::http(
                            &base,
                            &token,
                            "POST",
                            &path,
                            Some(json!({"action": "tick", "payload": {"n": n}})),
                        ),
                    )
                    .await
                    {
                        Ok(Some((200, _))) => mine.push((id, n)),
                        Ok(Some((status, body))) => panic!("unexpected {status}: {body}"),
                        _ => break, // the server is gone
                    }
                }
                mine
            }));
        }
        // Kill at a random moment.
        tokio::time::sleep(Duration::from_millis(80 + u64::from(rand::random::<u8>()))).await;
        let dir = server.kill(); // SIGKILL
        for t in tasks {
            for (id, n) in t.await.unwrap() {
                acked.entry(id).or_default().insert(n);
            }
        }
        // Check the database while the server is down.
        let store = SqliteStore::open(&StoreOptions::new(dir.join("yishi.db").display().to_string())).await.unwrap();
        assert_eq!(store.integrity_check().await.unwrap(), "ok", "cycle {cycle}");
        for id in &counters {
            common::check_ticks(&store, *id, acked.get(id), &format!("cycle {cycle}: ")).await;
        }
        store.close().await;
        server = Server::start(&dir, Some(token.clone())).await;
        // Deadlines that fell due while the server was down fire, once.
        for id in &timed[checked_timed..] {
            let case = poll("a late deadline", Duration::from_secs(30), async || {
                let (_, c) = server.call("GET", &format!("/api/v1/instances/{id}"), None).await;
                (c["instance"]["status"] == "completed").then_some(c)
            })
            .await;
            let fired = case["history"].as_array().unwrap().iter().filter(|e| e["type"] == "timer_fired").count();
            assert_eq!(fired, 1, "cycle {cycle}: timer of instance {id} fired {fired} times");
        }
        checked_timed = timed.len();
    }
    let total: usize = acked.values().map(BTreeSet::len).sum();
    println!("crash test: {CYCLES} kill cycles, {total} acknowledged actions checked, {} deadlines", timed.len());
    assert!(total > CYCLES, "the clients got actions through ({total})");
}
