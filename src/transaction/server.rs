//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).

use std::collections::VecDeque;

use ahash::AHashMap as HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Deadlines, Timer, TimerConfig};

/// The matching key of RFC 3261 §17.2.3: the top Via branch and sent-by, and
/// the method (INVITE for an ACK, so it finds its INVITE). RFC 2543 peers
/// get a key synthesised by the caller; it is opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    /// The branch (or a synthesised RFC 2543 key).
    pub branch: Bytes,
    /// The top Via's sent-by, host lower-cased.
    pub sent_by: String,
    /// The method, INVITE for ACK.
    pub method: Bytes,
}

/// What kind of request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// CANCEL.
    Cancel,
    /// Everything else.
    Other,
}

/// A server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(pub u64);

/// What the transaction layer made of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A new request: the TU must answer it with [`ServerTransactions::respond`].
    New(TxId),
    /// A retransmission: the last response (if any) was queued again.
    Retransmission,
    /// The ACK of a non-2xx final response: absorbed (§17.2.1).
    AckAbsorbed,
    /// An ACK matching no INVITE transaction that awaits one: the ACK of a
    /// 2xx, for the dialog layer (§13.3.1.4, §17.2.3).
    AckNoTransaction,
    /// A new CANCEL (its own transaction) and the INVITE transaction it
    /// matches, if any (§9.2).
    CancelFor {
        /// The CANCEL's transaction, to answer.
        cancel: TxId,
        /// The INVITE's transaction.
        invite: Option<TxId>,
    },
}

/// Things the shell may want to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// Timer H fired: no ACK came for a non-2xx final response (§17.2.1).
    AckTimeout(TxId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE: Proceeding; non-INVITE: Trying or Proceeding.
    Proceeding,
    /// INVITE after a 2xx (RFC 6026).
    Accepted,
    /// After a non-2xx final (INVITE) or any final (non-INVITE).
    Completed,
    /// INVITE after the ACK.
    Confirmed,
}

#[derive(Debug)]
struct Tx<P> {
    key: TxKey,
    invite: bool,
    state: State,
    peer: P,
    reliable: bool,
    last: Option<Bytes>,
    /// The current Timer G interval.
    g: Duration,
}

/// The table of server transactions.
#[derive(Debug)]
pub struct ServerTransactions<P> {
    cfg: TimerConfig,
    txs: HashMap<TxId, Tx<P>>,
    by_key: HashMap<TxKey, TxId>,
    timers: Deadlines<TxId>,
    transmits: VecDeque<(P, Bytes)>,
    events: VecDeque<ServerEvent>,
    next: u64,
}

impl<P: Clone> ServerTransactions<P> {
    /// An empty table.
    pub fn new(cfg: TimerConfig) -> Self {
        Self {
            cfg,
            txs: HashMap::default(),
            by_key: HashMap::default(),
            timers: Deadlines::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next: 1,
        }
    }

    /// Matches a request to a transaction (§17.2.3) or creates one.
    pub fn receive(
        &mut self,
        now: Instant,
        key: TxKey,
        kind: RequestKind,
        peer: P,
        reliable: bool,
    ) -> Received {
        let _ = now;
        match kind {
            RequestKind::Ack => {
                let Some(&id) = self.by_key.get(&key) else {
                    return Received::AckNoTransaction;
                };
                let Some(tx) = self.txs.get_mut(&id) else {
                    return Received::AckNoTransaction;
                };
                match tx.state {
                    State::Completed => {
                        // §17.2.1: Completed → Confirmed; G and H stop, I starts.
                        tx.state = State::Confirmed;
                        self.disarm(id);
                        let i = self.cfg.initial(Timer::I, reliable);
                        self.arm(now + i, id, Timer::I);
                        Received::AckAbsorbed
                    }
                    // RFC 6026 §7.1: an ACK in Accepted goes to the TU.
                    State::Accepted => Received::AckNoTransaction,
                    State::Confirmed | State::Proceeding => Received::AckAbsorbed,
                }
            }
            _ => {
                if let Some(&id) = self.by_key.get(&key) {
                    if let Some(tx) = self.txs.get(&id) {
                        // §17.2.1/§17.2.2: a retransmission gets the last
                        // response again (none is kept in Accepted).
                        if tx.state != State::Confirmed {
                            if let Some(last) = &tx.last {
                                self.transmits.push_back((tx.peer.clone(), last.clone()));
                            }
                        }
                    }
                    return Received::Retransmission;
                }
                let invite_key = (kind == RequestKind::Cancel).then(|| TxKey {
                    method: Bytes::from_static(b"INVITE"),
                    ..key.clone()
                });
                let id = self.create(key, kind == RequestKind::Invite, peer, reliable);
                match invite_key {
                    Some(k) => Received::CancelFor {
                        cancel: id,
                        invite: self.by_key.get(&k).copied(),
                    },
                    None => Received::New(id),
                }
            }
        }
    }

