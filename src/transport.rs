//! UDP and TCP transports (RFC 3261 §18): sockets, readers and writers.
//!
//! Readers frame and parse on their own task, so the core only ever sees
//! whole parsed messages; a message that does not parse is answered `400`
//! right here when it has a usable Via, and otherwise dropped and counted.
//! A bad datagram never stops the UDP loop; a framing error closes only its
//! own TCP connection. This module owns no protocol state.
//!
//! Per-source limits are applied here, before parsing, so that a flood
//! costs one table lookup per message: each source IP has a token bucket of
//! messages (over it, messages are dropped silently: a UDP source address
//! may be forged, and answering would reflect the flood at it) and a cap
//! on open TCP connections. An IPv6 source is its /64. Sources in
//! `limits.exempt_sources` skip both.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::limits::{source_key, ConnLimiter, IpNet, RateLimiter, RateLimits, RateVerdict};
use crate::sip::build::{self, NoRoute};
use crate::sip::framing::{self, Frame, StreamDecoder};
use crate::sip::message::{parse_message, Message};

/// Where a message came from and how to answer it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The packet's source address (RFC 3261 §18.2.1 `received`).
    pub addr: SocketAddr,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// The socket or connection to answer on.
    pub link: Link,
}

/// The socket or connection of a [`Peer`].
#[derive(Clone, Debug)]
pub enum Link {
    /// A UDP socket; answers are sent from the port the request came to.
    Udp(Arc<UdpSocket>),
    /// A TCP connection; answers go back over it (RFC 3261 §18.2.2).
    Tcp(TcpConn),
    /// A dialog's TCP flow: the connection its request came on, then one
    /// facd opens when that has closed (see [`TcpFlow`]).
    Flow(TcpFlow),
}

impl Link {
    /// The link for requests inside a dialog created by a request that
    /// came over `self`: UDP stays the socket; TCP becomes a [`TcpFlow`]
    /// that reconnects to `next_hop()` (called only for TCP) from
    /// `local_ip` once the connection has closed. `call_id` labels logs.
    pub fn in_dialog(
        &self,
        local_ip: IpAddr,
        next_hop: impl FnOnce() -> Result<SocketAddr, NoRoute>,
        call_id: &[u8],
    ) -> Self {
        match self {
            Self::Udp(_) => self.clone(),
            Self::Tcp(conn) => {
                Self::Flow(TcpFlow::new(conn.clone(), local_ip, next_hop(), call_id))
            }
            Self::Flow(flow) => {
                Self::Flow(TcpFlow::new(flow.current(), local_ip, next_hop(), call_id))
            }
        }
    }

    /// Sends `bytes` to `to` (UDP) or over the connection (TCP; `to` is
    /// ignored). Never blocks: a full socket buffer hands the datagram to a
    /// task, a full or closed connection drops it with a log line (a
    /// [`TcpFlow`] opens a new connection instead).
    pub fn send_to(&self, to: SocketAddr, bytes: Bytes) {
        match self {
            Self::Udp(sock) => match sock.try_send_to(&bytes, to) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let sock = sock.clone();
                    tokio::spawn(async move {
                        if let Err(e) = sock.send_to(&bytes, to).await {
                            debug!(%to, error = %e, "udp send failed");
                        }
                    });
                }
                Err(e) => debug!(%to, error = %e, "udp send failed"),
            },
            Self::Tcp(conn) => {
                if let Err(e) = conn.try_send(bytes) {
                    debug!(conn = conn.id, peer = %to, error = %e, "tcp send dropped");
                }
            }
            Self::Flow(flow) => flow.send(bytes),
        }
    }
}

/// The write side of one TCP connection.
#[derive(Clone, Debug)]
pub struct TcpConn {
    /// A process-unique connection number, for logs.
    pub id: u64,
    shared: Arc<ConnShared>,
}

