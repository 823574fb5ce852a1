//! Durable before answered (SPEC §7): each change the engine makes is
//! handed out as a numbered journal write ([`JournalOrder`]); its answer
//! (the 200, the `SetAgentState` 200, a command's outcome) and its events
//! wait until the shell reports the write done ([`Uas::on_durable`]). A
//! failed write undoes the change, and every change queued after it, and
//! answers 500.

use std::collections::{BTreeMap, VecDeque};

use tracing::{info, warn};

use super::reply::{Answer, Rq, SubAnswer};
use super::subscription::Keys;
use super::{translate, Now, Uas};
use crate::engine::{AgentId, Applied, Cause, Change, Command, Event, Rejection};
use crate::sip::build;
use crate::sip::feature_sync::AcdState;
use crate::sip::message::Method;
use crate::transaction::TxId;

/// The reason phrase of the 500 for a change that could not be saved.
const NOT_SAVED: &str = "Server Internal Error - State Not Saved";

/// What the shell must do with the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOrder {
    /// Append `record` durably, then call [`Uas::on_durable`] with `ticket`.
    Append {
        /// Identifies the write in [`Uas::on_durable`].
        ticket: u64,
        /// The encoded changes.
        record: Vec<u8>,
    },
    /// A write failed and its changes were undone: drop what is queued
    /// behind it, so the journal holds no undone change.
    Reset,
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

/// Who waits for a change to become durable.
pub(super) enum Reply<F, W> {
    /// Nobody (a wrap-up timer fired).
    None,
    /// A star-code INVITE: the 200 to send, or a 500 built from it if the
    /// write fails.
    Sip { id: TxId, answer: Box<Answer<F>> },
    /// A SUBSCRIBE with `SetAgentState`: the 200 (and the subscription),
    /// or a 500 built from it if the write fails.
    Subscribe { id: TxId, answer: Box<SubAnswer<F>> },
    /// A command from the API or a feature key.
    Waiter { applied: Applied, waiter: W },
}

/// A change waiting for its journal write.
pub(super) struct Pending<F, W> {
    /// Who is answered once the write finishes.
    reply: Reply<F, W>,
    /// The events, published only once durable (subscribers never see a
    /// change that is later undone).
    events: Vec<Event>,
    /// The agent's records before the change, to undo it if the write fails.
    undo: Vec<Change>,
    /// The agents the change is about (a shared store undoes only the
    /// changes queued after a failed one that touch the same agents).
    agents: Vec<AgentId>,
}

/// The writes in flight.
pub(super) struct Journal<F, W> {
    /// False: nothing is journaled, answers go out at once.
    enabled: bool,
    /// The store is shared by several nodes (PostgreSQL): records carry
    /// their events ([`super::remote::SharedRecord`]), writes of different
    /// agents succeed or fail independently, and wrap-up deadlines fire
    /// only when the shell says so ([`Uas::expire_wrapup`]).
    pub(super) shared: bool,
    pub(super) pending: BTreeMap<u64, Pending<F, W>>,
    next_ticket: u64,
    pub(super) orders: VecDeque<JournalOrder>,
}

impl<F, W> Journal<F, W> {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shared: false,
            pending: BTreeMap::new(),
            next_ticket: 1,
            orders: VecDeque::new(),
        }
    }

    /// True if the answer to transaction `id` waits for a journal write.
    pub(super) fn awaits(&self, id: TxId) -> bool {
        self.pending.values().any(|p| match &p.reply {
            Reply::Sip { id: t, .. } | Reply::Subscribe { id: t, .. } => *t == id,
            Reply::None | Reply::Waiter { .. } => false,
        })
    }
}

impl<F: Clone, W> Uas<F, W> {
    /// Applies a command that did not come from SIP (the REST API, the
    /// WebSocket): its outcome is handed out with `waiter` by
    /// [`Uas::poll_finished`] once durable, or at once when refused. The
    /// events are published like any other.
    pub fn apply_command(&mut self, now: Now, cmd: Command, cause: Cause, waiter: W) {
        let undo = self.undo_record(&cmd);
        match self.engine.apply(now.wall, cmd, cause) {
            Err(r) => self
                .finished
                .push_back((waiter, Err(ApplyError::Rejected(r)))),
            Ok(mut applied) => {
                let events = std::mem::take(&mut applied.events);
                let reply = Reply::Waiter {
                    applied: Applied {
                        events: events.clone(),
                        ..applied
                    },
                    waiter,
                };
                self.commit(now, reply, events, undo);
            }
        }
    }

