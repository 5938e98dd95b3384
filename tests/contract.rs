//! The API's promises, each tried the way a client would: HTTP in, HTTP out (issue: "the API
//! keeps its word"). One test per promise, named after it.

mod common;

use std::path::Path;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::{Value, json};

const GARDEN: &str = "chengguan/tianshuinanlu/garden";

fn patterns() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/patterns")
}

fn body(v: &Value) -> Option<(&'static str, String)> {
    Some(("application/json", v.to_string()))
}

async fn start(api: &Api, token: &str, workflow: &str, data: Value) -> i64 {
    let (s, v) =
        api.call("POST", "/api/v1/instances", Some(token), Some(json!({"workflow": workflow, "data": data}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn history_len(api: &Api, token: &str, id: i64) -> usize {
    let (_, h) = api.call("GET", &format!("/api/v1/instances/{id}/history"), Some(token), None).await;
    h["events"].as_array().unwrap().len()
}

#[tokio::test]
async fn each_branch_of_a_for_each_keeps_its_own_report_through_the_join() {
    let api = Api::on(&patterns()).await;
    let t = api.token("operator", "*", &["department"]).await;
    let id = start(&api, &t, "wcp/foreach", json!({"departments": ["police", "judicial", "legal"]})).await;
    let (_, case) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&t), None).await;
    let tokens = case["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 3, "{case}");
    for tok in &tokens {
        let item = tok["item"].as_str().unwrap();
        let act = json!({"action": "report", "token": tok["id"], "payload": {"text": format!("{item} done")}});
        let (s, v) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(act)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, case) = api.call("GET", &format!("/api/v1/instances/{id}"), Some(&t), None).await;
    let case = &case["instance"];
    assert_eq!(case["status"], "completed", "{case}");
    for d in ["police", "judicial", "legal"] {
        assert_eq!(case["data"]["whistle"][d]["report"]["text"], format!("{d} done"), "{}", case["data"]);
    }
    assert_eq!(case["data"]["summary"], json!(["police: police done", "judicial: judicial done", "legal: legal done"]));
    assert!(case["data"].get("report").is_none(), "no branch wrote the shared document: {}", case["data"]);
}

#[tokio::test]
async fn a_change_to_a_script_alone_shows_in_the_diff_and_every_version_shows_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let w = "id = \"w\"\n[[steps]]\nid = \"pick\"\nkind = \"script\"\nfile = \"scripts/pick.rhai\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n";
    std::fs::create_dir_all(tmp.path().join("u/scripts")).unwrap();
    std::fs::write(tmp.path().join("u/w.toml"), w).unwrap();
    std::fs::write(tmp.path().join("u/scripts/pick.rhai"), "data.pick = 1;\n").unwrap();
    let api = Api::on(tmp.path()).await;
    let t = api.token("viewer", "*", &[]).await;
    std::fs::write(tmp.path().join("u/scripts/pick.rhai"), "data.pick = 2;\n").unwrap();
    assert!(api.reloader.reload("edit").await.unwrap().ok);

    let (s, v) = api.call("GET", "/api/v1/workflows/u/w/versions", Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    let numbers: Vec<i64> = v["items"].as_array().unwrap().iter().map(|x| x["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [1, 2], "{v}");
    let (s, v) = api.call("GET", "/api/v1/workflows/u/w/diff?from=1&to=2", Some(&t), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{v}");
    assert_eq!(files[0]["path"], "u/scripts/pick.rhai");
    assert_eq!(files[0]["status"], "changed");
    let diff = files[0]["diff"].as_str().unwrap();
    assert!(diff.contains("-data.pick = 1;") && diff.contains("+data.pick = 2;"), "{diff}");
    for (n, text) in [(1, "data.pick = 1;\n"), (2, "data.pick = 2;\n")] {
        let (s, v) = api.call("GET", &format!("/api/v1/workflows/u/w/versions/{n}"), Some(&t), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["version"], n);
        assert_eq!(v["files"]["u/scripts/pick.rhai"], text);
        assert_eq!(v["files"]["u/w.toml"], w);
        assert_eq!(v["version_id"].as_str().map(str::len), Some(64), "the content hash: {}", v["version_id"]);
    }
}

#[tokio::test]
async fn a_thousand_refused_requests_on_a_closed_case_leave_its_history_as_it_was() {
    let api = Api::new().await;
    let t = api.token("admin", "*", &["staff", "resident"]).await;
    let id = start(&api, &t, GARDEN, json!({})).await;
    let (s, _) = api
        .call("POST", &format!("/api/v1/instances/{id}/cancel"), Some(&t), Some(json!({"reason": "duplicate"})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let before = history_len(&api, &t, id).await;
    let act = json!({"action": "submit", "payload": {"title": "x", "channel": "visit"}});
    for _ in 0..1000 {
        let (s, v) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(act.clone())).await;
        assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("case_closed")), "{v}");
    }
    assert_eq!(history_len(&api, &t, id).await, before);
}

#[tokio::test]
async fn refusals_on_an_open_case_are_recorded_against_the_step_targeted_and_bounded_per_person() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff", "resident"]).await;
    let id = start(&api, &t, GARDEN, json!({})).await;
    let before = history_len(&api, &t, id).await;
    let bad = json!({"action": "submit", "step": "raise", "payload": {"title": "x", "channel": "pigeon"}});
    let tries = yishi_engine::service::MAX_REFUSALS_PER_HOUR as usize + 25;
    for _ in 0..tries {
        let (s, v) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(bad.clone())).await;
        assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/payload/channel")), "{v}");
    }
    let (_, h) = api.call("GET", &format!("/api/v1/instances/{id}/history"), Some(&t), None).await;
    let refused: Vec<&Value> = h["events"].as_array().unwrap().iter().filter(|e| e["type"] == "refused").collect();
    assert_eq!(refused.len(), yishi_engine::service::MAX_REFUSALS_PER_HOUR as usize);
    assert!(refused.iter().all(|e| e["step"] == "raise"), "{refused:?}");
    assert_eq!(h["events"].as_array().unwrap().len(), before + refused.len());
    // An hour later the next refusal is recorded, with the count of those left out.
    api.clock.advance(3_600_000);
    api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(bad.clone())).await;
    let (_, h) = api.call("GET", &format!("/api/v1/instances/{id}/history"), Some(&t), None).await;
    let last = h["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["type"].as_str(), last["unrecorded_before"].as_i64()), (Some("refused"), Some(25)), "{last}");
}

#[tokio::test]
async fn a_stale_branch_is_refused_naming_the_field_the_client_sent() {
    let api = Api::on(&patterns()).await;
    let t = api.token("operator", "*", &["department"]).await;
    let id = start(&api, &t, "wcp/foreach", json!({"departments": ["police", "legal"]})).await;
    let act = json!({"action": "report", "token": 999, "payload": {"text": "x"}});
    let (s, v) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(act)).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/token")), "{v}");
    let act = json!({"action": "report", "payload": {"text": "x"}});
    let (s, v) = api.call("POST", &format!("/api/v1/instances/{id}/actions"), Some(&t), Some(act)).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/token")), "which branch: {v}");
}

#[tokio::test]
async fn body_errors_name_a_json_pointer_and_say_what_was_expected() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff"]).await;
    let cases = [
        (json!({"workflow": 7}), "/workflow", "expected a string, found a whole number 7"),
        (json!({"workflow": GARDEN, "data": []}), "/data", "an object, found an array"),
        (json!({"workflow": GARDEN, "colour": "red"}), "/colour", "colour"),
        (json!({}), "/workflow", "workflow"),
    ];
    for (b, field, word) in cases {
        let (s, v) = api.call("POST", "/api/v1/instances", Some(&t), Some(b.clone())).await;
        assert_eq!(
            (s, v["code"].as_str(), v["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"), Some(field)),
            "{b}: {v}"
        );
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(word), "{b}: {detail}");
        assert!(!detail.contains("line 1 column"), "plain words, not serde's: {detail}");
    }
    let (s, v) =
        api.raw("POST", "/api/v1/instances", Some(&t), Some(("application/json", "{\"workflow\": ".into())), &[]).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")), "{v}");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow_and_an_unknown_route_is_a_problem_too() {
    let api = Api::new().await;
    let t = api.token("viewer", "*", &[]).await;
    let a = api.send("DELETE", "/api/v1/instances", Some(&t), None, &[]).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow = a.headers.get("allow").unwrap().to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(a.body["code"], "method_not_allowed");
    let a = api.send("GET", "/api/v1/no/such/route", Some(&t), None, &[]).await;
    assert_eq!((a.status, a.body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    assert_eq!(a.headers.get("content-type").unwrap(), "application/problem+json");
}

#[tokio::test]
async fn reads_carry_the_etag_and_if_none_match_answers_304() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff", "resident"]).await;
    let id = start(&api, &t, GARDEN, json!({})).await;
    let uri = format!("/api/v1/instances/{id}");
    let a = api.send("GET", &uri, Some(&t), None, &[]).await;
    let tag = a.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_eq!(tag, format!("\"{}\"", a.body["instance"]["revision"]));
    let b = api.send("GET", &uri, Some(&t), None, &[("if-none-match", &tag)]).await;
    assert_eq!(b.status, StatusCode::NOT_MODIFIED);
    assert_eq!(b.headers.get("etag").unwrap().to_str().unwrap(), tag);
    let act = json!({"action": "submit", "payload": {"title": "garden", "channel": "visit"}});
    let c = api.send("POST", &format!("{uri}/actions"), Some(&t), body(&act), &[("if-match", &tag)]).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let new_tag = c.headers.get("etag").unwrap().to_str().unwrap().to_owned();
    assert_ne!(new_tag, tag);
    assert_eq!(api.send("GET", &uri, Some(&t), None, &[("if-none-match", &tag)]).await.status, StatusCode::OK);
    // A stale If-Match stays the documented 409.
    let d = api.send("POST", &format!("{uri}/actions"), Some(&t), body(&act), &[("if-match", &tag)]).await;
    assert_eq!((d.status, d.body["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
}

#[tokio::test]
async fn integers_stay_integers_and_larger_numbers_are_refused() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff"]).await;
    let big = "9007199254740993"; // 2^53 + 1: a float would round it
    let raw =
        format!("{{\"workflow\": \"{GARDEN}\", \"data\": {{\"households\": {big}, \"max\": 9223372036854775807}}}}");
    let (s, v) = api.raw("POST", "/api/v1/instances", Some(&t), Some(("application/json", raw)), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let a = api.send("GET", &format!("/api/v1/instances/{id}/history"), Some(&t), None, &[]).await;
    let text = a.body.to_string();
    assert!(text.contains(big) && text.contains("9223372036854775807"), "{text}");
    let raw = format!("{{\"workflow\": \"{GARDEN}\", \"data\": {{\"households\": 9223372036854775808}}}}");
    let (s, v) = api.raw("POST", "/api/v1/instances", Some(&t), Some(("application/json", raw)), &[]).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/data/households")), "{v}");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_request_and_refuses_a_different_one() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff"]).await;
    let other = api.token("operator", "*", &["staff"]).await;
    let first = json!({"workflow": GARDEN, "data": {"note": "a"}});
    let key = [("idempotency-key", "garden-2026-04")];
    let a = api.send("POST", "/api/v1/instances", Some(&t), body(&first), &key).await;
    let b = api.send("POST", "/api/v1/instances", Some(&t), body(&first), &key).await;
    assert_eq!((a.status, b.status), (StatusCode::CREATED, StatusCode::CREATED));
    assert_eq!(a.body, b.body, "the first response, again");
    let changed = json!({"workflow": GARDEN, "data": {"note": "b"}});
    let c = api.send("POST", "/api/v1/instances", Some(&t), body(&changed), &key).await;
    assert_eq!((c.status, c.body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("idempotency_key_reused")));
    // Keys belong to the token: another token's same key is another request.
    let d = api.send("POST", "/api/v1/instances", Some(&other), body(&changed), &key).await;
    assert_eq!(d.status, StatusCode::CREATED);
    assert_ne!(d.body["id"], a.body["id"]);
    let (_, page) = api.call("GET", "/api/v1/instances", Some(&t), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "two cases, not four");
    // After the documented time a key may be used afresh.
    api.clock.advance(yishi_engine::service::IDEMPOTENCY_TTL_MS + 1);
    let e = api.send("POST", "/api/v1/instances", Some(&t), body(&changed), &key).await;
    assert_eq!(e.status, StatusCode::CREATED, "{}", e.body);
    assert_ne!(e.body["id"], a.body["id"]);
}

#[tokio::test]
async fn problems_speak_the_language_asked_for() {
    let api = Api::new().await;
    let t = api.token("viewer", "*", &[]).await;
    let a = api.send("GET", "/api/v1/instances/424242", Some(&t), None, &[("accept-language", "zh-CN,zh;q=0.9")]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.headers.get("content-language").unwrap(), "zh-CN");
    assert!(a.body["detail"].as_str().unwrap().contains("424242"), "{}", a.body);
    assert!(a.body["detail"].as_str().unwrap().chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{}", a.body);
    let a = api.send("GET", "/api/v1/instances/424242", Some(&t), None, &[("accept-language", "en")]).await;
    assert_eq!(a.headers.get("content-language").unwrap(), "en");
    assert!(a.body["detail"].as_str().unwrap().is_ascii(), "{}", a.body);
}

#[tokio::test]
async fn deliveries_given_up_on_are_listed_retried_and_discarded_by_an_admin() {
    // A webhook to a port nobody listens on fails every attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("u")).unwrap();
    std::fs::write(
        tmp.path().join("u/w.toml"),
        format!("id = \"w\"\n[[steps]]\nid = \"tell\"\nkind = \"notify\"\nto = [\"staff\"]\nmessage = \"decided\"\nwebhook = \"http://127.0.0.1:{port}/hook\"\nnext = \"end\"\n[[steps]]\nid = \"end\"\nkind = \"end\"\n"),
    )
    .unwrap();
    let api = Api::on(tmp.path()).await;
    let admin = api.token("admin", "*", &[]).await;
    let local = api.token("admin", "u", &[]).await;
    start(&api, &admin, "u/w", json!({})).await;
    let sender = yishi::webhook::HttpWebhooks::default();
    for _ in 0..yishi_engine::service::MAX_DELIVERY_ATTEMPTS {
        api.engine.deliver_outbox(&sender).await.unwrap();
        api.clock.advance(10 * 3_600_000);
    }
    let (s, v) = api.call("GET", "/api/v1/outbox/dead", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let dead = v["items"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{v}");
    assert_eq!(dead[0]["attempts"], yishi_engine::service::MAX_DELIVERY_ATTEMPTS);
    assert!(dead[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert_eq!(api.call("GET", "/api/v1/outbox/dead", Some(&local), None).await.0, StatusCode::FORBIDDEN);

    let (s, v) = api.call("POST", "/api/v1/outbox/dead/retry", Some(&admin), Some(json!({"id": dead[0]["id"]}))).await;
    assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    assert_eq!(api.engine.deliver_outbox(&sender).await.unwrap(), 1, "due again at once");
    let (_, v) = api.call("GET", "/api/v1/outbox/dead", Some(&admin), None).await;
    assert!(v["items"].as_array().unwrap().is_empty(), "back in line, not dead: {v}");
    for _ in 1..yishi_engine::service::MAX_DELIVERY_ATTEMPTS {
        api.clock.advance(10 * 3_600_000);
        api.engine.deliver_outbox(&sender).await.unwrap();
    }
    let (s, v) = api.call("POST", "/api/v1/outbox/dead/discard", Some(&admin), Some(json!({}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "a forgotten id never means all: {v}");
    let (s, v) = api.call("POST", "/api/v1/outbox/dead/discard", Some(&admin), Some(json!({"id": 0}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "ids start at 1: {v}");
    let (s, v) = api.call("POST", "/api/v1/outbox/dead/discard", Some(&admin), Some(json!({"all": true}))).await;
    assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (_, v) = api.call("GET", "/api/v1/outbox/dead", Some(&admin), None).await;
    assert!(v["items"].as_array().unwrap().is_empty());
}
