//! Several facd nodes on one PostgreSQL (`[storage] backend = "postgres"`),
//! against a real PostgreSQL cluster the tests start themselves
//! (`common::pg`): a change on one node is durable, evented and visible on
//! the others; one agent changed from two nodes at once ends in one serial
//! order; a node killed with SIGKILL loses no confirmed change and no
//! wrap-up; PostgreSQL restarted under load answers 500 meanwhile and
//! recovers by itself. Without PostgreSQL each test says SKIPPED and
//! passes, except under CI (`CI` set).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::TempPg;
use common::{base_config, Req, TestServer, Udp};
use facd::engine::{AgentState, Cause, Command, Event, ReasonRef, Target};
use facd::uas::ApplyError;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "admin-token-1";

/// The tests' agents and queues, with an admin token; wrap-up in 8002
/// lasts 2 s.
fn config() -> String {
    format!(
        "{}\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
        base_config("").replace("wrap_up_secs = 5", "wrap_up_secs = 2")
    )
}

/// `agent`'s state in `queue` on a node.
async fn state(s: &TestServer, agent: &'static str, queue: &'static str) -> AgentState {
    s.core
        .query(move |e| {
            e.agent(agent)
                .and_then(|v| v.queues.into_iter().find(|q| q.queue == queue))
                .map(|q| q.state)
        })
        .await
        .unwrap()
        .unwrap()
}

/// Waits (at most 10 s) until `f` holds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < until, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

use common::wsi::{recv as ws_recv, Ws};

/// A WSI session logged in as the admin and subscribed to `queue`'s events
/// (its snapshot read).
async fn wsi_subscribed(http: SocketAddr, queue: &str) -> Ws {
    let mut ws = tokio_tungstenite::connect_async(format!("ws://{http}/wsi"))
        .await
        .unwrap()
        .0;
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(
        json!({"command": "auth", "username": "admin", "password": ADMIN}),
    ))
    .await
    .unwrap();
    assert_eq!(ws_recv(&mut ws).await["status"], 0);
    ws.send(send(
        json!({"command": "subscribe", "topics": ["queue_events"], "queues": [queue]}),
    ))
    .await
    .unwrap();
    assert_eq!(ws_recv(&mut ws).await["status"], 0);
    assert_eq!(ws_recv(&mut ws).await["event_type"], "queue_status");
    ws
}

/// Dials a star code as `agent` and returns the final status (ACKing a
/// 200 and answering facd's BYE).
async fn dial(c: &Udp, user: &str, agent: &str, call_id: &str) -> u16 {
    c.send(&Req::invite(
        user,
        agent,
        call_id,
        &format!("z9hG4bK-{call_id}"),
        "UDP",
        c.port(),
    ))
    .await;
    let resp = c.recv_final_for(call_id).await;
    if resp.status() == 200 {
        let tag = resp.to_tag().unwrap();
        c.send(&Req::ack(user, agent, call_id, &tag, "UDP", c.port()))
            .await;
        let bye = c.recv().await;
        c.send(&Req::ok_for(&bye)).await;
    }
    resp.status()
}

