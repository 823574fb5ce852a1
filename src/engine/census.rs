//! How many agents are in each state in each queue (for monitoring). A
//! read-only walk over the engine's cells.

use super::{AgentState, Engine, QueueId};

impl Engine {
    /// For each queue, in configuration order, the number of its members
    /// in each state, indexed like [`AgentState::ALL`].
    pub fn census(&self) -> Vec<(QueueId, [u64; 6])> {
        self.queues
            .iter()
            .zip(&self.members)
            .map(|(q, members)| {
                let mut counts = [0u64; 6];
                for &(ai, s) in members {
                    let state = self.agents[ai].cells[s].state;
                    if let Some(i) = AgentState::ALL.iter().position(|x| *x == state) {
                        counts[i] += 1;
                    }
                }
                (q.number.clone(), counts)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AgentDef, Cause, Command, Model, QueueDef, Target};
    use super::*;

    #[test]
    fn counts_members_per_state_per_queue() {
        let q = |n: &str| QueueDef {
            number: n.into(),
            name: n.into(),
            auto_ready: true,
            wrap_up_secs: 0,
            not_ready_after_other_call: false,
        };
        let a = |e: &str, qs: &[&str]| AgentDef {
            extension: e.into(),
            name: e.into(),
            queues: qs.iter().map(|x| (*x).into()).collect(),
        };
        let mut e = Engine::new(Model {
            queues: vec![q("1"), q("2")],
            agents: vec![a("a", &["1", "2"]), a("b", &["1"])],
            reasons: vec![],
        });
        e.apply(
            0,
            Command::Login {
                agent: "a".into(),
                target: Target::Queue("1".into()),
            },
            Cause::Api,
        )
        .unwrap();
        let c = e.census();
        assert_eq!(c[0].0.as_str(), "1");
        assert_eq!(c[0].1, [1, 0, 1, 0, 0, 0], "b logged out, a ready");
        assert_eq!(c[1].1, [1, 0, 0, 0, 0, 0]);
    }
}
