//! Test harness for the encrypted and browser transports: a CA made by the
//! test (rcgen) with server and client certificates for 127.0.0.1, the
//! server in-process with `tls:`, `ws:` and `wss:` listeners, and SIP
//! clients over TLS and over WebSocket (the test's own, sending real SIP
//! in WebSocket frames, RFC 7118). Every socket is on loopback.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::common::Msg;

/// A certificate and its key, as PEM files in the PKI's directory.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA of the test's own, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, issuer.pem()).unwrap();
        Self { dir, ca, issuer }
    }

    /// A leaf certificate for `names` (IP addresses become iPAddress SANs).
    pub fn issue(&self, file: &str, names: &[&str]) -> Issued {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let out = Issued {
            cert: self.dir.path().join(format!("{file}.pem")),
            key: self.dir.path().join(format!("{file}.key")),
        };
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }

    /// A TLS client trusting this CA, presenting `client` if given.
    pub fn client(&self, client: Option<&Issued>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match client {
            Some(c) => builder
                .with_client_auth_cert(certs(&c.cert), key(&c.key))
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// A TLS server config with `server`'s certificate; when `clients` is
    /// given, clients must present a certificate it issued.
    pub fn server(&self, server: &Issued, clients: Option<&Self>) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match clients {
            Some(pki) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(&pki.ca).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(v)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs(&server.cert), key(&server.key))
            .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }
}

pub fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

pub fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

/// The test server with its secure and WebSocket listeners.
pub struct Secure {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub ws: Option<SocketAddr>,
    pub wss: Option<SocketAddr>,
    pub http: SocketAddr,
    pub core: facd::events::CoreHandle,
    pub stats: Arc<facd::transport::Stats>,
    pub sip_tls: Option<Arc<facd::transport::TlsContext>>,
    pub http_tls: Option<Arc<facd::transport::TlsContext>>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Secure {
    /// Starts facd with `listen` as `[sip] listen`, `sip` more `[sip]` keys
    /// and `http` as the `[http]` table's keys (besides `listen`).
    pub async fn start(listen: &str, sip: &str, http: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = crate::common::base_config(sip).replace(
            r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
            &format!("listen = {listen}"),
        );
        let base = base.replace(
            "[http]\nlisten = \"127.0.0.1:0\"\n",
            &format!("[http]\nlisten = \"127.0.0.1:0\"\n{http}\n"),
        );
        let text = format!(
            "{base}\n[subscribe]\n[storage]\ndir = {:?}\n",
            dir.path().join("data").display().to_string()
        );
        let cfg = facd::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
        let problems = cfg.validate();
        assert!(problems.is_empty(), "{problems:?}");
        let server = facd::server::Server::bind(cfg).await.unwrap();
        let addrs = server.local_addrs();
        let find = |p: &str| addrs.iter().find(|(q, _)| *q == p).map(|(_, a)| *a);
        let (sip_tls, http_tls) = server.tls_contexts();
        let (tx, rx) = oneshot::channel();
        let out = Self {
            udp: find("udp").unwrap(),
            tcp: find("tcp").unwrap(),
            tls: find("tls"),
            ws: find("ws"),
            wss: find("wss"),
            http: server.http_addr().unwrap(),
            core: server.core_handle(),
            stats: server.transport_stats(),
            sip_tls,
            http_tls,
            stop: Some(tx),
            handle: None,
            _dir: dir,
        };
        let handle = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            handle: Some(handle),
            ..out
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("server did not stop within 10 s")
                .unwrap();
        }
    }
}

/// A SIP client over any byte stream (TLS here), framing by Content-Length.
pub struct Stream<S> {
    pub io: S,
    buf: Vec<u8>,
}

impl Stream<TlsStream<TcpStream>> {
    /// Connects to `server` over TLS, verifying it as 127.0.0.1.
    pub async fn tls(server: SocketAddr, client: &tokio_rustls::TlsConnector) -> Self {
        let tcp = TcpStream::connect(server).await.unwrap();
        let name = ServerName::IpAddress(server.ip().into());
        let io = client.connect(name, tcp).await.unwrap();
        Self::new(io)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
        self.io.flush().await.unwrap();
    }

