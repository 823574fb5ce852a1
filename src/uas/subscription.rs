//! Subscriptions of phone keys (RFC 6665, SPEC §5), the notifier side: the
//! feature-key package `as-feature-event` (ACD, do-not-disturb and
//! forwarding keys) and the BLF lamps on star codes (`dialog`, RFC 4235;
//! `presence`, RFC 3856). One entry per SUBSCRIBE dialog, with its agent,
//! its expiry, what its phone was last shown and what the next NOTIFY
//! needs (RFC 6665 §4.2.1: NOTIFYs are in-dialog requests, CSeq
//! increasing, routed by the SUBSCRIBE's Record-Route). NOTIFYs go out
//! through non-INVITE client transactions (RFC 3261 §17.1.2: Timers E, F,
//! K); a NOTIFY answered 481 (or another usage-ending status, RFC 5057
//! §5.1) or timing out ends the subscription (RFC 6665 §4.2.2).
//!
//! What a phone is told is data ([`Doc`]), rendered into a body only when
//! its NOTIFY leaves, so an RFC 4235 `version` rises by exactly one per
//! document sent. At most one NOTIFY per subscription is unanswered at a
//! time; the documents waiting behind it keep their order, a newer one
//! replacing a waiting one of the same feature (an `AgentLoggedOnEvent`
//! is never dropped, except by a logout). CSeq and `version` start from a
//! number derived from the wall clock ([`counter_base`]), so after a restart
//! a re-established subscription's NOTIFYs still rise (RFC 3261 §12.2.2,
//! RFC 4235 §4.2).
//!
//! Pure like [`super::dialog`]: time is passed in, timers are data, outputs
//! are popped. Which agent state a key shows is worked out by the UAS
//! ([`Keys`]); the bodies come from [`crate::sip`].

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use ahash::AHashMap as HashMap;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::dialog::{DialogId, DialogIdentity};
use crate::sip::agent_view::QueueView;
use crate::sip::blf::{self, Lamp, LampTarget};
use crate::sip::build::{in_dialog_request, InDialog};
use crate::sip::feature_sync::{self, AcdState, ForwardingType};
use crate::sip::{dialog_info, pidf};
use crate::transaction::{ClientEvent, ClientTransactions, ClientTxId, TimerConfig};

/// The durations facd grants (configuration `[subscribe]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryBounds {
    /// Shorter requests get `423 Interval Too Brief` with this `Min-Expires`.
    pub min: u32,
    /// Longer requests are cut to this.
    pub max: u32,
    /// Granted when the SUBSCRIBE has no `Expires`.
    pub default: u32,
    /// Subscriptions one agent may hold; a new one beyond this ends the
    /// agent's oldest (a rebooted phone's stale dialog, usually).
    pub per_agent: usize,
}

/// A requested duration below the minimum (RFC 6665 §4.2.1.1: `423`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interval too brief (minimum {min} s)")]
pub struct TooBrief {
    /// The `Min-Expires` to answer with.
    pub min: u32,
}

impl ExpiryBounds {
    /// The duration granted for a SUBSCRIBE's `Expires` (RFC 6665 §4.2.1.1:
    /// the notifier may shorten but never lengthen it; 0 unsubscribes).
    pub fn grant(&self, requested: Option<u32>) -> Result<u32, TooBrief> {
        match requested {
            None => Ok(self.default),
            Some(0) => Ok(0),
            Some(n) if n < self.min => Err(TooBrief { min: self.min }),
            Some(n) => Ok(n.min(self.max)),
        }
    }
}

/// What a NOTIFY needs: the subscription's dialog, with our Contact.
pub type NotifyTemplate = InDialog;

/// A NOTIFY request (RFC 6665 §4.2.1, §8.2.3) of package `event`.
pub fn build_notify(
    t: &NotifyTemplate,
    event: &str,
    branch: &str,
    cseq: u32,
    subscription_state: &str,
    content_type: &str,
    body: &[u8],
) -> Bytes {
    let extra = [
        ("Event", event),
        ("Subscription-State", subscription_state),
        ("Server", crate::sip::SERVER),
    ];
    let body = (!body.is_empty()).then_some((content_type, body));
    in_dialog_request(t, "NOTIFY", branch, cseq, &extra, body)
}

/// 2024-01-01T00:00:00Z in Unix seconds: where [`counter_base`] counts from.
const COUNTER_EPOCH_SECS: u64 = 1_704_067_200;

/// The first CSeq and dialog-info `version` of a subscription made at
/// `wall_ms` (Unix milliseconds): the seconds since 2024. A subscription
/// re-established after a restart (a refresh for a dialog facd forgot)
/// starts above what it sent before, unless it was sent more NOTIFYs than
/// seconds passed between its start and the restart (RFC 3261 §12.2.2: a
/// lower CSeq is refused; RFC 4235 §4.2: an older version is ignored).
/// Capped well below 2^31 (RFC 3261 §8.1.1.5; phones keep the version in a
/// C `int`), leaving 2^28 NOTIFYs of room: good until 2083.
pub fn counter_base(wall_ms: u64) -> u32 {
    let secs = (wall_ms / 1000).saturating_sub(COUNTER_EPOCH_SECS);
    secs.min(0x7000_0000) as u32
}

/// What a subscription watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `as-feature-event`: the agent's ACD, DND and forwarding keys.
    Features {
        /// The subscriber takes `multipart/mixed` (RFC 6665 §3.1.3: the
        /// SUBSCRIBE's Accept lists the NOTIFY bodies it allows): the full
        /// state goes in one NOTIFY; else one NOTIFY per feature.
        multipart: bool,
    },
    /// A BLF lamp on one of the agent's star codes.
    Lamp {
        /// The code and queue it stands for.
        target: LampTarget,
        /// `presence` (PIDF) rather than `dialog` (dialog-info).
        presence: bool,
        /// The subscribed URI, the documents' `entity`.
        entity: String,
    },
}

