//! TCP (RFC 3261 §18): accepted connections and those facd opens for
//! in-dialog requests, under one connection cap and the per-IP cap; each
//! has a reader that frames (RFC 3261 §18.3), parses and feeds the UAS
//! loop, a writer fed by a bounded queue, and the idle and slow-message
//! timeouts. TLS connections (RFC 3261 §26.2) are the same after their
//! handshake ([`super::tls`]); WebSocket ones are read frame by frame
//! ([`super::ws`]) under the same caps.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::admission::ConnSlot;
use super::{answer_malformed, peer, Inbound, Link, Stats, TransportConfig, LOG_INTERVAL};
use crate::sip::framing::{Frame, StreamDecoder};
use crate::sip::message::parse_message;
use crate::uas::Transport;

/// Messages queued for one TCP connection before new ones are dropped.
const CONN_QUEUE: usize = 256;

/// The write side of one TCP connection (plain, TLS or WebSocket).
#[derive(Clone, Debug)]
pub struct TcpConn {
    /// A process-unique connection number, for logs.
    pub id: u64,
    /// TCP, TLS, WS or WSS.
    pub transport: Transport,
    shared: Arc<ConnShared>,
}

#[derive(Debug)]
struct ConnShared {
    tx: mpsc::Sender<Bytes>,
    /// False once the reader or the writer has ended (the connection is
    /// closing or closed): nothing new should be queued on it.
    open: AtomicBool,
    /// The connection's places under `sip.max_tcp_connections` and
    /// `limits.tcp_connections_per_ip`, given back as soon as it closes
    /// (its reader or writer ended), not once its tasks have wound down: a
    /// phone that reconnects at once finds its place free.
    caps: std::sync::Mutex<Option<Caps>>,
}

/// A connection's places under the total and the per-IP cap.
pub(super) type Caps = (tokio::sync::OwnedSemaphorePermit, ConnSlot);

