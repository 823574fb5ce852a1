//! The parsed types as they were when every field was a `Bytes` (before
//! they became spans of the message buffer): the reference parser
//! (`parser.rs`) still produces them, and the fast parser's output is
//! converted to them ([`from_fast`]) so that the two are compared by
//! content, field by field. Tests only.

use super::shared::{expand, is_list, split_commas};
use bytes::Bytes;
use facd::sip::message::{self as fast, CSeq, Method};

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheme {
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
pub(crate) struct Uri {
    /// The scheme.
    pub(crate) scheme: Scheme,
    /// The user part, raw (still %-escaped).
    pub(crate) user: Option<Bytes>,
    /// The host; IPv6 references keep their brackets.
    pub(crate) host: Bytes,
    /// The port.
    pub(crate) port: Option<u16>,
    /// `;name[=value]` URI parameters, raw.
    pub(crate) params: Vec<(Bytes, Option<Bytes>)>,
    /// The whole URI as written.
    pub(crate) raw: Bytes,
}

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Via {
    /// `UDP`, `TCP`, … as written.
    pub(crate) transport: Bytes,
    /// The sent-by host (IPv6 with brackets).
    pub(crate) host: Bytes,
    /// The sent-by port.
    pub(crate) port: Option<u16>,
    /// The branch parameter.
    pub(crate) branch: Option<Bytes>,
    /// `Some(None)` for a bare `;rport`, `Some(Some(p))` with a value (RFC 3581).
    pub(crate) rport: Option<Option<u16>>,
    /// The received parameter.
    pub(crate) received: Option<Bytes>,
    /// The via-parm as received.
    pub(crate) raw: Bytes,
}

/// A From/To/Contact value: `["display"] <uri>;params` or `uri;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameAddr {
    /// The display name (quotes removed, escapes kept).
    pub(crate) display: Option<Bytes>,
    /// The URI.
    pub(crate) uri: Uri,
    /// The tag parameter.
    pub(crate) tag: Option<Bytes>,
    /// The whole header value.
    pub(crate) raw: Bytes,
}
/// The headers every request and response must have, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseHeaders {
    /// Every Via, top first (at least one).
    pub(crate) vias: Vec<Via>,
    /// From.
    pub(crate) from: NameAddr,
    /// To.
    pub(crate) to: NameAddr,
    /// Call-ID.
    pub(crate) call_id: Bytes,
    /// CSeq.
    pub(crate) cseq: CSeq,
    /// Max-Forwards, if present.
    pub(crate) max_forwards: Option<u32>,
}
/// Where a header's text lives: in the frame, or (unfolded) in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    Frame(u32, u32),
    Arena(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) name: (u32, u32),
    pub(crate) value: Loc,
}

/// All header fields, in order, unfolded. Names and values are kept as
/// offsets into the frame (no per-header reference counting); `Bytes` are
/// cut only when asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers {
    pub(crate) frame: Bytes,
    pub(crate) arena: Bytes,
    pub(crate) list: Vec<Header>,
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
    pub(crate) fn name_of(&self, h: &Header) -> &[u8] {
        &self.frame[h.name.0 as usize..h.name.1 as usize]
    }

    pub(crate) fn value_of(&self, h: &Header) -> &[u8] {
        match h.value {
            Loc::Frame(a, b) => &self.frame[a as usize..b as usize],
            Loc::Arena(a, b) => &self.arena[a as usize..b as usize],
        }
    }

    pub(crate) fn bytes_of(&self, h: &Header) -> Bytes {
        match h.value {
            Loc::Frame(a, b) => self.frame.slice(a as usize..b as usize),
            Loc::Arena(a, b) => self.arena.slice(a as usize..b as usize),
        }
    }

    /// The first value of `name` (long or compact form, case-insensitive).
    pub(crate) fn get(&self, name: &str) -> Option<Bytes> {
        let want = expand(name.as_bytes());
        self.list
            .iter()
            .find(|h| expand(self.name_of(h)).eq_ignore_ascii_case(want))
            .map(|h| self.bytes_of(h))
    }

    /// Every value of `name`; comma-separated list headers are split
    /// (outside quotes and `<>`), and each element trimmed.
    pub(crate) fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = Bytes> + 'a {
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
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.list
            .iter()
            .map(|h| (self.name_of(h), self.value_of(h)))
    }
}
/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The method.
    pub(crate) method: Method,
    /// The Request-URI.
    pub(crate) uri: Uri,
    /// Via, From, To, Call-ID, CSeq, Max-Forwards.
    pub(crate) base: BaseHeaders,
    /// Every header.
    pub(crate) headers: Headers,
    /// The body (Content-Length octets).
    pub(crate) body: Bytes,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The reason phrase (any octets).
    pub(crate) reason: Bytes,
    /// Via, From, To, Call-ID, CSeq.
    pub(crate) base: BaseHeaders,
    /// Every header.
    pub(crate) headers: Headers,
    /// The body.
    pub(crate) body: Bytes,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A request (boxed: the typed headers make it about 1 KB, and a box
    /// moves cheaply through channels).
    Request(Box<Request>),
    /// A response.
    Response(Box<Response>),
}

