//! Who gets one of the `--web.max-connections` slots: a fair connection cap.
//!
//! Every accepted connection asks [`Admission::admit`] for a slot before anything is read from
//! it, and holds the returned [`Slot`] until it ends. The rules:
//! - A connection is *evictable* while no request is in progress on it: from its admission
//!   (through the TLS handshake and the first request head) until hyper hands a complete
//!   request head to the service, and again from the end of each response until the next head
//!   is complete. An idle keep-alive connection and a client still sending its head (a
//!   slow-header client) are both evictable; a connection whose request is being answered is
//!   not.
//! - Its age is the time since it last became evictable. A slow-header client ages from its
//!   admission or its previous response, like an idle one, so a stalled head is evicted before
//!   a connection that just finished a response. A legitimate client sends its head in one
//!   segment, within milliseconds: it is the youngest, never the oldest.
//! - Peers: no peer holds more than half the cap ([`Admission::new`]); a peer is an IPv4
//!   address, or an IPv6 /64 ([`PeerKey`]). A new connection from a peer at its share takes the place of that peer's oldest
//!   evictable connection, or is closed at once when all of that peer's connections have a
//!   request in progress.
//! - The cap: a new connection when every slot is taken takes the place of the oldest
//!   evictable connection of any peer. When none is evictable (every connection is answering
//!   a request), the accept loop waits until a connection ends or finishes a response; further
//!   clients wait in the kernel's listen backlog, as before.
//!
//! So one attacker, whatever it sends, holds at most half the slots, and never the other half;
//! several attackers together are evicted oldest first, so a new client (a Prometheus scrape, a
//! Kubernetes probe) is admitted at once unless every slot is answering a request, which is
//! bounded by the request deadline and the write timeout.
//!
//! An evicted connection is told through its slot ([`Slot::evicted`]) and gives its slot up at
//! once (the new connection is admitted without waiting for it); the connection task then
//! closes it (see the server's module docs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::peer::PeerKey;

/// The connection slots of one server, shared by its accept loops and connections.
#[derive(Debug)]
pub(super) struct Admission {
    /// Most connections held at once; `0`: no limit.
    cap: usize,
    /// Most connections one peer holds at once.
    per_peer: usize,
    table: Mutex<Table>,
    /// Signalled when a slot frees or a connection becomes evictable (for a full accept loop).
    changed: Notify,
    /// Origin of [`SlotState::since`].
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    held: HashMap<u64, Held>,
    per_peer: HashMap<PeerKey, usize>,
}

#[derive(Debug)]
struct Held {
    peer: PeerKey,
    state: Arc<SlotState>,
}

/// What the connection and the table both see of one slot.
#[derive(Debug, Default)]
struct SlotState {
    /// Requests being answered (hyper's HTTP/1 answers one at a time: 0 or 1).
    busy: AtomicUsize,
    /// When the connection last became evictable, in nanoseconds since the epoch.
    since: AtomicU64,
    evicted: AtomicBool,
    /// Wakes the connection task when it is evicted.
    evict: Notify,
}

/// Why [`Admission::try_admit`] did not admit.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The peer holds its share and every one of its connections is answering a request.
    PeerBusy,
    /// Every slot is answering a request: wait.
    Full,
}

impl Admission {
    /// Slots for `cap` connections (`0`: no limit), at most half of them (at least one) per peer.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            cap,
            per_peer: (cap / 2).max(1),
            table: Mutex::new(Table::default()),
            changed: Notify::new(),
            epoch: Instant::now(),
        }
    }

    /// A slot for a connection from `peer`, evicting another connection if need be; waits while
    /// every slot is answering a request. `None`: refused (the peer's share is busy); the
    /// caller closes the connection. Cancel-safe: nothing changes until it returns.
    pub(super) async fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.try_admit(peer) {
                Ok(slot) => return Some(slot),
                Err(Refusal::PeerBusy) => return None,
                Err(Refusal::Full) => changed.await,
            }
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn try_admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refusal> {
        let key = PeerKey::of(peer);
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if self.cap > 0 {
            if table.per_peer.get(&key).copied().unwrap_or(0) >= self.per_peer {
                let victim = table.oldest_evictable(Some(key)).ok_or(Refusal::PeerBusy)?;
                table.evict(victim, "peer_share");
            }
            if table.held.len() >= self.cap {
                let victim = table.oldest_evictable(None).ok_or(Refusal::Full)?;
                table.evict(victim, "cap");
            }
        }
        let state = Arc::new(SlotState::default());
        state.since.store(self.now(), Ordering::Relaxed);
        let id = table.next_id;
        table.next_id += 1;
        if self.cap > 0 {
            table.held.insert(
                id,
                Held {
                    peer: key,
                    state: Arc::clone(&state),
                },
            );
            *table.per_peer.entry(key).or_default() += 1;
        }
        Ok(Slot {
            admission: Arc::clone(self),
            id,
            state,
        })
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .len()
    }
}

impl Table {
    /// The evictable connection (of `peer`, if given) that has been so the longest.
    fn oldest_evictable(&self, peer: Option<PeerKey>) -> Option<u64> {
        self.held
            .iter()
            .filter(|(_, h)| peer.is_none_or(|p| h.peer == p))
            .filter(|(_, h)| h.state.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(id, h)| (h.state.since.load(Ordering::Relaxed), **id))
            .map(|(id, _)| *id)
    }

    /// Takes the slot from connection `id` and tells it to close.
    fn evict(&mut self, id: u64, reason: &'static str) {
        if let Some(held) = self.release(id) {
            tracing::debug!(reason, "closing a connection to admit a new one");
            held.state.evicted.store(true, Ordering::Release);
            held.state.evict.notify_one();
        }
    }

