//! Property tests of the session ledger: random session timelines observed by random polls the way
//! the poller observes them (paged Active listing with duplicated pages, a descending Terminated
//! scan down to a watermark, GetSession for vanished sessions that sometimes fails, backfill of
//! history, duplicates and stale re-deliveries), checked after every poll against the truth
//! computed directly from the timeline.
//!
//! The peak of concurrent sessions and the time at capacity are checked against a brute-force
//! evaluation of the timeline the ledger knows: the concurrency counted afresh at every instant
//! (every millisecond on the short timelines of `peak_and_time_at_capacity_equal_brute_force`,
//! every start, end and poll time on the long ones of `counters_equal_the_timeline_truth`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use workspacesweb_accounting::ledger::native::upper_bound;
use workspacesweb_accounting::ledger::{
    ActiveSummary, Ledger, LedgerSettings, UNKNOWN_USER, month_bounds,
};
use workspacesweb_accounting::session::{SessionRecord, SessionStatus};

const MIN: i64 = 60_000;
/// 2026-01-31T20:00:00Z: a month boundary falls inside most generated runs.
const BASE: i64 = 1_769_889_600_000;
/// Skew margin of the descending scan.
const MARGIN: i64 = 5 * MIN;
const BUCKETS: [f64; 6] = [60.0, 300.0, 1800.0, 3600.0, 7200.0, 28800.0];
const USERS: [Option<&str>; 5] = [Some("alice"), Some("bob"), Some("carol"), Some(""), None];

/// How the API reports a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Every field present and consistent.
    Normal,
    /// Terminated record without endTime.
    NoEnd,
    /// Terminated record with endTime < startTime.
    SkewEnd,
    /// No startTime on any record.
    MissingStart,
    /// No sessionId on any record.
    MissingId,
    /// Status string unknown to the exporter; never listed Active.
    Unknown,
}

#[derive(Debug, Clone)]
struct Sess {
    idx: usize,
    kind: Kind,
    user: Option<&'static str>,
    start: i64,
    /// Real end; `None` = still running.
    end: Option<i64>,
}

impl Sess {
    fn id(&self) -> Option<String> {
        (self.kind != Kind::MissingId).then(|| format!("s{}", self.idx))
    }
    fn key(&self) -> &'static str {
        match self.user {
            Some(u) if !u.is_empty() => u,
            _ => UNKNOWN_USER,
        }
    }
    fn trackable(&self) -> bool {
        matches!(self.kind, Kind::Normal | Kind::NoEnd | Kind::SkewEnd)
    }
    fn active_at(&self, t: i64) -> bool {
        self.kind != Kind::Unknown && self.start <= t && self.end.is_none_or(|e| t < e)
    }
    fn ended_by(&self, t: i64) -> bool {
        self.kind != Kind::Unknown && self.end.is_some_and(|e| e <= t)
    }
    fn rec(&self, status: SessionStatus, end: Option<i64>) -> SessionRecord {
        SessionRecord {
            id: self.id(),
            username: self.user.map(str::to_string),
            status,
            start_ms: (self.kind != Kind::MissingStart).then_some(self.start),
            end_ms: end,
        }
    }
    fn active_record(&self) -> SessionRecord {
        self.rec(SessionStatus::Active, None)
    }
    /// The endTime the Terminated record carries.
    fn reported_end(&self) -> Option<i64> {
        match self.kind {
            Kind::NoEnd => None,
            Kind::SkewEnd => Some(self.start - MIN),
            _ => self.end,
        }
    }
    fn terminated_record(&self) -> SessionRecord {
        self.rec(SessionStatus::Terminated, self.reported_end())
    }
    fn unknown_record(&self) -> SessionRecord {
        self.rec(SessionStatus::Unknown("Pending".into()), None)
    }
}

