//! Feature-key subscriptions (`as-feature-event`, SPEC §5, RFC 6665)
//! against the running server over UDP and TCP: the first NOTIFY (every
//! feature, multipart or one NOTIFY each), a NOTIFY per change with the
//! per-state root elements phones dispatch on, the login handshake,
//! refresh, `Expires: 0`, expiry, a phone that stops answering (Timer F),
//! SetAgentState, SetDoNotDisturb, SetForwarding, 423/489/415/400/403/481,
//! digest authentication, and a subscription carried across a restart.

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
    /// The CSeq of the last NOTIFY returned by [`Phone::next`].
    seen: u32,
    /// Send `Accept: application/x-as-feature-event+xml` (as the AudioCodes
    /// SDK does): no multipart, one NOTIFY per feature.
    accept: bool,
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
            seen: 0,
            accept: false,
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
        let accept = if self.accept {
            format!("Accept: {CT}\r\n")
        } else {
            String::new()
        };
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
             {accept}{expires}{auth}{ctype}\
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

    /// The next NOTIFY with a CSeq above the last one returned
    /// (retransmissions skipped; a CSeq that went down fails the test).
    async fn next(&mut self) -> Msg {
        loop {
            let m = match self.notifies.pop_front() {
                Some(m) => m,
                None => self.recv_within(8000).await.expect("no NOTIFY within 8 s"),
            };
            if m.method() == "NOTIFY" && cseq_of(&m) > self.seen {
                self.seen = cseq_of(&m);
                return m;
            }
        }
    }

    /// A new dialog: a new Call-ID, no To tag, CSeqs counted afresh.
    fn new_dialog(&mut self, call: &str) {
        self.call = call.into();
        self.to_tag = None;
        self.seen = 0;
    }
}

