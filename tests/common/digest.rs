//! A digest client for tests (the UAC side facd never plays): read a
//! `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge and answer it
//! (RFC 7616 §3.4, `qop=auth` only). The challenge is parsed here, not with
//! facd's credentials parser, so the server's challenges are checked by
//! independent code; the hashes are facd's (`facd::sip::auth::digest`).

use facd::sip::auth::digest::{self, Algorithm};

/// A parsed Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back if present.
    pub opaque: Option<String>,
    /// `algorithm`, MD5 when absent.
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
    /// `stale=true`.
    pub stale: bool,
}

/// RFC 3261 §25.1 token characters.
fn is_token(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn skip_lws(s: &str) -> &str {
    s.trim_start_matches([' ', '\t', '\r', '\n'])
}

/// `token` or `quoted-string` (quotes removed, `\x` pairs unescaped) at
/// the start of `s`, and what follows it.
fn value(s: &str) -> Result<(String, &str), String> {
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(|c| !is_token(c)).unwrap_or(s.len());
        if end == 0 {
            return Err(format!("no value at {s:?}"));
        }
        return Ok((s[..end].to_owned(), &s[end..]));
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &quoted[i + 1..])),
            '\\' => out.push(chars.next().ok_or("dangling backslash")?.1),
            _ => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}

/// Parses one challenge value (`Digest realm="…", nonce="…", …`): the
/// `Digest` scheme, then comma-separated `name=value` pairs (each name at
/// most once). Missing `realm` or `nonce`, or an unknown `algorithm`, is
/// an error.
pub fn parse_challenge(input: &[u8]) -> Result<Challenge, String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let text = skip_lws(text);
    let rest = match text.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("Digest") => &text[6..],
        _ => return Err(format!("not a Digest challenge: {text:?}")),
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let mut s = skip_lws(rest);
    while !s.is_empty() {
        let end = s.find(|c| !is_token(c)).unwrap_or(s.len());
        if end == 0 {
            return Err(format!("no parameter name at {s:?}"));
        }
        let name = s[..end].to_ascii_lowercase();
        if params.iter().any(|(n, _)| *n == name) {
            return Err(format!("duplicate {name}"));
        }
        s = skip_lws(&s[end..]);
        s = skip_lws(s.strip_prefix('=').ok_or(format!("no = after {name}"))?);
        let (v, after) = value(s)?;
        params.push((name, v));
        s = skip_lws(after);
        if !s.is_empty() {
            s = skip_lws(s.strip_prefix(',').ok_or(format!("no comma at {s:?}"))?);
        }
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let algorithm = match get("algorithm") {
        Some(a) => Algorithm::from_token(a.as_bytes()).ok_or(format!("algorithm {a}"))?,
        None => Algorithm::Md5,
    };
    Ok(Challenge {
        realm: get("realm").ok_or("missing realm")?,
        nonce: get("nonce").ok_or("missing nonce")?,
        opaque: get("opaque"),
        algorithm,
        // qop-options is a quoted comma-separated list (RFC 7616 §3.3).
        qop_auth: get("qop").is_some_and(|q| {
            q.split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("auth"))
        }),
        stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
    })
}

/// `"` + value with `"` and `\` escaped + `"` (RFC 3261 §25.1 quoted-string).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Challenge {
    /// The `Authorization` value answering this challenge with `qop=auth`.
    /// The caller picks `cnonce` (unique, no `"` or `\`) and increments `nc`
    /// per request on the same nonce.
    #[must_use]
    pub fn authorization(
        &self,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let nc = format!("{nc:08x}");
        let ha1 = digest::ha1(self.algorithm, username, &self.realm, password);
        let ha2 = digest::ha2(self.algorithm, method, uri);
        let response = digest::response(self.algorithm, &ha1, &self.nonce, &nc, cnonce, &ha2);
        let mut value = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response=\"{response}\", \
             algorithm={}, qop=auth, nc={nc}, cnonce={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(uri),
            self.algorithm.as_str(),
            quote(cnonce),
        );
        if let Some(opaque) = &self.opaque {
            value.push_str(", opaque=");
            value.push_str(&quote(opaque));
        }
        value
    }
}
