//! A lean SIP load generator for `benches/sipp-load.sh` (`DRIVER=gen`), not a test.
//!
//! SIPp is the reference driver, but on one CPU of a small VM it tops out
//! near 10,000 calls/s of this scenario whatever the server (its own CPU per
//! call is 55–85 µs there), so it cannot show a server holding 20,000/s.
//! This client drives exactly the traffic of `sip-fixtures/sipp/fac_load.xml`
//! — the same messages, headers and SDP, byte for byte in shape — from the
//! same SIPp CSV (`SEQUENTIAL`, `user;code` rows), with a fraction of the CPU:
//! one thread, one connected UDP socket, `sendmmsg`/`recvmmsg` in batches.
//!
//! Per call (RFC 3261 §17.1.1, §13.2.2.4, §15): INVITE → [1xx] → 200, then
//! ACK and BYE at once → 200. INVITE retransmits on Timer A (T1 = 500 ms,
//! doubling) until a response and fails at Timer B (64·T1); BYE retransmits
//! on Timer E (doubling, capped at T2 = 4 s) and fails at Timer F; a
//! retransmitted 2xx to the INVITE is ACKed again (§13.2.2.4); a final ≥ 300
//! to the INVITE is ACKed (§17.1.1.3) and counts as a failed call, by status.
//!
//! Calls start at a fixed rate, in 1 ms bursts, at most `--limit` open at once.
//! At the end it prints and writes to `--out` one line,
//! `ok failed cps p50_ms p99_ms max_ms retrans detail`, INVITE → 200 as this
//! client saw it, in the form `benches/sipp-load.sh` parses from SIPp.
//!
//!     sip_load 127.0.0.1:5060 --csv agents.csv --rate 20000 --calls 400000
//!
//! Linux only (`recvmmsg`/`sendmmsg`); 127.0.0.1 traffic in the benchmark.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use facd::sip::message::{parse_message, Message, Method};
use facd::sip::values::contact_uri;

#[derive(Parser)]
#[command(about = "SIP star-code load generator (the SIPp fac_load.xml scenario, lean)")]
struct Args {
    /// The server, ip:port.
    server: SocketAddr,
    /// SIPp-style CSV: a first line (SEQUENTIAL), then `user;code` rows, used in turn.
    #[arg(long)]
    csv: String,
    /// Calls started per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Calls in all.
    #[arg(long, default_value_t = 1000)]
    calls: u32,
    /// At most this many calls open at once (SIPp's -l); 0: 2 × rate + 100.
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Local address to bind.
    #[arg(long, default_value = "127.0.0.1:0")]
    local: SocketAddr,
    /// Give up on the whole run after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Also write the result line to this file.
    #[arg(long)]
    out: Option<String>,
}

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_B: Duration = Duration::from_secs(32);
const BATCH: usize = 64;
const RECV_BUF: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Invite,
    Proceeding,
    Bye,
    Ok,
    Failed,
}

struct Call {
    phase: Phase,
    /// When the INVITE (then the BYE) was first sent.
    started: Instant,
    /// When to retransmit next, and the interval after that.
    next: Instant,
    interval: Duration,
    /// ACK and BYE as sent, kept until the call ends (retransmissions).
    ack: Option<Box<[u8]>>,
    bye: Option<Box<[u8]>>,
}

struct Gen {
    sock: UdpSocket,
    /// Where the INVITE's SDP asks for media, read and discarded, as a
    /// phone's RTP port would be (a confirmation tone then lands somewhere
    /// rather than drawing ICMP port unreachable from the kernel).
    media: UdpSocket,
    rtp: u64,
    server: SocketAddr,
    local: SocketAddr,
    pid: u32,
    rows: Vec<(String, String)>,
    calls: Vec<Call>,
    open: VecDeque<u32>,
    out: Vec<Vec<u8>>,
    invite_ms: Vec<u32>,
    ok: u32,
    failed: u32,
    retrans: u64,
    unexpected: u64,
    why: BTreeMap<String, u32>,
    last_done: Instant,
}

fn main() -> ExitCode {
    let a = Args::parse();
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sip_load: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_csv(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split(';');
        match (f.next(), f.next()) {
            (Some(u), Some(c)) if !u.is_empty() && !c.is_empty() => {
                rows.push((u.to_string(), c.to_string()))
            }
            _ => return Err(format!("{path}:{}: expected `user;code`", i + 1)),
        }
    }
    if rows.is_empty() {
        return Err(format!("{path}: no rows"));
    }
    Ok(rows)
}

