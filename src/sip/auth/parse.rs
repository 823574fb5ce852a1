//! A nom parser for the value of an `Authorization` or
//! `Proxy-Authorization` header carrying Digest credentials
//! (RFC 3261 §25.1 `credentials`, RFC 7616 §3.4, RFC 7235 §2.1).
//!
//! It owns syntax and per-parameter rules only (required parameters,
//! duplicates, `nc` shape, supported `algorithm` and `qop`). Whether the
//! realm is ours, the nonce genuine or the response right is decided in
//! [`super::Authenticator`]. Every failure is an [`AuthError`]; no input
//! panics.

use nom::bytes::complete::{tag_no_case, take_while1};
use nom::character::complete::char;
use nom::error::{ErrorKind, ParseError};
use nom::{Err as NomErr, IResult, Parser};

use super::digest::Algorithm;

/// Why an `Authorization` value was refused before any digest was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The scheme is not `Digest` (e.g. `Basic`), or the value is empty.
    #[error("unsupported authorization scheme")]
    NotDigest,
    /// A syntax or parameter error; the text is a short human reason.
    #[error("{0}")]
    Malformed(&'static str),
    /// `algorithm` names something other than `MD5` or `SHA-256`.
    #[error("unsupported digest algorithm")]
    UnknownAlgorithm,
    /// `realm` is not the realm this server challenges with.
    #[error("wrong realm")]
    WrongRealm,
}

impl AuthError {
    /// A short reason suitable for a SIP reason phrase.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::NotDigest => "Unsupported Authorization Scheme",
            Self::Malformed(reason) => reason,
            Self::UnknownAlgorithm => "Unsupported Digest Algorithm",
            Self::WrongRealm => "Wrong Realm",
        }
    }
}

/// The quality of protection (RFC 7616 §3.4). Only `auth` is supported;
/// `auth-int` is refused as malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// `qop=auth`.
    Auth,
}

/// Parsed Digest credentials, values unquoted and unescaped
/// (RFC 7616 §3.4: the digest is computed over `unq(...)` values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username` (the `username*` extended form is not supported).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`, exactly as the server issued it (if the client is honest).
    pub nonce: String,
    /// `uri` (digest-uri), exactly as the client wrote it.
    pub uri: String,
    /// `response`, lowercased hex of the algorithm's length.
    pub response: String,
    /// `algorithm`; `MD5` when absent (RFC 7616 §3.4).
    pub algorithm: Algorithm,
    /// `qop`; `None` is the RFC 2069 form.
    pub qop: Option<Qop>,
    /// `cnonce`; present whenever `qop` is.
    pub cnonce: Option<String>,
    /// `nc`: the 8 hex digits as written, and their value.
    pub nc: Option<(String, u32)>,
    /// `opaque`, if the client echoed it.
    pub opaque: Option<String>,
}

/// More parameters than this is not a client, it is an attack on the
/// duplicate check.
const MAX_PARAMS: usize = 32;

/// Parses one `Authorization` / `Proxy-Authorization` header value.
///
/// Accepted grammar (RFC 3261 §25.1, RFC 7235 §2.1): `Digest` (any case),
/// at least one whitespace, then `name = value` pairs separated by commas,
/// with optional LWS (including CRLF folding) around `=` and `,`. A value is
/// a token or a quoted-string with `\` quoted-pairs; every parameter accepts
/// either form, since clients quote `qop`/`algorithm` or leave `nc`
/// unquoted inconsistently. Parameter names are case-insensitive; any name
/// appearing twice is an error (RFC 7235 §2.2); unknown names are ignored.
///
/// # Errors
/// [`AuthError::NotDigest`] for another scheme or an empty value,
/// [`AuthError::UnknownAlgorithm`], else [`AuthError::Malformed`] with the
/// reason.
pub fn parse_credentials(input: &[u8]) -> Result<Credentials, AuthError> {
    Credentials::from_params(params(input)?)
}

