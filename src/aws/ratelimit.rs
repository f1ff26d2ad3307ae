//! Client-side rate limits: one token bucket per region and account.

use super::*;

/// What a client-side rate limit is shared by: the region and the account the requests run as.
///
/// The account is the one of `role_arn` when a role is assumed (its ARN names it); without a role,
/// every portal runs as the base credentials, one principal, so they share one bucket per region.
/// A role ARN whose account cannot be read keys by the whole ARN. A different `endpoint_url` is a
/// different service (a local simulator, a VPC endpoint) and gets its own bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    /// Region (`None`: the SDK's region chain).
    pub region: Option<String>,
    /// Account id of the assumed role, the role ARN itself if unreadable, or `None` (base credentials).
    pub principal: Option<String>,
    /// Endpoint override.
    pub endpoint_url: Option<String>,
}

impl LimitKey {
    /// The bucket key of the requests made with `key`.
    pub fn of(key: &ClientKey) -> Self {
        LimitKey {
            region: key.region.clone(),
            principal: key
                .role_arn
                .as_deref()
                .map(|arn| account_of_arn(arn).unwrap_or(arn).to_string()),
            endpoint_url: key.endpoint_url.clone(),
        }
    }
}

/// The account id of an ARN (`arn:<partition>:<service>:<region>:<account>:<resource>`), when it is 12 digits.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let ["arn", _, _, _, account, _] = crate::arn::fields(arn)? else {
        return None;
    };
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// An async token bucket (GCRA, "virtual scheduling"): `rate` requests per second on average,
/// bursts of up to one second's worth (`max(1, rate)` requests) after an idle second.
///
/// Guarantee (unit-tested with synthetic instants): the send times it hands out put at most
/// `rate × W + burst` requests in any window of length `W`. [`acquire`](Self::acquire) reserves
/// a slot and sleeps until it; a caller that gives up while waiting (a poll timeout) still spends
/// its slot, which only ever errs on the slow side. Waiters are served in arrival order.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<BucketState>,
}

#[derive(Debug)]
pub(super) struct BucketState {
    /// Spacing between two requests at the steady rate; `None`: unlimited.
    emission: Option<std::time::Duration>,
    /// Theoretical arrival time of the next request at the steady rate.
    tat: tokio::time::Instant,
}

impl TokenBucket {
    /// A full bucket at `now` running at `rate` requests per second (`None`: unlimited).
    pub fn new(rate: Option<f64>, now: tokio::time::Instant) -> Self {
        TokenBucket {
            state: Mutex::new(BucketState {
                emission: emission(rate),
                tat: now,
            }),
        }
    }

    /// Changes the rate; requests already scheduled keep their slots.
    pub fn set_rate(&self, rate: Option<f64>) {
        self.lock().emission = emission(rate);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the next slot for a request wanting to go at `now`; returns how long to wait.
    pub fn reserve(&self, now: tokio::time::Instant) -> std::time::Duration {
        let mut s = self.lock();
        let Some(t) = s.emission else {
            return std::time::Duration::ZERO;
        };
        // Burst: one second's worth, at least one request.
        let tolerance = t.max(std::time::Duration::from_secs(1));
        let tat = s.tat.max(now) + t;
        s.tat = tat;
        (tat - tolerance).saturating_duration_since(now)
    }

    /// Waits for a slot (tokio time: a paused test clock applies).
    pub async fn acquire(&self) {
        let wait = self.reserve(tokio::time::Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Spacing of one request at `rate` per second, rounded up to the nanosecond (never faster).
pub(super) fn emission(rate: Option<f64>) -> Option<std::time::Duration> {
    let rate = rate.filter(|r| r.is_finite() && *r > 0.0)?;
    let nanos = (1e9 / rate).ceil();
    Some(std::time::Duration::from_nanos(
        if nanos >= u64::MAX as f64 {
            u64::MAX
        } else {
            nanos as u64
        },
    ))
}
