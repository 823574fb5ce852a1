//! PortSIP-style opaque ids for facd's queues, extensions and its one
//! tenant, derived from their numbers so that they are the same at every
//! start and on every facd with the same configuration; and the RFC 3339
//! times the REST answers carry.
//!
//! PortSIP's ids are decimal strings of 18 digits (`"677046776364007424"`
//! in its WSI pages); facd's look the same. A queue's id is a bijection of
//! its number (no two queues can share one); an extension's and the
//! tenant's come from SHA-256 of the name, and the rare collision between
//! two extensions is settled deterministically by [`IdMap`].

use ahash::AHashMap as HashMap;

use sha2::{Digest, Sha256};

/// 10^17: ids are `<prefix digit>` followed by 17 digits.
const SPAN: u64 = 100_000_000_000_000_000;
/// Odd and not a multiple of 5, so multiplying by it permutes 0..SPAN.
const MIX: u64 = 59_604_644_775_390_625 + 2;

/// The id of queue `number` (1–10 digits): `7` and 17 digits, one-to-one
/// with the number (leading zeros count).
pub(crate) fn queue_id(number: &str) -> String {
    let value: u64 = number.parse().unwrap_or(0);
    let n = (number.len().saturating_sub(1) as u64) * 10_000_000_000 + value;
    let mixed = ((n as u128 * MIX as u128) % SPAN as u128) as u64;
    format!("7{mixed:017}")
}

fn hashed(prefix: char, kind: &str, name: &str, salt: u32) -> String {
    format!("{prefix}{:017}", hashed_n(kind, name, salt))
}

/// The 17 digits of a hashed id, as a number below [`SPAN`].
fn hashed_n(kind: &str, name: &str, salt: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    if salt > 0 {
        h.update(salt.to_be_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) % SPAN
}

/// The tenant id of SIP domain `domain` (facd serves one tenant).
pub(crate) fn tenant_id(domain: &str) -> String {
    hashed('6', "facd-tenant", &domain.to_ascii_lowercase(), 0)
}

/// The prefix digit of extension ids.
const EXT_PREFIX: char = '8';
const EXT_KIND: &str = "facd-extension";

/// Extension ids, both ways. An id is computed from its extension, so only
/// the id → extension direction is stored (as the id's number), with the
/// rare extensions whose first hash was taken (see [`IdMap::new`]): with a
/// million agents this is a quarter of the memory two string maps took.
#[derive(Debug, Default)]
pub(crate) struct IdMap {
    by_id: HashMap<u64, Box<str>>,
    /// Extensions whose id needed a counter (their first hash was taken).
    salted: HashMap<Box<str>, u64>,
}

impl IdMap {
    /// Ids for `exts`. They are taken in sorted order, and one whose hash
    /// is already taken is hashed again with a counter.
    pub(crate) fn new<'a>(exts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut sorted: Vec<&str> = exts.into_iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut m = Self::default();
        m.by_id.reserve(sorted.len());
        for ext in sorted {
            let mut salt = 0;
            let n = loop {
                let n = hashed_n(EXT_KIND, ext, salt);
                if !m.by_id.contains_key(&n) {
                    break n;
                }
                salt += 1;
            };
            m.by_id.insert(n, ext.into());
            if salt > 0 {
                m.salted.insert(ext.into(), n);
            }
        }
        m
    }

    /// The id of extension `ext`.
    pub(crate) fn id(&self, ext: &str) -> Option<String> {
        let n = match self.salted.get(ext) {
            Some(&n) => n,
            None => hashed_n(EXT_KIND, ext, 0),
        };
        (self.by_id.get(&n)?.as_ref() == ext).then(|| format!("{EXT_PREFIX}{n:017}"))
    }

    /// The extension whose id is `id`.
    pub(crate) fn ext(&self, id: &str) -> Option<&str> {
        let digits = id.strip_prefix(EXT_PREFIX)?;
        if digits.len() != 17 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.by_id
            .get(&digits.parse::<u64>().ok()?)
            .map(AsRef::as_ref)
    }
}

impl Default for LazyIds {
    fn default() -> Self {
        Self::empty()
    }
}

