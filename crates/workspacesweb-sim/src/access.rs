//! The access model: which roles STS lets callers assume, the keys it issued, who signed each
//! request, which role owns a portal, removed portals and per-operation errors.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use hyper::header::HeaderMap;

use crate::locks::lock;
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

/// Why the access model refuses a WorkSpaces Web request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// The portal was removed: `ResourceNotFoundException`.
    NotFound,
    /// Answer with this AWS error code.
    Error(String),
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
}

/// Mutable access state.
#[derive(Debug, Default)]
pub(crate) struct AccessState {
    /// Allowed roles and the external id each requires.
    pub(crate) roles: HashMap<String, Option<String>>,
    /// Issued access key id -> role ARN.
    pub(crate) issued: HashMap<String, String>,
    /// Every `AssumeRole` call, in order.
    pub(crate) calls: Vec<AssumeRoleCall>,
    /// Portal id -> the only role whose credentials may call it.
    pub(crate) owners: HashMap<String, String>,
    /// Removed portals.
    pub(crate) removed: HashSet<String>,
    /// (portal id, operation) -> error code answered instead.
    pub(crate) op_errors: HashMap<(String, String), String>,
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

impl Access {
    /// The state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, AccessState> {
        lock(&self.state)
    }

    /// Records who signed a WorkSpaces Web request for `portal_id` (`""` for `ListPortals`) and
    /// decides whether it is refused.
    pub(crate) fn gate(
        &self,
        portal_id: &str,
        operation: &str,
        headers: &HeaderMap,
    ) -> Option<Denial> {
        let signer = credential_scope(headers);
        let mut st = self.state();
        if let Some((key, region)) = &signer {
            *st.signers
                .entry(portal_id.to_string())
                .or_default()
                .entry(key.clone())
                .or_default() += 1;
            if let Some(r) = region {
                st.regions
                    .entry(portal_id.to_string())
                    .or_default()
                    .insert(r.clone());
            }
        }
        if portal_id.is_empty() {
            return None;
        }
        if st.removed.contains(portal_id) {
            return Some(Denial::NotFound);
        }
        if let Some(owner) = st.owners.get(portal_id) {
            let role = signer.as_ref().and_then(|(k, _)| st.issued.get(k));
            if role != Some(owner) {
                return Some(Denial::Error("AccessDeniedException".into()));
            }
        }
        st.op_errors
            .get(&(portal_id.to_string(), operation.to_string()))
            .map(|code| Denial::Error(code.clone()))
    }

    /// Whether `ListPortals` still lists the portal.
    pub(crate) fn listed(&self, portal_id: &str) -> bool {
        !self.state().removed.contains(portal_id)
    }

    /// Decides an `AssumeRole` call and records it: fresh credentials for an allowed role (with
    /// the right external id), or `Err` with the caller's ARN for the refusal message.
    pub(crate) fn assume_role(
        &self,
        seed: u64,
        mut call: AssumeRoleCall,
    ) -> Result<Issued, String> {
        let mut st = self.state();
        let allowed = match (st.roles.get(&call.role_arn), role_parts(&call.role_arn)) {
            (Some(required), Some(_)) => required
                .as_ref()
                .is_none_or(|r| call.external_id.as_ref() == Some(r)),
            _ => false,
        };
        if !allowed {
            let caller = call.caller_key_id.clone().unwrap_or_default();
            st.calls.push(call);
            return Err(match st.issued.get(&caller) {
                Some(role) => format!("{role} (assumed)"),
                None => format!("arn:aws:iam::123456789012:user/{caller}"),
            });
        }
        st.seq += 1;
        let mut rng = Rng::new(mix(seed ^ 0x5354_5300, st.seq));
        let issued = Issued {
            key_id: format!("ASIA{}", rng.chars(UPPER_DIGITS, 16)),
            secret: rng.chars(BASE64, 40),
            token: format!("IQoJb3JpZ2luX2VjE{}", rng.chars(BASE64, 300)),
            role_id: format!("AROA{}", rng.chars(UPPER_DIGITS, 17)),
        };
        st.issued
            .insert(issued.key_id.clone(), call.role_arn.clone());
        call.issued_key_id = Some(issued.key_id.clone());
        st.calls.push(call);
        Ok(issued)
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
    }
}
