//! Statistics (the three rates: 响应率、解决率、满意率) for a month of cases whose figures are
//! worked out by hand below; the same after the closed cases are archived and purged; the
//! query reads its index on both backends.

mod common;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::{Value, json};
use yishi_core::clock::Clock;
use yishi_engine::store::Store;

const MATTERS: &str = "chengguan/tianshuinanlu/matters";
/// 2026-10-05 10:00 in Shanghai.
const OCT_5: i64 = 1_791_165_600_000;
const DAY: i64 = 86_400_000;

struct Office {
    api: Api,
    staff: String,
}

impl Office {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let (s, v) = self.api.call(method, uri, Some(&self.staff), body).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
        v
    }
    async fn start(&self, urgency: &str) -> i64 {
        let body = json!({ "workflow": MATTERS, "urgency": urgency, "data": { "title": "x" } });
        self.call("POST", "/api/v1/instances", Some(body)).await["id"].as_i64().unwrap()
    }
    async fn act(&self, id: i64, body: Value) -> Value {
        self.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(body)).await
    }
    /// Registered by resident `who` and accepted at triage.
    async fn registered(&self, urgency: &str, who: &str, accept: bool) -> i64 {
        let id = self.start(urgency).await;
        self.act(
            id,
            json!({ "action": "submit", "on_behalf_of": { "id": who, "roles": ["resident"] },
                    "payload": { "title": "x", "channel": "phone" } }),
        )
        .await;
        if accept {
            self.act(id, json!({ "action": "approve" })).await;
        }
        id
    }
    /// An urgent matter carried out and at its follow-up.
    async fn at_follow_up(&self, who: &str) -> i64 {
        let id = self.registered("urgent", who, true).await;
        self.act(id, json!({ "action": "attend", "on_behalf_of": { "id": "builder", "roles": ["contractor"] } })).await;
        self.act(id, json!({ "action": "conclude", "payload": { "outcome": "agreed" } })).await;
        let v = self.act(id, json!({ "action": "report", "payload": { "task": "fix", "progress": 100 } })).await;
        assert_eq!(v["active_steps"], json!(["follow_up"]));
        id
    }
    async fn rate(&self, id: i64, who: &str, score: i64) {
        let body = json!({ "action": "rate", "on_behalf_of": { "id": who, "roles": ["resident"] }, "payload": { "score": score } });
        self.act(id, body).await;
    }
}

