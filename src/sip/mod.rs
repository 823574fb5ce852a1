//! The SIP wire layer: framing, our own parser over `bytes::Bytes`,
//! response building, digest authentication, star codes, SDP and the
//! feature-key bodies. It knows nothing of agents, the engine or sockets.

pub mod auth;
pub mod build;
pub mod feature_sync;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod star_code;
pub mod values;

/// The methods facd implements (the `Allow` header, RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE";
/// The event packages facd notifies (RFC 6665 §8.2.2 `Allow-Events`).
pub const ALLOW_EVENTS: &str = feature_sync::EVENT;
/// The bodies facd understands (the `Accept` header, RFC 3261 §20.1).
pub const ACCEPT: &str = "application/sdp";
/// The `Server` and `User-Agent` header.
pub const SERVER: &str = concat!("facd/", env!("CARGO_PKG_VERSION"));
