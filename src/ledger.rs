//! The session ledger (pure: no I/O, no async, no SDK types). Being written.

/// Gauges describing the sessions active at the last successful poll.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActiveSummary {
    /// Sessions with status Active.
    pub sessions: u64,
    /// Distinct usernames among them (missing/empty username counts as one user, `__unknown__`).
    pub users: u64,
    /// Age in seconds of the oldest active session at the poll time (0 when none).
    pub max_age_seconds: f64,
}

/// A histogram with fixed upper bounds (seconds), non-cumulative bucket counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds, strictly increasing; `+Inf` is implicit.
    pub bounds: Vec<f64>,
    /// `counts[i]` observations in bucket i; `counts.len() == bounds.len() + 1` (last is +Inf).
    pub counts: Vec<u64>,
    /// Sum of observed values.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// Counters of one portal since its T0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// `sessions_started_total`.
    pub started: u64,
    /// `sessions_terminated_total`.
    pub terminated: u64,
    /// `session_records_incomplete_total`.
    pub incomplete: u64,
    /// `session_seconds_total`.
    pub session_seconds: f64,
    /// `session_duration_seconds`.
    pub durations: Histogram,
}
