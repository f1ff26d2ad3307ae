//! The session model of one portal: a vector of sessions sorted by `(start, id)`, generated
//! deterministically from a seed in one-hour buckets (history up front, the future lazily), or
//! scripted by a test. What a listing shows is a pure function of "now".

use std::sync::Arc;

use crate::config::GeneratedModel;
use crate::error::SimError;
use crate::record::{SessionStatus, SimSession, UnixMillis};
use crate::rng::{Rng, mix};

/// One hour in milliseconds: the size of a generation bucket.
pub(crate) const HOUR_MS: i64 = 3_600_000;
/// How long terminated sessions stay listed (35 days, as AWS documents).
pub const RETENTION_MS: i64 = 35 * 24 * HOUR_MS;
/// History buckets generated before the anchor hour.
const HISTORY_BUCKETS: i64 = 35 * 24;
/// Shortest generated session.
const MIN_DURATION_MS: i64 = 5_000;
/// Longest generated session (12 hours).
pub(crate) const MAX_DURATION_MS: i64 = 12 * HOUR_MS;
/// End time of a session that has not been ended (scripted sessions only).
const OPEN: i64 = i64::MAX;

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Oldest start first.
    Ascending,
    /// Newest start first.
    Descending,
}

/// Filters of `ListSessions`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    /// `status`.
    pub(crate) status: Option<SessionStatus>,
    /// `username`, exact match.
    pub(crate) username: Option<String>,
    /// `sessionId`, exact match.
    pub(crate) session_id: Option<String>,
}

/// Position of the last listed item: the sort key `(start, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Start of the last item.
    pub(crate) start_ms: i64,
    /// Id of the last item.
    pub(crate) id: String,
}

/// One stored session.
#[derive(Debug, Clone)]
struct Stored {
    start_ms: i64,
    end_ms: i64,
    id: String,
    username: Option<Arc<str>>,
}

impl Stored {
    fn key(&self) -> (i64, &str) {
        (self.start_ms, &self.id)
    }

    /// Listed at `now`: started, and not ended more than the retention period ago.
    fn visible(&self, now: i64) -> bool {
        self.start_ms <= now && self.end_ms > now.saturating_sub(RETENTION_MS)
    }

    fn status(&self, now: i64) -> SessionStatus {
        if self.end_ms <= now {
            SessionStatus::Terminated
        } else {
            SessionStatus::Active
        }
    }

    fn matches(&self, now: i64, f: &Filter) -> bool {
        if let Some(st) = &f.status
            && &self.status(now) != st
        {
            return false;
        }
        if let Some(u) = &f.username
            && self.username.as_deref() != Some(u.as_str())
        {
            return false;
        }
        if let Some(id) = &f.session_id
            && &self.id != id
        {
            return false;
        }
        true
    }

    fn view(&self, now: i64) -> SimSession {
        SimSession {
            id: self.id.clone(),
            username: self.username.as_deref().map(str::to_string),
            start_ms: self.start_ms,
            end_ms: (self.end_ms <= now).then_some(self.end_ms),
        }
    }

    fn from_sim(s: &SimSession) -> Self {
        Self {
            start_ms: s.start_ms,
            end_ms: s.end_ms.unwrap_or(OPEN),
            id: s.id.clone(),
            username: s.username.as_deref().map(Arc::from),
        }
    }
}

/// Lazily extends a generated portal hour by hour.
#[derive(Debug)]
struct Generator {
    model: GeneratedModel,
    seed: u64,
    users: Vec<Arc<str>>,
    /// Start of the first bucket not generated yet.
    generated_until: i64,
}

/// The sessions of one portal.
#[derive(Debug)]
pub(crate) struct SessionStore {
    /// Sorted by `(start_ms, id)`.
    sessions: Vec<Stored>,
    generator: Option<Generator>,
}

/// Diurnal factor of the arrival rate at `t` (peak 14:00 UTC, trough 02:00 UTC).
fn diurnal(amplitude: f64, t: i64) -> f64 {
    let hour = (t.rem_euclid(24 * HOUR_MS)) as f64 / HOUR_MS as f64;
    (1.0 + amplitude * (std::f64::consts::TAU * (hour - 8.0) / 24.0).sin()).max(0.0)
}

