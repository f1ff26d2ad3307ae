//! The answers of Organizations' read operations, computed from the organization and paginated
//! as AWS documents: `MaxResults` 1..=20 (absent: 20), an opaque `NextToken` (at most 100,000
//! characters), and a token only when more items follow.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::error::OrgError;
use crate::api::json::{json_str, json_time};
use crate::operation;
use crate::organization::{AccountSpec, OrgSpec};
use crate::rng::fnv;

/// The most items a page holds (`MaxResults` is at most 20, its default when absent).
pub(crate) const MAX_PAGE: usize = 20;

/// The answer body of a read `operation` with JSON `input`.
pub(crate) fn answer(org: &OrgSpec, op: &str, input: &Value) -> Result<String, OrgError> {
    match op {
        operation::DESCRIBE_ORGANIZATION => Ok(describe_organization(org)),
        operation::DESCRIBE_ACCOUNT => describe_account(org, input),
        operation::LIST_ROOTS => {
            let root = format!(
                "{{\"Id\":{},\"Arn\":{},\"Name\":\"Root\",\"PolicyTypes\":[]}}",
                json_str(&org.root_id),
                json_str(&org.member_arn("root", &org.root_id))
            );
            let page = page_input(input, fnv(op))?;
            Ok(listing(
                "Roots",
                paginate(vec![(org.root_id.clone(), root)], &page),
            ))
        }
        operation::LIST_ACCOUNTS => Ok(listing(
            "Accounts",
            paginate(accounts(org, None), &page_input(input, fnv(op))?),
        )),
        operation::LIST_ACCOUNTS_FOR_PARENT => {
            let parent = parent_id(org, input)?;
            let page = page_input(input, fnv(&format!("{op}\u{0}{parent}")))?;
            Ok(listing(
                "Accounts",
                paginate(accounts(org, Some(parent)), &page),
            ))
        }
        operation::LIST_ORGANIZATIONAL_UNITS_FOR_PARENT => {
            let parent = parent_id(org, input)?;
            let page = page_input(input, fnv(&format!("{op}\u{0}{parent}")))?;
            Ok(listing(
                "OrganizationalUnits",
                paginate(units(org, parent), &page),
            ))
        }
        operation::LIST_CHILDREN => list_children(org, input),
        other => Err(OrgError::new(
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

/// `ListChildren`: the accounts or OUs directly under `ParentId`, as `{"Id","Type"}`.
fn list_children(org: &OrgSpec, input: &Value) -> Result<String, OrgError> {
    let parent = parent_id(org, input)?;
    let kind = input.get("ChildType").and_then(Value::as_str);
    let ids: Vec<String> = match kind {
        Some("ACCOUNT") => accounts_under(org, Some(parent))
            .map(|a| a.id.clone())
            .collect(),
        Some("ORGANIZATIONAL_UNIT") => org
            .units
            .iter()
            .filter(|u| u.parent_id == parent)
            .map(|u| u.id.clone())
            .collect(),
        None => {
            return Err(OrgError::invalid_input(
                "INPUT_REQUIRED",
                "You must specify a value for ChildType.",
            ));
        }
        Some(other) => {
            return Err(OrgError::invalid_input(
                "INVALID_ENUM",
                format!(
                    "Value '{other}' at 'childType' failed to satisfy constraint: Member must satisfy enum value set: [ACCOUNT, ORGANIZATIONAL_UNIT]"
                ),
            ));
        }
    };
    let kind = kind.unwrap_or_default();
    let mut items: Vec<(String, String)> = ids
        .into_iter()
        .map(|id| {
            let json = format!("{{\"Id\":{},\"Type\":{}}}", json_str(&id), json_str(kind));
            (id, json)
        })
        .collect();
    items.sort();
    let page = page_input(input, fnv(&format!("ListChildren\u{0}{parent}\u{0}{kind}")))?;
    Ok(listing("Children", paginate(items, &page)))
}

/// The accounts directly under `parent` (every account with `None`).
fn accounts_under<'a>(
    org: &'a OrgSpec,
    parent: Option<&'a str>,
) -> impl Iterator<Item = &'a AccountSpec> + 'a {
    org.accounts
        .iter()
        .filter(move |a| parent.is_none_or(|p| org.parent_of(a) == p))
}

/// The `Account` objects under `parent` (all with `None`), by id.
fn accounts(org: &OrgSpec, parent: Option<&str>) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = accounts_under(org, parent)
        .map(|a| (a.id.clone(), account_json(org, a)))
        .collect();
    items.sort();
    items
}

/// The `OrganizationalUnit` objects directly under `parent`, by id.
fn units(org: &OrgSpec, parent: &str) -> Vec<(String, String)> {
    let mut items: Vec<(String, String)> = org
        .units
        .iter()
        .filter(|u| u.parent_id == parent)
        .map(|u| {
            let json = format!(
                "{{\"Id\":{},\"Arn\":{},\"Name\":{}}}",
                json_str(&u.id),
                json_str(&org.member_arn("ou", &u.id)),
                json_str(&u.name)
            );
            (u.id.clone(), json)
        })
        .collect();
    items.sort();
    items
}

/// An `Account` object, with both `Status` and the newer `State`.
fn account_json(org: &OrgSpec, a: &AccountSpec) -> String {
    let joined = if a.id == org.management_account {
        "INVITED"
    } else {
        "CREATED"
    };
    format!(
        "{{\"Id\":{},\"Arn\":{},\"Email\":{},\"Name\":{},\"Status\":\"{}\",\"State\":\"{}\",\"JoinedMethod\":\"{joined}\",\"JoinedTimestamp\":{}}}",
        json_str(&a.id),
        json_str(&org.member_arn("account", &a.id)),
        json_str(&a.email),
        json_str(&a.name),
        a.state.status_str(),
        a.state.as_str(),
        json_time(a.joined_ms)
    )
}

fn describe_organization(org: &OrgSpec) -> String {
    let email = org
        .account(&org.management_account)
        .map_or_else(|| "management@example.com".to_string(), |a| a.email.clone());
    format!(
        "{{\"Organization\":{{\"Id\":{},\"Arn\":{},\"FeatureSet\":\"ALL\",\"MasterAccountArn\":{},\"MasterAccountId\":{},\"MasterAccountEmail\":{},\"AvailablePolicyTypes\":[{{\"Type\":\"SERVICE_CONTROL_POLICY\",\"Status\":\"ENABLED\"}}]}}}}",
        json_str(&org.id),
        json_str(&org.arn()),
        json_str(&org.member_arn("account", &org.management_account)),
        json_str(&org.management_account),
        json_str(&email)
    )
}

fn describe_account(org: &OrgSpec, input: &Value) -> Result<String, OrgError> {
    let id = input
        .get("AccountId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            OrgError::invalid_input("INPUT_REQUIRED", "You must specify a value for AccountId.")
        })?;
    match org.account(id) {
        Some(a) => Ok(format!("{{\"Account\":{}}}", account_json(org, a))),
        None => Err(OrgError::new(
            "AccountNotFoundException",
            "You specified an account that doesn't exist.",
        )),
    }
}

/// `ParentId`: the root or an OU of the organization.
fn parent_id<'a>(org: &OrgSpec, input: &'a Value) -> Result<&'a str, OrgError> {
    let parent = input
        .get("ParentId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            OrgError::invalid_input("INPUT_REQUIRED", "You must specify a value for ParentId.")
        })?;
    if org.is_parent(parent) {
        Ok(parent)
    } else {
        Err(OrgError::new(
            "ParentNotFoundException",
            "We can't find a root or OU with the ParentId that you specified.",
        ))
    }
}

