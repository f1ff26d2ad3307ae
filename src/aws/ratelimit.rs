//! Client-side rate limits: one token bucket per region and account.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::arn::account_of_arn;
use super::types::{ClientKey, Priority};

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

/// The slot of `priority` in the line of waiters (polls first).
fn line_of(priority: Priority) -> usize {
    match priority {
        Priority::Poll => 0,
        Priority::Background => 1,
    }
}

/// An async token bucket (GCRA, "virtual scheduling"): `rate` requests per second on average,
/// bursts of up to one second's worth (`max(1, rate)` requests) after an idle second.
///
/// Guarantee (unit-tested with synthetic instants): the send times it hands out put at most
/// `rate × W + burst` requests in any window of length `W`, whatever the mix of priorities.
/// Waiters are served by [`Priority`], then in arrival order: a [`Priority::Background`] request
/// waits while any [`Priority::Poll`] request waits, and a poll arriving while background
/// requests wait takes the next slot before them. A slot is given out only when it is due, so a
/// caller that gives up while waiting (a poll timeout) leaves its place to the next one.
#[derive(Debug)]
pub struct TokenBucket {
    state: Mutex<Line>,
}

/// The schedule and how to wake each of its waiters: only the one first in line is woken when
/// the line moves (a slot taken, a waiter gone), so a long line costs nothing per slot.
#[derive(Debug)]
struct Line {
    schedule: Schedule,
    wakers: HashMap<Ticket, Arc<tokio::sync::Notify>>,
}

impl Line {
    /// Wakes the waiter now first in line (its `Notify` keeps the wake-up if it is not yet
    /// waiting, so none is lost).
    fn wake_first(&self) {
        if let Some(w) = self
            .schedule
            .first_in_line()
            .and_then(|t| self.wakers.get(&t))
        {
            w.notify_one();
        }
    }
}

/// Ticket of a waiting request, in arrival order.
pub(super) type Ticket = u64;

/// What a waiting request may do now (see [`Schedule::turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Its slot is now: it was taken for it, the request may go.
    Go,
    /// It is first in line; its slot is at this instant (ask again then).
    At(tokio::time::Instant),
    /// Others go first: wait until the line changes.
    Behind,
}

/// The bucket's state and its line of waiters: pure, driven by the instants it is given.
#[derive(Debug)]
pub(super) struct Schedule {
    /// Spacing between two requests at the steady rate; `None`: unlimited.
    emission: Option<std::time::Duration>,
    /// Theoretical arrival time of the next request at the steady rate.
    tat: tokio::time::Instant,
    /// Waiting requests per [`Priority`] (by [`line_of`]), in arrival order.
    waiting: [std::collections::VecDeque<Ticket>; 2],
    /// The next ticket number.
    next_ticket: Ticket,
}

impl Schedule {
    pub(super) fn new(rate: Option<f64>, now: tokio::time::Instant) -> Self {
        Schedule {
            emission: emission(rate),
            tat: now,
            waiting: Default::default(),
            next_ticket: 0,
        }
    }

    /// Burst tolerance for spacing `t`: one second's worth, at least one request.
    fn tolerance(t: std::time::Duration) -> std::time::Duration {
        t.max(std::time::Duration::from_secs(1))
    }

    /// When the next slot is due (GCRA conformance: `max(tat, now) + t - tolerance`).
    fn due(&self, t: std::time::Duration, now: tokio::time::Instant) -> tokio::time::Instant {
        let next = self.tat.max(now) + t;
        next.checked_sub(Self::tolerance(t)).unwrap_or(now).max(now)
    }

    /// Takes the next slot for a request sent at `now` (it must be due).
    fn take(&mut self, t: std::time::Duration, now: tokio::time::Instant) {
        self.tat = self.tat.max(now) + t;
    }

    /// Reserves the next slot at once, ahead of the line; returns how long to wait for it.
    pub(super) fn reserve(&mut self, now: tokio::time::Instant) -> std::time::Duration {
        let Some(t) = self.emission else {
            return std::time::Duration::ZERO;
        };
        let due = self.due(t, now);
        self.take(t, now);
        due - now
    }

