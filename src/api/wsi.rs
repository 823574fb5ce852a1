//! The WebSocket `/wsi`, speaking PortSIP's WSI pub/sub protocol as its
//! 22.3 page describes it (SPEC §5): `auth` by `username` or
//! `extension_number`, `subscribe`/`unsubscribe` to `queue_events` and
//! `extension_events` (other PortSIP topics are accepted and ignored), the
//! `queue_status` snapshot, the pushed `queue_agent_status` (with
//! `queue_id`, `tenant_id`, `removed_agents` objects) and
//! `extension_agent_status` (SIP-URI `extension`, `extension_id`,
//! `tenant_id`), pings and a clean close.
//!
//! Fan-out never blocks the core nor one session on another (DESIGN §6):
//! one dispatcher task reads the [`Hub`](crate::events::Hub), serialises each event
//! once and hands it by index (queue, extension) to the sessions that
//! subscribed, each through a bounded queue with `try_send`. A session whose
//! queue is full (it, or its client, stopped keeping up) gets nothing more
//! until it has caught up on a fresh snapshot taken with
//! [`CoreHandle::query`](crate::events::CoreHandle::query); a client that does not
//! read at all is closed after [`SEND_TIMEOUT`]. Memory per session is
//! bounded by [`SESSION_QUEUE`] messages.
//!
//! Choices where PortSIP's page is silent: the auth answer's `id` is the
//! session number (a failed auth's too); a failed auth is answered, then the
//! socket is closed (1008); a subscription without `queues`/`extensions`
//! means everything the caller may see; the subscribe answer is
//! `{"command":"subscribe","status":0}` plus `ignored_topics` when some
//! topics are not served by facd; after it, a `queue_status` per queue and an
//! `extension_agent_status` per extension give the current state before any
//! delta; an `extension_agent_status` delta lists the queues that one change
//! touched (a snapshot lists all); logging out is an update to `LOGGED_OUT`,
//! leaving the queue (REST membership) puts the agent in `removed_agents`;
//! `updated_agents` entries carry facd's `reason` when NOT_READY with one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{ids, ApiConfig, ApiError, Principal, Shared};
use crate::engine::{AgentState, Engine, Event, Millis, ReasonName};
use crate::events::{Hub, OnDemand};

/// Messages a session may have queued before it counts as lagging.
pub const SESSION_QUEUE: usize = 1024;
/// A client that does not take a message within this is closed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The first message (auth) must arrive within this.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// facd pings every session this often; one silent for two pings is closed.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Sessions at once; more get 503.
pub const MAX_SESSIONS: usize = 10_000;
/// Largest message a client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Most bytes a session buffers before the socket (a snapshot may exceed
/// this only by one message).
pub const MAX_WRITE_BUFFER: usize = 1 << 20;
/// Events the dispatcher takes from the hub at once.
const BATCH: usize = 256;

const QUEUE_EVENTS: &str = "queue_events";
const EXTENSION_EVENTS: &str = "extension_events";

/// One session's entry in the registry.
struct Entry {
    tx: mpsc::Sender<Utf8Bytes>,
    lagged: Arc<AtomicBool>,
    wake: Arc<Notify>,
    queues: HashSet<String>,
    exts: HashSet<String>,
    all_exts: bool,
}

#[derive(Default)]
struct Subs {
    sessions: HashMap<u64, Entry>,
    by_queue: HashMap<String, HashSet<u64>>,
    by_ext: HashMap<String, HashSet<u64>>,
    all_exts: HashSet<u64>,
    /// Times a session's queue was full and it was marked lagging.
    lags: AtomicU64,
}

impl Subs {
    fn deliver(&self, id: u64, msg: &Utf8Bytes) {
        let Some(e) = self.sessions.get(&id) else {
            return;
        };
        if e.lagged.load(Ordering::Acquire) {
            return;
        }
        match e.tx.try_send(msg.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                e.lagged.store(true, Ordering::Release);
                e.wake.notify_one();
                self.lags.fetch_add(1, Ordering::Relaxed);
            }
            // The session is ending; it removes itself.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn mark_all_lagged(&self) {
        for e in self.sessions.values() {
            e.lagged.store(true, Ordering::Release);
            e.wake.notify_one();
        }
    }
}

