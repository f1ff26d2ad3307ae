//! `cargo fuzz run config_parse`: see `config_parse` in `fuzz/bodies.rs`.
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)] // each target runs one of the bodies
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::config_parse(data);
});
