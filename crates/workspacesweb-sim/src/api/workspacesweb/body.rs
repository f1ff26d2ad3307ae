//! The bodies of WorkSpaces Web answers: session and portal records, and broken bodies.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::api::json::{json_str, json_time};
use crate::config::PortalInfo;
use crate::faults::BodyFault;
use crate::model::Filter;
use crate::portals::RawRecord;
use crate::record::SimSession;
use crate::rng::{Rng, fnv};

/// A session record; `with_ips` adds `clientIpAddresses` (as `GetSession` does).
pub(crate) fn session_json(s: &SimSession, portal_arn: &str, with_ips: bool) -> String {
    let mut out = format!(
        "{{\"portalArn\":{},\"sessionId\":{}",
        json_str(portal_arn),
        json_str(&s.id)
    );
    if let Some(u) = &s.username {
        let _ = write!(out, ",\"username\":{}", json_str(u));
    }
    let _ = write!(
        out,
        ",\"status\":{},\"startTime\":{}",
        json_str(s.status().as_str()),
        json_time(s.start_ms)
    );
    if let Some(e) = s.end_ms {
        let _ = write!(out, ",\"endTime\":{}", json_time(e));
    }
    if with_ips {
        let h = fnv(&s.id);
        let _ = write!(
            out,
            ",\"clientIpAddresses\":[\"198.51.100.{}\"]",
            1 + h % 254
        );
    }
    out.push('}');
    out
}

/// A portal record.
pub(crate) fn portal_json(p: &PortalInfo) -> String {
    let browser_settings = Rng::new(fnv(&p.id)).uuid();
    format!(
        "{{\"portalArn\":{},\"portalStatus\":\"Active\",\"displayName\":{},\"maxConcurrentSessions\":{},\
         \"browserType\":\"Chrome\",\"instanceType\":{},\"rendererType\":\"AppStream\",\
         \"authenticationType\":\"Standard\",\"portalEndpoint\":{},\"creationDate\":{},\
         \"browserSettingsArn\":{}}}",
        json_str(&p.arn),
        json_str(&p.display_name),
        p.max_concurrent_sessions,
        json_str(&p.instance_type),
        json_str(&format!(
            "{}.workspaces-web.com",
            p.id.replace('-', "").get(..20).unwrap_or(&p.id)
        )),
        json_time(p.creation_ms),
        json_str(&format!(
            "arn:aws:workspaces-web:{}:{}:browserSettings/{}",
            p.region, p.account, browser_settings
        )),
    )
}

/// The body actually sent for a successful answer under `fault`.
pub(crate) fn apply_body_fault(body: Bytes, fault: Option<&BodyFault>) -> Bytes {
    match fault {
        None => body,
        Some(BodyFault::Replace(b)) => b.clone(),
        Some(BodyFault::PadTo(len)) => {
            // `{...}` -> `{...,"padding":"xxxx"}`; the member adds 14 bytes besides its value.
            let extra = len.saturating_sub(body.len());
            if extra == 0 || body.last() != Some(&b'}') {
                return body;
            }
            let fill = extra.saturating_sub(14).max(1);
            let mut out = Vec::with_capacity(body.len() + 14 + fill);
            out.extend_from_slice(&body[..body.len() - 1]);
            out.extend_from_slice(b",\"padding\":\"");
            out.resize(out.len() + fill, b'x');
            out.extend_from_slice(b"\"}");
            out.into()
        }
    }
}

/// Whether a raw record passes the filters (compared as strings; a missing field never matches a filter).
pub(crate) fn raw_matches(record: &RawRecord, f: &Filter) -> bool {
    let Some(record) = &record.fields else {
        return true;
    };
    let field = |name: &str| record.get(name).and_then(serde_json::Value::as_str);
    f.status
        .as_ref()
        .is_none_or(|s| field("status") == Some(s.as_str()))
        && f.username
            .as_deref()
            .is_none_or(|u| field("username") == Some(u))
        && f.session_id
            .as_deref()
            .is_none_or(|id| field("sessionId") == Some(id))
}
