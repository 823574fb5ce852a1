//! Bodies of the BroadSoft `as-feature-event` package (SPEC §5, issue 14):
//! the ACD, do-not-disturb and forwarding events facd NOTIFYs, and the
//! `SetAgentState`, `SetDoNotDisturb` and `SetForwarding` requests a phone
//! puts in its SUBSCRIBE. Pure: no engine types, no I/O.
//!
//! The shapes are the ones the phones' own code reads (sources in
//! `sip-fixtures/feature-keys/SOURCES.md`): the phone dispatches on the
//! *root element name*, one per state (`AgentLoggedOnEvent`,
//! `AgentLoggedOffEvent`, `AgentReadyEvent`, `AgentNotReadyEvent`,
//! `AgentWorkingAfterCallEvent`, `DoNotDisturbEvent`, `ForwardingEvent`),
//! unprefixed, in the ECMA-323 3rd edition default namespace; the not-ready
//! reason is looked up by the literal qualified name
//! `extensions/privateData/private/pri:AgentNotReadyReasonValue`. Any other
//! root is ignored by the phone, so a key never changes on it.
//!
//! Parsing never panics and is bounded ([`MAX_BODY_BYTES`], [`MAX_DEPTH`]):
//! any bytes from the network either yield a [`FeatureRequest`] or a
//! [`BodyError`] whose text is a human `400` reason phrase.

use std::fmt::Write as _;

use quick_xml::events::Event as Xml;
use quick_xml::Reader;

use super::agent_view::{QueueState, QueueView};

/// The media type of both directions.
pub const CONTENT_TYPE: &str = "application/x-as-feature-event+xml";
/// The event package (RFC 6665 §7.2 `Event` / `Allow-Events`).
pub const EVENT: &str = "as-feature-event";
/// ECMA-323 3rd edition. Polycom phones reboot on an event without it.
pub const CSTA_NS: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";
/// BroadSoft's private-data namespace, bound to the `pri` prefix.
pub const BROADSOFT_NS: &str = "http://schema.broadsoft.com/CSTAPrivateData";
/// Larger request bodies are refused unread (phones send about 500 bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Deeper element nesting is refused (the reason sits at depth 5).
pub const MAX_DEPTH: usize = 16;
/// The boundary [`multipart`] uses unless a part happens to contain it.
pub const BOUNDARY: &str = "facd-as-feature-event";

/// What a phone's ACD key shows: the agent's ACD state (not its call
/// state), one root element each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcdState {
    /// Logged out of every queue: `AgentLoggedOffEvent`.
    LoggedOff,
    /// Sent once right after a login, before the state the login produced:
    /// `AgentLoggedOnEvent`. Yealink answers it with a `SetAgentState`
    /// carrying its configured initial state, so it must never be part of
    /// a refresh or of the full state.
    LoggedOn,
    /// Taking calls: `AgentReadyEvent`.
    Ready,
    /// Logged in, not taking calls: `AgentNotReadyEvent`, with the
    /// reason's configured code as BroadSoft private data.
    NotReady {
        /// The configured reason code.
        reason: Option<u32>,
    },
    /// After-call work: `AgentWorkingAfterCallEvent`.
    WorkingAfterCall,
}

impl AcdState {
    /// The root element name phones dispatch on.
    pub fn root(self) -> &'static str {
        match self {
            Self::LoggedOff => "AgentLoggedOffEvent",
            Self::LoggedOn => "AgentLoggedOnEvent",
            Self::Ready => "AgentReadyEvent",
            Self::NotReady { .. } => "AgentNotReadyEvent",
            Self::WorkingAfterCall => "AgentWorkingAfterCallEvent",
        }
    }

    /// The one state of the agent's key from its per-queue states, the most
    /// telling first: wrap-up anywhere → working after call (it ends by
    /// itself); else ready anywhere → ready (the agent gets calls); else
    /// logged in anywhere → not ready, with the first not-ready queue's
    /// reason that has one; else logged off. Never [`Self::LoggedOn`].
    pub fn from_queues(queues: &[QueueView<'_>]) -> Self {
        let states = || queues.iter().map(|q| q.state);
        if states().any(|s| s == QueueState::WrapUp) {
            Self::WorkingAfterCall
        } else if states().any(|s| s == QueueState::Ready) {
            Self::Ready
        } else if states().any(QueueState::logged_in) {
            let reason = states().find_map(|s| match s {
                QueueState::NotReady { reason } => reason,
                _ => None,
            });
            Self::NotReady { reason }
        } else {
            Self::LoggedOff
        }
    }
}

fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

