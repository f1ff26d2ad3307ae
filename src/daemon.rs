//! Wires flags, config, AWS clients, the control loop and the HTTP server together, and runs
//! until SIGTERM/SIGINT. SIGHUP reloads the configuration.

use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::aws::{BaseRegion, Clients};
use crate::cli::Cli;
use crate::clock::now_ms;
use crate::config;
use crate::config::ShardConfig;
use crate::demo::Demo;
use crate::exposition::{self, Exposition};
use crate::http::{
    self, HttpSettings, ReloadFuture, ReloadHook, WebConfigHandle, WebOptions, WebState,
};
use crate::reconcile::Reconciler;
use crate::reload::Reloader;
use crate::snapshot::Store;
use crate::status::{ReloadStatus, Setup};
use crate::storage::{StateDir, StorageError};

/// Exit code for bad flags or configuration.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code when a listen address cannot be bound.
pub const EXIT_BIND: u8 = 2;

/// Longest wait for the control loop to stop its portals and discovery after SIGTERM. With the
/// HTTP server's grace period (10 s) and [`BLOCKING_SHUTDOWN_GRACE`], the whole shutdown stays
/// well below Kubernetes' 30 s before SIGKILL.
pub const CONTROL_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Longest wait, at exit, for blocking work still running (a state write on a hung disk).
pub const BLOCKING_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A flag is invalid (listen address, telemetry path).
    #[error("{0}")]
    Flags(http::HttpError),
    /// The web config file is invalid.
    #[error("{0}")]
    WebConfig(#[from] http::WebConfigError),
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// The storage directory cannot be used.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The demo simulator could not start.
    #[error("could not start the demo simulator: {0}")]
    Demo(std::io::Error),
    /// A listen address cannot be bound.
    #[error("{0}")]
    Bind(http::HttpError),
    /// Reading the config file was cancelled (the runtime is shutting down).
    #[error("reading the configuration was interrupted")]
    Interrupted,
}

impl StartupError {
    /// The process exit code: 2 when something could not be bound, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Bind(_) | StartupError::Demo(_) => EXIT_BIND,
            _ => EXIT_CONFIG,
        }
    }
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
    let checked = web_state(cli).map_err(StartupError::from).and_then(|web| {
        for w in web.warnings() {
            eprintln!("warning: web config: {w}");
        }
        config::load_for_shard(&cli.config_file).map_err(StartupError::from)
    });
    match checked {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}", loaded.config.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The SDK's base region for `config` (SPEC section 11): `global.region`; else, when every
/// static portal names its region (by `region` or its ARN), the first region the config names
/// (discovery entries always name theirs); else the SDK's region chain, which a portal without a
/// region needs.
pub fn base_region(config: &config::Config) -> BaseRegion {
    if let Some(region) = &config.global.region {
        return BaseRegion::Global(region.clone());
    }
    let mut portal_regions = config.portals.iter().map(|p| p.region.as_ref());
    if portal_regions.clone().any(|r| r.is_none()) {
        return BaseRegion::Chain;
    }
    portal_regions
        .find_map(|r| r.cloned())
        .or_else(|| {
            config
                .discovery
                .iter()
                .flat_map(|d| d.regions.first())
                .next()
                .cloned()
        })
        .map_or(BaseRegion::Chain, BaseRegion::Configured)
}

/// Everything `run` sets up before it serves.
struct Started {
    settings: HttpSettings,
    web: WebConfigHandle,
    listeners: Vec<tokio::net::TcpListener>,
    /// The configuration to start with: the file's, or the demo's.
    config: ShardConfig,
    clients: Clients,
    storage: Option<Arc<StateDir>>,
    /// Keeps the demo simulator alive as long as the exporter runs.
    _demo: Option<Demo>,
}

/// Validates the flags and the web config, loads the config (or starts the demo), opens the
/// storage directory, and binds: every failure here ends the process with its exit code.
async fn start(cli: &Cli) -> Result<Started, StartupError> {
    let settings = HttpSettings {
        listen_addresses: cli.listen_addresses.clone(),
        telemetry_path: cli.telemetry_path.clone(),
        max_connections: cli.max_connections as usize,
        openmetrics: cli.enable_openmetrics,
        ..HttpSettings::default()
    };
    settings.validate().map_err(StartupError::Flags)?;
    // Web config (TLS, basic auth, headers): read once here; a reload replaces it in the handle.
    let web = web_state(cli)?;
    for w in web.warnings() {
        warn!(warning = %w, "web configuration warning");
    }
    let web = WebConfigHandle::new(web);
    let (config, clients, demo) = if cli.demo {
        let demo = Demo::start(1).await.map_err(StartupError::Demo)?;
        info!(endpoint = %demo.endpoint_url(), discovery = "organization", "demo simulator started");
        let clients = Clients::with_static_credentials("us-east-1", &demo.endpoint_url()).await;
        let config = ShardConfig {
            config: demo.config.clone(),
            shard_index: 0,
            warnings: Vec::new(),
        };
        (config, clients, Some(demo))
    } else {
        let path = cli.config_file.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load_for_shard(&path))
            .await
            .map_err(|_| StartupError::Interrupted)??;
        for w in &loaded.warnings {
            warn!(file = %cli.config_file.display(), warning = %w, "configuration warning");
        }
        let clients = Clients::from_environment(base_region(&loaded.config)).await;
        (loaded, clients, None)
    };
    // Durable state: a directory that cannot be created, locked or written is a misconfiguration
    // that fails fast (exit 1), before anything is bound or polled.
    let storage = match &cli.storage_path {
        Some(path) => {
            let dir = StateDir::open(path)?;
            info!(path = %path.display(), "durable state enabled");
            Some(Arc::new(dir))
        }
        None => None,
    };
    let listeners = http::bind(&settings).await.map_err(StartupError::Bind)?;
    Ok(Started {
        settings,
        web,
        listeners,
        config,
        clients,
        storage,
        _demo: demo,
    })
}

