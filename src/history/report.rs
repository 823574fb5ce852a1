//! Time in each state per agent × queue over a range, computed by folding
//! history records in file order. Pure: records in, totals out.
//!
//! The fold starts from the first checkpoint block it sees (the states at
//! the start of a day file; pairs not in a block are LOGGED_OUT). Each
//! change closes the current segment at its time and opens the next; the
//! segments of a pair tile the range, so its times add up to `to - from`
//! exactly. A later block (a restart) that disagrees with what the fold
//! holds means changes were lost in a crash before reaching the history:
//! the pair switches to the block's state at the state's `since` (or at the
//! last change, when later), which is the best the block tells.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::format::{Record, StateAt};
use crate::engine::{AgentId, AgentState, Event, Millis, QueueId, ReasonName};

/// The totals of one agent × queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Milliseconds in each state, in the order of [`AgentState::ALL`].
    pub state_ms: [Millis; 6],
    /// Milliseconds NOT_READY per reason (`""` = no reason).
    pub reason_ms: BTreeMap<String, Millis>,
    /// Logins (LOGGED_OUT to anything else).
    pub logins: u32,
    /// ACD calls (entering QUEUE_CALL).
    pub acd_calls: u32,
    /// Wrap-ups (entering WRAP_UP).
    pub wrap_ups: u32,
}

impl Totals {
    fn new() -> Self {
        Self::default()
    }

    /// Milliseconds in `state`.
    pub fn ms(&self, state: AgentState) -> Millis {
        self.state_ms[state_ix(state)]
    }

    /// The sum over states: the range's length.
    pub fn total_ms(&self) -> Millis {
        self.state_ms.iter().sum()
    }
}

