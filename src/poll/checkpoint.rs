//! A portal task's last good state, kept by its supervisor across a panic: the bytes its state
//! file would hold after its last successful poll (encoded as in [`super::state`]), kept in
//! memory, so that a restarted task resumes through the same checks and restore path as from a
//! state file. Only without `--storage.path`: with it, the state file is the checkpoint, and a
//! restarted task resumes from it as a restarted exporter does. A panic mid-poll loses only that
//! poll, which the next one observes again.
//!
//! Its cost is that of a state write without the write: one encoding per successful poll (about
//! 1 ms for 2,000 open sessions and 2,200 users, see BENCHMARKS.md), and the encoded state in
//! memory (41 KB there).

use std::sync::{Arc, Mutex, PoisonError};

use tracing::{info, warn};

use super::PortalPlan;
use super::state::{Resumed, Unusable, decode};
use crate::clock::now_ms;

/// The encoded state of a portal's last successful poll, shared by its supervisor and its task.
#[derive(Debug, Clone, Default)]
pub(super) struct Checkpoint(Arc<Mutex<Option<Arc<Vec<u8>>>>>);

impl Checkpoint {
    /// Keeps `encoded` as the last good state.
    pub(super) fn keep(&self, encoded: Arc<Vec<u8>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(encoded);
    }

    /// The last good state, decoded for `plan` (`None` before a first successful poll, or when
    /// the plan changed what the counters depend on, such as the histogram's buckets).
    pub(super) fn restore(&self, plan: &PortalPlan) -> Option<Resumed> {
        let encoded = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let resumed = decode(
            &encoded,
            &plan.portal_id,
            &plan.ledger_settings(),
            plan.per_user.as_ref(),
            now_ms(),
            i64::MAX,
        );
        match resumed {
            Ok(r) => {
                info!(portal_id = %plan.portal_id, t0_ms = r.ledger.t0_ms(), watermark_ms = r.watermark_ms, started = r.ledger.totals().started, "resumed from the last successful poll after a panic");
                Some(r)
            }
            Err(Unusable::Expired { .. }) => None,
            Err(Unusable::Bad(reason)) => {
                warn!(portal_id = %plan.portal_id, reason = %reason, "the state of the last successful poll no longer applies; the portal starts fresh");
                None
            }
        }
    }
}
