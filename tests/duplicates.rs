//! Likely duplicates: `GET /api/v1/instances/{id}/similar` ranks a unit's open cases that
//! report the same matter first, leaves other units and closed cases out, and merges nothing.
//! (The scorer itself is checked on the labelled set in `yishi_core::similar`.)

mod common;

use common::api::Api;
use serde_json::{Value, json};

const GARDEN: &str = "chengguan/tianshuinanlu/garden";

async fn report(api: &Api, token: &str, data: Value) -> i64 {
    let (s, v) =
        api.call("POST", "/api/v1/instances", Some(token), Some(json!({ "workflow": GARDEN, "data": data }))).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test]
async fn the_same_lamp_reported_three_ways_is_suggested_before_other_matters() {
    let api = Api::new().await;
    let staff = api.token("operator", "*", &[]).await;
    let admin = api.token("admin", "*", &[]).await;
    let lamp = report(&api, &staff, json!({ "title": "3号楼门口路灯不亮", "text": "你好，3号楼门口那盏路灯坏了好几天了，晚上黑乎乎的，老人出门很不方便。", "location": "3号楼", "category": "设施维修" })).await;
    let leak = report(&api, &staff, json!({ "title": "3号楼水管漏水", "text": "3号楼2单元地下室水管爆了，一直在往外冒水，楼道里都是水，麻烦快派人来看看。", "location": "3号楼2单元" })).await;
    let same = report(&api, &staff, json!({ "title": "三号楼前路灯坏了", "text": "三号楼门口的路灯又不亮了，昨晚我妈差点摔一跤，能不能赶紧找人来修一下？", "location": "三号楼" })).await;
    let also = report(&api, &staff, json!({ "title": "3栋门口路灯损坏", "text": "3栋门口路灯坏了一周多，晚上黑漆漆的，老人小孩进出存在安全隐患，请尽快维修。", "location": "3栋", "category": "安全隐患" })).await;

    let viewer = api.token("viewer", "chengguan", &[]).await;
    let (s, v) = api.call("GET", &format!("/api/v1/instances/{lamp}/similar"), Some(&viewer), None).await;
    assert_eq!(s, 200, "{v}");
    let ids: Vec<i64> = v["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    let mut first_two = ids[..2].to_vec();
    first_two.sort_unstable();
    assert_eq!(first_two, vec![same, also], "the two other lamp reports first: {v}");
    assert_eq!(ids.last(), Some(&leak), "the leak at the same building last: {v}");
    assert!(!ids.contains(&lamp), "never itself");
    let top = &v["items"][0];
    assert!(top["score"].as_f64().unwrap() > v["items"][2]["score"].as_f64().unwrap());
    assert!(top["location"] == "三号楼" || top["location"] == "3栋", "{top}");

    let (_, v) = api.call("GET", &format!("/api/v1/instances/{lamp}/similar?limit=1"), Some(&viewer), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (s, _) = api.call("GET", &format!("/api/v1/instances/{lamp}/similar?limit=x"), Some(&viewer), None).await;
    assert_eq!(s, 400);
    for bad in ["0", "51"] {
        let (s, v) =
            api.call("GET", &format!("/api/v1/instances/{lamp}/similar?limit={bad}"), Some(&viewer), None).await;
        assert_eq!((s.as_u16(), v["field"].as_str()), (400, Some("limit")), "{v}");
    }

    // A closed case is no longer a candidate; nothing was merged along the way.
    let (s, v) = api
        .call("POST", &format!("/api/v1/instances/{same}/cancel"), Some(&admin), Some(json!({ "reason": "重复" })))
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api.call("GET", &format!("/api/v1/instances/{lamp}/similar"), Some(&viewer), None).await;
    let ids: Vec<i64> = v["items"].as_array().unwrap().iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert_eq!(ids[0], also, "{v}");
    let (_, v) = api.call("GET", &format!("/api/v1/instances/{also}"), Some(&viewer), None).await;
    assert_eq!(v["instance"]["status"], "active");

    // Outside the viewer's scope: not found, as for any read.
    let other = api.token("viewer", "pingcheng", &[]).await;
    let (s, _) = api.call("GET", &format!("/api/v1/instances/{lamp}/similar"), Some(&other), None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn yishi_similar_lists_the_suggestions_at_a_terminal() {
    use yishi_engine::store::{AnyStore, Store, StoreOptions};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("yishi.db");
    let store = yishi_engine::store::open(&StoreOptions::new(db.display().to_string())).await.unwrap();
    let engine = common::engine_on(AnyStore::clone(&store), std::sync::Arc::new(yishi_core::clock::SystemClock)).await;
    let files = yishi_core::FileSet::load_dir(std::path::Path::new("workflows")).unwrap();
    assert!(engine.activate_files(&files, "test").await.unwrap().ok);
    let staff = yishi_core::kind::Actor { id: "wang".into(), roles: vec![] };
    let mut ids = Vec::new();
    for (title, location) in
        [("3号楼门口路灯不亮", "3号楼"), ("三号楼前路灯坏了", "三号楼"), ("中心广场跳舞太吵", "中心广场")]
    {
        let data = json!({ "title": title, "location": location }).as_object().unwrap().clone();
        ids.push(engine.start(GARDEN, data, &staff, None).await.unwrap().id);
    }
    engine.close().await;
    store.close().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(["similar", &ids[0].to_string(), "--db"])
        .arg(&db)
        .env("YISHI_LANG", "zh-CN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("相似度") && lines[0].contains("地点"), "{text}");
    assert!(lines[1].contains("三号楼前路灯坏了"), "the same lamp first: {text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_yishi"))
        .args(["similar", "1", "--limit", "0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "limit 1 to 50");
}
