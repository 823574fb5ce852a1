//! The star-code grammar of the Request-URI user part (SPEC §3), with nom:
//! `<code>[<queue>][*<reason>]`, where `<code>` is one of the configured
//! codes, `<queue>` 1–10 digits and `*<reason>` (1–4 digits) only follows
//! the not-ready code.
//!
//! Input is the user part already percent-decoded (`%2A38` → `*38`). A
//! `;`-parameter tail inside the user part (RFC 3966 style, e.g.
//! `*378000;phone-context=pbx`) is ignored. Pure: no I/O.

use nom::bytes::complete::{tag, take_while_m_n};
use nom::combinator::{all_consuming, opt};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// What a star code asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `*36`
    Ready,
    /// `*37`
    NotReady,
    /// `*38`
    Login,
    /// `*39`
    Logout,
}

/// A parsed star code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StarCode {
    /// What to do.
    pub action: Action,
    /// One queue, or all the agent's queues.
    pub queue: Option<String>,
    /// A not-ready reason code.
    pub reason: Option<u32>,
}

/// The configured codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    /// Default `*36`.
    pub ready: String,
    /// Default `*37`.
    pub not_ready: String,
    /// Default `*38`.
    pub login: String,
    /// Default `*39`.
    pub logout: String,
}

impl Default for Codes {
    fn default() -> Self {
        Self {
            ready: "*36".into(),
            not_ready: "*37".into(),
            login: "*38".into(),
            logout: "*39".into(),
        }
    }
}

/// The user part is not a star code (answered `404 Not Found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a star code")]
pub struct NotAStarCode;

/// Recognises the configured codes.
#[derive(Debug, Clone)]
pub struct StarCodeParser {
    codes: Vec<(Vec<u8>, Action)>,
}

impl StarCodeParser {
    /// A parser for `codes` (which configuration validation keeps
    /// prefix-free; the longest match is tried first regardless).
    pub fn new(codes: Codes) -> Self {
        let mut list = vec![
            (codes.ready.into_bytes(), Action::Ready),
            (codes.not_ready.into_bytes(), Action::NotReady),
            (codes.login.into_bytes(), Action::Login),
            (codes.logout.into_bytes(), Action::Logout),
        ];
        list.retain(|(c, _)| !c.is_empty());
        list.sort_by_key(|c| std::cmp::Reverse(c.0.len()));
        Self { codes: list }
    }

    /// Parses a decoded Request-URI user part.
    pub fn parse(&self, user: &[u8]) -> Result<StarCode, NotAStarCode> {
        let user = user.split(|&b| b == b';').next().unwrap_or_default();
        for (code, action) in &self.codes {
            if let Some(rest) = user.strip_prefix(code.as_slice()) {
                let (queue, reason) = tail(rest).map(|(_, t)| t).map_err(|_| NotAStarCode)?;
                if reason.is_some() && *action != Action::NotReady {
                    return Err(NotAStarCode);
                }
                return Ok(StarCode {
                    action: *action,
                    queue: queue.map(|q| String::from_utf8_lossy(q).into_owned()),
                    reason: reason
                        .map(|r| r.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))),
                });
            }
        }
        Err(NotAStarCode)
    }
}

type Tail<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// `[<queue 1–10 digits>][*<reason 1–4 digits>]`, all of the input.
fn tail(input: &[u8]) -> IResult<&[u8], Tail<'_>> {
    let digits = |min, max| take_while_m_n(min, max, |b: u8| b.is_ascii_digit());
    all_consuming((
        opt(digits(1, 10)),
        opt(preceded(tag(&b"*"[..]), digits(1, 4))),
    ))
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<StarCode, NotAStarCode> {
        StarCodeParser::new(Codes::default()).parse(s.as_bytes())
    }

    fn code(
        action: Action,
        queue: Option<&str>,
        reason: Option<u32>,
    ) -> Result<StarCode, NotAStarCode> {
        Ok(StarCode {
            action,
            queue: queue.map(str::to_string),
            reason,
        })
    }

    #[test]
    fn every_form() {
        assert_eq!(p("*36"), code(Action::Ready, None, None));
        assert_eq!(p("*368000"), code(Action::Ready, Some("8000"), None));
        assert_eq!(p("*37"), code(Action::NotReady, None, None));
        assert_eq!(p("*378000"), code(Action::NotReady, Some("8000"), None));
        assert_eq!(p("*37*1"), code(Action::NotReady, None, Some(1)));
        assert_eq!(
            p("*378000*2"),
            code(Action::NotReady, Some("8000"), Some(2))
        );
        assert_eq!(p("*37*9999"), code(Action::NotReady, None, Some(9999)));
        assert_eq!(p("*38"), code(Action::Login, None, None));
        assert_eq!(p("*388000"), code(Action::Login, Some("8000"), None));
        assert_eq!(p("*39"), code(Action::Logout, None, None));
        assert_eq!(p("*398000"), code(Action::Logout, Some("8000"), None));
        assert_eq!(
            p("*381234567890"),
            code(Action::Login, Some("1234567890"), None)
        );
        assert_eq!(p("*380"), code(Action::Login, Some("0"), None));
    }

    #[test]
    fn parameter_tail_is_ignored() {
        assert_eq!(
            p("*378000;phone-context=pbx.example.com"),
            code(Action::NotReady, Some("8000"), None)
        );
        assert_eq!(p("*38;x"), code(Action::Login, None, None));
    }

    #[test]
    fn near_misses() {
        for bad in [
            "",
            "*",
            "*3",
            "*35",
            "*40",
            "**38",
            "*38*1",
            "*36*1",
            "*39*1",
            "*37*",
            "*37**1",
            "*388000x",
            "*37*1x",
            "*37*12345",
            "*3812345678901",
            "38",
            "*38 ",
            " *38",
            "*38*",
            "*37*1*2",
            "*37-1",
            "*3８",
        ] {
            assert_eq!(p(bad), Err(NotAStarCode), "{bad:?}");
        }
    }

    #[test]
    fn configured_codes() {
        let parser = StarCodeParser::new(Codes {
            ready: "#71".into(),
            not_ready: "#72".into(),
            login: "*5".into(),
            logout: "*6".into(),
        });
        assert_eq!(
            parser.parse(b"#72100*3"),
            code(Action::NotReady, Some("100"), Some(3))
        );
        assert_eq!(
            parser.parse(b"*58000"),
            code(Action::Login, Some("8000"), None)
        );
        assert_eq!(parser.parse(b"*38"), Err(NotAStarCode));
    }
}
