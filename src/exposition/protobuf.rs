//! The protobuf format (`application/vnd.google.protobuf;
//! proto=io.prometheus.client.MetricFamily; encoding=delimited`): each family one
//! `MetricFamily` message, preceded by its length as a varint. [`proto`] holds the messages of
//! `io/prometheus/client/metrics.proto` that the exporter writes, derive-annotated for `prost`
//! (no `protoc`, no generated code: the field numbers are the proto file's). Counters carry
//! `created_timestamp`; the duration histogram carries its classic buckets and its native ones.

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::families::{Durations, Kind, PREFIX, Writer, cumulative_buckets};
use super::text::Sink;
use crate::ledger::NativeHistogram;
use crate::session::UnixMillis;

/// Messages of `io.prometheus.client` (proto2; field numbers as in `metrics.proto`).
pub mod proto {
    /// `MetricType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        /// A counter.
        Counter = 0,
        /// A gauge.
        Gauge = 1,
        /// A summary (not written).
        Summary = 2,
        /// Untyped (not written).
        Untyped = 3,
        /// A histogram.
        Histogram = 4,
    }

    /// `MetricFamily`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricFamily {
        /// Family name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Help text.
        #[prost(string, optional, tag = "2")]
        pub help: Option<String>,
        /// Type.
        #[prost(enumeration = "MetricType", optional, tag = "3")]
        pub r#type: Option<i32>,
        /// Its series.
        #[prost(message, repeated, tag = "4")]
        pub metric: Vec<Metric>,
    }

    /// `Metric`: one series.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        /// Labels.
        #[prost(message, repeated, tag = "1")]
        pub label: Vec<LabelPair>,
        /// A gauge's value.
        #[prost(message, optional, tag = "2")]
        pub gauge: Option<Gauge>,
        /// A counter's value.
        #[prost(message, optional, tag = "3")]
        pub counter: Option<Counter>,
        /// A histogram.
        #[prost(message, optional, tag = "7")]
        pub histogram: Option<Histogram>,
    }

    /// `LabelPair`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        /// Label name.
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        /// Label value.
        #[prost(string, optional, tag = "2")]
        pub value: Option<String>,
    }

    /// `Gauge`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Gauge {
        /// Value.
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
    }

    /// `Counter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        /// Value.
        #[prost(double, optional, tag = "1")]
        pub value: Option<f64>,
        /// When the counter was 0.
        #[prost(message, optional, tag = "3")]
        pub created_timestamp: Option<Timestamp>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        /// Seconds since the epoch.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `Histogram`: classic buckets and native ones.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        /// Observations.
        #[prost(uint64, optional, tag = "1")]
        pub sample_count: Option<u64>,
        /// Their sum.
        #[prost(double, optional, tag = "2")]
        pub sample_sum: Option<f64>,
        /// Classic buckets, cumulative, increasing bounds, `+Inf` left out.
        #[prost(message, repeated, tag = "3")]
        pub bucket: Vec<Bucket>,
        /// Native schema.
        #[prost(sint32, optional, tag = "5")]
        pub schema: Option<i32>,
        /// Width of the zero bucket.
        #[prost(double, optional, tag = "6")]
        pub zero_threshold: Option<f64>,
        /// Observations in the zero bucket.
        #[prost(uint64, optional, tag = "7")]
        pub zero_count: Option<u64>,
        /// Spans of positive native buckets.
        #[prost(message, repeated, tag = "12")]
        pub positive_span: Vec<BucketSpan>,
        /// Counts of positive native buckets, each as the difference from the previous one.
        #[prost(sint64, repeated, packed = "false", tag = "13")]
        pub positive_delta: Vec<i64>,
        /// When the histogram was empty.
        #[prost(message, optional, tag = "15")]
        pub created_timestamp: Option<Timestamp>,
    }

    /// `Bucket` of a classic histogram.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Bucket {
        /// Observations at or below the bound.
        #[prost(uint64, optional, tag = "1")]
        pub cumulative_count: Option<u64>,
        /// The bound.
        #[prost(double, optional, tag = "2")]
        pub upper_bound: Option<f64>,
    }

    /// `BucketSpan`: consecutive native buckets.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BucketSpan {
        /// Gap from the end of the previous span (from 0 for the first).
        #[prost(sint32, optional, tag = "1")]
        pub offset: Option<i32>,
        /// Buckets in the span.
        #[prost(uint32, optional, tag = "2")]
        pub length: Option<u32>,
    }
}

