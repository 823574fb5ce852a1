//! Stateless, forgery-proof nonces and the bounded nonce-count table that
//! stops replays (RFC 7616 §3.3 and §5.5, RFC 3261 §22.4).
//!
//! A nonce is `base64url(issued ‖ seq ‖ HMAC-SHA256(secret, label ‖ issued
//! ‖ seq ‖ realm)[..16])` with `issued` the Unix second of the challenge and
//! `seq` a per-process counter, both big-endian `u64`: 32 bytes, 43
//! characters, no padding, and only characters that need no escaping in a
//! quoted-string. The server can check a nonce it issued without
//! remembering it; `seq` keeps two challenges in the same second apart so
//! two phones never share a nonce (and so a nonce-count sequence).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const NONCE_LABEL: &[u8] = b"facd digest nonce v1\0";
const MAC_LEN: usize = 16;
const RAW_LEN: usize = 8 + 8 + MAC_LEN;

/// Identifies one issued nonce. Ordered by `seq` first: issue order within
/// this process, which (unlike the wall clock) never steps back, so a clock
/// step cannot put fresh nonces under the table's floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct NonceKey {
    pub(super) seq: u64,
    pub(super) issued: u64,
}

/// Mints and checks nonces under one server secret.
#[derive(Clone)]
pub(super) struct NonceMint {
    mac: HmacSha256,
}

impl NonceMint {
    pub(super) fn new(secret: &[u8; 32]) -> Self {
        Self {
            mac: <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    /// HMAC-SHA256 under the server secret, for deriving other values
    /// (opaque, the dummy password) that must be stable yet unguessable.
    pub(super) fn derive(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn tag(&self, key: NonceKey, realm: &str) -> [u8; 32] {
        self.derive(&[
            NONCE_LABEL,
            &key.issued.to_be_bytes(),
            &key.seq.to_be_bytes(),
            realm.as_bytes(),
        ])
    }

    pub(super) fn mint(&self, key: NonceKey, realm: &str) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&key.issued.to_be_bytes());
        raw[8..16].copy_from_slice(&key.seq.to_be_bytes());
        raw[16..].copy_from_slice(&self.tag(key, realm)[..MAC_LEN]);
        base64url_encode(&raw)
    }

    /// The key of a nonce this mint issued for `realm`, or `None` for
    /// anything else (garbage, another realm, another server secret).
    /// The tag comparison is constant-time.
    pub(super) fn check(&self, nonce: &str, realm: &str) -> Option<NonceKey> {
        let raw = base64url_decode::<RAW_LEN>(nonce.as_bytes())?;
        let mut issued = [0u8; 8];
        let mut seq = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        seq.copy_from_slice(&raw[8..16]);
        let key = NonceKey {
            issued: u64::from_be_bytes(issued),
            seq: u64::from_be_bytes(seq),
        };
        let expected = self.tag(key, realm);
        bool::from(expected[..MAC_LEN].ct_eq(&raw[16..])).then_some(key)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 §5 base64url without padding.
fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    }))
}

/// Strict decoding of exactly `N` bytes of unpadded base64url; anything
/// else (wrong length, foreign characters, non-zero trailing bits) is
/// `None`, so each nonce has exactly one spelling.
fn base64url_decode<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut written = 0;
    for &c in text {
        acc = (acc << 6) | b64_value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(written)? = (acc >> bits) as u8;
            written += 1;
            acc &= (1 << bits) - 1;
        }
    }
    (written == N && acc == 0).then_some(out)
}

/// Highest nonce-count seen per nonce (RFC 7616 §3.4: the server "should
/// … protect against a replay attack" by checking the count increases).
///
/// Bounded: when over `max` entries the earliest-issued entry is dropped
/// and the `floor` rises to its key; any nonce at or below the floor that
/// is not in the table is treated as a replay. A dropped nonce thus becomes
/// unusable (the client gets a fresh challenge), never replayable. Nonces
/// issued later are above the floor and unaffected.
///
/// The table lives in memory: after a restart it is empty, which is safe
/// only because a restart should also change the server secret (so every
/// old nonce is refused as forged). Keep the secret per process.
#[derive(Debug)]
pub(super) struct NonceTable {
    seen: BTreeMap<NonceKey, u32>,
    max: usize,
    floor: Option<NonceKey>,
}

