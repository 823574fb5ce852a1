//! SDP offer/answer for the star-code call (RFC 3264, RFC 4566): read the
//! caller's audio offer, pick PCMU or PCMA in the order the offer prefers,
//! and write the answer (or an offer when the INVITE carried none).
//!
//! facd only plays a short confirmation tone, so it answers one audio stream
//! with one G.711 codec; every other stream is refused with port 0 as
//! RFC 3264 §6 requires.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The G.711 codecs facd can send (RFC 3551 static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// µ-law, payload type 0.
    Pcmu,
    /// A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// The RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    /// The rtpmap encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }
}

/// What facd needs from an offer, borrowed from the body (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer<'a> {
    /// The `m=` lines, in order.
    pub media: Vec<OfferedMedia<'a>>,
    /// Session-level `c=` address, if any.
    pub session_addr: Option<IpAddr>,
}

/// One `m=` line of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia<'a> {
    /// `audio`, `video`, …
    pub kind: &'a str,
    /// The port (0 = refused by the offerer).
    pub port: u16,
    /// The transport protocol, e.g. `RTP/AVP`.
    pub proto: &'a str,
    /// Payload format list, in order of preference.
    pub formats: Vec<&'a str>,
    /// `a=rtpmap` entries: payload type → encoding name (any case).
    pub rtpmap: Vec<(&'a str, &'a str)>,
    /// Media-level `c=` address, if any.
    pub addr: Option<IpAddr>,
}

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not SDP text.
    #[error("the SDP body is malformed")]
    Malformed,
    /// No audio stream offers PCMU or PCMA over RTP/AVP.
    #[error("no audio stream offers PCMU or PCMA")]
    NoCommonCodec,
}

/// Parses the parts of an SDP offer that matter for the answer.
pub fn parse_offer(body: &[u8]) -> Result<Offer<'_>, SdpError> {
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed)?;
    let mut offer = Offer {
        media: Vec::new(),
        session_addr: None,
    };
    let mut saw_version = false;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        // RFC 4566 §5: `<type>=<value>`, the type one character.
        let (kind, value) = match line.as_bytes().get(1) {
            Some(b'=') => (&line[..1], &line[2..]),
            _ => line.split_once('=').ok_or(SdpError::Malformed)?,
        };
        match kind {
            "v" => saw_version = true,
            "c" => {
                let addr = parse_connection(value);
                match offer.media.last_mut() {
                    Some(m) => m.addr = addr,
                    None => offer.session_addr = addr,
                }
            }
            "m" => {
                let mut parts = value.split_ascii_whitespace();
                let kind = parts.next().ok_or(SdpError::Malformed)?;
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or(SdpError::Malformed)?;
                let proto = parts.next().ok_or(SdpError::Malformed)?;
                let formats = parts.collect();
                offer.media.push(OfferedMedia {
                    kind,
                    port,
                    proto,
                    formats,
                    rtpmap: Vec::new(),
                    addr: None,
                });
            }
            "a" => {
                if let (Some(rest), Some(m)) =
                    (value.strip_prefix("rtpmap:"), offer.media.last_mut())
                {
                    if let Some((pt, enc)) = rest.split_once(' ') {
                        let name = enc.split('/').next().unwrap_or("");
                        m.rtpmap.push((pt.trim(), name));
                    }
                }
            }
            _ => {}
        }
    }
    if !saw_version {
        return Err(SdpError::Malformed);
    }
    Ok(offer)
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    // c=IN IP4 192.0.2.1[/ttl]
    let mut parts = value.split_ascii_whitespace();
    let _net = parts.next()?;
    let _family = parts.next()?;
    parts.next()?.split('/').next()?.parse().ok()
}

impl OfferedMedia<'_> {
    /// The first of PCMU/PCMA in the offer's preference order (RFC 3264 §6.1).
    fn preferred_g711(&self) -> Option<Codec> {
        if self.kind != "audio" || self.port == 0 || !self.proto.eq_ignore_ascii_case("RTP/AVP") {
            return None;
        }
        self.formats.iter().find_map(|&f| {
            let mapped = self.rtpmap.iter().find(|(pt, _)| *pt == f).map(|(_, n)| *n);
            match (f, mapped) {
                (_, Some(n)) if n.eq_ignore_ascii_case("PCMU") => Some(Codec::Pcmu),
                (_, Some(n)) if n.eq_ignore_ascii_case("PCMA") => Some(Codec::Pcma),
                ("0", None) => Some(Codec::Pcmu),
                ("8", None) => Some(Codec::Pcma),
                _ => None,
            }
        })
    }
}

