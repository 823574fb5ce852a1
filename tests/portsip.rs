//! facd against PortSIP's own documents: the contract fixture
//! (`tests/fixtures/portsip-contract.json`, each operation with the PortSIP
//! document it comes from) walked against the running server and checked
//! against the served OpenAPI document; and issue 15's acceptance test, a
//! client written from PortSIP's documents alone (REST login, queue list,
//! agent status, WSI with an extension's credentials, a `*37` over SIP).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::{base_config, Req, TestServer, Udp};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ADMIN_TOKEN: &str = "admin-static-token";
const ADMIN_PASSWORD: &str = "admin-password-1";
const DOMAIN: &str = "facd.test";

fn config() -> String {
    format!(
        "{}\n[[api_users]]\nname = \"admin\"\ntoken = \"{ADMIN_TOKEN}\"\npassword = \"{ADMIN_PASSWORD}\"\nrole = \"admin\"\n",
        base_config("")
    )
}

fn fixture() -> Value {
    let text = include_str!("fixtures/portsip-contract.json");
    serde_json::from_str(text).expect("the contract fixture is JSON")
}

async fn send(
    http: &reqwest::Client,
    base: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(m, format!("http://{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some((ct, b)) = body {
        req = req.header("content-type", ct).body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v)
}

/// Does `v` have the field `path` (`a[].b`: field b of every element of a)?
fn has_field(v: &Value, path: &str) -> bool {
    match path.split_once("[].") {
        None => v.get(path).is_some(),
        Some((array, rest)) => v
            .get(array)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty() && a.iter().all(|e| has_field(e, rest))),
    }
}

/// Follows `$ref`s of the document.
fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        s = &doc["components"]["schemas"][name];
    }
    s
}

/// Does schema `s` declare the field `path`?
fn declares(doc: &Value, s: &Value, path: &str) -> bool {
    let s = resolve(doc, s);
    match path.split_once("[].") {
        None => s["properties"].get(path).is_some(),
        Some((array, rest)) => {
            let a = resolve(doc, &s["properties"][array]);
            a["type"] == "array" && declares(doc, &a["items"], rest)
        }
    }
}

#[tokio::test]
async fn the_contract_fixture_holds_for_the_server_and_its_openapi_document() {
    let s = TestServer::start(&config()).await;
    let http = reqwest::Client::new();
    let fx = fixture();
    let ops = fx["operations"].as_array().unwrap();

    // The served document declares every operation as the fixture has it,
    // and documents no /api operation the fixture lacks.
    let (st, doc) = send(&http, s.http, "GET", "/openapi.json", None, None).await;
    assert_eq!(st, 200);
    let mut in_fixture = BTreeSet::new();
    for op in ops {
        let (name, method, path) = (
            op["operation"].as_str().unwrap(),
            op["method"].as_str().unwrap().to_lowercase(),
            op["path"].as_str().unwrap(),
        );
        assert!(op["source"].as_str().is_some_and(|s| !s.is_empty()));
        in_fixture.insert((method.clone(), path.to_string()));
        let d = &doc["paths"][path][&method];
        assert!(d.is_object(), "{method} {path} is not in /openapi.json");
        assert_eq!(d["operationId"], name, "{method} {path}");
        let ct = op["content_type"].as_str().unwrap_or("application/json");
        for f in op["request"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let schema = &d["requestBody"]["content"][ct]["schema"];
            assert!(declares(&doc, schema, f), "{name}: request field {f}");
        }
        for f in op["response"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            let schema = &d["responses"]["200"]["content"]["application/json"]["schema"];
            assert!(declares(&doc, schema, f), "{name}: response field {f}");
        }
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path.starts_with("/api/") {
                assert!(
                    in_fixture.contains(&(method.clone(), path.clone())),
                    "{method} {path} is served but not in the fixture"
                );
            }
        }
    }

    // Walk it against the server, in order.
    let (_, users) = send(&http, s.http, "GET", "/api/users", Some(ADMIN_TOKEN), None).await;
    let user_1002 = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["extension_number"] == "1002")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, queues) = send(
        &http,
        s.http,
        "GET",
        "/api/call_queues",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let queue_8000 = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["extension_number"] == fx["queue"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let agent_login = json!({"username": "1001", "password": "alice-secret", "domain": DOMAIN});
    let (st, t) = send(
        &http,
        s.http,
        "POST",
        "/api/login",
        None,
        Some(("application/json", agent_login.to_string())),
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let agent_token = t["access_token"].as_str().unwrap().to_string();
    let mut refresh = String::new();
    let mut session = String::new();
    for op in ops {
        let name = op["operation"].as_str().unwrap();
        let method = op["method"].as_str().unwrap();
        let template = op["path"].as_str().unwrap();
        let path = if template.starts_with("/api/users/") {
            template.replace("{id}", &user_1002)
        } else {
            template.replace("{id}", &queue_8000)
        }
        .replace("{queue_id}", &queue_8000)
        .replace("{agent_number}", "1001")
        .replace("{call_id}", "contract-1");
        let token = match op["auth"].as_str().unwrap() {
            "none" => None,
            "admin" => Some(ADMIN_TOKEN),
            "agent" => Some(agent_token.as_str()),
            "admin_session" => Some(session.as_str()),
            other => panic!("{name}: auth {other:?}"),
        };
        let body = op.get("body").map(|b| {
            let fill = |v: &str| match v {
                "$ADMIN_NAME" => "admin".to_string(),
                "$ADMIN_PASSWORD" => ADMIN_PASSWORD.to_string(),
                "$DOMAIN" => DOMAIN.to_string(),
                "$REFRESH_TOKEN" => refresh.clone(),
                other => other.to_string(),
            };
            let ct = op["content_type"].as_str().unwrap_or("application/json");
            let text = if ct == "application/json" {
                let mut b = b.clone();
                for v in b.as_object_mut().unwrap().values_mut() {
                    if let Some(x) = v.as_str() {
                        *v = Value::String(fill(x));
                    }
                }
                b.to_string()
            } else {
                b.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k}={}", fill(v.as_str().unwrap())))
                    .collect::<Vec<_>>()
                    .join("&")
            };
            (ct, text)
        });
        let (st, v) = send(&http, s.http, method, &path, token, body).await;
        assert_eq!(st, 200, "{name} {method} {path}: {v}");
        for f in op["response"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            assert!(has_field(&v, f), "{name}: no {f} in {v}");
        }
        if name == "login" {
            refresh = v["refresh_token"].as_str().unwrap().to_string();
            session = v["access_token"].as_str().unwrap().to_string();
        }
        if name == "refreshToken" {
            session = v["access_token"].as_str().unwrap().to_string();
        }
    }
    // signOut (last) ended the admin's session.
    let (st, v) = send(&http, s.http, "GET", "/api/login", Some(&session), None).await;
    assert_eq!(st, 401, "{v}");
    s.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    })
    .await
    .expect("no WSI message within 5 s")
}

