//! The SIP wire layer: framing, our own parser over `bytes::Bytes`,
//! response building, digest authentication, star codes, SDP and the
//! feature-key bodies. It knows nothing of agents, the engine or sockets.

pub mod auth;
pub mod build;
pub mod consts;
pub mod feature_sync;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod star_code;
pub mod values;

pub use consts::{ACCEPT, ALLOW, ALLOW_EVENTS, SERVER};
