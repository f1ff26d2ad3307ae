//! workspacesweb-exporter: Prometheus metrics for AWS WorkSpaces Secure Browser (WorkSpaces Web) sessions.
//!
//! Data flows one way: [`config`] → [`aws`] → [`poll`] → [`ledger`] → [`snapshot`] → [`metrics`] → [`http`].
//! The simulator of the API is a crate of its own (`crates/workspacesweb-sim`), used here only
//! by [`demo`] (the default cargo feature `demo`).
#![deny(missing_docs, unreachable_pub)]

pub mod aws;
pub mod build_info;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod discovery;
pub mod exposition;
pub mod http;
pub mod poll;
pub mod reconcile;
pub mod reload;
pub mod snapshot;
pub mod status;
pub mod storage;
pub mod telemetry;

pub use workspacesweb_accounting::{ledger, session, users};

/// Version of this build.
pub use build_info::VERSION;