impl Kind {
    /// The event package (RFC 6665 §8.2.1), for the NOTIFY's `Event`.
    pub fn event(&self) -> &'static str {
        match self {
            Self::Features { .. } => feature_sync::EVENT,
            Self::Lamp { presence: true, .. } => pidf::EVENT,
            Self::Lamp { .. } => dialog_info::EVENT,
        }
    }
}

/// One document to tell a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    /// An ACD event (`AgentLoggedOnEvent` … `AgentWorkingAfterCallEvent`).
    Acd(AcdState),
    /// `DoNotDisturbEvent`.
    Dnd(bool),
    /// `ForwardingEvent` (off) of one type.
    Forwarding(ForwardingType),
    /// Every feature's state: one `multipart/mixed` body, or one NOTIFY
    /// per feature for a subscriber that does not take multipart.
    Full {
        /// The ACD state (never `LoggedOn`).
        acd: AcdState,
        /// Do not disturb.
        dnd: bool,
    },
    /// A lamp document.
    Lamp(Lamp),
}

impl Doc {
    /// Two documents about the same feature: the newer replaces the older
    /// while both wait.
    fn same_feature(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Acd(a), Self::Acd(b)) => *a != AcdState::LoggedOn && *b != AcdState::LoggedOn,
            (Self::Dnd(_), Self::Dnd(_)) | (Self::Lamp(_), Self::Lamp(_)) => true,
            (Self::Forwarding(a), Self::Forwarding(b)) => a == b,
            _ => false,
        }
    }
}

/// The agent's state as its keys read it, worked out once per change.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// What the ACD key shows.
    pub acd: AcdState,
    /// Do not disturb.
    pub dnd: bool,
    /// Per queue, for the lamps.
    pub queues: &'a [QueueView<'a>],
}

/// What the NOTIFY answering a SUBSCRIBE tells (RFC 6665 §4.2.1.2: every
/// accepted SUBSCRIBE is followed by a NOTIFY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    /// The whole state: every feature, or the lamp (no body, a refresh).
    Full,
    /// The ACD state after a `SetAgentState`, even when nothing changed
    /// (Yealink shows a login timeout after 5 s without one), preceded by
    /// `AgentLoggedOnEvent` when the agent was logged off (`before`).
    Acd {
        /// The ACD state before the request.
        before: AcdState,
    },
    /// The DND state after a `SetDoNotDisturb`.
    Dnd,
    /// Forwarding of this type is off, after a `SetForwarding`.
    Forwarding(ForwardingType),
}

/// A subscription just answered 200.
#[derive(Debug)]
pub struct NewSub<P> {
    /// Its dialog.
    pub id: DialogId,
    /// Whose.
    pub agent: String,
    /// Where its NOTIFYs go.
    pub peer: P,
    /// Reliable transport.
    pub reliable: bool,
    /// What its NOTIFYs need.
    pub template: NotifyTemplate,
    /// Seconds granted (0: a fetch).
    pub expires: u32,
    /// What it watches.
    pub kind: Kind,
    /// Its first CSeq and version ([`counter_base`]).
    pub base: u32,
}

/// Where a refresh came from: later NOTIFYs follow the subscriber's
/// latest flow (a phone that reconnected over TCP), RFC 5626 style.
#[derive(Debug, Clone)]
pub struct Flow<P> {
    /// The refresh's Contact URI, the new remote target (RFC 6665 §4.1.2.1).
    pub contact: Option<Bytes>,
    /// Its link.
    pub peer: P,
    /// Reliable transport.
    pub reliable: bool,
    /// `"UDP"` or `"TCP"`.
    pub transport: &'static str,
    /// Our `host:port` on it.
    pub local_sent_by: String,
}

/// How a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Not refreshed in time (terminating NOTIFY sent).
    Expired,
    /// `Expires: 0` (terminating NOTIFY sent), or a fetch.
    Unsubscribed,
    /// A NOTIFY was answered with a usage-ending status.
    Rejected(u16),
    /// A NOTIFY got no answer within Timer F.
    TimedOut,
    /// A NOTIFY could not be sent: no connection to the subscriber could
    /// be opened (RFC 3261 §17.1.4).
    Unreachable,
    /// facd is shutting down (terminating NOTIFY sent).
    Shutdown,
    /// The agent's newest subscription beyond `per_agent` replaced it
    /// (terminating NOTIFY `reason=rejected` sent: do not retry).
    Replaced,
}

/// Things the shell may log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubEvent {
    /// A subscription is over and forgotten.
    Ended {
        /// Which.
        id: DialogId,
        /// Whose.
        agent: String,
        /// How.
        how: EndReason,
    },
}

/// The table is full: answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many subscriptions")]
pub struct Full;

/// What a phone was last told (sent or waiting to be sent).
#[derive(Debug, Default)]
struct Shown {
    acd: Option<AcdState>,
    dnd: Option<bool>,
    lamp: Option<Lamp>,
}

#[derive(Debug)]
struct Sub<P> {
    id: DialogId,
    agent: String,
    peer: P,
    reliable: bool,
    template: NotifyTemplate,
    kind: Kind,
    /// The CSeq of the last NOTIFY sent.
    cseq: u32,
    /// The `version` of the next dialog-info document (RFC 4235 §4.1).
    version: u32,
    expires_at: Instant,
    /// The unanswered NOTIFY, if any.
    in_flight: Option<ClientTxId>,
    /// Documents waiting for `in_flight` to be answered, in order.
    queued: VecDeque<Doc>,
    shown: Shown,
    /// The latest state document, for the terminating NOTIFY.
    last: Option<Doc>,
}

impl<P> Sub<P> {
    /// Records that the phone is being told `doc`.
    fn note(&mut self, doc: Doc) {
        match doc {
            Doc::Acd(AcdState::LoggedOn) | Doc::Forwarding(_) => return,
            Doc::Acd(acd) => self.shown.acd = Some(acd),
            Doc::Dnd(on) => {
                self.shown.dnd = Some(on);
                return;
            }
            Doc::Full { acd, dnd } => {
                self.shown.acd = Some(acd);
                self.shown.dnd = Some(dnd);
            }
            Doc::Lamp(lamp) => self.shown.lamp = Some(lamp),
        }
        self.last = Some(doc);
    }

