//! Bodies of the BroadSoft `as-feature-event` package for ACD keys
//! (SPEC §5): the `AgentStateEvent` facd NOTIFYs and the `SetAgentState`
//! a phone puts in its SUBSCRIBE, both `application/x-as-feature-event+xml`
//! in the ECMA-323 (CSTA XML, 3rd edition) namespace.
//!
//! Shapes follow the Cisco BroadWorks "SIP Access Side Extensions Interface
//! Specification", chapter "Device Feature Key Synchronization" (Call
//! Center agent state), as implemented by Polycom and Yealink phones:
//! `SetAgentState` with `device`, `requestedAgentState`, optional
//! `extensions/privateData/private/AgentNotReadyReasonValue` (BroadSoft
//! namespace `http://schema.broadsoft.com/CSTAPrivateData`), `agentID`,
//! `password`; the NOTIFY mirrors it with `agentState` (the ECMA-269
//! §12.2.1 values).
//!
//! Parsing never panics: any XML from the network either yields a request
//! or a [`BodyError`] that the caller turns into a 400.

use std::fmt::Write as _;

use quick_xml::events::Event as Xml;
use quick_xml::Reader;

use crate::engine::{AgentId, AgentState, Command, ReasonRef, Target};

/// The media type of both directions.
pub const CONTENT_TYPE: &str = "application/x-as-feature-event+xml";
/// The event package (RFC 6665 §7.2 `Event` / `Allow-Events`).
pub const EVENT: &str = "as-feature-event";
/// ECMA-323 3rd edition. Polycom phones reboot on a body without it.
pub const CSTA_NS: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";
/// BroadSoft's private-data namespace.
pub const BROADSOFT_NS: &str = "http://schema.broadsoft.com/CSTAPrivateData";

/// What a phone's ACD key shows (ECMA-269 agent states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneState {
    /// Logged out everywhere (or in no queue).
    Null,
    /// Logged in, not taking calls.
    NotReady,
    /// Taking calls in at least one queue.
    Ready,
    /// On a call.
    Busy,
    /// After-call work.
    WorkingAfterCall,
}

impl PhoneState {
    /// The `agentState` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Null => "agentNull",
            Self::NotReady => "agentNotReady",
            Self::Ready => "agentReady",
            Self::Busy => "agentBusy",
            Self::WorkingAfterCall => "agentWorkingAfterCall",
        }
    }

    /// One phone state from the agent's per-queue states, the most
    /// telling first: on a call anywhere → busy; else wrap-up anywhere →
    /// working after call; else ready anywhere → ready (the agent gets
    /// calls); else logged in anywhere → not ready; else null.
    pub fn from_queues(states: impl IntoIterator<Item = AgentState>) -> Self {
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
            Self::Busy
        } else if wrap {
            Self::WorkingAfterCall
        } else if ready {
            Self::Ready
        } else if logged_in {
            Self::NotReady
        } else {
            Self::Null
        }
    }
}

/// The NOTIFY body: the agent's state and, when not ready, the reason's
/// configured code as BroadSoft private data.
pub fn agent_state_event(extension: &str, state: PhoneState, reason_code: Option<u32>) -> String {
    let ext = escape(extension);
    let mut s = String::with_capacity(512);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    let _ = write!(s, "<AgentStateEvent xmlns=\"{CSTA_NS}\">\r\n");
    let _ = write!(s, "<device>{ext}</device>\r\n");
    let _ = write!(s, "<agentID>{ext}</agentID>\r\n");
    let _ = write!(s, "<agentState>{}</agentState>\r\n", state.as_str());
    if let (PhoneState::NotReady, Some(code)) = (state, reason_code) {
        s.push_str("<extensions>\r\n<privateData>\r\n");
        let _ = write!(s, "<private xmlns:pri=\"{BROADSOFT_NS}\">\r\n");
        let _ = write!(
            s,
            "<pri:AgentNotReadyReasonValue>{code}</pri:AgentNotReadyReasonValue>\r\n"
        );
        s.push_str("</private>\r\n</privateData>\r\n</extensions>\r\n");
    }
    s.push_str("</AgentStateEvent>\r\n");
    s
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// A `requestedAgentState` (ECMA-269 §22.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// `loggedOn`.
    LoggedOn,
    /// `loggedOff`.
    LoggedOff,
    /// `ready`.
    Ready,
    /// `notReady`.
    NotReady,
    /// `workingAfterCall`.
    WorkingAfterCall,
}

