//! Agent states and the record kept per agent × queue (a "cell").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::id::ReasonName;

/// Unix time in milliseconds, passed in by the caller.
pub type Millis = u64;

/// The state of an agent in one queue (SPEC §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    /// Not receiving ACD calls from this queue.
    LoggedOut,
    /// Logged in but not taking ACD calls.
    NotReady,
    /// Available for ACD calls.
    Ready,
    /// On an ACD call from this queue.
    QueueCall,
    /// On a non-ACD call (or an ACD call from another queue).
    OtherCall,
    /// After-call work.
    WrapUp,
}

impl AgentState {
    /// Every state, for table tests.
    pub const ALL: [Self; 6] = [
        Self::LoggedOut,
        Self::NotReady,
        Self::Ready,
        Self::QueueCall,
        Self::OtherCall,
        Self::WrapUp,
    ];

    /// The wire name (`READY`, `NOT_READY`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "LOGGED_OUT",
            Self::NotReady => "NOT_READY",
            Self::Ready => "READY",
            Self::QueueCall => "QUEUE_CALL",
            Self::OtherCall => "OTHER_CALL",
            Self::WrapUp => "WRAP_UP",
        }
    }

    /// On a call (QUEUE_CALL or OTHER_CALL).
    pub fn on_call(self) -> bool {
        matches!(self, Self::QueueCall | Self::OtherCall)
    }
}

impl fmt::Display for AgentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for AgentState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// A state with its not-ready reason, as requested or saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    /// READY, NOT_READY, LOGGED_OUT or WRAP_UP.
    pub state: AgentState,
    /// The not-ready reason name.
    pub reason: Option<ReasonName>,
}

impl Wanted {
    pub(crate) fn plain(state: AgentState) -> Self {
        Self {
            state,
            reason: None,
        }
    }
}

/// Everything kept about one agent in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The state now.
    pub state: AgentState,
    /// The not-ready reason, when NOT_READY.
    pub reason: Option<ReasonName>,
    /// A change requested during a call, applied when it ends (ECMA-269 §22.1.5).
    pub pending: Option<Wanted>,
    /// When the state was entered.
    pub since: Millis,
    /// When WRAP_UP ends on its own.
    pub wrap_up_until: Option<Millis>,
    /// The state to return to when an OTHER_CALL ends.
    pub before_call: Option<Wanted>,
}

impl Cell {
    /// LOGGED_OUT, as every agent starts.
    pub fn logged_out(since: Millis) -> Self {
        Self {
            state: AgentState::LoggedOut,
            reason: None,
            pending: None,
            since,
            wrap_up_until: None,
            before_call: None,
        }
    }
}
