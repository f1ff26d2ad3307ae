//! The access model: the access keys the simulator knows (registered, or issued by its STS) and
//! the account each is bound to, their expiry, which roles STS lets callers assume, who signed
//! each request, which role owns a portal, removed portals, and per-operation errors.
//!
//! Identity comes from the SigV4 `Authorization` header's access key id (signatures are not
//! checked). A key the simulator knows is bound to an account; by default any other key is
//! accepted too, as a caller of no account in particular (it sees every portal), unless the
//! simulator is told to accept only the keys it knows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hyper::header::HeaderMap;

use crate::clock::Clock;
use crate::locks::lock;
use crate::record::UnixMillis;
use crate::rng::{Rng, mix};

/// One `AssumeRole` call received by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleCall {
    /// `RoleArn`.
    pub role_arn: String,
    /// `ExternalId`, when sent.
    pub external_id: Option<String>,
    /// `RoleSessionName`.
    pub session_name: String,
    /// Access key id that signed the call (the caller's base credentials).
    pub caller_key_id: Option<String>,
    /// SigV4 region of the call.
    pub region: Option<String>,
    /// The access key id issued, or `None` when the call was refused.
    pub issued_key_id: Option<String>,
}

/// A known caller: who holds a key the simulator registered or issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The access key id.
    pub(crate) key: String,
    /// `arn:aws:iam::<account>:user/<name>` or `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub(crate) principal_arn: String,
    /// The 12-digit account the key belongs to.
    pub(crate) account: String,
    /// The role the key was issued for, when issued by `AssumeRole`.
    pub(crate) role_arn: Option<String>,
}

/// Who signed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// No SigV4 signature (accepted unless only known keys are).
    Unsigned,
    /// A key the simulator does not know, accepted as a caller of any account.
    Anyone(String),
    /// A key bound to an account.
    Known(Identity),
}

impl Caller {
    /// The account the caller belongs to; `None`: any (an unknown key, or no signature).
    pub(crate) fn account(&self) -> Option<&str> {
        match self {
            Caller::Known(id) => Some(&id.account),
            _ => None,
        }
    }

    /// The principal named in `not authorized` messages; `account` stands in for a caller of no
    /// account in particular (`arn:aws:iam::<account>:user/<key>`).
    pub(crate) fn principal(&self, account: &str) -> String {
        match self {
            Caller::Known(id) => id.principal_arn.clone(),
            Caller::Anyone(key) => format!("arn:aws:iam::{account}:user/{key}"),
            Caller::Unsigned => "anonymous".to_string(),
        }
    }
}

/// Why the credentials of a request are refused before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No signature while only known keys are accepted.
    Missing,
    /// The key is not (or no longer) valid.
    Unrecognized,
    /// The key expired.
    Expired,
}

impl AuthError {
    /// The error code of the JSON protocols (WorkSpaces Web, Organizations).
    pub(crate) fn code(self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Unrecognized => "UnrecognizedClientException",
            AuthError::Expired => "ExpiredTokenException",
        }
    }

    /// The error code of STS (awsQuery).
    pub(crate) fn query_code(self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationToken",
            AuthError::Unrecognized => "InvalidClientTokenId",
            AuthError::Expired => "ExpiredToken",
        }
    }

    /// AWS's message (the common errors of AWS APIs).
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "Missing Authentication Token",
            AuthError::Unrecognized => "The security token included in the request is invalid.",
            AuthError::Expired => "The security token included in the request is expired",
        }
    }
}

/// Why the access model refuses a WorkSpaces Web request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// The portal was removed: `ResourceNotFoundException`.
    NotFound,
    /// Answer with this AWS error code, and this message when given (else the code's usual one).
    Error {
        /// The AWS error code.
        code: String,
        /// The message.
        message: Option<String>,
    },
}

/// The IAM message of an implicit deny, as AWS words it:
/// `User: <principal> is not authorized to perform: <action> on resource: <resource> because no
/// <policy>-based policy allows the <action> action`.
pub(crate) fn not_authorized(
    principal: &str,
    action: &str,
    resource: &str,
    policy: &str,
) -> String {
    format!(
        "User: {principal} is not authorized to perform: {action} on resource: {resource} because no {policy}-based policy allows the {action} action"
    )
}

/// Credentials issued by `AssumeRole`.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// `ASIA...`.
    pub(crate) key_id: String,
    /// 40 characters.
    pub(crate) secret: String,
    /// The session token.
    pub(crate) token: String,
    /// `AROA...`.
    pub(crate) role_id: String,
    /// Expiry on the credential clock.
    pub(crate) expires_ms: UnixMillis,
}

