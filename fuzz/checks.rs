//! The properties the fuzz targets check, shared with the regression test
//! that replays sip-fixtures/fuzz/ (tests/fuzz_regressions.rs includes this
//! file), so a crash found by fuzzing is replayed by `cargo test` exactly.
//! Each function panics if its property fails.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use facd::sip::build;
use facd::sip::framing::{Frame, StreamDecoder};
use facd::sip::message::{parse_message, unescape, Message, Response};
use facd::sip::star_code::{Action, Codes, StarCodeParser};

/// What a decoder made of a stream: its frames, then whether it failed.
fn decode_all(chunks: &[&[u8]], max: usize) -> (Vec<Frame>, bool) {
    let mut dec = StreamDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf, max) {
                Ok(Some(f)) => {
                    if let Frame::Message(m) = &f {
                        assert!(m.len() <= max, "frame over the limit");
                        assert!(!m.is_empty(), "empty frame");
                    }
                    frames.push(f);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// TCP framing. Input: one byte for the size limit, one seeding the chunk
/// sizes, then the stream. The `StreamDecoder` fed the stream in chunks of
/// 1–64 bytes must hand over exactly the frames that decoding it whole
/// does, never a frame over the limit, and never panic. A stream that fails
/// whole may fail earlier in pieces (over the limit before its blank line
/// arrived), after the same frames.
pub fn framing(data: &[u8]) {
    let [limit, seed, rest @ ..] = data else {
        return;
    };
    let max = 16 + usize::from(*limit) * 16;
    let mut chunks = Vec::new();
    let (mut s, mut pos) = (u32::from(*seed) | 1, 0);
    while pos < rest.len() {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (s >> 16) as usize % 64;
        let end = (pos + len).min(rest.len());
        chunks.push(&rest[pos..end]);
        pos = end;
    }
    let whole = decode_all(&[rest], max);
    let chunked = decode_all(&chunks, max);
    if whole.1 == chunked.1 {
        assert_eq!(whole.0, chunked.0, "chunking changed the frames");
    } else {
        let n = whole.0.len().min(chunked.0.len());
        assert_eq!(whole.0[..n], chunked.0[..n], "chunking changed the frames");
    }
}

fn reparse(bytes: Bytes, status: u16) -> Response {
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

/// Message parsing and validation: `parse_message` on any octets never
/// panics; a request it accepts can be answered, and that answer parses
/// back as a response with the same Call-ID, CSeq and Vias; credentials in
/// Authorization never panic the digest parser; a refused request is 400
/// or 505 (or dropped), and its error response is a well-formed head.
pub fn parse(data: &[u8]) {
    let src: SocketAddr = "192.0.2.7:5070".parse().unwrap();
    match parse_message(Bytes::copy_from_slice(data)) {
        Ok(Message::Request(req)) => {
            let _ = req.uri.user_unescaped(req.headers.buf());
            let _ = req.uri.params(req.headers.buf()).count();
            for via in &req.base.vias {
                let _ = via.sent_by(req.headers.buf());
            }
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
            assert_eq!(resp.call_id(), req.call_id());
            assert_eq!(resp.base.cseq.seq, req.base.cseq.seq);
            assert_eq!(resp.base.vias.len(), req.base.vias.len());
        }
        Ok(Message::Response(_)) => {}
        Err(e) => {
            assert!(matches!(e.status, 0 | 400 | 505), "status {}", e.status);
            if let Some(ctx) = e.reply {
                assert_ne!(e.status, 0);
                let answer = build::error_response(&ctx, src, e.status, &e.reason);
                assert!(answer.starts_with(b"SIP/2.0 "));
                assert!(answer.windows(4).any(|w| w == b"\r\n\r\n"));
            }
        }
    }
}

/// Star codes: a Request-URI user part, %-decoded as the core does, then
/// parsed. Never panics; what parses is within the grammar (queue 1–10
/// digits, reason 1–4 digits and only on not-ready) and, written back out,
/// parses to the same thing.
pub fn star_code(data: &[u8]) {
    let codes = Codes::default();
    let parser = StarCodeParser::new(codes.clone());
    let user = unescape(data);
    let Ok(sc) = parser.parse(&user) else {
        return;
    };
    if let Some(q) = &sc.queue {
        assert!((1..=10).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_digit()));
    }
    if let Some(r) = sc.reason {
        assert!(r < 10_000);
        assert_eq!(sc.action, Action::NotReady);
    }
    let code = match sc.action {
        Action::Ready => &codes.ready,
        Action::NotReady => &codes.not_ready,
        Action::Login => &codes.login,
        Action::Logout => &codes.logout,
    };
    let mut again = code.clone();
    again.push_str(sc.queue.as_deref().unwrap_or(""));
    if let Some(r) = sc.reason {
        // The reason is written as a number (leading zeros are not kept).
        again.push_str(&format!("*{r}"));
    }
    assert_eq!(parser.parse(again.as_bytes()), Ok(sc));
}
