//! The non-INVITE client transaction (RFC 3261 §17.1.2), for requests facd
//! sends itself (BYE, and NOTIFY for the UAS's subscriptions). Method-agnostic.

use std::collections::VecDeque;

use ahash::AHashMap as HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Deadlines, Timer, TimerConfig};

/// A client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub u64);

/// How a client transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// A final response arrived.
    Completed {
        /// The transaction.
        id: ClientTxId,
        /// Its status.
        status: u16,
    },
    /// Timer F fired with no final response.
    TimedOut {
        /// The transaction.
        id: ClientTxId,
    },
    /// The transport could not send the request (RFC 3261 §17.1.4: no
    /// connection could be opened); the transaction is over.
    TransportError {
        /// The transaction.
        id: ClientTxId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Debug)]
struct Tx<P> {
    branch: Bytes,
    state: State,
    request: Bytes,
    peer: P,
    reliable: bool,
    e: Duration,
}

/// The table of non-INVITE client transactions.
#[derive(Debug)]
pub struct ClientTransactions<P> {
    cfg: TimerConfig,
    txs: HashMap<ClientTxId, Tx<P>>,
    by_branch: HashMap<Bytes, ClientTxId>,
    timers: Deadlines<ClientTxId>,
    transmits: VecDeque<(P, Bytes)>,
    events: VecDeque<ClientEvent>,
    next: u64,
}

impl<P: Clone> ClientTransactions<P> {
    /// An empty table.
    pub fn new(cfg: TimerConfig) -> Self {
        Self {
            cfg,
            txs: HashMap::default(),
            by_branch: HashMap::default(),
            timers: Deadlines::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next: 1,
        }
    }

    /// Sends `request` (whose top Via carries `branch`) and starts Timers E
    /// (UDP only) and F (§17.1.2.2).
    pub fn send(
        &mut self,
        now: Instant,
        branch: Bytes,
        request: Bytes,
        peer: P,
        reliable: bool,
    ) -> ClientTxId {
        let id = ClientTxId(self.next);
        self.next += 1;
        self.transmits.push_back((peer.clone(), request.clone()));
        self.by_branch.insert(branch.clone(), id);
        let e = self.cfg.initial(Timer::E, reliable);
        self.txs.insert(
            id,
            Tx {
                branch,
                state: State::Trying,
                request,
                peer,
                reliable,
                e,
            },
        );
        if !reliable {
            self.arm(now + e, id, Timer::E);
        }
        let f = self.cfg.initial(Timer::F, reliable);
        self.arm(now + f, id, Timer::F);
        id
    }

    /// A response whose top Via branch is `branch` (§17.1.3). Returns the
    /// transaction it matched.
    pub fn on_response(&mut self, now: Instant, branch: &[u8], status: u16) -> Option<ClientTxId> {
        let id = *self.by_branch.get(branch)?;
        let tx = self.txs.get_mut(&id)?;
        match (tx.state, status) {
            (State::Completed, _) => {}
            (_, 100..=199) => tx.state = State::Proceeding,
            _ => {
                // §17.1.2.2: Completed; E and F stop; K absorbs retransmissions.
                tx.state = State::Completed;
                let reliable = tx.reliable;
                self.disarm(id);
                let k = self.cfg.initial(Timer::K, reliable);
                self.arm(now + k, id, Timer::K);
                self.events.push_back(ClientEvent::Completed { id, status });
            }
        }
        Some(id)
    }

