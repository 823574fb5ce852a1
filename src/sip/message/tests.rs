//! Grammar unit tests of the parser, through its span API; its agreement
//! with the frozen reference parser is tests/parser_agreement.rs, and
//! tests/rfc4475.rs runs the torture messages against the server.

use super::*;

fn msg(s: &str) -> Result<Message, ParseError> {
    parse_message(Bytes::copy_from_slice(s.as_bytes()))
}

fn req(s: &str) -> Request {
    match msg(s) {
        Ok(Message::Request(r)) => *r,
        other => panic!("{other:?}"),
    }
}

/// The octets of an optional field.
fn opt(r: &Request, s: Option<Span>) -> Option<&[u8]> {
    s.map(|s| r.at(s))
}

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

#[test]
fn typical_invite() {
    let r = req(INVITE);
    let buf = r.headers.buf();
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.scheme, Scheme::Sip);
    assert_eq!(opt(&r, r.uri.user), Some(&b"*388000"[..]));
    assert_eq!(r.at(r.uri.host), b"pbx.example.com");
    assert_eq!(r.uri.param(buf, "TRANSPORT"), Some(Some(&b"udp"[..])));
    let via = &r.base.vias[0];
    assert_eq!(
        (r.at(via.transport), r.at(via.host), via.port),
        (&b"UDP"[..], &b"10.0.0.5"[..], Some(5062))
    );
    assert_eq!(opt(&r, via.branch), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(via.rport, Some(None));
    assert_eq!(via.sent_by(buf), "10.0.0.5:5062");
    assert_eq!(opt(&r, r.base.from.display), Some(&b"Alice"[..]));
    assert_eq!(opt(&r, r.base.from.tag), Some(&b"1928301774"[..]));
    assert_eq!(opt(&r, r.base.from.uri.user), Some(&b"1001"[..]));
    assert_eq!(r.base.to.tag, None);
    assert_eq!(
        r.base.cseq,
        CSeq {
            seq: 314159,
            method: Method::Invite
        }
    );
    assert_eq!(r.base.max_forwards, Some(70));
    assert_eq!(r.body(), b"v=0\r");
    assert_eq!(r.headers.get("content-type").unwrap(), "application/sdp");
    assert_eq!(r.headers.get("c").unwrap(), "application/sdp");
}

#[test]
fn compact_forms_and_whitespace_before_colon() {
    let r = req("OPTIONS sip:a@b SIP/2.0\r\nv : SIP/2.0/TCP h;branch=z9hG4bK1\r\nf: <sip:x@y>;tag=1\r\nt:sip:a@b\r\ni:  cid\r\nCSeq  : 1 OPTIONS\r\nl: 0\r\n\r\n");
    assert_eq!(r.at(r.base.call_id), b"cid");
    assert_eq!(r.at(r.base.vias[0].transport), b"TCP");
    assert_eq!(r.at(r.base.to.uri.host), b"b");
}

#[test]
fn folding_is_one_space() {
    let r = req("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n  ;branch=z9hG4bK1\r\nFrom: <sip:x@y>\r\n\t;tag=1\r\nTo: sip:a@b\r\nCall-ID: c\r\nCSeq: 1\r\n OPTIONS\r\nSubject: a\r\n b\r\n\r\n");
    assert_eq!(opt(&r, r.base.vias[0].branch), Some(&b"z9hG4bK1"[..]));
    assert_eq!(opt(&r, r.base.from.tag), Some(&b"1"[..]));
    assert_eq!(r.headers.get("Subject").unwrap(), "a b");
    assert_eq!(r.headers.get("s").unwrap(), "a b");
}

#[test]
fn any_token_is_a_method_and_methods_are_case_sensitive() {
    let r = req("FOO.BAR sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 FOO.BAR\r\n\r\n");
    assert_eq!(r.method, Method::Extension(Bytes::from_static(b"FOO.BAR")));
    assert_eq!(r.method.as_str(), "FOO.BAR");
    assert_eq!(
        Method::from_token(b"invite"),
        Method::Extension(Bytes::from_static(b"invite"))
    );
}