/// A key the simulator knows.
#[derive(Debug, Clone)]
struct KeyRecord {
    principal_arn: String,
    account: String,
    role_arn: Option<String>,
    /// Expiry on the credential clock; `None`: never.
    expires_ms: Option<UnixMillis>,
}

/// Mutable access state.
#[derive(Debug, Default)]
pub(crate) struct AccessState {
    /// Allowed roles and the external id each requires.
    pub(crate) roles: HashMap<String, Option<String>>,
    /// Known access key ids: registered or issued.
    keys: HashMap<String, KeyRecord>,
    /// Keys refused whatever they are.
    revoked: HashSet<String>,
    /// Only known keys are accepted.
    pub(crate) strict: bool,
    /// Lifetime of issued credentials, whatever `DurationSeconds` asks.
    pub(crate) lifetime: Option<Duration>,
    /// Times issued credentials; `None`: the system clock.
    pub(crate) credential_clock: Option<Clock>,
    /// Account -> the STS error code `AssumeRole` of any of its roles answers.
    pub(crate) assume_errors: HashMap<String, String>,
    /// Every `AssumeRole` call, in order.
    pub(crate) calls: Vec<AssumeRoleCall>,
    /// Portal id -> the only role whose credentials may call it.
    pub(crate) owners: HashMap<String, String>,
    /// Removed portals.
    pub(crate) removed: HashSet<String>,
    /// (portal id, operation) -> error code answered instead.
    pub(crate) op_errors: HashMap<(String, String), String>,
    /// (region, account or any) -> the error code `ListPortals` answers.
    pub(crate) list_portals_errors: HashMap<(String, Option<String>), String>,
    /// Portal id -> access key id -> requests signed with it.
    pub(crate) signers: HashMap<String, BTreeMap<String, u64>>,
    /// Portal id -> SigV4 regions seen.
    pub(crate) regions: HashMap<String, BTreeSet<String>>,
    /// Keys issued so far.
    seq: u64,
}

/// The access model of one simulator (part of its shared state).
#[derive(Debug, Default)]
pub(crate) struct Access {
    state: Mutex<AccessState>,
}

