//! The exhaustive state × command table (SPEC §2) and the multi-queue,
//! pending, timer and durability cases.

use super::*;
use AgentState::*;

const T0: Millis = 1_000_000;

fn model(auto_ready: bool, wrap_up_secs: u64) -> Model {
    Model {
        queues: vec![
            QueueDef {
                number: "8000".into(),
                name: "Sales".into(),
                auto_ready,
                wrap_up_secs,
                not_ready_after_other_call: false,
            },
            QueueDef {
                number: "8001".into(),
                name: "Support".into(),
                auto_ready: false,
                wrap_up_secs: 0,
                not_ready_after_other_call: true,
            },
            QueueDef {
                number: "8002".into(),
                name: "Billing".into(),
                auto_ready: true,
                wrap_up_secs: 0,
                not_ready_after_other_call: false,
            },
        ],
        agents: vec![
            AgentDef {
                extension: "1001".into(),
                name: "Alice".into(),
                queues: vec!["8000".into()],
            },
            AgentDef {
                extension: "1002".into(),
                name: "Bob".into(),
                queues: vec!["8000".into(), "8001".into(), "8002".into()],
            },
        ],
        reasons: vec![ReasonDef {
            code: 1,
            name: "BREAK".into(),
        }],
    }
}

fn q(n: &str) -> Target {
    Target::Queue(n.into())
}
fn a(x: &str) -> AgentId {
    x.into()
}
fn login(agent: &str, t: Target) -> Command {
    Command::Login {
        agent: a(agent),
        target: t,
    }
}
fn logout(agent: &str, t: Target) -> Command {
    Command::Logout {
        agent: a(agent),
        target: t,
    }
}
fn ready(agent: &str, t: Target) -> Command {
    Command::Ready {
        agent: a(agent),
        target: t,
    }
}
fn not_ready(agent: &str, t: Target, reason: Option<ReasonRef>) -> Command {
    Command::NotReady {
        agent: a(agent),
        target: t,
        reason,
    }
}
fn wrap_up(agent: &str, t: Target) -> Command {
    Command::WrapUp {
        agent: a(agent),
        target: t,
    }
}
fn acd(agent: &str, id: &str, queue: &str) -> Command {
    Command::CallStart {
        agent: a(agent),
        call_id: id.into(),
        kind: CallKind::Acd {
            queue: queue.into(),
        },
    }
}
fn other(agent: &str, id: &str) -> Command {
    Command::CallStart {
        agent: a(agent),
        call_id: id.into(),
        kind: CallKind::Other,
    }
}
fn end(agent: &str, id: &str) -> Command {
    Command::CallEnd {
        agent: a(agent),
        call_id: id.into(),
    }
}

fn state(
    e: &Engine,
    agent: &str,
    queue: &str,
) -> (AgentState, Option<AgentState>, Option<ReasonName>) {
    let v = e.agent(agent).unwrap();
    let qv = v.queues.iter().find(|x| x.queue == queue).unwrap();
    (qv.state, qv.pending, qv.reason.clone())
}