#[derive(Debug, Clone)]
struct PollPlan {
    gap_min: i64,
    page_size: usize,
    dup_page: bool,
    getsession_fail: u32,
    prune: bool,
    stale: u8,
    seed: u64,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        10 => Just(Kind::Normal),
        1 => Just(Kind::NoEnd),
        1 => Just(Kind::SkewEnd),
        1 => Just(Kind::MissingStart),
        1 => Just(Kind::MissingId),
        1 => Just(Kind::Unknown),
    ]
}

fn sessions() -> impl Strategy<Value = Vec<Sess>> {
    prop::collection::vec(
        (
            kind(),
            0..USERS.len(),
            -4320i64..2880,
            // Duration in ms: random, or exactly a bucket bound (checks `le`).
            prop::option::weighted(
                0.8,
                prop_oneof![
                    3 => (0i64..600).prop_map(|m| m * MIN + 7),
                    1 => prop::sample::select(BUCKETS.to_vec()).prop_map(|b| b as i64 * 1000),
                    // Native bounds: powers of two seconds (a bound in every schema), 0, 1 ms.
                    1 => prop_oneof![(0u32..17).prop_map(|e| 1000i64 << e), Just(0), Just(1), Just(500)],
                ],
            ),
        ),
        0..30,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(idx, (kind, u, start_min, dur_ms))| {
                // The low digits make starts unique (id-less sessions are keyed by user and start).
                let start = BASE + start_min * MIN + idx as i64;
                Sess {
                    idx,
                    kind,
                    user: USERS.get(u).copied().flatten(),
                    start,
                    end: dur_ms.map(|d| start + d),
                }
            })
            .collect()
    })
}

fn plans() -> impl Strategy<Value = Vec<PollPlan>> {
    prop::collection::vec(
        (
            10i64..600,
            1usize..6,
            any::<bool>(),
            any::<u32>(),
            any::<bool>(),
            0u8..4,
            any::<u64>(),
        )
            .prop_map(
                |(gap_min, page_size, dup_page, getsession_fail, prune, stale, seed)| PollPlan {
                    gap_min,
                    page_size,
                    dup_page,
                    getsession_fail,
                    prune,
                    stale,
                    seed,
                },
            ),
        1..9,
    )
}

/// Small deterministic generator for shuffles and picks.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// What the harness observed happening to one session, for the oracle.
#[derive(Debug, Default, Clone)]
struct Seen {
    listed_at: Vec<i64>,
    terminated_delivered: bool,
    unknown_delivered: bool,
}

/// The span the ledger knows for a session after what the harness delivered: `[start, end)`,
/// `None` as end while open (listed, or vanished and not yet resolved); `None` when the session
/// is not on the timeline (never tracked, or terminated without a usable endTime).
fn known_span(s: &Sess, o: &Seen, t0: i64) -> Option<(i64, Option<i64>)> {
    if !s.trackable() {
        return None;
    }
    let latest = s.reported_end().map_or(s.start, |e| e.max(s.start));
    let tracked = !o.listed_at.is_empty() || (o.terminated_delivered && latest >= t0);
    if !tracked {
        return None;
    }
    if !o.terminated_delivered {
        return Some((s.start, None));
    }
    match s.kind {
        Kind::Normal => Some((s.start, s.end)),
        _ => None,
    }
}

/// Concurrency at instant `t`, counted afresh: spans with `start <= t < end`.
fn concurrency(spans: &[(i64, Option<i64>)], t: i64) -> u64 {
    spans
        .iter()
        .filter(|(s, e)| *s <= t && e.is_none_or(|e| t < e))
        .count() as u64
}

/// The peak the ledger must show after the poll at `polls.last()`: the listing's count on the
/// first poll, else the highest concurrency at any of `instants` (which must include every
/// instant at which the concurrency over `[prev, at]` can change), never below the listing.
fn expected_peak(
    spans: &[(i64, Option<i64>)],
    polls: &[i64],
    listed: u64,
    instants: impl Fn(i64, i64) -> Vec<i64>,
) -> u64 {
    let [.., prev, at] = polls else {
        return listed;
    };
    instants(*prev, *at)
        .into_iter()
        .map(|t| concurrency(spans, t))
        .max()
        .unwrap_or(0)
        .max(listed)
}