fn counts(v: &Value) -> Vec<i64> {
    ["raised", "responded", "rated", "resolved", "satisfied", "overdue", "answers"]
        .iter()
        .map(|k| v[k].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_month_of_cases_gives_the_rates_worked_out_by_hand_and_keeps_them_after_a_purge() {
    let api = Api::new().await;
    api.clock.set(OCT_5);
    let staff = api.token("operator", "chengguan", &["staff"]).await;
    let o = Office { api, staff };

    // October, Tianshui South Road (matters):
    // 1: answered 5 (resolved, satisfied)   2: answered 2 (neither)   3: answered 3 (resolved only)
    let c1 = o.at_follow_up("res-1").await;
    o.rate(c1, "res-1", 5).await;
    let c2 = o.at_follow_up("res-2").await;
    o.rate(c2, "res-2", 2).await;
    let c3 = o.at_follow_up("res-3").await;
    o.rate(c3, "res-3", 3).await;
    // 4: accepted at triage, waits for the small-stool meeting (responded)
    let c4 = o.registered("normal", "res-4", true).await;
    // 5: registered, not yet triaged (no response)
    let c5 = o.registered("normal", "res-5", false).await;
    // 6: a duplicate of 5, merged into it at triage (not counted at all)
    let c6 = o.registered("normal", "res-6", false).await;
    o.call("POST", &format!("/api/v1/instances/{c5}/merge"), Some(json!({ "from": c6, "reason": "同一件事" }))).await;
    // 7: urgent, accepted; its council does not sit within 24 hours (responded, overdue)
    let c7 = o.registered("urgent", "res-7", true).await;
    o.api.clock.advance(DAY + 60_000);
    assert!(o.api.engine.fire_due().await.unwrap() >= 1);
    // The follow-ups close after 3 days (an urgent matter's), the cases complete.
    o.api.clock.advance(3 * DAY);
    o.api.engine.fire_due().await.unwrap();
    for id in [c1, c2, c3] {
        let v = o.call("GET", &format!("/api/v1/instances/{id}"), None).await;
        assert_eq!(v["instance"]["status"], "completed", "{v}");
    }
    // November: one more case, not in October's figures.
    o.api.clock.set(OCT_5 + 30 * DAY);
    o.registered("normal", "res-8", true).await;
    // Each figure is in the case's history, where it came from.
    let counted = async |id: i64| -> Vec<String> {
        let d = o.call("GET", &format!("/api/v1/instances/{id}"), None).await;
        d["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "counted")
            .map(|e| format!("{}:{}", e["figure"].as_str().unwrap(), e["step"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(counted(c4).await, ["responded:route"]);
    assert_eq!(counted(c7).await, ["responded:route", "overdue:emergency_council"]);
    assert_eq!(counted(c5).await, Vec::<String>::new());

    // raised 6 (1 2 3 4 5 7), responded 5 (1 2 3 4 7), rated 3 (1 2 3), resolved 2 (1 3),
    // satisfied 1 (1), overdue 1 (7), answers 3 adding up to 10.
    let want = vec![6, 5, 3, 2, 1, 1, 3];
    let check = |r: &Value| {
        let oct = &r["totals"][0];
        assert_eq!(oct["month"], "2026-10");
        assert_eq!(counts(oct), want, "{r}");
        assert_eq!(oct["score_sum"], 10.0);
        assert!((oct["response_rate"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-9);
        assert!((oct["resolution_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert!((oct["satisfaction_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
        assert!((oct["average_satisfaction"].as_f64().unwrap() - 10.0 / 3.0).abs() < 1e-9);
        let nov = &r["totals"][1];
        assert_eq!(
            (nov["month"].as_str(), nov["raised"].as_i64(), nov["responded"].as_i64()),
            (Some("2026-11"), Some(1), Some(1))
        );
        assert!(nov["resolution_rate"].is_null(), "nothing answered: no rate, {nov}");
        let items: Vec<&str> = r["items"].as_array().unwrap().iter().map(|i| i["unit"].as_str().unwrap()).collect();
        assert_eq!(items, ["chengguan/tianshuinanlu", "chengguan/tianshuinanlu"]);
    };
    let uri = "/api/v1/stats?unit=chengguan/tianshuinanlu&from=2026-10&to=2026-11";
    let report = o.call("GET", uri, None).await;
    check(&report);
    assert_eq!(report["scope"], "chengguan/tianshuinanlu");

    // The same in CSV for Excel: UTF-8 with a byte-order mark, rates as percentages.
    let a =
        o.api.send("GET", &format!("{uri}&format=csv"), Some(&o.staff), None, &[("accept-language", "zh-CN")]).await;
    assert_eq!(a.status, StatusCode::OK);
    let text = a.body.as_str().unwrap().to_owned();
    assert!(text.starts_with('\u{feff}'), "{text}");
    assert!(
        text.contains("响应率") && text.contains("83.3%") && text.contains("66.7%") && text.contains("33.3%"),
        "{text}"
    );
    assert!(text.contains("chengguan/tianshuinanlu 合计"), "{text}");

    // Archive and purge the closed cases: the figures stay the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let opts = yishi_engine::service::retention::ArchiveOptions {
        closed_before: o.api.clock.now() + DAY,
        purge: true,
        personal: false,
        batch: 2,
        zone: yishi_core::calendar::Zone::default(),
        archive: path.display().to_string(),
        actor: "test".into(),
    };
    let done = o.api.engine.archive(&opts, &mut out, |_| {}).await.unwrap();
    assert_eq!(done.purged, 4, "cases 1, 2, 3 and the merged 6");
    assert!(o.api.engine.history(c1).await.is_err() && o.api.engine.get(c1).await.is_err(), "purged");
    check(&o.call("GET", uri, None).await);

    // Out of scope, bad months.
    let pingcheng = o.api.token("viewer", "pingcheng", &[]).await;
    let (s, _) = o.api.call("GET", uri, Some(&pingcheng), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for (q, field) in [("from=2026-13", "from"), ("to=10-2026", "to"), ("from=2026-11&to=2026-10", "")] {
        let (s, p) = o.api.call("GET", &format!("/api/v1/stats?{q}"), Some(&o.staff), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {p}");
        if !field.is_empty() {
            assert_eq!(p["field"], field);
        }
    }
}

#[tokio::test]
async fn the_statistics_query_reads_its_index_on_both_backends() {
    use common::backends::PgDatabase;
    let units = vec!["chengguan/".to_owned()];
    let sqlite = yishi_engine::store::sqlite::SqliteStore::memory().await.unwrap();
    let plan = sqlite.plan_of_raised_counts(&units, 0, 1).await.unwrap();
    assert!(plan.contains("instances_by_unit_created"), "{plan}");
    assert!(!plan.contains("SCAN instances\n") && !plan.ends_with("SCAN instances"), "{plan}");
    let Some(db) = PgDatabase::create("stats_index").await else { return };
    let yishi_engine::store::AnyStore::Postgres(pg) = db.store().await else { panic!("a PostgreSQL store") };
    let plan = pg.plan_of_raised_counts(&units, 0, 1).await.unwrap();
    assert!(plan.contains("instances_by_unit_created"), "{plan}");
    pg.close().await;
    db.drop_now().await;
}

/// The departments a community whistles (吹哨报到) get rates of their own: called, answered,
/// answered in time, and how the community rated their responses.
#[tokio::test]
async fn departments_whistled_get_their_own_rates() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("u");
    std::fs::create_dir_all(&unit).unwrap();
    std::fs::write(unit.join("unit.toml"), "name = \"u\"\n").unwrap();
    std::fs::write(
        unit.join("dispute.toml"),
        r#"
id = "dispute"
[roles]
staff = "staff"
judicial_office = "司法所"
police_station = "派出所"
legal_adviser = "法律顾问"
[[steps]]
id = "whistle"
kind = "escalate"
departments = ["judicial_office", "police_station", "legal_adviser"]
report_within = "1d"
need = 2
actors = { report = ["judicial_office", "police_station", "legal_adviser"], rate = ["staff"] }
on = { reported = "done" }
[[steps]]
id = "done"
kind = "end"
"#,
    )
    .unwrap();
    let api = Api::on(dir.path()).await;
    api.clock.set(OCT_5);
    let token = api.token("operator", "*", &["staff", "judicial_office", "police_station", "legal_adviser"]).await;
    let call = async |method: &str, uri: &str, body: Option<Value>| {
        let (s, v) = api.call(method, uri, Some(&token), body).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
        v
    };
    let act = async |id: i64, action: &str, dept: &str, score: Option<i64>| {
        let mut payload = json!({ "department": dept });
        if action == "report" {
            payload["response"] = json!("已到场");
        }
        if let Some(s) = score {
            payload["score"] = json!(s);
        }
        let body =
            json!({ "action": action, "payload": payload, "on_behalf_of": { "id": dept, "roles": [dept, "staff"] } });
        call("POST", &format!("/api/v1/instances/{id}/actions"), Some(body)).await
    };
    let a = call("POST", "/api/v1/instances", Some(json!({ "workflow": "u/dispute" }))).await["id"].as_i64().unwrap();
    let b = call("POST", "/api/v1/instances", Some(json!({ "workflow": "u/dispute" }))).await["id"].as_i64().unwrap();
    // A: the police answer at once (rated 5); the judicial office two days late (rated 2);
    // the legal adviser never.
    act(a, "report", "police_station", None).await;
    act(a, "rate", "police_station", Some(5)).await;
    // B: the police (rated 4) and the legal adviser (rated 3) answer at once.
    for (dept, score) in [("police_station", 4), ("legal_adviser", 3)] {
        act(b, "report", dept, None).await;
        act(b, "rate", dept, Some(score)).await;
    }
    api.clock.advance(2 * DAY);
    api.engine.fire_due().await.unwrap();
    act(a, "report", "judicial_office", None).await;
    let v = act(a, "rate", "judicial_office", Some(2)).await;
    assert_eq!(v["status"], "completed", "{v}");

    let r = call("GET", "/api/v1/stats?from=2026-10&to=2026-10", None).await;
    let row = |p: &Value| {
        let n = |k: &str| p[k].as_i64().unwrap();
        (
            p["party"].as_str().unwrap().to_owned(),
            n("called"),
            n("responded"),
            n("in_time"),
            n("rated"),
            n("satisfied"),
            p["average_rating"].as_f64().unwrap(),
        )
    };
    let got: Vec<_> = r["parties"].as_array().unwrap().iter().map(row).collect();
    assert_eq!(
        got,
        vec![
            ("judicial_office".to_owned(), 2, 1, 0, 1, 0, 2.0),
            ("legal_adviser".to_owned(), 2, 1, 1, 1, 0, 3.0),
            ("police_station".to_owned(), 2, 2, 2, 2, 2, 4.5),
        ],
        "{r}"
    );
    let police = &r["parties"][2];
    assert_eq!((police["response_rate"].as_f64(), police["in_time_rate"].as_f64()), (Some(1.0), Some(1.0)));
    assert_eq!(r["parties"][0]["in_time_rate"].as_f64(), Some(0.0));
    assert!(r["parties"].as_array().unwrap().iter().all(|p| p["month"] == "2026-10"));
}
