//! Our SIP message parser (RFC 3261 §7, §20, §25) over `bytes::Bytes`:
//! the frame becomes the message's buffer and every parsed field is a
//! [`Span`] (two `u32` offsets) of it, so parsing copies nothing and takes
//! no reference counts; folded header values are unfolded into an arena
//! appended to the frame (one copy, only for folded messages).
//!
//! The grammar was first written with nom; that version is kept, for tests
//! only, in `tests/reference/`. The parser here is hand-written byte
//! scanners (a 256-entry character-class table, one `memchr` per line, no
//! per-header `Bytes` clone) because the nom combinators, the separate
//! search for the end of the head and the reference counting were most of
//! the cost; `tests/parser_agreement.rs` checks that both give the same
//! result, accepted or refused, on every RFC 4475 message and on mutations
//! of them.
//!
//! Why not rsip: rsip 0.4.0 fails much of RFC 4475 — it rejects folded
//! lines, `Via :` with a space before the colon and every method outside its
//! fixed list (so a server cannot even answer 501), drops the user part of
//! `sip:john.doe@host`, mishandles IPv6 hosts, never decodes `%` escapes,
//! does not know the compact forms `l`/`i`/`m`, ignores Content-Length, and
//! accepts half of the messages a parser must refuse. facd therefore uses
//! rsip nowhere: the grammar, the method vocabulary (which must include any
//! token) and response building are ours; nothing rsip does would be simpler.
//!
//! Parsing is one pass: the start line, the header lines (unfolded, with
//! compact and long names recognised case-insensitively), then the
//! mandatory headers (Via, From, To, Call-ID, CSeq, optional Max-Forwards)
//! pulled out once into [`BaseHeaders`], with duplicated single-value
//! headers and CSeq/method mismatches refused. A message that fails after
//! its Via was found carries a [`ReplyContext`] so it can still be answered
//! `400` (or `505`). Nothing here panics on any input.

use std::fmt;

use bytes::Bytes;

/// A SIP method: the RFC 3261 ones and any other token (case-sensitive, §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other token.
    Extension(Bytes),
}

impl Method {
    /// The method of a token (which must already be a valid token).
    pub fn from_token(b: &[u8]) -> Self {
        match b {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"OPTIONS" => Self::Options,
            b"REGISTER" => Self::Register,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"REFER" => Self::Refer,
            b"INFO" => Self::Info,
            b"UPDATE" => Self::Update,
            b"PRACK" => Self::Prack,
            b"MESSAGE" => Self::Message,
            b"PUBLISH" => Self::Publish,
            other => Self::Extension(Bytes::copy_from_slice(other)),
        }
    }

    /// The method name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Prack => "PRACK",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            // Tokens are ASCII, so this never fails.
            Self::Extension(b) => std::str::from_utf8(b).unwrap_or("?"),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A byte range of a message's buffer ([`Headers::buf`]): the typed fields
/// are offsets rather than `Bytes`, so parsing a message takes no
/// reference counts (each `Bytes` clone and drop is an atomic operation,
/// and they were a third of the parse time). Resolve one with
/// [`Request::at`], [`Response::at`] or [`Span::of`]; cut an owned `Bytes`
/// with [`Request::bytes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        // Frames are capped far below 4 GiB (sip.max_message_bytes).
        Self {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The octets of `buf` this span covers (empty if it does not fit).
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    /// The length in octets.
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    pub fn is_empty(self) -> bool {
        self.start == self.end
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Anything else (kept opaque): the scheme's name.
    Other(Span),
}

/// A URI. For `sip`/`sips` every part is parsed; `tel` puts the number in
/// `user`; other schemes keep only `raw`. Spans of the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part, raw (still %-escaped).
    pub user: Option<Span>,
    /// The host; IPv6 references keep their brackets (empty for `tel` and
    /// opaque URIs).
    pub host: Span,
    /// The port.
    pub port: Option<u16>,
    /// The `;name[=value]` URI parameters as written, from the first `;`
    /// (empty without parameters); see [`Uri::params`].
    pub params: Span,
    /// The whole URI as written.
    pub raw: Span,
}

impl Uri {
    /// The user part with `%HH` escapes decoded (RFC 3261 §19.1.4 compares
    /// URIs after unescaping). `buf` is the message buffer.
    pub fn user_unescaped(&self, buf: &[u8]) -> Option<Vec<u8>> {
        self.user.map(|u| unescape(u.of(buf)))
    }

