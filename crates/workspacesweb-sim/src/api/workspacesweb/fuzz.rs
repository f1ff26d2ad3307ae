//! The fuzz body of WorkSpaces Web's request parsing (the `wire_parse` fuzz target).

use bytes::Bytes;
use hyper::Method;
use hyper::header::{HeaderMap, HeaderValue};

use super::body::apply_body_fault;
use super::route::{param, query_params, route, signing_region};
use super::token::{
    ENDLESS, KIND_ASC, KIND_DESC, KIND_PORTALS, decode_token, encode_token, endless_cursor,
};
use crate::api::json::{json_str, json_time};
use crate::faults::BodyFault;
use crate::model::{Cursor, Order};
use crate::rng::fnv;

/// Fuzz body (the `wire_parse` fuzz target): routing, query parsing, pagination tokens, the
/// JSON writers and body padding on arbitrary input; panics on a broken invariant.
pub(crate) fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    for method in [Method::GET, Method::DELETE, Method::POST] {
        let r = route(&method, path);
        let _ = (r.operation(), r.portal_key());
    }
    let params = query_params(Some(query));
    for (i, (k, _)) in params.iter().enumerate() {
        assert!(
            !params[..i].iter().any(|(x, _)| x == k),
            "duplicate key {k}"
        );
    }
    let fp = fnv(path);
    for kind in [KIND_ASC, KIND_DESC, KIND_PORTALS] {
        // A token from the query: decoding never panics, and what decodes re-encodes the same.
        if let Ok(Some(c)) = decode_token(param(&params, "nextToken"), kind, fp) {
            let again = encode_token(kind, fp, c.start_ms, &c.id);
            assert_eq!(decode_token(Some(&again), kind, fp).ok().flatten(), Some(c));
        }
        // Any cursor round-trips while its token fits the 2048-character limit.
        let start = i64::from_le_bytes(std::array::from_fn(|i| data.get(i).copied().unwrap_or(0)));
        let token = encode_token(kind, fp, start, path);
        let decoded = decode_token(Some(&token), kind, fp);
        if token.len() <= 2048 {
            let cursor = Cursor {
                start_ms: start,
                id: path.to_string(),
            };
            assert_eq!(decoded.ok().flatten(), Some(cursor.clone()));
            let (_, id) = endless_cursor(Order::Ascending, Some(&cursor));
            assert!(id.starts_with(ENDLESS));
        } else {
            assert!(decoded.is_err());
        }
        assert!(decode_token(Some(&token), kind, fp ^ 1).is_err());
    }
    // The JSON writers produce JSON that reads back.
    let s: String = serde_json::from_str(&json_str(&text)).expect("json_str is valid JSON");
    assert_eq!(s, text);
    let ms = i64::from_le_bytes(std::array::from_fn(|i| {
        data.get(i + 8).copied().unwrap_or(0)
    }));
    let secs: f64 = serde_json::from_str(&json_time(ms)).expect("json_time is a JSON number");
    assert!(secs.is_finite());
    // Padding keeps a JSON object valid.
    if let Ok(obj) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let body = Bytes::from(serde_json::Value::Object(obj).to_string());
        let want = body.len() + usize::from(data.first().copied().unwrap_or(0));
        let padded = apply_body_fault(body.clone(), Some(&BodyFault::PadTo(want)));
        assert!(padded.len() >= body.len());
        serde_json::from_slice::<serde_json::Value>(&padded).expect("padded body is JSON");
    }
    if let Ok(v) = HeaderValue::from_bytes(data) {
        let mut h = HeaderMap::new();
        h.insert(hyper::header::AUTHORIZATION, v);
        let _ = signing_region(&h);
    }
}