    /// The transport could not send the request whose top Via branch is
    /// `branch` (RFC 3261 §17.1.4): the transaction ends at once and the TU
    /// is told, like a Timer F. A transaction already answered is left to
    /// its Timer K. Returns the transaction it matched.
    pub fn transport_error(&mut self, branch: &[u8]) -> Option<ClientTxId> {
        let id = *self.by_branch.get(branch)?;
        let tx = self.txs.get(&id)?;
        if tx.state == State::Completed {
            return Some(id);
        }
        self.events.push_back(ClientEvent::TransportError { id });
        self.remove(id);
        Some(id)
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((when, id, timer)) = self.timers.pop_due(now) {
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            match timer {
                Timer::E => {
                    self.transmits
                        .push_back((tx.peer.clone(), tx.request.clone()));
                    // Trying doubles to T2; Proceeding retransmits every T2.
                    tx.e = match tx.state {
                        State::Trying => self.cfg.next_interval(Timer::E, tx.e),
                        _ => self.cfg.t2,
                    };
                    let next = when + tx.e;
                    self.arm(next, id, Timer::E);
                }
                Timer::F => {
                    self.events.push_back(ClientEvent::TimedOut { id });
                    self.remove(id);
                }
                _ => self.remove(id),
            }
        }
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(P, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// No live transaction.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn arm(&mut self, when: Instant, id: ClientTxId, timer: Timer) {
        if self.txs.contains_key(&id) {
            self.timers.arm(when, id, timer);
        }
    }

    fn disarm(&mut self, id: ClientTxId) {
        self.timers.disarm(id);
    }

    fn remove(&mut self, id: ClientTxId) {
        self.disarm(id);
        if let Some(tx) = self.txs.remove(&id) {
            self.by_branch.remove(&tx.branch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sent_at(t: &mut ClientTransactions<u8>, t0: Instant, to: u64) -> Vec<u64> {
        let mut at = Vec::new();
        let mut now = 0;
        while now <= to {
            t.handle_timeout(t0 + ms(now));
            while t.poll_transmit().is_some() {
                at.push(now);
            }
            now += 10;
        }
        at
    }

    #[test]
    fn udp_retransmits_per_timer_e_then_times_out_at_f() {
        let t0 = Instant::now();
        let mut t = ClientTransactions::new(TimerConfig::default());
        let id = t.send(
            t0,
            Bytes::from_static(b"z9hG4bKa"),
            Bytes::from_static(b"BYE"),
            1u8,
            false,
        );
        let at = sent_at(&mut t, t0, 32_000);
        assert_eq!(&at[..6], &[0, 500, 1500, 3500, 7500, 11_500]);
        assert_eq!(t.poll_event(), Some(ClientEvent::TimedOut { id }));
        assert!(t.is_empty());
    }

    #[test]
    fn provisional_moves_e_to_t2_and_final_completes_with_k() {
        let t0 = Instant::now();
        let mut t = ClientTransactions::new(TimerConfig::default());
        let id = t.send(
            t0,
            Bytes::from_static(b"b"),
            Bytes::from_static(b"BYE"),
            1u8,
            false,
        );
        t.poll_transmit();
        assert_eq!(t.on_response(t0 + ms(100), b"b", 100), Some(id));
        t.handle_timeout(t0 + ms(500));
        assert!(t.poll_transmit().is_some());
        assert_eq!(t.poll_timeout(), Some(t0 + ms(4500)), "next E after T2");
        assert_eq!(t.on_response(t0 + ms(600), b"b", 200), Some(id));
        assert_eq!(
            t.poll_event(),
            Some(ClientEvent::Completed { id, status: 200 })
        );
        // Retransmitted finals are absorbed; K (T4) ends it.
        assert_eq!(t.on_response(t0 + ms(700), b"b", 200), Some(id));
        assert_eq!(t.poll_event(), None);
        t.handle_timeout(t0 + ms(5600));
        assert!(t.is_empty());
        assert_eq!(t.on_response(t0, b"unknown", 200), None);
    }

    #[test]
    fn tcp_sends_once_and_k_is_zero() {
        let t0 = Instant::now();
        let mut t = ClientTransactions::new(TimerConfig::default());
        let id = t.send(
            t0,
            Bytes::from_static(b"b"),
            Bytes::from_static(b"BYE"),
            1u8,
            true,
        );
        assert_eq!(sent_at(&mut t, t0, 1000), [0]);
        t.on_response(t0 + ms(1000), b"b", 481);
        assert_eq!(
            t.poll_event(),
            Some(ClientEvent::Completed { id, status: 481 })
        );
        t.handle_timeout(t0 + ms(1000));
        assert!(t.is_empty());
    }

    #[test]
    fn transport_error_ends_the_transaction_at_once() {
        let t0 = Instant::now();
        let mut t = ClientTransactions::new(TimerConfig::default());
        let id = t.send(
            t0,
            Bytes::from_static(b"b"),
            Bytes::from_static(b"BYE"),
            1u8,
            false,
        );
        assert_eq!(t.transport_error(b"other"), None);
        assert_eq!(t.transport_error(b"b"), Some(id));
        assert_eq!(t.poll_event(), Some(ClientEvent::TransportError { id }));
        assert!(t.is_empty());
        assert_eq!(t.poll_timeout(), None, "no Timer E/F left");
        assert_eq!(t.on_response(t0, b"b", 200), None);
        // An answered transaction is not reported again.
        let id = t.send(
            t0,
            Bytes::from_static(b"c"),
            Bytes::from_static(b"BYE"),
            1u8,
            false,
        );
        t.on_response(t0, b"c", 200);
        assert_eq!(
            t.poll_event(),
            Some(ClientEvent::Completed { id, status: 200 })
        );
        assert_eq!(t.transport_error(b"c"), Some(id));
        assert_eq!(t.poll_event(), None);
    }
}
