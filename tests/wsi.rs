//! The WebSocket `/wsi` (SPEC §5) with a real WebSocket client against the
//! real server: auth, subscribe/unsubscribe with permissions, the exact
//! event shapes for a star code over SIP and for a REST change, a lagging
//! subscriber that gets a snapshot while one that keeps up misses nothing,
//! and the clean close at shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use std::net::SocketAddr;
use std::time::Duration;

use common::{base_config, HoldClock, Req, TestServer, Udp};
use facd::engine::{Cause, Command, Target};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

const ADMIN: &str = "admin-token-1";

fn config() -> String {
    format!(
        "{}\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
        base_config("")
    )
}

use common::wsi::{recv, Ws};

async fn connect(http: SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{http}/wsi"))
        .await
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn login(http: SocketAddr, user: &str, password: &str) -> Ws {
    let mut ws = connect(http).await;
    send(
        &mut ws,
        json!({"command": "auth", "username": user, "password": password}),
    )
    .await;
    let a = recv(&mut ws).await;
    assert_eq!(a["status"], 0, "{a}");
    assert_eq!(a["command"], "auth");
    assert!(a["id"].as_str().is_some_and(|id| !id.is_empty()), "{a}");
    ws
}

async fn subscribe(ws: &mut Ws, v: Value) -> Value {
    send(ws, v).await;
    recv(ws).await
}

/// The REST id of queue `number` (`GET /api/call_queues`).
async fn queue_id(http: SocketAddr, number: &str) -> String {
    let v: Value = reqwest::Client::new()
        .get(format!("http://{http}/api/call_queues"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["extension_number"] == number)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The agents of a `queue_status` snapshot or a `queue_agent_status` delta.
fn rows(ev: &Value) -> &Vec<Value> {
    match ev["event_type"].as_str() {
        Some("queue_status") => ev["agents"].as_array().unwrap(),
        _ => ev["updated_agents"].as_array().unwrap(),
    }
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    k.sort();
    k
}

#[tokio::test]
async fn auth_is_required_and_checked() {
    let s = TestServer::start(&config()).await;
    // Wrong token: status -1 with a message, then a 1008 close.
    let mut ws = connect(s.http).await;
    send(
        &mut ws,
        json!({"command": "auth", "username": "admin", "password": "wrong"}),
    )
    .await;
    let a = recv(&mut ws).await;
    assert_eq!(
        (a["command"].as_str(), a["status"].as_i64()),
        (Some("auth"), Some(-1))
    );
    assert_eq!(
        a["error"],
        "username, extension_number, domain or password error"
    );
    // PortSIP's failure answer carries the session id too.
    assert!(a["id"].as_str().is_some_and(|id| !id.is_empty()), "{a}");
    match ws.next().await {
        Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Policy),
        other => panic!("expected a close, got {other:?}"),
    }
    // Subscribing before auth is refused the same way.
    let mut ws = connect(s.http).await;
    send(
        &mut ws,
        json!({"command": "subscribe", "topics": ["queue_events"]}),
    )
    .await;
    let a = recv(&mut ws).await;
    assert_eq!(a["status"], -1);
    assert!(a["error"].as_str().unwrap().contains("authenticate first"));
    // An agent's wrong SIP password, then the right one.
    let mut ws = connect(s.http).await;
    send(
        &mut ws,
        json!({"command": "auth", "username": "1001", "password": "bob-secret"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["status"], -1);
    let _ok = login(s.http, "1001", "alice-secret").await;
    let _admin = login(s.http, "admin", ADMIN).await;
    // PortSIP 22.3's other form: extension_number, password and domain.
    for (auth, want) in [
        (
            json!({"command": "auth", "extension_number": "1001", "password": "alice-secret", "domain": "facd.test"}),
            0,
        ),
        (
            json!({"command": "auth", "extension_number": "1001", "password": "alice-secret", "domain": "other.test"}),
            -1,
        ),
        // An API user is not an extension.
        (
            json!({"command": "auth", "extension_number": "admin", "password": ADMIN}),
            -1,
        ),
        (
            json!({"command": "auth", "username": "1001", "extension_number": "1001", "password": "alice-secret"}),
            -1,
        ),
    ] {
        let mut ws = connect(s.http).await;
        send(&mut ws, auth.clone()).await;
        let a = recv(&mut ws).await;
        assert_eq!(a["status"], want, "{auth}: {a}");
        assert!(a["id"].as_str().is_some(), "{a}");
    }
    // A plain GET is not an upgrade: a JSON 400.
    let resp = reqwest::get(format!("http://{}/wsi", s.http))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    s.stop().await;
}

#[tokio::test]
async fn star_code_over_sip_reaches_a_queue_subscriber() {
    let s = TestServer::start(&config()).await;
    let mut ws = login(s.http, "admin", ADMIN).await;
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["queue_events"], "queues": ["8000"]}),
    )
    .await;
    assert_eq!(a, json!({"command": "subscribe", "status": 0}));
    // First the current status of the queue: PortSIP's queue_status.
    let snap = recv(&mut ws).await;
    assert_eq!(
        keys(&snap),
        [
            "agents",
            "event_type",
            "queue_id",
            "queue_name",
            "queue_number",
            "tenant_id",
            "waiting_list"
        ]
    );
    assert_eq!(snap["event_type"], "queue_status");
    assert_eq!(snap["queue_number"], "8000");
    assert_eq!(snap["queue_name"], "Sales");
    assert_eq!(snap["waiting_list"], json!([]));
    let queue_id = snap["queue_id"].as_str().unwrap().to_string();
    let tenant_id = snap["tenant_id"].as_str().unwrap().to_string();
    assert_eq!((queue_id.len(), tenant_id.len()), (18, 18));
    let members: Vec<(&str, &str)> = snap["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_extension_number"].as_str().unwrap(),
                a["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(members, [("1001", "LOGGED_OUT"), ("1002", "LOGGED_OUT")]);

    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*388000",
        "1001",
        "w1",
        "z9hG4bK-w1",
        "UDP",
        c.port(),
    ))
    .await;
    assert_eq!(c.recv_response().await.status(), 200);
    let ev = recv(&mut ws).await;
    assert_eq!(
        keys(&ev),
        [
            "event_type",
            "queue_id",
            "removed_agents",
            "tenant_id",
            "updated_agents"
        ]
    );
    assert_eq!(ev["event_type"], "queue_agent_status");
    assert_eq!(
        (ev["queue_id"].as_str(), ev["tenant_id"].as_str()),
        (Some(queue_id.as_str()), Some(tenant_id.as_str()))
    );
    assert_eq!(ev["removed_agents"], json!([]));
    let agents = ev["updated_agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        keys(&agents[0]),
        ["agent_extension_number", "state", "timestamp"]
    );
    assert_eq!(agents[0]["state"], "READY");
    assert_eq!(agents[0]["agent_extension_number"], "1001");
    let ts: u64 = agents[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(ts <= now && now - ts < 60, "timestamp {ts} vs now {now}");

    // Unsubscribed: a change in 8000 is not sent any more.
    let a = subscribe(
        &mut ws,
        json!({"command": "unsubscribe", "topics": ["queue_events"], "queues": ["8000"]}),
    )
    .await;
    assert_eq!(a["status"], 0);
    c.send(&Req::invite(
        "*398000",
        "1001",
        "w2",
        "z9hG4bK-w2",
        "UDP",
        c.port(),
    ))
    .await;
    assert_eq!(c.recv_response().await.status(), 200);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "an event after unsubscribe"
    );
    s.stop().await;
}

