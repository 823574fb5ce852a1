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
        reasons: vec![
            ReasonDef {
                code: 1,
                name: "BREAK".into(),
            },
            ReasonDef {
                code: 9,
                name: "DND".into(),
            },
        ],
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
            uas: Uas::new(config(journal), Engine::new(model()), codes, None).with_keys(
                KeySettings {
                    toggles: Default::default(),
                    dnd_reason: Some("DND".into()),
                },
            ),
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
    subscribe_to(
        agent,
        agent,
        "as-feature-event",
        call,
        to_tag,
        cseq,
        expires,
        "",
    )
}

/// A SUBSCRIBE from `agent` to `user` for `event`, with a one-line `body`
/// (an as-feature-event request) or none.
#[allow(clippy::too_many_arguments)]
fn subscribe_to(
    user: &str,
    agent: &str,
    event: &str,
    call: &str,
    to_tag: Option<&str>,
    cseq: u32,
    expires: u32,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ctype = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/x-as-feature-event+xml\n".into()
    };
    format!(
        "SUBSCRIBE sip:{user}@127.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKsub{call}{cseq};rport\n\
         Max-Forwards: 70\n\
         From: <sip:{agent}@127.0.0.1>;tag=ft{call}\n\
         To: <sip:{user}@127.0.0.1>{to_tag}\n\
         Call-ID: {call}\n\
         CSeq: {cseq} SUBSCRIBE\n\
         Contact: <sip:{agent}@127.0.0.1:5062>\n\
         Event: {event}\n\
         Expires: {expires}\n\
         {ctype}\
         Content-Length: {}\n\n{body}",
        body.len()
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

/// The root element of a NOTIFY's body (the first part's, for a multipart).
fn root(notify: &str) -> &str {
    let body = notify.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    body.split('<')
        .find(|t| !t.starts_with('?') && !t.is_empty())
        .and_then(|t| t.split([' ', '>']).next())
        .unwrap_or_default()
}

fn cseq_of(msg: &str) -> u32 {
    header(msg, "CSeq")
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The NOTIFYs among `sent`.
fn notifies(sent: &[String]) -> Vec<String> {
    sent.iter()
        .filter(|t| t.starts_with("NOTIFY"))
        .cloned()
        .collect()
}

/// Answers every NOTIFY in `sent` 200 and returns the NOTIFYs sent in turn
/// (the ones that waited), until none is left.
fn answer_all(h: &mut Harness, mut sent: Vec<String>) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let ns = notifies(&sent);
        if ns.is_empty() {
            return all;
        }
        for n in &ns {
            h.udp(&response_to(n, 200));
        }
        all.extend(ns);
        sent = h.sent_text();
    }
}

/// The first CSeq (and dialog-info version) of a subscription made at the
/// harness's start: seconds since 2024-01-01.
const BASE: u32 = (WALL0 / 1000 - 1_704_067_200) as u32;

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
    // No Accept: every feature in one multipart/mixed body, ACD first.
    assert!(header(notify, "Content-Type")
        .unwrap()
        .starts_with("multipart/mixed;boundary="));
    assert!(notify.contains("<AgentLoggedOffEvent "), "{notify}");
    assert!(notify.contains("<DoNotDisturbEvent "), "{notify}");
    assert_eq!(cseq_of(notify), BASE + 1);
    let n1 = notify.clone();
    h.udp(&response_to(&n1, 200));

    // A login notifies at once: AgentLoggedOnEvent, then (once answered)
    // the state the login produced.
    h.udp(&invite("*38", "1001", "c7", "a7"));
    let first = h.sent_text();
    let after = answer_all(&mut h, first);
    let roots: Vec<&str> = after.iter().map(|n| root(n)).collect();
    assert_eq!(roots, ["AgentLoggedOnEvent", "AgentNotReadyEvent"]);
    assert_eq!(cseq_of(&after[1]), BASE + 3);

    // A refresh in the dialog: 200 and a NOTIFY with the whole state.
    h.advance(60_000);
    h.sent();
    h.udp(&subscribe("1001", "s1", Some(&tag), 2, 120));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![200]);
    let notify = notifies(&sent).remove(0);
    assert!(header(&notify, "Subscription-State")
        .unwrap()
        .starts_with("active"));
    assert!(notify.contains("<AgentNotReadyEvent "), "{notify}");
    assert!(!notify.contains("AgentLoggedOnEvent"), "never in a refresh");
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

