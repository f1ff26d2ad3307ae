//! Unit tests: one per rule, with exact expected values.

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
/// 2026-01-31T20:00:00Z, four hours before a month boundary.
const T0: i64 = 1_769_889_600_000;

fn rec(
    id: Option<&str>,
    user: Option<&str>,
    status: SessionStatus,
    start: Option<i64>,
    end: Option<i64>,
) -> SessionRecord {
    SessionRecord {
        id: id.map(str::to_string),
        username: user.map(str::to_string),
        status,
        start_ms: start,
        end_ms: end,
    }
}

fn act(id: &str, user: &str, start: i64) -> SessionRecord {
    rec(
        Some(id),
        Some(user),
        SessionStatus::Active,
        Some(start),
        None,
    )
}

fn term(id: &str, user: &str, start: i64, end: i64) -> SessionRecord {
    rec(
        Some(id),
        Some(user),
        SessionStatus::Terminated,
        Some(start),
        Some(end),
    )
}

fn ledger() -> Ledger {
    Ledger::new(
        LedgerSettings {
            duration_buckets: vec![60.0, 3600.0],
            ..LedgerSettings::default()
        },
        T0,
    )
}

fn user<'a>(l: &'a Ledger, name: &str) -> Option<&'a UserTotals> {
    l.users().find(|(k, _)| *k == name).map(|(_, u)| u)
}

#[test]
fn a_session_running_at_t0_is_baseline_not_a_start() {
    let mut l = ledger();
    // "old" ran before T0: active, accrues from T0, terminates with its duration, never started.
    let old = act("old", "alice", T0 - HOUR);
    let new = act("new", "bob", T0 + MIN);
    let d = l.apply_poll(T0 + 2 * MIN, &[old, new], &[]);
    assert_eq!(
        (d.started, d.terminated, d.session_ms),
        (1, 0, 2 * MIN + MIN)
    );
    assert_eq!(l.active_summary().sessions, 2);
    assert_eq!(user(&l, "alice").map(|u| u.started), Some(0));
    assert_eq!(user(&l, "bob").map(|u| u.started), Some(1));
    let d = l.apply_poll(
        T0 + 3 * MIN,
        &[],
        &[
            term("old", "alice", T0 - HOUR, T0 + 3 * MIN),
            // Started before T0, first seen terminated after T0: baseline too.
            term("gone", "carol", T0 - 2 * HOUR, T0 + MIN),
        ],
    );
    assert_eq!((d.started, d.terminated), (0, 2));
    assert_eq!(d.durations, vec![3780.0, 7260.0]);
    assert_eq!(l.totals().started, 1);
    assert_eq!(l.totals().terminated, 2);
}

#[test]
fn started_once_across_duplicates_and_polls() {
    let mut l = ledger();
    let a = act("a", "alice", T0 + MIN);
    let d = l.apply_poll(T0, &[a.clone(), a.clone(), a.clone()], &[]);
    assert_eq!(d.started, 1);
    let d = l.apply_poll(T0 + MIN, &[a.clone(), a], &[]);
    assert_eq!(d.started, 0);
    assert_eq!(l.totals().started, 1);
    assert_eq!(l.active_summary().sessions, 1);
}

#[test]
fn session_seconds_accrue_from_t0_and_become_exact() {
    let mut l = ledger();
    let a = act("a", "alice", T0 - HOUR);
    l.apply_poll(T0 + 10 * MIN, &[a], &[]);
    assert_eq!(l.session_ms(), 10 * MIN);
    // Vanished at the next poll: no more accrual until its record arrives.
    l.apply_poll(T0 + 20 * MIN, &[], &[]);
    assert_eq!(l.session_ms(), 10 * MIN);
    assert_eq!(l.unresolved(), vec!["a".to_string()]);
    let d = l.apply_poll(
        T0 + 30 * MIN,
        &[],
        &[term("a", "alice", T0 - HOUR, T0 + 15 * MIN)],
    );
    assert_eq!(d.terminated, 1);
    assert_eq!(d.session_ms, 5 * MIN);
    assert_eq!(l.session_ms(), 15 * MIN);
    assert_eq!(l.totals().session_seconds, 900.0);
    // Duration is endTime - startTime, not clipped to T0.
    assert_eq!(d.durations, vec![4500.0]);
    assert_eq!(l.totals().durations.counts, vec![0, 0, 1]);
    assert!(l.unresolved().is_empty());
}

