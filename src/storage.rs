//! The durable state directory of `--storage.path`: one lock per directory, one state file per
//! portal written atomically, bad files set aside, old files pruned. Knows files, not ledgers:
//! what a state file holds is `poll::state`'s business.
//!
//! Model: Prometheus TSDB. A lock file held for the life of the process (a second process exits
//! naming the holder's pid); writes go to a temp file that is fsynced, renamed over the state
//! file, and followed by an fsync of the directory, so a crash at any point leaves either the
//! previous state or the new one; a file that cannot be used is renamed `*.corrupt`, never deleted.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

/// Name of the lock file inside the directory.
pub const LOCK_FILE: &str = "lock";
/// Suffix of state files.
pub const STATE_SUFFIX: &str = ".state";
/// Suffix of files set aside.
pub const CORRUPT_SUFFIX: &str = ".corrupt";
/// `storage.max_age` until the configuration says otherwise.
pub const DEFAULT_MAX_AGE: Duration = crate::config::DEFAULT_STATE_MAX_AGE;
/// Suffix of temp files (removed at startup: what a crash mid-write left).
const TEMP_SUFFIX: &str = ".tmp";

/// Why the state directory cannot be used at startup.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory could not be created or is not a directory.
    #[error("storage path {path}: cannot create the directory: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another process holds the lock.
    #[error(
        "storage path {path} is in use by another exporter (pid {pid}); one process per directory"
    )]
    Locked {
        /// The directory.
        path: PathBuf,
        /// The holder's pid, as it wrote it (`unknown` when unreadable).
        pid: String,
    },
    /// The directory cannot be written.
    #[error("storage path {path}: cannot write: {source}")]
    Write {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Held (and locked) for the life of the process; the lock goes with the file descriptor.
    _lock: File,
    write_errors: AtomicU64,
    /// `storage.max_age` in milliseconds (the config can change it on reload).
    max_age_ms: AtomicU64,
}