/// The answer facd sends, and where the caller wants media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP body.
    pub body: String,
    /// The chosen codec.
    pub codec: Codec,
    /// Where the caller receives RTP (None when facd made the offer).
    pub remote_rtp: Option<SocketAddr>,
}

/// Builds the answer to `offer` (RFC 3264 §6): the first audio stream with
/// PCMU or PCMA is accepted with the offer's preferred one of the two; every
/// other stream is answered with port 0.
pub fn answer(offer: &Offer<'_>, local: SocketAddr, session_id: u64) -> Result<Answer, SdpError> {
    let chosen = offer
        .media
        .iter()
        .position(|m| m.preferred_g711().is_some())
        .ok_or(SdpError::NoCommonCodec)?;
    let mut body = header(local.ip(), session_id);
    let mut codec = Codec::Pcmu;
    let mut remote_rtp = None;
    for (i, m) in offer.media.iter().enumerate() {
        if i == chosen {
            let c = m.preferred_g711().unwrap_or(Codec::Pcmu);
            codec = c;
            remote_rtp = m
                .addr
                .or(offer.session_addr)
                .map(|ip| SocketAddr::new(ip, m.port));
            let mut port = itoa::Buffer::new();
            let mut pt = itoa::Buffer::new();
            let pt = pt.format(c.payload_type());
            for part in [
                "m=audio ",
                port.format(local.port()),
                " RTP/AVP ",
                pt,
                "\r\na=rtpmap:",
                pt,
                " ",
                c.name(),
                "/8000\r\na=ptime:20\r\n",
            ] {
                body.push_str(part);
            }
        } else {
            let fmt = m.formats.first().copied().unwrap_or("0");
            let _ = write!(body, "m={} 0 {} {fmt}\r\n", m.kind, m.proto);
        }
    }
    Ok(Answer {
        body,
        codec,
        remote_rtp,
    })
}

/// The codec and address of the first audio stream with PCMU or PCMA in
/// an SDP answer: the caller's answer in its ACK when facd made the offer
/// (RFC 3264 §6: the answer names the codec it chose from our offer, and
/// where it receives).
pub fn remote_media(answer: &Offer<'_>) -> Option<(Codec, SocketAddr)> {
    answer.media.iter().find_map(|m| {
        let codec = m.preferred_g711()?;
        let ip = m.addr.or(answer.session_addr)?;
        Some((codec, SocketAddr::new(ip, m.port)))
    })
}

/// The offer facd puts in a 200 when the INVITE had no body (RFC 3261 §13.2.1).
pub fn offer(local: SocketAddr, session_id: u64) -> String {
    let mut body = header(local.ip(), session_id);
    let _ = write!(
        body,
        "m=audio {} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n",
        local.port()
    );
    body
}

fn header(ip: IpAddr, session_id: u64) -> String {
    let family = if ip.is_ipv4() { "IP4 " } else { "IP6 " };
    let mut addr = String::with_capacity(40);
    push_ip(&mut addr, ip);
    let mut id = itoa::Buffer::new();
    let id = id.format(session_id);
    let mut s = String::with_capacity(320);
    for part in [
        "v=0\r\no=facd ",
        id,
        " ",
        id,
        " IN ",
        family,
        &addr,
        "\r\ns=facd\r\nc=IN ",
        family,
        &addr,
        "\r\nt=0 0\r\n",
    ] {
        s.push_str(part);
    }
    s
}

