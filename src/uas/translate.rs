//! The one translation between SIP and the engine: star codes and
//! `SetAgentState` bodies into engine commands, engine refusals into SIP
//! statuses, agent states into what a phone's keys (the ACD key, DND, the
//! BLF lamps: [`crate::sip::agent_view`]) and the `X-Agent-State` header
//! show; and the request-derived keys (dialog ids, RFC 2543 transaction
//! keys) the UAS looks things up by.

use bytes::Bytes;

use super::dialog::{DialogId, DialogKey};
use crate::engine::{
    AgentId, AgentState, Applied, Change, Command, Engine, QueueId, ReasonName, ReasonRef,
    Rejection, Target,
};
use crate::sip::agent_view::{QueueState, QueueView};
use crate::sip::feature_sync::RequestedState;
use crate::sip::message::Request;
use crate::sip::star_code::{Action, StarCode};

/// The engine command a star code dialled by `agent` asks for (SPEC §3).
pub(super) fn star_code_command(code: &StarCode, agent: &str) -> Command {
    let agent = AgentId::from(agent);
    let target = code
        .queue
        .as_deref()
        .map_or(Target::All, |q| Target::Queue(q.into()));
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

/// The engine command a `SetAgentState` from `agent`'s phone asks for,
/// over all the agent's queues (SPEC §5); `reason` is the
/// `AgentNotReadyReasonValue` code.
pub(super) fn set_agent_state_command(
    state: RequestedState,
    reason: Option<u32>,
    agent: &str,
) -> Command {
    let agent = AgentId::from(agent);
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

/// The SIP status and reason phrase for an engine refusal (SPEC §4).
pub fn sip_status(r: Rejection) -> (u16, &'static str) {
    match r {
        Rejection::UnknownAgent => (403, "Forbidden"),
        Rejection::UnknownQueue => (404, "Unknown Queue"),
        Rejection::NotAMember => (403, "Not A Queue Member"),
        Rejection::NotLoggedIn => (403, "Not Logged In"),
        Rejection::UnknownReason => (404, "Unknown Reason"),
        Rejection::UnknownCall => (481, "Call Does Not Exist"),
        Rejection::DuplicateCall => (409, "Call Already In Progress"),
        Rejection::NotReadyInQueue => (409, "Agent Not Ready"),
    }
}

/// One queue of the agent's as its phone keys read it (owned; see
/// [`key_views`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyQueue {
    queue: QueueId,
    state: QueueState,
    pending: Option<QueueState>,
}

/// A queue state without the call state: an agent on a QUEUE_CALL or
/// OTHER_CALL is READY for its keys (the state the call came from, SPEC
/// §1; BroadWorks keeps the ACD state apart from the call state and no
/// phone parses a busy event), a reason is shown by its configured code.
fn key_state(engine: &Engine, state: AgentState, reason: Option<&ReasonName>) -> QueueState {
    match state {
        AgentState::LoggedOut => QueueState::LoggedOut,
        AgentState::Ready | AgentState::QueueCall | AgentState::OtherCall => QueueState::Ready,
        AgentState::NotReady => QueueState::NotReady {
            reason: reason.and_then(|r| engine.reason_code(r)),
        },
        AgentState::WrapUp => QueueState::WrapUp,
    }
}

/// The agent's queues as its keys read them, with the pending change and
/// its reason (from the agent's records: the views carry no pending reason).
pub(super) fn key_queues(engine: &Engine, agent: &str) -> Vec<KeyQueue> {
    engine
        .export_agent(agent)
        .into_iter()
        .filter_map(|c| match c {
            Change::Cell { queue, cell, .. } => Some(KeyQueue {
                state: key_state(engine, cell.state, cell.reason.as_ref()),
                pending: cell
                    .pending
                    .map(|p| key_state(engine, p.state, p.reason.as_ref())),
                queue,
            }),
            Change::Calls { .. } | Change::Membership { .. } => None,
        })
        .collect()
}

/// Borrowed views of [`key_queues`], the input of the key bodies and lamps.
pub(super) fn key_views(queues: &[KeyQueue]) -> Vec<QueueView<'_>> {
    queues
        .iter()
        .map(|q| QueueView {
            queue: q.queue.as_str(),
            state: q.state,
            pending: q.pending,
        })
        .collect()
}

