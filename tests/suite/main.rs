//! The tests that need only the exporter (its library or its binary) and the simulator, in one
//! test binary: one compile and link step instead of one per file. Run a part with
//! `cargo test --test suite MODULE::` (e.g. `cargo test --test suite accounting::`).
//!
//! Kept apart: the tests of external tools (`tests/external/`), and the tests that set
//! process-wide state, each in a binary of its own: `golden.rs` pins the exporter's clock,
//! `hashed_users.rs` and `topology.rs` install a global log subscriber.

#[path = "../common/mod.rs"]
mod common;

mod accounting;
mod cli;
mod config_files;
mod connection_cap;
mod docs_links;
mod exporter_sim;
mod fuzzing;
mod hostile;
mod http_server;
mod ledger_props;
mod loadtest_smoke;
mod operations;
mod per_user;
mod priority;
mod resilience;
mod sim_wire;
mod soak;
mod web_config;
mod web_config_toolkit;
mod web_reload;

#[allow(dead_code)]
mod restarts {
    //! Exact across restarts: the real exporter binary, polling
    //! an in-process simulator on the system clock through the real SDK, is stopped, killed and
    //! restarted, with and without `--storage.path`, and every accounting counter is compared with the
    //! ground truth computed from the simulator's timeline.
    //!
    //! Ground truth . T0 is the start of the exporter's first successful poll of the
    //! portal (with storage, `t0_ms` of the state file, kept across restarts); P is the start of the
    //! last successful poll (`last_successful_poll_timestamp_seconds`, exact to the millisecond).
    //! Then, over the sessions the simulator lists at P:
    //! - started: sessions with `startTime >= T0` (sessions running at T0 are the baseline);
    //! - terminated: sessions with `endTime >= T0`; the histogram observes their `endTime - startTime`;
    //! - session seconds: per session the length of `[max(start, T0), min(end, P)]`, when positive;
    //! - per user: the same per username.
    //!
    //! To make the comparison exact the tests quiesce first: no session starts or ends after a time E
    //! (every event is scheduled at or after the moment it is made, never in the past, so no poll has
    //! seen a state that a later event contradicts), then they wait for a poll that started more than
    //! [`QUIET_MS`] after E, and compare what that poll published.
    //!
    //! Synchronisation is on `/-/ready`, on the published metrics and on process exits; sleeps only
    //! let scheduled session events happen (or make a process live for a chosen time in the chaos
    //! test). Every wait is bounded.
    include!("../restarts/helpers.rs");
    include!("../restarts/tests.rs");
}
