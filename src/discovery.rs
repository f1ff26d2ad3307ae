//! Portal discovery: `ListPortals` (all pages) in each region of each `discovery` entry, every
//! `refresh`. Results go to the reconciler, which turns them into portal plans, and keeps the
//! last good list of each source.
//!
//! Each source runs supervised ([`crate::supervise`]): a panic is counted in
//! `workspacesweb_discovery_panics_total{source}`, logged, reported to the reconciler as a failed
//! listing (so readiness does not wait for it forever, and the previous list stays in force),
//! and the source restarts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};

use crate::aws::ErrorLabel;
use crate::aws::pagination::PageGuard;
use crate::aws::{self, ApiCounters, ApiError, ClientKey, Clients, PortalInfo, RegionApi};
use crate::config::DiscoveryConfig;
use crate::supervise::{Panicked, RESTART_DELAY, Restarts, supervise};

/// Identifies one discovery source: the entry's position in `discovery` and one of its regions
/// (and, for an organization entry, the account listed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceKey {
    /// Index of the entry in the config's `discovery` list.
    pub entry: usize,
    /// Region listed.
    pub region: String,
    /// The account whose member role listed it (organization discovery); `None` otherwise.
    pub account: Option<String>,
}

/// The outcome of one listing of one source.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Which source.
    pub key: SourceKey,
    /// The generation of sources that produced it (see [`spawn`]).
    pub generation: u64,
    /// The portals, or why the listing failed (the previous list then stays in force).
    pub result: Result<Vec<PortalInfo>, ApiError>,
}

/// `ListPortals` page size.
const PAGE_SIZE: i32 = 100;
/// Pages after which a listing gives up (100,000 portals).
const MAX_PAGES: u32 = 1000;
/// Bound on one complete listing.
const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// Lists every portal, guarding against a repeated `nextToken` and endless pagination.
pub async fn list_all(api: &RegionApi) -> Result<Vec<PortalInfo>, ApiError> {
    let mut out = Vec::new();
    let mut token = None;
    let mut guard = PageGuard::new();
    loop {
        let (portals, next) = api.list_portals(PAGE_SIZE, token).await?;
        out.extend(portals);
        match guard.next(next, MAX_PAGES) {
            Ok(Some(t)) => token = Some(t),
            Ok(None) => return Ok(out),
            Err(stop) => {
                api.counters().error(aws::LIST_PORTALS, ErrorLabel::Other);
                return Err(ApiError {
                    operation: aws::LIST_PORTALS,
                    code: ErrorLabel::Other,
                    message: format!("pagination stopped: {stop}"),
                });
            }
        }
    }
}

/// Lists every portal as [`list_all`] does, within `LISTING_TIMEOUT` (a timeout is counted).
pub async fn list_all_bounded(api: &RegionApi) -> Result<Vec<PortalInfo>, ApiError> {
    tokio::time::timeout(LISTING_TIMEOUT, list_all(api))
        .await
        .unwrap_or_else(|_| {
            api.counters().error(aws::LIST_PORTALS, ErrorLabel::Timeout);
            Err(ApiError {
                operation: aws::LIST_PORTALS,
                code: ErrorLabel::Timeout,
                message: format!("listing took longer than {LISTING_TIMEOUT:?}"),
            })
        })
}

/// A running discovery source.
#[derive(Debug)]
pub struct SourceTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl SourceTask {
    /// The source running as `handle`, told to stop through `stop`.
    pub fn new(stop: watch::Sender<bool>, handle: JoinHandle<()>) -> Self {
        SourceTask { stop, handle }
    }

    /// Stops the source and waits for it, at once: a listing in flight (up to
    /// `LISTING_TIMEOUT`) is abandoned, and so is a result waiting for room in the control
    /// loop's channel (which the control loop does not drain while it stops sources, so waiting
    /// for that send would never end).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Starts listing `key` every `entry.refresh`, sending each outcome to `tx`, tagged with
/// `generation`: results of an earlier generation may still wait in the channel after a reload
/// restarted the sources (a stopped source's result can have been sent just before), and are
/// then told apart from the new source's with the same key.
pub async fn spawn(
    key: SourceKey,
    generation: u64,
    entry: &DiscoveryConfig,
    clients: &Clients,
    counters: Arc<ApiCounters>,
    tx: mpsc::Sender<Discovered>,
) -> SourceTask {
    let client = ClientKey {
        region: Some(key.region.clone()),
        role_arn: entry.access.role_arn.clone(),
        external_id: entry.access.external_id.clone(),
        endpoint_url: entry.access.endpoint_url.clone(),
    };
    let api = clients.region_api(&client, counters.clone()).await;
    let refresh = entry.refresh;
    let (stop, stop_rx) = watch::channel(false);
    let restarts = Restarts {
        first: RESTART_DELAY,
        stop: Some(stop_rx.clone()),
    };
    let on_panic = {
        let (key, tx) = (key.clone(), tx.clone());
        move |p: &Panicked| {
            counters.count_panic();
            error!(discovery = key.entry, region = %key.region, panics = counters.panics(), panic = %p.message, restart_in = ?p.restart_in, "discovery source panicked; restarting it, the previous list stays in force");
            // A failed listing for the reconciler: it publishes the count, and readiness does
            // not wait for this source's first listing forever. Dropped when the channel is full
            // (the count shows with the next result).
            let _ = tx.try_send(Discovered {
                key: key.clone(),
                generation,
                result: Err(ApiError {
                    operation: aws::LIST_PORTALS,
                    code: ErrorLabel::Other,
                    message: format!("the discovery source panicked: {}", p.message),
                }),
            });
        }
    };
    let make = move || {
        let source = Source {
            key: key.clone(),
            generation,
            api: api.clone(),
            refresh,
            tx: tx.clone(),
        };
        source.run(stop_rx.clone())
    };
    let handle = tokio::spawn(supervise(restarts, make, on_panic));
    SourceTask { stop, handle }
}

/// One discovery source's task: what it lists, how often, and where results go.
struct Source {
    key: SourceKey,
    generation: u64,
    api: RegionApi,
    refresh: Duration,
    tx: mpsc::Sender<Discovered>,
}

impl Source {
    /// Lists every `refresh` until stopped (or the reconciler is gone).
    async fn run(self, mut stop_rx: watch::Receiver<bool>) {
        let Source {
            key,
            generation,
            api,
            refresh,
            tx,
        } = self;
        loop {
            let result = list_all_bounded(&api).await;
            #[cfg(test)]
            crate::supervise::panic_hook::fire(&format!("discovery {}", key.region));
            match &result {
                Ok(p) => debug!(region = %key.region, portals = p.len(), "portals discovered"),
                Err(e) => {
                    warn!(region = %key.region, operation = e.operation, error = %e.code, detail = %e.message, "portal discovery failed; keeping the previous list")
                }
            }
            let sent = tx.send(Discovered {
                key: key.clone(),
                generation,
                result,
            });
            if sent.await.is_err() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = stop_rx.changed() => return,
            }
        }
    }
}
