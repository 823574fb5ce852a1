//! The confirmation tone facd plays after the ACK of a star-code call
//! (SPEC §4): G.711 encoders (ITU-T G.711 µ-law and A-law), the tone's
//! 20 ms frames, RTP packets (RFC 3550 §5.1) and a pacing scheduler
//! ([`Player`]) that says which packet is due when.
//!
//! Pure: no sockets, no clock, no tokio. Time is passed in and packets are
//! popped; the thin async sender in [`sender`] owns the sockets and the
//! sleep. The dialog layer decides when a tone starts and stops
//! ([`MediaOrder`]).
//!
//! The tone is the North American confirmation tone (Telcordia GR-506-CORE
//! §17.2.4, as Asterisk's `indications.conf` `confirm` for `us`): 350 Hz +
//! 440 Hz, three bursts of 100 ms separated by 100 ms of silence, each
//! component at -13 dBm0. A tone of `confirm_ms` sends `confirm_ms / 20`
//! packets; after the three bursts (500 ms) the packets carry silence, so the
//! caller's media stream runs until facd's BYE.

pub mod sender;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ahash::AHashMap as HashMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

pub use crate::sip::sdp::Codec;

/// Samples per second of G.711 (RFC 3551 §4.5.14).
pub const SAMPLE_RATE: u32 = 8000;
/// Milliseconds of audio per packet (RFC 3551 §4.5: the default `ptime`).
pub const PTIME_MS: u64 = 20;
/// Samples (and G.711 bytes) per packet: 20 ms at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;
/// Bytes of an RTP header without CSRCs (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;

// --- ITU-T G.711 ------------------------------------------------------------
//
// Both laws work on the sign and magnitude of a 16-bit linear sample: µ-law
// on 14 significant bits (with a bias of 33 in those units, 0x84 at 16 bits),
// A-law on 13; each codeword is a sign bit, a 3-bit segment (exponent) and a
// 4-bit step within it (G.711 Tables 1a/2a). µ-law codewords are
// transmitted inverted, A-law codewords with the even bits inverted (0x55).

/// µ-law bias at 16-bit scale (33 · 4).
const ULAW_BIAS: i32 = 0x84;
/// Largest µ-law magnitude before the bias (8158 · 4 + 3).
const ULAW_CLIP: i32 = 32635;

/// The segment of a magnitude: the position of its top bit above bit 7,
/// 0 for anything below 256.
fn segment(magnitude: i32) -> i32 {
    (31 - (magnitude | 0xFF).leading_zeros() as i32) - 7
}

/// µ-law encodes one 16-bit linear sample (ITU-T G.711 §2, Table 2a).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let x = i32::from(sample);
    let (magnitude, sign) = if x < 0 { (-x - 1, 0x80) } else { (x, 0x00) };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    let seg = segment(biased);
    let step = (biased >> (seg + 3)) & 0x0F;
    !((sign | (seg << 4) | step) as u8)
}

/// µ-law decodes one codeword to a 16-bit linear sample (the middle of its
/// interval).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = i32::from(!code);
    let t = (((u & 0x0F) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// A-law encodes one 16-bit linear sample (ITU-T G.711 §2, Table 1a).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let x = i32::from(sample);
    let (magnitude, mask) = if x < 0 { (-x - 1, 0x55) } else { (x, 0xD5) };
    // A 16-bit magnitude has at most 15 bits: segment 7 at most.
    let seg = segment(magnitude);
    let shift = if seg == 0 { 4 } else { seg + 3 };
    (((seg << 4) | ((magnitude >> shift) & 0x0F)) ^ mask) as u8
}

/// A-law decodes one codeword to a 16-bit linear sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = i32::from(code ^ 0x55);
    let step = (a & 0x0F) << 4;
    let seg = (a & 0x70) >> 4;
    let magnitude = if seg == 0 {
        step + 8
    } else {
        (step + 0x108) << (seg - 1)
    };
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

impl Codec {
    /// Encodes one linear sample with this law.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Self::Pcmu => linear_to_ulaw(sample),
            Self::Pcma => linear_to_alaw(sample),
        }
    }

    /// Decodes one codeword of this law.
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Self::Pcmu => ulaw_to_linear(code),
            Self::Pcma => alaw_to_linear(code),
        }
    }
}