/// A validated page request: its size, and the id of the last item of the previous page.
#[derive(Debug)]
struct PageInput {
    max: usize,
    after: Option<String>,
    fingerprint: u64,
}

/// `MaxResults` (1..=20, absent: 20) and `NextToken` of a listing whose request `fingerprint` is this.
fn page_input(input: &Value, fingerprint: u64) -> Result<PageInput, OrgError> {
    let max = match input.get("MaxResults") {
        None | Some(Value::Null) => MAX_PAGE,
        Some(v) => match v.as_i64() {
            Some(n) if n < 1 => {
                return Err(OrgError::invalid_input(
                    "MIN_VALUE_EXCEEDED",
                    "You provided a value that is less than the minimum allowed value (1) for MaxResults.",
                ));
            }
            Some(n) if n > MAX_PAGE as i64 => {
                return Err(OrgError::invalid_input(
                    "MAX_VALUE_EXCEEDED",
                    "You provided a value that exceeds the maximum allowed value (20) for MaxResults.",
                ));
            }
            Some(n) => n as usize,
            None => {
                return Err(OrgError::new(
                    "SerializationException",
                    "MaxResults is not an integer",
                ));
            }
        },
    };
    let after = match input.get("NextToken").and_then(Value::as_str) {
        None => None,
        Some(token) => Some(decode_token(token, fingerprint)?),
    };
    Ok(PageInput {
        max,
        after,
        fingerprint,
    })
}