/// The ids and names events carry (PortSIP's `tenant_id`, `queue_id`,
/// `extension_id`, SIP-URI `extension`, `queue_name`).
#[derive(Default)]
pub(crate) struct Naming {
    tenant_id: String,
    domain: String,
    ext_ids: ids::LazyIds,
    /// Queue number → (id, name).
    queues: HashMap<String, (String, String)>,
}

impl Naming {
    pub(crate) fn new(c: &ApiConfig) -> Self {
        Self {
            tenant_id: c.tenant_id.clone(),
            domain: c.realm.clone(),
            ext_ids: c.ext_ids.clone(),
            queues: c
                .queue_info
                .iter()
                .map(|q| (q.number.to_string(), (q.id.clone(), q.name.clone())))
                .collect(),
        }
    }

    fn queue_id(&self, number: &str) -> String {
        match self.queues.get(number) {
            Some((id, _)) => id.clone(),
            None => ids::queue_id(number),
        }
    }
}

/// The WSI registry and dispatcher (cloneable). Built with
/// [`Wsi::for_hub`], so that its sessions are the hub's demand.
#[derive(Clone)]
pub struct Wsi {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subs: Mutex<Subs>,
    next_id: AtomicU64,
    /// Sessions connected now; shared with the hub as its demand, so that
    /// events reach the dispatcher only while a session could want them.
    sessions: Arc<AtomicUsize>,
    naming: std::sync::OnceLock<Naming>,
}

/// A reserved session slot; freeing it on drop.
struct Slot(Wsi);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.inner.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Wsi {
    /// A registry whose sessions count as demand on `hub`.
    pub fn for_hub(hub: &Hub) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: hub.demand(),
                ..Inner::default()
            }),
        }
    }

    fn subs(&self) -> MutexGuard<'_, Subs> {
        // A panic while holding the lock leaves only subscription indexes,
        // which stay consistent entry by entry: keep going.
        self.inner.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the ids and names events carry (once, when the router is built).
    pub(crate) fn set_naming(&self, n: Naming) {
        let _ = self.inner.naming.set(n);
    }

    fn naming(&self) -> &Naming {
        static NONE: std::sync::OnceLock<Naming> = std::sync::OnceLock::new();
        self.inner
            .naming
            .get()
            .unwrap_or_else(|| NONE.get_or_init(Naming::default))
    }

    /// Sessions connected now.
    pub fn sessions(&self) -> usize {
        self.inner.sessions.load(Ordering::Acquire)
    }

    /// How many times a session's queue was full (it then gets a fresh
    /// snapshot once it catches up).
    pub fn lags(&self) -> u64 {
        self.subs().lags.load(Ordering::Relaxed)
    }

    fn reserve(&self) -> Option<Slot> {
        let n = self.inner.sessions.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        (n < MAX_SESSIONS).then_some(slot)
    }

    /// Reads the hub until `stop`, handing each event to its subscribers.
    pub async fn dispatch(self, mut feed: OnDemand, stop: CancellationToken) {
        let rx = &mut feed.rx;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let first = tokio::select! {
                r = rx.recv() => r,
                () = stop.cancelled() => return,
            };
            match first {
                Ok(ev) => batch.push(ev),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(missed = n, "wsi dispatcher lagged; every session resyncs");
                    self.subs().mark_all_lagged();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(ev) => batch.push(ev),
                    Err(_) => break,
                }
            }
            self.fan_out(&batch);
            batch.clear();
        }
    }

    fn fan_out(&self, batch: &[Arc<Event>]) {
        let subs = self.subs();
        if subs.sessions.is_empty() {
            return;
        }
        let naming = self.naming();
        for ev in batch {
            if let Some(ids) = subs
                .by_queue
                .get(ev.queue.as_str())
                .filter(|s| !s.is_empty())
            {
                let agent = AgentRow {
                    ext: &ev.agent,
                    state: ev.to,
                    reason: ev.reason.as_ref(),
                    at: ev.at,
                };
                let (updated, removed) = if ev.removed {
                    (&[][..], std::slice::from_ref(&agent))
                } else {
                    (std::slice::from_ref(&agent), &[][..])
                };
                let msg = queue_message(naming, &ev.queue, updated, removed);
                for &id in ids {
                    subs.deliver(id, &msg);
                }
            }
        }
        // One extension message per run of events from one change.
        let mut i = 0;
        while i < batch.len() {
            let ev = &batch[i];
            let mut j = i + 1;
            while j < batch.len()
                && batch[j].agent == ev.agent
                && batch[j].at == ev.at
                && batch[j].cause == ev.cause
            {
                j += 1;
            }
            let by = subs.by_ext.get(ev.agent.as_str()).filter(|s| !s.is_empty());
            if by.is_some() || !subs.all_exts.is_empty() {
                let status: Vec<(&str, AgentState)> = batch[i..j]
                    .iter()
                    .map(|e| (e.queue.as_str(), e.to))
                    .collect();
                let msg = extension_message(naming, &ev.agent, &status, ev.at);
                for &id in by.into_iter().flatten().chain(subs.all_exts.iter()) {
                    subs.deliver(id, &msg);
                }
            }
            i = j;
        }
    }
}

