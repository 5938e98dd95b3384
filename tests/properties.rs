//! Hostile input, generated: the checker never panics and always says where; action payloads
//! never panic the runtime; query strings never cause a server error. Failing inputs found by
//! proptest are kept in `tests/properties.proptest-regressions` and replayed first.

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use yishi_core::kind::Actor;
use yishi_core::runtime::ActionRequest;
use yishi_core::script::Sandbox;
use yishi_core::{FileSet, check};
use yishi_engine::service::EngineError;

fn shipped(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows").join(path)).unwrap()
}

fn check_text(text: &str) -> Vec<yishi_core::Diagnostic> {
    let mut files = FileSet::new();
    files.insert("u/w.toml", text);
    files.insert("u/lists/encouraged.toml", "[[categories]]\nid = \"x\"\nkeywords = [\"x\"]\n");
    let catalog = check(&files, &yishi::registry(), &Arc::new(Sandbox::default()));
    catalog.diagnostics
}

/// An edit of a valid file: delete, duplicate or replace a slice, or insert TOML-ish noise.
fn mutate(text: &str, at: usize, len: usize, kind: u8, noise: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + len).min(chars.len());
    let (head, mid, tail): (String, String, String) =
        (chars[..at].iter().collect(), chars[at..end].iter().collect(), chars[end..].iter().collect());
    match kind % 4 {
        0 => format!("{head}{tail}"),
        1 => format!("{head}{mid}{mid}{tail}"),
        2 => format!("{head}{noise}{tail}"),
        _ => format!("{head}{noise}{mid}{tail}"),
    }
}

const NOISE: &[&str] = &[
    "[[steps]]\n",
    "=",
    "\"",
    "'''",
    "{",
    "}",
    "[",
    "]",
    "\n",
    "#",
    "kind = \"vote\"\n",
    "on = { x = \"y\" }",
    "next = \"nowhere\"",
    "\u{0}",
    "é",
    "extends = \"u/w\"\n",
    "deadline = { after = \"x\" }",
    "rule = \"(((\"",
    "1e400",
    "-9223372036854775809",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn the_checker_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        let diags = check_text(&text);
        for d in &diags {
            prop_assert!(!d.file().is_empty());
            prop_assert!(!d.message.to_string().is_empty());
        }
    }

    #[test]
    fn the_checker_reports_located_diagnostics_for_mutated_real_files(
        which in 0usize..4, at in 0usize..6000, len in 0usize..80, kind in 0u8..4, noise in 0usize..NOISE.len()
    ) {
        let sources = ["chengguan/tianshuinanlu/garden.toml", "xingqing/lijingjie/yinhong/dispute.toml", "yanqing/rulin/steward.toml", "shengli/shenghong/proposal.toml"];
        let text = mutate(&shipped(sources[which]), at, len, kind, NOISE[noise]);
        let diags = check_text(&text);
        for d in diags.iter().filter(|d| d.file() == "u/w.toml" && d.place.line > 0) {
            prop_assert!(d.place.line as usize <= text.lines().count() + 1, "line {} beyond the file: {d}", d.place.line);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn action_payloads_never_panic_and_refusals_change_nothing(
        action in prop_oneof![Just("submit".to_owned()), Just("attend".to_owned()), Just("vote".to_owned()), "[a-z_]{0,12}"],
        payload in proptest::collection::btree_map("[a-z_]{1,10}", json_value(), 0..6),
        roles in proptest::collection::vec(prop_oneof![Just("resident".to_owned()), Just("staff".to_owned()), "[a-z]{1,8}"], 0..3),
    ) {
        let (rt, engine) = &*GARDEN_ENGINE;
        rt.block_on(async {
            let actor = Actor { id: "p".into(), roles };
            let case = engine.start("chengguan/tianshuinanlu/garden", Map::new(), &actor, None).await.unwrap();
            let payload: Map<String, Value> = payload.into_iter().collect();
            let req = ActionRequest { action, step: None, token: None, payload, actor, on_behalf_of: None };
            match engine.act(case.id, req, None, None).await {
                Ok(_) => {}
                Err(EngineError::Refused { .. } | EngineError::Forbidden(_) | EngineError::ScriptFailed(_)) => {
                    let after = engine.view(case.id).await.unwrap();
                    assert_eq!((after.revision, after.active_steps), (case.revision, case.active_steps));
                }
                Err(other) => panic!("unexpected error: {other:?}"),
            }
        });
    }
}

/// One engine with the garden workflow active, shared by every generated case (activating runs
/// the scenarios, which would dominate the test's time).
static GARDEN_ENGINE: std::sync::LazyLock<(tokio::runtime::Runtime, std::sync::Arc<yishi_engine::service::Engine>)> =
    std::sync::LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let engine = rt.block_on(async {
            let (engine, _clock) = common::quiet_engine().await;
            let files = FileSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/chengguan")).unwrap();
            let mut scoped = FileSet::new();
            for (p, t) in files.iter() {
                scoped.insert(format!("chengguan/{p}"), t);
            }
            assert!(engine.activate_files(&scoped, "test").await.unwrap().ok);
            engine
        });
        (rt, engine)
    });

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("visit")),
        Just(json!("for")),
    ];
    leaf.prop_recursive(3, 20, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