#[test]
fn session_between_polls_counts_started_terminated_and_exact_seconds() {
    let mut l = ledger();
    l.apply_poll(T0, &[], &[]);
    let s = term("b", "bob", T0 + MIN, T0 + 2 * MIN);
    let d = l.apply_poll(T0 + 10 * MIN, &[], &[s.clone(), s]);
    assert_eq!((d.started, d.terminated, d.session_ms), (1, 1, MIN));
    assert_eq!(l.totals().durations.counts, vec![1, 0, 0]);
    assert_eq!(l.totals().durations.sum, 60.0);
    let d = l.apply_poll(
        T0 + 20 * MIN,
        &[],
        &[term("b", "bob", T0 + MIN, T0 + 2 * MIN)],
    );
    assert_eq!(d, PollDeltas::default());
}

#[test]
fn history_before_t0_only_feeds_monthly_users() {
    let mut l = ledger();
    let d = l.apply_poll(
        T0,
        &[],
        &[term("old", "olga", T0 - 5 * HOUR, T0 - 4 * HOUR)],
    );
    assert_eq!(d, PollDeltas::default());
    assert_eq!(l.monthly_active_users(), 1);
    assert_eq!(l.tracked_sessions(), 0);
}

#[test]
fn ended_between_t0_and_first_poll_counts() {
    let mut l = ledger();
    // Started before T0 (baseline): terminated, its seconds from T0, not started.
    let d = l.apply_poll(T0 + 5_000, &[], &[term("x", "xi", T0 - HOUR, T0 + 1_000)]);
    assert_eq!((d.started, d.terminated, d.session_ms), (0, 1, 1_000));
    // Started and ended between T0 and the first listing: both.
    let d = l.apply_poll(T0 + 6_000, &[], &[term("y", "yu", T0 + 500, T0 + 2_000)]);
    assert_eq!((d.started, d.terminated, d.session_ms), (1, 1, 1_500));
}

#[test]
fn histogram_le_semantics() {
    let mut l = ledger();
    l.apply_poll(
        T0 + HOUR * 3,
        &[],
        &[
            term("a", "u", T0, T0 + 60_000),   // exactly 60 → first bucket
            term("b", "u", T0, T0 + 60_001),   // → second
            term("c", "u", T0, T0 + HOUR),     // exactly 3600 → second
            term("d", "u", T0, T0 + HOUR + 1), // → +Inf
        ],
    );
    let h = &l.totals().durations;
    assert_eq!(h.counts, vec![1, 2, 1]);
    assert_eq!(h.count, 4);
    assert_eq!(h.sum, 60.0 + 60.001 + 3600.0 + 3600.001);
}

#[test]
fn terminated_without_end_is_incomplete() {
    let mut l = ledger();
    l.apply_poll(T0 + MIN, &[act("a", "alice", T0)], &[]);
    let noend = rec(
        Some("a"),
        Some("alice"),
        SessionStatus::Terminated,
        Some(T0),
        None,
    );
    let d = l.apply_poll(T0 + 2 * MIN, &[], &[noend.clone(), noend]);
    assert_eq!((d.terminated, d.incomplete, d.session_ms), (1, 1, 0));
    assert!(d.durations.is_empty());
    assert_eq!(l.session_ms(), MIN);
}

#[test]
fn end_before_start_is_incomplete() {
    let mut l = ledger();
    let skew = term("a", "alice", T0 + 5 * MIN, T0 + 4 * MIN);
    let d = l.apply_poll(T0 + 10 * MIN, &[], &[skew]);
    assert_eq!(
        (d.started, d.terminated, d.incomplete, d.session_ms),
        (1, 1, 1, 0)
    );
    assert!(d.durations.is_empty());
}

#[test]
fn untrackable_records_count_once_not_per_poll() {
    let mut l = ledger();
    let no_id = rec(
        None,
        Some("u"),
        SessionStatus::Terminated,
        Some(T0),
        Some(T0 + MIN),
    );
    let no_start = rec(
        Some("n"),
        Some("u"),
        SessionStatus::Terminated,
        None,
        Some(T0 + MIN),
    );
    let active_no_id = rec(None, Some("v"), SessionStatus::Active, Some(T0), None);
    for i in 1..4 {
        let d = l.apply_poll(
            T0 + i * MIN,
            &[active_no_id.clone(), active_no_id.clone()],
            &[no_id.clone(), no_start.clone(), no_id.clone()],
        );
        assert_eq!(d.incomplete, if i == 1 { 3 } else { 0 });
        assert_eq!((d.started, d.terminated), (0, 0));
    }
    // The active record without id is not in the gauges (it cannot be deduplicated).
    assert_eq!(l.active_summary().sessions, 0);
    // The same id-less session, once terminated, is the same (username, startTime).
    let d = l.apply_poll(
        T0 + 5 * MIN,
        &[],
        &[rec(
            None,
            Some("v"),
            SessionStatus::Terminated,
            Some(T0),
            Some(T0 + 4 * MIN),
        )],
    );
    assert_eq!(d.incomplete, 0);
    assert_eq!(l.totals().incomplete, 3);
}

