//! The event hub and the handle through which the rest of facd (REST API,
//! WebSocket) reaches the core task.
//!
//! The core owns all state (DESIGN §2): others send it a [`CoreRequest`]
//! over a bounded channel and get the answer on a oneshot. Durable events
//! leave the core in order (one task applies them) and fan out on a bounded
//! broadcast: a subscriber that falls behind gets `Lagged` and must take a
//! fresh snapshot through [`CoreHandle::query`] instead of stale deltas
//! (DESIGN §6). Publishing never blocks the core.

use std::sync::atomic::{AtomicUsize, Ordering};
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
///
/// An event nobody wants costs nothing past the check in [`Hub::publish`]
/// (issue 13): a receiver taken with [`Hub::subscribe`] always wants
/// events; one taken with [`Hub::subscribe_on_demand`] (the WSI
/// dispatcher) only while the [`Hub::demand`] counter is above zero (the
/// WSI counts its sessions there).
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    /// Receivers that want events only on demand.
    passive: Arc<AtomicUsize>,
    /// Parties that want the on-demand receivers fed.
    demand: Arc<AtomicUsize>,
}

/// A receiver fed only while someone counts in [`Hub::demand`].
pub struct OnDemand {
    /// The events.
    pub rx: broadcast::Receiver<Arc<Event>>,
    passive: Arc<AtomicUsize>,
}

impl Drop for OnDemand {
    fn drop(&mut self) {
        self.passive.fetch_sub(1, Ordering::AcqRel);
    }
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
        Self {
            tx,
            passive: Arc::default(),
            demand: Arc::default(),
        }
    }

    /// Whether anyone would see an event published now.
    pub fn wanted(&self) -> bool {
        self.demand.load(Ordering::Acquire) > 0
            || self.tx.receiver_count() > self.passive.load(Ordering::Acquire)
    }

    /// Publishes one event (never blocks; dropped when nobody wants it).
    pub fn publish(&self, ev: Event) {
        if self.wanted() {
            let _ = self.tx.send(Arc::new(ev));
        }
    }

    /// A receiver fed only while [`Hub::demand`] is above zero.
    pub fn subscribe_on_demand(&self) -> OnDemand {
        // Counted before the receiver exists, so `wanted` never sees it as
        // an unconditional subscriber.
        self.passive.fetch_add(1, Ordering::AcqRel);
        OnDemand {
            rx: self.tx.subscribe(),
            passive: self.passive.clone(),
        }
    }

    /// The counter of parties wanting on-demand receivers fed.
    pub fn demand(&self) -> Arc<AtomicUsize> {
        self.demand.clone()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AgentState;

    fn ev(at: u64) -> Event {
        Event {
            agent: "1001".into(),
            queue: "8000".into(),
            from: AgentState::NotReady,
            to: AgentState::Ready,
            reason: None,
            pending: None,
            cause: Cause::Fac,
            at,
            removed: false,
        }
    }

    #[test]
    fn an_on_demand_receiver_is_fed_only_while_demand_is_counted() {
        let hub = Hub::new(16);
        let mut feed = hub.subscribe_on_demand();
        assert!(!hub.wanted());
        hub.publish(ev(1));
        assert!(feed.rx.try_recv().is_err(), "nobody wanted event 1");
        hub.demand().fetch_add(1, Ordering::AcqRel);
        assert!(hub.wanted());
        hub.publish(ev(2));
        assert_eq!(feed.rx.try_recv().unwrap().at, 2);
        hub.demand().fetch_sub(1, Ordering::AcqRel);
        hub.publish(ev(3));
        assert!(feed.rx.try_recv().is_err(), "demand went back to zero");
    }

    #[test]
    fn a_plain_subscriber_always_gets_events_and_its_drop_is_noticed() {
        let hub = Hub::new(16);
        let feed = hub.subscribe_on_demand();
        let mut rx = hub.subscribe();
        hub.publish(ev(1));
        assert_eq!(rx.try_recv().unwrap().at, 1);
        drop(rx);
        assert!(!hub.wanted());
        drop(feed);
        assert!(!hub.wanted());
        let mut rx = hub.subscribe();
        hub.publish(ev(2));
        assert_eq!(rx.try_recv().unwrap().at, 2);
    }
}
