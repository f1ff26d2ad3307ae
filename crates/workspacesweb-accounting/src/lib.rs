//! workspacesweb-accounting: the exact accounting of AWS WorkSpaces Secure Browser sessions,
//! as pure code (no I/O, no async runtime, no AWS SDK).
//!
//! [`session`] records (what the API lists, as plain data) go into a portal's [`ledger`], which
//! counts each session exactly once and keeps the aggregates; [`users`] maps the ledger's
//! per-user aggregates to the label values the exporter shows. The exporter
//! (`workspacesweb-exporter`) polls the API, feeds the ledger and exposes what it holds.
#![deny(missing_docs, unreachable_pub)]

pub mod ledger;
pub mod session;
pub mod users;