/// Per-user (active, started, session_ms).
type UserRow = (u64, u64, i64);

/// The truth after some polls, computed from the timeline and what was delivered.
#[derive(Debug, Default, PartialEq)]
struct Truth {
    started: u64,
    terminated: u64,
    incomplete: u64,
    session_ms: i64,
    buckets: Vec<u64>,
    duration_count: u64,
    duration_ms: i64,
    active: ActiveSummary,
    users: BTreeMap<String, UserRow>,
    mau: u64,
    unresolved: Vec<String>,
}

fn truth(sessions: &[Sess], seen: &[Seen], t0: i64, polls: &[i64]) -> Truth {
    let now = polls.last().copied().unwrap_or(t0);
    let (ms, me) = month_bounds(now);
    let mut t = Truth {
        buckets: vec![0; BUCKETS.len() + 1],
        ..Truth::default()
    };
    let mut month_users: BTreeSet<&str> = BTreeSet::new();
    let mut active_users: BTreeSet<&str> = BTreeSet::new();
    let mut oldest: Option<i64> = None;
    for (s, o) in sessions.iter().zip(seen) {
        let user = t.users.entry(s.key().to_string()).or_default();
        // Gauges: records with an id in the listing at the last poll.
        if s.active_at(now) && s.kind != Kind::MissingId {
            t.active.sessions += 1;
            active_users.insert(s.key());
            user.0 += 1;
            if s.kind != Kind::MissingStart {
                oldest = Some(oldest.map_or(s.start, |x: i64| x.min(s.start)));
            }
        }
        // Monthly users: listed at a poll of this month, or a delivered record overlapping it
        // (for records without a usable endTime only the start is known).
        let listed_this_month = o.listed_at.iter().any(|&p| p >= ms && p < me);
        let record_overlaps = o.terminated_delivered
            && match s.kind {
                Kind::Normal | Kind::MissingId => s.start < me && s.end.is_some_and(|e| e >= ms),
                Kind::MissingStart => s.end.is_some_and(|e| e >= ms),
                Kind::NoEnd | Kind::SkewEnd => s.start >= ms && s.start < me,
                Kind::Unknown => false,
            };
        if listed_this_month || record_overlaps {
            month_users.insert(s.key());
        }
        let was_listed = !o.listed_at.is_empty();
        if s.trackable() {
            let latest = s.reported_end().map_or(s.start, |e| e.max(s.start));
            let tracked = was_listed || (o.terminated_delivered && latest >= t0);
            if !tracked {
                continue;
            }
            // Sessions already running at T0 are the baseline: tracked, never started.
            if s.start >= t0 {
                t.started += 1;
                user.1 += 1;
            }
            let from = s.start.max(t0);
            let mut seconds = o
                .listed_at
                .iter()
                .map(|&p| (p - from).max(0))
                .max()
                .unwrap_or(0);
            if o.terminated_delivered {
                t.terminated += 1;
                match (s.kind, s.end) {
                    (Kind::Normal, Some(end)) => {
                        let d = end - s.start;
                        let i = BUCKETS
                            .iter()
                            .position(|b| d as f64 / 1000.0 <= *b)
                            .unwrap_or(BUCKETS.len());
                        t.buckets[i] += 1;
                        t.duration_count += 1;
                        t.duration_ms += d;
                        seconds = seconds.max(end - from);
                    }
                    _ => t.incomplete += 1,
                }
            } else if was_listed && !s.active_at(now) {
                t.unresolved.push(format!("s{}", s.idx));
            }
            t.session_ms += seconds;
            user.2 += seconds;
        } else {
            let relevant = match s.kind {
                Kind::MissingStart | Kind::MissingId => {
                    was_listed || (o.terminated_delivered && s.end.is_some_and(|e| e >= t0))
                }
                Kind::Unknown => o.unknown_delivered && s.start >= t0,
                _ => false,
            };
            if relevant {
                t.incomplete += 1;
            }
        }
    }
    t.active.users = active_users.len() as u64;
    t.active.max_age_seconds = oldest.map_or(0, |o| (now - o).max(0)) as f64 / 1000.0;
    // Minutes-long intervals: the concurrency changes only at starts and ends, so evaluating it
    // at those (and at both ends of the interval) finds the peak.
    let spans: Vec<_> = sessions
        .iter()
        .zip(seen)
        .filter_map(|(s, o)| known_span(s, o, t0))
        .collect();
    t.active.peak = expected_peak(&spans, polls, t.active.sessions, |prev, at| {
        let inside = |x: &i64| prev < *x && *x <= at;
        let edges = spans.iter().flat_map(|(s, e)| [Some(*s), *e]).flatten();
        [prev, at].into_iter().chain(edges.filter(inside)).collect()
    });
    t.mau = month_users.len() as u64;
    t.users.retain(|_, u| *u != (0, 0, 0));
    t.unresolved.sort();
    t
}

