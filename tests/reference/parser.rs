//! The parser as it was before the hand-written scanners (nom for the URI
//! grammar and the SIP version, a memmem search for the end of the head,
//! a `Bytes` clone per header value): kept, for tests only, as the careful
//! reference that the fast parser must agree with on every input
//! (`tests/parser_agreement.rs`). A deliberate change of behaviour must be
//! made here too.

use super::owned::{
    BaseHeaders, Header, Headers, Loc, Message, NameAddr, ParseError, ReplyContext, Request,
    Response, Scheme, Start, Uri, Via,
};
use super::shared::{bad, known, split_commas, Known, UriContext};
use bytes::Bytes;
use facd::sip::message::{CSeq, Method};
use memchr::memmem;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1, take_while_m_n};
use nom::combinator::{all_consuming, opt, recognize};
use nom::sequence::{delimited, preceded};
use nom::{IResult, Parser};

/// The end of the head, searched once per message.
static CRLFCRLF: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// Parses one whole message (a UDP datagram or a TCP frame). Octets past
/// Content-Length are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8).
pub(crate) fn parse_message(frame: Bytes) -> Result<Message, ParseError> {
    // §7.5: ignore CRLFs before the start line.
    let skip = frame
        .iter()
        .take_while(|c| **c == b'\r' || **c == b'\n')
        .count();
    let frame = frame.slice(skip..);
    let (head_end, body_start) = match CRLFCRLF.find(&frame) {
        Some(p) => (p, Some(p + 4)),
        None => (frame.len(), None),
    };
    let head = frame.slice(..head_end);
    let line_end = memchr::memchr(b'\n', &head).map_or(head.len(), |n| n.saturating_sub(1));
    let start_line = head.slice(..line_end);
    let is_response = start_line.starts_with(b"SIP/");
    let drop = |reason: String| ParseError {
        status: 0,
        reason,
        reply: None,
    };

    // Headers first, so that a bad start line can still be answered.
    let headers = split_headers(&frame, (line_end + 2).min(head_end), head_end);
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
    let headers = headers.map_err(|why| fail(400, bad(why), None))?;
    let fail = |status: u16, reason: String| fail(status, reason, Some(&headers));

    let start = if is_response {
        parse_status_line(&start_line).ok_or_else(|| drop(bad("Malformed Status-Line")))?
    } else {
        parse_request_line(&start_line).map_err(|why| fail(400, bad(why)))?
    };
    if body_start.is_none() {
        return Err(fail(400, bad("Missing Empty Line After Headers")));
    }
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
    let body_start = body_start.unwrap_or(frame.len());
    let available = frame.len() - body_start;
    let body = match content_length {
        Some(n) if n > available => {
            return Err(fail(400, bad("Content-Length Larger Than Message")))
        }
        Some(n) => frame.slice(body_start..body_start + n),
        // §18.3: without Content-Length a datagram's body runs to its end.
        None => frame.slice(body_start..),
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

fn trim(b: Bytes) -> Bytes {
    let s = b.iter().position(|c| !is_ws(*c)).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !is_ws(*c)).map_or(s, |e| e + 1);
    b.slice(s..e.max(s))
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// RFC 3261 §25.1 token characters.
fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
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

/// Splits the header lines in `frame[start..end]`, unfolding continuation
/// lines (§7.3.1: folding is equivalent to one SP).
fn split_headers(frame: &Bytes, start: usize, end: usize) -> Result<Headers, &'static str> {
    let f = &frame[..end];
    let mut list: Vec<Header> = Vec::with_capacity(16);
    let mut arena: Vec<u8> = Vec::new();
    let mut pos = start;
    while pos < end {
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
            let (va, vb) = match last.value {
                Loc::Frame(x, y) => {
                    let x0 = arena.len();
                    arena.extend_from_slice(&f[x as usize..y as usize]);
                    (x0, arena.len())
                }
                Loc::Arena(x, y) => (x as usize, y as usize),
            };
            debug_assert_eq!(vb, arena.len());
            if ca < cb {
                if va < vb {
                    arena.push(b' ');
                }
                arena.extend_from_slice(&f[ca..cb]);
            }
            last.value = Loc::Arena(va as u32, arena.len() as u32);
            continue;
        }
        let Some(colon) = memchr::memchr(b':', &f[a..b]).map(|c| a + c) else {
            return Err("Malformed Header Line");
        };
        let (na, nb) = trim_range(f, a, colon);
        if na == nb || !f[na..nb].iter().all(|c| is_token(*c)) {
            return Err("Malformed Header Name");
        }
        let (va, vb) = trim_range(f, colon + 1, b);
        list.push(Header {
            name: (na as u32, nb as u32),
            value: Loc::Frame(va as u32, vb as u32),
        });
    }
    Ok(Headers {
        frame: frame.clone(),
        arena: Bytes::from(arena),
        list,
    })
}

