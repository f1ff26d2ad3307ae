//! Content negotiation for the exposition: `Accept-Encoding` parsing. The gzip stream itself is
//! joined from pieces compressed once each ([`crate::exposition::deflate`]).

use hyper::header::HeaderValue;

/// Whether the `Accept-Encoding` header values (all of them, in order) accept gzip.
///
/// Follows RFC 9110 §12.5.3: `gzip` (or `x-gzip`) with `q` > 0 accepts; an explicit
/// `gzip;q=0` refuses even if `*` is accepted; otherwise `*` with `q` > 0 accepts. A `q`
/// that does not parse counts as 0, so a garbled header falls back to the identity encoding.
pub(super) fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let mut gzip: Option<f32> = None;
    let mut any: Option<f32> = None;
    for value in values {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if coding.is_empty() {
                continue;
            }
            let q = quality(parts);
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding == "*" {
                    &mut any
                } else {
                    continue;
                };
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    match gzip {
        Some(q) => q > 0.0,
        None => any.is_some_and(|q| q > 0.0),
    }
}

/// The `q` parameter among an element's parameters: 1 when absent, 0 when malformed.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f32 {
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            return match value.trim().parse::<f32>() {
                Ok(q) if (0.0..=1.0).contains(&q) => q,
                _ => 0.0,
            };
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).unwrap())
            .collect();
        accepts_gzip(values.iter())
    }

    #[test]
    fn gzip_is_accepted_when_listed_with_positive_quality() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["GZIP"]));
        assert!(accepts(&["x-gzip"]));
        assert!(accepts(&["deflate, gzip;q=0.5"]));
        assert!(accepts(&["br;q=1.0, gzip ; q=0.001, *;q=0.1"]));
        assert!(accepts(&["identity", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(accepts(&["gzip;Q=1"]));
    }

    #[test]
    fn gzip_is_refused_when_absent_or_quality_zero() {
        assert!(!accepts(&[]));
        assert!(!accepts(&[""]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflate, br"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.000"]));
        assert!(!accepts(&["gzip;q=0, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["gzip;q=nonsense"]));
        assert!(!accepts(&["gzip;q=2"]));
        assert!(!accepts(&["gzip;q=-1"]));
        assert!(!accepts(&["gzips"]));
    }
}
