//! HTTP basic auth against the bcrypt hashes of `basic_auth_users`.
//!
//! Cost and timing:
//! - bcrypt runs on the blocking pool, one verification at a time per web config (as the Go
//!   toolkit serialises it): a flood of wrong passwords costs one core, not all of them, and
//!   never stalls the async workers that serve other connections. A request waits at most
//!   [`BCRYPT_SLOT_WAIT`] (2 s) for that slot, then gets 503: a flood cannot queue every
//!   scrape behind it. Costs above [`MAX_COST`] (14, about a second per verification) are
//!   refused in the web config.
//! - After a password verifies, the SHA-256 of (user's bcrypt hash, password) is remembered
//!   for that user, so later scrapes with the same credentials skip bcrypt. The digest is
//!   compared in constant time. The cache holds at most one entry per configured user (its
//!   last verified password), so it is bounded by the config, and it is dropped with the web
//!   config on reload. Failed attempts are never cached: every wrong guess pays bcrypt.
//! - An unknown user is checked against a decoy (the configured hash of the highest cost) and
//!   refused whatever the outcome, so it costs the same bcrypt time as a wrong password for a
//!   known user: response times do not reveal which user names exist.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::Invalid;

/// Lowest bcrypt cost (the bcrypt crate does not export its bounds).
const MIN_COST: u32 = 4;
/// Highest bcrypt cost accepted. Each step doubles the work: at 14 a verification takes about
/// a second of a core; above, one wrong password per second would take the only bcrypt slot.
pub(in crate::http) const MAX_COST: u32 = 14;

/// Longest a request waits for the bcrypt slot before it is answered 503: a flood of wrong
/// passwords makes others wait at most this long instead of queueing without end.
pub(in crate::http) const BCRYPT_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`BasicAuth::verify`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::http) enum Verdict {
    /// Valid credentials.
    Allowed,
    /// Missing or wrong credentials: 401.
    Denied,
    /// The bcrypt slot stayed busy for [`BCRYPT_SLOT_WAIT`]: 503.
    Busy,
}

/// Value of `WWW-Authenticate` on a 401.
pub(in crate::http) const CHALLENGE: &str = "Basic realm=\"workspacesweb-exporter\"";

/// Credentials from an `Authorization: Basic` header.
pub(in crate::http) struct Credentials {
    user: String,
    password: Vec<u8>,
}

impl Credentials {
    /// The credentials of a request, if it carries a well-formed `Authorization: Basic` header.
    pub(in crate::http) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
        Some(Self {
            user,
            password: decoded[colon + 1..].to_vec(),
        })
    }
}

/// The users of a web config and what has been verified for them.
pub(in crate::http) struct BasicAuth {
    /// User → bcrypt hash.
    users: HashMap<String, String>,
    /// Hash verified against for unknown users (the costliest configured one).
    decoy: String,
    /// User → SHA-256 of (hash, last password that verified).
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// One bcrypt at a time; the permit lives as long as the blocking task, which a
    /// disconnecting client cannot cancel.
    bcrypt: Arc<Semaphore>,
}

impl BasicAuth {
    /// Checks every hash; `users` must not be empty.
    pub(in crate::http) fn new(users: BTreeMap<String, String>) -> Result<Self, Invalid> {
        let mut decoy: Option<(u32, String)> = None;
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(Invalid::new(
                    key,
                    "a user name must be non-empty and contain no ':'",
                ));
            }
            let parts = bcrypt::HashParts::from_str(hash)
                .map_err(|e| Invalid::new(key.clone(), format!("not a bcrypt hash: {e}")))?;
            let cost = parts.get_cost();
            if !(MIN_COST..=MAX_COST).contains(&cost) {
                return Err(Invalid::new(
                    key,
                    format!(
                        "bcrypt cost {cost} is out of range: use {MIN_COST} to {MAX_COST} (each \
                         step doubles the time every request with a new password takes)"
                    ),
                ));
            }
            if decoy.as_ref().is_none_or(|(c, _)| cost > *c) {
                decoy = Some((cost, hash.clone()));
            }
        }
        let Some((_, decoy)) = decoy else {
            return Err(Invalid::new("basic_auth_users", "no users"));
        };
        Ok(Self {
            users: users.into_iter().collect(),
            decoy,
            verified: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
        })
    }

    /// Number of configured users.
    pub(in crate::http) fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Configured user names, sorted.
    pub(in crate::http) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.users.keys().cloned().collect();
        users.sort();
        users
    }

    /// Whether `credentials` name a configured user with the right password; `Busy` when the
    /// bcrypt slot stays taken for [`BCRYPT_SLOT_WAIT`].
    pub(in crate::http) async fn verify(&self, credentials: Option<Credentials>) -> Verdict {
        let Some(Credentials { user, password }) = credentials else {
            return Verdict::Denied;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let digest = digest(&hash, &password);
        if known && self.cached(&user, &digest) {
            return Verdict::Allowed;
        }
        let permit =
            match tokio::time::timeout(BCRYPT_SLOT_WAIT, Arc::clone(&self.bcrypt).acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Verdict::Denied,
                Err(_) => return Verdict::Busy,
            };
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(&password, &hash)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false);
        if !known || !matched {
            return Verdict::Denied;
        }
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user, digest);
        Verdict::Allowed
    }

    /// Takes the bcrypt slot as a verification in progress does (tests: one that never ends).
    pub(in crate::http) fn hold_bcrypt_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.bcrypt).try_acquire_owned().ok()
    }

    /// Whether `digest` is the one remembered for `user` (compared in constant time).
    fn cached(&self, user: &str, digest: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified
            .get(user)
            .is_some_and(|known| bool::from(known.ct_eq(digest)))
    }
}