#[test]
fn old_untrackable_history_is_ignored() {
    let mut l = ledger();
    let old = rec(
        None,
        Some("u"),
        SessionStatus::Terminated,
        Some(T0 - 2 * HOUR),
        Some(T0 - HOUR),
    );
    let d = l.apply_poll(T0, &[], &[old]);
    assert_eq!(d.incomplete, 0);
    assert_eq!(l.monthly_active_users(), 1);
}

#[test]
fn unknown_status_counts_incomplete_once_per_id() {
    let mut l = ledger();
    let u = rec(
        Some("q"),
        Some("u"),
        SessionStatus::Unknown("Pending".into()),
        Some(T0),
        None,
    );
    let d = l.apply_poll(T0 + MIN, &[], &[u.clone(), u.clone()]);
    assert_eq!((d.started, d.terminated, d.incomplete), (0, 0, 1));
    l.apply_poll(T0 + 2 * MIN, &[], &[u]);
    // Later it becomes a real session: started, but not incomplete a second time.
    let d = l.apply_poll(T0 + 3 * MIN, &[], &[term("q", "u", T0, T0 + 2 * MIN)]);
    assert_eq!((d.started, d.terminated, d.incomplete), (1, 1, 0));
    assert_eq!(l.totals().incomplete, 1);
    assert_eq!(l.monthly_active_users(), 1);
}

#[test]
fn active_without_start_is_gauged_not_tracked() {
    let mut l = ledger();
    let r = rec(Some("a"), None, SessionStatus::Active, None, None);
    let d = l.apply_poll(T0 + MIN, &[r.clone(), r.clone()], &[]);
    assert_eq!((d.started, d.incomplete), (0, 1));
    assert_eq!(
        l.active_summary(),
        ActiveSummary {
            sessions: 1,
            users: 1,
            max_age_seconds: 0.0,
            peak: 1,
        }
    );
    assert_eq!(user(&l, UNKNOWN_USER).map(|u| u.active), Some(1));
    let d = l.apply_poll(T0 + 2 * MIN, &[r], &[]);
    assert_eq!(d.incomplete, 0);
}

#[test]
fn gauges_users_and_oldest_age() {
    let mut l = ledger();
    l.apply_poll(
        T0 + HOUR,
        &[
            act("a", "alice", T0),
            act("b", "alice", T0 + 10 * MIN),
            rec(
                Some("c"),
                Some(""),
                SessionStatus::Active,
                Some(T0 - HOUR),
                None,
            ),
            rec(
                Some("d"),
                None,
                SessionStatus::Active,
                Some(T0 + 2 * HOUR),
                None,
            ),
        ],
        &[],
    );
    assert_eq!(
        l.active_summary(),
        ActiveSummary {
            sessions: 4,
            users: 2,
            max_age_seconds: 7200.0,
            peak: 4,
        }
    );
    assert_eq!(user(&l, "alice").map(|u| u.active), Some(2));
    // "c" started before T0 (baseline), "d" after.
    assert_eq!(
        user(&l, UNKNOWN_USER).map(|u| (u.active, u.started)),
        Some((2, 1))
    );
    l.apply_poll(T0 + 2 * HOUR, &[], &[]);
    // None listed now; the four vanished without a Terminated record, so the peak still has them.
    assert_eq!(
        l.active_summary(),
        ActiveSummary {
            peak: 4,
            ..ActiveSummary::default()
        }
    );
    assert_eq!(user(&l, "alice").map(|u| u.active), Some(0));
}

#[test]
fn start_in_future_has_age_zero_and_accrues_from_start() {
    let mut l = ledger();
    l.apply_poll(T0 + MIN, &[act("f", "u", T0 + 3 * MIN)], &[]);
    assert_eq!(l.active_summary().max_age_seconds, 0.0);
    assert_eq!(l.session_ms(), 0);
    l.apply_poll(T0 + 5 * MIN, &[act("f", "u", T0 + 3 * MIN)], &[]);
    assert_eq!(l.session_ms(), 2 * MIN);
}

