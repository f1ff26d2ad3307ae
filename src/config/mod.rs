//! The YAML config file (SPEC section 4): strict parsing, validation with
//! precise messages (`file:line:col: key.path: message`), and the resolved
//! view the rest of the exporter works from.
//!
//! [`load`] / [`parse`] return a [`Loaded`] config plus warnings, or a
//! [`ConfigError`] listing every problem found. [`Config::targets`] resolves
//! the static portals (region, timeout, labels); [`Config::summary`] is what
//! `--config.check` prints.

mod error;
mod locate;
mod placeholders;
mod raw;
mod validate;
mod values;

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

pub use error::{ConfigError, Diagnostic, Location};

/// Default poll interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Upper bound of the derived default poll timeout.
pub const DEFAULT_TIMEOUT_CAP: Duration = Duration::from_secs(30);
/// Default `ListSessions` page size (`maxResults`).
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Default number of portals polled at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Default histogram buckets of `workspacesweb_session_duration_seconds` (the ledger's default).
pub use crate::ledger::DEFAULT_DURATION_BUCKETS;
/// Default bound on pages in one listing.
pub const DEFAULT_MAX_PAGES: u32 = 2000;
/// Default client-side request rate limit, per second.
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 5.0;
/// Default per-portal cap on users with their own series.
pub const DEFAULT_MAX_USERS: usize = 1000;
/// Largest `per_user.max_users`: each user's series and state cost memory, render time and state
/// bytes (BENCHMARKS.md measures 25,000).
pub const MAX_MAX_USERS: usize = 100_000;
/// Default time after which an idle user's series go away.
pub const DEFAULT_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default refresh period of a discovery entry, and how often the metadata of a static portal is
/// refreshed with `GetPortal`.
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(600);

/// A validated configuration. [`Config::default`] is the configuration of an empty file: no
/// portal, and every setting at its default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Settings that apply to every portal.
    pub global: Global,
    /// Per-user series (opt-in).
    pub per_user: PerUser,
    /// Statically configured portals, in file order.
    pub portals: Vec<PortalConfig>,
    /// Discovery entries (portals found by `ListPortals`).
    pub discovery: Vec<DiscoveryConfig>,
    /// Which share of the portals this replica polls.
    pub sharding: Sharding,
    /// Durable state settings (used with `--storage.path`).
    pub storage: Storage,
}

/// A validated configuration and the shard index of this replica.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// The configuration.
    pub config: Config,
    /// This replica's shard index (from the file or the environment).
    pub shard_index: u32,
    /// Warnings about the file (valid, but probably not what was meant).
    pub warnings: Vec<String>,
}

/// Reads and validates `path`, and resolves the shard index (with `sharding.index_from_env`,
/// from the process environment). Blocking: call it off the async runtime.
pub fn load_for_shard(path: &Path) -> Result<ShardConfig, ConfigError> {
    let loaded = load(path)?;
    let shard_index = loaded
        .config
        .sharding
        .resolve_shard_index(|v| std::env::var(v).ok())?;
    Ok(ShardConfig {
        config: loaded.config,
        shard_index,
        warnings: loaded.warnings,
    })
}

/// Default age after which a state file no longer resumes its portal.
pub const DEFAULT_STATE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `storage:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// A state file older than this starts its portal fresh; a removed portal's file is pruned
    /// after it.
    pub max_age: Duration,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            max_age: DEFAULT_STATE_MAX_AGE,
        }
    }
}

/// `global:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Default region for portals; `None` leaves it to the SDK's region chain.
    pub region: Option<String>,
    /// Poll interval (>= 1s).
    pub interval: Duration,
    /// Bound on one poll as written; `None` means derived, see [`Global::timeout_for`].
    pub timeout: Option<Duration>,
    /// `maxResults` of `ListSessions` (1..=1000).
    pub page_size: u32,
    /// Portals polled at once (>= 1).
    pub concurrency: usize,
    /// Static labels added to every portal-level series.
    pub labels: BTreeMap<String, String>,
    /// Buckets of the session duration histogram, seconds, strictly increasing.
    pub duration_buckets: Vec<f64>,
    /// Schema of its native buckets (protobuf exposition), -4 to 8.
    pub native_histogram_schema: i8,
    /// Bound on pages in one listing (>= 1).
    pub max_pages: u32,
    /// Client-side rate limit for API requests (> 0), per second.
    pub max_requests_per_second: f64,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            region: None,
            interval: DEFAULT_INTERVAL,
            timeout: None,
            page_size: DEFAULT_PAGE_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            labels: BTreeMap::new(),
            duration_buckets: DEFAULT_DURATION_BUCKETS.to_vec(),
            native_histogram_schema: crate::ledger::native::DEFAULT_SCHEMA,
            max_pages: DEFAULT_MAX_PAGES,
            max_requests_per_second: DEFAULT_MAX_REQUESTS_PER_SECOND,
        }
    }
}

