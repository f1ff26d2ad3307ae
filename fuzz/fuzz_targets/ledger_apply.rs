//! `cargo fuzz run ledger_apply`: see `ledger_apply` in `fuzz/bodies.rs`.
#![no_main]

#[path = "../bodies.rs"]
#[allow(dead_code)] // each target runs one of the bodies
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::ledger_apply(data);
});
