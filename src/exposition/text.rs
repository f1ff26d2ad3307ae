//! The Prometheus text format 0.0.4: a [`Writer`] of the family table that writes `# HELP`,
//! `# TYPE` and sample lines into a [`Sink`] (a `String`, or a compressor that takes the text as
//! it grows), and the renderings of the board in that format.

use std::fmt::Write as _;

use bytes::Bytes;

use super::deflate::PieceWriter;
use super::families::{self, Board, Kind, PREFIX, USER_FAMILIES, UserFamily, Writer};
use super::process;
use crate::ledger::Histogram;
use crate::snapshot::PortalSnapshot;

/// Where rendered text goes: a `String`, or a compressor that takes the text as it grows (so a
/// large exposition is never in memory as text).
pub trait Sink {
    /// The buffer to append text to.
    fn text(&mut self) -> &mut String;
    /// Called after each sample; a compressor takes the buffered text here.
    fn sample_written(&mut self) {}
}

impl Sink for String {
    fn text(&mut self) -> &mut String {
        self
    }
}

impl Sink for PieceWriter {
    fn text(&mut self) -> &mut String {
        self.pending()
    }

    fn sample_written(&mut self) {
        self.drain_if_full();
    }
}

/// The text format's [`Writer`] over a sink.
pub struct TextWriter<'a> {
    out: &'a mut dyn Sink,
}

impl<'a> TextWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut dyn Sink) -> Self {
        TextWriter { out }
    }

    /// Writes `workspacesweb_<name><suffix>{labels, extra} value`.
    fn line(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
    ) {
        let out = self.out.text();
        out.push_str(PREFIX);
        out.push_str(name);
        out.push_str(suffix);
        write_labels(out, labels.iter().chain(extra.iter()));
        out.push(' ');
        push_value(out, value);
        out.push('\n');
        self.out.sample_written();
    }
}

impl Writer for TextWriter<'_> {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let text = self.out.text();
        let _ = writeln!(text, "# HELP {PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(text, "# TYPE {PREFIX}{name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        self.line(name, "", labels, extra, value);
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            le.clear();
            push_value(&mut le, *bound);
            self.line(name, "_bucket", labels, &[("le", &le)], cumulative as f64);
        }
        self.line(name, "_bucket", labels, &[("le", "+Inf")], h.count as f64);
        self.line(name, "_sum", labels, &[], h.sum);
        self.line(name, "_count", labels, &[], h.count as f64);
    }
}

fn write_labels<'x>(out: &mut String, labels: impl Iterator<Item = &'x (&'x str, &'x str)>) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// Escapes a label value: backslash, double quote and line feed (text format 0.0.4).
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The whole exposition: portal series, exporter series and `process_*`.
pub fn render(board: Board<'_>) -> Bytes {
    let mut out = render_main(board).into_bytes();
    out.extend_from_slice(&process::render());
    Bytes::from(out)
}

/// The part of the exposition that changes only when a snapshot is published: every
/// `workspacesweb_*` series (portal, discovery and exporter series), without `process_*`.
/// Laid out as [`render_head_into`], then each of [`USER_FAMILIES`]: its header (when any portal has a
/// sample of it) and every portal's [`render_user_samples`], which is how the server assembles it.
pub fn render_main(board: Board<'_>) -> String {
    let users: usize = board.portals.iter().map(|p| p.users.len()).sum();
    let mut out = String::with_capacity(4096 + board.portals.len() * 2048 + users * 256);
    render_head_into(&mut out, board);
    for family in &USER_FAMILIES {
        let samples: Vec<String> = board
            .portals
            .iter()
            .map(|p| render_user_samples(family, p))
            .collect();
        if samples.iter().any(|s| !s.is_empty()) {
            out.push_str(&user_header(family));
            samples.iter().for_each(|s| out.push_str(s));
        }
    }
    out
}

/// Every `workspacesweb_*` family except the per-user ones, whose samples are rendered per
/// portal (they are most of the exposition, and most portals do not change between renderings).
pub fn render_head_into(out: &mut dyn Sink, board: Board<'_>) {
    families::write_head(&mut TextWriter::new(out), board);
}

/// The `# HELP` and `# TYPE` lines of a per-user family.
pub fn user_header(family: &UserFamily) -> String {
    let mut out = String::new();
    family.write_header(&mut TextWriter::new(&mut out));
    out
}

/// One portal's samples of a per-user family, without the header ("" when it has none).
pub fn render_user_samples(family: &UserFamily, p: &PortalSnapshot) -> String {
    let mut out = String::with_capacity(p.users.len() * 128);
    render_user_samples_into(&mut out, family, p);
    out
}

/// [`render_user_samples`] into a sink.
pub fn render_user_samples_into(out: &mut dyn Sink, family: &UserFamily, p: &PortalSnapshot) {
    family.write_samples(&mut TextWriter::new(out), p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_like_prometheus() {
        let mut s = String::new();
        for v in [
            1.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -3.0,
            1e20,
        ] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.5 NaN +Inf -Inf -3 100000000000000000000 ");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd é 😀");
        assert_eq!(s, "a\\\"b\\\\c\\nd é 😀");
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_then_sum_and_count() {
        let mut out = String::new();
        let h = Histogram {
            bounds: vec![60.0, 0.5],
            counts: vec![2, 1, 4],
            sum: 99.25,
            count: 7,
        };
        TextWriter::new(&mut out).histogram("d", &[("portal_id", "p")], &h);
        assert_eq!(
            out,
            concat!(
                "workspacesweb_d_bucket{portal_id=\"p\",le=\"60\"} 2\n",
                "workspacesweb_d_bucket{portal_id=\"p\",le=\"0.5\"} 3\n",
                "workspacesweb_d_bucket{portal_id=\"p\",le=\"+Inf\"} 7\n",
                "workspacesweb_d_sum{portal_id=\"p\"} 99.25\n",
                "workspacesweb_d_count{portal_id=\"p\"} 7\n",
            )
        );
    }
}
