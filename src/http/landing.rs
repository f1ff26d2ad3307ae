//! The HTML landing page at `/`: version and links (the dashboard's with
//! `--web.dashboard-url`), how the process runs (config file, last reload, shard), the discovery
//! sources, and one table row per portal: display name, region and account, status, last poll
//! and interval, a sparkline of its active sessions over the last hour with its capacity,
//! capacity use, monthly users, API errors of the last hour, last error, labels.
//!
//! Times are relative to the moment the page is rendered ("12 s ago"), computed here: the page
//! has no script. Portal ids, names, labels, paths and errors come from config and from AWS:
//! everything is escaped. Usernames are never shown. No scripts and no external assets (the
//! response forbids both with a CSP header).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::sparkline;
use crate::recent_polls::WINDOW_MS;
use crate::session::UnixMillis;
use crate::snapshot::{DiscoverySnapshot, PortalSnapshot, Store};
use crate::status::{Setup, Waiting};

/// Inline style; the only styling the page has.
const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
table.setup th{background:#f6f6f6;font-weight:normal}\
td.num{text-align:right}td.error{max-width:40em;overflow-wrap:anywhere;font-family:monospace}\
td.spark,td.nw{white-space:nowrap}svg.spark{vertical-align:middle;margin-right:.4em}\
.up{color:#070}.down{color:#b00}.pending{color:#777}.note{color:#555;font-size:.85em}\
.id{font-family:monospace;font-size:.85em;color:#555}";

/// The project's repository (`package.repository`), for the documentation links; empty: no links.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

/// What a cell shows when there is nothing to show.
const NONE: &str = "\u{2014}";

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What readiness waits for, in words (the landing page and the body of a 503 `/-/ready`).
pub(super) fn waiting_text(waiting: Waiting) -> String {
    let mut parts = Vec::new();
    if waiting.portals_undeclared {
        parts.push("the portals to be set up".to_string());
    }
    match waiting.first_polls {
        0 => {}
        1 => parts.push("1 portal's first poll".to_string()),
        n => parts.push(format!("{n} portals' first poll")),
    }
    match waiting.first_listings {
        0 => {}
        1 => parts.push("1 discovery source's first listing".to_string()),
        n => parts.push(format!("{n} discovery sources' first listing")),
    }
    if parts.is_empty() {
        return "nothing".to_string();
    }
    format!("waiting for {}", parts.join(" and "))
}

/// Renders the landing page from the store as it is at `now_ms`.
pub(super) fn render(store: &Store, telemetry_path: &str, now_ms: UnixMillis) -> String {
    let portals = store.portals();
    let status = store.status();
    let setup = status.setup();
    let mut html = String::with_capacity(4096 + portals.len() * 1024);
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>workspacesweb-exporter</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>workspacesweb-exporter</h1>\n\
         <p>Prometheus exporter for AWS WorkSpaces Secure Browser (WorkSpaces Web) sessions, \
         version {version}.</p>\n",
        version = escape_html(crate::VERSION),
    );
    links(&mut html, telemetry_path, &setup, status.waiting());
    setup_table(&mut html, &setup, status.reload(), portals.len(), now_ms);
    discovery_table(&mut html, &store.discovery(), now_ms);
    portals_table(&mut html, &portals, now_ms);
    html.push_str("</body>\n</html>\n");
    html
}

/// The list of links: metrics, health, readiness (with what it waits for), the dashboard, docs.
fn links(html: &mut String, telemetry_path: &str, setup: &Setup, waiting: Waiting) {
    let path = escape_html(telemetry_path);
    let readiness = if waiting == Waiting::default() {
        "ready".to_string()
    } else {
        format!("not ready, {}", waiting_text(waiting))
    };
    let dashboard = setup
        .dashboard_url
        .as_deref()
        .map_or_else(String::new, |url| {
            let url = escape_html(url);
            format!("<li><a href=\"{url}\">Dashboard</a> ({url})</li>\n")
        });
    let _ = write!(
        html,
        "<ul>\n<li><a href=\"{path}\">Metrics</a> ({path})</li>\n{dashboard}\
         <li><a href=\"/-/healthy\">Health</a> (/-/healthy)</li>\n\
         <li><a href=\"/-/ready\">Readiness</a> (/-/ready): {readiness}</li>\n{docs}</ul>\n",
        docs = docs_links(REPOSITORY),
    );
}

/// The documentation list items, linking into the repository (none without one).
fn docs_links(repository: &str) -> String {
    if repository.is_empty() {
        return String::new();
    }
    let base = escape_html(repository.trim_end_matches('/'));
    format!(
        "<li><a href=\"{base}#readme\">Documentation</a>: metrics, configuration, quick start</li>\n\
         <li><a href=\"{base}/blob/main/docs/runbook.md\">Runbook</a>: what each alert means \
         and what to do</li>\n"
    )
}

/// How the process runs: config file, last reload, shard.
fn setup_table(
    html: &mut String,
    setup: &Setup,
    reload: crate::status::ReloadStatus,
    portals: usize,
    now_ms: UnixMillis,
) {
    let file = setup.config_file.as_deref().map_or_else(
        || "none: the built-in demo (<code>--demo</code>)".to_string(),
        |f| format!("<code>{}</code>", escape_html(f)),
    );
    let loaded = ago(Some(reload.success_unix), now_ms);
    let reload = if reload.successful {
        format!("<span class=\"up\">successful</span>, loaded {loaded}")
    } else {
        format!(
            "<span class=\"down\">failed</span>: the configuration loaded {loaded} keeps \
             running (the log says why)"
        )
    };
    let shard = match setup.shard {
        None => "not known yet".to_string(),
        Some(s) if s.total <= 1 => format!("not sharded: this replica polls all {portals} portals"),
        Some(s) => format!(
            "replica {} of {} (index {}): polls {portals} portals",
            u64::from(s.index) + 1,
            s.total,
            s.index
        ),
    };
    let _ = write!(
        html,
        "<h2>Configuration</h2>\n<table class=\"setup\">\n\
         <tr><th>Config file</th><td>{file}</td></tr>\n\
         <tr><th>Last reload</th><td>{reload}</td></tr>\n\
         <tr><th>Shard</th><td>{shard}</td></tr>\n</table>\n"
    );
}

/// One row per discovery source: portals found, last listing, errors.
fn discovery_table(html: &mut String, sources: &[DiscoverySnapshot], now_ms: UnixMillis) {
    html.push_str("<h2>Discovery sources</h2>\n");
    if sources.is_empty() {
        html.push_str("<p>None: the portals are those of the configuration file.</p>\n");
        return;
    }
    html.push_str(
        "<table>\n<thead><tr><th>Source</th><th>Portals found</th><th>Last listing</th>\
         <th>API errors</th><th>Last error</th></tr></thead>\n<tbody>\n",
    );
    // An organization entry's panic count has no labels and nothing else to show.
    for source in sources.iter().filter(|s| !s.labels.is_empty()) {
        let errors = source
            .api_errors
            .values()
            .fold(0u64, |s, n| s.saturating_add(*n));
        let _ = writeln!(
            html,
            "<tr><td>{labels}</td><td class=\"num\">{portals}</td><td>{listed}</td>\
             <td class=\"num\">{errors}</td><td class=\"error\">{error}</td></tr>",
            labels = labels_text(&source.labels),
            portals = source
                .portals
                .map_or_else(|| NONE.to_string(), |n| n.to_string()),
            listed = ago(source.last_listing_unix, now_ms),
            error = source
                .last_error_code
                .as_deref()
                .map(escape_html)
                .unwrap_or_default(),
        );
    }
    html.push_str("</tbody>\n</table>\n");
}

/// The portals: a summary line and one row each.
fn portals_table(
    html: &mut String,
    portals: &[std::sync::Arc<PortalSnapshot>],
    now_ms: UnixMillis,
) {
    let (up, down, pending) = portals
        .iter()
        .fold((0, 0, 0), |(u, d, p), s| match status(s) {
            Status::Up => (u + 1, d, p),
            Status::Down => (u, d + 1, p),
            Status::Pending => (u, d, p + 1),
        });
    let _ = write!(
        html,
        "<h2>Portals</h2>\n<p>{total} portals: {up} up, {down} down, {pending} pending first poll. \
         Values are refreshed every poll interval; times are as of this page.</p>\n<table>\n\
         <thead><tr><th>Portal</th><th>Region</th><th>Account</th><th>Status</th>\
         <th>Last poll</th><th>Active sessions, last hour</th><th>Capacity use</th>\
         <th>Monthly users</th><th>API errors, last hour</th><th>Last error</th>\
         <th>Labels</th></tr></thead>\n<tbody>\n",
        total = portals.len(),
    );
    if portals.is_empty() {
        html.push_str("<tr><td colspan=\"11\">No portals yet.</td></tr>\n");
    }
    for portal in portals {
        row(html, portal, now_ms);
    }
    html.push_str("</tbody>\n</table>\n");
}

/// The portal cell: its display name over its id, or the id alone when it has no name.
fn portal_cell(portal: &PortalSnapshot) -> String {
    let id = escape_html(&portal.portal_id);
    match portal.meta.as_ref().map(|m| m.display_name.as_str()) {
        Some(name) if !name.is_empty() => {
            format!("{}<br><span class=\"id\">{id}</span>", escape_html(name))
        }
        _ => format!("<span class=\"id\">{id}</span>"),
    }
}

/// Active sessions against `maxConcurrentSessions` (`7 / 10 (70%)`), when both are known.
fn capacity_cell(portal: &PortalSnapshot) -> String {
    let active = portal.active.as_ref().map(|a| a.sessions);
    let max = portal.meta.as_ref().and_then(|m| m.max_concurrent_sessions);
    match (active, max) {
        (Some(active), Some(max)) if max > 0 => {
            let percent = active.saturating_mul(100) / max;
            format!("{active} / {max} ({percent}%)")
        }
        _ => NONE.to_string(),
    }
}

/// The sparkline of the last hour (or of the polls so far, when younger), the active sessions
/// now, and the span it covers.
fn activity_cell(portal: &PortalSnapshot, now_ms: UnixMillis) -> String {
    let points: Vec<_> = portal.recent.window(now_ms).collect();
    let now = portal
        .active
        .as_ref()
        .map_or_else(|| NONE.to_string(), |a| a.sessions.to_string());
    let span_ms = sparkline::span_ms(&points, now_ms);
    let span = if span_ms >= WINDOW_MS - 60_000 {
        "hour".to_string()
    } else {
        duration_words(span_ms)
    };
    match sparkline::svg(&points, now_ms, &span) {
        Some(svg) => format!("{svg}{now}<br><span class=\"note\">last {span}</span>"),
        None => now,
    }
}

/// The last poll, relative to now, over the poll interval.
fn last_poll_cell(portal: &PortalSnapshot, now_ms: UnixMillis) -> String {
    let last = match portal.last_poll_unix {
        Some(_) => ago(portal.last_poll_unix, now_ms),
        None => "never".to_string(),
    };
    if portal.interval.is_zero() {
        return last;
    }
    format!(
        "{last}<br><span class=\"note\">every {}</span>",
        humantime::format_duration(portal.interval)
    )
}

/// What the status column shows.
#[derive(Clone, Copy)]
enum Status {
    Up,
    Down,
    Pending,
}

fn status(portal: &PortalSnapshot) -> Status {
    if !portal.polled {
        Status::Pending
    } else if portal.up {
        Status::Up
    } else {
        Status::Down
    }
}

/// `name="value", ...`, escaped.
fn labels_text(labels: &[(String, String)]) -> String {
    labels
        .iter()
        .map(|(name, value)| format!("{}=&quot;{}&quot;", escape_html(name), escape_html(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(html: &mut String, portal: &PortalSnapshot, now_ms: UnixMillis) {
    let (class, text) = match status(portal) {
        Status::Up => ("up", "up"),
        Status::Down => ("down", "down"),
        Status::Pending => ("pending", "pending first poll"),
    };
    let text_or_none = |v: Option<&str>| v.map_or_else(|| NONE.to_string(), escape_html);
    let monthly = portal
        .monthly_active_users
        .map_or_else(|| NONE.to_string(), |n| n.to_string());
    let errors = if portal.recent.window(now_ms).next().is_some() {
        portal.recent.errors_in_window(now_ms).to_string()
    } else {
        NONE.to_string()
    };
    let error = portal
        .last_error_code
        .as_deref()
        .map(|code| match &portal.last_error_message {
            Some(message) => escape_html(&format!("{code}: {message}")),
            None => escape_html(code),
        })
        .unwrap_or_default();
    let _ = writeln!(
        html,
        "<tr data-portal=\"{id}\"><td>{portal_cell}</td><td class=\"nw\">{region}</td>\
         <td class=\"nw\">{account}</td><td class=\"{class}\">{text}</td>\
         <td class=\"nw\">{last_poll}</td><td class=\"spark\">{activity}</td>\
         <td class=\"num\">{capacity}</td><td class=\"num\">{monthly}</td>\
         <td class=\"num\">{errors}</td><td class=\"error\">{error}</td><td>{labels}</td></tr>",
        id = escape_html(&portal.portal_id),
        portal_cell = portal_cell(portal),
        region = text_or_none(portal.region.as_deref()),
        account = text_or_none(portal.account_id.as_deref()),
        last_poll = last_poll_cell(portal, now_ms),
        activity = activity_cell(portal, now_ms),
        capacity = capacity_cell(portal),
        labels = labels_text(&portal.labels),
    );
}

/// A time as "12 s ago" (its UTC time in a tooltip), relative to `now_ms`; a dash when unknown.
fn ago(unix_seconds: Option<f64>, now_ms: UnixMillis) -> String {
    let Some(seconds) = unix_seconds else {
        return NONE.to_string();
    };
    let Some(utc) = format_unix(seconds) else {
        return NONE.to_string();
    };
    let then_ms = (seconds * 1000.0) as i64;
    format!(
        "<time datetime=\"{utc}\" title=\"{utc}\">{}</time>",
        relative(now_ms.saturating_sub(then_ms))
    )
}

/// An age in milliseconds in words: "just now", "12 s ago", "3 min ago", "5 h ago", "2 d ago";
/// a time ahead of the clock (clock steps) says "in 4 s".
fn relative(age_ms: i64) -> String {
    if age_ms.unsigned_abs() < 1000 {
        return "just now".to_string();
    }
    let amount = duration_words(age_ms);
    if age_ms < 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A duration in milliseconds (its absolute value) in words, rounded down: "12 s", "3 min",
/// "5 h" (under two days), "2 d".
fn duration_words(ms: i64) -> String {
    match ms.unsigned_abs() / 1000 {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 48 * 3600 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-28T11:19:17Z`); `None` when out of range.
fn format_unix(seconds: f64) -> Option<String> {
    /// Last second of the year 9999: humantime's `Display` fails (and `to_string` panics) beyond.
    const LAST_FORMATTABLE_SECOND: u64 = 253_402_300_799;
    let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
    if since_epoch.as_secs() > LAST_FORMATTABLE_SECOND {
        return None;
    }
    let time: SystemTime = UNIX_EPOCH.checked_add(since_epoch)?;
    Some(humantime::format_rfc3339_seconds(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ActiveSummary;
    use crate::snapshot::PortalMeta;
    use crate::status::{ReloadStatus, Shard};
    use crate::users::UserSeries;

    const NOW: UnixMillis = 1_800_000_000_000;
    const HOSTILE: &str = "\"><img src=x onerror=alert(1)><script>alert('x')</script>";

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("plain ü"), "plain ü");
    }

    #[test]
    fn formats_unix_times_as_utc() {
        assert_eq!(format_unix(0.0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            format_unix(1_700_000_000.75).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(format_unix(-1.0), None);
        assert_eq!(format_unix(f64::NAN), None);
        assert_eq!(format_unix(f64::INFINITY), None);
        assert_eq!(format_unix(1e30), None);
    }

    #[test]
    fn relative_times_in_words() {
        assert_eq!(relative(0), "just now");
        assert_eq!(relative(999), "just now");
        assert_eq!(relative(12_400), "12 s ago");
        assert_eq!(relative(59_999), "59 s ago");
        assert_eq!(relative(60_000), "1 min ago");
        assert_eq!(relative(3 * 60_000 + 59_000), "3 min ago");
        assert_eq!(relative(3_600_000), "1 h ago");
        assert_eq!(relative(47 * 3_600_000), "47 h ago");
        assert_eq!(relative(48 * 3_600_000), "2 d ago");
        assert_eq!(relative(-4_000), "in 4 s");
        assert_eq!(
            relative(i64::MIN),
            format!("in {} d", i64::MIN.unsigned_abs() / 86_400_000)
        );
        assert_eq!(
            ago(Some(1_799_999_988.0), NOW),
            "<time datetime=\"2027-01-15T07:59:48Z\" title=\"2027-01-15T07:59:48Z\">12 s ago</time>"
        );
        assert_eq!(ago(None, NOW), NONE);
        assert_eq!(ago(Some(f64::NAN), NOW), NONE);
    }

    #[test]
    fn readiness_says_what_it_waits_for() {
        assert_eq!(waiting_text(Waiting::default()), "nothing");
        assert_eq!(
            waiting_text(Waiting {
                portals_undeclared: true,
                ..Waiting::default()
            }),
            "waiting for the portals to be set up"
        );
        assert_eq!(
            waiting_text(Waiting {
                portals_undeclared: false,
                first_polls: 2,
                first_listings: 1
            }),
            "waiting for 2 portals' first poll and 1 discovery source's first listing"
        );
    }

    /// A portal polled for the last 50 minutes: one failed poll with two errors, capacity 10.
    fn busy_portal() -> PortalSnapshot {
        let mut recent = crate::recent_polls::RecentPolls::default();
        let minute = 60_000;
        recent.record(NOW - 50 * minute, Some(3), Some(10), 0);
        recent.record(NOW - 40 * minute, None, Some(10), 2);
        recent.record(NOW - 30 * minute, Some(5), Some(10), 2);
        recent.record(NOW - 20 * minute, Some(7), Some(10), 3);
        recent.record(NOW - 12_000, Some(6), Some(10), 3);
        PortalSnapshot {
            portal_id: "p-busy".into(),
            labels: vec![("team".into(), HOSTILE.into())],
            up: true,
            polled: true,
            active: Some(ActiveSummary {
                sessions: 6,
                users: 3,
                max_age_seconds: 1.0,
                peak: 9,
            }),
            last_poll_unix: Some((NOW - 12_000) as f64 / 1000.0),
            monthly_active_users: Some(42),
            users: vec![UserSeries {
                username: "alice@example.com".into(),
                active: 1,
                started: 1,
                session_seconds: 1.0,
                created_ms: NOW - 60_000,
            }],
            meta: Some(PortalMeta {
                display_name: HOSTILE.into(),
                max_concurrent_sessions: Some(10),
                ..Default::default()
            }),
            region: Some("eu-west-1".into()),
            account_id: Some("210987654321".into()),
            interval: Duration::from_secs(60),
            recent,
            ..Default::default()
        }
    }

    fn store() -> Store {
        let store = Store::new();
        store.publish(busy_portal());
        store.publish(PortalSnapshot {
            portal_id: "p-down".into(),
            polled: true,
            last_error_code: Some(HOSTILE.into()),
            last_error_message: Some("User: <b>x</b> is not authorized".into()),
            ..Default::default()
        });
        store.publish(PortalSnapshot {
            portal_id: "p-new".into(),
            ..Default::default()
        });
        store.set_discovery(
            vec![DiscoverySnapshot {
                labels: vec![("region".into(), HOSTILE.into())],
                api_errors: [(("ListPortals".into(), "dispatch".into()), 2)].into(),
                portals: Some(4),
                last_listing_unix: Some((NOW - 180_000) as f64 / 1000.0),
                last_error_code: Some("ListPortals dispatch".into()),
                ..Default::default()
            }],
            0,
        );
        store.status().set_setup(Setup {
            config_file: Some(format!("/etc/{HOSTILE}.yaml")),
            dashboard_url: Some("https://grafana.example.com/d/x?a=1&b=2".into()),
            shard: None,
        });
        store.status().set_shard(Shard { index: 1, total: 3 });
        store.status().set_reload(ReloadStatus {
            successful: false,
            success_unix: (NOW - 7_200_000) as f64 / 1000.0,
        });
        store
    }

    /// The page's row of `portal_id`.
    fn row_of<'a>(html: &'a str, portal_id: &str) -> &'a str {
        let start = html
            .find(&format!("<tr data-portal=\"{portal_id}\">"))
            .expect("the portal's row");
        let len = html[start..].find("</tr>").expect("row end");
        &html[start..start + len]
    }

    #[test]
    fn a_portal_row_shows_where_when_how_busy_and_how_it_fails() {
        let html = render(&store(), "/metrics", NOW);
        let row = row_of(&html, "p-busy");
        let cells: Vec<&str> = row.split("<td").skip(1).collect();
        assert_eq!(cells.len(), 11, "{row}");
        assert!(cells[1].contains(">eu-west-1<"), "region: {row}");
        assert!(cells[2].contains(">210987654321<"), "account: {row}");
        assert!(cells[4].contains(">12 s ago</time>"), "{row}");
        assert!(cells[4].contains("every 1m"), "interval: {row}");
        // The sparkline: four successful polls in two runs around the failed one, capacity 10.
        assert!(cells[5].contains("<svg class=\"spark\""), "{row}");
        assert_eq!(cells[5].matches("<polyline class=\"active\"").count(), 1);
        assert_eq!(cells[5].matches("<circle class=\"active\"").count(), 1);
        assert_eq!(cells[5].matches("<polyline class=\"capacity\"").count(), 1);
        assert!(
            cells[5].ends_with("</svg>6<br><span class=\"note\">last 50 min</span></td>"),
            "active now: {row}"
        );
        assert!(cells[6].contains(">6 / 10 (60%)<"), "{row}");
        assert!(cells[7].contains(">42<"), "{row}");
        assert!(cells[8].contains(">3<"), "errors of the last hour: {row}");
        // Without metadata or polls: dashes.
        let down = row_of(&html, "p-down");
        assert!(down.contains(
            "<td><span class=\"id\">p-down</span></td><td class=\"nw\">\u{2014}</td><td class=\"nw\">\u{2014}</td>"
        ));
        assert!(!down.contains("<svg"));
        let new = row_of(&html, "p-new");
        assert!(new.contains("pending first poll") && new.contains(">never<"));
        assert!(html.contains("3 portals: 1 up, 1 down, 1 pending"));
    }

    #[test]
    fn everything_from_outside_is_escaped_and_usernames_never_shown() {
        let html = render(&store(), "/metrics?x=\"y\"", NOW);
        let escaped = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;";
        // Display name, label, last error, discovery label, config file path.
        assert_eq!(html.matches(escaped).count(), 5, "{html}");
        assert!(
            !html.contains("<img") && !html.contains("<script"),
            "{html}"
        );
        assert!(html.contains("<a href=\"/metrics?x=&quot;y&quot;\">"));
        // The last error's message after its code, escaped too.
        assert!(
            html.contains("&lt;/script&gt;: User: &lt;b&gt;x&lt;/b&gt; is not authorized</td>")
        );
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("alice"), "a username on the page");
    }

    #[test]
    fn the_setup_discovery_and_dashboard_are_shown() {
        let html = render(&store(), "/metrics", NOW);
        assert!(
            html.contains(
                "<li><a href=\"https://grafana.example.com/d/x?a=1&amp;b=2\">Dashboard</a>"
            )
        );
        assert!(
            html.contains("<span class=\"down\">failed</span>: the configuration loaded <time")
        );
        assert!(html.contains(">2 h ago</time> keeps running"));
        assert!(html.contains("replica 2 of 3 (index 1): polls 3 portals"));
        assert!(html.contains("(/-/ready): not ready, waiting for the portals to be set up"));
        // The discovery source: portals found, last listing, errors, last error.
        assert!(
            html.contains(
                "<td class=\"num\">4</td><td><time datetime=\"2027-01-15T07:57:00Z\" \
             title=\"2027-01-15T07:57:00Z\">3 min ago</time></td><td class=\"num\">2</td>\
             <td class=\"error\">ListPortals dispatch</td>"
            ),
            "{html}"
        );
    }

    #[test]
    fn a_demo_without_discovery_or_dashboard_says_so() {
        let store = Store::new();
        store.status().set_shard(Shard { index: 0, total: 1 });
        store.status().set_reload(ReloadStatus {
            successful: true,
            success_unix: (NOW - 5_000) as f64 / 1000.0,
        });
        store.set_owned([]);
        let html = render(&store, "/metrics", NOW);
        assert!(html.contains("none: the built-in demo (<code>--demo</code>)"));
        assert!(html.contains("<span class=\"up\">successful</span>, loaded <time"));
        assert!(html.contains("not sharded: this replica polls all 0 portals"));
        assert!(html.contains("None: the portals are those of the configuration file."));
        assert!(html.contains("No portals yet."));
        assert!(html.contains("(/-/ready): ready</li>"));
        assert!(!html.contains("Dashboard"));
    }

    #[test]
    fn docs_links_follow_the_repository() {
        assert_eq!(docs_links(""), "");
        let links = docs_links("https://example.com/a\"b/");
        assert!(links.contains("href=\"https://example.com/a&quot;b#readme\""));
        assert!(links.contains("href=\"https://example.com/a&quot;b/blob/main/docs/runbook.md\""));
    }
}
