//! The landing page's sparkline: a portal's active sessions over the last hour as inline SVG (no
//! script, no external asset), with its capacity (`maxConcurrentSessions`) as a dashed step line.
//!
//! The x axis runs from the first poll of the hour (an hour ago at most: see [`span_ms`]) to the
//! render time; the page says which span that is. A failed poll breaks the line (no value is
//! invented); a lone value between two gaps is a dot. The y axis runs from 0 to the largest value
//! of the span (active or capacity). Only numbers and the caller's `span` words go into the SVG:
//! nothing from outside needs escaping.

use std::fmt::Write;

use crate::recent_polls::{PollPoint, WINDOW_MS};
use crate::session::UnixMillis;

/// Width of the drawing, in CSS pixels.
pub(super) const WIDTH: f64 = 180.0;
/// Height of the drawing, in CSS pixels.
pub(super) const HEIGHT: f64 = 36.0;
/// Room kept above and below the lines, so that a stroke at 0 or at the top shows whole.
const PAD: f64 = 2.0;
/// Stroke of the active sessions' line (a colour used nowhere else on the page).
pub(super) const ACTIVE_COLOUR: &str = "#1f77b4";
/// Stroke of the capacity line (a colour used nowhere else on the page).
pub(super) const CAPACITY_COLOUR: &str = "#d62728";

/// How far back the drawing reaches from `now_ms`: to the first of `points` (those of the last
/// hour, oldest first), so that a portal polled for a minute fills the width too.
pub(super) fn span_ms(points: &[&PollPoint], now_ms: UnixMillis) -> i64 {
    points
        .first()
        .map_or(0, |p| now_ms.saturating_sub(p.at_ms).clamp(0, WINDOW_MS))
}

/// The sparkline of the points of the hour ending at `now_ms` (oldest first), `span` saying in
/// words how far back it reaches (its title); `None` when there are none.
pub(super) fn svg(points: &[&PollPoint], now_ms: UnixMillis, span: &str) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let scale = Scale::of(points, now_ms);
    let mut out = String::with_capacity(256 + points.len() * 24);
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        out,
        "<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{summary}\">\
         <title>{summary}</title>",
        summary = summary(points, span),
    );
    capacity_line(&mut out, points, &scale);
    for run in active_runs(points, &scale) {
        if let [only] = run.as_slice() {
            let _ = write!(
                out,
                "<circle class=\"active\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.5\" fill=\"{ACTIVE_COLOUR}\"/>",
                only.0, only.1
            );
            continue;
        }
        let _ = write!(
            out,
            "<polyline class=\"active\" fill=\"none\" stroke=\"{ACTIVE_COLOUR}\" \
             stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"{}\"/>",
            coordinates(&run)
        );
    }
    out.push_str("</svg>");
    Some(out)
}

/// Maps times and values to the drawing's coordinates.
struct Scale {
    now_ms: UnixMillis,
    span_ms: i64,
    max: f64,
}

impl Scale {
    fn of(points: &[&PollPoint], now_ms: UnixMillis) -> Scale {
        let max = points
            .iter()
            .flat_map(|p| [p.active, p.capacity])
            .flatten()
            .max()
            .unwrap_or(0)
            .max(1);
        Scale {
            now_ms,
            span_ms: span_ms(points, now_ms),
            max: max as f64,
        }
    }

    /// 0 at the start of the span, `WIDTH` now (and for everything when the span is empty).
    fn x(&self, at_ms: UnixMillis) -> f64 {
        if self.span_ms <= 0 {
            return WIDTH;
        }
        let before_now = self.now_ms.saturating_sub(at_ms).clamp(0, self.span_ms);
        (1.0 - before_now as f64 / self.span_ms as f64) * WIDTH
    }

    fn y(&self, value: u64) -> f64 {
        HEIGHT - PAD - (value as f64 / self.max).min(1.0) * (HEIGHT - 2.0 * PAD)
    }
}

/// The active sessions as runs of consecutive successful polls, in drawing coordinates.
fn active_runs(points: &[&PollPoint], scale: &Scale) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut run = Vec::new();
    for point in points {
        match point.active {
            Some(active) => run.push((scale.x(point.at_ms), scale.y(active))),
            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
            None => {}
        }
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The capacity as a step line: each known value holds until the next poll (the last one until
/// now); a poll that did not know it breaks the line.
fn capacity_line(out: &mut String, points: &[&PollPoint], scale: &Scale) {
    let mut run: Vec<(f64, f64)> = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let x = scale.x(point.at_ms);
        let x_next = points.get(i + 1).map_or(WIDTH, |p| scale.x(p.at_ms));
        match point.capacity {
            Some(capacity) => {
                let y = scale.y(capacity);
                match run.last() {
                    Some(&(_, last_y)) if last_y == y => {}
                    Some(&(_, last_y)) => run.extend([(x, last_y), (x, y)]),
                    None => run.push((x, y)),
                }
                if i + 1 == points.len() || points[i + 1].capacity.is_none() {
                    run.push((x_next, y));
                    capacity_run(out, &mut run);
                }
            }
            None => capacity_run(out, &mut run),
        }
    }
}

/// Writes one run of the capacity line, and empties it.
fn capacity_run(out: &mut String, run: &mut Vec<(f64, f64)>) {
    if run.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<polyline class=\"capacity\" fill=\"none\" stroke=\"{CAPACITY_COLOUR}\" \
         stroke-width=\"1\" stroke-dasharray=\"4 3\" points=\"{}\"/>",
        coordinates(run)
    );
    run.clear();
}

