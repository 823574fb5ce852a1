//! The 49 RFC 4475 torture messages against the running server, over UDP and
//! over TCP: each gets the disposition of sip-fixtures/rfc4475/INDEX.md (a
//! status, or no answer), and the server still answers OPTIONS afterwards.
//!
//! The messages name hosts such as 192.0.2.x in their Via. RFC 3261 §18.2.2
//! and RFC 3581 send a UDP response to the packet's source address and the
//! Via port, so the test sends from a loopback address (127.0.0.42) bound to
//! that Via port, and the first test checks that replies stay on loopback.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{base_config, fixture, Msg, Tcp, TestServer, Udp};
use tokio::net::UdpSocket;

/// The source address tests send fixtures from.
const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 42));

/// (file, expected status; 0 = no answer at all)
const TABLE: &[(&str, u16)] = &[
    // 3.1.1 valid messages: parsed, then answered by the application.
    ("valid/wsinv.dat", 481), // To has a tag: a mid-dialog request for no dialog (§12.2.2)
    ("valid/intmeth.dat", 501), // unknown method
    ("valid/esc01.dat", 404), // INVITE, not a star code
    ("valid/escnull.dat", 405), // REGISTER: facd is not a registrar
    ("valid/esc02.dat", 501), // RE%47IST%45R is not REGISTER
    ("valid/lwsdisp.dat", 200), // OPTIONS
    ("valid/longreq.dat", 404), // INVITE, not a star code
    ("valid/dblreq.dat", 405), // the REGISTER only; the trailing INVITE is ignored
    ("valid/semiuri.dat", 200), // OPTIONS
    ("valid/transports.dat", 200), // OPTIONS
    ("valid/mpart01.dat", 405), // MESSAGE
    ("valid/unreason.dat", 0), // a response: stray, dropped
    ("valid/noreason.dat", 0), // a response: stray, dropped
    ("valid/badbranch.dat", 200), // RFC 2543 transaction matching
    ("valid/unkscm.dat", 416), // unknown Request-URI scheme
    ("valid/novelsc.dat", 416), // soap.beep: not served here
    ("valid/unksm2.dat", 405), // REGISTER
    ("valid/bext01.dat", 420), // Require: nothingSupported
    ("valid/invut.dat", 415), // Content-Type application/unknown
    ("valid/regaut01.dat", 405), // REGISTER
    ("valid/bcast.dat", 0),   // a response: never forwarded anywhere
    ("valid/zeromf.dat", 200), // Max-Forwards 0: a UAS may answer OPTIONS
    ("valid/cparam01.dat", 405), // REGISTER
    ("valid/cparam02.dat", 405), // REGISTER
    ("valid/regescrt.dat", 405), // REGISTER
    ("valid/sdp01.dat", 406), // Accept without application/sdp
    ("valid/inv2543.dat", 404), // RFC 2543 INVITE, not a star code
    // 3.1.2 invalid messages (+ 3.3.1, 3.3.8, 3.3.9): 400, 505, or dropped.
    ("invalid/badinv01.dat", 400),
    ("invalid/clerr.dat", 400),
    ("invalid/ncl.dat", 400),
    ("invalid/scalar02.dat", 400),
    ("invalid/scalarlg.dat", 0),
    ("invalid/quotbal.dat", 400),
    ("invalid/ltgtruri.dat", 400),
    ("invalid/lwsruri.dat", 400),
    ("invalid/lwsstart.dat", 400),
    ("invalid/trws.dat", 400),
    ("invalid/escruri.dat", 400),
    ("invalid/baddate.dat", 404), // liberal: Date is never used, so it is not checked
    ("invalid/regbadct.dat", 405), // liberal: the bare Contact parses; REGISTER is 405
    ("invalid/badaspec.dat", 400),
    ("invalid/baddn.dat", 400),
    ("invalid/badvers.dat", 505),
    ("invalid/mismatch01.dat", 400),
    ("invalid/mismatch02.dat", 400),
    ("invalid/bigcode.dat", 0),
    ("invalid/insuf.dat", 400),
    ("invalid/multi01.dat", 400),
    ("invalid/mcl01.dat", 400),
];

fn load(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("rfc4475/{name}"))).unwrap()
}

