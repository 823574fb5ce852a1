//! The UAS on a virtual clock, with no sockets: requests go in as parsed
//! messages with a made-up flow, time is a number we move, and what the
//! UAS hands out (transmits, journal orders, events) is read back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::engine::{AgentDef, AgentState, Cause, Command, Model, QueueDef, ReasonDef, Target};
use crate::sip::message::parse_message;
use crate::sip::star_code::Codes;

/// The flow a message came on: a number standing for a socket or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow(u32);

/// A UAS over a virtual clock.
struct Harness {
    uas: Uas<Flow, u32>,
    start: Instant,
    /// Milliseconds since `start`.
    ms: u64,
}

const WALL0: u64 = 1_800_000_000_000;
const PHONE: &str = "127.0.0.1:5062";
const LOCAL: &str = "127.0.0.1:5060";

fn model() -> Model {
    let queue = |n: &str| QueueDef {
        number: n.into(),
        name: format!("Queue {n}"),
        auto_ready: false,
        wrap_up_secs: 0,
        not_ready_after_other_call: false,
    };
    Model {
        queues: vec![queue("8000"), queue("8001")],
        agents: ["1001", "1002"]
            .iter()
            .map(|a| AgentDef {
                extension: (*a).into(),
                name: format!("Agent {a}"),
                queues: vec!["8000".into(), "8001".into()],
            })
            .collect(),
        reasons: vec![ReasonDef {
            code: 1,
            name: "BREAK".into(),
        }],
    }
}

fn config(journal: bool) -> UasConfig {
    UasConfig {
        domain: "facd.test".into(),
        confirm: Duration::from_millis(1000),
        timers: TimerConfig::default(),
        rtp_v4: Some("127.0.0.1:40000".parse().unwrap()),
        rtp_v6: None,
        max_transactions: 1000,
        max_dialogs: 100,
        subscribe: ExpiryBounds {
            min: 60,
            max: 3600,
            default: 600,
            per_agent: 4,
        },
        max_subscriptions: 100,
        journal,
        seed: 7,
    }
}

impl Harness {
    fn new(journal: bool) -> Self {
        let codes = StarCodeParser::new(Codes {
            ready: "*36".into(),
            not_ready: "*37".into(),
            login: "*38".into(),
            logout: "*39".into(),
        });
        Self {
            uas: Uas::new(config(journal), Engine::new(model()), codes, None),
            start: Instant::now(),
            ms: 0,
        }
    }

    fn now(&self) -> Now {
        Now {
            mono: self.start + Duration::from_millis(self.ms),
            wall: WALL0 + self.ms,
        }
    }

    /// Moves the clock and fires what is due.
    fn advance(&mut self, ms: u64) {
        let until = self.ms + ms;
        loop {
            let due = self.uas.poll_timeout(self.now());
            match due {
                Some(t) if t <= self.start + Duration::from_millis(until) => {
                    let at = t.saturating_duration_since(self.start).as_millis() as u64;
                    self.ms = self.ms.max(at);
                    self.uas.handle_timeout(self.now());
                }
                _ => break,
            }
        }
        self.ms = until;
        self.uas.handle_timeout(self.now());
    }

    fn send(&mut self, text: &str, transport: Transport) {
        let msg = parse_message(Bytes::from(text.replace('\n', "\r\n"))).expect("parses");
        let peer = Peer {
            addr: PHONE.parse().unwrap(),
            local: LOCAL.parse().unwrap(),
            transport,
            flow: Flow(if transport == Transport::Tcp { 2 } else { 1 }),
        };
        let now = self.now();
        self.uas.handle(now, Inbound { msg, peer });
    }

    fn udp(&mut self, text: &str) {
        self.send(text, Transport::Udp)
    }

    /// Everything sent since the last call, as text.
    fn sent(&mut self) -> Vec<Transmit<Flow>> {
        std::iter::from_fn(|| self.uas.poll_transmit()).collect()
    }

    fn sent_text(&mut self) -> Vec<String> {
        self.sent()
            .into_iter()
            .map(|t| String::from_utf8_lossy(&t.bytes).into_owned())
            .collect()
    }

    fn journal(&mut self) -> Vec<JournalOrder> {
        std::iter::from_fn(|| self.uas.poll_journal()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.uas.poll_event()).collect()
    }

    fn state(&self, agent: &str, queue: &str) -> AgentState {
        let view = self.uas.engine().agent(agent).expect("agent");
        view.queues
            .iter()
            .find(|q| q.queue == queue)
            .expect("queue")
            .state
    }

