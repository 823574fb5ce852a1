//! Star codes end to end over UDP and TCP against the in-process server
//! (SPEC §3–4): the 200 and its headers, the ACK/BYE dance, retransmissions,
//! refusals with their phrases, CANCEL, and a caller that never ACKs.

mod common;

use common::{base_config, Req, Tcp, TestServer, Udp};

/// Dials `user` as `agent` over UDP and completes the call; returns the 200
/// (or the refusal).
async fn dial(c: &Udp, user: &str, agent: &str, call_id: &str) -> common::Msg {
    c.send(&Req::invite(
        user,
        agent,
        call_id,
        &format!("z9hG4bK-{call_id}"),
        "UDP",
        c.port(),
    ))
    .await;
    let resp = c.recv_response().await;
    if resp.status() == 200 {
        let tag = resp.to_tag().expect("200 without To tag");
        c.send(&Req::ack(user, agent, call_id, &tag, "UDP", c.port()))
            .await;
        // facd hangs up confirm_ms after the ACK.
        let bye = c.recv().await;
        assert_eq!(bye.method(), "BYE", "{}", bye.raw);
        c.send(&Req::ok_for(&bye)).await;
    }
    resp
}

#[tokio::test]
async fn login_ready_notready_logout_one_queue_and_all() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;

    let r = dial(&c, "*388000", "1001", "c1").await;
    assert_eq!(r.status(), 200, "{}", r.raw);
    assert_eq!(r.header("X-Agent-State").unwrap(), "queue=8000;state=READY");

    // Support has no auto-ready: login all → 8000 stays READY, 8001 NOT_READY.
    let r = dial(&c, "*38", "1001", "c2").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=READY, queue=8001;state=NOT_READY"
    );
    let r = dial(&c, "*368001", "1001", "c3").await;
    assert_eq!(r.header("X-Agent-State").unwrap(), "queue=8001;state=READY");
    let r = dial(&c, "*37*1", "1001", "c4").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=NOT_READY;reason=BREAK, queue=8001;state=NOT_READY;reason=BREAK"
    );
    let r = dial(&c, "*36", "1001", "c5").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=READY, queue=8001;state=READY"
    );
    let r = dial(&c, "*398000", "1001", "c6").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=LOGGED_OUT"
    );
    let r = dial(&c, "*39", "1001", "c7").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=LOGGED_OUT, queue=8001;state=LOGGED_OUT"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_200_has_every_header_and_an_sdp_answer() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*38",
        "1002",
        "h1",
        "z9hG4bK-h1",
        "UDP",
        c.port(),
    ))
    .await;
    let r = c.recv_response().await;
    assert_eq!(r.status(), 200);
    assert!(r.to_tag().is_some());
    let contact = r.header("Contact").unwrap();
    assert!(contact.starts_with("<sip:*38@127.0.0.1:"), "{contact}");
    assert!(!contact.contains("transport=tcp"));
    assert_eq!(
        r.header("Allow").unwrap(),
        "INVITE, ACK, BYE, CANCEL, OPTIONS, SUBSCRIBE"
    );
    assert!(r.header("Server").unwrap().starts_with("facd/"));
    assert!(r.headers("Supported").len() == 1);
    assert_eq!(r.header("Content-Type").unwrap(), "application/sdp");
    // The offer preferred PCMU (0 before 8).
    assert!(r.body().contains("m=audio "), "{}", r.body());
    assert!(r.body().contains(" RTP/AVP 0\r\n"), "{}", r.body());
    // Via echoed with rport filled (RFC 3581 §4).
    let via = r.header("Via").unwrap();
    assert!(via.contains(&format!("rport={}", c.port())), "{via}");
    s.stop().await;
}