/// SHA-256 of the hash and the password, length-prefixed so that no two pairs collide.
fn digest(hash: &str, password: &[u8]) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update((hash.len() as u64).to_be_bytes());
    sha.update(hash.as_bytes());
    sha.update(password);
    sha.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("ascii"));
        h
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn credentials_parse_like_go() {
        let c = Credentials::from_headers(&headers(&basic("alice:pa:ss"))).expect("parsed");
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, b"pa:ss");
        let c = Credentials::from_headers(&headers(&basic("bob:").replace("Basic", "bAsIc")))
            .expect("scheme is case-insensitive");
        assert_eq!((c.user.as_str(), c.password.len()), ("bob", 0));
        for bad in ["Bearer abc", "Basic", "Basic !!!", &basic("nocolon")] {
            assert!(Credentials::from_headers(&headers(bad)).is_none(), "{bad}");
        }
        assert!(Credentials::from_headers(&HeaderMap::new()).is_none());
    }

    #[tokio::test]
    async fn right_password_verifies_and_is_cached_wrong_ones_are_not() {
        let hash = bcrypt::hash("secret", 4).expect("hash");
        let auth = BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)])).expect("valid");
        let creds =
            |u: &str, p: &str| Credentials::from_headers(&headers(&basic(&format!("{u}:{p}"))));
        let ok = Verdict::Allowed;
        assert_ne!(auth.verify(creds("alice", "wrong")).await, ok);
        assert!(auth.verified.lock().expect("lock").is_empty());
        assert_ne!(auth.verify(creds("mallory", "secret")).await, ok);
        assert_eq!(auth.verify(creds("alice", "secret")).await, ok);
        assert_eq!(auth.verified.lock().expect("lock").len(), 1);
        // Served from the cache now; a different password still goes to bcrypt and fails.
        assert_eq!(auth.verify(creds("alice", "secret")).await, ok);
        assert_ne!(auth.verify(creds("alice", "secret2")).await, ok);
        assert_eq!(auth.verify(None).await, Verdict::Denied);
    }

    /// An unknown user pays what a known user of the same cost pays: a bcrypt verification
    /// through the same single slot, against the costliest configured hash. Shown by holding the
    /// slot: the unknown user waits for it exactly as a known user's wrong password does, and
    /// neither is answered before the slot frees up.
    #[tokio::test]
    async fn an_unknown_user_goes_through_bcrypt_like_a_known_one() {
        let auth = BasicAuth::new(BTreeMap::from([
            (
                "alice".to_string(),
                bcrypt::hash("secret", 4).expect("hash"),
            ),
            ("bob".to_string(), bcrypt::hash("other", 5).expect("hash")),
        ]))
        .expect("valid");
        assert_eq!(
            bcrypt::HashParts::from_str(&auth.decoy)
                .expect("hash")
                .get_cost(),
            5,
            "the decoy is the costliest configured hash"
        );
        let creds =
            |u: &str, p: &str| Credentials::from_headers(&headers(&basic(&format!("{u}:{p}"))));
        let held = auth.hold_bcrypt_slot().expect("slot free");
        assert_eq!(auth.verify(creds("mallory", "x")).await, Verdict::Busy);
        assert_eq!(auth.verify(creds("bob", "x")).await, Verdict::Busy);
        drop(held);
        assert_eq!(
            auth.verify(creds("mallory", "other")).await,
            Verdict::Denied
        );
    }

    #[test]
    fn invalid_hashes_are_rejected_naming_the_user() {
        let Err(e) = BasicAuth::new(BTreeMap::from([("bob".to_string(), "plain".to_string())]))
        else {
            panic!("a plain-text password was accepted as a hash");
        };
        assert_eq!(e.key, "basic_auth_users.bob");
    }
}
