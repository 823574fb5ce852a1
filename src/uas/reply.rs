//! The one place the UAS builds its answers: status, tags, Contact,
//! `Server`, and where an answer or an in-dialog request is sent.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use super::dialog::{ByeTemplate, DialogId, ToneSource};
use super::subscription::{Kind, NotifyTemplate, Shows};
use super::{Dest, NextHop, Now, Peer, Transport, Uas};
use crate::sip::build::{self, ResponseBuilder};
use crate::sip::message::{Request, Scheme};
use crate::sip::values::contact_uri;
use crate::sip::{sdp, SERVER};
use crate::transaction::TxId;

/// A request being answered: its transaction, the request, its sender.
pub(super) struct Rq<'a, F> {
    pub(super) id: TxId,
    pub(super) req: &'a Request,
    pub(super) peer: &'a Peer<F>,
}

impl<F> Clone for Rq<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for Rq<'_, F> {}

/// A 200 ready to go, with the dialog that follows it.
pub(super) struct Answer<F> {
    pub(super) ok: Bytes,
    pub(super) dialog: DialogId,
    pub(super) dest: Dest<F>,
    pub(super) reliable: bool,
    pub(super) bye: ByeTemplate,
    /// Where the confirmation tone goes.
    pub(super) media: ToneSource,
}

/// A 200 to a SUBSCRIBE ready to go, with what the subscription needs.
pub(super) struct SubAnswer<F> {
    pub(super) ok: Bytes,
    pub(super) dialog: DialogId,
    pub(super) agent: String,
    pub(super) dest: Dest<F>,
    pub(super) reliable: bool,
    pub(super) expires: u32,
    /// A refresh (in-dialog SUBSCRIBE) rather than a new subscription.
    pub(super) refresh: bool,
    /// The SUBSCRIBE's Contact URI (the new remote target on a refresh).
    pub(super) contact: Option<Bytes>,
    pub(super) template: NotifyTemplate,
    /// What it watches.
    pub(super) kind: Kind,
    /// What its NOTIFY tells.
    pub(super) shows: Shows,
}

/// The dialog's route set from the UAS side: the request's Record-Route
/// values, in order (RFC 3261 §12.1.1).
pub(super) fn route_set(req: &Request) -> Vec<Bytes> {
    req.headers
        .get_all("Record-Route")
        .map(|r| Bytes::copy_from_slice(&r))
        .collect()
}

/// The URI of the request's first Contact, the dialog's remote target
/// (RFC 3261 §12.1.1), if it has one.
pub(super) fn contact_target(req: &Request) -> Option<Bytes> {
    req.headers
        .get_all("Contact")
        .next()
        .map(|c| contact_uri(&c))
}

/// Our side of the dialog for the requests we send in it: the request's
/// To as received, with `tag` added when it had none (RFC 3261 §12.1.1).
pub(super) fn local_party(req: &Request, tag: &str) -> Bytes {
    let to = req.at(req.base.to.raw);
    if req.to_tag().is_some() {
        return Bytes::copy_from_slice(to);
    }
    let mut v = Vec::with_capacity(to.len() + 5 + tag.len());
    v.extend_from_slice(to);
    v.extend_from_slice(b";tag=");
    v.extend_from_slice(tag.as_bytes());
    Bytes::from(v)
}

/// Where the answers to `req` go: the flow it came on; over UDP the source
/// address at the Via's port, or the source port with `rport` (RFC 3261
/// §18.2.2, RFC 3581 §4).
pub(super) fn response_dest<F: Clone>(req: &Request, peer: &Peer<F>) -> Dest<F> {
    let to = match req.base.vias.first() {
        Some(top) if !peer.reliable() => build::response_target(top, peer.addr),
        _ => peer.addr,
    };
    Dest {
        flow: peer.flow.clone(),
        to,
        next_hop: None,
    }
}

/// Where the requests facd sends inside a dialog created by a request from
/// `peer` go: the flow that request came on (RFC 5626 style: the packet's
/// source, never a host named in the message); over TCP, once that
/// connection has closed, a new one to the next hop (RFC 3261 §18.1.1):
/// the first Route, else the remote target, a literal address only (over
/// TLS a new TLS connection; over a WebSocket none, RFC 7118 §5).
pub(super) fn dialog_dest<F: Clone>(
    peer: &Peer<F>,
    route_set: &[Bytes],
    remote_target: &[u8],
    call_id: &Bytes,
) -> Dest<F> {
    let next_hop = peer.reliable().then(|| {
        let target = match peer.transport {
            // RFC 3261 §26.2.2: a dialog over TLS is reached over TLS again.
            Transport::Tls => build::next_hop_tls(route_set, remote_target),
            // RFC 7118 §5: a WebSocket client accepts no connections (its
            // Contact host is typically `*.invalid`).
            Transport::Ws | Transport::Wss => Err(build::NoRoute::WebSocket),
            _ => build::next_hop(route_set, remote_target),
        };
        Arc::new(NextHop {
            local_ip: peer.local.ip(),
            target,
            call_id: call_id.clone(),
        })
    });
    Dest {
        flow: peer.flow.clone(),
        to: peer.addr,
        next_hop,
    }
}

