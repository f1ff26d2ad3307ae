//! A fake STS (`AssumeRole` over the awsQuery protocol) and the simulator's access model: who
//! signed each request, which role owns a portal, removed portals and per-operation errors.
//!
//! STS requests are `POST /` with a form body
//! (`Action=AssumeRole&Version=2011-06-15&RoleArn=...&RoleSessionName=...&ExternalId=...`), as the
//! SDKs send them when the STS endpoint is the simulator (the base `endpoint_url`). Answers use
//! the real XML shapes: `<AssumeRoleResponse>` with `Credentials` and `AssumedRoleUser`, and
//! `<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>...` with status 403.
//!
//! Roles must be allowed first ([`Simulator::allow_role`]), optionally with a required external
//! id. Each successful call issues a fresh `ASIA...` access key id; the simulator remembers which
//! role it belongs to, so a test can check that a portal's requests were signed with the key of
//! the right role ([`Simulator::signers`], [`Simulator::role_of_key`]). A portal owned by a role
//! ([`Simulator::set_portal_owner`]) answers `AccessDeniedException` to requests not signed with
//! that role's credentials, as a portal in another account would.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::model::{Rng, mix};
use super::{Inner, Simulator, lock};

/// Operation name of STS `AssumeRole` (as counted by [`Simulator::request_count`] under portal id `""`).
pub const ASSUME_ROLE: &str = "AssumeRole";

/// Largest STS request body read (real requests are well under 1 KiB).
const MAX_BODY: usize = 64 * 1024;

/// Default and bounds of `DurationSeconds` (STS: 900 .. 43200, default 3600).
const DEFAULT_DURATION_SECS: u64 = 3600;

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
pub(super) enum Denial {
    /// The portal was removed: `ResourceNotFoundException`.
    NotFound,
    /// Answer with this AWS error code.
    Error(String),
}

/// Mutable access state.
#[derive(Debug, Default)]
struct AccessState {
    /// Allowed roles and the external id each requires.
    roles: HashMap<String, Option<String>>,
    /// Issued access key id -> role ARN.
    issued: HashMap<String, String>,
    calls: Vec<AssumeRoleCall>,
    /// Portal id -> the only role whose credentials may call it.
    owners: HashMap<String, String>,
    removed: HashSet<String>,
    /// (portal id, operation) -> error code answered instead.
    op_errors: HashMap<(String, String), String>,
    /// Portal id -> access key id -> requests signed with it.
    signers: HashMap<String, BTreeMap<String, u64>>,
    /// Portal id -> SigV4 regions seen.
    regions: HashMap<String, BTreeSet<String>>,
    seq: u64,
}

/// The access model of one simulator (part of its shared state).
#[derive(Debug, Default)]
pub(super) struct Access {
    state: Mutex<AccessState>,
}

/// The access key id and region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/<region>/<service>/aws4_request, ...`.
pub(super) fn credential_scope(headers: &HeaderMap) -> Option<(String, Option<String>)> {
    let auth = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    let mut parts = scope.split('/');
    let key = parts.next().filter(|k| !k.is_empty())?.to_string();
    let region = parts.nth(1).map(str::to_string);
    Some((key, region))
}

/// Whether a request is for STS rather than WorkSpaces Web (awsQuery: `POST /`).
pub(super) fn is_sts(method: &Method, path: &str) -> bool {
    method == Method::POST && path == "/"
}

impl Access {
    /// Records who signed a WorkSpaces Web request for `portal_id` (`""` for `ListPortals`) and
    /// decides whether it is refused.
    pub(super) fn gate(
        &self,
        portal_id: &str,
        operation: &str,
        headers: &HeaderMap,
    ) -> Option<Denial> {
        let signer = credential_scope(headers);
        let mut st = lock(&self.state);
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
    pub(super) fn listed(&self, portal_id: &str) -> bool {
        !lock(&self.state).removed.contains(portal_id)
    }
}

/// An STS answer: XML with a request id.
fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// Escapes text for an XML element.
fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An awsQuery error: `<ErrorResponse><Error><Type>Sender</Type><Code>...`.
fn sts_error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let kind = if status.is_server_error() {
        "Receiver"
    } else {
        "Sender"
    };
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_text(code),
        xml_text(message)
    );
    xml_response(status, body, request_id)
}

