//! Command-line flags (Prometheus exporter conventions, SPEC section 3).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-poll summaries.
    Debug,
    /// Normal operation.
    Info,
    /// Problems that do not stop the exporter.
    Warn,
    /// Failures only.
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// The exporter's command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "workspacesweb-exporter",
    about = "Prometheus exporter for AWS WorkSpaces Secure Browser (WorkSpaces Web) sessions",
    disable_version_flag = true
)]
pub struct Cli {
    /// YAML configuration file.
    #[arg(
        long = "config.file",
        value_name = "PATH",
        default_value = "workspacesweb-exporter.yaml"
    )]
    pub config_file: PathBuf,
    /// Validate the configuration file, print a summary or the errors, and exit 0 or 1.
    #[arg(long = "config.check")]
    pub config_check: bool,
    /// Address to listen on for HTTP (repeatable); `:PORT` means all interfaces.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":10049"
    )]
    pub listen_addresses: Vec<String>,
    /// Path under which metrics are exposed.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,
    /// Web configuration file (TLS, basic auth, extra headers), exporter-toolkit format.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Link to a dashboard (e.g. Grafana) shown on the landing page: an http(s) URL.
    #[arg(long = "web.dashboard-url", value_name = "URL", value_parser = dashboard_url)]
    pub dashboard_url: Option<String>,
    /// Enable reload over HTTP (`POST /-/reload`); without it that answers 403. SIGHUP always
    /// reloads.
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,
    /// Maximum number of concurrent HTTP connections.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Answer `/metrics` in OpenMetrics 1.0 (with `_created` samples) to scrapers that prefer it;
    /// off, they get text 0.0.4 as before (Prometheus asks for OpenMetrics first by default).
    #[arg(long = "web.enable-openmetrics")]
    pub enable_openmetrics: bool,
    /// Only log messages at or above this level.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    pub log_format: LogFormat,
    /// Directory for durable state (counters continue across restarts); off when absent.
    #[arg(long = "storage.path", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,
    /// Run against an in-process simulator with built-in demo portals (no AWS account or config needed).
    #[arg(long = "demo")]
    pub demo: bool,
    /// Print the version and exit.
    #[arg(long = "version")]
    pub version: bool,
}

/// Checks `--web.dashboard-url`: an absolute `http` or `https` URL with a host (the landing page
/// links it, so `javascript:` and relative links are refused).
fn dashboard_url(value: &str) -> Result<String, String> {
    let uri: hyper::Uri = value.parse().map_err(|e| {
        format!("not a URL ({e}): expected e.g. https://grafana.example.com/d/workspacesweb")
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(value.to_string()),
        _ => Err("expected an absolute http:// or https:// URL with a host".to_string()),
    }
}

/// The `--version` text.
pub fn version_text() -> String {
    format!(
        "workspacesweb-exporter, version {} (revision: {})\n  rustc: {}\n",
        crate::VERSION,
        crate::build_info::REVISION,
        crate::build_info::RUSTC_VERSION
    )
}

/// What `main` should do after parsing the command line.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these flags.
    Run(Box<Cli>),
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// Print this error to stderr and exit 1.
    Fail(String),
}

/// Parses `args`; every flag error exits 1, as for a bad config (SPEC section 8).
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) if cli.version => Parsed::Print(version_text()),
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Parsed::Print(e.to_string())
            }
            _ => Parsed::Fail(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Cli {
        match parse(std::iter::once("x").chain(args.iter().copied())) {
            Parsed::Run(c) => *c,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = run(&[]);
        assert_eq!(c.config_file, PathBuf::from("workspacesweb-exporter.yaml"));
        assert_eq!(c.listen_addresses, vec![":10049".to_string()]);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.max_connections, 512);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.log_format, LogFormat::Logfmt);
        assert!(!c.demo && !c.config_check && !c.enable_lifecycle);
        assert_eq!(c.web_config_file, None);
    }

    #[test]
    fn web_config_file_is_a_path() {
        let c = run(&["--web.config.file", "web.yml"]);
        assert_eq!(c.web_config_file, Some(PathBuf::from("web.yml")));
    }

    #[test]
    fn dashboard_url_is_an_http_link() {
        assert_eq!(run(&[]).dashboard_url, None);
        let url = "https://grafana.example.com/d/abc?var-portal=All&orgId=1";
        assert_eq!(
            run(&["--web.dashboard-url", url]).dashboard_url.as_deref(),
            Some(url)
        );
        for bad in [
            "javascript:alert(1)",
            "/d/abc",
            "grafana.example.com",
            "ftp://example.com/",
            "https://",
            "https://exa mple.com/",
            "https://example.com/\"><script>",
        ] {
            match parse(["x", "--web.dashboard-url", bad]) {
                Parsed::Fail(e) => assert!(e.contains("--web.dashboard-url"), "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn lifecycle_is_a_switch() {
        assert!(run(&["--web.enable-lifecycle"]).enable_lifecycle);
        assert!(matches!(
            parse(["x", "--web.enable-lifecycle=yes"]),
            Parsed::Fail(_)
        ));
    }

    #[test]
    fn listen_address_repeats() {
        let c = run(&[
            "--web.listen-address",
            "127.0.0.1:1",
            "--web.listen-address=[::1]:2",
        ]);
        assert_eq!(c.listen_addresses, vec!["127.0.0.1:1", "[::1]:2"]);
    }

    #[test]
    fn bad_flags_fail_and_version_prints() {
        assert!(matches!(parse(["x", "--nope"]), Parsed::Fail(_)));
        assert!(matches!(
            parse(["x", "--log.level", "loud"]),
            Parsed::Fail(_)
        ));
        assert!(matches!(
            parse(["x", "--web.max-connections", "0"]),
            Parsed::Fail(_)
        ));
        match parse(["x", "--version"]) {
            Parsed::Print(t) => assert!(t.contains(crate::VERSION)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse(["x", "--help"]), Parsed::Print(_)));
    }
}