fn cseq_of(m: &Msg) -> u32 {
    m.header("CSeq")
        .and_then(|c| c.split(' ').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The root element of the NOTIFY's ACD event (`AgentReadyEvent`, …), or
/// of its first document: the name phones dispatch on.
fn agent_state(m: &Msg) -> String {
    let b = m.body();
    let at = b
        .find("<Agent")
        .or_else(|| b.find("<DoNotDisturbEvent"))
        .or_else(|| b.find("<ForwardingEvent"));
    at.and_then(|i| b[i + 1..].split([' ', '>']).next())
        .unwrap_or("")
        .to_string()
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

    // Subscribe: 200 with the granted Expires, then every feature's state
    // in one multipart/mixed NOTIFY (RFC 2046 §5.1), the ACD key first.
    let ok = p.subscribe(Some(600), None).await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    assert_eq!(ok.header("Expires").as_deref(), Some("600"));
    assert!(ok.header("Contact").is_some());
    let n1 = p.next().await;
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
    let ctype = n1.header("Content-Type").unwrap();
    let boundary = ctype
        .strip_prefix("multipart/mixed;boundary=")
        .unwrap_or_else(|| panic!("{ctype}"));
    let body = n1.body();
    assert_eq!(
        body.matches(&format!("--{boundary}\r\n")).count(),
        5,
        "{body}"
    );
    assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");
    assert_eq!(body.matches(&format!("Content-Type: {CT}\r\n")).count(), 5);
    assert!(body.contains(NS), "{body}");
    assert_eq!(agent_state(&n1), "AgentLoggedOffEvent");
    assert!(body.contains("<doNotDisturbOn>false</doNotDisturbOn>"));
    assert_eq!(
        body.matches("<forwardStatus>false</forwardStatus>").count(),
        3
    );
    // The NOTIFY is in the dialog: our tag is its From tag, the phone's its To tag.
    assert!(n1
        .header("From")
        .unwrap()
        .contains(&format!("tag={}", p.to_tag.clone().unwrap())));
    assert!(n1.header("To").unwrap().contains("tag=phone-"));
    assert_eq!(n1.header("Call-ID").as_deref(), Some(p.call.as_str()));

    // Another call logs the agent in: AgentLoggedOnEvent, then the state
    // the login produced, each a plain as-feature-event body.
    dial(&s, "*38", "1001", "login-1").await;
    let n2 = p.next().await;
    assert_eq!(cseq_of(&n2), cseq_of(&n1) + 1);
    assert_eq!(n2.header("Content-Type").as_deref(), Some(CT));
    assert_eq!(agent_state(&n2), "AgentLoggedOnEvent");
    let n2 = p.next().await;
    assert_eq!(agent_state(&n2), "AgentReadyEvent", "8000 is auto-ready");
    dial(&s, "*37*1", "1001", "nr-1").await;
    let n3 = p.next().await;
    assert_eq!(agent_state(&n3), "AgentNotReadyEvent");
    assert!(
        n3.body().contains(
            "<extensions>\r\n<privateData>\r\n<private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\r\n<pri:AgentNotReadyReasonValue>1</pri:AgentNotReadyReasonValue>"
        ),
        "{}",
        n3.body()
    );

    // Refresh: a shorter time, and a NOTIFY with the whole state right
    // away (never an AgentLoggedOnEvent).
    let ok = p.subscribe(Some(120), None).await;
    assert_eq!(ok.header("Expires").as_deref(), Some("120"));
    let n4 = p.next().await;
    assert_eq!(
        n4.header("Subscription-State").as_deref(),
        Some("active;expires=120")
    );
    assert_eq!(agent_state(&n4), "AgentNotReadyEvent");
    assert!(!n4.body().contains("AgentLoggedOnEvent"));

    // SetAgentState in a refresh: applied to all the agent's queues with
    // cause feature-sync, then the 200 and the NOTIFY.
    let mut events = s.hub.subscribe();
    let ok = p
        .subscribe(Some(120), Some(&set_agent_state("ready", None)))
        .await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let n5 = p.next().await;
    assert_eq!(agent_state(&n5), "AgentReadyEvent");
    let ev = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.agent.as_str(), ev.cause), ("1001", Cause::FeatureSync));
    let view = s.core.query(|e| e.agent("1001").unwrap()).await.unwrap();
    assert!(view.queues.iter().all(|q| q.state == AgentState::Ready));
    // No second NOTIFY for the same state.
    assert!(p.recv_within(300).await.is_none());
    // The same again: nothing changes, and the state is told (a Yealink
    // shows "ACD login timeout" after 5 s without an event).
    let ok = p
        .subscribe(Some(120), Some(&set_agent_state("ready", None)))
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");

    // A refused SetAgentState leaves everything as it was.
    let r = p
        .subscribe(Some(120), Some(&set_agent_state("notReady", Some(42))))
        .await;
    assert_eq!((r.status(), r.reason()), (404, "Unknown Reason"));

    // Unsubscribe: 200 Expires 0, a last NOTIFY, then the dialog is gone.
    let ok = p.subscribe(Some(0), None).await;
    assert_eq!(ok.header("Expires").as_deref(), Some("0"));
    let last = p.next().await;
    assert_eq!(
        last.header("Subscription-State").as_deref(),
        Some("terminated;reason=timeout")
    );
    assert_eq!(agent_state(&last), "AgentReadyEvent");
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
        let n = p.next().await;
        assert_eq!(
            n.header("Subscription-State").as_deref(),
            Some("active;expires=1")
        );
        let end = p.next().await;
        assert_eq!(
            end.header("Subscription-State").as_deref(),
            Some("terminated;reason=timeout")
        );
        // Gone: a change reaches the phone no more.
        dial(&s, "*38", "1002", &format!("exp-login-{tcp}")).await;
        assert!(p.recv_within(300).await.is_none());
        dial(&s, "*39", "1002", &format!("exp-logout-{tcp}")).await;
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
        let first = p.next().await;
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
        // Timer F fired: the subscription is gone, no final NOTIFY to a
        // dead phone, and a change reaches it no more.
        p.answer = true;
        dial(&s, "*38", "1001", &format!("silent-login-{tcp}")).await;
        assert!(p.recv_within(300).await.is_none());
        // A NOTIFY answered 481 ends it too.
        let mut q = Phone::new(&s, tcp, "1001", &format!("gone-{tcp}")).await;
        q.answer = false;
        assert_eq!(q.subscribe(Some(600), None).await.status(), 200);
        let n = q.next().await;
        q.send(&Req::ok_for(&n).replace("200 OK", "481 Call/Transaction Does Not Exist"))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.answer = true;
        dial(&s, "*39", "1001", &format!("gone-logout-{tcp}")).await;
        assert!(q.recv_within(300).await.is_none());
    }
    s.stop().await;
}