impl Global {
    /// Effective poll timeout for a portal polled every `interval`: the
    /// configured `timeout`, else the smaller of 30s and 80% of `interval`.
    pub fn timeout_for(&self, interval: Duration) -> Duration {
        self.timeout
            .unwrap_or_else(|| DEFAULT_TIMEOUT_CAP.min(interval * 4 / 5))
    }

    /// Effective poll timeout at the global interval.
    pub fn effective_timeout(&self) -> Duration {
        self.timeout_for(self.interval)
    }
}

/// How usernames appear in per-user labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernameMode {
    /// The username as the API returns it.
    #[default]
    Raw,
    /// Hex SHA-256 of salt + name, first 16 characters.
    Hashed,
}

/// `per_user:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerUser {
    /// Whether per-user series are exported (usernames are PII).
    pub enabled: bool,
    /// Raw or hashed usernames.
    pub username: UsernameMode,
    /// Salt for hashed usernames (a secret: never printed).
    pub hash_salt: String,
    /// Per portal: users beyond this aggregate into `username="__other__"`.
    pub max_users: usize,
    /// A user's series go away after this long with no session.
    pub idle_ttl: Duration,
}

impl Default for PerUser {
    fn default() -> Self {
        PerUser {
            enabled: false,
            username: UsernameMode::Raw,
            hash_salt: String::new(),
            max_users: DEFAULT_MAX_USERS,
            idle_ttl: DEFAULT_IDLE_TTL,
        }
    }
}

/// How a portal is reached: the role to assume with STS and the endpoint (for a static portal,
/// a discovery entry, and the target resolved from either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// IAM role to assume via STS.
    pub role_arn: Option<String>,
    /// External id for the role (a secret: never printed).
    pub external_id: Option<String>,
    /// API endpoint override.
    pub endpoint_url: Option<String>,
}

/// One entry of `portals:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    /// Portal id (from `id:`, or taken from `arn:`).
    pub id: String,
    /// Portal ARN when given as `arn:`; never invented from an id.
    pub arn: Option<String>,
    /// Region from the ARN or `region:`; `None` falls back to `global.region`.
    pub region: Option<String>,
    /// The role to assume and the endpoint.
    pub access: Access,
    /// Poll interval override.
    pub interval: Option<Duration>,
    /// Static labels of this portal (override global labels of the same name).
    pub labels: BTreeMap<String, String>,
}

/// One entry of `discovery:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Every account of an AWS Organization (SPEC section 12); `None`: `ListPortals` with `access`.
    pub organization: Option<OrganizationConfig>,
    /// Regions in which `ListPortals` is called (non-empty, no repeats; one partition with
    /// `organization`).
    pub regions: Vec<String>,
    /// The role to assume (none with `organization`) and the endpoint (of every call, with
    /// `organization` those of Organizations and STS included).
    pub access: Access,
    /// How often `ListPortals` is called.
    pub refresh: Duration,
    /// Static labels of discovered portals (override global labels).
    pub labels: BTreeMap<String, String>,
}

