//! The event hub and the handle through which the rest of facd (REST API,
//! WebSocket) reaches the core task.
//!
//! The core owns all state (DESIGN §2): others send it a [`CoreRequest`]
//! over a bounded channel and get the answer on a oneshot. Durable events
//! leave the core in order (one task applies them) and fan out on a bounded
//! broadcast: a subscriber that falls behind gets `Lagged` and must take a
//! fresh snapshot through [`CoreHandle::query`] instead of stale deltas
//! (DESIGN §6). Publishing never blocks the core.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{Applied, Cause, Command, Engine, Event};
use crate::uas::ApplyError;

/// How many events a subscriber may fall behind before it lags.
pub const HUB_CAPACITY: usize = 4096;
/// Requests to the core queued at most.
pub const REQUEST_QUEUE: usize = 1024;

/// What others ask of the core task.
pub enum CoreRequest {
    /// Apply a command; the answer comes once it is durable.
    Apply {
        /// The command.
        cmd: Command,
        /// Its cause (api, call, feature-sync).
        cause: Cause,
        /// Where the outcome goes.
        done: oneshot::Sender<Result<Applied, ApplyError>>,
    },
    /// Run a read-only closure on the engine (views, snapshots).
    Query(Box<dyn FnOnce(&Engine) + Send>),
}

/// Why a request to the core got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The core task has stopped (facd is shutting down).
    #[error("facd is shutting down")]
    Stopped,
}

/// A cloneable handle on the core task.
#[derive(Clone)]
pub struct CoreHandle {
    tx: mpsc::Sender<CoreRequest>,
}

impl CoreHandle {
    /// A handle and the receiver the core loop reads.
    pub fn channel() -> (Self, mpsc::Receiver<CoreRequest>) {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        (Self { tx }, rx)
    }

    /// Applies `cmd`; resolves once it is durable (SPEC §7) or refused.
    pub async fn apply(
        &self,
        cmd: Command,
        cause: Cause,
    ) -> Result<Result<Applied, ApplyError>, HandleError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(CoreRequest::Apply { cmd, cause, done })
            .await
            .map_err(|_| HandleError::Stopped)?;
        rx.await.map_err(|_| HandleError::Stopped)
    }

    /// Runs `f` on the engine in the core task and returns its result.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, HandleError> {
        let (tx, rx) = oneshot::channel();
        let job = Box::new(move |e: &Engine| {
            let _ = tx.send(f(e));
        });
        self.tx
            .send(CoreRequest::Query(job))
            .await
            .map_err(|_| HandleError::Stopped)?;
        rx.await.map_err(|_| HandleError::Stopped)
    }
}

/// The broadcast of durable events.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(HUB_CAPACITY)
    }
}

impl Hub {
    /// A hub whose subscribers may lag `capacity` events.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self { tx }
    }

    /// Publishes one event (never blocks; dropped when nobody listens).
    pub fn publish(&self, ev: Event) {
        let _ = self.tx.send(Arc::new(ev));
    }

    /// A new subscriber, seeing events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