    /// The one ticket of the journal writes handed out since the last call.
    fn ticket(&mut self) -> u64 {
        match self.journal().as_slice() {
            [JournalOrder::Append { ticket, record }] => {
                assert!(!record.is_empty());
                *ticket
            }
            other => panic!("expected one append, got {other:?}"),
        }
    }
}

fn invite(user: &str, from: &str, call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{branch};rport\n\
         Max-Forwards: 70\n\
         From: <sip:{from}@127.0.0.1>;tag=ft{call}\n\
         To: <sip:{user}@127.0.0.1>\n\
         Call-ID: {call}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:{from}@127.0.0.1:5062>\n\
         Content-Length: 0\n\n"
    )
}

fn cancel(user: &str, from: &str, call: &str, branch: &str) -> String {
    format!(
        "CANCEL sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{branch};rport\n\
         Max-Forwards: 70\n\
         From: <sip:{from}@127.0.0.1>;tag=ft{call}\n\
         To: <sip:{user}@127.0.0.1>\n\
         Call-ID: {call}\n\
         CSeq: 1 CANCEL\n\
         Content-Length: 0\n\n"
    )
}

fn subscribe(agent: &str, call: &str, to_tag: Option<&str>, cseq: u32, expires: u32) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SUBSCRIBE sip:{agent}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKsub{call}{cseq};rport\n\
         Max-Forwards: 70\n\
         From: <sip:{agent}@127.0.0.1>;tag=ft{call}\n\
         To: <sip:{agent}@127.0.0.1>{to_tag}\n\
         Call-ID: {call}\n\
         CSeq: {cseq} SUBSCRIBE\n\
         Contact: <sip:{agent}@127.0.0.1:5062>\n\
         Event: as-feature-event\n\
         Expires: {expires}\n\
         Content-Length: 0\n\n"
    )
}

/// The response to an outgoing request of ours (a NOTIFY or BYE).
fn response_to(request: &str, status: u16) -> String {
    let header = |name: &str| {
        request
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("{name} in {request}"))
            .to_string()
    };
    format!(
        "SIP/2.0 {status} OK\n{}\n{}\n{};tag=phone\n{}\n{}\nContent-Length: 0\n\n",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq"),
    )
}

fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn statuses(sent: &[String]) -> Vec<u16> {
    sent.iter().filter_map(|t| status_of(t)).collect()
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[test]
fn invite_is_answered_only_once_its_change_is_durable() {
    let mut h = Harness::new(true);
    h.udp(&invite("*388000", "1001", "c1", "a1"));
    // The change is made at once, but nothing final leaves before the write.
    assert_eq!(h.state("1001", "8000"), AgentState::NotReady);
    let before = h.sent_text();
    assert!(
        statuses(&before).iter().all(|s| *s < 200),
        "no final answer before the journal write: {before:?}"
    );
    assert!(h.events().is_empty(), "no event before the write");
    let ticket = h.ticket();
    assert_eq!(h.uas.pending_writes(), 1);

    h.uas.on_durable::<&str>(h.now(), ticket, Ok(()));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    let ok = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    assert_eq!(status_of(&ok), Some(200));
    assert_eq!(
        header(&ok, "X-Agent-State"),
        Some("queue=8000;state=NOT_READY")
    );
    assert!(header(&ok, "Content-Type") == Some("application/sdp"));
    // Over UDP with rport: to the source address and port, on the flow it came on.
    assert_eq!(sent[0].flow, Flow(1));
    assert_eq!(sent[0].to, PHONE.parse::<SocketAddr>().unwrap());
    assert!(sent[0].next_hop.is_none());
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].to, AgentState::NotReady);
    assert_eq!(h.uas.pending_writes(), 0);
    assert_eq!(h.uas.stats.applied, 1);
}

#[test]
fn cancel_while_the_change_is_written_still_gets_the_200() {
    let mut h = Harness::new(true);
    h.udp(&invite("*38", "1001", "c2", "a2"));
    h.sent();
    let ticket = h.ticket();
    h.udp(&cancel("*38", "1001", "c2", "a2"));
    let sent = h.sent_text();
    // RFC 3261 §9.2: the CANCEL is answered 200; the INVITE gets no 487,
    // because its change has happened and is being saved.
    assert_eq!(statuses(&sent), vec![200]);
    assert!(header(&sent[0], "CSeq").unwrap().ends_with("CANCEL"));
    h.uas.on_durable::<&str>(h.now(), ticket, Ok(()));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![200]);
    assert!(header(&sent[0], "CSeq").unwrap().ends_with("INVITE"));
    assert_eq!(h.state("1001", "8001"), AgentState::NotReady);
}

