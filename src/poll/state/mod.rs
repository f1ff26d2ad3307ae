//! A portal's durable state (`--storage.path`): restoring the poller from its state file at start,
//! and saving it after each successful poll. What the file holds, and the checks it passes before
//! it resumes a portal, are in `format.rs`.

mod format;
mod v1;

use std::sync::Arc;

use tracing::{debug, info, warn};

pub use format::{
    LabelFingerprint, MAX_WATERMARK_AGE_MS, PortalState, Resumed, STATE_VERSION, Unusable, decode,
    encode, to_json,
};

use super::PortalPlan;
use crate::clock::now_ms;
use crate::ledger::Ledger;
use crate::session::UnixMillis;
use crate::snapshot::{PortalSnapshot, StateStatus, Store};
use crate::storage::StateDir;
use crate::users::UserLabels;

/// One portal's state file in the state directory, and whether its writes fail.
#[derive(Debug)]
pub(super) struct StateFile {
    dir: Arc<StateDir>,
    /// Whether the last write failed (a warning is logged on the first failure only).
    failing: bool,
}

/// What a state write records of a portal.
pub(super) struct ToSave<'a> {
    /// The portal.
    pub(super) plan: &'a PortalPlan,
    /// Its ledger.
    pub(super) ledger: &'a Ledger,
    /// Start of the last successful poll: the next Terminated scan reaches back to it.
    pub(super) watermark_ms: UnixMillis,
    /// Whether the month's backfill is complete.
    pub(super) backfill_done: bool,
    /// Its label slots, with per-user series.
    pub(super) users: Option<&'a UserLabels>,
}

impl ToSave<'_> {
    /// The state as its file holds it (also the portal's checkpoint across a panic).
    pub(super) fn encode(&self) -> std::io::Result<Arc<Vec<u8>>> {
        encode(&PortalState {
            version: STATE_VERSION,
            portal_id: self.plan.portal_id.clone(),
            written_at_ms: now_ms(),
            t0_ms: self.ledger.t0_ms(),
            watermark_ms: self.watermark_ms,
            backfill_done: self.backfill_done,
            keys: LabelFingerprint::of_keys(self.plan.per_user.as_ref()),
            ledger: self.ledger.view(),
            users: self.users.map(UserLabels::view),
        })
        .map(Arc::new)
    }
}

impl StateFile {
    /// The state file of a portal in `dir`.
    pub(super) fn new(dir: Arc<StateDir>) -> Self {
        StateFile {
            dir,
            failing: false,
        }
    }

    /// T0, every counter and the watermark from the portal's state file, when there is a usable
    /// one; an unusable one is set aside (an expired one is only ignored: the next write
    /// replaces it).
    ///
    /// The resumed counters are published by the first poll, not at once: if the previous process
    /// failed to write its last states, it published more than the file holds, and publishing the
    /// file's values would show Prometheus a dip (a reset). The first poll re-observes everything
    /// since the stored watermark, so its values are at least what any earlier process
    /// published; a few seconds without the series cost Prometheus nothing.
    pub(super) async fn restore(&self, plan: &PortalPlan) -> Option<Resumed> {
        let dir = self.dir.clone();
        let portal_id = plan.portal_id.clone();
        let read = {
            let (dir, id) = (dir.clone(), portal_id.clone());
            tokio::task::spawn_blocking(move || dir.read(&id)).await
        };
        let bytes = match read {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) | Err(_) => return None,
            Ok(Err(e)) => {
                let reason = format!("cannot read: {e}");
                let _ =
                    tokio::task::spawn_blocking(move || dir.set_aside(&portal_id, &reason)).await;
                return None;
            }
        };
        let max_age_ms = i64::try_from(dir.max_age().as_millis()).unwrap_or(i64::MAX);
        let resumed = decode(
            &bytes,
            &portal_id,
            &plan.ledger_settings(),
            plan.per_user.as_ref(),
            now_ms(),
            max_age_ms,
        );
        match resumed {
            Ok(r) => {
                if let Some(what) = &r.converted {
                    info!(portal_id = %portal_id, file = %dir.state_file(&portal_id).display(), converted = %what, "state file converted to the current format");
                }
                info!(portal_id = %portal_id, t0_ms = r.ledger.t0_ms(), watermark_ms = r.watermark_ms, started = r.ledger.totals().started, terminated = r.ledger.totals().terminated, "resumed from the state file");
                Some(r)
            }
            Err(Unusable::Expired { age_s }) => {
                info!(portal_id = %portal_id, file = %dir.state_file(&portal_id).display(), age_s, "state file older than storage.max_age; the portal starts fresh");
                None
            }
            Err(Unusable::Bad(reason)) => {
                let _ =
                    tokio::task::spawn_blocking(move || dir.set_aside(&portal_id, &reason)).await;
                None
            }
        }
    }

    /// Writes the portal's accounting state (`encoded` by [`ToSave::encode`]), and records the
    /// outcome: the time of the write in `snapshot`, the state directory's failed writes so far
    /// in `store`. A failure is logged; polling goes on.
    pub(super) async fn save(
        &mut self,
        portal_id: &str,
        encoded: std::io::Result<Arc<Vec<u8>>>,
        snapshot: &mut PortalSnapshot,
        store: &Store,
    ) {
        if self.write(portal_id, encoded).await {
            let status = snapshot.state.get_or_insert_with(StateStatus::default);
            status.last_write_unix = Some(now_ms() as f64 / 1000.0);
        }
        store
            .status()
            .set_state_write_errors(self.dir.write_errors());
    }

    /// Writes the portal's encoded state (serialized on the poll task, borrowing the ledger: no
    /// copy of its sessions; only the bytes go to the blocking pool for the write and its
    /// fsyncs); returns whether it was written.
    async fn write(&mut self, portal_id: &str, encoded: std::io::Result<Arc<Vec<u8>>>) -> bool {
        let result = match encoded {
            Ok(bytes) => {
                let dir = self.dir.clone();
                let id = portal_id.to_string();
                tokio::task::spawn_blocking(move || dir.write(&id, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
            Err(e) => Err(e),
        };
        let file = self.dir.state_file(portal_id);
        match result {
            Ok(()) => {
                if self.failing {
                    info!(portal_id = %portal_id, "state file written again");
                }
                self.failing = false;
                true
            }
            Err(e) => {
                if self.failing {
                    debug!(portal_id = %portal_id, file = %file.display(), error = %e, "state write failed again");
                } else {
                    warn!(portal_id = %portal_id, file = %file.display(), error = %e, "state write failed; polling goes on, a restart would resume from the last state written");
                }
                self.failing = true;
                false
            }
        }
    }
}