    pub async fn recv_within(&mut self, ms: u64) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            if let Some(m) = take_message(&mut self.buf) {
                return Some(m);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn recv(&mut self) -> Msg {
        self.recv_within(5000)
            .await
            .expect("no SIP message within 5 s")
    }
}

fn take_message(buf: &mut Vec<u8>) -> Option<Msg> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let len = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if buf.len() < end + len {
        return None;
    }
    let raw: Vec<u8> = buf.drain(..end + len).collect();
    Some(Msg {
        raw: String::from_utf8_lossy(&raw).into_owned(),
    })
}

/// A SIP-over-WebSocket client (RFC 7118): one message per frame.
pub struct WsSip<S> {
    pub ws: WebSocketStream<S>,
}

/// Opens `url` over `io` with the `sip` subprotocol.
pub async fn ws_sip<S: AsyncRead + AsyncWrite + Unpin>(io: S, url: &str) -> WsSip<S> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (ws, resp) = tokio_tungstenite::client_async(req, io).await.unwrap();
    assert_eq!(
        resp.headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip"),
        "RFC 7118 §4.1: the server names the subprotocol"
    );
    WsSip { ws }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsSip<S> {
    /// Sends one SIP message as one text frame.
    pub async fn send(&mut self, msg: &str) {
        self.ws.send(Message::Text(msg.into())).await.unwrap();
    }

    /// Sends one SIP message as one binary frame.
    pub async fn send_binary(&mut self, msg: &[u8]) {
        self.ws
            .send(Message::Binary(msg.to_vec().into()))
            .await
            .unwrap();
    }

    /// The next SIP message (one frame), within `ms`.
    pub async fn recv_within(&mut self, ms: u64) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(Msg {
                        raw: t.as_str().to_string(),
                    })
                }
                Ok(Some(Ok(Message::Binary(b)))) => {
                    return Some(Msg {
                        raw: String::from_utf8_lossy(&b).into_owned(),
                    })
                }
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    pub async fn recv(&mut self) -> Msg {
        self.recv_within(5000)
            .await
            .expect("no SIP frame within 5 s")
    }
}

/// A 200 OK answering a request facd sent (its BYE or NOTIFY).
pub fn ok_for(req: &Msg) -> String {
    crate::common::Req::ok_for(req)
}

/// The ACD event of a NOTIFY body: its root element (`AgentReadyEvent`,
/// `AgentNotReadyEvent`, ...), the first one in a multipart body.
pub fn agent_state(m: &Msg) -> String {
    let b = m.body();
    b.find("<Agent")
        .and_then(|i| b[i + 1..].split([' ', '>', '/']).next())
        .unwrap_or("")
        .to_string()
}

/// A star-code INVITE from agent 1001 with `via` as its Via transport and
/// sent-by and `contact` as its Contact URI.
pub fn invite(user: &str, call: &str, via: &str, contact: &str, ruri_scheme: &str) -> String {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";
    format!(
        "INVITE {ruri_scheme}:{user}@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch=z9hG4bK-{call};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:1001@facd.test>;tag=from-{call}\r\n\
         To: <{ruri_scheme}:{user}@facd.test>\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <{contact}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The ACK for the 200 `ok` of [`invite`].
pub fn ack(ok: &Msg, call: &str, via: &str) -> String {
    let contact = ok.header("Contact").unwrap();
    let target = contact.trim_start_matches('<').trim_end_matches('>');
    format!(
        "ACK {target} SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch=z9hG4bK-ack-{call};rport\r\n\
         Max-Forwards: 70\r\n\
         From: {}\r\n\
         To: {}\r\n\
         Call-ID: {call}\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n",
        ok.header("From").unwrap(),
        ok.header("To").unwrap(),
    )
}

/// An `as-feature-event` SUBSCRIBE by agent 1001 to its own address.
pub fn subscribe(call: &str, cseq: u32, to_tag: Option<&str>, via: &str, contact: &str) -> String {
    let to_tag = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    format!(
        "SUBSCRIBE sip:1001@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/{via};branch=z9hG4bK-{call}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@facd.test>;tag=phone-{call}\r\n\
         To: <sip:1001@facd.test>{to_tag}\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <{contact}>\r\n\
         Event: as-feature-event\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
