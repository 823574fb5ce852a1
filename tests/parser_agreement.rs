//! The fast parser (`facd::sip::message`) agrees with the frozen nom
//! reference (`tests/reference/`), accepted or refused with the same
//! reason and the same fields, on every RFC 4475 message and every
//! truncation of it, on single-octet mutations of several messages, on
//! random splices of real header lines and on SIP versions. The grammar's
//! own unit tests are in `src/sip/message/tests.rs`; tests/rfc4475.rs runs
//! the torture messages against the server.

mod reference;

use std::fmt;

use bytes::Bytes;
use facd::sip::message::parse_message;

const INVITE: &str = "INVITE sip:*388000@pbx.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:*388000@pbx.example.com>\r\n\
From: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:1001@10.0.0.5:5062>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\r\n";

/// The benchmark's desk-phone INVITE: 13 headers, a Via with rport, SDP.
const PHONE_INVITE: &str = "INVITE sip:*388000@pbx.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5062;branch=z9hG4bK-524287-1---a8f93b1c2d3e4f50;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@10.20.30.40:5062;transport=udp>\r\n\
To: <sip:*388000@pbx.example.com>\r\n\
From: \"Alice Agent\" <sip:1001@pbx.example.com>;tag=9f2b1c3d\r\n\
Call-ID: 8c2f0e1d9a7b6c5d4e3f2a1b0c9d8e7f@10.20.30.40\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
Content-Length: 10\r\n\r\nv=0\r\ns=-\r\n";

/// Every RFC 4475 torture message (valid and invalid).
fn torture_messages() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-fixtures/rfc4475");
    let mut out = Vec::new();
    for sub in ["valid", "invalid"] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert_eq!(out.len(), 49, "the 49 RFC 4475 messages");
    out
}

/// Both parsers give the same result on `input`, compared in the owned form.
fn agree(input: &[u8], what: &dyn fmt::Display) {
    let fast = reference::from_fast(&parse_message(Bytes::copy_from_slice(input)));
    let careful = reference::parse_message(Bytes::copy_from_slice(input));
    assert_eq!(
        fast,
        careful,
        "{what}: {:?}",
        String::from_utf8_lossy(input)
    );
}

/// The comparison is not vacuous: a message both accept, and one both
/// refuse, come out as such.
#[test]
fn the_owned_form_shows_what_was_parsed() {
    let ok = reference::from_fast(&parse_message(Bytes::from_static(INVITE.as_bytes())));
    assert!(matches!(ok, Ok(reference::Message::Request(_))), "{ok:?}");
    let broken = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
    let careful = reference::parse_message(Bytes::from(broken));
    let Err(reference::ParseError { status, reason, .. }) = careful else {
        panic!("accepted")
    };
    assert_eq!(
        (status, reason.as_str()),
        (400, "Bad Request - CSeq Method Mismatch")
    );
}

/// The octets mutations put in: the grammar's delimiters and some that are
/// never allowed.
const MUTANTS: [u8; 24] = [
    0, b' ', b'\t', b'\r', b'\n', b':', b';', b'=', b'"', b'\\', b'<', b'>', b'%', b',', b'@',
    b'[', b']', b'?', b'/', b'.', b'0', b'a', b'Z', 0xff,
];

#[test]
fn fast_parser_agrees_with_reference_on_rfc4475() {
    for (name, m) in torture_messages() {
        agree(&m, &name);
        // Every truncation (a TCP stream cut anywhere, a short datagram).
        for cut in 0..m.len() {
            agree(&m[..cut], &format_args!("{name} cut at {cut}"));
        }
    }
}

#[test]
fn fast_parser_agrees_with_reference_on_mutations() {
    let mut inputs = vec![
        INVITE.to_owned(),
        PHONE_INVITE.to_owned(),
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;received=::1;rport=5\r\nFrom: sip:x@y;tag=1\r\nTo: \"B\" <sip:a@b:5070;user=phone?x=y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n".to_owned(),
        "OPTIONS sips:u:pw@[2001:db8::1]:5061;lr;maddr=h SIP/2.0\r\nv: SIP / 2.0 / TLS h : 5061 ; branch = z9hG4bK2\r\n  , SIP/2.0/UDP g\r\nf: A B <tel:+1-555;x>;tag=3\r\nt: <urn:x:y>\r\ni: id@h\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n".to_owned(),
    ];
    for (_, m) in torture_messages().into_iter().step_by(8) {
        inputs.push(String::from_utf8_lossy(&m).into_owned());
    }
    for text in &inputs {
        let base = text.as_bytes();
        agree(base, &"unchanged");
        for i in 0..base.len() {
            for b in MUTANTS {
                let mut m = base.to_vec();
                m[i] = b;
                agree(&m, &format_args!("byte {i} set to {b:#x}"));
                m.insert(i, b);
                agree(&m, &format_args!("byte {b:#x} inserted at {i}"));
            }
            let mut m = base.to_vec();
            m.remove(i);
            agree(&m, &format_args!("byte {i} removed"));
        }
    }
}

#[test]
fn fast_parser_agrees_with_reference_on_random_splices() {
    // Deterministic pseudo-random recombinations of real messages' lines.
    let msgs = torture_messages();
    let lines: Vec<&[u8]> = msgs
        .iter()
        .flat_map(|(_, m)| m.split_inclusive(|c| *c == b'\n'))
        .chain(PHONE_INVITE.as_bytes().split_inclusive(|c| *c == b'\n'))
        .collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    for round in 0..5_000 {
        let mut m: Vec<u8> = PHONE_INVITE.lines().next().unwrap().as_bytes().to_vec();
        m.extend_from_slice(b"\r\n");
        for _ in 0..next(12) {
            m.extend_from_slice(lines[next(lines.len())]);
        }
        if next(2) == 0 {
            m.extend_from_slice(b"\r\n");
        }
        agree(&m, &format_args!("splice {round}"));
    }
}

/// (major, minor)
type Version = Option<(u32, u32)>;

/// SIP versions and what they read as; `sip_versions` in
/// `src/sip/message/tests.rs` checks the fast parser's reading against the
/// same table.
const VERSIONS: [(&[u8], Version); 16] = [
    (b"SIP/2.0", Some((2, 0))),
    (b"sip/2.0", Some((2, 0))),
    (b"SIP/02.00", Some((2, 0))),
    (b"SIP/3.1", Some((3, 1))),
    (b"SIP/123456789.987654321", Some((123_456_789, 987_654_321))),
    (b"SIP/1234567890.0", None),
    (b"SIP/2.1234567890", None),
    (b"SIP/2.", None),
    (b"SIP/.0", None),
    (b"SIP/2.0x", None),
    (b"SIP/2", None),
    (b"SIP/", None),
    (b"SIP", None),
    (b"SIP/2-0", None),
    (b"SIPX2.0", None),
    (b"", None),
];

#[test]
fn sip_versions_agree_with_reference() {
    let head = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    for (v, want) in VERSIONS {
        let text = String::from_utf8_lossy(v);
        assert_eq!(reference::version(v), want, "{text}");
        // In a Request-Line (505 or 400) and in a Status-Line (dropped).
        agree(
            format!("OPTIONS sip:a@b {text}\r\n{head}").as_bytes(),
            &format_args!("request with {text}"),
        );
        agree(
            format!("{text} 200 OK\r\n{head}").as_bytes(),
            &format_args!("response with {text}"),
        );
    }
}
