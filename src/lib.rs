//! facd — a SIP feature-access-code service for call-centre agents.
//!
//! Agents dial star codes (`*36` ready, `*37` not ready, `*38` login,
//! `*39` logout, optionally followed by a queue number). facd parses the
//! INVITE with its own nom-based SIP parser ([`sip`]), runs it through pure
//! RFC 3261 server transactions ([`transaction`]), applies the code to the
//! pure agent-state machine ([`engine`]) and answers in SIP, keeping the
//! answered call alive until the caller's ACK and then hanging up
//! ([`dialog`]).
//!
//! Everything that touches sockets, the clock or tokio lives in the thin
//! async shell: [`server`] (listeners, the core task, shutdown) and
//! [`transport`] (UDP and TCP readers and writers). The pure parts take time
//! as an argument and return their outputs as values, so they are tested
//! without sockets on a virtual clock.

pub mod config;
pub mod core;
pub mod dialog;
pub mod engine;
pub mod server;
pub mod sip;
pub mod transaction;
pub mod transport;
