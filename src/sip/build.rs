//! Building responses (RFC 3261 §8.2.6) and routing them (§18.2.2,
//! RFC 3581 §4). The response copies the request's Vias (the top one
//! stamped with `received`/`rport`), From, To (with our tag), Call-ID and
//! CSeq, then our headers and body.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::message::{ReplyContext, Request, Via};

/// A response under construction.
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    head: String,
    to: String,
    to_has_tag: bool,
    call_id: String,
    cseq_seq: String,
    cseq_method: String,
    extra: String,
    body: Option<(String, Bytes)>,
}

/// Starts the response to `req`, received from `src`.
pub fn response(req: &Request, src: SocketAddr, status: u16, reason: &str) -> ResponseBuilder {
    let mut head = status_line(status, reason);
    for (i, via) in req.base.vias.iter().enumerate() {
        let value = if i == 0 {
            stamp_via(via, src)
        } else {
            text(&via.raw)
        };
        let _ = write!(head, "Via: {value}\r\n");
    }
    let _ = write!(head, "From: {}\r\n", text(&req.base.from.raw));
    ResponseBuilder {
        head,
        to: text(&req.base.to.raw),
        to_has_tag: req.base.to.tag.is_some(),
        call_id: text(&req.base.call_id),
        cseq_seq: req.base.cseq.seq.to_string(),
        cseq_method: req.base.cseq.method.as_str().to_string(),
        extra: String::new(),
        body: None,
    }
}

