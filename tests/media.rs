//! The confirmation tone end to end (SPEC §4): a test client dials *38 over
//! UDP with an SDP offer naming its own loopback RTP socket, ACKs, and
//! receives facd's RTP from the address facd's SDP answer named — in the
//! codec the offer preferred, paced, numbered and timestamped per RFC 3550 —
//! then the BYE. Also: the answer in the ACK when facd made the offer,
//! `confirm_ms = 0`, a caller BYE and a shutdown that stop the tone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{base_config, Msg, Req, Tcp, TestServer, Udp};
use tokio::net::UdpSocket;

/// An SDP body with audio at `rtp`, listing `formats` in order.
fn sdp(rtp: SocketAddr, formats: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// `Req::invite` with our own SDP (or none).
fn invite(c: &Udp, call_id: &str, body: Option<&str>) -> String {
    invite_on("UDP", c.port(), call_id, body)
}

fn invite_on(transport: &str, port: u16, call_id: &str, body: Option<&str>) -> String {
    let base = Req::invite(
        "*38",
        "1001",
        call_id,
        &format!("z9hG4bK-{call_id}"),
        transport,
        port,
    );
    let head = base.split("Content-Type:").next().unwrap();
    match body {
        Some(b) => format!(
            "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => format!("{head}Content-Length: 0\r\n\r\n"),
    }
}

/// `Req::ack` with an SDP body (the answer when facd made the offer).
fn ack_with(c: &Udp, call_id: &str, tag: &str, body: &str) -> String {
    let base = Req::ack("*38", "1001", call_id, tag, "UDP", c.port());
    let head = base.split("Content-Length:").next().unwrap();
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The RTP address an SDP body names (`c=` + `m=audio`).
fn sdp_addr(body: &str) -> SocketAddr {
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .expect("m=audio line");
    format!("{ip}:{port}").parse().unwrap()
}

/// One received RTP packet.
#[derive(Debug)]
struct Rtp {
    at: Instant,
    from: SocketAddr,
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

/// Every packet arriving on `sock` until none comes for `quiet_ms`.
async fn collect(sock: &UdpSocket, quiet_ms: u64) -> Vec<Rtp> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok((n, from))) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), sock.recv_from(&mut buf)).await
    {
        let b = &buf[..n];
        assert!(n >= 12, "short RTP packet: {n} bytes");
        assert_eq!(b[0], 0x80, "RTP V=2, no padding, extension or CSRC");
        out.push(Rtp {
            at: Instant::now(),
            from,
            marker: b[1] & 0x80 != 0,
            pt: b[1] & 0x7F,
            seq: u16::from_be_bytes([b[2], b[3]]),
            ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b[12..].to_vec(),
        });
    }
    out
}

/// Checks a whole tone: `count` packets of `pt` from `from`, marker on the
/// first, consecutive sequence numbers, timestamps +160, one SSRC, 160-byte
/// payloads, paced (packet k never before `acked` + k · 20 ms: a lower
/// bound that holds on a loaded machine, where late packets may bunch up),
/// not silent.
fn check_stream(pkts: &[Rtp], count: usize, pt: u8, from: SocketAddr, acked: Instant) {
    assert_eq!(pkts.len(), count, "packets: {pkts:?}");
    for (k, p) in pkts.iter().enumerate() {
        assert_eq!(p.from, from, "RTP must come from the address in our SDP");
        assert_eq!(p.pt, pt, "packet {k}");
        assert_eq!(p.marker, k == 0, "marker only on packet 0 (packet {k})");
        assert_eq!(p.ssrc, pkts[0].ssrc);
        assert_eq!(p.payload.len(), 160);
        assert_eq!(p.seq, pkts[0].seq.wrapping_add(k as u16), "packet {k}");
        assert_eq!(
            p.ts,
            pkts[0].ts.wrapping_add(160 * k as u32),
            "packet {k} timestamp"
        );
    }
    for (k, p) in pkts.iter().enumerate() {
        let due = acked + Duration::from_millis(20 * k as u64);
        assert!(p.at >= due, "packet {k} came {:?} early", due - p.at);
    }
    let codec = if pt == 8 {
        facd::media::Codec::Pcma
    } else {
        facd::media::Codec::Pcmu
    };
    let loud = pkts[0]
        .payload
        .iter()
        .map(|b| i32::from(codec.decode(*b)).abs())
        .max()
        .unwrap();
    assert!(loud > 2000, "the first frame is the tone, peak {loud}");
}

/// Dials *38 with `body`, returns the 200 and sends the ACK (built by `ack`).
async fn call(c: &Udp, call_id: &str, body: Option<&str>) -> Msg {
    c.send(&invite(c, call_id, body)).await;
    let ok = c.recv_response().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    ok
}

