//! `cargo fuzz run ledger_apply`: see `workspacesweb_exporter::fuzzing::ledger_apply`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    workspacesweb_exporter::fuzzing::ledger_apply(data);
});
