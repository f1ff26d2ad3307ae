//! workspacesweb-exporter: Prometheus metrics for AWS WorkSpaces Secure Browser (WorkSpaces Web) sessions.
//!
//! Data flows one way: the [`config`] says which portals to poll and how; [`aws`] reaches them;
//! [`poll`] lists their sessions into each portal's [`ledger`] and publishes a [`snapshot`];
//! [`exposition`] renders the snapshots and [`http`] serves them.
//!
//! The modules below are declared in the order of their imports: each uses only modules declared
//! above it (`tests/suite/module_chain.rs` checks it), so the list reads as the chain.
#![deny(missing_docs, unreachable_pub)]

// The pure accounting: session records, the ledger, per-user labels (the crate
// `workspacesweb-accounting`: no async runtime, no SDK).
pub use workspacesweb_accounting::{ledger, session, users};

// Version, git revision and compiler of this build.
pub mod build_info;

// The process's wall clock (and its pin for tests).
pub mod clock;

// The last hour of each portal's polls, for the landing page's sparklines.
pub mod recent_polls;

// Flags and exit on bad flags.
pub mod cli;

// Log setup.
pub mod telemetry;

// Supervision of long-lived tasks: a panic caught and reported, the task restarted.
pub mod supervise;

// The only module that knows the AWS SDK: clients, the four read calls, rate limits, ARNs.
pub mod aws;

// The config file: strict parsing, validation with located errors, the resolved view.
pub mod config;

// The `--storage.path` directory: lock, atomic writes, bad files set aside, pruning.
pub mod storage;

// `ListPortals` per region.
pub mod discovery;

// Readiness, health, reload outcome, state write errors, and the one change signal.
pub mod status;

// What each portal publishes, shared with the HTTP server.
pub mod snapshot;

// Organization discovery: the accounts of an AWS Organization, then `ListPortals` in each.
pub mod organization;

// The scheduler and one task per portal: listing, backfill, metadata, state file.
pub mod poll;

// Which portals run: static and discovered, sharded; a reloaded config applied.
pub mod reconcile;

// `/metrics`: the family table, its writers, the cached body.
pub mod exposition;

// The HTTP server: routes, TLS and basic auth, the landing page.
pub mod http;

// The one reload (SIGHUP, `POST /-/reload`) of the config and the web config.
pub mod reload;

// `--demo`: the simulator in process and its config (cargo feature `demo`).
pub mod demo;

// Wiring, startup errors and exit codes, signals.
pub mod daemon;

/// Version of this build.
pub use build_info::VERSION;
