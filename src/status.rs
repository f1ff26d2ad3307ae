//! What the process says about itself: readiness (the portals this replica owns, which of them
//! have finished a first poll, the discovery sources still to list once), health (the control
//! loop alive), the outcome of the last configuration load, the failed state writes, and how the
//! process runs (config file, dashboard link, shard: the landing page's [`Setup`]).
//!
//! One change signal for all of it and for the portal snapshots of the snapshot store
//! (`snapshot::Store`, which holds the one [`Status`] of the process): [`Status::version`] moves, and
//! [`Status::subscribe`] wakes, with every change that can alter `/metrics`, `/-/ready` or the
//! landing page.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

/// Outcome of the last configuration (re)load.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReloadStatus {
    /// Whether the last load succeeded.
    pub successful: bool,
    /// Unix time of the last successful load, in seconds.
    pub success_unix: f64,
}

/// What the exporter-level series show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExporterStatus {
    /// Outcome of the last configuration load.
    pub reload: ReloadStatus,
    /// Failed state writes; `None` without `--storage.path`.
    pub state_write_errors: Option<u64>,
    /// When the exporter started (the created timestamp of its own counters), Unix milliseconds.
    pub started_ms: i64,
}

impl From<ReloadStatus> for ExporterStatus {
    fn from(reload: ReloadStatus) -> Self {
        ExporterStatus {
            reload,
            state_write_errors: None,
            started_ms: 0,
        }
    }
}

/// This replica's shard of the portals (`sharding:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This replica's index, below `total`.
    pub index: u32,
    /// Replicas sharing the portals (1: not sharded).
    pub total: u32,
}

/// How this process runs, as the landing page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// The configuration file (`--config.file`); `None` with `--demo`.
    pub config_file: Option<String>,
    /// The dashboard link (`--web.dashboard-url`), when set.
    pub dashboard_url: Option<String>,
    /// The shard in force; `None` until the control loop starts.
    pub shard: Option<Shard>,
}

/// What `/-/ready` still waits for; all zero and `false` once ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waiting {
    /// The control loop has yet to declare the portals this replica owns.
    pub portals_undeclared: bool,
    /// Owned portals yet to finish their first poll.
    pub first_polls: usize,
    /// Discovery sources yet to finish their first listing.
    pub first_listings: usize,
}

/// Readiness, health, reload outcome and state write errors of the process, with the one change
/// signal (see the module docs).
#[derive(Debug)]
pub struct Status {
    state: RwLock<Readiness>,
    setup: RwLock<Setup>,
    reload: RwLock<ReloadStatus>,
    /// Failed state writes; `None` without `--storage.path`.
    state_write_errors: RwLock<Option<u64>>,
    /// When the exporter started (see [`ExporterStatus::started_ms`]).
    started_ms: i64,
    /// Set when the control loop died (a panic): `/-/healthy` then fails.
    failed: AtomicBool,
    /// The version, bumped by every change; receivers wake on it.
    changes: watch::Sender<u64>,
}

/// What `/-/ready` waits for.
#[derive(Debug, Default)]
struct Readiness {
    /// The portals this replica polls; `None` until the control loop first declares them.
    owned: Option<BTreeSet<String>>,
    /// Owned portals that have yet to finish their first poll.
    unpolled: BTreeSet<String>,
    /// Discovery sources that have not finished their first listing.
    discovery_pending: usize,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: RwLock::default(),
            setup: RwLock::default(),
            reload: RwLock::default(),
            state_write_errors: RwLock::default(),
            started_ms: crate::clock::now_ms(),
            failed: AtomicBool::new(false),
            changes: watch::Sender::new(0),
        }
    }
}

impl Status {
    /// Signals a change: the version moves and every receiver wakes.
    pub fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A number that changes whenever the exposition, readiness or the landing page may have
    /// changed.
    pub fn version(&self) -> u64 {
        *self.changes.borrow()
    }

