//! The SIP core against the running server: answers that need no agent
//! logic, TCP framing and keep-alives, caps and timeouts, IPv6.

mod common;

use std::time::Duration;

use common::{base_config, Msg, Req, Tcp, TestServer, Udp};

fn request(method: &str, port: u16, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:ping@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@facd.test>;tag=t-{branch}\r\n\
         To: <sip:ping@facd.test>\r\n\
         Call-ID: {branch}@test\r\n\
         CSeq: 1 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn options_register_unknown_and_unsupported() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let p = c.port();

    c.send(&request("OPTIONS", p, "z9hG4bK-o1", "")).await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (200, "OK"));
    assert_eq!(
        r.header("Allow").unwrap(),
        "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE"
    );
    assert_eq!(r.header("Accept").unwrap(), "application/sdp");
    assert_eq!(
        r.header("Allow-Events").unwrap(),
        "as-feature-event, dialog, presence"
    );
    assert_eq!(r.headers("Supported").len(), 1);
    assert!(r.to_tag().is_some());
    assert_eq!(r.header("CSeq").unwrap(), "1 OPTIONS");
    assert_eq!(r.header("Call-ID").unwrap(), "z9hG4bK-o1@test");

    c.send(&request("REGISTER", p, "z9hG4bK-r1", "")).await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (405, "Method Not Allowed"));
    assert_eq!(
        r.header("Allow").unwrap(),
        "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE"
    );

    for m in ["NOTIFY", "MESSAGE", "INFO"] {
        c.send(&request(m, p, &format!("z9hG4bK-{m}"), "")).await;
        assert_eq!(c.recv().await.status(), 405, "{m}");
    }
    // SUBSCRIBE without an Event (RFC 6665 §4.2.1.1): the packages we have.
    c.send(&request("SUBSCRIBE", p, "z9hG4bK-sub", "")).await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (489, "Bad Event"));
    assert_eq!(
        r.header("Allow-Events").unwrap(),
        "as-feature-event, dialog, presence"
    );

    c.send(&request("FROBNICATE", p, "z9hG4bK-u1", "")).await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (501, "Not Implemented"));

    c.send(&request(
        "OPTIONS",
        p,
        "z9hG4bK-q1",
        "Require: 100rel, timer\r\n",
    ))
    .await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (420, "Bad Extension"));
    assert_eq!(r.header("Unsupported").unwrap(), "100rel, timer");

    let scheme = request("OPTIONS", p, "z9hG4bK-s1", "").replace(
        "OPTIONS sip:ping@facd.test",
        "OPTIONS mailto:ping@facd.test",
    );
    c.send(&scheme).await;
    assert_eq!(c.recv().await.status(), 416);

    let vers = request("OPTIONS", p, "z9hG4bK-v1", "").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    c.send(&vers).await;
    let r = c.recv().await;
    assert_eq!((r.status(), r.reason()), (505, "Version Not Supported"));

    let bad = request("OPTIONS", p, "z9hG4bK-b1", "").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    c.send(&bad).await;
    let r = c.recv().await;
    assert_eq!(
        (r.status(), r.reason()),
        (400, "Bad Request - CSeq Method Mismatch")
    );

    let missing =
        request("OPTIONS", p, "z9hG4bK-b2", "").replace("Call-ID: z9hG4bK-b2@test\r\n", "");
    c.send(&missing).await;
    let r = c.recv().await;
    assert_eq!(
        (r.status(), r.reason()),
        (400, "Bad Request - Missing Call-ID")
    );
    s.stop().await;
}

#[tokio::test]
async fn garbage_and_stray_responses_get_nothing_and_the_server_goes_on() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    for junk in [
        &b"hello"[..],
        b"\x00\x01\x02",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\r\n\r\n",
        &[0xff; 2000],
    ] {
        c.send_bytes(junk).await;
    }
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    c.send(stray).await;
    assert!(c.recv_within(300).await.is_none());
    c.send(&Req::options(c.port(), "z9hG4bK-alive")).await;
    assert_eq!(c.recv().await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn retransmitted_options_gets_the_same_answer() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let m = Req::options(c.port(), "z9hG4bK-rt");
    c.send(&m).await;
    let a = c.recv().await;
    c.send(&m).await;
    let b = c.recv().await;
    assert_eq!(a.raw, b.raw, "the stored response, same To tag");
    s.stop().await;
}

fn tcp_options(port: u16, branch: &str) -> String {
    Req::options(port, branch).replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

#[tokio::test]
async fn tcp_framing_split_head_split_body_and_pipelining() {
    let s = TestServer::start(&base_config("")).await;
    let mut c = Tcp::connect(s.tcp).await;
    let p = c.port();
    // Split inside the head.
    let m = tcp_options(p, "z9hG4bK-t1");
    let (a, b) = m.split_at(20);
    c.send(a.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b.as_bytes()).await;
    assert_eq!(c.recv().await.status(), 200);
    // Split inside the body (an OPTIONS with a body facd ignores).
    let with_body = tcp_options(p, "z9hG4bK-t2").replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n0123456789",
    );
    let cut = with_body.len() - 4;
    c.send(&with_body.as_bytes()[..cut]).await;
    assert!(
        c.recv_within(200).await.is_none(),
        "answered before the body was complete"
    );
    c.send(&with_body.as_bytes()[cut..]).await;
    assert_eq!(c.recv().await.status(), 200);
    // Two messages (and a compact l:) in one write.
    let two = format!(
        "{}{}",
        tcp_options(p, "z9hG4bK-t3"),
        tcp_options(p, "z9hG4bK-t4").replace("Content-Length: 0", "l: 0")
    );
    c.send(two.as_bytes()).await;
    let r1 = c.recv().await;
    let r2 = c.recv().await;
    assert!(r1.header("Via").unwrap().contains("z9hG4bK-t3"));
    assert!(r2.header("Via").unwrap().contains("z9hG4bK-t4"));
    s.stop().await;
}

