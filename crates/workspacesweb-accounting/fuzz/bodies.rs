//! Body of the fuzz target `ledger_apply` (run with `cargo fuzz` from the accounting crate),
//! included with `#[path]` by `fuzz_targets/ledger_apply.rs` and by the crate's
//! `tests/fuzzing.rs`, so that the ordinary test suite runs it too (on the seed corpus and random
//! inputs). It needs only this crate: building it builds no async runtime and no AWS SDK.
//!
//! It takes arbitrary bytes, must never panic, and panics on a broken invariant (which the fuzzer
//! reports as a crash).

use workspacesweb_accounting::ledger::{Ledger, LedgerSettings};
use workspacesweb_accounting::session::{SessionRecord, SessionStatus, UnixMillis};

/// A reader of fuzz bytes: every read succeeds (zeros once the input is exhausted).
struct Bytes<'a> {
    data: &'a [u8],
}

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn done(&self) -> bool {
        self.data.is_empty()
    }

    /// A time: small offsets around a base (so that sessions overlap polls), or an extreme.
    fn time(&mut self, base: UnixMillis) -> UnixMillis {
        match self.byte() % 8 {
            0 => UnixMillis::MIN,
            1 => UnixMillis::MAX,
            2 => -1,
            3 => i64::from(u16::from_le_bytes([self.byte(), self.byte()])),
            _ => base
                .saturating_add(i64::from(i16::from_le_bytes([self.byte(), self.byte()])) * 1000),
        }
    }

    fn record(&mut self, base: UnixMillis) -> SessionRecord {
        let flags = self.byte();
        let id = (flags & 1 != 0).then(|| format!("s{}", self.byte() % 16));
        let username = match self.byte() % 6 {
            0 => None,
            1 => Some(String::new()),
            2 => Some("__unknown__".to_string()),
            n => Some(format!("u{n}")),
        };
        let status = match self.byte() % 5 {
            0 | 1 => SessionStatus::Active,
            2 | 3 => SessionStatus::Terminated,
            _ => SessionStatus::Unknown("Paused".into()),
        };
        let start_ms = (flags & 2 != 0).then(|| self.time(base));
        let end_ms = (flags & 4 != 0).then(|| self.time(base));
        SessionRecord {
            id,
            username,
            status,
            start_ms,
            end_ms,
        }
    }

    fn records(&mut self, base: UnixMillis) -> Vec<SessionRecord> {
        let n = self.byte() % 8;
        (0..n).map(|_| self.record(base)).collect()
    }
}

/// A ledger driven by arbitrary polls (with an arbitrary capacity limit), record batches, prunes and
/// forgets (16 session ids, a few users, extreme times): no panic, and after every step the
/// counters (time at capacity included) never decrease, the peak is never below the listing, the
/// histogram adds up, the per-user sums equal the totals, and the ledger survives its durable
/// state format unchanged.
pub fn ledger_apply(data: &[u8]) {
    let mut r = Bytes { data };
    let t0: UnixMillis = 1_764_547_200_000; // 2025-12-01T00:00:00Z, a month boundary
    let mut at = t0 + i64::from(r.byte()) * 60_000 - 7_200_000;
    let mut ledger = Ledger::new(LedgerSettings::default(), at);
    let mut before = ledger.totals().clone();
    let mut at_capacity_before = 0;
    let mut steps = 0;
    while !r.done() && steps < 64 {
        steps += 1;
        // Time usually moves forward by up to ~4 h, sometimes jumps back (clock skew).
        let step = i64::from(r.byte()) * 60_000;
        at = if r.byte().is_multiple_of(16) {
            at.saturating_sub(step)
        } else {
            at.saturating_add(step)
        };
        match r.byte() % 6 {
            0..=2 => {
                let active = r.records(at);
                let other = r.records(at);
                let pending = ledger.pending(&active);
                // The portal's limit: usually known and small, sometimes unknown or 0.
                ledger.set_capacity_limit(match r.byte() % 4 {
                    0 => None,
                    b => Some(u64::from(b - 1)),
                });
                let d = ledger.apply_poll(at, &active, &other);
                assert!(d.session_ms >= 0, "negative accrual {d:?}");
                assert!(d.at_capacity_ms >= 0, "negative time at capacity {d:?}");
                let _ = pending;
            }
            3 => {
                let records = r.records(at);
                ledger.apply_records(at, &records);
            }
            4 => ledger.prune(at.saturating_sub(60_000)),
            _ => {
                let id = format!("s{}", r.byte() % 16);
                ledger.forget(&id, at);
            }
        }
        let now = ledger.totals().clone();
        assert!(now.started >= before.started, "{before:?} -> {now:?}");
        assert!(now.terminated >= before.terminated, "{before:?} -> {now:?}");
        assert!(now.incomplete >= before.incomplete, "{before:?} -> {now:?}");
        assert!(
            now.session_seconds >= before.session_seconds,
            "{before:?} -> {now:?}"
        );
        assert!(now.durations.count >= before.durations.count);
        assert!(now.durations.count <= now.terminated, "{now:?}");
        assert_eq!(
            now.durations.counts.iter().sum::<u64>(),
            now.durations.count,
            "{now:?}"
        );
        assert!(now.session_seconds.is_finite() && now.session_seconds >= 0.0);
        let (mut started, mut ms) = (0u64, 0i64);
        for (_, u) in ledger.users() {
            started += u.started;
            ms = ms.saturating_add(u.session_ms);
        }
        assert_eq!(started, now.started, "per-user started");
        assert_eq!(ms, ledger.session_ms(), "per-user session ms");
        assert!(ledger.at_capacity_ms() >= at_capacity_before);
        at_capacity_before = ledger.at_capacity_ms();
        let a = ledger.active_summary();
        assert!(a.users <= a.sessions, "{a:?}");
        assert!(a.peak >= a.sessions, "{a:?}");
        let state = ledger.to_state();
        let text = serde_json::to_string(&state).expect("state serializes");
        let back = serde_json::from_str(&text).expect("state parses");
        let resumed = Ledger::from_state(&LedgerSettings::default(), back).expect("state resumes");
        assert_eq!(resumed.to_state(), state);
        assert!(a.max_age_seconds.is_finite() && a.max_age_seconds >= 0.0);
        before = now;
    }
}
