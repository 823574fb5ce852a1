//! The lamp table, the address grammar, the toggles and the lamp bodies.

use super::*;

fn parser() -> LampParser {
    LampParser::new(Codes::default(), ToggleCodes::default())
}

fn target(addr: &str) -> LampTarget {
    parser()
        .parse(addr.as_bytes())
        .unwrap_or_else(|e| panic!("{addr}: {e}"))
}

fn t(kind: LampKind, queue: Option<&str>, toggle: bool) -> LampTarget {
    LampTarget {
        kind,
        queue: queue.map(str::to_string),
        toggle,
    }
}

const NR: LampKind = LampKind::NotReady { reason: None };
const NR2: LampKind = LampKind::NotReady { reason: Some(2) };

#[test]
fn every_lamp_address() {
    use LampKind::*;
    let cases: &[(&str, LampTarget)] = &[
        ("*38", t(LoggedIn, None, false)),
        ("*388000", t(LoggedIn, Some("8000"), false)),
        ("*36", t(Ready, None, false)),
        ("*368000", t(Ready, Some("8000"), false)),
        ("*37", t(NR, None, false)),
        ("*378000", t(NR, Some("8000"), false)),
        ("*37*2", t(NR2, None, false)),
        ("*378000*2", t(NR2, Some("8000"), false)),
        ("*45", t(LoggedIn, None, true)),
        ("*458000", t(LoggedIn, Some("8000"), true)),
        ("*46", t(Ready, None, true)),
        ("*468000", t(Ready, Some("8000"), true)),
        (
            "*388000;phone-context=pbx.example.com",
            t(LoggedIn, Some("8000"), false),
        ),
    ];
    for (addr, want) in cases {
        assert_eq!(&target(addr), want, "{addr}");
    }
    for bad in [
        "*39", "*398000", "*45*1", "*46*1", "*4", "*47", "1001", "", "*38x", "**45",
    ] {
        assert_eq!(parser().parse(bad.as_bytes()), Err(NotALamp), "{bad:?}");
    }
    // Configured toggles.
    let p = LampParser::new(
        Codes::default(),
        ToggleCodes {
            login: "#1".into(),
            ready: "#2".into(),
        },
    );
    assert_eq!(p.parse(b"#18000"), Ok(t(LoggedIn, Some("8000"), true)));
    assert_eq!(p.parse(b"#2"), Ok(t(Ready, None, true)));
    assert_eq!(p.parse(b"*45"), Err(NotALamp));
}

#[test]
fn code_clashes() {
    let codes = Codes::default();
    assert_eq!(ToggleCodes::default().clash(&codes), None);
    let same = ToggleCodes {
        login: "*38".into(),
        ready: "*46".into(),
    };
    assert_eq!(same.clash(&codes), Some(("*38".into(), "*38".into())));
    let prefix = ToggleCodes {
        login: "*45".into(),
        ready: "*3".into(),
    };
    assert_eq!(prefix.clash(&codes), Some(("*36".into(), "*3".into())));
    let disabled = ToggleCodes {
        login: String::new(),
        ready: "*46".into(),
    };
    assert_eq!(disabled.clash(&codes), None);
}

fn q(queue: &str, state: QueueState) -> QueueView<'_> {
    QueueView::new(queue, state)
}

fn qp(queue: &str, state: QueueState, pending: QueueState) -> QueueView<'_> {
    QueueView {
        queue,
        state,
        pending: Some(pending),
    }
}

#[test]
fn lamp_table_for_one_queue() {
    use Lamp::*;
    use QueueState::*;
    let kinds = [LampKind::LoggedIn, LampKind::Ready, NR, NR2];
    // state → lamps for *38, *36, *37, *37*2.
    let table: &[(QueueState, [Lamp; 4])] = &[
        (LoggedOut, [Off, Off, Off, Off]),
        (Ready, [On, On, Off, Off]),
        (NotReady { reason: None }, [On, Off, On, Off]),
        (NotReady { reason: Some(2) }, [On, Off, On, On]),
        (NotReady { reason: Some(3) }, [On, Off, On, Off]),
        (WrapUp, [On, Blink, Blink, Off]),
    ];
    for (state, lamps) in table {
        for (kind, want) in kinds.iter().zip(lamps) {
            // The same with and without the queue in the address.
            for queue in [None, Some("8000")] {
                let got = t(*kind, queue, false).lamp(&[q("8000", *state)]);
                assert_eq!(got, *want, "{kind:?} {queue:?} in {state:?}");
            }
        }
    }
}

#[test]
fn pending_changes_blink_the_lamps_they_will_flip() {
    use Lamp::*;
    use QueueState::*;
    let kinds = [LampKind::LoggedIn, LampKind::Ready, NR, NR2];
    // On a call taken while READY (state Ready), a change waiting for the
    // call to end.
    let table: &[(QueueState, [Lamp; 4])] = &[
        (LoggedOut, [Blink, Blink, Off, Off]),
        (NotReady { reason: None }, [On, Blink, Blink, Off]),
        (NotReady { reason: Some(2) }, [On, Blink, Blink, Blink]),
        (Ready, [On, On, Off, Off]),
    ];
    for (pending, lamps) in table {
        for (kind, want) in kinds.iter().zip(lamps) {
            let got = t(*kind, None, false).lamp(&[qp("8000", Ready, *pending)]);
            assert_eq!(got, *want, "{kind:?} with pending {pending:?}");
        }
    }
    // A pending reason change while not ready: only the reason lamps move.
    let views = [qp(
        "8000",
        NotReady { reason: Some(3) },
        NotReady { reason: Some(2) },
    )];
    assert_eq!(t(NR, None, false).lamp(&views), On);
    assert_eq!(t(NR2, None, false).lamp(&views), Blink);
}

