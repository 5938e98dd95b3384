//! Moving running cases to a newer version: explicit, checked, all-or-nothing, recorded.

use std::collections::BTreeMap;
mod common;

use std::sync::Arc;

use serde_json::{Map, Value, json};
use yishi_core::FileSet;
use yishi_core::clock::ManualClock;
use yishi_core::kind::Actor;
use yishi_core::runtime::{ActionRequest, Event, replay};
use yishi_engine::service::{Engine, EngineError};

const V1: &str = r#"
id = "w"
[params.period]
type = "duration"
value = "3d"
[roles]
staff = "staff"
rep = "representative"
[[steps]]
id = "prepare"
kind = "task"
roles = ["staff"]
actions.ready = {}
deadline = { after = "period", outcome = "ready" }
next = "vote"
[[steps]]
id = "vote"
kind = "vote"
electorate = { role = "rep", size = 5 }
actors = { vote = ["rep"], close = ["staff"] }
deadline = { after = "7d" }
on = { passed = "end", rejected = "end", no_quorum = "end" }
[[steps]]
id = "end"
kind = "end"
"#;

fn v2() -> String {
    V1.replace("id = \"prepare\"", "id = \"prep\"").replace("value = \"3d\"", "value = \"1d\"")
}

const DAY: i64 = 86_400_000;

struct H {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
}

impl H {
    async fn new() -> H {
        let (engine, clock) = common::quiet_engine().await;
        H { engine, clock }
    }
    async fn load(&self, text: &str) -> i64 {
        let mut files = FileSet::new();
        files.insert("u/w.toml", text);
        assert!(self.engine.activate_files(&files, "test").await.unwrap().ok);
        self.engine.active().current["u/w"].0.seq
    }
    async fn act(&self, id: i64, action: &str, who: &str, roles: &[&str], payload: Value) -> Result<(), EngineError> {
        let payload: Map<String, Value> = payload.as_object().cloned().unwrap_or_default();
        let req = ActionRequest {
            action: action.into(),
            step: None,
            token: None,
            payload,
            actor: Actor { id: who.into(), roles: roles.iter().map(|r| (*r).to_owned()).collect() },
            on_behalf_of: None,
        };
        self.engine.act(id, req, None, None).await.map(|_| ())
    }
    async fn replays(&self, id: i64) {
        let row = self.engine.get(id).await.unwrap();
        let h = self.engine.history(id).await.unwrap();
        assert_eq!(replay(h.iter().map(|e| (&e.event, e.at))), row.state);
    }
}

fn admin() -> Actor {
    Actor { id: "admin".into(), roles: vec![] }
}

#[tokio::test]
async fn a_renamed_step_moves_by_mapping_and_its_deadline_follows_the_new_rules() {
    let h = H::new().await;
    let v1 = h.load(V1).await;
    let case = h.engine.start("u/w", Map::new(), &admin(), None).await.unwrap();
    let v2 = h.load(&v2()).await;
    assert_ne!(v1, v2);
    assert_eq!(h.engine.view(case.id).await.unwrap().version, v1, "a running case stays on its version");

    let plan = h.engine.migrate(case.id, v2, &BTreeMap::new(), &admin(), true).await.unwrap();
    assert!(!plan.applied);
    let problems: Vec<String> = plan.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems, ["active step `prepare` has no place in version 2: map it to a step of that version"]);
    let err = h.engine.migrate(case.id, v2, &BTreeMap::new(), &admin(), false).await.unwrap_err();
    assert!(matches!(err, EngineError::Refused { .. }), "{err:?}");
    assert_eq!(h.engine.view(case.id).await.unwrap().revision, case.revision, "nothing moved");

    let mapping: BTreeMap<String, String> = [("prepare".to_owned(), "prep".to_owned())].into_iter().collect();
    let plan = h.engine.migrate(case.id, v2, &mapping, &admin(), false).await.unwrap();
    assert!(plan.applied);
    let v = h.engine.view(case.id).await.unwrap();
    assert_eq!((v.version, v.active_steps.clone()), (v2, vec!["prep".to_owned()]));
    let history = h.engine.history(case.id).await.unwrap();
    assert!(history.iter().any(|e| matches!(&e.event, Event::Migrated { steps, .. } if steps.get("prepare").map(String::as_str) == Some("prep"))));
    // The deadline is now one day from when the step was entered, not three.
    h.clock.advance(DAY);
    assert_eq!(h.engine.fire_due().await.unwrap(), 1);
    assert_eq!(h.engine.view(case.id).await.unwrap().active_steps, ["vote"]);
    h.replays(case.id).await;
}

#[tokio::test]
async fn a_vote_part_way_through_moves_only_when_the_mapping_says_so() {
    let h = H::new().await;
    h.load(V1).await;
    let case = h.engine.start("u/w", Map::new(), &admin(), None).await.unwrap();
    h.act(case.id, "ready", "li", &["staff"], json!({})).await.unwrap();
    for r in ["r1", "r2", "r3"] {
        h.act(case.id, "vote", r, &["rep"], json!({"choice": "for"})).await.unwrap();
    }
    let v2 = h.load(&v2().replace("size = 5", "size = 4")).await;
    let plan = h.engine.migrate(case.id, v2, &BTreeMap::new(), &admin(), true).await.unwrap();
    assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
    assert!(plan.problems[0].to_string().contains("part-way through"), "{:?}", plan.problems);
    let keep: BTreeMap<String, String> = [("vote".to_owned(), "vote".to_owned())].into_iter().collect();
    assert!(h.engine.migrate(case.id, v2, &keep, &admin(), false).await.unwrap().applied);
    h.act(case.id, "close", "li", &["staff"], json!({})).await.unwrap();
    let v = h.engine.view(case.id).await.unwrap();
    assert_eq!(v.data["vote"]["for"], 3, "the ballots carried over");
    assert_eq!(v.data["vote"]["electorate"], 4, "counted under the new rules");
    h.replays(case.id).await;
    let err = h.engine.migrate(case.id, v2, &keep, &admin(), false).await.unwrap_err();
    assert!(matches!(err, EngineError::Closed(_)), "{err:?}");
}
