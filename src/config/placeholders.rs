//! Warnings about values copied from the documentation, or left from a test against a local
//! simulator: they validate, but the exporter would poll nothing real (SPEC section 11, the
//! first hour). `--config.check` prints them, one line each with the key path; the exporter logs
//! them and starts anyway.

use super::error::KeyPath;
use super::{Access, DiscoveryConfig, PortalConfig};
use crate::aws::arn::account_of_arn;

/// Account ids of the documentation and the AWS docs' examples.
pub(crate) const PLACEHOLDER_ACCOUNTS: [&str; 2] = ["123456789012", "210987654321"];

/// The warnings of `portals` and `discovery`, with their key paths.
pub(crate) fn warnings(
    portals: &[PortalConfig],
    discovery: &[DiscoveryConfig],
    root: &KeyPath,
) -> Vec<(KeyPath, String)> {
    let mut out = Vec::new();
    for (i, p) in portals.iter().enumerate() {
        let base = root.key("portals").index(i);
        match &p.arn {
            Some(arn) => {
                if let Some(account) = placeholder_account(arn) {
                    out.push((
                        base.key("arn"),
                        format!("account {account} is a documentation placeholder: put the ARN of your portal here (aws workspaces-web list-portals)"),
                    ));
                } else if is_placeholder_id(&p.id) {
                    out.push((base.key("arn"), placeholder_id(&p.id)));
                }
            }
            None if is_placeholder_id(&p.id) => out.push((base.key("id"), placeholder_id(&p.id))),
            None => {}
        }
        access(&mut out, &base, &p.access);
    }
    for (i, d) in discovery.iter().enumerate() {
        access(&mut out, &root.key("discovery").index(i), &d.access);
    }
    out
}

/// A `role_arn` in a placeholder account, a loopback `endpoint_url`.
fn access(out: &mut Vec<(KeyPath, String)>, base: &KeyPath, access: &Access) {
    if let Some(account) = access.role_arn.as_deref().and_then(placeholder_account) {
        out.push((
            base.key("role_arn"),
            format!("account {account} is a documentation placeholder: put the ARN of your role here, or remove role_arn"),
        ));
    }
    if let Some(url) = access.endpoint_url.as_deref().filter(|u| is_loopback(u)) {
        out.push((
            base.key("endpoint_url"),
            format!("{url} is this machine (a local simulator?), not AWS: remove endpoint_url to poll the real API"),
        ));
    }
}

fn placeholder_id(id: &str) -> String {
    format!(
        "portal id {id} is a documentation placeholder: put the id of your portal here (aws workspaces-web list-portals)"
    )
}

/// A portal id made of one repeated character, such as the documentation's all-1 id.
fn is_placeholder_id(id: &str) -> bool {
    let mut chars = id.chars().filter(|c| *c != '-');
    chars
        .next()
        .is_some_and(|first| chars.all(|c| c.eq_ignore_ascii_case(&first)))
}

/// The account of `arn`, when it is a placeholder.
fn placeholder_account(arn: &str) -> Option<&str> {
    account_of_arn(arn).filter(|a| PLACEHOLDER_ACCOUNTS.contains(a))
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &str) -> bool {
    match url::Url::parse(url)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_loopback_are_recognised() {
        assert!(is_placeholder_id("11111111-1111-1111-1111-111111111111"));
        assert!(is_placeholder_id("aaaaaaaa-AAAA-aaaa-aaaa-aaaaaaaaaaaa"));
        assert!(!is_placeholder_id("11111111-2222-3333-4444-555555555555"));
        assert_eq!(
            placeholder_account("arn:aws:iam::123456789012:role/wsw"),
            Some("123456789012")
        );
        assert_eq!(
            placeholder_account("arn:aws:workspaces-web:eu-west-1:210987654321:portal/x"),
            Some("210987654321")
        );
        assert_eq!(
            placeholder_account("arn:aws:iam::999988887777:role/wsw"),
            None
        );
        for url in [
            "http://127.0.0.1:4566",
            "http://localhost:4566",
            "https://LOCALHOST/",
            "http://[::1]:8080",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "https://workspaces-web.eu-west-1.amazonaws.com",
            "http://10.0.0.1",
            "not a url",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
