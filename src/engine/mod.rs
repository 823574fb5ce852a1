//! The agent-state engine: agents, queues, the state of every agent in every
//! queue, and the transitions of SPEC §2, as a pure state machine.
//!
//! No I/O, no clock, no tokio: time comes in as [`Millis`] arguments,
//! wrap-up deadlines are data ([`Engine::next_deadline`],
//! [`Engine::handle_timeout`]), and every command applies completely or not
//! at all (it is worked out on a copy of the agent's cells, then committed).
//! Every mutation is also recorded as a [`Change`] for the durable store.
//! Agents, queues and reasons are named by shared ids ([`AgentId`],
//! [`QueueId`], [`ReasonName`]): events, records and views carry clones of
//! the ones in the engine's tables, so none of them copies a string.
//!
//! Choices where SPEC §2 is silent:
//! - An agent who becomes READY while on a call (logging in, or going ready
//!   in a queue where it was NOT_READY during a non-ACD call) is put in
//!   OTHER_CALL and returns to READY when its calls end, so the ACD never
//!   sees a READY agent who is talking.
//! - Overlapping calls are recorded; queues return to their pre-call state
//!   when the last call ends. An ACD call needs READY in its queue.
//! - Manual wrap-up (API) lasts the queue's `wrap_up_secs`, or, when that is
//!   0, until the agent goes ready or not ready. During a call it is pending.
//! - A change requested during a call is pending; a later request replaces
//!   it, and login cancels a pending logout. Pending ready/not ready waits
//!   out the wrap-up after an ACD call; a pending logout skips it.
//! - A change of only the pending state or the not-ready reason is an event.
//! - Membership changes (REST `Join`/`Leave`) are durable like states: an
//!   agent's whole membership list is one [`Change::Membership`] record, and
//!   once changed it replaces the configured list at every restart. Joining
//!   starts LOGGED_OUT (an event LOGGED_OUT → LOGGED_OUT); leaving drops the
//!   agent's state there (an event to LOGGED_OUT with `removed`), even during
//!   a call from that queue (the call's end then touches only other queues).

mod census;
mod command;
mod event;
mod id;
pub mod record;
mod reload;
mod state;

use std::collections::BTreeSet;

use ahash::AHashMap as HashMap;

use serde::{Deserialize, Serialize};

pub use command::{CallKind, Command, ReasonRef, Rejection, Target};
pub use event::{Applied, Cause, Event, QueueStatus};
pub use id::{AgentId, QueueId, ReasonName};
pub use reload::Reloaded;
pub use state::{AgentState, Cell, Millis, UnknownState, Wanted};

/// A queue from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDef {
    /// 1–10 digits.
    pub number: QueueId,
    /// Display name.
    pub name: String,
    /// Login (and call end) puts the agent in READY, else NOT_READY.
    pub auto_ready: bool,
    /// WRAP_UP after an ACD call, for this long.
    pub wrap_up_secs: u64,
    /// NOT_READY after a non-ACD call instead of the state before it.
    pub not_ready_after_other_call: bool,
}

/// An agent from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDef {
    /// The extension (the SIP user).
    pub extension: AgentId,
    /// Display name.
    pub name: String,
    /// Queue numbers it belongs to.
    pub queues: Vec<QueueId>,
}

/// A not-ready reason from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonDef {
    /// What is dialled after `*37…*`.
    pub code: u32,
    /// The name shown and accepted by the API.
    pub name: ReasonName,
}

/// The configured world the engine runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Queues.
    pub queues: Vec<QueueDef>,
    /// Agents.
    pub agents: Vec<AgentDef>,
    /// Not-ready reasons.
    pub reasons: Vec<ReasonDef>,
}

/// A call in progress for an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The PBX's id.
    pub call_id: String,
    /// ACD or other.
    pub kind: CallKind,
}

/// One durable record: the full new value of something that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// An agent × queue cell.
    Cell {
        /// Extension.
        agent: AgentId,
        /// Queue number.
        queue: QueueId,
        /// Its whole record.
        cell: Cell,
    },
    /// The calls an agent is on.
    Calls {
        /// Extension.
        agent: AgentId,
        /// Every call in progress.
        calls: Vec<Call>,
    },
    /// An agent's queues, after a membership change (REST). Comes before
    /// the cells of those queues in a record.
    Membership {
        /// Extension.
        agent: AgentId,
        /// Every queue it belongs to, in order.
        queues: Vec<Member>,
    },
}