#[test]
fn a_failed_journal_write_answers_500_and_undoes_the_change() {
    let mut h = Harness::new(true);
    h.udp(&invite("*388000", "1001", "c3", "a3"));
    let first = h.ticket();
    // A second change queued behind the first is undone with it.
    h.udp(&invite("*368000", "1001", "c4", "a4"));
    let second = h.ticket();
    assert_eq!(h.state("1001", "8000"), AgentState::Ready);
    h.sent();

    h.uas.on_durable(h.now(), first, Err("disk full"));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![500, 500]);
    assert!(sent[0].contains("Server Internal Error - State Not Saved"));
    assert_eq!(h.state("1001", "8000"), AgentState::LoggedOut);
    assert_eq!(h.journal(), vec![JournalOrder::Reset]);
    assert!(h.events().is_empty(), "an undone change is never published");
    assert_eq!(h.uas.pending_writes(), 0);
    // The late completion of the second write changes nothing.
    h.uas.on_durable::<&str>(h.now(), second, Ok(()));
    assert!(h.sent().is_empty());
    assert_eq!(h.state("1001", "8000"), AgentState::LoggedOut);
}

#[test]
fn a_failure_drops_writes_not_yet_handed_to_the_store() {
    let mut h = Harness::new(true);
    h.udp(&invite("*388000", "1001", "c5", "a5"));
    let first = h.ticket();
    h.udp(&invite("*398000", "1001", "c6", "a6"));
    // The second append is still queued inside the UAS when the first fails.
    h.uas.on_durable(h.now(), first, Err("io"));
    assert_eq!(h.journal(), vec![JournalOrder::Reset]);
    assert_eq!(h.state("1001", "8000"), AgentState::LoggedOut);
}