#[test]
fn end_earlier_than_a_poll_that_listed_it_is_clamped() {
    let mut l = ledger();
    l.apply_poll(T0 + 10 * MIN, &[act("a", "u", T0)], &[]);
    let d = l.apply_poll(T0 + 20 * MIN, &[], &[term("a", "u", T0, T0 + 8 * MIN)]);
    // The 2 minutes already counted stay (monotonic counter); the duration is the API's.
    assert_eq!((d.terminated, d.session_ms), (1, 0));
    assert_eq!(l.session_ms(), 10 * MIN);
    assert_eq!(d.durations, vec![480.0]);
}

#[test]
fn end_after_poll_time_is_exact() {
    let mut l = ledger();
    let d = l.apply_poll(T0 + MIN, &[], &[term("a", "u", T0, T0 + 2 * MIN)]);
    assert_eq!(d.session_ms, 2 * MIN);
}

#[test]
fn observed_active_then_ended_before_t0_still_terminates() {
    let mut l = ledger();
    l.apply_poll(T0 + 1_000, &[act("a", "u", T0 - HOUR)], &[]);
    let d = l.apply_poll(T0 + MIN, &[], &[term("a", "u", T0 - HOUR, T0 - 1)]);
    assert_eq!((d.terminated, d.session_ms), (1, 0));
    assert_eq!(l.session_ms(), 1_000);
}

#[test]
fn terminated_first_then_active_is_not_double_counted() {
    let mut l = ledger();
    l.apply_poll(T0 + 2 * MIN, &[], &[term("a", "u", T0, T0 + MIN)]);
    let d = l.apply_poll(T0 + 3 * MIN, &[act("a", "u", T0)], &[]);
    assert_eq!(d, PollDeltas::default());
    assert_eq!(l.active_summary().sessions, 1);
    let d = l.apply_poll(T0 + 4 * MIN, &[], &[]);
    assert_eq!(d, PollDeltas::default());
    assert!(l.unresolved().is_empty());
    assert_eq!(l.totals().started, 1);
}

#[test]
fn active_and_terminated_in_same_poll() {
    let mut l = ledger();
    let d = l.apply_poll(
        T0 + 2 * MIN,
        &[act("a", "u", T0)],
        &[term("a", "u", T0, T0 + MIN)],
    );
    assert_eq!((d.started, d.terminated, d.session_ms), (1, 1, 2 * MIN));
    assert_eq!(l.active_summary().sessions, 1);
    assert!(l.pending(&[]).is_empty());
}

#[test]
fn pending_lists_open_sessions_absent_from_listing() {
    let mut l = ledger();
    l.apply_poll(
        T0,
        &[act("a", "u", T0 - MIN), act("b", "u", T0 - 2 * MIN)],
        &[],
    );
    let now = [act("b", "u", T0 - 2 * MIN)];
    assert_eq!(
        l.pending(&now),
        vec![Pending {
            id: "a".into(),
            start_ms: T0 - MIN
        }]
    );
    l.apply_poll(T0 + MIN, &now, &[]);
    assert_eq!(l.unresolved(), vec!["a".to_string()]);
    // GetSession still says Active (eventual consistency): accrues, stays unresolved, not gauged.
    let d = l.apply_poll(T0 + 2 * MIN, &now, &[act("a", "u", T0 - MIN)]);
    assert_eq!(d.session_ms, MIN + 2 * MIN);
    assert_eq!(l.unresolved(), vec!["a".to_string()]);
    assert_eq!(l.active_summary().sessions, 1);
}

#[test]
fn forget_counts_terminated_and_incomplete() {
    let mut l = ledger();
    l.apply_poll(T0 + MIN, &[act("a", "u", T0)], &[]);
    l.apply_poll(T0 + 2 * MIN, &[], &[]);
    let d = l.forget("a", T0 + 3 * MIN);
    assert_eq!((d.terminated, d.incomplete, d.session_ms), (1, 1, 0));
    assert!(l.unresolved().is_empty());
    assert_eq!(l.forget("a", T0 + 3 * MIN), PollDeltas::default());
    assert_eq!(l.forget("zzz", T0 + 3 * MIN), PollDeltas::default());
    // A late record changes nothing.
    let d = l.apply_poll(T0 + 4 * MIN, &[], &[term("a", "u", T0, T0 + 2 * MIN)]);
    assert_eq!(d, PollDeltas::default());
}

#[test]
fn per_user_sums_equal_totals() {
    let mut l = ledger();
    l.apply_poll(
        T0 + HOUR,
        &[
            act("a", "alice", T0),
            act("b", "bob", T0 - HOUR),
            act("c", "", T0),
        ],
        &[
            term("d", "alice", T0, T0 + MIN),
            term("e", "carol", T0 + MIN, T0 + 3 * MIN),
        ],
    );
    let started: u64 = l.users().map(|(_, u)| u.started).sum();
    let ms: i64 = l.users().map(|(_, u)| u.session_ms).sum();
    assert_eq!(started, l.totals().started);
    assert_eq!(ms, l.session_ms());
    assert_eq!(
        user(&l, "alice").map(|u| (u.started, u.session_ms)),
        Some((2, HOUR + MIN))
    );
    assert_eq!(user(&l, "carol").map(|u| u.last_seen_ms), Some(T0 + HOUR));
}

