//! A real softphone (Debian `baresip-core`) dials star codes against the
//! real binary: INVITE with baresip's own SDP, facd's 200 with
//! X-Agent-State, baresip's ACK, the confirmation tone (baresip records what
//! it hears), facd's BYE after confirm_ms. Skipped with a
//! notice when baresip is missing, except under CI.

mod common;

use std::process::{Command, Stdio};

fn baresip_ready() -> bool {
    let found = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but baresip is not installed (apt-get install baresip-core)"
        );
        eprintln!("SKIPPED: baresip is not installed (apt-get install baresip-core)");
    }
    found
}

/// Runs baresip once, dialling `target`; returns its SIP trace.
fn dial(dir: &std::path::Path, target: &str) -> String {
    let out = Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .args(["-s", "-t", "4", "-e", &format!("/dial {target}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn baresip_logs_in_and_is_refused_with_a_phrase() {
    if !baresip_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[storage]\ndir = {:?}\n",
            common::base_config("confirm_ms = 500").replace(r#", "tcp:127.0.0.1:0""#, ""),
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let spawned = common::spawn_facd(&cfg);
    let mut facd = spawned.child;
    let addr = spawned.udp.unwrap().to_string();

    // baresip: one account (agent 1001, no registration), a WAV file as the
    // microphone, G.711 only.
    let bs = dir.path().join("baresip");
    std::fs::create_dir_all(&bs).unwrap();
    let local = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let wav = bs.join("tone.wav");
    write_wav(&wav);
    std::fs::write(
        bs.join("config"),
        format!(
            "poll_method epoll\nsip_listen {local}\naudio_source aufile,{w}\n\
             audio_alert aufile,/dev/null\nsnd_path {p}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\n\
             module_app account.so\nmodule_app menu.so\n",
            p = bs.display(),
            w = wav.display()
        ),
    )
    .unwrap();
    std::fs::write(
        bs.join("accounts"),
        "<sip:1001@127.0.0.1;transport=udp>;regint=0\n",
    )
    .unwrap();
    std::fs::write(bs.join("contacts"), "").unwrap();

    let trace = dial(&bs, &format!("sip:*38@{addr}"));
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    assert!(
        trace.contains("X-Agent-State: queue=8000;state=READY, queue=8001;state=NOT_READY"),
        "{trace}"
    );
    assert!(trace.contains("ACK sip:*38@"), "{trace}");
    assert!(
        trace.contains(&format!("UDP {addr} -> {local}\nBYE ")),
        "facd did not hang up:\n{trace}"
    );

    // facd's confirmation tone reached baresip: its sndfile module dumps
    // the decoded audio it received to dump-<time>-dec.wav (16-bit mono).
    let heard = std::fs::read_dir(&bs)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .map(|p| std::fs::read(p).unwrap())
        .expect("baresip dumped no received audio");
    let data = heard
        .windows(4)
        .position(|w| w == b"data")
        .map_or(&[][..], |i| &heard[(i + 8).min(heard.len())..]);
    let peak = data
        .chunks_exact(2)
        .map(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(
        peak > 2000,
        "baresip heard no tone (peak {peak} in {} bytes of audio)",
        data.len()
    );

    let trace = dial(&bs, &format!("sip:*388002@{addr}"));
    assert!(trace.contains("SIP/2.0 403 Not A Queue Member"), "{trace}");

    let _ = facd.kill();
    let _ = facd.wait();
}

/// Two seconds of a 440 Hz tone, 8 kHz 16-bit mono.
fn write_wav(path: &std::path::Path) {
    let n = 16_000u32;
    let mut b = Vec::with_capacity(44 + 2 * n as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let v =
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16;
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}
