//! The one bcrypt slot of the basic-auth users, handed out fairly between peers.
//!
//! bcrypt runs one verification at a time (a flood costs one core, not all of them). Who runs
//! next is decided per peer ([`PeerKey`]), round-robin: when the slot frees, it goes to the
//! first waiter of the next peer in the rotation, and that peer goes to the back if it has
//! more waiters. So a newcomer waits for at most one verification per other waiting peer (plus
//! the one running), however many requests those peers have queued: during a flood from one
//! address, a first login from another address waits for about two verifications, not for the
//! whole flood. A peer has at most [`PEER_QUEUE`] requests waiting; beyond that its requests
//! are refused at once (503), which is also what a flood's surplus gets. Every wait is bounded
//! by the caller's limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::http::peer::PeerKey;

/// Most requests of one peer waiting for the slot (the running one not counted).
pub(in crate::http) const PEER_QUEUE: usize = 4;

/// The slot and its waiters.
#[derive(Debug, Default)]
pub(in crate::http) struct BcryptSlot {
    queue: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    running: bool,
    /// Peers with waiters, in the order they get the slot.
    rotation: VecDeque<PeerKey>,
    waiting: HashMap<PeerKey, VecDeque<oneshot::Sender<BcryptPermit>>>,
}

impl Queue {
    /// The next waiter in the rotation that still waits, if any.
    fn next_waiter(&mut self) -> Option<oneshot::Sender<BcryptPermit>> {
        while let Some(peer) = self.rotation.pop_front() {
            let Some(waiters) = self.waiting.get_mut(&peer) else {
                continue;
            };
            let next = std::iter::from_fn(|| waiters.pop_front()).find(|tx| !tx.is_closed());
            if waiters.iter().any(|tx| !tx.is_closed()) {
                self.rotation.push_back(peer);
            } else {
                self.waiting.remove(&peer);
            }
            if next.is_some() {
                return next;
            }
        }
        None
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
    /// The slot for `peer`: at once when free, otherwise in its turn; `None` when the peer
    /// already has [`PEER_QUEUE`] requests waiting, or when the turn does not come within
    /// `limit`. Cancel-safe: a dropped wait gives up its place.
    pub(in crate::http) async fn acquire(
        self: &Arc<Self>,
        peer: PeerKey,
        limit: Duration,
    ) -> Option<BcryptPermit> {
        let turn = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if !queue.running && queue.rotation.is_empty() {
                queue.running = true;
                return Some(self.permit());
            }
            let waiters = queue.waiting.entry(peer).or_default();
            waiters.retain(|tx| !tx.is_closed());
            if waiters.len() >= PEER_QUEUE {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            waiters.push_back(tx);
            if !queue.rotation.contains(&peer) {
                queue.rotation.push_back(peer);
            }
            rx
        };
        // A permit sent just as the wait times out is dropped with the channel, which hands
        // the slot on: it is never lost.
        tokio::time::timeout(limit, turn).await.ok()?.ok()
    }

    /// The slot if it is free now.
    pub(in crate::http) fn try_acquire(self: &Arc<Self>) -> Option<BcryptPermit> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.running || !queue.rotation.is_empty() {
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
                match queue.next_waiter() {
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

    /// The order in which waiters get the slot, each releasing it at once.
    #[tokio::test]
    async fn waiters_are_served_round_robin_by_peer() {
        let slot = Arc::new(BcryptSlot::default());
        let running = slot.try_acquire().expect("free");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Peer 1 queues three requests, then peer 2 one.
        for (i, p) in [(0, 1), (1, 1), (2, 1), (3, 2)] {
            let (slot, order) = (Arc::clone(&slot), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let permit = slot.acquire(peer(p), LONG).await.expect("a turn");
                order.lock().unwrap().push(i);
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        drop(running);
        for task in tasks {
            task.await.unwrap();
        }
        // Peer 2's request comes second, not after peer 1's whole queue.
        assert_eq!(*order.lock().unwrap(), [0, 3, 1, 2]);
        assert!(slot.try_acquire().is_some(), "the slot is free again");
    }

    #[tokio::test]
    async fn a_peer_queues_at_most_peer_queue_requests() {
        let slot = Arc::new(BcryptSlot::default());
        let _running = slot.try_acquire().expect("free");
        let mut waiting = Vec::new();
        for _ in 0..PEER_QUEUE {
            let slot = Arc::clone(&slot);
            waiting.push(tokio::spawn(
                async move { slot.acquire(peer(1), LONG).await },
            ));
            tokio::task::yield_now().await;
        }
        assert!(
            slot.acquire(peer(1), LONG).await.is_none(),
            "refused at once"
        );
        let other = Arc::clone(&slot);
        let other = tokio::spawn(async move { other.acquire(peer(2), LONG).await });
        tokio::task::yield_now().await;
        assert!(!other.is_finished(), "another peer still queues");
        for task in waiting {
            task.abort();
        }
    }

    #[tokio::test]
    async fn a_wait_that_times_out_loses_its_place_and_no_permit_is_lost() {
        let slot = Arc::new(BcryptSlot::default());
        let running = slot.try_acquire().expect("free");
        assert!(
            slot.acquire(peer(1), Duration::from_millis(50))
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
