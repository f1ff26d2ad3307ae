//! Logging setup: `tracing` to stderr as logfmt or JSON, one line per event.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::cli::{LogFormat, LogLevel};

fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// Installs the global subscriber. Dependencies (SDK, hyper) log at warn unless `--log.level=debug`.
pub fn init(level: LogLevel, format: LogFormat) {
    let lvl = directive(level);
    let deps = if level == LogLevel::Debug {
        "info"
    } else {
        "warn"
    };
    let filter = EnvFilter::new(format!(
        "{deps},workspacesweb_exporter={lvl},workspacesweb_exporter::sim={lvl}"
    ));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}
