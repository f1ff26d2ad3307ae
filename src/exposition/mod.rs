//! The exposition served on `/metrics`, built from the store's snapshots and the process status.
//!
//! | file | what |
//! |---|---|
//! | [`families`] | the family table: every `workspacesweb_*` family and how its samples are read, written through a [`families::Writer`] |
//! | [`text`] | the text format 0.0.4: the table's [`text::TextWriter`], escaping and value formatting |
//! | [`process`] | the `process_*` families |
//! | [`deflate`] | compressed pieces joined into one gzip stream |
//! | `cache.rs` | [`Exposition`]: rendered once per change, per-portal compressed pieces, scrapes |
//!
//! Another format (protobuf, OpenMetrics) is another [`families::Writer`] beside [`text`], and a
//! rendering of it in the cache.

mod cache;
pub mod deflate;
pub mod families;
pub mod process;
pub mod text;

pub use cache::{
    Exposition, PROCESS_MAX_AGE, RENDER_GAP_MIN, Rendered, render_after_changes, render_text,
    spawn_renderer,
};
