//! Benchmarks of the session ledger (`src/ledger`): one steady-state poll, raw observation
//! throughput and `pending()` (the durable state write is the exporter's `benches/state.rs`).
//! See BENCHMARKS.md for the figures and how to run them.
//!
//! All inputs are built outside the timed closures; every timed call mutates a fresh clone of a
//! prepared ledger (`iter_batched_ref`), so each iteration does the real work of a poll.
//!
//! `LEDGER_MEMORY=1 cargo bench -p workspacesweb-accounting --bench ledger` skips the timings and instead prints the resident
//! memory per tracked session (process RSS before and after tracking 1,000,000 sessions).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};
use workspacesweb_accounting::ledger::{Ledger, LedgerSettings};
use workspacesweb_accounting::session::{SessionRecord, SessionStatus, UnixMillis};

/// T0 of every ledger here: 2026-05-28T00:00:00Z, far from a month boundary.
const T0: UnixMillis = 1_779_926_400_000;
/// Poll interval.
const POLL_MS: i64 = 60_000;
/// Sessions that start (and, elsewhere, terminate) between two polls in the steady state.
const CHURN: usize = 500;
/// Active sessions at each steady-state poll.
const ACTIVE: usize = 10_000;
/// Distinct usernames.
const USERS: usize = 2_500;
/// Skew margin used for the prune watermark.
const MARGIN_MS: i64 = 5 * 60_000;

/// A UUID-shaped (36-char) session id, unique per `i`.
fn session_id(i: usize) -> String {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (x >> 32) as u32,
        (x >> 16) as u16,
        (x >> 4) & 0xfff,
        x & 0xfff,
        i
    )
}

fn username(i: usize) -> String {
    format!("user{:05}@example.com", i % USERS)
}

/// Start time of session `i`: `CHURN` sessions start in each poll interval, the first 20
/// intervals' worth before T0.
fn start_ms(i: usize) -> UnixMillis {
    let slot = (i / CHURN) as i64 - (ACTIVE / CHURN) as i64;
    T0 + slot * POLL_MS + (i % CHURN) as i64 * (POLL_MS / CHURN as i64)
}

/// Time of steady-state poll `k`.
fn poll_at(k: usize) -> UnixMillis {
    T0 + (k as i64 + 1) * POLL_MS
}

fn active(i: usize) -> SessionRecord {
    SessionRecord {
        id: Some(session_id(i)),
        username: Some(username(i)),
        status: SessionStatus::Active,
        start_ms: Some(start_ms(i)),
        end_ms: None,
    }
}

fn terminated(i: usize, end_ms: UnixMillis) -> SessionRecord {
    SessionRecord {
        status: SessionStatus::Terminated,
        end_ms: Some(end_ms),
        ..active(i)
    }
}

/// What poll `k` of the steady state observes: sessions `[k*CHURN, k*CHURN + ACTIVE)` listed
/// Active, and the Terminated records of the `CHURN` sessions that left the listing since poll
/// `k - 1` (they ended between the two polls).
fn steady_poll(k: usize) -> (UnixMillis, Vec<SessionRecord>, Vec<SessionRecord>) {
    let at = poll_at(k);
    let listing = (k * CHURN..k * CHURN + ACTIVE).map(active).collect();
    let gone = (k.saturating_sub(1) * CHURN..k * CHURN)
        .map(|i| terminated(i, at - POLL_MS / 2))
        .collect();
    (at, listing, gone)
}

/// A ledger that has run polls `0..k` as the poller would (pending, apply, prune).
fn ledger_after(k: usize) -> Ledger {
    let mut ledger = Ledger::new(LedgerSettings::default(), poll_at(0) - POLL_MS / 2);
    for p in 0..k {
        let (at, listing, gone) = steady_poll(p);
        let _ = ledger.pending(&listing);
        ledger.apply_poll(at, &listing, &gone);
        ledger.prune(at - MARGIN_MS);
    }
    ledger
}

