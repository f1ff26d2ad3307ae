//! What the simulator has received: request counters, the optional request log, request ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::locks::lock;
use crate::rng::{Rng, mix};

/// One request received, as logged by [`Simulator::log_requests`](crate::Simulator::log_requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When it arrived (tokio clock).
    pub at: tokio::time::Instant,
    /// Portal id (`""` for `ListPortals`, Organizations and unroutable requests).
    pub portal_id: String,
    /// Operation name (see [`operation`](crate::operation)).
    pub operation: String,
    /// The raw query string (`status=Active&nextToken=...`); for Organizations, the JSON body.
    pub query: String,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Counters and log of the requests received (part of the shared state).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// (portal id, operation) -> requests.
    counters: Mutex<HashMap<(String, String), u64>>,
    /// Sequence of answers, for request ids.
    request_seq: AtomicU64,
    /// Every request, while logging is on.
    log: Mutex<Option<Vec<LoggedRequest>>>,
}

impl Traffic {
    /// Counts one request for `portal_id` (`""`: none) and `operation`.
    pub(crate) fn count(&self, portal_id: &str, operation: &str) {
        *lock(&self.counters)
            .entry((portal_id.to_string(), operation.to_string()))
            .or_insert(0) += 1;
    }

    /// Requests counted for `portal_id` and `operation`.
    pub(crate) fn count_of(&self, portal_id: &str, operation: &str) -> u64 {
        lock(&self.counters)
            .get(&(portal_id.to_string(), operation.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests counted for `operation`, all portals together.
    pub(crate) fn operation_count(&self, operation: &str) -> u64 {
        lock(&self.counters)
            .iter()
            .filter(|((_, op), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request counted.
    pub(crate) fn total(&self) -> u64 {
        lock(&self.counters).values().sum()
    }

    /// A fresh, deterministic request id (a UUID) for the next answer.
    pub(crate) fn request_id(&self, seed: u64) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        Rng::new(mix(seed, n)).uuid()
    }

    /// Starts (clearing any earlier log) or stops logging.
    pub(crate) fn set_logging(&self, on: bool) {
        *lock(&self.log) = on.then(Vec::new);
    }

    /// Appends a request to the log, when logging is on.
    pub(crate) fn log(&self, request: LoggedRequest) {
        if let Some(log) = lock(&self.log).as_mut() {
            log.push(request);
        }
    }

    /// The requests logged for `portal_id` (all with `None`), in arrival order.
    pub(crate) fn logged(&self, portal_id: Option<&str>) -> Vec<LoggedRequest> {
        lock(&self.log)
            .iter()
            .flatten()
            .filter(|r| portal_id.is_none_or(|p| r.portal_id == p))
            .cloned()
            .collect()
    }
}
