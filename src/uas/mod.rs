//! The UAS: facd's SIP user-agent server as a sans-io state machine.
//!
//! It takes `(now, inbound message)`, journal completions and commands from
//! outside SIP in, and hands values out: [`Transmit`]s for the shell to send,
//! [`JournalOrder`]s for the store, media orders for the tone sender,
//! durable engine events, finished commands, and the next deadline
//! ([`Uas::poll_timeout`]). It never touches a socket, a task, the clock or
//! the OS random number generator (its seed comes in [`UasConfig`]); the
//! async shell in [`crate::server`] owns all of that.
//!
//! The flow type `F` is the shell's opaque "socket or connection" a
//! message came on and answers go back over; the waiter type `W` is the
//! shell's opaque "who waits" for a command from outside SIP (REST, WSI).
//!
//! Its parts, one job each:
//! - this file: the inputs and outputs, transaction matching, the method
//!   policy of RFC 3261 §8.2 and the dispatch to the parts below;
//! - [`invite`]: star-code INVITEs, their ACK and CANCEL (RFC 3261 §13, §9);
//! - [`subscribe`]: SUBSCRIBEs of phone keys: the feature-key package and
//!   the BLF lamps on star codes (RFC 6665, RFC 4235, RFC 3856, SPEC §5);
//! - [`identity`]: who is asking (digest auth, RFC 3261 §22, RFC 7616/8760,
//!   and the failed-authentication ban);
//! - [`reply`]: the one place answers are built (tags, Contact, Server);
//! - [`journal`]: durable-before-answer (SPEC §7): tickets, commit, undo;
//! - [`translate`]: the one SIP ↔ engine translation;
//! - [`dialog`] and [`subscription`]: the answered calls and the phones'
//!   subscriptions, over non-INVITE client transactions.

pub mod dialog;
mod identity;
mod invite;
mod journal;
mod metrics;
mod reload;
mod remote;
mod reply;
mod subscribe;
pub mod subscription;
mod translate;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tracing::{debug, info, warn};

use crate::engine::{Applied, Engine, Event, Millis, ReasonName};
use crate::media::MediaOrder;
use crate::sip::blf::{LampParser, ToggleCodes};
use crate::sip::build::NoRoute;
use crate::sip::message::{parse_message, Message, Method, Request, Response, Scheme};
use crate::sip::star_code::StarCodeParser;
use crate::sip::values::join;
use crate::sip::{ACCEPT, ALLOW, ALLOW_EVENTS};
use crate::transaction::{KeyParts, Received, RequestKind, ServerTransactions, TimerConfig};

use dialog::{DialogEvent, Dialogs};
use subscription::{ExpiryBounds, SubEvent, Subscriptions};

pub use identity::Identity;
pub use journal::{ApplyError, JournalOrder};
pub use metrics::{method_label, InFlight, UasMetrics};
pub use reload::Reload;
pub use remote::{change_agent, SharedRecord};
pub use translate::{dialog_id, dialog_key, sip_status};

/// RFC 3261 §8.1.1.7: the magic cookie of RFC 3261 branches.
const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// Monotonic time for transactions and wall time for agent states.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For RFC 3261 timers.
    pub mono: Instant,
    /// Unix milliseconds, for states and wrap-up deadlines (they survive restarts).
    pub wall: Millis,
}

/// Settings the UAS needs.
#[derive(Debug, Clone)]
pub struct UasConfig {
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
    /// True when changes are journaled before they are answered (SPEC §7):
    /// the UAS hands out [`JournalOrder`]s and waits for [`Uas::on_durable`].
    pub journal: bool,
    /// Seeds the tags, branches and SDP session ids (the shell draws it
    /// from the OS; tests fix it).
    pub seed: u64,
}

/// Phone-key settings beyond the star codes (`[codes] toggle_login`,
/// `toggle_ready`, `[feature_keys]`).
#[derive(Debug, Clone, Default)]
pub struct KeySettings {
    /// The toggle codes (INVITE flips, BLF lamp shows).
    pub toggles: ToggleCodes,
    /// The configured not-ready reason a phone's DND key sets
    /// (`SetDoNotDisturb`); None: DND keys are refused.
    pub dnd_reason: Option<ReasonName>,
}

