//! The process clock: the one source of wall-clock timestamps (a poll's start, T0, reloads, state
//! writes), with a pin for tests that run the real poller on a manual clock.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::session::UnixMillis;

/// The time [`now_ms`] returns instead of the system clock; [`NO_MANUAL_TIME`] when unset.
static MANUAL_NOW_MS: AtomicI64 = AtomicI64::new(NO_MANUAL_TIME);
const NO_MANUAL_TIME: UnixMillis = i64::MIN;

/// Current wall-clock time in milliseconds since the epoch (or the time a test pinned with
/// [`set_manual_now_ms`]). Every timestamp the exporter takes (a poll's start, T0, reloads,
/// state writes) comes from here; durations are measured with `Instant` instead.
pub fn now_ms() -> UnixMillis {
    let manual = MANUAL_NOW_MS.load(Ordering::Relaxed);
    if manual != NO_MANUAL_TIME {
        return manual;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Test hook, not part of the exporter's interface: pins [`now_ms`] to `ms` for the whole process
/// (`None` returns to the system clock), so that a test running the real poller against the
/// simulator's manual clock gets reproducible timestamps (`tests/golden.rs`). Nothing in the
/// exporter calls it (no flag or config key reaches it); unset, it costs one relaxed load.
/// Process-global: a test binary that sets it must hold no test that needs the real clock.
#[doc(hidden)]
pub fn set_manual_now_ms(ms: Option<UnixMillis>) {
    MANUAL_NOW_MS.store(ms.unwrap_or(NO_MANUAL_TIME), Ordering::Relaxed);
}