use proto::{Bucket, BucketSpan, Counter, Gauge, MetricFamily, Timestamp};

/// Field number of `MetricFamily.metric`.
const METRIC_FIELD: u32 = 4;
/// Field numbers of `Metric`: its labels and its value of each kind.
const LABEL_FIELD: u32 = 1;
const GAUGE_FIELD: u32 = 2;
const COUNTER_FIELD: u32 = 3;
const HISTOGRAM_FIELD: u32 = 7;

/// The protobuf [`Writer`]: buffers one family's series, encoded, and writes the family,
/// length first, when the next family begins or at [`finish`](Self::finish). A writer of
/// [`series_only`](Self::series_only) writes each series as a `metric` field of its own, to be
/// joined behind a family head by [`family_head`]. Series are encoded straight from the
/// borrowed labels (no message with owned strings per series).
pub struct ProtobufWriter<'a> {
    out: &'a mut dyn Sink,
    prefix: &'static str,
    family: Option<MetricFamily>,
    body: Vec<u8>,
    kind: Kind,
    framed: bool,
}

impl<'a> ProtobufWriter<'a> {
    /// A writer of whole families into `out`, names prefixed with `prefix`.
    pub fn new(out: &'a mut dyn Sink, prefix: &'static str) -> Self {
        ProtobufWriter {
            out,
            prefix,
            family: None,
            body: Vec::new(),
            kind: Kind::Gauge,
            framed: true,
        }
    }

    /// A writer of the series of a family of `kind` only, each a `metric` field.
    pub fn series_only(out: &'a mut dyn Sink, kind: Kind) -> Self {
        ProtobufWriter {
            kind,
            framed: false,
            ..ProtobufWriter::new(out, PREFIX)
        }
    }

    /// Writes the family in progress.
    pub fn finish(&mut self) {
        if let Some(head) = self.family.take() {
            let out = self.out.buf();
            write_head(&head, self.body.len() as u64, out);
            out.extend_from_slice(&self.body);
            self.body.clear();
            self.out.sample_written();
        }
    }

    /// Writes one series: its labels, then `value` as field `tag` of `Metric`.
    fn push(
        &mut self,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        tag: u32,
        value: &impl Message,
    ) {
        if self.framed {
            if self.family.is_some() {
                put_metric(&mut self.body, labels, extra, tag, value);
            }
        } else {
            put_metric(self.out.buf(), labels, extra, tag, value);
            self.out.sample_written();
        }
    }
}

/// Length of a string field `tag` holding `s`.
fn str_len(tag: u32, s: &str) -> usize {
    key_len(tag) + encoded_len_varint(s.len() as u64) + s.len()
}

/// Writes a string field `tag` holding `s`.
fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// Length of a `LabelPair` message's fields.
fn pair_len(name: &str, value: &str) -> usize {
    str_len(1, name) + str_len(2, value)
}

