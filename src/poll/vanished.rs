//! The cheaper way to resolve sessions that vanished from the Active listing (open at the
//! previous poll, absent now, and not returned by the Terminated scan): listing more of the
//! Terminated scan, which is sorted by start time newest first, down to their start times; or one
//! `GetSession` each.
//!
//! The pages the scan still needs are estimated from what it has listed so far: its density of
//! sessions per millisecond of start time, between the newest and the oldest start it listed.
//! (Measured from the poll's time instead, a quiet hour before the poll would make a dense
//! history look sparse, and the estimate too low; too high an estimate only costs what one
//! `GetSession` each costs.)
//! The poller asks again before every further page, with the density that page brings and the
//! sessions it found, so a wrong estimate costs at most the pages listed before it corrects itself;
//! whatever the scan does not find is fetched with `GetSession`.
//!
//! A session that `GetSession` cannot tell about is *settled* (SPEC section 11): counted as
//! terminated and incomplete, without a duration ([`Ledger::forget`](crate::ledger::Ledger::forget)),
//! when the lookup is refused (`AccessDeniedException`), the session is not found
//! (`ResourceNotFoundException`) or its id is refused (`ValidationException`): asking again would
//! bring the same answer, and a poll that failed on it would fail forever. A transient failure
//! (throttling, a server error, a timeout) fails the poll, which resumes with the same session;
//! after [`MAX_FAILED_LOOKUPS`] failed polls in a row on one session ([`Lookups`]), it is settled
//! too, without asking again.

use std::collections::HashMap;

use crate::aws::{ApiError, ErrorLabel};
use crate::session::UnixMillis;

/// Polls in a row that may fail on one session's `GetSession` before it is settled.
pub const MAX_FAILED_LOOKUPS: u32 = 3;

/// Whether a failed `GetSession` settles its session at once: the service said it will not
/// tell (denied), does not know it, or refuses its id.
pub(super) fn settles(err: &ApiError) -> bool {
    [
        ErrorLabel::ACCESS_DENIED,
        ErrorLabel::NOT_FOUND,
        ErrorLabel::VALIDATION,
    ]
    .contains(&err.code)
}

/// The `GetSession` lookups of one portal's polls that failed transiently, by session, and the
/// one in flight (a poll's timeout may cut it short).
#[derive(Debug, Default)]
pub(super) struct Lookups {
    failed_polls: HashMap<String, u32>,
    in_flight: Option<String>,
}

impl Lookups {
    /// Whether `id` is to be settled without asking again: [`MAX_FAILED_LOOKUPS`] polls in a row
    /// failed on its lookup.
    pub(super) fn exhausted(&self, id: &str) -> bool {
        self.failed_polls
            .get(id)
            .is_some_and(|n| *n >= MAX_FAILED_LOOKUPS)
    }

    /// A lookup of `id` begins.
    pub(super) fn begin(&mut self, id: &str) {
        self.in_flight = Some(id.to_string());
    }

    /// The lookup of `id` ended with an answer, or `id` was settled: its count goes.
    pub(super) fn done(&mut self, id: &str) {
        self.in_flight = None;
        self.failed_polls.remove(id);
    }

    /// The poll failed; when `transient` and a lookup was in flight, that lookup's session counts
    /// one more failed poll. Returns the polls that failed on it so far.
    pub(super) fn poll_failed(&mut self, transient: bool) -> Option<(String, u32)> {
        let id = self.in_flight.take().filter(|_| transient)?;
        let n = self.failed_polls.entry(id.clone()).or_default();
        *n = n.saturating_add(1);
        Some((id, *n))
    }

    /// A poll succeeded: every vanished session was resolved or settled.
    pub(super) fn poll_succeeded(&mut self) {
        self.in_flight = None;
        self.failed_polls.clear();
    }
}

/// What the Terminated scan of a poll has listed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ScanSoFar {
    /// Sessions listed (with a start time).
    pub(super) sessions: u64,
    /// The newest start time listed.
    pub(super) newest_ms: UnixMillis,
    /// The oldest start time listed.
    pub(super) oldest_ms: UnixMillis,
}