/// One agent in a queue message.
struct AgentRow<'a> {
    ext: &'a str,
    state: AgentState,
    reason: Option<&'a ReasonName>,
    at: Millis,
}

#[derive(Serialize)]
struct QueueAgentStatus<'a> {
    event_type: &'static str,
    queue_id: String,
    tenant_id: &'a str,
    updated_agents: Vec<UpdatedAgent<'a>>,
    removed_agents: Vec<RemovedAgent<'a>>,
}

#[derive(Serialize)]
struct QueueStatus<'a> {
    event_type: &'static str,
    tenant_id: &'a str,
    queue_id: String,
    queue_number: &'a str,
    queue_name: &'a str,
    /// facd has no callers waiting (it is not the ACD): always empty.
    waiting_list: [(); 0],
    agents: Vec<UpdatedAgent<'a>>,
}

#[derive(Serialize)]
struct UpdatedAgent<'a> {
    state: AgentState,
    agent_extension_number: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a ReasonName>,
}

#[derive(Serialize)]
struct RemovedAgent<'a> {
    agent_extension_number: &'a str,
}

#[derive(Serialize)]
struct ExtensionAgentStatus<'a> {
    event_type: &'static str,
    extension: String,
    extension_id: String,
    tenant_id: &'a str,
    agent_status: Vec<AgentStatus<'a>>,
    time: String,
}

#[derive(Serialize)]
struct AgentStatus<'a> {
    queue_number: &'a str,
    status: AgentState,
}

fn json(v: &impl Serialize) -> Utf8Bytes {
    // Serialising these plain structs cannot fail.
    serde_json::to_string(v).unwrap_or_default().into()
}