#[derive(Debug)]
struct ConnShared {
    tx: mpsc::Sender<Bytes>,
    /// False once the reader or the writer has ended (the connection is
    /// closing or closed): nothing new should be queued on it.
    open: AtomicBool,
    /// Opens connections for [`TcpFlow`]s born on this one.
    connector: Arc<Connector>,
}

/// Why [`TcpConn::try_send`] did not queue.
#[derive(Debug)]
enum SendError {
    /// The connection is closing or closed; the bytes are handed back.
    Closed(Bytes),
    /// Its queue is full (a peer that does not read).
    Full,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed(_) => "connection closed",
            Self::Full => "connection queue full",
        })
    }
}

impl TcpConn {
    fn new(id: u64, tx: mpsc::Sender<Bytes>, connector: Arc<Connector>) -> Self {
        Self {
            id,
            shared: Arc::new(ConnShared {
                tx,
                open: AtomicBool::new(true),
                connector,
            }),
        }
    }

    /// True until the connection's reader or writer has ended.
    pub fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire) && !self.shared.tx.is_closed()
    }

    fn close(&self) {
        self.shared.open.store(false, Ordering::Release);
    }

    /// Queues `bytes` unless the writer has ended. A connection whose
    /// reader has ended still takes them: answers queued in its last
    /// moments go out before it closes.
    fn try_send(&self, bytes: Bytes) -> Result<(), SendError> {
        self.shared.tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(b) => SendError::Closed(b),
            mpsc::error::TrySendError::Full(_) => SendError::Full,
        })
    }
}

/// A dialog's or subscription's TCP flow (SPEC §4): requests go over the
/// connection the dialog's request came on while it is open (RFC 5626
/// §4.3 style: phones behind NAT accept no new connection); once it has
/// closed, over a connection facd opens to the next hop (RFC 3261
/// §18.1.1), which then serves the rest of the dialog. Clones share the
/// flow. Only a literal address is ever dialled ([`build::next_hop`]).
#[derive(Clone, Debug)]
pub struct TcpFlow(Arc<FlowState>);

#[derive(Debug)]
struct FlowState {
    next_hop: Result<SocketAddr, NoRoute>,
    /// The IP the dialog's request came to: new connections come from it,
    /// so the peer sees the same server address and our Via sent-by (that
    /// address at our listening port, RFC 3261 §18.2.2) stays true.
    local_ip: IpAddr,
    call_id: String,
    conn: Mutex<TcpConn>,
    /// "Cannot reconnect" was logged (once per flow).
    warned: AtomicBool,
}

impl TcpFlow {
    fn new(
        conn: TcpConn,
        local_ip: IpAddr,
        next_hop: Result<SocketAddr, NoRoute>,
        call_id: &[u8],
    ) -> Self {
        Self(Arc::new(FlowState {
            next_hop,
            local_ip,
            call_id: String::from_utf8_lossy(call_id).into_owned(),
            conn: Mutex::new(conn),
            warned: AtomicBool::new(false),
        }))
    }

