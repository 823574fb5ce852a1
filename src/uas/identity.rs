//! Who is asking: the agent behind a star-code INVITE or a SUBSCRIBE.
//! From a trusted proxy (`[[trusted_proxies]]`, which authenticated the
//! phone itself), the user of its P-Asserted-Identity (RFC 3325 §9.1), else
//! the From user, with no challenge. Otherwise, with digest authentication
//! (RFC 3261 §22, RFC 7616/8760) the authenticated username, which must be
//! the From user; a source that fails too often is ignored for a while.
//! Without it (lab mode), the From user.

use std::net::IpAddr;

use ahash::AHashMap;
use tracing::{info, warn};

use super::reply::Rq;
use super::{Now, Uas};
use crate::limits::{AuthGuard, Banned, IpNet};
use crate::sip::auth::{Algorithm, Authenticator, Secret, Verdict};
use crate::sip::message::Request;

/// Digest authentication of star-code INVITEs and SUBSCRIBEs.
pub struct Identity {
    /// Nonces, verification, replay protection.
    pub authenticator: Authenticator,
    /// Each agent's password or HA1.
    pub secrets: AHashMap<String, Secret>,
    /// The algorithms challenged, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Failed authentications per source IP.
    pub guard: AuthGuard,
}

/// Why a request was not authenticated.
enum Refusal {
    /// 401 with fresh challenges (`stale=true` when the nonce only expired).
    Challenge { stale: bool },
    /// A final refusal.
    Refuse(u16, String),
}

impl<F: Clone, W> Uas<F, W> {
    /// The agent behind `rq`, or `None` once the request was answered
    /// (401/403/400) or dropped (banned source).
    pub(super) fn authenticate(&mut self, now: Now, rq: Rq<'_, F>) -> Option<String> {
        let source = rq.peer.addr.ip();
        if self.proxies.iter().any(|n| n.contains(source)) {
            // RFC 3325 §5: a trusted element's asserted identity is the
            // caller; RFC 3325 §9.1 lets it be absent, then the From.
            return match asserted_user(rq.req).or_else(|| from_user(rq.req)) {
                Some(agent) => Some(agent),
                None => {
                    self.reply(now, rq, 403, "Forbidden", |b| b);
                    None
                }
            };
        }
        // A source that failed authentication too often is ignored (no
        // answer gives a password guesser nothing to work with).
        if let Some(id) = self.identity.as_mut() {
            match id.guard.check(now.mono, source) {
                None => {}
                Some(Banned::Drop) => {
                    self.stats.banned_drops += 1;
                    return None;
                }
                Some(Banned::DropAndLog(n)) => {
                    self.stats.banned_drops += 1;
                    warn!(%source, dropped = n, "requests from a source banned for failed authentications dropped");
                    return None;
                }
            }
        }
        match self.identify(now, rq.req, source) {
            Ok(agent) => Some(agent),
            Err(Refusal::Refuse(status, reason)) => {
                self.reply(now, rq, status, &reason, |b| b);
                None
            }
            Err(Refusal::Challenge { stale }) => {
                // RFC 3261 §22.2 / RFC 8760 §2.4: one challenge per algorithm.
                let challenges = self
                    .identity
                    .as_ref()
                    .map(|a| {
                        a.authenticator
                            .challenge_for(now.wall / 1000, stale, &a.algorithms)
                    })
                    .unwrap_or_default();
                self.reply(now, rq, 401, "Unauthorized", |b| {
                    challenges
                        .iter()
                        .fold(b, |b, c| b.header("WWW-Authenticate", c))
                });
                None
            }
        }
    }

    /// Sources whose requests identify the agent by P-Asserted-Identity,
    /// unchallenged (`[[trusted_proxies]]`; replaced on a reload).
    pub fn set_trusted_proxies(&mut self, proxies: Vec<IpNet>) {
        self.proxies = proxies;
    }

