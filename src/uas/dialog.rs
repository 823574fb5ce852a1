//! The answered star-code call (SPEC §4): after facd's 200 OK the 2xx is
//! retransmitted on UDP until the ACK (RFC 3261 §13.3.1.4: T1 doubling to
//! T2); with no ACK within 64·T1 facd sends BYE and forgets the call. After
//! the ACK facd plays the confirmation tone for `confirm` (a
//! [`MediaOrder::Play`] popped with [`Dialogs::poll_media`], when the SDP
//! exchange gave a caller address) and hangs up with a BYE in a non-INVITE
//! client transaction. A BYE from the caller first ends the dialog; a call
//! that ends in any way stops its tone ([`MediaOrder::Stop`]).
//!
//! Pure like the transaction layer: time is passed in, outputs are popped.

use std::collections::{BTreeSet, VecDeque};

use ahash::AHashMap as HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::media::{self, MediaOrder, ToneTarget};
use crate::sip::build::{in_dialog_request, InDialog};
use crate::transaction::{ClientEvent, ClientTransactions, ClientTxId, Timer, TimerConfig};

/// A dialog from the UAS side (RFC 3261 §12): Call-ID, our tag, theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: Bytes,
    /// Our To tag.
    pub local_tag: Bytes,
    /// Their From tag.
    pub remote_tag: Bytes,
}

/// A dialog's identity borrowed from a request, to look a dialog up without
/// copying its Call-ID and tags (an ACK or BYE needs no owned copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialogKey<'a> {
    /// Call-ID.
    pub call_id: &'a [u8],
    /// Our To tag.
    pub local_tag: &'a [u8],
    /// Their From tag.
    pub remote_tag: &'a [u8],
}

/// What [`DialogId`] and [`DialogKey`] share: tables keyed by `DialogId` are
/// searched with either (`HashMap::get` through `Borrow<dyn DialogIdentity>`).
pub trait DialogIdentity {
    /// Call-ID, our tag, their tag.
    fn parts(&self) -> (&[u8], &[u8], &[u8]);
}

impl DialogIdentity for DialogId {
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        (&self.call_id, &self.local_tag, &self.remote_tag)
    }
}

impl DialogIdentity for DialogKey<'_> {
    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        (self.call_id, self.local_tag, self.remote_tag)
    }
}

impl<'a> std::borrow::Borrow<dyn DialogIdentity + 'a> for DialogId {
    fn borrow(&self) -> &(dyn DialogIdentity + 'a) {
        self
    }
}

impl PartialEq for dyn DialogIdentity + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn DialogIdentity + '_ {}

/// The same hash for a `DialogId` and for a `DialogKey` with the same parts
/// (`Borrow` requires it).
impl std::hash::Hash for dyn DialogIdentity + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

impl std::hash::Hash for DialogId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.parts().hash(h);
    }
}

/// What facd needs to hang up (RFC 3261 §12.1.1, §15.1.1).
pub type ByeTemplate = InDialog;

/// A BYE request (RFC 3261 §15.1.1).
pub fn build_bye(t: &ByeTemplate, branch: &str, cseq: u32) -> Bytes {
    in_dialog_request(t, "BYE", branch, cseq, &[], None)
}

/// Where the confirmation tone's address comes from (RFC 3264 §4: the
/// offer is in the INVITE and the answer in our 200, or the offer in our 200
/// and the answer in the ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneSource {
    /// The INVITE's offer named it (None: no address a tone can go to).
    Offer(Option<ToneTarget>),
    /// facd made the offer: the caller's answer in the ACK names it.
    AnswerInAck,
}

/// How a dialog ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Our BYE was answered (with this status).
    ByeAnswered(u16),
    /// Our BYE got no answer within Timer F.
    ByeTimedOut,
    /// Our BYE could not be sent: no connection to the caller could be
    /// opened (RFC 3261 §17.1.4).
    ByeUnsent,
    /// The caller sent BYE.
    CallerHungUp,
}

