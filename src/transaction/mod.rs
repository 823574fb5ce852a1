//! RFC 3261 §17 transactions, sans-io: server transactions (INVITE with
//! RFC 6026's Accepted state, and non-INVITE) and the non-INVITE client
//! transaction facd uses for its own BYEs.
//!
//! No sockets, no clock, no tokio: time comes in as `Instant` arguments,
//! timers are data (deadline sets and heaps), outputs are popped by the shell
//! with `poll_transmit()` / `poll_event()`, and `poll_timeout()` says when to
//! call `handle_timeout()` next. The peer type `P` is the shell's opaque
//! "where to send"; keys are plain bytes so this layer knows nothing of the
//! parser.

mod client;
mod server;
mod timer;

pub use client::{ClientEvent, ClientTransactions, ClientTxId};
pub use server::{KeyParts, Received, RequestKind, ServerEvent, ServerTransactions, TxId};
pub use timer::{Timer, TimerConfig};
