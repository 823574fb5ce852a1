//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).
//!
//! Sized for load: every finished transaction lingers for Timer J or L
//! (64·T1 = 32 s on UDP), so at 20k calls/s the table holds over a million
//! entries. Keys are 128-bit keyed fingerprints (no allocation per request),
//! transactions live in a chunked slab that never moves them when it grows,
//! the index maps a fingerprint to a slot, and timers sit in a lazily
//! cancelled heap. Nothing here is O(table) except the index's rare growth.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::timer::{Timer, TimerConfig, TimerHeap};

/// What a request is matched on (RFC 3261 §17.2.3): the top Via branch and
/// sent-by, and the method (INVITE for an ACK, so it finds its INVITE).
/// RFC 2543 peers get a branch synthesised by the caller; it is opaque here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'a> {
    /// The branch (or a synthesised RFC 2543 key).
    pub branch: &'a [u8],
    /// The top Via's sent-by host, compared case-insensitively.
    pub host: &'a [u8],
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The method, INVITE for ACK.
    pub method: &'a [u8],
}

/// A 128-bit fingerprint of [`KeyParts`] under the table's secret seeds: two
/// requests match when their parts are equal, and a peer who does not know
/// the seeds cannot make two different keys collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Fingerprint(u128);

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

/// A server transaction: a slab slot and the generation that filled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId {
    slot: u32,
    gen: u32,
}

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
    key: Fingerprint,
    invite: bool,
    state: State,
    reliable: bool,
    /// Bumped when the armed timers are cancelled; heap entries of an
    /// older epoch are dropped when they come due.
    epoch: u32,
    /// The current Timer G interval.
    g: Duration,
    peer: P,
    last: Option<Bytes>,
}

/// Slots per slab chunk: chunks are allocated whole and never reallocated,
/// so growing the table never moves a transaction.
const CHUNK: usize = 4096;

#[derive(Debug)]
enum Slot<P> {
    Full { gen: u32, tx: Tx<P> },
    Free { gen: u32 },
}

/// A chunked slab of transactions addressed by [`TxId`].
#[derive(Debug)]
struct Slab<P> {
    chunks: Vec<Vec<Slot<P>>>,
    free: Vec<u32>,
    len: usize,
}

