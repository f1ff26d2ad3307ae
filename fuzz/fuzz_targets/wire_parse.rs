//! `cargo fuzz run wire_parse`: see `workspacesweb_exporter::fuzzing::wire_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    workspacesweb_exporter::fuzzing::wire_parse(data);
});
