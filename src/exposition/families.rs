//! The family table: every `workspacesweb_*` family (name, type, help) and how its samples are
//! read from the board, in exposition order, written through a [`Writer`] so that each exposition
//! format (text 0.0.4 in `text.rs`, OpenMetrics in `openmetrics.rs`, protobuf in `protobuf.rs`)
//! is one implementation of it. Adding a metric is adding a row here: every format shows it.
//!
//! Counters carry their created timestamp (when they were 0): T0 for a portal's counters since
//! T0, the moment a per-user series was first counted, the start of the portal's task for its
//! API and panic counters, the exporter's start for its own. Text 0.0.4 does not show it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::build_info;
use crate::ledger::{Histogram, NativeHistogram};
use crate::session::UnixMillis;
use crate::snapshot::{DiscoverySnapshot, PortalSnapshot};
use crate::status::ExporterStatus;
use crate::users::UserSeries;
use Kind::{Counter, Gauge};

/// Prefix of every family name.
pub const PREFIX: &str = "workspacesweb_";

const REFRESH: &str = "Refreshed every poll interval.";

/// The type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A value that only goes up (reset at a restart without durable state).
    Counter,
    /// Observations in buckets, with their sum and count.
    Histogram,
}

impl Kind {
    /// The `# TYPE` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exposition format: what the family table writes, family by family, sample by sample.
/// Names are without the writer's prefix ([`PREFIX`], or none for `process_*`); a family's
/// samples follow its header, except those of the per-user families, whose headers and samples
/// are written apart (see [`UserFamily`]).
pub trait Writer {
    /// The header of a family: its name, type and help text.
    fn header(&mut self, name: &str, kind: Kind, help: &str);
    /// One sample of the family `name`: the labels of its source (portal or discovery source),
    /// then its own, its value, and for a counter when it was 0 (its created timestamp).
    fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: f64,
        created: Option<UnixMillis>,
    );
    /// One histogram of the family `name`, with the labels of its source.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: Durations<'_>);
}

/// The classic buckets of `h` as `(upper bound, cumulative count)`, `+Inf` left out: what every
/// format writes of them.
pub fn cumulative_buckets(h: &Histogram) -> impl Iterator<Item = (f64, u64)> + '_ {
    h.bounds
        .iter()
        .enumerate()
        .scan(0u64, |cumulative, (i, bound)| {
            *cumulative += h.counts.get(i).copied().unwrap_or(0);
            Some((*bound, *cumulative))
        })
}

/// A histogram as the writers see it: its classic buckets, the same observations in native
/// buckets when kept, and when it started counting.
#[derive(Debug, Clone, Copy)]
pub struct Durations<'a> {
    /// The classic (fixed-bucket) histogram.
    pub classic: &'a Histogram,
    /// The native histogram (the protobuf format shows it).
    pub native: Option<&'a NativeHistogram>,
    /// When the classic histogram was empty (T0).
    pub created_ms: UnixMillis,
}

/// What the exposition shows: the portals' snapshots, the discovery sources' counters, and the
/// exporter's own series.
#[derive(Debug, Clone, Copy)]
pub struct Board<'a> {
    /// Portal snapshots, ordered by portal id.
    pub portals: &'a [Arc<PortalSnapshot>],
    /// API counters of the discovery sources.
    pub discovery: &'a [DiscoverySnapshot],
    /// Reload outcome and state write errors.
    pub status: ExporterStatus,
}

/// Every family but the per-user ones: portal and discovery families, then the exporter's.
pub fn write_head(w: &mut dyn Writer, board: Board<'_>) {
    write_portals(w, board.portals, board.discovery);
    write_exporter(w, board.status);
}

/// A per-user family: exposed after every other family, one block of samples per portal (each
/// portal's block is rendered and cached on its own, the header once).
pub struct UserFamily {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&PortalSnapshot, &UserSeries) -> Option<f64>,
}

impl UserFamily {
    /// The family's name, without [`PREFIX`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The family's type.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The family's help text, as every format writes it.
    pub fn help(&self) -> String {
        format!("{} {REFRESH}", self.help)
    }
}

