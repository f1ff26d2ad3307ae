//! Builds the Prometheus text exposition (format 0.0.4) from portal snapshots.
//!
//! Every `workspacesweb_*` series is computed here from [`PortalSnapshot`]s; `process_*` come from the
//! `prometheus` crate's process collector, gathered at render time so they are always fresh.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use prometheus::Encoder as _;

use crate::build_info;
#[cfg(test)]
use crate::snapshot::ReloadStatus;
use crate::snapshot::{DiscoverySnapshot, ExporterStatus, PortalSnapshot};
use crate::users::UserSeries;

/// Metric name prefix.
pub const PREFIX: &str = "workspacesweb_";

const REFRESH: &str = "Refreshed every poll interval.";

static PROCESS: LazyLock<prometheus::Registry> = LazyLock::new(|| {
    let registry = prometheus::Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
    }
    registry
});

/// Renders the whole exposition: portal series, exporter series and `process_*`.
pub fn render(
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
    status: impl Into<ExporterStatus>,
) -> Bytes {
    let mut out = render_main(portals, discovery, status).into_bytes();
    out.extend_from_slice(&render_process());
    Bytes::from(out)
}

/// The part of the exposition that changes only when a snapshot is published: every
/// `workspacesweb_*` series (portal, discovery and exporter series), without `process_*`.
/// Laid out as [`render_head`], then each of [`USER_FAMILIES`]: its header (when any portal has a
/// sample of it) and every portal's [`render_user_samples`], which is how the server assembles it.
pub fn render_main(
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
    status: impl Into<ExporterStatus>,
) -> String {
    let users: usize = portals.iter().map(|p| p.users.len()).sum();
    let mut out = String::with_capacity(4096 + portals.len() * 2048 + users * 256);
    out.push_str(&render_head(portals, discovery, status));
    for family in &USER_FAMILIES {
        let samples: Vec<String> = portals
            .iter()
            .map(|p| render_user_samples(family, p))
            .collect();
        if samples.iter().any(|s| !s.is_empty()) {
            out.push_str(&family.header());
            samples.iter().for_each(|s| out.push_str(s));
        }
    }
    out
}

/// Every `workspacesweb_*` family except the per-user ones, whose samples are rendered per
/// portal (they are most of the exposition, and most portals do not change between renderings).
pub fn render_head(
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
    status: impl Into<ExporterStatus>,
) -> String {
    let mut out = String::with_capacity(4096 + portals.len() * 2048);
    render_head_into(&mut out, portals, discovery, status);
    out
}

/// [`render_head`] into a sink.
pub fn render_head_into(
    out: &mut dyn Sink,
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
    status: impl Into<ExporterStatus>,
) {
    render_portals(out, portals, discovery);
    render_exporter(out, status.into());
}

/// Where rendered text goes: a `String`, or a compressor that takes the text as it grows (so a
/// large exposition is never in memory as text).
pub trait Sink {
    /// The buffer to append text to.
    fn text(&mut self) -> &mut String;
    /// Called after each sample; a compressor takes the buffered text here.
    fn sample_written(&mut self) {}
}

impl Sink for String {
    fn text(&mut self) -> &mut String {
        self
    }
}

impl Sink for crate::deflate::PieceWriter {
    fn text(&mut self) -> &mut String {
        self.pending()
    }

    fn sample_written(&mut self) {
        self.drain_if_full();
    }
}

/// A per-user family: exposed after every other family, one block of samples per portal.
pub struct UserFamily {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&PortalSnapshot, &UserSeries) -> Option<f64>,
}

/// The per-user families, in exposition order.
pub static USER_FAMILIES: [UserFamily; 3] = [
    UserFamily {
        name: "user_active_sessions",
        kind: "gauge",
        help: "Active sessions of each user with at least one, at the last successful poll.",
        // A stale portal loses it with the other state gauges.
        value: |p, u| (p.active.is_some() && u.active > 0).then_some(u.active as f64),
    },
    UserFamily {
        name: "user_sessions_started_total",
        kind: "counter",
        help: "Distinct sessions of each user observed since the exporter's first successful poll of the portal.",
        value: |_, u| Some(u.started as f64),
    },
    UserFamily {
        name: "user_session_seconds_total",
        kind: "counter",
        help: "Session time of each user since the exporter's first successful poll of the portal.",
        value: |_, u| Some(u.session_seconds),
    },
];