#[tokio::test]
async fn a_star_code_on_node_a_is_a_wsi_event_on_node_b_and_is_read_back_at_start() {
    let Some(pg) = TempPg::start() else { return };
    let a = TestServer::start_pg(&config(), &pg.url).await;
    let b = TestServer::start_pg(&config(), &pg.url).await;
    let mut ws = wsi_subscribed(b.http, "8000").await;

    let c = Udp::new(a.udp).await;
    assert_eq!(dial(&c, "*388000", "1001", "pg1").await, 200);
    // B's WSI session gets the change A made, as PortSIP's delta.
    let ev = ws_recv(&mut ws).await;
    assert_eq!(ev["event_type"], "queue_agent_status", "{ev}");
    let row = &ev["updated_agents"][0];
    assert_eq!(
        (
            row["agent_extension_number"].as_str(),
            row["state"].as_str()
        ),
        (Some("1001"), Some("READY")),
        "{ev}"
    );
    assert_eq!(state(&b, "1001", "8000").await, AgentState::Ready);
    // Durable in PostgreSQL: the agent's row and the change.
    assert_eq!(
        pg.psql("SELECT version FROM facd_agents WHERE agent = '1001'"),
        "1"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM facd_changes"), "1");
    assert_eq!(pg.psql("SELECT max(version) FROM facd_schema"), "1");

    // B changes it back; A sees it.
    let c = Udp::new(b.udp).await;
    assert_eq!(dial(&c, "*37*1", "1001", "pg2").await, 200);
    eventually("A sees B's change", || async {
        state(&a, "1001", "8000").await == AgentState::NotReady
    })
    .await;
    a.stop().await;
    b.stop().await;

    // A new node reads the state from the database.
    let n = TestServer::start_pg(&config(), &pg.url).await;
    assert_eq!(state(&n, "1001", "8000").await, AgentState::NotReady);
    assert_eq!(state(&n, "1001", "8001").await, AgentState::LoggedOut);
    n.stop().await;
}

/// The events of `agent` a hub subscriber got, as (queue, from, to, cause).
fn of_agent(events: &[Arc<Event>], agent: &str) -> Vec<(String, AgentState, AgentState, Cause)> {
    events
        .iter()
        .filter(|e| e.agent.as_str() == agent)
        .map(|e| (e.queue.to_string(), e.from, e.to, e.cause))
        .collect()
}

/// Every event received so far.
fn drain(rx: &mut tokio::sync::broadcast::Receiver<Arc<Event>>, into: &mut Vec<Arc<Event>>) {
    while let Ok(ev) = rx.try_recv() {
        into.push(ev);
    }
}

#[tokio::test]
async fn one_agent_hammered_from_two_nodes_ends_in_one_serial_order_on_both() {
    let Some(pg) = TempPg::start() else { return };
    let a = TestServer::start_pg(&config(), &pg.url).await;
    let b = TestServer::start_pg(&config(), &pg.url).await;
    let mut rx_a = a.hub.subscribe();
    let mut rx_b = b.hub.subscribe();
    let login = Command::Login {
        agent: "1001".into(),
        target: Target::All,
    };
    a.core.apply(login, Cause::Api).await.unwrap().unwrap();

    // Each node changes 1001 as fast as it can, 8 commands in flight each.
    let cmds = |i: usize| match i % 3 {
        0 => Command::Ready {
            agent: "1001".into(),
            target: Target::All,
        },
        1 => Command::NotReady {
            agent: "1001".into(),
            target: Target::Queue("8000".into()),
            reason: Some(ReasonRef::Code(1)),
        },
        _ => Command::Ready {
            agent: "1001".into(),
            target: Target::Queue("8001".into()),
        },
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (node, core) in [(0usize, a.core.clone()), (1, b.core.clone())] {
        for lane in 0..8usize {
            let core = core.clone();
            tasks.spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..25usize {
                    let r = core.apply(cmds(i + lane + node), Cause::Api).await.unwrap();
                    outcomes.push(r.map(|a| a.events.len()));
                }
                outcomes
            });
        }
    }
    let (mut ok, mut not_saved, mut refused) = (0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        for o in r.unwrap() {
            match o {
                Ok(_) => ok += 1,
                Err(ApplyError::NotSaved) => not_saved += 1,
                Err(ApplyError::Rejected(_)) => refused += 1,
            }
        }
    }
    assert_eq!(ok + not_saved + refused, 400);
    assert!(ok > 0, "no change succeeded");
    eprintln!("hammer: {ok} applied, {not_saved} conflicts answered 500, {refused} refused");

    // Both replicas and the database agree, and both nodes published the
    // same events in the same order.
    let view = |s: &TestServer| {
        let core = s.core.clone();
        async move { core.query(|e| e.agent("1001").unwrap()).await.unwrap() }
    };
    let (mut ev_a, mut ev_b) = (Vec::new(), Vec::new());
    eventually("both nodes publish the same events", || {
        drain(&mut rx_a, &mut ev_a);
        drain(&mut rx_b, &mut ev_b);
        let same = of_agent(&ev_a, "1001") == of_agent(&ev_b, "1001");
        async move { same }
    })
    .await;
    // One more change, made after the hammering, is the last event on both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut rx_a, &mut ev_a);
    drain(&mut rx_b, &mut ev_b);
    assert_eq!(of_agent(&ev_a, "1001"), of_agent(&ev_b, "1001"));
    assert_eq!(view(&a).await, view(&b).await);
    let versions = pg.psql("SELECT version FROM facd_agents WHERE agent = '1001'");
    let changes = pg.psql("SELECT count(*) FROM facd_changes WHERE versions ? '1001'");
    assert_eq!(versions, changes, "one change row per version");
    // Replaying the events from LOGGED_OUT gives the final state: one
    // serial order of the applied changes.
    let mut by_queue: BTreeMap<String, AgentState> = BTreeMap::new();
    for (q, from, to, _) in of_agent(&ev_a, "1001") {
        let cur = by_queue.entry(q.clone()).or_insert(AgentState::LoggedOut);
        assert_eq!(*cur, from, "event from {from:?} while {q} was {cur:?}");
        *cur = to;
    }
    for q in view(&a).await.queues {
        assert_eq!(by_queue.get(q.queue.as_str()), Some(&q.state));
    }
    a.stop().await;
    b.stop().await;
}