fn updated<'a>(rows: &'a [AgentRow<'a>]) -> Vec<UpdatedAgent<'a>> {
    rows.iter()
        .map(|r| UpdatedAgent {
            state: r.state,
            agent_extension_number: r.ext,
            timestamp: (r.at / 1000).to_string(),
            reason: r.reason,
        })
        .collect()
}

/// `queue_agent_status`, timestamps in Unix seconds as strings.
fn queue_message(
    n: &Naming,
    queue: &str,
    rows: &[AgentRow<'_>],
    removed: &[AgentRow<'_>],
) -> Utf8Bytes {
    json(&QueueAgentStatus {
        event_type: "queue_agent_status",
        queue_id: n.queue_id(queue),
        tenant_id: &n.tenant_id,
        updated_agents: updated(rows),
        removed_agents: removed
            .iter()
            .map(|r| RemovedAgent {
                agent_extension_number: r.ext,
            })
            .collect(),
    })
}

/// `queue_status`: the snapshot sent after a subscribe.
fn queue_snapshot(n: &Naming, queue: &str, rows: &[AgentRow<'_>]) -> Utf8Bytes {
    let name = n.queues.get(queue).map_or("", |(_, name)| name.as_str());
    json(&QueueStatus {
        event_type: "queue_status",
        tenant_id: &n.tenant_id,
        queue_id: n.queue_id(queue),
        queue_number: queue,
        queue_name: name,
        waiting_list: [],
        agents: updated(rows),
    })
}

/// `extension_agent_status`.
fn extension_message(
    n: &Naming,
    ext: &str,
    status: &[(&str, AgentState)],
    at: Millis,
) -> Utf8Bytes {
    json(&ExtensionAgentStatus {
        event_type: "extension_agent_status",
        extension: format!("sip:{ext}@{}", n.domain),
        extension_id: n.ext_ids.get().id(ext).unwrap_or_default(),
        tenant_id: &n.tenant_id,
        agent_status: status
            .iter()
            .map(|&(q, s)| AgentStatus {
                queue_number: q,
                status: s,
            })
            .collect(),
        time: (at / 1000).to_string(),
    })
}

/// The current status of what a session subscribed to, as events.
fn snapshot(
    n: &Naming,
    e: &Engine,
    queues: &[String],
    exts: &[String],
    all_exts: Option<&[String]>,
) -> Vec<Utf8Bytes> {
    let mut out = Vec::new();
    for q in queues {
        if let Some(members) = e.queue_agents(q) {
            let rows: Vec<AgentRow<'_>> = members
                .iter()
                .map(|(ext, _, v)| AgentRow {
                    ext,
                    state: v.state,
                    reason: v.reason.as_ref(),
                    at: v.since,
                })
                .collect();
            out.push(queue_snapshot(n, q, &rows));
        }
    }
    let mut everyone = BTreeSet::new();
    if let Some(all_queues) = all_exts {
        for q in all_queues {
            for (ext, _, _) in e.queue_agents(q).into_iter().flatten() {
                everyone.insert(ext);
            }
        }
    }
    let everyone = everyone.iter().map(|x| x.as_str());
    for ext in exts.iter().map(|x| x.as_str()).chain(everyone) {
        if let Some(view) = e.agent(ext) {
            let status: Vec<(&str, AgentState)> = view
                .queues
                .iter()
                .map(|v| (v.queue.as_str(), v.state))
                .collect();
            let at = view.queues.iter().map(|v| v.since).max().unwrap_or(0);
            out.push(extension_message(n, ext, &status, at));
        }
    }
    out
}

/// `GET /wsi`: the WebSocket upgrade.
pub(crate) async fn upgrade(
    State(st): State<Shared>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::BadRequest(format!("expected a WebSocket upgrade: {e}"))
                .into_response()
        }
    };
    if st.stop.is_cancelled() {
        return ApiError::Stopped.into_response();
    }
    let Some(slot) = st.wsi.reserve() else {
        return ApiError::Busy(format!("more than {MAX_SESSIONS} WebSocket sessions"))
            .into_response();
    };
    // Small buffers: a session's memory stays a few KiB plus its queue
    // (tungstenite's defaults are 128 KiB each way).
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            Session::run(st, socket).await;
            drop(slot);
        })
}

/// A client's command (unknown fields are ignored, as PortSIP clients send
/// extras such as request ids).
#[derive(Debug, Deserialize)]
struct ClientCommand {
    command: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    extension_number: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    queues: Option<Vec<String>>,
    #[serde(default)]
    extensions: Option<Vec<String>>,
}

#[derive(Serialize)]
struct Answer<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    status: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Topics of PortSIP's that facd does not serve (accepted, ignored).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignored_topics: Vec<String>,
}

