//! The two listings of WorkSpaces Web, `ListSessions` and `ListPortals`: query validation,
//! page sizes, and next tokens (including the broken paginators of [`Faults`]).

use std::fmt::Write as _;

use bytes::Bytes;

use super::body::portal_json;
use super::error::WireError;
use super::route::param;
use super::token::{
    KIND_ASC, KIND_DESC, KIND_PORTALS, decode_token, encode_token, endless_cursor, pad_token,
};
use crate::api::json::json_str;
use crate::config::PortalInfo;
use crate::faults::Faults;
use crate::model::{Cursor, Filter, Order};
use crate::record::{SessionStatus, SimSession};
use crate::rng::fnv;
use crate::state::SimState;

fn valid_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `portalId`: 36 characters of `[a-zA-Z0-9-]`.
pub(crate) fn check_portal_id(id: &str) -> Result<(), WireError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(WireError::validation(
            "portalId",
            "Value at 'portalId' failed to satisfy constraint: Member must have length 36 and match pattern [a-zA-Z0-9\\-]+",
        ))
    }
}

/// `sessionId`: 36 characters of `[a-zA-Z0-9-]`.
pub(crate) fn check_session_id(id: &str) -> Result<(), WireError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(WireError::validation(
            "sessionId",
            "Value at 'sessionId' failed to satisfy constraint: Member must have length 36 and match pattern [a-zA-Z0-9\\-]+",
        ))
    }
}

/// `portalArn`: `arn:<partition>:<service>:<region>:<account>:<type>/<id>`, 20..2048 chars.
pub(crate) fn check_arn(arn: &str) -> Result<(), WireError> {
    let ok = (20..=2048).contains(&arn.len())
        && crate::record::arn_fields(arn).is_some_and(|[prefix, _, _, _, account, resource]| {
            prefix == "arn"
                && account.len() <= 12
                && resource
                    .split_once('/')
                    .is_some_and(|(_, id)| !id.is_empty())
        });
    if ok {
        Ok(())
    } else {
        Err(WireError::validation(
            "portalArn",
            "Value at 'portalArn' failed to satisfy constraint: Member must satisfy regular expression pattern",
        ))
    }
}

/// `maxResults`: an integer >= 1, capped to the page maximum; under the `overfull_factor`
/// fault, that many times the request's `maxResults` (or the default page size) instead.
fn page_size(
    state: &SimState,
    params: &[(String, String)],
    faults: &Faults,
) -> Result<usize, WireError> {
    let requested = match param(params, "maxResults") {
        None => state.default_page_size,
        Some(raw) => match raw.trim().parse::<i32>() {
            Ok(n) if n >= 1 => n as usize,
            Ok(_) => {
                return Err(WireError::validation(
                    "maxResults",
                    format!(
                        "Value '{raw}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"
                    ),
                ));
            }
            Err(_) => {
                return Err(WireError::validation(
                    "maxResults",
                    format!("Value '{raw}' at 'maxResults' could not be parsed as an integer"),
                ));
            }
        },
    };
    Ok(match faults.overfull_factor {
        Some(factor) if factor > 1 => requested.saturating_mul(factor),
        _ => requested.min(state.max_page_size),
    })
}

/// The next token as sent under the `next_token_len` fault: exactly that long, and present even
/// on the last page (then leading to an empty page past the end, built by `past_end`).
fn sized_token(
    next: Option<String>,
    faults: &Faults,
    past_end: impl FnOnce() -> String,
) -> Option<String> {
    match faults.next_token_len {
        Some(len) => Some(pad_token(next.unwrap_or_else(past_end), len)),
        None => next,
    }
}

/// One page of `ListSessions`: the model's sessions, the next cursor, raw records (bytes).
pub(crate) type Page = (Vec<SimSession>, Option<Cursor>, Vec<Bytes>);

/// The same page with the next token encoded.
pub(crate) type ListedPage = (Vec<SimSession>, Option<String>, Vec<Bytes>);

/// A validated `ListSessions` query.
struct SessionQuery<'a> {
    limit: usize,
    order: Order,
    filter: Filter,
    kind: &'static str,
    fingerprint: u64,
    cursor: Option<Cursor>,
    raw_token: Option<&'a str>,
}

/// `sortBy`: absent is newest first.
fn sort_order(params: &[(String, String)]) -> Result<Order, WireError> {
    match param(params, "sortBy") {
        None | Some("StartTimeDescending") => Ok(Order::Descending),
        Some("StartTimeAscending") => Ok(Order::Ascending),
        Some(other) => Err(WireError::validation(
            "sortBy",
            format!(
                "Value '{other}' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set: [StartTimeAscending, StartTimeDescending]"
            ),
        )),
    }
}

/// The filters of `ListSessions`: `status`, `username` (<= 256 characters), `sessionId`.
fn session_filter(params: &[(String, String)]) -> Result<Filter, WireError> {
    let status = match param(params, "status") {
        None => None,
        Some(value) => Some(SessionStatus::from_wire(value).ok_or_else(|| {
            WireError::validation(
                "status",
                format!(
                    "Value '{value}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Terminated]"
                ),
            )
        })?),
    };
    let username = param(params, "username").map(str::to_string);
    if username.as_ref().is_some_and(|u| u.chars().count() > 256) {
        return Err(WireError::validation(
            "username",
            "Value at 'username' failed to satisfy constraint: Member must have length less than or equal to 256",
        ));
    }
    let session_id = param(params, "sessionId").map(str::to_string);
    if let Some(id) = &session_id {
        check_session_id(id)?;
    }
    Ok(Filter {
        status,
        username,
        session_id,
    })
}

