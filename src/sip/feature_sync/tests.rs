//! Tests of the `as-feature-event` bodies against the element names the
//! phones' code reads, and of the parser on phone-shaped request bodies
//! (`sip-fixtures/feature-keys/`).

use super::*;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// One element of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct El {
    /// Qualified names from the root, `/`-joined, as written (prefixes
    /// kept): the path a DOM-by-name lookup (Yealink's pugixml, the
    /// AudioCodes SDK's select) walks.
    path: String,
    /// The resolved namespace.
    ns: Option<String>,
    /// Trimmed text.
    text: String,
    attrs: Vec<(String, String)>,
}

fn attrs(e: &BytesStart<'_>) -> Vec<(String, String)> {
    e.attributes()
        .map(|a| {
            let a = a.unwrap();
            (
                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                a.unescape_value().unwrap().into_owned(),
            )
        })
        .collect()
}

/// Every element of `xml`, in document order (one document).
fn elements(xml: &str) -> Vec<El> {
    let mut r = NsReader::from_str(xml);
    let (mut stack, mut out, mut open) = (Vec::<String>::new(), Vec::<El>::new(), Vec::new());
    loop {
        let (ns, ev) = r.read_resolved_event().unwrap();
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8(n.0.to_vec()).unwrap()),
            _ => None,
        };
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                stack.push(String::from_utf8(e.name().as_ref().to_vec()).unwrap());
                out.push(El {
                    path: stack.join("/"),
                    ns,
                    text: String::new(),
                    attrs: attrs(&e),
                });
                if empty {
                    stack.pop();
                } else {
                    open.push(out.len() - 1);
                }
            }
            Event::Text(t) => {
                let t = t.unescape().unwrap().trim().to_string();
                if let Some(&i) = open.last() {
                    out[i].text.push_str(&t);
                }
            }
            Event::End(_) => {
                stack.pop();
                open.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn find<'a>(els: &'a [El], path: &str) -> Option<&'a El> {
    els.iter().find(|e| e.path == path)
}

const ALL_ACD: [AcdState; 6] = [
    AcdState::LoggedOff,
    AcdState::LoggedOn,
    AcdState::Ready,
    AcdState::NotReady { reason: None },
    AcdState::NotReady { reason: Some(3) },
    AcdState::WorkingAfterCall,
];

#[test]
fn each_acd_state_has_its_own_unprefixed_root_in_the_csta_namespace() {
    let roots: Vec<_> = ALL_ACD.iter().map(|s| s.root()).collect();
    assert_eq!(
        roots,
        [
            "AgentLoggedOffEvent",
            "AgentLoggedOnEvent",
            "AgentReadyEvent",
            "AgentNotReadyEvent",
            "AgentNotReadyEvent",
            "AgentWorkingAfterCallEvent",
        ]
    );
    for state in ALL_ACD {
        let xml = agent_event_body("1001", "1001", state);
        let els = elements(&xml);
        let root = &els[0];
        // Phones compare the root's *qualified* name: no prefix allowed.
        assert_eq!(root.path, state.root(), "{xml}");
        assert_eq!(root.ns.as_deref(), Some(CSTA_NS));
        assert_eq!(root.attrs, [("xmlns".to_string(), CSTA_NS.to_string())]);
        let device = find(&els, &format!("{}/device", state.root())).unwrap();
        assert_eq!(
            (device.ns.as_deref(), device.text.as_str()),
            (Some(CSTA_NS), "1001")
        );
        let agent = find(&els, &format!("{}/agentID", state.root())).unwrap();
        assert_eq!(
            (agent.ns.as_deref(), agent.text.as_str()),
            (Some(CSTA_NS), "1001")
        );
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"));
    }
}

