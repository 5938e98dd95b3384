//! The HTTP API, in process: access control on every route, problem details for bad input,
//! conflicts and idempotency.

mod common;

use axum::http::StatusCode;
use common::api::Api;
use serde_json::{Value, json};

const GARDEN: &str = "chengguan/tianshuinanlu/garden";
const LIUHANGLI: &str = "pingcheng/yongtai/liuhangli/proposal";

#[tokio::test]
async fn health_needs_no_token_and_the_api_does() {
    let api = Api::new().await;
    assert_eq!(api.call("GET", "/healthz", None, None).await.0, StatusCode::OK);
    assert_eq!(api.call("GET", "/readyz", None, None).await.0, StatusCode::OK);
    assert_eq!(api.call("GET", "/metrics", None, None).await.0, StatusCode::OK);
    let (s, v) = api.call("GET", "/api/v1/instances", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "unauthorized");
    assert_eq!(api.call("GET", "/api/v1/instances", Some("yishi_0000_nope"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.call("GET", "/api/v1/nowhere", None, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.call("GET", "/nowhere", None, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let api = Api::new().await;
    let t = api.token("viewer", "*", &[]).await;
    assert_eq!(api.call("GET", "/api/v1/whoami", Some(&t), None).await.0, StatusCode::OK);
    let id = api.engine.tokens().await.unwrap().last().unwrap().id;
    assert!(api.engine.revoke_token(id).await.unwrap());
    let (s, v) = api.call("GET", "/api/v1/whoami", Some(&t), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].as_str().unwrap().contains("revoked"));
}

#[tokio::test]
async fn every_route_refuses_what_the_role_or_scope_does_not_allow_and_changes_nothing() {
    let api = Api::new().await;
    let admin = api.token("admin", "*", &[]).await;
    let viewer = api.token("viewer", "*", &[]).await;
    let chengguan_op = api.token("operator", "chengguan", &["staff", "resident"]).await;
    let (s, garden) = api.call("POST", "/api/v1/instances", Some(&admin), Some(json!({"workflow": GARDEN}))).await;
    assert_eq!(s, StatusCode::CREATED, "{garden}");
    let (_, pc) = api.call("POST", "/api/v1/instances", Some(&admin), Some(json!({"workflow": LIUHANGLI}))).await;
    let (g, p) = (garden["id"].as_i64().unwrap(), pc["id"].as_i64().unwrap());
    let history_len = |id: i64| {
        let engine = api.engine.clone();
        async move { engine.history(id).await.unwrap().len() }
    };
    let before = (history_len(g).await, history_len(p).await);

    // A viewer reads but may not start, act, cancel, migrate, reload or validate.
    assert_eq!(api.call("GET", &format!("/api/v1/instances/{g}"), Some(&viewer), None).await.0, StatusCode::OK);
    for (m, uri, body) in [
        ("POST", "/api/v1/instances".to_owned(), json!({"workflow": GARDEN})),
        (
            "POST",
            format!("/api/v1/instances/{g}/actions"),
            json!({"action": "submit", "payload": {"title": "x", "channel": "visit"}}),
        ),
        ("POST", format!("/api/v1/instances/{g}/cancel"), json!({"reason": "x"})),
        ("POST", format!("/api/v1/instances/{g}/migrate"), json!({"to_version": 1})),
        ("POST", "/api/v1/reload".to_owned(), json!({})),
        ("POST", "/api/v1/validate".to_owned(), json!({"path": "chengguan/x.toml", "text": ""})),
    ] {
        let (s, v) = api.call(m, &uri, Some(&viewer), Some(body)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "viewer {m} {uri}: {v}");
    }
    // An operator may not cancel, migrate or reload.
    for (uri, body) in [
        (format!("/api/v1/instances/{g}/cancel"), json!({"reason": "x"})),
        (format!("/api/v1/instances/{g}/migrate"), json!({"to_version": 1})),
        ("/api/v1/reload".to_owned(), json!({})),
    ] {
        assert_eq!(
            api.call("POST", &uri, Some(&chengguan_op), Some(body)).await.0,
            StatusCode::FORBIDDEN,
            "operator {uri}"
        );
    }
    // Outside its scope, everything looks like nothing.
    for (m, uri, body) in [
        ("GET", format!("/api/v1/instances/{p}"), None),
        ("GET", format!("/api/v1/instances/{p}/history"), None),
        (
            "POST",
            format!("/api/v1/instances/{p}/actions"),
            Some(json!({"action": "submit", "payload": {"title": "x", "channel": "visit"}})),
        ),
        ("POST", "/api/v1/instances".to_owned(), Some(json!({"workflow": LIUHANGLI}))),
        ("GET", format!("/api/v1/workflows/{LIUHANGLI}"), None),
        ("GET", format!("/api/v1/workflows/{LIUHANGLI}/versions"), None),
        ("GET", "/api/v1/instances?unit=pingcheng".to_owned(), None),
        ("POST", "/api/v1/validate".to_owned(), Some(json!({"path": "pingcheng/x.toml", "text": ""}))),
    ] {
        let (s, v) = api.call(m, &uri, Some(&chengguan_op), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "out of scope {m} {uri}: {v}");
    }
    // Listings show only what is in scope.
    let (_, list) = api.call("GET", "/api/v1/instances", Some(&chengguan_op), None).await;
    let ids: Vec<i64> = list["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [g]);
    let (_, units) = api.call("GET", "/api/v1/communities", Some(&chengguan_op), None).await;
    assert!(units["items"].as_array().unwrap().iter().all(|u| u["path"].as_str().unwrap().starts_with("chengguan")));
    let (_, wfs) = api.call("GET", "/api/v1/workflows", Some(&chengguan_op), None).await;
    assert!(wfs["items"].as_array().unwrap().iter().all(|w| w["unit"].as_str().unwrap().starts_with("chengguan")));
    assert_eq!((history_len(g).await, history_len(p).await), before, "refused requests changed nothing");
    // A scoped admin may not reload every unit, nor touch anything outside its scope.
    let chengguan_admin = api.token("admin", "chengguan", &[]).await;
    assert_eq!(api.call("POST", "/api/v1/reload", Some(&chengguan_admin), None).await.0, StatusCode::FORBIDDEN);
    for (m, uri, body) in [
        ("POST", format!("/api/v1/instances/{p}/cancel"), Some(json!({"reason": "x"}))),
        ("POST", format!("/api/v1/instances/{p}/migrate"), Some(json!({"to_version": 1, "dry_run": true}))),
        ("GET", format!("/api/v1/workflows/{LIUHANGLI}/diff?from=1&to=1"), None),
        ("GET", format!("/api/v1/workflows/{LIUHANGLI}/diagram"), None),
        ("GET", format!("/api/v1/instances?workflow={LIUHANGLI}&unit=pingcheng/yongtai/liuhangli"), None),
    ] {
        let (s, v) = api.call(m, &uri, Some(&chengguan_admin), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "scoped admin {m} {uri}: {v}");
    }
    let (_, list) =
        api.call("GET", &format!("/api/v1/instances?workflow={LIUHANGLI}"), Some(&chengguan_admin), None).await;
    assert!(list["items"].as_array().unwrap().is_empty(), "filters never widen the scope: {list}");
    assert_eq!((history_len(g).await, history_len(p).await), before, "still nothing changed");
    // In scope, the operator acts, recorded as itself and on behalf of the resident.
    let (s, v) = api.call("POST", &format!("/api/v1/instances/{g}/actions"), Some(&chengguan_op), Some(json!({"action": "submit", "payload": {"title": "garden", "channel": "visit"}, "on_behalf_of": {"id": "res-1", "roles": ["resident"]}}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let h = api.engine.history(g).await.unwrap();
    let action = h
        .iter()
        .find(|e| e.event.kind() == "action" && serde_json::to_value(&e.event).unwrap()["action"] == "submit")
        .unwrap();
    let a = serde_json::to_value(&action.event).unwrap();
    assert_eq!(a["actor"]["id"], "operator@chengguan");
    assert_eq!(a["on_behalf_of"]["id"], "res-1");
}

#[tokio::test]
async fn bad_input_gets_the_right_4xx() {
    let api = Api::new().await;
    let t = api.token("admin", "*", &["staff"]).await;
    let (_, c) = api.call("POST", "/api/v1/instances", Some(&t), Some(json!({"workflow": GARDEN}))).await;
    let id = c["id"].as_i64().unwrap();
    let uri = format!("/api/v1/instances/{id}/actions");
    let (s, v) = api.raw("POST", &uri, Some(&t), Some(("application/json", "{\"action\": ".into())), &[]).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_request")));
    let (s, _) = api.raw("POST", &uri, Some(&t), Some(("text/plain", "{}".into())), &[]).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, v) = api.call("POST", &uri, Some(&t), Some(json!({"action": "submit", "colour": "red"}))).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body")), "{v}");
    let (s, v) = api
        .call("POST", &uri, Some(&t), Some(json!({"action": "submit", "payload": {"title": "x", "channel": "pigeon"}})))
        .await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/payload/channel")), "{v}");
    let big = "x".repeat(400 * 1024);
    let (s, _) = api.call("POST", &uri, Some(&t), Some(json!({"action": "submit", "payload": {"title": big}}))).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.call("GET", "/api/v1/instances?limit=100000", Some(&t), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api.call("GET", "/api/v1/instances?colour=red", Some(&t), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api.call("GET", "/api/v1/instances/abc", Some(&t), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api.call("GET", "/api/v1/instances/999999", Some(&t), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("POST", "/api/v1/instances", Some(&t), Some(json!({"workflow": "no/such"}))).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, v) = api.call("POST", "/api/v1/instances", Some(&t), Some(json!({"workflow": "pingcheng/proposal"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "an abstract template cannot start: {v}");
    let (s, v) =
        api.call("POST", "/api/v1/validate", Some(&t), Some(json!({"path": "../../etc/passwd", "text": ""}))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/path")));
}

#[tokio::test]
async fn stale_revisions_conflict_and_idempotency_keys_apply_once() {
    let api = Api::new().await;
    let t = api.token("operator", "*", &["staff", "resident"]).await;
    let (_, c) = api.call("POST", "/api/v1/instances", Some(&t), Some(json!({"workflow": GARDEN}))).await;
    let id = c["id"].as_i64().unwrap();
    let uri = format!("/api/v1/instances/{id}/actions");
    let submit = json!({"action": "submit", "payload": {"title": "garden", "channel": "visit"}});
    let (s, v) =
        api.raw("POST", &uri, Some(&t), Some(("application/json", submit.to_string())), &[("if-match", "\"7\"")]).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{v}");
    let (s1, v1) = api
        .raw("POST", &uri, Some(&t), Some(("application/json", submit.to_string())), &[("idempotency-key", "k1")])
        .await;
    let (s2, v2) = api
        .raw("POST", &uri, Some(&t), Some(("application/json", submit.to_string())), &[("idempotency-key", "k1")])
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(v1, v2);
    let submits = api
        .engine
        .history(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| serde_json::to_value(&e.event).unwrap()["action"] == "submit")
        .count();
    assert_eq!(submits, 1, "a retried action applies once");
    let (s, _) =
        api.raw("POST", &uri, Some(&t), Some(("application/json", submit.to_string())), &[("if-match", "\"2\"")]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "the same action again is refused: submit is no longer accepted");
}

#[tokio::test]
async fn workflows_show_versions_diagrams_and_the_effective_definition() {
    let api = Api::new().await;
    let t = api.token("viewer", "*", &[]).await;
    let (s, v) = api.call("GET", &format!("/api/v1/workflows/{LIUHANGLI}"), Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    let steps: Vec<&str> =
        v["definition"]["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(steps.contains(&"opinion_before") && steps.contains(&"who_decides"), "layered steps: {steps:?}");
    assert_eq!(v["definition"]["params"]["quorum"]["value"], 0.6);
    let (s, v) = api.call("GET", &format!("/api/v1/workflows/{LIUHANGLI}/versions"), Some(&t), None).await;
    assert_eq!((s, v["items"][0]["version"].as_i64()), (StatusCode::OK, Some(1)));
    let (s, v) = api.call("GET", &format!("/api/v1/workflows/{LIUHANGLI}/diagram"), Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().starts_with("flowchart TD"));
    let (s, v) = api.call("GET", &format!("/api/v1/workflows/{LIUHANGLI}/diagram?format=svg"), Some(&t), None).await;
    assert_eq!(s, StatusCode::OK);
    let svg = v.as_str().unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("representatives or the full assembly") && svg.contains("</svg>"),
        "{}",
        &svg[..svg.len().min(300)]
    );
    let (s, v) = api.call("GET", &format!("/api/v1/workflows/{LIUHANGLI}/diff?from=1&to=1"), Some(&t), None).await;
    assert_eq!((s, v["changes"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
}

#[test]
fn generated_query_strings_never_cause_a_server_error() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (api, token) = rt.block_on(async {
        let api = Api::new().await;
        let t = api.token("viewer", "*", &[]).await;
        (api, t)
    });
    let key = prop_oneof![
        Just("unit"),
        Just("within"),
        Just("workflow"),
        Just("version"),
        Just("status"),
        Just("step"),
        Just("limit"),
        Just("cursor"),
        Just("created_from"),
        Just("updated_to"),
        Just("data.registration"),
        Just("data."),
        Just("x")
    ];
    let value = prop_oneof![
        "\\PC{0,20}",
        "-?[0-9]{1,25}",
        Just("active".to_owned()),
        Just("%00".to_owned()),
        Just("%ZZ".to_owned())
    ];
    let strategy = proptest::collection::vec((key, value), 0..5);
    let mut runner = TestRunner::new(Config { cases: 300, ..Config::default() });
    let seen = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |pairs| {
            let qs: Vec<String> =
                pairs.iter().map(|(k, v)| format!("{k}={}", v.replace(['&', '#', ' '], "_"))).collect();
            let uri = format!("/api/v1/instances?{}", qs.join("&"));
            let Ok(uri) = uri.parse::<axum::http::Uri>() else { return Ok(()) };
            let (status, body) = rt.block_on(api.call("GET", &uri.to_string(), Some(&token), None));
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
                "{uri}: {status} {body}"
            );
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner();
    assert!(seen > 100, "only {seen} queries were well-formed URIs");
}

#[tokio::test]
async fn reload_status_shows_only_diagnostics_in_scope() {
    let tmp = tempfile::tempdir().unwrap();
    for unit in ["a", "b"] {
        std::fs::create_dir_all(tmp.path().join(unit)).unwrap();
        std::fs::write(
            tmp.path().join(format!("{unit}/w.toml")),
            "id = \"w\"\n[[steps]]\nid = \"s\"\nkind = \"nope\"\n",
        )
        .unwrap();
    }
    let (api, ok) = Api::loading(tmp.path()).await;
    assert!(!ok);
    let a = api.token("viewer", "a", &[]).await;
    let (s, v) = api.call("GET", "/api/v1/reload", Some(&a), None).await;
    assert_eq!(s, StatusCode::OK);
    let files: Vec<&str> = v["diagnostics"].as_array().unwrap().iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["a/w.toml"]);
    let files: Vec<&str> =
        v["last"]["diagnostics"].as_array().unwrap().iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert_eq!(files, ["a/w.toml"]);
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_only_those() {
    use yishi::server::{api_routes, openapi, public_routes};
    let served: std::collections::BTreeSet<(String, String)> =
        api_routes().into_iter().chain(public_routes()).map(|(m, p, _)| (m.to_string(), p.to_owned())).collect();
    let documented: std::collections::BTreeSet<(String, String)> =
        openapi::operations().into_iter().map(|o| (o.method.to_string(), o.route.to_owned())).collect();
    assert_eq!(served, documented, "routes and operations must match");
    let api = Api::new().await;
    let (s, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for op in openapi::operations() {
        let o = &doc["paths"][op.path][op.method.as_str().to_lowercase()];
        assert_eq!(o["operationId"], op.id, "{} {}", op.method, op.path);
        assert!(o["responses"].as_object().unwrap().keys().any(|k| k.starts_with('2')));
        if op.role.is_some() {
            assert!(o["responses"]["401"].is_object(), "{} documents 401", op.id);
        }
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
    // No boolean schemas (`true` for "anything"): generators such as openapi-python-client
    // refuse them.
    fn no_true_schemas(v: &Value, at: &str) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    // Values, and keywords whose value is a plain boolean.
                    let inside = matches!(
                        k.as_str(),
                        "const"
                            | "default"
                            | "examples"
                            | "enum"
                            | "example"
                            | "required"
                            | "deprecated"
                            | "uniqueItems"
                    );
                    if x == &Value::Bool(true) && !inside {
                        panic!("a boolean schema at {at}/{k}");
                    }
                    if !inside {
                        no_true_schemas(x, &format!("{at}/{k}"));
                    }
                }
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, x)| no_true_schemas(x, &format!("{at}/{i}"))),
            _ => {}
        }
    }
    no_true_schemas(&doc, "");
    // Each event type is a component of its own, told apart by `type`.
    let events = &doc["components"]["schemas"]["EventRow"];
    assert_eq!(events["discriminator"]["propertyName"], "type");
    assert_eq!(events["discriminator"]["mapping"]["timer_fired"], "#/components/schemas/EventTimerFired");
    let started = &doc["components"]["schemas"]["EventStarted"];
    for key in ["seq", "at", "version", "type", "workflow"] {
        assert!(started["properties"][key].is_object(), "EventStarted has `{key}`: {started}");
    }
}

#[tokio::test]
async fn documented_success_responses_match_their_schemas_top_level() {
    use yishi::server::openapi;
    let api = Api::new().await;
    let admin = api.token("admin", "*", &["staff"]).await;
    let (_, c) = api.call("POST", "/api/v1/instances", Some(&admin), Some(json!({"workflow": GARDEN}))).await;
    let id = c["id"].as_i64().unwrap();
    let (_, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => doc["components"]["schemas"][r.rsplit('/').next().unwrap()].clone(),
            None => schema.clone(),
        }
    };
    let uris = [
        ("getInstance", format!("/api/v1/instances/{id}")),
        ("history", format!("/api/v1/instances/{id}/history")),
        ("listInstances", "/api/v1/instances".to_owned()),
        ("listWorkflows", "/api/v1/workflows".to_owned()),
        ("listUnits", "/api/v1/communities".to_owned()),
        ("reloadStatus", "/api/v1/reload".to_owned()),
        ("whoami", "/api/v1/whoami".to_owned()),
        ("getWorkflow", format!("/api/v1/workflows/{GARDEN}")),
        ("listVersions", format!("/api/v1/workflows/{GARDEN}/versions")),
        ("diffVersions", format!("/api/v1/workflows/{GARDEN}/diff?from=1&to=1")),
    ];
    for (op_id, uri) in uris {
        let op = openapi::operations().into_iter().find(|o| o.id == op_id).unwrap();
        let (s, body) = api.call("GET", &uri, Some(&admin), None).await;
        assert_eq!(s, StatusCode::OK, "{uri}");
        let schema =
            resolve(&doc["paths"][op.path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]);
        for key in schema["required"].as_array().into_iter().flatten() {
            assert!(body.get(key.as_str().unwrap()).is_some(), "{op_id}: the answer lacks required `{key}`: {body}");
        }
        for key in body.as_object().unwrap().keys() {
            assert!(schema["properties"].get(key).is_some(), "{op_id}: `{key}` is not in the schema");
        }
    }
}

/// What the schema-driven fuzzer (schemathesis) found, kept fixed.
#[tokio::test]
async fn schemathesis_findings_stay_fixed() {
    let api = Api::new().await;
    let t = api.token("admin", "*", &["staff"]).await;
    let (_, c) = api.call("POST", "/api/v1/instances", Some(&t), Some(json!({"workflow": GARDEN}))).await;
    let id = c["id"].as_i64().unwrap();
    // 1. The history had two `version` keys in the `started` event (row version and definition hash).
    let (_, h) = api.raw("GET", &format!("/api/v1/instances/{id}/history"), Some(&t), None, &[]).await;
    let started = &h["events"][0];
    assert!(started["version"].is_i64() && started["hash"].is_string(), "{started}");
    // 2. A path with control characters was accepted by `validate`.
    let (s, v) = api.call("POST", "/api/v1/validate", Some(&t), Some(json!({"path": "\u{95}", "text": ""}))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/path")));
    // 3. Migrating to a version that does not exist answered 404, as if the case were gone.
    let (s, v) =
        api.call("POST", &format!("/api/v1/instances/{id}/migrate"), Some(&t), Some(json!({"to_version": 999}))).await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("/to_version")), "{v}");
    // 4. Integral floats are integers in JSON Schema.
    let own = c["version"].as_i64().unwrap() as f64;
    let (s, v) = api
        .call(
            "POST",
            &format!("/api/v1/instances/{id}/migrate"),
            Some(&t),
            Some(json!({"to_version": own, "dry_run": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call(
            "POST",
            &format!("/api/v1/instances/{id}/actions"),
            Some(&t),
            Some(json!({"action": "submit", "expected_revision": 1.5})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // 5. A blank reason, and an empty `on_behalf_of.id`, are refused as documented.
    let (s, _) =
        api.call("POST", &format!("/api/v1/instances/{id}/cancel"), Some(&t), Some(json!({"reason": "   "}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = api
        .call(
            "POST",
            &format!("/api/v1/instances/{id}/actions"),
            Some(&t),
            Some(json!({"action": "submit", "on_behalf_of": {"id": ""}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // 6. The SVG and CSV answers are documented.
    let (_, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert!(
        doc["paths"]["/api/v1/workflows/{key}/diagram"]["get"]["responses"]["200"]["content"]["image/svg+xml"]
            .is_object()
    );
    assert!(
        doc["paths"]["/api/v1/instances/{id}/history"]["get"]["responses"]["200"]["content"]["text/csv"].is_object()
    );
}