#[test]
fn monthly_users_reset_at_month_boundary() {
    let mut l = ledger();
    // T0 is 2026-01-31T20:00Z; February starts at T0 + 4h.
    let feb = T0 + 4 * HOUR;
    l.apply_poll(
        T0,
        &[act("a", "alice", T0 - HOUR)],
        &[
            term("h1", "hist", T0 - 10 * 24 * HOUR, T0 - 9 * 24 * HOUR),
            // Ended in December: not this month.
            term("h2", "dec", T0 - 40 * 24 * HOUR, T0 - 39 * 24 * HOUR),
        ],
    );
    assert_eq!(l.monthly_active_users(), 2);
    l.apply_poll(
        feb - MIN,
        &[act("a", "alice", T0 - HOUR), act("b", "bob", T0)],
        &[],
    );
    assert_eq!(l.monthly_active_users(), 3);
    // First poll in February: only alice still active, bob ended after the boundary, carol ended before.
    l.apply_poll(
        feb + MIN,
        &[act("a", "alice", T0 - HOUR)],
        &[
            term("b", "bob", T0, feb + 1),
            term("c", "carol", T0, feb - 1),
        ],
    );
    assert_eq!(l.monthly_active_users(), 2);
    // A poll whose clock went back does not bring January back.
    l.apply_poll(feb - 2 * MIN, &[], &[term("c", "carol", T0, feb - 1)]);
    assert_eq!(l.monthly_active_users(), 2);
}

#[test]
fn prune_bounds_memory_and_ignores_late_duplicates() {
    let mut l = ledger();
    l.apply_poll(
        T0 + HOUR,
        &[act("open", "u", T0)],
        &[term("a", "u", T0 + MIN, T0 + 2 * MIN)],
    );
    l.apply_poll(T0 + 2 * HOUR, &[], &[]);
    assert_eq!(l.tracked_sessions(), 2);
    l.prune(T0 + HOUR);
    // "open" is unresolved: kept even though it started before the watermark.
    assert_eq!(l.tracked_sessions(), 1);
    let d = l.apply_poll(
        T0 + 3 * HOUR,
        &[],
        &[term("a", "u", T0 + MIN, T0 + 2 * MIN)],
    );
    assert_eq!(d, PollDeltas::default());
    let d = l.apply_poll(T0 + 3 * HOUR, &[], &[term("open", "u", T0, T0 + 90 * MIN)]);
    assert_eq!((d.terminated, d.session_ms), (1, 30 * MIN));
}

#[test]
fn absurd_timestamps_do_not_panic() {
    let mut l = Ledger::new(LedgerSettings::default(), i64::MIN);
    let recs = [
        term("a", "u", i64::MIN, i64::MAX),
        term("b", "u", i64::MAX, i64::MIN),
        act("c", "u", i64::MIN),
        act("d", "u", i64::MAX),
        rec(None, None, SessionStatus::Terminated, None, None),
    ];
    for at in [i64::MIN, 0, i64::MAX] {
        l.apply_poll(at, &recs, &recs);
        l.prune(at);
        l.forget("c", at);
    }
    assert!(l.session_ms() >= 0);
    assert!(l.active_summary().max_age_seconds >= 0.0);
}

#[test]
fn histogram_bounds_from_settings() {
    let l = Ledger::new(LedgerSettings::default(), T0);
    assert_eq!(
        l.totals().durations.bounds,
        DEFAULT_DURATION_BUCKETS.to_vec()
    );
    assert_eq!(l.totals().durations.counts.len(), 11);
}

#[test]
fn apply_records_leaves_the_listing_alone() {
    let mut l = ledger();
    l.apply_poll(T0 + MIN, &[act("a", "u", T0)], &[]);
    let d = l.apply_records(
        T0 + 2 * MIN,
        &[
            term("h", "hist", T0 - 3 * HOUR, T0 - 2 * HOUR),
            term("b", "v", T0, T0 + MIN),
        ],
    );
    assert_eq!((d.started, d.terminated, d.session_ms), (1, 1, MIN));
    assert_eq!(l.active_summary().sessions, 1);
    assert!(l.unresolved().is_empty());
    assert_eq!(l.monthly_active_users(), 3);
}