/// A parsed `SetAgentState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetAgentState {
    /// The state asked for.
    pub requested: Requested,
    /// `AgentNotReadyReasonValue`, when given and not 0 (phones send 0 for
    /// "no reason").
    pub reason: Option<u32>,
}

impl SetAgentState {
    /// The engine command for `agent`, over all the agent's queues.
    pub fn command(self, agent: &str) -> Command {
        let agent = AgentId::from(agent);
        let target = Target::All;
        match self.requested {
            Requested::LoggedOn => Command::Login { agent, target },
            Requested::LoggedOff => Command::Logout { agent, target },
            Requested::Ready => Command::Ready { agent, target },
            Requested::NotReady => Command::NotReady {
                agent,
                target,
                reason: self.reason.map(ReasonRef::Code),
            },
            Requested::WorkingAfterCall => Command::WrapUp { agent, target },
        }
    }
}

/// Why a SUBSCRIBE body was refused (each becomes a `400` reason phrase).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not well-formed XML.
    #[error("Malformed XML")]
    Malformed,
    /// Well-formed, but not a `SetAgentState` (e.g. `SetDoNotDisturb`).
    #[error("Only SetAgentState Is Supported")]
    Unsupported,
    /// No `requestedAgentState`, or a value not in ECMA-269.
    #[error("Unknown requestedAgentState")]
    BadState,
    /// `AgentNotReadyReasonValue` is not a number.
    #[error("Bad AgentNotReadyReasonValue")]
    BadReason,
}

