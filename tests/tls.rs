//! SIP over TLS (RFC 3261 §26, RFC 5630) against the real server, with a
//! CA the test makes (rcgen): a TLS phone (the test's own client, with a
//! client certificate) logs in with a star code, gets facd's BYE over its
//! TLS connection and subscribes to its feature keys; once it closes that
//! connection facd opens a new TLS connection to its Contact, verifying
//! the phone's certificate; bad certificates, a plaintext client on the
//! TLS port and a handshake that never finishes are closed, counted and
//! logged once; certificates are re-read on SIGHUP without dropping open
//! connections; and baresip (if installed) dials `*388000` over TLS.

mod common;
mod secure;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::Tcp;
use facd::engine::{Cause, Command as Cmd, Target};
use rustls::pki_types::ServerName;
use secure::{ack, agent_state, invite, ok_for, subscribe, Issued, Pki, Secure, Stream};
use tokio::net::TcpListener;

const ALL: &str = r#"["udp:127.0.0.1:0", "tcp:127.0.0.1:0", "tls:127.0.0.1:0"]"#;

fn sip_keys(server: &Issued, client_ca: Option<&Pki>) -> String {
    let mut s = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        server.cert.display().to_string(),
        server.key.display().to_string()
    );
    if let Some(pki) = client_ca {
        s.push_str(&format!(
            "tls_client_ca = {:?}\n",
            pki.ca.display().to_string()
        ));
    }
    s
}

/// Everything facd logs at info and above, for the whole test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("facd=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(words: &[&str]) -> usize {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .count()
}

