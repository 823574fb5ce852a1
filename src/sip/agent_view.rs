//! The agent's per-queue ACD state as the SIP side reads it: the one input
//! of the feature-key bodies ([`super::feature_sync`]) and the BLF lamps
//! ([`super::blf`]), filled by the UAS from the engine.
//!
//! Deliberately smaller than the engine's state: a phone key shows the ACD
//! state, not the call state (BroadWorks keeps the two apart, and no phone
//! parses an `AgentBusyEvent`), so the UAS reports an agent on a QUEUE_CALL
//! or OTHER_CALL as [`QueueState::Ready`] (the state the call came from, SPEC
//! §1) and the change waiting for the call to end as [`QueueView::pending`].

/// One queue's ACD state, without the call state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// LOGGED_OUT.
    LoggedOut,
    /// READY, and QUEUE_CALL/OTHER_CALL (which only start from READY).
    Ready,
    /// NOT_READY, with the reason's configured code when it has one (the
    /// number phones send and show as `AgentNotReadyReasonValue`).
    NotReady {
        /// The configured reason code.
        reason: Option<u32>,
    },
    /// WRAP_UP (after-call work).
    WrapUp,
}

impl QueueState {
    /// Logged in (any state but LOGGED_OUT).
    pub fn logged_in(self) -> bool {
        self != Self::LoggedOut
    }
}

/// What one queue of the agent's says, as the SIP side needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueView<'a> {
    /// The queue number (e.g. `8000`).
    pub queue: &'a str,
    /// The state now.
    pub state: QueueState,
    /// The state recorded to apply when the current call ends (SPEC §2,
    /// ECMA-269 §22.1.5 "pending agent state"): READY, NOT_READY or
    /// LOGGED_OUT.
    pub pending: Option<QueueState>,
}

impl<'a> QueueView<'a> {
    /// A queue with no pending change.
    pub fn new(queue: &'a str, state: QueueState) -> Self {
        Self {
            queue,
            state,
            pending: None,
        }
    }
}
