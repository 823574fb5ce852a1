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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::{
        AgentDef, AgentState, CallKind, Cause, Command, Engine, Model, QueueDef, Target,
    };
    use crate::sip::star_code::{Codes, StarCodeParser};
    use crate::transaction::TimerConfig;
    use crate::uas::subscription::ExpiryBounds;
    use crate::uas::{ApplyError, JournalOrder, UasConfig};

    const WALL0: u64 = 1_800_000_000_000;

    fn engine() -> Engine {
        Engine::new(Model {
            queues: vec![QueueDef {
                number: "8002".into(),
                name: "Billing".into(),
                auto_ready: true,
                wrap_up_secs: 2,
                not_ready_after_other_call: false,
            }],
            agents: ["1001", "1002"]
                .iter()
                .map(|a| AgentDef {
                    extension: (*a).into(),
                    name: format!("Agent {a}"),
                    queues: vec!["8002".into()],
                })
                .collect(),
            reasons: Vec::new(),
        })
    }

    fn shared_uas() -> Uas<u32, u32> {
        let cfg = UasConfig {
            domain: "facd.test".into(),
            confirm: Duration::from_millis(1000),
            timers: TimerConfig::default(),
            rtp_v4: None,
            rtp_v6: None,
            max_transactions: 100,
            max_dialogs: 10,
            subscribe: ExpiryBounds {
                min: 60,
                max: 3600,
                default: 600,
                per_agent: 4,
            },
            max_subscriptions: 10,
            journal: true,
            seed: 1,
        };
        let mut uas = Uas::new(cfg, engine(), StarCodeParser::new(Codes::default()), None);
        uas.set_shared_store(true);
        uas
    }

    fn at(start: Instant, ms: u64) -> Now {
        Now {
            mono: start + Duration::from_millis(ms),
            wall: WALL0 + ms,
        }
    }

    fn login(agent: &str) -> Command {
        Command::Login {
            agent: agent.into(),
            target: Target::All,
        }
    }

    fn state(uas: &Uas<u32, u32>, agent: &str) -> AgentState {
        uas.engine().agent(agent).unwrap().queues[0].state
    }

    /// The next journal write: (ticket, record).
    fn append(uas: &mut Uas<u32, u32>) -> (u64, SharedRecord) {
        match uas.poll_journal() {
            Some(JournalOrder::Append { ticket, record }) => {
                (ticket, serde_json::from_slice(&record).unwrap())
            }
            other => panic!("expected an append, got {other:?}"),
        }
    }

    #[test]
    fn a_shared_record_carries_its_events_and_a_failure_undoes_only_its_agent() {
        let start = Instant::now();
        let mut uas = shared_uas();
        uas.apply_command(at(start, 0), login("1001"), Cause::Api, 1);
        uas.apply_command(at(start, 0), login("1002"), Cause::Api, 2);
        let (t1, r1) = append(&mut uas);
        let (t2, _) = append(&mut uas);
        assert_eq!(r1.events.len(), 1);
        assert_eq!(r1.events[0].to, AgentState::Ready);
        assert_eq!(change_agent(&r1.changes[0]).as_str(), "1001");
        // 1001's write conflicts: only 1001 is undone, no Reset is asked.
        uas.on_durable(at(start, 1), t1, Err("conflict"));
        let (w, outcome) = uas.poll_finished().unwrap();
        assert_eq!((w, outcome.unwrap_err()), (1, ApplyError::NotSaved));
        assert_eq!(state(&uas, "1001"), AgentState::LoggedOut);
        assert_eq!(state(&uas, "1002"), AgentState::Ready);
        assert!(uas.poll_journal().is_none());
        assert!(uas.poll_event().is_none(), "nothing published yet");
        uas.on_durable::<&str>(at(start, 2), t2, Ok(()));
        assert_eq!(uas.poll_finished().unwrap().0, 2);
        assert_eq!(uas.poll_event().unwrap().agent.as_str(), "1002");
    }

    #[test]
    fn a_wrap_up_ends_only_when_the_shell_says_it_was_claimed() {
        let start = Instant::now();
        let mut uas = shared_uas();
        let cmds = [
            login("1001"),
            Command::CallStart {
                agent: "1001".into(),
                call_id: "c1".into(),
                kind: CallKind::Acd {
                    queue: "8002".into(),
                },
            },
            Command::CallEnd {
                agent: "1001".into(),
                call_id: "c1".into(),
            },
        ];
        for (i, cmd) in cmds.into_iter().enumerate() {
            uas.apply_command(at(start, 0), cmd, Cause::Api, i as u32);
            let (t, _) = append(&mut uas);
            uas.on_durable::<&str>(at(start, 0), t, Ok(()));
        }
        assert_eq!(state(&uas, "1001"), AgentState::WrapUp);
        // Past the deadline the engine's own timer does nothing.
        assert!(uas.poll_timeout(at(start, 0)).is_none());
        uas.handle_timeout(at(start, 3000));
        assert_eq!(state(&uas, "1001"), AgentState::WrapUp);
        assert!(uas.poll_journal().is_none());
        // Claimed: ended as a change like any other, evented once durable.
        uas.expire_wrapup(at(start, 3000), "1002");
        assert!(uas.poll_journal().is_none(), "1002 has no wrap-up");
        while uas.poll_event().is_some() {}
        uas.expire_wrapup(at(start, 3000), "1001");
        let (t, rec) = append(&mut uas);
        assert_eq!(rec.events[0].cause, Cause::Timer);
        assert_eq!(state(&uas, "1001"), AgentState::Ready);
        assert!(uas.poll_event().is_none());
        uas.on_durable::<&str>(at(start, 3001), t, Ok(()));
        assert_eq!(uas.poll_event().unwrap().cause, Cause::Timer);
    }

    #[test]
    fn a_remote_change_is_restored_and_published_without_a_write() {
        let start = Instant::now();
        let mut other = engine();
        let applied = other.apply(WALL0, login("1002"), Cause::Fac).unwrap();
        let changes = other.take_changes();
        let mut uas = shared_uas();
        uas.apply_remote(at(start, 0), changes, applied.events);
        assert_eq!(state(&uas, "1002"), AgentState::Ready);
        let ev = uas.poll_event().unwrap();
        assert_eq!((ev.agent.as_str(), ev.cause), ("1002", Cause::Fac));
        assert!(uas.poll_journal().is_none());
    }
}
