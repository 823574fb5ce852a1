//! Abuse limits end to end against the real server on loopback: a UDP flood
//! from one source IP is cut to its request rate while another source is
//! still answered; the per-IP TCP connection cap; exempt sources; the
//! bounded transaction and dialog tables (503, nothing confirmed is lost).
//! The real password guesser (sipvicious `svcrack`) is in tests/svcrack.rs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facd::engine::AgentState;

use common::{base_config, Req, Tcp, TestServer, Udp};
use tokio::net::UdpSocket;

fn config(limits: &str) -> String {
    // These tests flood from 127.0.0.2: loopback counts like any source.
    format!(
        "{}\n[limits]\nexempt_loopback = false\n{limits}\n",
        base_config("")
    )
}

/// OPTIONS over TCP (the common builder's Via says UDP).
fn options_tcp(port: u16, branch: &str) -> String {
    Req::options(port, branch).replace("SIP/2.0/UDP", "SIP/2.0/TCP")
}

/// Sends OPTIONS and retransmits it like a UA (Timer E, 500 ms) until the
/// 200 comes, for at most `ms`; true if it came.
async fn ping(c: &Udp, branch: &str, ms: u64) -> bool {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let msg = Req::options(c.port(), branch);
    while Instant::now() < deadline {
        c.send(&msg).await;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            match c.recv_within(100).await {
                Some(m) if m.status() == 200 && m.raw.contains(branch) => return true,
                _ => {}
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flood_is_cut_to_the_rate_and_other_sources_are_answered() {
    const FLOOD: usize = 20_000;
    const RATE: u64 = 200;
    const BURST: u64 = 100;
    let s = TestServer::start(&config(&format!(
        "requests_per_sec = {RATE}\nrequest_burst = {BURST}"
    )))
    .await;

    // The flooder: 127.0.0.2, a distinct OPTIONS per datagram, answers counted.
    let flood = Arc::new(UdpSocket::bind("127.0.0.2:0").await.unwrap());
    let fport = flood.local_addr().unwrap().port();
    let answered = Arc::new(AtomicU64::new(0));
    let counter = {
        let (flood, answered) = (flood.clone(), answered.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), flood.recv_from(&mut buf)).await
            {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let started = Instant::now();
    let sender = {
        let (flood, server) = (flood.clone(), s.udp);
        tokio::spawn(async move {
            for i in 0..FLOOD {
                let msg = Req::options(fport, &format!("z9hG4bK-flood-{i}"));
                flood.send_to(msg.as_bytes(), server).await.unwrap();
                if i % 500 == 499 {
                    // Spread over about a second, so the pings interleave.
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        })
    };

    // Meanwhile another source pings; every ping must be answered.
    let other = Udp::new(s.udp).await;
    let mut pings = 0;
    while !sender.is_finished() || pings < 10 {
        assert!(
            ping(&other, &format!("z9hG4bK-ping-{pings}"), 2000).await,
            "OPTIONS {pings} from 127.0.0.1 was not answered during the flood"
        );
        pings += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sender.await.unwrap();
    let flood_secs = started.elapsed().as_secs_f64();
    counter.await.unwrap();
    let got = answered.load(Ordering::Relaxed);
    // The burst, then the rate over the flood's duration (plus slack for
    // the 2 s the counter waits after the last answer).
    let most = BURST + (RATE as f64 * (flood_secs + 2.5)) as u64;
    println!(
        "flood: {FLOOD} datagrams in {flood_secs:.2} s, {got} answered (at most {most} allowed); \
         {pings} pings from another source all answered"
    );
    assert!(
        got >= BURST,
        "the flooder's first burst was answered ({got})"
    );
    assert!(got <= most, "the flooder was not limited: {got} answers");
    assert!(got < FLOOD as u64 / 10);
    let dropped = s.stats.rate_limited.load(Ordering::Relaxed);
    println!("rate_limited counter: {dropped}");
    assert!(dropped + got <= FLOOD as u64, "only the flood was limited");
    assert!(
        dropped >= FLOOD as u64 / 2,
        "the drops are counted ({dropped})"
    );

    // Once quiet, the source is served again (its bucket refills).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let again = Udp {
        sock: Arc::try_unwrap(flood).unwrap(),
        server: s.udp,
    };
    assert!(ping(&again, "z9hG4bK-after-flood", 2000).await);
    s.stop().await;
}

#[tokio::test]
async fn exempt_sources_are_not_rate_limited() {
    let s = TestServer::start(&config(
        "requests_per_sec = 1\nrequest_burst = 1\nexempt_sources = [\"127.0.0.2/32\"]",
    ))
    .await;
    let trusted = Udp::new_from(s.udp, "127.0.0.2").await;
    for i in 0..30 {
        let b = format!("z9hG4bK-trusted-{i}");
        trusted.send(&Req::options(trusted.port(), &b)).await;
        assert_eq!(trusted.recv().await.status(), 200, "exempt request {i}");
    }
    // The same limits cut an ordinary source after its burst of one.
    let other = Udp::new_from(s.udp, "127.0.0.3").await;
    let mut answered = 0;
    for i in 0..30 {
        let b = format!("z9hG4bK-plain-{i}");
        other.send(&Req::options(other.port(), &b)).await;
        if other.recv_within(100).await.is_some() {
            answered += 1;
        }
    }
    assert!(answered <= 8, "{answered} of 30 answered at 1/s");
    s.stop().await;
}

#[tokio::test]
async fn tcp_connections_are_capped_per_source_ip() {
    let s = TestServer::start(&config("tcp_connections_per_ip = 3")).await;
    let mut open = Vec::new();
    for i in 0..3 {
        let mut c = Tcp::connect_from(s.tcp, "127.0.0.2").await;
        let port = c.port();
        c.send(options_tcp(port, &format!("z9hG4bK-conn-{i}")).as_bytes())
            .await;
        assert_eq!(c.recv().await.status(), 200, "connection {i} is served");
        open.push(c);
    }
    // The fourth from the same source is closed at once, unserved.
    let mut fourth = Tcp::connect_from(s.tcp, "127.0.0.2").await;
    let port = fourth.port();
    let _ = fourth
        .stream
        .try_write(options_tcp(port, "z9hG4bK-conn-4").as_bytes());
    assert!(
        fourth.closed_within(2000).await,
        "the fourth connection was kept"
    );
    // Another source is not affected.
    let mut other = Tcp::connect_from(s.tcp, "127.0.0.3").await;
    let port = other.port();
    other
        .send(options_tcp(port, "z9hG4bK-other").as_bytes())
        .await;
    assert_eq!(other.recv().await.status(), 200);
    // Closing one frees its slot.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut c = Tcp::connect_from(s.tcp, "127.0.0.2").await;
        let port = c.port();
        let _ = c
            .stream
            .try_write(options_tcp(port, "z9hG4bK-again").as_bytes());
        if c.recv_within(300).await.is_some_and(|m| m.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn a_full_transaction_table_sheds_the_oldest_finished_transaction() {
    let s = TestServer::start(&config("max_transactions = 3")).await;
    let c = Udp::new(s.udp).await;
    let mut tags = Vec::new();
    for i in 0..3 {
        c.send(&Req::options(c.port(), &format!("z9hG4bK-tx-{i}")))
            .await;
        let r = c.recv().await;
        assert_eq!(r.status(), 200);
        tags.push(r.to_tag().unwrap());
    }
    // Full (each finished one lingers 64·T1 = 3.2 s here for
    // retransmissions): a new request sheds the one expiring first, tx-0.
    c.send(&Req::options(c.port(), "z9hG4bK-tx-3")).await;
    assert_eq!(c.recv().await.status(), 200);
    // tx-1 is still held: its retransmission gets the stored answer (same
    // To tag) ...
    c.send(&Req::options(c.port(), "z9hG4bK-tx-1")).await;
    assert_eq!(c.recv().await.to_tag().unwrap(), tags[1]);
    // ... while tx-0 was shed: its retransmission is answered anew.
    c.send(&Req::options(c.port(), "z9hG4bK-tx-0")).await;
    let r = c.recv().await;
    assert_eq!(r.status(), 200);
    assert_ne!(r.to_tag().unwrap(), tags[0]);
    s.stop().await;
}

#[tokio::test]
async fn full_dialog_table_refuses_new_calls_and_keeps_the_answered_one() {
    let s = TestServer::start(&config("max_dialogs = 1")).await;
    let c = Udp::new(s.udp).await;
    let p = c.port();
    // Alice logs in; without her ACK the call (and its dialog) stays up.
    c.send(&Req::invite(
        "*388000",
        "1001",
        "cap-a",
        "z9hG4bK-cap-a",
        "UDP",
        p,
    ))
    .await;
    assert_eq!(c.recv_final_for("cap-a").await.status(), 200);
    c.send(&Req::invite(
        "*388000",
        "1002",
        "cap-b",
        "z9hG4bK-cap-b",
        "UDP",
        p,
    ))
    .await;
    let r = c.recv_final_for("cap-b").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.reason(), "Service Unavailable - Too Many Calls");
    let state = |ext: &'static str| {
        let core = s.core.clone();
        async move {
            core.query(move |e| e.agent(ext).unwrap().queues[0].state)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        state("1001").await,
        AgentState::Ready,
        "Alice's answered login is kept"
    );
    assert_eq!(
        state("1002").await,
        AgentState::LoggedOut,
        "the refused call changed nothing"
    );
    s.stop().await;
}

#[tokio::test]
async fn tcp_messages_over_the_rate_are_dropped_and_the_connection_kept() {
    let s = TestServer::start(&config("requests_per_sec = 5\nrequest_burst = 20")).await;
    let mut flood = Tcp::connect_from(s.tcp, "127.0.0.2").await;
    let port = flood.port();
    let mut all = String::new();
    for i in 0..300 {
        all.push_str(&options_tcp(port, &format!("z9hG4bK-tcpflood-{i}")));
    }
    flood.send(all.as_bytes()).await;
    let mut answered = 0;
    while flood.recv_within(500).await.is_some() {
        answered += 1;
    }
    // The burst, and the few tokens that refilled meanwhile.
    assert!((20..=30).contains(&answered), "{answered} of 300 answered");
    assert!(s.stats.rate_limited.load(Ordering::Relaxed) >= 270);
    // Another source is served; the flooder's connection is still open and
    // is served again once it slows down.
    let mut other = Tcp::connect_from(s.tcp, "127.0.0.3").await;
    let p = other.port();
    other
        .send(options_tcp(p, "z9hG4bK-tcp-other").as_bytes())
        .await;
    assert_eq!(other.recv().await.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    flood
        .send(options_tcp(port, "z9hG4bK-tcpflood-later").as_bytes())
        .await;
    let r = flood.recv().await;
    assert_eq!(r.status(), 200);
    assert!(r.raw.contains("z9hG4bK-tcpflood-later"));
    s.stop().await;
}

#[tokio::test]
async fn loopback_sources_are_exempt_by_default() {
    // The shipped defaults with tiny limits: loopback (this host) skips them.
    let s = TestServer::start(&format!(
        "{}\n[limits]\nrequests_per_sec = 1\nrequest_burst = 1\ntcp_connections_per_ip = 1\n",
        base_config("")
    ))
    .await;
    let c = Udp::new_from(s.udp, "127.0.0.2").await;
    for i in 0..50 {
        c.send(&Req::options(c.port(), &format!("z9hG4bK-lo-{i}")))
            .await;
        assert_eq!(c.recv().await.status(), 200, "loopback request {i}");
    }
    let mut open = Vec::new();
    for i in 0..3 {
        let mut t = Tcp::connect_from(s.tcp, "127.0.0.2").await;
        let port = t.port();
        t.send(options_tcp(port, &format!("z9hG4bK-lo-tcp-{i}")).as_bytes())
            .await;
        assert_eq!(t.recv().await.status(), 200, "loopback connection {i}");
        open.push(t);
    }
    assert_eq!(s.stats.rate_limited.load(Ordering::Relaxed), 0);
    s.stop().await;
}

#[tokio::test]
async fn a_closed_connection_frees_its_per_ip_slot_before_facd_closes_its_side() {
    // One connection per source: each short connection, closed by the
    // phone, must leave its place free by the time facd's FIN arrives, so
    // the next one from the same address is served (a phone reconnecting).
    let s = TestServer::start(&config("tcp_connections_per_ip = 1")).await;
    for i in 0..30 {
        let mut c = Tcp::connect_from(s.tcp, "127.0.0.2").await;
        let port = c.port();
        c.send(options_tcp(port, &format!("z9hG4bK-short-{i}")).as_bytes())
            .await;
        assert_eq!(c.recv().await.status(), 200, "short connection {i}");
        tokio::io::AsyncWriteExt::shutdown(&mut c.stream)
            .await
            .unwrap();
        assert!(c.closed_within(5000).await, "connection {i} not closed");
    }
    assert_eq!(s.stats.tcp_refused_per_ip.load(Ordering::Relaxed), 0);
    s.stop().await;
}
