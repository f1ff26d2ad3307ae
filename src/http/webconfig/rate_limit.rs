//! `rate_limit`: a token bucket over requests, as the Go toolkit's (`golang.org/x/time/rate`).
//!
//! `interval` is the time one token takes to come back, `burst` how many the bucket holds (it
//! starts full). A request that finds the bucket empty gets 429 before anything else is done
//! for it (no bcrypt, no rendering). `interval: 0` (or no `rate_limit`) turns it off. Unlike the
//! toolkit, `/-/healthy` is not limited (as it is not behind basic auth: liveness probes must
//! not fail because of a flood), and `burst` must be at least 1 (the toolkit accepts 0, which
//! refuses every request).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Invalid;

/// `rate_limit` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    #[serde(default)]
    interval: Option<serde_norway::Value>,
    #[serde(default)]
    burst: Option<i64>,
}

/// The bucket in force.
#[derive(Debug)]
pub(in crate::http) struct RateLimit {
    interval: Duration,
    burst: u32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket of `burst` tokens, one coming back every `interval`.
    fn new(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                last: Instant::now(),
            }),
        }
    }

    /// Takes a token if there is one.
    pub(in crate::http) fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.last);
        bucket.last = bucket.last.max(now);
        let refill = elapsed.as_secs_f64() / self.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.burst));
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether `other` has the same settings (a reload that keeps them keeps the bucket).
    pub(in crate::http) fn same_settings(&self, other: &RateLimit) -> bool {
        (self.interval, self.burst) == (other.interval, other.burst)
    }
}

/// Checks `rate_limit`; `None` when it limits nothing.
pub(super) fn build(raw: RawRateLimit) -> Result<Option<RateLimit>, Invalid> {
    let interval = match raw.interval {
        None | Some(serde_norway::Value::Null) => Duration::ZERO,
        Some(serde_norway::Value::String(text)) => {
            parse_go_duration(&text).map_err(|e| Invalid::new("rate_limit.interval", e))?
        }
        Some(serde_norway::Value::Number(n)) if n.as_u64() == Some(0) => Duration::ZERO,
        Some(_) => {
            return Err(Invalid::new(
                "rate_limit.interval",
                "expected a duration such as 1s or 100ms",
            ));
        }
    };
    if interval.is_zero() {
        return Ok(None);
    }
    let burst = raw.burst.unwrap_or(0);
    let burst = u32::try_from(burst)
        .ok()
        .filter(|b| *b >= 1)
        .ok_or_else(|| {
            Invalid::new(
                "rate_limit.burst",
                format!(
                    "{burst} would refuse every request; use at least 1 (the number of requests \
                 allowed at once), or remove rate_limit"
                ),
            )
        })?;
    Ok(Some(RateLimit::new(interval, burst)))
}

/// Parses a Go duration (`1h30m`, `1.5s`, `100ms`, `250us`); negative ones are refused.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}; expected a duration such as 1s or 100ms");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with(['-', '+']) {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ok = |s: &str| parse_go_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("100ms"), Duration::from_millis(100));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("0"), Duration::ZERO);
        for bad in ["", "1", "-1s", "1x", "s", "1.2.3s", "1 s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_bucket_starts_full_and_refills_one_token_per_interval() {
        let limit = RateLimit::new(Duration::from_secs(1), 2);
        let start = Instant::now();
        assert!(limit.allow_at(start));
        assert!(limit.allow_at(start));
        assert!(!limit.allow_at(start));
        assert!(!limit.allow_at(start + Duration::from_millis(900)));
        assert!(limit.allow_at(start + Duration::from_millis(1000)));
        // Never more than `burst` at once, however long the pause.
        let later = start + Duration::from_secs(3600);
        assert!(limit.allow_at(later) && limit.allow_at(later));
        assert!(!limit.allow_at(later));
    }

    #[test]
    fn settings_are_checked() {
        let raw = |yaml: &str| -> RawRateLimit { serde_norway::from_str(yaml).unwrap() };
        assert!(build(raw("interval: 0\nburst: 5\n")).unwrap().is_none());
        assert!(build(raw("burst: 5\n")).unwrap().is_none());
        let e = build(raw("interval: 1s\nburst: 0\n")).unwrap_err();
        assert_eq!(e.key, "rate_limit.burst");
        assert!(e.message.contains("refuse every request"), "{}", e.message);
        let e = build(raw("interval: 10\nburst: 1\n")).unwrap_err();
        assert_eq!(e.key, "rate_limit.interval");
        let e = build(raw("interval: soon\nburst: 1\n")).unwrap_err();
        assert!(e.message.contains("\"soon\""), "{}", e.message);
        assert!(build(raw("interval: 1s\nburst: 3\n")).unwrap().is_some());
    }
}
