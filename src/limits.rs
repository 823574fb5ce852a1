//! Abuse limits that need memory per source: a source IP that fails digest
//! authentication too often is ignored for a while (password guessing, e.g.
//! sipvicious `svcrack`). Pure: time is passed in; the table is bounded.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;

/// Limits for failed authentications per source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failures allowed within `window`.
    pub max_failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a source is ignored once over the limit.
    pub ban: Duration,
    /// Sources tracked at most (oldest evicted first).
    pub max_sources: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    since: Instant,
    banned_until: Option<Instant>,
    /// Requests dropped while banned, since the last log line.
    dropped: u64,
    logged: Option<Instant>,
}

/// What the caller should do with a request from a banned source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Banned {
    /// Drop it silently.
    Drop,
    /// Drop it and log that `n` requests were dropped (once per window).
    DropAndLog(u64),
}

/// Failed-authentication counters per source IP.
#[derive(Debug)]
pub struct AuthGuard {
    limits: AuthLimits,
    sources: AHashMap<IpAddr, Entry>,
}

impl AuthGuard {
    /// An empty guard.
    pub fn new(limits: AuthLimits) -> Self {
        Self {
            limits,
            sources: AHashMap::new(),
        }
    }

    /// `Some` if requests from `ip` must be ignored now.
    pub fn check(&mut self, now: Instant, ip: IpAddr) -> Option<Banned> {
        let window = self.limits.window;
        let e = self.sources.get_mut(&ip)?;
        match e.banned_until {
            Some(until) if now < until => {
                e.dropped += 1;
                if e.logged.is_none_or(|t| now.duration_since(t) >= window) {
                    e.logged = Some(now);
                    let n = std::mem::take(&mut e.dropped);
                    Some(Banned::DropAndLog(n))
                } else {
                    Some(Banned::Drop)
                }
            }
            Some(_) => {
                self.sources.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// A failed authentication from `ip`; true if it starts a ban.
    pub fn failed(&mut self, now: Instant, ip: IpAddr) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            self.evict(now);
        }
        let l = self.limits;
        let e = self.sources.entry(ip).or_insert(Entry {
            failures: 0,
            since: now,
            banned_until: None,
            dropped: 0,
            logged: None,
        });
        if now.duration_since(e.since) > l.window {
            e.failures = 0;
            e.since = now;
        }
        e.failures += 1;
        if e.failures >= l.max_failures && e.banned_until.is_none() {
            e.banned_until = Some(now + l.ban);
            return true;
        }
        false
    }

    /// A successful authentication clears the source's count.
    pub fn succeeded(&mut self, ip: IpAddr) {
        if self
            .sources
            .get(&ip)
            .is_some_and(|e| e.banned_until.is_none())
        {
            self.sources.remove(&ip);
        }
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// None tracked.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let l = self.limits;
        self.sources.retain(|_, e| match e.banned_until {
            Some(until) => now < until,
            None => now.duration_since(e.since) <= l.window,
        });
        if self.sources.len() >= l.max_sources {
            // Still full: forget the oldest non-banned source (a banned one
            // stays banned, so a flood of new addresses cannot lift bans).
            let oldest = self
                .sources
                .iter()
                .filter(|(_, e)| e.banned_until.is_none())
                .min_by_key(|(_, e)| e.since)
                .map(|(ip, _)| *ip);
            match oldest {
                Some(ip) => {
                    self.sources.remove(&ip);
                }
                None => {
                    let any = self.sources.keys().next().copied();
                    if let Some(ip) = any {
                        self.sources.remove(&ip);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            max_sources: 4,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn bans_after_max_failures_for_the_ban_time() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(limits());
        assert!(!g.failed(t0, ip(1)));
        assert!(!g.failed(t0, ip(1)));
        assert_eq!(g.check(t0, ip(1)), None);
        assert!(g.failed(t0, ip(1)), "the third failure bans");
        assert_eq!(g.check(t0, ip(1)), Some(Banned::DropAndLog(1)));
        assert_eq!(
            g.check(t0 + Duration::from_secs(1), ip(1)),
            Some(Banned::Drop)
        );
        assert_eq!(
            g.check(t0 + Duration::from_secs(61), ip(1)),
            Some(Banned::DropAndLog(2))
        );
        assert_eq!(g.check(t0, ip(2)), None, "other sources are unaffected");
        assert_eq!(
            g.check(t0 + Duration::from_secs(301), ip(1)),
            None,
            "the ban ends"
        );
    }

    #[test]
    fn failures_outside_the_window_and_success_reset() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(limits());
        g.failed(t0, ip(1));
        g.failed(t0, ip(1));
        assert!(
            !g.failed(t0 + Duration::from_secs(61), ip(1)),
            "window restarted"
        );
        g.succeeded(ip(1));
        assert!(g.is_empty());
    }

    #[test]
    fn bounded_and_bans_survive_eviction() {
        let t0 = Instant::now();
        let mut g = AuthGuard::new(limits());
        for _ in 0..3 {
            g.failed(t0, ip(1));
        }
        for n in 2..50 {
            g.failed(t0, ip(n));
            assert!(g.len() <= 4);
        }
        assert!(g.check(t0, ip(1)).is_some(), "the ban was kept");
    }
}