/// `count` characters of `alphabet`, drawn from `rng`.
fn random_chars(rng: &mut Rng, alphabet: &[u8], count: usize) -> String {
    (0..count)
        .map(|_| char::from(alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]))
        .collect()
}

const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The account and name of a role ARN (`arn:aws:iam::<account>:role/<path/><name>`).
fn role_parts(role_arn: &str) -> Option<(&str, &str)> {
    let ["arn", _, "iam", "", account, resource] = crate::record::arn_fields(role_arn)? else {
        return None;
    };
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (account.len() == 12 && !name.is_empty()).then_some((account, name))
}

/// Serves one STS request (`POST /`).
pub(super) async fn serve(inner: &Inner, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let n = inner
        .request_seq
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request_id = Rng::new(mix(inner.seed, n)).uuid();
    let signer = credential_scope(req.headers());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return sts_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                "The request body is too large or could not be read.",
                &request_id,
            );
        }
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let action = form.get("Action").map(String::as_str).unwrap_or("");
    *lock(&inner.counters)
        .entry((String::new(), action.to_string()))
        .or_insert(0) += 1;
    if action != ASSUME_ROLE {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {action} for version 2011-06-15"),
            &request_id,
        );
    }
    if form.get("Version").map(String::as_str) != Some("2011-06-15") {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            "Could not find operation AssumeRole for the requested version",
            &request_id,
        );
    }
    let Some((caller, region)) = signer else {
        return sts_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
            &request_id,
        );
    };
    let (Some(role_arn), Some(session_name)) = (form.get("RoleArn"), form.get("RoleSessionName"))
    else {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The request must contain the parameters RoleArn and RoleSessionName",
            &request_id,
        );
    };
    let external_id = form.get("ExternalId").cloned();
    let duration = match form.get("DurationSeconds").map(|d| d.parse::<u64>()) {
        None => DEFAULT_DURATION_SECS,
        Some(Ok(d)) if (900..=43_200).contains(&d) => d,
        Some(_) => {
            return sts_error(
                StatusCode::BAD_REQUEST,
                "ValidationError",
                "1 validation error detected: Value at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200",
                &request_id,
            );
        }
    };
    let mut st = lock(&inner.access.state);
    let mut call = AssumeRoleCall {
        role_arn: role_arn.clone(),
        external_id: external_id.clone(),
        session_name: session_name.clone(),
        caller_key_id: Some(caller.clone()),
        region,
        issued_key_id: None,
    };
    let allowed = match (st.roles.get(role_arn), role_parts(role_arn)) {
        (Some(required), Some(parts)) => required
            .as_ref()
            .is_none_or(|r| external_id.as_ref() == Some(r))
            .then_some(parts),
        _ => None,
    };
    let Some((account, role_name)) = allowed else {
        st.calls.push(call);
        let caller_arn = match st.issued.get(&caller) {
            Some(role) => format!("{role} (assumed)"),
            None => format!("arn:aws:iam::123456789012:user/{caller}"),
        };
        return sts_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            &format!(
                "User: {caller_arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ),
            &request_id,
        );
    };
    st.seq += 1;
    let mut rng = Rng::new(mix(inner.seed ^ 0x5354_5300, st.seq));
    let key_id = format!("ASIA{}", random_chars(&mut rng, UPPER_DIGITS, 16));
    let secret = random_chars(&mut rng, BASE64, 40);
    let token = format!("IQoJb3JpZ2luX2VjE{}", random_chars(&mut rng, BASE64, 300));
    let role_id = format!("AROA{}", random_chars(&mut rng, UPPER_DIGITS, 17));
    st.issued.insert(key_id.clone(), role_arn.clone());
    call.issued_key_id = Some(key_id.clone());
    st.calls.push(call);
    drop(st);
    // Expiration is on the wall clock: SDKs compare it with their own time source.
    let expires = SystemTime::now() + Duration::from_secs(duration);
    let expiration = aws_smithy_types::DateTime::from(expires)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    let mut body = String::with_capacity(1024);
    let _ = write!(
        body,
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <AssumeRoleResult>\n    <SourceIdentity></SourceIdentity>\n    <AssumedRoleUser>\n      <AssumedRoleId>{role_id}:{session}</AssumedRoleId>\n      <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n    </AssumedRoleUser>\n    <Credentials>\n      <AccessKeyId>{key_id}</AccessKeyId>\n      <SecretAccessKey>{secret}</SecretAccessKey>\n      <SessionToken>{token}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    </Credentials>\n    <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</AssumeRoleResponse>\n",
        session = xml_text(session_name),
        role_name = xml_text(role_name),
    );
    xml_response(StatusCode::OK, body, &request_id)
}

