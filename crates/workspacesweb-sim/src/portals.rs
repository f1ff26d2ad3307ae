//! The portal table: what each portal is ([`PortalInfo`]) and its mutable state (sessions,
//! faults, raw records).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;

use crate::config::{PortalInfo, PortalSpec, SessionModel};
use crate::error::SimError;
use crate::faults::Faults;
use crate::locks::{lock, read, write};
use crate::model::SessionStore;
use crate::rng::{fnv, mix};

/// A wire record sent verbatim: its bytes, and its JSON value (for filters) when it parses.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    /// The bytes spliced into the `sessions` array.
    pub(crate) bytes: Bytes,
    /// The record's fields, when it parses as JSON (`None`: it passes every filter).
    pub(crate) fields: Option<serde_json::Value>,
}

/// Mutable state of one portal.
#[derive(Debug)]
pub(crate) struct PortalState {
    /// Its sessions.
    pub(crate) store: SessionStore,
    /// Its faults.
    pub(crate) faults: Faults,
    /// Requests seen, for deterministic throttling.
    pub(crate) requests: u64,
    /// Wire records listed verbatim after the model's sessions.
    pub(crate) raw_records: Vec<RawRecord>,
}

/// One portal: what it is, and its state.
#[derive(Debug)]
pub(crate) struct Portal {
    /// The static part of `GetPortal`.
    pub(crate) info: PortalInfo,
    /// Sessions, faults, raw records.
    pub(crate) state: Mutex<PortalState>,
}

impl Portal {
    /// Builds a portal from its spec: its history is generated from `seed` up to `anchor_ms`.
    pub(crate) fn build(spec: &PortalSpec, seed: u64, anchor_ms: i64) -> Self {
        let portal_seed = mix(seed, fnv(&spec.id));
        let store = match &spec.model {
            SessionModel::Generated(m) => SessionStore::generated(m, portal_seed, anchor_ms),
            SessionModel::Scripted(s) => SessionStore::scripted(s),
        };
        let age_days = 30 + (portal_seed % 300) as i64;
        Self {
            info: PortalInfo {
                id: spec.id.clone(),
                arn: spec.arn(),
                region: spec.region.clone(),
                account: spec.account.clone(),
                display_name: spec.display_name.clone(),
                max_concurrent_sessions: spec.max_concurrent_sessions,
                instance_type: spec.instance_type.clone(),
                creation_ms: (anchor_ms - age_days * 86_400_000).div_euclid(1000) * 1000,
            },
            state: Mutex::new(PortalState {
                store,
                faults: spec.faults.clone(),
                requests: 0,
                raw_records: Vec::new(),
            }),
        }
    }

    /// The state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, PortalState> {
        lock(&self.state)
    }
}

/// Every portal by id (ordered by id, the order of `ListPortals`); portals can be added at runtime.
#[derive(Debug, Default)]
pub(crate) struct PortalTable {
    portals: RwLock<BTreeMap<String, Arc<Portal>>>,
}

impl PortalTable {
    /// Adds portals built from `specs`; the first of duplicate ids wins.
    pub(crate) fn insert(&self, specs: &[PortalSpec], seed: u64, anchor_ms: i64) {
        let mut portals = write(&self.portals);
        for spec in specs {
            if !portals.contains_key(&spec.id) {
                let portal = Arc::new(Portal::build(spec, seed, anchor_ms));
                portals.insert(spec.id.clone(), portal);
            }
        }
    }

    /// One portal by id.
    pub(crate) fn get(&self, portal_id: &str) -> Option<Arc<Portal>> {
        read(&self.portals).get(portal_id).cloned()
    }

    /// One portal by id, or [`SimError::UnknownPortal`].
    pub(crate) fn find(&self, portal_id: &str) -> Result<Arc<Portal>, SimError> {
        self.get(portal_id)
            .ok_or_else(|| SimError::UnknownPortal(portal_id.to_string()))
    }

    /// What every portal is, ordered by id.
    pub(crate) fn infos(&self) -> Vec<PortalInfo> {
        read(&self.portals)
            .values()
            .map(|p| p.info.clone())
            .collect()
    }
}
