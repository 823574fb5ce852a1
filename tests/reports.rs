//! Reports and the per-agent history over HTTP against the real server:
//! changes made through the REST API come back as time in state that adds
//! up to the range (JSON and CSV), paged history, logins by token and by an
//! agent's SIP password, clear errors for bad input, and the history
//! surviving a restart. (The exact sums on a scripted day run on a virtual
//! clock in `src/history/tests.rs`.)

mod common;

use std::net::SocketAddr;

use common::{base_config, TestServer};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-1";
const ALICE: &str = "alice-token-1";

fn config() -> String {
    format!(
        "{}\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n\n\
         [[api_users]]\nname = \"alice\"\ntoken = \"{ALICE}\"\nrole = \"agent\"\nextension = \"1001\"\n",
        base_config("")
    )
}

enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

async fn get(
    http: SocketAddr,
    path: &str,
    auth: Auth<'_>,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(format!("http://{http}{path}"));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
    };
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

async fn get_json(http: SocketAddr, path: &str, auth: Auth<'_>) -> (u16, Value) {
    let (st, _, body) = get(http, path, auth, None).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (st, v)
}

async fn post(http: SocketAddr, path: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}{path}"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}: {}", resp.text().await.unwrap());
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Milliseconds from a CSV figure with three decimals.
fn ms(s: &str) -> u64 {
    let (a, b) = s.split_once('.').unwrap();
    a.parse::<u64>().unwrap() * 1000 + b.parse::<u64>().unwrap()
}