    /// Whether nobody of `priority` or above waits.
    fn line_is_empty(&self, priority: Priority) -> bool {
        self.waiting[..=line_of(priority)]
            .iter()
            .all(|q| q.is_empty())
    }

    /// A request of `priority` arriving at `now`: `None` if it may go at once (its slot is
    /// taken), else its ticket in the line.
    pub(super) fn arrive(
        &mut self,
        priority: Priority,
        now: tokio::time::Instant,
    ) -> Option<Ticket> {
        let go = match self.emission {
            None => true,
            Some(t) => self.line_is_empty(priority) && self.due(t, now) <= now,
        };
        if go {
            if let Some(t) = self.emission {
                self.take(t, now);
            }
            return None;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiting[line_of(priority)].push_back(ticket);
        Some(ticket)
    }

    /// What the waiter `ticket` of `priority` may do at `now`; on [`Turn::Go`] it leaves the line.
    pub(super) fn turn(
        &mut self,
        priority: Priority,
        ticket: Ticket,
        now: tokio::time::Instant,
    ) -> Turn {
        let first = self.waiting[line_of(priority)].front() == Some(&ticket)
            && self.waiting[..line_of(priority)]
                .iter()
                .all(|q| q.is_empty());
        let go_at = match self.emission {
            None => now,
            Some(_) if !first => return Turn::Behind,
            Some(t) => self.due(t, now),
        };
        if go_at > now {
            return Turn::At(go_at);
        }
        if let Some(t) = self.emission {
            self.take(t, now);
        }
        self.leave(priority, ticket);
        Turn::Go
    }

    /// Removes `ticket` from the line (served, or its caller gave up).
    pub(super) fn leave(&mut self, priority: Priority, ticket: Ticket) {
        let line = &mut self.waiting[line_of(priority)];
        if let Some(i) = line.iter().position(|&w| w == ticket) {
            line.remove(i);
        }
    }

    /// An estimate of the wait of a request of `priority` arriving at `now`: exact for a poll
    /// (unless the rate changes), a lower bound for a background request (polls may still come).
    pub(super) fn estimate(
        &self,
        priority: Priority,
        now: tokio::time::Instant,
    ) -> std::time::Duration {
        let Some(t) = self.emission else {
            return std::time::Duration::ZERO;
        };
        let ahead: usize = self.waiting[..=line_of(priority)]
            .iter()
            .map(|q| q.len())
            .sum();
        let slots = u32::try_from(ahead).unwrap_or(u32::MAX);
        let next = self.tat.max(now) + t.saturating_mul(slots.saturating_add(1));
        next.checked_sub(Self::tolerance(t))
            .unwrap_or(now)
            .saturating_duration_since(now)
    }

    /// The waiter that goes next: the first of the highest priority that has waiters.
    pub(super) fn first_in_line(&self) -> Option<Ticket> {
        self.waiting.iter().find_map(|q| q.front().copied())
    }

    /// Requests waiting now.
    pub(super) fn waiters(&self) -> usize {
        self.waiting.iter().map(|q| q.len()).sum()
    }
}

/// A place in a bucket's line, given up when dropped (the caller stopped waiting).
struct Place<'a> {
    bucket: &'a TokenBucket,
    priority: Priority,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            let mut line = self.bucket.lock();
            line.schedule.leave(self.priority, ticket);
            line.wakers.remove(&ticket);
            line.wake_first();
        }
    }
}

impl TokenBucket {
    /// A full bucket at `now` running at `rate` requests per second (`None`: unlimited).
    pub fn new(rate: Option<f64>, now: tokio::time::Instant) -> Self {
        TokenBucket {
            state: Mutex::new(Line {
                schedule: Schedule::new(rate, now),
                wakers: HashMap::new(),
            }),
        }
    }

