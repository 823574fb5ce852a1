//! WSI fan-out benchmark client (run by `benches/wsi-fanout.sh`, not a test).
//!
//! Connects `SUBS` WebSocket subscribers to a running facd — `WALLBOARDS` of
//! them on `queue_events` for queue 8000 (every event), the rest each on
//! `extension_events` for one desk agent (1000, 1001, …) — plus `STALLED`
//! that subscribe to everything and never read, and `FKEYS` SIP feature-key
//! subscriptions (`Event: as-feature-event`, the phones' ACD key; UDP, one
//! socket each, `Expires: FKEY_EXPIRES` refreshed at half the granted time,
//! every NOTIFY answered 200, `Expires: 0` at the end) — the probe agents'
//! first, the rest spread evenly over the load's agents 1000..1999. Prints
//! `READY`, then sends probe star codes over UDP (agents `PROBE_FIRST`..
//! alternating `*378000` / `*368000`, `PROBE_RATE` per second for `DUR`
//! seconds) while SIPp drives the load, and reports:
//! - latency from the probe's 200 OK arriving (≈ leaving facd, loopback) to
//!   its event reaching each subscriber that gets it, p50/p99/max;
//! - for every subscriber that kept up: the events per agent must alternate
//!   NOT_READY/READY with none repeated (a repeat = a missed event), and no
//!   snapshot (lag) may arrive mid-run; every wallboard must count the same;
//! - with `FKEYS`: latency from the probe's 200 OK to the NOTIFY showing the
//!   probe agent's new ACD state (root element `AgentReadyEvent` /
//!   `AgentNotReadyEvent`) on each of its subscriptions, p50/p99/max, the
//!   probes whose NOTIFY never came, and the NOTIFYs the load's agents got.
//!
//! Environment: `HTTP`, `SIP` (addresses), `TOKEN`, `SUBS`, `WALLBOARDS`,
//! `STALLED`, `FKEYS` (0), `FKEY_EXPIRES` (3600), `DUR`, `PROBE_RATE`,
//! `PROBE_FIRST`, `PROBES`, `READY_FILE`, `STOP_FILE` (listen until it
//! exists, then 3 s more).

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

// ---------------------------------------------------------------------------
// Feature-key subscriptions (`as-feature-event`, the ACD key of Broadsoft,
// Polycom and Yealink phones) over UDP, one socket per subscription.

/// First of the agents the SIPp load toggles, and how many there are.
const LOAD_FIRST: usize = 1000;
const LOAD_AGENTS: usize = 1000;
/// RFC 3261 §17.1.2.2: Timer E starts at T1 and doubles up to T2; Timer F
/// gives up after 64·T1.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_F: Duration = Duration::from_secs(32);
/// How long an unsubscribe waits for its 200 and terminating NOTIFY.
const UNSUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// A SIP message, as much of it as a phone's key needs.
struct SipMsg<'a> {
    start: &'a str,
    /// Names in their long form (RFC 3261 §7.3.3), as received otherwise.
    headers: Vec<(&'a str, &'a str)>,
    body: &'a str,
}

