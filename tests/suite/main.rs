//! The tests that need only the exporter (its library or its binary) and the simulator, in one
//! test binary: one compile and link step instead of one per file. Run a part with
//! `cargo test --test suite MODULE::` (e.g. `cargo test --test suite accounting::`).
//!
//! Kept apart: the tests of external tools (`tests/external/`), and the tests that set
//! process-wide state, each in a binary of its own: `golden.rs` pins the exporter's clock,
//! `hashed_users.rs` and `topology.rs` install a global log subscriber.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/restart_harness.rs"]
mod restart_harness;

mod accounting;
mod build_revision;
mod cli;
mod config_files;
mod connection_cap;
mod docs_links;
mod exporter_sim;
mod first_hour;
mod fuzzing;
mod hostile;
mod http_server;
mod landing;
mod loadtest_smoke;
mod module_chain;
mod operations;
mod organization;
mod page_bounds;
mod per_user;
mod priority;
mod real_account;
mod resilience;
mod restarts;
mod sharding;
mod sim_wire;
mod soak;
mod web_config;
mod web_config_toolkit;
mod web_reload;
