pub mod config;
pub mod core;
pub mod dialog;
pub mod engine;
pub mod server;
pub mod sip;
pub mod transaction;
pub mod transport;
