//! Running facd as a service: `--version`, `--log-format json`, and
//! `check-config` naming every unknown key with the other problems.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn facd() -> Command {
    Command::new(common::facd_bin())
}

#[test]
fn version_is_printed() {
    let out = facd().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("facd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_lists_every_unknown_key_and_out_of_range_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[sip]\ndomian = \"x\"\nt1_ms = 1\n[limits]\nrequest_per_sec = 9\n\
         [subscribe]\nmax_per_agent = 1000\n[[trusted_proxies]]\naddress = \"10.0.0.0/99\"\n",
    )
    .unwrap();
    let out = facd()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "sip.domian: unknown key",
        "limits.request_per_sec: unknown key",
        "sip.t1_ms: must be between 50 and 5000",
        "subscribe.max_per_agent: must be between 1 and 100",
        "trusted_proxies[0].address",
    ] {
        assert!(err.contains(key), "{key:?} not in:\n{err}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n[auth]\nrequired = false\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut child = facd()
        .args(["--log-format", "json", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or("").to_string();
        seen.push(message.clone());
        if message == "facd started" {
            assert_eq!(v["level"], "INFO");
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|m| m == "facd started"), "{seen:?}");
}
