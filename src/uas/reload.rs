//! A new configuration for the running UAS (a reload without restart): the
//! engine's model (agents, queues, memberships, reasons; every agent keeps
//! its state, see [`crate::engine::Engine::reload`]), the star codes, the
//! agents' secrets, the trusted proxies, the failed-authentication limits
//! and the transaction cap. Calls, subscriptions and transactions in
//! progress are untouched. The logouts a reload causes are published like
//! any event.

use ahash::AHashMap;
use tracing::info;

use super::{journal, Now, Uas};
use crate::engine::{Model, Reloaded};
use crate::limits::{AuthLimits, IpNet};
use crate::sip::auth::Secret;
use crate::sip::star_code::StarCodeParser;

/// What a reload replaces.
pub struct Reload {
    /// Agents, queues, memberships, reasons.
    pub model: Model,
    /// The star codes.
    pub codes: StarCodeParser,
    /// Each agent's password or HA1 (used when digest authentication is on).
    pub secrets: AHashMap<String, Secret>,
    /// `[[trusted_proxies]]`.
    pub proxies: Vec<IpNet>,
    /// `limits.auth_failures`, `auth_window_secs`, `auth_ban_secs`.
    pub auth: AuthLimits,
    /// `limits.max_transactions`.
    pub max_transactions: usize,
}

impl<F: Clone, W> Uas<F, W> {
    /// Applies a new configuration in place (see the module documentation).
    pub fn reload(&mut self, now: Now, r: Reload) -> Reloaded {
        self.codes = r.codes;
        if let Some(id) = self.identity.as_mut() {
            id.secrets = r.secrets;
            id.guard.set_limits(r.auth);
        }
        self.proxies = r.proxies;
        self.cfg.max_transactions = r.max_transactions;
        let reloaded = self.engine.reload(r.model, now.wall);
        for ev in &reloaded.events {
            info!(agent = %ev.agent, queue = %ev.queue, from = ev.from.as_str(), to = ev.to.as_str(), cause = "config", "state changed");
        }
        // The logouts change nothing the journal holds (the memberships are
        // gone); they are published as events, in order with the others.
        self.commit(
            now,
            journal::Reply::None,
            reloaded.events.clone(),
            Vec::new(),
        );
        reloaded
    }
}
