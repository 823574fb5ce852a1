//! facd behind a proxy, without the proxy: a client on 127.0.0.2 plays a
//! trusted proxy (`[[trusted_proxies]]`). Its requests identify the agent
//! by P-Asserted-Identity (RFC 3325), else the From, with no challenge;
//! everyone else is challenged. The 200 to an INVITE or SUBSCRIBE copies
//! the request's Record-Route headers in order (RFC 3261 §12.1.1), and the
//! BYE facd sends carries them as its route set, back to the proxy.
//! The same through a real Kamailio is in tests/kamailio.rs.

mod common;

use facd::engine::AgentState;

use common::{base_config, Req, TestServer, Udp};

fn config() -> String {
    base_config("confirm_ms = 0").replace(
        "required = false",
        "required = true\nalgorithms = [\"MD5\"]",
    ) + "\n[[trusted_proxies]]\naddress = \"127.0.0.2\"\n"
}

/// The common INVITE as a proxy relays it: its own Via on top, its
/// Record-Route, and an asserted identity when `pai` is given.
fn relayed_invite(code: &str, from: &str, pai: Option<&str>, call_id: &str, port: u16) -> String {
    let mut headers = String::from(
        "Record-Route: <sip:127.0.0.2:5999;lr>\r\nRecord-Route: <sip:10.9.9.9;lr;ftag=x>\r\n",
    );
    if let Some(user) = pai {
        headers.push_str(&format!(
            "P-Asserted-Identity: \"Agent\" <sip:{user}@pbx.test>, <tel:+4930{user}>\r\n"
        ));
    }
    Req::invite(
        code,
        from,
        call_id,
        &format!("z9hG4bK-{call_id}"),
        "UDP",
        port,
    )
    .replacen(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 69\r\n{headers}"),
        1,
    )
}

async fn state(s: &TestServer, agent: &'static str) -> AgentState {
    s.core
        .query(move |e| e.agent(agent).unwrap().queues[0].state)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_trusted_proxy_asserts_the_agent_and_gets_the_record_route_back() {
    let s = TestServer::start(&config()).await;
    let proxy = Udp::new_from(s.udp, "127.0.0.2").await;
    let p = proxy.port();

    // P-Asserted-Identity names 1001; the From (1002) is not who is asking.
    proxy
        .send(&relayed_invite("*388000", "1002", Some("1001"), "px-1", p))
        .await;
    let ok = proxy.recv_final_for("px-1").await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(
        ok.headers("Record-Route"),
        ["<sip:127.0.0.2:5999;lr>", "<sip:10.9.9.9;lr;ftag=x>"],
        "copied in order (RFC 3261 §12.1.1)"
    );
    assert_eq!(state(&s, "1001").await, AgentState::Ready);
    assert_eq!(state(&s, "1002").await, AgentState::LoggedOut);

    // The ACK through the proxy; facd's BYE (confirm_ms = 0) goes to the
    // proxy with the route set as Route headers, to the phone's Contact.
    let tag = ok.to_tag().unwrap();
    proxy
        .send(&Req::ack("*388000", "1002", "px-1", &tag, "UDP", p))
        .await;
    let bye = proxy.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    assert!(bye
        .start_line()
        .starts_with(&format!("BYE sip:1002@127.0.0.1:{p}")));
    assert_eq!(
        bye.headers("Route"),
        ["<sip:127.0.0.2:5999;lr>", "<sip:10.9.9.9;lr;ftag=x>"]
    );
    proxy.send(&Req::ok_for(&bye)).await;

    // Without an asserted identity, the From user.
    proxy
        .send(&relayed_invite("*388000", "1002", None, "px-2", p))
        .await;
    assert_eq!(proxy.recv_final_for("px-2").await.status(), 200);
    assert_eq!(state(&s, "1002").await, AgentState::Ready);
    s.stop().await;
}

#[tokio::test]
async fn anyone_else_is_challenged_even_with_an_asserted_identity() {
    let s = TestServer::start(&config()).await;
    let phone = Udp::new(s.udp).await;
    let p = phone.port();
    phone
        .send(&relayed_invite("*388000", "1001", Some("1001"), "nx-1", p))
        .await;
    let r = phone.recv_final_for("nx-1").await;
    assert_eq!(r.status(), 401, "{}", r.raw);
    assert_eq!(state(&s, "1001").await, AgentState::LoggedOut);
    s.stop().await;
}

#[tokio::test]
async fn a_subscribe_through_the_proxy_is_answered_with_its_record_route() {
    let s = TestServer::start(&config()).await;
    let proxy = Udp::new_from(s.udp, "127.0.0.2").await;
    let p = proxy.port();
    let sub = format!(
        "SUBSCRIBE sip:1001@facd.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:{p};branch=z9hG4bK-pxs;rport\r\n\
         Max-Forwards: 69\r\n\
         Record-Route: <sip:127.0.0.2:5999;lr>\r\n\
         P-Asserted-Identity: <sip:1001@pbx.test>\r\n\
         From: <sip:1001@facd.test>;tag=pxs\r\n\
         To: <sip:1001@facd.test>\r\n\
         Call-ID: pxs-1\r\n\
         CSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:1001@127.0.0.1:5062>\r\n\
         Event: as-feature-event\r\n\
         Expires: 600\r\n\
         Content-Length: 0\r\n\r\n"
    );
    proxy.send(&sub).await;
    let ok = proxy.recv_final_for("pxs-1").await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(ok.headers("Record-Route"), ["<sip:127.0.0.2:5999;lr>"]);
    // The first NOTIFY follows the route set back through the proxy.
    let notify = proxy.recv().await;
    assert_eq!(notify.method(), "NOTIFY", "{}", notify.raw);
    assert_eq!(notify.headers("Route"), ["<sip:127.0.0.2:5999;lr>"]);
    s.stop().await;
}
