//! The `ledger_apply` fuzz target's body (`fuzz/bodies.rs` of this crate) as ordinary tests: the
//! seed corpus in `fuzz/corpus/ledger_apply/`, and random inputs from proptest. `cargo fuzz`
//! (see the exporter's `fuzz/README.md`) explores the same body for longer.

use std::path::Path;

use proptest::prelude::*;

#[path = "../fuzz/bodies.rs"]
mod bodies;

#[test]
fn ledger_apply_accepts_empty_and_small_inputs() {
    for data in [&b""[..], b"\0", b"\xff\xff\xff", b"global: {}"] {
        bodies::ledger_apply(data);
    }
}

/// Every file of `fuzz/corpus/ledger_apply/` (the seeds, and crashes found earlier and fixed).
#[test]
fn ledger_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ledger_apply");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut inputs = 0;
    for entry in entries {
        let input = std::fs::read(entry.expect("dir entry").path()).expect("corpus file");
        bodies::ledger_apply(&input);
        inputs += 1;
    }
    assert!(inputs > 0, "empty corpus {}", dir.display());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ledger_apply_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        bodies::ledger_apply(&data);
    }
}
