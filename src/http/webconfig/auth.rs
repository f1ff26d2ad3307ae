//! HTTP basic auth against the bcrypt hashes of `basic_auth_users`.
//!
//! Cost and timing:
//! - bcrypt runs on the blocking pool, one verification at a time per web config (as the Go
//!   toolkit serialises it): a flood of wrong passwords costs one core, not all of them, and
//!   never stalls the async workers that serve other connections. The slot is handed out
//!   round-robin between peers, then between user names within a peer ([`BcryptSlot`]): a
//!   first login waits for about one verification per other waiting peer (or name), not for a
//!   flood's whole queue. A peer has at most 16 requests waiting, 4 per name; a request beyond
//!   them waits [`BCRYPT_SLOT_WAIT`] (2 s) without queueing and gets 503, as does one whose
//!   turn does not come within that time. Costs above [`MAX_COST`] (14, about a second per
//!   verification) are refused in the web config.
//! - After a password verifies, the SHA-256 of (user's bcrypt hash, password) is remembered
//!   for that user, so later scrapes with the same credentials skip bcrypt. The digest is
//!   compared in constant time. The cache holds at most one entry per configured user (its
//!   last verified password), so it is bounded by the config. A reload keeps it for every user
//!   whose hash did not change (and keeps the bcrypt slot). Failed attempts are never cached:
//!   every wrong guess pays bcrypt.
//! - An unknown user is checked against a decoy and refused whatever the outcome. The decoy
//!   is one of the configured hashes, chosen by a keyed hash of the user name (the key is
//!   random per process): every unknown name always pays the cost of one configured user, in
//!   the proportions of the configured costs, so that its response time is that of a known
//!   user of the same cost and does not reveal which names exist, even when costs differ.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use base64::Engine;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Invalid;
use super::bcrypt_slot::{BcryptPermit, BcryptSlot};
use crate::http::peer::PeerKey;

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
    /// No bcrypt slot in time (or the peer's queue is full): 503.
    Busy,
    /// Refused by `rate_limit` before any check: 429.
    Limited,
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
    /// Every configured hash, in user-name order: an unknown user is verified against one.
    decoys: Vec<String>,
    /// User → SHA-256 of (hash, last password that verified).
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// One bcrypt at a time; the permit lives as long as the blocking task, which a
    /// disconnecting client cannot cancel.
    bcrypt: Arc<BcryptSlot>,
}

/// The key of the decoy choice, random per process so that nobody can tell in advance which
/// cost an unknown name will pay.
fn decoy_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

impl BasicAuth {
    /// Checks every hash; `users` must not be empty.
    pub(in crate::http) fn new(users: BTreeMap<String, String>) -> Result<Self, Invalid> {
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
        }
        if users.is_empty() {
            return Err(Invalid::new("basic_auth_users", "no users"));
        }
        Ok(Self {
            decoys: users.values().cloned().collect(),
            users: users.into_iter().collect(),
            verified: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(BcryptSlot::default()),
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

    /// Whether the two configure the same users with the same hashes.
    pub(in crate::http) fn same_users(&self, other: &BasicAuth) -> bool {
        self.users == other.users
    }

    /// Takes over what `previous` (the web config this one replaces) knows: its bcrypt slot,
    /// and its verified passwords of every user whose hash did not change.
    pub(in crate::http) fn inherit(&mut self, previous: &BasicAuth) {
        self.bcrypt = Arc::clone(&previous.bcrypt);
        let kept: Vec<(String, [u8; 32])> = previous
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(user, _)| {
                self.users
                    .get(*user)
                    .is_some_and(|hash| previous.users.get(*user) == Some(hash))
            })
            .map(|(user, digest)| (user.clone(), *digest))
            .collect();
        self.verified
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(kept);
    }

    /// The hash an unknown `user` is verified against.
    fn decoy(&self, user: &str) -> &str {
        let mut sha = Sha256::new();
        sha.update(decoy_key());
        sha.update(user.as_bytes());
        let hashed: [u8; 32] = sha.finalize().into();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hashed[..8]);
        let index = u64::from_be_bytes(first) % self.decoys.len() as u64;
        &self.decoys[index as usize]
    }

