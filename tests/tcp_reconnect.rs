//! SPEC §4 over TCP: what facd sends inside a call or subscription (BYE,
//! NOTIFY) goes over the connection the request came on while it is open;
//! once the phone has closed it, facd connects to the phone's Contact (a
//! listener this test owns on loopback), sends there, gets the response
//! on that connection and reuses it (IPv4 and IPv6; through a
//! record-routing proxy, to the proxy). A Contact facd cannot dial (a host
//! name, a closed port) is logged and the dialog or subscription ends at
//! once, as after a Timer F. Every socket here is on loopback.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{base_config, Msg, Req, Tcp, TestServer};
use facd::engine::{Cause, Command, Target};
use tokio::net::TcpListener;

/// RFC 3261 default T1: Timer F is 32 s, so a transaction that nobody
/// ends keeps a graceful stop waiting its full 5 s drain limit.
fn config() -> String {
    format!(
        "{}\n[subscribe]\n",
        base_config("confirm_ms = 200").replace("t1_ms = 50", "t1_ms = 500")
    )
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

/// The log lines containing every one of `words`.
fn logged(words: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

/// A stop that returns well before the 5 s drain limit proves that no
/// call was left waiting for its BYE's answer or Timer F.
async fn stop_quickly(s: TestServer) {
    let t0 = Instant::now();
    s.stop().await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "graceful stop took {took:?}: a dialog was left open"
    );
}

/// The phone's own listener, where its Contact points.
async fn phone_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// The next connection facd opens to `l`, within `ms`.
async fn accept_within(l: &TcpListener, ms: u64) -> Option<(Tcp, SocketAddr)> {
    let (stream, from) = tokio::time::timeout(Duration::from_millis(ms), l.accept())
        .await
        .ok()?
        .unwrap();
    Some((Tcp::from_stream(stream), from))
}

/// A star-code call over a TCP connection of its own whose Contact (and
/// Via) name `contact`; returns the connection after the ACK.
async fn call_then_ack(s: &TestServer, call: &str, contact: &str) -> Tcp {
    call_from(Tcp::connect(s.tcp).await, call, contact).await
}

/// Like [`call_then_ack`], over `c`.
async fn call_from(mut c: Tcp, call: &str, contact: &str) -> Tcp {
    let invite = Req::invite("*38", "1001", call, &format!("z9hG4bK-{call}"), "TCP", 5060)
        .replace("127.0.0.1:5060", contact);
    c.send(invite.as_bytes()).await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let tag = ok.to_tag().unwrap();
    c.send(Req::ack("*38", "1001", call, &tag, "TCP", c.port()).as_bytes())
        .await;
    c
}

#[tokio::test]
async fn the_bye_goes_over_a_new_connection_once_the_caller_closed_its_own() {
    logs();
    let s = TestServer::start(&config()).await;
    let (listener, lport) = phone_listener().await;
    let c = call_then_ack(&s, "rc-bye", &format!("127.0.0.1:{lport}")).await;
    // The phone hangs its connection up right after the ACK; facd's BYE
    // comes confirm_ms later, on a connection facd opens to the Contact.
    drop(c);
    let (mut conn, from) = accept_within(&listener, 3000)
        .await
        .expect("facd opened no connection to the Contact for its BYE");
    assert_eq!(
        from.ip().to_string(),
        "127.0.0.1",
        "from the address the call came to"
    );
    let bye = conn.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    assert_eq!(bye.header("Call-ID").as_deref(), Some("rc-bye"));
    assert!(
        bye.start_line()
            .starts_with(&format!("BYE sip:1001@127.0.0.1:{lport};transport=tcp ")),
        "{}",
        bye.raw
    );
    // Via: TCP, our address (the new connection's IP) at our listening port.
    let via = bye.header("Via").unwrap();
    assert!(
        via.starts_with(&format!(
            "SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bK",
            s.tcp.port()
        )),
        "{via}"
    );
    conn.send(Req::ok_for(&bye).as_bytes()).await;
    // The connection serves like an accepted one: an OPTIONS over it is answered on it.
    conn.send(
        Req::options(lport, "z9hG4bK-rc-opt")
            .replace("/UDP", "/TCP")
            .as_bytes(),
    )
    .await;
    let r = conn.recv().await;
    assert_eq!(
        (r.status(), r.header("CSeq").as_deref()),
        (200, Some("1 OPTIONS")),
        "{}",
        r.raw
    );
    // The 200 reached the BYE's client transaction: no second BYE, no
    // other connection, and nothing keeps the stop waiting.
    assert!(conn.recv_within(700).await.is_none(), "a second message");
    assert!(
        accept_within(&listener, 10).await.is_none(),
        "a second connection"
    );
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.tcp_dial_failed.load(Ordering::Relaxed), 0);
    assert_eq!(
        logged(&["tcp connection opened to the remote target", "rc-bye"]).len(),
        1
    );
    stop_quickly(s).await;
}

