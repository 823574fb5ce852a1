//! Appends the change history: one file per UTC day, each opening with a
//! checkpoint of every agent × queue not LOGGED_OUT, then the changes in the
//! order the engine applied them. A restart appends a fresh checkpoint (so a
//! change lost in a crash before it reached this file is reconciled, see
//! `report`), and a torn tail left by a crash is cut off first.
//!
//! It reads no clock: times come with the events and with [`Writer::roll`].
//! The thread that runs it is in `mod.rs`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::day::{day_name, day_of};
use super::format::{self, DecodeError, Record, StateAt, HEADER};
use super::{file_day, file_name};
use crate::engine::{AgentId, AgentState, Event, Millis, QueueId};

/// The open day file.
struct Open {
    day: i64,
    file: File,
    len: u64,
    /// The file's format version (records appended are written in it).
    version: u8,
}

/// The history writer. See the module documentation.
pub struct Writer {
    dir: PathBuf,
    days: u32,
    sync: bool,
    open: Option<Open>,
    /// Every agent × queue not LOGGED_OUT, as the last change left it.
    current: BTreeMap<(AgentId, QueueId), StateAt>,
    /// The latest time written (times never go back in a file).
    last_at: Millis,
    buf: Vec<u8>,
    /// Written but not yet synced (see [`Writer::sync`]).
    unsynced: bool,
}