    /// Every `(name, value)` URI parameter, raw. The parser checked the
    /// grammar, in which neither `;` nor `=` occurs inside a name or value.
    pub fn params<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
        let all = self.params.of(buf);
        all.split(|c| *c == b';')
            .skip(1)
            .map(|p| match memchr::memchr(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            })
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` if it has no value.
    pub fn param<'a>(&self, buf: &'a [u8], name: &str) -> Option<Option<&'a [u8]>> {
        self.params(buf)
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Decodes `%HH` escapes; a `%` not followed by two hex digits stays as is.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|c| hex(*c)),
                s.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// One Via value (RFC 3261 §20.42), as spans of the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, … as written.
    pub transport: Span,
    /// The sent-by host (IPv6 with brackets).
    pub host: Span,
    /// The sent-by port.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<Span>,
    /// `Some(None)` for a bare `;rport`, `Some(Some(p))` with a value (RFC 3581).
    pub rport: Option<Option<u16>>,
    /// The received parameter.
    pub received: Option<Span>,
    /// The via-parm as received.
    pub raw: Span,
}

impl Via {
    /// `host[:port]`, host lower-cased: the sent-by of transaction matching.
    pub fn sent_by(&self, buf: &[u8]) -> String {
        let host = String::from_utf8_lossy(self.host.of(buf)).to_ascii_lowercase();
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

/// A From/To/Contact value: `["display"] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name (quotes removed, escapes kept).
    pub display: Option<Span>,
    /// The URI.
    pub uri: Uri,
    /// The tag parameter.
    pub tag: Option<Span>,
    /// The whole header value.
    pub raw: Span,
}

/// CSeq (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number (< 2^32).
    pub seq: u32,
    /// The method.
    pub method: Method,
}

/// The headers every request and response must have, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseHeaders {
    /// Every Via, top first (at least one).
    pub vias: Vec<Via>,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Call-ID.
    pub call_id: Span,
    /// CSeq.
    pub cseq: CSeq,
    /// Max-Forwards, if present.
    pub max_forwards: Option<u32>,
}

/// The header names facd looks at, recognised once per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Other,
}

/// (long name, compact form) pairs: RFC 3261 §7.3.3 and the IANA registry.
const COMPACT: &[(&str, u8)] = &[
    ("Accept-Contact", b'a'),
    ("Referred-By", b'b'),
    ("Content-Type", b'c'),
    ("Request-Disposition", b'd'),
    ("Content-Encoding", b'e'),
    ("From", b'f'),
    ("Call-ID", b'i'),
    ("Reject-Contact", b'j'),
    ("Supported", b'k'),
    ("Content-Length", b'l'),
    ("Contact", b'm'),
    ("Identity-Info", b'n'),
    ("Event", b'o'),
    ("Refer-To", b'r'),
    ("Subject", b's'),
    ("To", b't'),
    ("Allow-Events", b'u'),
    ("Via", b'v'),
    ("Session-Expires", b'x'),
    ("Identity", b'y'),
];

fn known(name: &[u8]) -> Known {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    // Dispatch on length first: this runs for every header line.
    match name.len() {
        1 => match name[0].to_ascii_lowercase() {
            b'v' => Known::Via,
            b'f' => Known::From,
            b't' => Known::To,
            b'i' => Known::CallId,
            b'l' => Known::ContentLength,
            b'c' => Known::ContentType,
            _ => Known::Other,
        },
        2 if is("To") => Known::To,
        3 if is("Via") => Known::Via,
        4 if is("From") => Known::From,
        4 if is("CSeq") => Known::CSeq,
        7 if is("Call-ID") => Known::CallId,
        12 if is("Max-Forwards") => Known::MaxForwards,
        12 if is("Content-Type") => Known::ContentType,
        14 if is("Content-Length") => Known::ContentLength,
        _ => Known::Other,
    }
}

/// The long form of a compact header name (or the name itself).
fn expand(name: &[u8]) -> &[u8] {
    if let [c] = name {
        let c = c.to_ascii_lowercase();
        if let Some((long, _)) = COMPACT.iter().find(|(_, s)| *s == c) {
            return long.as_bytes();
        }
    }
    name
}

/// Header names whose values are comma-separated lists (RFC 3261 §7.3.1).
fn is_list(name: &[u8]) -> bool {
    const LISTS: &[&str] = &[
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Path",
        "Service-Route",
    ];
    let name = expand(name);
    LISTS
        .iter()
        .any(|l| name.eq_ignore_ascii_case(l.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    name: Span,
    value: Span,
}

/// All header fields, in order, unfolded, and the buffer every [`Span`] of
/// the message points into: the frame as received, followed, only if some
/// header was folded, by the unfolded values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: Bytes,
    list: Vec<Header>,
}

impl Headers {
    /// The message buffer.
    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    fn name_of(&self, h: &Header) -> &[u8] {
        h.name.of(&self.buf)
    }

    fn value_of(&self, h: &Header) -> &[u8] {
        h.value.of(&self.buf)
    }

    fn bytes_of(&self, h: &Header) -> Bytes {
        self.buf.slice(h.value.range())
    }

    /// The first value of `name` (long or compact form, case-insensitive).
    pub fn get(&self, name: &str) -> Option<Bytes> {
        let want = expand(name.as_bytes());
        self.list
            .iter()
            .find(|h| expand(self.name_of(h)).eq_ignore_ascii_case(want))
            .map(|h| self.bytes_of(h))
    }

    /// Every value of `name`; comma-separated list headers are split
    /// (outside quotes and `<>`), and each element trimmed.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Bytes> + 'a {
        let want = expand(name.as_bytes());
        let list = is_list(want);
        self.list
            .iter()
            .filter(move |h| expand(self.name_of(h)).eq_ignore_ascii_case(want))
            .flat_map(move |h| {
                let v = self.bytes_of(h);
                if list {
                    split_commas(&v)
                } else {
                    vec![v]
                }
            })
            .filter(|v| !v.is_empty())
    }

    /// Every (name as sent, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list
            .iter()
            .map(|h| (self.name_of(h), self.value_of(h)))
    }
}