    /// Sends a response on transaction `id` and moves it on (§17.2.1, §17.2.2).
    /// A response after the final one is ignored.
    pub fn respond(&mut self, now: Instant, id: TxId, status: u16, response: Bytes) {
        let Some(tx) = self.txs.get_mut(&id) else {
            return;
        };
        if tx.state != State::Proceeding {
            return;
        }
        self.transmits
            .push_back((tx.peer.clone(), response.clone()));
        // RFC 6026 §7.1: a 2xx is retransmitted by the TU (the dialog layer),
        // so the Accepted state keeps no copy and absorbs retransmitted INVITEs.
        tx.last = (!(tx.invite && (200..300).contains(&status))).then_some(response);
        let reliable = tx.reliable;
        if status < 200 {
            return;
        }
        if !tx.invite {
            tx.state = State::Completed;
            let j = self.cfg.initial(Timer::J, reliable);
            self.arm(now + j, id, Timer::J);
        } else if status < 300 {
            tx.state = State::Accepted;
            let l = self.cfg.initial(Timer::L, reliable);
            self.arm(now + l, id, Timer::L);
        } else {
            tx.state = State::Completed;
            if !reliable {
                let g = self.cfg.initial(Timer::G, false);
                tx.g = g;
                self.arm(now + g, id, Timer::G);
            }
            let h = self.cfg.initial(Timer::H, reliable);
            self.arm(now + h, id, Timer::H);
        }
    }

