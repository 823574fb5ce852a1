//! Building responses (RFC 3261 §8.2.6) and routing them (§18.2.2,
//! RFC 3581 §4). The response copies the request's Vias (the top one
//! stamped with `received`/`rport`), From, To (with our tag), Call-ID and
//! CSeq, then our headers and body.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::consts::SERVER;
use super::message::{Method, ReplyContext, Request, Via};

/// A response under construction, written straight into one buffer: the
/// status line, Vias, From, To, Call-ID, CSeq, then the headers the caller
/// adds. [`Self::to_tag`] and [`Self::cseq_method`] splice into their lines
/// (a short move, cheaper than a second buffer), and [`Self::build`] adds
/// Content-Type, Content-Length and the body. Values are copied as bytes,
/// never re-encoded.
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    out: Vec<u8>,
    /// Where the To value ends in `out` (a tag goes there).
    to_end: usize,
    to_has_tag: bool,
    /// Where the CSeq method is in `out`.
    cseq_method: std::ops::Range<usize>,
    body: Option<(&'static str, Bytes)>,
}

/// Starts the response to `req`, received from `src`.
pub fn response(req: &Request, src: SocketAddr, status: u16, reason: &str) -> ResponseBuilder {
    let mut out = Vec::with_capacity(1024);
    status_line(&mut out, status, reason);
    let buf = req.headers.buf();
    for (i, via) in req.base.vias.iter().enumerate() {
        out.extend_from_slice(b"Via: ");
        if i == 0 {
            stamp_via(&mut out, via, buf, src);
        } else {
            out.extend_from_slice(req.at(via.raw));
        }
        out.extend_from_slice(b"\r\n");
    }
    line(&mut out, b"From", req.at(req.base.from.raw));
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(req.at(req.base.to.raw));
    let to_end = out.len();
    out.extend_from_slice(b"\r\n");
    line(&mut out, b"Call-ID", req.call_id());
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(itoa::Buffer::new().format(req.base.cseq.seq).as_bytes());
    out.push(b' ');
    let m0 = out.len();
    out.extend_from_slice(req.base.cseq.method.as_str().as_bytes());
    let cseq_method = m0..out.len();
    out.extend_from_slice(b"\r\n");
    ResponseBuilder {
        out,
        to_end,
        to_has_tag: req.base.to.tag.is_some(),
        cseq_method,
        body: None,
    }
}

