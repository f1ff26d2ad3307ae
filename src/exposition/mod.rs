//! The exposition served on `/metrics`, built from the store's snapshots and the process status.
//!
//! | file | what |
//! |---|---|
//! | [`families`] | the family table: every `workspacesweb_*` family and how its samples are read, written through a [`families::Writer`] |
//! | [`text`] | the text format 0.0.4: the table's [`text::TextWriter`], escaping and value formatting |
//! | [`openmetrics`] | OpenMetrics 1.0 text: [`openmetrics::OpenMetricsWriter`] (`_created`, `# UNIT`, `# EOF`) |
//! | [`protobuf`] | the protobuf format: its messages and [`protobuf::ProtobufWriter`] (created timestamps, native buckets) |
//! | [`format`] | [`Format`]: each format's writer, per-user family heads and `process_*`, for the cache |
//! | [`process`] | the `process_*` families, through the same writers |
//! | [`deflate`] | compressed pieces joined into one gzip stream |
//! | `cache.rs` | [`Exposition`]: rendered once per change and format, per-portal compressed pieces, scrapes |
//!
//! Another format is another [`families::Writer`] and a [`Format`] variant; a family added to the
//! table appears in every format.

mod cache;
pub mod deflate;
pub mod families;
pub mod format;
pub mod openmetrics;
pub mod process;
pub mod protobuf;
pub mod text;

pub use cache::{
    Exposition, PROCESS_MAX_AGE, RENDER_GAP_MIN, Rendered, WANTED_FOR, render_after_changes,
    render_text, spawn_renderer,
};
pub use format::Format;
