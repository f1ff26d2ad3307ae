//! The one bcrypt slot of the basic-auth users, handed out fairly between peers and users.
//!
//! bcrypt runs one verification at a time (a flood costs one core, not all of them). Who runs
//! next is decided round-robin at two levels: between peers ([`PeerKey`]) that have requests
//! waiting, then, within the peer whose turn it is, between the user names those requests give.
//! So a newcomer waits for at most one verification per other waiting peer (plus the one
//! running), however many requests those peers have queued: during a flood from one address,
//! a first login from another address waits for about two verifications, not for the whole
//! flood; and during a flood of one user name from the login's own address, the login (another
//! name) comes next within that address. A peer has at most [`PEER_QUEUE`] requests waiting,
//! at most [`USER_QUEUE`] of them for one name; further requests do not queue: they wait out
//! the caller's limit and are refused (503), so that a flood's surplus costs a timer each, not a
//! stream of instant answers that would eat the CPU bcrypt and the other clients need. Every
//! wait is bounded by the caller's limit.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::http::peer::PeerKey;

/// Most requests of one peer waiting for the slot (the running one not counted).
pub(in crate::http) const PEER_QUEUE: usize = 16;
/// Most requests of one peer for one user name waiting for the slot.
pub(in crate::http) const USER_QUEUE: usize = 4;

type Waiter = oneshot::Sender<BcryptPermit>;

/// The slot and its waiters.
#[derive(Debug, Default)]
pub(in crate::http) struct BcryptSlot {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// A verification holds the slot. While it does not, nobody waits (a freed slot goes to
    /// the next waiter at once).
    running: bool,
    waiting: RoundRobin<PeerKey, RoundRobin<String, VecDeque<Waiter>>>,
}

/// Waiters in the order they get the slot.
trait Waiters: Default {
    /// The next waiter that still waits, taken out.
    fn pop_open(&mut self) -> Option<Waiter>;
    /// How many still wait.
    fn open(&self) -> usize;
}

impl Waiters for VecDeque<Waiter> {
    fn pop_open(&mut self) -> Option<Waiter> {
        std::iter::from_fn(|| self.pop_front()).find(|tx| !tx.is_closed())
    }

    fn open(&self) -> usize {
        self.iter().filter(|tx| !tx.is_closed()).count()
    }
}

/// Queues by key, each key in turn.
#[derive(Debug)]
struct RoundRobin<K, W> {
    rotation: VecDeque<K>,
    queues: HashMap<K, W>,
}

impl<K, W> Default for RoundRobin<K, W> {
    fn default() -> Self {
        Self {
            rotation: VecDeque::new(),
            queues: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, W: Waiters> RoundRobin<K, W> {
    /// The queue of `key`, added at the back of the rotation if it had none; queues whose
    /// waiters all gave up are dropped first.
    fn queue(&mut self, key: K) -> &mut W {
        self.queues.retain(|_, q| q.open() > 0);
        let queues = &self.queues;
        self.rotation.retain(|k| queues.contains_key(k));
        if !self.queues.contains_key(&key) {
            self.rotation.push_back(key.clone());
        }
        self.queues.entry(key).or_default()
    }
}

impl<K: Hash + Eq + Clone, W: Waiters> Waiters for RoundRobin<K, W> {
    fn pop_open(&mut self) -> Option<Waiter> {
        while let Some(key) = self.rotation.pop_front() {
            let Some(queue) = self.queues.get_mut(&key) else {
                continue;
            };
            let next = queue.pop_open();
            if queue.open() > 0 {
                self.rotation.push_back(key);
            } else {
                self.queues.remove(&key);
            }
            if next.is_some() {
                return next;
            }
        }
        None
    }

    fn open(&self) -> usize {
        self.queues.values().map(W::open).sum()
    }
}

/// The right to run one bcrypt verification; hands the slot on when dropped.
#[derive(Debug)]
pub(in crate::http) struct BcryptPermit {
    slot: Option<Arc<BcryptSlot>>,
}

impl Drop for BcryptPermit {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.hand_over();
        }
    }
}

impl BcryptSlot {
    /// The slot for `user`'s request from `peer`: at once when free, otherwise in its turn;
    /// `None` after `limit` when the turn does not come, or when the peer (or the name) already
    /// has its most requests waiting. Cancel-safe: a dropped wait gives up its place.
    pub(in crate::http) async fn acquire(
        self: &Arc<Self>,
        peer: PeerKey,
        user: &str,
        limit: Duration,
    ) -> Option<BcryptPermit> {
        let turn = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if !queue.running {
                queue.running = true;
                return Some(self.permit());
            }
            let peer_queue = queue.waiting.queue(peer);
            let room = peer_queue.open() < PEER_QUEUE;
            let user_queue = peer_queue.queue(user.to_string());
            if room && user_queue.open() < USER_QUEUE {
                let (tx, rx) = oneshot::channel();
                user_queue.push_back(tx);
                Some(rx)
            } else {
                None
            }
        };
        let Some(turn) = turn else {
            // No room: wait out the bound all the same, so that a flood's surplus costs a
            // timer, not a stream of instant answers (CPU).
            tokio::time::sleep(limit).await;
            return None;
        };
        // A permit sent just as the wait times out is dropped with the channel, which hands
        // the slot on: it is never lost.
        tokio::time::timeout(limit, turn).await.ok()?.ok()
    }