#[tokio::test]
async fn changes_become_reports_that_add_up_and_history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = TestServer::start_with_storage(&config(), &data, tempfile::tempdir().unwrap()).await;
    let http = s.http;
    let start = unix_now() - 1;
    post(
        http,
        "/call_queues/8000/agents/1001",
        json!({"status": "LOGGED_IN"}),
    )
    .await;
    post(
        http,
        "/call_queues/8000/agents/1001",
        json!({"status": "BREAK"}),
    )
    .await;
    post(
        http,
        "/call_queues/8000/agents/1001",
        json!({"status": "READY"}),
    )
    .await;
    post(
        http,
        "/agents/1001/calls",
        json!({"call_id": "c1", "kind": "acd", "queue": "8000"}),
    )
    .await;
    reqwest::Client::new()
        .delete(format!("http://{http}/agents/1001/calls/c1"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let to = unix_now() + 3600;

    let path = format!("/reports/agent_states?from={start}&to={to}");
    let (st, v) = get_json(http, &path, Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let range = v["range_ms"].as_u64().unwrap();
    assert_eq!(
        range,
        v["to_ms"].as_u64().unwrap() - v["from_ms"].as_u64().unwrap()
    );
    // Every membership of the configuration is a row (1001:8000, 1001:8001,
    // 1002:8000, 1002:8002, 1003:8001), and each adds up to the range.
    assert_eq!(v["count"], 5, "{v}");
    for it in v["items"].as_array().unwrap() {
        let sum: u64 = it["state_ms"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(sum, range, "{it}");
    }
    let row = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|it| it["extension_number"] == "1001" && it["queue_number"] == "8000")
        .unwrap();
    assert_eq!(
        (row["logins"].as_u64(), row["acd_calls"].as_u64()),
        (Some(1), Some(1)),
        "{row}"
    );
    assert_eq!(row["display_name"], "Alice");
    assert_eq!(row["queue_name"], "Sales");
    assert!(row["not_ready_ms"].get("BREAK").is_some(), "{row}");

    // CSV, by Accept and by format=csv: same rows, seconds that add up
    // (to the range up to the time of that request).
    for (p, accept) in [
        (path.clone(), Some("text/csv")),
        (format!("{path}&format=csv"), None),
    ] {
        let (st, ctype, body) = get(http, &p, Auth::Bearer(ADMIN), accept).await;
        assert_eq!(st, 200, "{body}");
        assert!(ctype.starts_with("text/csv"), "{ctype}");
        let mut lines = body.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(
            &head[..3],
            ["extension_number", "display_name", "queue_number"]
        );
        assert!(head.contains(&"NOT_READY BREAK_s"), "{head:?}");
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 5);
        let states = head.iter().position(|h| *h == "LOGGED_OUT_s").unwrap();
        let totals: Vec<u64> = rows.iter().map(|r| ms(r[head.len() - 1])).collect();
        assert!(
            totals.iter().all(|t| *t == totals[0] && *t >= range),
            "{totals:?}"
        );
        for r in &rows {
            let sum: u64 = r[states..states + 6].iter().map(|x| ms(x)).sum();
            assert_eq!(sum, ms(r[head.len() - 1]), "{r:?}");
        }
    }

    // An agent sees its own rows: by its API token or its SIP password.
    for auth in [Auth::Bearer(ALICE), Auth::Basic("1001", "alice-secret")] {
        let (st, v) = get_json(http, &path, auth).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["count"], 2);
        assert!(v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|it| it["extension_number"] == "1001"));
    }
    let (st, v) = get_json(http, &format!("{path}&agent=1002"), Auth::Bearer(ALICE)).await;
    assert_eq!(st, 403, "{v}");

    // The history, paged one change at a time.
    let (st, v) = get_json(http, "/agents/1001/history", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let all: Vec<Value> = v["items"].as_array().unwrap().clone();
    let tos: Vec<&str> = all.iter().map(|c| c["to"].as_str().unwrap()).collect();
    assert_eq!(
        tos,
        ["READY", "NOT_READY", "READY", "QUEUE_CALL", "READY"],
        "{v}"
    );
    assert_eq!(all[1]["reason"], "BREAK");
    assert_eq!(all[3]["cause"], "call");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, v) = get_json(
            http,
            &format!("/agents/1001/history?limit=2{cursor}"),
            Auth::Basic("admin", ADMIN),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        paged.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // A restart keeps the history and the sums.
    s.stop().await;
    let s = TestServer::start_with_storage(&config(), &data, tempfile::tempdir().unwrap()).await;
    let http = s.http;
    let (st, v) = get_json(http, "/agents/1001/history", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["items"].as_array().unwrap(), &all);
    let (st, v) = get_json(http, &path, Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    let range = v["range_ms"].as_u64().unwrap();
    for it in v["items"].as_array().unwrap() {
        let sum: u64 = it["state_ms"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(sum, range, "{it}");
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = TestServer::start(&config()).await;
    let http = s.http;
    post(
        http,
        "/call_queues/8000/agents/1001",
        json!({"status": "LOGGED_IN"}),
    )
    .await;
    let now = unix_now();
    let ok = format!("from={}&to={}", now - 60, now + 60);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/reports/agent_states?from=yesterday&to=2025-01-01".into(),
            400,
            "not a time",
        ),
        (
            "/reports/agent_states?from=2025-02-30&to=2025-03-01".into(),
            400,
            "not a time",
        ),
        (
            format!("/reports/agent_states?from={now}&to={}", now - 10),
            400,
            "must be before",
        ),
        (
            format!("/reports/agent_states?from={now}&to={now}"),
            400,
            "must be before",
        ),
        (
            format!("/reports/agent_states?to={now}"),
            400,
            "from is required",
        ),
        (
            "/reports/agent_states?from=2020-01-01&to=2022-01-01".into(),
            400,
            "366 days",
        ),
        (
            format!("/reports/agent_states?from={}&to={}", now + 100, now + 200),
            400,
            "future",
        ),
        (
            "/reports/agent_states?from=2001-01-01&to=2001-01-02".into(),
            400,
            "history is kept from",
        ),
        (
            format!("/reports/agent_states?{ok}&colour=red"),
            400,
            "unknown parameter",
        ),
        (
            format!("/reports/agent_states?{ok}&format=xml"),
            400,
            "json or csv",
        ),
        (
            format!("/reports/agent_states?{ok}&agent=9999"),
            404,
            "unknown agent",
        ),
        (
            format!("/reports/agent_states?{ok}&agent=bad/agent"),
            400,
            "letters, digits",
        ),
        (
            format!("/reports/agent_states?{ok}&queue=7777"),
            404,
            "unknown queue",
        ),
        (
            format!("/reports/agent_states?{ok}&queue=80x"),
            400,
            "digits",
        ),
        (
            format!("/reports/agent_states?{ok}&queue=8002&agent=1001"),
            404,
            "not a member",
        ),
        ("/agents/9999/history".into(), 404, "unknown agent"),
        ("/agents/1001/history?limit=0".into(), 400, "limit"),
        ("/agents/1001/history?limit=5000".into(), 400, "limit"),
        ("/agents/1001/history?cursor=nonsense".into(), 400, "cursor"),
    ];
    for (path, want, says) in &cases {
        let (st, v) = get_json(http, path, Auth::Bearer(ADMIN)).await;
        assert_eq!(st, *want, "{path}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{path}: {msg:?} should say {says:?}");
    }
    for auth in [
        Auth::None,
        Auth::Bearer("wrong-token"),
        Auth::Basic("1001", "wrong"),
        Auth::Basic("nobody", "x"),
    ] {
        let (st, _) = get_json(http, &format!("/reports/agent_states?{ok}"), auth).await;
        assert_eq!(st, 401);
    }
    let (st, _) = get_json(http, "/wallboard/state", Auth::None).await;
    assert_eq!(st, 401);
    // Nothing was lost or changed by all that.
    let (st, v) = get_json(http, "/agents/1001", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["queues"][0]["status"], "READY", "{v}");
    let (st, v) = get_json(
        http,
        &format!("/reports/agent_states?{ok}&agent=1001&queue=8000"),
        Auth::Bearer(ADMIN),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"][0]["logins"], 1);
    s.stop().await;
}

#[tokio::test]
async fn pages_are_served_from_the_binary_and_the_snapshot_follows_the_login() {
    let s = TestServer::start(&config()).await;
    let http = s.http;
    for (path, ctype, has) in [
        ("/wallboard", "text/html", "/assets/wallboard.js"),
        ("/reports", "text/html", "/assets/reports.js"),
        ("/assets/wsi.js", "text/javascript", "queue_agent_status"),
        ("/assets/board.css", "text/css", "s-READY"),
    ] {
        let (st, ct, body) = get(http, path, Auth::None, None).await;
        assert_eq!(st, 200, "{path}");
        assert!(ct.starts_with(ctype), "{path}: {ct}");
        assert!(body.contains(has), "{path}");
    }
    let (st, v) = get_json(http, "/wallboard/state", Auth::Basic("admin", ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["queues"].as_array().unwrap().len(), 3);
    assert_eq!(v["agents"].as_array().unwrap().len(), 3);
    assert_eq!(v["agents"][0]["queues"][0]["state"], "LOGGED_OUT");
    let (st, v) = get_json(
        http,
        "/wallboard/state",
        Auth::Basic("1001", "alice-secret"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["extension"], "1001");
    let queues: Vec<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["number"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["8000", "8001"]);
    s.stop().await;
}
