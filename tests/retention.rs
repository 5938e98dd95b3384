//! Retention: `yishi archive` writes closed cases with their whole history (personal data
//! masked unless asked for), purges them in batches when asked, keeps the monthly figures the
//! same and records every purge; active cases and cases with deliveries pending stay.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use yishi_core::calendar::Zone;
use yishi_core::clock::ManualClock;
use yishi_core::kind::Actor;
use yishi_engine::service::Engine;
use yishi_engine::store::{AnyStore, StoreOptions};

const WORKFLOW: &str = r#"
id = "report"
personal = ["phone", "name"]
[roles]
staff = "staff"
[[steps]]
id = "handle"
kind = "task"
roles = ["staff"]
actions.done = { fields = { name = "string?" } }
next = "finished"
[[steps]]
id = "finished"
kind = "end"
outcome = "done"
"#;

/// 2026-01-10 09:00 in Shanghai.
const JAN: i64 = 1_768_006_800_000;
const DAY: i64 = 86_400_000;

async fn engine_at(db: &Path, clock: Arc<ManualClock>) -> Arc<Engine> {
    let store = yishi_engine::store::open(&StoreOptions::new(db.display().to_string())).await.unwrap();
    let engine = common::engine_on(AnyStore::clone(&store), clock).await;
    let mut files = yishi_core::FileSet::new();
    files.insert("street/report.toml", WORKFLOW.to_owned());
    assert!(engine.activate_files(&files, "test").await.unwrap().ok);
    engine
}

/// Six cases: four done in January (one with data `phone`), one cancelled in February, one
/// still open.
async fn fill(engine: &Engine, clock: &ManualClock) -> Vec<i64> {
    let staff = Actor { id: "wang".into(), roles: vec!["staff".into()] };
    let mut ids = Vec::new();
    for n in 0..6 {
        let data: Map<String, Value> =
            json!({ "title": format!("路灯 {n} 坏了"), "phone": "13800138000", "name": "张三" })
                .as_object()
                .unwrap()
                .clone();
        let case = engine.start("street/report", data, &staff, None).await.unwrap();
        ids.push(case.id);
        clock.advance(DAY);
        if n < 4 {
            let req = yishi_core::runtime::ActionRequest {
                action: "done".into(),
                step: None,
                token: None,
                payload: json!({ "name": "李四" }).as_object().unwrap().clone(),
                actor: staff.clone(),
                on_behalf_of: None,
            };
            engine.act(case.id, req, None, None).await.unwrap();
        }
    }
    clock.advance(25 * DAY);
    engine.cancel(ids[4], None, "重复登记", &staff).await.unwrap();
    ids
}

