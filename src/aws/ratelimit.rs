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

/// Which requests a [`TokenBucket`] serves first when several wait for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// A poll's requests (the Active listing, the Terminated scan, `GetSession`) and discovery's
    /// `ListPortals`: what makes the series current. Served first.
    #[default]
    Poll,
    /// Monthly-users backfill pages and portal metadata (`GetPortal`): served only while no
    /// [`Poll`](Self::Poll) request waits, so they take only the capacity the polls leave.
    Background,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Priority::Poll => 0,
            Priority::Background => 1,
        }
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
    /// Waiting requests per [`Priority`] (by [`Priority::index`]), in arrival order.
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
        self.waiting[..=priority.index()]
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
        self.waiting[priority.index()].push_back(ticket);
        Some(ticket)
    }

    /// What the waiter `ticket` of `priority` may do at `now`; on [`Turn::Go`] it leaves the line.
    pub(super) fn turn(
        &mut self,
        priority: Priority,
        ticket: Ticket,
        now: tokio::time::Instant,
    ) -> Turn {
        let first = self.waiting[priority.index()].front() == Some(&ticket)
            && self.waiting[..priority.index()]
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
        let line = &mut self.waiting[priority.index()];
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
        let ahead: usize = self.waiting[..=priority.index()]
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