/// Splits a header value on commas outside quoted strings and `<>`.
fn split_commas(v: &Bytes) -> Vec<Bytes> {
    if memchr::memchr(b',', v).is_none() {
        return vec![v.clone()];
    }
    comma_spans(v, Span::new(0, v.len()))
        .into_iter()
        .map(|p| v.slice(p.range()))
        .collect()
}

/// The elements of the list value `buf[v]`, split on commas outside quoted
/// strings and `<>`, each trimmed of SP/HTAB.
fn comma_spans(buf: &[u8], v: Span) -> Vec<Span> {
    let s = v.of(buf);
    let o = v.start as usize;
    let mut out = Vec::new();
    let (mut start, mut quoted, mut angle, mut escaped) = (0, false, false, false);
    let mut push = |a: usize, b: usize| {
        let (a, b) = trim_range(s, a, b);
        out.push(Span::new(o + a, o + b));
    };
    for (i, &c) in s.iter().enumerate() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => quoted = true,
            b'<' => angle = true,
            b'>' => angle = false,
            b',' if !angle => {
                push(start, i);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(start, s.len());
    out
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Via, From, To, Call-ID, CSeq, Max-Forwards.
    pub base: BaseHeaders,
    /// Every header, and the buffer the spans point into.
    pub headers: Headers,
    /// The body (Content-Length octets).
    pub body: Span,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase (any octets).
    pub reason: Span,
    /// Via, From, To, Call-ID, CSeq.
    pub base: BaseHeaders,
    /// Every header, and the buffer the spans point into.
    pub headers: Headers,
    /// The body.
    pub body: Span,
}

macro_rules! span_access {
    ($t:ty) => {
        impl $t {
            /// The octets of a span of this message.
            pub fn at(&self, s: Span) -> &[u8] {
                s.of(&self.headers.buf)
            }

            /// An owned slice of the message buffer (one reference count).
            pub fn bytes(&self, s: Span) -> Bytes {
                self.headers.buf.slice(s.range())
            }

            /// The body.
            pub fn body(&self) -> &[u8] {
                self.at(self.body)
            }

            /// The Call-ID.
            pub fn call_id(&self) -> &[u8] {
                self.at(self.base.call_id)
            }

            /// The From tag.
            pub fn from_tag(&self) -> Option<&[u8]> {
                self.base.from.tag.map(|t| self.at(t))
            }

            /// The To tag.
            pub fn to_tag(&self) -> Option<&[u8]> {
                self.base.to.tag.map(|t| self.at(t))
            }

            /// The top Via's branch.
            pub fn branch(&self) -> Option<&[u8]> {
                self.base.vias.first()?.branch.map(|b| self.at(b))
            }
        }
    };
}
span_access!(Request);
span_access!(Response);

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request (boxed: it moves cheaply through channels).
    Request(Box<Request>),
    /// A response.
    Response(Box<Response>),
}

/// Raw values of the headers an error response copies (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyContext {
    /// Every Via value, top first.
    pub vias: Vec<Bytes>,
    /// The top Via, parsed (for routing the answer), as spans of `buf`.
    pub top_via: Via,
    /// The message buffer `top_via` points into.
    pub buf: Bytes,
    /// From, To, Call-ID, CSeq values if present.
    pub from: Option<Bytes>,
    /// To.
    pub to: Option<Bytes>,
    /// Call-ID.
    pub call_id: Option<Bytes>,
    /// CSeq.
    pub cseq: Option<Bytes>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 400, 505, or 0: drop silently (responses, or no usable Via).
    pub status: u16,
    /// The whole reason phrase, e.g. `Bad Request - CSeq Method Mismatch`.
    pub reason: String,
    /// What is needed to answer; None for responses or without a usable Via.
    pub reply: Option<Box<ReplyContext>>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn bad(what: &str) -> String {
    format!("Bad Request - {what}")
}

enum Start {
    Request {
        method: Method,
        uri: Uri,
        version_ok: bool,
    },
    Response {
        status: u16,
        reason: Span,
    },
}

