//! History on a virtual clock: a scripted day of changes from the real
//! engine, written, reopened, compacted and folded into reports whose
//! times add up to the range.

use std::fs;

use super::day::{day_start, days_from_civil};
use super::*;
use crate::engine::{
    AgentDef, AgentState, CallKind, Cause, Command, Engine, Model, QueueDef, ReasonDef, ReasonRef,
    Target,
};
use AgentState::*;

const H: Millis = 3_600_000;
const M: Millis = 60_000;

fn day0() -> Millis {
    day_start(days_from_civil(2025, 3, 3))
}

fn engine() -> Engine {
    let q = |n: &str, auto_ready, wrap_up_secs| QueueDef {
        number: n.into(),
        name: format!("Q{n}"),
        auto_ready,
        wrap_up_secs,
        not_ready_after_other_call: false,
    };
    Engine::new(Model {
        queues: vec![q("8000", true, 60), q("8001", false, 0)],
        agents: vec![
            AgentDef {
                extension: "1001".into(),
                name: "Alice".into(),
                queues: vec!["8000".into(), "8001".into()],
            },
            AgentDef {
                extension: "1002".into(),
                name: "Bob".into(),
                queues: vec!["8000".into()],
            },
        ],
        reasons: vec![
            ReasonDef {
                code: 1,
                name: "BREAK".into(),
            },
            ReasonDef {
                code: 2,
                name: "LUNCH".into(),
            },
        ],
    })
}

fn all(agent: &str) -> (crate::engine::AgentId, Target) {
    (agent.into(), Target::All)
}

/// The scripted day: returns every event with its time, in order.
fn scripted_day(e: &mut Engine, d: Millis) -> Vec<Event> {
    let mut out = Vec::new();
    let run = |out: &mut Vec<Event>, e: &mut Engine, at: Millis, cmd: Command| {
        out.extend(e.apply(at, cmd, Cause::Fac).expect("applies").events);
    };
    let (a, t) = all("1001");
    run(
        &mut out,
        e,
        d + 8 * H,
        Command::Login {
            agent: a.clone(),
            target: t.clone(),
        },
    );
    run(
        &mut out,
        e,
        d + 9 * H,
        Command::CallStart {
            agent: a.clone(),
            call_id: "c1".into(),
            kind: CallKind::Acd {
                queue: "8000".into(),
            },
        },
    );
    run(
        &mut out,
        e,
        d + 9 * H + 10 * M,
        Command::CallEnd {
            agent: a.clone(),
            call_id: "c1".into(),
        },
    );
    assert_eq!(e.next_deadline(), Some(d + 9 * H + 11 * M));
    out.extend(e.handle_timeout(d + 9 * H + 11 * M));
    let nr = |code| Command::NotReady {
        agent: a.clone(),
        target: t.clone(),
        reason: Some(ReasonRef::Code(code)),
    };
    run(&mut out, e, d + 10 * H, nr(1));
    run(
        &mut out,
        e,
        d + 10 * H + 15 * M,
        Command::Ready {
            agent: a.clone(),
            target: t.clone(),
        },
    );
    run(&mut out, e, d + 12 * H, nr(2));
    run(
        &mut out,
        e,
        d + 13 * H,
        Command::Ready {
            agent: a.clone(),
            target: t.clone(),
        },
    );
    run(
        &mut out,
        e,
        d + 17 * H,
        Command::Logout {
            agent: a.clone(),
            target: t.clone(),
        },
    );
    out
}

fn pairs() -> Vec<(crate::engine::AgentId, crate::engine::QueueId)> {
    vec![
        ("1001".into(), "8000".into()),
        ("1001".into(), "8001".into()),
        ("1002".into(), "8000".into()),
    ]
}

fn get<'a>(r: &'a HashMap<(AgentId, QueueId), Totals>, agent: &str, queue: &str) -> &'a Totals {
    &r[&(agent.into(), queue.into())]
}

