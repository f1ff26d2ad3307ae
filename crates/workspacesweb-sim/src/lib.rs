//! A wire-faithful simulator of the WorkSpaces Web API (restJson1 over plain HTTP on loopback),
//! with the STS and AWS Organizations calls that reach it in a real account.
//!
//! Used by the exporter's `--demo`, by its integration tests and by the `workspacesweb-sim`
//! binary. On one endpoint it answers WorkSpaces Web's `ListSessions`, `GetSession`,
//! `ListPortals`, `GetPortal` (and `ExpireSession`), STS `AssumeRole` (awsQuery, `POST /` with a
//! form body) and Organizations (awsJson1.1, `POST /` with `X-Amz-Target:
//! AWSOrganizationsV20161128.<Operation>`) the way AWS does, and keeps ground truth for tests.
//! Signatures are not checked: identity is the SigV4 access key id.
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
//!   region are visible, as with real regional endpoints ([`SimConfig::enforce_region`]): a
//!   portal of another region is `ResourceNotFoundException`, and `ListPortals` omits it.
//!
//! Fault injection ([`Faults`], per portal, changeable at runtime): a fixed AWS error, a throttling
//! ratio with `Retry-After`, latency, a paginator that repeats its token or never ends, and broken
//! bodies ([`BodyFault`]: any bytes instead of the answer, or the answer padded to N bytes),
//! optionally only for `ListSessions` with one `status` filter. Raw records
//! ([`Simulator::add_raw_record`], [`Simulator::add_raw_record_bytes`],
//! [`Simulator::add_raw_record_unfiltered`]) put incomplete, odd or non-UTF-8 records in listings.
//!
//! Listing faults for the first hour of a real account: [`Faults::long_next_token`] (every page
//! carries a `nextToken` of N characters, e.g. 3,000 or 70,000, which the simulator refuses back
//! past 2048 as the service does), [`Faults::overfull_pages`] (pages of N × `maxResults`),
//! [`Simulator::set_operation_error`] (one operation of one portal: `ListSessions`,
//! `GetSession`, `GetPortal`) and [`Simulator::set_list_portals_error`] (`ListPortals` in one
//! region, optionally for one account). `AccessDeniedException` then carries IAM's message:
//! `User: <principal> is not authorized to perform: workspaces-web:<Operation> on resource:
//! <ARN> because no identity-based policy allows the workspaces-web:<Operation> action`. A portal
//! called in another region than its own (the SigV4 scope's) is `ResourceNotFoundException`.
//!
//! Credentials and accounts ([`Simulator::require_known_keys`], [`Simulator::add_access_key`],
//! [`Simulator::revoke_access_key`], [`Simulator::expire_access_key`],
//! [`Simulator::set_credential_lifetime`], [`Simulator::set_credential_clock`]): by default any
//! access key is accepted, as a caller of no account in particular. A key the simulator knows
//! (registered, or issued by its `AssumeRole`) is bound to an account: `ListPortals` lists only
//! that account's portals, and every operation on another account's portal is
//! `AccessDeniedException` (`... because no resource-based policy allows ...`). Refused keys are
//! `UnrecognizedClientException` (STS: `InvalidClientTokenId`), 403, "The security token included
//! in the request is invalid."; expired ones `ExpiredTokenException` (STS: `ExpiredToken`), 403,
//! "The security token included in the request is expired" (AWS's common errors).
//!
//! An AWS Organization ([`OrgSpec`], [`SimConfig::with_organization`],
//! [`SimConfig::generated_organization`]; the demo is one, see [`SimConfig::demo`]): accounts
//! (`Id`, `Arn`, `Email`, `Name`, `Status` and `State`, `JoinedMethod`, `JoinedTimestamp`) under
//! a root and nested OUs, listed by `ListAccounts`, `ListAccountsForParent`, `ListChildren`,
//! `ListOrganizationalUnitsForParent`, `ListRoots`, `DescribeOrganization`, `DescribeAccount`.
//! Pages follow the API reference: `MaxResults` 1..=20 (absent: 20; outside:
//! `InvalidInputException`, Reason `MAX_VALUE_EXCEEDED`/`MIN_VALUE_EXCEEDED`), an opaque
//! `NextToken` only when more follow. Errors are awsJson1.1 (`{"__type":...,"Message":...}`),
//! HTTP 400 as the reference lists (`AccessDeniedException`, `AWSOrganizationsNotInUseException`,
//! `TooManyRequestsException`...; `ServiceException` 500). STS lets callers assume the member
//! role `arn:aws:iam::<account>:role/<OrgSpec::member_role>` of every active account (external id
//! checked when set); the credentials are bound to that account. Runtime changes
//! ([`Simulator::add_account`], [`Simulator::set_account_state`], [`Simulator::remove_account`],
//! [`Simulator::move_account`]) and faults ([`Simulator::set_organizations_faults`],
//! [`Simulator::set_assume_role_error`]) take effect on the next call.
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
mod organization;
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
pub use demo::{DEMO_MANAGEMENT_ACCOUNT, DEMO_MEMBER_ACCOUNT, DEMO_MEMBER_ROLE};
pub use error::SimError;
pub use faults::{BodyFault, Faults};
pub use model::RETENTION_MS;
pub use operation::ASSUME_ROLE;
pub use organization::{AccountSpec, AccountState, OrgSpec, OuSpec};
pub use record::{SessionStatus, SimSession, UnixMillis, now_ms};
pub use simulator::{RunningSim, Simulator};
pub use traffic::LoggedRequest;