fn run(a: Args) -> Result<ExitCode, String> {
    let rows = read_csv(&a.csv)?;
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .map_err(|e| format!("socket: {e}"))?;
    // Large buffers, as SIPp's -buff_size 4194304: bursts must not drop.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    sock.bind(&a.local.into())
        .map_err(|e| format!("bind {}: {e}", a.local))?;
    sock.connect(&a.server.into())
        .map_err(|e| format!("connect {}: {e}", a.server))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let sock: UdpSocket = sock.into();
    let media = UdpSocket::bind((a.local.ip(), 0)).map_err(|e| format!("bind media: {e}"))?;
    media
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    let limit = if a.limit == 0 {
        a.rate.saturating_mul(2).saturating_add(100)
    } else {
        a.limit
    };
    let now = Instant::now();
    let mut g = Gen {
        sock,
        media,
        rtp: 0,
        server: a.server,
        local,
        pid: std::process::id(),
        rows,
        calls: Vec::with_capacity(a.calls as usize),
        open: VecDeque::new(),
        out: Vec::new(),
        invite_ms: Vec::with_capacity(a.calls as usize),
        ok: 0,
        failed: 0,
        retrans: 0,
        unexpected: 0,
        why: BTreeMap::new(),
        last_done: now,
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.timeout);
    let mut bufs = vec![[0u8; RECV_BUF]; BATCH];
    let mut next_scan = start;
    loop {
        let now = Instant::now();
        // Start the calls due by now (the rate, in bursts of the loop's tick).
        let due = ((now - start).as_secs_f64() * f64::from(a.rate)) as u64;
        let due = due.min(u64::from(a.calls)) as u32;
        while (g.calls.len() as u32) < due && (g.open.len() as u32) < limit {
            g.start_call(now);
        }
        g.flush()?;
        g.receive(&mut bufs)?;
        g.flush()?;
        if now >= next_scan {
            g.timers(Instant::now());
            g.flush()?;
            next_scan = now + Duration::from_millis(10);
        }
        let finished = g.calls.len() as u32 == a.calls && g.open.is_empty();
        if finished {
            break;
        }
        if now >= deadline {
            g.why
                .entry("run-timeout".into())
                .and_modify(|n| *n += g.open.len() as u32)
                .or_insert(g.open.len() as u32);
            g.failed += g.open.len() as u32;
            g.failed += a.calls - g.calls.len() as u32;
            break;
        }
        // Sleep until the next millisecond tick or a datagram.
        let mut pfd = [
            libc::pollfd {
                fd: g.sock.as_raw_fd(),
                events: libc::POLLIN | if g.out.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            },
            libc::pollfd {
                fd: g.media.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: two valid pollfds, a valid timespec, no signal mask.
        unsafe { libc::ppoll(pfd.as_mut_ptr(), 2, &ts, std::ptr::null()) };
    }
    let elapsed = g.last_done.saturating_duration_since(start).as_secs_f64();
    let cps = if elapsed > 0.0 {
        f64::from(g.ok) / elapsed
    } else {
        f64::NAN
    };
    let mut lat = std::mem::take(&mut g.invite_ms);
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        // nearest rank, as the script's pct()
        let k = ((p * lat.len() as f64 + 0.5).round() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[k]) / 1000.0
    };
    let max = lat.last().map_or(f64::NAN, |&v| f64::from(v) / 1000.0);
    if g.unexpected > 0 {
        g.why.insert("unexpected-msgs".into(), g.unexpected as u32);
    }
    let detail = if g.why.is_empty() {
        "-".to_string()
    } else {
        g.why
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let line = format!(
        "{} {} {:.0} {:.3} {:.3} {:.3} {} {}",
        g.ok,
        g.failed,
        cps,
        pct(0.5),
        pct(0.99),
        max,
        g.retrans,
        detail
    );
    println!("{line}");
    eprintln!("sip_load: {} RTP packets received and discarded", g.rtp);
    if let Some(p) = &a.out {
        let mut f = std::fs::File::create(p).map_err(|e| format!("cannot write {p}: {e}"))?;
        writeln!(f, "{line}").map_err(|e| format!("cannot write {p}: {e}"))?;
    }
    Ok(if g.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

impl Gen {
    /// The CSV row call `n` uses (the rows in turn, as SIPp's SEQUENTIAL).
    fn row(&self, n: u32) -> &(String, String) {
        &self.rows[n as usize % self.rows.len()]
    }

    fn invite(&self, n: u32) -> Vec<u8> {
        let (user, code) = self.row(n);
        let (lip, lport) = (self.local.ip(), self.local.port());
        let (rip, rport) = (self.server.ip(), self.server.port());
        let mport = self.media.local_addr().map_or(6000, |a| a.port());
        let sdp = format!(
            "v=0\r\no={user} 53655765 2353687637 IN IP4 {lip}\r\ns=-\r\nc=IN IP4 {lip}\r\nt=0 0\r\nm=audio {mport} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        format!(
            "INVITE sip:{code}@{rip}:{rport} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK-{pid}-{n}-0\r\n\
             From: \"agent {user}\" <sip:{user}@{lip}:{lport}>;tag={pid}SIPpTag00{n}\r\n\
             To: <sip:{code}@{rip}:{rport}>\r\n\
             Call-ID: {n}-{pid}@{lip}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{user}@{lip}:{lport};transport=UDP>\r\n\
             Max-Forwards: 70\r\n\
             Subject: fac\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            pid = self.pid,
        )
        .into_bytes()
    }

    /// ACK (for a 2xx: a new transaction, branch 1; for a final ≥ 300: the
    /// INVITE's branch, §17.1.1.3) and, after a 2xx, the BYE (branch 2).
    fn in_dialog(
        &self,
        n: u32,
        method: &str,
        branch: u32,
        ruri: &str,
        to: &str,
        cseq: u32,
    ) -> Vec<u8> {
        let (user, _) = self.row(n);
        let (lip, lport) = (self.local.ip(), self.local.port());
        format!(
            "{method} {ruri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {lip}:{lport};branch=z9hG4bK-{pid}-{n}-{branch}\r\n\
             From: \"agent {user}\" <sip:{user}@{lip}:{lport}>;tag={pid}SIPpTag00{n}\r\n\
             To: {to}\r\n\
             Call-ID: {n}-{pid}@{lip}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@{lip}:{lport};transport=UDP>\r\n\
             Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            pid = self.pid,
        )
        .into_bytes()
    }

    fn start_call(&mut self, now: Instant) {
        let n = self.calls.len() as u32;
        self.out.push(self.invite(n));
        self.calls.push(Call {
            phase: Phase::Invite,
            started: now,
            next: now + T1,
            interval: T1,
            ack: None,
            bye: None,
        });
        self.open.push_back(n);
    }

    fn fail(&mut self, n: u32, why: String) {
        let c = &mut self.calls[n as usize];
        if matches!(c.phase, Phase::Ok | Phase::Failed) {
            return;
        }
        c.phase = Phase::Failed;
        c.ack = None;
        c.bye = None;
        self.failed += 1;
        *self.why.entry(why).or_insert(0) += 1;
        self.last_done = Instant::now();
    }

    /// Retransmissions and timeouts; drops finished calls off the open list.
    fn timers(&mut self, now: Instant) {
        while let Some(&n) = self.open.front() {
            if matches!(self.calls[n as usize].phase, Phase::Ok | Phase::Failed) {
                self.open.pop_front();
            } else {
                break;
            }
        }
        for i in 0..self.open.len() {
            let n = self.open[i];
            let c = &self.calls[n as usize];
            if now < c.next {
                continue;
            }
            match c.phase {
                Phase::Invite | Phase::Bye if now >= c.started + TIMER_B => {
                    let what = if c.phase == Phase::Invite {
                        "timeout-invite"
                    } else {
                        "timeout-bye"
                    };
                    self.fail(n, what.into());
                }
                Phase::Invite => {
                    let msg = self.invite(n);
                    self.out.push(msg);
                    self.retrans += 1;
                    let c = &mut self.calls[n as usize];
                    c.interval *= 2; // Timer A doubles (§17.1.1.2)
                    c.next = now + c.interval;
                }
                Phase::Bye => {
                    if let Some(b) = &c.bye {
                        self.out.push(b.to_vec());
                    }
                    self.retrans += 1;
                    let c = &mut self.calls[n as usize];
                    c.interval = (c.interval * 2).min(T2); // Timer E (§17.1.2.2)
                    c.next = now + c.interval;
                }
                Phase::Proceeding => {
                    // A 1xx stopped Timer A; Timer B still bounds the wait.
                    let b = c.started + TIMER_B;
                    if now >= b {
                        self.fail(n, "timeout-invite".into());
                    } else {
                        self.calls[n as usize].next = b;
                    }
                }
                Phase::Ok | Phase::Failed => {}
            }
        }
    }

    fn receive(&mut self, bufs: &mut [[u8; RECV_BUF]]) -> Result<(), String> {
        self.drain(bufs, false)?;
        self.drain(bufs, true)
    }

    /// Reads what `sock` (or, with `media`, the media socket) holds.
    fn drain(&mut self, bufs: &mut [[u8; RECV_BUF]], media: bool) -> Result<(), String> {
        let fd = if media {
            self.media.as_raw_fd()
        } else {
            self.sock.as_raw_fd()
        };
        loop {
            let mut iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr().cast(),
                    iov_len: RECV_BUF,
                })
                .collect();
            // SAFETY: mmsghdr is plain data; zeroed is a valid value.
            let mut hdrs: Vec<libc::mmsghdr> = (0..bufs.len())
                .map(|_| unsafe { std::mem::zeroed() })
                .collect();
            for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every header points at one live iovec over a live buffer.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    hdrs.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if got < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(()),
                    // ICMP port unreachable: the server is gone; timers will tell.
                    std::io::ErrorKind::ConnectionRefused => Ok(()),
                    _ => Err(format!("recvmmsg: {e}")),
                };
            }
            let got = got as usize;
            let now = Instant::now();
            if media {
                self.rtp += got as u64;
            }
            for i in (0..got).filter(|_| !media) {
                let len = hdrs[i].msg_len as usize;
                self.response(&bufs[i][..len.min(RECV_BUF)], now);
            }
            if got < bufs.len() {
                return Ok(());
            }
        }
    }

    fn response(&mut self, m: &[u8], now: Instant) {
        let Some(r) = Resp::parse(m) else {
            self.unexpected += 1;
            return;
        };
        let Some(n) = r.call else {
            self.unexpected += 1;
            return;
        };
        if n as usize >= self.calls.len() {
            self.unexpected += 1;
            return;
        }
        let phase = self.calls[n as usize].phase;
        if r.invite {
            match (r.status, phase) {
                (100..=199, Phase::Invite) => self.calls[n as usize].phase = Phase::Proceeding,
                (100..=199, _) => {}
                (200..=299, Phase::Invite | Phase::Proceeding) => {
                    let c = &self.calls[n as usize];
                    let us = now.saturating_duration_since(c.started).as_micros();
                    self.invite_ms.push(us.min(u128::from(u32::MAX)) as u32);
                    let ruri = r.contact.unwrap_or_else(|| {
                        let (code, s) = (&self.row(n).1, self.server);
                        format!("sip:{code}@{s}")
                    });
                    let to = r.to.unwrap_or_default();
                    let ack = self.in_dialog(n, "ACK", 1, &ruri, &to, 1);
                    let bye = self.in_dialog(n, "BYE", 2, &ruri, &to, 2);
                    self.out.push(ack.clone());
                    self.out.push(bye.clone());
                    let c = &mut self.calls[n as usize];
                    c.phase = Phase::Bye;
                    c.started = now;
                    c.interval = T1;
                    c.next = now + T1;
                    c.ack = Some(ack.into());
                    c.bye = Some(bye.into());
                }
                (200..=299, Phase::Bye) => {
                    // §13.2.2.4: every retransmission of the 2xx gets the ACK again.
                    if let Some(a) = &self.calls[n as usize].ack {
                        self.out.push(a.to_vec());
                    }
                }
                (200..=299, _) => {}
                (_, Phase::Invite | Phase::Proceeding) => {
                    let to = r.to.unwrap_or_default();
                    let (code, s) = (&self.row(n).1, self.server);
                    let ruri = format!("sip:{code}@{s}");
                    let ack = self.in_dialog(n, "ACK", 0, &ruri, &to, 1);
                    self.out.push(ack);
                    self.fail(n, format!("invite-{}", r.status));
                }
                _ => {}
            }
        } else if r.bye && phase == Phase::Bye && r.status >= 200 {
            if (200..300).contains(&r.status) {
                let c = &mut self.calls[n as usize];
                c.phase = Phase::Ok;
                c.ack = None;
                c.bye = None;
                self.ok += 1;
                self.last_done = now;
            } else {
                self.fail(n, format!("bye-{}", r.status));
            }
        }
    }

    /// Sends what is queued, in batches; keeps what the socket would not take.
    fn flush(&mut self) -> Result<(), String> {
        while !self.out.is_empty() {
            let k = self.out.len().min(BATCH);
            let mut iov: Vec<libc::iovec> = self.out[..k]
                .iter()
                .map(|m| libc::iovec {
                    iov_base: m.as_ptr() as *mut libc::c_void,
                    iov_len: m.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain data; zeroed is a valid value.
            let mut hdrs: Vec<libc::mmsghdr> =
                (0..k).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
                h.msg_hdr.msg_iov = v;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the socket is connected (no address needed); every header
            // points at one live iovec over a live message.
            let sent = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    k as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(()),
                    std::io::ErrorKind::ConnectionRefused => {
                        // The ICMP error of an earlier datagram: drop this one
                        // message, as a lost datagram; retransmission covers it.
                        self.out.remove(0);
                        continue;
                    }
                    _ => Err(format!("sendmmsg: {e}")),
                };
            }
            self.out.drain(..sent as usize);
        }
        Ok(())
    }
}