    /// A receiver notified of every change (the background renderer and readiness waiters).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits until `pred` holds, re-checking it after every change.
    pub async fn wait_for(&self, mut pred: impl FnMut() -> bool) {
        let mut rx = self.subscribe();
        loop {
            rx.mark_unchanged();
            if pred() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Declares the portals this replica polls, `polled` saying which have finished a first
    /// poll; `/-/ready` waits for the others. The snapshot store calls it and
    /// [`set_polled`](Self::set_polled) while it holds its portals, and signals the change.
    pub(crate) fn declare_owned(&self, ids: BTreeSet<String>, polled: impl Fn(&str) -> bool) {
        let mut r = write(&self.state);
        r.unpolled = ids.iter().filter(|id| !polled(id)).cloned().collect();
        r.owned = Some(ids);
    }

    /// Records whether an owned portal has finished its first poll (a restarted task has not).
    pub(crate) fn set_polled(&self, portal_id: &str, polled: bool) {
        let mut r = write(&self.state);
        if !r.owned.as_ref().is_some_and(|o| o.contains(portal_id)) {
            return;
        }
        if polled {
            r.unpolled.remove(portal_id);
        } else {
            r.unpolled.insert(portal_id.to_string());
        }
    }

    /// Records how many discovery sources have yet to finish their first listing.
    pub fn set_discovery_pending(&self, pending: usize) {
        write(&self.state).discovery_pending = pending;
        self.changed();
    }

    /// True once the owned portals are declared, every discovery source listed once and every
    /// owned portal finished its first poll (the server answers before the control loop starts).
    pub fn ready(&self) -> bool {
        let r = read(&self.state);
        r.discovery_pending == 0 && r.owned.is_some() && r.unpolled.is_empty()
    }

    /// How many owned portals have yet to finish their first poll.
    pub fn first_polls_pending(&self) -> usize {
        read(&self.state).unpolled.len()
    }

    /// What readiness still waits for.
    pub fn waiting(&self) -> Waiting {
        let r = read(&self.state);
        Waiting {
            portals_undeclared: r.owned.is_none(),
            first_polls: r.unpolled.len(),
            first_listings: r.discovery_pending,
        }
    }

    /// Records how this process runs (the shard in force is kept).
    pub fn set_setup(&self, setup: Setup) {
        {
            let mut s = write(&self.setup);
            *s = Setup {
                shard: s.shard,
                ..setup
            };
        }
        self.changed();
    }

    /// Records the shard in force (at start and after each reload).
    pub fn set_shard(&self, shard: Shard) {
        write(&self.setup).shard = Some(shard);
        self.changed();
    }

    /// How this process runs.
    pub fn setup(&self) -> Setup {
        read(&self.setup).clone()
    }

    /// Marks the exporter as broken for good (its control loop died): `/-/healthy` fails.
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
        self.changed();
    }

    /// False once [`set_failed`](Self::set_failed) was called.
    pub fn healthy(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
    }

    /// Records the outcome of a configuration load.
    pub fn set_reload(&self, status: ReloadStatus) {
        *write(&self.reload) = status;
        self.changed();
    }

    /// Outcome of the last configuration load.
    pub fn reload(&self) -> ReloadStatus {
        *read(&self.reload)
    }

    /// Records how many state writes failed so far (`Some(0)` declares durable state on).
    pub fn set_state_write_errors(&self, errors: u64) {
        {
            let mut e = write(&self.state_write_errors);
            if *e == Some(errors) {
                return;
            }
            *e = Some(errors);
        }
        self.changed();
    }

    /// The exporter-level series: reload outcome and state write errors.
    pub fn exporter(&self) -> ExporterStatus {
        ExporterStatus {
            reload: self.reload(),
            state_write_errors: *read(&self.state_write_errors),
            started_ms: self.started_ms,
        }
    }
}

// A poisoned lock is recovered, never skipped: every write guarded here replaces or edits the
// data in one step that cannot panic halfway, so the data behind a poisoned lock is consistent.
// Skipping would freeze (writes dropped) or empty (reads defaulted) `/metrics` after one panic
// anywhere; the one way this crate handles poisoning is `unwrap_or_else(PoisonError::into_inner)`.
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ready_once_every_owned_portal_polled_and_every_source_listed() {
        let status = Status::default();
        assert!(!status.ready(), "nothing declared yet");
        status.declare_owned(owned(&[]), |_| false);
        assert!(status.ready(), "owning nothing is ready");
        status.declare_owned(owned(&["p1", "p2"]), |id| id == "p1");
        assert_eq!(status.first_polls_pending(), 1);
        status.set_polled("p2", true);
        assert!(status.ready());
        status.set_polled("p9", false);
        assert!(status.ready(), "a portal not owned does not count");
        status.set_polled("p1", false);
        assert!(!status.ready(), "a restarted task has to poll again");
        status.set_polled("p1", true);
        status.set_discovery_pending(1);
        assert!(!status.ready(), "a discovery source has yet to list");
        status.set_discovery_pending(0);
        assert!(status.ready());
    }