impl UserFamily {
    /// The family's `# HELP` and `# TYPE` lines.
    pub fn header(&self) -> String {
        let mut out = String::new();
        Family::new(
            &mut out,
            self.name,
            self.kind,
            &format!("{} {REFRESH}", self.help),
        );
        out
    }
}

/// One portal's samples of a per-user family, without the header ("" when it has none).
pub fn render_user_samples(family: &UserFamily, p: &PortalSnapshot) -> String {
    let mut out = String::with_capacity(p.users.len() * 128);
    render_user_samples_into(&mut out, family, p);
    out
}

/// [`render_user_samples`] into a sink.
pub fn render_user_samples_into(out: &mut dyn Sink, family: &UserFamily, p: &PortalSnapshot) {
    if p.users.is_empty() {
        return;
    }
    let labels = portal_labels(p);
    let mut f = Family::continued(out, family.name);
    for u in &p.users {
        if let Some(v) = (family.value)(p, u) {
            f.sample("", &labels, &[("username", &u.username)], v);
        }
    }
}

/// The `process_*` families, gathered from /proc now (small; rendered on every scrape so they
/// are always fresh). Empty where the process collector is not available.
pub fn render_process() -> Vec<u8> {
    let mut buf = Vec::with_capacity(1024);
    if prometheus::TextEncoder::new()
        .encode(&PROCESS.gather(), &mut buf)
        .is_err()
    {
        buf.clear();
    }
    buf
}

/// Name, help and getter of a portal counter.
type CounterDef = (
    &'static str,
    &'static str,
    fn(&crate::ledger::Totals) -> f64,
);

/// A metric family being written: HELP and TYPE once, then samples.
struct Family<'a> {
    out: &'a mut dyn Sink,
    name: String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut dyn Sink, name: &str, kind: &str, help: &str) -> Self {
        let text = out.text();
        let _ = writeln!(text, "# HELP {PREFIX}{name} {}", escape_help(help));
        let _ = writeln!(text, "# TYPE {PREFIX}{name} {kind}");
        Self::continued(out, name)
    }

    /// Samples of a family whose header is written elsewhere.
    fn continued(out: &'a mut dyn Sink, name: &str) -> Self {
        Family {
            out,
            name: format!("{PREFIX}{name}"),
        }
    }

    /// Writes `name{portal labels, extra labels} value`.
    fn sample(&mut self, suffix: &str, base: &[(&str, &str)], extra: &[(&str, &str)], value: f64) {
        let out = self.out.text();
        out.push_str(&self.name);
        out.push_str(suffix);
        write_labels(out, base.iter().chain(extra.iter()));
        out.push(' ');
        push_value(out, value);
        out.push('\n');
        self.out.sample_written();
    }
}

fn write_labels<'x>(out: &mut String, labels: impl Iterator<Item = &'x (&'x str, &'x str)>) {
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

/// Escapes a label value: backslash, double quote and line feed (text format 0.0.4).
pub fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Formats a sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn push_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
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
}

/// Families written by a function of their own (a histogram, info labels).
type OwnFamilies = fn(&mut dyn Sink, &[Arc<PortalSnapshot>], &[Vec<(&str, &str)>]);

/// One row of [`PORTAL_FAMILIES`].
enum Row {
    /// A family: name, type, help, and how its samples are read.
    Family(&'static str, &'static str, Help, Read),
    /// Families of a shape of their own.
    Own(OwnFamilies),
}

