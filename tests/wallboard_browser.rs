//! The wallboard and report pages in a real browser: Debian's headless
//! `chromium` driven through `chromedriver` (W3C WebDriver over HTTP on
//! loopback). The board logs in (PortSIP's `POST /api/login`, WSI 22.3
//! `auth`), shows agent 1001 LOGGED_OUT, then READY within a second of a
//! `*38` dialled over SIP, with its time in state counting; an agent taken
//! out of a queue through the REST API leaves the board; it shows that it
//! is reconnecting while facd restarts and comes back live by itself (with
//! a new login); the browser logs no console error; screenshots are kept in
//! `target/browser-artefacts/` and checked to have rendered.
//!
//! Without chromium and chromedriver this prints SKIPPED and passes, except
//! under CI (`CI` set). `FACD_SCREENSHOTS=<dir>` also copies the
//! screenshots there (`contrib/screenshots.sh` regenerates the README's).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Req, TestServer, Udp};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-1";

fn config(http: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
domain = "facd.test"
confirm_ms = 100
t1_ms = 50

[auth]
required = false

[http]
listen = "{http}"

[[api_users]]
name = "admin"
token = "{ADMIN}"
role = "admin"

[[reasons]]
code = 1
name = "BREAK"

[[reasons]]
code = 2
name = "LUNCH"

[[queues]]
number = "8000"
name = "Sales"
auto_ready = true
wrap_up_secs = 30

[[queues]]
number = "8001"
name = "Support"
auto_ready = false

[[agents]]
extension = "1001"
name = "Alice"
password = "alice-secret"
queues = ["8000", "8001"]

[[agents]]
extension = "1002"
name = "Bob"
password = "bob-secret"
queues = ["8000"]

[[agents]]
extension = "1003"
name = "Carol"
password = "carol-secret"
queues = ["8000", "8001"]

[[agents]]
extension = "1004"
name = "Dave"
password = "dave-secret"
queues = ["8001"]
"#
    )
}