fn steady_state(c: &mut Criterion) {
    const WARM: usize = 4;
    let base = ledger_after(WARM);
    let (at, listing, gone) = steady_poll(WARM);
    let observations = (listing.len() + gone.len()) as u64;

    // The timed poll must do what it claims: 500 new sessions, 500 terminated.
    assert_eq!(base.pending(&listing).len(), CHURN);
    let d = base.clone().apply_poll(at, &listing, &gone);
    assert_eq!((d.started, d.terminated), (CHURN as u64, CHURN as u64));

    let mut g = c.benchmark_group("ledger/steady_poll_10k_active_1k_changes");
    g.throughput(Throughput::Elements(observations));
    g.bench_function("apply_poll", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |l| black_box(l.apply_poll(at, &listing, &gone)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("pending+apply_poll+prune", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |l| {
                black_box(l.pending(&listing));
                black_box(l.apply_poll(at, &listing, &gone));
                l.prune(at - MARGIN_MS);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("ledger/pending");
    g.throughput(Throughput::Elements(listing.len() as u64));
    g.bench_function("10k_active_500_vanished", |b| {
        b.iter(|| black_box(base.pending(black_box(&listing))))
    });
    g.finish();
}

fn observations(c: &mut Criterion) {
    const N: usize = 100_000;
    let listing: Vec<SessionRecord> = (0..N).map(active).collect();
    let t1 = poll_at(0);
    let fresh = Ledger::new(LedgerSettings::default(), t1 - POLL_MS / 2);
    let mut known = fresh.clone();
    known.apply_poll(t1, &listing, &[]);
    assert_eq!(known.tracked_sessions(), N);
    let t2 = t1 + POLL_MS;

    let mut g = c.benchmark_group("ledger/observations_100k");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    // Every session already tracked: the per-poll cost of a large, stable listing.
    g.bench_function("active_known", |b| {
        b.iter_batched_ref(
            || known.clone(),
            |l| black_box(l.apply_poll(t2, &listing, &[])),
            BatchSize::PerIteration,
        )
    });
    // Every session new: the first poll of a large portal (allocation and map growth).
    g.bench_function("active_new", |b| {
        b.iter_batched_ref(
            || fresh.clone(),
            |l| black_box(l.apply_poll(t1, &listing, &[])),
            BatchSize::PerIteration,
        )
    });
    // The same sessions terminating: 100k Terminated records of tracked sessions.
    let ended: Vec<SessionRecord> = (0..N).map(|i| terminated(i, t2 - 1_000)).collect();
    g.bench_function("terminated_known", |b| {
        b.iter_batched_ref(
            || known.clone(),
            |l| black_box(l.apply_poll(t2, &[], &ended)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Resident set size of this process, in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Prints RSS per tracked session for 1M sessions listed Active in one poll.
///
/// The input listing is built before the first reading, so the difference is the ledger's own
/// memory (session map and its slack, interned usernames, monthly users); an entry has the same
/// size whatever its phase, so the figure holds for terminated-but-unpruned sessions too.
fn memory_report() {
    const N: usize = 1_000_000;
    let t1 = poll_at(0);
    let mut ledger = Ledger::new(LedgerSettings::default(), t1 - POLL_MS / 2);
    let listing: Vec<SessionRecord> = (0..N).map(active).collect();
    let before = rss_bytes();
    ledger.apply_poll(t1, &listing, &[]);
    let after = rss_bytes();
    let tracked = ledger.tracked_sessions();
    println!(
        "tracked_sessions={tracked} users={} rss_before={before} rss_after={after} bytes_per_session={:.0}",
        ledger.users().count(),
        after.saturating_sub(before) as f64 / tracked as f64
    );
}

fn main() {
    if std::env::var_os("LEDGER_MEMORY").is_some() {
        memory_report();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    steady_state(&mut c);
    observations(&mut c);
    c.final_summary();
}