/// Things the shell may log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The ACK for our 2xx arrived.
    Confirmed(DialogId),
    /// No ACK within 64·T1; a BYE was sent.
    AckTimeout(DialogId),
    /// The dialog is over and forgotten.
    Ended {
        /// Which.
        id: DialogId,
        /// How.
        how: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// 2xx sent; retransmitting (UDP) until the ACK or the give-up time.
    WaitAck {
        interval: Duration,
        give_up: Instant,
    },
    /// ACK received; BYE at the given time.
    Confirmed { bye_at: Instant },
    /// Our BYE is out.
    ByeSent,
}

#[derive(Debug)]
struct Dialog<P> {
    id: DialogId,
    ok: Bytes,
    peer: P,
    reliable: bool,
    bye: ByeTemplate,
    confirm: Duration,
    /// Where the tone goes.
    media: ToneSource,
    /// A `Play` was ordered and no `Stop` yet.
    playing: bool,
    phase: Phase,
    /// The one armed timer (mirrored in `Dialogs::timers`).
    armed: Option<Instant>,
}

/// The table of answered calls.
#[derive(Debug)]
pub struct Dialogs<P> {
    cfg: TimerConfig,
    max: usize,
    dialogs: HashMap<u64, Dialog<P>>,
    by_id: HashMap<DialogId, u64>,
    timers: BTreeSet<(Instant, u64)>,
    clients: ClientTransactions<P>,
    /// Which dialog each of our BYEs belongs to.
    byes: HashMap<ClientTxId, u64>,
    transmits: VecDeque<(P, Bytes)>,
    events: VecDeque<DialogEvent>,
    media: VecDeque<MediaOrder>,
    rng: SmallRng,
    next: u64,
}

impl<P: Clone> Dialogs<P> {
    /// At most `max` dialogs at once; `seed` makes branches reproducible in tests.
    pub fn new(cfg: TimerConfig, max: usize, seed: u64) -> Self {
        Self {
            cfg,
            max,
            dialogs: HashMap::default(),
            by_id: HashMap::default(),
            timers: BTreeSet::new(),
            clients: ClientTransactions::new(cfg),
            byes: HashMap::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            media: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            next: 1,
        }
    }

    /// A 2xx was just sent (by the server transaction) for `id`; `media`
    /// says where the tone will go.
    #[allow(clippy::too_many_arguments)]
    pub fn answered(
        &mut self,
        now: Instant,
        id: DialogId,
        ok_2xx: Bytes,
        peer: P,
        reliable: bool,
        bye: ByeTemplate,
        confirm: Duration,
        media: ToneSource,
    ) {
        let n = self.next;
        self.next += 1;
        let interval = self.cfg.t1;
        let give_up = now + self.cfg.initial(Timer::H, false);
        self.by_id.insert(id.clone(), n);
        self.dialogs.insert(
            n,
            Dialog {
                id,
                ok: ok_2xx,
                peer,
                reliable,
                bye,
                confirm,
                media,
                playing: false,
                phase: Phase::WaitAck { interval, give_up },
                armed: None,
            },
        );
        // §13.3.1.4: retransmit on unreliable transports; on reliable ones
        // only wait for the ACK.
        self.arm(n, if reliable { give_up } else { now + interval });
    }

    /// The ACK for our 2xx. False if no such dialog (a stray ACK).
    /// `answer_media` is the caller's address from an SDP answer in the ACK,
    /// used only when facd made the offer ([`ToneSource::AnswerInAck`]); the
    /// tone starts now.
    pub fn ack(
        &mut self,
        now: Instant,
        id: &dyn DialogIdentity,
        answer_media: Option<ToneTarget>,
    ) -> bool {
        let Some(&n) = self.by_id.get(id) else {
            return false;
        };
        let Some(d) = self.dialogs.get_mut(&n) else {
            return false;
        };
        if let Phase::WaitAck { .. } = d.phase {
            let bye_at = now + d.confirm;
            d.phase = Phase::Confirmed { bye_at };
            self.events.push_back(DialogEvent::Confirmed(d.id.clone()));
            let target = match d.media {
                ToneSource::Offer(t) => t,
                ToneSource::AnswerInAck => answer_media,
            };
            if let Some(target) = target.filter(|_| media::packets_for(d.confirm) > 0) {
                d.playing = true;
                self.media.push_back(MediaOrder::Play {
                    tone: n,
                    target,
                    duration: d.confirm,
                });
            }
            self.arm(n, bye_at);
        }
        true
    }