/// Writes a `metric` field: a `Metric` of the labels (each a `LabelPair`, both fields set) and
/// `value` as its field `tag`, byte for byte what prost writes for the same message.
fn put_metric(
    buf: &mut Vec<u8>,
    labels: &[(&str, &str)],
    extra: &[(&str, &str)],
    tag: u32,
    value: &impl Message,
) {
    let pairs = || labels.iter().chain(extra);
    let labels_len: usize = pairs()
        .map(|(k, v)| {
            let len = pair_len(k, v);
            key_len(LABEL_FIELD) + encoded_len_varint(len as u64) + len
        })
        .sum();
    let len = labels_len + prost::encoding::message::encoded_len(tag, value);
    encode_key(METRIC_FIELD, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    for (k, v) in pairs() {
        encode_key(LABEL_FIELD, WireType::LengthDelimited, buf);
        encode_varint(pair_len(k, v) as u64, buf);
        put_str(1, k, buf);
        put_str(2, v, buf);
    }
    prost::encoding::message::encode(tag, value, buf);
}

/// Writes a family's length prefix (its head plus `series_len` bytes of series) and its head.
fn write_head(head: &MetricFamily, series_len: u64, out: &mut Vec<u8>) {
    encode_varint(head.encoded_len() as u64 + series_len, out);
    head.encode_raw(out);
}

/// The `MetricFamily` type of a kind.
fn metric_type(kind: Kind) -> proto::MetricType {
    match kind {
        Kind::Counter => proto::MetricType::Counter,
        Kind::Gauge => proto::MetricType::Gauge,
        Kind::Histogram => proto::MetricType::Histogram,
    }
}

/// The head of a family (name, help, type) whose series, `series_len` bytes of `metric`
/// fields, follow it: its length prefix and fields.
pub fn family_head(name: &str, kind: Kind, help: &str, series_len: u64) -> Vec<u8> {
    let head = MetricFamily {
        name: Some(format!("{PREFIX}{name}")),
        help: Some(help.to_string()),
        r#type: Some(metric_type(kind) as i32),
        metric: Vec::new(),
    };
    let mut out = Vec::with_capacity(head.encoded_len() + 10);
    write_head(&head, series_len, &mut out);
    out
}

fn timestamp(ms: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Native buckets as spans and deltas, as the Go client writes them: a gap of one or two empty
/// buckets stays inside a span (as zero counts), a longer gap starts a new span.
pub fn spans_and_deltas(native: &NativeHistogram) -> (Vec<BucketSpan>, Vec<i64>) {
    fn append(spans: &mut [BucketSpan], deltas: &mut Vec<i64>, prev: &mut i64, count: i64) {
        if let Some(span) = spans.last_mut() {
            span.length = Some(span.length.unwrap_or(0) + 1);
        }
        deltas.push(count - *prev);
        *prev = count;
    }
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(native.buckets.len());
    let (mut prev, mut next) = (0i64, 0i32);
    for (n, (&i, &count)) in native.buckets.iter().enumerate() {
        let gap = i - next;
        if n == 0 || gap > 2 {
            spans.push(BucketSpan {
                offset: Some(gap),
                length: Some(0),
            });
        } else {
            for _ in 0..gap {
                append(&mut spans, &mut deltas, &mut prev, 0);
            }
        }
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        append(&mut spans, &mut deltas, &mut prev, count);
        next = i + 1;
    }
    (spans, deltas)
}

/// The histogram message of `d`. Classic and native buckets share the count, sum and created
/// timestamp, so both are written only while they hold the same observations; when the native
/// buckets started later (a state written before them, or a raised schema), the message is the
/// native histogram alone (text formats keep the classic one).
fn histogram(d: Durations<'_>) -> proto::Histogram {
    let classic = d.classic;
    let mut h = proto::Histogram {
        sample_count: Some(classic.count),
        sample_sum: Some(classic.sum),
        created_timestamp: Some(timestamp(d.created_ms)),
        ..Default::default()
    };
    for (bound, cumulative) in cumulative_buckets(classic) {
        h.bucket.push(Bucket {
            cumulative_count: Some(cumulative),
            upper_bound: Some(bound),
        });
    }
    let Some(native) = d.native else {
        return h;
    };
    if native.count != classic.count || native.sum() != classic.sum {
        h.bucket.clear();
        h.sample_count = Some(native.count);
        h.sample_sum = Some(native.sum());
        h.created_timestamp = Some(timestamp(native.created_ms));
    }
    let (mut spans, deltas) = spans_and_deltas(native);
    if spans.is_empty() && native.zero_count == 0 {
        // An empty native histogram with a zero threshold of 0 would look classic to a
        // scraper: a span of no buckets says it is native (as the Go client does).
        spans.push(BucketSpan {
            offset: Some(0),
            length: Some(0),
        });
    }
    h.schema = Some(i32::from(native.schema));
    h.zero_threshold = Some(0.0);
    h.zero_count = Some(native.zero_count);
    h.positive_span = spans;
    h.positive_delta = deltas;
    h
}

impl Writer for ProtobufWriter<'_> {
    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        self.finish();
        self.kind = kind;
        self.family = Some(MetricFamily {
            name: Some(format!("{}{name}", self.prefix)),
            help: Some(help.to_string()),
            r#type: Some(metric_type(kind) as i32),
            metric: Vec::new(),
        });
    }

    fn sample(
        &mut self,
        _name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        created: Option<UnixMillis>,
    ) {
        match self.kind {
            Kind::Counter => {
                let counter = Counter {
                    value: Some(value),
                    created_timestamp: created.map(timestamp),
                };
                self.push(labels, extra, COUNTER_FIELD, &counter);
            }
            _ => {
                let gauge = Gauge { value: Some(value) };
                self.push(labels, extra, GAUGE_FIELD, &gauge);
            }
        }
    }

    fn histogram(&mut self, _name: &str, labels: &[(&str, &str)], d: Durations<'_>) {
        self.push(labels, &[], HISTOGRAM_FIELD, &histogram(d));
    }
}