#[test]
fn evict_idle_users_keeps_users_still_referenced() {
    let mut l = ledger();
    l.apply_poll(
        T0 + HOUR,
        &[act("a", "alice", T0)],
        &[
            term("b", "bob", T0, T0 + MIN),
            term("c", "carol", T0, T0 + MIN),
        ],
    );
    l.apply_poll(T0 + 2 * HOUR, &[act("a", "alice", T0)], &[]);
    // bob and carol are held by their terminated sessions until pruned.
    assert_eq!(l.evict_idle_users(T0 + 2 * HOUR), 0);
    l.prune(T0 + 1);
    assert_eq!(l.evict_idle_users(T0 + 2 * HOUR), 2);
    assert!(user(&l, "alice").is_some());
    assert!(user(&l, "bob").is_none());
}

// --- Concurrency: peak and time at capacity -------------------------------------------------

const S: i64 = 1000;

#[test]
fn the_first_poll_peak_is_the_active_count() {
    let mut l = ledger();
    l.set_capacity_limit(Some(1));
    let d = l.apply_poll(
        T0,
        &[act("a", "u", T0 - HOUR), act("b", "v", T0 - MIN)],
        &[term("c", "w", T0 - 2 * MIN, T0)],
    );
    assert_eq!(l.active_summary().peak, 2);
    // No interval yet: nothing at capacity, but the counter exists since the limit is known.
    assert_eq!(d.at_capacity_ms, 0);
    assert_eq!(l.totals().at_capacity_seconds, Some(0.0));
}

#[test]
fn a_burst_between_two_polls_is_the_peak_and_its_time_at_capacity_is_exact() {
    let mut l = ledger();
    l.set_capacity_limit(Some(4));
    l.apply_poll(T0, &[act("long", "u", T0 - HOUR)], &[]);
    // Between the polls: three sessions, all three at once during [30 s, 40 s); a fourth starts
    // at 40 s exactly when one of them ends (the end goes first: still 4, never 5).
    let at = T0 + MIN;
    let d = l.apply_poll(
        at,
        &[act("long", "u", T0 - HOUR)],
        &[
            term("x", "u", T0 + 10 * S, T0 + 50 * S),
            term("y", "u", T0 + 20 * S, T0 + 45 * S),
            term("z", "u", T0 + 30 * S, T0 + 40 * S),
            term("w", "u", T0 + 40 * S, T0 + 42 * S),
        ],
    );
    let a = l.active_summary();
    assert_eq!((a.sessions, a.peak), (1, 4));
    // At 4 during [30 s, 40 s) and, with w, during [40 s, 42 s).
    assert_eq!(d.at_capacity_ms, 12 * S);
    assert_eq!(l.at_capacity_ms(), 12 * S);
    assert_eq!(l.totals().at_capacity_seconds, Some(12.0));
    // The next interval is quiet: the peak falls back, the counter stays.
    let d = l.apply_poll(at + MIN, &[act("long", "u", T0 - HOUR)], &[]);
    assert_eq!(l.active_summary().peak, 1);
    assert_eq!((d.at_capacity_ms, l.at_capacity_ms()), (0, 12 * S));
}

#[test]
fn an_end_and_a_start_at_the_same_millisecond_are_not_concurrent() {
    let mut l = ledger();
    l.set_capacity_limit(Some(2));
    l.apply_poll(T0, &[], &[]);
    l.apply_poll(
        T0 + MIN,
        &[act("b", "u", T0 + 20 * S)],
        &[term("a", "u", T0 + 10 * S, T0 + 20 * S)],
    );
    assert_eq!(l.active_summary().peak, 1);
    assert_eq!(l.at_capacity_ms(), 0);
}

#[test]
fn sessions_ending_at_the_previous_poll_or_starting_at_this_one() {
    let mut l = ledger();
    l.set_capacity_limit(Some(2));
    l.apply_poll(T0, &[act("a", "u", T0 - MIN), act("b", "u", T0 - MIN)], &[]);
    // a ended exactly at the previous poll: not in this interval. c starts exactly at this poll:
    // in the peak (the instant `at` is in the interval), but it adds no time at capacity.
    l.apply_poll(
        T0 + MIN,
        &[act("b", "u", T0 - MIN), act("c", "u", T0 + MIN)],
        &[term("a", "u", T0 - MIN, T0)],
    );
    assert_eq!(l.active_summary().peak, 2);
    assert_eq!(l.at_capacity_ms(), 0);
}