/// One membership of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Queue number.
    pub queue: QueueId,
    /// 1–100.
    pub skill_level: u32,
}

/// The skill level of a configured membership (PortSIP's default).
pub const DEFAULT_SKILL: u32 = 1;

/// Why a stored record was not restored (the configuration changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreSkip {
    /// The agent is no longer configured.
    #[error("agent {0} is no longer configured")]
    UnknownAgent(AgentId),
    /// The queue is no longer configured.
    #[error("queue {queue} is no longer configured (agent {agent})")]
    UnknownQueue {
        /// Extension.
        agent: AgentId,
        /// Queue number.
        queue: QueueId,
    },
    /// The agent is no longer a member of the queue.
    #[error("agent {agent} is no longer a member of queue {queue}")]
    NotAMember {
        /// Extension.
        agent: AgentId,
        /// Queue number.
        queue: QueueId,
    },
}

/// An agent's state in one queue, for views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// Queue number.
    pub queue: QueueId,
    /// State.
    pub state: AgentState,
    /// Not-ready reason.
    pub reason: Option<ReasonName>,
    /// Pending state.
    pub pending: Option<AgentState>,
    /// Since when.
    pub since: Millis,
    /// The agent's skill level in the queue.
    pub skill_level: u32,
}

/// An agent and its state in each of its queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentView {
    /// Extension.
    pub extension: AgentId,
    /// Display name.
    pub name: String,
    /// One entry per queue, in configuration order.
    pub queues: Vec<QueueView>,
}

struct Agent {
    def: AgentDef,
    /// Queue index of each membership.
    slots: Vec<usize>,
    /// Skill level of each membership.
    skills: Vec<u32>,
    cells: Vec<Cell>,
    calls: Vec<Call>,
    /// The membership was changed at run time (it is exported and journaled).
    custom: bool,
}

/// `dirty` slot number that stands for an agent's calls.
const CALLS: u32 = u32::MAX;
/// `dirty` slot number that stands for an agent's membership list.
const MEMBERSHIP: u32 = u32::MAX - 1;

/// The engine. See the module documentation.
pub struct Engine {
    queues: Vec<QueueDef>,
    queue_ix: HashMap<QueueId, usize>,
    /// (agent, slot) of each queue's members.
    members: Vec<Vec<(usize, usize)>>,
    agents: Vec<Agent>,
    agent_ix: HashMap<AgentId, usize>,
    reasons: Vec<ReasonDef>,
    /// Wrap-up deadlines: (when, agent, slot).
    timers: BTreeSet<(Millis, usize, usize)>,
    /// What changed since the last [`Engine::take_changes`].
    dirty: BTreeSet<(usize, u32)>,
}

impl Engine {
    /// Every agent starts LOGGED_OUT in each of its queues (SPEC §1).
    /// Memberships naming unknown queues are ignored (config validation
    /// refuses them before this point).
    pub fn new(model: Model) -> Self {
        Self::build(model.queues, model.reasons, model.agents)
    }

