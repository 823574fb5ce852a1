//! The UDP side: the core loop reads its UDP sockets itself, a batch of
//! datagrams at a time, with no task and no channel between the socket and
//! the UAS (a datagram is one message: nothing to reassemble, nothing to
//! wait for). One bad datagram never ends the loop (RFC 3261 §18.2.1).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::{debug, warn};

use super::{answer_malformed, peer, Inbound, Link, Stats, TransportConfig};
use crate::sip::framing;
use crate::sip::message::parse_message;

/// One UDP socket as the core loop reads it. See the module documentation.
pub(super) struct UdpReader {
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    /// One reusable buffer; each datagram is copied out at its own size,
    /// so a message kept for a while never pins a 64 KiB receive buffer.
    buf: Vec<u8>,
    cfg: TransportConfig,
    stats: Arc<Stats>,
}

impl UdpReader {
    /// A reader of `sock`; `None` (with a log line) if it has no address.
    pub(super) fn new(
        sock: Arc<UdpSocket>,
        cfg: TransportConfig,
        stats: Arc<Stats>,
    ) -> Option<Self> {
        let local = match sock.local_addr() {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "udp socket has no local address");
                return None;
            }
        };
        Some(Self {
            sock,
            local,
            buf: vec![0u8; cfg.max_message_bytes + 1],
            cfg,
            stats,
        })
    }

    /// Ready when a datagram may be waiting (registers the waker otherwise).
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.sock.poll_recv_ready(cx).map(|_| ())
    }

    /// Reads, without waiting, up to `max` datagrams and hands each message
    /// that parsed to `deliver`. Returns how many datagrams were read: fewer
    /// than `max` means the socket is drained (and will wake the loop again).
    fn drain(&mut self, max: usize, deliver: &mut impl FnMut(Inbound)) -> usize {
        let mut read = 0;
        while read < max {
            let (n, addr) = match self.sock.try_recv_from(&mut self.buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP port unreachable and the like surface here on Linux.
                    debug!(local = %self.local, error = %e, "udp receive error");
                    read += 1;
                    continue;
                }
            };
            read += 1;
            if let Some(inbound) = self.ingest(n, addr) {
                deliver(inbound);
            }
        }
        read
    }

    /// One datagram of `n` bytes (in `buf`) from `addr`: the message, or
    /// `None` when it was refused, a keep-alive, or malformed (answered 400
    /// where it can be).
    fn ingest(&self, n: usize, addr: SocketAddr) -> Option<Inbound> {
        if !self.cfg.limits.admit(addr.ip(), "UDP", &self.stats) {
            return None;
        }
        let data = Bytes::copy_from_slice(&self.buf[..n]);
        let peer = peer(addr, self.local, Link::Udp(self.sock.clone()));
        if data.len() > self.cfg.max_message_bytes {
            // SPEC §4: an over-long message is answered 400 when what
            // arrived of it has a usable Via (its tail was cut off).
            let reply = parse_message(data).err().and_then(|p| p.reply);
            let err = crate::sip::message::ParseError {
                status: 400,
                reason: "Bad Request - Message Too Large".into(),
                reply,
            };
            debug!(peer = %addr, max = self.cfg.max_message_bytes, "over-long datagram");
            answer_malformed(err, &peer, &self.stats);
            return None;
        }
        let frame = match framing::datagram(data, self.cfg.max_message_bytes) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                self.stats.keepalives.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Err(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(peer = %addr, error = %e, "bad datagram dropped");
                return None;
            }
        };
        match parse_message(frame) {
            Ok(msg) => {
                self.stats.messages.fetch_add(1, Ordering::Relaxed);
                Some(Inbound { msg, peer })
            }
            Err(e) => {
                answer_malformed(e, &peer, &self.stats);
                None
            }
        }
    }
}

/// Every UDP socket of the server, read by the core loop.
pub struct UdpReaders {
    readers: Vec<UdpReader>,
    /// The reader to look at first next time (so that one busy socket
    /// does not starve the others).
    next: usize,
}

impl UdpReaders {
    /// The readers (sockets without an address are left out, logged).
    pub fn new(socks: &[Arc<UdpSocket>], cfg: &TransportConfig, stats: &Arc<Stats>) -> Self {
        Self {
            readers: socks
                .iter()
                .filter_map(|s| UdpReader::new(s.clone(), cfg.clone(), stats.clone()))
                .collect(),
            next: 0,
        }
    }

    /// Ready when some socket may have a datagram waiting; pending (with
    /// every socket's waker registered) otherwise, and for ever if there
    /// is no UDP socket.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ready = false;
        for r in &self.readers {
            ready |= r.poll_ready(cx).is_ready();
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Reads up to `max` datagrams in all from the sockets, in turn, and
    /// hands each message to `deliver`. Returns the datagrams read.
    pub fn drain(&mut self, max: usize, mut deliver: impl FnMut(Inbound)) -> usize {
        let count = self.readers.len();
        let mut read = 0;
        for i in 0..count {
            let r = &mut self.readers[(self.next + i) % count];
            read += r.drain(max - read, &mut deliver);
            if read >= max {
                break;
            }
        }
        if count > 0 {
            self.next = (self.next + 1) % count;
        }
        read
    }
}