    /// The connection requests go over now.
    pub fn current(&self) -> TcpConn {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TcpConn> {
        self.0
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends over the current connection, or opens a new one to the next
    /// hop when it has closed (RFC 3261 §18.1.1). Never blocks: the
    /// connect runs on a task and what is sent meanwhile waits in the new
    /// connection's queue.
    fn send(&self, bytes: Bytes) {
        let f = &*self.0;
        let mut conn = self.lock();
        // A connection that is closing takes no new in-dialog request: it
        // would be lost with it.
        let sent = if conn.is_open() {
            conn.try_send(bytes)
        } else {
            Err(SendError::Closed(bytes))
        };
        let bytes = match sent {
            Ok(()) => return,
            Err(SendError::Full) => {
                debug!(conn = conn.id, call_id = %f.call_id, "tcp send dropped: connection queue full");
                return;
            }
            Err(SendError::Closed(b)) => b,
        };
        let connector = conn.shared.connector.clone();
        match &f.next_hop {
            Err(why) => {
                if !f.warned.swap(true, Ordering::Relaxed) {
                    warn!(conn = conn.id, call_id = %f.call_id, error = %why, "tcp connection of the dialog closed and its remote target cannot be dialled: in-dialog request dropped");
                }
                connector.unsent(bytes, None, why.to_string());
            }
            Ok(to) => {
                let new = connector.dial(*to, f.local_ip, &f.call_id);
                debug!(old = conn.id, conn = new.id, peer = %to, call_id = %f.call_id, "tcp connection of the dialog closed: opening a new one to its remote target");
                if let Err(e) = new.try_send(bytes) {
                    debug!(conn = new.id, error = %e, "tcp send dropped");
                }
                *conn = new;
            }
        }
    }
}

/// A request the transport could not send: no connection to its next hop
/// could be opened. The core ends its client transaction (RFC 3261
/// §17.1.4: a transport error is reported to the transaction user).
#[derive(Debug)]
pub struct Unsent {
    /// The request, as the core built it.
    pub request: Bytes,
    /// Where it should have gone, if an address was known.
    pub to: Option<SocketAddr>,
    /// Why not.
    pub error: String,
}

/// How long a connect may take: Timer F (64·T1, the life of the
/// transaction it carries), at most 32 s.
pub fn dial_timeout(t1: Duration) -> Duration {
    (t1 * 64).min(Duration::from_secs(32))
}

/// Opens and registers TCP connections: accepted ones ([`run_tcp`]) and
/// those a [`TcpFlow`] dials. Both share the connection cap, the per-IP
/// cap, the idle and message timeouts and a reader feeding the core.
#[derive(Debug)]
pub struct Connector {
    cfg: TransportConfig,
    /// The core's input. Held for as long as any connection or dialog
    /// may need it, so the core's channel stays open through a drain even
    /// on a TCP-only server with no connection left.
    core: mpsc::Sender<Inbound>,
    unsent: mpsc::UnboundedSender<Unsent>,
    stats: Arc<Stats>,
    /// Ends every connection (shutdown).
    stop: CancellationToken,
    /// `sip.max_tcp_connections`, over all listeners and dialled connections.
    cap: Arc<Semaphore>,
    next_id: AtomicU64,
    dial_timeout: Duration,
}

impl Connector {
    /// A connector feeding `core`; requests it cannot send go to `unsent`.
    pub fn new(
        cfg: TransportConfig,
        core: &mpsc::Sender<Inbound>,
        unsent: mpsc::UnboundedSender<Unsent>,
        stats: Arc<Stats>,
        stop: CancellationToken,
        dial_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            cap: Arc::new(Semaphore::new(cfg.max_tcp_connections)),
            cfg,
            core: core.clone(),
            unsent,
            stats,
            stop,
            next_id: AtomicU64::new(1),
            dial_timeout,
        })
    }

    fn unsent(&self, request: Bytes, to: Option<SocketAddr>, error: String) {
        let _ = self.unsent.send(Unsent { request, to, error });
    }

    /// Starts a connection to `to` from `local_ip` (port chosen by the OS)
    /// and returns its write side at once: what is sent before the connect
    /// completes waits in its queue; if the connect fails, every request
    /// queued is handed back as [`Unsent`].
    fn dial(self: &Arc<Self>, to: SocketAddr, local_ip: IpAddr, call_id: &str) -> TcpConn {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
        let conn = TcpConn::new(id, tx, self.clone());
        let (this, conn2, call_id) = (self.clone(), conn.clone(), call_id.to_string());
        tokio::spawn(async move {
            let opened = tokio::select! {
                r = this.connect(to, local_ip) => r,
                () = this.stop.cancelled() => Err("shutting down".to_string()),
            };
            match opened {
                Ok((stream, permit, slot)) => {
                    this.stats.tcp_dialed.fetch_add(1, Ordering::Relaxed);
                    let local = stream
                        .local_addr()
                        .map_or_else(|e| e.to_string(), |a| a.to_string());
                    info!(conn = id, peer = %to, %local, %call_id, "tcp connection opened to the remote target (the dialog's connection had closed)");
                    this.serve(stream, to, conn2, rx).await;
                    drop(slot);
                    drop(permit);
                }
                Err(error) => {
                    this.stats.tcp_dial_failed.fetch_add(1, Ordering::Relaxed);
                    warn!(conn = id, peer = %to, %error, %call_id, "cannot open a tcp connection to the remote target: in-dialog request dropped");
                    conn2.close();
                    let mut rx = rx;
                    rx.close();
                    while let Ok(request) = rx.try_recv() {
                        this.unsent(request, Some(to), error.clone());
                    }
                }
            }
        });
        conn
    }

