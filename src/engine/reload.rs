//! A new configuration for a running engine (a reload without restart):
//! the model is replaced and every agent keeps its state wherever it keeps
//! the membership. A membership that is gone, or an agent that is gone, is
//! logged out of it: one event per queue where it was not already
//! LOGGED_OUT, with [`Cause::Config`]. New agents and memberships start
//! LOGGED_OUT (SPEC §1). Wrap-up deadlines and calls in progress carry
//! over; queue options (auto_ready, wrap-up length) apply from the next
//! transition on.

use super::{AgentState, Cause, Change, Engine, Event, Millis, Model};

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// An agent logged out of a queue it no longer belongs to.
    pub events: Vec<Event>,
    /// Agents added and removed.
    pub agents_added: usize,
    /// See `agents_added`.
    pub agents_removed: usize,
    /// Memberships (agent × queue) added and removed.
    pub memberships_added: usize,
    /// See `memberships_added`.
    pub memberships_removed: usize,
}

impl Engine {
    /// Replaces the model (see the module documentation). `now` stamps the
    /// logout events.
    pub fn reload(&mut self, model: Model, now: Millis) -> Reloaded {
        let old = std::mem::replace(self, Self::new(model));
        let mut out = Reloaded::default();
        for a in &old.agents {
            let ext = &a.def.extension;
            let kept = self.agent_ix.contains_key(ext);
            if !kept {
                out.agents_removed += 1;
            }
            for (s, cell) in a.cells.iter().enumerate() {
                let queue = old.queues[a.slots[s]].number.clone();
                let change = Change::Cell {
                    agent: ext.clone(),
                    queue: queue.clone(),
                    cell: cell.clone(),
                };
                if kept && self.restore(change).is_ok() {
                    continue;
                }
                out.memberships_removed += 1;
                if cell.state != AgentState::LoggedOut {
                    out.events.push(Event {
                        agent: ext.clone(),
                        queue,
                        from: cell.state,
                        to: AgentState::LoggedOut,
                        reason: None,
                        pending: None,
                        cause: Cause::Config,
                        at: now,
                        // The reload took the agent out of the queue.
                        removed: true,
                    });
                }
            }
            if kept && !a.calls.is_empty() {
                let calls = Change::Calls {
                    agent: ext.clone(),
                    calls: a.calls.clone(),
                };
                let _ = self.restore(calls);
            }
        }
        let kept_memberships =
            old.agents.iter().map(|a| a.cells.len()).sum::<usize>() - out.memberships_removed;
        let total: usize = self.agents.iter().map(|a| a.cells.len()).sum();
        out.memberships_added = total - kept_memberships;
        out.agents_added = self.agents.len() - (old.agents.len() - out.agents_removed);
        // What was restored is the state already durable: nothing to journal.
        self.dirty.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AgentDef, CallKind, Command, QueueDef, ReasonDef, Target};
    use super::*;

    const T0: Millis = 1_000_000;

    fn queue(n: &str, wrap_up_secs: u64) -> QueueDef {
        QueueDef {
            number: n.into(),
            name: n.into(),
            auto_ready: true,
            wrap_up_secs,
            not_ready_after_other_call: false,
        }
    }

    fn agent(e: &str, qs: &[&str]) -> AgentDef {
        AgentDef {
            extension: e.into(),
            name: e.into(),
            queues: qs.iter().map(|q| (*q).into()).collect(),
        }
    }

    fn model(agents: Vec<AgentDef>) -> Model {
        Model {
            queues: vec![queue("8000", 30), queue("8001", 0)],
            agents,
            reasons: vec![ReasonDef {
                code: 1,
                name: "BREAK".into(),
            }],
        }
    }

    fn login(e: &mut Engine, agent: &str) {
        let cmd = Command::Login {
            agent: agent.into(),
            target: Target::All,
        };
        e.apply(T0, cmd, Cause::Api).unwrap();
    }

