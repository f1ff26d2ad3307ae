//! Logging setup: `tracing` to stderr as logfmt or JSON, one line per event, in the shape
//! Prometheus 3 writes (Go's log/slog through promslog): `time`, `level`, `source`, `msg`, then the
//! event's fields. So the Loki and Elasticsearch queries written for Prometheus and the Go
//! exporters match these lines too.
//!
//! - `time`: UTC, RFC 3339; milliseconds in logfmt (slog's text handler), up to nanoseconds
//!   without trailing zeros in JSON (slog's JSON handler).
//! - `level`: `DEBUG`, `INFO`, `WARN`, `ERROR`, as slog spells them.
//! - `source`: `file:line` of the call, the file's base name as promslog writes it (`mod.rs`
//!   keeps its directory: `poll/mod.rs:88`).
//! - `msg`: the event's message. A field that would reuse one of these four keys is written as
//!   `logged_<key>`, as promslog does, so no line has a key twice.
//! - `component`: the crate, on lines from a dependency (the AWS SDK, hyper, rustls), as
//!   Prometheus names its subsystems.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::cli::{LogFormat, LogLevel};

/// This crate's name as `tracing` targets spell it: its lines carry no `component`.
const OWN_CRATE: &str = "workspacesweb_exporter";

/// The keys every line starts with; an event field of the same name becomes `logged_<name>`.
const RESERVED: [&str; 4] = ["time", "level", "source", "msg"];

fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// The filter of `--log.level`: the exporter at that level; dependencies (SDK, hyper, rustls) at
/// that level too, one step quieter only at `debug` and `info` (their info lines are noise).
pub fn filter_directives(level: LogLevel) -> String {
    let lvl = directive(level);
    let deps = match level {
        LogLevel::Debug => "info",
        LogLevel::Info | LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    format!("{deps},workspacesweb_exporter={lvl}")
}

/// Installs the global subscriber with [`filter_directives`], writing [`LogLine`]s to stderr.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::new(filter_directives(level));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(StderrLines { format })
        .try_init();
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// The layer that writes one line per event to stderr.
struct StderrLines {
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for StderrLines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let line = LogLine::of(event, SystemTime::now()).render(self.format);
        // Nothing sensible to do when stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// One field's value, kept typed for JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string, or anything recorded through `Debug`/`Display`.
    Text(String),
    /// A number or a boolean, written bare in both formats.
    Bare(String),
}

/// One log event, ready to be written in either format.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When the event happened.
    pub time: SystemTime,
    /// `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: &'static str,
    /// `file:line` of the call, empty when unknown.
    pub source: String,
    /// The event's message.
    pub msg: String,
    /// The crate of a dependency's event; `None` for the exporter's own.
    pub component: Option<FieldValue>,
    /// The other fields, in the order they were recorded.
    pub fields: Vec<(String, FieldValue)>,
}

impl LogLine {
    /// The line of `event` at `time`.
    pub fn of(event: &Event<'_>, time: SystemTime) -> Self {
        let meta = event.metadata();
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        // Events bridged from the `log` crate (rustls) carry their origin as fields.
        let file = visitor.log_file.take().or(meta.file().map(str::to_string));
        let line = visitor.log_line.take().or(meta.line().map(u64::from));
        let target = visitor
            .log_target
            .take()
            .unwrap_or_else(|| meta.target().to_string());
        let krate = target.split("::").next().unwrap_or_default().to_string();
        Self {
            time,
            level: slog_level(*meta.level()),
            source: source(file.as_deref(), line),
            msg: visitor.msg,
            component: (krate != OWN_CRATE && !krate.is_empty()).then_some(FieldValue::Text(krate)),
            fields: visitor.fields,
        }
    }

