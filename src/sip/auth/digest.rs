//! The digest arithmetic of RFC 7616 §3.4.1 (and RFC 3261 §22.4, which
//! takes it from RFC 2617): `H`, `KD`, HA1, HA2 and the request-digest, as
//! lowercase hex. Pure functions; no parsing, no state.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm facd offers and accepts (RFC 7616 §3.3, RFC 8760).
///
/// The `-sess` variants and SHA-512-256 are not offered and are refused as
/// unsupported when a client names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`: the RFC 2617 / RFC 3261 default when `algorithm` is absent.
    Md5,
    /// `SHA-256`: preferred, offered first (RFC 8760 §2.4, RFC 7616 §3.7).
    Sha256,
}

impl Algorithm {
    /// The token as written in `algorithm=` (RFC 7616 §3.3).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// Length in hex characters of one digest (`H(..)`) of this algorithm.
    #[must_use]
    pub const fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 => 64,
        }
    }

    /// Recognises an `algorithm=` token, case-insensitively (RFC 7616 §3.3
    /// compares algorithm names case-insensitively).
    #[must_use]
    pub fn from_token(token: &[u8]) -> Option<Self> {
        if token.eq_ignore_ascii_case(b"MD5") {
            Some(Self::Md5)
        } else if token.eq_ignore_ascii_case(b"SHA-256") {
            Some(Self::Sha256)
        } else {
            None
        }
    }

    /// `H(p0 ":" p1 ":" … )` as lowercase hex.
    fn hash_joined(self, parts: &[&[u8]]) -> String {
        match self {
            Self::Md5 => hash_with::<Md5>(parts),
            Self::Sha256 => hash_with::<Sha256>(parts),
        }
    }
}

fn hash_with<D: Digest>(parts: &[&[u8]]) -> String {
    let mut hasher = D::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hasher.update(b":");
        }
        hasher.update(part);
    }
    to_hex(&hasher.finalize())
}

/// Lowercase hex, as RFC 7616 §3.4.1 requires for digests (LHEX).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// HA1 = `H(username ":" realm ":" password)` (RFC 7616 §3.4.2, non-`-sess`).
#[must_use]
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_joined(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// HA2 = `H(method ":" digest-uri)` for `qop=auth` (RFC 7616 §3.4.3).
#[must_use]
pub fn ha2(algorithm: Algorithm, method: &str, digest_uri: &str) -> String {
    algorithm.hash_joined(&[method.as_bytes(), digest_uri.as_bytes()])
}

/// The request-digest for `qop=auth` (RFC 7616 §3.4.1):
/// `KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2)` where
/// `KD(secret, data) = H(secret ":" data)`.
///
/// `nc` is hashed exactly as the client wrote it (8 hex digits).
#[must_use]
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    ha2: &str,
) -> String {
    algorithm.hash_joined(&[
        ha1.as_bytes(),
        nonce.as_bytes(),
        nc.as_bytes(),
        cnonce.as_bytes(),
        b"auth",
        ha2.as_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn algorithm_tokens_are_case_insensitive() {
        assert_eq!(Algorithm::from_token(b"md5"), Some(Algorithm::Md5));
        assert_eq!(Algorithm::from_token(b"sha-256"), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::from_token(b"MD5-sess"), None);
        assert_eq!(Algorithm::from_token(b"SHA-512-256"), None);
        assert_eq!(Algorithm::from_token(b""), None);
    }

    /// RFC 7616 §3.9.1: the worked example, both algorithms, from the
    /// published inputs to the published `response` values.
    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let (user, realm, pass) = ("Mufasa", "http-auth@example.org", "Circle of Life");
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let cases = [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ];
        for (algorithm, expected) in cases {
            let ha1 = ha1(algorithm, user, realm, pass);
            let ha2 = ha2(algorithm, "GET", "/dir/index.html");
            let got = response(algorithm, &ha1, nonce, "00000001", cnonce, &ha2);
            assert_eq!(got, expected, "{algorithm:?}");
            assert_eq!(got.len(), algorithm.hex_len());
        }
    }
}
