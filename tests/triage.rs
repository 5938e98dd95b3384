//! Triage: urgency (紧急程度) set at intake, changed at triage with who and why, seen by routing
//! rules and deadlines, sorted and filtered on in listings; and merging duplicates (合并).

mod common;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::{Value, json};

const MATTERS: &str = "chengguan/tianshuinanlu/matters";
const GARDEN: &str = "chengguan/tianshuinanlu/garden";

async fn start(api: &Api, token: &str, urgency: Option<&str>) -> (StatusCode, Value) {
    let mut body = json!({ "workflow": MATTERS, "data": { "title": "屋顶漏雨" } });
    if let Some(u) = urgency {
        body["urgency"] = json!(u);
    }
    api.call("POST", "/api/v1/instances", Some(token), Some(body)).await
}

async fn count(api: &Api, token: &str) -> usize {
    let (_, page) = api.call("GET", "/api/v1/instances?limit=500", Some(token), None).await;
    page["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn intake_sets_the_level_or_the_default_and_refuses_unknown_levels_whole() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &["staff"]).await;
    let (s, urgent) = start(&api, &admin, Some("urgent")).await;
    assert_eq!(s, StatusCode::CREATED, "{urgent}");
    assert_eq!(urgent["urgency"], "urgent");
    let (_, plain) = start(&api, &admin, None).await;
    assert_eq!(plain["urgency"], "normal", "the workflow's default");

    let before = count(&api, &admin).await;
    let (s, problem) = start(&api, &admin, Some("sometime")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "/urgency");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("sometime") && detail.contains("urgent, pressing, normal"), "{detail}");
    // A workflow without levels takes none.
    let (s, problem) = api
        .call("POST", "/api/v1/instances", Some(&admin), Some(json!({ "workflow": GARDEN, "urgency": "urgent" })))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "/urgency");
    assert_eq!(count(&api, &admin).await, before, "nothing was started");
    let (_, garden) = api.call("POST", "/api/v1/instances", Some(&admin), Some(json!({ "workflow": GARDEN }))).await;
    assert!(garden.get("urgency").is_none(), "{garden}");
}