/// Why [`TcpConn::try_send`] did not queue.
#[derive(Debug)]
pub(super) enum SendError {
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
    pub(super) fn new(id: u64, tx: mpsc::Sender<Bytes>, transport: Transport) -> Self {
        Self {
            id,
            transport,
            shared: Arc::new(ConnShared {
                tx,
                open: AtomicBool::new(true),
                caps: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Holds the connection's places under the caps until it closes.
    fn hold(&self, caps: Caps) {
        *self
            .shared
            .caps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(caps);
    }

    /// True until the connection's reader or writer has ended.
    pub fn is_open(&self) -> bool {
        self.shared.open.load(Ordering::Acquire) && !self.shared.tx.is_closed()
    }

    pub(super) fn close(&self) {
        self.shared.open.store(false, Ordering::Release);
        drop(
            self.shared
                .caps
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }

    /// Queues `bytes` unless the writer has ended. A connection whose
    /// reader has ended still takes them: answers queued in its last
    /// moments go out before it closes.
    pub(super) fn try_send(&self, bytes: Bytes) -> Result<(), SendError> {
        self.shared.tx.try_send(bytes).map_err(|e| match e {
            mpsc::error::TrySendError::Closed(b) => SendError::Closed(b),
            mpsc::error::TrySendError::Full(_) => SendError::Full,
        })
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
/// those [`super::Flows`] dials. Both share the connection cap, the per-IP
/// cap, the idle and message timeouts and a reader feeding the core.
#[derive(Debug)]
pub struct Connector {
    pub(super) cfg: TransportConfig,
    /// The core's input. Held for as long as any connection or dialog
    /// may need it, so the core's channel stays open through a drain even
    /// on a TCP-only server with no connection left.
    pub(super) core: mpsc::Sender<Inbound>,
    unsent: mpsc::UnboundedSender<Unsent>,
    pub(super) stats: Arc<Stats>,
    /// Ends every connection (shutdown).
    pub(super) stop: CancellationToken,
    /// `sip.max_tcp_connections`, over all listeners and dialled connections.
    pub(super) cap: Arc<Semaphore>,
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

    pub(super) fn unsent(&self, request: Bytes, to: Option<SocketAddr>, error: String) {
        let _ = self.unsent.send(Unsent { request, to, error });
    }

    /// Starts a connection to `to` from `local_ip` (port chosen by the OS)
    /// and returns its write side at once: what is sent before the connect
    /// (and, over TLS, the handshake) completes waits in its queue; if it
    /// fails, every request queued is handed back as [`Unsent`].
    pub(super) fn dial(
        self: &Arc<Self>,
        to: SocketAddr,
        local_ip: IpAddr,
        call_id: &str,
        transport: Transport,
    ) -> TcpConn {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
        let conn = TcpConn::new(id, tx, transport);
        let (this, conn2, call_id) = (self.clone(), conn.clone(), call_id.to_string());
        tokio::spawn(async move {
            let opened = tokio::select! {
                r = this.connect(to, local_ip, transport) => r,
                () = this.stop.cancelled() => Err("shutting down".to_string()),
            };
            match opened {
                Ok((stream, permit, slot)) => {
                    this.stats.tcp_dialed.fetch_add(1, Ordering::Relaxed);
                    let local = stream
                        .tcp()
                        .local_addr()
                        .map_or_else(|e| e.to_string(), |a| a.to_string());
                    info!(conn = id, peer = %to, %local, %call_id, transport = transport.as_str(), "tcp connection opened to the remote target (the dialog's connection had closed)");
                    conn2.hold((permit, slot));
                    this.serve_tcp(stream, to, conn2, rx).await;
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

    /// Connects under the caps, within the dial timeout; over TLS, runs
    /// the client handshake too (within the same timeout), verifying the
    /// peer ([`super::tls::TlsContext::connector`]).
    async fn connect(
        &self,
        to: SocketAddr,
        local_ip: IpAddr,
        transport: Transport,
    ) -> Result<(Stream, tokio::sync::OwnedSemaphorePermit, ConnSlot), String> {
        let tls = match transport {
            Transport::Tls => {
                let ctx = self.cfg.tls.as_ref().ok_or("no sip.tls_cert configured")?;
                Some(ctx.connector(to.ip())?)
            }
            _ => None,
        };
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
        let deadline = tokio::time::Instant::now() + self.dial_timeout;
        let timed_out = || format!("connect timed out after {:?}", self.dial_timeout);
        let stream = tokio::time::timeout_at(deadline, sock.connect(to))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| format!("connect: {e}"))?;
        let stream = match tls {
            None => Stream::Plain(stream),
            Some((connector, name)) => {
                let tls = tokio::time::timeout_at(deadline, connector.connect(name, stream))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| format!("tls handshake: {e}"))?;
                Stream::Tls(Box::new(tls))
            }
        };
        Ok((stream, permit, slot))
    }

    /// Serves an accepted connection: over TLS and WSS after the server
    /// handshake (within `sip.tcp_message_secs`, a handshake that never
    /// finishes is closed), over WS and WSS after the WebSocket upgrade.
    async fn accepted(
        self: Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        transport: Transport,
        caps: Caps,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel::<Bytes>(CONN_QUEUE);
        let conn = TcpConn::new(id, tx, transport);
        conn.hold(caps);
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let tls = match (transport, &self.cfg.tls) {
            (Transport::Tcp, _) => {
                return self.serve_tcp(Stream::Plain(stream), addr, conn, rx).await;
            }
            (Transport::Ws, _) => {
                return super::ws::serve(&self, stream, addr, local, conn, rx).await
            }
            (_, Some(ctx)) => ctx.clone(),
            // Server::bind refuses tls: and wss: listeners without certificates.
            (_, None) => return,
        };
        let handshake = tls.accept(stream, addr, transport.as_str(), self.cfg.tcp_message);
        let done = tokio::select! {
            s = handshake => s,
            () = self.stop.cancelled() => None,
        };
        let Some(tls) = done else { return };
        if transport == Transport::Wss {
            super::ws::serve(&self, tls, addr, local, conn, rx).await;
        } else {
            let (rd, wr) = tokio::io::split(tls);
            self.serve(rd, wr, addr, local, conn, rx).await;
        }
    }

    /// Serves a connection opened or accepted, plain or TLS.
    async fn serve_tcp(
        &self,
        stream: Stream,
        addr: SocketAddr,
        conn: TcpConn,
        rx: mpsc::Receiver<Bytes>,
    ) {
        let _ = stream.tcp().set_nodelay(true);
        let Ok(local) = stream.tcp().local_addr() else {
            conn.close();
            return;
        };
        match stream {
            Stream::Plain(s) => {
                let (rd, wr) = s.into_split();
                self.serve(rd, wr, addr, local, conn, rx).await;
            }
            Stream::Tls(s) => {
                let (rd, wr) = tokio::io::split(s);
                self.serve(rd, wr, addr, local, conn, rx).await;
            }
        }
    }

    /// Reads, frames and parses messages for the core and writes what is
    /// queued on `conn`, until the peer closes, a timeout or shutdown.
    async fn serve<R, W>(
        &self,
        rd: R,
        wr: W,
        addr: SocketAddr,
        local: SocketAddr,
        conn: TcpConn,
        rx: mpsc::Receiver<Bytes>,
    ) where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        serve_stream(
            rd,
            wr,
            addr,
            local,
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

/// A connection facd opened: plain TCP, or TLS after its handshake.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
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
    run_stream(listener, connector, stop_accept, Transport::Tcp).await;
}

/// Accepts connections of `transport` (TCP, TLS, WS or WSS) until
/// `stop_accept`, under the same caps as [`run_tcp`]: a TLS or WebSocket
/// handshake counts against them while it runs.
pub async fn run_stream(
    listener: TcpListener,
    connector: Arc<Connector>,
    stop_accept: CancellationToken,
    transport: Transport,
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
        // The connection gives its places back when it closes (TcpConn::close),
        // and in any case when its last handle is dropped.
        tokio::spawn(connector.accepted(stream, addr, transport, (permit, slot)));
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_stream<R, W>(
    mut rd: R,
    mut wr: W,
    addr: SocketAddr,
    local: SocketAddr,
    conn: TcpConn,
    mut rx: mpsc::Receiver<Bytes>,
    cfg: &TransportConfig,
    core: mpsc::Sender<Inbound>,
    stats: &Stats,
    stop: &CancellationToken,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = conn.id;
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
        // Nothing more goes out here: in-dialog requests get a new connection.
        writer_conn.close();
        drop(rx);
        let _ = wr.shutdown().await;
    });
    let peer = peer(addr, local, Link::Tcp(conn.clone()));
    debug!(conn = id, peer = %addr, transport = conn.transport.as_str(), "tcp connection open");
    let mut buf = BytesMut::with_capacity(4096);
    let mut decoder = StreamDecoder::new();
    let mut partial_since: Option<tokio::time::Instant> = None;
    let why = 'conn: loop {
        // Drain every whole frame already buffered before reading more.
        loop {
            match decoder.decode(&mut buf, cfg.max_message_bytes) {
                Ok(Some(Frame::Message(_)))
                    if !cfg.limits.admit(addr.ip(), conn.transport.as_str(), stats) => {}
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
        info!(conn = id, peer = %addr, transport = conn.transport.as_str(), why = %why, "tcp connection closed");
    }
    // Nothing new is queued from now on (in-dialog requests dial instead); let queued
    // answers (e.g. the 400 for a broken message) go out, then close.
    conn.close();
    tokio::time::sleep(Duration::from_millis(20)).await;
    closed.cancel();
    let _ = writer.await;
}
