//! The last hour of one portal's polls, for the landing page: when each poll finished, the active
//! sessions and the capacity it saw, and the API errors counted since the poll before. In memory
//! only, bounded to [`MAX_POINTS`] whatever the interval, and dropped with the portal.
//!
//! Bound: while the ring has room, every poll is a point of its own. A poll that overfills it (an
//! interval under [`WINDOW_MS`] / [`MAX_POINTS`], 10 s) removes the one point, neither the oldest
//! nor the newest, whose neighbours are closest in time; the next point takes its errors. So the
//! ring keeps spanning the last hour, at full resolution where it can and evenly thinned where
//! it cannot.
//!
//! Errors: each point holds the errors counted between the previous point and itself, so the
//! errors of the last hour are the sum over the points of the window, exact to the poll: errors
//! counted during a poll appear when it finishes, and the first point of the window brings those
//! counted since the point before it (at most one poll gap, or a merged span, before the hour).

use std::collections::VecDeque;

use crate::session::UnixMillis;

/// The span the ring covers: one hour.
pub const WINDOW_MS: i64 = 3_600_000;

/// The most points the ring holds: one per 10 s over the hour.
pub const MAX_POINTS: usize = 360;

/// One finished poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPoint {
    /// When the poll finished (process clock).
    pub at_ms: UnixMillis,
    /// Active sessions it saw; `None` for a failed poll.
    pub active: Option<u64>,
    /// The portal's `maxConcurrentSessions` then, when known.
    pub capacity: Option<u64>,
    /// API request errors counted since the previous point.
    pub errors: u64,
}

/// The last hour of one portal's polls, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentPolls {
    points: VecDeque<PollPoint>,
    /// The portal's error counter at the last record, to turn it into per-point counts.
    errors_total: u64,
}

impl RecentPolls {
    /// Records a poll that finished at `at_ms`, seeing `active` sessions (`None`: it failed)
    /// under `capacity`, when the portal's API error counter stood at `errors_total`. A counter
    /// below its previous value started again from zero (a new counter): all of it is new.
    pub fn record(
        &mut self,
        at_ms: UnixMillis,
        active: Option<u64>,
        capacity: Option<u64>,
        errors_total: u64,
    ) {
        let errors = errors_total
            .checked_sub(self.errors_total)
            .unwrap_or(errors_total);
        self.errors_total = errors_total;
        self.prune(at_ms);
        self.points.push_back(PollPoint {
            at_ms,
            active,
            capacity,
            errors,
        });
        if self.points.len() > MAX_POINTS {
            self.thin_out();
        }
    }

    /// The points of the hour ending at `now_ms`, oldest first.
    pub fn window(&self, now_ms: UnixMillis) -> impl Iterator<Item = &PollPoint> {
        let start = now_ms.saturating_sub(WINDOW_MS);
        self.points.iter().filter(move |p| p.at_ms > start)
    }

    /// API request errors counted in the hour ending at `now_ms` (see the module docs).
    pub fn errors_in_window(&self, now_ms: UnixMillis) -> u64 {
        self.window(now_ms)
            .fold(0u64, |sum, p| sum.saturating_add(p.errors))
    }

    /// How many points the ring holds.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no poll was recorded (or all are older than an hour).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Drops the points older than the hour ending at `now_ms`.
    fn prune(&mut self, now_ms: UnixMillis) {
        let start = now_ms.saturating_sub(WINDOW_MS);
        while self.points.front().is_some_and(|p| p.at_ms <= start) {
            self.points.pop_front();
        }
    }