#[test]
fn a_scripted_day_adds_up_to_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d + H).unwrap();
    let events = scripted_day(&mut e, d);
    assert_eq!(events.len(), 15, "{events:#?}");
    w.write(&events).unwrap();
    w.close().unwrap();

    let r = Reader::new(dir.path());
    let rep = r.report(d, d + 24 * H, pairs()).unwrap();
    let sales = get(&rep, "1001", "8000");
    assert_eq!(sales.ms(LoggedOut), 15 * H);
    assert_eq!(sales.ms(Ready), H + 49 * M + 105 * M + 4 * H);
    assert_eq!(sales.ms(QueueCall), 10 * M);
    assert_eq!(sales.ms(WrapUp), M);
    assert_eq!(sales.ms(NotReady), 75 * M);
    assert_eq!(sales.ms(OtherCall), 0);
    assert_eq!(sales.reason_ms["BREAK"], 15 * M);
    assert_eq!(sales.reason_ms["LUNCH"], H);
    assert_eq!((sales.logins, sales.acd_calls, sales.wrap_ups), (1, 1, 1));
    let support = get(&rep, "1001", "8001");
    assert_eq!(support.ms(NotReady), 2 * H + 15 * M + H);
    assert_eq!(support.reason_ms[""], 2 * H);
    assert_eq!(support.ms(Ready), 105 * M + 4 * H);
    assert_eq!(
        (support.logins, support.acd_calls, support.wrap_ups),
        (1, 0, 0)
    );
    let bob = get(&rep, "1002", "8000");
    assert_eq!(bob.ms(LoggedOut), 24 * H);
    assert_eq!(bob.logins, 0);
    for t in rep.values() {
        assert_eq!(t.total_ms(), 24 * H);
    }

    // Part of the day: the call, the wrap-up and the start of the break.
    let rep = r
        .report(d + 9 * H + 5 * M, d + 10 * H + 5 * M, pairs())
        .unwrap();
    let sales = get(&rep, "1001", "8000");
    assert_eq!(sales.ms(QueueCall), 5 * M);
    assert_eq!(sales.ms(WrapUp), M);
    assert_eq!(sales.ms(Ready), 49 * M);
    assert_eq!(sales.reason_ms["BREAK"], 5 * M);
    assert_eq!((sales.logins, sales.acd_calls, sales.wrap_ups), (0, 0, 1));
    for t in rep.values() {
        assert_eq!(t.total_ms(), H);
    }
}

#[test]
fn days_roll_over_into_new_files_and_reports_span_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d).unwrap();
    w.write(&scripted_day(&mut e, d)).unwrap();
    w.roll(d + 24 * H).unwrap();
    let (a, t) = all("1001");
    let ev = e
        .apply(
            d + 32 * H,
            Command::Login {
                agent: a,
                target: t,
            },
            Cause::Api,
        )
        .unwrap()
        .events;
    w.write(&ev).unwrap();
    w.close().unwrap();
    assert_eq!(
        list_days(dir.path()).unwrap(),
        vec![day_of(d), day_of(d) + 1]
    );
    let r = Reader::new(dir.path());
    let rep = r.report(d + 12 * H, d + 36 * H, pairs()).unwrap();
    let sales = get(&rep, "1001", "8000");
    assert_eq!(sales.reason_ms["LUNCH"], H);
    assert_eq!(sales.ms(Ready), 4 * H + 4 * H);
    assert_eq!(sales.ms(LoggedOut), 15 * H);
    assert_eq!(sales.logins, 1);
    // A range inside the second day starts from that file's checkpoint.
    let rep = r.report(d + 33 * H, d + 34 * H, pairs()).unwrap();
    assert_eq!(get(&rep, "1001", "8000").ms(Ready), H);
    assert_eq!(get(&rep, "1001", "8001").ms(NotReady), H);
}

