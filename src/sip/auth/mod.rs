//! SIP digest authentication for a UAS (RFC 3261 §22, RFC 7616, RFC 8760):
//! building `WWW-Authenticate` challenges and judging `Authorization` /
//! `Proxy-Authorization` answers.
//!
//! Pure: no I/O, no tokio, never reads the clock or a random source. Time
//! is passed in as `now`, **Unix seconds** (the nonce carries its issue
//! second, so it must be wall-clock time that survives a restart, not an
//! `Instant`); the 32-byte server secret that keys nonces is passed to
//! [`Authenticator::new`] (draw it from a CSPRNG at start-up).
//!
//! # Design
//! - **Nonces** are stateless and forgery-proof (see `nonce.rs`): a forged,
//!   mangled or foreign nonce — including one from before a restart with a
//!   new secret — yields [`Verdict::BadNonce`], answered with a fresh 401
//!   (not 403: it says nothing about the user, and a restart should not lock
//!   phones out). They expire after `nonce_lifetime_secs`.
//! - **Stale** only with a correct digest (RFC 7616 §3.3): an expired nonce
//!   with a wrong password is [`Verdict::Failed`].
//! - **Replay**: `qop=auth` is required (the RFC 2069 form without `qop` is
//!   refused as malformed: it has no `nc`, so no replay protection). The
//!   highest `nc` per nonce is tracked only after a correct digest (so
//!   garbage cannot burn a phone's counts); a count not greater than the
//!   highest seen is [`Verdict::Replay`]. The table is bounded (oldest-issued
//!   evicted, an evicted nonce becomes unusable) and expired entries are
//!   dropped.
//! - **Uniform failure**: unknown user, wrong password, a stored HA1 of the
//!   other algorithm or an unusable stored HA1 all return
//!   [`Verdict::Failed`] after the same work: HA1 from a dummy password
//!   derived from the server secret, HA2, the response, and a
//!   constant-time comparison (`subtle`).
//! - **digest-uri**: hashed exactly as the client wrote it (after
//!   unquoting), so `;transport=udp` and friends are fine. [`verify`] only
//!   checks that it is a `sip:`/`sips:` URI with a host;
//!   [`verify_request`] also checks it names the same target as the
//!   Request-URI (RFC 2617 §3.2.2.5): same scheme, same user part after
//!   percent-decoding, same host ignoring case and port; URI parameters and
//!   headers are ignored.
//! - **opaque**: if echoed it must be ours (else `BadNonce`); if missing it
//!   is tolerated (it carries no security here — the nonce is MACed).
//! - **Restarts**: the replay table is in memory, so give every process a
//!   fresh random secret; old nonces then come back as `BadNonce` and the
//!   phones simply answer a new 401.
//! - **Refusals before any digest** (syntax, wrong realm, `Basic`, unknown
//!   algorithm, missing `qop`) are [`Verdict::Malformed`] with a reason
//!   phrase for a `400`; they never depend on whether the user exists.
//!
//! [`verify`]: Authenticator::verify
//! [`verify_request`]: Authenticator::verify_request

pub mod digest;
mod nonce;
mod parse;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use subtle::ConstantTimeEq;

pub use digest::Algorithm;
pub use parse::{parse_credentials, AuthError, Credentials, Qop};

use nonce::{NonceKey, NonceMint, NonceTable};

/// A user's stored credential, as configured (`password`, `ha1`,
/// `ha1_sha256`).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The plain password: works with both algorithms.
    Password(String),
    /// `H(username:realm:password)` with MD5, hex: works only with MD5.
    Ha1Md5(String),
    /// `H(username:realm:password)` with SHA-256, hex: works only with
    /// SHA-256.
    Ha1Sha256(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Password(_) => "Password",
            Self::Ha1Md5(_) => "Ha1Md5",
            Self::Ha1Sha256(_) => "Ha1Sha256",
        };
        write!(f, "{kind}(..)")
    }
}