impl ScanSoFar {
    /// What a scan that listed sessions with these start times has seen; `None` when it listed
    /// none.
    pub(super) fn of(starts: impl IntoIterator<Item = UnixMillis>) -> Option<Self> {
        let mut sessions = 0u64;
        let mut newest_ms = UnixMillis::MIN;
        let mut oldest_ms = UnixMillis::MAX;
        for start in starts {
            sessions += 1;
            newest_ms = newest_ms.max(start);
            oldest_ms = oldest_ms.min(start);
        }
        (sessions > 0).then_some(ScanSoFar {
            sessions,
            newest_ms,
            oldest_ms,
        })
    }
}

/// Pages the scan still needs to list the session that started at `target_ms`: the sessions
/// expected between its oldest start so far and the target at its density so far, then that one.
/// Zero when the target is not below what the scan has listed.
pub(super) fn pages_to_reach(scan: ScanSoFar, target_ms: UnixMillis, page_size: u32) -> u64 {
    if target_ms > scan.oldest_ms {
        return 0;
    }
    // A scan whose sessions all started at one instant has no span to measure: one millisecond
    // makes its density as high as can be, so the estimate errs on the side of GetSession.
    let span_ms = scan.newest_ms.saturating_sub(scan.oldest_ms).max(1) as f64;
    let density = scan.sessions as f64 / span_ms;
    let between = density * scan.oldest_ms.saturating_sub(target_ms) as f64;
    let pages = ((between + 1.0) / f64::from(page_size.max(1))).ceil();
    // A float-to-integer `as` saturates (and maps NaN to 0, which no finite input gives here).
    pages as u64
}