#[test]
fn not_ready_reason_sits_at_the_literal_pri_path() {
    let xml = agent_event_body("1001", "1001", AcdState::NotReady { reason: Some(3) });
    let els = elements(&xml);
    // The exact path Yealink walks child by child and the AudioCodes SDK
    // selects: `/AgentNotReadyEvent/extensions/privateData/private/pri:AgentNotReadyReasonValue`.
    let path = "AgentNotReadyEvent/extensions/privateData/private/pri:AgentNotReadyReasonValue";
    let reason = find(&els, path).unwrap_or_else(|| panic!("no {path} in {xml}"));
    assert_eq!(reason.text, "3");
    assert_eq!(reason.ns.as_deref(), Some(BROADSOFT_NS));
    let private = find(&els, "AgentNotReadyEvent/extensions/privateData/private").unwrap();
    assert_eq!(
        private.attrs,
        [("xmlns:pri".to_string(), BROADSOFT_NS.to_string())]
    );
    assert_eq!(private.ns.as_deref(), Some(CSTA_NS));
    // Without a reason, or in another state, no private data at all.
    for state in ALL_ACD {
        if state != (AcdState::NotReady { reason: Some(3) }) {
            let xml = agent_event_body("1001", "1001", state);
            assert!(!xml.contains("extensions"), "{xml}");
        }
    }
}

#[test]
fn acd_bodies_exact() {
    let golden = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/sip-fixtures/feature-keys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    };
    assert_eq!(
        agent_event_body("1001", "1001", AcdState::NotReady { reason: Some(3) }),
        golden("notify-agent-not-ready-reason-3.xml")
    );
    assert_eq!(
        agent_event_body("1001", "1001", AcdState::Ready),
        golden("notify-agent-ready.xml")
    );
    assert_eq!(
        full_state("1001", "1001", AcdState::Ready, false),
        NotifyBody {
            content_type: "multipart/mixed;boundary=facd-as-feature-event".into(),
            body: golden("notify-full-state.txt"),
        }
    );
    // Text is escaped.
    let xml = agent_event_body("10<1", "a&b", AcdState::Ready);
    assert!(xml.contains("<device>10&lt;1</device>"), "{xml}");
    assert!(xml.contains("<agentID>a&amp;b</agentID>"), "{xml}");
}

#[test]
fn dnd_event() {
    for on in [true, false] {
        let xml = dnd_event_body("1001", on);
        let els = elements(&xml);
        assert_eq!(els[0].path, "DoNotDisturbEvent");
        assert_eq!(els[0].ns.as_deref(), Some(CSTA_NS));
        assert_eq!(find(&els, "DoNotDisturbEvent/device").unwrap().text, "1001");
        let flag = find(&els, "DoNotDisturbEvent/doNotDisturbOn").unwrap();
        // Yealink accepts exactly `true` and `false`.
        assert_eq!(flag.text, if on { "true" } else { "false" });
        assert_eq!(flag.ns.as_deref(), Some(CSTA_NS));
    }
}

#[test]
fn forwarding_event_says_off() {
    for (kind, word) in [
        (ForwardingType::Immediate, "forwardImmediate"),
        (ForwardingType::Busy, "forwardBusy"),
        (ForwardingType::NoAnswer, "forwardNoAns"),
    ] {
        let xml = forwarding_event_body("1001", kind);
        let els = elements(&xml);
        let paths: Vec<_> = els.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ForwardingEvent",
                "ForwardingEvent/device",
                "ForwardingEvent/forwardingType",
                "ForwardingEvent/forwardStatus",
            ]
        );
        assert!(els.iter().all(|e| e.ns.as_deref() == Some(CSTA_NS)));
        assert_eq!(els[2].text, word);
        assert_eq!(els[3].text, "false");
    }
}

/// Splits a multipart body on its boundary (RFC 2046 §5.1.1) into
/// (part headers, part body).
fn split_multipart(content_type: &str, body: &str) -> Vec<(String, String)> {
    let boundary = content_type
        .strip_prefix("multipart/mixed;boundary=")
        .unwrap_or_else(|| panic!("{content_type}"));
    let delimiter = format!("--{boundary}");
    let close = format!("\r\n--{boundary}--\r\n");
    assert!(body.starts_with(&delimiter), "{body}");
    assert!(body.ends_with(&close), "{body}");
    let inner = &body[delimiter.len()..body.len() - close.len()];
    inner
        .split(&format!("\r\n{delimiter}"))
        .map(|p| {
            let p = p.strip_prefix("\r\n").expect("CRLF after the delimiter");
            let (headers, part) = p.split_once("\r\n\r\n").expect("blank line after headers");
            (headers.to_string(), part.to_string())
        })
        .collect()
}