fn answer(command: &str, result: Result<(), String>) -> Message {
    let (status, error) = match result {
        Ok(()) => (0, None),
        Err(e) => (-1, Some(e)),
    };
    Message::Text(json(&Answer {
        command,
        id: None,
        status,
        error,
        ignored_topics: Vec::new(),
    }))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// What a subscribe or unsubscribe names, resolved and checked.
struct Selection {
    queues: Vec<String>,
    exts: Vec<String>,
    all_exts: bool,
    /// Topics named that facd does not serve.
    ignored: Vec<String>,
}

struct Session {
    st: Shared,
    id: u64,
    principal: Principal,
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    rx: mpsc::Receiver<Utf8Bytes>,
    lagged: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// Why a session ended early.
#[derive(Debug)]
struct Gone;

impl Session {
    async fn run(st: Shared, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let id = st.wsi.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(principal) = authenticate(&st, id, &mut sink, &mut stream).await else {
            return;
        };
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        st.wsi.subs().sessions.insert(
            id,
            Entry {
                tx,
                lagged: lagged.clone(),
                wake: wake.clone(),
                queues: HashSet::new(),
                exts: HashSet::new(),
                all_exts: false,
            },
        );
        let mut s = Self {
            st,
            id,
            principal,
            sink,
            stream,
            rx,
            lagged,
            wake,
        };
        info!(session = id, who = ?s.principal, "wsi session");
        let ok = Message::Text(json(&Answer {
            command: "auth",
            id: Some(id.to_string()),
            status: 0,
            error: None,
            ignored_topics: Vec::new(),
        }));
        if s.send(ok).await.is_ok() {
            let _ = s.serve().await;
        }
        s.unregister();
        debug!(session = id, "wsi session ended");
    }

    fn unregister(&self) {
        let mut subs = self.st.wsi.subs();
        if let Some(e) = subs.sessions.remove(&self.id) {
            for q in e.queues {
                if let Some(set) = subs.by_queue.get_mut(&q) {
                    set.remove(&self.id);
                }
            }
            for x in e.exts {
                if let Some(set) = subs.by_ext.get_mut(&x) {
                    set.remove(&self.id);
                }
            }
            subs.all_exts.remove(&self.id);
        }
    }

    async fn send(&mut self, m: Message) -> Result<(), Gone> {
        match tokio::time::timeout(SEND_TIMEOUT, self.sink.send(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!(session = self.id, error = %e, "wsi write failed");
                Err(Gone)
            }
            Err(_) => {
                warn!(session = self.id, "wsi client stopped reading; closing it");
                Err(Gone)
            }
        }
    }

    /// Sends `first` and whatever else is queued, then flushes once.
    async fn send_queued(&mut self, first: Utf8Bytes) -> Result<(), Gone> {
        let write = async {
            self.sink.feed(Message::Text(first)).await?;
            for _ in 0..64 {
                match self.rx.try_recv() {
                    Ok(m) => self.sink.feed(Message::Text(m)).await?,
                    Err(_) => break,
                }
            }
            self.sink.flush().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Gone),
            Err(_) => {
                warn!(session = self.id, "wsi client stopped reading; closing it");
                Err(Gone)
            }
        }
    }

    async fn serve(&mut self) -> Result<(), Gone> {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut heard = tokio::time::Instant::now();
        let stop = self.st.stop.clone();
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    // RFC 6455 §7.4.1: 1001, the server is going away.
                    let _ = self.send(close(1001, "facd is shutting down")).await;
                    return Ok(());
                }
                () = self.wake.notified() => {
                    if self.lagged.load(Ordering::Acquire) {
                        self.resync().await?;
                    }
                }
                m = self.rx.recv() => match m {
                    Some(m) => self.send_queued(m).await?,
                    None => return Ok(()),
                },
                m = self.stream.next() => {
                    heard = tokio::time::Instant::now();
                    match m {
                        Some(Ok(Message::Text(t))) => self.on_text(&t).await?,
                        Some(Ok(Message::Binary(_))) => {
                            self.send(answer("", Err("binary messages are not understood; send JSON text".into()))).await?;
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => {
                            // The library queued the closing handshake's answer.
                            let _ = self.sink.flush().await;
                            return Ok(());
                        }
                        Some(Err(e)) => {
                            debug!(session = self.id, error = %e, "wsi read failed");
                            return Err(Gone);
                        }
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > 2 * PING_EVERY {
                        info!(session = self.id, "wsi client silent; closing it");
                        let _ = self.send(close(1011, "no answer to ping")).await;
                        return Err(Gone);
                    }
                    self.send(Message::Ping(Default::default())).await?;
                }
            }
        }
    }

    /// Drops what was queued and sends a fresh snapshot of every
    /// subscription; deltas queued after it follow in order.
    async fn resync(&mut self) -> Result<(), Gone> {
        self.lagged.store(false, Ordering::Release);
        let mut dropped = 0usize;
        while self.rx.try_recv().is_ok() {
            dropped += 1;
        }
        info!(
            session = self.id,
            dropped, "wsi session lagged; sending a snapshot"
        );
        let (queues, exts, all) = {
            let subs = self.st.wsi.subs();
            let e = subs.sessions.get(&self.id).ok_or(Gone)?;
            (
                e.queues.iter().cloned().collect::<Vec<_>>(),
                e.exts.iter().cloned().collect::<Vec<_>>(),
                e.all_exts,
            )
        };
        self.send_snapshot(Selection {
            queues,
            exts,
            all_exts: all,
            ignored: Vec::new(),
        })
        .await
    }

    async fn send_snapshot(&mut self, sel: Selection) -> Result<(), Gone> {
        let all_queues = sel.all_exts.then(|| self.st.config.get().queues.clone());
        let wsi = self.st.wsi.clone();
        let msgs = self
            .st
            .core
            .query(move |e| {
                snapshot(
                    wsi.naming(),
                    e,
                    &sel.queues,
                    &sel.exts,
                    all_queues.as_deref(),
                )
            })
            .await
            .map_err(|_| Gone)?;
        for m in msgs {
            self.send(Message::Text(m)).await?;
        }
        Ok(())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Gone> {
        let cmd: ClientCommand = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                return self
                    .send(answer("", Err(format!("invalid JSON command: {e}"))))
                    .await
            }
        };
        match cmd.command.as_str() {
            "auth" => {
                self.send(answer("auth", Err("already authenticated".into())))
                    .await
            }
            "subscribe" => match self.select(&cmd).await {
                Ok(mut sel) => {
                    self.subscribe(&sel);
                    let ok = Message::Text(json(&Answer {
                        command: "subscribe",
                        id: None,
                        status: 0,
                        error: None,
                        ignored_topics: std::mem::take(&mut sel.ignored),
                    }));
                    self.send(ok).await?;
                    self.send_snapshot(sel).await
                }
                Err(e) => self.send(answer("subscribe", Err(e))).await,
            },
            "unsubscribe" => match self.select(&cmd).await {
                Ok(sel) => {
                    self.unsubscribe(&sel);
                    self.send(answer("unsubscribe", Ok(()))).await
                }
                Err(e) => self.send(answer("unsubscribe", Err(e))).await,
            },
            other => {
                self.send(answer(
                    other,
                    Err(format!(
                        "unknown command {other:?}: expected auth, subscribe or unsubscribe"
                    )),
                ))
                .await
            }
        }
    }

    /// Resolves and checks a (un)subscribe: names known, and an agent only
    /// its own extension and queues (SPEC §5). Topics other than
    /// `queue_events` and `extension_events` (PortSIP's `cdr_events`,
    /// `queue_management_events`, …) are ignored and reported.
    async fn select(&self, cmd: &ClientCommand) -> Result<Selection, String> {
        let topics = cmd
            .topics
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or("topics is required: [\"queue_events\"] and/or [\"extension_events\"]")?;
        let ignored: Vec<String> = topics
            .iter()
            .filter(|t| *t != QUEUE_EVENTS && *t != EXTENSION_EVENTS)
            .cloned()
            .collect();
        let want_queues = topics.iter().any(|t| t == QUEUE_EVENTS);
        let want_exts = topics.iter().any(|t| t == EXTENSION_EVENTS);
        if cmd.queues.is_some() && !want_queues {
            return Err("queues is only for the queue_events topic".into());
        }
        if cmd.extensions.is_some() && !want_exts {
            return Err("extensions is only for the extension_events topic".into());
        }
        let principal = self.principal.clone();
        let queues = cmd.queues.clone().filter(|q| !q.is_empty());
        let exts = cmd.extensions.clone().filter(|x| !x.is_empty());
        let all_queues = self.st.config.get().queues.clone();
        self.st
            .core
            .query(move |e| {
                let mut sel = Selection {
                    queues: Vec::new(),
                    exts: Vec::new(),
                    all_exts: false,
                    ignored,
                };
                let own_queues: Option<Vec<String>> = match &principal {
                    Principal::Admin => None,
                    Principal::Agent(me) => Some(
                        e.agent(me)
                            .map(|v| v.queues.iter().map(|q| q.queue.to_string()).collect())
                            .unwrap_or_default(),
                    ),
                };
                if want_queues {
                    sel.queues = match (queues, &own_queues) {
                        (None, None) => all_queues.clone(),
                        (None, Some(own)) => own.clone(),
                        (Some(qs), own) => {
                            for q in &qs {
                                if !all_queues.contains(q) {
                                    return Err(format!("unknown queue {q:?}"));
                                }
                                if own.as_ref().is_some_and(|o| !o.contains(q)) {
                                    return Err(format!(
                                        "not allowed: queue {q:?} is not one of your queues"
                                    ));
                                }
                            }
                            qs
                        }
                    };
                }
                if want_exts {
                    match (exts, &principal) {
                        (None, Principal::Admin) => sel.all_exts = true,
                        (None, Principal::Agent(me)) => sel.exts = vec![me.clone()],
                        (Some(xs), p) => {
                            for x in &xs {
                                if !p.may_act_on(x) {
                                    return Err(format!(
                                        "not allowed: extension {x:?} is not yours"
                                    ));
                                }
                                if !e.has_agent(x) {
                                    return Err(format!("unknown extension {x:?}"));
                                }
                            }
                            sel.exts = xs;
                        }
                    }
                }
                Ok(sel)
            })
            .await
            .map_err(|e| e.to_string())?
    }

    fn subscribe(&self, sel: &Selection) {
        let mut guard = self.st.wsi.subs();
        let subs = &mut *guard;
        let Some(e) = subs.sessions.get_mut(&self.id) else {
            return;
        };
        for q in &sel.queues {
            e.queues.insert(q.clone());
            subs.by_queue.entry(q.clone()).or_default().insert(self.id);
        }
        for x in &sel.exts {
            e.exts.insert(x.clone());
            subs.by_ext.entry(x.clone()).or_default().insert(self.id);
        }
        if sel.all_exts {
            e.all_exts = true;
            subs.all_exts.insert(self.id);
        }
    }

    fn unsubscribe(&self, sel: &Selection) {
        let mut guard = self.st.wsi.subs();
        let subs = &mut *guard;
        let Some(e) = subs.sessions.get_mut(&self.id) else {
            return;
        };
        for q in &sel.queues {
            e.queues.remove(q);
            if let Some(set) = subs.by_queue.get_mut(q) {
                set.remove(&self.id);
            }
        }
        for x in &sel.exts {
            e.exts.remove(x);
            if let Some(set) = subs.by_ext.get_mut(x) {
                set.remove(&self.id);
            }
        }
        if sel.all_exts {
            // "Every extension" off also drops the ones named one by one.
            e.all_exts = false;
            subs.all_exts.remove(&self.id);
            for x in e.exts.drain() {
                if let Some(set) = subs.by_ext.get_mut(&x) {
                    set.remove(&self.id);
                }
            }
        }
    }
}