/// The transport a message came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Unreliable: retransmissions (RFC 3261 §17).
    Udp,
    /// Reliable: none.
    Tcp,
    /// TCP under TLS (RFC 3261 §26.2, §18): reliable.
    Tls,
    /// SIP over WebSocket (RFC 7118): reliable; the peer accepts no
    /// connection, so everything goes back over its WebSocket (§5).
    Ws,
    /// SIP over secure WebSocket (RFC 7118): as `Ws`, under TLS.
    Wss,
}

impl Transport {
    /// As written in Via (RFC 3261 §18.2, RFC 7118 §5: `WS`, `WSS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// The `transport=` URI parameter value (RFC 3261 §19.1.1, RFC 7118 §5).
    pub fn param(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// True on stream transports: no retransmissions (RFC 3261 §17.1.1.2).
    pub fn reliable(self) -> bool {
        self != Self::Udp
    }
}

/// Where a message came from and how to answer it.
#[derive(Clone, Debug)]
pub struct Peer<F> {
    /// The packet's source address (RFC 3261 §18.2.1 `received`).
    pub addr: SocketAddr,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// UDP, TCP, TLS, WS or WSS.
    pub transport: Transport,
    /// The shell's socket or connection it came on.
    pub flow: F,
}

impl<F> Peer<F> {
    /// True on a reliable (stream) transport: no retransmissions (RFC 3261 §17).
    pub fn reliable(&self) -> bool {
        self.transport.reliable()
    }
}

/// A parsed message and where it came from.
#[derive(Debug)]
pub struct Inbound<F> {
    /// The message.
    pub msg: Message,
    /// Its sender.
    pub peer: Peer<F>,
}

/// Where an in-dialog request goes once the connection its dialog came on
/// has closed (RFC 3261 §18.1.1): the first Route of the dialog's route set,
/// else the remote target; only a literal address ([`crate::sip::build::next_hop`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    /// The IP the dialog's request came to: a new connection comes from it,
    /// so that our Via sent-by stays true.
    pub local_ip: IpAddr,
    /// The address to connect to, or why there is none.
    pub target: Result<SocketAddr, NoRoute>,
    /// The dialog's Call-ID, for logs.
    pub call_id: Bytes,
}

/// Where a transaction, dialog or subscription sends: the flow, the address
/// (held per finished transaction for Timer J/L, so it keeps only what
/// sending needs), and for in-dialog requests over TCP the next hop.
#[derive(Debug, Clone)]
pub struct Dest<F> {
    /// The socket or connection.
    pub flow: F,
    /// The UDP destination (the peer's address on TCP).
    pub to: SocketAddr,
    /// In-dialog requests over TCP: where to connect when `flow` has closed.
    pub next_hop: Option<Arc<NextHop>>,
}

/// Bytes to send: what the shell pops with [`Uas::poll_transmit`].
#[derive(Debug, Clone)]
pub struct Transmit<F> {
    /// The socket or connection to send on.
    pub flow: F,
    /// The UDP destination (ignored on TCP).
    pub to: SocketAddr,
    /// In-dialog requests over TCP: where to connect if `flow` has closed.
    pub next_hop: Option<Arc<NextHop>>,
    /// The message.
    pub bytes: Bytes,
}

impl<F> Transmit<F> {
    fn new(dest: Dest<F>, bytes: Bytes) -> Self {
        Self {
            flow: dest.flow,
            to: dest.to,
            next_hop: dest.next_hop,
            bytes,
        }
    }
}

