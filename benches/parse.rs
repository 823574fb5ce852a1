//! Parse + validate a typical ~800-byte INVITE with SDP (the issue's
//! target: >= 1M messages/s on one core), the TCP framing step, and the
//! per-source rate check that precedes parsing.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, Criterion, Throughput};
use facd::sip::framing::StreamDecoder;
use facd::sip::message::{parse_message, Message};

const HEAD: &str = "INVITE sip:*388000@pbx.example.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.40:5062;branch=z9hG4bK-524287-1---a8f93b1c2d3e4f50;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:1001@10.20.30.40:5062;transport=udp>\r\n\
To: <sip:*388000@pbx.example.com>\r\n\
From: \"Alice Agent\" <sip:1001@pbx.example.com>;tag=9f2b1c3d\r\n\
Call-ID: 8c2f0e1d9a7b6c5d4e3f2a1b0c9d8e7f@10.20.30.40\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
Supported: replaces, timer\r\n\
Allow-Events: talk, hold, conference\r\n";

const SDP: &str = "v=0\r\n\
o=- 20045 20045 IN IP4 10.20.30.40\r\n\
s=SDP data\r\n\
c=IN IP4 10.20.30.40\r\n\
t=0 0\r\n\
m=audio 11780 RTP/AVP 0 8 18 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// A typical desk-phone INVITE, about 800 bytes.
fn invite() -> String {
    format!("{HEAD}Content-Length: {}\r\n\r\n{SDP}", SDP.len())
}

fn bench(c: &mut Criterion) {
    let text = invite();
    assert!((750..900).contains(&text.len()), "{}", text.len());
    let frame = Bytes::from(text.clone());
    assert!(matches!(
        parse_message(frame.clone()),
        Ok(Message::Request(_))
    ));
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_validate_invite", |b| {
        b.iter(|| {
            let Ok(Message::Request(r)) = parse_message(std::hint::black_box(frame.clone())) else {
                panic!("parse failed")
            };
            std::hint::black_box(r.base.cseq.seq)
        })
    });
    // The baseline, measured in the same run: rsip 0.4 parsing the same bytes.
    let raw = text.clone().into_bytes();
    assert!(rsip::SipMessage::try_from(raw.clone()).is_ok());
    g.bench_function("rsip_baseline_parse_invite", |b| {
        b.iter(|| {
            std::hint::black_box(
                rsip::SipMessage::try_from(std::hint::black_box(raw.clone())).is_ok(),
            )
        })
    });
    g.bench_function("tcp_frame_invite", |b| {
        let mut dec = StreamDecoder::new();
        b.iter(|| {
            let mut buf = BytesMut::from(text.as_bytes());
            std::hint::black_box(dec.decode(&mut buf, 65536).unwrap())
        })
    });
    // The per-source rate check every datagram pays before parsing, with
    // the clock read, over a table of 10,000 sources (all within their rate).
    g.bench_function("rate_check_10k_sources", |b| {
        let mut r = facd::limits::RateLimiter::new(facd::limits::RateLimits {
            // High enough that every check takes the pass path.
            per_sec: 10_000_000,
            burst: 1000,
            max_sources: 100_000,
            log_interval: std::time::Duration::from_secs(10),
        });
        let ips: Vec<std::net::IpAddr> = (0..10_000u32)
            .map(|n| std::net::IpAddr::from((0x0a00_0000 | n).to_be_bytes()))
            .collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ips.len();
            std::hint::black_box(r.check(std::time::Instant::now(), ips[i]))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `PARSE_ITERS=N cargo bench --bench parse`: parse the INVITE N times and
/// exit, without criterion — a fixed amount of work for
/// `valgrind --tool=callgrind` (instructions per INVITE = the difference of
/// two runs with different N, divided by the difference of N).
/// `PARSE_WITH=rsip` does the same with the rsip baseline.
fn main() {
    if let Some(n) = std::env::var("PARSE_ITERS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let text = invite();
        let mut ok = 0u64;
        if std::env::var("PARSE_WITH").as_deref() == Ok("rsip") {
            let raw = text.into_bytes();
            for _ in 0..n {
                ok += u64::from(
                    rsip::SipMessage::try_from(std::hint::black_box(raw.clone())).is_ok(),
                );
            }
        } else {
            let frame = Bytes::from(text);
            for _ in 0..n {
                let Ok(Message::Request(r)) = parse_message(std::hint::black_box(frame.clone()))
                else {
                    panic!("parse failed")
                };
                ok += u64::from(r.base.cseq.seq > 0);
            }
        }
        println!("parsed {ok} of {n} INVITEs");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