// --- The tone ----------------------------------------------------------------

/// The tone's two frequencies, Hz.
const TONE_HZ: [f64; 2] = [350.0, 440.0];
/// One burst and one gap, ms.
const BURST_MS: u64 = 100;
/// Bursts in the tone.
const BURSTS: u64 = 3;
/// Frames from the first burst to the end of the last one (500 ms).
const TONE_FRAMES: usize = ((2 * BURSTS - 1) * BURST_MS / PTIME_MS) as usize;
/// Peak amplitude of a 0 dBm0 sine at 16-bit scale: G.711 puts the
/// overload point at +3.17 dBm0 (µ-law) / +3.14 dBm0 (A-law), 32124/32256.
const DBM0_PEAK: f64 = 22_300.0;
/// Level of each component (GR-506-CORE: -13 dBm0 per frequency).
const LEVEL_DBM0: f64 = -13.0;

/// One 20 ms G.711 frame.
pub type Frame = [u8; SAMPLES_PER_PACKET];

/// The linear samples of frame `index` of the tone (silence after the
/// bursts). Both frequencies complete whole cycles in every 100 ms burst, so
/// each burst starts and ends at a zero crossing (no clicks).
pub fn tone_samples(index: usize) -> [i16; SAMPLES_PER_PACKET] {
    let mut out = [0i16; SAMPLES_PER_PACKET];
    let amplitude = DBM0_PEAK * 10f64.powf(LEVEL_DBM0 / 20.0);
    for (i, s) in out.iter_mut().enumerate() {
        let n = index * SAMPLES_PER_PACKET + i;
        let ms = n as u64 * 1000 / u64::from(SAMPLE_RATE);
        let in_burst = index < TONE_FRAMES && (ms / BURST_MS).is_multiple_of(2);
        if in_burst {
            let t = n as f64 / f64::from(SAMPLE_RATE);
            let v: f64 = TONE_HZ
                .iter()
                .map(|f| amplitude * (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            *s = v.round() as i16;
        }
    }
    out
}

/// The encoded frames of the tone for `codec`, computed once.
fn tone_frames(codec: Codec) -> &'static [Frame] {
    static PCMU: OnceLock<Vec<Frame>> = OnceLock::new();
    static PCMA: OnceLock<Vec<Frame>> = OnceLock::new();
    let cell = match codec {
        Codec::Pcmu => &PCMU,
        Codec::Pcma => &PCMA,
    };
    cell.get_or_init(|| {
        (0..=TONE_FRAMES)
            .map(|i| tone_samples(i).map(|s| codec.encode(s)))
            .collect()
    })
}

/// The G.711 payload of packet `index` of the tone: the bursts, then
/// silence (the last frame of the table).
pub fn tone_frame(codec: Codec, index: usize) -> &'static Frame {
    let frames = tone_frames(codec);
    &frames[index.min(frames.len() - 1)]
}

/// How many 20 ms packets a tone of `duration` sends (whole packets only, so
/// the tone never outlasts the BYE that follows it).
pub fn packets_for(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis() / u128::from(PTIME_MS)).unwrap_or(u32::MAX)
}

// --- RTP ---------------------------------------------------------------------

/// The fields of an RTP header facd sets (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// M: the first packet of a talkspurt (RFC 3551 §4.1).
    pub marker: bool,
    /// PT: 0 (PCMU) or 8 (PCMA).
    pub payload_type: u8,
    /// Sequence number, +1 per packet.
    pub sequence: u16,
    /// Sampling instant of the first sample, +160 per packet.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Writes the 12-byte header and `payload` (V=2, no padding, no
    /// extension, no CSRC).
    pub fn packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(RTP_HEADER_LEN + payload.len());
        p.push(0x80);
        p.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7F));
        p.extend_from_slice(&self.sequence.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }
}

