//! Feature-key subscriptions (`as-feature-event`, SPEC §5, RFC 6665)
//! against the running server over UDP and TCP: the first NOTIFY, a NOTIFY
//! per change, refresh, `Expires: 0`, expiry, a phone that stops answering
//! (Timer F), SetAgentState, 423/489/415/400/403/481, digest
//! authentication, and what a restart does to subscriptions.

mod common;

use std::collections::VecDeque;
use std::time::Duration;

use common::digest::parse_challenge;
use common::{base_config, Msg, Req, Tcp, TestServer, Udp};
use facd::engine::{AgentState, Cause};

const CT: &str = "application/x-as-feature-event+xml";
const NS: &str = "xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"";

/// Lab config with RFC 3261 default T1 (no retransmissions while a test thinks).
fn config(subscribe: &str) -> String {
    format!(
        "{}\n[subscribe]\n{subscribe}\n",
        base_config("").replace("t1_ms = 50", "t1_ms = 500")
    )
}

fn set_agent_state(state: &str, reason: Option<u32>) -> String {
    let ext = reason.map_or(String::new(), |r| {
        format!(
            "<extensions><privateData><private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\
             <pri:AgentNotReadyReasonValue>{r}</pri:AgentNotReadyReasonValue></private></privateData></extensions>"
        )
    });
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<SetAgentState {NS}>\
         <device></device><requestedAgentState>{state}</requestedAgentState>{ext}\
         <agentID></agentID><password></password></SetAgentState>\r\n"
    )
}

enum Link {
    Udp(Udp),
    Tcp(Tcp),
}

/// A phone: one subscription dialog, answering every NOTIFY it gets.
struct Phone {
    link: Link,
    agent: String,
    call: String,
    cseq: u32,
    to_tag: Option<String>,
    /// NOTIFYs seen while waiting for a response.
    notifies: VecDeque<Msg>,
    /// Answer NOTIFYs (false: a phone gone silent).
    answer: bool,
    auth: Option<String>,
}

impl Phone {
    async fn new(s: &TestServer, tcp: bool, agent: &str, call: &str) -> Self {
        let link = if tcp {
            Link::Tcp(Tcp::connect(s.tcp).await)
        } else {
            Link::Udp(Udp::new(s.udp).await)
        };
        Self {
            link,
            agent: agent.into(),
            call: call.into(),
            cseq: 0,
            to_tag: None,
            notifies: VecDeque::new(),
            answer: true,
            auth: None,
        }
    }

    fn transport(&self) -> &'static str {
        match self.link {
            Link::Udp(_) => "UDP",
            Link::Tcp(_) => "TCP",
        }
    }

    fn port(&self) -> u16 {
        match &self.link {
            Link::Udp(u) => u.port(),
            Link::Tcp(t) => t.port(),
        }
    }

    async fn send(&mut self, m: &str) {
        match &mut self.link {
            Link::Udp(u) => u.send(m).await,
            Link::Tcp(t) => t.send(m.as_bytes()).await,
        }
    }

    async fn recv_within(&mut self, ms: u64) -> Option<Msg> {
        let m = match &mut self.link {
            Link::Udp(u) => u.recv_within(ms).await,
            Link::Tcp(t) => t.recv_within(ms).await,
        }?;
        if m.method() == "NOTIFY" && self.answer {
            self.send(&Req::ok_for(&m)).await;
        }
        Some(m)
    }

    /// A SUBSCRIBE in this dialog (`user` is the Request-URI and To user).
    fn subscribe_to(
        &mut self,
        user: &str,
        event: &str,
        expires: Option<u32>,
        body: Option<(&str, &str)>,
    ) -> String {
        self.cseq += 1;
        let (call, cseq, agent, t) = (&self.call, self.cseq, &self.agent, self.transport());
        let port = self.port();
        let to_tag = self
            .to_tag
            .as_ref()
            .map_or(String::new(), |t| format!(";tag={t}"));
        let expires = expires.map_or(String::new(), |e| format!("Expires: {e}\r\n"));
        let auth = self
            .auth
            .as_ref()
            .map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let (ctype, body) = body.map_or((String::new(), ""), |(c, b)| {
            (format!("Content-Type: {c}\r\n"), b)
        });
        format!(
            "SUBSCRIBE sip:{user}@facd.test SIP/2.0\r\n\
             Via: SIP/2.0/{t} 127.0.0.1:{port};branch=z9hG4bK-{call}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{agent}@facd.test>;tag=phone-{call}\r\n\
             To: <sip:{user}@facd.test>{to_tag}\r\n\
             Call-ID: {call}\r\n\
             CSeq: {cseq} SUBSCRIBE\r\n\
             Contact: <sip:{agent}@127.0.0.1:{port};transport={tl}>\r\n\
             Event: {event}\r\n\
             Accept: {CT}\r\n\
             {expires}{auth}{ctype}\
             Content-Length: {len}\r\n\r\n{body}",
            tl = t.to_ascii_lowercase(),
            len = body.len()
        )
    }

    /// Sends a SUBSCRIBE to the agent's own address and returns the final response.
    async fn subscribe(&mut self, expires: Option<u32>, body: Option<&str>) -> Msg {
        let user = self.agent.clone();
        let m = self.subscribe_to(&user, "as-feature-event", expires, body.map(|b| (CT, b)));
        self.request(&m).await
    }

    /// Sends `m` and returns its final response (NOTIFYs meanwhile are kept).
    async fn request(&mut self, m: &str) -> Msg {
        self.send(m).await;
        let cseq = format!("{} SUBSCRIBE", self.cseq);
        loop {
            let r = self
                .recv_within(3000)
                .await
                .expect("no response within 3 s");
            if r.method() == "NOTIFY" {
                self.notifies.push_back(r);
            } else if r.status() >= 200 && r.header("CSeq").as_deref() == Some(&cseq) {
                if r.status() == 200 && self.to_tag.is_none() {
                    self.to_tag = r.to_tag();
                }
                return r;
            }
        }
    }

    /// The next NOTIFY with a CSeq above `after` (retransmissions skipped).
    async fn notify_after(&mut self, after: u32) -> Msg {
        loop {
            let m = match self.notifies.pop_front() {
                Some(m) => m,
                None => self.recv_within(8000).await.expect("no NOTIFY within 8 s"),
            };
            if m.method() == "NOTIFY" && cseq_of(&m) > after {
                return m;
            }
        }
    }
}

