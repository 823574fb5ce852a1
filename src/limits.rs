//! Abuse limits that need memory per source, all pure (time is passed in)
//! and bounded (each table has a maximum size and evicts safely):
//!
//! - [`AuthGuard`]: a source IP that fails digest authentication too often
//!   is ignored for a while (password guessing, e.g. sipvicious `svcrack`);
//! - [`RateLimiter`]: a token bucket of requests per source IP (floods);
//! - [`ConnLimiter`]: open TCP connections per source IP;
//! - [`IpNet`]: the sources exempt from the last two (a PBX in front).

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

    /// New limits (a configuration reload); bans in force keep their end.
    pub fn set_limits(&mut self, limits: AuthLimits) {
        self.limits = limits;
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

/// Request-rate limits per source IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Sustained messages per second.
    pub per_sec: u32,
    /// Messages a source may send at once after being quiet (bucket size).
    pub burst: u32,
    /// Sources tracked at most.
    pub max_sources: usize,
    /// At most one log line per source per this interval.
    pub log_interval: Duration,
}

/// One token, in the buckets' fixed-point unit (micro-tokens).
const TOKEN: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Micro-tokens available at `at`.
    tokens: u64,
    at: Instant,
    /// Messages dropped since the last log line.
    dropped: u64,
    logged: Option<Instant>,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit: process it.
    Pass,
    /// Over the limit: drop it.
    Drop,
    /// Over the limit: drop it and log that `n` messages from this source
    /// were dropped since the last line (once per log interval).
    DropAndLog(u64),
}