/// The process's store: the initial config loaded now, and how the process runs.
fn store_of(cli: &Cli) -> Arc<Store> {
    let store = Arc::new(Store::new());
    store.status().set_reload(ReloadStatus {
        successful: true,
        success_unix: now_ms() as f64 / 1000.0,
    });
    store.status().set_setup(Setup {
        config_file: (!cli.demo).then(|| cli.config_file.display().to_string()),
        dashboard_url: cli.dashboard_url.clone(),
        shard: None,
    });
    store
}

/// Runs the exporter until SIGTERM/SIGINT.
pub async fn run(cli: Cli) -> ExitCode {
    // Installed first: a SIGTERM during startup must not kill the process (exit 0, SPEC section 3).
    let shutdown = shutdown_signal();
    let started = match start(&cli).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot start");
            eprintln!("{e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let store = store_of(&cli);
    let shard_index = started.config.shard_index;
    info!(version = crate::VERSION, shard_index, "starting");
    // Commands wait in the channel until the control loop runs, so the server (and its reload
    // hook) can answer while the control loop sets up its portals: `/-/healthy` does not wait
    // for a thousand portals, and `/-/ready` says 503 until they are declared and polled.
    let (commands, commands_rx) = mpsc::channel(8);
    let (stop, stop_rx) = watch::channel(false);
    let config_path = (!cli.demo).then(|| cli.config_file.clone());
    let reloader = Arc::new(
        Reloader::new(
            commands,
            started.web.clone(),
            cli.web_config_file.clone(),
            config_path,
            store.clone(),
        )
        .with_config_in_force(Some(&started.config)),
    );
    let hup = tokio::spawn(reload_on_sighup(reloader.clone()));
    let options = WebOptions {
        web: started.web,
        // Without --web.enable-lifecycle, POST /-/reload answers 403; SIGHUP still reloads.
        reload: cli.enable_lifecycle.then(|| reload_hook(reloader)),
    };
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = serve(
        started.listeners,
        started.settings,
        options,
        &store,
        async move {
            tokio::select! {
                () = shutdown => {}
                _ = failed_rx => {}
            }
        },
    );
    tokio::pin!(serving);
    // A task of its own, so that setting up many portals never delays the accept loops.
    let starting = tokio::spawn(Reconciler::start(
        started.config.config,
        shard_index,
        started.clients,
        store.clone(),
        started.storage,
    ));
    let control = match control_loop(starting, &mut serving, commands_rx, stop_rx).await {
        Ok(control) => control,
        Err(code) => {
            hup.abort();
            return code;
        }
    };
    let code = until_stopped(
        serving,
        control,
        &store,
        failed_tx,
        stop,
        CONTROL_SHUTDOWN_GRACE,
    )
    .await;
    hup.abort();
    info!("stopped");
    code
}

/// The HTTP server over `store`'s exposition until `shutdown` (a signal, or the control loop
/// dying: see [`until_stopped`]). The exposition's cache is rendered in the background after each
/// change so that scrapes find it ready; that task ends with the exposition.
fn serve(
    listeners: Vec<tokio::net::TcpListener>,
    settings: HttpSettings,
    options: WebOptions,
    store: &Arc<Store>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> {
    let exposition = Arc::new(Exposition::new(store.clone()));
    exposition::spawn_renderer(&exposition);
    http::serve_with(listeners, exposition, settings, options, shutdown)
}

/// Runs the control loop once `starting` has set it up, unless the server stops first (or the set
/// up fails): then the exit code.
async fn control_loop(
    mut starting: tokio::task::JoinHandle<Reconciler>,
    serving: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    commands: mpsc::Receiver<crate::reconcile::Command>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ExitCode> {
    tokio::select! {
        started = &mut starting => match started {
            Ok(reconciler) => Ok(tokio::spawn(reconciler.run(commands, stop))),
            Err(error) => {
                error!(%error, "the control loop failed to start");
                Err(ExitCode::FAILURE)
            }
        },
        () = serving.as_mut() => {
            // Shut down before the control loop started: nothing is polling yet.
            starting.abort();
            info!("stopped");
            Err(ExitCode::SUCCESS)
        }
    }
}

/// `POST /-/reload`: a reload by `reloader`, its error as the client may see it.
fn reload_hook(reloader: Arc<Reloader>) -> ReloadHook {
    Arc::new(move || -> ReloadFuture {
        let reloader = reloader.clone();
        Box::pin(async move {
            reloader
                .reload()
                .await
                .map_err(|e| reloader.public_message(&e))
        })
    })
}

/// Serves until `serving` ends (SIGTERM/SIGINT), then stops the control loop and waits for it,
/// for at most `grace` (what it has not finished by then is abandoned with the process).
///
/// The control loop only ends on its own when it panicked: then `/-/healthy` fails at once, the
/// server is told to stop (`fail`) and the exit code is 1, so that an orchestrator restarts a
/// process that would otherwise serve frozen series with a healthy status.
async fn until_stopped(
    serving: impl std::future::Future<Output = ()>,
    mut control: tokio::task::JoinHandle<()>,
    store: &Store,
    fail: tokio::sync::oneshot::Sender<()>,
    stop: watch::Sender<bool>,
    grace: std::time::Duration,
) -> ExitCode {
    tokio::pin!(serving);
    tokio::select! {
        () = &mut serving => {
            let _ = stop.send(true);
            if tokio::time::timeout(grace, &mut control).await.is_err() {
                control.abort();
                warn!(grace = ?grace, "the control loop did not stop in time; exiting anyway");
            }
            ExitCode::SUCCESS
        }
        ended = &mut control => {
            store.status().set_failed();
            match ended {
                Err(e) if e.is_panic() => {
                    error!(panic = %panic_message(e.into_panic()), "the control loop panicked; exiting")
                }
                _ => error!("the control loop ended unexpectedly; exiting"),
            }
            let _ = fail.send(());
            serving.await;
            ExitCode::FAILURE
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast::<String>()
        .map(|s| *s)
        .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|_| "non-string panic".to_string())
}

/// Turns every SIGHUP into a reload.
async fn reload_on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            warn!("cannot listen for SIGHUP; reload with POST /-/reload (--web.enable-lifecycle)");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A panic in the control loop fails `/-/healthy`, stops the server and exits non-zero;
    /// before, the process went on serving with `/-/healthy` at 200 until a SIGTERM, then exited 0.
    #[tokio::test]
    async fn a_panicking_control_loop_fails_health_and_the_exit_code() {
        let store = Store::new();
        let (fail, failed) = tokio::sync::oneshot::channel::<()>();
        // The server: runs until told to stop (a real one also stops on SIGTERM, never sent here).
        let (stop, _stop_rx) = watch::channel(false);
        let serving = async move {
            let _ = failed.await;
        };
        let control = tokio::spawn(async { panic!("control loop bug") });
        let code = tokio::time::timeout(
            Duration::from_secs(30),
            until_stopped(
                serving,
                control,
                &store,
                fail,
                stop,
                Duration::from_secs(3600),
            ),
        )
        .await
        .expect("hang guard: the server was not stopped");
        assert_eq!(code, ExitCode::FAILURE);
        assert!(
            !store.status().healthy(),
            "/-/healthy answers from this (see http::routes tests)"
        );
    }

    /// A signal stops the control loop and exits 0.
    /// `until_stopped` with a signal that has already come, a control loop made by `control`
    /// from the stop receiver, and `grace` for it to stop (30 s hang guard).
    async fn stop_now<F>(
        control: impl FnOnce(watch::Receiver<bool>) -> F,
        grace: Duration,
    ) -> (ExitCode, Store)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let store = Store::new();
        let (fail, _failed) = tokio::sync::oneshot::channel::<()>();
        let (stop, stop_rx) = watch::channel(false);
        let control = tokio::spawn(control(stop_rx));
        let code = tokio::time::timeout(
            Duration::from_secs(30),
            until_stopped(async {}, control, &store, fail, stop, grace),
        )
        .await
        .expect("hang guard: shutdown waited for the control loop past its grace");
        (code, store)
    }

    #[tokio::test]
    async fn a_signal_stops_the_control_loop_and_exits_zero() {
        let control = |mut stop_rx: watch::Receiver<bool>| async move {
            let _ = stop_rx.changed().await;
        };
        let (code, store) = stop_now(control, Duration::from_secs(3600)).await;
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(store.status().healthy());
    }

    /// A control loop that does not stop (a task stuck past its stop signal) cannot hold the
    /// exit: the wait for it is bounded.
    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_stuck_control_loop_beyond_its_grace() {
        // The stuck loop holds its receiver, so the stop channel stays open.
        let control = |stop_rx: watch::Receiver<bool>| async move {
            let _held = stop_rx;
            std::future::pending::<()>().await;
        };
        let (code, _) = stop_now(control, Duration::from_millis(50)).await;
        assert_eq!(code, ExitCode::SUCCESS);
    }
}