/// Parses one whole message (a UDP datagram or a TCP frame). Octets past
/// Content-Length are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8).
pub fn parse_message(frame: Bytes) -> Result<Message, ParseError> {
    // §7.5: ignore CRLFs before the start line.
    let skip = frame
        .iter()
        .take_while(|c| **c == b'\r' || **c == b'\n')
        .count();
    let frame = if skip == 0 {
        frame
    } else {
        frame.slice(skip..)
    };
    // The start line runs to the first LF (less the CR before it).
    let first_lf = memchr::memchr(b'\n', &frame);
    let line_end = first_lf.map_or(frame.len(), |n| n.saturating_sub(1));
    let is_response = frame[..line_end].starts_with(b"SIP/");
    let drop = |reason: String| ParseError {
        status: 0,
        reason,
        reply: None,
    };

    let frame_len = frame.len();
    // Headers first, so that a bad start line can still be answered.
    let split = split_headers(frame, first_lf.map_or(frame_len, |n| n + 1));
    // The reply context is only worked out on failure (off the hot path).
    let fail = |status: u16, reason: String, headers: Option<&Headers>| {
        let reply = if is_response {
            None
        } else {
            headers.and_then(reply_context).map(Box::new)
        };
        ParseError {
            status: if reply.is_some() { status } else { 0 },
            reason,
            reply,
        }
    };
    let (headers, body_start) = split.map_err(|why| fail(400, bad(why), None))?;
    let fail = |status: u16, reason: String| fail(status, reason, Some(&headers));
    let buf = &headers.buf[..];

    let start = if is_response {
        parse_status_line(buf, line_end).ok_or_else(|| drop(bad("Malformed Status-Line")))?
    } else {
        parse_request_line(buf, line_end).map_err(|why| fail(400, bad(why)))?
    };
    let Some(body_start) = body_start else {
        return Err(fail(400, bad("Missing Empty Line After Headers")));
    };
    if let Start::Request {
        version_ok: false, ..
    } = start
    {
        return Err(fail(505, "Version Not Supported".into()));
    }
    let method = match &start {
        Start::Request { method, .. } => Some(method),
        Start::Response { .. } => None,
    };
    let (base, content_length) =
        base_headers(&headers, method).map_err(|why| fail(400, bad(&why)))?;
    // The body lies in the frame part of the buffer, before any unfolded values.
    let available = frame_len - body_start;
    let body = match content_length {
        Some(n) if n > available => {
            return Err(fail(400, bad("Content-Length Larger Than Message")))
        }
        Some(n) => Span::new(body_start, body_start + n),
        // §18.3: without Content-Length a datagram's body runs to its end.
        None => Span::new(body_start, frame_len),
    };
    Ok(match start {
        Start::Request { method, uri, .. } => Message::Request(Box::new(Request {
            method,
            uri,
            base,
            headers,
            body,
        })),
        Start::Response { status, reason } => Message::Response(Box::new(Response {
            status,
            reason,
            base,
            headers,
            body,
        })),
    })
}

// Character classes (RFC 3261 §25.1), one table lookup per octet.
const TOKEN: u8 = 1;
const USER: u8 = 2;
const PASSWORD: u8 = 4;
const PARAM: u8 = 8;
const URI_HEADER: u8 = 16;
const HOST: u8 = 32;
const SCHEME: u8 = 64;
const PARAM_VALUE: u8 = 128;

const fn one_of(set: &[u8], c: u8) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set[i] == c {
            return true;
        }
        i += 1;
    }
    false
}

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alnum = c.is_ascii_alphanumeric();
        // unreserved = alphanum / mark; escaped = "%" HEX HEX (checked as "%").
        let unreserved = alnum || one_of(b"-_.!~*'()", c);
        let mut m = 0;
        if alnum || one_of(b"-.!%*_+`'~", c) {
            m |= TOKEN;
        }
        if unreserved || one_of(b"%&=+$,;?/", c) {
            m |= USER;
        }
        if unreserved || one_of(b"%&=+$,", c) {
            m |= PASSWORD;
        }
        if unreserved || one_of(b"%[]/:&+$", c) {
            m |= PARAM;
        }
        if unreserved || one_of(b"%[]/?:+$=&@", c) {
            m |= URI_HEADER;
        }
        if alnum || one_of(b"-._", c) {
            m |= HOST;
        }
        if alnum || one_of(b"+-.", c) {
            m |= SCHEME;
        }
        // An unquoted generic-param value: token / host (IPv6 included).
        if m & TOKEN != 0 || one_of(b":[]", c) {
            m |= PARAM_VALUE;
        }
        t[i] = m;
        i += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

fn is(c: u8, class: u8) -> bool {
    CLASS[c as usize] & class != 0
}