#[tokio::test]
async fn a_call_whose_connection_stays_open_gets_its_bye_on_it() {
    let s = TestServer::start(&config()).await;
    let (listener, lport) = phone_listener().await;
    let mut c = call_then_ack(&s, "rc-open", &format!("127.0.0.1:{lport}")).await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    c.send(Req::ok_for(&bye).as_bytes()).await;
    assert!(
        accept_within(&listener, 300).await.is_none(),
        "facd dialled while the connection was open"
    );
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 0);
    stop_quickly(s).await;
}

/// A SUBSCRIBE by agent 1001 to its own address, Contact at `contact`.
fn subscribe(
    call: &str,
    cseq: u32,
    to_tag: Option<&str>,
    contact: &str,
    port: u16,
    expires: u32,
) -> String {
    let to_tag = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    format!(
        "SUBSCRIBE sip:1001@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-{call}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@facd.test>;tag=phone-{call}\r\n\
         To: <sip:1001@facd.test>{to_tag}\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <sip:1001@{contact};transport=tcp>\r\n\
         Event: as-feature-event\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Reads until the final response with `cseq` and the NOTIFY after it
/// (answered 200); returns both.
async fn response_and_notify(c: &mut Tcp, cseq: &str) -> (Msg, Msg) {
    let (mut resp, mut notify) = (None, None);
    while resp.is_none() || notify.is_none() {
        let m = c.recv().await;
        if m.method() == "NOTIFY" {
            c.send(Req::ok_for(&m).as_bytes()).await;
            notify = Some(m);
        } else if m.header("CSeq").as_deref() == Some(cseq) {
            resp = Some(m);
        }
    }
    (resp.unwrap(), notify.unwrap())
}

/// The root element of the NOTIFY's ACD event (`AgentReadyEvent`, …).
fn agent_state(m: &Msg) -> &str {
    let b = m.body();
    b.find("<Agent")
        .and_then(|i| b[i + 1..].split([' ', '>']).next())
        .unwrap_or("")
}

fn cseq_of(m: &Msg) -> u32 {
    m.header("CSeq")
        .and_then(|c| c.split(' ').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[tokio::test]
async fn notifies_go_over_a_new_connection_once_the_phone_closed_its_own() {
    logs();
    let s = TestServer::start(&config()).await;
    let (listener, lport) = phone_listener().await;
    let contact = format!("127.0.0.1:{lport}");
    let mut c = Tcp::connect(s.tcp).await;
    c.send(subscribe("rc-sub", 1, None, &contact, lport, 600).as_bytes())
        .await;
    let (ok, first) = response_and_notify(&mut c, "1 SUBSCRIBE").await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let tag = ok.to_tag().unwrap();
    assert_eq!(agent_state(&first), "AgentLoggedOffEvent");
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        accept_within(&listener, 10).await.is_none(),
        "nothing to send yet"
    );

    // A change from the REST side of the core: the NOTIFY comes over a new connection.
    let apply = |cmd: Command| {
        let core = s.core.clone();
        async move { core.apply(cmd, Cause::Api).await.unwrap().unwrap() }
    };
    apply(Command::Login {
        agent: "1001".into(),
        target: Target::Queue("8000".into()),
    })
    .await;
    let (mut conn, _) = accept_within(&listener, 3000)
        .await
        .expect("facd opened no connection to the Contact for its NOTIFY");
    let on = conn.recv().await;
    assert_eq!(on.method(), "NOTIFY", "{}", on.raw);
    assert_eq!(cseq_of(&on), cseq_of(&first) + 1);
    assert_eq!(agent_state(&on), "AgentLoggedOnEvent", "{}", on.raw);
    conn.send(Req::ok_for(&on).as_bytes()).await;
    let n = conn.recv().await;
    assert_eq!(cseq_of(&n), cseq_of(&on) + 1);
    assert_eq!(agent_state(&n), "AgentReadyEvent", "{}", n.raw);
    assert!(n
        .start_line()
        .starts_with(&format!("NOTIFY sip:1001@{contact};transport=tcp ")));
    let via = n.header("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/TCP 127.0.0.1:{};", s.tcp.port())),
        "{via}"
    );
    conn.send(Req::ok_for(&n).as_bytes()).await;

    // The next change reuses that connection.
    apply(Command::NotReady {
        agent: "1001".into(),
        target: Target::All,
        reason: None,
    })
    .await;
    let n2 = conn.recv().await;
    assert_eq!(
        (n2.method(), cseq_of(&n2)),
        ("NOTIFY", cseq_of(&n) + 1),
        "{}",
        n2.raw
    );
    assert_eq!(agent_state(&n2), "AgentNotReadyEvent");
    conn.send(Req::ok_for(&n2).as_bytes()).await;
    assert!(
        accept_within(&listener, 300).await.is_none(),
        "a second connection"
    );

    // The phone may use facd's connection too: an unsubscribe over it is
    // answered on it, with the terminating NOTIFY.
    conn.send(subscribe("rc-sub", 2, Some(&tag), &contact, lport, 0).as_bytes())
        .await;
    let (ok, last) = response_and_notify(&mut conn, "2 SUBSCRIBE").await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert!(
        last.header("Subscription-State")
            .unwrap()
            .starts_with("terminated"),
        "{}",
        last.raw
    );
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 1);
    stop_quickly(s).await;
}