/// The outcome of checking one `Authorization` value.
///
/// | verdict | answer |
/// |---|---|
/// | `Ok` | proceed, the agent is `username` |
/// | `Stale` | `401` with [`Authenticator::challenge`]`(now, true)` |
/// | `Replay`, `BadNonce` | `401` with a fresh challenge (`stale=false`) |
/// | `Failed` | `403 Forbidden` |
/// | `Malformed(reason)` | `400 <reason>` |
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as `username` (the digest username, verbatim).
    Ok {
        /// The authenticated digest username.
        username: String,
    },
    /// Correct digest over a nonce that has expired (RFC 7616 §3.3).
    Stale,
    /// A nonce-count already used (or a nonce the table had to forget).
    Replay,
    /// A nonce (or opaque) this server did not issue under its secret.
    BadNonce,
    /// Wrong password or unknown user: deliberately indistinguishable.
    Failed,
    /// Unusable credentials; the text is a short reason phrase.
    Malformed(&'static str),
}

impl Verdict {
    /// The SIP status the caller should answer with (see the table above);
    /// `200` stands for "proceed".
    #[must_use]
    pub const fn status_code(&self) -> u16 {
        match self {
            Self::Ok { .. } => 200,
            Self::Stale | Self::Replay | Self::BadNonce => 401,
            Self::Failed => 403,
            Self::Malformed(_) => 400,
        }
    }
}

