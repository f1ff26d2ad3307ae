//! Concurrency between two polls: the exact peak and the time spent at the portal's limit, swept
//! over the start and end events of the sessions that overlap the interval (see "Concurrency" in
//! the [module docs](super)).

use crate::session::UnixMillis;

/// What one interval `(from, to]` held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct IntervalFigures {
    /// Highest concurrency at any instant of `(from, to]`.
    pub(super) peak: u64,
    /// Milliseconds of `[max(from, count_from), to)` with concurrency `>= limit` (0 without a limit).
    pub(super) at_capacity_ms: i64,
}

/// Evaluates the concurrency over `(from, to]` (`from < to`) from the sessions' spans.
///
/// A span `(start, end)` is the half-open `[start, end)`, `end == None` for a session still open:
/// concurrency at `t` is the number of spans with `start <= t < end`, so at one instant an end
/// goes before a start and a span with `end <= start` never counts. Spans that miss the interval
/// are skipped here, so the caller may pass every session it holds.
pub(super) fn evaluate(
    spans: impl Iterator<Item = (UnixMillis, Option<UnixMillis>)>,
    from: UnixMillis,
    to: UnixMillis,
    count_from: UnixMillis,
    limit: Option<u64>,
) -> IntervalFigures {
    // Concurrency just after `from`, and the +1/-1 events inside the interval.
    let mut base: i64 = 0;
    let mut events: Vec<(UnixMillis, i64)> = Vec::new();
    for (start, end) in spans {
        if start > to || end.is_some_and(|e| e <= start || e <= from) {
            continue;
        }
        if start <= from {
            base += 1;
        } else {
            events.push((start, 1));
        }
        if let Some(e) = end.filter(|e| *e <= to) {
            events.push((e, -1));
        }
    }
    // By time, and at one instant the ends (-1) before the starts (+1): the running count never
    // overshoots the concurrency of that instant, so the peak can be taken after every event.
    events.sort_unstable();

    let limit = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    let counted_from = from.max(count_from);
    let mut at_capacity_ms: i64 = 0;
    // The segment `[since, t)` before each event holds `current`.
    let mut add_segment = |current: i64, since: UnixMillis, until: UnixMillis| {
        if limit.is_some_and(|l| current >= l) {
            let len = until.min(to).saturating_sub(since.max(counted_from)).max(0);
            at_capacity_ms = at_capacity_ms.saturating_add(len);
        }
    };
    let (mut current, mut peak, mut since) = (base, base, from);
    for (t, delta) in events {
        add_segment(current, since, t);
        current += delta;
        peak = peak.max(current);
        since = t;
    }
    add_segment(current, since, to);
    IntervalFigures {
        peak: u64::try_from(peak).unwrap_or(0),
        at_capacity_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(spans: &[(i64, Option<i64>)], from: i64, to: i64, limit: Option<u64>) -> (u64, i64) {
        let f = evaluate(spans.iter().copied(), from, to, i64::MIN, limit);
        (f.peak, f.at_capacity_ms)
    }

    #[test]
    fn an_end_and_a_start_at_the_same_millisecond_do_not_overlap() {
        // b starts exactly when a ends: never two at once.
        let spans = [(10, Some(50)), (50, Some(90))];
        assert_eq!(eval(&spans, 0, 100, Some(2)), (1, 0));
        assert_eq!(eval(&spans, 0, 100, Some(1)), (1, 80));
    }

    #[test]
    fn a_burst_inside_the_interval_is_its_peak() {
        // One long session, and three that overlap during [30, 40) only.
        let spans = [
            (-1_000, None),
            (10, Some(40)),
            (20, Some(60)),
            (30, Some(45)),
        ];
        assert_eq!(eval(&spans, 0, 100, Some(4)), (4, 10));
        assert_eq!(eval(&spans, 0, 100, Some(3)), (4, 10 + 10 + 5));
        assert_eq!(eval(&spans, 0, 100, None), (4, 0));
    }

    #[test]
    fn concurrency_just_after_the_previous_poll_counts() {
        // Two sessions running at `from`, one of which ends at once.
        let spans = [(-5, Some(1)), (-5, None)];
        assert_eq!(eval(&spans, 0, 100, Some(2)), (2, 1));
        // Sessions that ended at `from` or start after `to` are outside.
        let spans = [(-5, Some(0)), (101, None), (-5, None)];
        assert_eq!(eval(&spans, 0, 100, Some(1)), (1, 100));
    }

    #[test]
    fn events_at_the_poll_itself_count_in_the_peak_not_in_the_time() {
        let spans = [(-5, None), (100, None)];
        assert_eq!(eval(&spans, 0, 100, Some(2)), (2, 0));
    }

    #[test]
    fn empty_and_inverted_spans_never_count() {
        let spans = [(20, Some(20)), (30, Some(10))];
        assert_eq!(eval(&spans, 0, 100, Some(1)), (0, 0));
    }

    #[test]
    fn time_before_count_from_is_not_at_capacity() {
        let f = evaluate([(0, None)].into_iter(), 0, 100, 60, Some(1));
        assert_eq!((f.peak, f.at_capacity_ms), (1, 40));
    }

    #[test]
    fn extreme_times_saturate() {
        let spans = [(i64::MIN, Some(i64::MAX)), (i64::MIN + 1, None)];
        let f = evaluate(spans.into_iter(), i64::MIN, i64::MAX, i64::MIN, Some(1));
        assert_eq!(f.peak, 2);
        assert_eq!(f.at_capacity_ms, i64::MAX);
    }
}
