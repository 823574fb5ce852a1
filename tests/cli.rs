//! The command line (SPEC §8): check-config, start-up errors, signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn facd() -> Command {
    Command::new(common::facd_bin())
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let out = facd()
        .args(["check-config", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (2 listeners, 3 queues, 5 agents)"));
}

#[test]
fn check_config_names_every_wrong_key_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[sip]
listen = ["udp:127.0.0.1:99999"]
[codes]
login = "*3"
[[queues]]
number = "8000"
name = "A"
[[queues]]
number = "8000"
name = "B"
[[agents]]
extension = "1001"
name = "X"
password = "p"
queues = ["9999"]
"#,
    )
    .unwrap();
    let out = facd()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "sip.listen[0]",
        "codes.login",
        "queues[1].number",
        "agents[0].queues[0]",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}

#[test]
fn unknown_key_missing_file_and_broken_toml_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("u.toml");
    std::fs::write(&unknown, "[sip]\nlisten = []\nlistne = 1\n").unwrap();
    let broken = dir.path().join("b.toml");
    std::fs::write(&broken, "[sip\n").unwrap();
    for (path, needle) in [
        (unknown, "listne"),
        (broken, "line 1"),
        (
            dir.path().join("missing.toml"),
            "cannot read configuration file",
        ),
    ] {
        let out = facd()
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
        // Running (not only checking) refuses the same way.
        let out = facd().arg("--config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\n[auth]\nrequired = false\n[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = {:?}\n", dir.path().display().to_string()),
    )
    .unwrap();
    let out = facd().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("cannot listen on udp:127.0.0.1:{port}")));
}

#[test]
fn sigterm_stops_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\", \"tcp:127.0.0.1:0\"]\n[auth]\nrequired = false\n[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    for signal in ["-TERM", "-INT"] {
        let mut child = facd()
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("facd listening on udp:127.0.0.1:"),
            "{line}"
        );
        let ok = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "facd ignored {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "{signal}");
    }
}