// --- What to play, and where --------------------------------------------------

/// Where a tone goes: the caller's RTP address from its SDP (offer in the
/// INVITE, or answer in the ACK) and the address of ours that our SDP named,
/// which the packets must come from (RFC 3264 §5.1: the caller expects media
/// from where our SDP said).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneTarget {
    /// The codec the SDP exchange chose.
    pub codec: Codec,
    /// Our RTP address as our SDP named it.
    pub local: SocketAddr,
    /// The caller's RTP address (its `c=` and `m=` lines).
    pub remote: SocketAddr,
}

impl ToneTarget {
    /// A target, or None when the caller's address cannot receive a tone:
    /// port 0 (stream refused, RFC 3264 §5.1), the unspecified address
    /// (`c=0.0.0.0`, hold in RFC 2543 style), multicast or broadcast (facd
    /// sends only to one unicast receiver), or another address family than
    /// our RTP socket.
    pub fn new(codec: Codec, local: SocketAddr, remote: Option<SocketAddr>) -> Option<Self> {
        let remote = remote?;
        let ip = remote.ip();
        let unusable = remote.port() == 0
            || local.port() == 0
            || ip.is_unspecified()
            || ip.is_multicast()
            || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
            || remote.is_ipv4() != local.is_ipv4();
        (!unusable).then_some(Self {
            codec,
            local,
            remote,
        })
    }
}

/// What the dialog layer asks the media sender to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaOrder {
    /// Start the tone `tone` now.
    Play {
        /// Names the tone for a later `Stop`.
        tone: u64,
        /// Where.
        target: ToneTarget,
        /// How long: `packets_for(duration)` packets.
        duration: Duration,
    },
    /// Stop the tone (the call ended); nothing if it already finished.
    Stop {
        /// Which.
        tone: u64,
    },
}

/// One RTP packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpTransmit {
    /// Send from our socket with this address.
    pub from: SocketAddr,
    /// To this address.
    pub to: SocketAddr,
    /// The packet.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Playing {
    target: ToneTarget,
    start: Instant,
    sent: u32,
    total: u32,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
}

/// Paces every playing tone: packet `k` of a tone is due `k · 20 ms` after
/// its start (a late caller of [`Player::poll_transmit`] gets the overdue
/// packets at once, which a jitter buffer absorbs, and the timestamps stay
/// true).
#[derive(Debug)]
pub struct Player {
    tones: HashMap<u64, Playing>,
    due: BTreeSet<(Instant, u64)>,
    rng: SmallRng,
}