impl StateDir {
    /// Creates the directory (0700) if missing, takes its lock, checks that it can be written
    /// and removes the temp files a crash may have left.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let path = path.to_path_buf();
        if !path.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|source| StorageError::Create {
                    path: path.clone(),
                    source,
                })?;
        }
        let write_err = |source| StorageError::Write {
            path: path.clone(),
            source,
        };
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path.join(LOCK_FILE))
            .map_err(write_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StorageError::Locked {
                    path,
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(write_err(e)),
        }
        lock.set_len(0).map_err(write_err)?;
        lock.write_all(format!("{}\n", std::process::id()).as_bytes())
            .and_then(|()| lock.sync_all())
            .map_err(write_err)?;
        let dir = StateDir {
            path: path.clone(),
            _lock: lock,
            write_errors: AtomicU64::new(0),
            max_age_ms: AtomicU64::new(
                u64::try_from(DEFAULT_MAX_AGE.as_millis()).unwrap_or(u64::MAX),
            ),
        };
        dir.remove_temp_files();
        dir.write_atomic(".probe", b"probe").map_err(write_err)?;
        fs::remove_file(path.join(".probe")).map_err(write_err)?;
        Ok(dir)
    }

    /// Sets `storage.max_age`: older state files no longer resume their portal.
    pub fn set_max_age(&self, max_age: Duration) {
        let ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.max_age_ms.store(ms, Ordering::Relaxed);
    }

    /// `storage.max_age`.
    pub fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms.load(Ordering::Relaxed))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of a portal's state file.
    pub fn state_file(&self, portal_id: &str) -> PathBuf {
        self.path.join(format!("{portal_id}{STATE_SUFFIX}"))
    }

    /// The bytes of a portal's state file; `None` when there is none.
    pub fn read(&self, portal_id: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.state_file(portal_id)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Renames a portal's unusable state file to `<file>.<unix_ms>.corrupt` (kept for a human to
    /// look at) and logs why; returns the new path.
    pub fn set_aside(&self, portal_id: &str, reason: &str) -> Option<PathBuf> {
        let from = self.state_file(portal_id);
        let stamp = crate::clock::now_ms();
        let to = self
            .path
            .join(format!("{portal_id}{STATE_SUFFIX}.{stamp}{CORRUPT_SUFFIX}"));
        match fs::rename(&from, &to) {
            Ok(()) => {
                warn!(portal_id, file = %from.display(), moved_to = %to.display(), reason, "state file cannot be used; set aside, the portal starts fresh");
                Some(to)
            }
            Err(e) => {
                warn!(portal_id, file = %from.display(), reason, error = %e, "state file cannot be used nor set aside; the portal starts fresh");
                None
            }
        }
    }

    /// Replaces a portal's state file with `bytes`, atomically and durably. A failure is counted
    /// in [`write_errors`](Self::write_errors) and returned.
    pub fn write(&self, portal_id: &str, bytes: &[u8]) -> io::Result<()> {
        let result = self.write_atomic(&format!("{portal_id}{STATE_SUFFIX}"), bytes);
        if result.is_err() {
            self.write_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// State writes that failed since the process started.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Deletes state files older than `max_age` (by modification time) of portals not in `keep`,
    /// and temp files; returns how many state files went.
    pub fn prune(&self, max_age: Duration, keep: &dyn Fn(&str) -> bool) -> usize {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return 0;
        };
        let now = SystemTime::now();
        let mut pruned = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(portal_id) = name.to_str().and_then(|n| n.strip_suffix(STATE_SUFFIX)) else {
                continue;
            };
            if keep(portal_id) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > max_age);
            if old && fs::remove_file(entry.path()).is_ok() {
                info!(portal_id, max_age = ?max_age, "pruned the state of a portal no longer polled");
                pruned += 1;
            }
        }
        pruned
    }

    /// Temp file, fsync, rename over `name`, fsync of the directory.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.path.join(format!(".{name}{TEMP_SUFFIX}"));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, self.path.join(name))?;
            File::open(&self.path)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn remove_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(TEMP_SUFFIX))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_the_directory_0700_and_writes_files_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b");
        let dir = StateDir::open(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        dir.write("p", b"one").unwrap();
        dir.write("p", b"two").unwrap();
        let file = dir.state_file("p");
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(dir.read("p").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(dir.read("q").unwrap(), None);
        assert_eq!(dir.write_errors(), 0);
    }

    #[test]
    fn a_second_open_names_the_holder_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = StateDir::open(tmp.path()).unwrap();
        let err = StateDir::open(tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }

    #[test]
    fn the_lock_is_released_with_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        drop(StateDir::open(tmp.path()).unwrap());
        StateDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_path_under_a_file_cannot_be_opened() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("file"), b"x").unwrap();
        let err = StateDir::open(&tmp.path().join("file/state")).unwrap_err();
        assert!(matches!(err, StorageError::Create { .. }), "{err}");
    }

    #[test]
    fn a_failed_write_is_counted_and_keeps_the_previous_state() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.write("p", b"good").unwrap();
        // A non-empty directory in place of the temp file's target makes the rename fail.
        fs::remove_file(dir.state_file("p")).unwrap();
        fs::create_dir(dir.state_file("p")).unwrap();
        fs::write(dir.state_file("p").join("x"), b"x").unwrap();
        assert!(dir.write("p", b"new").is_err());
        assert_eq!(dir.write_errors(), 1);
        assert!(!tmp.path().join(".p.state.tmp").exists());
    }

    #[test]
    fn set_aside_keeps_the_bad_file_under_a_corrupt_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.write("p", b"garbage").unwrap();
        let moved = dir.set_aside("p", "test").unwrap();
        assert!(moved.to_string_lossy().ends_with(CORRUPT_SUFFIX));
        assert_eq!(fs::read(moved).unwrap(), b"garbage");
        assert_eq!(dir.read("p").unwrap(), None);
    }

    #[test]
    fn temp_files_of_a_crash_are_removed_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(".p.state.tmp"), b"half").unwrap();
        let _dir = StateDir::open(tmp.path()).unwrap();
        assert!(!tmp.path().join(".p.state.tmp").exists());
    }

    #[test]
    fn prune_removes_only_old_files_of_portals_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        for p in ["kept", "gone", "young"] {
            dir.write(p, b"x").unwrap();
        }
        let old = SystemTime::now() - Duration::from_secs(3600);
        for p in ["kept", "gone"] {
            File::options()
                .write(true)
                .open(dir.state_file(p))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let n = dir.prune(Duration::from_secs(60), &|id| id == "kept");
        assert_eq!(n, 1);
        assert!(dir.state_file("kept").exists());
        assert!(!dir.state_file("gone").exists());
        assert!(dir.state_file("young").exists());
    }
}