    /// Changes the rate; waiters take their slots at the new rate, slots already given keep it.
    pub fn set_rate(&self, rate: Option<f64>) {
        let mut line = self.lock();
        line.schedule.emission = emission(rate);
        // Every waiter looks again (without a limit, all of them go at once).
        for w in line.wakers.values() {
            w.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Line> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves the next slot for a request wanting to go at `now`, ahead of any waiter, and
    /// returns how long to wait for it (for a caller that paces itself; the line is not used).
    pub fn reserve(&self, now: tokio::time::Instant) -> std::time::Duration {
        self.lock().schedule.reserve(now)
    }

    /// How long a request of `priority` would wait if it asked now: exact for a poll (unless the
    /// rate changes), a lower bound for a background request (polls may still come).
    pub fn estimate(&self, priority: Priority) -> std::time::Duration {
        self.lock()
            .schedule
            .estimate(priority, tokio::time::Instant::now())
    }

    /// Whether a rate is set (requests are paced at all).
    pub fn is_limited(&self) -> bool {
        self.lock().schedule.emission.is_some()
    }

    /// Requests waiting for a slot now.
    pub fn waiters(&self) -> usize {
        self.lock().schedule.waiters()
    }

    /// Waits for a slot as a [`Priority::Poll`] request.
    pub async fn acquire(&self) {
        self.acquire_as(Priority::Poll).await;
    }

    /// Waits for a slot as a request of `priority` (tokio time: a paused test clock applies);
    /// returns the time waited. Dropping the future gives the place up without spending a slot.
    pub async fn acquire_as(&self, priority: Priority) -> std::time::Duration {
        let began = tokio::time::Instant::now();
        let wake = Arc::new(tokio::sync::Notify::new());
        let ticket = {
            let mut line = self.lock();
            let Some(ticket) = line.schedule.arrive(priority, began) else {
                return std::time::Duration::ZERO;
            };
            line.wakers.insert(ticket, wake.clone());
            ticket
        };
        let mut place = Place {
            bucket: self,
            priority,
            ticket: Some(ticket),
        };
        loop {
            let now = tokio::time::Instant::now();
            let turn = {
                let mut line = self.lock();
                let turn = line.schedule.turn(priority, ticket, now);
                if turn == Turn::Go {
                    place.ticket = None;
                    line.wakers.remove(&ticket);
                    // The next in line may go now, or computes when its slot is.
                    line.wake_first();
                }
                turn
            };
            match turn {
                Turn::Go => return now - began,
                Turn::At(at) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Turn::Behind => wake.notified().await,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(bucket: &TokenBucket, arrivals: &[tokio::time::Instant]) -> Vec<tokio::time::Instant> {
        arrivals.iter().map(|&a| a + bucket.reserve(a)).collect()
    }

    /// Most sends in any closed window of length `w` (windows start at a send).
    fn max_in_window(sends: &[tokio::time::Instant], w: std::time::Duration) -> usize {
        let mut s = sends.to_vec();
        s.sort();
        (0..s.len())
            .map(|i| s[i..].iter().take_while(|&&t| t - s[i] <= w).count())
            .max()
            .unwrap_or(0)
    }

    /// At most `rate × W + burst` sends in windows `W` from 1 ms to a minute.
    fn assert_window_bound(sends: &[tokio::time::Instant], rate: f64) {
        let burst = rate.max(1.0);
        for ms in [1u64, 200, 999, 1000, 2500, 10_000, 60_000] {
            let w = std::time::Duration::from_millis(ms);
            let n = max_in_window(sends, w);
            let bound = (rate * w.as_secs_f64() + burst).floor() as usize;
            assert!(n <= bound, "rate {rate}: {n} sends in {w:?}, bound {bound}");
        }
    }

    #[test]
    fn token_bucket_bounds_every_window() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        // Bursts of 40 requests at once, idle gaps, and a steady trickle faster than the rate.
        let mut arrivals = Vec::new();
        for burst in 0..5u64 {
            for _ in 0..40 {
                arrivals.push(t0 + Duration::from_secs(burst * 30));
            }
        }
        for i in 0..300u64 {
            arrivals.push(t0 + Duration::from_secs(200) + Duration::from_millis(i * 37));
        }
        arrivals.sort();
        for rate in [5.0, 1.0, 0.5, 13.0] {
            let bucket = TokenBucket::new(Some(rate), t0);
            let s = sends(&bucket, &arrivals);
            assert_window_bound(&s, rate);
            // Never sent before asked, and in arrival order.
            assert!(s.iter().zip(&arrivals).all(|(s, a)| s >= a));
            assert!(s.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn token_bucket_allows_one_second_burst_then_paces() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let bucket = TokenBucket::new(Some(5.0), t0);
        let waits: Vec<Duration> = (0..8).map(|_| bucket.reserve(t0)).collect();
        assert_eq!(&waits[..5], &[Duration::ZERO; 5]);
        assert_eq!(waits[5], Duration::from_millis(200));
        assert_eq!(waits[7], Duration::from_millis(600));
        // Idle for a long time: the burst is back, not more.
        let later = t0 + Duration::from_secs(100);
        let waits: Vec<Duration> = (0..6).map(|_| bucket.reserve(later)).collect();
        assert_eq!(&waits[..5], &[Duration::ZERO; 5]);
        assert_eq!(waits[5], Duration::from_millis(200));
        // Unlimited never waits; a new rate applies to the next reservation.
        let free = TokenBucket::new(None, t0);
        assert!((0..1000).all(|_| free.reserve(t0).is_zero()));
        free.set_rate(Some(1.0));
        assert!(free.reserve(t0).is_zero());
        assert_eq!(free.reserve(t0), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn token_bucket_acquire_waits_for_its_slot() {
        let t0 = tokio::time::Instant::now();
        let bucket = Arc::new(TokenBucket::new(Some(20.0), t0));
        let mut tasks = Vec::new();
        for _ in 0..23 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move {
                b.acquire().await;
                tokio::time::Instant::now()
            }));
        }
        let mut done = Vec::new();
        for t in tasks {
            done.push(t.await.expect("task"));
        }
        // 20 at once, then one every 50 ms: the last one not before 150 ms (a sleep never ends
        // early, so this lower bound cannot flake).
        let last = done.iter().max().copied().expect("some");
        assert!(last - t0 >= std::time::Duration::from_millis(150));
    }

    /// Drives a [`Schedule`] through `arrivals` (sorted by instant) as the async waiters would:
    /// at each instant, arrivals join first, then every waiter asks for its turn until nobody
    /// can go. Returns (index of the request, send instant) in the order the slots were given.
    fn serve(
        rate: f64,
        t0: tokio::time::Instant,
        arrivals: &[(tokio::time::Instant, Priority)],
    ) -> Vec<(usize, tokio::time::Instant)> {
        let mut schedule = Schedule::new(Some(rate), t0);
        let mut waiting: Vec<(usize, Priority, Ticket)> = Vec::new();
        let mut sent = Vec::new();
        let (mut next, mut now) = (0, t0);
        loop {
            while let Some(&(at, priority)) = arrivals.get(next).filter(|(at, _)| *at <= now) {
                match schedule.arrive(priority, at.max(now)) {
                    None => sent.push((next, now)),
                    Some(ticket) => waiting.push((next, priority, ticket)),
                }
                next += 1;
            }
            let mut wake;
            loop {
                let before = waiting.len();
                wake = None;
                waiting.retain(|&(i, priority, ticket)| {
                    match schedule.turn(priority, ticket, now) {
                        Turn::Go => {
                            sent.push((i, now));
                            false
                        }
                        Turn::At(at) => {
                            wake = Some(wake.map_or(at, |w: tokio::time::Instant| w.min(at)));
                            true
                        }
                        Turn::Behind => true,
                    }
                });
                if waiting.len() == before {
                    break;
                }
            }
            let arrival = arrivals.get(next).map(|(at, _)| *at);
            now = match (wake, arrival) {
                (Some(w), Some(a)) => w.min(a),
                (Some(w), None) => w,
                (None, Some(a)) => a,
                (None, None) => break,
            };
        }
        assert!(waiting.is_empty(), "every request is served in the end");
        sent
    }

    #[test]
    fn a_background_request_never_overtakes_a_waiting_poll() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // A backfill of 150 pages queued at once, then a trickle; polls of 3 requests arriving
        // in bursts while it waits (portals' first polls, then their next ones), one of them
        // at the very instant a background slot is due.
        let mut arrivals: Vec<(tokio::time::Instant, Priority)> =
            (0..150).map(|_| (t0, Priority::Background)).collect();
        for k in 0..40u64 {
            arrivals.push((ms(500 + k * 770), Priority::Background));
        }
        for start in [
            0u64, 300, 1_250, 1_400, 6_000, 6_000, 6_200, 20_000, 20_001, 41_000,
        ] {
            for _ in 0..3 {
                arrivals.push((ms(start), Priority::Poll));
            }
        }
        arrivals.push((ms(1_200), Priority::Poll));
        arrivals.sort_by_key(|(at, _)| *at);
        for rate in [5.0, 1.0, 13.0] {
            let sent = serve(rate, t0, &arrivals);
            assert_eq!(sent.len(), arrivals.len());
            let order: HashMap<usize, usize> =
                sent.iter().enumerate().map(|(k, (i, _))| (*i, k)).collect();
            for (k, &(i, at)) in sent.iter().enumerate() {
                assert!(at >= arrivals[i].0, "never sent before asked");
                if arrivals[i].1 != Priority::Background {
                    continue;
                }
                // Every poll that had arrived when this background request went, went before
                // (at one instant, requests arrive in index order, then the waiters are served).
                for (j, &(arrived, priority)) in arrivals.iter().enumerate() {
                    let before = arrived < at || (arrived == at && (j < i || arrivals[i].0 < at));
                    if priority == Priority::Poll && before {
                        assert!(
                            order[&j] < k,
                            "rate {rate}: background request {i} sent at {:?} before poll {j} (arrived {:?})",
                            at - t0,
                            arrived - t0
                        );
                    }
                }
            }
            // Polls among themselves, and background requests among themselves, keep arrival order.
            for class in [Priority::Poll, Priority::Background] {
                let mine: Vec<usize> = sent
                    .iter()
                    .map(|(i, _)| *i)
                    .filter(|i| arrivals[*i].1 == class)
                    .collect();
                assert!(mine.windows(2).all(|w| w[0] < w[1]), "{class:?} in order");
            }
            // The window bound holds for the union of both classes.
            let times: Vec<tokio::time::Instant> = sent.iter().map(|(_, at)| *at).collect();
            assert_window_bound(&times, rate);
            // A poll waits only for the polls ahead of it and for the slot due next: at most
            // (polls still waiting when it arrived + 1) spacings, however many background
            // requests wait.
            let spacing = Duration::from_secs_f64(1.0 / rate);
            let sent_at: HashMap<usize, tokio::time::Instant> = sent.iter().copied().collect();
            for (j, &(arrived, priority)) in arrivals.iter().enumerate() {
                if priority != Priority::Poll {
                    continue;
                }
                let ahead = arrivals
                    .iter()
                    .enumerate()
                    .filter(|&(k, &(a, p))| {
                        p == Priority::Poll && k < j && a <= arrived && sent_at[&k] >= arrived
                    })
                    .count();
                let waited = sent_at[&j] - arrived;
                let most = spacing * (u32::try_from(ahead).expect("few") + 1);
                assert!(
                    waited <= most + Duration::from_micros(1),
                    "rate {rate}: poll {j} waited {waited:?} with {ahead} polls ahead"
                );
            }
        }
    }

    #[test]
    fn a_waiter_that_gives_up_spends_no_slot() {
        use std::time::Duration;
        let t0 = tokio::time::Instant::now();
        let mut s = Schedule::new(Some(5.0), t0);
        assert!(
            (0..5).all(|_| s.arrive(Priority::Poll, t0).is_none()),
            "the burst"
        );
        let a = s.arrive(Priority::Background, t0).expect("waits");
        let b = s.arrive(Priority::Background, t0).expect("waits");
        let p = s.arrive(Priority::Poll, t0).expect("waits");
        let slot = t0 + Duration::from_millis(200);
        assert_eq!(s.turn(Priority::Background, a, t0), Turn::Behind);
        assert_eq!(s.estimate(Priority::Poll, t0), Duration::from_millis(400));
        assert_eq!(s.turn(Priority::Poll, p, t0), Turn::At(slot));
        assert_eq!(s.turn(Priority::Poll, p, slot), Turn::Go);
        assert_eq!(s.waiters(), 2);
        // `a` gives up: `b` takes the very next slot.
        s.leave(Priority::Background, a);
        let next = slot + Duration::from_millis(200);
        assert_eq!(s.turn(Priority::Background, b, slot), Turn::At(next));
        assert_eq!(s.turn(Priority::Background, b, next), Turn::Go);
        assert_eq!(s.waiters(), 0);
    }

    /// A bucket of 20 requests/s (a burst of 20) whose next `taken` slots are reserved now.
    fn bucket_at_20_per_s_with_slots_taken(taken: usize) -> Arc<TokenBucket> {
        let now = tokio::time::Instant::now();
        let bucket = Arc::new(TokenBucket::new(Some(20.0), now));
        for _ in 0..taken {
            bucket.reserve(now);
        }
        bucket
    }

    #[tokio::test]
    async fn acquire_serves_a_later_poll_before_an_earlier_background_request() {
        // Empty the burst: the next slot is 50 ms away.
        let bucket = bucket_at_20_per_s_with_slots_taken(20);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |priority: Priority| {
            let (bucket, order) = (bucket.clone(), order.clone());
            tokio::spawn(async move {
                bucket.acquire_as(priority).await;
                order.lock().expect("order").push(priority);
            })
        };
        let until_waiting = |n: usize| {
            let bucket = bucket.clone();
            async move {
                while bucket.waiters() < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let background = spawn(Priority::Background);
        until_waiting(1).await;
        // One more background request that gives up while it waits: it must not delay anyone.
        let quitter = spawn(Priority::Background);
        until_waiting(2).await;
        quitter.abort();
        assert!(quitter.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(bucket.waiters(), 1);
        let poll = spawn(Priority::Poll);
        until_waiting(2).await;
        poll.await.expect("poll");
        background.await.expect("background");
        assert_eq!(
            *order.lock().expect("order"),
            vec![Priority::Poll, Priority::Background]
        );
        assert_eq!(bucket.waiters(), 0);
    }

    #[tokio::test]
    async fn a_long_line_drains_polls_first_then_in_arrival_order() {
        // The next free slot is half a second away: time enough for everyone to queue.
        let bucket = bucket_at_20_per_s_with_slots_taken(30);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Background requests 0..6 queue first, then polls 6..9: only the first in line is
        // woken at each slot, and nobody is forgotten.
        for (n, priority) in (0..9).map(|n| {
            let p = if n < 6 {
                Priority::Background
            } else {
                Priority::Poll
            };
            (n, p)
        }) {
            let (b, order) = (bucket.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire_as(priority).await;
                order.lock().expect("order").push(n);
            }));
            while bucket.waiters() < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.expect("served");
        }
        assert_eq!(
            *order.lock().expect("order"),
            vec![6, 7, 8, 0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn limit_keys_share_by_region_and_account() {
        let role = |arn: &str| ClientKey {
            region: Some("eu-west-1".into()),
            role_arn: Some(arn.into()),
            ..Default::default()
        };
        let a = LimitKey::of(&role("arn:aws:iam::123456789012:role/a"));
        let b = LimitKey::of(&role("arn:aws:iam::123456789012:role/b"));
        let c = LimitKey::of(&role("arn:aws:iam::210987654321:role/a"));
        assert_eq!(a, b, "two roles of one account share the account's limit");
        assert_ne!(a, c);
        assert_eq!(a.principal.as_deref(), Some("123456789012"));
        let base = LimitKey::of(&ClientKey {
            region: Some("eu-west-1".into()),
            ..Default::default()
        });
        assert_eq!(base.principal, None);
        assert_eq!(account_of_arn("arn:aws:iam::12:role/x"), None);
        assert_eq!(
            LimitKey::of(&role("not-an-arn")).principal.as_deref(),
            Some("not-an-arn")
        );
    }
}
