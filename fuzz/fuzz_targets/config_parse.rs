//! `cargo fuzz run config_parse`: see `workspacesweb_exporter::fuzzing::config_parse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    workspacesweb_exporter::fuzzing::config_parse(data);
});