/// Issues challenges and verifies answers for one realm.
pub struct Authenticator {
    realm: String,
    mint: NonceMint,
    lifetime: u64,
    seq: AtomicU64,
    opaque: String,
    dummy_password: String,
    table: NonceTable,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("lifetime", &self.lifetime)
            .field("tracked_nonces", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Default nonce lifetime, seconds.
    pub const DEFAULT_NONCE_LIFETIME_SECS: u64 = 300;
    /// Default bound on the nonce-count table (about 3 MiB at most).
    pub const DEFAULT_MAX_TRACKED_NONCES: usize = 65_536;

    /// `realm` is the configured SIP domain; `server_secret` keys nonces
    /// (random per process is fine: a restart then just re-challenges);
    /// nonces older than `nonce_lifetime_secs` are stale.
    #[must_use]
    pub fn new(realm: &str, server_secret: [u8; 32], nonce_lifetime_secs: u64) -> Self {
        let mint = NonceMint::new(&server_secret);
        let opaque =
            digest::to_hex(&mint.derive(&[b"facd digest opaque v1\0", realm.as_bytes()])[..16]);
        let dummy_password = digest::to_hex(&mint.derive(&[b"facd dummy password v1\0"])[..16]);
        Self {
            realm: realm.to_owned(),
            mint,
            lifetime: nonce_lifetime_secs,
            seq: AtomicU64::new(0),
            opaque,
            dummy_password,
            table: NonceTable::new(Self::DEFAULT_MAX_TRACKED_NONCES),
        }
    }

    /// Bounds the nonce-count table to `max` nonces (at least 1).
    #[must_use]
    pub fn with_max_tracked_nonces(mut self, max: usize) -> Self {
        self.table = NonceTable::new(max);
        self
    }

    /// The realm challenges are issued for.
    #[must_use]
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// How many nonces the replay table currently holds.
    #[must_use]
    pub fn tracked_nonces(&self) -> usize {
        self.table.len()
    }

    /// The `WWW-Authenticate` (or `Proxy-Authenticate`) values for a 401:
    /// SHA-256 first, then MD5 (RFC 8760 §2.4: in order of preference).
    /// Each gets its own nonce. `stale` adds `stale=true` (RFC 7616 §3.3).
    #[must_use]
    pub fn challenge(&self, now: u64, stale: bool) -> Vec<String> {
        self.challenge_for(now, stale, &[Algorithm::Sha256, Algorithm::Md5])
    }

    /// Like [`challenge`](Self::challenge) for a chosen list of algorithms,
    /// e.g. only MD5 for a user whose only stored secret is an MD5 HA1
    /// (a SHA-256-capable phone would otherwise pick SHA-256 and fail).
    #[must_use]
    pub fn challenge_for(&self, now: u64, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
        let realm = quote(&self.realm);
        algorithms
            .iter()
            .map(|algorithm| {
                let key = NonceKey {
                    issued: now,
                    seq: self.seq.fetch_add(1, Ordering::Relaxed),
                };
                let nonce = self.mint.mint(key, &self.realm);
                let mut value = format!(
                    "Digest realm={realm}, nonce=\"{nonce}\", opaque=\"{}\", algorithm={}, qop=\"auth\"",
                    self.opaque,
                    algorithm.as_str()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    /// Checks one `Authorization` / `Proxy-Authorization` value for a
    /// request with `method`. The digest-uri must be a SIP URI but is not
    /// compared with the Request-URI; see [`verify_request`](Self::verify_request).
    /// `lookup` maps a digest username to its secret (called exactly once).
    pub fn verify(
        &mut self,
        now: u64,
        method: &str,
        authorization: &[u8],
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Verdict {
        self.check(now, method, None, authorization, lookup)
    }

    /// [`verify`](Self::verify), and also require the digest-uri to name the
    /// same target as `request_uri` (scheme, user part, host; parameters
    /// and port ignored) — RFC 2617 §3.2.2.5 asks for a 400 otherwise.
    pub fn verify_request(
        &mut self,
        now: u64,
        method: &str,
        request_uri: &[u8],
        authorization: &[u8],
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Verdict {
        self.check(now, method, Some(request_uri), authorization, lookup)
    }

    fn check(
        &mut self,
        now: u64,
        method: &str,
        request_uri: Option<&[u8]>,
        authorization: &[u8],
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> Verdict {
        let creds = match parse_credentials(authorization) {
            Ok(creds) => creds,
            Err(error) => return Verdict::Malformed(error.reason()),
        };
        if creds.realm != self.realm {
            return Verdict::Malformed(AuthError::WrongRealm.reason());
        }
        // We always offer qop="auth"; RFC 7616 §3.4 makes the client use an
        // offered qop. Without it there is no nc, so no replay protection.
        let (Some(Qop::Auth), Some(cnonce), Some((nc_text, nc))) =
            (creds.qop, creds.cnonce.as_deref(), creds.nc.as_ref())
        else {
            return Verdict::Malformed("Digest Qop Required");
        };
        let Some(target) = SipTarget::parse(creds.uri.as_bytes()) else {
            return Verdict::Malformed("Digest URI Is Not A SIP URI");
        };
        if let Some(request_uri) = request_uri {
            if SipTarget::parse(request_uri).as_ref() != Some(&target) {
                return Verdict::Malformed("Digest URI Does Not Match Request-URI");
            }
        }
        if creds
            .opaque
            .as_deref()
            .is_some_and(|opaque| opaque != self.opaque)
        {
            return Verdict::BadNonce;
        }
        let Some(key) = self.mint.check(&creds.nonce, &self.realm) else {
            return Verdict::BadNonce;
        };

        if !self.digest_matches(&creds, method, cnonce, nc_text, lookup) {
            return Verdict::Failed;
        }
        // RFC 7616 §3.3: stale only when the digest was right.
        if now.saturating_sub(key.issued) > self.lifetime {
            return Verdict::Stale;
        }
        self.table.expire(now, self.lifetime);
        if !self.table.accept(key, *nc) {
            return Verdict::Replay;
        }
        Verdict::Ok {
            username: creds.username,
        }
    }

    /// RFC 7616 §3.4.1 request-digest, compared in constant time. Every
    /// path computes HA1 (or takes a stored one), HA2 and the response.
    fn digest_matches(
        &self,
        creds: &Credentials,
        method: &str,
        cnonce: &str,
        nc: &str,
        lookup: impl Fn(&str) -> Option<Secret>,
    ) -> bool {
        let algorithm = creds.algorithm;
        let stored = match (lookup(&creds.username), algorithm) {
            (Some(Secret::Password(password)), _) => Some(digest::ha1(
                algorithm,
                &creds.username,
                &self.realm,
                &password,
            )),
            (Some(Secret::Ha1Md5(ha1)), Algorithm::Md5)
            | (Some(Secret::Ha1Sha256(ha1)), Algorithm::Sha256)
                if ha1.len() == algorithm.hex_len()
                    && ha1.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(ha1.to_ascii_lowercase())
            }
            _ => None,
        };
        let genuine = stored.is_some();
        let ha1 = stored.unwrap_or_else(|| {
            digest::ha1(
                algorithm,
                &creds.username,
                &self.realm,
                &self.dummy_password,
            )
        });
        let ha2 = digest::ha2(algorithm, method, &creds.uri);
        let expected = digest::response(algorithm, &ha1, &creds.nonce, nc, cnonce, &ha2);
        let same = bool::from(expected.as_bytes().ct_eq(creds.response.as_bytes()));
        same & genuine
    }
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

/// What a SIP URI points at, for comparing a digest-uri with a Request-URI:
/// scheme, percent-decoded user part (with any user parameters), host in
/// lower case without port. RFC 3261 §19.1.1 grammar, loosely: `@` never
/// appears outside the userinfo, so the first one splits it off.
#[derive(Debug, PartialEq, Eq)]
struct SipTarget {
    secure: bool,
    user: Vec<u8>,
    host: Vec<u8>,
}

impl SipTarget {
    fn parse(uri: &[u8]) -> Option<Self> {
        if uri.iter().any(|b| !(0x21..=0x7e).contains(b)) {
            return None;
        }
        let colon = uri.iter().position(|&b| b == b':')?;
        let secure = match &uri[..colon] {
            scheme if scheme.eq_ignore_ascii_case(b"sip") => false,
            scheme if scheme.eq_ignore_ascii_case(b"sips") => true,
            _ => return None,
        };
        let rest = &uri[colon + 1..];
        let (userinfo, rest) = match rest.iter().position(|&b| b == b'@') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (&rest[..0], rest),
        };
        // userinfo = user [":" password]
        let user = userinfo.split(|&b| b == b':').next().unwrap_or_default();
        let hostport = rest
            .split(|&b| b == b';' || b == b'?')
            .next()
            .unwrap_or_default();
        let host = if hostport.first() == Some(&b'[') {
            let close = hostport.iter().position(|&b| b == b']')?;
            &hostport[..=close]
        } else {
            hostport.split(|&b| b == b':').next().unwrap_or_default()
        };
        if host.is_empty() {
            return None;
        }
        Some(Self {
            secure,
            user: percent_decode(user)?,
            host: host.to_ascii_lowercase(),
        })
    }
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (high, low) = (hex_value(*tail.first()?)?, hex_value(*tail.get(1)?)?);
            out.push(high << 4 | low);
            rest = &tail[2..];
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

const fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The private target comparison of [`Authenticator::verify_request`]; the
/// authenticator end to end, with a digest client, is tests/authenticator.rs.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_target_parsing() {
        let t = |s: &str| SipTarget::parse(s.as_bytes());
        let target = t("SIP:%2a37*1;phone-context=x@Host.Example:5070;transport=tcp?h=v").unwrap();
        assert_eq!(target.user, b"*37*1;phone-context=x");
        assert_eq!(target.host, b"host.example");
        assert!(!target.secure);
        assert_eq!(t("sips:pbx").unwrap().user, b"");
        for bad in [
            "",
            "sip:",
            "sip:@",
            "tel:+123",
            "/dir/index.html",
            "sip:a b@c",
            "sip:%zz@h",
            "sip:%2@h",
            "sip:[::1",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }
}
