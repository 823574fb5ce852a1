//! SIP digest authentication for a UAS (RFC 3261 §22, RFC 7616, RFC 8760).

mod client;
pub mod digest;
mod parse;

pub use client::{parse_challenge, Challenge};
pub use digest::Algorithm;
pub use parse::{parse_credentials, AuthError, Credentials, Qop};

/// `"` + value with `"` and `\` escaped + `"` (RFC 3261 §25.1 quoted-string).
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
