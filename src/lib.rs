//! facd: a SIP feature-access-code server for call-centre agents.
//!
//! Agents dial `*36`/`*37`/`*38`/`*39` (optionally with a queue and a
//! not-ready reason); facd applies the code to the agent's per-queue state
//! and answers in SIP. Pure cores, thin shells; from the wire inwards:
//!
//! - [`transport`] (shell) reads UDP datagrams and TCP streams, frames and
//!   parses them ([`sip`]: our own parser, framing, response builder, digest
//!   auth, SDP, star codes, feature-key XML), applies the per-source
//!   admission limits, hands whole messages to the UAS loop, and sends what
//!   the UAS hands out (opening a connection for an in-dialog request whose
//!   connection has closed).
//! - [`uas`] (pure) is the SIP user-agent server as a sans-io state machine:
//!   `(now, message)` and journal completions in; transmits, journal
//!   orders, media orders, durable events and deadlines out. It passes
//!   requests through the pure [`transaction`] layer, authenticates, turns
//!   star codes and `SetAgentState` bodies into [`engine`] commands, keeps
//!   answered calls and phone subscriptions.
//! - [`engine`] (pure) is the agent-state machine of SPEC §2.
//! - [`server`] (shell) binds, runs the UAS on one task with the clock, the
//!   [`store`] (group commit, snapshots), the [`media`] sender and the
//!   [`events`] hub, and stops in order; it serves `GET /metrics` and
//!   reloads the configuration in place (SIGHUP, `POST /admin/reload`).
//! - [`api`] (REST, axum, and [`api::wsi`], the PortSIP WSI WebSocket) reaches the UAS
//!   only through [`events::CoreHandle`]; its wallboard and report pages
//!   read the change [`history`], which the server appends every durable
//!   event to (one file per day, kept `storage.history_days`).
//!
//! The engine, transactions and UAS read no clock, open no socket and draw
//! no entropy: time and seeds are passed in, outputs are popped.

pub mod api;
pub mod config;
pub mod engine;
pub mod events;
pub mod history;
pub mod limits;
pub mod media;
pub mod sd_notify;
pub mod server;
pub mod sip;
pub mod store;
pub mod transaction;
pub mod transport;
pub mod uas;