impl Writer {
    /// Opens the history in `dir` at `now` with the states the engine
    /// recovered (`initial`: the pairs not LOGGED_OUT), removes day files
    /// older than `days` (0 keeps all) and writes a checkpoint.
    pub fn open(
        dir: &Path,
        days: u32,
        sync: bool,
        initial: Vec<StateAt>,
        now: Millis,
    ) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut w = Self {
            dir: dir.to_path_buf(),
            days,
            sync,
            open: None,
            current: initial
                .into_iter()
                .map(|s| ((s.agent.clone(), s.queue.clone()), s))
                .collect(),
            last_at: now,
            buf: Vec::new(),
            unsynced: false,
        };
        w.compact(now)?;
        let latest = super::list_days(dir)?.last().copied();
        let day = day_of(now).max(latest.unwrap_or(i64::MIN));
        w.open_day(day, now)?;
        w.flush()?;
        Ok(w)
    }

    /// Appends `events` (durable engine events, in order); they are made
    /// durable by the next [`Writer::sync`]. On a failed write the file is
    /// cut back to its last whole record and the error returned.
    pub fn write(&mut self, events: &[Event]) -> io::Result<()> {
        for ev in events {
            let at = ev.at.max(self.last_at);
            let day = day_of(at);
            if self.open.as_ref().is_none_or(|o| day > o.day) {
                self.finish()?;
                self.open_day(day, at)?;
            }
            self.last_at = at;
            let mut ev = ev.clone();
            ev.at = at;
            self.track(&ev);
            let version = self.open.as_ref().map_or(format::VERSION, |o| o.version);
            format::encode(&Record::Change(ev), version, &mut self.buf);
        }
        self.flush()
    }

    /// At a day's start (or any time): opens the new day's file with a
    /// checkpoint when `now` is past the open one, and compacts.
    pub fn roll(&mut self, now: Millis) -> io::Result<()> {
        let now = now.max(self.last_at);
        if self.open.as_ref().is_some_and(|o| day_of(now) > o.day) {
            self.finish()?;
            self.last_at = now;
            self.open_day(day_of(now), now)?;
            self.flush()?;
            self.compact(now)?;
        }
        Ok(())
    }

    fn track(&mut self, ev: &Event) {
        let key = (ev.agent.clone(), ev.queue.clone());
        if ev.to == AgentState::LoggedOut && ev.pending.is_none() {
            self.current.remove(&key);
            return;
        }
        let since = match self.current.get(&key) {
            Some(s) if s.state == ev.to && s.reason == ev.reason => s.since,
            _ => ev.at,
        };
        self.current.insert(
            key,
            StateAt {
                at: ev.at,
                agent: ev.agent.clone(),
                queue: ev.queue.clone(),
                state: ev.to,
                reason: ev.reason.clone(),
                pending: ev.pending,
                since,
            },
        );
    }

    /// Opens (or creates) the file of `day` and queues a checkpoint at `at`.
    fn open_day(&mut self, day: i64, at: Millis) -> io::Result<()> {
        let path = self.dir.join(file_name(day));
        let (len, version) = repair(&path)?;
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        if len == 0 {
            file.write_all(&HEADER)?;
        }
        let len = file.metadata()?.len();
        self.open = Some(Open {
            day,
            file,
            len,
            version,
        });
        format::encode(
            &Record::Begin {
                at,
                count: self.current.len() as u32,
            },
            version,
            &mut self.buf,
        );
        for s in self.current.values() {
            let mut s = s.clone();
            s.at = at;
            format::encode(&Record::State(s), version, &mut self.buf);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(o) = self.open.as_mut() else {
            self.buf.clear();
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        match o.file.write_all(&self.buf) {
            Ok(()) => {
                o.len += self.buf.len() as u64;
                self.buf.clear();
                self.unsynced |= self.sync;
                Ok(())
            }
            Err(e) => {
                self.buf.clear();
                // Never leave half a record in the middle of the file.
                let _ = o.file.set_len(o.len);
                Err(e)
            }
        }
    }

    /// True if records were written since the last [`Writer::sync`] (and
    /// `sync` is set).
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Makes what was written durable (`fdatasync`), when `sync` is set.
    pub fn sync(&mut self) -> io::Result<()> {
        if !self.unsynced {
            return Ok(());
        }
        self.unsynced = false;
        match &self.open {
            Some(o) => o.file.sync_data(),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Some(o) = self.open.take() {
            if self.sync {
                o.file.sync_all()?;
            }
        }
        self.unsynced = false;
        Ok(())
    }

    /// Removes the day files older than the retention: days before
    /// `day_of(now) - days`. Nothing newer is touched.
    pub fn compact(&mut self, now: Millis) -> io::Result<()> {
        if self.days == 0 {
            return Ok(());
        }
        let cutoff = day_of(now) - i64::from(self.days);
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(day) = file_day(name) else { continue };
            if day < cutoff {
                fs::remove_file(entry.path())?;
                info!(file = name, keep_from = %day_name(cutoff), "history: removed a day older than storage.history_days");
            }
        }
        Ok(())
    }

    /// Flushes and closes (at shutdown).
    pub fn close(mut self) -> io::Result<()> {
        self.finish()
    }
}

/// Makes `path` safe to append to; returns its length (0 = absent or
/// empty) and the format version to append in (its own; [`format::VERSION`]
/// for a new file). A torn last record (a crash mid-write) is cut off with a warning.
/// A file damaged before its end is kept, renamed `….damaged`, and a new
/// file started: nothing is deleted, and what follows the damage is not
/// mixed with new records.
fn repair(path: &Path) -> io::Result<(u64, u8)> {
    let new = (0, format::VERSION);
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(new),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() {
        return Ok(new);
    }
    let damaged = |what: &str| -> io::Result<(u64, u8)> {
        let mut n = 0;
        let aside = loop {
            let p = path.with_extension(format!(
                "fh.damaged{}",
                if n == 0 {
                    String::new()
                } else {
                    format!(".{n}")
                }
            ));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        warn!(file = %path.display(), moved_to = %aside.display(), what, "history file damaged; kept aside, a new one started");
        fs::rename(path, &aside)?;
        Ok(new)
    };
    let version = match format::check_header(&bytes) {
        Ok(v) => v,
        Err(DecodeError::Torn) => {
            fs::write(path, b"")?;
            return Ok(new);
        }
        Err(e) => return damaged(&e.to_string()),
    };
    let mut pos = HEADER.len();
    while pos < bytes.len() {
        match format::decode(&bytes[pos..], version) {
            Ok((_, n)) => pos += n,
            Err(DecodeError::Torn) => {
                warn!(file = %path.display(), offset = pos, dropped = bytes.len() - pos, "history: torn last record cut off");
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(pos as u64)?;
                return Ok((pos as u64, version));
            }
            Err(e) => {
                // A checksum failure on the very last record is a torn write
                // too (the length arrived, not all of the payload).
                let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
                if pos + 8 + len as usize == bytes.len() {
                    warn!(file = %path.display(), offset = pos, "history: damaged last record cut off");
                    OpenOptions::new()
                        .write(true)
                        .open(path)?
                        .set_len(pos as u64)?;
                    return Ok((pos as u64, version));
                }
                return damaged(&format!("{e} at offset {pos}"));
            }
        }
    }
    Ok((bytes.len() as u64, version))
}
