//! The control API of access: roles STS may assume, portal owners, removed portals,
//! per-operation errors, and the records of who signed what.

use std::collections::{BTreeMap, BTreeSet};

use super::Simulator;
use crate::access::AssumeRoleCall;

impl Simulator {
    /// Lets STS `AssumeRole` succeed for `role_arn` (`arn:aws:iam::<12 digits>:role/<name>`),
    /// requiring `external_id` when given. Other roles are refused with `AccessDenied`.
    pub fn allow_role(&self, role_arn: &str, external_id: Option<&str>) {
        self.state
            .access
            .state()
            .roles
            .insert(role_arn.to_string(), external_id.map(str::to_string));
    }

    /// Makes a portal answer `AccessDeniedException` to every request not signed with credentials
    /// issued for `role_arn` (a portal in the role's account). `None` opens it to any signer.
    pub fn set_portal_owner(&self, portal_id: &str, role_arn: Option<&str>) {
        let mut st = self.state.access.state();
        match role_arn {
            Some(r) => st.owners.insert(portal_id.to_string(), r.to_string()),
            None => st.owners.remove(portal_id),
        };
    }

    /// Removes a portal (`true`) or brings it back (`false`): while removed, `ListPortals` no
    /// longer lists it and its operations answer `ResourceNotFoundException`.
    pub fn set_portal_removed(&self, portal_id: &str, removed: bool) {
        let mut st = self.state.access.state();
        if removed {
            st.removed.insert(portal_id.to_string());
        } else {
            st.removed.remove(portal_id);
        }
    }

    /// Answers every `operation` request of a portal (`ListSessions`, `GetSession`, `GetPortal`,
    /// `ExpireSession`: see [`operation`](crate::operation)) with the AWS error `code` (e.g.
    /// `AccessDeniedException` on `GetPortal` only); `None` clears it. Other operations of the
    /// portal are unaffected. `AccessDeniedException` carries IAM's message: `User: <caller> is
    /// not authorized to perform: workspaces-web:<Operation> on resource: <portal ARN> because no
    /// identity-based policy allows the workspaces-web:<Operation> action`.
    pub fn set_operation_error(&self, portal_id: &str, operation: &str, code: Option<&str>) {
        let mut st = self.state.access.state();
        let key = (portal_id.to_string(), operation.to_string());
        match code {
            Some(c) => st.op_errors.insert(key, c.to_string()),
            None => st.op_errors.remove(&key),
        };
    }

    /// Answers `ListPortals` signed for `region` with the AWS error `code` (`None` clears it): for
    /// callers of `account` only, or of every account with `None` (an account's own setting wins).
    /// A discovery entry listing several regions sees one of them denied.
    /// `AccessDeniedException` carries IAM's message, on resource
    /// `arn:aws:workspaces-web:<region>:<account>:portal/*`.
    pub fn set_list_portals_error(&self, region: &str, account: Option<&str>, code: Option<&str>) {
        let mut st = self.state.access.state();
        let key = (region.to_string(), account.map(str::to_string));
        match code {
            Some(c) => st.list_portals_errors.insert(key, c.to_string()),
            None => st.list_portals_errors.remove(&key),
        };
    }

    /// Answers STS `AssumeRole` of any role of `account` with the STS error `code` (`AccessDenied`,
    /// 403, with IAM's message; `Throttling`, 400; `RegionDisabledException`, 403; others 400);
    /// `None` clears it.
    pub fn set_assume_role_error(&self, account: &str, code: Option<&str>) {
        let mut st = self.state.access.state();
        match code {
            Some(c) => st.assume_errors.insert(account.to_string(), c.to_string()),
            None => st.assume_errors.remove(account),
        };
    }

    /// Every `AssumeRole` call received, in order.
    pub fn assume_role_calls(&self) -> Vec<AssumeRoleCall> {
        self.state.access.state().calls.clone()
    }

    /// The role an access key id was issued for by `AssumeRole`.
    pub fn role_of_key(&self, access_key_id: &str) -> Option<String> {
        self.state.access.state().role_of(access_key_id)
    }

    /// Access key ids that signed requests for a portal (`""`: `ListPortals`), with their counts.
    pub fn signers(&self, portal_id: &str) -> BTreeMap<String, u64> {
        self.state
            .access
            .state()
            .signers
            .get(portal_id)
            .cloned()
            .unwrap_or_default()
    }

    /// SigV4 regions of the signed requests for a portal (`""`: `ListPortals`).
    pub fn signing_regions(&self, portal_id: &str) -> BTreeSet<String> {
        self.state
            .access
            .state()
            .regions
            .get(portal_id)
            .cloned()
            .unwrap_or_default()
    }
}
