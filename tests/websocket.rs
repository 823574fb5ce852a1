//! SIP over WebSocket (RFC 7118) against the real server, with the test's
//! own WebSocket SIP client sending real SIP in frames: over `ws://` and
//! `wss://` (a CA made by the test), a browser-style phone (Contact and Via
//! with an `.invalid` host, §5) logs in with `*388000`, gets facd's BYE over
//! its WebSocket and subscribes to its feature keys; text and binary
//! frames; an upgrade without the `sip` subprotocol is refused; a frame
//! that is not SIP is counted and the connection goes on; once the
//! WebSocket has closed nothing is dialled (§5).

mod common;
mod secure;

use std::sync::atomic::Ordering;
use std::time::Duration;

use facd::engine::{Cause, Command as Cmd, Target};
use rustls::pki_types::ServerName;
use secure::{ack, agent_state, invite, ok_for, subscribe, Pki, Secure, WsSip};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const LISTEN: &str =
    r#"["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"]"#;

async fn start(pki: &Pki) -> Secure {
    let server = pki.issue("server", &["127.0.0.1"]);
    Secure::start(
        LISTEN,
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            server.cert.display().to_string(),
            server.key.display().to_string()
        ),
        "",
    )
    .await
}

/// The star-code flow and a SUBSCRIBE, as JsSIP does them: Via
/// `SIP/2.0/<WS|WSS> <random>.invalid`, Contact `sip:<random>@<random>.invalid;transport=ws`.
async fn browser_phone<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut WsSip<S>,
    transport: &str,
    port: u16,
    tag: &str,
) {
    let lower = transport.to_ascii_lowercase();
    let via = format!("{transport} df7jal23ls0d.invalid");
    let contact = format!("sip:k8sd7f@df7jal23ls0d.invalid;transport={lower}");

    c.send(&invite(
        "*388000",
        &format!("{tag}-1"),
        &via,
        &contact,
        "sip",
    ))
    .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(
        ok.header("X-Agent-State").as_deref(),
        Some("queue=8000;state=READY")
    );
    // RFC 7118 §5: our Contact says transport=ws / wss.
    assert_eq!(
        ok.header("Contact").as_deref(),
        Some(format!("<sip:*388000@127.0.0.1:{port};transport={lower}>").as_str())
    );
    assert!(
        ok.header("Via")
            .unwrap()
            .starts_with(&format!("SIP/2.0/{transport} df7jal23ls0d.invalid;")),
        "{}",
        ok.raw
    );
    c.send(&ack(&ok, &format!("{tag}-1"), &via)).await;
    // facd's BYE goes back over the WebSocket, to the .invalid Contact.
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    assert!(
        bye.start_line().starts_with(&format!("BYE {contact} ")),
        "{}",
        bye.raw
    );
    assert!(
        bye.header("Via")
            .unwrap()
            .starts_with(&format!("SIP/2.0/{transport} 127.0.0.1:{port};branch=")),
        "{}",
        bye.raw
    );
    c.send(&ok_for(&bye)).await;

    // The same over binary frames: Not Ready, its 200, its BYE.
    c.send_binary(invite("*37", &format!("{tag}-2"), &via, &contact, "sip").as_bytes())
        .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    c.send_binary(ack(&ok, &format!("{tag}-2"), &via).as_bytes())
        .await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    c.send(&ok_for(&bye)).await;

    // Feature keys: 200 and NOTIFY over the WebSocket.
    c.send(&subscribe(&format!("{tag}-sub"), 1, None, &via, &contact))
        .await;
    let (mut resp, mut notify) = (None, None);
    while resp.is_none() || notify.is_none() {
        let m = c.recv().await;
        if m.method() == "NOTIFY" {
            c.send(&ok_for(&m)).await;
            notify = Some(m);
        } else {
            resp = Some(m);
        }
    }
    let (resp, notify) = (resp.unwrap(), notify.unwrap());
    assert_eq!(resp.status(), 200, "{}", resp.raw);
    assert_eq!(agent_state(&notify), "AgentNotReadyEvent", "{}", notify.raw);
    assert!(notify
        .start_line()
        .starts_with(&format!("NOTIFY {contact} ")));
}

