//! A portal's metadata: its ARN (from the plan, or learned from the `portalArn` of its own
//! sessions), `GetPortal` every `metadata_refresh`, the `portal_info` labels and the capacity
//! limit (`maxConcurrentSessions`) it gives the ledger.

use std::time::Instant;

use tracing::{debug, warn};

use super::PortalPlan;
use crate::aws::{self, ErrorLabel, PortalApi, PortalInfo, region_of_arn};
use crate::ledger::Ledger;
use crate::snapshot::PortalMeta;

/// What is known of one portal's metadata, and when to ask again.
#[derive(Debug)]
pub(super) struct Metadata {
    /// Portal ARN: from the plan, or learned from the `portalArn` of the portal's own sessions.
    arn: Option<String>,
    /// The last `GetPortal` answer (`None`: not known, not permitted or not found).
    info: Option<PortalInfo>,
    /// When `GetPortal` is due again (`None`: now).
    due: Option<Instant>,
    /// Whether the AccessDenied warning was logged (once per task).
    denied_logged: bool,
}

impl Metadata {
    /// Nothing known yet but the ARN of the plan, if any.
    pub(super) fn new(arn: Option<String>) -> Self {
        Metadata {
            arn,
            info: None,
            due: None,
            denied_logged: false,
        }
    }

    /// Adopts `arn` (the `portalArn` of the portal's sessions, which names it) when no ARN is
    /// known.
    pub(super) fn learn_arn(&mut self, arn: Option<&str>) {
        if self.arn.is_none() {
            self.arn = arn.map(str::to_string);
        }
    }

    /// Whether `GetPortal` is due now (an ARN is known and its answer is missing or old).
    pub(super) fn due_now(&self) -> bool {
        self.arn.is_some() && self.due.is_none_or(|due| Instant::now() >= due)
    }

    /// Follows a new plan: a new ARN, or a shorter refresh, makes `GetPortal` due at once.
    pub(super) fn plan_changed(&mut self, old: &PortalPlan, new: &PortalPlan) {
        if new.arn.is_some() && new.arn != old.arn {
            self.arn = new.arn.clone();
            self.due = None;
        }
        if new.metadata_refresh < old.metadata_refresh {
            self.due = None;
        }
    }

    /// Makes `GetPortal` due at once (after a configuration reload: a policy may have been fixed).
    pub(super) fn ask_again(&mut self) {
        self.due = None;
        self.denied_logged = false;
    }

    /// Refreshes the metadata with `GetPortal` when due. AccessDenied is not a poll failure: the
    /// info series are absent and a warning is logged once. An answer (the portal, AccessDenied
    /// or not found) also tells `ledger` the limit for the next interval; without one, the
    /// ledger keeps the limit it knew (restored from the state file included), so the
    /// at-capacity counter stays continuous across restarts.
    pub(super) async fn refresh(
        &mut self,
        api: &PortalApi,
        plan: &PortalPlan,
        ledger: Option<&mut Ledger>,
    ) {
        let Some(arn) = self.arn.clone().filter(|_| self.due_now()) else {
            return;
        };
        let portal_id = plan.portal_id.as_str();
        let refresh = Instant::now() + plan.metadata_refresh;
        let answer = match tokio::time::timeout(plan.timeout, api.get_portal(&arn)).await {
            Ok(Ok(info)) => Some(info),
            Ok(Err(e)) if e.is_access_denied() => {
                if !self.denied_logged {
                    warn!(portal_id, operation = e.operation, error = %e.code, "GetPortal is not permitted; portal info series are absent");
                    self.denied_logged = true;
                }
                Some(None)
            }
            Ok(Err(e)) if e.code == ErrorLabel::NOT_FOUND => Some(None),
            Ok(Err(e)) => {
                debug!(portal_id, operation = e.operation, error = %e.code, detail = %e.message, "GetPortal failed; retrying next cycle");
                None
            }
            Err(_) => {
                api.counters().error(aws::GET_PORTAL, ErrorLabel::Timeout);
                debug!(
                    portal_id,
                    operation = aws::GET_PORTAL,
                    error = %ErrorLabel::Timeout,
                    "GetPortal timed out; retrying next cycle"
                );
                None
            }
        };
        if let Some(info) = answer {
            self.info = info;
            self.due = Some(refresh);
            if let Some(ledger) = ledger {
                ledger.set_capacity_limit(self.capacity_limit());
            }
        }
    }

    /// The portal's ARN, when known (from the plan or its sessions).
    pub(super) fn arn(&self) -> Option<&str> {
        self.arn.as_deref()
    }

    /// The portal's `maxConcurrentSessions` per the last GetPortal answer (`None`: unknown).
    pub(super) fn capacity_limit(&self) -> Option<u64> {
        self.info
            .as_ref()
            .and_then(|i| i.max_concurrent_sessions)
            .and_then(|m| u64::try_from(m).ok())
    }

    /// The `portal_info` labels and capacity, when metadata is known.
    pub(super) fn meta(&self, plan: &PortalPlan) -> Option<PortalMeta> {
        let info = self.info.as_ref()?;
        let region = plan
            .client
            .region
            .clone()
            .or_else(|| region_of_arn(&info.arn).map(str::to_string))
            .unwrap_or_default();
        Some(PortalMeta {
            arn: info.arn.clone(),
            region,
            display_name: info.display_name.clone().unwrap_or_default(),
            browser_type: info.browser_type.clone().unwrap_or_default(),
            instance_type: info.instance_type.clone().unwrap_or_default(),
            max_concurrent_sessions: self.capacity_limit(),
        })
    }
}
