//! Per-source admission: each source IP has a token bucket of messages
//! (over it, messages are dropped silently: a UDP source address may be
//! forged, and answering would reflect the flood at it) and a cap on open
//! TCP connections. An IPv6 source is its /64. Sources in
//! `limits.exempt_sources`, trusted proxies, and loopback sources (unless
//! `limits.exempt_loopback = false`: traffic from 127.0.0.0/8 or ::1 comes
//! from this host) skip both. Every limit can be changed in place (a
//! configuration reload).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
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
    exempt: RwLock<Exempt>,
}

/// The sources that skip the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exempt {
    /// Addresses and networks (`limits.exempt_sources` and the trusted proxies).
    pub nets: Vec<IpNet>,
    /// Loopback sources (`limits.exempt_loopback`).
    pub loopback: bool,
}

impl SourceLimits {
    /// Limits with `rate` per source, `per_ip` TCP connections per source,
    /// and `exempt` sources that skip both.
    pub fn new(rate: RateLimits, per_ip: u32, exempt: Exempt) -> Self {
        Self {
            rate: Mutex::new(RateLimiter::new(rate)),
            conns: Mutex::new(ConnLimiter::new(per_ip)),
            exempt: RwLock::new(exempt),
        }
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let e = self
            .exempt
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (e.loopback && ip.to_canonical().is_loopback()) || e.nets.iter().any(|n| n.contains(ip))
    }

    /// New limits in place (a configuration reload): buckets and open
    /// connections are kept and measured against the new values.
    pub fn update(&self, per_sec: u32, burst: u32, per_ip: u32, exempt: Exempt) {
        self.rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_limits(per_sec, burst);
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_per_ip(per_ip);
        *self
            .exempt
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = exempt;
    }

    /// Logs, once per [`LOG_INTERVAL`] per source, the messages dropped
    /// since its last line (the first drop is logged at once by
    /// [`Self::admit`]; this reports the rest even if the source stops).
    pub fn report_drops(&self) {
        let dropped = self
            .rate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_unlogged(Instant::now());
        for (source, n) in dropped {
            log_drops(source, "UDP/TCP", n);
        }
    }

    /// Calls [`Self::report_drops`] every [`LOG_INTERVAL`] until `stop`.
    pub async fn report_every_interval(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(LOG_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.report_drops(),
                () = stop.cancelled() => return,
            }
        }
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
                log_drops(ip, transport, n);
                false
            }
        }
    }

    /// A slot for a new TCP connection from `ip`, or None at the per-IP cap.
    pub(super) fn open(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let counted = !self.exempt(ip);
        if counted {
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
            counted,
        })
    }
}

/// One line for `n` messages from `source` dropped over its rate, naming
/// the keys that change it.
fn log_drops(source: IpAddr, transport: &'static str, n: u64) {
    warn!(%source, transport, dropped = n, "source over its request rate: messages dropped (raise limits.requests_per_sec / limits.request_burst, or list the source in limits.exempt_sources or trusted_proxies)");
}

/// A TCP connection counted against its source; uncounted when dropped.
#[derive(Debug)]
pub(super) struct ConnSlot {
    limits: Arc<SourceLimits>,
    ip: IpAddr,
    /// Counted against the per-IP cap (not exempt when opened).
    counted: bool,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if self.counted {
            self.limits
                .conns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .close(source_key(self.ip));
        }
    }
}
