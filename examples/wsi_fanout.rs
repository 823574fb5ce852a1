//! WSI fan-out benchmark client (run by `benches/wsi-fanout.sh`, not a test).
//!
//! Connects `SUBS` WebSocket subscribers to a running facd — `WALLBOARDS` of
//! them on `queue_events` for queue 8000 (every event), the rest each on
//! `extension_events` for one desk agent (1000, 1001, …) — plus `STALLED`
//! that subscribe to everything and never read. Prints `READY`, then sends
//! probe star codes over UDP (agents `PROBE_FIRST`.. alternating `*378000` /
//! `*368000`, `PROBE_RATE` per second for `DUR` seconds) while SIPp drives
//! the load, and reports:
//! - latency from the probe's 200 OK arriving (≈ leaving facd, loopback) to
//!   its event reaching each subscriber that gets it, p50/p99/max;
//! - for every subscriber that kept up: the events per agent must alternate
//!   NOT_READY/READY with none repeated (a repeat = a missed event), and no
//!   snapshot (lag) may arrive mid-run; every wallboard must count the same.
//!
//! Environment: `HTTP`, `SIP` (addresses), `TOKEN`, `SUBS`, `WALLBOARDS`,
//! `STALLED`, `DUR`, `PROBE_RATE`, `PROBE_FIRST`, `PROBES`, `READY_FILE`,
//! `STOP_FILE` (listen until it exists, then 3 s more).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// What one subscriber saw.
#[derive(Default)]
struct Seen {
    deltas: u64,
    snapshots_mid_run: u64,
    /// facd closed it (or it failed) before the end of the run.
    closed_early: bool,
    repeats: u64,
    /// (agent, state, when) for probe agents.
    probe_arrivals: Vec<(String, String, Instant)>,
}

async fn subscriber(
    http: SocketAddr,
    token: String,
    sub: Value,
    probes: Arc<Vec<String>>,
    started: Arc<std::sync::atomic::AtomicBool>,
    stop: tokio_util::sync::CancellationToken,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Seen {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/wsi"))
        .await
        .expect("connect /wsi");
    let text = |v: Value| Message::Text(v.to_string().into());
    ws.send(text(
        json!({"command":"auth","username":"admin","password":token}),
    ))
    .await
    .unwrap();
    ws.send(text(sub)).await.unwrap();
    let mut seen = Seen::default();
    let mut last: HashMap<String, String> = HashMap::new();
    let mut answered = 0;
    let mut snap = false;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            () = stop.cancelled() => break,
        };
        let Some(Ok(Message::Text(t))) = m else {
            match m {
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    seen.closed_early = true;
                    break;
                }
                Some(Ok(_)) => continue,
            }
        };
        let now = Instant::now();
        let v: Value = serde_json::from_str(&t).unwrap();
        if v.get("command").is_some() {
            assert_eq!(v["status"], 0, "{v}");
            answered += 1;
            continue;
        }
        let ups: Vec<(String, String)> = match v["event_type"].as_str() {
            Some(t @ ("queue_agent_status" | "queue_status")) => v[if t == "queue_status" {
                "agents"
            } else {
                "updated_agents"
            }]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["agent_extension_number"].as_str().unwrap().to_string(),
                    a["state"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
            Some("extension_agent_status") => {
                // PortSIP's SIP URI: sip:<extension>@<domain>.
                let uri = v["extension"].as_str().unwrap();
                let ext = uri
                    .trim_start_matches("sip:")
                    .split('@')
                    .next()
                    .unwrap_or(uri)
                    .to_string();
                v["agent_status"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["queue_number"] == "8000")
                    .map(|s| (ext.clone(), s["status"].as_str().unwrap().to_string()))
                    .collect()
            }
            _ => continue,
        };
        let is_snapshot = !snap || v["event_type"] == "queue_status";
        if is_snapshot {
            if snap && started.load(std::sync::atomic::Ordering::Relaxed) {
                seen.snapshots_mid_run += 1;
            }
            for (a, s) in ups {
                last.insert(a, s);
            }
            if !snap && answered >= 2 {
                snap = true;
                let _ = ready.send(()).await;
            }
            continue;
        }
        for (a, s) in ups {
            seen.deltas += 1;
            if last.get(&a) == Some(&s) {
                seen.repeats += 1;
            }
            if probes.contains(&a) {
                seen.probe_arrivals.push((a.clone(), s.clone(), now));
            }
            last.insert(a, s);
        }
    }
    seen
}