#[tokio::test]
async fn a_browser_phone_logs_in_and_subscribes_over_ws() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let ws = s.ws.unwrap();
    let tcp = TcpStream::connect(ws).await.unwrap();
    // Any request path will do.
    let mut c = secure::ws_sip(tcp, &format!("ws://{ws}/any/path")).await;
    browser_phone(&mut c, "WS", ws.port(), "ws").await;

    // A change from the API reaches the phone over its WebSocket.
    s.core
        .apply(
            Cmd::Ready {
                agent: "1001".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    let n = c.recv().await;
    assert_eq!(n.method(), "NOTIFY", "{}", n.raw);
    assert_eq!(agent_state(&n), "AgentReadyEvent");
    c.send(&ok_for(&n)).await;

    // Once the WebSocket has closed, nothing is dialled (RFC 7118 §5):
    // the next NOTIFY is not sent and the subscription ends.
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.core
        .apply(
            Cmd::Logout {
                agent: "1001".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 0);
    assert_eq!(s.stats.tcp_dial_failed.load(Ordering::Relaxed), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_browser_phone_logs_in_and_subscribes_over_wss() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let wss = s.wss.unwrap();
    let tcp = TcpStream::connect(wss).await.unwrap();
    let tls = pki
        .client(None)
        .connect(ServerName::IpAddress(wss.ip().into()), tcp)
        .await
        .unwrap();
    let mut c = secure::ws_sip(tls, &format!("wss://{wss}/")).await;
    browser_phone(&mut c, "WSS", wss.port(), "wss").await;
    s.stop().await;
}

#[tokio::test]
async fn an_upgrade_without_the_sip_subprotocol_is_refused() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let ws = s.ws.unwrap();
    let tcp = TcpStream::connect(ws).await.unwrap();
    let refused = tokio_tungstenite::client_async(format!("ws://{ws}/"), tcp).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400);
        }
        other => panic!("expected an HTTP 400, got {other:?}"),
    }
    // A plain HTTP request on the WebSocket port (not an upgrade): closed.
    let mut plain = common::Tcp::connect(ws).await;
    plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.closed_within(3000).await);
    assert_eq!(s.stats.ws_refused.load(Ordering::Relaxed), 2);
    s.stop().await;
}

#[tokio::test]
async fn a_frame_that_is_not_sip_is_counted_and_the_websocket_goes_on() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let ws = s.ws.unwrap();
    let tcp = TcpStream::connect(ws).await.unwrap();
    let mut c = secure::ws_sip(tcp, &format!("ws://{ws}/")).await;
    let before = s.stats.malformed.load(Ordering::Relaxed);
    c.send_binary(&[0xff, 0x00, 0x13, 0x37]).await;
    // A request with a usable Via but a broken CSeq is answered 400.
    let bad = common::Req::options(5060, "z9hG4bK-ws-bad")
        .replace("/UDP 127.0.0.1:5060", "/WS x.invalid")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    c.send(&bad).await;
    let r = c.recv().await;
    assert_eq!(r.status(), 400, "{}", r.raw);
    // A double-CRLF keep-alive gets a CRLF.
    c.send("\r\n\r\n").await;
    let pong = c.recv().await;
    assert_eq!(pong.raw, "\r\n");
    let ok =
        common::Req::options(5060, "z9hG4bK-ws-ok").replace("/UDP 127.0.0.1:5060", "/WS x.invalid");
    c.send(&ok).await;
    assert_eq!(c.recv().await.status(), 200);
    assert_eq!(s.stats.malformed.load(Ordering::Relaxed), before + 2);
    s.stop().await;
}
