//! The control API's view of the traffic: request counters and the request log.

use super::Simulator;
use crate::traffic::LoggedRequest;

impl Simulator {
    /// Requests received for `portal_id` and `operation` (see [`operation`](crate::operation)),
    /// faulted ones included. `ListPortals`, STS and unroutable requests count under portal id `""`.
    pub fn request_count(&self, portal_id: &str, operation: &str) -> u64 {
        self.state.traffic.count_of(portal_id, operation)
    }

    /// Requests received for `operation`, all portals together.
    pub fn operation_count(&self, operation: &str) -> u64 {
        self.state.traffic.operation_count(operation)
    }

    /// Starts (`true`, clearing any earlier log) or stops (`false`) logging every request with
    /// its arrival time, query and answer status (off by default: the log grows without bound).
    pub fn log_requests(&self, on: bool) {
        self.state.traffic.set_logging(on);
    }

    /// The requests logged for `portal_id` (all portals with `None`), in arrival order.
    pub fn request_log(&self, portal_id: Option<&str>) -> Vec<LoggedRequest> {
        self.state.traffic.logged(portal_id)
    }

    /// Every request received.
    pub fn total_requests(&self) -> u64 {
        self.state.traffic.total()
    }
}
