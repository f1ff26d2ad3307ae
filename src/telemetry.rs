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

/// Installs the global subscriber with [`filter_directives`].
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::new(filter_directives(level));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