/// Do not disturb is on while some queue is, or is about to be, NOT_READY
/// with the configured DND reason (`dnd` = its code): derived from the
/// durable state, so it survives restarts, and the agent's own `*36` turns
/// it off.
pub(super) fn dnd_on(views: &[QueueView<'_>], dnd: Option<u32>) -> bool {
    dnd.is_some_and(|code| {
        let want = QueueState::NotReady { reason: Some(code) };
        views.iter().any(|q| q.pending.unwrap_or(q.state) == want)
    })
}

/// The commands that turn DND off: READY in each queue DND made NOT_READY
/// (now, or pending the end of a call), and nowhere else.
pub(super) fn dnd_off_commands(views: &[QueueView<'_>], dnd: u32, agent: &str) -> Vec<Command> {
    let want = QueueState::NotReady { reason: Some(dnd) };
    views
        .iter()
        .filter(|q| q.pending.unwrap_or(q.state) == want)
        .map(|q| Command::Ready {
            agent: AgentId::from(agent),
            target: Target::Queue(QueueId::from(q.queue)),
        })
        .collect()
}

/// `X-Agent-State: queue=8000;state=READY, queue=8001;state=NOT_READY;reason=BREAK`
pub(super) fn agent_state_header(applied: &Applied) -> String {
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

/// The synthesised transaction key of an RFC 2543 request (RFC 3261 §17.2.3).
pub(super) fn rfc2543_key(req: &Request) -> Vec<u8> {
    let top = &req.base.vias[0];
    let mut k = Vec::with_capacity(128);
    k.extend_from_slice(b"2543:");
    k.extend_from_slice(req.call_id());
    k.push(b':');
    k.extend_from_slice(itoa::Buffer::new().format(req.base.cseq.seq).as_bytes());
    k.push(b':');
    k.extend_from_slice(req.from_tag().unwrap_or_default());
    k.push(b':');
    k.extend_from_slice(req.at(top.raw));
    k
}

/// The dialog a request belongs to, borrowed from it (for lookups).
pub fn dialog_key(req: &Request) -> DialogKey<'_> {
    DialogKey {
        call_id: req.call_id(),
        local_tag: req.to_tag().unwrap_or_default(),
        remote_tag: req.from_tag().unwrap_or_default(),
    }
}

/// The dialog a request belongs to, from the UAS side (RFC 3261 §12.2.2).
pub fn dialog_id(req: &Request) -> DialogId {
    let k = dialog_key(req);
    DialogId {
        call_id: Bytes::copy_from_slice(k.call_id),
        local_tag: Bytes::copy_from_slice(k.local_tag),
        remote_tag: Bytes::copy_from_slice(k.remote_tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_agent_state_commands() {
        assert_eq!(
            set_agent_state_command(RequestedState::NotReady, Some(1), "1001"),
            Command::NotReady {
                agent: "1001".into(),
                target: Target::All,
                reason: Some(ReasonRef::Code(1))
            }
        );
        assert_eq!(
            set_agent_state_command(RequestedState::LoggedOn, None, "1002"),
            Command::Login {
                agent: "1002".into(),
                target: Target::All
            }
        );
        assert_eq!(
            set_agent_state_command(RequestedState::WorkingAfterCall, None, "1002"),
            Command::WrapUp {
                agent: "1002".into(),
                target: Target::All
            }
        );
    }

    #[test]
    fn keys_show_the_acd_state_not_the_call_state() {
        let e = engine();
        assert_eq!(
            key_state(&e, AgentState::QueueCall, None),
            QueueState::Ready
        );
        assert_eq!(
            key_state(&e, AgentState::OtherCall, None),
            QueueState::Ready
        );
        assert_eq!(
            key_state(&e, AgentState::NotReady, Some(&"BREAK".into())),
            QueueState::NotReady { reason: Some(1) }
        );
        assert_eq!(key_state(&e, AgentState::WrapUp, None), QueueState::WrapUp);
        assert_eq!(
            key_state(&e, AgentState::LoggedOut, None),
            QueueState::LoggedOut
        );
    }

    #[test]
    fn dnd_follows_the_dnd_reason_now_or_pending() {
        let v = |queue, state, pending| QueueView {
            queue,
            state,
            pending,
        };
        let dnd = QueueState::NotReady { reason: Some(9) };
        let other = QueueState::NotReady { reason: Some(1) };
        let views = [
            v("8000", dnd, None),
            v("8001", QueueState::Ready, Some(dnd)),
            v("8002", other, None),
            v("8003", QueueState::Ready, None),
        ];
        assert!(dnd_on(&views, Some(9)));
        assert!(dnd_on(&views[2..3], Some(1)));
        assert!(!dnd_on(&views, None));
        assert!(!dnd_on(&views[2..], Some(9)));
        let cmds = dnd_off_commands(&views, 9, "1001");
        let targets: Vec<_> = cmds
            .iter()
            .map(|c| match c {
                Command::Ready { target, .. } => target.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [Target::Queue("8000".into()), Target::Queue("8001".into())]
        );
    }

    #[test]
    fn key_queues_carry_the_pending_reason() {
        let mut e = engine();
        let agent = AgentId::from("1001");
        let all = Target::All;
        e.apply(
            0,
            Command::Login {
                agent: agent.clone(),
                target: all.clone(),
            },
            crate::engine::Cause::Fac,
        )
        .unwrap();
        e.apply(
            0,
            Command::CallStart {
                agent: agent.clone(),
                call_id: "c1".into(),
                kind: crate::engine::CallKind::Other,
            },
            crate::engine::Cause::Call,
        )
        .unwrap();
        e.apply(
            0,
            Command::NotReady {
                agent,
                target: all,
                reason: Some(ReasonRef::Code(1)),
            },
            crate::engine::Cause::Fac,
        )
        .unwrap();
        let qs = key_queues(&e, "1001");
        let views = key_views(&qs);
        assert_eq!(
            views,
            [QueueView {
                queue: "8000",
                state: QueueState::Ready,
                pending: Some(QueueState::NotReady { reason: Some(1) }),
            }]
        );
    }

    fn engine() -> Engine {
        use crate::engine::{AgentDef, Model, QueueDef, ReasonDef};
        Engine::new(Model {
            queues: vec![QueueDef {
                number: "8000".into(),
                name: "Sales".into(),
                auto_ready: true,
                wrap_up_secs: 0,
                not_ready_after_other_call: false,
            }],
            agents: vec![AgentDef {
                extension: "1001".into(),
                name: "Alice".into(),
                queues: vec!["8000".into()],
            }],
            reasons: vec![ReasonDef {
                code: 1,
                name: "BREAK".into(),
            }],
        })
    }

    #[test]
    fn star_code_commands() {
        let code = StarCode {
            action: Action::NotReady,
            queue: Some("8000".into()),
            reason: Some(2),
        };
        assert_eq!(
            star_code_command(&code, "1001"),
            Command::NotReady {
                agent: "1001".into(),
                target: Target::Queue("8000".into()),
                reason: Some(ReasonRef::Code(2))
            }
        );
    }

    #[test]
    fn refusals_as_sip() {
        assert_eq!(
            sip_status(Rejection::NotAMember),
            (403, "Not A Queue Member")
        );
        assert_eq!(sip_status(Rejection::UnknownQueue), (404, "Unknown Queue"));
        assert_eq!(sip_status(Rejection::NotLoggedIn), (403, "Not Logged In"));
        assert_eq!(
            sip_status(Rejection::UnknownReason),
            (404, "Unknown Reason")
        );
    }
}