    /// The slot if it is free now.
    pub(in crate::http) fn try_acquire(self: &Arc<Self>) -> Option<BcryptPermit> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.running {
            return None;
        }
        queue.running = true;
        Some(self.permit())
    }

    fn permit(self: &Arc<Self>) -> BcryptPermit {
        BcryptPermit {
            slot: Some(Arc::clone(self)),
        }
    }

    /// Gives the slot to the next waiter, or frees it.
    fn hand_over(self: &Arc<Self>) {
        loop {
            let next = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                match queue.waiting.pop_open() {
                    Some(next) => next,
                    None => {
                        queue.running = false;
                        return;
                    }
                }
            };
            // The lock is released: a refused permit is disarmed, then the next one is tried.
            match next.send(self.permit()) {
                Ok(()) => return,
                Err(mut refused) => refused.slot = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    fn peer(n: u32) -> PeerKey {
        PeerKey::V4(n)
    }

    /// The order in which `requests` (peer, user) get the slot, queued in that order while
    /// the slot is held, each releasing it at once.
    async fn order(requests: &[(u32, &'static str)]) -> Vec<usize> {
        let slot = Arc::new(BcryptSlot::default());
        let running = slot.try_acquire().expect("free");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, &(p, user)) in requests.iter().enumerate() {
            let (slot, order) = (Arc::clone(&slot), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let permit = slot.acquire(peer(p), user, LONG).await.expect("a turn");
                order.lock().unwrap().push(i);
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        drop(running);
        for task in tasks {
            task.await.unwrap();
        }
        assert!(slot.try_acquire().is_some(), "the slot is free again");
        order.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn waiters_are_served_round_robin_by_peer_then_by_user() {
        // Peer 2's request comes second, not after peer 1's whole queue.
        assert_eq!(
            order(&[(1, "a"), (1, "a"), (1, "a"), (2, "a")]).await,
            [0, 3, 1, 2]
        );
        // Within one peer, another name comes second, not after the first name's queue.
        assert_eq!(
            order(&[(1, "flood"), (1, "flood"), (1, "flood"), (1, "login")]).await,
            [0, 3, 1, 2]
        );
    }

    #[tokio::test]
    async fn queues_are_bounded_per_peer_and_per_name() {
        let slot = Arc::new(BcryptSlot::default());
        let _running = slot.try_acquire().expect("free");
        let short = Duration::from_millis(50);
        let mut waiting = Vec::new();
        let names: Vec<String> = (0..PEER_QUEUE).map(|i| format!("user{i}")).collect();
        for name in names {
            let slot = Arc::clone(&slot);
            waiting.push(tokio::spawn(async move {
                slot.acquire(peer(1), &name, LONG).await
            }));
            tokio::task::yield_now().await;
        }
        let surplus = slot.acquire(peer(1), "another", short);
        assert!(surplus.await.is_none(), "the peer's queue is full");
        for _ in 0..USER_QUEUE {
            let slot = Arc::clone(&slot);
            waiting.push(tokio::spawn(async move {
                slot.acquire(peer(2), "x", LONG).await
            }));
            tokio::task::yield_now().await;
        }
        assert!(
            slot.acquire(peer(2), "x", short).await.is_none(),
            "the name's queue is full"
        );
        let other = Arc::clone(&slot);
        let other = tokio::spawn(async move { other.acquire(peer(2), "y", LONG).await });
        tokio::task::yield_now().await;
        assert!(
            !other.is_finished(),
            "another name of the same peer still queues"
        );
        other.abort();
        for task in waiting {
            task.abort();
        }
    }

    #[tokio::test]
    async fn a_wait_that_times_out_loses_its_place_and_no_permit_is_lost() {
        let slot = Arc::new(BcryptSlot::default());
        let running = slot.try_acquire().expect("free");
        assert!(
            slot.acquire(peer(1), "a", Duration::from_millis(50))
                .await
                .is_none()
        );
        drop(running);
        assert!(
            slot.try_acquire().is_some(),
            "the slot was freed, not handed to the gone waiter"
        );
    }
}
