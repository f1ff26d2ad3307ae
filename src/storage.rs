//! The durable state directory of `--storage.path`: one lock per directory, one state file per
//! portal written atomically, bad files set aside, old files pruned. Knows files, not ledgers:
//! what a state file holds is `poll::state`'s business.
//!
//! Model: Prometheus TSDB. A lock file held for the life of the process (a second process exits
//! naming the holder's pid); writes go to a temp file that is fsynced, renamed over the state
//! file, and followed by an fsync of the directory, so a crash at any point leaves either the
//! previous state or the new one; a file that cannot be used is renamed `*.corrupt`, never deleted.
//!
//! The directory is trusted only when no one else can write to it: it must belong to the user the
//! exporter runs as and be writable by no one else (SPEC section 14; the one exception is a group
//! that is the exporter's own, as Kubernetes' `fsGroup` leaves it, see [`StateDir::open`]). Even
//! so, no file in it is followed through a symbolic link: the lock file and state files are opened
//! with `O_NOFOLLOW`, temp files are created with `O_EXCL` (never an existing file or link), and a
//! state file over [`MAX_STATE_FILE_BYTES`] is set aside unread.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
/// Largest state file read: a larger one is set aside unread (64 MiB; a portal with 25,000 users
/// writes about 1 MB, see BENCHMARKS.md).
pub const MAX_STATE_FILE_BYTES: u64 = 64 << 20;

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
    /// The directory is not safe to trust: others can write to it, or it belongs to another user.
    #[error("storage path {path}: {reason}; refusing to keep state there")]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong, naming the mode or the owner.
        reason: String,
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
    /// Creates the directory (0700) if missing, checks that no one else can write to it, takes
    /// its lock, checks that it can be written and removes the temp files a crash may have left.
    ///
    /// An existing directory is refused when it belongs to another user, is writable by others,
    /// or is writable by a group other than the exporter's own effective group. A group-writable
    /// directory of the exporter's own group is accepted: that is what Kubernetes makes of a
    /// volume with `fsGroup` (the group of the pod, which runs as that group), where no other
    /// user shares the group.
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
        check_trusted(&path)?;
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
            .custom_flags(libc::O_NOFOLLOW)
            .open(path.join(LOCK_FILE))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => StorageError::Unsafe {
                    path: path.clone(),
                    reason: format!("the lock file {LOCK_FILE} is a symbolic link"),
                },
                _ => write_err(e),
            })?;
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

    /// The bytes of a portal's state file; `None` when there is none. A symbolic link, anything
    /// but a regular file, or a file over [`MAX_STATE_FILE_BYTES`] is an error (read no further).
    pub fn read(&self, portal_id: &str) -> io::Result<Option<Vec<u8>>> {
        let file = OpenOptions::new()
            .read(true)
            // O_NONBLOCK: opening a FIFO planted in place of the file must not block.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.state_file(portal_id));
        let file = match file {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(io::Error::other("the state file is a symbolic link"));
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other("the state file is not a regular file"));
        }
        if meta.len() > MAX_STATE_FILE_BYTES {
            return Err(io::Error::other(format!(
                "the state file has {} bytes, over the limit of {} MiB",
                meta.len(),
                MAX_STATE_FILE_BYTES >> 20
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // Bounded even if the file grows while it is read.
        file.take(MAX_STATE_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
            return Err(io::Error::other(format!(
                "the state file grew over the limit of {} MiB",
                MAX_STATE_FILE_BYTES >> 20
            )));
        }
        Ok(Some(bytes))
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

    /// Temp file, fsync, rename over `name`, fsync of the directory. The temp file is always a
    /// new file (`O_EXCL`, `O_NOFOLLOW`): whatever is in its place (a crash's leftover, a link
    /// someone planted) is unlinked first, never written through.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.path.join(format!(".{name}{TEMP_SUFFIX}"));
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
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

/// Refuses a directory that someone other than this process's user could write to (see
/// [`StateDir::open`]); the reason names the mode or the owner.
fn check_trusted(path: &Path) -> Result<(), StorageError> {
    let meta = fs::metadata(path).map_err(|source| StorageError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    let unsafe_dir = |reason: String| StorageError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    let mode = meta.mode() & 0o7777;
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "the directory belongs to uid {}, the exporter runs as uid {uid}",
            meta.uid()
        )));
    }
    if mode & 0o002 != 0 {
        return Err(unsafe_dir(format!(
            "the directory is writable by every user (mode {mode:04o}); make it 0700"
        )));
    }
    if mode & 0o020 != 0 && meta.gid() != gid {
        return Err(unsafe_dir(format!(
            "the directory is writable by group {} (mode {mode:04o}), not the exporter's group \
             {gid}; make it 0700",
            meta.gid()
        )));
    }
    Ok(())
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
    fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(LOCK_FILE)).unwrap();
        let err = StateDir::open(&dir).unwrap_err();
        assert!(matches!(err, StorageError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn a_temp_file_planted_as_a_symlink_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("state")).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".p.state.tmp")).unwrap();
        dir.write("p", b"state").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(dir.state_file("p")).unwrap(), b"state");
        assert!(
            !fs::symlink_metadata(dir.state_file("p"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn a_state_file_that_is_a_symlink_or_a_fifo_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&tmp.path().join("state")).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        fs::write(&elsewhere, b"{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.state_file("p")).unwrap();
        let err = dir.read("p").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let fifo =
            std::ffi::CString::new(dir.state_file("q").into_os_string().into_encoded_bytes())
                .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = dir.read("q").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_huge_state_file_is_refused_unread() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        // Sparse: 200 MB that take no disk and would take 200 MB of memory if read.
        File::create(dir.state_file("p"))
            .unwrap()
            .set_len(200_000_000)
            .unwrap();
        let err = dir.read("p").unwrap_err();
        assert!(
            err.to_string().contains("over the limit of 64 MiB"),
            "{err}"
        );
        // Exactly at the limit is still read.
        File::create(dir.state_file("q"))
            .unwrap()
            .set_len(MAX_STATE_FILE_BYTES)
            .unwrap();
        assert_eq!(
            dir.read("q").unwrap().map(|b| b.len() as u64),
            Some(MAX_STATE_FILE_BYTES)
        );
    }

    #[test]
    fn a_directory_others_can_write_to_is_refused_naming_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o777, 0o1777, 0o707] {
            let dir = tmp.path().join(format!("d{mode:o}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let err = StateDir::open(&dir).unwrap_err();
            assert!(matches!(err, StorageError::Unsafe { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("mode {mode:04o}")), "{msg}");
            assert!(msg.contains(&dir.display().to_string()), "{msg}");
            assert!(!dir.join(LOCK_FILE).exists(), "nothing written to {mode:o}");
        }
    }

    #[test]
    fn a_group_writable_directory_is_accepted_only_for_the_exporters_own_group() {
        let tmp = tempfile::tempdir().unwrap();
        // SAFETY: getegid cannot fail.
        let own = unsafe { libc::getegid() };
        // Kubernetes' fsGroup: group-writable and setgid, the group being the pod's own.
        let k8s = tmp.path().join("fsgroup");
        fs::create_dir(&k8s).unwrap();
        fs::set_permissions(&k8s, fs::Permissions::from_mode(0o2770)).unwrap();
        std::os::unix::fs::chown(&k8s, None, Some(own)).unwrap();
        StateDir::open(&k8s).unwrap();
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return; // changing a directory's group to one we are not in needs root
        }
        let other = tmp.path().join("othergroup");
        fs::create_dir(&other).unwrap();
        fs::set_permissions(&other, fs::Permissions::from_mode(0o770)).unwrap();
        std::os::unix::fs::chown(&other, None, Some(own + 4242)).unwrap();
        let err = StateDir::open(&other).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mode 0770") && msg.contains(&format!("group {}", own + 4242)),
            "{msg}"
        );
        // Readable but not writable by that group is fine.
        fs::set_permissions(&other, fs::Permissions::from_mode(0o750)).unwrap();
        StateDir::open(&other).unwrap();
    }

    #[test]
    fn a_directory_of_another_user_is_refused_naming_the_owner() {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        if uid != 0 {
            return; // giving a directory away needs root (CI runs as root)
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
        let err = StateDir::open(&dir).unwrap_err();
        assert!(err.to_string().contains("belongs to uid 4242"), "{err}");
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