impl Player {
    /// A player; `seed` makes SSRCs and initial sequence numbers reproducible.
    pub fn new(seed: u64) -> Self {
        Self {
            tones: HashMap::default(),
            due: BTreeSet::new(),
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Applies an order at `now`.
    pub fn apply(&mut self, now: Instant, order: MediaOrder) {
        match order {
            MediaOrder::Play {
                tone,
                target,
                duration,
            } => {
                self.stop(tone);
                let total = packets_for(duration);
                if total == 0 {
                    return;
                }
                // RFC 3550 §5.1: random initial sequence number and
                // timestamp; §8.1: a random SSRC.
                self.tones.insert(
                    tone,
                    Playing {
                        target,
                        start: now,
                        sent: 0,
                        total,
                        sequence: self.rng.gen(),
                        timestamp: self.rng.gen(),
                        ssrc: self.rng.gen(),
                    },
                );
                self.due.insert((now, tone));
            }
            MediaOrder::Stop { tone } => self.stop(tone),
        }
    }

    fn stop(&mut self, tone: u64) {
        if let Some(p) = self.tones.remove(&tone) {
            self.due.remove(&(p.next_due(), tone));
        }
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.first().map(|d| d.0)
    }

    /// The next packet due at or before `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<RtpTransmit> {
        let &(when, tone) = self.due.first()?;
        if when > now {
            return None;
        }
        self.due.pop_first();
        let p = self.tones.get_mut(&tone)?;
        let k = p.sent;
        let header = RtpHeader {
            marker: k == 0,
            payload_type: p.target.codec.payload_type(),
            sequence: p.sequence.wrapping_add(k as u16),
            timestamp: p
                .timestamp
                .wrapping_add(k.wrapping_mul(SAMPLES_PER_PACKET as u32)),
            ssrc: p.ssrc,
        };
        let bytes = header.packet(tone_frame(p.target.codec, k as usize));
        let out = RtpTransmit {
            from: p.target.local,
            to: p.target.remote,
            bytes,
        };
        p.sent += 1;
        if p.sent < p.total {
            self.due.insert((p.next_due(), tone));
        } else {
            self.tones.remove(&tone);
        }
        Some(out)
    }

    /// Tones playing.
    pub fn len(&self) -> usize {
        self.tones.len()
    }

    /// No tone playing.
    pub fn is_empty(&self) -> bool {
        self.tones.is_empty()
    }
}

impl Playing {
    fn next_due(&self) -> Instant {
        self.start + Duration::from_millis(PTIME_MS) * self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        // G.711 Table 2a end points; 0 is transmitted as 0xFF.
        let cases: [(i16, u8); 8] = [
            (0, 0xFF),
            (-1, 0x7F),
            (1, 0xFF),
            (i16::MAX, 0x80),
            (i16::MIN, 0x00),
            (32124, 0x80),
            (-32124, 0x00),
            (8, 0xFE),
        ];
        for (x, want) in cases {
            assert_eq!(linear_to_ulaw(x), want, "µ-law of {x}");
        }
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        // The first output value of each segment (G.711 Table 2a, 14-bit
        // values 0, 33, 99, …, 4191, times 4).
        for (seg, start) in [0, 132, 396, 924, 1980, 4092, 8316, 16764]
            .iter()
            .enumerate()
        {
            let code = !((seg as u8) << 4);
            assert_eq!(i32::from(ulaw_to_linear(code)), *start, "segment {seg}");
        }
    }

