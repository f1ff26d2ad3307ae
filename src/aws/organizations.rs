//! AWS Organizations, as organization discovery calls it: one page of `ListAccounts`,
//! `ListAccountsForParent` or `ListChildren` (OUs) at a time, counted, paced and guarded like
//! every other call.

use std::sync::Arc;

use aws_sdk_organizations::types::{self as sdk, ChildType};

use super::client::{Clients, refused, sdk_config};
use super::credentials::Attributed;
use super::interceptors::{CountingInterceptor, ResponseGuard, api_error};
use super::pagination::check_page;
use super::ratelimit::TokenBucket;
use super::types::{
    ApiCounters, ApiError, ClientKey, LIST_ACCOUNTS, LIST_ACCOUNTS_FOR_PARENT, LIST_CHILDREN,
    Priority,
};

/// Largest page Organizations serves (`MaxResults` 1..=20).
const PAGE_SIZE: i32 = 20;

/// Longest account name kept (AWS allows 50 characters); a longer one is cut.
pub const MAX_ACCOUNT_NAME_CHARS: usize = 256;

/// One account of an organization, as listed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Account {
    /// The 12-digit account id.
    pub id: String,
    /// Its name ("" when unset).
    pub name: String,
    /// Whether its state (or, from older endpoints, its status) is `ACTIVE`.
    pub active: bool,
}

impl Account {
    /// The account of an SDK record; `None` without a 12-digit id (no role ARN is ever made from
    /// anything else).
    fn of(a: &sdk::Account) -> Option<Account> {
        let id = a.id().filter(|id| is_account_id(id))?;
        let active = match (a.state(), a.status()) {
            (Some(state), _) => *state == sdk::AccountState::Active,
            (None, Some(status)) => *status == sdk::AccountStatus::Active,
            (None, None) => false,
        };
        Some(Account {
            id: id.to_string(),
            name: a
                .name()
                .unwrap_or_default()
                .chars()
                .take(MAX_ACCOUNT_NAME_CHARS)
                .collect(),
            active,
        })
    }
}

/// Whether `s` is an account id: 12 digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// One page: its items and the token of the next.
pub type Page<T> = (Vec<T>, Option<String>);

/// The Organizations API as organization discovery sees it.
#[derive(Debug, Clone)]
pub struct OrganizationsApi {
    client: aws_sdk_organizations::Client,
    counters: Arc<ApiCounters>,
    bucket: Arc<TokenBucket>,
}

impl Clients {
    /// An Organizations handle for `key` (the partition's Organizations region, the role of
    /// `organization.role_arn`, the entry's endpoint), counting into `counters`.
    pub async fn organizations_api(
        &self,
        key: &ClientKey,
        counters: Arc<ApiCounters>,
    ) -> OrganizationsApi {
        OrganizationsApi {
            client: self.organizations_client(key).await,
            counters,
            bucket: self.bucket(key),
        }
    }

    async fn organizations_client(&self, key: &ClientKey) -> aws_sdk_organizations::Client {
        let mut cache = self.organizations.lock().await;
        if let Some(c) = cache.get(key) {
            return c.clone();
        }
        let client =
            aws_sdk_organizations::Client::from_conf(sdk_config!(self, aws_sdk_organizations, key));
        cache.insert(key.clone(), client.clone());
        client
    }
}

/// Sends one request of `$op` built by `$req`: paced as a poll, counted, guarded, with the
/// `AssumeRole` it may trigger counted for it too.
macro_rules! send {
    ($api:expr, $op:expr, $req:expr) => {{
        $api.bucket.acquire_as(Priority::Poll).await;
        Box::pin(
            $req.customize()
                .interceptor(CountingInterceptor::new($op, $api.counters.clone()))
                .interceptor(ResponseGuard { operation: $op })
                .send()
                .attributed(&$api.counters),
        )
        .await
        .map_err(|e| api_error($op, e))
    }};
}

