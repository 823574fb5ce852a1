//! Builds RFC 4235 `application/dialog-info+xml` documents, the body of
//! the `dialog` event package that Busy Lamp Field keys subscribe to.
//!
//! facd describes at most one pseudo-dialog per document: the lamp of a
//! star-code address. Phones light a key while a dialog is `confirmed`,
//! blink while it is `early` (ringing), and darken it when it is
//! `terminated` or absent. Pure: the caller keeps the version.

use std::fmt::Write as _;

/// The event package name (RFC 4235 §3.1).
pub const EVENT: &str = "dialog";
/// The body's media type (RFC 4235 §4).
pub const CONTENT_TYPE: &str = "application/dialog-info+xml";
/// The document namespace (RFC 4235 §4).
pub const NS: &str = "urn:ietf:params:xml:ns:dialog-info";

/// Whether a document is the whole state or a change (RFC 4235 §4.1,
/// `state` attribute of `dialog-info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    /// `full`: replaces what the subscriber knows.
    Full,
    /// `partial`: only the dialogs listed changed.
    Partial,
}

impl DocState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
        }
    }
}

/// A dialog's state (RFC 4235 §3.7.1, the dialog state machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// `trying`.
    Trying,
    /// `proceeding`.
    Proceeding,
    /// `early`: ringing; phones blink.
    Early,
    /// `confirmed`: established; phones light the key.
    Confirmed,
    /// `terminated`: gone; phones darken the key.
    Terminated,
}

impl DialogState {
    /// The `state` element's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trying => "trying",
            Self::Proceeding => "proceeding",
            Self::Early => "early",
            Self::Confirmed => "confirmed",
            Self::Terminated => "terminated",
        }
    }
}

/// Which side the observed entity is on (RFC 4235 §4.1.1, `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `initiator`: the entity called.
    Initiator,
    /// `recipient`: the entity is called; with `early`, phones show it as
    /// ringing (blinking, offered for pickup).
    Recipient,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Self::Initiator => "initiator",
            Self::Recipient => "recipient",
        }
    }
}

/// One `dialog` element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialog<'a> {
    /// The mandatory `id` attribute (RFC 4235 §4.1.1): stable for the
    /// same dialog across documents.
    pub id: &'a str,
    /// Its state.
    pub state: DialogState,
    /// Its direction, when known.
    pub direction: Option<Direction>,
}

/// A `dialog-info` document (RFC 4235 §4.1) for `entity` (the subscribed
/// URI), with `version` (starts at 0 and rises by one per document sent on
/// the subscription; a subscriber drops a version not above the last one
/// it has, RFC 4235 §4.2, so it must keep rising across restarts), and at
/// most one dialog. A full document with no dialog says "no dialogs".
///
/// Keep `version` below 2^31: phones store it in a C `int`.
pub fn body(entity: &str, version: u32, state: DocState, dialog: Option<&Dialog<'_>>) -> String {
    let mut s = String::with_capacity(320);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    let _ = write!(
        s,
        "<dialog-info xmlns=\"{NS}\" version=\"{version}\" state=\"{}\" entity=\"{}\">\r\n",
        state.as_str(),
        quick_xml::escape::escape(entity)
    );
    if let Some(d) = dialog {
        let _ = write!(s, "<dialog id=\"{}\"", quick_xml::escape::escape(d.id));
        if let Some(dir) = d.direction {
            let _ = write!(s, " direction=\"{}\"", dir.as_str());
        }
        let _ = write!(
            s,
            ">\r\n<state>{}</state>\r\n</dialog>\r\n",
            d.state.as_str()
        );
    }
    s.push_str("</dialog-info>\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::NsReader;

    /// (resolved namespace, local name, attributes) of a start tag.
    type El = (String, String, Vec<(String, String)>);

    /// Every start tag and the text of every `state` element.
    fn elements(xml: &str) -> (Vec<El>, Vec<String>) {
        let mut r = NsReader::from_str(xml);
        let (mut els, mut states, mut in_state) = (Vec::new(), Vec::new(), false);
        loop {
            match r.read_resolved_event().unwrap() {
                (ns, Event::Start(e) | Event::Empty(e)) => {
                    let ns = match ns {
                        ResolveResult::Bound(n) => String::from_utf8(n.0.to_vec()).unwrap(),
                        _ => String::new(),
                    };
                    let local = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                    in_state = local == "state";
                    let attrs = e
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap();
                            (
                                String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                                a.unescape_value().unwrap().into_owned(),
                            )
                        })
                        .collect();
                    els.push((ns, local, attrs));
                }
                (_, Event::Text(t)) if in_state => {
                    states.push(t.unescape().unwrap().trim().to_string());
                    in_state = false;
                }
                (_, Event::Eof) => break,
                _ => {}
            }
        }
        (els, states)
    }

    #[test]
    fn root_attributes_and_namespace() {
        let xml = body("sip:*388000@pbx.example.com", 7, DocState::Full, None);
        let (els, states) = elements(&xml);
        assert_eq!(els.len(), 1, "no dialog element: {xml}");
        let (ns, name, attrs) = &els[0];
        assert_eq!((ns.as_str(), name.as_str()), (NS, "dialog-info"));
        let get = |k: &str| attrs.iter().find(|a| a.0 == k).map(|a| a.1.as_str());
        assert_eq!(get("version"), Some("7"));
        assert_eq!(get("state"), Some("full"));
        assert_eq!(get("entity"), Some("sip:*388000@pbx.example.com"));
        assert!(states.is_empty());
    }

    #[test]
    fn one_dialog_with_each_state() {
        for (st, word) in [
            (DialogState::Trying, "trying"),
            (DialogState::Proceeding, "proceeding"),
            (DialogState::Early, "early"),
            (DialogState::Confirmed, "confirmed"),
            (DialogState::Terminated, "terminated"),
        ] {
            let d = Dialog {
                id: "*36",
                state: st,
                direction: Some(Direction::Recipient),
            };
            let xml = body("sip:*36@h", 0, DocState::Partial, Some(&d));
            let (els, states) = elements(&xml);
            let names: Vec<_> = els.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
            assert_eq!(
                names,
                [(NS, "dialog-info"), (NS, "dialog"), (NS, "state")],
                "{xml}"
            );
            assert!(els[0].2.contains(&("state".into(), "partial".into())));
            assert!(els[1].2.contains(&("id".into(), "*36".into())));
            assert!(els[1].2.contains(&("direction".into(), "recipient".into())));
            assert_eq!(states, [word]);
        }
        let d = Dialog {
            id: "x",
            state: DialogState::Confirmed,
            direction: None,
        };
        let xml = body("sip:x@h", 1, DocState::Full, Some(&d));
        assert!(!xml.contains("direction"), "{xml}");
        let d = Dialog {
            direction: Some(Direction::Initiator),
            ..d
        };
        assert!(body("sip:x@h", 1, DocState::Full, Some(&d)).contains("direction=\"initiator\""));
    }

    #[test]
    fn attribute_values_are_escaped() {
        let d = Dialog {
            id: "a\"<b>&",
            state: DialogState::Early,
            direction: None,
        };
        let xml = body("sip:\"x\"<y>@h&z", u32::MAX, DocState::Full, Some(&d));
        let (els, _) = elements(&xml);
        assert!(els[0]
            .2
            .contains(&("entity".into(), "sip:\"x\"<y>@h&z".into())));
        assert!(els[0].2.contains(&("version".into(), u32::MAX.to_string())));
        assert!(els[1].2.contains(&("id".into(), "a\"<b>&".into())));
    }
}
