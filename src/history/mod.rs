//! The agent-state change history: every durable engine event, kept in one
//! compact, versioned file per UTC day under `[storage] dir/history/`
//! (`format.rs`), for reports and the per-agent history of the API.
//!
//! The journal (`store/`) is compacted by snapshots, so it is no history;
//! this is. The server's core loop hands every durable event to a
//! [`Sink`], whose thread appends it (after the journal made it durable, so
//! the history never holds a change that did not happen) and, when
//! `storage.sync` is set, fsyncs at most once a second. A `kill -9` can lose
//! the last changes before they were written; the checkpoint written at the next start records
//! the state the journal recovered, and reports reconcile on it
//! (`report.rs`). Retention: day files older than `storage.history_days`
//! days are deleted at start and at each day's rollover, never a newer
//! one; a reader asked for older times gets an error naming the first day
//! kept, not a silently short answer.
//!
//! Imports only `engine` (ids, states, events).

pub mod day;
pub mod format;
pub mod report;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{error, warn};

pub use format::{Record, StateAt};
pub use report::{Fold, Totals};
pub use writer::Writer;

use crate::engine::{AgentId, Event, Millis, QueueId};
use day::{day_name, day_of, day_start, DAY_MS};

/// Events the writer thread takes at once (one write).
const BATCH: usize = 4096;

/// How often, at most, the writer thread fsyncs the day file (when
/// `storage.sync` is set). The history is not what makes a change durable
/// (the journal is, before the answer); what a crash loses of it is
/// reconciled by the checkpoint written at the next start. One fsync per
/// journal batch would double the disk flushes of a busy server.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Syncs the writer's file, logging a failure.
fn sync_now(w: &mut Writer, last: &mut Instant) {
    *last = Instant::now();
    if let Err(e) = w.sync() {
        error!(error = %e, "history: fsync failed; the last changes may be lost in a crash");
    }
}

/// The name of the file of `day`.
pub fn file_name(day: i64) -> String {
    format!("{}.fh", day_name(day))
}

/// The day of a file name (`2025-03-01.fh`, or a damaged one kept aside,
/// `2025-03-01.fh.damaged…`).
pub fn file_day(name: &str) -> Option<i64> {
    let (stem, rest) = name.split_at_checked(10)?;
    (rest == ".fh" || rest.starts_with(".fh.damaged")).then(|| day::parse_day(stem))?
}

