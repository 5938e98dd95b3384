//! Two conflicting actions on one instance at the same moment: exactly one applies, the other
//! gets a conflict it can retry. Real threads, many rounds. And a caller that goes away in the
//! middle of its action (an HTTP client disconnecting) leaves nothing half done.

mod common;

use common::*;
use serde_json::json;
use std::future::Future;

use yishi_core::runtime::Event;
use yishi_engine::service::EngineError;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_actions_never_both_apply() {
    let h = patterns().await;
    let staff = actor("li", &["staff"]);
    for round in 0..50 {
        let c = h.start("wcp/sequence", json!({})).await;
        let mut tasks = Vec::new();
        for who in ["a", "b"] {
            let engine = h.engine.clone();
            let req = request("register", &actor(who, &["staff"]), json!({}));
            tasks.push(tokio::spawn(async move { engine.act(c.id, req, Some(c.revision), None).await }));
        }
        let results: Vec<_> = futures_join(tasks).await;
        let applied = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results.iter().filter(|r| matches!(r, Err(EngineError::Conflict(_)))).count();
        assert_eq!((applied, conflicts), (1, 1), "round {round}: {results:?}");
        let registers = h
            .events(c.id)
            .await
            .iter()
            .filter(|e| matches!(e, Event::Action { action, .. } if action == "register"))
            .count();
        assert_eq!(registers, 1, "round {round}");
        // The loser retries against the new revision and is told the step has moved on.
        let err = h.act(c.id, "register", &staff, json!({})).await.unwrap_err();
        assert!(matches!(err, EngineError::Refused { .. }), "{err:?}");
        h.assert_replays(c.id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_instances_advance_at_once_without_losing_anything() {
    let h = patterns().await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(h.start("wcp/sequence", json!({})).await.id);
    }
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let engine = h.engine.clone();
        tasks.push(tokio::spawn(async move {
            for action in ["register", "done"] {
                let req = request(action, &actor("li", &["staff"]), json!({}));
                engine.act(id, req, None, None).await?;
            }
            Ok::<_, EngineError>(())
        }));
    }
    for r in futures_join(tasks).await {
        r.unwrap();
    }
    for id in ids {
        assert_eq!(h.engine.view(id).await.unwrap().status, yishi_core::runtime::Status::Completed);
        h.assert_replays(id).await;
    }
    let (units, _, _) = h.engine.commit_totals();
    assert!(units >= 600, "200 starts and 400 actions were committed, each on its own: {units}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_abandoned_mid_commit_leaves_the_case_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = yishi_engine::store::StoreOptions::new(dir.path().join("y.db").display().to_string());
    let store = yishi_engine::store::open(&options).await.unwrap();
    let h = harness_on(store, &patterns_dir(), yishi_core::kind::Registry::with_builtins()).await;
    let staff = actor("li", &["staff"]);
    for round in 0..30 {
        let c = h.start("wcp/sequence", json!({})).await;
        let req = request("register", &staff, json!({}));
        // Poll the action a few times (the commit is under way), then drop it, as axum drops
        // a handler whose client went away. Vary how far it gets.
        {
            let fut = h.engine.act(c.id, req, None, None);
            tokio::pin!(fut);
            // Never poll it again once it is done (a busy machine may finish it in one poll).
            for _ in 0..(round % 4) {
                let ready = std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
                if ready {
                    break;
                }
            }
        }
        // The abandoned action either applied once or not at all; the case goes on either way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let view = loop {
            match h.act(c.id, "done", &staff, json!({})).await {
                Ok(v) => break v,
                Err(EngineError::Refused { .. }) => {
                    // Not applied: `done` is not accepted before `register`. Register now.
                    h.act(c.id, "register", &staff, json!({})).await.unwrap();
                }
                Err(EngineError::Conflict(_)) => {}
                Err(e) => panic!("round {round}: {e:?}"),
            }
            assert!(std::time::Instant::now() < deadline, "round {round}: the case never moved on");
            tokio::task::yield_now().await;
        };
        assert_eq!(view.status, yishi_core::runtime::Status::Completed, "round {round}");
        let registers = h
            .events(c.id)
            .await
            .iter()
            .filter(|e| matches!(e, Event::Action { action, .. } if action == "register"))
            .count();
        assert_eq!(registers, 1, "round {round}");
        h.assert_replays(c.id).await;
    }
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// Two nodes on one PostgreSQL database: a node's copy of a case from its last change is tried
/// first, but a stale copy never refuses an action the case now accepts, and never applies one
/// it no longer accepts.
#[tokio::test]
async fn a_stale_copy_on_one_node_never_decides_an_action() {
    let Some(db) = backends::PgDatabase::create("stale_copy").await else { return };
    let registry = || yishi_core::kind::Registry::with_builtins();
    let a = harness_on(db.store().await, &patterns_dir(), registry()).await;
    let b = harness_on(db.store().await, &patterns_dir(), registry()).await;
    let staff = actor("li", &["staff"]);
    let c = a.start("wcp/sequence", json!({})).await;
    // A keeps its copy (at `register`); B moves the case on to `study`.
    b.act(c.id, "register", &staff, json!({})).await.unwrap();
    // `done` is what `study` accepts: A applies it, though its copy says otherwise.
    a.act(c.id, "done", &staff, json!({})).await.unwrap();
    let events = b.events(c.id).await;
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Action { action, .. } => Some(action.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(actions, vec!["start", "register", "done"], "{events:?}");
    b.assert_replays(c.id).await;
    // The other way round: A's copy accepts `register` again, the case does not (B registered
    // it meanwhile). The database refuses A's stale change, and A, reading afresh, refuses it.
    let c = a.start("wcp/sequence", json!({})).await;
    b.act(c.id, "register", &staff, json!({})).await.unwrap();
    let err = a.act(c.id, "register", &staff, json!({})).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused { .. }), "{err:?}");
    let registers = b
        .events(c.id)
        .await
        .iter()
        .filter(|e| matches!(e, Event::Action { action, .. } if action == "register"))
        .count();
    assert_eq!(registers, 1);
    b.assert_replays(c.id).await;
    drop((a, b));
    db.drop_now().await;
}