    /// [`Engine::new`] from the agents one at a time (each definition is
    /// consumed as it is made, while it is in the cache).
    pub fn build(
        queues: Vec<QueueDef>,
        reasons: Vec<ReasonDef>,
        defs: impl IntoIterator<Item = AgentDef>,
    ) -> Self {
        let defs = defs.into_iter();
        let queue_ix: HashMap<QueueId, usize> = queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.number.clone(), i))
            .collect();
        let mut members = vec![Vec::new(); queues.len()];
        let mut agents = Vec::with_capacity(defs.size_hint().0);
        let mut agent_ix = HashMap::with_capacity(defs.size_hint().0);
        for def in defs {
            let ai = agents.len();
            let slots: Vec<usize> = def
                .queues
                .iter()
                .filter_map(|q| queue_ix.get(q.as_str()).copied())
                .collect();
            for (slot, &qi) in slots.iter().enumerate() {
                members[qi].push((ai, slot));
            }
            agent_ix.insert(def.extension.clone(), ai);
            let def = AgentDef {
                queues: Vec::new(),
                ..def
            };
            agents.push(Agent {
                cells: vec![Cell::logged_out(0); slots.len()],
                skills: vec![DEFAULT_SKILL; slots.len()],
                slots,
                calls: Vec::new(),
                def,
                custom: false,
            });
        }
        Self {
            queues,
            queue_ix,
            members,
            agents,
            agent_ix,
            reasons,
            timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
        }
    }

    /// True if `ext` is a configured agent.
    pub fn has_agent(&self, ext: &str) -> bool {
        self.agent_ix.contains_key(ext)
    }

    /// The configured queues, in configuration order.
    pub fn queue_defs(&self) -> &[QueueDef] {
        &self.queues
    }

    /// Every agent's extension and display name, in configuration order.
    pub fn agent_names(&self) -> impl Iterator<Item = (&AgentId, &str)> + '_ {
        self.agents
            .iter()
            .map(|a| (&a.def.extension, a.def.name.as_str()))
    }

    /// Applies `cmd` completely, or refuses it and changes nothing.
    pub fn apply(&mut self, now: Millis, cmd: Command, cause: Cause) -> Result<Applied, Rejection> {
        let ai = *self
            .agent_ix
            .get(cmd.agent())
            .ok_or(Rejection::UnknownAgent)?;
        if let Command::Join { .. } | Command::Leave { .. } = &cmd {
            return self.apply_membership(ai, now, cmd, cause);
        }
        let agent = &self.agents[ai];
        let mut cells = agent.cells.clone();
        let mut calls = agent.calls.clone();
        let on_call = !calls.is_empty();
        let slots = match &cmd {
            Command::Login { target, .. }
            | Command::Logout { target, .. }
            | Command::Ready { target, .. }
            | Command::NotReady { target, .. }
            | Command::WrapUp { target, .. } => self.slots(ai, target)?,
            Command::CallStart { .. } | Command::CallEnd { .. } => (0..cells.len()).collect(),
            Command::Join { .. } | Command::Leave { .. } => return Err(Rejection::UnknownAgent),
        };
        match &cmd {
            Command::Login { .. } => {
                for &s in &slots {
                    let q = self.queue(ai, s);
                    let cell = &mut cells[s];
                    match cell.state {
                        AgentState::LoggedOut => enter(cell, auto(q), on_call, q, now),
                        st if st.on_call() && pending_is(cell, AgentState::LoggedOut) => {
                            cell.pending = None
                        }
                        _ => {}
                    }
                }
            }
            Command::Logout { .. } => {
                for &s in &slots {
                    let q = self.queue(ai, s);
                    let cell = &mut cells[s];
                    match cell.state {
                        AgentState::LoggedOut => {}
                        st if st.on_call() => {
                            cell.pending = Some(Wanted::plain(AgentState::LoggedOut))
                        }
                        _ => enter(cell, Wanted::plain(AgentState::LoggedOut), on_call, q, now),
                    }
                }
            }
            Command::Ready { target, .. } => {
                let want = Wanted::plain(AgentState::Ready);
                self.for_logged_in(ai, &slots, target, &mut cells, |cell, q| match cell.state {
                    AgentState::NotReady | AgentState::WrapUp => {
                        enter(cell, want.clone(), on_call, q, now)
                    }
                    st if st.on_call() => cell.pending = Some(want.clone()),
                    _ => {}
                })?;
            }
            Command::NotReady { target, reason, .. } => {
                let reason = match reason {
                    None => None,
                    Some(r) => Some(self.reason(r).ok_or(Rejection::UnknownReason)?),
                };
                let want = Wanted {
                    state: AgentState::NotReady,
                    reason,
                };
                self.for_logged_in(ai, &slots, target, &mut cells, |cell, q| match cell.state {
                    AgentState::Ready | AgentState::WrapUp => {
                        enter(cell, want.clone(), on_call, q, now)
                    }
                    AgentState::NotReady if cell.reason != want.reason => {
                        enter(cell, want.clone(), on_call, q, now)
                    }
                    st if st.on_call() => cell.pending = Some(want.clone()),
                    _ => {}
                })?;
            }
            Command::WrapUp { target, .. } => {
                let want = Wanted::plain(AgentState::WrapUp);
                self.for_logged_in(ai, &slots, target, &mut cells, |cell, q| match cell.state {
                    AgentState::Ready | AgentState::NotReady => {
                        enter(cell, want.clone(), on_call, q, now)
                    }
                    st if st.on_call() => cell.pending = Some(want.clone()),
                    _ => {}
                })?;
            }
            Command::CallStart { call_id, kind, .. } => {
                if calls.iter().any(|c| &c.call_id == call_id) {
                    return Err(Rejection::DuplicateCall);
                }
                let acd_slot = match kind {
                    CallKind::Acd { queue } => {
                        let s = self.slot(ai, queue)?;
                        if cells[s].state != AgentState::Ready {
                            return Err(Rejection::NotReadyInQueue);
                        }
                        Some(s)
                    }
                    CallKind::Other => None,
                };
                for (s, cell) in cells.iter_mut().enumerate() {
                    if cell.state != AgentState::Ready {
                        continue;
                    }
                    cell.before_call = Some(Wanted::plain(AgentState::Ready));
                    cell.state = if Some(s) == acd_slot {
                        AgentState::QueueCall
                    } else {
                        AgentState::OtherCall
                    };
                }
                calls.push(Call {
                    call_id: call_id.clone(),
                    kind: kind.clone(),
                });
            }
            Command::CallEnd { call_id, .. } => {
                let i = calls
                    .iter()
                    .position(|c| &c.call_id == call_id)
                    .ok_or(Rejection::UnknownCall)?;
                let call = calls.remove(i);
                let still_on_call = !calls.is_empty();
                if let CallKind::Acd { queue } = &call.kind {
                    if let Ok(s) = self.slot(ai, queue) {
                        if cells[s].state == AgentState::QueueCall {
                            let q = self.queue(ai, s);
                            end_queue_call(&mut cells[s], q, still_on_call, now);
                        }
                    }
                }
                if !still_on_call {
                    for (s, cell) in cells.iter_mut().enumerate() {
                        if cell.state == AgentState::OtherCall {
                            let q = self.queue(ai, s);
                            let want = match cell.pending.take() {
                                Some(p) => p,
                                None if q.not_ready_after_other_call => {
                                    Wanted::plain(AgentState::NotReady)
                                }
                                None => cell.before_call.take().unwrap_or_else(|| auto(q)),
                            };
                            enter(cell, want, false, q, now);
                        }
                    }
                }
            }
            Command::Join { .. } | Command::Leave { .. } => {}
        }
        let events = self.commit(ai, cells, calls, now, cause);
        let agent = &self.agents[ai];
        let affected = slots
            .iter()
            .map(|&s| QueueStatus {
                queue: self.queues[agent.slots[s]].number.clone(),
                state: agent.cells[s].state,
                reason: agent.cells[s].reason.clone(),
                pending: agent.cells[s].pending.as_ref().map(|p| p.state),
            })
            .collect();
        Ok(Applied { events, affected })
    }

    /// Ends every wrap-up whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Millis) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(&(when, ai, s)) = self.timers.first() {
            if when > now {
                break;
            }
            self.timers.pop_first();
            events.extend(self.expire(when, ai, s));
        }
        events
    }

    /// Ends the wrap-ups of one agent whose deadline is at or before `now`
    /// (a shared store: the node that claimed the deadline fires it).
    pub fn handle_timeout_of(&mut self, now: Millis, ext: &str) -> Vec<Event> {
        let Some(&ai) = self.agent_ix.get(ext) else {
            return Vec::new();
        };
        let due: Vec<(Millis, usize, usize)> = self
            .timers
            .iter()
            .take_while(|t| t.0 <= now)
            .filter(|t| t.1 == ai)
            .copied()
            .collect();
        let mut events = Vec::new();
        for t in due {
            self.timers.remove(&t);
            events.extend(self.expire(t.0, t.1, t.2));
        }
        events
    }

    /// One wrap-up deadline `when` of agent `ai` in slot `s` has passed.
    fn expire(&mut self, when: Millis, ai: usize, s: usize) -> Vec<Event> {
        let agent = &self.agents[ai];
        let cell = &agent.cells[s];
        if cell.state != AgentState::WrapUp || cell.wrap_up_until != Some(when) {
            return Vec::new();
        }
        let on_call = !agent.calls.is_empty();
        let mut cells = agent.cells.clone();
        let calls = agent.calls.clone();
        let q = self.queue(ai, s);
        let want = cells[s].pending.take().unwrap_or_else(|| auto(q));
        enter(&mut cells[s], want, on_call, q, when);
        self.commit(ai, cells, calls, when, Cause::Timer)
    }

    /// The earliest wrap-up deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.timers.first().map(|t| t.0)
    }

    /// The configured code of the not-ready reason `name` (phones show
    /// reasons by code).
    pub fn reason_code(&self, name: &str) -> Option<u32> {
        self.reasons.iter().find(|d| d.name == name).map(|d| d.code)
    }

    /// True if `code` is a configured not-ready reason (a BLF key on
    /// `*37*<code>` names one).
    pub fn has_reason_code(&self, code: u32) -> bool {
        self.reasons.iter().any(|d| d.code == code)
    }

    /// True if `number` is a configured queue.
    pub fn has_queue(&self, number: &str) -> bool {
        self.queue_ix.contains_key(number)
    }

    /// An agent's state in each of its queues.
    pub fn agent(&self, ext: &str) -> Option<AgentView> {
        let ai = *self.agent_ix.get(ext)?;
        let a = &self.agents[ai];
        Some(AgentView {
            extension: a.def.extension.clone(),
            name: a.def.name.clone(),
            queues: (0..a.cells.len()).map(|s| self.view(ai, s)).collect(),
        })
    }

    /// Every member of `queue` with its state there.
    pub fn queue_agents(&self, queue: &str) -> Option<Vec<(AgentId, String, QueueView)>> {
        let qi = *self.queue_ix.get(queue)?;
        Some(
            self.members[qi]
                .iter()
                .map(|&(ai, s)| {
                    let a = &self.agents[ai];
                    (
                        a.def.extension.clone(),
                        a.def.name.clone(),
                        self.view(ai, s),
                    )
                })
                .collect(),
        )
    }

    /// The READY agents of `queue`, longest idle (READY longest) first.
    pub fn ready_agents(&self, queue: &str) -> Option<Vec<AgentId>> {
        let qi = *self.queue_ix.get(queue)?;
        let mut ready: Vec<(Millis, &AgentId)> = self.members[qi]
            .iter()
            .map(|&(ai, s)| (&self.agents[ai], s))
            .filter(|(a, s)| a.cells[*s].state == AgentState::Ready)
            .map(|(a, s)| (a.cells[s].since, &a.def.extension))
            .collect();
        ready.sort();
        Some(ready.into_iter().map(|(_, e)| e.clone()).collect())
    }

    /// The records changed since the last call, for the journal.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let dirty = std::mem::take(&mut self.dirty);
        // A membership list comes before the cells it creates.
        let (members, rest): (Vec<_>, Vec<_>) =
            dirty.into_iter().partition(|&(_, s)| s == MEMBERSHIP);
        members
            .into_iter()
            .chain(rest)
            .map(|(ai, s)| self.record(ai, s))
            .collect()
    }

    /// The records that undo `cmd` if its journal write fails: the agent's
    /// records, and its membership list when `cmd` changes it.
    pub fn undo_record(&self, cmd: &Command) -> Vec<Change> {
        let mut out = Vec::new();
        if let (Command::Join { .. } | Command::Leave { .. }, Some(&ai)) =
            (cmd, self.agent_ix.get(cmd.agent()))
        {
            out.push(self.record(ai, MEMBERSHIP));
        }
        out.extend(self.export_agent(cmd.agent()));
        out
    }

    /// Everything that differs from the initial state, as changes (a snapshot).
    pub fn export(&self) -> Vec<Change> {
        (0..self.agents.len())
            .flat_map(|ai| self.export_index(ai))
            .collect()
    }

    /// One agent's records (all of them), e.g. to undo a failed commit.
    pub fn export_agent(&self, ext: &str) -> Vec<Change> {
        let Some(&ai) = self.agent_ix.get(ext) else {
            return Vec::new();
        };
        let a = &self.agents[ai];
        (0..a.cells.len() as u32)
            .chain([CALLS])
            .map(|s| self.record(ai, s))
            .collect()
    }

    fn export_index(&self, ai: usize) -> Vec<Change> {
        let a = &self.agents[ai];
        let mut out: Vec<Change> = Vec::new();
        if a.custom {
            out.push(self.record(ai, MEMBERSHIP));
        }
        out.extend(
            a.cells
                .iter()
                .enumerate()
                .filter(|(_, c)| **c != Cell::logged_out(0))
                .map(|(s, _)| self.record(ai, s as u32)),
        );
        if !a.calls.is_empty() {
            out.push(self.record(ai, CALLS));
        }
        out
    }

    /// Replays one stored record. Records for agents, queues or memberships
    /// no longer configured are skipped and reported.
    pub fn restore(&mut self, change: Change) -> Result<(), RestoreSkip> {
        match change {
            Change::Cell { agent, queue, cell } => {
                let ai = *self
                    .agent_ix
                    .get(&agent)
                    .ok_or_else(|| RestoreSkip::UnknownAgent(agent.clone()))?;
                let qi = *self
                    .queue_ix
                    .get(&queue)
                    .ok_or_else(|| RestoreSkip::UnknownQueue {
                        agent: agent.clone(),
                        queue: queue.clone(),
                    })?;
                let s = self.agents[ai]
                    .slots
                    .iter()
                    .position(|&x| x == qi)
                    .ok_or(RestoreSkip::NotAMember { agent, queue })?;
                let old = std::mem::replace(&mut self.agents[ai].cells[s], cell);
                self.retime(ai, s, &old);
                Ok(())
            }
            Change::Calls { agent, calls } => {
                let ai = *self
                    .agent_ix
                    .get(&agent)
                    .ok_or(RestoreSkip::UnknownAgent(agent))?;
                self.agents[ai].calls = calls;
                Ok(())
            }
            Change::Membership { agent, queues } => {
                let ai = *self
                    .agent_ix
                    .get(&agent)
                    .ok_or_else(|| RestoreSkip::UnknownAgent(agent.clone()))?;
                let mut unknown = None;
                let mut new = Vec::with_capacity(queues.len());
                for m in queues {
                    match self.queue_ix.get(&m.queue) {
                        Some(&qi) if !new.iter().any(|&(x, _)| x == qi) => {
                            new.push((qi, m.skill_level))
                        }
                        Some(_) => {}
                        None => unknown = Some(m.queue),
                    }
                }
                self.set_membership(ai, new, 0);
                match unknown {
                    Some(queue) => Err(RestoreSkip::UnknownQueue { agent, queue }),
                    None => Ok(()),
                }
            }
        }
    }

    /// `Join` / `Leave`: one agent's membership of one queue.
    fn apply_membership(
        &mut self,
        ai: usize,
        now: Millis,
        cmd: Command,
        cause: Cause,
    ) -> Result<Applied, Rejection> {
        let (queue, skill) = match &cmd {
            Command::Join {
                queue, skill_level, ..
            } => (queue, Some(*skill_level)),
            Command::Leave { queue, .. } => (queue, None),
            _ => return Err(Rejection::UnknownAgent),
        };
        let qi = *self.queue_ix.get(queue).ok_or(Rejection::UnknownQueue)?;
        let a = &self.agents[ai];
        let at = a.slots.iter().position(|&x| x == qi);
        let mut new: Vec<(usize, u32)> = a
            .slots
            .iter()
            .copied()
            .zip(a.skills.iter().copied())
            .collect();
        let mut events = Vec::new();
        let number = self.queues[qi].number.clone();
        let event = |from: AgentState, removed: bool| Event {
            agent: a.def.extension.clone(),
            queue: number.clone(),
            from,
            to: AgentState::LoggedOut,
            reason: None,
            pending: None,
            cause,
            at: now,
            removed,
        };
        match (skill, at) {
            (Some(skill), Some(s)) if new[s].1 == skill => {}
            (Some(skill), Some(s)) => new[s].1 = skill,
            (Some(skill), None) => {
                new.push((qi, skill));
                events.push(event(AgentState::LoggedOut, false));
            }
            (None, Some(s)) => {
                events.push(event(a.cells[s].state, true));
                new.remove(s);
            }
            (None, None) => return Err(Rejection::NotAMember),
        }
        let changed =
            new.len() != a.slots.len() || new.iter().zip(&a.skills).any(|(n, k)| n.1 != *k);
        let mut affected = Vec::new();
        if changed {
            self.set_membership(ai, new, now);
            self.dirty.insert((ai, MEMBERSHIP));
            // A new member's cell is recorded too (its `since`).
            if let (Some(s), None) = (self.agents[ai].slots.iter().position(|&x| x == qi), at) {
                self.dirty.insert((ai, s as u32));
            }
        }
        let a = &self.agents[ai];
        match a.slots.iter().position(|&x| x == qi) {
            Some(s) => affected.push(QueueStatus {
                queue: number,
                state: a.cells[s].state,
                reason: a.cells[s].reason.clone(),
                pending: a.cells[s].pending.as_ref().map(|p| p.state),
            }),
            None => affected.push(QueueStatus {
                queue: number,
                state: AgentState::LoggedOut,
                reason: None,
                pending: None,
            }),
        }
        Ok(Applied { events, affected })
    }

    /// Replaces agent `ai`'s memberships by `new` (queue index, skill),
    /// keeping the cells of the queues it stays in (new ones start
    /// LOGGED_OUT at `now`), and the queue member lists and timers in step.
    fn set_membership(&mut self, ai: usize, new: Vec<(usize, u32)>, now: Millis) {
        let a = &mut self.agents[ai];
        let old_slots = std::mem::take(&mut a.slots);
        let old_cells = std::mem::take(&mut a.cells);
        a.skills.clear();
        a.custom = true;
        for (s, c) in old_cells.iter().enumerate() {
            if let Some(t) = c.wrap_up_until {
                self.timers.remove(&(t, ai, s));
            }
        }
        for &qi in &old_slots {
            if !new.iter().any(|&(x, _)| x == qi) {
                self.members[qi].retain(|&(x, _)| x != ai);
            }
        }
        // Dirty slot numbers of this agent no longer mean the same cells.
        self.dirty
            .retain(|&(x, s)| x != ai || s == CALLS || s == MEMBERSHIP);
        for (s, &(qi, skill)) in new.iter().enumerate() {
            let cell = match old_slots.iter().position(|&x| x == qi) {
                Some(i) => old_cells[i].clone(),
                None => Cell::logged_out(now),
            };
            if let Some(t) = cell.wrap_up_until {
                self.timers.insert((t, ai, s));
            }
            match self.members[qi].iter_mut().find(|(x, _)| *x == ai) {
                Some(entry) => entry.1 = s,
                None => self.members[qi].push((ai, s)),
            }
            let a = &mut self.agents[ai];
            a.slots.push(qi);
            a.skills.push(skill);
            a.cells.push(cell);
        }
    }

    fn record(&self, ai: usize, s: u32) -> Change {
        let a = &self.agents[ai];
        if s == CALLS {
            Change::Calls {
                agent: a.def.extension.clone(),
                calls: a.calls.clone(),
            }
        } else if s == MEMBERSHIP {
            Change::Membership {
                agent: a.def.extension.clone(),
                queues: a
                    .slots
                    .iter()
                    .zip(&a.skills)
                    .map(|(&qi, &skill_level)| Member {
                        queue: self.queues[qi].number.clone(),
                        skill_level,
                    })
                    .collect(),
            }
        } else {
            let s = s as usize;
            Change::Cell {
                agent: a.def.extension.clone(),
                queue: self.queues[a.slots[s]].number.clone(),
                cell: a.cells[s].clone(),
            }
        }
    }

    fn view(&self, ai: usize, s: usize) -> QueueView {
        let a = &self.agents[ai];
        let c = &a.cells[s];
        QueueView {
            queue: self.queues[a.slots[s]].number.clone(),
            state: c.state,
            reason: c.reason.clone(),
            pending: c.pending.as_ref().map(|p| p.state),
            since: c.since,
            skill_level: a.skills[s],
        }
    }

    fn queue(&self, ai: usize, s: usize) -> &QueueDef {
        &self.queues[self.agents[ai].slots[s]]
    }

    fn slot(&self, ai: usize, queue: &str) -> Result<usize, Rejection> {
        let qi = *self.queue_ix.get(queue).ok_or(Rejection::UnknownQueue)?;
        self.agents[ai]
            .slots
            .iter()
            .position(|&x| x == qi)
            .ok_or(Rejection::NotAMember)
    }

    fn slots(&self, ai: usize, target: &Target) -> Result<Vec<usize>, Rejection> {
        match target {
            Target::All if self.agents[ai].slots.is_empty() => Err(Rejection::NotAMember),
            Target::All => Ok((0..self.agents[ai].slots.len()).collect()),
            Target::Queue(q) => Ok(vec![self.slot(ai, q)?]),
        }
    }

    fn reason(&self, r: &ReasonRef) -> Option<ReasonName> {
        self.reasons
            .iter()
            .find(|d| match r {
                ReasonRef::Code(c) => d.code == *c,
                ReasonRef::Name(n) => d.name.eq_ignore_ascii_case(n),
            })
            .map(|d| d.name.clone())
    }

    /// Applies `f` to the targeted cells where the agent is logged in. One
    /// queue: LOGGED_OUT there is refused; all queues: refused only if the
    /// agent is logged in nowhere (SPEC §2).
    fn for_logged_in(
        &self,
        ai: usize,
        slots: &[usize],
        target: &Target,
        cells: &mut [Cell],
        mut f: impl FnMut(&mut Cell, &QueueDef),
    ) -> Result<(), Rejection> {
        let live: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| cells[s].state != AgentState::LoggedOut)
            .collect();
        if live.is_empty() || (matches!(target, Target::Queue(_)) && live.len() != slots.len()) {
            return Err(Rejection::NotLoggedIn);
        }
        for s in live {
            f(&mut cells[s], self.queue(ai, s));
        }
        Ok(())
    }

    /// Stores the new cells and calls of agent `ai`; returns one event per
    /// cell whose state, reason or pending state changed.
    fn commit(
        &mut self,
        ai: usize,
        mut cells: Vec<Cell>,
        calls: Vec<Call>,
        now: Millis,
        cause: Cause,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for (s, new) in cells.iter_mut().enumerate() {
            let old = &self.agents[ai].cells[s];
            new.since = if old.state == new.state {
                old.since
            } else {
                now
            };
            if old == new {
                continue;
            }
            let old = std::mem::replace(&mut self.agents[ai].cells[s], new.clone());
            self.retime(ai, s, &old);
            self.dirty.insert((ai, s as u32));
            let a = &self.agents[ai];
            events.push(Event {
                agent: a.def.extension.clone(),
                queue: self.queues[a.slots[s]].number.clone(),
                from: old.state,
                to: new.state,
                reason: new.reason.clone(),
                pending: new.pending.as_ref().map(|p| p.state),
                cause,
                at: now,
                removed: false,
            });
        }
        if self.agents[ai].calls != calls {
            self.agents[ai].calls = calls;
            self.dirty.insert((ai, CALLS));
        }
        events
    }

    /// Keeps the timer set in step with a cell's wrap-up deadline.
    fn retime(&mut self, ai: usize, s: usize, old: &Cell) {
        if let Some(t) = old.wrap_up_until {
            self.timers.remove(&(t, ai, s));
        }
        if let Some(t) = self.agents[ai].cells[s].wrap_up_until {
            self.timers.insert((t, ai, s));
        }
    }
}