/// Every portal and discovery family, in exposition order. Adding a metric is adding a row.
const PORTAL_FAMILIES: [Row; 16] = [
    // State gauges: present after a successful poll, dropped after the staleness limit.
    Row::Family(
        "active_sessions",
        "gauge",
        Help::Polled("Sessions with status Active at the last successful poll."),
        Read::Value(|p| p.active.map(|a| a.sessions as f64)),
    ),
    Row::Family(
        "active_sessions_peak",
        "gauge",
        Help::Polled(
            "Highest number of simultaneously active sessions between the previous successful poll and the last one, from API start and end times (active_sessions on the first poll).",
        ),
        Read::Value(|p| p.active.map(|a| a.peak as f64)),
    ),
    Row::Family(
        "active_users",
        "gauge",
        Help::Polled("Distinct usernames among the active sessions at the last successful poll."),
        Read::Value(|p| p.active.map(|a| a.users as f64)),
    ),
    Row::Family(
        "active_session_max_age_seconds",
        "gauge",
        Help::Polled("Age of the oldest active session at the last successful poll (0 when none)."),
        Read::Value(|p| p.active.map(|a| a.max_age_seconds)),
    ),
    Row::Own(render_totals),
    Row::Family(
        "monthly_active_users",
        "gauge",
        Help::Polled(
            "Distinct usernames with any session in the current UTC calendar month (what AWS bills on); backfilled from the API at startup.",
        ),
        Read::Value(|p| p.monthly_active_users.map(|v| v as f64)),
    ),
    Row::Own(render_info),
    Row::Family(
        "portal_max_concurrent_sessions",
        "gauge",
        Help::Polled("maxConcurrentSessions of the portal, for capacity alerts."),
        Read::Value(|p| {
            p.meta
                .as_ref()
                .and_then(|m| m.max_concurrent_sessions)
                .map(|m| m as f64)
        }),
    ),
    Row::Family(
        "poller_panics_total",
        "counter",
        Help::Fixed(
            "Panics caught in the portal's poll task (the task restarts with a fresh ledger).",
        ),
        Read::Count(|p| p.panics),
    ),
    Row::Family(
        "up",
        "gauge",
        Help::Polled("1 if the last poll of the portal succeeded, else 0."),
        Read::Value(|p| Some(if p.up { 1.0 } else { 0.0 })),
    ),
    Row::Family(
        "poll_duration_seconds",
        "gauge",
        Help::Polled("Wall time of the last poll of the portal."),
        Read::Value(|p| p.poll_duration_seconds),
    ),
    Row::Family(
        "last_successful_poll_timestamp_seconds",
        "gauge",
        Help::Polled("Unix time of the last successful poll of the portal."),
        Read::Value(|p| p.last_success_unix),
    ),
    // With `--storage.path`.
    Row::Family(
        "state_restored",
        "gauge",
        Help::Fixed("1 when the portal resumed its counters from its state file at start, else 0."),
        Read::Value(|p| p.state.map(|s| if s.restored { 1.0 } else { 0.0 })),
    ),
    Row::Family(
        "state_last_write_timestamp_seconds",
        "gauge",
        Help::Fixed("Unix time of the last successful write of the portal's state file."),
        Read::Value(|p| p.state.and_then(|s| s.last_write_unix)),
    ),
    Row::Family(
        "api_requests_total",
        "counter",
        Help::Polled("HTTP requests sent to the WorkSpaces Web API, retries included."),
        Read::Api(|(requests, _), emit| {
            for (op, n) in requests {
                emit(&[("operation", op)], *n as f64);
            }
        }),
    ),
    Row::Family(
        "api_request_errors_total",
        "counter",
        Help::Polled(
            "Failed API requests by AWS error code, or timeout, dispatch (connection failed), other.",
        ),
        Read::Api(|(_, errors), emit| {
            for ((op, code), n) in errors {
                emit(&[("operation", op), ("error", code)], *n as f64);
            }
        }),
    ),
];

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

    /// The API counts of each portal, then of each discovery source, with their labels.
    fn api_counts(&self) -> impl Iterator<Item = (ApiCounts<'a>, &[(&'a str, &'a str)])> {
        let portals = self
            .portals
            .iter()
            .map(|p| (&p.api_requests, &p.api_errors));
        let discovery = self
            .discovery
            .iter()
            .map(|d| (&d.api_requests, &d.api_errors));
        portals
            .zip(self.labels.iter().map(Vec::as_slice))
            .chain(discovery.zip(self.discovery_labels.iter().map(Vec::as_slice)))
    }

    /// Whether a family reading `read` has any sample.
    fn any(&self, read: Read) -> bool {
        match read {
            Read::Value(get) => self.each().any(|(p, _)| get(p).is_some()),
            Read::Count(get) => self.each().any(|(p, _)| get(p) > 0),
            Read::Api(get) => self.api_counts().any(|(counts, _)| {
                let mut any = false;
                get(counts, &mut |_, _| any = true);
                any
            }),
        }
    }
}