/// The user pool of a generated portal.
fn user_pool(seed: u64, n: u32, odd: bool) -> Vec<Arc<str>> {
    const FIRST: [&str; 16] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj", "olivia", "peggy", "rupert", "sybil",
    ];
    const LAST: [&str; 12] = [
        "nguyen", "smith", "garcia", "kim", "okafor", "rossi", "tanaka", "novak", "silva", "cohen",
        "dubois", "larsen",
    ];
    let mut rng = Rng::new(mix(seed, 0x5553_4552));
    let mut users: Vec<Arc<str>> = (0..n.max(1))
        .map(|i| {
            let f = FIRST[(rng.next_u64() % FIRST.len() as u64) as usize];
            let l = LAST[(rng.next_u64() % LAST.len() as u64) as usize];
            Arc::from(format!("{f}.{l}{i}@example.com"))
        })
        .collect();
    if odd {
        let long: String = "x".repeat(240) + "@example.com....";
        let odd_names: [&str; 9] = [
            "o'brien \"the boss\"@example.com",
            "CORP\\jdoe",
            "josé.müller@example.com",
            "王伟",
            "🎉party@example.com",
            "new\nline@example.com",
            "",
            "  spaced  ",
            &long,
        ];
        // Spread them over the pool, keeping the first user ordinary.
        let spread = users.len().saturating_sub(1);
        for (i, name) in odd_names.iter().enumerate() {
            let slot = 1 + i * spread / odd_names.len();
            if slot < users.len() {
                users[slot] = Arc::from(*name);
            }
        }
    }
    users
}

impl Generator {
    /// A log-normal duration with the model's mean, clamped to [5 s, 12 h].
    fn duration_ms(&self, rng: &mut Rng) -> i64 {
        let sigma = self.model.duration_sigma.max(0.0);
        let mean_ms = (self.model.mean_duration_secs * 1000.0).max(1.0);
        let mu = mean_ms.ln() - sigma * sigma / 2.0;
        let d = (mu + sigma * rng.normal()).exp();
        (d as i64).clamp(MIN_DURATION_MS, MAX_DURATION_MS)
    }

    /// A username, skewed so that a few users have many sessions.
    fn username(&self, rng: &mut Rng) -> Arc<str> {
        let u = rng.next_f64().powf(1.6);
        let i = ((u * self.users.len() as f64) as usize).min(self.users.len() - 1);
        Arc::clone(&self.users[i])
    }

    fn session(&self, rng: &mut Rng, start_ms: i64) -> Stored {
        let id = rng.uuid();
        let end_ms = start_ms + self.duration_ms(rng);
        let username = Some(self.username(rng));
        Stored {
            start_ms,
            end_ms,
            id,
            username,
        }
    }

    /// Exactly `count` sessions starting uniformly in the bucket at `bucket_start`.
    fn bucket_exact(&self, bucket_start: i64, count: u64) -> Vec<Stored> {
        let mut rng = Rng::new(mix(
            self.seed,
            (bucket_start / HOUR_MS) as u64 ^ 0x4849_5354,
        ));
        let mut out: Vec<Stored> = (0..count)
            .map(|_| {
                let start = bucket_start + (rng.next_f64() * HOUR_MS as f64) as i64;
                self.session(&mut rng, start)
            })
            .collect();
        out.sort_by(|a, b| a.key().cmp(&b.key()));
        out
    }

    /// Poisson arrivals (thinned by the diurnal factor) in the bucket at `bucket_start`.
    fn bucket_poisson(&self, bucket_start: i64) -> Vec<Stored> {
        let mut out = Vec::new();
        let amp = self.model.diurnal_amplitude.clamp(0.0, 1.0);
        let max_rate = self.model.arrivals_per_hour * (1.0 + amp);
        if max_rate <= 0.0 || !max_rate.is_finite() {
            return out;
        }
        let mut rng = Rng::new(mix(self.seed, (bucket_start / HOUR_MS) as u64));
        let mut t = bucket_start as f64;
        let end = (bucket_start + HOUR_MS) as f64;
        loop {
            let u = 1.0 - rng.next_f64();
            t += -u.ln() / max_rate * HOUR_MS as f64;
            if t >= end {
                break;
            }
            let start = t as i64;
            let accept = rng.next_f64() * (1.0 + amp) < diurnal(amp, start);
            let s = self.session(&mut rng, start);
            if accept {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.key().cmp(&b.key()));
        out
    }

    /// History: exactly `history_sessions` sessions in the 35 days before `anchor_hour`,
    /// apportioned over the hours by the diurnal factor.
    fn history(&self, anchor_hour: i64) -> Vec<Stored> {
        let n = self.model.history_sessions;
        let amp = self.model.diurnal_amplitude.clamp(0.0, 1.0);
        let first = anchor_hour - HISTORY_BUCKETS * HOUR_MS;
        let weights: Vec<f64> = (0..HISTORY_BUCKETS)
            .map(|k| diurnal(amp, first + k * HOUR_MS + HOUR_MS / 2))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut out = Vec::with_capacity(n as usize);
        let mut cum = 0.0;
        let mut assigned = 0u64;
        for (k, w) in weights.iter().enumerate() {
            cum += w;
            let target = if k as i64 == HISTORY_BUCKETS - 1 || total <= 0.0 {
                n
            } else {
                ((n as f64) * cum / total).floor() as u64
            };
            let count = target.saturating_sub(assigned).min(n - assigned);
            assigned += count;
            out.extend(self.bucket_exact(first + k as i64 * HOUR_MS, count));
        }
        out
    }
}

impl SessionStore {
    /// A scripted store holding exactly `sessions`.
    pub(crate) fn scripted(sessions: &[SimSession]) -> Self {
        let mut v: Vec<Stored> = sessions.iter().map(Stored::from_sim).collect();
        v.sort_by(|a, b| a.key().cmp(&b.key()));
        v.dedup_by(|a, b| a.id == b.id && a.start_ms == b.start_ms);
        Self {
            sessions: v,
            generator: None,
        }
    }