impl<'a> SipMsg<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(buf).map_err(|_| "not UTF-8".to_string())?;
        let (head, rest) = text
            .split_once("\r\n\r\n")
            .ok_or("no blank line after the headers")?;
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or("");
        let mut headers = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                return Err("folded header lines are not supported".into());
            }
            let (n, v) = l
                .split_once(':')
                .ok_or_else(|| format!("header line without a colon: {l:?}"))?;
            let n = n.trim();
            let long = match n.to_ascii_lowercase().as_str() {
                "v" => "Via",
                "f" => "From",
                "t" => "To",
                "i" => "Call-ID",
                "l" => "Content-Length",
                "c" => "Content-Type",
                "o" => "Event",
                "m" => "Contact",
                _ => n,
            };
            headers.push((long, v.trim()));
        }
        let mut m = SipMsg {
            start,
            headers,
            body: "",
        };
        let len = match m.header("Content-Length") {
            None => rest.len(),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {v:?}"))?,
        };
        m.body = rest
            .get(..len)
            .ok_or_else(|| format!("body shorter than its Content-Length {len}"))?;
        Ok(m)
    }

    fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// `Some(method)` for a request, `None` for a response.
    fn method(&self) -> Option<&'a str> {
        (!self.start.starts_with("SIP/2.0 ")).then(|| self.start.split(' ').next().unwrap_or(""))
    }

    fn status(&self) -> Option<u16> {
        self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    /// The CSeq number and method.
    fn cseq(&self) -> Option<(u32, &'a str)> {
        let (n, m) = self.header("CSeq")?.split_once(' ')?;
        Some((n.trim().parse().ok()?, m.trim()))
    }

    /// The `tag` parameter of a From or To value.
    fn tag(&self, name: &str) -> Option<&'a str> {
        let v = self.header(name)?;
        // Parameters follow the URI's closing '>' (or the bare URI).
        let params = v.rsplit_once('>').map_or(v, |(_, p)| p);
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("tag"))
            .map(|(_, t)| t)
    }

    /// The 200 OK to this request (RFC 3261 §8.2.6.2: Via, From, To,
    /// Call-ID and CSeq copied; the To of an in-dialog NOTIFY already
    /// carries our tag).
    fn ok(&self) -> String {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for (n, v) in &self.headers {
            if ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|h| h.eq_ignore_ascii_case(n))
            {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        out
    }

    /// The ACD key's state in a NOTIFY body, in WSI's words: the root
    /// element facd sends (`AgentReadyEvent`, …; the first one of a
    /// multipart full state).
    fn acd_state(&self) -> Option<&'static str> {
        let at = self.body.find("<Agent")?;
        let name = self.body.get(at + 1..)?;
        let end = name
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .unwrap_or(name.len());
        Some(match &name[..end] {
            "AgentReadyEvent" => "READY",
            "AgentNotReadyEvent" => "NOT_READY",
            "AgentLoggedOnEvent" => "LOGGED_ON",
            "AgentLoggedOffEvent" => "LOGGED_OUT",
            "AgentWorkingAfterCallEvent" => "WRAP_UP",
            _ => return None,
        })
    }
}

