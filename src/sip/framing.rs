//! Framing: where one SIP message ends (RFC 3261 §18.3).
//!
//! UDP: one datagram is one message (the parser cuts it at Content-Length).
//! TCP: check, then cut: find the blank line, read Content-Length (or `l`),
//! wait for the body, and hand over exactly one message; `Ok(None)` means
//! "not enough bytes yet". CRLF keep-alives (RFC 5626 §3.5.1): a double-CRLF
//! ping is reported so the transport answers one CRLF pong; a lone CRLF
//! between messages is skipped. Errors close only their own connection.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;

/// One unit of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping: answer with one CRLF.
    Ping,
}

/// Why a stream (or datagram) cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Over the configured size.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// A stream message without Content-Length (required on streams, §18.3).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// Content-Length not a non-negative number, or given twice.
    #[error("bad Content-Length")]
    BadContentLength,
}

impl FramingError {
    /// The status that would describe it (513 Message Too Large, §21.5.14).
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge(_) => 513,
            _ => 400,
        }
    }
}

/// A datagram: `None` for a keep-alive (only CR/LF), the datagram otherwise.
pub fn datagram(buf: Bytes, max_message_bytes: usize) -> Result<Option<Bytes>, FramingError> {
    if buf.len() > max_message_bytes {
        return Err(FramingError::TooLarge(max_message_bytes));
    }
    if buf.iter().all(|c| *c == b'\r' || *c == b'\n') {
        return Ok(None);
    }
    Ok(Some(buf))
}

/// Incremental stream framer: remembers how far it has looked for the blank
/// line, so a message trickling in a byte at a time is scanned once.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    scanned: usize,
}

impl StreamDecoder {
    /// A fresh decoder for one connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next frame in `buf`, consuming it; `Ok(None)` if more bytes are needed.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_message_bytes: usize,
    ) -> Result<Option<Frame>, FramingError> {
        // Keep-alives between messages.
        loop {
            if buf.starts_with(b"\r\n\r\n") {
                buf.advance(4);
                self.scanned = 0;
                return Ok(Some(Frame::Ping));
            }
            if buf.starts_with(b"\r\n") {
                match buf.get(2) {
                    None => return Ok(None),
                    Some(b'\r') if buf.len() < 4 => return Ok(None),
                    Some(b'\r') => {}
                    Some(_) => {
                        buf.advance(2);
                        self.scanned = 0;
                        continue;
                    }
                }
            }
            if buf.as_ref() == b"\r" {
                return Ok(None);
            }
            break;
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let from = self.scanned.saturating_sub(3);
        let Some(p) = memmem::find(&buf[from..], b"\r\n\r\n").map(|p| p + from) else {
            self.scanned = buf.len();
            if buf.len() > max_message_bytes {
                return Err(FramingError::TooLarge(max_message_bytes));
            }
            return Ok(None);
        };
        self.scanned = p;
        let head_len = p + 4;
        let length = content_length(&buf[..p])?;
        let total = head_len + length;
        if total > max_message_bytes {
            return Err(FramingError::TooLarge(max_message_bytes));
        }
        if buf.len() < total {
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(Frame::Message(buf.split_to(total).freeze())))
    }
}

/// One-shot helper over a fresh decoder (for tests and simple callers).
pub fn decode_stream(
    buf: &mut BytesMut,
    max_message_bytes: usize,
) -> Result<Option<Frame>, FramingError> {
    StreamDecoder::new().decode(buf, max_message_bytes)
}

/// The Content-Length (long or compact name, any case, whitespace before
/// the colon) of a head; exactly one is required on a stream.
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let mut found = None;
    for line in head.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let n = value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if found.replace(n).is_some() {
            return Err(FramingError::BadContentLength);
        }
    }
    found.ok_or(FramingError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    fn feed(d: &mut StreamDecoder, buf: &mut BytesMut, bytes: &[u8]) -> Vec<Frame> {
        buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.decode(buf, 65536).unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn split_head_and_split_body() {
        for cut in 1..MSG.len() {
            let (mut d, mut buf) = (StreamDecoder::new(), BytesMut::new());
            assert!(feed(&mut d, &mut buf, &MSG[..cut]).is_empty(), "cut {cut}");
            assert_eq!(
                feed(&mut d, &mut buf, &MSG[cut..]),
                [Frame::Message(Bytes::from_static(MSG))]
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_at_a_time() {
        let (mut d, mut buf) = (StreamDecoder::new(), BytesMut::new());
        let mut frames = Vec::new();
        for b in MSG.iter().chain(MSG) {
            frames.extend(feed(&mut d, &mut buf, &[*b]));
        }
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn two_messages_in_one_read_with_keepalives() {
        let mut all = MSG.to_vec();
        all.extend_from_slice(b"\r\n\r\n");
        all.extend_from_slice(MSG);
        all.extend_from_slice(b"\r\n");
        all.extend_from_slice(MSG);
        let (mut d, mut buf) = (StreamDecoder::new(), BytesMut::new());
        let frames = feed(&mut d, &mut buf, &all);
        let m = Frame::Message(Bytes::from_static(MSG));
        assert_eq!(frames, [m.clone(), Frame::Ping, m.clone(), m]);
    }

    #[test]
    fn ping_waits_for_four_bytes() {
        let (mut d, mut buf) = (StreamDecoder::new(), BytesMut::new());
        assert!(feed(&mut d, &mut buf, b"\r\n").is_empty());
        assert!(feed(&mut d, &mut buf, b"\r").is_empty());
        assert_eq!(feed(&mut d, &mut buf, b"\n"), [Frame::Ping]);
    }

    #[test]
    fn content_length_rules() {
        let cases: [(&[u8], FramingError); 4] = [
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n",
                FramingError::MissingContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                FramingError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nx",
                FramingError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1x\r\n\r\nx",
                FramingError::BadContentLength,
            ),
        ];
        for (m, e) in cases {
            let mut buf = BytesMut::from(m);
            assert_eq!(decode_stream(&mut buf, 65536), Err(e));
        }
        let mut buf = BytesMut::from(&b"X sip:a SIP/2.0\r\ncontent-LENGTH  :  2\r\n\r\nab"[..]);
        assert!(matches!(
            decode_stream(&mut buf, 65536),
            Ok(Some(Frame::Message(_)))
        ));
    }

    #[test]
    fn oversize() {
        let mut buf = BytesMut::from(&b"OPTIONS sip:a@b SIP/2.0\r\nl: 100000\r\n\r\n"[..]);
        assert_eq!(
            decode_stream(&mut buf, 65536),
            Err(FramingError::TooLarge(65536))
        );
        let mut buf = BytesMut::from(&vec![b'a'; 70_000][..]);
        assert_eq!(
            decode_stream(&mut buf, 65536),
            Err(FramingError::TooLarge(65536))
        );
        assert_eq!(FramingError::TooLarge(1).status(), 513);
    }

    #[test]
    fn datagrams() {
        assert_eq!(datagram(Bytes::from_static(b"\r\n\r\n"), 100), Ok(None));
        assert_eq!(
            datagram(Bytes::from_static(b"x"), 100),
            Ok(Some(Bytes::from_static(b"x")))
        );
        assert_eq!(
            datagram(Bytes::from(vec![b'x'; 101]), 100),
            Err(FramingError::TooLarge(100))
        );
    }
}