fn find(cands: &[&str]) -> Option<PathBuf> {
    for c in cands {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.exists() {
                return Some(p.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let full = dir.join(c);
            if full.exists() {
                return Some(full);
            }
        }
    }
    None
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(chromium: &Path, chromedriver: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1600,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut d = Self {
            child,
            base,
            http,
            session: String::new(),
            _profile: profile,
        };
        let v = d.call(reqwest::Method::POST, "/session", Some(caps)).await;
        d.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        d
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.timeout(Duration::from_secs(60)).send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        v["value"].clone()
    }

    async fn session(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.session(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.session(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .session(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.session(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Polls `script` until it returns `want` (as a string), within `limit`.
    async fn wait_for(&self, script: &str, want: &str, limit: Duration) -> Duration {
        let t0 = Instant::now();
        loop {
            let v = self.js(script).await;
            if v.as_str() == Some(want) {
                return t0.elapsed();
            }
            if t0.elapsed() >= limit {
                // What the page says helps more than the timeout alone.
                let page = self
                    .js("var e = document.getElementById('login-error'); return (e ? e.textContent : '') + ' | ' + document.body.innerText.slice(0, 400);")
                    .await;
                let log = self
                    .session(
                        reqwest::Method::POST,
                        "/se/log",
                        Some(json!({"type": "browser"})),
                    )
                    .await;
                panic!("waited {limit:?} for {script} == {want:?}; it is {v}\npage: {page}\nbrowser log: {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Console messages of level SEVERE (errors) since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let v = self
            .session(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .unwrap_or_else(|| panic!("no browser log: {v}"))
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// A screenshot, saved as `name` and checked to have rendered.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self
            .session(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artefacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        assert_rendered(&bytes, name);
        if let Some(out) = std::env::var_os("FACD_SCREENSHOTS") {
            std::fs::create_dir_all(&out).unwrap();
            std::fs::copy(&path, Path::new(&out).join(name)).unwrap();
        }
        path
    }

    async fn quit(&self) {
        self.session(reqwest::Method::DELETE, "", None).await;
    }
}

/// A PNG that is a page, not a blank: large, varied luminance, many colours.
fn assert_rendered(bytes: &[u8], name: &str) {
    let dec = png::Decoder::new(bytes);
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    assert!(px >= 3, "{name}: colour type {:?}", info.color_type);
    assert!(
        info.width >= 800 && info.height >= 600,
        "{name}: {}x{}",
        info.width,
        info.height
    );
    let data = &buf[..info.buffer_size()];
    let mut sum = 0f64;
    let mut sq = 0f64;
    let mut colours = std::collections::HashSet::new();
    let n = data.len() / px;
    for p in data.chunks_exact(px) {
        let y = 0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2]);
        sum += y;
        sq += y * y;
        colours.insert((p[0] >> 3, p[1] >> 3, p[2] >> 3));
    }
    let mean = sum / n as f64;
    let var = sq / n as f64 - mean * mean;
    assert!(var > 100.0, "{name}: luminance variance {var:.1}: blank?");
    assert!(
        colours.len() > 20,
        "{name}: only {} colours: blank?",
        colours.len()
    );
}

/// A PortSIP REST call with the admin's static token; the answer's body.
async fn rest(http: SocketAddr, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new()
        .request(method, format!("http://{http}{path}"))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The id of queue `number` (`GET /api/call_queues`).
async fn qid(http: SocketAddr, number: &str) -> String {
    let v = rest(http, reqwest::Method::GET, "/api/call_queues", None).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["extension_number"] == number)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Dials `code` as `agent` over UDP and completes the call.
async fn dial(c: &Udp, code: &str, agent: &str, call_id: &str) {
    c.send(&Req::invite(
        code,
        agent,
        call_id,
        &format!("z9hG4bK-{call_id}"),
        "UDP",
        c.port(),
    ))
    .await;
    let resp = c.recv_response().await;
    assert_eq!(resp.status(), 200, "{}", resp.raw);
    let tag = resp.to_tag().unwrap();
    c.send(&Req::ack(code, agent, call_id, &tag, "UDP", c.port()))
        .await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE");
    c.send(&Req::ok_for(&bye)).await;
}

const CELL: &str = r#"var e = document.querySelector('tr[data-agent="1001"][data-queue="8000"] .st .state'); return e ? e.getAttribute('data-state') + ' ' + e.textContent : 'none';"#;
const TIME: &str = r#"var e = document.querySelector('tr[data-agent="1001"][data-queue="8000"] .time'); return e ? e.textContent : '';"#;
const CONN: &str = "return document.getElementById('conn').className;";
const DAVE: &str = r#"return String(document.querySelectorAll('tr[data-agent="1004"][data-queue="8001"]').length);"#;

fn seconds(text: &str) -> u64 {
    text.split(':')
        .fold(0, |acc, p| acc * 60 + p.trim().parse::<u64>().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallboard_follows_star_codes_live_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (
        find(&["chromium", "chromium-browser", "/usr/lib/chromium/chromium"]),
        find(&["chromedriver", "/usr/lib/chromium/chromedriver"]),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: chromium and chromium-driver must be installed"
        );
        println!("SKIPPED: chromium or chromedriver not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s =
        TestServer::start_with_storage(&config("127.0.0.1:0"), &data, tempfile::tempdir().unwrap())
            .await;
    let http = s.http;
    let d = Driver::start(&chromium, &chromedriver).await;

    d.goto(&format!("http://{http}/wallboard")).await;
    d.type_into("#login-user", "admin").await;
    d.type_into("#login-password", ADMIN).await;
    d.click("#login-submit").await;
    d.wait_for(CELL, "LOGGED_OUT LOGGED_OUT", Duration::from_secs(10))
        .await;
    d.wait_for(CONN, "conn live", Duration::from_secs(10)).await;

    // *38 over SIP: READY on the board within a second.
    let c = Udp::new(s.udp).await;
    let t0 = Instant::now();
    c.send(&Req::invite(
        "*38",
        "1001",
        "login-1",
        "z9hG4bK-login-1",
        "UDP",
        c.port(),
    ))
    .await;
    d.wait_for(CELL, "READY READY", Duration::from_secs(5))
        .await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "READY shown {took:?} after the INVITE"
    );
    let resp = c.recv_response().await;
    assert_eq!(resp.status(), 200);
    c.send(&Req::ack(
        "*38",
        "1001",
        "login-1",
        &resp.to_tag().unwrap(),
        "UDP",
        c.port(),
    ))
    .await;
    let bye = c.recv().await;
    c.send(&Req::ok_for(&bye)).await;

    // The time in state counts up.
    let first = seconds(d.js(TIME).await.as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = seconds(d.js(TIME).await.as_str().unwrap());
    assert!(
        later > first,
        "time in state {first} s then {later} s: not counting"
    );

    // A busier board for the screenshot: a call, a break, a wrap-up.
    dial(&c, "*38", "1002", "login-2").await;
    dial(&c, "*38", "1003", "login-3").await;
    dial(&c, "*37*1", "1003", "break-3").await;
    dial(&c, "*38", "1004", "login-4").await;
    let q8001 = qid(http, "8001").await;
    rest(
        http,
        reqwest::Method::POST,
        "/api/agents/1002/calls",
        Some(json!({"call_id": "acd-1", "type": "ACD", "queue_number": "8000"})),
    )
    .await;
    rest(
        http,
        reqwest::Method::POST,
        &format!("/api/call_queues/{q8001}/agents/1001"),
        Some(json!({"status": "READY"})),
    )
    .await;
    rest(
        http,
        reqwest::Method::POST,
        "/api/agents/1001/calls",
        Some(json!({"call_id": "o-1", "type": "OTHER"})),
    )
    .await;
    rest(
        http,
        reqwest::Method::POST,
        "/api/agents/1001/calls/o-1/destroy",
        None,
    )
    .await;
    d.wait_for(
        r#"var e = document.querySelector('tr[data-agent="1003"][data-queue="8000"] .reason'); return e ? e.textContent : '';"#,
        "BREAK",
        Duration::from_secs(5),
    )
    .await;
    d.wait_for(
        r#"var e = document.querySelector('tr[data-agent="1002"][data-queue="8000"] .state'); return e ? e.getAttribute('data-state') : '';"#,
        "QUEUE_CALL",
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    d.screenshot("wallboard.png").await;
    let errors = d.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // The report page, same login (kept for the tab), renders its table.
    d.goto(&format!("http://{http}/reports")).await;
    d.wait_for(
        r#"return String(document.querySelectorAll('#table tbody tr').length);"#,
        "6",
        Duration::from_secs(10),
    )
    .await;
    d.screenshot("reports.png").await;
    let errors = d.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // Dave leaves queue 8001 (PortSIP's agent list without him): his row
    // goes (WSI removed_agents), the others stay.
    d.goto(&format!("http://{http}/wallboard")).await;
    d.wait_for(CONN, "conn live", Duration::from_secs(10)).await;
    d.wait_for(DAVE, "1", Duration::from_secs(5)).await;
    rest(
        http,
        reqwest::Method::POST,
        &format!("/api/call_queues/{q8001}/agents"),
        Some(json!({"items": [{"extension_number": "1001"}, {"extension_number": "1003"}]})),
    )
    .await;
    d.wait_for(DAVE, "0", Duration::from_secs(5)).await;
    d.wait_for(
        r#"return String(document.querySelectorAll('#agents tbody tr').length);"#,
        "5",
        Duration::from_secs(5),
    )
    .await;
    let errors = d.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A restart of facd: the board says it is reconnecting, then is live
    // again by itself (a new login: facd forgot the old token) with the
    // state the journal kept.
    s.stop().await;
    d.wait_for(CONN, "conn down", Duration::from_secs(5)).await;
    let text = d
        .js("return document.getElementById('conn').textContent;")
        .await;
    assert!(text.as_str().unwrap().contains("Reconnecting"), "{text}");
    let s = TestServer::start_with_storage(
        &config(&http.to_string()),
        &data,
        tempfile::tempdir().unwrap(),
    )
    .await;
    d.wait_for(CONN, "conn live", Duration::from_secs(15)).await;
    d.wait_for(CELL, "READY READY", Duration::from_secs(5))
        .await;
    d.wait_for(DAVE, "0", Duration::from_secs(5)).await;
    d.wait_for(
        r#"var e = document.querySelector('tr[data-agent="1002"][data-queue="8000"] .state'); return e ? e.getAttribute('data-state') : '';"#,
        "QUEUE_CALL",
        Duration::from_secs(5),
    )
    .await;
    d.quit().await;
    s.stop().await;
}