/// `x,y x,y ...` with one decimal.
fn coordinates(points: &[(f64, f64)]) -> String {
    let mut out = String::with_capacity(points.len() * 12);
    for (i, (x, y)) in points.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{x:.1},{y:.1}");
    }
    out
}

/// What the drawing shows, in words (its title and accessible name).
fn summary(points: &[&PollPoint], span: &str) -> String {
    let values: Vec<u64> = points.iter().filter_map(|p| p.active).collect();
    let failed = points.len() - values.len();
    let mut text = format!(
        "Active sessions over the last {span}: {} polls",
        points.len()
    );
    if let (Some(min), Some(max), Some(last)) =
        (values.iter().min(), values.iter().max(), values.last())
    {
        let _ = write!(text, ", min {min}, max {max}, last {last}");
    }
    if failed > 0 {
        let _ = write!(text, ", {failed} failed");
    }
    if let Some(capacity) = points.iter().rev().find_map(|p| p.capacity) {
        let _ = write!(text, "; capacity {capacity}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = 1_800_000_000_000;

    fn point(minutes_ago: i64, active: Option<u64>, capacity: Option<u64>) -> PollPoint {
        PollPoint {
            at_ms: NOW - minutes_ago * 60_000,
            active,
            capacity,
            errors: 0,
        }
    }

    fn draw(points: &[PollPoint]) -> String {
        let refs: Vec<&PollPoint> = points.iter().collect();
        svg(&refs, NOW, "span").expect("points to draw")
    }

    /// The `points` attribute of every element of `class` in `svg`.
    fn polylines<'a>(svg: &'a str, class: &str) -> Vec<&'a str> {
        svg.split(&format!("<polyline class=\"{class}\""))
            .skip(1)
            .filter_map(|rest| rest.split("points=\"").nth(1)?.split('"').next())
            .collect()
    }

    #[test]
    fn nothing_to_draw_without_points() {
        assert_eq!(svg(&[], NOW, "hour"), None);
        assert_eq!(span_ms(&[], NOW), 0);
    }

    #[test]
    fn the_hour_runs_left_to_right_and_values_bottom_to_top() {
        // Capacity 10 over the whole span; the y axis tops at 10.
        let svg = draw(&[
            point(60, Some(0), Some(10)),
            point(30, Some(5), Some(10)),
            point(0, Some(10), Some(10)),
        ]);
        assert!(svg.starts_with("<svg class=\"spark\" xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        // x: 0, 90, 180 over 180 px; y: 34 (0), 18 (5), 2 (10) over 36 px with 2 px of padding.
        assert_eq!(polylines(&svg, "active"), ["0.0,34.0 90.0,18.0 180.0,2.0"]);
        // Capacity: one level, from the first poll to now.
        assert_eq!(polylines(&svg, "capacity"), ["0.0,2.0 180.0,2.0"]);
        assert!(svg.contains(
            "<title>Active sessions over the last span: 3 polls, min 0, max 10, last 10; capacity 10</title>"
        ));
    }

    #[test]
    fn a_shorter_history_fills_the_width_from_its_first_poll() {
        let points = [
            point(40, Some(2), None),
            point(30, Some(4), None),
            point(20, None, None),
            point(10, Some(4), None),
            point(5, None, None),
        ];
        let refs: Vec<&PollPoint> = points.iter().collect();
        assert_eq!(span_ms(&refs, NOW), 40 * 60_000);
        assert_eq!(
            span_ms(&refs[..1], NOW - 41 * 60_000),
            0,
            "a clock step back"
        );
        let old = [point(90, Some(1), None)];
        assert_eq!(span_ms(&[&old[0]], NOW), WINDOW_MS, "an hour at most");
    }

    #[test]
    fn a_failed_poll_breaks_the_line_and_a_lone_value_is_a_dot() {
        // Forty minutes of polls: x runs 0 to 180 over them.
        let svg = draw(&[
            point(40, Some(2), None),
            point(30, Some(4), None),
            point(20, None, None),
            point(10, Some(4), None),
            point(5, None, None),
        ]);
        // The y axis tops at the largest active value, 4.
        assert_eq!(polylines(&svg, "active"), ["0.0,18.0 45.0,2.0"]);
        assert!(svg.contains("<circle class=\"active\" cx=\"135.0\" cy=\"2.0\" r=\"1.5\""));
        assert!(polylines(&svg, "capacity").is_empty(), "no capacity known");
        assert!(svg.contains("5 polls, min 2, max 4, last 4, 2 failed</title>"));
    }

    #[test]
    fn capacity_is_a_step_line_broken_where_unknown() {
        let svg = draw(&[
            point(50, Some(1), Some(4)),
            point(40, Some(1), Some(8)),
            point(30, Some(1), None),
            point(20, Some(1), Some(8)),
        ]);
        // Fifty minutes of polls, 36 px each ten; y of 4 is 18, of 8 is 2 (the axis tops at 8).
        assert_eq!(
            polylines(&svg, "capacity"),
            [
                "0.0,18.0 36.0,18.0 36.0,2.0 72.0,2.0",
                "108.0,2.0 180.0,2.0"
            ]
        );
        assert_eq!(polylines(&svg, "active").len(), 1);
    }

    #[test]
    fn points_outside_the_hour_are_pinned_to_its_edges() {
        // The caller passes the window; a clock step must still not draw outside the box.
        let svg = draw(&[point(90, Some(1), None), point(-5, Some(1), None)]);
        assert_eq!(polylines(&svg, "active"), ["0.0,2.0 180.0,2.0"]);
        // One poll, just now: a dot at the right edge.
        let svg = draw(&[point(0, Some(1), None)]);
        assert!(
            svg.contains("<circle class=\"active\" cx=\"180.0\" cy=\"2.0\""),
            "{svg}"
        );
    }
}