/// Validates the `ListSessions` query of `portal_id`, in the order the service checks it.
fn session_query<'a>(
    state: &SimState,
    portal_id: &str,
    params: &'a [(String, String)],
    faults: &Faults,
) -> Result<SessionQuery<'a>, WireError> {
    check_portal_id(portal_id)?;
    let limit = page_size(state, params, faults)?;
    let order = sort_order(params)?;
    let filter = session_filter(params)?;
    let kind = if order == Order::Ascending {
        KIND_ASC
    } else {
        KIND_DESC
    };
    let fingerprint = fnv(&format!(
        "{portal_id}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
        filter.status.as_ref().map(SessionStatus::as_str),
        filter.username,
        filter.session_id
    ));
    let raw_token = param(params, "nextToken");
    let cursor = decode_token(raw_token, kind, fingerprint)?;
    Ok(SessionQuery {
        limit,
        order,
        filter,
        kind,
        fingerprint,
        cursor,
        raw_token,
    })
}

/// The next token of a `ListSessions` page under `faults`.
fn session_next_token(
    q: &SessionQuery<'_>,
    faults: &Faults,
    page: &[SimSession],
    next: Option<Cursor>,
) -> Option<String> {
    let next = if faults.endless_next_token && next.is_none() {
        let (start_ms, id) = endless_cursor(q.order, q.cursor.as_ref());
        Some(Cursor { start_ms, id })
    } else {
        next
    };
    let encode = |c: Cursor| encode_token(q.kind, q.fingerprint, c.start_ms, &c.id);
    match (faults.repeat_next_token, q.raw_token) {
        (true, Some(t)) => Some(t.to_string()),
        (true, None) => {
            let c = next
                .or_else(|| {
                    page.last().map(|s| Cursor {
                        start_ms: s.start_ms,
                        id: s.id.clone(),
                    })
                })
                .unwrap_or(Cursor {
                    start_ms: i64::MAX,
                    id: String::new(),
                });
            Some(encode(c))
        }
        (false, _) => next.map(encode),
    }
}

/// Parses the `ListSessions` query, runs `fetch`, and builds the next token.
pub(crate) fn list_sessions(
    state: &SimState,
    portal_id: &str,
    params: &[(String, String)],
    faults: &Faults,
    fetch: impl FnOnce(Order, &Filter, Option<&Cursor>, usize) -> Page,
) -> Result<ListedPage, WireError> {
    let q = session_query(state, portal_id, params, faults)?;
    let (page, next, raw) = fetch(q.order, &q.filter, q.cursor.as_ref(), q.limit);
    let next = session_next_token(&q, faults, &page, next);
    let next = sized_token(next, faults, || {
        let (start_ms, id) = endless_cursor(q.order, q.cursor.as_ref());
        encode_token(q.kind, q.fingerprint, start_ms, &id)
    });
    Ok((page, next, raw))
}

/// One page of `ListPortals` in `region` (all regions with `None`), of the portals of `account`
/// (all with `None`).
pub(crate) fn list_portals(
    state: &SimState,
    region: Option<&str>,
    account: Option<&str>,
    params: &[(String, String)],
    faults: &Faults,
) -> Result<String, WireError> {
    let limit = page_size(state, params, faults)?;
    let fingerprint = fnv(&format!(
        "{}\u{0}{}",
        region.unwrap_or(""),
        account.unwrap_or("")
    ));
    let raw_token = param(params, "nextToken");
    let cursor = decode_token(raw_token, KIND_PORTALS, fingerprint)?;
    let portals = state.portals.infos();
    let mut visible = portals
        .iter()
        .filter(|p| region.is_none_or(|r| r == p.region))
        .filter(|p| account.is_none_or(|a| a == p.account))
        .filter(|p| state.access.listed(&p.id))
        .filter(|p| {
            cursor
                .as_ref()
                .is_none_or(|c| p.id.as_str() > c.id.as_str())
        });
    let page: Vec<&PortalInfo> = visible.by_ref().take(limit).collect();
    let more = visible.next().is_some();
    let past_end = || {
        let (_, id) = endless_cursor(Order::Ascending, cursor.as_ref());
        encode_token(KIND_PORTALS, fingerprint, 0, &id)
    };
    let next = if faults.repeat_next_token {
        Some(raw_token.map(str::to_string).unwrap_or_else(|| {
            let last = page.last().map_or("~", |p| p.id.as_str());
            encode_token(KIND_PORTALS, fingerprint, 0, last)
        }))
    } else if more {
        page.last()
            .map(|p| encode_token(KIND_PORTALS, fingerprint, 0, &p.id))
    } else if faults.endless_next_token {
        Some(past_end())
    } else {
        None
    };
    let next = sized_token(next, faults, past_end);
    let mut body = String::from("{\"portals\":[");
    for (i, p) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&portal_json(p));
    }
    body.push(']');
    if let Some(t) = next {
        let _ = write!(body, ",\"nextToken\":{}", json_str(&t));
    }
    body.push('}');
    Ok(body)
}