/// The answer to a request that did not parse, from what could be read of it.
pub fn error_response(ctx: &ReplyContext, src: SocketAddr, status: u16, reason: &str) -> Bytes {
    let mut out = Vec::with_capacity(512);
    status_line(&mut out, status, reason);
    for (i, via) in ctx.vias.iter().enumerate() {
        out.extend_from_slice(b"Via: ");
        if i == 0 {
            stamp_via(&mut out, &ctx.top_via, &ctx.buf, src);
        } else {
            out.extend_from_slice(via);
        }
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in [
        (&b"From"[..], &ctx.from),
        (b"To", &ctx.to),
        (b"Call-ID", &ctx.call_id),
        (b"CSeq", &ctx.cseq),
    ] {
        if let Some(v) = value {
            line(&mut out, name, v);
        }
    }
    line(&mut out, b"Server", SERVER.as_bytes());
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

/// A final error response in place of the 2xx `ok` facd built but did not
/// send (a change that could not be made durable): the new status line,
/// then `ok`'s Via, From, To (with the tag it gave), Call-ID, CSeq and
/// Server, without its dialog headers (Contact, Record-Route) or body.
/// Built only when needed, so the common path never pays for a 500
/// (RFC 3261 §8.2.6: the same copied headers as the 2xx would have had).
pub fn failure_from(ok: &[u8], status: u16, reason: &str) -> Bytes {
    const KEEP: [&[u8]; 6] = [b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Server"];
    let mut out = Vec::with_capacity(ok.len());
    status_line(&mut out, status, reason);
    // Header lines, each with its CRLF: after the status line, up to the
    // empty line (a folded value's continuation lines go with their header).
    let head_end = memchr::memmem::find(ok, b"\r\n\r\n").map_or(ok.len(), |i| i + 2);
    let start = memchr::memmem::find(ok, b"\r\n").map_or(head_end, |i| i + 2);
    let mut keep = false;
    for l in ok[start.min(head_end)..head_end].split_inclusive(|&c| c == b'\n') {
        if !matches!(l.first(), Some(b' ' | b'\t')) {
            let name = l
                .split(|&c| c == b':')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            keep = KEEP.iter().any(|k| name.eq_ignore_ascii_case(k));
        }
        if keep {
            out.extend_from_slice(l);
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

impl ResponseBuilder {
    /// Adds our To tag unless the request's To already has one (§8.2.6.2).
    pub fn to_tag(mut self, tag: &str) -> Self {
        if !self.to_has_tag {
            let added = replace(
                &mut self.out,
                self.to_end..self.to_end,
                &[b";tag=", tag.as_bytes()],
            );
            self.cseq_method = self.cseq_method.start + added..self.cseq_method.end + added;
            self.to_has_tag = true;
        }
        self
    }

    /// Overrides the CSeq method (a 487 for an INVITE built from its CANCEL, §9.2).
    pub fn cseq_method(mut self, method: &Method) -> Self {
        let m = method.as_str().as_bytes();
        let r = self.cseq_method.clone();
        replace(&mut self.out, r.clone(), &[m]);
        self.cseq_method = r.start..r.start + m.len();
        self
    }

    /// Copies the request's Record-Route values, in order (RFC 3261
    /// §12.1.1: a UAS copies them into every response that creates a
    /// dialog, so the caller's route set runs through the same proxies and
    /// its ACK and BYE come back through them).
    pub fn record_route(self, req: &Request) -> Self {
        req.headers
            .get_all("Record-Route")
            .fold(self, |b, rr| b.header("Record-Route", rr))
    }

    /// Adds a header line. CR and LF in the value are dropped: a value
    /// can never start a header of its own.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        let v = value.as_ref();
        if memchr::memchr2(b'\r', b'\n', v).is_some() {
            self.out
                .extend(v.iter().filter(|&&c| c != b'\r' && c != b'\n'));
        } else {
            self.out.extend_from_slice(v);
        }
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'static str, body: Bytes) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// The response bytes, with Content-Length.
    pub fn build(self) -> Bytes {
        let mut out = self.out;
        let body_len = self.body.as_ref().map_or(0, |(_, b)| b.len());
        out.reserve(body_len + 64);
        if let Some((ctype, _)) = &self.body {
            line(&mut out, b"Content-Type", ctype.as_bytes());
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        if let Some((_, body)) = &self.body {
            out.extend_from_slice(body);
        }
        Bytes::from(out)
    }
}

/// What a request facd sends inside a dialog needs (RFC 3261 §12.2.1.1):
/// the remote target, our Via sent-by and transport, From (our side, with
/// our tag), To (theirs), Call-ID, the route set, and a Contact where the
/// method needs one (NOTIFY, RFC 6665 §4.2.1; BYE needs none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialog {
    /// The peer's Contact URI (the remote target).
    pub request_uri: Bytes,
    /// `"UDP"` or `"TCP"`.
    pub transport: &'static str,
    /// Our `host:port` for the Via.
    pub local_sent_by: String,
    /// Our side: the dialog-creating request's To, with our tag.
    pub from: Bytes,
    /// Their side: that request's From as received (with their tag).
    pub to: Bytes,
    /// Call-ID.
    pub call_id: Bytes,
    /// The Record-Route values of the dialog-creating request, in order
    /// (the UAS route set, §12.1.1); routes are assumed loose (`;lr`).
    pub route_set: Vec<Bytes>,
    /// Our Contact (`<sip:…>`), when the method carries one.
    pub contact: Option<String>,
}

/// A request inside the dialog `t` (RFC 3261 §12.2.1.1): request line to the
/// remote target, our Via with `branch` and `rport` (RFC 3581), Max-Forwards,
/// the route set as Route headers, From/To/Call-ID, `CSeq: <cseq> <method>`,
/// Contact if any, then `extra` headers and the body with its type.
pub fn in_dialog_request(
    t: &InDialog,
    method: &str,
    branch: &str,
    cseq: u32,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let body_len = body.map_or(0, |(_, b)| b.len());
    let mut out = Vec::with_capacity(512 + body_len);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(&t.request_uri);
    out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
    out.extend_from_slice(t.transport.as_bytes());
    out.push(b' ');
    out.extend_from_slice(t.local_sent_by.as_bytes());
    out.extend_from_slice(b";branch=");
    out.extend_from_slice(branch.as_bytes());
    out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\n");
    for r in &t.route_set {
        line(&mut out, b"Route", r);
    }
    line(&mut out, b"From", &t.from);
    line(&mut out, b"To", &t.to);
    line(&mut out, b"Call-ID", &t.call_id);
    out.extend_from_slice(b"CSeq: ");
    out.extend_from_slice(itoa::Buffer::new().format(cseq).as_bytes());
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(c) = &t.contact {
        line(&mut out, b"Contact", c.as_bytes());
    }
    for (name, value) in extra {
        line(&mut out, name.as_bytes(), value.as_bytes());
    }
    if let Some((ctype, _)) = body {
        line(&mut out, b"Content-Type", ctype.as_bytes());
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    if let Some((_, b)) = body {
        out.extend_from_slice(b);
    }
    Bytes::from(out)
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

/// Why an in-dialog request has no address facd may open a connection to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRoute {
    /// The URI names a host: finding its address needs DNS (RFC 3263),
    /// which facd does not do.
    #[error("{0:?} is a host name; facd resolves no names (RFC 3263)")]
    Hostname(String),
    /// A `sips:` URI needs TLS, and the dialog came over plain TCP.
    #[error("a sips: URI needs TLS")]
    Tls,
    /// The dialog came over a WebSocket, whose client accepts no
    /// connections (RFC 7118 §5), and that WebSocket has closed.
    #[error("the dialog's WebSocket has closed; a WebSocket client accepts no connections (RFC 7118 §5)")]
    WebSocket,
    /// Not a SIP URI with a usable address (port 0, 0.0.0.0, multicast, …).
    #[error("{0:?} has no usable address")]
    Invalid(String),
}

/// The address a request inside the dialog goes to when facd has to open
/// a connection itself (RFC 3261 §8.1.2 and §12.2.1.1 with loose routing:
/// the first Route of the route set, else the remote target, the peer's
/// Contact URI; port 5060 when absent, §19.1.2). Only literal addresses
/// are accepted (IPv4, or IPv6 in brackets), so facd never connects
/// anywhere the request did not name.
pub fn next_hop(route_set: &[Bytes], remote_target: &[u8]) -> Result<SocketAddr, NoRoute> {
    hop(route_set, remote_target, false)
}

/// [`next_hop`] for a dialog over TLS (RFC 3261 §26.2.2): `sips:` and
/// `sip:` URIs alike, port 5061 when the URI has none (§19.1.2).
pub fn next_hop_tls(route_set: &[Bytes], remote_target: &[u8]) -> Result<SocketAddr, NoRoute> {
    hop(route_set, remote_target, true)
}

fn hop(route_set: &[Bytes], remote_target: &[u8], tls: bool) -> Result<SocketAddr, NoRoute> {
    let uri = match route_set.first() {
        Some(route) => angle_uri(route),
        None => remote_target.trim_ascii(),
    };
    let text = || String::from_utf8_lossy(uri).into_owned();
    let rest = match (strip_prefix_ci(uri, b"sips:"), tls) {
        (Some(_), false) => return Err(NoRoute::Tls),
        (Some(rest), true) => Some(rest),
        (None, _) => strip_prefix_ci(uri, b"sip:"),
    };
    let Some(rest) = rest else {
        return Err(NoRoute::Invalid(text()));
    };
    // Headers (`?…`) may hold an '@'; the user part cannot (RFC 3261 §25.1).
    let rest = &rest[..memchr::memchr(b'?', rest).unwrap_or(rest.len())];
    let rest = match memchr::memchr(b'@', rest) {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let hostport = &rest[..memchr::memchr(b';', rest).unwrap_or(rest.len())];
    let (host, port) = if let Some(v6) = hostport.strip_prefix(b"[") {
        let close = memchr::memchr(b']', v6).ok_or_else(|| NoRoute::Invalid(text()))?;
        let ip = std::str::from_utf8(&v6[..close])
            .ok()
            .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
            .ok_or_else(|| NoRoute::Invalid(text()))?;
        (IpAddr::V6(ip), &v6[close + 1..])
    } else {
        let colon = memchr::memchr(b':', hostport).unwrap_or(hostport.len());
        let host = std::str::from_utf8(&hostport[..colon]).map_err(|_| NoRoute::Invalid(text()))?;
        match host.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => (IpAddr::V4(ip), &hostport[colon..]),
            Err(_) if is_hostname(host) => return Err(NoRoute::Hostname(host.to_string())),
            Err(_) => return Err(NoRoute::Invalid(text())),
        }
    };
    let port = match port {
        b"" if tls => 5061,
        b"" => 5060,
        p => p
            .strip_prefix(b":")
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| NoRoute::Invalid(text()))?,
    };
    let usable = match host {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    if !usable {
        return Err(NoRoute::Invalid(text()));
    }
    Ok(SocketAddr::new(host, port))
}

/// The URI inside `<…>` of a name-addr (a Route value), else the value.
fn angle_uri(v: &[u8]) -> &[u8] {
    match (memchr::memchr(b'<', v), memchr::memchr(b'>', v)) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.trim_ascii(),
    }
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// RFC 3261 §25.1 `hostname`: dot-separated labels of letters, digits, '-'.
fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.trim_end_matches('.')
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

/// `SIP/2.0 <status> <reason>\r\n`, control characters dropped from the
/// reason (it is ours, but may quote the peer).
fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    if reason.bytes().any(|c| c.is_ascii_control()) {
        let clean: String = reason.chars().filter(|c| !c.is_control()).collect();
        out.extend_from_slice(clean.as_bytes());
    } else {
        out.extend_from_slice(reason.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Replaces `out[at]` with the concatenated `parts` (moving the tail once);
/// returns the new length of that part.
fn replace(out: &mut Vec<u8>, at: std::ops::Range<usize>, parts: &[&[u8]]) -> usize {
    let new: usize = parts.iter().map(|p| p.len()).sum();
    let old = at.end - at.start;
    let tail = out.len() - at.end;
    if new > old {
        out.resize(out.len() + new - old, 0);
    }
    out.copy_within(at.end..at.end + tail, at.start + new);
    out.truncate(at.start + new + tail);
    let mut i = at.start;
    for p in parts {
        out[i..i + p.len()].copy_from_slice(p);
        i += p.len();
    }
    new
}

/// `Name: value\r\n`.
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The top Via with `received` (§18.2.1: when the sent-by host is not the
/// source address; RFC 3581 §4: always with rport) and the rport value.
fn stamp_via(out: &mut Vec<u8>, via: &Via, buf: &[u8], src: SocketAddr) {
    let raw: &[u8] = via.raw.of(buf);
    let rport_at = if via.rport == Some(None) {
        std::str::from_utf8(raw)
            .ok()
            .and_then(|s| bare_param(s, "rport"))
    } else {
        None
    };
    match rport_at {
        Some(at) => {
            out.extend_from_slice(&raw[..at]);
            out.push(b'=');
            out.extend_from_slice(itoa::Buffer::new().format(src.port()).as_bytes());
            out.extend_from_slice(&raw[at..]);
        }
        None => out.extend_from_slice(raw),
    }
    // The host is only read when there is no rport (which always gets `received`).
    let host_is_source = || {
        std::str::from_utf8(via.host.of(buf)).ok().and_then(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .ok()
        }) == Some(src.ip())
    };
    if via.received.is_none() && (via.rport.is_some() || !host_is_source()) {
        let _ = write!(out, ";received={}", src.ip());
    }
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

    #[test]
    fn next_hop_is_the_first_route_else_the_remote_target() {
        let hop = |routes: &[&'static str], target: &str| {
            let routes: Vec<Bytes> = routes
                .iter()
                .map(|r| Bytes::from_static(r.as_bytes()))
                .collect();
            next_hop(&routes, target.as_bytes())
        };
        let addr = |s: &str| Ok(s.parse::<SocketAddr>().unwrap());
        assert_eq!(
            hop(&[], "sip:1001@127.0.0.1:5062;transport=tcp"),
            addr("127.0.0.1:5062")
        );
        assert_eq!(hop(&[], "SIP:1001@10.1.2.3"), addr("10.1.2.3:5060"));
        assert_eq!(hop(&[], "sip:10.1.2.3:7000;lr"), addr("10.1.2.3:7000"));
        assert_eq!(
            hop(&[], "sip:1001@[2001:db8::1]:5070;transport=tcp"),
            addr("[2001:db8::1]:5070")
        );
        assert_eq!(hop(&[], "sip:1001@[::1]"), addr("[::1]:5060"));
        // A user part with ';' and a password; headers with '@'.
        assert_eq!(
            hop(
                &[],
                "sip:+1555;phone-context=x:pw@192.0.2.7:5080?subject=a@b"
            ),
            addr("192.0.2.7:5080")
        );
        // A Route (loose routing) wins over the Contact.
        assert_eq!(
            hop(
                &["<sip:192.0.2.1:5090;lr>", "<sip:192.0.2.2;lr>"],
                "sip:1001@127.0.0.1:5062"
            ),
            addr("192.0.2.1:5090")
        );
    }

    #[test]
    fn next_hop_tls_takes_sips_and_defaults_to_5061() {
        let hop = |target: &str| next_hop_tls(&[], target.as_bytes());
        let addr = |s: &str| Ok(s.parse::<SocketAddr>().unwrap());
        assert_eq!(hop("sips:1001@127.0.0.1"), addr("127.0.0.1:5061"));
        assert_eq!(
            hop("sip:1001@127.0.0.1;transport=tls"),
            addr("127.0.0.1:5061")
        );
        assert_eq!(hop("SIPS:1001@[::1]:5071"), addr("[::1]:5071"));
        assert_eq!(
            hop("sips:1001@phone.example.com"),
            Err(NoRoute::Hostname("phone.example.com".into()))
        );
    }

    #[test]
    fn next_hop_refuses_names_tls_and_unusable_addresses() {
        let hop = |target: &str| next_hop(&[], target.as_bytes());
        assert_eq!(
            hop("sip:1001@phone.example.com:5062"),
            Err(NoRoute::Hostname("phone.example.com".into()))
        );
        assert_eq!(
            hop("sip:1001@localhost"),
            Err(NoRoute::Hostname("localhost".into()))
        );
        assert_eq!(
            next_hop(
                &[Bytes::from_static(b"<sip:proxy.example.com;lr>")],
                b"sip:1001@127.0.0.1"
            ),
            Err(NoRoute::Hostname("proxy.example.com".into()))
        );
        assert_eq!(hop("sips:1001@127.0.0.1:5061"), Err(NoRoute::Tls));
        for bad in [
            "tel:+15551234",
            "sip:1001@127.0.0.1:0",
            "sip:1001@127.0.0.1:99999",
            "sip:1001@127.0.0.1:",
            "sip:1001@0.0.0.0:5060",
            "sip:1001@224.0.0.1",
            "sip:1001@255.255.255.255",
            "sip:1001@[::]:5060",
            "sip:1001@[ff02::1]",
            "sip:1001@[::1",
            "sip:1001@::1",
            "sip:1001@",
            "sip:1001@bad_host",
        ] {
            assert!(
                matches!(hop(bad), Err(NoRoute::Invalid(_))),
                "{bad}: {:?}",
                hop(bad)
            );
        }
    }
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
    fn a_failure_keeps_the_2xx_copied_headers_and_drops_its_dialog_and_body() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        // A folded top Via (RFC 4475 §3.1.1.1 style) and a Record-Route.
        let text = OPT
            .replace(";rport\r\n", "\r\n ;rport\r\n")
            .replace("Call-ID", "Record-Route: <sip:p;lr>\r\nCall-ID");
        let r = req(&text);
        let ok = response(&r, src, 200, "OK")
            .to_tag("abc")
            .record_route(&r)
            .header("Contact", "<sip:a@127.0.0.1>")
            .header("Server", "x")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        let fail = failure_from(&ok, 500, "Server Internal Error - State Not Saved");
        let want_via = String::from_utf8_lossy(&ok)
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        assert!(want_via.starts_with("Via: "), "{want_via}");
        let s = String::from_utf8_lossy(&fail);
        assert_eq!(
            s,
            format!(
                "SIP/2.0 500 Server Internal Error - State Not Saved\r\n\
                 {}\r\n\
                 Via: SIP/2.0/UDP proxy;branch=z9hG4bK0\r\n\
                 From: <sip:x@y>;tag=1\r\n\
                 To: <sip:a@b>;tag=abc\r\n\
                 Call-ID: c1\r\n\
                 CSeq: 7 OPTIONS\r\n\
                 Server: x\r\n\
                 Content-Length: 0\r\n\r\n",
                String::from_utf8_lossy(&ok)
                    .split("\r\nVia: SIP/2.0/UDP proxy")
                    .next()
                    .unwrap()
                    .strip_prefix("SIP/2.0 200 OK\r\n")
                    .unwrap()
            )
        );
        // It parses, with the 2xx's tag and no body.
        match parse_message(fail).unwrap() {
            Message::Response(resp) => {
                assert_eq!(resp.status, 500);
                assert_eq!(resp.to_tag(), Some(&b"abc"[..]));
                assert!(resp.at(resp.body).is_empty());
            }
            Message::Request(_) => panic!(),
        }
    }

    #[test]
    fn method_override_and_tag_in_any_order() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let cancel = OPT.replace("OPTIONS", "CANCEL");
        let want = |tag: &str| {
            format!(
                "SIP/2.0 487 Request Terminated\r\n\
                 Via: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1;rport=40000;received=127.0.0.1\r\n\
                 Via: SIP/2.0/UDP proxy;branch=z9hG4bK0\r\n\
                 From: <sip:x@y>;tag=1\r\n\
                 To: <sip:a@b>{tag}\r\n\
                 Call-ID: c1\r\n\
                 CSeq: 7 INVITE\r\n\
                 Server: x\r\n\
                 Content-Length: 0\r\n\r\n"
            )
        };
        let a = response(&req(&cancel), src, 487, "Request Terminated")
            .cseq_method(&Method::Invite)
            .header("Server", "x")
            .to_tag("t-1")
            .build();
        assert_eq!(String::from_utf8_lossy(&a), want(";tag=t-1"));
        let b = response(&req(&cancel), src, 487, "Request Terminated")
            .to_tag("t-1")
            .header("Server", "x")
            .cseq_method(&Method::Invite)
            .build();
        assert_eq!(a, b);
        let c = response(&req(&cancel), src, 487, "Request Terminated")
            .header("Server", "x")
            .cseq_method(&Method::Extension(Bytes::from_static(b"LONGER-METHOD")))
            .cseq_method(&Method::Invite)
            .build();
        assert_eq!(String::from_utf8_lossy(&c), want(""));
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