fn cseq_of(m: &Msg) -> u32 {
    m.header("CSeq")
        .and_then(|c| c.split(' ').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn agent_state(m: &Msg) -> String {
    let b = m.body();
    let start = b.find("<agentState>").map(|i| i + 12).unwrap_or(0);
    let end = b.find("</agentState>").unwrap_or(0);
    b.get(start..end).unwrap_or("").to_string()
}

/// Dials a star code as `agent` from a separate UDP client and checks the 200.
async fn dial(s: &TestServer, code: &str, agent: &str, call: &str) {
    let c = Udp::new(s.udp).await;
    c.send(&Req::invite(
        code,
        agent,
        call,
        &format!("z9hG4bK-{call}"),
        "UDP",
        c.port(),
    ))
    .await;
    let r = c.recv_final_for(call).await;
    assert_eq!(r.status(), 200, "{}", r.raw);
    let tag = r.to_tag().unwrap();
    c.send(&Req::ack(code, agent, call, &tag, "UDP", c.port()))
        .await;
    // facd hangs up after confirm_ms: answer its BYE so nothing lingers.
    while let Some(m) = c.recv_within(2000).await {
        if m.method() == "BYE" {
            c.send(&Req::ok_for(&m)).await;
            break;
        }
    }
}

async fn whole_life(tcp: bool) {
    let s = TestServer::start(&config("")).await;
    let mut p = Phone::new(&s, tcp, "1001", if tcp { "life-tcp" } else { "life-udp" }).await;

    // Subscribe: 200 with the granted Expires, then the state (logged out).
    let ok = p.subscribe(Some(600), None).await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(ok.header("Expires").as_deref(), Some("600"));
    assert!(ok.header("Contact").is_some());
    let n1 = p.notify_after(0).await;
    assert_eq!(cseq_of(&n1), 1);
    assert!(
        n1.start_line().starts_with("NOTIFY sip:1001@127.0.0.1:"),
        "{}",
        n1.raw
    );
    assert_eq!(n1.header("Event").as_deref(), Some("as-feature-event"));
    assert_eq!(
        n1.header("Subscription-State").as_deref(),
        Some("active;expires=600")
    );
    assert_eq!(n1.header("Content-Type").as_deref(), Some(CT));
    assert!(n1.body().contains(NS), "{}", n1.body());
    assert_eq!(agent_state(&n1), "agentNull");
    // The NOTIFY is in the dialog: our tag is its From tag, the phone's its To tag.
    assert!(n1
        .header("From")
        .unwrap()
        .contains(&format!("tag={}", p.to_tag.clone().unwrap())));
    assert!(n1.header("To").unwrap().contains("tag=phone-"));
    assert_eq!(n1.header("Call-ID").as_deref(), Some(p.call.as_str()));

    // Another call changes the state: a NOTIFY follows.
    dial(&s, "*38", "1001", "login-1").await;
    let n2 = p.notify_after(1).await;
    assert_eq!(cseq_of(&n2), 2);
    assert_eq!(agent_state(&n2), "agentReady", "8000 is auto-ready");
    dial(&s, "*37*1", "1001", "nr-1").await;
    let n3 = p.notify_after(2).await;
    assert_eq!(agent_state(&n3), "agentNotReady");
    assert!(
        n3.body()
            .contains("<pri:AgentNotReadyReasonValue>1</pri:AgentNotReadyReasonValue>"),
        "{}",
        n3.body()
    );

    // Refresh: a shorter time, and a NOTIFY right away.
    let ok = p.subscribe(Some(120), None).await;
    assert_eq!(ok.header("Expires").as_deref(), Some("120"));
    let n4 = p.notify_after(3).await;
    assert_eq!(
        n4.header("Subscription-State").as_deref(),
        Some("active;expires=120")
    );
    assert_eq!(agent_state(&n4), "agentNotReady");

    // SetAgentState in a refresh: applied to all the agent's queues with
    // cause feature-sync, then the 200 and the NOTIFY.
    let mut events = s.hub.subscribe();
    let ok = p
        .subscribe(Some(120), Some(&set_agent_state("ready", None)))
        .await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let n5 = p.notify_after(4).await;
    assert_eq!(agent_state(&n5), "agentReady");
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.agent.as_str(), ev.cause), ("1001", Cause::FeatureSync));
    let view = s.core.query(|e| e.agent("1001").unwrap()).await.unwrap();
    assert!(view.queues.iter().all(|q| q.state == AgentState::Ready));
    // No second NOTIFY for the same state.
    assert!(p.recv_within(300).await.is_none());

    // A refused SetAgentState leaves everything as it was.
    let r = p
        .subscribe(Some(120), Some(&set_agent_state("notReady", Some(42))))
        .await;
    assert_eq!((r.status(), r.reason()), (404, "Unknown Reason"));

    // Unsubscribe: 200 Expires 0, a last NOTIFY, then the dialog is gone.
    let ok = p.subscribe(Some(0), None).await;
    assert_eq!(ok.header("Expires").as_deref(), Some("0"));
    let last = p.notify_after(5).await;
    assert_eq!(
        last.header("Subscription-State").as_deref(),
        Some("terminated;reason=timeout")
    );
    assert_eq!(agent_state(&last), "agentReady");
    let r = p.subscribe(Some(120), None).await;
    assert_eq!(r.status(), 481, "{}", r.raw);
    dial(&s, "*39", "1001", "logout-1").await;
    assert!(
        p.recv_within(300).await.is_none(),
        "no NOTIFY after the end"
    );
    s.stop().await;
}

