//! Bodies of the fuzz targets (run with `cargo fuzz`), included with `#[path]` by each target in
//! `fuzz_targets/` and by `tests/suite/fuzzing.rs`, so that the ordinary test suite runs them too (on the
//! seed corpus and random inputs). They stay out of the exporter's library and its API.
//!
//! Each function takes arbitrary bytes, must never panic, and panics on a broken invariant (which
//! the fuzzer reports as a crash).
//!
//! Not covered yet: the web config parser (`--web.config.file`); add a `web_config_parse` body
//! here calling it the same way as [`config_parse`].

use workspacesweb_exporter::config;

/// The config parser and validator on arbitrary text: an error names a file, a valid config can be
/// summarised and resolved.
pub fn config_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(text, "fuzz.yaml") {
        Ok(loaded) => {
            let _ = loaded.config.summary();
            for t in loaded.config.targets() {
                assert!(t.timeout < t.interval, "timeout must be below the interval");
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("fuzz.yaml"),
                "error without the file name: {msg}"
            );
        }
    }
}

/// The simulator's request parsing (routes, query strings, pagination tokens) and its JSON writers
/// on arbitrary input: token round trips, JSON output that reads back, padded bodies that stay JSON.
/// The body lives in the simulator crate, which owns that code.
pub fn wire_parse(data: &[u8]) {
    workspacesweb_sim::fuzz_wire(data);
}
