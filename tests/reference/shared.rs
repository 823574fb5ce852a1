//! The fast parser's private helpers that the reference used when it lived
//! beside it (header-name recognition, compact forms, list splitting, the
//! `400` reason phrase, URI contexts), copied as they were, so that the
//! reference needs nothing private from facd.

use bytes::Bytes;

pub(crate) fn bad(what: &str) -> String {
    format!("Bad Request - {what}")
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriContext {
    /// The Request-URI: no URI headers allowed (§19.1.1 table).
    RequestUri,
    /// Inside `<>` of a name-addr.
    Angle,
    /// A bare addr-spec: no parameters (they belong to the header, §20).
    Bare,
}

/// The header names facd looks at, recognised once per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
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

pub(crate) fn known(name: &[u8]) -> Known {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
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
pub(crate) fn expand(name: &[u8]) -> &[u8] {
    if let [c] = name {
        let c = c.to_ascii_lowercase();
        if let Some((long, _)) = COMPACT.iter().find(|(_, s)| *s == c) {
            return long.as_bytes();
        }
    }
    name
}

/// Header names whose values are comma-separated lists (RFC 3261 §7.3.1).
pub(crate) fn is_list(name: &[u8]) -> bool {
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

/// Splits a header value on commas outside quoted strings and `<>`, each
/// element trimmed of SP/HTAB (a value without a comma is kept whole).
pub(crate) fn split_commas(v: &Bytes) -> Vec<Bytes> {
    if memchr::memchr(b',', v).is_none() {
        return vec![v.clone()];
    }
    let mut out = Vec::new();
    let (mut start, mut quoted, mut angle, mut escaped) = (0, false, false, false);
    let mut push = |a: usize, b: usize| {
        let (mut a, mut b) = (a, b);
        while a < b && is_ws(v[a]) {
            a += 1;
        }
        while b > a && is_ws(v[b - 1]) {
            b -= 1;
        }
        out.push(v.slice(a..b));
    };
    for (i, &c) in v.iter().enumerate() {
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
    push(start, v.len());
    out
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}
