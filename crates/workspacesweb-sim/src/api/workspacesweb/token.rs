//! Pagination tokens of WorkSpaces Web listings: opaque URL-safe base64 of the sort key of the
//! last item, the listing's kind (order, or portals) and a fingerprint of its filters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::WireError;
use crate::model::{Cursor, Order};

/// Token kind of `ListSessions`, oldest first.
pub(crate) const KIND_ASC: &str = "a";
/// Token kind of `ListSessions`, newest first.
pub(crate) const KIND_DESC: &str = "d";
/// Token kind of `ListPortals`.
pub(crate) const KIND_PORTALS: &str = "p";

/// The token of a listing of `kind` and filter `fingerprint` after the item `(start_ms, id)`.
pub(crate) fn encode_token(kind: &str, fingerprint: u64, start_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{kind}|{fingerprint:016x}|{start_ms}|{id}"))
}

/// Validates and decodes `nextToken` for a request of this kind and fingerprint.
pub(crate) fn decode_token(
    raw: Option<&str>,
    kind: &str,
    fingerprint: u64,
) -> Result<Option<Cursor>, WireError> {
    let Some(raw) = raw else { return Ok(None) };
    let invalid = || WireError::validation("nextToken", "Invalid pagination token");
    if raw.is_empty() || raw.len() > 2048 || raw.chars().any(char::is_whitespace) {
        return Err(WireError::validation(
            "nextToken",
            "Value at 'nextToken' failed to satisfy constraint: Member must have length between 1 and 2048 and match pattern \\S+",
        ));
    }
    // A padded token (the `next_token_len` fault) carries its padding after a `.`.
    let encoded = raw.split('.').next().unwrap_or(raw);
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(5, '|');
    let (Some("v1"), Some(k), Some(fp), Some(start), Some(id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let fp = u64::from_str_radix(fp, 16).map_err(|_| invalid())?;
    let start_ms = start.parse::<i64>().map_err(|_| invalid())?;
    if k != kind || fp != fingerprint {
        return Err(WireError::validation(
            "nextToken",
            "The nextToken does not match the request parameters",
        ));
    }
    Ok(Some(Cursor {
        start_ms,
        id: id.to_string(),
    }))
}

/// `token` made exactly `len` characters long: padded after a `.` (decoding ignores the
/// padding), or cut (which makes it invalid).
pub(crate) fn pad_token(mut token: String, len: usize) -> String {
    if token.len() >= len {
        token.truncate(len);
        return token;
    }
    token.push('.');
    let fill = len - token.len();
    token.extend(std::iter::repeat_n('x', fill));
    token
}

/// Prefix of the cursor ids of a never-ending paginator (`~` sorts after every portal id).
pub(crate) const ENDLESS: &str = "~endless-";

/// The next cursor of a never-ending paginator: beyond every item in `order`, and different from
/// the request's cursor.
pub(crate) fn endless_cursor(order: Order, cursor: Option<&Cursor>) -> (i64, String) {
    let n = cursor
        .and_then(|c| c.id.strip_prefix(ENDLESS))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n.wrapping_add(1));
    let start = match order {
        Order::Ascending => i64::MAX,
        Order::Descending => i64::MIN,
    };
    (start, format!("{ENDLESS}{n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token(KIND_ASC, 42, 1_000, "abc");
        assert_eq!(
            decode_token(Some(&t), KIND_ASC, 42).ok().flatten(),
            Some(Cursor {
                start_ms: 1_000,
                id: "abc".into()
            })
        );
        assert!(decode_token(Some(&t), KIND_DESC, 42).is_err());
        assert!(decode_token(Some(&t), KIND_ASC, 43).is_err());
        assert!(decode_token(Some("!!!"), KIND_ASC, 42).is_err());
        assert!(decode_token(Some(""), KIND_ASC, 42).is_err());
        for len in [t.len() + 1, t.len() + 2, 2048] {
            let padded = pad_token(t.clone(), len);
            assert_eq!(padded.len(), len);
            assert!(decode_token(Some(&padded), KIND_ASC, 42).is_ok_and(|c| c.is_some()));
        }
        assert!(decode_token(Some(&pad_token(t.clone(), 3_000)), KIND_ASC, 42).is_err());
        assert_eq!(pad_token(t.clone(), 4).len(), 4);
    }
}
