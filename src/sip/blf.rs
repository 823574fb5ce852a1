//! Busy Lamp Field keys on the agent's own star codes (issue 14): which
//! lamp a subscribed address stands for, whether it is off, lit or
//! blinking for the agent's per-queue states, what the toggle codes do,
//! and the `dialog` / `presence` bodies that show it. Pure.
//!
//! The lamp table (`q` = the queue in the address; without one, any queue):
//!
//! | address | lit while | blinks while |
//! |---|---|---|
//! | `*38`, `*38<q>`, toggle `*45`, `*45<q>` | logged in | a pending logout (or login) |
//! | `*36`, `*36<q>`, toggle `*46`, `*46<q>` | READY (also on a call taken while READY) | WRAP_UP; a pending change to or from READY |
//! | `*37`, `*37<q>` | NOT_READY (any reason) | WRAP_UP; a pending change to or from NOT_READY |
//! | `*37*<r>`, `*37<q>*<r>` | NOT_READY with reason `r` | a pending change to or from it |
//!
//! Blinking means "about to change, or in after-call work". Without a
//! queue the lamp is lit if some queue lights it steadily, else blinks if
//! some queue blinks. `*39` is no lamp.
//!
//! On the wire (phones' reading of RFC 4235 and of Asterisk's BLF PIDF,
//! see `sip-fixtures/feature-keys/SOURCES.md`): lit = dialog `confirmed`,
//! PIDF `closed`; blinking = dialog `early` with direction `recipient`
//! (ringing), PIDF `closed`; off = dialog `terminated`, PIDF `open`.

use super::agent_view::{QueueState, QueueView};
use super::dialog_info::{self, Dialog, DialogState, DocState};
use super::pidf::{self, Basic};
use super::star_code::{Action, Codes, StarCodeParser};

/// The `dialog` element id of every lamp document (stable for the
/// subscription, as RFC 4235 §4.1.1 asks of a dialog's id).
pub const LAMP_DIALOG_ID: &str = "facd-lamp";

/// The toggle codes (`[codes] toggle_login`, `toggle_ready`), each with an
/// optional queue like the other codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToggleCodes {
    /// Default `*45`: log in if logged out there, else log out.
    pub login: String,
    /// Default `*46`: READY ↔ NOT_READY.
    pub ready: String,
}

impl Default for ToggleCodes {
    fn default() -> Self {
        Self {
            login: "*45".into(),
            ready: "*46".into(),
        }
    }
}

impl ToggleCodes {
    /// Two of the six codes where one is a prefix of the other (or equal),
    /// which configuration validation must refuse (SPEC §3: a code must not
    /// be a prefix of another). Empty codes are disabled and ignored.
    pub fn clash(&self, codes: &Codes) -> Option<(String, String)> {
        let all = [
            &codes.ready,
            &codes.not_ready,
            &codes.login,
            &codes.logout,
            &self.login,
            &self.ready,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                if !a.is_empty()
                    && !b.is_empty()
                    && (a.starts_with(b.as_str()) || b.starts_with(a.as_str()))
                {
                    return Some(((*a).clone(), (*b).clone()));
                }
            }
        }
        None
    }
}

/// What a lamp stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LampKind {
    /// Logged in (`*38`, `*45`).
    LoggedIn,
    /// READY (`*36`, `*46`).
    Ready,
    /// NOT_READY (`*37`), with this reason only (`*37*<r>`).
    NotReady {
        /// The reason code the address names.
        reason: Option<u32>,
    },
}

impl LampKind {
    /// Whether a queue in `state` lights the lamp.
    fn holds(self, state: QueueState) -> bool {
        match (self, state) {
            (Self::LoggedIn, s) => s.logged_in(),
            (Self::Ready, s) => s == QueueState::Ready,
            (Self::NotReady { reason: None }, QueueState::NotReady { .. }) => true,
            (Self::NotReady { reason: Some(r) }, QueueState::NotReady { reason }) => {
                reason == Some(r)
            }
            (Self::NotReady { .. }, _) => false,
        }
    }

    /// WRAP_UP sits between READY and NOT_READY: their lamps blink.
    fn blinks_in_wrap_up(self) -> bool {
        matches!(self, Self::Ready | Self::NotReady { reason: None })
    }
}

/// A lamp: the state of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lamp {
    /// Dark.
    Off,
    /// Blinking (shown as ringing).
    Blink,
    /// Lit.
    On,
}

impl Lamp {
    /// The dialog state phones show this lamp for.
    pub fn dialog_state(self) -> DialogState {
        match self {
            Self::Off => DialogState::Terminated,
            Self::Blink => DialogState::Early,
            Self::On => DialogState::Confirmed,
        }
    }

    /// The PIDF `basic` phones show this lamp for: lit is "busy", i.e.
    /// `closed`, as in Asterisk's BLF presence documents.
    pub fn basic(self) -> Basic {
        match self {
            Self::Off => Basic::Open,
            Self::Blink | Self::On => Basic::Closed,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Blink => "changing",
            Self::On => "on",
        }
    }
}

/// The lamp a subscribed star-code address stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LampTarget {
    /// What it shows.
    pub kind: LampKind,
    /// One queue, or any of the agent's queues.
    pub queue: Option<String>,
    /// A toggle code (`*45`, `*46`): dialling it flips the state it shows.
    pub toggle: bool,
}