    /// The caller's BYE. True if the dialog was ours (answer 200, else 481).
    pub fn bye_received(&mut self, _now: Instant, id: &dyn DialogIdentity) -> bool {
        let Some(n) = self.by_id.get(id).copied() else {
            return false;
        };
        self.forget(n, EndReason::CallerHungUp);
        true
    }

    /// A response to one of our BYEs (matched by its Via branch).
    pub fn on_response(&mut self, now: Instant, branch: &[u8], status: u16) {
        self.clients.on_response(now, branch, status);
        self.collect_client_events();
    }

    /// The transport could not send our BYE with this Via branch (no
    /// connection to the caller): the dialog ends as after a Timer F.
    pub fn on_transport_error(&mut self, branch: &[u8]) {
        self.clients.transport_error(branch);
        self.collect_client_events();
    }

    /// Shutdown: BYE every open dialog now (SPEC §8).
    pub fn hangup_all(&mut self, now: Instant) {
        let open: Vec<u64> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.phase != Phase::ByeSent)
            .map(|(n, _)| *n)
            .collect();
        for n in open {
            self.send_bye(now, n);
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clients.handle_timeout(now);
        self.collect_client_events();
        while let Some(&(when, n)) = self.timers.first() {
            if when > now {
                break;
            }
            self.timers.pop_first();
            let Some(d) = self.dialogs.get_mut(&n) else {
                continue;
            };
            d.armed = None;
            match d.phase {
                Phase::WaitAck { give_up, .. } if when >= give_up => {
                    self.events.push_back(DialogEvent::AckTimeout(d.id.clone()));
                    self.send_bye(when, n);
                }
                Phase::WaitAck { interval, give_up } => {
                    self.transmits.push_back((d.peer.clone(), d.ok.clone()));
                    let interval = self.cfg.next_interval(Timer::G, interval);
                    d.phase = Phase::WaitAck { interval, give_up };
                    let next = (when + interval).min(give_up);
                    self.arm(n, next);
                }
                Phase::Confirmed { .. } => self.send_bye(when, n),
                Phase::ByeSent => {}
            }
        }
        self.collect_client_events();
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.first().map(|t| t.0);
        [own, self.clients.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<(P, Bytes)> {
        self.transmits
            .pop_front()
            .or_else(|| self.clients.poll_transmit())
    }

    /// The next order for the media sender.
    pub fn poll_media(&mut self) -> Option<MediaOrder> {
        self.media.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    /// True if `id` is an open dialog.
    pub fn contains(&self, id: &dyn DialogIdentity) -> bool {
        self.by_id.contains_key(id)
    }

    /// Open dialogs.
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// No open dialog.
    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// The table is full: new calls must be refused (503).
    pub fn is_full(&self) -> bool {
        self.dialogs.len() >= self.max
    }

    fn send_bye(&mut self, now: Instant, n: u64) {
        let branch = format!("z9hG4bK{:016x}", self.rng.gen::<u64>());
        let Some(d) = self.dialogs.get_mut(&n) else {
            return;
        };
        let bye = build_bye(&d.bye, &branch, 1);
        d.phase = Phase::ByeSent;
        if std::mem::take(&mut d.playing) {
            stop_tone(&mut self.media, n);
        }
        if let Some(t) = d.armed.take() {
            self.timers.remove(&(t, n));
        }
        let id = self
            .clients
            .send(now, Bytes::from(branch), bye, d.peer.clone(), d.reliable);
        self.byes.insert(id, n);
    }

    fn collect_client_events(&mut self) {
        while let Some(ev) = self.clients.poll_event() {
            let (id, how) = match ev {
                ClientEvent::Completed { id, status } => (id, EndReason::ByeAnswered(status)),
                ClientEvent::TimedOut { id } => (id, EndReason::ByeTimedOut),
                ClientEvent::TransportError { id } => (id, EndReason::ByeUnsent),
            };
            if let Some(n) = self.byes.remove(&id) {
                self.forget(n, how);
            }
        }
    }

    fn forget(&mut self, n: u64, how: EndReason) {
        if let Some(d) = self.dialogs.remove(&n) {
            if d.playing {
                stop_tone(&mut self.media, n);
            }
            if let Some(t) = d.armed {
                self.timers.remove(&(t, n));
            }
            self.by_id.remove(&d.id);
            self.events.push_back(DialogEvent::Ended { id: d.id, how });
        }
    }

    fn arm(&mut self, n: u64, when: Instant) {
        if let Some(d) = self.dialogs.get_mut(&n) {
            if let Some(t) = d.armed.replace(when) {
                self.timers.remove(&(t, n));
            }
            self.timers.insert((when, n));
        }
    }
}

/// Ends tone `n`: a `Play` the shell has not taken yet is withdrawn (a
/// caller whose BYE follows its ACK at once costs the media sender
/// nothing), else a `Stop` is ordered.
fn stop_tone(orders: &mut VecDeque<MediaOrder>, n: u64) {
    let queued = orders
        .iter()
        .rposition(|o| matches!(o, MediaOrder::Play { tone, .. } if *tone == n));
    match queued {
        Some(i) => {
            orders.remove(i);
        }
        None => orders.push_back(MediaOrder::Stop { tone: n }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn id() -> DialogId {
        DialogId {
            call_id: Bytes::from_static(b"call-1"),
            local_tag: Bytes::from_static(b"ours"),
            remote_tag: Bytes::from_static(b"theirs"),
        }
    }

    fn template() -> ByeTemplate {
        ByeTemplate {
            request_uri: Bytes::from_static(b"sip:1001@127.0.0.1:5062;transport=udp"),
            transport: "UDP",
            local_sent_by: "127.0.0.1:5060".into(),
            from: Bytes::from_static(b"<sip:*38@pbx>;tag=ours"),
            to: Bytes::from_static(b"\"Alice\" <sip:1001@pbx>;tag=theirs"),
            call_id: Bytes::from_static(b"call-1"),
            route_set: vec![Bytes::from_static(b"<sip:proxy.example.com;lr>")],
            contact: None,
        }
    }

    fn dialogs(reliable: bool, confirm: u64) -> (Dialogs<u8>, Instant) {
        let t0 = Instant::now();
        let mut d = Dialogs::new(TimerConfig::default(), 10, 7);
        d.answered(
            t0,
            id(),
            Bytes::from_static(b"200"),
            1,
            reliable,
            template(),
            ms(confirm),
            ToneSource::AnswerInAck,
        );
        (d, t0)
    }

    /// (ms, message) for every transmit between `from` and `to`.
    fn run(d: &mut Dialogs<u8>, t0: Instant, from: u64, to: u64) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= to {
            d.handle_timeout(t0 + ms(now));
            while let Some((_, b)) = d.poll_transmit() {
                let text = String::from_utf8_lossy(&b);
                out.push((now, text.split(' ').next().unwrap_or("").to_string()));
            }
            now += 10;
        }
        out
    }

    #[test]
    fn build_bye_exact_bytes() {
        let b = build_bye(&template(), "z9hG4bKx", 1);
        assert_eq!(
            b,
            "BYE sip:1001@127.0.0.1:5062;transport=udp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport\r\n\
             Max-Forwards: 70\r\n\
             Route: <sip:proxy.example.com;lr>\r\n\
             From: <sip:*38@pbx>;tag=ours\r\n\
             To: \"Alice\" <sip:1001@pbx>;tag=theirs\r\n\
             Call-ID: call-1\r\n\
             CSeq: 1 BYE\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn retransmits_2xx_until_ack_then_bye_after_confirm() {
        let (mut d, t0) = dialogs(false, 1000);
        let sent = run(&mut d, t0, 0, 8000);
        let times: Vec<u64> = sent.iter().map(|s| s.0).collect();
        // T1 doubling to T2: 500, 1500, 3500, 7500.
        assert_eq!(times, [500, 1500, 3500, 7500]);
        assert!(d.ack(t0 + ms(8000), &id(), None));
        assert_eq!(d.poll_event(), Some(DialogEvent::Confirmed(id())));
        assert!(
            d.ack(t0 + ms(8001), &id(), None),
            "a repeated ACK is still ours"
        );
        let sent = run(&mut d, t0, 8010, 9000);
        assert_eq!(sent, [(9000, "BYE".to_string())]);
        // BYE retransmitted per Timer E until answered.
        let sent = run(&mut d, t0, 9010, 9500);
        assert_eq!(sent, [(9500, "BYE".to_string())]);
        d.on_response(t0 + ms(9600), b"not ours", 200);
        assert_eq!(d.len(), 1);
        // Find the branch of our BYE by rebuilding the same RNG sequence.
        let mut rng = SmallRng::seed_from_u64(7);
        let branch = format!("z9hG4bK{:016x}", rng.gen::<u64>());
        d.on_response(t0 + ms(9600), branch.as_bytes(), 200);
        assert!(d.is_empty());
        let evs: Vec<_> = std::iter::from_fn(|| d.poll_event()).collect();
        assert_eq!(
            evs,
            [DialogEvent::Ended {
                id: id(),
                how: EndReason::ByeAnswered(200)
            }]
        );
    }

    #[test]
    fn no_ack_within_64_t1_means_bye() {
        let (mut d, t0) = dialogs(false, 1000);
        let sent = run(&mut d, t0, 0, 32_000);
        let (last_t, last) = sent.last().unwrap().clone();
        assert_eq!((last_t, last.as_str()), (32_000, "BYE"));
        assert_eq!(sent.iter().filter(|s| s.1 == "200").count(), 10);
        assert_eq!(d.poll_event(), Some(DialogEvent::AckTimeout(id())));
        // The BYE times out (Timer F) too: forgotten.
        run(&mut d, t0, 32_010, 64_010);
        assert!(d.is_empty());
    }

    #[test]
    fn tcp_waits_for_ack_without_retransmitting() {
        let (mut d, t0) = dialogs(true, 0);
        assert!(run(&mut d, t0, 0, 31_990).is_empty());
        assert!(d.ack(t0 + ms(31_990), &id(), None));
        // confirm = 0: BYE right after the ACK.
        assert_eq!(
            run(&mut d, t0, 31_990, 32_500),
            [(31_990, "BYE".to_string())]
        );
    }

    #[test]
    fn an_unsendable_bye_ends_the_dialog_at_once() {
        let (mut d, t0) = dialogs(true, 0);
        assert!(d.ack(t0, &id(), None));
        assert_eq!(run(&mut d, t0, 0, 0), [(0, "BYE".to_string())]);
        let _ = d.poll_event();
        d.on_transport_error(b"not ours");
        assert_eq!(d.len(), 1);
        let mut rng = SmallRng::seed_from_u64(7);
        let branch = format!("z9hG4bK{:016x}", rng.gen::<u64>());
        d.on_transport_error(branch.as_bytes());
        assert!(d.is_empty());
        assert_eq!(
            d.poll_event(),
            Some(DialogEvent::Ended {
                id: id(),
                how: EndReason::ByeUnsent
            })
        );
        assert_eq!(d.poll_timeout(), None, "no timer left");
    }

    #[test]
    fn caller_bye_first_means_no_bye_from_us() {
        let (mut d, t0) = dialogs(false, 1000);
        d.ack(t0 + ms(10), &id(), None);
        assert!(d.bye_received(t0 + ms(20), &id()));
        assert!(!d.bye_received(t0 + ms(30), &id()));
        assert!(run(&mut d, t0, 0, 5000).is_empty());
        assert!(d.is_empty());
        assert!(!d.ack(t0, &id(), None), "a stray ACK");
    }

    #[test]
    fn a_borrowed_key_finds_the_dialog_and_hashes_like_the_id() {
        let (mut d, t0) = dialogs(false, 1000);
        let key = |l: &'static [u8]| DialogKey {
            call_id: b"call-1",
            local_tag: l,
            remote_tag: b"theirs",
        };
        assert!(d.contains(&key(b"ours")));
        assert!(!d.contains(&key(b"other")));
        assert!(!d.contains(&DialogKey {
            call_id: b"call-1ours",
            local_tag: b"",
            remote_tag: b"theirs",
        }));
        let s = ahash::RandomState::new();
        let by_id: &dyn DialogIdentity = &id();
        let by_key: &dyn DialogIdentity = &key(b"ours");
        assert_eq!(s.hash_one(by_id), s.hash_one(by_key));
        assert_eq!(
            s.hash_one(id()),
            s.hash_one(by_key),
            "DialogId hashes as its parts"
        );
        assert!(d.ack(t0 + ms(10), &key(b"ours"), None));
        assert!(d.bye_received(t0 + ms(20), &key(b"ours")));
        assert!(!d.contains(&id()));
    }

    #[test]
    fn hangup_all_sends_bye_to_every_open_dialog() {
        let (mut d, t0) = dialogs(false, 60_000);
        let other = answer_call_2(&mut d, t0, true, 60_000, ToneSource::AnswerInAck);
        d.ack(t0, &other, None);
        d.hangup_all(t0 + ms(5));
        let byes: Vec<_> = std::iter::from_fn(|| d.poll_transmit()).collect();
        assert_eq!(byes.len(), 2);
        assert!(byes.iter().all(|(_, b)| b.starts_with(b"BYE ")));
        assert!(!d.is_full());
    }

    #[test]
    fn full_table() {
        let t0 = Instant::now();
        let mut d: Dialogs<u8> = Dialogs::new(TimerConfig::default(), 1, 1);
        assert!(!d.is_full());
        d.answered(
            t0,
            id(),
            Bytes::new(),
            1,
            false,
            template(),
            ms(0),
            ToneSource::AnswerInAck,
        );
        assert!(d.is_full());
        assert!(d.contains(&id()));
    }

    fn tone_to() -> ToneTarget {
        ToneTarget {
            codec: crate::media::Codec::Pcma,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:6000".parse().unwrap(),
        }
    }

    fn with_media(confirm: u64, media: ToneSource) -> (Dialogs<u8>, Instant) {
        let t0 = Instant::now();
        let mut d = Dialogs::new(TimerConfig::default(), 10, 7);
        d.answered(
            t0,
            id(),
            Bytes::from_static(b"200"),
            1,
            false,
            template(),
            ms(confirm),
            media,
        );
        (d, t0)
    }

    /// A second call ("call-2", peer 2) answered at `t0`; its id.
    fn answer_call_2(
        d: &mut Dialogs<u8>,
        t0: Instant,
        reliable: bool,
        confirm: u64,
        media: ToneSource,
    ) -> DialogId {
        let mut other = id();
        other.call_id = Bytes::from_static(b"call-2");
        d.answered(
            t0,
            other.clone(),
            Bytes::from_static(b"200"),
            2,
            reliable,
            template(),
            ms(confirm),
            media,
        );
        other
    }

    fn orders(d: &mut Dialogs<u8>) -> Vec<MediaOrder> {
        std::iter::from_fn(|| d.poll_media()).collect()
    }

    #[test]
    fn ack_starts_the_tone_for_confirm_and_the_bye_ends_it() {
        let (mut d, t0) = with_media(1000, ToneSource::Offer(Some(tone_to())));
        assert!(orders(&mut d).is_empty(), "no tone before the ACK");
        run(&mut d, t0, 0, 400);
        // An answer in the ACK does not override the offer's address.
        let mut other = tone_to();
        other.remote = "127.0.0.2:7000".parse().unwrap();
        d.ack(t0 + ms(400), &id(), Some(other));
        assert_eq!(
            orders(&mut d),
            [MediaOrder::Play {
                tone: 1,
                target: tone_to(),
                duration: ms(1000)
            }]
        );
        d.ack(t0 + ms(410), &id(), None);
        assert!(
            orders(&mut d).is_empty(),
            "a repeated ACK plays nothing more"
        );
        assert_eq!(run(&mut d, t0, 410, 1400), [(1400, "BYE".to_string())]);
        assert_eq!(orders(&mut d), [MediaOrder::Stop { tone: 1 }]);
    }

    #[test]
    fn the_answer_in_the_ack_names_the_target_when_we_offered() {
        let (mut d, t0) = with_media(200, ToneSource::AnswerInAck);
        d.ack(t0, &id(), Some(tone_to()));
        assert!(matches!(
            orders(&mut d)[..],
            [MediaOrder::Play { target, .. }] if target == tone_to()
        ));
        // No address at all (no SDP in the ACK): no tone, BYE as usual.
        let (mut d, t0) = with_media(200, ToneSource::AnswerInAck);
        d.ack(t0, &id(), None);
        assert!(orders(&mut d).is_empty());
        assert_eq!(run(&mut d, t0, 0, 300), [(200, "BYE".to_string())]);
        assert!(orders(&mut d).is_empty());
        // The INVITE's offer had no usable address: an SDP in the ACK (not
        // an answer, RFC 3264 §4) does not supply one.
        let (mut d, t0) = with_media(200, ToneSource::Offer(None));
        d.ack(t0, &id(), Some(tone_to()));
        assert!(orders(&mut d).is_empty());
    }

    #[test]
    fn confirm_0_plays_nothing_and_hangs_up_at_once() {
        for confirm in [0, 19] {
            let (mut d, t0) = with_media(confirm, ToneSource::Offer(Some(tone_to())));
            d.ack(t0, &id(), None);
            assert!(orders(&mut d).is_empty(), "confirm {confirm}");
            assert_eq!(run(&mut d, t0, 0, 30)[0].1, "BYE");
        }
    }

    #[test]
    fn a_tone_ended_before_its_play_was_taken_is_never_ordered() {
        // ACK and BYE in one turn: the Play is withdrawn, no Stop follows.
        let (mut d, t0) = with_media(5000, ToneSource::Offer(Some(tone_to())));
        d.ack(t0, &id(), None);
        assert!(d.bye_received(t0, &id()));
        assert!(orders(&mut d).is_empty());
        // Another call's Play queued before it stays.
        let (mut d, t0) = with_media(5000, ToneSource::Offer(Some(tone_to())));
        let other = answer_call_2(&mut d, t0, false, 5000, ToneSource::Offer(Some(tone_to())));
        d.ack(t0, &other, None);
        d.ack(t0, &id(), None);
        assert!(d.bye_received(t0, &id()));
        assert!(matches!(
            orders(&mut d)[..],
            [MediaOrder::Play { tone: 2, .. }]
        ));
        // Once the shell has taken a Play, ending the call orders a Stop.
        d.hangup_all(t0);
        assert_eq!(orders(&mut d), [MediaOrder::Stop { tone: 2 }]);
    }

    #[test]
    fn caller_bye_and_shutdown_stop_the_tone() {
        let (mut d, t0) = with_media(5000, ToneSource::Offer(Some(tone_to())));
        d.ack(t0, &id(), None);
        assert_eq!(orders(&mut d).len(), 1);
        assert!(d.bye_received(t0 + ms(100), &id()));
        assert_eq!(orders(&mut d), [MediaOrder::Stop { tone: 1 }]);

        let (mut d, t0) = with_media(5000, ToneSource::Offer(Some(tone_to())));
        d.ack(t0, &id(), None);
        answer_call_2(&mut d, t0, false, 5000, ToneSource::Offer(Some(tone_to())));
        assert_eq!(orders(&mut d).len(), 1);
        d.hangup_all(t0 + ms(100));
        // Only the playing tone is stopped; the unacknowledged call never played.
        assert_eq!(orders(&mut d), [MediaOrder::Stop { tone: 1 }]);
        // A call that never got its ACK plays nothing.
        let (mut d, t0) = with_media(1000, ToneSource::Offer(Some(tone_to())));
        run(&mut d, t0, 0, 33_000);
        assert!(orders(&mut d).is_empty());
    }
}
