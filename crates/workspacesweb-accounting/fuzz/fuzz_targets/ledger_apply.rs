//! `cargo fuzz run ledger_apply`: see `ledger_apply` in `bodies.rs`.
#![no_main]

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bodies::ledger_apply(data);
});