#[tokio::test]
async fn subscribe_notify_refresh_unsubscribe_udp() {
    whole_life(false).await;
}

#[tokio::test]
async fn subscribe_notify_refresh_unsubscribe_tcp() {
    whole_life(true).await;
}

#[tokio::test]
async fn expiry_ends_with_a_terminating_notify() {
    let s = TestServer::start(&config("min_expires = 1\ndefault_expires = 1")).await;
    for tcp in [false, true] {
        let mut p = Phone::new(&s, tcp, "1002", &format!("exp-{tcp}")).await;
        let ok = p.subscribe(None, None).await;
        assert_eq!(ok.header("Expires").as_deref(), Some("1"), "the default");
        let n = p.notify_after(0).await;
        assert_eq!(
            n.header("Subscription-State").as_deref(),
            Some("active;expires=1")
        );
        let end = p.notify_after(1).await;
        assert_eq!(
            end.header("Subscription-State").as_deref(),
            Some("terminated;reason=timeout")
        );
        assert_eq!(p.subscribe(Some(60), None).await.status(), 481);
    }
    s.stop().await;
}

#[tokio::test]
async fn a_phone_that_stops_answering_notifies_is_dropped() {
    // T1 = 50 ms: Timer F = 3.2 s.
    let s = TestServer::start(&format!("{}\n[subscribe]\n", base_config(""))).await;
    for tcp in [false, true] {
        let mut p = Phone::new(&s, tcp, "1001", &format!("silent-{tcp}")).await;
        p.answer = false;
        assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
        let first = p.notify_after(0).await;
        // Retransmitted over UDP (Timer E), sent once over TCP.
        let mut copies = 0;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(3500) {
            if let Some(m) = p.recv_within(200).await {
                assert_eq!(cseq_of(&m), cseq_of(&first));
                copies += 1;
            }
        }
        if tcp {
            assert_eq!(copies, 0);
        } else {
            assert!(copies >= 5, "{copies} retransmissions");
        }
        // Timer F fired: the subscription is gone, no final NOTIFY to a dead phone.
        p.answer = true;
        let r = p.subscribe(Some(600), None).await;
        assert_eq!(
            (r.status(), r.reason()),
            (481, "Subscription Does Not Exist")
        );
        // A NOTIFY answered 481 ends it too.
        let mut q = Phone::new(&s, tcp, "1001", &format!("gone-{tcp}")).await;
        q.answer = false;
        assert_eq!(q.subscribe(Some(600), None).await.status(), 200);
        let n = q.notify_after(0).await;
        q.send(&Req::ok_for(&n).replace("200 OK", "481 Call/Transaction Does Not Exist"))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.answer = true;
        assert_eq!(q.subscribe(Some(600), None).await.status(), 481);
    }
    s.stop().await;
}

