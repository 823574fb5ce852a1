//! Sends what the UAS hands out ([`Transmit`]): over UDP from the socket
//! the request came to; over TCP, TLS or a WebSocket on the connection it
//! came on; and an
//! in-dialog request whose connection has closed (SPEC §4) on a connection
//! facd opens to the dialog's next hop (RFC 3261 §18.1.1; TLS again for a
//! TLS dialog, none for a WebSocket one, RFC 7118 §5), which later
//! requests of dialogs born on the same connection and going to the same
//! hop then reuse.

use std::net::SocketAddr;
use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;
use tracing::{debug, warn};

use super::tcp::SendError;
use super::{Connector, Link, TcpConn};
use crate::uas::{NextHop, Transmit};

/// Connections opened for in-dialog requests: by the connection the
/// dialog came on and the hop (None: the hop has no usable address).
#[derive(Debug)]
pub struct Flows {
    connector: Arc<Connector>,
    redialled: AHashMap<(u64, Option<SocketAddr>), Redial>,
    /// Closed connections are swept from `redialled` when it grows past this.
    high_water: usize,
}

#[derive(Debug)]
enum Redial {
    /// The connection facd opened.
    Conn(TcpConn),
    /// The next hop cannot be dialled (logged once).
    Unroutable,
}

/// `redialled` entries kept before closed ones are swept.
const SWEEP_AT: usize = 1024;

impl Flows {
    /// Sends through `connector` when a connection must be opened.
    pub fn new(connector: Arc<Connector>) -> Self {
        Self {
            connector,
            redialled: AHashMap::default(),
            high_water: SWEEP_AT,
        }
    }

    /// Sends one message. Never blocks; what cannot be sent is logged, and
    /// an in-dialog request no connection could be opened for comes back
    /// as an [`super::Unsent`].
    pub fn send(&mut self, t: Transmit<Link>) {
        match (&t.flow, &t.next_hop) {
            (Link::Tcp(conn), Some(hop)) => self.send_in_dialog(conn, hop, t.bytes),
            _ => t.flow.send_to(t.to, t.bytes),
        }
    }

    fn send_in_dialog(&mut self, conn: &TcpConn, hop: &NextHop, bytes: Bytes) {
        let call_id = || String::from_utf8_lossy(&hop.call_id).into_owned();
        // A connection that is closing takes no new in-dialog request: it
        // would be lost with it.
        let Some(bytes) = try_send(conn, bytes, &call_id) else {
            return;
        };
        let key = (conn.id, hop.target.as_ref().ok().copied());
        let bytes = match self.redialled.get(&key) {
            Some(Redial::Conn(c)) => match try_send(c, bytes, &call_id) {
                None => return,
                Some(b) => b,
            },
            Some(Redial::Unroutable) => {
                let why = hop.target.as_ref().err().map(ToString::to_string);
                return self.connector.unsent(bytes, None, why.unwrap_or_default());
            }
            None => bytes,
        };
        match &hop.target {
            Err(why) => {
                warn!(conn = conn.id, call_id = %call_id(), error = %why, "tcp connection of the dialog closed and its remote target cannot be dialled: in-dialog request dropped");
                self.redialled.insert(key, Redial::Unroutable);
                self.connector.unsent(bytes, None, why.to_string());
            }
            Ok(to) => {
                let new = self
                    .connector
                    .dial(*to, hop.local_ip, &call_id(), conn.transport);
                debug!(old = conn.id, conn = new.id, peer = %to, call_id = %call_id(), "tcp connection of the dialog closed: opening a new one to its remote target");
                if let Err(e) = new.try_send(bytes) {
                    debug!(conn = new.id, error = %e, "tcp send dropped");
                }
                self.redialled.insert(key, Redial::Conn(new));
            }
        }
        if self.redialled.len() > self.high_water {
            self.redialled
                .retain(|_, r| matches!(r, Redial::Conn(c) if c.is_open()));
            self.high_water = (self.redialled.len() * 2).max(SWEEP_AT);
        }
    }
}

/// Queues `bytes` on `conn` if it is open; hands them back if it has closed
/// (None: sent, or dropped because its queue is full).
fn try_send(conn: &TcpConn, bytes: Bytes, call_id: &dyn Fn() -> String) -> Option<Bytes> {
    if !conn.is_open() {
        return Some(bytes);
    }
    match conn.try_send(bytes) {
        Ok(()) => None,
        Err(SendError::Full) => {
            debug!(conn = conn.id, call_id = %call_id(), "tcp send dropped: connection queue full");
            None
        }
        Err(SendError::Closed(b)) => Some(b),
    }
}
