//! JSON writers shared by the JSON protocols (restJson1 and awsJson1.1).

use std::fmt::Write as _;

/// A JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Epoch seconds as a JSON number the way AWS's Java services print them: `1.732790400123E9`.
pub(crate) fn json_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    if !(10_000_000..1_000_000_000_000_000).contains(&secs) {
        // Outside Java's scientific range: a plain decimal.
        return if frac == 0 {
            format!("{secs}.0")
        } else {
            format!("{secs}.{frac:03}")
                .trim_end_matches('0')
                .to_string()
        };
    }
    let digits = format!("{secs}{frac:03}");
    let exponent = secs.to_string().len() - 1;
    let significant = digits.trim_end_matches('0');
    let (head, tail) = significant.split_at(1);
    let tail = if tail.is_empty() { "0" } else { tail };
    format!("{head}.{tail}E{exponent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_look_like_aws() {
        assert_eq!(json_time(1_732_790_400_123), "1.732790400123E9");
        assert_eq!(json_time(1_732_790_400_000), "1.7327904E9");
        assert_eq!(json_time(1_000_000_000_000), "1.0E9");
        assert_eq!(json_time(1_500), "1.5");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
