//! The shared state behind a [`Simulator`](crate::Simulator): everything its servers and its
//! control API read and change.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use crate::access::Access;
use crate::clock::Clock;
use crate::config::SimConfig;
use crate::faults::Faults;
use crate::organization::OrgSpec;
use crate::portals::PortalTable;
use crate::traffic::Traffic;

/// Faults of `ListPortals` and the requests it has seen (for deterministic throttling).
#[derive(Debug, Default)]
pub(crate) struct ListPortalsState {
    /// Its faults.
    pub(crate) faults: Faults,
    /// Requests seen.
    pub(crate) requests: u64,
}

/// Faults of the Organizations API, for all its operations or one, and the requests it has seen.
#[derive(Debug, Default)]
pub(crate) struct OrgFaults {
    /// Faults of every operation without faults of its own.
    pub(crate) all: Faults,
    /// Operation name -> its faults.
    pub(crate) operations: HashMap<String, Faults>,
    /// Requests seen.
    pub(crate) requests: u64,
}

/// Shared state behind a simulator.
#[derive(Debug)]
pub(crate) struct SimState {
    /// Seed of every random choice.
    pub(crate) seed: u64,
    /// Source of "now" for the session model.
    pub(crate) clock: Clock,
    /// Largest page.
    pub(crate) max_page_size: usize,
    /// Page size when `maxResults` is absent.
    pub(crate) default_page_size: usize,
    /// Hide portals of other regions from signed requests.
    pub(crate) enforce_region: bool,
    /// The portals.
    pub(crate) portals: PortalTable,
    /// `ListPortals`, which belongs to no portal.
    pub(crate) list_portals: Mutex<ListPortalsState>,
    /// Counters and log.
    pub(crate) traffic: Traffic,
    /// Keys and identities, STS roles, signers, portal owners, removed portals, per-operation errors.
    pub(crate) access: Access,
    /// The organization, when the simulator serves one.
    pub(crate) organization: RwLock<Option<OrgSpec>>,
    /// Faults of the Organizations API.
    pub(crate) org_faults: Mutex<OrgFaults>,
}

impl SimState {
    /// The state of a new simulator: its portals built (history generated) at the clock's now.
    pub(crate) fn new(config: SimConfig) -> Self {
        let anchor = config.clock.now_ms();
        let portals = PortalTable::default();
        portals.insert(&config.portals, config.seed, anchor);
        Self {
            seed: config.seed,
            clock: config.clock,
            max_page_size: config.max_page_size.max(1),
            default_page_size: config.default_page_size.max(1),
            enforce_region: config.enforce_region,
            portals,
            list_portals: Mutex::new(ListPortalsState {
                faults: config.list_portals_faults,
                requests: 0,
            }),
            traffic: Traffic::default(),
            access: Access::default(),
            organization: RwLock::new(config.organization),
            org_faults: Mutex::new(OrgFaults::default()),
        }
    }
}