impl<F: Clone, W> Uas<F, W> {
    /// Answers `rq` in its transaction.
    pub(super) fn reply(
        &mut self,
        now: Now,
        rq: Rq<'_, F>,
        status: u16,
        reason: &str,
        extra: impl FnOnce(ResponseBuilder) -> ResponseBuilder,
    ) {
        let bytes = self.response(rq.req, rq.peer, status, reason, extra);
        self.metrics.response(&rq.req.method, status);
        self.txs.respond(now.mono, rq.id, status, bytes);
    }

    /// A response to `req`: status line, the request's headers (RFC 3261
    /// §8.2.6.2), a To tag on all but 100, `Server`, and `extra`.
    pub(super) fn response(
        &mut self,
        req: &Request,
        peer: &Peer<F>,
        status: u16,
        reason: &str,
        extra: impl FnOnce(ResponseBuilder) -> ResponseBuilder,
    ) -> Bytes {
        let mut b = build::response(req, peer.addr, status, reason).header("Server", SERVER);
        // RFC 3261 §8.2.6.2: a To tag on every response but 100.
        if status > 100 {
            b = b.to_tag(&self.new_tag());
        }
        extra(b).build()
    }

    /// A To tag: 64 random bits in hex (RFC 3261 §19.3 asks for ≥ 32).
    pub(super) fn new_tag(&mut self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = self.rng.gen::<u64>();
        let mut tag = String::with_capacity(16);
        for i in 0..16 {
            tag.push(HEX[((v >> (60 - 4 * i)) & 0xf) as usize] as char);
        }
        tag
    }

    /// Our RTP address on the side `peer` came to.
    pub(super) fn media_addr(&self, peer: &Peer<F>) -> SocketAddr {
        let rtp = if peer.local.is_ipv4() {
            self.cfg.rtp_v4.or(self.cfg.rtp_v6)
        } else {
            self.cfg.rtp_v6.or(self.cfg.rtp_v4)
        };
        let port = rtp.map_or(0, |a| a.port());
        let ip = if peer.local.ip().is_unspecified() {
            rtp.map_or(peer.local.ip(), |a| a.ip())
        } else {
            peer.local.ip()
        };
        SocketAddr::new(ip, port)
    }

    /// Our Contact: the address the call came to, so the caller's ACK and
    /// BYE come back on the same transport (RFC 3261 §8.1.1.8, §12.1.1).
    pub(super) fn contact(&self, req: &Request, peer: &Peer<F>) -> String {
        let user = req
            .uri
            .user
            .map(|u| String::from_utf8_lossy(req.at(u)).into_owned());
        let host = if peer.local.ip().is_unspecified() {
            self.cfg.domain.clone()
        } else {
            sent_by(peer.local)
        };
        let sips = req.uri.scheme == Scheme::Sips;
        let scheme = if sips { "sips" } else { "sip" };
        // RFC 5630 §3.2: a sips: URI implies TLS and takes no transport=tls;
        // RFC 7118 §5: transport=ws / wss over a WebSocket.
        let transport = match peer.transport {
            Transport::Udp => "",
            Transport::Tls if sips => "",
            t => t.param(),
        };
        let mut c = String::with_capacity(64);
        c.push('<');
        c.push_str(scheme);
        c.push(':');
        if let Some(u) = user {
            c.push_str(&u);
            c.push('@');
        }
        c.push_str(&host);
        if !transport.is_empty() {
            c.push_str(";transport=");
            c.push_str(transport);
        }
        c.push('>');
        c
    }
}

/// `host:port` of a socket address, IPv6 in brackets (RFC 3261 §25.1
/// IPv6reference), without the formatting machinery: it runs every call.
pub(super) fn sent_by(addr: SocketAddr) -> String {
    let mut s = String::with_capacity(48);
    if addr.is_ipv6() {
        s.push('[');
    }
    sdp::push_ip(&mut s, addr.ip());
    s.push_str(if addr.is_ipv6() { "]:" } else { ":" });
    s.push_str(itoa::Buffer::new().format(addr.port()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_by_writes_ipv4_and_bracketed_ipv6() {
        assert_eq!(sent_by("127.0.0.1:5060".parse().unwrap()), "127.0.0.1:5060");
        assert_eq!(sent_by("10.200.3.44:1".parse().unwrap()), "10.200.3.44:1");
        assert_eq!(sent_by("[::1]:5070".parse().unwrap()), "[::1]:5070");
        assert_eq!(
            sent_by("[2001:db8::a:1]:65535".parse().unwrap()),
            "[2001:db8::a:1]:65535"
        );
    }
}