/// Issue 15, "Done when": written from PortSIP's documents only.
#[tokio::test]
async fn a_client_written_from_portsips_documents_works_unchanged() {
    let s = TestServer::start(&config()).await;
    let base = format!("http://{}/api", s.http);
    let http = reqwest::Client::new();

    // REST API 22.0 `login`: username, password, domain → access_token.
    let login: Value = http
        .post(format!("{base}/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD, "domain": DOMAIN}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("access_token");
    assert!(
        login["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{login}"
    );

    // `listQueues`; take the id of queue 8000.
    let queues: Value = http
        .get(format!("{base}/call_queues"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = queues["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["extension_number"] == "8000")
        .expect("queue 8000 in the list")["id"]
        .as_str()
        .unwrap()
        .to_string();

    // `setQueueAgentStatus` with PortSIP's body: log in, then READY.
    let agent = format!("{base}/call_queues/{id}/agents/1001");
    for status in ["LOGGED_IN", "READY"] {
        let resp = http
            .post(&agent)
            .bearer_auth(token)
            .json(&json!({"status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{status}");
    }
    // `showQueueAgent` reads it back.
    let shown: Value = http
        .get(&agent)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&shown["extension_number"], &shown["status"]),
        (&json!("1001"), &json!("READY")),
        "{shown}"
    );

    // WSI 22.3 at /wsi: auth with the extension's number and password.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/wsi", s.http))
        .await
        .unwrap();
    let auth = json!({"command": "auth", "extension_number": "1001", "password": "alice-secret", "domain": DOMAIN});
    ws.send(Message::Text(auth.to_string().into()))
        .await
        .unwrap();
    let a = next_json(&mut ws).await;
    assert_eq!(
        (&a["command"], &a["status"]),
        (&json!("auth"), &json!(0)),
        "{a}"
    );
    let sub = json!({"command": "subscribe", "topics": ["queue_events"], "queues": ["8000"]});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["status"], 0);
    // The queue_status snapshot.
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["event_type"], "queue_status", "{snap}");
    assert_eq!(
        (&snap["queue_id"], &snap["queue_number"]),
        (&json!(id), &json!("8000"))
    );
    let me = snap["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_extension_number"] == "1001")
        .expect("1001 in the snapshot");
    assert_eq!(me["state"], "READY");

    // The agent dials *37 over SIP.
    let phone = Udp::new(s.udp).await;
    phone
        .send(&Req::invite(
            "*37",
            "1001",
            "done-when",
            "z9hG4bK-done-when",
            "UDP",
            phone.port(),
        ))
        .await;
    assert_eq!(phone.recv_response().await.status(), 200);
    // queue_agent_status, with queue_id.
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event_type"], "queue_agent_status", "{ev}");
    assert_eq!(ev["queue_id"], id.as_str());
    assert!(ev["tenant_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        (
            &ev["updated_agents"][0]["agent_extension_number"],
            &ev["updated_agents"][0]["state"]
        ),
        (&json!("1001"), &json!("NOT_READY"))
    );
    s.stop().await;
}
