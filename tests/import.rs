//! `yishi import`: a hotline's work-order export (CSV) or JSON lines become cases of a chosen
//! workflow at a chosen step; a dry run imports nothing; refused records are listed with their
//! line and reason, and the rest still come in.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use yishi_core::clock::SystemClock;
use yishi_engine::store::{AnyStore, ListFilter, Store, StoreOptions};

const GARDEN: &str = "chengguan/tianshuinanlu/garden";

fn yishi(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(args)
        .current_dir(dir)
        .env("YISHI_LANG", "en")
        .env_remove("YISHI_DB")
        .env_remove("YISHI_WORKFLOWS")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// A folder with the shipped workflows and a database created by a first `token create`.
fn setup() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new("workflows"), &tmp.path().join("workflows"));
    let store = std::thread::spawn({
        let db = tmp.path().join("yishi.db");
        move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async move {
                let s = yishi_engine::store::open(&StoreOptions::new(db.display().to_string())).await.unwrap();
                s.close().await;
            })
        }
    });
    store.join().unwrap();
    tmp
}

async fn cases(dir: &Path) -> Vec<(i64, serde_json::Value, Vec<String>)> {
    let store =
        yishi_engine::store::open(&StoreOptions::new(dir.join("yishi.db").display().to_string())).await.unwrap();
    let engine = common::engine_on(AnyStore::clone(&store), Arc::new(SystemClock)).await;
    let list = engine.list(&ListFilter { limit: 100, ..ListFilter::default() }).await.unwrap();
    let mut out = Vec::new();
    for s in list.iter().rev() {
        let row = engine.get(s.id).await.unwrap();
        let history = engine.history(s.id).await.unwrap();
        let kinds = history
            .iter()
            .map(|e| serde_json::to_value(&e.event).unwrap()["type"].as_str().unwrap_or("").to_owned())
            .collect();
        out.push((s.id, serde_json::Value::Object(row.state.data.clone()), kinds));
        assert_eq!(s.active_steps, vec!["small_stool".to_owned()], "started at the chosen step: {s:?}");
    }
    engine.close().await;
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_export_is_checked_then_imported_at_a_chosen_step_with_refusals_listed() {
    let tmp = setup();
    // A 12345 hotline export: a header row, a BOM, one row with a column too many.
    std::fs::write(
        tmp.path().join("orders.csv"),
        "\u{feff}title,channel,phone\n修补花坛,12345,13800138000\n路灯不亮,12345,\n坏行,12345,1,2\n",
    )
    .unwrap();
    let (code, out, err) = yishi(
        tmp.path(),
        &["import", "--workflow", GARDEN, "--step", "small_stool", "--from", "orders.csv", "--dry-run"],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("dry run: 2 record(s) would start cases"), "{out}");
    assert!(out.contains("line 4:"), "the bad row is named by its line: {out}");
    assert!(cases(tmp.path()).await.is_empty(), "a dry run imports nothing");

    let (code, out, err) =
        yishi(tmp.path(), &["import", "--workflow", GARDEN, "--step", "small_stool", "--from", "orders.csv"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("imported 2 case(s)") && out.contains("1 record(s) refused"), "{out}");
    let got = cases(tmp.path()).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1["title"], "修补花坛");
    assert_eq!(got[0].1["phone"], "13800138000", "text stays text");
    assert!(got[1].1.get("phone").is_none(), "empty cells are left out");
    assert!(got[0].2.iter().any(|k| k == "entered"), "the step was entered: {:?}", got[0].2);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_name_their_problems_and_an_unknown_step_or_workflow_is_refused() {
    let tmp = setup();
    std::fs::write(tmp.path().join("cases.jsonl"), "{\"title\": \"楼道堆物\"}\n[1, 2]\n{not json\n").unwrap();
    let (code, out, _) =
        yishi(tmp.path(), &["import", "--workflow", GARDEN, "--step", "small_stool", "--from", "cases.jsonl"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("imported 1 case(s)"), "{out}");
    assert!(out.contains("line 2: a line must be one JSON object"), "{out}");
    assert!(out.contains("line 3: not JSON"), "{out}");

    let (_, out, _) = yishi(
        tmp.path(),
        &["import", "--workflow", GARDEN, "--step", "small_stol", "--from", "cases.jsonl", "--dry-run"],
    );
    assert!(out.contains("has no step `small_stol`"), "{out}");
    let (_, out, _) =
        yishi(tmp.path(), &["import", "--workflow", "chengguan/garden", "--from", "cases.jsonl", "--dry-run"]);
    assert!(out.contains("did you mean") || out.contains(GARDEN), "{out}");
    let (code, _, err) = yishi(tmp.path(), &["import", "--workflow", GARDEN, "--from", "missing.csv"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read missing.csv"), "{err}");
}
