//! Builds RFC 3863 `application/pidf+xml` documents, the body of the
//! `presence` event package (RFC 3856) that some phones' BLF keys
//! subscribe to instead of `dialog`: one tuple with a `basic` status and a
//! human `note`. Pure.

use std::fmt::Write as _;

/// The event package name (RFC 3856 §6.1).
pub const EVENT: &str = "presence";
/// The body's media type (RFC 3863 §4).
pub const CONTENT_TYPE: &str = "application/pidf+xml";
/// The document namespace (RFC 3863 §4).
pub const NS: &str = "urn:ietf:params:xml:ns:pidf";
/// The one tuple's `id`. It is an `xs:ID` (RFC 3863 schema), so it may not
/// be the star code itself (`*38…` is not an XML name).
pub const TUPLE_ID: &str = "facd-lamp";

/// The `basic` status (RFC 3863 §4: `open` = able to accept communication,
/// `closed` = not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    /// `open`.
    Open,
    /// `closed`.
    Closed,
}

impl Basic {
    /// The `basic` element's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// A `presence` document for `entity` (the subscribed URI; RFC 3863 §4
/// `entity` attribute) with one tuple of status `basic`, and `note` after
/// the tuple (the schema puts the presence-level notes after the tuples).
pub fn body(entity: &str, basic: Basic, note: Option<&str>) -> String {
    let mut s = String::with_capacity(320);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
    let _ = write!(
        s,
        "<presence xmlns=\"{NS}\" entity=\"{}\">\r\n",
        quick_xml::escape::escape(entity)
    );
    let _ = write!(
        s,
        "<tuple id=\"{TUPLE_ID}\">\r\n<status>\r\n<basic>{}</basic>\r\n</status>\r\n</tuple>\r\n",
        basic.as_str()
    );
    if let Some(note) = note {
        let _ = write!(s, "<note>{}</note>\r\n", quick_xml::escape::escape(note));
    }
    s.push_str("</presence>\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::NsReader;

    /// The resolved (namespace, local name) path of every element, with
    /// its text when it has some.
    fn paths(xml: &str) -> Vec<(String, String)> {
        let mut r = NsReader::from_str(xml);
        let (mut stack, mut out) = (Vec::<String>::new(), Vec::new());
        loop {
            match r.read_resolved_event().unwrap() {
                (ns, Event::Start(e)) => {
                    assert_eq!(
                        ns,
                        ResolveResult::Bound(quick_xml::name::Namespace(NS.as_bytes()))
                    );
                    stack.push(String::from_utf8(e.local_name().as_ref().to_vec()).unwrap());
                    out.push((stack.join("/"), String::new()));
                }
                (_, Event::Text(t)) => {
                    let t = t.unescape().unwrap().trim().to_string();
                    if !t.is_empty() {
                        out.last_mut().unwrap().1 = t;
                    }
                }
                (_, Event::End(_)) => {
                    stack.pop();
                }
                (_, Event::Eof) => break,
                _ => {}
            }
        }
        out
    }

    #[test]
    fn open_and_closed_with_a_note() {
        for basic in [Basic::Open, Basic::Closed] {
            let xml = body("sip:*388000@pbx.example.com", basic, Some("Logged in: on"));
            assert_eq!(
                paths(&xml),
                [
                    ("presence".into(), String::new()),
                    ("presence/tuple".into(), String::new()),
                    ("presence/tuple/status".into(), String::new()),
                    ("presence/tuple/status/basic".into(), basic.as_str().into()),
                    ("presence/note".into(), "Logged in: on".into()),
                ]
            );
            assert!(xml.contains("entity=\"sip:*388000@pbx.example.com\""));
            assert!(xml.contains("<tuple id=\"facd-lamp\">"));
        }
    }

    #[test]
    fn no_note_and_escaping() {
        let xml = body("sip:a&b@h", Basic::Open, None);
        assert!(!xml.contains("note"));
        assert!(xml.contains("entity=\"sip:a&amp;b@h\""));
        let xml = body("sip:x@h", Basic::Closed, Some("<b>&"));
        assert_eq!(paths(&xml).last().unwrap().1, "<b>&");
    }
}