/// The per-user families, in exposition order.
pub static USER_FAMILIES: [UserFamily; 3] = [
    UserFamily {
        name: "user_active_sessions",
        kind: Kind::Gauge,
        help: "Active sessions of each user with at least one, at the last successful poll.",
        // A stale portal loses it with the other state gauges.
        value: |p, u| (p.active.is_some() && u.active > 0).then_some(u.active as f64),
    },
    UserFamily {
        name: "user_sessions_started_total",
        kind: Kind::Counter,
        help: "Distinct sessions of each user observed since the exporter's first successful poll of the portal.",
        value: |_, u| Some(u.started as f64),
    },
    UserFamily {
        name: "user_session_seconds_total",
        kind: Kind::Counter,
        help: "Session time of each user since the exporter's first successful poll of the portal.",
        value: |_, u| Some(u.session_seconds),
    },
];

impl UserFamily {
    /// Writes the family's header.
    pub fn write_header(&self, w: &mut dyn Writer) {
        w.header(self.name, self.kind, &self.help());
    }

    /// Writes one portal's samples of the family (none when it has no users).
    pub fn write_samples(&self, w: &mut dyn Writer, p: &PortalSnapshot) {
        if p.users.is_empty() {
            return;
        }
        let labels = portal_labels(p);
        let counter = self.kind == Kind::Counter;
        for u in &p.users {
            if let Some(v) = (self.value)(p, u) {
                let created = counter.then_some(u.created_ms);
                w.sample(self.name, &labels, &[("username", &u.username)], v, created);
            }
        }
    }
}