#[tokio::test]
async fn staff_change_the_level_at_triage_with_a_reason_and_the_history_says_who_and_why() {
    let api = Api::new().await;
    let staff = api.token("operator", "chengguan", &["staff"]).await;
    let resident = api.token("operator", "chengguan", &["resident"]).await;
    let (_, case) = start(&api, &staff, Some("pressing")).await;
    let id = case["id"].as_i64().unwrap();
    let uri = format!("/api/v1/instances/{id}/urgency");

    let (s, p) = api.call("POST", &uri, Some(&resident), Some(json!({ "level": "urgent", "reason": "漏雨" }))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{p}");
    let (s, p) = api.call("POST", &uri, Some(&staff), Some(json!({ "level": "urgent", "reason": " " }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "/reason");
    let (s, p) = api.call("POST", &uri, Some(&staff), Some(json!({ "level": "soon", "reason": "漏雨" }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert_eq!(p["field"], "/level");
    let (s, p) = api
        .raw(
            "POST",
            &uri,
            Some(&staff),
            Some(("application/json", json!({ "level": "urgent", "reason": "漏雨" }).to_string())),
            &[("if-match", "\"7\"")],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a stale revision: {p}");

    let (s, changed) = api
        .call("POST", &uri, Some(&staff), Some(json!({ "level": "urgent", "reason": "正值雨季，住户家中进水" })))
        .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    assert_eq!(changed["urgency"], "urgent");
    let (s, p) = api.call("POST", &uri, Some(&staff), Some(json!({ "level": "urgent", "reason": "again" }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "already urgent: {p}");

    let (_, detail) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&staff), None).await;
    let changes: Vec<&Value> =
        detail["history"].as_array().unwrap().iter().filter(|e| e["type"] == "urgency_changed").collect();
    assert_eq!(changes.len(), 1, "{detail}");
    assert_eq!(changes[0]["from"], "pressing");
    assert_eq!(changes[0]["to"], "urgent");
    assert_eq!(changes[0]["reason"], "正值雨季，住户家中进水");
    assert_eq!(changes[0]["actor"]["id"], "operator@chengguan");

    // The routing rule sees it: registered and accepted at triage, the urgent matter goes to
    // the emergency council.
    let submit = json!({ "action": "submit", "payload": { "title": "3 号楼漏雨", "channel": "phone" } });
    let (s, after) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&staff), Some(submit)).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["active_steps"], json!(["triage"]));
    let approve = json!({ "action": "approve", "payload": { "comment": "核实属实" } });
    let (s, after) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&staff), Some(approve)).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["active_steps"], json!(["emergency_council"]));
    // Past triage the level stays.
    let (s, p) = api.call("POST", &uri, Some(&staff), Some(json!({ "level": "normal", "reason": "雨停了" }))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("raise, triage"), "{p}");
}

#[tokio::test]
async fn listings_filter_by_level_and_sort_most_urgent_first_across_pages() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    let mut ids = Vec::new();
    for level in ["normal", "urgent", "pressing", "normal", "urgent", "pressing", "normal"] {
        let (_, c) = start(&api, &admin, Some(level)).await;
        ids.push((level, c["id"].as_i64().unwrap()));
    }
    let (_, page) =
        api.call("GET", &format!("/api/v1/instances?workflow={MATTERS}&urgency=pressing"), Some(&admin), None).await;
    let got: Vec<i64> = page["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let want: Vec<i64> = ids.iter().rev().filter(|(l, _)| *l == "pressing").map(|(_, id)| *id).collect();
    assert_eq!(got, want);

    // Most urgent first, newest first within a level, two at a time.
    let mut want: Vec<(usize, i64)> = ids
        .iter()
        .map(|(l, id)| (["urgent", "pressing", "normal"].iter().position(|x| x == l).unwrap(), *id))
        .collect();
    want.sort_by_key(|(rank, id)| (*rank, -id));
    let mut got = Vec::new();
    let mut cursor = String::new();
    loop {
        let uri = format!("/api/v1/instances?workflow={MATTERS}&sort=urgency&limit=2{cursor}");
        let (s, page) = api.call("GET", &uri, Some(&admin), None).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for i in page["items"].as_array().unwrap() {
            got.push(i["id"].as_i64().unwrap());
            assert!(i["urgency"].is_string(), "{i}");
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got, want.iter().map(|(_, id)| *id).collect::<Vec<_>>());
    // A workflow without levels sorts newest first, also from a cursor.
    let (s, page) = api
        .call("GET", &format!("/api/v1/instances?workflow={GARDEN}&sort=urgency&cursor=5"), Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let (s, page) = api
        .call("GET", "/api/v1/instances?workflow=&sort=urgency&cursor=-9223372036854775808", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let (s, p) = api.call("GET", "/api/v1/instances?sort=oldest", Some(&admin), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["field"], "sort");
}

/// A deadline that depends on the level is counted again when the level changes, from when
/// its step was entered.
#[tokio::test]
async fn a_changed_level_recounts_the_deadlines_that_depend_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("u");
    std::fs::create_dir_all(&unit).unwrap();
    std::fs::write(unit.join("unit.toml"), "name = \"u\"\n").unwrap();
    std::fs::write(
        unit.join("triage.toml"),
        r#"
id = "triage"
[roles]
staff = "staff"
[urgency]
change_at = ["triage"]
[urgency.levels]
urgent = "紧急"
normal = "一般"
[[steps]]
id = "triage"
kind = "review"
roles = ["staff"]
deadline = { after = "5d", by_urgency = { urgent = "1d" }, outcome = "approved" }
on = { approved = "done", sent_back = "done" }
[[steps]]
id = "done"
kind = "end"
"#,
    )
    .unwrap();
    let api = Api::on(dir.path()).await;
    let staff = api.token("operator", "*", &["staff"]).await;
    let (s, case) = api.call("POST", "/api/v1/instances", Some(&staff), Some(json!({ "workflow": "u/triage" }))).await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(case["urgency"], "normal", "the last level is the default");
    let id = case["id"].as_i64().unwrap();
    let due = |d: Value| {
        d["timers"].as_array().unwrap().iter().find(|t| t["timer"] == "deadline").unwrap()["due_at"].as_i64().unwrap()
    };
    let (_, d) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&staff), None).await;
    let entered = case["created_at"].as_i64().unwrap();
    assert_eq!(due(d) - entered, 5 * 86_400_000);
    api.clock.advance(3_600_000);
    let (s, p) = api
        .call(
            "POST",
            &format!("/api/v1/instances/{id}/urgency"),
            Some(&staff),
            Some(json!({ "level": "urgent", "reason": "x" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (_, d) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&staff), None).await;
    let timers = d["timers"].as_array().unwrap();
    assert_eq!(timers.iter().filter(|t| t["timer"] == "deadline").count(), 1, "{d}");
    assert_eq!(due(d) - entered, 86_400_000, "a day from when the step was entered, not from the change");
}

#[tokio::test]
async fn a_merge_changes_both_cases_or_neither_and_keeps_to_one_unit() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &["staff"]).await;
    let other_unit = api.token("operator", "pingcheng", &["staff"]).await;
    let (_, a) = start(&api, &admin, None).await;
    let (_, b) = start(&api, &admin, None).await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let submit = |who: &str| json!({ "action": "submit", "on_behalf_of": { "id": who, "roles": ["resident"] }, "payload": { "title": "路灯不亮", "channel": "phone" } });
    for (id, who) in [(a, "res-1"), (b, "res-2")] {
        let (s, v) =
            api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&admin), Some(submit(who))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, garden) = api.call("POST", "/api/v1/instances", Some(&admin), Some(json!({ "workflow": GARDEN }))).await;
    let (_, pc) = api
        .call(
            "POST",
            "/api/v1/instances",
            Some(&admin),
            Some(json!({ "workflow": "pingcheng/yongtai/liuhangli/proposal" })),
        )
        .await;
    let revisions = |ids: Vec<i64>| {
        let engine = api.engine.clone();
        async move {
            let mut out = Vec::new();
            for id in ids {
                out.push(engine.get(id).await.unwrap().revision);
            }
            out
        }
    };
    let before = revisions(vec![a, b]).await;
    let merge = async |into: i64, body: Value| {
        api.call("POST", &format!("/api/v1/instances/{into}/merge"), Some(&admin), Some(body)).await
    };

    // Another unit's case, an unknown case, itself, a workflow without `[merge]`, no reason.
    let (s, p) = merge(a, json!({ "from": pc["id"], "reason": "x" })).await;
    assert_eq!((s, p["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/from")), "{p}");
    let (s, p) = merge(a, json!({ "from": 999_999, "reason": "x" })).await;
    assert_eq!((s, p["field"].as_str()), (StatusCode::NOT_FOUND, Some("/from")), "{p}");
    let (s, p) = merge(a, json!({ "from": a, "reason": "x" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, p) = merge(a, json!({ "from": garden["id"], "reason": "x" })).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("[merge]"), "{p}");
    let (s, p) = merge(a, json!({ "from": b, "reason": "" })).await;
    assert_eq!((s, p["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/reason")), "{p}");
    // Outside the token's scope the cases do not exist.
    let (s, _) = api
        .call(
            "POST",
            &format!("/api/v1/instances/{a}/merge"),
            Some(&other_unit),
            Some(json!({ "from": b, "reason": "x" })),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(revisions(vec![a, b]).await, before, "nothing changed");

    let (s, both) = merge(a, json!({ "from": b, "reason": "同一盏路灯" })).await;
    assert_eq!(s, StatusCode::OK, "{both}");
    assert_eq!(both["from"]["outcome"], "merged");
    assert_eq!(both["from"]["data"]["merged_into"], a);
    assert_eq!(both["into"]["data"]["merged_people"], json!(["res-2"]));
    assert_eq!(both["into"]["data"]["merged"], json!([{ "case": b, "people": ["res-2"] }]));
    assert_eq!(revisions(vec![a, b]).await, vec![before[0] + 1, before[1] + 1], "one change each");
    let (_, d) = api.call("GET", &format!("/api/v1/instances/{a}"), Some(&admin), None).await;
    let merged: Vec<&Value> = d["history"].as_array().unwrap().iter().filter(|e| e["type"] == "merged").collect();
    assert_eq!(merged.len(), 1);
    assert_eq!((merged[0]["from"].as_i64(), merged[0]["reason"].as_str()), (Some(b), Some("同一盏路灯")));
    let (_, d) = api.call("GET", &format!("/api/v1/instances/{b}"), Some(&admin), None).await;
    assert!(d["history"].as_array().unwrap().iter().any(|e| e["type"] == "merged_into" && e["into"] == a), "{d}");
    assert_eq!(d["timers"], json!([]));
    // The duplicate is closed: acting on it, or merging it again, is refused.
    let (s, _) = merge(a, json!({ "from": b, "reason": "again" })).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, listed) = api.call("GET", &format!("/api/v1/instances?data.merged_into={a}"), Some(&admin), None).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
}