    #[test]
    fn waiting_says_what_readiness_waits_for() {
        let status = Status::default();
        assert_eq!(
            status.waiting(),
            Waiting {
                portals_undeclared: true,
                ..Waiting::default()
            }
        );
        status.declare_owned(owned(&["p1", "p2", "p3"]), |id| id == "p1");
        status.set_discovery_pending(1);
        assert_eq!(
            status.waiting(),
            Waiting {
                portals_undeclared: false,
                first_polls: 2,
                first_listings: 1
            }
        );
    }

    #[test]
    fn the_setup_keeps_the_shard_in_force() {
        let status = Status::default();
        status.set_shard(Shard { index: 1, total: 3 });
        let version = status.version();
        status.set_setup(Setup {
            config_file: Some("a.yaml".into()),
            dashboard_url: None,
            shard: None,
        });
        assert_ne!(status.version(), version);
        assert_eq!(status.setup().shard, Some(Shard { index: 1, total: 3 }));
        assert_eq!(status.setup().config_file.as_deref(), Some("a.yaml"));
    }

    /// Every change moves the version and wakes a receiver; the reload outcome and the state
    /// write errors included (before, they moved the version only, so the background renderer
    /// never woke for them).
    #[test]
    fn every_change_is_one_signal() {
        let status = Status::default();
        let mut rx = status.subscribe();
        let changes: [&dyn Fn(&Status); 4] = [
            &|s| s.set_reload(ReloadStatus::default()),
            &|s| s.set_state_write_errors(1),
            &|s| s.set_discovery_pending(0),
            &|s| s.set_failed(),
        ];
        for change in changes {
            let before = status.version();
            rx.mark_unchanged();
            change(&status);
            assert_ne!(status.version(), before);
            assert!(rx.has_changed().unwrap_or(false));
        }
        let before = status.version();
        status.set_state_write_errors(1);
        assert_eq!(status.version(), before, "the same count is no change");
    }

    #[test]
    fn a_poisoned_status_still_answers_and_records() {
        let status = std::sync::Arc::new(Status::default());
        let s = std::sync::Arc::clone(&status);
        let outcome = std::thread::spawn(move || {
            let _r = s.state.write();
            let _l = s.reload.write();
            let _e = s.state_write_errors.write();
            panic!("a panic while every status lock is held");
        })
        .join();
        assert!(outcome.is_err() && status.state.is_poisoned());
        status.declare_owned(owned(&["p1"]), |_| true);
        assert!(status.ready());
        status.set_reload(ReloadStatus {
            successful: true,
            success_unix: 42.0,
        });
        assert_eq!(status.reload().success_unix, 42.0);
        status.set_state_write_errors(3);
        assert_eq!(status.exporter().state_write_errors, Some(3));
    }
}
