//! The history file format, version 2 (version 1 still read): what a
//! record is and its bytes.
//!
//! A day file `history/YYYY-MM-DD.fh` is the 8-byte header `FACDHST` +
//! version byte, then records, each `len: u32 LE | crc32(payload): u32 LE |
//! payload`. Payloads (integers little-endian, strings as a length then
//! UTF-8; a state is one byte, `0` = none where optional):
//!
//! ```text
//! 1 change  at:u64 agent:s8 queue:s8 from:u8 to:u8 reason:s16 pending:u8 cause:u8 flags:u8
//! 2 begin   at:u64 count:u32                 (a checkpoint block of `count` states follows)
//! 3 state   at:u64 agent:s8 queue:s8 state:u8 reason:s16 pending:u8 since:u64
//! ```
//!
//! `flags` (version 2) bit 0: the agent left the queue (a REST membership
//! change, [`Event::removed`]; `to` is LOGGED_OUT); the other bits are 0.
//! Version 1 has no `flags` byte (nothing left a queue before version 2).
//! A change is about 30 bytes. A file keeps the version it was created
//! with: a writer appending to a version-1 file (today's, from an older
//! facd) writes version-1 records, where a removal is a plain change to
//! LOGGED_OUT. A reader meeting an unknown version refuses the file by
//! name rather than guessing.

use crate::engine::{AgentId, AgentState, Cause, Event, Millis, QueueId, ReasonName};

/// The header of a new file: magic and format version.
pub const HEADER: [u8; 8] = *b"FACDHST\x02";
/// The version this build writes new files in.
pub const VERSION: u8 = 2;
/// The oldest version this build reads (and appends to).
pub const OLDEST: u8 = 1;
/// `flags` bit 0 of a change: the agent left the queue.
const FLAG_REMOVED: u8 = 1;
/// Largest payload accepted when reading (a record is well under 1 KiB).
pub const MAX_PAYLOAD: usize = 4096;

/// One history record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A change the engine applied.
    Change(Event),
    /// A checkpoint block begins: `count` [`Record::State`]s follow, one per
    /// agent × queue not LOGGED_OUT at `at` (every other pair is LOGGED_OUT).
    Begin {
        /// When it was written.
        at: Millis,
        /// How many states follow.
        count: u32,
    },
    /// One agent × queue in a checkpoint block.
    State(StateAt),
}

impl Record {
    /// The record's time.
    pub fn at(&self) -> Millis {
        match self {
            Self::Change(e) => e.at,
            Self::Begin { at, .. } => *at,
            Self::State(s) => s.at,
        }
    }
}

/// An agent × queue state as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateAt {
    /// When the checkpoint was written.
    pub at: Millis,
    /// Extension.
    pub agent: AgentId,
    /// Queue number.
    pub queue: QueueId,
    /// State.
    pub state: AgentState,
    /// Not-ready reason.
    pub reason: Option<ReasonName>,
    /// Pending state.
    pub pending: Option<AgentState>,
    /// Since when the agent has been in `state`.
    pub since: Millis,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The file does not start with a history header.
    #[error("not a facd history file")]
    NotHistory,
    /// A history file of another format version.
    #[error("history format version {0}, this facd reads versions {OLDEST} to {VERSION}")]
    Version(u8),
    /// The bytes end inside a record (a write cut short).
    #[error("the file ends inside a record")]
    Torn,
    /// A record whose checksum or contents are wrong.
    #[error("a damaged record")]
    Damaged,
}

fn state_byte(s: AgentState) -> u8 {
    match s {
        AgentState::LoggedOut => 1,
        AgentState::NotReady => 2,
        AgentState::Ready => 3,
        AgentState::QueueCall => 4,
        AgentState::OtherCall => 5,
        AgentState::WrapUp => 6,
    }
}

fn byte_state(b: u8) -> Option<AgentState> {
    AgentState::ALL.into_iter().find(|s| state_byte(*s) == b)
}

fn cause_byte(c: Cause) -> u8 {
    match c {
        Cause::Fac => 1,
        Cause::Api => 2,
        Cause::Call => 3,
        Cause::Timer => 4,
        Cause::FeatureSync => 5,
        Cause::Config => 6,
    }
}

fn byte_cause(b: u8) -> Option<Cause> {
    [
        Cause::Fac,
        Cause::Api,
        Cause::Call,
        Cause::Timer,
        Cause::FeatureSync,
        Cause::Config,
    ]
    .into_iter()
    .find(|c| cause_byte(*c) == b)
}