/// Every portal and discovery family, as [`PORTAL_FAMILIES`] lists them.
fn render_portals(
    out: &mut dyn Sink,
    portals: &[Arc<PortalSnapshot>],
    discovery: &[DiscoverySnapshot],
) {
    let sources = Sources::new(portals, discovery);
    for row in &PORTAL_FAMILIES {
        match row {
            Row::Own(render) => render(out, portals, &sources.labels),
            Row::Family(name, kind, help, read) => {
                render_family(out, &sources, (name, kind, *help), *read);
            }
        }
    }
}

/// One family of [`PORTAL_FAMILIES`]: its header and samples, or nothing while it has no sample.
fn render_family(
    out: &mut dyn Sink,
    sources: &Sources<'_>,
    (name, kind, help): (&str, &str, Help),
    read: Read,
) {
    if !sources.any(read) {
        return;
    }
    let help = match help {
        Help::Polled(h) => format!("{h} {REFRESH}"),
        Help::Fixed(h) => h.to_string(),
    };
    let mut f = Family::new(out, name, kind, &help);
    match read {
        Read::Value(get) => {
            for (p, l) in sources.each() {
                if let Some(v) = get(p) {
                    f.sample("", l, &[], v);
                }
            }
        }
        Read::Count(get) => {
            for (p, l) in sources.each() {
                f.sample("", l, &[], get(p) as f64);
            }
        }
        Read::Api(get) => {
            for (counts, l) in sources.api_counts() {
                get(counts, &mut |extra, v| f.sample("", l, extra, v));
            }
        }
    }
}

fn render_totals(
    out: &mut dyn Sink,
    portals: &[Arc<PortalSnapshot>],
    labels: &[Vec<(&str, &str)>],
) {
    let with_totals: Vec<_> = portals
        .iter()
        .zip(labels.iter())
        .filter_map(|(p, l)| p.totals.as_ref().map(|t| (t, l)))
        .collect();
    if with_totals.is_empty() {
        return;
    }
    let counters: [CounterDef; 4] = [
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
    for (name, help, get) in counters {
        let mut f = Family::new(out, name, "counter", &format!("{help} {REFRESH}"));
        for (t, l) in &with_totals {
            f.sample("", l, &[], get(t));
        }
    }
    if with_totals
        .iter()
        .any(|(t, _)| t.at_capacity_seconds.is_some())
    {
        let mut f = Family::new(
            out,
            "portal_at_capacity_seconds_total",
            "counter",
            &format!(
                "Time since the exporter's first successful poll of the portal during which its concurrent sessions were at or above maxConcurrentSessions, from API start and end times; absent while the limit is unknown. {REFRESH}"
            ),
        );
        for (t, l) in &with_totals {
            if let Some(v) = t.at_capacity_seconds {
                f.sample("", l, &[], v);
            }
        }
    }
    let mut f = Family::new(
        out,
        "session_duration_seconds",
        "histogram",
        &format!(
            "endTime - startTime of each terminated session counted in sessions_terminated_total with a complete record. {REFRESH}"
        ),
    );
    for (t, l) in &with_totals {
        let h = &t.durations;
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            le.clear();
            push_value(&mut le, *bound);
            f.sample("_bucket", l, &[("le", &le)], cumulative as f64);
        }
        f.sample("_bucket", l, &[("le", "+Inf")], h.count as f64);
        f.sample("_sum", l, &[], h.sum);
        f.sample("_count", l, &[], h.count as f64);
    }
}