/// The label set shared by a portal's series: `portal_id` plus its static labels.
fn portal_labels(p: &PortalSnapshot) -> Vec<(&str, &str)> {
    let mut l = Vec::with_capacity(1 + p.labels.len());
    l.push(("portal_id", p.portal_id.as_str()));
    l.extend(p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    l
}

/// How a portal family's help text ends.
#[derive(Clone, Copy)]
enum Help {
    /// Values that change with every poll: the help says they are refreshed every poll interval.
    Polled(&'static str),
    /// Values that change on their own schedule.
    Fixed(&'static str),
}

/// The API counts of a portal or of discovery: requests by operation, errors by operation and code.
type ApiCounts<'a> = (
    &'a BTreeMap<String, u64>,
    &'a BTreeMap<(String, String), u64>,
);

/// Takes one sample: its labels beyond the source's own, and its value.
type Emit<'e> = &'e mut dyn FnMut(&[(&str, &str)], f64);

/// How a portal family reads its samples from the snapshots.
#[derive(Clone, Copy)]
enum Read {
    /// One sample per portal that has a value; the family is absent while none has.
    Value(fn(&PortalSnapshot) -> Option<f64>),
    /// One sample per portal, once any portal has counted one (a counter of rare events).
    Count(fn(&PortalSnapshot) -> u64),
    /// Samples with extra labels from the API counts of the portals and of discovery (whose
    /// series carry `region` instead of `portal_id`); the family is absent while there are none.
    Api(fn(ApiCounts<'_>, Emit<'_>)),
    /// Samples from the account set of each organization entry (labelled `source`); the family
    /// is absent without organization discovery.
    Accounts(fn(&[(String, String)], Emit<'_>)),
}

/// Families written by a function of their own (a histogram, info labels).
type OwnFamilies = fn(&mut dyn Writer, &[Arc<PortalSnapshot>], &[Vec<(&str, &str)>]);

/// One row of [`PORTAL_FAMILIES`].
enum Row {
    /// A gauge family: name, how its samples are read, help.
    Gauge(&'static str, Read, Help),
    /// A counter family: name, how its samples are read, help.
    Counter(&'static str, Read, Help),
    /// Families of a shape of their own.
    Own(OwnFamilies),
}

/// Every portal and discovery family, in exposition order. Adding a metric is adding a row: its
/// name and how its samples are read, then its help text.
#[rustfmt::skip]
const PORTAL_FAMILIES: [Row; 18] = [
    // State gauges: present after a successful poll, dropped after the staleness limit.
    Row::Gauge("active_sessions", Read::Value(|p| p.active.map(|a| a.sessions as f64)),
        Help::Polled("Sessions with status Active at the last successful poll.")),
    Row::Gauge("active_sessions_peak", Read::Value(|p| p.active.map(|a| a.peak as f64)),
        Help::Polled("Highest number of simultaneously active sessions between the previous successful poll and the last one, from API start and end times (active_sessions on the first poll).")),
    Row::Gauge("active_users", Read::Value(|p| p.active.map(|a| a.users as f64)),
        Help::Polled("Distinct usernames among the active sessions at the last successful poll.")),
    Row::Gauge("active_session_max_age_seconds", Read::Value(|p| p.active.map(|a| a.max_age_seconds)),
        Help::Polled("Age of the oldest active session at the last successful poll (0 when none).")),
    Row::Own(write_totals),
    Row::Gauge("monthly_active_users", Read::Value(|p| p.monthly_active_users.map(|v| v as f64)),
        Help::Polled("Distinct usernames with any session in the current UTC calendar month (what AWS bills on); backfilled from the API at startup.")),
    Row::Own(write_info),
    Row::Gauge("portal_max_concurrent_sessions", Read::Value(|p| p.meta.as_ref().and_then(|m| m.max_concurrent_sessions).map(|m| m as f64)),
        Help::Polled("maxConcurrentSessions of the portal, for capacity alerts.")),
    Row::Counter("poller_panics_total", Read::Count(|p| p.panics),
        Help::Fixed("Panics caught in the portal's poll task (the task restarts from its last successful poll).")),
    Row::Gauge("up", Read::Value(|p| Some(if p.up { 1.0 } else { 0.0 })),
        Help::Polled("1 if the last poll of the portal succeeded, else 0.")),
    Row::Gauge("poll_duration_seconds", Read::Value(|p| p.poll_duration_seconds),
        Help::Polled("Wall time of the last poll of the portal.")),
    Row::Gauge("last_successful_poll_timestamp_seconds", Read::Value(|p| p.last_success_unix),
        Help::Polled("Unix time of the last successful poll of the portal.")),
    // With `--storage.path`.
    Row::Gauge("state_restored", Read::Value(|p| p.state.map(|s| if s.restored { 1.0 } else { 0.0 })),
        Help::Fixed("1 when the portal resumed its counters from its state file at start, else 0.")),
    Row::Gauge("state_last_write_timestamp_seconds", Read::Value(|p| p.state.and_then(|s| s.last_write_unix)),
        Help::Fixed("Unix time of the last successful write of the portal's state file.")),
    Row::Counter("api_requests_total", Read::Api(|(requests, _), emit| {
            for (op, n) in requests {
                emit(&[("operation", op)], *n as f64);
            }
        }),
        Help::Polled("Requests to the WorkSpaces Web API (and STS AssumeRole), retries included; one that failed before it was sent (no credentials) counts too.")),
    Row::Counter("api_request_errors_total", Read::Api(|(_, errors), emit| {
            for ((op, code), n) in errors {
                emit(&[("operation", op), ("error", code)], *n as f64);
            }
        }),
        Help::Polled("Failed API requests by AWS error code, or credentials (none to sign with), timeout, dispatch (connection failed), other.")),
    // Organization discovery: the accounts of each entry's last good listing.
    Row::Gauge("account_info", Read::Accounts(|accounts, emit| {
            for (id, name) in accounts {
                emit(&[("account_id", id), ("account_name", name)], 1.0);
            }
        }),
        Help::Fixed("Each account of the organization that organization discovery lists portals in (ACTIVE, under the configured OUs, not excluded), value 1; refreshed every discovery refresh.")),
    Row::Gauge("discovery_accounts", Read::Accounts(|accounts, emit| emit(&[], accounts.len() as f64)),
        Help::Fixed("Accounts in the set of each organization discovery entry (its last successful listing); refreshed every discovery refresh.")),
];

/// A label set, as the writer takes it.
type Labels<'l, 'a> = &'l [(&'a str, &'a str)];

/// The portals and discovery sources being rendered, with their label sets.
struct Sources<'a> {
    portals: &'a [Arc<PortalSnapshot>],
    labels: Vec<Vec<(&'a str, &'a str)>>,
    discovery: &'a [DiscoverySnapshot],
    discovery_labels: Vec<Vec<(&'a str, &'a str)>>,
}

impl<'a> Sources<'a> {
    fn new(portals: &'a [Arc<PortalSnapshot>], discovery: &'a [DiscoverySnapshot]) -> Self {
        Sources {
            portals,
            labels: portals.iter().map(|p| portal_labels(p)).collect(),
            discovery,
            discovery_labels: discovery
                .iter()
                .map(|d| {
                    d.labels
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect()
                })
                .collect(),
        }
    }

    /// Each portal with its labels.
    fn each(&self) -> impl Iterator<Item = (&'a PortalSnapshot, &[(&'a str, &'a str)])> {
        self.portals
            .iter()
            .map(|p| &**p)
            .zip(self.labels.iter().map(Vec::as_slice))
    }

    /// The API counts of each portal, then of each discovery source, with their labels and
    /// when their counting began.
    fn api_counts(
        &self,
    ) -> impl Iterator<Item = (ApiCounts<'a>, &[(&'a str, &'a str)], Option<UnixMillis>)> {
        let portals = self
            .portals
            .iter()
            .map(|p| ((&p.api_requests, &p.api_errors), p.counted_since_ms));
        let discovery = self
            .discovery
            .iter()
            .map(|d| ((&d.api_requests, &d.api_errors), d.counted_since_ms));
        portals
            .zip(self.labels.iter().map(Vec::as_slice))
            .chain(discovery.zip(self.discovery_labels.iter().map(Vec::as_slice)))
            .map(|((counts, since), labels)| (counts, labels, since))
    }

    /// The account set of each organization entry, with its labels.
    fn account_sets(&self) -> impl Iterator<Item = (&'a [(String, String)], Labels<'_, 'a>)> {
        self.discovery
            .iter()
            .zip(self.discovery_labels.iter().map(Vec::as_slice))
            .filter_map(|(d, l)| d.accounts.as_deref().map(|a| (a, l)))
    }

    /// Whether a family reading `read` has any sample.
    fn any(&self, read: Read) -> bool {
        match read {
            Read::Accounts(get) => self.account_sets().any(|(accounts, _)| {
                let mut any = false;
                get(accounts, &mut |_, _| any = true);
                any
            }),
            Read::Value(get) => self.each().any(|(p, _)| get(p).is_some()),
            Read::Count(get) => self.each().any(|(p, _)| get(p) > 0),
            Read::Api(get) => self.api_counts().any(|(counts, _, _)| {
                let mut any = false;
                get(counts, &mut |_, _| any = true);
                any
            }),
        }
    }
}

/// Every portal and discovery family, as [`PORTAL_FAMILIES`] lists them.
fn write_portals(
    w: &mut dyn Writer,
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
) {
    let sources = Sources::new(portals, discovery);
    for row in &PORTAL_FAMILIES {
        match row {
            Row::Own(write) => write(w, portals, &sources.labels),
            Row::Gauge(name, read, help) => write_family(w, &sources, (name, Gauge, *help), *read),
            Row::Counter(name, read, help) => {
                write_family(w, &sources, (name, Counter, *help), *read);
            }
        }
    }
    write_discovery_panics(w, discovery);
}

/// `discovery_panics_total{source}`: one sample per discovery source once any has panicked.
fn write_discovery_panics(w: &mut dyn Writer, discovery: &[DiscoverySnapshot]) {
    if discovery.iter().all(|d| d.panics == 0) {
        return;
    }
    let name = "discovery_panics_total";
    w.header(
        name,
        Kind::Counter,
        "Panics caught in a discovery source's task (it restarts; the last good portal list stays in force); source is the discovery entry's index and the region, e.g. 0/us-east-1, or organization for an organization entry, e.g. 1/organization.",
    );
    for d in discovery.iter().filter(|d| !d.source.is_empty()) {
        w.sample(
            name,
            &[("source", d.source.as_str())],
            &[],
            d.panics as f64,
            d.counted_since_ms,
        );
    }
}

/// One family of [`PORTAL_FAMILIES`]: its header and samples, or nothing while it has no sample.
fn write_family(
    w: &mut dyn Writer,
    sources: &Sources<'_>,
    (name, kind, help): (&str, Kind, Help),
    read: Read,
) {
    if !sources.any(read) {
        return;
    }
    let help = match help {
        Help::Polled(h) => format!("{h} {REFRESH}"),
        Help::Fixed(h) => h.to_string(),
    };
    w.header(name, kind, &help);
    match read {
        Read::Value(get) => {
            for (p, l) in sources.each() {
                if let Some(v) = get(p) {
                    w.sample(name, l, &[], v, None);
                }
            }
        }
        Read::Count(get) => {
            for (p, l) in sources.each() {
                w.sample(name, l, &[], get(p) as f64, p.counted_since_ms);
            }
        }
        Read::Api(get) => {
            for (counts, l, since) in sources.api_counts() {
                get(counts, &mut |extra, v| w.sample(name, l, extra, v, since));
            }
        }
        Read::Accounts(get) => {
            for (accounts, l) in sources.account_sets() {
                get(accounts, &mut |extra, v| w.sample(name, l, extra, v, None));
            }
        }
    }
}

/// Name, help and getter of a portal counter.
type CounterDef = (
    &'static str,
    &'static str,
    fn(&crate::ledger::Totals) -> f64,
);

/// The counters since T0, time at capacity, and the duration histogram, of the portals that have
/// totals.
fn write_totals(w: &mut dyn Writer, portals: &[Arc<PortalSnapshot>], labels: &[Vec<(&str, &str)>]) {
    let with_totals: Vec<_> = portals
        .iter()
        .zip(labels.iter())
        .filter_map(|(p, l)| p.totals.as_ref().map(|t| (t, l)))
        .collect();
    if with_totals.is_empty() {
        return;
    }
    for (name, help, get) in TOTALS {
        w.header(name, Kind::Counter, &format!("{help} {REFRESH}"));
        for (t, l) in &with_totals {
            w.sample(name, l, &[], get(t), Some(t.t0_ms));
        }
    }
    if with_totals
        .iter()
        .any(|(t, _)| t.at_capacity_seconds.is_some())
    {
        let name = "portal_at_capacity_seconds_total";
        w.header(
            name,
            Kind::Counter,
            &format!(
                "Time since the exporter's first successful poll of the portal during which its concurrent sessions were at or above maxConcurrentSessions, from API start and end times; absent while the limit is unknown. {REFRESH}"
            ),
        );
        for (t, l) in &with_totals {
            if let Some(v) = t.at_capacity_seconds {
                w.sample(name, l, &[], v, Some(t.t0_ms));
            }
        }
    }
    let name = "session_duration_seconds";
    w.header(
        name,
        Kind::Histogram,
        &format!(
            "endTime - startTime of each terminated session counted in sessions_terminated_total with a complete record. {REFRESH}"
        ),
    );
    for (t, l) in &with_totals {
        let durations = Durations {
            classic: &t.durations,
            native: Some(&t.native),
            created_ms: t.t0_ms,
        };
        w.histogram(name, l, durations);
    }
}

/// The portal counters since T0, in exposition order.
const TOTALS: [CounterDef; 4] = [
    (
        "sessions_started_total",
        "Distinct sessions observed since the exporter's first successful poll of the portal (active at a poll, or terminated after it).",
        |t| t.started as f64,
    ),
    (
        "sessions_terminated_total",
        "Distinct sessions observed to terminate since the exporter's first successful poll of the portal.",
        |t| t.terminated as f64,
    ),
    (
        "session_seconds_total",
        "Session time consumed since the exporter's first successful poll: the integral of the active-session count, from API start and end times.",
        |t| t.session_seconds,
    ),
    (
        "session_records_incomplete_total",
        "Session records missing id, startTime or endTime, with endTime before startTime, or with an unknown status; kept out of durations.",
        |t| t.incomplete as f64,
    ),
];

/// Labels of `portal_info` beyond the portal's own; a static label of the same name is left out there.
const INFO_LABELS: [&str; 6] = [
    "portal_arn",
    "region",
    "account_id",
    "display_name",
    "browser_type",
    "instance_type",
];

/// `portal_info`: the portal's labels and its metadata (a static label of the same name is left out).
fn write_info(w: &mut dyn Writer, portals: &[Arc<PortalSnapshot>], labels: &[Vec<(&str, &str)>]) {
    let each = || portals.iter().zip(labels.iter());
    if !each().any(|(p, _)| p.meta.is_some()) {
        return;
    }
    let name = "portal_info";
    w.header(
        name,
        Kind::Gauge,
        &format!("Portal metadata from GetPortal, value 1; absent when not permitted. {REFRESH}"),
    );
    for (p, l) in each() {
        if let Some(m) = &p.meta {
            let base: Vec<(&str, &str)> = l
                .iter()
                .copied()
                .filter(|(k, _)| !INFO_LABELS.contains(k))
                .collect();
            let info = [
                ("portal_arn", m.arn.as_str()),
                ("region", m.region.as_str()),
                ("account_id", m.account_id()),
                ("display_name", m.display_name.as_str()),
                ("browser_type", m.browser_type.as_str()),
                ("instance_type", m.instance_type.as_str()),
            ];
            w.sample(name, &base, &info, 1.0, None);
        }
    }
}

/// The exporter's own families: build info, the last configuration load, state write errors.
fn write_exporter(w: &mut dyn Writer, status: ExporterStatus) {
    let reload = status.reload;
    let one = |w: &mut dyn Writer, name: &str, help: &str, labels: &[(&str, &str)], value: f64| {
        w.header(name, Kind::Gauge, help);
        w.sample(name, labels, &[], value, None);
    };
    one(
        w,
        "exporter_build_info",
        "A metric with a constant '1' value labeled by version, revision and rustc_version of the build.",
        &[
            ("version", crate::VERSION),
            ("revision", build_info::REVISION),
            ("rustc_version", build_info::RUSTC_VERSION),
        ],
        1.0,
    );
    one(
        w,
        "config_last_reload_successful",
        "Whether the last configuration load succeeded.",
        &[],
        if reload.successful { 1.0 } else { 0.0 },
    );
    one(
        w,
        "config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load.",
        &[],
        reload.success_unix,
    );
    if let Some(errors) = status.state_write_errors {
        let name = "state_write_errors_total";
        w.header(
            name,
            Kind::Counter,
            "State file writes (--storage.path) that failed since the exporter started.",
        );
        w.sample(name, &[], &[], errors as f64, Some(status.started_ms));
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::text::{TextWriter, render};
    use crate::ledger::ActiveSummary;
    use crate::status::ReloadStatus;

    fn text(portals: Vec<PortalSnapshot>) -> String {
        let portals: Vec<_> = portals.into_iter().map(Arc::new).collect();
        let status = ReloadStatus {
            successful: true,
            success_unix: 5.0,
        };
        let board = Board {
            portals: &portals,
            discovery: &[],
            status: status.into(),
        };
        String::from_utf8(render(board).to_vec()).unwrap_or_default()
    }

    /// The families the golden exposition does not hold (panics, state file, discovery): their
    /// presence rules and samples, text for text.
    #[test]
    fn panics_state_and_discovery_families() {
        let calm = PortalSnapshot {
            portal_id: "p1".into(),
            state: Some(crate::snapshot::StateStatus {
                restored: false,
                last_write_unix: None,
            }),
            api_requests: [("ListSessions".to_string(), 4)].into(),
            ..Default::default()
        };
        let panicked = PortalSnapshot {
            portal_id: "p2".into(),
            panics: 2,
            state: Some(crate::snapshot::StateStatus {
                restored: true,
                last_write_unix: Some(12.5),
            }),
            api_errors: [(("GetSession".to_string(), "timeout".to_string()), 1)].into(),
            ..Default::default()
        };
        let discovery = DiscoverySnapshot {
            labels: vec![("region".into(), "eu-west-1".into())],
            api_requests: [("ListPortals".to_string(), 3)].into(),
            api_errors: [(("ListPortals".to_string(), "dispatch".to_string()), 1)].into(),
            counted_since_ms: Some(7_000),
            source: "0/eu-west-1".into(),
            panics: 0,
            ..DiscoverySnapshot::default()
        };
        let portals = [Arc::new(calm), Arc::new(panicked)];
        let mut out = Vec::new();
        write_portals(
            &mut TextWriter::new(&mut out),
            &portals,
            std::slice::from_ref(&discovery),
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, RARE_FAMILIES);
        // A discovery source that panicked: every source's count, labelled by source.
        let panicked_source = DiscoverySnapshot {
            source: "1/us-east-1".into(),
            panics: 3,
            ..DiscoverySnapshot::default()
        };
        let mut out = Vec::new();
        write_portals(
            &mut TextWriter::new(&mut out),
            &portals,
            &[discovery, panicked_source],
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out.strip_prefix(RARE_FAMILIES),
            Some(concat!(
                "# HELP workspacesweb_discovery_panics_total Panics caught in a discovery source's task (it restarts; the last good portal list stays in force); source is the discovery entry's index and the region, e.g. 0/us-east-1, or organization for an organization entry, e.g. 1/organization.\n",
                "# TYPE workspacesweb_discovery_panics_total counter\n",
                "workspacesweb_discovery_panics_total{source=\"0/eu-west-1\"} 0\n",
                "workspacesweb_discovery_panics_total{source=\"1/us-east-1\"} 3\n",
            ))
        );
    }

    /// Organization discovery: the account set of each entry (labelled `source`), its size,
    /// and the errors of one account (`account_id` and `region` instead of `portal_id`);
    /// `portal_info` carries the account of the portal's ARN.
    #[test]
    fn organization_families() {
        let portal = PortalSnapshot {
            portal_id: "p1".into(),
            labels: vec![("account_id".into(), "static".into())],
            meta: Some(crate::snapshot::PortalMeta {
                arn: "arn:aws:workspaces-web:eu-west-1:210987654321:portal/p1".into(),
                region: "eu-west-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let accounts = DiscoverySnapshot {
            labels: vec![("source".into(), "0".into())],
            accounts: Some(vec![
                ("123456789012".into(), "management".into()),
                ("210987654321".into(), "team \"a\"".into()),
            ]),
            ..Default::default()
        };
        let errors = DiscoverySnapshot {
            labels: vec![
                ("discovery".into(), "0".into()),
                ("account_id".into(), "210987654321".into()),
                ("region".into(), "eu-west-1".into()),
            ],
            api_errors: [(("AssumeRole".to_string(), "AccessDenied".to_string()), 2)].into(),
            ..Default::default()
        };
        let empty = DiscoverySnapshot {
            labels: vec![("source".into(), "1".into())],
            accounts: Some(Vec::new()),
            ..Default::default()
        };
        let mut out = Vec::new();
        write_portals(
            &mut TextWriter::new(&mut out),
            &[Arc::new(portal)],
            &[accounts, errors, empty],
        );
        let out = String::from_utf8(out).unwrap();
        for line in [
            "workspacesweb_portal_info{portal_id=\"p1\",portal_arn=\"arn:aws:workspaces-web:eu-west-1:210987654321:portal/p1\",region=\"eu-west-1\",account_id=\"210987654321\",display_name=\"\",browser_type=\"\",instance_type=\"\"} 1\n",
            "workspacesweb_api_request_errors_total{discovery=\"0\",account_id=\"210987654321\",region=\"eu-west-1\",operation=\"AssumeRole\",error=\"AccessDenied\"} 2\n",
            "# TYPE workspacesweb_account_info gauge\n",
            "workspacesweb_account_info{source=\"0\",account_id=\"123456789012\",account_name=\"management\"} 1\n",
            "workspacesweb_account_info{source=\"0\",account_id=\"210987654321\",account_name=\"team \\\"a\\\"\"} 1\n",
            "# TYPE workspacesweb_discovery_accounts gauge\n",
            "workspacesweb_discovery_accounts{source=\"0\"} 2\n",
            "workspacesweb_discovery_accounts{source=\"1\"} 0\n",
        ] {
            assert!(out.contains(line), "{line}\n{out}");
        }
        assert!(!out.contains("account_info{source=\"1\""), "{out}");
        // Without organization discovery, neither family is there.
        let mut out = Vec::new();
        write_portals(&mut TextWriter::new(&mut out), &[], &[]);
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("account"), "{out}");
    }

    #[test]
    fn portal_series_carry_portal_id_and_static_labels() {
        let t = text(vec![PortalSnapshot {
            portal_id: "p1".into(),
            labels: vec![("env".into(), "prod".into())],
            up: true,
            polled: true,
            active: Some(ActiveSummary {
                sessions: 3,
                users: 2,
                max_age_seconds: 61.5,
                peak: 5,
            }),
            api_requests: [("ListSessions".to_string(), 4)].into(),
            api_errors: [(
                (
                    "ListSessions".to_string(),
                    "ThrottlingException".to_string(),
                ),
                1,
            )]
            .into(),
            ..Default::default()
        }]);
        assert!(
            t.contains("workspacesweb_active_sessions{portal_id=\"p1\",env=\"prod\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("workspacesweb_active_users{portal_id=\"p1\",env=\"prod\"} 2\n"));
        assert!(t.contains(
            "workspacesweb_active_session_max_age_seconds{portal_id=\"p1\",env=\"prod\"} 61.5\n"
        ));
        assert!(
            t.contains("workspacesweb_active_sessions_peak{portal_id=\"p1\",env=\"prod\"} 5\n")
        );
        assert!(t.contains("workspacesweb_up{portal_id=\"p1\",env=\"prod\"} 1\n"));
        assert!(t.contains("workspacesweb_api_requests_total{portal_id=\"p1\",env=\"prod\",operation=\"ListSessions\"} 4\n"));
        assert!(t.contains(
            "workspacesweb_api_request_errors_total{portal_id=\"p1\",env=\"prod\",operation=\"ListSessions\",error=\"ThrottlingException\"} 1\n"
        ));
        assert!(t.contains("# HELP workspacesweb_active_sessions Sessions with status Active at the last successful poll. Refreshed every poll interval.\n"));
        assert!(t.contains("workspacesweb_config_last_reload_successful 1\n"));
        assert!(t.contains("workspacesweb_exporter_build_info{version=\""));
    }

    #[test]
    fn stale_portal_keeps_up_but_loses_state_gauges() {
        let t = text(vec![
            PortalSnapshot {
                portal_id: "a".into(),
                up: false,
                polled: true,
                active: None,
                ..Default::default()
            },
            PortalSnapshot {
                portal_id: "b".into(),
                up: true,
                polled: true,
                active: Some(ActiveSummary::default()),
                ..Default::default()
            },
        ]);
        assert!(t.contains("workspacesweb_up{portal_id=\"a\"} 0\n"));
        assert!(!t.contains("workspacesweb_active_sessions{portal_id=\"a\"}"));
        assert!(!t.contains("workspacesweb_active_sessions_peak{portal_id=\"a\"}"));
        assert!(t.contains("workspacesweb_active_sessions{portal_id=\"b\"} 0\n"));
        // HELP/TYPE appear once per family even with several portals.
        assert_eq!(t.matches("# TYPE workspacesweb_up gauge").count(), 1);
    }

    #[test]
    fn the_at_capacity_counter_is_present_only_with_a_known_limit() {
        let totals = |at_capacity_seconds| crate::ledger::Totals {
            at_capacity_seconds,
            ..Default::default()
        };
        let t = text(vec![
            PortalSnapshot {
                portal_id: "known".into(),
                totals: Some(totals(Some(42.5))),
                ..Default::default()
            },
            PortalSnapshot {
                portal_id: "unknown".into(),
                totals: Some(totals(None)),
                ..Default::default()
            },
        ]);
        assert!(t.contains("# TYPE workspacesweb_portal_at_capacity_seconds_total counter\n"));
        assert!(
            t.contains(
                "workspacesweb_portal_at_capacity_seconds_total{portal_id=\"known\"} 42.5\n"
            ),
            "{t}"
        );
        assert!(
            !t.contains("workspacesweb_portal_at_capacity_seconds_total{portal_id=\"unknown\"}")
        );
        let t = text(vec![PortalSnapshot {
            portal_id: "unknown".into(),
            totals: Some(totals(None)),
            ..Default::default()
        }]);
        assert!(
            !t.contains("workspacesweb_portal_at_capacity_seconds_total"),
            "{t}"
        );
    }

    /// The expected text of `panics_state_and_discovery_families`.
    const RARE_FAMILIES: &str = concat!(
        "# HELP workspacesweb_poller_panics_total Panics caught in the portal's poll task (the task restarts from its last successful poll).\n",
        "# TYPE workspacesweb_poller_panics_total counter\n",
        "workspacesweb_poller_panics_total{portal_id=\"p1\"} 0\n",
        "workspacesweb_poller_panics_total{portal_id=\"p2\"} 2\n",
        "# HELP workspacesweb_up 1 if the last poll of the portal succeeded, else 0. Refreshed every poll interval.\n",
        "# TYPE workspacesweb_up gauge\n",
        "workspacesweb_up{portal_id=\"p1\"} 0\n",
        "workspacesweb_up{portal_id=\"p2\"} 0\n",
        "# HELP workspacesweb_state_restored 1 when the portal resumed its counters from its state file at start, else 0.\n",
        "# TYPE workspacesweb_state_restored gauge\n",
        "workspacesweb_state_restored{portal_id=\"p1\"} 0\n",
        "workspacesweb_state_restored{portal_id=\"p2\"} 1\n",
        "# HELP workspacesweb_state_last_write_timestamp_seconds Unix time of the last successful write of the portal's state file.\n",
        "# TYPE workspacesweb_state_last_write_timestamp_seconds gauge\n",
        "workspacesweb_state_last_write_timestamp_seconds{portal_id=\"p2\"} 12.5\n",
        "# HELP workspacesweb_api_requests_total Requests to the WorkSpaces Web API (and STS AssumeRole), retries included; one that failed before it was sent (no credentials) counts too. Refreshed every poll interval.\n",
        "# TYPE workspacesweb_api_requests_total counter\n",
        "workspacesweb_api_requests_total{portal_id=\"p1\",operation=\"ListSessions\"} 4\n",
        "workspacesweb_api_requests_total{region=\"eu-west-1\",operation=\"ListPortals\"} 3\n",
        "# HELP workspacesweb_api_request_errors_total Failed API requests by AWS error code, or credentials (none to sign with), timeout, dispatch (connection failed), other. Refreshed every poll interval.\n",
        "# TYPE workspacesweb_api_request_errors_total counter\n",
        "workspacesweb_api_request_errors_total{portal_id=\"p2\",operation=\"GetSession\",error=\"timeout\"} 1\n",
        "workspacesweb_api_request_errors_total{region=\"eu-west-1\",operation=\"ListPortals\",error=\"dispatch\"} 1\n",
    );
}