    /// Queues `doc` behind the unanswered NOTIFY (see the module doc).
    fn enqueue(&mut self, doc: Doc) {
        match doc {
            Doc::Full { .. } => self.queued.retain(|d| *d == Doc::Acd(AcdState::LoggedOn)),
            // Logged out before the phone heard of the login: it must not
            // answer a stale `AgentLoggedOnEvent` by logging in again.
            Doc::Acd(AcdState::LoggedOff) => self.queued.retain(|d| !matches!(d, Doc::Acd(_))),
            _ => self.queued.retain(|d| !d.same_feature(&doc)),
        }
        self.queued.push_back(doc);
    }

    /// What to tell the phone for the agent's new `keys`.
    fn changes(&self, keys: &Keys<'_>) -> Vec<Doc> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Features { .. } => {
                if self.shown.acd != Some(keys.acd) {
                    // After a login: `AgentLoggedOnEvent`, then the state
                    // the login produced (Yealink answers the first with
                    // its configured initial state).
                    if self.shown.acd == Some(AcdState::LoggedOff) {
                        out.push(Doc::Acd(AcdState::LoggedOn));
                    }
                    out.push(Doc::Acd(keys.acd));
                }
                if self.shown.dnd.unwrap_or(false) != keys.dnd {
                    out.push(Doc::Dnd(keys.dnd));
                }
            }
            Kind::Lamp { target, .. } => {
                let lamp = target.lamp(keys.queues);
                if self.shown.lamp != Some(lamp) {
                    out.push(Doc::Lamp(lamp));
                }
            }
        }
        out
    }

    /// The `Content-Type` and body of `doc`; a dialog-info document takes
    /// the next version.
    fn render(&mut self, doc: Doc) -> (String, Bytes) {
        let ct = |c: &str| c.to_string();
        let agent = self.agent.as_str();
        let acd = |s| {
            let body = feature_sync::agent_event_body(agent, agent, s);
            (ct(feature_sync::CONTENT_TYPE), Bytes::from(body))
        };
        match (&self.kind, doc) {
            (
                Kind::Lamp {
                    target,
                    presence,
                    entity,
                },
                doc,
            ) => {
                let lamp = match doc {
                    Doc::Lamp(l) => l,
                    _ => self.shown.lamp.unwrap_or(Lamp::Off),
                };
                if *presence {
                    let body = blf::pidf_body(entity, target, lamp);
                    (ct(pidf::CONTENT_TYPE), Bytes::from(body))
                } else {
                    let body = blf::dialog_body(entity, self.version, lamp);
                    self.version = self.version.saturating_add(1);
                    (ct(dialog_info::CONTENT_TYPE), Bytes::from(body))
                }
            }
            (Kind::Features { .. }, Doc::Acd(s)) => acd(s),
            (Kind::Features { .. }, Doc::Dnd(on)) => {
                let body = feature_sync::dnd_event_body(agent, on);
                (ct(feature_sync::CONTENT_TYPE), Bytes::from(body))
            }
            (Kind::Features { .. }, Doc::Forwarding(k)) => {
                let body = feature_sync::forwarding_event_body(agent, k);
                (ct(feature_sync::CONTENT_TYPE), Bytes::from(body))
            }
            (Kind::Features { multipart: true }, Doc::Full { acd, dnd }) => {
                let b = feature_sync::full_state(agent, agent, acd, dnd);
                (b.content_type, Bytes::from(b.body))
            }
            (Kind::Features { .. }, Doc::Full { acd: s, .. }) => acd(s),
            (Kind::Features { .. }, Doc::Lamp(_)) => {
                acd(self.shown.acd.unwrap_or(AcdState::LoggedOff))
            }
        }
    }
}

/// The table of subscriptions.
#[derive(Debug)]
pub struct Subscriptions<P> {
    bounds: ExpiryBounds,
    max: usize,
    subs: HashMap<u64, Sub<P>>,
    by_id: HashMap<DialogId, u64>,
    by_agent: HashMap<String, Vec<u64>>,
    timers: BTreeSet<(Instant, u64)>,
    clients: ClientTransactions<P>,
    notifies: HashMap<ClientTxId, u64>,
    events: VecDeque<SubEvent>,
    rng: SmallRng,
    next: u64,
}

/// RFC 5057 §5.1 and RFC 6665 §4.2.2: NOTIFY responses that end the
/// subscription (481 first of all).
fn ends_usage(status: u16) -> bool {
    matches!(
        status,
        404 | 405 | 408 | 410 | 416 | 480..=485 | 489 | 501 | 604
    )
}

impl<P: Clone> Subscriptions<P> {
    /// At most `max` subscriptions; `seed` makes branches reproducible in tests.
    pub fn new(timers: TimerConfig, bounds: ExpiryBounds, max: usize, seed: u64) -> Self {
        Self {
            bounds,
            max,
            subs: HashMap::default(),
            by_id: HashMap::default(),
            by_agent: HashMap::default(),
            timers: BTreeSet::new(),
            clients: ClientTransactions::new(timers),
            notifies: HashMap::default(),
            events: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            next: 1,
        }
    }

    /// The configured bounds.
    pub fn bounds(&self) -> ExpiryBounds {
        self.bounds
    }