/// The answer to a request that did not parse, from what could be read of it.
pub fn error_response(ctx: &ReplyContext, src: SocketAddr, status: u16, reason: &str) -> Bytes {
    let mut out = status_line(status, reason);
    for (i, via) in ctx.vias.iter().enumerate() {
        let value = if i == 0 {
            stamp_via(&ctx.top_via, src)
        } else {
            text(via)
        };
        let _ = write!(out, "Via: {value}\r\n");
    }
    for (name, value) in [
        ("From", &ctx.from),
        ("To", &ctx.to),
        ("Call-ID", &ctx.call_id),
        ("CSeq", &ctx.cseq),
    ] {
        if let Some(v) = value {
            let _ = write!(out, "{name}: {}\r\n", text(v));
        }
    }
    let _ = write!(out, "Server: {}\r\n", crate::core::SERVER);
    out.push_str("Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

impl ResponseBuilder {
    /// Adds our To tag unless the request's To already has one (§8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        if !self.to_has_tag {
            let _ = write!(self.to, ";tag={tag}");
            self.to_has_tag = true;
        }
        self
    }

    /// Overrides the CSeq method (a 487 for an INVITE built from its CANCEL, §9.2).
    pub fn cseq_method(mut self, method: &str) -> Self {
        self.cseq_method = method.to_string();
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let _ = write!(self.extra, "{name}: {}\r\n", text(value.as_ref()));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: Bytes) -> Self {
        self.body = Some((content_type.to_string(), body));
        self
    }

    /// The response bytes, with Content-Length.
    pub fn build(self) -> Bytes {
        let mut out = self.head;
        let _ = write!(
            out,
            "To: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.to, self.call_id, self.cseq_seq, self.cseq_method
        );
        out.push_str(&self.extra);
        let mut bytes = match &self.body {
            Some((ctype, body)) => {
                let _ = write!(
                    out,
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                out.into_bytes()
            }
            None => {
                out.push_str("Content-Length: 0\r\n\r\n");
                out.into_bytes()
            }
        };
        if let Some((_, body)) = self.body {
            bytes.extend_from_slice(&body);
        }
        Bytes::from(bytes)
    }
}

/// RFC 3261 §18.2.2 + RFC 3581 §4: a UDP response goes to the packet's
/// source IP — never to a Via host that differs from it — at the source
/// port when the top Via has `rport`, else at the Via port (default 5060).
pub fn response_target(top_via: &Via, src: SocketAddr) -> SocketAddr {
    let port = match top_via.rport {
        Some(_) => src.port(),
        None => top_via.port.unwrap_or(5060),
    };
    SocketAddr::new(src.ip(), port)
}

fn status_line(status: u16, reason: &str) -> String {
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut s = String::with_capacity(512);
    let _ = write!(s, "SIP/2.0 {status} {reason}\r\n");
    s
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The top Via with `received` (§18.2.1: when the sent-by host is not the
/// source address; RFC 3581 §4: always with rport) and the rport value.
fn stamp_via(via: &Via, src: SocketAddr) -> String {
    let mut out = text(&via.raw);
    if via.rport == Some(None) {
        if let Some(at) = bare_param(&out, "rport") {
            out.insert_str(at, &format!("={}", src.port()));
        }
    }
    let host = text(&via.host);
    let host_ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if (via.rport.is_some() || host_ip != Some(src.ip())) && via.received.is_none() {
        let _ = write!(out, ";received={}", src.ip());
    }
    out
}

/// The index just after the name of a valueless `;name` parameter.
fn bare_param(via: &str, name: &str) -> Option<usize> {
    let b = via.as_bytes();
    let mut i = 0;
    while let Some(p) = via[i..].find(';') {
        let mut s = i + p + 1;
        while b.get(s).is_some_and(|c| *c == b' ' || *c == b'\t') {
            s += 1;
        }
        let e = s + name.len();
        if via.get(s..e).is_some_and(|n| n.eq_ignore_ascii_case(name)) {
            let mut after = e;
            while b.get(after).is_some_and(|c| *c == b' ' || *c == b'\t') {
                after += 1;
            }
            if matches!(b.get(after), None | Some(b';') | Some(b',')) {
                return Some(e);
            }
        }
        i = s;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_message, Message};

    fn req(s: &str) -> Request {
        match parse_message(Bytes::copy_from_slice(s.as_bytes())).unwrap() {
            Message::Request(r) => *r,
            Message::Response(_) => panic!(),
        }
    }

    const OPT: &str = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bK0\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 7 OPTIONS\r\n\r\n";

    #[test]
    fn copies_and_stamps() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let r = response(&req(OPT), src, 200, "OK")
            .to_tag("abc")
            .header("Allow", "INVITE")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        assert_eq!(
            r,
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport=40000;received=127.0.0.1\r\n\
             Via: SIP/2.0/UDP proxy;branch=z9hG4bK0\r\n\
             From: <sip:x@y>;tag=1\r\n\
             To: <sip:a@b>;tag=abc\r\n\
             Call-ID: c1\r\n\
             CSeq: 7 OPTIONS\r\n\
             Allow: INVITE\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: 5\r\n\r\nv=0\r\n"
        );
    }

    #[test]
    fn existing_to_tag_is_kept_and_no_received_when_host_is_source() {
        let src: SocketAddr = "192.0.2.1:5070".parse().unwrap();
        let text = OPT
            .replace(";rport", "")
            .replace("To: <sip:a@b>", "To: <sip:a@b>;tag=old");
        let r = response(&req(&text), src, 486, "Busy\r\nX: injected")
            .to_tag("new")
            .build();
        let s = String::from_utf8_lossy(&r);
        assert!(s.starts_with("SIP/2.0 486 BusyX: injected\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1\r\n"), "{s}");
        assert!(s.contains("To: <sip:a@b>;tag=old\r\n"));
    }

    #[test]
    fn routing_never_leaves_the_source_address() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let r = req(OPT);
        assert_eq!(
            response_target(&r.base.vias[0], src),
            src,
            "rport: the source port"
        );
        let r = req(&OPT.replace(";rport", ""));
        assert_eq!(
            response_target(&r.base.vias[0], src),
            "127.0.0.1:5070".parse().unwrap()
        );
        let r = req(&OPT.replace(":5070", "").replace(";rport", ""));
        assert_eq!(
            response_target(&r.base.vias[0], src),
            "127.0.0.1:5060".parse().unwrap()
        );
    }

    #[test]
    fn bare_rport_with_spaces() {
        assert_eq!(
            bare_param("SIP/2.0/UDP h ; rport ;branch=x", "rport"),
            Some(21)
        );
        assert_eq!(bare_param("SIP/2.0/UDP h;rport=5", "rport"), None);
        assert_eq!(bare_param("SIP/2.0/UDP h;rportx", "rport"), None);
    }
}