#[tokio::test]
async fn refusals_have_clear_statuses() {
    let s = TestServer::start(&config("min_expires = 60")).await;
    for tcp in [false, true] {
        let mut p = Phone::new(&s, tcp, "1001", &format!("err-{tcp}")).await;
        // 489 for another package, with the one we have.
        let m = p.subscribe_to("1001", "presence", Some(600), None);
        let r = p.request(&m).await;
        assert_eq!((r.status(), r.reason()), (489, "Bad Event"));
        assert_eq!(
            r.header("Allow-Events").as_deref(),
            Some("as-feature-event")
        );
        // 423 below the minimum.
        let r = p.subscribe(Some(59), None).await;
        assert_eq!((r.status(), r.reason()), (423, "Interval Too Brief"));
        assert_eq!(r.header("Min-Expires").as_deref(), Some("60"));
        // Above the maximum: cut to it.
        let mut q = Phone::new(&s, tcp, "1001", &format!("max-{tcp}")).await;
        assert_eq!(
            q.subscribe(Some(999_999), None)
                .await
                .header("Expires")
                .as_deref(),
            Some("3600")
        );
        // 415 for another body type, with Accept.
        let m = p.subscribe_to(
            "1001",
            "as-feature-event",
            Some(600),
            Some(("application/pidf+xml", "<presence/>")),
        );
        let r = p.request(&m).await;
        assert_eq!((r.status(), r.reason()), (415, "Unsupported Media Type"));
        assert_eq!(r.header("Accept").as_deref(), Some(CT));
        // 400 for XML that is broken or asks for something else.
        let r = p.subscribe(Some(600), Some("<SetAgentState><oops")).await;
        assert_eq!(
            (r.status(), r.reason()),
            (400, "Bad Request - Malformed XML")
        );
        let r = p
            .subscribe(
                Some(600),
                Some("<SetDoNotDisturb><doNotDisturbOn>true</doNotDisturbOn></SetDoNotDisturb>"),
            )
            .await;
        assert_eq!(
            (r.status(), r.reason()),
            (400, "Bad Request - Only SetAgentState Is Supported")
        );
        // 403 for another agent's address.
        let m = p.subscribe_to("1002", "as-feature-event", Some(600), None);
        let r = p.request(&m).await;
        assert_eq!(
            (r.status(), r.reason()),
            (403, "Forbidden - Subscribe To Your Own Address")
        );
        // An engine refusal maps to its SIP status; nothing subscribed.
        let r = p
            .subscribe(Some(600), Some(&set_agent_state("ready", None)))
            .await;
        assert_eq!((r.status(), r.reason()), (403, "Not Logged In"));
        // 400 for a malformed Expires.
        let m = p
            .subscribe_to("1001", "as-feature-event", None, None)
            .replace("Accept:", "Expires: soon\r\nAccept:");
        let r = p.request(&m).await;
        assert_eq!(
            (r.status(), r.reason()),
            (400, "Bad Request - Malformed Expires")
        );
        // An in-dialog SUBSCRIBE for no subscription.
        p.to_tag = Some("nosuch".into());
        assert_eq!(p.subscribe(Some(600), None).await.status(), 481);
        // Nothing above left a subscription behind: no NOTIFY ever came.
        assert!(p.notifies.is_empty());
    }
    // OPTIONS advertises the package and the method.
    let c = Udp::new(s.udp).await;
    c.send(&Req::options(c.port(), "z9hG4bK-opt-sub")).await;
    let r = c.recv().await;
    assert_eq!(
        r.header("Allow-Events").as_deref(),
        Some("as-feature-event")
    );
    assert!(r.header("Allow").unwrap().contains("SUBSCRIBE"));
    s.stop().await;
}