    /// Connects under the caps, within the dial timeout.
    async fn connect(
        &self,
        to: SocketAddr,
        local_ip: IpAddr,
    ) -> Result<(TcpStream, tokio::sync::OwnedSemaphorePermit, ConnSlot), String> {
        let permit = self.cap.clone().try_acquire_owned().map_err(|_| {
            self.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            format!(
                "connection cap reached (sip.max_tcp_connections = {})",
                self.cfg.max_tcp_connections
            )
        })?;
        let slot = self.cfg.limits.open(to.ip()).ok_or_else(|| {
            self.stats
                .tcp_refused_per_ip
                .fetch_add(1, Ordering::Relaxed);
            "per-IP cap reached (limits.tcp_connections_per_ip)".to_string()
        })?;
        let sock = if to.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        if !local_ip.is_unspecified() && local_ip.is_ipv4() == to.is_ipv4() {
            sock.bind(SocketAddr::new(local_ip, 0))
                .map_err(|e| format!("bind {local_ip}: {e}"))?;
        }
        let stream = tokio::time::timeout(self.dial_timeout, sock.connect(to))
            .await
            .map_err(|_| format!("connect timed out after {:?}", self.dial_timeout))?
            .map_err(|e| format!("connect: {e}"))?;
        Ok((stream, permit, slot))
    }

    /// Serves an accepted connection.
    async fn accepted(self: Arc<Self>, stream: TcpStream, addr: SocketAddr) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
        let conn = TcpConn::new(id, tx, self.clone());
        self.serve(stream, addr, conn, rx).await;
    }

    /// Reads, frames and parses messages for the core and writes what is
    /// queued on `conn`, until the peer closes, a timeout or shutdown.
    async fn serve(
        &self,
        stream: TcpStream,
        addr: SocketAddr,
        conn: TcpConn,
        rx: mpsc::Receiver<Bytes>,
    ) {
        serve_tcp(
            stream,
            addr,
            conn,
            rx,
            &self.cfg,
            self.core.clone(),
            &self.stats,
            &self.stop,
        )
        .await;
    }
}

impl Peer {
    /// True on a reliable (stream) transport: no retransmissions (RFC 3261 §17).
    pub fn reliable(&self) -> bool {
        matches!(self.link, Link::Tcp(_) | Link::Flow(_))
    }

    /// `"UDP"` or `"TCP"`, as written in Via and `;transport=`.
    pub fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(_) => "UDP",
            Link::Tcp(_) | Link::Flow(_) => "TCP",
        }
    }

    /// Sends `bytes` to `to` (UDP) or over the connection (TCP; `to` is
    /// ignored). See [`Link::send_to`].
    pub fn send_to(&self, to: SocketAddr, bytes: Bytes) {
        self.link.send_to(to, bytes);
    }

    /// Sends to the peer's own address.
    pub fn send(&self, bytes: Bytes) {
        self.send_to(self.addr, bytes);
    }
}

/// A parsed message and where it came from.
#[derive(Debug)]
pub struct Inbound {
    /// The message.
    pub msg: Message,
    /// Its sender.
    pub peer: Peer,
}