#[test]
fn a_restart_reconciles_a_change_lost_before_it_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d).unwrap();
    let (a, t) = all("1001");
    let login = e
        .apply(
            d + 8 * H,
            Command::Login {
                agent: a.clone(),
                target: t.clone(),
            },
            Cause::Fac,
        )
        .unwrap()
        .events;
    w.write(&login).unwrap();
    // Not-ready at 09:00 reached the journal, not the history (kill -9).
    let _lost = e
        .apply(
            d + 9 * H,
            Command::NotReady {
                agent: a,
                target: t,
                reason: Some(ReasonRef::Code(1)),
            },
            Cause::Fac,
        )
        .unwrap();
    drop(w);
    let initial: Vec<StateAt> = ["8000", "8001"]
        .iter()
        .map(|q| {
            let v = e.agent("1001").unwrap();
            let v = v.queues.iter().find(|v| v.queue == *q).unwrap().clone();
            StateAt {
                at: d + 10 * H,
                agent: "1001".into(),
                queue: v.queue,
                state: v.state,
                reason: v.reason,
                pending: v.pending,
                since: v.since,
            }
        })
        .collect();
    Writer::open(dir.path(), 0, false, initial, d + 10 * H)
        .unwrap()
        .close()
        .unwrap();
    let rep = Reader::new(dir.path())
        .report(d, d + 11 * H, pairs())
        .unwrap();
    let sales = get(&rep, "1001", "8000");
    assert_eq!(sales.ms(Ready), H);
    assert_eq!(sales.reason_ms["BREAK"], 2 * H);
    assert_eq!(sales.total_ms(), 11 * H);
}

#[test]
fn a_torn_tail_is_cut_and_a_damaged_file_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d).unwrap();
    let events = scripted_day(&mut e, d);
    w.write(&events).unwrap();
    w.close().unwrap();
    let path = dir.path().join(file_name(day_of(d)));
    let good = fs::read(&path).unwrap();
    // Half a record at the end, as a crash mid-write leaves it.
    let mut torn = good.clone();
    torn.extend_from_slice(&good[8..20]);
    fs::write(&path, &torn).unwrap();
    Writer::open(dir.path(), 0, false, Vec::new(), d + 20 * H)
        .unwrap()
        .close()
        .unwrap();
    let after = fs::read(&path).unwrap();
    assert_eq!(&after[..good.len()], &good[..], "the good records stay");
    let (evs, _) = Reader::new(dir.path())
        .changes("1001", d, d + 24 * H, None, 100)
        .unwrap();
    assert_eq!(evs, events);

    // A flipped byte in the middle: the file is kept, renamed, not mixed.
    let mut bad = after.clone();
    bad[40] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    Writer::open(dir.path(), 0, false, Vec::new(), d + 21 * H)
        .unwrap()
        .close()
        .unwrap();
    let aside = dir.path().join(format!("{}.damaged", file_name(day_of(d))));
    assert_eq!(fs::read(aside).unwrap(), bad);
    assert!(fs::read(&path).unwrap().starts_with(&format::HEADER));
}

#[test]
fn compaction_removes_only_days_older_than_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut w = Writer::open(dir.path(), 2, false, Vec::new(), d).unwrap();
    for k in 1..=3 {
        w.roll(d + k * 24 * H).unwrap();
    }
    // Day 3 with 2 days kept: days 1, 2 and 3 stay, day 0 is gone.
    let days = list_days(dir.path()).unwrap();
    assert_eq!(days, vec![day_of(d) + 1, day_of(d) + 2, day_of(d) + 3]);
    w.close().unwrap();
    let r = Reader::new(dir.path());
    match r.report(d + 12 * H, d + 30 * H, pairs()) {
        Err(HistoryError::BeforeRetention { first }) => assert_eq!(first, "2025-03-04"),
        other => panic!("{other:?}"),
    }
    let rep = r.report(d + 24 * H, d + 48 * H, pairs()).unwrap();
    assert_eq!(get(&rep, "1002", "8000").ms(LoggedOut), 24 * H);
    // Reopening later with no retention (0) removes nothing.
    Writer::open(dir.path(), 0, false, Vec::new(), d + 400 * 24 * H)
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(list_days(dir.path()).unwrap().len(), 4);
}

