//! The Prometheus text format 0.0.4: a [`Writer`] of the family table that writes `# HELP`,
//! `# TYPE` and sample lines into a [`Sink`] (a buffer, or a compressor that takes the bytes as
//! they grow), and the renderings of the board in that format. It shows no created timestamps
//! and no native buckets.

use std::io::Write as _;

use bytes::Bytes;

use super::deflate::PieceWriter;
use super::families::{self, Board, Durations, Kind, PREFIX, USER_FAMILIES, UserFamily, Writer};
use super::process;
use crate::session::UnixMillis;
use crate::snapshot::PortalSnapshot;

/// Where a rendering goes: a buffer, or a compressor that takes the bytes as they grow (so a
/// large exposition is never in memory uncompressed).
pub trait Sink {
    /// The buffer to append to.
    fn buf(&mut self) -> &mut Vec<u8>;
    /// Called after each sample; a compressor takes the buffered bytes here.
    fn sample_written(&mut self) {}
}

impl Sink for Vec<u8> {
    fn buf(&mut self) -> &mut Vec<u8> {
        self
    }
}

impl Sink for PieceWriter {
    fn buf(&mut self) -> &mut Vec<u8> {
        self.pending()
    }

    fn sample_written(&mut self) {
        self.drain_if_full();
    }
}

/// The text format's [`Writer`] over a sink.
pub struct TextWriter<'a> {
    out: &'a mut dyn Sink,
    prefix: &'static str,
}

impl<'a> TextWriter<'a> {
    /// A writer appending to `out`, names prefixed with [`PREFIX`].
    pub fn new(out: &'a mut dyn Sink) -> Self {
        TextWriter::with_prefix(out, PREFIX)
    }

    /// A writer appending to `out`, names prefixed with `prefix`.
    pub fn with_prefix(out: &'a mut dyn Sink, prefix: &'static str) -> Self {
        TextWriter { out, prefix }
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
        let out = self.out.buf();
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        write_labels(out, labels.iter().chain(extra.iter()));
        out.push(b' ');
        push_value(out, value);
        out.push(b'\n');
        self.out.sample_written();
    }
}

impl Writer for TextWriter<'_> {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let prefix = self.prefix;
        let out = self.out.buf();
        let _ = writeln!(out, "# HELP {prefix}{name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {prefix}{name} {}", kind.as_str());
    }

    fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        _created: Option<UnixMillis>,
    ) {
        self.line(name, "", labels, extra, value);
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], d: Durations<'_>) {
        let h = d.classic;
        let mut le = Vec::new();
        for (bound, cumulative) in families::cumulative_buckets(h) {
            le.clear();
            push_value(&mut le, bound);
            let le = std::str::from_utf8(&le).unwrap_or("NaN");
            self.line(name, "_bucket", labels, &[("le", le)], cumulative as f64);
        }
        self.line(name, "_bucket", labels, &[("le", "+Inf")], h.count as f64);
        self.line(name, "_sum", labels, &[], h.sum);
        self.line(name, "_count", labels, &[], h.count as f64);
    }
}

/// Writes `{k="v",...}` (nothing for no labels), values escaped (the same in OpenMetrics).
pub(super) fn write_labels<'x>(
    out: &mut Vec<u8>,
    labels: impl Iterator<Item = &'x (&'x str, &'x str)>,
) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { b'{' } else { b',' });
        first = false;
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label_value(out, v);
        out.push(b'"');
    }
    if !first {
        out.push(b'}');
    }
}

/// Escapes a label value: backslash, double quote and line feed (text format 0.0.4, and
/// OpenMetrics).
pub fn escape_label_value(out: &mut Vec<u8>, v: &str) {
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
pub(super) fn push_value(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The whole exposition: portal series, exporter series and `process_*`.
pub fn render(board: Board<'_>) -> Bytes {
    let mut out = render_main(board).into_bytes();
    process::write(&mut TextWriter::with_prefix(&mut out, ""));
    Bytes::from(out)
}

/// The part of the exposition that changes only when a snapshot is published: every
/// `workspacesweb_*` series (portal, discovery and exporter series), without `process_*`.
/// Laid out as [`render_head_into`], then each of [`USER_FAMILIES`]: its header (when any portal has a
/// sample of it) and every portal's [`render_user_samples`], which is how the server assembles it.
pub fn render_main(board: Board<'_>) -> String {
    let users: usize = board.portals.iter().map(|p| p.users.len()).sum();
    let mut out = Vec::with_capacity(4096 + board.portals.len() * 2048 + users * 256);
    render_head_into(&mut out, board);
    for family in &USER_FAMILIES {
        let samples: Vec<String> = board
            .portals
            .iter()
            .map(|p| render_user_samples(family, p))
            .collect();
        if samples.iter().any(|s| !s.is_empty()) {
            out.extend_from_slice(user_header(family).as_bytes());
            samples
                .iter()
                .for_each(|s| out.extend_from_slice(s.as_bytes()));
        }
    }
    // Only valid UTF-8 is written (names, escaped label values, numbers).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Every `workspacesweb_*` family except the per-user ones, whose samples are rendered per
/// portal (they are most of the exposition, and most portals do not change between renderings).
pub fn render_head_into(out: &mut dyn Sink, board: Board<'_>) {
    families::write_head(&mut TextWriter::new(out), board);
}

/// The `# HELP` and `# TYPE` lines of a per-user family.
pub fn user_header(family: &UserFamily) -> String {
    let mut out = Vec::new();
    family.write_header(&mut TextWriter::new(&mut out));
    String::from_utf8_lossy(&out).into_owned()
}

/// One portal's samples of a per-user family, without the header ("" when it has none).
pub fn render_user_samples(family: &UserFamily, p: &PortalSnapshot) -> String {
    let mut out = Vec::with_capacity(p.users.len() * 128);
    render_user_samples_into(&mut out, family, p);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
        let mut s = Vec::new();
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
            s.push(b' ');
        }
        assert_eq!(s, b"1 0.5 NaN +Inf -Inf -3 100000000000000000000 ");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = Vec::new();
        escape_label_value(&mut s, "a\"b\\c\nd é 😀");
        assert_eq!(s, "a\\\"b\\\\c\\nd é 😀".as_bytes());
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_then_sum_and_count() {
        let mut out = Vec::new();
        let h = crate::ledger::Histogram {
            bounds: vec![60.0, 0.5],
            counts: vec![2, 1, 4],
            sum: 99.25,
            count: 7,
        };
        let d = Durations {
            classic: &h,
            native: None,
            created_ms: 0,
        };
        TextWriter::new(&mut out).histogram("d", &[("portal_id", "p")], d);
        assert_eq!(
            String::from_utf8(out).unwrap(),
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
