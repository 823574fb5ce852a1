//! The UAC side, for tests and tools: read a `WWW-Authenticate` /
//! `Proxy-Authenticate` Digest challenge and answer it (RFC 7616 §3.4,
//! `qop=auth` only). facd itself never authenticates to anyone.

use super::digest::{self, Algorithm};
use super::parse::{params, utf8, AuthError};

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

/// Parses one challenge value (`Digest realm="…", nonce="…", …`).
///
/// # Errors
/// The same [`AuthError`]s as credentials parsing; missing `realm` or
/// `nonce` is malformed.
pub fn parse_challenge(input: &[u8]) -> Result<Challenge, AuthError> {
    let mut realm = None;
    let mut nonce = None;
    let mut opaque = None;
    let mut algorithm = Algorithm::Md5;
    let mut qop_auth = false;
    let mut stale = false;
    for param in params(input)? {
        match param.name.to_ascii_lowercase().as_slice() {
            b"realm" => realm = Some(utf8(param.value)?),
            b"nonce" => nonce = Some(utf8(param.value)?),
            b"opaque" => opaque = Some(utf8(param.value)?),
            b"algorithm" => {
                algorithm =
                    Algorithm::from_token(&param.value).ok_or(AuthError::UnknownAlgorithm)?;
            }
            // qop-options is a quoted comma-separated list (RFC 7616 §3.3).
            b"qop" => {
                qop_auth = param
                    .value
                    .split(|&b| b == b',')
                    .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"auth"));
            }
            b"stale" => stale = param.value.eq_ignore_ascii_case(b"true"),
            _ => {}
        }
    }
    Ok(Challenge {
        realm: realm.ok_or(AuthError::Malformed("Missing Digest Realm"))?,
        nonce: nonce.ok_or(AuthError::Malformed("Missing Digest Nonce"))?,
        opaque,
        algorithm,
        qop_auth,
        stale,
    })
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
            super::quote(username),
            super::quote(&self.realm),
            super::quote(&self.nonce),
            super::quote(uri),
            self.algorithm.as_str(),
            super::quote(cnonce),
        );
        if let Some(opaque) = &self.opaque {
            value.push_str(", opaque=");
            value.push_str(&super::quote(opaque));
        }
        value
    }
}
