//! facd behind a real Kamailio (Debian `kamailio`, with
//! contrib/kamailio/kamailio.cfg) on loopback: a SIPp phone registers at
//! the proxy, dials `*388000` and subscribes to its ACD key through it.
//! The proxy challenges the phone; facd trusts the proxy's
//! P-Asserted-Identity and challenges nobody; facd's 200s carry the
//! proxy's Record-Route, so the ACK, facd's BYE and the NOTIFYs all pass
//! through the proxy. Without kamailio or sipp the test says SKIPPED and
//! passes, except under CI (`CI` set).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facd::engine::AgentState;

use common::{base_config, TestServer};

/// The proxy's address: not the phone's (127.0.0.1), so only it is trusted.
const PROXY_IP: &str = "127.0.0.2";

fn tools_ready() -> bool {
    let missing: Vec<&str> = [("kamailio", "-v"), ("sipp", "-v")]
        .into_iter()
        .filter(|(tool, arg)| Command::new(tool).arg(arg).output().is_err())
        .map(|(tool, _)| tool)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {missing:?} is not installed (apt-get install kamailio sip-tester)"
    );
    eprintln!("SKIPPED: {missing:?} not installed (apt-get install kamailio sip-tester)");
    false
}

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kamailio")
}

/// Kamailio on `PROXY_IP`, stopped (SIGTERM to its main process, which
/// ends its children) when dropped.
struct Kamailio {
    child: Child,
    port: u16,
    _run: tempfile::TempDir,
}

impl Kamailio {
    fn start(facd_udp: std::net::SocketAddr) -> Self {
        let port = UdpSocket::bind((PROXY_IP, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let run = tempfile::tempdir().unwrap();
        let child = Command::new("kamailio")
            .current_dir(contrib())
            .args(["-f", "kamailio.cfg", "-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-Y")
            .arg(run.path())
            .arg("-P")
            .arg(run.path().join("kamailio.pid"))
            .args(["-A", &format!("LISTEN=udp:{PROXY_IP}:{port}")])
            .args(["-A", &format!("FACD=\"sip:{facd_udp}\"")])
            .args(["-A", "CHILDREN=1"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(run.path().join("kamailio.log")).unwrap(),
            ))
            .spawn()
            .unwrap();
        let k = Self {
            child,
            port,
            _run: run,
        };
        k.wait_ready();
        k
    }

    /// Until the proxy answers an OPTIONS (it is up and has read users.cfg).
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        for i in 0.. {
            let options = format!(
                "OPTIONS sip:{PROXY_IP}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-kready-{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=k{i}\r\nTo: <sip:{PROXY_IP}:{port}>\r\n\
                 Call-ID: kready-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                port = self.port
            );
            sock.send_to(options.as_bytes(), (PROXY_IP, self.port))
                .unwrap();
            let mut buf = [0u8; 2048];
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kamailio did not start: see its log"
            );
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: a plain signal to our own child process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let _ = self.child.wait();
    }
}

/// Runs one `sip-fixtures/sipp/proxy_<name>.xml` as agent 1001 against the
/// proxy; returns SIPp's exit code and its log lines.
fn sipp(proxy_port: u16, name: &str, dir: &Path) -> (i32, Vec<String>) {
    let csv = dir.join("phone.csv");
    std::fs::write(&csv, "SEQUENTIAL\n1001;*388000\n").unwrap();
    let log = dir.join(format!("{name}.log"));
    let out = Command::new("sipp")
        .arg(format!("{PROXY_IP}:{proxy_port}"))
        .arg("-sf")
        .arg(common::fixture(&format!("sipp/proxy_{name}.xml")))
        .arg("-inf")
        .arg(&csv)
        .args(["-i", "127.0.0.1", "-m", "1", "-l", "1"])
        .args(["-au", "1001", "-ap", "alice-secret"])
        .args([
            "-nostdin",
            "-timeout",
            "30",
            "-timeout_error",
            "-trace_logs",
        ])
        .arg("-log_file")
        .arg(&log)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("sipp {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registers_dials_and_subscribes_through_kamailio() {
    if !tools_ready() {
        return;
    }
    let config = base_config("confirm_ms = 100").replace(
        "required = false",
        "required = true\nalgorithms = [\"MD5\"]",
    ) + &format!("\n[[trusted_proxies]]\naddress = \"{PROXY_IP}\"\n");
    let s = TestServer::start(&config).await;
    let facd_udp = s.udp;
    let dir = s.dir.path().to_path_buf();
    let (register, call, subscribe) = tokio::task::spawn_blocking(move || {
        let k = Kamailio::start(facd_udp);
        let r = sipp(k.port, "register", &dir);
        let c = sipp(k.port, "call", &dir);
        let s = sipp(k.port, "subscribe", &dir);
        drop(k);
        (r, c, s)
    })
    .await
    .unwrap();

    assert_eq!(register.0, 0, "REGISTER at the proxy: {:?}", register.1);
    assert_eq!(call.0, 0, "the call through the proxy: {:?}", call.1);
    let ok = call.1.iter().find(|l| l.starts_with("200 ")).unwrap();
    assert!(
        ok.starts_with("200 queue=8000;state=READY RR <sip:127.0.0.2:"),
        "facd's 200 with the proxy's Record-Route: {ok}"
    );
    assert!(call
        .1
        .iter()
        .any(|l| l == "BYE from facd through the proxy"));
    assert_eq!(subscribe.0, 0, "the subscription: {:?}", subscribe.1);
    assert!(subscribe.1.iter().any(|l| l == "NOTIFY AgentReadyEvent"));
    assert!(subscribe
        .1
        .iter()
        .any(|l| l == "NOTIFY terminated;reason=timeout"));

    // facd counted the call, and challenged nobody.
    if common::prom::parser_ready() {
        let m = common::prom::scrape(s.http).await;
        let v = |k: &str| common::prom::value(&m, k);
        assert_eq!(
            v(r#"facd_star_codes_total{action="login",outcome="applied"}"#),
            1.0
        );
        assert_eq!(
            v(r#"facd_sip_responses_total{method="INVITE",status="200"}"#),
            1.0
        );
        assert_eq!(
            v(r#"facd_sip_responses_total{method="SUBSCRIBE",status="200"}"#),
            2.0
        );
        assert_eq!(
            v(r#"facd_sip_responses_total{method="INVITE",status="401"}"#),
            0.0
        );
        assert_eq!(
            v(r#"facd_sip_responses_total{method="SUBSCRIBE",status="401"}"#),
            0.0
        );
        assert_eq!(v("facd_auth_failures_total{}"), 0.0);
    }
    let state = s
        .core
        .query(|e| e.agent("1001").unwrap().queues[0].state)
        .await
        .unwrap();
    assert_eq!(state, AgentState::Ready, "logged in by *388000");
    s.stop().await;
}