/// The index of the first octet at or after `i` outside `class`.
fn scan(s: &[u8], i: usize, class: u8) -> usize {
    match s.get(i..) {
        Some(rest) => {
            i + rest
                .iter()
                .position(|c| !is(*c, class))
                .unwrap_or(rest.len())
        }
        None => i,
    }
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 3261 §25.1 token characters.
fn is_token(c: u8) -> bool {
    is(c, TOKEN)
}

/// `s[a..b]` without leading and trailing SP/HTAB, as offsets.
fn trim_range(s: &[u8], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    (a, b)
}

/// Splits the header lines of `frame` from `start` (just past the start
/// line) up to the empty line, unfolding continuation lines (§7.3.1:
/// folding is equivalent to one SP). Returns the headers (which take the
/// frame as their buffer) and where the body starts (`None` without an
/// empty line). The head ends at the first CRLF CRLF; one `memchr` per
/// line finds both the lines and that end. Unfolded values are gathered in
/// an arena that is appended to the frame, so one buffer holds every span.
fn split_headers(frame: Bytes, start: usize) -> Result<(Headers, Option<usize>), &'static str> {
    let f = &frame[..];
    let end = f.len();
    let mut list: Vec<Header> = Vec::with_capacity(16);
    let mut arena: Vec<u8> = Vec::new();
    // Whether the last header's value was moved to the arena.
    let mut last_unfolded = false;
    let mut body = None;
    let mut pos = start;
    while pos < end {
        // An empty line right after a CRLF: the CRLF CRLF that ends the head.
        if f[pos] == b'\r' && f.get(pos + 1) == Some(&b'\n') && pos >= 2 && f[pos - 2] == b'\r' {
            body = Some(pos + 2);
            break;
        }
        // The same right after a start line that ended in a bare LF.
        if pos == start && f[pos..].starts_with(b"\r\n\r\n") {
            body = Some(pos + 4);
            break;
        }
        let line_end = match memchr::memchr(b'\n', &f[pos..]) {
            Some(n) if n > 0 && f[pos + n - 1] == b'\r' => pos + n - 1,
            Some(_) => return Err("Bare LF In Header"),
            None => end,
        };
        let (a, b) = (pos, line_end);
        pos = line_end + 2;
        if is_ws(f[a]) {
            let Some(last) = list.last_mut() else {
                return Err("Continuation Line Before Any Header");
            };
            let (ca, cb) = trim_range(f, a, b);
            // Arena offsets, before the frame is put in front.
            let va = if last_unfolded {
                last.value.start as usize - end
            } else {
                let x0 = arena.len();
                arena.extend_from_slice(last.value.of(f));
                x0
            };
            let had_value = va < arena.len();
            if ca < cb {
                if had_value {
                    arena.push(b' ');
                }
                arena.extend_from_slice(&f[ca..cb]);
            }
            last.value = Span::new(end + va, end + arena.len());
            last_unfolded = true;
            continue;
        }
        // field-name = token, then optional whitespace, then ":" (§7.3.1).
        let nb = scan(f, a, TOKEN).min(b);
        let mut colon = nb;
        while colon < b && is_ws(f[colon]) {
            colon += 1;
        }
        if nb == a || colon == b || f[colon] != b':' {
            return Err(if memchr::memchr(b':', &f[a..b]).is_some() {
                "Malformed Header Name"
            } else {
                "Malformed Header Line"
            });
        }
        let (va, vb) = trim_range(f, colon + 1, b);
        list.push(Header {
            name: Span::new(a, nb),
            value: Span::new(va, vb),
        });
        last_unfolded = false;
    }
    let buf = if arena.is_empty() {
        frame
    } else {
        let mut joined = Vec::with_capacity(end + arena.len());
        joined.extend_from_slice(f);
        joined.extend_from_slice(&arena);
        Bytes::from(joined)
    };
    Ok((Headers { buf, list }, body))
}

/// Request-Line = Method SP Request-URI SP SIP-Version (§7.1): exactly one
/// SP between the elements, none around them. The line is `frame[..end]`.
fn parse_request_line(buf: &[u8], end: usize) -> Result<Start, &'static str> {
    let line = &buf[..end];
    let mut parts = line.split(|c| *c == b' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Malformed Request-Line");
    };
    if m.is_empty() || !m.iter().all(|c| is_token(*c)) {
        return Err("Malformed Method");
    }
    let u0 = m.len() + 1;
    let uri = parse_uri(buf, Span::new(u0, u0 + u.len()), UriContext::RequestUri)
        .ok_or("Malformed Request-URI")?;
    let version_ok = match version(v) {
        Some((2, 0)) => true,
        Some(_) => false,
        None => return Err("Malformed SIP-Version"),
    };
    Ok(Start::Request {
        method: Method::from_token(m),
        uri,
        version_ok,
    })
}

/// `SIP/1*DIGIT.1*DIGIT` (case-insensitive "SIP"; at most 9 digits each).
fn version(v: &[u8]) -> Option<(u32, u32)> {
    if v == b"SIP/2.0" {
        return Some((2, 0));
    }
    if v.len() < 4 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let rest = &v[4..];
    let dot = rest.iter().position(|c| !c.is_ascii_digit())?;
    if dot == 0 || dot > 9 || rest[dot] != b'.' {
        return None;
    }
    let minor = &rest[dot + 1..];
    if minor.is_empty() || minor.len() > 9 || !minor.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((digits(&rest[..dot])?, digits(minor)?))
}

fn digits(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 10 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = d.iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
    u32::try_from(n).ok()
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2). The
/// line is `frame[..end]`.
fn parse_status_line(buf: &[u8], end: usize) -> Option<Start> {
    let line = &buf[..end];
    let sp = memchr::memchr(b' ', line)?;
    if version(&line[..sp])? != (2, 0) {
        return None;
    }
    let rest = &line[sp + 1..];
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), Some(b' ') | None) {
        return None;
    }
    let status = digits(code)? as u16;
    if !(100..=699).contains(&status) {
        return None;
    }
    let reason = if rest.len() > 4 {
        Span::new(sp + 5, end)
    } else {
        Span::new(end, end)
    };
    Some(Start::Response { status, reason })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum UriContext {
    /// The Request-URI: no URI headers allowed (§19.1.1 table).
    RequestUri,
    /// Inside `<>` of a name-addr.
    Angle,
    /// A bare addr-spec: no parameters (they belong to the header, §20).
    Bare,
}

