//! The [`Simulator`] handle: builds the shared state, serves it, and is the control API tests
//! use while it serves (one file per topic: sessions, access, credentials, organization, traffic).

mod access;
mod credentials;
mod organization;
mod sessions;
mod traffic;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{PortalInfo, SimConfig};
use crate::error::SimError;
use crate::faults::Faults;
use crate::locks::lock;
use crate::state::SimState;

/// The simulator: cheap to clone (shared state), usable from tests while it serves.
#[derive(Debug, Clone)]
pub struct Simulator {
    state: Arc<SimState>,
}

impl Simulator {
    /// Builds the portals (generating their history) from `config`.
    pub fn new(config: SimConfig) -> Self {
        Self {
            state: Arc::new(SimState::new(config)),
        }
    }

    /// Binds `addr` (port 0 picks a free port) and serves in a background task until the
    /// returned [`RunningSim`] is shut down or dropped.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<RunningSim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(crate::api::serve(Arc::clone(&self.state), listener, rx));
        Ok(RunningSim {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The clock the model runs on (a clone shares the time).
    pub fn clock(&self) -> Clock {
        self.state.clock.clone()
    }

    /// Every portal, ordered by id.
    pub fn portals(&self) -> Vec<PortalInfo> {
        self.state.portals.infos()
    }

    /// One portal by id.
    pub fn portal(&self, portal_id: &str) -> Option<PortalInfo> {
        self.state.portals.get(portal_id).map(|p| p.info.clone())
    }

    /// Replaces the faults of a portal, effective from the next request.
    pub fn set_faults(&self, portal_id: &str, faults: Faults) -> Result<(), SimError> {
        self.state.portals.find(portal_id)?.state().faults = faults;
        Ok(())
    }

    /// The current faults of a portal.
    pub fn faults(&self, portal_id: &str) -> Option<Faults> {
        self.state
            .portals
            .get(portal_id)
            .map(|p| p.state().faults.clone())
    }

    /// Replaces the faults of `ListPortals`.
    pub fn set_list_portals_faults(&self, faults: Faults) {
        lock(&self.state.list_portals).faults = faults;
    }
}

/// A running simulator server; stops when [`RunningSim::shutdown`] is called or when dropped.
#[derive(Debug)]
pub struct RunningSim {
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// `http://<addr>`, for the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes open connections, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
