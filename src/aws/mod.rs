//! AWS access: SDK clients per (region, role, endpoint), the four read operations and organization
//! discovery's Organizations calls, as plain Rust types.
//!
//! This is the only module that imports SDK types. Every HTTP attempt (retries included) is counted in
//! [`ApiCounters`] by an interceptor, and every failure is mapped to the `error` label value of
//! `workspacesweb_api_request_errors_total` in one place (`interceptors.rs`), as an [`ErrorLabel`].
//!
//! Every call (`ListSessions`, `GetSession`, `GetPortal`, `ListPortals`) first waits for a slot of
//! the [`TokenBucket`] of its region and account ([`LimitKey`]), `global.max_requests_per_second`
//! ([`Clients::set_rate`]), so many portals never stampede the API. Polls go first
//! ([`Priority`]): `ListSessions` at the priority of its [`ListQuery`] (the backfill's pages are
//! [`Priority::Background`]), `GetSession`, `ListPortals` and the Organizations calls as polls, `GetPortal` in the background. The SDK's own retries happen
//! inside `send()`, after the slot: they are paced by the SDK's exponential backoff and the
//! service's `Retry-After`, not by the bucket (an interceptor cannot
//! wait), so under throttling a call may use up to 3 attempts for one slot.
//!
//! | file | what |
//! |---|---|
//! | `types.rs` | the plain types the rest of the exporter sees: [`ApiError`], [`ApiCounters`], [`ListQuery`], [`SessionPage`], [`PortalInfo`], operation names |
//! | `client.rs` | [`Clients`] (one SDK client per [`ClientKey`]) and the calls: [`PortalApi`], [`RegionApi`] |
//! | `credentials.rs` | assumed-role credentials, cached per role until 5 minutes before they expire, each `AssumeRole` counted for the call that needed it |
//! | `organizations.rs` | organization discovery's calls: [`OrganizationsApi`] (`ListAccounts`, `ListAccountsForParent`, `ListChildren`) |
//! | `interceptors.rs` | counting attempts, `Retry-After`, guards against hostile responses, error mapping |
//! | `ratelimit.rs` | the client-side rate limit: [`TokenBucket`] per [`LimitKey`] |
//! | [`arn`] | ARN fields, and the portal id, region and account in them |
//! | [`error_label`] | the `error` label: one type, a bounded set of values |
//! | [`error_text`] | an error's message as the landing page may show it: one line, bounded, no credentials |
//! | [`partition`] | the partition of a region, and where its Organizations endpoint is |
//! | [`pagination`] | the page guard every listing uses (repeated token, `max_pages`), and the bounds of one page (`nextToken` length, items against `maxResults`) |

pub mod arn;
mod client;
mod credentials;
pub mod error_label;
pub mod error_text;
mod interceptors;
mod organizations;
pub mod pagination;
pub mod partition;
mod ratelimit;
mod types;

pub use arn::{account_of_arn, portal_id_of_arn, region_of_arn};
pub use client::{BaseRegion, Clients, PortalApi, RegionApi};
pub use credentials::{ASSUME_ROLE, REFRESH_BEFORE_EXPIRY};
pub use error_label::ErrorLabel;
pub use interceptors::{MAX_RETRY_AFTER, retry_after};
pub use organizations::{Account, MAX_ACCOUNT_NAME_CHARS, OrganizationsApi, Page, is_account_id};
pub use ratelimit::{LimitKey, TokenBucket};
pub use types::{
    ApiCounters, ApiError, ClientKey, GET_PORTAL, GET_SESSION, LIST_ACCOUNTS,
    LIST_ACCOUNTS_FOR_PARENT, LIST_CHILDREN, LIST_PORTALS, LIST_SESSIONS, ListQuery,
    MAX_RESPONSE_BYTES, MAX_SESSION_ID_BYTES, MAX_USERNAME_CHARS, PortalInfo, Priority,
    SessionPage, SortOrder,
};
