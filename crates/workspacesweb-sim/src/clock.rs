//! The simulator's notion of "now": the system clock, or a manual clock that tests set and advance.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::record::{UnixMillis, now_ms};

/// A shareable clock in milliseconds since the epoch; clones share the same time.
///
/// The session model is a pure function of this clock: what is Active, Terminated or not yet
/// started is decided from `now_ms()` at each request.
#[derive(Debug, Clone)]
pub struct Clock {
    kind: ClockKind,
}

#[derive(Debug, Clone)]
enum ClockKind {
    /// Wall-clock time plus an offset (so a demo can be fast-forwarded).
    System { offset_ms: Arc<AtomicI64> },
    /// Time that moves only when told to.
    Manual { now_ms: Arc<AtomicI64> },
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock (UTC wall time).
    pub fn system() -> Self {
        Self {
            kind: ClockKind::System {
                offset_ms: Arc::new(AtomicI64::new(0)),
            },
        }
    }

    /// A manual clock starting at `start_ms`; it moves only through [`Clock::set`] and [`Clock::advance`].
    pub fn manual(start_ms: UnixMillis) -> Self {
        Self {
            kind: ClockKind::Manual {
                now_ms: Arc::new(AtomicI64::new(start_ms)),
            },
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self.kind, ClockKind::Manual { .. })
    }

    /// The current time in milliseconds since the epoch.
    pub fn now_ms(&self) -> UnixMillis {
        match &self.kind {
            ClockKind::System { offset_ms } => {
                now_ms().saturating_add(offset_ms.load(Ordering::SeqCst))
            }
            ClockKind::Manual { now_ms } => now_ms.load(Ordering::SeqCst),
        }
    }

    /// Sets the current time (a system clock gets an offset so that it reads `ms` now and runs on from there).
    pub fn set(&self, ms: UnixMillis) {
        match &self.kind {
            ClockKind::System { offset_ms } => {
                offset_ms.store(ms.saturating_sub(now_ms()), Ordering::SeqCst)
            }
            ClockKind::Manual { now_ms } => now_ms.store(ms, Ordering::SeqCst),
        }
    }

    /// Moves the clock by `ms` (may be negative); returns the new time.
    pub fn advance(&self, ms: i64) -> UnixMillis {
        match &self.kind {
            ClockKind::System { offset_ms } => {
                offset_ms.fetch_add(ms, Ordering::SeqCst);
            }
            ClockKind::Manual { now_ms } => {
                now_ms.fetch_add(ms, Ordering::SeqCst);
            }
        }
        self.now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = Clock::manual(1_000);
        let shared = c.clone();
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.advance(500), 1_500);
        shared.set(10_000);
        assert_eq!(c.now_ms(), 10_000);
        assert!(c.is_manual());
    }

    #[test]
    fn system_clock_can_be_offset() {
        let c = Clock::system();
        let before = now_ms();
        c.advance(3_600_000);
        assert!(c.now_ms() >= before + 3_600_000);
        c.set(42);
        assert!((c.now_ms() - 42).abs() < 60_000);
    }
}