fn state_ix(s: AgentState) -> usize {
    AgentState::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

struct Track {
    state: AgentState,
    reason: Option<ReasonName>,
    seg_start: Millis,
}

/// The fold. Feed it records in file order with [`Fold::push`], then
/// [`Fold::finish`].
pub struct Fold {
    from: Millis,
    to: Millis,
    wanted: HashMap<(AgentId, QueueId), Totals>,
    track: HashMap<(AgentId, QueueId), Track>,
    /// A block being read: its time, how many states remain, what it said.
    block: Option<(Millis, u32, Vec<StateAt>)>,
    /// Whether a first block has set the starting states.
    started: bool,
    last: Millis,
}

impl Fold {
    /// A fold over `[from, to)` for the pairs `wanted`.
    pub fn new(
        from: Millis,
        to: Millis,
        wanted: impl IntoIterator<Item = (AgentId, QueueId)>,
    ) -> Self {
        Self {
            from,
            to,
            wanted: wanted.into_iter().map(|k| (k, Totals::new())).collect(),
            track: HashMap::new(),
            block: None,
            started: false,
            last: 0,
        }
    }

    /// Whether records from here on cannot matter (past the range's end).
    pub fn done(&self) -> bool {
        self.last >= self.to && self.block.is_none()
    }

    /// One record.
    pub fn push(&mut self, r: &Record) {
        let t = r.at().max(self.last);
        match r {
            Record::Begin { count, .. } => {
                self.end_block();
                self.block = Some((t, *count, Vec::new()));
                self.end_block_if_full();
            }
            Record::State(s) => {
                if let Some((_, left, states)) = self.block.as_mut() {
                    if *left > 0 {
                        *left -= 1;
                        states.push(s.clone());
                    }
                }
                self.end_block_if_full();
            }
            Record::Change(ev) => {
                // A block cut short (a crash while writing it) says nothing.
                self.block = None;
                self.last = t;
                self.change(ev, t);
            }
        }
    }

    fn end_block_if_full(&mut self) {
        if matches!(self.block, Some((_, 0, _))) {
            self.end_block();
        }
    }

    fn end_block(&mut self) {
        let Some((at, left, states)) = self.block.take() else {
            return;
        };
        if left > 0 {
            return;
        }
        if !self.started {
            // The starting states: in force since before the file began.
            self.started = true;
            for s in states {
                self.track.insert(
                    (s.agent, s.queue),
                    Track {
                        state: s.state,
                        reason: s.reason,
                        seg_start: 0,
                    },
                );
            }
            self.last = self.last.max(at);
            return;
        }
        let mut seen: HashMap<(AgentId, QueueId), StateAt> = states
            .into_iter()
            .map(|s| ((s.agent.clone(), s.queue.clone()), s))
            .collect();
        let mut keys: Vec<(AgentId, QueueId)> = self.track.keys().cloned().collect();
        keys.extend(
            seen.keys()
                .filter(|k| !self.track.contains_key(*k))
                .cloned(),
        );
        for key in keys {
            let (state, reason, since) = match seen.remove(&key) {
                Some(s) => (s.state, s.reason, s.since),
                None => (AgentState::LoggedOut, None, at),
            };
            let (cur_state, cur_reason, seg_start) = match self.track.get(&key) {
                Some(tr) => (tr.state, tr.reason.clone(), tr.seg_start),
                None => (AgentState::LoggedOut, None, 0),
            };
            if cur_state != state || cur_reason != reason {
                let when = since.max(seg_start).min(at);
                self.switch(&key, state, reason, when);
            }
        }
        self.last = self.last.max(at);
    }

    fn change(&mut self, ev: &Event, t: Millis) {
        let key = (ev.agent.clone(), ev.queue.clone());
        let before = self
            .track
            .get(&key)
            .map_or(AgentState::LoggedOut, |tr| tr.state);
        let counted = (self.from..self.to).contains(&t);
        if counted && before != ev.to {
            if let Some(tot) = self.wanted.get_mut(&key) {
                if before == AgentState::LoggedOut {
                    tot.logins += 1;
                }
                if ev.to == AgentState::QueueCall {
                    tot.acd_calls += 1;
                }
                if ev.to == AgentState::WrapUp {
                    tot.wrap_ups += 1;
                }
            }
        }
        self.switch(&key, ev.to, ev.reason.clone(), t);
    }

    /// Closes the pair's segment at `t` and opens one in `state`.
    fn switch(
        &mut self,
        key: &(AgentId, QueueId),
        state: AgentState,
        reason: Option<ReasonName>,
        t: Millis,
    ) {
        let (old, old_reason, start) = match self.track.get(key) {
            Some(tr) => (tr.state, tr.reason.clone(), tr.seg_start),
            None => (AgentState::LoggedOut, None, 0),
        };
        if old == state && old_reason == reason {
            return;
        }
        self.account(key, old, old_reason.as_deref(), start, t);
        self.track.insert(
            key.clone(),
            Track {
                state,
                reason,
                seg_start: t,
            },
        );
    }

    fn account(
        &mut self,
        key: &(AgentId, QueueId),
        state: AgentState,
        reason: Option<&str>,
        start: Millis,
        end: Millis,
    ) {
        let (a, b) = (start.max(self.from), end.min(self.to));
        if b <= a {
            return;
        }
        if let Some(tot) = self.wanted.get_mut(key) {
            tot.state_ms[state_ix(state)] += b - a;
            if state == AgentState::NotReady {
                *tot.reason_ms
                    .entry(reason.unwrap_or("").to_string())
                    .or_default() += b - a;
            }
        }
    }

    /// Closes every open segment at the range's end and returns the totals.
    pub fn finish(mut self) -> HashMap<(AgentId, QueueId), Totals> {
        self.end_block();
        let keys: Vec<(AgentId, QueueId)> = self.wanted.keys().cloned().collect();
        for key in keys {
            let (state, reason, start) = match self.track.get(&key) {
                Some(tr) => (tr.state, tr.reason.clone(), tr.seg_start),
                None => (AgentState::LoggedOut, None, 0),
            };
            self.account(&key, state, reason.as_deref(), start, self.to);
        }
        self.wanted
    }
}
