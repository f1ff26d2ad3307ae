//! Value types that check their syntax while being deserialized, so that
//! `serde_norway` attaches the line and column of the bad value to the error.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Label names the exporter sets itself; static labels may not use them.
pub(crate) const RESERVED_LABELS: &[&str] = &[
    "portal_id",
    "username",
    "status",
    "operation",
    "error",
    "le",
];

/// Deserializes through `FromStr`-like parsing of a string scalar, turning the
/// parse error into a serde error (which `serde_norway` then locates).
macro_rules! string_newtype {
    ($ty:ident, $expecting:literal, $parse:path) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        $parse(v).map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// A duration written as `500ms`, `90s`, `5m`, `1h`, `30d` (or combined: `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub(crate) Duration);

const DURATION_HINT: &str = "expected a number followed by ms, s, m, h or d";

/// Parses a config duration. `humantime` does the arithmetic; we first
/// restrict the units to ms, s, m, h and d (humantime also takes weeks, months,
/// years, `min`, `sec`... which the config does not document).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration {s:?}: a unit is required (ms, s, m, h or d), e.g. \"{t}s\""
        ));
    }
    let bad = || format!("invalid duration {s:?}: {DURATION_HINT}");
    let mut rest = t;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let unit = rest[digits..]
            .bytes()
            .take_while(u8::is_ascii_alphabetic)
            .count();
        if digits == 0 || !matches!(&rest[digits..digits + unit], "ms" | "s" | "m" | "h" | "d") {
            return Err(bad());
        }
        rest = rest[digits + unit..].trim_start();
    }
    humantime::parse_duration(t).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Formats a duration in the units the config accepts (`1h30m`, `1s500ms`),
