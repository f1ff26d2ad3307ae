//! Records the git revision and rustc version for `workspacesweb_exporter_build_info`.
use std::path::Path;
use std::process::Command;

#[path = "build/revision.rs"]
mod revision;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let revision = std::env::var("WORKSPACESWEB_REVISION")
        .ok()
        .or_else(|| revision::git(Path::new("."), &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WORKSPACESWEB_REVISION={revision}");
    println!("cargo:rustc-env=WORKSPACESWEB_RUSTC_VERSION={rustc_version}");
    println!("cargo:rerun-if-env-changed=WORKSPACESWEB_REVISION");
    for path in revision::watched_paths(Path::new(".")) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/revision.rs");
}