#[test]
fn a_vanished_session_counts_as_active_until_its_end_is_known() {
    let mut l = ledger();
    l.set_capacity_limit(Some(2));
    l.apply_poll(T0, &[act("a", "u", T0 - MIN), act("b", "u", T0 - MIN)], &[]);
    // b vanished and its Terminated record is not there yet (GetSession failed): still open.
    l.apply_poll(T0 + MIN, &[act("a", "u", T0 - MIN)], &[]);
    assert_eq!(l.unresolved(), vec!["b".to_string()]);
    assert_eq!(l.active_summary().peak, 2);
    assert_eq!(l.at_capacity_ms(), MIN);
    // Resolved: it had ended before that interval; the interval already closed stays as it was.
    l.apply_poll(
        T0 + 2 * MIN,
        &[act("a", "u", T0 - MIN)],
        &[term("b", "u", T0 - MIN, T0 + 5 * S)],
    );
    assert_eq!(l.active_summary().peak, 1);
    assert_eq!(l.at_capacity_ms(), MIN);
}

#[test]
fn incomplete_records_are_kept_off_the_timeline() {
    let mut l = ledger();
    l.set_capacity_limit(Some(1));
    l.apply_poll(T0, &[], &[]);
    l.apply_poll(
        T0 + MIN,
        &[],
        &[
            // No endTime, endTime before startTime, no startTime, no sessionId.
            rec(
                Some("a"),
                None,
                SessionStatus::Terminated,
                Some(T0 + S),
                None,
            ),
            term("b", "u", T0 + 20 * S, T0 + 10 * S),
            rec(
                Some("c"),
                None,
                SessionStatus::Terminated,
                None,
                Some(T0 + 9 * S),
            ),
            rec(
                None,
                None,
                SessionStatus::Terminated,
                Some(T0 + S),
                Some(T0 + 50 * S),
            ),
        ],
    );
    assert_eq!(l.totals().incomplete, 4);
    assert_eq!(l.active_summary().peak, 0);
    assert_eq!(l.at_capacity_ms(), 0);
}

#[test]
fn a_forgotten_session_leaves_the_timeline() {
    let mut l = ledger();
    l.set_capacity_limit(Some(1));
    l.apply_poll(T0, &[act("a", "u", T0 - MIN)], &[]);
    l.forget("a", T0 + MIN);
    l.apply_poll(T0 + MIN, &[], &[]);
    assert_eq!(l.active_summary().peak, 0);
    assert_eq!(l.at_capacity_ms(), 0);
}

#[test]
fn the_peak_is_never_below_the_listing() {
    let mut l = ledger();
    l.apply_poll(T0, &[], &[]);
    // One listed session has no startTime, another starts after the poll (clock skew): neither
    // is on the timeline, but both were listed Active at the poll.
    l.apply_poll(
        T0 + MIN,
        &[
            rec(Some("a"), None, SessionStatus::Active, None, None),
            act("b", "u", T0 + 2 * MIN),
        ],
        &[],
    );
    assert_eq!(l.active_summary().peak, 2);
}

#[test]
fn time_at_capacity_counts_only_while_the_limit_is_known() {
    let mut l = ledger();
    let open = [act("a", "u", T0 - MIN)];
    l.apply_poll(T0, &open, &[]);
    assert_eq!(l.totals().at_capacity_seconds, None);
    l.apply_poll(T0 + MIN, &open, &[]);
    assert_eq!(
        (l.at_capacity_ms(), l.totals().at_capacity_seconds),
        (0, None)
    );
    l.set_capacity_limit(Some(1));
    assert_eq!(l.totals().at_capacity_seconds, Some(0.0));
    l.apply_poll(T0 + 2 * MIN, &open, &[]);
    assert_eq!(l.totals().at_capacity_seconds, Some(60.0));
    // AccessDenied later: the counter goes away and stops; it comes back where it was.
    l.set_capacity_limit(None);
    l.apply_poll(T0 + 3 * MIN, &open, &[]);
    assert_eq!(l.totals().at_capacity_seconds, None);
    l.set_capacity_limit(Some(0));
    assert_eq!(
        (l.capacity_limit(), l.totals().at_capacity_seconds),
        (None, None)
    );
    l.set_capacity_limit(Some(1));
    assert_eq!(l.totals().at_capacity_seconds, Some(60.0));
}

#[test]
fn a_clock_stepping_back_counts_no_time_twice() {
    let mut l = ledger();
    l.set_capacity_limit(Some(1));
    let open = [act("a", "u", T0 - MIN)];
    l.apply_poll(T0, &open, &[]);
    l.apply_poll(T0 + 10 * MIN, &open, &[]);
    assert_eq!(l.at_capacity_ms(), 10 * MIN);
    l.apply_poll(T0 + 5 * MIN, &open, &[]);
    assert_eq!(l.at_capacity_ms(), 10 * MIN);
    assert_eq!(l.active_summary().peak, 1);
    // The next interval starts from the latest time seen, not from the step back.
    l.apply_poll(T0 + 11 * MIN, &open, &[]);
    assert_eq!(l.at_capacity_ms(), 11 * MIN);
}