/// so that what `--config.check` prints can be pasted back into the file.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    [
        (ms / 3_600_000, "h"),
        (ms / 60_000 % 60, "m"),
        (ms / 1000 % 60, "s"),
        (ms % 1000, "ms"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect()
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 90s, 5m or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: a unit is required (ms, s, m, h or d), e.g. \"{v}s\""
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                if v < 0 {
                    Err(E::custom(format!(
                        "invalid duration {v}: must not be negative"
                    )))
                } else {
                    self.visit_u64(v.unsigned_abs())
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
                if v < 0.0 {
                    Err(E::custom(format!(
                        "invalid duration {v}: must not be negative"
                    )))
                } else {
                    Err(E::custom(format!(
                        "invalid duration {v}: {DURATION_HINT}, e.g. \"1500ms\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

fn is_portal_id(s: &str) -> bool {
    s.len() == 36 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `s` as `wrap` makes it when `valid`, else "invalid {what} {s:?}: expected {expected}".
fn checked<T>(
    s: &str,
    valid: fn(&str) -> bool,
    wrap: fn(String) -> T,
    what: &str,
    expected: &str,
) -> Result<T, String> {
    if valid(s) {
        Ok(wrap(s.to_owned()))
    } else {
        Err(format!("invalid {what} {s:?}: expected {expected}"))
    }
}

/// A portal id: 36 characters of `[a-zA-Z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortalId(pub(crate) String);

pub(crate) fn parse_portal_id(s: &str) -> Result<PortalId, String> {
    checked(
        s,
        is_portal_id,
        PortalId,
        "portal id",
        "36 characters of letters, digits and '-'",
    )
}
string_newtype!(PortalId, "a portal id", parse_portal_id);

fn is_partition(s: &str) -> bool {
    !s.is_empty()
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS region name such as `us-east-1`, `us-gov-west-1`, `cn-north-1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Region(pub(crate) String);

fn is_region(s: &str) -> bool {
    // letters groups joined by '-', ending in a number: [a-z]+(-[a-z]+)+-[0-9]+
    let parts: Vec<&str> = s.split('-').collect();
    let Some((last, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

pub(crate) fn parse_region(s: &str) -> Result<Region, String> {
    checked(
        s,
        is_region,
        Region,
        "region",
        "an AWS region name such as \"us-east-1\"",
    )
}
string_newtype!(Region, "an AWS region name", parse_region);

/// The region, account and resource of `s`, once the checks every ARN shares have passed (the
/// `arn:` prefix, the partition, `service`); a failed check is reported through `fail`.
fn arn_of_service<'a>(
    s: &'a str,
    service: &str,
    fail: &dyn Fn(&str) -> String,
) -> Result<[&'a str; 3], String> {
    let Some([arn, partition, got, region, account, resource]) = crate::aws::arn::fields(s) else {
        return Err(fail("too few ':'-separated parts"));
    };
    if arn != "arn" {
        return Err(fail("must start with \"arn:\""));
    }
    if !is_partition(partition) {
        return Err(fail(&format!("bad partition {partition:?}")));
    }
    if got != service {
        return Err(fail(&format!("service is {got:?}, not \"{service}\"")));
    }
    Ok([region, account, resource])
}

/// A portal ARN, with its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortalArn {
    pub(crate) arn: String,
    pub(crate) region: String,
    pub(crate) id: String,
}

pub(crate) fn parse_portal_arn(s: &str) -> Result<PortalArn, String> {
    let fail = |why: &str| {
        format!(
            "invalid portal ARN {s:?}: {why}; expected \
             arn:<partition>:workspaces-web:<region>:<12-digit account>:portal/<portal id>"
        )
    };
    let [region, account, resource] = arn_of_service(s, "workspaces-web", &fail)?;
    if !is_region(region) {
        return Err(fail(&format!("bad region {region:?}")));
    }
    if !is_account(account) {
        return Err(fail(&format!("account {account:?} is not 12 digits")));
    }
    let Some(id) = resource.strip_prefix("portal/") else {
        return Err(fail(&format!(
            "resource {resource:?} does not start with \"portal/\""
        )));
    };
    if !is_portal_id(id) {
        return Err(fail(&format!(
            "portal id {id:?} is not 36 characters of letters, digits and '-'"
        )));
    }
    Ok(PortalArn {
        arn: s.to_owned(),
        region: region.to_owned(),
        id: id.to_owned(),
    })
}
string_newtype!(PortalArn, "a portal ARN", parse_portal_arn);

/// An IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path/name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RoleArn(pub(crate) String);

fn is_iam_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)
}

pub(crate) fn parse_role_arn(s: &str) -> Result<RoleArn, String> {
    let fail = |why: &str| {
        format!(
            "invalid role ARN {s:?}: {why}; expected arn:<partition>:iam::<12-digit account>:role/<name>"
        )
    };
    let [region, account, resource] = arn_of_service(s, "iam", &fail)?;
    if !region.is_empty() {
        return Err(fail("IAM ARNs have no region"));
    }
    if !is_account(account) {
        return Err(fail(&format!("account {account:?} is not 12 digits")));
    }
    let Some(path_name) = resource.strip_prefix("role/") else {
        return Err(fail(&format!(
            "resource {resource:?} does not start with \"role/\""
        )));
    };
    if !is_role_path_name(path_name) {
        return Err(fail(&format!(
            "role name {path_name:?} must be 1 to 64 characters of letters, digits and +=,.@_- \
             (optionally after a /path/)"
        )));
    }
    Ok(RoleArn(s.to_owned()))
}
string_newtype!(RoleArn, "an IAM role ARN", parse_role_arn);

/// An IAM role name, optionally after a path (`workspacesweb-exporter`, `ops/exporter`): the
/// member role that organization discovery assumes in each account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleName(pub(crate) String);

/// Whether `path_name` is a role name after an optional path: `/`-separated segments of IAM
/// name characters, the name at most 64 characters, the whole at most 512.
fn is_role_path_name(path_name: &str) -> bool {
    let name = path_name.rsplit('/').next().unwrap_or_default();
    path_name
        .split('/')
        .all(|seg| !seg.is_empty() && seg.bytes().all(is_iam_name_char))
        && name.len() <= 64
        && path_name.len() <= 512
}

pub(crate) fn parse_role_name(s: &str) -> Result<RoleName, String> {
    checked(
        s,
        is_role_path_name,
        RoleName,
        "role name",
        "1 to 64 characters of letters, digits and +=,.@_- (optionally after a path/), the name alone, not an ARN",
    )
}
string_newtype!(RoleName, "an IAM role name", parse_role_name);

/// The id of an organizational unit (`ou-ab12-cdef3456`) or of the root (`r-ab12`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParentId(pub(crate) String);

/// Whether `s` is `[0-9a-z]` of `min..=max` characters.
fn lower_alnum(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `ou-` + 4 to 32 + `-` + 8 to 32 lowercase letters or digits, or `r-` + 4 to 32 (the API's
/// patterns).
fn is_parent_id(s: &str) -> bool {
    if let Some(rest) = s.strip_prefix("ou-") {
        return rest
            .split_once('-')
            .is_some_and(|(root, unit)| lower_alnum(root, 4, 32) && lower_alnum(unit, 8, 32));
    }
    s.strip_prefix("r-")
        .is_some_and(|root| lower_alnum(root, 4, 32))
}

pub(crate) fn parse_parent_id(s: &str) -> Result<ParentId, String> {
    checked(
        s,
        is_parent_id,
        ParentId,
        "OU id",
        "an organizational unit id such as \"ou-ab12-cdef3456\" (or the root's, \"r-ab12\")",
    )
}
string_newtype!(ParentId, "an OU id", parse_parent_id);

/// A 12-digit AWS account id, written as a string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AccountId(pub(crate) String);

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AccountId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 12-digit account id in quotes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AccountId, E> {
                checked(v, is_account, AccountId, "account id", "12 digits").map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AccountId, E> {
                Err(E::custom(format!(
                    "account id {v} must be in quotes, e.g. \"{v:012}\": YAML reads an unquoted number and drops its leading zeros"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AccountId, E> {
                Err(E::custom(format!(
                    "invalid account id {v}: expected 12 digits in quotes"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// An `http://` or `https://` endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EndpointUrl(pub(crate) String);

/// `s` with the userinfo of its authority (`user:password@`) replaced by `***@`, so that an error
/// message about an endpoint never echoes credentials, even for a URL that does not parse.
pub(crate) fn mask_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => s.to_owned(),
    }
}

pub(crate) fn parse_endpoint_url(raw: &str) -> Result<EndpointUrl, String> {
    let s = &mask_userinfo(raw);
    let url = url::Url::parse(raw).map_err(|e| format!("invalid endpoint_url {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid endpoint_url {s:?}: scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid endpoint_url {s:?}: no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid endpoint_url {s:?}: must not have a query or fragment"
        ));
    }
    Ok(EndpointUrl(raw.to_owned()))
}
string_newtype!(EndpointUrl, "an http or https URL", parse_endpoint_url);

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvVarName(pub(crate) String);

pub(crate) fn parse_env_var_name(s: &str) -> Result<EnvVarName, String> {
    checked(
        s,
        is_identifier,
        EnvVarName,
        "environment variable name",
        "[A-Za-z_][A-Za-z0-9_]*",
    )
}
string_newtype!(
    EnvVarName,
    "an environment variable name",
    parse_env_var_name
);

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A static label name: a valid Prometheus label name the exporter does not
/// use itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LabelName(pub(crate) String);

pub(crate) fn parse_label_name(s: &str) -> Result<LabelName, String> {
    if !is_identifier(s) {
        return Err(format!(
            "invalid label name {s:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    if s.starts_with("__") {
        return Err(format!(
            "label name {s:?} is reserved: names starting with \"__\" are internal to Prometheus"
        ));
    }
    if RESERVED_LABELS.contains(&s) {
        return Err(format!(
            "label name {s:?} is reserved: the exporter sets it itself"
        ));
    }
    Ok(LabelName(s.to_owned()))
}
string_newtype!(LabelName, "a label name", parse_label_name);

/// Static labels: a mapping from label name to value; repeated names are an
/// error (plain maps would silently keep the last one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Labels(pub(crate) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of label names to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(LabelName(name)) = map.next_key()? {
                    let value: String = map.next_value()?;
                    if out.contains_key(&name) {
                        return Err(de::Error::custom(format!("label {name:?} is given twice")));
                    }
                    out.insert(name, value);
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            parse_duration("5x").unwrap_err(),
            "invalid duration \"5x\": expected a number followed by ms, s, m, h or d"
        );
        assert_eq!(
            parse_duration("60").unwrap_err(),
            "invalid duration \"60\": a unit is required (ms, s, m, h or d), e.g. \"60s\""
        );
        assert_eq!(
            parse_duration("-5s").unwrap_err(),
            "invalid duration \"-5s\": must not be negative"
        );
        for bad in ["", "s", "1y", "2min", "1.5s", "5 m", "m5", "1w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn durations_format_in_config_units() {
        for (d, s) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(800), "800ms"),
            (Duration::from_millis(1600), "1s600ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(86400), "24h"),
            (Duration::from_secs(5400), "1h30m"),
        ] {
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(s), Ok(d), "{s} round-trips");
        }
    }

    #[test]
    fn portal_arn_parts() {
        let a = parse_portal_arn(
            "arn:aws:workspaces-web:eu-west-1:123456789012:portal/11111111-2222-3333-4444-555555555555",
        )
        .unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.id, "11111111-2222-3333-4444-555555555555");
        let e = parse_portal_arn(
            "arn:aws:ec2:eu-west-1:123456789012:portal/11111111-2222-3333-4444-555555555555",
        )
        .unwrap_err();
        assert!(e.contains("service is \"ec2\""), "{e}");
        let e = parse_portal_arn(
            "arn:aws:workspaces-web:eu-west-1:1234:portal/11111111-2222-3333-4444-555555555555",
        )
        .unwrap_err();
        assert!(e.contains("account \"1234\" is not 12 digits"), "{e}");
        assert!(parse_portal_arn("arn:aws-us-gov:workspaces-web:us-gov-west-1:123456789012:portal/abcdefgh-2222-3333-4444-555555555555").is_ok());
    }

    #[test]
    fn role_arns() {
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/wsw-exporter").is_ok());
        assert!(parse_role_arn("arn:aws-cn:iam::123456789012:role/ops/team/x.y@z").is_ok());
        assert!(parse_role_arn("arn:aws:iam:us-east-1:123456789012:role/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:user/x").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/").is_err());
        assert!(parse_role_arn("arn:aws:iam::123456789012:role/a b").is_err());
        assert!(parse_role_arn("arn:aws:sts::123456789012:role/x").is_err());
    }

    #[test]
    fn organization_values() {
        for ok in [
            "workspacesweb-exporter",
            "ops/team/exporter",
            "a+b=c,d.e@f_g-h",
        ] {
            assert!(parse_role_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "arn:aws:iam::123456789012:role/x",
            "/x",
            "x/",
            &"n".repeat(65),
        ] {
            assert!(parse_role_name(bad).is_err(), "{bad}");
        }
        for ok in ["ou-ab12-cdef3456", "ou-abcd-12345678901234567890", "r-ab12"] {
            assert!(parse_parent_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ou-ab1-cdef3456",
            "ou-ab12-cdef345",
            "OU-AB12-CDEF3456",
            "ou-ab12",
            "r-ab1",
            "x",
        ] {
            assert!(parse_parent_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_names() {
        for ok in ["us-east-1", "us-gov-west-1", "cn-north-1", "eusc-de-east-1"] {
            assert!(parse_region(ok).is_ok(), "{ok}");
        }
        for bad in ["us-east", "useast1", "US-EAST-1", "us-east-1a", ""] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        assert!(parse_label_name("team").is_ok());
        assert!(parse_label_name("_x9").is_ok());
        assert!(parse_label_name("9x").is_err());
        assert!(parse_label_name("a-b").is_err());
        assert!(parse_label_name("__name").is_err());
        for r in RESERVED_LABELS {
            assert!(parse_label_name(r).is_err(), "{r}");
        }
        assert!(parse_endpoint_url("http://127.0.0.1:4566").is_ok());
        assert!(parse_endpoint_url("https://example.com/base").is_ok());
        assert!(parse_endpoint_url("ftp://example.com").is_err());
        assert!(parse_endpoint_url("127.0.0.1:4566").is_err());
    }
}
