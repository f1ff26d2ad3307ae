//! Loading and reloading the configuration, in one place.
//!
//! [`load_for_shard`] is the one function that reads the config file and resolves this replica's
//! shard index (startup, `--config.check` and every reload use it). [`Reloader::reload`] is the
//! one reload (SIGHUP, `POST /-/reload`): it reads and validates the config and the web config off
//! the async runtime, hands a valid config to the control loop, puts the web config in force,
//! and records the outcome in `workspacesweb_config_last_reload_successful` exactly once. An
//! invalid file of either kind changes nothing: the previous configuration keeps running; so
//! does a web config that would remove TLS or basic auth in force (see
//! [`WebConfigHandle::check_reload`]). A reload that changes something logs at info, one that
//! changes nothing at debug (a burst of reload requests logs one line at info at most).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::clock::now_ms;
use crate::config::{Config, ConfigError, ShardConfig, load_for_shard};
use crate::http::{self, WebChange, WebConfigError, WebConfigHandle, WebState};
use crate::reconcile::Command;
use crate::snapshot::Store;
use crate::status::ReloadStatus;

/// Why a (re)load failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid (or its shard index cannot be resolved).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The web config file is invalid.
    #[error("{0}")]
    WebConfig(#[from] WebConfigError),
    /// The exporter is stopping: nothing was applied.
    #[error("the exporter is shutting down")]
    ShuttingDown,
}

/// Runs blocking file reading on the blocking pool.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| ReloadError::ShuttingDown)
}

/// The one owner of reloads.
#[derive(Debug)]
pub struct Reloader {
    commands: mpsc::Sender<Command>,
    web: WebConfigHandle,
    web_path: Option<PathBuf>,
    config_path: Option<PathBuf>,
    store: Arc<Store>,
    /// One reload at a time: a SIGHUP and a POST may overlap. Holds the config in force
    /// (with its shard index), to tell a reload that changes it from one that does not.
    serial: tokio::sync::Mutex<Option<(Config, u32)>>,
}

impl Reloader {
    /// A reloader of `config_path` (none in demo mode) and `web_path`, applying configs through
    /// the control loop's `commands` and web configs to `web`.
    pub fn new(
        commands: mpsc::Sender<Command>,
        web: WebConfigHandle,
        web_path: Option<PathBuf>,
        config_path: Option<PathBuf>,
        store: Arc<Store>,
    ) -> Self {
        Reloader {
            commands,
            web,
            web_path,
            config_path,
            store,
            serial: tokio::sync::Mutex::new(None),
        }
    }

    /// The same reloader, knowing the config in force at startup.
    pub fn with_config_in_force(self, loaded: Option<&ShardConfig>) -> Self {
        Reloader {
            serial: tokio::sync::Mutex::new(loaded.map(|l| (l.config.clone(), l.shard_index))),
            ..self
        }
    }

    /// Re-reads the config and the web config and applies both, or neither.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let mut in_force = self.serial.lock().await;
        let result = self.load_and_apply(&mut in_force).await;
        let previous = self.store.status().reload();
        self.store.status().set_reload(ReloadStatus {
            successful: result.is_ok(),
            success_unix: if result.is_ok() {
                now_ms() as f64 / 1000.0
            } else {
                previous.success_unix
            },
        });
        match &result {
            Ok(true) => info!("configuration reloaded"),
            Ok(false) => debug!("configuration reloaded; nothing changed"),
            Err(e) => {
                error!(error = %e, "reload failed; the previous configuration keeps running")
            }
        }
        result.map(|_| ())
    }

    /// The error as `POST /-/reload` answers it: the same text, with the config and web config
    /// paths reduced to their file names (the directory layout of the host is nobody's business).
    pub fn public_message(&self, e: &ReloadError) -> String {
        // A web config error names the certificate, key or CA file at fault only in logs.
        let mut text = match e {
            ReloadError::WebConfig(web) => web.public_message(),
            other => other.to_string(),
        };
        for path in [&self.config_path, &self.web_path].into_iter().flatten() {
            if let Some(name) = path.file_name() {
                text = text.replace(&path.display().to_string(), &name.to_string_lossy());
            }
        }
        text
    }

    /// Loads both files and applies them, or neither; `Ok(true)` when something changed.
    async fn load_and_apply(
        &self,
        in_force: &mut Option<(Config, u32)>,
    ) -> Result<bool, ReloadError> {
        let web: Option<WebState> = match self.web_path.clone() {
            Some(path) => Some(off_runtime(move || http::load_web_config(&path)).await??),
            None => None,
        };
        let mut changed = false;
        if let Some(state) = &web {
            for w in state.warnings() {
                warn!(warning = %w, "web configuration warning");
            }
            // Refused before anything is applied: a reload never lowers security.
            changed |= self.web.check_reload(state)? == WebChange::Different;
        }
        match self.config_path.clone() {
            Some(path) => {
                let loaded = off_runtime(move || load_for_shard(&path)).await??;
                for w in &loaded.warnings {
                    warn!(warning = %w, "configuration warning");
                }
                let next = (loaded.config.clone(), loaded.shard_index);
                changed |= in_force.as_ref() != Some(&next);
                apply(&self.commands, loaded).await?;
                *in_force = Some(next);
            }
            None => debug!("no configuration file to re-read (demo mode)"),
        }
        if let Some(state) = web {
            self.web.replace(state);
        }
        Ok(changed)
    }
}

/// Hands a validated configuration to the control loop and waits until it is in force.
pub async fn apply(
    commands: &mpsc::Sender<Command>,
    config: ShardConfig,
) -> Result<(), ReloadError> {
    let (reply, done) = oneshot::channel();
    commands
        .send(Command::Apply(Box::new(config), reply))
        .await
        .map_err(|_| ReloadError::ShuttingDown)?;
    done.await.map_err(|_| ReloadError::ShuttingDown)
}
