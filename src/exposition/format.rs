//! The exposition formats and what the cache asks of each: its writer over a sink, its per-user
//! families' heads, its `process_*`, its content type. One [`Format`] per format, each rendering
//! the one family table ([`super::families`]) through its own [`Writer`].

use super::deflate::{Piece, PieceWriter};
use super::families::{self, Board, PREFIX, UserFamily, Writer};
use super::openmetrics::{self, OpenMetricsWriter};
use super::process;
use super::protobuf::{self, ProtobufWriter};
use super::text::{Sink, TextWriter};
use crate::snapshot::PortalSnapshot;

/// An exposition format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text 0.0.4: the default.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// Length-delimited `io.prometheus.client.MetricFamily` protobuf messages.
    Protobuf,
}

/// Content type of the text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the protobuf format.
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

impl Format {
    /// Every format, in the order of [`Format::index`].
    pub const ALL: [Format; 3] = [Format::Text, Format::OpenMetrics, Format::Protobuf];

    /// Its position in [`Format::ALL`] (for per-format arrays).
    pub fn index(self) -> usize {
        match self {
            Format::Text => 0,
            Format::OpenMetrics => 1,
            Format::Protobuf => 2,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }

    /// Calls `write` with this format's writer over `out` (names prefixed with `prefix`), and
    /// ends what the writer holds (a protobuf family in progress).
    fn with_writer(
        self,
        out: &mut dyn Sink,
        prefix: &'static str,
        write: impl FnOnce(&mut dyn Writer),
    ) {
        match self {
            Format::Text => write(&mut TextWriter::with_prefix(out, prefix)),
            Format::OpenMetrics => write(&mut OpenMetricsWriter::with_prefix(out, prefix)),
            Format::Protobuf => {
                let mut w = ProtobufWriter::new(out, prefix);
                write(&mut w);
                w.finish();
            }
        }
    }

    /// Every `workspacesweb_*` family except the per-user ones, into `out`.
    pub fn render_head_into(self, out: &mut dyn Sink, board: Board<'_>) {
        self.with_writer(out, PREFIX, |w| families::write_head(w, board));
    }

    /// One portal's series of a per-user family, without the family's head (nothing when it
    /// has none), into `out`.
    pub fn render_user_samples_into(
        self,
        out: &mut dyn Sink,
        family: &UserFamily,
        p: &PortalSnapshot,
    ) {
        match self {
            Format::Protobuf => {
                family.write_samples(&mut ProtobufWriter::series_only(out, family.kind()), p);
            }
            _ => self.with_writer(out, PREFIX, |w| family.write_samples(w, p)),
        }
    }

    /// One portal's series of a per-user family, compressed.
    pub fn user_samples(self, family: &UserFamily, p: &PortalSnapshot) -> Piece {
        let mut piece = PieceWriter::new();
        self.render_user_samples_into(&mut piece, family, p);
        piece.finish()
    }

    /// The head of a per-user family whose series are `samples` (in protobuf, it holds the
    /// length of the whole family message), compressed.
    pub fn user_head(self, family: &UserFamily, samples: &[&Piece]) -> Piece {
        match self {
            Format::Protobuf => {
                let len = samples.iter().map(|p| p.text_len()).sum();
                let head = protobuf::family_head(family.name(), family.kind(), &family.help(), len);
                Piece::compress(&head)
            }
            _ => {
                let mut out = Vec::new();
                self.with_writer(&mut out, PREFIX, |w| family.write_header(w));
                Piece::compress(&out)
            }
        }
    }

    /// The `process_*` families gathered now, and what ends the exposition (OpenMetrics'
    /// `# EOF`), uncompressed.
    pub fn process_and_end(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2048);
        self.with_writer(&mut out, "", process::write);
        if self == Format::OpenMetrics {
            out.extend_from_slice(openmetrics::EOF);
        }
        out
    }
}