#[test]
fn full_state_is_one_multipart_with_a_part_per_feature() {
    let n = full_state("1001", "1001", AcdState::NotReady { reason: Some(2) }, true);
    let parts = split_multipart(&n.content_type, &n.body);
    let roots: Vec<_> = parts
        .iter()
        .map(|(headers, xml)| {
            assert_eq!(headers, &format!("Content-Type: {CONTENT_TYPE}"));
            let els = elements(xml);
            assert_eq!(els[0].ns.as_deref(), Some(CSTA_NS));
            els[0].path.clone()
        })
        .collect();
    assert_eq!(
        roots,
        [
            "AgentNotReadyEvent",
            "DoNotDisturbEvent",
            "ForwardingEvent",
            "ForwardingEvent",
            "ForwardingEvent",
        ]
    );
    assert!(parts[0].1.contains(">2</pri:AgentNotReadyReasonValue>"));
    assert!(parts[1].1.contains("<doNotDisturbOn>true</doNotDisturbOn>"));
    let kinds: Vec<_> = parts[2..]
        .iter()
        .map(|(_, xml)| {
            find(&elements(xml), "ForwardingEvent/forwardingType")
                .unwrap()
                .text
                .clone()
        })
        .collect();
    assert_eq!(kinds, ["forwardImmediate", "forwardBusy", "forwardNoAns"]);
}

#[test]
fn multipart_edges() {
    // One document: a plain body, as OpenSIPS sends it.
    let one = dnd_event_body("1001", true);
    assert_eq!(
        multipart(std::slice::from_ref(&one)),
        NotifyBody {
            content_type: CONTENT_TYPE.into(),
            body: one.clone(),
        }
    );
    // A part that contains the boundary: another boundary is chosen.
    let sneaky = agent_event_body("--facd-as-feature-event--", "x", AcdState::Ready);
    let n = multipart(&[sneaky.clone(), one.clone()]);
    assert_eq!(
        n.content_type,
        "multipart/mixed;boundary=facd-as-feature-event-1"
    );
    let parts = split_multipart(&n.content_type, &n.body);
    // The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1): each
    // document comes back without its last line break.
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].1, sneaky.trim_end());
    assert_eq!(parts[1].1, one.trim_end());
    // A part without a final CRLF still gets its delimiter on a new line.
    let n = multipart(&["<a/>".to_string(), "<b/>".to_string()]);
    assert_eq!(
        n.body,
        "--facd-as-feature-event\r\nContent-Type: application/x-as-feature-event+xml\r\n\r\n<a/>\r\n\
         --facd-as-feature-event\r\nContent-Type: application/x-as-feature-event+xml\r\n\r\n<b/>\r\n\
         --facd-as-feature-event--\r\n"
    );
    let parts = split_multipart(&n.content_type, &n.body);
    assert_eq!((parts[0].1.as_str(), parts[1].1.as_str()), ("<a/>", "<b/>"));
}

fn q(queue: &str, state: QueueState) -> QueueView<'_> {
    QueueView::new(queue, state)
}