    /// A new subscription, just answered 200 with `expires` (already
    /// granted): sends the first NOTIFY with `docs` at once (RFC 6665
    /// §4.2.1.2). `expires == 0` is a fetch: one terminating NOTIFY with
    /// the last of `docs`.
    pub fn subscribe(&mut self, now: Instant, new: NewSub<P>, docs: &[Doc]) -> Result<(), Full> {
        if self.subs.len() >= self.max {
            return Err(Full);
        }
        let NewSub {
            id,
            agent,
            peer,
            reliable,
            template,
            expires,
            kind,
            base,
        } = new;
        if expires > 0 {
            let held = self.by_agent.get(&agent).map_or(0, Vec::len);
            if held >= self.bounds.per_agent.max(1) {
                if let Some(&oldest) = self.by_agent.get(&agent).and_then(|l| l.first()) {
                    self.terminate(now, oldest, EndReason::Replaced, None);
                }
            }
        }
        let n = self.next;
        self.next += 1;
        let expires_at = now + Duration::from_secs(expires.into());
        self.by_id.insert(id.clone(), n);
        self.by_agent.entry(agent.clone()).or_default().push(n);
        self.subs.insert(
            n,
            Sub {
                id,
                agent,
                peer,
                reliable,
                template,
                kind,
                cseq: base,
                version: base,
                expires_at,
                in_flight: None,
                queued: VecDeque::new(),
                shown: Shown::default(),
                last: None,
            },
        );
        if expires == 0 {
            self.terminate(now, n, EndReason::Unsubscribed, docs.last().copied());
        } else {
            self.timers.insert((expires_at, n));
            for &doc in docs {
                self.push(now, n, doc);
            }
        }
        Ok(())
    }

    /// An in-dialog SUBSCRIBE (RFC 6665 §4.2.1.2): a refresh for `expires`
    /// more seconds, or with 0 the end (terminating NOTIFY with the last of
    /// `docs`). Either way NOTIFYs with `docs` follow, over the refresh's
    /// `flow`. False when the dialog is unknown.
    pub fn refresh(
        &mut self,
        now: Instant,
        id: &dyn DialogIdentity,
        expires: u32,
        flow: Flow<P>,
        docs: &[Doc],
    ) -> bool {
        let Some(&n) = self.by_id.get(id) else {
            return false;
        };
        let Some(s) = self.subs.get_mut(&n) else {
            return false;
        };
        if let Some(c) = flow.contact {
            s.template.request_uri = c;
        }
        s.peer = flow.peer;
        s.reliable = flow.reliable;
        s.template.transport = flow.transport;
        s.template.local_sent_by = flow.local_sent_by;
        if expires == 0 {
            self.terminate(now, n, EndReason::Unsubscribed, docs.last().copied());
            return true;
        }
        self.timers.remove(&(s.expires_at, n));
        s.expires_at = now + Duration::from_secs(expires.into());
        self.timers.insert((s.expires_at, n));
        for &doc in docs {
            self.push(now, n, doc);
        }
        true
    }

    /// The agent's state changed: NOTIFY each of its subscriptions whose
    /// phone does not already show what `keys` say.
    pub fn update_agent(&mut self, now: Instant, agent: &str, keys: &Keys<'_>) {
        let Some(list) = self.by_agent.get(agent) else {
            return;
        };
        for n in list.clone() {
            let docs = self.subs.get(&n).map(|s| s.changes(keys));
            for doc in docs.unwrap_or_default() {
                self.push(now, n, doc);
            }
        }
    }

    /// True if `agent` has a subscription.
    pub fn has_agent(&self, agent: &str) -> bool {
        self.by_agent.contains_key(agent)
    }

    /// The agent of subscription `id`, if it exists.
    pub fn agent_of(&self, id: &dyn DialogIdentity) -> Option<&str> {
        let n = self.by_id.get(id)?;
        self.subs.get(n).map(|s| s.agent.as_str())
    }

