//! The core: the one owner of mutable protocol state. It takes parsed
//! messages from the transports, runs them through the server transactions,
//! answers what needs no agent logic, turns star-code INVITEs into engine
//! commands, keeps each answered call alive until facd hangs up, and
//! serves the phones' feature-key subscriptions (`as-feature-event`).
//!
//! It is synchronous and never reads the clock: the async loop in
//! [`crate::server`] passes [`Now`] in and calls [`Core::flush`] to send what
//! the pure layers produced. It must not block and must not `.await`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, warn};

use std::collections::{BTreeMap, VecDeque};

use crate::dialog::{ByeTemplate, DialogEvent, DialogId, DialogKey, Dialogs, ToneSource};
use crate::engine::{
    Applied, Cause, Change, Command, Engine, Event, Millis, ReasonRef, Rejection, Target,
};
use crate::limits::{AuthGuard, Banned};
use crate::media::{MediaOrder, ToneTarget};
use crate::sip::auth::{Authenticator, Secret, Verdict};
use crate::sip::build::{self, ResponseBuilder};
use crate::sip::feature_sync::{self, FeatureRequest, LegacyPhoneState, RequestedState};
use crate::sip::message::{parse_message, Message, Method, Request, Response, Scheme};
use crate::sip::sdp;
use crate::sip::star_code::{Action, StarCode, StarCodeParser};
use crate::store::{Store, StoreError};
use crate::subscription::{ExpiryBounds, Flow, NotifyTemplate, SubEvent, Subscriptions, TooBrief};
use crate::transaction::{KeyParts, Received, RequestKind, ServerTransactions, TimerConfig, TxId};
use crate::transport::{Inbound, Link, Peer, Unsent};

/// The methods facd implements (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE";
/// The event packages facd notifies (RFC 6665 §8.2.2 `Allow-Events`).
pub const ALLOW_EVENTS: &str = feature_sync::EVENT;
/// The bodies facd understands (the `Accept` header, RFC 3261 §20.1).
pub const ACCEPT: &str = "application/sdp";
/// The `Server` header.
pub const SERVER: &str = concat!("facd/", env!("CARGO_PKG_VERSION"));
/// RFC 3261 §8.1.1.7: the magic cookie of RFC 3261 branches.
const MAGIC_COOKIE: &[u8] = b"z9hG4bK";
/// Answered calls held at once; beyond this new INVITEs get 503.
/// Monotonic time for transactions and wall time for agent states.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For RFC 3261 timers.
    pub mono: Instant,
    /// Unix milliseconds, for states and wrap-up deadlines (they survive restarts).
    pub wall: Millis,
}

impl Now {
    /// Reads both clocks (called by the async shell only).
    ///
    /// Both follow tokio's clock, so a test that pauses it
    /// (`tokio::time::pause()`/`advance()`) drives wrap-up timers and the
    /// `since`/`at` timestamps too: the wall clock is the system's, shifted
    /// by how far tokio's clock is from the real monotonic one (zero unless
    /// paused).
    pub fn read() -> Self {
        let mono = tokio::time::Instant::now().into_std();
        let real = Instant::now();
        let sys = std::time::SystemTime::now();
        let sys = if mono >= real {
            sys + (mono - real)
        } else {
            sys - (real - mono)
        };
        let wall = sys
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self { mono, wall }
    }
}

/// Settings the core needs.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Our domain: the host part of Contact when the listener has no specific address.
    pub domain: String,
    /// Between the caller's ACK and our BYE: the length of the tone.
    pub confirm: Duration,
    /// RFC 3261 T1/T2/T4.
    pub timers: TimerConfig,
    /// Our RTP socket addresses, IPv4 and IPv6: SDP answers name them and
    /// the confirmation tone comes from them.
    pub rtp_v4: Option<SocketAddr>,
    /// See `rtp_v4`.
    pub rtp_v6: Option<SocketAddr>,
    /// Live server transactions at most (`limits.max_transactions`).
    pub max_transactions: usize,
    /// Answered calls at most (`limits.max_dialogs`).
    pub max_dialogs: usize,
    /// Feature-key subscription durations.
    pub subscribe: ExpiryBounds,
    /// Live subscriptions at most.
    pub max_subscriptions: usize,
}

/// Where a transaction, dialog or subscription sends: the socket or
/// connection, and the address (held per finished transaction for Timer
/// J/L, so it keeps only what sending needs).
#[derive(Debug, Clone)]
pub struct Dest {
    /// The socket or connection.
    pub link: Link,
    /// The UDP destination (the peer's address on TCP).
    pub to: SocketAddr,
}

impl Dest {
    fn send(&self, bytes: Bytes) {
        self.link.send_to(self.to, bytes);
    }
}

/// Counters of what the core did.
#[derive(Debug, Default, Clone)]
pub struct CoreStats {
    /// Requests handed up by the transaction layer.
    pub requests: u64,
    /// Retransmissions absorbed.
    pub retransmissions: u64,
    /// Star codes applied.
    pub applied: u64,
    /// Star codes refused.
    pub refused: u64,
    /// Stray responses dropped.
    pub stray_responses: u64,
    /// Requests dropped from sources banned for failed authentications.
    pub banned_drops: u64,
    /// New requests refused 503 because the transaction table was full.
    pub overloaded: u64,
    /// Finished transactions ended before their Timer J/L to make room.
    pub shed_transactions: u64,
}

/// The journal and how its completions reach the core loop.
pub struct Durable {
    /// The store.
    pub store: Store,
    /// The committer sends `(ticket, outcome)` here.
    pub done: tokio::sync::mpsc::UnboundedSender<(u64, Result<(), StoreError>)>,
}

/// Journal snapshots are written when the journal grows past this.
const CHECKPOINT_BYTES: u64 = 8 << 20;

/// A 200 ready to go, with the dialog that follows it.
struct Answer {
    ok: Bytes,
    dialog: DialogId,
    dest: Dest,
    reliable: bool,
    bye: ByeTemplate,
    /// Where the confirmation tone goes.
    media: ToneSource,
}

/// A 200 to a SUBSCRIBE ready to go, with what the subscription needs.
struct SubAnswer {
    ok: Bytes,
    dialog: DialogId,
    agent: String,
    dest: Dest,
    reliable: bool,
    expires: u32,
    /// A refresh (in-dialog SUBSCRIBE) rather than a new subscription.
    refresh: bool,
    /// The SUBSCRIBE's Contact URI (the new remote target on a refresh).
    contact: Option<Bytes>,
    template: NotifyTemplate,
}

/// Why a command from outside SIP (REST, feature keys) did not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The engine refused it; nothing changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// The journal write failed; the change was undone (SPEC §7).
    #[error("the change could not be saved")]
    NotSaved,
}

/// Called once a command's outcome is final (after the journal write).
pub type ApplyDone = Box<dyn FnOnce(Result<Applied, ApplyError>) + Send>;

