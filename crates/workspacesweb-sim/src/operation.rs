//! Operation names, as used by [`Simulator::request_count`](crate::Simulator::request_count) and
//! the exporter's `operation` label.

/// `GET /portals/{portalId}/sessions`.
pub const LIST_SESSIONS: &str = "ListSessions";
/// `GET /portals/{portalId}/sessions/{sessionId}`.
pub const GET_SESSION: &str = "GetSession";
/// `GET /portals`.
pub const LIST_PORTALS: &str = "ListPortals";
/// `GET /portals/{portalArn+}`.
pub const GET_PORTAL: &str = "GetPortal";
/// `DELETE /portals/{portalId}/sessions/{sessionId}`.
pub const EXPIRE_SESSION: &str = "ExpireSession";
/// Any request that matches no operation (answered 404 or 405).
pub const UNKNOWN: &str = "Unknown";
/// STS `AssumeRole` (`POST /`, awsQuery), counted under portal id `""`.
pub const ASSUME_ROLE: &str = "AssumeRole";
/// Organizations `ListAccounts` (awsJson1.1), counted under portal id `""`.
pub const LIST_ACCOUNTS: &str = "ListAccounts";
/// Organizations `ListAccountsForParent`.
pub const LIST_ACCOUNTS_FOR_PARENT: &str = "ListAccountsForParent";
/// Organizations `ListChildren`.
pub const LIST_CHILDREN: &str = "ListChildren";
/// Organizations `ListOrganizationalUnitsForParent`.
pub const LIST_ORGANIZATIONAL_UNITS_FOR_PARENT: &str = "ListOrganizationalUnitsForParent";
/// Organizations `ListRoots`.
pub const LIST_ROOTS: &str = "ListRoots";
/// Organizations `DescribeOrganization`.
pub const DESCRIBE_ORGANIZATION: &str = "DescribeOrganization";
/// Organizations `DescribeAccount`.
pub const DESCRIBE_ACCOUNT: &str = "DescribeAccount";
