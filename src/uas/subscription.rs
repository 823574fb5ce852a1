//! Subscriptions to the `as-feature-event` package (RFC 6665, SPEC §5):
//! the notifier side. One entry per SUBSCRIBE dialog, with its agent, its
//! expiry and what the next NOTIFY needs (RFC 6665 §4.2.1: NOTIFYs are
//! in-dialog requests, CSeq increasing, routed by the SUBSCRIBE's
//! Record-Route). NOTIFYs go out through non-INVITE client transactions
//! (RFC 3261 §17.1.2: Timers E, F, K); a NOTIFY answered 481 (or another
//! usage-ending status, RFC 5057 §5.1) or timing out ends the subscription
//! (RFC 6665 §4.2.2). At most one NOTIFY per subscription is unanswered at
//! a time; a newer state waits and only the latest is sent.
//!
//! Pure like [`super::dialog`]: time is passed in, timers are data, outputs
//! are popped. The body is opaque here; the core builds it.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use ahash::AHashMap as HashMap;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::dialog::{DialogId, DialogIdentity};
use crate::sip::build::{in_dialog_request, InDialog};
use crate::sip::feature_sync;
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

/// A NOTIFY request (RFC 6665 §4.2.1, §8.2.3).
pub fn build_notify(
    t: &NotifyTemplate,
    branch: &str,
    cseq: u32,
    subscription_state: &str,
    body: &[u8],
) -> Bytes {
    let extra = [
        ("Event", feature_sync::EVENT),
        ("Subscription-State", subscription_state),
        ("Server", crate::sip::SERVER),
    ];
    let body = (!body.is_empty()).then_some((feature_sync::CONTENT_TYPE, body));
    in_dialog_request(t, "NOTIFY", branch, cseq, &extra, body)
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

#[derive(Debug)]
struct Sub<P> {
    id: DialogId,
    agent: String,
    peer: P,
    reliable: bool,
    template: NotifyTemplate,
    /// The CSeq of the last NOTIFY sent.
    cseq: u32,
    expires_at: Instant,
    /// The unanswered NOTIFY, if any.
    in_flight: Option<ClientTxId>,
    /// A body waiting for `in_flight` to be answered.
    queued: Option<Bytes>,
    /// The body most recently sent or queued.
    last: Bytes,
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
    /// granted): sends the first NOTIFY with `body` at once (RFC 6665
    /// §4.2.1.2). `expires == 0` is a fetch: one terminating NOTIFY.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &mut self,
        now: Instant,
        id: DialogId,
        agent: String,
        peer: P,
        reliable: bool,
        template: NotifyTemplate,
        expires: u32,
        body: Bytes,
    ) -> Result<(), Full> {
        if self.subs.len() >= self.max {
            return Err(Full);
        }
        if expires > 0 {
            let held = self.by_agent.get(&agent).map_or(0, Vec::len);
            if held >= self.bounds.per_agent.max(1) {
                if let Some(&oldest) = self.by_agent.get(&agent).and_then(|l| l.first()) {
                    self.terminate(now, oldest, EndReason::Replaced);
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
                cseq: 0,
                expires_at,
                in_flight: None,
                queued: None,
                last: body.clone(),
            },
        );
        if expires == 0 {
            self.terminate(now, n, EndReason::Unsubscribed);
        } else {
            self.timers.insert((expires_at, n));
            self.send_or_queue(now, n, body);
        }
        Ok(())
    }

    /// An in-dialog SUBSCRIBE (RFC 6665 §4.2.1.2): a refresh for `expires`
    /// more seconds, or with 0 the end (terminating NOTIFY). Either way a
    /// NOTIFY with `body` follows, over the refresh's `flow`.
    /// False when the dialog is unknown (answer 481).
    pub fn refresh(
        &mut self,
        now: Instant,
        id: &dyn DialogIdentity,
        expires: u32,
        flow: Flow<P>,
        body: Bytes,
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
        s.last = body.clone();
        if s.queued.is_some() {
            s.queued = Some(body.clone());
        }
        if expires == 0 {
            self.terminate(now, n, EndReason::Unsubscribed);
            return true;
        }
        self.timers.remove(&(s.expires_at, n));
        s.expires_at = now + Duration::from_secs(expires.into());
        self.timers.insert((s.expires_at, n));
        self.send_or_queue(now, n, body);
        true
    }

    /// The agent's state changed: NOTIFY each of its subscriptions whose
    /// phone does not already show `body`.
    pub fn notify_agent(&mut self, now: Instant, agent: &str, body: Bytes) {
        let Some(list) = self.by_agent.get(agent) else {
            return;
        };
        for n in list.clone() {
            let differs = self.subs.get(&n).is_some_and(|s| s.last != body);
            if differs {
                if let Some(s) = self.subs.get_mut(&n) {
                    s.last = body.clone();
                }
                self.send_or_queue(now, n, body.clone());
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
            self.terminate(now, n, EndReason::Shutdown);
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
            self.terminate(now, n, EndReason::Expired);
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

    /// Sends `body` now, or after the unanswered NOTIFY.
    fn send_or_queue(&mut self, now: Instant, n: u64, body: Bytes) {
        let branch = self.branch();
        let Some(s) = self.subs.get_mut(&n) else {
            return;
        };
        if s.in_flight.is_some() {
            s.queued = Some(body);
            return;
        }
        // RFC 6665 §4.2.1.2: the time left, never more than granted.
        let left = s.expires_at.saturating_duration_since(now).as_millis();
        let state = format!("active;expires={}", left.div_ceil(1000));
        s.cseq += 1;
        let req = build_notify(&s.template, &branch, s.cseq, &state, &body);
        let tx = self
            .clients
            .send(now, Bytes::from(branch), req, s.peer.clone(), s.reliable);
        s.in_flight = Some(tx);
        self.notifies.insert(tx, n);
    }

    /// Forgets `n` and, unless its subscriber is gone, sends the
    /// terminating NOTIFY (RFC 6665 §4.2.2) with the last state.
    fn terminate(&mut self, now: Instant, n: u64, how: EndReason) {
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
            s.cseq += 1;
            let state = format!("terminated;reason={reason}");
            let req = build_notify(&s.template, &branch, s.cseq, &state, &s.last);
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
                Err(how) => self.terminate(now, n, how),
                Ok(st) if ends_usage(st) => self.terminate(now, n, EndReason::Rejected(st)),
                Ok(_) => {
                    // Answered (2xx, or a failure that keeps the usage):
                    // the next state may go.
                    let queued = self.subs.get_mut(&n).and_then(|s| {
                        s.in_flight = None;
                        s.queued.take()
                    });
                    if let Some(body) = queued {
                        self.send_or_queue(now, n, body);
                    }
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
        body: String,
        branch: String,
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
            body: text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
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
        s.subscribe(
            t0,
            id("a"),
            "1001".into(),
            1,
            false,
            template(),
            600,
            Bytes::from_static(b"null"),
        )
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
        let b = build_notify(&template(), "z9hG4bKx", 3, "active;expires=60", b"<x/>");
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
                first[0].body.as_str()
            ),
            (1, "active;expires=600", "null")
        );
        // Two changes while the first NOTIFY is unanswered: only the latest
        // goes, after the answer.
        s.notify_agent(t0 + ms(100), "1001", Bytes::from_static(b"ready"));
        s.notify_agent(t0 + ms(200), "1001", Bytes::from_static(b"busy"));
        assert!(drain(&mut s).is_empty());
        s.on_response(t0 + ms(1000), first[0].branch.as_bytes(), 200);
        let next = drain(&mut s);
        assert_eq!(next.len(), 1);
        assert_eq!(
            (next[0].cseq, next[0].state.as_str(), next[0].body.as_str()),
            (2, "active;expires=599", "busy")
        );
        s.on_response(t0 + ms(1100), next[0].branch.as_bytes(), 200);
        // The same state again: nothing to tell the phone.
        s.notify_agent(t0 + ms(1200), "1001", Bytes::from_static(b"busy"));
        assert!(drain(&mut s).is_empty());
        // Another agent's change does not reach this phone.
        s.notify_agent(t0 + ms(1200), "1002", Bytes::from_static(b"ready"));
        assert!(drain(&mut s).is_empty());
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
        assert!(s.refresh(
            t0 + ms(500_000),
            &id("a"),
            300,
            moved,
            Bytes::from_static(b"null"),
        ));
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
            (2, "active;expires=300")
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
            (3, "terminated;reason=timeout")
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
        assert!(!s.refresh(t0 + ms(800_001), &id("a"), 300, flow(), Bytes::new()));
    }

    #[test]
    fn unsubscribe_and_fetch_send_one_terminating_notify() {
        let (mut s, t0) = table();
        drain(&mut s);
        assert!(s.refresh(
            t0 + ms(5),
            &id("a"),
            0,
            flow(),
            Bytes::from_static(b"ready")
        ));
        let end = drain(&mut s);
        assert_eq!(end.len(), 1, "even with a NOTIFY unanswered");
        assert_eq!(
            (end[0].state.as_str(), end[0].body.as_str()),
            ("terminated;reason=timeout", "ready")
        );
        assert!(s.is_empty());
        // A fetch (initial Expires: 0).
        s.subscribe(
            t0,
            id("b"),
            "1001".into(),
            1,
            true,
            template(),
            0,
            Bytes::from_static(b"x"),
        )
        .unwrap();
        let f = drain(&mut s);
        assert_eq!(
            (f[0].cseq, f[0].state.as_str()),
            (1, "terminated;reason=timeout")
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
        s.subscribe(
            t0,
            id("b"),
            "1001".into(),
            1,
            false,
            template(),
            600,
            Bytes::new(),
        )
        .unwrap();
        let n = drain(&mut s);
        s.on_response(t0 + ms(10), n[0].branch.as_bytes(), 500);
        assert!(s.contains(&id("b")));
        // A phone that stops answering: retransmitted per Timer E, then
        // Timer F (64·T1 = 32 s) ends the subscription.
        s.notify_agent(t0 + ms(20), "1001", Bytes::from_static(b"ready"));
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
                id(call),
                "1001".into(),
                1,
                true,
                template(),
                600,
                Bytes::from_static(b"x"),
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
        s.subscribe(
            t0,
            id("b"),
            "1002".into(),
            2,
            false,
            template(),
            600,
            Bytes::new(),
        )
        .unwrap();
        assert!(s.is_full());
        assert_eq!(
            s.subscribe(
                t0,
                id("c"),
                "1003".into(),
                3,
                false,
                template(),
                600,
                Bytes::new()
            ),
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