    #[test]
    fn alaw_known_values() {
        let cases: [(i16, u8); 7] = [
            (0, 0xD5),
            (-1, 0x55),
            (i16::MAX, 0xAA),
            (i16::MIN, 0x2A),
            (15, 0xD5),
            (16, 0xD4),
            (-16, 0x55),
        ];
        for (x, want) in cases {
            assert_eq!(linear_to_alaw(x), want, "A-law of {x}");
        }
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    /// Every codeword decodes to a value that encodes back to it (µ-law's
    /// negative zero 0x7F aside, which decodes to 0 = 0xFF).
    #[test]
    fn every_codeword_round_trips() {
        for code in 0..=255u8 {
            let u = linear_to_ulaw(ulaw_to_linear(code));
            assert_eq!(
                u,
                if code == 0x7F { 0xFF } else { code },
                "µ-law {code:#04x}"
            );
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    /// Over every 16-bit sample: the decoded value never goes down as the
    /// input goes up, and the quantisation error stays within half a step
    /// (steps grow with the segment, about 1/16 of the value; the top of
    /// the range clips at the largest codeword).
    #[test]
    fn every_sample_is_quantised_monotonically_and_closely() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let max = codec.decode(codec.encode(i16::MAX));
            let mut last = i16::MIN;
            for x in i16::MIN..=i16::MAX {
                let y = codec.decode(codec.encode(x));
                assert!(y >= last, "{codec:?}: {x} decodes to {y} below {last}");
                last = y;
                let err = (i32::from(x) - i32::from(y)).abs();
                let clipped = i32::from(x).abs() > i32::from(max);
                let bound = if clipped {
                    i32::from(x).abs() - i32::from(max) + 1
                } else {
                    8 + i32::from(x).abs() / 32
                };
                assert!(err <= bound, "{codec:?}: {x} → {y} (error {err} > {bound})");
            }
        }
    }

    #[test]
    fn tone_has_three_bursts_then_silence() {
        let energy = |i: usize| -> f64 {
            tone_samples(i)
                .iter()
                .map(|s| f64::from(*s).powi(2))
                .sum::<f64>()
        };
        // 20 ms frames: bursts in frames 0–4, 10–14, 20–24.
        for i in 0..40usize {
            let on = i < 25 && (i / 5).is_multiple_of(2);
            assert_eq!(energy(i) > 0.0, on, "frame {i}");
        }
        // Whole cycles in every burst: each starts at zero and the bursts
        // are identical (no phase jump, no click).
        assert_eq!(tone_samples(0)[0], 0);
        assert_eq!(tone_samples(10), tone_samples(0));
        assert_eq!(tone_samples(24), tone_samples(4));
        // -13 dBm0 per component: the RMS of two sines, √2 · A/√2 = A.
        let rms = (energy(1) / 160.0).sqrt();
        let a = DBM0_PEAK * 10f64.powf(-13.0 / 20.0);
        assert!((rms - a).abs() < a * 0.1, "rms {rms}, expected about {a}");
        // Silence encodes as the zero codeword of each law.
        assert!(tone_frame(Codec::Pcmu, 5).iter().all(|b| *b == 0xFF));
        assert!(tone_frame(Codec::Pcma, 1000).iter().all(|b| *b == 0xD5));
        assert_eq!(
            tone_frame(Codec::Pcma, 2)[..],
            tone_samples(2).map(linear_to_alaw)[..]
        );
    }

    #[test]
    fn packet_count_is_whole_packets_of_the_duration() {
        assert_eq!(packets_for(Duration::from_millis(1000)), 50);
        assert_eq!(packets_for(Duration::from_millis(100)), 5);
        assert_eq!(packets_for(Duration::from_millis(59)), 2);
        assert_eq!(packets_for(Duration::from_millis(19)), 0);
        assert_eq!(packets_for(Duration::ZERO), 0);
    }

    #[test]
    fn rtp_header_bytes() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0x1234,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let p = h.packet(&[0xD5; 160]);
        assert_eq!(p.len(), 172);
        assert_eq!(
            p[..12],
            [0x80, 0x88, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        let p = RtpHeader {
            marker: false,
            payload_type: 0,
            ..h
        }
        .packet(&[]);
        assert_eq!(p[..2], [0x80, 0x00]);
    }

    fn target() -> ToneTarget {
        ToneTarget {
            codec: Codec::Pcma,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:6000".parse().unwrap(),
        }
    }

    #[test]
    fn targets_only_unicast_of_our_family() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let t = |r: &str| ToneTarget::new(Codec::Pcmu, local, Some(r.parse().unwrap()));
        assert!(t("127.0.0.1:6000").is_some());
        assert!(t("10.1.2.3:6000").is_some());
        for bad in [
            "127.0.0.1:0",
            "0.0.0.0:6000",
            "224.0.0.1:6000",
            "255.255.255.255:6000",
            "[::1]:6000",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
        assert_eq!(ToneTarget::new(Codec::Pcmu, local, None), None);
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        assert!(ToneTarget::new(Codec::Pcmu, v6, Some("[::1]:6000".parse().unwrap())).is_some());
        assert!(
            ToneTarget::new(Codec::Pcmu, v6, Some("[ff02::1]:6000".parse().unwrap())).is_none()
        );
        let no_socket: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(ToneTarget::new(Codec::Pcmu, no_socket, Some(local)).is_none());
    }

    fn parse(p: &RtpTransmit) -> (bool, u8, u16, u32, u32) {
        let b = &p.bytes;
        (
            b[1] & 0x80 != 0,
            b[1] & 0x7F,
            u16::from_be_bytes([b[2], b[3]]),
            u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        )
    }

    /// Every packet of a tone, with the ms after `t0` at which it came out
    /// when polled every `step` ms.
    fn drain(p: &mut Player, t0: Instant, step: u64, until: u64) -> Vec<(u64, RtpTransmit)> {
        let mut out = Vec::new();
        let mut ms = 0;
        while ms <= until {
            while let Some(tx) = p.poll_transmit(t0 + Duration::from_millis(ms)) {
                out.push((ms, tx));
            }
            ms += step;
        }
        out
    }

    #[test]
    fn player_paces_a_whole_tone() {
        let t0 = Instant::now();
        let mut p = Player::new(1);
        p.apply(
            t0,
            MediaOrder::Play {
                tone: 7,
                target: target(),
                duration: Duration::from_millis(1000),
            },
        );
        assert_eq!(p.poll_timeout(), Some(t0));
        let sent = drain(&mut p, t0, 1, 2000);
        assert_eq!(sent.len(), 50);
        assert!(p.is_empty());
        assert_eq!(p.poll_timeout(), None);
        let (_, _, seq0, ts0, ssrc) = parse(&sent[0].1);
        for (k, (ms, tx)) in sent.iter().enumerate() {
            assert_eq!(*ms, 20 * k as u64, "packet {k} paced");
            assert_eq!(tx.from, target().local);
            assert_eq!(tx.to, target().remote);
            assert_eq!(tx.bytes.len(), 172);
            assert_eq!(tx.bytes[0], 0x80, "V=2, no P/X/CC");
            let (m, pt, seq, ts, s) = parse(tx);
            assert_eq!(m, k == 0, "marker only on the first packet");
            assert_eq!(pt, 8);
            assert_eq!(seq, seq0.wrapping_add(k as u16));
            assert_eq!(ts, ts0.wrapping_add(160 * k as u32));
            assert_eq!(s, ssrc);
            assert_eq!(&tx.bytes[12..], &tone_frame(Codec::Pcma, k)[..]);
        }
    }

    #[test]
    fn late_polls_get_overdue_packets_with_true_timestamps() {
        let t0 = Instant::now();
        let mut p = Player::new(2);
        p.apply(
            t0,
            MediaOrder::Play {
                tone: 1,
                target: target(),
                duration: Duration::from_millis(200),
            },
        );
        let sent = drain(&mut p, t0, 70, 700);
        assert_eq!(sent.len(), 10);
        assert_eq!(
            sent.iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 70, 70, 70, 140, 140, 140, 140, 210, 210]
        );
        let ts: Vec<u32> = sent.iter().map(|s| parse(&s.1).3).collect();
        assert!(ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160));
    }