/// Who waits for a change to become durable.
enum Reply {
    /// Nobody (a wrap-up timer fired).
    None,
    /// A star-code INVITE: the 200 to send, or the 500 if the write fails.
    Sip {
        id: TxId,
        answer: Box<Answer>,
        fail: Bytes,
    },
    /// A SUBSCRIBE with `SetAgentState`: the 200 (and the subscription),
    /// or the 500 if the write fails.
    Subscribe {
        id: TxId,
        answer: Box<SubAnswer>,
        fail: Bytes,
    },
    /// A command from the API or a feature key.
    Callback { applied: Applied, done: ApplyDone },
}

/// A change waiting for its journal write (SPEC §7: durable before the 200).
struct Pending {
    /// Who is answered once the write finishes.
    reply: Reply,
    /// The events, published only once durable (subscribers never see a
    /// change that is later undone).
    events: Vec<Event>,
    /// The agent's records before the change, to undo it if the write fails.
    undo: Vec<Change>,
}

/// Digest authentication of star-code INVITEs (RFC 3261 §22, RFC 7616/8760).
pub struct Auth {
    /// Nonces, verification, replay protection.
    pub authenticator: Authenticator,
    /// Each agent's password or HA1.
    pub secrets: ahash::AHashMap<String, Secret>,
    /// The algorithms challenged, in order of preference.
    pub algorithms: Vec<crate::sip::auth::Algorithm>,
    /// Failed authentications per source IP.
    pub guard: AuthGuard,
}

/// Why a request was not authenticated.
enum AuthRefusal {
    /// 401 with fresh challenges (`stale=true` when the nonce only expired).
    Challenge { stale: bool },
    /// A final refusal.
    Refuse(u16, String),
}

/// The core state.
pub struct Core {
    auth: Option<Auth>,
    durable: Option<Durable>,
    pending: BTreeMap<u64, Pending>,
    next_ticket: u64,
    cfg: CoreConfig,
    txs: ServerTransactions<Dest>,
    dialogs: Dialogs<Dest>,
    subs: Subscriptions<Dest>,
    engine: Engine,
    codes: StarCodeParser,
    rng: SmallRng,
    draining: bool,
    /// Durable events not yet taken by [`Core::poll_event`].
    outbox: VecDeque<Event>,
    /// What the core did, for logs and tests.
    pub stats: CoreStats,
}

impl Core {
    /// A core over `engine`, recognising `codes`.
    pub fn new(
        cfg: CoreConfig,
        engine: Engine,
        codes: StarCodeParser,
        durable: Option<Durable>,
        auth: Option<Auth>,
    ) -> Self {
        Self {
            auth,
            durable,
            pending: BTreeMap::new(),
            next_ticket: 1,
            txs: ServerTransactions::new(cfg.timers),
            dialogs: Dialogs::new(cfg.timers, cfg.max_dialogs, rand::random()),
            subs: Subscriptions::new(
                cfg.timers,
                cfg.subscribe,
                cfg.max_subscriptions,
                rand::random(),
            ),
            engine,
            codes,
            rng: SmallRng::from_entropy(),
            draining: false,
            outbox: VecDeque::new(),
            stats: CoreStats::default(),
            cfg,
        }
    }

    /// The engine, read-only (for views and snapshots).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One inbound message.
    pub fn handle(&mut self, now: Now, inbound: Inbound) {
        match inbound.msg {
            Message::Request(req) => self.on_request(now, &req, inbound.peer),
            Message::Response(resp) => self.on_response(now, &resp),
        }
    }

