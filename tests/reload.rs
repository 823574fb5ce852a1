//! Reload without restart, on the real binary: after an agent is added to
//! the file and `kill -HUP`, it can log in while every other agent keeps
//! its state; a removed membership and a removed agent are logged out; a
//! file that does not validate is refused whole (`POST /admin/reload`
//! answers 400 with the keys) and the running configuration stays; what
//! needs a restart is named.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Req, Udp};

const TOKEN: &str = "reload-admin-token";

fn config(agents: &str, domain: &str) -> String {
    format!(
        r#"
[sip]
listen = ["udp:127.0.0.1:0"]
domain = "{domain}"
confirm_ms = 0
t1_ms = 50
[auth]
required = false
[http]
listen = "127.0.0.1:0"
[[api_users]]
name = "admin"
token = "{TOKEN}"
role = "admin"
[[queues]]
number = "8000"
name = "Sales"
[[queues]]
number = "8001"
name = "Support"
auto_ready = false
{agents}
"#
    )
}

fn agent(ext: &str, queues: &str) -> String {
    format!("[[agents]]\nextension = \"{ext}\"\nname = \"A{ext}\"\nqueues = [{queues}]\n")
}

struct Facd {
    child: std::process::Child,
    udp: std::net::SocketAddr,
    http: std::net::SocketAddr,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Facd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str, dir: &Path) {
    let text = format!(
        "{text}\n[storage]\ndir = {:?}\n",
        dir.join("data").display().to_string()
    );
    std::fs::write(path, text).unwrap();
}

fn start(text: &str) -> Facd {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("facd.toml");
    write(&path, text, dir.path());
    let s = common::spawn_facd(&path);
    Facd {
        child: s.child,
        udp: s.udp.unwrap(),
        http: s.http.unwrap(),
        path,
        _dir: dir,
    }
}

impl Facd {
    fn rewrite(&self, text: &str) {
        write(&self.path, text, self.path.parent().unwrap());
    }

    /// `{queue: state}` of an agent, or None if no queue lists it (facd
    /// does not know it), read through the PortSIP API: the queue list,
    /// then each queue's agents and the agent's entry.
    async fn states(&self, ext: &str) -> Option<Vec<(String, String)>> {
        let http = reqwest::Client::new();
        let get = |path: String| {
            let http = http.clone();
            let url = format!("http://{}{path}", self.http);
            async move {
                let r = http.get(url).bearer_auth(TOKEN).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()
            }
        };
        let queues = get("/api/call_queues".into()).await;
        let mut out = Vec::new();
        for q in queues["items"].as_array().unwrap() {
            let id = q["id"].as_str().unwrap();
            let agents = get(format!("/api/call_queues/{id}/agents")).await;
            let member = agents["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["extension_number"].as_str() == Some(ext));
            if member {
                let a = get(format!("/api/call_queues/{id}/agents/{ext}")).await;
                out.push((
                    q["extension_number"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                ));
            }
        }
        (!out.is_empty()).then_some(out)
    }

    async fn dial(&self, c: &Udp, code: &str, agent: &str, call_id: &str) -> u16 {
        let branch = format!("z9hG4bK-{call_id}");
        c.send(&Req::invite(code, agent, call_id, &branch, "UDP", c.port()))
            .await;
        c.recv_final_for(call_id).await.status()
    }

    async fn admin_reload(&self) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("http://{}/admin/reload", self.http))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn pairs(v: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    Some(
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

#[tokio::test]
async fn sighup_and_the_admin_call_reload_in_place() {
    let two = agent("1001", "\"8000\", \"8001\"") + &agent("1002", "\"8000\"");
    let f = start(&config(&two, "facd.test"));
    let c = Udp::new(f.udp).await;
    assert_eq!(f.dial(&c, "*38", "1001", "r-1").await, 200);
    assert_eq!(f.dial(&c, "*37*", "1002", "r-x").await, 404, "not a code");
    assert_eq!(f.dial(&c, "*388000", "1002", "r-2").await, 200);
    assert_eq!(f.dial(&c, "*378000", "1002", "r-3").await, 200);
    let alice = pairs(&[("8000", "READY"), ("8001", "NOT_READY")]);
    let bob = pairs(&[("8000", "NOT_READY")]);
    assert_eq!(f.states("1001").await, alice);
    assert_eq!(f.states("1002").await, bob);
    assert_eq!(
        f.dial(&c, "*388000", "1003", "r-4").await,
        403,
        "unknown agent"
    );

    // Add 1003; SIGHUP.
    let three = two.clone() + &agent("1003", "\"8000\"");
    f.rewrite(&config(&three, "facd.test"));
    let pid = i32::try_from(f.child.id()).unwrap();
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.states("1003").await.is_none() {
        assert!(Instant::now() < deadline, "SIGHUP did not add 1003");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.dial(&c, "*388000", "1003", "r-5").await, 200);
    assert_eq!(f.states("1003").await, pairs(&[("8000", "READY")]));
    assert_eq!(f.states("1001").await, alice, "unchanged by the reload");
    assert_eq!(f.states("1002").await, bob, "unchanged by the reload");

    // A file that does not validate: refused whole, with the key.
    f.rewrite(&(config(&three, "facd.test") + &agent("1009", "\"9999\"")));
    let (status, body) = f.admin_reload().await;
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("agents[3].queues[0]"), "{error}");
    assert_eq!(f.states("1003").await, pairs(&[("8000", "READY")]));
    assert!(f.states("1009").await.is_none());

    // 1001 leaves 8001, 1002 leaves entirely; the domain needs a restart.
    let fewer = agent("1001", "\"8000\"") + &agent("1003", "\"8000\"");
    f.rewrite(&config(&fewer, "other.test"));
    let (status, body) = f.admin_reload().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agents_removed"], 1);
    assert_eq!(body["memberships_removed"], 2);
    assert_eq!(body["logged_out"], 2, "1001 in 8001, 1002 in 8000");
    assert_eq!(body["restart_needed"], serde_json::json!(["sip.domain"]));
    assert_eq!(f.states("1001").await, pairs(&[("8000", "READY")]));
    assert!(f.states("1002").await.is_none());
    assert_eq!(f.dial(&c, "*388000", "1002", "r-6").await, 403);

    // Without a token: 401.
    let r = reqwest::Client::new()
        .post(format!("http://{}/admin/reload", f.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
