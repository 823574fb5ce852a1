//! The frozen reference the fast parser (`facd::sip::message`) is checked
//! against: the nom parser it replaced (`parser.rs`), the owned types that
//! parser produces and the conversion of the fast parser's result to them
//! (`owned.rs`), and the helpers the two once shared (`shared.rs`). Used by
//! `tests/parser_agreement.rs` only; a deliberate change of the fast
//! parser's behaviour must be made here too.

mod owned;
mod parser;
mod shared;

pub(crate) use owned::{from_fast, Message, ParseError};
pub(crate) use parser::{parse_message, version};