    /// A generated store: history before the anchor hour now, the rest lazily.
    pub(crate) fn generated(model: &GeneratedModel, seed: u64, anchor_ms: i64) -> Self {
        let anchor_hour = anchor_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let generator = Generator {
            users: user_pool(seed, model.users, model.odd_usernames),
            model: model.clone(),
            seed,
            generated_until: anchor_hour,
        };
        let sessions = generator.history(anchor_hour);
        Self {
            sessions,
            generator: Some(generator),
        }
    }

    /// Makes sure every session that can start up to `now` (plus an hour) exists.
    pub(crate) fn extend_to(&mut self, now: i64) {
        let Some(g) = &mut self.generator else { return };
        let horizon = now.saturating_add(HOUR_MS);
        if g.generated_until > horizon {
            return;
        }
        // Buckets whose sessions all ended before the retention window can never be listed at
        // `now`: skip them rather than generating years of sessions after a big clock jump.
        let earliest_useful = now.saturating_sub(RETENTION_MS + MAX_DURATION_MS + HOUR_MS);
        if g.generated_until < earliest_useful {
            g.generated_until = earliest_useful.div_euclid(HOUR_MS) * HOUR_MS;
        }
        let append_at = self.sessions.len();
        while g.generated_until <= horizon {
            let bucket = g.bucket_poisson(g.generated_until);
            self.sessions.extend(bucket);
            g.generated_until += HOUR_MS;
        }
        // Scripted additions to a generated portal may lie beyond the old horizon.
        if append_at > 0
            && append_at < self.sessions.len()
            && self.sessions[append_at - 1].key() > self.sessions[append_at].key()
        {
            self.sessions.sort_by(|a, b| a.key().cmp(&b.key()));
        }
    }

