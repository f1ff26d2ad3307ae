//! The fuzz targets' bodies (`fuzz/bodies.rs`) as ordinary tests: the seed corpus in
//! `fuzz/corpus/`, the config files of the repository, and random inputs and mutations from
//! proptest. `cargo fuzz` (see `fuzz/README.md`) explores the same bodies for longer.

use std::path::Path;

use proptest::prelude::*;

#[path = "../../fuzz/bodies.rs"]
mod bodies;

/// Every file of `fuzz/corpus/<target>/` (the seeds, and crashes found earlier and fixed).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

/// The config files of the repository: the example and the test fixtures.
fn config_files() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![std::fs::read(root.join("config.example.yaml")).expect("example")];
    for e in std::fs::read_dir(root.join("tests/fixtures/config")).expect("fixtures") {
        out.push(std::fs::read(e.expect("entry").path()).expect("fixture"));
    }
    out
}

#[test]
fn bodies_accept_empty_and_small_inputs() {
    for data in [
        &b""[..],
        b"\0",
        b"\xff\xff\xff",
        b"global: {}",
        b"?nextToken=%",
    ] {
        bodies::config_parse(data);
        bodies::wire_parse(data);
    }
}

#[test]
fn config_corpus() {
    for input in corpus("config_parse").into_iter().chain(config_files()) {
        bodies::config_parse(&input);
    }
}

#[test]
fn wire_corpus() {
    for input in corpus("wire_parse") {
        bodies::wire_parse(&input);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_parse_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        bodies::config_parse(&data);
    }

    /// Mutations of real config files: a few bytes replaced, inserted or removed.
    #[test]
    fn config_parse_mutated_files(
        which in 0usize..16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let files = config_files();
        let mut data = files[which % files.len()].clone();
        for (at, byte, kind) in edits {
            let i = at.index(data.len() + 1);
            match kind {
                0 if i < data.len() => data[i] = byte,
                1 => data.insert(i, byte),
                _ if i < data.len() => { data.remove(i); }
                _ => {}
            }
        }
        bodies::config_parse(&data);
    }

    #[test]
    fn wire_parse_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        bodies::wire_parse(&data);
    }

    #[test]
    fn wire_parse_random_requests(path in "/portals(/[a-z0-9%:-]{0,40}){0,4}", query in "([a-zA-Z]{1,10}=[A-Za-z0-9_%+-]{0,60}&?){0,5}") {
        bodies::wire_parse(format!("{path}?{query}").as_bytes());
    }
}
