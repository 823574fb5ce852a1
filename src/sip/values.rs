//! Small parsers of header values the UAS reads: media types, event
//! packages, the URI in a Contact, and a comma-joined list.

use bytes::Bytes;

/// `application/SDP; charset=x` → `application/sdp` (RFC 3261 §20.15:
/// media types are case-insensitive; parameters dropped).
pub fn media_type(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The package of an `Event` value (`as-feature-event;id=1` →
/// `as-feature-event`; RFC 6665 §8.2.1, compared case-insensitively here
/// because phones vary).
pub fn event_type(v: &[u8]) -> String {
    media_type(v)
}

/// True if an `Accept` value takes SDP (RFC 3261 §20.1).
pub fn accepts_sdp(v: &[u8]) -> bool {
    matches!(
        media_type(v).as_str(),
        "application/sdp" | "application/*" | "*/*"
    )
}

/// True if an `Accept` value (a comma-separated list) takes
/// `multipart/mixed` (RFC 2046 §5.1.3), as a full feature-key state is sent.
pub fn accepts_multipart(v: &[u8]) -> bool {
    v.split(|&b| b == b',').any(|t| {
        matches!(
            media_type(t).as_str(),
            "multipart/mixed" | "multipart/*" | "*/*"
        )
    })
}

/// The URI inside a Contact value (`"A" <sip:a@h>;expires=1` → `sip:a@h`).
pub fn contact_uri(v: &[u8]) -> Bytes {
    let uri = match (memchr::memchr(b'<', v), memchr::memchr(b'>', v)) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => {
            let end = memchr::memchr(b';', v).unwrap_or(v.len());
            v[..end].trim_ascii()
        }
    };
    Bytes::copy_from_slice(uri)
}

/// Header values joined with `", "` (e.g. an `Unsupported` list).
pub fn join(values: &[Bytes]) -> String {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_uri_extraction() {
        assert_eq!(
            contact_uri(b"\"A\" <sip:a@h:5060;transport=udp>;expires=1"),
            "sip:a@h:5060;transport=udp"
        );
        assert_eq!(contact_uri(b"sip:a@h;expires=1"), "sip:a@h");
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(b"Application/SDP ; charset=utf-8"),
            "application/sdp"
        );
        assert!(accepts_sdp(b"application/*"));
        assert!(!accepts_sdp(b"text/nobodyknowsthis"));
        assert_eq!(event_type(b"As-Feature-Event;id=1"), "as-feature-event");
        assert!(accepts_multipart(
            b"application/x-as-feature-event+xml, Multipart/Mixed;q=0.5"
        ));
        assert!(accepts_multipart(b"*/*"));
        assert!(!accepts_multipart(b"application/x-as-feature-event+xml"));
    }
}
