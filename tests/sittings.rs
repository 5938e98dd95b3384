//! Sittings (例会) through the API, on SQLite and PostgreSQL: topics waiting for deliberation go
//! on the next sitting's agenda (registration cut-off), the sitting opens once with a quorum
//! check, decides each topic on its own case, closes with minutes, and the topics it did not
//! reach roll over to the next sitting; every change to several cases is one commit or none. A
//! served sitting survives a restart and its timers fire once.

mod common;

use axum::http::StatusCode;
use common::api::Api;
use common::backends::PgDatabase;
use serde_json::{Value, json};
use yishi_engine::store::AnyStore;

const PROPOSAL: &str = "pingcheng/yongtai/liuhangli/proposal";
const UNIT: &str = "pingcheng/yongtai/liuhangli";
const DAY: i64 = 86_400_000;

struct Office {
    api: Api,
    staff: String,
    resident: String,
}

impl Office {
    async fn new(store: AnyStore) -> Self {
        let api = Api::on_store(store).await;
        let staff = api.token("operator", "pingcheng", &["staff"]).await;
        let resident = api.token("operator", "pingcheng", &["resident"]).await;
        Office { api, staff, resident }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.api.call(method, uri, Some(&self.staff), body).await
    }

    async fn get(&self, uri: &str) -> Value {
        let (s, v) = self.call("GET", uri, None).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
        v
    }