    /// Fires every timer that is due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.txs.handle_timeout(now.mono);
        self.dialogs.handle_timeout(now.mono);
        self.subs.handle_timeout(now.mono);
        if self.engine.next_deadline().is_some_and(|d| d <= now.wall) {
            let events = self.engine.handle_timeout(now.wall);
            for ev in &events {
                info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = "timer", "state changed");
            }
            // A timer change is journaled too (nobody waits for it; after a
            // crash the expired deadline fires again on replay).
            self.commit(now, Reply::None, events, Vec::new());
        }
    }

    /// Applies a command that did not come from a star code (the REST API,
    /// a feature key): `done` gets the outcome once it is durable, or the
    /// refusal at once. The events are published like any other.
    pub fn apply_command(&mut self, now: Now, cmd: Command, cause: Cause, done: ApplyDone) {
        let undo = if self.durable.is_some() {
            self.engine.export_agent(cmd.agent())
        } else {
            Vec::new()
        };
        match self.engine.apply(now.wall, cmd, cause) {
            Err(r) => done(Err(ApplyError::Rejected(r))),
            Ok(mut applied) => {
                let events = std::mem::take(&mut applied.events);
                let reply = Reply::Callback {
                    applied: Applied {
                        events: events.clone(),
                        ..applied
                    },
                    done,
                };
                self.commit(now, reply, events, undo);
            }
        }
    }

    /// The next order for the media sender (the confirmation tone starts on
    /// the ACK and stops when the call ends).
    pub fn poll_media(&mut self) -> Option<MediaOrder> {
        self.dialogs.poll_media()
    }

    /// The next durable event, in the order the engine applied them.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.outbox.pop_front()
    }

    /// A change became durable (or needs no journal): answer whoever
    /// waits and publish its events.
    fn complete(&mut self, now: Now, reply: Reply, events: Vec<Event>) {
        match reply {
            Reply::None => {}
            Reply::Sip { id, answer, .. } => self.deliver(now, id, *answer),
            Reply::Subscribe { id, answer, .. } => self.establish(now, id, answer),
            Reply::Callback { applied, done } => done(Ok(applied)),
        }
        self.publish(now, events);
    }

    /// The one place durable events leave the core: to the outbox, and to
    /// the phones subscribed to each agent concerned (SPEC §5).
    fn publish(&mut self, now: Now, events: Vec<Event>) {
        let mut agents: Vec<&str> = events
            .iter()
            .map(|e| e.agent.as_str())
            .filter(|a| self.subs.has_agent(a))
            .collect();
        agents.dedup();
        let agents: Vec<String> = agents.into_iter().map(str::to_string).collect();
        for agent in agents {
            let body = self.feature_body(&agent);
            self.subs.notify_agent(now.mono, &agent, body);
        }
        self.outbox.extend(events);
    }

    /// The `AgentStateEvent` body for `agent` now.
    fn feature_body(&self, agent: &str) -> Bytes {
        let queues = self
            .engine
            .agent(agent)
            .map(|v| v.queues)
            .unwrap_or_default();
        let state = legacy_phone_state(queues.iter().map(|q| q.state));
        let reason = queues
            .iter()
            .filter(|q| q.state == crate::engine::AgentState::NotReady)
            .find_map(|q| q.reason.as_deref())
            .and_then(|r| self.engine.reason_code(r));
        Bytes::from(feature_sync::legacy_agent_state_event(agent, state, reason))
    }

    /// Journals the engine's pending changes; `reply` is answered and
    /// `events` published once they are durable (SPEC §7).
    fn commit(&mut self, now: Now, reply: Reply, events: Vec<Event>, undo: Vec<Change>) {
        let changes = self.engine.take_changes();
        let Some(d) = &self.durable else {
            return self.complete(now, reply, events);
        };
        if changes.is_empty() {
            return self.complete(now, reply, events);
        }
        let payload = match serde_json::to_vec(&changes) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot encode a journal record");
                return self.complete(now, reply, events);
            }
        };
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                reply,
                events,
                undo,
            },
        );
        let done = d.done.clone();
        d.store.append(
            vec![payload],
            Box::new(move |r| {
                let _ = done.send((ticket, r));
            }),
        );
    }

    /// A journal write finished: send its 200, or undo it (and every change
    /// queued after it, newest first) and answer 500 (SPEC §7).
    pub fn on_durable(&mut self, now: Now, ticket: u64, result: Result<(), StoreError>) {
        match result {
            Ok(()) => {
                if let Some(p) = self.pending.remove(&ticket) {
                    self.complete(now, p.reply, p.events);
                }
                self.maybe_checkpoint();
            }
            Err(e) => {
                if !self.pending.contains_key(&ticket) {
                    return;
                }
                let failed: Vec<u64> = self.pending.range(ticket..).map(|(t, _)| *t).collect();
                warn!(error = %e, changes = failed.len(), "journal write failed: changes undone and answered 500");
                for t in failed.into_iter().rev() {
                    let Some(p) = self.pending.remove(&t) else {
                        continue;
                    };
                    for c in p.undo {
                        let _ = self.engine.restore(c);
                    }
                    match p.reply {
                        Reply::None => {}
                        Reply::Sip { id, fail, .. } | Reply::Subscribe { id, fail, .. } => {
                            self.txs.respond(now.mono, id, 500, fail)
                        }
                        Reply::Callback { done, .. } => done(Err(ApplyError::NotSaved)),
                    }
                }
                let _ = self.engine.take_changes();
                if let Some(d) = &self.durable {
                    d.store.reset();
                }
            }
        }
    }

    fn maybe_checkpoint(&mut self) {
        let Some(d) = &self.durable else { return };
        if d.store.journal_len() < CHECKPOINT_BYTES {
            return;
        }
        self.checkpoint(Box::new(|r| {
            if let Err(e) = r {
                warn!(error = %e, "snapshot failed; the journal keeps growing");
            }
        }));
    }

    /// Writes a snapshot of every state (ordered after all journaled changes).
    pub fn checkpoint(&mut self, done: crate::store::Done) {
        let Some(d) = &self.durable else {
            return done(Ok(()));
        };
        match serde_json::to_vec(&self.engine.export()) {
            Ok(snap) => d.store.checkpoint(snap, done),
            Err(e) => warn!(error = %e, "cannot encode a snapshot"),
        }
    }

    /// Takes the store out for a clean close.
    pub fn take_store(&mut self) -> Option<Store> {
        self.durable.take().map(|d| d.store)
    }

    /// Changes still waiting for the journal.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// The earliest deadline of the transactions, dialogs and engine.
    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let engine = self
            .engine
            .next_deadline()
            .map(|d| now.mono + Duration::from_millis(d.saturating_sub(now.wall)));
        [
            self.txs.poll_timeout(),
            self.dialogs.poll_timeout(),
            self.subs.poll_timeout(),
            engine,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends everything the pure layers queued.
    pub fn flush(&mut self) {
        while let Some((dest, bytes)) = self.txs.poll_transmit() {
            dest.send(bytes);
        }
        while let Some((dest, bytes)) = self.dialogs.poll_transmit() {
            dest.send(bytes);
        }
        while let Some((dest, bytes)) = self.subs.poll_transmit() {
            dest.send(bytes);
        }
        while let Some(SubEvent::Ended { id, agent, how }) = self.subs.poll_event() {
            info!(%agent, call_id = %String::from_utf8_lossy(&id.call_id), how = ?how, "feature-key subscription ended");
        }
        while let Some(ev) = self.dialogs.poll_event() {
            match ev {
                DialogEvent::AckTimeout(id) => {
                    warn!(call_id = %String::from_utf8_lossy(&id.call_id), "no ACK for our 200 within 64*T1: hanging up");
                }
                other => debug!(event = ?other, "dialog"),
            }
        }
    }

    /// Starts a graceful stop: new INVITEs are refused 503 and every open
    /// call gets a BYE (SPEC §8).
    pub fn begin_drain(&mut self, now: Now) {
        self.draining = true;
        self.dialogs.hangup_all(now.mono);
        // Subscriptions are not kept across a restart: tell the phones to
        // subscribe again (RFC 6665 §4.1.3 "deactivated").
        self.subs.terminate_all(now.mono);
    }

    /// True when no call is left open.
    pub fn drained(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// The transport could not send one of our BYEs or NOTIFYs (no
    /// connection to the dialog's next hop could be opened; it logged
    /// why): its client transaction ends at once, as after a Timer F
    /// (RFC 3261 §17.1.4), and so does the dialog or subscription.
    pub fn on_unsent(&mut self, now: Now, unsent: Unsent) {
        let Ok(Message::Request(req)) = parse_message(unsent.request) else {
            return;
        };
        let Some(branch) = req.branch() else { return };
        debug!(method = req.base.cseq.method.as_str(), to = ?unsent.to, error = %unsent.error, call_id = %String::from_utf8_lossy(req.call_id()), "in-dialog request not sent");
        match req.base.cseq.method {
            Method::Bye => self.dialogs.on_transport_error(branch),
            Method::Notify => self.subs.on_transport_error(now.mono, branch),
            _ => {}
        }
    }

    fn on_response(&mut self, now: Now, resp: &Response) {
        // Responses can only be for the BYEs and NOTIFYs we sent (RFC 3261
        // §17.1.3 matches them by the branch of our Via); anything else is stray.
        match resp.branch() {
            Some(branch) if resp.base.cseq.method == Method::Bye => {
                self.dialogs.on_response(now.mono, branch, resp.status);
            }
            Some(branch) if resp.base.cseq.method == Method::Notify => {
                self.subs.on_response(now.mono, branch, resp.status);
            }
            _ => {
                self.stats.stray_responses += 1;
                debug!(status = resp.status, "stray response dropped");
            }
        }
    }

    fn on_request(&mut self, now: Now, req: &Request, peer: Peer) {
        let Some(top) = req.base.vias.first() else {
            return;
        };
        // RFC 3261 §18.2.2 / RFC 3581 §4: answer to the source address.
        let to = if peer.reliable() {
            peer.addr
        } else {
            build::response_target(top, peer.addr)
        };
        let dest = Dest {
            link: peer.link.clone(),
            to,
        };
        let kind = match req.method {
            Method::Invite => RequestKind::Invite,
            Method::Ack => RequestKind::Ack,
            Method::Cancel => RequestKind::Cancel,
            _ => RequestKind::Other,
        };
        // RFC 3261 §17.2.3: branch, sent-by and method (INVITE for ACK).
        // RFC 2543 requests (no magic cookie) are keyed by Call-ID, CSeq
        // number, From tag and the top Via as a whole, which the ACK of a
        // non-2xx shares.
        let rfc2543;
        let branch: &[u8] = match top.branch.map(|b| req.at(b)) {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b,
            _ => {
                rfc2543 = rfc2543_key(req);
                &rfc2543
            }
        };
        let key = KeyParts {
            branch,
            host: req.at(top.host),
            port: top.port,
            method: match req.method {
                Method::Ack => b"INVITE",
                ref m => m.as_str().as_bytes(),
            },
        };
        // A bounded table: at the cap the finished transactions that linger
        // for retransmissions are shed, soonest-expiring first; only when
        // every transaction is still live is a new request answered 503
        // statelessly (RFC 3261 §21.5.4, with Retry-After). Live
        // transactions are never evicted, so none awaiting its answer (and
        // no dialog it confirmed) is lost. ACKs create no transaction.
        if kind != RequestKind::Ack
            && self.txs.len() >= self.cfg.max_transactions
            && !self.txs.contains(&key)
            && !self.shed()
        {
            self.stats.overloaded += 1;
            let reason = "Service Unavailable - Too Many Transactions";
            let bytes = self.response(req, &peer, 503, reason, |b| b.header("Retry-After", "1"));
            peer.send_to(to, bytes);
            return;
        }
        match self
            .txs
            .receive(now.mono, &key, kind, dest, peer.reliable())
        {
            Received::New(id) => {
                self.stats.requests += 1;
                self.on_new(now, id, req, &peer);
            }
            Received::Retransmission => self.stats.retransmissions += 1,
            Received::AckAbsorbed => {}
            Received::AckNoTransaction => self.on_ack(now, req, &peer),
            Received::CancelFor { cancel, invite } => {
                self.on_cancel(now, cancel, invite, req, &peer)
            }
        }
    }

    /// During a graceful stop (SPEC §8) a new call or subscription is
    /// answered 503 with Retry-After; true if it was.
    fn refused_while_draining(&mut self, now: Now, id: TxId, req: &Request, peer: &Peer) -> bool {
        if self.draining {
            self.reply(
                now,
                id,
                req,
                peer,
                503,
                "Service Unavailable - Shutting Down",
                |b| b.header("Retry-After", "5"),
            );
        }
        self.draining
    }

    /// Sheds lingering transactions at the cap; false if all are live.
    fn shed(&mut self) -> bool {
        let (room, n) = self.txs.shed_for(self.cfg.max_transactions);
        if n > 0 {
            self.stats.shed_transactions += n as u64;
            if self.stats.shed_transactions.is_power_of_two() {
                warn!(
                    shed = self.stats.shed_transactions,
                    max = self.cfg.max_transactions,
                    "transaction table full: finished transactions ended early (raise limits.max_transactions)"
                );
            }
        }
        room
    }

    fn on_new(&mut self, now: Now, id: TxId, req: &Request, peer: &Peer) {
        // RFC 3261 §8.2.1: method inspection first.
        match &req.method {
            Method::Invite | Method::Options | Method::Bye | Method::Subscribe => {}
            Method::Extension(_) => {
                return self.reply(now, id, req, peer, 501, "Not Implemented", |b| {
                    b.header("Allow", ALLOW)
                });
            }
            _ => {
                return self.reply(now, id, req, peer, 405, "Method Not Allowed", |b| {
                    b.header("Allow", ALLOW)
                });
            }
        }
        // RFC 3261 §8.2.2.1: a Request-URI scheme we do not serve.
        if let Scheme::Other(_) = req.uri.scheme {
            return self.reply(now, id, req, peer, 416, "Unsupported URI Scheme", |b| b);
        }
        // RFC 3261 §8.2.2.3: we support no extension option-tags.
        let unsupported: Vec<Bytes> = req.headers.get_all("Require").collect();
        if !unsupported.is_empty() {
            let list = join(&unsupported);
            return self.reply(now, id, req, peer, 420, "Bad Extension", |b| {
                b.header("Unsupported", list)
            });
        }
        match &req.method {
            Method::Options => self.reply(now, id, req, peer, 200, "OK", |b| {
                b.header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Allow-Events", ALLOW_EVENTS)
                    .header("Supported", "")
            }),
            Method::Subscribe => self.on_subscribe(now, id, req, peer),
            Method::Bye => {
                if self.dialogs.bye_received(now.mono, &dialog_key(req)) {
                    self.reply(now, id, req, peer, 200, "OK", |b| b)
                } else {
                    self.reply(
                        now,
                        id,
                        req,
                        peer,
                        481,
                        "Call/Transaction Does Not Exist",
                        |b| b,
                    )
                }
            }
            _ => self.on_invite(now, id, req, peer),
        }
    }

    fn on_invite(&mut self, now: Now, id: TxId, req: &Request, peer: &Peer) {
        if req.base.to.tag.is_some() {
            // A re-INVITE: our calls last a second and never change media.
            let known = self.dialogs.contains(&dialog_key(req));
            let (status, reason) = if known {
                (488, "Not Acceptable Here")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            return self.reply(now, id, req, peer, status, reason, |b| b);
        }
        if self.refused_while_draining(now, id, req, peer) {
            return;
        }
        if self.dialogs.is_full() {
            return self.reply(
                now,
                id,
                req,
                peer,
                503,
                "Service Unavailable - Too Many Calls",
                |b| b.header("Retry-After", "1"),
            );
        }
        // RFC 3261 §8.2.3: content processing.
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| media_type(&v));
            if ctype.as_deref() != Some("application/sdp") {
                return self.reply(now, id, req, peer, 415, "Unsupported Media Type", |b| {
                    b.header("Accept", ACCEPT)
                });
            }
        }
        // RFC 3261 §21.4.7: our 200 carries SDP; refuse callers that cannot take it.
        let accepts: Vec<Bytes> = req.headers.get_all("Accept").collect();
        if !accepts.is_empty() && !accepts.iter().any(|a| accepts_sdp(a)) {
            return self.reply(now, id, req, peer, 406, "Not Acceptable", |b| {
                b.header("Accept", ACCEPT)
            });
        }
        let Some(Ok(code)) = req
            .uri
            .user_unescaped(req.headers.buf())
            .map(|u| self.codes.parse(&u))
        else {
            return self.reply(now, id, req, peer, 404, "Not Found", |b| b);
        };
        let Some(agent) = self.authenticate(now, id, req, peer) else {
            return;
        };
        let local = self.media_addr(peer);
        let session = self.rng.gen::<u32>() as u64;
        let (body, media) = if req.body.is_empty() {
            (sdp::offer(local, session), ToneSource::AnswerInAck)
        } else {
            match sdp::parse_offer(req.body()).and_then(|o| sdp::answer(&o, local, session)) {
                Ok(a) => (
                    a.body,
                    ToneSource::Offer(ToneTarget::new(a.codec, local, a.remote_rtp)),
                ),
                Err(sdp::SdpError::Malformed) => {
                    return self.reply(
                        now,
                        id,
                        req,
                        peer,
                        400,
                        "Bad Request - Malformed SDP",
                        |b| b,
                    )
                }
                Err(sdp::SdpError::NoCommonCodec) => {
                    return self.reply(
                        now,
                        id,
                        req,
                        peer,
                        488,
                        "Not Acceptable Here - PCMU or PCMA Only",
                        |b| b,
                    )
                }
            }
        };
        self.apply_for_request(
            now,
            id,
            req,
            peer,
            command_for(&code, &agent),
            Cause::Fac,
            |core, applied, fail| Reply::Sip {
                id,
                answer: Box::new(Answer {
                    media,
                    ..core.answer(req, peer, applied, body)
                }),
                fail,
            },
        );
    }

    /// Applies the command a SIP request carries (a star code, a
    /// `SetAgentState`): a refusal is answered at once with its status and
    /// phrase (SPEC §4); a success is journaled, and the reply `ok` builds
    /// from what was applied (given the 500 to send should the write fail)
    /// goes out once the change is durable (SPEC §7).
    #[allow(clippy::too_many_arguments)]
    fn apply_for_request(
        &mut self,
        now: Now,
        id: TxId,
        req: &Request,
        peer: &Peer,
        cmd: Command,
        cause: Cause,
        ok: impl FnOnce(&mut Self, &Applied, Bytes) -> Reply,
    ) {
        let agent = cmd.agent().to_string();
        let undo = if self.durable.is_some() {
            self.engine.export_agent(&agent)
        } else {
            Vec::new()
        };
        let call_id = String::from_utf8_lossy(req.call_id());
        match self.engine.apply(now.wall, cmd, cause) {
            Err(rejection) => {
                self.stats.refused += 1;
                let (status, reason) = rejection.sip_status();
                info!(%agent, %call_id, status, reason, cause = cause.as_str(), "request refused");
                self.reply(now, id, req, peer, status, reason, |b| b)
            }
            Ok(mut applied) => {
                self.stats.applied += 1;
                for ev in &applied.events {
                    info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = cause.as_str(), %call_id, "state changed");
                }
                let fail = if self.durable.is_some() {
                    self.response(
                        req,
                        peer,
                        500,
                        "Server Internal Error - State Not Saved",
                        |b| b,
                    )
                } else {
                    Bytes::new()
                };
                let reply = ok(self, &applied, fail);
                let events = std::mem::take(&mut applied.events);
                self.commit(now, reply, events, undo);
            }
        }
    }

    /// A SUBSCRIBE (RFC 6665 §4.2.1, SPEC §5): only `as-feature-event`,
    /// only by the agent for its own address; a `SetAgentState` body is
    /// applied to all the agent's queues and durable before the 200.
    fn on_subscribe(&mut self, now: Now, id: TxId, req: &Request, peer: &Peer) {
        // RFC 6665 §4.2.1.1: an unknown package is 489 with Allow-Events.
        let event = req.headers.get("Event").map(|v| event_type(&v));
        if event.as_deref() != Some(feature_sync::EVENT) {
            return self.reply(now, id, req, peer, 489, "Bad Event", |b| {
                b.header("Allow-Events", ALLOW_EVENTS)
            });
        }
        // RFC 3261 §8.2.3: a body we cannot read.
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| media_type(&v));
            if ctype.as_deref() != Some(feature_sync::CONTENT_TYPE) {
                return self.reply(now, id, req, peer, 415, "Unsupported Media Type", |b| {
                    b.header("Accept", feature_sync::CONTENT_TYPE)
                });
            }
        }
        let requested = match req.headers.get("Expires") {
            None => None,
            Some(v) => match std::str::from_utf8(&v)
                .ok()
                .map(str::trim)
                .map(str::parse::<u64>)
            {
                Some(Ok(n)) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                _ => {
                    return self.reply(
                        now,
                        id,
                        req,
                        peer,
                        400,
                        "Bad Request - Malformed Expires",
                        |b| b,
                    )
                }
            },
        };
        // RFC 6665 §4.2.1.1: too short is 423 with Min-Expires.
        let expires = match self.subs.bounds().grant(requested) {
            Ok(e) => e,
            Err(TooBrief { min }) => {
                return self.reply(now, id, req, peer, 423, "Interval Too Brief", |b| {
                    b.header("Min-Expires", min.to_string())
                })
            }
        };
        if self.refused_while_draining(now, id, req, peer) {
            return;
        }
        let Some(agent) = self.authenticate(now, id, req, peer) else {
            return;
        };
        // SPEC §5: a phone subscribes to its own address of record only.
        let user = |u: Option<Vec<u8>>| u.and_then(|u| String::from_utf8(u).ok());
        let own = user(req.uri.user_unescaped(req.headers.buf())).as_deref()
            == Some(agent.as_str())
            && user(req.base.to.uri.user_unescaped(req.headers.buf())).as_deref()
                == Some(agent.as_str());
        if !own {
            info!(%agent, "SUBSCRIBE to another address refused");
            return self.reply(
                now,
                id,
                req,
                peer,
                403,
                "Forbidden - Subscribe To Your Own Address",
                |b| b,
            );
        }
        if !self.engine.has_agent(&agent) {
            let (status, reason) = Rejection::UnknownAgent.sip_status();
            return self.reply(now, id, req, peer, status, reason, |b| b);
        }
        let refresh = req.base.to.tag.is_some();
        // A dialog of another agent's is as good as none.
        if refresh && self.subs.agent_of(&dialog_key(req)) != Some(agent.as_str()) {
            // Also what a phone gets after a restart: it then subscribes anew.
            return self.reply(
                now,
                id,
                req,
                peer,
                481,
                "Subscription Does Not Exist",
                |b| b,
            );
        }
        if !refresh && expires > 0 && self.subs.is_full() {
            return self.reply(
                now,
                id,
                req,
                peer,
                503,
                "Service Unavailable - Too Many Subscriptions",
                |b| b.header("Retry-After", "60"),
            );
        }
        let set = if req.body.is_empty() {
            None
        } else {
            match feature_sync::parse_request(req.body()) {
                Ok(FeatureRequest::SetAgentState { state, reason }) => Some((state, reason)),
                Ok(_) => {
                    return self.reply(
                        now,
                        id,
                        req,
                        peer,
                        400,
                        "Bad Request - Only SetAgentState Is Supported",
                        |b| b,
                    );
                }
                Err(e) => {
                    info!(%agent, error = %e, "SUBSCRIBE body refused");
                    return self.reply(
                        now,
                        id,
                        req,
                        peer,
                        400,
                        &format!("Bad Request - {e}"),
                        |b| b,
                    );
                }
            }
        };
        let answer = self.subscribe_answer(req, peer, agent.clone(), expires, refresh);
        let Some(set) = set else {
            return self.establish(now, id, answer);
        };
        self.apply_for_request(
            now,
            id,
            req,
            peer,
            set_agent_state_command(&agent, set.0, set.1),
            Cause::FeatureSync,
            |_, _, fail| Reply::Subscribe { id, answer, fail },
        );
    }

    /// The 200 to a SUBSCRIBE and what its subscription needs.
    fn subscribe_answer(
        &mut self,
        req: &Request,
        peer: &Peer,
        agent: String,
        expires: u32,
        refresh: bool,
    ) -> Box<SubAnswer> {
        let tag = match req.to_tag() {
            Some(t) => String::from_utf8_lossy(t).into_owned(),
            None => self.new_tag(),
        };
        let contact = self.contact(req, peer);
        let ok = build::response(req, peer.addr, 200, "OK")
            .to_tag(&tag)
            .header("Contact", &contact)
            .header("Expires", expires.to_string())
            .header("Allow", ALLOW)
            .header("Server", SERVER)
            .build();
        let dialog = DialogId {
            local_tag: Bytes::from(tag.clone()),
            ..dialog_id(req)
        };
        let remote = req
            .headers
            .get_all("Contact")
            .next()
            .map(|c| contact_uri(&c));
        let from = if refresh {
            Bytes::copy_from_slice(req.at(req.base.to.raw))
        } else {
            Bytes::from(format!(
                "{};tag={tag}",
                String::from_utf8_lossy(req.at(req.base.to.raw))
            ))
        };
        let template = NotifyTemplate {
            request_uri: remote
                .clone()
                .unwrap_or_else(|| Bytes::copy_from_slice(req.at(req.base.from.uri.raw))),
            transport: peer.transport(),
            local_sent_by: sent_by(peer.local),
            from,
            to: Bytes::copy_from_slice(req.at(req.base.from.raw)),
            call_id: dialog.call_id.clone(),
            route_set: req
                .headers
                .get_all("Record-Route")
                .map(|r| Bytes::copy_from_slice(&r))
                .collect(),
            contact: Some(contact),
        };
        // NOTIFYs go back over the flow the SUBSCRIBE came on (SPEC §4);
        // over TCP, once that connection has closed, over one the
        // transport opens to the next hop (RFC 3261 §18.1.1): the first
        // Route of the dialog's route set (a refresh keeps the original,
        // RFC 3261 §12.2.1.2), else the latest Contact.
        let (routes, target): (&[Bytes], &[u8]) = match self.subs.remote(&dialog) {
            Some((routes, uri)) if refresh => (routes, remote.as_deref().unwrap_or(uri)),
            _ => (&template.route_set, &template.request_uri),
        };
        let link = peer.link.in_dialog(
            peer.local.ip(),
            || build::next_hop(routes, target),
            &dialog.call_id,
        );
        let dest = Dest {
            link,
            to: peer.addr,
        };
        Box::new(SubAnswer {
            ok,
            dialog,
            agent,
            dest,
            reliable: peer.reliable(),
            expires,
            refresh,
            contact: remote,
            template,
        })
    }

    /// Sends the 200 to a SUBSCRIBE, then the NOTIFY with the agent's
    /// current state (RFC 6665 §4.2.1.2).
    fn establish(&mut self, now: Now, id: TxId, a: Box<SubAnswer>) {
        self.txs.respond(now.mono, id, 200, a.ok);
        let body = self.feature_body(&a.agent);
        if a.refresh {
            let flow = Flow {
                contact: a.contact,
                peer: a.dest,
                reliable: a.reliable,
                transport: a.template.transport,
                local_sent_by: a.template.local_sent_by,
            };
            if !self
                .subs
                .refresh(now.mono, &a.dialog, a.expires, flow, body)
            {
                debug!(agent = %a.agent, "subscription ended while its refresh was saved");
            }
        } else {
            info!(agent = %a.agent, expires = a.expires, "feature-key subscription");
            if self
                .subs
                .subscribe(
                    now.mono, a.dialog, a.agent, a.dest, a.reliable, a.template, a.expires, body,
                )
                .is_err()
            {
                warn!("subscription table filled while a SetAgentState was saved: no NOTIFYs");
            }
        }
    }

    /// The agent behind a star-code INVITE or a SUBSCRIBE, or `None` once
    /// the request was answered (401/403/400) or dropped (banned source).
    fn authenticate(&mut self, now: Now, id: TxId, req: &Request, peer: &Peer) -> Option<String> {
        // A source that failed authentication too often is ignored (no
        // answer gives a password guesser nothing to work with).
        if let Some(auth) = self.auth.as_mut() {
            match auth.guard.check(now.mono, peer.addr.ip()) {
                None => {}
                Some(Banned::Drop) => {
                    self.stats.banned_drops += 1;
                    return None;
                }
                Some(Banned::DropAndLog(n)) => {
                    self.stats.banned_drops += 1;
                    warn!(source = %peer.addr.ip(), dropped = n, "requests from a source banned for failed authentications dropped");
                    return None;
                }
            }
        }
        match self.identify(now, req, peer.addr.ip()) {
            Ok(agent) => Some(agent),
            Err(AuthRefusal::Refuse(status, reason)) => {
                self.reply(now, id, req, peer, status, &reason, |b| b);
                None
            }
            Err(AuthRefusal::Challenge { stale }) => {
                let challenges = self
                    .auth
                    .as_ref()
                    .map(|a| {
                        a.authenticator
                            .challenge_for(now.wall / 1000, stale, &a.algorithms)
                    })
                    .unwrap_or_default();
                self.reply(now, id, req, peer, 401, "Unauthorized", |b| {
                    challenges
                        .iter()
                        .fold(b, |b, c| b.header("WWW-Authenticate", c))
                });
                None
            }
        }
    }

    /// Sends the 200 and starts the dialog.
    fn deliver(&mut self, now: Now, id: TxId, a: Answer) {
        self.dialogs.answered(
            now.mono,
            a.dialog,
            a.ok.clone(),
            a.dest,
            a.reliable,
            a.bye,
            self.cfg.confirm,
            a.media,
        );
        self.txs.respond(now.mono, id, 200, a.ok);
    }

    /// The 200 for an applied star code, and the dialog that follows it.
    fn answer(&mut self, req: &Request, peer: &Peer, applied: &Applied, sdp: String) -> Answer {
        let tag = self.new_tag();
        let contact = self.contact(req, peer);
        let bytes = build::response(req, peer.addr, 200, "OK")
            .to_tag(&tag)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", "")
            .header("Server", SERVER)
            .header("X-Agent-State", agent_state_header(applied))
            .body("application/sdp", Bytes::from(sdp))
            .build();
        let dialog = DialogId {
            local_tag: Bytes::from(tag.clone()),
            ..dialog_id(req)
        };
        let remote_target = req
            .headers
            .get_all("Contact")
            .next()
            .map(|c| contact_uri(&c))
            .unwrap_or_else(|| Bytes::copy_from_slice(req.at(req.base.from.uri.raw)));
        let bye = ByeTemplate {
            request_uri: remote_target,
            transport: peer.transport(),
            local_sent_by: sent_by(peer.local),
            from: {
                let to = req.at(req.base.to.raw);
                let mut v = Vec::with_capacity(to.len() + 5 + tag.len());
                v.extend_from_slice(to);
                v.extend_from_slice(b";tag=");
                v.extend_from_slice(tag.as_bytes());
                Bytes::from(v)
            },
            to: Bytes::copy_from_slice(req.at(req.base.from.raw)),
            call_id: dialog.call_id.clone(),
            route_set: req
                .headers
                .get_all("Record-Route")
                .map(|r| Bytes::copy_from_slice(&r))
                .collect(),
            contact: None,
        };
        // In-dialog requests reuse the flow the INVITE came on (RFC 5626
        // style): the packet's source, never a host named in the message.
        // Over TCP, once that connection has closed, the transport opens
        // one to the next hop (RFC 3261 §18.1.1): the first Route, else the
        // Contact, a literal address only.
        let link = peer.link.in_dialog(
            peer.local.ip(),
            || build::next_hop(&bye.route_set, &bye.request_uri),
            &dialog.call_id,
        );
        let dest = Dest {
            link,
            to: peer.addr,
        };
        Answer {
            ok: bytes,
            dialog,
            dest,
            reliable: peer.reliable(),
            bye,
            media: ToneSource::AnswerInAck,
        }
    }

    fn on_ack(&mut self, now: Now, req: &Request, peer: &Peer) {
        // When the INVITE had no offer, the caller's answer is in the ACK
        // (RFC 3264 §4, RFC 3261 §13.2.1); an ACK without one plays nothing.
        let sdp_body = !req.body.is_empty()
            && req
                .headers
                .get("Content-Type")
                .map(|v| media_type(&v))
                .as_deref()
                == Some("application/sdp");
        let media = sdp_body
            .then(|| sdp::parse_offer(req.body()).ok())
            .flatten()
            .and_then(|a| sdp::remote_media(&a))
            .and_then(|(codec, remote)| {
                ToneTarget::new(codec, self.media_addr(peer), Some(remote))
            });
        if !self.dialogs.ack(now.mono, &dialog_key(req), media) {
            debug!(call_id = %String::from_utf8_lossy(req.call_id()), "ACK for no dialog dropped");
        }
    }

    fn on_cancel(
        &mut self,
        now: Now,
        cancel: TxId,
        invite: Option<TxId>,
        req: &Request,
        peer: &Peer,
    ) {
        // RFC 3261 §9.2: 481 when no INVITE matches; otherwise 200, and the
        // INVITE, if still unanswered, gets 487 and nothing is applied. A
        // star code is applied as soon as it arrives, so the only INVITE
        // still unanswered is one whose change is being made durable: that
        // change has happened, and its 200 goes out once written (§9.2 makes
        // the 487 a SHOULD; a 2xx after a CANCEL is normal for the caller,
        // §9.1), rather than a 487 that would claim nothing changed.
        let Some(invite) = invite else {
            return self.reply(
                now,
                cancel,
                req,
                peer,
                481,
                "Call/Transaction Does Not Exist",
                |b| b,
            );
        };
        self.reply(now, cancel, req, peer, 200, "OK", |b| b);
        if !self.txs.is_final(invite) && !self.awaiting_journal(invite) {
            // The 487 carries the INVITE's CSeq method (RFC 3261 §9.2): same
            // headers as the CANCEL otherwise.
            let bytes = build::response(req, peer.addr, 487, "Request Terminated")
                .cseq_method(&Method::Invite)
                .to_tag(&self.new_tag())
                .header("Server", SERVER)
                .build();
            self.txs.respond(now.mono, invite, 487, bytes);
        }
    }

    /// True if the answer to transaction `id` waits for a journal write.
    fn awaiting_journal(&self, id: TxId) -> bool {
        self.pending.values().any(|p| match &p.reply {
            Reply::Sip { id: t, .. } | Reply::Subscribe { id: t, .. } => *t == id,
            Reply::None | Reply::Callback { .. } => false,
        })
    }

    /// The agent making the request: the authenticated digest username when
    /// `auth.required` (SPEC §4), else the From user (lab mode).
    fn identify(&mut self, now: Now, req: &Request, source: IpAddr) -> Result<String, AuthRefusal> {
        let from_user = req
            .base
            .from
            .uri
            .user_unescaped(req.headers.buf())
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or_else(|| AuthRefusal::Refuse(403, "Forbidden".into()))?;
        let Some(auth) = self.auth.as_mut() else {
            return Ok(from_user);
        };
        let Some(credentials) = req.headers.get("Authorization") else {
            return Err(AuthRefusal::Challenge { stale: false });
        };
        let secrets = &auth.secrets;
        // The digest is checked against the uri exactly as the client wrote
        // it (softphones add ;transport=udp; SIPp writes only the host). It is
        // not tied to the Request-URI: a captured header cannot be reused on
        // another code because its nonce-count must grow (RFC 7616 §3.4.5).
        let verdict =
            auth.authenticator
                .verify(now.wall / 1000, req.method.as_str(), &credentials, |user| {
                    secrets.get(user).cloned()
                });
        match &verdict {
            Verdict::Ok { .. } => auth.guard.succeeded(source),
            // Counting the failure may start a ban.
            Verdict::Failed if auth.guard.failed(now.mono, source) => {
                warn!(%source, "too many failed authentications: source ignored for a while");
            }
            _ => {}
        }
        match verdict {
            // Only the agent itself may change its state.
            Verdict::Ok { username } if username == from_user => Ok(username),
            Verdict::Ok { username } => {
                warn!(%username, from = %from_user, "authenticated user differs from the From user");
                Err(AuthRefusal::Refuse(
                    403,
                    "Forbidden - From Does Not Match Credentials".into(),
                ))
            }
            Verdict::Stale => Err(AuthRefusal::Challenge { stale: true }),
            Verdict::Replay | Verdict::BadNonce => Err(AuthRefusal::Challenge { stale: false }),
            // Unknown user and wrong password look the same from outside.
            Verdict::Failed => {
                info!(from = %from_user, "digest authentication failed");
                Err(AuthRefusal::Refuse(403, "Forbidden".into()))
            }
            Verdict::Malformed(why) => {
                Err(AuthRefusal::Refuse(400, format!("Bad Request - {why}")))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        now: Now,
        id: TxId,
        req: &Request,
        peer: &Peer,
        status: u16,
        reason: &str,
        extra: impl FnOnce(ResponseBuilder) -> ResponseBuilder,
    ) {
        let bytes = self.response(req, peer, status, reason, extra);
        self.txs.respond(now.mono, id, status, bytes);
    }

    fn response(
        &mut self,
        req: &Request,
        peer: &Peer,
        status: u16,
        reason: &str,
        extra: impl FnOnce(ResponseBuilder) -> ResponseBuilder,
    ) -> Bytes {
        let mut b = build::response(req, peer.addr, status, reason).header("Server", SERVER);
        // RFC 3261 §8.2.6.2: a To tag on every response but 100.
        if status > 100 {
            b = b.to_tag(&self.new_tag());
        }
        extra(b).build()
    }

    /// A To tag: 64 random bits in hex (RFC 3261 §19.3 asks for ≥ 32).
    fn new_tag(&mut self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = self.rng.gen::<u64>();
        let mut tag = String::with_capacity(16);
        for i in 0..16 {
            tag.push(HEX[((v >> (60 - 4 * i)) & 0xf) as usize] as char);
        }
        tag
    }

    fn media_addr(&self, peer: &Peer) -> SocketAddr {
        let rtp = if peer.local.is_ipv4() {
            self.cfg.rtp_v4.or(self.cfg.rtp_v6)
        } else {
            self.cfg.rtp_v6.or(self.cfg.rtp_v4)
        };
        let port = rtp.map_or(0, |a| a.port());
        let ip = if peer.local.ip().is_unspecified() {
            rtp.map_or(peer.local.ip(), |a| a.ip())
        } else {
            peer.local.ip()
        };
        SocketAddr::new(ip, port)
    }

    /// Our Contact: the address the call came to, so the caller's ACK and
    /// BYE come back on the same transport (RFC 3261 §8.1.1.8, §12.1.1).
    fn contact(&self, req: &Request, peer: &Peer) -> String {
        let user = req
            .uri
            .user
            .map(|u| String::from_utf8_lossy(req.at(u)).into_owned());
        let host = if peer.local.ip().is_unspecified() {
            self.cfg.domain.clone()
        } else {
            sent_by(peer.local)
        };
        let scheme = if req.uri.scheme == Scheme::Sips {
            "sips"
        } else {
            "sip"
        };
        let transport = if peer.reliable() {
            ";transport=tcp"
        } else {
            ""
        };
        let mut c = String::with_capacity(64);
        c.push('<');
        c.push_str(scheme);
        c.push(':');
        if let Some(u) = user {
            c.push_str(&u);
            c.push('@');
        }
        c.push_str(&host);
        c.push_str(transport);
        c.push('>');
        c
    }
}

/// The synthesised transaction key of an RFC 2543 request (§17.2.3).
fn rfc2543_key(req: &Request) -> Vec<u8> {
    let top = &req.base.vias[0];
    let mut k = Vec::with_capacity(128);
    k.extend_from_slice(b"2543:");
    k.extend_from_slice(req.call_id());
    k.extend_from_slice(format!(":{}:", req.base.cseq.seq).as_bytes());
    k.extend_from_slice(req.from_tag().unwrap_or_default());
    k.push(b':');
    k.extend_from_slice(req.at(top.raw));
    k
}

/// The dialog a request belongs to, borrowed from it (for lookups).
fn dialog_key(req: &Request) -> DialogKey<'_> {
    DialogKey {
        call_id: req.call_id(),
        local_tag: req.to_tag().unwrap_or_default(),
        remote_tag: req.from_tag().unwrap_or_default(),
    }
}

