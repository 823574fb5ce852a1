//! Per-source admission: each source IP has a token bucket of messages
//! (over it, messages are dropped silently: a UDP source address may be
//! forged, and answering would reflect the flood at it) and a cap on open
//! TCP connections. An IPv6 source is its /64. Sources in
//! `limits.exempt_sources` skip both.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use super::Stats;
use crate::limits::{source_key, ConnLimiter, IpNet, RateLimiter, RateLimits, RateVerdict};

/// At most one log line per source (or per cause) per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Sources whose request rate is tracked at once (see [`RateLimiter`]).
pub const RATE_SOURCES: usize = 100_000;

/// The per-source limits every reader shares (see the module docs).
#[derive(Debug)]
pub struct SourceLimits {
    rate: Mutex<RateLimiter>,
    conns: Mutex<ConnLimiter>,
    exempt: Vec<IpNet>,
}

impl SourceLimits {
    /// Limits with `rate` per source, `per_ip` TCP connections per source,
    /// and `exempt` sources that skip both.
    pub fn new(rate: RateLimits, per_ip: u32, exempt: Vec<IpNet>) -> Self {
        Self {
            rate: Mutex::new(RateLimiter::new(rate)),
            conns: Mutex::new(ConnLimiter::new(per_ip)),
            exempt,
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.exempt.iter().any(|n| n.contains(ip))
    }

    /// True if a message from `ip` may be processed; counts and logs (once
    /// per source per interval) the ones dropped.
    pub(super) fn admit(&self, ip: IpAddr, transport: &'static str, stats: &Stats) -> bool {
        if self.exempt(ip) {
            return true;
        }
        // The table stays consistent even if a holder panicked: keep using it.
        let verdict = self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .check(Instant::now(), source_key(ip));
        match verdict {
            RateVerdict::Pass => true,
            RateVerdict::Drop => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                false
            }
            RateVerdict::DropAndLog(n) => {
                stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                warn!(source = %ip, transport, dropped = n, "source over its request rate (limits.requests_per_sec): messages dropped");
                false
            }
        }
    }

    /// A slot for a new TCP connection from `ip`, or None at the per-IP cap.
    pub(super) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        if !self.exempt(ip) {
            let mut conns = self
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !conns.try_open(source_key(ip)) {
                return None;
            }
        }
        Some(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// A TCP connection counted against its source; uncounted when dropped.
#[derive(Debug)]
pub(super) struct ConnSlot {
    limits: Arc<SourceLimits>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if !self.limits.exempt(self.ip) {
            self.limits
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .close(source_key(self.ip));
        }
    }
}
