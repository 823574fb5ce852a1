//! Test harness: the real server in-process on ephemeral ports, the real
//! binary as a child process, a tiny raw-bytes SIP client and a digest
//! client (`digest.rs`). Every socket here is on loopback.
#![allow(dead_code, unreachable_pub)]

pub mod digest;
pub mod pg;
pub mod prom;
pub mod wsi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A config for tests: loopback, ephemeral ports, lab auth, quick hang-up.
pub fn base_config(extra_sip: &str) -> String {
    let confirm = if extra_sip.contains("confirm_ms") {
        ""
    } else {
        "confirm_ms = 100"
    };
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "facd.test"
{confirm}
t1_ms = 50
{extra_sip}

[auth]
required = false

[http]
listen = "127.0.0.1:0"

[[reasons]]
code = 1
name = "BREAK"

[[queues]]
number = "8000"
name = "Sales"
auto_ready = true

[[queues]]
number = "8001"
name = "Support"
auto_ready = false

[[queues]]
number = "8002"
name = "Billing"
wrap_up_secs = 5

[[agents]]
extension = "1001"
name = "Alice"
password = "alice-secret"
queues = ["8000", "8001"]

[[agents]]
extension = "1002"
name = "Bob"
password = "bob-secret"
queues = ["8000", "8002"]

[[agents]]
extension = "1003"
name = "Carol"
password = "carol-secret"
queues = ["8001"]
"#
    )
}

/// An in-process server on ephemeral ports.
pub struct TestServer {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The REST API and WebSocket `/wsi`.
    pub http: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
    /// The core task, for commands and queries.
    pub core: facd::events::CoreHandle,
    /// Every durable event.
    pub hub: facd::events::Hub,
    /// The WebSocket registry.
    pub wsi: facd::api::wsi::Wsi,
    /// The transports' counters.
    pub stats: std::sync::Arc<facd::transport::Stats>,
}

impl TestServer {
    pub async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Self::start_with_storage(config, &data, dir).await
    }

    /// Like `start`, with the journal in `data`.
    pub async fn start_with_storage(config: &str, data: &Path, dir: tempfile::TempDir) -> Self {
        let storage = format!("[storage]\ndir = {:?}\n", data.display().to_string());
        Self::start_with_section(config, &storage, dir).await
    }

    /// Like `start`, on the PostgreSQL at `url` (`backend = "postgres"`).
    pub async fn start_pg(config: &str, url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = format!(
            "[storage]\ndir = {:?}\nbackend = \"postgres\"\nurl = {url:?}\n",
            dir.path().join("data").display().to_string()
        );
        Self::start_with_section(config, &storage, dir).await
    }

    /// Like `start`, with `storage` as the `[storage]` section.
    async fn start_with_section(config: &str, storage: &str, dir: tempfile::TempDir) -> Self {
        // An ephemeral HTTP port unless the test chose one.
        let http = if config.contains("[http]") {
            ""
        } else {
            "[http]\nlisten = \"127.0.0.1:0\"\n"
        };
        let text = format!("{config}\n{http}{storage}");
        let cfg = facd::config::Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
        let server = facd::server::Server::bind(cfg).await.unwrap();
        let addrs = server.local_addrs();
        let udp = addrs.iter().find(|(p, _)| *p == "udp").unwrap().1;
        let tcp = addrs.iter().find(|(p, _)| *p == "tcp").unwrap().1;
        let http = server.http_addr().unwrap();
        let core = server.core_handle();
        let hub = server.hub();
        let wsi = server.wsi();
        let stats = server.transport_stats();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        Self {
            udp,
            tcp,
            http,
            stop: Some(tx),
            handle: Some(handle),
            dir,
            core,
            hub,
            wsi,
            stats,
        }
    }

    /// Graceful stop; returns when the server has finished.
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

/// Keeps tokio's paused clock from jumping ahead while the test waits on
/// loopback I/O: auto-advance is off while a blocking task runs (see
/// `tokio::time::pause`), so time moves only by `advance`.
pub struct HoldClock(Option<std::sync::mpsc::Sender<()>>);

impl HoldClock {
    pub fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        Self(Some(tx))
    }
}

impl Drop for HoldClock {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// A parsed-enough SIP message for assertions.
#[derive(Debug, Clone)]
pub struct Msg {
    pub raw: String,
}

impl Msg {
    pub fn start_line(&self) -> &str {
        self.raw.lines().next().unwrap_or("")
    }
    /// The status code of a response (0 for a request).
    pub fn status(&self) -> u16 {
        let l = self.start_line();
        if let Some(rest) = l.strip_prefix("SIP/2.0 ") {
            rest.get(..3).and_then(|s| s.parse().ok()).unwrap_or(0)
        } else {
            0
        }
    }
    pub fn reason(&self) -> &str {
        self.start_line().get(12..).unwrap_or("")
    }
    pub fn method(&self) -> &str {
        self.start_line().split(' ').next().unwrap_or("")
    }
    /// First value of a header (case-insensitive, long name only).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    pub fn headers(&self, name: &str) -> Vec<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
    pub fn body(&self) -> &str {
        self.raw.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
    /// The tag parameter of the To header.
    pub fn to_tag(&self) -> Option<String> {
        let to = self.header("To")?;
        to.split(";tag=")
            .nth(1)
            .map(|t| t.split(';').next().unwrap_or(t).to_string())
    }
}

/// A UDP SIP client on loopback.
pub struct Udp {
    pub sock: UdpSocket,
    pub server: SocketAddr,
}

impl Udp {
    pub async fn new(server: SocketAddr) -> Self {
        Self::new_from(server, "127.0.0.1").await
    }
    /// A client on another loopback address (a different source IP).
    pub async fn new_from(server: SocketAddr, ip: &str) -> Self {
        let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
        Self { sock, server }
    }
    pub fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }
    pub async fn send(&self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .await
            .unwrap();
    }
    pub async fn send_bytes(&self, msg: &[u8]) {
        self.sock.send_to(msg, self.server).await.unwrap();
    }
    /// The next message within `ms`, or None.
    pub async fn recv_within(&self, ms: u64) -> Option<Msg> {
        let mut buf = vec![0u8; 70000];
        match tokio::time::timeout(Duration::from_millis(ms), self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(Msg {
                raw: String::from_utf8_lossy(&buf[..n]).into_owned(),
            }),
            _ => None,
        }
    }
    pub async fn recv(&self) -> Msg {
        self.recv_within(3000)
            .await
            .expect("no SIP message within 3 s")
    }
    /// The final response for `call_id`, skipping everything else
    /// (retransmissions of earlier answers, facd's BYEs).
    pub async fn recv_final_for(&self, call_id: &str) -> Msg {
        loop {
            let m = self.recv().await;
            if m.status() >= 200 && m.header("Call-ID").as_deref() == Some(call_id) {
                return m;
            }
        }
    }

