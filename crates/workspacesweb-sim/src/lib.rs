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

mod clock;
mod model;
mod record;
mod sts;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use clock::Clock;
pub use model::RETENTION_MS;
pub use record::{SessionStatus, UnixMillis, now_ms};
pub use sts::{ASSUME_ROLE, AssumeRoleCall};

use model::SessionStore;

/// Operation names, as used by [`Simulator::request_count`] and the exporter's `operation` label.
pub mod operation {
    /// `GET /portals/{portalId}/sessions`.
    pub const LIST_SESSIONS: &str = "ListSessions";
    /// `GET /portals/{portalId}/sessions/{sessionId}`.
    pub const GET_SESSION: &str = "GetSession";
    /// `GET /portals`.
    pub const LIST_PORTALS: &str = "ListPortals";
    /// `GET /portals/{portalArn+}`.
    pub const GET_PORTAL: &str = "GetPortal";
    /// `DELETE /portals/{portalId}/sessions/{sessionId}`.
    pub const EXPIRE_SESSION: &str = "ExpireSession";
    /// Any request that matches no operation (answered 404 or 405).
    pub const UNKNOWN: &str = "Unknown";
}

/// Errors of the simulator's control API (not wire errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// No portal with this id is configured.
    #[error("unknown portal {0}")]
    UnknownPortal(String),
    /// No session with this id in the portal.
    #[error("unknown session {0}")]
    UnknownSession(String),
    /// A session with this id already exists in the portal.
    #[error("duplicate session {0}")]
    DuplicateSession(String),
}

/// One session: the ground truth of the simulator, and the shape tests build scripted portals from.
///
/// In results of [`Simulator::sessions_at`], `end_ms` is `None` for sessions still active at that time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SimSession {
    /// `sessionId` (36 chars on real AWS; scripted sessions may use anything).
    pub id: String,
    /// `username`; `None` leaves the field out of the wire record.
    pub username: Option<String>,
    /// Start time, milliseconds since the epoch.
    pub start_ms: UnixMillis,
    /// End time; `None` while the session runs.
    pub end_ms: Option<UnixMillis>,
}

impl SimSession {
    /// An active session of `username` that started at `start_ms`.
    pub fn new(id: impl Into<String>, username: impl Into<String>, start_ms: UnixMillis) -> Self {
        Self {
            id: id.into(),
            username: Some(username.into()),
            start_ms,
            end_ms: None,
        }
    }

    /// The same session, ended at `end_ms`.
    pub fn ended(mut self, end_ms: UnixMillis) -> Self {
        self.end_ms = Some(end_ms);
        self
    }

    /// Active when it has no end, else Terminated.
    pub fn status(&self) -> SessionStatus {
        if self.end_ms.is_some() {
            SessionStatus::Terminated
        } else {
            SessionStatus::Active
        }
    }

    /// The status at `at_ms` of a session whose `end_ms` may lie in the future; `None` before it starts.
    pub fn status_at(&self, at_ms: UnixMillis) -> Option<SessionStatus> {
        if self.start_ms > at_ms {
            None
        } else if self.end_ms.is_some_and(|e| e <= at_ms) {
            Some(SessionStatus::Terminated)
        } else {
            Some(SessionStatus::Active)
        }
    }

    /// A UUID-shaped session id derived from `n` (handy for scripted portals).
    pub fn id_for(n: u64) -> String {
        model::Rng::new(model::mix(n, 0x5345_5353)).uuid()
    }
}

/// Parameters of a generated (random but seeded) session model.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedModel {
    /// Mean arrivals per hour from the anchor hour on (Poisson).
    pub arrivals_per_hour: f64,
    /// Mean session duration (log-normal, clamped to 5 s .. 12 h).
    pub mean_duration_secs: f64,
    /// Shape of the log-normal duration (sigma of the underlying normal).
    pub duration_sigma: f64,
    /// Size of the user pool (a few users have many sessions).
    pub users: u32,
    /// Exactly this many sessions start in the 35 days before the anchor hour (terminated history,
    /// plus the few still running at the anchor).
    pub history_sessions: u64,
    /// Put odd usernames in the pool: quotes, backslash, Unicode, newline, empty, 256 chars.
    pub odd_usernames: bool,
    /// Day/night swing of the arrival rate, 0 (flat) ..= 1 (none at 02:00 UTC); peak at 14:00 UTC.
    pub diurnal_amplitude: f64,
}