fn observed(ledger: &Ledger) -> Truth {
    let h = &ledger.totals().durations;
    let mut users: BTreeMap<String, UserRow> = ledger
        .users()
        .map(|(k, u)| (k.to_string(), (u.active, u.started, u.session_ms)))
        .collect();
    users.retain(|_, u| *u != (0, 0, 0));
    Truth {
        started: ledger.totals().started,
        terminated: ledger.totals().terminated,
        incomplete: ledger.totals().incomplete,
        session_ms: ledger.session_ms(),
        buckets: h.counts.clone(),
        duration_count: h.count,
        duration_ms: (h.sum * 1000.0).round() as i64,
        active: ledger.active_summary(),
        users,
        mau: ledger.monthly_active_users(),
        unresolved: ledger.unresolved(),
    }
}

/// The native bucket of `v` found by comparing it with the bucket bounds (not by the ledger's
/// `frexp` and table search): the `i` with `upper_bound(i - 1) < v <= upper_bound(i)`.
fn bucket_by_bounds(v: f64, schema: i8) -> i32 {
    let per_power = 2f64.powi(i32::from(schema));
    let mut i = (v.log2() * per_power).ceil() as i32;
    while upper_bound(i, schema) < v {
        i += 1;
    }
    while upper_bound(i - 1, schema) >= v {
        i -= 1;
    }
    i
}

/// The native histogram equals the classic one in count and sum, and each of its buckets holds
/// exactly the observed durations within its bounds.
fn check_native(ledger: &Ledger, observed: &[f64]) -> Result<(), TestCaseError> {
    let t = ledger.totals();
    prop_assert_eq!(t.native.count, t.durations.count);
    prop_assert_eq!(t.native.sum(), t.durations.sum);
    prop_assert_eq!(t.native.count, observed.len() as u64);
    let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
    let mut zero = 0;
    for v in observed {
        if *v == 0.0 {
            zero += 1;
        } else {
            *expected
                .entry(bucket_by_bounds(*v, t.native.schema))
                .or_default() += 1;
        }
    }
    prop_assert_eq!(&t.native.buckets, &expected);
    prop_assert_eq!(t.native.zero_count, zero);
    Ok(())
}