#[tokio::test]
async fn tcp_keepalive_ping_gets_one_crlf() {
    let s = TestServer::start(&base_config("")).await;
    let mut c = Tcp::connect(s.tcp).await;
    c.send(b"\r\n\r\n").await;
    assert_eq!(c.read_raw(2000).await, b"\r\n");
    // A lone CRLF (a pong) is skipped, and the connection still works.
    c.send(b"\r\n").await;
    let p = c.port();
    c.send(tcp_options(p, "z9hG4bK-k1").as_bytes()).await;
    assert_eq!(c.recv().await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn tcp_framing_errors_close_only_that_connection() {
    let s = TestServer::start(&base_config("max_message_bytes = 2048")).await;
    let mut good = Tcp::connect(s.tcp).await;
    let gp = good.port();
    for bad in [
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n".to_string(),
        "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -5\r\n\r\n".to_string(),
        format!("OPTIONS sip:a@b SIP/2.0\r\nX-Pad: {}\r\n", "a".repeat(3000)),
        "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999\r\n\r\n".to_string(),
    ] {
        let mut c = Tcp::connect(s.tcp).await;
        c.send(bad.as_bytes()).await;
        assert!(c.closed_within(2000).await, "not closed after {bad:.40}");
    }
    good.send(tcp_options(gp, "z9hG4bK-g1").as_bytes()).await;
    assert_eq!(good.recv().await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn oversize_datagram_is_answered_400() {
    let s = TestServer::start(&base_config("max_message_bytes = 2048")).await;
    let c = Udp::new(s.udp).await;
    let big = Req::options(c.port(), "z9hG4bK-big").replace(
        "Content-Length: 0",
        &format!("X-Pad: {}\r\nContent-Length: 0", "a".repeat(3000)),
    );
    c.send(&big).await;
    let r = c.recv().await;
    assert_eq!(
        (r.status(), r.reason()),
        (400, "Bad Request - Message Too Large")
    );
    // Without a usable Via in what arrived, nothing is answered.
    c.send(&format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX-Pad: {}\r\n",
        "a".repeat(3000)
    ))
    .await;
    assert!(c.recv_within(300).await.is_none());
    c.send(&Req::options(c.port(), "z9hG4bK-small")).await;
    assert_eq!(c.recv().await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn tcp_connection_cap_and_idle_timeout() {
    let s = TestServer::start(&base_config("max_tcp_connections = 2\ntcp_idle_secs = 1")).await;
    let mut a = Tcp::connect(s.tcp).await;
    let mut b = Tcp::connect(s.tcp).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = Tcp::connect(s.tcp).await;
    assert!(
        third.closed_within(1000).await,
        "a third connection was accepted"
    );
    // Idle connections are closed after tcp_idle_secs, which frees the slots.
    assert!(a.closed_within(3000).await);
    assert!(b.closed_within(3000).await);
    let mut c = Tcp::connect(s.tcp).await;
    let p = c.port();
    c.send(tcp_options(p, "z9hG4bK-after").as_bytes()).await;
    assert_eq!(c.recv().await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn ipv6_udp_and_tcp() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let cfg = base_config("").replace(
        r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
        r#"listen = ["udp:[::1]:0", "tcp:[::1]:0"]"#,
    );
    let s = TestServer::start(&cfg).await;
    assert!(s.udp.is_ipv6());
    let sock = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let inv = common::Req::invite("*38", "1001", "v6", "z9hG4bK-v6", "UDP", port)
        .replace(&format!("127.0.0.1:{port}"), &format!("[::1]:{port}"));
    sock.send_to(inv.as_bytes(), s.udp).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = Msg {
        raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
    };
    assert_eq!(r.status(), 200, "{}", r.raw);
    assert!(
        r.header("Contact").unwrap().contains("@[::1]:"),
        "{}",
        r.raw
    );
    assert!(r.body().contains("c=IN IP6 ::1"), "{}", r.body());
    let mut t = Tcp::connect(s.tcp).await;
    let p = t.port();
    t.send(
        tcp_options(p, "z9hG4bK-v6t")
            .replace("127.0.0.1", "[::1]")
            .as_bytes(),
    )
    .await;
    assert_eq!(t.recv().await.status(), 200);
    s.stop().await;
}

/// Slow-loris: a message dribbled a byte at a time (which keeps the idle
/// timer happy) is cut off after tcp_message_secs; others are unaffected.
#[tokio::test]
async fn slow_header_connection_is_closed() {
    let s = TestServer::start(&base_config("tcp_message_secs = 1")).await;
    let mut slow = Tcp::connect(s.tcp).await;
    let started = std::time::Instant::now();
    let msg = tcp_options(slow.port(), "z9hG4bK-slow");
    let mut closed = false;
    for b in msg.as_bytes().iter().take(60) {
        if slow.stream.try_write(&[*b]).is_err() {
            closed = true;
            break;
        }
        if slow.closed_within(100).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dribbling connection was kept open");
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut c = Tcp::connect(s.tcp).await;
    let p = c.port();
    c.send(tcp_options(p, "z9hG4bK-fast").as_bytes()).await;
    assert_eq!(c.recv().await.status(), 200);
    s.stop().await;
}