#[tokio::test]
async fn tone_follows_the_ack_in_the_offered_codec_then_bye() {
    let s = TestServer::start(&base_config("confirm_ms = 200")).await;
    let c = Udp::new(s.udp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = sdp(rtp.local_addr().unwrap(), "8 0");

    let ok = call(&c, "tone-1", Some(&offer)).await;
    assert!(ok.body().contains("m=audio "), "{}", ok.body());
    assert!(ok.body().contains(" RTP/AVP 8\r\n"), "PCMA preferred");
    let ours = sdp_addr(ok.body());
    assert_eq!(collect(&rtp, 150).await.len(), 0, "no media before the ACK");
    let tag = ok.to_tag().unwrap();
    let acked = Instant::now();
    c.send(&Req::ack("*38", "1001", "tone-1", &tag, "UDP", c.port()))
        .await;
    let (pkts, bye) = tokio::join!(collect(&rtp, 300), async {
        loop {
            let m = c.recv().await;
            if m.method() == "BYE" {
                return (m, Instant::now());
            }
        }
    });
    check_stream(&pkts, 10, 8, ours, acked);
    let (bye, _) = bye;
    c.send(&Req::ok_for(&bye)).await;
    // PCMU when the offer prefers it.
    let ok = call(&c, "tone-2", Some(&sdp(rtp.local_addr().unwrap(), "0 8"))).await;
    let tag = ok.to_tag().unwrap();
    let acked = Instant::now();
    c.send(&Req::ack("*38", "1001", "tone-2", &tag, "UDP", c.port()))
        .await;
    let pkts = collect(&rtp, 300).await;
    check_stream(&pkts, 10, 0, sdp_addr(ok.body()), acked);
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE");
    c.send(&Req::ok_for(&bye)).await;
    s.stop().await;
}

#[tokio::test]
async fn answer_in_the_ack_when_facd_made_the_offer() {
    let s = TestServer::start(&base_config("confirm_ms = 100")).await;
    let c = Udp::new(s.udp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let ok = call(&c, "offerless", None).await;
    assert!(ok.body().contains("m=audio "), "an offer: {}", ok.body());
    let tag = ok.to_tag().unwrap();
    // Our answer picks PCMA from facd's offer "0 8".
    let answer = sdp(rtp.local_addr().unwrap(), "8");
    let acked = Instant::now();
    c.send(&ack_with(&c, "offerless", &tag, &answer)).await;
    let pkts = collect(&rtp, 300).await;
    check_stream(&pkts, 5, 8, sdp_addr(ok.body()), acked);
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    c.send(&Req::ok_for(&bye)).await;
    s.stop().await;
}

#[tokio::test]
async fn confirm_0_means_no_tone_and_an_immediate_bye() {
    let s = TestServer::start(&base_config("confirm_ms = 0")).await;
    let c = Udp::new(s.udp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = call(&c, "silent", Some(&sdp(rtp.local_addr().unwrap(), "0"))).await;
    let tag = ok.to_tag().unwrap();
    c.send(&Req::ack("*38", "1001", "silent", &tag, "UDP", c.port()))
        .await;
    // With a tone facd would wait; without, the BYE follows the ACK.
    let bye = c.recv_within(500).await.expect("BYE right after the ACK");
    assert_eq!(bye.method(), "BYE");
    c.send(&Req::ok_for(&bye)).await;
    assert_eq!(
        collect(&rtp, 300).await.len(),
        0,
        "no RTP with confirm_ms = 0"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_caller_bye_stops_the_tone() {
    let s = TestServer::start(&base_config("confirm_ms = 5000")).await;
    let c = Udp::new(s.udp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = call(&c, "hangup", Some(&sdp(rtp.local_addr().unwrap(), "0"))).await;
    let tag = ok.to_tag().unwrap();
    c.send(&Req::ack("*38", "1001", "hangup", &tag, "UDP", c.port()))
        .await;
    // A few packets, then our BYE.
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(2), rtp.recv_from(&mut buf))
            .await
            .expect("tone started")
            .unwrap();
    }
    let bye = Req::ack("*38", "1001", "hangup", &tag, "UDP", c.port())
        .replace("ACK ", "BYE ")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE")
        .replace("z9hG4bK-ack-", "z9hG4bK-bye-");
    c.send(&bye).await;
    assert_eq!(c.recv_response().await.status(), 200);
    // The packets already sent or in flight, then silence for good (a tone
    // left playing would send 240 more over 5 s, never 400 ms of quiet).
    let after = collect(&rtp, 400).await;
    assert!(after.len() < 50, "{} packets after the BYE", after.len());
    s.stop().await;
}

#[tokio::test]
async fn shutdown_stops_every_tone() {
    let s = TestServer::start(&base_config("confirm_ms = 5000")).await;
    let c = Udp::new(s.udp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = call(&c, "stop", Some(&sdp(rtp.local_addr().unwrap(), "0"))).await;
    let tag = ok.to_tag().unwrap();
    c.send(&Req::ack("*38", "1001", "stop", &tag, "UDP", c.port()))
        .await;
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(2), rtp.recv_from(&mut buf))
        .await
        .expect("tone started")
        .unwrap();
    let stopping = tokio::spawn(s.stop());
    // facd hangs up at once; answering lets the drain finish.
    let bye = loop {
        let m = c.recv().await;
        if m.method() == "BYE" {
            break m;
        }
    };
    c.send(&Req::ok_for(&bye)).await;
    stopping.await.unwrap();
    let after = collect(&rtp, 400).await;
    // Packets sent before the BYE may still be queued on our socket; none
    // may follow it.
    assert!(after.len() < 50, "{} packets after shutdown", after.len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(collect(&rtp, 100).await.len(), 0);
}

#[tokio::test]
async fn a_call_over_tcp_gets_its_tone_over_udp_rtp() {
    let s = TestServer::start(&base_config("confirm_ms = 100")).await;
    let mut c = Tcp::connect(s.tcp).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = sdp(rtp.local_addr().unwrap(), "0");
    c.send(invite_on("TCP", c.port(), "tcp-tone", Some(&offer)).as_bytes())
        .await;
    let ok = c.recv().await;
    assert_eq!(ok.status(), 200, "{}", ok.raw);
    let tag = ok.to_tag().unwrap();
    let acked = Instant::now();
    c.send(Req::ack("*38", "1001", "tcp-tone", &tag, "TCP", c.port()).as_bytes())
        .await;
    let pkts = collect(&rtp, 300).await;
    check_stream(&pkts, 5, 0, sdp_addr(ok.body()), acked);
    let bye = c.recv().await;
    assert_eq!(bye.method(), "BYE", "{}", bye.raw);
    c.send(Req::ok_for(&bye).as_bytes()).await;
    s.stop().await;
}