/// Parses a `SetAgentState` body. Elements are matched by local name (some
/// phones misspell the namespace), unknown elements are ignored.
pub fn parse_set_agent_state(body: &[u8]) -> Result<SetAgentState, BodyError> {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut requested: Option<String> = None;
    let mut reason: Option<String> = None;
    let mut saw_root = false;
    loop {
        match reader.read_event() {
            Err(_) => return Err(BodyError::Malformed),
            Ok(Xml::Eof) => break,
            Ok(Xml::Start(e)) => {
                let name = e.local_name().as_ref().to_vec();
                if path.is_empty() {
                    if saw_root {
                        return Err(BodyError::Malformed);
                    }
                    if name != b"SetAgentState" {
                        return Err(BodyError::Unsupported);
                    }
                    saw_root = true;
                }
                path.push(name);
            }
            Ok(Xml::Empty(e)) => {
                if path.is_empty() {
                    if saw_root {
                        return Err(BodyError::Malformed);
                    }
                    // `<SetAgentState/>` or another empty root.
                    return Err(if e.local_name().as_ref() == b"SetAgentState" {
                        BodyError::BadState
                    } else {
                        BodyError::Unsupported
                    });
                }
            }
            Ok(Xml::End(e)) => match path.pop() {
                Some(open) if open == e.local_name().as_ref() => {}
                _ => return Err(BodyError::Malformed),
            },
            Ok(Xml::Text(t)) => {
                let text = t.unescape().map_err(|_| BodyError::Malformed)?;
                let text = text.trim();
                match path.last().map(Vec::as_slice) {
                    Some(b"requestedAgentState") if path.len() == 2 => {
                        requested = Some(text.to_string())
                    }
                    Some(b"AgentNotReadyReasonValue") => reason = Some(text.to_string()),
                    None if !text.is_empty() => return Err(BodyError::Malformed),
                    _ => {}
                }
            }
            Ok(_) => {}
        }
    }
    if !saw_root || !path.is_empty() {
        return Err(BodyError::Malformed);
    }
    let requested = match requested.as_deref() {
        Some("loggedOn") => Requested::LoggedOn,
        Some("loggedOff") => Requested::LoggedOff,
        Some("ready") => Requested::Ready,
        Some("notReady") => Requested::NotReady,
        Some("workingAfterCall") => Requested::WorkingAfterCall,
        _ => return Err(BodyError::BadState),
    };
    let reason = match reason.as_deref() {
        None | Some("") => None,
        Some(r) => match r.parse::<u32>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return Err(BodyError::BadReason),
        },
    };
    Ok(SetAgentState { requested, reason })
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgentState::*;

    const YEALINK: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n \
        <SetAgentState xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\">\r\n \
        <device></device>\r\n <requestedAgentState>notReady</requestedAgentState>\r\n \
        <extensions>\r\n <privateData>\r\n \
        <private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\r\n \
        <pri:AgentNotReadyReasonValue>1</pri:AgentNotReadyReasonValue>\r\n \
        </private>\r\n </privateData>\r\n </extensions>\r\n \
        <agentID></agentID>\r\n <password></password>\r\n </SetAgentState>\r\n";

    #[test]
    fn mapping_of_queue_states() {
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
            assert_eq!(
                PhoneState::from_queues(states.iter().copied()),
                *want,
                "{states:?}"
            );
        }
    }

    #[test]
    fn notify_body_exact() {
        assert_eq!(
            agent_state_event("10<1", PhoneState::NotReady, Some(3)),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <AgentStateEvent xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\">\r\n\
             <device>10&lt;1</device>\r\n<agentID>10&lt;1</agentID>\r\n\
             <agentState>agentNotReady</agentState>\r\n\
             <extensions>\r\n<privateData>\r\n\
             <private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\r\n\
             <pri:AgentNotReadyReasonValue>3</pri:AgentNotReadyReasonValue>\r\n\
             </private>\r\n</privateData>\r\n</extensions>\r\n\
             </AgentStateEvent>\r\n"
        );
        let ready = agent_state_event("1001", PhoneState::Ready, Some(3));
        assert!(ready.contains("<agentState>agentReady</agentState>"));
        assert!(!ready.contains("Reason"), "a reason only when not ready");
    }

    #[test]
    fn parses_phone_bodies() {
        assert_eq!(
            parse_set_agent_state(YEALINK.as_bytes()),
            Ok(SetAgentState {
                requested: Requested::NotReady,
                reason: Some(1)
            })
        );
        for (word, want) in [
            ("loggedOn", Requested::LoggedOn),
            ("loggedOff", Requested::LoggedOff),
            ("ready", Requested::Ready),
            ("workingAfterCall", Requested::WorkingAfterCall),
        ] {
            let body = format!(
                "<SetAgentState xmlns=\"{CSTA_NS}\"><device/><requestedAgentState> {word} </requestedAgentState></SetAgentState>"
            );
            assert_eq!(
                parse_set_agent_state(body.as_bytes()),
                Ok(SetAgentState {
                    requested: want,
                    reason: None
                })
            );
        }
        let zero = YEALINK.replace(">1<", ">0<");
        assert_eq!(
            parse_set_agent_state(zero.as_bytes()).map(|s| s.reason),
            Ok(None)
        );
        let cmd = parse_set_agent_state(YEALINK.as_bytes())
            .unwrap()
            .command("1001");
        assert_eq!(
            cmd,
            Command::NotReady {
                agent: "1001".into(),
                target: Target::All,
                reason: Some(ReasonRef::Code(1))
            }
        );
    }

    #[test]
    fn refuses_bad_bodies_without_panicking() {
        let cases: &[(&str, BodyError)] = &[
            ("", BodyError::Malformed),
            ("not xml at all", BodyError::Malformed),
            ("<SetAgentState>", BodyError::Malformed),
            (
                "<SetAgentState><requestedAgentState>ready</x></SetAgentState>",
                BodyError::Malformed,
            ),
            (
                "<SetAgentState><requestedAgentState>ready</requestedAgentState></SetAgentState><SetAgentState/>",
                BodyError::Malformed,
            ),
            (
                "<SetDoNotDisturb><doNotDisturbOn>true</doNotDisturbOn></SetDoNotDisturb>",
                BodyError::Unsupported,
            ),
            ("<SetAgentState/>", BodyError::BadState),
            (
                "<SetAgentState><requestedAgentState>busy</requestedAgentState></SetAgentState>",
                BodyError::BadState,
            ),
            (
                "<SetAgentState><x><requestedAgentState>ready</requestedAgentState></x></SetAgentState>",
                BodyError::BadState,
            ),
            (
                "<SetAgentState><requestedAgentState>notReady</requestedAgentState><AgentNotReadyReasonValue>-1</AgentNotReadyReasonValue></SetAgentState>",
                BodyError::BadReason,
            ),
            (
                "<SetAgentState><requestedAgentState>re&bogus;ady</requestedAgentState></SetAgentState>",
                BodyError::Malformed,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_set_agent_state(body.as_bytes()).as_ref(),
                Err(want),
                "{body}"
            );
        }
        // Arbitrary bytes, deep nesting and truncations never panic.
        let deep = "<a>".repeat(10_000);
        let _ = parse_set_agent_state(deep.as_bytes());
        for cut in 0..YEALINK.len() {
            let _ = parse_set_agent_state(&YEALINK.as_bytes()[..cut]);
        }
        let _ = parse_set_agent_state(&[0xff, 0xfe, b'<', 0, b'>']);
    }
}