#[test]
fn changes_are_paged_per_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d).unwrap();
    let events = scripted_day(&mut e, d);
    w.write(&events).unwrap();
    w.close().unwrap();
    let r = Reader::new(dir.path());
    let mut cursor = None;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let (page, next) = r
            .changes("1001", d, d + 24 * H, cursor.as_deref(), 5)
            .unwrap();
        assert!(page.len() <= 5);
        got.extend(page);
        pages += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, events);
    assert_eq!(pages, 4);
    let (none, _) = r.changes("1002", d, d + 24 * H, None, 5).unwrap();
    assert!(none.is_empty());
    assert!(matches!(
        r.changes("1001", d, d + 24 * H, Some("junk"), 5),
        Err(HistoryError::BadCursor(_))
    ));
}

#[test]
fn records_round_trip_and_other_versions_are_refused() {
    let ev = Event {
        agent: "1001".into(),
        queue: "8000".into(),
        from: NotReady,
        to: NotReady,
        reason: Some("BREAK".into()),
        pending: Some(Ready),
        cause: Cause::FeatureSync,
        at: 1_740_000_000_123,
        removed: false,
    };
    let left = Event {
        from: Ready,
        to: LoggedOut,
        reason: None,
        pending: None,
        cause: Cause::Api,
        removed: true,
        ..ev.clone()
    };
    let recs = [
        Record::Change(ev.clone()),
        Record::Change(left.clone()),
        Record::Begin { at: 7, count: 2 },
        Record::State(StateAt {
            at: 7,
            agent: "a.b-c".into(),
            queue: "1234567890".into(),
            state: WrapUp,
            reason: None,
            pending: None,
            since: 5,
        }),
    ];
    let mut buf = Vec::new();
    for r in &recs {
        format::encode(r, format::VERSION, &mut buf);
    }
    let mut pos = 0;
    for r in &recs {
        let (got, n) = format::decode(&buf[pos..], format::VERSION).unwrap();
        assert_eq!(&got, r);
        pos += n;
    }
    assert_eq!(pos, buf.len());
    assert_eq!(
        format::decode(&buf[..buf.len() - 1], format::VERSION).map(|_| ()),
        Ok(()),
        "the first record is whole"
    );
    let mut flipped = buf.clone();
    flipped[12] ^= 1;
    assert_eq!(
        format::decode(&flipped, format::VERSION),
        Err(format::DecodeError::Damaged)
    );
    assert_eq!(
        format::decode(&buf[..10], format::VERSION),
        Err(format::DecodeError::Torn)
    );

    // Version 1: a change has no flags byte, and a removal cannot be said
    // (it reads back as the plain change to LOGGED_OUT it also is).
    let mut v1 = Vec::new();
    format::encode(&Record::Change(ev.clone()), 1, &mut v1);
    format::encode(&Record::Change(left.clone()), 1, &mut v1);
    let mut one_v2 = Vec::new();
    format::encode(&Record::Change(ev.clone()), 2, &mut one_v2);
    let mut one_v1 = Vec::new();
    format::encode(&Record::Change(ev.clone()), 1, &mut one_v1);
    assert_eq!(
        one_v1.len() + 1,
        one_v2.len(),
        "version 2 adds the flags byte"
    );
    let (a, n) = format::decode(&v1, 1).unwrap();
    let (b, m) = format::decode(&v1[n..], 1).unwrap();
    assert_eq!(n + m, v1.len());
    assert_eq!(a, Record::Change(ev.clone()));
    assert_eq!(
        b,
        Record::Change(Event {
            removed: false,
            ..left.clone()
        })
    );
    // Each version's change is refused by the other's parser (one byte
    // more or less), never misread.
    assert_eq!(format::decode(&v1, 2), Err(format::DecodeError::Damaged));
    assert_eq!(format::decode(&buf, 1), Err(format::DecodeError::Damaged));
    // Unknown flags are damage, not guessed at.
    let mut odd = Vec::new();
    format::encode(&Record::Change(left), 2, &mut odd);
    let last = odd.len() - 1;
    odd[last] = 2;
    let crc = crc32fast::hash(&odd[8..]);
    odd[4..8].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(format::decode(&odd, 2), Err(format::DecodeError::Damaged));

    let mut v1_header = format::HEADER;
    v1_header[7] = 1;
    assert_eq!(format::check_header(&v1_header), Ok(1));
    assert_eq!(format::check_header(&format::HEADER), Ok(2));
    let mut v3 = format::HEADER;
    v3[7] = 3;
    assert_eq!(
        format::check_header(&v3),
        Err(format::DecodeError::Version(3))
    );
    assert_eq!(
        format::check_header(b"FACDJRNL"),
        Err(format::DecodeError::NotHistory)
    );
}

