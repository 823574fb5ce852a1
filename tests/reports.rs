//! Reports and the per-agent history over HTTP against the real server
//! (`/api/reports/agent_states`, `/api/agents/{agent_number}/history`,
//! `/api/wallboard/state`): changes made through the PortSIP REST API come
//! back as time in state that adds up to the range (JSON and CSV), paged
//! history with membership removals marked, bearer tokens (static, and from
//! `POST /api/login` with an agent's SIP password), PortSIP's error shape
//! for bad input, and the history surviving a restart. (The exact sums on
//! a scripted day run on a virtual clock in `src/history/tests.rs`.)

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

/// PortSIP's error message: `{"errors":[{"code","message"}]}`.
fn message(v: &Value) -> &str {
    v["errors"][0]["message"].as_str().unwrap_or_default()
}

/// The id of queue `number`, from `GET /api/call_queues`.
async fn qid(http: SocketAddr, number: &str) -> String {
    let (st, v) = get_json(http, "/api/call_queues", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["extension_number"] == number)
        .unwrap_or_else(|| panic!("queue {number} in {v}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An access token of `POST /api/login`.
async fn login(http: SocketAddr, user: &str, password: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/api/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
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
    let q8000 = qid(http, "8000").await;
    let q8001 = qid(http, "8001").await;
    let start = unix_now() - 1;
    let alice = format!("/api/call_queues/{q8000}/agents/1001");
    for status in ["LOGGED_IN", "BREAK", "READY"] {
        post(http, &alice, json!({"status": status})).await;
    }
    post(
        http,
        "/api/agents/1001/calls",
        json!({"call_id": "c1", "type": "ACD", "queue_number": "8000"}),
    )
    .await;
    post(http, "/api/agents/1001/calls/c1/destroy", json!({})).await;
    let to = unix_now() + 3600;

    let path = format!("/api/reports/agent_states?from={start}&to={to}");
    let (st, v) = get_json(http, &path, Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    let range = v["range_ms"].as_u64().unwrap();
    assert_eq!(
        range,
        v["to_ms"].as_u64().unwrap() - v["from_ms"].as_u64().unwrap()
    );
    // Every membership is a row (1001:8000, 1001:8001, 1002:8000,
    // 1002:8002, 1003:8001), and each adds up to the range.
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
    assert_eq!(row["queue_id"], q8000.as_str());
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
            &head[..4],
            [
                "extension_number",
                "display_name",
                "queue_number",
                "queue_id"
            ]
        );
        assert!(head.contains(&"NOT_READY BREAK_s"), "{head:?}");
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 5);
        assert!(
            rows.iter().any(|r| r[0] == "1001" && r[3] == q8000),
            "{rows:?}"
        );
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

    // One queue, by id or by number.
    for filter in [format!("queue_id={q8001}"), "queue_number=8001".to_string()] {
        let (st, v) = get_json(http, &format!("{path}&{filter}"), Auth::Bearer(ADMIN)).await;
        assert_eq!(st, 200, "{v}");
        let rows: Vec<(&str, &str)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| {
                (
                    it["extension_number"].as_str().unwrap(),
                    it["queue_number"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(rows, [("1001", "8001"), ("1003", "8001")], "{filter}");
    }

    // An agent sees its own rows: by its static token, or by the token of
    // a login with its SIP password.
    let session = login(http, "1001", "alice-secret").await;
    for auth in [Auth::Bearer(ALICE), Auth::Bearer(&session)] {
        let (st, v) = get_json(http, &path, auth).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["count"], 2);
        assert!(v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|it| it["extension_number"] == "1001"));
    }
    let (st, v) = get_json(
        http,
        &format!("{path}&extension_number=1002"),
        Auth::Bearer(ALICE),
    )
    .await;
    assert_eq!(
        (st, v["errors"][0]["code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{v}"
    );
    let (st, v) = get_json(http, "/api/agents/1002/history", Auth::Bearer(&session)).await;
    assert_eq!(st, 403, "{v}");

    // Alice leaves queue 8001 (PortSIP's agent list without her): the
    // history says so, and her row there is gone from later reports.
    post(
        http,
        &format!("/api/call_queues/{q8001}/agents"),
        json!({"items": [{"extension_number": "1003"}]}),
    )
    .await;

    // The history, paged one change at a time. (The history is written
    // after the journal, by its own thread: wait for the last change.)
    let mut all = Vec::new();
    for _ in 0..250 {
        let (st, v) = get_json(http, "/api/agents/1001/history", Auth::Bearer(ADMIN)).await;
        assert_eq!(st, 200, "{v}");
        all = v["items"].as_array().unwrap().clone();
        if all.len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let tos: Vec<(&str, &str)> = all
        .iter()
        .map(|c| {
            (
                c["queue_number"].as_str().unwrap(),
                c["to"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tos,
        [
            ("8000", "READY"),
            ("8000", "NOT_READY"),
            ("8000", "READY"),
            ("8000", "QUEUE_CALL"),
            ("8000", "READY"),
            ("8001", "LOGGED_OUT"),
        ],
        "{all:?}"
    );
    assert_eq!(all[1]["reason"], "BREAK");
    assert_eq!(all[3]["cause"], "call");
    assert_eq!(all[0]["queue_id"], q8000.as_str());
    assert!(
        all[..5].iter().all(|c| c.get("removed").is_none()),
        "{all:?}"
    );
    assert_eq!(
        (&all[5]["from"], &all[5]["removed"], &all[5]["cause"]),
        (&json!("LOGGED_OUT"), &json!(true), &json!("api")),
        "{all:?}"
    );
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, v) = get_json(
            http,
            &format!("/api/agents/1001/history?limit=2{cursor}"),
            Auth::Bearer(ADMIN),
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
    let (st, _, csv) = get(
        http,
        "/api/agents/1001/history?format=csv",
        Auth::Bearer(ADMIN),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let last = csv.lines().last().unwrap();
    assert!(
        last.starts_with(all[5]["time"].as_str().unwrap()) && last.ends_with(",api,true"),
        "{csv}"
    );
    let (_, v) = get_json(http, &path, Auth::Bearer(ADMIN)).await;
    assert_eq!(v["count"], 4, "{v}");

    // A restart keeps the history (the removal too) and the sums.
    s.stop().await;
    let s = TestServer::start_with_storage(&config(), &data, tempfile::tempdir().unwrap()).await;
    let http = s.http;
    let (st, v) = get_json(http, "/api/agents/1001/history", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["items"].as_array().unwrap(), &all);
    let (st, v) = get_json(http, &path, Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["count"], 4, "{v}");
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
    // Without from and to: the last 24 hours, here since the history began.
    let (st, v) = get_json(http, "/api/reports/agent_states", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["from"].as_str().unwrap().ends_with("T00:00:00Z"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = TestServer::start(&config()).await;
    let http = s.http;
    let q8000 = qid(http, "8000").await;
    let alice = format!("/api/call_queues/{q8000}/agents/1001");
    post(http, &alice, json!({"status": "LOGGED_IN"})).await;
    let now = unix_now();
    let ok = format!("from={}&to={}", now - 60, now + 60);
    let r = "/api/reports/agent_states";
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("{r}?from=yesterday&to=2025-01-01"),
            400,
            "not a time",
        ),
        (
            format!("{r}?from=2025-02-30&to=2025-03-01"),
            400,
            "not a time",
        ),
        (
            format!("{r}?from={now}&to={}", now - 10),
            400,
            "must be before",
        ),
        (format!("{r}?from={now}&to={now}"), 400, "must be before"),
        (
            format!("{r}?from=2020-01-01&to=2022-01-01"),
            400,
            "366 days",
        ),
        (
            format!("{r}?from={}&to={}", now + 100, now + 200),
            400,
            "future",
        ),
        (
            format!("{r}?from=2001-01-01&to=2001-01-02"),
            400,
            "history is kept from",
        ),
        (format!("{r}?{ok}&colour=red"), 400, "unknown parameter"),
        (format!("{r}?{ok}&queue=8000"), 400, "unknown parameter"),
        (format!("{r}?{ok}&format=xml"), 400, "json or csv"),
        (
            format!("{r}?{ok}&extension_number=9999"),
            404,
            "unknown agent",
        ),
        (
            format!("{r}?{ok}&extension_number=bad/agent"),
            400,
            "letters, digits",
        ),
        (format!("{r}?{ok}&queue_number=7777"), 404, "unknown queue"),
        (format!("{r}?{ok}&queue_number=80x"), 400, "digits"),
        (
            format!("{r}?{ok}&queue_id=700000000000000000"),
            404,
            "no call queue",
        ),
        (format!("{r}?{ok}&queue_id=8000"), 400, "18 digits"),
        (
            format!("{r}?{ok}&queue_id={q8000}&queue_number=8000"),
            400,
            "not both",
        ),
        (
            format!("{r}?{ok}&queue_number=8002&extension_number=1001"),
            404,
            "not a member",
        ),
        ("/api/agents/9999/history".into(), 404, "unknown agent"),
        ("/api/agents/1001/history?limit=0".into(), 400, "limit"),
        ("/api/agents/1001/history?limit=5000".into(), 400, "limit"),
        (
            "/api/agents/1001/history?cursor=nonsense".into(),
            400,
            "cursor",
        ),
    ];
    for (path, want, says) in &cases {
        let (st, v) = get_json(http, path, Auth::Bearer(ADMIN)).await;
        assert_eq!(st, *want, "{path}: {v}");
        let code = v["errors"][0]["code"].as_str().unwrap_or_default();
        let want_code = if *want == 400 {
            "VALIDATE_FAILED"
        } else {
            "NOT_FOUND"
        };
        assert_eq!(code, want_code, "{path}: {v}");
        assert!(
            message(&v).contains(says),
            "{path}: {:?} should say {says:?}",
            message(&v)
        );
    }
    // Bearer tokens only, as everywhere under /api/: HTTP Basic, even with
    // right credentials, is not a login.
    for path in [
        format!("{r}?{ok}"),
        "/api/agents/1001/history".to_string(),
        "/api/wallboard/state".to_string(),
    ] {
        for auth in [
            Auth::None,
            Auth::Bearer("wrong-token"),
            Auth::Basic("1001", "alice-secret"),
            Auth::Basic("admin", ADMIN),
        ] {
            let (st, v) = get_json(http, &path, auth).await;
            assert_eq!(st, 401, "{path}: {v}");
            assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED", "{path}: {v}");
        }
    }
    // The old paths are gone (PortSIP's API is under /api/).
    for path in [
        "/reports/agent_states",
        "/agents/1001/history",
        "/wallboard/state",
    ] {
        let (st, v) = get_json(http, path, Auth::Bearer(ADMIN)).await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    // Nothing was lost or changed by all that.
    let (st, v) = get_json(http, &alice, Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "READY", "{v}");
    let (st, v) = get_json(
        http,
        &format!("{r}?{ok}&extension_number=1001&queue_id={q8000}"),
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
        ("/assets/common.js", "text/javascript", "/api/login"),
        ("/assets/board.css", "text/css", "s-READY"),
    ] {
        let (st, ct, body) = get(http, path, Auth::None, None).await;
        assert_eq!(st, 200, "{path}");
        assert!(ct.starts_with(ctype), "{path}: {ct}");
        assert!(body.contains(has), "{path}");
    }
    let (st, v) = get_json(http, "/api/wallboard/state", Auth::Bearer(ADMIN)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["queues"].as_array().unwrap().len(), 3);
    assert_eq!(v["queues"][0]["id"], qid(http, "8000").await.as_str());
    assert_eq!(v["agents"].as_array().unwrap().len(), 3);
    assert_eq!(v["agents"][0]["queues"][0]["status"], "LOGGED_OUT");
    let session = login(http, "1001", "alice-secret").await;
    let (st, v) = get_json(http, "/api/wallboard/state", Auth::Bearer(&session)).await;
    assert_eq!(st, 200, "{v}");
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0]["extension_number"], "1001");
    assert_eq!(agents[0]["display_name"], "Alice");
    let queues: Vec<&str> = v["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["extension_number"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["8000", "8001"]);
    let cells: Vec<(&str, &str)> = agents[0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["queue_id"].as_str().unwrap(),
                c["queue_number"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cells,
        [
            (v["queues"][0]["id"].as_str().unwrap(), "8000"),
            (v["queues"][1]["id"].as_str().unwrap(), "8001")
        ]
    );
    s.stop().await;
}