/// `discovery[].organization:` settings: which accounts of the organization, and how each is
/// reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationConfig {
    /// The role assumed in each member account (a name, optionally after a path).
    pub role_name: String,
    /// External id of the member role (a secret: never printed).
    pub external_id: Option<String>,
    /// Role assumed to call Organizations (in the management or delegated administrator
    /// account); `None`: the exporter's own credentials.
    pub role_arn: Option<String>,
    /// Only the accounts under these OUs (or roots), recursively; empty: the whole organization.
    pub ous: Vec<String>,
    /// Accounts left out, sorted.
    pub exclude_accounts: Vec<String>,
}

impl OrganizationConfig {
    /// `arn:<partition>:iam::<account>:role/<role_name>`: the member role in `account`.
    pub fn member_role_arn(&self, partition: &str, account: &str) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.role_name)
    }
}

impl DiscoveryConfig {
    /// How a portal that this entry found in `region` is reached: with `organization`, as the
    /// member role of `account` (the account whose listing found it); else the entry's access.
    pub fn access_for(&self, account: Option<&str>, region: &str) -> Access {
        match (&self.organization, account) {
            (Some(org), Some(account)) => {
                Access {
                    role_arn: Some(org.member_role_arn(
                        crate::aws::partition::partition_of_region(region),
                        account,
                    )),
                    external_id: org.external_id.clone(),
                    endpoint_url: self.access.endpoint_url.clone(),
                }
            }
            _ => self.access.clone(),
        }
    }
}

/// `sharding:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharding {
    /// Number of replicas sharing the portals (>= 1).
    pub total: u32,
    /// This replica's index (< total) when given literally; see [`Sharding::resolve_shard_index`].
    pub index: u32,
    /// Environment variable holding the index, instead of `index`.
    pub index_from_env: Option<IndexFromEnv>,
}

impl Default for Sharding {
    fn default() -> Self {
        Sharding {
            total: 1,
            index: 0,
            index_from_env: None,
        }
    }
}

/// `sharding.index_from_env`, with where it was written (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFromEnv {
    /// Name of the environment variable.
    pub var: String,
    /// Config file it came from.
    pub file: String,
    /// Position of the value in that file.
    pub location: Location,
}

impl Sharding {
    /// This replica's shard index: `index`, or the value of the
    /// `index_from_env` variable read through `env` — either a number (`3`)
    /// or a StatefulSet-style hostname ending in `-<number>` (`exporter-3`).
    pub fn resolve_shard_index(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<u32, ConfigError> {
        let Some(from) = &self.index_from_env else {
            return Ok(self.index);
        };
        let fail = |message: String| {
            ConfigError::single(Diagnostic {
                file: from.file.clone(),
                location: Some(from.location),
                path: "sharding.index_from_env".to_owned(),
                message,
            })
        };
        let var = &from.var;
        let Some(raw) = env(var) else {
            return Err(fail(format!("environment variable {var} is not set")));
        };
        // "3", "exporter-3", or "exporter-3.exporter.ns.svc.cluster.local".
        let host = raw.trim().split('.').next().unwrap_or_default();
        let digits = host.rsplit('-').next().unwrap_or_default();
        let index = if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            digits.parse::<u32>().ok()
        };
        let Some(index) = index else {
            return Err(fail(format!(
                "environment variable {var}={raw:?} is neither a number nor a hostname ending in -<number>"
            )));
        };
        if index >= self.total {
            return Err(fail(format!(
                "shard index {index} from environment variable {var}={raw:?} must be less than sharding.total ({})",
                self.total
            )));
        }
        Ok(index)
    }

    /// Whether the replica with shard `index` polls `portal_id`: a stable
    /// hash (FNV-1a, the same on every replica and version) modulo `total`.
    pub fn owns(&self, index: u32, portal_id: &str) -> bool {
        if self.total <= 1 {
            return true;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in portal_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % u64::from(self.total) == u64::from(index)
    }
}

/// A static portal with everything resolved: what one poller needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalTarget {
    /// Portal id.
    pub id: String,
    /// Portal ARN when configured.
    pub arn: Option<String>,
    /// Region: from the ARN, else the portal's, else `global.region`; `None`
    /// leaves it to the SDK's region chain.
    pub region: Option<String>,
    /// The role to assume and the endpoint.
    pub access: Access,
    /// Effective poll interval.
    pub interval: Duration,
    /// Effective poll timeout (< interval).
    pub timeout: Duration,
    /// Global labels overridden by the portal's, sorted by name.
    pub labels: Vec<(String, String)>,
}

