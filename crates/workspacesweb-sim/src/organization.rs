//! An AWS Organization: its root, organizational units (OUs) and accounts, as configured and as
//! changed at runtime. What the simulator's Organizations API lists, and which accounts' member
//! roles its STS lets callers assume.

use crate::error::SimError;
use crate::record::UnixMillis;
use crate::rng::{Rng, fnv, mix};

/// The state of an account (the `State` field; the older `Status` is derived from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountState {
    /// `ACTIVE`: usable; its member role can be assumed.
    Active,
    /// `SUSPENDED`: listed, but its member role can no longer be assumed.
    Suspended,
    /// `PENDING_CLOSURE`: closing; like suspended.
    PendingClosure,
    /// `CLOSED`: closed, still listed (AWS lists closed accounts for 90 days); like suspended.
    Closed,
}

impl AccountState {
    /// The `State` wire value (`ACTIVE`, `SUSPENDED`, `PENDING_CLOSURE`, `CLOSED`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::PendingClosure => "PENDING_CLOSURE",
            Self::Closed => "CLOSED",
        }
    }

    /// The older `Status` wire value, which knows only `ACTIVE`, `SUSPENDED` and
    /// `PENDING_CLOSURE` (a closed account shows `SUSPENDED`: the simulator's choice).
    pub fn status_str(&self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended | Self::Closed => "SUSPENDED",
            Self::PendingClosure => "PENDING_CLOSURE",
        }
    }
}

/// One account of the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// 12-digit account id.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// `Email`.
    pub email: String,
    /// The OU it sits in; `None`: directly under the root.
    pub parent_id: Option<String>,
    /// `State` (and `Status`).
    pub state: AccountState,
    /// `JoinedTimestamp`, milliseconds since the epoch.
    pub joined_ms: UnixMillis,
}

impl AccountSpec {
    /// An active account under the root, with email `<name>@example.com`.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        let id = id.into();
        let name = name.into();
        // 2023-01-01 plus a few hundred days, stable per account.
        let joined_ms = 1_672_531_200_000 + (fnv(&id) % 600) as i64 * 86_400_000;
        Self {
            email: format!("{}@example.com", name.replace(' ', "-")),
            id,
            name,
            parent_id: None,
            state: AccountState::Active,
            joined_ms,
        }
    }

    /// The same account, in OU `parent_id`.
    pub fn in_unit(mut self, parent_id: impl Into<String>) -> Self {
        self.parent_id = Some(parent_id.into());
        self
    }
}

/// One organizational unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuSpec {
    /// `ou-<root part>-<8 to 32 characters>`.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// The root or OU it sits in.
    pub parent_id: String,
}

/// An AWS Organization: what `ListAccounts`, `ListChildren`, `ListAccountsForParent`,
/// `ListOrganizationalUnitsForParent`, `ListRoots` and `DescribeOrganization` answer, and the
/// member role STS lets callers assume in each of its accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSpec {
    /// `o-` and 10 lowercase letters or digits.
    pub id: String,
    /// `r-` and 4 lowercase letters or digits.
    pub root_id: String,
    /// The management account (also one of `accounts`).
    pub management_account: String,
    /// Organizational units, parents before children.
    pub units: Vec<OuSpec>,
    /// Accounts, the management account included.
    pub accounts: Vec<AccountSpec>,
    /// Name of the role STS lets callers assume in every active account
    /// (`arn:aws:iam::<account>:role/<name>`); `None`: no member role.
    pub member_role: Option<String>,
    /// External id the member role requires, when set.
    pub member_external_id: Option<String>,
    /// When set, Organizations answers only requests signed with credentials issued for this
    /// role ARN (as `organization.role_arn` of the exporter); STS lets callers assume it.
    pub management_role: Option<String>,
}

const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

impl OrgSpec {
    /// An organization managed by `management_account` (named `management`), with no OU, no
    /// member role, and ids derived from the management account.
    pub fn new(management_account: impl Into<String>) -> Self {
        let management_account = management_account.into();
        let mut rng = Rng::new(mix(fnv(&management_account), 0x4f52_4700));
        Self {
            id: format!("o-{}", rng.chars(LOWER_DIGITS, 10)),
            root_id: format!("r-{}", rng.chars(LOWER_DIGITS, 4)),
            units: Vec::new(),
            accounts: vec![AccountSpec::new(management_account.clone(), "management")],
            management_account,
            member_role: None,
            member_external_id: None,
            management_role: None,
        }
    }