    /// The agent's records before a change, when a failed write may have
    /// to undo it.
    fn undo_record(&self, cmd: &Command) -> Vec<Change> {
        if self.journal.enabled {
            self.engine.undo_record(cmd)
        } else {
            Vec::new()
        }
    }

    /// Applies the commands a SIP request carries (a star code, a
    /// `SetAgentState`; several for a DND key turned off, all for the same
    /// agent), all or none: a refusal is answered at once with its status
    /// and phrase (SPEC §4) and undoes the commands applied before it; a
    /// success is journaled, and the reply `ok` builds from what was
    /// applied goes out once the change is durable (SPEC §7); should the
    /// write fail, a 500 made from it ([`NOT_SAVED`]) goes instead.
    pub(super) fn apply_for_request(
        &mut self,
        now: Now,
        rq: Rq<'_, F>,
        cmds: Vec<Command>,
        cause: Cause,
        ok: impl FnOnce(&mut Self, &Applied) -> Reply<F, W>,
    ) {
        let Some(first) = cmds.first() else {
            return;
        };
        let agent = first.agent().clone();
        let several = cmds.len() > 1;
        // Several commands are undone together if one is refused, so their
        // records are kept even without a journal.
        let undo = if several {
            self.engine.export_agent(&agent)
        } else {
            self.undo_record(first)
        };
        let call_id = String::from_utf8_lossy(rq.req.call_id());
        let mut applied = Applied {
            events: Vec::new(),
            affected: Vec::new(),
        };
        for cmd in cmds {
            let star_code = (cause == Cause::Fac).then(|| cmd.clone());
            let result = self.engine.apply(now.wall, cmd, cause);
            if let Some(cmd) = star_code {
                let outcome = result.as_ref().map(|_| ()).map_err(|r| *r);
                self.metrics.star_code(&cmd, outcome);
            }
            match result {
                Err(rejection) => {
                    if several {
                        for c in undo {
                            let _ = self.engine.restore(c);
                        }
                        let _ = self.engine.take_changes();
                    }
                    self.stats.refused += 1;
                    let (status, reason) = translate::sip_status(rejection);
                    info!(%agent, %call_id, status, reason, cause = cause.as_str(), "request refused");
                    return self.reply(now, rq, status, reason, |b| b);
                }
                Ok(a) => {
                    applied.events.extend(a.events);
                    applied.affected.extend(a.affected);
                }
            }
        }
        self.stats.applied += 1;
        for ev in &applied.events {
            info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = cause.as_str(), %call_id, "state changed");
        }
        let reply = ok(self, &applied);
        let events = std::mem::take(&mut applied.events);
        self.commit(now, reply, events, undo);
    }

    /// Journals the engine's pending changes; `reply` is answered and
    /// `events` published once they are durable (SPEC §7).
    pub(super) fn commit(
        &mut self,
        now: Now,
        reply: Reply<F, W>,
        events: Vec<Event>,
        undo: Vec<Change>,
    ) {
        let changes = self.engine.take_changes();
        if !self.journal.enabled || changes.is_empty() {
            return self.complete(now, reply, events);
        }
        // Only a shared store needs them (no allocation on the journal's path).
        let agents = if self.journal.shared {
            super::remote::agents_of(&changes)
        } else {
            Vec::new()
        };
        // PostgreSQL keeps a shared record as JSON (with its events, for the
        // other nodes); the local journal takes the compact binary form.
        let encoded = if self.journal.shared {
            serde_json::to_vec(&super::remote::SharedRecord {
                changes,
                events: events.clone(),
            })
            .map_err(|e| e.to_string())
        } else {
            crate::engine::record::encode(&changes).map_err(|e| e.to_string())
        };
        let record = match encoded {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "cannot encode a journal record");
                return self.complete(now, reply, events);
            }
        };
        let j = &mut self.journal;
        let ticket = j.next_ticket;
        j.next_ticket += 1;
        j.pending.insert(
            ticket,
            Pending {
                reply,
                events,
                undo,
                agents,
            },
        );
        j.orders.push_back(JournalOrder::Append { ticket, record });
    }

    /// A journal write finished: send its answer, or undo it (and every
    /// change queued after it, newest first) and answer 500 (SPEC §7).
    pub fn on_durable<E: std::fmt::Display>(
        &mut self,
        now: Now,
        ticket: u64,
        result: Result<(), E>,
    ) {
        match result {
            Ok(()) => {
                if let Some(p) = self.journal.pending.remove(&ticket) {
                    self.complete(now, p.reply, p.events);
                }
            }
            Err(e) => {
                if !self.journal.pending.contains_key(&ticket) {
                    return;
                }
                let failed = self.failed_from(ticket);
                warn!(error = %e, changes = failed.len(), "journal write failed: changes undone and answered 500");
                for &t in failed.iter().rev() {
                    let Some(p) = self.journal.pending.remove(&t) else {
                        continue;
                    };
                    for c in p.undo {
                        let _ = self.engine.restore(c);
                    }
                    let (id, ok, method) = match p.reply {
                        Reply::None => continue,
                        Reply::Waiter { waiter, .. } => {
                            self.finished.push_back((waiter, Err(ApplyError::NotSaved)));
                            continue;
                        }
                        Reply::Sip { id, answer } => (id, answer.ok, Method::Invite),
                        Reply::Subscribe { id, answer } => (id, answer.ok, Method::Subscribe),
                    };
                    let fail = build::failure_from(&ok, 500, NOT_SAVED);
                    self.metrics.response(&method, 500);
                    self.txs.respond(now.mono, id, 500, fail);
                }
                let _ = self.engine.take_changes();
                // Writes not yet handed to the store are of undone changes too.
                self.journal.orders.retain(
                    |o| !matches!(o, JournalOrder::Append { ticket: t, .. } if failed.contains(t)),
                );
                if !self.journal.shared {
                    self.journal.orders.push_back(JournalOrder::Reset);
                }
            }
        }
    }

    /// The changes undone when the write of `ticket` fails: it and every
    /// later one; with a shared store, only the later ones that touch its
    /// agents (or the agents of those), since other agents' writes succeed
    /// or fail on their own.
    fn failed_from(&self, ticket: u64) -> Vec<u64> {
        let later = self.journal.pending.range(ticket..);
        if !self.journal.shared {
            return later.map(|(t, _)| *t).collect();
        }
        let mut agents: Vec<&AgentId> = Vec::new();
        let mut failed = Vec::new();
        for (t, p) in later {
            if *t == ticket || p.agents.iter().any(|a| agents.contains(&a)) {
                agents.extend(p.agents.iter());
                failed.push(*t);
            }
        }
        failed
    }

    /// A change became durable (or needs no journal): answer whoever
    /// waits and publish its events.
    fn complete(&mut self, now: Now, reply: Reply<F, W>, events: Vec<Event>) {
        match reply {
            Reply::None => {}
            Reply::Sip { id, answer, .. } => self.deliver(now, id, *answer),
            Reply::Subscribe { id, answer, .. } => self.establish(now, id, *answer),
            Reply::Waiter { applied, waiter } => self.finished.push_back((waiter, Ok(applied))),
        }
        self.publish(now, events);
    }

    /// The one place durable events leave the UAS: to the outbox, and to
    /// the phone keys subscribed to each agent concerned, one NOTIFY per key
    /// whose display changed (SPEC §5).
    pub(super) fn publish(&mut self, now: Now, events: Vec<Event>) {
        let mut agents: Vec<&str> = events
            .iter()
            .map(|e| e.agent.as_str())
            .filter(|a| self.subs.has_agent(a))
            .collect();
        agents.dedup();
        let agents: Vec<String> = agents.into_iter().map(str::to_string).collect();
        for agent in agents {
            let queues = translate::key_queues(&self.engine, &agent);
            let views = translate::key_views(&queues);
            let keys = Keys {
                acd: AcdState::from_queues(&views),
                dnd: self.dnd(&views),
                queues: &views,
            };
            self.subs.update_agent(now.mono, &agent, &keys);
        }
        self.outbox.extend(events);
    }
}