#[tokio::test]
async fn a_contact_with_a_host_name_is_not_dialled_and_the_call_ends() {
    logs();
    let s = TestServer::start(&config()).await;
    let c = call_then_ack(&s, "rc-name", "phone.invalid:5062").await;
    drop(c);
    // The BYE cannot go anywhere: logged once, the dialog is forgotten
    // at once (not after Timer F).
    let deadline = Instant::now() + Duration::from_secs(3);
    while logged(&["cannot be dialled", "rc-name"]).is_empty() {
        assert!(Instant::now() < deadline, "nothing logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = logged(&["cannot be dialled", "rc-name"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("phone.invalid"), "{}", lines[0]);
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 0);
    assert_eq!(s.stats.tcp_dial_failed.load(Ordering::Relaxed), 0);
    stop_quickly(s).await;
}

#[tokio::test]
async fn an_unreachable_contact_is_logged_and_ends_the_call_and_the_subscription() {
    logs();
    let s = TestServer::start(&config()).await;
    // A port nobody listens on.
    let (l, dead) = phone_listener().await;
    drop(l);
    let contact = format!("127.0.0.1:{dead}");

    let c = call_then_ack(&s, "rc-dead", &contact).await;
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.stats.tcp_dial_failed.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "no connect attempt failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = logged(&["cannot open a tcp connection", &contact, "rc-dead"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("refused"),
        "{}",
        lines[0]
    );

    // A subscription to the same dead Contact: its NOTIFY cannot go, so
    // the subscription ends; a refresh then takes it up anew.
    let mut c = Tcp::connect(s.tcp).await;
    c.send(subscribe("rc-dead-sub", 1, None, &contact, dead, 600).as_bytes())
        .await;
    let (ok, _) = response_and_notify(&mut c, "1 SUBSCRIBE").await;
    let tag = ok.to_tag().unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.core
        .apply(
            Command::Logout {
                agent: "1001".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.stats.tcp_dial_failed.load(Ordering::Relaxed) < 2 {
        assert!(
            Instant::now() < deadline,
            "no connect attempt for the NOTIFY failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = Tcp::connect(s.tcp).await;
    let port = c.port();
    c.send(
        subscribe(
            "rc-dead-sub",
            2,
            Some(&tag),
            &format!("127.0.0.1:{port}"),
            port,
            600,
        )
        .as_bytes(),
    )
    .await;
    let (r, n) = response_and_notify(&mut c, "2 SUBSCRIBE").await;
    assert_eq!(r.status(), 200, "{}", r.raw);
    assert_eq!(agent_state(&n), "AgentLoggedOffEvent");
    assert_eq!(
        logged(&["subscription re-established", "rc-dead-sub"]).len(),
        1,
        "the old one had ended"
    );
    assert_eq!(
        logged(&["cannot open a tcp connection", &contact, "rc-dead-sub"]).len(),
        1
    );
    stop_quickly(s).await;
}

#[tokio::test]
async fn a_dialled_connection_obeys_the_idle_timeout_and_the_per_ip_cap() {
    logs();
    let config = config()
        .replace("t1_ms = 500", "t1_ms = 500\ntcp_idle_secs = 1")
        .replace(
            "[subscribe]",
            "[limits]\ntcp_connections_per_ip = 1\nexempt_loopback = false\n\n[subscribe]",
        );
    let s = TestServer::start(&config).await;
    let (listener, lport) = phone_listener().await;
    let contact = format!("127.0.0.1:{lport}");

    // Idle timeout: the connection facd opened for its BYE closes after
    // sip.tcp_idle_secs of silence, like an accepted one.
    let c = call_then_ack(&s, "rc-idle", &contact).await;
    drop(c);
    let (mut conn, _) = accept_within(&listener, 3000)
        .await
        .expect("no connection for the BYE");
    let bye = conn.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    conn.send(Req::ok_for(&bye).as_bytes()).await;
    let t0 = Instant::now();
    assert!(
        conn.closed_within(3000).await,
        "facd kept an idle connection open"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(800),
        "closed before the idle timeout"
    );

    // Per-IP cap (1): a connection from 127.0.0.1 is open, so facd may
    // not open another to 127.0.0.1 for a call that came from 127.0.0.2.
    let _hold = Tcp::connect(s.tcp).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let c = call_from(
        Tcp::connect_from(s.tcp, "127.0.0.2").await,
        "rc-cap",
        &contact,
    )
    .await;
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    while s.stats.tcp_dial_failed.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "the dial was not refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = logged(&["cannot open a tcp connection", "rc-cap"]);
    assert!(
        lines.len() == 1 && lines[0].contains("per-IP cap"),
        "{lines:?}"
    );
    assert!(
        accept_within(&listener, 200).await.is_none(),
        "facd connected beyond the cap"
    );
    assert_eq!(s.stats.tcp_dialed.load(Ordering::Relaxed), 1);
    stop_quickly(s).await;
}

#[tokio::test]
async fn the_bye_reaches_a_bracketed_ipv6_contact() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let cfg = config().replace(
        r#"listen = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]"#,
        r#"listen = ["udp:[::1]:0", "tcp:[::1]:0"]"#,
    );
    let s = TestServer::start(&cfg).await;
    assert!(s.tcp.is_ipv6());
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let lport = listener.local_addr().unwrap().port();
    let c = call_then_ack(&s, "rc-v6", &format!("[::1]:{lport}")).await;
    drop(c);
    let (mut conn, from) = accept_within(&listener, 3000)
        .await
        .expect("facd opened no connection to the IPv6 Contact");
    assert_eq!(from.ip().to_string(), "::1");
    let bye = conn.recv().await;
    assert!(
        bye.start_line()
            .starts_with(&format!("BYE sip:1001@[::1]:{lport};transport=tcp ")),
        "{}",
        bye.raw
    );
    let via = bye.header("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/TCP [::1]:{};", s.tcp.port())),
        "{via}"
    );
    conn.send(Req::ok_for(&bye).as_bytes()).await;
    assert!(conn.recv_within(500).await.is_none(), "a second message");
    stop_quickly(s).await;
}

#[tokio::test]
async fn with_a_record_route_the_new_connection_goes_to_the_proxy() {
    let s = TestServer::start(&config()).await;
    let (proxy, pport) = phone_listener().await;
    let (phone, lport) = phone_listener().await;
    // The INVITE came through a record-routing proxy (RFC 3261 §12.2.1.1:
    // in-dialog requests go to the first Route, loose routing).
    let mut c = Tcp::connect(s.tcp).await;
    let invite = Req::invite("*38", "1001", "rc-rr", "z9hG4bK-rc-rr", "TCP", lport).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\nRecord-Route: <sip:127.0.0.1:{pport};transport=tcp;lr>\r\n"),
    );
    c.send(invite.as_bytes()).await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let tag = ok.to_tag().unwrap();
    c.send(Req::ack("*38", "1001", "rc-rr", &tag, "TCP", c.port()).as_bytes())
        .await;
    drop(c);
    let (mut conn, _) = accept_within(&proxy, 3000)
        .await
        .expect("facd opened no connection to the proxy");
    let bye = conn.recv().await;
    assert!(
        bye.start_line()
            .starts_with(&format!("BYE sip:1001@127.0.0.1:{lport};transport=tcp ")),
        "the Request-URI stays the remote target: {}",
        bye.raw
    );
    assert_eq!(
        bye.header("Route"),
        Some(format!("<sip:127.0.0.1:{pport};transport=tcp;lr>"))
    );
    conn.send(Req::ok_for(&bye).as_bytes()).await;
    assert!(
        accept_within(&phone, 300).await.is_none(),
        "facd went around the proxy"
    );
    stop_quickly(s).await;
}