    /// Removes the point, neither the first nor the last, whose neighbours are closest in time
    /// (the oldest such point); the point after it takes its errors.
    fn thin_out(&mut self) {
        let p = &self.points;
        let Some(i) = (1..p.len().saturating_sub(1))
            .min_by_key(|&i| p[i + 1].at_ms.saturating_sub(p[i - 1].at_ms))
        else {
            return;
        };
        if let Some(removed) = self.points.remove(i)
            && let Some(next) = self.points.get_mut(i)
        {
            next.errors = next.errors.saturating_add(removed.errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: UnixMillis = 1_800_000_000_000;

    #[test]
    fn points_keep_each_poll_and_errors_since_the_previous_one() {
        let mut ring = RecentPolls::default();
        ring.record(T, Some(3), Some(10), 2);
        ring.record(T + 60_000, None, Some(10), 5);
        ring.record(T + 120_000, Some(4), None, 5);
        let points: Vec<PollPoint> = ring.window(T + 120_000).copied().collect();
        assert_eq!(
            points,
            [
                PollPoint {
                    at_ms: T,
                    active: Some(3),
                    capacity: Some(10),
                    errors: 2
                },
                PollPoint {
                    at_ms: T + 60_000,
                    active: None,
                    capacity: Some(10),
                    errors: 3
                },
                PollPoint {
                    at_ms: T + 120_000,
                    active: Some(4),
                    capacity: None,
                    errors: 0
                },
            ]
        );
        assert_eq!(ring.errors_in_window(T + 120_000), 5);
    }

    #[test]
    fn the_window_is_the_last_hour_at_render_and_at_record() {
        let mut ring = RecentPolls::default();
        ring.record(T, Some(1), None, 1);
        ring.record(T + 1_800_000, Some(2), None, 3);
        // At render: the first point leaves the window an hour after it was taken.
        assert_eq!(ring.errors_in_window(T + WINDOW_MS - 1), 3);
        assert_eq!(ring.errors_in_window(T + WINDOW_MS), 2);
        assert_eq!(ring.window(T + WINDOW_MS).count(), 1);
        assert_eq!(ring.len(), 2, "still held until the next record");
        // At record: points older than the hour go.
        ring.record(T + WINDOW_MS + 1, Some(3), None, 3);
        assert_eq!(ring.len(), 2);
        assert_eq!(
            ring.window(T + WINDOW_MS + 1).next().map(|p| p.active),
            Some(Some(2))
        );
        // Nothing recorded for over an hour: the window is empty.
        assert_eq!(ring.window(T + 3 * WINDOW_MS).count(), 0);
        assert_eq!(ring.errors_in_window(T + 3 * WINDOW_MS), 0);
    }

    #[test]
    fn a_counter_that_starts_again_counts_from_zero() {
        let mut ring = RecentPolls::default();
        ring.record(T, Some(1), None, 7);
        ring.record(T + 1_000, Some(1), None, 2);
        let errors: Vec<u64> = ring.window(T + 1_000).map(|p| p.errors).collect();
        assert_eq!(errors, [7, 2]);
    }

    #[test]
    fn a_fast_interval_is_thinned_to_the_bound_and_still_spans_the_hour() {
        let mut ring = RecentPolls::default();
        // Two hours of polls every second, one error each: 7,200 polls.
        let mut last = T;
        for i in 0..7_200i64 {
            last = T + i * 1_000;
            ring.record(last, Some(i as u64), Some(100), i as u64 + 1);
            assert!(ring.len() <= MAX_POINTS);
        }
        assert_eq!(ring.len(), MAX_POINTS);
        let points: Vec<&PollPoint> = ring.window(last).collect();
        assert_eq!(points.len(), MAX_POINTS);
        // The newest poll is the last point; the oldest lies near the start of the hour.
        assert_eq!(points.last().map(|p| p.at_ms), Some(last));
        let first = points.first().map_or(i64::MAX, |p| p.at_ms);
        assert!(
            first > last - WINDOW_MS && first <= last - WINDOW_MS + 20_000,
            "{}",
            last - first
        );
        // Evenly thinned: no gap over 20 s.
        for pair in points.windows(2) {
            assert!(pair[1].at_ms - pair[0].at_ms <= 20_000, "{pair:?}");
        }
        // The errors of the window: one per poll since the point before the first.
        let sum = ring.errors_in_window(last);
        assert!((3_600..=3_620).contains(&sum), "{sum}");
    }

    #[test]
    fn a_slow_interval_keeps_every_poll_of_the_hour() {
        let mut ring = RecentPolls::default();
        for i in 0..100i64 {
            ring.record(T + i * 60_000, Some(1), None, 0);
        }
        assert_eq!(ring.window(T + 99 * 60_000).count(), 60);
    }
}