/// Counters of what the UAS did.
#[derive(Debug, Default, Clone)]
pub struct UasStats {
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

/// The UAS state.
pub struct Uas<F, W> {
    identity: Option<Identity>,
    /// `[[trusted_proxies]]`: see [`identity`].
    proxies: Vec<crate::limits::IpNet>,
    journal: journal::Journal<F, W>,
    cfg: UasConfig,
    txs: ServerTransactions<Dest<F>>,
    dialogs: Dialogs<Dest<F>>,
    subs: Subscriptions<Dest<F>>,
    engine: Engine,
    codes: StarCodeParser,
    /// The star codes and toggles a BLF key may watch (and an INVITE toggle).
    lamps: LampParser,
    /// The DND reason (`[feature_keys] dnd_reason`).
    dnd_reason: Option<ReasonName>,
    rng: SmallRng,
    draining: bool,
    /// Durable events not yet taken by [`Uas::poll_event`].
    outbox: VecDeque<Event>,
    /// Answers sent without a transaction (the stateless 503).
    stateless: VecDeque<Transmit<F>>,
    /// Commands from outside SIP whose outcome is final.
    finished: VecDeque<(W, Result<Applied, ApplyError>)>,
    /// What the UAS did, for logs and tests.
    pub stats: UasStats,
    /// What the UAS counts for monitoring (`GET /metrics`).
    pub metrics: UasMetrics,
}

impl<F: Clone, W> Uas<F, W> {
    /// A UAS over `engine`, recognising `codes`; `identity` is digest
    /// authentication (None: lab mode, the From user is the agent).
    pub fn new(
        cfg: UasConfig,
        engine: Engine,
        codes: StarCodeParser,
        identity: Option<Identity>,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        Self {
            identity,
            proxies: Vec::new(),
            journal: journal::Journal::new(cfg.journal),
            txs: ServerTransactions::new(cfg.timers),
            dialogs: Dialogs::new(cfg.timers, cfg.max_dialogs, rng.gen()),
            subs: Subscriptions::new(cfg.timers, cfg.subscribe, cfg.max_subscriptions, rng.gen()),
            engine,
            lamps: LampParser::from_parser(codes.clone(), ToggleCodes::default()),
            codes,
            dnd_reason: None,
            rng,
            draining: false,
            outbox: VecDeque::new(),
            stateless: VecDeque::new(),
            finished: VecDeque::new(),
            stats: UasStats::default(),
            metrics: UasMetrics::default(),
            cfg,
        }
    }

    /// Sets the toggle codes and the DND reason (default: `*45`, `*46`, no
    /// DND reason).
    pub fn with_keys(mut self, keys: KeySettings) -> Self {
        self.lamps = LampParser::from_parser(self.codes.clone(), keys.toggles);
        self.dnd_reason = keys.dnd_reason;
        self
    }

    /// The engine, read-only (for views and snapshots).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// One inbound message.
    pub fn handle(&mut self, now: Now, inbound: Inbound<F>) {
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
        if self.local_timers() && self.engine.next_deadline().is_some_and(|d| d <= now.wall) {
            let events = self.engine.handle_timeout(now.wall);
            for ev in &events {
                info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = "timer", "state changed");
            }
            // A timer change is journaled too (nobody waits for it; after a
            // crash the expired deadline fires again on replay).
            self.commit(now, journal::Reply::None, events, Vec::new());
        }
    }

