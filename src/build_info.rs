//! What this build is: version, git revision and compiler, for `--version` and
//! `workspacesweb_exporter_build_info` (`build.rs` sets the last two).

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git revision of this build (`unknown` outside a checkout).
pub const REVISION: &str = env!("WORKSPACESWEB_REVISION");
/// rustc version this build was compiled with.
pub const RUSTC_VERSION: &str = env!("WORKSPACESWEB_RUSTC_VERSION");