fn open(s: &mut String, root: &str) {
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    let _ = write!(s, "<{root} xmlns=\"{CSTA_NS}\">\r\n");
}

/// The ACD event body for `state`: `device` is the phone's address (facd:
/// the agent's extension), `agent` the ACD agent id. The phones read no
/// child but the reason; `device` and `agentID` mirror `SetAgentState`.
pub fn agent_event_body(device: &str, agent: &str, state: AcdState) -> String {
    let root = state.root();
    let mut s = String::with_capacity(512);
    open(&mut s, root);
    let _ = write!(s, "<device>{}</device>\r\n", escape(device));
    let _ = write!(s, "<agentID>{}</agentID>\r\n", escape(agent));
    if let AcdState::NotReady { reason: Some(code) } = state {
        // The literal `pri:` prefix: Yealink's handler asks its DOM for the
        // child named `pri:AgentNotReadyReasonValue`, the AudioCodes SDK
        // selects the same path, neither resolves namespaces.
        s.push_str("<extensions>\r\n<privateData>\r\n");
        let _ = write!(s, "<private xmlns:pri=\"{BROADSOFT_NS}\">\r\n");
        let _ = write!(
            s,
            "<pri:AgentNotReadyReasonValue>{code}</pri:AgentNotReadyReasonValue>\r\n"
        );
        s.push_str("</private>\r\n</privateData>\r\n</extensions>\r\n");
    }
    let _ = write!(s, "</{root}>\r\n");
    s
}

/// The `DoNotDisturbEvent` body (`doNotDisturbOn` `true`/`false`, the
/// only values Yealink accepts).
pub fn dnd_event_body(device: &str, on: bool) -> String {
    let mut s = String::with_capacity(256);
    open(&mut s, "DoNotDisturbEvent");
    let _ = write!(s, "<device>{}</device>\r\n", escape(device));
    let _ = write!(s, "<doNotDisturbOn>{on}</doNotDisturbOn>\r\n");
    s.push_str("</DoNotDisturbEvent>\r\n");
    s
}

/// A `forwardingType` (ECMA-269 forwarding types as BroadWorks uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingType {
    /// `forwardImmediate` (call forwarding always).
    Immediate,
    /// `forwardBusy`.
    Busy,
    /// `forwardNoAns`.
    NoAnswer,
}

impl ForwardingType {
    /// All three, in the order of a full-state NOTIFY.
    pub const ALL: [Self; 3] = [Self::Immediate, Self::Busy, Self::NoAnswer];

    /// The `forwardingType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "forwardImmediate",
            Self::Busy => "forwardBusy",
            Self::NoAnswer => "forwardNoAns",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The `ForwardingEvent` body saying forwarding of `kind` is off (facd
/// forwards no calls). No `forwardTo`/`ringCount`: phones read them only
/// when `forwardStatus` is `true`.
pub fn forwarding_event_body(device: &str, kind: ForwardingType) -> String {
    let mut s = String::with_capacity(320);
    open(&mut s, "ForwardingEvent");
    let _ = write!(s, "<device>{}</device>\r\n", escape(device));
    let _ = write!(s, "<forwardingType>{}</forwardingType>\r\n", kind.as_str());
    s.push_str("<forwardStatus>false</forwardStatus>\r\n");
    s.push_str("</ForwardingEvent>\r\n");
    s
}

/// A NOTIFY body and its `Content-Type` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyBody {
    /// The `Content-Type` value, with its `boundary` for a multipart.
    pub content_type: String,
    /// The body.
    pub body: String,
}

/// One NOTIFY body carrying several `as-feature-event` documents: a
/// `multipart/mixed` (RFC 2046 §5.1) with one part each, as BroadWorks
/// sends the state of every feature; phones stop at the first document of
/// a plain body. One document stays a plain body, as OpenSIPS sends it.
///
/// The boundary is [`BOUNDARY`], lengthened until no part contains it
/// (RFC 2046 §5.1.1: it must not occur in the encapsulated parts).
pub fn multipart(parts: &[String]) -> NotifyBody {
    if let [one] = parts {
        return NotifyBody {
            content_type: CONTENT_TYPE.to_string(),
            body: one.clone(),
        };
    }
    let mut boundary = BOUNDARY.to_string();
    let mut n = 0u32;
    while parts.iter().any(|p| p.contains(boundary.as_str())) {
        n += 1;
        boundary = format!("{BOUNDARY}-{n}");
    }
    let mut body = String::with_capacity(parts.iter().map(|p| p.len() + 96).sum());
    for part in parts {
        // RFC 2046 §5.1.1: dash-boundary CRLF, part headers, CRLF, the
        // part; the CRLF before the next delimiter belongs to it.
        let _ = write!(body, "--{boundary}\r\nContent-Type: {CONTENT_TYPE}\r\n\r\n");
        body.push_str(part);
        if !part.ends_with("\r\n") {
            body.push_str("\r\n");
        }
    }
    let _ = write!(body, "--{boundary}--\r\n");
    NotifyBody {
        content_type: format!("multipart/mixed;boundary={boundary}"),
        body,
    }
}

/// The NOTIFY for a SUBSCRIBE without a body (first subscription and every
/// refresh): every feature's state in one `multipart/mixed` body, the ACD
/// state first, then do-not-disturb, then the three forwarding types (all
/// off). `acd` must not be [`AcdState::LoggedOn`] (see there).
pub fn full_state(device: &str, agent: &str, acd: AcdState, dnd: bool) -> NotifyBody {
    let mut parts = Vec::with_capacity(5);
    parts.push(agent_event_body(device, agent, acd));
    parts.push(dnd_event_body(device, dnd));
    parts.extend(
        ForwardingType::ALL
            .into_iter()
            .map(|k| forwarding_event_body(device, k)),
    );
    multipart(&parts)
}

/// A `requestedAgentState` (ECMA-269 §22.1.5 agent states as `SetAgentState`
/// asks for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedState {
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

impl RequestedState {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "loggedOn" => Self::LoggedOn,
            "loggedOff" => Self::LoggedOff,
            "ready" => Self::Ready,
            "notReady" => Self::NotReady,
            "workingAfterCall" => Self::WorkingAfterCall,
            _ => return None,
        })
    }
}