#[tokio::test]
async fn refusals_carry_status_and_phrase() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let cases = [
        ("*40", "1001", 404, "Not Found"),
        ("1234", "1001", 404, "Not Found"),
        ("*389999", "1001", 404, "Unknown Queue"),
        ("*388002", "1001", 403, "Not A Queue Member"),
        ("*36", "1001", 403, "Not Logged In"),
        ("*378000", "1001", 403, "Not Logged In"),
        ("*37*9", "1001", 404, "Unknown Reason"),
        ("*38", "9999", 403, "Forbidden"),
    ];
    for (i, (user, agent, status, reason)) in cases.iter().enumerate() {
        let call = format!("r{i}");
        c.send(&Req::invite(
            user,
            agent,
            &call,
            &format!("z9hG4bK-{call}"),
            "UDP",
            c.port(),
        ))
        .await;
        let r = c.recv_response().await;
        assert_eq!(
            (r.status(), r.reason()),
            (*status, *reason),
            "{user} as {agent}: {}",
            r.raw
        );
        assert!(r.to_tag().is_some());
        // ACK the non-2xx on the INVITE's branch (RFC 3261 §17.1.1.3): absorbed.
        let ack = Req::invite(
            user,
            agent,
            &call,
            &format!("z9hG4bK-{call}"),
            "UDP",
            c.port(),
        )
        .replacen("INVITE sip", "ACK sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
        c.send(&ack).await;
    }
    // Nothing was applied: the agent is still logged out everywhere.
    let r = dial(&c, "*39", "1001", "after").await;
    assert_eq!(
        r.header("X-Agent-State").unwrap(),
        "queue=8000;state=LOGGED_OUT, queue=8001;state=LOGGED_OUT"
    );
    s.stop().await;
}

#[tokio::test]
async fn retransmitted_invite_is_answered_the_same_and_applied_once() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let inv = Req::invite("*37", "1002", "rt1", "z9hG4bK-rt1", "UDP", c.port());
    // Log in first so that *37 applies.
    dial(&c, "*38", "1002", "pre").await;
    c.send(&inv).await;
    let first = c.recv_response().await;
    c.send(&inv).await;
    let second = c.recv_response().await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.raw, second.raw,
        "the retransmission must get the same 200"
    );
    let tag = first.to_tag().unwrap();
    c.send(&Req::ack("*37", "1002", "rt1", &tag, "UDP", c.port()))
        .await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE");
    c.send(&Req::ok_for(&bye)).await;
    s.stop().await;
}

#[tokio::test]
async fn no_ack_means_2xx_retransmissions_then_bye() {
    // t1 = 50 ms: 2xx at 0, 50, 150, 350, … until 64*T1 = 3.2 s, then BYE.
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*38",
        "1003",
        "na1",
        "z9hG4bK-na1",
        "UDP",
        c.port(),
    ))
    .await;
    let mut oks = 0;
    let bye = loop {
        let m = c
            .recv_within(5000)
            .await
            .expect("facd went quiet without a BYE");
        match (m.status(), m.method()) {
            (200, _) => oks += 1,
            (0, "BYE") => break m,
            _ => panic!("unexpected {}", m.raw),
        }
    };
    assert!(oks >= 4, "expected the 2xx to be retransmitted, got {oks}");
    assert!(bye.header("To").unwrap().contains("tag=from-na1"));
    c.send(&Req::ok_for(&bye)).await;
    s.stop().await;
}

#[tokio::test]
async fn caller_bye_first_is_answered_and_facd_sends_none() {
    let s = TestServer::start(&base_config("confirm_ms = 2000")).await;
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*38",
        "1001",
        "cb1",
        "z9hG4bK-cb1",
        "UDP",
        c.port(),
    ))
    .await;
    let ok = c.recv_response().await;
    let tag = ok.to_tag().unwrap();
    c.send(&Req::ack("*38", "1001", "cb1", &tag, "UDP", c.port()))
        .await;
    let bye = format!(
        "BYE sip:*38@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-cb1-bye;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@facd.test>;tag=from-cb1\r\nTo: <sip:*38@facd.test>;tag={tag}\r\n\
         Call-ID: cb1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        p = c.port()
    );
    c.send(&bye).await;
    let r = c.recv_response().await;
    assert_eq!((r.status(), r.method()), (200, "SIP/2.0"));
    assert!(r.header("CSeq").unwrap().ends_with("BYE"));
    // No BYE from facd after its confirm delay.
    assert!(c.recv_within(2500).await.is_none());
    s.stop().await;
}