#[test]
fn leaving_a_queue_is_kept_and_a_version_1_file_is_appended_in_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = day0();
    let mut e = engine();
    let mut evs = Vec::new();
    let mut run = |e: &mut Engine, at: Millis, cmd: Command| {
        evs.extend(e.apply(at, cmd, Cause::Api).expect("applies").events);
    };
    run(
        &mut e,
        d + 8 * H,
        Command::Login {
            agent: "1001".into(),
            target: Target::Queue("8000".into()),
        },
    );
    run(
        &mut e,
        d + 9 * H,
        Command::Leave {
            agent: "1001".into(),
            queue: "8000".into(),
        },
    );
    run(
        &mut e,
        d + 10 * H,
        Command::Join {
            agent: "1001".into(),
            queue: "8000".into(),
            skill_level: 1,
        },
    );
    let flags: Vec<(AgentState, AgentState, bool)> =
        evs.iter().map(|e| (e.from, e.to, e.removed)).collect();
    assert_eq!(
        flags,
        [
            (LoggedOut, Ready, false),
            (Ready, LoggedOut, true),
            (LoggedOut, LoggedOut, false)
        ]
    );

    // A new file is version 2 and keeps the removal.
    let mut w = Writer::open(dir.path(), 0, false, Vec::new(), d).unwrap();
    w.write(&evs).unwrap();
    w.close().unwrap();
    let r = Reader::new(dir.path());
    let (got, _) = r.changes("1001", d, d + 24 * H, None, 100).unwrap();
    assert_eq!(got, evs);
    let rep = r.report(d, d + 24 * H, pairs()).unwrap();
    let t = get(&rep, "1001", "8000");
    assert_eq!((t.ms(Ready), t.ms(LoggedOut), t.logins), (H, 23 * H, 1));

    // Today's file from an older facd (version 1): appended in version 1,
    // the removal read back as a change to LOGGED_OUT; reports the same.
    let old = tempfile::tempdir().unwrap();
    let path = old.path().join(file_name(day_of(d)));
    let mut bytes = format::HEADER.to_vec();
    bytes[7] = 1;
    format::encode(&Record::Begin { at: d, count: 0 }, 1, &mut bytes);
    fs::write(&path, &bytes).unwrap();
    let mut w = Writer::open(old.path(), 0, false, Vec::new(), d + H).unwrap();
    w.write(&evs).unwrap();
    w.close().unwrap();
    assert_eq!(fs::read(&path).unwrap()[7], 1, "the file stays version 1");
    let r = Reader::new(old.path());
    let (got, _) = r.changes("1001", d, d + 24 * H, None, 100).unwrap();
    let plain: Vec<Event> = evs
        .iter()
        .map(|e| Event {
            removed: false,
            ..e.clone()
        })
        .collect();
    assert_eq!(got, plain);
    let rep = r.report(d, d + 24 * H, pairs()).unwrap();
    let t = get(&rep, "1001", "8000");
    assert_eq!((t.ms(Ready), t.ms(LoggedOut), t.logins), (H, 23 * H, 1));
}