#[test]
fn the_state_keeps_the_interval_the_limit_and_the_counter() {
    let mut l = ledger();
    l.set_capacity_limit(Some(1));
    let open = [act("a", "u", T0 - MIN)];
    l.apply_poll(T0, &open, &[]);
    l.apply_poll(T0 + MIN, &open, &[]);
    let settings = LedgerSettings {
        duration_buckets: vec![60.0, 3600.0],
        ..LedgerSettings::default()
    };
    let mut resumed = Ledger::from_state(&settings, l.to_state()).expect("resumes");
    assert_eq!(resumed.totals(), l.totals());
    assert_eq!(resumed.active_summary(), l.active_summary());
    assert_eq!(resumed.capacity_limit(), Some(1));
    // The downtime is one interval: exact once the first poll after the restart closes it.
    resumed.apply_poll(T0 + 30 * MIN, &open, &[]);
    assert_eq!(resumed.at_capacity_ms(), 30 * MIN);

    // A state written before these fields existed loads with them empty: the next poll is a
    // first poll for the peak, and the counter is absent until the limit is known again.
    let mut old = l.to_state();
    old.active_peak = 0;
    old.last_poll_ms = None;
    old.capacity_limit = None;
    old.at_capacity_ms = 0;
    let mut resumed = Ledger::from_state(&settings, old).expect("resumes");
    assert_eq!(resumed.totals().at_capacity_seconds, None);
    resumed.apply_poll(T0 + 30 * MIN, &open, &[]);
    assert_eq!(resumed.active_summary().peak, 1);
    assert_eq!(resumed.at_capacity_ms(), 0);
}

/// A state written before native histograms (no `native` field) resumes with the native
/// histogram empty, started at the last poll, while the classic one continues; a state with it
/// resumes it as it was, or merged into a lower schema.
#[test]
fn native_buckets_resume_from_state_or_start_empty_without_them() {
    use super::native::NativeHistogram;
    let mut ledger = Ledger::new(LedgerSettings::default(), 0);
    let ended = |id: &str, dur: i64| SessionRecord {
        id: Some(id.into()),
        username: Some("u".into()),
        status: SessionStatus::Terminated,
        start_ms: Some(1_000),
        end_ms: Some(1_000 + dur),
    };
    ledger.apply_poll(100_000, &[], &[ended("a", 64_000), ended("b", 1)]);
    let state = ledger.to_state();
    assert_eq!(state.native.as_ref().map(|n| n.count), Some(2));

    let resumed = Ledger::from_state(&LedgerSettings::default(), state.clone()).unwrap();
    assert_eq!(resumed.totals().native, ledger.totals().native);

    let mut old = serde_json::to_value(&state).unwrap();
    old.as_object_mut().unwrap().remove("native");
    for u in old["users"].as_array_mut().unwrap() {
        u.as_object_mut().unwrap().remove("created_ms");
    }
    let old: super::LedgerState = serde_json::from_value(old).unwrap();
    assert_eq!(old.resume_native(3).1, super::NativeResume::Absent);
    let mut resumed = Ledger::from_state(&LedgerSettings::default(), old).unwrap();
    assert_eq!(resumed.totals().native, NativeHistogram::new(3, 100_000));
    assert_eq!(resumed.totals().durations.count, 2);
    // Users of an old state count from T0.
    assert_eq!(resumed.users().next().map(|(_, u)| u.created_ms), Some(0));
    resumed.apply_poll(200_000, &[], &[ended("c", 2_000)]);
    assert_eq!(resumed.totals().native.count, 1);
    assert_eq!(resumed.totals().durations.count, 3);

    let lower = LedgerSettings {
        native_schema: 0,
        ..LedgerSettings::default()
    };
    let merged = Ledger::from_state(&lower, state.clone()).unwrap();
    assert_eq!(merged.totals().native.schema, 0);
    assert_eq!(merged.totals().native.buckets.values().sum::<u64>(), 2);
    assert_eq!(
        state.resume_native(0).1,
        super::NativeResume::Merged { from: 3 }
    );

    // Damaged native buckets are refused like any inconsistent state.
    let mut bad = state;
    if let Some(n) = bad.native.as_mut() {
        n.count += 1;
    }
    assert!(Ledger::from_state(&LedgerSettings::default(), bad).is_err());
}