impl OrganizationsApi {
    /// The counters this handle counts into.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// Refuses a page of more than [`PAGE_SIZE`] items, counted as an error of `operation` (its
    /// `nextToken` travels in the JSON body, which has no length limit short of the model's).
    fn check(&self, operation: &'static str, items: usize) -> Result<(), ApiError> {
        check_page(items, PAGE_SIZE, None).map_err(|stop| refused(&self.counters, operation, &stop))
    }

    /// One page of `ListAccounts`: every account of the organization.
    pub async fn list_accounts(&self, token: Option<String>) -> Result<Page<Account>, ApiError> {
        let req = self
            .client
            .list_accounts()
            .max_results(PAGE_SIZE)
            .set_next_token(token);
        let out = send!(self, LIST_ACCOUNTS, req)?;
        self.check(LIST_ACCOUNTS, out.accounts().len())?;
        let accounts = out.accounts().iter().filter_map(Account::of).collect();
        Ok((accounts, out.next_token().map(str::to_string)))
    }

    /// One page of `ListAccountsForParent`: the accounts directly under `parent` (an OU or the root).
    pub async fn list_accounts_for_parent(
        &self,
        parent: &str,
        token: Option<String>,
    ) -> Result<Page<Account>, ApiError> {
        let req = self
            .client
            .list_accounts_for_parent()
            .parent_id(parent)
            .max_results(PAGE_SIZE)
            .set_next_token(token);
        let out = send!(self, LIST_ACCOUNTS_FOR_PARENT, req)?;
        self.check(LIST_ACCOUNTS_FOR_PARENT, out.accounts().len())?;
        let accounts = out.accounts().iter().filter_map(Account::of).collect();
        Ok((accounts, out.next_token().map(str::to_string)))
    }

    /// One page of `ListChildren` of type `ORGANIZATIONAL_UNIT`: the ids of the OUs directly
    /// under `parent`.
    pub async fn list_child_units(
        &self,
        parent: &str,
        token: Option<String>,
    ) -> Result<Page<String>, ApiError> {
        let req = self
            .client
            .list_children()
            .parent_id(parent)
            .child_type(ChildType::OrganizationalUnit)
            .max_results(PAGE_SIZE)
            .set_next_token(token);
        let out = send!(self, LIST_CHILDREN, req)?;
        self.check(LIST_CHILDREN, out.children().len())?;
        let units = out
            .children()
            .iter()
            .filter_map(|c| c.id())
            .map(str::to_string)
            .collect();
        Ok((units, out.next_token().map(str::to_string)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_active_by_state_then_status_and_need_a_12_digit_id() {
        let account = |id: &str| sdk::Account::builder().id(id).name("team");
        let of = |a: sdk::builders::AccountBuilder| Account::of(&a.build());
        let active = of(account("111111111111").state(sdk::AccountState::Active));
        assert_eq!(
            active,
            Some(Account {
                id: "111111111111".into(),
                name: "team".into(),
                active: true
            })
        );
        // The newer `State` wins over the older `Status`.
        let suspended = account("111111111111")
            .state(sdk::AccountState::Suspended)
            .status(sdk::AccountStatus::Active);
        assert_eq!(of(suspended).map(|a| a.active), Some(false));
        let older = account("111111111111").status(sdk::AccountStatus::Active);
        assert_eq!(of(older).map(|a| a.active), Some(true));
        assert_eq!(of(account("111111111111")).map(|a| a.active), Some(false));
        assert_eq!(of(account("1111")), None);
        assert_eq!(of(account("11111111111x")), None);
        assert_eq!(of(sdk::Account::builder()), None);
        let long = sdk::Account::builder()
            .id("111111111111")
            .name("n".repeat(1000));
        assert_eq!(
            of(long).map(|a| a.name.chars().count()),
            Some(MAX_ACCOUNT_NAME_CHARS)
        );
    }
}
