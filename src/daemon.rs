//! Wires flags, config, AWS clients, the control loop and the HTTP server together, and runs
//! until SIGTERM/SIGINT. SIGHUP reloads the configuration.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::aws::Clients;
use crate::cli::Cli;
use crate::config;
use crate::demo::Demo;
use crate::http::{self, HttpSettings};
use crate::reconcile::{Command, Reconciler, Source};
use crate::session::now_ms;
use crate::snapshot::{ReloadStatus, Store};

/// Exit code for bad flags or configuration.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code when a listen address cannot be bound.
pub const EXIT_BIND: u8 = 2;

/// `--config.check`: prints the summary (exit 0) or the errors (exit 1).
pub fn check(cli: &Cli) -> ExitCode {
    match config::load(&cli.config_file) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            if let Err(e) = loaded
                .config
                .sharding
                .resolve_shard_index(|v| std::env::var(v).ok())
            {
                eprintln!("{e}");
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
    // Keeps the demo simulator alive as long as the exporter runs.
    let mut _demo_guard = None;
    let (source, config, shard_index, clients) = if cli.demo {
        let demo = match Demo::start(1).await {
            Ok(d) => d,
            Err(e) => {
                error!(error = %e, "could not start the demo simulator");
                return ExitCode::from(EXIT_BIND);
            }
        };
        info!(endpoint = %demo.endpoint_url(), portals = demo.plans.len(), "demo simulator started");
        let clients = Clients::with_static_credentials("us-east-1", &demo.endpoint_url()).await;
        let source = Source::Fixed(demo.plans.clone());
        _demo_guard = Some(demo);
        (source, None, 0, clients)
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
        let index = match loaded
            .config
            .sharding
            .resolve_shard_index(|v| std::env::var(v).ok())
        {
            Ok(i) => i,
            Err(e) => {
                error!(error = %e, "invalid sharding");
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let clients = Clients::from_environment().await;
        (
            Source::File(cli.config_file.clone()),
            Some(loaded.config),
            index,
            clients,
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
    info!(version = crate::VERSION, shard_index, "starting");
    let reconciler = Reconciler::start(source, config, shard_index, clients, store.clone()).await;
    let (commands, commands_rx) = mpsc::channel(8);
    let (stop, stop_rx) = watch::channel(false);
    let control = tokio::spawn(reconciler.run(commands_rx, stop_rx));
    let hup = tokio::spawn(reload_on_sighup(commands.clone()));

    http::serve(listeners, store, settings, shutdown_signal()).await;
    hup.abort();
    let _ = stop.send(true);
    let _ = control.await;
    info!("stopped");
    ExitCode::SUCCESS
}

/// Asks the control loop to reload and waits for the outcome.
pub async fn request_reload(commands: &mpsc::Sender<Command>) -> Result<(), String> {
    let (reply, outcome) = oneshot::channel();
    commands
        .send(Command::Reload(reply))
        .await
        .map_err(|_| "the exporter is shutting down".to_string())?;
    outcome
        .await
        .unwrap_or_else(|_| Err("the exporter is shutting down".to_string()))
}

/// Turns every SIGHUP into a reload.
async fn reload_on_sighup(commands: mpsc::Sender<Command>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            info!(signal = "SIGHUP", "reloading configuration");
            let _ = request_reload(&commands).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = commands;
    }
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