    /// The earliest deadline of the transactions, dialogs, subscriptions
    /// and engine.
    pub fn poll_timeout(&self, now: Now) -> Option<Instant> {
        let engine = self
            .engine
            .next_deadline()
            .filter(|_| self.local_timers())
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

    /// The next message to send. Logs what the dialogs and subscriptions
    /// report on the way.
    pub fn poll_transmit(&mut self) -> Option<Transmit<F>> {
        if let Some(t) = self.stateless.pop_front() {
            return Some(t);
        }
        if let Some((dest, bytes)) = self.txs.poll_transmit() {
            return Some(Transmit::new(dest, bytes));
        }
        self.log_events();
        if let Some((dest, bytes)) = self.dialogs.poll_transmit() {
            return Some(Transmit::new(dest, bytes));
        }
        self.subs
            .poll_transmit()
            .map(|(dest, bytes)| Transmit::new(dest, bytes))
    }

    fn log_events(&mut self) {
        while let Some(SubEvent::Ended { id, agent, how }) = self.subs.poll_event() {
            info!(%agent, call_id = %String::from_utf8_lossy(&id.call_id), how = ?how, "subscription ended");
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

    /// The next order for the media sender (the confirmation tone starts on
    /// the ACK and stops when the call ends).
    pub fn poll_media(&mut self) -> Option<MediaOrder> {
        self.dialogs.poll_media()
    }

    /// The next durable event, in the order the engine applied them.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.outbox.pop_front()
    }

    /// The next command from outside SIP whose outcome is final, with its waiter.
    pub fn poll_finished(&mut self) -> Option<(W, Result<Applied, ApplyError>)> {
        self.finished.pop_front()
    }

    /// The next write or reset for the journal.
    pub fn poll_journal(&mut self) -> Option<JournalOrder> {
        self.journal.orders.pop_front()
    }

    /// Changes still waiting for the journal.
    pub fn pending_writes(&self) -> usize {
        self.journal.pending.len()
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

    /// The shell could not send one of our BYEs or NOTIFYs (`request`, as
    /// handed out; no connection to its next hop could be opened): its
    /// client transaction ends at once, as after a Timer F (RFC 3261
    /// §17.1.4), and so does the dialog or subscription.
    pub fn on_unsent(&mut self, now: Now, request: Bytes) {
        let Ok(Message::Request(req)) = parse_message(request) else {
            return;
        };
        let Some(branch) = req.branch() else { return };
        debug!(method = req.base.cseq.method.as_str(), call_id = %String::from_utf8_lossy(req.call_id()), "in-dialog request not sent");
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

    fn on_request(&mut self, now: Now, req: &Request, peer: Peer<F>) {
        let Some(top) = req.base.vias.first() else {
            return;
        };
        let dest = reply::response_dest(req, &peer);
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
                rfc2543 = translate::rfc2543_key(req);
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
            self.metrics.response(&req.method, 503);
            self.stateless.push_back(Transmit::new(dest, bytes));
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

    /// A new request: the method policy of RFC 3261 §8.2, then the method.
    fn on_new(&mut self, now: Now, id: crate::transaction::TxId, req: &Request, peer: &Peer<F>) {
        let rq = reply::Rq { id, req, peer };
        // RFC 3261 §8.2.1: method inspection first.
        match &req.method {
            Method::Invite | Method::Options | Method::Bye | Method::Subscribe => {}
            Method::Extension(_) => {
                return self.reply(now, rq, 501, "Not Implemented", |b| {
                    b.header("Allow", ALLOW)
                });
            }
            _ => {
                return self.reply(now, rq, 405, "Method Not Allowed", |b| {
                    b.header("Allow", ALLOW)
                });
            }
        }
        // RFC 3261 §8.2.2.1: a Request-URI scheme we do not serve.
        if let Scheme::Other(_) = req.uri.scheme {
            return self.reply(now, rq, 416, "Unsupported URI Scheme", |b| b);
        }
        // RFC 3261 §8.2.2.3: we support no extension option-tags.
        let unsupported: Vec<Bytes> = req.headers.get_all("Require").collect();
        if !unsupported.is_empty() {
            let list = join(&unsupported);
            return self.reply(now, rq, 420, "Bad Extension", |b| {
                b.header("Unsupported", list)
            });
        }
        match &req.method {
            Method::Options => self.reply(now, rq, 200, "OK", |b| {
                b.header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Allow-Events", ALLOW_EVENTS)
                    .header("Supported", "")
            }),
            Method::Subscribe => self.on_subscribe(now, rq),
            Method::Bye => {
                // RFC 3261 §15.1.2: a BYE for a dialog we do not know is 481.
                if self.dialogs.bye_received(now.mono, &dialog_key(req)) {
                    self.reply(now, rq, 200, "OK", |b| b)
                } else {
                    self.reply(now, rq, 481, "Call/Transaction Does Not Exist", |b| b)
                }
            }
            _ => self.on_invite(now, rq),
        }
    }

    /// During a graceful stop (SPEC §8) a new call or subscription is
    /// answered 503 with Retry-After; true if it was.
    fn refused_while_draining(&mut self, now: Now, rq: reply::Rq<'_, F>) -> bool {
        if self.draining {
            self.reply(now, rq, 503, "Service Unavailable - Shutting Down", |b| {
                b.header("Retry-After", "5")
            });
        }
        self.draining
    }
}
