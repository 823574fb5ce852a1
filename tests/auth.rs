//! Digest authentication of star codes against the running server (SPEC §4,
//! RFC 3261 §22, RFC 7616, RFC 8760): challenge, right and wrong passwords,
//! unknown user, replay, a From naming another agent, broken headers.

mod common;

use common::digest::parse_challenge;
use common::{base_config, Msg, Req, TestServer, Udp};

fn config() -> String {
    base_config("").replace("required = false", "required = true")
}

/// An INVITE with an Authorization header (or none).
fn invite(user: &str, agent: &str, call: &str, cseq: u32, auth: Option<&str>, port: u16) -> String {
    let mut m = Req::invite(
        user,
        agent,
        call,
        &format!("z9hG4bK-{call}-{cseq}"),
        "UDP",
        port,
    )
    .replace("CSeq: 1 INVITE", &format!("CSeq: {cseq} INVITE"));
    if let Some(a) = auth {
        m = m.replacen(
            "Content-Type:",
            &format!("Authorization: {a}\r\nContent-Type:"),
            1,
        );
    }
    m
}

async fn challenge(c: &Udp, user: &str, agent: &str, call: &str) -> Msg {
    c.send(&invite(user, agent, call, 1, None, c.port())).await;
    let r = c.recv_final_for(call).await;
    assert_eq!((r.status(), r.reason()), (401, "Unauthorized"), "{}", r.raw);
    r
}

fn answer(ch: &Msg, which: usize, user: &str, login: &str, password: &str, nc: u32) -> String {
    let header = &ch.headers("WWW-Authenticate")[which];
    let c = parse_challenge(header.as_bytes()).unwrap();
    c.authorization(
        "INVITE",
        &format!("sip:{user}@facd.test"),
        login,
        password,
        "0a4f113b",
        nc,
    )
}

#[tokio::test]
async fn challenge_then_right_password_applies() {
    let s = TestServer::start(&config()).await;
    let c = Udp::new(s.udp).await;
    let ch = challenge(&c, "*388000", "1001", "a1").await;
    let offers = ch.headers("WWW-Authenticate");
    assert_eq!(offers.len(), 2);
    assert!(
        offers[0].contains("algorithm=SHA-256") && offers[1].contains("algorithm=MD5"),
        "{offers:?}"
    );
    assert!(offers
        .iter()
        .all(|o| o.contains("realm=\"facd.test\"") && o.contains("qop=\"auth\"")));
    // Acknowledge the 401 so it is not retransmitted.
    let ack = invite("*388000", "1001", "a1", 1, None, c.port())
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    c.send(&ack).await;

    for (which, call) in [(0, "a1"), (1, "a1md5")] {
        let auth = answer(&ch, which, "*388000", "1001", "alice-secret", 1);
        c.send(&invite("*388000", "1001", call, 2, Some(&auth), c.port()))
            .await;
        let r = c.recv_final_for(call).await;
        assert_eq!(r.status(), 200, "{}", r.raw);
        assert_eq!(r.header("X-Agent-State").unwrap(), "queue=8000;state=READY");
    }
    s.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let s = TestServer::start(&config()).await;
    let c = Udp::new(s.udp).await;
    let ch = challenge(&c, "*38", "1001", "w0").await;
    let wrong = answer(&ch, 0, "*38", "1001", "guess", 1);
    c.send(&invite("*38", "1001", "w1", 2, Some(&wrong), c.port()))
        .await;
    let r1 = c.recv_final_for("w1").await;
    let ch = challenge(&c, "*38", "7777", "w2").await;
    let unknown = answer(&ch, 0, "*38", "7777", "guess", 1);
    c.send(&invite("*38", "7777", "w3", 2, Some(&unknown), c.port()))
        .await;
    let r2 = c.recv_final_for("w3").await;
    assert_eq!((r1.status(), r1.reason()), (403, "Forbidden"));
    assert_eq!((r2.status(), r2.reason()), (r1.status(), r1.reason()));
    // Nothing was applied for 1001.
    let ch = challenge(&c, "*36", "1001", "w4").await;
    let ok = answer(&ch, 0, "*36", "1001", "alice-secret", 1);
    c.send(&invite("*36", "1001", "w5", 2, Some(&ok), c.port()))
        .await;
    assert_eq!(c.recv_final_for("w5").await.reason(), "Not Logged In");
    s.stop().await;
}