/// Parses the URI `buf[raw]` (which becomes its `raw`); `None` if it is
/// malformed for its context.
fn parse_uri(buf: &[u8], raw: Span, ctx: UriContext) -> Option<Uri> {
    let s = raw.of(buf);
    let o = raw.start as usize;
    let at = |a: usize, b: usize| Span::new(o + a, o + b);
    // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" (§25.1)
    let colon = scan(s, 0, SCHEME);
    if colon == 0 || !s[0].is_ascii_alphabetic() || s.get(colon) != Some(&b':') {
        return None;
    }
    let scheme = &s[..colon];
    let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        return parse_tel(buf, raw, colon + 1);
    } else {
        // An opaque URI: any visible characters.
        let rest = &s[colon + 1..];
        if rest.is_empty()
            || !rest
                .iter()
                .all(|c| c.is_ascii_graphic() && *c != b'<' && *c != b'>')
        {
            return None;
        }
        let end = at(s.len(), s.len());
        return Some(Uri {
            scheme: Scheme::Other(at(0, colon)),
            user: None,
            host: end,
            port: None,
            params: end,
            raw,
        });
    };
    // [user[:password]@]host[:port]*(;param)[?headers] (§25.1).
    let mut i = colon + 1;
    let mut user = None;
    let user_end = scan(s, i, USER);
    if user_end > i {
        let mut j = user_end;
        if s.get(j) == Some(&b':') {
            j = scan(s, j + 1, PASSWORD);
        }
        if s.get(j) == Some(&b'@') {
            user = Some(at(i, user_end));
            i = j + 1;
        }
    }
    // host = hostname / IPv4address / IPv6reference
    let h0 = i;
    if s.get(i) == Some(&b'[') {
        let mut j = i + 1;
        while j < s.len() && (s[j].is_ascii_hexdigit() || s[j] == b':' || s[j] == b'.') {
            j += 1;
        }
        if j == i + 1 || s.get(j) != Some(&b']') {
            return None;
        }
        i = j + 1;
    } else {
        i = scan(s, i, HOST);
        if i == h0 {
            return None;
        }
    }
    let host = at(h0, i);
    let mut port = None;
    if s.get(i) == Some(&b':') {
        let mut j = i + 1;
        while j < s.len() && j - i <= 5 && s[j].is_ascii_digit() {
            j += 1;
        }
        port = Some(u16::try_from(digits(&s[i + 1..j])?).ok()?);
        i = j;
    }
    let p0 = i;
    while s.get(i) == Some(&b';') {
        let n0 = i + 1;
        let n1 = scan(s, n0, PARAM);
        if n1 == n0 {
            return None;
        }
        i = n1;
        if s.get(n1) == Some(&b'=') {
            let v1 = scan(s, n1 + 1, PARAM);
            if v1 == n1 + 1 {
                return None;
            }
            i = v1;
        }
    }
    let params = at(p0, i);
    let mut has_headers = false;
    if s.get(i) == Some(&b'?') {
        let j = scan(s, i + 1, URI_HEADER);
        if j == i + 1 {
            return None;
        }
        has_headers = true;
        i = j;
    }
    if i != s.len()
        || (has_headers && ctx == UriContext::RequestUri)
        || (!params.is_empty() && ctx == UriContext::Bare)
    {
        return None;
    }
    Some(Uri {
        scheme,
        user,
        host,
        port,
        params,
        raw,
    })
}

/// `tel:` (RFC 3966): number *(;param); the number goes in `user`. `rest`
/// is where the number starts in `buf[raw]`.
fn parse_tel(buf: &[u8], raw: Span, rest: usize) -> Option<Uri> {
    let s = raw.of(buf);
    let o = raw.start as usize;
    let number_end = memchr::memchr(b';', &s[rest..]).map_or(s.len(), |n| rest + n);
    let number = &s[rest..number_end];
    if number.is_empty()
        || !number
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+-.()*#%".contains(c))
    {
        return None;
    }
    // Every parameter needs a name.
    for p in s[number_end..].split(|c| *c == b';').skip(1) {
        let name = memchr::memchr(b'=', p).map_or(p, |e| &p[..e]);
        if name.is_empty() {
            return None;
        }
    }
    let end = Span::new(o + s.len(), o + s.len());
    Some(Uri {
        scheme: Scheme::Tel,
        user: Some(Span::new(o + rest, o + number_end)),
        host: end,
        port: None,
        params: Span::new(o + number_end, o + s.len()),
        raw,
    })
}

type Range = std::ops::Range<usize>;

/// `*(SWS ";" SWS name [SWS "=" SWS value])` generic parameters (§25.1),
/// values being tokens, hosts or quoted strings. Calls `each(name, value)`
/// with ranges into `s`, allocating nothing; `None` if malformed.
fn parse_params(s: &[u8], mut each: impl FnMut(Range, Option<Range>)) -> Option<()> {
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while s.get(*i).is_some_and(|c| is_ws(*c)) {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= s.len() {
            return Some(());
        }
        if s[i] != b';' {
            return None;
        }
        i += 1;
        skip_ws(&mut i);
        let n0 = i;
        i = scan(s, i, TOKEN);
        if i == n0 {
            return None;
        }
        let name = n0..i;
        skip_ws(&mut i);
        let mut value = None;
        if s.get(i) == Some(&b'=') {
            i += 1;
            skip_ws(&mut i);
            let v0 = i;
            if s.get(i) == Some(&b'"') {
                i = quoted_end(s, i)?;
            } else {
                i = scan(s, i, PARAM_VALUE);
            }
            if i == v0 {
                return None;
            }
            value = Some(v0..i);
        }
        each(name, value);
    }
}