impl<P> Slab<P> {
    fn new() -> Self {
        Self {
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn slot(&self, i: u32) -> Option<&Slot<P>> {
        let i = i as usize;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn slot_mut(&mut self, i: u32) -> Option<&mut Slot<P>> {
        let i = i as usize;
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    fn insert(&mut self, tx: Tx<P>) -> TxId {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.slot_mut(i) {
                let gen = match slot {
                    Slot::Free { gen } | Slot::Full { gen, .. } => gen.wrapping_add(1),
                };
                *slot = Slot::Full { gen, tx };
                return TxId { slot: i, gen };
            }
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let chunk = &mut self.chunks[n];
        let i = (n * CHUNK + chunk.len()) as u32;
        chunk.push(Slot::Full { gen: 0, tx });
        TxId { slot: i, gen: 0 }
    }

    fn get(&self, id: TxId) -> Option<&Tx<P>> {
        match self.slot(id.slot)? {
            Slot::Full { gen, tx } if *gen == id.gen => Some(tx),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: TxId) -> Option<&mut Tx<P>> {
        match self.slot_mut(id.slot)? {
            Slot::Full { gen, tx } if *gen == id.gen => Some(tx),
            _ => None,
        }
    }

    fn remove(&mut self, id: TxId) -> Option<Tx<P>> {
        let slot = self.slot_mut(id.slot)?;
        if !matches!(slot, Slot::Full { gen, .. } if *gen == id.gen) {
            return None;
        }
        let Slot::Full { tx, .. } = std::mem::replace(slot, Slot::Free { gen: id.gen }) else {
            return None;
        };
        self.free.push(id.slot);
        self.len -= 1;
        Some(tx)
    }
}

/// The fingerprints are already uniformly random: the index uses their
/// low bits as the hash instead of hashing them again.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct BuildPassThrough;

impl BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The table of server transactions.
#[derive(Debug)]
pub struct ServerTransactions<P> {
    cfg: TimerConfig,
    seeds: (ahash::RandomState, ahash::RandomState),
    slab: Slab<P>,
    index: std::collections::HashMap<Fingerprint, TxId, BuildPassThrough>,
    timers: TimerHeap<TxId>,
    transmits: VecDeque<(P, Bytes)>,
    events: VecDeque<ServerEvent>,
}

impl<P: Clone> ServerTransactions<P> {
    /// An empty table with random fingerprint seeds.
    pub fn new(cfg: TimerConfig) -> Self {
        Self {
            cfg,
            seeds: (ahash::RandomState::new(), ahash::RandomState::new()),
            slab: Slab::new(),
            index: std::collections::HashMap::with_hasher(BuildPassThrough),
            timers: TimerHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn fingerprint(&self, k: &KeyParts<'_>) -> Fingerprint {
        let half = |seed: &ahash::RandomState| {
            let mut h = seed.build_hasher();
            // Length-prefixed parts, so ("ab","c") never equals ("a","bc").
            h.write_usize(k.branch.len());
            h.write(k.branch);
            h.write_usize(k.host.len());
            // RFC 3261 §19.1.4: hosts compare case-insensitively.
            for chunk in k.host.chunks(64) {
                let mut lower = [0u8; 64];
                for (d, s) in lower.iter_mut().zip(chunk) {
                    *d = s.to_ascii_lowercase();
                }
                h.write(&lower[..chunk.len()]);
            }
            h.write_u32(k.port.map_or(u32::MAX, u32::from));
            h.write_usize(k.method.len());
            h.write(k.method);
            h.finish()
        };
        Fingerprint(u128::from(half(&self.seeds.0)) << 64 | u128::from(half(&self.seeds.1)))
    }

    /// Matches a request to a transaction (§17.2.3) or creates one.
    pub fn receive(
        &mut self,
        now: Instant,
        key: &KeyParts<'_>,
        kind: RequestKind,
        peer: P,
        reliable: bool,
    ) -> Received {
        let fp = self.fingerprint(key);
        let found = self.index.get(&fp).copied();
        match kind {
            RequestKind::Ack => {
                let Some(id) = found else {
                    return Received::AckNoTransaction;
                };
                let Some(tx) = self.slab.get_mut(id) else {
                    return Received::AckNoTransaction;
                };
                match tx.state {
                    State::Completed => {
                        // §17.2.1: Completed → Confirmed; G and H stop, I starts.
                        tx.state = State::Confirmed;
                        tx.epoch = tx.epoch.wrapping_add(1);
                        let (epoch, i) = (tx.epoch, self.cfg.initial(Timer::I, reliable));
                        self.timers.arm(now + i, id, Timer::I, epoch);
                        Received::AckAbsorbed
                    }
                    // RFC 6026 §7.1: an ACK in Accepted goes to the TU.
                    State::Accepted => Received::AckNoTransaction,
                    State::Confirmed | State::Proceeding => Received::AckAbsorbed,
                }
            }
            _ => {
                if let Some(tx) = found.and_then(|id| self.slab.get(id)) {
                    // §17.2.1/§17.2.2: a retransmission gets the last
                    // response again (none is kept in Accepted).
                    if tx.state != State::Confirmed {
                        if let Some(last) = &tx.last {
                            self.transmits.push_back((tx.peer.clone(), last.clone()));
                        }
                    }
                    return Received::Retransmission;
                }
                let id = self.slab.insert(Tx {
                    key: fp,
                    invite: kind == RequestKind::Invite,
                    state: State::Proceeding,
                    reliable,
                    epoch: 0,
                    g: self.cfg.t1,
                    peer,
                    last: None,
                });
                self.index.insert(fp, id);
                if kind == RequestKind::Cancel {
                    // §9.2: the INVITE with the CANCEL's branch and sent-by.
                    let invite = self.fingerprint(&KeyParts {
                        method: b"INVITE",
                        ..*key
                    });
                    return Received::CancelFor {
                        cancel: id,
                        invite: self.index.get(&invite).copied(),
                    };
                }
                Received::New(id)
            }
        }
    }

    /// Sends a response on transaction `id` and moves it on (§17.2.1, §17.2.2).
    /// A response after the final one is ignored.
    pub fn respond(&mut self, now: Instant, id: TxId, status: u16, response: Bytes) {
        let Some(tx) = self.slab.get_mut(id) else {
            return;
        };
        if tx.state != State::Proceeding {
            return;
        }
        // RFC 6026 §7.1: a 2xx is retransmitted by the TU (the dialog layer),
        // so the Accepted state keeps no copy and absorbs retransmitted INVITEs.
        // What is kept (a BYE's 200 for Timer J's 32 s) is an exact copy: the
        // response was written into a roomier buffer, which goes out and is freed.
        tx.last = (!(tx.invite && (200..300).contains(&status)))
            .then(|| Bytes::copy_from_slice(&response));
        self.transmits.push_back((tx.peer.clone(), response));
        if status < 200 {
            return;
        }
        let (reliable, epoch) = (tx.reliable, tx.epoch);
        if !tx.invite {
            tx.state = State::Completed;
            let j = self.cfg.initial(Timer::J, reliable);
            self.timers.arm(now + j, id, Timer::J, epoch);
        } else if status < 300 {
            tx.state = State::Accepted;
            let l = self.cfg.initial(Timer::L, reliable);
            self.timers.arm(now + l, id, Timer::L, epoch);
        } else {
            tx.state = State::Completed;
            if !reliable {
                let g = self.cfg.initial(Timer::G, false);
                tx.g = g;
                self.timers.arm(now + g, id, Timer::G, epoch);
            }
            let h = self.cfg.initial(Timer::H, reliable);
            self.timers.arm(now + h, id, Timer::H, epoch);
        }
    }

    /// True once a final response was sent on `id` (or it is gone).
    pub fn is_final(&self, id: TxId) -> bool {
        self.slab
            .get(id)
            .is_none_or(|tx| tx.state != State::Proceeding)
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((when, id, timer, epoch)) = self.timers.pop_due(now) {
            let Some(tx) = self.slab.get_mut(id) else {
                continue;
            };
            if tx.epoch != epoch {
                continue;
            }
            match timer {
                Timer::G if tx.state == State::Completed => {
                    if let Some(last) = &tx.last {
                        self.transmits.push_back((tx.peer.clone(), last.clone()));
                    }
                    tx.g = self.cfg.next_interval(Timer::G, tx.g);
                    let next = when + tx.g;
                    self.timers.arm(next, id, Timer::G, epoch);
                }
                Timer::G => {}
                Timer::H => {
                    self.events.push_back(ServerEvent::AckTimeout(id));
                    self.remove(id);
                }
                _ => self.remove(id),
            }
        }
    }

    /// When `handle_timeout` must next be called (possibly early, for a
    /// cancelled timer).
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
        self.slab.len
    }

    /// True if a transaction with `key` is live.
    pub fn contains(&self, key: &KeyParts<'_>) -> bool {
        self.index.contains_key(&self.fingerprint(key))
    }

    /// No live transaction.
    pub fn is_empty(&self) -> bool {
        self.slab.len == 0
    }

    /// Makes room for a new transaction under a cap of `max`: while the
    /// table is full, the transaction whose timer fires first is ended now.
    /// Only finished transactions have timers (Completed, Accepted,
    /// Confirmed: they linger for Timers G/H/I/J/L only to absorb
    /// retransmissions), so one still waiting for its answer is never shed.
    /// A retransmission after its transaction was shed is handled as new,
    /// which is safe for facd's requests (a star code is idempotent, a BYE
    /// for a forgotten call gets 481). False if the table is still full:
    /// every transaction in it is live. Returns how many were shed too.
    pub fn shed_for(&mut self, max: usize) -> (bool, usize) {
        let mut shed = 0;
        while self.slab.len >= max {
            let Some((_, id, _, epoch)) = self.timers.pop_first() else {
                return (false, shed);
            };
            if self.slab.get(id).is_some_and(|tx| tx.epoch == epoch) {
                self.remove(id);
                shed += 1;
            }
        }
        (true, shed)
    }

    /// Timer entries held (live or cancelled), for tests of boundedness.
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    fn remove(&mut self, id: TxId) {
        if let Some(tx) = self.slab.remove(id) {
            self.index.remove(&tx.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(branch: &'a str, method: &'a str) -> KeyParts<'a> {
        KeyParts {
            branch: branch.as_bytes(),
            host: b"127.0.0.1",
            port: Some(5060),
            method: method.as_bytes(),
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
        let Received::New(id) =
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
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
        let Received::New(id) =
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 404, Bytes::from_static(b"404"));
        drain(&mut t);
        assert_eq!(
            t.receive(
                t0 + ms(100),
                &key("b1", "INVITE"),
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
                &key("b1", "INVITE"),
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
        let Received::New(id) = t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, true)
        else {
            panic!()
        };
        t.respond(t0, id, 404, Bytes::from_static(b"404"));
        drain(&mut t);
        assert_eq!(t.poll_timeout(), Some(t0 + ms(32_000)), "only H");
        t.receive(t0 + ms(1), &key("b1", "INVITE"), RequestKind::Ack, 1, true);
        t.handle_timeout(t0 + ms(1));
        assert!(t.is_empty());
    }

    #[test]
    fn retransmitted_request_is_never_new_twice_and_gets_the_last_response() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) =
            t.receive(t0, &key("b1", "OPTIONS"), RequestKind::Other, 1u8, false)
        else {
            panic!()
        };
        // Before the answer: absorbed silently.
        assert_eq!(
            t.receive(t0, &key("b1", "OPTIONS"), RequestKind::Other, 1, false),
            Received::Retransmission
        );
        assert!(drain(&mut t).is_empty());
        t.respond(t0, id, 200, Bytes::from_static(b"200"));
        drain(&mut t);
        for _ in 0..3 {
            assert_eq!(
                t.receive(t0, &key("b1", "OPTIONS"), RequestKind::Other, 1, false),
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
            t.receive(t0, &key("b1", "OPTIONS"), RequestKind::Other, 1, false),
            Received::New(_)
        ));
    }

    #[test]
    fn non_invite_over_tcp_ends_at_once() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(id) = t.receive(t0, &key("b1", "BYE"), RequestKind::Other, 1u8, true)
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
        let Received::New(id) =
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
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
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1, false),
            Received::Retransmission
        );
        assert!(drain(&mut t).is_empty());
        // An ACK with the INVITE's branch goes to the dialog layer.
        assert_eq!(
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Ack, 1, false),
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
        let Received::New(id) =
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, id, 100, Bytes::from_static(b"100"));
        drain(&mut t);
        assert!(!t.is_final(id));
        t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1, false);
        assert_eq!(drain(&mut t), [Bytes::from_static(b"100")]);
    }

    #[test]
    fn cancel_matches_its_invite() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(inv) =
            t.receive(t0, &key("b1", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        let r = t.receive(t0, &key("b1", "CANCEL"), RequestKind::Cancel, 1, false);
        let Received::CancelFor { cancel, invite } = r else {
            panic!("{r:?}")
        };
        assert_eq!(invite, Some(inv));
        assert_ne!(cancel, inv);
        // A CANCEL retransmission is not new.
        assert_eq!(
            t.receive(t0, &key("b1", "CANCEL"), RequestKind::Cancel, 1, false),
            Received::Retransmission
        );
        // A CANCEL for nothing.
        let r = t.receive(t0, &key("zz", "CANCEL"), RequestKind::Cancel, 1, false);
        assert!(matches!(r, Received::CancelFor { invite: None, .. }));
        // An ACK for nothing goes up.
        assert_eq!(
            t.receive(t0, &key("qq", "INVITE"), RequestKind::Ack, 1, false),
            Received::AckNoTransaction
        );
    }

    #[test]
    fn different_sent_by_or_method_is_another_transaction() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        assert!(matches!(
            t.receive(t0, &key("b", "OPTIONS"), RequestKind::Other, 1u8, false),
            Received::New(_)
        ));
        let mut k = key("b", "OPTIONS");
        k.port = Some(5070);
        assert!(matches!(
            t.receive(t0, &k, RequestKind::Other, 1, false),
            Received::New(_)
        ));
        assert!(matches!(
            t.receive(t0, &key("b", "INFO"), RequestKind::Other, 1, false),
            Received::New(_)
        ));
    }

    #[test]
    fn sent_by_host_matches_case_insensitively_and_parts_do_not_run_together() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let lower = KeyParts {
            host: b"host.example.com",
            ..key("b", "OPTIONS")
        };
        assert!(matches!(
            t.receive(t0, &lower, RequestKind::Other, 1u8, false),
            Received::New(_)
        ));
        let upper = KeyParts {
            host: b"HOST.Example.COM",
            ..lower
        };
        assert_eq!(
            t.receive(t0, &upper, RequestKind::Other, 1, false),
            Received::Retransmission
        );
        // "b" + "OPTIONS" is not "bO" + "PTIONS", and no port is not port 0.
        for other in [
            KeyParts {
                branch: b"bO",
                method: b"PTIONS",
                ..lower
            },
            KeyParts {
                port: None,
                ..lower
            },
            KeyParts {
                port: Some(0),
                ..lower
            },
        ] {
            assert!(matches!(
                t.receive(t0, &other, RequestKind::Other, 1, false),
                Received::New(_)
            ));
        }
    }

    #[test]
    fn a_reused_slot_neither_answers_an_old_id_nor_fires_old_timers() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let Received::New(old) =
            t.receive(t0, &key("a", "INVITE"), RequestKind::Invite, 1u8, false)
        else {
            panic!()
        };
        t.respond(t0, old, 404, Bytes::from_static(b"404"));
        // ACK: G and H are cancelled (epoch), I starts; I ends it at T4.
        t.receive(t0, &key("a", "INVITE"), RequestKind::Ack, 1, false);
        t.handle_timeout(t0 + ms(5000));
        assert!(t.is_empty());
        drain(&mut t);
        // The slot is reused by the next transaction.
        let Received::New(new) = t.receive(
            t0 + ms(5000),
            &key("b", "INVITE"),
            RequestKind::Invite,
            2u8,
            false,
        ) else {
            panic!()
        };
        assert_ne!(old, new);
        assert!(t.is_final(old), "an old id is gone");
        t.respond(t0, old, 500, Bytes::from_static(b"500"));
        assert!(drain(&mut t).is_empty(), "nothing sent for an old id");
        assert!(!t.is_final(new));
        // The old transaction's cancelled Timer H (at 32 s) must not end the new one.
        t.handle_timeout(t0 + ms(32_000));
        assert_eq!(t.len(), 1);
        assert!(t.poll_event().is_none());
    }