/// Request-Line = Method SP Request-URI SP SIP-Version (§7.1): exactly one
/// SP between the elements, none around them.
fn parse_request_line(line: &Bytes) -> Result<Start, &'static str> {
    let mut parts = line.split(|c| *c == b' ');
    let (Some(m), Some(u), Some(v), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Malformed Request-Line");
    };
    if m.is_empty() || !m.iter().all(|c| is_token(*c)) {
        return Err("Malformed Method");
    }
    let uri =
        parse_uri(&line.slice_ref(u), UriContext::RequestUri).ok_or("Malformed Request-URI")?;
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

/// `SIP/1*DIGIT.1*DIGIT` (case-insensitive "SIP").
pub(crate) fn version(v: &[u8]) -> Option<(u32, u32)> {
    let r: IResult<&[u8], (&[u8], &[u8])> = all_consuming((
        preceded(
            tag_no_case(&b"SIP/"[..]),
            take_while_m_n(1, 9, |c: u8| c.is_ascii_digit()),
        ),
        preceded(
            tag(&b"."[..]),
            take_while_m_n(1, 9, |c: u8| c.is_ascii_digit()),
        ),
    ))
    .parse(v);
    let (_, (major, minor)) = r.ok()?;
    Some((digits(major)?, digits(minor)?))
}

fn digits(d: &[u8]) -> Option<u32> {
    if d.is_empty() || d.len() > 10 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = d.iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
    u32::try_from(n).ok()
}

/// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2).
fn parse_status_line(line: &Bytes) -> Option<Start> {
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
    let reason = line.slice_ref(rest.get(4..).unwrap_or_default());
    Some(Start::Response { status, reason })
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c)
}

fn is_user_char(c: u8) -> bool {
    is_unreserved(c) || c == b'%' || b"&=+$,;?/".contains(&c)
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || c == b'%' || b"&=+$,".contains(&c)
}

fn is_param_char(c: u8) -> bool {
    is_unreserved(c) || c == b'%' || b"[]/:&+$".contains(&c)
}

fn is_header_char(c: u8) -> bool {
    is_unreserved(c) || c == b'%' || b"[]/?:+$=&".contains(&c)
}

fn is_host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_'
}

/// (user, host, port, the `;params` run, headers)
type UriParts<'a> = (
    Option<&'a [u8]>,
    &'a [u8],
    Option<&'a [u8]>,
    &'a [u8],
    Option<&'a [u8]>,
);

/// `[user[:password]@]host[:port]*(;param)[?headers]` after `sip:`/`sips:` (§25.1).
fn sip_uri_body(input: &[u8]) -> IResult<&[u8], UriParts<'_>> {
    let userinfo = (
        take_while1(is_user_char),
        opt(preceded(tag(&b":"[..]), take_while(is_password_char))),
        tag(&b"@"[..]),
    );
    let host = alt((
        recognize(delimited(
            tag(&b"["[..]),
            take_while1(|c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.'),
            tag(&b"]"[..]),
        )),
        take_while1(is_host_char),
    ));
    let port = preceded(
        tag(&b":"[..]),
        take_while_m_n(1, 5, |c: u8| c.is_ascii_digit()),
    );
    let param = preceded(
        tag(&b";"[..]),
        (
            take_while1(is_param_char),
            opt(preceded(tag(&b"="[..]), take_while1(is_param_char))),
        ),
    );
    let headers = preceded(
        tag(&b"?"[..]),
        take_while1(|c| is_header_char(c) || c == b'@'),
    );
    let (rest, (user, host, port, params, headers)) = (
        opt(userinfo),
        host,
        opt(port),
        recognize(nom::multi::many0_count(param)),
        opt(headers),
    )
        .parse(input)?;
    Ok((rest, (user.map(|u| u.0), host, port, params, headers)))
}

