//! The shipped workflows: every community's scenarios pass (each ends by checking that the
//! case's state equals the replay of its history), and every startable workflow has scenarios.

use std::path::Path;
use std::sync::Arc;

use yishi_core::script::Sandbox;
use yishi_core::{FileSet, check};

#[tokio::test(flavor = "multi_thread")]
async fn every_shipped_scenario_passes() {
    let files = FileSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")).unwrap();
    let registry = yishi::registry();
    let catalog = check(&files, &registry, &Arc::new(Sandbox::default()));
    assert!(!catalog.has_errors(), "{:#?}", catalog.diagnostics);
    let results = yishi_engine::scenario::run_all(&catalog, &files, &registry).await;
    assert!(results.len() >= 13, "only {} scenarios", results.len());
    let failures: Vec<String> =
        results.iter().filter(|r| !r.passed).flat_map(|r| r.failures.iter().map(|f| f.to_string())).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for (key, def) in &catalog.definitions {
        if def.is_abstract || def.unit == "bench" {
            continue;
        }
        assert!(results.iter().any(|r| &r.workflow == key), "workflow `{key}` has no scenario");
    }
}

#[test]
fn the_committed_json_schema_is_generated_from_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/workflow.schema.json");
    let committed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let generated = yishi_core::schema::workflow_schema(&yishi::registry());
    assert!(
        committed == generated,
        "docs/workflow.schema.json is stale: run `cargo run -- schema > docs/workflow.schema.json`"
    );
    // It describes steps with each kind's settings.
    let text = generated.to_string();
    for needle in ["\"electorate\"", "\"required_parties\"", "\"co_signers\"", "\"insert_before\"", "\"remind_before\""]
    {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
}
