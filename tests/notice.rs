//! Public notice (公示): objections recorded during the period, one upheld sends the decision
//! back, and the printable notice shows the decision, the period and the objections, escaped.

mod common;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
id = "lift"
title = "加装电梯"
[params.notice_period]
type = "duration"
value = "5wd"
[roles]
staff = "社区工作人员"
resident = "居民"
[[steps]]
id = "meet"
kind = "meeting"
form = "council_hall"
actors = { attend = ["staff", "resident"], minutes = ["staff"], conclude = ["staff"] }
on = { agreed = "publicity", not_agreed = "done", deferred = "meet" }
[[steps]]
id = "publicity"
kind = "public_notice"
period = "notice_period"
subject = { zh-CN = "3 号楼加装电梯方案", en = "a lift for building 3" }
decision = ["vote", "meet"]
actors = { object = ["resident"], uphold = ["staff"] }
on = { confirmed = "done", sent_back = "meet" }
[[steps]]
id = "done"
kind = "end"
"#;

async fn page(api: &Api, token: &str, id: i64, lang: &str) -> (StatusCode, String, String) {
    let a = api
        .send("GET", &format!("/api/v1/instances/{id}/notice"), Some(token), None, &[("accept-language", lang)])
        .await;
    let ct = a.headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (a.status, ct, a.body.as_str().map(str::to_owned).unwrap_or_else(|| a.body.to_string()))
}

#[tokio::test]
async fn objections_are_recorded_one_upheld_sends_it_back_and_the_notice_prints() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("u");
    std::fs::create_dir_all(&unit).unwrap();
    std::fs::write(unit.join("unit.toml"), "name = \"幸福里社区\"\n").unwrap();
    std::fs::write(unit.join("lift.toml"), WORKFLOW).unwrap();
    let api = Api::on(dir.path()).await;
    let staff = api.token("operator", "*", &["staff"]).await;
    let resident = api.token("operator", "*", &["resident"]).await;
    let call = async |token: &str, method: &str, uri: &str, body: Option<Value>| {
        let (s, v) = api.call(method, uri, Some(token), body).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
        v
    };
    let case = call(
        &staff,
        "POST",
        "/api/v1/instances",
        Some(json!({ "workflow": "u/lift", "data": { "title": "3 号楼加装电梯" } })),
    )
    .await;
    let id = case["id"].as_i64().unwrap();
    let act = format!("/api/v1/instances/{id}/actions");
    // No notice yet.
    let (s, _, _) = page(&api, &staff, id, "zh-CN").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    call(&staff, "POST", &act, Some(json!({ "action": "attend" }))).await;
    let v = call(&staff, "POST", &act, Some(json!({ "action": "conclude", "payload": { "outcome": "agreed", "resolution": "同意加装，费用按楼层分摊" } }))).await;
    assert_eq!(v["active_steps"], json!(["publicity"]));
    let until = v["data"]["publicity"]["until"].as_i64().unwrap();
    assert!(until > v["data"]["publicity"]["from"].as_i64().unwrap());

    // Objections are recorded, each with its reason; an empty one is refused.
    call(
        &resident,
        "POST",
        &act,
        Some(json!({ "action": "object", "payload": { "reason": "<script>alert(1)</script> 一楼住户不同意" } })),
    )
    .await;
    let (s, p) = api
        .call("POST", &act, Some(&resident), Some(json!({ "action": "object", "payload": { "reason": "  " } })))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    let (s, _) = api
        .call("POST", &act, Some(&resident), Some(json!({ "action": "uphold", "payload": { "reason": "x" } })))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a resident does not uphold objections");

    let (s, ct, html) = page(&api, &staff, id, "zh-CN").await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(html.contains("<html lang=\"zh-CN\">") && html.contains("@page { size: A4"), "{html}");
    for want in ["公示", "3 号楼加装电梯方案", "同意加装，费用按楼层分摊", "公示期", "共 1 条", "幸福里社区", "年"]
    {
        assert!(html.contains(want), "{want} in {html}");
    }
    assert!(html.contains("&#60;script&#62;") && !html.contains("<script>"), "objections are escaped: {html}");
    // Kept for a look in a browser (`chromium --headless --print-to-pdf`).
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("notice-example.html");
    std::fs::write(&out, &html).unwrap();
    let (_, _, en) = page(&api, &staff, id, "en").await;
    assert!(en.contains("Public notice") && en.contains("a lift for building 3"), "{en}");

    // Upheld: back to the meeting, the period's timer gone, the notice says so.
    let v =
        call(&staff, "POST", &act, Some(json!({ "action": "uphold", "payload": { "reason": "一楼住户意见需再议" } })))
            .await;
    assert_eq!(v["active_steps"], json!(["meet"]));
    assert_eq!(v["data"]["publicity"]["outcome"], "sent_back");
    let d = call(&staff, "GET", &format!("/api/v1/instances/{id}"), None).await;
    assert!(d["timers"].as_array().unwrap().iter().all(|t| t["timer"] != "period_end"), "{d}");
    let (_, _, html) = page(&api, &staff, id, "zh-CN").await;
    assert!(html.contains("异议成立") && html.contains("一楼住户意见需再议"), "{html}");

    // Agreed again, and this time the period runs out: the decision stands.
    call(&staff, "POST", &act, Some(json!({ "action": "attend" }))).await;
    call(
        &staff,
        "POST",
        &act,
        Some(json!({ "action": "conclude", "payload": { "outcome": "agreed", "resolution": "一楼住户补偿后同意" } })),
    )
    .await;
    api.clock.advance(30 * 86_400_000);
    assert_eq!(api.engine.fire_due().await.unwrap(), 1);
    let d = call(&staff, "GET", &format!("/api/v1/instances/{id}"), None).await;
    assert_eq!(d["instance"]["status"], "completed", "{d}");
    let (_, _, html) = page(&api, &staff, id, "zh-CN").await;
    assert!(html.contains("公示期满") && html.contains("一楼住户补偿后同意"), "{html}");
}