/// Runs the timeline through a ledger the way the poller would, checking after every poll.
fn run(sessions: &[Sess], plans: &[PollPlan], t0_offset: i64) -> Result<(), TestCaseError> {
    let first = BASE + t0_offset;
    let t0 = BASE;
    // Every native schema, from the run's parameters.
    let native_schema = (t0_offset % 13 - 4) as i8;
    let settings = LedgerSettings {
        duration_buckets: BUCKETS.to_vec(),
        native_schema,
        ..LedgerSettings::default()
    };
    let mut ledger = Ledger::new(settings.clone(), t0);
    let mut durations: Vec<f64> = Vec::new();
    let mut seen = vec![Seen::default(); sessions.len()];
    let mut polls: Vec<i64> = Vec::new();
    let mut delivered: Vec<SessionRecord> = Vec::new();
    let mut at = first;
    for (k, plan) in plans.iter().enumerate() {
        if k > 0 {
            at += plan.gap_min * MIN;
        }
        let mut rng = Rng(plan.seed);
        // Active listing, paged, with a duplicated page.
        let mut listing = Vec::new();
        for (s, o) in sessions.iter().zip(seen.iter_mut()) {
            if s.active_at(at) {
                listing.push(s.active_record());
                o.listed_at.push(at);
            }
        }
        rng.shuffle(&mut listing);
        let pages: Vec<Vec<SessionRecord>> =
            listing.chunks(plan.page_size).map(<[_]>::to_vec).collect();
        let mut active: Vec<SessionRecord> = pages.concat();
        if plan.dup_page && !pages.is_empty() {
            let p = rng.below(pages.len());
            active.extend(pages[p].iter().cloned());
        }

        // Terminated records: backfill of all history on the first poll, else the descending
        // scan down to the watermark, plus GetSession for pending sessions that started before it
        // (some calls fail: the session stays pending and is retried at the next poll).
        let mut other: Vec<SessionRecord> = Vec::new();
        let watermark = polls.last().map(|p| p - MARGIN);
        for (s, o) in sessions.iter().zip(seen.iter_mut()) {
            if s.ended_by(at) && watermark.is_none_or(|w| s.start >= w) {
                other.push(s.terminated_record());
                o.terminated_delivered = true;
            }
        }
        if let Some(w) = watermark {
            for (bit, p) in ledger.pending(&active).into_iter().enumerate() {
                let fails = plan.getsession_fail & (1 << (bit % 32)) != 0 && rng.below(3) == 0;
                if p.start_ms >= w || fails {
                    continue;
                }
                let found = sessions
                    .iter()
                    .position(|s| s.id().as_deref() == Some(p.id.as_str()));
                if let Some(i) = found
                    && sessions[i].ended_by(at)
                {
                    other.push(sessions[i].terminated_record());
                    seen[i].terminated_delivered = true;
                }
            }
        }
        for (s, o) in sessions.iter().zip(seen.iter_mut()) {
            if s.kind == Kind::Unknown && s.start <= at {
                other.push(s.unknown_record());
                o.unknown_delivered = true;
            }
        }
        // Duplicates within the poll and stale re-deliveries of older records.
        let dups: Vec<SessionRecord> = other
            .iter()
            .filter(|_| rng.below(3) == 0)
            .cloned()
            .collect();
        let mut stale = Vec::new();
        for _ in 0..plan.stale {
            if !delivered.is_empty() {
                stale.push(delivered[rng.below(delivered.len())].clone());
            }
        }
        delivered.extend(other.iter().cloned());
        other.extend(dups);
        other.extend(stale);
        rng.shuffle(&mut other);

        durations.extend(ledger.apply_poll(at, &active, &other).durations);
        polls.push(at);
        if plan.seed % 3 == 0 {
            // A restart with durable state: the ledger goes through its state file format and
            // back; nothing the oracle sees may change, now or at any later poll.
            let text = serde_json::to_string(&ledger.to_state()).expect("state serializes");
            let state = serde_json::from_str(&text).expect("state parses");
            let resumed = Ledger::from_state(&settings, state).expect("state resumes");
            prop_assert_eq!(resumed.to_state(), ledger.to_state());
            ledger = resumed;
        }
        let expected = truth(sessions, &seen, t0, &polls);
        let got = observed(&ledger);
        prop_assert_eq!(&got, &expected, "after poll {} at {}", k, at);
        check_native(&ledger, &durations)?;
        // Per-user sums equal the portal totals exactly.
        let sum_started: u64 = ledger.users().map(|(_, u)| u.started).sum();
        let sum_ms: i64 = ledger.users().map(|(_, u)| u.session_ms).sum();
        prop_assert_eq!(sum_started, ledger.totals().started);
        prop_assert_eq!(sum_ms, ledger.session_ms());
        prop_assert_eq!(
            ledger.totals().session_seconds,
            ledger.session_ms() as f64 / 1000.0
        );
        if plan.prune {
            ledger.prune(at - MARGIN);
            // Memory: only open sessions, those started after the watermark, and untrackable
            // records seen by this very poll remain.
            let in_poll: BTreeSet<usize> = active
                .iter()
                .chain(&other)
                .filter_map(|r| {
                    sessions.iter().position(|s| match &r.id {
                        Some(id) => s.id().as_deref() == Some(id.as_str()),
                        None => r.start_ms == Some(s.start),
                    })
                })
                .collect();
            let bound = sessions
                .iter()
                .filter(|s| {
                    if s.trackable() {
                        s.start >= at - MARGIN
                            || (!seen[s.idx].listed_at.is_empty()
                                && !seen[s.idx].terminated_delivered)
                    } else {
                        in_poll.contains(&s.idx)
                    }
                })
                .count();
            prop_assert!(
                ledger.tracked_sessions() <= bound,
                "{} tracked > {} bound",
                ledger.tracked_sessions(),
                bound
            );
        }
    }
    Ok(())
}

