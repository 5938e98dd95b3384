//! Hostile scripts end in a recorded error on their own case only; the engine and other cases
//! carry on.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use yishi_core::FileSet;
use yishi_core::clock::ManualClock;
use yishi_core::kind::Registry;
use yishi_core::runtime::{Event, Status};
use yishi_engine::service::{Config, Engine, EngineError};
use yishi_engine::store::AnyStore;
use yishi_engine::store::sqlite::SqliteStore;

fn workflow(script: &str) -> String {
    format!(
        r#"id = "w"
[roles]
staff = "staff"
[[steps]]
id = "ask"
kind = "task"
roles = ["staff"]
actions.go = {{}}
deadline = {{ after = "1d", outcome = "late" }}
on = {{ go = "run", late = "run" }}
[[steps]]
id = "run"
kind = "script"
run = '''{script}'''
next = "end"
[[steps]]
id = "end"
kind = "end"
"#
    )
}

async fn engine_with(scripts: &[(&str, &str)]) -> Harness {
    let mut files = FileSet::new();
    for (unit, s) in scripts {
        files.insert(format!("{unit}/w.toml"), workflow(s));
    }
    files.insert("ok/w.toml", workflow("data.ran = true;"));
    let clock = Arc::new(ManualClock::new(t0()));
    let engine = Engine::new(
        AnyStore::Sqlite(SqliteStore::memory().await.unwrap()),
        Registry::with_builtins(),
        clock.clone(),
        Config { observed: false, ..Config::default() },
    );
    let report = engine.activate_files(&files, "test").await.unwrap();
    assert!(report.ok, "{:#?}", report.diagnostics);
    Harness { engine, clock }
}

const HOSTILE: &[(&str, &str, &str)] = &[
    ("loop", "loop { }", "limit"),
    ("recursion", "fn f(x) { f(x + 1) } f(0);", "limit"),
    ("string_bomb", "let s = \"xxxxxxxx\"; loop { s += s; }", "limit"),
    ("array_bomb", "let a = []; loop { a.push(a.len()); }", "limit"),
    ("map_bomb", "let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; }", "limit"),
    ("throws", "throw \"the budget is gone\";", "the budget is gone"),
    ("type_error", "data.n = \"a\" - 1;", "Function not found"),
];

#[tokio::test]
async fn each_hostile_script_fails_only_its_own_action_and_is_recorded() {
    let scripts: Vec<(&str, &str)> = HOSTILE.iter().map(|(u, s, _)| (*u, *s)).collect();
    let h = engine_with(&scripts).await;
    let staff = actor("li", &["staff"]);
    for (unit, _, expected) in HOSTILE {
        let c = h.start(&format!("{unit}/w"), json!({})).await;
        let err = h.act(c.id, "go", &staff, json!({})).await.unwrap_err();
        let EngineError::ScriptFailed(msg) = &err else { panic!("{unit}: {err:?}") };
        let msg = msg.to_string();
        assert!(msg.contains(expected), "{unit}: {msg}");
        assert!(msg.contains(&format!("{unit}/w.toml:")), "{unit}: the message names the file: {msg}");
        let v = h.engine.view(c.id).await.unwrap();
        assert_eq!(
            (v.status, v.active_steps.clone()),
            (Status::Active, vec!["ask".to_owned()]),
            "{unit}: nothing changed"
        );
        assert!(
            h.events(c.id)
                .await
                .iter()
                .any(|e| matches!(e, Event::Refused { reason, .. } if reason.to_string().contains(expected))),
            "{unit}: recorded"
        );
        h.assert_replays(c.id).await;
    }
    // Every other case carries on.
    let ok = h.start("ok/w", json!({})).await;
    let v = h.act(ok.id, "go", &staff, json!({})).await.unwrap();
    assert_eq!(v.status, Status::Completed);
    assert_eq!(v.data.get("ran"), Some(&json!(true)));
}

#[tokio::test]
async fn a_script_failing_on_a_deadline_marks_only_that_case_failed() {
    let h = engine_with(&[("loop", "loop { }")]).await;
    let bad = h.start("loop/w", json!({})).await;
    let good = h.start("ok/w", json!({})).await;
    h.advance(DAY);
    assert_eq!(h.engine.fire_due().await.unwrap(), 2);
    let b = h.engine.view(bad.id).await.unwrap();
    assert_eq!(b.status, Status::Failed);
    assert!(b.error.as_ref().unwrap().to_string().contains("limit"), "{:?}", b.error);
    assert_eq!(h.engine.view(good.id).await.unwrap().status, Status::Completed);
    h.assert_replays(bad.id).await;
}

#[test]
fn scripts_cannot_reach_files_modules_or_other_cases() {
    let mut files = FileSet::new();
    for (unit, script) in
        [("import", "import \"std\" as s; 1"), ("eval", "eval(\"1\")"), ("other", "instances[0].data")]
    {
        files.insert(format!("{unit}/w.toml"), workflow(script));
    }
    let catalog =
        yishi_core::check(&files, &Registry::with_builtins(), &Arc::new(yishi_core::script::Sandbox::default()));
    assert_eq!(catalog.definitions.len(), 0, "{:#?}", catalog.diagnostics);
    assert_eq!(
        catalog.diagnostics.iter().filter(|d| d.code == yishi_core::Code::ScriptSyntax).count(),
        3,
        "{:#?}",
        catalog.diagnostics
    );
}
