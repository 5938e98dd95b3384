//! Every control-flow pattern in `docs/patterns/` is driven by the scenarios beside it
//! (`docs/patterns/wcp/scenarios/*.toml`: who does what, when, and what must hold after); the
//! scenario runner also checks that each case's stored state equals the replay of its history.

mod common;

use std::sync::Arc;

use yishi_core::FileSet;
use yishi_core::kind::Registry;
use yishi_core::script::Sandbox;

#[tokio::test]
async fn every_pattern_scenario_passes() {
    let files = FileSet::load_dir(&common::patterns_dir()).unwrap();
    let registry = Registry::with_builtins();
    let catalog = yishi_core::check(&files, &registry, &Arc::new(Sandbox::default()));
    let lines = |d: &[yishi_core::diag::Diagnostic]| -> Vec<String> {
        d.iter().map(|d| d.render_line(yishi_core::i18n::Lang::En)).collect()
    };
    assert!(!catalog.has_errors(), "{:#?}", lines(&catalog.diagnostics));
    let results = yishi_engine::scenario::run_all(&catalog, &files, &registry).await;
    assert!(results.len() >= 17, "the pattern scenarios are all found: {}", results.len());
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).map(|r| (&r.file, lines(&r.failures))).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[tokio::test]
async fn a_scenario_that_expects_the_wrong_thing_fails() {
    // The harness above can fail: the same runner reports a wrong expectation.
    let mut files = FileSet::load_dir(&common::patterns_dir()).unwrap();
    let wrong =
        files.get("wcp/scenarios/sequence.toml").unwrap().replace("status = \"completed\"", "status = \"cancelled\"");
    files.insert("wcp/scenarios/sequence.toml", wrong);
    let registry = Registry::with_builtins();
    let catalog = yishi_core::check(&files, &registry, &Arc::new(Sandbox::default()));
    let results = yishi_engine::scenario::run_all(&catalog, &files, &registry).await;
    let seq = results.iter().find(|r| r.file == "wcp/scenarios/sequence.toml").unwrap();
    assert!(!seq.passed);
    assert!(
        seq.failures.iter().any(|f| f.message.to_string().contains("status is `completed`, expected `cancelled`")),
        "{seq:#?}"
    );
}