/// The port of the top Via's sent-by (5060 when absent), where RFC 3261
/// §18.2.2 sends the UDP response when there is no rport.
fn via_port(msg: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(msg);
    let via = text
        .split("\r\n")
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("via") || l.starts_with("v:") || l.starts_with("v ")
        })
        .unwrap_or("");
    let value = via.split_once(':').map_or("", |(_, v)| v);
    let sent_by = value.split_whitespace().nth(1).unwrap_or("");
    let host_port = sent_by.split([';', ',']).next().unwrap_or("");
    let port = if host_port.starts_with('[') {
        host_port.rsplit_once("]:").map(|(_, p)| p)
    } else {
        host_port.split_once(':').map(|(_, p)| p)
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(5060)
}

async fn options_still_answered(server: SocketAddr) {
    let c = Udp::new(server).await;
    c.send(&common::Req::options(
        c.port(),
        &format!("z9hG4bK-alive-{}", c.port()),
    ))
    .await;
    assert_eq!(
        c.recv().await.status(),
        200,
        "server stopped answering OPTIONS"
    );
}

#[tokio::test]
async fn replies_stay_on_loopback_whatever_the_via_says() {
    let s = TestServer::start(&base_config("")).await;
    // A Via naming a TEST-NET host and no rport: the reply goes to the
    // packet's source IP (never 192.0.2.1) at the Via port.
    let sock = UdpSocket::bind(SocketAddr::new(SRC, 0)).await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let opt = common::Req::options(port, "z9hG4bK-route1").replace(
        &format!("127.0.0.1:{port};branch=z9hG4bK-route1;rport"),
        &format!("192.0.2.1:{port};branch=z9hG4bK-route1"),
    );
    sock.send_to(opt.as_bytes(), s.udp).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = Msg {
        raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
    };
    assert_eq!(reply.status(), 200);
    assert!(
        reply.header("Via").unwrap().contains("received=127.0.0.42"),
        "{}",
        reply.raw
    );

    // With rport, the reply goes to the source port even if the Via names another.
    let opt = common::Req::options(port, "z9hG4bK-route2")
        .replace(&format!("127.0.0.1:{port}"), "192.0.2.1:9");
    sock.send_to(opt.as_bytes(), s.udp).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = Msg {
        raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
    };
    assert!(
        reply
            .header("Via")
            .unwrap()
            .contains(&format!("rport={port}")),
        "{}",
        reply.raw
    );
    s.stop().await;
}

#[tokio::test]
async fn every_torture_message_over_udp() {
    let mut failures = Vec::new();
    for (i, (name, want)) in TABLE.iter().enumerate() {
        // A server per message: several torture messages share a branch and
        // sent-by, which RFC 3261 §17.2.3 would match as retransmissions.
        let s = TestServer::start(&base_config("")).await;
        let msg = load(name);
        // A loopback address per message, so that retransmissions of an
        // earlier final response never reach a later message's socket.
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + i as u8));
        let sock = UdpSocket::bind(SocketAddr::new(src, via_port(&msg)))
            .await
            .unwrap();
        sock.send_to(&msg, s.udp).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let wait = if *want == 0 { 300 } else { 3000 };
        let got = match tokio::time::timeout(Duration::from_millis(wait), sock.recv_from(&mut buf))
            .await
        {
            Ok(Ok((n, _))) => Msg {
                raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
            }
            .status(),
            _ => 0,
        };
        if got != *want {
            failures.push(format!("{name}: want {want}, got {got}"));
        }
        options_still_answered(s.udp).await;
        s.stop().await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn every_torture_message_over_tcp() {
    let mut failures = Vec::new();
    for (name, want) in TABLE {
        let s = TestServer::start(&base_config("")).await;
        let mut c = Tcp::connect(s.tcp).await;
        c.send(&load(name)).await;
        let wait = if *want == 0 { 300 } else { 3000 };
        // On a stream, framing comes first (RFC 3261 §18.3): a message that
        // promises more body than it has (clerr) or has no blank line (baddn)
        // is waited for; one with no, a negative or two Content-Lengths
        // (inv2543, ncl, mcl01) closes the connection unanswered.
        let framing = match *name {
            "invalid/clerr.dat" | "invalid/baddn.dat" => Some(false),
            "valid/inv2543.dat" | "invalid/ncl.dat" | "invalid/mcl01.dat" => Some(true),
            _ => None,
        };
        let want = if framing.is_some() { 0 } else { *want };
        let got = c.recv_within(wait).await.map_or(0, |m| m.status());
        if got != want {
            failures.push(format!("{name}: want {want}, got {got}"));
        }
        if let Some(closes) = framing {
            if c.closed_within(500).await != closes {
                failures.push(format!("{name}: connection closed should be {closes}"));
            }
        }
        options_still_answered(s.udp).await;
        s.stop().await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