    /// The next response, skipping requests (e.g. a BYE) — returned separately.
    pub async fn recv_response(&self) -> Msg {
        loop {
            let m = self.recv().await;
            if m.status() != 0 {
                return m;
            }
        }
    }
}

/// A TCP SIP client on loopback.
pub struct Tcp {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Tcp {
    pub async fn connect(server: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(server).await.unwrap(),
            buf: Vec::new(),
        }
    }
    /// A connection from another loopback address (a different source IP).
    pub async fn connect_from(server: SocketAddr, ip: &str) -> Self {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        Self {
            stream: sock.connect(server).await.unwrap(),
            buf: Vec::new(),
        }
    }
    /// A connection accepted by a test's own listener (one facd opened).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }
    pub fn port(&self) -> u16 {
        self.stream.local_addr().unwrap().port()
    }
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }
    /// Reads until a whole message (by Content-Length) is buffered.
    pub async fn recv_within(&mut self, ms: u64) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            if let Some(m) = self.take_message() {
                return Some(m);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    pub async fn recv(&mut self) -> Msg {
        self.recv_within(3000)
            .await
            .expect("no SIP message over TCP within 3 s")
    }
    /// Raw bytes available within `ms` (for keep-alive pongs).
    pub async fn read_raw(&mut self, ms: u64) -> Vec<u8> {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_millis(ms), self.stream.read(&mut chunk)).await {
            Ok(Ok(n)) => chunk[..n].to_vec(),
            _ => Vec::new(),
        }
    }
    /// True if the server closed the connection within `ms`.
    pub async fn closed_within(&mut self, ms: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
    fn take_message(&mut self) -> Option<Msg> {
        let text = &self.buf;
        let end = text.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&text[..end]).into_owned();
        let len = head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| {
                n.trim().eq_ignore_ascii_case("content-length")
                    || n.trim().eq_ignore_ascii_case("l")
            })
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if self.buf.len() < end + len {
            return None;
        }
        let raw: Vec<u8> = self.buf.drain(..end + len).collect();
        Some(Msg {
            raw: String::from_utf8_lossy(&raw).into_owned(),
        })
    }
}

/// Builders for the requests tests send.
pub struct Req;

impl Req {
    /// An INVITE to `user` (a star code) from `agent`, with a PCMU offer.
    pub fn invite(
        user: &str,
        agent: &str,
        call_id: &str,
        branch: &str,
        transport: &str,
        port: u16,
    ) -> String {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";
        format!(
            "INVITE sip:{user}@facd.test SIP/2.0\r\n\
             Via: SIP/2.0/{transport} 127.0.0.1:{port};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Agent {agent}\" <sip:{agent}@facd.test>;tag=from-{call_id}\r\n\
             To: <sip:{user}@facd.test>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{agent}@127.0.0.1:{port};transport={t}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            t = transport.to_ascii_lowercase(),
            len = sdp.len()
        )
    }

    /// The ACK for a 2xx (new branch, To tag from the 200).
    pub fn ack(
        user: &str,
        agent: &str,
        call_id: &str,
        to_tag: &str,
        transport: &str,
        port: u16,
    ) -> String {
        format!(
            "ACK sip:{user}@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bK-ack-{call_id};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"Agent {agent}\" <sip:{agent}@facd.test>;tag=from-{call_id}\r\n\
             To: <sip:{user}@facd.test>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// A 200 OK answering a request facd sent (its BYE).
    pub fn ok_for(req: &Msg) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for v in req.headers(h) {
                out.push_str(&format!("{h}: {v}\r\n"));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }

    pub fn options(port: u16, branch: &str) -> String {
        format!(
            "OPTIONS sip:ping@facd.test SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:tester@facd.test>;tag=opt-{branch}\r\n\
             To: <sip:ping@facd.test>\r\n\
             Call-ID: opt-{branch}@test\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }
}

/// The real binary running on a config file, with the addresses it printed.
pub struct Spawned {
    pub child: std::process::Child,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// Starts `facd --config <config>` (RUST_LOG=warn) and reads its
/// "facd listening on udp:… tcp:…" line.
pub fn spawn_facd(config: &Path) -> Spawned {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(facd_bin())
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("facd listening on "),
        "facd did not start: {line:?}"
    );
    let addr = |proto: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(proto))
            .and_then(|a| a.parse().ok())
    };
    Spawned {
        udp: addr("udp:"),
        tcp: addr("tcp:"),
        http: addr("http:"),
        child,
    }
}

/// The facd binary built by cargo for the integration tests.
pub fn facd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_facd"))
}

/// Path of a file under sip-fixtures/.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sip-fixtures")
        .join(rel)
}