/// What one feature-key subscription saw.
#[derive(Default)]
struct FkSeen {
    agent: String,
    /// ACD states of single-document NOTIFYs (changes), as they arrived.
    changes: Vec<(&'static str, Instant)>,
    /// Changes to the state the previous NOTIFY already showed.
    repeats: u64,
    notifies: u64,
    /// facd ended it (Subscription-State: terminated) before the end.
    closed_early: bool,
    /// The unsubscribe (Expires: 0) was answered 200 and its terminating
    /// NOTIFY arrived.
    unsubscribed: bool,
    refreshes: u64,
    error: Option<String>,
}

/// A subscription's request waiting for its final response.
struct Pending {
    cseq: u32,
    bytes: String,
    sent: Instant,
    next: Instant,
    interval: Duration,
}

/// One phone's `as-feature-event` subscription to its own address (as
/// facd requires, SPEC §5): SUBSCRIBE, answer every NOTIFY, refresh at half
/// the granted time, unsubscribe when `stop` is cancelled. Reports `Ok` on
/// `ready` once the 200 and the first (full-state) NOTIFY are in.
async fn fkey_subscriber(
    i: usize,
    agent: String,
    sip: SocketAddr,
    expires: u32,
    stop: tokio_util::sync::CancellationToken,
    ready: tokio::sync::mpsc::Sender<Result<(), String>>,
) -> FkSeen {
    let mut seen = FkSeen {
        agent: agent.clone(),
        ..FkSeen::default()
    };
    let sock = match UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            let e = format!("feature key {agent}: UDP bind: {e}");
            let _ = ready.send(Err(e.clone())).await;
            seen.error = Some(e);
            return seen;
        }
    };
    let local = match sock.local_addr() {
        Ok(a) => a,
        Err(e) => {
            let e = format!("feature key {agent}: local address: {e}");
            let _ = ready.send(Err(e.clone())).await;
            seen.error = Some(e);
            return seen;
        }
    };
    let call = format!("fk-{i}-{}@bench", std::process::id());
    let from_tag = format!("fk{i}");
    let mut to_tag: Option<String> = None;
    let mut cseq = 0u32;
    let subscribe = |cseq: u32, to_tag: Option<&str>, expires: u32| {
        let to_tag = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
        format!(
            "SUBSCRIBE sip:{agent}@{sip} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-fk{i}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{agent}@127.0.0.1>;tag={from_tag}\r\n\
             To: <sip:{agent}@{sip}>{to_tag}\r\n\
             Call-ID: {call}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\n\
             Contact: <sip:{agent}@{local};transport=udp>\r\n\
             Event: as-feature-event\r\n\
             Accept: multipart/mixed, application/x-as-feature-event+xml\r\n\
             Expires: {expires}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let far = || Instant::now() + Duration::from_secs(86_400);
    let pending_for = |bytes: String, cseq: u32| {
        let now = Instant::now();
        Pending {
            cseq,
            bytes,
            sent: now,
            next: now + T1,
            interval: T1,
        }
    };
    cseq += 1;
    let p = pending_for(subscribe(cseq, None, expires), cseq);
    let _ = sock.send_to(p.bytes.as_bytes(), sip).await;
    let mut pending = Some(p);
    let mut refresh_at = far();
    let mut deadline: Option<Instant> = None;
    let mut subscribed = false;
    let mut first_notify = false;
    let mut told_ready = false;
    let mut stopping = false;
    let mut last_cseq: Option<u32> = None;
    let mut last_state: Option<&'static str> = None;
    let mut buf = vec![0u8; 65536];
    let fail = |seen: &mut FkSeen, e: String| {
        eprintln!("{e}");
        seen.error = Some(e);
    };
    loop {
        let wake = pending
            .as_ref()
            .map_or_else(far, |p| p.next)
            .min(refresh_at)
            .min(deadline.unwrap_or_else(far));
        let got = tokio::select! {
            r = sock.recv_from(&mut buf) => Some(r),
            () = tokio::time::sleep_until(wake.into()) => None,
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                deadline = Some(Instant::now() + UNSUBSCRIBE_WAIT);
                refresh_at = far();
                if subscribed {
                    cseq += 1;
                    let p = pending_for(subscribe(cseq, to_tag.as_deref(), 0), cseq);
                    let _ = sock.send_to(p.bytes.as_bytes(), sip).await;
                    pending = Some(p);
                } else {
                    break;
                }
                continue;
            }
        };
        let now = Instant::now();
        let Some(got) = got else {
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            if now >= refresh_at {
                cseq += 1;
                let p = pending_for(subscribe(cseq, to_tag.as_deref(), expires), cseq);
                let _ = sock.send_to(p.bytes.as_bytes(), sip).await;
                pending = Some(p);
                refresh_at = far();
                seen.refreshes += 1;
            }
            if let Some(p) = pending.as_mut().filter(|p| now >= p.next) {
                if now.duration_since(p.sent) >= TIMER_F {
                    let e = format!(
                        "feature key {agent}: no answer to SUBSCRIBE CSeq {} within 32 s",
                        p.cseq
                    );
                    if !told_ready {
                        let _ = ready.send(Err(e.clone())).await;
                    }
                    fail(&mut seen, e);
                    break;
                }
                let _ = sock.send_to(p.bytes.as_bytes(), sip).await;
                p.interval = (p.interval * 2).min(T2);
                p.next = now + p.interval;
            }
            continue;
        };
        let (len, src) = match got {
            Ok(r) => r,
            Err(e) => {
                fail(&mut seen, format!("feature key {agent}: UDP receive: {e}"));
                break;
            }
        };
        let m = match SipMsg::parse(&buf[..len]) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("feature key {agent}: unreadable datagram ignored: {e}");
                continue;
            }
        };
        if m.header("Call-ID") != Some(call.as_str()) {
            continue;
        }
        match m.method() {
            None => {
                // A response: to the pending SUBSCRIBE only.
                let (Some(status), Some((n, "SUBSCRIBE"))) = (m.status(), m.cseq()) else {
                    continue;
                };
                if pending.as_ref().map(|p| p.cseq) != Some(n) || status < 200 {
                    continue;
                }
                pending = None;
                if !(200..300).contains(&status) {
                    let e = format!(
                        "feature key {agent}: SUBSCRIBE CSeq {n} answered {}",
                        m.start
                    );
                    if !told_ready {
                        let _ = ready.send(Err(e.clone())).await;
                    }
                    fail(&mut seen, e);
                    break;
                }
                if to_tag.is_none() {
                    to_tag = m.tag("To").map(str::to_string);
                }
                if stopping {
                    continue;
                }
                subscribed = true;
                let granted = m
                    .header("Expires")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(u64::from(expires));
                refresh_at = now + Duration::from_secs(granted.max(2) / 2);
            }
            Some("NOTIFY") => {
                // RFC 3261 §18.2.2: back where it came from (facd's own
                // socket; no received/rport to honour on loopback).
                let _ = sock.send_to(m.ok().as_bytes(), src).await;
                let n = m.cseq().map(|(n, _)| n);
                if n.is_some() && n <= last_cseq {
                    continue; // a retransmission
                }
                last_cseq = n;
                seen.notifies += 1;
                if to_tag.is_none() {
                    to_tag = m.tag("From").map(str::to_string);
                }
                let terminated = m.header("Subscription-State").is_some_and(|s| {
                    s.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("terminated")
                });
                if let Some(state) = m.acd_state() {
                    let full = m
                        .header("Content-Type")
                        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/"));
                    if !full && !terminated {
                        if last_state == Some(state) {
                            seen.repeats += 1;
                        }
                        seen.changes.push((state, now));
                    }
                    last_state = Some(state);
                    first_notify = true;
                }
                if terminated {
                    if stopping {
                        seen.unsubscribed = true;
                    } else {
                        seen.closed_early = true;
                        let e = format!(
                            "feature key {agent}: facd ended the subscription ({})",
                            m.header("Subscription-State").unwrap_or("")
                        );
                        if !told_ready {
                            let _ = ready.send(Err(e.clone())).await;
                        }
                        fail(&mut seen, e);
                    }
                    break;
                }
            }
            Some(_) => {}
        }
        if subscribed && first_notify && !told_ready {
            told_ready = true;
            let _ = ready.send(Ok(())).await;
        }
    }
    if !told_ready && seen.error.is_none() {
        let _ = ready
            .send(Err(format!(
                "feature key {agent}: stopped before it was established"
            )))
            .await;
    }
    seen
}

