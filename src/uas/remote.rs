//! A store shared by several facd nodes (PostgreSQL, SPEC §7 across
//! nodes): the engine here is a replica and the database the truth.
//!
//! What changes for the UAS, and only when the shell turns it on
//! ([`Uas::set_shared_store`]):
//! - each journal record is a [`SharedRecord`]: the changed records *and*
//!   the events they produced, so that other nodes can publish them;
//! - a failed (or conflicting) write undoes only the changes of its
//!   agents ([`Uas::on_durable`]);
//! - wrap-up deadlines do not fire on their own: the shell claims a due
//!   deadline in the database and calls [`Uas::expire_wrapup`], so exactly
//!   one node fires each;
//! - changes made by other nodes come in through [`Uas::apply_remote`]
//!   (records restored, events published to the outbox and the phone keys).

use serde::{Deserialize, Serialize};
use tracing::debug;

use super::journal::Reply;
use super::{Now, Uas};
use crate::engine::{AgentId, Change, Event};

/// One journal record of a shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRecord {
    /// The new value of everything that changed.
    pub changes: Vec<Change>,
    /// The events the change produced, in order.
    pub events: Vec<Event>,
}

/// The agents `changes` are about, in first-seen order.
pub(super) fn agents_of(changes: &[Change]) -> Vec<AgentId> {
    let mut out: Vec<AgentId> = Vec::new();
    for c in changes {
        let a = change_agent(c);
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// The agent one record is about.
pub fn change_agent(c: &Change) -> &AgentId {
    match c {
        Change::Cell { agent, .. }
        | Change::Calls { agent, .. }
        | Change::Membership { agent, .. } => agent,
    }
}

impl<F: Clone, W> Uas<F, W> {
    /// Runs on a store shared with other nodes (see the module docs).
    pub fn set_shared_store(&mut self, shared: bool) {
        self.journal.shared = shared;
    }

    /// True when the engine's wrap-up deadlines fire on their own (not
    /// with a shared store).
    pub(super) fn local_timers(&self) -> bool {
        !self.journal.shared
    }

    /// A change another node made durable (or this node's view of an
    /// agent refreshed from the database, with no events): its records
    /// replace ours and its events are published like our own.
    pub fn apply_remote(&mut self, now: Now, changes: Vec<Change>, events: Vec<Event>) {
        for c in changes {
            if let Err(skip) = self.engine.restore(c) {
                debug!(reason = %skip, "remote record skipped");
            }
        }
        // Restoring a membership marks it changed: it is not ours to write.
        let _ = self.engine.take_changes();
        if !events.is_empty() {
            self.publish(now, events);
        }
    }

    /// The shell claimed `agent`'s due wrap-up deadline in the shared
    /// store: end the wrap-ups that are due, as a change like any other.
    pub fn expire_wrapup(&mut self, now: Now, agent: &str) {
        let undo = self.engine.export_agent(agent);
        let events = self.engine.handle_timeout_of(now.wall, agent);
        if events.is_empty() {
            return;
        }
        for ev in &events {
            tracing::info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = "timer", "state changed");
        }
        self.commit(now, Reply::None, events, undo);
    }
}