impl Default for GeneratedModel {
    fn default() -> Self {
        Self {
            arrivals_per_hour: 20.0,
            mean_duration_secs: 1800.0,
            duration_sigma: 1.0,
            users: 50,
            history_sessions: 1_000,
            odd_usernames: false,
            diurnal_amplitude: 0.0,
        }
    }
}

/// How a portal's sessions come about.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionModel {
    /// Seeded random arrivals and durations, with history; time-driven.
    Generated(GeneratedModel),
    /// Exactly these sessions (plus what tests add or end at runtime); no random arrivals.
    Scripted(Vec<SimSession>),
}

/// Faults injected into the requests of one portal (or of `ListPortals`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Answer every request with this AWS error code (e.g. `AccessDeniedException`).
    pub error: Option<String>,
    /// Fraction (0..=1) of requests answered with `ThrottlingException`; deterministic per request sequence.
    pub throttle_ratio: f64,
    /// `Retry-After` seconds sent with throttling and internal errors.
    pub retry_after_secs: u32,
    /// Delay added before answering.
    pub latency: Duration,
    /// A broken paginator: `ListSessions`/`ListPortals` return the request's `nextToken` again, forever.
    pub repeat_next_token: bool,
    /// A paginator that never ends: `ListSessions`/`ListPortals` return a fresh `nextToken` on every
    /// page, forever (the pages after the real data are empty).
    pub endless_next_token: bool,
    /// Replaces or pads the body of successful answers (hostile or broken responses).
    pub body: Option<BodyFault>,
    /// When set, the faults apply only to `ListSessions` requests with this `status` filter; every
    /// other request of the portal is answered normally.
    pub only_status: Option<SessionStatus>,
}

/// A broken body sent with status 200 instead of the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyFault {
    /// Exactly these bytes (malformed JSON, `{}` without `sessions`, `{"sessions":null}`, non-UTF-8, ...).
    Replace(Bytes),
    /// The real body with an unknown member appended so that the body is this many bytes long
    /// (valid JSON; the real body when it is already longer).
    PadTo(usize),
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Successful answers carry exactly `body` (status 200, `application/json`).
    pub fn body(body: impl Into<Bytes>) -> Self {
        Self {
            body: Some(BodyFault::Replace(body.into())),
            ..Self::default()
        }
    }

    /// Successful answers are padded with an unknown member to `bytes` bytes.
    pub fn padded(bytes: usize) -> Self {
        Self {
            body: Some(BodyFault::PadTo(bytes)),
            ..Self::default()
        }
    }

    /// Listings never end: a fresh `nextToken` on every page.
    pub fn endless_pages() -> Self {
        Self {
            endless_next_token: true,
            ..Self::default()
        }
    }

    /// The same faults, limited to `ListSessions` requests with this `status` filter.
    pub fn only_for(mut self, status: SessionStatus) -> Self {
        self.only_status = Some(status);
        self
    }

    /// Whether these faults apply to a request for `operation` with this `status` query parameter.
    pub(crate) fn applies_to(&self, operation: &str, status: Option<&str>) -> bool {
        match &self.only_status {
            None => true,
            Some(only) => operation == operation::LIST_SESSIONS && status == Some(only.as_str()),
        }
    }

    /// Every request fails with `code`.
    pub fn error(code: impl Into<String>) -> Self {
        Self {
            error: Some(code.into()),
            retry_after_secs: 1,
            ..Self::default()
        }
    }

    /// A fraction `ratio` of requests is throttled with `Retry-After: retry_after_secs`.
    pub fn throttle(ratio: f64, retry_after_secs: u32) -> Self {
        Self {
            throttle_ratio: ratio,
            retry_after_secs,
            ..Self::default()
        }
    }
}

