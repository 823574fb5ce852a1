//! The SIP wire layer: framing, our own parser over `bytes::Bytes`,
//! response building, digest authentication, star codes, SDP, and the
//! bodies of the event packages phone keys subscribe to (feature keys,
//! dialog, presence) with the lamp logic behind them. It knows nothing of
//! the engine or sockets.

pub mod agent_view;
pub mod auth;
pub mod blf;
pub mod build;
pub mod consts;
pub mod dialog_info;
pub mod feature_sync;
pub mod framing;
pub mod message;
pub mod pidf;
pub mod sdp;
pub mod star_code;
pub mod values;

pub use consts::{ACCEPT, ALLOW, ALLOW_EVENTS, SERVER};