/// A parsed and validated config plus the warnings to log.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// Non-fatal findings, formatted like errors (`file:line:col: path: message`).
    pub warnings: Vec<String>,
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &file),
        Err(e) => Err(ConfigError::single(Diagnostic {
            file,
            location: None,
            path: String::new(),
            message: format!("cannot read config file: {e}"),
        })),
    }
}

/// Parses and validates config `text`; `source` names the file in messages.
pub fn parse(text: &str, source: &str) -> Result<Loaded, ConfigError> {
    let de = serde_norway::Deserializer::from_str(text);
    let raw: raw::Config = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => {
            let d = error::from_serde(source, &e, |path| locate::locate(text, path));
            return Err(ConfigError::single(d));
        }
    };
    validate::validate(raw, text, source)
}

impl Config {
    /// Static portals resolved: region (ARN > portal > global), effective
    /// interval and timeout, and merged labels.
    pub fn targets(&self) -> Vec<PortalTarget> {
        self.portals
            .iter()
            .map(|p| {
                let interval = p.interval.unwrap_or(self.global.interval);
                PortalTarget {
                    id: p.id.clone(),
                    arn: p.arn.clone(),
                    region: p.region.clone().or_else(|| self.global.region.clone()),
                    access: p.access.clone(),
                    interval,
                    timeout: self.global.timeout_for(interval),
                    labels: merge_labels(&self.global.labels, &p.labels),
                }
            })
            .collect()
    }

    /// The target for a portal found by discovery entry `entry` in `region` (by the listing of
    /// `account`, with `organization`); `arn` is the portal ARN that `ListPortals` returned.
    pub fn discovered_target(
        &self,
        entry: &DiscoveryConfig,
        id: &str,
        arn: Option<&str>,
        (account, region): (Option<&str>, &str),
    ) -> PortalTarget {
        PortalTarget {
            id: id.to_owned(),
            arn: arn.map(str::to_owned),
            region: Some(region.to_owned()),
            access: entry.access_for(account, region),
            interval: self.global.interval,
            timeout: self.global.effective_timeout(),
            labels: merge_labels(&self.global.labels, &entry.labels),
        }
    }