/// The days that have a (readable) file, oldest first.
pub fn list_days(dir: &Path) -> io::Result<Vec<i64>> {
    let mut days = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let name = e?.file_name();
                if let Some(name) = name.to_str() {
                    if name.len() == 13 && name.ends_with(".fh") {
                        days.extend(file_day(name));
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    days.sort_unstable();
    Ok(days)
}

/// The milliseconds of the wall clock.
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Why history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The range starts before the first day kept.
    #[error("history is kept from {first} on (storage.history_days); the range starts before it")]
    BeforeRetention {
        /// The first day with history, `YYYY-MM-DD`.
        first: String,
    },
    /// There is no history at all yet.
    #[error("there is no history yet")]
    Empty,
    /// A cursor that is not one this server gave out.
    #[error("cursor {0:?} is not valid")]
    BadCursor(String),
    /// A file could not be read.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Reads the history directory (for the API; blocking, run it off the
/// async threads).
#[derive(Debug, Clone)]
pub struct Reader {
    dir: PathBuf,
}

/// Decoded records of one day file, each with the offset after it.
type DayRecords = Vec<(u64, Record)>;

impl Reader {
    /// The history in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn days(&self) -> Result<Vec<i64>, HistoryError> {
        list_days(&self.dir).map_err(|source| HistoryError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    /// When the kept history starts: midnight of its first day.
    pub fn first(&self) -> Result<Option<Millis>, HistoryError> {
        Ok(self.days()?.first().map(|d| day_start(*d)))
    }

    /// The records of one day from byte `offset` on. Reading stops at the
    /// first record that does not decode (a torn tail; damage is logged).
    fn read_day(&self, day: i64, offset: u64) -> Result<DayRecords, HistoryError> {
        let path = self.dir.join(file_name(day));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(HistoryError::Io { path, source }),
        };
        let version = match format::check_header(&bytes) {
            Ok(v) => v,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "history file skipped");
                return Ok(Vec::new());
            }
        };
        let mut pos = (offset as usize).max(format::HEADER.len());
        let mut out = Vec::new();
        while pos < bytes.len() {
            match format::decode(&bytes[pos..], version) {
                Ok((r, n)) => {
                    pos += n;
                    out.push((pos as u64, r));
                }
                Err(e) => {
                    if !matches!(e, format::DecodeError::Torn) {
                        warn!(file = %path.display(), offset = pos, error = %e, "history: reading stops at a damaged record");
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Time in each state for `wanted` pairs over `[from, to)`.
    pub fn report(
        &self,
        from: Millis,
        to: Millis,
        wanted: Vec<(AgentId, QueueId)>,
    ) -> Result<HashMap<(AgentId, QueueId), Totals>, HistoryError> {
        let days = self.days()?;
        let first = *days.first().ok_or(HistoryError::Empty)?;
        if from < day_start(first) {
            return Err(HistoryError::BeforeRetention {
                first: day_name(first),
            });
        }
        // Each file opens with a checkpoint: start at the last one begun
        // at or before `from`.
        let start = days.iter().rposition(|d| *d <= day_of(from)).unwrap_or(0);
        let mut fold = Fold::new(from, to, wanted);
        'files: for &d in &days[start..] {
            if day_start(d) >= to {
                break;
            }
            for (_, r) in self.read_day(d, 0)? {
                fold.push(&r);
                if fold.done() {
                    break 'files;
                }
            }
        }
        Ok(fold.finish())
    }

    /// The changes of `agent` in `[from, to)`, at most `limit`, starting
    /// at `cursor` (from a previous page). Returns them and the cursor of
    /// the next page when there may be more.
    pub fn changes(
        &self,
        agent: &str,
        from: Millis,
        to: Millis,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Event>, Option<String>), HistoryError> {
        let days = self.days()?;
        let (mut day, mut offset) = match cursor {
            Some(c) => parse_cursor(c).ok_or_else(|| HistoryError::BadCursor(c.to_string()))?,
            None => (day_of(from), 0),
        };
        let mut out = Vec::new();
        let first = day;
        for &d in days.iter().filter(|d| **d >= first) {
            if day_start(d) >= to {
                break;
            }
            if d != day {
                offset = 0;
                day = d;
            }
            for (end, r) in self.read_day(d, offset)? {
                let Record::Change(ev) = r else { continue };
                if ev.at >= to {
                    return Ok((out, None));
                }
                if ev.agent == agent && ev.at >= from {
                    out.push(ev);
                    if out.len() == limit {
                        return Ok((out, Some(format!("{}:{end}", day_name(d)))));
                    }
                }
            }
        }
        Ok((out, None))
    }
}

fn parse_cursor(c: &str) -> Option<(i64, u64)> {
    let (d, off) = c.split_once(':')?;
    Some((day::parse_day(d)?, off.parse().ok()?))
}

enum Msg {
    Events(Vec<Event>),
}

/// The core loop's end of the history: hands events to the writer thread
/// (never blocks; the channel is unbounded, the thread writes in batches).
pub struct Sink {
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pending: Vec<Event>,
}

impl Sink {
    /// Opens the history (`Writer::open`) and starts its thread.
    pub fn start(dir: &Path, days: u32, sync: bool, initial: Vec<StateAt>) -> io::Result<Self> {
        let mut w = Writer::open(dir, days, sync, initial, wall_ms())?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("facd-history".into())
            .spawn(move || {
                let mut last_sync = Instant::now();
                loop {
                    let now = wall_ms();
                    let next_day = (now / DAY_MS + 1) * DAY_MS;
                    let mut wait = Duration::from_millis(next_day - now + 1);
                    if w.unsynced() {
                        wait = wait.min(SYNC_EVERY.saturating_sub(last_sync.elapsed()));
                    }
                    let mut batch = match rx.recv_timeout(wait) {
                        Ok(Msg::Events(evs)) => evs,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if last_sync.elapsed() >= SYNC_EVERY {
                                sync_now(&mut w, &mut last_sync);
                            }
                            if let Err(e) = w.roll(wall_ms()) {
                                error!(error = %e, "history: cannot start the new day's file");
                            }
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(Msg::Events(mut more)) => batch.append(&mut more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = w.write(&batch) {
                        error!(error = %e, lost = batch.len(), "history: changes could not be written and are missing from it");
                    }
                    if last_sync.elapsed() >= SYNC_EVERY {
                        sync_now(&mut w, &mut last_sync);
                    }
                }
                if let Err(e) = w.close() {
                    error!(error = %e, "history: closing failed");
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            pending: Vec::new(),
        })
    }

    /// Records one durable event (sent at the next [`Sink::flush`]).
    pub fn record(&mut self, ev: &Event) {
        self.pending.push(ev.clone());
    }

    /// Hands the recorded events to the writer thread.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(tx) = &self.tx {
            let batch = std::mem::take(&mut self.pending);
            if tx.send(Msg::Events(batch)).is_err() {
                error!("history: the writer thread has stopped; changes are not recorded");
            }
        }
    }

    /// Writes what is left and waits for the thread (at shutdown).
    pub fn close(mut self) {
        self.flush();
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