/// An [`IdMap`] built on a thread of its own, so that a start with a
/// million agents does not wait for it; the first reader waits instead.
#[derive(Debug, Clone)]
pub(crate) struct LazyIds(std::sync::Arc<std::sync::OnceLock<IdMap>>);

impl LazyIds {
    /// Starts building the ids of `exts` (at once, on this thread, if no
    /// thread can be started).
    pub(crate) fn build(exts: Vec<String>) -> Self {
        let cell = std::sync::Arc::new(std::sync::OnceLock::new());
        let exts = std::sync::Arc::new(exts);
        let (c, e) = (cell.clone(), exts.clone());
        let spawned = std::thread::Builder::new()
            .name("facd-ids".into())
            .spawn(move || {
                let _ = c.set(IdMap::new(e.iter().map(String::as_str)));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread for the extension ids: building them now");
            let _ = cell.set(IdMap::new(exts.iter().map(String::as_str)));
        }
        Self(cell)
    }

    /// No ids (a WSI naming before any configuration).
    fn empty() -> Self {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(IdMap::default());
        Self(std::sync::Arc::new(cell))
    }

    /// The ids (waits for the build to finish).
    pub(crate) fn get(&self) -> &IdMap {
        self.0.wait()
    }
}

/// Unix milliseconds as RFC 3339 UTC (`2017-07-21T17:32:28Z`), as
/// PortSIP's REST answers write times.
pub(crate) fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn queue_ids_are_stable_distinct_and_look_like_portsip_ids() {
        assert_eq!(queue_id("8000"), queue_id("8000"));
        let mut seen = HashSet::new();
        for n in (0..2000).map(|i| i.to_string()).chain(
            ["00", "000", "08000", "9999999999", "0000000000"]
                .iter()
                .map(|s| s.to_string()),
        ) {
            let id = queue_id(&n);
            assert_eq!(id.len(), 18, "{n} {id}");
            assert!(id.bytes().all(|b| b.is_ascii_digit()));
            assert!(seen.insert(id), "collision at {n}");
        }
    }

    #[test]
    fn extension_ids_map_both_ways() {
        let m = IdMap::new(["1001", "1002", "alice.b"]);
        for x in ["1001", "1002", "alice.b"] {
            let id = m.id(x).unwrap();
            assert_eq!(id.len(), 18);
            assert_eq!(m.ext(&id), Some(x));
        }
        assert_ne!(m.id("1001"), m.id("1002"));
        assert_eq!(IdMap::new(["1002", "1001"]).id("1001"), m.id("1001"));
        assert_eq!(m.ext("1001"), None);
        assert_eq!(m.id("1003"), None);
        assert_eq!(m.ext("800000000000000000"), None);
        assert_eq!(m.ext("8x0000000000000000"), None);
    }

    #[test]
    fn a_taken_hash_is_salted_and_still_maps_both_ways() {
        // Force a collision: pretend "b"'s first id is taken by "a".
        let mut m = IdMap::new(["a"]);
        let first_b = hashed_n(EXT_KIND, "b", 0);
        let a = m.by_id.remove(&hashed_n(EXT_KIND, "a", 0)).unwrap();
        m.by_id.insert(first_b, a.clone());
        m.salted.insert(a, first_b);
        let n = hashed_n(EXT_KIND, "b", 1);
        m.by_id.insert(n, "b".into());
        m.salted.insert("b".into(), n);
        let (ia, ib) = (m.id("a").unwrap(), m.id("b").unwrap());
        assert_ne!(ia, ib);
        assert_eq!((m.ext(&ia), m.ext(&ib)), (Some("a"), Some("b")));
    }

    #[test]
    fn lazy_ids_are_the_same_as_built_at_once() {
        let exts: Vec<String> = (1000..1100).map(|i| i.to_string()).collect();
        let lazy = LazyIds::build(exts.clone());
        let now = IdMap::new(exts.iter().map(String::as_str));
        for x in &exts {
            assert_eq!(lazy.get().id(x), now.id(x));
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500_658_348_000), "2017-07-21T17:32:28Z");
        assert_eq!(rfc3339(951_825_600_999), "2000-02-29T12:00:00Z");
    }
}
