//! SIPp (Debian `sip-tester`) against the real `facd` binary: every
//! scenario in sip-fixtures/sipp/. Without SIPp these tests say so and pass,
//! except under CI (`CI` set), where a missing SIPp is a failure.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn sipp_ready() -> bool {
    let found = Command::new("sipp").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but sipp is not installed (apt-get install sip-tester)"
        );
        eprintln!("SKIPPED: sipp is not installed (apt-get install sip-tester)");
    }
    found
}

/// The facd binary on ephemeral loopback ports.
struct Facd {
    child: Child,
    udp: SocketAddr,
    tcp: SocketAddr,
    dir: tempfile::TempDir,
}

impl Facd {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facd.toml");
        let text = format!(
            "{config}\n[storage]\ndir = {:?}\n",
            dir.path().join("data").display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        let f = common::spawn_facd(&path);
        let (child, udp, tcp) = (f.child, f.udp.unwrap(), f.tcp.unwrap());
        Self {
            child,
            udp,
            tcp,
            dir,
        }
    }
}

impl Drop for Facd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one scenario; returns SIPp's exit code and the lines of its -log_file.
fn sipp(
    facd: &Facd,
    scenario: &str,
    rows: &[&str],
    tcp: bool,
    extra: &[&str],
) -> (i32, Vec<String>) {
    let csv = facd.dir.path().join(format!("{scenario}.csv"));
    std::fs::write(&csv, format!("SEQUENTIAL\n{}\n", rows.join("\n"))).unwrap();
    let log = facd.dir.path().join(format!(
        "{scenario}-{}.log",
        if tcp { "tcp" } else { "udp" }
    ));
    let _ = std::fs::remove_file(&log);
    let target = if tcp { facd.tcp } else { facd.udp };
    let m = rows.len().to_string();
    let out = Command::new("sipp")
        .arg(target.to_string())
        .arg("-sf")
        .arg(common::fixture(&format!("sipp/{scenario}")))
        .arg("-inf")
        .arg(&csv)
        .args(["-i", "127.0.0.1", "-t", if tcp { "t1" } else { "u1" }])
        .args(["-m", &m, "-l", "1", "-r", "50"])
        .args([
            "-nostdin",
            "-timeout",
            "60",
            "-timeout_error",
            "-trace_logs",
        ])
        .arg("-log_file")
        .arg(&log)
        .args(extra)
        .current_dir(facd.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let lines = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    if !out.status.success() {
        eprintln!("sipp stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code().unwrap_or(-1), lines)
}

fn config() -> String {
    common::base_config("confirm_ms = 20")
}

fn every_code(tcp: bool) {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let rows = [
        ("1001;*388000", "queue=8000;state=READY"),
        (
            "1001;*38",
            "queue=8000;state=READY, queue=8001;state=NOT_READY",
        ),
        ("1001;*368001", "queue=8001;state=READY"),
        ("1001;*378000", "queue=8000;state=NOT_READY"),
        (
            "1001;*37*1",
            "queue=8000;state=NOT_READY;reason=BREAK, queue=8001;state=NOT_READY;reason=BREAK",
        ),
        ("1001;*36", "queue=8000;state=READY, queue=8001;state=READY"),
        (
            "1001;*37",
            "queue=8000;state=NOT_READY, queue=8001;state=NOT_READY",
        ),
        ("1001;*398001", "queue=8001;state=LOGGED_OUT"),
        (
            "1001;*39",
            "queue=8000;state=LOGGED_OUT, queue=8001;state=LOGGED_OUT",
        ),
    ];
    let csv: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let (code, log) = sipp(&facd, "fac_call.xml", &csv, tcp, &[]);
    assert_eq!(code, 0, "sipp reported failed calls; log: {log:?}");
    assert_eq!(log.len(), rows.len(), "{log:?}");
    for ((row, state), line) in rows.iter().zip(&log) {
        let (agent, dialled) = row.split_once(';').unwrap();
        let (got, sdp) = line.split_once(" | ").unwrap_or((line, ""));
        assert_eq!(got, format!("{agent} {dialled} 200 {state}"));
        // The offer was "0 8": facd answers PCMU, the offer's first choice.
        assert!(
            sdp.starts_with("m=audio ") && sdp.ends_with(" RTP/AVP 0"),
            "{sdp}"
        );
    }
}

#[test]
fn sipp_every_code_over_udp() {
    every_code(false);
}

#[test]
fn sipp_every_code_over_tcp() {
    every_code(true);
}

#[test]
fn sipp_every_refusal() {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let rows = [
        ("1001;*40", "404 Not Found"),
        ("1001;*389999", "404 Unknown Queue"),
        ("1001;*388002", "403 Not A Queue Member"),
        ("1001;*36", "403 Not Logged In"),
        ("1001;*378000", "403 Not Logged In"),
        ("1001;*37*9", "404 Unknown Reason"),
        ("9999;*38", "403 Forbidden"),
    ];
    let csv: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let (code, log) = sipp(&facd, "fac_refused.xml", &csv, false, &[]);
    assert_eq!(code, 0, "{log:?}");
    for ((row, want), line) in rows.iter().zip(&log) {
        let (agent, dialled) = row.split_once(';').unwrap();
        assert_eq!(line, &format!("{agent} {dialled} {want}"));
    }
    assert_eq!(log.len(), rows.len());
}

#[test]
fn sipp_caller_that_never_acks() {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let started = std::time::Instant::now();
    let (code, log) = sipp(&facd, "fac_noack.xml", &["1002;*38"], false, &[]);
    assert_eq!(code, 0, "{log:?}");
    // 64*T1 with t1_ms = 50 is 3.2 s before facd gives up and sends BYE.
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[test]
fn sipp_cancel() {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let (code, log) = sipp(&facd, "fac_cancel.xml", &["1003;*38"], false, &[]);
    assert_eq!(code, 0, "{log:?}");
    // facd answers at once, so the CANCEL finds the INVITE answered: 200,
    // no effect, and the login stands.
    assert_eq!(log, vec!["1003 *38 CSeq: 1 CANCEL 200".to_string()]);
    let (code, log) = sipp(&facd, "fac_call.xml", &["1003;*38"], false, &[]);
    assert_eq!(code, 0);
    assert!(
        log[0].starts_with("1003 *38 200 queue=8001;state=NOT_READY"),
        "{log:?}"
    );
}

#[test]
fn sipp_options() {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    for tcp in [false, true] {
        let (code, _) = sipp(&facd, "options.xml", &["x"], tcp, &[]);
        assert_eq!(code, 0);
    }
}

/// The load scenario (the anchors' fac_uac.xml, where the caller sends the
/// BYE) at a modest rate after a login pass: every call must succeed. The
/// real load run is benches/sipp-load.sh.
#[test]
fn sipp_load_scenario_smoke() {
    if !sipp_ready() {
        return;
    }
    // A caller that hangs up itself: facd's own BYE would come much later.
    let mut cfg = common::base_config("confirm_ms = 2000");
    for a in (1000..1040).filter(|a| !(1001..=1003).contains(a)) {
        cfg.push_str(&format!(
            "\n[[agents]]\nextension = \"{a}\"\nname = \"A{a}\"\nqueues = [\"8000\", \"8002\"]\n"
        ));
    }
    let facd = Facd::start(&cfg);
    let csv = std::fs::read_to_string(common::fixture("sipp/load_agents.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).take(40).collect();
    // The anchors' CSV has each agent dial one code forever; log everyone in
    // first so every code applies (the same state again is a success).
    let logins: Vec<String> = rows
        .iter()
        .map(|r| format!("{};*38", r.split(';').next().unwrap()))
        .collect();
    let logins: Vec<&str> = logins.iter().map(String::as_str).collect();
    let (code, _) = sipp(
        &facd,
        "fac_load.xml",
        &logins,
        false,
        &["-l", "20", "-r", "200"],
    );
    assert_eq!(code, 0, "login pass failed");
    let (code, _) = sipp(
        &facd,
        "fac_load.xml",
        &rows,
        false,
        &["-l", "20", "-r", "200"],
    );
    assert_eq!(code, 0, "load pass had failed calls");
}

/// Digest authentication with SIPp's own [authentication] (MD5).
#[test]
fn sipp_digest_authentication() {
    if !sipp_ready() {
        return;
    }
    // SIPp answers only the first challenge and knows only MD5.
    let facd = Facd::start(&config().replace(
        "required = false",
        "required = true\nalgorithms = [\"MD5\"]",
    ));
    let (code, log) = sipp(
        &facd,
        "fac_auth.xml",
        &["1001;*388000"],
        false,
        &["-au", "1001", "-ap", "alice-secret"],
    );
    assert_eq!(code, 0, "{log:?}");
    assert!(
        log[0].starts_with("1001 *388000 200 queue=8000;state=READY"),
        "{log:?}"
    );
    // A wrong password ends in 403: the scenario expects 200, so the call fails.
    let (code, _) = sipp(
        &facd,
        "fac_auth.xml",
        &["1001;*398000"],
        false,
        &["-au", "1001", "-ap", "wrong"],
    );
    assert_ne!(code, 0);
}

/// A Yealink-style desk phone's ACD key (feature_key_phone.xml): the full
/// state, the login handshake (AgentLoggedOnEvent, the state the login
/// produced, the phone's initial state), a `*37*1` dialled by a second SIPp
/// run, and the end of the subscription.
fn feature_key_phone(tcp: bool) {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let log = facd.dir.path().join(format!(
        "feature_key_phone.xml-{}.log",
        if tcp { "tcp" } else { "udp" }
    ));
    std::thread::scope(|scope| {
        let phone = scope.spawn(|| sipp(&facd, "feature_key_phone.xml", &["1003"], tcp, &[]));
        // The star code must come after the phone logged in and went ready.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20)
            && !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("NOTIFY AgentReadyEvent")
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (code, _) = sipp(&facd, "fac_call.xml", &["1003;*37*1"], false, &[]);
        assert_eq!(code, 0, "*37*1 failed");
        let (code, lines) = phone.join().unwrap();
        assert_eq!(code, 0, "the phone scenario failed: {lines:?}");
        assert_eq!(
            lines,
            [
                "200 Expires 600",
                "NOTIFY AgentLoggedOffEvent multipart/mixed DoNotDisturbEvent active;expires=600",
                "NOTIFY AgentLoggedOnEvent",
                "NOTIFY AgentNotReadyEvent",
                "NOTIFY AgentReadyEvent",
                "NOTIFY AgentNotReadyEvent reason 1",
                "NOTIFY terminated;reason=timeout",
            ]
        );
    });
}

#[test]
fn sipp_feature_key_phone_over_udp() {
    feature_key_phone(false);
}

#[test]
fn sipp_feature_key_phone_over_tcp() {
    feature_key_phone(true);
}

/// A BLF key on `*388000` (blf_phone.xml) with `event` (dialog or
/// presence) while a second SIPp run logs the agent in and out: dark, lit,
/// dark, and the end.
fn blf_phone(tcp: bool, event: &str) {
    if !sipp_ready() {
        return;
    }
    let facd = Facd::start(&config());
    let log = facd.dir.path().join(format!(
        "blf_phone.xml-{}.log",
        if tcp { "tcp" } else { "udp" }
    ));
    // Waits until the phone's log has `n` NOTIFY lines.
    let notifies = |n: usize| {
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(20)
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("NOTIFY ")
                .count()
                < n
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let row = format!("1001;*388000;{event}");
    std::thread::scope(|scope| {
        let phone = scope.spawn(|| sipp(&facd, "blf_phone.xml", &[row.as_str()], tcp, &[]));
        notifies(1);
        let (code, _) = sipp(&facd, "fac_call.xml", &["1001;*388000"], false, &[]);
        assert_eq!(code, 0, "*388000 failed");
        notifies(2);
        let (code, _) = sipp(&facd, "fac_call.xml", &["1001;*398000"], false, &[]);
        assert_eq!(code, 0, "*398000 failed");
        let (code, lines) = phone.join().unwrap();
        assert_eq!(code, 0, "the BLF scenario failed: {lines:?}");
        let (elem, dark, lit) = if event == "dialog" {
            ("state", "terminated", "confirmed")
        } else {
            ("basic", "open", "closed")
        };
        assert_eq!(
            lines,
            [
                "200".to_string(),
                format!("NOTIFY {event} {elem} {dark} active"),
                format!("NOTIFY {event} {elem} {lit} active"),
                format!("NOTIFY {event} {elem} {dark} active"),
                format!("NOTIFY {event} {elem} {dark} terminated"),
            ]
        );
    });
}

#[test]
fn sipp_blf_dialog_over_udp() {
    blf_phone(false, "dialog");
}

#[test]
fn sipp_blf_dialog_over_tcp() {
    blf_phone(true, "dialog");
}

#[test]
fn sipp_blf_presence_over_udp() {
    blf_phone(false, "presence");
}

#[test]
fn sipp_blf_presence_over_tcp() {
    blf_phone(true, "presence");
}