    fn states(e: &Engine, agent: &str) -> Vec<(String, AgentState)> {
        e.agent(agent)
            .map(|v| {
                v.queues
                    .iter()
                    .map(|q| (q.queue.as_str().to_string(), q.state))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn states_are_kept_and_new_agents_start_logged_out() {
        let mut e = Engine::new(model(vec![agent("a", &["8000", "8001"])]));
        login(&mut e, "a");
        let before = e.agent("a").unwrap();
        let r = e.reload(
            model(vec![agent("a", &["8000", "8001"]), agent("b", &["8000"])]),
            T0 + 5,
        );
        assert!(r.events.is_empty());
        assert_eq!((r.agents_added, r.agents_removed), (1, 0));
        assert_eq!((r.memberships_added, r.memberships_removed), (1, 0));
        assert_eq!(e.agent("a").unwrap(), before, "state and since kept");
        assert_eq!(states(&e, "b"), [("8000".into(), AgentState::LoggedOut)]);
        login(&mut e, "b");
        assert_eq!(states(&e, "b"), [("8000".into(), AgentState::Ready)]);
        assert!(e.take_changes().len() == 1, "only b's login is journaled");
    }

    #[test]
    fn a_removed_membership_and_a_removed_agent_are_logged_out() {
        let mut e = Engine::new(model(vec![
            agent("a", &["8000", "8001"]),
            agent("b", &["8000"]),
            agent("c", &["8001"]),
        ]));
        login(&mut e, "a");
        login(&mut e, "b");
        let r = e.reload(
            model(vec![agent("a", &["8001"]), agent("c", &["8001"])]),
            T0 + 9,
        );
        let ev: Vec<(&str, &str, AgentState, Cause, Millis)> = r
            .events
            .iter()
            .map(|v| (v.agent.as_str(), v.queue.as_str(), v.from, v.cause, v.at))
            .collect();
        assert_eq!(
            ev,
            [
                ("a", "8000", AgentState::Ready, Cause::Config, T0 + 9),
                ("b", "8000", AgentState::Ready, Cause::Config, T0 + 9),
            ]
        );
        assert!(r.events.iter().all(|v| v.to == AgentState::LoggedOut));
        assert_eq!((r.agents_added, r.agents_removed), (0, 1));
        assert_eq!((r.memberships_added, r.memberships_removed), (0, 2));
        assert_eq!(states(&e, "a"), [("8001".into(), AgentState::Ready)]);
        assert!(e.agent("b").is_none());
        // c was logged out and stays so; no event for it.
        assert_eq!(states(&e, "c"), [("8001".into(), AgentState::LoggedOut)]);
    }

    #[test]
    fn wrap_up_deadlines_and_calls_carry_over() {
        let mut e = Engine::new(model(vec![agent("a", &["8000"]), agent("b", &["8000"])]));
        login(&mut e, "a");
        login(&mut e, "b");
        let start = |agent: &str, id: &str| Command::CallStart {
            agent: agent.into(),
            call_id: id.into(),
            kind: CallKind::Acd {
                queue: "8000".into(),
            },
        };
        e.apply(T0, start("a", "c1"), Cause::Call).unwrap();
        e.apply(T0, start("b", "c2"), Cause::Call).unwrap();
        let end = |agent: &str, id: &str| Command::CallEnd {
            agent: agent.into(),
            call_id: id.into(),
        };
        e.apply(T0 + 1000, end("a", "c1"), Cause::Call).unwrap();
        assert_eq!(states(&e, "a"), [("8000".into(), AgentState::WrapUp)]);
        let deadline = e.next_deadline();
        e.reload(
            model(vec![agent("a", &["8000"]), agent("b", &["8000"])]),
            T0 + 2000,
        );
        assert_eq!(e.next_deadline(), deadline, "the wrap-up timer survives");
        assert_eq!(states(&e, "b"), [("8000".into(), AgentState::QueueCall)]);
        // b's call is still known: ending it works.
        e.apply(T0 + 3000, end("b", "c2"), Cause::Call).unwrap();
        assert_eq!(states(&e, "b"), [("8000".into(), AgentState::WrapUp)]);
        let ev = e.handle_timeout(deadline.unwrap());
        assert_eq!(ev.len(), 1);
        assert_eq!(states(&e, "a"), [("8000".into(), AgentState::Ready)]);
    }
}