/// Sends one probe star code and returns when its 200 OK arrived.
async fn probe(
    sock: &UdpSocket,
    sip: SocketAddr,
    agent: &str,
    code: &str,
    n: u64,
) -> Option<Instant> {
    let local = sock.local_addr().unwrap();
    let call = format!("probe-{n}@bench");
    let invite = format!(
        "INVITE sip:{code}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-p{n}i;rport\r\n\
         From: <sip:{agent}@127.0.0.1>;tag=p{n}\r\nTo: <sip:{code}@{sip}>\r\nCall-ID: {call}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:{agent}@{local}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), sip).await.ok()?;
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let (len, _) = tokio::time::timeout(left, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        let t = Instant::now();
        let msg = String::from_utf8_lossy(&buf[..len]).to_string();
        if !msg.contains(&call) {
            continue;
        }
        if msg.starts_with("SIP/2.0 1") {
            continue;
        }
        if !msg.starts_with("SIP/2.0 200") {
            eprintln!("probe {agent} {code}: {}", msg.lines().next().unwrap_or(""));
            return None;
        }
        let to = msg
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("to:"))
            .unwrap_or("")
            .trim_end()
            .to_string();
        for (method, cseq, branch) in [("ACK", 1, "a"), ("BYE", 2, "b")] {
            let m = format!(
                "{method} sip:{code}@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-p{n}{branch};rport\r\n\
                 From: <sip:{agent}@127.0.0.1>;tag=p{n}\r\n{to}\r\nCall-ID: {call}\r\n\
                 CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = sock.send_to(m.as_bytes(), sip).await;
        }
        return Some(t);
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let k = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[k]
}

#[tokio::main]
async fn main() {
    let http: SocketAddr = std::env::var("HTTP").expect("HTTP").parse().unwrap();
    let sip: SocketAddr = std::env::var("SIP").expect("SIP").parse().unwrap();
    let token: String = env("TOKEN", "bench-admin-token".to_string());
    let subs: usize = env("SUBS", 1000);
    let wallboards: usize = env("WALLBOARDS", 10).min(subs);
    let stalled: usize = env("STALLED", 0);
    let dur: u64 = env("DUR", 20);
    let probe_rate: u64 = env("PROBE_RATE", 50);
    let probe_first: u32 = env("PROBE_FIRST", 2000);
    let nprobes: u32 = env("PROBES", 10);
    let ready_file: String = env("READY_FILE", String::new());
    let probes: Arc<Vec<String>> = Arc::new(
        (probe_first..probe_first + nprobes)
            .map(|a| a.to_string())
            .collect(),
    );
    let client = reqwest::Client::new();
    let queues: Value = client
        .get(format!("http://{http}/api/call_queues"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /api/call_queues")
        .json()
        .await
        .expect("a queue list");
    let q8000 = queues["items"]
        .as_array()
        .and_then(|l| l.iter().find(|q| q["extension_number"] == "8000"))
        .and_then(|q| q["id"].as_str())
        .expect("queue 8000")
        .to_string();
    for a in probes.iter() {
        let r = client
            .post(format!("http://{http}/api/call_queues/{q8000}/agents/{a}"))
            .bearer_auth(&token)
            .json(&json!({"status": "LOGGED_IN"}))
            .send()
            .await
            .expect("REST login");
        assert_eq!(r.status().as_u16(), 200, "login {a}");
    }

    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(subs.max(1));
    let mut tasks = Vec::new();
    let t_connect = Instant::now();
    for i in 0..subs {
        let sub = if i < wallboards {
            json!({"command":"subscribe","topics":["queue_events"],"queues":["8000"]})
        } else if i - wallboards < probes.len() {
            // Each probe agent's own desk, then the other desks.
            json!({"command":"subscribe","topics":["extension_events"],"extensions":[probes[i - wallboards]]})
        } else {
            let desk = 1000 + (i - wallboards - probes.len()) % 1000;
            json!({"command":"subscribe","topics":["extension_events"],"extensions":[desk.to_string()]})
        };
        tasks.push(tokio::spawn(subscriber(
            http,
            token.clone(),
            sub,
            probes.clone(),
            started.clone(),
            stop.clone(),
            ready_tx.clone(),
        )));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Stalled clients: subscribe to everything, never read.
    let mut stalled_socks = Vec::new();
    for _ in 0..stalled {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let tcp = sock.connect(http).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(
            format!("ws://{http}/wsi"),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        )
        .await
        .unwrap();
        for m in [
            json!({"command":"auth","username":"admin","password":token}),
            json!({"command":"subscribe","topics":["queue_events","extension_events"]}),
        ] {
            ws.send(Message::Text(m.to_string().into())).await.unwrap();
        }
        stalled_socks.push(ws);
    }
    for _ in 0..subs {
        ready_rx.recv().await.unwrap();
    }
    eprintln!(
        "{subs} subscribers ({wallboards} wallboards) + {stalled} stalled connected in {:.1} s",
        t_connect.elapsed().as_secs_f64()
    );
    started.store(true, std::sync::atomic::Ordering::Relaxed);
    println!("READY");
    if !ready_file.is_empty() {
        std::fs::write(&ready_file, "ready\n").unwrap();
    }

    // Probes for DUR seconds.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sent: Vec<(String, String, Instant)> = Vec::new();
    let mut failed = 0u64;
    let mut state: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / probe_rate.max(1)));
    let end = Instant::now() + Duration::from_secs(dur);
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        let agent = &probes[(n % probes.len() as u64) as usize];
        let ready = state.entry(agent.clone()).or_insert(true);
        let (code, want) = if *ready {
            ("*378000", "NOT_READY")
        } else {
            ("*368000", "READY")
        };
        match probe(&sock, sip, agent, code, n).await {
            Some(t) => {
                *ready = !*ready;
                sent.push((agent.clone(), want.to_string(), t));
            }
            None => failed += 1,
        }
        n += 1;
    }
    // Keep listening until the load is over (the script creates STOP_FILE
    // when SIPp has finished), then for the stragglers.
    let stop_file: String = env("STOP_FILE", String::new());
    if !stop_file.is_empty() {
        while !std::path::Path::new(&stop_file).exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }

    // Latency: each arrival matched with its probe (same agent and state,
    // nearest 200 OK; each agent's probes are PROBES/PROBE_RATE s apart).
    let mut lat = Vec::new();
    let mut unmatched = 0u64;
    let mut by_key: HashMap<(&str, &str), Vec<Instant>> = HashMap::new();
    for (a, s, t) in &sent {
        by_key.entry((a.as_str(), s.as_str())).or_default().push(*t);
    }
    for s in &seen {
        for (a, st, t) in &s.probe_arrivals {
            let Some(oks) = by_key.get(&(a.as_str(), st.as_str())) else {
                unmatched += 1;
                continue;
            };
            let best = oks
                .iter()
                .map(|ok| {
                    if *t >= *ok {
                        (*t - *ok).as_secs_f64()
                    } else {
                        -(*ok - *t).as_secs_f64()
                    }
                })
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
                .unwrap();
            lat.push(best * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let wall: Vec<u64> = seen[..wallboards].iter().map(|s| s.deltas).collect();
    let lagged = seen.iter().filter(|s| s.snapshots_mid_run > 0).count();
    let closed = seen.iter().filter(|s| s.closed_early).count();
    // A session that lagged got a snapshot instead of deltas: by design it
    // can repeat a state; only those that kept up must show none.
    let repeats: u64 = seen
        .iter()
        .filter(|s| s.snapshots_mid_run == 0)
        .map(|s| s.repeats)
        .sum();
    let total: u64 = seen.iter().map(|s| s.deltas).sum();
    println!(
        "probes sent={} failed={failed} samples={} unmatched={unmatched} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} min_ms={:.2}",
        sent.len(),
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        lat.first().copied().unwrap_or(f64::NAN),
    );
    println!(
        "subscribers n={subs} deltas_total={total} wallboard_deltas_min={} wallboard_deltas_max={} lagged_sessions={lagged} closed_early={closed} repeated_states_kept_up={repeats}",
        wall.iter().min().copied().unwrap_or(0),
        wall.iter().max().copied().unwrap_or(0),
    );
    drop(stalled_socks);
}
