//! OpenMetrics 1.0 text: the family table's [`OpenMetricsWriter`]. Against text 0.0.4: a
//! counter family is named without its `_total` (its samples keep it), every counter and
//! histogram has a `_created` sample (seconds since the epoch), a family whose name ends in a
//! unit has `# UNIT`, help text escapes double quotes too, numbers are canonical floats (`1.0`),
//! and the exposition ends with `# EOF` ([`EOF`]).

use std::io::Write as _;

use super::families::{Durations, Kind, PREFIX, Writer, cumulative_buckets};
use super::text::{Sink, write_labels};
use crate::session::UnixMillis;

/// The last line of an OpenMetrics exposition.
pub const EOF: &[u8] = b"# EOF\n";

/// Units recognised at the end of a family name (`# UNIT`).
const UNITS: [&str; 3] = ["seconds", "bytes", "ratio"];

/// The OpenMetrics [`Writer`] over a sink.
pub struct OpenMetricsWriter<'a> {
    out: &'a mut dyn Sink,
    prefix: &'static str,
}

impl<'a> OpenMetricsWriter<'a> {
    /// A writer appending to `out`, names prefixed with [`PREFIX`].
    pub fn new(out: &'a mut dyn Sink) -> Self {
        OpenMetricsWriter::with_prefix(out, PREFIX)
    }

    /// A writer appending to `out`, names prefixed with `prefix`.
    pub fn with_prefix(out: &'a mut dyn Sink, prefix: &'static str) -> Self {
        OpenMetricsWriter { out, prefix }
    }

    /// Writes `<prefix><name><suffix>{labels, extra} value`.
    fn line(&mut self, name: &str, suffix: &str, labels: &[&[(&str, &str)]], value: f64) {
        let out = self.out.buf();
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        write_labels(out, labels.iter().flat_map(|l| l.iter()));
        out.push(b' ');
        push_float(out, value);
        out.push(b'\n');
        self.out.sample_written();
    }
}

/// The family name of a counter: its name without `_total`.
fn family_name(name: &str, kind: Kind) -> &str {
    match kind {
        Kind::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

/// Seconds since the epoch of a created timestamp.
fn seconds(ms: UnixMillis) -> f64 {
    ms as f64 / 1000.0
}

impl Writer for OpenMetricsWriter<'_> {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let prefix = self.prefix;
        let family = family_name(name, kind);
        let out = self.out.buf();
        let _ = write!(out, "# HELP {prefix}{family} ");
        escape_help(out, help);
        let _ = writeln!(out, "\n# TYPE {prefix}{family} {}", kind.as_str());
        if let Some(unit) = UNITS.iter().find(|u| {
            family
                .strip_suffix(*u)
                .is_some_and(|rest| rest.ends_with('_'))
        }) {
            let _ = writeln!(out, "# UNIT {prefix}{family} {unit}");
        }
    }

    fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        created: Option<UnixMillis>,
    ) {
        self.line(name, "", &[labels, extra], value);
        if let Some(ms) = created {
            let family = family_name(name, Kind::Counter);
            self.line(family, "_created", &[labels, extra], seconds(ms));
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], d: Durations<'_>) {
        let h = d.classic;
        let mut le = Vec::new();
        for (bound, cumulative) in cumulative_buckets(h) {
            le.clear();
            push_float(&mut le, bound);
            let le = std::str::from_utf8(&le).unwrap_or("NaN");
            self.line(name, "_bucket", &[labels, &[("le", le)]], cumulative as f64);
        }
        self.line(
            name,
            "_bucket",
            &[labels, &[("le", "+Inf")]],
            h.count as f64,
        );
        self.line(name, "_count", &[labels], h.count as f64);
        self.line(name, "_sum", &[labels], h.sum);
        self.line(name, "_created", &[labels], seconds(d.created_ms));
    }
}

/// Escapes help text: backslash, double quote and line feed.
fn escape_help(out: &mut Vec<u8>, help: &str) {
    for b in help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b => out.push(b),
        }
    }
}

/// A canonical OpenMetrics float: `NaN`, `+Inf`, `-Inf`, or the shortest decimal that reads
/// back exactly, with `.0` when it would read as an integer (as the Go client writes them).
fn push_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        let start = out.len();
        let _ = write!(out, "{v}");
        if !out[start..].iter().any(|b| matches!(b, b'.' | b'e')) {
            out.extend_from_slice(b".0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Histogram;

    #[test]
    fn counters_have_created_samples_and_families_their_units() {
        let mut out = Vec::new();
        let mut w = OpenMetricsWriter::new(&mut out);
        w.header(
            "session_seconds_total",
            Kind::Counter,
            "Time \"used\"\\ by\nsessions.",
        );
        w.sample(
            "session_seconds_total",
            &[("portal_id", "p\"1")],
            &[],
            12.0,
            Some(1_700_000_000_123),
        );
        w.header("up", Kind::Gauge, "Up.");
        w.sample("up", &[("portal_id", "p")], &[], 1.0, None);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                "# HELP workspacesweb_session_seconds Time \\\"used\\\"\\\\ by\\nsessions.\n",
                "# TYPE workspacesweb_session_seconds counter\n",
                "# UNIT workspacesweb_session_seconds seconds\n",
                "workspacesweb_session_seconds_total{portal_id=\"p\\\"1\"} 12.0\n",
                "workspacesweb_session_seconds_created{portal_id=\"p\\\"1\"} 1700000000.123\n",
                "# HELP workspacesweb_up Up.\n",
                "# TYPE workspacesweb_up gauge\n",
                "workspacesweb_up{portal_id=\"p\"} 1.0\n",
            )
        );
    }

    #[test]
    fn a_histogram_is_buckets_count_sum_created() {
        let mut out = Vec::new();
        let h = Histogram {
            bounds: vec![60.0, 0.5],
            counts: vec![2, 1, 4],
            sum: 99.25,
            count: 7,
        };
        let d = Durations {
            classic: &h,
            native: None,
            created_ms: 5_000,
        };
        OpenMetricsWriter::new(&mut out).histogram("d_seconds", &[("portal_id", "p")], d);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                "workspacesweb_d_seconds_bucket{portal_id=\"p\",le=\"60.0\"} 2.0\n",
                "workspacesweb_d_seconds_bucket{portal_id=\"p\",le=\"0.5\"} 3.0\n",
                "workspacesweb_d_seconds_bucket{portal_id=\"p\",le=\"+Inf\"} 7.0\n",
                "workspacesweb_d_seconds_count{portal_id=\"p\"} 7.0\n",
                "workspacesweb_d_seconds_sum{portal_id=\"p\"} 99.25\n",
                "workspacesweb_d_seconds_created{portal_id=\"p\"} 5.0\n",
            )
        );
    }
}
