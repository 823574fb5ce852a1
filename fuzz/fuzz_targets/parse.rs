//! Message parsing and validation: `parse_message` on any octets never
//! panics; a request it accepts can be answered, and the answer facd would
//! send parses back as a response with the same status, Call-ID and CSeq;
//! a refused request with a reply context gets an error response that
//! parses too.
#![no_main]

use std::net::SocketAddr;

use bytes::Bytes;
use facd::sip::build;
use facd::sip::message::{parse_message, Message};
use libfuzzer_sys::fuzz_target;

fn reparse(bytes: Bytes, status: u16) -> facd::sip::message::Response {
    match parse_message(bytes.clone()) {
        Ok(Message::Response(r)) => {
            assert_eq!(r.status, status);
            *r
        }
        other => panic!(
            "our own answer does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = "192.0.2.7:5070".parse().unwrap();
    match parse_message(Bytes::copy_from_slice(data)) {
        Ok(Message::Request(req)) => {
            let _ = req.uri.user_unescaped();
            for (name, value) in req.headers.iter() {
                let _ = (name.len(), value.len());
            }
            // Scanners send broken credentials: parsing them never panics.
            for value in req.headers.get_all("Authorization") {
                let _ = facd::sip::auth::parse_credentials(&value);
            }
            let answer = build::response(&req, src, 404, "Not Found")
                .to_tag("fuzz")
                .build();
            let resp = reparse(answer, 404);
            assert_eq!(resp.base.call_id, req.base.call_id);
            assert_eq!(resp.base.cseq.seq, req.base.cseq.seq);
            assert_eq!(resp.base.vias.len(), req.base.vias.len());
        }
        Ok(Message::Response(_)) => {}
        Err(e) => {
            assert!(matches!(e.status, 0 | 400 | 505), "status {}", e.status);
            if let Some(ctx) = e.reply {
                assert_ne!(e.status, 0);
                let answer = build::error_response(&ctx, src, e.status, &e.reason);
                // The answer copies what it could read; it must at least
                // be a message with a status line and a blank line.
                assert!(answer.starts_with(b"SIP/2.0 "));
                assert!(answer.windows(4).any(|w| w == b"\r\n\r\n"));
            }
        }
    }
});