#[tokio::test]
async fn replayed_credentials_are_challenged_again() {
    let s = TestServer::start(&config()).await;
    let c = Udp::new(s.udp).await;
    let ch = challenge(&c, "*38", "1002", "r0").await;
    let auth = answer(&ch, 0, "*38", "1002", "bob-secret", 1);
    c.send(&invite("*38", "1002", "r1", 2, Some(&auth), c.port()))
        .await;
    assert_eq!(c.recv_final_for("r1").await.status(), 200);
    // The same nonce and nonce-count again, in a new call: a replay.
    c.send(&invite("*38", "1002", "r2", 2, Some(&auth), c.port()))
        .await;
    let r = c.recv_final_for("r2").await;
    assert_eq!(r.status(), 401, "{}", r.raw);
    assert!(!r.headers("WWW-Authenticate")[0].contains("stale=true"));
    // A higher nonce-count on the same nonce is fine.
    let next = answer(&ch, 0, "*39", "1002", "bob-secret", 2);
    c.send(&invite("*39", "1002", "r3", 2, Some(&next), c.port()))
        .await;
    assert_eq!(c.recv_final_for("r3").await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn a_from_naming_another_agent_is_refused() {
    let s = TestServer::start(&config()).await;
    let c = Udp::new(s.udp).await;
    let ch = challenge(&c, "*38", "1002", "s0").await;
    // Bob's credentials, Alice's From.
    let bob = answer(&ch, 0, "*38", "1002", "bob-secret", 1);
    c.send(&invite("*38", "1001", "s1", 2, Some(&bob), c.port()))
        .await;
    let r = c.recv_final_for("s1").await;
    assert_eq!(
        (r.status(), r.reason()),
        (403, "Forbidden - From Does Not Match Credentials")
    );
    s.stop().await;
}

#[tokio::test]
async fn broken_authorization_headers_are_refused_cleanly() {
    let s = TestServer::start(&config()).await;
    let c = Udp::new(s.udp).await;
    for (i, bad) in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Digest username=\"1001\", realm=\"facd.test\"",
        "Digest username=\"1001\", realm=\"facd.test\", nonce=\"x\", uri=\"sip:*38@facd.test\", response=\"0\", username=\"2\"",
        "Digest username=\"1001",
        "Digest",
    ]
    .iter()
    .enumerate()
    {
        let call = format!("b{i}");
        c.send(&invite("*38", "1001", &call, 2, Some(bad), c.port())).await;
        let r = c.recv_final_for(&call).await;
        assert!(matches!(r.status(), 400 | 401), "{bad}: {}", r.raw);
        if r.status() == 400 {
            assert!(r.reason().starts_with("Bad Request - "), "{}", r.reason());
        }
    }
    // The server is fine.
    c.send(&Req::options(c.port(), "z9hG4bK-after-auth")).await;
    assert_eq!(
        c.recv_final_for("opt-z9hG4bK-after-auth@test")
            .await
            .status(),
        200
    );
    s.stop().await;
}

/// A password guesser is ignored after `limits.auth_failures` wrong answers
/// (default 5), long before a word list runs out; other sources go on.
#[tokio::test]
async fn a_password_guesser_is_cut_off_and_others_are_not() {
    let s = TestServer::start(&config()).await;
    let attacker = Udp::new_from(s.udp, "127.0.0.2").await;
    let words = [
        "123456",
        "password",
        "1001",
        "secret",
        "admin",
        "letmein",
        "qwerty",
        "alice",
        "welcome",
        "alice-secret",
    ];
    let mut answered = 0;
    for (i, w) in words.iter().enumerate() {
        let call = format!("g{i}");
        attacker
            .send(&invite("*38", "1001", &call, 1, None, attacker.port()))
            .await;
        // Skip retransmissions of earlier (unacknowledged) answers.
        let mut challenge = None;
        while let Some(m) = attacker.recv_within(500).await {
            if m.status() == 401 && m.header("Call-ID").as_deref() == Some(call.as_str()) {
                challenge = Some(m);
                break;
            }
        }
        let Some(ch) = challenge else { break };
        let guess = answer(&ch, 0, "*38", "1001", w, 1);
        let call2 = format!("g{i}b");
        attacker
            .send(&invite(
                "*38",
                "1001",
                &call2,
                2,
                Some(&guess),
                attacker.port(),
            ))
            .await;
        let r = attacker.recv_final_for(&call2).await;
        assert_eq!(r.status(), 403);
        answered += 1;
    }
    assert_eq!(answered, 5, "the guesser got {answered} answers");
    // Even the right password from that source is ignored now.
    attacker
        .send(&invite("*38", "1001", "late", 1, None, attacker.port()))
        .await;
    while let Some(m) = attacker.recv_within(500).await {
        assert_ne!(
            m.header("Call-ID").as_deref(),
            Some("late"),
            "a banned source was answered"
        );
    }
    // The agent's own phone (another source) still works.
    let c = Udp::new(s.udp).await;
    let ch = challenge(&c, "*38", "1001", "ok0").await;
    let auth = answer(&ch, 0, "*38", "1001", "alice-secret", 1);
    c.send(&invite("*38", "1001", "ok1", 2, Some(&auth), c.port()))
        .await;
    assert_eq!(c.recv_final_for("ok1").await.status(), 200);
    s.stop().await;
}