/// The `name=value` list after `Digest`, duplicates refused (RFC 7235
/// §2.2: each parameter name occurs at most once). Shared with the
/// challenge parser, whose grammar is the same (RFC 3261 §25.1
/// `challenge`).
pub(super) fn params(input: &[u8]) -> Result<Vec<Param<'_>>, AuthError> {
    let params = match digest_params(input) {
        Ok((_, params)) => params,
        Err(NomErr::Error(e) | NomErr::Failure(e)) => return Err(e.into_auth_error()),
        Err(NomErr::Incomplete(_)) => return Err(AuthError::Malformed("Malformed Credentials")),
    };
    for (index, param) in params.iter().enumerate() {
        if params[..index]
            .iter()
            .any(|earlier| earlier.name.eq_ignore_ascii_case(param.name))
        {
            return Err(AuthError::Malformed("Duplicate Digest Parameter"));
        }
    }
    Ok(params)
}

/// A raw parameter: its name as written and its value after unescaping.
#[derive(Debug)]
pub(super) struct Param<'a> {
    pub(super) name: &'a [u8],
    pub(super) value: Vec<u8>,
}

/// Parser error: either "not Digest at all" or a fixed reason.
#[derive(Debug, PartialEq)]
enum PErr {
    NotDigest,
    Reason(&'static str),
}

impl PErr {
    fn into_auth_error(self) -> AuthError {
        match self {
            Self::NotDigest => AuthError::NotDigest,
            Self::Reason(reason) => AuthError::Malformed(reason),
        }
    }
}

impl ParseError<&[u8]> for PErr {
    fn from_error_kind(_input: &[u8], _kind: ErrorKind) -> Self {
        Self::Reason("Malformed Credentials")
    }

