//! The one translation between SIP and the engine: star codes and
//! `SetAgentState` bodies into engine commands, engine refusals into SIP
//! statuses, agent states into what a phone's key and the `X-Agent-State`
//! header show; and the request-derived keys (dialog ids, RFC 2543
//! transaction keys) the UAS looks things up by.

use bytes::Bytes;

use super::dialog::{DialogId, DialogKey};
use crate::engine::{AgentId, AgentState, Applied, Command, Engine, ReasonRef, Rejection, Target};
use crate::sip::feature_sync::{self, PhoneState, Requested, SetAgentState};
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
/// over all the agent's queues (SPEC §5).
pub(super) fn set_agent_state_command(set: &SetAgentState, agent: &str) -> Command {
    let agent = AgentId::from(agent);
    let target = Target::All;
    match set.requested {
        Requested::LoggedOn => Command::Login { agent, target },
        Requested::LoggedOff => Command::Logout { agent, target },
        Requested::Ready => Command::Ready { agent, target },
        Requested::NotReady => Command::NotReady {
            agent,
            target,
            reason: set.reason.map(ReasonRef::Code),
        },
        Requested::WorkingAfterCall => Command::WrapUp { agent, target },
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

/// One phone state from the agent's per-queue states, the most telling
/// first: on a call anywhere → busy; else wrap-up anywhere → working after
/// call; else ready anywhere → ready (the agent gets calls); else logged
/// in anywhere → not ready; else null.
pub(super) fn phone_state(states: impl IntoIterator<Item = AgentState>) -> PhoneState {
    let (mut busy, mut wrap, mut ready, mut logged_in) = (false, false, false, false);
    for s in states {
        match s {
            AgentState::QueueCall | AgentState::OtherCall => busy = true,
            AgentState::WrapUp => wrap = true,
            AgentState::Ready => ready = true,
            AgentState::NotReady => logged_in = true,
            AgentState::LoggedOut => {}
        }
    }
    if busy {
        PhoneState::Busy
    } else if wrap {
        PhoneState::WorkingAfterCall
    } else if ready {
        PhoneState::Ready
    } else if logged_in {
        PhoneState::NotReady
    } else {
        PhoneState::Null
    }
}

/// The feature-key NOTIFY body for `agent` as the engine has it now.
pub(super) fn feature_body(engine: &Engine, agent: &str) -> Bytes {
    let queues = engine.agent(agent).map(|v| v.queues).unwrap_or_default();
    let state = phone_state(queues.iter().map(|q| q.state));
    let reason = queues
        .iter()
        .filter(|q| q.state == AgentState::NotReady)
        .find_map(|q| q.reason.as_deref())
        .and_then(|r| engine.reason_code(r));
    Bytes::from(feature_sync::agent_state_event(agent, state, reason))
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
    use crate::sip::feature_sync::parse_set_agent_state;
    use AgentState::*;

    #[test]
    fn phone_state_of_queue_states() {
        let cases: &[(&[AgentState], PhoneState)] = &[
            (&[], PhoneState::Null),
            (&[LoggedOut, LoggedOut], PhoneState::Null),
            (&[LoggedOut, NotReady], PhoneState::NotReady),
            (&[NotReady, Ready], PhoneState::Ready),
            (&[Ready, WrapUp], PhoneState::WorkingAfterCall),
            (&[WrapUp, OtherCall], PhoneState::Busy),
            (&[QueueCall, LoggedOut], PhoneState::Busy),
        ];
        for (states, want) in cases {
            assert_eq!(phone_state(states.iter().copied()), *want, "{states:?}");
        }
    }

    #[test]
    fn set_agent_state_commands() {
        let body = "<SetAgentState xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\">\
            <device/><requestedAgentState>notReady</requestedAgentState><extensions><privateData>\
            <private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\
            <pri:AgentNotReadyReasonValue>1</pri:AgentNotReadyReasonValue></private>\
            </privateData></extensions></SetAgentState>";
        let set = parse_set_agent_state(body.as_bytes()).unwrap();
        assert_eq!(
            set_agent_state_command(&set, "1001"),
            Command::NotReady {
                agent: "1001".into(),
                target: Target::All,
                reason: Some(ReasonRef::Code(1))
            }
        );
        let login = SetAgentState {
            requested: Requested::LoggedOn,
            reason: None,
        };
        assert_eq!(
            set_agent_state_command(&login, "1002"),
            Command::Login {
                agent: "1002".into(),
                target: Target::All
            }
        );
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
