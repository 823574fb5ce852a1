//! TCP framing: the `StreamDecoder` fed the input in fuzzer-chosen chunks
//! must produce exactly the frames (and the error, if any) that decoding
//! the whole input at once produces, never panic, and never hand over a
//! frame larger than the limit.
#![no_main]

use bytes::BytesMut;
use facd::sip::framing::{Frame, StreamDecoder};
use libfuzzer_sys::fuzz_target;

/// What a decoder made of a stream: its frames, then whether it failed.
fn run(chunks: &[&[u8]], max: usize) -> (Vec<Frame>, bool) {
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

fuzz_target!(|data: &[u8]| {
    // Header: 1 byte for the size limit, 1 byte seeding the chunk sizes.
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
    let whole = run(&[rest], max);
    let chunked = run(&chunks, max);
    if whole.1 == chunked.1 {
        assert_eq!(whole.0, chunked.0, "chunking changed the frames");
    } else {
        // A stream that fails whole may fail earlier in pieces (e.g. over
        // the limit before its blank line arrived), never later, and never
        // after handing over different frames.
        let n = whole.0.len().min(chunked.0.len());
        assert_eq!(whole.0[..n], chunked.0[..n], "chunking changed the frames");
    }
});