/// The access model's controls and records.
impl Simulator {
    fn access(&self) -> std::sync::MutexGuard<'_, AccessState> {
        lock(&self.inner.access.state)
    }

    /// Lets STS `AssumeRole` succeed for `role_arn` (`arn:aws:iam::<12 digits>:role/<name>`),
    /// requiring `external_id` when given. Other roles are refused with `AccessDenied`.
    pub fn allow_role(&self, role_arn: &str, external_id: Option<&str>) {
        self.access()
            .roles
            .insert(role_arn.to_string(), external_id.map(str::to_string));
    }

    /// Makes a portal answer `AccessDeniedException` to every request not signed with credentials
    /// issued for `role_arn` (a portal in the role's account). `None` opens it to any signer.
    pub fn set_portal_owner(&self, portal_id: &str, role_arn: Option<&str>) {
        let mut st = self.access();
        match role_arn {
            Some(r) => st.owners.insert(portal_id.to_string(), r.to_string()),
            None => st.owners.remove(portal_id),
        };
    }

    /// Removes a portal (`true`) or brings it back (`false`): while removed, `ListPortals` no
    /// longer lists it and its operations answer `ResourceNotFoundException`.
    pub fn set_portal_removed(&self, portal_id: &str, removed: bool) {
        let mut st = self.access();
        if removed {
            st.removed.insert(portal_id.to_string());
        } else {
            st.removed.remove(portal_id);
        }
    }

    /// Answers every `operation` request of a portal (see [`super::operation`]) with the AWS error
    /// `code` (e.g. `AccessDeniedException` on `GetPortal` only); `None` clears it. Other
    /// operations of the portal are unaffected.
    pub fn set_operation_error(&self, portal_id: &str, operation: &str, code: Option<&str>) {
        let mut st = self.access();
        let key = (portal_id.to_string(), operation.to_string());
        match code {
            Some(c) => st.op_errors.insert(key, c.to_string()),
            None => st.op_errors.remove(&key),
        };
    }

    /// Every `AssumeRole` call received, in order.
    pub fn assume_role_calls(&self) -> Vec<AssumeRoleCall> {
        self.access().calls.clone()
    }

    /// The role an access key id was issued for by `AssumeRole`.
    pub fn role_of_key(&self, access_key_id: &str) -> Option<String> {
        self.access().issued.get(access_key_id).cloned()
    }

    /// Access key ids that signed requests for a portal (`""`: `ListPortals`), with their counts.
    pub fn signers(&self, portal_id: &str) -> BTreeMap<String, u64> {
        self.access()
            .signers
            .get(portal_id)
            .cloned()
            .unwrap_or_default()
    }

    /// SigV4 regions of the signed requests for a portal (`""`: `ListPortals`).
    pub fn signing_regions(&self, portal_id: &str) -> BTreeSet<String> {
        self.access()
            .regions
            .get(portal_id)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml_text("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
