//! The parsed types as they were when every field was a `Bytes` (before
//! they became spans of the message buffer): the reference parser
//! (`reference.rs`) still produces them, and the fast parser's output is
//! converted to them ([`from_fast`]) so that the two are compared by
//! content, field by field. Tests only.

use super::{expand, is_list, split_commas, unescape, CSeq, Method};
use bytes::Bytes;

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Anything else (kept opaque).
    Other(Bytes),
}

/// A URI. For `sip`/`sips` every part is parsed; `tel` puts the number in
/// `user`; other schemes keep only `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Uri {
    /// The scheme.
    pub(super) scheme: Scheme,
    /// The user part, raw (still %-escaped).
    pub(super) user: Option<Bytes>,
    /// The host; IPv6 references keep their brackets.
    pub(super) host: Bytes,
    /// The port.
    pub(super) port: Option<u16>,
    /// `;name[=value]` URI parameters, raw.
    pub(super) params: Vec<(Bytes, Option<Bytes>)>,
    /// The whole URI as written.
    pub(super) raw: Bytes,
}

impl Uri {
    /// The user part with `%HH` escapes decoded (RFC 3261 §19.1.4 compares
    /// URIs after unescaping).
    pub(super) fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_ref().map(|u| unescape(u))
    }

    /// A URI parameter by name (case-insensitive): `Some(None)` if it has no value.
    pub(super) fn param(&self, name: &str) -> Option<Option<&[u8]>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_deref())
    }
}
/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Via {
    /// `UDP`, `TCP`, … as written.
    pub(super) transport: Bytes,
    /// The sent-by host (IPv6 with brackets).
    pub(super) host: Bytes,
    /// The sent-by port.
    pub(super) port: Option<u16>,
    /// The branch parameter.
    pub(super) branch: Option<Bytes>,
    /// `Some(None)` for a bare `;rport`, `Some(Some(p))` with a value (RFC 3581).
    pub(super) rport: Option<Option<u16>>,
    /// The received parameter.
    pub(super) received: Option<Bytes>,
    /// The via-parm as received.
    pub(super) raw: Bytes,
}

impl Via {
    /// `host[:port]`, host lower-cased: the sent-by of transaction matching.
    pub(super) fn sent_by(&self) -> String {
        let host = String::from_utf8_lossy(&self.host).to_ascii_lowercase();
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

/// A From/To/Contact value: `["display"] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NameAddr {
    /// The display name (quotes removed, escapes kept).
    pub(super) display: Option<Bytes>,
    /// The URI.
    pub(super) uri: Uri,
    /// The tag parameter.
    pub(super) tag: Option<Bytes>,
    /// The whole header value.
    pub(super) raw: Bytes,
}
/// The headers every request and response must have, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BaseHeaders {
    /// Every Via, top first (at least one).
    pub(super) vias: Vec<Via>,
    /// From.
    pub(super) from: NameAddr,
    /// To.
    pub(super) to: NameAddr,
    /// Call-ID.
    pub(super) call_id: Bytes,
    /// CSeq.
    pub(super) cseq: CSeq,
    /// Max-Forwards, if present.
    pub(super) max_forwards: Option<u32>,
}
/// Where a header's text lives: in the frame, or (unfolded) in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Loc {
    Frame(u32, u32),
    Arena(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) name: (u32, u32),
    pub(super) value: Loc,
}

/// All header fields, in order, unfolded. Names and values are kept as
/// offsets into the frame (no per-header reference counting); `Bytes` are
/// cut only when asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct Headers {
    pub(super) frame: Bytes,
    pub(super) arena: Bytes,
    pub(super) list: Vec<Header>,
}