#[tokio::test]
async fn subscribe_is_authenticated_like_star_codes() {
    let s = TestServer::start(&config("").replace("required = false", "required = true")).await;
    for tcp in [false, true] {
        let mut p = Phone::new(&s, tcp, "1001", &format!("auth-{tcp}")).await;
        let ch = p.subscribe(Some(600), None).await;
        assert_eq!(ch.status(), 401, "{}", ch.raw);
        let c = parse_challenge(ch.headers("WWW-Authenticate")[0].as_bytes()).unwrap();
        // A wrong password: 403, like INVITEs.
        p.auth = Some(c.authorization(
            "SUBSCRIBE",
            "sip:1001@facd.test",
            "1001",
            "nope",
            "0a4f113b",
            1,
        ));
        assert_eq!(p.subscribe(Some(600), None).await.status(), 403);
        // Bob's right credentials for Alice's address: 403 too.
        p.auth = None;
        let ch = p.subscribe(Some(600), None).await;
        let c = parse_challenge(ch.headers("WWW-Authenticate")[0].as_bytes()).unwrap();
        p.auth = Some(c.authorization(
            "SUBSCRIBE",
            "sip:1001@facd.test",
            "1002",
            "bob-secret",
            "0a4f113b",
            1,
        ));
        assert_eq!(p.subscribe(Some(600), None).await.status(), 403);
        // The right ones: 200 and the NOTIFY.
        p.auth = None;
        let ch = p.subscribe(Some(600), None).await;
        assert_eq!(ch.status(), 401);
        let c = parse_challenge(ch.headers("WWW-Authenticate")[0].as_bytes()).unwrap();
        p.auth = Some(c.authorization(
            "SUBSCRIBE",
            "sip:1001@facd.test",
            "1001",
            "alice-secret",
            "0a4f113b",
            1,
        ));
        let ok = p.subscribe(Some(600), None).await;
        assert_eq!(ok.status(), 200, "{}", ok.raw);
        assert_eq!(agent_state(&p.notify_after(0).await), "agentNull");
        // The refresh authenticates again (nonce count 2).
        p.auth = Some(c.authorization(
            "SUBSCRIBE",
            "sip:1001@facd.test",
            "1001",
            "alice-secret",
            "0a4f113b",
            2,
        ));
        let ok = p
            .subscribe(Some(600), Some(&set_agent_state("loggedOn", None)))
            .await;
        assert_eq!(ok.status(), 200, "{}", ok.raw);
        assert_eq!(agent_state(&p.notify_after(1).await), "agentReady");
        p.auth = Some(c.authorization(
            "SUBSCRIBE",
            "sip:1001@facd.test",
            "1001",
            "alice-secret",
            "0a4f113b",
            3,
        ));
        p.subscribe(Some(600), Some(&set_agent_state("loggedOff", None)))
            .await;
        assert_eq!(agent_state(&p.notify_after(2).await), "agentNull");
    }
    s.stop().await;
}

#[tokio::test]
async fn subscriptions_do_not_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config("");
    let s = TestServer::start_with_storage(&cfg, &data, tempfile::tempdir().unwrap()).await;
    let mut p = Phone::new(&s, false, "1001", "restart").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    p.notify_after(0).await;
    dial(&s, "*38", "1001", "restart-login").await;
    assert_eq!(agent_state(&p.notify_after(1).await), "agentReady");
    let port = s.udp.port();
    // A graceful stop tells the phone to subscribe again.
    s.stop().await;
    let bye = p.notify_after(2).await;
    assert_eq!(
        bye.header("Subscription-State").as_deref(),
        Some("terminated;reason=deactivated")
    );
    // After the restart the old dialog is unknown (481) and a new
    // SUBSCRIBE gets the state, which did survive.
    let cfg2 = cfg.replace("udp:127.0.0.1:0", &format!("udp:127.0.0.1:{port}"));
    let s = TestServer::start_with_storage(&cfg2, &data, tempfile::tempdir().unwrap()).await;
    let r = p.subscribe(Some(600), None).await;
    assert_eq!(r.status(), 481, "{}", r.raw);
    p.to_tag = None;
    p.call = "restart-2".into();
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    assert_eq!(agent_state(&p.notify_after(0).await), "agentReady");
    s.stop().await;
}