#[test]
fn acd_state_of_the_queues() {
    use QueueState::*;
    let nr = |r| NotReady { reason: r };
    let cases: &[(&[QueueView<'_>], AcdState)] = &[
        (&[], AcdState::LoggedOff),
        (&[q("1", LoggedOut), q("2", LoggedOut)], AcdState::LoggedOff),
        (
            &[q("1", LoggedOut), q("2", nr(None))],
            AcdState::NotReady { reason: None },
        ),
        (
            &[q("1", nr(None)), q("2", nr(Some(4))), q("3", nr(Some(5)))],
            AcdState::NotReady { reason: Some(4) },
        ),
        (&[q("1", nr(Some(4))), q("2", Ready)], AcdState::Ready),
        (&[q("1", Ready), q("2", WrapUp)], AcdState::WorkingAfterCall),
        (
            &[q("1", WrapUp), q("2", LoggedOut)],
            AcdState::WorkingAfterCall,
        ),
    ];
    for (queues, want) in cases {
        assert_eq!(AcdState::from_queues(queues), *want, "{queues:?}");
    }
    // A pending change does not show on the ACD key until it applies.
    let pending = [QueueView {
        queue: "1",
        state: Ready,
        pending: Some(LoggedOut),
    }];
    assert_eq!(AcdState::from_queues(&pending), AcdState::Ready);
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/sip-fixtures/feature-keys/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn set_state(state: RequestedState, reason: Option<u32>) -> Result<FeatureRequest, BodyError> {
    Ok(FeatureRequest::SetAgentState { state, reason })
}

#[test]
fn parses_phone_request_bodies() {
    use RequestedState::*;
    let cases: &[(&str, Result<FeatureRequest, BodyError>)] = &[
        (
            "request-yealink-set-agent-state-logged-on.xml",
            set_state(LoggedOn, None),
        ),
        (
            "request-yealink-set-agent-state-logged-off.xml",
            set_state(LoggedOff, None),
        ),
        (
            "request-yealink-set-agent-state-ready.xml",
            set_state(Ready, None),
        ),
        (
            "request-yealink-set-agent-state-not-ready.xml",
            set_state(NotReady, Some(1)),
        ),
        (
            "request-yealink-set-agent-state-working-after-call.xml",
            set_state(WorkingAfterCall, None),
        ),
        (
            "request-audiocodes-set-agent-state-not-ready.xml",
            set_state(NotReady, Some(2)),
        ),
        (
            "request-audiocodes-set-agent-state-not-ready-no-reason.xml",
            set_state(NotReady, None),
        ),
        (
            "request-yealink-set-dnd-on.xml",
            Ok(FeatureRequest::SetDoNotDisturb { on: true }),
        ),
        (
            "request-broadworks-set-dnd-off.xml",
            Ok(FeatureRequest::SetDoNotDisturb { on: false }),
        ),
        (
            "request-yealink-set-forwarding-no-answer.xml",
            Ok(FeatureRequest::SetForwarding {
                kind: ForwardingType::NoAnswer,
                activate: true,
                forward_to: Some("8001".into()),
                ring_count: Some(3),
            }),
        ),
        (
            "request-broadworks-set-forwarding-immediate.xml",
            Ok(FeatureRequest::SetForwarding {
                kind: ForwardingType::Immediate,
                activate: true,
                forward_to: Some("2000".into()),
                ring_count: None,
            }),
        ),
    ];
    for (name, want) in cases {
        assert_eq!(&parse_request(&fixture(name)), want, "{name}");
    }
}

#[test]
fn parses_variants_phones_and_servers_produce() {
    use RequestedState::*;
    for (word, want) in [
        ("loggedOn", LoggedOn),
        ("loggedOff", LoggedOff),
        ("ready", Ready),
        ("notReady", NotReady),
        ("workingAfterCall", WorkingAfterCall),
    ] {
        // Prefixed elements, another namespace (OpenSIPS' typo), padding.
        let body = format!(
            "<csta:SetAgentState xmlns:csta=\"http://www.ecmainternational.org/standards/ecma-323/csta/ed3\">\
             <csta:device/><csta:requestedAgentState> {word} </csta:requestedAgentState></csta:SetAgentState>"
        );
        assert_eq!(
            parse_request(body.as_bytes()),
            set_state(want, None),
            "{body}"
        );
    }
    // Reason element without the prefix, CDATA, comments and entities.
    let body = "<SetAgentState><requestedAgentState>not&#82;eady</requestedAgentState><!-- x -->\
        <extensions><privateData><private><AgentNotReadyReasonValue><![CDATA[ 7 ]]></AgentNotReadyReasonValue>\
        </private></privateData></extensions></SetAgentState>";
    assert_eq!(parse_request(body.as_bytes()), set_state(NotReady, Some(7)));
    // xs:boolean's 1/0 and an empty forwardDN.
    let body = "<SetDoNotDisturb><doNotDisturbOn>1</doNotDisturbOn></SetDoNotDisturb>";
    assert_eq!(
        parse_request(body.as_bytes()),
        Ok(FeatureRequest::SetDoNotDisturb { on: true })
    );
    let body = "<SetForwarding><forwardingType>forwardBusy</forwardingType>\
        <activateForward>0</activateForward><forwardDN/></SetForwarding>";
    assert_eq!(
        parse_request(body.as_bytes()),
        Ok(FeatureRequest::SetForwarding {
            kind: ForwardingType::Busy,
            activate: false,
            forward_to: None,
            ring_count: None,
        })
    );
    // The first occurrence wins; a nested namesake is not the field.
    let body = "<SetAgentState><x><requestedAgentState>loggedOff</requestedAgentState></x>\
        <requestedAgentState>ready</requestedAgentState>\
        <requestedAgentState>loggedOff</requestedAgentState></SetAgentState>";
    assert_eq!(parse_request(body.as_bytes()), set_state(Ready, None));
}

#[test]
fn refuses_bad_bodies_with_a_reason_and_never_panics() {
    use BodyError::*;
    let cases: &[(&str, BodyError)] = &[
        ("", Malformed),
        ("not xml at all", Malformed),
        ("<SetAgentState>", Malformed),
        ("<SetAgentState><oops", Malformed),
        (
            "<SetAgentState><requestedAgentState>ready</x></SetAgentState>",
            Malformed,
        ),
        (
            "<SetAgentState><requestedAgentState>ready</requestedAgentState></SetAgentState><SetAgentState/>",
            Malformed,
        ),
        ("<SetAgentState/>trailing", Malformed),
        (
            "<SetAgentState><requestedAgentState>re&bogus;ady</requestedAgentState></SetAgentState>",
            Malformed,
        ),
        ("<AgentStateEvent/>", UnknownRequest),
        ("<SetHoteling><guestAddress/></SetHoteling>", UnknownRequest),
        ("<SetAgentState/>", BadState),
        (
            "<SetAgentState><requestedAgentState>busy</requestedAgentState></SetAgentState>",
            BadState,
        ),
        (
            "<SetAgentState><x><requestedAgentState>ready</requestedAgentState></x></SetAgentState>",
            BadState,
        ),
        (
            "<SetAgentState><requestedAgentState>notReady</requestedAgentState><AgentNotReadyReasonValue>-1</AgentNotReadyReasonValue></SetAgentState>",
            BadReason,
        ),
        ("<SetDoNotDisturb/>", BadDnd),
        (
            "<SetDoNotDisturb><doNotDisturbOn>yes</doNotDisturbOn></SetDoNotDisturb>",
            BadDnd,
        ),
        (
            "<SetForwarding><activateForward>true</activateForward></SetForwarding>",
            BadForwardingType,
        ),
        (
            "<SetForwarding><forwardingType>forwardDND</forwardingType><activateForward>true</activateForward></SetForwarding>",
            BadForwardingType,
        ),
        (
            "<SetForwarding><forwardingType>forwardBusy</forwardingType></SetForwarding>",
            BadActivate,
        ),
        (
            "<SetForwarding><forwardingType>forwardNoAns</forwardingType><activateForward>true</activateForward><ringCount>x</ringCount></SetForwarding>",
            BadRingCount,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(parse_request(body.as_bytes()).as_ref(), Err(want), "{body}");
    }
    // The reasons read as human 400 phrases.
    assert_eq!(Malformed.to_string(), "Malformed XML");
    assert_eq!(BadState.to_string(), "Unknown requestedAgentState");
    // Bounds.
    let big = format!(
        "<SetAgentState>{}</SetAgentState>",
        " ".repeat(MAX_BODY_BYTES)
    );
    assert_eq!(parse_request(big.as_bytes()), Err(TooLarge));
    let deep = format!(
        "<SetAgentState>{}{}</SetAgentState>",
        "<a>".repeat(MAX_DEPTH),
        "</a>".repeat(MAX_DEPTH)
    );
    assert_eq!(parse_request(deep.as_bytes()), Err(TooDeep));
    let ok_depth = format!(
        "<SetAgentState>{}{}<requestedAgentState>ready</requestedAgentState></SetAgentState>",
        "<a>".repeat(MAX_DEPTH - 1),
        "</a>".repeat(MAX_DEPTH - 1)
    );
    assert_eq!(
        parse_request(ok_depth.as_bytes()),
        set_state(RequestedState::Ready, None)
    );
    // Truncations, arbitrary bytes and non-UTF-8 never panic.
    for name in [
        "request-yealink-set-agent-state-not-ready.xml",
        "request-yealink-set-forwarding-no-answer.xml",
    ] {
        let body = fixture(name);
        for cut in 0..body.len() {
            let _ = parse_request(&body[..cut]);
        }
    }
    let _ = parse_request(&[0xff, 0xfe, b'<', 0, b'>']);
    let latin1 =
        b"<SetAgentState><requestedAgentState>r\xe9ady</requestedAgentState></SetAgentState>";
    assert_eq!(parse_request(latin1), Err(Malformed));
    const ALPHABET: &[u8] = b"<>/=\"' ?!-[]&;abSetAgentStaterequestedready";
    let mut x: u32 = 0x2545_f491;
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ALPHABET[x as usize % ALPHABET.len()]
            })
            .collect();
        let _ = parse_request(&bytes);
    }
}
