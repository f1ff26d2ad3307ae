//! The tests that run external programs: Prometheus and promtool (`e2e_prometheus`, `compose`, and
//! the restart test in `restarts`), kubectl, systemd-analyze, systemd-sysusers and jsonnet
//! (`deploy`), headless Chromium (`landing_chromium`). Each skips when its tool is missing, and fails instead under CI (`CI` set): `.ci/run`
//! installs them all.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/restart_harness.rs"]
mod restart_harness;

mod compose;
mod deploy;
mod e2e_prometheus;
mod landing_chromium;
mod restarts;