/// The index just past the quoted string starting at `i` (§25.1 quoted-pair).
fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            b'\r' | b'\n' => return None,
            _ => j += 1,
        }
    }
    None
}

/// From, To, Contact (§20.10, §20.20, §20.39); `buf[v]` is the whole value
/// and becomes `raw`.
fn parse_name_addr(buf: &[u8], v: Span) -> Option<NameAddr> {
    let s = v.of(buf);
    let o = v.start as usize;
    let at = |a: usize, b: usize| Span::new(o + a, o + b);
    let mut i = 0;
    let mut display = None;
    if s.first() == Some(&b'"') {
        let end = quoted_end(s, 0)?;
        display = Some(at(1, end - 1));
        i = end;
        while s.get(i).is_some_and(|c| is_ws(*c)) {
            i += 1;
        }
        if s.get(i) != Some(&b'<') {
            return None;
        }
    } else if let Some(lt) = memchr::memchr(b'<', s) {
        // *(token LWS) before "<".
        if !s[..lt].iter().all(|c| is_token(*c) || is_ws(*c)) {
            return None;
        }
        let (a, b) = trim_range(s, 0, lt);
        display = (a < b).then(|| at(a, b));
        i = lt;
    }
    let (uri, params) = if s.get(i) == Some(&b'<') {
        let close = i + memchr::memchr(b'>', &s[i..])?;
        let uri = parse_uri(buf, at(i + 1, close), UriContext::Angle)?;
        (uri, close + 1)
    } else {
        // addr-spec: the URI ends at the first ';' or whitespace (§20).
        let end = s
            .iter()
            .position(|c| *c == b';' || is_ws(*c))
            .unwrap_or(s.len());
        let uri = parse_uri(buf, at(0, end), UriContext::Bare)?;
        (uri, end)
    };
    let mut tag = None;
    parse_params(&s[params..], |n, val| {
        if s[params + n.start..params + n.end].eq_ignore_ascii_case(b"tag") {
            tag = val.map(|r| at(params + r.start, params + r.end));
        }
    })?;
    Some(NameAddr {
        display,
        uri,
        tag,
        raw: v,
    })
}

/// `SIP / 2.0 / transport sent-by *(;via-params)` (§20.42), SWS around "/".
fn parse_via(buf: &[u8], v: Span) -> Option<Via> {
    via(buf, v, true)
}

/// A Via good enough to route an error response: any protocol version, and
/// parameters up to the first malformed one (RFC 4475 §3.1.2.1, §3.1.2.16).
fn parse_via_loose(buf: &[u8], v: Span) -> Option<Via> {
    via(buf, v, false)
}