/// One poll of a short timeline (milliseconds).
#[derive(Debug, Clone)]
struct CapacityPoll {
    gap: i64,
    /// `maxConcurrentSessions` known at this poll (`None`: GetPortal not permitted).
    limit: Option<u64>,
    /// Bit i: GetSession fails for the i-th pending session (it stays vanished, resolved later).
    getsession_fail: u8,
    /// Every record delivered twice.
    duplicate: bool,
    /// Prune after the poll, as the poller does.
    prune: bool,
    /// Resume from the durable state after the poll.
    restart: bool,
}

/// Skew margin of the short timelines.
const SHORT_MARGIN: i64 = 10;

/// Sessions on a short timeline: starts and durations on a 5 ms grid (so ends and starts often
/// meet at the same millisecond), some running at T0, some of zero length, some never ending.
fn short_sessions() -> impl Strategy<Value = Vec<Sess>> {
    prop::collection::vec(
        (
            kind(),
            0..USERS.len(),
            prop_oneof![3 => (0i64..60).prop_map(|k| k * 5), 1 => 0i64..300],
            prop::option::weighted(
                0.85,
                prop_oneof![3 => (0i64..24).prop_map(|k| k * 5), 1 => 0i64..120],
            ),
        ),
        0..12,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(idx, (kind, u, start, dur))| {
                let start = BASE - 50 + start;
                Sess {
                    idx,
                    kind,
                    user: USERS.get(u).copied().flatten(),
                    start,
                    end: dur.map(|d| start + d),
                }
            })
            .collect()
    })
}

fn capacity_polls() -> impl Strategy<Value = Vec<CapacityPoll>> {
    prop::collection::vec(
        (
            prop_oneof![(1i64..16).prop_map(|k| k * 5), 1i64..80],
            prop::option::weighted(0.85, 1u64..5),
            any::<u8>(),
            prop::bool::weighted(0.2),
            any::<bool>(),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(gap, limit, getsession_fail, duplicate, prune, restart)| {
                CapacityPoll {
                    gap,
                    limit,
                    getsession_fail,
                    duplicate,
                    prune,
                    restart,
                }
            }),
        1..9,
    )
}