/// Labels of `portal_info` beyond the portal's own; a static label of the same name is left out there.
const INFO_LABELS: [&str; 5] = [
    "portal_arn",
    "region",
    "display_name",
    "browser_type",
    "instance_type",
];

/// `portal_info`: the portal's labels and its metadata (a static label of the same name is left out).
fn render_info(out: &mut dyn Sink, portals: &[Arc<PortalSnapshot>], labels: &[Vec<(&str, &str)>]) {
    let each = || portals.iter().zip(labels.iter());
    if !each().any(|(p, _)| p.meta.is_some()) {
        return;
    }
    let mut f = Family::new(
        out,
        "portal_info",
        "gauge",
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
                ("display_name", m.display_name.as_str()),
                ("browser_type", m.browser_type.as_str()),
                ("instance_type", m.instance_type.as_str()),
            ];
            f.sample("", &base, &info, 1.0);
        }
    }
}

fn render_exporter(out: &mut dyn Sink, status: ExporterStatus) {
    let reload = status.reload;
    let mut f = Family::new(
        out,
        "exporter_build_info",
        "gauge",
        "A metric with a constant '1' value labeled by version, revision and rustc_version of the build.",
    );
    f.sample(
        "",
        &[
            ("version", crate::VERSION),
            ("revision", build_info::REVISION),
            ("rustc_version", build_info::RUSTC_VERSION),
        ],
        &[],
        1.0,
    );
    let mut f = Family::new(
        out,
        "config_last_reload_successful",
        "gauge",
        "Whether the last configuration load succeeded.",
    );
    f.sample("", &[], &[], if reload.successful { 1.0 } else { 0.0 });
    let mut f = Family::new(
        out,
        "config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful configuration load.",
    );
    f.sample("", &[], &[], reload.success_unix);
    if let Some(errors) = status.state_write_errors {
        let mut f = Family::new(
            out,
            "state_write_errors_total",
            "counter",
            "State file writes (--storage.path) that failed since the exporter started.",
        );
        f.sample("", &[], &[], errors as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ActiveSummary;

    fn text(portals: Vec<PortalSnapshot>) -> String {
        let portals: Vec<_> = portals.into_iter().map(Arc::new).collect();
        String::from_utf8(
            render(
                &portals,
                &[],
                ReloadStatus {
                    successful: true,
                    success_unix: 5.0,
                },
            )
            .to_vec(),
        )
        .unwrap_or_default()
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
        };
        let portals = [Arc::new(calm), Arc::new(panicked)];
        let mut out = String::new();
        render_portals(&mut out, &portals, &[discovery]);
        assert_eq!(out, RARE_FAMILIES);
    }

    #[test]
    fn values_are_formatted_like_prometheus() {
        let mut s = String::new();
        for v in [
            1.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -3.0,
            1e20,
        ] {
            push_value(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.5 NaN +Inf -Inf -3 100000000000000000000 ");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\"b\\c\nd é 😀");
        assert_eq!(s, "a\\\"b\\\\c\\nd é 😀");
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
        "# HELP workspacesweb_poller_panics_total Panics caught in the portal's poll task (the task restarts with a fresh ledger).\n",
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
        "# HELP workspacesweb_api_requests_total HTTP requests sent to the WorkSpaces Web API, retries included. Refreshed every poll interval.\n",
        "# TYPE workspacesweb_api_requests_total counter\n",
        "workspacesweb_api_requests_total{portal_id=\"p1\",operation=\"ListSessions\"} 4\n",
        "workspacesweb_api_requests_total{region=\"eu-west-1\",operation=\"ListPortals\"} 3\n",
        "# HELP workspacesweb_api_request_errors_total Failed API requests by AWS error code, or timeout, dispatch (connection failed), other. Refreshed every poll interval.\n",
        "# TYPE workspacesweb_api_request_errors_total counter\n",
        "workspacesweb_api_request_errors_total{portal_id=\"p2\",operation=\"GetSession\",error=\"timeout\"} 1\n",
        "workspacesweb_api_request_errors_total{region=\"eu-west-1\",operation=\"ListPortals\",error=\"dispatch\"} 1\n",
    );
}