    /// Multi-line human summary for `--config.check`. Secrets (`external_id`,
    /// `hash_salt`, passwords in endpoint URLs) are masked.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        self.summarise_global(&mut s);
        let _ = writeln!(s, "portals: {}", self.portals.len());
        for t in self.targets() {
            let _ = writeln!(
                s,
                "  - {} region={} interval={} timeout={}{} labels={}",
                t.id,
                t.region.as_deref().unwrap_or("(SDK default chain)"),
                fmt_duration(t.interval),
                fmt_duration(t.timeout),
                fmt_access(&t.access),
                fmt_labels(t.labels.iter().map(|(k, v)| (k, v))),
            );
        }
        let _ = writeln!(s, "discovery: {}", self.discovery.len());
        for d in &self.discovery {
            let _ = writeln!(
                s,
                "  - {}regions=[{}] refresh={}{} labels={}",
                d.organization
                    .as_ref()
                    .map(fmt_organization)
                    .unwrap_or_default(),
                d.regions.join(", "),
                fmt_duration(d.refresh),
                fmt_access(&d.access),
                fmt_labels(
                    merge_labels(&self.global.labels, &d.labels)
                        .iter()
                        .map(|(k, v)| (k, v))
                ),
            );
        }
        let sh = &self.sharding;
        match &sh.index_from_env {
            Some(from) => {
                let _ = writeln!(
                    s,
                    "sharding: total={} index from environment variable {}",
                    sh.total, from.var
                );
            }
            None => {
                let _ = writeln!(s, "sharding: total={} index={}", sh.total, sh.index);
            }
        }
        let _ = writeln!(
            s,
            "storage: max_age={} (used with --storage.path)",
            values::format_duration(self.storage.max_age)
        );
        s
    }

    /// The `global:` and `per_user:` lines of [`summary`](Self::summary).
    fn summarise_global(&self, s: &mut String) {
        let g = &self.global;
        let _ = writeln!(
            s,
            "global: region={} interval={} timeout={} page_size={} concurrency={} max_pages={} max_requests_per_second={}",
            g.region.as_deref().unwrap_or("(SDK default chain)"),
            fmt_duration(g.interval),
            fmt_duration(g.effective_timeout()),
            g.page_size,
            g.concurrency,
            g.max_pages,
            g.max_requests_per_second,
        );
        let _ = writeln!(s, "  labels: {}", fmt_labels(g.labels.iter()));
        let buckets: Vec<String> = g.duration_buckets.iter().map(f64::to_string).collect();
        let _ = writeln!(s, "  duration_buckets: [{}]", buckets.join(", "));
        let _ = writeln!(
            s,
            "  native_histogram_schema: {}",
            g.native_histogram_schema
        );
        let u = &self.per_user;
        if !u.enabled {
            let _ = writeln!(s, "per_user: disabled");
            return;
        }
        let mode = match u.username {
            UsernameMode::Raw => "raw".to_owned(),
            UsernameMode::Hashed => format!(
                "hashed (hash_salt {})",
                if u.hash_salt.is_empty() {
                    "empty"
                } else {
                    "set, not shown"
                }
            ),
        };
        let _ = writeln!(
            s,
            "per_user: enabled username={mode} max_users={} idle_ttl={}",
            u.max_users,
            fmt_duration(u.idle_ttl)
        );
    }
}

fn merge_labels(
    global: &BTreeMap<String, String>,
    own: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut merged = global.clone();
    merged.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.into_iter().collect()
}

fn fmt_duration(d: Duration) -> String {
    values::format_duration(d)
}

fn fmt_labels<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let parts: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

/// An organization entry's settings, for the summary (the external id masked).
fn fmt_organization(org: &OrganizationConfig) -> String {
    let mut s = format!("organization role_name={}", org.role_name);
    if org.external_id.is_some() {
        s.push_str(" external_id=(set, not shown)");
    }
    if let Some(role) = &org.role_arn {
        let _ = write!(s, " role_arn={role}");
    }
    let ous = if org.ous.is_empty() {
        "(whole organization)".to_owned()
    } else {
        format!("[{}]", org.ous.join(", "))
    };
    let _ = write!(
        s,
        " ous={ous} exclude_accounts=[{}] ",
        org.exclude_accounts.join(", ")
    );
    s
}

fn fmt_access(access: &Access) -> String {
    let mut s = String::new();
    if let Some(role) = &access.role_arn {
        let _ = write!(s, " role_arn={role}");
    }
    if access.external_id.is_some() {
        s.push_str(" external_id=(set, not shown)");
    }
    if let Some(endpoint) = &access.endpoint_url {
        let _ = write!(s, " endpoint_url={}", mask_url_password(endpoint));
    }
    s
}

/// The URL with any password replaced by `***`.
fn mask_url_password(endpoint: &str) -> String {
    match url::Url::parse(endpoint) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every default is written once: the defaults of the types are what a file that sets
    /// nothing but its one portal gives.
    #[test]
    fn the_default_config_is_that_of_a_file_with_one_portal() {
        const ID: &str = "11111111-2222-3333-4444-555555555555";
        let expected = Config {
            portals: vec![PortalConfig {
                id: ID.into(),
                arn: None,
                region: None,
                access: Access::default(),
                interval: None,
                labels: BTreeMap::new(),
            }],
            ..Config::default()
        };
        for text in [
            format!("portals:\n  - id: {ID}\n"),
            format!("global: {{}}\nper_user: {{}}\nstorage: {{}}\nportals:\n  - id: {ID}\n"),
        ] {
            let loaded = parse(&text, "one.yaml").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.config, expected, "{text}");
        }
    }
}
