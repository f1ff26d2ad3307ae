//! The crate's boundary, checked: its dependency tree (from the workspace's `Cargo.lock`) holds no
//! async runtime, no AWS SDK and no HTTP stack, so the accounting stays pure by construction and
//! its tests, benches and fuzz target build none of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Crates (or name prefixes) that must never be reachable from this crate.
const FORBIDDEN: [&str; 6] = [
    "tokio",
    "hyper",
    "aws-",
    "http",
    "rustls",
    "workspacesweb-sim",
];

/// Each package of a `Cargo.lock` with the names of its dependencies (versions dropped).
fn lock_graph(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = ")))
                .map(|v| v.trim_matches('"').to_string())
        };
        let Some(name) = field("name") else { continue };
        let deps = block
            .split_once("dependencies = [")
            .map(|(_, rest)| rest.split(']').next().unwrap_or_default())
            .unwrap_or_default()
            .split(',')
            .filter_map(|d| d.trim().trim_matches('"').split(' ').next())
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

/// Every package reachable from `root` (dev-dependencies included: the lock does not tell them
/// apart, so this is stricter than the normal tree).
fn reachable(graph: &BTreeMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn no_async_runtime_sdk_or_http_in_the_dependency_tree() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(&lock).expect("the workspace's Cargo.lock");
    let graph = lock_graph(&text);
    let tree = reachable(&graph, env!("CARGO_PKG_NAME"));
    assert!(
        tree.contains("serde") && tree.contains("sha2"),
        "the lock was read: {tree:?}"
    );
    let bad: Vec<&String> = tree
        .iter()
        .filter(|name| FORBIDDEN.iter().any(|f| name.starts_with(f)))
        .collect();
    assert!(bad.is_empty(), "the accounting crate reaches {bad:?}");
}