    #[test]
    fn many_transactions_expire_in_order_and_the_timer_heap_drains() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        let n = 3 * CHUNK + 17;
        for i in 0..n {
            let branch = format!("z9hG4bK-{i}");
            let now = t0 + ms(i as u64);
            let Received::New(id) =
                t.receive(now, &key(&branch, "BYE"), RequestKind::Other, 1u8, false)
            else {
                panic!("{i} not new")
            };
            t.respond(now, id, 200, Bytes::from_static(b"200"));
        }
        assert_eq!(t.len(), n);
        assert_eq!(
            t.receive(t0, &key("z9hG4bK-5", "BYE"), RequestKind::Other, 1, false),
            Received::Retransmission
        );
        // Timer J: each ends 32 s after its response.
        t.handle_timeout(t0 + ms(32_000 + 99));
        assert_eq!(t.len(), n - 100);
        t.handle_timeout(t0 + ms(32_000 + n as u64));
        assert!(t.is_empty());
        assert_eq!(t.timer_entries(), 0);
    }

    #[test]
    fn at_the_cap_finished_transactions_are_shed_first_and_live_ones_never() {
        let t0 = Instant::now();
        let mut t = ServerTransactions::new(TimerConfig::default());
        // Two live (unanswered) and two finished, the second expiring later.
        let live: Vec<TxId> = ["l1", "l2"]
            .iter()
            .map(
                |b| match t.receive(t0, &key(b, "INVITE"), RequestKind::Invite, 1u8, false) {
                    Received::New(id) => id,
                    r => panic!("{r:?}"),
                },
            )
            .collect();
        for (i, b) in ["f1", "f2"].iter().enumerate() {
            let now = t0 + ms(i as u64);
            let Received::New(id) = t.receive(now, &key(b, "BYE"), RequestKind::Other, 1u8, false)
            else {
                panic!()
            };
            t.respond(now, id, 200, Bytes::from_static(b"200"));
        }
        assert_eq!(t.shed_for(4), (true, 1), "f1 (expires first) goes");
        // Its retransmission is new now; answered, it lingers again.
        let Received::New(again) = t.receive(t0, &key("f1", "BYE"), RequestKind::Other, 1, false)
        else {
            panic!()
        };
        t.respond(t0 + ms(5), again, 200, Bytes::from_static(b"200"));
        assert_eq!(t.len(), 4);
        // f2 and f1 again are shed; the live two are never.
        assert_eq!(t.shed_for(3), (true, 2));
        assert_eq!(t.shed_for(2), (false, 0), "only live ones are left");
        assert_eq!(t.len(), 2);
        for id in live {
            assert!(!t.is_final(id));
        }
    }
}
