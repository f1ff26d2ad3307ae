//! The control API of the organization: its state, changes that take effect on the next call,
//! and the faults of the Organizations API.

use super::Simulator;
use crate::config::PortalSpec;
use crate::error::SimError;
use crate::faults::Faults;
use crate::locks::{lock, read, write};
use crate::organization::{AccountSpec, AccountState, OrgSpec};

impl Simulator {
    /// The organization as it is now (with the changes made at runtime), if the simulator serves one.
    pub fn organization(&self) -> Option<OrgSpec> {
        read(&self.state.organization).clone()
    }

    /// Applies `change` to the organization.
    fn change_org<T>(
        &self,
        change: impl FnOnce(&mut OrgSpec) -> Result<T, SimError>,
    ) -> Result<T, SimError> {
        let mut org = write(&self.state.organization);
        change(org.as_mut().ok_or(SimError::NoOrganization)?)
    }

    /// Adds an account to the organization with its portals (their `account` set to its id; their
    /// history generated up to now). Its member role can be assumed from the next call on.
    pub fn add_account(
        &self,
        account: AccountSpec,
        portals: Vec<PortalSpec>,
    ) -> Result<(), SimError> {
        let id = account.id.clone();
        self.change_org(|org| {
            if org.account(&account.id).is_some() {
                return Err(SimError::DuplicateAccount(account.id.clone()));
            }
            if let Some(parent) = &account.parent_id
                && !org.is_parent(parent)
            {
                return Err(SimError::UnknownParent(parent.clone()));
            }
            org.accounts.push(account);
            Ok(())
        })?;
        let portals: Vec<PortalSpec> = portals
            .into_iter()
            .map(|mut p| {
                p.account = id.clone();
                p
            })
            .collect();
        let now = self.state.clock.now_ms();
        self.state.portals.insert(&portals, self.state.seed, now);
        Ok(())
    }

    /// Sets an account's state (e.g. [`AccountState::Suspended`]): listed with it from the next
    /// call; only `Active` accounts' member roles can be assumed.
    pub fn set_account_state(&self, account_id: &str, state: AccountState) -> Result<(), SimError> {
        self.change_org(|org| {
            let account = org
                .accounts
                .iter_mut()
                .find(|a| a.id == account_id)
                .ok_or_else(|| SimError::UnknownAccount(account_id.to_string()))?;
            account.state = state;
            Ok(())
        })
    }

    /// Removes an account from the organization (it leaves it): no longer listed, its member
    /// role can no longer be assumed, its keys get `AWSOrganizationsNotInUseException` from
    /// Organizations. Its portals stay (the account still exists).
    pub fn remove_account(&self, account_id: &str) -> Result<(), SimError> {
        self.change_org(|org| {
            let before = org.accounts.len();
            org.accounts.retain(|a| a.id != account_id);
            if org.accounts.len() == before {
                return Err(SimError::UnknownAccount(account_id.to_string()));
            }
            Ok(())
        })
    }

    /// Moves an account under `parent_id` (the root or an OU).
    pub fn move_account(&self, account_id: &str, parent_id: &str) -> Result<(), SimError> {
        self.change_org(|org| {
            if !org.is_parent(parent_id) {
                return Err(SimError::UnknownParent(parent_id.to_string()));
            }
            let root = org.root_id.clone();
            let account = org
                .accounts
                .iter_mut()
                .find(|a| a.id == account_id)
                .ok_or_else(|| SimError::UnknownAccount(account_id.to_string()))?;
            account.parent_id = (parent_id != root).then(|| parent_id.to_string());
            Ok(())
        })
    }

    /// Adds an OU named `name` under `parent_id` (the root or an OU); returns its id.
    pub fn add_organizational_unit(&self, name: &str, parent_id: &str) -> Result<String, SimError> {
        self.change_org(|org| org.add_unit(name, parent_id))
    }

    /// Replaces the faults of one Organizations operation (`Some("ListAccounts")`, see
    /// [`operation`](crate::operation)) or of every operation without faults of its own
    /// (`None`): `error` answers that code (`AccessDeniedException`,
    /// `AWSOrganizationsNotInUseException`, `ServiceException`...), `throttle_ratio` answers
    /// `TooManyRequestsException` (HTTP 400, as Organizations does), `latency` delays.
    pub fn set_organizations_faults(&self, operation: Option<&str>, faults: Faults) {
        let mut f = lock(&self.state.org_faults);
        match operation {
            Some(op) if faults == Faults::none() => {
                f.operations.remove(op);
            }
            Some(op) => {
                f.operations.insert(op.to_string(), faults);
            }
            None => f.all = faults,
        }
    }
}
