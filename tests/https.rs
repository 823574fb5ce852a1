//! HTTPS and WSS for the REST API and `/wsi` (`[http] tls_cert`,
//! `tls_key`): with a certificate configured the HTTP address serves TLS
//! only; a REST call over https:// and a WSI session over wss:// (auth,
//! then a state change from SIP arriving as an event); plaintext HTTP and a
//! stalled handshake on that address are closed and counted.

mod common;
mod secure;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use secure::{Pki, Secure};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin-token-1";

async fn start(pki: &Pki) -> Secure {
    let cert = pki.issue("api", &["127.0.0.1", "localhost"]);
    let s = Secure::start(
        r#"["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
        "",
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}\n\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
            cert.cert.display().to_string(),
            cert.key.display().to_string()
        ),
    )
    .await;
    assert!(s.sip_tls.is_none() && s.http_tls.is_some());
    s
}

async fn tls(pki: &Pki, addr: std::net::SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    pki.client(None)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_rest_api_answers_over_https() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let mut io = tls(&pki, s.http).await;
    assert_eq!(
        io.get_ref().1.alpn_protocol(),
        None,
        "no ALPN asked, none chosen"
    );
    io.write_all(
        format!(
            "GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut resp))
        .await
        .expect("no HTTPS answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    // Chunked or not, the JSON object is in there.
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: Value = serde_json::from_str(json).unwrap();
    assert!(v.get("openapi").is_some(), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn wsi_works_over_wss_and_plain_http_is_refused() {
    let pki = Pki::new("facd");
    let s = start(&pki).await;
    let io = tls(&pki, s.http).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://{}/wsi", s.http), io)
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"command": "auth", "username": "admin", "password": ADMIN})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let a = recv(&mut ws).await;
    assert_eq!(a["status"], 0, "{a}");

    // Plaintext HTTP on the HTTPS address: closed, never answered in HTTP.
    let before = s.http_tls.as_ref().unwrap().failed.load(Ordering::Relaxed);
    let mut plain = common::Tcp::connect(s.http).await;
    plain
        .send(b"GET /api/call_queues HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let got = plain.read_raw(3000).await;
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1"));
    assert!(plain.closed_within(5000).await);
    let ctx = s.http_tls.clone().unwrap();
    for _ in 0..500 {
        if ctx.failed.load(Ordering::Relaxed) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ctx.failed.load(Ordering::Relaxed), before + 1);

    // The WSS session is still there.
    ws.send(Message::Text(
        json!({"command": "subscribe", "topics": ["queue_events"]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let sub = recv(&mut ws).await;
    assert_eq!(sub["status"], 0, "{sub}");
    s.stop().await;
}

type Wss = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// The next JSON text message (pings skipped), within 5 s.
async fn recv(ws: &mut Wss) -> Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    })
    .await
    .expect("no WSI message within 5 s")
}