/// A parsed SUBSCRIBE body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureRequest {
    /// `SetAgentState`: apply to all the agent's queues; answered with the
    /// resulting [`AcdState`] even when nothing changed (Yealink shows a
    /// login timeout if no event follows within 5 s).
    SetAgentState {
        /// The state asked for.
        state: RequestedState,
        /// `pri:AgentNotReadyReasonValue` when given and not 0 (phones send
        /// 0 for "no reason").
        reason: Option<u32>,
    },
    /// `SetDoNotDisturb`: answered with a `DoNotDisturbEvent`.
    SetDoNotDisturb {
        /// `doNotDisturbOn`.
        on: bool,
    },
    /// `SetForwarding`: answered with a `ForwardingEvent` (facd: off).
    SetForwarding {
        /// `forwardingType`.
        kind: ForwardingType,
        /// `activateForward`.
        activate: bool,
        /// `forwardDN`, when not empty.
        forward_to: Option<String>,
        /// `ringCount`, when not empty (no-answer forwarding).
        ring_count: Option<u32>,
    },
}

/// Why a SUBSCRIBE body was refused; the text is the `400` reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Longer than [`MAX_BODY_BYTES`].
    #[error("Body Too Large")]
    TooLarge,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("XML Nested Too Deeply")]
    TooDeep,
    /// Not well-formed XML (or not UTF-8, or an unknown entity).
    #[error("Malformed XML")]
    Malformed,
    /// Well-formed, but the root is none of the three requests.
    #[error("Unknown Feature Request")]
    UnknownRequest,
    /// No `requestedAgentState`, or a value not in ECMA-269.
    #[error("Unknown requestedAgentState")]
    BadState,
    /// `AgentNotReadyReasonValue` is not a number.
    #[error("Bad AgentNotReadyReasonValue")]
    BadReason,
    /// No `doNotDisturbOn`, or not a boolean.
    #[error("Bad doNotDisturbOn")]
    BadDnd,
    /// No `forwardingType`, or not one of the three.
    #[error("Unknown forwardingType")]
    BadForwardingType,
    /// No `activateForward`, or not a boolean.
    #[error("Bad activateForward")]
    BadActivate,
    /// `ringCount` is not a number.
    #[error("Bad ringCount")]
    BadRingCount,
}

/// The fields of the three requests, by local name. The first occurrence
/// of each wins.
#[derive(Default)]
struct Fields {
    root: Vec<u8>,
    requested: Option<String>,
    reason: Option<String>,
    dnd: Option<String>,
    activate: Option<String>,
    kind: Option<String>,
    forward_dn: Option<String>,
    ring_count: Option<String>,
}

