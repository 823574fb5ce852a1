//! What the engine emits: one [`Event`] per queue whose state (or pending
//! change) changed, and the per-queue status a success answer reports.

use serde::{Deserialize, Serialize};

use super::id::{AgentId, QueueId, ReasonName};
use super::state::{AgentState, Millis};

/// What caused a change (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A star code.
    Fac,
    /// The REST API.
    Api,
    /// A call started or ended.
    Call,
    /// A wrap-up timer expired.
    Timer,
    /// A phone's feature key (as-feature-event).
    FeatureSync,
    /// A configuration reload removed the membership or the agent.
    Config,
}

impl Cause {
    /// The wire name (`fac`, `api`, `call`, `timer`, `feature-sync`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fac => "fac",
            Self::Api => "api",
            Self::Call => "call",
            Self::Timer => "timer",
            Self::FeatureSync => "feature-sync",
            Self::Config => "config",
        }
    }
}

/// One applied change of one agent in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Extension.
    pub agent: AgentId,
    /// Queue number.
    pub queue: QueueId,
    /// The state before.
    pub from: AgentState,
    /// The state after (equal to `from` when only the pending change moved).
    pub to: AgentState,
    /// The not-ready reason after, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonName>,
    /// The pending state after, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<AgentState>,
    /// What caused it.
    pub cause: Cause,
    /// When.
    pub at: Millis,
    /// The agent left the queue (membership, REST): `to` is LOGGED_OUT and
    /// the agent is no longer listed there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// The state of one targeted queue after a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// Queue number.
    pub queue: QueueId,
    /// State now.
    pub state: AgentState,
    /// Not-ready reason.
    pub reason: Option<ReasonName>,
    /// Pending state.
    pub pending: Option<AgentState>,
}

/// The result of an applied command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// One event per queue changed; empty when nothing changed.
    pub events: Vec<Event>,
    /// Every queue the command targeted, with its state after.
    pub affected: Vec<QueueStatus>,
}
