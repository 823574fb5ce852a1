pub mod build;
pub mod framing;
pub mod message;
pub mod sdp;
pub mod star_code;
