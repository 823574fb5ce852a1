//! The SIP wire layer: framing, our own nom parser over `bytes::Bytes`,
//! response building, digest authentication, star codes, SDP, and the
//! `as-feature-event` bodies of phone feature keys. No rsip:
//! see `message.rs` for why.

pub mod agent_view;
pub mod auth;
pub mod build;
pub mod feature_sync;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod star_code;
