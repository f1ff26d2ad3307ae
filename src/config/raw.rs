//! The config file as written: serde structs that mirror the YAML exactly.
//! Syntax of single values is checked here (see [`super::values`]); ranges
//! and cross-field rules are checked in [`super::validate`].

use serde::Deserialize;

use super::UsernameMode;
use super::values::{
    AccountId, Dur, EndpointUrl, EnvVarName, Labels, ParentId, PortalArn, PortalId, Region,
    RoleArn, RoleName,
};

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with global, per_user, portals, discovery, sharding, storage"
)]
pub(crate) struct Config {
    #[serde(default)]
    pub(crate) global: Option<Global>,
    #[serde(default)]
    pub(crate) per_user: Option<PerUser>,
    #[serde(default)]
    pub(crate) portals: Option<Vec<Portal>>,
    #[serde(default)]
    pub(crate) discovery: Option<Vec<Discovery>>,
    #[serde(default)]
    pub(crate) sharding: Option<Sharding>,
    #[serde(default)]
    pub(crate) storage: Option<Storage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of storage settings")]
pub(crate) struct Storage {
    pub(crate) max_age: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of global settings")]
pub(crate) struct Global {
    pub(crate) region: Option<Region>,
    pub(crate) interval: Option<Dur>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) page_size: Option<u32>,
    pub(crate) concurrency: Option<usize>,
    #[serde(default)]
    pub(crate) labels: Labels,
    pub(crate) duration_buckets: Option<Vec<f64>>,
    pub(crate) native_histogram_schema: Option<i64>,
    pub(crate) max_pages: Option<u32>,
    pub(crate) max_requests_per_second: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of per-user settings")]
pub(crate) struct PerUser {
    pub(crate) enabled: Option<bool>,
    pub(crate) username: Option<UsernameMode>,
    pub(crate) hash_salt: Option<String>,
    pub(crate) max_users: Option<usize>,
    pub(crate) idle_ttl: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a portal: a mapping with id or arn")]
pub(crate) struct Portal {
    pub(crate) id: Option<PortalId>,
    pub(crate) arn: Option<PortalArn>,
    pub(crate) region: Option<Region>,
    pub(crate) role_arn: Option<RoleArn>,
    pub(crate) external_id: Option<String>,
    pub(crate) endpoint_url: Option<EndpointUrl>,
    pub(crate) interval: Option<Dur>,
    #[serde(default)]
    pub(crate) labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a discovery entry: a mapping with regions"
)]
pub(crate) struct Discovery {
    pub(crate) organization: Option<Organization>,
    pub(crate) regions: Vec<Region>,
    pub(crate) role_arn: Option<RoleArn>,
    pub(crate) external_id: Option<String>,
    pub(crate) endpoint_url: Option<EndpointUrl>,
    pub(crate) refresh: Option<Dur>,
    #[serde(default)]
    pub(crate) labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "organization settings: a mapping with role_name"
)]
pub(crate) struct Organization {
    pub(crate) role_name: RoleName,
    pub(crate) external_id: Option<String>,
    pub(crate) role_arn: Option<RoleArn>,
    pub(crate) ous: Option<Vec<ParentId>>,
    pub(crate) exclude_accounts: Option<Vec<AccountId>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping of sharding settings")]
pub(crate) struct Sharding {
    pub(crate) total: Option<u32>,
    pub(crate) index: Option<u32>,
    pub(crate) index_from_env: Option<EnvVarName>,
}