/// An address as SDP writes it (RFC 4566 §5.7), IPv4 without the
/// formatting machinery: this runs for every call.
pub(crate) fn push_ip(s: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(itoa::Buffer::new().format(o));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(s, "{v6}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    const SIPP: &str = "v=0\r\no=1001 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn answers_pcmu_offer() {
        let a = answer(&parse_offer(SIPP.as_bytes()).unwrap(), local(), 7).unwrap();
        assert_eq!(a.codec, Codec::Pcmu);
        assert_eq!(a.remote_rtp, Some("127.0.0.1:6000".parse().unwrap()));
        assert_eq!(
            a.body,
            "v=0\r\no=facd 7 7 IN IP4 127.0.0.1\r\ns=facd\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        );
    }

    #[test]
    fn follows_offer_preference() {
        let o = SIPP.replace("RTP/AVP 0\r\n", "RTP/AVP 18 8 0 101\r\n");
        let a = answer(&parse_offer(o.as_bytes()).unwrap(), local(), 1).unwrap();
        assert_eq!(a.codec, Codec::Pcma);
        assert!(a.body.contains("m=audio 40000 RTP/AVP 8\r\n"));
    }

    #[test]
    fn dynamic_payload_mapped_by_rtpmap() {
        let o = SIPP.replace(
            "RTP/AVP 0\r\na=rtpmap:0 PCMU/8000",
            "RTP/AVP 96\r\na=rtpmap:96 pcma/8000",
        );
        assert_eq!(
            answer(&parse_offer(o.as_bytes()).unwrap(), local(), 1)
                .unwrap()
                .codec,
            Codec::Pcma
        );
    }

    #[test]
    fn video_refused_audio_accepted() {
        let o = SIPP.replace("m=audio", "m=video 5000 RTP/AVP 31\r\nm=audio");
        let a = answer(&parse_offer(o.as_bytes()).unwrap(), local(), 1).unwrap();
        assert!(
            a.body.contains("m=video 0 RTP/AVP 31\r\nm=audio 40000"),
            "{}",
            a.body
        );
    }

    #[test]
    fn no_g711_is_refused() {
        let o = SIPP.replace(
            "RTP/AVP 0\r\na=rtpmap:0 PCMU/8000",
            "RTP/AVP 18\r\na=rtpmap:18 G729/8000",
        );
        assert_eq!(
            answer(&parse_offer(o.as_bytes()).unwrap(), local(), 1),
            Err(SdpError::NoCommonCodec)
        );
        let srtp = SIPP.replace("RTP/AVP", "RTP/SAVP");
        assert_eq!(
            answer(&parse_offer(srtp.as_bytes()).unwrap(), local(), 1),
            Err(SdpError::NoCommonCodec)
        );
    }

    #[test]
    fn malformed_is_refused() {
        assert_eq!(parse_offer(b"hello"), Err(SdpError::Malformed));
        assert_eq!(
            parse_offer(b"v=0\r\nm=audio x RTP/AVP 0\r\n"),
            Err(SdpError::Malformed)
        );
        assert_eq!(parse_offer(&[0xff, 0xfe]), Err(SdpError::Malformed));
    }

    #[test]
    fn remote_media_of_an_answer() {
        let ans = SIPP.replace("RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", "RTP/AVP 8");
        assert_eq!(
            remote_media(&parse_offer(ans.as_bytes()).unwrap()),
            Some((Codec::Pcma, "127.0.0.1:6000".parse().unwrap()))
        );
        // A media-level c= wins over the session's; a refused stream is skipped.
        let two = SIPP.replace(
            "m=audio 6000 RTP/AVP 0\r\n",
            "m=audio 0 RTP/AVP 0\r\nm=audio 7000 RTP/AVP 0\r\nc=IN IP4 127.0.0.2\r\n",
        );
        assert_eq!(
            remote_media(&parse_offer(two.as_bytes()).unwrap()),
            Some((Codec::Pcmu, "127.0.0.2:7000".parse().unwrap()))
        );
        // No address anywhere: nothing to send to.
        let no_c = SIPP.replace("c=IN IP4 127.0.0.1\r\n", "");
        assert_eq!(remote_media(&parse_offer(no_c.as_bytes()).unwrap()), None);
    }

    #[test]
    fn offer_lists_both_codecs() {
        let o = offer("[::1]:4000".parse().unwrap(), 3);
        assert!(o.contains("c=IN IP6 ::1\r\n"));
        assert!(o.contains("m=audio 4000 RTP/AVP 0 8\r\n"));
        let parsed = parse_offer(o.as_bytes()).unwrap();
        assert_eq!(parsed.media[0].preferred_g711(), Some(Codec::Pcmu));
    }
}