/// Token buckets per source IP (a source's bucket holds `burst` tokens and
/// refills at `per_sec`; each message takes one).
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    sources: AHashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            sources: AHashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.limits.burst.max(1)) * TOKEN
    }

    /// The bucket's micro-tokens at `now`.
    fn refilled(&self, b: &Bucket, now: Instant) -> u64 {
        let us = u64::try_from(now.saturating_duration_since(b.at).as_micros()).unwrap_or(u64::MAX);
        b.tokens
            .saturating_add(us.saturating_mul(u64::from(self.limits.per_sec)))
            .min(self.capacity())
    }

    /// Takes a token for one message from `ip`.
    pub fn check(&mut self, now: Instant, ip: IpAddr) -> RateVerdict {
        let cap = self.capacity();
        if !self.sources.contains_key(&ip) {
            if self.sources.len() >= self.limits.max_sources {
                self.evict(now);
            }
            self.sources.insert(
                ip,
                Bucket {
                    tokens: cap - TOKEN,
                    at: now,
                    dropped: 0,
                    logged: None,
                },
            );
            return RateVerdict::Pass;
        }
        let interval = self.limits.log_interval;
        let tokens = self.refilled(&self.sources[&ip], now);
        let Some(b) = self.sources.get_mut(&ip) else {
            return RateVerdict::Pass;
        };
        b.at = now;
        if tokens >= TOKEN {
            b.tokens = tokens - TOKEN;
            return RateVerdict::Pass;
        }
        b.tokens = tokens;
        b.dropped += 1;
        if b.logged
            .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        {
            b.logged = Some(now);
            RateVerdict::DropAndLog(std::mem::take(&mut b.dropped))
        } else {
            RateVerdict::Drop
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

    /// New rate and burst (a configuration reload); buckets keep their
    /// tokens, cut to the new burst.
    pub fn set_limits(&mut self, per_sec: u32, burst: u32) {
        self.limits.per_sec = per_sec;
        self.limits.burst = burst;
        let cap = self.capacity();
        for b in self.sources.values_mut() {
            b.tokens = b.tokens.min(cap);
        }
    }

    /// The drops not yet logged of every source whose last line is at least
    /// a log interval old, as `(source, count)`; they count as logged now.
    /// Called once per interval, so that the drops after a source's first
    /// line are reported even if it then falls silent.
    pub fn take_unlogged(&mut self, now: Instant) -> Vec<(IpAddr, u64)> {
        let interval = self.limits.log_interval;
        let mut out = Vec::new();
        for (ip, b) in &mut self.sources {
            if b.dropped > 0
                && b.logged
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            {
                b.logged = Some(now);
                out.push((*ip, std::mem::take(&mut b.dropped)));
            }
        }
        out
    }

    /// Makes room: first forget every source whose bucket has refilled (it
    /// is as if it had never been seen); if that frees less than an eighth
    /// of the table, forget arbitrary sources until it does, so the sweep
    /// costs O(1) per new source amortised. A forgotten limited source gets
    /// a fresh burst: the price of a bounded table under a many-address flood.
    fn evict(&mut self, now: Instant) {
        let cap = self.capacity();
        let full: Vec<IpAddr> = self
            .sources
            .iter()
            .filter(|(_, b)| self.refilled(b, now) >= cap)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in full {
            self.sources.remove(&ip);
        }
        let target = self.limits.max_sources - self.limits.max_sources.div_ceil(8);
        if self.sources.len() > target {
            let extra: Vec<IpAddr> = self
                .sources
                .keys()
                .take(self.sources.len() - target)
                .copied()
                .collect();
            for ip in extra {
                self.sources.remove(&ip);
            }
        }
    }
}

/// Open TCP connections per source IP. An entry exists only while the
/// source has a connection open, so the table is bounded by the total
/// connection cap.
#[derive(Debug)]
pub struct ConnLimiter {
    per_ip: u32,
    open: AHashMap<IpAddr, u32>,
}

impl ConnLimiter {
    /// At most `per_ip` connections per source IP.
    pub fn new(per_ip: u32) -> Self {
        Self {
            per_ip,
            open: AHashMap::new(),
        }
    }

    /// Counts a new connection from `ip`; false (and nothing counted) if
    /// `ip` already has `per_ip` open.
    pub fn try_open(&mut self, ip: IpAddr) -> bool {
        let n = self.open.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` closed.
    pub fn close(&mut self, ip: IpAddr) {
        if let Some(n) = self.open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// A new cap (a configuration reload): open connections stay, new
    /// ones are counted against it.
    pub fn set_per_ip(&mut self, per_ip: u32) {
        self.per_ip = per_ip;
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open.get(&ip).copied().unwrap_or(0)
    }

    /// Sources with a connection open.
    pub fn sources(&self) -> usize {
        self.open.len()
    }
}

/// The key a source is limited under: its IPv4 address, or the /64 of its
/// IPv6 address (one subscriber usually holds a whole /64 and can rotate
/// addresses within it at will; RFC 6177 §2). IPv4-mapped IPv6 addresses
/// count as their IPv4 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// An address or network, `192.0.2.10`, `10.0.0.0/8`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why an [`IpNet`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpNetError {
    /// Not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The prefix length is not a number within the address's bits.
    #[error("prefix length {0:?} must be 0-32 for IPv4, 0-128 for IPv6")]
    Prefix(String),
}

impl IpNet {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Result<Self, IpNetError> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| IpNetError::Address(a.to_string()))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => bits,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= bits => n,
                _ => return Err(IpNetError::Prefix(p.to_string())),
            },
        };
        Ok(Self { addr, prefix })
    }

    /// True if `ip` is in this network (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
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

    fn rate(per_sec: u32, burst: u32, max_sources: usize) -> RateLimiter {
        RateLimiter::new(RateLimits {
            per_sec,
            burst,
            max_sources,
            log_interval: Duration::from_secs(10),
        })
    }

    #[test]
    fn rate_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = rate(10, 5, 100);
        for i in 0..5 {
            assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass, "burst message {i}");
        }
        assert_eq!(r.check(t0, ip(1)), RateVerdict::DropAndLog(1));
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Drop);
        assert_eq!(
            r.check(t0, ip(2)),
            RateVerdict::Pass,
            "other sources are unaffected"
        );
        // 10/s: one token every 100 ms, never more than the burst.
        let t = t0 + Duration::from_millis(100);
        assert_eq!(r.check(t, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t, ip(1)), RateVerdict::Drop);
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..20)
            .filter(|_| r.check(later, ip(1)) == RateVerdict::Pass)
            .count();
        assert_eq!(
            passed, 5,
            "an idle source gets one burst, not an hour of tokens"
        );
    }

    #[test]
    fn rate_over_a_second_matches_the_configured_rate() {
        let t0 = Instant::now();
        let mut r = rate(100, 10, 100);
        // 10,000 messages evenly over one second: 10 (burst) + 100 (rate).
        let passed = (0..10_000u64)
            .filter(|i| r.check(t0 + Duration::from_micros(i * 100), ip(1)) == RateVerdict::Pass)
            .count();
        assert!((109..=111).contains(&passed), "passed {passed}");
    }

    #[test]
    fn rate_logs_once_per_interval_with_the_count() {
        let t0 = Instant::now();
        let mut r = rate(1, 1, 100);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::DropAndLog(1));
        for k in 1..=9u64 {
            // Faster than the refill: every one is dropped.
            let t = t0 + Duration::from_millis(k * 10);
            assert_eq!(r.check(t, ip(1)), RateVerdict::Drop);
        }
        // 10 s on, the bucket has a token again; the next drop logs the 9.
        let t = t0 + Duration::from_secs(10);
        assert_eq!(r.check(t, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t, ip(1)), RateVerdict::DropAndLog(10));
    }

    #[test]
    fn drops_after_the_first_line_are_reported_once_per_interval() {
        let t0 = Instant::now();
        let mut r = rate(1, 1, 100);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::DropAndLog(1));
        for _ in 0..7 {
            assert_eq!(r.check(t0, ip(1)), RateVerdict::Drop);
        }
        // Within the interval of the first line: nothing to report yet.
        assert!(r.take_unlogged(t0 + Duration::from_secs(5)).is_empty());
        // The source fell silent; the periodic report still gives its 7.
        let t = t0 + Duration::from_secs(10);
        assert_eq!(r.take_unlogged(t), [(ip(1), 7)]);
        assert!(r.take_unlogged(t + Duration::from_secs(20)).is_empty());
    }

    #[test]
    fn new_limits_apply_to_existing_buckets() {
        let t0 = Instant::now();
        let mut r = rate(1, 100, 100);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass);
        r.set_limits(1, 2);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::Pass);
        assert_eq!(r.check(t0, ip(1)), RateVerdict::DropAndLog(1));
        let mut c = ConnLimiter::new(1);
        assert!(c.try_open(ip(1)));
        assert!(!c.try_open(ip(1)));
        c.set_per_ip(2);
        assert!(c.try_open(ip(1)));
    }

    #[test]
    fn rate_table_is_bounded() {
        let t0 = Instant::now();
        let mut r = rate(1, 2, 64);
        // A limited source, then a flood of new addresses.
        for _ in 0..3 {
            r.check(t0, ip(1));
        }
        for n in 0..10_000u32 {
            let a = IpAddr::from(n.to_be_bytes());
            assert_eq!(
                r.check(t0, a),
                RateVerdict::Pass,
                "a new source starts with a burst"
            );
            assert!(r.len() <= 64);
        }
        // Quiet sources are forgotten first: after the refill, a sweep
        // empties the table of them and new sources are tracked again.
        let t = t0 + Duration::from_secs(10);
        r.check(t, ip(200));
        assert!(r.len() <= 64);
    }

    #[test]
    fn connections_per_ip() {
        let mut c = ConnLimiter::new(2);
        assert!(c.try_open(ip(1)));
        assert!(c.try_open(ip(1)));
        assert!(!c.try_open(ip(1)), "the third is refused");
        assert!(c.try_open(ip(2)));
        assert_eq!(c.open(ip(1)), 2);
        c.close(ip(1));
        assert!(c.try_open(ip(1)), "a slot is free again");
        c.close(ip(1));
        c.close(ip(1));
        c.close(ip(2));
        c.close(ip(2));
        assert_eq!(c.sources(), 0, "no entry is kept for closed sources");
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        assert_eq!(source_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(source_key(ip(7)), ip(7));
        assert_eq!(source_key("::ffff:10.0.0.7".parse().unwrap()), ip(7));
    }

    #[test]
    fn networks() {
        let n = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped"
        );
        let one = IpNet::parse("192.0.2.1").unwrap();
        assert!(one.contains("192.0.2.1".parse().unwrap()));
        assert!(!one.contains("192.0.2.2".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.5".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("::/0")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert_eq!(
            IpNet::parse("10.0.0.0/33"),
            Err(IpNetError::Prefix("33".into()))
        );
        assert_eq!(
            IpNet::parse("pbx.example/8"),
            Err(IpNetError::Address("pbx.example".into()))
        );
    }
}
