//! Wires flags, config, AWS clients, the scheduler and the HTTP server together, and runs until a signal.

use std::process::ExitCode;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::aws::{ClientKey, Clients};
use crate::cli::Cli;
use crate::config::{self, Config, UsernameMode};
use crate::demo::Demo;
use crate::http::{self, HttpSettings, WebConfigHandle, WebOptions, WebState};
use crate::poll::{PortalPlan, Scheduler};
use crate::session::now_ms;
use crate::snapshot::{ReloadStatus, Store};
use crate::users::{LabelMode, UserSettings};

/// Exit code for bad flags or configuration.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code when a listen address cannot be bound.
pub const EXIT_BIND: u8 = 2;

/// One poll plan per static portal of `config`.
pub fn plans(config: &Config) -> Vec<PortalPlan> {
    config
        .targets()
        .into_iter()
        .map(|t| PortalPlan {
            portal_id: t.id,
            labels: t.labels,
            client: ClientKey {
                region: t.region,
                role_arn: t.role_arn,
                external_id: t.external_id,
                endpoint_url: t.endpoint_url,
            },
            interval: t.interval,
            timeout: t.timeout,
            page_size: config.global.page_size,
            max_pages: config.global.max_pages,
            duration_buckets: config.global.duration_buckets.clone(),
            per_user: user_settings(config),
        })
        .collect()
}

/// Per-user settings of `config`, when enabled.
pub fn user_settings(config: &Config) -> Option<UserSettings> {
    let p = &config.per_user;
    p.enabled.then(|| UserSettings {
        mode: match p.username {
            UsernameMode::Raw => LabelMode::Raw,
            UsernameMode::Hashed => LabelMode::Hashed {
                salt: p.hash_salt.clone(),
            },
        },
        max_users: p.max_users,
        idle_ttl_ms: i64::try_from(p.idle_ttl.as_millis()).unwrap_or(i64::MAX),
    })
}

/// Features of the config schema this version parses but does not run yet.
fn unsupported(config: &Config) -> Option<String> {
    if !config.discovery.is_empty() {
        return Some("discovery: portal discovery is not supported by this version yet; list portals under portals:".into());
    }
    if config.sharding.total > 1 {
        return Some(
            "sharding.total: sharding is not supported by this version yet; use total: 1".into(),
        );
    }
    None
}

/// The `--web.config.file` web config (plain HTTP without the flag); the error names the file
/// and the key.
pub fn web_state(cli: &Cli) -> Result<WebState, http::WebConfigError> {
    match &cli.web_config_file {
        Some(path) => http::load_web_config(path),
        None => Ok(WebState::default()),
    }
}

/// `--config.check`: prints the summary (exit 0) or the errors (exit 1).
pub fn check(cli: &Cli) -> ExitCode {
    if let Err(e) = web_state(cli) {
        eprintln!("{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match config::load(&cli.config_file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(msg) = unsupported(&loaded.config) {
                eprintln!("{}: {msg}", cli.config_file.display());
                return ExitCode::from(EXIT_CONFIG);
            }
            println!("{}", loaded.config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Runs the exporter until SIGTERM/SIGINT.
pub async fn run(cli: Cli) -> ExitCode {
    let settings = HttpSettings {
        listen_addresses: cli.listen_addresses.clone(),
        telemetry_path: cli.telemetry_path.clone(),
        max_connections: cli.max_connections as usize,
        ..HttpSettings::default()
    };
    if let Err(e) = settings.validate() {
        error!(error = %e, "invalid flag");
        eprintln!("{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // Web config (TLS, basic auth, headers): read once here; a reload replaces it in the handle.
    let web = match web_state(&cli) {
        Ok(state) => WebConfigHandle::new(state),
        Err(e) => {
            error!(error = %e, "invalid web configuration");
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Keeps the demo simulator alive as long as the exporter runs.
    let mut _demo_guard = None;
    let (plans, clients, concurrency) = if cli.demo {
        let demo = match Demo::start(1).await {
            Ok(d) => d,
            Err(e) => {
                error!(error = %e, "could not start the demo simulator");
                return ExitCode::from(EXIT_BIND);
            }
        };
        info!(endpoint = %demo.endpoint_url(), portals = demo.plans.len(), "demo simulator started");
        let clients = Clients::with_static_credentials("us-east-1", &demo.endpoint_url()).await;
        let plans = demo.plans.clone();
        _demo_guard = Some(demo);
        (plans, clients, 4)
    } else {
        let loaded = match config::load(&cli.config_file) {
            Ok(l) => l,
            Err(e) => {
                error!(error = %e, "invalid configuration");
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        for w in &loaded.warnings {
            warn!(file = %cli.config_file.display(), warning = %w, "configuration warning");
        }
        if let Some(msg) = unsupported(&loaded.config) {
            error!(file = %cli.config_file.display(), error = %msg, "unsupported configuration");
            eprintln!("{}: {msg}", cli.config_file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
        let clients = Clients::from_environment().await;
        (
            plans(&loaded.config),
            clients,
            loaded.config.global.concurrency,
        )
    };

    let listeners = match http::bind(&settings).await {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "could not bind");
            eprintln!("{e}");
            return ExitCode::from(EXIT_BIND);
        }
    };

    let store = Arc::new(Store::new());
    store.set_reload(ReloadStatus {
        successful: true,
        success_unix: now_ms() as f64 / 1000.0,
    });
    info!(version = crate::VERSION, portals = plans.len(), "starting");
    let scheduler = Scheduler::start(plans, &clients, store.clone(), concurrency).await;
    // No reload hook yet: `POST /-/reload` answers 405 until config reload is wired here.
    let options = WebOptions { web, reload: None };
    http::serve_with(listeners, store, settings, options, shutdown_signal()).await;
    scheduler.shutdown().await;
    info!("stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!(signal = "SIGINT", "shutting down"),
        _ = term => info!(signal = "SIGTERM", "shutting down"),
    }
}