    /// The agent making the request: the authenticated digest username when
    /// `auth.required` (SPEC §4), else the From user (lab mode).
    fn identify(&mut self, now: Now, req: &Request, source: IpAddr) -> Result<String, Refusal> {
        let from_user = from_user(req).ok_or_else(|| Refusal::Refuse(403, "Forbidden".into()))?;
        let Some(id) = self.identity.as_mut() else {
            return Ok(from_user);
        };
        let Some(credentials) = req.headers.get("Authorization") else {
            return Err(Refusal::Challenge { stale: false });
        };
        let secrets = &id.secrets;
        // The digest is checked against the uri exactly as the client wrote
        // it (softphones add ;transport=udp; SIPp writes only the host). It is
        // not tied to the Request-URI: a captured header cannot be reused on
        // another code because its nonce-count must grow (RFC 7616 §3.4.5).
        let verdict =
            id.authenticator
                .verify(now.wall / 1000, req.method.as_str(), &credentials, |user| {
                    secrets.get(user).cloned()
                });
        match &verdict {
            Verdict::Ok { .. } => id.guard.succeeded(source),
            // Counting the failure may start a ban.
            Verdict::Failed if id.guard.failed(now.mono, source) => {
                self.metrics.auth_failures += 1;
                self.metrics.auth_bans += 1;
                warn!(%source, "too many failed authentications: source ignored for a while");
            }
            _ => {}
        }
        match verdict {
            // Only the agent itself may change its state.
            Verdict::Ok { username } if username == from_user => Ok(username),
            Verdict::Ok { username } => {
                warn!(%username, from = %from_user, "authenticated user differs from the From user");
                Err(Refusal::Refuse(
                    403,
                    "Forbidden - From Does Not Match Credentials".into(),
                ))
            }
            Verdict::Stale => Err(Refusal::Challenge { stale: true }),
            Verdict::Replay | Verdict::BadNonce => Err(Refusal::Challenge { stale: false }),
            // Unknown user and wrong password look the same from outside.
            Verdict::Failed => {
                self.metrics.auth_failures += 1;
                info!(from = %from_user, "digest authentication failed");
                Err(Refusal::Refuse(403, "Forbidden".into()))
            }
            Verdict::Malformed(why) => Err(Refusal::Refuse(400, format!("Bad Request - {why}"))),
        }
    }
}

/// The From URI's user, %-decoded.
fn from_user(req: &Request) -> Option<String> {
    req.base
        .from
        .uri
        .user_unescaped(req.headers.buf())
        .and_then(|u| String::from_utf8(u).ok())
}

/// The user of the request's P-Asserted-Identity (RFC 3325 §9.1: one or
/// two values, at most one `sip:`/`sips:` and one `tel:` URI): the sip user
/// if there is one, else the tel number; %-decoded.
fn asserted_user(req: &Request) -> Option<String> {
    let values: Vec<bytes::Bytes> = req.headers.get_all("P-Asserted-Identity").collect();
    let uris: Vec<&[u8]> = values.iter().flat_map(|v| name_addr_uris(v)).collect();
    let user = |scheme: &[&[u8]]| {
        uris.iter().find_map(|u| {
            let (s, rest) = u.split_at(memchr::memchr(b':', u)?);
            if !scheme.iter().any(|x| s.eq_ignore_ascii_case(x)) {
                return None;
            }
            let rest = &rest[1..];
            let user = if s.eq_ignore_ascii_case(b"tel") {
                &rest[..memchr::memchr(b';', rest).unwrap_or(rest.len())]
            } else {
                &rest[..memchr::memchr(b'@', rest)?]
            };
            let user = crate::sip::message::unescape(user);
            (!user.is_empty()).then(|| String::from_utf8(user).ok())?
        })
    };
    user(&[b"sip", b"sips"]).or_else(|| user(&[b"tel"]))
}

/// The URIs of a header value of name-addrs or addr-specs separated by
/// commas (`"A, B" <sip:a@h>, <tel:+1>`): inside `<…>` when bracketed.
fn name_addr_uris(v: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut i, mut start, mut quoted) = (0, 0, false);
    while i <= v.len() {
        let c = v.get(i).copied();
        match c {
            Some(b'"') => quoted = !quoted,
            Some(b'\\') if quoted => i += 1,
            Some(b'<') if !quoted => {
                let Some(end) = memchr::memchr(b'>', &v[i..]) else {
                    return out;
                };
                out.push(v[i + 1..i + end].trim_ascii());
                i += end;
                // Skip the parameters up to the next comma.
                while i < v.len() && v[i] != b',' {
                    i += 1;
                }
                start = i + 1;
            }
            Some(b',') | None if !quoted => {
                let part = v.get(start..i).unwrap_or_default().trim_ascii();
                if !part.is_empty() {
                    let end = memchr::memchr(b';', part).unwrap_or(part.len());
                    out.push(part[..end].trim_ascii());
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::name_addr_uris;

    #[test]
    fn uris_of_name_addrs_and_addr_specs() {
        let v: &[u8] = b"\"Alice, Sales\" <sip:1001@pbx;user=phone>;x=1, <tel:+4930123;ext=1>";
        assert_eq!(
            name_addr_uris(v),
            [&b"sip:1001@pbx;user=phone"[..], b"tel:+4930123;ext=1"]
        );
        assert_eq!(name_addr_uris(b"sip:1002@h;tag=x"), [&b"sip:1002@h"[..]]);
        assert!(name_addr_uris(b" ").is_empty());
        assert!(name_addr_uris(b"<sip:broken").is_empty());
    }
}