#[tokio::test]
async fn changes_from_outside_sip_reach_the_phone() {
    use facd::engine::{CallKind, Command, Target};
    // Billing (8002) has a 5 s wrap-up.
    let s = TestServer::start(&config("")).await;
    let mut p = Phone::new(&s, false, "1002", "api").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    assert_eq!(agent_state(&p.notify_after(0).await), "agentNull");
    let apply = |cmd: Command, cause: Cause| {
        let core = s.core.clone();
        async move { core.apply(cmd, cause).await.unwrap().unwrap() }
    };
    apply(
        Command::Login {
            agent: "1002".into(),
            target: Target::Queue("8002".into()),
        },
        Cause::Api,
    )
    .await;
    // Billing is auto-ready.
    assert_eq!(agent_state(&p.notify_after(1).await), "agentReady");
    apply(
        Command::NotReady {
            agent: "1002".into(),
            target: Target::All,
            reason: None,
        },
        Cause::Api,
    )
    .await;
    assert_eq!(agent_state(&p.notify_after(2).await), "agentNotReady");
    apply(
        Command::Ready {
            agent: "1002".into(),
            target: Target::All,
        },
        Cause::Api,
    )
    .await;
    assert_eq!(agent_state(&p.notify_after(3).await), "agentReady");
    apply(
        Command::CallStart {
            agent: "1002".into(),
            call_id: "c1".into(),
            kind: CallKind::Acd {
                queue: "8002".into(),
            },
        },
        Cause::Call,
    )
    .await;
    assert_eq!(agent_state(&p.notify_after(4).await), "agentBusy");
    apply(
        Command::CallEnd {
            agent: "1002".into(),
            call_id: "c1".into(),
        },
        Cause::Call,
    )
    .await;
    assert_eq!(
        agent_state(&p.notify_after(5).await),
        "agentWorkingAfterCall"
    );
    // The wrap-up timer ends it: agentReady again without anyone asking.
    let n = p.notify_after(6).await;
    assert_eq!(agent_state(&n), "agentReady", "{}", n.raw);
    s.stop().await;
}

#[tokio::test]
async fn a_refresh_over_a_new_tcp_connection_moves_the_notifies() {
    let s = TestServer::start(&config("")).await;
    let mut p = Phone::new(&s, true, "1001", "moved").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    p.notify_after(0).await;
    // The phone's connection drops; it reconnects and refreshes.
    p.link = Link::Tcp(Tcp::connect(s.tcp).await);
    let ok = p.subscribe(Some(600), None).await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let n = p.notify_after(1).await;
    assert!(
        n.start_line().starts_with(&format!(
            "NOTIFY sip:1001@127.0.0.1:{};transport=tcp ",
            p.port()
        )),
        "{}",
        n.raw
    );
    // Later changes follow the new connection.
    dial(&s, "*38", "1001", "moved-login").await;
    assert_eq!(agent_state(&p.notify_after(2).await), "agentReady");
    s.stop().await;
}

#[tokio::test]
async fn a_new_subscription_beyond_the_per_agent_cap_ends_the_oldest() {
    let s = TestServer::start(&config("max_per_agent = 1")).await;
    let mut old = Phone::new(&s, false, "1003", "stale").await;
    assert_eq!(old.subscribe(Some(600), None).await.status(), 200);
    old.notify_after(0).await;
    let mut new = Phone::new(&s, false, "1003", "fresh").await;
    assert_eq!(new.subscribe(Some(600), None).await.status(), 200);
    new.notify_after(0).await;
    let end = old.notify_after(1).await;
    assert_eq!(
        end.header("Subscription-State").as_deref(),
        Some("terminated;reason=rejected")
    );
    assert_eq!(old.subscribe(Some(600), None).await.status(), 481);
    // Another agent naming the live dialog (its own address in To) cannot
    // refresh or end it.
    let mut intruder = Phone::new(&s, false, "1001", "fresh").await;
    intruder.to_tag = new.to_tag.clone();
    let m = intruder.subscribe_to("1001", "as-feature-event", Some(0), None);
    assert_eq!(intruder.request(&m).await.status(), 481);
    dial(&s, "*38", "1003", "cap-login").await;
    assert_eq!(agent_state(&new.notify_after(1).await), "agentNotReady");
    s.stop().await;
}