/// The access key id and region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/<region>/<service>/aws4_request, ...`.
pub(crate) fn credential_scope(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let key = parts.next().filter(|k| !k.is_empty())?.to_string();
    let region = parts.nth(1).map(str::to_string);
    Some((key, region))
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The account and name of a role ARN (`arn:aws:iam::<account>:role/<path/><name>`).
pub(crate) fn role_parts(role_arn: &str) -> Option<(&str, &str)> {
    let ["arn", _, "iam", "", account, resource] = crate::record::arn_fields(role_arn)? else {
        return None;
    };
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (account.len() == 12 && !name.is_empty()).then_some((account, name))
}

/// The account of a principal ARN (`arn:aws:iam::<account>:user/...`, `arn:aws:sts::<account>:...`).
pub(crate) fn principal_account(principal_arn: &str) -> Option<&str> {
    let ["arn", _, "iam" | "sts", "", account, _] = crate::record::arn_fields(principal_arn)?
    else {
        return None;
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

impl AccessState {
    /// Now on the credential clock.
    pub(crate) fn credential_now(&self) -> UnixMillis {
        self.credential_clock
            .as_ref()
            .map_or_else(crate::record::now_ms, Clock::now_ms)
    }

    /// Registers a key bound to `account`, never expiring.
    pub(crate) fn register(&mut self, key: &str, principal_arn: &str, account: &str) {
        self.revoked.remove(key);
        self.keys.insert(
            key.to_string(),
            KeyRecord {
                principal_arn: principal_arn.to_string(),
                account: account.to_string(),
                role_arn: None,
                expires_ms: None,
            },
        );
    }

    /// Refuses `key` from now on.
    pub(crate) fn revoke(&mut self, key: &str) {
        self.revoked.insert(key.to_string());
    }

    /// Makes a known key expired now; `false` if the key is unknown.
    pub(crate) fn expire(&mut self, key: &str) -> bool {
        let now = self.credential_now();
        match self.keys.get_mut(key) {
            Some(k) => {
                k.expires_ms = Some(now);
                true
            }
            None => false,
        }
    }

    /// The role a key was issued for.
    pub(crate) fn role_of(&self, key: &str) -> Option<String> {
        self.keys.get(key).and_then(|k| k.role_arn.clone())
    }

    /// The account a known key is bound to.
    pub(crate) fn account_of(&self, key: &str) -> Option<String> {
        self.keys.get(key).map(|k| k.account.clone())
    }

    /// When a known key expires (on the credential clock).
    pub(crate) fn expiry_of(&self, key: &str) -> Option<UnixMillis> {
        self.keys.get(key).and_then(|k| k.expires_ms)
    }

    /// Who signed with `key`, or why the key is refused.
    fn caller(&self, key: Option<&str>) -> Result<Caller, AuthError> {
        let Some(key) = key else {
            return if self.strict {
                Err(AuthError::Missing)
            } else {
                Ok(Caller::Unsigned)
            };
        };
        if self.revoked.contains(key) {
            return Err(AuthError::Unrecognized);
        }
        match self.keys.get(key) {
            Some(k) if k.expires_ms.is_some_and(|e| e <= self.credential_now()) => {
                Err(AuthError::Expired)
            }
            Some(k) => Ok(Caller::Known(Identity {
                key: key.to_string(),
                principal_arn: k.principal_arn.clone(),
                account: k.account.clone(),
                role_arn: k.role_arn.clone(),
            })),
            None if self.strict => Err(AuthError::Unrecognized),
            None => Ok(Caller::Anyone(key.to_string())),
        }
    }
}

impl Access {
    /// The state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, AccessState> {
        lock(&self.state)
    }

    /// Who signed a request (from its `Authorization` header), or why its credentials are refused.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let key = credential_scope(headers).map(|(k, _)| k);
        self.state().caller(key.as_deref())
    }

    /// Records who signed a WorkSpaces Web request for `portal_id` (`""` for `ListPortals`).
    pub(crate) fn record_signer(&self, portal_id: &str, headers: &HeaderMap) {
        let Some((key, region)) = credential_scope(headers) else {
            return;
        };
        let mut st = self.state();
        *st.signers
            .entry(portal_id.to_string())
            .or_default()
            .entry(key)
            .or_default() += 1;
        if let Some(r) = region {
            st.regions
                .entry(portal_id.to_string())
                .or_default()
                .insert(r);
        }
    }

    /// Whether a portal-scoped request is refused: a removed portal, a portal owned by another
    /// role, a portal of another account than the caller's, or an error set for the operation.
    pub(crate) fn gate(
        &self,
        caller: &Caller,
        portal: PortalRef<'_>,
        operation: &str,
    ) -> Option<Denial> {
        let st = self.state();
        if st.removed.contains(portal.id) {
            return Some(Denial::NotFound);
        }
        let action = format!("workspaces-web:{operation}");
        let account = portal.account.unwrap_or("123456789012");
        let resource = portal.arn.unwrap_or(portal.id);
        if let Some(owner) = st.owners.get(portal.id) {
            let role = match caller {
                Caller::Known(id) => id.role_arn.as_ref(),
                _ => None,
            };
            if role != Some(owner) {
                let message =
                    not_authorized(&caller.principal(account), &action, resource, "resource");
                return Some(access_denied(message));
            }
        }
        if let (Some(theirs), Some(mine)) = (portal.account, caller.account())
            && theirs != mine
        {
            let message = not_authorized(&caller.principal(account), &action, resource, "resource");
            return Some(access_denied(message));
        }
        let code = st
            .op_errors
            .get(&(portal.id.to_string(), operation.to_string()))?;
        let message = (code == "AccessDeniedException")
            .then(|| not_authorized(&caller.principal(account), &action, resource, "identity"));
        Some(Denial::Error {
            code: code.clone(),
            message,
        })
    }

    /// Whether `ListPortals` in `region` is refused for `caller` (an error set for the region,
    /// for every account or for the caller's).
    pub(crate) fn list_portals_denial(&self, caller: &Caller, region: &str) -> Option<Denial> {
        let st = self.state();
        let mine = caller.account().map(str::to_string);
        let code = mine
            .clone()
            .and_then(|a| st.list_portals_errors.get(&(region.to_string(), Some(a))))
            .or_else(|| st.list_portals_errors.get(&(region.to_string(), None)))?;
        let account = mine.unwrap_or_else(|| "123456789012".to_string());
        let message = (code == "AccessDeniedException").then(|| {
            not_authorized(
                &caller.principal(&account),
                "workspaces-web:ListPortals",
                &format!("arn:aws:workspaces-web:{region}:{account}:portal/*"),
                "identity",
            )
        });
        Some(Denial::Error {
            code: code.clone(),
            message,
        })
    }

    /// Whether `ListPortals` still lists the portal.
    pub(crate) fn listed(&self, portal_id: &str) -> bool {
        !self.state().removed.contains(portal_id)
    }

    /// Issues credentials for `call.role_arn` (bound to the role's account, expiring after the
    /// configured lifetime or `duration`) and records the call.
    pub(crate) fn issue(&self, seed: u64, mut call: AssumeRoleCall, duration: Duration) -> Issued {
        let mut st = self.state();
        st.seq += 1;
        let mut rng = Rng::new(mix(seed ^ 0x5354_5300, st.seq));
        let lifetime = st.lifetime.unwrap_or(duration);
        let expires_ms = st
            .credential_now()
            .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
        let issued = Issued {
            key_id: format!("ASIA{}", rng.chars(UPPER_DIGITS, 16)),
            secret: rng.chars(BASE64, 40),
            token: format!("IQoJb3JpZ2luX2VjE{}", rng.chars(BASE64, 300)),
            role_id: format!("AROA{}", rng.chars(UPPER_DIGITS, 17)),
            expires_ms,
        };
        let (account, role_name) = role_parts(&call.role_arn).unwrap_or_default();
        let record = KeyRecord {
            principal_arn: format!(
                "arn:aws:sts::{account}:assumed-role/{role_name}/{}",
                call.session_name
            ),
            account: account.to_string(),
            role_arn: Some(call.role_arn.clone()),
            expires_ms: Some(expires_ms),
        };
        st.keys.insert(issued.key_id.clone(), record);
        call.issued_key_id = Some(issued.key_id.clone());
        st.calls.push(call);
        issued
    }

    /// Records a refused `AssumeRole` call.
    pub(crate) fn refuse(&self, call: AssumeRoleCall) {
        self.state().calls.push(call);
    }
}

/// What the access model needs to know of a portal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PortalRef<'a> {
    /// The portal id of the request.
    pub(crate) id: &'a str,
    /// Its account, when the portal exists.
    pub(crate) account: Option<&'a str>,
    /// Its ARN, when the portal exists.
    pub(crate) arn: Option<&'a str>,
}