/// Configuration of one simulated portal.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalSpec {
    /// Portal id: 36 chars of lowercase hex and dashes (so that the ARN matches the service's pattern).
    pub id: String,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit account id.
    pub account: String,
    /// `displayName`.
    pub display_name: String,
    /// `maxConcurrentSessions`.
    pub max_concurrent_sessions: u32,
    /// `instanceType` (`standard.regular`, `standard.large`, `standard.xlarge`).
    pub instance_type: String,
    /// Where the sessions come from.
    pub model: SessionModel,
    /// Faults from the start.
    pub faults: Faults,
}

impl PortalSpec {
    /// A portal in us-east-1, account 123456789012, with default capacity and no faults.
    pub fn new(id: impl Into<String>, model: SessionModel) -> Self {
        let id = id.into();
        Self {
            display_name: format!("portal-{}", id.get(..8).unwrap_or(&id)),
            id,
            region: "us-east-1".into(),
            account: "123456789012".into(),
            max_concurrent_sessions: 100,
            instance_type: "standard.regular".into(),
            model,
            faults: Faults::none(),
        }
    }

    /// A scripted portal holding exactly `sessions`.
    pub fn scripted(id: impl Into<String>, sessions: Vec<SimSession>) -> Self {
        Self::new(id, SessionModel::Scripted(sessions))
    }

    /// The portal ARN: `arn:aws:workspaces-web:<region>:<account>:portal/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:workspaces-web:{}:{}:portal/{}",
            self.region, self.account, self.id
        )
    }
}

/// What the simulator knows about a portal (the static part of `GetPortal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalInfo {
    /// Portal id.
    pub id: String,
    /// Portal ARN.
    pub arn: String,
    /// Region.
    pub region: String,
    /// Account id.
    pub account: String,
    /// `displayName`.
    pub display_name: String,
    /// `maxConcurrentSessions`.
    pub max_concurrent_sessions: u32,
    /// `instanceType`.
    pub instance_type: String,
    /// `creationDate`, milliseconds since the epoch.
    pub creation_ms: UnixMillis,
}

/// Configuration of a [`Simulator`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Source of "now".
    pub clock: Clock,
    /// The portals.
    pub portals: Vec<PortalSpec>,
    /// Largest page (a larger `maxResults` is capped to this).
    pub max_page_size: usize,
    /// Page size when `maxResults` is absent.
    pub default_page_size: usize,
    /// Faults of `ListPortals`, which belongs to no portal.
    pub list_portals_faults: Faults,
    /// Hide portals of other regions from SigV4-signed requests.
    pub enforce_region: bool,
}