    /// A topic raised and screened: it waits for deliberation.
    async fn topic(&self, title: &str) -> i64 {
        let (s, case) = self
            .call("POST", "/api/v1/instances", Some(json!({ "workflow": PROPOSAL, "data": { "title": title } })))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{case}");
        let id = case["id"].as_i64().unwrap();
        let submit = json!({ "action": "submit", "payload": { "title": title, "channel": "visit", "category": "building", "cost": 5000 } });
        let (s, v) =
            self.api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&self.resident), Some(submit)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["active_steps"], json!(["deliberate"]), "{v}");
        id
    }

    /// A sitting `days` from now.
    async fn schedule(&self, days: i64) -> Value {
        let at = yishi_core::clock::Clock::now(self.api.clock.as_ref()) + days * DAY;
        let date = chrono::DateTime::from_timestamp_millis(at).unwrap().to_rfc3339();
        let expected: Vec<String> = (1..=6).map(|n| format!("rep{n}")).collect();
        let body = json!({ "unit": UNIT, "date": date, "place": "社区议事厅", "expected": expected });
        let (s, v) = self.call("POST", "/api/v1/sittings", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn case(&self, id: i64) -> Value {
        self.get(&format!("/api/v1/instances/{id}")).await["instance"].clone()
    }

    async fn events(&self, id: i64) -> Vec<String> {
        let h = self.get(&format!("/api/v1/instances/{id}/history")).await;
        h["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    }
}

fn count(events: &[String], kind: &str) -> usize {
    events.iter().filter(|e| *e == kind).count()
}

fn item(sitting: &Value, case: i64) -> Value {
    sitting["agenda"].as_array().unwrap().iter().find(|i| i["case"] == case).cloned().unwrap_or(Value::Null)
}

async fn decided_sent_back_and_rolled_over(store: AnyStore) {
    let o = Office::new(store).await;
    let (a, b, c) = (o.topic("楼道声控灯").await, o.topic("快递柜").await, o.topic("篮球场地面").await);
    assert!(o.case(a).await["data"].get("gathering").is_none(), "no sitting yet: the topic waits");

    // Scheduling a sitting takes the waiting topics, with their papers.
    let s = o.schedule(10).await;
    let sid = s["id"].as_i64().unwrap();
    assert_eq!(s["status"], "scheduled");
    for id in [a, b, c] {
        assert_eq!(item(&s, id)["status"], "pending", "{s}");
        assert_eq!(o.case(id).await["data"]["gathering"], sid);
    }
    assert_eq!(item(&s, b)["papers"]["title"], "快递柜");
    assert!(item(&s, b)["papers"]["registration"].as_str().unwrap().starts_with("liuhangli-"), "{s}");
    let next = o.schedule(40).await;
    let next_id = next["id"].as_i64().unwrap();
    assert!(next["agenda"].as_array().is_none_or(Vec::is_empty), "topics stay on the first sitting: {next}");

    // Refused before the day, and with the wrong people or papers.
    let uri = |tail: &str| format!("/api/v1/sittings/{sid}/{tail}");
    let (st, p) = o.call("POST", &uri("open"), Some(json!({ "present": ["rep1"] }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "too early: {p}");
    o.api.clock.advance(10 * DAY);
    let (st, p) = o.api.call("POST", &uri("open"), Some(&o.resident), Some(json!({ "present": ["rep1"] }))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "residents do not open sittings: {p}");
    let opened = {
        let (st, v) =
            o.call("POST", &uri("open"), Some(json!({ "present": ["rep1", "rep2", "rep3", "rep4", "rep5"] }))).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        v
    };
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["data"]["sitting"]["quorum"], json!({ "expected": 6, "present": 5, "needed": 4, "met": true }));

    // One topic decided: it goes on, with the sitting named on it.
    let (st, v) = o.call("POST", &uri(&format!("items/{a}")), Some(json!({ "outcome": "agreed", "for": 5 }))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let case_a = o.case(a).await;
    assert_eq!(case_a["active_steps"], json!(["representatives_vote"]));
    assert_eq!(case_a["data"]["deliberate"]["gathering"], sid);
    assert_eq!(case_a["data"]["deliberate"]["for"], 5);

    // A decision the topic cannot take changes nothing, on either case.
    let before = o.get(&format!("/api/v1/sittings/{sid}")).await["revision"].clone();
    let rev_b = o.case(b).await["revision"].clone();
    let (st, p) = o.call("POST", &uri(&format!("items/{b}")), Some(json!({ "outcome": "postponed" }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "/outcome", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("agreed, not_agreed, sent_back"), "{p}");
    assert_eq!(o.get(&format!("/api/v1/sittings/{sid}")).await["revision"], before);
    assert_eq!(o.case(b).await["revision"], rev_b);
    let (st, p) = o.call("POST", &uri(&format!("items/{b}")), Some(json!({ "outcome": "agreed", "for": 9 }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "more hands than people: {p}");

    // One sent back, with the note.
    let body = json!({ "outcome": "sent_back", "for": 4, "against": 1, "note": "先征求一楼住户意见" });
    let (st, v) = o.call("POST", &uri(&format!("items/{b}")), Some(body)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(o.case(b).await["active_steps"], json!(["revise"]));

    // Closing needs minutes; the topic not reached rolls over to the next sitting.
    let (st, p) = o.call("POST", &uri("close"), Some(json!({ "minutes": " " }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (st, held) =
        o.call("POST", &uri("close"), Some(json!({ "minutes": "议题三项：一项同意，一项退回，一项顺延。" }))).await;
    assert_eq!(st, StatusCode::OK, "{held}");
    assert_eq!(held["status"], "held");
    assert_eq!(held["data"]["sitting"]["minutes"], "议题三项：一项同意，一项退回，一项顺延。");
    assert_eq!(item(&held, a)["status"], "decided");
    assert_eq!(item(&held, a)["outcome"], "agreed");
    assert_eq!(item(&held, b)["outcome"], "sent_back");
    assert_eq!(item(&held, b)["record"]["note"], "先征求一楼住户意见");
    assert_eq!(item(&held, c)["status"], "rolled_over");
    assert_eq!(item(&held, c)["now_on"], next_id);
    let case_c = o.case(c).await;
    assert_eq!(case_c["active_steps"], json!(["deliberate"]));
    assert_eq!(case_c["data"]["gathering"], next_id);
    let ev = o.events(c).await;
    assert_eq!((count(&ev, "gathered"), count(&ev, "released"), count(&ev, "concluded")), (2, 1, 0), "{ev:?}");
    let next = o.get(&format!("/api/v1/sittings/{next_id}")).await;
    assert_eq!(item(&next, c)["status"], "pending", "{next}");

    // A closed sitting takes nothing more.
    let (st, p) = o.call("POST", &uri(&format!("items/{c}")), Some(json!({ "outcome": "agreed" }))).await;
    assert!(st == StatusCode::CONFLICT || st == StatusCode::UNPROCESSABLE_ENTITY, "{st} {p}");

    // The sittings of the unit, latest first.
    let list = o.get(&format!("/api/v1/sittings?unit={UNIT}")).await;
    let ids: Vec<i64> = list["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![next_id, sid]);
    let held_only = o.get(&format!("/api/v1/sittings?unit={UNIT}&status=held")).await;
    assert_eq!(held_only["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_sitting_decides_one_topic_sends_one_back_and_rolls_one_over_on_sqlite() {
    decided_sent_back_and_rolled_over(common::backends::sqlite().await).await;
}

#[tokio::test]
async fn a_sitting_decides_one_topic_sends_one_back_and_rolls_one_over_on_postgres() {
    let Some(db) = PgDatabase::create("sitting_three_items").await else { return };
    decided_sent_back_and_rolled_over(db.store().await).await;
    db.drop_now().await;
}

#[tokio::test]
async fn the_cut_off_sends_late_topics_to_the_next_sitting_and_staff_may_choose_otherwise() {
    let o = Office::new(common::backends::sqlite().await).await;
    let first = o.schedule(10).await["id"].as_i64().unwrap();
    let second = o.schedule(40).await["id"].as_i64().unwrap();
    let early = o.topic("早报的议题").await;
    assert_eq!(o.case(early).await["data"]["gathering"], first);
    // Registration for the first closes 7 days before it.
    o.api.clock.advance(4 * DAY);
    let late = o.topic("晚报的议题").await;
    assert_eq!(o.case(late).await["data"]["gathering"], second, "past the cut-off: the next sitting");
    // Staff put it on the first anyway: recorded as their choice.
    let (st, v) = o.call("POST", &format!("/api/v1/sittings/{first}/agenda"), Some(json!({ "case": late }))).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(item(&v, late)["status"], "pending");
    assert_eq!(o.case(late).await["data"]["gathering"], first);
    let h = o.get(&format!("/api/v1/instances/{late}/history")).await;
    let chosen = h["events"].as_array().unwrap().iter().rev().find(|e| e["type"] == "gathered").unwrap().clone();
    assert_eq!(chosen["from"], second, "{chosen}");
    assert_eq!(chosen["actor"]["id"], "operator@pingcheng", "{chosen}");
    let (st, p) = o.call("POST", &format!("/api/v1/sittings/{first}/agenda"), Some(json!({ "case": late }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "already on it: {p}");
    // A case not waiting for a sitting is refused, naming it.
    let (_, other) =
        o.call("POST", "/api/v1/instances", Some(json!({ "workflow": PROPOSAL, "data": { "title": "x" } }))).await;
    let (st, p) =
        o.call("POST", &format!("/api/v1/sittings/{first}/agenda"), Some(json!({ "case": other["id"] }))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "/case");
    // Bad schedules are refused whole, naming the field.
    for (body, field) in [
        (json!({ "unit": UNIT, "date": "next Tuesday", "place": "厅", "expected": ["a"] }), "/date"),
        (json!({ "unit": UNIT, "date": "2020-01-01 19:00", "place": "厅", "expected": ["a"] }), "/date"),
        (json!({ "unit": UNIT, "date": "2030-01-01 19:00", "place": " ", "expected": ["a"] }), "/place"),
        (json!({ "unit": UNIT, "date": "2030-01-01 19:00", "place": "厅", "expected": [" "] }), "/expected"),
    ] {
        let (st, p) = o.call("POST", "/api/v1/sittings", Some(body)).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
        assert_eq!(p["field"], field, "{p}");
    }
    let (st, p) = o
        .call(
            "POST",
            "/api/v1/sittings",
            Some(json!({ "unit": UNIT, "workflow": "sittng", "date": "2030-01-01 19:00", "place": "厅", "expected": ["a"] })),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("sitting"), "a suggestion: {p}");
    let list = o.get(&format!("/api/v1/sittings?unit={UNIT}")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "nothing else was scheduled");
}

#[tokio::test]
async fn without_a_quorum_the_sitting_does_not_take_place_and_its_topics_wait_for_the_next() {
    let o = Office::new(common::backends::sqlite().await).await;
    let sid = o.schedule(10).await["id"].as_i64().unwrap();
    let (a, b) = (o.topic("一").await, o.topic("二").await);
    o.api.clock.advance(10 * DAY);
    // 60% of six: four must be there; three are, and an observer does not count.
    let (st, v) = o
        .call(
            "POST",
            &format!("/api/v1/sittings/{sid}/open"),
            Some(json!({ "present": ["rep1", "rep2", "rep3", "guest"] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "inquorate");
    assert_eq!(v["data"]["sitting"]["quorum"], json!({ "expected": 6, "present": 3, "needed": 4, "met": false }));
    for id in [a, b] {
        let case = o.case(id).await;
        assert_eq!(case["active_steps"], json!(["deliberate"]));
        assert!(case["data"].get("gathering").is_none(), "no next sitting yet: {case}");
    }
    // The next sitting takes them.
    let next = o.schedule(30).await;
    assert_eq!(item(&next, a)["status"], "pending", "{next}");
    assert_eq!(item(&next, b)["status"], "pending", "{next}");
}

/// Topics reaching deliberation while the sitting closes: each ends on the next sitting's
/// agenda or was decided; none is left on the closed one.
#[tokio::test]
async fn topics_arriving_while_a_sitting_closes_are_never_left_on_it() {
    let o = Office::new(common::backends::sqlite().await).await;
    let sid = o.schedule(10).await["id"].as_i64().unwrap();
    let next = o.schedule(30).await["id"].as_i64().unwrap();
    let first = o.topic("会前").await;
    o.api.clock.advance(10 * DAY);
    let (st, v) = o
        .call(
            "POST",
            &format!("/api/v1/sittings/{sid}/open"),
            Some(json!({ "present": ["rep1", "rep2", "rep3", "rep4"] })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Staff put arrivals on the open sitting while it closes.
    let o = std::sync::Arc::new(o);
    let mut tasks = Vec::new();
    for n in 0..12 {
        let o = o.clone();
        tasks.push(tokio::spawn(async move {
            let id = o.topic(&format!("会中 {n}")).await;
            let _ = o.call("POST", &format!("/api/v1/sittings/{sid}/agenda"), Some(json!({ "case": id }))).await;
            id
        }));
    }
    let closer = {
        let o = o.clone();
        tokio::spawn(async move {
            o.call("POST", &format!("/api/v1/sittings/{sid}/close"), Some(json!({ "minutes": "散会" }))).await
        })
    };
    let mut ids = vec![first];
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let (st, v) = closer.await.unwrap();
    assert_eq!(st, StatusCode::OK, "{v}");
    for id in ids {
        let case = o.case(id).await;
        assert_eq!(case["active_steps"], json!(["deliberate"]), "{case}");
        assert_eq!(case["data"]["gathering"], next, "case {id} is on the running sitting: {case}");
    }
}

const SERVED_SITTING: &str = r#"
id = "sitting"
[roles]
staff = "staff"
[[steps]]
id = "sitting"
kind = "sitting"
quorum = 0.5
cutoff = "2s"
remind_before = "1s"
roles = ["staff"]
on = { held = "done", inquorate = "done", cancelled = "done" }
[[steps]]
id = "done"
kind = "end"
"#;

const SERVED_TOPIC: &str = r#"
id = "topic"
[roles]
staff = "staff"
[[steps]]
id = "wait"
kind = "await_sitting"
outcomes = ["agreed"]
deadline = { after = "1s", from = "gathering", outcome = "late" }
on = { agreed = "done", late = "too_late" }
[[steps]]
id = "done"
kind = "end"
[[steps]]
id = "too_late"
kind = "end"
outcome = "late"
"#;

/// A sitting scheduled on a server that is then killed: after the restart it is still there,
/// its reminder and agenda cut-off fire once each, and a topic's deadline counted from the
/// sitting's date fires once.
#[tokio::test(flavor = "multi_thread")]
async fn a_sitting_survives_a_restart_and_its_timers_fire_once() {
    use common::{Server, poll};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("workflows/t")).unwrap();
    std::fs::write(tmp.path().join("workflows/t/unit.toml"), "name = \"t\"\n").unwrap();
    std::fs::write(tmp.path().join("workflows/t/sitting.toml"), SERVED_SITTING).unwrap();
    std::fs::write(tmp.path().join("workflows/t/topic.toml"), SERVED_TOPIC).unwrap();
    let s = Server::start(tmp.path(), None).await;
    let token = s.token.clone();
    let date = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let started = Instant::now();
    let body = json!({ "unit": "t", "date": date, "place": "厅", "expected": ["a", "b"] });
    let (st, sitting) = s.call("POST", "/api/v1/sittings", Some(body)).await;
    assert_eq!(st, 201, "{sitting}");
    let sid = sitting["id"].as_i64().unwrap();
    let (st, topic) = s.call("POST", "/api/v1/instances", Some(json!({ "workflow": "t/topic" }))).await;
    assert_eq!(st, 201, "{topic}");
    assert_eq!(topic["data"]["gathering"], sid, "{topic}");
    let tid = topic["id"].as_i64().unwrap();
    let dir = s.kill();
    poll("the sitting's date and the deadline to pass while the server is down", Duration::from_secs(20), async || {
        (started.elapsed() > Duration::from_millis(5_500)).then_some(())
    })
    .await;
    let s = Server::start(&dir, Some(token)).await;
    let fired = |h: &Value, name: &str| {
        h.as_array().unwrap().iter().filter(|e| e["type"] == "timer_fired" && e["timer"] == name).count()
    };
    let case = poll("the topic's deadline to fire", Duration::from_secs(20), async || {
        let (_, c) = s.call("GET", &format!("/api/v1/instances/{tid}"), None).await;
        (c["instance"]["status"] == "completed").then_some(c)
    })
    .await;
    assert_eq!(case["instance"]["outcome"], "late");
    assert_eq!(fired(&case["history"], "deadline"), 1, "fires exactly once");
    let host = poll("the sitting's timers to fire", Duration::from_secs(20), async || {
        let (_, c) = s.call("GET", &format!("/api/v1/instances/{sid}"), None).await;
        (fired(&c["history"], "agenda_closes") == 1 && fired(&c["history"], "remind") == 1).then_some(c)
    })
    .await;
    assert_eq!(host["instance"]["status"], "active", "the sitting is still there, waiting to be opened");
    let notified = host["history"].as_array().unwrap().iter().filter(|e| e["type"] == "notified").count();
    assert_eq!(notified, 3, "scheduled, agenda closed, reminder: {}", host["history"]);
    let (st, v) = s.call("GET", &format!("/api/v1/sittings/{sid}"), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "scheduled");

    // The command line reads the same, beside the running server.
    let db = dir.join("yishi.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
            .args(args)
            .args(["--db", db.to_str().unwrap(), "--lang", "zh-CN"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["sittings", "--unit", "t"]);
    assert!(list.contains("厅") && list.contains("待召开"), "{list}");
    let one = run(&["sitting", &sid.to_string()]);
    assert!(one.starts_with(&format!("会议 {sid}（t）")), "{one}");
    assert!(one.contains("议程为空"), "the topic left when its deadline passed: {one}");
}