    /// True once a final response was sent on `id` (or it is gone).
    pub fn is_final(&self, id: TxId) -> bool {
        self.txs
            .get(&id)
            .is_none_or(|tx| tx.state != State::Proceeding)
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((when, id, timer)) = self.timers.pop_due(now) {
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            match timer {
                Timer::G if tx.state == State::Completed => {
                    if let Some(last) = &tx.last {
                        self.transmits.push_back((tx.peer.clone(), last.clone()));
                    }
                    tx.g = self.cfg.next_interval(Timer::G, tx.g);
                    let next = when + tx.g;
                    self.arm(next, id, Timer::G);
                }
                Timer::H => {
                    self.events.push_back(ServerEvent::AckTimeout(id));
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
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True if a transaction with `key` is live.
    pub fn contains(&self, key: &TxKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// No live transaction.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn create(&mut self, key: TxKey, invite: bool, peer: P, reliable: bool) -> TxId {
        let id = TxId(self.next);
        self.next += 1;
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            Tx {
                key,
                invite,
                state: State::Proceeding,
                peer,
                reliable,
                last: None,
                g: self.cfg.t1,
            },
        );
        id
    }

    fn arm(&mut self, when: Instant, id: TxId, timer: Timer) {
        if self.txs.contains_key(&id) {
            self.timers.arm(when, id, timer);
        }
    }

    fn disarm(&mut self, id: TxId) {
        self.timers.disarm(id);
    }

    fn remove(&mut self, id: TxId) {
        self.disarm(id);
        if let Some(tx) = self.txs.remove(&id) {
            self.by_key.remove(&tx.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(branch: &str, method: &str) -> TxKey {
        TxKey {
            branch: Bytes::copy_from_slice(branch.as_bytes()),
            sent_by: "127.0.0.1:5060".into(),
            method: Bytes::copy_from_slice(method.as_bytes()),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(t: &mut ServerTransactions<u8>) -> Vec<Bytes> {
        std::iter::from_fn(|| t.poll_transmit())
            .map(|(_, b)| b)
            .collect()
    }

    /// Runs the clock from `start` to `end` in 10 ms steps; returns when each
    /// transmit happened (ms after start).
    fn run(t: &mut ServerTransactions<u8>, start: Instant, from: u64, to: u64) -> Vec<u64> {
        let mut at = Vec::new();
        let mut now = from;
        while now <= to {
            t.handle_timeout(start + ms(now));
            for _ in drain(t) {
                at.push(now);
            }
            now += 10;
        }
        at
    }

    #[test]
    fn invite_non_2xx_over_udp_retransmits_per_timer_g_until_h() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 486, Bytes::from_static(b"486"));
        assert_eq!(drain(&mut t).len(), 1);
        assert!(t.is_final(id));
        let sent = run(&mut t, t0, 0, 32_000);
        // G: 500, then +1000, +2000, +4000, +4000… (capped at T2), until H at 32 s.
        assert_eq!(&sent[..6], &[500, 1500, 3500, 7500, 11_500, 15_500]);
        assert_eq!(*sent.last().unwrap(), 31_500);
        assert_eq!(t.poll_event(), Some(ServerEvent::AckTimeout(id)));
        assert!(t.is_empty());
    }

    #[test]
    fn ack_of_non_2xx_is_absorbed_and_stops_g_then_timer_i() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 404, Bytes::from_static(b"404"));
        drain(&mut t);
        assert_eq!(
            t.receive(
                t0 + ms(100),
                key("b1", "INVITE"),
                RequestKind::Ack,
                1,
                false
            ),
            Received::AckAbsorbed
        );
        assert!(run(&mut t, t0, 100, 5000).is_empty(), "G stopped");
        // Confirmed absorbs ACK retransmissions; Timer I (T4) ends it.
        assert_eq!(
            t.receive(
                t0 + ms(200),
                key("b1", "INVITE"),
                RequestKind::Ack,
                1,
                false
            ),
            Received::AckAbsorbed
        );
        assert_eq!(t.len(), 1);
        t.handle_timeout(t0 + ms(5100));
        assert!(t.is_empty());
    }

    #[test]
    fn over_tcp_no_g_and_i_is_zero() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, true)
        else {
            panic!()
        };
        t.respond(t0, id, 404, Bytes::from_static(b"404"));
        drain(&mut t);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)), "only H");
        t.receive(t0 + ms(1), key("b1", "INVITE"), RequestKind::Ack, 1, true);
        t.handle_timeout(t0 + ms(1));
        assert!(t.is_empty());
    }

    #[test]
    fn retransmitted_request_is_never_new_twice_and_gets_the_last_response() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "OPTIONS"), RequestKind::Other, 1u8, false)
        else {
            panic!()
        };
        // Before the answer: absorbed silently.
        assert_eq!(
            t.receive(t0, key("b1", "OPTIONS"), RequestKind::Other, 1, false),
            Received::Retransmission
        );
        assert!(drain(&mut t).is_empty());
        t.respond(t0, id, 200, Bytes::from_static(b"200"));
        drain(&mut t);
        for _ in 0..3 {
            assert_eq!(
                t.receive(t0, key("b1", "OPTIONS"), RequestKind::Other, 1, false),
                Received::Retransmission
            );
            assert_eq!(drain(&mut t), [Bytes::from_static(b"200")]);
        }
        // Timer J (64·T1 on UDP) ends it; then the same key is new again.
        t.handle_timeout(t0 + ms(31_999));
        assert_eq!(t.len(), 1);
        t.handle_timeout(t0 + ms(32_000));
        assert!(t.is_empty());
        assert!(matches!(
            t.receive(t0, key("b1", "OPTIONS"), RequestKind::Other, 1, false),
            Received::New(_)
        ));
    }

    #[test]
    fn non_invite_over_tcp_ends_at_once() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "BYE"), RequestKind::Other, 1u8, true)
        else {
            panic!()
        };
        t.respond(t0, id, 200, Bytes::from_static(b"200"));
        t.handle_timeout(t0);
        assert!(t.is_empty());
    }

    #[test]
    fn invite_2xx_enters_accepted_for_timer_l() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 200, Bytes::from_static(b"200"));
        drain(&mut t);
        // No Timer G for a 2xx: the dialog layer retransmits it.
        assert!(run(&mut t, t0, 0, 5000).is_empty());
        // A retransmitted INVITE is absorbed (RFC 6026 §7.1), never New:
        // the dialog layer's own 2xx retransmissions answer it.
        assert_eq!(
            t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1, false),
            Received::Retransmission
        );
        assert!(drain(&mut t).is_empty());
        // An ACK with the INVITE's branch goes to the dialog layer.
        assert_eq!(
            t.receive(t0, key("b1", "INVITE"), RequestKind::Ack, 1, false),
            Received::AckNoTransaction
        );
        t.handle_timeout(t0 + ms(32_000));
        assert!(t.is_empty());
        // A later response is ignored.
        t.respond(t0, id, 500, Bytes::from_static(b"500"));
        assert!(drain(&mut t).is_empty());
    }

    #[test]
    fn provisional_is_resent_on_retransmission() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 100, Bytes::from_static(b"100"));
        drain(&mut t);
        assert!(!t.is_final(id));
        t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1, false);
        assert_eq!(drain(&mut t), [Bytes::from_static(b"100")]);
    }

    #[test]
    fn cancel_matches_its_invite() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(inv) =
            t.receive(t0, key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        let r = t.receive(t0, key("b1", "CANCEL"), RequestKind::Cancel, 1, false);
        let Received::CancelFor { cancel, invite } = r else {
            panic!("{r:?}")
        };
        assert_eq!(invite, Some(inv));
        assert_ne!(cancel, inv);
        // A CANCEL retransmission is not new.
        assert_eq!(
            t.receive(t0, key("b1", "CANCEL"), RequestKind::Cancel, 1, false),
            Received::Retransmission
        );
        // A CANCEL for nothing.
        let r = t.receive(t0, key("zz", "CANCEL"), RequestKind::Cancel, 1, false);
        assert!(matches!(r, Received::CancelFor { invite: None, .. }));
        // An ACK for nothing goes up.
        assert_eq!(
            t.receive(t0, key("qq", "INVITE"), RequestKind::Ack, 1, false),
            Received::AckNoTransaction
        );
    }

    #[test]
    fn different_sent_by_or_method_is_another_transaction() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        assert!(matches!(
            t.receive(t0, key("b", "OPTIONS"), RequestKind::Other, 1u8, false),
            Received::New(_)
        ));
        let mut k = key("b", "OPTIONS");
        k.sent_by = "127.0.0.1:5070".into();
        assert!(matches!(
            t.receive(t0, k, RequestKind::Other, 1, false),
            Received::New(_)
        ));
        assert!(matches!(
            t.receive(t0, key("b", "INFO"), RequestKind::Other, 1, false),
            Received::New(_)
        ));
    }
}