/// Puts agent 1001 (member of 8000 only) in `from` the way it gets there.
fn engine_in(from: AgentState, auto_ready: bool, wrap: u64) -> Engine {
    let mut e = Engine::new(model(auto_ready, wrap));
    let mut go = |c: Command| e.apply(T0, c, Cause::Api).unwrap();
    match from {
        LoggedOut => {}
        NotReady => {
            go(login("1001", Target::All));
            go(not_ready("1001", Target::All, None));
        }
        Ready => {
            go(login("1001", Target::All));
            go(ready("1001", Target::All));
        }
        QueueCall => {
            go(login("1001", Target::All));
            go(ready("1001", Target::All));
            go(acd("1001", "c1", "8000"));
        }
        OtherCall => {
            go(login("1001", Target::All));
            go(ready("1001", Target::All));
            go(other("1001", "c1"));
        }
        WrapUp => {
            go(login("1001", Target::All));
            go(ready("1001", Target::All));
            go(wrap_up("1001", Target::All));
        }
    }
    let _ = e.take_changes();
    assert_eq!(state(&e, "1001", "8000").0, from);
    e
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmd {
    Login,
    Logout,
    Ready,
    NotReady,
    NotReadyBreak,
    WrapUp,
    AcdCall,
    OtherCall,
    EndCall,
}

const CMDS: [Cmd; 9] = [
    Cmd::Login,
    Cmd::Logout,
    Cmd::Ready,
    Cmd::NotReady,
    Cmd::NotReadyBreak,
    Cmd::WrapUp,
    Cmd::AcdCall,
    Cmd::OtherCall,
    Cmd::EndCall,
];

fn command(c: Cmd) -> Command {
    match c {
        Cmd::Login => login("1001", q("8000")),
        Cmd::Logout => logout("1001", q("8000")),
        Cmd::Ready => ready("1001", q("8000")),
        Cmd::NotReady => not_ready("1001", q("8000"), None),
        Cmd::NotReadyBreak => not_ready("1001", q("8000"), Some(ReasonRef::Code(1))),
        Cmd::WrapUp => wrap_up("1001", q("8000")),
        Cmd::AcdCall => acd("1001", "c2", "8000"),
        Cmd::OtherCall => other("1001", "c2"),
        Cmd::EndCall => end("1001", "c1"),
    }
}

type Outcome = Result<(AgentState, Option<AgentState>), Rejection>;

/// SPEC §2, one row per (from, trigger): the state and pending state after.
fn expected(from: AgentState, c: Cmd, auto_ready: bool, wrap: u64) -> Outcome {
    let auto = if auto_ready { Ready } else { NotReady };
    let after_acd = if wrap > 0 { WrapUp } else { auto };
    Ok(match (from, c) {
        (LoggedOut, Cmd::Login) => (auto, None),
        (LoggedOut, Cmd::Logout) => (LoggedOut, None),
        (LoggedOut, Cmd::Ready | Cmd::NotReady | Cmd::NotReadyBreak | Cmd::WrapUp) => {
            return Err(Rejection::NotLoggedIn)
        }
        (LoggedOut, Cmd::OtherCall) => (LoggedOut, None),

        (NotReady, Cmd::Login) => (NotReady, None),
        (NotReady, Cmd::Logout) => (LoggedOut, None),
        (NotReady, Cmd::Ready) => (Ready, None),
        (NotReady, Cmd::NotReady | Cmd::NotReadyBreak) => (NotReady, None),
        (NotReady, Cmd::WrapUp) => (WrapUp, None),
        (NotReady, Cmd::OtherCall) => (NotReady, None),

        (Ready, Cmd::Login | Cmd::Ready) => (Ready, None),
        (Ready, Cmd::Logout) => (LoggedOut, None),
        (Ready, Cmd::NotReady | Cmd::NotReadyBreak) => (NotReady, None),
        (Ready, Cmd::WrapUp) => (WrapUp, None),
        (Ready, Cmd::AcdCall) => (QueueCall, None),
        (Ready, Cmd::OtherCall) => (OtherCall, None),

        (QueueCall | OtherCall, Cmd::Login | Cmd::OtherCall) => (from, None),
        (QueueCall | OtherCall, Cmd::Logout) => (from, Some(LoggedOut)),
        (QueueCall | OtherCall, Cmd::Ready) => (from, Some(Ready)),
        (QueueCall | OtherCall, Cmd::NotReady | Cmd::NotReadyBreak) => (from, Some(NotReady)),
        (QueueCall | OtherCall, Cmd::WrapUp) => (from, Some(WrapUp)),
        (QueueCall, Cmd::EndCall) => (after_acd, None),
        (OtherCall, Cmd::EndCall) => (Ready, None),

        (WrapUp, Cmd::Login | Cmd::WrapUp | Cmd::OtherCall) => (WrapUp, None),
        (WrapUp, Cmd::Logout) => (LoggedOut, None),
        (WrapUp, Cmd::Ready) => (Ready, None),
        (WrapUp, Cmd::NotReady | Cmd::NotReadyBreak) => (NotReady, None),

        (_, Cmd::AcdCall) => return Err(Rejection::NotReadyInQueue),
        (_, Cmd::EndCall) => return Err(Rejection::UnknownCall),
    })
}

#[test]
fn every_state_times_every_command() {
    let mut rows = 0;
    for auto_ready in [true, false] {
        for wrap in [0, 30] {
            for from in AgentState::ALL {
                for c in CMDS {
                    let mut e = engine_in(from, auto_ready, wrap);
                    let before = e.agent("1001").unwrap();
                    let got = e.apply(T0 + 5, command(c), Cause::Fac);
                    let want = expected(from, c, auto_ready, wrap);
                    let ctx = format!("{from:?} + {c:?} (auto_ready={auto_ready}, wrap={wrap})");
                    match (got, want) {
                        (Ok(applied), Ok((st, pending))) => {
                            let (s, p, _) = state(&e, "1001", "8000");
                            assert_eq!((s, p), (st, pending), "{ctx}");
                            let changed = before != e.agent("1001").unwrap();
                            // One event when something visible changed, none otherwise.
                            assert_eq!(
                                applied.events.len(),
                                usize::from(
                                    changed && applied.events.iter().all(|ev| ev.queue == "8000")
                                ),
                                "{ctx}: {applied:?}"
                            );
                            if let Some(ev) = applied.events.first() {
                                assert_eq!(
                                    (ev.from, ev.to, ev.cause, ev.at),
                                    (from, st, Cause::Fac, T0 + 5),
                                    "{ctx}"
                                );
                            }
                        }
                        (Err(r), Err(w)) => {
                            assert_eq!(r, w, "{ctx}");
                            assert_eq!(
                                before,
                                e.agent("1001").unwrap(),
                                "{ctx}: a refusal changed state"
                            );
                            assert!(
                                e.take_changes().is_empty(),
                                "{ctx}: a refusal recorded a change"
                            );
                        }
                        (got, want) => panic!("{ctx}: got {got:?}, want {want:?}"),
                    }
                    rows += 1;
                }
            }
        }
    }
    assert_eq!(rows, 4 * 6 * 9);
}

#[test]
fn reason_change_while_not_ready_is_an_event() {
    let mut e = engine_in(NotReady, true, 0);
    let r = e
        .apply(
            T0,
            not_ready("1001", q("8000"), Some(ReasonRef::Name("break".into()))),
            Cause::Fac,
        )
        .unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(state(&e, "1001", "8000").2.as_deref(), Some("BREAK"));
    let r = e
        .apply(
            T0,
            not_ready("1001", q("8000"), Some(ReasonRef::Code(1))),
            Cause::Fac,
        )
        .unwrap();
    assert!(r.events.is_empty(), "same reason again is no change");
}

#[test]
fn refusals() {
    let mut e = Engine::new(model(true, 0));
    let cases = [
        (login("9999", Target::All), Rejection::UnknownAgent),
        (login("1001", q("7777")), Rejection::UnknownQueue),
        (login("1001", q("8001")), Rejection::NotAMember),
        (ready("1001", Target::All), Rejection::NotLoggedIn),
        (
            not_ready("1001", Target::All, Some(ReasonRef::Code(9))),
            Rejection::UnknownReason,
        ),
        (end("1001", "nope"), Rejection::UnknownCall),
    ];
    for (cmd, want) in cases {
        assert_eq!(e.apply(T0, cmd.clone(), Cause::Fac), Err(want), "{cmd:?}");
    }
    e.apply(T0, other("1001", "x"), Cause::Call).unwrap();
    assert_eq!(
        e.apply(T0, other("1001", "x"), Cause::Call),
        Err(Rejection::DuplicateCall)
    );
}

#[test]
fn all_queues_fan_out() {
    let mut e = Engine::new(model(true, 0));
    let r = e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    // 8000 and 8002 auto-ready, 8001 not.
    let states: Vec<_> = r
        .affected
        .iter()
        .map(|s| (s.queue.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [("8000", Ready), ("8001", NotReady), ("8002", Ready)]
    );
    assert_eq!(r.events.len(), 3);
    // Again: nothing changes, success, no event.
    let r = e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    assert!(r.events.is_empty());
    assert_eq!(r.affected.len(), 3);
    // Ready in all: only 8001 changes.
    let r = e.apply(T0, ready("1002", Target::All), Cause::Fac).unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].queue, "8001");
}

