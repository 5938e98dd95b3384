//! The shape of the house, as tests: the pure core stays pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Packages of the lock file and what each depends on (by name; versions are ignored, which
/// only over-approximates the tree).
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).unwrap();
    let lock: toml::Table = toml::from_str(&text).unwrap();
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in lock["package"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_owned();
        let deps = p.get("dependencies").and_then(|d| d.as_array()).cloned().unwrap_or_default();
        let deps = deps.iter().filter_map(|d| d.as_str()).map(|d| d.split(' ').next().unwrap_or(d).to_owned());
        graph.entry(name).or_default().extend(deps);
    }
    graph
}

fn tree_of(graph: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        if seen.insert(p.clone()) {
            todo.extend(graph.get(&p).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn the_core_has_no_async_runtime_database_or_network_in_its_tree() {
    let graph = lock_graph();
    let tree = tree_of(&graph, "yishi-core");
    for banned in [
        "tokio",
        "sqlx",
        "sqlx-core",
        "rusqlite",
        "libsqlite3-sys",
        "hyper",
        "axum",
        "reqwest",
        "notify",
        "yishi-engine",
    ] {
        assert!(!tree.contains(banned), "yishi-core depends on `{banned}` (through {tree:?}); the core must stay pure");
    }
    // And the check itself can fail: the engine does have them.
    assert!(tree_of(&graph, "yishi-engine").contains("tokio"));
}

#[test]
fn plugins_depend_on_the_core_only() {
    let graph = lock_graph();
    let tree = tree_of(&graph, "yishi-plugins");
    assert!(tree.contains("yishi-core"));
    assert!(!tree.contains("yishi-engine") && !tree.contains("tokio"), "plugins reach past the core: {tree:?}");
}
