//! The UDP reader: one task per socket, reading datagrams until shutdown;
//! one bad datagram never ends the loop (RFC 3261 §18.2.1).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{answer_malformed, peer, Inbound, Link, Stats, TransportConfig};
use crate::sip::framing;
use crate::sip::message::parse_message;

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
        let peer = peer(addr, local, Link::Udp(sock.clone()));
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