    /// The line in `format`, newline included.
    pub fn render(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Logfmt => self.logfmt(),
            LogFormat::Json => self.json(),
        }
    }

    /// `component` (for a dependency's line), then the event's fields.
    fn extra(&self) -> Vec<(&str, &FieldValue)> {
        let mut out: Vec<(&str, &FieldValue)> = Vec::with_capacity(self.fields.len() + 1);
        if let Some(c) = &self.component {
            out.push(("component", c));
        }
        out.extend(self.fields.iter().map(|(k, v)| (k.as_str(), v)));
        out
    }

    fn logfmt(&self) -> String {
        let time = humantime::format_rfc3339_millis(self.time).to_string();
        let mut out = format!("time={time} level={}", self.level);
        for (key, value) in [("source", &self.source), ("msg", &self.msg)] {
            let _ = write!(out, " {key}={}", logfmt_value(value));
        }
        for (key, value) in self.extra() {
            let text = match value {
                FieldValue::Text(s) => logfmt_value(s),
                FieldValue::Bare(s) => s.clone(),
            };
            let _ = write!(out, " {key}={text}");
        }
        out.push('\n');
        out
    }

    fn json(&self) -> String {
        let mut out = String::from("{");
        let time = rfc3339_nano(self.time);
        for (key, value) in [
            ("time", time.as_str()),
            ("level", self.level),
            ("source", &self.source),
            ("msg", &self.msg),
        ] {
            let _ = write!(out, "{}:{},", json_string(key), json_string(value));
        }
        for (key, value) in self.extra() {
            let text = match value {
                FieldValue::Text(s) => json_string(s),
                FieldValue::Bare(s) => s.clone(),
            };
            let _ = write!(out, "{}:{text},", json_string(key));
        }
        out.pop();
        out.push_str("}\n");
        out
    }
}

/// slog's spelling of a level (TRACE, which `--log.level` never enables, as slog's `DEBUG-4`).
fn slog_level(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "DEBUG-4",
    }
}

/// `file:line` with the file's base name (`mod.rs` with its directory, which names the module).
fn source(file: Option<&str>, line: Option<u64>) -> String {
    let Some(file) = file else {
        return String::new();
    };
    let mut parts = file.rsplit(['/', '\\']);
    let base = parts.next().unwrap_or(file);
    let name = match (base, parts.next()) {
        ("mod.rs" | "lib.rs", Some(dir)) if !dir.is_empty() => format!("{dir}/{base}"),
        _ => base.to_string(),
    };
    match line {
        Some(l) => format!("{name}:{l}"),
        None => name,
    }
}