/// Raw values of the headers an error response copies (RFC 3261 §8.2.6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyContext {
    /// Every Via value, top first.
    pub(crate) vias: Vec<Bytes>,
    /// The top Via, parsed (for routing the answer).
    pub(crate) top_via: Via,
    /// From, To, Call-ID, CSeq values if present.
    pub(crate) from: Option<Bytes>,
    /// To.
    pub(crate) to: Option<Bytes>,
    /// Call-ID.
    pub(crate) call_id: Option<Bytes>,
    /// CSeq.
    pub(crate) cseq: Option<Bytes>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 400, 505, or 0: drop silently (responses, or no usable Via).
    pub(crate) status: u16,
    /// The whole reason phrase, e.g. `Bad Request - CSeq Method Mismatch`.
    pub(crate) reason: String,
    /// What is needed to answer; None for responses or without a usable Via.
    pub(crate) reply: Option<Box<ReplyContext>>,
}
pub(crate) enum Start {
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
pub(crate) fn from_fast(
    r: &Result<fast::Message, fast::ParseError>,
) -> Result<Message, ParseError> {
    match r {
        Ok(fast::Message::Request(q)) => Ok(Message::Request(Box::new(request(q)))),
        Ok(fast::Message::Response(q)) => {
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
pub(crate) fn request(q: &fast::Request) -> Request {
    let b = q.headers.buf();
    Request {
        method: q.method.clone(),
        uri: uri(b, &q.uri),
        base: base(b, &q.base),
        headers: headers(&q.headers),
        body: q.bytes(q.body),
    }
}

fn cut(b: &Bytes, s: fast::Span) -> Bytes {
    b.slice_ref(s.of(b))
}

fn uri(b: &Bytes, u: &fast::Uri) -> Uri {
    Uri {
        scheme: match u.scheme {
            fast::Scheme::Sip => Scheme::Sip,
            fast::Scheme::Sips => Scheme::Sips,
            fast::Scheme::Tel => Scheme::Tel,
            fast::Scheme::Other(s) => Scheme::Other(cut(b, s)),
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

fn via(b: &Bytes, v: &fast::Via) -> Via {
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

fn name_addr(b: &Bytes, n: &fast::NameAddr) -> NameAddr {
    NameAddr {
        display: n.display.map(|s| cut(b, s)),
        uri: uri(b, &n.uri),
        tag: n.tag.map(|s| cut(b, s)),
        raw: cut(b, n.raw),
    }
}

fn base(b: &Bytes, h: &fast::BaseHeaders) -> BaseHeaders {
    BaseHeaders {
        vias: h.vias.iter().map(|v| via(b, v)).collect(),
        from: name_addr(b, &h.from),
        to: name_addr(b, &h.to),
        call_id: cut(b, h.call_id),
        cseq: h.cseq.clone(),
        max_forwards: h.max_forwards,
    }
}

fn headers(h: &fast::Headers) -> Headers {
    let buf = h.buf();
    // Every name and value `iter` yields is a slice of `buf`: its offsets.
    let range = |s: &[u8]| {
        let a = (s.as_ptr() as usize - buf.as_ptr() as usize) as u32;
        (a, a + s.len() as u32)
    };
    Headers {
        frame: buf.clone(),
        arena: Bytes::new(),
        list: h
            .iter()
            .map(|(name, value)| {
                let (a, b) = range(value);
                Header {
                    name: range(name),
                    value: Loc::Frame(a, b),
                }
            })
            .collect(),
    }
}
