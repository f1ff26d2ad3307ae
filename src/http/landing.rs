//! The HTML landing page at `/`: version, links, and one table row per portal (display name,
//! status, capacity use, monthly users).
//!
//! Portal ids, labels and errors come from config and from AWS: everything is escaped.
//! No scripts and no external assets (the response forbids both with a CSP header).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::snapshot::{PortalSnapshot, Store};

/// Inline style; the only styling the page has.
const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}\
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
td.num{text-align:right}td.error{max-width:40em;overflow-wrap:anywhere;font-family:monospace}\
.up{color:#070}.down{color:#b00}.pending{color:#777}.id{font-family:monospace;font-size:.85em;color:#555}";

/// The project's repository (`package.repository`), for the documentation links; empty: no links.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");

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

/// Renders the landing page from the store as it is now.
pub(super) fn render(store: &Store, telemetry_path: &str) -> String {
    let portals = store.portals();
    let ready = store.status().ready();
    let path = escape_html(telemetry_path);
    let mut html = String::with_capacity(2048 + portals.len() * 256);
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>workspacesweb-exporter</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>workspacesweb-exporter</h1>\n\
         <p>Prometheus exporter for AWS WorkSpaces Secure Browser (WorkSpaces Web) sessions, \
         version {version}.</p>\n<ul>\n\
         <li><a href=\"{path}\">Metrics</a> ({path})</li>\n\
         <li><a href=\"/-/healthy\">Health</a> (/-/healthy)</li>\n\
         <li><a href=\"/-/ready\">Readiness</a> (/-/ready): {readiness}</li>\n{docs}</ul>\n",
        version = escape_html(crate::VERSION),
        docs = docs_links(REPOSITORY),
        readiness = if ready {
            "ready"
        } else {
            "not ready, waiting for first polls"
        },
    );
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
         Values are refreshed every poll interval.</p>\n<table>\n<thead><tr><th>Portal</th>\
         <th>Labels</th><th>Status</th><th>Last poll (UTC)</th><th>Active sessions</th>\
         <th>Capacity use</th><th>Monthly users</th><th>Last error</th></tr></thead>\n<tbody>\n",
        total = portals.len(),
    );
    if portals.is_empty() {
        html.push_str("<tr><td colspan=\"8\">No portals yet.</td></tr>\n");
    }
    for portal in &portals {
        row(&mut html, portal);
    }
    html.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    html
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
        _ => "\u{2014}".to_string(),
    }
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

fn row(html: &mut String, portal: &PortalSnapshot) {
    let labels = portal
        .labels
        .iter()
        .map(|(name, value)| format!("{}=&quot;{}&quot;", escape_html(name), escape_html(value)))
        .collect::<Vec<_>>()
        .join(", ");
    let (class, text) = match status(portal) {
        Status::Up => ("up", "up"),
        Status::Down => ("down", "down"),
        Status::Pending => ("pending", "pending first poll"),
    };
    let last_poll = portal
        .last_poll_unix
        .and_then(format_unix)
        .unwrap_or_else(|| "never".to_string());
    let active = portal
        .active
        .as_ref()
        .map_or_else(|| "\u{2014}".to_string(), |a| a.sessions.to_string());
    let monthly = portal
        .monthly_active_users
        .map_or_else(|| "\u{2014}".to_string(), |n| n.to_string());
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
        "<tr><td>{portal}</td><td>{labels}</td><td class=\"{class}\">{text}</td>\
         <td>{last_poll}</td><td class=\"num\">{active}</td><td class=\"num\">{capacity}</td>\
         <td class=\"num\">{monthly}</td><td class=\"error\">{error}</td></tr>",
        portal = portal_cell(portal),
        capacity = capacity_cell(portal),
    );
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
    fn page_lists_portals_with_escaped_text() {
        let store = Store::new();
        store.publish(PortalSnapshot {
            portal_id: "p-up".into(),
            labels: vec![("team".into(), "a<b".into())],
            up: true,
            polled: true,
            active: Some(ActiveSummary {
                sessions: 7,
                users: 3,
                max_age_seconds: 1.0,
                peak: 9,
            }),
            last_poll_unix: Some(0.0),
            monthly_active_users: Some(42),
            meta: Some(crate::snapshot::PortalMeta {
                display_name: "Sales <EU>".into(),
                max_concurrent_sessions: Some(10),
                ..Default::default()
            }),
            ..Default::default()
        });
        store.publish(PortalSnapshot {
            portal_id: "p-down".into(),
            polled: true,
            last_error_code: Some("<img src=x>".into()),
            last_error_message: Some("User: <b>x</b> is not authorized".into()),
            ..Default::default()
        });
        store.publish(PortalSnapshot {
            portal_id: "p-new".into(),
            ..Default::default()
        });
        let html = render(&store, "/metrics");
        assert!(html.contains(crate::VERSION));
        assert!(html.contains("<a href=\"/metrics\">"));
        assert!(html.contains("team=&quot;a&lt;b&quot;"));
        assert!(html.contains(
            "<td class=\"error\">&lt;img src=x&gt;: User: &lt;b&gt;x&lt;/b&gt; is not authorized</td>"
        ));
        assert!(!html.contains("<img") && !html.contains("<b>"));
        assert!(html.contains("1970-01-01T00:00:00Z"));
        assert!(html.contains(">7</td>"));
        assert!(html.contains("pending first poll</td>"));
        assert!(html.contains("3 portals: 1 up, 1 down, 1 pending"));
        // Display name (escaped) over the id; capacity use and monthly users.
        assert!(html.contains("Sales &lt;EU&gt;<br><span class=\"id\">p-up</span>"));
        assert!(html.contains(">7 / 10 (70%)</td>"));
        assert!(html.contains(">42</td>"));
        // Without metadata: the id alone, and no capacity figure.
        assert!(html.contains("<td><span class=\"id\">p-down</span></td>"));
        assert_eq!(html.matches("<td class=\"num\">\u{2014}</td>").count(), 6);
    }

    #[test]
    fn docs_links_follow_the_repository() {
        assert_eq!(docs_links(""), "");
        let links = docs_links("https://example.com/a\"b/");
        assert!(links.contains("href=\"https://example.com/a&quot;b#readme\""));
        assert!(links.contains("href=\"https://example.com/a&quot;b/blob/main/docs/runbook.md\""));
    }
}