/// The first message must be `auth` (PortSIP 22.3: `username` or
/// `extension_number`, `password`, optional `domain`); answers a failure
/// (with the session `id`, as PortSIP does) and closes (1008, RFC 6455
/// §7.4.1 policy violation).
async fn authenticate(
    st: &Shared,
    id: u64,
    sink: &mut SplitSink<WebSocket, Message>,
    stream: &mut SplitStream<WebSocket>,
) -> Option<Principal> {
    let first = tokio::time::timeout(AUTH_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => return Some(t),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return None,
            }
        }
    })
    .await;
    let refusal = match first {
        Err(_) => "no auth command within 10 seconds".to_string(),
        Ok(None) => return None,
        Ok(Some(text)) => match serde_json::from_str::<ClientCommand>(&text) {
            Err(e) => format!("invalid JSON command: {e}"),
            Ok(c) if c.command != "auth" => {
                "authenticate first: {\"command\":\"auth\",\"username\":…,\"password\":…}".into()
            }
            Ok(c) => {
                let domain = c.domain.as_deref();
                let who = match (&c.username, &c.extension_number, &c.password) {
                    (Some(u), None, Some(p)) => Ok(st.config.get().login(u, p, domain)),
                    // By extension: only an agent's SIP password.
                    (None, Some(x), Some(p)) => Ok(st
                        .config
                        .get()
                        .login(x, p, domain)
                        .filter(|w| *w == Principal::Agent(x.clone()))),
                    (Some(_), Some(_), _) => Err("send username or extension_number, not both"),
                    _ => Err("auth needs username (or extension_number) and password"),
                };
                match who {
                    Ok(Some(who)) => return Some(who),
                    Ok(None) => {
                        let name = c.username.or(c.extension_number).unwrap_or_default();
                        info!(username = %name, "wsi login refused");
                        "username, extension_number, domain or password error".into()
                    }
                    Err(e) => e.into(),
                }
            }
        },
    };
    let failed = Message::Text(json(&Answer {
        command: "auth",
        id: Some(id.to_string()),
        status: -1,
        error: Some(refusal),
        ignored_topics: Vec::new(),
    }));
    let _ = tokio::time::timeout(SEND_TIMEOUT, async {
        sink.send(failed).await?;
        sink.send(close(1008, "authentication failed")).await
    })
    .await;
    None
}