#[tokio::test]
async fn rest_change_reaches_the_agents_own_extension_subscription() {
    let s = TestServer::start(&config()).await;
    let mut ws = login(s.http, "1001", "alice-secret").await;
    // An agent: not another extension, not a queue it is not in.
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["extension_events"], "extensions": ["1002"]}),
    )
    .await;
    assert_eq!(a["status"], -1);
    assert!(a["error"].as_str().unwrap().contains("not allowed"), "{a}");
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["queue_events"], "queues": ["8002"]}),
    )
    .await;
    assert_eq!(a["status"], -1);
    assert!(a["error"].as_str().unwrap().contains("not allowed"), "{a}");
    // Topics facd does not serve are accepted, ignored and reported.
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["cdr_events", "queue_management_events"]}),
    )
    .await;
    assert_eq!(
        a,
        json!({"command": "subscribe", "status": 0,
               "ignored_topics": ["cdr_events", "queue_management_events"]})
    );
    // Its own extension (named or by default).
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["extension_events"]}),
    )
    .await;
    assert_eq!(a["status"], 0, "{a}");
    let snap = recv(&mut ws).await;
    assert_eq!(snap["event_type"], "extension_agent_status");
    assert_eq!(snap["extension"], "sip:1001@facd.test");
    let extension_id = snap["extension_id"].as_str().unwrap().to_string();
    assert_eq!(extension_id.len(), 18);
    assert_eq!(
        snap["agent_status"],
        json!([{"queue_number": "8000", "status": "LOGGED_OUT"},
               {"queue_number": "8001", "status": "LOGGED_OUT"}])
    );

    let q8001 = queue_id(s.http, "8001").await;
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/api/call_queues/{q8001}/agents/1001",
            s.http
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"status": "LOGGED_IN"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ev = recv(&mut ws).await;
    assert_eq!(
        keys(&ev),
        [
            "agent_status",
            "event_type",
            "extension",
            "extension_id",
            "tenant_id",
            "time"
        ]
    );
    assert_eq!(ev["event_type"], "extension_agent_status");
    assert_eq!(ev["extension"], "sip:1001@facd.test");
    assert_eq!(ev["extension_id"], extension_id.as_str());
    assert_eq!(
        ev["agent_status"],
        json!([{"queue_number": "8001", "status": "NOT_READY"}])
    );
    assert!(ev["time"].as_str().unwrap().parse::<u64>().unwrap() > 1_600_000_000);

    // One change in two queues is one extension event listing both.
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
    s.core
        .apply(
            Command::Login {
                agent: "1001".into(),
                target: Target::All,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        recv(&mut ws).await["agent_status"],
        json!([{"queue_number": "8001", "status": "LOGGED_OUT"}])
    );
    assert_eq!(
        recv(&mut ws).await["agent_status"],
        json!([{"queue_number": "8000", "status": "READY"},
               {"queue_number": "8001", "status": "NOT_READY"}])
    );
    s.stop().await;
}