    fn append(_input: &[u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

type PResult<'a, T> = IResult<&'a [u8], T, PErr>;

fn fail<T>(reason: &'static str) -> Result<T, NomErr<PErr>> {
    Err(NomErr::Failure(PErr::Reason(reason)))
}

const fn is_wsp(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// RFC 3261 §25.1 token characters.
const fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// `SWS = [LWS]`, `LWS = [*WSP CRLF] 1*WSP` (RFC 3261 §25.1), applied
/// repeatedly so folded lines of any count are accepted.
fn sws(mut input: &[u8]) -> PResult<'_, ()> {
    loop {
        let skipped = input.iter().take_while(|b| is_wsp(**b)).count();
        input = &input[skipped..];
        match input {
            [b'\r', b'\n', next, ..] if is_wsp(*next) => input = &input[2..],
            _ => return Ok((input, ())),
        }
    }
}

/// `1*WSP` or a fold: the mandatory LWS after the scheme.
fn lws(input: &[u8]) -> PResult<'_, ()> {
    let (rest, ()) = sws(input)?;
    if rest.len() == input.len() {
        Err(NomErr::Error(PErr::Reason("Malformed Credentials")))
    } else {
        Ok((rest, ()))
    }
}

fn token(input: &[u8]) -> PResult<'_, &[u8]> {
    take_while1(is_token_char).parse(input)
}

/// `quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE`
/// (RFC 3261 §25.1). Folded LWS inside is kept as one SP; a bare CR, LF or
/// other control character is refused. Called only at a `"`.
fn quoted_string(input: &[u8]) -> PResult<'_, Vec<u8>> {
    let (mut rest, _) = char('"').parse(input)?;
    let mut out = Vec::new();
    loop {
        match rest {
            [] => return fail("Unterminated Quoted String"),
            [b'"', tail @ ..] => return Ok((tail, out)),
            // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
            [b'\\', escaped, tail @ ..]
                if escaped.is_ascii() && !matches!(escaped, b'\r' | b'\n') =>
            {
                out.push(*escaped);
                rest = tail;
            }
            [b'\\', ..] => return fail("Bad Escape In Quoted String"),
            [b'\r', b'\n', next, ..] if is_wsp(*next) => {
                let (tail, ()) = sws(rest)?;
                out.push(b' ');
                rest = tail;
            }
            [byte, tail @ ..] if is_wsp(*byte) || (*byte >= 0x21 && *byte != 0x7f) => {
                out.push(*byte);
                rest = tail;
            }
            _ => return fail("Control Character In Quoted String"),
        }
    }
}

/// `auth-param = token EQUAL ( token / quoted-string )`.
fn param(input: &[u8]) -> PResult<'_, Param<'_>> {
    let Ok((rest, name)) = token(input) else {
        return fail("Expected Parameter Name");
    };
    let (rest, ()) = sws(rest)?;
    let Ok((rest, _)) = char::<_, PErr>('=').parse(rest) else {
        return fail("Expected '=' After Parameter Name");
    };
    let (rest, ()) = sws(rest)?;
    if rest.first() == Some(&b'"') {
        let (rest, value) = quoted_string(rest)?;
        return Ok((rest, Param { name, value }));
    }
    match token(rest) {
        Ok((rest, value)) => Ok((
            rest,
            Param {
                name,
                value: value.to_vec(),
            },
        )),
        Err(_) => fail("Missing Parameter Value"),
    }
}

/// `"Digest" LWS digest-response`, with `digest-response = dig-resp
/// *(COMMA dig-resp)`, `COMMA = SWS "," SWS`, then only trailing SWS.
fn digest_params(input: &[u8]) -> PResult<'_, Vec<Param<'_>>> {
    let (rest, ()) = sws(input)?;
    let Ok((rest, _)) = tag_no_case::<_, _, PErr>("Digest").parse(rest) else {
        return Err(NomErr::Failure(PErr::NotDigest));
    };
    // "Digestive realm=..." is another scheme, not Digest.
    if rest.first().is_some_and(|b| is_token_char(*b)) {
        return Err(NomErr::Failure(PErr::NotDigest));
    }
    let Ok((mut rest, ())) = lws(rest) else {
        return fail("Missing Digest Parameters");
    };
    if rest.is_empty() {
        return fail("Missing Digest Parameters");
    }
    let mut params = Vec::new();
    loop {
        let (after, param) = param(rest)?;
        params.push(param);
        if params.len() > MAX_PARAMS {
            return fail("Too Many Digest Parameters");
        }
        let (after, ()) = sws(after)?;
        if after.is_empty() {
            return Ok((after, params));
        }
        let Ok((after, _)) = char::<_, PErr>(',').parse(after) else {
            return fail("Expected ',' Between Parameters");
        };
        let (after, ()) = sws(after)?;
        rest = after;
    }
}

pub(super) fn utf8(value: Vec<u8>) -> Result<String, AuthError> {
    String::from_utf8(value).map_err(|_| AuthError::Malformed("Parameter Is Not UTF-8"))
}

impl Credentials {
    fn from_params(params: Vec<Param<'_>>) -> Result<Self, AuthError> {
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut cnonce = None;
        let mut nc = None;
        let mut opaque = None;
        for Param { name, value } in params {
            let slot = match name.to_ascii_lowercase().as_slice() {
                b"username" => &mut username,
                b"realm" => &mut realm,
                b"nonce" => &mut nonce,
                b"uri" => &mut uri,
                b"response" => &mut response,
                b"algorithm" => &mut algorithm,
                b"qop" => &mut qop,
                b"cnonce" => &mut cnonce,
                b"nc" => &mut nc,
                b"opaque" => &mut opaque,
                // RFC 7616 §3.4 extensions we ignore (userhash, username*, …).
                _ => continue,
            };
            *slot = Some(value);
        }

        let required = |value: Option<Vec<u8>>, reason| value.ok_or(AuthError::Malformed(reason));
        let username = utf8(required(username, "Missing Digest Username")?)?;
        let realm = utf8(required(realm, "Missing Digest Realm")?)?;
        let nonce = utf8(required(nonce, "Missing Digest Nonce")?)?;
        let uri = utf8(required(uri, "Missing Digest URI")?)?;
        let response = required(response, "Missing Digest Response")?;

        let algorithm = match algorithm {
            None => Algorithm::Md5,
            Some(token) => Algorithm::from_token(&token).ok_or(AuthError::UnknownAlgorithm)?,
        };
        // RFC 7616 §3.4.1: request-digest is LHEX of the algorithm's size;
        // accept upper case from sloppy clients by lowering it.
        if response.len() != algorithm.hex_len() || !response.iter().all(u8::is_ascii_hexdigit) {
            return Err(AuthError::Malformed("Bad Digest Response"));
        }
        let response = utf8(response.to_ascii_lowercase())?;

        let qop = match qop {
            None => None,
            Some(token) if token.eq_ignore_ascii_case(b"auth") => Some(Qop::Auth),
            Some(_) => return Err(AuthError::Malformed("Unsupported Qop")),
        };
        let (cnonce, nc) = if qop.is_some() {
            let cnonce = utf8(required(cnonce, "Missing Digest Cnonce")?)?;
            let nc = required(nc, "Missing Digest Nonce Count")?;
            (Some(cnonce), Some(parse_nc(nc)?))
        } else if cnonce.is_some() || nc.is_some() {
            // RFC 2617 §3.2.2: cnonce and nc MUST NOT be sent without qop.
            return Err(AuthError::Malformed("Cnonce Or Nc Without Qop"));
        } else {
            (None, None)
        };
        let opaque = opaque.map(utf8).transpose()?;

        Ok(Self {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop,
            cnonce,
            nc,
            opaque,
        })
    }
}

/// `nonce-count = "nc" EQUAL 8LHEX` (RFC 3261 §25.1).
fn parse_nc(raw: Vec<u8>) -> Result<(String, u32), AuthError> {
    const BAD: AuthError = AuthError::Malformed("Bad Digest Nonce Count");
    if raw.len() != 8 || !raw.iter().all(u8::is_ascii_hexdigit) {
        return Err(BAD);
    }
    let text = utf8(raw)?;
    let value = u32::from_str_radix(&text, 16).map_err(|_| BAD)?;
    Ok((text, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";

    /// RFC 7616 §3.9.1, SHA-256 Authorization header (folded as printed).
    const RFC7616: &[u8] = b"Digest username=\"Mufasa\",\r\n       realm=\"http-auth@example.org\",\r\n       uri=\"/dir/index.html\",\r\n       algorithm=SHA-256,\r\n       nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n       nc=00000001,\r\n       cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n       qop=auth,\r\n       response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n       opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    #[test]
    fn parses_the_rfc7616_example() {
        let creds = parse_credentials(RFC7616).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.realm, "http-auth@example.org");
        assert_eq!(creds.uri, "/dir/index.html");
        assert_eq!(creds.algorithm, Algorithm::Sha256);
        assert_eq!(creds.nonce, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert_eq!(creds.nc, Some(("00000001".to_owned(), 1)));
        assert_eq!(
            creds.cnonce.as_deref(),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        );
        assert_eq!(creds.qop, Some(Qop::Auth));
        assert_eq!(creds.response, SHA);
        assert_eq!(
            creds.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
    }

    fn base(extra: &str) -> String {
        format!(
            "Digest username=\"1001\",realm=\"pbx\",nonce=\"n\",uri=\"sip:*36@pbx\",\
             response=\"{}\",qop=auth,cnonce=\"c\",nc=00000001{extra}",
            "0".repeat(32)
        )
    }

    #[test]
    fn lenient_but_correct_forms() {
        // Scheme case, LWS around '=' and ',', quoted qop/algorithm, escapes,
        // unknown parameters ignored, upper-case response hex.
        let value = format!(
            "dIgEsT  username = \"10\\\"01\" ,\trealm=\"pbx\" , nonce=\"n\", uri=\"sip:*36@pbx;transport=udp\",\
             response=\"{}\", qop=\"auth\", cnonce=\"c\", nc=0000000A, algorithm=\"md5\", foo=bar  ",
            "ABCDEF0123456789abcdef0123456789"
        );
        let creds = parse_credentials(value.as_bytes()).unwrap();
        assert_eq!(creds.username, "10\"01");
        assert_eq!(creds.uri, "sip:*36@pbx;transport=udp");
        assert_eq!(creds.nc, Some(("0000000A".to_owned(), 10)));
        assert_eq!(creds.response, "abcdef0123456789abcdef0123456789");
        assert_eq!(creds.algorithm, Algorithm::Md5);
    }

    #[test]
    fn rfc2069_form_parses_without_qop() {
        let value = format!(
            "Digest username=\"1001\",realm=\"pbx\",nonce=\"n\",uri=\"sip:x@pbx\",response=\"{}\"",
            "0".repeat(32)
        );
        let creds = parse_credentials(value.as_bytes()).unwrap();
        assert_eq!(creds.qop, None);
        assert_eq!(creds.nc, None);
    }

    #[test]
    fn refusals_have_precise_reasons() {
        let m = AuthError::Malformed;
        let cases: Vec<(String, AuthError)> = vec![
            (String::new(), AuthError::NotDigest),
            ("   ".into(), AuthError::NotDigest),
            (
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into(),
                AuthError::NotDigest,
            ),
            ("Digestive realm=\"x\"".into(), AuthError::NotDigest),
            ("Digest".into(), m("Missing Digest Parameters")),
            ("Digest   ".into(), m("Missing Digest Parameters")),
            (
                base("").replace("username=\"1001\",", ""),
                m("Missing Digest Username"),
            ),
            (
                base("").replace("realm=\"pbx\",", ""),
                m("Missing Digest Realm"),
            ),
            (
                base("").replace("nonce=\"n\",", ""),
                m("Missing Digest Nonce"),
            ),
            (
                base("").replace("uri=\"sip:*36@pbx\",", ""),
                m("Missing Digest URI"),
            ),
            (
                base("").replace(",cnonce=\"c\"", ""),
                m("Missing Digest Cnonce"),
            ),
            (
                base("").replace(",nc=00000001", ""),
                m("Missing Digest Nonce Count"),
            ),
            (base(",Realm=\"pbx\""), m("Duplicate Digest Parameter")),
            (base(",foo=1,FOO=2"), m("Duplicate Digest Parameter")),
            (base(",opaque=\"abc"), m("Unterminated Quoted String")),
            (
                base("").replace("nc=00000001", "nc=1"),
                m("Bad Digest Nonce Count"),
            ),
            (
                base("").replace("nc=00000001", "nc=000000001"),
                m("Bad Digest Nonce Count"),
            ),
            (
                base("").replace("nc=00000001", "nc=0000000g"),
                m("Bad Digest Nonce Count"),
            ),
            (base(",algorithm=SHA-512-256"), AuthError::UnknownAlgorithm),
            (base(",algorithm=MD5-sess"), AuthError::UnknownAlgorithm),
            (base(",algorithm=SHA-256"), m("Bad Digest Response")),
            (
                base("").replace("qop=auth", "qop=auth-int"),
                m("Unsupported Qop"),
            ),
            (base(","), m("Expected Parameter Name")),
            (base(" x"), m("Expected ',' Between Parameters")),
            (base(",foo"), m("Expected '=' After Parameter Name")),
            (base(",foo="), m("Missing Parameter Value")),
            (
                base(",foo=\"a\nb\""),
                m("Control Character In Quoted String"),
            ),
            (base(",foo=\"a\\\""), m("Unterminated Quoted String")),
            (base(",,foo=1"), m("Expected Parameter Name")),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_credentials(value.as_bytes()),
                Err(expected),
                "{value}"
            );
        }
    }

    #[test]
    fn non_utf8_and_too_many_params() {
        let mut value = base("").into_bytes();
        value.extend_from_slice(b",x=\"\xff\xfe\"");
        // Unknown params are not decoded, so this one is fine…
        assert!(parse_credentials(&value).is_ok());
        let value = base("").replace("1001", "\u{e9}").into_bytes();
        assert!(parse_credentials(&value).is_ok());
        let mut value = base("").into_bytes();
        let at = value.windows(4).position(|w| w == b"1001").unwrap();
        value[at] = 0xff;
        assert_eq!(
            parse_credentials(&value),
            Err(AuthError::Malformed("Parameter Is Not UTF-8"))
        );
        let many: String = (0..40).map(|i| format!(",p{i}=1")).collect();
        assert_eq!(
            parse_credentials(base(&many).as_bytes()),
            Err(AuthError::Malformed("Too Many Digest Parameters"))
        );
    }

    /// Scanners send cut-off headers: every prefix gives an error or (for a
    /// prefix that happens to be complete, such as one ending after
    /// `response`) a value, never a panic. The verdict-level test in
    /// `super::tests` checks that none of them authenticates.
    #[test]
    fn every_truncation_is_handled() {
        for end in 0..RFC7616.len() {
            let _ = parse_credentials(&RFC7616[..end]);
        }
        let full = base("");
        for end in 0..full.len() {
            let _ = parse_credentials(&full.as_bytes()[..end]);
        }
    }
}