#[test]
fn subscribe_notify_refresh_and_expiry() {
    let mut h = Harness::new(false);
    h.udp(&subscribe("1001", "s1", None, 1, 120));
    let sent = h.sent_text();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(status_of(&sent[0]), Some(200));
    assert_eq!(header(&sent[0], "Expires"), Some("120"));
    let tag = header(&sent[0], "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap()
        .to_string();
    let notify = &sent[1];
    assert!(notify.starts_with("NOTIFY sip:1001@127.0.0.1:5062 SIP/2.0"));
    assert!(header(notify, "Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert!(notify.contains("agentNull"), "{notify}");
    let n1 = notify.clone();
    h.udp(&response_to(&n1, 200));

    // A change notifies at once.
    h.udp(&invite("*38", "1001", "c7", "a7"));
    let sent = h.sent_text();
    let notify = sent.iter().find(|t| t.starts_with("NOTIFY")).unwrap();
    assert!(notify.contains("agentNotReady"), "{notify}");
    assert!(header(notify, "CSeq").unwrap().starts_with('2'));
    let n2 = notify.clone();
    h.udp(&response_to(&n2, 200));

    // A refresh in the dialog: 200 and a NOTIFY with the state.
    h.advance(60_000);
    h.sent();
    h.udp(&subscribe("1001", "s1", Some(&tag), 2, 120));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![200]);
    let notify = sent
        .iter()
        .find(|t| t.starts_with("NOTIFY"))
        .unwrap()
        .clone();
    assert!(header(&notify, "Subscription-State")
        .unwrap()
        .starts_with("active"));
    h.udp(&response_to(&notify, 200));

    // Not refreshed again: it expires 120 s after the refresh, with a
    // terminating NOTIFY (RFC 6665 §4.2.2).
    h.advance(119_000);
    assert!(h.sent_text().iter().all(|t| !t.starts_with("NOTIFY")));
    h.advance(2_000);
    let sent = h.sent_text();
    let last = sent
        .iter()
        .find(|t| t.starts_with("NOTIFY"))
        .expect("terminating NOTIFY");
    assert!(header(last, "Subscription-State")
        .unwrap()
        .starts_with("terminated;reason=timeout"));
    // Gone: a refresh now is 481.
    h.udp(&subscribe("1001", "s1", Some(&tag), 3, 120));
    assert_eq!(statuses(&h.sent_text()), vec![481]);
}

#[test]
fn udp_retransmissions_are_absorbed_and_the_200_repeated_until_the_ack() {
    let mut h = Harness::new(false);
    let inv = invite("*38", "1002", "c8", "a8");
    h.udp(&inv);
    let first = h.sent_text();
    assert_eq!(statuses(&first), vec![200]);
    // A retransmitted INVITE is absorbed by its transaction (RFC 3261 §17.2.1).
    h.udp(&inv);
    assert_eq!(h.uas.stats.retransmissions, 1);
    assert_eq!(h.uas.stats.applied, 1);
    // RFC 3261 §13.3.1.4: the 2xx is retransmitted at T1, 2·T1, … until the ACK.
    h.advance(500);
    let again = h.sent_text();
    assert_eq!(statuses(&again), vec![200]);
    assert_eq!(again[0], first[0]);
    h.advance(1000);
    assert_eq!(statuses(&h.sent_text()), vec![200]);
    let tag = header(&first[0], "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap()
        .to_string();
    let ack = inv
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("branch=z9hG4bKa8", "branch=z9hG4bKack8")
        .replace(
            "To: <sip:*38@127.0.0.1>",
            &format!("To: <sip:*38@127.0.0.1>;tag={tag}"),
        );
    h.udp(&ack);
    h.advance(4000);
    let after = h.sent_text();
    assert!(
        !after.iter().any(|t| t.starts_with("SIP/2.0 200")),
        "no 200 after the ACK: {after:?}"
    );
    // After the tone (1 s), facd hangs up.
    assert!(after.iter().any(|t| t.starts_with("BYE ")), "{after:?}");
}

#[test]
fn a_bye_for_a_forgotten_call_is_481() {
    let mut h = Harness::new(false);
    h.udp(
        "BYE sip:1001@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKbye1\n\
         Max-Forwards: 70\n\
         From: <sip:1001@127.0.0.1>;tag=x\n\
         To: <sip:*38@127.0.0.1>;tag=y\n\
         Call-ID: forgotten\n\
         CSeq: 2 BYE\n\
         Content-Length: 0\n\n",
    );
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![481]);
    assert!(sent[0].contains("Call/Transaction Does Not Exist"));
}

#[test]
fn in_dialog_requests_over_tcp_carry_their_next_hop() {
    let mut h = Harness::new(false);
    let inv = invite("*38", "1001", "c9", "a9").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    h.send(&inv, Transport::Tcp);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].next_hop.is_none(), "a response needs no next hop");
    let ok = String::from_utf8_lossy(&sent[0].bytes).into_owned();
    assert!(header(&ok, "Contact").unwrap().contains(";transport=tcp"));
    // No ACK over TCP: after 64·T1 facd gives up and hangs up.
    h.advance(33_000);
    let bye = h
        .sent()
        .into_iter()
        .find(|t| t.bytes.starts_with(b"BYE "))
        .expect("BYE");
    assert_eq!(bye.flow, Flow(2));
    let hop = bye.next_hop.expect("next hop");
    assert_eq!(hop.target, Ok("127.0.0.1:5062".parse().unwrap()));
    assert_eq!(
        hop.local_ip,
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap()
    );
    // The shell could not send it: the dialog ends at once.
    h.uas.on_unsent(h.now(), bye.bytes);
    assert!(h.uas.drained());
}

#[test]
fn commands_from_outside_sip_finish_with_their_waiter() {
    let mut h = Harness::new(true);
    let login = Command::Login {
        agent: "1002".into(),
        target: Target::Queue("8001".into()),
    };
    h.uas.apply_command(h.now(), login, Cause::Api, 41);
    assert!(h.uas.poll_finished().is_none(), "waits for the journal");
    let ticket = h.ticket();
    h.uas.on_durable::<&str>(h.now(), ticket, Ok(()));
    let (waiter, outcome) = h.uas.poll_finished().expect("finished");
    assert_eq!(waiter, 41);
    assert_eq!(outcome.unwrap().affected.len(), 1);
    // A refusal finishes at once, with nothing to journal.
    let bad = Command::Ready {
        agent: "9999".into(),
        target: Target::All,
    };
    h.uas.apply_command(h.now(), bad, Cause::Api, 42);
    assert!(h.journal().is_empty());
    let (waiter, outcome) = h.uas.poll_finished().expect("refused");
    assert_eq!(waiter, 42);
    assert!(matches!(outcome, Err(ApplyError::Rejected(_))));
}

#[test]
fn a_graceful_stop_refuses_new_calls_and_hangs_up() {
    let mut h = Harness::new(false);
    h.udp(&invite("*38", "1001", "c10", "a10"));
    h.sent();
    assert!(!h.uas.drained());
    h.uas.begin_drain(h.now());
    assert!(h.sent_text().iter().any(|t| t.starts_with("BYE ")));
    h.udp(&invite("*36", "1002", "c11", "a11"));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![503]);
    assert_eq!(header(&sent[0], "Retry-After"), Some("5"));
}