fn access_denied(message: String) -> Denial {
    Denial::Error {
        code: "AccessDeniedException".to_string(),
        message: Some(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn credential_scope_gives_key_and_region() {
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20261128/eu-west-1/workspaces-web/aws4_request, SignedHeaders=host, Signature=abc",
            ),
        );
        assert_eq!(
            credential_scope(&h),
            Some(("ASIAEXAMPLE".to_string(), Some("eu-west-1".to_string())))
        );
        assert_eq!(credential_scope(&HeaderMap::new()), None);
    }

    #[test]
    fn role_arns_are_split_into_account_and_name() {
        assert_eq!(
            role_parts("arn:aws:iam::123456789012:role/path/wsw"),
            Some(("123456789012", "wsw"))
        );
        assert_eq!(role_parts("arn:aws:iam::1234:role/wsw"), None);
        assert_eq!(role_parts("arn:aws:s3:::bucket"), None);
        assert_eq!(
            principal_account("arn:aws:iam::111111111111:user/ops"),
            Some("111111111111")
        );
        assert_eq!(principal_account("arn:aws:iam::11111:user/ops"), None);
    }

    #[test]
    fn keys_are_unknown_known_expired_or_revoked() {
        let mut st = AccessState {
            credential_clock: Some(Clock::manual(1_000)),
            ..AccessState::default()
        };
        assert_eq!(st.caller(Some("AKID")), Ok(Caller::Anyone("AKID".into())));
        assert_eq!(st.caller(None), Ok(Caller::Unsigned));
        st.register(
            "AKIAOPS",
            "arn:aws:iam::111111111111:user/ops",
            "111111111111",
        );
        assert_eq!(
            st.caller(Some("AKIAOPS"))
                .map(|c| c.account().map(str::to_string)),
            Ok(Some("111111111111".to_string()))
        );
        st.strict = true;
        assert_eq!(st.caller(Some("AKID")), Err(AuthError::Unrecognized));
        assert_eq!(st.caller(None), Err(AuthError::Missing));
        assert!(st.expire("AKIAOPS"));
        assert_eq!(st.caller(Some("AKIAOPS")), Err(AuthError::Expired));
        st.register(
            "AKIAOPS",
            "arn:aws:iam::111111111111:user/ops",
            "111111111111",
        );
        st.revoke("AKIAOPS");
        assert_eq!(st.caller(Some("AKIAOPS")), Err(AuthError::Unrecognized));
    }
}