/// Parses a URI; `None` if it is malformed for its context.
fn parse_uri(raw: &Bytes, ctx: UriContext) -> Option<Uri> {
    let colon = memchr::memchr(b':', raw)?;
    let scheme = &raw[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
    {
        return None;
    }
    let rest = &raw[colon + 1..];
    let scheme = if scheme.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        // An opaque URI: any visible characters.
        if rest.is_empty()
            || !rest
                .iter()
                .all(|c| c.is_ascii_graphic() && *c != b'<' && *c != b'>')
        {
            return None;
        }
        return Some(Uri {
            scheme: Scheme::Other(raw.slice(..colon)),
            user: None,
            host: Bytes::new(),
            port: None,
            params: Vec::new(),
            raw: raw.clone(),
        });
    };
    if scheme == Scheme::Tel {
        // RFC 3966: number *(;param); the number goes in `user`.
        let mut parts = rest.split(|c| *c == b';');
        let number = parts.next()?;
        if number.is_empty()
            || !number
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.()*#%".contains(c))
        {
            return None;
        }
        let mut params = Vec::new();
        for p in parts {
            let (n, v) = match memchr::memchr(b'=', p) {
                Some(e) => (&p[..e], Some(&p[e + 1..])),
                None => (p, None),
            };
            if n.is_empty() {
                return None;
            }
            params.push((raw.slice_ref(n), v.map(|v| raw.slice_ref(v))));
        }
        return Some(Uri {
            scheme,
            user: Some(raw.slice_ref(number)),
            host: Bytes::new(),
            port: None,
            params,
            raw: raw.clone(),
        });
    }
    let (left, (user, host, port, params, headers)) = sip_uri_body(rest).ok()?;
    if !left.is_empty() {
        return None;
    }
    if headers.is_some() && ctx == UriContext::RequestUri {
        return None;
    }
    if !params.is_empty() && ctx == UriContext::Bare {
        return None;
    }
    let port = match port {
        Some(p) => Some(u16::try_from(digits(p)?).ok()?),
        None => None,
    };
    Some(Uri {
        scheme,
        user: user.map(|u| raw.slice_ref(u)),
        host: raw.slice_ref(host),
        port,
        params: params
            .split(|c| *c == b';')
            .skip(1)
            .map(|p| match memchr::memchr(b'=', p) {
                Some(e) => (raw.slice_ref(&p[..e]), Some(raw.slice_ref(&p[e + 1..]))),
                None => (raw.slice_ref(p), None),
            })
            .collect(),
        raw: raw.clone(),
    })
}

/// `*(SWS ";" SWS name [SWS "=" SWS value])` generic parameters (§25.1),
/// values being tokens, hosts or quoted strings. Returns (name, value) slices.
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
        while s.get(i).is_some_and(|c| is_token(*c)) {
            i += 1;
        }
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
                while s
                    .get(i)
                    .is_some_and(|c| is_token(*c) || *c == b':' || *c == b'[' || *c == b']')
                {
                    i += 1;
                }
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

/// From, To, Contact (§20.10, §20.20, §20.39).
fn parse_name_addr(v: &Bytes) -> Option<NameAddr> {
    let mut i = 0;
    let mut display = None;
    if v.first() == Some(&b'"') {
        let end = quoted_end(v, 0)?;
        display = Some(v.slice(1..end - 1));
        i = end;
        while v.get(i).is_some_and(|c| is_ws(*c)) {
            i += 1;
        }
        if v.get(i) != Some(&b'<') {
            return None;
        }
    } else if let Some(lt) = memchr::memchr(b'<', v) {
        // *(token LWS) before "<".
        let words = &v[..lt];
        if !words.iter().all(|c| is_token(*c) || is_ws(*c)) {
            return None;
        }
        let w = trim(v.slice(..lt));
        display = (!w.is_empty()).then_some(w);
        i = lt;
    }
    let (uri, params) = if v.get(i) == Some(&b'<') {
        let close = i + memchr::memchr(b'>', &v[i..])?;
        let uri = parse_uri(&v.slice(i + 1..close), UriContext::Angle)?;
        (uri, close + 1)
    } else {
        // addr-spec: the URI ends at the first ';' or whitespace (§20).
        let end = v
            .iter()
            .position(|c| *c == b';' || is_ws(*c))
            .unwrap_or(v.len());
        let uri = parse_uri(&v.slice(..end), UriContext::Bare)?;
        (uri, end)
    };
    let mut tag = None;
    parse_params(&v[params..], |n, val| {
        if v[params + n.start..params + n.end].eq_ignore_ascii_case(b"tag") {
            tag = val.map(|r| v.slice(params + r.start..params + r.end));
        }
    })?;
    Some(NameAddr {
        display,
        uri,
        tag,
        raw: v.clone(),
    })
}

