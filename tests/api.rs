//! The REST API (SPEC §6) with a real HTTP client against the real server:
//! tokens and roles, validation and JSON errors, state changes and views,
//! call reports walking QUEUE_CALL → WRAP_UP → READY on a paused clock,
//! READY agents longest idle first, and the OpenAPI document against the
//! router.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{base_config, HoldClock, TestServer};
use facd::engine::{AgentState, Cause};
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

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
        (status, v)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(&body.to_string()),
        )
        .await
    }

    async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    async fn status_in(&self, queue: &str, agent: &str) -> String {
        let (st, v) = self
            .get(&format!("/call_queues/{queue}/agents/{agent}"), ADMIN)
            .await;
        assert_eq!(st, 200, "{v}");
        v["status"].as_str().unwrap().to_string()
    }
}

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

#[tokio::test]
async fn tokens_and_roles() {
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let path = "/call_queues/8000/agents/1001";

    // Missing or wrong token: 401 with a challenge and a JSON message.
    let resp = api
        .http
        .get(format!("{}{path}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(error_of(&v), "missing or wrong bearer token");
    let (st, _) = api.get(path, "not-a-token").await;
    assert_eq!(st, 401);
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            path,
            Some("admin-token-"),
            Some(r#"{"status":"LOGGED_IN"}"#),
        )
        .await;
    assert_eq!(st, 401);

    // An agent's token: its own extension only.
    let (st, v) = api.get(path, ALICE).await;
    assert_eq!((st, v["extension_number"].as_str()), (200, Some("1001")));
    let (st, v) = api.get("/call_queues/8000/agents/1002", ALICE).await;
    assert_eq!(st, 403, "{v}");
    assert!(error_of(&v).contains("own extension"), "{v}");
    let (st, _) = api
        .post(
            "/call_queues/8000/agents/1002",
            ALICE,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = api.get("/agents/1002", ALICE).await;
    assert_eq!(st, 403);
    let (st, _) = api
        .post(
            "/agents/1002/calls",
            ALICE,
            json!({"call_id": "c1", "kind": "other"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, _) = api.get("/call_queues/8000/agents", ALICE).await;
    assert_eq!(st, 403);
    let (st, _) = api.get("/call_queues/8000/ready_agents", ALICE).await;
    assert_eq!(st, 403);
    // Nothing changed for 1002.
    assert_eq!(api.status_in("8000", "1002").await, "LOGGED_OUT");

    // Its own changes go through.
    let (st, v) = api.post(path, ALICE, json!({"status": "LOGGED_IN"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["queues"][0]["status"], "READY");
    s.stop().await;
}

#[tokio::test]
async fn validation_errors_are_json_with_a_message() {
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let path = "/call_queues/8000/agents/1001";
    let raw = |body: &'static str| {
        let api = &api;
        async move {
            api.call(reqwest::Method::POST, path, Some(ADMIN), Some(body))
                .await
        }
    };

    let (st, v) = raw(r#"{"status": "READY""#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).starts_with("invalid JSON body"), "{v}");
    let (st, v) = raw("").await;
    assert_eq!((st, error_of(&v)), (400, "a JSON body is required"));
    let (st, v) = raw(r#"{"state": "READY"}"#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("unknown field `state`"), "{v}");
    let (st, v) = raw(r#"{"status": 1}"#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("invalid type"), "{v}");
    let (st, v) = raw(r#"{"status": "SLEEPING"}"#).await;
    assert_eq!(st, 400);
    assert!(
        error_of(&v).contains("unknown status \"SLEEPING\"") && error_of(&v).contains("BREAK"),
        "{v}"
    );
    let (st, v) = raw(r#"{"status": "QUEUE_CALL"}"#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("call reports"), "{v}");
    let big = format!(r#"{{"status": "{}"}}"#, "x".repeat(20_000));
    let (st, v) = api
        .call(reqwest::Method::POST, path, Some(ADMIN), Some(&big))
        .await;
    assert_eq!(st, 413, "{v}");

    // Path segments.
    let (st, v) = api.get("/call_queues/80x0/agents/1001", ADMIN).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("1 to 10 digits"), "{v}");
    let (st, v) = api.get("/call_queues/8000/agents/10%2001", ADMIN).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = api.get("/call_queues/9999/agents/1001", ADMIN).await;
    assert_eq!((st, error_of(&v)), (404, "unknown queue \"9999\""));
    let (st, v) = api.get("/call_queues/8000/agents/1003", ADMIN).await;
    assert_eq!(st, 404);
    assert!(error_of(&v).contains("not a member"), "{v}");
    let (st, _) = api.get("/agents/4242", ADMIN).await;
    assert_eq!(st, 404);

    // Refusals by the state rules keep their meaning.
    let (st, v) = api.post(path, ADMIN, json!({"status": "READY"})).await;
    assert_eq!((st, error_of(&v)), (409, "the agent is not logged in"));
    let (st, v) = api
        .post(
            "/call_queues/8002/agents/1001",
            ADMIN,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
    assert_eq!(st, 409, "{v}");

    // Call reports.
    for (body, want) in [
        (json!({"call_id": "c1", "kind": "acd"}), "needs the queue"),
        (
            json!({"call_id": "c1", "kind": "other", "queue": "8000"}),
            "only for \"acd\"",
        ),
        (json!({"call_id": "", "kind": "other"}), "call_id must be"),
        (json!({"call_id": "c1", "kind": "phone"}), "unknown variant"),
        (json!({"kind": "other"}), "missing field `call_id`"),
    ] {
        let (st, v) = api.post("/agents/1001/calls", ADMIN, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(error_of(&v).contains(want), "{body}: {v}");
    }
    let (st, _) = api.delete("/agents/1001/calls/nope", ADMIN).await;
    assert_eq!(st, 404);

    // Unknown routes and methods answer JSON too.
    let (st, v) = api.get("/nope", ADMIN).await;
    assert_eq!(st, 404);
    assert!(error_of(&v).contains("openapi"), "{v}");
    let (st, v) = api.delete("/call_queues/8000/agents", ADMIN).await;
    assert_eq!(st, 405, "{v}");

    // None of it changed anything.
    assert_eq!(api.status_in("8000", "1001").await, "LOGGED_OUT");
    s.stop().await;
}

#[tokio::test]
async fn state_changes_are_durable_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keep = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_storage(&config(), &data, keep).await;
    let api = Api::new(s.http);
    let mut events = s.hub.subscribe();

    let (st, v) = api
        .post(
            "/call_queues/8001/agents/1001",
            ADMIN,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // 8001 has auto_ready = false.
    assert_eq!(
        v,
        json!({"extension_number": "1001", "queues": [{"queue_number": "8001", "status": "NOT_READY"}]})
    );
    let ev = events.recv().await.unwrap();
    assert_eq!((ev.to, ev.cause), (AgentState::NotReady, Cause::Api));

    let (st, v) = api
        .post(
            "/call_queues/8001/agents/1001",
            ADMIN,
            json!({"status": "break"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["queues"][0]["reason"], "BREAK");
    // The same state again: success, no event.
    let (st, _) = api
        .post(
            "/call_queues/8001/agents/1001",
            ADMIN,
            json!({"status": "BREAK"}),
        )
        .await;
    assert_eq!(st, 200);

    let (st, v) = api.get("/agents/1001", ALICE).await;
    assert_eq!(st, 200);
    assert_eq!(v["display_name"], "Alice");
    assert_eq!(v["queues"][0]["queue_number"], "8000");
    assert_eq!(v["queues"][0]["status"], "LOGGED_OUT");
    assert_eq!(v["queues"][1]["status"], "NOT_READY");
    assert_eq!(v["queues"][1]["reason"], "BREAK");
    let since: u64 = v["queues"][1]["since"].as_str().unwrap().parse().unwrap();
    assert!(since > 1_600_000_000, "{v}");

    let (st, v) = api.get("/call_queues/8001/agents", ADMIN).await;
    assert_eq!(st, 200);
    assert_eq!(v["count"], 2);
    let exts: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["extension_number"].as_str().unwrap())
        .collect();
    assert_eq!(exts, ["1001", "1003"]);

    // Confirmed means stored: a restart on the same journal has it.
    s.stop().await;
    let s = TestServer::start_with_storage(&config(), &data, tempfile::tempdir().unwrap()).await;
    let api = Api::new(s.http);
    let (_, v) = api.get("/call_queues/8001/agents/1001", ADMIN).await;
    assert_eq!(
        (v["status"].as_str(), v["reason"].as_str()),
        (Some("NOT_READY"), Some("BREAK"))
    );
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn call_report_walks_queue_call_wrap_up_ready_on_a_paused_clock() {
    let _hold = HoldClock::new();
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let mut events = s.hub.subscribe();
    // 1002: 8000 (auto_ready, no wrap-up) and 8002 (5 s wrap-up).
    for q in ["8000", "8002"] {
        let (st, _) = api
            .post(
                &format!("/call_queues/{q}/agents/1002"),
                ADMIN,
                json!({"status": "LOGGED_IN"}),
            )
            .await;
        assert_eq!(st, 200);
    }
    let (st, v) = api
        .post(
            "/agents/1002/calls",
            ADMIN,
            json!({"call_id": "abc@pbx", "kind": "acd", "queue": "8002"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"extension_number": "1002", "call_id": "abc@pbx", "queues": [
            {"queue_number": "8000", "status": "OTHER_CALL"},
            {"queue_number": "8002", "status": "QUEUE_CALL"}]})
    );
    // A duplicate report is refused.
    let (st, _) = api
        .post(
            "/agents/1002/calls",
            ADMIN,
            json!({"call_id": "abc@pbx", "kind": "other"}),
        )
        .await;
    assert_eq!(st, 409);
    // Ready during the call is pending.
    let (st, v) = api
        .post(
            "/call_queues/8002/agents/1002",
            ADMIN,
            json!({"status": "NOT_READY"}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["queues"][0]["pending"], "NOT_READY");

    let (st, v) = api.delete("/agents/1002/calls/abc@pbx", ADMIN).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["queues"][1]["status"], "WRAP_UP");
    assert_eq!(v["queues"][1]["pending"], "NOT_READY");
    assert_eq!(v["queues"][0]["status"], "READY");
    let mut wrap_at = 0;
    while let Ok(ev) = events.try_recv() {
        if ev.to == AgentState::WrapUp {
            assert_eq!(ev.cause, Cause::Call);
            wrap_at = ev.at;
        }
    }
    assert!(wrap_at > 0);

    // Only the virtual clock moves: the 5 s wrap-up must end on `advance`,
    // long before 5 s of real time.
    let real = std::time::Instant::now();
    tokio::time::advance(Duration::from_millis(4_900)).await;
    assert_eq!(api.status_in("8002", "1002").await, "WRAP_UP");
    tokio::time::advance(Duration::from_millis(200)).await;
    let ev = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.queue.as_str(), ev.from, ev.to, ev.cause),
        (
            "8002",
            AgentState::WrapUp,
            AgentState::NotReady,
            Cause::Timer
        )
    );
    assert_eq!(ev.at - wrap_at, 5_000, "the wrap-up lasts the queue's 5 s");
    assert!(
        real.elapsed() < Duration::from_secs(3),
        "the wrap-up ended in real time, not on the paused clock"
    );
    assert_eq!(api.status_in("8002", "1002").await, "NOT_READY");

    // No pending change this time: back to READY when the wrap-up ends.
    api.post(
        "/call_queues/8002/agents/1002",
        ADMIN,
        json!({"status": "READY"}),
    )
    .await;
    api.post(
        "/agents/1002/calls",
        ADMIN,
        json!({"call_id": "c2", "kind": "acd", "queue": "8002"}),
    )
    .await;
    assert_eq!(api.status_in("8002", "1002").await, "QUEUE_CALL");
    api.delete("/agents/1002/calls/c2", ADMIN).await;
    assert_eq!(api.status_in("8002", "1002").await, "WRAP_UP");
    tokio::time::advance(Duration::from_millis(5_001)).await;
    tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let ev = events.recv().await.unwrap();
            if ev.cause == Cause::Timer {
                assert_eq!(ev.to, AgentState::Ready);
                break;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(api.status_in("8002", "1002").await, "READY");

    // A non-ACD call: OTHER_CALL, then back to the state before it.
    api.post(
        "/agents/1002/calls",
        ADMIN,
        json!({"call_id": "o1", "kind": "other"}),
    )
    .await;
    assert_eq!(api.status_in("8000", "1002").await, "OTHER_CALL");
    api.delete("/agents/1002/calls/o1", ADMIN).await;
    assert_eq!(api.status_in("8000", "1002").await, "READY");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ready_agents_longest_idle_first() {
    let _hold = HoldClock::new();
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    for ext in ["1002", "1001"] {
        api.post(
            &format!("/call_queues/8000/agents/{ext}"),
            ADMIN,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(ready_list(&api).await, ["1002", "1001"]);
    // 1002 takes a break and comes back: now it has been idle the shortest.
    for status in ["NOT_READY", "READY"] {
        api.post(
            "/call_queues/8000/agents/1002",
            ADMIN,
            json!({"status": status}),
        )
        .await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(ready_list(&api).await, ["1001", "1002"]);
    // On a call: not READY.
    api.post(
        "/agents/1001/calls",
        ADMIN,
        json!({"call_id": "x", "kind": "acd", "queue": "8000"}),
    )
    .await;
    assert_eq!(ready_list(&api).await, ["1002"]);
    let (st, _) = api.get("/call_queues/9/ready_agents", ADMIN).await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn ready_list(api: &Api) -> Vec<String> {
    let (st, v) = api.get("/call_queues/8000/ready_agents", ADMIN).await;
    assert_eq!(st, 200, "{v}");
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["extension_number"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let (st, doc) = api
        .call(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = facd::api::served_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, served);

    // Every documented operation is really there: without a token each one
    // answers 401 (or its own status), never 404/405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{queue}", "8000")
            .replace("{agent}", "1001")
            .replace("{call_id}", "c1");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (m == reqwest::Method::POST).then_some("{}");
        let (st, _) = api.call(m, &concrete, None, body).await;
        let want = match path.as_str() {
            "/openapi.json" => 200,
            "/wsi" => 400,
            _ => 401,
        };
        assert_eq!(st, want, "{method} {path}");
        // The document lists the status it answered.
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(
            op["responses"].get(want.to_string()).is_some(),
            "{method} {path}: {want} is not documented"
        );
    }
    s.stop().await;
}
