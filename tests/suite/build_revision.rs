//! `build.rs` rebuilds when the revision moves: every git file a commit, a checkout or a
//! `pack-refs` writes is watched (before, only `.git/HEAD` was, and `--version` kept naming the
//! revision of the first build after a commit).
#[path = "../../build/revision.rs"]
mod revision;

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// A repository with one commit on `main`.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    git(dir.path(), &["init", "-q"]);
    std::fs::write(dir.path().join("f"), "1").expect("write");
    git(dir.path(), &["add", "f"]);
    git(dir.path(), &["commit", "-q", "-m", "one"]);
    dir
}

fn covered(watched: &[PathBuf], file: &Path) -> bool {
    let file = file.canonicalize().expect("written file exists");
    watched
        .iter()
        .any(|w| file.starts_with(w.canonicalize().expect("watched path exists")))
}

fn commit(dir: &Path, content: &str) {
    std::fs::write(dir.join("f"), content).expect("write");
    git(dir, &["commit", "-q", "-am", content]);
}

#[test]
fn a_commit_writes_a_watched_file() {
    let repo = repository();
    let watched = revision::watched_paths(repo.path());
    commit(repo.path(), "2");
    let branch = repo.path().join(".git/refs/heads/main");
    assert!(branch.exists(), "git wrote the loose ref");
    assert!(covered(&watched, &branch), "{branch:?} not in {watched:?}");
    assert!(covered(&watched, &repo.path().join(".git/HEAD")));
}

#[test]
fn packed_refs_are_watched() {
    let repo = repository();
    git(repo.path(), &["pack-refs", "--all"]);
    let watched = revision::watched_paths(repo.path());
    assert!(covered(&watched, &repo.path().join(".git/packed-refs")));
    // The branch is only packed now; the commit that writes it loose again is still seen.
    commit(repo.path(), "2");
    assert!(covered(&watched, &repo.path().join(".git/refs/heads/main")));
}

#[test]
fn a_worktree_watches_its_own_head_and_the_shared_branch() {
    let repo = repository();
    let tree = repo.path().join("tree");
    git(
        repo.path(),
        &["worktree", "add", "-q", "-b", "topic", "tree"],
    );
    let watched = revision::watched_paths(&tree);
    commit(&tree, "2");
    assert!(covered(
        &watched,
        &repo.path().join(".git/worktrees/tree/HEAD")
    ));
    assert!(covered(
        &watched,
        &repo.path().join(".git/refs/heads/topic")
    ));
}

#[test]
fn outside_a_repository_nothing_is_watched() {
    // A packaged crate unpacked outside any repository: nothing to watch, and no panic.
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(revision::watched_paths(dir.path()), Vec::<PathBuf>::new());
}