#[test]
fn ipv6_references() {
    let r = req("OPTIONS sip:[2001:db8::10]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:5062;branch=z9hG4bK1;received=2001:db8::9:255\r\nFrom: <sip:x@[::1]>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
    assert_eq!(r.at(r.uri.host), b"[2001:db8::10]");
    assert_eq!(r.uri.port, Some(5070));
    assert_eq!(r.at(r.base.vias[0].host), b"[2001:db8::9:1]");
    assert_eq!(
        r.base.vias[0].sent_by(r.headers.buf()),
        "[2001:db8::9:1]:5062"
    );
    assert_eq!(
        opt(&r, r.base.vias[0].received),
        Some(&b"2001:db8::9:255"[..])
    );
}

#[test]
fn percent_decoding_for_comparison() {
    let r = req(&INVITE.replace(
        "sip:*388000@pbx.example.com;transport",
        "sip:%2A38%38000@pbx.example.com;transport",
    ));
    assert_eq!(opt(&r, r.uri.user), Some(&b"%2A38%38000"[..]));
    assert_eq!(r.uri.user_unescaped(r.headers.buf()).unwrap(), b"*388000");
    assert_eq!(unescape(b"100%"), b"100%");
    assert_eq!(unescape(b"%4g%41"), b"%4gA");
}

#[test]
fn multi_value_headers_split_outside_quotes_and_angles() {
    let r = req("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\nVia: SIP/2.0/TCP h3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContact: \"a, b\" <sip:a@b;x=1>, <sip:c@d>\r\nRequire: foo, bar\r\nSubject: a, b\r\n\r\n");
    assert_eq!(r.base.vias.len(), 3);
    assert_eq!(r.at(r.base.vias[1].host), b"h2");
    let contacts: Vec<Bytes> = r.headers.get_all("m").collect();
    assert_eq!(contacts, ["\"a, b\" <sip:a@b;x=1>", "<sip:c@d>"]);
    assert_eq!(
        r.headers.get_all("Require").collect::<Vec<_>>(),
        ["foo", "bar"]
    );
    assert_eq!(
        r.headers.get_all("Subject").collect::<Vec<_>>(),
        ["a, b"],
        "not a list header"
    );
}

#[test]
fn quoted_display_names_with_escapes() {
    let r = req(&INVITE.replace("\"Alice\"", "\"A \\\"B\\\" \\\\ C\""));
    assert_eq!(opt(&r, r.base.from.display), Some(&br#"A \"B\" \\ C"#[..]));
}

#[test]
fn schemes() {
    let r = req(&INVITE.replace(
        "sip:*388000@pbx.example.com;transport=udp",
        "tel:*388000;phone-context=pbx",
    ));
    assert_eq!(r.uri.scheme, Scheme::Tel);
    assert_eq!(opt(&r, r.uri.user), Some(&b"*388000"[..]));
    let r = req(&INVITE.replace("sip:*388000@pbx.example.com;transport=udp", "SIPS:*38@pbx"));
    assert_eq!(r.uri.scheme, Scheme::Sips);
    let r = req(&INVITE.replace(
        "sip:*388000@pbx.example.com;transport=udp",
        "urn:service:sos",
    ));
    let Scheme::Other(name) = r.uri.scheme else {
        panic!("{:?}", r.uri.scheme)
    };
    assert_eq!(r.at(name), b"urn");
}

fn refused(s: &str) -> ParseError {
    match msg(s) {
        Err(e) => e,
        Ok(m) => panic!("accepted: {m:?}"),
    }
}

#[test]
fn refusals_say_what_was_wrong() {
    let cases = [
        (
            INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE"),
            "Bad Request - CSeq Method Mismatch",
        ),
        (
            INVITE.replace("Call-ID: a84b4c76e66710@pc33.example.com\r\n", ""),
            "Bad Request - Missing Call-ID",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "To: <sip:x@y>"),
            "Bad Request - Duplicate To",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "Content-Length: 4"),
            "Bad Request - Duplicate Content-Length",
        ),
        (
            INVITE.replace("CSeq: 314159", "CSeq: 4294967296"),
            "Bad Request - CSeq Number Out Of Range",
        ),
        (
            INVITE.replace("Content-Length: 4", "Content-Length: 40"),
            "Bad Request - Content-Length Larger Than Message",
        ),
        (
            INVITE.replace("Content-Length: 4", "Content-Length: -4"),
            "Bad Request - Malformed Content-Length",
        ),
        (
            INVITE
                .replace("SIP/2.0/UDP 10.0.0.5", "SIP/3.0/UDP 10.0.0.5")
                .replace("Via", "X-Via")
                .replace("Max-Forwards: 70", "Via: SIP/2.0/UDP h"),
            "Bad Request - Duplicate To",
        ),
        (
            INVITE.replace("INVITE sip", "INVITE  sip"),
            "Bad Request - Malformed Request-Line",
        ),
        (
            INVITE.replace(
                "INVITE sip:*388000@pbx.example.com;transport=udp",
                "INVITE <sip:*38@pbx>",
            ),
            "Bad Request - Malformed Request-URI",
        ),
        (
            INVITE.replace("From: \"Alice\"", "From: \"Alice"),
            "Bad Request - Malformed From",
        ),
        (
            INVITE.replace("Max-Forwards: 70", "Max-Forwards: x"),
            "Bad Request - Malformed Max-Forwards",
        ),
    ];
    for (text, want) in &cases[..7] {
        let e = refused(text);
        assert_eq!((e.status, e.reason.as_str()), (400, *want), "{text}");
        assert!(e.reply.is_some());
    }
    for (text, want) in &cases[8..] {
        let e = refused(text);
        assert_eq!(e.reason, *want, "{text}");
    }
    let e = refused(&INVITE.replace("SIP/2.0\r\nVia", "SIP/2.1\r\nVia"));
    assert_eq!(
        (e.status, e.reason.as_str()),
        (505, "Version Not Supported")
    );
    // No usable Via: nothing to answer.
    let e = refused(&INVITE.replace("Via: SIP/2.0/UDP 10.0.0.5:5062", "Via: nonsense"));
    assert_eq!((e.status, e.reply.is_none()), (0, true));
}

#[test]
fn responses_parse_and_bad_ones_are_dropped() {
    let m = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n").unwrap();
    let Message::Response(r) = m else { panic!() };
    assert_eq!((r.status, r.at(r.reason)), (200, &b"OK"[..]));
    assert_eq!(r.base.cseq.method, Method::Bye);
    let e = refused("SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert_eq!((e.status, e.reply.is_none()), (0, true));
}

#[test]
fn trailing_octets_past_content_length_are_ignored() {
    let r = req(&format!("{INVITE}garbage"));
    assert_eq!(r.body(), b"v=0\r");
    // Leading CRLFs are skipped (§7.5).
    let r = req(&format!("\r\n\r\n{INVITE}"));
    assert_eq!(r.method, Method::Invite);
}

#[test]
fn never_panics_on_truncations_and_flips() {
    let base = INVITE.as_bytes();
    for cut in 0..=base.len() {
        let _ = parse_message(Bytes::copy_from_slice(&base[..cut]));
    }
    for i in 0..base.len() {
        for b in [
            0u8, b' ', b'\r', b'\n', b':', b';', b'"', b'<', b'>', b'%', 0xff, b',', b'@', b'[',
        ] {
            let mut m = base.to_vec();
            m[i] = b;
            let _ = parse_message(Bytes::from(m));
        }
    }
}

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

#[test]
fn typical_phone_invite_fields() {
    let r = req(PHONE_INVITE);
    assert_eq!(r.base.vias.len(), 1);
    assert_eq!(r.base.vias[0].rport, Some(None));
    assert_eq!(opt(&r, r.base.from.display), Some(&b"Alice Agent"[..]));
    assert_eq!(r.at(r.base.from.raw), r.headers.get("From").unwrap());
    assert_eq!(r.uri.params(r.headers.buf()).count(), 1);
    assert_eq!(
        r.at(r.uri.raw),
        b"sip:*388000@pbx.example.com;transport=udp"
    );
    assert_eq!(r.headers.get_all("Allow").count(), 10);
    assert_eq!(r.body(), b"v=0\r\ns=-\r\n");
}

/// What SIP versions read as (tests/parser_agreement.rs checks the
/// reference parser against the same table, and both parsers on whole
/// messages with these versions).
#[test]
fn sip_versions() {
    /// (major, minor)
    type Version = Option<(u32, u32)>;
    let cases: [(&[u8], Version); 16] = [
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
    for (v, want) in cases {
        assert_eq!(version(v), want, "{}", String::from_utf8_lossy(v));
    }
}

/// The span API itself: fields resolve against the message buffer, a
/// folded value lives after the frame, and an error's top Via resolves
/// against the context's buffer.
#[test]
fn spans_resolve_against_the_message_buffer() {
    let text = "OPTIONS sip:*36@pbx;user=phone;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP h:5070\r\n  ;branch=z9hG4bK1;rport\r\nFrom: \"A\" <sip:1001@pbx>;tag=f1\r\nTo: <sip:*36@pbx>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhi";
    let Ok(Message::Request(r)) = parse_message(Bytes::copy_from_slice(text.as_bytes())) else {
        panic!()
    };
    let buf = r.headers.buf();
    assert!(buf.len() > text.len(), "the unfolded Via follows the frame");
    assert_eq!(
        r.at(r.base.vias[0].raw),
        b"SIP/2.0/UDP h:5070 ;branch=z9hG4bK1;rport"
    );
    assert_eq!(r.branch(), Some(&b"z9hG4bK1"[..]));
    assert_eq!(r.base.vias[0].sent_by(buf), "h:5070");
    assert_eq!(r.call_id(), b"c1");
    assert_eq!(r.from_tag(), Some(&b"f1"[..]));
    assert_eq!(r.to_tag(), None);
    assert_eq!(r.body(), b"hi");
    assert_eq!(r.bytes(r.base.from.raw), "\"A\" <sip:1001@pbx>;tag=f1");
    assert_eq!(r.uri.param(buf, "TRANSPORT"), Some(Some(&b"tcp"[..])));
    assert_eq!(r.uri.param(buf, "user"), Some(Some(&b"phone"[..])));
    assert_eq!(r.uri.param(buf, "lr"), None);
    assert_eq!(r.uri.params(buf).count(), 2);
    assert_eq!(r.uri.user_unescaped(buf).unwrap(), b"*36");
    assert_eq!(Span::default().of(buf), b"");
    assert_eq!(
        Span::new(5, 1_000_000).of(buf),
        b"",
        "out of range is empty"
    );

    let broken = text.replace("CSeq: 1 OPTIONS", "CSeq: 1 BYE");
    let e = parse_message(Bytes::copy_from_slice(broken.as_bytes())).unwrap_err();
    let ctx = e.reply.unwrap();
    assert_eq!(
        ctx.top_via.raw.of(&ctx.buf),
        b"SIP/2.0/UDP h:5070 ;branch=z9hG4bK1;rport"
    );
    assert_eq!(ctx.top_via.rport, Some(None));
}
