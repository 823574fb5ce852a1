//! The REST API (SPEC §6, PortSIP's under `/api/`) with a real HTTP client
//! against the real server: tokens, logins and roles, validation and
//! PortSIP's error shape, state changes and views, membership, call reports
//! walking QUEUE_CALL → WRAP_UP → READY on a paused clock, READY agents
//! longest idle first, and the OpenAPI document against the router.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{base_config, HoldClock, TestServer};
use facd::engine::{AgentState, Cause};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-1";
const ALICE: &str = "alice-token-1";
const ADMIN_PASSWORD: &str = "admin-password-1";

fn config() -> String {
    format!(
        "{}\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\npassword = \"{ADMIN_PASSWORD}\"\nrole = \"admin\"\n\n\
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

    /// The id of queue `number`, from `GET /api/call_queues`.
    async fn qid(&self, number: &str) -> String {
        let (st, v) = self.get("/api/call_queues", ADMIN).await;
        assert_eq!(st, 200, "{v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["extension_number"] == number)
            .unwrap_or_else(|| panic!("no queue {number} in {v}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `/api/call_queues/{id}/agents/{agent}` of queue number `queue`.
    async fn agent_path(&self, queue: &str, agent: &str) -> String {
        format!("/api/call_queues/{}/agents/{agent}", self.qid(queue).await)
    }

    async fn status_in(&self, queue: &str, agent: &str) -> String {
        let (st, v) = self.get(&self.agent_path(queue, agent).await, ADMIN).await;
        assert_eq!(st, 200, "{v}");
        v["status"].as_str().unwrap().to_string()
    }

    async fn set(&self, queue: &str, agent: &str, body: Value) -> (u16, Value) {
        self.post(&self.agent_path(queue, agent).await, ADMIN, body)
            .await
    }
}

/// PortSIP's error shape: `{"errors": [{"code", "message"}]}`; the message.
fn error_of(v: &Value) -> &str {
    let e = &v["errors"][0];
    assert!(
        e["code"].as_str().is_some_and(|c| !c.is_empty()),
        "no code in {v}"
    );
    e["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
}

fn code_of(v: &Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn tokens_and_roles() {
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let path = &api.agent_path("8000", "1001").await;
    let other = &api.agent_path("8000", "1002").await;
    let q8000 = api.qid("8000").await;

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
    assert_eq!(code_of(&v), "UNAUTHORIZED");
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
    let (st, v) = api.get(other, ALICE).await;
    assert_eq!(st, 403, "{v}");
    assert!(error_of(&v).contains("own extension"), "{v}");
    assert_eq!(code_of(&v), "PERMISSION_DENIED");
    let (st, _) = api.post(other, ALICE, json!({"status": "LOGGED_IN"})).await;
    assert_eq!(st, 403);
    let (st, _) = api
        .post(
            "/api/agents/1002/calls",
            ALICE,
            json!({"call_id": "c1", "type": "OTHER"}),
        )
        .await;
    assert_eq!(st, 403);
    for admin_only in [
        "/api/call_queues".to_string(),
        format!("/api/call_queues/{q8000}"),
        format!("/api/call_queues/{q8000}/agents"),
        format!("/api/call_queues/{q8000}/ready_agents"),
        "/api/users".to_string(),
    ] {
        let (st, _) = api.get(&admin_only, ALICE).await;
        assert_eq!(st, 403, "{admin_only}");
    }
    let (st, _) = api
        .post(
            &format!("/api/call_queues/{q8000}/agents"),
            ALICE,
            json!({"items": []}),
        )
        .await;
    assert_eq!(st, 403);
    // An admin has no "own" agent.
    let (st, _) = api.get("/api/user/call_queues", ADMIN).await;
    assert_eq!(st, 403);
    // Nothing changed for 1002.
    assert_eq!(api.status_in("8000", "1002").await, "LOGGED_OUT");

    // Its own changes go through.
    let (st, v) = api.post(path, ALICE, json!({"status": "LOGGED_IN"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "READY");
    let (st, v) = api.get("/api/user/call_queues", ALICE).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"][0]["id"], q8000.as_str());
    assert_eq!(v["items"][1]["extension_number"], "8001");
    s.stop().await;
}

#[tokio::test]
async fn validation_errors_are_json_with_a_message() {
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let path = &api.agent_path("8000", "1001").await;
    let q8000 = api.qid("8000").await;
    let raw = |body: &'static str| {
        let api = &api;
        async move {
            api.call(reqwest::Method::POST, path, Some(ADMIN), Some(body))
                .await
        }
    };

    let (st, v) = raw(r#"{"status": "READY""#).await;
    assert_eq!((st, code_of(&v)), (400, "VALIDATE_FAILED"));
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
    // 22.3's reason: a configured code's name, only with NOT_READY.
    let (st, v) = raw(r#"{"status": "NOT_READY", "reason": "NAP"}"#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("unknown reason \"NAP\""), "{v}");
    let (st, v) = raw(r#"{"status": "READY", "reason": "BREAK"}"#).await;
    assert_eq!(st, 400);
    assert!(error_of(&v).contains("only for status NOT_READY"), "{v}");
    let big = format!(r#"{{"status": "{}"}}"#, "x".repeat(20_000));
    let (st, v) = api
        .call(reqwest::Method::POST, path, Some(ADMIN), Some(&big))
        .await;
    assert_eq!(st, 413, "{v}");

    // Path segments: queues are addressed by id, not number.
    let (st, v) = api.get("/api/call_queues/8000/agents/1001", ADMIN).await;
    assert_eq!(
        (st, error_of(&v)),
        (404, "no call queue has the id \"8000\"")
    );
    assert_eq!(code_of(&v), "NOT_FOUND");
    let (st, v) = api
        .get(&format!("/api/call_queues/{q8000}/agents/10%2001"), ADMIN)
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = api
        .get(&format!("/api/call_queues/{q8000}/agents/1003"), ADMIN)
        .await;
    assert_eq!(st, 404);
    assert!(error_of(&v).contains("not a member"), "{v}");
    let (st, _) = api
        .get(&format!("/api/call_queues/{q8000}/agents/4242"), ADMIN)
        .await;
    assert_eq!(st, 404);
    let (st, _) = api.get("/api/users/123/call_queues", ADMIN).await;
    assert_eq!(st, 404);

    // Refusals by the state rules keep their meaning.
    let (st, v) = api.post(path, ADMIN, json!({"status": "READY"})).await;
    assert_eq!((st, error_of(&v)), (409, "the agent is not logged in"));
    assert_eq!(code_of(&v), "AGENT_NOT_LOGGED_IN");
    let (st, v) = api
        .set("8002", "1001", json!({"status": "LOGGED_IN"}))
        .await;
    assert_eq!((st, code_of(&v)), (409, "AGENT_NOT_MEMBER"), "{v}");

    // Call reports.
    for (body, want) in [
        (
            json!({"call_id": "c1", "type": "ACD"}),
            "needs the queue_number",
        ),
        (
            json!({"call_id": "c1", "type": "OTHER", "queue_number": "8000"}),
            "only for \"ACD\"",
        ),
        (json!({"call_id": "", "type": "OTHER"}), "call_id must be"),
        (json!({"call_id": "c1", "type": "PHONE"}), "unknown variant"),
        (json!({"type": "OTHER"}), "missing field `call_id`"),
    ] {
        let (st, v) = api
            .post("/api/agents/1001/calls", ADMIN, body.clone())
            .await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(error_of(&v).contains(want), "{body}: {v}");
    }
    let (st, _) = api
        .post("/api/agents/1001/calls/nope/destroy", ADMIN, json!({}))
        .await;
    assert_eq!(st, 404);

    // Membership lists.
    let members = format!("/api/call_queues/{q8000}/agents");
    for (body, want) in [
        (
            json!({"items": [{"extension_number": "4242"}]}),
            "not a configured agent",
        ),
        (
            json!({"items": [{"extension_number": "1001", "skill_level": 0}]}),
            "skill_level must be 1 to 100",
        ),
        (
            json!({"items": [{"extension_number": "1001"}, {"extension_number": "1001"}]}),
            "listed twice",
        ),
        (json!({"agents": []}), "unknown field `agents`"),
    ] {
        let (st, v) = api.post(&members, ADMIN, body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(error_of(&v).contains(want), "{body}: {v}");
    }

    // Unknown routes and methods answer JSON too.
    let (st, v) = api.get("/nope", ADMIN).await;
    assert_eq!(st, 404);
    assert!(error_of(&v).contains("openapi"), "{v}");
    let (st, v) = api.delete(&members, ADMIN).await;
    assert_eq!(st, 405, "{v}");

    // None of it changed anything.
    assert_eq!(api.status_in("8000", "1001").await, "LOGGED_OUT");
    let (_, v) = api.get(&members, ADMIN).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn state_changes_and_membership_are_durable_and_visible() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keep = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_storage(&config(), &data, keep).await;
    let api = Api::new(s.http);
    let mut events = s.hub.subscribe();
    let q8001 = api.qid("8001").await;

    let (st, v) = api
        .set("8001", "1001", json!({"status": "LOGGED_IN"}))
        .await;
    assert_eq!(st, 200, "{v}");
    // 8001 has auto_ready = false.
    assert_eq!(
        v,
        json!({"extension_number": "1001", "display_name": "Alice", "skill_level": 1, "status": "NOT_READY"})
    );
    let ev = events.recv().await.unwrap();
    assert_eq!((ev.to, ev.cause), (AgentState::NotReady, Cause::Api));

    // 22.3: NOT_READY with a reason; 22.0–22.2: the reason as the status.
    let (st, v) = api
        .set(
            "8001",
            "1001",
            json!({"status": "NOT_READY", "reason": "break"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["status"], &v["reason"]),
        (&json!("NOT_READY"), &json!("BREAK"))
    );
    let ev = events.recv().await.unwrap();
    assert_eq!(ev.reason.as_deref(), Some("BREAK"));
    // The same state again, as 22.0–22.2 clients send it: success.
    let (st, _) = api.set("8001", "1001", json!({"status": "BREAK"})).await;
    assert_eq!(st, 200);

    // The agent's own view and an admin's per-user view agree.
    let (_, users) = api.get("/api/users", ADMIN).await;
    let alice = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["extension_number"] == "1001")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, v) = api
        .get(
            &format!("/api/users/{alice}/call_queues/{q8001}/agent"),
            ADMIN,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["reason"], "BREAK");
    let (st, v) = api
        .get(&format!("/api/user/call_queues/{q8001}/agent"), ALICE)
        .await;
    assert_eq!((st, &v["reason"]), (200, &json!("BREAK")), "{v}");
    let (st, v) = api
        .post(
            &format!("/api/call_queues/{q8001}/agents/status/get_many"),
            ADMIN,
            json!({"extension_numbers": ["1001", "1003", "1002"]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["items"],
        json!([{"extension_number": "1001", "status": "NOT_READY", "reason": "BREAK"},
               {"extension_number": "1003", "status": "LOGGED_OUT"}])
    );
    let (st, v) = api.get("/api/not_ready_codes", ALICE).await;
    assert_eq!(st, 200);
    assert_eq!(v["items"], json!([{"code": 1, "name": "BREAK"}]));

    // Membership: 8001 becomes 1003 (skill 5) and 1002; 1001 leaves.
    let members = format!("/api/call_queues/{q8001}/agents");
    let (st, v) = api
        .post(
            &members,
            ADMIN,
            json!({"items": [{"extension_number": "1003", "skill_level": 5},
                             {"extension_number": "1002"}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let expected = json!({"items": [
        {"extension_number": "1003", "display_name": "Carol", "skill_level": 5},
        {"extension_number": "1002", "display_name": "Bob", "skill_level": 1}]});
    let (_, v) = api.get(&members, ADMIN).await;
    assert_eq!(v, expected);
    let (st, _) = api.get(&api.agent_path("8001", "1001").await, ADMIN).await;
    assert_eq!(st, 404);
    // A new member starts logged out and takes changes.
    let (st, v) = api
        .set("8001", "1002", json!({"status": "LOGGED_IN"}))
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("NOT_READY")), "{v}");

    // Confirmed means stored: a restart on the same journal has it all.
    s.stop().await;
    let s = TestServer::start_with_storage(&config(), &data, tempfile::tempdir().unwrap()).await;
    let api = Api::new(s.http);
    assert_eq!(api.qid("8001").await, q8001, "ids survive restarts");
    let (_, v) = api.get(&members, ADMIN).await;
    assert_eq!(v, expected);
    assert_eq!(api.status_in("8001", "1002").await, "NOT_READY");
    let (_, v) = api
        .get(&format!("/api/users/{alice}/call_queues"), ADMIN)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
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
        let (st, _) = api.set(q, "1002", json!({"status": "LOGGED_IN"})).await;
        assert_eq!(st, 200);
    }
    let (st, v) = api
        .post(
            "/api/agents/1002/calls",
            ADMIN,
            json!({"call_id": "abc@pbx", "type": "ACD", "queue_number": "8002"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"extension_number": "1002", "call_id": "abc@pbx", "agent_status": [
            {"queue_id": api.qid("8000").await, "queue_number": "8000", "status": "OTHER_CALL"},
            {"queue_id": api.qid("8002").await, "queue_number": "8002", "status": "QUEUE_CALL"}]})
    );
    // A duplicate report is refused.
    let (st, v) = api
        .post(
            "/api/agents/1002/calls",
            ADMIN,
            json!({"call_id": "abc@pbx", "type": "OTHER"}),
        )
        .await;
    assert_eq!((st, code_of(&v)), (409, "CALL_EXISTS"));
    // Not ready during the call is pending.
    let (st, v) = api
        .set("8002", "1002", json!({"status": "NOT_READY"}))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["pending"], "NOT_READY");

    let (st, v) = api
        .post("/api/agents/1002/calls/abc@pbx/destroy", ADMIN, json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["agent_status"][1]["status"], "WRAP_UP");
    assert_eq!(v["agent_status"][1]["pending"], "NOT_READY");
    assert_eq!(v["agent_status"][0]["status"], "READY");
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
    api.set("8002", "1002", json!({"status": "READY"})).await;
    api.post(
        "/api/agents/1002/calls",
        ADMIN,
        json!({"call_id": "c2", "type": "ACD", "queue_number": "8002"}),
    )
    .await;
    assert_eq!(api.status_in("8002", "1002").await, "QUEUE_CALL");
    api.post("/api/agents/1002/calls/c2/destroy", ADMIN, json!({}))
        .await;
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
        "/api/agents/1002/calls",
        ADMIN,
        json!({"call_id": "o1", "type": "OTHER"}),
    )
    .await;
    assert_eq!(api.status_in("8000", "1002").await, "OTHER_CALL");
    api.post("/api/agents/1002/calls/o1/destroy", ADMIN, json!({}))
        .await;
    assert_eq!(api.status_in("8000", "1002").await, "READY");
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn ready_agents_longest_idle_first() {
    let _hold = HoldClock::new();
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    for ext in ["1002", "1001"] {
        api.set("8000", ext, json!({"status": "LOGGED_IN"})).await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(ready_list(&api).await, ["1002", "1001"]);
    // 1002 takes a break and comes back: now it has been idle the shortest.
    for status in ["NOT_READY", "READY"] {
        api.set("8000", "1002", json!({"status": status})).await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(ready_list(&api).await, ["1001", "1002"]);
    // On a call: not READY.
    api.post(
        "/api/agents/1001/calls",
        ADMIN,
        json!({"call_id": "x", "type": "ACD", "queue_number": "8000"}),
    )
    .await;
    assert_eq!(ready_list(&api).await, ["1002"]);
    let (st, _) = api.get("/api/call_queues/9/ready_agents", ADMIN).await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn ready_list(api: &Api) -> Vec<String> {
    let q = api.qid("8000").await;
    let (st, v) = api
        .get(&format!("/api/call_queues/{q}/ready_agents"), ADMIN)
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["ready_since"].as_str().unwrap().ends_with('Z')));
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
    let q = api.qid("8000").await;
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", &q)
            .replace("{queue_id}", &q)
            .replace("{agent_number}", "1001")
            .replace("{call_id}", "c1");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (m == reqwest::Method::POST).then_some("{}");
        let (st, _) = api.call(m, &concrete, None, body).await;
        let want = match (method.as_str(), path.as_str()) {
            (_, "/openapi.json") => 200,
            (_, "/wsi") => 400,
            // The logins take no token: an empty body does not validate.
            ("POST", "/api/login" | "/api/auth/sign_in" | "/api/auth/refresh_token")
            | (_, "/api/login/oauth/token") => 400,
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

#[tokio::test(start_paused = true)]
async fn logins_expire_and_refresh() {
    let _hold = HoldClock::new();
    let s = TestServer::start(&config()).await;
    let api = Api::new(s.http);
    let login = |body: Value| {
        let api = &api;
        async move {
            api.call(
                reqwest::Method::POST,
                "/api/login",
                None,
                Some(&body.to_string()),
            )
            .await
        }
    };

    // Wrong credentials: 401 UNAUTHORIZED, the same for an unknown user.
    for body in [
        json!({"username": "admin", "password": "nope-nope"}),
        json!({"username": "ghost", "password": ADMIN_PASSWORD}),
        json!({"username": "admin", "password": ADMIN_PASSWORD, "domain": "other.test"}),
        json!({"username": "1001", "password": "bob-secret"}),
    ] {
        let (st, v) = login(body.clone()).await;
        assert_eq!((st, code_of(&v)), (401, "UNAUTHORIZED"), "{body}: {v}");
    }
    let (st, v) = login(json!({"username": "admin"})).await;
    assert_eq!((st, code_of(&v)), (400, "VALIDATE_FAILED"), "{v}");

    // An admin by name and password, with PortSIP's domain.
    let (st, t) =
        login(json!({"username": "admin", "password": ADMIN_PASSWORD, "domain": "facd.test"}))
            .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(
        (&t["token_type"], &t["expires_in"], &t["role"]),
        (&json!("Bearer"), &json!(1800), &json!("Admin"))
    );
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    let (st, _) = api.get("/api/call_queues", &access).await;
    assert_eq!(st, 200);
    let (st, v) = api.get("/api/login", &access).await;
    assert_eq!((st, &v["role"]), (200, &json!("Admin")), "{v}");

    // It expires after expires_in; a static token does not.
    tokio::time::advance(Duration::from_secs(1801)).await;
    let (st, v) = api.get("/api/call_queues", &access).await;
    assert_eq!(st, 401);
    assert!(error_of(&v).contains("expired"), "{v}");
    let (st, _) = api.get("/api/call_queues", ADMIN).await;
    assert_eq!(st, 200);

    // The refresh token gives a new pair, once.
    let refresh_body = json!({"refresh_token": refresh}).to_string();
    let (st, t2) = api
        .call(
            reqwest::Method::POST,
            "/api/auth/refresh_token",
            None,
            Some(&refresh_body),
        )
        .await;
    assert_eq!(st, 200, "{t2}");
    let access2 = t2["access_token"].as_str().unwrap();
    assert_ne!(access2, access);
    let (st, _) = api.get("/api/call_queues", access2).await;
    assert_eq!(st, 200);
    let (st, _) = api
        .call(
            reqwest::Method::POST,
            "/api/auth/refresh_token",
            None,
            Some(&refresh_body),
        )
        .await;
    assert_eq!(st, 401);

    // PortSIP's form login; failures there are 400 UNAUTHORIZED.
    let form = |body: &'static str| {
        let api = &api;
        async move {
            let resp = api
                .http
                .post(format!("{}/api/login/oauth/token", api.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = resp.status().as_u16();
            (st, resp.json::<Value>().await.unwrap())
        }
    };
    let (st, v) = form("grant_type=password&username=1002&password=bob-secret&domain=facd.test&scope=all&client_id=x").await;
    assert_eq!((st, &v["role"]), (200, &json!("StandardUser")), "{v}");
    let bob = v["access_token"].as_str().unwrap().to_string();
    let (st, v) = form("grant_type=password&username=1002&password=wrong").await;
    assert_eq!((st, code_of(&v)), (400, "UNAUTHORIZED"), "{v}");

    // An extension's login is that agent: its own queues, nothing else.
    let (st, v) = api.get("/api/user/call_queues", &bob).await;
    assert_eq!(st, 200, "{v}");
    let numbers: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["extension_number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["8000", "8002"]);
    let q = v["items"][0]["id"].as_str().unwrap().to_string();
    let (st, v) = api
        .post(
            &format!("/api/user/call_queues/{q}/agent"),
            &bob,
            json!({"status": "LOGGED_IN"}),
        )
        .await;
    assert_eq!((st, &v["status"]), (200, &json!("READY")), "{v}");
    let (st, _) = api.get(&api.agent_path("8000", "1001").await, &bob).await;
    assert_eq!(st, 403);

    // Signing out ends the token.
    let (st, _) = api.post("/api/auth/sign_out", &bob, json!({})).await;
    assert_eq!(st, 200);
    let (st, _) = api.get("/api/user/call_queues", &bob).await;
    assert_eq!(st, 401);
    s.stop().await;
}