    /// The same organization, with member role `name` in every account (requiring `external_id` when given).
    pub fn with_member_role(mut self, name: impl Into<String>, external_id: Option<&str>) -> Self {
        self.member_role = Some(name.into());
        self.member_external_id = external_id.map(str::to_string);
        self
    }

    /// The same organization plus one account (replacing an account with the same id).
    pub fn with_account(mut self, account: AccountSpec) -> Self {
        self.accounts.retain(|a| a.id != account.id);
        self.accounts.push(account);
        self
    }

    /// Adds an OU named `name` under `parent_id` (the root or an OU) and returns its id.
    pub fn add_unit(&mut self, name: &str, parent_id: &str) -> Result<String, SimError> {
        if !self.is_parent(parent_id) {
            return Err(SimError::UnknownParent(parent_id.to_string()));
        }
        let root_part = self.root_id.trim_start_matches("r-");
        let mut rng = Rng::new(mix(
            fnv(&format!("{parent_id}/{name}")),
            self.units.len() as u64,
        ));
        let id = format!("ou-{root_part}-{}", rng.chars(LOWER_DIGITS, 8));
        self.units.push(OuSpec {
            id: id.clone(),
            name: name.to_string(),
            parent_id: parent_id.to_string(),
        });
        Ok(id)
    }

    /// Whether `id` is the root or one of the OUs.
    pub fn is_parent(&self, id: &str) -> bool {
        id == self.root_id || self.units.iter().any(|u| u.id == id)
    }

    /// One account by id.
    pub fn account(&self, id: &str) -> Option<&AccountSpec> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The parent of an account: its OU, or the root.
    pub fn parent_of(&self, account: &AccountSpec) -> String {
        account
            .parent_id
            .clone()
            .unwrap_or_else(|| self.root_id.clone())
    }

    /// The role ARN of the member role in `account`, when there is a member role.
    pub fn member_role_arn(&self, account: &str) -> Option<String> {
        self.member_role
            .as_ref()
            .map(|name| format!("arn:aws:iam::{account}:role/{name}"))
    }

    /// `arn:aws:organizations::<management>:organization/<id>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:organizations::{}:organization/{}",
            self.management_account, self.id
        )
    }

    /// The ARN of an account, OU or root of this organization: `kind` is `account`, `ou` or `root`.
    pub fn member_arn(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:aws:organizations::{}:{kind}/{}/{id}",
            self.management_account, self.id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_shapes_aws_documents() {
        let mut org = OrgSpec::new("111111111111");
        assert!(org.id.starts_with("o-") && org.id.len() == 12, "{}", org.id);
        assert!(org.root_id.starts_with("r-") && org.root_id.len() == 6);
        let root = org.root_id.clone();
        let ou = org.add_unit("prod", &root).expect("root is a parent");
        let root_part = root.trim_start_matches("r-");
        assert!(ou.starts_with(&format!("ou-{root_part}-")) && ou.len() == 3 + 4 + 1 + 8);
        let child = org.add_unit("team", &ou).expect("ou is a parent");
        assert_ne!(child, ou);
        assert_eq!(
            org.add_unit("x", "ou-nope-12345678"),
            Err(SimError::UnknownParent("ou-nope-12345678".into()))
        );
        assert_eq!(org.accounts.len(), 1);
        assert_eq!(
            org.member_arn("account", "111111111111"),
            format!(
                "arn:aws:organizations::111111111111:account/{}/111111111111",
                org.id
            )
        );
    }

    #[test]
    fn closed_accounts_show_suspended_in_the_older_status() {
        assert_eq!(AccountState::Closed.as_str(), "CLOSED");
        assert_eq!(AccountState::Closed.status_str(), "SUSPENDED");
        assert_eq!(AccountState::PendingClosure.status_str(), "PENDING_CLOSURE");
    }
}
