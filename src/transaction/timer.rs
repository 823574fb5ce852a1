//! RFC 3261 timer values (§17, Table 4) in one table.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::hash::Hash;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The RFC 3261 timers (Table 4) plus RFC 6026's Timer L.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// INVITE request retransmit (client), starts at T1.
    A,
    /// INVITE transaction timeout (client), 64·T1.
    B,
    /// Wait for response retransmits (client), ≥ 32 s on UDP, 0 on TCP.
    D,
    /// Non-INVITE request retransmit (client), starts at T1.
    E,
    /// Non-INVITE transaction timeout (client), 64·T1.
    F,
    /// INVITE response retransmit (server), starts at T1, capped at T2.
    G,
    /// Wait for ACK receipt (server), 64·T1.
    H,
    /// Wait for ACK retransmits (server), T4 on UDP, 0 on TCP.
    I,
    /// Wait for non-INVITE request retransmits (server), 64·T1 on UDP, 0 on TCP.
    J,
    /// Wait for response retransmits (client), T4 on UDP, 0 on TCP.
    K,
    /// RFC 6026 §8.7: wait for accepted INVITE retransmits (server), 64·T1.
    L,
}

impl TimerConfig {
    /// The first (or only) duration of `timer` on a reliable or unreliable transport.
    pub fn initial(&self, timer: Timer, reliable: bool) -> Duration {
        let t64 = self.t1 * 64;
        let unreliable = |d: Duration| if reliable { Duration::ZERO } else { d };
        match timer {
            Timer::A | Timer::E | Timer::G => self.t1,
            Timer::B | Timer::F | Timer::H | Timer::L => t64,
            Timer::D => unreliable(Duration::from_secs(32).max(t64)),
            Timer::I | Timer::K => unreliable(self.t4),
            Timer::J => unreliable(t64),
        }
    }

    /// The interval after `previous` for the retransmit timers: A doubles
    /// without cap (bounded by B), E and G double up to T2 (§17.1.2.2,
    /// §17.2.1).
    pub fn next_interval(&self, timer: Timer, previous: Duration) -> Duration {
        match timer {
            Timer::A => previous * 2,
            _ => (previous * 2).min(self.t2),
        }
    }
}

/// The armed timers of many transactions, earliest first: timers as data,
/// shared by the server and client transaction tables.
#[derive(Debug)]
pub(crate) struct Deadlines<Id> {
    set: BTreeSet<(Instant, Id, Timer)>,
    armed: AHashMap<Id, Vec<(Instant, Timer)>>,
}

impl<Id: Copy + Ord + Hash> Deadlines<Id> {
    pub(crate) fn new() -> Self {
        Self {
            set: BTreeSet::new(),
            armed: AHashMap::new(),
        }
    }

    /// Arms `timer` of `id` to fire at `when`.
    pub(crate) fn arm(&mut self, when: Instant, id: Id, timer: Timer) {
        self.armed.entry(id).or_default().push((when, timer));
        self.set.insert((when, id, timer));
    }

    /// Cancels every timer of `id`.
    pub(crate) fn disarm(&mut self, id: Id) {
        if let Some(armed) = self.armed.remove(&id) {
            for (when, timer) in armed {
                self.set.remove(&(when, id, timer));
            }
        }
    }

    /// The earliest timer due at `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Id, Timer)> {
        let &(when, id, timer) = self.set.first()?;
        if when > now {
            return None;
        }
        self.set.pop_first();
        if let Some(armed) = self.armed.get_mut(&id) {
            armed.retain(|a| *a != (when, timer));
            if armed.is_empty() {
                self.armed.remove(&id);
            }
        }
        Some((when, id, timer))
    }

    /// When the next timer fires.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.set.first().map(|t| t.0)
    }
}

/// A min-heap of deadlines with lazy cancellation, for tables that hold
/// hundreds of thousands of finished transactions: arming is a push (O(1)
/// for the ever-later Timers J and L), cancelling is free, and the owner
/// tells a live entry from a cancelled one by the `epoch` it stored with it
/// (bumped whenever the owner disarms). No allocation per timer.
#[derive(Debug)]
pub(crate) struct TimerHeap<Id> {
    heap: BinaryHeap<Reverse<(Instant, Id, Timer, u32)>>,
}

impl<Id: Copy + Ord> TimerHeap<Id> {
    pub(crate) fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }

    /// Arms `timer` of `id` (at `epoch`) to fire at `when`.
    pub(crate) fn arm(&mut self, when: Instant, id: Id, timer: Timer, epoch: u32) {
        self.heap.push(Reverse((when, id, timer, epoch)));
    }

    /// The earliest entry due at `now`, removed; the owner drops it if its
    /// epoch is stale.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, Id, Timer, u32)> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.0 <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// The earliest entry (possibly a cancelled one: waking early for it is
    /// harmless, `pop_due` then discards it).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.0)
    }

    /// The earliest entry, whether due or not, removed.
    pub(crate) fn pop_first(&mut self) -> Option<(Instant, Id, Timer, u32)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Entries held, live or cancelled.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rfc3261_table_4() {
        let t = TimerConfig::default();
        assert_eq!((t.t1, t.t2, t.t4), (ms(500), ms(4000), ms(5000)));
        // (timer, unreliable, reliable)
        let table = [
            (Timer::A, ms(500), ms(500)),
            (Timer::B, ms(32_000), ms(32_000)),
            (Timer::D, ms(32_000), ms(0)),
            (Timer::E, ms(500), ms(500)),
            (Timer::F, ms(32_000), ms(32_000)),
            (Timer::G, ms(500), ms(500)),
            (Timer::H, ms(32_000), ms(32_000)),
            (Timer::I, ms(5000), ms(0)),
            (Timer::J, ms(32_000), ms(0)),
            (Timer::K, ms(5000), ms(0)),
            (Timer::L, ms(32_000), ms(32_000)),
        ];
        for (timer, udp, tcp) in table {
            assert_eq!(t.initial(timer, false), udp, "{timer:?} on UDP");
            assert_eq!(t.initial(timer, true), tcp, "{timer:?} on TCP");
        }
        // G and E double from T1 and stop at T2, never at 64·T1.
        for timer in [Timer::G, Timer::E] {
            let mut d = t.initial(timer, false);
            let mut seq = vec![d];
            for _ in 0..6 {
                d = t.next_interval(timer, d);
                seq.push(d);
            }
            assert_eq!(
                seq,
                [500, 1000, 2000, 4000, 4000, 4000, 4000].map(ms),
                "{timer:?}"
            );
        }
        assert_eq!(t.next_interval(Timer::A, ms(4000)), ms(8000));
        // A smaller T1 scales every T1-based timer.
        let fast = TimerConfig { t1: ms(50), ..t };
        assert_eq!(fast.initial(Timer::H, false), ms(3200));
        assert_eq!(fast.initial(Timer::D, false), ms(32_000));
    }
}