impl SimConfig {
    /// An empty configuration on the system clock.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            clock: Clock::system(),
            portals: Vec::new(),
            max_page_size: 100,
            default_page_size: 100,
            list_portals_faults: Faults::none(),
            enforce_region: true,
        }
    }

    /// The same configuration on another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same configuration plus one portal.
    pub fn with_portal(mut self, portal: PortalSpec) -> Self {
        self.portals.push(portal);
        self
    }

    /// Three demo portals in us-east-1: a busy one (~60 sessions/h, ~50,000 history), a quiet one
    /// with odd usernames and a limit of 4 concurrent sessions that it reaches now and then, and a
    /// flaky one throttled 30% of the time.
    pub fn demo(seed: u64) -> Self {
        Self::generated(seed, 3)
    }

    /// `n` generated portals: the first three are the demo portals, the rest vary with the seed.
    pub fn generated(seed: u64, n: usize) -> Self {
        let mut cfg = Self::new(seed);
        let mut rng = model::Rng::new(model::mix(seed, 0x504f_5254));
        for i in 0..n {
            let id = rng.uuid();
            let (name, capacity, model, faults) = match i {
                0 => (
                    "busy".to_string(),
                    500,
                    GeneratedModel {
                        arrivals_per_hour: 60.0,
                        mean_duration_secs: 2700.0,
                        users: 300,
                        history_sessions: 50_400,
                        diurnal_amplitude: 0.6,
                        ..GeneratedModel::default()
                    },
                    Faults::none(),
                ),
                1 => (
                    "quiet".to_string(),
                    // About 1.3 sessions open on average: bursts reach this limit now and then,
                    // so the demo shows the peak meeting capacity and time at capacity growing.
                    4,
                    GeneratedModel {
                        arrivals_per_hour: 4.0,
                        mean_duration_secs: 1200.0,
                        users: 25,
                        history_sessions: 3_360,
                        odd_usernames: true,
                        diurnal_amplitude: 0.3,
                        ..GeneratedModel::default()
                    },
                    Faults::none(),
                ),
                2 => (
                    "flaky".to_string(),
                    100,
                    GeneratedModel {
                        arrivals_per_hour: 20.0,
                        mean_duration_secs: 1800.0,
                        users: 80,
                        history_sessions: 16_800,
                        diurnal_amplitude: 0.5,
                        ..GeneratedModel::default()
                    },
                    Faults::throttle(0.3, 1),
                ),
                _ => {
                    let rate = 1.0 + rng.next_f64() * 80.0;
                    (
                        format!("portal-{i}"),
                        50 + (rng.next_u64() % 20) as u32 * 50,
                        GeneratedModel {
                            arrivals_per_hour: rate,
                            mean_duration_secs: 600.0 + rng.next_f64() * 5400.0,
                            users: 10 + (rng.next_u64() % 500) as u32,
                            history_sessions: (rate * 840.0) as u64,
                            odd_usernames: rng.next_f64() < 0.3,
                            diurnal_amplitude: rng.next_f64() * 0.8,
                            ..GeneratedModel::default()
                        },
                        Faults::none(),
                    )
                }
            };
            let mut spec = PortalSpec::new(id, SessionModel::Generated(model));
            spec.display_name = name;
            spec.max_concurrent_sessions = capacity;
            spec.faults = faults;
            cfg.portals.push(spec);
        }
        cfg
    }
}

/// Mutable state of one portal.
#[derive(Debug)]
struct PortalState {
    store: SessionStore,
    faults: Faults,
    /// Requests seen, for deterministic throttling.
    requests: u64,
    /// Wire records listed verbatim after the model's sessions.
    raw_records: Vec<RawRecord>,
}

/// A wire record sent verbatim: its bytes, and its JSON value (for filters) when it parses.
#[derive(Debug, Clone)]
struct RawRecord {
    bytes: Bytes,
    fields: Option<serde_json::Value>,
}

/// Shared state behind a [`Simulator`].
#[derive(Debug)]
struct Inner {
    seed: u64,
    clock: Clock,
    max_page_size: usize,
    default_page_size: usize,
    enforce_region: bool,
    /// Sorted by id (the order of `ListPortals`).
    portals: Vec<PortalInfo>,
    states: HashMap<String, Mutex<PortalState>>,
    list_portals: Mutex<(Faults, u64)>,
    counters: Mutex<HashMap<(String, String), u64>>,
    request_seq: AtomicU64,
    /// Every request, when [`Simulator::log_requests`] is on.
    log: Mutex<Option<Vec<LoggedRequest>>>,
    /// STS, signers, portal owners, removed portals, per-operation errors.
    access: sts::Access,
}

/// One request received, as logged by [`Simulator::log_requests`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When it arrived (tokio clock).
    pub at: tokio::time::Instant,
    /// Portal id (`""` for `ListPortals` and unroutable requests).
    pub portal_id: String,
    /// Operation name (see [`operation`]).
    pub operation: String,
    /// The raw query string (`status=Active&nextToken=...`).
    pub query: String,
    /// HTTP status of the answer.
    pub status: u16,
}