/// RFC 3339 in UTC with the fraction of Go's `time.RFC3339Nano`: trailing zeros dropped.
fn rfc3339_nano(time: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(time).to_string();
    let Some((head, frac)) = full.strip_suffix('Z').and_then(|s| s.split_once('.')) else {
        return full;
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{frac}Z")
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// A logfmt value as slog's text handler writes it: bare when safe, else quoted with Go's
/// escapes (empty strings, spaces, `=`, `"` and control characters need quotes).
fn logfmt_value(s: &str) -> String {
    let needs_quotes = s.is_empty()
        || s.chars().any(|c| {
            c == ' '
                || c == '='
                || c == '"'
                || c.is_control()
                || (!c.is_ascii() && c.is_whitespace())
        });
    if !needs_quotes {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The fields of one event: its message, the `log` crate's origin, and the rest in order.
#[derive(Default)]
struct Fields {
    msg: String,
    log_file: Option<String>,
    log_line: Option<u64>,
    log_target: Option<String>,
    fields: Vec<(String, FieldValue)>,
}

impl Fields {
    fn push(&mut self, field: &Field, value: FieldValue) {
        let name = field.name();
        match (name, value) {
            ("message", FieldValue::Text(s) | FieldValue::Bare(s)) => self.msg = s,
            ("log.file", FieldValue::Text(s)) => self.log_file = Some(s),
            ("log.line", FieldValue::Bare(s)) => self.log_line = s.parse().ok(),
            ("log.target", FieldValue::Text(s)) => self.log_target = Some(s),
            ("log.module_path", _) => {}
            (_, value) => {
                let key = if RESERVED.contains(&name) || name == "component" {
                    format!("logged_{name}")
                } else {
                    name.to_string()
                };
                self.fields.push((key, value));
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, FieldValue::Text(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Text(value.to_string()));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::Text(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::Bare(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::Bare(value.to_string()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bare(value.to_string()));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = if value.is_finite() {
            FieldValue::Bare(value.to_string())
        } else {
            FieldValue::Text(value.to_string())
        };
        self.push(field, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn every_line_follows_the_level_dependencies_included() {
        assert_eq!(
            filter_directives(LogLevel::Error),
            "error,workspacesweb_exporter=error"
        );
        assert!(filter_directives(LogLevel::Warn).starts_with("warn,"));
        assert!(filter_directives(LogLevel::Info).starts_with("warn,"));
        assert!(filter_directives(LogLevel::Debug).starts_with("info,"));
    }

    /// 2024-11-18T10:15:30.120Z
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_731_924_930_120)
    }

    fn line() -> LogLine {
        LogLine {
            time: at(),
            level: "WARN",
            source: "poller.rs:212".into(),
            msg: "poll failed".into(),
            component: None,
            fields: vec![
                ("portal_id".into(), FieldValue::Text("p-1".into())),
                ("error".into(), FieldValue::Text("say \"no\"\nnow".into())),
                ("attempts".into(), FieldValue::Bare("3".into())),
                ("logged_msg".into(), FieldValue::Text("".into())),
            ],
        }
    }

    #[test]
    fn logfmt_has_prometheus_3_keys_order_and_quoting() {
        assert_eq!(
            line().render(LogFormat::Logfmt),
            "time=2024-11-18T10:15:30.120Z level=WARN source=poller.rs:212 msg=\"poll failed\" \
             portal_id=p-1 error=\"say \\\"no\\\"\\nnow\" attempts=3 logged_msg=\"\"\n"
        );
    }

    #[test]
    fn json_has_prometheus_3_keys_in_order_with_typed_values() {
        let text = line().render(LogFormat::Json);
        assert!(text.ends_with("}\n") && text.lines().count() == 1, "{text}");
        assert!(
            text.starts_with(
                r#"{"time":"2024-11-18T10:15:30.12Z","level":"WARN","source":"poller.rs:212","msg":"poll failed","#
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["attempts"], 3);
        assert_eq!(v["error"], "say \"no\"\nnow");
        assert_eq!(v["logged_msg"], "");
    }

    #[test]
    fn time_keeps_go_precision_rules() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH + Duration::from_nanos(1_500)),
            "1970-01-01T00:00:00.0000015Z"
        );
    }

    #[test]
    fn source_is_the_base_name_and_line_and_mod_rs_keeps_its_directory() {
        assert_eq!(source(Some("src/poll/poller.rs"), Some(7)), "poller.rs:7");
        assert_eq!(source(Some("src/poll/mod.rs"), Some(88)), "poll/mod.rs:88");
        assert_eq!(
            source(
                Some("/root/.cargo/registry/src/x/hyper-1.6.0/src/proto/h1/conn.rs"),
                Some(1)
            ),
            "conn.rs:1"
        );
        assert_eq!(source(Some("main.rs"), None), "main.rs");
        assert_eq!(source(None, Some(3)), "");
    }

    #[test]
    fn logfmt_quotes_what_slog_quotes() {
        assert_eq!(logfmt_value("plain-value_1.2:3/x"), "plain-value_1.2:3/x");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("tab\there"), "\"tab\\there\"");
        assert_eq!(logfmt_value("bell\u{7}"), "\"bell\\x07\"");
        assert_eq!(logfmt_value("back\\slash"), "back\\slash");
        assert_eq!(logfmt_value("Zoë"), "Zoë");
    }

    /// Captures the [`LogLine`] of every event.
    struct Capture(Arc<Mutex<Vec<LogLine>>>);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let line = LogLine::of(event, at());
            self.0.lock().expect("lock").push(line);
        }
    }

    #[test]
    fn events_become_lines_with_their_source_and_no_duplicate_keys() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        let here = line!() + 3;
        tracing::subscriber::with_default(subscriber, || {
            let level = "mine";
            tracing::warn!(portal_id = "p-1", attempts = 3u64, level, "poll failed");
            tracing::info!(target: "aws_config::profile", "no profile");
        });
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        let own = &seen[0];
        assert_eq!(own.level, "WARN");
        assert_eq!(own.msg, "poll failed");
        assert_eq!(own.source, format!("telemetry.rs:{here}"));
        assert_eq!(own.component, None);
        assert_eq!(
            own.fields,
            vec![
                ("portal_id".to_string(), FieldValue::Text("p-1".into())),
                ("attempts".to_string(), FieldValue::Bare("3".into())),
                ("logged_level".to_string(), FieldValue::Text("mine".into())),
            ]
        );
        let dep = &seen[1];
        assert_eq!(dep.level, "INFO");
        assert_eq!(dep.component, Some(FieldValue::Text("aws_config".into())));
        assert!(
            dep.render(LogFormat::Logfmt)
                .contains(" msg=\"no profile\" component=aws_config\n")
        );
    }
}