/// Whether listing more of the scan is cheaper than one `GetSession` for each vanished session it
/// could still find: those that started at or before the oldest start it listed (a later one was
/// passed over, so it is not in the listing). `vanished` holds the start times of the sessions
/// not resolved yet; the estimated pages down to the oldest of them must be fewer than they are
/// (at a tie, `GetSession`: as many requests, and no pages of other sessions to read).
pub(super) fn scan_is_cheaper(
    scan: ScanSoFar,
    vanished: impl IntoIterator<Item = UnixMillis>,
    page_size: u32,
) -> bool {
    let mut reachable = 0u64;
    let mut oldest = UnixMillis::MAX;
    for start in vanished.into_iter().filter(|&s| s <= scan.oldest_ms) {
        reachable += 1;
        oldest = oldest.min(start);
    }
    reachable > 0 && pages_to_reach(scan, oldest, page_size) < reachable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: ErrorLabel) -> ApiError {
        ApiError {
            operation: crate::aws::GET_SESSION,
            code,
            message: String::new(),
        }
    }

    #[test]
    fn refusals_settle_and_transient_failures_do_not() {
        for code in [
            ErrorLabel::ACCESS_DENIED,
            ErrorLabel::NOT_FOUND,
            ErrorLabel::VALIDATION,
        ] {
            assert!(settles(&api_error(code)), "{code}");
        }
        for code in [
            ErrorLabel::from_code("ThrottlingException"),
            ErrorLabel::from_code("InternalServerException"),
            ErrorLabel::Timeout,
            ErrorLabel::Dispatch,
            ErrorLabel::Credentials,
            ErrorLabel::Other,
        ] {
            assert!(!settles(&api_error(code)), "{code}");
        }
    }

    #[test]
    fn three_failed_polls_in_a_row_exhaust_a_lookup() {
        let mut l = Lookups::default();
        for n in 1..=MAX_FAILED_LOOKUPS {
            assert!(!l.exhausted("s1"));
            l.begin("s1");
            assert_eq!(l.poll_failed(true), Some(("s1".to_string(), n)));
        }
        assert!(l.exhausted("s1"));
        // A failure elsewhere in the poll (nothing in flight), or not transient, counts nothing.
        assert_eq!(l.poll_failed(true), None);
        l.begin("s2");
        assert_eq!(l.poll_failed(false), None);
        assert!(!l.exhausted("s2"));
        // An answer resets the count; so does a successful poll.
        l.begin("s2");
        l.poll_failed(true);
        l.done("s2");
        l.begin("s2");
        assert_eq!(l.poll_failed(true), Some(("s2".to_string(), 1)));
        l.poll_succeeded();
        assert!(!l.exhausted("s1"));
    }

    const MIN: UnixMillis = 60_000;

    /// A scan that listed `sessions` that started from t=0 down to `oldest_min` minutes before.
    fn scan(sessions: u64, oldest_min: i64) -> ScanSoFar {
        ScanSoFar {
            sessions,
            newest_ms: 0,
            oldest_ms: -oldest_min * MIN,
        }
    }

    #[test]
    fn what_the_scan_saw() {
        assert_eq!(ScanSoFar::of([]), None);
        assert_eq!(
            ScanSoFar::of([-10, -30, -20]),
            Some(ScanSoFar {
                sessions: 3,
                newest_ms: -10,
                oldest_ms: -30
            })
        );
    }

    #[test]
    fn pages_follow_the_density_so_far() {
        // One session a minute: 49 more minutes are 49 sessions, then the target: one page of 100.
        assert_eq!(pages_to_reach(scan(100, 101), -150 * MIN, 100), 1);
        // 99 sessions between, then the target: exactly one page of 100; one more is two.
        assert_eq!(pages_to_reach(scan(100, 100), -199 * MIN, 100), 1);
        assert_eq!(pages_to_reach(scan(100, 100), -200 * MIN, 100), 2);
        // Ten a minute, 10 hours further down: 6,000 sessions.
        assert_eq!(pages_to_reach(scan(1000, 100), -700 * MIN, 100), 61);
        // Page size 1: one page a session.
        assert_eq!(pages_to_reach(scan(10, 10), -20 * MIN, 1), 11);
    }

    #[test]
    fn a_target_within_what_was_listed_needs_no_page() {
        assert_eq!(pages_to_reach(scan(100, 100), -50 * MIN, 100), 0);
        // At the oldest start listed: a session of the same start may be on the next page.
        assert_eq!(pages_to_reach(scan(100, 100), -100 * MIN, 100), 1);
    }

    #[test]
    fn a_scan_with_no_span_estimates_high() {
        let at_once = ScanSoFar {
            sessions: 100,
            newest_ms: 0,
            oldest_ms: 0,
        };
        assert_eq!(pages_to_reach(at_once, -MIN, 100), 60_001);
        // As far down as can be: saturates instead of overflowing.
        assert!(pages_to_reach(at_once, UnixMillis::MIN, 100) >= 1 << 62);
        // No page size is taken as one.
        assert_eq!(pages_to_reach(scan(1, 1), -2 * MIN, 0), 2);
    }

    #[test]
    fn many_vanished_sessions_just_below_the_scan_are_listed() {
        // 30 sessions, the oldest 49 minutes below the scan: one page against 30 GetSession.
        let starts: Vec<UnixMillis> = (0..30).map(|i| -150 * MIN + i * MIN).collect();
        assert!(scan_is_cheaper(scan(100, 101), starts, 100));
    }

    #[test]
    fn one_vanished_session_under_a_deep_history_is_fetched() {
        assert!(!scan_is_cheaper(scan(100, 101), [-150 * MIN], 100));
        // Two sessions a day down at about one a minute: 14 pages against 2 GetSession.
        assert!(!scan_is_cheaper(
            scan(100, 101),
            [-1500 * MIN, -1501 * MIN],
            100
        ));
    }

    #[test]
    fn at_a_tie_get_session_wins() {
        // One page to reach either of two sessions: 1 < 2, listed; one session: 1 = 1, fetched.
        assert!(scan_is_cheaper(
            scan(100, 100),
            [-120 * MIN, -110 * MIN],
            100
        ));
        assert!(!scan_is_cheaper(scan(100, 100), [-120 * MIN], 100));
    }

    #[test]
    fn sessions_the_scan_passed_over_are_not_counted() {
        // Started after the oldest start listed: not in the listing, only GetSession finds them.
        let passed = [-10 * MIN, -20 * MIN, -30 * MIN];
        assert!(!scan_is_cheaper(scan(100, 100), passed, 100));
        // ... and they do not make a far one worth a page.
        assert!(!scan_is_cheaper(
            scan(100, 100),
            passed.into_iter().chain([-150 * MIN]),
            100
        ));
        assert!(!scan_is_cheaper(scan(100, 100), [], 100));
    }
}
