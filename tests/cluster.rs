//! Three `yishi serve` nodes on one PostgreSQL database, under load, with nodes SIGKILLed and
//! restarted mid-run. Clients spread over the nodes act concurrently on shared cases while
//! 1,500 deadlines fall due. After: every acknowledged action is in its case's history exactly
//! once, every case equals the replay of its events, every deadline fired exactly once; a rule
//! changed on the leading node is active on the others, and a token revoked through one node is
//! refused by another. Skipped, saying why, without PostgreSQL (never under CI).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::backends::PgDatabase;
use common::{Server, TIMED, poll};
use serde_json::json;
use yishi_core::runtime::{Event, replay};
use yishi_engine::store::{ListFilter, Store, StoreOptions};

const NODES: usize = 3;
const KILLS: usize = 6;
const COUNTERS: usize = 12;
const DEADLINES: usize = 1_500;
const CLIENTS: usize = 6;

fn folder(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("workflows/t")).unwrap();
    std::fs::write(dir.join("workflows/t/counter.toml"), include_str!("../workflows/bench/counter.toml")).unwrap();
    std::fs::write(dir.join("workflows/t/timed.toml"), TIMED).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_lose_nothing_and_fire_every_deadline_once_while_nodes_are_killed() {
    let Some(db) = PgDatabase::create("cluster_kills").await else { return };
    let dirs: Vec<_> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    for d in &dirs {
        folder(d.path());
    }
    let args = ["--db", db.url.as_str(), "--cluster-interval-ms", "200"];
    let first = Server::start_with(dirs[0].path(), None, &args).await;
    let token = first.token.clone();
    let mut nodes: Vec<Option<Server>> = vec![Some(first)];
    for d in &dirs[1..] {
        nodes.push(Some(Server::start_with(d.path(), Some(token.clone()), &args).await));
    }
    let node = |nodes: &Vec<Option<Server>>, i: usize| nodes[i % NODES].as_ref().unwrap().base.clone();

    let mut counters = Vec::new();
    for i in 0..COUNTERS {
        let (st, c) =
            common::http(&node(&nodes, i), &token, "POST", "/api/v1/instances", Some(json!({"workflow": "t/counter"})))
                .await
                .unwrap();
        assert_eq!(st, 201, "{c}");
        counters.push(c["id"].as_i64().unwrap());
    }
    // 1,500 cases whose deadlines fall due a second after they start, started through every node.
    let mut starts = Vec::new();
    for k in 0..CLIENTS {
        let bases: Vec<String> = (0..NODES).map(|i| node(&nodes, i)).collect();
        let token = token.clone();
        starts.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..DEADLINES / CLIENTS {
                let base = &bases[(k + i) % NODES];
                let (st, c) =
                    common::http(base, &token, "POST", "/api/v1/instances", Some(json!({"workflow": "t/timed"})))
                        .await
                        .unwrap();
                assert_eq!(st, 201, "{c}");
                ids.push(c["id"].as_i64().unwrap());
            }
            ids
        }));
    }
    let mut timed = Vec::new();
    for s in starts {
        timed.extend(s.await.unwrap());
    }

    let next_n = Arc::new(AtomicI64::new(1));
    let mut acked: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for kill in 0..KILLS {
        let bases: Vec<String> = (0..NODES).map(|i| node(&nodes, i)).collect();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (bases, token, counters, next_n) = (bases.clone(), token.clone(), counters.clone(), next_n.clone());
            tasks.push(tokio::spawn(async move {
                let base = &bases[c % NODES];
                let mut mine = Vec::new();
                for k in 0.. {
                    let id = counters[(c * 5 + k * 3 + rand::random::<u8>() as usize) % counters.len()];
                    let n = next_n.fetch_add(1, Ordering::SeqCst);
                    let path = format!("/api/v1/instances/{id}/actions");
                    let body = json!({"action": "tick", "payload": {"n": n}});
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        common::http(base, &token, "POST", &path, Some(body)),
                    )
                    .await
                    {
                        Ok(Some((200, _))) => mine.push((id, n)),
                        // Two nodes on one case: retried on fresh state, and at last a conflict.
                        Ok(Some((409, _))) => {}
                        Ok(Some((status, body))) => panic!("unexpected {status}: {body}"),
                        _ => break, // its node is gone
                    }
                    if k > 400 {
                        break;
                    }
                }
                mine
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + u64::from(rand::random::<u8>()))).await;
        let victim = kill % NODES;
        let dir = nodes[victim].take().unwrap().kill(); // SIGKILL
        for t in tasks {
            for (id, n) in t.await.unwrap() {
                acked.entry(id).or_default().insert(n);
            }
        }
        nodes[victim] = Some(Server::start_with(&dir, Some(token.clone()), &args).await);
    }

    check_the_database(&db.url, &timed, &counters, &acked).await;
    a_reload_and_a_revocation_reach_every_node(&nodes, &token, &db.url).await;
    drop(nodes);
    db.drop_now().await;
}