#[tokio::test]
async fn refusals_have_clear_statuses() {
    let s = TestServer::start(&config("min_expires = 60")).await;
    for tcp in [false, true] {
        let mut p = Phone::new(&s, tcp, "1001", &format!("err-{tcp}")).await;
        // 489 for another package, with the ones we have.
        let m = p.subscribe_to("1001", "message-summary", Some(600), None);
        let r = p.request(&m).await;
        assert_eq!((r.status(), r.reason()), (489, "Bad Event"));
        assert_eq!(
            r.header("Allow-Events").as_deref(),
            Some("as-feature-event, dialog, presence")
        );
        // A BLF SUBSCRIBE to an address that is no lamp.
        let m = p.subscribe_to("1001", "presence", Some(600), None);
        let r = p.request(&m).await;
        assert_eq!((r.status(), r.reason()), (404, "Not Found"));
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
            (403, "Forbidden - Do Not Disturb Not Configured")
        );
        let r = p.subscribe(Some(600), Some("<GetAgentState/>")).await;
        assert_eq!(
            (r.status(), r.reason()),
            (400, "Bad Request - Unknown Feature Request")
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
            .replace("Event:", "Expires: soon\r\nEvent:");
        let r = p.request(&m).await;
        assert_eq!(
            (r.status(), r.reason()),
            (400, "Bad Request - Malformed Expires")
        );
        // Nothing above left a subscription behind: no NOTIFY ever came.
        assert!(p.notifies.is_empty());
        // An in-dialog SUBSCRIBE for no subscription (facd restarted) takes
        // it up again: 200 and the whole state.
        p.to_tag = Some("nosuch".into());
        let r = p.subscribe(Some(0), None).await;
        assert_eq!(r.status(), 200, "{}", r.raw);
        assert_eq!(r.to_tag().as_deref(), Some("nosuch"));
        let n = p.next().await;
        assert_eq!(
            n.header("Subscription-State").as_deref(),
            Some("terminated;reason=timeout")
        );
    }
    // OPTIONS advertises the package and the method.
    let c = Udp::new(s.udp).await;
    c.send(&Req::options(c.port(), "z9hG4bK-opt-sub")).await;
    let r = c.recv().await;
    assert_eq!(
        r.header("Allow-Events").as_deref(),
        Some("as-feature-event, dialog, presence")
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
        assert_eq!(agent_state(&p.next().await), "AgentLoggedOffEvent");
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
        assert_eq!(agent_state(&p.next().await), "AgentLoggedOnEvent");
        assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");
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
        assert_eq!(agent_state(&p.next().await), "AgentLoggedOffEvent");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_refresh_after_a_restart_takes_the_subscription_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config("");
    let s = TestServer::start_with_storage(&cfg, &data, tempfile::tempdir().unwrap()).await;
    let port = s.udp.port();
    dial(&s, "*38", "1001", "restart-login").await;
    let mut p = Phone::new(&s, false, "1001", "restart").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    let before = p.next().await;
    assert_eq!(agent_state(&before), "AgentReadyEvent");
    // A graceful stop tells the phone to subscribe again (RFC 6665
    // §4.1.3); a phone that refreshes its old dialog instead (or one that
    // heard nothing: a crash) still gets its subscription back.
    s.stop().await;
    let bye = p.next().await;
    assert_eq!(
        bye.header("Subscription-State").as_deref(),
        Some("terminated;reason=deactivated")
    );
    // CSeqs start from the seconds since 2024: the two NOTIFYs above need
    // two seconds to pass before the restart's count is above them.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let cfg2 = cfg.replace("udp:127.0.0.1:0", &format!("udp:127.0.0.1:{port}"));
    let s = TestServer::start_with_storage(&cfg2, &data, tempfile::tempdir().unwrap()).await;
    let r = p.subscribe(Some(600), None).await;
    assert_eq!(r.status(), 200, "{}", r.raw);
    // `next` skips a CSeq that is not above the last one: this NOTIFY is
    // above the terminating one before the restart.
    let n = p.next().await;
    assert!(
        cseq_of(&n) > cseq_of(&bye),
        "{} then {}",
        cseq_of(&bye),
        cseq_of(&n)
    );
    assert_eq!(agent_state(&n), "AgentReadyEvent", "the durable state");
    // And it lives on: a change reaches the phone.
    dial(&s, "*39", "1001", "restart-logout").await;
    assert_eq!(agent_state(&p.next().await), "AgentLoggedOffEvent");
    s.stop().await;
}

#[tokio::test]
async fn changes_from_outside_sip_reach_the_phone() {
    use facd::engine::{CallKind, Command, Target};
    // Billing (8002) has a 5 s wrap-up.
    let s = TestServer::start(&config("")).await;
    let mut p = Phone::new(&s, false, "1002", "api").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    assert_eq!(agent_state(&p.next().await), "AgentLoggedOffEvent");
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
    assert_eq!(agent_state(&p.next().await), "AgentLoggedOnEvent");
    assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");
    apply(
        Command::NotReady {
            agent: "1002".into(),
            target: Target::All,
            reason: None,
        },
        Cause::Api,
    )
    .await;
    assert_eq!(agent_state(&p.next().await), "AgentNotReadyEvent");
    apply(
        Command::Ready {
            agent: "1002".into(),
            target: Target::All,
        },
        Cause::Api,
    )
    .await;
    assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");
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
    // A call is no ACD state: the key stays READY (no busy event).
    assert!(p.recv_within(300).await.is_none());
    apply(
        Command::CallEnd {
            agent: "1002".into(),
            call_id: "c1".into(),
        },
        Cause::Call,
    )
    .await;
    assert_eq!(agent_state(&p.next().await), "AgentWorkingAfterCallEvent");
    // The wrap-up timer ends it: READY again without anyone asking.
    let n = p.next().await;
    assert_eq!(agent_state(&n), "AgentReadyEvent", "{}", n.raw);
    s.stop().await;
}

#[tokio::test]
async fn a_refresh_over_a_new_tcp_connection_moves_the_notifies() {
    let s = TestServer::start(&config("")).await;
    let mut p = Phone::new(&s, true, "1001", "moved").await;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    p.next().await;
    // The phone's connection drops; it reconnects and refreshes.
    p.link = Link::Tcp(Tcp::connect(s.tcp).await);
    let ok = p.subscribe(Some(600), None).await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let n = p.next().await;
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
    assert_eq!(agent_state(&p.next().await), "AgentLoggedOnEvent");
    assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");
    s.stop().await;
}

#[tokio::test]
async fn a_new_subscription_beyond_the_per_agent_cap_ends_the_oldest() {
    let s = TestServer::start(&config("max_per_agent = 1")).await;
    let mut old = Phone::new(&s, false, "1003", "stale").await;
    assert_eq!(old.subscribe(Some(600), None).await.status(), 200);
    old.next().await;
    let mut new = Phone::new(&s, false, "1003", "fresh").await;
    assert_eq!(new.subscribe(Some(600), None).await.status(), 200);
    new.next().await;
    let end = old.next().await;
    assert_eq!(
        end.header("Subscription-State").as_deref(),
        Some("terminated;reason=rejected")
    );
    // Another agent naming the live dialog (its own address in To) cannot
    // refresh or end it.
    let mut intruder = Phone::new(&s, false, "1001", "fresh").await;
    intruder.to_tag = new.to_tag.clone();
    let m = intruder.subscribe_to("1001", "as-feature-event", Some(0), None);
    assert_eq!(intruder.request(&m).await.status(), 481);
    dial(&s, "*38", "1003", "cap-login").await;
    assert_eq!(agent_state(&new.next().await), "AgentLoggedOnEvent");
    assert_eq!(agent_state(&new.next().await), "AgentNotReadyEvent");
    assert!(
        old.recv_within(300).await.is_none(),
        "the replaced one is gone"
    );
    s.stop().await;
}

/// A phone that does not take multipart (its Accept names only the
/// feature-key type, as the AudioCodes SDK's does) gets one NOTIFY per
/// feature; its DND key makes the agent NOT_READY with the configured
/// reason and back; its forwarding key is told "off".
async fn dnd_and_forwarding(tcp: bool) {
    let cfg = format!("{}\n[feature_keys]\ndnd_reason = \"BREAK\"\n", config(""));
    let s = TestServer::start(&cfg).await;
    dial(&s, "*38", "1001", &format!("dnd-login-{tcp}")).await;
    let mut p = Phone::new(&s, tcp, "1001", &format!("dnd-{tcp}")).await;
    p.accept = true;
    assert_eq!(p.subscribe(Some(600), None).await.status(), 200);
    let mut roots = Vec::new();
    for _ in 0..5 {
        let n = p.next().await;
        assert_eq!(n.header("Content-Type").as_deref(), Some(CT));
        roots.push(agent_state(&n));
    }
    assert_eq!(
        roots,
        [
            "AgentReadyEvent",
            "DoNotDisturbEvent",
            "ForwardingEvent",
            "ForwardingEvent",
            "ForwardingEvent"
        ]
    );
    let dnd = |on: bool| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SetDoNotDisturb {NS}><doNotDisturbOn>{on}</doNotDisturbOn></SetDoNotDisturb>"
        )
    };
    let ok = p.subscribe(Some(600), Some(&dnd(true))).await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let n = p.next().await;
    assert_eq!(agent_state(&n), "DoNotDisturbEvent");
    assert!(n.body().contains("<doNotDisturbOn>true</doNotDisturbOn>"));
    let n = p.next().await;
    assert_eq!(agent_state(&n), "AgentNotReadyEvent");
    assert!(n.body().contains(">1</pri:AgentNotReadyReasonValue>"));
    let view = s.core.query(|e| e.agent("1001").unwrap()).await.unwrap();
    assert!(view
        .queues
        .iter()
        .all(|q| q.state == AgentState::NotReady && q.reason.as_deref() == Some("BREAK")));
    p.subscribe(Some(600), Some(&dnd(false))).await;
    assert!(p.next().await.body().contains("<doNotDisturbOn>false<"));
    assert_eq!(agent_state(&p.next().await), "AgentReadyEvent");
    let fwd = format!(
        "<SetForwarding {NS}><forwardingType>forwardNoAns</forwardingType><activateForward>true</activateForward><forwardDN>2000</forwardDN><ringCount>3</ringCount></SetForwarding>"
    );
    assert_eq!(p.subscribe(Some(600), Some(&fwd)).await.status(), 200);
    let n = p.next().await;
    assert_eq!(agent_state(&n), "ForwardingEvent");
    assert!(n
        .body()
        .contains("<forwardingType>forwardNoAns</forwardingType>"));
    assert!(n.body().contains("<forwardStatus>false</forwardStatus>"));

    // A BLF key on *388000 over the same transport: lit while logged in.
    p.new_dialog(&format!("blf-{tcp}"));
    let m = p.subscribe_to("*388000", "dialog", Some(600), None);
    assert_eq!(p.request(&m).await.status(), 200);
    let n = p.next().await;
    assert_eq!(n.header("Event").as_deref(), Some("dialog"));
    assert!(
        n.body().contains("<state>confirmed</state>"),
        "{}",
        n.body()
    );
    dial(&s, "*398000", "1001", &format!("blf-logout-{tcp}")).await;
    let n = p.next().await;
    assert!(
        n.body().contains("<state>terminated</state>"),
        "{}",
        n.body()
    );
    s.stop().await;
}

#[tokio::test]
async fn dnd_forwarding_and_a_blf_key_udp() {
    dnd_and_forwarding(false).await;
}

#[tokio::test]
async fn dnd_forwarding_and_a_blf_key_tcp() {
    dnd_and_forwarding(true).await;
}