/// What a response says that the generator needs.
struct Resp {
    status: u16,
    call: Option<u32>,
    invite: bool,
    bye: bool,
    to: Option<String>,
    contact: Option<String>,
}

impl Resp {
    /// Read with facd's own parser (`sip::message`, compact forms and the
    /// rest of RFC 3261 §7.3 included); `None` for a request or anything
    /// that does not parse.
    fn parse(m: &[u8]) -> Option<Self> {
        let Ok(Message::Response(r)) = parse_message(Bytes::copy_from_slice(m)) else {
            return None;
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Some(Self {
            status: r.status,
            // "<n>-<pid>@host": ours; anything else is not.
            call: std::str::from_utf8(r.call_id())
                .ok()
                .and_then(|c| c.split('-').next())
                .and_then(|d| d.parse().ok()),
            invite: r.base.cseq.method == Method::Invite,
            bye: r.base.cseq.method == Method::Bye,
            to: Some(text(r.at(r.base.to.raw))),
            contact: r.headers.get("Contact").map(|v| text(&contact_uri(&v))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_200_to_an_invite_gives_call_to_and_contact() {
        let m = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-7-42-0\r\n\
                  From: <sip:1000@127.0.0.1:5070>;tag=7SIPpTag0042\r\n\
                  To: <sip:*388000@127.0.0.1:5060>;tag=abc\r\nCall-ID: 42-7@127.0.0.1\r\n\
                  CSeq: 1 INVITE\r\nContact: \"facd\" <sip:facd@127.0.0.1:5060;transport=udp>\r\n\
                  Content-Length: 0\r\n\r\n";
        let r = Resp::parse(m).expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.call, Some(42));
        assert!(r.invite && !r.bye);
        assert_eq!(
            r.to.as_deref(),
            Some("<sip:*388000@127.0.0.1:5060>;tag=abc")
        );
        assert_eq!(
            r.contact.as_deref(),
            Some("sip:facd@127.0.0.1:5060;transport=udp")
        );
    }

    #[test]
    fn compact_headers_and_a_bye_answer_are_read() {
        let m = b"SIP/2.0 481 Call Does Not Exist\r\nv: SIP/2.0/UDP h;branch=z9hG4bK-1-9-2\r\n\
                  f: <sip:a@h>;tag=2\r\ni: 9-1@h\r\nt: <sip:x@h>;tag=1\r\nCSeq: 2 BYE\r\nm: sip:y@h\r\n\r\n";
        let r = Resp::parse(m).expect("a response");
        assert_eq!(
            (r.status, r.call, r.bye, r.invite),
            (481, Some(9), true, false)
        );
        assert_eq!(r.contact.as_deref(), Some("sip:y@h"));
    }

    #[test]
    fn requests_foreign_call_ids_and_junk_are_not_ours() {
        assert!(Resp::parse(b"OPTIONS sip:x@h SIP/2.0\r\n\r\n").is_none());
        assert!(Resp::parse(b"\xff\xfe").is_none());
        let r = Resp::parse(
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-x\r\nFrom: <sip:a@h>;tag=2\r\n\
              To: <sip:b@h>;tag=3\r\nCall-ID: abc@h\r\nCSeq: 1 INVITE\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.call, None);
    }
}