/// `SIP / 2.0 / transport sent-by *(;via-params)` (§20.42), SWS around "/".
fn parse_via(v: &Bytes) -> Option<Via> {
    via(v, true)
}

/// A Via good enough to route an error response: any protocol version, and
/// parameters up to the first malformed one (RFC 4475 §3.1.2.1, §3.1.2.16).
fn parse_via_loose(v: &Bytes) -> Option<Via> {
    via(v, false)
}

fn via(v: &Bytes, strict: bool) -> Option<Via> {
    let ws = |s: &[u8]| s.iter().take_while(|c| is_ws(**c)).count();
    let mut i = 0;
    let mut proto = [0..0, 0..0, 0..0];
    for (k, slot) in proto.iter_mut().enumerate() {
        i += ws(&v[i..]);
        let t0 = i;
        while v.get(i).is_some_and(|c| is_token(*c)) {
            i += 1;
        }
        if i == t0 {
            return None;
        }
        *slot = t0..i;
        i += ws(&v[i..]);
        if k < 2 {
            if v.get(i) != Some(&b'/') {
                return None;
            }
            i += 1;
        }
    }
    if strict
        && (!v[proto[0].clone()].eq_ignore_ascii_case(b"SIP") || &v[proto[1].clone()] != b"2.0")
    {
        return None;
    }
    // sent-by = host [":" port]
    let h0 = i;
    if v.get(i) == Some(&b'[') {
        i += memchr::memchr(b']', &v[i..])? + 1;
    } else {
        while v.get(i).is_some_and(|c| is_host_char(*c)) {
            i += 1;
        }
    }
    if i == h0 {
        return None;
    }
    let host = v.slice(h0..i);
    let mut port = None;
    let p = i + ws(&v[i..]);
    if v.get(p) == Some(&b':') {
        i = p + 1;
        i += ws(&v[i..]);
        let d0 = i;
        while v.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        port = Some(u16::try_from(digits(&v[d0..i])?).ok()?);
    }
    let mut via = Via {
        transport: v.slice(proto[2].clone()),
        host,
        port,
        branch: None,
        rport: None,
        received: None,
        raw: v.clone(),
    };
    let mut ok = true;
    let parsed = parse_params(&v[i..], |n, val| {
        let name = &v[i + n.start..i + n.end];
        let val = val.map(|r| i + r.start..i + r.end);
        if name.eq_ignore_ascii_case(b"branch") {
            match val {
                Some(r) => via.branch = Some(v.slice(r)),
                None => ok = false,
            }
        } else if name.eq_ignore_ascii_case(b"rport") {
            via.rport = match val {
                Some(r) => match digits(&v[r]).and_then(|p| u16::try_from(p).ok()) {
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
                Some(r) => via.received = Some(v.slice(r)),
                None => ok = false,
            }
        }
    });
    if strict && (parsed.is_none() || !ok) {
        return None;
    }
    Some(via)
}

/// What is needed to answer a broken request: its Vias and dialog headers.
fn reply_context(h: &Headers) -> Option<ReplyContext> {
    let vias: Vec<Bytes> = h.get_all("Via").collect();
    let top_via = parse_via_loose(vias.first()?)?;
    let one = |name: &str| h.get(name);
    Some(ReplyContext {
        top_via,
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
        if slot.replace(v).is_some() {
            return Err(format!("Duplicate {name}"));
        }
        Ok(())
    }
    for hd in &h.list {
        let kind = known(h.name_of(hd));
        if kind == Known::Other {
            continue;
        }
        let v = &h.bytes_of(hd);
        match kind {
            Known::Via if memchr::memchr(b',', v).is_none() => {
                vias.push(parse_via(v).ok_or("Malformed Via")?)
            }
            Known::Via => {
                for part in split_commas(v) {
                    vias.push(parse_via(&part).ok_or("Malformed Via")?);
                }
            }
            Known::From => once(
                &mut from,
                parse_name_addr(v).ok_or("Malformed From")?,
                "From",
            )?,
            Known::To => once(&mut to, parse_name_addr(v).ok_or("Malformed To")?, "To")?,
            Known::CallId => {
                if v.is_empty() || v.iter().any(|c| is_ws(*c) || !c.is_ascii_graphic()) {
                    return Err("Malformed Call-ID".into());
                }
                once(&mut call_id, v.clone(), "Call-ID")?;
            }
            Known::CSeq => {
                let split = v.iter().position(|c| is_ws(*c)).ok_or("Malformed CSeq")?;
                let num = &v[..split];
                let m = trim(v.slice(split..));
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
                        method: Method::from_token(&m),
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