impl LampTarget {
    /// The lamp for the agent's per-queue states (see the module table).
    pub fn lamp(&self, queues: &[QueueView<'_>]) -> Lamp {
        let mut lamps = queues
            .iter()
            .filter(|q| self.queue.as_deref().is_none_or(|want| q.queue == want))
            .map(|q| self.queue_lamp(q));
        match self.queue {
            Some(_) => lamps.next().unwrap_or(Lamp::Off),
            None => lamps.max().unwrap_or(Lamp::Off),
        }
    }

    fn queue_lamp(&self, q: &QueueView<'_>) -> Lamp {
        let lit = self.kind.holds(q.state);
        let flips = q.pending.is_some_and(|p| self.kind.holds(p) != lit);
        let after_call = q.state == QueueState::WrapUp && self.kind.blinks_in_wrap_up();
        if flips || after_call {
            Lamp::Blink
        } else if lit {
            Lamp::On
        } else {
            Lamp::Off
        }
    }

    /// What dialling a toggle code does now, over [`Self::queue`] (or all
    /// the agent's queues), judged on the state each queue will have once
    /// its pending change is applied: `*45` logs in if logged out there
    /// (everywhere, without a queue), else logs out; `*46` makes NOT_READY
    /// if READY there (anywhere), else READY. `None` for a plain code.
    pub fn toggle_action(&self, queues: &[QueueView<'_>]) -> Option<Action> {
        if !self.toggle {
            return None;
        }
        let mut states = queues
            .iter()
            .filter(|q| self.queue.as_deref().is_none_or(|want| q.queue == want))
            .map(|q| q.pending.unwrap_or(q.state));
        Some(match self.kind {
            LampKind::LoggedIn if states.any(QueueState::logged_in) => Action::Logout,
            LampKind::LoggedIn => Action::Login,
            LampKind::Ready if states.any(|s| s == QueueState::Ready) => Action::NotReady,
            LampKind::Ready => Action::Ready,
            LampKind::NotReady { .. } => return None,
        })
    }

    /// A short human text for the lamp, e.g. `Ready in 8000: on`, for the
    /// PIDF note.
    pub fn note(&self, lamp: Lamp) -> String {
        let what = match self.kind {
            LampKind::LoggedIn => "Logged in",
            LampKind::Ready => "Ready",
            LampKind::NotReady { .. } => "Not ready",
        };
        let mut s = what.to_string();
        if let Some(q) = &self.queue {
            s.push_str(if self.kind == LampKind::LoggedIn {
                " to "
            } else {
                " in "
            });
            s.push_str(q);
        }
        if let LampKind::NotReady { reason: Some(r) } = self.kind {
            s.push_str(&format!(" (reason {r})"));
        }
        s.push_str(": ");
        s.push_str(lamp.word());
        s
    }
}

/// The user part is not a lamp address (`*39`, or not a star code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a lamp address")]
pub struct NotALamp;

/// Recognises lamp addresses: the configured star codes (with
/// [`StarCodeParser`]'s grammar) and the toggle codes.
#[derive(Debug, Clone)]
pub struct LampParser {
    codes: StarCodeParser,
    toggles: StarCodeParser,
}

impl LampParser {
    /// A parser for `codes` and `toggles` (kept prefix-free by
    /// configuration validation, see [`ToggleCodes::clash`]; the star codes
    /// are tried first).
    pub fn new(codes: Codes, toggles: ToggleCodes) -> Self {
        Self::from_parser(StarCodeParser::new(codes), toggles)
    }

    /// The same, over an existing star-code parser.
    pub fn from_parser(codes: StarCodeParser, toggles: ToggleCodes) -> Self {
        // The toggles reuse the star-code grammar: `*45[q]` parses like a
        // login code, `*46[q]` like a ready code, neither takes a reason.
        let toggles = StarCodeParser::new(Codes {
            ready: toggles.ready,
            not_ready: String::new(),
            login: toggles.login,
            logout: String::new(),
        });
        Self { codes, toggles }
    }

    /// Parses a decoded Request-URI user part of a SUBSCRIBE (or of an
    /// INVITE to a toggle code).
    pub fn parse(&self, user: &[u8]) -> Result<LampTarget, NotALamp> {
        if let Ok(code) = self.codes.parse(user) {
            let kind = match code.action {
                Action::Login => LampKind::LoggedIn,
                Action::Ready => LampKind::Ready,
                Action::NotReady => LampKind::NotReady {
                    reason: code.reason,
                },
                Action::Logout => return Err(NotALamp),
            };
            return Ok(LampTarget {
                kind,
                queue: code.queue,
                toggle: false,
            });
        }
        let code = self.toggles.parse(user).map_err(|_| NotALamp)?;
        let kind = match code.action {
            Action::Login => LampKind::LoggedIn,
            Action::Ready => LampKind::Ready,
            Action::NotReady | Action::Logout => return Err(NotALamp),
        };
        Ok(LampTarget {
            kind,
            queue: code.queue,
            toggle: true,
        })
    }
}

/// The `dialog` NOTIFY body for `lamp` (always `state="full"`, one dialog;
/// see [`dialog_info::body`] for `version`).
pub fn dialog_body(entity: &str, version: u32, lamp: Lamp) -> String {
    let direction = (lamp == Lamp::Blink).then_some(dialog_info::Direction::Recipient);
    let dialog = Dialog {
        id: LAMP_DIALOG_ID,
        state: lamp.dialog_state(),
        direction,
    };
    dialog_info::body(entity, version, DocState::Full, Some(&dialog))
}

/// The `presence` NOTIFY body for `lamp` of `target`.
pub fn pidf_body(entity: &str, target: &LampTarget, lamp: Lamp) -> String {
    pidf::body(entity, lamp.basic(), Some(&target.note(lamp)))
}

#[cfg(test)]
mod tests;