    /// Whether `credentials` name a configured user with the right password; `Busy` when
    /// `peer` gets no bcrypt slot in time.
    pub(in crate::http) async fn verify(
        &self,
        credentials: Option<Credentials>,
        peer: IpAddr,
    ) -> Verdict {
        let Some(Credentials { user, password }) = credentials else {
            return Verdict::Denied;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy(&user).to_string(), false),
        };
        let digest = digest(&hash, &password);
        if known && self.cached(&user, &digest) {
            return Verdict::Allowed;
        }
        let Some(permit) = self
            .bcrypt
            .acquire(PeerKey::of(peer), &user, BCRYPT_SLOT_WAIT)
            .await
        else {
            return Verdict::Busy;
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
    pub(in crate::http) fn hold_bcrypt_slot(&self) -> Option<BcryptPermit> {
        self.bcrypt.try_acquire()
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

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Credentials::from_headers(&headers(&basic(&format!("{user}:{password}"))))
    }

    fn auth(users: &[(&str, &str, u32)]) -> BasicAuth {
        BasicAuth::new(
            users
                .iter()
                .map(|(u, p, cost)| (u.to_string(), bcrypt::hash(p, *cost).expect("hash")))
                .collect(),
        )
        .expect("valid")
    }

    fn cost(hash: &str) -> u32 {
        bcrypt::HashParts::from_str(hash).expect("hash").get_cost()
    }

    #[tokio::test]
    async fn right_password_verifies_and_is_cached_wrong_ones_are_not() {
        let auth = auth(&[("alice", "secret", 4)]);
        let ok = Verdict::Allowed;
        assert_ne!(auth.verify(creds("alice", "wrong"), PEER).await, ok);
        assert!(auth.verified.lock().expect("lock").is_empty());
        assert_ne!(auth.verify(creds("mallory", "secret"), PEER).await, ok);
        assert_eq!(auth.verify(creds("alice", "secret"), PEER).await, ok);
        assert_eq!(auth.verified.lock().expect("lock").len(), 1);
        // Served from the cache now; a different password still goes to bcrypt and fails.
        assert_eq!(auth.verify(creds("alice", "secret"), PEER).await, ok);
        assert_ne!(auth.verify(creds("alice", "secret2"), PEER).await, ok);
        assert_eq!(auth.verify(None, PEER).await, Verdict::Denied);
    }

    /// Before: every unknown user was verified against the costliest hash, so with a cost-4
    /// and a cost-5 user an unknown name took as long as the cost-5 one and twice the cost-4
    /// one (85 ms against 330 ms in the security review, at costs 10 and 12). Now each unknown
    /// name pays the cost of one configured user, always the same for that name, in the
    /// proportions of the configuration.
    #[test]
    fn an_unknown_name_pays_the_cost_of_a_configured_user_chosen_by_the_name() {
        let auth = auth(&[("alice", "a", 4), ("bob", "b", 5), ("carol", "c", 4)]);
        let mut at_cost = BTreeMap::<u32, usize>::new();
        for i in 0..300 {
            let name = format!("intruder-{i}");
            let decoy = auth.decoy(&name);
            assert_eq!(decoy, auth.decoy(&name), "{name} always pays the same");
            *at_cost.entry(cost(decoy)).or_default() += 1;
        }
        // About 200 at cost 4 and 100 at cost 5; far from both ends.
        assert_eq!(at_cost.keys().copied().collect::<Vec<_>>(), [4, 5]);
        assert!(at_cost[&4] > 120 && at_cost[&5] > 40, "{at_cost:?}");
    }

    /// An unknown user goes through the same single bcrypt slot as a known one: while a
    /// verification holds it, both wait for it alike, and neither is answered before it frees.
    #[tokio::test]
    async fn an_unknown_user_goes_through_bcrypt_like_a_known_one() {
        let auth = auth(&[("alice", "secret", 4), ("bob", "other", 5)]);
        let held = auth.hold_bcrypt_slot().expect("slot free");
        assert_eq!(
            auth.verify(creds("mallory", "x"), PEER).await,
            Verdict::Busy
        );
        assert_eq!(auth.verify(creds("bob", "x"), PEER).await, Verdict::Busy);
        drop(held);
        assert_eq!(
            auth.verify(creds("mallory", "other"), PEER).await,
            Verdict::Denied
        );
    }

    /// A reload keeps the verified passwords of users whose hash is unchanged, and the bcrypt
    /// slot (one verification at a time across the reload).
    #[tokio::test]
    async fn a_successor_inherits_unchanged_users_and_the_slot() {
        let old = auth(&[("alice", "a", 4), ("bob", "b", 4)]);
        assert_eq!(
            old.verify(creds("alice", "a"), PEER).await,
            Verdict::Allowed
        );
        assert_eq!(old.verify(creds("bob", "b"), PEER).await, Verdict::Allowed);
        let alice = old.users["alice"].clone();
        let mut new = BasicAuth::new(BTreeMap::from([
            ("alice".to_string(), alice),
            ("bob".to_string(), bcrypt::hash("b2", 4).expect("hash")),
        ]))
        .expect("valid");
        new.inherit(&old);
        let verified = new.verified.lock().expect("lock");
        assert_eq!(verified.keys().collect::<Vec<_>>(), ["alice"]);
        drop(verified);
        let held = old.hold_bcrypt_slot().expect("free");
        assert!(
            new.hold_bcrypt_slot().is_none(),
            "one slot across the reload"
        );
        drop(held);
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
