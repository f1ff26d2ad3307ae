//! A wire-faithful simulator of the WorkSpaces Web API (restJson1 over plain HTTP on loopback).
//!
//! Used by the exporter's `--demo`, by its integration tests and by the `workspacesweb-sim`
//! binary. It answers `ListSessions`, `GetSession`, `ListPortals`, `GetPortal` (and
//! `ExpireSession`) the way AWS does, for any credentials (signatures are not checked), and keeps
//! ground truth for tests.
//!
//! It shares no code with the exporter (its records, statuses and clock are its own), so that it
//! stays an independent oracle of the exporter's accounting.
//!
//! Behaviour where the service model is silent (documented choices):
//! - `maxResults` must be an integer >= 1; pages hold at most [`SimConfig::max_page_size`]
//!   items (default 100) and a larger `maxResults` is capped to it, as many AWS list APIs do.
//!   Absent, a page holds [`SimConfig::default_page_size`] items (default 100).
//! - Without `sortBy`, `ListSessions` lists newest start first (`StartTimeDescending`).
//!   Ties on start time are broken by session id, in the same direction.
//! - `nextToken` is opaque (URL-safe base64) and encodes the sort key `(startTime, sessionId)`
//!   of the last item, the order and a fingerprint of the filters: pages are stable when
//!   sessions arrive or end between calls (no duplicates, no skips of existing sessions). A
//!   token used with other filters or another order, or garbled, is a `ValidationException`.
//! - Terminated sessions stay listed for 35 days after their end ([`RETENTION_MS`]).
//! - Timestamps are epoch seconds in the `1.732790400123E9` form that AWS's Java services emit
//!   (millisecond precision).
//! - Errors carry `X-Amzn-ErrorType: <Code>:http://internal.amazon.com/coral/...` (clients strip
//!   the suffix) and a JSON body with `message` and the error's members.
//! - When a request is signed (SigV4 `Authorization` header), only portals of the signing
//!   region are visible, as with real regional endpoints ([`SimConfig::enforce_region`]).
//!
//! Fault injection ([`Faults`], per portal, changeable at runtime): a fixed AWS error, a throttling
//! ratio with `Retry-After`, latency, a paginator that repeats its token or never ends, and broken
//! bodies ([`BodyFault`]: any bytes instead of the answer, or the answer padded to N bytes),
//! optionally only for `ListSessions` with one `status` filter. Raw records
//! ([`Simulator::add_raw_record`], [`Simulator::add_raw_record_bytes`],
//! [`Simulator::add_raw_record_unfiltered`]) put incomplete, odd or non-UTF-8 records in listings.
//!
//! Typical use in a test:
//!
//! ```text
//! let clock = Clock::manual(T0);
//! let sim = Simulator::new(SimConfig::new(1).with_clock(clock.clone())
//!     .with_portal(PortalSpec::scripted(id, sessions)));
//! let running = sim.start("127.0.0.1:0".parse()?).await?;   // running.endpoint_url()
//! sim.set_faults(&id, Faults::throttle(0.5, 2))?;
//! clock.advance(60_000);
//! let truth = sim.sessions_at(&id, clock.now_ms());
//! assert_eq!(sim.request_count(&id, operation::LIST_SESSIONS), 3);
//! ```

#![deny(missing_docs, unreachable_pub)]

// Where things are: `config` (what a simulator is built from) and `demo` (ready-made
// configurations); the shared state in `state`, made of `portals` (each with its `model` of
// sessions), `access` (STS and who may call what) and `traffic` (counters, log); `api` serves it
// over HTTP (one module per protocol); `simulator` is the handle and control API tests use.

mod access;
mod api;
mod clock;
mod config;
mod demo;
mod error;
mod faults;
mod locks;
mod model;
pub mod operation;
mod portals;
mod record;
mod rng;
mod simulator;
mod state;
mod traffic;

pub use access::AssumeRoleCall;
pub use api::fuzz_wire;
pub use clock::Clock;
pub use config::{GeneratedModel, PortalInfo, PortalSpec, SessionModel, SimConfig};
pub use error::SimError;
pub use faults::{BodyFault, Faults};
pub use model::RETENTION_MS;
pub use operation::ASSUME_ROLE;
pub use record::{SessionStatus, SimSession, UnixMillis, now_ms};
pub use simulator::{RunningSim, Simulator};
pub use traffic::LoggedRequest;