/// Waits (polling, at most 10 s) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn a_tls_phone_logs_in_gets_its_bye_and_subscribes() {
    let pki = Pki::new("facd");
    let server = pki.issue("server", &["127.0.0.1", "localhost"]);
    let phone = pki.issue("phone", &["127.0.0.1"]);
    let s = Secure::start(ALL, &sip_keys(&server, Some(&pki)), "").await;
    let tls = s.tls.unwrap();
    let mut c = Stream::tls(tls, &pki.client(Some(&phone))).await;
    let port = c.io.get_ref().0.local_addr().unwrap().port();
    let via = format!("TLS 127.0.0.1:{port}");
    let contact = format!("sip:1001@127.0.0.1:{port};transport=tls");

    c.send(invite("*388000", "tls-1", &via, &contact, "sip").as_bytes())
        .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(
        ok.header("X-Agent-State").as_deref(),
        Some("queue=8000;state=READY")
    );
    // RFC 3261 §26.2 / RFC 5630: transport=tls for a sip: URI over TLS.
    assert_eq!(
        ok.header("Contact").as_deref(),
        Some(format!("<sip:*388000@127.0.0.1:{};transport=tls>", tls.port()).as_str())
    );
    c.send(ack(&ok, "tls-1", &via).as_bytes()).await;
    // facd's BYE after confirm_ms, over the phone's TLS connection.
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    assert!(
        bye.start_line().starts_with(&format!("BYE {contact} ")),
        "{}",
        bye.raw
    );
    let bye_via = bye.header("Via").unwrap();
    assert!(
        bye_via.starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{};branch=", tls.port())),
        "{bye_via}"
    );
    c.send(ok_for(&bye).as_bytes()).await;

    // A sips: Request-URI (RFC 5630 §3.2): our Contact is sips: without transport=tls.
    let contact_sips = format!("sips:1001@127.0.0.1:{port}");
    c.send(invite("*36", "tls-2", &via, &contact_sips, "sips").as_bytes())
        .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(
        ok.header("Contact").as_deref(),
        Some(format!("<sips:*36@127.0.0.1:{}>", tls.port()).as_str())
    );
    c.send(ack(&ok, "tls-2", &via).as_bytes()).await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    c.send(ok_for(&bye).as_bytes()).await;

    // Feature keys: SUBSCRIBE, 200, NOTIFY over the same TLS connection.
    c.send(subscribe("tls-sub", 1, None, &via, &contact).as_bytes())
        .await;
    let (mut ok, mut notify) = (None, None);
    while ok.is_none() || notify.is_none() {
        let m = c.recv().await;
        if m.method() == "NOTIFY" {
            c.send(ok_for(&m).as_bytes()).await;
            notify = Some(m);
        } else {
            ok = Some(m);
        }
    }
    let (ok, notify) = (ok.unwrap(), notify.unwrap());
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(notify.header("Event").as_deref(), Some("as-feature-event"));
    assert!(notify
        .header("Via")
        .unwrap()
        .starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{};", tls.port())));
    assert_eq!(agent_state(&notify), "AgentReadyEvent", "{}", notify.raw);
    assert_eq!(
        s.sip_tls.as_ref().unwrap().failed.load(Ordering::Relaxed),
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn once_the_phone_closed_its_tls_connection_facd_opens_a_verified_one() {
    let pki = Pki::new("facd");
    let server = pki.issue("server", &["127.0.0.1"]);
    let phone = pki.issue("phone", &["127.0.0.1"]);
    let s = Secure::start(ALL, &sip_keys(&server, Some(&pki)), "").await;
    let tls = s.tls.unwrap();
    // The phone's own TLS listener, where its Contact points; it asks
    // facd for a certificate from the same CA.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lport = listener.local_addr().unwrap().port();
    let acceptor = pki.server(&phone, Some(&pki));

    let mut c = Stream::tls(tls, &pki.client(Some(&phone))).await;
    let port = c.io.get_ref().0.local_addr().unwrap().port();
    let via = format!("TLS 127.0.0.1:{port}");
    let contact = format!("sips:1001@127.0.0.1:{lport}");
    c.send(subscribe("tls-redial", 1, None, &via, &contact).as_bytes())
        .await;
    let mut seen = 0;
    while seen < 2 {
        let m = c.recv().await;
        if m.method() == "NOTIFY" {
            c.send(ok_for(&m).as_bytes()).await;
        } else {
            assert_eq!(m.status(), 200, "{}", m.raw);
        }
        seen += 1;
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;

    s.core
        .apply(
            Cmd::Login {
                agent: "1001".into(),
                target: Target::Queue("8000".into()),
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("facd opened no connection to the phone's Contact")
        .unwrap();
    // The handshake succeeds only if facd showed a certificate of our CA.
    let io = acceptor.accept(tcp).await.expect("facd's TLS handshake");
    let mut conn = Stream::new(io);
    let n = conn.recv().await;
    assert_eq!(n.method(), "NOTIFY", "{}", n.raw);
    assert!(
        n.start_line().starts_with(&format!("NOTIFY {contact} ")),
        "{}",
        n.raw
    );
    assert!(n
        .header("Via")
        .unwrap()
        .starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{};", tls.port())));
    // A login is told as AgentLoggedOnEvent first (the state follows).
    assert_eq!(agent_state(&n), "AgentLoggedOnEvent");
    conn.send(ok_for(&n).as_bytes()).await;
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.tcp_dial_failed.load(Ordering::Relaxed), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_phone_whose_certificate_does_not_verify_gets_no_notify() {
    let pki = Pki::new("facd");
    let server = pki.issue("server", &["127.0.0.1"]);
    let phone = pki.issue("phone", &["127.0.0.1"]);
    // The phone's listener shows a certificate for another address.
    let wrong_name = pki.issue("wrong-name", &["192.0.2.1"]);
    let s = Secure::start(ALL, &sip_keys(&server, Some(&pki)), "").await;
    let tls = s.tls.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lport = listener.local_addr().unwrap().port();

    let mut c = Stream::tls(tls, &pki.client(Some(&phone))).await;
    let port = c.io.get_ref().0.local_addr().unwrap().port();
    let via = format!("TLS 127.0.0.1:{port}");
    let contact = format!("sip:1001@127.0.0.1:{lport};transport=tls");
    c.send(subscribe("tls-bad-peer", 1, None, &via, &contact).as_bytes())
        .await;
    for _ in 0..2 {
        let m = c.recv().await;
        if m.method() == "NOTIFY" {
            c.send(ok_for(&m).as_bytes()).await;
        }
    }
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.core
        .apply(
            Cmd::Login {
                agent: "1001".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    let (tcp, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("facd did not try to connect")
        .unwrap();
    // facd refuses our certificate (it names 192.0.2.1, not 127.0.0.1).
    let acceptor = pki.server(&wrong_name, None);
    let hs = acceptor.accept(tcp).await;
    if let Ok(io) = hs {
        let mut conn = Stream::new(io);
        assert!(
            conn.recv_within(1000).await.is_none(),
            "facd sent a NOTIFY to a peer whose certificate names another address"
        );
    }
    let stats = s.stats.clone();
    eventually("the dial counted as failed", || {
        stats.tcp_dial_failed.load(Ordering::Relaxed) == 1
    })
    .await;
    s.stop().await;
}

#[tokio::test]
async fn bad_certificates_plaintext_and_stalled_handshakes_are_closed_counted_and_logged_once() {
    logs();
    let pki = Pki::new("facd");
    let rogue = Pki::new("rogue");
    let server = pki.issue("server", &["127.0.0.1"]);
    let good = pki.issue("phone", &["127.0.0.1"]);
    let bad = rogue.issue("intruder", &["127.0.0.1"]);
    let s = Secure::start(
        ALL,
        &format!("{}tcp_message_secs = 1\n", sip_keys(&server, Some(&pki))),
        "",
    )
    .await;
    let tls = s.tls.unwrap();
    let ctx = s.sip_tls.clone().unwrap();
    let failed = || ctx.failed.load(Ordering::Relaxed);
    let options = common::Req::options(5060, "z9hG4bK-tls-opt").replace("/UDP", "/TLS");

    // A client certificate from another CA: the handshake fails, nothing is answered.
    let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
    let name = ServerName::IpAddress(tls.ip().into());
    if let Ok(io) = pki.client(Some(&bad)).connect(name.clone(), tcp).await {
        let mut c = Stream::new(io);
        let _ = tokio::io::AsyncWriteExt::write_all(&mut c.io, options.as_bytes()).await;
        assert!(c.recv_within(2000).await.is_none(), "answered a bad client");
    }
    eventually("a bad client certificate counted", || failed() >= 1).await;

    // No client certificate at all, while tls_client_ca asks for one.
    let tcp = tokio::net::TcpStream::connect(tls).await.unwrap();
    if let Ok(io) = pki.client(None).connect(name.clone(), tcp).await {
        let mut c = Stream::new(io);
        let _ = tokio::io::AsyncWriteExt::write_all(&mut c.io, options.as_bytes()).await;
        assert!(
            c.recv_within(2000).await.is_none(),
            "answered a client without certificate"
        );
    }
    eventually("a missing client certificate counted", || failed() >= 2).await;

    // Plaintext SIP on the TLS port: closed, never answered in SIP.
    let mut plain = Tcp::connect(tls).await;
    plain.send(options.as_bytes()).await;
    let mut got = Vec::new();
    let closed = loop {
        let chunk = plain.read_raw(5000).await;
        if chunk.is_empty() {
            break plain.closed_within(5000).await;
        }
        got.extend_from_slice(&chunk);
    };
    assert!(closed, "the plaintext connection stays open");
    assert!(
        !String::from_utf8_lossy(&got).contains("SIP/2.0"),
        "plaintext was answered in SIP"
    );
    eventually("plaintext counted", || failed() >= 3).await;

    // A handshake that never finishes: half a ClientHello record header, then nothing.
    let mut stalled = Tcp::connect(tls).await;
    stalled.send(&[0x16, 0x03, 0x01]).await;
    assert!(
        stalled.closed_within(10_000).await,
        "a stalled handshake is never closed"
    );
    eventually("the stalled handshake counted", || failed() >= 4).await;

    // A good client still gets in, and the four failures made one log line.
    let mut c = Stream::tls(tls, &pki.client(Some(&good))).await;
    c.send(options.as_bytes()).await;
    assert_eq!(c.recv().await.status(), 200);
    assert_eq!(failed(), 4);
    assert_eq!(logged(&["tls handshake failed: connection closed"]), 1);
    s.stop().await;
}

#[test]
fn certificates_are_re_read_on_sighup_and_open_connections_stay() {
    let pki = Pki::new("facd");
    let first = pki.issue("server", &["127.0.0.1"]);
    let phone = pki.issue("phone", &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    let listen = r#"["udp:127.0.0.1:0", "tls:127.0.0.1:0"]"#;
    std::fs::write(
        &cfg,
        format!(
            "{}\n[storage]\ndir = {:?}\n",
            common::base_config(&sip_keys(&first, None)).replace(
                r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
                &format!("listen = {listen}")
            ),
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let (mut child, tls) = spawn_with_tls(&cfg);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = pki.client(Some(&phone));
        let mut old = Stream::tls(tls, &client).await;
        let seen = |s: &Stream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>| {
            s.io.get_ref().1.peer_certificates().unwrap()[0].to_vec()
        };
        let before = seen(&old);
        assert_eq!(before, secure::certs(&first.cert)[0].to_vec());

        // A new certificate in the same files, then SIGHUP.
        let second = pki.issue("server-2", &["127.0.0.1"]);
        std::fs::copy(&second.cert, &first.cert).unwrap();
        std::fs::copy(&second.key, &first.key).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let want = secure::certs(&second.cert)[0].to_vec();
        let mut renewed = false;
        for _ in 0..500 {
            let c = Stream::tls(tls, &client).await;
            if seen(&c) == want {
                renewed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(renewed, "the new certificate was never served");
        // The connection opened before the reload still works.
        let options = common::Req::options(5060, "z9hG4bK-hup").replace("/UDP", "/TLS");
        old.send(options.as_bytes()).await;
        assert_eq!(old.recv().await.status(), 200);
    });
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `facd --config <config>` and returns it with its TLS address,
/// read from its "facd listening on … tls:<addr> …" line.
fn spawn_with_tls(config: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(common::facd_bin())
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let tls = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("tls:"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no tls: address in {line:?}"));
    (child, tls)
}

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

#[test]
fn baresip_dials_a_star_code_over_tls_and_the_agent_logs_in() {
    if !baresip_ready() {
        return;
    }
    let pki = Pki::new("facd");
    let server = pki.issue("server", &["127.0.0.1", "localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("facd.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[storage]\ndir = {:?}\n",
            common::base_config(&format!("confirm_ms = 300\n{}", sip_keys(&server, None))).replace(
                r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
                r#"listen = ["udp:127.0.0.1:0", "tls:127.0.0.1:0"]"#
            ),
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let (mut facd, tls) = spawn_with_tls(&cfg);

    // baresip: one TLS account (agent 1001, no registration) trusting the
    // test's CA; its own certificate (cert and key in one PEM file) for
    // its TLS listener.
    let bs = dir.path().join("baresip");
    std::fs::create_dir_all(&bs).unwrap();
    let phone = pki.issue("baresip", &["127.0.0.1"]);
    let both = bs.join("phone.pem");
    std::fs::write(
        &both,
        std::fs::read_to_string(&phone.cert).unwrap()
            + &std::fs::read_to_string(&phone.key).unwrap(),
    )
    .unwrap();
    let local = free_pair_of_ports();
    std::fs::write(
        bs.join("config"),
        format!(
            "poll_method epoll\nsip_listen {local}\nsip_certificate {cert}\nsip_cafile {ca}\n\
             audio_source ausine.so,440\naudio_player aufile,/dev/null\naudio_alert aufile,/dev/null\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule ausine.so\n\
             module_app account.so\nmodule_app menu.so\n",
            cert = both.display(),
            ca = pki.ca.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        bs.join("accounts"),
        "<sip:1001@127.0.0.1;transport=tls>;regint=0\n",
    )
    .unwrap();
    std::fs::write(bs.join("contacts"), "").unwrap();
    let out = Command::new("baresip")
        .arg("-f")
        .arg(&bs)
        .args([
            "-s",
            "-t",
            "4",
            "-e",
            &format!("/dial sip:*388000@{tls};transport=tls"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let trace =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let _ = facd.kill();
    let _ = facd.wait();
    assert!(trace.contains("SIP/2.0 200 OK"), "{trace}");
    assert!(
        trace.contains("X-Agent-State: queue=8000;state=READY"),
        "{trace}"
    );
    assert!(trace.contains(";transport=tls>"), "{trace}");
    assert!(trace.contains("ACK sip:*388000@"), "{trace}");
    assert!(
        trace.contains(&format!("TLS {tls} -> ")) && trace.contains("\nBYE "),
        "facd did not hang up over TLS:\n{trace}"
    );
}

#[test]
fn tls_settings_are_checked_with_their_keys() {
    let config = |listen: &str, sip: &str, http: &str| {
        let text = common::base_config(sip)
            .replace(
                r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
                &format!("listen = {listen}"),
            )
            .replace(
                "[http]\nlisten = \"127.0.0.1:0\"\n",
                &format!("[http]\nlisten = \"127.0.0.1:0\"\n{http}\n"),
            );
        match facd::config::Config::from_toml(&text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let e = config(r#"["tls:127.0.0.1:0", "wss:127.0.0.1:0"]"#, "", "");
    assert!(
        e.contains("sip.tls_cert") && e.contains("needs sip.tls_cert and sip.tls_key"),
        "{e}"
    );
    let e = config(
        r#"["ws:127.0.0.1:0"]"#,
        "tls_cert = \"/nonexistent.pem\"",
        "",
    );
    assert!(e.contains("sip.tls_key") && e.contains("is missing"), "{e}");
    assert!(e.contains("cannot read \"/nonexistent.pem\""), "{e}");
    let e = config(
        r#"["udp:127.0.0.1:0"]"#,
        "",
        "tls_key = \"/nonexistent.key\"",
    );
    assert!(
        e.contains("http.tls_cert") && e.contains("is missing"),
        "{e}"
    );
    let e = config(r#"["quic:127.0.0.1:0"]"#, "", "");
    assert!(e.contains("udp, tcp, tls, ws or wss"), "{e}");
    // A file that is not PEM is refused at start, naming its key.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let text = format!(
        "{}\n[storage]\ndir = {:?}\n",
        common::base_config(&format!("tls_cert = {junk:?}\ntls_key = {junk:?}")).replace(
            r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
            r#"listen = ["tls:127.0.0.1:0"]"#
        ),
        dir.path().join("data").display().to_string()
    );
    let cfg = facd::config::Config::from_toml(&text).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(facd::server::Server::bind(cfg))
        .err()
        .expect("a junk certificate was accepted")
        .to_string();
    assert!(
        err.contains("sip.tls_cert") && err.contains("no CERTIFICATE"),
        "{err}"
    );
}

/// A loopback address whose port and the port after it are free for UDP
/// and TCP: baresip listens on `sip_listen` for UDP and TCP and on the next
/// port for TLS, so a free port whose neighbour another test holds makes
/// it fail with "Address already in use".
fn free_pair_of_ports() -> std::net::SocketAddr {
    for _ in 0..200 {
        let Ok(first) = std::net::TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = first.local_addr() else {
            continue;
        };
        let Some(next) = addr.port().checked_add(1) else {
            continue;
        };
        let held = (
            std::net::TcpListener::bind(("127.0.0.1", next)),
            std::net::UdpSocket::bind(addr),
            std::net::UdpSocket::bind(("127.0.0.1", next)),
        );
        if let (Ok(_), Ok(_), Ok(_)) = held {
            return addr;
        }
    }
    panic!("no two free neighbouring ports on 127.0.0.1");
}