impl Fields {
    /// The slot for an element at `depth` (the root is 1) named `name`.
    fn slot(&mut self, depth: usize, name: &[u8]) -> Option<&mut Option<String>> {
        match (depth, name) {
            // `extensions/privateData/private/pri:AgentNotReadyReasonValue`;
            // matched by local name at any depth below the root.
            (d, b"AgentNotReadyReasonValue") if d >= 2 => Some(&mut self.reason),
            (2, b"requestedAgentState") => Some(&mut self.requested),
            (2, b"doNotDisturbOn") => Some(&mut self.dnd),
            (2, b"activateForward") => Some(&mut self.activate),
            (2, b"forwardingType") => Some(&mut self.kind),
            (2, b"forwardDN") => Some(&mut self.forward_dn),
            (2, b"ringCount") => Some(&mut self.ring_count),
            _ => None,
        }
    }

    fn set(&mut self, depth: usize, name: &[u8], text: &str) {
        if let Some(slot) = self.slot(depth, name) {
            slot.get_or_insert_with(|| text.to_string());
        }
    }
}

/// Parses a SUBSCRIBE body. Elements are matched by local name (phones and
/// servers misspell the namespace: OpenSIPS writes `ecmainternational`),
/// unknown elements are ignored, text is trimmed.
pub fn parse_request(body: &[u8]) -> Result<FeatureRequest, BodyError> {
    let f = read_fields(body)?;
    match f.root.as_slice() {
        b"SetAgentState" => {
            let state = f
                .requested
                .as_deref()
                .and_then(RequestedState::parse)
                .ok_or(BodyError::BadState)?;
            let reason = match f.reason.as_deref() {
                None | Some("") => None,
                Some(r) => match r.parse::<u32>() {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => return Err(BodyError::BadReason),
                },
            };
            Ok(FeatureRequest::SetAgentState { state, reason })
        }
        b"SetDoNotDisturb" => {
            let on = f
                .dnd
                .as_deref()
                .and_then(boolean)
                .ok_or(BodyError::BadDnd)?;
            Ok(FeatureRequest::SetDoNotDisturb { on })
        }
        b"SetForwarding" => {
            let kind = f
                .kind
                .as_deref()
                .and_then(ForwardingType::parse)
                .ok_or(BodyError::BadForwardingType)?;
            let activate = f
                .activate
                .as_deref()
                .and_then(boolean)
                .ok_or(BodyError::BadActivate)?;
            let ring_count = match f.ring_count.as_deref() {
                None | Some("") => None,
                Some(n) => Some(n.parse::<u32>().map_err(|_| BodyError::BadRingCount)?),
            };
            Ok(FeatureRequest::SetForwarding {
                kind,
                activate,
                forward_to: f.forward_dn.filter(|d| !d.is_empty()),
                ring_count,
            })
        }
        _ => Err(BodyError::UnknownRequest),
    }
}

/// `xs:boolean`'s lexical forms.
fn boolean(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// One bounded pass over the document: the root's local name and the
/// fields of [`Fields::slot`].
fn read_fields(body: &[u8]) -> Result<Fields, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    let mut reader = Reader::from_reader(body);
    let mut f = Fields::default();
    // Local names of the open elements; `path.len()` is the depth.
    let mut path: Vec<Vec<u8>> = Vec::new();
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
                    saw_root = true;
                    f.root.clone_from(&name);
                }
                if path.len() >= MAX_DEPTH {
                    return Err(BodyError::TooDeep);
                }
                path.push(name);
            }
            Ok(Xml::Empty(e)) => {
                let name = e.local_name();
                if path.is_empty() {
                    if saw_root {
                        return Err(BodyError::Malformed);
                    }
                    saw_root = true;
                    f.root = name.as_ref().to_vec();
                } else {
                    // `<forwardDN/>`: present and empty.
                    f.set(path.len() + 1, name.as_ref(), "");
                }
            }
            Ok(Xml::End(e)) => match path.pop() {
                Some(open) if open == e.local_name().as_ref() => {}
                _ => return Err(BodyError::Malformed),
            },
            Ok(Xml::Text(t)) => {
                let text = t.unescape().map_err(|_| BodyError::Malformed)?;
                text_event(&mut f, &path, text.trim())?;
            }
            Ok(Xml::CData(c)) => {
                let text = std::str::from_utf8(&c).map_err(|_| BodyError::Malformed)?;
                text_event(&mut f, &path, text.trim())?;
            }
            // Declaration, comments, processing instructions, DOCTYPE
            // (whose entities quick-xml never expands).
            Ok(_) => {}
        }
    }
    if !saw_root || !path.is_empty() {
        return Err(BodyError::Malformed);
    }
    Ok(f)
}

fn text_event(f: &mut Fields, path: &[Vec<u8>], text: &str) -> Result<(), BodyError> {
    match path.last() {
        // Text outside the root.
        None if !text.is_empty() => Err(BodyError::Malformed),
        None => Ok(()),
        Some(name) => {
            f.set(path.len(), name, text);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