#[tokio::test]
async fn cancel_after_answer_and_for_nothing() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let cancel = |call: &str| {
        format!(
            "CANCEL sip:*38@facd.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-{call};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Agent 1001\" <sip:1001@facd.test>;tag=from-{call}\r\nTo: <sip:*38@facd.test>\r\n\
             Call-ID: {call}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            p = c.port()
        )
    };
    // No INVITE with that branch: 481 (RFC 3261 §9.2).
    c.send(&cancel("nothing")).await;
    let r = c.recv_response().await;
    assert_eq!(
        (r.status(), r.reason()),
        (481, "Call/Transaction Does Not Exist")
    );
    s.stop().await;
}

/// A CANCEL right behind its INVITE reaches facd while the change is being
/// written to the journal: the INVITE then still gets its 200 (the change
/// happened), never a 487 over a change that was applied anyway.
#[tokio::test]
async fn a_cancel_racing_the_journal_never_leaves_a_487_over_an_applied_change() {
    let s = TestServer::start(&base_config("")).await;
    let c = Udp::new(s.udp).await;
    let state = |s: &TestServer| {
        let core = s.core.clone();
        async move {
            core.query(|e| e.agent("1001").map(|a| a.queues[0].state))
                .await
                .unwrap()
                .unwrap()
        }
    };
    for i in 0..10 {
        let code = if i % 2 == 0 { "*388000" } else { "*398000" };
        let call = format!("race-{i}");
        let before = state(&s).await;
        let invite = Req::invite(
            code,
            "1001",
            &call,
            &format!("z9hG4bK-{call}"),
            "UDP",
            c.port(),
        );
        let cancel = format!(
            "CANCEL sip:{code}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{p};branch=z9hG4bK-{call};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Agent 1001\" <sip:1001@facd.test>;tag=from-{call}\r\nTo: <sip:{code}@facd.test>\r\n\
             Call-ID: {call}\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
            p = c.port()
        );
        c.send(&invite).await;
        c.send(&cancel).await;
        let r = loop {
            let r = c.recv_final_for(&call).await;
            if r.header("CSeq").is_some_and(|v| v.ends_with("INVITE")) {
                break r;
            }
        };
        let after = state(&s).await;
        match r.status() {
            487 => assert_eq!(after, before, "a 487, yet the change was applied"),
            200 => {
                assert_ne!(after, before, "a 200, yet nothing changed");
                let tag = r.to_tag().unwrap();
                c.send(&Req::ack(code, "1001", &call, &tag, "UDP", c.port()))
                    .await;
                loop {
                    let m = c.recv().await;
                    if m.method() == "BYE" {
                        c.send(&Req::ok_for(&m)).await;
                        break;
                    }
                }
            }
            other => panic!("INVITE answered {other}: {}", r.raw),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn tcp_call_uses_the_connection_and_says_so_in_contact() {
    let s = TestServer::start(&base_config("")).await;
    let mut c = Tcp::connect(s.tcp).await;
    let port = c.port();
    c.send(Req::invite("*38", "1001", "t1", "z9hG4bK-t1", "TCP", port).as_bytes())
        .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert!(ok.header("Contact").unwrap().ends_with(";transport=tcp>"));
    let tag = ok.to_tag().unwrap();
    c.send(Req::ack("*38", "1001", "t1", &tag, "TCP", port).as_bytes())
        .await;
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    assert!(bye.header("Via").unwrap().starts_with("SIP/2.0/TCP "));
    c.send(Req::ok_for(&bye).as_bytes()).await;
    s.stop().await;
}

#[tokio::test]
async fn shutdown_hangs_up_open_calls() {
    let s = TestServer::start(&base_config("confirm_ms = 30000")).await;
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        "*38",
        "1001",
        "sd1",
        "z9hG4bK-sd1",
        "UDP",
        c.port(),
    ))
    .await;
    let ok = c.recv_response().await;
    c.send(&Req::ack(
        "*38",
        "1001",
        "sd1",
        &ok.to_tag().unwrap(),
        "UDP",
        c.port(),
    ))
    .await;
    let stopping = tokio::spawn(s.stop());
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE");
    c.send(&Req::ok_for(&bye)).await;
    stopping.await.unwrap();
}
