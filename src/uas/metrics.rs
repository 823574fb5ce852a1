//! What the UAS counts for monitoring, as plain numbers (no exporter, no
//! atomics: the UAS runs on one task): responses by request method and
//! status, star codes by action and outcome, failed authentications and
//! bans. The shell reads them ([`super::Uas::metrics`]) and exports them
//! in the Prometheus format (`src/server/metrics.rs`).

use ahash::AHashMap;

use crate::engine::{Command, Rejection};
use crate::sip::message::Method;

/// The UAS's counters. Label values come from fixed sets (an unknown
/// method is `"other"`), so a scanner cannot grow the tables.
#[derive(Debug, Default, Clone)]
pub struct UasMetrics {
    /// Final and provisional responses sent, by (request method, status);
    /// retransmissions of a response are not counted again.
    pub responses: AHashMap<(&'static str, u16), u64>,
    /// Star codes (SIP INVITEs) by (action, outcome): `"applied"` or the
    /// refusal.
    pub star_codes: AHashMap<(&'static str, &'static str), u64>,
    /// Digest authentications that failed (wrong password, unknown user).
    pub auth_failures: u64,
    /// Sources banned for failing too often.
    pub auth_bans: u64,
}

impl UasMetrics {
    /// One response to a `method` request.
    pub(super) fn response(&mut self, method: &Method, status: u16) {
        *self
            .responses
            .entry((method_label(method), status))
            .or_default() += 1;
    }

    /// One star code: `cmd` applied (`Ok`) or refused.
    pub(super) fn star_code(&mut self, cmd: &Command, outcome: Result<(), Rejection>) {
        let outcome = match outcome {
            Ok(()) => "applied",
            Err(r) => rejection_label(r),
        };
        *self
            .star_codes
            .entry((action_label(cmd), outcome))
            .or_default() += 1;
    }
}

/// Transactions, dialogs and subscriptions held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InFlight {
    /// Server transactions (including finished ones lingering for Timer J/L).
    pub transactions: usize,
    /// Answered star-code calls.
    pub dialogs: usize,
    /// Feature-key subscriptions.
    pub subscriptions: usize,
}

impl<F: Clone, W> super::Uas<F, W> {
    /// What is held now (gauges).
    pub fn in_flight(&self) -> InFlight {
        InFlight {
            transactions: self.txs.len(),
            dialogs: self.dialogs.len(),
            subscriptions: self.subs.len(),
        }
    }
}

/// A request method as a label: the methods facd knows by name, else `"other"`.
pub fn method_label(m: &Method) -> &'static str {
    match m {
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Bye => "BYE",
        Method::Cancel => "CANCEL",
        Method::Options => "OPTIONS",
        Method::Subscribe => "SUBSCRIBE",
        Method::Notify => "NOTIFY",
        Method::Register => "REGISTER",
        Method::Refer => "REFER",
        Method::Info => "INFO",
        Method::Update => "UPDATE",
        Method::Prack => "PRACK",
        Method::Message => "MESSAGE",
        Method::Publish => "PUBLISH",
        Method::Extension(_) => "other",
    }
}

fn action_label(cmd: &Command) -> &'static str {
    match cmd {
        Command::Login { .. } => "login",
        Command::Logout { .. } => "logout",
        Command::Ready { .. } => "ready",
        Command::NotReady { .. } => "not_ready",
        Command::WrapUp { .. } => "wrap_up",
        _ => "call",
    }
}

fn rejection_label(r: Rejection) -> &'static str {
    match r {
        Rejection::UnknownAgent => "unknown_agent",
        Rejection::UnknownQueue => "unknown_queue",
        Rejection::NotAMember => "not_a_member",
        Rejection::NotLoggedIn => "not_logged_in",
        Rejection::UnknownReason => "unknown_reason",
        Rejection::UnknownCall => "unknown_call",
        Rejection::DuplicateCall => "duplicate_call",
        Rejection::NotReadyInQueue => "not_ready_in_queue",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        let mut m = UasMetrics::default();
        m.response(&Method::Invite, 200);
        m.response(&Method::Invite, 200);
        m.response(&Method::Extension("FOO".into()), 501);
        m.response(&Method::Extension("BAR".into()), 501);
        assert_eq!(m.responses[&("INVITE", 200)], 2);
        assert_eq!(m.responses[&("other", 501)], 2);
        let cmd = Command::Login {
            agent: "1001".into(),
            target: crate::engine::Target::All,
        };
        m.star_code(&cmd, Ok(()));
        m.star_code(&cmd, Err(Rejection::UnknownQueue));
        assert_eq!(m.star_codes[&("login", "applied")], 1);
        assert_eq!(m.star_codes[&("login", "unknown_queue")], 1);
    }
}