fn via(buf: &[u8], v: Span, strict: bool) -> Option<Via> {
    let s = v.of(buf);
    let o = v.start as usize;
    let at = |r: Range| Span::new(o + r.start, o + r.end);
    let ws = |mut i: usize| {
        while i < s.len() && is_ws(s[i]) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    let mut proto = [0..0, 0..0, 0..0];
    for (k, slot) in proto.iter_mut().enumerate() {
        i = ws(i);
        let t0 = i;
        i = scan(s, i, TOKEN);
        if i == t0 {
            return None;
        }
        *slot = t0..i;
        i = ws(i);
        if k < 2 {
            if s.get(i) != Some(&b'/') {
                return None;
            }
            i += 1;
        }
    }
    if strict
        && (!s[proto[0].clone()].eq_ignore_ascii_case(b"SIP") || &s[proto[1].clone()] != b"2.0")
    {
        return None;
    }
    // sent-by = host [":" port]
    let h0 = i;
    if s.get(i) == Some(&b'[') {
        i += memchr::memchr(b']', &s[i..])? + 1;
    } else {
        i = scan(s, i, HOST);
    }
    if i == h0 {
        return None;
    }
    let host = h0..i;
    let mut port = None;
    let p = ws(i);
    if s.get(p) == Some(&b':') {
        let d0 = ws(p + 1);
        i = d0;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        port = Some(u16::try_from(digits(&s[d0..i])?).ok()?);
    }
    let (mut branch, mut rport, mut received) = (None, None, None);
    let mut ok = true;
    let parsed = parse_params(&s[i..], |n, val| {
        let name = &s[i + n.start..i + n.end];
        let val = val.map(|r| i + r.start..i + r.end);
        if name.eq_ignore_ascii_case(b"branch") {
            match val {
                Some(r) => branch = Some(r),
                None => ok = false,
            }
        } else if name.eq_ignore_ascii_case(b"rport") {
            rport = match val {
                Some(r) => match digits(&s[r]).and_then(|p| u16::try_from(p).ok()) {
                    Some(p) => Some(Some(p)),
                    None => {
                        ok = false;
                        None
                    }
                },
                None => Some(None),
            };
        } else if name.eq_ignore_ascii_case(b"received") {
            match val {
                Some(r) => received = Some(r),
                None => ok = false,
            }
        }
    });
    if strict && (parsed.is_none() || !ok) {
        return None;
    }
    Some(Via {
        transport: at(proto[2].clone()),
        host: at(host),
        port,
        branch: branch.map(at),
        rport,
        received: received.map(at),
        raw: v,
    })
}

/// What is needed to answer a broken request: its Vias and dialog headers.
fn reply_context(h: &Headers) -> Option<ReplyContext> {
    // Every Via value, split and trimmed once (as `Headers::get_all` would).
    let spans: Vec<Span> = h
        .list
        .iter()
        .filter(|hd| known(h.name_of(hd)) == Known::Via)
        .flat_map(|hd| comma_spans(&h.buf, hd.value))
        .filter(|v| !v.is_empty())
        .collect();
    let top_via = parse_via_loose(&h.buf, *spans.first()?)?;
    let vias = spans.iter().map(|v| h.buf.slice(v.range())).collect();
    let one = |name: &str| h.get(name);
    Some(ReplyContext {
        top_via,
        buf: h.buf.clone(),
        vias,
        from: one("From"),
        to: one("To"),
        call_id: one("Call-ID"),
        cseq: one("CSeq"),
    })
}

/// Pulls out the mandatory headers and Content-Length; refuses duplicates
/// of single-value headers and a CSeq method that is not the request's.
fn base_headers(
    h: &Headers,
    method: Option<&Method>,
) -> Result<(BaseHeaders, Option<usize>), String> {
    let mut vias = Vec::with_capacity(2);
    let (mut from, mut to, mut call_id, mut cseq, mut max_forwards, mut content_length, mut ctype) =
        (None, None, None, None, None, None, None);
    fn once<T>(slot: &mut Option<T>, v: T, name: &str) -> Result<(), String> {
        if slot.is_some() {
            return Err(format!("Duplicate {name}"));
        }
        *slot = Some(v);
        Ok(())
    }
    let buf = &h.buf[..];
    for hd in &h.list {
        let kind = known(h.name_of(hd));
        if kind == Known::Other {
            continue;
        }
        // Only the values kept are cut as `Bytes`; the rest are read in place.
        let v = h.value_of(hd);
        match kind {
            Known::Via if memchr::memchr(b',', v).is_none() => {
                vias.push(parse_via(buf, hd.value).ok_or("Malformed Via")?)
            }
            Known::Via => {
                for part in comma_spans(buf, hd.value) {
                    vias.push(parse_via(buf, part).ok_or("Malformed Via")?);
                }
            }
            Known::From => once(
                &mut from,
                parse_name_addr(buf, hd.value).ok_or("Malformed From")?,
                "From",
            )?,
            Known::To => once(
                &mut to,
                parse_name_addr(buf, hd.value).ok_or("Malformed To")?,
                "To",
            )?,
            Known::CallId => {
                if v.is_empty() || v.iter().any(|c| is_ws(*c) || !c.is_ascii_graphic()) {
                    return Err("Malformed Call-ID".into());
                }
                once(&mut call_id, hd.value, "Call-ID")?;
            }
            Known::CSeq => {
                let split = v.iter().position(|c| is_ws(*c)).ok_or("Malformed CSeq")?;
                let num = &v[..split];
                let (m0, m1) = trim_range(v, split, v.len());
                let m = &v[m0..m1];
                if !num.iter().all(u8::is_ascii_digit)
                    || m.is_empty()
                    || !m.iter().all(|c| is_token(*c))
                {
                    return Err("Malformed CSeq".into());
                }
                // §8.1.1.5: the sequence number is < 2^31 on creation and fits 32 bits.
                let seq = digits(num).ok_or("CSeq Number Out Of Range")?;
                once(
                    &mut cseq,
                    CSeq {
                        seq,
                        method: Method::from_token(m),
                    },
                    "CSeq",
                )?;
            }
            Known::MaxForwards => {
                let n = digits(v).ok_or("Malformed Max-Forwards")?;
                once(&mut max_forwards, n, "Max-Forwards")?;
            }
            Known::ContentLength => {
                let n = digits(v).ok_or("Malformed Content-Length")?;
                once(&mut content_length, n as usize, "Content-Length")?;
            }
            Known::ContentType => once(&mut ctype, (), "Content-Type")?,
            Known::Other => {}
        }
    }
    if vias.is_empty() {
        return Err("Missing Via".into());
    }
    let from = from.ok_or("Missing From")?;
    let to = to.ok_or("Missing To")?;
    let call_id = call_id.ok_or("Missing Call-ID")?;
    let cseq = cseq.ok_or("Missing CSeq")?;
    if let Some(m) = method {
        if *m != cseq.method {
            return Err("CSeq Method Mismatch".into());
        }
    }
    Ok((
        BaseHeaders {
            vias,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
        },
        content_length,
    ))
}

#[cfg(test)]
mod tests;