/// A config file for a node spawned as a process, on `url`.
fn config_file(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("facd.toml");
    let text = format!(
        "{}\n[storage]\ndir = {:?}\nbackend = \"postgres\"\nurl = {url:?}\n",
        config(),
        dir.join("data").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// POST to a node's REST API as the admin: (status, body).
async fn post(http: SocketAddr, path: &str, body: Value) -> Result<(u16, Value), reqwest::Error> {
    let r = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// The ids of `agent`'s calls on a node.
async fn calls(s: &TestServer, agent: &'static str) -> Vec<String> {
    s.core
        .query(move |e| {
            e.export_agent(agent)
                .into_iter()
                .find_map(|c| match c {
                    facd::engine::Change::Calls { calls, .. } => {
                        Some(calls.into_iter().map(|c| c.call_id).collect())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn node_a_killed_mid_burst_loses_no_confirmed_change_and_b_keeps_serving() {
    let Some(pg) = TempPg::start() else { return };
    let b = TestServer::start_pg(&config(), &pg.url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut a = Reaped::kill(common::spawn_facd(&config_file(dir.path(), &pg.url)));
    let a_http = a.http.unwrap();

    // A burst of call reports on A (each call a new id: every confirmed
    // one must be found), from 3 agents at once; A dies in the middle.
    let mut tasks = tokio::task::JoinSet::new();
    for agent in ["1001", "1002", "1003"] {
        tasks.spawn(async move {
            let mut confirmed = Vec::new();
            for i in 0..100_000u32 {
                let id = format!("{agent}-k{i}");
                match post(
                    a_http,
                    &format!("/api/agents/{agent}/calls"),
                    json!({"call_id": id, "type": "OTHER"}),
                )
                .await
                {
                    Ok((200, _)) => confirmed.push(id),
                    Ok((status, body)) => panic!("{status} {body}"),
                    Err(_) => break, // A is gone
                }
            }
            (agent, confirmed)
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        let (agent, confirmed) = r.unwrap();
        total += confirmed.len();
        let on_b = match agent {
            "1001" => "1001",
            "1002" => "1002",
            _ => "1003",
        };
        eventually(&format!("B has every call A confirmed for {agent}"), || {
            let want = confirmed.clone();
            let b = &b;
            async move {
                let have = calls(b, on_b).await;
                want.iter().all(|id| have.contains(id))
            }
        })
        .await;
    }
    assert!(total > 0, "A confirmed nothing before it was killed");
    eprintln!("A confirmed {total} changes before SIGKILL; all on B");
    // A may have committed a change it had no time to confirm: once B has
    // that too (B's replica is the database's), B's next change is not a
    // conflict (it would be answered 500, and the phone would dial again).
    let stored: Value = serde_json::from_str(
        &pg.psql("SELECT record::text FROM facd_records WHERE agent = '1001' AND key = 'calls'"),
    )
    .unwrap();
    let in_db: Vec<String> = stored["Calls"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_string())
        .collect();
    eventually("B has what A committed", || {
        let want = in_db.clone();
        let b = &b;
        async move {
            let have = calls(b, "1001").await;
            want.iter().all(|id| have.contains(id))
        }
    })
    .await;
    // B keeps serving.
    let c = Udp::new(b.udp).await;
    assert_eq!(dial(&c, "*388000", "1001", "after-kill").await, 200);
    assert_eq!(state(&b, "1001", "8000").await, AgentState::OtherCall);
    b.stop().await;
}

#[tokio::test]
async fn a_wrap_up_fires_once_with_two_nodes_and_on_b_after_a_dies() {
    let Some(pg) = TempPg::start() else { return };
    let b = TestServer::start_pg(&config(), &pg.url).await;
    let mut events = b.hub.subscribe();
    let dir = tempfile::tempdir().unwrap();
    let mut a = Reaped::kill(common::spawn_facd(&config_file(dir.path(), &pg.url)));
    let a_http = a.http.unwrap();
    let a_udp = a.udp.unwrap();
    let c = Udp::new(a_udp).await;
    assert_eq!(dial(&c, "*388002", "1002", "wl").await, 200);

    // An ACD call ends on A: WRAP_UP for 2 s (then READY: 8002 is
    // auto-ready), and both nodes are alive.
    let acd = |id: &str| json!({"call_id": id, "type": "ACD", "queue_number": "8002"});
    let wrap_up = |id: &'static str| async move {
        let (st, v) = post(a_http, "/api/agents/1002/calls", acd(id))
            .await
            .unwrap();
        assert_eq!(st, 200, "{v}");
        let path = format!("/api/agents/1002/calls/{id}/destroy");
        let (st, v) = post(a_http, &path, json!({})).await.unwrap();
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["agent_status"][1]["status"], "WRAP_UP", "{v}");
    };
    wrap_up("w1").await;
    eventually("B sees the wrap-up", || async {
        state(&b, "1002", "8002").await == AgentState::WrapUp
    })
    .await;
    eventually("the wrap-up ends (on one node)", || async {
        state(&b, "1002", "8002").await == AgentState::Ready
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timer_changes = || {
        pg.psql(
            "SELECT count(*) FROM facd_changes, jsonb_array_elements(payload->'events') e \
             WHERE e->>'cause' = 'timer'",
        )
    };
    assert_eq!(timer_changes(), "1", "exactly one node fired the wrap-up");
    assert_eq!(pg.psql("SELECT count(*) FROM facd_wrapups"), "0");

    // Again, and A dies at once: B fires it.
    wrap_up("w2").await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    eventually("B sees the wrap-up A confirmed", || async {
        state(&b, "1002", "8002").await == AgentState::WrapUp
    })
    .await;
    eventually("B ends the wrap-up A started", || async {
        state(&b, "1002", "8002").await == AgentState::Ready
    })
    .await;
    // (B's replica changes as soon as it fires; the row once committed.)
    eventually("B's expiry is committed", || {
        let n = timer_changes();
        async move { n == "2" }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(timer_changes(), "2", "fired once");
    assert_eq!(pg.psql("SELECT count(*) FROM facd_wrapups"), "0");
    // B's own expiry is published once durable (its replica changed
    // before): wait for it, then for anything doubled.
    let mut timer_events = 0;
    eventually("B publishes both expiries", || {
        while let Ok(ev) = events.try_recv() {
            if ev.cause == Cause::Timer && ev.agent.as_str() == "1002" {
                timer_events += 1;
            }
        }
        let n = timer_events;
        async move { n >= 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(ev) = events.try_recv() {
        if ev.cause == Cause::Timer && ev.agent.as_str() == "1002" {
            timer_events += 1;
        }
    }
    assert_eq!(timer_events, 2, "B published both expiries, once each");
    b.stop().await;
}

#[tokio::test]
async fn postgres_restarted_under_load_answers_500_meanwhile_and_recovers_by_itself() {
    let Some(pg) = TempPg::start() else { return };
    let a = TestServer::start_pg(&config(), &pg.url).await;
    let core = a.core.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    // Call reports on 1001 back to back, each a new id.
    let load = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        let mut i = 0u32;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let id = format!("r{i}");
            let cmd = Command::CallStart {
                agent: "1001".into(),
                call_id: id.clone(),
                kind: facd::engine::CallKind::Other,
            };
            let r = core.apply(cmd, Cause::Api).await.unwrap();
            outcomes.push((id, r.map(|_| ())));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        outcomes
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.stop();
    // Meanwhile a star code is answered 500 with a reason, not 200.
    let c = Udp::new(a.udp).await;
    let inv = Req::invite("*388000", "1002", "down1", "z9hG4bK-down1", "UDP", c.port());
    c.send(&inv).await;
    let r = c.recv_final_for("down1").await;
    assert_eq!(r.status(), 500, "{}", r.raw);
    assert!(r.reason().contains("Not Saved"), "{}", r.raw);
    tokio::time::sleep(Duration::from_millis(500)).await;
    pg.start_again();
    // It recovers by itself: star codes succeed again.
    let mut n = 0;
    eventually("changes succeed again", || {
        n += 1;
        let c = &c;
        let id = format!("up{n}");
        async move { dial(c, "*388000", "1002", &id).await == 200 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    let ok: Vec<&String> = outcomes
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(id, _)| id)
        .collect();
    assert!(failed > 0, "no change failed while PostgreSQL was down");
    assert!(
        outcomes
            .iter()
            .all(|(_, r)| !matches!(r, Err(ApplyError::Rejected(_)))),
        "{outcomes:?}"
    );
    assert!(outcomes.last().unwrap().1.is_ok(), "not recovered");
    // Every change answered OK is in the database.
    let stored =
        pg.psql("SELECT record::text FROM facd_records WHERE agent = '1001' AND key = 'calls'");
    for id in &ok {
        assert!(
            stored.contains(&format!("\"{id}\"")),
            "{id} confirmed but not stored"
        );
    }
    // And the replica agrees with the database.
    let have = calls(&a, "1001").await;
    for id in &ok {
        assert!(have.contains(id));
    }
    eprintln!(
        "{} confirmed, {failed} answered NotSaved while PostgreSQL restarted",
        ok.len()
    );
    a.stop().await;
}

#[test]
fn postgres_settings_are_checked_and_an_unreachable_database_stops_the_start() {
    let check = |storage: &str| {
        let text = format!("{}\n{storage}", base_config(""));
        match facd::config::Config::from_toml(&text) {
            Ok(_) => Vec::new(),
            Err(facd::config::ConfigErrors(e)) => e
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect(),
        }
    };
    let e = check("[storage]\nbackend = \"postgres\"\n");
    assert!(
        e.iter().any(|e| e.starts_with("storage.url: is required")),
        "{e:?}"
    );
    let e = check("[storage]\nurl = \"postgres://u:secret@127.0.0.1/db\"\n");
    assert!(
        e.iter().any(|e| e.starts_with("storage.url: is only used")),
        "{e:?}"
    );
    let e = check(
        "[storage]\nbackend = \"postgres\"\nurl = \"postgres://u:secret@127.0.0.1:notaport/db\"\n",
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("storage.url: is not a PostgreSQL")),
        "{e:?}"
    );
    assert!(e.iter().all(|e| !e.contains("secret")), "{e:?}");
    assert!(
        check("[storage]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1:5/db\"\n")
            .is_empty()
    );

    // Nothing listens on the port: facd exits 1 with the reason.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &format!("postgres://facd:secret@127.0.0.1:{port}/facd"),
    );
    let out = std::process::Command::new(common::facd_bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres: cannot connect"), "{err}");
    assert!(!err.contains("secret"), "{err}");
}

/// SIPp → Kamailio's dispatcher (contrib/kamailio/dispatcher.cfg) → two
/// facd nodes → PostgreSQL: every call answered, each agent's calls
/// hashed to one node, both nodes in the same state. Without kamailio or
/// sipp it says SKIPPED and passes, except under CI.
#[tokio::test]
async fn sipp_through_kamailios_dispatcher_to_two_nodes_on_one_database() {
    use std::process::{Command as Proc, Stdio};
    let missing: Vec<&str> = [("kamailio", "-v"), ("sipp", "-v")]
        .into_iter()
        .filter(|(tool, arg)| Proc::new(tool).arg(arg).output().is_err())
        .map(|(tool, _)| tool)
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {missing:?} is not installed (apt-get install kamailio sip-tester)"
        );
        eprintln!("SKIPPED: {missing:?} not installed (apt-get install kamailio sip-tester)");
        return;
    }
    let Some(pg) = TempPg::start() else { return };
    let a = TestServer::start_pg(&config(), &pg.url).await;
    let b = TestServer::start_pg(&config(), &pg.url).await;
    let run = tempfile::tempdir().unwrap();
    let list = run.path().join("dispatcher.list");
    std::fs::write(&list, format!("1 sip:{}\n1 sip:{}\n", a.udp, b.udp)).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kamailio");
    let kamailio = Proc::new("kamailio")
        .current_dir(&contrib)
        .args(["-f", "dispatcher.cfg", "-DD", "-E", "-m", "32", "-M", "8"])
        .arg("-Y")
        .arg(run.path())
        .arg("-P")
        .arg(run.path().join("kamailio.pid"))
        .args(["-A", &format!("LISTEN=udp:127.0.0.1:{port}")])
        .args(["-A", &format!("DS_LIST=\"{}\"", list.display())])
        .args(["-A", "CHILDREN=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(run.path().join("kamailio.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let kamailio = Reaped::term(kamailio);
    // The first OPTIONS probes (every 2 s) find both nodes up.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // 1001 and 1002 dial, in turn, login / not ready / ready / logout in
    // 8000: 5 rounds, 40 calls, every one a change.
    let csv = run.path().join("agents.csv");
    let mut rows = String::from("SEQUENTIAL\n");
    for code in ["*388000", "*378000*1", "*368000", "*398000"] {
        for agent in ["1001", "1002"] {
            rows.push_str(&format!("{agent};{code}\n"));
        }
    }
    std::fs::write(&csv, rows).unwrap();
    let sipp = tokio::task::spawn_blocking({
        let dir = run.path().to_path_buf();
        move || {
            Proc::new("sipp")
                .current_dir(&dir)
                .arg(format!("127.0.0.1:{port}"))
                .arg("-sf")
                .arg(common::fixture("sipp/fac_load.xml"))
                .arg("-inf")
                .arg(dir.join("agents.csv"))
                .args(["-i", "127.0.0.1", "-m", "40", "-r", "20", "-l", "5"])
                .args(["-nostdin", "-timeout", "30", "-timeout_error"])
                .args(["-trace_err", "-error_file"])
                .arg(dir.join("errors.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(run.path().join("kamailio.log")).unwrap_or_default();
    let errors = std::fs::read_to_string(run.path().join("errors.log")).unwrap_or_default();
    drop(kamailio);
    assert!(
        sipp.success(),
        "SIPp failed ({sipp}): {errors}\nkamailio: {log}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM facd_changes"), "40");
    // Hashing by the From user: each agent's changes were made by one node.
    for agent in ["1001", "1002"] {
        let nodes = pg.psql(&format!(
            "SELECT count(DISTINCT node) FROM facd_changes WHERE versions ? '{agent}'"
        ));
        assert_eq!(nodes, "1", "{agent}'s calls went to more than one node");
    }
    eventually("both nodes agree", || async {
        let view = |s: &TestServer| {
            let core = s.core.clone();
            async move {
                core.query(|e| (e.agent("1001").unwrap(), e.agent("1002").unwrap()))
                    .await
                    .unwrap()
            }
        };
        view(&a).await == view(&b).await
    })
    .await;
    assert_eq!(state(&a, "1001", "8000").await, AgentState::LoggedOut);
    a.stop().await;
    b.stop().await;
}

/// A child process ended when dropped (also when a test fails half-way):
/// SIGKILL for a facd node, SIGTERM for Kamailio, whose main process then
/// ends its children.
struct Reaped<T: AsChild> {
    inner: T,
    signal: i32,
}

trait AsChild {
    fn child(&mut self) -> &mut std::process::Child;
}

impl AsChild for std::process::Child {
    fn child(&mut self) -> &mut std::process::Child {
        self
    }
}

impl AsChild for common::Spawned {
    fn child(&mut self) -> &mut std::process::Child {
        &mut self.child
    }
}

impl<T: AsChild> Reaped<T> {
    fn kill(inner: T) -> Self {
        Self {
            inner,
            signal: libc::SIGKILL,
        }
    }

    fn term(inner: T) -> Self {
        Self {
            inner,
            signal: libc::SIGTERM,
        }
    }
}

impl<T: AsChild> std::ops::Deref for Reaped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsChild> std::ops::DerefMut for Reaped<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T: AsChild> Drop for Reaped<T> {
    fn drop(&mut self) {
        let child = self.inner.child();
        if let (Ok(None), Ok(pid)) = (child.try_wait(), i32::try_from(child.id())) {
            // SAFETY: a plain signal to our own child process.
            unsafe {
                libc::kill(pid, self.signal);
            }
            let _ = child.wait();
        }
    }
}