    /// Number of sessions stored (all times).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// One page of a listing at `now`, after `cursor`, with at most `limit` items; the cursor of
    /// the last item is returned when more items match.
    pub(crate) fn list(
        &mut self,
        now: i64,
        order: Order,
        filter: &Filter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> (Vec<SimSession>, Option<Cursor>) {
        self.extend_to(now);
        let limit = limit.max(1);
        let mut page: Vec<&Stored> = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        let candidates: Box<dyn Iterator<Item = &Stored>> = match order {
            Order::Ascending => {
                let from = match cursor {
                    Some(c) => self
                        .sessions
                        .partition_point(|s| s.key() <= (c.start_ms, c.id.as_str())),
                    None => 0,
                };
                Box::new(
                    self.sessions[from..]
                        .iter()
                        .take_while(move |s| s.start_ms <= now),
                )
            }
            Order::Descending => {
                let to = match cursor {
                    Some(c) => self
                        .sessions
                        .partition_point(|s| s.key() < (c.start_ms, c.id.as_str())),
                    None => self.sessions.partition_point(|s| s.start_ms <= now),
                };
                Box::new(self.sessions[..to].iter().rev())
            }
        };
        for s in candidates {
            if !s.visible(now) || !s.matches(now, filter) {
                continue;
            }
            if page.len() == limit {
                more = true;
                break;
            }
            page.push(s);
        }
        let next = if more {
            page.last().map(|s| Cursor {
                start_ms: s.start_ms,
                id: s.id.clone(),
            })
        } else {
            None
        };
        (page.iter().map(|s| s.view(now)).collect(), next)
    }

    /// The session `id` as listed at `now`, if it is listed.
    pub(crate) fn get(&mut self, now: i64, id: &str) -> Option<SimSession> {
        self.extend_to(now);
        self.sessions
            .iter()
            .find(|s| s.id == id && s.visible(now))
            .map(|s| s.view(now))
    }

    /// Every session listed at `now`, oldest start first.
    pub(crate) fn at(&mut self, now: i64) -> Vec<SimSession> {
        self.extend_to(now);
        let to = self.sessions.partition_point(|s| s.start_ms <= now);
        self.sessions[..to]
            .iter()
            .filter(|s| s.visible(now))
            .map(|s| s.view(now))
            .collect()
    }

    /// Every stored session with its planned end (future ends included), starting in `[from, to)`.
    pub(crate) fn timeline(&mut self, from: i64, to: i64) -> Vec<SimSession> {
        self.extend_to(to);
        let a = self.sessions.partition_point(|s| s.start_ms < from);
        let b = self.sessions.partition_point(|s| s.start_ms < to);
        self.sessions[a..b.max(a)]
            .iter()
            .map(|s| SimSession {
                id: s.id.clone(),
                username: s.username.as_deref().map(str::to_string),
                start_ms: s.start_ms,
                end_ms: (s.end_ms != OPEN).then_some(s.end_ms),
            })
            .collect()
    }

    /// Adds a session; its id must be new to the portal.
    pub(crate) fn add(&mut self, s: &SimSession) -> Result<(), SimError> {
        if self.sessions.iter().any(|x| x.id == s.id) {
            return Err(SimError::DuplicateSession(s.id.clone()));
        }
        let st = Stored::from_sim(s);
        let at = self.sessions.partition_point(|x| x.key() < st.key());
        self.sessions.insert(at, st);
        Ok(())
    }

    /// Sets the end of session `id` (an end before the start is allowed: it makes an "incomplete" record).
    pub(crate) fn end(&mut self, id: &str, end_ms: UnixMillis) -> Result<(), SimError> {
        match self.sessions.iter_mut().find(|x| x.id == id) {
            Some(s) => {
                s.end_ms = end_ms;
                Ok(())
            }
            None => Err(SimError::UnknownSession(id.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(history: u64) -> GeneratedModel {
        GeneratedModel {
            arrivals_per_hour: 30.0,
            mean_duration_secs: 1800.0,
            history_sessions: history,
            ..GeneratedModel::default()
        }
    }

    #[test]
    fn odd_usernames_all_appear_in_a_small_pool() {
        let pool = user_pool(1, 25, true);
        assert!(pool.iter().any(|u| u.is_empty()));
        assert!(pool.iter().any(|u| u.contains('\n')));
        assert!(pool.iter().any(|u| u.chars().count() == 256));
        assert!(!user_pool(1, 25, false).iter().any(|u| u.is_empty()));
    }

    #[test]
    fn history_has_exact_count_and_is_deterministic() {
        let anchor = 1_764_000_000_000;
        let mut a = SessionStore::generated(&model(5_000), 1, anchor);
        let mut b = SessionStore::generated(&model(5_000), 1, anchor);
        assert_eq!(a.len(), 5_000);
        let at = anchor + 3 * HOUR_MS;
        assert_eq!(a.at(at), b.at(at));
        let c = SessionStore::generated(&model(5_000), 2, anchor).at(at);
        assert_ne!(a.at(at), c);
    }

    #[test]
    fn state_is_a_pure_function_of_time() {
        let anchor = 1_764_000_000_000;
        let mut a = SessionStore::generated(&model(100), 3, anchor);
        let mut b = SessionStore::generated(&model(100), 3, anchor);
        // a is queried going forward, b jumps straight to the end.
        let mut last = Vec::new();
        for h in 0..10 {
            last = a.at(anchor + h * HOUR_MS);
        }
        assert_eq!(last, b.at(anchor + 9 * HOUR_MS));
        // Going back in time gives the earlier state again.
        assert_eq!(a.at(anchor), b.at(anchor));
    }

    #[test]
    fn pages_are_disjoint_and_complete() {
        let anchor = 1_764_000_000_000;
        let mut s = SessionStore::generated(&model(2_000), 4, anchor);
        let now = anchor + HOUR_MS;
        for order in [Order::Ascending, Order::Descending] {
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let (page, next) = s.list(now, order, &Filter::default(), cursor.as_ref(), 137);
                seen.extend(page);
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let mut all = s.at(now);
            if order == Order::Descending {
                all.reverse();
            }
            assert_eq!(seen, all);
        }
    }
}