/// The dialog a request belongs to, from the UAS side (RFC 3261 §12.2.2).
fn dialog_id(req: &Request) -> DialogId {
    let k = dialog_key(req);
    DialogId {
        call_id: Bytes::copy_from_slice(k.call_id),
        local_tag: Bytes::copy_from_slice(k.local_tag),
        remote_tag: Bytes::copy_from_slice(k.remote_tag),
    }
}

fn command_for(code: &StarCode, agent: &str) -> Command {
    let agent = agent.to_string();
    let target = code.queue.clone().map_or(Target::All, Target::Queue);
    match code.action {
        Action::Ready => Command::Ready { agent, target },
        Action::NotReady => Command::NotReady {
            agent,
            target,
            reason: code.reason.map(ReasonRef::Code),
        },
        Action::Login => Command::Login { agent, target },
        Action::Logout => Command::Logout { agent, target },
    }
}

/// `X-Agent-State: queue=8000;state=READY, queue=8001;state=NOT_READY;reason=BREAK`
fn agent_state_header(applied: &Applied) -> String {
    let mut out = String::new();
    for (i, q) in applied.affected.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("queue=");
        out.push_str(&q.queue);
        out.push_str(";state=");
        out.push_str(q.state.as_str());
        if let Some(r) = &q.reason {
            out.push_str(";reason=");
            out.push_str(r);
        }
        if let Some(p) = q.pending {
            out.push_str(";pending=");
            out.push_str(p.as_str());
        }
    }
    out
}

