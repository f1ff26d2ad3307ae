//! The git files whose change means a new revision: HEAD, the directory of the branch it names,
//! and `packed-refs`. Shared by `build.rs` and its test.
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `git` in `dir` and returns its trimmed, non-empty standard output.
pub fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Existing paths that change when `HEAD` moves: a checkout, a commit or a fetch-and-pack.
pub fn watched_paths(dir: &Path) -> Vec<PathBuf> {
    let git_path = |name: &str| git(dir, &["rev-parse", "--git-path", name]).map(|p| dir.join(p));
    let mut paths: Vec<PathBuf> = Vec::new();
    paths.extend(git_path("HEAD"));
    // A commit rewrites the branch's loose ref (write to `<ref>.lock`, then rename), never HEAD
    // itself; watch the ref's directory, so a ref that is only packed yet is seen when it appears.
    let branch = git(dir, &["symbolic-ref", "-q", "HEAD"]).and_then(|b| git_path(&b));
    paths.extend(branch.and_then(|p| p.parent().map(Path::to_path_buf)));
    paths.extend(git_path("packed-refs"));
    paths.retain(|p| p.exists());
    paths
}