/// The agent of feature-key subscription `i` of `n`: the probe agents
/// first (so their changes can be timed), the others spread evenly over the
/// agents the SIPp load toggles.
fn fkey_agent(i: usize, n: usize, probes: &[String]) -> String {
    if let Some(p) = probes.get(i) {
        return p.clone();
    }
    let (j, rest) = (i - probes.len(), n - probes.len());
    (LOAD_FIRST + j * LOAD_AGENTS / rest).to_string()
}

fn signed_ms(t: Instant, from: Instant) -> f64 {
    if t >= from {
        (t - from).as_secs_f64() * 1000.0
    } else {
        -(from - t).as_secs_f64() * 1000.0
    }
}

/// Pairs each probe of one agent (the state it asked for and when its
/// 200 OK arrived, in order) with the first NOTIFY of that state on one
/// subscription within its window: from halfway back to the agent's
/// previous probe up to the same point of its next probe asking the same
/// state. Returns the latencies in ms (negative: the NOTIFY was read before
/// the 200 OK; facd sends both in one loop turn), the probes whose NOTIFY
/// never came, and the NOTIFYs no probe claimed.
fn match_probes(probes: &[(&str, Instant)], arrivals: &[(&str, Instant)]) -> (Vec<f64>, u64, u64) {
    let lo = |k: usize| {
        let t = probes[k].1;
        let half = match k.checked_sub(1) {
            Some(prev) => t.saturating_duration_since(probes[prev].1) / 2,
            None => Duration::from_millis(100),
        };
        t.checked_sub(half).unwrap_or(t)
    };
    let (mut lat, mut missed, mut cursor, mut used) = (Vec::new(), 0, 0, 0);
    for (k, (want, ok)) in probes.iter().enumerate() {
        let from = lo(k);
        let until = (k + 2 < probes.len()).then(|| lo(k + 2));
        let hit = arrivals[cursor..]
            .iter()
            .position(|(s, t)| s == want && *t >= from && until.is_none_or(|u| *t < u));
        match hit {
            Some(j) => {
                lat.push(signed_ms(arrivals[cursor + j].1, *ok));
                cursor += j + 1;
                used += 1;
            }
            None => missed += 1,
        }
    }
    (lat, missed, (arrivals.len() - used) as u64)
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
    let fkeys: usize = env("FKEYS", 0);
    let fkey_expires: u32 = env("FKEY_EXPIRES", 3600);
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
    // Feature-key subscriptions (as-feature-event), one UDP socket each.
    let (fk_tx, mut fk_rx) = tokio::sync::mpsc::channel(fkeys.max(1));
    let mut fk_tasks = Vec::new();
    for i in 0..fkeys {
        fk_tasks.push(tokio::spawn(fkey_subscriber(
            i,
            fkey_agent(i, fkeys, &probes),
            sip,
            fkey_expires,
            stop.clone(),
            fk_tx.clone(),
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
    for k in 0..fkeys {
        match tokio::time::timeout(Duration::from_secs(60), fk_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => {
                eprintln!("wsi_fanout: a feature-key subscription failed: {e}");
                std::process::exit(1);
            }
            Ok(None) | Err(_) => {
                eprintln!(
                    "wsi_fanout: only {k} of {fkeys} feature-key subscriptions were established within 60 s"
                );
                std::process::exit(1);
            }
        }
    }
    eprintln!(
        "{subs} subscribers ({wallboards} wallboards) + {stalled} stalled + {fkeys} feature-key subscriptions connected in {:.1} s",
        t_connect.elapsed().as_secs_f64()
    );
    started.store(true, std::sync::atomic::Ordering::Relaxed);
    let t_start = Instant::now();
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
    let mut fk_seen = Vec::new();
    for t in fk_tasks {
        match t.await {
            Ok(s) => fk_seen.push(s),
            Err(e) => eprintln!("wsi_fanout: a feature-key subscriber task failed: {e}"),
        }
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
    if fkeys > 0 {
        // 200 OK -> NOTIFY on the probe agents' keys; the others count
        // what the load changed.
        let mut by_agent: HashMap<&str, Vec<(&str, Instant)>> = HashMap::new();
        for (a, s, t) in &sent {
            by_agent
                .entry(a.as_str())
                .or_default()
                .push((s.as_str(), *t));
        }
        let (mut lat, mut missed, mut unmatched, mut load) = (Vec::new(), 0, 0, 0);
        for f in fk_seen.iter().filter(|f| probes.contains(&f.agent)) {
            let ps = by_agent
                .get(f.agent.as_str())
                .map_or(&[][..], Vec::as_slice);
            let arrivals: Vec<(&str, Instant)> = f.changes.iter().map(|(s, t)| (*s, *t)).collect();
            let (l, m, u) = match_probes(ps, &arrivals);
            lat.extend(l);
            missed += m;
            unmatched += u;
        }
        let on_load: Vec<&FkSeen> = fk_seen
            .iter()
            .filter(|f| !probes.contains(&f.agent))
            .collect();
        for f in &on_load {
            load += f.changes.iter().filter(|(_, t)| *t >= t_start).count();
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "fkeys fk_subs={fkeys} fk_on_probes={} fk_on_load={} fk_samples={} fk_missed={missed} fk_unmatched={unmatched} \
             fk_p50_ms={:.2} fk_p99_ms={:.2} fk_max_ms={:.2} fk_min_ms={:.2} fk_load_notifies={load} fk_repeats={} \
             fk_closed_early={} fk_errors={} fk_refreshes={} fk_unsubscribed={}",
            fkeys.min(probes.len()),
            on_load.len(),
            lat.len(),
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            lat.first().copied().unwrap_or(f64::NAN),
            fk_seen.iter().map(|f| f.repeats).sum::<u64>(),
            fk_seen.iter().filter(|f| f.closed_early).count(),
            fk_seen.iter().filter(|f| f.error.is_some()).count(),
            fk_seen.iter().map(|f| f.refreshes).sum::<u64>(),
            fk_seen.iter().filter(|f| f.unsubscribed).count(),
        );
    }
    drop(stalled_socks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_is_read_and_answered() {
        let raw = "NOTIFY sip:2000@127.0.0.1:5070;transport=udp SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n\
                   From: <sip:2000@127.0.0.1:5060>;tag=srv\r\n\
                   t: <sip:2000@127.0.0.1>;tag=fk0\r\n\
                   Call-ID: fk-0@bench\r\n\
                   CSeq: 7 NOTIFY\r\n\
                   Event: as-feature-event\r\n\
                   Subscription-State: active;expires=3599\r\n\
                   Content-Type: application/x-as-feature-event+xml\r\n\
                   Content-Length: 71\r\n\r\n\
                   <?xml version=\"1.0\"?>\r\n<AgentNotReadyEvent xmlns=\"x\"></AgentNotReadyEvent>\r\n";
        let m = SipMsg::parse(raw.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("NOTIFY"));
        assert_eq!(m.cseq(), Some((7, "NOTIFY")));
        assert_eq!(m.tag("From"), Some("srv"));
        assert_eq!(m.tag("To"), Some("fk0"));
        assert_eq!(m.acd_state(), Some("NOT_READY"));
        assert_eq!(
            m.ok(),
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1\r\n\
             From: <sip:2000@127.0.0.1:5060>;tag=srv\r\nTo: <sip:2000@127.0.0.1>;tag=fk0\r\n\
             Call-ID: fk-0@bench\r\nCSeq: 7 NOTIFY\r\nContent-Length: 0\r\n\r\n"
        );
        for bad in [
            "",
            "NOTIFY x SIP/2.0\r\nbroken\r\n\r\n",
            "SIP/2.0 200 OK\r\nl: 9\r\n\r\nshort",
        ] {
            assert!(SipMsg::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn probes_pair_with_their_notifies_and_misses_count() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let probes = [
            ("NOT_READY", ms(0)),
            ("READY", ms(200)),
            ("NOT_READY", ms(400)),
        ];
        // The first NOTIFY read just before its 200 OK, the second missing,
        // the third late, then a repeat nobody asked for.
        let arrivals = [
            ("NOT_READY", ms(0) - Duration::from_millis(1)),
            ("NOT_READY", ms(430)),
            ("NOT_READY", ms(600)),
        ];
        let (lat, missed, unmatched) = match_probes(&probes, &arrivals);
        assert_eq!(lat.len(), 2);
        assert!(
            (lat[0] + 1.0).abs() < 0.01 && (lat[1] - 30.0).abs() < 0.01,
            "{lat:?}"
        );
        assert_eq!((missed, unmatched), (1, 1));
    }
}