fn join(values: &[Bytes]) -> String {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The package of an `Event` value (`as-feature-event;id=1` →
/// `as-feature-event`; RFC 6665 §8.2.1, compared case-insensitively here
/// because phones vary).
fn event_type(v: &[u8]) -> String {
    media_type(v)
}

/// `application/SDP; charset=x` → `application/sdp`.
fn media_type(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn accepts_sdp(v: &[u8]) -> bool {
    matches!(
        media_type(v).as_str(),
        "application/sdp" | "application/*" | "*/*"
    )
}

/// The URI inside a Contact value (`"A" <sip:a@h>;expires=1` → `sip:a@h`).
fn contact_uri(v: &[u8]) -> Bytes {
    let uri = match (memchr::memchr(b'<', v), memchr::memchr(b'>', v)) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => {
            let end = memchr::memchr(b';', v).unwrap_or(v.len());
            v[..end].trim_ascii()
        }
    };
    Bytes::copy_from_slice(uri)
}

/// `host:port` of a socket address, IPv6 in brackets (RFC 3261 §25.1
/// IPv6reference), without the formatting machinery: it runs every call.
fn sent_by(addr: SocketAddr) -> String {
    let mut s = String::with_capacity(48);
    if addr.is_ipv6() {
        s.push('[');
    }
    sdp::push_ip(&mut s, addr.ip());
    s.push_str(if addr.is_ipv6() { "]:" } else { ":" });
    s.push_str(itoa::Buffer::new().format(addr.port()));
    s
}

/// Issue 14 adapter until the UAS owns the SIP ↔ engine translation: the
/// legacy `AgentStateEvent` state (busy on a call, which no phone reads).
fn legacy_phone_state(
    states: impl IntoIterator<Item = crate::engine::AgentState>,
) -> LegacyPhoneState {
    use crate::engine::AgentState as S;
    let (mut busy, mut wrap, mut ready, mut logged_in) = (false, false, false, false);
    for s in states {
        match s {
            S::QueueCall | S::OtherCall => busy = true,
            S::WrapUp => wrap = true,
            S::Ready => ready = true,
            S::NotReady => logged_in = true,
            S::LoggedOut => {}
        }
    }
    match (busy, wrap, ready, logged_in) {
        (true, ..) => LegacyPhoneState::Busy,
        (_, true, ..) => LegacyPhoneState::WorkingAfterCall,
        (_, _, true, _) => LegacyPhoneState::Ready,
        (.., true) => LegacyPhoneState::NotReady,
        _ => LegacyPhoneState::Null,
    }
}

/// Issue 14 adapter: a `SetAgentState` as an engine command over all the
/// agent's queues.
fn set_agent_state_command(agent: &str, state: RequestedState, reason: Option<u32>) -> Command {
    let agent = agent.to_string();
    let target = Target::All;
    match state {
        RequestedState::LoggedOn => Command::Login { agent, target },
        RequestedState::LoggedOff => Command::Logout { agent, target },
        RequestedState::Ready => Command::Ready { agent, target },
        RequestedState::NotReady => Command::NotReady {
            agent,
            target,
            reason: reason.map(ReasonRef::Code),
        },
        RequestedState::WorkingAfterCall => Command::WrapUp { agent, target },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_by_writes_ipv4_and_bracketed_ipv6() {
        assert_eq!(sent_by("127.0.0.1:5060".parse().unwrap()), "127.0.0.1:5060");
        assert_eq!(sent_by("10.200.3.44:1".parse().unwrap()), "10.200.3.44:1");
        assert_eq!(sent_by("[::1]:5070".parse().unwrap()), "[::1]:5070");
        assert_eq!(
            sent_by("[2001:db8::a:1]:65535".parse().unwrap()),
            "[2001:db8::a:1]:65535"
        );
    }

    #[test]
    fn contact_uri_extraction() {
        assert_eq!(
            contact_uri(b"\"A\" <sip:a@h:5060;transport=udp>;expires=1"),
            "sip:a@h:5060;transport=udp"
        );
        assert_eq!(contact_uri(b"sip:a@h;expires=1"), "sip:a@h");
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(b"Application/SDP ; charset=utf-8"),
            "application/sdp"
        );
        assert!(accepts_sdp(b"application/*"));
        assert!(!accepts_sdp(b"text/nobodyknowsthis"));
    }
}