fn yishi(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(args)
        .current_dir(dir)
        .env("YISHI_LANG", "en")
        .env_remove("YISHI_DB")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn archiving_keeps_the_figures_masks_personal_data_and_records_the_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("yishi.db");
    let clock = Arc::new(ManualClock::new(JAN));
    let engine = engine_at(&db, clock.clone()).await;
    let ids = fill(&engine, &clock).await;
    let zone = Zone::parse("Asia/Shanghai").unwrap();
    let before = engine.monthly_figures(zone).await.unwrap();
    assert_eq!(
        before.iter().map(|f| (f.month.as_str(), f.started, f.completed, f.cancelled)).collect::<Vec<_>>(),
        vec![("2026-01", 6, 4, 0), ("2026-02", 0, 0, 1)]
    );
    engine.close().await;
    // `yishi stats` reads the same month before and after the purge.
    let stats = |dir: &Path| {
        let (ok, out, err) = yishi(dir, &["stats", "--from", "2026-01", "--to", "2026-02", "--csv"]);
        assert!(ok, "{err}");
        out
    };
    let stats_before = stats(tmp.path());
    assert!(stats_before.starts_with('\u{feff}') && stats_before.contains("response rate"), "{stats_before}");
    assert!(stats_before.lines().any(|l| l.starts_with("2026-01,total,6,")), "{stats_before}");

    // A dry run counts and changes nothing.
    let (ok, out, err) = yishi(tmp.path(), &["archive", "--closed-before", "2026-03-01", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains("5 closed case(s) before 2026-03-01 would be archived"), "{out}");
    assert!(!tmp.path().join("a.jsonl").exists());

    // Archive and purge, in batches of two.
    let (ok, out, err) =
        yishi(tmp.path(), &["archive", "--closed-before", "2026-03-01", "--to", "a.jsonl", "--purge", "--batch", "2"]);
    assert!(ok, "{err}");
    assert!(out.contains("archived 5 case(s)") && out.contains("removed 5 from the database"), "{out}");
    assert!(out.contains("personal data is masked"), "{out}");
    let lines: Vec<Value> = std::fs::read_to_string(tmp.path().join("a.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.iter().map(|l| l["id"].as_i64().unwrap()).collect::<Vec<_>>(), ids[..5].to_vec());
    let first = &lines[0];
    assert_eq!(first["data"]["title"], "路灯 0 坏了");
    assert_eq!(first["data"]["phone"], "***");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["version"], 1);
    let history = first["history"].as_array().unwrap();
    assert!(history.len() >= 3, "the whole history: {history:?}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains("13800138000") && !text.contains("张三") && !text.contains("李四"), "masked everywhere");

    // The database kept the open case, the figures and a record of the purge.
    let clock = Arc::new(ManualClock::new(JAN + 40 * DAY));
    let engine = engine_at(&db, clock).await;
    assert_eq!(engine.monthly_figures(zone).await.unwrap(), before, "the months read the same after the purge");
    assert_eq!(stats(tmp.path()), stats_before, "and so do the statistics");
    assert!(engine.get(ids[0]).await.is_err(), "purged");
    assert_eq!(engine.get(ids[5]).await.unwrap().id, ids[5], "the open case stays");
    let purges = engine.purges().await.unwrap();
    assert_eq!(purges.len(), 1, "one record for the run: {purges:?}");
    assert_eq!(purges[0].cases, 5);
    assert!(purges[0].archive.ends_with("a.jsonl"));
    engine.close().await;

    // Nothing is left to archive; an existing file is never overwritten.
    let (ok, out, _) = yishi(tmp.path(), &["archive", "--closed-before", "2026-03-01", "--dry-run"]);
    assert!(ok && out.contains("0 closed case(s)"), "{out}");
    let (ok, _, err) = yishi(tmp.path(), &["archive", "--closed-before", "2026-03-01", "--to", "a.jsonl"]);
    assert!(!ok && err.contains("cannot write the archive"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_is_kept_only_when_asked_and_nothing_is_removed_without_purge() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("yishi.db");
    let clock = Arc::new(ManualClock::new(JAN));
    let engine = engine_at(&db, clock.clone()).await;
    let ids = fill(&engine, &clock).await;
    engine.close().await;
    let (ok, out, err) =
        yishi(tmp.path(), &["archive", "--closed-before", "2026-01-12", "--to", "b.jsonl", "--with-personal-data"]);
    assert!(ok, "{err}");
    assert!(out.contains("archived 1 case(s)") && out.contains("nothing was removed"), "{out}");
    let text = std::fs::read_to_string(tmp.path().join("b.jsonl")).unwrap();
    assert!(text.contains("13800138000"), "{text}");
    let engine = engine_at(&db, Arc::new(ManualClock::new(JAN + 40 * DAY))).await;
    assert!(engine.get(ids[0]).await.is_ok(), "not purged");
    assert!(engine.purges().await.unwrap().is_empty());
    let (ok, _, err) = yishi(tmp.path(), &["archive", "--closed-before", "2026-13-01", "--dry-run"]);
    assert!(!ok && err.contains("`2026-13-01` is not a day"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_export_masks_personal_data_unless_an_admin_asks() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("street")).unwrap();
    std::fs::write(tmp.path().join("street/report.toml"), WORKFLOW).unwrap();
    let api = common::api::Api::on(tmp.path()).await;
    let operator = api.token("operator", "*", &[]).await;
    let admin = api.token("admin", "*", &[]).await;
    let (s, case) = api
        .call(
            "POST",
            "/api/v1/instances",
            Some(&operator),
            Some(json!({ "workflow": "street/report", "data": { "title": "楼道灯坏了", "phone": "13800138000" } })),
        )
        .await;
    assert_eq!(s, 201, "{case}");
    let url = format!("/api/v1/instances/{}/history?format=csv", case["id"]);
    let (s, csv) = api.call("GET", &url, Some(&operator), None).await;
    assert_eq!(s, 200);
    let text = csv.as_str().unwrap();
    assert!(text.contains("楼道灯坏了") && !text.contains("13800138000"), "{text}");
    assert!(text.contains("***"), "{text}");
    let (s, _) = api.call("GET", &format!("{url}&personal=true"), Some(&operator), None).await;
    assert_eq!(s, 403, "only an admin sees personal data");
    let (s, csv) = api.call("GET", &format!("{url}&personal=true"), Some(&admin), None).await;
    assert_eq!(s, 200);
    assert!(csv.as_str().unwrap().contains("13800138000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_of_purged_cases_are_never_handed_out_again() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("yishi.db");
    let clock = Arc::new(ManualClock::new(JAN));
    let engine = engine_at(&db, clock.clone()).await;
    let ids = fill(&engine, &clock).await;
    let staff = Actor { id: "wang".into(), roles: vec!["staff".into()] };
    engine.cancel(ids[5], None, "测试", &staff).await.unwrap();
    engine.close().await;
    let (ok, out, err) =
        yishi(tmp.path(), &["archive", "--closed-before", "2027-01-01", "--to", "all.jsonl", "--purge"]);
    assert!(ok && out.contains("removed 6"), "{out}{err}");
    let engine = engine_at(&db, Arc::new(ManualClock::new(JAN + 40 * DAY))).await;
    let case = engine.start("street/report", Map::new(), &staff, None).await.unwrap();
    assert_eq!(case.id, ids[5] + 1, "the archive's ids stay unique");
    engine.close().await;
}