/// 40 more agents in queue 8000, so many changes can run at once.
fn crowded_config() -> String {
    let mut c = config();
    for i in 0..40 {
        c.push_str(&format!(
            "\n[[agents]]\nextension = \"2{i:03}\"\nname = \"A{i}\"\npassword = \"pw-{i}\"\nqueues = [\"8000\"]\n"
        ));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_lags_alone_and_gets_a_snapshot() {
    let s = TestServer::start(&crowded_config()).await;
    let agents: Vec<facd::engine::AgentId> = (0..40).map(|i| format!("2{i:03}").into()).collect();
    for a in &agents {
        s.core
            .apply(
                Command::Login {
                    agent: a.clone(),
                    target: Target::All,
                },
                Cause::Api,
            )
            .await
            .unwrap()
            .unwrap();
    }
    let sub = json!({"command": "subscribe", "topics": ["queue_events"], "queues": ["8000"]});
    let mut good = login(s.http, "admin", ADMIN).await;
    assert_eq!(subscribe(&mut good, sub.clone()).await["status"], 0);
    assert_eq!(recv(&mut good).await["event_type"], "queue_status");
    // The stalled one: a tiny receive buffer, and it does not read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    let tcp = sock.connect(s.http).await.unwrap();
    let (mut stalled, _) =
        tokio_tungstenite::client_async(format!("ws://{}/wsi", s.http), MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    send(
        &mut stalled,
        json!({"command": "auth", "username": "admin", "password": ADMIN}),
    )
    .await;
    assert_eq!(recv(&mut stalled).await["status"], 0);
    assert_eq!(subscribe(&mut stalled, sub).await["status"], 0);
    let first = recv(&mut stalled).await;
    assert_eq!(rows(&first).len(), 42);

    // 40 agents × 2 × ROUNDS changes, each one event in 8000; the good
    // subscriber reads them all as they come.
    const ROUNDS: usize = 100;
    let total = agents.len() * 2 * ROUNDS;
    // "Keeps up" made precise: the writers never run more than LEAD events
    // ahead of what the good subscriber has read (well under its session
    // queue), so on a loaded machine it cannot lag by being descheduled;
    // the stalled one never reads and must lag.
    const LEAD: usize = 256;
    let read = Arc::new(AtomicUsize::new(0));
    let issued = Arc::new(AtomicUsize::new(0));
    let read_by_reader = read.clone();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        let mut last = std::collections::HashMap::new();
        while n < total {
            let ev = recv(&mut good).await;
            // A snapshot would list all 42 members; deltas list one.
            assert_eq!(ev["event_type"], "queue_agent_status");
            let ups = rows(&ev);
            assert_eq!(ups.len(), 1, "the subscriber that keeps up got a snapshot");
            last.insert(
                ups[0]["agent_extension_number"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                ups[0]["state"].as_str().unwrap().to_string(),
            );
            n += 1;
            read_by_reader.store(n, Ordering::Release);
        }
        (good, last)
    });
    let mut writers = Vec::new();
    for a in agents.clone() {
        let core = s.core.clone();
        let (read, issued) = (read.clone(), issued.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                for cmd in [
                    Command::NotReady {
                        agent: a.clone(),
                        target: Target::All,
                        reason: None,
                    },
                    Command::Ready {
                        agent: a.clone(),
                        target: Target::All,
                    },
                ] {
                    while issued.load(Ordering::Acquire) >= read.load(Ordering::Acquire) + LEAD {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    issued.fetch_add(1, Ordering::AcqRel);
                    let applied = core.apply(cmd, Cause::Api).await.unwrap().unwrap();
                    assert_eq!(applied.events.len(), 1);
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let (mut good, last) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the subscriber that keeps up did not get every event")
        .unwrap();
    assert!(last.values().all(|s| s == "READY"));
    assert!(
        s.wsi.lags() > 0,
        "the stalled subscriber never lagged ({total} events)"
    );
    // The stalled one reads at last: after whatever was in flight it gets a
    // snapshot with every member READY, then new deltas.
    let mut saw_snapshot = false;
    for _ in 0..total + 10 {
        let ev = recv(&mut stalled).await;
        let ups = rows(&ev);
        if ev["event_type"] == "queue_status" {
            assert_eq!(ups.len(), 42);
            saw_snapshot = true;
            for a in ups {
                if a["agent_extension_number"] != "1001" && a["agent_extension_number"] != "1002" {
                    assert_eq!(a["state"], "READY", "{a}");
                }
            }
            break;
        }
    }
    assert!(saw_snapshot, "no snapshot after lagging");
    s.core
        .apply(
            Command::NotReady {
                agent: "2000".into(),
                target: Target::All,
                reason: None,
            },
            Cause::Api,
        )
        .await
        .unwrap()
        .unwrap();
    for ws in [&mut good, &mut stalled] {
        let ev = recv(ws).await;
        assert_eq!(ev["updated_agents"][0]["agent_extension_number"], "2000");
        assert_eq!(ev["updated_agents"][0]["state"], "NOT_READY");
    }
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_sessions_cleanly() {
    let s = TestServer::start(&config()).await;
    let mut ws = login(s.http, "admin", ADMIN).await;
    s.stop().await;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame with a code");
    assert_eq!(close.code, CloseCode::Away);
}

#[tokio::test(start_paused = true)]
async fn pings_and_closes_a_client_that_never_answers() {
    let _hold = HoldClock::new();
    let s = TestServer::start(&config()).await;
    let mut ws = login(s.http, "admin", ADMIN).await;
    let every = facd::api::wsi::PING_EVERY;
    tokio::time::advance(every + Duration::from_secs(1)).await;
    match ws.next().await {
        Some(Ok(Message::Ping(_))) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    // This client sends nothing (its automatic pong goes out only on its
    // next read): after two silent intervals facd closes it.
    tokio::time::advance(2 * every).await;
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => break f,
            Some(Ok(Message::Ping(_))) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Error);
    s.stop().await;
}

#[tokio::test]
async fn leaving_a_queue_is_a_removed_agent() {
    let s = TestServer::start(&config()).await;
    let mut ws = login(s.http, "admin", ADMIN).await;
    let a = subscribe(
        &mut ws,
        json!({"command": "subscribe", "topics": ["queue_events"], "queues": ["8000"]}),
    )
    .await;
    assert_eq!(a["status"], 0);
    assert_eq!(rows(&recv(&mut ws).await).len(), 2);
    let q = queue_id(s.http, "8000").await;
    // 8000's agents become 1002 and 1003: 1001 is removed, 1003 added.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/api/call_queues/{q}/agents", s.http))
        .bearer_auth(ADMIN)
        .json(&json!({"items": [{"extension_number": "1002"}, {"extension_number": "1003"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut removed = Vec::new();
    let mut updated = Vec::new();
    for _ in 0..2 {
        let ev = recv(&mut ws).await;
        assert_eq!(ev["event_type"], "queue_agent_status");
        assert_eq!(ev["queue_id"], q.as_str());
        removed.extend(ev["removed_agents"].as_array().unwrap().clone());
        updated.extend(ev["updated_agents"].as_array().unwrap().clone());
    }
    assert_eq!(removed, [json!({"agent_extension_number": "1001"})]);
    assert_eq!(updated.len(), 1);
    assert_eq!(
        (&updated[0]["agent_extension_number"], &updated[0]["state"]),
        (&json!("1003"), &json!("LOGGED_OUT"))
    );
    s.stop().await;
}