/// Every deadline fired once, every acknowledged action applied once, every case whole.
async fn check_the_database(url: &str, timed: &[i64], counters: &[i64], acked: &BTreeMap<i64, BTreeSet<i64>>) {
    // Every deadline falls due and fires, also those a killed node had claimed (their lease
    // runs out and another node fires them).
    let store = yishi_engine::store::open(&StoreOptions::new(url)).await.unwrap();
    poll("every deadline fired", Duration::from_secs(120), async || {
        let active = ListFilter {
            workflow: Some("t/timed".into()),
            status: Some("active".into()),
            limit: 1,
            ..Default::default()
        };
        store.list(&active).await.unwrap().is_empty().then_some(())
    })
    .await;
    for id in timed {
        let history = store.history(*id).await.unwrap();
        let fired = history.iter().filter(|e| matches!(e.event, Event::TimerFired { .. })).count();
        assert_eq!(fired, 1, "the deadline of case {id} fired {fired} times");
        let row = store.load(*id).await.unwrap();
        assert_eq!(replay(history.iter().map(|e| (&e.event, e.at))), row.state, "case {id} is half-applied");
    }
    for id in counters {
        common::check_ticks(&store, *id, acked.get(id), "").await;
    }
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
    let total: usize = acked.values().map(BTreeSet::len).sum();
    println!(
        "cluster test: {NODES} nodes, {KILLS} kills, {total} acknowledged actions checked, {} deadlines fired once",
        timed.len()
    );
    assert!(total > KILLS * CLIENTS, "the clients got actions through ({total})");

    store.close().await;
}

/// A rule changed on the leading node is active on the others, and a token revoked through
/// one node is refused by another.
async fn a_reload_and_a_revocation_reach_every_node(nodes: &[Option<Server>], token: &str, url: &str) {
    let node = |i: usize| nodes[i % NODES].as_ref().unwrap().base.clone();
    // After the kills: a rule changed on the leading node is active on the others ...
    let (_, listed) = common::http(&node(0), token, "GET", "/api/v1/nodes", None).await.unwrap();
    let leader = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["leader"] == true && n["alive"] == true)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let lead = nodes.iter().flatten().position(|s| s.base.ends_with(&leader)).unwrap();
    let file = nodes[lead].as_ref().unwrap().dir.join("workflows/t/timed.toml");
    std::fs::write(&file, TIMED.replace("after = \"1s\"", "after = \"2s\"")).unwrap();
    let (st, reloaded) = common::http(&node(lead), token, "POST", "/api/v1/reload", None).await.unwrap();
    assert_eq!((st, reloaded["ok"].as_bool()), (200, Some(true)), "{reloaded}");
    for other in (0..NODES).filter(|i| *i != lead) {
        poll("the new version on every node", Duration::from_secs(30), async || {
            let (_, v) =
                common::http(&node(other), token, "GET", "/api/v1/workflows/t/timed/versions", None).await.unwrap();
            v["items"].as_array()?.iter().any(|v| v["version"] == 2 && v["current"] == true).then_some(())
        })
        .await;
    }
    // ... and a token revoked through one node is refused by another.
    let tokens_dir = nodes[0].as_ref().unwrap().dir.clone();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
            .args(args)
            .current_dir(&tokens_dir)
            .env("YISHI_LANG", "en")
            .output()
            .unwrap()
    };
    let out = run(&["token", "create", "--name", "zhao", "--role", "viewer", "--db", url]);
    let secret =
        String::from_utf8_lossy(&out.stdout).split_whitespace().find(|w| w.starts_with("yishi_")).unwrap().to_owned();
    let (st, _) = common::http(&node(2), &secret, "GET", "/api/v1/whoami", None).await.unwrap();
    assert_eq!(st, 200);
    let listed = String::from_utf8_lossy(&run(&["token", "list", "--db", url]).stdout).into_owned();
    let id = listed.lines().find(|l| l.contains("zhao")).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    assert!(run(&["token", "revoke", &id, "--db", url]).status.success());
    poll("the revoked token refused", Duration::from_secs(30), async || {
        let (st, _) = common::http(&node(2), &secret, "GET", "/api/v1/whoami", None).await?;
        (st == 401).then_some(())
    })
    .await;
}
