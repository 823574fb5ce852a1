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
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::sip::build;
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
}

impl Link {
    /// Sends `bytes` to `to` (UDP) or over the connection (TCP; `to` is
    /// ignored). Never blocks: a full socket buffer hands the datagram to a
    /// task, a full or closed connection drops it with a log line.
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
                if let Err(e) = conn.tx.try_send(bytes) {
                    debug!(conn = conn.id, peer = %to, error = %e, "tcp send dropped");
                }
            }
        }
    }
}

/// The write side of one TCP connection.
#[derive(Clone, Debug)]
pub struct TcpConn {
    /// A process-unique connection number, for logs.
    pub id: u64,
    tx: mpsc::Sender<Bytes>,
}

impl Peer {
    /// True on a reliable (stream) transport: no retransmissions (RFC 3261 §17).
    pub fn reliable(&self) -> bool {
        matches!(self.link, Link::Tcp(_))
    }

    /// `"UDP"` or `"TCP"`, as written in Via and `;transport=`.
    pub fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(_) => "UDP",
            Link::Tcp(_) => "TCP",
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
}

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

/// Accepts TCP connections until `stop`, at most `max_tcp_connections` at once.
pub async fn run_tcp(
    listener: TcpListener,
    cfg: TransportConfig,
    core: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    stop_accept: CancellationToken,
    stop_conns: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_tcp_connections));
    let (mut last_log, mut refused_since_log) = (None::<Instant>, 0u64);
    let next_id = AtomicU64::new(1);
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
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
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (cfg, core, stats, stop) =
            (cfg.clone(), core.clone(), stats.clone(), stop_conns.clone());
        tokio::spawn(async move {
            serve_tcp(stream, addr, id, cfg, core, stats, stop).await;
            drop(slot);
            drop(permit);
        });
    }
}

async fn serve_tcp(
    stream: TcpStream,
    addr: SocketAddr,
    id: u64,
    cfg: TransportConfig,
    core: mpsc::Sender<Inbound>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(256);
    let closed = CancellationToken::new();
    let writer_closed = closed.clone();
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
        let _ = wr.shutdown().await;
    });
    let peer = Peer {
        addr,
        local,
        link: Link::Tcp(TcpConn { id, tx: tx.clone() }),
    };
    debug!(conn = id, peer = %addr, "tcp connection open");
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = StreamDecoder::new();
    let mut partial_since: Option<tokio::time::Instant> = None;
    let why = 'conn: loop {
        // Drain every whole frame already buffered before reading more.
        loop {
            match decoder.decode(&mut buf, cfg.max_message_bytes) {
                Ok(Some(Frame::Message(_))) if !cfg.limits.admit(addr.ip(), "TCP", &stats) => {}
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
                    Err(e) => answer_malformed(e, &peer, &stats),
                },
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                    stats.keepalives.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
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
    drop(tx);
    // Let queued answers (e.g. the 400 for a broken message) go out, then close.
    tokio::time::sleep(Duration::from_millis(20)).await;
    closed.cancel();
    let _ = writer.await;
}