    /// The event package of subscription `id`, if it exists.
    pub fn event_of(&self, id: &dyn DialogIdentity) -> Option<&'static str> {
        let n = self.by_id.get(id)?;
        self.subs.get(n).map(|s| s.kind.event())
    }

    /// A response to one of our NOTIFYs (matched by its Via branch).
    pub fn on_response(&mut self, now: Instant, branch: &[u8], status: u16) {
        self.clients.on_response(now, branch, status);
        self.collect(now);
    }

    /// The transport could not send our NOTIFY with this Via branch (no
    /// connection to the subscriber): the subscription ends as after a
    /// Timer F, silently.
    pub fn on_transport_error(&mut self, now: Instant, branch: &[u8]) {
        self.clients.transport_error(branch);
        self.collect(now);
    }

    /// The route set and remote target of subscription `id` (a refresh
    /// keeps the route set, RFC 3261 §12.2.1.2).
    pub fn remote(&self, id: &dyn DialogIdentity) -> Option<(&[Bytes], &Bytes)> {
        let n = self.by_id.get(id)?;
        self.subs
            .get(n)
            .map(|s| (&s.template.route_set[..], &s.template.request_uri))
    }

    /// Shutdown: every subscription ends with a NOTIFY
    /// `terminated;reason=deactivated` (RFC 6665 §4.1.3: re-subscribe).
    pub fn terminate_all(&mut self, now: Instant) {
        let all: Vec<u64> = self.subs.keys().copied().collect();
        for n in all {
            self.terminate(now, n, EndReason::Shutdown, None);
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clients.handle_timeout(now);
        self.collect(now);
        while let Some(&(when, n)) = self.timers.first() {
            if when > now {
                break;
            }
            self.timers.pop_first();
            self.terminate(now, n, EndReason::Expired, None);
        }
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
        self.clients.poll_transmit()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SubEvent> {
        self.events.pop_front()
    }

    /// Live subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// No live subscription.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// True if `id` is a live subscription.
    pub fn contains(&self, id: &dyn DialogIdentity) -> bool {
        self.by_id.contains_key(id)
    }

    /// The table is full: new subscriptions must be refused (503).
    pub fn is_full(&self) -> bool {
        self.subs.len() >= self.max
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.rng.gen::<u64>())
    }

    /// Tells the phone of `n` about `doc`: now, or after the unanswered
    /// NOTIFY. A full state for a subscriber that takes no multipart goes
    /// as one NOTIFY per feature.
    fn push(&mut self, now: Instant, n: u64, doc: Doc) {
        let Some(s) = self.subs.get_mut(&n) else {
            return;
        };
        s.note(doc);
        match (doc, &s.kind) {
            (Doc::Full { acd, dnd }, Kind::Features { multipart: false }) => {
                s.queued.retain(|d| *d == Doc::Acd(AcdState::LoggedOn));
                s.queued.push_back(Doc::Acd(acd));
                s.queued.push_back(Doc::Dnd(dnd));
                s.queued
                    .extend(ForwardingType::ALL.into_iter().map(Doc::Forwarding));
            }
            _ => s.enqueue(doc),
        }
        if s.in_flight.is_none() {
            self.send_next(now, n);
        }
    }

    /// Sends the first waiting document of `n`.
    fn send_next(&mut self, now: Instant, n: u64) {
        let branch = self.branch();
        let Some(s) = self.subs.get_mut(&n) else {
            return;
        };
        let Some(doc) = s.queued.pop_front() else {
            return;
        };
        // RFC 6665 §4.2.1.2: the time left, never more than granted.
        let left = s.expires_at.saturating_duration_since(now).as_millis();
        let state = format!("active;expires={}", left.div_ceil(1000));
        let (ctype, body) = s.render(doc);
        s.cseq += 1;
        let req = build_notify(
            &s.template,
            s.kind.event(),
            &branch,
            s.cseq,
            &state,
            &ctype,
            &body,
        );
        let tx = self
            .clients
            .send(now, Bytes::from(branch), req, s.peer.clone(), s.reliable);
        s.in_flight = Some(tx);
        self.notifies.insert(tx, n);
    }

    /// Forgets `n` and, unless its subscriber is gone, sends the
    /// terminating NOTIFY (RFC 6665 §4.2.2) with `doc`, else the last state.
    fn terminate(&mut self, now: Instant, n: u64, how: EndReason, doc: Option<Doc>) {
        let Some(mut s) = self.forget(n) else {
            return;
        };
        let reason = match how {
            EndReason::Expired | EndReason::Unsubscribed => Some("timeout"),
            EndReason::Shutdown => Some("deactivated"),
            EndReason::Replaced => Some("rejected"),
            EndReason::Rejected(_) | EndReason::TimedOut | EndReason::Unreachable => None,
        };
        if let Some(reason) = reason {
            let branch = self.branch();
            let (ctype, body) = doc.or(s.last).map(|doc| s.render(doc)).unwrap_or_default();
            s.cseq += 1;
            let state = format!("terminated;reason={reason}");
            let req = build_notify(
                &s.template,
                s.kind.event(),
                &branch,
                s.cseq,
                &state,
                &ctype,
                &body,
            );
            // Its answer is absorbed by the client transaction.
            self.clients
                .send(now, Bytes::from(branch), req, s.peer.clone(), s.reliable);
        }
        self.events.push_back(SubEvent::Ended {
            id: s.id,
            agent: s.agent,
            how,
        });
    }

    fn forget(&mut self, n: u64) -> Option<Sub<P>> {
        let s = self.subs.remove(&n)?;
        self.timers.remove(&(s.expires_at, n));
        self.by_id.remove(&s.id);
        if let Some(list) = self.by_agent.get_mut(&s.agent) {
            list.retain(|&m| m != n);
            if list.is_empty() {
                self.by_agent.remove(&s.agent);
            }
        }
        if let Some(tx) = s.in_flight {
            self.notifies.remove(&tx);
        }
        Some(s)
    }

    fn collect(&mut self, now: Instant) {
        while let Some(ev) = self.clients.poll_event() {
            let (id, status) = match ev {
                ClientEvent::Completed { id, status } => (id, Ok(status)),
                ClientEvent::TimedOut { id } => (id, Err(EndReason::TimedOut)),
                ClientEvent::TransportError { id } => (id, Err(EndReason::Unreachable)),
            };
            let Some(n) = self.notifies.remove(&id) else {
                continue;
            };
            match status {
                Err(how) => self.terminate(now, n, how, None),
                Ok(st) if ends_usage(st) => self.terminate(now, n, EndReason::Rejected(st), None),
                Ok(_) => {
                    // Answered (2xx, or a failure that keeps the usage):
                    // the next state may go.
                    if let Some(s) = self.subs.get_mut(&n) {
                        s.in_flight = None;
                    }
                    self.send_next(now, n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: ExpiryBounds = ExpiryBounds {
        min: 60,
        max: 3600,
        default: 1800,
        per_agent: 2,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn id(call: &'static str) -> DialogId {
        DialogId {
            call_id: Bytes::from_static(call.as_bytes()),
            local_tag: Bytes::from_static(b"ours"),
            remote_tag: Bytes::from_static(b"theirs"),
        }
    }

    fn template() -> NotifyTemplate {
        NotifyTemplate {
            request_uri: Bytes::from_static(b"sip:1001@127.0.0.1:5062"),
            transport: "UDP",
            local_sent_by: "127.0.0.1:5060".into(),
            from: Bytes::from_static(b"<sip:1001@pbx>;tag=ours"),
            to: Bytes::from_static(b"<sip:1001@pbx>;tag=theirs"),
            call_id: Bytes::from_static(b"sub-1"),
            route_set: vec![Bytes::from_static(b"<sip:proxy;lr>")],
            contact: Some("<sip:1001@127.0.0.1:5060>".into()),
        }
    }

    fn flow() -> Flow<u8> {
        Flow {
            contact: None,
            peer: 1,
            reliable: false,
            transport: "UDP",
            local_sent_by: "127.0.0.1:5060".into(),
        }
    }

    struct Sent {
        cseq: u32,
        state: String,
        event: String,
        ctype: String,
        body: String,
        branch: String,
    }

    impl Sent {
        /// The root element of the body (the first after the prolog).
        fn root(&self) -> &str {
            self.body
                .split('<')
                .find(|t| !t.starts_with('?') && !t.is_empty())
                .and_then(|t| t.split([' ', '>']).next())
                .unwrap_or_default()
        }
    }

    const FEATURES: Kind = Kind::Features { multipart: true };
    const READY: Doc = Doc::Acd(AcdState::Ready);
    const NOT_READY: Doc = Doc::Acd(AcdState::NotReady { reason: None });
    const OFF: Doc = Doc::Acd(AcdState::LoggedOff);

    fn new_sub(call: &'static str, agent: &str, expires: u32, kind: Kind) -> NewSub<u8> {
        NewSub {
            id: id(call),
            agent: agent.into(),
            peer: 1,
            reliable: false,
            template: template(),
            expires,
            kind,
            base: 100,
        }
    }

    fn keys<'a>(acd: AcdState, queues: &'a [QueueView<'a>]) -> Keys<'a> {
        Keys {
            acd,
            dnd: false,
            queues,
        }
    }

    fn parse(b: &Bytes) -> Sent {
        let text = String::from_utf8_lossy(b).into_owned();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        let cseq = header("CSeq: ")
            .split(' ')
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let branch = header("Via: ")
            .split("branch=")
            .nth(1)
            .and_then(|b| b.split(';').next())
            .unwrap_or_default()
            .to_string();
        Sent {
            cseq,
            state: header("Subscription-State: "),
            event: header("Event: "),
            ctype: header("Content-Type: "),
            body: text
                .split_once("\r\n\r\n")
                .map_or("", |(_, b)| b)
                .to_string(),
            branch,
        }
    }

    fn drain(s: &mut Subscriptions<u8>) -> Vec<Sent> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|(_, b)| parse(&b))
            .collect()
    }

    fn table() -> (Subscriptions<u8>, Instant) {
        let t0 = Instant::now();
        let mut s = Subscriptions::new(TimerConfig::default(), BOUNDS, 2, 9);
        s.subscribe(t0, new_sub("a", "1001", 600, FEATURES), &[OFF])
            .unwrap();
        (s, t0)
    }

    #[test]
    fn grants_within_bounds() {
        assert_eq!(BOUNDS.grant(None), Ok(1800));
        assert_eq!(BOUNDS.grant(Some(0)), Ok(0));
        assert_eq!(BOUNDS.grant(Some(59)), Err(TooBrief { min: 60 }));
        assert_eq!(BOUNDS.grant(Some(60)), Ok(60));
        assert_eq!(BOUNDS.grant(Some(86_400)), Ok(3600));
    }

    #[test]
    fn notify_exact_bytes() {
        let b = build_notify(
            &template(),
            "as-feature-event",
            "z9hG4bKx",
            3,
            "active;expires=60",
            "application/x-as-feature-event+xml",
            b"<x/>",
        );
        let want = format!(
            "NOTIFY sip:1001@127.0.0.1:5062 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport\r\n\
             Max-Forwards: 70\r\n\
             Route: <sip:proxy;lr>\r\n\
             From: <sip:1001@pbx>;tag=ours\r\n\
             To: <sip:1001@pbx>;tag=theirs\r\n\
             Call-ID: sub-1\r\n\
             CSeq: 3 NOTIFY\r\n\
             Contact: <sip:1001@127.0.0.1:5060>\r\n\
             Event: as-feature-event\r\n\
             Subscription-State: active;expires=60\r\n\
             Server: {}\r\n\
             Content-Type: application/x-as-feature-event+xml\r\n\
             Content-Length: 4\r\n\r\n<x/>",
            crate::sip::SERVER
        );
        assert_eq!(b, want);
    }

    #[test]
    fn first_notify_then_changes_in_order_one_at_a_time() {
        let (mut s, t0) = table();
        let first = drain(&mut s);
        assert_eq!(first.len(), 1);
        assert_eq!(
            (
                first[0].cseq,
                first[0].state.as_str(),
                first[0].event.as_str(),
                first[0].root()
            ),
            (
                101,
                "active;expires=600",
                "as-feature-event",
                "AgentLoggedOffEvent"
            ),
            "CSeq starts above the base"
        );
        // A login and a change while the first NOTIFY is unanswered: the
        // login event stays, the later ACD state replaces the earlier.
        s.update_agent(t0 + ms(100), "1001", &keys(AcdState::Ready, &[]));
        s.update_agent(
            t0 + ms(200),
            "1001",
            &keys(AcdState::NotReady { reason: Some(2) }, &[]),
        );
        assert!(drain(&mut s).is_empty());
        s.on_response(t0 + ms(1000), first[0].branch.as_bytes(), 200);
        let next = drain(&mut s);
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].cseq, next[0].state.as_str(), next[0].root()),
            (102, "active;expires=599", "AgentLoggedOnEvent")
        );
        s.on_response(t0 + ms(1100), next[0].branch.as_bytes(), 200);
        let last = drain(&mut s);
        assert_eq!((last[0].cseq, last[0].root()), (103, "AgentNotReadyEvent"));
        assert!(last[0].body.contains("<pri:AgentNotReadyReasonValue>2<"));
        s.on_response(t0 + ms(1150), last[0].branch.as_bytes(), 200);
        // The same state again: nothing to tell the phone.
        s.update_agent(
            t0 + ms(1200),
            "1001",
            &keys(AcdState::NotReady { reason: Some(2) }, &[]),
        );
        assert!(drain(&mut s).is_empty());
        // Another agent's change does not reach this phone.
        s.update_agent(t0 + ms(1200), "1002", &keys(AcdState::Ready, &[]));
        assert!(drain(&mut s).is_empty());
        // DND turned on: one DoNotDisturbEvent.
        let dnd = Keys {
            dnd: true,
            ..keys(AcdState::NotReady { reason: Some(2) }, &[])
        };
        s.update_agent(t0 + ms(1300), "1001", &dnd);
        let d = drain(&mut s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].root(), "DoNotDisturbEvent");
        assert!(d[0].body.contains("<doNotDisturbOn>true</doNotDisturbOn>"));
    }

    #[test]
    fn a_logout_before_the_login_was_told_drops_the_login_event() {
        let (mut s, t0) = table();
        let first = drain(&mut s);
        s.update_agent(t0 + ms(1), "1001", &keys(AcdState::Ready, &[]));
        s.update_agent(t0 + ms(2), "1001", &keys(AcdState::LoggedOff, &[]));
        s.on_response(t0 + ms(3), first[0].branch.as_bytes(), 200);
        let next = drain(&mut s);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].root(), "AgentLoggedOffEvent");
    }

    #[test]
    fn full_state_is_multipart_or_one_notify_per_feature() {
        let t0 = Instant::now();
        let mut s = Subscriptions::new(TimerConfig::default(), BOUNDS, 10, 3);
        let full = Doc::Full {
            acd: AcdState::Ready,
            dnd: false,
        };
        s.subscribe(t0, new_sub("m", "1001", 600, FEATURES), &[full])
            .unwrap();
        let m = drain(&mut s);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].ctype.starts_with("multipart/mixed;boundary="),
            "{}",
            m[0].ctype
        );
        for root in [
            "<AgentReadyEvent ",
            "<DoNotDisturbEvent ",
            "<forwardingType>forwardImmediate<",
            "<forwardingType>forwardBusy<",
            "<forwardingType>forwardNoAns<",
        ] {
            assert!(m[0].body.contains(root), "{root}: {}", m[0].body);
        }
        let single = Kind::Features { multipart: false };
        s.subscribe(t0, new_sub("p", "1002", 600, single), &[full])
            .unwrap();
        let mut roots = Vec::new();
        let mut now = 1;
        loop {
            let sent = drain(&mut s);
            let Some(n) = sent.first() else { break };
            assert_eq!(sent.len(), 1, "one at a time");
            assert_eq!(n.ctype, "application/x-as-feature-event+xml");
            roots.push(n.root().to_string());
            s.on_response(t0 + ms(now), n.branch.as_bytes(), 200);
            now += 1;
        }
        assert_eq!(
            roots,
            [
                "AgentReadyEvent",
                "DoNotDisturbEvent",
                "ForwardingEvent",
                "ForwardingEvent",
                "ForwardingEvent"
            ]
        );
    }

    #[test]
    fn lamps_notify_on_change_with_a_rising_version() {
        use crate::sip::agent_view::QueueState;
        use crate::sip::blf::{LampKind, LampTarget};
        let t0 = Instant::now();
        let mut s = Subscriptions::new(TimerConfig::default(), BOUNDS, 10, 3);
        let target = LampTarget {
            kind: LampKind::LoggedIn,
            queue: Some("8000".into()),
            toggle: false,
        };
        let lamp = |presence| Kind::Lamp {
            target: target.clone(),
            presence,
            entity: "sip:*388000@pbx".into(),
        };
        s.subscribe(
            t0,
            new_sub("d", "1001", 600, lamp(false)),
            &[Doc::Lamp(Lamp::Off)],
        )
        .unwrap();
        s.subscribe(
            t0,
            new_sub("p", "1001", 600, lamp(true)),
            &[Doc::Lamp(Lamp::Off)],
        )
        .unwrap();
        let first = drain(&mut s);
        assert_eq!(first.len(), 2);
        assert_eq!(
            (first[0].event.as_str(), first[0].ctype.as_str()),
            ("dialog", "application/dialog-info+xml")
        );
        assert!(
            first[0].body.contains("version=\"100\""),
            "{}",
            first[0].body
        );
        assert!(first[0].body.contains("<state>terminated</state>"));
        assert_eq!(
            (first[1].event.as_str(), first[1].ctype.as_str()),
            ("presence", "application/pidf+xml")
        );
        assert!(first[1].body.contains("<basic>open</basic>"));
        for f in &first {
            s.on_response(t0 + ms(1), f.branch.as_bytes(), 200);
        }
        let logged_in = [QueueView::new("8000", QueueState::Ready)];
        s.update_agent(t0 + ms(2), "1001", &keys(AcdState::Ready, &logged_in));
        let lit = drain(&mut s);
        assert_eq!(lit.len(), 2, "every lamp in one NOTIFY");
        assert!(lit[0].body.contains("version=\"101\""));
        assert!(lit[0].body.contains("<state>confirmed</state>"));
        assert!(lit[1].body.contains("<basic>closed</basic>"));
        for f in &lit {
            s.on_response(t0 + ms(3), f.branch.as_bytes(), 200);
        }
        // Another queue's change leaves this lamp as it is.
        let other = [
            QueueView::new("8000", QueueState::Ready),
            QueueView::new("8001", QueueState::Ready),
        ];
        s.update_agent(t0 + ms(4), "1001", &keys(AcdState::Ready, &other));
        assert!(drain(&mut s).is_empty());
        // Expiry: the terminating NOTIFY carries the lamp, version rising.
        s.handle_timeout(t0 + ms(600_000));
        let end = drain(&mut s);
        assert_eq!(end.len(), 2);
        assert!(end[0].body.contains("version=\"102\""), "{}", end[0].body);
        assert_eq!(end[0].state, "terminated;reason=timeout");
    }

    #[test]
    fn counters_start_from_the_wall_clock() {
        assert_eq!(counter_base(0), 0);
        assert_eq!(counter_base(1_704_067_200_000), 0);
        assert_eq!(counter_base(1_704_067_260_999), 60);
        // A restart a minute later starts above a subscription that sent
        // fewer NOTIFYs than the seconds it lived.
        assert!(counter_base(1_800_000_060_000) > counter_base(1_800_000_000_000) + 59);
        assert_eq!(counter_base(u64::MAX), 0x7000_0000);
    }

    #[test]
    fn refresh_extends_and_renotifies_expiry_terminates() {
        let (mut s, t0) = table();
        let first = drain(&mut s);
        s.on_response(t0 + ms(10), first[0].branch.as_bytes(), 200);
        let moved = Flow {
            contact: Some(Bytes::from_static(b"sip:1001@127.0.0.1:6000;transport=tcp")),
            peer: 7,
            reliable: true,
            transport: "TCP",
            local_sent_by: "127.0.0.1:5061".into(),
        };
        assert!(s.refresh(t0 + ms(500_000), &id("a"), 300, moved, &[OFF]));
        let (peer, raw) = s.poll_transmit().unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(peer, 7, "the refresh's flow");
        assert!(
            text.starts_with("NOTIFY sip:1001@127.0.0.1:6000;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5061;"),
            "{text}"
        );
        let re = [parse(&raw)];
        assert_eq!(re.len(), 1, "a refresh always gets a NOTIFY");
        assert_eq!(
            (re[0].cseq, re[0].state.as_str()),
            (102, "active;expires=300")
        );
        s.on_response(t0 + ms(500_010), re[0].branch.as_bytes(), 200);
        // The old expiry (600 s) passes: still alive.
        s.handle_timeout(t0 + ms(700_000));
        assert!(drain(&mut s).is_empty());
        assert!(s.contains(&id("a")));
        // The new one (500 + 300 s) ends it with a terminating NOTIFY.
        assert_eq!(s.poll_timeout(), Some(t0 + ms(800_000)));
        s.handle_timeout(t0 + ms(800_000));
        let end = drain(&mut s);
        assert_eq!(end.len(), 1);
        assert_eq!(
            (end[0].cseq, end[0].state.as_str()),
            (103, "terminated;reason=timeout")
        );
        assert!(s.is_empty());
        assert!(!s.has_agent("1001"));
        assert_eq!(
            s.poll_event(),
            Some(SubEvent::Ended {
                id: id("a"),
                agent: "1001".into(),
                how: EndReason::Expired
            })
        );
        assert!(!s.refresh(t0 + ms(800_001), &id("a"), 300, flow(), &[]));
    }

    #[test]
    fn unsubscribe_and_fetch_send_one_terminating_notify() {
        let (mut s, t0) = table();
        drain(&mut s);
        assert!(s.refresh(t0 + ms(5), &id("a"), 0, flow(), &[READY]));
        let end = drain(&mut s);
        assert_eq!(end.len(), 1, "even with a NOTIFY unanswered");
        assert_eq!(
            (end[0].state.as_str(), end[0].root()),
            ("terminated;reason=timeout", "AgentReadyEvent")
        );
        assert!(s.is_empty());
        // A fetch (initial Expires: 0).
        s.subscribe(t0, new_sub("b", "1001", 0, FEATURES), &[NOT_READY])
            .unwrap();
        let f = drain(&mut s);
        assert_eq!(
            (f[0].cseq, f[0].state.as_str(), f[0].root()),
            (101, "terminated;reason=timeout", "AgentNotReadyEvent")
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_481_ends_it_and_so_does_timer_f() {
        let (mut s, t0) = table();
        let first = drain(&mut s);
        s.on_response(t0 + ms(10), first[0].branch.as_bytes(), 481);
        assert!(s.is_empty());
        assert!(drain(&mut s).is_empty(), "no NOTIFY to a gone subscriber");
        assert!(matches!(
            s.poll_event(),
            Some(SubEvent::Ended {
                how: EndReason::Rejected(481),
                ..
            })
        ));
        // A 500 keeps it.
        s.subscribe(t0, new_sub("b", "1001", 600, FEATURES), &[OFF])
            .unwrap();
        let n = drain(&mut s);
        s.on_response(t0 + ms(10), n[0].branch.as_bytes(), 500);
        assert!(s.contains(&id("b")));
        // A phone that stops answering: retransmitted per Timer E, then
        // Timer F (64·T1 = 32 s) ends the subscription.
        s.update_agent(t0 + ms(20), "1001", &keys(AcdState::Ready, &[]));
        let mut sent = 0;
        let mut now = 20;
        while now <= 32_020 {
            s.handle_timeout(t0 + ms(now));
            sent += drain(&mut s).len();
            now += 10;
        }
        assert!(sent >= 8, "retransmissions: {sent}");
        assert!(s.is_empty());
        assert!(matches!(
            s.poll_event(),
            Some(SubEvent::Ended {
                how: EndReason::TimedOut,
                ..
            })
        ));
    }

    #[test]
    fn an_unsendable_notify_ends_the_subscription_silently() {
        let (mut s, t0) = table();
        let first = drain(&mut s);
        assert_eq!(first.len(), 1);
        assert_eq!(
            s.remote(&id("a")),
            Some((&template().route_set[..], &template().request_uri))
        );
        s.on_transport_error(t0, b"not ours");
        assert!(s.contains(&id("a")));
        s.on_transport_error(t0 + ms(5), first[0].branch.as_bytes());
        assert!(s.is_empty());
        assert_eq!(s.remote(&id("a")), None);
        assert!(drain(&mut s).is_empty(), "no terminating NOTIFY to nowhere");
        assert!(matches!(
            s.poll_event(),
            Some(SubEvent::Ended {
                how: EndReason::Unreachable,
                ..
            })
        ));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn an_agents_oldest_subscription_gives_way() {
        let t0 = Instant::now();
        let mut s = Subscriptions::new(TimerConfig::default(), BOUNDS, 10, 1);
        for (i, call) in ["a", "b", "c"].into_iter().enumerate() {
            s.subscribe(
                t0 + ms(i as u64),
                new_sub(call, "1001", 600, FEATURES),
                &[OFF],
            )
            .unwrap();
        }
        assert_eq!(s.len(), 2);
        assert!(!s.contains(&id("a")) && s.contains(&id("b")) && s.contains(&id("c")));
        let states: Vec<String> = drain(&mut s).into_iter().map(|m| m.state).collect();
        assert_eq!(
            states,
            [
                "active;expires=600",
                "active;expires=600",
                "terminated;reason=rejected",
                "active;expires=600"
            ]
        );
        assert!(matches!(
            s.poll_event(),
            Some(SubEvent::Ended {
                how: EndReason::Replaced,
                ..
            })
        ));
    }

    #[test]
    fn bounded_and_shutdown() {
        let (mut s, t0) = table();
        s.subscribe(t0, new_sub("b", "1002", 600, FEATURES), &[OFF])
            .unwrap();
        assert!(s.is_full());
        assert_eq!(
            s.subscribe(t0, new_sub("c", "1003", 600, FEATURES), &[OFF]),
            Err(Full)
        );
        drain(&mut s);
        s.terminate_all(t0 + ms(1));
        let ends = drain(&mut s);
        assert_eq!(ends.len(), 2);
        assert!(ends
            .iter()
            .all(|e| e.state == "terminated;reason=deactivated"));
        assert!(s.is_empty());
        assert_eq!(s.agent_of(&id("a")), None);
    }
}
