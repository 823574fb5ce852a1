//! SPEC §7: a state whose 200 the caller received survives kill -9 and
//! restart; wrap-up deadlines resume; a full disk answers 500 and applies
//! nothing; a second facd on the same directory and a corrupt journal are
//! refused with precise errors.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Msg, Req};

const AGENTS: u32 = 20;
/// Calls made before the SIGKILL (20 rounds over the agents).
const KILL_AFTER_CALLS: u64 = 400;

fn config(data: &Path) -> String {
    config_with(data, "journal")
}

fn config_with(data: &Path, backend: &str) -> String {
    let mut c = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\nconfirm_ms = 30000\n[auth]\nrequired = false\n[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndir = {:?}\nbackend = \"{backend}\"\n\
         [[queues]]\nnumber = \"8000\"\nname = \"Sales\"\n",
        data.display().to_string()
    );
    for a in 0..AGENTS {
        c.push_str(&format!(
            "[[agents]]\nextension = \"{}\"\nname = \"A\"\nqueues = [\"8000\"]\n",
            2000 + a
        ));
    }
    c
}

/// Starts the binary; returns it and its UDP address.
fn start(cfg: &Path) -> (Child, SocketAddr) {
    let f = common::spawn_facd(cfg);
    (f.child, f.udp.unwrap())
}