/// Counters shared by the transports.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handed to the core.
    pub messages: AtomicU64,
    /// Messages that did not parse (answered 400/505 or dropped).
    pub malformed: AtomicU64,
    /// Keep-alives seen (CRLF on TCP, empty datagrams on UDP).
    pub keepalives: AtomicU64,
    /// TCP connections refused because of the total cap.
    pub tcp_refused: AtomicU64,
    /// TCP connections refused because of the per-IP cap.
    pub tcp_refused_per_ip: AtomicU64,
    /// Messages dropped because their source was over its request rate.
    pub rate_limited: AtomicU64,
    /// TCP connections facd opened to a remote target (a dialog's
    /// connection had closed).
    pub tcp_dialed: AtomicU64,
    /// Such connections that could not be opened.
    pub tcp_dial_failed: AtomicU64,
}

/// Messages queued for one TCP connection before new ones are dropped.
const CONN_QUEUE: usize = 256;

/// At most one log line per source (or per cause) per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Sources whose request rate is tracked at once (see [`RateLimiter`]).
pub const RATE_SOURCES: usize = 100_000;

/// The per-source limits every reader shares (see the module docs).
#[derive(Debug)]
pub struct SourceLimits {
    rate: Mutex<RateLimiter>,
    conns: Mutex<ConnLimiter>,
    exempt: Vec<IpNet>,
}

impl SourceLimits {
    /// Limits with `rate` per source, `per_ip` TCP connections per source,
    /// and `exempt` sources that skip both.
    pub fn new(rate: RateLimits, per_ip: u32, exempt: Vec<IpNet>) -> Self {
        Self {
            rate: Mutex::new(RateLimiter::new(rate)),
            conns: Mutex::new(ConnLimiter::new(per_ip)),
            exempt,
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(ip))
    }

    /// True if a message from `ip` may be processed; counts and logs (once
    /// per source per interval) the ones dropped.
    fn admit(&self, ip: IpAddr, transport: &'static str, stats: &Stats) -> bool {
        if self.exempt(ip) {
            return true;
        }
        // The table stays consistent even if a holder panicked: keep using it.
        let verdict = self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check(Instant::now(), source_key(ip));
        match verdict {
            RateVerdict::Pass => true,
            RateVerdict::Drop => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                false
            }
            RateVerdict::DropAndLog(n) => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                warn!(source = %ip, transport, dropped = n, "source over its request rate (limits.requests_per_sec): messages dropped");
                false
            }
        }
    }

    /// A slot for a new TCP connection from `ip`, or None at the per-IP cap.
    fn open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        if !self.exempt(ip) {
            let mut conns = self
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !conns.try_open(source_key(ip)) {
                return None;
            }
        }
        Some(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// A TCP connection counted against its source; uncounted when dropped.
#[derive(Debug)]
struct ConnSlot {
    limits: Arc<SourceLimits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if !self.limits.exempt(self.ip) {
            self.limits
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .close(source_key(self.ip));
        }
    }
}

/// Settings the readers need.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Idle TCP connections are closed after this.
    pub tcp_idle: Duration,
    /// A TCP message must be complete within this of its first byte.
    pub tcp_message: Duration,
    /// Cap on open TCP connections.
    pub max_tcp_connections: usize,
    /// SO_RCVBUF for UDP.
    pub udp_recv_buffer: usize,
    /// Per-source request rate and TCP connection cap.
    pub limits: Arc<SourceLimits>,
}

/// Binds a UDP socket with a large receive buffer (on these machines smaller
/// buffers drop packets at ~15k calls/s while the CPUs idle).
pub fn bind_udp(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if let Err(e) = sock.set_recv_buffer_size(recv_buffer) {
        warn!(%addr, error = %e, "could not set the UDP receive buffer");
    }
    let _ = sock.set_send_buffer_size(recv_buffer);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    let got = sock.recv_buffer_size().unwrap_or(0);
    if got < recv_buffer {
        warn!(
            %addr,
            requested = recv_buffer,
            got,
            "UDP receive buffer is smaller than requested; raise net.core.rmem_max"
        );
    }
    UdpSocket::from_std(sock.into())
}

/// Binds a TCP listener (SO_REUSEADDR, IPV6_V6ONLY for IPv6).
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

