//! `notify` webhooks go through the outbox after the commit: delivered by HTTP, retried with
//! backoff when the receiver fails, never blocking the case.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Map, Value, json};
use yishi::webhook::HttpWebhooks;
use yishi_core::FileSet;
use yishi_core::kind::Actor;

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_delivered_after_the_commit_and_retried() {
    // A receiver that fails its first call.
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let (c, b) = (calls.clone(), bodies.clone());
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                b.lock().unwrap().push(body.0);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut files = FileSet::new();
    files.insert(
        "u/w.toml",
        format!(
            "id = \"w\"\n[[steps]]\nid = \"tell\"\nkind = \"notify\"\nto = [\"street_office\"]\nmessage = \"case {{registration}} was decided\"\nwebhook = \"http://127.0.0.1:{port}/hook\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n"
        ),
    );
    let (engine, clock) = common::quiet_engine().await;
    assert!(engine.activate_files(&files, "test").await.unwrap().ok);
    let data: Map<String, Value> = [("registration".to_owned(), json!("LHL-2026-0007"))].into_iter().collect();
    let case = engine.start("u/w", data, &Actor { id: "staff".into(), roles: vec![] }, None).await.unwrap();
    assert_eq!(case.outcome, None);
    assert_eq!(case.status, yishi_core::runtime::Status::Completed, "the case does not wait for the webhook");

    let sender = HttpWebhooks::default();
    assert_eq!(engine.deliver_outbox(&sender).await.unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "first attempt failed");
    assert_eq!(engine.deliver_outbox(&sender).await.unwrap(), 0, "not retried before its backoff");
    clock.advance(2_000);
    assert_eq!(engine.deliver_outbox(&sender).await.unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    clock.advance(3_600_000);
    assert_eq!(engine.deliver_outbox(&sender).await.unwrap(), 0, "delivered once, never again");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["instance"], json!(case.id));
    assert_eq!(got[0]["notice"]["message"], "case LHL-2026-0007 was decided");
    assert_eq!(got[0]["notice"]["to"], json!(["street_office"]));
}
