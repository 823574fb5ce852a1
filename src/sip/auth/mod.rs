//! SIP digest authentication for a UAS (RFC 3261 §22, RFC 7616, RFC 8760).

pub mod digest;

pub use digest::Algorithm;
