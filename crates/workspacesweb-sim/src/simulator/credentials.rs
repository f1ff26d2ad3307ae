//! The control API of credentials: which access keys are valid, the account each belongs to,
//! and the lifetime and clock of the credentials the simulator's STS issues.

use std::time::Duration;

use super::Simulator;
use crate::access::principal_account;
use crate::clock::Clock;
use crate::error::SimError;
use crate::record::UnixMillis;

impl Simulator {
    /// With `true`, only the access keys the simulator knows (added with
    /// [`add_access_key`](Self::add_access_key), or issued by its `AssumeRole`) are valid: any
    /// other key is answered `UnrecognizedClientException` (STS: `InvalidClientTokenId`), 403,
    /// "The security token included in the request is invalid.", and unsigned requests
    /// `MissingAuthenticationTokenException`. Default `false`: any key is accepted, as a caller of
    /// no account in particular (it sees every portal and acts as the organization's management
    /// account).
    pub fn require_known_keys(&self, on: bool) {
        self.state.access.state().strict = on;
    }

    /// Registers a long-term access key of `principal_arn` (e.g.
    /// `arn:aws:iam::111111111111:user/ops`): valid when only known keys are, bound to the
    /// principal's account (its `ListPortals` lists that account's portals only, other accounts'
    /// portals refuse it, Organizations takes it for that account).
    pub fn add_access_key(&self, access_key_id: &str, principal_arn: &str) -> Result<(), SimError> {
        let account = principal_account(principal_arn)
            .ok_or_else(|| SimError::InvalidPrincipal(principal_arn.to_string()))?;
        self.state
            .access
            .state()
            .register(access_key_id, principal_arn, account);
        Ok(())
    }

    /// Refuses an access key from the next request on (known or not, in either mode):
    /// `UnrecognizedClientException` (STS: `InvalidClientTokenId`), 403.
    pub fn revoke_access_key(&self, access_key_id: &str) {
        self.state.access.state().revoke(access_key_id);
    }

    /// Makes a known access key expire now: its requests are answered `ExpiredTokenException`
    /// (STS: `ExpiredToken`), 403, "The security token included in the request is expired".
    /// `false` when the simulator does not know the key.
    pub fn expire_access_key(&self, access_key_id: &str) -> bool {
        self.state.access.state().expire(access_key_id)
    }

    /// Credentials issued by `AssumeRole` from now on live `lifetime`, whatever
    /// `DurationSeconds` asks (`None`: what it asks, 900..=43200 s, default 3600 s). AWS never
    /// issues less than 900 s; shorter lifetimes are allowed here for tests.
    pub fn set_credential_lifetime(&self, lifetime: Option<Duration>) {
        self.state.access.state().lifetime = lifetime;
    }

    /// The clock that times issued credentials: their `Expiration` and the expiry check (default
    /// the system clock, which SDKs compare `Expiration` with). A manual clock (e.g.
    /// [`clock`](Self::clock)) lets a test expire credentials without waiting, if the client
    /// under test reads time from the same clock.
    pub fn set_credential_clock(&self, clock: Clock) {
        self.state.access.state().credential_clock = Some(clock);
    }

    /// The account an access key belongs to, when the simulator knows the key.
    pub fn key_account(&self, access_key_id: &str) -> Option<String> {
        self.state.access.state().account_of(access_key_id)
    }

    /// When an access key expires (milliseconds since the epoch, on the credential clock);
    /// `None` for keys that never expire and keys the simulator does not know.
    pub fn key_expiry_ms(&self, access_key_id: &str) -> Option<UnixMillis> {
        self.state.access.state().expiry_of(access_key_id)
    }
}