/// Headers are equal when they have the same names and values in the same
/// order, wherever the text lives.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl Headers {
    pub(super) fn name_of(&self, h: &Header) -> &[u8] {
        &self.frame[h.name.0 as usize..h.name.1 as usize]
    }

    pub(super) fn value_of(&self, h: &Header) -> &[u8] {
        match h.value {
            Loc::Frame(a, b) => &self.frame[a as usize..b as usize],
            Loc::Arena(a, b) => &self.arena[a as usize..b as usize],
        }
    }

    pub(super) fn bytes_of(&self, h: &Header) -> Bytes {
        match h.value {
            Loc::Frame(a, b) => self.frame.slice(a as usize..b as usize),
            Loc::Arena(a, b) => self.arena.slice(a as usize..b as usize),
        }
    }

    /// The first value of `name` (long or compact form, case-insensitive).
    pub(super) fn get(&self, name: &str) -> Option<Bytes> {
        let want = expand(name.as_bytes());
        self.list
            .iter()
            .find(|h| expand(self.name_of(h)).eq_ignore_ascii_case(want))
            .map(|h| self.bytes_of(h))
    }

    /// Every value of `name`; comma-separated list headers are split
    /// (outside quotes and `<>`), and each element trimmed.
    pub(super) fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Bytes> + 'a {
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
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list
            .iter()
            .map(|h| (self.name_of(h), self.value_of(h)))
    }
}
/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    /// The method.
    pub(super) method: Method,
    /// The Request-URI.
    pub(super) uri: Uri,
    /// Via, From, To, Call-ID, CSeq, Max-Forwards.
    pub(super) base: BaseHeaders,
    /// Every header.
    pub(super) headers: Headers,
    /// The body (Content-Length octets).
    pub(super) body: Bytes,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Response {
    /// The status code.
    pub(super) status: u16,
    /// The reason phrase (any octets).
    pub(super) reason: Bytes,
    /// Via, From, To, Call-ID, CSeq.
    pub(super) base: BaseHeaders,
    /// Every header.
    pub(super) headers: Headers,
    /// The body.
    pub(super) body: Bytes,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Message {
    /// A request (boxed: the typed headers make it about 1 KB, and a box
    /// moves cheaply through channels).
    Request(Box<Request>),
    /// A response.
    Response(Box<Response>),
}

/// Raw values of the headers an error response copies (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplyContext {
    /// Every Via value, top first.
    pub(super) vias: Vec<Bytes>,
    /// The top Via, parsed (for routing the answer).
    pub(super) top_via: Via,
    /// From, To, Call-ID, CSeq values if present.
    pub(super) from: Option<Bytes>,
    /// To.
    pub(super) to: Option<Bytes>,
    /// Call-ID.
    pub(super) call_id: Option<Bytes>,
    /// CSeq.
    pub(super) cseq: Option<Bytes>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ParseError {
    /// 400, 505, or 0: drop silently (responses, or no usable Via).
    pub(super) status: u16,
    /// The whole reason phrase, e.g. `Bad Request - CSeq Method Mismatch`.
    pub(super) reason: String,
    /// What is needed to answer; None for responses or without a usable Via.
    pub(super) reply: Option<Box<ReplyContext>>,
}
pub(super) enum Start {
    Request {
        method: Method,
        uri: Uri,
        version_ok: bool,
    },
    Response {
        status: u16,
        reason: Bytes,
    },
}

/// The fast parser's result in the owned form, every span resolved.
pub(super) fn from_fast(
    r: &Result<super::Message, super::ParseError>,
) -> Result<Message, ParseError> {
    match r {
        Ok(super::Message::Request(q)) => Ok(Message::Request(Box::new(request(q)))),
        Ok(super::Message::Response(q)) => {
            let b = q.headers.buf();
            Ok(Message::Response(Box::new(Response {
                status: q.status,
                reason: q.bytes(q.reason),
                base: base(b, &q.base),
                headers: headers(&q.headers),
                body: q.bytes(q.body),
            })))
        }
        Err(e) => Err(ParseError {
            status: e.status,
            reason: e.reason.clone(),
            reply: e.reply.as_ref().map(|c| {
                Box::new(ReplyContext {
                    vias: c.vias.clone(),
                    top_via: via(&c.buf, &c.top_via),
                    from: c.from.clone(),
                    to: c.to.clone(),
                    call_id: c.call_id.clone(),
                    cseq: c.cseq.clone(),
                })
            }),
        }),
    }
}

/// A fast-parsed request in the owned form.
pub(super) fn request(q: &super::Request) -> Request {
    let b = q.headers.buf();
    Request {
        method: q.method.clone(),
        uri: uri(b, &q.uri),
        base: base(b, &q.base),
        headers: headers(&q.headers),
        body: q.bytes(q.body),
    }
}

fn cut(b: &Bytes, s: super::Span) -> Bytes {
    b.slice_ref(s.of(b))
}

fn uri(b: &Bytes, u: &super::Uri) -> Uri {
    Uri {
        scheme: match u.scheme {
            super::Scheme::Sip => Scheme::Sip,
            super::Scheme::Sips => Scheme::Sips,
            super::Scheme::Tel => Scheme::Tel,
            super::Scheme::Other(s) => Scheme::Other(cut(b, s)),
        },
        user: u.user.map(|s| cut(b, s)),
        host: cut(b, u.host),
        port: u.port,
        params: u
            .params(b)
            .map(|(n, v)| (b.slice_ref(n), v.map(|v| b.slice_ref(v))))
            .collect(),
        raw: cut(b, u.raw),
    }
}

fn via(b: &Bytes, v: &super::Via) -> Via {
    Via {
        transport: cut(b, v.transport),
        host: cut(b, v.host),
        port: v.port,
        branch: v.branch.map(|s| cut(b, s)),
        rport: v.rport,
        received: v.received.map(|s| cut(b, s)),
        raw: cut(b, v.raw),
    }
}

fn name_addr(b: &Bytes, n: &super::NameAddr) -> NameAddr {
    NameAddr {
        display: n.display.map(|s| cut(b, s)),
        uri: uri(b, &n.uri),
        tag: n.tag.map(|s| cut(b, s)),
        raw: cut(b, n.raw),
    }
}

fn base(b: &Bytes, h: &super::BaseHeaders) -> BaseHeaders {
    BaseHeaders {
        vias: h.vias.iter().map(|v| via(b, v)).collect(),
        from: name_addr(b, &h.from),
        to: name_addr(b, &h.to),
        call_id: cut(b, h.call_id),
        cseq: h.cseq.clone(),
        max_forwards: h.max_forwards,
    }
}

fn headers(h: &super::Headers) -> Headers {
    Headers {
        frame: h.buf().clone(),
        arena: Bytes::new(),
        list: h
            .list
            .iter()
            .map(|x| Header {
                name: (x.name.start, x.name.end),
                value: Loc::Frame(x.value.start, x.value.end),
            })
            .collect(),
    }
}