/// Answers a message that did not parse, if it is answerable, from the
/// transport that received it.
fn answer_malformed(frame_err: crate::sip::message::ParseError, peer: &Peer, stats: &Stats) {
    stats.malformed.fetch_add(1, Ordering::Relaxed);
    match (&frame_err.reply, frame_err.status) {
        (Some(ctx), status) if status != 0 => {
            debug!(peer = %peer.addr, status, reason = %frame_err.reason, "malformed request answered");
            let bytes = build::error_response(ctx, peer.addr, status, &frame_err.reason);
            // RFC 3261 §18.2.2: the source address, at the Via or rport port.
            let to = if peer.reliable() {
                peer.addr
            } else {
                build::response_target(&ctx.top_via, peer.addr)
            };
            peer.send_to(to, bytes);
        }
        _ => debug!(peer = %peer.addr, reason = %frame_err.reason, "malformed message dropped"),
    }
}

/// Reads datagrams until `stop`; one bad datagram never ends the loop.
pub async fn run_udp(
    sock: Arc<UdpSocket>,
    cfg: TransportConfig,
    core: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => {
            warn!(error = %e, "udp socket has no local address");
            return;
        }
    };
    // One reusable buffer; each datagram is copied out at its own size, so
    // a message kept for a while never pins a 64 KiB receive buffer.
    let mut buf = vec![0u8; cfg.max_message_bytes + 1];
    loop {
        let res = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            () = stop.cancelled() => return,
        };
        let (n, addr) = match res {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable and the like surface here on Linux.
                debug!(%local, error = %e, "udp receive error");
                continue;
            }
        };
        if !cfg.limits.admit(addr.ip(), "UDP", &stats) {
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..n]);
        let peer = Peer {
            addr,
            local,
            link: Link::Udp(sock.clone()),
        };
        if data.len() > cfg.max_message_bytes {
            // SPEC §4: an over-long message is answered 400 when what
            // arrived of it has a usable Via (its tail was cut off).
            let reply = parse_message(data).err().and_then(|p| p.reply);
            let err = crate::sip::message::ParseError {
                status: 400,
                reason: "Bad Request - Message Too Large".into(),
                reply,
            };
            debug!(peer = %addr, max = cfg.max_message_bytes, "over-long datagram");
            answer_malformed(err, &peer, &stats);
            continue;
        }
        let frame = match framing::datagram(data, cfg.max_message_bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                stats.keepalives.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(peer = %addr, error = %e, "bad datagram dropped");
                continue;
            }
        };
        match parse_message(frame) {
            Ok(msg) => {
                stats.messages.fetch_add(1, Ordering::Relaxed);
                if core.send(Inbound { msg, peer }).await.is_err() {
                    return;
                }
            }
            Err(e) => answer_malformed(e, &peer, &stats),
        }
    }
}