    fn release(&mut self, id: u64) -> Option<Held> {
        let held = self.held.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&held.peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&held.peer);
            }
        }
        Some(held)
    }
}

/// A connection's slot; released when dropped (unless it was evicted, which released it).
#[derive(Debug)]
pub(super) struct Slot {
    admission: Arc<Admission>,
    id: u64,
    state: Arc<SlotState>,
}

impl Slot {
    /// A request head is complete: the connection is not evictable until the guard is dropped
    /// (when its response has been written, or abandoned).
    pub(super) fn request(&self) -> RequestInProgress {
        self.state.busy.fetch_add(1, Ordering::AcqRel);
        RequestInProgress {
            admission: Arc::clone(&self.admission),
            state: Arc::clone(&self.state),
        }
    }

    /// Resolves once the connection has been evicted (never, otherwise).
    pub(super) async fn evicted(&self) {
        while !self.state.evicted.load(Ordering::Acquire) {
            self.state.evict.notified().await;
        }
    }

    /// Whether a request is being answered on this connection now.
    pub(super) fn busy(&self) -> bool {
        self.state.busy.load(Ordering::Acquire) > 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let released = self
            .admission
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.id);
        if released.is_some() {
            self.admission.changed.notify_waiters();
        }
    }
}

/// Held while a request is answered; dropping it makes the connection evictable again.
#[derive(Debug)]
pub(super) struct RequestInProgress {
    admission: Arc<Admission>,
    state: Arc<SlotState>,
}

impl Drop for RequestInProgress {
    fn drop(&mut self) {
        self.state
            .since
            .store(self.admission.now(), Ordering::Relaxed);
        if self.state.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.admission.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));

    fn admit(admission: &Arc<Admission>, peer: IpAddr) -> Result<Slot, Refusal> {
        admission.try_admit(peer)
    }

    fn evicted(slot: &Slot) -> bool {
        slot.state.evicted.load(Ordering::Acquire)
    }

    #[test]
    fn at_the_cap_the_oldest_evictable_connection_makes_room() {
        let admission = Arc::new(Admission::new(4));
        let a1 = admit(&admission, A).unwrap();
        let b1 = admit(&admission, B).unwrap();
        let a2 = admit(&admission, A).unwrap();
        let b2 = admit(&admission, B).unwrap();
        // a1 is answering a request: b1 is the oldest evictable one.
        let busy = a1.request();
        let c1 = admit(&admission, C).unwrap();
        assert!(evicted(&b1) && !evicted(&a1) && !evicted(&a2));
        assert_eq!(admission.held(), 4);
        // a1 finishes its response: it is now the youngest evictable; a2 is the oldest.
        drop(busy);
        let _c2 = admit(&admission, C).unwrap();
        assert!(evicted(&a2) && !evicted(&a1) && !evicted(&b2) && !evicted(&c1));
        // An evicted slot's drop does not free a second place.
        drop((b1, a2));
        assert_eq!(admission.held(), 4);
    }

    #[test]
    fn a_full_cap_of_requests_in_progress_makes_newcomers_wait() {
        let admission = Arc::new(Admission::new(2));
        let a = admit(&admission, A).unwrap();
        let b = admit(&admission, B).unwrap();
        let (_ra, rb) = (a.request(), b.request());
        assert_eq!(admit(&admission, C).err(), Some(Refusal::Full));
        drop(rb);
        let _c = admit(&admission, C).unwrap();
        assert!(evicted(&b) && !evicted(&a));
    }

    #[test]
    fn a_peer_holds_at_most_half_the_cap() {
        let admission = Arc::new(Admission::new(4));
        let a1 = admit(&admission, A).unwrap();
        let a2 = admit(&admission, A).unwrap();
        let b1 = admit(&admission, B).unwrap();
        // A third from A replaces A's oldest, not B's, although the cap is not reached.
        let a3 = admit(&admission, A).unwrap();
        assert!(evicted(&a1) && !evicted(&a2) && !evicted(&b1));
        // When all of A's connections answer requests, A's next connection is refused.
        let (_r2, _r3) = (a2.request(), a3.request());
        assert_eq!(admit(&admission, A).err(), Some(Refusal::PeerBusy));
        assert!(admit(&admission, B).is_ok());
    }

    #[test]
    fn ipv6_peers_share_their_64_bit_prefix() {
        let admission = Arc::new(Admission::new(4));
        let host = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        let first = admit(&admission, host(1)).unwrap();
        let _second = admit(&admission, host(2)).unwrap();
        let _third = admit(&admission, host(3)).unwrap();
        assert!(evicted(&first), "one /64 is one peer");
    }

    #[test]
    fn no_cap_admits_everyone() {
        let admission = Arc::new(Admission::new(0));
        let slots: Vec<Slot> = (0..100).map(|_| admit(&admission, A).unwrap()).collect();
        assert!(slots.iter().all(|s| !evicted(s)));
        assert_eq!(admission.held(), 0);
    }

    #[tokio::test]
    async fn a_waiting_newcomer_is_admitted_when_a_response_ends() {
        let admission = Arc::new(Admission::new(1));
        let a = admit(&admission, A).unwrap();
        let request = a.request();
        let waiting = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.admit(B).await.map(|slot| slot.id) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(request);
        let admitted = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("admitted once the response ended")
            .unwrap();
        assert!(admitted.is_some());
        tokio::time::timeout(std::time::Duration::from_secs(10), a.evicted())
            .await
            .expect("the idle connection was told to close");
    }
}
