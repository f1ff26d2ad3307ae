//! What a reload may change in the web config in force, and what the new one keeps of it.
//!
//! - A reload never lowers security silently: a web config that would remove TLS, basic auth
//!   or a requirement of verified client certificates (`RequireAndVerifyClientCert`) in force
//!   is refused ([`lowered`] names what it would remove); removing them takes a restart. An
//!   emptied or truncated file is the usual way to get there by accident: it is valid (plain
//!   HTTP, no auth), and is refused as such.
//! - The new web config keeps ([`carry_over`]) the verified-login cache of every user whose
//!   hash is unchanged and the bcrypt slot (the whole basic-auth state when the users are the
//!   same), and the rate limiter's bucket when `rate_limit` is unchanged (as the Go toolkit
//!   keeps its limiter): a reload hands out no fresh burst and no second bcrypt slot.
//! - [`WebChange`] says whether anything differs at all: the file and every file it names,
//!   byte for byte.

use std::sync::Arc;

use super::WebState;

/// Whether a web config differs from the one in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebChange {
    /// The same file, naming the same certificates, keys and CAs, byte for byte.
    Same,
    /// Something differs.
    Different,
}

impl WebChange {
    /// What replacing `current` by `next` changes.
    pub(in crate::http) fn between(current: &WebState, next: &WebState) -> Self {
        if current.fingerprint == next.fingerprint && current.source == next.source {
            WebChange::Same
        } else {
            WebChange::Different
        }
    }
}

/// The protections in force in `current` that `next` would remove, each with its key; empty
/// when `next` keeps them all.
pub(in crate::http) fn lowered(
    current: &WebState,
    next: &WebState,
) -> Vec<(&'static str, &'static str)> {
    let verified_clients =
        |s: &WebState| s.tls.as_ref().is_some_and(|t| t.requires_verified_client());
    let mut removed = Vec::new();
    if current.tls.is_some() && next.tls.is_none() {
        removed.push(("tls_server_config", "TLS"));
    } else if verified_clients(current) && !verified_clients(next) {
        removed.push((
            "tls_server_config.client_auth_type",
            "the requirement of verified client certificates (RequireAndVerifyClientCert)",
        ));
    }
    if current.auth.is_some() && next.auth.is_none() {
        removed.push(("basic_auth_users", "basic auth"));
    }
    removed
}

/// Makes `next` keep what it should of `current` (see the module docs).
pub(in crate::http) fn carry_over(current: &WebState, next: &mut WebState) {
    if let (Some(old), Some(new)) = (&current.auth, &mut next.auth) {
        if old.same_users(new) {
            *new = Arc::clone(old);
        } else if let Some(new) = Arc::get_mut(new) {
            new.inherit(old);
        }
    }
    if let (Some(old), Some(new)) = (&current.rate_limit, &mut next.rate_limit)
        && old.same_settings(new)
    {
        *new = Arc::clone(old);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_web_config;
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> WebState {
        parse_web_config(text, Path::new("/nonexistent")).expect("valid")
    }

    fn users() -> String {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        format!("basic_auth_users:\n  u: '{hash}'\n")
    }

    #[test]
    fn removing_basic_auth_is_lowering_and_so_is_an_empty_file() {
        let current = parse(&users());
        for next in [
            "",
            "basic_auth_users:\n",
            "basic_auth_users: {}\n",
            "# cut\n",
        ] {
            assert_eq!(
                lowered(&current, &parse(next)),
                [("basic_auth_users", "basic auth")],
                "{next:?}"
            );
        }
        assert!(
            lowered(&current, &parse(&users())).is_empty(),
            "other users"
        );
        assert!(lowered(&parse(""), &parse("")).is_empty());
    }

    /// However the file is cut short, the result is either invalid (the reload fails anyway)
    /// or keeps basic auth, or is refused as lowering it.
    #[test]
    fn every_truncation_of_a_file_with_basic_auth_fails_or_is_refused() {
        let hash = bcrypt::hash("pw", 4).expect("hash");
        let text = format!(
            "# users\nbasic_auth_users:\n  alice: '{hash}'\n  bob: \"{hash}\"\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
        );
        let current = parse(&text);
        for end in 0..text.len() {
            let Ok(next) = parse_web_config(&text[..end], Path::new("/nonexistent")) else {
                continue;
            };
            assert!(
                next.auth.is_some() || !lowered(&current, &next).is_empty(),
                "{:?} would pass",
                &text[..end]
            );
        }
    }

    #[test]
    fn the_same_rate_limit_keeps_its_bucket_and_the_same_users_their_cache() {
        let text = format!("{}rate_limit:\n  interval: 1h\n  burst: 1\n", users());
        let current = parse(&text);
        assert!(current.rate_limit.as_ref().is_some_and(|r| r.allow()));
        let mut next = parse(&text);
        carry_over(&current, &mut next);
        assert!(
            !next.rate_limit.as_ref().is_some_and(|r| r.allow()),
            "the burst spent before the reload stays spent"
        );
        let (old, new) = (current.auth.as_ref(), next.auth.as_ref());
        assert!(old.zip(new).is_some_and(|(o, n)| Arc::ptr_eq(o, n)));
        assert_eq!(WebChange::between(&current, &next), WebChange::Same);
        let other = parse(&format!(
            "{}rate_limit:\n  interval: 1h\n  burst: 2\n",
            users()
        ));
        assert_eq!(WebChange::between(&current, &other), WebChange::Different);
    }
}