/// Accepts TCP connections until `stop_accept`, at most
/// `max_tcp_connections` open at once (with those facd dialled).
pub async fn run_tcp(
    listener: TcpListener,
    connector: Arc<Connector>,
    stop_accept: CancellationToken,
) {
    let (cfg, stats) = (&connector.cfg, &connector.stats);
    let (mut last_log, mut refused_since_log) = (None::<Instant>, 0u64);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = stop_accept.cancelled() => return,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connector.cap.clone().try_acquire_owned() else {
            stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
            warn!(peer = %addr, max = cfg.max_tcp_connections, "tcp connection refused: connection cap reached");
            drop(stream);
            continue;
        };
        let Some(slot) = cfg.limits.open(addr.ip()) else {
            // One log line per LOG_INTERVAL with the count since the last,
            // so that a source hammering the cap cannot flood the log.
            stats.tcp_refused_per_ip.fetch_add(1, Ordering::Relaxed);
            refused_since_log += 1;
            let now = Instant::now();
            if last_log.is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL) {
                warn!(peer = %addr, refused = refused_since_log, "tcp connections refused: per-IP cap reached (limits.tcp_connections_per_ip)");
                last_log = Some(now);
                refused_since_log = 0;
            }
            drop(stream);
            continue;
        };
        let connector = connector.clone();
        tokio::spawn(async move {
            connector.accepted(stream, addr).await;
            drop(slot);
            drop(permit);
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_tcp(
    stream: TcpStream,
    addr: SocketAddr,
    conn: TcpConn,
    mut rx: mpsc::Receiver<Bytes>,
    cfg: &TransportConfig,
    core: mpsc::Sender<Inbound>,
    stats: &Stats,
    stop: &CancellationToken,
) {
    let id = conn.id;
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        conn.close();
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let closed = CancellationToken::new();
    let writer_closed = closed.clone();
    let writer_conn = conn.clone();
    let writer = tokio::spawn(async move {
        loop {
            let bytes = tokio::select! {
                biased;
                b = rx.recv() => b,
                () = writer_closed.cancelled() => None,
            };
            let Some(bytes) = bytes else { break };
            if let Err(e) = wr.write_all(&bytes).await {
                debug!(conn = id, error = %e, "tcp write failed");
                break;
            }
        }
        // Nothing more goes out here: a flow opens a new connection.
        writer_conn.close();
        drop(rx);
        let _ = wr.shutdown().await;
    });
    let peer = Peer {
        addr,
        local,
        link: Link::Tcp(conn.clone()),
    };
    debug!(conn = id, peer = %addr, "tcp connection open");
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = StreamDecoder::new();
    let mut partial_since: Option<tokio::time::Instant> = None;
    let why = 'conn: loop {
        // Drain every whole frame already buffered before reading more.
        loop {
            match decoder.decode(&mut buf, cfg.max_message_bytes) {
                Ok(Some(Frame::Message(_))) if !cfg.limits.admit(addr.ip(), "TCP", stats) => {}
                Ok(Some(Frame::Message(frame))) => match parse_message(frame) {
                    Ok(msg) => {
                        stats.messages.fetch_add(1, Ordering::Relaxed);
                        let inbound = Inbound {
                            msg,
                            peer: peer.clone(),
                        };
                        if core.send(inbound).await.is_err() {
                            break 'conn "shutting down".to_string();
                        }
                    }
                    Err(e) => answer_malformed(e, &peer, stats),
                },
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                    stats.keepalives.fetch_add(1, Ordering::Relaxed);
                    let _ = conn.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(None) => break,
                Err(e) => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    break 'conn format!("framing error: {e}");
                }
            }
        }
        // A message must arrive whole within tcp_message_secs of its first
        // byte (slow-loris); an idle connection is closed after tcp_idle.
        let now = tokio::time::Instant::now();
        if buf.is_empty() {
            partial_since = None;
        } else if partial_since.is_none() {
            partial_since = Some(now);
        }
        let wait = match partial_since {
            Some(t) => cfg.tcp_message.saturating_sub(now - t).min(cfg.tcp_idle),
            None => cfg.tcp_idle,
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, rd.read_buf(&mut buf)) => r,
            () = stop.cancelled() => break 'conn "shutting down".to_string(),
        };
        match read {
            Ok(Ok(0)) => break "closed by peer".to_string(),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => break format!("read error: {e}"),
            Err(_) if partial_since.is_some() => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                break format!("message incomplete after {} s", cfg.tcp_message.as_secs());
            }
            Err(_) => break format!("idle for {} s", cfg.tcp_idle.as_secs()),
        }
    };
    debug!(conn = id, peer = %addr, why = %why, "tcp connection closed");
    if why.starts_with("framing") || why.starts_with("message incomplete") {
        info!(conn = id, peer = %addr, why = %why, "tcp connection closed");
    }
    // Nothing new is queued from now on (a flow dials instead); let queued
    // answers (e.g. the 400 for a broken message) go out, then close.
    conn.close();
    tokio::time::sleep(Duration::from_millis(20)).await;
    closed.cancel();
    let _ = writer.await;
}