    #[test]
    fn stop_ends_a_tone_and_streams_are_independent() {
        let t0 = Instant::now();
        let mut p = Player::new(3);
        let play = |tone| MediaOrder::Play {
            tone,
            target: target(),
            duration: Duration::from_millis(1000),
        };
        p.apply(t0, play(1));
        p.apply(t0 + Duration::from_millis(10), play(2));
        let first = drain(&mut p, t0, 10, 100);
        assert_eq!(
            first.len(),
            11,
            "6 of tone 1 (0..100), 5 of tone 2 (10..90)"
        );
        assert_ne!(parse(&first[0].1).4, parse(&first[1].1).4, "own SSRCs");
        p.apply(
            t0 + Duration::from_millis(105),
            MediaOrder::Stop { tone: 1 },
        );
        p.apply(
            t0 + Duration::from_millis(105),
            MediaOrder::Stop { tone: 99 },
        );
        assert_eq!(p.len(), 1);
        let rest = drain(&mut p, t0, 10, 2000);
        assert_eq!(rest.len(), 45, "tone 2 plays out");
        assert!(p.is_empty());
        // Zero-length tones play nothing; a replayed tone starts over.
        p.apply(
            t0,
            MediaOrder::Play {
                tone: 5,
                target: target(),
                duration: Duration::from_millis(19),
            },
        );
        assert!(p.is_empty());
        p.apply(t0, play(6));
        p.apply(t0 + Duration::from_millis(1), play(6));
        assert_eq!(p.len(), 1);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(1)));
    }
}