impl NonceTable {
    pub(super) fn new(max: usize) -> Self {
        Self {
            seen: BTreeMap::new(),
            max: max.max(1),
            floor: None,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }

    fn forget_first(&mut self) {
        if let Some((key, _)) = self.seen.pop_first() {
            self.floor = self.floor.max(Some(key));
        }
    }

    /// Drops entries for nonces that are expired at `now` (they are refused
    /// as stale before reaching this table anyway).
    pub(super) fn expire(&mut self, now: u64, lifetime: u64) {
        while self
            .seen
            .first_key_value()
            .is_some_and(|(key, _)| now.saturating_sub(key.issued) > lifetime)
        {
            self.forget_first();
        }
    }

    /// Records `nc` for `key` if it is greater than any count seen for it;
    /// `false` means replay (or a nonce already forgotten).
    pub(super) fn accept(&mut self, key: NonceKey, nc: u32) -> bool {
        if let Some(highest) = self.seen.get_mut(&key) {
            if nc <= *highest {
                return false;
            }
            *highest = nc;
            return true;
        }
        if nc == 0 || self.floor.is_some_and(|floor| key <= floor) {
            return false;
        }
        self.seen.insert(key, nc);
        while self.seen.len() > self.max {
            self.forget_first();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn key(issued: u64, seq: u64) -> NonceKey {
        NonceKey { seq, issued }
    }

    #[test]
    fn base64url_round_trips_and_is_strict() {
        for len in 0..8 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 200) as u8).collect();
            let text = base64url_encode(&bytes);
            assert!(!text.contains('='));
        }
        let raw: [u8; RAW_LEN] = core::array::from_fn(|i| (i * 13 + 250) as u8);
        let text = base64url_encode(&raw);
        assert_eq!(text.len(), 43);
        assert_eq!(base64url_decode::<RAW_LEN>(text.as_bytes()), Some(raw));
        // Foreign alphabet, wrong length, non-canonical trailing bits.
        let mut foreign = text.clone().into_bytes();
        foreign[0] = b'+';
        assert_eq!(base64url_decode::<RAW_LEN>(&foreign), None);
        assert_eq!(base64url_decode::<RAW_LEN>(&text.as_bytes()[1..]), None);
        let mut last = text.into_bytes();
        let end = last.len() - 1;
        last[end] = if last[end] == b'B' { b'C' } else { b'B' };
        assert_eq!(base64url_decode::<RAW_LEN>(&last), None);
        assert_eq!(base64url_encode(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn mint_and_check() {
        let mint = NonceMint::new(&[7; 32]);
        let nonce = mint.mint(key(1_700_000_000, 3), "pbx");
        // issued ‖ seq on the wire, whatever the field order in memory.
        assert!(nonce.starts_with("AAAAAGVT8QAAAAAAAAAAA"));
        assert_eq!(nonce.len(), 43);
        assert_eq!(mint.check(&nonce, "pbx"), Some(key(1_700_000_000, 3)));
        assert_eq!(mint.check(&nonce, "other"), None);
        assert_eq!(NonceMint::new(&[8; 32]).check(&nonce, "pbx"), None);
        // Changing the timestamp without the secret breaks the tag.
        let mut forged = base64url_decode::<RAW_LEN>(nonce.as_bytes()).unwrap();
        forged[7] ^= 1;
        assert_eq!(mint.check(&base64url_encode(&forged), "pbx"), None);
        assert_eq!(mint.check("", "pbx"), None);
        assert_eq!(
            mint.check("7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "pbx"),
            None
        );
    }

    #[test]
    fn table_tracks_highest_count() {
        let mut table = NonceTable::new(8);
        assert!(table.accept(key(10, 0), 1));
        assert!(!table.accept(key(10, 0), 1));
        assert!(table.accept(key(10, 0), 3));
        assert!(!table.accept(key(10, 0), 2));
        assert!(table.accept(key(10, 1), 1));
        assert!(!table.accept(key(10, 2), 0));
    }

    #[test]
    fn table_is_bounded_and_evicted_nonces_stay_dead() {
        let mut table = NonceTable::new(2);
        assert!(table.accept(key(10, 1), 1));
        assert!(table.accept(key(11, 2), 1));
        assert!(table.accept(key(12, 3), 1));
        assert_eq!(table.len(), 2);
        // key(10, 1) was evicted: refused even with a higher count, as is an
        // earlier-issued nonce never seen.
        assert!(!table.accept(key(10, 1), 5));
        assert!(!table.accept(key(9, 0), 1));
        assert!(table.accept(key(11, 2), 2));
        // The wall clock stepping back does not hurt nonces issued later.
        assert!(table.accept(key(5, 4), 1));
    }

    #[test]
    fn table_expires_old_entries() {
        let mut table = NonceTable::new(100);
        assert!(table.accept(key(10, 0), 1));
        assert!(table.accept(key(20, 1), 1));
        table.expire(315, 300);
        assert_eq!(table.len(), 1);
        table.expire(10_000, 300);
        assert_eq!(table.len(), 0);
        assert!(!table.accept(key(20, 1), 2));
    }
}