fn put_s8(out: &mut Vec<u8>, s: &str) {
    // Extensions are at most 32 bytes and queues 10 (validated); a longer
    // string is cut at a character boundary rather than corrupting the frame.
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.push(n as u8);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn put_s16(out: &mut Vec<u8>, s: Option<&str>) {
    let s = s.unwrap_or("");
    let mut n = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// Appends the framed bytes of `r`, in format `version` (1 or 2), to `out`.
pub fn encode(r: &Record, version: u8, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    match r {
        Record::Change(e) => {
            out.push(1);
            out.extend_from_slice(&e.at.to_le_bytes());
            put_s8(out, &e.agent);
            put_s8(out, &e.queue);
            out.push(state_byte(e.from));
            out.push(state_byte(e.to));
            put_s16(out, e.reason.as_deref());
            out.push(e.pending.map_or(0, state_byte));
            out.push(cause_byte(e.cause));
            if version >= 2 {
                out.push(if e.removed { FLAG_REMOVED } else { 0 });
            }
        }
        Record::Begin { at, count } => {
            out.push(2);
            out.extend_from_slice(&at.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        Record::State(s) => {
            out.push(3);
            out.extend_from_slice(&s.at.to_le_bytes());
            put_s8(out, &s.agent);
            put_s8(out, &s.queue);
            out.push(state_byte(s.state));
            put_s16(out, s.reason.as_deref());
            out.push(s.pending.map_or(0, state_byte));
            out.extend_from_slice(&s.since.to_le_bytes());
        }
    }
    let payload_len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a file's header; returns its format version.
pub fn check_header(bytes: &[u8]) -> Result<u8, DecodeError> {
    if bytes.len() < HEADER.len() {
        return Err(DecodeError::Torn);
    }
    if bytes[..7] != HEADER[..7] {
        return Err(DecodeError::NotHistory);
    }
    if !(OLDEST..=VERSION).contains(&bytes[7]) {
        return Err(DecodeError::Version(bytes[7]));
    }
    Ok(bytes[7])
}

/// Decodes the record at the start of `bytes`, of a file in format
/// `version`: the record and its framed length.
pub fn decode(bytes: &[u8], version: u8) -> Result<(Record, usize), DecodeError> {
    if bytes.len() < 8 {
        return Err(DecodeError::Torn);
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Damaged);
    }
    let Some(payload) = bytes.get(8..8 + len) else {
        return Err(DecodeError::Torn);
    };
    if crc32fast::hash(payload) != crc {
        return Err(DecodeError::Damaged);
    }
    let r = parse_payload(payload, version).ok_or(DecodeError::Damaged)?;
    Ok((r, 8 + len))
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn s8(&mut self) -> Option<&'a str> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn s16(&mut self) -> Option<Option<&'a str>> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(self.take(n)?).ok()?;
        Some((!s.is_empty()).then_some(s))
    }
    fn state(&mut self) -> Option<AgentState> {
        byte_state(self.u8()?)
    }
    fn opt_state(&mut self) -> Option<Option<AgentState>> {
        match self.u8()? {
            0 => Some(None),
            b => Some(Some(byte_state(b)?)),
        }
    }
}

fn parse_payload(p: &[u8], version: u8) -> Option<Record> {
    let mut c = Cursor(p);
    let r = match c.u8()? {
        1 => Record::Change(Event {
            at: c.u64()?,
            agent: c.s8()?.into(),
            queue: c.s8()?.into(),
            from: c.state()?,
            to: c.state()?,
            reason: c.s16()?.map(ReasonName::from),
            pending: c.opt_state()?,
            cause: byte_cause(c.u8()?)?,
            removed: if version >= 2 {
                match c.u8()? {
                    0 => false,
                    FLAG_REMOVED => true,
                    _ => return None,
                }
            } else {
                false
            },
        }),
        2 => Record::Begin {
            at: c.u64()?,
            count: c.u32()?,
        },
        3 => Record::State(StateAt {
            at: c.u64()?,
            agent: c.s8()?.into(),
            queue: c.s8()?.into(),
            state: c.state()?,
            reason: c.s16()?.map(ReasonName::from),
            pending: c.opt_state()?,
            since: c.u64()?,
        }),
        _ => return None,
    };
    c.0.is_empty().then_some(r)
}