/// READY or NOT_READY by the queue's auto_ready.
fn auto(q: &QueueDef) -> Wanted {
    Wanted::plain(if q.auto_ready {
        AgentState::Ready
    } else {
        AgentState::NotReady
    })
}

fn pending_is(cell: &Cell, state: AgentState) -> bool {
    cell.pending.as_ref().is_some_and(|p| p.state == state)
}

/// Puts a cell in the wanted state, clearing what belonged to the old one.
fn enter(cell: &mut Cell, want: Wanted, on_call: bool, q: &QueueDef, now: Millis) {
    cell.pending = None;
    cell.before_call = None;
    cell.wrap_up_until = None;
    cell.reason = None;
    match want.state {
        AgentState::Ready if on_call => {
            cell.state = AgentState::OtherCall;
            cell.before_call = Some(Wanted::plain(AgentState::Ready));
        }
        AgentState::WrapUp => {
            cell.state = AgentState::WrapUp;
            cell.wrap_up_until = (q.wrap_up_secs > 0).then(|| now + q.wrap_up_secs * 1000);
        }
        AgentState::NotReady => {
            cell.state = AgentState::NotReady;
            cell.reason = want.reason;
        }
        other => cell.state = other,
    }
}

/// QUEUE_CALL ends (SPEC §2): a pending logout applies at once; otherwise
/// wrap-up if the queue has one (a pending change waits for its end), else
/// the pending change or READY/NOT_READY by auto_ready.
fn end_queue_call(cell: &mut Cell, q: &QueueDef, on_call: bool, now: Millis) {
    let pending = cell.pending.take();
    match pending {
        Some(p) if p.state == AgentState::LoggedOut => enter(cell, p, on_call, q, now),
        p if q.wrap_up_secs > 0 => {
            enter(cell, Wanted::plain(AgentState::WrapUp), on_call, q, now);
            cell.pending = p.filter(|p| p.state != AgentState::WrapUp);
        }
        Some(p) => enter(cell, p, on_call, q, now),
        None => enter(cell, auto(q), on_call, q, now),
    }
}

#[cfg(test)]
mod tests;