fn encode_token(fingerprint: u64, last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("org1|{fingerprint:016x}|{last_id}"))
}

/// The id after which a page starts, from a `NextToken` of the same request.
fn decode_token(token: &str, fingerprint: u64) -> Result<String, OrgError> {
    let invalid = || {
        OrgError::invalid_input(
            "INVALID_NEXT_TOKEN",
            "The NextToken value is not valid for this request.",
        )
    };
    if token.len() > 100_000 {
        return Err(OrgError::invalid_input(
            "MAX_LENGTH_EXCEEDED",
            "You provided a NextToken longer than 100000 characters.",
        ));
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("org1"), Some(fp), Some(id)) if u64::from_str_radix(fp, 16) == Ok(fingerprint) => {
            Ok(id.to_string())
        }
        _ => Err(invalid()),
    }
}

/// One page of `items` (sorted by id) and the next token when more follow.
fn paginate(items: Vec<(String, String)>, page: &PageInput) -> (Vec<String>, Option<String>) {
    let mut rest = items
        .into_iter()
        .filter(|(id, _)| page.after.as_ref().is_none_or(|a| id > a));
    let taken: Vec<(String, String)> = rest.by_ref().take(page.max).collect();
    let next = if rest.next().is_some() {
        taken
            .last()
            .map(|(id, _)| encode_token(page.fingerprint, id))
    } else {
        None
    };
    (taken.into_iter().map(|(_, json)| json).collect(), next)
}

/// `{"<member>":[...],"NextToken":...}`.
fn listing(member: &str, (items, next): (Vec<String>, Option<String>)) -> String {
    let mut body = format!("{{{}:[{}]", json_str(member), items.join(","));
    if let Some(t) = next {
        body.push_str(",\"NextToken\":");
        body.push_str(&json_str(&t));
    }
    body.push('}');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_belong_to_their_request() {
        let t = encode_token(7, "111111111111");
        assert_eq!(decode_token(&t, 7).ok(), Some("111111111111".to_string()));
        assert!(decode_token(&t, 8).is_err());
        assert!(decode_token("not a token", 7).is_err());
    }

    #[test]
    fn max_results_is_one_to_twenty() {
        let ok = |v: Value| page_input(&v, 1).map(|p| p.max).ok();
        assert_eq!(ok(serde_json::json!({})), Some(20));
        assert_eq!(ok(serde_json::json!({"MaxResults": 5})), Some(5));
        assert_eq!(ok(serde_json::json!({"MaxResults": 21})), None);
        assert_eq!(ok(serde_json::json!({"MaxResults": 0})), None);
    }
}