#[test]
fn all_queues_applies_only_where_logged_in() {
    let mut e = Engine::new(model(true, 0));
    e.apply(T0, login("1002", q("8001")), Cause::Fac).unwrap();
    let r = e.apply(T0, ready("1002", Target::All), Cause::Fac).unwrap();
    assert_eq!(r.affected.len(), 3);
    assert_eq!(state(&e, "1002", "8001").0, Ready);
    assert_eq!(state(&e, "1002", "8000").0, LoggedOut);
    e.apply(T0, logout("1002", Target::All), Cause::Fac)
        .unwrap();
    assert_eq!(
        e.apply(T0, not_ready("1002", Target::All, None), Cause::Fac),
        Err(Rejection::NotLoggedIn)
    );
}

#[test]
fn all_or_nothing() {
    let mut e = Engine::new(model(true, 0));
    e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    let before = e.agent("1002");
    let _ = e.take_changes();
    // An unknown reason refuses the whole command: no queue changes.
    assert!(e
        .apply(
            T0,
            not_ready("1002", Target::All, Some(ReasonRef::Name("NAP".into()))),
            Cause::Fac
        )
        .is_err());
    assert_eq!(before, e.agent("1002"));
    assert!(e.take_changes().is_empty());
}

#[test]
fn acd_call_makes_other_ready_queues_other_call_and_returns() {
    let mut e = Engine::new(model(true, 0));
    e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    e.apply(T0, ready("1002", Target::All), Cause::Fac).unwrap();
    e.apply(T0, not_ready("1002", q("8002"), None), Cause::Fac)
        .unwrap();
    let r = e.apply(T0, acd("1002", "c", "8000"), Cause::Call).unwrap();
    assert_eq!(r.events.len(), 2);
    assert_eq!(state(&e, "1002", "8000").0, QueueCall);
    assert_eq!(state(&e, "1002", "8001").0, OtherCall);
    assert_eq!(
        state(&e, "1002", "8002").0,
        NotReady,
        "NOT_READY keeps its state during a call"
    );
    e.apply(T0 + 10, end("1002", "c"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1002", "8000").0, Ready);
    // 8001 has not_ready_after_other_call.
    assert_eq!(state(&e, "1002", "8001").0, NotReady);
    assert_eq!(state(&e, "1002", "8002").0, NotReady);
}

#[test]
fn acd_call_needs_ready_in_its_queue() {
    let mut e = Engine::new(model(false, 0));
    e.apply(T0, login("1001", Target::All), Cause::Fac).unwrap();
    assert_eq!(
        e.apply(T0, acd("1001", "c", "8000"), Cause::Call),
        Err(Rejection::NotReadyInQueue)
    );
    assert_eq!(
        e.apply(T0, acd("1001", "c", "8001"), Cause::Call),
        Err(Rejection::NotAMember)
    );
}

#[test]
fn wrap_up_timer_runs_as_data() {
    let mut e = engine_in(QueueCall, true, 30);
    assert_eq!(e.next_deadline(), None);
    e.apply(T0 + 1000, end("1001", "c1"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, WrapUp);
    assert_eq!(e.next_deadline(), Some(T0 + 31_000));
    assert!(e.handle_timeout(T0 + 30_999).is_empty());
    let ev = e.handle_timeout(T0 + 31_000);
    assert_eq!(ev.len(), 1);
    assert_eq!(
        (ev[0].from, ev[0].to, ev[0].cause),
        (WrapUp, Ready, Cause::Timer)
    );
    assert_eq!(e.next_deadline(), None);
}

#[test]
fn wrap_up_without_auto_ready_ends_not_ready() {
    let mut e = engine_in(QueueCall, false, 5);
    e.apply(T0, end("1001", "c1"), Cause::Call).unwrap();
    let ev = e.handle_timeout(T0 + 5000);
    assert_eq!(ev[0].to, NotReady);
}

#[test]
fn ready_during_wrap_up_ends_it_and_cancels_the_timer() {
    let mut e = engine_in(QueueCall, true, 30);
    e.apply(T0, end("1001", "c1"), Cause::Call).unwrap();
    e.apply(T0 + 100, ready("1001", Target::All), Cause::Fac)
        .unwrap();
    assert_eq!(e.next_deadline(), None);
    assert!(e.handle_timeout(T0 + 60_000).is_empty());
}

#[test]
fn pending_changes_apply_when_the_call_and_wrap_up_end() {
    // Pending not-ready waits out the wrap-up.
    let mut e = engine_in(QueueCall, true, 30);
    e.apply(
        T0,
        not_ready("1001", Target::All, Some(ReasonRef::Code(1))),
        Cause::Fac,
    )
    .unwrap();
    assert_eq!(state(&e, "1001", "8000"), (QueueCall, Some(NotReady), None));
    e.apply(T0 + 1, end("1001", "c1"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000"), (WrapUp, Some(NotReady), None));
    e.handle_timeout(T0 + 30_001);
    assert_eq!(
        state(&e, "1001", "8000"),
        (NotReady, None, Some("BREAK".into()))
    );

    // Pending logout skips the wrap-up.
    let mut e = engine_in(QueueCall, true, 30);
    e.apply(T0, logout("1001", Target::All), Cause::Fac)
        .unwrap();
    e.apply(T0 + 1, end("1001", "c1"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, LoggedOut);
    assert_eq!(e.next_deadline(), None);

    // Login cancels a pending logout.
    let mut e = engine_in(OtherCall, true, 0);
    e.apply(T0, logout("1001", Target::All), Cause::Fac)
        .unwrap();
    e.apply(T0, login("1001", Target::All), Cause::Fac).unwrap();
    assert_eq!(state(&e, "1001", "8000"), (OtherCall, None, None));
    e.apply(T0, end("1001", "c1"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, Ready);
}

#[test]
fn other_call_keeps_not_ready_and_wrap_up_and_the_timer_runs() {
    let mut e = engine_in(QueueCall, true, 30);
    e.apply(T0, end("1001", "c1"), Cause::Call).unwrap();
    e.apply(T0 + 1, other("1001", "p"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, WrapUp);
    // Wrap-up ends during the call: the agent would be READY, so OTHER_CALL.
    e.handle_timeout(T0 + 30_000);
    assert_eq!(state(&e, "1001", "8000").0, OtherCall);
    e.apply(T0 + 40_000, end("1001", "p"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, Ready);
}

#[test]
fn overlapping_calls_return_when_the_last_ends() {
    let mut e = engine_in(Ready, true, 0);
    e.apply(T0, other("1001", "a"), Cause::Call).unwrap();
    e.apply(T0, other("1001", "b"), Cause::Call).unwrap();
    e.apply(T0, end("1001", "a"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, OtherCall);
    e.apply(T0, end("1001", "b"), Cause::Call).unwrap();
    assert_eq!(state(&e, "1001", "8000").0, Ready);
}

#[test]
fn ready_agents_longest_idle_first() {
    let mut m = model(true, 0);
    for x in ["1003", "1004"] {
        m.agents.push(AgentDef {
            extension: x.into(),
            name: x.into(),
            queues: vec!["8000".into()],
        });
    }
    let mut e = Engine::new(m);
    e.apply(T0 + 30, login("1004", Target::All), Cause::Fac)
        .unwrap();
    e.apply(T0 + 10, login("1003", Target::All), Cause::Fac)
        .unwrap();
    e.apply(T0 + 20, login("1001", Target::All), Cause::Fac)
        .unwrap();
    assert_eq!(e.ready_agents("8000").unwrap(), ["1003", "1001", "1004"]);
    assert_eq!(e.ready_agents("9999"), None);
    assert_eq!(e.queue_agents("8000").unwrap().len(), 4);
}

#[test]
fn changes_round_trip_through_restore() {
    let mut e = Engine::new(model(true, 30));
    e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    e.apply(T0, acd("1002", "c", "8000"), Cause::Call).unwrap();
    e.apply(
        T0,
        not_ready("1002", q("8001"), Some(ReasonRef::Code(1))),
        Cause::Fac,
    )
    .unwrap();
    e.apply(T0, end("1002", "c"), Cause::Call).unwrap();
    e.apply(T0, login("1001", q("8000")), Cause::Fac).unwrap();
    let journal = e.take_changes();
    assert!(!journal.is_empty());
    assert!(e.take_changes().is_empty(), "take_changes drains");

    // Replaying the journal (through serde) rebuilds the same state and timers.
    let mut r = Engine::new(model(true, 30));
    for c in journal {
        let bytes = serde_json::to_vec(&c).unwrap();
        r.restore(serde_json::from_slice(&bytes).unwrap()).unwrap();
    }
    for ext in ["1001", "1002"] {
        assert_eq!(r.agent(ext), e.agent(ext));
    }
    assert_eq!(r.next_deadline(), e.next_deadline());
    // So does a snapshot.
    let mut s = Engine::new(model(true, 30));
    for c in e.export() {
        s.restore(c).unwrap();
    }
    assert_eq!(s.agent("1002"), e.agent("1002"));
    assert!(s.take_changes().is_empty(), "restore does not journal");
}

#[test]
fn restore_reports_what_the_config_dropped() {
    let mut e = Engine::new(model(true, 0));
    let cell = Cell::logged_out(0);
    assert_eq!(
        e.restore(Change::Cell {
            agent: "7".into(),
            queue: "8000".into(),
            cell: cell.clone()
        }),
        Err(RestoreSkip::UnknownAgent("7".into()))
    );
    assert!(matches!(
        e.restore(Change::Cell {
            agent: "1001".into(),
            queue: "9".into(),
            cell: cell.clone()
        }),
        Err(RestoreSkip::UnknownQueue { .. })
    ));
    assert!(matches!(
        e.restore(Change::Cell {
            agent: "1001".into(),
            queue: "8001".into(),
            cell
        }),
        Err(RestoreSkip::NotAMember { .. })
    ));
}

#[test]
fn export_agent_undoes_a_change() {
    let mut e = Engine::new(model(true, 0));
    let undo = e.export_agent("1002");
    e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    for c in undo {
        e.restore(c).unwrap();
    }
    assert!(e
        .agent("1002")
        .unwrap()
        .queues
        .iter()
        .all(|q| q.state == LoggedOut));
}

#[test]
fn state_names() {
    for s in AgentState::ALL {
        assert_eq!(s.as_str().parse::<AgentState>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert!("BUSY".parse::<AgentState>().is_err());
}

#[test]
fn cause_names_match_their_serialised_form() {
    for c in [
        Cause::Fac,
        Cause::Api,
        Cause::Call,
        Cause::Timer,
        Cause::FeatureSync,
    ] {
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            format!("\"{}\"", c.as_str())
        );
    }
}

fn join(agent: &str, queue: &str, skill_level: u32) -> Command {
    Command::Join {
        agent: a(agent),
        queue: queue.into(),
        skill_level,
    }
}

fn leave(agent: &str, queue: &str) -> Command {
    Command::Leave {
        agent: a(agent),
        queue: queue.into(),
    }
}

fn queues_of(e: &Engine, agent: &str) -> Vec<(String, AgentState, u32)> {
    e.agent(agent)
        .unwrap()
        .queues
        .into_iter()
        .map(|v| (v.queue.to_string(), v.state, v.skill_level))
        .collect()
}

#[test]
fn join_and_leave_change_membership_with_events() {
    let mut e = Engine::new(model(true, 30));
    let ap = e.apply(T0, join("1001", "8002", 5), Cause::Api).unwrap();
    assert_eq!(ap.events.len(), 1);
    assert_eq!((ap.events[0].from, ap.events[0].to), (LoggedOut, LoggedOut));
    assert!(!ap.events[0].removed);
    assert_eq!(
        queues_of(&e, "1001"),
        [("8000".into(), LoggedOut, 1), ("8002".into(), LoggedOut, 5)]
    );
    // Joining again with the same skill changes nothing; another skill is
    // a change without an event.
    let ap = e.apply(T0, join("1001", "8002", 5), Cause::Api).unwrap();
    assert!(ap.events.is_empty() && e.take_changes().len() == 2);
    let ap = e.apply(T0, join("1001", "8002", 7), Cause::Api).unwrap();
    assert!(ap.events.is_empty());
    assert!(matches!(&e.take_changes()[..], [Change::Membership { .. }]));
    // The new membership takes commands like a configured one.
    e.apply(T0, login("1001", Target::All), Cause::Fac).unwrap();
    let ids: Vec<_> = e
        .queue_agents("8002")
        .unwrap()
        .into_iter()
        .map(|(x, _, v)| (x.to_string(), v.state))
        .collect();
    assert_eq!(ids, [("1002".into(), LoggedOut), ("1001".into(), Ready)]);
    // Leaving 8000 during wrap-up drops the state and its timer.
    e.apply(T0, acd("1001", "c1", "8000"), Cause::Call).unwrap();
    e.apply(T0 + 1, end("1001", "c1"), Cause::Call).unwrap();
    assert_eq!(e.next_deadline(), Some(T0 + 1 + 30_000));
    let ap = e.apply(T0 + 2, leave("1001", "8000"), Cause::Api).unwrap();
    assert_eq!(ap.events.len(), 1);
    assert!(ap.events[0].removed && ap.events[0].from == WrapUp);
    assert_eq!(e.next_deadline(), None);
    assert_eq!(queues_of(&e, "1001"), [("8002".into(), Ready, 7)]);
    assert!(e
        .queue_agents("8000")
        .unwrap()
        .iter()
        .all(|(x, _, _)| x != "1001"));
    // Refusals.
    assert_eq!(
        e.apply(T0, leave("1001", "8000"), Cause::Api),
        Err(Rejection::NotAMember)
    );
    assert_eq!(
        e.apply(T0, join("1001", "9", 1), Cause::Api),
        Err(Rejection::UnknownQueue)
    );
    assert_eq!(
        e.apply(T0, join("77", "8000", 1), Cause::Api),
        Err(Rejection::UnknownAgent)
    );
}

#[test]
fn membership_survives_journal_and_snapshot_replay() {
    let mut e = Engine::new(model(true, 30));
    let mut journal = Vec::new();
    for cmd in [
        join("1001", "8001", 3),
        login("1001", Target::All),
        leave("1002", "8000"),
        acd("1001", "c1", "8000"),
        end("1001", "c1"),
    ] {
        e.apply(T0, cmd, Cause::Api).unwrap();
        journal.push(e.take_changes());
    }
    let from_journal = {
        let mut r = Engine::new(model(true, 30));
        for rec in journal.clone() {
            for c in rec {
                r.restore(c).unwrap();
            }
        }
        r
    };
    let from_snapshot = {
        let mut r = Engine::new(model(true, 30));
        for c in e.export() {
            r.restore(c).unwrap();
        }
        r
    };
    for r in [&from_journal, &from_snapshot] {
        for x in ["1001", "1002"] {
            assert_eq!(r.agent(x), e.agent(x), "agent {x}");
        }
        assert_eq!(r.next_deadline(), e.next_deadline());
        assert_eq!(r.export(), e.export());
    }
    // A membership naming a queue no longer configured keeps the rest.
    let mut r = Engine::new(model(true, 30));
    let skipped = r.restore(Change::Membership {
        agent: a("1001"),
        queues: vec![
            Member {
                queue: "8001".into(),
                skill_level: 2,
            },
            Member {
                queue: "9".into(),
                skill_level: 2,
            },
        ],
    });
    assert!(matches!(skipped, Err(RestoreSkip::UnknownQueue { .. })));
    assert_eq!(queues_of(&r, "1001"), [("8001".into(), LoggedOut, 2)]);
}

#[test]
fn undo_record_reverts_a_membership_change() {
    let mut e = Engine::new(model(true, 0));
    e.apply(T0, login("1002", Target::All), Cause::Fac).unwrap();
    let _ = e.take_changes();
    let before = e.agent("1002");
    for cmd in [leave("1002", "8001"), join("1002", "8001", 9)] {
        let undo = e.undo_record(&cmd);
        e.apply(T0 + 5, cmd, Cause::Api).unwrap();
        for c in undo {
            e.restore(c).unwrap();
        }
        assert_eq!(e.agent("1002"), before);
    }
}