/// Locks a mutex, ignoring poisoning (the state stays usable after a panicking test thread).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The simulator: cheap to clone (shared state), usable from tests while it serves.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl Simulator {
    /// Builds the portals (generating their history) from `config`.
    pub fn new(config: SimConfig) -> Self {
        let anchor = config.clock.now_ms();
        let mut portals = Vec::new();
        let mut states = HashMap::new();
        for spec in &config.portals {
            let portal_seed = model::mix(config.seed, model::fnv(&spec.id));
            let store = match &spec.model {
                SessionModel::Generated(m) => SessionStore::generated(m, portal_seed, anchor),
                SessionModel::Scripted(s) => SessionStore::scripted(s),
            };
            let age_days = 30 + (portal_seed % 300) as i64;
            portals.push(PortalInfo {
                id: spec.id.clone(),
                arn: spec.arn(),
                region: spec.region.clone(),
                account: spec.account.clone(),
                display_name: spec.display_name.clone(),
                max_concurrent_sessions: spec.max_concurrent_sessions,
                instance_type: spec.instance_type.clone(),
                creation_ms: (anchor - age_days * 86_400_000).div_euclid(1000) * 1000,
            });
            states.insert(
                spec.id.clone(),
                Mutex::new(PortalState {
                    store,
                    faults: spec.faults.clone(),
                    requests: 0,
                    raw_records: Vec::new(),
                }),
            );
        }
        portals.sort_by(|a, b| a.id.cmp(&b.id));
        portals.dedup_by(|a, b| a.id == b.id);
        Self {
            inner: Arc::new(Inner {
                seed: config.seed,
                clock: config.clock,
                max_page_size: config.max_page_size.max(1),
                default_page_size: config.default_page_size.max(1),
                enforce_region: config.enforce_region,
                portals,
                states,
                list_portals: Mutex::new((config.list_portals_faults, 0)),
                counters: Mutex::new(HashMap::new()),
                request_seq: AtomicU64::new(0),
                log: Mutex::new(None),
                access: sts::Access::default(),
            }),
        }
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background task until the
    /// returned [`RunningSim`] is shut down or dropped.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(wire::serve(Arc::clone(&self.inner), listener, rx));
        Ok(RunningSim {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The clock the model runs on (a clone shares the time).
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// Every portal, ordered by id.
    pub fn portals(&self) -> Vec<PortalInfo> {
        self.inner.portals.clone()
    }

    /// One portal by id.
    pub fn portal(&self, portal_id: &str) -> Option<PortalInfo> {
        self.inner
            .portals
            .iter()
            .find(|p| p.id == portal_id)
            .cloned()
    }

    fn state(&self, portal_id: &str) -> Result<MutexGuard<'_, PortalState>, SimError> {
        self.inner
            .states
            .get(portal_id)
            .map(lock)
            .ok_or_else(|| SimError::UnknownPortal(portal_id.to_string()))
    }

    /// Replaces the faults of a portal, effective from the next request.
    pub fn set_faults(&self, portal_id: &str, faults: Faults) -> Result<(), SimError> {
        self.state(portal_id)?.faults = faults;
        Ok(())
    }

    /// The current faults of a portal.
    pub fn faults(&self, portal_id: &str) -> Option<Faults> {
        self.state(portal_id).ok().map(|s| s.faults.clone())
    }

    /// Replaces the faults of `ListPortals`.
    pub fn set_list_portals_faults(&self, faults: Faults) {
        lock(&self.inner.list_portals).0 = faults;
    }

    /// Requests received for `portal_id` and `operation` (see [`operation`]), faulted ones included.
    /// `ListPortals` and unroutable requests count under portal id `""`.
    pub fn request_count(&self, portal_id: &str, operation: &str) -> u64 {
        lock(&self.inner.counters)
            .get(&(portal_id.to_string(), operation.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Requests received for `operation`, all portals together.
    pub fn operation_count(&self, operation: &str) -> u64 {
        lock(&self.inner.counters)
            .iter()
            .filter(|((_, op), _)| op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Starts (`true`, clearing any earlier log) or stops (`false`) logging every request with
    /// its arrival time, query and answer status (off by default: the log grows without bound).
    pub fn log_requests(&self, on: bool) {
        *lock(&self.inner.log) = on.then(Vec::new);
    }

    /// The requests logged for `portal_id` (all portals with `None`), in arrival order.
    pub fn request_log(&self, portal_id: Option<&str>) -> Vec<LoggedRequest> {
        lock(&self.inner.log)
            .iter()
            .flatten()
            .filter(|r| portal_id.is_none_or(|p| r.portal_id == p))
            .cloned()
            .collect()
    }

    /// Every request received.
    pub fn total_requests(&self) -> u64 {
        lock(&self.inner.counters).values().sum()
    }

    /// Ground truth: the sessions `ListSessions` would list (all pages, no filter) at `at_ms`,
    /// oldest start first; `end_ms` is `None` for those active at `at_ms`. Empty for an unknown portal.
    pub fn sessions_at(&self, portal_id: &str, at_ms: UnixMillis) -> Vec<SimSession> {
        self.state(portal_id)
            .map(|mut s| s.store.at(at_ms))
            .unwrap_or_default()
    }

    /// Ground truth now (by the simulator's clock).
    pub fn sessions_now(&self, portal_id: &str) -> Vec<SimSession> {
        self.sessions_at(portal_id, self.inner.clock.now_ms())
    }

    /// Every session starting in `[from_ms, to_ms)` with its planned end, even if that lies in
    /// the future (what will happen, not what is listed).
    pub fn timeline(
        &self,
        portal_id: &str,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> Vec<SimSession> {
        self.state(portal_id)
            .map(|mut s| s.store.timeline(from_ms, to_ms))
            .unwrap_or_default()
    }

    /// Adds a session to a portal (scripted or generated); it is listed once the clock reaches its start.
    pub fn add_session(&self, portal_id: &str, session: SimSession) -> Result<(), SimError> {
        self.state(portal_id)?.store.add(&session)
    }

    /// Adds a raw wire record (a JSON object, sent verbatim) that `ListSessions` lists on its last
    /// page, possibly making it longer than `maxResults`: for malformed or incomplete records (no
    /// `sessionId`, no `startTime`, an unknown `status`...). Filters compare its fields as strings.
    pub fn add_raw_record(
        &self,
        portal_id: &str,
        record: serde_json::Value,
    ) -> Result<(), SimError> {
        let bytes = Bytes::from(record.to_string());
        self.state(portal_id)?.raw_records.push(RawRecord {
            bytes,
            fields: Some(record),
        });
        Ok(())
    }

    /// Like [`add_raw_record_bytes`](Self::add_raw_record_bytes), but listed whatever the filters,
    /// as by a server that lets a record through its `status` filter (e.g. an unknown status, or a
    /// `status` that is not a string).
    pub fn add_raw_record_unfiltered(
        &self,
        portal_id: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<(), SimError> {
        self.state(portal_id)?.raw_records.push(RawRecord {
            bytes: bytes.into(),
            fields: None,
        });
        Ok(())
    }

    /// Like [`add_raw_record`](Self::add_raw_record), but with arbitrary bytes spliced into the
    /// `sessions` array as they are (non-UTF-8, broken JSON...). Filters compare the fields of the
    /// lossy UTF-8 reading of the bytes when that parses as JSON; otherwise the record matches
    /// every filter.
    pub fn add_raw_record_bytes(
        &self,
        portal_id: &str,
        bytes: impl Into<Bytes>,
    ) -> Result<(), SimError> {
        let bytes = bytes.into();
        let fields = serde_json::from_str(&String::from_utf8_lossy(&bytes)).ok();
        self.state(portal_id)?
            .raw_records
            .push(RawRecord { bytes, fields });
        Ok(())
    }

    /// Removes every raw record of a portal.
    pub fn clear_raw_records(&self, portal_id: &str) -> Result<(), SimError> {
        self.state(portal_id)?.raw_records.clear();
        Ok(())
    }

    /// Ends a session at `end_ms` (it shows as Terminated once the clock reaches `end_ms`).
    pub fn end_session(
        &self,
        portal_id: &str,
        session_id: &str,
        end_ms: UnixMillis,
    ) -> Result<(), SimError> {
        self.state(portal_id)?.store.end(session_id, end_ms)
    }
}

/// Fuzz body of the simulator's request parsing (the `wire_parse` fuzz target): routes, query
/// strings, pagination tokens and the JSON writers on arbitrary input. Never panics but on a broken
/// invariant (a token that does not round-trip, JSON that does not read back).
pub fn fuzz_wire(data: &[u8]) {
    wire::fuzz(data);
}

/// A running simulator server; stops when [`RunningSim::shutdown`] is called or when dropped.
#[derive(Debug)]
pub struct RunningSim {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// `http://<addr>`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes open connections, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
