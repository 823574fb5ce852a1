//! The SIP wire layer: framing, our own nom parser over `bytes::Bytes`,
//! response building, star codes and SDP. This is the only module that may
//! import `rsip`.

pub mod auth;
pub mod build;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod star_code;
