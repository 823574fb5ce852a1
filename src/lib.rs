//! facd: a SIP feature-access-code server for call-centre agents.
//!
//! Agents dial `*36`/`*37`/`*38`/`*39` (optionally with a queue and a
//! not-ready reason); facd applies the code to the agent's per-queue state
//! and answers in SIP. The shape, from the wire inwards:
//!
//! - [`transport`] reads UDP datagrams and TCP streams, frames and parses them
//!   ([`sip`]: our own parser, framing, response builder, digest auth, SDP,
//!   star codes, feature-key XML), applies the per-source [`limits`], and
//!   hands whole messages to the core over a bounded channel.
//! - [`core`] is the one owner of mutable state, run by one task in
//!   [`server`]: it passes requests through the pure [`transaction`] layer,
//!   answers what needs no agent logic, turns star codes, `SetAgentState`
//!   bodies and API commands into [`engine`] commands, keeps answered calls in
//!   [`dialog`] and phone subscriptions in [`subscription`], and asks the
//!   shell to play the confirmation tone ([`media`]).
//! - [`engine`] is the pure agent-state machine of SPEC §2; every change it
//!   makes is journaled by [`store`] (group commit, snapshots) before its
//!   success answer leaves, and then published on the [`events`] hub.
//! - [`api`] (REST, axum) and [`api::wsi`] (PortSIP WSI WebSocket) reach
//!   the core only through [`events::CoreHandle`].
//!
//! The engine, transactions, dialogs, subscriptions and media pacing read no
//! clock and open no socket: time is passed in, outputs are popped.

pub mod api;
pub mod config;
pub mod core;
pub mod dialog;
pub mod engine;
pub mod events;
pub mod limits;
pub mod media;
pub mod server;
pub mod sip;
pub mod store;
pub mod subscription;
pub mod transaction;
pub mod transport;
