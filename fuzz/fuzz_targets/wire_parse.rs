//! `cargo fuzz run wire_parse`: see `wire_parse` in `fuzz/bodies.rs`.
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)] // each target runs one of the bodies
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::wire_parse(data);
});