#[test]
fn lamps_over_several_queues() {
    use Lamp::*;
    use QueueState::*;
    let login = |q: Option<&str>| t(LampKind::LoggedIn, q, false);
    let ready = |q: Option<&str>| t(LampKind::Ready, q, false);
    let views = [q("8000", LoggedOut), q("8001", Ready)];
    assert_eq!(login(None).lamp(&views), On);
    assert_eq!(login(Some("8000")).lamp(&views), Off);
    assert_eq!(login(Some("8001")).lamp(&views), On);
    assert_eq!(login(Some("9999")).lamp(&views), Off, "not a member");
    assert_eq!(login(None).lamp(&[]), Off, "no queues");
    // Steadily lit somewhere wins over blinking elsewhere.
    assert_eq!(ready(None).lamp(&[q("8000", WrapUp), q("8001", Ready)]), On);
    assert_eq!(
        ready(None).lamp(&[q("8000", WrapUp), q("8001", NotReady { reason: None })]),
        Blink
    );
    assert_eq!(
        ready(Some("8001")).lamp(&[q("8000", WrapUp), q("8001", LoggedOut)]),
        Off
    );
    // The aggregate only blinks when it will flip.
    let call = [qp("8000", Ready, LoggedOut), q("8001", Ready)];
    assert_eq!(login(None).lamp(&call), On);
    assert_eq!(login(Some("8000")).lamp(&call), Blink);
    assert_eq!(login(None).lamp(&call[..1]), Blink);
}

#[test]
fn toggles() {
    use QueueState::{LoggedOut, NotReady, WrapUp};
    const READY: QueueState = QueueState::Ready;
    let tl = |q: Option<&str>| t(LampKind::LoggedIn, q, true);
    let tr = |q: Option<&str>| t(LampKind::Ready, q, true);
    let out = [q("8000", LoggedOut), q("8001", LoggedOut)];
    let half = [q("8000", LoggedOut), q("8001", NotReady { reason: None })];
    assert_eq!(tl(None).toggle_action(&out), Some(Action::Login));
    assert_eq!(tl(None).toggle_action(&half), Some(Action::Logout));
    assert_eq!(tl(Some("8000")).toggle_action(&half), Some(Action::Login));
    assert_eq!(tl(Some("8001")).toggle_action(&half), Some(Action::Logout));
    // Judged on the state after the pending change: a second press during
    // the call takes the pending logout back.
    let call = [qp("8000", READY, LoggedOut)];
    assert_eq!(tl(None).toggle_action(&call), Some(Action::Login));
    assert_eq!(tr(None).toggle_action(&call), Some(Action::Ready));
    assert_eq!(tr(None).toggle_action(&half), Some(Action::Ready));
    assert_eq!(
        tr(None).toggle_action(&[q("8000", WrapUp)]),
        Some(Action::Ready)
    );
    let mixed = [q("8000", READY), q("8001", NotReady { reason: None })];
    assert_eq!(tr(None).toggle_action(&mixed), Some(Action::NotReady));
    assert_eq!(tr(Some("8001")).toggle_action(&mixed), Some(Action::Ready));
    // Plain codes are no toggles.
    assert_eq!(target("*38").toggle_action(&out), None);
    assert_eq!(target("*46").toggle_action(&mixed), Some(Action::NotReady));
}

#[test]
fn lamp_bodies() {
    let entity = "sip:*388000@pbx.example.com";
    let login = target("*388000");
    let on = dialog_body(entity, 4, Lamp::On);
    assert!(on.contains("version=\"4\" state=\"full\""), "{on}");
    assert!(
        on.contains("<dialog id=\"facd-lamp\">\r\n<state>confirmed</state>"),
        "{on}"
    );
    let blink = dialog_body(entity, 5, Lamp::Blink);
    assert!(
        blink.contains("<dialog id=\"facd-lamp\" direction=\"recipient\">\r\n<state>early</state>"),
        "{blink}"
    );
    let off = dialog_body(entity, 6, Lamp::Off);
    assert!(off.contains("<state>terminated</state>"), "{off}");
    let p = pidf_body(entity, &login, Lamp::On);
    assert!(p.contains("<basic>closed</basic>"), "{p}");
    assert!(p.contains("<note>Logged in to 8000: on</note>"), "{p}");
    let p = pidf_body(entity, &login, Lamp::Off);
    assert!(
        p.contains("<basic>open</basic>") && p.contains(": off</note>"),
        "{p}"
    );
    assert_eq!(Lamp::Blink.basic(), Basic::Closed);
    assert_eq!(
        target("*37*2").note(Lamp::Blink),
        "Not ready (reason 2): changing"
    );
    assert_eq!(target("*368000").note(Lamp::On), "Ready in 8000: on");
    assert_eq!(
        target("*378000*2").note(Lamp::Off),
        "Not ready in 8000 (reason 2): off"
    );
}