/// One star-code call; returns the final response (None on timeout).
fn call(sock: &UdpSocket, server: SocketAddr, user: &str, agent: u32, n: u64) -> Option<Msg> {
    let port = sock.local_addr().unwrap().port();
    let call_id = format!("d{agent}-{n}");
    let inv = Req::invite(
        user,
        &agent.to_string(),
        &call_id,
        &format!("z9hG4bK-{call_id}"),
        "UDP",
        port,
    );
    sock.send_to(inv.as_bytes(), server).ok()?;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_millis(700);
    while Instant::now() < deadline {
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let m = Msg {
            raw: String::from_utf8_lossy(&buf[..len]).into_owned(),
        };
        if m.status() >= 200 && m.header("Call-ID").as_deref() == Some(call_id.as_str()) {
            if m.status() == 200 {
                let ack = Req::ack(
                    user,
                    &agent.to_string(),
                    &call_id,
                    &m.to_tag().unwrap(),
                    "UDP",
                    port,
                );
                let _ = sock.send_to(ack.as_bytes(), server);
            }
            return Some(m);
        }
    }
    None
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

#[test]
fn every_confirmed_state_survives_kill_9() {
    kill_9_keeps_every_confirmed_state("journal");
}

#[test]
fn every_confirmed_state_survives_kill_9_with_the_redb_backend() {
    kill_9_keeps_every_confirmed_state("redb");
}

fn kill_9_keeps_every_confirmed_state(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    std::fs::write(&cfg, config_with(&dir.path().join("data"), backend)).unwrap();
    let (mut facd, addr) = start(&cfg);
    let sock = client();
    // Per agent: the last confirmed state (true = logged in) and an
    // unconfirmed later attempt, if any.
    let mut confirmed: Vec<Option<bool>> = vec![None; AGENTS as usize];
    let mut unconfirmed: Vec<Option<bool>> = vec![None; AGENTS as usize];
    let mut n = 0u64;
    let mut killed = false;
    while !killed {
        for a in 0..AGENTS {
            n += 1;
            let login = (n / 7 + u64::from(a)).is_multiple_of(2);
            let code = if login { "*388000" } else { "*398000" };
            // After a fixed number of calls, not a time: a loaded machine
            // must not make the run too short to mean anything.
            if n > KILL_AFTER_CALLS && !killed {
                // SIGKILL mid-run, with calls in flight.
                facd.kill().unwrap();
                facd.wait().unwrap();
                killed = true;
            }
            match call(&sock, addr, code, 2000 + a, n) {
                Some(m) if m.status() == 200 => {
                    confirmed[a as usize] = Some(login);
                    unconfirmed[a as usize] = None;
                }
                _ => unconfirmed[a as usize] = Some(login),
            }
        }
    }
    assert!(
        confirmed.iter().filter(|c| c.is_some()).count() >= AGENTS as usize / 2,
        "too few confirmed states before the kill: {confirmed:?}"
    );

    let (mut facd, addr) = start(&cfg);
    let mut checked = 0;
    for a in 0..AGENTS {
        let Some(want) = confirmed[a as usize] else {
            continue;
        };
        // *368000: 200 if logged in, 403 Not Logged In if not (and changes nothing else).
        n += 1;
        let m = call(&sock, addr, "*368000", 2000 + a, n).expect("no answer after restart");
        let logged_in = m.status() == 200;
        let allowed = [Some(want), unconfirmed[a as usize]];
        assert!(
            allowed.contains(&Some(logged_in)),
            "agent {}: confirmed logged_in={want}, found {logged_in} ({})",
            2000 + a,
            m.start_line()
        );
        checked += 1;
    }
    assert!(checked >= AGENTS as usize / 2);
    facd.kill().unwrap();
    facd.wait().unwrap();
}

#[test]
fn graceful_restart_keeps_state_and_a_second_facd_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    std::fs::write(&cfg, config(&dir.path().join("data"))).unwrap();
    let (mut facd, addr) = start(&cfg);
    let sock = client();
    assert_eq!(call(&sock, addr, "*388000", 2001, 1).unwrap().status(), 200);

    // Same directory, second process: refused with the reason, exit 1.
    let out = Command::new(common::facd_bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("another facd is using this storage directory"));

    Command::new("kill")
        .arg("-TERM")
        .arg(facd.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = facd.try_wait().unwrap() {
            assert_eq!(s.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "facd did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut facd, addr) = start(&cfg);
    let m = call(&sock, addr, "*378000", 2001, 2).unwrap();
    assert_eq!(m.status(), 200, "the login was lost: {}", m.start_line());
    assert_eq!(
        m.header("X-Agent-State").unwrap(),
        "queue=8000;state=NOT_READY"
    );
    facd.kill().unwrap();
    facd.wait().unwrap();
}

#[test]
fn torn_tail_starts_with_a_warning_and_corruption_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    let data = dir.path().join("data");
    std::fs::write(&cfg, config(&data)).unwrap();
    let (mut facd, addr) = start(&cfg);
    let sock = client();
    for (i, a) in [2001, 2002, 2003].into_iter().enumerate() {
        assert_eq!(
            call(&sock, addr, "*388000", a, i as u64).unwrap().status(),
            200
        );
    }
    facd.kill().unwrap();
    facd.wait().unwrap();
    let journal = data.join("journal");
    let bytes = std::fs::read(&journal).unwrap();
    assert!(bytes.len() > 8 + 3 * 8, "three records were journaled");

    // Cut inside the last record: the first two logins survive.
    std::fs::write(&journal, &bytes[..bytes.len() - 5]).unwrap();
    let (mut facd, addr) = start(&cfg);
    assert_eq!(
        call(&sock, addr, "*368000", 2001, 10).unwrap().status(),
        200
    );
    assert_eq!(
        call(&sock, addr, "*368000", 2002, 11).unwrap().status(),
        200
    );
    assert_eq!(
        call(&sock, addr, "*368000", 2003, 12).unwrap().status(),
        403
    );
    facd.kill().unwrap();
    facd.wait().unwrap();

    // A flipped byte in a record followed by others: refuse, never start empty.
    let mut bytes = bytes.clone();
    let len = bytes.len();
    let mut j = std::fs::read(&journal).unwrap();
    if j.len() <= 8 + 16 {
        j = bytes.clone();
    }
    let _ = len;
    j[8 + 10] ^= 0x40;
    j.extend_from_slice(&bytes.split_off(8));
    std::fs::write(&journal, &j).unwrap();
    let out = Command::new(common::facd_bin())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("journal: corrupt at byte 8: record checksum mismatch"),
        "{err}"
    );
}

#[tokio::test]
async fn a_full_disk_answers_500_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but a tmpfs cannot be mounted"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    // Enough agents that their logins fill 48 KiB: journal records are
    // compact binary (about 35 bytes a change, framed), and the snapshot
    // written at start holds every agent too.
    const AGENTS: u32 = 1200;
    let mut cfg = common::base_config("confirm_ms = 20");
    for a in 0..AGENTS {
        cfg.push_str(&format!(
            "\n[[agents]]\nextension = \"{}\"\nname = \"F\"\nqueues = [\"8000\"]\n",
            5000 + a
        ));
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = common::TestServer::start_with_storage(&cfg, &mnt.join("data"), tmp).await;
    let c = common::Udp::new(s.udp).await;
    let mut refused = None;
    for a in 0..AGENTS {
        let call_id = format!("full{a}");
        c.send(&Req::invite(
            "*388000",
            &(5000 + a).to_string(),
            &call_id,
            &format!("z9hG4bK-{call_id}"),
            "UDP",
            c.port(),
        ))
        .await;
        let r = c.recv_final_for(&call_id).await;
        match r.status() {
            200 => continue,
            500 => {
                refused = Some((a, r));
                break;
            }
            other => panic!("unexpected {other}: {}", r.raw),
        }
    }
    let (a, r) = refused.expect("the disk never filled up");
    assert_eq!(r.reason(), "Server Internal Error - State Not Saved");
    // Nothing was applied: the agent is still logged out. (A new socket: the
    // unacknowledged 500 is being retransmitted to the old one.)
    let c = common::Udp::new(s.udp).await;
    let probe = "probe-full";
    c.send(&Req::invite(
        "*368000",
        &(5000 + a).to_string(),
        probe,
        "z9hG4bK-probe-full",
        "UDP",
        c.port(),
    ))
    .await;
    let p = c.recv_final_for(probe).await;
    assert_eq!(
        (p.status(), p.reason()),
        (403, "Not Logged In"),
        "{}",
        p.raw
    );
    // A phone's key press (SetAgentState in a SUBSCRIBE) is refused the
    // same way: 500, no subscription, no NOTIFY.
    let agent = (5000 + a).to_string();
    let body =
        "<SetAgentState xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\">\
                <requestedAgentState>loggedOn</requestedAgentState></SetAgentState>";
    c.send(&format!(
        "SUBSCRIBE sip:{agent}@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-full-sub;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{agent}@facd.test>;tag=full-sub\r\n\
         To: <sip:{agent}@facd.test>\r\n\
         Call-ID: full-sub\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:{agent}@127.0.0.1:{port}>\r\n\
         Event: as-feature-event\r\n\
         Expires: 600\r\n\
         Content-Type: application/x-as-feature-event+xml\r\n\
         Content-Length: {len}\r\n\r\n{body}",
        port = c.port(),
        len = body.len()
    ))
    .await;
    let r = c.recv_final_for("full-sub").await;
    assert_eq!(
        (r.status(), r.reason()),
        (500, "Server Internal Error - State Not Saved"),
        "{}",
        r.raw
    );
    while let Some(m) = c.recv_within(300).await {
        assert_ne!(m.method(), "NOTIFY", "{}", m.raw);
    }
    s.stop().await;
}

/// A wrap-up deadline is stored as an absolute time: after a restart it
/// fires when it would have, not wrap_up_secs after the restart.
#[test]
fn wrap_up_resumes_with_its_remaining_time_after_restart() {
    use facd::engine::{
        AgentDef, AgentState, CallKind, Cause, Change, Command, Engine, Model, QueueDef, Target,
    };
    use facd::store::Store;
    let model = || Model {
        queues: vec![QueueDef {
            number: "8000".into(),
            name: "S".into(),
            auto_ready: true,
            wrap_up_secs: 30,
            not_ready_after_other_call: false,
        }],
        agents: vec![AgentDef {
            extension: "1001".into(),
            name: "A".into(),
            queues: vec!["8000".into()],
        }],
        reasons: vec![],
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = |store: &Store, changes: Vec<Change>| {
        let (tx, rx) = std::sync::mpsc::channel();
        store.append(
            vec![serde_json::to_vec(&changes).unwrap()],
            Box::new(move |r| tx.send(r).unwrap()),
        );
        rx.recv().unwrap().unwrap();
    };
    let t0 = 1_700_000_000_000u64;
    {
        let (store, _) = Store::open(dir.path(), true).unwrap();
        let mut e = Engine::new(model());
        let agent = || facd::engine::AgentId::from("1001");
        e.apply(
            t0,
            Command::Login {
                agent: agent(),
                target: Target::All,
            },
            Cause::Fac,
        )
        .unwrap();
        e.apply(
            t0,
            Command::CallStart {
                agent: agent(),
                call_id: "c".into(),
                kind: CallKind::Acd {
                    queue: "8000".into(),
                },
            },
            Cause::Call,
        )
        .unwrap();
        e.apply(
            t0 + 1000,
            Command::CallEnd {
                agent: agent(),
                call_id: "c".into(),
            },
            Cause::Call,
        )
        .unwrap();
        journal(&store, e.take_changes());
        assert_eq!(e.next_deadline(), Some(t0 + 31_000));
        // "crash": the store is dropped without a snapshot.
    }
    let (_store, rec) = Store::open(dir.path(), true).unwrap();
    let mut e = Engine::new(model());
    for r in rec.records {
        for c in serde_json::from_slice::<Vec<Change>>(&r).unwrap() {
            e.restore(c).unwrap();
        }
    }
    assert_eq!(e.agent("1001").unwrap().queues[0].state, AgentState::WrapUp);
    // Restarted 10 s later: 20 s remain.
    assert_eq!(e.next_deadline(), Some(t0 + 31_000));
    assert!(e.handle_timeout(t0 + 11_000).is_empty());
    let ev = e.handle_timeout(t0 + 31_000);
    assert_eq!(ev[0].to, AgentState::Ready);
}
