//! What a simulator is built from: its portals, their session models, and its settings.

use crate::clock::Clock;
use crate::faults::Faults;
use crate::organization::OrgSpec;
use crate::record::{SimSession, UnixMillis};

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

/// Configuration of one simulated portal.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalSpec {
    /// Portal id: 36 chars of lowercase hex and dashes (so that the ARN matches the service's pattern).
    pub id: String,
    /// AWS region, e.g. `us-east-1`.
    pub region: String,
    /// 12-digit id of the account that owns it (credentials bound to another account are refused).
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

/// Configuration of a [`Simulator`](crate::Simulator).
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
    /// The AWS Organization the simulator serves (Organizations API, member roles in STS);
    /// `None`: Organizations answers `AWSOrganizationsNotInUseException`.
    pub organization: Option<OrgSpec>,
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
            organization: None,
        }
    }

    /// The same configuration on another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same configuration serving `organization` (its accounts own the portals whose
    /// `account` is theirs).
    pub fn with_organization(mut self, organization: OrgSpec) -> Self {
        self.organization = Some(organization);
        self
    }

    /// The same configuration plus one portal.
    pub fn with_portal(mut self, portal: PortalSpec) -> Self {
        self.portals.push(portal);
        self
    }
}
