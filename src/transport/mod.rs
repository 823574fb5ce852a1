//! UDP, TCP, TLS (RFC 3261 §18, §26) and WebSocket (RFC 7118)
//! transports: sockets, readers and writers,
//! the shell side of SIP. It owns no protocol state: readers hand whole
//! parsed messages ([`Inbound`]) to the UAS loop, and [`Flows`] sends what
//! the UAS hands out.
//!
//! Readers frame and parse on their own task, so the UAS only ever sees
//! whole parsed messages; a message that does not parse is answered `400`
//! right here when it has a usable Via, and otherwise dropped and counted.
//! A bad datagram never stops the UDP loop; a framing error closes only its
//! own TCP connection. Per-source limits ([`admission`]) are applied before
//! parsing.

mod admission;
mod flows;
mod tcp;
pub mod tls;
mod udp;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use crate::sip::build;
use crate::uas::Transport;

pub use admission::{Exempt, SourceLimits, LOG_INTERVAL, RATE_SOURCES};
pub use flows::Flows;
pub use tcp::{dial_timeout, run_stream, run_tcp, Connector, TcpConn, Unsent};
pub use tls::{TlsContext, TlsFiles};
pub use udp::UdpReaders;

/// The socket or connection a message came on: the UAS's opaque flow.
#[derive(Clone, Debug)]
pub enum Link {
    /// A UDP socket; answers are sent from the port the request came to.
    Udp(Arc<UdpSocket>),
    /// A TCP, TLS or WebSocket connection; answers go back over it (RFC
    /// 3261 §18.2.2, RFC 7118 §5).
    Tcp(TcpConn),
}

/// Where a message came from, as the UAS sees it.
pub type Peer = crate::uas::Peer<Link>;
/// A parsed message and its sender, for the UAS.
pub type Inbound = crate::uas::Inbound<Link>;

impl Link {
    /// UDP, TCP, TLS, WS or WSS.
    pub fn transport(&self) -> Transport {
        match self {
            Self::Udp(_) => Transport::Udp,
            Self::Tcp(conn) => conn.transport,
        }
    }

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
                if let Err(e) = conn.try_send(bytes) {
                    debug!(conn = conn.id, peer = %to, error = %e, "tcp send dropped");
                }
            }
        }
    }
}

/// The peer of a message that came over `link`.
fn peer(addr: SocketAddr, local: SocketAddr, link: Link) -> Peer {
    Peer {
        addr,
        local,
        transport: link.transport(),
        flow: link,
    }
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
    /// WebSocket upgrades refused or failed (no `sip` subprotocol, not a
    /// WebSocket request, unfinished in time).
    pub ws_refused: AtomicU64,
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
    /// Certificates for `tls:` and `wss:` listeners and for TLS
    /// connections facd opens; None without `sip.tls_cert`.
    pub tls: Option<Arc<TlsContext>>,
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
            peer.flow.send_to(to, bytes);
        }
        _ => debug!(peer = %peer.addr, reason = %frame_err.reason, "malformed message dropped"),
    }
}
