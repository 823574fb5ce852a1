//! The real password guesser, sipvicious `svcrack` (Debian package
//! `sipvicious`), against the real binary: with a 10-word list whose last
//! word is the right password it finds nothing, because facd ignores the
//! source after `limits.auth_failures` (5) wrong guesses; with the limit
//! raised, the same run finds the password (so it is the limit that stops
//! it). Skipped when svcrack is missing, unless CI is set.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "tr0ub4dor-3";
const WORDS: [&str; 10] = [
    "123456", "password", "1001", "letmein", "qwerty", "admin", "1234", "secret", "0000", PASSWORD,
];

fn svcrack_ready() -> bool {
    let found = Command::new("svcrack")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found && std::env::var_os("CI").is_some() {
        panic!("svcrack (Debian package sipvicious) is required in CI");
    }
    if !found {
        eprintln!("svcrack not installed (apt-get install sipvicious): skipped");
    }
    found
}

/// facd with digest auth (MD5 only: svcrack knows no SHA-256), logging at
/// info to `log`.
fn start(dir: &Path, limits: &str, log: &Path) -> (Child, SocketAddr) {
    let cfg = dir.join("facd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "facd.test"
# svcrack never ACKs our 401s and waits for their retransmissions: a short
# T1 ends those (Timer H, 64·T1) in 3.2 s instead of 32.
t1_ms = 50
[auth]
required = true
algorithms = ["MD5"]
[limits]
{limits}
[[queues]]
number = "8000"
name = "Sales"
[[agents]]
extension = "1001"
name = "Alice"
password = "{PASSWORD}"
queues = ["8000"]
[storage]
dir = {:?}
[http]
# Any free port: the default 127.0.0.1:8080 collides with other tests and servers.
listen = "127.0.0.1:0"
"#,
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(common::facd_bin())
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("udp:"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("facd did not start: {line:?}"));
    (child, addr)
}

/// Runs svcrack on user 1001 with INVITE to a star code; its output.
fn svcrack(dir: &Path, facd: SocketAddr) -> String {
    let words = dir.join("words.txt");
    std::fs::write(&words, WORDS.join("\n") + "\n").unwrap();
    // svcrack's Via names its own port (no rport): give it a free one.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = dir.join("svcrack.out");
    let mut child = Command::new("svcrack")
        .args(["-vv", "-u", "1001", "-d"])
        .arg(&words)
        .args(["-m", "INVITE", "--requesturi", "sip:*388000@facd.test"])
        .args(["-x", "127.0.0.1", "-b", "127.0.0.1", "--maximumtime", "3"])
        .args(["-P", &port.to_string(), "-p", &facd.port().to_string()])
        .arg("127.0.0.1")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&out).unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("svcrack still running after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(out).unwrap()
}

/// Wrong guesses facd evaluated (its "digest authentication failed" lines).
fn failures(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .matches("digest authentication failed")
        .count()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn svcrack_is_stopped_after_a_handful_of_guesses() {
    if !svcrack_ready() {
        return;
    }
    // The control: without a tight limit, svcrack cracks the password.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("facd.log");
    let (facd, addr) = start(dir.path(), "auth_failures = 100", &log);
    let out = svcrack(dir.path(), addr);
    stop(facd);
    assert!(
        out.contains(&format!("The password for 1001 is {PASSWORD}")),
        "svcrack should crack facd when the limit is off:\n{out}"
    );
    assert_eq!(failures(&log), WORDS.len() - 1);

    // The defaults: 5 wrong guesses and the source is ignored.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("facd.log");
    let (facd, addr) = start(dir.path(), "", &log);
    let started = Instant::now();
    let out = svcrack(dir.path(), addr);
    let secs = started.elapsed().as_secs_f64();
    // While banned, a star-code INVITE from that source gets no answer at
    // all; another source still gets its challenge.
    let invite = |from: &str| {
        let sock = UdpSocket::bind(format!("{from}:0")).unwrap();
        let port = sock.local_addr().unwrap().port();
        let msg = common::Req::invite(
            "*388000",
            "1001",
            &format!("after-{from}"),
            &format!("z9hG4bK-after-{port}"),
            "UDP",
            port,
        );
        sock.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        sock.send_to(msg.as_bytes(), addr).unwrap();
        let mut buf = [0u8; 4096];
        sock.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let banned = invite("127.0.0.1");
    let other = invite("127.0.0.2");
    let log_text = std::fs::read_to_string(&log).unwrap();
    stop(facd);
    let evaluated = failures(&log);
    println!("svcrack against the defaults: {evaluated} guesses evaluated of {}, {secs:.1} s, found nothing", WORDS.len());
    assert!(
        out.contains("found nothing"),
        "svcrack found something:\n{out}"
    );
    assert!(
        !out.contains(PASSWORD.trim()) || !out.contains("The password"),
        "{out}"
    );
    assert_eq!(
        evaluated, 5,
        "facd evaluated {evaluated} guesses\n{log_text}"
    );
    assert!(
        log_text.contains("too many failed authentications"),
        "{log_text}"
    );
    assert_eq!(
        banned, None,
        "the guessing source was answered while banned"
    );
    assert!(
        other.is_some_and(|m| m.starts_with("SIP/2.0 401")),
        "another source is still challenged"
    );
}