/// A Yealink `SetAgentState` (one line: the harness turns `\n` into CRLF).
fn set_agent_state(state: &str, reason: Option<u32>) -> String {
    let reason = reason
        .map(|r| {
            format!(
                "<extensions><privateData><private xmlns:pri=\"http://schema.broadsoft.com/CSTAPrivateData\">\
                 <pri:AgentNotReadyReasonValue>{r}</pri:AgentNotReadyReasonValue></private></privateData></extensions>"
            )
        })
        .unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><SetAgentState xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\">\
         <device></device><requestedAgentState>{state}</requestedAgentState>{reason}<agentID></agentID><password></password></SetAgentState>"
    )
}

/// Subscribes 1001's feature keys and answers what follows; the To tag.
fn feature_subscription(h: &mut Harness, call: &str) -> String {
    h.udp(&subscribe("1001", call, None, 1, 600));
    let sent = h.sent_text();
    assert_eq!(status_of(&sent[0]), Some(200), "{sent:?}");
    let tag = header(&sent[0], "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap()
        .to_string();
    answer_all(h, sent);
    tag
}

/// A key press: an in-dialog SUBSCRIBE with `body`; the answer's status
/// and the roots of the NOTIFYs that follow (each answered 200).
fn press(h: &mut Harness, call: &str, tag: &str, cseq: u32, body: &str) -> (u16, Vec<String>) {
    h.udp(&subscribe_to(
        "1001",
        "1001",
        "as-feature-event",
        call,
        Some(tag),
        cseq,
        600,
        body,
    ));
    let sent = h.sent_text();
    let status = status_of(&sent[0]).unwrap();
    let roots = answer_all(h, sent)
        .iter()
        .map(|n| root(n).to_string())
        .collect();
    (status, roots)
}

#[test]
fn set_agent_state_answers_every_press_with_the_resulting_state() {
    let mut h = Harness::new(false);
    let tag = feature_subscription(&mut h, "k1");
    // Login (auto_ready off): AgentLoggedOnEvent, then NOT_READY.
    let (st, roots) = press(&mut h, "k1", &tag, 2, &set_agent_state("loggedOn", None));
    assert_eq!(
        (st, roots.as_slice()),
        (
            200,
            &[
                "AgentLoggedOnEvent".to_string(),
                "AgentNotReadyEvent".into()
            ][..]
        )
    );
    assert_eq!(h.state("1001", "8000"), AgentState::NotReady);
    // The phone answers with its initial state: ready.
    let (st, roots) = press(&mut h, "k1", &tag, 3, &set_agent_state("ready", None));
    assert_eq!((st, roots), (200, vec!["AgentReadyEvent".to_string()]));
    // The same again: nothing changes, the state is still told.
    let (st, roots) = press(&mut h, "k1", &tag, 4, &set_agent_state("ready", None));
    assert_eq!((st, roots), (200, vec!["AgentReadyEvent".to_string()]));
    // Not ready with reason 1 (BREAK), shown with its code.
    h.udp(&subscribe_to(
        "1001",
        "1001",
        "as-feature-event",
        "k1",
        Some(&tag),
        5,
        600,
        &set_agent_state("notReady", Some(1)),
    ));
    let sent = h.sent_text();
    assert_eq!(status_of(&sent[0]), Some(200));
    let n = notifies(&sent).remove(0);
    assert_eq!(root(&n), "AgentNotReadyEvent");
    assert!(
        n.contains("<pri:AgentNotReadyReasonValue>1</pri:AgentNotReadyReasonValue>"),
        "{n}"
    );
    answer_all(&mut h, vec![n]);
    // Wrap-up, then logged off.
    let (_, roots) = press(
        &mut h,
        "k1",
        &tag,
        6,
        &set_agent_state("workingAfterCall", None),
    );
    assert_eq!(roots, ["AgentWorkingAfterCallEvent"]);
    let (_, roots) = press(&mut h, "k1", &tag, 7, &set_agent_state("loggedOff", None));
    assert_eq!(roots, ["AgentLoggedOffEvent"]);
    // Refused like the star code: not logged in, unknown reason.
    let (st, roots) = press(&mut h, "k1", &tag, 8, &set_agent_state("ready", None));
    assert_eq!((st, roots.len()), (403, 0));
    let (st, _) = press(
        &mut h,
        "k1",
        &tag,
        9,
        &set_agent_state("notReady", Some(77)),
    );
    assert_eq!(st, 404, "unknown reason");
    // A body that is no request.
    let (st, _) = press(&mut h, "k1", &tag, 10, "<Nonsense/>");
    assert_eq!(st, 400);
}

#[test]
fn a_call_does_not_change_the_acd_key() {
    let mut h = Harness::new(false);
    let tag = feature_subscription(&mut h, "k2");
    let (_, roots) = press(&mut h, "k2", &tag, 2, &set_agent_state("loggedOn", None));
    assert_eq!(roots.len(), 2);
    press(&mut h, "k2", &tag, 3, &set_agent_state("ready", None));
    let call = Command::CallStart {
        agent: "1001".into(),
        call_id: "pbx-1".into(),
        kind: crate::engine::CallKind::Other,
    };
    h.uas.apply_command(h.now(), call, Cause::Call, 1);
    assert_eq!(h.state("1001", "8000"), AgentState::OtherCall);
    assert!(notifies(&h.sent_text()).is_empty(), "no busy event");
}

#[test]
fn dnd_key_sets_the_dnd_reason_and_undoes_only_it() {
    let mut h = Harness::new(false);
    let tag = feature_subscription(&mut h, "k3");
    let dnd = |on: bool| {
        format!(
            "<SetDoNotDisturb xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><doNotDisturbOn>{on}</doNotDisturbOn></SetDoNotDisturb>"
        )
    };
    // Logged out everywhere: refused like *37.
    let (st, _) = press(&mut h, "k3", &tag, 2, &dnd(true));
    assert_eq!(st, 403);
    press(&mut h, "k3", &tag, 3, &set_agent_state("loggedOn", None));
    press(&mut h, "k3", &tag, 4, &set_agent_state("ready", None));
    // DND on: NOT_READY with the DND reason wherever logged in.
    let (st, roots) = press(&mut h, "k3", &tag, 5, &dnd(true));
    assert_eq!(st, 200);
    assert_eq!(roots, ["DoNotDisturbEvent", "AgentNotReadyEvent"]);
    assert_eq!(h.state("1001", "8000"), AgentState::NotReady);
    assert_eq!(h.state("1001", "8001"), AgentState::NotReady);
    // 8001 changes to BREAK meanwhile: DND off must leave it so.
    h.udp(&invite("*378001*1", "1001", "c30", "a30"));
    let sent = h.sent_text();
    assert!(notifies(&sent).is_empty(), "DND still on in 8000: {sent:?}");
    let (_, roots) = press(&mut h, "k3", &tag, 6, &dnd(false));
    assert_eq!(roots, ["DoNotDisturbEvent", "AgentReadyEvent"]);
    assert_eq!(h.state("1001", "8000"), AgentState::Ready);
    assert_eq!(h.state("1001", "8001"), AgentState::NotReady, "BREAK stays");
    // Off when already off: told, nothing changes.
    let (st, roots) = press(&mut h, "k3", &tag, 7, &dnd(false));
    assert_eq!((st, roots), (200, vec!["DoNotDisturbEvent".to_string()]));
    // Forwarding: answered "off".
    let fwd = "<SetForwarding xmlns=\"http://www.ecma-international.org/standards/ecma-323/csta/ed3\"><forwardingType>forwardImmediate</forwardingType><activateForward>true</activateForward><forwardDN>2000</forwardDN></SetForwarding>";
    h.udp(&subscribe_to(
        "1001",
        "1001",
        "as-feature-event",
        "k3",
        Some(&tag),
        8,
        600,
        fwd,
    ));
    let sent = h.sent_text();
    assert_eq!(status_of(&sent[0]), Some(200));
    let n = notifies(&sent).remove(0);
    assert_eq!(root(&n), "ForwardingEvent");
    assert!(n.contains("<forwardStatus>false</forwardStatus>"), "{n}");
}

/// A BLF SUBSCRIBE from 1001 to `code` for `event`; the 200 and the NOTIFY.
fn lamp(h: &mut Harness, code: &str, event: &str, call: &str) -> (String, String) {
    h.udp(&subscribe_to(code, "1001", event, call, None, 1, 600, ""));
    let sent = h.sent_text();
    assert_eq!(status_of(&sent[0]), Some(200), "{sent:?}");
    let n = notifies(&sent).remove(0);
    h.udp(&response_to(&n, 200));
    (sent[0].clone(), n)
}

fn dialog_state(n: &str) -> &str {
    n.split("<state>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_default()
}

fn version(n: &str) -> u32 {
    n.split("version=\"")
        .nth(2)
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn blf_lamps_follow_the_agents_state() {
    let mut h = Harness::new(false);
    let (_, login) = lamp(&mut h, "*388000", "dialog", "b1");
    assert_eq!(header(&login, "Event"), Some("dialog"));
    assert_eq!(
        header(&login, "Content-Type"),
        Some("application/dialog-info+xml")
    );
    assert_eq!(dialog_state(&login), "terminated");
    assert!(
        login.contains("entity=\"sip:*388000@127.0.0.1\""),
        "{login}"
    );
    assert_eq!(version(&login), BASE);
    let (_, ready) = lamp(&mut h, "*36", "presence", "b2");
    assert_eq!(header(&ready, "Content-Type"), Some("application/pidf+xml"));
    assert!(ready.contains("<basic>open</basic>"), "{ready}");
    let (_, toggle) = lamp(&mut h, "*46", "dialog", "b3");
    assert_eq!(dialog_state(&toggle), "terminated");
    let (_, brk) = lamp(&mut h, "*37*1", "dialog", "b4");
    assert_eq!(dialog_state(&brk), "terminated");

    // Login to 8000 (auto_ready off): only the login lamp lights.
    h.udp(&invite("*388000", "1001", "c40", "a40"));
    let ns = notifies(&h.sent_text());
    assert_eq!(ns.len(), 1, "{ns:?}");
    assert_eq!(dialog_state(&ns[0]), "confirmed");
    assert_eq!(version(&ns[0]), BASE + 1);
    answer_all(&mut h, ns);
    // Toggle *46: READY. The ready lamp and the toggle lamp light, one
    // NOTIFY each.
    h.udp(&invite("*46", "1001", "c41", "a41"));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![200]);
    assert!(header(&sent[0], "X-Agent-State")
        .unwrap()
        .contains("state=READY"));
    let ns = notifies(&sent);
    assert_eq!(ns.len(), 2, "{ns:?}");
    assert!(ns.iter().any(|n| n.contains("<basic>closed</basic>")));
    assert!(ns.iter().any(|n| dialog_state(n) == "confirmed"));
    answer_all(&mut h, ns);
    // Toggle again: NOT_READY (no reason); then *37*1 lights the BREAK lamp.
    h.udp(&invite("*46", "1001", "c42", "a42"));
    assert_eq!(h.state("1001", "8000"), AgentState::NotReady);
    let sent = h.sent_text();
    answer_all(&mut h, sent);
    h.udp(&invite("*37*1", "1001", "c43", "a43"));
    let ns = notifies(&h.sent_text());
    assert_eq!(ns.len(), 1);
    assert_eq!(dialog_state(&ns[0]), "confirmed");
    answer_all(&mut h, ns);
    // Toggle login *45: logs out of all; every lit lamp darkens.
    h.udp(&invite("*45", "1001", "c44", "a44"));
    assert_eq!(h.state("1001", "8000"), AgentState::LoggedOut);
    let ns = notifies(&h.sent_text());
    assert_eq!(ns.len(), 2, "login and BREAK lamps: {ns:?}");
    assert!(ns.iter().all(|n| dialog_state(n) == "terminated"));

    // Refusals: not a lamp, a queue that is not the agent's, an unknown
    // reason, another package.
    for (code, event, status) in [
        ("*39", "dialog", 404),
        ("1001", "dialog", 404),
        ("*389999", "dialog", 404),
        ("*37*5", "presence", 404),
        ("*38", "message-summary", 489),
    ] {
        h.udp(&subscribe_to(
            code,
            "1001",
            event,
            &format!("x{code}{event}"),
            None,
            1,
            600,
            "",
        ));
        let sent = h.sent_text();
        assert_eq!(statuses(&sent), vec![status], "{code} {event}");
        if status == 489 {
            assert_eq!(
                header(&sent[0], "Allow-Events"),
                Some("as-feature-event, dialog, presence")
            );
        }
    }
}

#[test]
fn a_refresh_after_a_restart_reestablishes_the_subscription() {
    let mut h = Harness::new(false);
    let (ok, first) = lamp(&mut h, "*38", "dialog", "r1");
    let tag = header(&ok, "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap()
        .to_string();
    assert_eq!(cseq_of(&first), BASE + 1);
    // A new UAS (facd restarted) ten minutes later knows no subscription.
    let ms = h.ms + 600_000;
    h = Harness::new(false);
    h.ms = ms;
    h.udp(&subscribe_to(
        "*38",
        "1001",
        "dialog",
        "r1",
        Some(&tag),
        2,
        600,
        "",
    ));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![200]);
    assert_eq!(tag_of(&sent[0]), tag, "the same dialog");
    let n = notifies(&sent).remove(0);
    assert!(cseq_of(&n) > cseq_of(&first), "CSeq keeps rising");
    assert!(version(&n) > version(&first), "version keeps rising");
    assert!(header(&n, "From")
        .unwrap()
        .ends_with(&format!(";tag={tag}")));
    // It lives on: a change notifies.
    h.udp(&response_to(&n, 200));
    h.udp(&invite("*38", "1001", "r2", "r2"));
    let ns = notifies(&h.sent_text());
    assert_eq!(ns.len(), 1);
    assert_eq!(dialog_state(&ns[0]), "confirmed");
    // Another agent's dialog is still refused.
    let known = subscribe_to("*38", "1002", "dialog", "r1", Some(&tag), 3, 600, "");
    h.udp(&known);
    assert_eq!(statuses(&h.sent_text()), vec![481]);
}

fn tag_of(resp: &str) -> String {
    header(resp, "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_failed_journal_write_answers_a_key_press_500_in_its_dialog() {
    let mut h = Harness::new(true);
    let tag = feature_subscription(&mut h, "k9");
    h.udp(&subscribe_to(
        "1001",
        "1001",
        "as-feature-event",
        "k9",
        Some(&tag),
        2,
        600,
        &set_agent_state("loggedOn", None),
    ));
    let ticket = h.ticket();
    assert!(h.sent().is_empty(), "nothing is answered before the write");
    h.uas.on_durable(h.now(), ticket, Err("disk full"));
    let sent = h.sent_text();
    assert_eq!(statuses(&sent), vec![500], "{sent:?}");
    assert!(sent[0].contains("Server Internal Error - State Not Saved"));
    assert!(header(&sent[0], "CSeq").unwrap().ends_with("SUBSCRIBE"));
    assert!(header(&sent[0], "To")
        .unwrap()
        .ends_with(&format!(";tag={tag}")));
    assert_eq!(header(&sent[0], "Content-Length"), Some("0"));
    assert_eq!(h.state("1001", "8000"), AgentState::LoggedOut);
    assert!(h.events().is_empty(), "an undone change is never published");
}
