//! Commands the engine accepts and the refusals it answers with; the one
//! place that maps a refusal to its SIP status and phrase and HTTP status.

use serde::{Deserialize, Serialize};

use super::id::{AgentId, QueueId, ReasonName};

/// Which queues a command applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every queue the agent belongs to.
    All,
    /// One queue, by number.
    Queue(QueueId),
}

/// A not-ready reason as dialled (`*37*1`) or named (REST `"BREAK"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReasonRef {
    /// The configured code.
    Code(u32),
    /// The configured name.
    Name(ReasonName),
}

/// The kind of a call the PBX reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallKind {
    /// An ACD call delivered from `queue`.
    Acd {
        /// The queue number.
        queue: QueueId,
    },
    /// Any other call.
    Other,
}

/// A request to change state (SPEC §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `*38`: log in.
    Login {
        /// Extension.
        agent: AgentId,
        /// Queues.
        target: Target,
    },
    /// `*39`: log out.
    Logout {
        /// Extension.
        agent: AgentId,
        /// Queues.
        target: Target,
    },
    /// `*36`: ready.
    Ready {
        /// Extension.
        agent: AgentId,
        /// Queues.
        target: Target,
    },
    /// `*37`: not ready, optionally with a reason.
    NotReady {
        /// Extension.
        agent: AgentId,
        /// Queues.
        target: Target,
        /// The reason.
        reason: Option<ReasonRef>,
    },
    /// Manual after-call work (API).
    WrapUp {
        /// Extension.
        agent: AgentId,
        /// Queues.
        target: Target,
    },
    /// A call started (reported by the PBX/ACD).
    CallStart {
        /// Extension.
        agent: AgentId,
        /// The PBX's call id.
        call_id: String,
        /// ACD or other.
        kind: CallKind,
    },
    /// A call ended.
    CallEnd {
        /// Extension.
        agent: AgentId,
        /// The PBX's call id.
        call_id: String,
    },
    /// Membership (REST): make the agent a member of `queue` (it starts
    /// LOGGED_OUT there), or change its skill level if it already is one.
    Join {
        /// Extension.
        agent: AgentId,
        /// The queue number.
        queue: QueueId,
        /// 1–100 (PortSIP's `skill_level`).
        skill_level: u32,
    },
    /// Membership (REST): the agent leaves `queue` (its state there is
    /// dropped, whatever it was).
    Leave {
        /// Extension.
        agent: AgentId,
        /// The queue number.
        queue: QueueId,
    },
}

impl Command {
    /// The agent the command is about.
    pub fn agent(&self) -> &AgentId {
        match self {
            Self::Login { agent, .. }
            | Self::Logout { agent, .. }
            | Self::Ready { agent, .. }
            | Self::NotReady { agent, .. }
            | Self::WrapUp { agent, .. }
            | Self::CallStart { agent, .. }
            | Self::CallEnd { agent, .. }
            | Self::Join { agent, .. }
            | Self::Leave { agent, .. } => agent,
        }
    }
}

/// Why a command was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such agent (answered like a bad password so agents can't be enumerated).
    #[error("unknown agent")]
    UnknownAgent,
    /// No such queue.
    #[error("unknown queue")]
    UnknownQueue,
    /// The agent is not a member of the queue.
    #[error("the agent is not a member of this queue")]
    NotAMember,
    /// Ready / not ready / wrap up while logged out (everywhere it applies).
    #[error("the agent is not logged in")]
    NotLoggedIn,
    /// A not-ready reason that is not configured.
    #[error("unknown not-ready reason")]
    UnknownReason,
    /// Ending a call that is not known.
    #[error("unknown call")]
    UnknownCall,
    /// Starting a call whose id is already in progress.
    #[error("a call with this id is already in progress")]
    DuplicateCall,
    /// An ACD call from a queue where the agent is not READY.
    #[error("the agent is not ready in this queue")]
    NotReadyInQueue,
}

impl Rejection {
    /// The HTTP status for the REST API.
    pub fn http_status(self) -> u16 {
        match self {
            Self::UnknownAgent | Self::UnknownQueue | Self::UnknownCall => 404,
            Self::NotAMember | Self::NotLoggedIn | Self::DuplicateCall | Self::NotReadyInQueue => {
                409
            }
            Self::UnknownReason => 400,
        }
    }
}
