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
use crate::http::{
    self, HttpSettings, ReloadFuture, ReloadHook, WebConfigHandle, WebOptions, WebState,
};
use crate::reconcile::{Command, Reconciler, Source};
use crate::session::now_ms;
use crate::snapshot::{ReloadStatus, Store};
use crate::storage::StateDir;

/// Exit code for bad flags or configuration.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code when a listen address cannot be bound.
pub const EXIT_BIND: u8 = 2;

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
    // Installed first: a SIGTERM during startup must not kill the process (exit 0, SPEC section 3).
    let shutdown = shutdown_signal();
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
        clients.set_rate(Some(crate::demo::DEMO_MAX_REQUESTS_PER_SECOND));
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

    // Durable state: a directory that cannot be created, locked or written is a misconfiguration
    // that fails fast (exit 1), before anything is bound or polled.
    let storage = match &cli.storage_path {
        Some(path) => match StateDir::open(path) {
            Ok(dir) => {
                info!(path = %path.display(), "durable state enabled");
                Some(Arc::new(dir))
            }
            Err(e) => {
                error!(error = %e, "cannot use the storage path");
                eprintln!("{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
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
    // Commands wait in the channel until the control loop runs, so the server (and its reload
    // hook) can answer while the control loop sets up its portals: `/-/healthy` does not wait
    // for a thousand portals, and `/-/ready` says 503 until they are declared and polled.
    let (commands, commands_rx) = mpsc::channel(8);
    let (stop, stop_rx) = watch::channel(false);
    let reloader = Arc::new(Reloader {
        commands,
        web: web.clone(),
        web_path: cli.web_config_file.clone(),
        store: store.clone(),
        serial: tokio::sync::Mutex::new(()),
    });
    let hup = tokio::spawn(reload_on_sighup(reloader.clone()));
    let hook: ReloadHook = {
        let reloader = reloader.clone();
        Arc::new(move || -> ReloadFuture {
            let reloader = reloader.clone();
            Box::pin(async move { reloader.reload().await })
        })
    };
    let options = WebOptions {
        web,
        reload: Some(hook),
    };
    let serving = http::serve_with(listeners, store.clone(), settings, options, shutdown);
    tokio::pin!(serving);
    // A task of its own, so that setting up many portals never delays the accept loops.
    let mut starting = tokio::spawn(Reconciler::start(
        source,
        config,
        shard_index,
        clients,
        store,
        storage,
    ));
    let control = tokio::select! {
        started = &mut starting => match started {
            Ok(reconciler) => tokio::spawn(reconciler.run(commands_rx, stop_rx)),
            Err(error) => {
                error!(%error, "the control loop failed to start");
                hup.abort();
                return ExitCode::FAILURE;
            }
        },
        () = &mut serving => {
            // Shut down before the control loop started: nothing is polling yet.
            starting.abort();
            hup.abort();
            info!("stopped");
            return ExitCode::SUCCESS;
        }
    };
    serving.await;
    hup.abort();
    let _ = stop.send(true);
    let _ = control.await;
    info!("stopped");
    ExitCode::SUCCESS
}

/// Reloads the configuration and the web configuration together (SIGHUP, `POST /-/reload`).
struct Reloader {
    commands: mpsc::Sender<Command>,
    web: WebConfigHandle,
    web_path: Option<std::path::PathBuf>,
    store: Arc<Store>,
    /// One reload at a time: a SIGHUP and a POST may overlap.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Validates the web config first, then reloads the config; the new web config takes effect
    /// only when both are valid, so an invalid file of either kind changes nothing.
    async fn reload(&self) -> Result<(), String> {
        let _one = self.serial.lock().await;
        let web = match &self.web_path {
            Some(path) => {
                let path = path.clone();
                let loaded = tokio::task::spawn_blocking(move || http::load_web_config(&path))
                    .await
                    .map_err(|e| format!("web config reload failed: {e}"))?;
                match loaded {
                    Ok(state) => Some(state),
                    Err(e) => {
                        error!(error = %e, "reload failed; the previous configuration keeps running");
                        let previous = self.store.reload();
                        self.store.set_reload(ReloadStatus {
                            successful: false,
                            ..previous
                        });
                        return Err(e.to_string());
                    }
                }
            }
            None => None,
        };
        request_reload(&self.commands).await?;
        if let Some(state) = web {
            self.web.replace(state);
        }
        Ok(())
    }
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
async fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            info!(signal = "SIGHUP", "reloading configuration");
            let _ = reloader.reload().await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
    }
}

/// Resolves on SIGTERM or SIGINT.
///
/// The handlers are installed when this is called, not when the future is first polled: `run`
/// calls it before its startup (config, AWS region chain, demo, bind), so that a signal arriving
/// then is kept and ends the exporter cleanly as soon as it serves, instead of killing it.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match int {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::select! {
            _ = int => info!(signal = "SIGINT", "shutting down"),
            _ = term => info!(signal = "SIGTERM", "shutting down"),
        }
    }
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
        info!(signal = "SIGINT", "shutting down");
    }
}