/// Reads a delimited stream back into its families (tests, golden files).
pub fn decode(mut bytes: &[u8]) -> Result<Vec<MetricFamily>, prost::DecodeError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut bytes)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Histogram;

    fn native(buckets: &[(i32, u64)]) -> NativeHistogram {
        let mut n = NativeHistogram::new(3, 0);
        n.buckets = buckets.iter().copied().collect();
        n.count = buckets.iter().map(|(_, c)| c).sum();
        n
    }

    #[test]
    fn small_gaps_stay_in_a_span_and_large_ones_start_another() {
        let (spans, deltas) = spans_and_deltas(&native(&[(-2, 3), (-1, 1), (2, 4), (10, 1)]));
        let spans: Vec<_> = spans
            .iter()
            .map(|s| (s.offset.unwrap_or(0), s.length.unwrap_or(0)))
            .collect();
        assert_eq!(spans, [(-2, 5), (7, 1)]);
        // Counts 3, 1, 0, 0, 4 | 1.
        assert_eq!(deltas, [3, -2, -1, 0, 4, -3]);
        assert_eq!(spans_and_deltas(&native(&[])), (vec![], vec![]));
    }

    /// Each family re-encoded by prost from its decoded message.
    fn prost_encoding(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for family in decode(bytes).unwrap() {
            family.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn series_are_encoded_byte_for_byte_as_prost_encodes_them() {
        let long = "u".repeat(300);
        let mut out = Vec::new();
        {
            let mut w = ProtobufWriter::new(&mut out, PREFIX);
            w.header("empty", Kind::Gauge, "");
            w.header("g", Kind::Gauge, "G.");
            w.sample("g", &[], &[], 0.0, None);
            w.sample(
                "g",
                &[("user", &long), ("e", "")],
                &[("op", "o")],
                -1.5,
                None,
            );
            w.header("c_total", Kind::Counter, &long);
            w.sample("c_total", &[("portal_id", "p")], &[], 7.0, None);
            w.sample("c_total", &[("portal_id", "q")], &[], 1e300, Some(-1));
            w.header("d", Kind::Histogram, "D.");
            let classic = Histogram {
                bounds: vec![1.0],
                counts: vec![1, 0],
                sum: 0.5,
                count: 1,
            };
            let d = Durations {
                classic: &classic,
                native: None,
                created_ms: 1_000,
            };
            w.histogram("d", &[("portal_id", &long)], d);
            w.finish();
        }
        assert_eq!(decode(&out).unwrap().len(), 4);
        assert_eq!(out, prost_encoding(&out));

        // A family joined from a head and series written apart is the same bytes.
        let mut series = Vec::new();
        {
            let mut w = ProtobufWriter::series_only(&mut series, Kind::Gauge);
            w.sample("g", &[("user", &long)], &[("op", "o")], 2.0, None);
            w.sample("g", &[], &[], 3.0, None);
        }
        let mut joined = family_head("g", Kind::Gauge, "G.", series.len() as u64);
        joined.extend_from_slice(&series);
        assert_eq!(decode(&joined).unwrap()[0].metric.len(), 2);
        assert_eq!(joined, prost_encoding(&joined));
    }

    #[test]
    fn families_round_trip_with_created_timestamps_and_native_buckets() {
        let mut out = Vec::new();
        {
            let mut w = ProtobufWriter::new(&mut out, PREFIX);
            w.header("x_total", Kind::Counter, "X.");
            w.sample(
                "x_total",
                &[("portal_id", "p")],
                &[("op", "o")],
                3.0,
                Some(1_500),
            );
            w.header("d", Kind::Histogram, "D.");
            let classic = Histogram {
                bounds: vec![1.0, 10.0],
                counts: vec![1, 1, 0],
                sum: 5.5,
                count: 2,
            };
            let mut n = NativeHistogram::new(0, 1_000);
            n.observe_ms(500);
            n.observe_ms(5_000);
            let d = Durations {
                classic: &classic,
                native: Some(&n),
                created_ms: 1_000,
            };
            w.histogram("d", &[("portal_id", "p")], d);
            w.finish();
        }
        let families = decode(&out).unwrap();
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].name.as_deref(), Some("workspacesweb_x_total"));
        let c = families[0].metric[0].counter.as_ref().unwrap();
        assert_eq!(c.value, Some(3.0));
        assert_eq!(
            c.created_timestamp,
            Some(Timestamp {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert_eq!(families[0].metric[0].label.len(), 2);
        let h = families[1].metric[0].histogram.as_ref().unwrap();
        assert_eq!((h.sample_count, h.sample_sum), (Some(2), Some(5.5)));
        assert_eq!(h.bucket.len(), 2);
        assert_eq!(h.schema, Some(0));
        // 0.5 s is the upper bound of bucket -1 ((0.25, 0.5]); 5 s is in bucket 3 ((4, 8]).
        assert_eq!(
            h.positive_span
                .iter()
                .map(|s| (s.offset.unwrap_or(0), s.length.unwrap_or(0)))
                .collect::<Vec<_>>(),
            [(-1, 1), (3, 1)]
        );
        assert_eq!(h.positive_delta, [1, 0]);
    }

    #[test]
    fn a_native_histogram_that_started_later_is_written_alone() {
        let classic = Histogram {
            bounds: vec![1.0],
            counts: vec![4, 0],
            sum: 2.0,
            count: 4,
        };
        let n = NativeHistogram::new(3, 9_000);
        let h = histogram(Durations {
            classic: &classic,
            native: Some(&n),
            created_ms: 1_000,
        });
        assert!(h.bucket.is_empty());
        assert_eq!((h.sample_count, h.sample_sum), (Some(0), Some(0.0)));
        assert_eq!(h.created_timestamp.map(|t| t.seconds), Some(9));
        // Empty and native: one span of no buckets.
        assert_eq!(h.positive_span.len(), 1);
        assert_eq!(h.positive_span[0].length, Some(0));
    }
}