/// Runs a short timeline through a ledger as the poller would, and after every poll compares
/// the peak and the time at capacity with the concurrency counted at every millisecond.
fn run_capacity(
    sessions: &[Sess],
    polls: &[CapacityPoll],
    first_at: i64,
) -> Result<(), TestCaseError> {
    let settings = || LedgerSettings {
        duration_buckets: BUCKETS.to_vec(),
        ..LedgerSettings::default()
    };
    let t0 = first_at;
    let mut ledger = Ledger::new(settings(), t0);
    let mut seen = vec![Seen::default(); sessions.len()];
    let mut times: Vec<i64> = Vec::new();
    let mut at_capacity_ms: i64 = 0;
    let mut at = first_at;
    for (k, poll) in polls.iter().enumerate() {
        if k > 0 {
            at += poll.gap;
        }
        let mut active = Vec::new();
        for (s, o) in sessions.iter().zip(seen.iter_mut()) {
            if s.active_at(at) {
                active.push(s.active_record());
                o.listed_at.push(at);
            }
        }
        // The first poll's backfill brings every terminated record; later polls scan down to the
        // watermark and ask GetSession for older vanished sessions, some of which fail.
        let watermark = times.last().map(|p| p - SHORT_MARGIN);
        let mut other = Vec::new();
        for (s, o) in sessions.iter().zip(seen.iter_mut()) {
            if s.ended_by(at) && watermark.is_none_or(|w| s.start >= w) {
                other.push(s.terminated_record());
                o.terminated_delivered = true;
            }
            if s.kind == Kind::Unknown && s.start <= at {
                other.push(s.unknown_record());
                o.unknown_delivered = true;
            }
        }
        if let Some(w) = watermark {
            for (bit, p) in ledger.pending(&active).into_iter().enumerate() {
                if p.start_ms >= w || poll.getsession_fail & (1 << (bit % 8)) != 0 {
                    continue;
                }
                let i = sessions
                    .iter()
                    .position(|s| s.id().as_deref() == Some(p.id.as_str()))
                    .expect("pending sessions come from the timeline");
                if sessions[i].ended_by(at) {
                    other.push(sessions[i].terminated_record());
                    seen[i].terminated_delivered = true;
                }
            }
        }
        if poll.duplicate {
            active.extend(active.clone());
            other.extend(other.clone());
        }

        ledger.set_capacity_limit(poll.limit);
        let d = ledger.apply_poll(at, &active, &other);
        times.push(at);

        // The truth: the spans known now, the concurrency counted at every millisecond.
        let spans: Vec<_> = sessions
            .iter()
            .zip(&seen)
            .filter_map(|(s, o)| known_span(s, o, t0))
            .collect();
        let listed = sessions
            .iter()
            .filter(|s| s.active_at(at) && s.kind != Kind::MissingId)
            .count() as u64;
        let peak = expected_peak(&spans, &times, listed, |prev, at| (prev..=at).collect());
        let mut added = 0;
        if let ([.., prev, _], Some(limit)) = (times.as_slice(), poll.limit) {
            added = ((*prev).max(t0)..at)
                .filter(|t| concurrency(&spans, *t) >= limit)
                .count() as i64;
        }
        at_capacity_ms += added;
        prop_assert_eq!(
            ledger.active_summary().peak,
            peak,
            "peak after poll {} at {}",
            k,
            at
        );
        prop_assert_eq!(d.at_capacity_ms, added, "added at poll {} at {}", k, at);
        prop_assert_eq!(ledger.at_capacity_ms(), at_capacity_ms);
        prop_assert_eq!(
            ledger.totals().at_capacity_seconds,
            poll.limit.map(|_| at_capacity_ms as f64 / 1000.0)
        );

        if poll.prune {
            ledger.prune(at - SHORT_MARGIN);
        }
        if poll.restart {
            let text = serde_json::to_string(&ledger.to_state()).expect("state serializes");
            let state = serde_json::from_str(&text).expect("state parses");
            ledger = Ledger::from_state(&settings(), state).expect("state resumes");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// The acceptance property: 10,000 random short timelines.
    #[test]
    fn peak_and_time_at_capacity_equal_brute_force(
        s in short_sessions(),
        p in capacity_polls(),
        first in 0i64..100,
    ) {
        run_capacity(&s, &p, BASE + first)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn counters_equal_the_timeline_truth(s in sessions(), p in plans(), t0_offset in 0i64..3_000) {
        run(&s, &p, t0_offset)?;
    }

    #[test]
    fn poll_deltas_sum_to_totals(s in sessions(), p in plans()) {
        let mut ledger = Ledger::new(LedgerSettings { duration_buckets: BUCKETS.to_vec(), ..LedgerSettings::default() }, BASE);
        ledger.set_capacity_limit(Some(2));
        let mut at = BASE;
        let (mut started, mut terminated, mut incomplete, mut ms, mut durations) = (0, 0, 0, 0, 0);
        let mut at_capacity_ms = 0;
        for plan in &p {
            at += plan.gap_min * MIN;
            let active: Vec<_> = s.iter().filter(|x| x.active_at(at)).map(Sess::active_record).collect();
            let other: Vec<_> = s.iter().filter(|x| x.ended_by(at)).map(Sess::terminated_record).collect();
            let d = ledger.apply_poll(at, &active, &other);
            started += d.started;
            terminated += d.terminated;
            incomplete += d.incomplete;
            ms += d.session_ms;
            durations += d.durations.len() as u64;
            at_capacity_ms += d.at_capacity_ms;
        }
        prop_assert_eq!(at_capacity_ms, ledger.at_capacity_ms());
        prop_assert_eq!(started, ledger.totals().started);
        prop_assert_eq!(terminated, ledger.totals().terminated);
        prop_assert_eq!(incomplete, ledger.totals().incomplete);
        prop_assert_eq!(ms, ledger.session_ms());
        prop_assert_eq!(durations, ledger.totals().durations.count);
    }

    #[test]
    fn arbitrary_records_never_panic_and_counters_never_decrease(
        recs in prop::collection::vec(
            (
                prop::option::of("[a-c]{1}"),
                prop::option::of(prop_oneof![Just(String::new()), "[xy]{1}".prop_map(String::from)]),
                prop_oneof![
                    Just(SessionStatus::Active),
                    Just(SessionStatus::Terminated),
                    Just(SessionStatus::Unknown("?".into())),
                ],
                prop::option::of(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -5i64..5]),
                prop::option::of(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -5i64..5]),
            )
                .prop_map(|(id, username, status, start_ms, end_ms)| SessionRecord {
                    id,
                    username,
                    status,
                    start_ms,
                    end_ms,
                }),
            0..20,
        ),
        ats in prop::collection::vec(prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -5i64..5], 1..6),
        t0 in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), -5i64..5],
        limits in prop::collection::vec(prop::option::of(prop_oneof![Just(0u64), Just(u64::MAX), 1u64..4]), 6),
    ) {
        let mut ledger = Ledger::new(LedgerSettings::default(), t0);
        let mut last = ledger.totals().clone();
        let mut last_at_capacity = 0;
        for (i, at) in ats.iter().enumerate() {
            let (a, o) = recs.split_at(i.min(recs.len()));
            ledger.set_capacity_limit(limits[i]);
            ledger.apply_poll(*at, a, o);
            prop_assert!(ledger.at_capacity_ms() >= last_at_capacity);
            prop_assert!(ledger.active_summary().peak >= ledger.active_summary().sessions);
            last_at_capacity = ledger.at_capacity_ms();
            if i % 2 == 0 {
                for id in ledger.unresolved() {
                    ledger.forget(&id, *at);
                }
            }
            ledger.prune(at.saturating_sub(MARGIN));
            let now = ledger.totals();
            prop_assert!(now.started >= last.started && now.terminated >= last.terminated);
            prop_assert!(now.incomplete >= last.incomplete);
            prop_assert!(now.session_seconds >= last.session_seconds);
            prop_assert!(ledger.active_summary().max_age_seconds >= 0.0);
            last = now.clone();
        }
    }
}
